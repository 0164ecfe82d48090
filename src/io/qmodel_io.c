/*
 * Quantized model files (layout in docs/file-formats.md, "Quantized model
 * files"):
 *
 *     /                    format = "distq-qmodel", version = 1
 *     /graph, /tensors     the BN-folded fp32 graph, exactly as in distq-model
 *     /quant               the recipe (attributes), input, output, node_order,
 *                          value_order
 *     /quant/values/<v>    dtype, shape, scale and zero_point (u8)
 *     /quant/nodes/<n>     op, src, dst, sum, relu, conv/pool attributes;
 *                          datasets weight (s8), weight_scale, bias (f32)
 *     /quant/observers/<k> kind, values, min, max, scale, zero_point
 *                          [, search_min, search_max, dataset histogram]
 *
 * Everything distq_qmodel_load reads it validates before an executor can see
 * it: the int8 executors trust the qgraph (shapes, weights against values,
 * execution order), so a malformed file must fail here, naming the file and
 * the object. Observer states are written for inspection and not read back.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/io.h"
#include "distq/quant.h"
#include "io/h5_util_impl.h"
#include "io/model_io_impl.h"

#define RECIPE_TEXT "x86 (X86InductorQuantizer default static config)"

/* The recipe's fixed choices, written as /quant attributes and checked on
 * load (a file describing another recipe is not run as if it were this one). */
typedef struct {
    const char *name, *value;
} str_attr;

static const str_attr recipe_strs[] = {
    {"activation_dtype", "u8"}, {"activation_qscheme", "per_tensor_affine"},
    {"weight_dtype", "s8"},     {"weight_qscheme", "per_channel_symmetric"},
    {"bias_dtype", "f32"},
};
#define N_RECIPE_STRS ((int)(sizeof recipe_strs / sizeof recipe_strs[0]))

typedef struct {
    const char *name;
    int n; /* 0 = scalar */
    int64_t v[2];
} i64_attr;

static const i64_attr recipe_i64s[] = {
    {"weight_range", 2, {-128, 127}},
    {"weight_ch_axis", 0, {0, 0}},
};
#define N_RECIPE_I64S ((int)(sizeof recipe_i64s / sizeof recipe_i64s[0]))

/* The fp32 op whose attributes a qop stores (docs: "as for fp32 nodes"), or
 * DISTQ_OP_COUNT for quantize/dequantize, whose attributes are all zero. */
static const distq_op attr_ops[DISTQ_QOP_COUNT] = {
    [DISTQ_QOP_QUANTIZE] = DISTQ_OP_COUNT,  [DISTQ_QOP_CONV] = DISTQ_OP_CONV2D,
    [DISTQ_QOP_LINEAR] = DISTQ_OP_LINEAR,   [DISTQ_QOP_MAX_POOL] = DISTQ_OP_MAX_POOL2D,
    [DISTQ_QOP_AVG_POOL] = DISTQ_OP_ADAPTIVE_AVG_POOL2D, [DISTQ_QOP_FLATTEN] = DISTQ_OP_FLATTEN,
    [DISTQ_QOP_DEQUANTIZE] = DISTQ_OP_COUNT,
};
_Static_assert(DISTQ_QOP_COUNT == 7, "a new qop needs its row in attr_ops");

static distq_op attr_op_of(distq_qop op)
{
    return ((int)op >= 0 && op < DISTQ_QOP_COUNT) ? attr_ops[op] : DISTQ_OP_COUNT;
}

static int has_weights(distq_qop op) { return op == DISTQ_QOP_CONV || op == DISTQ_QOP_LINEAR; }

/* Bounds on what a file may declare, so that no size computation overflows. */
#define MAX_ELEMS ((int64_t)1 << 31)  /* elements of one value, per image */
#define MAX_WINDOW ((int64_t)1 << 16) /* kernel, stride, padding, dilation */

static const char *dtype_text(distq_dtype dt) { return dt == DISTQ_DTYPE_U8 ? "u8" : "f32"; }

static distq_status nomem(const char *path)
{
    return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", path);
}

// --- save -------------------------------------------------------------------------

/* The observer whose qparams value vi of q carries (via the prepared graph's
 * value of the same name; the quantize node's output via the graph input), or -1. */
static int observer_of_value(const distq_prepared *p, const distq_qgraph *q, int vi)
{
    int v = distq_graph_find_value(p->g, q->values[vi].name);
    for (int i = 0; v < 0 && i < q->n_nodes; i++)
        if (q->nodes[i].op == DISTQ_QOP_QUANTIZE && q->nodes[i].dst == vi)
            v = distq_graph_find_value(p->g, q->values[q->nodes[i].src].name);
    return v >= 0 ? p->value_observer[v] : -1;
}

static distq_status check_storable(const char *what, const char *name, const char *path)
{
    if (distq_h5_name_ok(name)) return DISTQ_OK;
    return distq_error_set(DISTQ_ERR_INVALID_ARG,
                           "%s: %s name '%s' cannot be stored (HDF5 names must be non-empty and "
                           "contain no '/')",
                           path, what, name);
}

static distq_status write_value(hid_t values, hid_t gcpl, const distq_prepared *p,
                                const distq_qgraph *q, int vi, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    const distq_qvalue *v = &q->values[vi];
    char where[DISTQ_H5_WHERE_MAX];
    snprintf(where, sizeof where, "%s: /quant/values/%s", path, v->name);
    DISTQ_CHECK(check_storable("int8 graph value", v->name, path));
    if (v->dtype != DISTQ_DTYPE_U8 && v->dtype != DISTQ_DTYPE_F32) {
        st =
            distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: dtype %s (int8 graph values are u8 or f32)",
                            where, distq_dtype_name(v->dtype));
        goto cleanup;
    }
    DISTQ_H5_CHECK(grp = H5Gcreate2(values, v->name, H5P_DEFAULT, gcpl, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group", where);
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "dtype", dtype_text(v->dtype), where));
    DISTQ_CHECK(distq_h5_attr_write_i64(grp, "shape", v->ndim, v->dims, where));
    if (v->dtype == DISTQ_DTYPE_U8) {
        int64_t zp = v->zero_point, obs = observer_of_value(p, q, vi), qmax = v->quant_max;
        DISTQ_CHECK(distq_h5_attr_write_f32(grp, "scale", v->scale, where));
        DISTQ_CHECK(distq_h5_attr_write_i64(grp, "zero_point", 0, &zp, where));
        DISTQ_CHECK(distq_h5_attr_write_i64(grp, "quant_max", 0, &qmax, where));
        DISTQ_CHECK(
            distq_h5_attr_write_str(grp, "meaning", "real = scale * (q - zero_point)", where));
        if (obs >= 0) DISTQ_CHECK(distq_h5_attr_write_i64(grp, "observer", 0, &obs, where));
    }
cleanup:
    distq_h5_close(&grp);
    return st;
}

static distq_status write_qnode(hid_t nodes, hid_t gcpl, const distq_qgraph *q, int ni,
                                const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    const distq_qnode *n = &q->nodes[ni];
    char where[DISTQ_H5_WHERE_MAX];
    int64_t relu = n->relu;
    snprintf(where, sizeof where, "%s: /quant/nodes/%s", path, n->name);
    DISTQ_CHECK(check_storable("int8 graph node", n->name, path));
    if ((int)n->op < 0 || n->op >= DISTQ_QOP_COUNT || n->src < 0 || n->src >= q->n_values ||
        n->dst < 0 || n->dst >= q->n_values || n->sum_src >= q->n_values ||
        (has_weights(n->op) && (!n->weight || !n->weight_scale))) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: not a valid int8 graph node", where);
        goto cleanup;
    }
    DISTQ_H5_CHECK(grp = H5Gcreate2(nodes, n->name, H5P_DEFAULT, gcpl, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group", where);
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "op", distq_qop_name(n->op), where));
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "src", q->values[n->src].name, where));
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "dst", q->values[n->dst].name, where));
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "sum",
                                        n->sum_src >= 0 ? q->values[n->sum_src].name : "", where));
    DISTQ_CHECK(distq_h5_attr_write_i64(grp, "relu", 0, &relu, where));
    if (attr_op_of(n->op) != DISTQ_OP_COUNT)
        DISTQ_CHECK(distq_h5_write_op_attrs(grp, attr_op_of(n->op), &n->attr, where));
    if (!has_weights(n->op)) goto cleanup;

    int64_t oc = n->wdims[0];
    DISTQ_CHECK(distq_h5_write_array(grp, "weight", H5T_STD_I8LE, H5T_NATIVE_INT8, n->wndim,
                                     n->wdims, n->weight, where));
    DISTQ_H5_CHECK(dset = H5Dopen2(grp, "weight", H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot reopen dataset 'weight'", where);
    DISTQ_CHECK(distq_h5_attr_write_str(
        dset, "meaning",
        "s8, per output channel symmetric (zero point 0): real[oc, ...] = weight_scale[oc] * "
        "weight[oc, ...]",
        where));
    distq_h5_close(&dset);
    DISTQ_CHECK(distq_h5_write_array(grp, "weight_scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &oc,
                                     n->weight_scale, where));
    DISTQ_H5_CHECK(dset = H5Dopen2(grp, "weight_scale", H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot reopen dataset 'weight_scale'", where);
    DISTQ_CHECK(
        distq_h5_attr_write_str(dset, "meaning", "real = weight_scale[oc] * weight", where));
    distq_h5_close(&dset);
    if (n->bias) {
        DISTQ_CHECK(distq_h5_write_array(grp, "bias", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &oc,
                                         n->bias, where));
        DISTQ_H5_CHECK(dset = H5Dopen2(grp, "bias", H5P_DEFAULT), DISTQ_ERR_IO,
                       "%s: cannot reopen dataset 'bias'", where);
        DISTQ_CHECK(distq_h5_attr_write_str(
            dset, "meaning", "f32, real domain: added to src.scale * weight_scale[oc] * acc",
            where));
    }
cleanup:
    distq_h5_close(&dset);
    distq_h5_close(&grp);
    return st;
}

static distq_status write_observer(hid_t observers, hid_t gcpl, const distq_prepared *p,
                                   int reduce_range, int k, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    const distq_observer *o = &p->observers[k];
    char where[DISTQ_H5_WHERE_MAX], name[32];
    const char *vals[DISTQ_OBSERVER_MAX_VALUES];
    distq_qparams qp;
    float lo = 0, hi = 0, mn, mx;
    int is_hist = o->kind == DISTQ_OBSERVER_HISTOGRAM;
    snprintf(name, sizeof name, "%d", k);
    snprintf(where, sizeof where, "%s: /quant/observers/%s", path, name);
    if (o->n_values < 1 || o->n_values > DISTQ_OBSERVER_MAX_VALUES || (is_hist && !o->hist)) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: observer %d is not a valid observer", path,
                             k);
        goto cleanup;
    }
    for (int i = 0; i < o->n_values; i++) vals[i] = p->g->values[o->values[i]].name;
    /* The qparams convert chose (the same calls as convert.c). */
    st = distq_observer_qparams(o, reduce_range ? 127 : 255, &qp, &lo, &hi);
    mn = is_hist ? o->hist->min : o->mm.min;
    mx = is_hist ? o->hist->max : o->mm.max;
    if (st != DISTQ_OK) {
        st =
            distq_error_set(st, "%s (observer of '%s'): %s", where, vals[0], distq_error_message());
        goto cleanup;
    }
    DISTQ_H5_CHECK(grp = H5Gcreate2(observers, name, H5P_DEFAULT, gcpl, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group", where);
    int64_t zp = qp.zero_point;
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "kind", distq_observer_kind_name(o->kind), where));
    DISTQ_CHECK(distq_h5_attr_write_strs(grp, "values", o->n_values, vals, where));
    DISTQ_CHECK(distq_h5_attr_write_f32(grp, "min", mn, where));
    DISTQ_CHECK(distq_h5_attr_write_f32(grp, "max", mx, where));
    DISTQ_CHECK(distq_h5_attr_write_f32(grp, "scale", qp.scale, where));
    DISTQ_CHECK(distq_h5_attr_write_i64(grp, "zero_point", 0, &zp, where));
    if (!is_hist) goto cleanup;
    DISTQ_CHECK(distq_h5_attr_write_f32(grp, "search_min", lo, where));
    DISTQ_CHECK(distq_h5_attr_write_f32(grp, "search_max", hi, where));
    int64_t bins = DISTQ_HIST_BINS;
    float range[2] = {mn, mx};
    DISTQ_CHECK(distq_h5_write_array(grp, "histogram", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &bins,
                                     o->hist->hist, where));
    DISTQ_H5_CHECK(dset = H5Dopen2(grp, "histogram", H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot reopen dataset 'histogram'", where);
    DISTQ_CHECK(distq_h5_attr_write_f32s(dset, "range", 2, range, where));
    DISTQ_CHECK(distq_h5_attr_write_str(
        dset, "meaning",
        "counts (fractional after a range grew and the histogram was resampled) of 2048 "
        "equal-width bins over range = [min, max]",
        where));
cleanup:
    distq_h5_close(&dset);
    distq_h5_close(&grp);
    return st;
}

static distq_status write_quant(hid_t fid, const distq_prepared *p, const distq_qgraph *q,
                                const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t gcpl = H5I_INVALID_HID, quant = H5I_INVALID_HID, sub = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    const char **names = NULL;
    int n_names = q->n_values > q->n_nodes ? q->n_values : q->n_nodes;
    snprintf(where, sizeof where, "%s: /quant", path);
    names = distq_malloc((size_t)(n_names > 0 ? n_names : 1) * sizeof *names);
    if (!names) {
        st = nomem(path);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_compact_gcpl(&gcpl, where));
    DISTQ_H5_CHECK(quant = H5Gcreate2(fid, "quant", H5P_DEFAULT, gcpl, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group", where);
    DISTQ_CHECK(distq_h5_attr_write_str(quant, "recipe", RECIPE_TEXT, where));
    DISTQ_CHECK(
        distq_h5_attr_write_str(quant, "observer", distq_observer_kind_name(q->kind), where));
    for (int i = 0; i < N_RECIPE_STRS; i++)
        DISTQ_CHECK(
            distq_h5_attr_write_str(quant, recipe_strs[i].name, recipe_strs[i].value, where));
    for (int i = 0; i < N_RECIPE_I64S; i++)
        DISTQ_CHECK(distq_h5_attr_write_i64(quant, recipe_i64s[i].name, recipe_i64s[i].n,
                                            recipe_i64s[i].v, where));
    const int64_t act_range[2] = {0, q->reduce_range ? 127 : 255}, reduce = q->reduce_range;
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "activation_range", 2, act_range, where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "reduce_range", 0, &reduce, where));
    const int64_t hist[3] = {DISTQ_HIST_BINS, DISTQ_HIST_UPSAMPLE, DISTQ_HIST_DST_BINS};
    DISTQ_CHECK(distq_h5_attr_write_f32(quant, "eps", DISTQ_QEPS, where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "hist_bins", 0, &hist[0], where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "hist_upsample", 0, &hist[1], where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "hist_dst_bins", 0, &hist[2], where));
    DISTQ_CHECK(distq_h5_attr_write_str(quant, "input", q->values[q->input].name, where));
    DISTQ_CHECK(distq_h5_attr_write_str(quant, "output", q->values[q->output].name, where));
    for (int i = 0; i < q->n_nodes; i++) names[i] = q->nodes[i].name;
    DISTQ_CHECK(distq_h5_attr_write_strs(quant, "node_order", q->n_nodes, names, where));
    for (int i = 0; i < q->n_values; i++) names[i] = q->values[i].name;
    DISTQ_CHECK(distq_h5_attr_write_strs(quant, "value_order", q->n_values, names, where));

    DISTQ_H5_CHECK(sub = H5Gcreate2(quant, "values", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s/values: cannot create group", where);
    for (int i = 0; i < q->n_values; i++) DISTQ_CHECK(write_value(sub, gcpl, p, q, i, path));
    distq_h5_close(&sub);
    DISTQ_H5_CHECK(sub = H5Gcreate2(quant, "nodes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s/nodes: cannot create group", where);
    for (int i = 0; i < q->n_nodes; i++) DISTQ_CHECK(write_qnode(sub, gcpl, q, i, path));
    distq_h5_close(&sub);
    DISTQ_H5_CHECK(sub = H5Gcreate2(quant, "observers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s/observers: cannot create group", where);
    for (int k = 0; k < p->n_observers; k++) DISTQ_CHECK(write_observer(sub, gcpl, p, q->reduce_range, k, path));
cleanup:
    distq_h5_close(&sub);
    distq_h5_close(&quant);
    distq_h5_close(&gcpl);
    distq_free(names);
    return st;
}

distq_status distq_qmodel_save(const distq_prepared *p, const distq_qgraph *q, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "";
    if (!p || !q || !path || !p->g)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_qmodel_save: NULL argument");
    if (q->input < 0 || q->input >= q->n_values || q->output < 0 || q->output >= q->n_values ||
        q->n_nodes < 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: the int8 graph has no nodes or no input/output value", path);
    if (!p->g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: the prepared graph is not finalized",
                               path);
    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_QMODEL_FORMAT, DISTQ_QMODEL_VERSION, tmp, &fid));
    DISTQ_CHECK(distq_h5_write_graph(fid, p->g, path));
    DISTQ_CHECK(write_quant(fid, p, q, path));
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

// --- load: reading ----------------------------------------------------------------

/* Number of values of attribute name on loc (missing: DISTQ_ERR_FORMAT). */
static distq_status attr_count(hid_t loc, const char *name, int *n, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hssize_t np;
    htri_t has;
    DISTQ_H5_CHECK(has = H5Aexists(loc, name), DISTQ_ERR_FORMAT,
                   "%s: cannot look up attribute '%s'", where, name);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing attribute '%s'", where, name);
        goto cleanup;
    }
    DISTQ_H5_CHECK(attr = H5Aopen(loc, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot open attribute '%s'", where, name);
    DISTQ_H5_CHECK(space = H5Aget_space(attr), DISTQ_ERR_FORMAT,
                   "%s: cannot read the shape of attribute '%s'", where, name);
    DISTQ_H5_CHECK(np = H5Sget_simple_extent_npoints(space), DISTQ_ERR_FORMAT,
                   "%s: cannot read the shape of attribute '%s'", where, name);
    *n = (int)np;
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&attr);
    return st;
}

/* Reads the order attribute `attr` of /quant (a list of names of groups of
 * /quant/<sub>): every name once, each a group there, and every group listed.
 * *names is distq_malloc'd. */
static distq_status read_order(hid_t quant, hid_t sub, const char *attr, const char *sub_name,
                               char (**names)[DISTQ_NAME_MAX], int *n, const char *path)
{
    distq_status st = DISTQ_OK;
    char where[DISTQ_H5_WHERE_MAX];
    H5G_info_t info;
    int count = 0;
    *names = NULL;
    *n = 0;
    snprintf(where, sizeof where, "%s: /quant", path);
    DISTQ_CHECK(attr_count(quant, attr, &count, where));
    if (count < 1) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: attribute '%s' is empty", where, attr);
        goto cleanup;
    }
    *names = distq_malloc((size_t)count * sizeof **names);
    if (!*names) {
        st = nomem(path);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_strs(quant, attr, count, count, *names, n, where));
    for (int i = 0; i < count; i++) {
        const char *nm = (*names)[i];
        htri_t exists = 0;
        if (distq_h5_name_ok(nm))
            DISTQ_H5_CHECK(exists = H5Lexists(sub, nm, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                           "%s: cannot look up /quant/%s/%s", path, sub_name, nm);
        if (!exists) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: /quant attribute %s names '%s', but there is no group "
                                 "/quant/%s/%s",
                                 path, attr, nm, sub_name, nm);
            goto cleanup;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(nm, (*names)[j]) == 0) {
                st = distq_error_set(DISTQ_ERR_FORMAT, "%s: /quant attribute %s lists '%s' twice",
                                     path, attr, nm);
                goto cleanup;
            }
    }
    DISTQ_H5_CHECK(H5Gget_info(sub, &info), DISTQ_ERR_FORMAT, "%s: cannot list /quant/%s", path,
                   sub_name);
    if ((int)info.nlinks != count) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: /quant/%s holds %llu members but /quant attribute %s lists %d",
                             path, sub_name, (unsigned long long)info.nlinks, attr, count);
        goto cleanup;
    }
cleanup:
    if (st != DISTQ_OK) {
        distq_free(*names);
        *names = NULL;
        *n = 0;
    }
    return st;
}

/* Checks a recipe attribute of /quant against this build's recipe; reads reduce_range. */
static distq_status check_recipe(hid_t quant, const char *path, int *reduce_range)
{
    distq_status st = DISTQ_OK;
    char where[DISTQ_H5_WHERE_MAX], buf[DISTQ_NAME_MAX];
    snprintf(where, sizeof where, "%s: /quant", path);
    DISTQ_CHECK(distq_h5_attr_read_str(quant, "recipe", buf, sizeof buf, where));
    for (int i = 0; i < N_RECIPE_STRS; i++) {
        DISTQ_CHECK(distq_h5_attr_read_str(quant, recipe_strs[i].name, buf, sizeof buf, where));
        if (strcmp(buf, recipe_strs[i].value) != 0) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: attribute '%s' is '%s'; this distq runs the x86 recipe only "
                                 "('%s')",
                                 where, recipe_strs[i].name, buf, recipe_strs[i].value);
            goto cleanup;
        }
    }
    int64_t reduce = 0, act[2] = {0, 0};
    DISTQ_CHECK(distq_h5_attr_read_i64(quant, "reduce_range", 1, 1, &reduce, NULL, where));
    DISTQ_CHECK(distq_h5_attr_read_i64(quant, "activation_range", 2, 2, act, NULL, where));
    if ((reduce != 0 && reduce != 1) || act[0] != 0 || act[1] != (reduce ? 127 : 255)) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: activation_range [%lld, %lld] with reduce_range %lld (expected [0, 255], "
                             "or [0, 127] with reduce_range 1)",
                             where, (long long)act[0], (long long)act[1], (long long)reduce);
        goto cleanup;
    }
    *reduce_range = (int)reduce;
    for (int i = 0; i < N_RECIPE_I64S; i++) {
        const i64_attr *a = &recipe_i64s[i];
        int n = a->n ? a->n : 1;
        int64_t v[2] = {0, 0};
        DISTQ_CHECK(distq_h5_attr_read_i64(quant, a->name, n, n, v, NULL, where));
        if (v[0] != a->v[0] || (n == 2 && v[1] != a->v[1])) {
            if (n == 2)
                st = distq_error_set(DISTQ_ERR_FORMAT,
                                     "%s: attribute '%s' is [%lld, %lld]; this distq runs the x86 "
                                     "recipe only ([%lld, %lld])",
                                     where, a->name, (long long)v[0], (long long)v[1],
                                     (long long)a->v[0], (long long)a->v[1]);
            else
                st = distq_error_set(DISTQ_ERR_FORMAT,
                                     "%s: attribute '%s' is %lld; this distq runs the x86 recipe "
                                     "only (%lld)",
                                     where, a->name, (long long)v[0], (long long)a->v[0]);
            goto cleanup;
        }
    }
cleanup:
    return st;
}

static distq_status read_value(hid_t values, const char *name, distq_qvalue *v, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], dt[16];
    int64_t dims[DISTQ_MAX_DIMS] = {0}, zp = 0;
    int ndim = 0;
    snprintf(where, sizeof where, "%s: /quant/values/%s", path, name);
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    DISTQ_H5_CHECK(grp = H5Gopen2(values, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: not a group",
                   where);
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "dtype", dt, sizeof dt, where));
    if (strcmp(dt, "u8") == 0) {
        v->dtype = DISTQ_DTYPE_U8;
    } else if (strcmp(dt, "f32") == 0) {
        v->dtype = DISTQ_DTYPE_F32;
    } else {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: dtype '%s' (int8 graph values are u8 or f32)",
                             where, dt);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_i64(grp, "shape", 1, DISTQ_MAX_DIMS, dims, &ndim, where));
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] >= 1 && dims[i] <= MAX_ELEMS) numel *= dims[i];
        if (dims[i] < 1 || (i == 0 && dims[0] != 1) || dims[i] > MAX_ELEMS || numel > MAX_ELEMS) {
            char text[96];
            distq_dims_format(ndim, dims, text, sizeof text);
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: shape %s: dims must be positive, the first (batch) 1, and "
                                 "at most 2^31 elements in all",
                                 where, text);
            goto cleanup;
        }
    }
    v->ndim = ndim;
    memcpy(v->dims, dims, sizeof v->dims);
    if (v->dtype == DISTQ_DTYPE_U8) {
        DISTQ_CHECK(distq_h5_attr_read_f32(grp, "scale", &v->scale, where));
        DISTQ_CHECK(distq_h5_attr_read_i64(grp, "zero_point", 1, 1, &zp, NULL, where));
        if (!isfinite(v->scale) || !(v->scale > 0)) {
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: scale %g must be finite and positive",
                                 where, (double)v->scale);
            goto cleanup;
        }
        int64_t qmax = 0;
        DISTQ_CHECK(distq_h5_attr_read_i64(grp, "quant_max", 1, 1, &qmax, NULL, where));
        if (qmax != 255 && qmax != 127) {
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: quant_max %lld (255, or 127 with reduce_range)",
                                 where, (long long)qmax);
            goto cleanup;
        }
        if (zp < 0 || zp > qmax) {
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: zero_point %lld is outside [0, %lld]", where,
                                 (long long)zp, (long long)qmax);
            goto cleanup;
        }
        v->zero_point = (int32_t)zp;
        v->quant_max = (int32_t)qmax;
    }
cleanup:
    distq_h5_close(&grp);
    return st;
}

static int find_qvalue(const distq_qgraph *q, const char *name)
{
    for (int i = 0; i < q->n_values; i++)
        if (strcmp(q->values[i].name, name) == 0) return i;
    return -1;
}

/* The value named by string attribute attr of a node ("" allowed if optional: -1). */
static distq_status read_value_ref(hid_t grp, const char *attr, int optional, const distq_qgraph *q,
                                   const char *node, int *out, const char *where)
{
    distq_status st = DISTQ_OK;
    char name[DISTQ_NAME_MAX];
    *out = -1;
    DISTQ_CHECK(distq_h5_attr_read_str(grp, attr, name, sizeof name, where));
    if (optional && !name[0]) goto cleanup;
    *out = find_qvalue(q, name);
    if (*out < 0)
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: node '%s' attribute '%s' names value '%s', which is not in "
                             "/quant/values",
                             where, node, attr, name);
cleanup:
    return st;
}

/* Reads dataset grp/name (dtype want, rank want_ndim) into a new buffer. */
static distq_status read_array(hid_t grp, const char *name, distq_dtype want, int want_ndim,
                               int64_t *dims, void **data, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t dset = H5I_INVALID_HID, type = H5I_INVALID_HID;
    char dwhere[DISTQ_H5_WHERE_MAX], tt[64];
    distq_dtype dt;
    int ndim = 0;
    htri_t has;
    *data = NULL;
    snprintf(dwhere, sizeof dwhere, "%s/%s", where, name);
    DISTQ_H5_CHECK(has = H5Lexists(grp, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up dataset '%s'", where, name);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing dataset '%s'", where, name);
        goto cleanup;
    }
    DISTQ_H5_CHECK(dset = H5Dopen2(grp, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: not a dataset",
                   dwhere);
    DISTQ_H5_CHECK(type = H5Dget_type(dset), DISTQ_ERR_FORMAT, "%s: cannot read its type", dwhere);
    if (distq_h5_dtype_of(type, &dt) != 0 || dt != want) {
        distq_h5_type_text(type, tt, sizeof tt);
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has type %s, expected %s", dwhere, tt,
                             want == DISTQ_DTYPE_S8 ? "int8 (s8)" : "float32 (f32)");
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_dataset_shape(dset, &ndim, dims, dwhere));
    if (ndim != want_ndim) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: rank %d, expected %d", dwhere, ndim, want_ndim);
        goto cleanup;
    }
    for (int i = ndim; i < DISTQ_MAX_DIMS; i++) dims[i] = 0;
    int64_t n = distq_dims_numel(ndim, dims);
    if (n < 1) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: is empty", dwhere);
        goto cleanup;
    }
    *data = distq_malloc((size_t)n * distq_dtype_size(want));
    if (!*data) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", dwhere);
        goto cleanup;
    }
    DISTQ_H5_CHECK(H5Dread(dset, distq_h5_mem_type(want), H5S_ALL, H5S_ALL, H5P_DEFAULT, *data),
                   DISTQ_ERR_FORMAT, "%s: cannot read", dwhere);
cleanup:
    if (st != DISTQ_OK) {
        distq_free(*data);
        *data = NULL;
    }
    distq_h5_close(&type);
    distq_h5_close(&dset);
    return st;
}

static distq_status read_weights(hid_t grp, distq_qnode *n, const char *where)
{
    distq_status st = DISTQ_OK;
    int64_t dims[DISTQ_MAX_DIMS];
    void *buf = NULL;
    htri_t has;
    n->wndim = n->op == DISTQ_QOP_CONV ? 4 : 2;
    DISTQ_CHECK(read_array(grp, "weight", DISTQ_DTYPE_S8, n->wndim, n->wdims, &buf, where));
    n->weight = buf;
    DISTQ_CHECK(read_array(grp, "weight_scale", DISTQ_DTYPE_F32, 1, dims, &buf, where));
    n->weight_scale = buf;
    if (dims[0] != n->wdims[0]) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s/weight_scale: has %lld values, expected %lld (one per output "
                             "channel of weight)",
                             where, (long long)dims[0], (long long)n->wdims[0]);
        goto cleanup;
    }
    for (int64_t oc = 0; oc < dims[0]; oc++)
        if (!isfinite(n->weight_scale[oc]) || !(n->weight_scale[oc] > 0)) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s/weight_scale: value %lld (%g) must be finite and positive",
                                 where, (long long)oc, (double)n->weight_scale[oc]);
            goto cleanup;
        }
    DISTQ_H5_CHECK(has = H5Lexists(grp, "bias", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up dataset 'bias'", where);
    if (!has) goto cleanup;
    DISTQ_CHECK(read_array(grp, "bias", DISTQ_DTYPE_F32, 1, dims, &buf, where));
    n->bias = buf;
    if (dims[0] != n->wdims[0])
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s/bias: has %lld values, expected %lld", where,
                             (long long)dims[0], (long long)n->wdims[0]);
cleanup:
    return st;
}

static distq_status qop_from_name(const char *name, distq_qop *out)
{
    for (int i = 0; i < DISTQ_QOP_COUNT; i++)
        if (strcmp(name, distq_qop_name((distq_qop)i)) == 0) {
            *out = (distq_qop)i;
            return DISTQ_OK;
        }
    return DISTQ_ERR_FORMAT;
}

static distq_status read_qnode(hid_t nodes, const char *name, distq_qgraph *q, distq_qnode *n,
                               const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], opname[DISTQ_NAME_MAX];
    int64_t relu = 0;
    snprintf(where, sizeof where, "%s: /quant/nodes/%s", path, name);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->sum_src = -1;
    DISTQ_H5_CHECK(grp = H5Gopen2(nodes, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: not a group",
                   where);
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "op", opname, sizeof opname, where));
    if (qop_from_name(opname, &n->op) != DISTQ_OK) {
        char known[256] = "";
        size_t used = 0;
        for (int i = 0; i < DISTQ_QOP_COUNT && used < sizeof known; i++)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                     distq_qop_name((distq_qop)i));
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: node '%s' has unknown op '%s' (known: %s)",
                             where, name, opname, known);
        goto cleanup;
    }
    DISTQ_CHECK(read_value_ref(grp, "src", 0, q, name, &n->src, where));
    DISTQ_CHECK(read_value_ref(grp, "dst", 0, q, name, &n->dst, where));
    DISTQ_CHECK(read_value_ref(grp, "sum", 1, q, name, &n->sum_src, where));
    DISTQ_CHECK(distq_h5_attr_read_i64(grp, "relu", 1, 1, &relu, NULL, where));
    if (relu != 0 && relu != 1) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: relu is %lld, expected 0 or 1", where,
                             (long long)relu);
        goto cleanup;
    }
    n->relu = (int)relu;
    if (attr_op_of(n->op) != DISTQ_OP_COUNT)
        DISTQ_CHECK(distq_h5_read_op_attrs(grp, attr_op_of(n->op), &n->attr, where));
    else
        memset(&n->attr, 0, sizeof n->attr);
    if (has_weights(n->op)) DISTQ_CHECK(read_weights(grp, n, where));
cleanup:
    distq_h5_close(&grp);
    return st;
}

// --- load: what the executors rely on ------------------------------------------------

static int same_shape(const distq_qvalue *a, const distq_qvalue *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

static int64_t per_image(const distq_qvalue *v) { return distq_dims_numel(v->ndim, v->dims); }

/* Checks node i of q (dtypes, shapes, weights, order); produced[v] marks the
 * values written so far. Messages: "<path>: /quant/nodes/<n>: ...". */
static distq_status check_qnode(const distq_qgraph *q, int i, char *produced, const char *path)
{
    const distq_qnode *n = &q->nodes[i];
    const distq_qvalue *s = &q->values[n->src], *d = &q->values[n->dst];
    const distq_attrs *a = &n->attr;
    char where[DISTQ_H5_WHERE_MAX], ds[96], dd[96];
    snprintf(where, sizeof where, "%s: /quant/nodes/%s", path, n->name);
    distq_dims_format(s->ndim, s->dims, ds, sizeof ds);
    distq_dims_format(d->ndim, d->dims, dd, sizeof dd);
#define BAD(...) return distq_error_set(DISTQ_ERR_FORMAT, __VA_ARGS__)
    if (!produced[n->src])
        BAD("%s: reads value '%s' before any node writes it (node_order must be an execution "
            "order)",
            where, s->name);
    if (n->sum_src >= 0 && !produced[n->sum_src])
        BAD("%s: reads value '%s' (sum) before any node writes it (node_order must be an "
            "execution order)",
            where, q->values[n->sum_src].name);
    if (produced[n->dst])
        BAD("%s: writes value '%s', which %s", where, d->name,
            n->dst == q->input ? "is the graph input" : "an earlier node already writes");
    produced[n->dst] = 1;
    if (n->sum_src >= 0 && n->op != DISTQ_QOP_CONV)
        BAD("%s: only qconv takes a sum input (op %s)", where, distq_qop_name(n->op));
    if (n->relu && !has_weights(n->op))
        BAD("%s: only qconv and qlinear fuse a relu (op %s)", where, distq_qop_name(n->op));

    /* dtypes: src, dst */
    int want_src_u8 = n->op != DISTQ_QOP_QUANTIZE;
    if ((s->dtype == DISTQ_DTYPE_U8) != want_src_u8)
        BAD("%s: %s reads %s value '%s', expected %s", where, distq_qop_name(n->op),
            dtype_text(s->dtype), s->name, want_src_u8 ? "u8" : "f32");
    if (n->op == DISTQ_QOP_DEQUANTIZE && d->dtype != DISTQ_DTYPE_F32)
        BAD("%s: dequantize writes %s value '%s', expected f32", where, dtype_text(d->dtype),
            d->name);
    if (!has_weights(n->op) && n->op != DISTQ_QOP_DEQUANTIZE && d->dtype != DISTQ_DTYPE_U8)
        BAD("%s: %s writes %s value '%s', expected u8", where, distq_qop_name(n->op),
            dtype_text(d->dtype), d->name);

    switch (n->op) {
    case DISTQ_QOP_QUANTIZE:
    case DISTQ_QOP_DEQUANTIZE:
        if (!same_shape(s, d))
            BAD("%s: src '%s' %s and dst '%s' %s differ in shape", where, s->name, ds, d->name, dd);
        break;
    case DISTQ_QOP_CONV: {
        const int64_t *w = n->wdims;
        if (s->ndim != 4 || d->ndim != 4)
            BAD("%s: qconv needs 4-d src and dst, got '%s' %s and '%s' %s", where, s->name, ds,
                d->name, dd);
        if (a->groups < 1 || s->dims[1] % a->groups || d->dims[1] % a->groups)
            BAD("%s: groups %lld does not divide the channels of '%s' %s and '%s' %s", where,
                (long long)a->groups, s->name, ds, d->name, dd);
        if (w[0] != d->dims[1] || w[1] * a->groups != s->dims[1])
            BAD("%s: weight (%lld, %lld, %lld, %lld) does not map '%s' %s to '%s' %s (groups %lld)",
                where, (long long)w[0], (long long)w[1], (long long)w[2], (long long)w[3], s->name,
                ds, d->name, dd, (long long)a->groups);
        for (int k = 0; k < 2; k++)
            if (a->stride[k] < 1 || a->dilation[k] < 1 || a->padding[k] < 0 ||
                a->stride[k] > MAX_WINDOW || a->dilation[k] > MAX_WINDOW ||
                a->padding[k] > MAX_WINDOW || w[2 + k] > MAX_WINDOW)
                BAD("%s: stride, dilation must be in [1, 65536], padding in [0, 65536]", where);
        for (int k = 0; k < 2; k++) {
            int64_t o = distq_conv_out_dim(s->dims[2 + k], w[2 + k], a->stride[k], a->padding[k],
                                           a->dilation[k], 0);
            if (o != d->dims[2 + k])
                BAD("%s: qconv of '%s' %s gives %s %lld, but '%s' is %s", where, s->name, ds,
                    k ? "width" : "height", (long long)o, d->name, dd);
        }
        if (n->sum_src >= 0) {
            const distq_qvalue *r = &q->values[n->sum_src];
            if (r->dtype != DISTQ_DTYPE_U8 || !same_shape(r, d))
                BAD("%s: sum value '%s' must be u8 and shaped like dst '%s' %s", where, r->name,
                    d->name, dd);
        }
        break;
    }
    case DISTQ_QOP_LINEAR:
        if (per_image(s) != n->wdims[1] || per_image(d) != n->wdims[0] || d->ndim != 2)
            BAD("%s: weight (%lld, %lld) does not map '%s' %s to '%s' %s", where,
                (long long)n->wdims[0], (long long)n->wdims[1], s->name, ds, d->name, dd);
        break;
    case DISTQ_QOP_MAX_POOL:
        if (s->ndim != 4 || d->ndim != 4 || s->dims[1] != d->dims[1])
            BAD("%s: qmaxpool maps '%s' %s to '%s' %s", where, s->name, ds, d->name, dd);
        for (int k = 0; k < 2; k++) {
            if (a->kernel[k] < 1 || a->stride[k] < 1 || a->padding[k] < 0 ||
                a->kernel[k] > MAX_WINDOW || a->stride[k] > MAX_WINDOW ||
                2 * a->padding[k] > a->kernel[k] || a->dilation[k] != 1 ||
                (a->ceil_mode != 0 && a->ceil_mode != 1))
                BAD("%s: qmaxpool needs kernel, stride >= 1, 0 <= padding <= kernel / 2, "
                    "dilation 1, ceil_mode 0 or 1",
                    where);
            int64_t o = distq_conv_out_dim(s->dims[2 + k], a->kernel[k], a->stride[k],
                                           a->padding[k], 1, (int)a->ceil_mode);
            if (o != d->dims[2 + k])
                BAD("%s: qmaxpool of '%s' %s gives %s %lld, but '%s' is %s", where, s->name, ds,
                    k ? "width" : "height", (long long)o, d->name, dd);
        }
        break;
    case DISTQ_QOP_AVG_POOL:
        if (s->ndim != 4 || d->ndim != 4 || d->dims[1] != s->dims[1] || d->dims[2] != 1 ||
            d->dims[3] != 1 || a->output_size[0] != 1 || a->output_size[1] != 1)
            BAD("%s: qavgpool (output_size 1x1) maps '%s' %s to '%s' %s", where, s->name, ds,
                d->name, dd);
        break;
    case DISTQ_QOP_FLATTEN:
        if (a->start_dim != 1 || d->ndim != 2 || d->dims[1] != per_image(s))
            BAD("%s: qflatten (start_dim 1) maps '%s' %s to '%s' %s", where, s->name, ds, d->name,
                dd);
        break;
    default: BAD("%s: op %d", where, (int)n->op);
    }
    if ((n->op == DISTQ_QOP_MAX_POOL || n->op == DISTQ_QOP_AVG_POOL ||
         n->op == DISTQ_QOP_FLATTEN) &&
        (s->scale != d->scale || s->zero_point != d->zero_point))
        BAD("%s: %s keeps its input's qparams, but '%s' has scale %g zp %d and '%s' scale %g zp %d",
            where, distq_qop_name(n->op), s->name, (double)s->scale, (int)s->zero_point, d->name,
            (double)d->scale, (int)d->zero_point);
#undef BAD
    return DISTQ_OK;
}

static distq_status check_qgraph(const distq_qgraph *q, const char *path)
{
    distq_status st = DISTQ_OK;
    char *produced = distq_calloc((size_t)q->n_values);
    if (!produced) return nomem(path);
    produced[q->input] = 1;
    for (int i = 0; i < q->n_nodes && st == DISTQ_OK; i++) st = check_qnode(q, i, produced, path);
    if (st == DISTQ_OK && !produced[q->output])
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: /quant: no node writes the output value '%s'",
                             path, q->values[q->output].name);
    distq_free(produced);
    return st;
}

static distq_status read_quant(hid_t fid, const char *path, distq_qgraph *q)
{
    distq_status st = DISTQ_OK;
    hid_t quant = H5I_INVALID_HID, values = H5I_INVALID_HID, nodes = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], buf[DISTQ_NAME_MAX];
    char(*vnames)[DISTQ_NAME_MAX] = NULL, (*nnames)[DISTQ_NAME_MAX] = NULL;
    int nv = 0, nn = 0;
    snprintf(where, sizeof where, "%s: /quant", path);
    DISTQ_CHECK(distq_h5_open_group(fid, "quant", path, "/quant", &quant));
    DISTQ_CHECK(check_recipe(quant, path, &q->reduce_range));
    DISTQ_CHECK(distq_h5_attr_read_str(quant, "observer", buf, sizeof buf, where));
    if (distq_observer_kind_from_name(buf, &q->kind) != DISTQ_OK) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: unknown observer '%s' (histogram, minmax)",
                             where, buf);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_open_group(quant, "values", path, "/quant/values", &values));
    DISTQ_CHECK(distq_h5_open_group(quant, "nodes", path, "/quant/nodes", &nodes));
    DISTQ_CHECK(read_order(quant, values, "value_order", "values", &vnames, &nv, path));
    DISTQ_CHECK(read_order(quant, nodes, "node_order", "nodes", &nnames, &nn, path));

    q->values = distq_calloc((size_t)nv * sizeof *q->values);
    q->nodes = distq_calloc((size_t)nn * sizeof *q->nodes);
    if (!q->values || !q->nodes) {
        st = nomem(path);
        goto cleanup;
    }
    for (int i = 0; i < nv; i++) {
        DISTQ_CHECK(read_value(values, vnames[i], &q->values[i], path));
        q->n_values++;
    }
    DISTQ_CHECK(distq_h5_attr_read_str(quant, "input", buf, sizeof buf, where));
    q->input = find_qvalue(q, buf);
    if (q->input < 0 || q->values[q->input].dtype != DISTQ_DTYPE_F32) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: attribute 'input' names '%s', which is not an f32 value of "
                             "/quant/values",
                             where, buf);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_str(quant, "output", buf, sizeof buf, where));
    q->output = find_qvalue(q, buf);
    if (q->output < 0 || q->values[q->output].dtype != DISTQ_DTYPE_F32) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: attribute 'output' names '%s', which is not an f32 value of "
                             "/quant/values",
                             where, buf);
        goto cleanup;
    }
    for (int i = 0; i < nn; i++) {
        q->n_nodes++; /* counted first: destroy frees a half-read node's buffers */
        DISTQ_CHECK(read_qnode(nodes, nnames[i], q, &q->nodes[i], path));
    }
    DISTQ_CHECK(check_qgraph(q, path));
cleanup:
    distq_h5_close(&nodes);
    distq_h5_close(&values);
    distq_h5_close(&quant);
    distq_free(vnames);
    distq_free(nnames);
    return st;
}

/* Opens path and checks it is a distq-qmodel file (*quantized = 1) or, if
 * allow_plain, a distq-model file (*quantized = 0); other formats get the
 * message of the loader that would read them. */
static distq_status open_checked(const char *path, int allow_plain, hid_t *fid, int *quantized)
{
    distq_status st = DISTQ_OK;
    char format[DISTQ_NAME_MAX];
    *quantized = 0;
    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, fid));
    DISTQ_CHECK(distq_h5_read_format(*fid, path, format, sizeof format));
    if (strcmp(format, DISTQ_MODEL_FORMAT) == 0 ||
        (allow_plain && strcmp(format, DISTQ_QMODEL_FORMAT) != 0)) {
        if (!allow_plain) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: not a quantized model (format %s); run distq calibrate first",
                                 path, DISTQ_MODEL_FORMAT);
            goto cleanup;
        }
        DISTQ_CHECK(distq_h5_check_format(*fid, path, DISTQ_MODEL_FORMAT, DISTQ_MODEL_VERSION));
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_check_format(*fid, path, DISTQ_QMODEL_FORMAT, DISTQ_QMODEL_VERSION));
    *quantized = 1;
cleanup:
    if (st != DISTQ_OK) distq_h5_close(fid);
    return st;
}

distq_status distq_qmodel_load(const char *path, distq_qgraph **q, distq_graph **fp32)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    distq_qgraph *qg = NULL;
    distq_graph *g = NULL;
    int quantized = 0;
    if (!path || !q)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_qmodel_load: NULL path or q");
    *q = NULL;
    if (fp32) *fp32 = NULL;
    DISTQ_CHECK(open_checked(path, 0, &fid, &quantized));
    DISTQ_CHECK(distq_qgraph_create(&qg));
    DISTQ_CHECK(read_quant(fid, path, qg));
    if (fp32) DISTQ_CHECK(distq_h5_read_graph(fid, path, &g));
    *q = qg;
    qg = NULL;
    if (fp32) *fp32 = g;
    g = NULL;
cleanup:
    distq_h5_close(&fid);
    distq_qgraph_destroy(qg);
    distq_graph_destroy(g);
    return st;
}

distq_status distq_model_is_quantized(const char *path, int *quantized)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    if (!path || !quantized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_model_is_quantized: NULL argument");
    DISTQ_CHECK(open_checked(path, 1, &fid, quantized));
cleanup:
    distq_h5_close(&fid);
    return st;
}
