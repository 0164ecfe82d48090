/* PTQ: prepare (patterns, observers), calibrate, convert, and the int8
 * reference executor, against fp32 and against hand-computed integers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/exec.h"
#include "distq/quant.h"
#include "test_util.h"

enum { HW = 64 }; /* resnet18 at 64x64 keeps the plain-C references fast */

static distq_graph *small_resnet18(uint64_t seed)
{
    distq_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(distq_build_resnet18(seed, 1000, &g), DISTQ_OK);
    g->input_dims[2] = g->input_dims[3] = HW;
    CU_ASSERT_EQUAL_FATAL(distq_graph_finalize(g), DISTQ_OK);
    return g;
}

static const distq_node_plan *plan_of(const distq_prepared *p, const char *node)
{
    int i = distq_graph_find_node(p->g, node);
    CU_ASSERT_FATAL(i >= 0);
    return &p->plan[i];
}

/* spec §6.1: conv1+relu, 8 conv1+relu, 8 conv2+add+relu, 3 downsample convs,
 * int8 maxpool/avgpool/flatten, fc; one observer for relu4.1/avgpool/flatten. */
static void test_prepare_resnet18(void)
{
    distq_graph *g = small_resnet18(1);
    distq_prepared *p = NULL;
    TEST_OK(distq_prepare(g, DISTQ_OBSERVER_HISTOGRAM, &p));
    int count[DISTQ_PATTERN_BN + 1] = {0}, relu = 0;
    for (int i = 0; i < p->g->n_nodes; i++) {
        count[p->plan[i].pattern]++;
        relu += p->plan[i].relu;
    }
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_CONV], 12);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_CONV_SUM], 8);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_LINEAR], 1);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_MAX_POOL], 1);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_AVG_POOL], 1);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_FLATTEN], 1);
    CU_ASSERT_EQUAL(relu, 17);
    /* conv2 takes the add (it comes first in graph order), the downsample conv stays alone */
    const distq_node_plan *c2 = plan_of(p, "layer2.0.conv2");
    CU_ASSERT_EQUAL(c2->pattern, DISTQ_PATTERN_CONV_SUM);
    CU_ASSERT_STRING_EQUAL(p->g->values[c2->sum_value].name, "layer2.0.downsample.1");
    CU_ASSERT_EQUAL(plan_of(p, "layer2.0.downsample.0")->pattern, DISTQ_PATTERN_CONV);
    CU_ASSERT_EQUAL(plan_of(p, "layer2.0.downsample.0")->relu, 0);
    /* identity blocks: the sum input is the block input, shared with conv1's input */
    const distq_node_plan *c11 = plan_of(p, "layer1.1.conv2");
    CU_ASSERT_STRING_EQUAL(p->g->values[c11->sum_value].name, "layer1.0.relu_1");
    int tail = p->value_observer[distq_graph_find_value(p->g, "avgpool")];
    CU_ASSERT_EQUAL(tail, p->value_observer[distq_graph_find_value(p->g, "layer4.1.relu_1")]);
    CU_ASSERT_EQUAL(tail, p->value_observer[distq_graph_find_value(p->g, "flatten")]);
    CU_ASSERT_EQUAL(p->observers[tail].n_values, 3);
    CU_ASSERT_EQUAL(p->value_observer[distq_graph_find_value(p->g, "fc")], -1); /* f32 logits */
    /* input, conv1/maxpool (shared), 8 block outputs... */
    CU_ASSERT_EQUAL(p->value_observer[distq_graph_find_value(p->g, "maxpool")],
                    p->value_observer[distq_graph_find_value(p->g, "relu")]);
    distq_prepared_destroy(p);
    distq_graph_destroy(g);
}

static distq_graph *calibrate_convert_rr(const distq_graph *g, distq_observer_kind kind, const float *x,
                                          int64_t n, int64_t batch, int reduce_range)
{
    distq_prepared *p = NULL;
    distq_calibrator *c = NULL;
    distq_graph *q = NULL;
    int64_t per = distq_value_numel(&g->values[g->input_value], 1);
    TEST_OK(distq_prepare(g, kind, &p));
    TEST_OK(distq_calibrator_create(p, batch, NULL, &c));
    for (int64_t s = 0; s < n; s += batch) TEST_OK(distq_calibrate_batch(c, x + s * per, n - s < batch ? n - s : batch));
    TEST_OK(distq_convert(p, reduce_range, &q));
    distq_calibrator_destroy(c);
    distq_prepared_destroy(p);
    return q;
}

static double rel_l2(const float *a, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / den);
}

static distq_graph *calibrate_convert(const distq_graph *g, distq_observer_kind kind, const float *x,
                                       int64_t n, int64_t batch)
{
    return calibrate_convert_rr(g, kind, x, n, batch, 0);
}

/* int8 (reference executor) vs fp32 on held-out images. */
static void test_resnet18_int8_vs_fp32(void)
{
    enum { NCAL = 8, NTEST = 2, PER = 3 * HW * HW };
    static float cal[NCAL * PER], x[NTEST * PER], y32[NTEST * 1000], y8[NTEST * 1000];
    distq_graph *g = small_resnet18(2);
    test_fill_uniform(cal, NCAL * PER, 21, -2.0f, 2.0f);
    test_fill_uniform(x, NTEST * PER, 22, -2.0f, 2.0f);
    distq_exec *e32 = NULL, *e8 = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, NTEST, &e32));
    TEST_OK(distq_exec_run(e32, x, y32));
    for (int kind = 0; kind < DISTQ_OBSERVER_COUNT; kind++) {
        distq_graph *q = calibrate_convert(g, (distq_observer_kind)kind, cal, NCAL, 4);
        CU_ASSERT_EQUAL(q->values[q->output_values[0]].dtype, DISTQ_DTYPE_F32);
        CU_ASSERT_EQUAL(q->n_nodes, 1 + 20 + 3 + 1); /* quantize, convs, pools+flatten, fc */
        TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, NTEST, &e8));
        TEST_OK(distq_exec_run(e8, x, y8));
        double err = rel_l2(y8, y32, NTEST * 1000);
        printf(" [%s: rel L2 %.4f] ", distq_observer_kind_name((distq_observer_kind)kind), err);
        /* Each of the ~21 requantizations adds rounding noise of RMS step/sqrt(12), about
         * 0.6% of a ReLU'd activation's RMS at 8 bits; independent noise adds in
         * quadrature: 0.6% * sqrt(21) = 2.7%, plus s8 weights. Bound: about 2x that. */
        CU_ASSERT(err < 0.06);
        distq_exec_destroy(e8);
        distq_graph_destroy(q);
    }
    /* reduce_range: 7-bit activations, every u8 value within [0, 127]. */
    distq_graph *q = calibrate_convert_rr(g, DISTQ_OBSERVER_HISTOGRAM, cal, NCAL, 4, 1);
    for (int i = 0; i < q->n_values; i++)
        if (q->values[i].dtype == DISTQ_DTYPE_U8) {
            CU_ASSERT_EQUAL(q->values[i].quant_max, 127);
            CU_ASSERT(q->values[i].zero_point <= 127);
        }
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, NTEST, &e8));
    TEST_OK(distq_exec_run(e8, x, y8));
    double err = rel_l2(y8, y32, NTEST * 1000);
    printf(" [histogram, reduce_range: rel L2 %.4f] ", err);
    CU_ASSERT(err < 0.10); /* 7-bit activations: twice the step, twice the noise */
    distq_exec_destroy(e8);
    distq_graph_destroy(q);
    distq_exec_destroy(e32);
    distq_graph_destroy(g);
}

/* MinMax: one batch of 8 == four batches of 2 (min/max is order-free). */
static void test_minmax_batches_identical(void)
{
    enum { N = 8, PER = 3 * HW * HW };
    static float cal[N * PER];
    distq_graph *g = small_resnet18(3);
    test_fill_uniform(cal, N * PER, 31, -2.0f, 2.0f);
    distq_graph *a = calibrate_convert(g, DISTQ_OBSERVER_MINMAX, cal, N, 8);
    distq_graph *b = calibrate_convert(g, DISTQ_OBSERVER_MINMAX, cal, N, 2);
    CU_ASSERT_EQUAL_FATAL(a->n_values, b->n_values);
    for (int i = 0; i < a->n_values; i++) {
        CU_ASSERT_EQUAL(a->values[i].scale, b->values[i].scale);
        CU_ASSERT_EQUAL(a->values[i].zero_point, b->values[i].zero_point);
    }
    distq_graph_destroy(a);
    distq_graph_destroy(b);
    distq_graph_destroy(g);
}

/* Hand-computed int8 arithmetic through the reference executor:
 *   x = {3, 0.5} -> xq (s 0.5, zp 10) = {16, 11}
 *   c0: w {1, 1} ws 0.5: acc = 6 + 1 = 7, y = 0.25 * 7 = 1.75 -> r (s 0.125, zp 4) = 14 + 4 = 18
 *   c:  w {2, -1} ws 0.25, bias 1: acc = 12 - 1 = 11, y = 0.125 * 11 + 1 = 2.375,
 *       + residual (18 - 4) * 0.125 = 1.75 -> 4.125, relu, dst (s 0.25, zp 3):
 *       4.125 * 4 = 16.5 -> half to even 16, + 3 = 19; dequantized (19 - 3) * 0.25 = 4. */
static void add_qconv(distq_graph *q, const char *name, int n_in, const char *const *ins, const int8_t w[2],
                      float ws, float bias, int relu, float out_s, int64_t out_zp, const char *out)
{
    int64_t wd[4] = {1, 2, 1, 1}, one = 1;
    char wn[32], sn[32], bn[32];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(sn, sizeof sn, "%s.weight_scale", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    TEST_OK(distq_graph_add_param(q, wn, DISTQ_DTYPE_S8, 4, wd, w, NULL));
    TEST_OK(distq_graph_add_param(q, sn, DISTQ_DTYPE_F32, 1, &one, &ws, NULL));
    TEST_OK(distq_graph_add_param(q, bn, DISTQ_DTYPE_F32, 1, &one, &bias, NULL));
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.post_relu = relu;
    a.out_scale = out_s;
    a.out_zero_point = out_zp;
    const char *params[DISTQ_MAX_PARAMS] = {
        [DISTQ_PARAM_WEIGHT] = wn, [DISTQ_PARAM_BIAS] = bn, [DISTQ_PARAM_WEIGHT_SCALE] = sn};
    TEST_OK(distq_graph_add_node(q, name, DISTQ_OP_CONV2D, &a, n_in, ins, params, out));
}

static void test_int8_ref_by_hand(void)
{
    distq_graph *q = NULL;
    TEST_OK(distq_graph_create(&q));
    int64_t xd[4] = {1, 2, 1, 1};
    TEST_OK(distq_graph_set_input(q, "x", 4, xd));
    distq_attrs qa = distq_attrs_default(DISTQ_OP_QUANTIZE);
    qa.out_scale = 0.5f;
    qa.out_zero_point = 10;
    const char *in_x[] = {"x"}, *in_xq[] = {"xq"}, *in_sum[] = {"xq", "r"}, *in_y[] = {"y"};
    TEST_OK(distq_graph_add_node(q, "q", DISTQ_OP_QUANTIZE, &qa, 1, in_x, NULL, "xq"));
    add_qconv(q, "c0", 1, in_xq, (const int8_t[2]){1, 1}, 0.5f, 0.0f, 0, 0.125f, 4, "r");
    add_qconv(q, "c", 2, in_sum, (const int8_t[2]){2, -1}, 0.25f, 1.0f, 1, 0.25f, 3, "y");
    TEST_OK(distq_graph_add_node(q, "dq", DISTQ_OP_DEQUANTIZE, NULL, 1, in_y, NULL, "yf"));
    TEST_OK(distq_graph_set_output(q, "yf"));
    TEST_OK(distq_graph_finalize(q));
    CU_ASSERT(distq_graph_is_quantized(q));
    CU_ASSERT_EQUAL(q->values[distq_graph_find_value(q, "r")].zero_point, 4);
    distq_exec *e = NULL;
    float x[2] = {3.0f, 0.5f}, y = 0;
    uint8_t xq[2], r, yq;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, 1, &e));
    TEST_OK(distq_exec_run(e, x, &y));
    TEST_OK(distq_exec_get_value(e, "xq", xq));
    TEST_OK(distq_exec_get_value(e, "r", &r));
    TEST_OK(distq_exec_get_value(e, "y", &yq));
    CU_ASSERT_EQUAL(xq[0], 16);
    CU_ASSERT_EQUAL(xq[1], 11);
    CU_ASSERT_EQUAL(r, 18);
    CU_ASSERT_EQUAL(yq, 19);
    CU_ASSERT_EQUAL(y, 4.0f);
    distq_exec_destroy(e);
    distq_graph_destroy(q);
}

int main(void)
{
    static const test_case cases[] = {
        {"prepare resnet18 patterns and observers", test_prepare_resnet18},
        {"resnet18 int8 (ref) vs fp32", test_resnet18_int8_vs_fp32},
        {"minmax: 1 batch == 4 batches", test_minmax_batches_identical},
        {"int8 ref quantize by hand", test_int8_ref_by_hand},
    };
    return test_run_suite("quant", cases, sizeof cases / sizeof cases[0]);
}
