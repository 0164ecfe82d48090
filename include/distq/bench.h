#ifndef DISTQ_BENCH_H
#define DISTQ_BENCH_H
/*
 * Benchmark method: setup (create/prepack) and the first inference are timed
 * apart from the loop; after `warmup` untimed runs, the timed loop stops when
 * both min_iters iterations and min_time_s seconds are reached. Every
 * iteration's latency is kept (raw samples), percentiles are taken from them.
 */
#include <stdint.h>

#include "distq/exec.h"
#include "distq/status.h"
#include "distq/timer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t warmup;    /* untimed runs after the first one */
    int64_t min_iters; /* timed runs, at least */
    double min_time_s; /* timed seconds, at least */
} distq_bench_opts;

typedef struct {
    int64_t batch;
    double first_s;     /* the first inference, apart from the loop */
    int64_t iters;
    double *samples_s;  /* iters latencies in seconds, in run order; owned */
    double p50_s, p90_s, p99_s, mean_s, min_s;
    double images_per_s; /* batch * iters / sum(samples) */
} distq_bench_result;

/* Runs e on input -> output per opts. Free res with distq_bench_result_free. */
distq_status distq_bench_run(distq_exec *e, const float *input, float *output,
                             const distq_bench_opts *opts, distq_bench_result *res);
void distq_bench_result_free(distq_bench_result *res);

/* Percentile p in [0, 100] of n values (linear interpolation between closest
 * ranks, as numpy's default). values need not be sorted; not modified. */
double distq_percentile(const double *values, int64_t n, double p);

#ifdef __cplusplus
}
#endif
#endif
