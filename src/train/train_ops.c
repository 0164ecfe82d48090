/*
 * Training kernels, forward and backward, one pair per op, NCHW f32. The
 * forward computes what src/backend/ref/exec_ref.c computes (eval mode is
 * the same op by op); training mode differs only in batch_norm.
 *
 * conv2d runs on oneDNN's primitives (backend/onednn/onednn_train.c) unless the trainer was
 * made with plain_kernels; its plain path here (im2col + distq_sgemm) is the
 * reference. linear is distq_sgemm; everything else is plain loops. OpenMP parallelises over images (conv2d), channels (batch_norm) or
 * elements, always with the trainer's fixed team size so the per-thread
 * scratch suffices. Schedules are dynamic, so that on cores shared with
 * other processes a running thread takes work a descheduled one has not
 * started; no result depends on which thread computed it (conv weight
 * gradients are summed per fixed chunk of images, in chunk order).
 *
 * Backward writes input gradients through distq_train_grad_out(): the first
 * consumer of a value overwrites its buffer, later ones add, so nothing is
 * zeroed per step. Parameter gradients are always added (t->grads is zeroed
 * once per step), so a parameter shared by two nodes works.
 *
 * Data parallelism: the only cross-image couplings are batch_norm's batch
 * statistics, which go through t->ranks (see distq/train.h).
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "train/train_impl.h"

/* Elements per dynamically scheduled piece of an elementwise loop. */
#define ELEM_CHUNK 16384

static const distq_tensor *node_param(const distq_trainer *t, const distq_node *nd, int slot)
{
    return nd->params[slot] >= 0 ? &t->g->params[nd->params[slot]] : NULL;
}

static float *param_data(const distq_trainer *t, const distq_node *nd, int slot)
{
    const distq_tensor *p = node_param(t, nd, slot);
    return p ? p->data : NULL;
}

/* The weight a conv2d / linear computes with: the fake-quantized one under QAT. */
static const float *weight_data(const distq_trainer *t, const distq_node *nd)
{
    const float *wq = t->nodes[nd - t->g->nodes].wq;
    return wq ? wq : param_data(t, nd, DISTQ_PARAM_WEIGHT);
}

/* Gradient of the param in slot, or NULL if the slot is empty. */
static float *param_grad(const distq_trainer *t, const distq_node *nd, int slot)
{
    int p = nd->params[slot];
    return p >= 0 && t->grad_off[p] >= 0 ? t->grads + t->grad_off[p] : NULL;
}

static int64_t per_image(const distq_trainer *t, int v)
{
    return distq_value_numel(&t->g->values[v], 1);
}

/* Sums x[0..n) and x^2 (after subtracting shift) in blocks of 256: 8 float
 * lanes within a block (vectorizes without -ffast-math), double across
 * blocks. */
static void block_sums(const float *x, int64_t n, float shift, double *s, double *ss)
{
    double S = 0.0, SS = 0.0;
    for (int64_t b = 0; b < n; b += 256) {
        int64_t e = n - b < 256 ? n : b + 256;
        float a[8] = {0}, q[8] = {0};
        int64_t i = b;
        for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; j++) {
                float d = x[i + j] - shift;
                a[j] += d;
                q[j] += d * d;
            }
        for (; i < e; i++) {
            float d = x[i] - shift;
            a[0] += d;
            q[0] += d * d;
        }
        for (int j = 0; j < 8; j++) {
            S += a[j];
            SS += q[j];
        }
    }
    *s += S;
    *ss += SS;
}

/* --- conv2d ---------------------------------------------------------------
 * Per image and group: col (ICg*KH*KW, OH*OW) = im2col(x), y = W_g col.
 * Backward: dW_g += dy col^T (per-thread partials, summed after), dcol =
 * W_g^T dy, dx += col2im(dcol). A 1x1, stride 1, unpadded conv uses x as col.
 */
typedef struct {
    int64_t C, H, W, OC, OH, OW, KH, KW, G, ICg, OCg, K, OHW;
    int direct;
} conv_geom;

static conv_geom conv_geometry(const distq_trainer *t, const distq_node *nd)
{
    const distq_value *xv = &t->g->values[nd->inputs[0]], *yv = &t->g->values[nd->output];
    const distq_tensor *w = node_param(t, nd, DISTQ_PARAM_WEIGHT);
    const distq_attrs *a = &nd->attr;
    conv_geom c = {.C = xv->dims[1], .H = xv->dims[2], .W = xv->dims[3], .OC = yv->dims[1],
                   .OH = yv->dims[2], .OW = yv->dims[3], .KH = w->dims[2], .KW = w->dims[3],
                   .G = a->groups};
    c.ICg = c.C / c.G;
    c.OCg = c.OC / c.G;
    c.K = c.ICg * c.KH * c.KW;
    c.OHW = c.OH * c.OW;
    c.direct = c.KH == 1 && c.KW == 1 && a->stride[0] == 1 && a->stride[1] == 1 &&
               a->padding[0] == 0 && a->padding[1] == 0;
    return c;
}

/* Output columns [*lo, *hi) whose input column o * s - p + k * d is inside [0, W). */
static void valid_range(int64_t OW, int64_t W, int64_t s, int64_t p, int64_t kd, int64_t *lo,
                        int64_t *hi)
{
    int64_t l = 0, h = OW;
    while (l < OW && l * s - p + kd < 0) l++;
    while (h > l && (h - 1) * s - p + kd >= W) h--;
    *lo = l;
    *hi = h;
}

/* x (ICg, H, W) of one image and group -> col (ICg*KH*KW, OH*OW) */
static void im2col(const float *x, const conv_geom *c, const distq_attrs *a, float *col)
{
    for (int64_t ic = 0; ic < c->ICg; ic++)
        for (int64_t kh = 0; kh < c->KH; kh++)
            for (int64_t kw = 0; kw < c->KW; kw++) {
                float *row = col + ((ic * c->KH + kh) * c->KW + kw) * c->OHW;
                int64_t lo, hi, kwd = kw * a->dilation[1];
                valid_range(c->OW, c->W, a->stride[1], a->padding[1], kwd, &lo, &hi);
                for (int64_t oh = 0; oh < c->OH; oh++) {
                    float *r = row + oh * c->OW;
                    int64_t ih = oh * a->stride[0] - a->padding[0] + kh * a->dilation[0];
                    if (ih < 0 || ih >= c->H) {
                        memset(r, 0, (size_t)c->OW * sizeof *r);
                        continue;
                    }
                    const float *xr = x + (ic * c->H + ih) * c->W - a->padding[1] + kwd;
                    for (int64_t ow = 0; ow < lo; ow++) r[ow] = 0.0f;
                    if (a->stride[1] == 1)
                        memcpy(r + lo, xr + lo, (size_t)(hi - lo) * sizeof *r);
                    else
                        for (int64_t ow = lo; ow < hi; ow++) r[ow] = xr[ow * a->stride[1]];
                    for (int64_t ow = hi; ow < c->OW; ow++) r[ow] = 0.0f;
                }
            }
}

/* dx (ICg, H, W) += col2im(dcol (ICg*KH*KW, OH*OW)) */
static void col2im(const float *dcol, const conv_geom *c, const distq_attrs *a, float *dx)
{
    for (int64_t ic = 0; ic < c->ICg; ic++)
        for (int64_t kh = 0; kh < c->KH; kh++)
            for (int64_t kw = 0; kw < c->KW; kw++) {
                const float *row = dcol + ((ic * c->KH + kh) * c->KW + kw) * c->OHW;
                int64_t lo, hi, kwd = kw * a->dilation[1];
                valid_range(c->OW, c->W, a->stride[1], a->padding[1], kwd, &lo, &hi);
                for (int64_t oh = 0; oh < c->OH; oh++) {
                    int64_t ih = oh * a->stride[0] - a->padding[0] + kh * a->dilation[0];
                    if (ih < 0 || ih >= c->H) continue;
                    const float *r = row + oh * c->OW;
                    float *xr = dx + (ic * c->H + ih) * c->W - a->padding[1] + kwd;
                    if (a->stride[1] == 1)
                        for (int64_t ow = lo; ow < hi; ow++) xr[ow] += r[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) xr[ow * a->stride[1]] += r[ow];
                }
            }
}

static float *thread_scratch(const distq_trainer *t)
{
    return t->scratch + (size_t)omp_get_thread_num() * t->scratch_floats;
}

/* x (N, C, H, W) * w (OC, C/G, KH, KW) + b -> y (N, OC, OH, OW) */
static void conv2d_fwd(distq_trainer *t, const distq_node *nd, int64_t N)
{
    conv_geom c = conv_geometry(t, nd);
    const float *x = t->act[nd->inputs[0]], *w = weight_data(t, nd);
    const float *b = param_data(t, nd, DISTQ_PARAM_BIAS);
    float *y = t->act[nd->output];
#pragma omp parallel for schedule(dynamic, 1) num_threads(t->nthreads)
    for (int64_t n = 0; n < N; n++) {
        float *work = thread_scratch(t), *col = work + distq_sgemm_work_floats();
        for (int64_t g = 0; g < c.G; g++) {
            const float *xg = x + (n * c.C + g * c.ICg) * c.H * c.W;
            float *yg = y + (n * c.OC + g * c.OCg) * c.OHW;
            if (!c.direct) im2col(xg, &c, &nd->attr, col);
            distq_sgemm(0, 0, c.OCg, c.OHW, c.K, w + g * c.OCg * c.K, c.K, c.direct ? xg : col,
                        c.OHW, 0, yg, c.OHW, work);
            for (int64_t oc = 0; b && oc < c.OCg; oc++)
                for (int64_t i = 0; i < c.OHW; i++) yg[oc * c.OHW + i] += b[g * c.OCg + oc];
        }
    }
}

static void conv2d_bwd(distq_trainer *t, const distq_node *nd, int64_t N)
{
    conv_geom c = conv_geometry(t, nd);
    const float *x = t->act[nd->inputs[0]], *w = weight_data(t, nd);
    const float *dy = t->dact[nd->output];
    float *dw = param_grad(t, nd, DISTQ_PARAM_WEIGHT), *db = param_grad(t, nd, DISTQ_PARAM_BIAS);
    int acc_dx = 0;
    float *dx = distq_train_grad_out(t, nd->inputs[0], &acc_dx);
    int64_t WN = c.OC * c.K; /* weight numel; the partial bias follows it */
    /* Images are cut into fixed chunks, each with its own partial dW, summed in
     * chunk order: the result does not depend on which thread ran which chunk. */
    int64_t chunks = N < t->n_chunks ? N : t->n_chunks;
#pragma omp parallel num_threads(t->nthreads)
    {
        float *work = thread_scratch(t), *col = work + distq_sgemm_work_floats();
        float *dcol = col + t->col_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < chunks; ch++) {
            float *pdw = t->partials + (size_t)ch * t->partial_floats, *pdb = pdw + WN;
            memset(pdw, 0, (size_t)(WN + c.OC) * sizeof *pdw);
            for (int64_t n = N * ch / chunks; n < N * (ch + 1) / chunks; n++) {
                if (dx && !acc_dx) memset(dx + n * c.C * c.H * c.W, 0, (size_t)(c.C * c.H * c.W) * sizeof *dx);
                for (int64_t g = 0; g < c.G; g++) {
                    const float *xg = x + (n * c.C + g * c.ICg) * c.H * c.W;
                    const float *dyg = dy + (n * c.OC + g * c.OCg) * c.OHW;
                    const float *wg = w + g * c.OCg * c.K;
                    if (dw) {
                        if (!c.direct) im2col(xg, &c, &nd->attr, col);
                        distq_sgemm(0, 1, c.OCg, c.K, c.OHW, dyg, c.OHW, c.direct ? xg : col, c.OHW, 1,
                                    pdw + g * c.OCg * c.K, c.K, work);
                    }
                    for (int64_t oc = 0; db && oc < c.OCg; oc++) {
                        float s = 0.0f;
                        for (int64_t i = 0; i < c.OHW; i++) s += dyg[oc * c.OHW + i];
                        pdb[g * c.OCg + oc] += s;
                    }
                    if (!dx) continue;
                    float *dxg = dx + (n * c.C + g * c.ICg) * c.H * c.W;
                    if (c.direct) {
                        distq_sgemm(1, 0, c.K, c.OHW, c.OCg, wg, c.K, dyg, c.OHW, 1, dxg, c.OHW, work);
                    } else {
                        distq_sgemm(1, 0, c.K, c.OHW, c.OCg, wg, c.K, dyg, c.OHW, 0, dcol, c.OHW, work);
                        col2im(dcol, &c, &nd->attr, dxg);
                    }
                }
            }
        }
    }
#pragma omp parallel for schedule(dynamic, 4096) num_threads(t->nthreads)
    for (int64_t i = 0; i < WN + c.OC; i++) {
        float s = 0.0f;
        for (int64_t ch = 0; ch < chunks; ch++) s += t->partials[(size_t)ch * t->partial_floats + i];
        if (i < WN) {
            if (dw) dw[i] += s;
        } else if (db) {
            db[i - WN] += s;
        }
    }
}

/* --- batch_norm -------------------------------------------------------------
 * Training: mean and biased variance over (N, H, W) of the global batch, from
 * per-channel sums of (x - running_mean) and its square (the shift is the same
 * on every rank and keeps E[d^2] - E[d]^2 from cancelling), summed over ranks
 * by the reducer with the local count. Backward needs the global sums of dy and
 * dy * xhat: dx = gamma * invstd * (dy - sum(dy) / M - xhat * sum(dy xhat) / M).
 */
static distq_status reduce_sum(distq_trainer *t, const distq_node *nd, double *v, int n)
{
    if (!t->ranks.sum_f64) return DISTQ_OK;
    distq_status st = t->ranks.sum_f64(t->ranks.ctx, v, n);
    if (st != DISTQ_OK)
        return distq_error_set(st, "trainer: node '%s': summing batch statistics over ranks: %s",
                               nd->name, distq_error_message());
    return DISTQ_OK;
}

static distq_status batch_norm_fwd(distq_trainer *t, int i, int64_t N, int training)
{
    const distq_node *nd = &t->g->nodes[i];
    distq_train_node *s = &t->nodes[i];
    const distq_value *xv = &t->g->values[nd->inputs[0]];
    const float *x = t->act[nd->inputs[0]];
    float *y = t->act[nd->output];
    const float *gamma = param_data(t, nd, DISTQ_PARAM_WEIGHT), *beta = param_data(t, nd, DISTQ_PARAM_BIAS);
    float *rmean = param_data(t, nd, DISTQ_PARAM_RUNNING_MEAN), *rvar = param_data(t, nd, DISTQ_PARAM_RUNNING_VAR);
    int64_t C = xv->dims[1], HW = per_image(t, nd->inputs[0]) / C;
    if (!training || t->bn_frozen) {
        /* The ref executor's (x - mean) / sqrt(var + eps) * gamma + beta, as x * scale + shift.
         * Frozen BN (QAT) trains through this affine map: backward needs mean and invstd. */
        for (int64_t c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(rvar[c] + nd->attr.eps);
            s->mean[c] = rmean[c];
            s->invstd[c] = inv;
            s->scale[c] = inv * (gamma ? gamma[c] : 1.0f);
            s->shift[c] = (beta ? beta[c] : 0.0f) - rmean[c] * s->scale[c];
        }
    } else {
        double *red = t->red;
#pragma omp parallel for schedule(dynamic, 1) num_threads(t->nthreads)
        for (int64_t c = 0; c < C; c++) {
            double sum = 0.0, sumsq = 0.0;
            for (int64_t n = 0; n < N; n++) block_sums(x + (n * C + c) * HW, HW, rmean[c], &sum, &sumsq);
            red[c] = sum;
            red[C + c] = sumsq;
        }
        red[2 * C] = (double)(N * HW);
        distq_status st = reduce_sum(t, nd, red, (int)(2 * C + 1));
        if (st) return st;
        double M = red[2 * C];
        if (!(M > 1.0))
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "trainer: node '%s' (batch_norm): expected more than 1 value per "
                                   "channel when training, got %.0f", nd->name, M);
        s->count = M;
        double mom = nd->attr.momentum;
        for (int64_t c = 0; c < C; c++) {
            double d = red[c] / M, var = red[C + c] / M - d * d;
            if (var < 0.0) var = 0.0;
            double mean = rmean[c] + d, invstd = 1.0 / sqrt(var + nd->attr.eps);
            s->mean[c] = (float)mean;
            s->invstd[c] = (float)invstd;
            s->scale[c] = (float)(invstd * (gamma ? gamma[c] : 1.0f));
            s->shift[c] = (float)((beta ? beta[c] : 0.0f) - mean * invstd * (gamma ? gamma[c] : 1.0f));
            rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * mean);
            rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * var * M / (M - 1.0));
        }
        const distq_tensor *nbt = node_param(t, nd, DISTQ_PARAM_NUM_BATCHES_TRACKED);
        if (nbt) ((int64_t *)nbt->data)[0] += 1;
    }
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
    for (int64_t nc = 0; nc < N * C; nc++) {
        float a = s->scale[nc % C], b = s->shift[nc % C];
        for (int64_t k = 0; k < HW; k++) y[nc * HW + k] = x[nc * HW + k] * a + b;
    }
    return DISTQ_OK;
}

static distq_status batch_norm_bwd(distq_trainer *t, int i, int64_t N)
{
    const distq_node *nd = &t->g->nodes[i];
    const distq_train_node *s = &t->nodes[i];
    const float *x = t->act[nd->inputs[0]], *dy = t->dact[nd->output];
    const float *gamma = param_data(t, nd, DISTQ_PARAM_WEIGHT);
    float *dgamma = param_grad(t, nd, DISTQ_PARAM_WEIGHT), *dbeta = param_grad(t, nd, DISTQ_PARAM_BIAS);
    int64_t C = t->g->values[nd->inputs[0]].dims[1], HW = per_image(t, nd->inputs[0]) / C;
    double *red = t->red;
#pragma omp parallel for schedule(dynamic, 1) num_threads(t->nthreads)
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        float mean = s->mean[c], invstd = s->invstd[c];
        for (int64_t n = 0; n < N; n++) {
            const float *xp = x + (n * C + c) * HW, *dp = dy + (n * C + c) * HW;
            float a[8] = {0}, q[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= HW; k += 8)
                for (int j = 0; j < 8; j++) {
                    a[j] += dp[k + j];
                    q[j] += dp[k + j] * (xp[k + j] - mean);
                }
            for (; k < HW; k++) {
                a[0] += dp[k];
                q[0] += dp[k] * (xp[k] - mean);
            }
            for (int j = 0; j < 8; j++) {
                sdy += a[j];
                sdyx += (double)q[j] * invstd;
            }
        }
        red[c] = sdy;
        red[C + c] = sdyx;
        /* Local sums: the caller's all-reduce of the gradients adds the ranks. */
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
    }
    int acc = 0;
    float *dx = distq_train_grad_out(t, nd->inputs[0], &acc);
    if (!dx) return DISTQ_OK; /* the ranks still agree: all skip the reduction */
    if (t->bn_frozen) {
        /* Running statistics are constants: dx = gamma * invstd * dy, per image. */
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
        for (int64_t nc = 0; nc < N * C; nc++) {
            float k = s->scale[nc % C];
            const float *dp = dy + nc * HW;
            float *dxp = dx + nc * HW;
            if (acc)
                for (int64_t j = 0; j < HW; j++) dxp[j] += k * dp[j];
            else
                for (int64_t j = 0; j < HW; j++) dxp[j] = k * dp[j];
        }
        return DISTQ_OK;
    }
    distq_status st = reduce_sum(t, nd, red, (int)(2 * C));
    if (st) return st;
    double M = s->count;
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t c = nc % C;
        float k = (gamma ? gamma[c] : 1.0f) * s->invstd[c], mean = s->mean[c], invstd = s->invstd[c];
        float mdy = (float)(red[c] / M), mdyx = (float)(red[C + c] / M);
        const float *xp = x + nc * HW, *dp = dy + nc * HW;
        float *dxp = dx + nc * HW;
        if (acc)
            for (int64_t j = 0; j < HW; j++) dxp[j] += k * (dp[j] - mdy - (xp[j] - mean) * invstd * mdyx);
        else
            for (int64_t j = 0; j < HW; j++) dxp[j] = k * (dp[j] - mdy - (xp[j] - mean) * invstd * mdyx);
    }
    return DISTQ_OK;
}

/* --- elementwise ------------------------------------------------------------ */

/* relu and clip (relu6, hardtanh): y = clamp(x, lo, hi); relu is hi = +inf. */
static void clamp_fwd(distq_trainer *t, const distq_node *nd, int64_t count, float lo, float hi)
{
    const float *x = t->act[nd->inputs[0]];
    float *y = t->act[nd->output];
#pragma omp parallel for schedule(dynamic, ELEM_CHUNK) num_threads(t->nthreads)
    for (int64_t i = 0; i < count; i++) y[i] = x[i] > lo ? (x[i] < hi ? x[i] : hi) : lo;
}

/* dx = dy where lo < x < hi, as PyTorch's threshold_backward (relu) and
 * hardtanh_backward (clip) do, read from the input: under QAT the output
 * buffer has been fake-quantized in place, and a small y rounded to lo must
 * still pass its gradient (PyTorch's module sees the output before the fake
 * quant). */
static void clamp_bwd(distq_trainer *t, const distq_node *nd, int64_t count, float lo, float hi)
{
    const float *x = t->act[nd->inputs[0]], *dy = t->dact[nd->output];
    int acc = 0;
    float *dx = distq_train_grad_out(t, nd->inputs[0], &acc);
    if (!dx) return;
    /* Two loops, not "acc ? dx + g : g": a branch in the loop stops gcc vectorizing it. */
    if (acc) {
#pragma omp parallel for schedule(dynamic, ELEM_CHUNK) num_threads(t->nthreads)
        for (int64_t i = 0; i < count; i++) {
            float g = dy[i]; /* loaded unconditionally, so the select vectorizes */
            dx[i] += x[i] > lo && x[i] < hi ? g : 0.0f;
        }
    } else {
#pragma omp parallel for schedule(dynamic, ELEM_CHUNK) num_threads(t->nthreads)
        for (int64_t i = 0; i < count; i++) {
            float g = dy[i];
            dx[i] = x[i] > lo && x[i] < hi ? g : 0.0f;
        }
    }
}

static void add_fwd(distq_trainer *t, const distq_node *nd, int64_t count)
{
    const float *a = t->act[nd->inputs[0]], *b = t->act[nd->inputs[1]];
    float *y = t->act[nd->output];
#pragma omp parallel for schedule(dynamic, ELEM_CHUNK) num_threads(t->nthreads)
    for (int64_t i = 0; i < count; i++) y[i] = a[i] + b[i];
}

static void pass_grad(distq_trainer *t, int v, const float *dy, int64_t count)
{
    int acc = 0;
    float *dx = distq_train_grad_out(t, v, &acc);
    if (!dx) return;
    if (acc) {
#pragma omp parallel for schedule(dynamic, ELEM_CHUNK) num_threads(t->nthreads)
        for (int64_t i = 0; i < count; i++) dx[i] += dy[i];
    } else {
#pragma omp parallel for schedule(dynamic, ELEM_CHUNK) num_threads(t->nthreads)
        for (int64_t i = 0; i < count; i++) dx[i] = dy[i];
    }
}

/* --- pooling ----------------------------------------------------------------- */

/* Padded cells never win; the first maximum in (kh, kw) order does, as in
 * PyTorch's CPU kernel, and its position is kept for backward. */
static void max_pool2d_fwd(distq_trainer *t, int i, int64_t N)
{
    const distq_node *nd = &t->g->nodes[i];
    const distq_value *xv = &t->g->values[nd->inputs[0]], *yv = &t->g->values[nd->output];
    const distq_attrs *a = &nd->attr;
    const float *x = t->act[nd->inputs[0]];
    float *y = t->act[nd->output];
    int32_t *arg = t->nodes[i].argmax;
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    int64_t KH = a->kernel[0], KW = a->kernel[1];
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
    for (int64_t nc = 0; nc < N * C; nc++) {
        const float *p = x + nc * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            /* The window clipped to the input; never empty (padding <= kernel / 2). */
            int64_t h0 = oh * a->stride[0] - a->padding[0];
            int64_t kh0 = h0 < 0 ? -h0 : 0, kh1 = H - h0 < KH ? H - h0 : KH;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * a->stride[1] - a->padding[1];
                int64_t kw0 = w0 < 0 ? -w0 : 0, kw1 = W - w0 < KW ? W - w0 : KW;
                int64_t at = (h0 + kh0) * W + w0 + kw0;
                float best = p[at];
                for (int64_t kh = kh0; kh < kh1; kh++)
                    for (int64_t kw = kw0; kw < kw1; kw++) {
                        int64_t k = (h0 + kh) * W + w0 + kw;
                        if (p[k] > best) { /* strict: the first maximum wins */
                            best = p[k];
                            at = k;
                        }
                    }
                y[(nc * OH + oh) * OW + ow] = best;
                arg[(nc * OH + oh) * OW + ow] = (int32_t)at;
            }
        }
    }
}

static void max_pool2d_bwd(distq_trainer *t, int i, int64_t N)
{
    const distq_node *nd = &t->g->nodes[i];
    const distq_value *xv = &t->g->values[nd->inputs[0]], *yv = &t->g->values[nd->output];
    int64_t C = xv->dims[1], HW = xv->dims[2] * xv->dims[3], OHW = yv->dims[2] * yv->dims[3];
    const float *dy = t->dact[nd->output];
    const int32_t *arg = t->nodes[i].argmax;
    int acc = 0;
    float *dx = distq_train_grad_out(t, nd->inputs[0], &acc);
    if (!dx) return;
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
    for (int64_t nc = 0; nc < N * C; nc++) {
        float *d = dx + nc * HW;
        if (!acc) memset(d, 0, (size_t)HW * sizeof *d);
        for (int64_t o = 0; o < OHW; o++) d[arg[nc * OHW + o]] += dy[nc * OHW + o];
    }
}

static void avg_pool_fwd(distq_trainer *t, const distq_node *nd, int64_t N)
{
    const distq_value *xv = &t->g->values[nd->inputs[0]];
    const float *x = t->act[nd->inputs[0]];
    float *y = t->act[nd->output];
    int64_t HW = xv->dims[2] * xv->dims[3];
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
    for (int64_t nc = 0; nc < N * xv->dims[1]; nc++) {
        double sum = 0.0;
        for (int64_t k = 0; k < HW; k++) sum += x[nc * HW + k];
        y[nc] = (float)(sum / (double)HW);
    }
}

static void avg_pool_bwd(distq_trainer *t, const distq_node *nd, int64_t N)
{
    const distq_value *xv = &t->g->values[nd->inputs[0]];
    const float *dy = t->dact[nd->output];
    int64_t HW = xv->dims[2] * xv->dims[3];
    int acc = 0;
    float *dx = distq_train_grad_out(t, nd->inputs[0], &acc);
    if (!dx) return;
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
    for (int64_t nc = 0; nc < N * xv->dims[1]; nc++) {
        float g = dy[nc] / (float)HW;
        if (acc)
            for (int64_t k = 0; k < HW; k++) dx[nc * HW + k] += g;
        else
            for (int64_t k = 0; k < HW; k++) dx[nc * HW + k] = g;
    }
}

/* --- linear -------------------------------------------------------------------
 * Rows of the output are split between threads, each with its own gemm work. */

/* [*lo, *hi) of [0, n) for the calling thread. */
static void thread_rows(int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t T = omp_get_num_threads(), k = omp_get_thread_num();
    *lo = n * k / T;
    *hi = n * (k + 1) / T;
}

/* x (N, IN) * w^T (OUT, IN) + b -> y (N, OUT) */
static void linear_fwd(distq_trainer *t, const distq_node *nd, int64_t N)
{
    int64_t IN = t->g->values[nd->inputs[0]].dims[1], OUT = t->g->values[nd->output].dims[1];
    const float *x = t->act[nd->inputs[0]], *w = weight_data(t, nd);
    const float *b = param_data(t, nd, DISTQ_PARAM_BIAS);
    float *y = t->act[nd->output];
#pragma omp parallel num_threads(t->nthreads)
    {
        int64_t lo, hi;
        thread_rows(N, &lo, &hi);
        distq_sgemm(0, 1, hi - lo, OUT, IN, x + lo * IN, IN, w, IN, 0, y + lo * OUT, OUT, thread_scratch(t));
        for (int64_t n = lo; b && n < hi; n++)
            for (int64_t o = 0; o < OUT; o++) y[n * OUT + o] += b[o];
    }
}

static void linear_bwd(distq_trainer *t, const distq_node *nd, int64_t N)
{
    int64_t IN = t->g->values[nd->inputs[0]].dims[1], OUT = t->g->values[nd->output].dims[1];
    const float *x = t->act[nd->inputs[0]], *w = weight_data(t, nd);
    const float *dy = t->dact[nd->output];
    float *dw = param_grad(t, nd, DISTQ_PARAM_WEIGHT), *db = param_grad(t, nd, DISTQ_PARAM_BIAS);
    int acc = 0;
    float *dx = distq_train_grad_out(t, nd->inputs[0], &acc);
#pragma omp parallel num_threads(t->nthreads)
    {
        float *work = thread_scratch(t);
        int64_t lo, hi;
        thread_rows(OUT, &lo, &hi); /* dW (OUT, IN) += dy^T (OUT, N) x (N, IN), by output rows */
        if (dw) distq_sgemm(1, 0, hi - lo, IN, N, dy + lo, OUT, x, IN, 1, dw + lo * IN, IN, work);
        for (int64_t o = lo; db && o < hi; o++) {
            float s = 0.0f;
            for (int64_t n = 0; n < N; n++) s += dy[n * OUT + o];
            db[o] += s;
        }
        thread_rows(N, &lo, &hi); /* dx (N, IN) = dy (N, OUT) w (OUT, IN), by images */
        if (dx) distq_sgemm(0, 0, hi - lo, IN, OUT, dy + lo * OUT, OUT, w, IN, acc, dx + lo * IN, IN, work);
    }
}

/* --- the kernel table ---------------------------------------------------------
 * One row per op the trainer has: forward (training or eval mode) and
 * backward for node i over N images. An op without a row is refused when the
 * trainer is created (distq_train_check_ops), never reached here. */

static distq_status conv2d_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    const distq_node *nd = &t->g->nodes[i];
    if (t->dnn && N > 0) {
        int b = nd->params[DISTQ_PARAM_BIAS];
        return distq_onednn_conv_train_fwd(t->dnn, t->g, i, N, t->act[nd->inputs[0]], weight_data(t, nd),
                                           b >= 0 ? t->g->params[b].data : NULL, t->act[nd->output]);
    }
    conv2d_fwd(t, nd, N);
    return DISTQ_OK;
}

static distq_status conv2d_bwd_k(distq_trainer *t, int i, int64_t N)
{
    const distq_node *nd = &t->g->nodes[i];
    if (t->dnn && N > 0) {
        int acc = 0;
        float *dx = distq_train_grad_out(t, nd->inputs[0], &acc);
        return distq_onednn_conv_train_bwd(t->dnn, t->g, i, N, t->act[nd->inputs[0]], weight_data(t, nd),
                                           t->dact[nd->output], dx, acc, param_grad(t, nd, DISTQ_PARAM_WEIGHT),
                                           param_grad(t, nd, DISTQ_PARAM_BIAS), t->nthreads);
    }
    conv2d_bwd(t, nd, N);
    return DISTQ_OK;
}

static int64_t out_count(const distq_trainer *t, int i, int64_t N)
{
    return per_image(t, t->g->nodes[i].output) * N;
}

static distq_status relu_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    clamp_fwd(t, &t->g->nodes[i], out_count(t, i, N), 0.0f, INFINITY);
    return DISTQ_OK;
}

static distq_status relu_bwd_k(distq_trainer *t, int i, int64_t N)
{
    clamp_bwd(t, &t->g->nodes[i], out_count(t, i, N), 0.0f, INFINITY);
    return DISTQ_OK;
}

static distq_status clip_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    const distq_node *nd = &t->g->nodes[i];
    clamp_fwd(t, nd, out_count(t, i, N), nd->attr.min, nd->attr.max);
    return DISTQ_OK;
}

static distq_status clip_bwd_k(distq_trainer *t, int i, int64_t N)
{
    const distq_node *nd = &t->g->nodes[i];
    clamp_bwd(t, nd, out_count(t, i, N), nd->attr.min, nd->attr.max);
    return DISTQ_OK;
}

static distq_status add_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    add_fwd(t, &t->g->nodes[i], out_count(t, i, N));
    return DISTQ_OK;
}

static distq_status add_bwd_k(distq_trainer *t, int i, int64_t N)
{
    const distq_node *nd = &t->g->nodes[i];
    int64_t count = out_count(t, i, N);
    pass_grad(t, nd->inputs[0], t->dact[nd->output], count);
    pass_grad(t, nd->inputs[1], t->dact[nd->output], count);
    return DISTQ_OK;
}

static distq_status max_pool2d_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    max_pool2d_fwd(t, i, N);
    return DISTQ_OK;
}

static distq_status max_pool2d_bwd_k(distq_trainer *t, int i, int64_t N)
{
    max_pool2d_bwd(t, i, N);
    return DISTQ_OK;
}

static distq_status avg_pool_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    avg_pool_fwd(t, &t->g->nodes[i], N);
    return DISTQ_OK;
}

static distq_status avg_pool_bwd_k(distq_trainer *t, int i, int64_t N)
{
    avg_pool_bwd(t, &t->g->nodes[i], N);
    return DISTQ_OK;
}

/* flatten's output aliases its input (NCHW is (N, C*H*W)), its gradient too */
static distq_status flatten_fwd_k(distq_trainer *t, int i, int64_t N, int training) { return DISTQ_OK; }
static distq_status flatten_bwd_k(distq_trainer *t, int i, int64_t N) { return DISTQ_OK; }

static distq_status linear_fwd_k(distq_trainer *t, int i, int64_t N, int training)
{
    linear_fwd(t, &t->g->nodes[i], N);
    return DISTQ_OK;
}

static distq_status linear_bwd_k(distq_trainer *t, int i, int64_t N)
{
    linear_bwd(t, &t->g->nodes[i], N);
    return DISTQ_OK;
}

typedef struct {
    distq_status (*fwd)(distq_trainer *t, int i, int64_t N, int training);
    distq_status (*bwd)(distq_trainer *t, int i, int64_t N);
} train_kernel;

static const train_kernel train_kernels[DISTQ_OP_COUNT] = {
    [DISTQ_OP_CONV2D] = {conv2d_fwd_k, conv2d_bwd_k},
    [DISTQ_OP_BATCH_NORM] = {batch_norm_fwd, batch_norm_bwd},
    [DISTQ_OP_RELU] = {relu_fwd_k, relu_bwd_k},
    [DISTQ_OP_CLIP] = {clip_fwd_k, clip_bwd_k},
    [DISTQ_OP_ADD] = {add_fwd_k, add_bwd_k},
    [DISTQ_OP_MAX_POOL2D] = {max_pool2d_fwd_k, max_pool2d_bwd_k},
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = {avg_pool_fwd_k, avg_pool_bwd_k},
    [DISTQ_OP_FLATTEN] = {flatten_fwd_k, flatten_bwd_k},
    [DISTQ_OP_LINEAR] = {linear_fwd_k, linear_bwd_k},
};

int distq_train_has_kernel(distq_op op)
{
    return (int)op >= 0 && op < DISTQ_OP_COUNT && train_kernels[op].fwd != NULL;
}

distq_status distq_train_check_ops(const distq_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        if (n->op == DISTQ_OP_LINEAR && g->values[n->inputs[0]].ndim != 2)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "trainer: node '%s' (linear) reads a rank-%d input; the trainer's linear "
                                   "takes (batch, features) only", n->name, g->values[n->inputs[0]].ndim);
        int windowed = n->op == DISTQ_OP_CONV2D || n->op == DISTQ_OP_MAX_POOL2D || n->op == DISTQ_OP_AVG_POOL2D;
        if (windowed && (distq_pad_end(&n->attr, 0) != n->attr.padding[0] ||
                         distq_pad_end(&n->attr, 1) != n->attr.padding[1]))
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "trainer: node '%s' (%s) pads asymmetrically; the trainer's windows pad "
                                   "both sides equally", n->name, distq_op_name(n->op));
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (!train_kernels[g->nodes[i].op].fwd)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "trainer: node '%s': op %s has no training kernel ('distq ops' "
                                   "lists the ops the trainer has)",
                                   g->nodes[i].name, distq_op_name(g->nodes[i].op));
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        if (n->op == DISTQ_OP_ADD && n->n_inputs != 2)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "trainer: node '%s': add with a constant operand has no training kernel", n->name);
        int head = n->op == DISTQ_OP_CONV2D || n->op == DISTQ_OP_LINEAR;
        if (head && (n->attr.post_relu || n->n_inputs > 1 ||
                     g->values[n->inputs[0]].dtype != DISTQ_DTYPE_F32))
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "trainer: node '%s' is in quantized form (u8 input or fused "
                                   "post-ops); train the float model",
                                   n->name);
    }
    return DISTQ_OK;
}

distq_status distq_train_forward_node(distq_trainer *t, int i, int64_t N, int training)
{
    return train_kernels[t->g->nodes[i].op].fwd(t, i, N, training);
}

distq_status distq_train_backward_node(distq_trainer *t, int i, int64_t N)
{
    return train_kernels[t->g->nodes[i].op].bwd(t, i, N);
}
