/*
 * Quantized model files (layout in docs/file-formats.md, "Quantized model
 * files"), version 2:
 *
 *     /                       format = "distq-qmodel", version = 2
 *     /graph, /tensors        the BN-folded fp32 graph, exactly as in distq-model
 *     /int8/graph, /int8/tensors  the int8 graph convert wrote, in the same
 *                             layout: one IR, one writer, one reader and one
 *                             validator (distq_graph_finalize) for both
 *     /quant                  the recipe (attributes)
 *     /quant/observers/<k>    kind, values, min, max, the range and qparams
 *                             convert chose [, histogram]
 *
 * Observer states are written for inspection and not read back; what they
 * chose is recorded by convert (io never reruns an observer's search).
 * Version-1 files (before the one IR) are refused with the command that
 * regenerates them.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/io.h"
#include "distq/onnx.h"
#include "io/h5_util_impl.h"
#include "io/model_io_impl.h"

#define RECIPE_TEXT "x86 (X86InductorQuantizer default static config)"
#define INT8_GROUP "/int8"

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

// --- save -------------------------------------------------------------------------

static distq_status write_observer(hid_t observers, hid_t gcpl, const distq_quant_record *rec, int k,
                                   const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    const distq_observer *o = &rec->observers[k];
    char where[DISTQ_H5_WHERE_MAX], name[32];
    const char **vals = NULL;
    float mn, mx;
    int is_hist = o->kind == DISTQ_OBSERVER_HISTOGRAM;
    snprintf(name, sizeof name, "%d", k);
    snprintf(where, sizeof where, "%s: /quant/observers/%s", path, name);
    if (o->n_values < 1 || !o->values || (is_hist && !o->hist)) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: observer %d is not a valid observer", path,
                             k);
        goto cleanup;
    }
    if (!o->converted) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                             "%s: observer %d has no qparams yet (distq_convert records them)", path, k);
        goto cleanup;
    }
    if (!(vals = distq_malloc((size_t)o->n_values * sizeof *vals))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
        goto cleanup;
    }
    for (int i = 0; i < o->n_values; i++) vals[i] = rec->observed->values[o->values[i]].name;
    const distq_qparams qp = o->chosen; /* what convert chose */
    const float lo = o->chosen_min, hi = o->chosen_max;
    mn = is_hist ? o->hist->min : o->mm.min;
    mx = is_hist ? o->hist->max : o->mm.max;
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
    distq_free(vals);
    distq_h5_close(&dset);
    distq_h5_close(&grp);
    return st;
}

static distq_status write_quant(hid_t fid, const distq_quant_record *rec, int reduce_range, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t gcpl = H5I_INVALID_HID, quant = H5I_INVALID_HID, sub = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    snprintf(where, sizeof where, "%s: /quant", path);
    DISTQ_CHECK(distq_h5_compact_gcpl(&gcpl, where));
    DISTQ_H5_CHECK(quant = H5Gcreate2(fid, "quant", H5P_DEFAULT, gcpl, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group", where);
    DISTQ_CHECK(distq_h5_attr_write_str(quant, "recipe", RECIPE_TEXT, where));
    DISTQ_CHECK(
        distq_h5_attr_write_str(quant, "observer", distq_observer_kind_name(rec->kind), where));
    for (int i = 0; i < N_RECIPE_STRS; i++)
        DISTQ_CHECK(
            distq_h5_attr_write_str(quant, recipe_strs[i].name, recipe_strs[i].value, where));
    for (int i = 0; i < N_RECIPE_I64S; i++)
        DISTQ_CHECK(distq_h5_attr_write_i64(quant, recipe_i64s[i].name, recipe_i64s[i].n,
                                            recipe_i64s[i].v, where));
    const int64_t act_range[2] = {0, reduce_range ? 127 : 255}, reduce = reduce_range;
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "activation_range", 2, act_range, where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "reduce_range", 0, &reduce, where));
    const int64_t hist[3] = {DISTQ_HIST_BINS, DISTQ_HIST_UPSAMPLE, DISTQ_HIST_DST_BINS};
    DISTQ_CHECK(distq_h5_attr_write_f32(quant, "eps", DISTQ_QEPS, where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "hist_bins", 0, &hist[0], where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "hist_upsample", 0, &hist[1], where));
    DISTQ_CHECK(distq_h5_attr_write_i64(quant, "hist_dst_bins", 0, &hist[2], where));
    {   /* the nodes the user's exclude patterns kept in fp32 (inspect tells them apart) */
        int n_ex = 0;
        for (int i = 0; rec->excluded && i < rec->observed->n_nodes; i++) n_ex += rec->excluded[i];
        const char **names = n_ex ? distq_malloc((size_t)n_ex * sizeof *names) : NULL;
        if (n_ex && !names) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
            goto cleanup;
        }
        for (int i = 0, k = 0; n_ex && i < rec->observed->n_nodes; i++)
            if (rec->excluded[i]) names[k++] = rec->observed->nodes[i].name;
        if (n_ex) st = distq_h5_attr_write_strs(quant, "excluded_nodes", n_ex, names, where);
        distq_free(names);
        if (st) goto cleanup;
    }
    DISTQ_H5_CHECK(sub = H5Gcreate2(quant, "observers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s/observers: cannot create group", where);
    for (int k = 0; k < rec->n_observers; k++) DISTQ_CHECK(write_observer(sub, gcpl, rec, k, path));
cleanup:
    distq_h5_close(&sub);
    distq_h5_close(&quant);
    distq_h5_close(&gcpl);
    return st;
}

/* "q.h5 (int8 graph /int8)": the file named in the int8 graph's messages. */
static void int8_where(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s (int8 graph " INT8_GROUP ")", path);
}

distq_status distq_qmodel_save(const distq_quant_record *rec, const distq_graph *q, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "", where[DISTQ_H5_WHERE_MAX];
    if (!rec || !q || !path || !rec->observed || (rec->n_observers && !rec->observers))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_qmodel_save: NULL argument");
    if (!q->finalized || !distq_graph_is_quantized(q))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: the graph to save is not a finalized int8 graph",
                               path);
    if (!rec->observed->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: the prepared graph is not finalized",
                               path);
    int8_where(path, where, sizeof where);
    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_QMODEL_FORMAT, DISTQ_QMODEL_VERSION, tmp, &fid));
    DISTQ_CHECK(distq_h5_write_graph(fid, rec->observed, path));
    DISTQ_H5_CHECK(grp = H5Gcreate2(fid, INT8_GROUP + 1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group " INT8_GROUP, path);
    DISTQ_CHECK(distq_h5_write_graph(grp, q, where));
    distq_h5_close(&grp);
    DISTQ_CHECK(write_quant(fid, rec, distq_graph_reduce_range(q), path));
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    distq_h5_close(&grp);
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

// --- load: reading ----------------------------------------------------------------

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

/* The int8 graph's u8 values use the file's activation range. */
static distq_status check_int8_graph(const distq_graph *q, int reduce_range, const char *path)
{
    if (!distq_graph_is_quantized(q))
        return distq_error_set(DISTQ_ERR_FORMAT, "%s: " INT8_GROUP "/graph has no u8 value (not an int8 graph)",
                               path);
    for (int i = 0; i < q->n_values; i++) {
        const distq_value *v = &q->values[i];
        if (v->dtype == DISTQ_DTYPE_U8 && v->quant_max != (reduce_range ? 127 : 255))
            return distq_error_set(DISTQ_ERR_FORMAT,
                                   "%s: " INT8_GROUP ": value '%s' has quant_max %d, but /quant says reduce_range %d",
                                   path, v->name, (int)v->quant_max, reduce_range);
    }
    return DISTQ_OK;
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
        DISTQ_CHECK(distq_h5_check_format_since(*fid, path, DISTQ_MODEL_FORMAT, DISTQ_MODEL_OLDEST_VERSION, DISTQ_MODEL_VERSION));
        goto cleanup;
    }
    int64_t version = 0;
    if (strcmp(format, DISTQ_QMODEL_FORMAT) == 0 && distq_h5_attr_exists(*fid, "version") > 0)
        DISTQ_CHECK(distq_h5_attr_read_i64(*fid, "version", 1, 1, &version, NULL, path));
    if (version == 1) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: distq-qmodel version 1 was written by an earlier distq (before the "
                             "one graph IR); this build reads version %d. Regenerate it from the float "
                             "model: distq calibrate --model FLOAT.h5 --data CAL.h5 -o %s",
                             path, DISTQ_QMODEL_VERSION, path);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_check_format_since(*fid, path, DISTQ_QMODEL_FORMAT, 2, DISTQ_QMODEL_VERSION));
    *quantized = 1;
cleanup:
    if (st != DISTQ_OK) distq_h5_close(fid);
    return st;
}

distq_status distq_qmodel_load(const char *path, distq_graph **q, distq_graph **fp32)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, grp = H5I_INVALID_HID, quant = H5I_INVALID_HID;
    distq_graph *qg = NULL, *g = NULL;
    int quantized = 0, reduce_range = 0;
    char where[DISTQ_H5_WHERE_MAX];
    if (!path || !q)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_qmodel_load: NULL path or q");
    *q = NULL;
    if (fp32) *fp32 = NULL;
    DISTQ_CHECK(open_checked(path, 0, &fid, &quantized));
    DISTQ_CHECK(distq_h5_open_group(fid, "quant", path, "/quant", &quant));
    DISTQ_CHECK(check_recipe(quant, path, &reduce_range));
    DISTQ_CHECK(distq_h5_open_group(fid, INT8_GROUP + 1, path, INT8_GROUP, &grp));
    int8_where(path, where, sizeof where);
    DISTQ_CHECK(distq_h5_read_graph(grp, where, &qg)); /* finalize validates it all */
    DISTQ_CHECK(check_int8_graph(qg, reduce_range, path));
    if (fp32) DISTQ_CHECK(distq_h5_read_graph(fid, path, &g));
    *q = qg;
    qg = NULL;
    if (fp32) *fp32 = g;
    g = NULL;
cleanup:
    distq_h5_close(&quant);
    distq_h5_close(&grp);
    distq_h5_close(&fid);
    distq_graph_destroy(qg);
    distq_graph_destroy(g);
    return st;
}

distq_status distq_model_is_quantized(const char *path, int *quantized)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    if (!path || !quantized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_model_is_quantized: NULL argument");
    *quantized = 0;
    if (distq_path_is_onnx(path)) return DISTQ_OK; /* imported as an fp32 graph (distq import) */
    DISTQ_CHECK(open_checked(path, 1, &fid, quantized));
cleanup:
    distq_h5_close(&fid);
    return st;
}
