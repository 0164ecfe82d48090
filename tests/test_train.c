/*
 * fp32 trainer: every op's backward against central finite differences,
 * batch_norm's training statistics, predict against the ref executor, SGD
 * against hand-computed updates, the gradient layout, split-batch (data
 * parallel) equivalence with a two-"rank" hook, errors, and the throughput
 * of a small CNN (printed, not asserted).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "distq/exec.h"
#include "distq/train.h"
#include "oneapi/dnnl/dnnl.h"
#include "test_util.h"
#include "train/train_impl.h"

/* --- graph building ---------------------------------------------------------
 * Node names double as their output value names; params are "<node>.<slot>". */

static uint64_t next_seed = 100;

static distq_graph *new_graph(int ndim, const int64_t *dims)
{
    distq_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(distq_graph_create(&g), DISTQ_OK);
    TEST_OK(distq_graph_set_input(g, "x", ndim, dims));
    return g;
}

static void add_param(distq_graph *g, const char *node, const char *slot, int ndim, const int64_t *dims,
                      float lo, float hi)
{
    char name[DISTQ_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", node, slot);
    int64_t n = distq_dims_numel(ndim, dims);
    float *d = malloc((size_t)n * sizeof *d);
    test_fill_uniform(d, n, next_seed++, lo, hi);
    TEST_OK(distq_graph_add_param(g, name, DISTQ_DTYPE_F32, ndim, dims, d, NULL));
    free(d);
}

static void add_node(distq_graph *g, const char *name, distq_op op, const distq_attrs *a, const char *in0,
                     const char *in1, int with_weight, int with_bias)
{
    char w[DISTQ_NAME_MAX], b[DISTQ_NAME_MAX];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    const char *ins[2] = {in0, in1};
    const char *params[DISTQ_MAX_PARAMS] = {with_weight ? w : "", with_bias ? b : ""};
    TEST_OK(distq_graph_add_node(g, name, op, a, in1 ? 2 : 1, ins, params, name));
}

static void conv(distq_graph *g, const char *name, const char *in, int64_t ic, int64_t oc, int64_t k,
                 int64_t stride, int64_t pad, int64_t dil, int64_t groups, int bias)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.stride[0] = a.stride[1] = stride;
    a.padding[0] = a.padding[1] = pad;
    a.dilation[0] = a.dilation[1] = dil;
    a.groups = groups;
    int64_t w[4] = {oc, ic / groups, k, k};
    float r = 1.0f / sqrtf((float)(ic / groups * k * k));
    add_param(g, name, "weight", 4, w, -r, r);
    if (bias) add_param(g, name, "bias", 1, &oc, -0.2f, 0.2f);
    add_node(g, name, DISTQ_OP_CONV2D, &a, in, NULL, 1, bias);
}

/* BatchNorm with random affine params and running stats, num_batches_tracked 7. */
static void bn(distq_graph *g, const char *name, const char *in, int64_t C, float momentum)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_BATCH_NORM);
    a.momentum = momentum;
    add_param(g, name, "weight", 1, &C, 0.5f, 1.5f);
    add_param(g, name, "bias", 1, &C, -0.3f, 0.3f);
    add_param(g, name, "running_mean", 1, &C, -0.2f, 0.2f);
    add_param(g, name, "running_var", 1, &C, 0.5f, 1.5f);
    char nbt[DISTQ_NAME_MAX], rm[DISTQ_NAME_MAX], rv[DISTQ_NAME_MAX], w[DISTQ_NAME_MAX], b[DISTQ_NAME_MAX];
    snprintf(nbt, sizeof nbt, "%s.num_batches_tracked", name);
    snprintf(rm, sizeof rm, "%s.running_mean", name);
    snprintf(rv, sizeof rv, "%s.running_var", name);
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    int64_t one = 1, seven = 7;
    TEST_OK(distq_graph_add_param(g, nbt, DISTQ_DTYPE_S64, 1, &one, &seven, NULL));
    const char *ins[1] = {in};
    const char *params[DISTQ_MAX_PARAMS] = {w, b, rm, rv, nbt};
    TEST_OK(distq_graph_add_node(g, name, DISTQ_OP_BATCH_NORM, &a, 1, ins, params, name));
}

static void unary(distq_graph *g, const char *name, distq_op op, const char *in)
{
    add_node(g, name, op, NULL, in, NULL, 0, 0);
}

static void maxpool(distq_graph *g, const char *name, const char *in, int64_t k, int64_t s, int64_t p,
                    int ceil_mode)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    a.kernel[0] = a.kernel[1] = k;
    a.stride[0] = a.stride[1] = s;
    a.padding[0] = a.padding[1] = p;
    a.ceil_mode = ceil_mode;
    add_node(g, name, DISTQ_OP_MAX_POOL2D, &a, in, NULL, 0, 0);
}

static void linear(distq_graph *g, const char *name, const char *in, int64_t IN, int64_t OUT, int bias)
{
    int64_t w[2] = {OUT, IN};
    float r = 1.0f / sqrtf((float)IN);
    add_param(g, name, "weight", 2, w, -r, r);
    if (bias) add_param(g, name, "bias", 1, &OUT, -r, r);
    add_node(g, name, DISTQ_OP_LINEAR, NULL, in, NULL, 1, bias);
}

static void finish(distq_graph *g, const char *out)
{
    TEST_OK(distq_graph_set_output(g, out));
    TEST_OK(distq_graph_finalize(g));
}

static int64_t in_numel(const distq_graph *g) { return distq_value_numel(&g->values[g->input_value], 1); }
static int64_t out_numel(const distq_graph *g) { return distq_value_numel(&g->values[g->output_values[0]], 1); }

/* --- finite differences -------------------------------------------------------
 * The loss is the mean over the batch (global_batch = n), accumulated in
 * double from the f32 forward. Every evaluation restores all params (BN
 * running stats included) from a snapshot, so each sees the same state. */

typedef struct {
    distq_graph *g;
    distq_trainer *t;
    int64_t n;
    float *x;
    int64_t *labels;
    float *targets;
    void **snap;
} fd_ctx;

static const double FD_EPS = 1e-3;  /* in f32 params of magnitude <= ~1.5 */
static const double FD_RTOL = 1e-2;   /* relative to the larger of the two */
static const double FD_ATOL = 2e-3;   /* of the tensor's largest gradient: near-zero entries */

static double worst_fd = 0.0;
static int fd_samples = 0, fd_kinks = 0;

static void snapshot_take(fd_ctx *c)
{
    c->snap = calloc((size_t)c->g->n_params, sizeof *c->snap);
    for (int p = 0; p < c->g->n_params; p++) {
        size_t nb = distq_tensor_nbytes(&c->g->params[p]);
        c->snap[p] = malloc(nb);
        memcpy(c->snap[p], c->g->params[p].data, nb);
    }
}

static void snapshot_restore(fd_ctx *c)
{
    for (int p = 0; p < c->g->n_params; p++)
        memcpy(c->g->params[p].data, c->snap[p], distq_tensor_nbytes(&c->g->params[p]));
}

static double fd_loss(fd_ctx *c)
{
    distq_step_stats s;
    TEST_OK(distq_trainer_step(c->t, c->x, c->n, c->labels, c->targets, c->n, &s));
    snapshot_restore(c);
    return s.loss_sum / (double)c->n;
}

/* Compares analytic (m) with central differences at `samples` indices of
 * vals (first, last, then random). Returns the number of mismatches.
 *
 * relu and max_pool make the loss piecewise smooth: when a perturbation moves
 * some activation across a kink the central difference is off, and with
 * batch_norm in training mode every parameter moves every activation. Such a
 * sample is recognised by its one-sided differences disagreeing with each
 * other by more than the central one disagrees with the analytic value (for a
 * wrong gradient on a smooth stretch they agree with each other); it is
 * skipped and counted, and test_fd_whole_graph bounds the count. */
static int fd_check(fd_ctx *c, const char *what, float *vals, int64_t m, const float *analytic, int samples)
{
    double amax = 0.0;
    for (int64_t i = 0; i < m; i++) amax = fmax(amax, fabs(analytic[i]));
    distq_rng r;
    distq_rng_seed(&r, (uint64_t)m * 7919u + 1);
    int bad = 0;
    for (int s = 0; s < samples && s < m; s++) {
        int64_t i = s == 0 ? 0 : s == 1 ? m - 1 : (int64_t)(distq_rng_next(&r) % (uint64_t)m);
        float orig = vals[i], up = (float)(orig + FD_EPS), down = (float)(orig - FD_EPS);
        vals[i] = up;
        double lp = fd_loss(c);
        vals[i] = down;
        double lm = fd_loss(c);
        vals[i] = orig;
        double l0 = fd_loss(c);
        double num = (lp - lm) / ((double)up - (double)down), a = analytic[i];
        double right = (lp - l0) / ((double)up - orig), left = (l0 - lm) / (orig - (double)down);
        double err = fabs(a - num), tol = FD_RTOL * fmax(fabs(a), fabs(num)) + FD_ATOL * amax + 1e-6;
        fd_samples++;
        if (err > tol && fabs(right - left) > err) {
            fd_kinks++;
            continue;
        }
        worst_fd = fmax(worst_fd, err / (fmax(fabs(a), fabs(num)) + FD_ATOL / FD_RTOL * amax + 1e-6));
        if (err > tol) {
            fprintf(stderr, "\n  %s[%lld]: analytic %.6g vs numeric %.6g", what, (long long)i, a, num);
            bad++;
        }
    }
    return bad;
}

/* 1 while a test runs the plain-C reference conv kernels instead of oneDNN's. */
static int plain_kernels = 0;

/* One base step, then checks every trainable param and the input. */
static void fd_graph(distq_graph *g, distq_loss loss, int64_t n, int samples)
{
    distq_train_opts o = {.max_batch = n, .loss = loss, .plain_kernels = plain_kernels};
    fd_ctx c = {.g = g, .n = n};
    TEST_OK(distq_trainer_create(g, &o, &c.t));
    distq_trainer_set_input_grad(c.t, 1);
    int64_t K = out_numel(g), IN = in_numel(g);
    c.x = malloc((size_t)(n * IN) * sizeof *c.x);
    test_fill_uniform(c.x, n * IN, next_seed++, -1.0f, 1.0f);
    if (loss == DISTQ_LOSS_CROSS_ENTROPY) {
        c.labels = malloc((size_t)n * sizeof *c.labels);
        for (int64_t i = 0; i < n; i++) c.labels[i] = (i * 7 + 3) % K;
    } else {
        c.targets = malloc((size_t)(n * K) * sizeof *c.targets);
        test_fill_uniform(c.targets, n * K, next_seed++, -1.0f, 1.0f);
    }
    snapshot_take(&c);
    distq_step_stats s;
    TEST_OK(distq_trainer_step(c.t, c.x, n, c.labels, c.targets, n, &s));
    snapshot_restore(&c);
    CU_ASSERT_EQUAL(s.images, n);
    CU_ASSERT(isfinite(s.loss_sum));
    int64_t count = 0;
    const float *all = distq_trainer_grads(c.t, &count);
    float *grads = malloc((size_t)(count + 1) * sizeof *grads);
    memcpy(grads, all, (size_t)count * sizeof *grads);
    float *dx = malloc((size_t)(n * IN) * sizeof *dx);
    memcpy(dx, distq_trainer_input_grad(c.t), (size_t)(n * IN) * sizeof *dx);
    int bad = 0;
    for (int p = 0; p < g->n_params; p++) {
        float *gp = distq_trainer_grad(c.t, p);
        if (!gp) continue;
        bad += fd_check(&c, g->params[p].name, g->params[p].data, distq_tensor_numel(&g->params[p]),
                        grads + (gp - all), samples);
    }
    bad += fd_check(&c, "input", c.x, n * IN, dx, samples + 2);
    CU_ASSERT_EQUAL(bad, 0);
    for (int p = 0; p < g->n_params; p++) free(c.snap[p]);
    free(c.snap);
    free(grads);
    free(dx);
    free(c.x);
    free(c.labels);
    free(c.targets);
    distq_trainer_destroy(c.t);
}

/* --- per-op gradient checks ------------------------------------------------------ */

static void test_fd_conv_variants(void)
{
    static const struct {
        int64_t ic, oc, k, stride, pad, dil, groups;
        int bias;
    } v[] = {
        {4, 6, 3, 1, 1, 1, 1, 1}, /* plain, bias */
        {4, 6, 3, 2, 1, 1, 1, 0}, /* stride 2, padding, no bias */
        {4, 6, 3, 1, 2, 2, 1, 1}, /* dilation 2 */
        {4, 6, 3, 1, 1, 1, 2, 1}, /* groups 2 */
        {4, 4, 3, 2, 1, 1, 4, 0}, /* depthwise, stride 2 */
        {4, 6, 1, 1, 0, 1, 1, 1}, /* 1x1: x is used as col directly */
        {4, 6, 1, 2, 0, 1, 2, 1}, /* 1x1 stride 2 groups 2 */
        {4, 6, 2, 3, 0, 1, 1, 1}, /* stride > kernel: skipped inputs */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int64_t in[4] = {1, v[i].ic, 7, 7};
        distq_graph *g = new_graph(4, in);
        conv(g, "c", "x", v[i].ic, v[i].oc, v[i].k, v[i].stride, v[i].pad, v[i].dil, v[i].groups, v[i].bias);
        finish(g, "c");
        fd_graph(g, DISTQ_LOSS_MSE, 2, 8);
        distq_graph_destroy(g);
    }
}

static void test_fd_batch_norm(void)
{
    int64_t in[4] = {1, 3, 5, 5};
    distq_graph *g = new_graph(4, in);
    bn(g, "bn", "x", 3, 0.1f);
    finish(g, "bn");
    fd_graph(g, DISTQ_LOSS_MSE, 3, 6);
    distq_graph_destroy(g);
    /* (N, C) input, as after a flatten */
    int64_t in2[2] = {1, 6};
    g = new_graph(2, in2);
    bn(g, "bn", "x", 6, 0.1f);
    finish(g, "bn");
    fd_graph(g, DISTQ_LOSS_MSE, 5, 6);
    distq_graph_destroy(g);
}

static void test_fd_relu_add(void)
{
    int64_t in[4] = {1, 3, 5, 5};
    distq_graph *g = new_graph(4, in);
    conv(g, "c", "x", 3, 3, 3, 1, 1, 1, 1, 1);
    unary(g, "r", DISTQ_OP_RELU, "c");
    add_node(g, "sum", DISTQ_OP_ADD, NULL, "r", "x", 0, 0); /* x read twice: gradients add */
    add_node(g, "twice", DISTQ_OP_ADD, NULL, "sum", "sum", 0, 0);
    finish(g, "twice");
    fd_graph(g, DISTQ_LOSS_MSE, 2, 8);
    distq_graph_destroy(g);
}

/* clip (relu6, and a narrower range that cuts both sides of the conv's
 * outputs): backward against finite differences; outside the bounds no
 * gradient passes (hardtanh_backward). */
static void test_fd_clip(void)
{
    for (int narrow = 0; narrow <= 1; narrow++) {
        int64_t in[4] = {1, 3, 5, 5};
        distq_graph *g = new_graph(4, in);
        conv(g, "c", "x", 3, 4, 3, 1, 1, 1, 1, 1);
        distq_attrs a = distq_attrs_default(DISTQ_OP_CLIP); /* relu6: [0, 6] */
        if (narrow) a.min = -0.2f, a.max = 0.3f;
        add_node(g, "clip", DISTQ_OP_CLIP, &a, "c", NULL, 0, 0);
        finish(g, "clip");
        fd_graph(g, DISTQ_LOSS_MSE, 2, 11 + (uint64_t)narrow);
        distq_graph_destroy(g);
    }
}

static void test_fd_max_pool(void)
{
    static const struct {
        int64_t k, s, p;
        int ceil_mode;
    } v[] = {{3, 2, 1, 1}, {2, 2, 0, 1}, {3, 2, 0, 0}, {2, 1, 1, 0}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int64_t in[4] = {1, 2, 7, 7};
        distq_graph *g = new_graph(4, in);
        conv(g, "c", "x", 2, 2, 1, 1, 0, 1, 1, 1);
        maxpool(g, "mp", "c", v[i].k, v[i].s, v[i].p, v[i].ceil_mode);
        finish(g, "mp");
        fd_graph(g, DISTQ_LOSS_MSE, 2, 8);
        distq_graph_destroy(g);
    }
}

/* Equal values: the whole gradient goes to the first maximum in (kh, kw)
 * order, as PyTorch's CPU kernel (finite differences cannot see this). */
static void test_max_pool_ties(void)
{
    int64_t in[4] = {1, 1, 2, 4};
    distq_graph *g = new_graph(4, in);
    maxpool(g, "mp", "x", 2, 2, 0, 0);
    finish(g, "mp");
    distq_train_opts o = {.max_batch = 1, .loss = DISTQ_LOSS_MSE};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    distq_trainer_set_input_grad(t, 1);
    float x[8] = {0.5f, 0.5f, 1.0f, 2.0f, /* row 0 */ 0.5f, 0.5f, 2.0f, 2.0f};
    float target[2] = {0.0f, 0.0f};
    TEST_OK(distq_trainer_step(t, x, 1, NULL, target, 1, NULL));
    const float *d = distq_trainer_input_grad(t);
    float want[8] = {0.5f, 0, 0, 2.0f, 0, 0, 0, 0}; /* d/dy of mean (y - 0)^2 over 2 outputs = y */
    for (int i = 0; i < 8; i++) CU_ASSERT_DOUBLE_EQUAL(d[i], want[i], 1e-7);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

static void test_fd_avgpool_flatten_linear(void)
{
    int64_t in[4] = {1, 3, 5, 5};
    distq_graph *g = new_graph(4, in);
    unary(g, "gap", DISTQ_OP_ADAPTIVE_AVG_POOL2D, "x");
    unary(g, "flat", DISTQ_OP_FLATTEN, "gap");
    linear(g, "fc", "flat", 3, 4, 1);
    finish(g, "fc");
    fd_graph(g, DISTQ_LOSS_CROSS_ENTROPY, 3, 8);
    distq_graph_destroy(g);

    int64_t in2[4] = {1, 2, 3, 3};
    g = new_graph(4, in2);
    unary(g, "flat", DISTQ_OP_FLATTEN, "x");
    linear(g, "fc1", "flat", 18, 7, 0);
    linear(g, "fc2", "fc1", 7, 5, 1);
    finish(g, "fc2");
    fd_graph(g, DISTQ_LOSS_CROSS_ENTROPY, 4, 8);
    distq_graph_destroy(g);
}

/* conv-bn-relu, residual add, maxpool, strided conv, avgpool, flatten, linear. */
static distq_graph *small_resnet(int64_t C, int64_t HW, int with_bn)
{
    int64_t in[4] = {1, 3, HW, HW};
    distq_graph *g = new_graph(4, in);
    conv(g, "conv1", "x", 3, C, 3, 1, 1, 1, 1, 0);
    if (with_bn) bn(g, "bn1", "conv1", C, 0.1f);
    unary(g, "relu1", DISTQ_OP_RELU, with_bn ? "bn1" : "conv1");
    conv(g, "conv2", "relu1", C, C, 3, 1, 1, 1, 1, !with_bn);
    if (with_bn) bn(g, "bn2", "conv2", C, 0.1f);
    add_node(g, "add", DISTQ_OP_ADD, NULL, with_bn ? "bn2" : "conv2", "relu1", 0, 0);
    unary(g, "relu2", DISTQ_OP_RELU, "add");
    maxpool(g, "pool", "relu2", 2, 2, 0, 0);
    conv(g, "conv3", "pool", C, 2 * C, 3, 2, 1, 1, 1, 1);
    unary(g, "gap", DISTQ_OP_ADAPTIVE_AVG_POOL2D, "conv3");
    unary(g, "flat", DISTQ_OP_FLATTEN, "gap");
    linear(g, "fc", "flat", 2 * C, 3, 1);
    finish(g, "fc");
    return g;
}

static void test_fd_whole_graph(void)
{
    distq_graph *g = small_resnet(4, 8, 1);
    fd_graph(g, DISTQ_LOSS_CROSS_ENTROPY, 4, 6);
    distq_graph_destroy(g);
    printf(" [so far: worst fd rel err %.2e, %d of %d samples at a kink] ", worst_fd, fd_kinks, fd_samples);
    CU_ASSERT(fd_kinks * 10 <= fd_samples);
}

/* The same checks on the plain-C conv kernels, the reference the oneDNN
 * primitives (the default) replace. */
static void test_fd_plain_kernels(void)
{
    plain_kernels = 1;
    test_fd_conv_variants();
    test_fd_whole_graph();
    plain_kernels = 0;
}

/* oneDNN's conv primitives against the plain-C kernels on one step: outputs,
 * every gradient and the input gradient (a value read by two convs, so one
 * input gradient is accumulated), at two batch sizes (primitives are made per
 * size) and twice at the first (reused primitives). */
static void test_onednn_conv_vs_plain(void)
{
    int64_t in[4] = {1, 3, 9, 9};
    distq_graph *g = new_graph(4, in);
    conv(g, "c1", "x", 3, 8, 3, 1, 1, 1, 1, 0);
    conv(g, "c2", "c1", 8, 8, 3, 2, 1, 1, 1, 1);
    conv(g, "c3", "c1", 8, 8, 1, 2, 0, 1, 1, 0);
    add_node(g, "sum", DISTQ_OP_ADD, NULL, "c2", "c3", 0, 0);
    finish(g, "sum");
    distq_trainer *t[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        distq_train_opts o = {.max_batch = 5, .loss = DISTQ_LOSS_MSE, .plain_kernels = k};
        TEST_OK(distq_trainer_create(g, &o, &t[k]));
        distq_trainer_set_input_grad(t[k], 1);
    }
    int64_t IN = in_numel(g), K = out_numel(g), count = 0;
    float *x = malloc((size_t)(5 * IN) * sizeof *x), *tg = malloc((size_t)(5 * K) * sizeof *tg);
    test_fill_uniform(x, 5 * IN, next_seed++, -1.0f, 1.0f);
    test_fill_uniform(tg, 5 * K, next_seed++, -1.0f, 1.0f);
    const int64_t batches[3] = {5, 2, 5};
    for (int b = 0; b < 3; b++) {
        int64_t n = batches[b];
        for (int k = 0; k < 2; k++) TEST_OK(distq_trainer_step(t[k], x, n, NULL, tg, n, NULL));
        const float *g0 = distq_trainer_grads(t[0], &count), *g1 = distq_trainer_grads(t[1], NULL);
        double out_err = test_max_rel_err(t[0]->act[g->output_values[0]], t[1]->act[g->output_values[0]], n * K);
        double grad_err = test_max_rel_err(g0, g1, count);
        double in_err = test_max_rel_err(distq_trainer_input_grad(t[0]), distq_trainer_input_grad(t[1]), n * IN);
        printf(" [batch %lld: oneDNN vs plain out %.1e grads %.1e dx %.1e] ", (long long)n, out_err, grad_err, in_err);
        CU_ASSERT(out_err < 1e-5 && grad_err < 1e-5 && in_err < 1e-5);
    }
    distq_trainer_destroy(t[0]);
    distq_trainer_destroy(t[1]);
    distq_graph_destroy(g);
    free(x);
    free(tg);
}

/* --- losses --------------------------------------------------------------------
 * Identity graph (flatten of an (N, K) input): logits = x, so the input
 * gradient is d loss / d logits. */

static void test_losses_by_hand(void)
{
    int64_t in[2] = {1, 3};
    distq_graph *g = new_graph(2, in);
    unary(g, "id", DISTQ_OP_FLATTEN, "x");
    finish(g, "id");
    distq_train_opts o = {.max_batch = 2, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    distq_trainer_set_input_grad(t, 1);
    /* Large logits: a naive exp overflows. */
    float x[6] = {1000.0f, 999.0f, -1000.0f, 0.5f, 2.0f, -1.0f};
    int64_t labels[2] = {1, 1};
    distq_step_stats s;
    TEST_OK(distq_trainer_step(t, x, 2, labels, NULL, 4, &s)); /* global batch 4 */
    double lse0 = 1000.0 + log(1.0 + exp(-1.0) + exp(-2000.0));
    double lse1 = log(exp(0.5) + exp(2.0) + exp(-1.0));
    CU_ASSERT_DOUBLE_EQUAL(s.loss_sum, (lse0 - 999.0) + (lse1 - 2.0), 1e-9);
    CU_ASSERT_EQUAL(s.correct, 1);
    CU_ASSERT_EQUAL(s.images, 2);
    const float *d = distq_trainer_input_grad(t);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) {
            double p = exp(x[i * 3 + k] - (i ? lse1 : lse0));
            CU_ASSERT_DOUBLE_EQUAL(d[i * 3 + k], (p - (k == 1)) / 4.0, 1e-7);
        }
    int64_t bad[2] = {0, 3};
    TEST_ERR(distq_trainer_step(t, x, 2, bad, NULL, 2, &s), DISTQ_ERR_INVALID_ARG,
             "label 3 of image 1 is outside [0, 3)");
    distq_trainer_destroy(t);

    o.loss = DISTQ_LOSS_MSE;
    TEST_OK(distq_trainer_create(g, &o, &t));
    distq_trainer_set_input_grad(t, 1);
    float target[6] = {1.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f};
    float y[6] = {1.0f, 2.0f, 4.0f, 1.0f, -1.0f, 0.5f};
    TEST_OK(distq_trainer_step(t, y, 2, NULL, target, 2, &s));
    CU_ASSERT_DOUBLE_EQUAL(s.loss_sum, (0.0 + 1.0 + 9.0) / 3.0 + (1.0 + 1.0 + 0.25) / 3.0, 1e-9);
    d = distq_trainer_input_grad(t);
    for (int i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(d[i], 2.0 * (y[i] - target[i]) / 6.0, 1e-7);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

/* --- batch_norm statistics ---------------------------------------------------------- */

static void test_bn_running_stats(void)
{
    enum { N = 5, C = 3, HW = 16 };
    int64_t in[4] = {1, C, 4, 4};
    distq_graph *g = new_graph(4, in);
    bn(g, "bn", "x", C, 0.3f);
    finish(g, "bn");
    float rm0[C], rv0[C], x[N * C * HW], tgt[N * C * HW];
    const float *rm = distq_graph_find_param(g, "bn.running_mean")->data;
    const float *rv = distq_graph_find_param(g, "bn.running_var")->data;
    const float *gamma = distq_graph_find_param(g, "bn.weight")->data;
    const float *beta = distq_graph_find_param(g, "bn.bias")->data;
    memcpy(rm0, rm, sizeof rm0);
    memcpy(rv0, rv, sizeof rv0);
    test_fill_uniform(x, N * C * HW, 5, -1.0f, 3.0f);
    test_fill_uniform(tgt, N * C * HW, 6, -1.0f, 1.0f);
    distq_train_opts o = {.max_batch = N, .loss = DISTQ_LOSS_MSE};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    TEST_OK(distq_trainer_step(t, x, N, NULL, tgt, N, NULL));
    const float *y = t->act[g->output_values[0]];
    for (int c = 0; c < C; c++) {
        double s = 0.0, ss = 0.0, M = N * HW;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) s += x[(n * C + c) * HW + i];
        double mean = s / M;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) ss += pow(x[(n * C + c) * HW + i] - mean, 2);
        double var = ss / M, unbiased = ss / (M - 1);
        CU_ASSERT_DOUBLE_EQUAL(rm[c], 0.7 * rm0[c] + 0.3 * mean, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(rv[c], 0.7 * rv0[c] + 0.3 * unbiased, 1e-6);
        /* Normalised with the biased batch variance. */
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                int k = (n * C + c) * HW + i;
                double want = (x[k] - mean) / sqrt(var + 1e-5) * gamma[c] + beta[c];
                CU_ASSERT_DOUBLE_EQUAL(y[k], want, 1e-5);
            }
    }
    CU_ASSERT_EQUAL(*(int64_t *)distq_graph_find_param(g, "bn.num_batches_tracked")->data, 8);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

/* --- predict vs the ref executor ------------------------------------------------------ */

static void predict_vs_ref(distq_graph *g, int64_t n, int64_t max_batch)
{
    distq_train_opts o = {.max_batch = max_batch, .loss = DISTQ_LOSS_MSE};
    distq_trainer *t = NULL;
    distq_exec *e = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, n, &e));
    int64_t IN = in_numel(g), K = out_numel(g);
    float *x = malloc((size_t)(n * IN) * sizeof *x), *y0 = malloc((size_t)(n * K) * sizeof *y0);
    float *y1 = malloc((size_t)(n * K) * sizeof *y1);
    test_fill_uniform(x, n * IN, 77, -2.0f, 2.0f);
    TEST_OK(distq_exec_run(e, x, y0));
    TEST_OK(distq_trainer_predict(t, x, n, y1));
    double err = test_max_rel_err(y1, y0, n * K);
    printf(" [predict vs ref %.2e] ", err);
    CU_ASSERT(err < 1e-5);
    free(x);
    free(y0);
    free(y1);
    distq_exec_destroy(e);
    distq_trainer_destroy(t);
}

static void test_predict_matches_ref(void)
{
    distq_graph *g = small_resnet(8, 12, 1);
    predict_vs_ref(g, 5, 2); /* 5 images in chunks of 2 */
    distq_graph_destroy(g);
    /* conv variants and a ceil-mode, padded max pool */
    int64_t in[4] = {1, 4, 11, 11};
    g = new_graph(4, in);
    conv(g, "dil", "x", 4, 6, 3, 1, 2, 2, 1, 1);
    conv(g, "grp", "dil", 6, 6, 3, 2, 1, 1, 3, 0);
    conv(g, "pw", "grp", 6, 8, 1, 1, 0, 1, 1, 1);
    maxpool(g, "mp", "pw", 3, 2, 1, 1);
    conv(g, "pw2", "mp", 8, 4, 1, 2, 0, 1, 2, 1);
    finish(g, "pw2");
    predict_vs_ref(g, 3, 3);
    distq_graph_destroy(g);
}

/* --- gradient layout and SGD ------------------------------------------------------------ */

static void test_grad_layout(void)
{
    distq_graph *g = small_resnet(4, 8, 1);
    distq_train_opts o = {.max_batch = 2, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    int64_t count = 0, expect = 0;
    float *all = distq_trainer_grads(t, &count);
    for (int p = 0; p < g->n_params; p++) {
        const char *nm = g->params[p].name;
        int buffer = strstr(nm, "running_") || strstr(nm, "num_batches");
        float *gp = distq_trainer_grad(t, p);
        if (buffer) {
            CU_ASSERT_PTR_NULL(gp);
            continue;
        }
        CU_ASSERT_PTR_EQUAL(gp, all + expect); /* param-index order, contiguous */
        expect += distq_tensor_numel(&g->params[p]);
    }
    CU_ASSERT_EQUAL(count, expect);
    CU_ASSERT_PTR_NULL(distq_trainer_grad(t, -1));
    CU_ASSERT_PTR_NULL(distq_trainer_grad(t, g->n_params));
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

static void sgd_case(float lr, float mom, float wd, int nesterov)
{
    int64_t in[2] = {1, 3};
    distq_graph *g = new_graph(2, in);
    linear(g, "fc", "x", 3, 2, 1);
    bn(g, "bn", "fc", 2, 0.1f);
    finish(g, "bn");
    distq_train_opts o = {.max_batch = 1, .loss = DISTQ_LOSS_MSE};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    distq_sgd s;
    TEST_OK(distq_sgd_init(&s, t, lr, mom, wd));
    s.nesterov = nesterov;
    int64_t count = 0;
    float *grads = distq_trainer_grads(t, &count);
    CU_ASSERT_EQUAL_FATAL(count, 6 + 2 + 2 + 2);
    float w[12], v[12] = {0}, rm[2];
    memcpy(rm, distq_graph_find_param(g, "bn.running_mean")->data, sizeof rm);
    for (int p = 0, k = 0; p < g->n_params; p++)
        if (distq_trainer_grad(t, p))
            for (int64_t i = 0; i < distq_tensor_numel(&g->params[p]); i++) w[k++] = ((float *)g->params[p].data)[i];
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 12; i++) grads[i] = 0.1f * (float)(i - 5) + 0.05f * (float)step;
        for (int i = 0; i < 12; i++) { /* torch.optim.SGD._single_tensor_sgd, dampening 0 */
            float d = grads[i] + wd * w[i];
            if (mom != 0.0f) {
                v[i] = step == 0 ? d : mom * v[i] + d;
                d = nesterov ? d + mom * v[i] : v[i];
            }
            w[i] -= lr * d;
        }
        TEST_OK(distq_sgd_step(&s, g, t));
    }
    for (int p = 0, k = 0; p < g->n_params; p++)
        if (distq_trainer_grad(t, p))
            for (int64_t i = 0; i < distq_tensor_numel(&g->params[p]); i++, k++)
                CU_ASSERT_EQUAL(((float *)g->params[p].data)[i], w[k]);
    /* Buffers are not trained. */
    CU_ASSERT_EQUAL(memcmp(rm, distq_graph_find_param(g, "bn.running_mean")->data, sizeof rm), 0);
    CU_ASSERT_EQUAL(s.step, 3);
    distq_sgd_free(&s);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

static void test_sgd_by_hand(void)
{
    sgd_case(0.1f, 0.9f, 1e-2f, 0);
    sgd_case(0.05f, 0.9f, 5e-4f, 1);
    sgd_case(0.1f, 0.0f, 0.0f, 0);
    distq_sgd s;
    distq_graph *g = small_resnet(4, 8, 0);
    distq_train_opts o = {.max_batch = 1, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    TEST_ERR(distq_sgd_init(&s, t, -1.0f, 0.9f, 0.0f), DISTQ_ERR_INVALID_ARG, "lr -1");
    TEST_OK(distq_sgd_init(&s, t, 0.1f, 0.0f, 0.0f));
    s.nesterov = 1;
    TEST_ERR(distq_sgd_step(&s, g, t), DISTQ_ERR_INVALID_ARG, "nesterov needs momentum");
    distq_sgd_free(&s);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

/* --- data parallel ------------------------------------------------------------------------
 * Two "ranks" are two threads, each with its own copy of the graph and a
 * trainer over half the batch; the hook sums over them behind a barrier, as
 * MPI_Allreduce would. */

typedef struct {
    pthread_barrier_t bar;
    double *bufs[2];
    double sum[2][256];
    int calls[2];
    double first_count[2]; /* last entry of the first call: the local count */
} pair_shared;

typedef struct {
    pair_shared *sh;
    int rank;
    distq_trainer *t;
    const float *x;
    const int64_t *labels;
    int64_t n, global;
    distq_step_stats stats;
    distq_status st;
} pair_rank;

static distq_status pair_sum(void *ctx, double *sums, int n)
{
    pair_rank *r = ctx;
    pair_shared *sh = r->sh;
    if (n > 256) return distq_error_set(DISTQ_ERR_MPI, "test hook: %d sums", n);
    if (sh->calls[r->rank]++ == 0) sh->first_count[r->rank] = sums[n - 1];
    sh->bufs[r->rank] = sums;
    pthread_barrier_wait(&sh->bar);
    for (int i = 0; i < n; i++) sh->sum[r->rank][i] = sh->bufs[0][i] + sh->bufs[1][i];
    pthread_barrier_wait(&sh->bar); /* both read both before either overwrites */
    memcpy(sums, sh->sum[r->rank], (size_t)n * sizeof *sums);
    return DISTQ_OK;
}

static void *pair_main(void *arg)
{
    pair_rank *r = arg;
    r->st = distq_trainer_step(r->t, r->x, r->n, r->labels, NULL, r->global, &r->stats);
    return NULL;
}

/* Full batch of 8 on one trainer vs n0 + (8 - n0) images on two "ranks"
 * (threads with the hook, or one after the other without). Returns the
 * gradient error of the sum of the two against the full batch; checks running
 * stats and losses. */
static double split_batch(int with_bn, int use_hook, int64_t n0)
{
    enum { N = 8 };
    int64_t share[2] = {n0, N - n0};
    distq_graph *g = small_resnet(4, 6, with_bn), *half[2] = {NULL, NULL};
    TEST_OK(distq_graph_clone(g, &half[0]));
    TEST_OK(distq_graph_clone(g, &half[1]));
    int64_t IN = in_numel(g), labels[N];
    float *x = malloc((size_t)(N * IN) * sizeof *x);
    test_fill_uniform(x, N * IN, 1234, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) labels[i] = i % 3;

    distq_train_opts o = {.max_batch = N, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    distq_trainer *full = NULL;
    TEST_OK(distq_trainer_create(g, &o, &full));
    distq_step_stats fs;
    TEST_OK(distq_trainer_step(full, x, N, labels, NULL, N, &fs));

    pair_shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_barrier_init(&sh.bar, NULL, 2);
    pair_rank r[2];
    distq_reducer hooks[2];
    for (int k = 0; k < 2; k++) {
        int64_t first = k ? n0 : 0;
        r[k] = (pair_rank){.sh = &sh, .rank = k, .x = x + first * IN, .labels = labels + first, .n = share[k],
                           .global = N};
        hooks[k] = (distq_reducer){.ctx = &r[k], .sum_f64 = pair_sum};
        distq_train_opts oh = {.max_batch = share[k] > 0 ? share[k] : 1, .loss = DISTQ_LOSS_CROSS_ENTROPY,
                               .reducer = use_hook ? &hooks[k] : NULL};
        TEST_OK(distq_trainer_create(half[k], &oh, &r[k].t));
    }
    if (use_hook) {
        pthread_t th;
        pthread_create(&th, NULL, pair_main, &r[1]);
        pair_main(&r[0]);
        pthread_join(th, NULL);
    } else {
        pair_main(&r[0]);
        pair_main(&r[1]);
    }
    TEST_OK(r[0].st);
    TEST_OK(r[1].st);
    if (use_hook || !with_bn) {
        CU_ASSERT_DOUBLE_EQUAL(r[0].stats.loss_sum + r[1].stats.loss_sum, fs.loss_sum, 1e-5 * fabs(fs.loss_sum));
        CU_ASSERT_EQUAL(r[0].stats.correct + r[1].stats.correct, fs.correct);
    }
    int64_t count = 0;
    const float *gf = distq_trainer_grads(full, &count);
    const float *g0 = distq_trainer_grads(r[0].t, NULL), *g1 = distq_trainer_grads(r[1].t, NULL);
    float *sum = malloc((size_t)count * sizeof *sum);
    for (int64_t i = 0; i < count; i++) sum[i] = g0[i] + g1[i]; /* the all-reduce */
    double err = test_max_rel_err(sum, gf, count);
    if (with_bn && use_hook) {
        CU_ASSERT_EQUAL(sh.calls[0], 2 * 2); /* 2 BNs, forward and backward */
        CU_ASSERT_EQUAL(sh.calls[1], 2 * 2);
        CU_ASSERT_DOUBLE_EQUAL(sh.first_count[0], (double)(n0 * 6 * 6), 0.0); /* local count goes in */
        for (int p = 0; p < g->n_params; p++) {
            const distq_tensor *a = &g->params[p];
            if (!strstr(a->name, "running_")) continue;
            for (int k = 0; k < 2; k++)
                CU_ASSERT(test_max_rel_err(half[k]->params[p].data, a->data, distq_tensor_numel(a)) < 1e-5);
        }
    }
    free(sum);
    free(x);
    pthread_barrier_destroy(&sh.bar);
    for (int k = 0; k < 2; k++) {
        distq_trainer_destroy(r[k].t);
        distq_graph_destroy(half[k]);
    }
    distq_trainer_destroy(full);
    distq_graph_destroy(g);
    return err;
}

static void test_split_batch(void)
{
    double plain = split_batch(0, 0, 4), with_hook = split_batch(1, 1, 4), without_hook = split_batch(1, 0, 4);
    double uneven = split_batch(1, 1, 3), empty = split_batch(1, 1, 0); /* a rank with no images */
    printf(" [grad err: no BN %.1e, BN+hook %.1e (3+5 %.1e, 0+8 %.1e), BN no hook %.1e] ", plain, with_hook,
           uneven, empty, without_hook);
    CU_ASSERT(plain < 1e-5);
    CU_ASSERT(with_hook < 1e-5);
    CU_ASSERT(uneven < 1e-5);
    CU_ASSERT(empty < 1e-5);
    /* The check can fail: local batch statistics give other gradients. */
    CU_ASSERT(without_hook > 1e-2);
}

/* --- errors ---------------------------------------------------------------------------------- */

static distq_status failing_hook(void *ctx, double *sums, int n)
{
    return distq_error_set(DISTQ_ERR_MPI, "MPI_Allreduce: boom");
}

static void test_errors(void)
{
    distq_graph *g = small_resnet(4, 8, 1);
    distq_train_opts o = {.max_batch = 2, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    distq_trainer *t = NULL;
    TEST_ERR(distq_trainer_create(g, &(distq_train_opts){.max_batch = 0}, &t), DISTQ_ERR_INVALID_ARG,
             "max_batch 0");
    TEST_OK(distq_trainer_create(g, &o, &t));
    float x[2 * 3 * 64] = {0};
    int64_t labels[3] = {0, 1, 2};
    TEST_ERR(distq_trainer_step(t, x, 3, labels, NULL, 3, NULL), DISTQ_ERR_INVALID_ARG,
             "step on 3 images, max_batch is 2");
    TEST_ERR(distq_trainer_step(t, x, 2, labels, NULL, 1, NULL), DISTQ_ERR_INVALID_ARG, "global batch 1");
    TEST_ERR(distq_trainer_step(t, x, 2, NULL, NULL, 2, NULL), DISTQ_ERR_INVALID_ARG, "needs labels");
    distq_trainer_destroy(t);
    /* One image of 1x1 after a global pool: BN has one value per channel. */
    int64_t in[4] = {1, 2, 1, 1};
    distq_graph *g1 = new_graph(4, in);
    bn(g1, "lonely_bn", "x", 2, 0.1f);
    finish(g1, "lonely_bn");
    o = (distq_train_opts){.max_batch = 1, .loss = DISTQ_LOSS_MSE};
    TEST_OK(distq_trainer_create(g1, &o, &t));
    TEST_ERR(distq_trainer_step(t, x, 1, NULL, x, 1, NULL), DISTQ_ERR_INVALID_ARG,
             "node 'lonely_bn' (batch_norm): expected more than 1 value per channel");
    distq_trainer_destroy(t);
    TEST_ERR(distq_trainer_create(g1, &(distq_train_opts){.max_batch = 1, .loss = DISTQ_LOSS_CROSS_ENTROPY}, &t),
             DISTQ_ERR_INVALID_ARG, "cross-entropy needs (N, classes) logits, graph output 'lonely_bn'");
    distq_graph_destroy(g1);
    /* An op the trainer has no kernel for is refused at create, named. */
    distq_graph *g2 = new_graph(4, in);
    const char *hs_in[] = {"x"};
    TEST_OK(distq_graph_add_node(g2, "act", DISTQ_OP_HARDSWISH, NULL, 1, hs_in, NULL, "act"));
    finish(g2, "act");
    t = NULL;
    TEST_ERR(distq_trainer_create(g2, &(distq_train_opts){.max_batch = 1, .loss = DISTQ_LOSS_MSE}, &t),
             DISTQ_ERR_UNSUPPORTED, "trainer: node 'act': op hardswish has no training kernel");
    CU_ASSERT_PTR_NULL(t);
    distq_graph_destroy(g2);
    /* A failing reduction is reported with the node. */
    distq_reducer h = {.sum_f64 = failing_hook};
    o = (distq_train_opts){.max_batch = 2, .loss = DISTQ_LOSS_CROSS_ENTROPY, .reducer = &h};
    TEST_OK(distq_trainer_create(g, &o, &t));
    TEST_ERR(distq_trainer_step(t, x, 2, labels, NULL, 2, NULL), DISTQ_ERR_MPI,
             "node 'bn1': summing batch statistics over ranks: MPI_Allreduce: boom");
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

/* --- throughput -------------------------------------------------------------------------------- */

/* conv 1->32 + bn + relu; conv 32->32 + bn + relu + residual; maxpool; conv
 * 32->64 /2 + bn + relu; conv 64->64 + bn + residual + relu; avgpool; fc. */
static distq_graph *small_cnn(void)
{
    int64_t in[4] = {1, 1, 28, 28};
    distq_graph *g = new_graph(4, in);
    conv(g, "c1", "x", 1, 32, 3, 1, 1, 1, 1, 0);
    bn(g, "b1", "c1", 32, 0.1f);
    unary(g, "r1", DISTQ_OP_RELU, "b1");
    conv(g, "c2", "r1", 32, 32, 3, 1, 1, 1, 1, 0);
    bn(g, "b2", "c2", 32, 0.1f);
    unary(g, "r2", DISTQ_OP_RELU, "b2");
    add_node(g, "res1", DISTQ_OP_ADD, NULL, "r2", "r1", 0, 0);
    maxpool(g, "mp", "res1", 2, 2, 0, 0);
    conv(g, "c3", "mp", 32, 64, 3, 2, 1, 1, 1, 0);
    bn(g, "b3", "c3", 64, 0.1f);
    unary(g, "r3", DISTQ_OP_RELU, "b3");
    conv(g, "c4", "r3", 64, 64, 3, 1, 1, 1, 1, 0);
    bn(g, "b4", "c4", 64, 0.1f);
    add_node(g, "res2", DISTQ_OP_ADD, NULL, "b4", "r3", 0, 0);
    unary(g, "r4", DISTQ_OP_RELU, "res2");
    unary(g, "gap", DISTQ_OP_ADAPTIVE_AVG_POOL2D, "r4");
    unary(g, "flat", DISTQ_OP_FLATTEN, "gap");
    linear(g, "fc", "flat", 64, 10, 1);
    finish(g, "fc");
    return g;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* oneDNN's sgemm (what distq_sgemm calls) and the plain-C reference against a plain
 * triple loop in double, every transpose and accumulate combination, odd
 * sizes and padded leading dimensions. */
static void test_sgemm_vs_naive(void)
{
    static const int64_t sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {130, 9, 300}, {8, 1030, 27}};
    float *work = malloc(distq_sgemm_work_floats() * sizeof *work);
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        int64_t M = sizes[z][0], N = sizes[z][1], K = sizes[z][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int accumulate = 0; accumulate < 2; accumulate++) {
                    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
                    float *A = malloc((size_t)((ta ? K : M) * lda) * sizeof *A);
                    float *B = malloc((size_t)((tb ? N : K) * ldb) * sizeof *B);
                    float *C0 = malloc((size_t)(M * ldc) * sizeof *C0), *C1 = malloc((size_t)(M * ldc) * sizeof *C1);
                    float *C2 = malloc((size_t)(M * ldc) * sizeof *C2);
                    test_fill_uniform(A, (ta ? K : M) * lda, next_seed++, -1.0f, 1.0f);
                    test_fill_uniform(B, (tb ? N : K) * ldb, next_seed++, -1.0f, 1.0f);
                    test_fill_uniform(C0, M * ldc, next_seed++, -1.0f, 1.0f);
                    memcpy(C1, C0, (size_t)(M * ldc) * sizeof *C0);
                    memcpy(C2, C0, (size_t)(M * ldc) * sizeof *C0);
                    /* oneDNN itself, not the fallback inside distq_sgemm */
                    CU_ASSERT(dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb,
                                         accumulate ? 1.0f : 0.0f, C1, ldc) == dnnl_success);
                    distq_sgemm_ref(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C2, ldc, work);
                    double worst = 0.0;
                    int pad_kept = 1;
                    for (int64_t i = 0; i < M; i++) {
                        for (int64_t j = 0; j < N; j++) {
                            double want = accumulate ? C0[i * ldc + j] : 0.0;
                            for (int64_t k = 0; k < K; k++)
                                want += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                                        (tb ? B[j * ldb + k] : B[k * ldb + j]);
                            worst = fmax(worst, fmax(fabs(C1[i * ldc + j] - want), fabs(C2[i * ldc + j] - want)));
                        }
                        pad_kept &= C1[i * ldc + N] == C0[i * ldc + N] && C2[i * ldc + N] == C0[i * ldc + N];
                    }
                    CU_ASSERT(worst < 1e-5 * (double)K + 1e-6);
                    CU_ASSERT(pad_kept); /* nothing written past N in a row */
                    free(A);
                    free(B);
                    free(C0);
                    free(C1);
                    free(C2);
                }
    }
    free(work);
}

static void test_throughput_small_cnn(void)
{
    enum { B = 128, STEPS = 4 };
    distq_graph *g = small_cnn();
    distq_train_opts o = {.max_batch = B, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    distq_trainer *t = NULL;
    TEST_OK(distq_trainer_create(g, &o, &t));
    distq_sgd s;
    TEST_OK(distq_sgd_init(&s, t, 0.05f, 0.9f, 5e-4f));
    float *x = malloc((size_t)B * 784 * sizeof *x);
    int64_t labels[B];
    test_fill_uniform(x, B * 784, 9, 0.0f, 1.0f);
    for (int i = 0; i < B; i++) labels[i] = i % 10;
    distq_step_stats st;
    double first = 0.0, last = 0.0, t0 = 0.0;
    for (int k = 0; k <= STEPS; k++) {
        if (k == 1) t0 = now_s(); /* the first step touches fresh pages */
        TEST_OK(distq_trainer_step(t, x, B, labels, NULL, B, &st));
        TEST_OK(distq_sgd_step(&s, g, t));
        if (k == 0) first = st.loss_sum / B;
        last = st.loss_sum / B;
    }
    double dt = now_s() - t0;
    printf(" [small CNN batch %d, %d threads: %.0f images/s; loss %.3f -> %.3f] ", B, t->nthreads,
           STEPS * B / dt, first, last);
    CU_ASSERT(last < first); /* same batch: SGD must make progress */
    free(x);
    distq_sgd_free(&s);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
}

int main(void)
{
    static const test_case cases[] = {
        {"conv2d backward variants vs finite differences", test_fd_conv_variants},
        {"batch_norm (training) backward vs finite differences", test_fd_batch_norm},
        {"relu and add backward vs finite differences", test_fd_relu_add},
        {"clip (relu6 and [-0.2, 0.3]) vs finite differences", test_fd_clip},
        {"max_pool2d backward vs finite differences", test_fd_max_pool},
        {"max_pool2d ties go to the first maximum", test_max_pool_ties},
        {"avgpool, flatten, linear backward vs finite differences", test_fd_avgpool_flatten_linear},
        {"whole graph backward vs finite differences", test_fd_whole_graph},
        {"plain-C conv kernels vs finite differences", test_fd_plain_kernels},
        {"oneDNN conv primitives vs plain-C kernels", test_onednn_conv_vs_plain},
        {"cross-entropy and MSE by hand", test_losses_by_hand},
        {"batch_norm running stats and output by hand", test_bn_running_stats},
        {"predict equals the ref executor", test_predict_matches_ref},
        {"gradient buffer layout", test_grad_layout},
        {"SGD by hand", test_sgd_by_hand},
        {"split batch equals full batch", test_split_batch},
        {"errors name the culprit", test_errors},
        {"sgemm (oneDNN and plain C) vs a naive loop", test_sgemm_vs_naive},
        {"small CNN throughput", test_throughput_small_cnn},
    };
    return test_run_suite("train", cases, sizeof cases / sizeof cases[0]);
}
