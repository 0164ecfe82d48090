#ifndef DISTQ_TRAIN_IMPL_H
#define DISTQ_TRAIN_IMPL_H
/*
 * Internal to src/train: the trainer's state, the per-op training kernels
 * (train_ops.c) and the sgemm (sgemm.c). Tests reach the input gradient
 * through the last two functions.
 */
#include <stddef.h>
#include <stdint.h>

#include "distq/exec.h"
#include "distq/train.h"

/* Saved between a node's training forward and its backward. */
typedef struct {
    float *mean, *invstd; /* batch_norm (C): batch statistics of the last training forward */
    float *scale, *shift; /* batch_norm (C): y = x * scale + shift */
    double count;         /* batch_norm: global N*H*W of the last training forward */
    int32_t *argmax;      /* max_pool2d (max_batch, C, OH, OW): ih * W + iw of the winner */
    const float *wq;      /* conv2d / linear under QAT: the fake-quantized weight to use, or NULL */
} distq_train_node;

struct distq_trainer {
    distq_graph *g; /* borrowed; params are read live, trained by the optimizer */
    int64_t max_batch;
    distq_loss loss;
    distq_reducer ranks; /* copy; sum_f64 == NULL: one process */
    int nthreads;            /* OpenMP team size, fixed at create (scratch is per thread) */
    int want_input_grad;     /* tests: also compute d loss / d graph input */

    void *slab;  /* every buffer below is carved from it */
    float **act; /* [n_values] (max_batch, per-image numel) f32; flatten aliases its input */
    float **dact; /* [n_values] d loss / d value, same shape and aliasing */
    int *buf_of;  /* [n_values] value owning the buffer (itself, or flatten's input) */
    unsigned char *ready; /* [n_values] by owner: the gradient buffer was written this backward */
    float *grads;         /* all trainable gradients, param-index order */
    int64_t n_grads;
    int64_t *grad_off;       /* [n_params] offset into grads, -1 if not trainable */
    distq_train_node *nodes; /* [n_nodes] */
    float *scratch;          /* nthreads x scratch_floats: gemm work, col, dcol */
    size_t scratch_floats;
    size_t col_floats;     /* max (ICg*KH*KW) x (OH*OW) over convs; 0 with oneDNN convs */
    float *partials;       /* n_chunks x partial_floats: conv dW and db per chunk of images */
    size_t partial_floats; /* max OC*ICg*KH*KW + OC over convs; 0 with oneDNN convs */
    int64_t n_chunks;      /* 2 x nthreads */
    double *red;        /* reduction buffer: 2 * max channels + 1 */
    int bn_frozen;      /* batch_norm uses (and keeps) its running stats, also in training */
    distq_onednn_train *dnn; /* oneDNN conv primitives (distq/exec.h), or NULL: plain C */
    struct distq_qat *qat; /* fake quantization (src/train/qat.c), or NULL */
};

/* Gemm workspace (floats) that distq_sgemm needs. */
size_t distq_sgemm_work_floats(void);
/* C (M, N) = or += op(A) (M, K) * op(B) (K, N); row-major; op = transpose if
 * ta / tb. accumulate: 0 overwrites C, 1 adds. work: distq_sgemm_work_floats()
 * floats. Single-threaded inside the caller's OpenMP regions. distq_sgemm is
 * oneDNN's dnnl_sgemm; distq_sgemm_ref the plain-C reference (sgemm.c). */
void distq_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc, float *work);
void distq_sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc, float *work);

/* Gradient buffer for value v for the current backward, or NULL if v needs
 * none (the graph input unless requested). *accumulate: 1 if a consumer
 * already wrote it (add to it), 0 if the caller must overwrite it. */
float *distq_train_grad_out(distq_trainer *t, int v, int *accumulate);

/* Forward of node i over N images: training (batch statistics, save what
 * backward needs) or eval (running statistics). Fails only in batch_norm
 * (hook error, one value per channel). */
/* Every node of g has a training kernel; else DISTQ_ERR_UNSUPPORTED naming
 * the node and op. Called by distq_trainer_create. */
distq_status distq_train_check_ops(const distq_graph *g);
distq_status distq_train_forward_node(distq_trainer *t, int i, int64_t N, int training);
/* Backward of node i over N images: adds parameter gradients into t->grads
 * and writes or adds input gradients through distq_train_grad_out. */
distq_status distq_train_backward_node(distq_trainer *t, int i, int64_t N);

/* QAT (qat.c), called by the trainer around each node when t->qat is set.
 * Forward: before node i (fake-quantize its weight), after it (conv-bn
 * rescale, fake-quantize its output; i == -1: the graph input). Backward:
 * before node i (straight-through mask, conv-bn rescale), after it (weight
 * gradient through the fake quant and the conv-bn scale). */
distq_status distq_qat_before_forward(distq_trainer *t, int i, int training);
distq_status distq_qat_after_forward(distq_trainer *t, int i, int64_t N, int training);
void distq_qat_before_backward(distq_trainer *t, int i, int64_t N);
void distq_qat_after_backward(distq_trainer *t, int i);

/* Tests: compute d loss / d graph input in later steps (on != 0), and read it
 * ((n, per-image numel) of the last step; d of the mean loss like the params). */
void distq_trainer_set_input_grad(distq_trainer *t, int on);
const float *distq_trainer_input_grad(const distq_trainer *t);

#endif
