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

#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DISTQ_RESULTS_FORMAT "distq-results"
#define DISTQ_RESULTS_VERSION 1
#define DISTQ_HOST_MAX 256 /* MPI_MAX_PROCESSOR_NAME of Open MPI; dist.c checks it */

/* Where one rank ran (dist/placement.c finds it out). */
typedef struct {
    char host[DISTQ_HOST_MAX];
    int numa_node;       /* -1 if not bound to one node */
    char cpus[256];      /* the PUs this rank runs on, hwloc list syntax "0-3,8" */
    int n_cores;         /* cores in that set (at least 1) */
    int threads;         /* oneDNN/OpenMP threads set */
    char bound_by[16];   /* "distq", "launcher" (mpirun --bind-to), or "none" */
    int oversubscribed;  /* more ranks than cores on the node */
    int membind;         /* memory bound to the NUMA node */
} distq_placement;

/* Accuracy of the int8 graph against the fp32 one on held-out data. */
typedef struct {
    int64_t images;
    double rel_l2;         /* ||int8 - fp32|| / ||fp32|| over all logits */
    double top1_agreement; /* fraction of images with the same argmax */
    int has_labels;
    double acc_fp32, acc_int8;
} distq_eval_report;

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
    /* filled by distq_results_read (the writer writes its own build's) */
    char distq_version[32], git_revision[64], hdf5_version[32];
    char **owned_strings[4]; /* the reader's copies behind config_path ... quantized_path */
} distq_results;


/* Frees one point's arrays (safe on an empty point). */
void distq_bench_point_free(distq_bench_point *pt);

/* Writes r to path (tmp + rename). The distq version, git revision and HDF5
 * version are added here. */
distq_status distq_results_write(const char *path, const distq_results *r);

/* Reads a results file back into *r (zeroed first; free with
 * distq_results_free): every rank's placement and raw samples, every point,
 * calibration, accuracy and provenance, as distq_results_write wrote them.
 * The one reader of the layout (inspect formats what it returns). Errors
 * name the file and the group, dataset or attribute at fault. */
distq_status distq_results_read(const char *path, distq_results *r);

/* Frees what a results struct built by the run job or the reader owns: the placement
 * array, the points and their arrays. */
void distq_results_free(distq_results *r);

#ifdef __cplusplus
}
#endif
#endif
