/*
 * distq_h5_describe(): a human-readable summary of any HDF5 file, for
 * `distq describe` and for test failure messages.
 *
 * Models are described through distq_model_load() (so the text shows inferred
 * shapes, and a broken model reports why it is broken), quantized models
 * through distq_qmodel_load() (recipe, the fused int8 graph); data, output and
 * results files (per-rank placement, per-point latency percentiles and
 * throughput, calibration, accuracy, provenance) are read directly. Files
 * that are HDF5 but not ours get a listing of their root group; files that
 * are not HDF5 at all are an error. Nothing is printed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/io.h"
#include "distq/results.h"
#include "io/h5_util_impl.h"
#include "io/model_io_impl.h"

// --- growing text buffer ---------------------------------------------------------

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} text_buf;

static void tb_printf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tb_printf(text_buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->oom) return;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) return;
    if (b->len + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + (size_t)need + 1) cap *= 2;
        char *p = distq_malloc(cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        if (b->buf) memcpy(p, b->buf, b->len + 1);
        distq_free(b->buf);
        b->buf = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

// --- models ----------------------------------------------------------------------

/* The op-specific part of a node line, e.g. "k3x3 s1 p1" (the registry's text). */
static void node_attr_text(const distq_graph *g, const distq_node *n, char *buf, size_t len)
{
    const distq_op_info *info = distq_op_info_of(n->op);
    buf[0] = '\0';
    if (info && info->attr_text) info->attr_text(g, n, buf, len);
}

static void node_inputs_text(const distq_node *n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < n->n_inputs && used < len; k++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? ", " : "", n->input_names[k]);
}

/* Multiply-accumulates per image of a conv2d or linear node (0 for others). */
static double node_macs(const distq_graph *g, const distq_node *n)
{
    const distq_value *y = &g->values[n->output];
    int w = n->params[DISTQ_PARAM_WEIGHT];
    if (w < 0 || (n->op != DISTQ_OP_CONV2D && n->op != DISTQ_OP_LINEAR)) return 0.0;
    /* conv and linear: every output element sums one row of the weight */
    double per_out = (double)distq_tensor_numel(&g->params[w]) / (double)g->params[w].dims[0];
    return per_out * (double)distq_value_numel(y, 1);
}

/* Why an fp32 node of a quantized graph is not int8 (X86InductorQuantizer's
 * rules as the registry's qrole states them, or the user's exclusion). */
static const char *fp32_reason(const distq_node *n, int excluded)
{
    if (excluded) return "excluded by the user";
    switch (distq_op_info_of(n->op)->qrole) {
    case DISTQ_QROLE_HEAD: return "not matched";
    case DISTQ_QROLE_POST_OP: return "not fused: the recipe fuses it only right after a conv or linear";
    case DISTQ_QROLE_SHARES_INPUT: return "its input is fp32, or distq has no int8 form of it yet";
    default: return "the recipe keeps it in fp32";
    }
}

/* The coverage of a quantized model: the fp32 model's conv2d / linear nodes
 * that run int8 (q's node of the same name reads u8) and their share of the
 * MACs, then q's fp32 nodes by op and reason. */
static void describe_coverage(const distq_graph *g, const distq_graph *q, char **excluded, int n_excluded,
                              text_buf *b)
{
    int heads = 0, heads_int8 = 0;
    double macs = 0, macs_int8 = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        if (distq_op_info_of(n->op)->qrole != DISTQ_QROLE_HEAD) continue;
        int j = distq_graph_find_node(q, n->name);
        int int8 = j >= 0 && q->values[q->nodes[j].inputs[0]].dtype == DISTQ_DTYPE_U8;
        heads++;
        heads_int8 += int8;
        macs += node_macs(g, n);
        if (int8) macs_int8 += node_macs(g, n);
    }
    struct fp32_row {
        distq_op op;
        const char *why;
        int count;
    } rows[32];
    int n_rows = 0;
    for (int i = 0; i < q->n_nodes; i++) {
        const distq_node *n = &q->nodes[i];
        const distq_op_info *info = distq_op_info_of(n->op);
        int int8 = q->values[n->inputs[0]].dtype == DISTQ_DTYPE_U8;
        if (info->qrole == DISTQ_QROLE_QDQ || int8) continue;
        int ex = 0;
        for (int k = 0; k < n_excluded && !ex; k++) ex = strcmp(excluded[k], n->name) == 0;
        const char *why = fp32_reason(n, ex);
        int r = 0;
        while (r < n_rows && !(rows[r].op == n->op && rows[r].why == why)) r++;
        if (r == n_rows && n_rows < 32) rows[n_rows++] = (struct fp32_row){n->op, why, 0};
        if (r < n_rows) rows[r].count++;
    }
    tb_printf(b, "  coverage   %d of %d conv2d / linear int8, %.1f%% of their MACs in int8 (%.3g GMAC per image)\n",
              heads_int8, heads, macs > 0 ? 100.0 * macs_int8 / macs : 0.0, macs / 1e9);
    for (int r = 0; r < n_rows; r++)
        tb_printf(b, "  fp32       %d %s: %s\n", rows[r].count, distq_op_name(rows[r].op), rows[r].why);
}

/* One line per node, for float and int8 graphs alike: op, name, inputs,
 * output value (shape, and dtype where it is not f32) and the registry's text. */
static void describe_nodes(const distq_graph *g, text_buf *b)
{
    char dims[96], ins[2 * DISTQ_NAME_MAX + 4], attrs[160];
    int w_name = 4, w_op = 2, w_in = 2;
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        node_inputs_text(n, ins, sizeof ins);
        if ((int)strlen(n->name) > w_name) w_name = (int)strlen(n->name);
        if ((int)strlen(distq_op_name(n->op)) > w_op) w_op = (int)strlen(distq_op_name(n->op));
        if ((int)strlen(ins) > w_in) w_in = (int)strlen(ins);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        const distq_value *v = &g->values[n->output];
        node_inputs_text(n, ins, sizeof ins);
        node_attr_text(g, n, attrs, sizeof attrs);
        distq_dims_format(v->ndim, v->dims, dims, sizeof dims);
        tb_printf(b, "  %3d %-*s %-*s in: %-*s out: %s %s%s%s%s\n", i, w_op, distq_op_name(n->op),
                  w_name, n->name, w_in, ins, v->name, dims, v->dtype == DISTQ_DTYPE_U8 ? " u8" : "",
                  attrs[0] ? "  " : "", attrs);
    }
}

/* One line per graph output: "<lead>name dims dtype". */
static void describe_outputs(const distq_graph *g, const char *lead, text_buf *b)
{
    char dims[96];
    for (int k = 0; k < g->n_outputs; k++) {
        const distq_value *out = &g->values[g->output_values[k]];
        distq_dims_format(out->ndim, out->dims, dims, sizeof dims);
        tb_printf(b, "%s%s %s %s\n", lead, out->name, dims, distq_dtype_name(out->dtype));
    }
}

static void describe_model(const distq_graph *g, const char *path, text_buf *b)
{
    const distq_value *in = &g->values[g->input_value];
    char dims[96];
    int w_t = 4;
    tb_printf(b, "%s: %s version %d\n", path, DISTQ_MODEL_FORMAT, DISTQ_MODEL_VERSION);
    distq_dims_format(in->ndim, in->dims, dims, sizeof dims);
    tb_printf(b, "  input   %s %s %s\n", in->name, dims, distq_dtype_name(in->dtype));
    describe_outputs(g, "  output  ", b);
    tb_printf(b, "nodes (%d, in execution order):\n", g->n_nodes);
    describe_nodes(g, b);

    int64_t total_numel = 0;
    size_t total_bytes = 0;
    for (int i = 0; i < g->n_params; i++)
        if ((int)strlen(g->params[i].name) > w_t) w_t = (int)strlen(g->params[i].name);
    tb_printf(b, "tensors (%d):\n", g->n_params);
    for (int i = 0; i < g->n_params; i++) {
        const distq_tensor *t = &g->params[i];
        distq_dims_format(t->ndim, t->dims, dims, sizeof dims);
        tb_printf(b, "  %-*s %-3s %-18s %12zu B\n", w_t, t->name, distq_dtype_name(t->dtype), dims,
                  distq_tensor_nbytes(t));
        total_numel += distq_tensor_numel(t);
        total_bytes += distq_tensor_nbytes(t);
    }
    tb_printf(b, "total: %d tensors, %lld values, %zu bytes (%.2f MB)\n", g->n_params,
              (long long)total_numel, total_bytes, (double)total_bytes / 1e6);
}

// --- quantized models -------------------------------------------------------------

static distq_status describe_qmodel(const char *path, text_buf *b)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, quant = H5I_INVALID_HID, obs = H5I_INVALID_HID;
    distq_graph *q = NULL;
    distq_graph *g = NULL;
    char recipe[DISTQ_NAME_MAX], observer[DISTQ_NAME_MAX], where[DISTQ_H5_WHERE_MAX], dims[96];
    long long n_obs = -1;
    char **excluded = NULL;
    int n_excluded = 0;
    float eps = 0;
    htri_t has;
    /* The loader validates everything, so a broken file says why. */
    DISTQ_CHECK(distq_qmodel_load(path, &q, &g));
    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
    snprintf(where, sizeof where, "%s: /quant", path);
    DISTQ_H5_CHECK(quant = H5Gopen2(fid, "quant", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot open", where);
    DISTQ_CHECK(distq_h5_attr_read_str(quant, "recipe", recipe, sizeof recipe, where));
    DISTQ_CHECK(distq_h5_attr_read_str(quant, "observer", observer, sizeof observer, where));
    DISTQ_H5_CHECK(has = H5Aexists(quant, "eps"), DISTQ_ERR_FORMAT,
                   "%s: cannot look up attribute 'eps'", where);
    if (has) DISTQ_CHECK(distq_h5_attr_read_f32(quant, "eps", &eps, where));
    DISTQ_H5_CHECK(has = H5Lexists(quant, "observers", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up /quant/observers", path);
    if (has) {
        H5G_info_t info;
        DISTQ_H5_CHECK(obs = H5Gopen2(quant, "observers", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                       "%s: /quant/observers is not a group", path);
        DISTQ_H5_CHECK(H5Gget_info(obs, &info), DISTQ_ERR_FORMAT,
                       "%s: cannot list /quant/observers", path);
        n_obs = (long long)info.nlinks;
    }

    tb_printf(b, "%s: %s version %d\n", path, DISTQ_QMODEL_FORMAT, DISTQ_QMODEL_VERSION);
    tb_printf(b, "  recipe     %s: activations u8 [0, 255] per_tensor_affine, weights s8 "
                 "[-128, 127] per_channel_symmetric (axis 0), bias f32",
              recipe);
    if (eps > 0) tb_printf(b, ", eps %g", (double)eps);
    tb_printf(b, "\n");
    if (n_obs >= 0)
        tb_printf(b, "  observers  %lld %s\n", n_obs, observer);
    else
        tb_printf(b, "  observers  none stored (%s)\n", observer);
    size_t fbytes = 0, wbytes = 0;
    for (int i = 0; i < g->n_params; i++) fbytes += distq_tensor_nbytes(&g->params[i]);
    for (int i = 0; i < q->n_params; i++) wbytes += distq_tensor_nbytes(&q->params[i]);
    tb_printf(b,
              "  float      %d nodes, %d tensors, %.2f MB (BN folded; distq_model_load reads it)\n",
              g->n_nodes, g->n_params, (double)fbytes / 1e6);
    const distq_value *in = &q->values[q->input_value];
    distq_dims_format(in->ndim, in->dims, dims, sizeof dims);
    tb_printf(b, "  input      %s %s f32\n", in->name, dims);
    describe_outputs(q, "  output     ", b);
    DISTQ_H5_CHECK(has = H5Aexists(quant, "excluded_nodes"), DISTQ_ERR_FORMAT,
                   "%s: cannot look up attribute 'excluded_nodes'", where);
    if (has) DISTQ_CHECK(distq_h5_attr_read_strlist(quant, "excluded_nodes", 1, INT32_MAX, &excluded, &n_excluded, where));
    describe_coverage(g, q, excluded, n_excluded, b);
    tb_printf(b,
              "int8 graph (%d nodes, %d values, in execution order; weights, scales, bias "
              "%.2f MB):\n",
              q->n_nodes, q->n_values, (double)wbytes / 1e6);
    describe_nodes(q, b);
cleanup:
    distq_h5_close(&obs);
    distq_h5_close(&quant);
    distq_h5_close(&fid);
    distq_graph_destroy(q);
    distq_graph_destroy(g);
    distq_free(excluded); /* one block */
    return st;
}

// --- data and output files -------------------------------------------------------

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static distq_status describe_data(const char *path, text_buf *b)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    distq_data_info info;
    int64_t *labels = NULL;
    char dims[96];
    DISTQ_CHECK(distq_data_info_read(path, &info));
    tb_printf(b, "%s: %s version %d\n", path, DISTQ_DATA_FORMAT, DISTQ_DATA_VERSION);
    distq_dims_format(info.ndim - 1, info.dims + 1, dims, sizeof dims);
    tb_printf(b, "  images  N = %lld, image shape %s, f32 (%.2f MB)\n", (long long)info.n, dims,
              (double)distq_dims_numel(info.ndim, info.dims) * 4.0 / 1e6);
    if (!info.has_labels) {
        tb_printf(b, "  labels  no\n");
        goto cleanup;
    }
    labels = distq_malloc((size_t)(info.n > 0 ? info.n : 1) * sizeof *labels);
    if (!labels) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory reading labels", path);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
    DISTQ_H5_CHECK(dset = H5Dopen2(fid, "labels", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot open /labels", path);
    if (info.n > 0)
        DISTQ_H5_CHECK(H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels),
                       DISTQ_ERR_FORMAT, "%s: cannot read /labels", path);
    qsort(labels, (size_t)info.n, sizeof *labels, cmp_i64);
    int64_t distinct = info.n > 0;
    for (int64_t i = 1; i < info.n; i++) distinct += labels[i] != labels[i - 1];
    if (info.n > 0)
        tb_printf(b, "  labels  yes: %lld distinct classes seen (min %lld, max %lld)\n",
                  (long long)distinct, (long long)labels[0], (long long)labels[info.n - 1]);
    else
        tb_printf(b, "  labels  yes (empty)\n");
cleanup:
    distq_h5_close(&dset);
    distq_h5_close(&fid);
    distq_free(labels);
    return st;
}

static distq_status describe_output(const char *path, hid_t fid, text_buf *b)
{
    distq_status st = DISTQ_OK;
    hid_t dset = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], dims_text[96], src[DISTQ_H5_WHERE_MAX];
    int64_t dims[DISTQ_MAX_DIMS];
    int ndim = 0;
    htri_t has;
    static const char *const attrs[2] = {"model", "data"};
    DISTQ_CHECK(distq_h5_check_format(fid, path, DISTQ_OUTPUT_FORMAT, DISTQ_OUTPUT_VERSION));
    snprintf(where, sizeof where, "%s: dataset /logits", path);
    DISTQ_H5_CHECK(has = H5Lexists(fid, "logits", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up /logits", path);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing dataset /logits", path);
        goto cleanup;
    }
    DISTQ_H5_CHECK(dset = H5Dopen2(fid, "logits", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: /logits is not a dataset", path);
    DISTQ_CHECK(distq_h5_dataset_shape(dset, &ndim, dims, where));
    distq_dims_format(ndim, dims, dims_text, sizeof dims_text);
    tb_printf(b, "%s: %s version %d\n", path, DISTQ_OUTPUT_FORMAT, DISTQ_OUTPUT_VERSION);
    tb_printf(b, "  logits  %s f32 (N, K)\n", dims_text);
    for (int i = 0; i < 2; i++) {
        DISTQ_H5_CHECK(has = H5Aexists(dset, attrs[i]), DISTQ_ERR_FORMAT,
                       "%s: cannot look up attribute '%s'", where, attrs[i]);
        if (!has) continue;
        DISTQ_CHECK(distq_h5_attr_read_str(dset, attrs[i], src, sizeof src, where));
        tb_printf(b, "  %-6s  %s\n", attrs[i], src);
    }
    /* a model with several outputs: /output_1, /output_2 ... after /logits */
    for (int o = 1; o < DISTQ_MAX_OUTPUTS; o++) {
        char name[32];
        snprintf(name, sizeof name, "output_%d", o);
        DISTQ_H5_CHECK(has = H5Lexists(fid, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: cannot look up /%s", path,
                       name);
        if (!has) break;
        distq_h5_close(&dset);
        snprintf(where, sizeof where, "%s: dataset /%s", path, name);
        DISTQ_H5_CHECK(dset = H5Dopen2(fid, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: not a dataset", where);
        DISTQ_CHECK(distq_h5_dataset_shape(dset, &ndim, dims, where));
        DISTQ_CHECK(distq_h5_attr_read_str(dset, "output", src, sizeof src, where));
        distq_dims_format(ndim, dims, dims_text, sizeof dims_text);
        tb_printf(b, "  %s  %s f32, graph output '%s'\n", name, dims_text, src);
    }
cleanup:
    distq_h5_close(&dset);
    return st;
}

/* Lists the root group of a file that is HDF5 but not a distq file. */
static distq_status describe_root(const char *path, hid_t fid, text_buf *b)
{
    distq_status st = DISTQ_OK;
    hid_t obj = H5I_INVALID_HID, type = H5I_INVALID_HID;
    H5G_info_t info;
    char name[DISTQ_NAME_MAX], where[DISTQ_H5_WHERE_MAX], tt[64], dims_text[96];
    DISTQ_H5_CHECK(H5Gget_info(fid, &info), DISTQ_ERR_FORMAT, "%s: cannot list /", path);
    tb_printf(b, "  root group holds %llu object(s):\n", (unsigned long long)info.nlinks);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len;
        DISTQ_H5_CHECK(len = H5Lget_name_by_idx(fid, ".", H5_INDEX_NAME, H5_ITER_INC, i, name,
                                                sizeof name, H5P_DEFAULT),
                       DISTQ_ERR_FORMAT, "%s: cannot list /", path);
        if ((size_t)len >= sizeof name) snprintf(name + sizeof name - 4, 4, "...");
        H5E_BEGIN_TRY { obj = H5Oopen(fid, name, H5P_DEFAULT); }
        H5E_END_TRY;
        if (obj < 0) {
            tb_printf(b, "    %s (link, not followed)\n", name);
            continue;
        }
        if (H5Iget_type(obj) == H5I_DATASET) {
            int64_t dims[DISTQ_MAX_DIMS];
            int ndim = 0;
            snprintf(where, sizeof where, "%s: /%s", path, name);
            DISTQ_H5_CHECK(type = H5Dget_type(obj), DISTQ_ERR_FORMAT, "%s: cannot read its type",
                           where);
            distq_h5_type_text(type, tt, sizeof tt);
            if (distq_h5_dataset_shape(obj, &ndim, dims, where) == DISTQ_OK)
                distq_dims_format(ndim, dims, dims_text, sizeof dims_text);
            else
                snprintf(dims_text, sizeof dims_text, "(rank > %d)", DISTQ_MAX_DIMS);
            tb_printf(b, "    %s  dataset %s %s\n", name, tt, dims_text);
            distq_h5_close(&type);
        } else if (H5Iget_type(obj) == H5I_GROUP) {
            tb_printf(b, "    %s  group\n", name);
        } else {
            tb_printf(b, "    %s  named datatype\n", name);
        }
        distq_h5_close(&obj);
    }
cleanup:
    distq_h5_close(&type);
    distq_h5_close(&obj);
    return st;
}

// --- results files -----------------------------------------------------------------
/* Formats what distq_results_read returns: the library's one reader of the layout. */

static void describe_ranks(const distq_results *r, text_buf *b)
{
    int w_host = 4, w_cpus = 4;
    for (int k = 0; k < r->nranks; k++) {
        if ((int)strlen(r->placement[k].host) > w_host) w_host = (int)strlen(r->placement[k].host);
        if ((int)strlen(r->placement[k].cpus) > w_cpus) w_cpus = (int)strlen(r->placement[k].cpus);
    }
    tb_printf(b, "ranks (%d):\n", r->nranks);
    tb_printf(b, "  rank  %-*s  numa  %-*s  cores  threads  bound_by  membind\n", w_host, "host",
              w_cpus, "cpus");
    for (int k = 0; k < r->nranks; k++) {
        const distq_placement *pl = &r->placement[k];
        char numa[24];
        if (pl->numa_node < 0) snprintf(numa, sizeof numa, "-");
        else snprintf(numa, sizeof numa, "%d", pl->numa_node);
        tb_printf(b, "  %4d  %-*s  %4s  %-*s  %5d  %7d  %-8s  ", k, w_host, pl->host, numa, w_cpus,
                  pl->cpus, pl->n_cores, pl->threads, pl->bound_by);
        if (pl->oversubscribed) tb_printf(b, "%-7s  oversubscribed\n", pl->membind ? "yes" : "no");
        else tb_printf(b, "%s\n", pl->membind ? "yes" : "no");
    }
}

static void describe_points(const distq_results *r, text_buf *b)
{
    tb_printf(b, "points (%d; latency percentiles over all ranks' samples):\n", r->n_points);
    if (r->n_points == 0) return;
    tb_printf(b, "  precision  batch  concurrency    p50 ms    p90 ms    p99 ms    images/s  "
                 "images/s per rank\n");
    for (int i = 0; i < r->n_points; i++) {
        const distq_bench_point *pt = &r->points[i];
        tb_printf(b, "  %-9s  %5lld  %-11s  %8.3f  %8.3f  %8.3f  %10.1f  ", pt->precision,
                  (long long)pt->batch, pt->concurrency, pt->p50_s * 1e3, pt->p90_s * 1e3,
                  pt->p99_s * 1e3, pt->aggregate_images_per_s);
        for (int k = 0; k < pt->nranks; k++) tb_printf(b, "%s%.1f", k ? " " : "", pt->images_per_s[k]);
        tb_printf(b, "\n");
    }
}

static void describe_calibration(const distq_results *r, text_buf *b)
{
    if (r->calib_images == 0 && r->calib_batches == 0) {
        tb_printf(b, "calibration  none in this run\n");
        return;
    }
    tb_printf(b,
              "calibration  %lld images in %lld batches, wall %.3f s (rank 0: forward %.3f s, "
              "observe %.3f s); all-reduce %.3f MB per rank in %lld calls\n",
              (long long)r->calib_images, (long long)r->calib_batches, r->calib_wall_s,
              r->calib_forward_s, r->calib_observe_s, (double)r->reduce_bytes / 1e6,
              (long long)r->reduce_calls);
}

static void describe_accuracy(const distq_results *r, text_buf *b)
{
    const distq_eval_report *e = &r->eval;
    if (!r->has_eval) {
        tb_printf(b, "accuracy     not evaluated in this run\n");
        return;
    }
    tb_printf(b, "accuracy     %lld images: int8 vs fp32 rel_l2 %.4g, top-1 agreement %.2f%%",
              (long long)e->images, e->rel_l2, e->top1_agreement * 100);
    if (e->has_labels)
        tb_printf(b, "; top-1 accuracy fp32 %.2f%%, int8 %.2f%%", e->acc_fp32 * 100, e->acc_int8 * 100);
    else
        tb_printf(b, "; no labels");
    tb_printf(b, "\n");
}

static const char *or_none(const char *s) { return s && s[0] ? s : "(none)"; }

static distq_status describe_results(const char *path, text_buf *b)
{
    distq_results r;
    distq_status st = distq_results_read(path, &r);
    if (st) return st;
    tb_printf(b, "%s: %s version %d\n", path, DISTQ_RESULTS_FORMAT, DISTQ_RESULTS_VERSION);
    tb_printf(b, "  run        %d rank(s), %s, config %s\n", r.nranks, r.date, or_none(r.config_path));
    tb_printf(b, "  model      %s\n", or_none(r.model_path));
    tb_printf(b, "  quantized  %s (observer %s, reduce_range %d)\n", or_none(r.quantized_path),
              r.observer[0] ? r.observer : "?", r.reduce_range);
    describe_ranks(&r, b);
    describe_points(&r, b);
    describe_calibration(&r, b);
    describe_accuracy(&r, b);
    tb_printf(b, "provenance   distq %s (git %s), HDF5 %s, oneDNN %s, MPI %s, hwloc %s\n", r.distq_version,
              r.git_revision, r.hdf5_version, r.onednn_version, r.mpi_version, r.hwloc_version);
    tb_printf(b, "             isa %s (cap %s), date %s\n", r.isa, r.max_isa, r.date);
    distq_results_free(&r);
    return DISTQ_OK;
}

// --- entry point -------------------------------------------------------------------

distq_status distq_h5_describe(const char *path, char **text)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    text_buf b = {0};
    char format[DISTQ_NAME_MAX] = "";
    distq_graph *g = NULL;
    htri_t has;
    if (!path || !text)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_h5_describe: NULL argument");
    *text = NULL;
    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
    DISTQ_H5_CHECK(has = H5Aexists(fid, "format"), DISTQ_ERR_FORMAT,
                   "%s: cannot read root attributes", path);
    if (has) DISTQ_CHECK(distq_h5_attr_read_str(fid, "format", format, sizeof format, path));

    if (strcmp(format, DISTQ_MODEL_FORMAT) == 0) {
        distq_h5_close(&fid);
        DISTQ_CHECK(distq_model_load(path, &g));
        describe_model(g, path, &b);
    } else if (strcmp(format, DISTQ_QMODEL_FORMAT) == 0) {
        distq_h5_close(&fid);
        DISTQ_CHECK(describe_qmodel(path, &b));
    } else if (strcmp(format, DISTQ_DATA_FORMAT) == 0) {
        distq_h5_close(&fid);
        DISTQ_CHECK(describe_data(path, &b));
    } else if (strcmp(format, DISTQ_OUTPUT_FORMAT) == 0) {
        DISTQ_CHECK(describe_output(path, fid, &b));
    } else if (strcmp(format, DISTQ_RESULTS_FORMAT) == 0) {
        distq_h5_close(&fid);
        DISTQ_CHECK(describe_results(path, &b));
    } else {
        if (has)
            tb_printf(&b, "%s: HDF5 file with format '%s', which this distq does not know "
                          "(it reads %s, %s, %s, %s, %s)\n",
                      path, format, DISTQ_MODEL_FORMAT, DISTQ_QMODEL_FORMAT, DISTQ_DATA_FORMAT,
                      DISTQ_OUTPUT_FORMAT, DISTQ_RESULTS_FORMAT);
        else
            tb_printf(&b, "%s: HDF5 file, but not a distq file (no 'format' attribute on /)\n",
                      path);
        DISTQ_CHECK(describe_root(path, fid, &b));
    }
    if (b.oom) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory describing the file", path);
        goto cleanup;
    }
    *text = b.buf;
    b.buf = NULL;
cleanup:
    distq_h5_close(&fid);
    distq_graph_destroy(g);
    distq_free(b.buf);
    return st;
}

distq_status distq_graph_describe(const distq_graph *g, char **text)
{
    text_buf b = {0};
    *text = NULL;
    describe_nodes(g, &b);
    if (b.oom || !b.buf) {
        distq_free(b.buf);
        return distq_error_set(DISTQ_ERR_NOMEM, "out of memory describing the graph");
    }
    *text = b.buf;
    return DISTQ_OK;
}
