/*
 * HistogramObserver (spec §3.5): 2048 bins over the running [min, max]; the
 * old histogram is resampled (upsample 16) when the range grows; convert runs
 * the L2 quantization-error search once.
 *
 * Deviations, on purpose: counts are double (PyTorch: f32), so sums of many
 * batches stay exact; linspace edges are computed in double; NaN/Inf in a
 * batch is an error instead of being filtered with a warning (issue #4).
 */
#include <math.h>
#include <string.h>

#include "distq/observers.h"
#include "distq/tensor.h"

#define B DISTQ_HIST_BINS
#define U DISTQ_HIST_UPSAMPLE
#define D DISTQ_HIST_DST_BINS

void distq_hist_init(distq_hist_state *st)
{
    memset(st, 0, sizeof *st);
    st->min = INFINITY;
    st->max = -INFINITY;
}

void distq_hist_update_range(const distq_hist_state *st, float lo, float hi, float *nlo,
                             float *nhi)
{
    *nlo = fminf(st->min, lo);
    *nhi = fmaxf(st->max, hi);
}

void distq_histc(const float *x, int64_t n, float a, float b, int64_t *counts)
{
    /* torch.histc widens an empty range by 1 on each side. */
    if (a == b) {
        a -= 1.0f;
        b += 1.0f;
    }
    /* Integer counts: per-thread histograms summed give exactly the serial result. */
#pragma omp parallel if (n > 65536)
    {
        int64_t local[B] = {0};
#pragma omp for nowait
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            if (v < a || v > b) continue;
            int64_t pos = (int64_t)((v - a) * (float)B / (b - a));
            local[pos >= B ? B - 1 : pos]++;
        }
#pragma omp critical
        for (int i = 0; i < B; i++) counts[i] += local[i];
    }
}

/* RESAMPLE: maps hist over [a, b] onto B bins over [na, nb] (a wider range). */
static void resample(const double *hist, double a, double b, double na, double nb, double *out)
{
    double edges[B + 1];
    for (int k = 0; k <= B; k++) edges[k] = na + (nb - na) * k / B;
    memset(out, 0, B * sizeof *out);
    double fw = (b - a) / (B * U);
    for (int64_t j = 0; j < (int64_t)B * U; j++) {
        double mid = a + (b - a) * (double)j / (B * U) + fw / 2;
        /* number of edges <= mid, minus one (bucketize, right=True) */
        int lo = 0, hi = B + 1;
        while (lo < hi) {
            int m = (lo + hi) / 2;
            if (edges[m] <= mid) lo = m + 1;
            else hi = m;
        }
        int t = lo - 1;
        t = t < 0 ? 0 : t >= B ? B - 1 : t;
        out[t] += hist[j / U] / U;
    }
}

void distq_hist_apply(distq_hist_state *st, float nlo, float nhi, const int64_t *counts)
{
    if (st->min == INFINITY && st->max == -INFINITY) { /* first batch */
        st->min = nlo;
        st->max = nhi;
        for (int i = 0; i < B; i++) st->hist[i] = (double)counts[i];
        return;
    }
    if (nlo != st->min || nhi != st->max) {
        double old[B];
        if (st->min == st->max) {
            /* single-valued old histogram: all its mass in the bin of that value */
            double total = 0.0;
            for (int i = 0; i < B; i++) total += st->hist[i];
            int64_t c[B] = {0};
            distq_histc(&st->min, 1, nlo, nhi, c);
            for (int i = 0; i < B; i++) old[i] = (double)c[i] * total;
        } else {
            resample(st->hist, st->min, st->max, nlo, nhi, old);
        }
        memcpy(st->hist, old, sizeof old);
        st->min = nlo;
        st->max = nhi;
    }
    for (int i = 0; i < B; i++) st->hist[i] += (double)counts[i];
}

distq_status distq_hist_observe(distq_hist_state *st, const float *x, int64_t n)
{
    if (n == 0) return DISTQ_OK;
    float lo, hi, nlo, nhi;
    distq_status s = distq_batch_minmax(x, n, &lo, &hi);
    if (s) return s;
    distq_hist_update_range(st, lo, hi, &nlo, &nhi);
    int64_t *counts = distq_calloc(B * sizeof *counts);
    if (!counts) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (histogram)");
    distq_histc(x, n, nlo, nhi, counts);
    distq_hist_apply(st, nlo, nhi, counts);
    distq_free(counts);
    return DISTQ_OK;
}

/* density * (q^3 - p^3) / 3: integral of x^2 over [p, q] times the density. */
static double norm(double p, double q, double density) { return density * (q * q * q - p * p * p) / 3.0; }

double distq_hist_error(const distq_hist_state *st, int64_t ns, int64_t ne)
{
    double bw = ((double)st->max - st->min) / B;
    double dw = bw * (double)(ne - ns + 1) / D;
    if (dw == 0.0) return 0.0;
    double err = 0.0;
    for (int64_t i = 0; i < B; i++) {
        if (st->hist[i] == 0.0) continue;
        double b0 = (double)(i - ns) * bw, b1 = b0 + bw;
        double db = floor(b0 / dw), de = floor(b1 / dw);
        db = db < 0 ? 0 : db > D - 1 ? D - 1 : db;
        de = de < 0 ? 0 : de > D - 1 ? D - 1 : de;
        double density = st->hist[i] / bw;
        err += norm(b0 - (db * dw + dw / 2), dw / 2, density);
        err += (de - db - 1) * norm(-dw / 2, dw / 2, density);
        err += norm(-dw / 2, b1 - (de * dw + dw / 2), density);
    }
    return err;
}

void distq_hist_search(const distq_hist_state *st, float *lo, float *hi)
{
    double bw = ((double)st->max - st->min) / B;
    double total = 0.0, c[B];
    for (int i = 0; i < B; i++) c[i] = (total += st->hist[i]);
    double alpha = 0.0, beta = 1.0, best = INFINITY;
    const double step = 1e-5;
    int64_t s = 0, e = B - 1;
    if (total == 0.0 || bw == 0.0) {
        *lo = st->min;
        *hi = st->max;
        return;
    }
    while (alpha < beta) {
        double na = alpha + step, nb = beta - step;
        int64_t l = s, r = e;
        while (l < e && c[l] < na * total) l++;
        while (r > s && c[r] > nb * total) r--;
        int64_t ns, ne;
        if (l - s > e - r) { /* trim from the left */
            ns = l;
            ne = e;
            alpha = na;
        } else {
            ns = s;
            ne = r;
            beta = nb;
        }
        if (ns == s && ne == e) continue;
        double err = distq_hist_error(st, ns, ne);
        if (err > best) break;
        best = err;
        s = ns;
        e = ne;
    }
    *lo = (float)(st->min + bw * (double)s);
    *hi = (float)(st->min + bw * (double)(e + 1));
}

distq_status distq_hist_qparams(const distq_hist_state *st, distq_qparams *out, float *lo,
                                float *hi)
{
    float a = st->min, b = st->max;
    if (!(st->min == INFINITY && st->max == -INFINITY)) distq_hist_search(st, &a, &b);
    if (lo) *lo = a;
    if (hi) *hi = b;
    return distq_qparams_affine(a, b, 0, 255, out);
}
