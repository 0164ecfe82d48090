/*
 * Per-op validation and shape inference (PyTorch's shape rules). Each check
 * names the node, and the tensor or attribute at fault.
 */
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

/* Checks that param slot holds an f32 tensor of the given dims (required or not). */
static distq_status check_param(const distq_graph *g, const distq_node *n, int slot,
                                const char *role, int required, int ndim, const int64_t *dims)
{
    const distq_tensor *t = param(g, n, slot);
    if (!t) return required ? NODE_ERR(n, "missing weight (%s)", role) : DISTQ_OK;
    char want[64], got[64];
    distq_dims_format(ndim, dims, want, sizeof want);
    distq_dims_format(t->ndim, t->dims, got, sizeof got);
    if (t->dtype != DISTQ_DTYPE_F32)
        return NODE_ERR(n, "%s '%s' has dtype %s, expected f32", role, t->name,
                        distq_dtype_name(t->dtype));
    if (t->ndim != ndim || memcmp(t->dims, dims, (size_t)ndim * sizeof *dims) != 0)
        return NODE_ERR(n, "%s '%s' has shape %s, expected %s", role, t->name, got, want);
    return DISTQ_OK;
}

static distq_status need_rank(const distq_node *n, const distq_value *v, int ndim)
{
    if (v->ndim == ndim) return DISTQ_OK;
    return NODE_ERR(n, "input '%s' has rank %d, expected %d", v->name, v->ndim, ndim);
}

static void set_out(distq_value *out, const distq_value *like, int ndim, const int64_t *dims)
{
    out->dtype = like->dtype;
    out->ndim = ndim;
    memcpy(out->dims, dims, (size_t)ndim * sizeof *dims);
}

static distq_status check_window(const distq_node *n, const distq_attrs *a, int with_kernel)
{
    for (int i = 0; i < 2; i++) {
        if (a->stride[i] < 1 || a->padding[i] < 0 || a->dilation[i] < 1 ||
            (with_kernel && a->kernel[i] < 1))
            return NODE_ERR(n, "bad stride/padding/dilation/kernel in dim %d", i);
    }
    return DISTQ_OK;
}

static distq_status infer_conv2d(distq_graph *g, distq_node *n, distq_value *out)
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
    if ((st = check_param(g, n, DISTQ_PARAM_WEIGHT, "weight", 1, 4, wdims))) return st;
    if ((st = check_param(g, n, DISTQ_PARAM_BIAS, "bias", 0, 1, &OC))) return st;
    int64_t OH = distq_conv_out_dim(x->dims[2], KH, a->stride[0], a->padding[0], a->dilation[0], 0);
    int64_t OW = distq_conv_out_dim(x->dims[3], KW, a->stride[1], a->padding[1], a->dilation[1], 0);
    if (OH < 1 || OW < 1)
        return NODE_ERR(n, "kernel %lldx%lld larger than padded input %lldx%lld", (long long)KH,
                        (long long)KW, (long long)x->dims[2], (long long)x->dims[3]);
    int64_t dims[4] = {1, OC, OH, OW};
    set_out(out, x, 4, dims);
    return DISTQ_OK;
}

static distq_status infer_batch_norm(distq_graph *g, distq_node *n, distq_value *out)
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

static distq_status infer_same(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    if (n->op == DISTQ_OP_ADD) {
        if (n->n_inputs != 2) return NODE_ERR(n, "needs 2 inputs, has %d", n->n_inputs);
        const distq_value *y = in_value(g, n, 1);
        if (x->ndim != y->ndim || memcmp(x->dims, y->dims, (size_t)x->ndim * sizeof *x->dims)) {
            char a[64], b[64];
            distq_dims_format(x->ndim, x->dims, a, sizeof a);
            distq_dims_format(y->ndim, y->dims, b, sizeof b);
            return NODE_ERR(n, "shape mismatch: '%s' %s vs '%s' %s", x->name, a, y->name, b);
        }
    }
    set_out(out, x, x->ndim, x->dims);
    return DISTQ_OK;
}

static distq_status infer_max_pool2d(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    const distq_attrs *a = &n->attr;
    distq_status st;
    if ((st = need_rank(n, x, 4)) || (st = check_window(n, a, 1))) return st;
    if (a->dilation[0] != 1 || a->dilation[1] != 1)
        return NODE_ERR(n, "dilation other than 1 is not supported");
    for (int i = 0; i < 2; i++)
        if (a->padding[i] * 2 > a->kernel[i])
            return NODE_ERR(n, "padding %lld exceeds half the kernel %lld", (long long)a->padding[i],
                            (long long)a->kernel[i]);
    int64_t OH = distq_conv_out_dim(x->dims[2], a->kernel[0], a->stride[0], a->padding[0], 1,
                                    (int)a->ceil_mode);
    int64_t OW = distq_conv_out_dim(x->dims[3], a->kernel[1], a->stride[1], a->padding[1], 1,
                                    (int)a->ceil_mode);
    if (OH < 1 || OW < 1) return NODE_ERR(n, "window larger than padded input");
    int64_t dims[4] = {1, x->dims[1], OH, OW};
    set_out(out, x, 4, dims);
    return DISTQ_OK;
}

static distq_status infer_adaptive_avg_pool2d(distq_graph *g, distq_node *n, distq_value *out)
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

static distq_status infer_flatten(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    if (n->attr.start_dim != 1) return NODE_ERR(n, "only start_dim 1 is supported");
    int64_t dims[2] = {1, distq_dims_numel(x->ndim, x->dims)};
    set_out(out, x, 2, dims);
    return DISTQ_OK;
}

static distq_status infer_linear(distq_graph *g, distq_node *n, distq_value *out)
{
    const distq_value *x = in_value(g, n, 0);
    distq_status st;
    if ((st = need_rank(n, x, 2))) return st;
    const distq_tensor *w = param(g, n, DISTQ_PARAM_WEIGHT);
    if (!w) return NODE_ERR(n, "missing weight");
    int64_t OUT = w->ndim == 2 ? w->dims[0] : -1;
    int64_t wdims[2] = {OUT, x->dims[1]};
    if ((st = check_param(g, n, DISTQ_PARAM_WEIGHT, "weight", 1, 2, wdims))) return st;
    if ((st = check_param(g, n, DISTQ_PARAM_BIAS, "bias", 0, 1, &OUT))) return st;
    int64_t dims[2] = {1, OUT};
    set_out(out, x, 2, dims);
    return DISTQ_OK;
}

typedef distq_status (*infer_fn)(distq_graph *, distq_node *, distq_value *);
static const infer_fn infer_table[DISTQ_OP_COUNT] = {
    [DISTQ_OP_CONV2D] = infer_conv2d,
    [DISTQ_OP_BATCH_NORM] = infer_batch_norm,
    [DISTQ_OP_RELU] = infer_same,
    [DISTQ_OP_ADD] = infer_same,
    [DISTQ_OP_MAX_POOL2D] = infer_max_pool2d,
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = infer_adaptive_avg_pool2d,
    [DISTQ_OP_FLATTEN] = infer_flatten,
    [DISTQ_OP_LINEAR] = infer_linear,
};
_Static_assert(DISTQ_OP_COUNT == 8, "a new op needs its shape rule in infer_table");

distq_status distq_node_infer(distq_graph *g, distq_node *n)
{
    /* an op read from a file or built by hand may be outside the table */
    if ((int)n->op < 0 || n->op >= DISTQ_OP_COUNT || !infer_table[n->op])
        return NODE_ERR(n, "has op %d, which has no shape rule", (int)n->op);
    int want_inputs = n->op == DISTQ_OP_ADD ? 2 : 1;
    if (n->n_inputs != want_inputs)
        return NODE_ERR(n, "has %d inputs, expected %d", n->n_inputs, want_inputs);
    for (int k = 0; k < n->n_inputs; k++)
        if (in_value(g, n, k)->dtype != DISTQ_DTYPE_F32)
            return NODE_ERR(n, "input '%s' is not f32", in_value(g, n, k)->name);
    return infer_table[n->op](g, n, &g->values[n->output]);
}
