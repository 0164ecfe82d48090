/* The oneDNN int8 executor held against the int8 reference executor, value by
 * value (get_value), on small fp32 graphs run through the real PTQ flow
 * (prepare, calibrate, convert with reduce_range on), then on resnet18.
 *
 * Each graph is checked twice (bounds and their reasons: test_int8_cmp.h):
 * forced, every layer fed the reference's input, codes equal up to rounding
 * ties (never off by 2); and free (chained), every value strict while all
 * upstream codes are equal, and the output's difference from the reference
 * held against the int8-vs-fp32 difference of the same input, which is what
 * holds whatever accumulation order the CPU's kernels have.
 *
 * The test inputs are drawn 1.5x wider than the calibration data so that many
 * values exceed their calibrated range and hit quant_max = 127 (the clip
 * post-op that reduce_range needs, oneDNN saturating at 255 otherwise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/exec_impl.h"
#include "backend/onednn/onednn_impl.h"
#include "distq/exec.h"
#include "distq/io.h"
#include "distq/observers.h"
#include "distq/quant.h"
#include "test_int8_cmp.h"
#include "test_util.h"

#define N_CAL 8

static int verbose = 0; /* print every value (resnet18), else one line per graph */

// --- PTQ and the comparison -----------------------------------------------------

/* prepare, calibrate on N_CAL seeded images in U(-1, 1), convert. */
static distq_graph *quantize_graph(const distq_graph *g, distq_observer_kind kind, int reduce_range,
                                    uint64_t seed)
{
    distq_prepared *p = NULL;
    distq_calibrator *c = NULL;
    distq_graph *q = NULL;
    int64_t per = distq_value_numel(&g->values[g->input_value], 1);
    float *cal = malloc(sizeof(float) * (size_t)(N_CAL * per));
    CU_ASSERT_FATAL(cal != NULL);
    test_fill_uniform(cal, N_CAL * per, seed, -1.0f, 1.0f);
    TEST_OK(distq_prepare(g, kind, &p));
    TEST_OK(distq_calibrator_create(p, 4, NULL, &c));
    for (int64_t s = 0; s < N_CAL; s += 4) TEST_OK(distq_calibrate_batch(c, cal + s * per, 4));
    TEST_OK(distq_convert(p, reduce_range, &q));
    distq_calibrator_destroy(c);
    distq_prepared_destroy(p);
    free(cal);
    return q;
}

/* What a comparison found over the values of one run. */
typedef struct {
    int all_exact;   /* every u8 value so far equal */
    int n_u8;
    int64_t off1;    /* u8 elements off by one, all values */
    int64_t at_qmax; /* u8 elements at quant_max (the clip was needed) */
    double worst_f32;
} cmp_summary;

/* Compares one value of the last runs of ref and dnn. exact_inputs: every
 * code upstream is equal, so assert the forced bounds (test_int8_cmp.h);
 * else (after an upstream difference in a free run) only print the figures:
 * the output's chained check is the bound there. */
static void compare_one(distq_exec *ref, distq_exec *dnn, const distq_value *val, int64_t batch,
                        const char *what, int exact_inputs, cmp_summary *sum)
{
    int64_t n = batch * distq_dims_numel(val->ndim, val->dims);
    size_t bytes = (size_t)n * distq_dtype_size(val->dtype);
    void *a = malloc(bytes), *b = malloc(bytes);
    CU_ASSERT_FATAL(a && b);
    TEST_OK(distq_exec_get_value(ref, val->name, a));
    TEST_OK(distq_exec_get_value(dnn, val->name, b));
    if (val->dtype == DISTQ_DTYPE_U8) {
        test_code_diff d;
        test_codes_compare(a, b, n, val->quant_max, &d);
        sum->n_u8++;
        sum->off1 += d.off1;
        sum->at_qmax += d.at_qmax;
        if (verbose || d.exact != n) test_codes_print(what, val->name, &d);
        if (exact_inputs) {
            CU_ASSERT_EQUAL(d.worse, 0);
            CU_ASSERT((double)d.off1 <= TEST_MAX_OFF1 * (double)n);
        }
        sum->all_exact &= d.exact == n;
    } else {
        double rel = test_f32_max_rel_diff(a, b, n);
        sum->worst_f32 = fmax(sum->worst_f32, rel);
        if (verbose || (exact_inputs && !(rel <= TEST_F32_EXACT_TOL)))
            printf("\n    %s: %-24s f32 max rel diff %.3g", what, val->name, rel);
        if (exact_inputs) CU_ASSERT(rel <= TEST_F32_EXACT_TOL);
    }
    free(a);
    free(b);
}

static void print_summary(const char *what, const cmp_summary *sum)
{
    if (!verbose)
        printf("\n    %s: %d u8 values, %s, f32 max rel diff %.3g", what, sum->n_u8,
               sum->all_exact ? "all exact" : "not all exact", sum->worst_f32);
}

/* Free run: every value (the f32 input too where oneDNN keeps it: where
 * fp32 nodes read it, not where one quantize does), in production order, strict while every u8 value before was exact. After a difference,
 * the downstream values differ by propagation (a quantized network amplifies
 * a flipped code): the forced run below is the per-layer check. */
static void compare_free(distq_exec *ref, distq_exec *dnn, const distq_graph *q, int64_t batch,
                         const char *what, cmp_summary *sum)
{
    for (int v = 0; v < q->n_values; v++) {
        const distq_value *val = &q->values[v];
        if (v == q->input_value && q->values[v].n_consumers == 1 &&
            q->nodes[0].op == DISTQ_OP_QUANTIZE && q->nodes[0].inputs[0] == v) {
            char dummy[16];
            TEST_ERR(distq_exec_get_value(dnn, val->name, dummy), DISTQ_ERR_UNSUPPORTED, "not kept");
            continue;
        }
        compare_one(ref, dnn, val, batch, what, sum->all_exact, sum);
    }
    print_summary(what, sum);
}

/* Builds both int8 executors for q at batch N and the fp32 reference of g,
 * runs seeded inputs in U(-1.5, 1.5) through all three and compares every
 * value, free and forced (test_int8_cmp.h). The oneDNN executor then runs
 * other inputs and the first again: the output must repeat bit for bit.
 * Returns the count of u8 elements at quant_max. */
static int64_t check_int8(const distq_graph *q, const distq_graph *g, int64_t batch, uint64_t seed,
                          const char *what)
{
    distq_exec *ref = NULL, *dnn = NULL, *fp32 = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, batch, &ref));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, q, batch, &dnn));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, batch, &fp32));
    int64_t n_in = batch * distq_exec_input_numel(dnn), per_out = distq_exec_output_numel(dnn);
    int64_t n_out = batch * per_out;
    CU_ASSERT_EQUAL(distq_exec_output_numel(fp32), per_out);
    float *x = malloc(sizeof(float) * (size_t)n_in), *x2 = malloc(sizeof(float) * (size_t)n_in);
    float *want = malloc(sizeof(float) * (size_t)n_out), *got = malloc(sizeof(float) * (size_t)n_out);
    float *again = malloc(sizeof(float) * (size_t)n_out), *y32 = malloc(sizeof(float) * (size_t)n_out);
    CU_ASSERT_FATAL(x && x2 && want && got && again && y32);
    test_fill_uniform(x, n_in, seed, -1.5f, 1.5f);
    test_fill_uniform(x2, n_in, seed + 1000, -1.5f, 1.5f);
    TEST_OK(distq_exec_run(ref, x, want));
    TEST_OK(distq_exec_run(dnn, x, got));
    TEST_OK(distq_exec_run(fp32, x, y32));
    char label[160];
    snprintf(label, sizeof label, "%s bs %lld", what, (long long)batch);
    cmp_summary free_sum = {.all_exact = 1};
    compare_free(ref, dnn, q, batch, label, &free_sum);
    /* the chained bound: oneDNN vs the int8 reference against int8 vs fp32 */
    test_int8_vs_quant_noise(label, got, want, y32, batch, per_out);

    snprintf(label, sizeof label, "%s bs %lld forced", what, (long long)batch);
    test_forced_sum forced;
    test_int8_run_forced(dnn, q, batch, x, again, test_want_from_exec, ref, label, verbose, &forced);
    CU_ASSERT_EQUAL(forced.n_u8, free_sum.n_u8);

    TEST_OK(distq_exec_run(dnn, x2, again));
    TEST_OK(distq_exec_run(dnn, x, again));
    CU_ASSERT(memcmp(got, again, sizeof(float) * (size_t)n_out) == 0);
    free(x);
    free(x2);
    free(want);
    free(got);
    free(again);
    free(y32);
    distq_exec_destroy(ref);
    distq_exec_destroy(dnn);
    distq_exec_destroy(fp32);
    return free_sum.at_qmax;
}

/* Quantizes g (reduce_range on: this CPU may lack VNNI), checks the int8
 * graph at batch 1 and 3, destroys g. */
static void check_graph(distq_graph *g, uint64_t seed, const char *what)
{
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, seed);
    check_int8(q, g, 1, seed + 1, what);
    check_int8(q, g, 3, seed + 2, what);
    distq_graph_destroy(g);
    distq_graph_destroy(q);
}

// --- conv ---------------------------------------------------------------------------

/* x -> conv [-> relu] -> maxpool 2x2 -> conv2 (f32 out): the conv under test
 * writes u8 (zero point != 0 without the relu) and reads the quantized input
 * (zero point != 0); conv2 writes f32. Random shapes, 2 seeds, bias on/off. */
static void conv_cases_padded(const char *what, int64_t stride, int64_t pad, int64_t pad_end, int64_t dil,
                              int64_t groups, int64_t K, distq_op post)
{
    for (uint64_t seed = 1; seed <= 2; seed++) {
        for (int bias = 0; bias <= 1; bias++) {
            distq_rng r;
            distq_rng_seed(&r, seed * 7919 + (uint64_t)(stride * 31 + pad * 7 + dil * 3 + groups + K * 101));
            int64_t G = groups, C, OC;
            if (groups == 0) {
                C = test_rand_int(&r, 4, 12);
                G = C;
                OC = C * test_rand_int(&r, 1, 2);
            } else {
                C = G * test_rand_int(&r, 1, 5);
                OC = G * test_rand_int(&r, 2, 6);
            }
            test_conv_spec c = {.OC = OC, .K = K, .stride = stride, .pad = pad, .dil = dil, .groups = G,
                                .bias = bias};
            int64_t span = dil * (K - 1) + 1;
            int64_t in[4] = {1, C, span + 2 + test_rand_int(&r, 2, 9), span + 2 + test_rand_int(&r, 2, 9)};
            distq_graph *g = test_new_graph(4, in);
            test_add_conv(g, "conv", "x", C, c, seed);
            g->nodes[g->n_nodes - 1].attr.padding_end[0] = pad_end;
            const char *out = "conv";
            if (post != DISTQ_OP_COUNT) {
                distq_attrs pa = distq_attrs_default(post);
                if (post == DISTQ_OP_CLIP) { /* a hardtanh the fused clip must keep: not relu6 */
                    pa.min = -0.25f;
                    pa.max = 0.5f;
                }
                test_add_op(g, "post", post, &pa, out, NULL, NULL);
                out = "post";
            }
            distq_attrs mp = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
            mp.kernel[0] = mp.kernel[1] = 2;
            mp.stride[0] = mp.stride[1] = 1;
            if (pad_end >= 0) mp.padding_end[1] = 1; /* asymmetric pools too: SAME_UPPER's 2x2 */
            test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D, &mp, out, NULL, NULL);
            test_add_conv(g, "conv2", "pool", OC, (test_conv_spec){5, 3, 1, 1, 1, 1, 1}, seed + 9);
            test_finish(g, "conv2");
            char label[160];
            snprintf(label, sizeof label, "%s (C %lld OC %lld %lldx%lld bias %d)", what, (long long)C,
                     (long long)OC, (long long)in[2], (long long)in[3], bias);
            check_graph(g, seed * 100, label);
        }
    }
}

static void conv_cases(const char *what, int64_t stride, int64_t pad, int64_t dil, int64_t groups, int64_t K,
                       int relu)
{
    conv_cases_padded(what, stride, pad, -1, dil, groups, K, relu ? DISTQ_OP_RELU : DISTQ_OP_COUNT);
}

static void test_conv_strided(void) { conv_cases("conv 3x3 stride 2", 2, 0, 1, 1, 3, 0); }
static void test_conv_padded(void) { conv_cases("conv 3x3 pad 1", 1, 1, 1, 1, 3, 0); }
static void test_conv_dilated(void) { conv_cases("conv 3x3 dil 2 pad 2", 1, 2, 2, 1, 3, 0); }
static void test_conv_grouped(void) { conv_cases("conv groups 2", 1, 1, 1, 2, 3, 0); }
static void test_conv_depthwise(void) { conv_cases("conv depthwise", 2, 1, 1, 0, 3, 1); }
static void test_conv_1x1(void) { conv_cases("conv 1x1", 1, 0, 1, 1, 1, 0); }
static void test_conv_7x7(void) { conv_cases("conv 7x7 s2 p3", 2, 3, 1, 1, 7, 1); }
/* ONNX pads (top 1, left 1, bottom 2, right 1), the pool padded on the right only */
static void test_conv_asymmetric(void)
{
    conv_cases_padded("conv 3x3 s2 pads 1,1/2,1", 2, 1, 2, 1, 1, 3, DISTQ_OP_COUNT);
}
/* The recipe's other conv fusions: the post-op runs on real values inside
 * the int8 conv (quantized graph: one conv node carrying post_op). */
static void test_conv_post_ops(void)
{
    const distq_op posts[] = {DISTQ_OP_CLIP, DISTQ_OP_HARDSWISH, DISTQ_OP_SILU};
    for (int i = 0; i < 3; i++) {
        /* convert's form: the post-op rides on the conv, no node of its own */
        int64_t in[4] = {1, 3, 6, 6};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 3, (test_conv_spec){4, 3, 1, 1, 1, 1, 1}, 1);
        test_add_op(g, "post", posts[i], NULL, "conv", NULL, NULL);
        test_add_conv(g, "conv2", "post", 4, (test_conv_spec){2, 1, 1, 0, 1, 1, 1}, 2);
        test_finish(g, "conv2");
        distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 3);
        int c = distq_graph_find_node(q, "conv");
        CU_ASSERT_FATAL(c >= 0);
        CU_ASSERT_EQUAL(q->nodes[c].attr.post_op, posts[i]);
        CU_ASSERT_EQUAL(distq_graph_find_node(q, "post"), -1);
        CU_ASSERT_EQUAL(q->values[q->nodes[c].output].dtype, DISTQ_DTYPE_U8);
        distq_graph_destroy(g);
        distq_graph_destroy(q);
        char what[64];
        snprintf(what, sizeof what, "conv 3x3 + %s", distq_op_name(posts[i]));
        conv_cases_padded(what, 1, 1, -1, 1, 1, 3, posts[i]);
        snprintf(what, sizeof what, "conv depthwise + %s", distq_op_name(posts[i]));
        conv_cases_padded(what, 2, 1, -1, 1, 0, 3, posts[i]);
    }
}
static void test_conv_relu(void) { conv_cases("conv+relu", 1, 1, 1, 1, 3, 1); }

// --- conv + add (sum post-op) -------------------------------------------------------

/* a = conv0(x) [+relu];  b = relu(conv1(a) + a);  c = conv2(b) + a [+relu];
 * out = conv3(c) (f32), or c itself (f32 conv output with a u8 residual).
 * The first sum's residual a is read again by the second; the second's is
 * dead after it. Without the relu on conv0, a has a non-zero zero point. */
static void conv_add_case(int relu0, int relu2, int c_is_output)
{
    for (uint64_t seed = 1; seed <= 2; seed++) {
        distq_rng r;
        distq_rng_seed(&r, seed * 104729 + (uint64_t)(relu0 * 4 + relu2 * 2 + c_is_output));
        int64_t C = test_rand_int(&r, 1, 4), M = test_rand_int(&r, 3, 17);
        int64_t in[4] = {1, C, test_rand_int(&r, 5, 12), test_rand_int(&r, 5, 12)};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv0", "x", C, (test_conv_spec){M, 3, 1, 1, 1, 1, 1}, seed);
        const char *a = "conv0";
        if (relu0) {
            test_add_op(g, "relu0", DISTQ_OP_RELU, NULL, "conv0", NULL, NULL);
            a = "relu0";
        }
        test_add_conv(g, "conv1", a, M, (test_conv_spec){M, 3, 1, 1, 1, 1, 1}, seed + 5);
        test_add_op(g, "add1", DISTQ_OP_ADD, NULL, "conv1", a, NULL);
        test_add_op(g, "relu1", DISTQ_OP_RELU, NULL, "add1", NULL, NULL);
        test_add_conv(g, "conv2", "relu1", M, (test_conv_spec){M, 3, 1, 1, 1, 1, 0}, seed + 7);
        test_add_op(g, "add2", DISTQ_OP_ADD, NULL, "conv2", a, NULL);
        const char *c = "add2";
        if (relu2) {
            test_add_op(g, "relu2", DISTQ_OP_RELU, NULL, "add2", NULL, NULL);
            c = "relu2";
        }
        if (!c_is_output) test_add_conv(g, "conv3", c, M, (test_conv_spec){4, 1, 1, 0, 1, 1, 1}, seed + 9);
        test_finish(g, c_is_output ? c : "conv3");
        char label[96];
        snprintf(label, sizeof label, "conv+add (relu0 %d relu2 %d%s)", relu0, relu2,
                 c_is_output ? ", f32 out" : "");
        check_graph(g, seed * 300, label);
    }
}

static void test_conv_add(void) { conv_add_case(1, 1, 0); }
static void test_conv_add_zp(void) { conv_add_case(0, 0, 0); }
static void test_conv_add_f32_out(void) { conv_add_case(0, 1, 1); }

/* Two graph outputs: relu0 (an int8 value that feeds conv1, so a fused
 * chain would never materialize it) and conv1's f32 logits. Convert
 * dequantizes both; run_all returns both on each backend, the second held
 * to the same chained bound as the first, and a file round trip keeps them. */
static void test_two_outputs(void)
{
    int64_t in[4] = {1, 3, 9, 9};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "conv0", "x", 3, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 71);
    test_add_op(g, "relu0", DISTQ_OP_RELU, NULL, "conv0", NULL, NULL);
    test_add_conv(g, "conv1", "relu0", 8, (test_conv_spec){4, 3, 2, 1, 1, 1, 1}, 72);
    TEST_OK(distq_graph_set_output(g, "conv1"));
    TEST_OK(distq_graph_add_output(g, "relu0"));
    TEST_ERR(distq_graph_add_output(g, "relu0"), DISTQ_ERR_INVALID_ARG, "declared twice");
    TEST_OK(distq_graph_finalize(g));
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 73);
    CU_ASSERT_EQUAL_FATAL(q->n_outputs, 2);
    for (int k = 0; k < 2; k++) CU_ASSERT_EQUAL(q->values[q->output_values[k]].dtype, DISTQ_DTYPE_F32);
    check_int8(q, g, 2, 74, "two outputs");

    /* the second output, through run_all, against the fp32 graph's */
    const int64_t batch = 2;
    distq_exec *ref = NULL, *dnn = NULL, *fp32 = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, batch, &ref));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, q, batch, &dnn));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, batch, &fp32));
    CU_ASSERT_EQUAL_FATAL(distq_exec_n_outputs(dnn), 2);
    CU_ASSERT_EQUAL_FATAL(distq_exec_output_numel_at(dnn, 1), 8 * 9 * 9);
    CU_ASSERT_EQUAL(distq_exec_output_numel_at(fp32, 1), 8 * 9 * 9);
    int64_t n_in = batch * 3 * 9 * 9, n0 = batch * distq_exec_output_numel_at(dnn, 0), n1 = batch * 8 * 9 * 9;
    float *x = malloc(sizeof(float) * (size_t)n_in), *buf = malloc(sizeof(float) * (size_t)(3 * (n0 + n1)));
    CU_ASSERT_FATAL(x && buf);
    test_fill_uniform(x, n_in, 75, -1.5f, 1.5f);
    float *out_ref[2] = {buf, buf + n0}, *out_dnn[2] = {buf + n0 + n1, buf + 2 * n0 + n1};
    float *out_f32[2] = {buf + 2 * (n0 + n1), buf + 3 * n0 + 2 * n1};
    TEST_OK(distq_exec_run_all(ref, x, out_ref));
    TEST_OK(distq_exec_run_all(dnn, x, out_dnn));
    TEST_OK(distq_exec_run_all(fp32, x, out_f32));
    double relu_max = 0;
    for (int64_t i = 0; i < n1; i++) relu_max = fmax(relu_max, out_f32[1][i]);
    CU_ASSERT(relu_max > 0); /* the relu output, not zeros */
    for (int64_t i = 0; i < n1; i++) CU_ASSERT_FATAL(out_f32[1][i] >= 0.0f);
    test_int8_vs_quant_noise("two outputs: relu0", out_dnn[1], out_ref[1], out_f32[1], 1, n1);
    test_int8_vs_quant_noise("two outputs: conv1", out_dnn[0], out_ref[0], out_f32[0], batch,
                             distq_exec_output_numel_at(dnn, 0));

    /* the float model file keeps both outputs, in order */
    char path[512];
    test_tmp_path(path, sizeof path, "two_outputs.h5");
    TEST_OK(distq_model_save(g, path));
    distq_graph *back = NULL;
    TEST_OK(distq_model_load(path, &back));
    CU_ASSERT_EQUAL_FATAL(back->n_outputs, 2);
    CU_ASSERT_STRING_EQUAL(back->output_names[0], "conv1");
    CU_ASSERT_STRING_EQUAL(back->output_names[1], "relu0");
    distq_graph_destroy(back);
    free(x);
    free(buf);
    distq_exec_destroy(ref);
    distq_exec_destroy(dnn);
    distq_exec_destroy(fp32);
    distq_graph_destroy(q);
    distq_graph_destroy(g);
}

/* resnet's downsample block: relu(conv_a(x') + conv_b(x')), strided; the
 * conv that takes the add runs after the other in the int8 graph. */
static void test_downsample_block(void)
{
    int64_t in[4] = {1, 8, 11, 10};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "stem", "x", 8, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 1);
    test_add_op(g, "stem_relu", DISTQ_OP_RELU, NULL, "stem", NULL, NULL);
    test_add_conv(g, "conv_a", "stem_relu", 8, (test_conv_spec){16, 3, 2, 1, 1, 1, 1}, 2);
    test_add_conv(g, "conv_b", "stem_relu", 8, (test_conv_spec){16, 1, 2, 0, 1, 1, 1}, 3);
    test_add_op(g, "add", DISTQ_OP_ADD, NULL, "conv_a", "conv_b", NULL);
    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "add", NULL, NULL);
    test_add_conv(g, "head", "relu", 16, (test_conv_spec){3, 1, 1, 0, 1, 1, 1}, 4);
    test_finish(g, "head");
    check_graph(g, 700, "downsample block");
}

/* A graph that is part int8, part fp32, as PT2E leaves an SE-style gate:
 * x * s (fp32: a constant per channel, so the input is read by an fp32 node)
 * -> conv + relu -> max_pool (int8) -> sigmoid (fp32, reads the pool
 * dequantized) -> mul (fp32: pool * gate) -> conv2 (int8 again: a quantize
 * of an fp32 value in the middle) -> f32 out. Checks convert's form of it,
 * then oneDNN against the reference. */
static void test_mixed_graph(void)
{
    int64_t in[4] = {1, 6, 9, 8}, sd[4] = {1, 6, 1, 1};
    distq_graph *g = test_new_graph(4, in);
    test_add_param(g, "scale", 4, sd, 5, 0.5f, 1.5f);
    const char *sp[DISTQ_MAX_PARAMS] = {"scale"};
    test_add_op(g, "norm", DISTQ_OP_MUL, NULL, "x", NULL, sp);
    test_add_conv(g, "conv", "norm", 6, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 6);
    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
    distq_attrs mp = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    mp.kernel[0] = mp.kernel[1] = 2;
    mp.stride[0] = mp.stride[1] = 2;
    test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D, &mp, "relu", NULL, NULL);
    test_add_op(g, "gate", DISTQ_OP_SIGMOID, NULL, "pool", NULL, NULL);
    test_add_op(g, "mul", DISTQ_OP_MUL, NULL, "pool", "gate", NULL);
    test_add_conv(g, "conv2", "mul", 8, (test_conv_spec){5, 1, 1, 0, 1, 1, 1}, 7);
    test_finish(g, "conv2");
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 900);
    /* norm stays fp32 and reads the input; pool is int8 and dequantized for
     * the fp32 gate and mul; conv2 quantizes mul's output */
    const char *want[][2] = {{"norm", "mul"}, {"norm.quant", "quantize"}, {"conv", "conv2d"},
                             {"pool", "max_pool2d"}, {"pool.dequant", "dequantize"}, {"gate", "sigmoid"},
                             {"mul", "mul"}, {"mul.quant", "quantize"}, {"conv2", "conv2d"}};
    CU_ASSERT_EQUAL_FATAL(q->n_nodes, 9);
    for (int i = 0; i < 9; i++) {
        CU_ASSERT_STRING_EQUAL(q->nodes[i].name, want[i][0]);
        CU_ASSERT_STRING_EQUAL(distq_op_name(q->nodes[i].op), want[i][1]);
    }
    CU_ASSERT_EQUAL(q->values[distq_graph_find_value(q, "pool")].dtype, DISTQ_DTYPE_U8);
    CU_ASSERT_EQUAL(q->values[distq_graph_find_value(q, "gate")].dtype, DISTQ_DTYPE_F32);
    CU_ASSERT_EQUAL(q->values[q->output_values[0]].dtype, DISTQ_DTYPE_F32);
    check_int8(q, g, 1, 901, "mixed int8/fp32");
    check_int8(q, g, 3, 902, "mixed int8/fp32");
    distq_graph_destroy(g);
    distq_graph_destroy(q);

    /* the dequantize of a 1x960x7x7 u8 value with a zero point, in the NHWC
     * layout the conv picks: oneDNN 2.6's reorder dropped the zero point
     * there (mobilenet_v3's last SE blocks); the forced check compares it */
    int64_t in2[4] = {1, 16, 7, 7};
    g = test_new_graph(4, in2);
    test_add_conv(g, "expand", "x", 16, (test_conv_spec){960, 1, 1, 0, 1, 1, 1}, 8);
    test_add_op(g, "gate", DISTQ_OP_SIGMOID, NULL, "expand", NULL, NULL);
    test_add_op(g, "se", DISTQ_OP_MUL, NULL, "expand", "gate", NULL);
    test_add_conv(g, "side", "expand", 960, (test_conv_spec){4, 1, 1, 0, 1, 1, 1}, 10);
    test_add_conv(g, "project", "se", 960, (test_conv_spec){4, 1, 1, 0, 1, 1, 1}, 9);
    test_add_op(g, "sum", DISTQ_OP_ADD, NULL, "project", "side", NULL);
    test_finish(g, "sum");
    q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 903);
    int e = distq_graph_find_value(q, "expand");
    CU_ASSERT_FATAL(e >= 0);
    CU_ASSERT_EQUAL(q->values[e].dtype, DISTQ_DTYPE_U8);
    CU_ASSERT_NOT_EQUAL(q->values[e].zero_point, 0);
    check_int8(q, g, 1, 904, "960x7x7 dequantized");
    distq_graph_destroy(g);
    distq_graph_destroy(q);
}

/* densenet's block: concat of int8 values (their qparams shared with the
 * output), a batch_norm + relu no conv precedes (the int8 depthwise 1x1
 * conv of exact weights), a 2x2 average pool: all int8 in convert's graph,
 * checked against the reference. */
static void test_dense_block(void)
{
    int64_t in[4] = {1, 8, 10, 10};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "stem", "x", 8, (test_conv_spec){6, 3, 1, 1, 1, 1, 1}, 20);
    test_add_op(g, "stem_relu", DISTQ_OP_RELU, NULL, "stem", NULL, NULL);
    const char *prev = "stem_relu";
    int64_t C = 6;
    char names[3][4][16];
    for (int k = 0; k < 3; k++) {
        char *bn = names[k][0], *relu = names[k][1], *conv = names[k][2], *cat = names[k][3];
        snprintf(bn, 16, "bn%d", k);
        snprintf(relu, 16, "relu%d", k);
        snprintf(conv, 16, "conv%d", k);
        snprintf(cat, 16, "cat%d", k);
        test_add_bn(g, bn, prev, C, 30 + (uint64_t)k);
        test_add_op(g, relu, DISTQ_OP_RELU, NULL, bn, NULL, NULL);
        test_add_conv(g, conv, relu, C, (test_conv_spec){4, 3, 1, 1, 1, 1, 1}, 40 + (uint64_t)k);
        distq_attrs ca = distq_attrs_default(DISTQ_OP_CONCAT);
        test_add_op(g, cat, DISTQ_OP_CONCAT, &ca, prev, conv, NULL);
        prev = cat;
        C += 4;
    }
    distq_attrs ap = distq_attrs_default(DISTQ_OP_AVG_POOL2D);
    ap.kernel[0] = ap.kernel[1] = ap.stride[0] = ap.stride[1] = 2;
    test_add_op(g, "pool", DISTQ_OP_AVG_POOL2D, &ap, prev, NULL, NULL);
    test_add_conv(g, "head", "pool", C, (test_conv_spec){5, 1, 1, 0, 1, 1, 1}, 50);
    test_finish(g, "head");
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 51);
    for (int i = 0; i < q->n_nodes; i++) { /* int8 from the input's quantize to the head */
        const distq_node *n = &q->nodes[i];
        CU_ASSERT(n->op == DISTQ_OP_QUANTIZE || q->values[n->inputs[0]].dtype == DISTQ_DTYPE_U8);
        CU_ASSERT(n->op != DISTQ_OP_BATCH_NORM && n->op != DISTQ_OP_RELU && n->op != DISTQ_OP_DEQUANTIZE);
    }
    int c2 = distq_graph_find_value(q, "cat2"), c0 = distq_graph_find_value(q, "conv0");
    CU_ASSERT_FATAL(c2 >= 0 && c0 >= 0);
    CU_ASSERT_EQUAL(q->values[c2].scale, q->values[c0].scale); /* one observer for the block */
    check_int8(q, g, 1, 52, "dense block");
    check_int8(q, g, 3, 53, "dense block");
    distq_graph_destroy(g);
    distq_graph_destroy(q);
}

/* A squeeze-excite block (mobilenet_v3 / efficientnet): conv + relu ->
 * global average -> fc1 + relu -> fc2 -> sigmoid (fp32) -> gate * x (the
 * int8 gate on the codes, the gate first as torch exports it) -> conv, at
 * two sizes so that oneDNN's NHWC and plain NCHW layouts both come up. */
static void test_squeeze_excite(void)
{
    const int64_t sizes[2][4] = {{1, 4, 6, 5}, {1, 16, 9, 9}};
    for (int k = 0; k < 2; k++) {
        distq_graph *g = test_new_graph(4, sizes[k]);
        int64_t C = 2 * sizes[k][1];
        test_add_conv(g, "conv", "x", sizes[k][1], (test_conv_spec){C, 3, 1, 1, 1, 1, 1}, 70);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
        test_add_op(g, "squeeze", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "relu", NULL, NULL);
        test_add_conv(g, "fc1", "squeeze", C, (test_conv_spec){4, 1, 1, 0, 1, 1, 1}, 71);
        test_add_op(g, "fc1_relu", DISTQ_OP_RELU, NULL, "fc1", NULL, NULL);
        test_add_conv(g, "fc2", "fc1_relu", 4, (test_conv_spec){C, 1, 1, 0, 1, 1, 1}, 72);
        test_add_op(g, "gate", DISTQ_OP_SIGMOID, NULL, "fc2", NULL, NULL);
        test_add_op(g, "excite", DISTQ_OP_MUL, NULL, "gate", "relu", NULL);
        test_add_conv(g, "project", "excite", C, (test_conv_spec){3, 1, 1, 0, 1, 1, 1}, 73);
        test_finish(g, "project");
        distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 74);
        int e = distq_graph_find_node(q, "excite");
        CU_ASSERT_FATAL(e >= 0);
        CU_ASSERT_EQUAL(q->values[q->nodes[e].inputs[0]].dtype, DISTQ_DTYPE_U8);
        CU_ASSERT_EQUAL(q->values[q->nodes[e].output].dtype, DISTQ_DTYPE_U8);
        CU_ASSERT_EQUAL(distq_graph_find_node(q, "relu.dequant"), -1);
        check_int8(q, g, 1, 75, "squeeze-excite");
        check_int8(q, g, 3, 76, "squeeze-excite");
        distq_graph_destroy(g);
        distq_graph_destroy(q);
    }
}

/* shufflenet's channel shuffle and split on int8 codes: conv -> reshape
 * (1, 2, 4, H, W) -> transpose (0, 2, 1, 3, 4) -> reshape (1, 8, H, W) ->
 * slice of the second half of the channels -> conv: all int8. */
static void test_channel_shuffle(void)
{
    int64_t in[4] = {1, 3, 6, 5};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "conv", "x", 3, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 60);
    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
    distq_attrs r5 = distq_attrs_default(DISTQ_OP_RESHAPE), tr = distq_attrs_default(DISTQ_OP_TRANSPOSE);
    distq_attrs r4 = distq_attrs_default(DISTQ_OP_RESHAPE), sl = distq_attrs_default(DISTQ_OP_SLICE);
    const int64_t s5[5] = {1, 2, 4, 6, 5}, p5[5] = {0, 2, 1, 3, 4}, s4[4] = {1, 8, 6, 5};
    memcpy(r5.shape, s5, sizeof s5);
    memcpy(tr.perm, p5, sizeof p5);
    memcpy(r4.shape, s4, sizeof s4);
    const int64_t st[4] = {0, 4, 0, 0}, en[4] = {0, 8, 6, 5};
    memcpy(sl.starts, st, sizeof st);
    memcpy(sl.ends, en, sizeof en);
    test_add_op(g, "split", DISTQ_OP_RESHAPE, &r5, "relu", NULL, NULL);
    test_add_op(g, "shuffle", DISTQ_OP_TRANSPOSE, &tr, "split", NULL, NULL);
    test_add_op(g, "merge", DISTQ_OP_RESHAPE, &r4, "shuffle", NULL, NULL);
    test_add_op(g, "half", DISTQ_OP_SLICE, &sl, "merge", NULL, NULL);
    test_add_conv(g, "head", "half", 4, (test_conv_spec){3, 1, 1, 0, 1, 1, 1}, 61);
    test_finish(g, "head");
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 62);
    for (int i = 0; i < q->n_nodes; i++)
        CU_ASSERT(q->nodes[i].op == DISTQ_OP_QUANTIZE || q->values[q->nodes[i].inputs[0]].dtype == DISTQ_DTYPE_U8);
    check_int8(q, g, 1, 63, "channel shuffle");
    check_int8(q, g, 3, 64, "channel shuffle");
    distq_graph_destroy(g);
    distq_graph_destroy(q);
}

// --- pooling --------------------------------------------------------------------------

/* max pool after conv [+relu] (the prepare pass quantizes a pool only after
 * a quantized pattern), odd sizes, padding and ceil_mode, then a 1x1 conv. */
static void test_max_pool(void)
{
    for (int ceil = 0; ceil <= 1; ceil++) {
        for (int64_t pad = 0; pad <= 1; pad++) {
            for (int relu = 0; relu <= 1; relu++) {
                distq_rng r;
                distq_rng_seed(&r, (uint64_t)(ceil * 4 + pad * 2 + relu + 1));
                int64_t C = test_rand_int(&r, 1, 6), K = test_rand_int(&r, 2, 3);
                int64_t in[4] = {1, C, 2 * test_rand_int(&r, 2, 6) + 1, 2 * test_rand_int(&r, 2, 6) + 1};
                distq_graph *g = test_new_graph(4, in);
                const char *src = "conv";
                test_add_conv(g, "conv", "x", C, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 3);
                if (relu) {
                    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
                    src = "relu";
                }
                distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
                a.kernel[0] = a.kernel[1] = K;
                a.stride[0] = a.stride[1] = 2;
                a.padding[0] = a.padding[1] = pad;
                a.ceil_mode = ceil;
                test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D, &a, src, NULL, NULL);
                test_add_conv(g, "conv2", "pool", 16, (test_conv_spec){4, 1, 1, 0, 1, 1, 1}, 4);
                test_finish(g, "conv2");
                char label[128];
                snprintf(label, sizeof label, "max_pool K %lld pad %lld ceil %d %lldx%lld%s", (long long)K,
                         (long long)pad, ceil, (long long)in[2], (long long)in[3], relu ? " after relu" : "");
                check_graph(g, 800 + (uint64_t)(ceil * 4 + pad * 2 + relu), label);
            }
        }
    }
}

/* conv+relu -> adaptive avg pool -> flatten -> linear [+relu] (the resnet
 * head: src zero point 0, inner product on the 4-D layout); and the avg pool
 * as the graph output (dequantize of a 1x1 value). */
static void test_avg_pool_head(void)
{
    for (int relu = 0; relu <= 2; relu++) {
        int64_t in[4] = {1, 3, 9, 7};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 3, (test_conv_spec){32, 3, 2, 1, 1, 1, 1}, 1);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
        test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "relu", NULL, NULL);
        const char *out = "avgpool";
        if (relu < 2) {
            test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "avgpool", NULL, NULL);
            test_add_linear(g, "fc", "flatten", 32, 10, 1, 2);
            out = "fc";
            if (relu) {
                test_add_op(g, "fc_relu", DISTQ_OP_RELU, NULL, "fc", NULL, NULL);
                out = "fc_relu";
            }
        }
        test_finish(g, out);
        check_graph(g, 900 + (uint64_t)relu, relu == 2 ? "conv+relu, avgpool out" : relu ? "head + relu" : "head");
    }
}

// --- linear -----------------------------------------------------------------------------

/* linear alone (src zero point != 0: matmul), linear -> linear (u8 dst with
 * a zero point), linear+relu -> linear, and conv -> flatten -> linear with a
 * non-zero zero point (matmul: a plain reorder of the conv's layout, then a
 * (N, F) view of it). */
static void test_linear(void)
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_linear(42, &g));
    check_graph(g, 1000, "linear model");

    for (int relu = 0; relu <= 1; relu++) {
        int64_t in[2] = {1, 37};
        g = test_new_graph(2, in);
        test_add_linear(g, "fc1", "x", 37, 19, 1, 5);
        const char *a = "fc1";
        if (relu) {
            test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "fc1", NULL, NULL);
            a = "relu";
        }
        test_add_linear(g, "fc2", a, 19, 7, relu, 6);
        test_finish(g, "fc2");
        check_graph(g, 1100 + (uint64_t)relu, relu ? "linear+relu -> linear" : "linear -> linear");
    }

    /* linear + gelu (X86InductorQuantizer's linear fusion), as a matmul (src
     * zero point != 0) and as an inner product (after relu, pool, flatten) */
    for (int ip = 0; ip <= 1; ip++) {
        int64_t in2[2] = {1, 37}, in4b[4] = {1, 3, 5, 7};
        const char *src = "x";
        g = test_new_graph(ip ? 4 : 2, ip ? in4b : in2);
        if (ip) {
            test_add_conv(g, "conv", "x", 3, (test_conv_spec){37, 3, 1, 1, 1, 1, 1}, 12);
            test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
            test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "relu", NULL, NULL);
            test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "avgpool", NULL, NULL);
            src = "flatten";
        }
        test_add_linear(g, "fc1", src, 37, 19, 1, 13);
        test_add_op(g, "gelu", DISTQ_OP_GELU, NULL, "fc1", NULL, NULL);
        test_add_linear(g, "fc2", "gelu", 19, 7, 1, 14);
        test_finish(g, "fc2");
        distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 15);
        int f = distq_graph_find_node(q, "fc1");
        CU_ASSERT_FATAL(f >= 0);
        CU_ASSERT_EQUAL(q->nodes[f].attr.post_op, DISTQ_OP_GELU);
        CU_ASSERT_EQUAL(distq_graph_find_node(q, "gelu"), -1);
        distq_graph_destroy(q);
        check_graph(g, 1200 + (uint64_t)ip, ip ? "inner product + gelu -> linear" : "matmul + gelu -> linear");
    }

    /* convnext's MLP: linear + gelu -> linear on the last dim of (N, H, W, C),
     * the rows every position of every image, int8 end to end */
    {
        int64_t in4c[4] = {1, 3, 5, 4};
        g = test_new_graph(4, in4c);
        test_add_conv(g, "dw", "x", 3, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 16);
        distq_attrs tr = distq_attrs_default(DISTQ_OP_TRANSPOSE);
        const int64_t nhwc[4] = {0, 2, 3, 1};
        memcpy(tr.perm, nhwc, sizeof nhwc);
        test_add_op(g, "to_nhwc", DISTQ_OP_TRANSPOSE, &tr, "dw", NULL, NULL);
        test_add_linear(g, "pw1", "to_nhwc", 8, 12, 1, 17);
        test_add_op(g, "act", DISTQ_OP_GELU, NULL, "pw1", NULL, NULL);
        test_add_linear(g, "pw2", "act", 12, 6, 1, 18);
        test_finish(g, "pw2");
        distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 1, 19);
        int f = distq_graph_find_node(q, "pw2");
        CU_ASSERT_FATAL(f >= 0);
        CU_ASSERT_EQUAL(q->values[q->nodes[f].inputs[0]].dtype, DISTQ_DTYPE_U8);
        CU_ASSERT_EQUAL(q->values[q->nodes[f].inputs[0]].ndim, 4);
        distq_graph_destroy(q);
        check_graph(g, 1250, "linear + gelu -> linear on (N, H, W, C)");
    }

    int64_t in4[4] = {1, 3, 5, 7};
    g = test_new_graph(4, in4);
    test_add_conv(g, "conv", "x", 3, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 8);
    test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "conv", NULL, NULL);
    test_add_linear(g, "fc", "flatten", 8 * 5 * 7, 6, 0, 9);
    test_finish(g, "fc");
    check_graph(g, 1300, "conv -> flatten+linear");

    /* an inner product writing u8 (src zero point 0 after the relu): its dst
     * zero point and clip are post-ops; without a relu fc1's output has a
     * zero point, so fc2 is a matmul, with one fc2 is an inner product too */
    for (int relu = 0; relu <= 1; relu++) {
        g = test_new_graph(4, in4);
        test_add_conv(g, "conv", "x", 3, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 10);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
        test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "relu", NULL, NULL);
        test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "avgpool", NULL, NULL);
        test_add_linear(g, "fc1", "flatten", 16, 12, 1, 11);
        const char *a = "fc1";
        if (relu) {
            test_add_op(g, "fc1_relu", DISTQ_OP_RELU, NULL, "fc1", NULL, NULL);
            a = "fc1_relu";
        }
        test_add_linear(g, "fc2", a, 12, 5, 1, 12);
        test_finish(g, "fc2");
        check_graph(g, 1400 + (uint64_t)relu, relu ? "head: linear+relu (u8) -> linear" : "head: linear (u8) -> linear");
    }
}

// --- reduce_range clip, by hand ---------------------------------------------------------

/* x (1, 4, 2, 2) -> quantize (s 1/16, zp 10, qmax 127) -> 1x1 conv with
 * w = +1 (oc 0) / -1 (oc 1), w_s 1/8, dst (s 1/32, zp 20, qmax 127) [+ relu]
 * -> dequantize. Every channel holds x = 0.5, 2, 4, 7.5 per pixel:
 *   xq - 10 = 8, 32, 64, 117 (7.5 * 16 + 10 = 130 clamps to 127)
 *   oc 0: y = 4 (xq - 10) / 128 -> code 32 y + 20 = 28, 52, 84, 137 -> 127
 *   oc 1: code -32 y + 20 = 12, -12 -> 0, ... (relu: y = 0 -> 20)
 * 137 is what oneDNN would store without the clip post-op; had oneDNN added
 * the dst zero point before the post-ops, the clip to 127 - zp would give 107
 * (and 12 instead of 20 for oc 1 with the relu): this pins down the order
 * (spec Appendix A.1). The same for a linear (a matmul: src zero point 10). */
static void test_reduce_range_clip(void)
{
    /* linear: the same numbers as a batch of 4 rows (one per pixel) through
     * a matmul (src zero point 10), writing (4, 2) */
    for (int linear = 0; linear <= 1; linear++) {
        for (int relu = 0; relu <= 1; relu++) {
            int64_t N = linear ? 4 : 1;
            distq_graph *q = NULL;
            TEST_OK(distq_graph_create(&q));
            int64_t xd[4] = {1, 4, 2, 2}, wd[4] = {2, 4, 1, 1}, two = 2;
            TEST_OK(distq_graph_set_input(q, "x", linear ? 2 : 4, xd));
            distq_attrs qa = distq_attrs_default(DISTQ_OP_QUANTIZE);
            qa.out_scale = 1.0f / 16;
            qa.out_zero_point = 10;
            qa.out_quant_max = 127;
            const char *in_x[] = {"x"}, *in_xq[] = {"xq"}, *in_y[] = {"y"};
            TEST_OK(distq_graph_add_node(q, "q", DISTQ_OP_QUANTIZE, &qa, 1, in_x, NULL, "xq"));
            int8_t w[8];
            for (int i = 0; i < 8; i++) w[i] = (int8_t)(i < 4 ? 1 : -1); /* oc 1 goes negative */
            const float ws[2] = {0.125f, 0.125f};
            TEST_OK(distq_graph_add_param(q, "w", DISTQ_DTYPE_S8, linear ? 2 : 4, wd, w, NULL));
            TEST_OK(distq_graph_add_param(q, "w_scale", DISTQ_DTYPE_F32, 1, &two, ws, NULL));
            distq_op op = linear ? DISTQ_OP_LINEAR : DISTQ_OP_CONV2D;
            distq_attrs ca = distq_attrs_default(op);
            ca.post_relu = relu;
            ca.out_scale = 1.0f / 32;
            ca.out_zero_point = 20;
            ca.out_quant_max = 127;
            const char *params[DISTQ_MAX_PARAMS] = {[DISTQ_PARAM_WEIGHT] = "w",
                                                    [DISTQ_PARAM_WEIGHT_SCALE] = "w_scale"};
            TEST_OK(distq_graph_add_node(q, linear ? "fc" : "conv", op, &ca, 1, in_xq, params, "y"));
            TEST_OK(distq_graph_add_node(q, "dq", DISTQ_OP_DEQUANTIZE, NULL, 1, in_y, NULL, "yf"));
            TEST_OK(distq_graph_set_output(q, "yf"));
            TEST_OK(distq_graph_finalize(q));
            float x[16];
            const float px[4] = {0.5f, 2.0f, 4.0f, 7.5f};
            for (int ch = 0; ch < 4; ch++)
                for (int p = 0; p < 4; p++) x[linear ? p * 4 + ch : ch * 4 + p] = px[p];
            distq_exec *ref = NULL, *dnn = NULL;
            float yr[8], yd[8];
            uint8_t cr[8], cd[8];
            TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, N, &ref));
            TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, q, N, &dnn));
            TEST_OK(distq_exec_run(ref, x, yr));
            TEST_OK(distq_exec_run(dnn, x, yd));
            TEST_OK(distq_exec_get_value(ref, "y", cr));
            TEST_OK(distq_exec_get_value(dnn, "y", cd));
            const uint8_t want0[4] = {28, 52, 84, 127};
            const uint8_t want1[2][4] = {{12, 0, 0, 0}, {20, 20, 20, 20}};
            for (int p = 0; p < 4; p++) { /* conv: (oc, p); linear: (p, oc) */
                int i0 = linear ? p * 2 : p, i1 = linear ? p * 2 + 1 : 4 + p;
                CU_ASSERT_EQUAL(cr[i0], want0[p]);
                CU_ASSERT_EQUAL(cd[i0], want0[p]);
                CU_ASSERT_EQUAL(cr[i1], want1[relu][p]);
                CU_ASSERT_EQUAL(cd[i1], want1[relu][p]);
            }
            CU_ASSERT(memcmp(yr, yd, sizeof yr) == 0);
            distq_exec_destroy(ref);
            distq_exec_destroy(dnn);
            distq_graph_destroy(q);
        }
    }
}

/* quantize -> dequantize on every tie k + 0.5 (scale 1/16: x * 16 is exact),
 * values far outside the range, +-Inf and NaN: codes equal the reference's,
 * f32 results bit for bit, for quant_max 127 and 255. */
static void test_quantize_ties(void)
{
    enum { N = 2 * 4096 + 4 };
    static float x[N], yr[N], yd[N];
    static uint8_t cr[N], cd[N];
    for (int k = 0; k < 2 * 4096; k++) x[k] = (float)(k - 4096) / 32.0f; /* (k - 4096) / 2 / 16 */
    x[N - 4] = INFINITY;
    x[N - 3] = -INFINITY;
    x[N - 2] = NAN;
    x[N - 1] = 1e30f;
    for (int qmax = 127; qmax <= 255; qmax += 128) {
        distq_graph *q = NULL;
        TEST_OK(distq_graph_create(&q));
        int64_t xd[2] = {1, N};
        TEST_OK(distq_graph_set_input(q, "x", 2, xd));
        distq_attrs qa = distq_attrs_default(DISTQ_OP_QUANTIZE);
        qa.out_scale = 1.0f / 16;
        qa.out_zero_point = 37;
        qa.out_quant_max = qmax;
        const char *in_x[] = {"x"}, *in_xq[] = {"xq"};
        TEST_OK(distq_graph_add_node(q, "q", DISTQ_OP_QUANTIZE, &qa, 1, in_x, NULL, "xq"));
        TEST_OK(distq_graph_add_node(q, "dq", DISTQ_OP_DEQUANTIZE, NULL, 1, in_xq, NULL, "y"));
        TEST_OK(distq_graph_set_output(q, "y"));
        TEST_OK(distq_graph_finalize(q));
        distq_exec *ref = NULL, *dnn = NULL;
        TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, 1, &ref));
        TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, q, 1, &dnn));
        TEST_OK(distq_exec_run(ref, x, yr));
        TEST_OK(distq_exec_run(dnn, x, yd));
        TEST_OK(distq_exec_get_value(ref, "xq", cr));
        TEST_OK(distq_exec_get_value(dnn, "xq", cd));
        CU_ASSERT(memcmp(cr, cd, N) == 0);
        CU_ASSERT(memcmp(yr, yd, sizeof yr) == 0);
        CU_ASSERT_EQUAL(cd[4096 + 1], 37 + 0);  /* 1/32 * 16 = 0.5 -> 0 (even) */
        CU_ASSERT_EQUAL(cd[4096 + 3], 37 + 2);  /* 1.5 -> 2 */
        CU_ASSERT_EQUAL(cd[4096 - 1], 37 + 0);  /* -0.5 -> -0 */
        CU_ASSERT_EQUAL(cd[N - 4], qmax);
        CU_ASSERT_EQUAL(cd[N - 3], 0);
        CU_ASSERT_EQUAL(cd[N - 1], qmax);
        distq_exec_destroy(ref);
        distq_exec_destroy(dnn);
        distq_graph_destroy(q);
    }
}

// --- the full-range refusal without VNNI -------------------------------------------------

static void test_full_range_refused(void)
{
    int64_t in[4] = {1, 3, 6, 6};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "conv", "x", 3, (test_conv_spec){4, 3, 1, 1, 1, 1, 1}, 1);
    test_finish(g, "conv");
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_MINMAX, 0, 5);
    distq_exec *e = NULL;
    if (!distq_onednn_has_vnni()) {
        TEST_ERR(distq_exec_create(DISTQ_BACKEND_ONEDNN, q, 2, &e), DISTQ_ERR_UNSUPPORTED, "node 'conv'");
        CU_ASSERT(strstr(distq_error_message(), "--reduce-range on") != NULL);
        CU_ASSERT(strstr(distq_error_message(), distq_onednn_isa()) != NULL);
        CU_ASSERT_PTR_NULL(e);
    } else {
        check_int8(q, g, 2, 6, "full range (VNNI)");
    }
    distq_graph_destroy(g);
    distq_graph_destroy(q);
}

// --- resnet18 ---------------------------------------------------------------------------

/* resnet18 at 64x64 (as test_quant), histogram observers, reduce_range; every
 * value compared at batch 2, then batch 1 and 3; where the ISA has VNNI, also
 * on the full 8-bit grid (what auto reduce_range picks there). */
static void test_resnet18(void)
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_resnet18(11, 1000, &g));
    g->input_dims[2] = g->input_dims[3] = 64;
    TEST_OK(distq_graph_finalize(g));
    distq_graph *q = quantize_graph(g, DISTQ_OBSERVER_HISTOGRAM, 1, 77);
    verbose = 1;
    int64_t at_qmax = check_int8(q, g, 2, 78, "resnet18");
    CU_ASSERT(at_qmax > 0); /* the test data exceeds the calibrated ranges: clips happened */
    verbose = 0;
    check_int8(q, g, 1, 79, "resnet18");
    check_int8(q, g, 3, 80, "resnet18");
    distq_graph_destroy(q);
    if (distq_onednn_has_vnni()) {
        q = quantize_graph(g, DISTQ_OBSERVER_HISTOGRAM, 0, 77);
        check_int8(q, g, 2, 81, "resnet18 full range");
        distq_graph_destroy(q);
    }
    distq_graph_destroy(g);
}

int main(void)
{
    static const test_case cases[] = {
        {"reduce_range clip by hand", test_reduce_range_clip},
        {"quantize: ties, extremes, dequantize", test_quantize_ties},
        {"full range refused without VNNI", test_full_range_refused},
        {"conv strided", test_conv_strided},
        {"conv padded", test_conv_padded},
        {"conv dilated", test_conv_dilated},
        {"conv grouped", test_conv_grouped},
        {"conv depthwise + relu", test_conv_depthwise},
        {"conv 1x1", test_conv_1x1},
        {"conv 7x7 + relu", test_conv_7x7},
        {"conv and max_pool2d with asymmetric pads", test_conv_asymmetric},
        {"conv + clip / hardswish / silu fused", test_conv_post_ops},
        {"conv + relu", test_conv_relu},
        {"conv + add + relu", test_conv_add},
        {"conv + add, zero points", test_conv_add_zp},
        {"conv + add + relu, f32 out", test_conv_add_f32_out},
        {"two graph outputs, one of them an inner int8 value", test_two_outputs},
        {"downsample block", test_downsample_block},
        {"mixed int8 / fp32 graph (fp32 nodes, quantize and dequantize inside)", test_mixed_graph},
        {"dense block: int8 concat, batch_norm + relu as int8, avg_pool2d", test_dense_block},
        {"channel shuffle: reshape, transpose, slice on int8 codes", test_channel_shuffle},
        {"squeeze-excite: the int8 gate on the codes", test_squeeze_excite},
        {"max_pool2d", test_max_pool},
        {"avg pool, flatten, linear head", test_avg_pool_head},
        {"linear", test_linear},
        {"resnet18 64x64", test_resnet18},
    };
    return test_run_suite("onednn_int8", cases, (int)(sizeof cases / sizeof cases[0]));
}
