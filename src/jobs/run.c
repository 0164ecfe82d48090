/*
 * distq run: the whole flow on N ranks. Place every rank (hwloc), calibrate on
 * sharded data with exact reductions, convert once on rank 0 (every rank then
 * loads that file), measure accuracy against fp32 on held-out data (sums
 * reduced over ranks), benchmark every rank at once (or one at a time), gather
 * everything to rank 0 and write the results file. Any rank's failure stops
 * every rank at the next agreement point with that rank named.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "distq/dist.h"
#include "distq/exec.h"
#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/results.h"
#include "distq/timer.h"

/* FNV-1a: a path (or any text) as one comparable setting */
static int64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (int64_t)(h >> 1);
}

distq_status distq_run_job(const distq_config *cfg, const char *config_path, distq_dist *d,
                           distq_progress_fn progress, void *progress_user, distq_results *res,
                           char *warn, size_t warn_len)
{
    distq_placement pl;
    distq_reducer red = distq_dist_reducer(d);
    distq_job_ctx ctx = {.comm = d->comm, .rank = d->rank, .nranks = d->size, .reducer = &red,
                         .progress = progress, .progress_user = progress_user};
    distq_ptq_report rep;
    distq_graph *q = NULL;
    distq_graph *g = NULL;
    memset(res, 0, sizeof *res);
    res->nranks = d->size;

    distq_status st = distq_place(d, cfg->bind, (int)cfg->bench_threads, &pl, warn, warn_len);
    if (d->rank == 0 && !st) {
        res->placement = distq_calloc((size_t)d->size * sizeof *res->placement);
        res->points = distq_calloc((size_t)(2 * cfg->n_bench_batch + 1) * sizeof *res->points);
        if (!res->placement || !res->points) st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (results)");
    }
    if ((st = distq_dist_agree(d, st))) goto cleanup;
    /* what every rank's collectives depend on: the same on every rank */
    enum { N_SETTINGS = 20 + DISTQ_MAX_BENCH_BATCHES };
    static const char *const names[N_SETTINGS] = {
        "[calibration] batches", "[calibration] batch_size", "[calibration] observer",
        "[calibration] reduce_range", "the number of [bench] batch sizes", "[bench] min_iters", "[bench] warmup",
        "[bench] precision (fp32)", "[bench] precision (int8)", "[run] concurrency", "[eval] batch_size",
        "[eval] data (given or not)", "[output] results (given or not)", "[bench] min_time (microseconds)",
        "[bench] batch (1st)", "[bench] batch (2nd)", "[bench] batch (3rd)", "[bench] batch (4th)",
        "[bench] batch (5th)", "[bench] batch (6th)", "[bench] batch (7th)", "[bench] batch (8th)",
        "[bench] batch (9th)", "[bench] batch (10th)", "[bench] batch (11th)", "[bench] batch (12th)",
        "[bench] batch (13th)", "[bench] batch (14th)", "[bench] batch (15th)", "[bench] batch (16th)",
        "the hash of [model] path", "the hash of [calibration] data", "the hash of [eval] data",
        "the hash of [output] quantized", "the hash of [output] results", "the hash of the ISA cap"};
    int64_t settings[N_SETTINGS] = {cfg->calib_batches, cfg->calib_batch_size, cfg->observer, cfg->reduce_range,
                                    cfg->n_bench_batch, cfg->bench_min_iters, cfg->bench_warmup, cfg->bench_fp32,
                                    cfg->bench_int8, cfg->bench_serial, cfg->eval_batch_size, cfg->eval_data[0] != 0,
                                    cfg->results[0] != 0};
    settings[13] = (int64_t)llround(fmin(cfg->bench_min_time_s, 1e12) * 1e6); /* finite: parsed so */
    for (int i = 0; i < cfg->n_bench_batch; i++) settings[14 + i] = cfg->bench_batch[i];
    const char *texts[6] = {cfg->model, cfg->calib_data, cfg->eval_data, cfg->quantized, cfg->results,
                            distq_onednn_max_isa()};
    for (int i = 0; i < 6; i++) settings[14 + DISTQ_MAX_BENCH_BATCHES + i] = text_hash(texts[i]);
    if ((st = distq_dist_agree_settings(d, settings, names, N_SETTINGS))) goto cleanup;
    if ((st = distq_dist_gather(d, &pl, (int)sizeof pl, res->placement, "placements"))) goto cleanup;

    /* --- calibrate, convert once ------------------------------------------ */
    if ((st = distq_dist_barrier(d, "the start of calibration"))) goto cleanup;
    double t0 = distq_now_s();
    if ((st = distq_ptq_run(cfg, &ctx, &rep, &q))) goto cleanup;
    if ((st = distq_dist_barrier(d, "the end of calibration"))) goto cleanup;
    res->calib_wall_s = distq_now_s() - t0;
    res->calib_forward_s = rep.forward_s;
    res->calib_observe_s = rep.observe_s;
    res->calib_images = rep.images;
    res->calib_batches = rep.batches;
    res->reduce_bytes = d->reduce_bytes;
    res->reduce_calls = d->reduce_calls;
    res->reduce_range = rep.reduce_range;
    snprintf(res->observer, sizeof res->observer, "%s", distq_observer_kind_name(cfg->observer));

    /* The float graph inside the quantized file: BN folded, as used for calibration. */
    st = distq_model_load(cfg->quantized, &g);
    if ((st = distq_dist_agree(d, st))) goto cleanup;

    /* --- accuracy on held-out data ----------------------------------------- */
    if (cfg->eval_data[0]) {
        distq_eval_sums sums = {0};
        st = distq_eval_run(g, q, DISTQ_BACKEND_ONEDNN, cfg->eval_data, cfg->eval_batch_size, &ctx, &sums);
        if ((st = distq_dist_agree(d, st))) goto cleanup;
        if ((st = distq_dist_allreduce_f64(d, (double *)&sums, DISTQ_EVAL_SUMS_COUNT, DISTQ_DIST_SUM,
                                           "accuracy sums")))
            goto cleanup;
        distq_eval_finish(&sums, &res->eval);
        res->has_eval = 1;
    }

    /* --- benchmark every rank -------------------------------------------- */
    distq_bench_opts opts = {.warmup = cfg->bench_warmup, .min_iters = cfg->bench_min_iters,
                             .min_time_s = cfg->bench_min_time_s};
    for (int b = 0; b < cfg->n_bench_batch; b++)
        for (int prec = 0; prec < 2; prec++) {
            if (prec == 0 ? !cfg->bench_fp32 : !cfg->bench_int8) continue;
            distq_bench_point pt;
            st = distq_bench_point_run(d, g, prec ? q : NULL, DISTQ_BACKEND_ONEDNN, cfg->bench_batch[b], &opts,
                                       cfg->bench_serial, 1, &pt);
            if (st) goto cleanup;
            if (d->rank == 0) res->points[res->n_points++] = pt;
        }

    /* --- provenance and the results file (rank 0) ------------------------ */
    if (d->rank == 0) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(res->date, sizeof res->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(res->isa, sizeof res->isa, "%s", distq_backend_caps_of(DISTQ_BACKEND_ONEDNN).isa);
        snprintf(res->max_isa, sizeof res->max_isa, "%s", distq_onednn_max_isa());
        snprintf(res->onednn_version, sizeof res->onednn_version, "%s", distq_onednn_version());
        snprintf(res->mpi_version, sizeof res->mpi_version, "%s", distq_mpi_version());
        snprintf(res->hwloc_version, sizeof res->hwloc_version, "%s", distq_hwloc_version());
        res->config_path = config_path;
        res->config_text = cfg->text;
        res->model_path = cfg->model;
        res->quantized_path = cfg->quantized;
        if (cfg->results[0]) st = distq_results_write(cfg->results, res);
    }
    st = distq_dist_agree(d, st);
cleanup:
    distq_graph_destroy(g);
    distq_graph_destroy(q);
    return st;
}
