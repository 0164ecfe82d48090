/*
 * fold_bn: merge inference-mode batch_norm into the conv2d that feeds it.
 * Same arithmetic order as PyTorch's fuse_conv_bn_weights:
 *     r = rsqrt(var + eps);  w' = w * (gamma * r);  b' = (b - mean) * r * gamma + beta
 * A BN is left alone when its conv output has another reader or the conv's
 * weight is shared with another node (folding would change that other use).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/passes.h"

static int param_users(const distq_graph *g, int param_index)
{
    int users = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int s = 0; s < DISTQ_MAX_PARAMS; s++) users += g->nodes[i].params[s] == param_index;
    return users;
}

/* Index of the conv node that BN node bn can fold into, or -1. */
static int foldable_conv(const distq_graph *g, const distq_node *bn)
{
    const distq_value *x = &g->values[bn->inputs[0]];
    if (x->producer < 0 || x->n_consumers != 1) return -1;
    const distq_node *conv = &g->nodes[x->producer];
    if (conv->op != DISTQ_OP_CONV2D) return -1;
    if (param_users(g, conv->params[DISTQ_PARAM_WEIGHT]) != 1) return -1;
    if (conv->params[DISTQ_PARAM_BIAS] >= 0 && param_users(g, conv->params[DISTQ_PARAM_BIAS]) != 1)
        return -1;
    return x->producer;
}

static distq_status fold_one(distq_graph *g, int conv_index, int bn_index)
{
    distq_node *conv = &g->nodes[conv_index];
    const distq_node *bn = &g->nodes[bn_index];
    if (conv->params[DISTQ_PARAM_BIAS] < 0) {
        const char *bias_name = NULL;
        int64_t OC = g->params[conv->params[DISTQ_PARAM_WEIGHT]].dims[0];
        distq_status st = distq_graph_intern_suffixed(g, conv->name, ".bias", &bias_name);
        if (st) return st;
        if ((st = distq_graph_add_param(g, bias_name, DISTQ_DTYPE_F32, 1, &OC, NULL, NULL))) return st;
        conv->param_names[DISTQ_PARAM_BIAS] = bias_name;
        conv->params[DISTQ_PARAM_BIAS] = g->n_params - 1;
    }
    distq_tensor *w = &g->params[conv->params[DISTQ_PARAM_WEIGHT]];
    float *wd = w->data;
    float *bias = g->params[conv->params[DISTQ_PARAM_BIAS]].data;
    const float *mean = g->params[bn->params[DISTQ_PARAM_RUNNING_MEAN]].data;
    const float *var = g->params[bn->params[DISTQ_PARAM_RUNNING_VAR]].data;
    const float *gamma =
        bn->params[DISTQ_PARAM_WEIGHT] >= 0 ? g->params[bn->params[DISTQ_PARAM_WEIGHT]].data : NULL;
    const float *beta =
        bn->params[DISTQ_PARAM_BIAS] >= 0 ? g->params[bn->params[DISTQ_PARAM_BIAS]].data : NULL;
    int64_t OC = w->dims[0], per_oc = distq_tensor_numel(w) / OC;
    for (int64_t oc = 0; oc < OC; oc++) {
        float r = 1.0f / sqrtf(var[oc] + bn->attr.eps);
        float gm = gamma ? gamma[oc] : 1.0f;
        for (int64_t i = 0; i < per_oc; i++) wd[oc * per_oc + i] *= gm * r;
        bias[oc] = (bias[oc] - mean[oc]) * r * gm + (beta ? beta[oc] : 0.0f);
    }
    /* The conv now produces the BN's output; the BN node goes away. */
    conv->output_name = bn->output_name; /* both in g's string store */
    distq_graph_remove_node(g, bn_index);
    return DISTQ_OK;
}

distq_status distq_pass_fold_bn(distq_graph *g, int *n_folded)
{
    if (!g->finalized) return distq_error_set(DISTQ_ERR_INVALID_ARG, "fold_bn: graph not finalized");
    int folded = 0;
    /* Each fold removes a node and changes wiring: re-finalize and rescan. */
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != DISTQ_OP_BATCH_NORM) continue;
        int c = foldable_conv(g, &g->nodes[i]);
        if (c < 0) continue;
        distq_status st = fold_one(g, c, i);
        if (st == DISTQ_OK) st = distq_graph_finalize(g);
        if (st) return st;
        folded++;
        i = -1;
    }
    if (n_folded) *n_folded = folded;
    if (!folded) return DISTQ_OK;
    /* The folded BNs' parameters are dead weight now (46 MB for resnet18). */
    distq_graph_remove_unused_params(g, NULL);
    return distq_graph_finalize(g);
}
