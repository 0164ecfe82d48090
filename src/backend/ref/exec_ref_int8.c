/*
 * The int8 kernels of the plain-C reference executor: the oracle for the
 * oneDNN int8 graph. Integer arithmetic as the recipe specifies (spec §3.7,
 * §5.3, §5.4), on the nodes convert writes (graph.h's quantized forms):
 *   acc = sum (x_q - x_zp) * w_q                      s32, padding is real 0
 *   y   = x_s * w_s[oc] * acc + bias[oc]              real domain (double here)
 *   y  += r_s * (r_q - r_zp)                          residual (second input)
 *   y   = max(y, 0)                                   post_relu
 *   y   = f(y)                                        post_op (clip, hardswish, silu, gelu)
 *   q   = clamp(round_ne(y * (1/y_s)) + y_zp, 0, qmax) or y as f32 for f32 outputs
 *         (qmax 255, or 127 with reduce_range)
 * Pools stay in u8 with their input's qparams. NCHW, obvious loops.
 */
#include <math.h>
#include <string.h>

#include "backend/ref/ref_impl.h"
#include "distq/observers.h"
#include "distq/tensor.h"

static const distq_value *in_v(const ref_state *s, const distq_node *n, int k)
{
    return &s->g->values[n->inputs[k]];
}

static const void *param_data(const ref_state *s, const distq_node *n, int slot)
{
    return n->params[slot] >= 0 ? s->g->params[n->params[slot]].data : NULL;
}

/* Final requantization of a real value to the output value's dtype. */
static void store(const distq_value *d, void *dst, int64_t i, double y)
{
    if (d->dtype == DISTQ_DTYPE_F32) {
        ((float *)dst)[i] = (float)y;
        return;
    }
    ((uint8_t *)dst)[i] = (uint8_t)distq_quantize_value((float)y, 1.0f / d->scale, d->zero_point, 0, d->quant_max);
}

static double residual(const ref_state *s, const distq_node *n, int64_t i)
{
    if (n->n_inputs < 2) return 0.0;
    const distq_value *r = in_v(s, n, 1);
    return (double)r->scale * (((const uint8_t *)s->vals[n->inputs[1]])[i] - r->zero_point);
}

/* Output element o of a quantized conv or linear from its int32 sum: real
 * domain, + bias, + residual, relu or the post-op (post: its f32 function and
 * attributes, NULL: none), then u8 or f32 as the output is. */
static void finish_acc(const ref_state *s, const distq_node *n, int64_t oc, int32_t acc, int64_t o,
                       distq_ref_scalar_fn post, const distq_attrs *post_attrs)
{
    const distq_value *xv = in_v(s, n, 0), *yv = &s->g->values[n->output];
    const float *ws = param_data(s, n, DISTQ_PARAM_WEIGHT_SCALE), *bias = param_data(s, n, DISTQ_PARAM_BIAS);
    double y = (double)xv->scale * ws[oc] * acc + (bias ? bias[oc] : 0.0);
    y += residual(s, n, o);
    if (n->attr.post_relu && y < 0) y = 0;
    if (post) y = post(post_attrs, (float)y);
    store(yv, s->vals[n->output], o, y);
}

/* A head's post-op function (NULL: none) and its attributes. */
static distq_ref_scalar_fn post_of(const distq_node *n, distq_attrs *attrs)
{
    if (n->attr.post_op < 0) return NULL;
    *attrs = distq_post_op_attrs(&n->attr);
    return distq_ref_scalar((distq_op)n->attr.post_op);
}

static void qconv_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    const distq_value *xv = in_v(s, n, 0), *yv = &s->g->values[n->output];
    const uint8_t *x = s->vals[n->inputs[0]];
    const int8_t *w = param_data(s, n, DISTQ_PARAM_WEIGHT);
    const distq_tensor *wt = &s->g->params[n->params[DISTQ_PARAM_WEIGHT]];
    const distq_attrs *a = &n->attr;
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3];
    int64_t OC = yv->dims[1], OH = yv->dims[2], OW = yv->dims[3];
    int64_t KH = wt->dims[2], KW = wt->dims[3], G = a->groups, ICg = C / G, OCg = OC / G;
    distq_attrs pa;
    distq_ref_scalar_fn post = post_of(n, &pa);
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
                                acc += (xq - xv->zero_point) * w[((oc * ICg + ic) * KH + kh) * KW + kw];
                            }
                        }
                    finish_acc(s, n, oc, acc, ((nb * OC + oc) * OH + oh) * OW + ow, post, &pa);
                }
        }
}

static void qlinear_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    const distq_value *xv = in_v(s, n, 0), *yv = &s->g->values[n->output];
    const uint8_t *x = s->vals[n->inputs[0]];
    const int8_t *w = param_data(s, n, DISTQ_PARAM_WEIGHT);
    /* on the last dim: rows are every position of every image */
    const int64_t IN = xv->dims[xv->ndim - 1], OUT = yv->dims[yv->ndim - 1];
    const int64_t rows = distq_value_numel(xv, s->N) / IN;
    distq_attrs pa;
    distq_ref_scalar_fn post = post_of(n, &pa);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < OUT; o++) {
            int32_t acc = 0;
            for (int64_t i = 0; i < IN; i++) acc += (x[r * IN + i] - xv->zero_point) * w[o * IN + i];
            finish_acc(s, n, o, acc, r * OUT + o, post, &pa);
        }
}

/* A u8 pooling window over the codes inside the image: max (padding never
 * wins) or the mean rounded half to even (prepare takes an avg_pool2d int8
 * only where no padding is counted: then that is the mean of the real
 * values, the codes sharing the input's qparams). */
static void qwindow_ref(const ref_state *s, const distq_node *n, int is_max)
{
    const distq_value *xv = in_v(s, n, 0), *yv = &s->g->values[n->output];
    const uint8_t *x = s->vals[n->inputs[0]];
    uint8_t *y = s->vals[n->output];
    const distq_attrs *a = &n->attr;
    int64_t H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    for (int64_t nc = 0; nc < s->N * xv->dims[1]; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t sum = 0, cells = 0;
                int best = 0;
                for (int64_t kh = 0; kh < a->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < a->kernel[1]; kw++) {
                        int64_t ih = oh * a->stride[0] - a->padding[0] + kh;
                        int64_t iw = ow * a->stride[1] - a->padding[1] + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        int v = x[(nc * H + ih) * W + iw];
                        best = v > best ? v : best;
                        sum += v;
                        cells++;
                    }
                double m = cells ? nearbyint((double)sum / (double)cells) : 0.0;
                y[(nc * OH + oh) * OW + ow] = (uint8_t)(is_max ? best : m > 255 ? 255 : m);
            }
}

static void qmaxpool_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    qwindow_ref(s, n, 1);
}

static void qavgpool2d_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    qwindow_ref(s, n, 0);
}

/* The squeeze-excite gate: y = x_s * (x_q - x_zp) * gate[n, c], then u8 or
 * f32 as the output is. */
static void qgate_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = in_v(s, n, 0), *yv = &s->g->values[n->output];
    const uint8_t *x = s->vals[n->inputs[0]];
    const float *gate = s->vals[n->inputs[1]];
    const int64_t HW = xv->dims[2] * xv->dims[3];
    for (int64_t k = 0; k < count; k++)
        store(yv, s->vals[n->output], k, (double)xv->scale * (x[k] - xv->zero_point) * gate[k / HW]);
}

/* mean((q - zp) * s) * (1/s) + zp == mean(q): average the u8 codes, round half to even. */
static void qavgpool_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    const distq_value *xv = in_v(s, n, 0);
    const uint8_t *x = s->vals[n->inputs[0]];
    uint8_t *y = s->vals[n->output];
    int64_t HW = xv->dims[2] * xv->dims[3];
    for (int64_t nc = 0; nc < s->N * xv->dims[1]; nc++) {
        int64_t sum = 0;
        for (int64_t i = 0; i < HW; i++) sum += x[nc * HW + i];
        double m = nearbyint((double)sum / (double)HW);
        y[nc] = (uint8_t)(m > 255 ? 255 : m);
    }
}

static void quantize_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *dst = &s->g->values[n->output];
    const float *x = s->vals[n->inputs[0]];
    for (int64_t k = 0; k < count; k++) store(dst, s->vals[n->output], k, x[k]);
}

static void dequantize_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *src = in_v(s, n, 0);
    const uint8_t *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    for (int64_t k = 0; k < count; k++) y[k] = ((float)x[k] - (float)src->zero_point) * src->scale;
}


const ref_kernel distq_ref_int8_kernels[DISTQ_OP_COUNT] = {
    [DISTQ_OP_QUANTIZE] = quantize_ref,     [DISTQ_OP_DEQUANTIZE] = dequantize_ref,
    [DISTQ_OP_CONV2D] = qconv_ref,          [DISTQ_OP_LINEAR] = qlinear_ref,
    [DISTQ_OP_MAX_POOL2D] = qmaxpool_ref,   [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = qavgpool_ref,
    [DISTQ_OP_FLATTEN] = distq_ref_copy,      [DISTQ_OP_AVG_POOL2D] = qavgpool2d_ref,
    [DISTQ_OP_CONCAT] = distq_ref_concat, /* the codes: every input shares the output's qparams */
    [DISTQ_OP_TRANSPOSE] = distq_ref_transpose, [DISTQ_OP_SLICE] = distq_ref_slice,
    [DISTQ_OP_RESHAPE] = distq_ref_copy,        [DISTQ_OP_MUL] = qgate_ref,
};
