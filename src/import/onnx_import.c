/*
 * ONNX import: the model file, its tensors, the graph input and output,
 * constants and aliases. Each ONNX node is translated by its row of the op
 * table (onnx_ops.c) into registry ops; the graph is finalized at the end,
 * and in between whenever a translation needs a value's shape (ONNX lists
 * nodes in topological order, so every input is there when a node is read).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/onnx_impl.h"

int distq_path_is_onnx(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 5 && strcmp(path + n - 5, ".onnx") == 0;
}

distq_status onnx_node_error(const onnx_importer *im, distq_status st, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return distq_error_set(st, "%s: node '%s' (%s, opset %lld): %s", im->path, im->node_name,
                           im->node->op_type ? im->node->op_type : "no op_type", (long long)im->opset, detail);
}

// --- files ------------------------------------------------------------------------

/* The whole file at path into *buf (distq_free it). */
static distq_status read_file(const char *path, const char *what, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return distq_error_set(DISTQ_ERR_IO, "%s: cannot open %s", path, what);
    distq_status st = DISTQ_OK;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = distq_error_set(DISTQ_ERR_IO, "%s: cannot size %s", path, what);
    } else if (!(*buf = distq_malloc((size_t)size + 1))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory reading %ld bytes", path, size);
    } else if (fread(*buf, 1, (size_t)size, f) != (size_t)size) {
        st = distq_error_set(DISTQ_ERR_IO, "%s: short read of %s", path, what);
    }
    fclose(f);
    if (st) {
        distq_free(*buf);
        *buf = NULL;
        return st;
    }
    *len = (size_t)size;
    return DISTQ_OK;
}

/* length bytes at offset of the file `location` beside the model (the
 * external-data format: offsets need not be aligned). */
static distq_status read_external(const onnx_importer *im, const char *tensor, const char *location,
                                  int64_t offset, int64_t length, void *out)
{
    if (!location || !location[0] || location[0] == '/' || strstr(location, ".."))
        return distq_error_set(DISTQ_ERR_FORMAT,
                               "%s: tensor '%s': external data location '%s' must be a relative "
                               "path inside the model's folder",
                               im->path, tensor, location ? location : "");
    size_t plen = strlen(im->dir) + strlen(location) + 2;
    char *p = distq_malloc(plen);
    if (!p) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    snprintf(p, plen, "%s/%s", im->dir, location);
    distq_status st = DISTQ_OK;
    FILE *f = fopen(p, "rb");
    if (!f) {
        st = distq_error_set(DISTQ_ERR_IO, "%s: tensor '%s': cannot open its external data %s",
                             im->path, tensor, p);
    } else {
        if (fseek(f, (long)offset, SEEK_SET) != 0 || fread(out, 1, (size_t)length, f) != (size_t)length)
            st = distq_error_set(DISTQ_ERR_IO,
                                 "%s: tensor '%s': %s has no %lld bytes at offset %lld", im->path,
                                 tensor, p, (long long)length, (long long)offset);
        fclose(f);
    }
    distq_free(p);
    return st;
}

// --- tensors ------------------------------------------------------------------------

/* Element size of an ONNX data type distq reads, 0 if it reads none:
 * floats become f32, integers and bools s64. */
static size_t onnx_elem_size(int32_t type, distq_dtype *dt)
{
    *dt = DISTQ_DTYPE_S64;
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: *dt = DISTQ_DTYPE_F32; return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: *dt = DISTQ_DTYPE_F32; return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return 2;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    default: return 0;
    }
}

/* Converts n little-endian elements of ONNX type `type` at raw into out
 * (f32 or s64). */
static void convert_raw(int32_t type, const uint8_t *raw, int64_t n, void *out)
{
    float *f = out;
    int64_t *q = out;
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) { /* little-endian, as ONNX stores it (x86) */
        if (n) memcpy(f, raw, (size_t)n * sizeof *f); /* an empty tensor may have no bytes at all */
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        switch (type) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: memcpy(&f[i], raw + 4 * i, 4); break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
            double d;
            memcpy(&d, raw + 8 * i, 8);
            f[i] = (float)d;
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
        case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: memcpy(&q[i], raw + 8 * i, 8); break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: {
            int32_t v;
            memcpy(&v, raw + 4 * i, 4);
            q[i] = v;
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: {
            uint32_t v;
            memcpy(&v, raw + 4 * i, 4);
            q[i] = v;
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: {
            int16_t v;
            memcpy(&v, raw + 2 * i, 2);
            q[i] = v;
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: {
            uint16_t v;
            memcpy(&v, raw + 2 * i, 2);
            q[i] = v;
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: q[i] = (int8_t)raw[i]; break;
        default: q[i] = raw[i]; break; /* UINT8, BOOL */
        }
    }
}

/* How many values t holds in the message itself (raw or typed fields). */
static int64_t inline_count(const Onnx__TensorProto *t, distq_dtype dt, size_t esize)
{
    if (t->has_raw_data) return (int64_t)(t->raw_data.len / esize);
    if (dt == DISTQ_DTYPE_F32 && t->n_float_data) return (int64_t)t->n_float_data;
    if (dt == DISTQ_DTYPE_F32 && t->n_double_data) return (int64_t)t->n_double_data;
    if (t->n_int64_data) return (int64_t)t->n_int64_data;
    if (t->n_int32_data) return (int64_t)t->n_int32_data;
    return (int64_t)t->n_uint64_data;
}

/* Reads TensorProto t into a new buffer *data of *dt (f32 or s64), with its
 * dims. where names the tensor in messages. im may be NULL (no external data). */
static distq_status tensor_data(const onnx_importer *im, const char *path, const Onnx__TensorProto *t,
                                const char *where, distq_dtype *dt, int *ndim, int64_t *dims,
                                void **data)
{
    *data = NULL;
    int32_t type = t->has_data_type ? t->data_type : 0;
    size_t esize = onnx_elem_size(type, dt);
    if (!esize)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "%s: tensor '%s' has ONNX data type %d, which distq does not read "
                               "(float, double, integers and bool)",
                               path, where, (int)type);
    if (t->n_dims > DISTQ_MAX_DIMS)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %zu, above %d",
                               path, where, t->n_dims, DISTQ_MAX_DIMS);
    *ndim = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) dims[i] = t->dims[i];
    int64_t n = distq_dims_numel(*ndim, dims);
    /* bounded so that n * 8 bytes fits (external data is sized from n) */
    if (n < 0 || n > INT64_MAX / 8)
        return distq_error_set(DISTQ_ERR_FORMAT, "%s: tensor '%s' has a negative or huge dim", path,
                               where);
    int external = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    /* checked before allocating: a file that is not a TensorProto (an ONNX
     * sequence or optional, say) parses into nonsense dims */
    if (!external && inline_count(t, *dt, esize) != n)
        return distq_error_set(DISTQ_ERR_FORMAT, "%s: tensor '%s' holds %lld values for %lld elements "
                               "(sequences and optionals are not read)", path, where,
                               (long long)inline_count(t, *dt, esize), (long long)n);
    void *out = distq_malloc((size_t)(n ? n : 1) * (*dt == DISTQ_DTYPE_F32 ? sizeof(float) : sizeof(int64_t)));
    if (!out) return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory for tensor '%s'", path, where);
    distq_status st = DISTQ_OK;
    int64_t have = -1;
    if (external) {
        const char *location = NULL;
        int64_t offset = 0, length = -1;
        for (size_t i = 0; i < t->n_external_data; i++) {
            const Onnx__StringStringEntryProto *e = t->external_data[i];
            if (!e->key || !e->value) continue;
            if (strcmp(e->key, "location") == 0) location = e->value;
            else if (strcmp(e->key, "offset") == 0) offset = strtoll(e->value, NULL, 10);
            else if (strcmp(e->key, "length") == 0) length = strtoll(e->value, NULL, 10);
        }
        if (length < 0) length = n * (int64_t)esize;
        if (!im) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: tensor '%s' has external data", path, where);
        } else if (length != n * (int64_t)esize || offset < 0) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: tensor '%s': external length %lld for %lld elements of %zu bytes",
                                 path, where, (long long)length, (long long)n, esize);
        } else {
            uint8_t *raw = distq_malloc((size_t)length + 1);
            if (!raw) st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory for '%s'", path, where);
            else st = read_external(im, where, location, offset, length, raw);
            if (!st) convert_raw(type, raw, n, out);
            distq_free(raw);
        }
        have = n;
    } else if (t->has_raw_data) {
        if (t->raw_data.len != (size_t)n * esize) {
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: tensor '%s' has %zu raw bytes for %lld elements",
                                 path, where, t->raw_data.len, (long long)n);
        } else {
            convert_raw(type, t->raw_data.data, n, out);
        }
        have = n;
    } else if (*dt == DISTQ_DTYPE_F32 && t->n_float_data) {
        have = (int64_t)t->n_float_data;
        for (int64_t i = 0; i < n && i < have; i++) ((float *)out)[i] = t->float_data[i];
    } else if (*dt == DISTQ_DTYPE_F32 && t->n_double_data) {
        have = (int64_t)t->n_double_data;
        for (int64_t i = 0; i < n && i < have; i++) ((float *)out)[i] = (float)t->double_data[i];
    } else if (t->n_int64_data) {
        have = (int64_t)t->n_int64_data;
        for (int64_t i = 0; i < n && i < have; i++) ((int64_t *)out)[i] = t->int64_data[i];
    } else if (t->n_int32_data) {
        have = (int64_t)t->n_int32_data;
        for (int64_t i = 0; i < n && i < have; i++) ((int64_t *)out)[i] = t->int32_data[i];
    } else if (t->n_uint64_data) {
        have = (int64_t)t->n_uint64_data;
        for (int64_t i = 0; i < n && i < have; i++) ((int64_t *)out)[i] = (int64_t)t->uint64_data[i];
    } else {
        have = 0;
    }
    if (!st && have != n)
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: tensor '%s' holds %lld values for %lld elements",
                             path, where, (long long)have, (long long)n);
    if (st) {
        distq_free(out);
        return st;
    }
    *data = out;
    return DISTQ_OK;
}

distq_status distq_onnx_tensor_read(const char *path, distq_onnx_tensor *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf = NULL;
    size_t len = 0;
    ONNX_TRY(read_file(path, "the tensor file", &buf, &len));
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
    distq_free(buf);
    if (!t) return distq_error_set(DISTQ_ERR_FORMAT, "%s: not a serialized ONNX TensorProto", path);
    const char *name = t->name ? t->name : "";
    distq_status st = DISTQ_OK;
    if (!(out->name = distq_malloc(strlen(name) + 1))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    } else {
        strcpy(out->name, name);
        out->t.name = out->name;
        st = tensor_data(NULL, path, t, name, &out->t.dtype, &out->t.ndim, out->t.dims, &out->t.data);
    }
    onnx__tensor_proto__free_unpacked(t, NULL);
    if (st) distq_onnx_tensor_free(out);
    return st;
}

void distq_onnx_tensor_free(distq_onnx_tensor *t)
{
    if (!t) return;
    distq_free(t->name);
    distq_free(t->t.data);
    memset(t, 0, sizeof *t);
}

// --- constants and aliases ----------------------------------------------------------

static onnx_const *find_const(onnx_importer *im, const char *name)
{
    for (int i = im->n_consts - 1; i >= 0; i--)
        if (strcmp(im->consts[i].name, name) == 0) return &im->consts[i];
    return NULL;
}

/* The name `name` stands for after Identity / Dropout removal. */
static const onnx_alias *find_alias(const onnx_importer *im, const char *name)
{
    for (int i = im->n_aliases - 1; i >= 0; i--)
        if (strcmp(im->aliases[i].from, name) == 0) return &im->aliases[i];
    return NULL;
}

/* What name stands for (aliases are kept flat: `to` is never an alias). */
static const char *resolve(const onnx_importer *im, const char *name)
{
    const onnx_alias *a = find_alias(im, name);
    return a ? a->to : name;
}

static distq_status grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return DISTQ_OK;
    int ncap = *cap ? *cap * 2 : 64;
    while (ncap < need) ncap *= 2;
    void *p = distq_calloc((size_t)ncap * elem);
    if (!p) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    if (*arr) memcpy(p, *arr, (size_t)*cap * elem);
    distq_free(*arr);
    *arr = p;
    *cap = ncap;
    return DISTQ_OK;
}

distq_status onnx_const_add(onnx_importer *im, const char *name, distq_dtype dtype, int ndim,
                            const int64_t *dims, void *data)
{
    distq_status st = grow((void **)&im->consts, &im->cap_consts, im->n_consts + 1, sizeof *im->consts);
    onnx_const c = {0};
    if (!st) st = distq_graph_intern(im->g, name, &c.name);
    if (st) {
        distq_free(data);
        return st;
    }
    c.dtype = dtype;
    c.ndim = ndim;
    memcpy(c.dims, dims, (size_t)ndim * sizeof *dims);
    c.data = data;
    im->consts[im->n_consts++] = c;
    return DISTQ_OK;
}

distq_status onnx_const_from_tensor(onnx_importer *im, const Onnx__TensorProto *t, const char *name)
{
    distq_dtype dt;
    int ndim;
    int64_t dims[DISTQ_MAX_DIMS];
    void *data;
    ONNX_TRY(tensor_data(im, im->path, t, name, &dt, &ndim, dims, &data));
    return onnx_const_add(im, name, dt, ndim, dims, data);
}

distq_status onnx_alias_add_padded(onnx_importer *im, const char *from, const char *to, const int64_t pad[4])
{
    onnx_alias a = {0};
    const onnx_alias *via = find_alias(im, to);
    if (via) { /* copied before the array may move */
        to = via->to;
        memcpy(a.pad, via->pad, sizeof a.pad);
        a.pad_node = via->pad_node;
    }
    if (pad && (pad[0] || pad[1] || pad[2] || pad[3])) {
        if (a.pad_node)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "pads the output of Pad node '%s' (distq folds "
                                   "one Pad into the Conv or AveragePool after it)", a.pad_node);
        memcpy(a.pad, pad, sizeof a.pad);
        a.pad_node = im->node_name;
    }
    ONNX_TRY(grow((void **)&im->aliases, &im->cap_aliases, im->n_aliases + 1, sizeof *im->aliases));
    ONNX_TRY(distq_graph_intern(im->g, from, &a.from));
    ONNX_TRY(distq_graph_intern(im->g, to, &a.to));
    im->aliases[im->n_aliases++] = a;
    return DISTQ_OK;
}

distq_status onnx_alias_add(onnx_importer *im, const char *from, const char *to)
{
    return onnx_alias_add_padded(im, from, to, NULL);
}

// --- inputs of a node ---------------------------------------------------------------

int onnx_has_input(const Onnx__NodeProto *n, int k)
{
    return k < (int)n->n_input && n->input[k] && n->input[k][0];
}

onnx_const *onnx_input_const(onnx_importer *im, const Onnx__NodeProto *n, int k)
{
    if (!onnx_has_input(n, k)) return NULL;
    return find_const(im, resolve(im, n->input[k]));
}

distq_status onnx_need_const(onnx_importer *im, const Onnx__NodeProto *n, int k, const char *role,
                             onnx_const **out)
{
    *out = NULL;
    if (!onnx_has_input(n, k)) return onnx_node_error(im, DISTQ_ERR_FORMAT, "input %d (%s) is missing", k, role);
    if (!(*out = onnx_input_const(im, n, k)))
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED,
                               "input %d '%s' (%s) must be a constant (an initializer or a Constant "
                               "node's output); distq does not take it as an activation",
                               k, n->input[k], role);
    return DISTQ_OK;
}

/* 1 if name is the graph input or a node's output so far. */
static int is_value(const onnx_importer *im, const char *name)
{
    if (im->g->input_name && strcmp(im->g->input_name, name) == 0) return 1;
    for (int i = 0; i < im->g->n_nodes; i++)
        if (strcmp(im->g->nodes[i].output_name, name) == 0) return 1;
    return 0;
}

distq_status onnx_need_value(onnx_importer *im, const Onnx__NodeProto *n, int k, const char **out)
{
    int64_t pad[4];
    ONNX_TRY(onnx_need_padded_value(im, n, k, out, pad));
    const onnx_alias *a = find_alias(im, n->input[k]);
    if (a && a->pad_node) {
        *out = NULL;
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "input %d '%s' is the output of Pad node '%s', which "
                               "distq folds only into a Conv or AveragePool that reads it", k, n->input[k],
                               a->pad_node);
    }
    return DISTQ_OK;
}

distq_status onnx_need_padded_value(onnx_importer *im, const Onnx__NodeProto *n, int k, const char **out,
                                    int64_t pad[4])
{
    *out = NULL;
    memset(pad, 0, 4 * sizeof *pad);
    if (!onnx_has_input(n, k)) return onnx_node_error(im, DISTQ_ERR_FORMAT, "input %d is missing", k);
    const onnx_alias *a = find_alias(im, n->input[k]);
    if (a) memcpy(pad, a->pad, 4 * sizeof *pad);
    const char *name = resolve(im, n->input[k]);
    if (find_const(im, name))
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED,
                               "input %d '%s' is a constant where distq takes only an activation "
                               "(constant operands of this op are not supported)",
                               k, n->input[k]);
    if (!is_value(im, name))
        return onnx_node_error(im, DISTQ_ERR_FORMAT,
                               "input %d '%s' is produced by no node before it (or by an output "
                               "distq does not import)",
                               k, n->input[k]);
    *out = name;
    return DISTQ_OK;
}

distq_status onnx_value_dims(onnx_importer *im, const char *name, int *ndim, int64_t *dims)
{
    distq_graph *g = im->g;
    if (im->dirty) {
        /* finalize the graph so far, with this value as its output */
        /* no graph outputs are declared while nodes are imported */
        ONNX_TRY(distq_graph_set_output(g, name));
        distq_status st = distq_graph_finalize(g);
        g->n_outputs = 0;
        if (st) return st;
        im->dirty = 0;
    }
    if (g->n_nodes == 0 || !g->finalized) {
        if (g->input_name && strcmp(g->input_name, name) == 0) {
            *ndim = g->input_ndim;
            memcpy(dims, g->input_dims, sizeof g->input_dims);
            return DISTQ_OK;
        }
    }
    int v = distq_graph_find_value(g, name);
    if (v < 0) return onnx_node_error(im, DISTQ_ERR_FORMAT, "value '%s' has no shape", name);
    *ndim = g->values[v].ndim;
    memcpy(dims, g->values[v].dims, sizeof g->values[v].dims);
    return DISTQ_OK;
}

// --- parameters and nodes -------------------------------------------------------------

distq_status onnx_param_of(onnx_importer *im, onnx_const *c, const char **name)
{
    if (!c->param) {
        if (c->dtype != DISTQ_DTYPE_F32)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "constant '%s' is an integer tensor, "
                                   "where a float weight is expected", c->name);
        ONNX_TRY(distq_graph_add_param(im->g, c->name, DISTQ_DTYPE_F32, c->ndim, c->dims,
                                              c->data, NULL));
        c->param = c->name;
        /* one copy of a weight, not two: the constant now reads the parameter's */
        const distq_tensor *p = distq_graph_find_param(im->g, c->name);
        if (p && p->data) {
            distq_free(c->data);
            c->data = p->data;
            c->borrowed = 1;
        }
    }
    *name = c->param;
    return DISTQ_OK;
}

distq_status onnx_param_new(onnx_importer *im, const char *base, const char *suffix, int ndim,
                            const int64_t *dims, const float *data, const char **name)
{
    const char *full;
    ONNX_TRY(distq_graph_intern_suffixed(im->g, base, suffix, &full));
    for (int i = 2; distq_graph_find_param(im->g, full); i++) { /* the same base changed twice */
        char s[64];
        snprintf(s, sizeof s, "%s.%d", suffix, i);
        ONNX_TRY(distq_graph_intern_suffixed(im->g, base, s, &full));
    }
    ONNX_TRY(distq_graph_add_param(im->g, full, DISTQ_DTYPE_F32, ndim, dims, data, NULL));
    *name = full;
    return DISTQ_OK;
}

distq_status onnx_emit_as(onnx_importer *im, distq_op op, const distq_attrs *a, int n_inputs,
                          const char *const *inputs, const char *const *params, const char *suffix,
                          const char *out)
{
    if (is_value(im, out) || find_const(im, out))
        return onnx_node_error(im, DISTQ_ERR_FORMAT, "output '%s' is written twice", out);
    size_t len = strlen(im->node_name) + strlen(suffix) + 1;
    char *name = distq_malloc(len);
    if (!name) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory importing ONNX");
    snprintf(name, len, "%s%s", im->node_name, suffix);
    distq_status st = distq_graph_add_node(im->g, name, op, a, n_inputs, inputs, params, out);
    distq_free(name);
    if (st) return onnx_node_error(im, st, "%s", distq_error_message());
    im->dirty = 1;
    return DISTQ_OK;
}

distq_status onnx_emit(onnx_importer *im, distq_op op, const distq_attrs *a, int n_inputs,
                       const char *const *inputs, const char *const *params)
{
    const Onnx__NodeProto *n = im->node;
    if (n->n_output < 1 || !n->output[0][0]) return onnx_node_error(im, DISTQ_ERR_FORMAT, "has no output");
    return onnx_emit_as(im, op, a, n_inputs, inputs, params, "", n->output[0]);
}

// --- attributes ---------------------------------------------------------------------

const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
    return NULL;
}

static distq_status attr_type_error(const onnx_importer *im, const char *name, const char *want)
{
    return onnx_node_error(im, DISTQ_ERR_FORMAT, "attribute '%s' is not %s", name, want);
}

distq_status onnx_attr_int(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                           int64_t def, int64_t *out)
{
    const Onnx__AttributeProto *a = onnx_attr(n, name);
    *out = def;
    if (!a) return DISTQ_OK;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) return attr_type_error(im, name, "an int");
    *out = a->i;
    return DISTQ_OK;
}

distq_status onnx_attr_float(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                             float def, float *out)
{
    const Onnx__AttributeProto *a = onnx_attr(n, name);
    *out = def;
    if (!a) return DISTQ_OK;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) return attr_type_error(im, name, "a float");
    *out = a->f;
    return DISTQ_OK;
}

distq_status onnx_attr_ints(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                            int max, int *count, int64_t *out)
{
    const Onnx__AttributeProto *a = onnx_attr(n, name);
    *count = 0;
    if (!a) return DISTQ_OK;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) return attr_type_error(im, name, "a list of ints");
    if (a->n_ints > (size_t)max)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute '%s' has %zu values, at most %d "
                               "supported", name, a->n_ints, max);
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    *count = (int)a->n_ints;
    return DISTQ_OK;
}

distq_status onnx_attr_string(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                              const char *def, char *buf, size_t len)
{
    const Onnx__AttributeProto *a = onnx_attr(n, name);
    snprintf(buf, len, "%s", def);
    if (!a) return DISTQ_OK;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) return attr_type_error(im, name, "a string");
    snprintf(buf, len, "%.*s", (int)a->s.len, (const char *)a->s.data);
    return DISTQ_OK;
}

/* Refuses any attribute of n its row does not list. */
static distq_status check_attrs(const onnx_importer *im, const Onnx__NodeProto *n, const onnx_op_row *row)
{
    for (size_t i = 0; i < n->n_attribute; i++) {
        const char *name = n->attribute[i]->name ? n->attribute[i]->name : "";
        size_t len = strlen(name);
        const char *s = row->attrs;
        int known = 0;
        while (*s && !known) {
            size_t w = strcspn(s, " ");
            known = w == len && strncmp(s, name, len) == 0;
            s += w;
            while (*s == ' ') s++;
        }
        if (!known)
            return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "attribute '%s' is not supported", name);
    }
    return DISTQ_OK;
}

// --- the graph ------------------------------------------------------------------------

/* Declares one ONNX graph output, which must be computed from the input. */
static distq_status graph_output(onnx_importer *im, const char *name)
{
    if (!name || !name[0]) return distq_error_set(DISTQ_ERR_FORMAT, "%s: a graph output has no name", im->path);
    const onnx_alias *padded = find_alias(im, name);
    if (padded && padded->pad_node)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: the graph output '%s' is Pad node '%s''s output "
                               "(distq folds a Pad only into a Conv or AveragePool after it)", im->path, name,
                               padded->pad_node);
    const char *out = resolve(im, name);
    if (!is_value(im, out) || strcmp(out, im->g->input_name) == 0)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "%s: the graph output '%s' is %s, not computed from the input", im->path, name,
                               find_const(im, out) ? "a constant" : "not an op's output");
    distq_status st = distq_graph_add_output(im->g, out);
    return st ? distq_error_set(st, "%s: %s", im->path, distq_error_message()) : DISTQ_OK;
}

static distq_status graph_input(onnx_importer *im, const Onnx__ValueInfoProto *in)
{
    const char *name = in->name;
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: graph input '%s' is not a tensor", im->path, name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "%s: graph input '%s' has ONNX element type %d; distq takes float "
                               "input only", im->path, name, (int)tt->elem_type);
    /* dim 0 is the batch, so a 1-D input would be a batch of scalars, which
     * distq's values (batch, per-image dims...) cannot hold */
    if (!tt->shape || tt->shape->n_dim < 2 || tt->shape->n_dim > DISTQ_MAX_DIMS)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "%s: graph input '%s' has rank %zu; distq takes rank 2 to %d (dim 0 "
                               "is the batch)", im->path, name, tt->shape ? tt->shape->n_dim : 0,
                               DISTQ_MAX_DIMS);
    int64_t dims[DISTQ_MAX_DIMS];
    int ndim = (int)tt->shape->n_dim;
    im->batch = -1;
    for (int i = 0; i < ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        int fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0;
        if (i == 0) {
            if (fixed) im->batch = d->dim_value;
            dims[0] = 1; /* the batch: any size at run time */
        } else if (!fixed) {
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "%s: graph input '%s' dim %d is symbolic ('%s'); only the batch "
                                   "(dim 0) may be (export with a fixed input size)",
                                   im->path, name, i,
                                   d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                                       ? d->dim_param : "");
        } else {
            dims[i] = d->dim_value;
        }
    }
    return distq_graph_set_input(im->g, name, ndim, dims);
}

/* The tensor the k-th graph input is bound to, NULL if none. */
static const distq_tensor *bound(const distq_onnx_options *opt, int k)
{
    return opt && k < opt->n_inputs ? opt->input_values[k] : NULL;
}

static distq_status import_node(onnx_importer *im, const Onnx__GraphProto *gp, int index)
{
    const Onnx__NodeProto *n = gp->node[index];
    if (im->fusion_of[index] == ONNX_ABSORBED) return DISTQ_OK; /* emitted with its pattern's last node */
    char fallback[64];
    im->node = n;
    im->node_name = n->name && n->name[0] ? n->name : NULL;
    if (!im->node_name || distq_graph_find_node(im->g, im->node_name) >= 0) {
        snprintf(fallback, sizeof fallback, "%s_%d", n->op_type ? n->op_type : "node", index);
        im->node_name = fallback;
    }
    if (!n->op_type) return onnx_node_error(im, DISTQ_ERR_FORMAT, "has no op_type");
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED, "domain '%s' is not supported (only ONNX's "
                               "default domain)", n->domain);
    const onnx_op_row *row = onnx_op_find(n->op_type);
    if (!row)
        return onnx_node_error(im, DISTQ_ERR_UNSUPPORTED,
                               "op type %s is not supported (docs/onnx.md lists the ONNX ops distq imports)", n->op_type);
    ONNX_TRY(check_attrs(im, n, row));
    const char *name;
    ONNX_TRY(distq_graph_intern(im->g, im->node_name, &name));
    im->node_name = name;
    if (im->fusion_of[index] >= 0) return onnx_emit_fusion(im, gp, &im->fusions[im->fusion_of[index]]);
    onnx_op_fn fold = onnx_fold_find(im, n); /* every input a constant: computed here */
    return fold ? fold(im, n) : row->translate(im, n);
}

/* The gate of x * gate(x) as one op: torch exports hardswish below opset 14
 * as x * HardSigmoid(x; 1/6, 1/2) and SiLU (no ONNX op up to 17) as
 * x * Sigmoid(x); as hardswish / silu nodes oneDNN fuses them into the conv
 * before them (the same values up to rounding). DISTQ_OP_COUNT if none. */
static distq_op gated_op(const distq_node *gate)
{
    if (gate->op == DISTQ_OP_SIGMOID) return DISTQ_OP_SILU;
    if (gate->op == DISTQ_OP_HARDSIGMOID && fabsf(gate->attr.alpha - 1.0f / 6.0f) <= 1e-7f &&
        gate->attr.beta == 0.5f)
        return DISTQ_OP_HARDSWISH;
    return DISTQ_OP_COUNT;
}

/* Rewrites every x * gate(x) whose gate feeds only that mul (gated_op).
 * Needs a finalized graph; leaves it finalized. */
static distq_status fuse_gates(distq_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        distq_node *mul = &g->nodes[i];
        if (mul->op != DISTQ_OP_MUL || mul->n_inputs != 2) continue;
        for (int k = 0; k < 2; k++) {
            int h = g->values[mul->inputs[k]].producer; /* -1: the graph input */
            if (h < 0) continue;
            const distq_node *gate = &g->nodes[h];
            distq_op op = gated_op(gate);
            if (op == DISTQ_OP_COUNT || gate->inputs[0] != mul->inputs[1 - k] ||
                g->values[gate->output].n_consumers != 1)
                continue;
            mul->op = op;
            mul->attr = distq_attrs_default(op);
            mul->input_names[0] = mul->input_names[1 - k];
            mul->n_inputs = 1;
            distq_graph_remove_node(g, h);
            ONNX_TRY(distq_graph_finalize(g));
            i = -1; /* indices moved */
            break;
        }
    }
    return DISTQ_OK;
}

/* Folds an add of a constant row after a bias-less linear (MatMul + Add, as
 * torch exports nn.Linear on a rank > 2 input) into the linear's bias, where
 * the linear feeds nothing else. Needs a finalized graph; leaves it so. */
static distq_status fold_linear_bias(distq_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        distq_node *add = &g->nodes[i];
        if (add->op != DISTQ_OP_ADD || add->n_inputs != 1 || add->params[DISTQ_PARAM_WEIGHT] < 0) continue;
        int h = g->values[add->inputs[0]].producer;
        if (h < 0) continue;
        distq_node *lin = &g->nodes[h];
        if (lin->op != DISTQ_OP_LINEAR || lin->params[DISTQ_PARAM_BIAS] >= 0 ||
            g->values[lin->output].n_consumers != 1)
            continue;
        const distq_tensor *c = &g->params[add->params[DISTQ_PARAM_WEIGHT]];
        int64_t OUT = g->values[lin->output].dims[g->values[lin->output].ndim - 1];
        if (distq_tensor_numel(c) != OUT || c->dims[c->ndim - 1] != OUT) continue; /* one value per output */
        const char *name;
        ONNX_TRY(distq_graph_intern_suffixed(g, c->name, ".bias", &name));
        if (distq_graph_find_param(g, name)) continue;
        ONNX_TRY(distq_graph_add_param(g, name, DISTQ_DTYPE_F32, 1, &OUT, c->data, NULL));
        lin->param_names[DISTQ_PARAM_BIAS] = name;
        lin->output_name = g->nodes[i].output_name;
        distq_graph_remove_node(g, i);
        ONNX_TRY(distq_graph_finalize(g));
        i = -1; /* indices moved */
    }
    return DISTQ_OK;
}

/* Frees the values of an unpacked tensor once converted, so the parse and
 * the converted weights are not both held whole (protobuf-c allocates each
 * field with malloc and skips NULL ones when freeing the message). */
static void release_tensor_data(Onnx__TensorProto *t)
{
    free(t->raw_data.data);
    t->raw_data.data = NULL;
    t->raw_data.len = 0;
    free(t->float_data);
    t->float_data = NULL;
    t->n_float_data = 0;
    free(t->double_data);
    t->double_data = NULL;
    t->n_double_data = 0;
    free(t->int64_data);
    t->int64_data = NULL;
    t->n_int64_data = 0;
    free(t->int32_data);
    t->int32_data = NULL;
    t->n_int32_data = 0;
}

static distq_status import_graph(onnx_importer *im, const Onnx__ModelProto *m,
                                 const distq_onnx_options *opt)
{
    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return distq_error_set(DISTQ_ERR_FORMAT, "%s: the model has no graph", im->path);
    im->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if ((!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0) && o->has_version)
            im->opset = o->version;
    }
    if (im->opset < 0)
        return distq_error_set(DISTQ_ERR_FORMAT, "%s: the model imports no opset of ONNX's default domain",
                               im->path);
    /* Before 7, binary ops broadcast only under a 'broadcast' attribute and
     * several ops carry 'consumed_inputs' / 'is_test': the attribute check
     * refuses those, so older opsets import where their meaning is today's.
     * 18 moved Reduce*'s axes to an input, among others. */
    if (im->opset < 1 || im->opset > 17)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: opset %lld is not supported (1 to 17 are)",
                               im->path, (long long)im->opset);
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t->name || !t->name[0])
            return distq_error_set(DISTQ_ERR_FORMAT, "%s: initializer %zu has no name", im->path, i);
        ONNX_TRY(onnx_const_from_tensor(im, t, t->name));
        release_tensor_data(gp->initializer[i]);
    }
    if (gp->n_sparse_initializer)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: sparse initializers are not supported", im->path);
    const Onnx__ValueInfoProto *input = NULL;
    int k = 0;
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *name = gp->input[i]->name;
        if (!name || find_const(im, name)) continue; /* IR < 4 lists initializers as inputs */
        const distq_tensor *t = bound(opt, k++);
        if (t) {
            size_t nbytes = distq_tensor_nbytes(t);
            void *data = distq_malloc(nbytes ? nbytes : 1);
            if (!data) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory binding '%s'", name);
            memcpy(data, t->data, nbytes);
            ONNX_TRY(onnx_const_add(im, name, t->dtype, t->ndim, t->dims, data));
            continue;
        }
        if (input)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "%s: the graph has more than one input ('%s', '%s'); distq takes "
                                   "one (bind the others to constants)",
                                   im->path, input->name, name);
        input = gp->input[i];
    }
    if (!input) return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: the graph has no activation input", im->path);
    ONNX_TRY(graph_input(im, input));
    ONNX_TRY(onnx_find_fusions(im, gp));
    for (size_t i = 0; i < gp->n_node; i++) ONNX_TRY(import_node(im, gp, (int)i));
    if (gp->n_output < 1) return distq_error_set(DISTQ_ERR_FORMAT, "%s: the graph has no output", im->path);
    im->g->n_outputs = 0;
    for (size_t o = 0; o < gp->n_output; o++) ONNX_TRY(graph_output(im, gp->output[o]->name));
    distq_status st = distq_graph_finalize(im->g);
    if (!st) st = fuse_gates(im->g);
    if (!st) st = fold_linear_bias(im->g);
    if (st) return distq_error_set(st, "%s: %s", im->path, distq_error_message());
    distq_graph_remove_unused_params(im->g, NULL);
    st = distq_graph_finalize(im->g);
    if (st) return distq_error_set(st, "%s: %s", im->path, distq_error_message());
    return DISTQ_OK;
}

static distq_status unpack_model(const char *path, Onnx__ModelProto **m);



distq_status distq_onnx_import(const char *path, const distq_onnx_options *opt, distq_graph **out)
{
    if (!path || !out) return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_onnx_import: NULL argument");
    *out = NULL;
    Onnx__ModelProto *m;
    ONNX_TRY(unpack_model(path, &m));

    onnx_importer im = {.path = path, .gp = m->graph, .training_graph = opt && opt->training_graph};
    char *dir = NULL;
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    distq_status st = DISTQ_OK;
    if (!(dir = distq_malloc(dlen + 1))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    } else {
        memcpy(dir, slash ? path : ".", dlen);
        dir[dlen] = '\0';
        im.dir = dir;
        st = distq_graph_create(&im.g);
    }
    if (!st) st = import_graph(&im, m, opt);
    for (int i = 0; i < im.n_consts; i++)
        if (!im.consts[i].borrowed) distq_free(im.consts[i].data);
    distq_free(im.consts);
    distq_free(im.aliases);
    distq_free(im.fusion_of);
    distq_free(im.fusions);
    distq_free(dir);
    onnx__model_proto__free_unpacked(m, NULL);
    if (st) {
        distq_graph_destroy(im.g);
        return st;
    }
    *out = im.g;
    return DISTQ_OK;
}

int onnx_value_is_read(const onnx_importer *im, const char *name)
{
    const Onnx__GraphProto *gp = im->gp;
    for (size_t i = 0; gp && i < gp->n_node; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++)
            if (strcmp(gp->node[i]->input[k], name) == 0) return 1;
    for (size_t i = 0; gp && i < gp->n_output; i++)
        if (gp->output[i]->name && strcmp(gp->output[i]->name, name) == 0) return 1;
    return 0;
}

static distq_status unpack_model(const char *path, Onnx__ModelProto **m)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ONNX_TRY(read_file(path, "the ONNX model", &buf, &len));
    *m = onnx__model_proto__unpack(NULL, len, buf);
    distq_free(buf); /* protobuf-c copied what it needs */
    if (!*m) return distq_error_set(DISTQ_ERR_FORMAT, "%s: not an ONNX model (protobuf parse failed)", path);
    return DISTQ_OK;
}

distq_status distq_onnx_claims(const char *path, int *claimed, char *missing, size_t len)
{
    Onnx__ModelProto *m;
    *claimed = 0;
    ONNX_TRY(unpack_model(path, &m));
    *claimed = 1;
    for (size_t i = 0; m->graph && i < m->graph->n_node && *claimed; i++) {
        const char *op = m->graph->node[i]->op_type ? m->graph->node[i]->op_type : "";
        if (!onnx_op_find(op)) {
            *claimed = 0;
            snprintf(missing, len, "%s", op);
        }
    }
    onnx__model_proto__free_unpacked(m, NULL);
    return DISTQ_OK;
}
