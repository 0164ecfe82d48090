/*
 * The frozen fp32 oneDNN executor (distq_exec_onednn_i).
 *
 * create() does all the work once per graph and batch size:
 *   1. clone the graph (the executor keeps nothing of the caller's). BN is
 *      folded into the preceding conv by the caller's pass (fold_bn, in
 *      distq_job_load_fp32 and prepare); a BN left in the graph runs as a
 *      batch_normalization primitive;
 *   2. group nodes into fused primitives (plan_groups):
 *        conv2d [+ add as a sum post-op] [+ eltwise post-op]
 *        [flatten +] linear [+ eltwise]   add|mul [+ eltwise]   batch_norm [+ relu]
 *      where eltwise is relu, clip (relu6), hardswish, hardsigmoid or sigmoid;
 *   3. emit the plan, one emit_* function per op kind: a list of steps
 *      (primitive + arguments) in execution order. Layouts come from oneDNN
 *      (format_tag any); activations stay in the chosen layout, and a reorder
 *      appears only at the graph input, at the output, and where a consumer
 *      really wants another layout. Weights are reordered once, here;
 *   4. give activation slots buffers by liveness (onednn_util.c). Every
 *      graph value a group produces keeps its own buffer until the next run,
 *      so that get_value can read it back (the calibrator observes them all);
 *      only reordered copies share buffers, and eltwise/binary/bn and the sum
 *      post-op's operand run in place only over such copies;
 *   5. allocate everything, including one user-mode scratchpad sized to the
 *      largest primitive's need.
 * run() points the two user memories at the caller's arrays and executes the
 * steps: no allocation, no weight reorder. Activation buffers belong to the
 * executor, so one run at a time per executor. get_value reorders a value's
 * slot to plain f32; a value computed inside a fused primitive (a conv output
 * before its relu) is DISTQ_ERR_UNSUPPORTED, a flatten feeding a linear reads
 * as its input in plain order.
 *
 * Not here: int8 (exec_onednn_int8.c), training, broadcasting adds. Each op's
 * emitter is a row of `emitters`; an op without one is refused in check_graph. The plan
 * machinery shared with the int8 executor is in onednn_util.c. Every dnnl_*
 * call of the project lives under src/backend/onednn (STYLE.md).
 */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "backend/onednn/onednn_impl.h"
#include "distq/tensor.h"

/* Nodes that run as one primitive. */
typedef struct {
    int head;    /* node whose primitive runs */
    int flatten; /* flatten feeding the linear head directly, or -1 */
    int add;     /* add done as the conv head's sum post-op, or -1 */
    int post;    /* eltwise node (relu, clip, hardswish, ...) done as a post-op, or -1 */
} group;

/* An op that oneDNN runs as eltwise, alone or as a post-op: one or two
 * algorithms applied in turn. */
typedef struct {
    int n;
    dnnl_alg_kind_t alg[2];
    float alpha[2], beta[2];
} eltwise_chain;

typedef eltwise_chain (*eltwise_fn)(const distq_attrs *a);
static eltwise_chain relu_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_relu}, {0.0f}, {0.0f}};
}
static eltwise_chain clip_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_clip}, {a->min}, {a->max}};
}
static eltwise_chain hardswish_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_hardswish}, {0.0f}, {0.0f}}; /* 2.6: x*relu6(x+3)/6 */
}
static eltwise_chain sigmoid_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_logistic}, {0.0f}, {0.0f}};
}
/* oneDNN 2.6 has no hardsigmoid: alpha*x + beta, then clip to [0, 1] */
static eltwise_chain hardsigmoid_chain(const distq_attrs *a)
{
    return (eltwise_chain){2, {dnnl_eltwise_linear, dnnl_eltwise_clip}, {a->alpha, 0.0f},
                           {a->beta, 1.0f}};
}
static eltwise_chain tanh_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_tanh}, {0.0f}, {0.0f}};
}
static eltwise_chain leaky_relu_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_relu}, {a->alpha}, {0.0f}}; /* relu's alpha: the negative slope */
}
static eltwise_chain silu_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_swish}, {1.0f}, {0.0f}}; /* x * sigmoid(alpha x) */
}
static eltwise_chain gelu_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_gelu_erf}, {0.0f}, {0.0f}};
}
static eltwise_chain sqrt_chain(const distq_attrs *a) { return (eltwise_chain){1, {dnnl_eltwise_sqrt}, {0.0f}, {0.0f}}; }
static eltwise_chain exp_chain(const distq_attrs *a) { return (eltwise_chain){1, {dnnl_eltwise_exp}, {0.0f}, {0.0f}}; }
static eltwise_chain log_chain(const distq_attrs *a) { return (eltwise_chain){1, {dnnl_eltwise_log}, {0.0f}, {0.0f}}; }
static eltwise_chain abs_chain(const distq_attrs *a) { return (eltwise_chain){1, {dnnl_eltwise_abs}, {0.0f}, {0.0f}}; }
static eltwise_chain neg_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_linear}, {-1.0f}, {0.0f}}; /* alpha x + beta */
}
/* pow: alpha * x ^ beta */
static eltwise_chain reciprocal_chain(const distq_attrs *a)
{
    return (eltwise_chain){1, {dnnl_eltwise_pow}, {1.0f}, {-1.0f}};
}
static eltwise_chain pow_chain(const distq_attrs *a) { return (eltwise_chain){1, {dnnl_eltwise_pow}, {1.0f}, {a->alpha}}; }
static eltwise_chain elu_chain(const distq_attrs *a) { return (eltwise_chain){1, {dnnl_eltwise_elu}, {a->alpha}, {0.0f}}; }
/* No erf: oneDNN 2.6's eltwise has only gelu_erf, x * Phi(x), and erf cannot
 * be had from it by post-ops; an fp32 Erf node is refused on this backend. */
static const eltwise_fn eltwise_ops[DISTQ_OP_COUNT] = {
    [DISTQ_OP_SQRT] = sqrt_chain,
    [DISTQ_OP_EXP] = exp_chain,
    [DISTQ_OP_LOG] = log_chain,
    [DISTQ_OP_ABS] = abs_chain,
    [DISTQ_OP_NEG] = neg_chain,
    [DISTQ_OP_RECIPROCAL] = reciprocal_chain,
    [DISTQ_OP_POW] = pow_chain,
    [DISTQ_OP_ELU] = elu_chain,
    [DISTQ_OP_GELU] = gelu_chain,
    [DISTQ_OP_SILU] = silu_chain,
    [DISTQ_OP_TANH] = tanh_chain,
    [DISTQ_OP_LEAKY_RELU] = leaky_relu_chain,
    [DISTQ_OP_RELU] = relu_chain,
    [DISTQ_OP_CLIP] = clip_chain,
    [DISTQ_OP_HARDSWISH] = hardswish_chain,
    [DISTQ_OP_SIGMOID] = sigmoid_chain,
    [DISTQ_OP_HARDSIGMOID] = hardsigmoid_chain,
};

distq_status distq_onednn_append_eltwise(dnnl_post_ops_t ops, distq_op op, const distq_attrs *a, const char *ctx)
{
    distq_status st = DISTQ_OK;
    if ((int)op < 0 || op >= DISTQ_OP_COUNT || !eltwise_ops[op])
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: %s is not an elementwise post-op", ctx, distq_op_name(op));
    eltwise_chain e = eltwise_ops[op](a);
    for (int k = 0; k < e.n; k++) CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, e.alg[k], e.alpha[k], e.beta[k]));
cleanup:
    return st;
}

// --- threads ------------------------------------------------------------------

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


static const distq_tensor *node_param(const distq_graph *g, const distq_node *n, int which)
{
    return n->params[which] >= 0 ? &g->params[n->params[which]] : NULL;
}

/* Attributes every primitive gets: user scratchpad, and the post-ops in the
 * order the graph applies them: a sum, the head's own relu (a fused form's
 * post_relu), then the eltwise node post's chain. */
static distq_status make_attr(int sum, int relu, const distq_node *post, const char *ctx,
                              dnnl_primitive_attr_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (sum || relu || post) {
        CHECK(dnnl_post_ops_create(&ops));
        if (sum) CHECK(dnnl_post_ops_append_sum(ops, 1.0f));
        if (relu) CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        if (post) TRY(distq_onednn_append_eltwise(ops, post->op, &post->attr, ctx));
        CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    *out = attr;
    attr = NULL;
cleanup:
    if (ops) CHECK_CLEANUP(dnnl_post_ops_destroy(ops));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* The post-op node of gr, or NULL. */
static const distq_node *post_node(const distq_graph *g, const group *gr)
{
    return gr->post >= 0 ? &g->nodes[gr->post] : NULL;
}

/* The value a group produces: the post-op's, else add's, else the head's. */
static int group_output(const distq_graph *g, const group *gr)
{
    if (gr->post >= 0) return g->nodes[gr->post].output;
    if (gr->add >= 0) return g->nodes[gr->add].output;
    return g->nodes[gr->head].output;
}

// --- emitters: one per op kind ------------------------------------------------

/* conv2d [+ add as sum post-op] [+ relu], from separate nodes or the fused
 * form (a residual second input, post_relu). For the sum, the other operand
 * is first copied into the conv's dst; plan_buffers drops that copy and uses
 * the operand's buffer in place when nothing reads the operand afterwards. */
static distq_status emit_conv(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_tensor *w = node_param(g, n, DISTQ_PARAM_WEIGHT);
    const distq_tensor *b = node_param(g, n, DISTQ_PARAM_BIAS);
    dnnl_primitive_attr_t attr = NULL;
    distq_onednn_weighted_parts c = {0};
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    const int fused_sum = n->n_inputs > 1; /* the fused form's residual, inputs[1] */
    TRY(make_attr(gr->add >= 0 || fused_sum, n->attr.post_relu, post_node(g, gr), ctx, &attr));
    const distq_onednn_weighted_spec spec = {dnnl_f32, dnnl_f32, dnnl_f32, w->data, b ? b->data : NULL};
    TRY(distq_onednn_conv_begin(S, g, n, &spec, attr, ctx, &c));
    if (fused_sum) {
        TRY(distq_onednn_add_residual_copy(S, n->name, S->value_slot[n->inputs[1]], c.s_dst, &c.dst_md, ctx));
    } else if (gr->add >= 0) {
        const distq_node *add = &g->nodes[gr->add];
        int other_v = add->inputs[0] == n->output ? add->inputs[1] : add->inputs[0];
        TRY(distq_onednn_add_residual_copy(S, add->name, S->value_slot[other_v], c.s_dst, &c.dst_md, ctx));
    }
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_weighted_step(S, n, &c, ctx, &t));
    S->value_slot[group_output(g, gr)] = c.s_dst;
cleanup:
    if (c.pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(c.pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* A new slot *s_view reading slot s_src's buffer as view_md, and the step
 * (no primitive) from which that view lives. */

/* [flatten +] linear [+ relu]: an inner product. After a flatten the inner
 * product reads the 4-D tensor directly, with weights (OUT, IN) viewed as
 * (OUT, C, H, W): flatten(x, 1) orders features C, H, W. */
static distq_status emit_linear(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_node *first = gr->flatten >= 0 ? &g->nodes[gr->flatten] : n;
    const distq_tensor *w = node_param(g, n, DISTQ_PARAM_WEIGHT);
    const distq_tensor *b = node_param(g, n, DISTQ_PARAM_BIAS);
    const distq_value *in = &g->values[first->inputs[0]];
    dnnl_primitive_attr_t attr = NULL;
    distq_onednn_weighted_parts c = {0};
    distq_onednn_node_ctx(g, first, S->batch, ctx, sizeof ctx);
    if (gr->flatten >= 0 && distq_value_numel(in, 1) != w->dims[1]) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: %lld input features, weight wants %lld",
                             ctx, (long long)distq_value_numel(in, 1), (long long)w->dims[1]);
        goto cleanup;
    }
    int s_in = S->value_slot[first->inputs[0]];
    /* a linear on the last dim of a rank > 2 input: its rows, (N * H * W, C), in plain layout */
    int rows_view = gr->flatten < 0 && in->ndim > 2;
    const distq_value *outv = &g->values[n->output];
    dnnl_dims_t dims, rows_dims = {S->batch, w->dims[1]}, out_dims, out_rows = {S->batch, w->dims[0]};
    dnnl_memory_desc_t md, rows_md;
    if (rows_view) {
        distq_onednn_value_dims(in, S->batch, dims);
        rows_dims[0] = distq_value_numel(in, S->batch) / w->dims[1];
        out_rows[0] = rows_dims[0];
        CHECK(dnnl_memory_desc_init_by_tag(&md, in->ndim, dims, dnnl_f32, distq_onednn_plain_tag(in->ndim)));
        CHECK(dnnl_memory_desc_init_by_tag(&rows_md, 2, rows_dims, dnnl_f32, dnnl_ab));
        int s_plain = -1;
        TRY(distq_onednn_slot_as(S, s_in, &md, first->name, ctx, &s_plain));
        TRY(distq_onednn_view_step(S, first->name, s_plain, &rows_md, &s_in));
    }
    TRY(make_attr(0, n->attr.post_relu, post_node(g, gr), ctx, &attr));
    const distq_onednn_weighted_spec spec = {dnnl_f32, dnnl_f32, dnnl_f32, w->data, b ? b->data : NULL};
    TRY(distq_onednn_ip_begin(S, s_in, first->name, w->dims[0], &spec, attr, ctx, &c));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_weighted_step(S, n, &c, ctx, &t));
    S->value_slot[group_output(g, gr)] = c.s_dst;
    if (rows_view) { /* the rows back in the output's shape */
        int s_rows = -1, s_out = -1;
        CHECK(dnnl_memory_desc_init_by_tag(&rows_md, 2, out_rows, dnnl_f32, dnnl_ab));
        TRY(distq_onednn_slot_as(S, c.s_dst, &rows_md, n->name, ctx, &s_rows));
        distq_onednn_value_dims(outv, S->batch, out_dims);
        CHECK(dnnl_memory_desc_init_by_tag(&md, outv->ndim, out_dims, dnnl_f32, distq_onednn_plain_tag(outv->ndim)));
        TRY(distq_onednn_view_step(S, n->name, s_rows, &md, &s_out));
        S->value_slot[group_output(g, gr)] = s_out;
    }
    /* the flatten's value reads back as its input in plain order (same bytes) */
    if (gr->flatten >= 0) S->value_slot[first->output] = s_in;
cleanup:
    if (c.pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(c.pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* The oneDNN data type of a value: the layout emitters (flatten, reshape,
 * transpose, slice, concat) move u8 codes of an int8 graph as they move f32. */
static dnnl_data_type_t value_dt(const distq_value *v) { return v->dtype == DISTQ_DTYPE_U8 ? dnnl_u8 : dnnl_f32; }

/* flatten and reshape: the input in plain layout, viewed with the output's dims */
static distq_status emit_flatten(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_value *in = &g->values[n->inputs[0]];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int s_in = S->value_slot[n->inputs[0]];
    const distq_value *outv = &g->values[n->output];
    if (in->ndim == 2 && outv->ndim == 2) { /* flatten(x, 1) of (N, F) is x */
        S->value_slot[n->output] = s_in;
        return DISTQ_OK;
    }
    dnnl_dims_t dims, flat;
    dnnl_memory_desc_t plain_md, flat_md;
    distq_onednn_value_dims(in, S->batch, dims);
    distq_onednn_value_dims(&g->values[n->output], S->batch, flat);
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, in->ndim, dims, value_dt(in), distq_onednn_plain_tag(in->ndim)));
    CHECK(dnnl_memory_desc_init_by_tag(&flat_md, outv->ndim, flat, value_dt(in), distq_onednn_plain_tag(outv->ndim)));
    int s_plain = -1, s_flat = -1;
    TRY(distq_onednn_slot_as(S, s_in, &plain_md, n->name, ctx, &s_plain));
    TRY(distq_onednn_view_step(S, n->name, s_plain, &flat_md, &s_flat));
    S->value_slot[n->output] = s_flat;
cleanup:
    return st;
}

/* A binary primitive dst = v0 (alg) v1 [+ the group's eltwise post-op],
 * written in v0's layout (in place when v0 dies here). v1 is read in
 * md1's layout, or v0's when md1 is NULL. */
/* src0 (value v0, read as want0 if given) alg src1: value v1 read as md1
 * (NULL: src0's layout), or when v1 < 0 the frozen constant c1 laid out as
 * md1; the group's eltwise post-op fused. */
static distq_status emit_binary(distq_onednn_state *S, const distq_graph *g, const group *gr,
                                dnnl_alg_kind_t alg, int v0, int v1, dnnl_memory_t c1,
                                const dnnl_memory_desc_t *md1, const dnnl_memory_desc_t *want0, const char *ctx)
{
    distq_status st = DISTQ_OK;
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int s0 = S->value_slot[v0], s1 = -1, s_dst = -1;
    if (want0) TRY(distq_onednn_slot_as(S, s0, want0, n->name, ctx, &s0)); /* src0 in another layout */
    dnnl_memory_desc_t md0 = *distq_onednn_slot_md(S, s0);
    if (!md1) md1 = &md0;
    if (v1 >= 0) TRY(distq_onednn_slot_as(S, S->value_slot[v1], md1, n->name, ctx, &s1));
    dnnl_binary_desc_t bd;
    CHECK(dnnl_binary_desc_init(&bd, alg, &md0, md1, &md0));
    TRY(make_attr(0, 0, post_node(g, gr), ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &bd, attr, S->engine, NULL));
    TRY(distq_onednn_new_slot(S, &md0, &s_dst));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    TRY(distq_onednn_step_set_prim(t, pd, ctx));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC_0, s0, 0);
    if (v1 >= 0) distq_onednn_arg_slot(t, DNNL_ARG_SRC_1, s1, 0);
    else distq_onednn_arg_mem(t, DNNL_ARG_SRC_1, c1);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    t->inplace_dst = s_dst;
    t->inplace_src = s0;
    S->value_slot[group_output(g, gr)] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* *is_ref = 1 if oneDNN would run binary alg on (md0, md1) with its
 * reference implementation. */
static distq_status binary_is_ref(distq_onednn_state *S, const dnnl_memory_desc_t *md0,
                                  const dnnl_memory_desc_t *md1, dnnl_alg_kind_t alg, const char *ctx, int *is_ref)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    dnnl_binary_desc_t bd;
    *is_ref = 0;
    CHECK(dnnl_binary_desc_init(&bd, alg, md0, md1, md0));
    CHECK(dnnl_primitive_desc_create(&pd, &bd, NULL, S->engine, NULL));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    *is_ref = impl && strncmp(impl, "ref", 3) == 0;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    return st;
}

static distq_status emit_const_binary(distq_onednn_state *S, const distq_graph *g, const group *gr,
                                      dnnl_alg_kind_t alg, const char *ctx);

/* add [+ eltwise]: both inputs of one shape, the second read in the first's layout. */
static distq_status emit_add(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    if (n->n_inputs == 1) return emit_const_binary(S, g, gr, dnnl_binary_add, ctx);
    const distq_value *a0 = &g->values[n->inputs[0]], *a1 = &g->values[n->inputs[1]];
    if (a0->ndim != a1->ndim || memcmp(a0->dims, a1->dims, sizeof(int64_t) * (size_t)a0->ndim))
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: add needs equal shapes (no broadcast)", ctx);
    return emit_binary(S, g, gr, dnnl_binary_add, n->inputs[0], n->inputs[1], NULL, NULL, NULL, ctx);
}

/* An eltwise op not fused into its producer (relu, clip, hardswish, sigmoid,
 * hardsigmoid, ...): each algorithm of its chain as its own primitive, in
 * place when possible. Not one primitive with the second as a post-op:
 * oneDNN 2.6 runs an eltwise with post-ops on its reference kernel, ~20x
 * slower (hardsigmoid is linear + clip). */
static distq_status emit_eltwise(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    eltwise_chain e = eltwise_ops[n->op](&n->attr);
    int s_src = S->value_slot[n->inputs[0]];
    dnnl_memory_desc_t md = *distq_onednn_slot_md(S, s_src);
    for (int k = 0; k < e.n; k++) {
        dnnl_eltwise_desc_t ed;
        int s_dst = -1;
        CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, e.alg[k], &md, e.alpha[k],
                                             e.beta[k]));
        TRY(make_attr(0, 0, NULL, ctx, &attr));
        CHECK(dnnl_primitive_desc_create(&pd, &ed, attr, S->engine, NULL));
        TRY(distq_onednn_new_slot(S, &md, &s_dst));
        distq_onednn_step *t = NULL;
        TRY(distq_onednn_new_step(S, n->name, &t));
        TRY(distq_onednn_step_set_prim(t, pd, ctx));
        distq_onednn_arg_slot(t, DNNL_ARG_SRC, s_src, 0);
        distq_onednn_arg_slot(t, DNNL_ARG_DST, s_dst, 1);
        t->inplace_dst = s_dst;
        t->inplace_src = s_src;
        CHECK(dnnl_primitive_desc_destroy(pd));
        pd = NULL;
        CHECK(dnnl_primitive_attr_destroy(attr));
        attr = NULL;
        s_src = s_dst; /* the next algorithm reads this one's output */
    }
    S->value_slot[n->output] = s_src;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* The layout of a broadcasting src1 of dims d1 beside src0 (value v0): src0's
 * channel blocking (aBcd8b, ...), since a plain src1 beside a blocked src0
 * sends oneDNN 2.6 to its reference binary (~50x slower on the SE blocks of
 * regnet and efficientnet); where oneDNN has no jitted kernel for that pair
 * either (a block of 8 on AVX-512), both channels-last: *want0 is then
 * src0's new layout (*fallback = 1), one reorder cheaper than the reference. */
static distq_status src1_layout(distq_onednn_state *S, const distq_graph *g, int v0, int ndim, const dnnl_dims_t d1,
                                dnnl_memory_desc_t *md1, dnnl_memory_desc_t *want0, int *fallback, const char *ctx)
{
    distq_status st = DISTQ_OK;
    const dnnl_memory_desc_t *md0 = distq_onednn_slot_md(S, S->value_slot[v0]);
    const dnnl_blocking_desc_t *blk = &md0->format_desc.blocking;
    dnnl_format_tag_t tag = distq_onednn_plain_tag(ndim);
    *fallback = 0;
    if (ndim == 4 && md0->format_kind == dnnl_blocked && blk->inner_nblks == 1 && blk->inner_idxs[0] == 1 &&
        blk->strides[1] > blk->strides[2]) /* C blocked outermost after N: aBcdXb */
        tag = blk->inner_blks[0] == 8 ? dnnl_aBcd8b : blk->inner_blks[0] == 16 ? dnnl_aBcd16b : tag;
    CHECK(dnnl_memory_desc_init_by_tag(md1, ndim, d1, dnnl_f32, tag));
    if (ndim == 4) {
        TRY(binary_is_ref(S, md0, md1, dnnl_binary_mul, ctx, fallback));
        if (*fallback) {
            dnnl_dims_t d0;
            distq_onednn_value_dims(&g->values[v0], S->batch, d0);
            CHECK(dnnl_memory_desc_init_by_tag(want0, 4, d0, dnnl_f32, dnnl_acdb));
            CHECK(dnnl_memory_desc_init_by_tag(md1, 4, d1, dnnl_f32, dnnl_acdb));
        }
    }
cleanup:
    return st;
}

static dnnl_alg_kind_t binary_alg(distq_op op)
{
    return op == DISTQ_OP_ADD   ? dnnl_binary_add
           : op == DISTQ_OP_MUL ? dnnl_binary_mul
           : op == DISTQ_OP_SUB ? dnnl_binary_sub
                                : dnnl_binary_div;
}

/* x op c with the node's constant operand (its WEIGHT parameter, of x's rank,
 * dims[0] 1), frozen into src1's layout once. */
static distq_status emit_const_binary(distq_onednn_state *S, const distq_graph *g, const group *gr,
                                      dnnl_alg_kind_t alg, const char *ctx)
{
    distq_status st = DISTQ_OK;
    const distq_node *n = &g->nodes[gr->head];
    const distq_tensor *c = &g->params[n->params[DISTQ_PARAM_WEIGHT]];
    dnnl_dims_t d1;
    for (int i = 0; i < c->ndim; i++) d1[i] = c->dims[i];
    dnnl_memory_desc_t md1, want0;
    int fallback;
    dnnl_memory_t mem = NULL;
    TRY(src1_layout(S, g, n->inputs[0], c->ndim, d1, &md1, &want0, &fallback, ctx));
    TRY(distq_onednn_make_param(S, &md1, c->ndim, d1, dnnl_f32, c->data, ctx, &mem));
    TRY(emit_binary(S, g, gr, alg, n->inputs[0], -1, mem, &md1, fallback ? &want0 : NULL, ctx));
cleanup:
    return st;
}

/* mul, sub, div: oneDNN broadcasts src1 only, so the full-shape input goes
 * first (swapped for mul, which commutes; sub and div need it as input 0). */
static distq_status emit_mul(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    dnnl_alg_kind_t alg = binary_alg(n->op);
    if (n->n_inputs == 1) return emit_const_binary(S, g, gr, alg, ctx);
    const distq_value *out = &g->values[n->output];
    int full = 0;
    if (memcmp(g->values[n->inputs[0]].dims, out->dims, sizeof(int64_t) * (size_t)out->ndim)) full = 1;
    if (full && n->op != DISTQ_OP_MUL)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "%s: on oneDNN input 0 of %s must have the output's shape (it broadcasts here)",
                               ctx, distq_op_name(n->op));
    if (memcmp(g->values[n->inputs[full]].dims, out->dims, sizeof(int64_t) * (size_t)out->ndim))
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "%s: on oneDNN one input of mul must have the output's shape "
                               "(both broadcast here)", ctx);
    int v0 = n->inputs[full], v1 = n->inputs[1 - full];
    if (!memcmp(g->values[v1].dims, out->dims, sizeof(int64_t) * (size_t)out->ndim))
        return emit_binary(S, g, gr, alg, v0, v1, NULL, NULL, NULL, ctx); /* src1 in src0's layout, as add */
    dnnl_dims_t d1;
    distq_onednn_value_dims(&g->values[v1], S->batch, d1);
    dnnl_memory_desc_t md1, want0;
    int fallback;
    TRY(src1_layout(S, g, v0, out->ndim, d1, &md1, &want0, &fallback, ctx));
    st = emit_binary(S, g, gr, alg, v0, v1, NULL, &md1, fallback ? &want0 : NULL, ctx);
cleanup:
    return st;
}

/* n's output: its input in plain layout (plain_md), read through view_md
 * (the same bytes, other strides or an offset box) and reordered into a new
 * plain slot of the output's dims. transpose and slice. */
static distq_status emit_view_copy(distq_onednn_state *S, const distq_graph *g, const distq_node *n,
                                   const dnnl_memory_desc_t *plain_md, const dnnl_memory_desc_t *view_md,
                                   const char *ctx)
{
    distq_status st = DISTQ_OK;
    const distq_value *outv = &g->values[n->output];
    dnnl_dims_t out_dims;
    distq_onednn_value_dims(outv, S->batch, out_dims);
    dnnl_memory_desc_t out_md;
    CHECK(dnnl_memory_desc_init_by_tag(&out_md, outv->ndim, out_dims, value_dt(outv), distq_onednn_plain_tag(outv->ndim)));
    int s_plain = -1, s_view = -1, s_out = -1;
    TRY(distq_onednn_slot_as(S, S->value_slot[n->inputs[0]], plain_md, n->name, ctx, &s_plain));
    TRY(distq_onednn_view_step(S, n->name, s_plain, view_md, &s_view));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_slot(S, &out_md, &s_out));
    TRY(distq_onednn_add_reorder(S, n->name, view_md, &out_md, NULL, ctx, &t));
    distq_onednn_arg_slot(t, DNNL_ARG_FROM, s_view, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, s_out, 1);
    S->value_slot[n->output] = s_out;
cleanup:
    return st;
}

/* transpose: the input in plain layout, viewed with the output's dims and the
 * input's strides permuted, then reordered into a plain output. */
static distq_status emit_transpose(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_value *in = &g->values[n->inputs[0]], *outv = &g->values[n->output];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int nd = in->ndim;
    dnnl_dims_t dims, out_dims, in_strides, view_strides;
    distq_onednn_value_dims(in, S->batch, dims);
    distq_onednn_value_dims(outv, S->batch, out_dims);
    int64_t st_acc = 1;
    for (int d = nd - 1; d >= 0; d--) {
        in_strides[d] = st_acc;
        st_acc *= dims[d];
    }
    for (int d = 0; d < nd; d++) view_strides[d] = in_strides[n->attr.perm[d]];
    dnnl_memory_desc_t plain_md, view_md;
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, nd, dims, value_dt(in), distq_onednn_plain_tag(nd)));
    CHECK(dnnl_memory_desc_init_by_strides(&view_md, nd, out_dims, value_dt(in), view_strides));
    TRY(emit_view_copy(S, g, n, &plain_md, &view_md, ctx));
cleanup:
    return st;
}

/* layer_norm: the input in plain layout viewed as rows of the normalized
 * dims, (outer, inner), normalized by oneDNN over the last; the output
 * viewed back. Without weight or bias, ones and zeros. */
static distq_status emit_layer_norm(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_value *in = &g->values[n->inputs[0]];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    float *ones = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int64_t axis = distq_axis_index(n->attr.axis, in->ndim);
    int64_t inner = distq_dims_numel(in->ndim - (int)axis, in->dims + axis);
    dnnl_dims_t dims, rows = {distq_value_numel(in, S->batch) / inner, inner}, c_dims = {inner};
    distq_onednn_value_dims(in, S->batch, dims);
    dnnl_memory_desc_t plain_md, rows_md, c_md;
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, in->ndim, dims, dnnl_f32, distq_onednn_plain_tag(in->ndim)));
    CHECK(dnnl_memory_desc_init_by_tag(&rows_md, 2, rows, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, 1, c_dims, dnnl_f32, dnnl_a));
    int s_plain = -1, s_rows = -1, s_dst = -1, s_out = -1;
    TRY(distq_onednn_slot_as(S, S->value_slot[n->inputs[0]], &plain_md, n->name, ctx, &s_plain));
    TRY(distq_onednn_view_step(S, n->name, s_plain, &rows_md, &s_rows));
    const distq_tensor *w = node_param(g, n, DISTQ_PARAM_WEIGHT), *b = node_param(g, n, DISTQ_PARAM_BIAS);
    if (!(ones = distq_calloc(sizeof(float) * (size_t)(2 * inner)))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
        goto cleanup;
    }
    for (int64_t i = 0; i < inner; i++) ones[i] = 1.0f;
    dnnl_layer_normalization_desc_t ld;
    CHECK(dnnl_layer_normalization_forward_desc_init(&ld, dnnl_forward_inference, &rows_md, NULL, n->attr.eps,
                                                     dnnl_use_scale | dnnl_use_shift));
    TRY(make_attr(0, 0, NULL, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &ld, attr, S->engine, NULL));
    dnnl_memory_t m_scale, m_shift;
    TRY(distq_onednn_make_param(S, &c_md, 1, c_dims, dnnl_f32, w ? w->data : ones, ctx, &m_scale));
    TRY(distq_onednn_make_param(S, &c_md, 1, c_dims, dnnl_f32, b ? b->data : ones + inner, ctx, &m_shift));
    TRY(distq_onednn_new_slot(S, &rows_md, &s_dst));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    TRY(distq_onednn_step_set_prim(t, pd, ctx));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC, s_rows, 0);
    distq_onednn_arg_mem(t, DNNL_ARG_SCALE, m_scale);
    distq_onednn_arg_mem(t, DNNL_ARG_SHIFT, m_shift);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    TRY(distq_onednn_view_step(S, n->name, s_dst, &plain_md, &s_out));
    S->value_slot[n->output] = s_out;
cleanup:
    distq_free(ones);
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* slice: a submemory of the input in plain layout, reordered into a plain output. */
static distq_status emit_slice(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_value *in = &g->values[n->inputs[0]], *outv = &g->values[n->output];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int nd = in->ndim;
    dnnl_dims_t dims, out_dims, offsets = {0};
    distq_onednn_value_dims(in, S->batch, dims);
    distq_onednn_value_dims(outv, S->batch, out_dims);
    for (int d = 1; d < nd; d++) offsets[d] = n->attr.starts[d];
    dnnl_memory_desc_t plain_md, view_md;
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, nd, dims, value_dt(in), distq_onednn_plain_tag(nd)));
    CHECK(dnnl_memory_desc_init_submemory(&view_md, &plain_md, out_dims, offsets));
    TRY(emit_view_copy(S, g, n, &plain_md, &view_md, ctx));
cleanup:
    return st;
}

/* softmax / log_softmax along the node's axis, in the input's layout. */
static distq_status emit_softmax(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    const distq_value *x = &g->values[n->inputs[0]];
    int s_src = S->value_slot[n->inputs[0]], s_dst = -1;
    dnnl_memory_desc_t md = *distq_onednn_slot_md(S, s_src);
    dnnl_softmax_v2_desc_t sd;
    CHECK(dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
                                            n->op == DISTQ_OP_SOFTMAX ? dnnl_softmax_accurate : dnnl_softmax_log,
                                            &md, &md, (int)distq_axis_index(n->attr.axis, x->ndim)));
    TRY(make_attr(0, 0, NULL, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &sd, attr, S->engine, NULL));
    TRY(distq_onednn_new_slot(S, &md, &s_dst));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    TRY(distq_onednn_step_set_prim(t, pd, ctx));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    S->value_slot[n->output] = s_dst;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* At most this many sources per concat primitive (a step also holds the dst
 * and the scratchpad); more inputs are joined in rounds, each round's result
 * the first source of the next. */
#define CONCAT_MAX_SRCS (DISTQ_ONEDNN_MAX_ARGS - 2)

/* concat of any count of inputs, each in its own layout; oneDNN picks dst's. */
static distq_status emit_concat(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    const distq_value *out = &g->values[n->output];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    int axis = (int)distq_axis_index(n->attr.axis, out->ndim);
    int carry = -1; /* slot of the previous round's result */
    TRY(make_attr(0, 0, NULL, ctx, &attr));
    for (int k = 0; k < n->n_inputs;) {
        int srcs[CONCAT_MAX_SRCS], m = 0;
        dnnl_memory_desc_t mds[CONCAT_MAX_SRCS];
        if (carry >= 0) srcs[m++] = carry;
        while (m < CONCAT_MAX_SRCS && k < n->n_inputs) srcs[m++] = S->value_slot[n->inputs[k++]];
        for (int j = 0; j < m; j++) mds[j] = *distq_onednn_slot_md(S, srcs[j]);
        CHECK(dnnl_concat_primitive_desc_create(&pd, NULL, m, axis, mds, attr, S->engine));
        dnnl_memory_desc_t dst_md;
        TRY(distq_onednn_query_md(pd, dnnl_query_dst_md, 0, &dst_md, ctx));
        int s_dst = -1;
        TRY(distq_onednn_new_slot(S, &dst_md, &s_dst));
        distq_onednn_step *t = NULL;
        TRY(distq_onednn_new_step(S, n->name, &t));
        TRY(distq_onednn_step_set_prim(t, pd, ctx));
        for (int j = 0; j < m; j++) distq_onednn_arg_slot(t, DNNL_ARG_MULTIPLE_SRC + j, srcs[j], 0);
        distq_onednn_arg_slot(t, DNNL_ARG_DST, s_dst, 1);
        CHECK(dnnl_primitive_desc_destroy(pd));
        pd = NULL;
        carry = s_dst;
    }
    S->value_slot[n->output] = carry;
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* A batch_norm fold_bn could not fold: inference with the running stats,
 * optional scale/shift (1 and 0 when absent) and an optional fused relu. */
static distq_status emit_batch_norm(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    float *ones = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
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
    dnnl_memory_desc_t md = *distq_onednn_slot_md(S, s_src), c_md;
    dnnl_dims_t c_dims = {C};
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, 1, c_dims, dnnl_f32, dnnl_a));
    unsigned flags = dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift;
    if (gr->post >= 0) flags |= dnnl_fuse_norm_relu; /* plan_groups fuses only relu here */
    dnnl_batch_normalization_desc_t bd;
    CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &md,
                                                     n->attr.eps, flags));
    TRY(make_attr(0, 0, NULL, ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &bd, attr, S->engine, NULL));
    dnnl_memory_t m_mean, m_var, m_scale, m_shift;
    TRY(distq_onednn_make_param(S, &c_md, 1, c_dims, dnnl_f32, mean->data, ctx, &m_mean));
    TRY(distq_onednn_make_param(S, &c_md, 1, c_dims, dnnl_f32, var->data, ctx, &m_var));
    TRY(distq_onednn_make_param(S, &c_md, 1, c_dims, dnnl_f32, gamma ? gamma->data : ones, ctx, &m_scale));
    TRY(distq_onednn_make_param(S, &c_md, 1, c_dims, dnnl_f32, beta ? beta->data : ones + C, ctx, &m_shift));
    TRY(distq_onednn_new_slot(S, &md, &s_dst));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    TRY(distq_onednn_step_set_prim(t, pd, ctx));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    distq_onednn_arg_mem(t, DNNL_ARG_MEAN, m_mean);
    distq_onednn_arg_mem(t, DNNL_ARG_VARIANCE, m_var);
    distq_onednn_arg_mem(t, DNNL_ARG_SCALE, m_scale);
    distq_onednn_arg_mem(t, DNNL_ARG_SHIFT, m_shift);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, s_dst, 1);
    t->inplace_dst = s_dst;
    t->inplace_src = s_src;
    S->value_slot[group_output(g, gr)] = s_dst;
cleanup:
    distq_free(ones);
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* max_pool2d (any ceil_mode), avg_pool2d and adaptive_avg_pool2d to (1, 1). */
static distq_status emit_pool(distq_onednn_state *S, const distq_graph *g, const group *gr)
{
    char ctx[DISTQ_NAME_MAX + 128];
    const distq_node *n = &g->nodes[gr->head];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    dnnl_dims_t src_dims, dst_dims;
    distq_onednn_value_dims(&g->values[n->inputs[0]], S->batch, src_dims);
    distq_onednn_value_dims(&g->values[n->output], S->batch, dst_dims);
    int s_dst = -1;
    distq_status st = distq_onednn_emit_pool(S, n->name, n->op, &n->attr, src_dims,
                                             dst_dims, dnnl_f32, S->value_slot[n->inputs[0]], ctx, &s_dst);
    if (!st) S->value_slot[n->output] = s_dst;
    return st;
}

typedef distq_status (*emit_fn)(distq_onednn_state *S, const distq_graph *g, const group *gr);
static const emit_fn emitters[DISTQ_OP_COUNT] = {
    [DISTQ_OP_CONV2D] = emit_conv,
    [DISTQ_OP_LINEAR] = emit_linear,
    [DISTQ_OP_FLATTEN] = emit_flatten,
    [DISTQ_OP_ADD] = emit_add,
    [DISTQ_OP_MUL] = emit_mul,
    [DISTQ_OP_SUB] = emit_mul,
    [DISTQ_OP_DIV] = emit_mul,
    [DISTQ_OP_TANH] = emit_eltwise,
    [DISTQ_OP_SILU] = emit_eltwise,
    [DISTQ_OP_SQRT] = emit_eltwise,
    [DISTQ_OP_EXP] = emit_eltwise,
    [DISTQ_OP_LOG] = emit_eltwise,
    [DISTQ_OP_ABS] = emit_eltwise,
    [DISTQ_OP_NEG] = emit_eltwise,
    [DISTQ_OP_RECIPROCAL] = emit_eltwise,
    [DISTQ_OP_POW] = emit_eltwise,
    [DISTQ_OP_ELU] = emit_eltwise,
    [DISTQ_OP_TRANSPOSE] = emit_transpose,
    [DISTQ_OP_RESHAPE] = emit_flatten,
    [DISTQ_OP_SLICE] = emit_slice,
    [DISTQ_OP_GELU] = emit_eltwise,
    [DISTQ_OP_LAYER_NORM] = emit_layer_norm,
    [DISTQ_OP_SOFTMAX] = emit_softmax,
    [DISTQ_OP_LOG_SOFTMAX] = emit_softmax,
    [DISTQ_OP_LEAKY_RELU] = emit_eltwise,
    [DISTQ_OP_CONCAT] = emit_concat,
    [DISTQ_OP_RELU] = emit_eltwise,
    [DISTQ_OP_CLIP] = emit_eltwise,
    [DISTQ_OP_HARDSWISH] = emit_eltwise,
    [DISTQ_OP_HARDSIGMOID] = emit_eltwise,
    [DISTQ_OP_SIGMOID] = emit_eltwise,
    [DISTQ_OP_BATCH_NORM] = emit_batch_norm,
    [DISTQ_OP_MAX_POOL2D] = emit_pool,
    [DISTQ_OP_AVG_POOL2D] = emit_pool,
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = emit_pool,
};

/* fp32 node i of a quantized graph, alone as its own primitive (the int8
 * executor's path for the nodes convert left in fp32). */
distq_status distq_onednn_emit_f32_node(distq_onednn_state *S, const distq_graph *g, int i)
{
    const distq_node *n = &g->nodes[i];
    if (!emitters[n->op]) return distq_backend_no_kernel("onednn", n->name, distq_op_name(n->op));
    group gr = {.head = i, .flatten = -1, .add = -1, .post = -1};
    return emitters[n->op](S, g, &gr);
}

/* Step 0 reorders the user's plain input into the input slot's layout (picked
 * by its first consumer); the last step reorders the output slot into the
 * user's plain output. Both user memories get their handles in run(). */
static distq_status emit_io(distq_onednn_state *S, const distq_graph *g)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "graph input/output";
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const distq_value *in = &g->values[g->input_value], *out = &g->values[g->output_values[0]];
    dnnl_dims_t dims;
    dnnl_memory_desc_t user_md;

    distq_onednn_value_dims(in, S->batch, dims);
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, in->ndim, dims, dnnl_f32, distq_onednn_plain_tag(in->ndim)));
    TRY(distq_onednn_make_fixed(S, &user_md, NULL, NULL, 0, ctx, &S->user_in));
    TRY(make_attr(0, 0, NULL, ctx, &attr));
    distq_onednn_step *t = &S->steps[0];
    CHECK(dnnl_reorder_primitive_desc_create(&pd, &user_md, S->engine, distq_onednn_slot_md(S, 0), S->engine,
                                             attr));
    TRY(distq_onednn_step_set_prim(t, pd, ctx));
    distq_onednn_arg_mem(t, DNNL_ARG_FROM, S->user_in);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, 0, 1);

    distq_onednn_value_dims(out, S->batch, dims);
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, out->ndim, dims, dnnl_f32, distq_onednn_plain_tag(out->ndim)));
    TRY(distq_onednn_make_fixed(S, &user_md, NULL, NULL, 0, ctx, &S->user_out));
    int s_out = S->value_slot[g->output_values[0]];
    char name[DISTQ_NAME_MAX + 16];
    snprintf(name, sizeof name, "output '%s'", g->output_names[0]);
    TRY(distq_onednn_add_reorder(S, name, distq_onednn_slot_md(S, s_out), &user_md, NULL, ctx, &t));
    distq_onednn_arg_slot(t, DNNL_ARG_FROM, s_out, 0);
    distq_onednn_arg_mem(t, DNNL_ARG_TO, S->user_out);
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

// --- grouping -----------------------------------------------------------------

/* The one node reading value v (once), or -1 if v has other readers or is a
 * graph output. readers[v] counts (node, input) pairs. */
static int sole_reader(const distq_graph *g, const int *readers, const int *reader, int v)
{
    return (readers[v] == 1 && !distq_graph_is_output(g, v)) ? reader[v] : -1;
}

/* Heads whose primitive takes eltwise post-ops. */
static const unsigned char fuses_eltwise[DISTQ_OP_COUNT] = {
    [DISTQ_OP_CONV2D] = 1, [DISTQ_OP_LINEAR] = 1, [DISTQ_OP_ADD] = 1, [DISTQ_OP_MUL] = 1,
};

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
        group gr = {.head = i, .flatten = -1, .add = -1, .post = -1};
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
        /* an add after a conv becomes its sum post-op, unless the conv already has one */
        if (h->op == DISTQ_OP_CONV2D && h->n_inputs == 1 && (c = sole_reader(g, readers, reader, cur)) >= 0 &&
            g->nodes[c].op == DISTQ_OP_ADD && !in_group[c] && g->nodes[c].n_inputs == 2 &&
            g->nodes[c].inputs[0] != g->nodes[c].inputs[1]) {
            gr.add = c;
            cur = g->nodes[c].output;
        }
        /* eltwise post-ops: any of them after conv, linear, add or mul; only
         * relu after batch_norm (dnnl_fuse_norm_relu) */
        if ((c = sole_reader(g, readers, reader, cur)) >= 0 && !in_group[c] &&
            eltwise_ops[g->nodes[c].op] &&
            (fuses_eltwise[h->op] || (h->op == DISTQ_OP_BATCH_NORM && g->nodes[c].op == DISTQ_OP_RELU)))
            gr.post = c;
        int members[4] = {i, gr.head, gr.add, gr.post}, last = i;
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

// --- the interface ------------------------------------------------------------


/* Rejects what the emitters do not handle, naming the value. */
static distq_status check_graph(const distq_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        if (!emitters[n->op]) return distq_backend_no_kernel("onednn", n->name, distq_op_name(n->op));
    }
    for (int v = 0; v < g->n_values; v++) {
        const distq_value *val = &g->values[v];
        if (val->dtype != DISTQ_DTYPE_F32)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "onednn fp32: value '%s' is %s (an fp32 graph has f32 values only)",
                                   val->name, distq_dtype_name(val->dtype));
    }
    for (int p = 0; p < g->n_params; p++) {
        const distq_tensor *t = &g->params[p];
        if (t->dtype != DISTQ_DTYPE_F32 && t->dtype != DISTQ_DTYPE_S64)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED, "onednn fp32: parameter '%s' is %s",
                                   t->name, distq_dtype_name(t->dtype));
    }
    return DISTQ_OK;
}

/* The reason value v has no slot: the group that computes it inside one
 * primitive. */
static void fused_reason(const distq_graph *g, const group *groups, const int *group_at, int v,
                         char *buf, size_t len)
{
    int p = g->values[v].producer;
    snprintf(buf, len, "it is never computed");
    for (int j = 0; j < g->n_nodes; j++) {
        if (group_at[j] < 0) continue;
        const group *gr = &groups[j];
        if (p == gr->head || p == gr->add || p == gr->flatten) {
            snprintf(buf, len, "fused into node '%s' (only the group's output '%s' exists)",
                     g->nodes[gr->head].name, g->values[group_output(g, gr)].name);
            return;
        }
    }
}

static distq_status onednn_create(const distq_graph *g0, int64_t batch, void **state)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "creating the oneDNN executor";
    distq_graph *g = NULL;
    distq_onednn_state *S = NULL;
    group *groups = NULL;
    int *group_at = NULL;
    *state = NULL;

    TRY(distq_graph_clone(g0, &g)); /* BN folding is the caller's pass (distq_job_load_fp32) */
    TRY(check_graph(g));

    /* Upper bounds: a group emits at most 3 steps and 2 slots per node, and
     * at most 4 fixed memories per node; plus the input and output. */
    TRY(distq_onednn_state_create(batch, 4 * g->n_nodes + 8, 4 * g->n_nodes + 8, 6 * g->n_nodes + 8,
                                  g->n_values, &S));
    groups = distq_calloc(sizeof(group) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    group_at = distq_calloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    if (!groups || !group_at) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
        goto cleanup;
    }

    /* Slot 0 holds the graph input, plain until a consumer picks a layout;
     * step 0 (filled by emit_io) reorders the user's array into it. */
    const distq_value *in = &g->values[g->input_value];
    dnnl_dims_t in_dims;
    dnnl_memory_desc_t in_md;
    distq_onednn_value_dims(in, batch, in_dims);
    CHECK(dnnl_memory_desc_init_by_tag(&in_md, in->ndim, in_dims, dnnl_f32, distq_onednn_plain_tag(in->ndim)));
    int s_in = -1;
    distq_onednn_step *t0 = NULL;
    TRY(distq_onednn_new_slot(S, &in_md, &s_in));
    S->slots[s_in].decided = 0;
    S->value_slot[g->input_value] = s_in;
    char name[DISTQ_NAME_MAX + 16];
    snprintf(name, sizeof name, "input '%s'", g->input_name);
    TRY(distq_onednn_new_step(S, name, &t0));

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
        TRY(emitters[g->nodes[groups[j].head].op](S, g, &groups[j])); /* checked in check_graph */
    }
    for (int k = 0; k < g->n_outputs; k++)
        if (S->value_slot[g->output_values[k]] < 0) {
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "graph output '%s' is never computed",
                                 g->output_names[k]);
            goto cleanup;
        }
    TRY(emit_io(S, g));
    /* Every value a group produces stays readable (get_value, for the
     * calibrator): its slot is pinned, so buffers are shared only by
     * reordered copies, and nothing runs in place over a value. */
    for (int v = 0; v < g->n_values; v++) {
        char why[2 * DISTQ_NAME_MAX + 64];
        if (S->value_slot[v] < 0) fused_reason(g, groups, group_at, v, why, sizeof why);
        TRY(distq_onednn_set_value(S, v, g->values[v].name, S->value_slot[v], why));
    }
    TRY(distq_onednn_plan_buffers(S));
    TRY(distq_onednn_bind_memories(S));
    *state = S;
    S = NULL;
cleanup:
    distq_free(groups);
    distq_free(group_at);
    distq_graph_destroy(g);
    (void)distq_onednn_state_free(S, 1); /* only on failure; keeps the first message */
    return st;
}


static int onednn_has_kernel(distq_op op) { return emitters[op] != NULL; }
static distq_backend_caps onednn_caps(void)
{
    return (distq_backend_caps){distq_onednn_has_vnni(), distq_onednn_isa()};
}

const distq_exec_i distq_exec_onednn_i = {
    .name = "onednn",
    .has_kernel = onednn_has_kernel,
    .caps = onednn_caps,
    .create = onednn_create,
    .run = distq_onednn_exec_run,
    .destroy = distq_onednn_exec_destroy,
    .get_value = distq_onednn_exec_get_value,
    .profile = distq_onednn_exec_profile,
};
