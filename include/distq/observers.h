#ifndef DISTQ_OBSERVERS_H
#define DISTQ_OBSERVERS_H
/*
 * Observers and quantization parameters (x86 recipe, shared/spec §3).
 *
 * Observer state is plain data so that ranks can merge it exactly:
 *   - min/max: elementwise MPI_MIN / MPI_MAX;
 *   - histogram: every update is split in three steps so that the batch's
 *     range can be agreed across ranks before anyone bins a value:
 *         distq_batch_minmax(x)              -> (lo, hi)     reduce MIN/MAX
 *         distq_hist_update_range(st, lo, hi) -> (nlo, nhi)  same on every rank
 *         distq_histc(x, nlo, nhi, counts)    -> int64 counts reduce SUM (exact)
 *         distq_hist_apply(st, nlo, nhi, counts)             same on every rank
 *     so a global batch split over any number of ranks gives bit-identical
 *     state. distq_hist_observe() chains the steps for one process.
 *
 *     distq_hist_state h; distq_hist_init(&h);
 *     distq_hist_observe(&h, x, n);            // per calibration batch
 *     distq_qparams q; distq_hist_qparams(&h, &q);
 */
#include <stdint.h>

#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The activation observer a prepared graph attaches (the recipe's choice). */
typedef enum { DISTQ_OBSERVER_HISTOGRAM = 0, DISTQ_OBSERVER_MINMAX, DISTQ_OBSERVER_COUNT } distq_observer_kind;
const char *distq_observer_kind_name(distq_observer_kind k); /* "histogram", "minmax" */
distq_status distq_observer_kind_from_name(const char *name, distq_observer_kind *out);

#define DISTQ_HIST_BINS 2048     /* HistogramObserver bins */
#define DISTQ_HIST_UPSAMPLE 16   /* resample rate when the range grows */
#define DISTQ_HIST_DST_BINS 256  /* 2^8 levels, the L2 search target */
#define DISTQ_QEPS (1.0f / 4096) /* eps = 2^-12 */

/* Affine activation qparams: real = scale * (q - zero_point), q in [0, 255]. */
typedef struct {
    float scale;
    int32_t zero_point;
} distq_qparams;

/* --- quantization parameters (spec §3.6) and quantize (§3.7) --------------- */

/* u8 affine: mn = min(min,0), mx = max(max,0), scale = max((mx-mn)/(qmax-qmin), eps),
 * zp = clamp(qmin - round_ne(mn/scale), qmin, qmax). Never-observed (+inf,-inf)
 * gives (1, 0). Returns DISTQ_ERR_INVALID_ARG for NaN or min > max. */
distq_status distq_qparams_affine(float min, float max, int32_t qmin, int32_t qmax,
                                  distq_qparams *out);
/* s8 symmetric: scale = max(max(-min, max) / 127.5, eps), zero point 0. */
float distq_qparams_symmetric_scale(float min, float max);

/* q = clamp(round_ne(x * (1/scale)) + zp, qmin, qmax): the reciprocal multiply
 * of PyTorch's decomposed quantize. */
int32_t distq_quantize_value(float x, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax);

/* --- min/max ---------------------------------------------------------------- */

/* Min and max of x[0..n). NaN or +-Inf is DISTQ_ERR_INVALID_ARG (the caller
 * names the tensor). n == 0 leaves (+inf, -inf). */
distq_status distq_batch_minmax(const float *x, int64_t n, float *lo, float *hi);

typedef struct {
    float min, max; /* +inf, -inf until observed */
} distq_minmax_state;

void distq_minmax_init(distq_minmax_state *st);
distq_status distq_minmax_observe(distq_minmax_state *st, const float *x, int64_t n);
/* Exact and order-free: min of mins, max of maxes. */
void distq_minmax_merge(distq_minmax_state *into, const distq_minmax_state *other);

/* Per-output-channel min/max of w viewed as (OC, per_oc). */
void distq_minmax_per_channel(const float *w, int64_t OC, int64_t per_oc, float *min, float *max);

/* --- histogram (spec §3.5) ---------------------------------------------------- */

typedef struct {
    float min, max;               /* range the bins cover; +inf, -inf until observed */
    double hist[DISTQ_HIST_BINS]; /* counts (fractional after a resample) */
} distq_hist_state;

void distq_hist_init(distq_hist_state *st);
/* The range after seeing a batch with range [lo, hi]. */
void distq_hist_update_range(const distq_hist_state *st, float lo, float hi, float *nlo,
                             float *nhi);
/* Adds HISTC(x, B, a, b) to counts[DISTQ_HIST_BINS]: equal bins over [a, b],
 * values outside ignored, a value equal to b in the last bin. */
void distq_histc(const float *x, int64_t n, float a, float b, int64_t *counts);
/* Folds batch counts binned over [nlo, nhi] into the state (resampling the old
 * histogram onto the wider range if it grew). */
void distq_hist_apply(distq_hist_state *st, float nlo, float nhi, const int64_t *counts);
/* The three steps for one process. */
distq_status distq_hist_observe(distq_hist_state *st, const float *x, int64_t n);
/* L2 quantization-error search, then u8 affine qparams of the chosen range.
 * *lo, *hi (optional) receive the chosen range. */
distq_status distq_hist_qparams(const distq_hist_state *st, distq_qparams *out, float *lo,
                                float *hi);
/* The search alone: the range [min + bw*s, min + bw*(e+1)] it keeps. */
void distq_hist_search(const distq_hist_state *st, float *lo, float *hi);
/* ERROR(ns, ne) of the spec: L2 error of mapping bins [ns, ne] to 256 levels. */
double distq_hist_error(const distq_hist_state *st, int64_t ns, int64_t ne);

/* One activation observer. All values in it share one scale and zero point
 * (PyTorch's implicit sharing: every edge reading a tensor, and the outputs of
 * pooling/flatten, which share their input's qparams). It is fed each of its
 * values on every batch, in execution order, as PyTorch calls a shared
 * observer once per inserted observer node. */
typedef struct {
    distq_observer_kind kind;
    distq_minmax_state mm;  /* MINMAX */
    distq_hist_state *hist; /* HISTOGRAM (owned) */
    int n_values, cap_values;
    int *values; /* value indices in the prepared graph (owned; a densenet block's concats share one) */
    /* What convert chose (the histogram's searched range), for the file. */
    int converted;
    float chosen_min, chosen_max;
    distq_qparams chosen;
} distq_observer;

/* --- QAT: moving-average observers and fake quantization (spec §3.4, §4.4) --
 * Deliberate deviation (spec §7 #2): training computes qparams with the same
 * functions convert uses (distq_qparams_affine / distq_qparams_symmetric_scale),
 * not with the fused kernel's ChooseQuantizationParams, so the scales a model
 * trains with are exactly the scales it is exported with. */

#define DISTQ_EMA_CONSTANT 0.01f /* MovingAverageMinMaxObserver averaging_constant */

/* First call (state still +inf/-inf) takes the batch range; later calls
 * move by c: min += c * (lo - min), max += c * (hi - max). */
void distq_ema_minmax_update(distq_minmax_state *st, float lo, float hi, float c);

/* out[i] = (clamp(round_ne(x * (1/s)) + zp, qmin, qmax) - zp) * s; mask[i] = 1
 * where round_ne(x * (1/s)) + zp lies in [qmin, qmax] before clamping (the
 * straight-through estimator passes gradient only there). mask may be NULL. */
void distq_fake_quant(const float *x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax, float *out,
                      uint8_t *mask);
/* Per output channel (axis 0 of (OC, per)), symmetric s8 weights: zp 0, [-128, 127]. */
void distq_fake_quant_per_channel(const float *w, int64_t OC, int64_t per, const float *scale, float *out,
                                  uint8_t *mask);

#ifdef __cplusplus
}
#endif
#endif
