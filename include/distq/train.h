#ifndef DISTQ_TRAIN_H
#define DISTQ_TRAIN_H
/*
 * Training over the graph IR (QAT issue, part 1: fp32 training).
 *
 *     distq_trainer *t;
 *     distq_trainer_create(g, &opts, &t);          // g's params are trained in place
 *     distq_trainer_step(t, x, n, labels, NULL, global_batch, &stats); // forward + backward
 *     ... all-reduce distq_trainer_grads(t) over ranks, then
 *     distq_sgd_step(&sgd, g, t);                   // update
 *
 * Forward in training mode keeps what backward needs; batch_norm normalises
 * with the batch statistics (biased variance) and updates its running stats
 * with its momentum (unbiased variance), as PyTorch does. The statistics can
 * be summed over ranks through the reducer, so data-parallel training equals one
 * process with the global batch. Gradients are summed over the local batch
 * and divided by the *global* batch size given in the step call, so that an
 * all-reduce SUM over ranks gives the global mean gradient.
 *
 * Data parallelism and batch_norm. Every rank calls distq_trainer_step once
 * per global batch (with n = 0 if it has no images) on the same graph. Each
 * training-mode batch_norm, in node order, calls reducer->sum_f64 twice, and
 * it must sum the vector over ranks in place (MPI_Allreduce SUM):
 *   forward:  2C + 1 doubles: sum over the local (N, H, W) of x - running_mean
 *             per channel, then of (x - running_mean)^2, then the local count
 *             N*H*W. The shift is the same on every rank (the running mean
 *             before this step) and keeps E[d^2] - E[d]^2 from cancelling.
 *             Mean and biased variance come from the global sums.
 *   backward: 2C doubles: sum of dy, then of dy * xhat, per channel; the input
 *             gradient is gamma / std * (dy - sum(dy) / M - xhat * sum(dy xhat) / M)
 *             with M the global count. (Skipped, on every rank alike, when the
 *             BN input needs no gradient.)
 * The BN weight and bias gradients stay local sums, like every other
 * gradient: the caller's all-reduce of distq_trainer_grads adds them. So np
 * ranks with local batches equal one process with the global batch, up to f32
 * summation order. A reducer error fails the step with the node named.
 *
 * Kernels: conv2d runs on oneDNN's forward-training and backward primitives
 * (their blocked layouts, reordered from and to the trainer's NCHW); every
 * GEMM of the plain kernels is oneDNN's sgemm. batch_norm, pooling, relu, add
 * and the losses are plain C: batch_norm because its statistics are summed
 * over ranks before use, which oneDNN's primitive cannot do. The plain-C conv
 * kernels stay as the reference (distq_train_opts.plain_kernels).
 *
 * Threads: OpenMP, omp_get_max_threads() at create. Results depend on the
 * thread count (summation order), not on scheduling. On cores shared with
 * other processes OMP_WAIT_POLICY=passive helps: with another process busy on
 * one of 2 vCPUs, 2 threads ran at 213 images/s spinning (the default) and
 * 435 passive, against ~985 on idle cores (small CNN, batch 128, before the
 * oneDNN kernels; ~1500 with them).
 */
#include <stdint.h>

#include "distq/graph.h"
#include "distq/reducer.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DISTQ_LOSS_CROSS_ENTROPY = 0, DISTQ_LOSS_MSE } distq_loss;


typedef struct {
    int64_t max_batch;  /* largest local batch a step will see; buffers are sized for it */
    distq_loss loss;
    /* Cross-rank reduction (distq/reducer.h), NULL = one process: sum_f64
     * sums BN batch statistics (layout in the overview); QAT's min_max
     * reduces each fake-quantized activation's batch range before the moving
     * average uses it. Only those two members are called. */
    const distq_reducer *reducer;
    int plain_kernels; /* 1: conv2d on the plain-C reference kernels instead of oneDNN's primitives */
} distq_train_opts;

typedef struct {
    double loss_sum;  /* summed over this rank's images (mean = loss_sum / images) */
    int64_t correct;  /* argmax == label (cross-entropy only) */
    int64_t images;
} distq_step_stats;

typedef struct distq_trainer distq_trainer;

/* g must be finalized; the trainer keeps a pointer to it and updates nothing
 * by itself (the optimizer does). BN running stats (and num_batches_tracked)
 * are updated in forward. Every buffer is allocated here, none per step.
 * Cross-entropy needs a rank-2 (N, classes) output. Free with
 * distq_trainer_destroy (NULL is a no-op). INVALID_ARG, NOMEM. */
distq_status distq_trainer_create(distq_graph *g, const distq_train_opts *opts, distq_trainer **out);

/* 1 if the trainer has forward and backward kernels for op (a graph with any
 * other op is refused by distq_trainer_create, naming the node). */
int distq_train_has_kernel(distq_op op);
void distq_trainer_destroy(distq_trainer *t);

/* Training step on n local images (N, ...) f32, 0 <= n <= max_batch.
 * labels: n class indices (cross-entropy) or targets: n x (output numel) f32
 * (MSE); the other NULL. global_batch: images in the global batch over all
 * ranks (gradients are divided by it; = n alone). Fills the gradients
 * (overwritten, not added). Losses: cross-entropy with a log-sum-exp shifted
 * by the row max; MSE per image = mean over its elements of (y - target)^2,
 * so the gradient is that of the mean over every element of the global batch.
 * stats (optional) gets this rank's sums. INVALID_ARG (bad n, label out of
 * range, naming the image; BN with one value per channel), or the reducer's
 * status. */
distq_status distq_trainer_step(distq_trainer *t, const float *x, int64_t n, const int64_t *labels,
                                const float *targets, int64_t global_batch, distq_step_stats *stats);

/* Gradient of parameter index p (same shape as g->params[p]; NULL for
 * buffers such as running stats and num_batches_tracked, and for params no
 * node trains). Trainable: conv2d / linear weight and bias, batch_norm weight
 * and bias. Borrowed, points into distq_trainer_grads. */
float *distq_trainer_grad(distq_trainer *t, int p);
/* All gradients as one contiguous buffer, params in index order (for one fused
 * all-reduce, which may write it in place). *count (optional): floats. */
float *distq_trainer_grads(distq_trainer *t, int64_t *count);

/* Inference-mode forward (BN with running stats; the ref executor's
 * semantics) of any n >= 0 images into logits (n x output numel), in pieces
 * of max_batch. Overwrites the activations saved by the last step. */
distq_status distq_trainer_predict(distq_trainer *t, const float *x, int64_t n, float *logits);

/* Frozen batch_norm (on != 0) normalises with its running statistics and
 * stops updating them, in training steps too (QAT's "freeze BN stats"); its
 * weight and bias still train. No reducer calls while frozen. */
void distq_trainer_freeze_bn(distq_trainer *t, int on);

/* --- optimizer ------------------------------------------------------------ */

typedef struct {
    float lr, momentum, weight_decay;
    int nesterov;
    float *velocity; /* one per trainable element, in distq_trainer_grads order; owned */
    int64_t count;
    int64_t step;
} distq_sgd;

/* PyTorch SGD (torch.optim.SGD, dampening 0), in f32 per element over every
 * trainable param (BN weight and bias included): g' = g + wd * w;
 * v = g' on the first step (step == 0), else v = m * v + g';
 * w -= lr * (nesterov ? g' + m * v : v); no buffer when m == 0. init
 * allocates the zeroed velocity (count = distq_trainer_grads count) and sets
 * nesterov 0 (set it after init); step checks that s, g and t belong together
 * and increments step. distq_sgd_free(NULL) is a no-op. */
distq_status distq_sgd_init(distq_sgd *s, distq_trainer *t, float lr, float momentum, float weight_decay);
distq_status distq_sgd_step(distq_sgd *s, distq_graph *g, distq_trainer *t);
void distq_sgd_free(distq_sgd *s);

#ifdef __cplusplus
}
#endif
#endif
