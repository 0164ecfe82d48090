/* MinMax observers (spec §3.2, §3.3): running min and max. */
#include <math.h>

#include "distq/observers.h"

distq_status distq_batch_minmax(const float *x, int64_t n, float *lo, float *hi)
{
    float mn = INFINITY, mx = -INFINITY;
    int bad = 0;
    /* min/max are order-free, so threads give the same answer as one. */
#pragma omp parallel for reduction(min : mn) reduction(max : mx) reduction(| : bad) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        bad |= !isfinite(v);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    if (bad) /* rare: find the first culprit to name it */
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s at element %lld",
                                       isnan(x[i]) ? "NaN" : "Inf", (long long)i);
    *lo = mn;
    *hi = mx;
    return DISTQ_OK;
}

void distq_minmax_init(distq_minmax_state *st)
{
    st->min = INFINITY;
    st->max = -INFINITY;
}

distq_status distq_minmax_observe(distq_minmax_state *st, const float *x, int64_t n)
{
    distq_minmax_state batch = {INFINITY, -INFINITY};
    distq_status s = distq_batch_minmax(x, n, &batch.min, &batch.max);
    if (s == DISTQ_OK) distq_minmax_merge(st, &batch);
    return s;
}

void distq_minmax_merge(distq_minmax_state *into, const distq_minmax_state *other)
{
    into->min = fminf(into->min, other->min);
    into->max = fmaxf(into->max, other->max);
}

void distq_minmax_per_channel(const float *w, int64_t OC, int64_t per_oc, float *min, float *max)
{
    for (int64_t oc = 0; oc < OC; oc++) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < per_oc; i++) {
            float v = w[oc * per_oc + i];
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        min[oc] = mn;
        max[oc] = mx;
    }
}
