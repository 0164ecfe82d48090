/* The fp32 reference executor on hand-computed cases (it is the oracle, so it
 * is checked against arithmetic done by hand, not against another executor). */
#include <math.h>
#include <string.h>

#include "distq/exec.h"
#include "test_util.h"

typedef struct {
    const char *name;
    distq_dtype dt;
    int ndim;
    int64_t dims[4];
    const float *data;
} param_spec;

/* One node "n" reading "x" of in_dims; runs ref at batch 1 and returns y. */
static void run_one(distq_op op, const distq_attrs *a, int in_ndim, const int64_t *in_dims,
                    const float *x, const param_spec *ps, int n_params, float *y, int64_t y_n)
{
    distq_graph *g = NULL;
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, "x", in_ndim, in_dims));
    const char *pnames[DISTQ_MAX_PARAMS] = {0};
    for (int i = 0; i < n_params; i++) {
        TEST_OK(distq_graph_add_param(g, ps[i].name, ps[i].dt, ps[i].ndim, ps[i].dims, ps[i].data, NULL));
        pnames[i] = ps[i].name;
    }
    const char *ins[] = {"x", "x"};
    TEST_OK(distq_graph_add_node(g, "n", op, a, op == DISTQ_OP_ADD ? 2 : 1, ins, pnames, "n"));
    TEST_OK(distq_graph_set_output(g, "n"));
    TEST_OK(distq_graph_finalize(g));
    CU_ASSERT_EQUAL_FATAL(distq_value_numel(&g->values[g->output_values[0]], 1), y_n);
    distq_exec *e = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, 1, &e));
    TEST_OK(distq_exec_run(e, x, y));
    distq_exec_destroy(e);
    distq_graph_destroy(g);
}

static const float x9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* (1, 1, 3, 3) */

static void expect(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++) CU_ASSERT_DOUBLE_EQUAL(got[i], want[i], 1e-6);
}

static void test_conv_plain_bias(void)
{
    int64_t in[4] = {1, 1, 3, 3};
    float ones[4] = {1, 1, 1, 1}, bias[1] = {1};
    param_spec ps[2] = {{"w", DISTQ_DTYPE_F32, 4, {1, 1, 2, 2}, ones}, {"b", DISTQ_DTYPE_F32, 1, {1}, bias}};
    float y[4], want[4] = {13, 17, 25, 29};
    run_one(DISTQ_OP_CONV2D, NULL, 4, in, x9, ps, 2, y, 4);
    expect(y, want, 4);
}

static void test_conv_stride_pad(void)
{
    int64_t in[4] = {1, 1, 3, 3};
    float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    param_spec ps[1] = {{"w", DISTQ_DTYPE_F32, 4, {1, 1, 3, 3}, ones}};
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.stride[0] = a.stride[1] = 2;
    a.padding[0] = a.padding[1] = 1;
    float y[4], want[4] = {12, 16, 24, 28};
    run_one(DISTQ_OP_CONV2D, &a, 4, in, x9, ps, 1, y, 4);
    expect(y, want, 4);
}

static void test_conv_dilated(void)
{
    /* 2x2 kernel with dilation 2 on 3x3 reads the corners: 1 + 3 + 7 + 9 = 20. */
    int64_t in[4] = {1, 1, 3, 3};
    float ones[4] = {1, 1, 1, 1};
    param_spec ps[1] = {{"w", DISTQ_DTYPE_F32, 4, {1, 1, 2, 2}, ones}};
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.dilation[0] = a.dilation[1] = 2;
    float y[1], want[1] = {20};
    run_one(DISTQ_OP_CONV2D, &a, 4, in, x9, ps, 1, y, 1);
    expect(y, want, 1);
}

static void test_conv_grouped(void)
{
    int64_t in[4] = {1, 2, 1, 2};
    float x[4] = {1, 2, 10, 20}, w[2] = {2, 3};
    param_spec ps[1] = {{"w", DISTQ_DTYPE_F32, 4, {2, 1, 1, 1}, w}};
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.groups = 2;
    float y[4], want[4] = {2, 4, 30, 60};
    run_one(DISTQ_OP_CONV2D, &a, 4, in, x, ps, 1, y, 4);
    expect(y, want, 4);
}

static void test_max_pool_ceil(void)
{
    int64_t in[4] = {1, 1, 5, 5};
    float x[25];
    for (int i = 0; i < 25; i++) x[i] = (float)i;
    distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    a.kernel[0] = a.kernel[1] = 2;
    a.stride[0] = a.stride[1] = 2;
    a.ceil_mode = 1;
    float y[9], want[9] = {6, 8, 9, 16, 18, 19, 21, 23, 24};
    run_one(DISTQ_OP_MAX_POOL2D, &a, 4, in, x, NULL, 0, y, 9);
    expect(y, want, 9);
}

static void test_max_pool_padded_negative(void)
{
    /* Padding must never win: all inputs negative. k3 s2 p1 on 3x3 -> 2x2. */
    int64_t in[4] = {1, 1, 3, 3};
    float x[9];
    for (int i = 0; i < 9; i++) x[i] = -x9[i];
    distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    a.kernel[0] = a.kernel[1] = 3;
    a.stride[0] = a.stride[1] = 2;
    a.padding[0] = a.padding[1] = 1;
    float y[4], want[4] = {-1, -2, -4, -5};
    run_one(DISTQ_OP_MAX_POOL2D, &a, 4, in, x, NULL, 0, y, 4);
    expect(y, want, 4);
}

static void test_batch_norm(void)
{
    int64_t in[4] = {1, 2, 1, 1};
    float x[2] = {3, 5}, g[2] = {2, 1}, b[2] = {1, -1}, m[2] = {1, 5}, v[2] = {4 - 1e-5f, 1};
    param_spec ps[4] = {{"g", DISTQ_DTYPE_F32, 1, {2}, g}, {"b", DISTQ_DTYPE_F32, 1, {2}, b},
                        {"m", DISTQ_DTYPE_F32, 1, {2}, m}, {"v", DISTQ_DTYPE_F32, 1, {2}, v}};
    /* (3-1)/2*2+1 = 3; (5-5)/1*1-1 = -1 */
    float y[2], want[2] = {3, -1};
    run_one(DISTQ_OP_BATCH_NORM, NULL, 4, in, x, ps, 4, y, 2);
    CU_ASSERT_DOUBLE_EQUAL(y[0], want[0], 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(y[1], want[1], 1e-5);
}

static void test_relu_add_avgpool_flatten(void)
{
    int64_t in[4] = {1, 1, 3, 3};
    float x[9] = {-1, 2, -3, 4, -5, 6, -7, 8, -9}, y[9];
    float want_relu[9] = {0, 2, 0, 4, 0, 6, 0, 8, 0}, want_add[9];
    run_one(DISTQ_OP_RELU, NULL, 4, in, x, NULL, 0, y, 9);
    expect(y, want_relu, 9);
    for (int i = 0; i < 9; i++) want_add[i] = 2 * x[i];
    run_one(DISTQ_OP_ADD, NULL, 4, in, x, NULL, 0, y, 9);
    expect(y, want_add, 9);
    float avg[1], want_avg[1] = {5};
    run_one(DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, 4, in, x9, NULL, 0, avg, 1);
    expect(avg, want_avg, 1);
    run_one(DISTQ_OP_FLATTEN, NULL, 4, in, x9, NULL, 0, y, 9);
    expect(y, x9, 9);
}

static void test_linear(void)
{
    int64_t in[2] = {1, 3};
    float x[3] = {1, 2, 3}, w[6] = {1, 0, -1, 2, 2, 2}, b[2] = {0.5f, -1};
    param_spec ps[2] = {{"w", DISTQ_DTYPE_F32, 2, {2, 3}, w}, {"b", DISTQ_DTYPE_F32, 1, {2}, b}};
    float y[2], want[2] = {-1.5f, 11};
    run_one(DISTQ_OP_LINEAR, NULL, 2, in, x, ps, 2, y, 2);
    expect(y, want, 2);
}

/* hardswish x*relu6(x+3)/6, hardsigmoid clamp(x/6 + 1/2, 0, 1), clip [0, 6]
 * (relu6), sigmoid, by hand on (1, 1, 1, 8). */
static void test_eltwise_ops(void)
{
    int64_t in[4] = {1, 1, 1, 8};
    float x[8] = {-4, -3, -1, 0, 1, 3, 4, 7}, y[8];
    float hswish[8] = {0, 0, -1.0f / 3, 0, 2.0f / 3, 3, 4, 7};
    float hsig[8] = {0, 0, 1.0f / 3, 0.5f, 2.0f / 3, 1, 1, 1};
    float relu6[8] = {0, 0, 0, 0, 1, 3, 4, 6};
    run_one(DISTQ_OP_HARDSWISH, NULL, 4, in, x, NULL, 0, y, 8);
    expect(y, hswish, 8);
    run_one(DISTQ_OP_HARDSIGMOID, NULL, 4, in, x, NULL, 0, y, 8);
    expect(y, hsig, 8);
    run_one(DISTQ_OP_CLIP, NULL, 4, in, x, NULL, 0, y, 8);
    expect(y, relu6, 8);
    distq_attrs a = distq_attrs_default(DISTQ_OP_HARDSIGMOID);
    a.alpha = 0.2f; /* ONNX's default */
    float onnx_hsig[8] = {0, 0, 0.3f, 0.5f, 0.7f, 1, 1, 1};
    run_one(DISTQ_OP_HARDSIGMOID, &a, 4, in, x, NULL, 0, y, 8);
    expect(y, onnx_hsig, 8);
    float xs[3] = {0, logf(3.0f), -logf(3.0f)}, ys[3], sig[3] = {0.5f, 0.75f, 0.25f};
    int64_t in3[4] = {1, 1, 1, 3};
    run_one(DISTQ_OP_SIGMOID, NULL, 4, in3, xs, NULL, 0, ys, 3);
    expect(ys, sig, 3);
}

/* x (1, 2, 2, 2); gap = mean per channel (2.5, 25); m = x * gap broadcast
 * over H, W (the SE block); cat = concat(x, m) along axis (1 or 3). Batch 2:
 * the second image is the first times -1. */
static void test_mul_broadcast_concat(void)
{
    float x[16] = {1, 2, 3, 4, 10, 20, 30, 40, -1, -2, -3, -4, -10, -20, -30, -40};
    for (int axis = 1; axis <= 3; axis += 2) {
        int64_t in[4] = {1, 2, 2, 2};
        distq_graph *g = test_new_graph(4, in);
        test_add_op(g, "gap", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "x", NULL, NULL);
        test_add_op(g, "m", DISTQ_OP_MUL, NULL, "gap", "x", NULL);
        distq_attrs a = distq_attrs_default(DISTQ_OP_CONCAT);
        a.axis = axis == 3 ? -1 : 1;
        const char *ins[] = {"x", "m"};
        TEST_OK(distq_graph_add_node(g, "cat", DISTQ_OP_CONCAT, &a, 2, ins, NULL, "cat"));
        test_finish(g, "cat");
        distq_exec *e = NULL;
        TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, 2, &e));
        float y[32], m[16];
        for (int i = 0; i < 16; i++) m[i] = x[i] * (i % 8 < 4 ? 2.5f : 25.0f) * (i < 8 ? 1 : -1);
        TEST_OK(distq_exec_run(e, x, y));
        /* want: per image, axis 1 puts x's 8 then m's 8; axis 3 alternates rows
         * of 2 (W): x row, m row. */
        for (int nb = 0; nb < 2; nb++)
            for (int i = 0; i < 8; i++) {
                int xi = nb * 8 + i;
                int at_x = axis == 1 ? nb * 16 + i : nb * 16 + (i / 2) * 4 + i % 2;
                int at_m = axis == 1 ? nb * 16 + 8 + i : at_x + 2;
                CU_ASSERT_DOUBLE_EQUAL(y[at_x], x[xi], 1e-5);
                CU_ASSERT_DOUBLE_EQUAL(y[at_m], m[xi], 1e-4);
            }
        distq_exec_destroy(e);
        distq_graph_destroy(g);
    }
}

int main(void)
{
    static const test_case cases[] = {
        {"conv plain + bias", test_conv_plain_bias},
        {"conv stride + padding", test_conv_stride_pad},
        {"conv dilation", test_conv_dilated},
        {"conv groups", test_conv_grouped},
        {"max_pool ceil_mode", test_max_pool_ceil},
        {"max_pool padding never wins", test_max_pool_padded_negative},
        {"batch_norm", test_batch_norm},
        {"relu, add, avgpool, flatten", test_relu_add_avgpool_flatten},
        {"linear", test_linear},
        {"hardswish, hardsigmoid, clip, sigmoid", test_eltwise_ops},
        {"mul (broadcast) and concat (axis 1, -1), batch 2", test_mul_broadcast_concat},
    };
    return test_run_suite("ref", cases, sizeof cases / sizeof cases[0]);
}
