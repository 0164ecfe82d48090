/*
 * The frozen fp32 oneDNN executor (distq_exec_onednn_i).
 *
 * create() does all the work once per graph and batch size:
 *   1. clone the graph (the executor keeps nothing of the caller's) and fold
 *      BN into the preceding conv (distq_pass_fold_bn);
 *   2. group nodes into fused primitives (plan_groups):
 *        conv2d [+ add as a sum post-op] [+ relu post-op]
 *        [flatten +] linear [+ relu]    add [+ relu]    batch_norm [+ relu]
 *   3. emit the plan, one emit_* function per op kind: a list of steps
 *      (primitive + arguments) in execution order. Layouts come from oneDNN
 *      (format_tag any); activations stay in the chosen layout, and a reorder
 *      appears only at the graph input, at the output, and where a consumer
 *      really wants another layout. Weights are reordered once, here;
 *   4. give activation slots buffers by liveness (plan_buffers), reusing dead
 *      buffers and running eltwise/binary/bn and the sum post-op's operand in
 *      place when the source is not read afterwards;
 *   5. allocate everything, including one user-mode scratchpad sized to the
 *      largest primitive's need.
 * run() points the two user memories at the caller's arrays and executes the
 * steps: no allocation, no weight reorder. Activation buffers belong to the
 * executor, so one run at a time per executor.
 *
 * Not here: int8 (exec_onednn_int8.c), training, broadcasting adds, reading
 * back intermediate values (get_value: buffers are reused by liveness).
 * Every dnnl_* call of the project lives under src/backend/onednn (STYLE.md).
 */
#include <assert.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "backend/exec_impl.h"
#include "distq/passes.h"
#include "distq/tensor.h"

#define MAX_ARGS 8

// --- plan data ----------------------------------------------------------------

/* One argument of a step: an activation slot (resolved to its memory at the
 * end of create) or a fixed memory (weights, user pointer, scratchpad). */
typedef struct {
    int arg;           /* DNNL_ARG_* */
    int slot;          /* activation slot, or -1 */
    int writes;        /* 1 if the step writes the slot */
    dnnl_memory_t mem; /* used when slot < 0; borrowed from the state */
} plan_arg;

typedef struct {
    char name[DISTQ_NAME_MAX + 16]; /* node (or graph input/output), for messages */
    dnnl_primitive_t prim;          /* NULL: nothing to run (a view, or an elided copy) */
    size_t scratch_size;            /* bytes of user scratchpad the primitive needs */
    int n_args;
    plan_arg pargs[MAX_ARGS];
    int n_exec_args;
    dnnl_exec_arg_t args[MAX_ARGS]; /* pargs resolved, plus the scratchpad: what run() passes */
    int inplace_dst, inplace_src;   /* slots that may share one buffer, or -1 */
    int is_copy;                    /* prim only copies inplace_src into inplace_dst */
} step;

/* An activation tensor in one layout: a graph value, or a reordered copy or a
 * reinterpreting view of one. */
typedef struct {
    dnnl_memory_desc_t md; /* a concrete layout, never format any */
    int decided;           /* 0 only for the graph input until a consumer picks */
    int view_of;           /* slot whose buffer this one reinterprets, or -1 */
    int variant_of;        /* slot this one is a reordered copy of, or -1 */
    int last_use;          /* last step reading it, -1 if none */
    int buf;               /* activation buffer, -1 until plan_buffers */
    dnnl_memory_t mem;
} slot;

typedef struct {
    size_t size; /* bytes */
    int end;     /* last step that needs the contents */
    int busy;
    void *data;
} act_buffer;

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int64_t batch;
    int n_steps, cap_steps;
    step *steps; /* execution order; [0] reorders the user input */
    int n_slots, cap_slots;
    slot *slots; /* [0] is the graph input */
    int n_bufs;
    act_buffer *bufs;
    int n_fixed, cap_fixed;
    dnnl_memory_t *fixed; /* weights, biases, BN stats, user memories, scratchpad */
    void **fixed_data;    /* owned data of fixed[i], or NULL */
    dnnl_memory_t user_in, user_out; /* plain f32; handles set by run() */
    dnnl_memory_t scratch;           /* shared user scratchpad, NULL if unused */
    size_t scratch_size;
    int *value_slot; /* per graph value; create() only */
} onednn_state;

/* Nodes that run as one primitive. */
typedef struct {
    int head;    /* node whose primitive runs */
    int flatten; /* flatten feeding the linear head directly, or -1 */
    int add;     /* add done as the conv head's sum post-op, or -1 */
    int relu;    /* relu done as a post-op, or -1 */
} group;

// --- errors -------------------------------------------------------------------

static distq_status dnnl_error(dnnl_status_t s, const char *file, int line, const char *call,
                               const char *ctx)
{
    distq_status st = s == dnnl_unimplemented  ? DISTQ_ERR_UNSUPPORTED
                      : s == dnnl_out_of_memory ? DISTQ_ERR_NOMEM
                                                : DISTQ_ERR_DNNL;
    int call_len = (int)strcspn(call, "(");
    return distq_error_set(st, "%s:%d: %s: %.*s: %s (oneDNN %d.%d.%d, isa %s)", file, line, ctx,
                           call_len, call, dnnl_status2str(s), DNNL_VERSION_MAJOR,
                           DNNL_VERSION_MINOR, DNNL_VERSION_PATCH, distq_onednn_isa());
}

/* Needs `distq_status st`, `const char *ctx` (what is being built) and a
 * `cleanup:` label, the function's single exit. */
#define CHECK(call)                                                               \
    do {                                                                          \
        dnnl_status_t s_ = (call);                                                \
        if (s_ != dnnl_success) {                                                 \
            st = dnnl_error(s_, __FILE__, __LINE__, #call, ctx);                  \
            goto cleanup;                                                         \
        }                                                                         \
    } while (0)

/* For destroys in a cleanup block: records the first failure only. */
#define CHECK_CLEANUP(call)                                                       \
    do {                                                                          \
        dnnl_status_t s_ = (call);                                                \
        if (s_ != dnnl_success && st == DISTQ_OK)                                 \
            st = dnnl_error(s_, __FILE__, __LINE__, #call, ctx);                  \
    } while (0)

#define TRY(expr)                                                                 \
    do {                                                                          \
        st = (expr);                                                              \
        if (st != DISTQ_OK) goto cleanup;                                         \
    } while (0)

// --- ISA and threads ----------------------------------------------------------

const char *distq_onednn_isa(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_all: return "all";
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    }
    return "unknown";
}

/* Debian builds oneDNN with OpenMP, so its thread count is OpenMP's. oneDNN's
 * JIT kernels split work by the thread count seen when the primitive is
 * created, so call this before distq_exec_create. */
distq_status distq_onednn_set_threads(int threads)
{
#if DNNL_CPU_THREADING_RUNTIME != DNNL_RUNTIME_OMP
#error "exec_onednn.c assumes oneDNN's OpenMP CPU runtime (Debian's build)"
#endif
    if (threads < 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "oneDNN thread count %d < 0", threads);
    if (threads > 0) omp_set_num_threads(threads);
    return DISTQ_OK;
}

// --- small helpers ------------------------------------------------------------

static dnnl_format_tag_t plain_tag(int ndim)
{
    switch (ndim) {
    case 1: return dnnl_a;
    case 2: return dnnl_ab;
    case 4: return dnnl_abcd;
    case 5: return dnnl_abcde;
    }
    return dnnl_format_tag_undef;
}

/* A value's dims for batch N: (N, C, H, W) or (N, F). */
static void value_dims(const distq_value *v, int64_t batch, dnnl_dims_t out)
{
    for (int i = 0; i < v->ndim; i++) out[i] = v->dims[i];
    out[0] = batch;
}

/* "node 'layer1.0.conv1' (conv2d, input (2, 64, 56, 56))" */
static void node_ctx(const distq_graph *g, const distq_node *n, int64_t batch, char *buf,
                     size_t len)
{
    const distq_value *in = &g->values[n->inputs[0]];
    int64_t dims[DISTQ_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++) dims[i] = in->dims[i];
    dims[0] = batch;
    char shape[96];
    distq_dims_format(in->ndim, dims, shape, sizeof shape);
    snprintf(buf, len, "node '%s' (%s, input %s)", n->name, distq_op_name(n->op), shape);
}

static const distq_tensor *node_param(const distq_graph *g, const distq_node *n, int which)
{
    return n->params[which] >= 0 ? &g->params[n->params[which]] : NULL;
}

/* Copies the md a primitive descriptor chose. */
static distq_status query_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index,
                             dnnl_memory_desc_t *out, const char *ctx)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
    if (!md)
        return distq_error_set(DISTQ_ERR_DNNL, "%s: oneDNN returned no memory desc (query %d)",
                               ctx, (int)what);
    *out = *md;
    return DISTQ_OK;
}

/* Attributes every primitive gets: user scratchpad, and the post-ops. */
static distq_status make_attr(int sum, int relu, const char *ctx, dnnl_primitive_attr_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (sum || relu) {
        CHECK(dnnl_post_ops_create(&ops));
        if (sum) CHECK(dnnl_post_ops_append_sum(ops, 1.0f));
        if (relu) CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    *out = attr;
    attr = NULL;
cleanup:
    if (ops) CHECK_CLEANUP(dnnl_post_ops_destroy(ops));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

// --- plan building blocks -----------------------------------------------------

static distq_status new_slot(onednn_state *S, const dnnl_memory_desc_t *md, int *out)
{
    if (S->n_slots == S->cap_slots)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: slot table full");
    slot *s = &S->slots[S->n_slots];
    memset(s, 0, sizeof *s);
    s->md = *md;
    s->decided = 1;
    s->view_of = s->variant_of = -1;
    s->last_use = s->buf = -1;
    *out = S->n_slots++;
    return DISTQ_OK;
}

static distq_status new_step(onednn_state *S, const char *name, step **out)
{
    if (S->n_steps == S->cap_steps)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: step table full");
    step *t = &S->steps[S->n_steps++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->inplace_dst = t->inplace_src = -1;
    *out = t;
    return DISTQ_OK;
}

static void arg_slot(step *t, int arg, int s, int writes)
{
    assert(t->n_args < MAX_ARGS);
    t->pargs[t->n_args++] = (plan_arg){.arg = arg, .slot = s, .writes = writes, .mem = NULL};
}

static void arg_mem(step *t, int arg, dnnl_memory_t mem)
{
    assert(t->n_args < MAX_ARGS);
    t->pargs[t->n_args++] = (plan_arg){.arg = arg, .slot = -1, .writes = 0, .mem = mem};
}

/* Creates the step's primitive from pd and notes its scratchpad size. */
static distq_status step_set_prim(step *t, const_dnnl_primitive_desc_t pd, const char *ctx)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_desc_t scratch_md;
    TRY(query_md(pd, dnnl_query_scratchpad_md, 0, &scratch_md, ctx));
    t->scratch_size = dnnl_memory_desc_get_size(&scratch_md);
    CHECK(dnnl_primitive_create(&t->prim, pd));
cleanup:
    return st;
}

/* A new step running a reorder from src_md to dst_md; the caller adds args. */
static distq_status add_reorder(onednn_state *S, const char *name, const dnnl_memory_desc_t *src_md,
                                const dnnl_memory_desc_t *dst_md, const char *ctx, step **out)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    TRY(make_attr(0, 0, ctx, &attr));
    CHECK(dnnl_reorder_primitive_desc_create(&pd, src_md, S->engine, dst_md, S->engine, attr));
    TRY(new_step(S, name, out));
    TRY(step_set_prim(*out, pd, ctx));
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* A fixed memory in layout md, owned by the state. alloc: give it its own
 * buffer (else no buffer: the user memories, whose handle run() sets).
 * user_data (optional, laid out as user_md) is reordered into it now: this is
 * how weights, biases and BN statistics are frozen. */
static distq_status make_fixed(onednn_state *S, const dnnl_memory_desc_t *md,
                               const dnnl_memory_desc_t *user_md, const void *user_data,
                               int alloc, const char *ctx, dnnl_memory_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t reorder = NULL;
    if (S->n_fixed == S->cap_fixed)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: fixed table full");
    int i = S->n_fixed;
    void *data = NULL;
    if (alloc) {
        size_t nbytes = dnnl_memory_desc_get_size(md);
        data = distq_malloc(nbytes ? nbytes : 1);
        if (!data) return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory (%zu bytes)", ctx, nbytes);
    }
    S->fixed_data[i] = data;
    S->fixed[i] = NULL;
    S->n_fixed++;
    CHECK(dnnl_memory_create(&S->fixed[i], md, S->engine, data));
    if (user_data) {
        dnnl_exec_arg_t args[2];
        CHECK(dnnl_memory_create(&user, user_md, S->engine, (void *)user_data));
        CHECK(dnnl_reorder_primitive_desc_create(&pd, user_md, S->engine, md, S->engine, NULL));
        CHECK(dnnl_primitive_create(&reorder, pd));
        args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, user};
        args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, S->fixed[i]};
        CHECK(dnnl_primitive_execute(reorder, S->stream, 2, args));
        CHECK(dnnl_stream_wait(S->stream));
    }
    *out = S->fixed[i];
cleanup:
    if (reorder) CHECK_CLEANUP(dnnl_primitive_destroy(reorder));
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (user) CHECK_CLEANUP(dnnl_memory_destroy(user));
    return st;
}

/* A plain (dims) f32 parameter copied into layout md. */
static distq_status make_param(onednn_state *S, const dnnl_memory_desc_t *md, int ndim,
                               const dnnl_dims_t user_dims, const float *data, const char *ctx,
                               dnnl_memory_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_desc_t user_md;
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, ndim, user_dims, dnnl_f32, plain_tag(ndim)));
    TRY(make_fixed(S, md, &user_md, data, 1, ctx, out));
cleanup:
    return st;
}

/* The layout of slot s for ops that take their input as it is; the graph
 * input, if no consumer has picked its layout yet, becomes plain. */
static const dnnl_memory_desc_t *slot_md(onednn_state *S, int s)
{
    S->slots[s].decided = 1;
    return &S->slots[s].md;
}

/* The slot holding slot s's tensor in layout md: s itself, a variant made for
 * an earlier consumer, or a new variant with a reorder step. The undecided
 * graph input adopts md (its one reorder then happens at step 0). */
static distq_status slot_as(onednn_state *S, int s, const dnnl_memory_desc_t *md,
                            const char *name, const char *ctx, int *out)
{
    distq_status st = DISTQ_OK;
    slot *src = &S->slots[s];
    if (!src->decided) {
        src->md = *md;
        src->decided = 1;
    }
    if (dnnl_memory_desc_equal(&src->md, md)) {
        *out = s;
        return DISTQ_OK;
    }
    for (int i = 0; i < S->n_slots; i++) {
        if (S->slots[i].variant_of == s && dnnl_memory_desc_equal(&S->slots[i].md, md)) {
            *out = i;
            return DISTQ_OK;
        }
    }
    int v = -1;
    step *t = NULL;
    TRY(new_slot(S, md, &v));
    S->slots[v].variant_of = s;
    TRY(add_reorder(S, name, &S->slots[s].md, md, ctx, &t));
    arg_slot(t, DNNL_ARG_FROM, s, 0);
    arg_slot(t, DNNL_ARG_TO, v, 1);
    *out = v;
cleanup:
    return st;
}

/* The value a group produces: relu's, else add's, else the head's. */
static int group_output(const distq_graph *g, const group *gr)
{
    if (gr->relu >= 0) return g->nodes[gr->relu].output;
    if (gr->add >= 0) return g->nodes[gr->add].output;
    return g->nodes[gr->head].output;
}

// --- emitters: one per op kind ------------------------------------------------

/* conv2d [+ add as sum post-op] [+ relu]. For the sum, the add's other operand
 * is first copied into the conv's dst; plan_buffers drops that copy and uses
 * the operand's buffer in place when nothing reads the operand afterwards. */
static distq_status emit_conv(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_attrs *a = &n->attr;
    const distq_tensor *w = node_param(g, n, DISTQ_PARAM_WEIGHT);
    const distq_tensor *b = node_param(g, n, DISTQ_PARAM_BIAS);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    node_ctx(g, n, S->batch, ctx, sizeof ctx);

    dnnl_dims_t src_dims, dst_dims, w_dims, b_dims, strides, dil, pad_l, pad_r;
    value_dims(&g->values[n->inputs[0]], S->batch, src_dims);
    value_dims(&g->values[n->output], S->batch, dst_dims);
    const int64_t G = a->groups, OC = w->dims[0];
    int w_ndim = G == 1 ? 4 : 5;
    if (G == 1) {
        for (int i = 0; i < 4; i++) w_dims[i] = w->dims[i];
    } else { /* (G, OC/G, IC/G, KH, KW): the same bytes as (OC, IC/G, KH, KW) */
        w_dims[0] = G;
        w_dims[1] = OC / G;
        for (int i = 1; i < 4; i++) w_dims[i + 1] = w->dims[i];
    }
    b_dims[0] = OC;
    for (int i = 0; i < 2; i++) {
        strides[i] = a->stride[i];
        dil[i] = a->dilation[i] - 1; /* oneDNN counts the gaps: 0 = dense */
        pad_l[i] = pad_r[i] = a->padding[i];
    }

    dnnl_memory_desc_t src_md, w_md, b_md, dst_md;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, w_ndim, w_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
    dnnl_convolution_desc_t cd;
    CHECK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                     dnnl_convolution_direct, &src_md, &w_md,
                                                     b ? &b_md : NULL, &dst_md, strides, dil,
                                                     pad_l, pad_r));
    TRY(make_attr(gr->add >= 0, gr->relu >= 0, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &cd, attr, S->engine, NULL));
    TRY(query_md(pd, dnnl_query_src_md, 0, &src_md, ctx));
    TRY(query_md(pd, dnnl_query_weights_md, 0, &w_md, ctx));
    TRY(query_md(pd, dnnl_query_weights_md, 1, &b_md, ctx));
    TRY(query_md(pd, dnnl_query_dst_md, 0, &dst_md, ctx));

    int s_src = -1, s_dst = -1;
    dnnl_memory_t w_mem = NULL, b_mem = NULL;
    TRY(slot_as(S, S->value_slot[n->inputs[0]], &src_md, n->name, ctx, &s_src));
    TRY(make_param(S, &w_md, w_ndim, w_dims, w->data, ctx, &w_mem));
    if (b) TRY(make_param(S, &b_md, 1, b_dims, b->data, ctx, &b_mem));
    TRY(new_slot(S, &dst_md, &s_dst));

    step *t = NULL;
    if (gr->add >= 0) {
        const distq_node *add = &g->nodes[gr->add];
        int other_v = add->inputs[0] == n->output ? add->inputs[1] : add->inputs[0];
        int s_other = S->value_slot[other_v];
        const dnnl_memory_desc_t *other_md = slot_md(S, s_other);
        TRY(add_reorder(S, add->name, other_md, &dst_md, ctx, &t));
        arg_slot(t, DNNL_ARG_FROM, s_other, 0);
        arg_slot(t, DNNL_ARG_TO, s_dst, 1);
        t->inplace_dst = s_dst;
        t->inplace_src = s_other;
        t->is_copy = 1;
    }
    TRY(new_step(S, n->name, &t));
    TRY(step_set_prim(t, pd, ctx));
    arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    arg_mem(t, DNNL_ARG_WEIGHTS, w_mem);
    if (b_mem) arg_mem(t, DNNL_ARG_BIAS, b_mem);
    arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    S->value_slot[group_output(g, gr)] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* [flatten +] linear [+ relu]: an inner product. After a flatten the inner
 * product reads the 4-D tensor directly, with weights (OUT, IN) viewed as
 * (OUT, C, H, W): flatten(x, 1) orders features C, H, W. */
static distq_status emit_linear(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_node *first = gr->flatten >= 0 ? &g->nodes[gr->flatten] : n;
    const distq_tensor *w = node_param(g, n, DISTQ_PARAM_WEIGHT);
    const distq_tensor *b = node_param(g, n, DISTQ_PARAM_BIAS);
    const distq_value *in = &g->values[first->inputs[0]];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    node_ctx(g, first, S->batch, ctx, sizeof ctx);

    dnnl_dims_t src_dims, w_dims, b_dims, dst_dims;
    value_dims(in, S->batch, src_dims);
    value_dims(&g->values[n->output], S->batch, dst_dims);
    w_dims[0] = b_dims[0] = w->dims[0];
    for (int i = 1; i < in->ndim; i++) w_dims[i] = in->dims[i]; /* (OUT, C, H, W) or (OUT, IN) */
    if (distq_value_numel(in, 1) != w->dims[1]) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: %lld input features, weight wants %lld",
                             ctx, (long long)distq_value_numel(in, 1), (long long)w->dims[1]);
        goto cleanup;
    }

    dnnl_memory_desc_t src_md, w_md, b_md, dst_md;
    int s_in = S->value_slot[first->inputs[0]];
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, in->ndim, w_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 2, dst_dims, dnnl_f32, dnnl_format_tag_any));
    TRY(make_attr(0, gr->relu >= 0, ctx, &attr));
    /* Take the source as it is; only if oneDNN has no kernel for that layout
     * let it choose one and reorder. */
    dnnl_inner_product_desc_t ipd;
    src_md = *slot_md(S, s_in);
    CHECK(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src_md, &w_md,
                                               b ? &b_md : NULL, &dst_md));
    dnnl_status_t s = dnnl_primitive_desc_create(&pd, &ipd, attr, S->engine, NULL);
    if (s == dnnl_unimplemented) {
        CHECK(dnnl_memory_desc_init_by_tag(&src_md, in->ndim, src_dims, dnnl_f32,
                                           dnnl_format_tag_any));
        CHECK(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src_md, &w_md,
                                                   b ? &b_md : NULL, &dst_md));
        s = dnnl_primitive_desc_create(&pd, &ipd, attr, S->engine, NULL);
    }
    CHECK(s);
    TRY(query_md(pd, dnnl_query_src_md, 0, &src_md, ctx));
    TRY(query_md(pd, dnnl_query_weights_md, 0, &w_md, ctx));
    TRY(query_md(pd, dnnl_query_weights_md, 1, &b_md, ctx));
    TRY(query_md(pd, dnnl_query_dst_md, 0, &dst_md, ctx));

    int s_src = -1, s_dst = -1;
    dnnl_memory_t w_mem = NULL, b_mem = NULL;
    TRY(slot_as(S, s_in, &src_md, first->name, ctx, &s_src));
    TRY(make_param(S, &w_md, in->ndim, w_dims, w->data, ctx, &w_mem)); /* same bytes as (OUT, IN) */
    if (b) TRY(make_param(S, &b_md, 1, b_dims, b->data, ctx, &b_mem));
    TRY(new_slot(S, &dst_md, &s_dst));
    step *t = NULL;
    TRY(new_step(S, n->name, &t));
    TRY(step_set_prim(t, pd, ctx));
    arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    arg_mem(t, DNNL_ARG_WEIGHTS, w_mem);
    if (b_mem) arg_mem(t, DNNL_ARG_BIAS, b_mem);
    arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    S->value_slot[group_output(g, gr)] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* A flatten that does not feed a linear: reorder to plain (if needed), then
 * reinterpret the same buffer as (N, C*H*W). */
static distq_status emit_flatten(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_value *in = &g->values[n->inputs[0]];
    node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int s_in = S->value_slot[n->inputs[0]];
    if (in->ndim == 2) { /* flatten(x, 1) of (N, F) is x */
        S->value_slot[n->output] = s_in;
        return DISTQ_OK;
    }
    dnnl_dims_t dims, flat;
    dnnl_memory_desc_t plain_md, flat_md;
    value_dims(in, S->batch, dims);
    value_dims(&g->values[n->output], S->batch, flat);
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, in->ndim, dims, dnnl_f32, plain_tag(in->ndim)));
    CHECK(dnnl_memory_desc_init_by_tag(&flat_md, 2, flat, dnnl_f32, dnnl_ab));
    int s_plain = -1, s_flat = -1;
    TRY(slot_as(S, s_in, &plain_md, n->name, ctx, &s_plain));
    TRY(new_slot(S, &flat_md, &s_flat));
    S->slots[s_flat].view_of = s_plain;
    step *t = NULL; /* no primitive: it only marks where the view starts to live */
    TRY(new_step(S, n->name, &t));
    arg_slot(t, DNNL_ARG_SRC, s_plain, 0);
    arg_slot(t, DNNL_ARG_DST, s_flat, 1);
    S->value_slot[n->output] = s_flat;
cleanup:
    return st;
}

/* add [+ relu]: a binary primitive writing src0's layout (in place when src0
 * dies here). */
static distq_status emit_add(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    node_ctx(g, n, S->batch, ctx, sizeof ctx);
    const distq_value *a0 = &g->values[n->inputs[0]], *a1 = &g->values[n->inputs[1]];
    if (a0->ndim != a1->ndim || memcmp(a0->dims, a1->dims, sizeof(int64_t) * (size_t)a0->ndim)) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: add needs equal shapes (no broadcast)", ctx);
        goto cleanup;
    }
    int s0 = S->value_slot[n->inputs[0]], s1 = -1, s_dst = -1;
    dnnl_memory_desc_t md0 = *slot_md(S, s0);
    TRY(slot_as(S, S->value_slot[n->inputs[1]], &md0, n->name, ctx, &s1));
    dnnl_binary_desc_t bd;
    CHECK(dnnl_binary_desc_init(&bd, dnnl_binary_add, &md0, &md0, &md0));
    TRY(make_attr(0, gr->relu >= 0, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &bd, attr, S->engine, NULL));
    TRY(new_slot(S, &md0, &s_dst));
    step *t = NULL;
    TRY(new_step(S, n->name, &t));
    TRY(step_set_prim(t, pd, ctx));
    arg_slot(t, DNNL_ARG_SRC_0, s0, 0);
    arg_slot(t, DNNL_ARG_SRC_1, s1, 0);
    arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    t->inplace_dst = s_dst;
    t->inplace_src = s0;
    S->value_slot[group_output(g, gr)] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* A relu not fused into its producer: eltwise, in place when possible. */
static distq_status emit_relu(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int s_src = S->value_slot[n->inputs[0]], s_dst = -1;
    dnnl_memory_desc_t md = *slot_md(S, s_src);
    dnnl_eltwise_desc_t ed;
    CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_relu, &md,
                                         0.0f, 0.0f));
    TRY(make_attr(0, 0, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &ed, attr, S->engine, NULL));
    TRY(new_slot(S, &md, &s_dst));
    step *t = NULL;
    TRY(new_step(S, n->name, &t));
    TRY(step_set_prim(t, pd, ctx));
    arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    t->inplace_dst = s_dst;
    t->inplace_src = s_src;
    S->value_slot[n->output] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* A batch_norm fold_bn could not fold: inference with the running stats,
 * optional scale/shift (1 and 0 when absent) and an optional fused relu. */
static distq_status emit_batch_norm(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    float *ones = NULL;
    node_ctx(g, n, S->batch, ctx, sizeof ctx);
    const distq_tensor *gamma = node_param(g, n, DISTQ_PARAM_WEIGHT);
    const distq_tensor *beta = node_param(g, n, DISTQ_PARAM_BIAS);
    const distq_tensor *mean = node_param(g, n, DISTQ_PARAM_RUNNING_MEAN);
    const distq_tensor *var = node_param(g, n, DISTQ_PARAM_RUNNING_VAR);
    const int64_t C = g->values[n->inputs[0]].dims[1];
    if (!mean || !var) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: running stats missing", ctx);
        goto cleanup;
    }
    /* ones[0, C) = scale default, ones[C, 2C) = shift default (zeros) */
    ones = distq_malloc(sizeof(float) * (size_t)(2 * C));
    if (!ones) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
        goto cleanup;
    }
    for (int64_t c = 0; c < C; c++) {
        ones[c] = 1.0f;
        ones[C + c] = 0.0f;
    }

    int s_src = S->value_slot[n->inputs[0]], s_dst = -1;
    dnnl_memory_desc_t md = *slot_md(S, s_src), c_md;
    dnnl_dims_t c_dims = {C};
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, 1, c_dims, dnnl_f32, dnnl_a));
    unsigned flags = dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift;
    if (gr->relu >= 0) flags |= dnnl_fuse_norm_relu;
    dnnl_batch_normalization_desc_t bd;
    CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &md,
                                                     n->attr.eps, flags));
    TRY(make_attr(0, 0, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &bd, attr, S->engine, NULL));
    dnnl_memory_t m_mean, m_var, m_scale, m_shift;
    TRY(make_param(S, &c_md, 1, c_dims, mean->data, ctx, &m_mean));
    TRY(make_param(S, &c_md, 1, c_dims, var->data, ctx, &m_var));
    TRY(make_param(S, &c_md, 1, c_dims, gamma ? gamma->data : ones, ctx, &m_scale));
    TRY(make_param(S, &c_md, 1, c_dims, beta ? beta->data : ones + C, ctx, &m_shift));
    TRY(new_slot(S, &md, &s_dst));
    step *t = NULL;
    TRY(new_step(S, n->name, &t));
    TRY(step_set_prim(t, pd, ctx));
    arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    arg_mem(t, DNNL_ARG_MEAN, m_mean);
    arg_mem(t, DNNL_ARG_VARIANCE, m_var);
    arg_mem(t, DNNL_ARG_SCALE, m_scale);
    arg_mem(t, DNNL_ARG_SHIFT, m_shift);
    arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    t->inplace_dst = s_dst;
    t->inplace_src = s_src;
    S->value_slot[group_output(g, gr)] = s_dst;
cleanup:
    distq_free(ones);
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* Right padding that makes oneDNN's floor formula give PyTorch's out size:
 * oneDNN computes out = (in + pl + pr - ext) / stride + 1 with ext the dilated
 * kernel, so any pr in [pr_min, pr_min + stride - 1] works. With ceil_mode the
 * extra cells on the right are padding, and padding never wins a max. */
static int64_t pool_pad_r(int64_t in, int64_t out, int64_t ext, int64_t stride, int64_t pad_l)
{
    int64_t pr_min = (out - 1) * stride + ext - in - pad_l;
    int64_t pr = pad_l;
    if (pr < pr_min) pr = pr_min;
    if (pr > pr_min + stride - 1) pr = pr_min + stride - 1;
    return pr;
}

/* max_pool2d (any ceil_mode) and adaptive_avg_pool2d to (1, 1). */
static distq_status emit_pool(onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_attrs *a = &n->attr;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    node_ctx(g, n, S->batch, ctx, sizeof ctx);
    dnnl_dims_t src_dims, dst_dims, kernel, strides, dil, pad_l, pad_r;
    value_dims(&g->values[n->inputs[0]], S->batch, src_dims);
    value_dims(&g->values[n->output], S->batch, dst_dims);
    dnnl_alg_kind_t alg;
    if (n->op == DISTQ_OP_MAX_POOL2D) {
        alg = dnnl_pooling_max;
        for (int i = 0; i < 2; i++) {
            kernel[i] = a->kernel[i];
            strides[i] = a->stride[i];
            dil[i] = a->dilation[i] - 1;
            pad_l[i] = a->padding[i];
            pad_r[i] = pool_pad_r(src_dims[2 + i], dst_dims[2 + i], dil[i] * (kernel[i] - 1) + kernel[i],
                                  strides[i], pad_l[i]);
        }
    } else {
        if (dst_dims[2] != 1 || dst_dims[3] != 1) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: output size must be (1, 1)", ctx);
            goto cleanup;
        }
        alg = dnnl_pooling_avg_exclude_padding;
        for (int i = 0; i < 2; i++) {
            kernel[i] = src_dims[2 + i];
            strides[i] = 1;
            dil[i] = pad_l[i] = pad_r[i] = 0;
        }
    }
    int s_src = S->value_slot[n->inputs[0]], s_dst = -1;
    dnnl_memory_desc_t src_md = *slot_md(S, s_src), dst_md;
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
    dnnl_pooling_v2_desc_t pool;
    CHECK(dnnl_pooling_v2_forward_desc_init(&pool, dnnl_forward_inference, alg, &src_md, &dst_md,
                                            strides, kernel, dil, pad_l, pad_r));
    TRY(make_attr(0, 0, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &pool, attr, S->engine, NULL));
    TRY(query_md(pd, dnnl_query_dst_md, 0, &dst_md, ctx));
    TRY(new_slot(S, &dst_md, &s_dst));
    step *t = NULL;
    TRY(new_step(S, n->name, &t));
    TRY(step_set_prim(t, pd, ctx));
    arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    S->value_slot[n->output] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

static distq_status emit_group(onednn_state *S, const distq_graph *g, const group *gr)
{
    switch (g->nodes[gr->head].op) {
    case DISTQ_OP_CONV2D: return emit_conv(S, g, gr);
    case DISTQ_OP_LINEAR: return emit_linear(S, g, gr);
    case DISTQ_OP_FLATTEN: return emit_flatten(S, g, gr);
    case DISTQ_OP_ADD: return emit_add(S, g, gr);
    case DISTQ_OP_RELU: return emit_relu(S, g, gr);
    case DISTQ_OP_BATCH_NORM: return emit_batch_norm(S, g, gr);
    case DISTQ_OP_MAX_POOL2D:
    case DISTQ_OP_ADAPTIVE_AVG_POOL2D: return emit_pool(S, g, gr);
    case DISTQ_OP_COUNT: break;
    }
    return distq_error_set(DISTQ_ERR_UNSUPPORTED, "node '%s': op %d has no oneDNN lowering",
                           g->nodes[gr->head].name, (int)g->nodes[gr->head].op);
}

/* Step 0 reorders the user's plain input into the input slot's layout (picked
 * by its first consumer); the last step reorders the output slot into the
 * user's plain output. Both user memories get their handles in run(). */
static distq_status emit_io(onednn_state *S, const distq_graph *g)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "graph input/output";
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const distq_value *in = &g->values[g->input_value], *out = &g->values[g->output_value];
    dnnl_dims_t dims;
    dnnl_memory_desc_t user_md;

    value_dims(in, S->batch, dims);
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, in->ndim, dims, dnnl_f32, plain_tag(in->ndim)));
    TRY(make_fixed(S, &user_md, NULL, NULL, 0, ctx, &S->user_in));
    TRY(make_attr(0, 0, ctx, &attr));
    step *t = &S->steps[0];
    CHECK(dnnl_reorder_primitive_desc_create(&pd, &user_md, S->engine, slot_md(S, 0), S->engine,
                                             attr));
    TRY(step_set_prim(t, pd, ctx));
    arg_mem(t, DNNL_ARG_FROM, S->user_in);
    arg_slot(t, DNNL_ARG_TO, 0, 1);

    value_dims(out, S->batch, dims);
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, out->ndim, dims, dnnl_f32, plain_tag(out->ndim)));
    TRY(make_fixed(S, &user_md, NULL, NULL, 0, ctx, &S->user_out));
    int s_out = S->value_slot[g->output_value];
    char name[DISTQ_NAME_MAX + 16];
    snprintf(name, sizeof name, "output '%s'", g->output_name);
    TRY(add_reorder(S, name, slot_md(S, s_out), &user_md, ctx, &t));
    arg_slot(t, DNNL_ARG_FROM, s_out, 0);
    arg_mem(t, DNNL_ARG_TO, S->user_out);
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

// --- grouping -----------------------------------------------------------------

/* The one node reading value v (once), or -1 if v has other readers or is the
 * graph output. readers[v] counts (node, input) pairs. */
static int sole_reader(const distq_graph *g, const int *readers, const int *reader, int v)
{
    return (readers[v] == 1 && v != g->output_value) ? reader[v] : -1;
}

/* Puts every node in one group; group_at[j] is the group emitted at node j
 * (its last member, where all its inputs exist), -1 for non-last members. */
static distq_status plan_groups(const distq_graph *g, group *groups, int *group_at)
{
    distq_status st = DISTQ_OK;
    int *readers = distq_calloc(sizeof(int) * (size_t)g->n_values);
    int *reader = distq_calloc(sizeof(int) * (size_t)g->n_values);
    int *in_group = distq_calloc(sizeof(int) * (size_t)g->n_nodes);
    if (!readers || !reader || !in_group) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "onednn: out of memory grouping %d nodes", g->n_nodes);
        goto cleanup;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        group_at[i] = -1;
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            readers[g->nodes[i].inputs[k]]++;
            reader[g->nodes[i].inputs[k]] = i;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (in_group[i]) continue;
        group gr = {.head = i, .flatten = -1, .add = -1, .relu = -1};
        const distq_node *n = &g->nodes[i];
        int c;
        if (n->op == DISTQ_OP_FLATTEN && g->values[n->inputs[0]].ndim == 4 &&
            (c = sole_reader(g, readers, reader, n->output)) >= 0 &&
            g->nodes[c].op == DISTQ_OP_LINEAR && !in_group[c]) {
            gr.flatten = i;
            gr.head = c;
        }
        const distq_node *h = &g->nodes[gr.head];
        int cur = h->output;
        if (h->op == DISTQ_OP_CONV2D && (c = sole_reader(g, readers, reader, cur)) >= 0 &&
            g->nodes[c].op == DISTQ_OP_ADD && !in_group[c] &&
            g->nodes[c].inputs[0] != g->nodes[c].inputs[1]) {
            gr.add = c;
            cur = g->nodes[c].output;
        }
        if ((h->op == DISTQ_OP_CONV2D || h->op == DISTQ_OP_LINEAR || h->op == DISTQ_OP_ADD ||
             h->op == DISTQ_OP_BATCH_NORM) &&
            (c = sole_reader(g, readers, reader, cur)) >= 0 && g->nodes[c].op == DISTQ_OP_RELU &&
            !in_group[c])
            gr.relu = c;
        int members[4] = {i, gr.head, gr.add, gr.relu}, last = i;
        for (int k = 0; k < 4; k++) {
            if (members[k] < 0) continue;
            in_group[members[k]] = 1;
            if (members[k] > last) last = members[k];
        }
        groups[last] = gr;
        group_at[last] = last;
    }
cleanup:
    distq_free(readers);
    distq_free(reader);
    distq_free(in_group);
    return st;
}

// --- buffers ------------------------------------------------------------------

/* Gives every slot a buffer. Walks the steps in order: a slot gets its buffer
 * when first written and the buffer is free again after the last step reading
 * any slot in it. A view shares its source's buffer; an in-place candidate
 * shares its source's buffer when the source is dead after this step (and
 * then a pure copy disappears: this is how the sum post-op's operand is used
 * in place). */
static distq_status plan_buffers(onednn_state *S)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "buffer planning";
    for (int t = 0; t < S->n_steps; t++) {
        for (int k = 0; k < S->steps[t].n_args; k++) {
            const plan_arg *pa = &S->steps[t].pargs[k];
            if (pa->slot >= 0 && !pa->writes) S->slots[pa->slot].last_use = t;
        }
    }
    S->bufs = distq_calloc(sizeof(act_buffer) * (size_t)(S->n_slots ? S->n_slots : 1));
    if (!S->bufs) return distq_error_set(DISTQ_ERR_NOMEM, "onednn: out of memory planning buffers");
    for (int t = 0; t < S->n_steps; t++) {
        step *T = &S->steps[t];
        for (int k = 0; k < T->n_args; k++) {
            const plan_arg *pa = &T->pargs[k];
            if (pa->slot < 0 || !pa->writes || S->slots[pa->slot].buf >= 0) continue;
            slot *s = &S->slots[pa->slot];
            size_t size = dnnl_memory_desc_get_size(&s->md);
            int b = -1;
            if (s->view_of >= 0) {
                b = S->slots[s->view_of].buf;
            } else if (T->inplace_dst == pa->slot && T->inplace_src >= 0) {
                const slot *src = &S->slots[T->inplace_src];
                if (src->buf >= 0 && S->bufs[src->buf].end <= t &&
                    dnnl_memory_desc_equal(&src->md, &s->md)) {
                    b = src->buf;
                    if (T->is_copy) {
                        CHECK(dnnl_primitive_destroy(T->prim));
                        T->prim = NULL;
                    }
                }
            }
            if (b < 0) { /* best fit among free buffers, else grow the largest, else new */
                for (int i = 0; i < S->n_bufs; i++) {
                    if (S->bufs[i].busy) continue;
                    if (b < 0) {
                        b = i;
                        continue;
                    }
                    int fits = S->bufs[i].size >= size, b_fits = S->bufs[b].size >= size;
                    if ((fits && (!b_fits || S->bufs[i].size < S->bufs[b].size)) ||
                        (!fits && !b_fits && S->bufs[i].size > S->bufs[b].size))
                        b = i;
                }
                if (b < 0) b = S->n_bufs++;
                if (S->bufs[b].size < size) S->bufs[b].size = size;
                S->bufs[b].end = -1;
            }
            if (b < 0) {
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: view before its source");
                goto cleanup;
            }
            s->buf = b;
            S->bufs[b].busy = 1;
            int end = s->last_use > t ? s->last_use : t;
            if (S->bufs[b].end < end) S->bufs[b].end = end;
        }
        for (int i = 0; i < S->n_bufs; i++)
            if (S->bufs[i].busy && S->bufs[i].end <= t) S->bufs[i].busy = 0;
    }
cleanup:
    return st;
}

/* Allocates the buffers and the scratchpad, makes each slot's memory, and
 * turns every step's plan_args into dnnl_exec_arg_t. */
static distq_status bind_memories(onednn_state *S)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "binding memories";
    for (int i = 0; i < S->n_bufs; i++) {
        S->bufs[i].data = distq_malloc(S->bufs[i].size);
        if (!S->bufs[i].data) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "onednn: out of memory for a %zu-byte activation buffer",
                                 S->bufs[i].size);
            goto cleanup;
        }
    }
    for (int i = 0; i < S->n_slots; i++) {
        slot *s = &S->slots[i];
        if (s->buf < 0) continue; /* a variant nobody reads never gets one */
        CHECK(dnnl_memory_create(&s->mem, &s->md, S->engine, S->bufs[s->buf].data));
    }
    for (int t = 0; t < S->n_steps; t++)
        if (S->steps[t].prim && S->steps[t].scratch_size > S->scratch_size)
            S->scratch_size = S->steps[t].scratch_size;
    if (S->scratch_size) {
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = {(dnnl_dim_t)S->scratch_size};
        CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_u8, dnnl_a));
        TRY(make_fixed(S, &md, NULL, NULL, 1, ctx, &S->scratch));
    }
    for (int t = 0; t < S->n_steps; t++) {
        step *T = &S->steps[t];
        if (!T->prim) continue;
        for (int k = 0; k < T->n_args; k++) {
            const plan_arg *pa = &T->pargs[k];
            dnnl_memory_t m = pa->slot >= 0 ? S->slots[pa->slot].mem : pa->mem;
            if (!m) {
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: step '%s' arg %d unbound",
                                     T->name, pa->arg);
                goto cleanup;
            }
            T->args[k] = (dnnl_exec_arg_t){pa->arg, m};
        }
        T->n_exec_args = T->n_args;
        if (T->scratch_size) {
            assert(T->n_exec_args < MAX_ARGS);
            T->args[T->n_exec_args++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, S->scratch};
        }
    }
cleanup:
    return st;
}

// --- the interface ------------------------------------------------------------

/* Destroys everything and returns the first failure (the void interface drops
 * it). quiet: leave the thread's error message alone (create's failure path). */
static distq_status state_free(onednn_state *S, int quiet)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "destroying the oneDNN executor";
    char saved[1024];
    if (!S) return DISTQ_OK;
    if (quiet) snprintf(saved, sizeof saved, "%s", distq_error_message());
    for (int t = 0; t < S->n_steps; t++)
        if (S->steps[t].prim) CHECK_CLEANUP(dnnl_primitive_destroy(S->steps[t].prim));
    for (int i = 0; i < S->n_slots; i++)
        if (S->slots[i].mem) CHECK_CLEANUP(dnnl_memory_destroy(S->slots[i].mem));
    for (int i = 0; i < S->n_fixed; i++) {
        if (S->fixed[i]) CHECK_CLEANUP(dnnl_memory_destroy(S->fixed[i]));
        distq_free(S->fixed_data[i]);
    }
    for (int i = 0; i < S->n_bufs; i++) distq_free(S->bufs[i].data);
    if (S->stream) CHECK_CLEANUP(dnnl_stream_destroy(S->stream));
    if (S->engine) CHECK_CLEANUP(dnnl_engine_destroy(S->engine));
    distq_free(S->steps);
    distq_free(S->slots);
    distq_free(S->bufs);
    distq_free(S->fixed);
    distq_free(S->fixed_data);
    distq_free(S->value_slot);
    distq_free(S);
    if (st != DISTQ_OK && quiet) distq_error_set(st, "%s", saved);
    return st;
}

static void onednn_destroy(void *state) { (void)state_free(state, 0); }

/* Rejects what the emitters do not handle, naming the value. */
static distq_status check_graph(const distq_graph *g)
{
    for (int v = 0; v < g->n_values; v++) {
        const distq_value *val = &g->values[v];
        if (val->dtype != DISTQ_DTYPE_F32 || (val->ndim != 2 && val->ndim != 4))
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "onednn fp32: value '%s' is %s with %d dims (want f32, 2 or 4 dims)",
                                   val->name, distq_dtype_name(val->dtype), val->ndim);
    }
    for (int p = 0; p < g->n_params; p++) {
        const distq_tensor *t = &g->params[p];
        if (t->dtype != DISTQ_DTYPE_F32 && t->dtype != DISTQ_DTYPE_S64)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED, "onednn fp32: parameter '%s' is %s",
                                   t->name, distq_dtype_name(t->dtype));
    }
    return DISTQ_OK;
}

static distq_status onednn_create(const distq_graph *g0, int64_t batch, void **state)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "creating the oneDNN executor";
    distq_graph *g = NULL;
    onednn_state *S = NULL;
    group *groups = NULL;
    int *group_at = NULL;
    *state = NULL;

    TRY(distq_graph_clone(g0, &g));
    TRY(distq_pass_fold_bn(g, NULL)); /* BN folded into the preceding conv at load */
    TRY(check_graph(g));

    S = distq_calloc(sizeof *S);
    if (!S) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
        goto cleanup;
    }
    S->batch = batch;
    /* Upper bounds: a group emits at most 3 steps and 2 slots per node, and
     * at most 4 fixed memories per node; plus the input and output. */
    S->cap_steps = 4 * g->n_nodes + 8;
    S->cap_slots = 4 * g->n_nodes + 8;
    S->cap_fixed = 6 * g->n_nodes + 8;
    S->steps = distq_calloc(sizeof(step) * (size_t)S->cap_steps);
    S->slots = distq_calloc(sizeof(slot) * (size_t)S->cap_slots);
    S->fixed = distq_calloc(sizeof(dnnl_memory_t) * (size_t)S->cap_fixed);
    S->fixed_data = distq_calloc(sizeof(void *) * (size_t)S->cap_fixed);
    S->value_slot = distq_calloc(sizeof(int) * (size_t)g->n_values);
    groups = distq_calloc(sizeof(group) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    group_at = distq_calloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    if (!S->steps || !S->slots || !S->fixed || !S->fixed_data || !S->value_slot || !groups ||
        !group_at) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
        goto cleanup;
    }
    CHECK(dnnl_engine_create(&S->engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&S->stream, S->engine, dnnl_stream_default_flags));

    /* Slot 0 holds the graph input, plain until a consumer picks a layout;
     * step 0 (filled by emit_io) reorders the user's array into it. */
    for (int v = 0; v < g->n_values; v++) S->value_slot[v] = -1;
    const distq_value *in = &g->values[g->input_value];
    dnnl_dims_t in_dims;
    dnnl_memory_desc_t in_md;
    value_dims(in, batch, in_dims);
    CHECK(dnnl_memory_desc_init_by_tag(&in_md, in->ndim, in_dims, dnnl_f32, plain_tag(in->ndim)));
    int s_in = -1;
    step *t0 = NULL;
    TRY(new_slot(S, &in_md, &s_in));
    S->slots[s_in].decided = 0;
    S->value_slot[g->input_value] = s_in;
    char name[DISTQ_NAME_MAX + 16];
    snprintf(name, sizeof name, "input '%s'", g->input_name);
    TRY(new_step(S, name, &t0));

    TRY(plan_groups(g, groups, group_at));
    for (int j = 0; j < g->n_nodes; j++) {
        if (group_at[j] < 0) continue;
        const distq_node *n = &g->nodes[groups[j].flatten >= 0 ? groups[j].flatten : groups[j].head];
        for (int k = 0; k < n->n_inputs; k++) {
            if (S->value_slot[n->inputs[k]] < 0) {
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "node '%s': input %d not computed yet",
                                     n->name, k);
                goto cleanup;
            }
        }
        TRY(emit_group(S, g, &groups[j]));
    }
    if (S->value_slot[g->output_value] < 0) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "graph output '%s' is never computed",
                             g->output_name);
        goto cleanup;
    }
    TRY(emit_io(S, g));
    TRY(plan_buffers(S));
    TRY(bind_memories(S));
    distq_free(S->value_slot);
    S->value_slot = NULL;
    *state = S;
    S = NULL;
cleanup:
    distq_free(groups);
    distq_free(group_at);
    distq_graph_destroy(g);
    (void)state_free(S, 1); /* only on failure; keeps the first message */
    return st;
}

static distq_status onednn_run(void *state, const float *input, float *output)
{
    distq_status st = DISTQ_OK;
    onednn_state *S = state;
    const char *ctx = "run";
    CHECK(dnnl_memory_set_data_handle(S->user_in, (void *)input)); /* only read */
    CHECK(dnnl_memory_set_data_handle(S->user_out, output));
    for (int t = 0; t < S->n_steps; t++) {
        const step *T = &S->steps[t];
        if (!T->prim) continue;
        ctx = T->name;
        CHECK(dnnl_primitive_execute(T->prim, S->stream, T->n_exec_args, T->args));
    }
    ctx = "run";
    CHECK(dnnl_stream_wait(S->stream));
cleanup:
    return st;
}

const distq_exec_i distq_exec_onednn_i = {
    .name = "onednn",
    .create = onednn_create,
    .run = onednn_run,
    .destroy = onednn_destroy,
};
