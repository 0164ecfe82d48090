#ifndef DISTQ_BACKEND_ONEDNN_IMPL_H
#define DISTQ_BACKEND_ONEDNN_IMPL_H
/*
 * Internal machinery shared by the fp32 (exec_onednn.c) and int8
 * (exec_onednn_int8.c) oneDNN executors: the plan (steps, slots, fixed
 * memories), buffer planning, binding, run and value read-back. Not API.
 *
 * An executor's create() fills a plan:
 *
 *     distq_onednn_state_create(batch, caps..., n_values, &S); // engine, stream, tables
 *     ... emit steps: distq_onednn_new_slot/new_step/arg_slot/arg_mem ...
 *     distq_onednn_set_value(S, v, name, slot, why);          // per graph value
 *     distq_onednn_plan_buffers(S);                           // liveness
 *     distq_onednn_bind_memories(S);                          // allocate, resolve args
 *
 * and its run() is distq_onednn_run(S, input, output). A step runs either a
 * primitive or a small C function (the int8 input quantize); both read their
 * memories from the resolved arguments, so run() allocates nothing.
 *
 * Every named value's slot is pinned (keep_values, always on): it keeps its
 * own buffer until the next run, so get_value can read any value (the
 * calibrator reads them all, the int8 tests compare them all), and nothing
 * runs in place over a value; reordered copies still share buffers. Turning
 * the reuse on (keep_values 0) gained under 1% on resnet18 (fp32 and int8,
 * batch 1 and 50, 2 AVX2 cores): not worth values that read back stale.
 */
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "backend/exec_impl.h"

#define DISTQ_ONEDNN_MAX_ARGS 66 /* a concat of 64 sources in one primitive (densenet: up to 33) */

// --- errors -------------------------------------------------------------------

/* Records "file:line: ctx: call: oneDNN text (oneDNN x.y.z, isa ...)" and
 * returns the matching status (unimplemented -> UNSUPPORTED). */
distq_status distq_onednn_error(dnnl_status_t s, const char *file, int line, const char *call,
                                const char *ctx);

/* Needs `distq_status st`, `ctx` (a string naming what is being built) and a
 * `cleanup:` label, the function's single exit. */
#define CHECK(call)                                                               \
    do {                                                                          \
        dnnl_status_t s_ = (call);                                                \
        if (s_ != dnnl_success) {                                                 \
            st = distq_onednn_error(s_, __FILE__, __LINE__, #call, ctx);          \
            goto cleanup;                                                         \
        }                                                                         \
    } while (0)

/* For destroys in a cleanup block: records the first failure only. */
#define CHECK_CLEANUP(call)                                                       \
    do {                                                                          \
        dnnl_status_t s_ = (call);                                                \
        if (s_ != dnnl_success && st == DISTQ_OK)                                 \
            st = distq_onednn_error(s_, __FILE__, __LINE__, #call, ctx);          \
    } while (0)

#define TRY(expr)                                                                 \
    do {                                                                          \
        st = (expr);                                                              \
        if (st != DISTQ_OK) goto cleanup;                                         \
    } while (0)

// --- plan data ----------------------------------------------------------------

/* One argument of a step: an activation slot (resolved to its memory at the
 * end of create) or a fixed memory (weights, user pointer, zero point). */
typedef struct {
    int arg;           /* DNNL_ARG_* */
    int slot;          /* activation slot, or -1 */
    int writes;        /* 1 if the step writes the slot */
    dnnl_memory_t mem; /* used when slot < 0; borrowed from the state */
} distq_onednn_arg;

typedef struct distq_onednn_step distq_onednn_step;
/* A step done in plain C; it finds its memories in t->args (resolved). */
typedef distq_status (*distq_onednn_step_fn)(const distq_onednn_step *t);

struct distq_onednn_step {
    char name[DISTQ_NAME_MAX + 16]; /* node (or graph input/output), for messages */
    char impl[48];                  /* oneDNN's implementation ("brgconv:avx512_core_vnni"), for profiles */
    dnnl_primitive_t prim;          /* NULL and fn NULL: nothing to run (a view, an elided copy) */
    distq_onednn_step_fn fn;        /* a C step instead of a primitive */
    size_t scratch_size;            /* bytes of user scratchpad the primitive needs */
    int n_args;
    distq_onednn_arg pargs[DISTQ_ONEDNN_MAX_ARGS];
    int n_exec_args;
    dnnl_exec_arg_t args[DISTQ_ONEDNN_MAX_ARGS]; /* pargs resolved, plus the scratchpad */
    int inplace_dst, inplace_src;   /* slots that may share one buffer, or -1 */
    int is_copy;                    /* prim only copies inplace_src into inplace_dst */
    /* C step parameters (quantize, dequantize, the squeeze-excite gate): */
    float fn_scale;           /* quantize: 1/s; dequantize: s; gate: the input's s */
    float fn_out_inv;         /* gate: 1/s of a u8 output, 0 for an f32 one */
    int32_t fn_zp, fn_qmax;   /* the input's zero point (the output's for quantize), quant max */
    int32_t fn_out_zp;        /* gate: the u8 output's zero point */
    int64_t fn_count;         /* elements */
    int64_t fn_inner;         /* gate: elements per row (H * W in NCHW, C in NHWC) */
    int64_t fn_per_image;     /* gate: C * H * W */
    int fn_nhwc;              /* gate: x and the output are NHWC */
};

/* An activation tensor in one layout: a graph value, or a reordered copy or a
 * reinterpreting view of one. */
typedef struct {
    dnnl_memory_desc_t md; /* a concrete layout, never format any */
    int decided;           /* 0 only for a graph input until a consumer picks */
    int view_of;           /* slot whose buffer this one reinterprets, or -1 */
    int variant_of;        /* slot this one is a reordered copy of, or -1 */
    int pinned;            /* a value kept readable until the next run: no reuse, no in place */
    int last_use;          /* last step reading it, -1 if none */
    int buf;               /* activation buffer, -1 until plan_buffers */
    dnnl_memory_t mem;
} distq_onednn_slot;

typedef struct {
    size_t size; /* bytes */
    int end;     /* last step that needs the contents */
    int busy;
    void *data;
} distq_onednn_buffer;

/* A named graph value as get_value sees it. */
typedef struct {
    char *name;                  /* the executor's copy (it keeps nothing of the graph) */
    int slot;                    /* its data (any layout), or -1 */
    char why[2 * DISTQ_NAME_MAX + 64]; /* slot < 0: why it is not materialized */
} distq_onednn_value;

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int64_t batch;
    int keep_values; /* pin every value's slot (get_value reads any value); always 1 */
    int n_steps, cap_steps;
    distq_onednn_step *steps; /* execution order */
    int n_slots, cap_slots;
    distq_onednn_slot *slots;
    int n_bufs;
    distq_onednn_buffer *bufs;
    int n_fixed, cap_fixed;
    dnnl_memory_t *fixed; /* weights, biases, zero points, user memories, scratchpad */
    void **fixed_data;    /* owned data of fixed[i], or NULL */
    dnnl_memory_t user_in, user_out; /* plain f32; handles set by run() */
    dnnl_memory_t scratch;           /* shared user scratchpad, NULL if unused */
    size_t scratch_size;
    int n_values;
    distq_onednn_value *values; /* for get_value */
    int *value_slot;            /* per graph value, during create: slot or -1 */
} distq_onednn_state;

// --- state --------------------------------------------------------------------

/* Allocates S's tables (caps for steps, slots, fixed memories; n_values named
 * values) and creates the engine and stream. */
distq_status distq_onednn_state_create(int64_t batch, int cap_steps, int cap_slots, int cap_fixed,
                                       int n_values, distq_onednn_state **out);
/* Destroys everything and returns the first failure. quiet: leave the
 * thread's error message alone (create's failure path). NULL is a no-op. */
distq_status distq_onednn_state_free(distq_onednn_state *S, int quiet);

// --- small helpers ------------------------------------------------------------

/* dnnl_a .. dnnl_abcde for 1..5 dims, else format_tag_undef. */
dnnl_format_tag_t distq_onednn_plain_tag(int ndim);

/* Adds a pooling step of op from slot s_src to a new slot *s_dst: max or
 * average pooling with PyTorch's window (ceil_mode through the right
 * padding), or the global average to 1x1 (adaptive_avg_pool2d). dt is the
 * src and dst data type. */
distq_status distq_onednn_emit_pool(distq_onednn_state *S, const char *name, distq_op op, const distq_attrs *a,
                                    const dnnl_dims_t src_dims, const dnnl_dims_t dst_dims, dnnl_data_type_t dt,
                                    int s_src, const char *ctx, int *s_dst);

/* A conv's geometry in oneDNN terms from PyTorch's: weights (OC, IC/G, KH, KW)
 * as a grouped (G, OC/G, IC/G, KH, KW) descriptor when G > 1, bias (OC),
 * dilation counted from 0, padding before (pad_l) and after (pad_r). */
typedef struct {
    dnnl_dims_t w_dims, b_dims, strides, dil, pad_l, pad_r;
    int w_ndim;
} distq_onednn_conv_geom;
void distq_onednn_conv_geometry(const distq_attrs *a, const int64_t *wdims, distq_onednn_conv_geom *out);
/* One conv or inner-product primitive, fp32 or int8: what differs is the
 * data types, the attributes (post-ops, or scales and zero points) and the
 * bias data. */
typedef struct {
    dnnl_data_type_t src, wei, dst;
    const void *weights; /* in wei's type, (OC, IC/G, KH, KW) */
    const float *bias;   /* (OC) f32, or NULL */
} distq_onednn_weighted_spec;
typedef struct {
    dnnl_primitive_desc_t pd; /* the caller destroys it */
    dnnl_memory_desc_t dst_md;
    dnnl_memory_t w_mem, b_mem;
    int s_src, s_dst;
} distq_onednn_weighted_parts;
/* Builds node n's conv (4-D src and dst at S's batch, layouts left to oneDNN):
 * the primitive descriptor with attr, n's input slot in the layout it chose,
 * the weights and bias as fixed memories and a new dst slot. Add any
 * residual copy into s_dst, then distq_onednn_weighted_step. */
distq_status distq_onednn_conv_begin(distq_onednn_state *S, const distq_graph *g, const distq_node *n,
                                     const distq_onednn_weighted_spec *spec, const_dnnl_primitive_attr_t attr,
                                     const char *ctx, distq_onednn_weighted_parts *out);
/* Builds an inner product (linear) reading slot s_in, named src_name, as it
 * is (a flatten's 4-D input included: weights (OUT, IN) are viewed as (OUT,
 * C, H, W), the same bytes); only where oneDNN has no kernel for that layout
 * it chooses one and s_in is reordered. dst (rows of s_in, OUT) in spec->dst. */
distq_status distq_onednn_ip_begin(distq_onednn_state *S, int s_in, const char *src_name, int64_t out_features,
                                   const distq_onednn_weighted_spec *spec, const_dnnl_primitive_attr_t attr,
                                   const char *ctx, distq_onednn_weighted_parts *out);
/* The primitive's step, named after n, with src, weights, bias and dst bound. */
distq_status distq_onednn_weighted_step(distq_onednn_state *S, const distq_node *n,
                                    const distq_onednn_weighted_parts *c, const char *ctx,
                                    distq_onednn_step **out);
/* Copies the md a primitive descriptor chose. */
distq_status distq_onednn_query_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index,
                                   dnnl_memory_desc_t *out, const char *ctx);
/* New attributes with the user scratchpad mode (every primitive of a plan). */
distq_status distq_onednn_attr_create(const char *ctx, dnnl_primitive_attr_t *out);
/* Right padding that makes oneDNN's floor formula give PyTorch's pooling out
 * size (ceil_mode included; padding never wins a max): pad_end where it does. */
int64_t distq_onednn_pool_pad_r(int64_t in, int64_t out, int64_t ext, int64_t stride,
                                int64_t pad_l, int64_t pad_end);

// --- plan building blocks -----------------------------------------------------

distq_status distq_onednn_new_slot(distq_onednn_state *S, const dnnl_memory_desc_t *md, int *out);
distq_status distq_onednn_new_step(distq_onednn_state *S, const char *name,
                                   distq_onednn_step **out);
void distq_onednn_arg_slot(distq_onednn_step *t, int arg, int s, int writes);
void distq_onednn_arg_mem(distq_onednn_step *t, int arg, dnnl_memory_t mem);
/* Creates the step's primitive from pd and notes its scratchpad size. */
distq_status distq_onednn_step_set_prim(distq_onednn_step *t, const_dnnl_primitive_desc_t pd,
                                        const char *ctx);
/* A new step running a reorder from src_md to dst_md (attr may be NULL: plain
 * copy; it gets the user scratchpad mode either way); the caller adds args. */
/* Adds the copy of a residual (slot s_from) into a conv's dst slot before the
 * conv runs, for its sum post-op; marked so the copy is skipped when the two
 * slots end up sharing a buffer. */
distq_status distq_onednn_add_residual_copy(distq_onednn_state *S, const char *name, int s_from, int s_dst,
                                            const dnnl_memory_desc_t *dst_md, const char *ctx);
distq_status distq_onednn_add_reorder(distq_onednn_state *S, const char *name,
                                      const dnnl_memory_desc_t *src_md,
                                      const dnnl_memory_desc_t *dst_md, dnnl_primitive_attr_t attr,
                                      const char *ctx, distq_onednn_step **out);
/* A fixed memory in layout md, owned by the state. alloc: give it its own
 * buffer (else none: the user memories, whose handle run() sets). user_data
 * (optional, laid out as user_md) is reordered into it now: this is how
 * weights, biases and zero points are frozen. */
distq_status distq_onednn_make_fixed(distq_onednn_state *S, const dnnl_memory_desc_t *md,
                                     const dnnl_memory_desc_t *user_md, const void *user_data,
                                     int alloc, const char *ctx, dnnl_memory_t *out);
/* A plain (dims) parameter of data type dt copied into layout md. */
distq_status distq_onednn_make_param(distq_onednn_state *S, const dnnl_memory_desc_t *md, int ndim,
                                     const dnnl_dims_t user_dims, dnnl_data_type_t dt,
                                     const void *data, const char *ctx, dnnl_memory_t *out);
/* The layout of slot s for ops that take their input as it is; an undecided
 * input slot becomes what it is (plain). */
const dnnl_memory_desc_t *distq_onednn_slot_md(distq_onednn_state *S, int s);
/* The slot holding slot s's tensor in layout md: s itself, a variant made for
 * an earlier consumer, or a new variant with a reorder step. An undecided
 * input slot adopts md. */
distq_status distq_onednn_slot_as(distq_onednn_state *S, int s, const dnnl_memory_desc_t *md,
                                  const char *name, const char *ctx, int *out);
/* Names value i (0 <= i < n_values) for get_value and pins its slot (with
 * keep_values); slot -1 with the reason get_value reports. Before
 * plan_buffers. */
/* A value's dims at batch N: (N, C, H, W), (N, F), ... */
void distq_onednn_value_dims(const distq_value *v, int64_t batch, dnnl_dims_t out);
/* For messages: "node 'layer1.0.conv1' (conv2d, input 'relu' (2, 64, 56, 56) u8)". */
void distq_onednn_node_ctx(const distq_graph *g, const distq_node *n, int64_t batch, char *buf,
                           size_t len);
/* distq_exec_i's run, get_value and destroy over a distq_onednn_state. */
/* Appends elementwise op (relu, clip, hardswish, silu, gelu, ...) with its
 * attributes a to ops as oneDNN eltwise post-ops (one or two). */
distq_status distq_onednn_append_eltwise(dnnl_post_ops_t ops, distq_op op, const distq_attrs *a, const char *ctx);
/* A new slot viewing s_src's buffer as view_md (same bytes, other dims or
 * strides), and the marker step where the view starts to live. */
distq_status distq_onednn_view_step(distq_onednn_state *S, const char *name, int s_src,
                                    const dnnl_memory_desc_t *view_md, int *s_view);
/* fp32 node i of a quantized graph as its own primitive (exec_onednn.c's
 * emitters; the int8 executor calls it for the nodes left in fp32). */
distq_status distq_onednn_emit_f32_node(distq_onednn_state *S, const distq_graph *g, int i);
distq_status distq_onednn_exec_run(void *state, const float *input, float *output);
distq_status distq_onednn_exec_get_value(void *state, const char *name, void *out);
distq_status distq_onednn_exec_profile(void *state, const float *input, float *output, int iters,
                                       distq_profile_step **steps, int *n_steps, double *wall_s);
void distq_onednn_exec_destroy(void *state);
distq_status distq_onednn_set_value(distq_onednn_state *S, int i, const char *name, int slot,
                                    const char *why);

// --- finishing and running ----------------------------------------------------

/* Gives every slot a buffer by liveness (pinned slots keep theirs to the end,
 * views share their source's, in-place candidates their source's when it dies
 * at that step: a pure copy then disappears). */
distq_status distq_onednn_plan_buffers(distq_onednn_state *S);
/* Allocates buffers and the scratchpad, makes each slot's memory and resolves
 * every step's arguments. */
distq_status distq_onednn_bind_memories(distq_onednn_state *S);
/* Points the user memories at input/output and runs the steps. */
distq_status distq_onednn_run(distq_onednn_state *S, const float *input, float *output);
/* Copies value `name` of the last run, plain row-major in its own data type,
 * into out. DISTQ_ERR_UNSUPPORTED (with the reason) for a value never
 * materialized, DISTQ_ERR_INVALID_ARG for an unknown name. */
distq_status distq_onednn_get_value(distq_onednn_state *S, const char *name, void *out);

/* For tests ("teacher forcing": each layer fed the reference's values):
 * run() that calls on_value(ctx, name) right after each value is computed,
 * and the inverse of get_value, which overwrites a value's slot with plain
 * data (in: read only). Only between steps, from on_value. */
distq_status distq_onednn_run_observed(distq_onednn_state *S, const float *input, float *output,
                                       distq_status (*on_value)(void *ctx, const char *name),
                                       void *ctx);
distq_status distq_onednn_put_value(distq_onednn_state *S, const char *name, const void *in);

#endif
