#ifndef DISTQ_PASSES_H
#define DISTQ_PASSES_H
/*
 * Graph passes: each takes a finalized graph, rewrites it in place, and leaves
 * it finalized.
 */
#include "distq/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Folds every batch_norm whose input is a conv2d output read by nothing else
 * into that conv (PyTorch's fuse_conv_bn_weights): w' = w * g / sqrt(var + eps),
 * b' = (b - mean) * g / sqrt(var + eps) + beta. The conv keeps its name and
 * takes over the BN's output value; the BN node is removed. The conv's weight
 * and bias data are overwritten in place (a bias named "<conv node>.bias" is
 * created if absent). The folded BNs' parameters are dropped. *n_folded
 * (optional) counts the folds. */
distq_status distq_pass_fold_bn(distq_graph *g, int *n_folded);

#ifdef __cplusplus
}
#endif
#endif
