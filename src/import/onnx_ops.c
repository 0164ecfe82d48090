/*
 * The ONNX op types distq imports, each translated into registry ops by one
 * function. A translation checks every attribute value and input it reads
 * and refuses what the registry op cannot compute exactly (a transposed A, a constant where an activation is expected), naming it.
 * ONNX semantics: https://github.com/onnx/onnx/blob/main/docs/Operators.md
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import/onnx_impl.h"

#define NO_PARAMS NULL

static distq_status unary(onnx_importer *im, const Onnx__NodeProto *n, distq_op op, const distq_attrs *a)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    distq_attrs d = a ? *a : distq_attrs_default(op);
    return onnx_emit(im, op, &d, 1, &x, NO_PARAMS);
}

static distq_status t_relu(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_RELU, NULL); }
static distq_status t_sigmoid(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_SIGMOID, NULL); }
static distq_status t_hardswish(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_HARDSWISH, NULL); }

static distq_status t_hardsigmoid(onnx_importer *im, const Onnx__NodeProto *n)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_HARDSIGMOID);
    ONNX_TRY(onnx_attr_float(im, n, "alpha", 0.2f, &a.alpha)); /* ONNX's defaults, not PyTorch's */
    ONNX_TRY(onnx_attr_float(im, n, "beta", 0.5f, &a.beta));
    return unary(im, n, DISTQ_OP_HARDSIGMOID, &a);
}

/* The one float a scalar constant input holds. */
static distq_status scalar_input(onnx_importer *im, const Onnx__NodeProto *n, int k, const char *role,
                                 float *out)
{
    onnx_const *c;
    ONNX_TRY(onnx_need_const(im, n, k, role, &c));
    if (distq_dims_numel(c->ndim, c->dims) != 1)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "input %d '%s' (%s) must hold one value", k,
                               n->input[k], role);
    *out = c->dtype == DISTQ_DTYPE_F32 ? *(const float *)c->data : (float)*(const int64_t *)c->data;
    return DISTQ_OK;
}

/* Clip: min / max are attributes before opset 11, optional inputs after. */
static distq_status t_clip(onnx_importer *im, const Onnx__NodeProto *n)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_CLIP);
    a.min = -INFINITY;
    a.max = INFINITY;
    if (im->opset < 11) {
        ONNX_TRY(onnx_attr_float(im, n, "min", -INFINITY, &a.min));
        ONNX_TRY(onnx_attr_float(im, n, "max", INFINITY, &a.max));
    } else {
        if (onnx_attr(n, "min") || onnx_attr(n, "max")) /* inputs since opset 11 */
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "attributes 'min' / 'max' are inputs since opset 11");
        if (onnx_has_input(n, 1)) ONNX_TRY(scalar_input(im, n, 1, "min", &a.min));
        if (onnx_has_input(n, 2)) ONNX_TRY(scalar_input(im, n, 2, "max", &a.max));
    }
    if (isnan(a.min) || isnan(a.max) || a.min > a.max)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "min %g and max %g are not an interval",
                               (double)a.min, (double)a.max);
    if (a.min == 0.0f && isinf(a.max) && a.max > 0) return unary(im, n, DISTQ_OP_RELU, NULL);
    return unary(im, n, DISTQ_OP_CLIP, &a);
}

/* Add and Mul of two activations: add on equal shapes, mul broadcasting. */
/* Add, Mul, Sub, Div of two activations, or of an activation x and a float
 * constant c: x op c (c op x too where op commutes), c aligned to x's rank
 * as ONNX broadcasts (leading 1s), never broadcasting x itself. */
static distq_status binary(onnx_importer *im, const Onnx__NodeProto *n, distq_op op)
{
    distq_attrs a = distq_attrs_default(op);
    onnx_const *c0 = onnx_input_const(im, n, 0), *c1 = onnx_input_const(im, n, 1);
    if (!c0 && !c1) {
        const char *in[2];
        ONNX_TRY(onnx_need_value(im, n, 0, &in[0]));
        ONNX_TRY(onnx_need_value(im, n, 1, &in[1]));
        return onnx_emit(im, op, &a, 2, in, NO_PARAMS);
    }
    if (c0 && c1)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "both inputs are constants (constant folding is not supported)");
    if (c0 && (op == DISTQ_OP_SUB || op == DISTQ_OP_DIV))
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "a constant first operand '%s' is not supported (x - c "
                               "and x / c are)", c0->name);
    onnx_const *c = c1 ? c1 : c0;
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, c1 ? 0 : 1, &x));
    if (c->dtype != DISTQ_DTYPE_F32)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "constant '%s' is an integer tensor", c->name);
    int nd;
    int64_t dims[DISTQ_MAX_DIMS], cd[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    if (c->ndim > nd)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "constant '%s' has rank %d, above the input's %d",
                               c->name, c->ndim, nd);
    for (int i = 0; i < nd; i++) cd[i] = i < nd - c->ndim ? 1 : c->dims[i - (nd - c->ndim)];
    if (cd[0] != 1)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "constant '%s' has %lld entries along the batch dim; "
                               "distq's batch is symbolic, so a constant cannot vary along it", c->name,
                               (long long)cd[0]);
    for (int i = 1; i < nd; i++)
        if (cd[i] != dims[i] && cd[i] != 1)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "constant '%s' dim %d is %lld, neither the input's "
                                   "%lld nor 1 (it would broadcast the input)", c->name, i, (long long)cd[i],
                                   (long long)dims[i]);
    const char *params[DISTQ_MAX_PARAMS] = {0};
    if (c->ndim == nd) ONNX_TRY(onnx_param_of(im, c, &params[DISTQ_PARAM_WEIGHT]));
    else ONNX_TRY(onnx_param_new(im, c->name, ".aligned", nd, cd, c->data, &params[DISTQ_PARAM_WEIGHT]));
    return onnx_emit(im, op, &a, 1, &x, params);
}

static distq_status t_add(onnx_importer *im, const Onnx__NodeProto *n) { return binary(im, n, DISTQ_OP_ADD); }
static distq_status t_mul(onnx_importer *im, const Onnx__NodeProto *n) { return binary(im, n, DISTQ_OP_MUL); }
static distq_status t_sub(onnx_importer *im, const Onnx__NodeProto *n) { return binary(im, n, DISTQ_OP_SUB); }
static distq_status t_div(onnx_importer *im, const Onnx__NodeProto *n) { return binary(im, n, DISTQ_OP_DIV); }
/* Softmax, LogSoftmax: from opset 13 along one axis (default -1); before,
 * over the input coerced to 2-D at axis (default 1), which is the same
 * only when axis is the last dim. */
static distq_status softmax(onnx_importer *im, const Onnx__NodeProto *n, distq_op op)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    distq_attrs a = distq_attrs_default(op);
    ONNX_TRY(onnx_attr_int(im, n, "axis", im->opset >= 13 ? -1 : 1, &a.axis));
    if (im->opset < 13) {
        int nd;
        int64_t dims[DISTQ_MAX_DIMS];
        ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
        if (distq_axis_index(a.axis, nd) != nd - 1)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "axis %lld before opset 13 flattens the dims from it "
                                   "on; only the last axis is supported", (long long)a.axis);
    }
    return onnx_emit(im, op, &a, 1, &x, NO_PARAMS);
}
static distq_status t_softmax(onnx_importer *im, const Onnx__NodeProto *n) { return softmax(im, n, DISTQ_OP_SOFTMAX); }
static distq_status t_log_softmax(onnx_importer *im, const Onnx__NodeProto *n)
{
    return softmax(im, n, DISTQ_OP_LOG_SOFTMAX);
}

static distq_status t_tanh(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_TANH, NULL); }
static distq_status t_sqrt(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_SQRT, NULL); }
static distq_status t_exp(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_EXP, NULL); }
static distq_status t_log(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_LOG, NULL); }
static distq_status t_abs(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_ABS, NULL); }
static distq_status t_neg(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_NEG, NULL); }
static distq_status t_reciprocal(onnx_importer *im, const Onnx__NodeProto *n)
{
    return unary(im, n, DISTQ_OP_RECIPROCAL, NULL);
}
/* Erf outside the GELU pattern (onnx_fuse.c imports that one as gelu). */
static distq_status t_erf(onnx_importer *im, const Onnx__NodeProto *n) { return unary(im, n, DISTQ_OP_ERF, NULL); }

static distq_status t_elu(onnx_importer *im, const Onnx__NodeProto *n)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_ELU);
    ONNX_TRY(onnx_attr_float(im, n, "alpha", 1.0f, &a.alpha));
    return unary(im, n, DISTQ_OP_ELU, &a);
}

/* Pow(X, Y) with Y a constant holding one exponent (a scalar, or every entry
 * the same) whose broadcast leaves X's shape as it is: x ^ y per element. */
static distq_status t_pow(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    onnx_const *y;
    int nd;
    int64_t dims[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    ONNX_TRY(onnx_need_const(im, n, 1, "exponent", &y));
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    int64_t count = distq_dims_numel(y->ndim, y->dims);
    if (count < 1) return onnx_node_error(im, DISTQ_ERR_FORMAT, "exponent '%s' is empty", y->name);
    float e = y->dtype == DISTQ_DTYPE_F32 ? ((const float *)y->data)[0] : (float)((const int64_t *)y->data)[0];
    for (int64_t i = 1; i < count; i++) {
        float v = y->dtype == DISTQ_DTYPE_F32 ? ((const float *)y->data)[i] : (float)((const int64_t *)y->data)[i];
        if (v != e)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "exponent '%s' holds different values (%g and %g); "
                                   "only one exponent for every element is supported", y->name, (double)e, (double)v);
    }
    /* the batch is symbolic: the exponent may span it only with size 1 */
    if (y->ndim > nd) goto widens;
    for (int i = 0; i < y->ndim; i++) {
        int64_t yd = y->dims[y->ndim - 1 - i], xd = dims[nd - 1 - i];
        if (yd != 1 && (yd != xd || nd - 1 - i == 0)) goto widens;
    }
    distq_attrs a = distq_attrs_default(DISTQ_OP_POW);
    a.alpha = e;
    return unary(im, n, DISTQ_OP_POW, &a);
widens:
    return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "exponent '%s' (rank %d) broadcasts X to another shape or spans the "
                           "batch; only an exponent that leaves X's shape is supported", y->name, y->ndim);
}

static distq_status t_leaky_relu(onnx_importer *im, const Onnx__NodeProto *n)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_LEAKY_RELU);
    ONNX_TRY(onnx_attr_float(im, n, "alpha", 0.01f, &a.alpha));
    return unary(im, n, DISTQ_OP_LEAKY_RELU, &a);
}

static distq_status t_concat(onnx_importer *im, const Onnx__NodeProto *n)
{
    if (n->n_input < 1) return onnx_node_error(im, DISTQ_ERR_FORMAT, "has no inputs");
    const char **in = distq_malloc(n->n_input * sizeof *in);
    if (!in) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    distq_status st = DISTQ_OK;
    for (size_t k = 0; k < n->n_input && !st; k++) st = onnx_need_value(im, n, (int)k, &in[k]);
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONCAT);
    if (!st && im->opset >= 4 && !onnx_attr(n, "axis")) /* before opset 4 it defaults to 1 */
        st = onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'axis' is required");
    if (!st) st = onnx_attr_int(im, n, "axis", 1, &a.axis);
    if (!st) st = onnx_emit(im, DISTQ_OP_CONCAT, &a, (int)n->n_input, in, NO_PARAMS);
    distq_free((void *)in);
    return st;
}

// --- windows: Conv, MaxPool ---------------------------------------------------------

/* The spatial window of a 2-D Conv or pool: kernel_shape, strides, dilations
 * and pads into a (symmetric pads only: the registry ops pad both sides
 * alike), auto_pad resolved from the input's static size. */
static distq_status window(onnx_importer *im, const Onnx__NodeProto *n, const char *x,
                           const int64_t *kernel, distq_attrs *a)
{
    int cnt;
    int64_t v[4];
    ONNX_TRY(onnx_attr_ints(im, n, "kernel_shape", 4, &cnt, v));
    if (cnt && (cnt != 2 || v[0] != kernel[0] || v[1] != kernel[1]))
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'kernel_shape' must be 2-D and "
                               "match the weight (only 2-D windows are supported)");
    ONNX_TRY(onnx_attr_ints(im, n, "strides", 4, &cnt, v));
    if (cnt && cnt != 2) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'strides' must have 2 values");
    a->stride[0] = cnt ? v[0] : 1;
    a->stride[1] = cnt ? v[1] : 1;
    if (a->stride[0] < 1 || a->stride[1] < 1)
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'strides' must be positive");
    ONNX_TRY(onnx_attr_ints(im, n, "dilations", 4, &cnt, v));
    if (cnt && cnt != 2) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'dilations' must have 2 values");
    a->dilation[0] = cnt ? v[0] : 1;
    a->dilation[1] = cnt ? v[1] : 1;
    if (a->dilation[0] < 1 || a->dilation[1] < 1 || kernel[0] < 1 || kernel[1] < 1)
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "attributes 'dilations' and 'kernel_shape' must be positive");
    char auto_pad[32];
    ONNX_TRY(onnx_attr_string(im, n, "auto_pad", "NOTSET", auto_pad, sizeof auto_pad));
    ONNX_TRY(onnx_attr_ints(im, n, "pads", 4, &cnt, v));
    if (strcmp(auto_pad, "NOTSET") == 0) {
        if (cnt && cnt != 4) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'pads' must have 4 values");
        if (!cnt) v[0] = v[1] = v[2] = v[3] = 0;
    } else if (strcmp(auto_pad, "VALID") == 0) {
        v[0] = v[1] = v[2] = v[3] = 0;
    } else if (strcmp(auto_pad, "SAME_UPPER") == 0 || strcmp(auto_pad, "SAME_LOWER") == 0) {
        int nd;
        int64_t dims[DISTQ_MAX_DIMS];
        ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
        if (nd != 4) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "input '%s' must have rank 4", x);
        for (int i = 0; i < 2; i++) {
            int64_t out = (dims[2 + i] + a->stride[i] - 1) / a->stride[i];
            int64_t total = (out - 1) * a->stride[i] + (kernel[i] - 1) * a->dilation[i] + 1 - dims[2 + i];
            if (total < 0) total = 0;
            int upper = auto_pad[5] == 'U';
            v[i] = upper ? total / 2 : total - total / 2;
            v[2 + i] = total - v[i];
        }
    } else {
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'auto_pad' = %s is not supported", auto_pad);
    }
    for (int i = 0; i < 4; i++)
        if (v[i] < 0) return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'pads' must not be negative");
    a->padding[0] = v[0];
    a->padding[1] = v[1];
    a->padding_end[0] = v[0] == v[2] ? -1 : v[2];
    a->padding_end[1] = v[1] == v[3] ? -1 : v[3];
    return DISTQ_OK;
}

/* With ceil_mode, PyTorch (and distq's ops) drop a last window that would
 * start in the right padding; ONNX's formula up to opset 17 keeps it. Where
 * the two disagree on this input, refuse rather than compute another size. */
static distq_status check_ceil(onnx_importer *im, const Onnx__NodeProto *n, const char *x, const distq_attrs *a,
                               const int64_t *kernel)
{
    int nd;
    int64_t dims[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    for (int i = 0; i < 2 && nd == 4; i++) {
        int64_t span = a->dilation[i] * (kernel[i] - 1) + 1;
        int64_t room = dims[2 + i] + a->padding[i] + distq_pad_end(a, i) - span;
        if (room < 0) continue; /* the shape rule reports it */
        int64_t onnx_out = (room + a->stride[i] - 1) / a->stride[i] + 1;
        int64_t ours = distq_conv_out_dim(dims[2 + i], kernel[i], a->stride[i], a->padding[i], distq_pad_end(a, i),
                                          a->dilation[i], 1);
        if (onnx_out != ours)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "ceil_mode = 1 gives %lld outputs in dim %d by ONNX's "
                                   "rule, %lld by PyTorch's (a last window in the padding); not supported",
                                   (long long)onnx_out, 2 + i, (long long)ours);
    }
    return DISTQ_OK;
}

/* Adds the padding of a zero Pad before n (top, left, bottom, right) to a's,
 * as ORT's pad fusion does, never under auto_pad (computed from the unpadded
 * size). */
static distq_status fold_pad(onnx_importer *im, const Onnx__NodeProto *n, const int64_t *pad, distq_attrs *a)
{
    if (!pad[0] && !pad[1] && !pad[2] && !pad[3]) return DISTQ_OK;
    char auto_pad[32];
    ONNX_TRY(onnx_attr_string(im, n, "auto_pad", "NOTSET", auto_pad, sizeof auto_pad));
    if (strcmp(auto_pad, "NOTSET") != 0)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "reads a Pad's output and has auto_pad = %s (a Pad "
                               "folds only into explicit pads)", auto_pad);
    for (int i = 0; i < 2; i++) {
        int64_t end = distq_pad_end(a, i) + pad[2 + i];
        a->padding[i] += pad[i];
        a->padding_end[i] = end == a->padding[i] ? -1 : end;
    }
    return DISTQ_OK;
}

static distq_status t_conv(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    onnx_const *w, *b = NULL;
    int64_t pad[4];
    ONNX_TRY(onnx_need_padded_value(im, n, 0, &x, pad));
    ONNX_TRY(onnx_need_const(im, n, 1, "weight", &w));
    if (w->ndim != 4)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "weight '%s' has rank %d; only 2-D "
                               "convolution (a rank-4 weight) is supported", w->name, w->ndim);
    if (onnx_has_input(n, 2)) ONNX_TRY(onnx_need_const(im, n, 2, "bias", &b));
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    ONNX_TRY(window(im, n, x, &w->dims[2], &a));
    ONNX_TRY(fold_pad(im, n, pad, &a));
    ONNX_TRY(onnx_attr_int(im, n, "group", 1, &a.groups));
    const char *params[DISTQ_MAX_PARAMS] = {0};
    ONNX_TRY(onnx_param_of(im, w, &params[DISTQ_PARAM_WEIGHT]));
    if (b) ONNX_TRY(onnx_param_of(im, b, &params[DISTQ_PARAM_BIAS]));
    return onnx_emit(im, DISTQ_OP_CONV2D, &a, 1, &x, params);
}

static distq_status t_maxpool(onnx_importer *im, const Onnx__NodeProto *n)
{
    if (n->n_output > 1 && n->output[1][0])
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "output 1 (Indices) is not supported");
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int cnt;
    int64_t k[4];
    ONNX_TRY(onnx_attr_ints(im, n, "kernel_shape", 4, &cnt, k));
    if (cnt != 2) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'kernel_shape' must have "
                                         "2 values (only 2-D pooling is supported)");
    int64_t storage;
    ONNX_TRY(onnx_attr_int(im, n, "storage_order", 0, &storage));
    if (storage != 0) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'storage_order' = %lld is "
                                             "not supported", (long long)storage);
    distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    a.kernel[0] = k[0];
    a.kernel[1] = k[1];
    ONNX_TRY(window(im, n, x, k, &a));
    ONNX_TRY(onnx_attr_int(im, n, "ceil_mode", 0, &a.ceil_mode));
    if (a.ceil_mode) ONNX_TRY(check_ceil(im, n, x, &a, k));
    return onnx_emit(im, DISTQ_OP_MAX_POOL2D, &a, 1, &x, NO_PARAMS);
}

/* AveragePool: ceil_mode only where it adds no window (the registry op has
 * PyTorch's floor rule); a zero Pad before it folds in as counted padding. */
static distq_status t_avgpool(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    int64_t pad[4];
    ONNX_TRY(onnx_need_padded_value(im, n, 0, &x, pad));
    int cnt;
    int64_t k[4];
    ONNX_TRY(onnx_attr_ints(im, n, "kernel_shape", 4, &cnt, k));
    if (cnt != 2) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'kernel_shape' must have "
                                         "2 values (only 2-D pooling is supported)");
    distq_attrs a = distq_attrs_default(DISTQ_OP_AVG_POOL2D);
    a.kernel[0] = k[0];
    a.kernel[1] = k[1];
    ONNX_TRY(window(im, n, x, k, &a));
    ONNX_TRY(onnx_attr_int(im, n, "count_include_pad", 0, &a.count_include_pad));
    if (pad[0] || pad[1] || pad[2] || pad[3]) {
        if (!a.count_include_pad && (a.padding[0] || a.padding[1] || distq_pad_end(&a, 0) || distq_pad_end(&a, 1)))
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "reads a Pad's output and pads again without "
                                   "counting its padding (count_include_pad = 0)");
        a.count_include_pad = 1; /* the Pad's zeros are cells of the window */
        ONNX_TRY(fold_pad(im, n, pad, &a));
    }
    int64_t ceil;
    ONNX_TRY(onnx_attr_int(im, n, "ceil_mode", 0, &ceil));
    if (ceil) {
        ONNX_TRY(check_ceil(im, n, x, &a, a.kernel));
        int nd;
        int64_t dims[DISTQ_MAX_DIMS];
        ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
        for (int i = 0; i < 2 && nd == 4; i++)
            if (distq_conv_out_dim(dims[2 + i], a.kernel[i], a.stride[i], a.padding[i], distq_pad_end(&a, i), 1, 1) !=
                distq_conv_out_dim(dims[2 + i], a.kernel[i], a.stride[i], a.padding[i], distq_pad_end(&a, i), 1, 0))
                return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'ceil_mode' = 1 adds a partial "
                                       "window on this input, which distq's avg_pool2d does not compute");
    }
    return onnx_emit(im, DISTQ_OP_AVG_POOL2D, &a, 1, &x, NO_PARAMS);
}

/* A zero constant Pad of H and W only: an alias carrying the padding, which
 * the Conv or AveragePool reading it folds into its own. */
static distq_status t_pad(onnx_importer *im, const Onnx__NodeProto *n)
{
    char mode[32];
    ONNX_TRY(onnx_attr_string(im, n, "mode", "constant", mode, sizeof mode));
    if (strcmp(mode, "constant") != 0)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'mode' = %s is not supported (only "
                               "constant zero padding, folded into the Conv or AveragePool after it)", mode);
    int64_t p[8];
    int cnt = 0;
    float value = 0.0f;
    if (im->opset < 11) { /* pads and value are attributes ('paddings' in opset 1) */
        ONNX_TRY(onnx_attr_ints(im, n, im->opset < 2 ? "paddings" : "pads", 8, &cnt, p));
        ONNX_TRY(onnx_attr_float(im, n, "value", 0.0f, &value));
    } else {
        if (onnx_attr(n, "pads") || onnx_attr(n, "value") || onnx_attr(n, "paddings"))
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "attributes 'pads' / 'value' are inputs since opset 11");
        onnx_const *c;
        ONNX_TRY(onnx_need_const(im, n, 1, "pads", &c));
        cnt = c->dtype == DISTQ_DTYPE_S64 ? (int)distq_dims_numel(c->ndim, c->dims) : -1;
        for (int i = 0; i < cnt && i < 8; i++) p[i] = ((const int64_t *)c->data)[i];
        if (onnx_has_input(n, 2)) {
            onnx_const *v;
            ONNX_TRY(onnx_need_const(im, n, 2, "constant_value", &v));
            if (distq_dims_numel(v->ndim, v->dims) != 1)
                return onnx_node_error(im, DISTQ_ERR_FORMAT, "constant_value must be one value");
            value = v->dtype == DISTQ_DTYPE_F32 ? *(const float *)v->data : (float)*(const int64_t *)v->data;
        }
    }
    if (value != 0.0f)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "pads with %g; only zero padding is supported", (double)value);
    if (cnt != 8)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "pads must be 8 integers (a rank-4 input; other "
                               "ranks are not supported)");
    if (p[0] || p[1] || p[4] || p[5])
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "pads the batch or channel dim; only H and W are supported");
    for (int i = 0; i < 8; i++)
        if (p[i] < 0) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "negative pads (cropping) are not supported");
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int64_t hw[4] = {p[2], p[3], p[6], p[7]};
    return onnx_alias_add_padded(im, n->output[0], x, hw);
}

/* ReduceMean over H and W of a rank-4 input: the global average pool, then
 * a flatten when keepdims = 0 (opset 18 moved axes to an input: refused by
 * the opset range). */
static distq_status t_reduce_mean(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int nd, cnt;
    int64_t dims[DISTQ_MAX_DIMS], axes[DISTQ_MAX_DIMS], keep;
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    ONNX_TRY(onnx_attr_ints(im, n, "axes", DISTQ_MAX_DIMS, &cnt, axes));
    ONNX_TRY(onnx_attr_int(im, n, "keepdims", 1, &keep));
    int h = 0, w = 0;
    for (int i = 0; i < cnt; i++) {
        int ax = distq_axis_index(axes[i], nd);
        h += ax == 2;
        w += ax == 3;
    }
    if (nd != 4 || cnt != 2 || h != 1 || w != 1)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "only a mean over H and W (axes 2, 3) of a rank-4 "
                               "input is supported");
    distq_attrs a = distq_attrs_default(DISTQ_OP_ADAPTIVE_AVG_POOL2D);
    if (keep) return onnx_emit(im, DISTQ_OP_ADAPTIVE_AVG_POOL2D, &a, 1, &x, NO_PARAMS);
    size_t len = strlen(n->output[0]) + sizeof "/pooled";
    char *pooled = distq_malloc(len);
    if (!pooled) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    snprintf(pooled, len, "%s/pooled", n->output[0]);
    distq_status st = onnx_emit_as(im, DISTQ_OP_ADAPTIVE_AVG_POOL2D, &a, 1, &x, NO_PARAMS, "/pool", pooled);
    distq_attrs f = distq_attrs_default(DISTQ_OP_FLATTEN);
    const char *in = pooled;
    if (!st) st = onnx_emit(im, DISTQ_OP_FLATTEN, &f, 1, &in, NO_PARAMS);
    distq_free(pooled);
    return st;
}

static distq_status t_global_avg_pool(onnx_importer *im, const Onnx__NodeProto *n)
{
    return unary(im, n, DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL);
}

// --- Gemm, MatMul: linear ------------------------------------------------------------

/* A linear node from a constant weight w (rows OUT, K), optional bias
 * (OUT): a new parameter where import changed the constant. */
static distq_status emit_linear(onnx_importer *im, const char *x, onnx_const *b_const, int transposed,
                                float alpha, onnx_const *c, float beta)
{
    const int64_t *bd = b_const->dims;
    int64_t OUT = transposed ? bd[0] : bd[1], K = transposed ? bd[1] : bd[0];
    const char *params[DISTQ_MAX_PARAMS] = {0};
    if (transposed && alpha == 1.0f) {
        ONNX_TRY(onnx_param_of(im, b_const, &params[DISTQ_PARAM_WEIGHT]));
    } else {
        float *w = distq_malloc((size_t)(OUT * K) * sizeof *w);
        if (!w) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
        const float *src = b_const->data;
        for (int64_t o = 0; o < OUT; o++)
            for (int64_t k = 0; k < K; k++)
                w[o * K + k] = alpha * (transposed ? src[o * K + k] : src[k * OUT + o]);
        int64_t wd[2] = {OUT, K};
        distq_status st = onnx_param_new(im, b_const->name, transposed ? ".scaled" : ".T", 2, wd, w,
                                         &params[DISTQ_PARAM_WEIGHT]);
        distq_free(w);
        if (st) return st;
    }
    if (c) {
        int64_t cn = distq_dims_numel(c->ndim, c->dims);
        int is_row = c->ndim == 1 || (c->ndim == 2 && c->dims[0] == 1);
        if (c->dtype != DISTQ_DTYPE_F32 || !(cn == 1 || (cn == OUT && is_row)))
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED,
                                   "bias '%s' must be a float of %lld values (one per output) or one "
                                   "value; other broadcasts are not supported",
                                   c->name, (long long)OUT);
        if (c->ndim == 1 && cn == OUT && beta == 1.0f) {
            ONNX_TRY(onnx_param_of(im, c, &params[DISTQ_PARAM_BIAS]));
        } else {
            float *bias = distq_malloc((size_t)OUT * sizeof *bias);
            if (!bias) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
            for (int64_t o = 0; o < OUT; o++) bias[o] = beta * ((const float *)c->data)[cn == 1 ? 0 : o];
            distq_status st = onnx_param_new(im, c->name, ".bias", 1, &OUT, bias, &params[DISTQ_PARAM_BIAS]);
            distq_free(bias);
            if (st) return st;
        }
    }
    distq_attrs a = distq_attrs_default(DISTQ_OP_LINEAR);
    return onnx_emit(im, DISTQ_OP_LINEAR, &a, 1, &x, params);
}

static distq_status need_matrix(onnx_importer *im, onnx_const *b)
{
    if (b->ndim != 2 || b->dtype != DISTQ_DTYPE_F32)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "weight '%s' must be a 2-D float constant", b->name);
    return DISTQ_OK;
}

static distq_status t_gemm(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    onnx_const *b, *c = NULL;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    ONNX_TRY(onnx_need_const(im, n, 1, "B", &b));
    ONNX_TRY(need_matrix(im, b));
    if (onnx_has_input(n, 2)) ONNX_TRY(onnx_need_const(im, n, 2, "C", &c));
    int64_t trans_a, trans_b;
    float alpha, beta;
    ONNX_TRY(onnx_attr_int(im, n, "transA", 0, &trans_a));
    ONNX_TRY(onnx_attr_int(im, n, "transB", 0, &trans_b));
    ONNX_TRY(onnx_attr_float(im, n, "alpha", 1.0f, &alpha));
    ONNX_TRY(onnx_attr_float(im, n, "beta", 1.0f, &beta));
    if (trans_a != 0)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'transA' = %lld is not supported "
                               "(the activation is never transposed)", (long long)trans_a);
    return emit_linear(im, x, b, trans_b != 0, alpha, c, beta);
}

/* MatMul of an activation (..., K) by a constant matrix (K, N). */
static distq_status t_matmul(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    onnx_const *b;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    ONNX_TRY(onnx_need_const(im, n, 1, "B", &b));
    ONNX_TRY(need_matrix(im, b));
    return emit_linear(im, x, b, 0, 1.0f, NULL, 1.0f); /* on the last dim, any rank >= 2 */
}

// --- BatchNormalization, Flatten, Reshape ----------------------------------------------

static distq_status t_batchnorm(onnx_importer *im, const Onnx__NodeProto *n)
{
    for (size_t k = 1; k < n->n_output; k++)
        if (n->output[k][0] && !(im->training_graph && !onnx_value_is_read(im, n->output[k])))
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "output %zu (training statistics) is %s", k,
                                   im->training_graph ? "read by the graph; only Y may be used"
                                                      : "not supported: export in eval mode, or import the "
                                                        "network to train it (distq import --training-graph)");
    int64_t training, spatial;
    ONNX_TRY(onnx_attr_int(im, n, "training_mode", 0, &training));
    if (im->training_graph) training = 0; /* the network: running statistics, as PyTorch's eval() */
    ONNX_TRY(onnx_attr_int(im, n, "spatial", 1, &spatial));
    int64_t is_test; /* opset < 7: 0 would update the statistics */
    ONNX_TRY(onnx_attr_int(im, n, "is_test", 1, &is_test));
    if (!is_test) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'is_test' = 0 (training) "
                                         "is not supported: export in eval mode");
    if (training) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'training_mode' = 1 "
                                         "is not supported: export in eval mode, or import the network "
                                         "to train it (distq import --training-graph)");
    if (spatial != 1) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'spatial' = %lld "
                                             "is not supported", (long long)spatial);
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    static const char *const roles[4] = {"scale", "B", "mean", "var"};
    static const int slots[4] = {DISTQ_PARAM_WEIGHT, DISTQ_PARAM_BIAS, DISTQ_PARAM_RUNNING_MEAN,
                                 DISTQ_PARAM_RUNNING_VAR};
    const char *params[DISTQ_MAX_PARAMS] = {0};
    for (int k = 0; k < 4; k++) {
        onnx_const *c;
        ONNX_TRY(onnx_need_const(im, n, k + 1, roles[k], &c));
        ONNX_TRY(onnx_param_of(im, c, &params[slots[k]]));
    }
    distq_attrs a = distq_attrs_default(DISTQ_OP_BATCH_NORM);
    ONNX_TRY(onnx_attr_float(im, n, "epsilon", 1e-5f, &a.eps));
    ONNX_TRY(onnx_attr_float(im, n, "momentum", 0.9f, &a.momentum));
    a.momentum = 1.0f - a.momentum; /* ONNX keeps the old share, PyTorch the new one */
    return onnx_emit(im, DISTQ_OP_BATCH_NORM, &a, 1, &x, params);
}

/* Flatten to (batch, rest): axis 1 (or its negative form) only, since the
 * batch stays the first dim. */
static distq_status t_flatten(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int64_t axis;
    ONNX_TRY(onnx_attr_int(im, n, "axis", 1, &axis));
    int nd;
    int64_t dims[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    if (distq_axis_index(axis, nd) != 1)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'axis' = %lld is not supported "
                               "on rank %d (only a flatten that keeps the batch, axis 1)",
                               (long long)axis, nd);
    distq_attrs a = distq_attrs_default(DISTQ_OP_FLATTEN);
    return onnx_emit(im, DISTQ_OP_FLATTEN, &a, 1, &x, NO_PARAMS);
}

/* x as (batch, out[1..r)): a flatten for rank 2 (which fuses into a
 * following linear), else a reshape. */
static distq_status emit_reshape_to(onnx_importer *im, const char *x, int r, const int64_t *out)
{
    if (r == 2) {
        distq_attrs a = distq_attrs_default(DISTQ_OP_FLATTEN);
        return onnx_emit(im, DISTQ_OP_FLATTEN, &a, 1, &x, NO_PARAMS);
    }
    distq_attrs a = distq_attrs_default(DISTQ_OP_RESHAPE);
    a.shape[0] = 1;
    for (int i = 1; i < r; i++) a.shape[i] = out[i];
    return onnx_emit(im, DISTQ_OP_RESHAPE, &a, 1, &x, NO_PARAMS);
}

/* Reshape with a constant shape: 0 copies the input's dim (allowzero 0),
 * one -1 is inferred. Entry 0 must be the batch: 0, the batch a Shape read
 * (ONNX_SYM_BATCH), -1 with the rest accounting for every value of an
 * image, or the model's fixed batch. */
static distq_status t_reshape(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    onnx_const *s;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    ONNX_TRY(onnx_need_const(im, n, 1, "shape", &s));
    int64_t allowzero;
    ONNX_TRY(onnx_attr_int(im, n, "allowzero", 0, &allowzero));
    int nd;
    int64_t dims[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    int r = s->ndim == 1 ? (int)s->dims[0] : -1;
    if (s->dtype != DISTQ_DTYPE_S64 || r < 2 || r > DISTQ_MAX_DIMS)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "shape '%s' must be 2 to %d integers (the batch, then "
                               "at least one dim)", s->name, DISTQ_MAX_DIMS);
    const int64_t *t = s->data;
    int64_t per_image = distq_dims_numel(nd - 1, dims + 1), known = 1, out[DISTQ_MAX_DIMS] = {0};
    int infer = -1;
    out[0] = 1;
    for (int i = 1; i < r; i++) {
        if (t[i] == 0 && !allowzero && i < nd) out[i] = dims[i];
        else if (t[i] == -1 && infer < 0) infer = i;
        else if (t[i] > 0) out[i] = t[i];
        else if (t[i] == ONNX_SYM_BATCH)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "shape '%s' entry %d is the batch size (reshapes "
                                   "across the batch are not supported)", s->name, i);
        else
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "shape '%s' entry %d is %lld (a second -1, or a zero "
                                   "dim)", s->name, i, (long long)t[i]);
        if (i != infer) known *= out[i];
    }
    if (infer > 0) out[infer] = known > 0 && per_image % known == 0 ? per_image / known : -1;
    int keeps_batch = t[0] == 0 || t[0] == ONNX_SYM_BATCH || (im->batch > 0 && t[0] == im->batch) ||
                      (t[0] == -1 && infer < 0);
    if (!keeps_batch || (infer > 0 && out[infer] < 1) || distq_dims_numel(r, out) != per_image)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "shape '%s' does not keep the batch as dim 0 with %lld "
                               "values per image (reshapes across the batch are not supported)", s->name,
                               (long long)per_image);
    return emit_reshape_to(im, x, r, out);
}

/* Squeeze and Unsqueeze of an activation: reshapes that keep the batch first. */
static distq_status squeeze(onnx_importer *im, const Onnx__NodeProto *n, int un)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int nd, r;
    int64_t dims[DISTQ_MAX_DIMS], out[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    if (!un) { /* the batch is never a dim of size 1 to squeeze */
        int cnt;
        int64_t axes[DISTQ_MAX_DIMS];
        ONNX_TRY(onnx_axes(im, n, &cnt, axes));
        for (int i = 0; i < cnt; i++)
            if (distq_axis_index(axes[i], nd) == 0)
                return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "squeezes the batch (dim 0), which distq keeps");
    }
    dims[0] = 2;
    if (un) ONNX_TRY(onnx_unsqueezed_dims(im, n, nd, dims, &r, out));
    else ONNX_TRY(onnx_squeezed_dims(im, n, nd, dims, &r, out));
    if (out[0] != 2 || r < 2)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "moves the batch from dim 0 or leaves rank %d (distq "
                               "keeps the batch first and at least one dim after it)", r);
    return emit_reshape_to(im, x, r, out);
}
static distq_status t_squeeze(onnx_importer *im, const Onnx__NodeProto *n) { return squeeze(im, n, 0); }
static distq_status t_unsqueeze(onnx_importer *im, const Onnx__NodeProto *n) { return squeeze(im, n, 1); }

/* One [start, end) of ONNX Slice along axis of a dim of size d, clamped as
 * ONNX does; the batch only whole. */
static distq_status slice_range(onnx_importer *im, int axis, int64_t d, int64_t start, int64_t end, int64_t *s,
                                int64_t *e)
{
    if (axis == 0) {
        if (start == 0 && (end == ONNX_SYM_BATCH || end >= INT32_MAX)) return DISTQ_OK;
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "slices the batch (dim 0); only whole batches are supported");
    }
    if (start == ONNX_SYM_BATCH || end == ONNX_SYM_BATCH)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "slices dim %d by the batch size", axis);
    if (start < 0) start += d;
    if (end < 0) end += d;
    start = start < 0 ? 0 : start > d ? d : start;
    end = end < 0 ? 0 : end > d ? d : end;
    if (start >= end)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "leaves dim %d empty (empty tensors are not supported)", axis);
    s[axis] = start;
    e[axis] = end;
    return DISTQ_OK;
}

/* The integers of constant input k into v (at most max); *cnt = -1 if absent. */
static distq_status int_list(onnx_importer *im, const Onnx__NodeProto *n, int k, const char *role, int max, int *cnt,
                             int64_t *v)
{
    *cnt = -1;
    if (!onnx_has_input(n, k)) return DISTQ_OK;
    onnx_const *c;
    ONNX_TRY(onnx_need_const(im, n, k, role, &c));
    int64_t count = distq_dims_numel(c->ndim, c->dims);
    if (c->dtype != DISTQ_DTYPE_S64 || c->ndim > 1 || count > max)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "%s '%s' must be at most %d integers", role, c->name, max);
    memcpy(v, c->data, (size_t)count * sizeof *v);
    *cnt = (int)count;
    return DISTQ_OK;
}

/* Slice with constant starts / ends / axes and steps of 1 (inputs from
 * opset 10, attributes before). */
static distq_status t_slice(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int nd, ns, ne, na, nst = -1;
    int64_t dims[DISTQ_MAX_DIMS], st[DISTQ_MAX_DIMS], en[DISTQ_MAX_DIMS], ax[DISTQ_MAX_DIMS], sp[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    if (im->opset < 10) {
        ONNX_TRY(onnx_attr_ints(im, n, "starts", DISTQ_MAX_DIMS, &ns, st));
        ONNX_TRY(onnx_attr_ints(im, n, "ends", DISTQ_MAX_DIMS, &ne, en));
        ONNX_TRY(onnx_attr_ints(im, n, "axes", DISTQ_MAX_DIMS, &na, ax));
        if (!onnx_attr(n, "axes")) na = -1;
    } else {
        if (onnx_attr(n, "starts") || onnx_attr(n, "ends") || onnx_attr(n, "axes"))
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "attributes 'starts' / 'ends' / 'axes' are inputs since opset 10");
        ONNX_TRY(int_list(im, n, 1, "starts", DISTQ_MAX_DIMS, &ns, st));
        ONNX_TRY(int_list(im, n, 2, "ends", DISTQ_MAX_DIMS, &ne, en));
        ONNX_TRY(int_list(im, n, 3, "axes", DISTQ_MAX_DIMS, &na, ax));
        ONNX_TRY(int_list(im, n, 4, "steps", DISTQ_MAX_DIMS, &nst, sp));
    }
    if (ns < 0 || ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "starts, ends, axes and steps must have one length");
    distq_attrs a = distq_attrs_default(DISTQ_OP_SLICE);
    for (int i = 1; i < nd; i++) a.ends[i] = dims[i];
    int seen[DISTQ_MAX_DIMS] = {0};
    for (int i = 0; i < ns; i++) {
        int64_t axis = distq_axis_index(na >= 0 ? ax[i] : i, nd);
        if (axis < 0 || axis >= nd || seen[axis]++)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "axis %lld is out of range or repeated", (long long)(na >= 0 ? ax[i] : i));
        if (nst >= 0 && sp[i] != 1)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "step %lld along axis %lld (only steps of 1 are supported)",
                                   (long long)sp[i], (long long)axis);
        ONNX_TRY(slice_range(im, (int)axis, dims[axis], st[i], en[i], a.starts, a.ends));
    }
    return onnx_emit(im, DISTQ_OP_SLICE, &a, 1, &x, NO_PARAMS);
}

/* Split along axis into outputs of the sizes given (input from opset 13, the
 * 'split' attribute before) or equal parts: one slice node per output. */
static distq_status t_split(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int nd, cnt = -1;
    int64_t dims[DISTQ_MAX_DIMS], axis, sizes[64];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    ONNX_TRY(onnx_attr_int(im, n, "axis", 0, &axis));
    int64_t ax = distq_axis_index(axis, nd);
    if (ax < 1 || ax >= nd)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "axis %lld is the batch or out of range for rank %d",
                               (long long)axis, nd);
    if (n->n_output < 1 || n->n_output > 64) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "needs 1 to 64 outputs");
    if (im->opset < 13) {
        ONNX_TRY(onnx_attr_ints(im, n, "split", 64, &cnt, sizes));
        if (!onnx_attr(n, "split")) cnt = -1;
    } else {
        if (onnx_attr(n, "split")) return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'split' is an input since opset 13");
        ONNX_TRY(int_list(im, n, 1, "split", 64, &cnt, sizes));
    }
    int k_out = (int)n->n_output;
    if (cnt < 0) {
        if (dims[ax] % k_out)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "dim %lld (%lld) does not split into %d equal parts", (long long)ax,
                                   (long long)dims[ax], k_out);
        for (int k = 0; k < k_out; k++) sizes[k] = dims[ax] / k_out;
        cnt = k_out;
    }
    int64_t total = 0;
    for (int k = 0; k < cnt; k++) total += sizes[k];
    if (cnt != k_out || total != dims[ax])
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "split sizes for %d outputs must sum to dim %lld (%lld)", k_out,
                               (long long)ax, (long long)dims[ax]);
    int64_t at = 0;
    for (int k = 0; k < k_out; k++) {
        distq_attrs a = distq_attrs_default(DISTQ_OP_SLICE);
        for (int i = 1; i < nd; i++) a.ends[i] = dims[i];
        a.starts[ax] = at;
        a.ends[ax] = at += sizes[k];
        if (!n->output[k][0]) continue; /* an output nobody reads */
        char suffix[32];
        snprintf(suffix, sizeof suffix, "/%d", k);
        ONNX_TRY(onnx_emit_as(im, DISTQ_OP_SLICE, &a, 1, &x, NO_PARAMS, suffix, n->output[k]));
    }
    return DISTQ_OK;
}

/* Transpose keeping the batch first (the default, reversed dims, does not). */
static distq_status t_transpose(onnx_importer *im, const Onnx__NodeProto *n)
{
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    int nd, cnt;
    int64_t dims[DISTQ_MAX_DIMS], p[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
    ONNX_TRY(onnx_attr_ints(im, n, "perm", DISTQ_MAX_DIMS, &cnt, p));
    if (!cnt)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "no attribute 'perm': the default reverses the dims, "
                               "moving the batch");
    if (cnt != nd) return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'perm' has %d entries for rank %d", cnt, nd);
    if (p[0] != 0)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'perm' moves the batch (perm[0] = %lld)",
                               (long long)p[0]);
    distq_attrs a = distq_attrs_default(DISTQ_OP_TRANSPOSE);
    memcpy(a.perm, p, (size_t)cnt * sizeof *p);
    return onnx_emit(im, DISTQ_OP_TRANSPOSE, &a, 1, &x, NO_PARAMS);
}

/* LayerNormalization (opset 17) over the dims from axis on; its optional
 * Mean / InvStdDev outputs are not imported. */
static distq_status t_layer_norm(onnx_importer *im, const Onnx__NodeProto *n)
{
    for (size_t k = 1; k < n->n_output; k++)
        if (n->output[k][0])
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "output %zu '%s' (Mean / InvStdDev) is not supported", k,
                                   n->output[k]);
    const char *x;
    ONNX_TRY(onnx_need_value(im, n, 0, &x));
    distq_attrs a = distq_attrs_default(DISTQ_OP_LAYER_NORM);
    ONNX_TRY(onnx_attr_int(im, n, "axis", -1, &a.axis));
    ONNX_TRY(onnx_attr_float(im, n, "epsilon", 1e-5f, &a.eps));
    const char *params[DISTQ_MAX_PARAMS] = {0};
    onnx_const *c;
    ONNX_TRY(onnx_need_const(im, n, 1, "Scale", &c));
    ONNX_TRY(onnx_param_of(im, c, &params[DISTQ_PARAM_WEIGHT]));
    if (onnx_has_input(n, 2)) {
        ONNX_TRY(onnx_need_const(im, n, 2, "B", &c));
        ONNX_TRY(onnx_param_of(im, c, &params[DISTQ_PARAM_BIAS]));
    }
    return onnx_emit(im, DISTQ_OP_LAYER_NORM, &a, 1, &x, params);
}

// --- removed at import: Identity, Dropout, Constant ------------------------------------

static distq_status t_identity(onnx_importer *im, const Onnx__NodeProto *n)
{
    if (!onnx_has_input(n, 0) || n->n_output < 1) return onnx_node_error(im, DISTQ_ERR_FORMAT, "needs an input and an output");
    return onnx_alias_add(im, n->output[0], n->input[0]);
}

/* Dropout is the identity in inference; its mask output is not imported. */
static distq_status t_dropout(onnx_importer *im, const Onnx__NodeProto *n)
{
    if (onnx_has_input(n, 2) && !im->training_graph) {
        onnx_const *tm = onnx_input_const(im, n, 2);
        if (!tm || tm->dtype != DISTQ_DTYPE_S64 || distq_dims_numel(tm->ndim, tm->dims) != 1 ||
            *(const int64_t *)tm->data != 0)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "input 2 'training_mode' must be a "
                                   "constant false: export in eval mode, or import the network to "
                                   "train it (distq import --training-graph: Dropout becomes the identity)");
    }
    if (n->n_output > 1 && n->output[1][0] && onnx_value_is_read(im, n->output[1]))
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "output 1 (the mask) is read by the graph");
    int64_t is_test;
    ONNX_TRY(onnx_attr_int(im, n, "is_test", 1, &is_test));
    if (!is_test) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'is_test' = 0 (training) "
                                         "is not supported: export in eval mode");
    return t_identity(im, n);
}

static distq_status t_constant(onnx_importer *im, const Onnx__NodeProto *n)
{
    if (n->n_output < 1 || !n->output[0][0]) return onnx_node_error(im, DISTQ_ERR_FORMAT, "has no output");
    const char *out = n->output[0];
    const Onnx__AttributeProto *a;
    if ((a = onnx_attr(n, "value"))) {
        if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR || !a->t)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'value' is not a tensor");
        return onnx_const_from_tensor(im, a->t, out);
    }
    int64_t one = 1;
    if ((a = onnx_attr(n, "value_float")) || (a = onnx_attr(n, "value_int"))) {
        int is_float = a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        void *d = distq_malloc(8);
        if (!d) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
        if (is_float) *(float *)d = a->f;
        else *(int64_t *)d = a->i;
        return onnx_const_add(im, out, is_float ? DISTQ_DTYPE_F32 : DISTQ_DTYPE_S64, 0, &one, d);
    }
    if ((a = onnx_attr(n, "value_floats")) || (a = onnx_attr(n, "value_ints"))) {
        int is_float = a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
        int64_t cnt = (int64_t)(is_float ? a->n_floats : a->n_ints);
        void *d = distq_malloc((size_t)(cnt ? cnt : 1) * 8);
        if (!d) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < cnt; i++) {
            if (is_float) ((float *)d)[i] = a->floats[i];
            else ((int64_t *)d)[i] = a->ints[i];
        }
        return onnx_const_add(im, out, is_float ? DISTQ_DTYPE_F32 : DISTQ_DTYPE_S64, 1, &cnt, d);
    }
    return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "needs a 'value', 'value_float(s)' or "
                           "'value_int(s)' attribute (sparse and string constants are not supported)");
}

// --- the table ------------------------------------------------------------------------

static const onnx_op_row op_table[] = {
    {"Abs", t_abs, ""},
    {"Add", t_add, ""},
    {"AveragePool", t_avgpool, "kernel_shape strides pads ceil_mode count_include_pad auto_pad"},
    {"BatchNormalization", t_batchnorm, "epsilon momentum training_mode spatial is_test"},
    {"Cast", onnx_fold_cast, "to"},
    {"Clip", t_clip, "min max"},
    {"Concat", t_concat, "axis"},
    {"Constant", t_constant, "value value_float value_floats value_int value_ints"},
    {"Conv", t_conv, "kernel_shape strides pads dilations group auto_pad"},
    {"Div", t_div, ""},
    {"Elu", t_elu, "alpha"},
    {"Erf", t_erf, ""},
    {"Exp", t_exp, ""},
    {"Dropout", t_dropout, "ratio is_test seed"},
    {"Flatten", t_flatten, "axis"},
    {"Gemm", t_gemm, "alpha beta transA transB"},
    {"Gather", onnx_fold_gather, "axis"},
    {"GlobalAveragePool", t_global_avg_pool, ""},
    {"HardSigmoid", t_hardsigmoid, "alpha beta"},
    {"HardSwish", t_hardswish, ""},
    {"Identity", t_identity, ""},
    {"LayerNormalization", t_layer_norm, "axis epsilon stash_type"},
    {"LeakyRelu", t_leaky_relu, "alpha"},
    {"Log", t_log, ""},
    {"LogSoftmax", t_log_softmax, "axis"},
    {"MatMul", t_matmul, ""},
    {"MaxPool", t_maxpool, "kernel_shape strides pads dilations ceil_mode auto_pad storage_order"},
    {"Mul", t_mul, ""},
    {"Neg", t_neg, ""},
    {"Pad", t_pad, "mode pads paddings value"},
    {"Pow", t_pow, ""},
    {"Reciprocal", t_reciprocal, ""},
    {"ReduceMean", t_reduce_mean, "axes keepdims"},
    {"Relu", t_relu, ""},
    {"Reshape", t_reshape, "allowzero"},
    {"Shape", onnx_fold_shape, "start end"},
    {"Sigmoid", t_sigmoid, ""},
    {"Slice", t_slice, "starts ends axes"},
    {"Softmax", t_softmax, "axis"},
    {"Split", t_split, "axis split"},
    {"Sqrt", t_sqrt, ""},
    {"Squeeze", t_squeeze, "axes"},
    {"Sub", t_sub, ""},
    {"Tanh", t_tanh, ""},
    {"Transpose", t_transpose, "perm"},
    {"Unsqueeze", t_unsqueeze, "axes"},
};

const onnx_op_row *onnx_op_table(int *n)
{
    *n = (int)(sizeof op_table / sizeof op_table[0]);
    return op_table;
}

const onnx_op_row *onnx_op_find(const char *op_type)
{
    int n;
    const onnx_op_row *t = onnx_op_table(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].op_type, op_type) == 0) return &t[i];
    return NULL;
}
