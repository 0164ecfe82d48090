/*
 * Constant folding at import, as ONNX Runtime's basic optimizer does: an ONNX
 * node whose inputs are all constants is computed here into a constant, and
 * never becomes a graph node. This is how the shape arithmetic torch emits
 * (x.view(x.size(0), g, -1): Shape -> Gather -> Unsqueeze -> Concat ->
 * Reshape, with Div / Mul / Cast on the way) reaches Reshape and Slice as the
 * constant shape they need.
 *
 * The batch stays symbolic: Shape writes ONNX_SYM_BATCH for dim 0, which the
 * element-moving ops (Gather, Unsqueeze, Squeeze, Concat, Cast to an integer,
 * Reshape) carry along and Reshape reads as "the batch". Arithmetic on it
 * would need its value, so it is refused, naming the node.
 */
#include <math.h>
#include <string.h>

#include "import/onnx_impl.h"

static size_t elem_size(distq_dtype dt) { return dt == DISTQ_DTYPE_F32 ? sizeof(float) : sizeof(int64_t); }

static int holds_batch(const onnx_const *c)
{
    if (c->dtype != DISTQ_DTYPE_S64) return 0;
    const int64_t *v = c->data;
    for (int64_t i = 0; i < distq_dims_numel(c->ndim, c->dims); i++)
        if (v[i] == ONNX_SYM_BATCH) return 1;
    return 0;
}

static distq_status batch_refused(onnx_importer *im, const onnx_const *c)
{
    return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED,
                           "computes with '%s', which holds the batch size; distq keeps the batch symbolic "
                           "(one file runs at every batch), so shape arithmetic on it is not supported",
                           c->name);
}

/* A new constant for output 0 of the node, of dims (data taken over). */
static distq_status put(onnx_importer *im, const Onnx__NodeProto *n, distq_dtype dt, int ndim, const int64_t *dims,
                        void *data)
{
    if (n->n_output < 1 || !n->output[0][0]) {
        distq_free(data);
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "has no output");
    }
    return onnx_const_add(im, n->output[0], dt, ndim, dims, data);
}

static void *alloc_elems(int64_t count, distq_dtype dt)
{
    return distq_malloc((size_t)(count > 0 ? count : 1) * elem_size(dt));
}

/* A copy of c's data under new dims (same element count). */
static distq_status put_copy(onnx_importer *im, const Onnx__NodeProto *n, const onnx_const *c, int ndim,
                             const int64_t *dims)
{
    int64_t count = distq_dims_numel(c->ndim, c->dims);
    void *d = alloc_elems(count, c->dtype);
    if (!d) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    memcpy(d, c->data, (size_t)count * elem_size(c->dtype));
    return put(im, n, c->dtype, ndim, dims, d);
}

distq_status onnx_fold_shape(onnx_importer *im, const Onnx__NodeProto *n)
{
    int nd;
    int64_t dims[DISTQ_MAX_DIMS], start, end;
    onnx_const *c = onnx_input_const(im, n, 0);
    if (c) {
        nd = c->ndim;
        memcpy(dims, c->dims, sizeof dims);
    } else {
        const char *x;
        ONNX_TRY(onnx_need_value(im, n, 0, &x));
        ONNX_TRY(onnx_value_dims(im, x, &nd, dims));
        dims[0] = ONNX_SYM_BATCH;
    }
    ONNX_TRY(onnx_attr_int(im, n, "start", 0, &start)); /* opset 15 */
    ONNX_TRY(onnx_attr_int(im, n, "end", nd, &end));
    if (start < 0) start += nd;
    if (end < 0) end += nd;
    start = start < 0 ? 0 : start > nd ? nd : start;
    end = end < start ? start : end > nd ? nd : end;
    int64_t count = end - start;
    int64_t *d = alloc_elems(count, DISTQ_DTYPE_S64);
    if (!d) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    memcpy(d, dims + start, (size_t)count * sizeof *d);
    return put(im, n, DISTQ_DTYPE_S64, 1, &count, d);
}

/* Gather of constant data at constant indices along axis. */
distq_status onnx_fold_gather(onnx_importer *im, const Onnx__NodeProto *n)
{
    onnx_const *data, *idx;
    ONNX_TRY(onnx_need_const(im, n, 0, "data (only Gather on constants, such as shapes, is supported)", &data));
    ONNX_TRY(onnx_need_const(im, n, 1, "indices", &idx));
    int64_t axis;
    ONNX_TRY(onnx_attr_int(im, n, "axis", 0, &axis));
    int64_t ax = distq_axis_index(axis, data->ndim);
    if (data->ndim < 1 || ax < 0 || ax >= data->ndim)
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "axis %lld out of range for rank %d", (long long)axis, data->ndim);
    if (idx->dtype != DISTQ_DTYPE_S64) return onnx_node_error(im, DISTQ_ERR_FORMAT, "indices '%s' are not integers", idx->name);
    int ndim = data->ndim - 1 + idx->ndim;
    if (ndim > DISTQ_MAX_DIMS) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "output rank %d above %d", ndim, DISTQ_MAX_DIMS);
    int64_t dims[DISTQ_MAX_DIMS], outer = 1, inner = 1, len = data->dims[ax];
    int r = 0;
    for (int i = 0; i < ax; i++) outer *= dims[r++] = data->dims[i];
    for (int i = 0; i < idx->ndim; i++) dims[r++] = idx->dims[i];
    for (int i = (int)ax + 1; i < data->ndim; i++) inner *= dims[r++] = data->dims[i];
    int64_t n_idx = distq_dims_numel(idx->ndim, idx->dims);
    size_t es = elem_size(data->dtype);
    char *out = alloc_elems(outer * n_idx * inner, data->dtype);
    if (!out) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    const int64_t *iv = idx->data;
    for (int64_t k = 0; k < n_idx; k++) {
        int64_t j = iv[k] < 0 ? iv[k] + len : iv[k];
        if (j < 0 || j >= len) {
            distq_free(out);
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "index %lld out of range [%lld, %lld)", (long long)iv[k],
                                   (long long)-len, (long long)len);
        }
        for (int64_t o = 0; o < outer; o++)
            memcpy(out + ((o * n_idx + k) * inner) * es, (const char *)data->data + ((o * len + j) * inner) * es,
                   (size_t)inner * es);
    }
    return put(im, n, data->dtype, ndim, dims, out);
}

/* Cast: to a float type f32, to an integer or bool type s64 (truncating). */
distq_status onnx_fold_cast(onnx_importer *im, const Onnx__NodeProto *n)
{
    onnx_const *c;
    ONNX_TRY(onnx_need_const(im, n, 0, "input (only Cast of constants, such as shapes, is supported)", &c));
    int64_t to;
    ONNX_TRY(onnx_attr_int(im, n, "to", 0, &to));
    distq_dtype dt;
    switch (to) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: dt = DISTQ_DTYPE_F32; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: dt = DISTQ_DTYPE_S64; break;
    default: return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute 'to' = %lld is not a type distq casts to", (long long)to);
    }
    if (dt == DISTQ_DTYPE_F32 && holds_batch(c)) return batch_refused(im, c);
    int64_t count = distq_dims_numel(c->ndim, c->dims);
    void *d = alloc_elems(count, dt);
    if (!d) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    for (int64_t i = 0; i < count; i++) {
        if (dt == DISTQ_DTYPE_F32)
            ((float *)d)[i] = c->dtype == DISTQ_DTYPE_F32 ? ((const float *)c->data)[i] : (float)((const int64_t *)c->data)[i];
        else if (c->dtype == DISTQ_DTYPE_S64)
            ((int64_t *)d)[i] = to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL && ((const int64_t *)c->data)[i] != ONNX_SYM_BATCH
                                    ? ((const int64_t *)c->data)[i] != 0
                                    : ((const int64_t *)c->data)[i];
        else {
            float f = ((const float *)c->data)[i];
            if (to != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL && !(fabsf(f) < 9.2e18f)) { /* NaN, inf, out of range */
                distq_free(d);
                return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "casts %g in '%s' to an integer type", (double)f,
                                       c->name);
            }
            ((int64_t *)d)[i] = to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? f != 0.0f : (int64_t)f;
        }
    }
    int ndim = c->ndim;
    int64_t dims[DISTQ_MAX_DIMS];
    memcpy(dims, c->dims, sizeof dims); /* put may move im->consts, and c with it */
    return put(im, n, dt, ndim, dims, d);
}

/* Add, Sub, Mul, Div of two constants of one dtype, numpy broadcasting;
 * integer Div truncates (as ONNX Runtime). */
static distq_status fold_binary(onnx_importer *im, const Onnx__NodeProto *n, char op)
{
    onnx_const *a = onnx_input_const(im, n, 0), *b = onnx_input_const(im, n, 1);
    if (!a || !b) return onnx_node_error(im, DISTQ_ERR_FORMAT, "needs two inputs");
    if (a->dtype != b->dtype) return onnx_node_error(im, DISTQ_ERR_FORMAT, "inputs '%s' and '%s' differ in type", a->name, b->name);
    if (holds_batch(a)) return batch_refused(im, a);
    if (holds_batch(b)) return batch_refused(im, b);
    int r = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t dims[DISTQ_MAX_DIMS], da[DISTQ_MAX_DIMS], db[DISTQ_MAX_DIMS];
    for (int i = 0; i < r; i++) {
        da[i] = i < r - a->ndim ? 1 : a->dims[i - (r - a->ndim)];
        db[i] = i < r - b->ndim ? 1 : b->dims[i - (r - b->ndim)];
        if (da[i] != db[i] && da[i] != 1 && db[i] != 1)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "inputs '%s' and '%s' do not broadcast", a->name, b->name);
        dims[i] = da[i] == 1 ? db[i] : da[i];
    }
    int64_t count = distq_dims_numel(r, dims);
    void *out = alloc_elems(count, a->dtype);
    if (!out) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    for (int64_t i = 0; i < count; i++) {
        int64_t rest = i, ia = 0, ib = 0, sa = 1, sb = 1;
        for (int d = r - 1; d >= 0; d--) {
            int64_t k = rest % dims[d];
            rest /= dims[d];
            ia += (da[d] == 1 ? 0 : k) * sa;
            ib += (db[d] == 1 ? 0 : k) * sb;
            sa *= da[d];
            sb *= db[d];
        }
        if (a->dtype == DISTQ_DTYPE_F32) {
            float x = ((const float *)a->data)[ia], y = ((const float *)b->data)[ib];
            ((float *)out)[i] = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
        } else {
            int64_t x = ((const int64_t *)a->data)[ia], y = ((const int64_t *)b->data)[ib];
            if (op == '/' && y == 0) {
                distq_free(out);
                return onnx_node_error(im, DISTQ_ERR_FORMAT, "divides the integer constant '%s' by zero", a->name);
            }
            ((int64_t *)out)[i] = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
        }
    }
    return put(im, n, a->dtype, r, dims, out);
}

static distq_status fold_add(onnx_importer *im, const Onnx__NodeProto *n) { return fold_binary(im, n, '+'); }
static distq_status fold_sub(onnx_importer *im, const Onnx__NodeProto *n) { return fold_binary(im, n, '-'); }
static distq_status fold_mul(onnx_importer *im, const Onnx__NodeProto *n) { return fold_binary(im, n, '*'); }
static distq_status fold_div(onnx_importer *im, const Onnx__NodeProto *n) { return fold_binary(im, n, '/'); }

static distq_status fold_concat(onnx_importer *im, const Onnx__NodeProto *n)
{
    onnx_const *first = onnx_input_const(im, n, 0);
    int64_t axis;
    ONNX_TRY(onnx_attr_int(im, n, "axis", 1, &axis));
    int64_t ax = distq_axis_index(axis, first->ndim);
    if (ax < 0 || ax >= first->ndim) return onnx_node_error(im, DISTQ_ERR_FORMAT, "axis %lld out of range", (long long)axis);
    int64_t dims[DISTQ_MAX_DIMS], outer = 1, inner = 1;
    memcpy(dims, first->dims, sizeof dims);
    dims[ax] = 0;
    for (size_t k = 0; k < n->n_input; k++) {
        onnx_const *c = onnx_input_const(im, n, (int)k);
        if (!c) return onnx_node_error(im, DISTQ_ERR_FORMAT, "input %zu is missing", k);
        if (c->dtype != first->dtype || c->ndim != first->ndim)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "inputs '%s' and '%s' differ in type or rank", first->name, c->name);
        for (int i = 0; i < c->ndim; i++)
            if (i != ax && c->dims[i] != first->dims[i])
                return onnx_node_error(im, DISTQ_ERR_FORMAT, "inputs '%s' and '%s' differ off the axis", first->name, c->name);
        dims[ax] += c->dims[ax];
    }
    for (int i = 0; i < ax; i++) outer *= dims[i];
    for (int i = (int)ax + 1; i < first->ndim; i++) inner *= dims[i];
    size_t es = elem_size(first->dtype);
    char *out = alloc_elems(distq_dims_numel(first->ndim, dims), first->dtype);
    if (!out) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    int64_t row = dims[ax] * inner, at = 0;
    for (size_t k = 0; k < n->n_input; k++) {
        onnx_const *c = onnx_input_const(im, n, (int)k);
        int64_t run = c->dims[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(out + (o * row + at) * es, (const char *)c->data + o * run * es, (size_t)run * es);
        at += run;
    }
    return put(im, n, first->dtype, first->ndim, dims, out);
}

/* The axes of Squeeze / Unsqueeze: an attribute before opset 13, an input after. */
distq_status onnx_axes(onnx_importer *im, const Onnx__NodeProto *n, int *count, int64_t *axes)
{
    *count = 0;
    if (im->opset < 13) return onnx_attr_ints(im, n, "axes", DISTQ_MAX_DIMS, count, axes);
    if (onnx_attr(n, "axes")) return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute 'axes' is an input since opset 13");
    if (!onnx_has_input(n, 1)) return DISTQ_OK;
    onnx_const *c;
    ONNX_TRY(onnx_need_const(im, n, 1, "axes", &c));
    int64_t cnt = distq_dims_numel(c->ndim, c->dims);
    if (c->dtype != DISTQ_DTYPE_S64 || cnt > DISTQ_MAX_DIMS)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "axes '%s' must be at most %d integers", c->name, DISTQ_MAX_DIMS);
    memcpy(axes, c->data, (size_t)cnt * sizeof *axes);
    *count = (int)cnt;
    return DISTQ_OK;
}

distq_status onnx_unsqueezed_dims(onnx_importer *im, const Onnx__NodeProto *n, int nd, const int64_t *dims,
                                  int *out_nd, int64_t *out)
{
    int cnt;
    int64_t axes[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_axes(im, n, &cnt, axes));
    int r = nd + cnt;
    if (!cnt || r > DISTQ_MAX_DIMS) return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "needs 1 to %d axes", DISTQ_MAX_DIMS - nd);
    int is_new[DISTQ_MAX_DIMS] = {0};
    for (int i = 0; i < cnt; i++) {
        int64_t a = distq_axis_index(axes[i], r);
        if (a < 0 || a >= r || is_new[a]++)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "axis %lld is out of range or repeated", (long long)axes[i]);
    }
    for (int i = 0, k = 0; i < r; i++) out[i] = is_new[i] ? 1 : dims[k++];
    *out_nd = r;
    return DISTQ_OK;
}

distq_status onnx_squeezed_dims(onnx_importer *im, const Onnx__NodeProto *n, int nd, const int64_t *dims,
                                int *out_nd, int64_t *out)
{
    int cnt;
    int64_t axes[DISTQ_MAX_DIMS];
    ONNX_TRY(onnx_axes(im, n, &cnt, axes));
    int drop[DISTQ_MAX_DIMS] = {0};
    for (int i = 0; i < cnt; i++) {
        int64_t a = distq_axis_index(axes[i], nd);
        if (a < 0 || a >= nd || dims[a] != 1)
            return onnx_node_error(im, DISTQ_ERR_FORMAT, "axis %lld is out of range or not of size 1", (long long)axes[i]);
        drop[a] = 1;
    }
    for (int i = 0; i < nd && !cnt; i++) drop[i] = dims[i] == 1;
    int r = 0;
    for (int i = 0; i < nd; i++)
        if (!drop[i]) out[r++] = dims[i];
    *out_nd = r;
    return DISTQ_OK;
}

/* Squeeze and Unsqueeze of a constant: its values under the new dims. */
static distq_status fold_squeeze_or_unsqueeze(onnx_importer *im, const Onnx__NodeProto *n, int un)
{
    onnx_const *c = onnx_input_const(im, n, 0);
    int r;
    int64_t dims[DISTQ_MAX_DIMS];
    if (un) ONNX_TRY(onnx_unsqueezed_dims(im, n, c->ndim, c->dims, &r, dims));
    else ONNX_TRY(onnx_squeezed_dims(im, n, c->ndim, c->dims, &r, dims));
    return put_copy(im, n, c, r, dims);
}
static distq_status fold_unsqueeze(onnx_importer *im, const Onnx__NodeProto *n) { return fold_squeeze_or_unsqueeze(im, n, 1); }
static distq_status fold_squeeze(onnx_importer *im, const Onnx__NodeProto *n) { return fold_squeeze_or_unsqueeze(im, n, 0); }

/* Reshape of a constant: 0 copies a dim (allowzero 0), one -1 is inferred. */
static distq_status fold_reshape(onnx_importer *im, const Onnx__NodeProto *n)
{
    onnx_const *c = onnx_input_const(im, n, 0), *s = onnx_input_const(im, n, 1);
    if (!s) return onnx_node_error(im, DISTQ_ERR_FORMAT, "input 1 (shape) is missing");
    int64_t r = s->ndim == 1 ? s->dims[0] : -1, dims[DISTQ_MAX_DIMS], known = 1, allowzero;
    ONNX_TRY(onnx_attr_int(im, n, "allowzero", 0, &allowzero));
    if (s->dtype != DISTQ_DTYPE_S64 || r < 0 || r > DISTQ_MAX_DIMS || holds_batch(s))
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "shape '%s' must be 0 to %d integers", s->name, DISTQ_MAX_DIMS);
    int infer = -1;
    for (int i = 0; i < r; i++) {
        int64_t t = ((const int64_t *)s->data)[i];
        dims[i] = t == 0 && !allowzero && i < c->ndim ? c->dims[i] : t;
        if (dims[i] == -1 && infer < 0) infer = i;
        else if (dims[i] < 0) return onnx_node_error(im, DISTQ_ERR_FORMAT, "shape '%s' entry %d is %lld", s->name, i, (long long)t);
        else known *= dims[i];
    }
    int64_t count = distq_dims_numel(c->ndim, c->dims);
    if (infer >= 0) dims[infer] = known ? count / known : 0;
    if (distq_dims_numel((int)r, dims) != count)
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "shape '%s' does not hold the %lld values of '%s'", s->name,
                               (long long)count, c->name);
    return put_copy(im, n, c, (int)r, dims);
}

typedef struct {
    const char *op_type;
    onnx_op_fn fold;
} fold_row;

static const fold_row fold_table[] = {
    {"Add", fold_add},         {"Sub", fold_sub},         {"Mul", fold_mul},
    {"Div", fold_div},         {"Concat", fold_concat},   {"Unsqueeze", fold_unsqueeze},
    {"Squeeze", fold_squeeze}, {"Reshape", fold_reshape},
};

onnx_op_fn onnx_fold_find(onnx_importer *im, const Onnx__NodeProto *n)
{
    if (n->n_input < 1) return NULL;
    for (size_t k = 0; k < n->n_input; k++)
        if (onnx_has_input(n, (int)k) && !onnx_input_const(im, n, (int)k)) return NULL;
    if (!onnx_input_const(im, n, 0)) return NULL;
    for (size_t i = 0; i < sizeof fold_table / sizeof fold_table[0]; i++)
        if (strcmp(fold_table[i].op_type, n->op_type) == 0) return fold_table[i].fold;
    return NULL;
}
