/* QAT building blocks: the moving-average min/max update and fake
 * quantization with its straight-through mask (spec §3.4, §4.4). */
#include <math.h>

#include "distq/observers.h"

void distq_ema_minmax_update(distq_minmax_state *st, float lo, float hi, float c)
{
    if (st->min == INFINITY && st->max == -INFINITY) {
        st->min = lo;
        st->max = hi;
        return;
    }
    st->min += c * (lo - st->min);
    st->max += c * (hi - st->max);
}

/* One element; returns whether it was inside [qmin, qmax] before clamping. */
static inline int fq_one(float x, float inv, float s, int32_t zp, int32_t qmin, int32_t qmax, float *out)
{
    float q = nearbyintf(x * inv) + (float)zp;
    int inside = q >= (float)qmin && q <= (float)qmax;
    q = q < (float)qmin ? (float)qmin : q > (float)qmax ? (float)qmax : q;
    *out = (q - (float)zp) * s;
    return inside;
}

void distq_fake_quant(const float *x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax, float *out,
                      uint8_t *mask)
{
    float inv = 1.0f / scale;
    for (int64_t i = 0; i < n; i++) {
        int inside = fq_one(x[i], inv, scale, zp, qmin, qmax, &out[i]);
        if (mask) mask[i] = (uint8_t)inside;
    }
}

void distq_fake_quant_per_channel(const float *w, int64_t OC, int64_t per, const float *scale, float *out,
                                  uint8_t *mask)
{
    for (int64_t oc = 0; oc < OC; oc++) {
        float s = scale[oc], inv = 1.0f / s;
        for (int64_t i = oc * per; i < (oc + 1) * per; i++) {
            int inside = fq_one(w[i], inv, s, 0, -128, 127, &out[i]);
            if (mask) mask[i] = (uint8_t)inside;
        }
    }
}
