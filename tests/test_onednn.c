/* The oneDNN fp32 executor held against the reference executor, op by op on
 * seeded random shapes, then on the whole resnet18.
 *
 * Tolerance: max |onednn - ref| / max |ref| < 1e-4. Both are fp32 but sum in
 * different orders (oneDNN: vectorised FMA over blocked channels; ref: plain
 * loops), and where a test folds BN for oneDNN (as distq_job_load_fp32 does)
 * the oneDNN side runs it folded into the conv weights. Rounding
 * then grows like sqrt(terms) * 2^-24: about 4e-6 relative for the largest
 * reductions here (3x3x512), and resnet18's 20 stacked layers stay well below
 * 1e-4. An indexing or layout mistake gives errors of order 1. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/exec.h"
#include "distq/passes.h"
#include "test_util.h"

#define TOL 1e-4

// --- the comparison -------------------------------------------------------------

/* Runs g on ref and onednn at batch N and asserts they agree within TOL. g is
 * destroyed right after the executors are made: they must keep nothing of it.
 * The oneDNN executor then runs input A, input B, and A again: the last run
 * must repeat the first bit for bit (state reused correctly, nothing
 * accumulates), and the caller's input must be left untouched. */
static void check_pair(distq_graph *g, distq_graph *g_dnn, int64_t batch, uint64_t seed,
                       const char *what)
{
    distq_exec *ref = NULL, *dnn = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, batch, &ref));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, g_dnn ? g_dnn : g, batch, &dnn));
    distq_graph_destroy(g);
    distq_graph_destroy(g_dnn);
    int64_t n_in = batch * distq_exec_input_numel(dnn), n_out = batch * distq_exec_output_numel(dnn);
    float *a = malloc(sizeof(float) * (size_t)n_in), *a_copy = malloc(sizeof(float) * (size_t)n_in);
    float *b = malloc(sizeof(float) * (size_t)n_in);
    float *want = malloc(sizeof(float) * (size_t)n_out), *got = malloc(sizeof(float) * (size_t)n_out);
    float *again = malloc(sizeof(float) * (size_t)n_out);
    CU_ASSERT_FATAL(a && a_copy && b && want && got && again);
    test_fill_uniform(a, n_in, seed, -1.0f, 1.0f);
    test_fill_uniform(b, n_in, seed + 1000, -1.0f, 1.0f);
    memcpy(a_copy, a, sizeof(float) * (size_t)n_in);

    TEST_OK(distq_exec_run(ref, a, want));
    TEST_OK(distq_exec_run(dnn, a, got));
    double err = test_max_rel_err(got, want, n_out);
    if (!(err < TOL))
        fprintf(stderr, "\n  %s, batch %lld: max rel err %.3g\n", what, (long long)batch, err);
    CU_ASSERT(err < TOL);

    TEST_OK(distq_exec_run(dnn, b, again));
    TEST_OK(distq_exec_run(dnn, a, again));
    CU_ASSERT(memcmp(got, again, sizeof(float) * (size_t)n_out) == 0);
    CU_ASSERT(memcmp(a, a_copy, sizeof(float) * (size_t)n_in) == 0);

    free(a);
    free(a_copy);
    free(b);
    free(want);
    free(got);
    free(again);
    distq_exec_destroy(ref);
    distq_exec_destroy(dnn);
}

/* ref and oneDNN both run g. */
static void check_backends(distq_graph *g, int64_t batch, uint64_t seed, const char *what)
{
    check_pair(g, NULL, batch, seed, what);
}

// --- conv2d -----------------------------------------------------------------------

enum { WITH_NONE = 0, WITH_RELU = 1, WITH_BN = 2 };

/* conv on random shapes: groups 0 means depthwise (groups = C); for each of
 * 2 seeds x bias on/off x batch 1 and 3. */
static void conv_cases(const char *what, int64_t stride, int64_t pad, int64_t dil,
                       int64_t groups, int with)
{
    for (uint64_t seed = 1; seed <= 2; seed++) {
        for (int bias = 0; bias <= 1; bias++) {
            for (int64_t batch = 1; batch <= 3; batch += 2) {
                distq_rng r;
                distq_rng_seed(&r, seed * 7919 + (uint64_t)(stride * 31 + pad * 7 + dil * 3 + groups));
                int64_t G = groups, C, OC;
                if (groups == 0) {
                    C = test_rand_int(&r, 2, 9);
                    G = C;
                    OC = C * test_rand_int(&r, 1, 2);
                } else {
                    C = G * test_rand_int(&r, 1, 5);
                    OC = G * test_rand_int(&r, 1, 6);
                }
                test_conv_spec c = {.OC = OC, .K = test_rand_int(&r, 1, 3) | 1, .stride = stride, .pad = pad,
                                    .dil = dil, .groups = G, .bias = bias};
                if (c.K == 1 && (pad || dil > 1)) c.K = 3;
                int64_t span = dil * (c.K - 1) + 1;
                int64_t in[4] = {1, C, span + test_rand_int(&r, 2, 9), span + test_rand_int(&r, 2, 9)};
                distq_graph *g = test_new_graph(4, in);
                test_add_conv(g, "conv", "x", C, c, seed);
                const char *out = "conv";
                if (with & WITH_BN) {
                    test_add_bn(g, "bn", out, OC, seed + 10);
                    out = "bn";
                }
                if (with & WITH_RELU) {
                    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, out, NULL, NULL);
                    out = "relu";
                }
                test_finish(g, out);
                char label[160];
                snprintf(label, sizeof label, "%s (C %lld, OC %lld, K %lld, %lldx%lld, bias %d)",
                         what, (long long)C, (long long)OC, (long long)c.K, (long long)in[2],
                         (long long)in[3], bias);
                if (with & WITH_BN) { /* oneDNN folded (the frozen graph), and BN as its own primitive */
                    distq_graph *folded = NULL, *unfolded = NULL;
                    TEST_OK(distq_graph_clone(g, &folded));
                    TEST_OK(distq_graph_clone(g, &unfolded));
                    int n_folded = 0;
                    TEST_OK(distq_pass_fold_bn(folded, &n_folded));
                    CU_ASSERT_EQUAL(n_folded, 1);
                    check_backends(unfolded, batch, seed, label);
                    check_pair(g, folded, batch, seed, label);
                } else {
                    check_backends(g, batch, seed, label);
                }
            }
        }
    }
}

static void test_conv_strided(void) { conv_cases("conv stride 2", 2, 0, 1, 1, WITH_NONE); }
static void test_conv_padded(void) { conv_cases("conv pad 1", 1, 1, 1, 1, WITH_NONE); }
static void test_conv_dilated(void) { conv_cases("conv dilation 2", 1, 2, 2, 1, WITH_NONE); }
static void test_conv_groups2(void) { conv_cases("conv groups 2", 1, 1, 1, 2, WITH_NONE); }
static void test_conv_depthwise(void) { conv_cases("conv depthwise", 2, 1, 1, 0, WITH_NONE); }
static void test_conv_relu(void) { conv_cases("conv+relu", 1, 1, 1, 1, WITH_RELU); }
static void test_conv_bn(void) { conv_cases("conv+bn (folded, and not)", 2, 1, 1, 1, WITH_BN); }
static void test_conv_bn_relu(void) { conv_cases("conv+bn+relu", 1, 1, 1, 1, WITH_BN | WITH_RELU); }

/* BNs fold_bn leaves alone run as oneDNN batch_normalization: one on the graph
 * input (+ relu fused), and one on a conv output that another node also reads. */
static void test_bn_unfolded(void)
{
    for (int64_t batch = 1; batch <= 3; batch += 2) {
        int64_t in[4] = {1, 5, 9, 7};
        distq_graph *g = test_new_graph(4, in);
        test_add_bn(g, "bn0", "x", 5, 1);
        test_add_op(g, "relu0", DISTQ_OP_RELU, NULL, "bn0", NULL, NULL);
        test_add_conv(g, "conv", "relu0", 5, (test_conv_spec){6, 3, 1, 1, 1, 1, 1}, 2);
        test_add_bn(g, "bn1", "conv", 6, 3);
        test_add_op(g, "relu1", DISTQ_OP_RELU, NULL, "conv", NULL, NULL);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "bn1", "relu1", NULL);
        test_finish(g, "add");
        check_backends(g, batch, 5, "unfolded bn");
    }
}

// --- the ops of mobilenet/efficientnet-style blocks ---------------------------------

static const distq_op eltwise_ops[] = {DISTQ_OP_HARDSWISH, DISTQ_OP_HARDSIGMOID, DISTQ_OP_CLIP, DISTQ_OP_SIGMOID,
                                       DISTQ_OP_RELU, DISTQ_OP_ELU, DISTQ_OP_NEG, DISTQ_OP_ABS, DISTQ_OP_EXP};

/* Each eltwise op fused into a conv (as a post-op), after a linear, and
 * standalone after a max_pool (nothing to fuse into); clip with a range
 * other than relu6's. */
static void test_eltwise_fused_and_standalone(void)
{
    for (size_t k = 0; k < sizeof eltwise_ops / sizeof eltwise_ops[0]; k++) {
        distq_op op = eltwise_ops[k];
        distq_attrs a = distq_attrs_default(op);
        if (op == DISTQ_OP_CLIP && k % 2 == 0) a.min = -0.25f, a.max = 0.5f;
        for (int64_t batch = 1; batch <= 3; batch += 2) {
            int64_t in[4] = {1, 6, 9, 9};
            distq_graph *g = test_new_graph(4, in);
            test_add_conv(g, "conv", "x", 6, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 3);
            test_add_op(g, "act", op, &a, "conv", NULL, NULL);
            distq_attrs p = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
            p.kernel[0] = p.kernel[1] = p.stride[0] = p.stride[1] = 2;
            test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D, &p, "act", NULL, NULL);
            test_add_op(g, "act2", op, &a, "pool", NULL, NULL);
            test_add_op(g, "flat", DISTQ_OP_FLATTEN, NULL, "act2", NULL, NULL);
            test_add_linear(g, "fc", "flat", 16 * 4 * 4, 10, 1, 4);
            test_add_op(g, "act3", op, &a, "fc", NULL, NULL);
            test_finish(g, "act3");
            char what[64];
            snprintf(what, sizeof what, "conv+%s, pool, %s, fc+%s", distq_op_name(op),
                     distq_op_name(op), distq_op_name(op));
            /* the conv's own output exists only inside the fused primitive */
            distq_exec *e = NULL;
            TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, batch, &e));
            float *conv_out = malloc(sizeof(float) * (size_t)(batch * 16 * 9 * 9));
            TEST_ERR(distq_exec_get_value(e, "conv", conv_out), DISTQ_ERR_UNSUPPORTED,
                     "fused into node 'conv'");
            free(conv_out);
            distq_exec_destroy(e);
            check_backends(g, batch, 21 + (uint64_t)k, what);
        }
    }
}

/* The ops defined on positive numbers only (sqrt, log, reciprocal, a
 * fractional pow), standalone on exp(conv(x)), exp fused into the conv; and
 * erf, which oneDNN 2.6 has no primitive for: refused when the executor is
 * made, naming the node, the op and the backend. */
static void test_positive_domain_ops(void)
{
    const distq_op ops[] = {DISTQ_OP_SQRT, DISTQ_OP_LOG, DISTQ_OP_RECIPROCAL, DISTQ_OP_POW};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        distq_attrs a = distq_attrs_default(ops[k]);
        if (ops[k] == DISTQ_OP_POW) a.alpha = 1.5f;
        int64_t in[4] = {1, 4, 7, 7};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 4, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 5);
        test_add_op(g, "exp", DISTQ_OP_EXP, NULL, "conv", NULL, NULL);
        test_add_op(g, "act", ops[k], &a, "exp", NULL, NULL);
        test_add_op(g, "flat", DISTQ_OP_FLATTEN, NULL, "act", NULL, NULL);
        test_add_linear(g, "fc", "flat", 8 * 7 * 7, 10, 1, 6);
        test_finish(g, "fc");
        char what[64];
        snprintf(what, sizeof what, "conv+exp, %s, fc", distq_op_name(ops[k]));
        check_backends(g, 2, 31 + (uint64_t)k, what);
    }
    int64_t in[4] = {1, 3, 5, 5};
    distq_graph *g = test_new_graph(4, in);
    test_add_op(g, "the_erf", DISTQ_OP_ERF, NULL, "x", NULL, NULL);
    test_finish(g, "the_erf");
    distq_exec *e = NULL;
    TEST_ERR(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, 1, &e), DISTQ_ERR_UNSUPPORTED,
             "node 'the_erf': op erf has no kernel on backend onednn");
    CU_ASSERT_PTR_NULL(e);
    float x[75], y[75];
    test_fill_uniform(x, 75, 9, -3.0f, 3.0f);
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, 1, &e));
    TEST_OK(distq_exec_run(e, x, y));
    /* erf's values at known points, from the series: erf(1) = 0.8427008 */
    int odd = 1;
    for (int i = 0; i < 75; i++) odd &= fabsf(y[i] + erff(-x[i])) <= 1e-7f && fabsf(y[i]) < 1.0f;
    CU_ASSERT(odd);
    distq_exec_destroy(e);
    x[0] = 1.0f;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, 1, &e));
    TEST_OK(distq_exec_run(e, x, y));
    CU_ASSERT(fabsf(y[0] - 0.8427008f) < 1e-6f);
    distq_exec_destroy(e);
    distq_graph_destroy(g);
}

/* The squeeze-excitation block: s = hardsigmoid(conv(relu(conv(gap(y))))),
 * out = y * s, with s broadcast over H, W; once with s as mul's first
 * input (oneDNN swaps them) and once second; then a standalone BN (after a
 * mul, not a conv) with a fused relu. */
static void test_squeeze_excitation(void)
{
    for (int s_first = 0; s_first <= 1; s_first++)
        for (int64_t batch = 1; batch <= 2; batch++) {
            int64_t in[4] = {1, 8, 7, 7};
            distq_graph *g = test_new_graph(4, in);
            test_add_conv(g, "y", "x", 8, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 7);
            test_add_op(g, "gap", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "y", NULL, NULL);
            test_add_conv(g, "fc1", "gap", 16, (test_conv_spec){4, 1, 1, 0, 1, 1, 1}, 8);
            test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "fc1", NULL, NULL);
            test_add_conv(g, "fc2", "relu", 4, (test_conv_spec){16, 1, 1, 0, 1, 1, 1}, 9);
            test_add_op(g, "s", DISTQ_OP_HARDSIGMOID, NULL, "fc2", NULL, NULL);
            test_add_op(g, "m", DISTQ_OP_MUL, NULL, s_first ? "s" : "y", s_first ? "y" : "s", NULL);
            test_add_bn(g, "bn", "m", 16, 10);
            test_add_op(g, "out", DISTQ_OP_RELU, NULL, "bn", NULL, NULL);
            test_finish(g, "out");
            check_backends(g, batch, 31, s_first ? "SE block, s first" : "SE block, s second");
        }
}

/* concat of 2 and of 11 inputs (more than one concat primitive takes: joined
 * in rounds), inputs in different layouts (the graph input is plain, conv
 * outputs blocked), along channels and along width; a standalone BN after. */
static void test_concat(void)
{
    for (int n_in = 2; n_in <= 11; n_in += 9)
        for (int axis = 1; axis <= 3; axis += 2) {
            int64_t in[4] = {1, 3, 6, 6};
            distq_graph *g = test_new_graph(4, in);
            const char *names[11];
            char buf[11][16];
            int64_t C = 0;
            for (int k = 0; k < n_in; k++) {
                if (k == 1) {
                    names[k] = "x";
                } else {
                    snprintf(buf[k], sizeof buf[k], "conv%d", k);
                    int64_t oc = axis == 1 ? 2 + k : 5;
                    test_add_conv(g, buf[k], "x", 3, (test_conv_spec){oc, 3, 1, 1, 1, 1, 1}, 40 + (uint64_t)k);
                    names[k] = buf[k];
                }
            }
            if (axis == 3) names[1] = "conv0"; /* x has 3 channels, the convs 5 */
            for (int k = 0; k < n_in; k++) C += axis == 1 ? (k == 1 ? 3 : 2 + k) : 5;
            distq_attrs a = distq_attrs_default(DISTQ_OP_CONCAT);
            a.axis = axis;
            TEST_OK(distq_graph_add_node(g, "cat", DISTQ_OP_CONCAT, &a, n_in, names, NULL, "cat"));
            int64_t bn_c = axis == 1 ? C : 5;
            test_add_bn(g, "bn", "cat", bn_c, 50);
            test_finish(g, "bn");
            char what[64];
            snprintf(what, sizeof what, "concat of %d along axis %d, bn", n_in, axis);
            for (int64_t batch = 1; batch <= 2; batch++) {
                distq_graph *c = NULL;
                TEST_OK(distq_graph_clone(g, &c));
                check_backends(c, batch, 60, what);
            }
            distq_graph_destroy(g);
        }
}

/* Values of rank 6 and 8 (the reshape/transpose patterns of imported models
 * produce them) through eltwise, mul, add and concat (along a negative axis),
 * kept as the graph output and flattened into a linear. */
static void test_nd_values(void)
{
    for (int to_linear = 0; to_linear <= 1; to_linear++) {
        int64_t in[6] = {1, 2, 3, 2, 2, 3};
        distq_graph *g = test_new_graph(6, in);
        test_add_op(g, "s", DISTQ_OP_SIGMOID, NULL, "x", NULL, NULL);
        test_add_op(g, "m", DISTQ_OP_MUL, NULL, "x", "s", NULL);
        test_add_op(g, "h", DISTQ_OP_HARDSWISH, NULL, "m", NULL, NULL);
        distq_attrs a = distq_attrs_default(DISTQ_OP_CONCAT);
        a.axis = -2;
        const char *cat_in[2] = {"h", "x"};
        TEST_OK(distq_graph_add_node(g, "cat", DISTQ_OP_CONCAT, &a, 2, cat_in, NULL, "cat"));
        test_add_op(g, "r", DISTQ_OP_RELU, NULL, "cat", NULL, NULL);
        const char *out = "r";
        if (to_linear) {
            test_add_op(g, "flat", DISTQ_OP_FLATTEN, NULL, "r", NULL, NULL);
            test_add_linear(g, "fc", "flat", 2 * 3 * 2 * 4 * 3, 5, 1, 70);
            out = "fc";
        }
        test_finish(g, out);
        int cat_index = distq_graph_find_value(g, "cat");
        CU_ASSERT_FATAL(cat_index >= 0);
        const distq_value *cat = &g->values[cat_index];
        CU_ASSERT_EQUAL(cat->ndim, 6);
        CU_ASSERT_EQUAL(cat->dims[4], 4);
        for (int64_t batch = 1; batch <= 2; batch++) {
            distq_graph *c = NULL;
            TEST_OK(distq_graph_clone(g, &c));
            check_backends(c, batch, 80, to_linear ? "rank 6, flatten + linear" : "rank 6 output");
        }
        distq_graph_destroy(g);
    }
    int64_t in8[8] = {1, 2, 1, 2, 1, 2, 1, 3};
    distq_graph *g = test_new_graph(8, in8);
    distq_attrs c = distq_attrs_default(DISTQ_OP_CLIP);
    c.min = -0.5f, c.max = 0.25f;
    test_add_op(g, "clip", DISTQ_OP_CLIP, &c, "x", NULL, NULL);
    test_add_op(g, "add", DISTQ_OP_ADD, NULL, "x", "clip", NULL);
    test_finish(g, "add");
    check_backends(g, 3, 81, "rank 8: clip, add");
}

// --- conv + add (sum post-op) ----------------------------------------------------

/* a = conv0(x); out = relu(conv1(a) + a) [+ a]. With keep_other the add's
 * other operand a is read again afterwards (out = relu(...) + a), so the fused
 * conv must not write into a's buffer; without, a dies at the add and its
 * buffer is used in place. */
static void conv_add_case(int keep_other, int relu)
{
    for (uint64_t seed = 1; seed <= 2; seed++) {
        for (int64_t batch = 1; batch <= 3; batch += 2) {
            distq_rng r;
            distq_rng_seed(&r, seed * 104729 + (uint64_t)(keep_other * 2 + relu));
            int64_t C = test_rand_int(&r, 1, 4), M = test_rand_int(&r, 3, 17);
            int64_t in[4] = {1, C, test_rand_int(&r, 5, 12), test_rand_int(&r, 5, 12)};
            distq_graph *g = test_new_graph(4, in);
            test_add_conv(g, "conv0", "x", C, (test_conv_spec){M, 3, 1, 1, 1, 1, 1}, seed);
            test_add_conv(g, "conv1", "conv0", M, (test_conv_spec){M, 3, 1, 1, 1, 1, 1}, seed + 5);
            test_add_op(g, "add", DISTQ_OP_ADD, NULL, "conv1", "conv0", NULL);
            const char *out = "add";
            if (relu) {
                test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "add", NULL, NULL);
                out = "relu";
            }
            if (keep_other) {
                test_add_op(g, "add2", DISTQ_OP_ADD, NULL, out, "conv0", NULL);
                out = "add2";
            }
            test_finish(g, out);
            char label[96];
            snprintf(label, sizeof label, "conv+add%s, other %s", relu ? "+relu" : "",
                     keep_other ? "read later" : "dead");
            check_backends(g, batch, seed, label);
        }
    }
}

static void test_conv_add_other_dead(void) { conv_add_case(0, 0); }
static void test_conv_add_relu_other_dead(void) { conv_add_case(0, 1); }
static void test_conv_add_relu_other_read_later(void) { conv_add_case(1, 1); }
static void test_conv_add_other_read_later(void) { conv_add_case(1, 0); }

/* The fused fp32 forms of the IR (what convert writes for an fp32 node, and
 * what a model file may hold): conv1 reads (a, residual a) with post_relu,
 * i.e. relu(conv1(a) + a), then a separate add of a, which must stay its own
 * primitive (the conv already has its sum), then flatten + linear with
 * post_relu. The reference computes each from the attributes alone. */
static void test_fused_forms_fp32(void)
{
    for (uint64_t seed = 1; seed <= 2; seed++) {
        int64_t in[4] = {1, 3, 6, 7}, M = 5;
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv0", "x", 3, (test_conv_spec){M, 3, 1, 1, 1, 1, 1}, seed);
        char w[] = "conv1.weight", b[] = "conv1.bias";
        int64_t wd[4] = {M, M, 3, 3};
        test_add_param(g, w, 4, wd, seed + 7, -0.15f, 0.15f);
        test_add_param(g, b, 1, &M, seed + 8, -0.15f, 0.15f);
        distq_attrs ca = distq_attrs_default(DISTQ_OP_CONV2D);
        ca.padding[0] = ca.padding[1] = 1;
        ca.post_relu = 1;
        const char *cparams[DISTQ_MAX_PARAMS] = {w, b};
        test_add_op(g, "conv1", DISTQ_OP_CONV2D, &ca, "conv0", "conv0", cparams);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "conv1", "conv0", NULL);
        test_add_op(g, "flat", DISTQ_OP_FLATTEN, NULL, "add", NULL, NULL);
        char lw[] = "fc.weight";
        int64_t lwd[2] = {10, M * 6 * 7};
        test_add_param(g, lw, 2, lwd, seed + 9, -0.03f, 0.03f);
        distq_attrs la = distq_attrs_default(DISTQ_OP_LINEAR);
        la.post_relu = 1;
        const char *lparams[DISTQ_MAX_PARAMS] = {lw, NULL};
        test_add_op(g, "fc", DISTQ_OP_LINEAR, &la, "flat", NULL, lparams);
        test_finish(g, "fc");
        for (int64_t batch = 1; batch <= 3; batch += 2) {
            distq_graph *c = NULL;
            TEST_OK(distq_graph_clone(g, &c));
            check_backends(c, batch, seed, "fused fp32 conv(+residual, relu) + add, linear(+relu)");
        }
        /* the fused conv's own output, read back: relu'd, and conv1 + conv0 */
        distq_exec *ref = NULL, *dnn = NULL;
        TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, 1, &ref));
        TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, 1, &dnn));
        float x[3 * 6 * 7], out[10], vr[5 * 6 * 7], vd[5 * 6 * 7];
        test_fill_uniform(x, 3 * 6 * 7, seed, -1.0f, 1.0f);
        TEST_OK(distq_exec_run(ref, x, out));
        TEST_OK(distq_exec_run(dnn, x, out));
        TEST_OK(distq_exec_get_value(ref, "conv1", vr));
        TEST_OK(distq_exec_get_value(dnn, "conv1", vd));
        int negative = 0;
        for (int i = 0; i < 5 * 6 * 7; i++) negative += vr[i] < 0 || vd[i] < 0;
        CU_ASSERT_EQUAL(negative, 0);
        CU_ASSERT(test_max_rel_err(vd, vr, 5 * 6 * 7) < TOL);
        distq_exec_destroy(ref);
        distq_exec_destroy(dnn);
        distq_graph_destroy(g);
    }
}

/* resnet's downsample block: relu(conv_a(x) + conv_b(x)), both BN-folded,
 * strided; and the graph input itself as the sum operand: conv(x) + x. */
static void test_conv_add_shapes(void)
{
    for (int64_t batch = 1; batch <= 3; batch += 2) {
        int64_t in[4] = {1, 8, 11, 10};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv_a", "x", 8, (test_conv_spec){16, 3, 2, 1, 1, 1, 0}, 1);
        test_add_bn(g, "bn_a", "conv_a", 16, 2);
        test_add_conv(g, "conv_b", "x", 8, (test_conv_spec){16, 1, 2, 0, 1, 1, 0}, 3);
        test_add_bn(g, "bn_b", "conv_b", 16, 4);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "bn_a", "bn_b", NULL);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "add", NULL, NULL);
        test_finish(g, "relu");
        check_backends(g, batch, 7, "downsample block");

        g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 8, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 5);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "x", "conv", NULL);
        test_finish(g, "add");
        check_backends(g, batch, 8, "conv(x) + x");
    }
}

// --- pooling ------------------------------------------------------------------------

/* max_pool2d on odd sizes, with and without padding and ceil_mode, on the
 * graph input (plain layout) and after a conv (oneDNN's blocked layout). */
static void test_max_pool(void)
{
    for (int ceil = 0; ceil <= 1; ceil++) {
        for (int64_t pad = 0; pad <= 1; pad++) {
            for (int after_conv = 0; after_conv <= 1; after_conv++) {
                distq_rng r;
                distq_rng_seed(&r, (uint64_t)(ceil * 4 + pad * 2 + after_conv + 1));
                int64_t C = test_rand_int(&r, 1, 6), K = test_rand_int(&r, 2, 3);
                int64_t in[4] = {1, C, 2 * test_rand_int(&r, 2, 6) + 1, 2 * test_rand_int(&r, 2, 6) + 1};
                distq_graph *g = test_new_graph(4, in);
                const char *src = "x";
                if (after_conv) {
                    test_add_conv(g, "conv", "x", C, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 3);
                    src = "conv";
                }
                distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
                a.kernel[0] = a.kernel[1] = K;
                a.stride[0] = a.stride[1] = 2;
                a.padding[0] = a.padding[1] = pad;
                a.ceil_mode = ceil;
                test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D, &a, src, NULL, NULL);
                test_finish(g, "pool");
                char label[128];
                snprintf(label, sizeof label, "max_pool K %lld pad %lld ceil %d on %lldx%lld%s",
                         (long long)K, (long long)pad, ceil, (long long)in[2], (long long)in[3],
                         after_conv ? " after conv" : "");
                distq_graph *g1 = NULL;
                TEST_OK(distq_graph_clone(g, &g1));
                check_backends(g1, 1, 11, label);
                check_backends(g, 3, 11, label);
            }
        }
    }
}

static void test_adaptive_avg_pool(void)
{
    for (int after_conv = 0; after_conv <= 1; after_conv++) {
        for (int64_t batch = 1; batch <= 3; batch += 2) {
            int64_t in[4] = {1, 5, 7, 9};
            distq_graph *g = test_new_graph(4, in);
            const char *src = "x";
            if (after_conv) {
                test_add_conv(g, "conv", "x", 5, (test_conv_spec){24, 3, 1, 1, 1, 1, 1}, 4);
                src = "conv";
            }
            test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, src, NULL, NULL);
            test_finish(g, "avgpool");
            check_backends(g, batch, 12, after_conv ? "adaptive avg pool after conv" : "adaptive avg pool");
        }
    }
}

// --- flatten, linear, relu, add ------------------------------------------------------

/* flatten + linear [+ relu], straight on the input and after conv + avgpool
 * (resnet's head, on a blocked layout). */
static void test_flatten_linear(void)
{
    for (int relu = 0; relu <= 1; relu++) {
        for (int after_conv = 0; after_conv <= 1; after_conv++) {
            for (int64_t batch = 1; batch <= 3; batch += 2) {
                int64_t in[4] = {1, 3, 5, 7};
                distq_graph *g = test_new_graph(4, in);
                const char *src = "x";
                int64_t features = 3 * 5 * 7;
                if (after_conv) {
                    test_add_conv(g, "conv", "x", 3, (test_conv_spec){32, 3, 2, 1, 1, 1, 1}, 1);
                    test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "conv", NULL, NULL);
                    src = "avgpool";
                    features = 32;
                }
                test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, src, NULL, NULL);
                test_add_linear(g, "fc", "flatten", features, 10, 1, 2);
                const char *out = "fc";
                if (relu) {
                    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "fc", NULL, NULL);
                    out = "relu";
                }
                test_finish(g, out);
                check_backends(g, batch, 13, relu ? "flatten+linear+relu" : "flatten+linear");
            }
        }
    }
}

/* A flatten whose output goes elsewhere than a linear: reorder to plain and
 * reinterpret. Here it feeds a relu and a linear, and in a second graph it is
 * the graph output. */
static void test_flatten_standalone(void)
{
    for (int64_t batch = 1; batch <= 3; batch += 2) {
        int64_t in[4] = {1, 4, 6, 5};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 4, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 1);
        test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "conv", NULL, NULL);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "flatten", NULL, NULL);
        test_add_linear(g, "fc", "relu", 16 * 6 * 5, 7, 0, 2);
        test_add_linear(g, "fc2", "flatten", 16 * 6 * 5, 7, 1, 3);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "fc", "fc2", NULL);
        test_finish(g, "add");
        check_backends(g, batch, 14, "flatten -> relu, linear");

        g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 4, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 1);
        test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "conv", NULL, NULL);
        test_finish(g, "flatten");
        check_backends(g, batch, 15, "flatten as output");
    }
}

/* linear on a 2-D input: the "linear" model, plus linear + relu + bn (2-D BN
 * is never folded). */
static void test_linear_2d(void)
{
    for (int64_t batch = 1; batch <= 3; batch += 2) {
        distq_graph *g = NULL;
        TEST_OK(distq_build_linear(42, &g));
        check_backends(g, batch, 16, "linear model");

        int64_t in[2] = {1, 37};
        g = test_new_graph(2, in);
        test_add_linear(g, "fc", "x", 37, 19, 1, 5);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "fc", NULL, NULL);
        test_add_bn(g, "bn", "relu", 19, 6);
        test_finish(g, "bn");
        check_backends(g, batch, 17, "linear+relu, bn on 2-D");
    }
}

/* Standalone relu and add (binary, with and without a fused relu), on plain
 * and blocked layouts. */
static void test_relu_add(void)
{
    for (int64_t batch = 1; batch <= 3; batch += 2) {
        int64_t in[4] = {1, 3, 7, 5};
        distq_graph *g = test_new_graph(4, in);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "x", NULL, NULL);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "relu", "x", NULL);
        test_add_op(g, "add_relu", DISTQ_OP_ADD, NULL, "add", "x", NULL);
        test_add_op(g, "relu2", DISTQ_OP_RELU, NULL, "add_relu", NULL, NULL);
        test_add_op(g, "add3", DISTQ_OP_ADD, NULL, "relu2", "relu2", NULL);
        test_finish(g, "add3");
        check_backends(g, batch, 18, "relu, add on the input");

        g = test_new_graph(4, in);
        test_add_conv(g, "conv", "x", 3, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 1);
        test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D,
                    &(distq_attrs){.kernel = {2, 2}, .stride = {1, 1}, .dilation = {1, 1}}, "conv", NULL,
                    NULL);
        test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "pool", NULL, NULL);
        test_add_op(g, "relu_b", DISTQ_OP_RELU, NULL, "pool", NULL, NULL);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "relu", "pool", NULL);
        test_add_op(g, "add2", DISTQ_OP_ADD, NULL, "add", "relu_b", NULL);
        test_add_op(g, "relu2", DISTQ_OP_RELU, NULL, "add2", NULL, NULL);
        test_finish(g, "relu2");
        check_backends(g, batch, 19, "relu, add on a blocked layout");
    }
}

// --- get_value -------------------------------------------------------------------------

/* Reads value `name` from both executors and asserts they agree within TOL. */
static void check_value(distq_exec *ref, distq_exec *dnn, const distq_graph *g, const char *name,
                        int64_t batch)
{
    int v = distq_graph_find_value(g, name);
    CU_ASSERT_FATAL(v >= 0);
    int64_t n = distq_value_numel(&g->values[v], batch);
    float *want = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
    CU_ASSERT_FATAL(want && got);
    TEST_OK(distq_exec_get_value(ref, name, want));
    TEST_OK(distq_exec_get_value(dnn, name, got));
    double err = test_max_rel_err(got, want, n);
    if (!(err < TOL)) fprintf(stderr, "\n  value '%s', batch %lld: max rel err %.3g\n", name, (long long)batch, err);
    CU_ASSERT(err < TOL);
    free(want);
    free(got);
}

/* A small resnet-like graph: stem conv+bn+relu, max pool, a basic block
 * (conv+relu, conv+add+relu over the pool output), avg pool, flatten, fc.
 * Every value the calibrator observes must read back after a run (also after
 * a second run on other data: nothing may be overwritten in place), and the
 * values computed inside a fused primitive are UNSUPPORTED, by name. */
static void test_get_value(void)
{
    static const char *const kept[] = {"x", "relu0", "pool", "relu1", "relu2", "avgpool",
                                       "flatten", "fc"};
    for (int64_t batch = 1; batch <= 3; batch += 2) {
        int64_t in[4] = {1, 3, 13, 11};
        distq_graph *g = test_new_graph(4, in);
        test_add_conv(g, "conv0", "x", 3, (test_conv_spec){8, 3, 2, 1, 1, 1, 0}, 1);
        test_add_bn(g, "bn0", "conv0", 8, 2);
        test_add_op(g, "relu0", DISTQ_OP_RELU, NULL, "bn0", NULL, NULL);
        test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D,
                    &(distq_attrs){.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .dilation = {1, 1}},
                    "relu0", NULL, NULL);
        test_add_conv(g, "conv1", "pool", 8, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 3);
        test_add_op(g, "relu1", DISTQ_OP_RELU, NULL, "conv1", NULL, NULL);
        test_add_conv(g, "conv2", "relu1", 8, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 4);
        test_add_op(g, "add", DISTQ_OP_ADD, NULL, "conv2", "pool", NULL);
        test_add_op(g, "relu2", DISTQ_OP_RELU, NULL, "add", NULL, NULL);
        test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "relu2", NULL, NULL);
        test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "avgpool", NULL, NULL);
        test_add_linear(g, "fc", "flatten", 8, 5, 1, 5);
        test_finish(g, "fc");

        distq_exec *ref = NULL, *dnn = NULL;
        TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, batch, &ref));
        TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, batch, &dnn));
        int64_t n_in = batch * distq_exec_input_numel(dnn), n_out = batch * distq_exec_output_numel(dnn);
        float *x = malloc(sizeof(float) * (size_t)n_in), *y = malloc(sizeof(float) * (size_t)n_out);
        CU_ASSERT_FATAL(x && y);
        for (int round = 0; round < 2; round++) {
            test_fill_uniform(x, n_in, 40 + (uint64_t)round, -1.0f, 1.0f);
            TEST_OK(distq_exec_run(ref, x, y));
            TEST_OK(distq_exec_run(dnn, x, y));
            for (size_t k = 0; k < sizeof kept / sizeof kept[0]; k++) check_value(ref, dnn, g, kept[k], batch);
        }
        float scratch[4096];
        TEST_ERR(distq_exec_get_value(dnn, "conv1", scratch), DISTQ_ERR_UNSUPPORTED, "'conv1'");
        TEST_ERR(distq_exec_get_value(dnn, "add", scratch), DISTQ_ERR_UNSUPPORTED, "relu2");
        TEST_ERR(distq_exec_get_value(dnn, "nope", scratch), DISTQ_ERR_INVALID_ARG, "'nope'");
        free(x);
        free(y);
        distq_exec_destroy(ref);
        distq_exec_destroy(dnn);
        distq_graph_destroy(g);
    }
}

/* A flatten that is the graph output and a standalone relu read back too. */
static void test_get_value_flatten_output(void)
{
    int64_t batch = 2, in[4] = {1, 4, 6, 5};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "conv", "x", 4, (test_conv_spec){16, 3, 1, 1, 1, 1, 1}, 1);
    test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "conv", NULL, NULL);
    test_add_op(g, "relu", DISTQ_OP_RELU, NULL, "flatten", NULL, NULL);
    test_finish(g, "relu");
    distq_exec *ref = NULL, *dnn = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, batch, &ref));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, batch, &dnn));
    int64_t n_in = batch * distq_exec_input_numel(dnn), n_out = batch * distq_exec_output_numel(dnn);
    float *x = malloc(sizeof(float) * (size_t)n_in), *y = malloc(sizeof(float) * (size_t)n_out);
    CU_ASSERT_FATAL(x && y);
    test_fill_uniform(x, n_in, 50, -1.0f, 1.0f);
    TEST_OK(distq_exec_run(ref, x, y));
    TEST_OK(distq_exec_run(dnn, x, y));
    check_value(ref, dnn, g, "conv", batch);
    check_value(ref, dnn, g, "flatten", batch);
    check_value(ref, dnn, g, "relu", batch);
    free(x);
    free(y);
    distq_exec_destroy(ref);
    distq_exec_destroy(dnn);
    distq_graph_destroy(g);
}

// --- whole model and API ---------------------------------------------------------------

static void test_resnet18(void)
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_resnet18(7, 1000, &g));
    distq_graph *folded = NULL; /* as distq_job_load_fp32 gives oneDNN */
    TEST_OK(distq_graph_clone(g, &folded));
    TEST_OK(distq_pass_fold_bn(folded, NULL));
    check_pair(g, folded, 2, 20, "resnet18");
}

/* A batch no machine can hold: the executor fails cleanly with NOMEM and
 * says what it could not allocate. (Skipped under ASan, whose allocator
 * aborts on such a request instead of returning NULL.) */
static void test_nomem(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    distq_graph *g = NULL;
    distq_exec *e = NULL;
    TEST_OK(distq_build_linear(1, &g));
    TEST_ERR(distq_exec_create(DISTQ_BACKEND_ONEDNN, g, (int64_t)1 << 36, &e), DISTQ_ERR_NOMEM,
             "activation buffer");
    CU_ASSERT_PTR_NULL(e);
    distq_graph_destroy(g);
#endif
}

static void test_api(void)
{
    const char *isa = distq_onednn_isa();
    CU_ASSERT(isa && strcmp(isa, "unknown") != 0);
    /* the cap: as ctest's ISA matrix set it, and fixed once oneDNN has
     * reported its ISA (test_run_suite did) */
    const char *env = getenv("ONEDNN_MAX_CPU_ISA");
    char want[32] = "";
    for (size_t i = 0; env && env[i] && i + 1 < sizeof want; i++) want[i] = (char)tolower((unsigned char)env[i]);
    CU_ASSERT_STRING_EQUAL(distq_onednn_max_isa(), want);
    if (want[0] && !distq_onednn_isa_below_cap()) CU_ASSERT_STRING_EQUAL(isa, want);
    TEST_ERR(distq_onednn_set_max_isa("avx3"), DISTQ_ERR_INVALID_ARG, "'avx3' is not an ISA level");
    TEST_ERR(distq_onednn_set_max_isa("avx512_mic"), DISTQ_ERR_INVALID_ARG, "not an ISA level");
    TEST_ERR(distq_onednn_set_max_isa("AVX2"), DISTQ_ERR_UNSUPPORTED, "before oneDNN creates its first kernel");
    CU_ASSERT_STRING_EQUAL(distq_onednn_max_isa(), want); /* a refused cap is not recorded */
    TEST_ERR(distq_onednn_set_threads(-1), DISTQ_ERR_INVALID_ARG, "thread count -1");
    TEST_OK(distq_onednn_set_threads(0));
    CU_ASSERT_STRING_EQUAL(distq_backend_name(DISTQ_BACKEND_ONEDNN), "onednn");
}

int main(void)
{
    static const test_case cases[] = {
        {"api", test_api},
        {"out of memory", test_nomem},
        {"conv strided", test_conv_strided},
        {"conv padded", test_conv_padded},
        {"conv dilated", test_conv_dilated},
        {"conv groups 2", test_conv_groups2},
        {"conv depthwise", test_conv_depthwise},
        {"conv + relu", test_conv_relu},
        {"conv + bn (folded, and not)", test_conv_bn},
        {"conv + bn + relu", test_conv_bn_relu},
        {"bn not folded", test_bn_unfolded},
        {"conv + add, other dead", test_conv_add_other_dead},
        {"fused fp32 forms: conv with residual input and post_relu, linear with post_relu", test_fused_forms_fp32},
        {"conv + add + relu, other dead", test_conv_add_relu_other_dead},
        {"conv + add, other read later", test_conv_add_other_read_later},
        {"conv + add + relu, other read later", test_conv_add_relu_other_read_later},
        {"conv + add: downsample, input", test_conv_add_shapes},
        {"max_pool2d", test_max_pool},
        {"adaptive_avg_pool2d", test_adaptive_avg_pool},
        {"flatten + linear", test_flatten_linear},
        {"flatten standalone", test_flatten_standalone},
        {"linear 2-D", test_linear_2d},
        {"relu, add", test_relu_add},
        {"get_value: resnet-like graph", test_get_value},
        {"get_value: flatten as output", test_get_value_flatten_output},
        {"eltwise ops (hardswish ... exp): fused and standalone", test_eltwise_fused_and_standalone},
        {"sqrt, log, reciprocal, pow on positive inputs; erf refused by oneDNN", test_positive_domain_ops},
        {"squeeze-excitation: broadcast mul, standalone bn", test_squeeze_excitation},
        {"concat of 2 and 11 inputs, channels and width", test_concat},
        {"values of rank 6 and 8", test_nd_values},
        {"resnet18 batch 2", test_resnet18},
    };
    return test_run_suite("onednn", cases, (int)(sizeof cases / sizeof cases[0]));
}
