/*
 * Patterns of ONNX nodes imported as one registry op, found before the nodes
 * are translated, as ONNX Runtime's GeluFusion and LayerNormFusion do on the
 * ONNX graph. torch 1.13 exports
 *   GELU as       x * (Erf(x / sqrt 2) + 1) * 0.5           -> gelu
 *   LayerNorm     d = x - ReduceMean(x), axis -1;
 *   (below 17) as d / Sqrt(ReduceMean(d ^ 2) + eps)
 *                 [* weight + bias]                          -> layer_norm
 * A pattern is taken only when each inner value feeds nothing but the next
 * node of the pattern; otherwise its nodes import one by one (erf, pow,
 * sqrt, div ... as their own ops).
 */
#include <math.h>
#include <string.h>

#include "import/onnx_impl.h"

static int same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static int is_op(const Onnx__GraphProto *gp, int i, const char *op)
{
    return i >= 0 && same(gp->node[i]->op_type, op) && (!gp->node[i]->domain || !gp->node[i]->domain[0]);
}

/* The node reading name, if exactly one node reads it (once) and it is not a
 * graph output; else -1. */
static int sole_reader(const Onnx__GraphProto *gp, const char *name)
{
    int found = -1;
    for (size_t o = 0; o < gp->n_output; o++)
        if (same(gp->output[o]->name, name)) return -1;
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++)
            if (same(gp->node[i]->input[k], name)) {
                if (found >= 0) return -1;
                found = (int)i;
            }
    return found;
}

/* How many (node, input) pairs read name. */
static int readers(const Onnx__GraphProto *gp, const char *name, int *first, int *second)
{
    int count = 0;
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++)
            if (same(gp->node[i]->input[k], name)) {
                if (count == 0) *first = (int)i;
                else if (count == 1) *second = (int)i;
                count++;
            }
    return count;
}

static int producer(const Onnx__GraphProto *gp, const char *name)
{
    for (size_t i = 0; i < gp->n_node; i++)
        if (gp->node[i]->n_output > 0 && same(gp->node[i]->output[0], name)) return (int)i;
    return -1;
}

static const char *out0(const Onnx__GraphProto *gp, int i)
{
    return gp->node[i]->n_output > 0 ? gp->node[i]->output[0] : NULL;
}

/* The tensor of constant name: an initializer or a Constant node's value,
 * through Identity nodes (torch shares equal initializers that way); NULL if
 * name is not one. */
static const Onnx__TensorProto *constant_tensor(const Onnx__GraphProto *gp, const char *name)
{
    for (int hops = 0; name && hops < 16; hops++) {
        int p = producer(gp, name);
        if (is_op(gp, p, "Constant")) {
            for (size_t a = 0; a < gp->node[p]->n_attribute; a++)
                if (same(gp->node[p]->attribute[a]->name, "value")) return gp->node[p]->attribute[a]->t;
            return NULL;
        }
        if (!is_op(gp, p, "Identity")) {
            if (p >= 0) return NULL;
            for (size_t i = 0; i < gp->n_initializer; i++)
                if (same(gp->initializer[i]->name, name)) return gp->initializer[i];
            return NULL;
        }
        name = gp->node[p]->n_input ? gp->node[p]->input[0] : NULL;
    }
    return NULL;
}

/* 1 if name is a constant of one value per element of the last dim
 * (dims (1, ..., 1, C) with C > 1, or (C)): the affine part of a LayerNorm
 * over the last axis, as ONNX broadcasts it. A scalar or any other shape
 * would broadcast differently, so the pattern stops before it. */
static int is_affine_row(const Onnx__GraphProto *gp, const char *name)
{
    const Onnx__TensorProto *t = constant_tensor(gp, name);
    if (!t || t->n_dims < 1 || t->dims[t->n_dims - 1] < 2) return 0;
    for (size_t i = 0; i + 1 < t->n_dims; i++)
        if (t->dims[i] != 1) return 0;
    return 1;
}

/* The single float of a tensor, if it holds exactly one. */
static int tensor_scalar(const Onnx__TensorProto *t, float *v)
{
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) n *= t->dims[i];
    if (n != 1 || !t->has_data_type) return 0;
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        if (t->has_raw_data && t->raw_data.len == 4) memcpy(v, t->raw_data.data, 4);
        else if (t->n_float_data == 1) *v = t->float_data[0];
        else return 0;
        return 1;
    }
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
        double d;
        if (t->has_raw_data && t->raw_data.len == 8) memcpy(&d, t->raw_data.data, 8);
        else if (t->n_double_data == 1) d = t->double_data[0];
        else return 0;
        *v = (float)d;
        return 1;
    }
    return 0;
}

/* The float constant name holds (an initializer or a Constant node), if one. */
static int scalar_of(const Onnx__GraphProto *gp, const char *name, float *v)
{
    const Onnx__TensorProto *t = constant_tensor(gp, name);
    if (t) return tensor_scalar(t, v);
    int p = producer(gp, name); /* a Constant of value_float has no tensor */
    for (size_t a = 0; is_op(gp, p, "Constant") && a < gp->node[p]->n_attribute; a++)
        if (same(gp->node[p]->attribute[a]->name, "value_float")) {
            *v = gp->node[p]->attribute[a]->f;
            return 1;
        }
    return 0;
}

/* Node i is a binary op of input `x` and a scalar constant near want (in
 * either order, where `commutes`). */
static int with_scalar(const Onnx__GraphProto *gp, int i, const char *x, float want, int commutes)
{
    const Onnx__NodeProto *n = gp->node[i];
    float v;
    if (n->n_input != 2) return 0;
    if (same(n->input[0], x) && scalar_of(gp, n->input[1], &v)) return fabsf(v - want) <= 1e-5f * fabsf(want);
    if (commutes && same(n->input[1], x) && scalar_of(gp, n->input[0], &v)) return fabsf(v - want) <= 1e-5f * fabsf(want);
    return 0;
}

/* The other input of a two-input node i, besides `x`; NULL if x is neither. */
static const char *other_input(const Onnx__GraphProto *gp, int i, const char *x)
{
    const Onnx__NodeProto *n = gp->node[i];
    if (n->n_input != 2) return NULL;
    return same(n->input[0], x) ? n->input[1] : same(n->input[1], x) ? n->input[0] : NULL;
}

static distq_status add_fusion(onnx_importer *im, const onnx_fusion *f, const int *members, int n_members)
{
    if (im->n_fusions == im->cap_fusions) {
        int cap = im->cap_fusions ? 2 * im->cap_fusions : 16;
        onnx_fusion *p = distq_calloc(sizeof *p * (size_t)cap);
        if (!p) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
        if (im->fusions) memcpy(p, im->fusions, sizeof *p * (size_t)im->n_fusions);
        distq_free(im->fusions);
        im->fusions = p;
        im->cap_fusions = cap;
    }
    for (int k = 0; k < n_members; k++) im->fusion_of[members[k]] = ONNX_ABSORBED;
    im->fusion_of[f->last] = im->n_fusions;
    im->fusions[im->n_fusions++] = *f;
    return DISTQ_OK;
}

/* x * (Erf(x / sqrt 2) + 1) * 0.5 around the Erf node e. */
static distq_status match_gelu(onnx_importer *im, const Onnx__GraphProto *gp, int e)
{
    const Onnx__NodeProto *erf = gp->node[e];
    if (erf->n_input != 1 || erf->n_output != 1) return DISTQ_OK;
    int d = producer(gp, erf->input[0]);
    if (!is_op(gp, d, "Div") || gp->node[d]->n_input != 2 || sole_reader(gp, out0(gp, d)) != e) return DISTQ_OK;
    const char *x = gp->node[d]->input[0];
    if (!with_scalar(gp, d, x, 1.41421356f, 0)) return DISTQ_OK;
    int a = sole_reader(gp, out0(gp, e));
    if (!is_op(gp, a, "Add") || !with_scalar(gp, a, out0(gp, e), 1.0f, 1)) return DISTQ_OK;
    int m1 = sole_reader(gp, out0(gp, a));
    if (!is_op(gp, m1, "Mul") || !same(other_input(gp, m1, out0(gp, a)), x)) return DISTQ_OK;
    int m2 = sole_reader(gp, out0(gp, m1));
    if (!is_op(gp, m2, "Mul") || !with_scalar(gp, m2, out0(gp, m1), 0.5f, 1)) return DISTQ_OK;
    onnx_fusion f = {.op = DISTQ_OP_GELU, .last = m2, .x = x};
    int members[4] = {d, e, a, m1};
    return add_fusion(im, &f, members, 4);
}

/* ReduceMean over the last axis only, keepdims. */
static int mean_last_axis(const Onnx__GraphProto *gp, int i)
{
    const Onnx__NodeProto *n = gp->node[i];
    int axes_ok = 0;
    for (size_t a = 0; a < n->n_attribute; a++) {
        const Onnx__AttributeProto *at = n->attribute[a];
        if (same(at->name, "axes")) axes_ok = at->n_ints == 1 && at->ints[0] == -1;
        else if (!same(at->name, "keepdims") || at->i != 1) return 0;
    }
    return axes_ok && n->n_input == 1;
}

/* The decomposed LayerNorm that starts at ReduceMean node r1. */
static distq_status match_layer_norm(onnx_importer *im, const Onnx__GraphProto *gp, int r1)
{
    if (!mean_last_axis(gp, r1)) return DISTQ_OK;
    const char *x = gp->node[r1]->input[0];
    int s = sole_reader(gp, out0(gp, r1));
    if (!is_op(gp, s, "Sub") || !same(gp->node[s]->input[0], x) || !same(gp->node[s]->input[1], out0(gp, r1)))
        return DISTQ_OK;
    int p = -1, dv = -1;
    if (readers(gp, out0(gp, s), &p, &dv) != 2) return DISTQ_OK;
    if (is_op(gp, dv, "Pow")) { /* either order in the node list */
        int t = p;
        p = dv;
        dv = t;
    }
    if (!is_op(gp, p, "Pow") || !with_scalar(gp, p, out0(gp, s), 2.0f, 0) || !is_op(gp, dv, "Div") ||
        !same(gp->node[dv]->input[0], out0(gp, s)))
        return DISTQ_OK;
    int r2 = sole_reader(gp, out0(gp, p));
    if (!is_op(gp, r2, "ReduceMean") || !mean_last_axis(gp, r2)) return DISTQ_OK;
    int a = sole_reader(gp, out0(gp, r2));
    const char *eps_name = is_op(gp, a, "Add") ? other_input(gp, a, out0(gp, r2)) : NULL;
    float eps;
    if (!eps_name || !scalar_of(gp, eps_name, &eps) || !(eps > 0.0f)) return DISTQ_OK;
    int q = sole_reader(gp, out0(gp, a));
    if (!is_op(gp, q, "Sqrt") || sole_reader(gp, out0(gp, q)) != dv || !same(gp->node[dv]->input[1], out0(gp, q)))
        return DISTQ_OK;
    onnx_fusion f = {.op = DISTQ_OP_LAYER_NORM, .last = dv, .x = x, .eps = eps, .weight_node = -1, .bias_node = -1};
    int members[8] = {r1, s, p, r2, a, q}, n_members = 6;
    /* the affine part: * weight, + bias, each a constant (checked when emitted) */
    int mul = sole_reader(gp, out0(gp, dv));
    if (is_op(gp, mul, "Mul") && is_affine_row(gp, other_input(gp, mul, out0(gp, dv)))) {
        members[n_members++] = dv;
        f.last = f.weight_node = mul;
        int add = sole_reader(gp, out0(gp, mul));
        if (is_op(gp, add, "Add") && is_affine_row(gp, other_input(gp, add, out0(gp, mul)))) {
            members[n_members++] = mul;
            f.last = f.bias_node = add;
        }
    }
    return add_fusion(im, &f, members, n_members);
}

distq_status onnx_find_fusions(onnx_importer *im, const Onnx__GraphProto *gp)
{
    im->fusion_of = distq_malloc(sizeof *im->fusion_of * (gp->n_node ? gp->n_node : 1));
    if (!im->fusion_of) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    for (size_t i = 0; i < gp->n_node; i++) im->fusion_of[i] = ONNX_NOT_FUSED;
    for (size_t i = 0; i < gp->n_node; i++) {
        if (im->fusion_of[i] != ONNX_NOT_FUSED) continue;
        if (is_op(gp, (int)i, "Erf")) ONNX_TRY(match_gelu(im, gp, (int)i));
        else if (is_op(gp, (int)i, "ReduceMean")) ONNX_TRY(match_layer_norm(im, gp, (int)i));
    }
    return DISTQ_OK;
}

/* The constant operand of the affine node i (the input that is not from). */
static distq_status affine_param(onnx_importer *im, const Onnx__GraphProto *gp, int i, const char *from,
                                 const char **param)
{
    const Onnx__NodeProto *n = gp->node[i];
    int k = same(n->input[0], from) ? 1 : 0;
    onnx_const *c;
    ONNX_TRY(onnx_need_const(im, n, k, "the LayerNorm's weight or bias", &c));
    return onnx_param_of(im, c, param);
}

distq_status onnx_emit_fusion(onnx_importer *im, const Onnx__GraphProto *gp, const onnx_fusion *f)
{
    const char *x = f->x;
    /* x as a value: resolved through aliases, as a node's input would be */
    Onnx__NodeProto probe = *gp->node[f->last];
    char *in[1] = {(char *)f->x};
    probe.n_input = 1;
    probe.input = in;
    ONNX_TRY(onnx_need_value(im, &probe, 0, &x));
    distq_attrs a = distq_attrs_default(f->op);
    const char *params[DISTQ_MAX_PARAMS] = {0};
    if (f->op == DISTQ_OP_LAYER_NORM) {
        a.eps = f->eps;
        if (f->weight_node >= 0) {
            const Onnx__NodeProto *mul = gp->node[f->weight_node];
            int from_k = constant_tensor(gp, mul->input[0]) ? 1 : 0; /* the normalized value's side */
            ONNX_TRY(affine_param(im, gp, f->weight_node, mul->input[from_k], &params[DISTQ_PARAM_WEIGHT]));
        }
        if (f->bias_node >= 0) {
            const Onnx__NodeProto *add = gp->node[f->bias_node];
            int from_k = constant_tensor(gp, add->input[0]) ? 1 : 0;
            ONNX_TRY(affine_param(im, gp, f->bias_node, add->input[from_k], &params[DISTQ_PARAM_BIAS]));
        }
    }
    return onnx_emit(im, f->op, &a, 1, &x, params);
}
