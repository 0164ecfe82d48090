/*
 * The frozen oneDNN int8 executor (distq_exec_onednn_int8_i) for a quantized
 * graph (quant.h), on the plan machinery of onednn_util.c. The graph may mix
 * int8 and fp32 nodes (what convert leaves in fp32): an fp32 node runs alone
 * on exec_onednn.c's emitter for its op.
 *
 * create() copies what it needs from the graph (it keeps no pointer into it)
 * and emits one step list per batch size:
 *   QUANTIZE    a C step (OpenMP loop) writing plain u8 codes exactly as the
 *               reference: clamp(round_ne(x * (1/s)) + zp, 0, quant_max);
 *               the first consumer's reorder then picks oneDNN's layout. It
 *               reads the caller's array when it is the input's one reader,
 *               else the f32 value's slot (reordered to plain if needed);
 *   CONV        u8 x s8 convolution, weights reordered once into the layout
 *               oneDNN picks (format any), per-channel output scales
 *               x_s * w_s[oc] / y_s, bias pre-scaled to bias / (x_s * w_s[oc]),
 *               runtime src / dst zero points only where non-zero, post-ops
 *               sum (residual: scale r_s / y_s, zero point r_zp) then relu;
 *               u8 or f32 dst (spec §5.10, Appendix A.1);
 *   LINEAR      inner product reading the producer's (4-D) layout when the
 *               src zero point is 0 (the resnet head); matmul on a plain 2-D
 *               src otherwise (oneDNN 2.6's inner product has no zero points);
 *   MAX_POOL    oneDNN max pooling on u8 (same qparams in and out);
 *   AVG_POOL    oneDNN avg pooling (exclude padding, kernel = H x W) on u8:
 *               the mean of the codes, rounded to nearest even;
 *   FLATTEN     no step where only int8 linears read it: the value is its
 *               input read in plain order (else a plain (N, F) view);
 *   AVG_POOL2D, CONCAT, TRANSPOSE, SLICE, RESHAPE on u8: the fp32 emitters'
 *               primitives and views, in u8 (the codes move, qparams shared);
 *   MUL         the squeeze-excite gate, a C step on the codes (emit_gate);
 *   DEQUANTIZE  a C step (q - zp) * s on the plain codes (see emit_dequantize).
 * Activations stay u8 in oneDNN's layout between int8 ops; there is no f32
 * round trip but where the graph has a dequantize. The graph output (f32) is reordered into the caller's array.
 *
 * reduce_range (quant_max 127): oneDNN saturates u8 at 255, so every u8 dst
 * whose value has quant_max < 255 gets an eltwise clip as its last post-op.
 * The dst zero point is added after the post-ops (oneDNN 2.6, checked by
 * test_onednn_int8), so the clip runs in the pre-zero-point domain:
 * [relu ? 0 : -zp, quant_max - zp]; a relu merges into it. The inner product
 * has no zero-point attribute: it adds y_zp with an eltwise linear post-op and
 * clips to [relu ? zp : 0, quant_max] after it.
 *
 * Without VNNI, oneDNN's u8 x s8 kernels sum pairs of products in saturating
 * s16 (spec §5.9): a conv or linear whose u8 src uses the full [0, 255] range
 * is refused there (DISTQ_ERR_UNSUPPORTED) rather than silently saturated.
 *
 * Every value stays readable after a run (get_value: plain row-major, u8 or
 * f32), so the residual of a fused sum is copied into the conv's dst rather
 * than overwritten in place. The f32 graph input is kept only where fp32
 * nodes read it (a quantize that is its one reader reads the caller's array).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "backend/onednn/onednn_impl.h"
#include "distq/tensor.h"

// --- small helpers ------------------------------------------------------------

static dnnl_data_type_t qdt(const distq_value *v)
{
    return v->dtype == DISTQ_DTYPE_U8 ? dnnl_u8 : dnnl_f32;
}

/* A conv2d / linear's quantized parameters (checked by finalize: s8 weight,
 * f32 scales per output channel, optional f32 bias). */
static const distq_tensor *weight_t(const distq_graph *g, const distq_node *n)
{
    return &g->params[n->params[DISTQ_PARAM_WEIGHT]];
}
static const float *weight_scale(const distq_graph *g, const distq_node *n)
{
    return g->params[n->params[DISTQ_PARAM_WEIGHT_SCALE]].data;
}
static const float *bias_of(const distq_graph *g, const distq_node *n)
{
    return n->params[DISTQ_PARAM_BIAS] >= 0 ? g->params[n->params[DISTQ_PARAM_BIAS]].data : NULL;
}


/* u8 x s8 without VNNI saturates pairwise sums unless src codes are <= 127. */
static distq_status check_src(const distq_graph *g, const distq_node *n)
{
    const distq_value *x = &g->values[n->inputs[0]];
    if (x->dtype != DISTQ_DTYPE_U8)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "int8 onednn: node '%s': input '%s' is %s, want u8",
                               n->name, x->name, distq_dtype_name(x->dtype));
    if (x->quant_max > 127 && !distq_onednn_has_vnni())
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "int8 onednn: node '%s': input '%s' uses u8 codes up to %d, but oneDNN "
                               "runs u8 x s8 on isa %s without VNNI, whose pairwise s16 sums saturate "
                               "(spec 5.9); re-run distq calibrate with --reduce-range on (auto does it "
                               "on this CPU)",
                               n->name, x->name, (int)x->quant_max, distq_onednn_isa());
    return DISTQ_OK;
}

/* A fixed s32 memory holding one zero point (a runtime attribute argument). */
static distq_status make_zp(distq_onednn_state *S, int32_t zp, const char *ctx, dnnl_memory_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_desc_t md;
    dnnl_dims_t one = {1};
    CHECK(dnnl_memory_desc_init_by_tag(&md, 1, one, dnnl_s32, dnnl_a));
    TRY(distq_onednn_make_fixed(S, &md, &md, &zp, 1, ctx, out));
cleanup:
    return st;
}

/* Attributes of a conv / linear: output scales x_s * w_s[oc] / y_s per output
 * channel (mask 1 << 1), runtime zero points where non-zero (zp_attr; else
 * none: the inner product), and the post-ops: [sum] [relu] [clip]. With a
 * post_op (clip, hardswish, silu, gelu: not scale-invariant, unlike relu) the
 * scales stop at the real domain, x_s * w_s[oc], the sum adds r_s * (r - r_zp),
 * the op runs on real values and one eltwise linear takes them to codes (1/y_s,
 * + y_zp without the zero-point attribute), then one clip to the code range.
 * A fused clip merges into that last clip: oneDNN 2.6's int8 conv gives two
 * clips of one chain the first one's bounds (seen on jit_int8 AVX-512 VNNI:
 * clip [-3, 3], linear 169, clip [-42, 85] clipped codes to zp +- 3), so no
 * eltwise kind appears twice. */
static distq_status make_qattr(const distq_graph *g, const distq_node *n, int zp_attr,
                               const char *ctx, dnnl_primitive_attr_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    const distq_value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    const int u8 = y->dtype == DISTQ_DTYPE_U8, post = n->attr.post_op >= 0;
    const int64_t OC = weight_t(g, n)->dims[0];
    const float *ws = weight_scale(g, n);
    const double y_s = u8 && !post ? y->scale : 1.0; /* the domain the post-ops see */
    const int32_t y_zp = u8 ? y->zero_point : 0, qmax = u8 ? y->quant_max : 255;
    const int32_t rt = DNNL_RUNTIME_S32_VAL;
    float *scales = distq_malloc(sizeof(float) * (size_t)OC);
    if (!scales) return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
    for (int64_t oc = 0; oc < OC; oc++) scales[oc] = (float)((double)x->scale * ws[oc] / y_s);

    TRY(distq_onednn_attr_create(ctx, &attr));
    CHECK(dnnl_primitive_attr_set_output_scales(attr, OC, 1 << 1, scales));
    if (zp_attr && x->zero_point != 0) CHECK(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt));
    if (zp_attr && y_zp != 0) CHECK(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &rt));
    CHECK(dnnl_post_ops_create(&ops));
    if (n->n_inputs > 1) {
        const distq_value *r = &g->values[n->inputs[1]];
        CHECK(dnnl_post_ops_append_sum_v3(ops, (float)(r->scale / y_s), r->zero_point, u8 ? dnnl_u8 : dnnl_f32));
    }
    if (post) {
        distq_attrs pa = distq_post_op_attrs(&n->attr);
        const int clip = n->attr.post_op == DISTQ_OP_CLIP;
        if (!clip || !u8) TRY(distq_onednn_append_eltwise(ops, (distq_op)n->attr.post_op, &pa, ctx));
        if (u8) {
            /* real -> codes, the zero point here where there is no attribute for it */
            const float inv = (float)(1.0 / y->scale), add = zp_attr ? 0.0f : (float)y_zp;
            float lo = zp_attr ? (float)-y_zp : 0.0f, hi = zp_attr ? (float)(qmax - y_zp) : (float)qmax;
            CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_linear, inv, add));
            if (clip) {
                lo = fmaxf(lo, pa.min * inv + add);
                hi = fminf(hi, pa.max * inv + add);
            }
            if (clip || qmax < 255) CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_clip, lo, hi));
        }
    } else if (!u8) {
        if (n->attr.post_relu) CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    } else if (zp_attr) {
        /* dst zp is added after the post-ops: clip to [lo, qmax] - zp */
        if (qmax < 255)
            CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_clip,
                                               n->attr.post_relu ? 0.0f : (float)-y_zp, (float)(qmax - y_zp)));
        else if (n->attr.post_relu)
            CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    } else {
        /* no zero-point attribute: add it here, then clip in the code domain */
        if (y_zp != 0 || qmax < 255) {
            if (y_zp != 0) CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_linear, 1.0f, (float)y_zp));
            CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_clip,
                                               n->attr.post_relu ? (float)y_zp : 0.0f, (float)qmax));
        } else if (n->attr.post_relu) {
            CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        }
    }
    CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    *out = attr;
    attr = NULL;
cleanup:
    distq_free(scales);
    if (ops) CHECK_CLEANUP(dnnl_post_ops_destroy(ops));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* The bias in the accumulator domain: bias[oc] / (x_s * w_s[oc]), so that
 * oneDNN's oscale * (acc + bias') is (x_s * w_s * acc + bias) / y_s. NULL if
 * the node has none; the caller frees. */
static distq_status prescaled_bias(const distq_graph *g, const distq_node *n, const char *ctx,
                                   float **out)
{
    *out = NULL;
    const float *bias = bias_of(g, n), *ws = weight_scale(g, n);
    if (!bias) return DISTQ_OK;
    const int64_t OC = weight_t(g, n)->dims[0];
    const double x_s = g->values[n->inputs[0]].scale;
    float *b = distq_malloc(sizeof(float) * (size_t)OC);
    if (!b) return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
    for (int64_t oc = 0; oc < OC; oc++) b[oc] = (float)(bias[oc] / (x_s * ws[oc]));
    *out = b;
    return DISTQ_OK;
}

/* The runtime zero-point arguments of a conv / matmul step. */
static distq_status add_zp_args(distq_onednn_state *S, const distq_graph *g, const distq_node *n,
                                distq_onednn_step *t, const char *ctx)
{
    distq_status st = DISTQ_OK;
    const distq_value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    dnnl_memory_t m = NULL;
    if (x->zero_point != 0) {
        TRY(make_zp(S, x->zero_point, ctx, &m));
        distq_onednn_arg_mem(t, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, m);
    }
    if (y->dtype == DISTQ_DTYPE_U8 && y->zero_point != 0) {
        TRY(make_zp(S, y->zero_point, ctx, &m));
        distq_onednn_arg_mem(t, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, m);
    }
cleanup:
    return st;
}

// --- quantize: a C step -------------------------------------------------------

/* args: FROM the user's plain f32 input, TO the plain u8 slot. The codes of
 * distq_quantize_value (and the int8 reference), element by element:
 * q = clamp(nearbyintf(x * (1/s)) + zp, 0, quant_max). x * (1/s) is first
 * clamped to [-zp - 1, quant_max - zp + 1] (outside it the result is 0 or
 * quant_max either way), then rounded half to even by adding and removing
 * 1.5 * 2^23, exact for |v| < 2^22 in the default rounding mode: unlike a
 * nearbyintf call this vectorizes (3 ms instead of 36 ms for 50 images at
 * 224x224 on 2 AVX2 cores). NaN gives 0, as in the reference on x86. */
static inline uint8_t code_of(float v, float zp, float qmax)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    v = v < -zp - 1.0f ? -zp - 1.0f : v;
    v = v > qmax - zp + 1.0f ? qmax - zp + 1.0f : v;
    float r = (v + magic) - magic + zp;
    return (uint8_t)(r >= qmax ? qmax : r > 0.0f ? r : 0.0f);
}

static distq_status quantize_step(const distq_onednn_step *t)
{
    distq_status st = DISTQ_OK;
    const char *ctx = t->name;
    void *src = NULL, *dst = NULL;
    CHECK(dnnl_memory_get_data_handle(t->args[0].memory, &src));
    CHECK(dnnl_memory_get_data_handle(t->args[1].memory, &dst));
    const float *x = src, inv = t->fn_scale, zp = (float)t->fn_zp, qmax = (float)t->fn_qmax;
    uint8_t *y = dst;
    const int64_t count = t->fn_count;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = code_of(x[i] * inv, zp, qmax);
cleanup:
    return st;
}

// --- emitters: one per qop ----------------------------------------------------

static distq_status emit_quantize(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    distq_status st = DISTQ_OK;
    char ctx[2 * DISTQ_NAME_MAX + 192];
    const distq_value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    if (x->dtype != DISTQ_DTYPE_F32 || y->dtype != DISTQ_DTYPE_U8) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: quantize wants f32 -> u8", ctx);
        goto cleanup;
    }
    dnnl_dims_t dims;
    dnnl_memory_desc_t in_md, md;
    distq_onednn_value_dims(x, S->batch, dims);
    CHECK(dnnl_memory_desc_init_by_tag(&in_md, x->ndim, dims, dnnl_f32, distq_onednn_plain_tag(x->ndim)));
    CHECK(dnnl_memory_desc_init_by_tag(&md, y->ndim, dims, dnnl_u8, distq_onednn_plain_tag(y->ndim)));
    /* the graph input, read by this quantize only, straight from the caller's
     * array; any other f32 value from its slot, in plain order */
    int s_src = S->value_slot[n->inputs[0]];
    if (s_src < 0 && n->inputs[0] == g->input_value && !S->user_in)
        TRY(distq_onednn_make_fixed(S, &in_md, NULL, NULL, 0, ctx, &S->user_in));
    else if (s_src < 0)
        TRY(distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: input not computed yet", ctx));
    else
        TRY(distq_onednn_slot_as(S, s_src, &in_md, n->name, ctx, &s_src));
    int s_dst = -1;
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_slot(S, &md, &s_dst));
    TRY(distq_onednn_new_step(S, n->name, &t));
    t->fn = quantize_step;
    t->fn_scale = 1.0f / y->scale;
    t->fn_zp = y->zero_point;
    t->fn_qmax = y->quant_max;
    t->fn_count = distq_dims_numel(y->ndim, dims);
    if (s_src < 0) distq_onednn_arg_mem(t, DNNL_ARG_FROM, S->user_in);
    else distq_onednn_arg_slot(t, DNNL_ARG_FROM, s_src, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, s_dst, 1);
    S->value_slot[n->output] = s_dst;
cleanup:
    return st;
}

/* conv [+ sum] [+ relu] [+ clip]. For the sum, the residual is first copied
 * (reordered) into the conv's dst; plan_buffers drops that copy and works in
 * place when the residual is a dead, unpinned slot of the same layout. */
static distq_status emit_conv(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    distq_status st = DISTQ_OK;
    char ctx[2 * DISTQ_NAME_MAX + 192];
    const distq_value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    dnnl_primitive_attr_t attr = NULL;
    distq_onednn_weighted_parts c = {0};
    float *bias = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    TRY(check_src(g, n));
    if (x->ndim != 4 || y->ndim != 4 || weight_t(g, n)->ndim != 4) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: conv wants 4-D values and weights", ctx);
        goto cleanup;
    }
    TRY(make_qattr(g, n, 1, ctx, &attr));
    TRY(prescaled_bias(g, n, ctx, &bias));
    const distq_onednn_weighted_spec spec = {dnnl_u8, dnnl_s8, qdt(y), weight_t(g, n)->data, bias};
    TRY(distq_onednn_conv_begin(S, g, n, &spec, attr, ctx, &c));
    if (n->n_inputs > 1) {
        /* u8 dst: the residual codes as they are; f32 dst: converted to f32
         * (the sum post-op then takes (r - r_zp) * r_s in f32) */
        int s_r = S->value_slot[n->inputs[1]];
        if (g->values[n->inputs[1]].dtype != DISTQ_DTYPE_U8 || s_r < 0) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: residual '%s' is not a u8 value", ctx,
                                 g->values[n->inputs[1]].name);
            goto cleanup;
        }
        char name[DISTQ_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s (residual)", n->name);
        TRY(distq_onednn_add_residual_copy(S, name, s_r, c.s_dst, &c.dst_md, ctx));
    }
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_weighted_step(S, n, &c, ctx, &t));
    TRY(add_zp_args(S, g, n, t, ctx));
    S->value_slot[n->output] = c.s_dst;
cleanup:
    distq_free(bias);
    if (c.pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(c.pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* The plain 2-D (rows, cols) u8 slot of slot s: s itself when so, else a
 * plain reorder of it (if needed) reinterpreted as rows of cols elements:
 * (N, C*H*W) after a flatten, (N*H*W, C) for a linear on the last dim. */
static distq_status slot_as_rows(distq_onednn_state *S, int s, int64_t cols, const char *name, const char *ctx,
                                 int *out)
{
    distq_status st = DISTQ_OK;
    const dnnl_memory_desc_t *md = distq_onednn_slot_md(S, s);
    dnnl_memory_desc_t plain_md, flat_md;
    int ndim = md->ndims;
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, ndim, md->dims, md->data_type, distq_onednn_plain_tag(ndim)));
    int s_plain = -1;
    TRY(distq_onednn_slot_as(S, s, &plain_md, name, ctx, &s_plain));
    if (ndim == 2 && plain_md.dims[1] == cols) {
        *out = s_plain;
        return DISTQ_OK;
    }
    dnnl_dims_t flat = {distq_dims_numel(ndim, plain_md.dims) / cols, cols};
    CHECK(dnnl_memory_desc_init_by_tag(&flat_md, 2, flat, plain_md.data_type, dnnl_ab));
    for (int i = 0; i < S->n_slots; i++) /* a view made for an earlier consumer */
        if (S->slots[i].view_of == s_plain && dnnl_memory_desc_equal(&S->slots[i].md, &flat_md)) {
            *out = i;
            return DISTQ_OK;
        }
    TRY(distq_onednn_view_step(S, name, s_plain, &flat_md, out));
cleanup:
    return st;
}

/* linear [+ relu / post-op] [+ clip]. src zero point 0 on (N, IN) or a
 * flatten's 4-D input: an inner product on the src as it is (weights viewed
 * as (OUT, C, H, W)); otherwise a matmul on the plain (rows, IN) src, rows
 * every position of every image for a linear on the last dim of a rank > 2
 * value (convnext's MLP on (N, H, W, C)), with a runtime src zero point; its
 * plain (rows, OUT) output viewed back with the value's dims. */
static distq_status emit_linear(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    distq_status st = DISTQ_OK;
    char ctx[2 * DISTQ_NAME_MAX + 192];
    const distq_value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    dnnl_primitive_attr_t attr = NULL;
    distq_onednn_weighted_parts c = {.s_src = -1, .s_dst = -1};
    float *bias = NULL;
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    TRY(check_src(g, n));
    const int64_t OUT = weight_t(g, n)->dims[0], IN = weight_t(g, n)->dims[1];
    int s_in = S->value_slot[n->inputs[0]];
    const dnnl_memory_desc_t *in_md = distq_onednn_slot_md(S, s_in);
    const int rows_view = x->ndim > 2; /* a linear on the last dim, not a flatten's input */
    int64_t features = 1;
    for (int i = rows_view ? in_md->ndims - 1 : 1; i < in_md->ndims; i++) features *= in_md->dims[i];
    if (weight_t(g, n)->ndim != 2 || features != IN) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: %lld input features, weight wants %lld", ctx,
                             (long long)features, (long long)IN);
        goto cleanup;
    }
    dnnl_dims_t dst_dims = {distq_value_numel(y, S->batch) / OUT, OUT};
    TRY(prescaled_bias(g, n, ctx, &bias));

    distq_onednn_step *t = NULL;
    if (x->zero_point == 0 && !rows_view) {
        TRY(make_qattr(g, n, 0, ctx, &attr));
        const distq_onednn_weighted_spec spec = {dnnl_u8, dnnl_s8, qdt(y), weight_t(g, n)->data, bias};
        TRY(distq_onednn_ip_begin(S, s_in, n->name, OUT, &spec, attr, ctx, &c));
    } else {
        /* matmul: src (N, IN) plain, weights (IN, OUT) = our (OUT, IN) read
         * column-major ("ba"), bias (1, OUT) */
        dnnl_dims_t w_dims = {IN, OUT}, mb_dims = {1, OUT};
        dnnl_memory_desc_t src_md, w_md, b_md, w_user_md;
        TRY(slot_as_rows(S, s_in, IN, n->name, ctx, &c.s_src));
        src_md = S->slots[c.s_src].md;
        CHECK(dnnl_memory_desc_init_by_tag(&w_md, 2, w_dims, dnnl_s8, dnnl_format_tag_any));
        CHECK(dnnl_memory_desc_init_by_tag(&w_user_md, 2, w_dims, dnnl_s8, dnnl_ba));
        CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, mb_dims, dnnl_f32, dnnl_ab));
        CHECK(dnnl_memory_desc_init_by_tag(&c.dst_md, 2, dst_dims, qdt(y), rows_view ? dnnl_ab : dnnl_format_tag_any));
        TRY(make_qattr(g, n, 1, ctx, &attr));
        dnnl_matmul_desc_t md;
        CHECK(dnnl_matmul_desc_init(&md, &src_md, &w_md, bias ? &b_md : NULL, &c.dst_md));
        CHECK(dnnl_primitive_desc_create(&c.pd, &md, attr, S->engine, NULL));
        TRY(distq_onednn_query_md(c.pd, dnnl_query_weights_md, 0, &w_md, ctx));
        TRY(distq_onednn_query_md(c.pd, dnnl_query_dst_md, 0, &c.dst_md, ctx));
        TRY(distq_onednn_make_fixed(S, &w_md, &w_user_md, weight_t(g, n)->data, 1, ctx, &c.w_mem));
        if (bias) TRY(distq_onednn_make_param(S, &b_md, 2, mb_dims, dnnl_f32, bias, ctx, &c.b_mem));
        TRY(distq_onednn_new_slot(S, &c.dst_md, &c.s_dst));
    }
    TRY(distq_onednn_weighted_step(S, n, &c, ctx, &t));
    if (x->zero_point != 0 || rows_view) TRY(add_zp_args(S, g, n, t, ctx));
    S->value_slot[n->output] = c.s_dst;
    if (rows_view) { /* (rows, OUT) plain is the value's (N, ..., OUT) */
        dnnl_dims_t y_dims;
        dnnl_memory_desc_t y_md;
        distq_onednn_value_dims(y, S->batch, y_dims);
        CHECK(dnnl_memory_desc_init_by_tag(&y_md, y->ndim, y_dims, qdt(y), distq_onednn_plain_tag(y->ndim)));
        TRY(distq_onednn_view_step(S, n->name, c.s_dst, &y_md, &S->value_slot[n->output]));
    }
cleanup:
    distq_free(bias);
    if (c.pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(c.pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* max pool (any ceil_mode) and adaptive avg pool to (1, 1), u8 in and out. */
static distq_status emit_pool(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    char ctx[2 * DISTQ_NAME_MAX + 192];
    const distq_value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    if (x->dtype != DISTQ_DTYPE_U8 || y->dtype != DISTQ_DTYPE_U8 || x->ndim != 4 || y->ndim != 4)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: pooling wants 4-D u8 in and out", ctx);
    dnnl_dims_t src_dims, dst_dims;
    distq_onednn_value_dims(x, S->batch, src_dims);
    distq_onednn_value_dims(y, S->batch, dst_dims);
    int s_dst = -1;
    /* u8 in, u8 out, same qparams: max pooling is exact, the average rounds to nearest */
    distq_status st = distq_onednn_emit_pool(S, n->name, n->op, &n->attr, src_dims,
                                             dst_dims, dnnl_u8, S->value_slot[n->inputs[0]], ctx, &s_dst);
    if (!st) S->value_slot[n->output] = s_dst;
    return st;
}

/* args: FROM plain u8 codes, TO plain f32: y = (q - zp) * s, as the reference. */
static distq_status dequantize_step(const distq_onednn_step *t)
{
    distq_status st = DISTQ_OK;
    const char *ctx = t->name;
    void *src = NULL, *dst = NULL;
    CHECK(dnnl_memory_get_data_handle(t->args[0].memory, &src));
    CHECK(dnnl_memory_get_data_handle(t->args[1].memory, &dst));
    const uint8_t *q = src;
    float *y = dst;
    const float s = t->fn_scale, zp = (float)t->fn_zp;
    const int64_t count = t->fn_count;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = ((float)q[i] - zp) * s;
cleanup:
    return st;
}

/* u8 -> f32: the codes in plain order (a reorder if the slot has oneDNN's
 * layout), then a C step computing (q - zp) * s into plain f32 of the slot's
 * dims (a flatten's 4-D input in plain order is its (N, F) value). Not a
 * reorder with a src zero point: oneDNN 2.6's jit:uni reorder acdb -> abcd
 * dropped it for 1x960x7x7 (mobilenet_v3's last SE blocks, every element off
 * by zp * s) while 1x672x7x7 and 1x480x14x14 were right. */
static distq_status emit_dequantize(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    distq_status st = DISTQ_OK;
    char ctx[2 * DISTQ_NAME_MAX + 192];
    const distq_value *x = &g->values[n->inputs[0]];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    if (x->dtype != DISTQ_DTYPE_U8 || g->values[n->output].dtype != DISTQ_DTYPE_F32) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: dequantize wants u8 -> f32", ctx);
        goto cleanup;
    }
    int s_src = S->value_slot[n->inputs[0]], s_plain = -1, s_dst = -1;
    const dnnl_memory_desc_t src_md = *distq_onednn_slot_md(S, s_src);
    dnnl_memory_desc_t plain_md, dst_md;
    const dnnl_format_tag_t tag = distq_onednn_plain_tag(src_md.ndims);
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, src_md.ndims, src_md.dims, dnnl_u8, tag));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, src_md.ndims, src_md.dims, dnnl_f32, tag));
    TRY(distq_onednn_slot_as(S, s_src, &plain_md, n->name, ctx, &s_plain));
    TRY(distq_onednn_new_slot(S, &dst_md, &s_dst));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    t->fn = dequantize_step;
    t->fn_scale = x->scale;
    t->fn_zp = x->zero_point;
    t->fn_count = distq_dims_numel(src_md.ndims, src_md.dims);
    distq_onednn_arg_slot(t, DNNL_ARG_FROM, s_plain, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, s_dst, 1);
    S->value_slot[n->output] = s_dst;
cleanup:
    return st;
}

/* Read only by int8 linears: no data movement, the value is its input's slot
 * (the linear reads it in plain order, or as the 4-D tensor, see
 * emit_linear). Any other reader (a dequantize, a layout op) gets a real
 * (N, F) view, as on the fp32 path. */
static distq_status emit_flatten(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    int linears_only = !distq_graph_is_output(g, n->output);
    for (int i = 0; i < g->n_nodes && linears_only; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == n->output && g->nodes[i].op != DISTQ_OP_LINEAR) linears_only = 0;
    if (!linears_only) return distq_onednn_emit_f32_node(S, g, (int)(n - g->nodes));
    S->value_slot[n->output] = S->value_slot[n->inputs[0]];
    return DISTQ_OK;
}

typedef distq_status (*qemit_fn)(distq_onednn_state *S, const distq_graph *g, const distq_node *n);
/* args: FROM u8 x, gate f32 (N * C), TO u8 or f32, x and the output both
 * NCHW (fn_inner = H * W codes per gate value) or both NHWC (fn_inner = C:
 * a row of C codes reads the image's C gate values):
 * y = s * (q - zp) * gate, requantized as the reference does (round half to
 * even, by adding and removing 1.5 * 2^23 so that the loop vectorizes). */
static distq_status gate_step(const distq_onednn_step *t)
{
    distq_status st = DISTQ_OK;
    const char *ctx = t->name;
    void *src = NULL, *gate_p = NULL, *dst = NULL;
    CHECK(dnnl_memory_get_data_handle(t->args[0].memory, &src));
    CHECK(dnnl_memory_get_data_handle(t->args[1].memory, &gate_p));
    CHECK(dnnl_memory_get_data_handle(t->args[2].memory, &dst));
    const uint8_t *q = src;
    const float *gate = gate_p, s = t->fn_scale, zp = (float)t->fn_zp, inv = t->fn_out_inv;
    const float ozp = (float)t->fn_out_zp, qmax = (float)t->fn_qmax;
    const int64_t inner = t->fn_inner, rows = t->fn_count / inner, per_image = t->fn_per_image;
    const int nhwc = t->fn_nhwc;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        /* NCHW: one gate value for the row; NHWC: the row's image's C values.
         * Two plain loops each way, so that the compiler vectorizes them. */
        const uint8_t *qr = q + r * inner;
        const float *gr = nhwc ? gate + (r * inner / per_image) * inner : gate + r;
        if (inv == 0.0f) {
            float *y = (float *)dst + r * inner;
            if (nhwc)
                for (int64_t i = 0; i < inner; i++) y[i] = s * ((float)qr[i] - zp) * gr[i];
            else
                for (int64_t i = 0; i < inner; i++) y[i] = s * ((float)qr[i] - zp) * gr[0];
            continue;
        }
        uint8_t *y = (uint8_t *)dst + r * inner;
        const float g0 = gr[0];
        for (int64_t i = 0; i < inner; i++) y[i] = code_of(s * ((float)qr[i] - zp) * (nhwc ? gr[i] : g0) * inv, ozp, qmax);
    }
cleanup:
    return st;
}

/* The squeeze-excite gate, in x's layout when it is NHWC (what oneDNN's int8
 * convs pick; the output keeps it for the next conv), else in NCHW; the gate
 * as plain (N, C). */
static distq_status emit_gate(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    distq_status st = DISTQ_OK;
    char ctx[2 * DISTQ_NAME_MAX + 192];
    const distq_value *x = &g->values[n->inputs[0]], *gv = &g->values[n->inputs[1]], *y = &g->values[n->output];
    distq_onednn_node_ctx(g, n, S->batch, ctx, sizeof ctx);
    dnnl_dims_t xd, gd;
    dnnl_memory_desc_t nhwc_md, x_md, g_md, y_md;
    distq_onednn_value_dims(x, S->batch, xd);
    distq_onednn_value_dims(gv, S->batch, gd);
    CHECK(dnnl_memory_desc_init_by_tag(&nhwc_md, 4, xd, dnnl_u8, dnnl_acdb));
    const int nhwc = dnnl_memory_desc_equal(distq_onednn_slot_md(S, S->value_slot[n->inputs[0]]), &nhwc_md);
    const dnnl_format_tag_t tag = nhwc ? dnnl_acdb : dnnl_abcd;
    CHECK(dnnl_memory_desc_init_by_tag(&x_md, 4, xd, dnnl_u8, tag));
    CHECK(dnnl_memory_desc_init_by_tag(&g_md, 4, gd, dnnl_f32, dnnl_abcd));
    CHECK(dnnl_memory_desc_init_by_tag(&y_md, 4, xd, qdt(y), tag));
    int s_x = -1, s_g = -1, s_y = -1;
    TRY(distq_onednn_slot_as(S, S->value_slot[n->inputs[0]], &x_md, n->name, ctx, &s_x));
    TRY(distq_onednn_slot_as(S, S->value_slot[n->inputs[1]], &g_md, n->name, ctx, &s_g));
    TRY(distq_onednn_new_slot(S, &y_md, &s_y));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    t->fn = gate_step;
    t->fn_scale = x->scale;
    t->fn_zp = x->zero_point;
    t->fn_out_inv = y->dtype == DISTQ_DTYPE_U8 ? 1.0f / y->scale : 0.0f;
    t->fn_out_zp = y->dtype == DISTQ_DTYPE_U8 ? y->zero_point : 0;
    t->fn_qmax = y->dtype == DISTQ_DTYPE_U8 ? y->quant_max : 255;
    t->fn_count = distq_dims_numel(4, xd);
    t->fn_nhwc = nhwc;
    t->fn_inner = nhwc ? xd[1] : xd[2] * xd[3];
    t->fn_per_image = xd[1] * xd[2] * xd[3];
    distq_onednn_arg_slot(t, DNNL_ARG_SRC_0, s_x, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_SRC_1, s_g, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, s_y, 1);
    S->value_slot[n->output] = s_y;
cleanup:
    return st;
}

/* concat, transpose, slice, reshape of u8 values that share one qparams: the
 * fp32 emitters' layout steps, which keep the values' data type */
static distq_status emit_layout(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    return distq_onednn_emit_f32_node(S, g, (int)(n - g->nodes));
}

static const qemit_fn qemitters[DISTQ_OP_COUNT] = {
    [DISTQ_OP_QUANTIZE] = emit_quantize, [DISTQ_OP_CONV2D] = emit_conv,
    [DISTQ_OP_LINEAR] = emit_linear,     [DISTQ_OP_MAX_POOL2D] = emit_pool,
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = emit_pool,     [DISTQ_OP_FLATTEN] = emit_flatten,
    [DISTQ_OP_DEQUANTIZE] = emit_dequantize, [DISTQ_OP_AVG_POOL2D] = emit_pool,
    [DISTQ_OP_CONCAT] = emit_layout,          [DISTQ_OP_TRANSPOSE] = emit_layout,
    [DISTQ_OP_SLICE] = emit_layout,           [DISTQ_OP_RESHAPE] = emit_layout,
    [DISTQ_OP_MUL] = emit_gate,
};

static distq_status emit_node(distq_onednn_state *S, const distq_graph *g, const distq_node *n)
{
    /* a finalized graph: indices are valid, nodes in execution order */
    int int8 = n->op == DISTQ_OP_QUANTIZE || g->values[n->inputs[0]].dtype == DISTQ_DTYPE_U8;
    for (int k = 0; !int8 && k < n->n_inputs; k++)
        if (S->value_slot[n->inputs[k]] < 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: node '%s': input '%s' not computed yet",
                                   n->name, g->values[n->inputs[k]].name);
    if (!int8) return distq_onednn_emit_f32_node(S, g, (int)(n - g->nodes)); /* a node left in fp32 */
    if (n->op != DISTQ_OP_QUANTIZE && S->value_slot[n->inputs[0]] < 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "int8 onednn: node '%s': input '%s' not computed yet",
                               n->name, g->values[n->inputs[0]].name);
    if ((int)n->op < 0 || n->op >= DISTQ_OP_COUNT || !qemitters[n->op])
        return distq_backend_no_kernel("onednn int8", n->name, distq_op_name(n->op));
    return qemitters[n->op](S, g, n);
}

/* The last step reorders the f32 output slot into the caller's plain array. */
static distq_status emit_output(distq_onednn_state *S, const distq_graph *g)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "graph output";
    const distq_value *out = &g->values[g->output_values[0]];
    int s_out = S->value_slot[g->output_values[0]];
    if (out->dtype != DISTQ_DTYPE_F32 || s_out < 0 || !S->user_in) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                             "int8 onednn: the graph must compute an f32 output '%s'",
                             out->name);
        goto cleanup;
    }
    const dnnl_memory_desc_t *md = distq_onednn_slot_md(S, s_out);
    dnnl_memory_desc_t user_md;
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, md->ndims, md->dims, dnnl_f32,
                                       distq_onednn_plain_tag(md->ndims)));
    TRY(distq_onednn_make_fixed(S, &user_md, NULL, NULL, 0, ctx, &S->user_out));
    char name[DISTQ_NAME_MAX + 16];
    snprintf(name, sizeof name, "output '%s'", out->name);
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_add_reorder(S, name, md, &user_md, NULL, ctx, &t));
    distq_onednn_arg_slot(t, DNNL_ARG_FROM, s_out, 0);
    distq_onednn_arg_mem(t, DNNL_ARG_TO, S->user_out);
cleanup:
    return st;
}

/* 1 if the graph input's one reader is a quantize (it then reads the
 * caller's array directly). */
static int input_read_by_one_quantize(const distq_graph *g)
{
    int readers = 0, quantize = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == g->input_value) {
                readers++;
                quantize = g->nodes[i].op == DISTQ_OP_QUANTIZE;
            }
    return readers == 1 && quantize;
}

/* Where fp32 nodes read the graph input too: a plain f32 slot, and a first
 * step copying the caller's array into it. */
static distq_status emit_input_slot(distq_onednn_state *S, const distq_graph *g)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "graph input";
    const distq_value *in = &g->values[g->input_value];
    dnnl_dims_t dims;
    dnnl_memory_desc_t md;
    distq_onednn_value_dims(in, S->batch, dims);
    CHECK(dnnl_memory_desc_init_by_tag(&md, in->ndim, dims, dnnl_f32, distq_onednn_plain_tag(in->ndim)));
    TRY(distq_onednn_make_fixed(S, &md, NULL, NULL, 0, ctx, &S->user_in));
    int s_in = -1;
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_slot(S, &md, &s_in));
    char name[DISTQ_NAME_MAX + 16];
    snprintf(name, sizeof name, "input '%s'", in->name);
    TRY(distq_onednn_add_reorder(S, name, &md, &md, NULL, ctx, &t));
    distq_onednn_arg_mem(t, DNNL_ARG_FROM, S->user_in);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, s_in, 1);
    S->value_slot[g->input_value] = s_in;
cleanup:
    return st;
}

// --- the interface ------------------------------------------------------------

static distq_status onednn_int8_create(const distq_graph *g, int64_t batch, void **state)
{
    distq_status st = DISTQ_OK;
    distq_onednn_state *S = NULL;
    *state = NULL;
    /* Upper bounds per node: 4 steps (view, reorder, residual copy, op) and
     * 3 slots; 6 fixed memories (weights, bias, 2 zero points; an fp32
     * emitter's constants); plus the
     * user memories, the scratchpad and the output reorder. */
    TRY(distq_onednn_state_create(batch, 4 * g->n_nodes + 8, 4 * g->n_nodes + 8, 6 * g->n_nodes + 8,
                                  g->n_values, &S));
    if (!input_read_by_one_quantize(g)) TRY(emit_input_slot(S, g));
    for (int i = 0; i < g->n_nodes; i++) TRY(emit_node(S, g, &g->nodes[i]));
    TRY(emit_output(S, g));
    for (int v = 0; v < g->n_values; v++)
        TRY(distq_onednn_set_value(S, v, g->values[v].name, S->value_slot[v],
                                   v == g->input_value ? "the f32 input is quantized on the fly and not kept"
                                                       : "no node computes it"));
    TRY(distq_onednn_plan_buffers(S));
    TRY(distq_onednn_bind_memories(S));
    *state = S;
    S = NULL;
cleanup:
    (void)distq_onednn_state_free(S, 1); /* only on failure; keeps the first message */
    return st;
}

static int onednn_has_int8_kernel(distq_op op) { return qemitters[op] != NULL; }

const distq_exec_i distq_exec_onednn_int8_i = {
    .name = "onednn",
    .create = onednn_int8_create,
    .has_int8_kernel = onednn_has_int8_kernel,
    .run = distq_onednn_exec_run,
    .destroy = distq_onednn_exec_destroy,
    .get_value = distq_onednn_exec_get_value,
    .profile = distq_onednn_exec_profile,
};
