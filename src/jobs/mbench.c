/*
 * Multi-instance benchmark: every rank benchmarks its own frozen executor, all
 * starting together after a barrier ("all"), or one rank at a time ("serial",
 * to separate per-rank capability from throughput under shared memory
 * bandwidth). Raw samples are gathered to rank 0; percentiles are computed
 * over all ranks' samples, not averaged per rank.
 */
#include <string.h>

#include "distq/bench.h"
#include "distq/dist.h"
#include "distq/results.h"

/* Benchmarks one point on this rank. */
static distq_status bench_local(const distq_graph *g, const distq_graph *q, distq_backend b, int64_t batch,
                                const distq_bench_opts *opts, uint64_t seed, double fig[3],
                                distq_bench_result *res)
{
    distq_exec *e = NULL;
    float *in = NULL, *out = NULL;
    double t0 = distq_now_s();
    distq_status st = q ? distq_exec_create(b, q, batch, &e) : distq_exec_create(b, g, batch, &e);
    if (st) /* name the setting that asked for it */
        return distq_error_set(st, "batch size %lld (--batch, [bench] batch): %s", (long long)batch,
                               distq_error_message());
    fig[0] = distq_now_s() - t0;
    int64_t in_n = batch * distq_exec_input_numel(e), out_n = batch * distq_exec_output_numel(e);
    in = distq_malloc((size_t)in_n * sizeof *in);
    out = distq_malloc((size_t)out_n * sizeof *out);
    if (!in || !out) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "batch size %lld (--batch, [bench] batch): out of memory for its "
                             "input and output", (long long)batch);
        goto cleanup;
    }
    distq_rng r;
    distq_rng_seed(&r, seed);
    for (int64_t i = 0; i < in_n; i++) in[i] = distq_rng_normal(&r);
    if ((st = distq_bench_run(e, in, out, opts, res))) goto cleanup;
    fig[1] = res->first_s;
    fig[2] = res->images_per_s;
cleanup:
    distq_exec_destroy(e);
    distq_free(in);
    distq_free(out);
    return st;
}

distq_status distq_bench_point_run(distq_dist *d, const distq_graph *g, const distq_graph *q,
                                   distq_backend b, int64_t batch, const distq_bench_opts *opts, int serial,
                                   uint64_t seed, distq_bench_point *pt)
{
    distq_status st = DISTQ_OK;
    distq_bench_result res = {0};
    double fig[3] = {0, 0, 0}, *figs = NULL;
    int *counts = NULL, *displs = NULL;
    double *all = NULL;
    memset(pt, 0, sizeof *pt);
    for (int turn = 0; turn < (serial ? d->size : 1); turn++) {
        if ((st = distq_dist_barrier(d, "a benchmark turn"))) return st;
        if (!serial || turn == d->rank) st = bench_local(g, q, b, batch, opts, seed, fig, &res);
    }
    if ((st = distq_dist_agree(d, st))) goto cleanup;

    int iters = (int)res.iters, n = d->size;
    if (d->rank == 0) {
        counts = distq_calloc((size_t)n * sizeof *counts);
        displs = distq_calloc((size_t)n * sizeof *displs);
        figs = distq_calloc((size_t)n * 3 * sizeof *figs);
        if (!counts || !displs || !figs) st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (bench gather)");
    }
    if ((st = distq_dist_agree(d, st))) goto cleanup;
    if ((st = distq_dist_gather(d, &iters, (int)sizeof iters, counts, "benchmark iteration counts")) ||
        (st = distq_dist_gather(d, fig, (int)sizeof fig, figs, "benchmark figures")))
        goto cleanup;
    int total = 0;
    if (d->rank == 0) {
        for (int r = 0; r < n; r++) {
            displs[r] = total;
            total += counts[r];
        }
        all = distq_malloc((size_t)(total + 1) * sizeof *all);
        if (!all) st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (bench samples)");
    }
    if ((st = distq_dist_agree(d, st))) goto cleanup;
    if ((st = distq_dist_gatherv_f64(d, res.samples_s, iters, all, counts, displs, "latency samples")))
        goto cleanup;
    if (d->rank != 0) goto cleanup;

    pt->batch = batch;
    strcpy(pt->precision, q ? "int8" : "fp32");
    strcpy(pt->concurrency, serial ? "serial" : "all");
    pt->nranks = n;
    pt->iters = distq_calloc((size_t)n * sizeof *pt->iters);
    pt->samples_s = distq_calloc((size_t)n * sizeof *pt->samples_s);
    pt->setup_s = distq_calloc((size_t)n * sizeof(double));
    pt->first_s = distq_calloc((size_t)n * sizeof(double));
    pt->images_per_s = distq_calloc((size_t)n * sizeof(double));
    if (!pt->iters || !pt->samples_s || !pt->setup_s || !pt->first_s || !pt->images_per_s) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (bench point)");
        goto cleanup;
    }
    for (int r = 0; r < n; r++) {
        pt->iters[r] = counts[r];
        pt->samples_s[r] = distq_malloc((size_t)(counts[r] + 1) * sizeof(double));
        if (!pt->samples_s[r]) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (bench point)");
            goto cleanup;
        }
        memcpy(pt->samples_s[r], all + displs[r], (size_t)counts[r] * sizeof(double));
        pt->setup_s[r] = figs[3 * r];
        pt->first_s[r] = figs[3 * r + 1];
        pt->images_per_s[r] = figs[3 * r + 2];
        pt->aggregate_images_per_s += figs[3 * r + 2];
    }
    pt->p50_s = distq_percentile(all, total, 50.0);
    pt->p90_s = distq_percentile(all, total, 90.0);
    pt->p99_s = distq_percentile(all, total, 99.0);
cleanup:
    distq_bench_result_free(&res);
    distq_free(counts);
    distq_free(displs);
    distq_free(figs);
    distq_free(all);
    return st;
}
