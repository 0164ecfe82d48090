#ifndef DISTQ_TRAIN_H
#define DISTQ_TRAIN_H
/*
 * Training over the graph IR (QAT issue, part 1: fp32 training).
 *
 *     distq_trainer *t;
 *     distq_trainer_create(g, &opts, &t);          // g's params are trained in place
 *     distq_trainer_step(t, x, n, labels, &stats);  // forward (train mode) + backward
 *     ... all-reduce distq_trainer_grads(t) over ranks, then
 *     distq_sgd_step(&sgd, g, t);                   // update
 *
 * Forward in training mode keeps what backward needs; batch_norm normalises
 * with the batch statistics (biased variance) and updates its running stats
 * with its momentum (unbiased variance), as PyTorch does. The statistics can
 * be summed over ranks through a hook, so data-parallel training equals one
 * process with the global batch. Gradients are summed over the local batch
 * and divided by the *global* batch size given in the step call, so that an
 * all-reduce SUM over ranks gives the global mean gradient.
 */
#include <stdint.h>

#include "distq/graph.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DISTQ_LOSS_CROSS_ENTROPY = 0, DISTQ_LOSS_MSE } distq_loss;

/* Cross-rank reduction of BN batch statistics: sums[n] in place (SUM over
 * ranks). NULL reduce = one process. */
typedef struct {
    void *ctx;
    distq_status (*sum_f64)(void *ctx, double *sums, int n);
} distq_train_hooks;

typedef struct {
    int64_t max_batch;  /* largest local batch a step will see */
    distq_loss loss;
    const distq_train_hooks *hooks; /* optional */
} distq_train_opts;

typedef struct {
    double loss_sum;  /* summed over this rank's images (mean = loss_sum / images) */
    int64_t correct;  /* argmax == label (cross-entropy only) */
    int64_t images;
} distq_step_stats;

typedef struct distq_trainer distq_trainer;

/* g must be finalized; the trainer keeps a pointer to it and updates nothing
 * by itself (the optimizer does). BN running stats are updated in forward. */
distq_status distq_trainer_create(distq_graph *g, const distq_train_opts *opts, distq_trainer **out);
void distq_trainer_destroy(distq_trainer *t);

/* Training step on n local images (N, ...) f32. labels: n class indices
 * (cross-entropy) or targets: n x (output numel) f32 (MSE); the other NULL.
 * global_batch: images in the global batch over all ranks (gradients are
 * divided by it; = n alone). Fills the gradients (overwritten, not added). */
distq_status distq_trainer_step(distq_trainer *t, const float *x, int64_t n, const int64_t *labels,
                                const float *targets, int64_t global_batch, distq_step_stats *stats);

/* Gradient of parameter index p (same shape as g->params[p]; NULL for
 * buffers such as running stats). */
float *distq_trainer_grad(distq_trainer *t, int p);
/* All gradients as one contiguous buffer (for one fused all-reduce). */
float *distq_trainer_grads(distq_trainer *t, int64_t *count);

/* Inference-mode forward (BN with running stats) of n images into logits. */
distq_status distq_trainer_predict(distq_trainer *t, const float *x, int64_t n, float *logits);

/* --- optimizer ------------------------------------------------------------ */

typedef struct {
    float lr, momentum, weight_decay;
    int nesterov;
    float *velocity; /* one per trainable element, in distq_trainer_grads order; owned */
    int64_t count;
    int64_t step;
} distq_sgd;

/* PyTorch SGD: g' = g + wd * w; v = m * v + g'; w -= lr * v. */
distq_status distq_sgd_init(distq_sgd *s, distq_trainer *t, float lr, float momentum, float weight_decay);
distq_status distq_sgd_step(distq_sgd *s, distq_graph *g, distq_trainer *t);
void distq_sgd_free(distq_sgd *s);

#ifdef __cplusplus
}
#endif
#endif
