/*
 * QAT (src/train/qat.c): fake-quant forward equals quantize-dequantize, the
 * straight-through gradient, the conv-bn simulation's gradient (central
 * differences of the STE surrogate, an independent double-precision forward),
 * the QAT-converted int8 graph against its int8 reference executor and
 * against the fake-quant model, observer state save/restore, and errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/exec.h"
#include "distq/io.h"
#include "distq/qat.h"
#include "test_int8_cmp.h"
#include "test_util.h"
#include "train/train_impl.h"

static uint64_t next_seed = 500;

static void add_param(distq_graph *g, const char *name, int ndim, const int64_t *dims, float lo, float hi)
{
    int64_t n = distq_dims_numel(ndim, dims);
    float *d = malloc((size_t)n * sizeof *d);
    test_fill_uniform(d, n, next_seed++, lo, hi);
    TEST_OK(distq_graph_add_param(g, name, DISTQ_DTYPE_F32, ndim, dims, d, NULL));
    free(d);
}

/* x (1, 6) -> fc: Linear(6, 3) with bias. */
static distq_graph *linear_graph(void)
{
    distq_graph *g = NULL;
    int64_t in[2] = {1, 6}, w[2] = {3, 6}, b = 3;
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, "x", 2, in));
    add_param(g, "fc.weight", 2, w, -0.5f, 0.5f);
    add_param(g, "fc.bias", 1, &b, -0.2f, 0.2f);
    const char *ins[1] = {"x"}, *params[DISTQ_MAX_PARAMS] = {"fc.weight", "fc.bias"};
    TEST_OK(distq_graph_add_node(g, "fc", DISTQ_OP_LINEAR, NULL, 1, ins, params, "fc"));
    TEST_OK(distq_graph_set_output(g, "fc"));
    TEST_OK(distq_graph_finalize(g));
    return g;
}

/* x (1, 2, 3, 3) -> conv 3x3 pad 1 (2 -> 3, no bias, or with one) -> bn: the output. */
static distq_graph *conv_bn_graph(int conv_bias)
{
    distq_graph *g = NULL;
    int64_t in[4] = {1, 2, 3, 3}, w[4] = {3, 2, 3, 3}, C = 3, one = 1, zero = 0;
    TEST_OK(distq_graph_create(&g));
    TEST_OK(distq_graph_set_input(g, "x", 4, in));
    add_param(g, "conv.weight", 4, w, -0.4f, 0.4f);
    if (conv_bias) add_param(g, "conv.bias", 1, &C, -0.1f, 0.1f);
    add_param(g, "bn.weight", 1, &C, 0.5f, 1.5f);
    add_param(g, "bn.bias", 1, &C, -0.3f, 0.3f);
    add_param(g, "bn.running_mean", 1, &C, -0.2f, 0.2f);
    add_param(g, "bn.running_var", 1, &C, 0.5f, 1.5f);
    TEST_OK(distq_graph_add_param(g, "bn.num_batches_tracked", DISTQ_DTYPE_S64, 1, &one, &zero, NULL));
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.padding[0] = a.padding[1] = 1;
    const char *x[1] = {"x"}, *cp[DISTQ_MAX_PARAMS] = {"conv.weight", conv_bias ? "conv.bias" : ""};
    TEST_OK(distq_graph_add_node(g, "conv", DISTQ_OP_CONV2D, &a, 1, x, cp, "conv"));
    distq_attrs ab = distq_attrs_default(DISTQ_OP_BATCH_NORM);
    const char *c[1] = {"conv"};
    const char *bp[DISTQ_MAX_PARAMS] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                        "bn.num_batches_tracked"};
    TEST_OK(distq_graph_add_node(g, "bn", DISTQ_OP_BATCH_NORM, &ab, 1, c, bp, "bn"));
    TEST_OK(distq_graph_set_output(g, "bn"));
    TEST_OK(distq_graph_finalize(g));
    return g;
}

static float *param(distq_graph *g, const char *name) { return distq_graph_find_param(g, name)->data; }

/* --- fake-quant forward and the straight-through gradient ------------------- */

enum { LN = 4, LIN = 6, LOUT = 3 };

/* The linear graph's step, from the fake-quant primitives: input qparams qp,
 * weight scales; y, dW = mask * dWq, db, and the weight mask. */
static void linear_reference(const float *x, const float *target, const float *w, const float *b,
                             distq_qparams qp, const float *scale, double *y, double *dw, double *db,
                             uint8_t *mask)
{
    float xq[LN * LIN], wq[LOUT * LIN];
    distq_fake_quant(x, LN * LIN, qp.scale, qp.zero_point, 0, 255, xq, NULL);
    distq_fake_quant_per_channel(w, LOUT, LIN, scale, wq, mask);
    memset(dw, 0, sizeof(double) * LOUT * LIN);
    memset(db, 0, sizeof(double) * LOUT);
    for (int n = 0; n < LN; n++)
        for (int o = 0; o < LOUT; o++) {
            double s = b[o];
            for (int j = 0; j < LIN; j++) s += (double)xq[n * LIN + j] * wq[o * LIN + j];
            y[n * LOUT + o] = s;
            double dy = 2.0 * (s - target[n * LOUT + o]) / (LN * LOUT);
            db[o] += dy;
            for (int j = 0; j < LIN; j++) dw[o * LIN + j] += dy * xq[n * LIN + j];
        }
    for (int i = 0; i < LOUT * LIN; i++) dw[i] *= mask[i];
}

/* max |trainer - reference| over y, dW and db of the last step */
static double linear_error(distq_trainer *t, distq_graph *g, const double *y, const double *dw, const double *db)
{
    const float *got_y = t->act[g->output_values[0]];
    const float *gw = distq_trainer_grad(t, distq_graph_find_param(g, "fc.weight") - g->params);
    const float *gb = distq_trainer_grad(t, distq_graph_find_param(g, "fc.bias") - g->params);
    double worst = 0.0;
    for (int i = 0; i < LN * LOUT; i++) worst = fmax(worst, fabs(got_y[i] - y[i]));
    for (int i = 0; i < LOUT * LIN; i++) worst = fmax(worst, fabs(gw[i] - dw[i]));
    for (int o = 0; o < LOUT; o++) worst = fmax(worst, fabs(gb[o] - db[o]));
    return worst;
}

static void test_linear_fake_quant_and_ste(void)
{
    distq_graph *g = linear_graph();
    const float *w = param(g, "fc.weight"), *b = param(g, "fc.bias");
    float x[LN * LIN], target[LN * LOUT], lo, hi, scale[LOUT], wmin[LOUT], wmax[LOUT];
    test_fill_uniform(x, LN * LIN, 11, -1.0f, 2.0f);
    test_fill_uniform(target, LN * LOUT, 12, -1.0f, 1.0f);
    distq_qparams qp;
    TEST_OK(distq_batch_minmax(x, LN * LIN, &lo, &hi));
    TEST_OK(distq_qparams_affine(lo, hi, 0, 255, &qp));
    distq_minmax_per_channel(w, LOUT, LIN, wmin, wmax);
    for (int o = 0; o < LOUT; o++) scale[o] = distq_qparams_symmetric_scale(wmin[o], wmax[o]);
    double y[LN * LOUT], dw[LOUT * LIN], db[LOUT];
    uint8_t mask[LOUT * LIN];

    distq_qat *q = NULL;
    distq_trainer *t = NULL;
    distq_qat_opts qo = {.reduce_range = 0};
    distq_train_opts opts = {.max_batch = LN, .loss = DISTQ_LOSS_MSE};
    TEST_OK(distq_qat_create(g, &qo, &q));
    TEST_OK(distq_trainer_create(g, &opts, &t));
    TEST_OK(distq_trainer_attach_qat(t, q));

    /* first step: observers take the batch's and the weights' own ranges */
    TEST_OK(distq_trainer_step(t, x, LN, NULL, target, LN, NULL));
    float xq[LN * LIN], st[3 + 2 * LOUT];
    distq_fake_quant(x, LN * LIN, qp.scale, qp.zero_point, 0, 255, xq, NULL);
    CU_ASSERT_EQUAL(memcmp(t->act[g->input_value], xq, sizeof xq), 0); /* fake-quantized in place */
    linear_reference(x, target, w, b, qp, scale, y, dw, db, mask);
    CU_ASSERT(linear_error(t, g, y, dw, db) < 1e-6);
    CU_ASSERT_FATAL(distq_qat_state_count(q) == 3 + 2 * LOUT);
    distq_qat_state_get(q, st);
    CU_ASSERT(st[0] == lo && st[1] == hi);
    CU_ASSERT(memcmp(st + 2, wmin, sizeof wmin) == 0 && memcmp(st + 2 + LOUT, wmax, sizeof wmax) == 0);
    CU_ASSERT(st[2 + 2 * LOUT] == 0.0f); /* reduce_range off */

    /* a weight range narrower than the weights (observers frozen): the clamped
     * weights get no gradient (STE mask), though their unmasked gradient is not 0 */
    st[2] = -0.1f;
    st[2 + LOUT] = 0.1f;
    TEST_OK(distq_qat_state_set(q, st, 3 + 2 * LOUT));
    distq_qat_set_observers(q, 0);
    TEST_OK(distq_trainer_step(t, x, LN, NULL, target, LN, NULL));
    scale[0] = distq_qparams_symmetric_scale(-0.1f, 0.1f);
    linear_reference(x, target, w, b, qp, scale, y, dw, db, mask);
    CU_ASSERT(linear_error(t, g, y, dw, db) < 1e-6);
    int masked = 0;
    for (int j = 0; j < LIN; j++) masked += !mask[j];
    CU_ASSERT(masked >= 2);
    float after[3 + 2 * LOUT];
    distq_qat_state_get(q, after);
    CU_ASSERT(memcmp(st, after, sizeof st) == 0); /* frozen observers keep their state */

    /* observers on again: the moving average moves by 0.01 towards the batch range */
    float x3[LN * LIN];
    for (int i = 0; i < LN * LIN; i++) x3[i] = 3.0f * x[i];
    distq_qat_set_observers(q, 1);
    TEST_OK(distq_trainer_step(t, x3, LN, NULL, target, LN, NULL));
    distq_qat_state_get(q, after);
    CU_ASSERT_EQUAL(after[0], lo + 0.01f * (3.0f * lo - lo));
    CU_ASSERT_EQUAL(after[1], hi + 0.01f * (3.0f * hi - hi));
    CU_ASSERT_EQUAL(after[2], -0.1f + 0.01f * (wmin[0] - -0.1f));

    distq_trainer_destroy(t);
    distq_qat_destroy(q);
    distq_graph_destroy(g);
}

/* --- conv-bn simulation: gradient of the STE surrogate ------------------------
 * The surrogate of y = BN_train(conv(xq, FQ(w k)) / k) replaces FQ(v) by
 * v + e with e = FQ(v0) - v0 frozen at the base point (and by the constant
 * FQ(v0) where the mask is 0): the function whose gradient the straight-
 * through estimator is. Its central differences, in double, check the
 * trainer's weight and BN gradients, including the paths through k. */

enum { SN = 2, SC = 2, SH = 3, SOC = 3, SK = 3 };
#define SWN (SOC * SC * SK * SK)

typedef struct {
    float xq[SN * SC * SH * SH], target[SN * SOC * SH * SH];
    float w0[SWN], gamma0[SOC], beta0[SOC], rmean[SOC], rvar[SOC], eps;
    int frozen; /* BN on its running statistics */
    float wq0[SWN];
    uint8_t mask[SWN];
} surrogate;

static double surrogate_loss(const surrogate *s, const double *w, const double *gamma, const double *beta)
{
    double y[SN * SOC * SH * SH];
    for (int o = 0; o < SOC; o++) {
        double r = 1.0 / sqrt((double)s->rvar[o] + s->eps), k = gamma[o] * r, k0 = s->gamma0[o] * r;
        double wq[SC * SK * SK];
        for (int j = 0; j < SC * SK * SK; j++) {
            int i = o * SC * SK * SK + j;
            wq[j] = s->mask[i] ? w[i] * k + ((double)s->wq0[i] - (double)s->w0[i] * k0) : s->wq0[i];
        }
        for (int n = 0; n < SN; n++)
            for (int oh = 0; oh < SH; oh++)
                for (int ow = 0; ow < SH; ow++) {
                    double z = 0.0;
                    for (int c = 0; c < SC; c++)
                        for (int kh = 0; kh < SK; kh++)
                            for (int kw = 0; kw < SK; kw++) {
                                int ih = oh + kh - 1, iw = ow + kw - 1;
                                if (ih < 0 || iw < 0 || ih >= SH || iw >= SH) continue;
                                z += s->xq[((n * SC + c) * SH + ih) * SH + iw] * wq[(c * SK + kh) * SK + kw];
                            }
                    y[((n * SOC + o) * SH + oh) * SH + ow] = z / k;
                }
    }
    double loss = 0.0;
    int M = SN * SH * SH;
    for (int o = 0; o < SOC; o++) {
        double mean = 0.0, var = 0.0;
        for (int n = 0; n < SN; n++)
            for (int p = 0; p < SH * SH; p++) mean += y[(n * SOC + o) * SH * SH + p] / M;
        for (int n = 0; n < SN; n++)
            for (int p = 0; p < SH * SH; p++) var += pow(y[(n * SOC + o) * SH * SH + p] - mean, 2) / M;
        if (s->frozen) {
            mean = s->rmean[o];
            var = s->rvar[o];
        }
        for (int n = 0; n < SN; n++)
            for (int p = 0; p < SH * SH; p++) {
                int i = (n * SOC + o) * SH * SH + p;
                double out = gamma[o] * (y[i] - mean) / sqrt(var + s->eps) + beta[o];
                loss += pow(out - s->target[i], 2);
            }
    }
    return loss / (SN * SOC * SH * SH);
}

static void conv_bn_gradient(int frozen)
{
    distq_graph *g = conv_bn_graph(0);
    surrogate s;
    s.frozen = frozen;
    memcpy(s.rmean, param(g, "bn.running_mean"), sizeof s.rmean);
    float x[SN * SC * SH * SH];
    test_fill_uniform(x, SN * SC * SH * SH, 21, -1.0f, 1.0f);
    test_fill_uniform(s.target, SN * SOC * SH * SH, 22, -1.0f, 1.0f);
    memcpy(s.w0, param(g, "conv.weight"), sizeof s.w0);
    memcpy(s.gamma0, param(g, "bn.weight"), sizeof s.gamma0);
    memcpy(s.beta0, param(g, "bn.bias"), sizeof s.beta0);
    memcpy(s.rvar, param(g, "bn.running_var"), sizeof s.rvar);
    s.eps = g->nodes[1].attr.eps;
    /* the base point's fake quants, as the trainer computes them */
    float lo, hi, ws[SWN], scale[SOC];
    distq_qparams qp;
    TEST_OK(distq_batch_minmax(x, SN * SC * SH * SH, &lo, &hi));
    TEST_OK(distq_qparams_affine(lo, hi, 0, 255, &qp));
    distq_fake_quant(x, SN * SC * SH * SH, qp.scale, qp.zero_point, 0, 255, s.xq, NULL);
    for (int o = 0; o < SOC; o++) {
        float k = s.gamma0[o] * (1.0f / sqrtf(s.rvar[o] + s.eps)), mn, mx;
        for (int j = 0; j < SC * SK * SK; j++) ws[o * SC * SK * SK + j] = s.w0[o * SC * SK * SK + j] * k;
        distq_minmax_per_channel(ws + o * SC * SK * SK, 1, SC * SK * SK, &mn, &mx);
        scale[o] = distq_qparams_symmetric_scale(mn, mx);
    }
    distq_fake_quant_per_channel(ws, SOC, SC * SK * SK, scale, s.wq0, s.mask);

    distq_qat *q = NULL;
    distq_trainer *t = NULL;
    distq_qat_opts qo = {.reduce_range = 0};
    distq_train_opts opts = {.max_batch = SN, .loss = DISTQ_LOSS_MSE};
    TEST_OK(distq_qat_create(g, &qo, &q));
    TEST_OK(distq_trainer_create(g, &opts, &t));
    TEST_OK(distq_trainer_attach_qat(t, q));
    distq_trainer_freeze_bn(t, frozen);
    TEST_OK(distq_trainer_step(t, x, SN, NULL, s.target, SN, NULL));
    const float *gw = distq_trainer_grad(t, distq_graph_find_param(g, "conv.weight") - g->params);
    const float *gg = distq_trainer_grad(t, distq_graph_find_param(g, "bn.weight") - g->params);
    const float *gbeta = distq_trainer_grad(t, distq_graph_find_param(g, "bn.bias") - g->params);

    double w[SWN], gamma[SOC], beta[SOC], h = 1e-6, worst = 0.0, gmax = 0.0;
    for (int i = 0; i < SWN; i++) w[i] = s.w0[i];
    for (int o = 0; o < SOC; o++) {
        gamma[o] = s.gamma0[o];
        beta[o] = s.beta0[o];
    }
    double fd_w[SWN], fd_g[SOC], fd_b[SOC];
    for (int i = 0; i < SWN; i++) {
        w[i] += h;
        double up = surrogate_loss(&s, w, gamma, beta);
        w[i] -= 2 * h;
        fd_w[i] = (up - surrogate_loss(&s, w, gamma, beta)) / (2 * h);
        w[i] += h;
        gmax = fmax(gmax, fabs(fd_w[i]));
    }
    for (int o = 0; o < SOC; o++) {
        gamma[o] += h;
        double up = surrogate_loss(&s, w, gamma, beta);
        gamma[o] -= 2 * h;
        fd_g[o] = (up - surrogate_loss(&s, w, gamma, beta)) / (2 * h);
        gamma[o] += h;
        beta[o] += h;
        up = surrogate_loss(&s, w, gamma, beta);
        beta[o] -= 2 * h;
        fd_b[o] = (up - surrogate_loss(&s, w, gamma, beta)) / (2 * h);
        beta[o] += h;
        gmax = fmax(gmax, fmax(fabs(fd_g[o]), fabs(fd_b[o])));
    }
    for (int i = 0; i < SWN; i++) worst = fmax(worst, fabs(gw[i] - fd_w[i]));
    for (int o = 0; o < SOC; o++) worst = fmax(worst, fmax(fabs(gg[o] - fd_g[o]), fabs(gbeta[o] - fd_b[o])));
    printf("\n  conv-bn QAT gradient (BN %s) vs surrogate central differences: max abs err %.2e (max |grad| %.2e) ",
           frozen ? "frozen" : "on batch statistics", worst, gmax);
    if (frozen) /* frozen BN keeps its running statistics */
        CU_ASSERT(memcmp(s.rvar, param(g, "bn.running_var"), sizeof s.rvar) == 0);
    CU_ASSERT(gmax > 1e-3);
    CU_ASSERT(worst < 2e-3 * gmax);

    distq_trainer_destroy(t);
    distq_qat_destroy(q);
    distq_graph_destroy(g);
}

static void test_conv_bn_gradient(void)
{
    conv_bn_gradient(0);
    conv_bn_gradient(1);
}

/* --- the QAT-converted model --------------------------------------------------- */

/* The fake-quant model's values (its last forward) as a forced run's
 * reference: a u8 value's code is zp + v / scale, exact when v is on the
 * value's grid (counted in off_grid otherwise). Values the trainer does not
 * hold (the quantized input) are left to oneDNN. */
typedef struct {
    const distq_graph *g;
    const distq_trainer *t;
    int off_grid;
} fq_source;

static int want_from_fake_quant(void *ctx, const distq_value *val, int64_t batch, void *want)
{
    fq_source *src = ctx;
    int v = distq_graph_find_value(src->g, val->name);
    if (v < 0 || val->dtype != DISTQ_DTYPE_U8) return 0;
    const float *act = src->t->act[src->t->buf_of[v]];
    uint8_t *codes = want;
    int64_t n = batch * distq_dims_numel(val->ndim, val->dims);
    for (int64_t i = 0; i < n; i++) {
        double steps = (double)act[i] / val->scale, code = val->zero_point + nearbyint(steps);
        src->off_grid += fabs(steps - nearbyint(steps)) > 1e-3 || code < 0 || code > val->quant_max;
        codes[i] = (uint8_t)fmin(fmax(code, 0), val->quant_max);
    }
    return 1;
}

static void test_fmnist_convert(void)
{
    enum { N = 8, STEPS = 4 };
    distq_graph *g = NULL;
    TEST_OK(distq_build_fmnist_cnn(1, &g));
    int64_t per = distq_value_numel(&g->values[g->input_value], 1), K = 10;
    float *x = malloc((size_t)(N * per) * sizeof *x), logits_fq[N * 10], logits_ref[N * 10], logits_dnn[N * 10];
    int64_t labels[N];
    test_fill_uniform(x, N * per, 31, -0.8f, 2.0f);
    for (int i = 0; i < N; i++) labels[i] = i % K;

    distq_qat *q = NULL;
    distq_trainer *t = NULL;
    distq_sgd sgd = {0};
    distq_qat_opts qo = {.reduce_range = 1}; /* runs on AVX2 without VNNI too */
    distq_train_opts opts = {.max_batch = N, .loss = DISTQ_LOSS_CROSS_ENTROPY};
    TEST_OK(distq_qat_create(g, &qo, &q));
    TEST_OK(distq_trainer_create(g, &opts, &t));
    TEST_OK(distq_trainer_attach_qat(t, q));
    TEST_OK(distq_sgd_init(&sgd, t, 0.02f, 0.9f, 5e-4f));
    for (int s = 0; s < STEPS; s++) {
        distq_trainer_freeze_bn(t, s >= 2);
        distq_qat_set_observers(q, s < 3);
        TEST_OK(distq_trainer_step(t, x, N, labels, NULL, N, NULL));
        TEST_OK(distq_sgd_step(&sgd, g, t));
    }
    TEST_OK(distq_trainer_predict(t, x, N, logits_fq));

    /* every fake-quantized value is on its observer's grid: FQ(v) == v,
     * with the observers taken from an independent prepare */
    distq_prepared *p = NULL;
    TEST_OK(distq_prepare(g, DISTQ_OBSERVER_MINMAX, &p));
    float *state = malloc((size_t)distq_qat_state_count(q) * sizeof *state);
    distq_qat_state_get(q, state);
    int checked = 0, off_grid = 0;
    for (int o = 0; o < p->n_observers; o++) {
        distq_qparams qp;
        TEST_OK(distq_qparams_affine(state[2 * o], state[2 * o + 1], 0, 127, &qp));
        for (int j = 0; j < p->observers[o].n_values; j++) {
            int v = distq_graph_find_value(g, p->g->values[p->observers[o].values[j]].name);
            CU_ASSERT_FATAL(v >= 0);
            if (t->buf_of[v] != v) continue;
            int64_t n = distq_value_numel(&g->values[v], N);
            float *fq = malloc((size_t)n * sizeof *fq);
            distq_fake_quant(t->act[v], n, qp.scale, qp.zero_point, 0, 127, fq, NULL);
            off_grid += memcmp(fq, t->act[v], (size_t)n * sizeof *fq) != 0;
            checked++;
            free(fq);
        }
    }
    CU_ASSERT(checked >= 8);
    CU_ASSERT_EQUAL(off_grid, 0);

    /* convert: the int8 weight scales are the trained weight observers' */
    distq_graph *qg = NULL;
    TEST_OK(distq_qat_convert(g, q, NULL, &qg));
    CU_ASSERT_EQUAL(distq_graph_reduce_range(qg), 1);
    /* weight observers are in training-graph order; the int8 graph's may differ */
    const float *wstate = state + 2 * p->n_observers;
    int scale_mismatch = 0, qconvs = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != DISTQ_OP_CONV2D && g->nodes[i].op != DISTQ_OP_LINEAR) continue;
        int j = distq_graph_find_node(qg, g->nodes[i].name);
        CU_ASSERT_FATAL(j >= 0);
        const distq_node *qn = &qg->nodes[j];
        const distq_tensor *qw = &qg->params[qn->params[DISTQ_PARAM_WEIGHT]];
        const float *ws = qg->params[qn->params[DISTQ_PARAM_WEIGHT_SCALE]].data;
        int64_t OC = qw->dims[0];
        for (int64_t o = 0; o < OC; o++)
            scale_mismatch += ws[o] != distq_qparams_symmetric_scale(wstate[o], wstate[OC + o]);
        wstate += 2 * OC;
        qconvs++;
    }
    CU_ASSERT(qconvs >= 5);
    CU_ASSERT_EQUAL(scale_mismatch, 0);
    /* with BN and observers frozen, the weight the last forward (predict)
     * fake-quantized is bit for bit the int8 weight times its scale */
    int64_t not_bitwise = 0, compared = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const float *wq = t->nodes[i].wq;
        if (!wq) continue;
        int j = distq_graph_find_node(qg, g->nodes[i].name);
        if (j < 0) continue;
        const distq_node *qn = &qg->nodes[j];
        const distq_tensor *qw = &qg->params[qn->params[DISTQ_PARAM_WEIGHT]];
        const int8_t *w8 = qw->data;
        const float *ws = qg->params[qn->params[DISTQ_PARAM_WEIGHT_SCALE]].data;
        int64_t OC = qw->dims[0], per_oc = distq_tensor_numel(qw) / OC;
        for (int64_t e = 0; e < OC * per_oc; e++, compared++)
            not_bitwise += wq[e] != (float)w8[e] * ws[e / per_oc];
    }
    CU_ASSERT(compared > 50000);
    CU_ASSERT_EQUAL(not_bitwise, 0);

    /* int8 (bounds and why: test_int8_cmp.h). Layer by layer with forced
     * inputs, oneDNN against the int8 reference and against the fake-quant
     * model whose values are on their grids (conversion loses nothing but
     * rounding ties); then chained, the logits against the quantization
     * error itself (fake-quant vs the fp32 model, and int8 reference vs fp32). */
    distq_exec *e_ref = NULL, *e_dnn = NULL, *e_fp32 = NULL;
    float logits_fp32[N * 10], logits_forced[N * 10];
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, qg, N, &e_ref));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_ONEDNN, qg, N, &e_dnn));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, N, &e_fp32));
    TEST_OK(distq_exec_run(e_ref, x, logits_ref));
    TEST_OK(distq_exec_run(e_dnn, x, logits_dnn));
    TEST_OK(distq_exec_run(e_fp32, x, logits_fp32));
    test_forced_sum vs_ref, vs_fq;
    test_int8_run_forced(e_dnn, qg, N, x, logits_forced, test_want_from_exec, e_ref, "QAT int8 vs int8 ref, forced",
                         0, &vs_ref);
    CU_ASSERT(vs_ref.u8_elems > 500000);
    fq_source src = {.g = g, .t = t};
    test_int8_run_forced(e_dnn, qg, N, x, logits_forced, want_from_fake_quant, &src,
                         "QAT int8 vs fake-quant, forced", 0, &vs_fq);
    CU_ASSERT(vs_fq.n_u8 >= 5);
    CU_ASSERT(vs_fq.u8_elems > 100000);
    CU_ASSERT_EQUAL(src.off_grid, 0);
    /* chained: oneDNN and the int8 reference agree against int8's own error;
     * the int8 model is the fake-quant model up to a fraction of it */
    test_int8_vs_quant_noise("QAT int8 (oneDNN) vs int8 ref", logits_dnn, logits_ref, logits_fp32, N, K);
    test_int8_vs_quant_noise("QAT int8 (oneDNN) vs fake-quant", logits_dnn, logits_fq, logits_fp32, N, K);

    distq_exec_destroy(e_ref);
    distq_exec_destroy(e_dnn);
    distq_exec_destroy(e_fp32);
    distq_graph_destroy(qg);
    distq_prepared_destroy(p);
    distq_sgd_free(&sgd);
    distq_trainer_destroy(t);
    distq_qat_destroy(q);
    distq_graph_destroy(g);
    free(state);
    free(x);
}

/* --- state, checkpoints, errors ------------------------------------------------- */

static void test_state_checkpoint(void)
{
    enum { N = 4 };
    distq_graph *g = linear_graph(), *h = NULL;
    distq_qat *q = NULL, *q2 = NULL;
    distq_trainer *t = NULL;
    distq_qat_opts qo = {.reduce_range = 1};
    distq_train_opts opts = {.max_batch = N, .loss = DISTQ_LOSS_MSE};
    float x[N * 6], target[N * 3], st[64], got[64], *loaded = NULL, *vel = NULL;
    test_fill_uniform(x, N * 6, 41, -1.0f, 1.0f);
    test_fill_uniform(target, N * 3, 42, -1.0f, 1.0f);
    TEST_OK(distq_qat_create(g, &qo, &q));
    /* never observed: nothing to convert */
    distq_graph *qg = NULL;
    TEST_ERR(distq_qat_convert(g, q, NULL, &qg), DISTQ_ERR_INVALID_ARG, "(never observed a value)");
    TEST_OK(distq_trainer_create(g, &opts, &t));
    TEST_OK(distq_trainer_attach_qat(t, q));
    TEST_OK(distq_trainer_step(t, x, N, NULL, target, N, NULL));
    int64_t n = distq_qat_state_count(q), nv = 0, nq = 0, step = 0, epoch = 0;
    distq_qat_state_get(q, st);

    char path[512];
    snprintf(path, sizeof path, "%s/qat-ckpt.h5", test_tmpdir());
    TEST_OK(distq_checkpoint_save(path, g, NULL, 0, 3, 1, "cfg", st, n));
    TEST_OK(distq_checkpoint_load(path, &h, &vel, &nv, &step, &epoch, &loaded, &nq));
    CU_ASSERT_EQUAL_FATAL(nq, n);
    /* a run planned without reduce_range takes the checkpoint's */
    distq_qat_opts full_range = {.reduce_range = 0};
    TEST_OK(distq_qat_create(h, &full_range, &q2));
    TEST_OK(distq_qat_state_set(q2, loaded, nq));
    CU_ASSERT_EQUAL(distq_qat_reduce_range(q2), 1);
    distq_qat_state_get(q2, got);
    CU_ASSERT_EQUAL(memcmp(st, got, (size_t)n * sizeof *st), 0);
    TEST_ERR(distq_qat_state_set(q2, loaded, nq - 1), DISTQ_ERR_INVALID_ARG, "before reduce_range was stored");
    float first = loaded[0];
    loaded[nq - 1] = 0.5f;
    loaded[0] = first + 1.0f;
    TEST_ERR(distq_qat_state_set(q2, loaded, nq), DISTQ_ERR_INVALID_ARG, "(reduce_range) is 0.5, not 0 or 1");
    distq_qat_state_get(q2, got); /* refused before anything was set */
    CU_ASSERT_EQUAL(memcmp(st, got, (size_t)n * sizeof *st), 0);
    CU_ASSERT_EQUAL(distq_qat_reduce_range(q2), 1);
    /* and the other way: a full-range state taken by a run planned with reduce_range */
    loaded[0] = first;
    loaded[nq - 1] = 0.0f;
    TEST_OK(distq_qat_state_set(q2, loaded, nq));
    CU_ASSERT_EQUAL(distq_qat_reduce_range(q2), 0);
    /* an fp32 checkpoint has no QAT state */
    TEST_OK(distq_checkpoint_save(path, g, NULL, 0, 3, 1, "cfg", NULL, 0));
    distq_free(loaded);
    distq_graph_destroy(h);
    h = NULL;
    TEST_OK(distq_checkpoint_load(path, &h, &vel, &nv, &step, &epoch, &loaded, &nq));
    CU_ASSERT_EQUAL(nq, 0);
    CU_ASSERT_PTR_NULL(loaded);

    distq_graph_destroy(h);
    distq_trainer_destroy(t);
    distq_qat_destroy(q);
    distq_qat_destroy(q2);
    distq_graph_destroy(g);
}

/* A stand-in for the other ranks of an MPI min/max reduction: records what
 * this rank sent, and can answer as if another rank saw NaN. */
typedef struct {
    int calls, other_rank_bad;
    float sent_lo, sent_hi;
} fake_ranks;

static distq_status fake_min_max(void *ctx, float *lo, float *hi, int n)
{
    fake_ranks *f = ctx;
    CU_ASSERT_EQUAL(n, 1);
    f->calls++;
    f->sent_lo = *lo;
    f->sent_hi = *hi;
    if (f->other_rank_bad) {
        *lo = -INFINITY;
        *hi = INFINITY;
    }
    return DISTQ_OK;
}

/* NaN on this rank or another: the step fails on every rank, at the same
 * fake quant, after taking part in its reduction (so none is left waiting). */
static void test_nan_across_ranks(void)
{
    distq_graph *g = linear_graph();
    distq_qat *q = NULL;
    distq_trainer *t = NULL;
    fake_ranks f = {0};
    distq_reducer hooks = {.ctx = &f, .min_max = fake_min_max};
    distq_train_opts opts = {.max_batch = 1, .loss = DISTQ_LOSS_MSE, .reducer = &hooks};
    distq_qat_opts qo = {0};
    float bad[6] = {0.1f, 0.2f, NAN, 0.3f, 0.4f, 0.5f}, good[6] = {0.1f, 0.2f, 0.25f, 0.3f, 0.4f, 0.5f};
    float target[3] = {0};
    TEST_OK(distq_qat_create(g, &qo, &q));
    TEST_OK(distq_trainer_create(g, &opts, &t));
    TEST_OK(distq_trainer_attach_qat(t, q));
    /* this rank's NaN: it still sends its (-inf, +inf) marker, then fails */
    TEST_ERR(distq_trainer_step(t, bad, 1, NULL, target, 1, NULL), DISTQ_ERR_INVALID_ARG,
             "value 'x' holds NaN or Inf (training diverged?)");
    CU_ASSERT_EQUAL(f.calls, 1);
    CU_ASSERT(f.sent_lo == -INFINITY && f.sent_hi == INFINITY);
    /* another rank's NaN: this rank's data is fine, the reduction says otherwise */
    f = (fake_ranks){.other_rank_bad = 1};
    TEST_ERR(distq_trainer_step(t, good, 1, NULL, target, 1, NULL), DISTQ_ERR_INVALID_ARG,
             "value 'x' holds NaN or Inf on another rank");
    CU_ASSERT_EQUAL(f.calls, 1);
    CU_ASSERT(f.sent_lo == 0.1f && f.sent_hi == 0.5f);
    /* observers frozen: no reduction, and the step does not fail alone */
    f = (fake_ranks){0};
    TEST_OK(distq_trainer_step(t, good, 1, NULL, target, 1, NULL));
    distq_qat_set_observers(q, 0);
    TEST_OK(distq_trainer_step(t, bad, 1, NULL, target, 1, NULL));
    CU_ASSERT_EQUAL(f.calls, 1); /* only the first of the two steps reduced */
    distq_trainer_destroy(t);
    distq_qat_destroy(q);
    distq_graph_destroy(g);
}

static void test_errors(void)
{
    distq_graph *g = conv_bn_graph(1);
    distq_qat *q = NULL;
    distq_qat_opts qo = {0};
    TEST_ERR(distq_qat_create(g, &qo, &q), DISTQ_ERR_UNSUPPORTED, "conv 'conv' has a bias and feeds batch_norm 'bn'");
    CU_ASSERT_PTR_NULL(q);
    distq_graph_destroy(g);

    /* NaN in a fake-quantized value stops the step, naming the value */
    distq_graph *lg = linear_graph();
    distq_trainer *lt = NULL;
    distq_train_opts lopts = {.max_batch = 1, .loss = DISTQ_LOSS_MSE};
    float x[6] = {0.1f, 0.2f, NAN, 0.3f, 0.4f, 0.5f}, target[3] = {0};
    TEST_OK(distq_qat_create(lg, &qo, &q));
    TEST_OK(distq_trainer_create(lg, &lopts, &lt));
    TEST_OK(distq_trainer_attach_qat(lt, q));
    TEST_ERR(distq_trainer_step(lt, x, 1, NULL, target, 1, NULL), DISTQ_ERR_INVALID_ARG, "value 'x' holds NaN or Inf");
    distq_trainer_destroy(lt);
    distq_qat_destroy(q);
    distq_graph_destroy(lg);

    /* a trainer of another graph */
    distq_graph *a = linear_graph(), *b = conv_bn_graph(0);
    distq_trainer *t = NULL;
    distq_train_opts opts = {.max_batch = 2, .loss = DISTQ_LOSS_MSE};
    TEST_OK(distq_qat_create(a, &qo, &q));
    TEST_OK(distq_trainer_create(b, &opts, &t));
    TEST_ERR(distq_trainer_attach_qat(t, q), DISTQ_ERR_INVALID_ARG, "not the one QAT was planned for");
    distq_trainer_destroy(t);
    distq_qat_destroy(q);
    distq_graph_destroy(a);
    distq_graph_destroy(b);
}

int main(void)
{
    static const test_case cases[] = {
        {"linear: fake-quant forward, STE mask, moving average", test_linear_fake_quant_and_ste},
        {"conv-bn QAT gradient vs central differences", test_conv_bn_gradient},
        {"fmnist_cnn: on-grid values, convert, int8 vs ref and fake-quant", test_fmnist_convert},
        {"observer state and checkpoints", test_state_checkpoint},
        {"NaN on this rank or another", test_nan_across_ranks},
        {"errors", test_errors},
    };
    return test_run_suite("qat", cases, (int)(sizeof cases / sizeof cases[0]));
}
