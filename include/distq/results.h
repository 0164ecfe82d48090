#ifndef DISTQ_RESULTS_H
#define DISTQ_RESULTS_H
/*
 * The results of a `distq run`, gathered to rank 0 and written as one HDF5
 * file (format "distq-results"): per-rank placement and raw latency samples,
 * percentiles over all ranks' samples, throughput, calibration and accuracy
 * figures, and the run's provenance. Every dataset carries a "units"
 * attribute. Written to a temporary name and renamed when complete.
 */
#include <stdint.h>

#include "distq/bench.h"
#include "distq/dist.h"
#include "distq/jobs.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DISTQ_RESULTS_FORMAT "distq-results"
#define DISTQ_RESULTS_VERSION 1

/* One benchmark point (batch size, precision) over all ranks. */
typedef struct {
    int64_t batch;
    char precision[8];     /* "fp32" or "int8" */
    char concurrency[8];   /* "all" (ranks at once) or "serial" (one rank at a time) */
    int nranks;
    int64_t *iters;        /* [nranks] samples per rank */
    double **samples_s;    /* [nranks][iters[r]] raw latencies, seconds, in run order */
    double *setup_s;       /* [nranks] executor creation (prepack) */
    double *first_s;       /* [nranks] the first inference */
    double *images_per_s;  /* [nranks] batch * iters / sum(samples) */
    double p50_s, p90_s, p99_s;   /* over the gathered samples of all ranks */
    double aggregate_images_per_s; /* sum over ranks */
} distq_bench_point;

/* Collective over d: benchmarks g (fp32) or q (int8, if not NULL) at `batch`
 * on every rank; serial = one rank at a time. Rank 0 receives the gathered
 * point (free with distq_bench_point_free); other ranks get it empty. */
distq_status distq_bench_point_run(distq_dist *d, const distq_graph *g, const distq_graph *q,
                                   distq_backend b, int64_t batch, const distq_bench_opts *opts, int serial,
                                   uint64_t seed, distq_bench_point *pt);
void distq_bench_point_free(distq_bench_point *pt);

typedef struct {
    int nranks;
    distq_placement *placement; /* [nranks] */
    int n_points;
    distq_bench_point *points;
    /* calibration (PTQ) */
    double calib_wall_s, calib_forward_s, calib_observe_s; /* rank 0's forward/observe */
    int64_t calib_images, calib_batches;
    int64_t reduce_bytes, reduce_calls; /* per rank: all-reduce payload of observer state */
    int reduce_range;
    char observer[16];
    /* accuracy vs fp32 on held-out data (has_eval = 0 if none) */
    int has_eval;
    distq_eval_report eval;
    /* provenance */
    const char *config_path, *config_text, *model_path, *quantized_path;
    char isa[32], onednn_version[32], mpi_version[128], hwloc_version[32];
    char max_isa[32]; /* the ISA cap set for the run (ONEDNN_MAX_CPU_ISA, --max-isa); "" if none */
    char date[32]; /* ISO 8601 UTC */
} distq_results;

/* The whole `distq run` flow on every rank of d (collective): placement,
 * sharded calibration, convert once, accuracy, benchmark, results file
 * (cfg->results, if set). Rank 0 receives *res (free with
 * distq_results_free); warn gets this rank's placement warning, if any. */
distq_status distq_run_job(const distq_config *cfg, const char *config_path, distq_dist *d,
                           distq_progress_fn progress, void *progress_user, distq_results *res,
                           char *warn, size_t warn_len);

/* Writes r to path (tmp + rename). The distq version, git revision and HDF5
 * version are added here. */
distq_status distq_results_write(const char *path, const distq_results *r);

/* Frees what a results struct built by the run job owns: the placement
 * array, the points and their arrays. */
void distq_results_free(distq_results *r);

#ifdef __cplusplus
}
#endif
#endif
