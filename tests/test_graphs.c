/* Tiny graph builders shared by the backend tests (test_onednn, test_onednn_int8):
 * seeded parameters with PyTorch's default init bounds, nodes named after their
 * output value. Every call asserts (CUnit FATAL) that it worked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "distq/tensor.h"
#include "test_util.h"

distq_graph *test_new_graph(int ndim, const int64_t *dims)
{
    distq_graph *g = NULL;
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, "x", ndim, dims));
    return g;
}

/* Adds an f32 parameter filled with U(lo, hi) from seed. */
void test_add_param(distq_graph *g, const char *name, int ndim, const int64_t *dims,
                    uint64_t seed, float lo, float hi)
{
    int64_t n = distq_dims_numel(ndim, dims);
    float *data = malloc(sizeof(float) * (size_t)n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    test_fill_uniform(data, n, seed, lo, hi);
    TEST_OK(distq_graph_add_param(g, name, DISTQ_DTYPE_F32, ndim, dims, data, NULL));
    free(data);
}

void test_add_op(distq_graph *g, const char *name, distq_op op, const distq_attrs *a,
                 const char *in0, const char *in1, const char *const *params)
{
    const char *ins[2] = {in0, in1};
    TEST_OK(distq_graph_add_node(g, name, op, a, in1 ? 2 : 1, ins, params, name));
}

/* "<name>.weight" (OC, IC/groups, K, K) ~ U(-b, b), b = 1/sqrt(fan_in), and
 * optionally "<name>.bias" (OC): PyTorch's default init keeps outputs O(1). */
void test_add_conv(distq_graph *g, const char *name, const char *in, int64_t IC, test_conv_spec c,
                   uint64_t seed)
{
    char w[DISTQ_NAME_MAX], b[DISTQ_NAME_MAX];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    int64_t wd[4] = {c.OC, IC / c.groups, c.K, c.K};
    float bound = 1.0f / sqrtf((float)(wd[1] * c.K * c.K));
    test_add_param(g, w, 4, wd, seed, -bound, bound);
    if (c.bias) test_add_param(g, b, 1, &c.OC, seed + 1, -bound, bound);
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.stride[0] = a.stride[1] = c.stride;
    a.padding[0] = a.padding[1] = c.pad;
    a.dilation[0] = a.dilation[1] = c.dil;
    a.groups = c.groups;
    const char *params[DISTQ_MAX_PARAMS] = {w, c.bias ? b : NULL};
    test_add_op(g, name, DISTQ_OP_CONV2D, &a, in, NULL, params);
}

/* BN with the builders' non-trivial statistics. */
void test_add_bn(distq_graph *g, const char *name, const char *in, int64_t C, uint64_t seed)
{
    const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    const float lo[4] = {0.5f, -0.1f, -0.1f, 0.5f}, hi[4] = {1.5f, 0.1f, 0.1f, 1.5f};
    char names[4][DISTQ_NAME_MAX];
    const char *params[DISTQ_MAX_PARAMS] = {0};
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof names[i], "%s.%s", name, suffix[i]);
        test_add_param(g, names[i], 1, &C, seed + (uint64_t)i, lo[i], hi[i]);
        params[i] = names[i];
    }
    test_add_op(g, name, DISTQ_OP_BATCH_NORM, NULL, in, NULL, params);
}

void test_add_linear(distq_graph *g, const char *name, const char *in, int64_t IN, int64_t OUT,
                     int bias, uint64_t seed)
{
    char w[DISTQ_NAME_MAX], b[DISTQ_NAME_MAX];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    int64_t wd[2] = {OUT, IN};
    float bound = 1.0f / sqrtf((float)IN);
    test_add_param(g, w, 2, wd, seed, -bound, bound);
    if (bias) test_add_param(g, b, 1, &OUT, seed + 1, -bound, bound);
    const char *params[DISTQ_MAX_PARAMS] = {w, bias ? b : NULL};
    test_add_op(g, name, DISTQ_OP_LINEAR, NULL, in, NULL, params);
}

void test_finish(distq_graph *g, const char *output)
{
    TEST_OK(distq_graph_set_output(g, output));
    TEST_OK(distq_graph_finalize(g));
}

/* Uniform integer in [lo, hi]. */
int64_t test_rand_int(distq_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(distq_rng_next(r) % (uint64_t)(hi - lo + 1));
}
