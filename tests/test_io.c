/*
 * HDF5 file layer: model, data and output files round trip bit-exactly; every
 * malformed file is rejected with a message naming the file and the culprit;
 * saves are atomic. Malformed fixtures are written with the HDF5 C API into
 * test_tmpdir().
 */
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "distq/exec.h"
#include "distq/io.h"
#include "distq/passes.h"
#include "test_util.h"

// --- helpers ------------------------------------------------------------------------

/* Reads a whole file (malloc'd; *len gets its size), NULL if unreadable. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *len = (size_t)n;
    return buf;
}

/* Writes the first nbytes of src (all if nbytes == (size_t)-1) to dst. */
static void copy_prefix(const char *src, const char *dst, size_t nbytes)
{
    size_t len = 0;
    char *buf = slurp(src, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    if (nbytes > len) nbytes = len;
    FILE *f = fopen(dst, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(buf, 1, nbytes, f), nbytes);
    fclose(f);
    free(buf);
}

/* Number of leftover "*.tmp.*" files in the test directory. */
static int count_tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(test_tmpdir());
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* Asserts two graphs have the same input, output, nodes (names, ops,
 * attributes, wiring) in the same order and byte-identical parameters. */
static void assert_graphs_equal(const distq_graph *a, const distq_graph *b)
{
    CU_ASSERT_TRUE(b->finalized);
    CU_ASSERT_STRING_EQUAL(a->input_name, b->input_name);
    CU_ASSERT_EQUAL_FATAL(a->input_ndim, b->input_ndim);
    CU_ASSERT_EQUAL(memcmp(a->input_dims, b->input_dims, (size_t)a->input_ndim * sizeof(int64_t)),
                    0);
    CU_ASSERT_EQUAL_FATAL(a->n_outputs, b->n_outputs); for (int k_ = 0; k_ < a->n_outputs; k_++) CU_ASSERT_STRING_EQUAL(a->output_names[k_], b->output_names[k_]);
    CU_ASSERT_EQUAL_FATAL(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        const distq_node *x = &a->nodes[i], *y = &b->nodes[i];
        CU_ASSERT_STRING_EQUAL(x->name, y->name);
        CU_ASSERT_EQUAL(x->op, y->op);
        CU_ASSERT(distq_attrs_equal(x->op, &x->attr, &y->attr));
        CU_ASSERT_EQUAL_FATAL(x->n_inputs, y->n_inputs);
        for (int k = 0; k < x->n_inputs; k++)
            CU_ASSERT_STRING_EQUAL(x->input_names[k], y->input_names[k]);
        for (int k = 0; k < DISTQ_MAX_PARAMS; k++)
            CU_ASSERT_STRING_EQUAL(x->param_names[k], y->param_names[k]);
        CU_ASSERT_STRING_EQUAL(x->output_name, y->output_name);
    }
    CU_ASSERT_EQUAL_FATAL(a->n_params, b->n_params);
    for (int i = 0; i < a->n_params; i++) {
        const distq_tensor *x = &a->params[i], *y = &b->params[i]; /* order kept too */
        CU_ASSERT_STRING_EQUAL_FATAL(x->name, y->name);
        CU_ASSERT_EQUAL(x->dtype, y->dtype);
        CU_ASSERT_EQUAL_FATAL(x->ndim, y->ndim);
        CU_ASSERT_EQUAL(memcmp(x->dims, y->dims, (size_t)x->ndim * sizeof(int64_t)), 0);
        CU_ASSERT_EQUAL(memcmp(x->data, y->data, distq_tensor_nbytes(x)), 0);
    }
    CU_ASSERT_EQUAL_FATAL(a->n_values, b->n_values);
    for (int i = 0; i < a->n_values; i++) {
        CU_ASSERT_STRING_EQUAL(a->values[i].name, b->values[i].name);
        CU_ASSERT_EQUAL(memcmp(a->values[i].dims, b->values[i].dims, sizeof a->values[i].dims), 0);
    }
}

// --- HDF5 C API helpers for malformed fixtures ----------------------------------------

static void h5_set_str_attr(hid_t loc, const char *name, const char *value)
{
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
}

static void h5_set_i64_attr(hid_t loc, const char *name, int64_t v)
{
    if (H5Aexists(loc, name) > 0) CU_ASSERT(H5Adelete(loc, name) >= 0);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
}

/* Replaces dataset name by an unwritten one (fill value 0) of type and shape. */
static void h5_replace_dataset(hid_t fid, const char *name, hid_t type, int ndim,
                               const hsize_t *dims)
{
    if (H5Lexists(fid, name, H5P_DEFAULT) > 0) CU_ASSERT(H5Ldelete(fid, name, H5P_DEFAULT) >= 0);
    hid_t s = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(fid, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    H5Dclose(d);
    H5Sclose(s);
}

typedef void (*mutate_fn)(hid_t fid);

/* Copies src to tmpdir/name, applies mutate with the HDF5 C API, returns the path. */
static void make_broken(const char *src, const char *name, mutate_fn mutate, char *path, size_t len)
{
    test_tmp_path(path, len, name);
    copy_prefix(src, path, (size_t)-1);
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    mutate(fid);
    CU_ASSERT(H5Fclose(fid) >= 0);
}

/* A small graph that uses every op and every stored attribute, with
 * non-default values, random f32 parameters and an s64 scalar. */
static distq_graph *build_tiny(void)
{
    distq_graph *g = NULL;
    distq_tensor *t = NULL;
    int64_t in[4] = {1, 2, 6, 6}, wc[4] = {3, 2, 3, 3}, c3 = 3, wl[2] = {5, 3}, c5 = 5;
    static const char *const bn_params[DISTQ_MAX_PARAMS] = {
        "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"};
    const char *conv_params[DISTQ_MAX_PARAMS] = {"conv.weight", "conv.bias"};
    const char *lin_params[DISTQ_MAX_PARAMS] = {"linear.weight", "linear.bias"};
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, "x", 4, in));
    TEST_OK(distq_graph_add_param(g, "conv.weight", DISTQ_DTYPE_F32, 4, wc, NULL, &t));
    test_fill_uniform(t->data, distq_tensor_numel(t), 1, -1.0f, 1.0f);
    TEST_OK(distq_graph_add_param(g, "conv.bias", DISTQ_DTYPE_F32, 1, &c3, NULL, &t));
    test_fill_uniform(t->data, 3, 2, -1.0f, 1.0f);
    for (int i = 0; i < 4; i++) {
        TEST_OK(distq_graph_add_param(g, bn_params[i], DISTQ_DTYPE_F32, 1, &c3, NULL, &t));
        test_fill_uniform(t->data, 3, 3 + (uint64_t)i, 0.5f, 1.5f);
    }
    TEST_OK(distq_graph_add_param(g, bn_params[4], DISTQ_DTYPE_S64, 0, NULL, NULL, &t));
    *(int64_t *)t->data = 42;
    TEST_OK(distq_graph_add_param(g, "linear.weight", DISTQ_DTYPE_F32, 2, wl, NULL, &t));
    test_fill_uniform(t->data, distq_tensor_numel(t), 8, -1.0f, 1.0f);
    TEST_OK(distq_graph_add_param(g, "linear.bias", DISTQ_DTYPE_F32, 1, &c5, NULL, &t));
    test_fill_uniform(t->data, 5, 9, -1.0f, 1.0f);

    distq_attrs conv = distq_attrs_default(DISTQ_OP_CONV2D);
    distq_attrs bn = distq_attrs_default(DISTQ_OP_BATCH_NORM);
    distq_attrs pool = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    conv.stride[0] = 2, conv.stride[1] = 1, conv.padding[0] = 1, conv.padding[1] = 2;
    conv.dilation[1] = 2;
    bn.eps = 1e-3f, bn.momentum = 0.05f;
    pool.kernel[0] = pool.kernel[1] = 2, pool.stride[0] = pool.stride[1] = 2;
    pool.padding[0] = pool.padding[1] = 1, pool.ceil_mode = 1;
    const char *in_x[] = {"x"}, *in_conv[] = {"conv"}, *in_bn[] = {"bn"}, *in_relu[] = {"relu"};
    const char *in_pool[] = {"pool"}, *in_avg[] = {"avgpool"}, *in_flat[] = {"flatten"};
    TEST_OK(distq_graph_add_node(g, "conv", DISTQ_OP_CONV2D, &conv, 1, in_x, conv_params, "conv"));
    TEST_OK(distq_graph_add_node(g, "bn", DISTQ_OP_BATCH_NORM, &bn, 1, in_conv, bn_params, "bn"));
    TEST_OK(distq_graph_add_node(g, "relu", DISTQ_OP_RELU, NULL, 1, in_bn, NULL, "relu"));
    TEST_OK(distq_graph_add_node(g, "pool", DISTQ_OP_MAX_POOL2D, &pool, 1, in_relu, NULL, "pool"));
    TEST_OK(distq_graph_add_node(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, 1, in_pool, NULL,
                                 "avgpool"));
    TEST_OK(distq_graph_add_node(g, "flatten", DISTQ_OP_FLATTEN, NULL, 1, in_avg, NULL, "flatten"));
    TEST_OK(distq_graph_add_node(g, "linear", DISTQ_OP_LINEAR, NULL, 1, in_flat, lin_params,
                                 "linear"));
    TEST_OK(distq_graph_set_output(g, "linear"));
    TEST_OK(distq_graph_finalize(g));
    return g;
}

/* A linear model's file (4 MB), written once. */
static const char *linear_model_path(void)
{
    static char path[512];
    if (!path[0]) {
        distq_graph *g = NULL;
        test_tmp_path(path, sizeof path, "linear.h5");
        TEST_OK(distq_build_linear(3, &g));
        TEST_OK(distq_model_save(g, path));
        distq_graph_destroy(g);
    }
    return path;
}

/* The tiny model's file, written once; the malformed fixtures start from it. */
static const char *tiny_model_path(void)
{
    static char path[512];
    if (!path[0]) {
        distq_graph *g = build_tiny();
        test_tmp_path(path, sizeof path, "tiny.h5");
        TEST_OK(distq_model_save(g, path));
        distq_graph_destroy(g);
    }
    return path;
}

// --- model round trips ----------------------------------------------------------------

/* Asserts that text has a line containing key and the other needles (NULL = none). */
static void expect_line(const char *text, const char *key, const char *a, const char *b,
                        const char *c)
{
    const char *hit = strstr(text, key);
    CU_ASSERT_PTR_NOT_NULL(hit);
    if (!hit) {
        fprintf(stderr, "\n  no line with \"%s\" in:\n%s", key, text);
        return;
    }
    const char *start = hit, *end = strchr(hit, '\n');
    while (start > text && start[-1] != '\n') start--;
    size_t len = end ? (size_t)(end - start) : strlen(start);
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)len, start);
    const char *needles[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (!needles[i]) continue;
        if (!strstr(line, needles[i]))
            fprintf(stderr, "\n  line \"%s\" lacks \"%s\"\n", line, needles[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(line, needles[i]));
    }
}

/* Saves g to tmpdir/name, loads it back and compares; saves again over it. */
static void roundtrip(distq_graph *g, const char *name, char *path, size_t len)
{
    distq_graph *back = NULL;
    test_tmp_path(path, len, name);
    TEST_OK(distq_model_save(g, path));
    TEST_OK(distq_model_load(path, &back));
    assert_graphs_equal(g, back);
    TEST_OK(distq_model_save(back, path));
    CU_ASSERT_EQUAL(count_tmp_files(), 0);
    distq_graph_destroy(back);
}

static void test_model_roundtrip_resnet18(void)
{
    char path[512];
    char *text = NULL;
    distq_graph *g = NULL;
    TEST_OK(distq_build_resnet18(11, 1000, &g));
    roundtrip(g, "resnet18.h5", path, sizeof path);

    TEST_OK(distq_h5_describe(path, &text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "distq-model version 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "input   input (1, 3, 224, 224) f32"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "nodes (69, in execution order)"));
    expect_line(text, " layer1.0.conv1 ", "conv2d", "in: maxpool", "k3x3 s1 p1");
    expect_line(text, " conv1 ", "   0 conv2d", "in: input", "k7x7 s2 p3");
    expect_line(text, " layer2.0.downsample.0 ", "in: layer1.1.relu_1", "k1x1 s2 p0", NULL);
    expect_line(text, " layer1.0.add ", "in: layer1.0.bn2, maxpool", NULL, NULL);
    expect_line(text, "out: fc (1, 1000)", " linear ", "in: flatten", "512 -> 1000");
    expect_line(text, "  bn1.num_batches_tracked ", "s64 ()", " 8 B", NULL);
    expect_line(text, "  fc.weight ", "f32 (1000, 512)", "2048000 B", NULL);
    expect_line(text, "total: ", "122 tensors", "46.80 MB", NULL);
    distq_free(text);
    remove(path); /* 47 MB */
    distq_graph_destroy(g);
}

static void test_model_roundtrip_linear(void)
{
    char path[512];
    distq_graph *g = NULL;
    TEST_OK(distq_build_linear(3, &g));
    roundtrip(g, "linear_rt.h5", path, sizeof path);
    distq_graph_destroy(g);
}

static void test_model_roundtrip_tiny(void)
{
    char path[512];
    distq_graph *g = build_tiny(), *back = NULL;
    roundtrip(g, "tiny_rt.h5", path, sizeof path);
    TEST_OK(distq_model_load(tiny_model_path(), &back));
    assert_graphs_equal(g, back);
    CU_ASSERT_EQUAL(back->nodes[1].attr.eps, 1e-3f);
    CU_ASSERT_EQUAL(back->nodes[3].attr.ceil_mode, 1);
    CU_ASSERT_EQUAL(*(int64_t *)distq_graph_find_param(back, "bn.num_batches_tracked")->data, 42);
    distq_graph_destroy(back);
    distq_graph_destroy(g);
}

/* The ops added with the registry, with non-default attributes, and a
 * concat of 4 inputs (a variadic "inputs" attribute). */
static void test_model_roundtrip_new_ops(void)
{
    int64_t in[4] = {1, 2, 4, 4};
    distq_graph *g = NULL, *back = NULL;
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, "x", 4, in));
    distq_attrs hs = distq_attrs_default(DISTQ_OP_HARDSIGMOID), clip = distq_attrs_default(DISTQ_OP_CLIP);
    distq_attrs cat = distq_attrs_default(DISTQ_OP_CONCAT);
    hs.alpha = 0.2f, hs.beta = 0.4f, clip.min = -1.0f, clip.max = 2.0f, cat.axis = -3;
    const char *x[] = {"x"}, *a[] = {"hswish"}, *b[] = {"hsig"}, *c[] = {"clip"}, *m[] = {"sig", "gap"};
    const char *cat_in[] = {"x", "hswish", "mul", "clip"};
    TEST_OK(distq_graph_add_node(g, "hswish", DISTQ_OP_HARDSWISH, NULL, 1, x, NULL, "hswish"));
    TEST_OK(distq_graph_add_node(g, "hsig", DISTQ_OP_HARDSIGMOID, &hs, 1, a, NULL, "hsig"));
    TEST_OK(distq_graph_add_node(g, "clip", DISTQ_OP_CLIP, &clip, 1, b, NULL, "clip"));
    TEST_OK(distq_graph_add_node(g, "sig", DISTQ_OP_SIGMOID, NULL, 1, c, NULL, "sig"));
    TEST_OK(distq_graph_add_node(g, "gap", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, 1, x, NULL, "gap"));
    TEST_OK(distq_graph_add_node(g, "mul", DISTQ_OP_MUL, NULL, 2, m, NULL, "mul"));
    TEST_OK(distq_graph_add_node(g, "cat", DISTQ_OP_CONCAT, &cat, 4, cat_in, NULL, "cat"));
    TEST_OK(distq_graph_set_output(g, "cat"));
    TEST_OK(distq_graph_finalize(g));
    char path[512];
    roundtrip(g, "new_ops_rt.h5", path, sizeof path);
    TEST_OK(distq_model_load(path, &back));
    assert_graphs_equal(g, back);
    int k = distq_graph_find_node(back, "cat");
    CU_ASSERT_EQUAL(back->nodes[k].attr.axis, -3);
    CU_ASSERT_EQUAL(back->values[back->output_values[0]].dims[1], 8);
    CU_ASSERT_EQUAL(back->nodes[distq_graph_find_node(back, "clip")].attr.min, -1.0f);
    distq_graph_destroy(back);
    distq_graph_destroy(g);
}

/* "<prefix>" followed by 'a'..'z' repeated up to len bytes, in buf[len + 1]. */
static const char *long_name(char *buf, size_t len, const char *prefix)
{
    size_t p = strlen(prefix);
    memcpy(buf, prefix, p);
    for (size_t i = p; i < len; i++) buf[i] = (char)('a' + i % 26);
    buf[len] = '\0';
    return buf;
}

/* Names of any length (ONNX's run long) and with '/' (HDF5 reserves it; the
 * file escapes it, and '%'): a conv + bn + relu graph whose every name is 300
 * to 700 bytes survives BN folding (which makes a bias
 * named after the conv), cloning, a file round trip and get_value on both
 * backends by name. */
static void test_model_long_names(void)
{
    static char x[301], conv[402], w[503], bn[604], relu[705], bnp[4][520];
    long_name(x, 300, "x/");
    long_name(conv, 401, "conv/");
    long_name(w, 502, "conv.weight/");
    long_name(bn, 603, "bn/");
    long_name(relu, 704, "relu/%2F%/");
    for (int k = 0; k < 4; k++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "bn.p%d/", k);
        long_name(bnp[k], 519, prefix);
    }
    int64_t in[4] = {1, 2, 5, 5}, wd[4] = {3, 2, 3, 3}, c3 = 3;
    float wv[54], ones[3] = {1, 1, 1}, zeros[3] = {0, 0, 0};
    for (int i = 0; i < 54; i++) wv[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    distq_graph *g = NULL, *clone = NULL, *back = NULL;
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, x, 4, in));
    TEST_OK(distq_graph_add_param(g, w, DISTQ_DTYPE_F32, 4, wd, wv, NULL));
    TEST_OK(distq_graph_add_param(g, bnp[0], DISTQ_DTYPE_F32, 1, &c3, ones, NULL));
    TEST_OK(distq_graph_add_param(g, bnp[1], DISTQ_DTYPE_F32, 1, &c3, zeros, NULL));
    TEST_OK(distq_graph_add_param(g, bnp[2], DISTQ_DTYPE_F32, 1, &c3, zeros, NULL));
    TEST_OK(distq_graph_add_param(g, bnp[3], DISTQ_DTYPE_F32, 1, &c3, ones, NULL));
    distq_attrs ca = distq_attrs_default(DISTQ_OP_CONV2D);
    ca.padding[0] = ca.padding[1] = 1;
    const char *xin[] = {x}, *cin[] = {conv}, *bin[] = {bn};
    const char *cp[DISTQ_MAX_PARAMS] = {w}, *bp[DISTQ_MAX_PARAMS] = {bnp[0], bnp[1], bnp[2], bnp[3]};
    TEST_OK(distq_graph_add_node(g, conv, DISTQ_OP_CONV2D, &ca, 1, xin, cp, conv));
    TEST_OK(distq_graph_add_node(g, bn, DISTQ_OP_BATCH_NORM, NULL, 1, cin, bp, bn));
    TEST_OK(distq_graph_add_node(g, relu, DISTQ_OP_RELU, NULL, 1, bin, NULL, relu));
    TEST_OK(distq_graph_set_output(g, relu));
    TEST_OK(distq_graph_finalize(g));
    int folded = 0;
    TEST_OK(distq_pass_fold_bn(g, &folded));
    CU_ASSERT_EQUAL(folded, 1);
    char bias[420];
    snprintf(bias, sizeof bias, "%s.bias", conv);
    CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, bias));
    CU_ASSERT_EQUAL(strlen(g->values[g->output_values[0]].name), 704);
    TEST_OK(distq_graph_clone(g, &clone));
    char path[512];
    roundtrip(clone, "long_names_rt.h5", path, sizeof path);
    TEST_OK(distq_model_load(path, &back));
    assert_graphs_equal(g, back);
    { /* the group's link name escapes '/' and '%' ("relu/%2F%/..." -> "relu%2F%252F%25%2F...") */
        char link[760];
        snprintf(link, sizeof link, "/graph/nodes/relu%%2F%%252F%%25%%2F%s", relu + 10);
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        CU_ASSERT_FATAL(f >= 0);
        CU_ASSERT(H5Lexists(f, link, H5P_DEFAULT) > 0);
        H5Fclose(f);
    }
    for (int b = 0; b < 2; b++) {
        distq_exec *e = NULL;
        float input[50], out[75], got[75];
        for (int i = 0; i < 50; i++) input[i] = (float)i / 50.0f - 0.5f;
        TEST_OK(distq_exec_create(b ? DISTQ_BACKEND_ONEDNN : DISTQ_BACKEND_REF, back, 1, &e));
        TEST_OK(distq_exec_run(e, input, out));
        TEST_OK(distq_exec_get_value(e, relu, got));
        CU_ASSERT_EQUAL(memcmp(out, got, sizeof out), 0);
        distq_exec_destroy(e);
    }
    distq_graph_destroy(back);
    distq_graph_destroy(clone);
    distq_graph_destroy(g);
}

/* /graph must survive H5Ocopy (h5copy, h5py's Group.copy, torch2h5.py): HDF5
 * before 1.14.4 segfaults copying dense variable-length string attributes
 * (HDFGroup/hdf5#2414), so the writer keeps them compact. */
static void test_model_graph_copies(void)
{
    char dst[512];
    test_tmp_path(dst, sizeof dst, "graph_copy.h5");
    hid_t src = H5Fopen(tiny_model_path(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t out = H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(src >= 0 && out >= 0);
    CU_ASSERT(H5Ocopy(src, "/graph", out, "/graph", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hid_t pool = H5Gopen2(out, "/graph/nodes/pool", H5P_DEFAULT);
    CU_ASSERT(pool >= 0);
    CU_ASSERT(H5Aexists(pool, "ceil_mode") > 0);
    H5Gclose(pool);
    H5Fclose(out);
    H5Fclose(src);
}

/* Files written without node_order (e.g. by hand with h5py) still load: nodes
 * are then taken in name order and sorted topologically. */
static void drop_node_order(hid_t fid)
{
    hid_t g = H5Gopen2(fid, "/graph", H5P_DEFAULT);
    CU_ASSERT(H5Adelete(g, "node_order") >= 0);
    H5Gclose(g);
}

static void test_model_without_node_order(void)
{
    char path[512];
    distq_graph *g = build_tiny(), *back = NULL;
    make_broken(tiny_model_path(), "no_order.h5", drop_node_order, path, sizeof path);
    TEST_OK(distq_model_load(path, &back));
    assert_graphs_equal(g, back);
    distq_graph_destroy(back);
    distq_graph_destroy(g);
}

// --- malformed model files -----------------------------------------------------------

static void mut_drop_weight(hid_t fid)
{
    CU_ASSERT(H5Ldelete(fid, "/tensors/linear.weight", H5P_DEFAULT) >= 0);
}

static void mut_f64_weight(hid_t fid)
{
    hsize_t dims[2] = {5, 3};
    h5_replace_dataset(fid, "/tensors/linear.weight", H5T_IEEE_F64LE, 2, dims);
}

static void mut_bad_bias_shape(hid_t fid)
{
    hsize_t dims[1] = {4};
    h5_replace_dataset(fid, "/tensors/linear.bias", H5T_IEEE_F32LE, 1, dims);
}

static void mut_rank9(hid_t fid)
{
    hsize_t dims[9] = {1, 1, 1, 1, 1, 1, 1, 5, 3};
    h5_replace_dataset(fid, "/tensors/linear.weight", H5T_IEEE_F32LE, 9, dims);
}

static void mut_unknown_op(hid_t fid)
{
    hid_t g = H5Gopen2(fid, "/graph/nodes/linear", H5P_DEFAULT);
    h5_set_str_attr(g, "op", "softmax2d");
    H5Gclose(g);
}

static void mut_drop_node_output(hid_t fid)
{
    hid_t g = H5Gopen2(fid, "/graph/nodes/linear", H5P_DEFAULT);
    CU_ASSERT(H5Adelete(g, "output") >= 0);
    H5Gclose(g);
}

static void mut_version99(hid_t fid) { h5_set_i64_attr(fid, "version", 99); }
/* Reads /graph input_shape (at most 8 dims); returns its rank. */
static int read_input_shape(hid_t fid, int64_t *dims)
{
    hid_t a = H5Aopen_by_name(fid, "/graph", "input_shape", H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    hid_t s = H5Aget_space(a);
    int n = (int)H5Sget_simple_extent_npoints(s);
    CU_ASSERT_FATAL(n >= 1 && n <= 8);
    CU_ASSERT(H5Aread(a, H5T_NATIVE_INT64, dims) >= 0);
    H5Sclose(s);
    H5Aclose(a);
    return n;
}

static void set_input_batch(hid_t fid, int64_t batch)
{
    int64_t dims[8];
    int n = read_input_shape(fid, dims);
    dims[0] = batch;
    hid_t g = H5Gopen2(fid, "/graph", H5P_DEFAULT);
    CU_ASSERT_FATAL(g >= 0);
    CU_ASSERT(H5Adelete(g, "input_shape") >= 0);
    hsize_t len = (hsize_t)n;
    hid_t s = H5Screate_simple(1, &len, NULL);
    hid_t a = H5Acreate2(g, "input_shape", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Awrite(a, H5T_NATIVE_INT64, dims) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Gclose(g);
}

/* what version 1 wrote: the version, and batch 1 in input_shape */
static void mut_version1(hid_t fid)
{
    h5_set_i64_attr(fid, "version", 1);
    set_input_batch(fid, 1);
}
static void mut_batch7(hid_t fid) { set_input_batch(fid, 7); }
static void mut_format_name(hid_t fid) { h5_set_str_attr(fid, "format", "distq-data"); }
static void mut_drop_format(hid_t fid) { CU_ASSERT(H5Adelete(fid, "format") >= 0); }
static void mut_drop_version(hid_t fid) { CU_ASSERT(H5Adelete(fid, "version") >= 0); }
static void mut_drop_graph(hid_t fid) { CU_ASSERT(H5Ldelete(fid, "/graph", H5P_DEFAULT) >= 0); }

static void mut_bad_input_ref(hid_t fid)
{
    hid_t g = H5Gopen2(fid, "/graph/nodes/linear", H5P_DEFAULT);
    const char *ins[1] = {"nowhere"};
    hsize_t n = 1;
    H5Adelete(g, "inputs");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t s = H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(g, "inputs", t, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(H5Awrite(a, t, ins) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    H5Gclose(g);
}

static void expect_load_error(const char *name, mutate_fn mutate, distq_status want,
                              const char *needle)
{
    char path[512];
    distq_graph *g = NULL;
    make_broken(tiny_model_path(), name, mutate, path, sizeof path);
    TEST_ERR_PATH(distq_model_load(path, &g), want, needle, path);
    CU_ASSERT_PTR_NULL(g);
}

static void test_model_malformed(void)
{
    expect_load_error("no_weight.h5", mut_drop_weight, DISTQ_ERR_FORMAT,
                      "no dataset /tensors/linear.weight");
    expect_load_error("f64_weight.h5", mut_f64_weight, DISTQ_ERR_FORMAT,
                      "/tensors/linear.weight: has type float64");
    expect_load_error("bad_shape.h5", mut_bad_bias_shape, DISTQ_ERR_FORMAT,
                      "bias 'linear.bias' has shape (4), expected (5)");
    expect_load_error("rank9.h5", mut_rank9, DISTQ_ERR_FORMAT, "rank 9, at most 8");
    expect_load_error("unknown_op.h5", mut_unknown_op, DISTQ_ERR_FORMAT,
                      "node 'linear' has unknown op 'softmax2d'");
    expect_load_error("no_output.h5", mut_drop_node_output, DISTQ_ERR_FORMAT,
                      "/graph/nodes/linear: missing attribute 'output'");
    expect_load_error("version99.h5", mut_version99, DISTQ_ERR_FORMAT,
                      "version 99 is not supported (this build reads versions 1 to 3)");
    expect_load_error("batch7.h5", mut_batch7, DISTQ_ERR_FORMAT,
                      "/graph: input_shape[0] is 7; the batch is -1 (any size) or 1");
    /* the batch is symbolic in the file */
    {
        hid_t f = H5Fopen(tiny_model_path(), H5F_ACC_RDONLY, H5P_DEFAULT);
        CU_ASSERT_FATAL(f >= 0);
        int64_t dims[8];
        CU_ASSERT(read_input_shape(f, dims) >= 2);
        CU_ASSERT_EQUAL(dims[0], DISTQ_FILE_BATCH_ANY);
        H5Fclose(f);
    }
    /* a version-1 file (before the quantized ops) still loads */
    {
        char path[512];
        distq_graph *g = NULL;
        make_broken(tiny_model_path(), "version1.h5", mut_version1, path, sizeof path);
        TEST_OK(distq_model_load(path, &g));
        CU_ASSERT_PTR_NOT_NULL(g);
        distq_graph_destroy(g);
    }
    expect_load_error("format_name.h5", mut_format_name, DISTQ_ERR_FORMAT,
                      "format is 'distq-data', expected 'distq-model'");
    expect_load_error("no_format.h5", mut_drop_format, DISTQ_ERR_FORMAT,
                      "no root attribute 'format'");
    expect_load_error("no_version.h5", mut_drop_version, DISTQ_ERR_FORMAT,
                      "no root attribute 'version'");
    expect_load_error("no_graph.h5", mut_drop_graph, DISTQ_ERR_FORMAT, "missing group /graph");
    expect_load_error("bad_input.h5", mut_bad_input_ref, DISTQ_ERR_FORMAT,
                      "node 'linear': unknown input 'nowhere'");
}

static void test_model_not_hdf5(void)
{
    static const char NOT_HDF5[] = "not an HDF5 file or truncated";
    char path[512];
    distq_graph *g = NULL;

    test_tmp_path(path, sizeof path, "text.h5");
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    TEST_ERR_PATH(distq_model_load(path, &g), DISTQ_ERR_FORMAT, NOT_HDF5, path);

    size_t len = 0;
    free(slurp(linear_model_path(), &len));
    test_tmp_path(path, sizeof path, "truncated.h5");
    copy_prefix(linear_model_path(), path, len / 2);
    TEST_ERR_PATH(distq_model_load(path, &g), DISTQ_ERR_FORMAT, NOT_HDF5, path);

    test_tmp_path(path, sizeof path, "empty.h5");
    copy_prefix(linear_model_path(), path, 0);
    TEST_ERR_PATH(distq_model_load(path, &g), DISTQ_ERR_FORMAT, NOT_HDF5, path);

    test_tmp_path(path, sizeof path, "does-not-exist.h5");
    TEST_ERR_PATH(distq_model_load(path, &g), DISTQ_ERR_IO, "No such file", path);
    TEST_ERR_PATH(distq_model_load(test_tmpdir(), &g), DISTQ_ERR_IO, "is a directory",
                  test_tmpdir());
    CU_ASSERT_PTR_NULL(g);
}

// --- atomic save -----------------------------------------------------------------------

static void test_model_save_atomic(void)
{
    char path[512], bad[512], dir[512];
    distq_graph *g = NULL, *broken = NULL, *empty = NULL;
    size_t len0 = 0, len1 = 0;
    test_tmp_path(path, sizeof path, "atomic.h5");
    TEST_OK(distq_build_linear(9, &g));
    TEST_OK(distq_model_save(g, path));
    char *before = slurp(path, &len0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);

    /* Fails at every allocation in turn, the temporary file created and
     * partly written included, until a save gets through: each failure
     * leaves the earlier file as it was and no temporary. */
    TEST_OK(distq_graph_clone(g, &broken));
    int failures = 0;
    for (int64_t k = 1; k < 1000; k++) {
        distq_alloc_fail_nth(k);
        distq_status st = distq_model_save(broken, path);
        int failed = distq_alloc_failed();
        distq_alloc_fail_nth(0);
        if (!failed) {
            CU_ASSERT_EQUAL(st, DISTQ_OK);
            break;
        }
        failures++;
        CU_ASSERT_EQUAL(st, DISTQ_ERR_NOMEM);
        size_t len = 0;
        char *now = slurp(path, &len);
        CU_ASSERT_FATAL(now != NULL);
        CU_ASSERT(len == len0 && memcmp(now, before, len0) == 0);
        free(now);
        CU_ASSERT_EQUAL(count_tmp_files(), 0);
    }
    CU_ASSERT(failures >= 2);
    free(before);
    before = slurp(path, &len0); /* the save that got through */
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    /* Fails before anything is written. */
    TEST_OK(distq_graph_create(&empty));
    TEST_ERR_PATH(distq_model_save(empty, path), DISTQ_ERR_INVALID_ARG, "not finalized", path);
    /* The temporary file cannot be created. */
    test_tmp_path(bad, sizeof bad, "no-such-dir/atomic.h5");
    TEST_ERR_PATH(distq_model_save(g, bad), DISTQ_ERR_IO, "cannot create temporary file", bad);
    /* Written completely, but the rename fails (a directory is in the way). */
    test_tmp_path(dir, sizeof dir, "a-directory.h5");
    CU_ASSERT_EQUAL(mkdir(dir, 0755), 0);
    TEST_ERR_PATH(distq_model_save(g, dir), DISTQ_ERR_IO, "cannot rename", dir);

    char *after = slurp(path, &len1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(after);
    CU_ASSERT_EQUAL(len0, len1);
    CU_ASSERT_EQUAL(memcmp(before, after, len0 < len1 ? len0 : len1), 0);
    CU_ASSERT_EQUAL(count_tmp_files(), 0);
    free(before);
    free(after);
    distq_graph_destroy(empty);
    distq_graph_destroy(broken);
    distq_graph_destroy(g);
}

// --- data files ------------------------------------------------------------------------

static void test_data_roundtrip_labels(void)
{
    char path[512];
    enum { N = 6, C = 3, H = 4, W = 5, PER = C * H * W };
    int64_t dims[4] = {N, C, H, W}, labels[N] = {3, 1, 4, 1, 5, 9}, got_labels[N];
    float *images = malloc(N * PER * sizeof(float)), *got = malloc(N * PER * sizeof(float));
    distq_data_info info;
    test_fill_uniform(images, N * PER, 21, -2.0f, 2.0f);
    test_tmp_path(path, sizeof path, "data_labels.h5");
    TEST_OK(distq_data_write(path, images, 4, dims, labels));

    TEST_OK(distq_data_info_read(path, &info));
    CU_ASSERT_EQUAL(info.n, N);
    CU_ASSERT_EQUAL(info.ndim, 4);
    CU_ASSERT_EQUAL(memcmp(info.dims, dims, sizeof dims), 0);
    CU_ASSERT_TRUE(info.has_labels);

    TEST_OK(distq_data_read(path, 0, N, got, got_labels));
    CU_ASSERT_EQUAL(memcmp(got, images, N * PER * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(got_labels, labels, sizeof labels), 0);

    /* Hyperslabs: rows [2, 5) with labels, [5, 6) without, an empty one. */
    memset(got, 0, N * PER * sizeof(float));
    memset(got_labels, 0, sizeof got_labels);
    TEST_OK(distq_data_read(path, 2, 3, got, got_labels));
    CU_ASSERT_EQUAL(memcmp(got, images + 2 * PER, 3 * PER * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(got_labels, labels + 2, 3 * sizeof(int64_t)), 0);
    CU_ASSERT_EQUAL(got[3 * PER], 0.0f); /* nothing written past count rows */
    TEST_OK(distq_data_read(path, 5, 1, got, NULL));
    CU_ASSERT_EQUAL(memcmp(got, images + 5 * PER, PER * sizeof(float)), 0);
    TEST_OK(distq_data_read(path, N, 0, got, NULL));

    TEST_ERR_PATH(distq_data_read(path, 4, 3, got, NULL), DISTQ_ERR_INVALID_ARG,
                  "start 4, count 3, but the file has N = 6", path);
    TEST_ERR_PATH(distq_data_read(path, -1, 1, got, NULL), DISTQ_ERR_INVALID_ARG, "start -1", path);
    free(images);
    free(got);
}

static void test_data_roundtrip_no_labels(void)
{
    char path[512];
    enum { N = 5, F = 7 };
    int64_t dims[2] = {N, F}, lab[N];
    float images[N * F], got[N * F];
    distq_data_info info;
    test_fill_uniform(images, N * F, 22, 0.0f, 1.0f);
    test_tmp_path(path, sizeof path, "data_nolabels.h5");
    TEST_OK(distq_data_write(path, images, 2, dims, NULL));
    TEST_OK(distq_data_info_read(path, &info));
    CU_ASSERT_EQUAL(info.n, N);
    CU_ASSERT_EQUAL(info.ndim, 2);
    CU_ASSERT_EQUAL(info.dims[1], F);
    CU_ASSERT_FALSE(info.has_labels);
    TEST_OK(distq_data_read(path, 1, 3, got, NULL));
    CU_ASSERT_EQUAL(memcmp(got, images + F, 3 * F * sizeof(float)), 0);
    TEST_ERR_PATH(distq_data_read(path, 0, 1, got, lab), DISTQ_ERR_FORMAT, "no /labels dataset",
                  path);
}

static void mut_labels_short(hid_t fid)
{
    hsize_t n = 5;
    h5_replace_dataset(fid, "/labels", H5T_STD_I64LE, 1, &n);
}

static void mut_labels_float(hid_t fid)
{
    hsize_t n = 6;
    h5_replace_dataset(fid, "/labels", H5T_IEEE_F32LE, 1, &n);
}

static void mut_images_f64(hid_t fid)
{
    hsize_t dims[4] = {6, 3, 4, 5};
    h5_replace_dataset(fid, "/images", H5T_IEEE_F64LE, 4, dims);
}

static void mut_drop_images(hid_t fid) { CU_ASSERT(H5Ldelete(fid, "/images", H5P_DEFAULT) >= 0); }

static void test_data_malformed(void)
{
    char src[512], path[512];
    distq_data_info info;
    test_tmp_path(src, sizeof src, "data_labels.h5"); /* from test_data_roundtrip_labels */
    struct {
        const char *name;
        mutate_fn mutate;
        const char *needle;
    } cases[] = {
        {"d_short.h5", mut_labels_short, "/labels: has shape (5), expected (6)"},
        {"d_float.h5", mut_labels_float, "/labels: has type float32, expected int64"},
        {"d_f64.h5", mut_images_f64, "/images: has type float64, expected float32"},
        {"d_noimg.h5", mut_drop_images, "missing dataset /images"},
        {"d_v99.h5", mut_version99, "distq-data version 99 is not supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_broken(src, cases[i].name, cases[i].mutate, path, sizeof path);
        TEST_ERR_PATH(distq_data_info_read(path, &info), DISTQ_ERR_FORMAT, cases[i].needle, path);
    }
    TEST_ERR_PATH(distq_data_info_read(linear_model_path(), &info), DISTQ_ERR_FORMAT,
                  "format is 'distq-model', expected 'distq-data'", linear_model_path());
}

// --- output files and describe ---------------------------------------------------------

static void test_output_and_describe(void)
{
    char out[512], data[512], plain[512], text_path[512];
    char *text = NULL;
    float logits[4 * 10], aux[4 * 3];
    test_fill_uniform(logits, 40, 23, -5.0f, 5.0f);
    test_fill_uniform(aux, 12, 24, -5.0f, 5.0f);
    test_tmp_path(out, sizeof out, "out.h5");
    const char *names[2] = {"fc", "aux.fc"};
    const float *values[2] = {logits, aux};
    const int64_t k[2] = {10, 3};
    TEST_OK(distq_output_write(out, 2, names, values, k, 4, "m.h5", "d.h5"));
    TEST_OK(distq_h5_describe(out, &text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "distq-output version 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "logits  (4, 10)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "model   m.h5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "output_1  (4, 3) f32, graph output 'aux.fc'"));
    distq_free(text);

    /* The logits themselves, read back with the C API. */
    float back[40];
    hid_t fid = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    hid_t d = H5Dopen2(fid, "logits", H5P_DEFAULT);
    CU_ASSERT(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    CU_ASSERT_EQUAL(memcmp(back, logits, sizeof logits), 0);
    H5Dclose(d);
    d = H5Dopen2(fid, "output_1", H5P_DEFAULT);
    CU_ASSERT(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    CU_ASSERT_EQUAL(memcmp(back, aux, sizeof aux), 0);
    H5Dclose(d);
    H5Fclose(fid);

    TEST_OK(distq_h5_describe(linear_model_path(), &text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "distq-model version 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "linear.weight f32 (1000, 1024)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "1024 -> 1000"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "total: 2 tensors, 1025000 values"));
    distq_free(text);

    test_tmp_path(data, sizeof data, "data_labels.h5");
    TEST_OK(distq_h5_describe(data, &text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "N = 6, image shape (3, 4, 5)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "labels  yes: 5 distinct classes seen (min 1, max 9)"));
    distq_free(text);

    /* HDF5, but not ours. */
    test_tmp_path(plain, sizeof plain, "plain.h5");
    fid = H5Fcreate(plain, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    hsize_t n = 3;
    hid_t s = H5Screate_simple(1, &n, NULL);
    d = H5Dcreate2(fid, "x", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(s);
    H5Fclose(fid);
    TEST_OK(distq_h5_describe(plain, &text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "not a distq file"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "x  dataset float64 (3)"));
    distq_free(text);

    test_tmp_path(text_path, sizeof text_path, "text.h5"); /* from test_model_not_hdf5 */
    text = NULL;
    TEST_ERR_PATH(distq_h5_describe(text_path, &text), DISTQ_ERR_FORMAT,
                  "not an HDF5 file or truncated", text_path);
    CU_ASSERT_PTR_NULL(text);
}

/* (1, 5120, 3602879701896397) wraps int64 to 0 when multiplied unchecked. */
static void test_dims_overflow(void)
{
    const int64_t wraps[3] = {1, 5120, 3602879701896397LL}, fine[3] = {2, 3, 4}, negative[2] = {3, -1};
    CU_ASSERT_EQUAL(distq_dims_numel(3, wraps), -1);
    CU_ASSERT_EQUAL(distq_dims_numel(3, fine), 24);
    CU_ASSERT_EQUAL(distq_dims_numel(2, negative), -1);
    CU_ASSERT_EQUAL(distq_dims_numel(0, fine), 1);
}

/* link(2) under a name that does not shadow anything */
static int link_file(const char *from, const char *to) { return link(from, to); }

/* An output is refused when it is an input or another output, however spelled:
 * "./x" vs "x", a symlink, a hard link, and two not-yet-written outputs. */
static void test_check_outputs(void)
{
    char in[512], in_dot[600], link[512], hard[512], out[512], out_dot[600], other[512];
    test_tmp_path(in, sizeof in, "roles_in.h5");
    snprintf(in_dot, sizeof in_dot, "%s/./roles_in.h5", test_tmpdir());
    test_tmp_path(link, sizeof link, "roles_link.h5");
    test_tmp_path(hard, sizeof hard, "roles_hard.h5");
    test_tmp_path(out, sizeof out, "roles_out.h5");
    snprintf(out_dot, sizeof out_dot, "%s/./roles_out.h5", test_tmpdir());
    test_tmp_path(other, sizeof other, "roles_other.h5");
    FILE *f = fopen(in, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("input", f);
    fclose(f);
    unlink(link);
    unlink(hard);
    CU_ASSERT_FATAL(symlink("roles_in.h5", link) == 0);
    CU_ASSERT_FATAL(link_file(in, hard) == 0);
    distq_file_role ins[2] = {{in, "--model"}, {NULL, "--data"}};
    distq_file_role outs[2] = {{out, "-o"}, {other, "--results"}};
    TEST_OK(distq_check_outputs(ins, 2, outs, 2));
    const char *same_as_input[3] = {in_dot, link, hard};
    for (int k = 0; k < 3; k++) {
        outs[0].path = same_as_input[k];
        TEST_ERR(distq_check_outputs(ins, 2, outs, 2), DISTQ_ERR_INVALID_ARG, "is the same file as --model");
        CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), same_as_input[k]));
    }
    outs[0].path = out;
    outs[1].path = out_dot; /* neither exists yet */
    TEST_ERR(distq_check_outputs(ins, 2, outs, 2), DISTQ_ERR_INVALID_ARG, "one would overwrite the other");
    outs[1].path = "";
    TEST_OK(distq_check_outputs(ins, 2, outs, 2));
    unlink(link);
    unlink(hard);
    unlink(in);
}

int main(void)
{
    static const test_case cases[] = {
        {"outputs never replace inputs (device, inode)", test_check_outputs},
        {"dims products are overflow-checked", test_dims_overflow},
        {"model round trip: resnet18", test_model_roundtrip_resnet18},
        {"model round trip: linear", test_model_roundtrip_linear},
        {"model round trip: every op attribute", test_model_roundtrip_tiny},
        {"model round trip: hardswish..concat (variadic)", test_model_roundtrip_new_ops},
        {"model without node_order", test_model_without_node_order},
        {"names of any length: fold, clone, file, executors", test_model_long_names},
        {"model /graph survives H5Ocopy", test_model_graph_copies},
        {"malformed model files", test_model_malformed},
        {"not HDF5, truncated, missing", test_model_not_hdf5},
        {"atomic save", test_model_save_atomic},
        {"data round trip with labels", test_data_roundtrip_labels},
        {"data round trip without labels", test_data_roundtrip_no_labels},
        {"malformed data files", test_data_malformed},
        {"output files and describe", test_output_and_describe},
        {"no HDF5 handles left open", test_assert_no_open_hdf5},
    };
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the fixtures' own expected failures */
    return test_run_suite("io", cases, (int)(sizeof cases / sizeof cases[0]));
}
