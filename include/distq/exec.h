#ifndef DISTQ_EXEC_H
#define DISTQ_EXEC_H
/*
 * Executors: a graph built once for a batch size, then run many times.
 *
 *     distq_exec *e;
 *     distq_exec_create(DISTQ_BACKEND_ONEDNN, g, 50, &e);   // frozen: prepack once
 *     distq_exec_run(e, input, logits);                     // hot path, no allocation
 *     distq_exec_destroy(e);
 *
 * DISTQ_BACKEND_REF is the plain-C oracle; DISTQ_BACKEND_ONEDNN the fast one.
 * Input and output are dense row-major f32: input (N, C, H, W) or (N, F),
 * outputs the output values' dims with the batch N. A quantized graph (convert's
 * output, quant.h) is built the same way: its input is quantized by its first
 * node and each output dequantized.
 */
#include <stdint.h>

#include "distq/graph.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DISTQ_BACKEND_REF = 0, DISTQ_BACKEND_ONEDNN, DISTQ_BACKEND_COUNT } distq_backend;

const char *distq_backend_name(distq_backend b);

typedef struct distq_exec distq_exec;

/* Builds an executor for g (finalized) and batch N. The executor does not keep
 * g: it copies what it needs. On oneDNN, a quantized graph must be int8 from
 * its quantize to its dequantize (the ref backend also runs mixed graphs). */
distq_status distq_exec_create(distq_backend b, const distq_graph *g, int64_t batch,
                               distq_exec **out);
/* input: N x (graph input per-image numel) f32; output: N x (output numel) f32,
 * the first graph output (the logits of eval, calibrate and bench). */
distq_status distq_exec_run(distq_exec *e, const float *input, float *output);
/* Runs once and writes every graph output k to outputs[k] (N x its numel). */
distq_status distq_exec_run_all(distq_exec *e, const float *input, float *const *outputs);
void distq_exec_destroy(distq_exec *e);

/* Copies the named value of the last run into out, plain row-major (N, ...):
 * in the value's dtype (u8 or f32). Every
 * value an executor computes stays readable until the next run. A value that
 * a fusion never materializes (a conv output before its fused relu; the f32
 * input of the oneDNN int8 executor) is DISTQ_ERR_UNSUPPORTED, naming it and
 * why; an unknown name is DISTQ_ERR_INVALID_ARG. */
distq_status distq_exec_get_value(distq_exec *e, const char *name, void *out);

/* One step of a profiled run: the node it belongs to (or "input ...",
 * "output ..."), what runs (oneDNN's implementation, e.g.
 * "brgconv:avx512_core_vnni", "reorder jit:uni", "C step"), seconds summed
 * over the profiled runs. */
typedef struct {
    char node[DISTQ_NAME_MAX + 16];
    char kind[64];
    double seconds;
} distq_profile_step;

/* Runs e iters times, waiting after every step to time it (benchmark_app's
 * -pc counters): *steps (n_steps rows, in execution order; free() it) and
 * *wall_s, the wall time of those runs, so that the time outside the steps
 * shows. DISTQ_ERR_UNSUPPORTED on a backend without per-step timing (ref). */
distq_status distq_exec_profile(distq_exec *e, const float *input, float *output, int iters,
                                distq_profile_step **steps, int *n_steps, double *wall_s);

/* What a backend can do, for the jobs that choose a recipe by it (never a
 * backend-specific call from jobs). */
typedef struct {
    /* u8 x s8 products summed exactly over the full 8-bit activation range:
     * oneDNN with VNNI or AMX; not oneDNN on AVX2 or AVX-512 without VNNI,
     * whose pairwise s16 sums saturate (then activations use 7 bits). */
    int u8s8_exact;
    const char *isa; /* the ISA it dispatches, static text ("plain C" for ref) */
} distq_backend_caps;
distq_backend_caps distq_backend_caps_of(distq_backend b);

/* 1 if backend b's fp32 executor has a kernel for op (the others are refused,
 * naming the node, when an executor is created); the int8 one: for op on u8
 * inputs (quantize: on f32). */
int distq_exec_has_kernel(distq_backend b, distq_op op);
int distq_exec_has_int8_kernel(distq_backend b, distq_op op);

/* Elements per image of the executor's input and first output. */
int64_t distq_exec_input_numel(const distq_exec *e);
int64_t distq_exec_output_numel(const distq_exec *e);
/* The graph outputs: their count, and output k's per-image numel (0 outside)
 * and name (NULL outside). */
int distq_exec_n_outputs(const distq_exec *e);
int64_t distq_exec_output_numel_at(const distq_exec *e, int k);
const char *distq_exec_output_name(const distq_exec *e, int k);
int64_t distq_exec_batch(const distq_exec *e);

/* oneDNN's effective ISA, e.g. "avx512_core_bf16" (static text): the
 * highest level the CPU has, lowered by the cap if one is set. */
const char *distq_onednn_isa(void);
/* The ISA cap in effect, lower case ("avx2"): the one set by
 * distq_onednn_set_max_isa, else ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA from the
 * environment; "" when none is set. */
const char *distq_onednn_max_isa(void);
/* Caps oneDNN's ISA at `name` (avx2, avx2_vnni, avx512_core, avx512_core_vnni,
 * avx512_core_bf16, avx512_core_amx, all; any case), benchdnn's knob. Must
 * come before oneDNN creates a kernel or reports its ISA (distq_onednn_isa,
 * distq_onednn_has_vnni): DISTQ_ERR_UNSUPPORTED after that. */
distq_status distq_onednn_set_max_isa(const char *name);
/* 1 if a cap is set and the CPU lacks the capped level, so oneDNN runs a
 * lower one (e.g. cap avx512_core_amx on a CPU without AMX). */
int distq_onednn_isa_below_cap(void);
/* "2.6.3" (static text). */
const char *distq_onednn_version(void);
/* 1 if oneDNN's ISA multiplies u8 by s8 exactly (VNNI or AMX); 0 on AVX2 or
 * AVX-512 without VNNI, where pairwise s16 sums saturate (spec §5.9). */
int distq_onednn_has_vnni(void);
/* --- the trainer's oneDNN kernels (src/train makes no oneDNN call itself) ---
 * conv2d node i of g (f32 NCHW buffers, any groups, stride, dilation, pads)
 * on oneDNN's forward-training and backward primitives, made on first use for
 * a batch N and kept (a few N per node). fwd: y = conv(x, w) + b (b NULL iff
 * the node has no bias). bwd: dw and db (NULL: not wanted) are ADDED to, dx
 * (NULL: not wanted) is written, or added to with dx_add; nthreads for the
 * adds. */
typedef struct distq_onednn_train distq_onednn_train;
distq_status distq_onednn_train_create(int n_nodes, distq_onednn_train **out);
void distq_onednn_train_destroy(distq_onednn_train *d); /* NULL-safe */
distq_status distq_onednn_conv_train_fwd(distq_onednn_train *d, const distq_graph *g, int i, int64_t N, const float *x,
                                        const float *w, const float *b, float *y);
distq_status distq_onednn_conv_train_bwd(distq_onednn_train *d, const distq_graph *g, int i, int64_t N, const float *x,
                                        const float *w, const float *dy, float *dx, int dx_add, float *dw, float *db,
                                        int nthreads);
/* oneDNN's sgemm, C (M, N) = [C +] op(A) (M, K) * op(B) (K, N), row-major,
 * single-threaded inside the caller's OpenMP regions: 1 if oneDNN computed
 * it, 0 if it refused the arguments (the caller then computes it). */
int distq_onednn_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                       int64_t ldb, int accumulate, float *C, int64_t ldc);

/* Sets oneDNN/OpenMP threads; call before creating executors (oneDNN fixes a
 * primitive's work split when it is created). 0 = leave as is. */
distq_status distq_onednn_set_threads(int threads);

#ifdef __cplusplus
}
#endif
#endif
