/*
 * The op registry: one row per op, indexed by distq_op. A new op is an enum
 * entry, a row here (its shape rule in shape.c), and one kernel per backend.
 *
 * Attribute schemas are what model files store: the node group of an op gets
 * exactly the attributes listed here, under these names (docs/file-formats.md).
 * Only ever append to a schema; a missing attribute in a file is an error.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "distq/graph.h"
#include "graph/graph_impl.h"

#define ATTR(nm, kind, field) {nm, DISTQ_ATTR_##kind, offsetof(distq_attrs, field), 0}
#define OPTIONAL(nm, kind, field) {nm, DISTQ_ATTR_##kind, offsetof(distq_attrs, field), 1}
/* The quantized form of a head (convert writes them; fp32 files omit them). */
#define QUANT_OUT_ATTRS                                                                      \
    OPTIONAL("post_relu", I64, post_relu), OPTIONAL("out_scale", F32, out_scale),            \
        OPTIONAL("out_zero_point", I64, out_zero_point),                                     \
        OPTIONAL("out_quant_max", I64, out_quant_max), OPTIONAL("post_op", OP, post_op),     \
        OPTIONAL("post_min", F32, min), OPTIONAL("post_max", F32, max),                      \
        OPTIONAL("post_alpha", F32, alpha), OPTIONAL("post_beta", F32, beta)
#define SCHEMA(a) a, (int)(sizeof a / sizeof a[0])
#define P(slot) DISTQ_PARAM_BIT(DISTQ_PARAM_##slot)

static const distq_attr_spec conv2d_attrs[] = {
    ATTR("stride", PAIR, stride),
    ATTR("padding", PAIR, padding),
    ATTR("dilation", PAIR, dilation),
    ATTR("groups", I64, groups),
    QUANT_OUT_ATTRS,
    OPTIONAL("padding_end", PAIR, padding_end),
};
static const distq_attr_spec linear_attrs[] = {QUANT_OUT_ATTRS};
static const distq_attr_spec quantize_attrs[] = {
    ATTR("out_scale", F32, out_scale),
    ATTR("out_zero_point", I64, out_zero_point),
    ATTR("out_quant_max", I64, out_quant_max),
};
static const distq_attr_spec max_pool2d_attrs[] = {
    ATTR("kernel", PAIR, kernel),   ATTR("stride", PAIR, stride),
    ATTR("padding", PAIR, padding), ATTR("dilation", PAIR, dilation),
    ATTR("ceil_mode", I64, ceil_mode),
    OPTIONAL("padding_end", PAIR, padding_end),
};
static const distq_attr_spec batch_norm_attrs[] = {
    ATTR("eps", F32, eps),
    ATTR("momentum", F32, momentum),
};
static const distq_attr_spec avg_pool2d_attrs[] = {
    ATTR("kernel", PAIR, kernel),
    ATTR("stride", PAIR, stride),
    ATTR("padding", PAIR, padding),
    ATTR("count_include_pad", I64, count_include_pad),
    OPTIONAL("padding_end", PAIR, padding_end),
};
static const distq_attr_spec avg_pool_attrs[] = {ATTR("output_size", PAIR, output_size)};
static const distq_attr_spec flatten_attrs[] = {ATTR("start_dim", I64, start_dim)};
static const distq_attr_spec hardsigmoid_attrs[] = {ATTR("alpha", F32, alpha), ATTR("beta", F32, beta)};
static const distq_attr_spec leaky_relu_attrs[] = {ATTR("alpha", F32, alpha)};
static const distq_attr_spec pow_attrs[] = {ATTR("exponent", F32, alpha)};
static const distq_attr_spec clip_attrs[] = {ATTR("min", F32, min), ATTR("max", F32, max)};
static const distq_attr_spec concat_attrs[] = {ATTR("axis", I64, axis)};
/* the int8 squeeze-excite gate (u8 x times an f32 per-channel gate) writes u8 with these */
static const distq_attr_spec mul_attrs[] = {
    OPTIONAL("out_scale", F32, out_scale),
    OPTIONAL("out_zero_point", I64, out_zero_point),
    OPTIONAL("out_quant_max", I64, out_quant_max),
};
static const distq_attr_spec softmax_attrs[] = {ATTR("axis", I64, axis)};
static const distq_attr_spec transpose_attrs[] = {ATTR("perm", DIMS, perm)};
static const distq_attr_spec reshape_attrs[] = {ATTR("shape", DIMS, shape)};
static const distq_attr_spec layer_norm_attrs[] = {ATTR("axis", I64, axis), ATTR("eps", F32, eps)};
static const distq_attr_spec slice_attrs[] = {ATTR("starts", DIMS, starts), ATTR("ends", DIMS, ends)};

// --- describe text ---------------------------------------------------------------

/* "3" for a square pair, "3x1" otherwise. */
static void pair_text(char *buf, size_t len, const int64_t *v)
{
    if (v[0] == v[1]) snprintf(buf, len, "%lld", (long long)v[0]);
    else snprintf(buf, len, "%lldx%lld", (long long)v[0], (long long)v[1]);
}

/* The padding as pair_text when symmetric, else "top,left/bottom,right". */
static void pad_text(char *buf, size_t len, const distq_attrs *a)
{
    if (distq_pad_end(a, 0) == a->padding[0] && distq_pad_end(a, 1) == a->padding[1])
        pair_text(buf, len, a->padding);
    else
        snprintf(buf, len, "%lld,%lld/%lld,%lld", (long long)a->padding[0], (long long)a->padding[1],
                 (long long)distq_pad_end(a, 0), (long long)distq_pad_end(a, 1));
}

static const distq_tensor *weight_of(const distq_graph *g, const distq_node *n)
{
    return n->params[DISTQ_PARAM_WEIGHT] >= 0 ? &g->params[n->params[DISTQ_PARAM_WEIGHT]] : NULL;
}

/* " +sum +relu -> u8 (s 0.0123 zp 3)" for the quantized form; "" for fp32. */
static void quant_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    const distq_attrs *a = &n->attr;
    int used = snprintf(buf, len, "%s%s%s%s", n->n_inputs > 1 ? " +sum" : "", a->post_relu ? " +relu" : "",
                        a->post_op >= 0 ? " +" : "", a->post_op >= 0 ? distq_op_name((distq_op)a->post_op) : "");
    if (used < 0 || (size_t)used >= len || n->n_inputs < 1 || g->values[n->inputs[0]].dtype != DISTQ_DTYPE_U8)
        return;
    if (a->out_scale > 0.0f)
        snprintf(buf + used, len - (size_t)used, " -> u8 (s %.4g zp %lld%s)", (double)a->out_scale,
                 (long long)a->out_zero_point, a->out_quant_max < 255 ? ", 7-bit" : "");
    else
        snprintf(buf + used, len - (size_t)used, " -> f32");
}

static void conv2d_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    const distq_attrs *a = &n->attr;
    const distq_tensor *w = weight_of(g, n);
    char s[32], p[48], d[32];
    pair_text(s, sizeof s, a->stride);
    pad_text(p, sizeof p, a);
    pair_text(d, sizeof d, a->dilation);
    int used = snprintf(buf, len, "k%lldx%lld s%s p%s", w ? (long long)w->dims[2] : 0LL,
                        w ? (long long)w->dims[3] : 0LL, s, p);
    if (used > 0 && (size_t)used < len && (a->dilation[0] != 1 || a->dilation[1] != 1))
        used += snprintf(buf + used, len - (size_t)used, " d%s", d);
    if (used > 0 && (size_t)used < len && a->groups != 1)
        used += snprintf(buf + used, len - (size_t)used, " g%lld", (long long)a->groups);
    if (used > 0 && (size_t)used < len) quant_text(g, n, buf + used, len - (size_t)used);
}

static void max_pool2d_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    const distq_attrs *a = &n->attr;
    char s[32], p[48];
    pair_text(s, sizeof s, a->stride);
    pad_text(p, sizeof p, a);
    snprintf(buf, len, "k%lldx%lld s%s p%s%s", (long long)a->kernel[0], (long long)a->kernel[1], s,
             p, a->ceil_mode ? " ceil" : "");
}

static void avg_pool2d_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    const distq_attrs *a = &n->attr;
    char s[32], p[48];
    pair_text(s, sizeof s, a->stride);
    pad_text(p, sizeof p, a);
    snprintf(buf, len, "k%lldx%lld s%s p%s%s", (long long)a->kernel[0], (long long)a->kernel[1], s, p,
             a->count_include_pad || (a->padding[0] == 0 && a->padding[1] == 0 && distq_pad_end(a, 0) == 0 &&
                                     distq_pad_end(a, 1) == 0) ? "" : " exclude-pad");
}

static void batch_norm_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "eps %g", (double)n->attr.eps);
}

static void avg_pool_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "out %lldx%lld", (long long)n->attr.output_size[0],
             (long long)n->attr.output_size[1]);
}

static void flatten_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "start_dim %lld", (long long)n->attr.start_dim);
}

static void linear_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    const distq_tensor *w = weight_of(g, n);
    if (!w) return;
    int used = snprintf(buf, len, "%lld -> %lld%s", (long long)w->dims[1], (long long)w->dims[0],
                        n->params[DISTQ_PARAM_BIAS] >= 0 ? "" : ", no bias");
    if (used > 0 && (size_t)used < len) quant_text(g, n, buf + used, len - (size_t)used);
}

static void quantize_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "s %.4g zp %lld [0, %lld]", (double)n->attr.out_scale,
             (long long)n->attr.out_zero_point, (long long)n->attr.out_quant_max);
}

static void hardsigmoid_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "alpha %g beta %g", (double)n->attr.alpha, (double)n->attr.beta);
}

/* "(0, 2, 1, 3)": the entries up to the rank (a 0 after the first ends them) */
static void dims_text(char *buf, size_t len, const int64_t *v, int n)
{
    int used = snprintf(buf, len, "(");
    for (int i = 0; i < n && used > 0 && (size_t)used < len; i++)
        used += snprintf(buf + used, len - (size_t)used, i ? ", %lld" : "%lld", (long long)v[i]);
    if (used > 0 && (size_t)used < len) snprintf(buf + used, len - (size_t)used, ")");
}

static void transpose_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    int nd = n->n_inputs > 0 && g->finalized ? g->values[n->inputs[0]].ndim : DISTQ_MAX_DIMS;
    char d[128];
    dims_text(d, sizeof d, n->attr.perm, nd);
    snprintf(buf, len, "perm %s", d);
}

static void reshape_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    int r = 1;
    while (r < DISTQ_MAX_DIMS && n->attr.shape[r] > 0) r++;
    char d[128];
    dims_text(d, sizeof d, n->attr.shape, r);
    snprintf(buf, len, "to %s", d);
}

/* "dim 1 [0, 58)" per dim it cuts */
static void slice_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    int nd = n->n_inputs > 0 && g->finalized ? g->values[n->inputs[0]].ndim : DISTQ_MAX_DIMS;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 1; i < nd && used < len; i++) {
        if (g->finalized && n->attr.starts[i] == 0 && n->attr.ends[i] == g->values[n->inputs[0]].dims[i]) continue;
        int w = snprintf(buf + used, len - used, "%sdim %d [%lld, %lld)", used ? " " : "", i,
                         (long long)n->attr.starts[i], (long long)n->attr.ends[i]);
        if (w < 0) return;
        used += (size_t)w;
    }
}

static void pow_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "exponent %g", (double)n->attr.alpha);
}

static void leaky_relu_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "alpha %g", (double)n->attr.alpha);
}

static void clip_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "[%g, %g]", (double)n->attr.min, (double)n->attr.max);
}

static void concat_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    (void)g;
    snprintf(buf, len, "axis %lld", (long long)n->attr.axis);
}

// --- the table -------------------------------------------------------------------

static const distq_op_info registry[DISTQ_OP_COUNT] = {
    [DISTQ_OP_CONV2D] = {"conv2d", 1, 2, P(WEIGHT) | P(BIAS) | P(WEIGHT_SCALE), P(WEIGHT), P(WEIGHT) | P(BIAS),
                         SCHEMA(conv2d_attrs), DISTQ_QROLE_HEAD, distq_infer_conv2d, conv2d_text},
    [DISTQ_OP_BATCH_NORM] = {"batch_norm", 1, 1,
                             P(WEIGHT) | P(BIAS) | P(RUNNING_MEAN) | P(RUNNING_VAR) |
                                 P(NUM_BATCHES_TRACKED),
                             P(RUNNING_MEAN) | P(RUNNING_VAR), P(WEIGHT) | P(BIAS),
                             SCHEMA(batch_norm_attrs), DISTQ_QROLE_FP32, distq_infer_batch_norm,
                             batch_norm_text},
    [DISTQ_OP_RELU] = {"relu", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_POST_OP, distq_infer_unary, NULL},
    /* add, mul, sub, div: input 1 is a value or, with one input, the
     * constant WEIGHT (x op c) */
    [DISTQ_OP_ADD] = {"add", 1, 2, P(WEIGHT), 0, 0, NULL, 0, DISTQ_QROLE_POST_OP, distq_infer_same_shape,
                      NULL},
    [DISTQ_OP_MAX_POOL2D] = {"max_pool2d", 1, 1, 0, 0, 0, SCHEMA(max_pool2d_attrs),
                             DISTQ_QROLE_SHARES_INPUT, distq_infer_max_pool2d, max_pool2d_text},
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = {"adaptive_avg_pool2d", 1, 1, 0, 0, 0, SCHEMA(avg_pool_attrs),
                                      DISTQ_QROLE_SHARES_INPUT, distq_infer_adaptive_avg_pool2d,
                                      avg_pool_text},
    [DISTQ_OP_FLATTEN] = {"flatten", 1, 1, 0, 0, 0, SCHEMA(flatten_attrs),
                          DISTQ_QROLE_SHARES_INPUT, distq_infer_flatten, flatten_text},
    [DISTQ_OP_LINEAR] = {"linear", 1, 1, P(WEIGHT) | P(BIAS) | P(WEIGHT_SCALE), P(WEIGHT),
                         P(WEIGHT) | P(BIAS), SCHEMA(linear_attrs), DISTQ_QROLE_HEAD,
                         distq_infer_linear, linear_text},
    [DISTQ_OP_HARDSWISH] = {"hardswish", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_POST_OP,
                            distq_infer_unary, NULL},
    [DISTQ_OP_HARDSIGMOID] = {"hardsigmoid", 1, 1, 0, 0, 0, SCHEMA(hardsigmoid_attrs),
                              DISTQ_QROLE_FP32, distq_infer_hardsigmoid, hardsigmoid_text},
    [DISTQ_OP_CLIP] = {"clip", 1, 1, 0, 0, 0, SCHEMA(clip_attrs), DISTQ_QROLE_POST_OP,
                       distq_infer_clip, clip_text},
    [DISTQ_OP_SIGMOID] = {"sigmoid", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_FP32, distq_infer_unary,
                          NULL},
    [DISTQ_OP_MUL] = {"mul", 1, 2, P(WEIGHT), 0, 0, SCHEMA(mul_attrs), DISTQ_QROLE_FP32, distq_infer_broadcast, NULL},
    [DISTQ_OP_CONCAT] = {"concat", 1, DISTQ_VARIADIC, 0, 0, 0, SCHEMA(concat_attrs),
                         DISTQ_QROLE_SHARES_INPUT, distq_infer_concat, concat_text},
    [DISTQ_OP_QUANTIZE] = {"quantize", 1, 1, 0, 0, 0, SCHEMA(quantize_attrs), DISTQ_QROLE_QDQ,
                           distq_infer_quantize, quantize_text},
    [DISTQ_OP_DEQUANTIZE] = {"dequantize", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_QDQ,
                             distq_infer_dequantize, NULL},
    [DISTQ_OP_AVG_POOL2D] = {"avg_pool2d", 1, 1, 0, 0, 0, SCHEMA(avg_pool2d_attrs),
                             DISTQ_QROLE_SHARES_INPUT, distq_infer_avg_pool2d, avg_pool2d_text},
    [DISTQ_OP_TANH] = {"tanh", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_FP32, distq_infer_unary, NULL},
    [DISTQ_OP_LEAKY_RELU] = {"leaky_relu", 1, 1, 0, 0, 0, SCHEMA(leaky_relu_attrs), DISTQ_QROLE_FP32,
                             distq_infer_unary, leaky_relu_text},
    [DISTQ_OP_SUB] = {"sub", 1, 2, P(WEIGHT), 0, 0, NULL, 0, DISTQ_QROLE_FP32, distq_infer_broadcast, NULL},
    [DISTQ_OP_DIV] = {"div", 1, 2, P(WEIGHT), 0, 0, NULL, 0, DISTQ_QROLE_FP32, distq_infer_broadcast, NULL},
    [DISTQ_OP_SILU] = {"silu", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_POST_OP, distq_infer_unary, NULL},
    [DISTQ_OP_SOFTMAX] = {"softmax", 1, 1, 0, 0, 0, SCHEMA(softmax_attrs), DISTQ_QROLE_FP32, distq_infer_softmax,
                          concat_text},
    [DISTQ_OP_LOG_SOFTMAX] = {"log_softmax", 1, 1, 0, 0, 0, SCHEMA(softmax_attrs), DISTQ_QROLE_FP32,
                              distq_infer_softmax, concat_text},
    [DISTQ_OP_TRANSPOSE] = {"transpose", 1, 1, 0, 0, 0, SCHEMA(transpose_attrs), DISTQ_QROLE_SHARES_INPUT,
                            distq_infer_transpose, transpose_text},
    [DISTQ_OP_RESHAPE] = {"reshape", 1, 1, 0, 0, 0, SCHEMA(reshape_attrs), DISTQ_QROLE_SHARES_INPUT, distq_infer_reshape,
                          reshape_text},
    [DISTQ_OP_SLICE] = {"slice", 1, 1, 0, 0, 0, SCHEMA(slice_attrs), DISTQ_QROLE_SHARES_INPUT, distq_infer_slice, slice_text},
    [DISTQ_OP_GELU] = {"gelu", 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_FP32, distq_infer_unary, NULL},
    [DISTQ_OP_LAYER_NORM] = {"layer_norm", 1, 1, P(WEIGHT) | P(BIAS), 0, P(WEIGHT) | P(BIAS), SCHEMA(layer_norm_attrs),
                             DISTQ_QROLE_FP32, distq_infer_layer_norm, concat_text},
#define UNARY_FP32(OP, name) [DISTQ_OP_##OP] = {name, 1, 1, 0, 0, 0, NULL, 0, DISTQ_QROLE_FP32, distq_infer_unary, NULL}
    UNARY_FP32(SQRT, "sqrt"),
    UNARY_FP32(EXP, "exp"),
    UNARY_FP32(LOG, "log"),
    UNARY_FP32(ABS, "abs"),
    UNARY_FP32(NEG, "neg"),
    UNARY_FP32(RECIPROCAL, "reciprocal"),
    [DISTQ_OP_POW] = {"pow", 1, 1, 0, 0, 0, SCHEMA(pow_attrs), DISTQ_QROLE_FP32, distq_infer_unary, pow_text},
    [DISTQ_OP_ELU] = {"elu", 1, 1, 0, 0, 0, SCHEMA(leaky_relu_attrs), DISTQ_QROLE_FP32, distq_infer_unary,
                      leaky_relu_text},
    UNARY_FP32(ERF, "erf"),
#undef UNARY_FP32
};
_Static_assert(DISTQ_OP_COUNT == 38, "a new op needs its row in the registry");

const distq_op_info *distq_op_info_of(distq_op op)
{
    if ((int)op < 0 || op >= DISTQ_OP_COUNT || !registry[op].name) return NULL;
    return &registry[op];
}

static const char *const slot_names[DISTQ_MAX_PARAMS] = {
    "weight", "bias", "running_mean", "running_var", "num_batches_tracked", "weight_scale",
};

const char *distq_param_slot_name(int slot)
{
    return slot >= 0 && slot < DISTQ_MAX_PARAMS ? slot_names[slot] : "?";
}

const char *distq_op_name(distq_op op)
{
    const distq_op_info *info = distq_op_info_of(op);
    return info ? info->name : "?";
}

distq_status distq_op_from_name(const char *name, distq_op *out)
{
    for (int i = 0; i < DISTQ_OP_COUNT; i++) {
        if (strcmp(name, registry[i].name) == 0) {
            *out = (distq_op)i;
            return DISTQ_OK;
        }
    }
    return distq_error_set(DISTQ_ERR_FORMAT, "unknown op '%s'", name);
}

/* X86InductorQuantizer's fusions of an elementwise op into the conv / linear
 * before it (PyTorch 2.1-2.6: conv + relu / hardtanh / hardswish / silu,
 * linear + relu / gelu). Clip is hardtanh (relu6 is clip [0, 6]). */
static const struct {
    distq_op head, post;
} x86_fusions[] = {
    {DISTQ_OP_CONV2D, DISTQ_OP_RELU},      {DISTQ_OP_CONV2D, DISTQ_OP_CLIP}, {DISTQ_OP_CONV2D, DISTQ_OP_HARDSWISH},
    {DISTQ_OP_CONV2D, DISTQ_OP_SILU},      {DISTQ_OP_LINEAR, DISTQ_OP_RELU}, {DISTQ_OP_LINEAR, DISTQ_OP_GELU},
};

int distq_x86_fuses(distq_op head, distq_op post)
{
    for (size_t i = 0; i < sizeof x86_fusions / sizeof *x86_fusions; i++)
        if (x86_fusions[i].head == head && x86_fusions[i].post == post) return 1;
    return 0;
}

distq_attrs distq_post_op_attrs(const distq_attrs *head)
{
    distq_attrs a = distq_attrs_default((distq_op)head->post_op);
    a.min = head->min;
    a.max = head->max;
    a.alpha = head->alpha;
    a.beta = head->beta;
    return a;
}

size_t distq_attr_size(const distq_attr_spec *s)
{
    return s->kind == DISTQ_ATTR_F32    ? sizeof(float)
           : s->kind == DISTQ_ATTR_PAIR ? 2 * sizeof(int64_t)
           : s->kind == DISTQ_ATTR_DIMS ? DISTQ_MAX_DIMS * sizeof(int64_t)
                                        : sizeof(int64_t);
}

int distq_attrs_equal(distq_op op, const distq_attrs *a, const distq_attrs *b)
{
    const distq_op_info *info = distq_op_info_of(op);
    for (int i = 0; info && i < info->n_attrs; i++) {
        const distq_attr_spec *s = &info->attrs[i];
        if (memcmp((const char *)a + s->offset, (const char *)b + s->offset, distq_attr_size(s)) != 0) return 0;
    }
    return 1;
}

distq_attrs distq_attrs_default(distq_op op)
{
    /* one default per field serves every op that has it, but leaky_relu's slope */
    distq_attrs a = {
        .kernel = {1, 1},
        .stride = {1, 1},
        .padding = {0, 0},
        .padding_end = {-1, -1},
        .dilation = {1, 1},
        .groups = 1,
        .ceil_mode = 0,
        .output_size = {1, 1},
        .start_dim = 1,
        .eps = 1e-5f,
        .momentum = 0.1f,
        .alpha = 1.0f / 6.0f,
        .beta = 0.5f,
        .min = 0.0f,
        .max = 6.0f,
        .axis = 1,
        .count_include_pad = 1,
        .post_relu = 0,
        .post_op = -1,
        .out_scale = 0.0f,
        .out_zero_point = 0,
        .out_quant_max = 255,
    };
    if (op == DISTQ_OP_LEAKY_RELU) a.alpha = 0.01f;
    if (op == DISTQ_OP_ELU || op == DISTQ_OP_POW) a.alpha = 1.0f;
    if (op == DISTQ_OP_LAYER_NORM) a.axis = -1;
    return a;
}
