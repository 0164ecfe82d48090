/*
 * Quantized model files: save -> load rebuilds the int8 graph bit for bit
 * (and running it gives bit-identical outputs), the float graph and the
 * observers' states are inside, distq_model_load reads the float graph of a
 * quantized file, describe shows the fused graph, and malformed files are
 * rejected naming the file and the culprit.
 *
 * Observer states are filled by hand (distq_hist_observe / distq_minmax_observe
 * on seeded random data) instead of by calibrating: for a file round trip any
 * state is as good, and the test stays fast and independent of the executors.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/exec.h"
#include "distq/io.h"
#include "distq/quant.h"
#include "test_util.h"

/* The quantized model file of p and its converted graph q. */
static distq_status save_qmodel(const distq_prepared *p, const distq_graph *q, const char *path)
{
    distq_quant_record rec = distq_prepared_record(p);
    return distq_qmodel_save(&rec, q, path);
}

enum { HW = 64 }; /* resnet18 at 64x64 keeps the plain-C int8 reference fast */

// --- building quantized models -------------------------------------------------------

static distq_graph *small_resnet18(uint64_t seed)
{
    distq_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(distq_build_resnet18(seed, 1000, &g), DISTQ_OK);
    g->input_dims[2] = g->input_dims[3] = HW;
    CU_ASSERT_EQUAL_FATAL(distq_graph_finalize(g), DISTQ_OK);
    return g;
}

/* Feeds every observer two seeded batches of different ranges (so a
 * histogram's range grows and it is resampled), as calibration would. */
static void fill_observers(distq_prepared *p, uint64_t seed)
{
    enum { N = 4096 };
    static float x[N];
    for (int k = 0; k < p->n_observers; k++) {
        distq_observer *o = &p->observers[k];
        float lo = -0.5f * (float)(k % 3), hi = 1.0f + 0.25f * (float)k;
        for (int b = 0; b < 2; b++) {
            float f = b ? 1.0f : 0.5f;
            test_fill_uniform(x, N, seed * 1000 + (uint64_t)(2 * k + b), lo * f, hi * f);
            if (o->kind == DISTQ_OBSERVER_HISTOGRAM)
                TEST_OK(distq_hist_observe(o->hist, x, N));
            else
                TEST_OK(distq_minmax_observe(&o->mm, x, N));
        }
    }
}

static void quantize(const distq_graph *g, distq_observer_kind kind, uint64_t seed,
                     distq_prepared **p, distq_graph **q)
{
    TEST_OK(distq_prepare(g, kind, p));
    fill_observers(*p, seed);
    TEST_OK(distq_convert(*p, 0, q));
}

// --- comparisons ------------------------------------------------------------------------

static void assert_graphs_equal(const distq_graph *a, const distq_graph *b)
{
    CU_ASSERT_STRING_EQUAL(a->input_name, b->input_name);
    CU_ASSERT_EQUAL_FATAL(a->n_outputs, b->n_outputs); for (int k_ = 0; k_ < a->n_outputs; k_++) CU_ASSERT_STRING_EQUAL(a->output_names[k_], b->output_names[k_]);
    CU_ASSERT_EQUAL_FATAL(a->n_nodes, b->n_nodes);
    CU_ASSERT_EQUAL_FATAL(a->n_params, b->n_params);
    for (int i = 0; i < a->n_nodes; i++) {
        CU_ASSERT_STRING_EQUAL(a->nodes[i].name, b->nodes[i].name);
        CU_ASSERT_EQUAL(a->nodes[i].op, b->nodes[i].op);
    }
    for (int i = 0; i < a->n_params; i++) {
        const distq_tensor *x = &a->params[i], *y = &b->params[i];
        CU_ASSERT_STRING_EQUAL(x->name, y->name);
        CU_ASSERT_EQUAL_FATAL(distq_tensor_nbytes(x), distq_tensor_nbytes(y));
        CU_ASSERT_EQUAL(memcmp(x->data, y->data, distq_tensor_nbytes(x)), 0);
    }
}

/* The int8 graphs: the same nodes (inputs, attributes), values (dtype,
 * shape, qparams) and parameters, byte for byte. */
static void assert_qgraphs_equal(const distq_graph *a, const distq_graph *b)
{
    assert_graphs_equal(a, b);
    CU_ASSERT_EQUAL_FATAL(a->n_values, b->n_values);
    for (int i = 0; i < a->n_values; i++) {
        const distq_value *x = &a->values[i], *y = &b->values[i];
        CU_ASSERT_STRING_EQUAL(x->name, y->name);
        CU_ASSERT_EQUAL(x->dtype, y->dtype);
        CU_ASSERT_EQUAL_FATAL(x->ndim, y->ndim);
        CU_ASSERT_EQUAL(memcmp(x->dims, y->dims, (size_t)x->ndim * sizeof x->dims[0]), 0);
        CU_ASSERT_EQUAL(memcmp(&x->scale, &y->scale, sizeof x->scale), 0);
        CU_ASSERT_EQUAL(x->zero_point, y->zero_point);
        CU_ASSERT_EQUAL(x->quant_max, y->quant_max);
    }
    for (int i = 0; i < a->n_nodes; i++) {
        const distq_node *x = &a->nodes[i], *y = &b->nodes[i];
        CU_ASSERT_EQUAL_FATAL(x->n_inputs, y->n_inputs);
        for (int k = 0; k < x->n_inputs; k++) CU_ASSERT_STRING_EQUAL(x->input_names[k], y->input_names[k]);
        CU_ASSERT(distq_attrs_equal(x->op, &x->attr, &y->attr));
        CU_ASSERT_EQUAL(memcmp(x->params, y->params, sizeof x->params), 0);
    }
}

/* Runs both int8 graphs with the reference executor; outputs must be bit-identical. */
static void assert_same_outputs(const distq_graph *a, const distq_graph *b, uint64_t seed)
{
    enum { N = 2 };
    int64_t in = distq_dims_numel(a->values[a->input_value].ndim, a->values[a->input_value].dims);
    int64_t out = distq_dims_numel(a->values[a->output_values[0]].ndim, a->values[a->output_values[0]].dims);
    float *x = malloc((size_t)(N * in) * sizeof *x), *ya = malloc((size_t)(N * out) * sizeof *ya);
    float *yb = malloc((size_t)(N * out) * sizeof *yb);
    CU_ASSERT_FATAL(x && ya && yb);
    test_fill_uniform(x, N * in, seed, -2.0f, 2.0f);
    distq_exec *ea = NULL, *eb = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, a, N, &ea));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, b, N, &eb));
    TEST_OK(distq_exec_run(ea, x, ya));
    TEST_OK(distq_exec_run(eb, x, yb));
    CU_ASSERT_EQUAL(memcmp(ya, yb, (size_t)(N * out) * sizeof *ya), 0);
    /* not trivially equal: the logits vary */
    int varied = 0;
    for (int64_t i = 1; i < N * out; i++) varied |= ya[i] != ya[0];
    CU_ASSERT(varied);
    distq_exec_destroy(ea);
    distq_exec_destroy(eb);
    free(x);
    free(ya);
    free(yb);
}

// --- reading the file as h5py would ------------------------------------------------------

static float read_f32_attr(hid_t loc, const char *name)
{
    float v = -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Aread(a, H5T_NATIVE_FLOAT, &v) >= 0);
    H5Aclose(a);
    return v;
}

static int64_t read_i64_attr(hid_t loc, const char *name)
{
    int64_t v = -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Aread(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    return v;
}

/* Observer 0 (the graph input's) is stored with its final state and the
 * qparams that convert gave the input's u8 value. */
static void check_observer0(const char *path, const distq_prepared *p, const distq_graph *q)
{
    const distq_observer *o = &p->observers[0];
    const distq_value *xq = &q->values[q->nodes[0].output]; /* the quantize node's output */
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    hid_t grp = H5Gopen2(fid, "/quant/observers/0", H5P_DEFAULT);
    CU_ASSERT_FATAL(grp >= 0);
    float mn = o->kind == DISTQ_OBSERVER_HISTOGRAM ? o->hist->min : o->mm.min;
    float mx = o->kind == DISTQ_OBSERVER_HISTOGRAM ? o->hist->max : o->mm.max;
    CU_ASSERT_EQUAL(read_f32_attr(grp, "min"), mn);
    CU_ASSERT_EQUAL(read_f32_attr(grp, "max"), mx);
    CU_ASSERT_EQUAL(read_f32_attr(grp, "scale"), xq->scale);
    CU_ASSERT_EQUAL(read_i64_attr(grp, "zero_point"), xq->zero_point);
    htri_t has_hist = H5Lexists(grp, "histogram", H5P_DEFAULT);
    CU_ASSERT_EQUAL(has_hist > 0, o->kind == DISTQ_OBSERVER_HISTOGRAM);
    if (o->kind == DISTQ_OBSERVER_HISTOGRAM) {
        static double h[DISTQ_HIST_BINS];
        float lo = 0, hi = 0;
        distq_hist_search(o->hist, &lo, &hi);
        CU_ASSERT_EQUAL(read_f32_attr(grp, "search_min"), lo);
        CU_ASSERT_EQUAL(read_f32_attr(grp, "search_max"), hi);
        hid_t d = H5Dopen2(grp, "histogram", H5P_DEFAULT);
        CU_ASSERT_FATAL(d >= 0);
        CU_ASSERT(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, h) >= 0);
        CU_ASSERT_EQUAL(memcmp(h, o->hist->hist, sizeof h), 0);
        float range[2] = {0, 0};
        hid_t a = H5Aopen(d, "range", H5P_DEFAULT);
        CU_ASSERT(a >= 0 && H5Aread(a, H5T_NATIVE_FLOAT, range) >= 0);
        CU_ASSERT(range[0] == mn && range[1] == mx);
        H5Aclose(a);
        H5Dclose(d);
    }
    H5Gclose(grp);
    H5Fclose(fid);
}

// --- round trips ----------------------------------------------------------------------------

static void roundtrip(const distq_graph *g, distq_observer_kind kind, uint64_t seed,
                      const char *name)
{
    char path[512];
    distq_prepared *p = NULL;
    distq_graph *q = NULL, *q2 = NULL;
    distq_graph *f = NULL;
    int quantized = -1;
    test_tmp_path(path, sizeof path, name);
    quantize(g, kind, seed, &p, &q);
    TEST_OK(save_qmodel(p, q, path));
    TEST_OK(distq_qmodel_load(path, &q2, &f));
    assert_qgraphs_equal(q, q2);
    assert_graphs_equal(p->g, f);
    assert_same_outputs(q, q2, seed + 7);
    check_observer0(path, p, q);
    TEST_OK(distq_model_is_quantized(path, &quantized));
    CU_ASSERT_EQUAL(quantized, 1);
    distq_graph_destroy(f);
    f = NULL;
    /* without the float graph */
    distq_graph_destroy(q2);
    TEST_OK(distq_qmodel_load(path, &q2, NULL));
    assert_qgraphs_equal(q, q2);
    distq_graph_destroy(q2);
    distq_graph_destroy(q);
    distq_prepared_destroy(p);
}

static void test_roundtrip_resnet18(void)
{
    distq_graph *g = small_resnet18(5);
    roundtrip(g, DISTQ_OBSERVER_HISTOGRAM, 11, "resnet18_hist.h5");
    roundtrip(g, DISTQ_OBSERVER_MINMAX, 12, "resnet18_minmax.h5");
    distq_graph_destroy(g);
}

static void test_roundtrip_linear(void)
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_linear(3, &g));
    CU_ASSERT_EQUAL(g->input_ndim, 2);
    CU_ASSERT_EQUAL(g->input_dims[1], 1024);
    roundtrip(g, DISTQ_OBSERVER_HISTOGRAM, 13, "linear_hist.h5");
    roundtrip(g, DISTQ_OBSERVER_MINMAX, 14, "linear_minmax.h5");
    distq_graph_destroy(g);
}

/* The linear model, quantized with histograms, saved once (fixture of the malformed cases). */
static const char *linear_qmodel_path(void)
{
    static char path[512];
    if (path[0]) return path;
    distq_graph *g = NULL;
    distq_prepared *p = NULL;
    distq_graph *q = NULL;
    test_tmp_path(path, sizeof path, "linear_q.h5");
    TEST_OK(distq_build_linear(4, &g));
    quantize(g, DISTQ_OBSERVER_HISTOGRAM, 15, &p, &q);
    TEST_OK(save_qmodel(p, q, path));
    distq_graph_destroy(q);
    distq_prepared_destroy(p);
    distq_graph_destroy(g);
    return path;
}

/* Every tool that takes a float model takes a quantized one: its float graph. */
static void test_model_load_reads_float_graph(void)
{
    char qpath[512], fpath[512];
    distq_graph *g = small_resnet18(6), *f = NULL;
    distq_prepared *p = NULL;
    distq_graph *q = NULL;
    int quantized = -1;
    test_tmp_path(qpath, sizeof qpath, "resnet18_q.h5");
    test_tmp_path(fpath, sizeof fpath, "resnet18_folded.h5");
    quantize(g, DISTQ_OBSERVER_MINMAX, 16, &p, &q);
    TEST_OK(save_qmodel(p, q, qpath));
    TEST_OK(distq_model_load(qpath, &f));
    assert_graphs_equal(p->g, f);
    distq_graph_destroy(f);
    f = NULL;

    TEST_OK(distq_model_save(p->g, fpath));
    TEST_OK(distq_model_is_quantized(fpath, &quantized));
    CU_ASSERT_EQUAL(quantized, 0);
    distq_graph *none = NULL;
    TEST_ERR_PATH(distq_qmodel_load(fpath, &none, &f), DISTQ_ERR_FORMAT,
                  "not a quantized model (format distq-model); run distq calibrate first", fpath);
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_PTR_NULL(f);

    char dpath[512];
    float img[3 * 4] = {0};
    int64_t dims[4] = {1, 3, 2, 2};
    test_tmp_path(dpath, sizeof dpath, "data.h5");
    TEST_OK(distq_data_write(dpath, img, 4, dims, NULL));
    TEST_ERR_PATH(distq_model_is_quantized(dpath, &quantized), DISTQ_ERR_FORMAT,
                  "format is 'distq-data', expected 'distq-model'", dpath);
    TEST_ERR_PATH(distq_qmodel_load(dpath, &none, NULL), DISTQ_ERR_FORMAT,
                  "format is 'distq-data', expected 'distq-qmodel'", dpath);
    distq_graph_destroy(q);
    distq_prepared_destroy(p);
    distq_graph_destroy(g);
}

static void test_describe(void)
{
    char path[512];
    char *text = NULL;
    distq_graph *g = small_resnet18(7);
    distq_prepared *p = NULL;
    distq_graph *q = NULL;
    test_tmp_path(path, sizeof path, "resnet18_describe.h5");
    quantize(g, DISTQ_OBSERVER_HISTOGRAM, 17, &p, &q);
    TEST_OK(save_qmodel(p, q, path));
    TEST_OK(distq_h5_describe(path, &text));
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    static const char *const want[] = {
        "distq-qmodel version 3",
        "x86 (X86InductorQuantizer default static config)",
        "conv2d",
        "k3x3 s1 p1 +sum +relu -> u8 (s ",
        "max_pool2d",
        "input.quant (1, 3, 64, 64) u8",
        "layer1.0.conv2",
        "512 -> 1000 -> f32",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(text, want[i]))
            fprintf(stderr, "\n  describe lacks \"%s\":\n%s\n", want[i], text);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want[i]));
    }
    char obs[64];
    snprintf(obs, sizeof obs, "observers  %d histogram", p->n_observers);
    if (!strstr(text, obs)) fprintf(stderr, "\n  describe lacks \"%s\":\n%s\n", obs, text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, obs));
    distq_free(text);
    distq_graph_destroy(q);
    distq_prepared_destroy(p);
    distq_graph_destroy(g);
}

// --- malformed files --------------------------------------------------------------------------

static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    CU_ASSERT_FATAL(in && out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) CU_ASSERT_EQUAL(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void set_str_attr(hid_t fid, const char *obj, const char *name, const char *value)
{
    hid_t loc = H5Oopen(fid, obj, H5P_DEFAULT);
    CU_ASSERT_FATAL(loc >= 0);
    if (H5Aexists(loc, name) > 0) CU_ASSERT(H5Adelete(loc, name) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    CU_ASSERT(H5Tset_size(t, H5T_VARIABLE) >= 0);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Awrite(a, t, &value) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    H5Oclose(loc);
}

static void set_strs_attr(hid_t fid, const char *obj, const char *name, int n, const char **values)
{
    hid_t loc = H5Oopen(fid, obj, H5P_DEFAULT);
    CU_ASSERT_FATAL(loc >= 0);
    if (H5Aexists(loc, name) > 0) CU_ASSERT(H5Adelete(loc, name) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    CU_ASSERT(H5Tset_size(t, H5T_VARIABLE) >= 0);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Awrite(a, t, values) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    H5Oclose(loc);
}

static void delete_attr(hid_t fid, const char *obj, const char *name)
{
    hid_t loc = H5Oopen(fid, obj, H5P_DEFAULT);
    CU_ASSERT_FATAL(loc >= 0);
    CU_ASSERT(H5Adelete(loc, name) >= 0);
    H5Oclose(loc);
}

static void replace_dataset(hid_t fid, const char *name, hid_t type, int ndim, const hsize_t *dims)
{
    CU_ASSERT(H5Ldelete(fid, name, H5P_DEFAULT) >= 0);
    hid_t s = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(fid, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(d >= 0);
    H5Dclose(d);
    H5Sclose(s);
}

/* The linear qmodel's int8 graph: nodes input.quant (quantize) and linear
 * (s8 weight linear.weight (1000, 1024), scales linear.weight_scale). */
#define NODE "/int8/graph/nodes/linear"
#define WEIGHT "/int8/tensors/linear.weight"

static void set_version(hid_t f, int64_t v)
{
    delete_attr(f, "/", "version");
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "version", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
}
static void mut_drop_weight(hid_t f) { CU_ASSERT(H5Ldelete(f, WEIGHT, H5P_DEFAULT) >= 0); }
static void mut_bad_op(hid_t f) { set_str_attr(f, NODE, "op", "qsoftmax"); }
static void mut_version1(hid_t f) { set_version(f, 1); }
static void mut_version4(hid_t f) { set_version(f, 4); }
static void mut_format(hid_t f) { set_str_attr(f, "/", "format", "distq-data"); }
static void mut_f32_weight(hid_t f)
{
    hsize_t d[2] = {1000, 1024};
    replace_dataset(f, WEIGHT, H5T_IEEE_F32LE, 2, d);
}
static void mut_weight_shape(hid_t f)
{
    hsize_t d[2] = {1000, 1000};
    replace_dataset(f, WEIGHT, H5T_STD_I8LE, 2, d);
}
static void mut_scale_len(hid_t f)
{
    hsize_t d[1] = {999};
    replace_dataset(f, "/int8/tensors/linear.weight_scale", H5T_IEEE_F32LE, 1, d);
}
static void mut_scale_zero(hid_t f)
{
    hsize_t d[1] = {1000};
    replace_dataset(f, "/int8/tensors/linear.weight_scale", H5T_IEEE_F32LE, 1, d); /* zero-filled */
}
static void mut_input(hid_t f)
{
    const char *ins[1] = {"nope"};
    set_strs_attr(f, NODE, "inputs", 1, ins);
}
static void mut_no_scale(hid_t f) { delete_attr(f, "/int8/graph/nodes/input.quant", "out_scale"); }
static void mut_no_quant(hid_t f) { CU_ASSERT(H5Ldelete(f, "/quant", H5P_DEFAULT) >= 0); }
static void mut_no_int8(hid_t f) { CU_ASSERT(H5Ldelete(f, "/int8", H5P_DEFAULT) >= 0); }
static void mut_recipe(hid_t f) { set_str_attr(f, "/quant", "activation_dtype", "s8"); }
static void mut_float_op(hid_t f)
{
    /* the linear reads u8 and has s8 weights: as a float-only op it is refused */
    set_str_attr(f, NODE, "op", "sigmoid");
}

typedef struct {
    const char *file;
    void (*mutate)(hid_t);
    const char *needle;
} broken_case;

static void test_malformed(void)
{
    static const broken_case cases[] = {
        {"no_weight.h5", mut_drop_weight,
         "(int8 graph /int8): node 'linear' uses parameter 'linear.weight', but there is no dataset"},
        {"bad_op.h5", mut_bad_op, "node 'linear' has unknown op 'qsoftmax' (known: conv2d"},
        {"version1.h5", mut_version1, "distq-qmodel version 1 was written by an earlier distq"},
        {"version4.h5", mut_version4, "distq-qmodel version 4 is not supported"},
        {"format.h5", mut_format, "format is 'distq-data', expected 'distq-qmodel'"},
        {"f32_weight.h5", mut_f32_weight, "weight 'linear.weight' has dtype f32, expected s8"},
        {"weight_shape.h5", mut_weight_shape,
         "weight 'linear.weight' has shape (1000, 1000), expected (1000, 1024)"},
        {"scale_len.h5", mut_scale_len,
         "weight_scale 'linear.weight_scale' has shape (999), expected (1000)"},
        {"scale_zero.h5", mut_scale_zero, "weight scale 0 is 0, must be finite and > 0"},
        {"input.h5", mut_input, "'nope'"},
        {"no_scale.h5", mut_no_scale, "(int8 graph /int8): /graph/nodes/input.quant: missing attribute 'out_scale'"},
        {"no_quant.h5", mut_no_quant, "missing group /quant"},
        {"no_int8.h5", mut_no_int8, "missing group /int8"},
        {"recipe.h5", mut_recipe, "attribute 'activation_dtype' is 's8'; this distq runs the x86"},
        {"float_op.h5", mut_float_op, "node 'linear' (sigmoid): input 'input.quant' is u8"},
    };
    const char *src = linear_qmodel_path();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        distq_graph *q = NULL;
        distq_graph *f = NULL;
        test_tmp_path(path, sizeof path, cases[i].file);
        copy_file(src, path);
        hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        CU_ASSERT_FATAL(fid >= 0);
        cases[i].mutate(fid);
        CU_ASSERT(H5Fclose(fid) >= 0);
        TEST_ERR_PATH(distq_qmodel_load(path, &q, &f), DISTQ_ERR_FORMAT, cases[i].needle, path);
        CU_ASSERT_PTR_NULL(q);
        CU_ASSERT_PTR_NULL(f);
    }
    /* version 2 (before padding_end and post_op, which it lacks) still loads */
    {
        char path[512];
        distq_graph *q2 = NULL, *f2 = NULL;
        test_tmp_path(path, sizeof path, "version2.h5");
        copy_file(src, path);
        hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        CU_ASSERT_FATAL(fid >= 0);
        set_version(fid, 2);
        CU_ASSERT(H5Fclose(fid) >= 0);
        TEST_OK(distq_qmodel_load(path, &q2, &f2));
        distq_graph_destroy(q2);
        distq_graph_destroy(f2);
    }
    /* the untouched fixture loads */
    distq_graph *q = NULL;
    TEST_OK(distq_qmodel_load(src, &q, NULL));
    distq_graph_destroy(q);
}

int main(void)
{
    static const test_case cases[] = {
        {"resnet18 int8 round trip, bit-identical run", test_roundtrip_resnet18},
        {"linear int8 round trip, bit-identical run", test_roundtrip_linear},
        {"model_load reads a qmodel's float graph", test_model_load_reads_float_graph},
        {"describe a qmodel", test_describe},
        {"malformed qmodel files", test_malformed},
        {"no HDF5 handles left open", test_assert_no_open_hdf5},
    };
    return test_run_suite("qmodel_io", cases, sizeof cases / sizeof cases[0]);
}
