/*
 * calibrate: run the fast fp32 (oneDNN) graph over calibration batches and feed
 * every activation observer.
 *
 * Every batch is reduced in two collective steps when a reducer is given, so
 * that the observers end bit-identical for any number of ranks:
 *   1. each observed value's batch min/max (one MIN/MAX call for all values);
 *   2. histogram counts over the agreed ranges (one SUM call for all values).
 * An observer fed several values (shared qparams) sees them in order; its
 * range after value k is the union of its old range and values 1..k, which
 * is computed ahead so that one reduction serves the whole batch.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/exec.h"
#include "distq/quant.h"
#include "distq/timer.h"

struct distq_calibrator {
    distq_prepared *p;
    distq_exec *exec;      /* built for `batch` images */
    distq_exec *exec_tail; /* built on demand for a shorter last batch */
    distq_exec *last;      /* the one that ran last */
    float *logits;
    distq_reducer red;
    int has_red;
    int64_t batch;
    int n_feeds;      /* (observer, value) pairs, in feeding order */
    int *feed_obs, *feed_val;
    float *lo, *hi;   /* per feed: batch min/max, then the range to bin over */
    int64_t *counts;  /* per feed: DISTQ_HIST_BINS counts */
    float *buf;       /* one value's plain f32 data */
    int64_t n_batches;
    double forward_s, observe_s;
};

void distq_calibrator_destroy(distq_calibrator *c)
{
    if (!c) return;
    distq_exec_destroy(c->exec);
    distq_exec_destroy(c->exec_tail);
    distq_free(c->logits);
    distq_free(c->feed_obs);
    distq_free(c->feed_val);
    distq_free(c->lo);
    distq_free(c->hi);
    distq_free(c->counts);
    distq_free(c->buf);
    distq_free(c);
}

distq_status distq_calibrator_create(distq_prepared *p, int64_t batch, const distq_reducer *red,
                                     distq_calibrator **out)
{
    *out = NULL;
    distq_calibrator *c = distq_calloc(sizeof *c);
    if (!c) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (calibrator)");
    c->p = p;
    c->batch = batch;
    if (red) {
        c->red = *red;
        c->has_red = 1;
    }
    int64_t max_numel = 0;
    for (int i = 0; i < p->n_observers; i++) c->n_feeds += p->observers[i].n_values;
    for (int v = 0; v < p->g->n_values; v++) {
        int64_t n = distq_value_numel(&p->g->values[v], batch);
        max_numel = n > max_numel ? n : max_numel;
    }
    distq_status st = distq_exec_create(DISTQ_BACKEND_ONEDNN, p->g, batch, &c->exec);
    if (st) goto fail;
    c->feed_obs = distq_malloc((size_t)(c->n_feeds + 1) * sizeof(int));
    c->feed_val = distq_malloc((size_t)(c->n_feeds + 1) * sizeof(int));
    c->lo = distq_malloc((size_t)(c->n_feeds + 1) * sizeof(float));
    c->hi = distq_malloc((size_t)(c->n_feeds + 1) * sizeof(float));
    c->counts = distq_malloc((size_t)(c->n_feeds + 1) * DISTQ_HIST_BINS * sizeof(int64_t));
    c->buf = distq_malloc((size_t)max_numel * sizeof(float));
    c->logits = distq_malloc((size_t)distq_value_numel(&p->g->values[p->g->output_values[0]], batch) * sizeof(float));
    if (!c->feed_obs || !c->feed_val || !c->lo || !c->hi || !c->counts || !c->buf || !c->logits) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (calibrator)");
        goto fail;
    }
    int f = 0;
    for (int i = 0; i < p->n_observers; i++)
        for (int k = 0; k < p->observers[i].n_values; k++) {
            c->feed_obs[f] = i;
            c->feed_val[f++] = p->observers[i].values[k];
        }
    *out = c;
    return DISTQ_OK;
fail:
    distq_calibrator_destroy(c);
    return st;
}

/* Reads value v of the last run (n images) into c->buf. */
static distq_status read_value(distq_calibrator *c, int v, int64_t n, int64_t *count)
{
    const distq_value *val = &c->p->g->values[v];
    distq_status st = distq_exec_get_value(c->last, val->name, c->buf);
    *count = distq_value_numel(val, n);
    return st;
}

/* Runs the fp32 graph on n images and takes every fed value's batch min/max
 * into c->lo, c->hi (+inf/-inf when n == 0). *t1 = when the forward ended. */
static distq_status forward_and_minmax(distq_calibrator *c, const float *images, int64_t n, double *t1)
{
    distq_prepared *p = c->p;
    distq_status st = DISTQ_OK;
    double t0 = distq_now_s();
    if (n > 0) {
        c->last = c->exec;
        if (n != c->batch) { /* a short last batch (or shard): its own executor */
            if (c->exec_tail && distq_exec_batch(c->exec_tail) != n) {
                distq_exec_destroy(c->exec_tail);
                c->exec_tail = NULL;
            }
            if (!c->exec_tail && (st = distq_exec_create(DISTQ_BACKEND_ONEDNN, p->g, n, &c->exec_tail)))
                return st;
            c->last = c->exec_tail;
        }
        if ((st = distq_exec_run(c->last, images, c->logits))) return st;
    }
    *t1 = distq_now_s();
    c->forward_s += *t1 - t0;
    for (int f = 0; f < c->n_feeds; f++) {
        int64_t count = 0;
        c->lo[f] = INFINITY;
        c->hi[f] = -INFINITY;
        if (n == 0) continue;
        if ((st = read_value(c, c->feed_val[f], n, &count))) return st;
        if ((st = distq_batch_minmax(c->buf, count, &c->lo[f], &c->hi[f])))
            return distq_error_set(st, "calibration batch %lld: value '%s': %s", (long long)c->n_batches,
                                   p->g->values[c->feed_val[f]].name, distq_error_message());
    }
    return DISTQ_OK;
}

distq_status distq_calibrate_batch(distq_calibrator *c, const float *images, int64_t n)
{
    distq_prepared *p = c->p;
    distq_status st = DISTQ_OK;
    if (n < 0 || n > c->batch)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "calibration batch of %lld images, executor built for %lld",
                               (long long)n, (long long)c->batch);
    double t0 = distq_now_s(), t1 = t0;
    st = forward_and_minmax(c, images, n, &t1);
    /* Step 1 ends in a reduction: first make sure every rank got here healthy. */
    if (c->has_red && c->red.agree) st = c->red.agree(c->red.ctx, st);
    if (st) return st;
    if (c->has_red && (st = c->red.min_max(c->red.ctx, c->lo, c->hi, c->n_feeds))) return st;

    if (p->kind == DISTQ_OBSERVER_MINMAX) {
        for (int f = 0; f < c->n_feeds; f++) {
            distq_minmax_state b = {c->lo[f], c->hi[f]};
            distq_minmax_merge(&p->observers[c->feed_obs[f]].mm, &b);
        }
    } else {
        /* Step 2: each feed's bin range (old range grown by the feeds so far), counts, sum. */
        for (int i = 0; i < p->n_observers; i++) {
            const distq_hist_state *h = p->observers[i].hist;
            float lo = h->min, hi = h->max;
            for (int f = 0; f < c->n_feeds; f++) {
                if (c->feed_obs[f] != i) continue;
                lo = fminf(lo, c->lo[f]);
                hi = fmaxf(hi, c->hi[f]);
                c->lo[f] = lo;
                c->hi[f] = hi;
            }
        }
        memset(c->counts, 0, (size_t)c->n_feeds * DISTQ_HIST_BINS * sizeof(int64_t));
        for (int f = 0; f < c->n_feeds && n > 0; f++) {
            int64_t count = 0;
            if ((st = read_value(c, c->feed_val[f], n, &count))) return st;
            distq_histc(c->buf, count, c->lo[f], c->hi[f], c->counts + (int64_t)f * DISTQ_HIST_BINS);
        }
        if (c->has_red && (st = c->red.sum_i64(c->red.ctx, c->counts, c->n_feeds * DISTQ_HIST_BINS)))
            return st;
        /* Step 3: apply in feeding order (skipping values no rank saw). */
        for (int f = 0; f < c->n_feeds; f++)
            if (c->hi[f] >= c->lo[f])
                distq_hist_apply(p->observers[c->feed_obs[f]].hist, c->lo[f], c->hi[f],
                                 c->counts + (int64_t)f * DISTQ_HIST_BINS);
    }
    c->n_batches++;
    c->observe_s += distq_now_s() - t1;
    return DISTQ_OK;
}

void distq_calibrator_times(const distq_calibrator *c, double *forward_s, double *observe_s)
{
    *forward_s = c->forward_s;
    *observe_s = c->observe_s;
}
