/* The benchmark loop's stopping rule, and percentiles (bench.h). */
#include <stdlib.h>
#include <string.h>

#include "distq/bench.h"
#include "distq/tensor.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double distq_percentile(const double *values, int64_t n, double p)
{
    if (n <= 0) return 0.0;
    double *sorted = distq_malloc((size_t)n * sizeof *sorted);
    if (!sorted) return 0.0;
    memcpy(sorted, values, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    double rank = p / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)rank;
    double frac = rank - (double)lo, v = sorted[lo];
    if (lo + 1 < n) v += frac * (sorted[lo + 1] - sorted[lo]);
    distq_free(sorted);
    return v;
}

distq_status distq_bench_run(distq_exec *e, const float *input, float *output,
                             const distq_bench_opts *opts, distq_bench_result *res)
{
    memset(res, 0, sizeof *res);
    res->batch = distq_exec_batch(e);
    distq_status st;
    double t0 = distq_now_s();
    if ((st = distq_exec_run(e, input, output))) return st;
    res->first_s = distq_now_s() - t0;
    for (int64_t i = 0; i < opts->warmup; i++)
        if ((st = distq_exec_run(e, input, output))) return st;

    int64_t cap = opts->min_iters > 16 ? opts->min_iters : 16;
    res->samples_s = distq_malloc((size_t)cap * sizeof *res->samples_s);
    if (!res->samples_s) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (bench samples)");
    double total = 0.0;
    while (res->iters < opts->min_iters || total < opts->min_time_s) {
        if (res->iters == cap) {
            double *bigger = distq_malloc((size_t)cap * 2 * sizeof *bigger);
            if (!bigger) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (bench samples)");
            memcpy(bigger, res->samples_s, (size_t)cap * sizeof *bigger);
            distq_free(res->samples_s);
            res->samples_s = bigger;
            cap *= 2;
        }
        double start = distq_now_s();
        if ((st = distq_exec_run(e, input, output))) return st;
        double dt = distq_now_s() - start;
        res->samples_s[res->iters++] = dt;
        total += dt;
    }
    res->p50_s = distq_percentile(res->samples_s, res->iters, 50.0);
    res->p90_s = distq_percentile(res->samples_s, res->iters, 90.0);
    res->p99_s = distq_percentile(res->samples_s, res->iters, 99.0);
    res->mean_s = total / (double)res->iters;
    res->min_s = res->samples_s[0];
    for (int64_t i = 1; i < res->iters; i++)
        if (res->samples_s[i] < res->min_s) res->min_s = res->samples_s[i];
    res->images_per_s = (double)res->batch * (double)res->iters / total;
    return DISTQ_OK;
}

void distq_bench_result_free(distq_bench_result *res)
{
    if (!res) return;
    distq_free(res->samples_s);
    res->samples_s = NULL;
}
