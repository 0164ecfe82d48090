/* Quantization parameters and scalar quantize (spec §3.6, §3.7). f32
 * arithmetic in PyTorch's order; rounding is round-half-to-even (nearbyintf in
 * the default FP environment). */
#include <math.h>

#include "distq/observers.h"

distq_status distq_qparams_affine(float min, float max, int32_t qmin, int32_t qmax,
                                  distq_qparams *out)
{
    if (min == INFINITY && max == -INFINITY) { /* never observed */
        out->scale = 1.0f;
        out->zero_point = 0;
        return DISTQ_OK;
    }
    if (isnan(min) || isnan(max) || min > max || isinf(min) || isinf(max))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "bad observed range [%g, %g]", (double)min,
                               (double)max);
    float mn = fminf(min, 0.0f), mx = fmaxf(max, 0.0f);
    float scale = (mx - mn) / (float)(qmax - qmin);
    if (scale < DISTQ_QEPS) scale = DISTQ_QEPS;
    int32_t zp = qmin - (int32_t)nearbyintf(mn / scale);
    out->scale = scale;
    out->zero_point = zp < qmin ? qmin : zp > qmax ? qmax : zp;
    return DISTQ_OK;
}

float distq_qparams_symmetric_scale(float min, float max)
{
    float mn = fminf(min, 0.0f), mx = fmaxf(max, 0.0f);
    float amax = fmaxf(-mn, mx);
    float scale = amax / (255.0f / 2.0f);
    return scale < DISTQ_QEPS ? DISTQ_QEPS : scale;
}

int32_t distq_quantize_value(float x, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax)
{
    float r = nearbyintf(x * inv_scale);
    /* Clamp in float first so huge values cannot overflow the int conversion. */
    float q = r + (float)zp;
    if (q < (float)qmin) return qmin;
    if (q > (float)qmax) return qmax;
    return (int32_t)q;
}
