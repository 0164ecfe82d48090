/*
 * The plain-C int8 reference executor: the oracle for the oneDNN int8 graph.
 * Integer arithmetic as the recipe specifies (spec §3.7, §5.3, §5.4):
 *   acc = sum (x_q - x_zp) * w_q                      s32, padding is real 0
 *   y   = x_s * w_s[oc] * acc + bias[oc]              real domain (double here)
 *   y  += r_s * (r_q - r_zp)                          fused residual add (sum)
 *   y   = max(y, 0)                                   fused relu
 *   q   = clamp(round_ne(y * (1/y_s)) + y_zp, 0, qmax) or y as f32 for f32 outputs
 *         (qmax 255, or 127 with reduce_range)
 * Pools stay in u8 with their input's qparams. NCHW, obvious loops.
 */
#include <math.h>
#include <string.h>

#include "backend/exec_impl.h"
#include "distq/observers.h"
#include "distq/tensor.h"

typedef struct {
    const distq_qgraph *q; /* borrowed copy owned below */
    distq_qgraph *own;
    int64_t N;
    void **vals; /* per qvalue: u8 or f32 buffer, N x numel */
} qref_state;

static int64_t numel(const distq_qvalue *v) { return distq_dims_numel(v->ndim, v->dims); }

/* Final requantization of a real value to the dst value's dtype. */
static void store(const distq_qvalue *d, void *dst, int64_t i, double y)
{
    if (d->dtype == DISTQ_DTYPE_F32) {
        ((float *)dst)[i] = (float)y;
        return;
    }
    ((uint8_t *)dst)[i] = (uint8_t)distq_quantize_value((float)y, 1.0f / d->scale, d->zero_point, 0, d->quant_max);
}

static double residual(const qref_state *s, const distq_qnode *n, int64_t i)
{
    if (n->sum_src < 0) return 0.0;
    const distq_qvalue *r = &s->q->values[n->sum_src];
    return (double)r->scale * (((const uint8_t *)s->vals[n->sum_src])[i] - r->zero_point);
}

static void qconv_ref(const qref_state *s, const distq_qnode *n)
{
    const distq_qvalue *xv = &s->q->values[n->src], *yv = &s->q->values[n->dst];
    const uint8_t *x = s->vals[n->src];
    const distq_attrs *a = &n->attr;
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3];
    int64_t OC = yv->dims[1], OH = yv->dims[2], OW = yv->dims[3];
    int64_t KH = n->wdims[2], KW = n->wdims[3], G = a->groups, ICg = C / G, OCg = OC / G;
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t oc = 0; oc < OC; oc++) {
            int64_t g = oc / OCg;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int32_t acc = 0;
                    for (int64_t ic = 0; ic < ICg; ic++)
                        for (int64_t kh = 0; kh < KH; kh++) {
                            int64_t ih = oh * a->stride[0] - a->padding[0] + kh * a->dilation[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t iw = ow * a->stride[1] - a->padding[1] + kw * a->dilation[1];
                                if (iw < 0 || iw >= W) continue;
                                int32_t xq = x[((nb * C + g * ICg + ic) * H + ih) * W + iw];
                                acc += (xq - xv->zero_point) * n->weight[((oc * ICg + ic) * KH + kh) * KW + kw];
                            }
                        }
                    int64_t o = ((nb * OC + oc) * OH + oh) * OW + ow;
                    double y = (double)xv->scale * n->weight_scale[oc] * acc + (n->bias ? n->bias[oc] : 0.0);
                    y += residual(s, n, o);
                    if (n->relu && y < 0) y = 0;
                    store(yv, s->vals[n->dst], o, y);
                }
        }
}

static void qlinear_ref(const qref_state *s, const distq_qnode *n)
{
    const distq_qvalue *xv = &s->q->values[n->src], *yv = &s->q->values[n->dst];
    const uint8_t *x = s->vals[n->src];
    int64_t IN = n->wdims[1], OUT = n->wdims[0];
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t o = 0; o < OUT; o++) {
            int32_t acc = 0;
            for (int64_t i = 0; i < IN; i++) acc += (x[nb * IN + i] - xv->zero_point) * n->weight[o * IN + i];
            double y = (double)xv->scale * n->weight_scale[o] * acc + (n->bias ? n->bias[o] : 0.0);
            if (n->relu && y < 0) y = 0;
            store(yv, s->vals[n->dst], nb * OUT + o, y);
        }
}

static void qmaxpool_ref(const qref_state *s, const distq_qnode *n)
{
    const distq_qvalue *xv = &s->q->values[n->src], *yv = &s->q->values[n->dst];
    const uint8_t *x = s->vals[n->src];
    uint8_t *y = s->vals[n->dst];
    const distq_attrs *a = &n->attr;
    int64_t H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    for (int64_t nc = 0; nc < s->N * xv->dims[1]; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int best = -1; /* padding never wins */
                for (int64_t kh = 0; kh < a->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < a->kernel[1]; kw++) {
                        int64_t ih = oh * a->stride[0] - a->padding[0] + kh;
                        int64_t iw = ow * a->stride[1] - a->padding[1] + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        int v = x[(nc * H + ih) * W + iw];
                        best = v > best ? v : best;
                    }
                y[(nc * OH + oh) * OW + ow] = (uint8_t)best;
            }
}

/* mean((q - zp) * s) * (1/s) + zp == mean(q): average the u8 codes, round half to even. */
static void qavgpool_ref(const qref_state *s, const distq_qnode *n)
{
    const distq_qvalue *xv = &s->q->values[n->src];
    const uint8_t *x = s->vals[n->src];
    uint8_t *y = s->vals[n->dst];
    int64_t HW = xv->dims[2] * xv->dims[3];
    for (int64_t nc = 0; nc < s->N * xv->dims[1]; nc++) {
        int64_t sum = 0;
        for (int64_t i = 0; i < HW; i++) sum += x[nc * HW + i];
        double m = nearbyint((double)sum / (double)HW);
        y[nc] = (uint8_t)(m > 255 ? 255 : m);
    }
}

static void qref_destroy(void *state)
{
    qref_state *s = state;
    if (!s) return;
    for (int i = 0; s->vals && i < s->q->n_values; i++) distq_free(s->vals[i]);
    distq_free(s->vals);
    distq_free(s);
}

static void quantize_ref(const qref_state *s, const distq_qnode *n, int64_t count)
{
    const distq_qvalue *dst = &s->q->values[n->dst];
    for (int64_t k = 0; k < count; k++) store(dst, s->vals[n->dst], k, ((const float *)s->vals[n->src])[k]);
}

static void dequantize_ref(const qref_state *s, const distq_qnode *n, int64_t count)
{
    const distq_qvalue *src = &s->q->values[n->src];
    for (int64_t k = 0; k < count; k++)
        ((float *)s->vals[n->dst])[k] =
            ((float)((const uint8_t *)s->vals[n->src])[k] - (float)src->zero_point) * src->scale;
}

static void qconv_k(const qref_state *s, const distq_qnode *n, int64_t count) { qconv_ref(s, n); }
static void qlinear_k(const qref_state *s, const distq_qnode *n, int64_t count) { qlinear_ref(s, n); }
static void qmaxpool_k(const qref_state *s, const distq_qnode *n, int64_t count) { qmaxpool_ref(s, n); }
static void qavgpool_k(const qref_state *s, const distq_qnode *n, int64_t count) { qavgpool_ref(s, n); }
static void qflatten_k(const qref_state *s, const distq_qnode *n, int64_t count)
{
    memcpy(s->vals[n->dst], s->vals[n->src], (size_t)count); /* u8: one byte each */
}

typedef void (*qref_kernel)(const qref_state *s, const distq_qnode *n, int64_t count);
static const qref_kernel qref_kernels[DISTQ_QOP_COUNT] = {
    [DISTQ_QOP_QUANTIZE] = quantize_ref, [DISTQ_QOP_DEQUANTIZE] = dequantize_ref,
    [DISTQ_QOP_CONV] = qconv_k,          [DISTQ_QOP_LINEAR] = qlinear_k,
    [DISTQ_QOP_MAX_POOL] = qmaxpool_k,   [DISTQ_QOP_AVG_POOL] = qavgpool_k,
    [DISTQ_QOP_FLATTEN] = qflatten_k,
};

static distq_status qref_create(const distq_qgraph *q, int64_t batch, void **state)
{
    qref_state *s = distq_calloc(sizeof *s);
    if (!s) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (int8 ref executor)");
    s->q = q; /* the caller keeps q alive for the executor's lifetime (quant.h) */
    s->N = batch;
    for (int i = 0; i < q->n_nodes; i++) {
        const distq_qnode *n = &q->nodes[i];
        if ((int)n->op < 0 || n->op >= DISTQ_QOP_COUNT || !qref_kernels[n->op]) {
            distq_free(s);
            return distq_backend_no_kernel("ref int8", n->name, distq_qop_name(n->op));
        }
    }
    s->vals = distq_calloc((size_t)q->n_values * sizeof *s->vals);
    if (!s->vals) goto nomem;
    for (int i = 0; i < q->n_values; i++) {
        s->vals[i] = distq_malloc((size_t)(batch * numel(&q->values[i])) * distq_dtype_size(q->values[i].dtype));
        if (!s->vals[i]) goto nomem;
    }
    *state = s;
    return DISTQ_OK;
nomem:
    qref_destroy(s);
    return distq_error_set(DISTQ_ERR_NOMEM, "out of memory for int8 ref activations");
}

static distq_status qref_run(void *state, const float *input, float *output)
{
    qref_state *s = state;
    const distq_qgraph *q = s->q;
    memcpy(s->vals[q->input], input, (size_t)(s->N * numel(&q->values[q->input])) * sizeof(float));
    for (int i = 0; i < q->n_nodes; i++) {
        const distq_qnode *n = &q->nodes[i];
        int64_t count = s->N * numel(&q->values[n->dst]);
        qref_kernels[n->op](s, n, count); /* every op has one: checked in qref_create */
    }
    memcpy(output, s->vals[q->output], (size_t)(s->N * numel(&q->values[q->output])) * sizeof(float));
    return DISTQ_OK;
}

static distq_status qref_get_value(void *state, const char *name, void *out)
{
    qref_state *s = state;
    for (int i = 0; i < s->q->n_values; i++) {
        const distq_qvalue *v = &s->q->values[i];
        if (strcmp(v->name, name) == 0) {
            memcpy(out, s->vals[i], (size_t)(s->N * numel(v)) * distq_dtype_size(v->dtype));
            return DISTQ_OK;
        }
    }
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "int8 graph has no value '%s'", name);
}

const distq_exec_i distq_exec_ref_int8_i = {
    .name = "ref",
    .create_int8 = qref_create,
    .run = qref_run,
    .destroy = qref_destroy,
    .get_value = qref_get_value,
};
