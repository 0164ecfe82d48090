#ifndef DISTQ_REF_IMPL_H
#define DISTQ_REF_IMPL_H
/* Internal to the plain-C reference executor: its state and kernel type,
 * shared by the f32 kernels (exec_ref.c) and the int8 ones (exec_ref_int8.c). */
#include "distq/graph.h"

typedef struct {
    distq_graph *g; /* private copy */
    int64_t N;
    void **vals; /* one buffer per value, N x per-image numel of its dtype (f32 or u8) */
} ref_state;

/* Computes node n's output; count is its element count for the batch. */
typedef void (*ref_kernel)(const ref_state *s, const distq_node *n, int64_t count);

/* The elementwise ops (relu, clip, hardswish, silu, gelu, ...) one value at
 * a time with the op's attributes: the f32 kernels and the int8 post-ops. */
typedef float (*distq_ref_scalar_fn)(const distq_attrs *a, float x);
distq_ref_scalar_fn distq_ref_scalar(distq_op op); /* NULL: not elementwise */

/* Kernels that move elements without arithmetic, for f32 and u8 alike (a u8
 * one shares its input's qparams): concat, transpose, slice, and the copy
 * of flatten / reshape. */
void distq_ref_concat(const ref_state *s, const distq_node *n, int64_t count);
void distq_ref_transpose(const ref_state *s, const distq_node *n, int64_t count);
void distq_ref_slice(const ref_state *s, const distq_node *n, int64_t count);
void distq_ref_copy(const ref_state *s, const distq_node *n, int64_t count);

/* Kernels for nodes that read u8 or quantize: a conv2d / linear on a u8 input,
 * pools and flatten on u8, quantize and dequantize. NULL where none. */
extern const ref_kernel distq_ref_int8_kernels[DISTQ_OP_COUNT];

#endif
