/*
 * Per-op validation and shape inference (PyTorch's shape rules). Each check
 * names the node, and the tensor or attribute at fault.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graph/graph_impl.h"

#define NODE_ERR(n, ...) node_error((n), __VA_ARGS__)

static distq_status node_error(const distq_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static distq_status node_error(const distq_node *n, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "node '%s' (%s): %s", n->name,
                           distq_op_name(n->op), detail);
}

static const distq_value *in_value(const distq_graph *g, const distq_node *n, int k)
{
    return &g->values[n->inputs[k]];
}

static const distq_tensor *param(const distq_graph *g, const distq_node *n, int slot)
{
    return n->params[slot] >= 0 ? &g->params[n->params[slot]] : NULL;
}

/* Checks that param slot holds a tensor of dtype dt and the given dims (required or not). */
static distq_status check_param_dt(const distq_graph *g, const distq_node *n, int slot,
                                   const char *role, int required, distq_dtype dt, int ndim,
                                   const int64_t *dims)
{
    const distq_tensor *t = param(g, n, slot);
    if (!t) return required ? NODE_ERR(n, "missing weight (%s)", role) : DISTQ_OK;
    char want[64], got[64];
    distq_dims_format(ndim, dims, want, sizeof want);
    distq_dims_format(t->ndim, t->dims, got, sizeof got);
    if (t->dtype != dt)
        return NODE_ERR(n, "%s '%s' has dtype %s, expected %s", role, t->name,
                        distq_dtype_name(t->dtype), distq_dtype_name(dt));
    if (t->ndim != ndim || memcmp(t->dims, dims, (size_t)ndim * sizeof *dims) != 0)
        return NODE_ERR(n, "%s '%s' has shape %s, expected %s", role, t->name, got, want);
    return DISTQ_OK;
}

static distq_status check_param(const distq_graph *g, const distq_node *n, int slot,
                                const char *role, int required, int ndim, const int64_t *dims)
{
    return check_param_dt(g, n, slot, role, required, DISTQ_DTYPE_F32, ndim, dims);
}

static int is_u8(const distq_value *v) { return v->dtype == DISTQ_DTYPE_U8; }

/* u8 qparams a node declares (quantize, or a head writing u8). */
static distq_status check_out_qparams(const distq_node *n)
{
    const distq_attrs *a = &n->attr;
    if (!(a->out_scale > 0.0f) || !isfinite(a->out_scale))
        return NODE_ERR(n, "out_scale %g must be finite and > 0", (double)a->out_scale);
    if (a->out_quant_max < 1 || a->out_quant_max > 255)
        return NODE_ERR(n, "out_quant_max %lld outside [1, 255]", (long long)a->out_quant_max);
    if (a->out_zero_point < 0 || a->out_zero_point > a->out_quant_max)
        return NODE_ERR(n, "out_zero_point %lld outside [0, out_quant_max %lld]",
                        (long long)a->out_zero_point, (long long)a->out_quant_max);
    return DISTQ_OK;
}

static void set_out_u8(distq_value *out, const distq_attrs *a)
{
    out->dtype = DISTQ_DTYPE_U8;
    out->scale = a->out_scale;
    out->zero_point = (int32_t)a->out_zero_point;
    out->quant_max = (int32_t)a->out_quant_max;
}

/* The weight of a conv2d / linear: f32 on an f32 input; on a u8 input s8
 * codes with their per-output-channel f32 scales (OC). */
static distq_status check_weight(const distq_graph *g, const distq_node *n, const distq_value *x,
                                 int ndim, const int64_t *wdims)
{
    distq_status st;
    if (!is_u8(x)) {
        if (param(g, n, DISTQ_PARAM_WEIGHT_SCALE))
            return NODE_ERR(n, "has weight scales '%s' but its input '%s' is f32",
                            n->param_names[DISTQ_PARAM_WEIGHT_SCALE], x->name);
        return check_param(g, n, DISTQ_PARAM_WEIGHT, "weight", 1, ndim, wdims);
    }
    if ((st = check_param_dt(g, n, DISTQ_PARAM_WEIGHT, "weight", 1, DISTQ_DTYPE_S8, ndim, wdims)))
        return st;
    if (!param(g, n, DISTQ_PARAM_WEIGHT_SCALE))
        return NODE_ERR(n, "input '%s' is u8 but the node has no weight scales", x->name);
    if ((st = check_param(g, n, DISTQ_PARAM_WEIGHT_SCALE, "weight_scale", 1, 1, wdims))) return st;
    const float *ws = param(g, n, DISTQ_PARAM_WEIGHT_SCALE)->data;
    for (int64_t oc = 0; oc < wdims[0]; oc++)
        if (!(ws[oc] > 0.0f) || !isfinite(ws[oc]))
            return NODE_ERR(n, "weight scale %lld is %g, must be finite and > 0", (long long)oc,
                            (double)ws[oc]);
    return DISTQ_OK;
}

/* Output dtype of a conv2d / linear and its post-ops: f32 on an f32 input
 * (out_scale must be 0), u8 with out_* qparams or f32 (out_scale 0) on a u8
 * input. A conv2d's second input, the residual summed in, has the output's
 * shape and the first input's dtype (u8 codes with their own qparams). */
static distq_status set_head_out(const distq_graph *g, const distq_node *n, const distq_value *x,
                                 distq_value *out)
{
    distq_status st;
    const distq_attrs *a = &n->attr;
    if (a->post_relu != 0 && a->post_relu != 1) return NODE_ERR(n, "post_relu must be 0 or 1");
    if (a->post_op != -1 && (a->post_relu || a->post_op < 0 || a->post_op >= DISTQ_OP_COUNT ||
                             !distq_x86_fuses(n->op, (distq_op)a->post_op) || !is_u8(x)))
        return NODE_ERR(n, "post_op %s is not a fusion of the x86 recipe for a quantized %s%s",
                        distq_op_name((distq_op)a->post_op), distq_op_name(n->op), a->post_relu ? " (with post_relu)" : "");
    out->dtype = DISTQ_DTYPE_F32;
    if (a->out_scale != 0.0f) {
        if (!is_u8(x)) return NODE_ERR(n, "has out_scale %g but its input '%s' is f32",
                                       (double)a->out_scale, x->name);
        if ((st = check_out_qparams(n))) return st;
        set_out_u8(out, a);
    }
    if (n->n_inputs > 1) {
        const distq_value *r = in_value(g, n, 1);
        char a_dims[64], b_dims[64];
        distq_dims_format(r->ndim, r->dims, a_dims, sizeof a_dims);
        distq_dims_format(out->ndim, out->dims, b_dims, sizeof b_dims);
        if (r->ndim != out->ndim || memcmp(r->dims, out->dims, (size_t)r->ndim * sizeof *r->dims))
            return NODE_ERR(n, "residual '%s' %s does not match the output %s", r->name, a_dims, b_dims);
        if (r->dtype != x->dtype)
            return NODE_ERR(n, "residual '%s' is %s, the input '%s' %s", r->name,
                            distq_dtype_name(r->dtype), x->name, distq_dtype_name(x->dtype));
    }
    return DISTQ_OK;
}

static distq_status need_rank(const distq_node *n, const distq_value *v, int ndim)
{
    if (v->ndim == ndim) return DISTQ_OK;
    return NODE_ERR(n, "input '%s' has rank %d, expected %d", v->name, v->ndim, ndim);
}

/* The output takes like's dtype and qparams (a u8 pool shares its input's). */
static void set_out(distq_value *out, const distq_value *like, int ndim, const int64_t *dims)
{
    out->dtype = like->dtype;
    out->scale = like->scale;
    out->zero_point = like->zero_point;
    out->quant_max = like->quant_max;
    out->ndim = ndim;
    memcpy(out->dims, dims, (size_t)ndim * sizeof *dims);
}

static distq_status check_window(const distq_node *n, const distq_attrs *a, int with_kernel)
{
    for (int i = 0; i < 2; i++) {
        if (a->stride[i] < 1 || a->padding[i] < 0 || a->padding_end[i] < -1 || a->dilation[i] < 1 ||
            (with_kernel && a->kernel[i] < 1))
            return NODE_ERR(n, "bad stride/padding/dilation/kernel in dim %d", i);
    }
    return DISTQ_OK;
}

distq_status distq_infer_conv2d(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const distq_attrs *a = &n->attr;
    distq_status st;
    if ((st = need_rank(n, x, 4))) return st;
    if ((st = check_window(n, a, 0))) return st;
    const distq_tensor *w = param(g, n, DISTQ_PARAM_WEIGHT);
    if (!w) return NODE_ERR(n, "missing weight");
    if (w->ndim != 4) return NODE_ERR(n, "weight '%s' has rank %d, expected 4", w->name, w->ndim);
    int64_t C = x->dims[1], OC = w->dims[0], KH = w->dims[2], KW = w->dims[3];
    if (a->groups < 1 || C % a->groups || OC % a->groups)
        return NODE_ERR(n, "groups %lld does not divide in channels %lld and out channels %lld",
                        (long long)a->groups, (long long)C, (long long)OC);
    int64_t wdims[4] = {OC, C / a->groups, KH, KW};
    if ((st = check_weight(g, n, x, 4, wdims))) return st;
    if ((st = check_param(g, n, DISTQ_PARAM_BIAS, "bias", 0, 1, &OC))) return st;
    int64_t OH = distq_conv_out_dim(x->dims[2], KH, a->stride[0], a->padding[0], distq_pad_end(a, 0),
                                    a->dilation[0], 0);
    int64_t OW = distq_conv_out_dim(x->dims[3], KW, a->stride[1], a->padding[1], distq_pad_end(a, 1),
                                    a->dilation[1], 0);
    if (OH < 1 || OW < 1)
        return NODE_ERR(n, "kernel %lldx%lld larger than padded input %lldx%lld", (long long)KH,
                        (long long)KW, (long long)x->dims[2], (long long)x->dims[3]);
    int64_t dims[4] = {1, OC, OH, OW};
    set_out(out, x, 4, dims);
    return set_head_out(g, n, x, out);
}

distq_status distq_infer_batch_norm(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    if (x->ndim != 4 && x->ndim != 2) return NODE_ERR(n, "input '%s' must have rank 2 or 4", x->name);
    if (!(n->attr.eps > 0.0f)) return NODE_ERR(n, "eps must be > 0");
    int64_t C = x->dims[1];
    distq_status st;
    if ((st = check_param(g, n, DISTQ_PARAM_WEIGHT, "weight", 0, 1, &C)) ||
        (st = check_param(g, n, DISTQ_PARAM_BIAS, "bias", 0, 1, &C)) ||
        (st = check_param(g, n, DISTQ_PARAM_RUNNING_MEAN, "running_mean", 1, 1, &C)) ||
        (st = check_param(g, n, DISTQ_PARAM_RUNNING_VAR, "running_var", 1, 1, &C)))
        return st;
    const distq_tensor *nbt = param(g, n, DISTQ_PARAM_NUM_BATCHES_TRACKED);
    if (nbt && (nbt->dtype != DISTQ_DTYPE_S64 || distq_tensor_numel(nbt) != 1))
        return NODE_ERR(n, "num_batches_tracked '%s' must be one s64", nbt->name);
    set_out(out, x, x->ndim, x->dims);
    return DISTQ_OK;
}

distq_status distq_infer_unary(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    set_out(out, x, x->ndim, x->dims);
    return DISTQ_OK;
}

/* softmax / log_softmax: the input's shape; the axis is one of its dims
 * other than the batch (each image normalised on its own). */
distq_status distq_infer_softmax(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    int64_t axis = distq_axis_index(n->attr.axis, x->ndim);
    if (axis < 1 || axis >= x->ndim)
        return NODE_ERR(n, "axis %lld is not a dim of rank %d other than the batch (0)", (long long)n->attr.axis,
                        x->ndim);
    return distq_infer_unary(g, n, out);
}

distq_status distq_infer_transpose(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const int64_t *p = n->attr.perm;
    int seen[DISTQ_MAX_DIMS] = {0};
    int64_t dims[DISTQ_MAX_DIMS];
    for (int i = 0; i < DISTQ_MAX_DIMS; i++) {
        if (i >= x->ndim) {
            if (p[i] != 0) return NODE_ERR(n, "perm has entries past the input's rank %d", x->ndim);
            continue;
        }
        if (p[i] < 0 || p[i] >= x->ndim || seen[p[i]]++)
            return NODE_ERR(n, "perm is not a permutation of the input's %d dims", x->ndim);
        dims[i] = x->dims[p[i]];
    }
    if (p[0] != 0) return NODE_ERR(n, "perm[0] is %lld: the batch (dim 0) must stay first", (long long)p[0]);
    set_out(out, x, x->ndim, dims);
    return DISTQ_OK;
}

distq_status distq_infer_reshape(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const int64_t *s = n->attr.shape;
    int r = 1;
    while (r < DISTQ_MAX_DIMS && s[r] > 0) r++;
    for (int i = r; i < DISTQ_MAX_DIMS; i++)
        if (s[i] != 0) return NODE_ERR(n, "shape has a dim %lld after its end", (long long)s[i]);
    if (s[0] != 1 || r < 2) return NODE_ERR(n, "shape must be (1, dims...): the batch, then at least one dim");
    if (distq_dims_numel(r, s) != distq_value_numel(x, 1))
        return NODE_ERR(n, "shape holds %lld values per image, the input %lld", (long long)distq_dims_numel(r, s),
                        (long long)distq_value_numel(x, 1));
    set_out(out, x, r, s);
    return DISTQ_OK;
}

/* layer_norm: over the dims from axis on (not the batch), eps > 0, weight and
 * bias with one value per normalized element. */
distq_status distq_infer_layer_norm(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    int64_t axis = distq_axis_index(n->attr.axis, x->ndim);
    if (axis < 1 || axis >= x->ndim)
        return NODE_ERR(n, "axis %lld is not a dim of rank %d other than the batch (0)", (long long)n->attr.axis, x->ndim);
    if (!(n->attr.eps > 0.0f)) return NODE_ERR(n, "eps must be > 0");
    int64_t inner = distq_dims_numel(x->ndim - (int)axis, x->dims + axis);
    for (int slot = DISTQ_PARAM_WEIGHT; slot <= DISTQ_PARAM_BIAS; slot++) {
        const distq_tensor *t = param(g, n, slot);
        if (t && (t->dtype != DISTQ_DTYPE_F32 || distq_tensor_numel(t) != inner))
            return NODE_ERR(n, "%s '%s' must be %lld floats (one per normalized element)", distq_param_slot_name(slot),
                            t->name, (long long)inner);
    }
    return distq_infer_unary(g, n, out);
}

/* slice: a box of every dim but the batch, [starts[i], ends[i]) inside it and
 * not empty; entries past the rank 0. */
distq_status distq_infer_slice(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const int64_t *s = n->attr.starts, *e = n->attr.ends;
    int64_t dims[DISTQ_MAX_DIMS] = {1};
    if (s[0] != 0 || e[0] != 0) return NODE_ERR(n, "starts[0] and ends[0] must be 0 (the batch is never sliced)");
    for (int i = 1; i < DISTQ_MAX_DIMS; i++) {
        if (i >= x->ndim) {
            if (s[i] || e[i]) return NODE_ERR(n, "starts / ends have entries past the input's rank %d", x->ndim);
            continue;
        }
        if (s[i] < 0 || s[i] >= e[i] || e[i] > x->dims[i])
            return NODE_ERR(n, "dim %d: [%lld, %lld) is not a non-empty range inside [0, %lld)", i, (long long)s[i],
                            (long long)e[i], (long long)x->dims[i]);
        dims[i] = e[i] - s[i];
    }
    set_out(out, x, x->ndim, dims);
    return DISTQ_OK;
}

distq_status distq_infer_clip(distq_graph *g, distq_node *n, distq_value *out)
{
    if (!(n->attr.min <= n->attr.max)) /* also refuses NaN */
        return NODE_ERR(n, "min %g is not <= max %g", (double)n->attr.min, (double)n->attr.max);
    return distq_infer_unary(g, n, out);
}

distq_status distq_infer_hardsigmoid(distq_graph *g, distq_node *n, distq_value *out)
{
    if (!isfinite(n->attr.alpha) || !isfinite(n->attr.beta))
        return NODE_ERR(n, "alpha and beta must be finite");
    return distq_infer_unary(g, n, out);
}

static distq_status shape_mismatch(const distq_node *n, const distq_value *x, const distq_value *y,
                                   const char *rule)
{
    char a[64], b[64];
    distq_dims_format(x->ndim, x->dims, a, sizeof a);
    distq_dims_format(y->ndim, y->dims, b, sizeof b);
    return NODE_ERR(n, "shape mismatch: '%s' %s vs '%s' %s (%s)", x->name, a, y->name, b, rule);
}

/* A binary op's operand 1: a second input, or (one input) its constant
 * WEIGHT, of x's rank with dims[0] 1 and every other dim x's or 1, so the
 * output has x's shape. */
static distq_status const_operand(distq_graph *g, distq_node *n, const distq_value *x)
{
    const distq_tensor *c = param(g, n, DISTQ_PARAM_WEIGHT);
    if (n->n_inputs == 2)
        return c ? NODE_ERR(n, "has a second input and a constant operand '%s'", c->name) : DISTQ_OK;
    if (!c) return NODE_ERR(n, "needs a second input or a constant operand (its weight)");
    if (c->dtype != DISTQ_DTYPE_F32 || c->ndim != x->ndim || c->dims[0] != 1)
        return NODE_ERR(n, "constant operand '%s' must be float of rank %d with dim 0 of 1", c->name, x->ndim);
    for (int i = 1; i < x->ndim; i++)
        if (c->dims[i] != x->dims[i] && c->dims[i] != 1)
            return NODE_ERR(n, "constant operand '%s' dim %d is %lld, neither %lld nor 1", c->name, i,
                            (long long)c->dims[i], (long long)x->dims[i]);
    return DISTQ_OK;
}

/* add: both inputs of one shape (the residual of a CNN), or a constant operand. */
distq_status distq_infer_same_shape(distq_graph *g, distq_node *n, distq_value *out)
{
    distq_status st;
    if ((st = const_operand(g, n, in_value(g, n, 0)))) return st;
    if (n->n_inputs == 1) return distq_infer_unary(g, n, out);
    const distq_value *x = in_value(g, n, 0), *y = in_value(g, n, 1);
    if (x->ndim != y->ndim || memcmp(x->dims, y->dims, (size_t)x->ndim * sizeof *x->dims))
        return shape_mismatch(n, x, y, "add needs equal shapes");
    set_out(out, x, x->ndim, x->dims);
    return DISTQ_OK;
}

/* numpy broadcasting between values of one rank (both lead with the batch,
 * which never broadcasts): each pair of dims equal or one of them 1. */
/* mul of u8 x (N, C, H, W) by an f32 gate (N, C, 1, 1): u8 with the node's
 * out qparams, or f32 when it has none. */
static distq_status infer_gate(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0), *y = n->n_inputs == 2 ? in_value(g, n, 1) : NULL;
    distq_status st;
    if (!y || x->ndim != 4 || y->ndim != 4 || y->dtype != DISTQ_DTYPE_F32 || y->dims[1] != x->dims[1] ||
        y->dims[2] != 1 || y->dims[3] != 1)
        return NODE_ERR(n, "a mul reading u8 '%s' multiplies it by an f32 (N, C, 1, 1) gate only", x->name);
    set_out(out, x, 4, x->dims);
    out->dtype = DISTQ_DTYPE_F32;
    if (n->attr.out_scale != 0.0f) {
        if ((st = check_out_qparams(n))) return st;
        set_out_u8(out, &n->attr);
    }
    return DISTQ_OK;
}

distq_status distq_infer_broadcast(distq_graph *g, distq_node *n, distq_value *out)
{
    distq_status st;
    if ((st = const_operand(g, n, in_value(g, n, 0)))) return st;
    if (n->op == DISTQ_OP_MUL && is_u8(in_value(g, n, 0))) return infer_gate(g, n, out);
    if (n->attr.out_scale != 0.0f) return NODE_ERR(n, "has out_scale but its input is f32");
    if (n->n_inputs == 1) return distq_infer_unary(g, n, out);
    const distq_value *x = in_value(g, n, 0), *y = in_value(g, n, 1);
    if (x->ndim != y->ndim) return shape_mismatch(n, x, y, "broadcasting needs equal ranks");
    int64_t dims[DISTQ_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        int64_t a = x->dims[i], b = y->dims[i];
        if (a != b && a != 1 && b != 1) return shape_mismatch(n, x, y, "not broadcastable");
        dims[i] = a == 1 ? b : a;
    }
    set_out(out, x, x->ndim, dims);
    return DISTQ_OK;
}

/* concat: every input of one rank, equal but along axis. */
distq_status distq_infer_concat(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    int64_t axis = distq_axis_index(n->attr.axis, x->ndim);
    if (axis < 1 || axis >= x->ndim)
        return NODE_ERR(n, "axis %lld out of range for rank %d (the batch axis 0 cannot be joined)",
                        (long long)n->attr.axis, x->ndim);
    int64_t dims[DISTQ_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[axis] = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        const distq_value *y = in_value(g, n, k);
        if (y->ndim != x->ndim) return shape_mismatch(n, x, y, "concat needs equal ranks");
        if (y->dtype != x->dtype || (is_u8(x) && (y->scale != x->scale || y->zero_point != x->zero_point ||
                                                  y->quant_max != x->quant_max)))
            return NODE_ERR(n, "inputs '%s' and '%s' differ in dtype or qparams (a u8 concat shares one)",
                            x->name, y->name);
        for (int i = 0; i < x->ndim; i++)
            if (i != axis && y->dims[i] != x->dims[i])
                return shape_mismatch(n, x, y, "concat needs equal dims off the axis");
        dims[axis] += y->dims[axis];
    }
    set_out(out, x, x->ndim, dims);
    return DISTQ_OK;
}

/* The output of a max or average pooling window over x (rank 4): padding
 * below the kernel (PyTorch asks <= k/2, ONNX only this), PyTorch's size
 * rule with ceil_mode as given. */
static distq_status pool_out(distq_node *n, const distq_value *x, int ceil_mode, distq_value *out)
{
    const distq_attrs *a = &n->attr;
    for (int i = 0; i < 2; i++) {
        int64_t pad = a->padding[i] > distq_pad_end(a, i) ? a->padding[i] : distq_pad_end(a, i);
        if (pad >= a->kernel[i])
            return NODE_ERR(n, "padding %lld is not below the kernel %lld (a window could hold padding only)",
                            (long long)pad, (long long)a->kernel[i]);
    }
    int64_t OH = distq_conv_out_dim(x->dims[2], a->kernel[0], a->stride[0], a->padding[0], distq_pad_end(a, 0),
                                    1, ceil_mode);
    int64_t OW = distq_conv_out_dim(x->dims[3], a->kernel[1], a->stride[1], a->padding[1], distq_pad_end(a, 1),
                                    1, ceil_mode);
    if (OH < 1 || OW < 1) return NODE_ERR(n, "window larger than padded input");
    int64_t dims[4] = {1, x->dims[1], OH, OW};
    set_out(out, x, 4, dims);
    return DISTQ_OK;
}

distq_status distq_infer_max_pool2d(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const distq_attrs *a = &n->attr;
    distq_status st;
    if ((st = need_rank(n, x, 4)) || (st = check_window(n, a, 1))) return st;
    if (a->dilation[0] != 1 || a->dilation[1] != 1)
        return NODE_ERR(n, "dilation other than 1 is not supported");
    return pool_out(n, x, (int)a->ceil_mode, out);
}

/* PyTorch's avg_pool2d without ceil_mode (the importer turns an ONNX ceil
 * that adds no window into floor, and refuses one that does). */
distq_status distq_infer_avg_pool2d(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const distq_attrs *a = &n->attr;
    distq_status st;
    if ((st = need_rank(n, x, 4)) || (st = check_window(n, a, 1))) return st;
    if (a->count_include_pad != 0 && a->count_include_pad != 1)
        return NODE_ERR(n, "count_include_pad must be 0 or 1, not %lld", (long long)a->count_include_pad);
    if (is_u8(x) && a->count_include_pad &&
        (a->padding[0] || a->padding[1] || distq_pad_end(a, 0) || distq_pad_end(a, 1)))
        return NODE_ERR(n, "a u8 avg_pool2d cannot count its padding (the code 0 is not the real 0)");
    return pool_out(n, x, 0, out);
}

distq_status distq_infer_adaptive_avg_pool2d(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    distq_status st;
    if ((st = need_rank(n, x, 4))) return st;
    if (n->attr.output_size[0] != 1 || n->attr.output_size[1] != 1)
        return NODE_ERR(n, "only output_size (1, 1) is supported");
    int64_t dims[4] = {1, x->dims[1], 1, 1};
    set_out(out, x, 4, dims);
    return DISTQ_OK;
}

distq_status distq_infer_flatten(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    if (n->attr.start_dim != 1) return NODE_ERR(n, "only start_dim 1 is supported");
    int64_t dims[2] = {1, distq_dims_numel(x->ndim, x->dims)};
    set_out(out, x, 2, dims);
    return DISTQ_OK;
}

/* linear: on the last dim of x (rank 2, or any rank >= 2 in f32, as
 * torch.nn.Linear and ONNX MatMul on (N, H, W, C)). */
distq_status distq_infer_linear(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    distq_status st;
    if (x->ndim < 2) return NODE_ERR(n, "input '%s' has rank %d; linear takes rank >= 2", x->name, x->ndim);
    const distq_tensor *w = param(g, n, DISTQ_PARAM_WEIGHT);
    if (!w) return NODE_ERR(n, "missing weight");
    int64_t OUT = w->ndim == 2 ? w->dims[0] : -1;
    int64_t wdims[2] = {OUT, x->dims[x->ndim - 1]};
    if ((st = check_weight(g, n, x, 2, wdims))) return st;
    if ((st = check_param(g, n, DISTQ_PARAM_BIAS, "bias", 0, 1, &OUT))) return st;
    int64_t dims[DISTQ_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[x->ndim - 1] = OUT;
    set_out(out, x, x->ndim, dims);
    return set_head_out(g, n, x, out);
}

distq_status distq_infer_quantize(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    distq_status st;
    if (x->dtype != DISTQ_DTYPE_F32) return NODE_ERR(n, "input '%s' is %s, expected f32", x->name,
                                                     distq_dtype_name(x->dtype));
    if ((st = check_out_qparams(n))) return st;
    set_out(out, x, x->ndim, x->dims);
    set_out_u8(out, &n->attr);
    return DISTQ_OK;
}

distq_status distq_infer_dequantize(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    if (!is_u8(x)) return NODE_ERR(n, "input '%s' is %s, expected u8", x->name, distq_dtype_name(x->dtype));
    set_out(out, x, x->ndim, x->dims);
    out->dtype = DISTQ_DTYPE_F32;
    out->scale = 0.0f;
    out->zero_point = out->quant_max = 0;
    return DISTQ_OK;
}

distq_status distq_node_infer(distq_graph *g, distq_node *n)
{
    /* an op read from a file or built by hand may be outside the enum */
    const distq_op_info *info = distq_op_info_of(n->op);
    if (!info) return NODE_ERR(n, "has op %d, which is not in the op registry", (int)n->op);
    if (n->n_inputs < info->min_inputs ||
        (info->max_inputs != DISTQ_VARIADIC && n->n_inputs > info->max_inputs)) {
        if (info->max_inputs == DISTQ_VARIADIC)
            return NODE_ERR(n, "has %d inputs, expected at least %d", n->n_inputs, info->min_inputs);
        return NODE_ERR(n, "has %d inputs, expected %d", n->n_inputs, info->max_inputs);
    }
    /* u8 flows only into int8 heads, ops that share their input's qparams,
     * and quantize / dequantize (whose rules say which dtype each takes);
     * every other op runs in f32 */
    int takes_u8 = info->qrole == DISTQ_QROLE_HEAD || info->qrole == DISTQ_QROLE_SHARES_INPUT ||
                   info->qrole == DISTQ_QROLE_QDQ;
    for (int k = 0; k < n->n_inputs; k++) {
        const distq_value *v = in_value(g, n, k);
        /* and a mul's first input: the int8 squeeze-excite gate (distq_infer_broadcast checks it) */
        int gate = n->op == DISTQ_OP_MUL && k == 0;
        if (v->dtype != DISTQ_DTYPE_F32 && !((takes_u8 || gate) && is_u8(v)))
            return NODE_ERR(n, "input '%s' is %s; %s runs in f32 only (dequantize it first)", v->name,
                            distq_dtype_name(v->dtype), info->name);
    }
    for (int s = 0; s < DISTQ_MAX_PARAMS; s++)
        if (n->params[s] >= 0 && !(info->params & DISTQ_PARAM_BIT(s)))
            return NODE_ERR(n, "has a tensor '%s' in parameter slot %d, which %s does not take",
                            n->param_names[s], s, info->name);
    return info->infer(g, n, &g->values[n->output]);
}
