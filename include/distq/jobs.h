#ifndef DISTQ_JOBS_H
#define DISTQ_JOBS_H
/*
 * Whole flows on files: PTQ (load -> prepare -> calibrate over a dataset ->
 * convert -> save) and evaluation of a quantized model against its fp32 self.
 * They run on one rank or many: a global batch of B images is split into
 * contiguous blocks over the ranks (rank r of n gets images
 * [s + r*B/n, s + (r+1)*B/n) of the batch starting at s, integer division), so
 * the images in every global batch do not depend on n. With a reducer the
 * observers stay identical on every rank; rank 0 writes the output.
 */
#include <mpi.h>
#include <stdint.h>

#include "distq/bench.h"
#include "distq/config.h"
#include "distq/dist.h"
#include "distq/exec.h"
#include "distq/quant.h"
#include "distq/results.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads the fp32 model at path for inference on backend b: on oneDNN with
 * BN folded into the preceding conv (the frozen graph); on ref as written. */
distq_status distq_job_load_fp32(const char *path, distq_backend b, distq_graph **out);

typedef struct {
    int64_t batches_done, batches_total, images_done, images_total;
    double elapsed_s;
} distq_progress;
typedef void (*distq_progress_fn)(void *user, const distq_progress *p);

typedef struct {
    MPI_Comm comm;    /* the ranks sharing the job; MPI_COMM_NULL alone */
    int rank, nranks; /* this rank's place; 0 of 1 alone */
    const distq_reducer *reducer; /* NULL alone */
    distq_progress_fn progress;   /* optional, called after each batch */
    void *progress_user;
} distq_job_ctx;

/* A job on this process alone. */
static inline distq_job_ctx distq_job_alone(void)
{
    return (distq_job_ctx){.comm = MPI_COMM_NULL, .rank = 0, .nranks = 1};
}

/* The fp32 model at path for a job on ctx's ranks (ctx may be NULL): an ONNX
 * file is parsed by rank 0 alone and reaches the others as the bytes of a
 * model file (distq_model_to_image), not parsed once per rank; any rank's
 * failure is every rank's. Collective when ctx has more than one rank. */
distq_status distq_job_load_model(const char *path, const distq_job_ctx *ctx, distq_graph **out);

typedef struct {
    int64_t images, batches;
    int n_observers;
    int reduce_range; /* what convert used */
    double load_s, prepare_s, calibrate_s, forward_s, observe_s, convert_s, save_s;
} distq_ptq_report;

/* Rows [first, first + count) of this rank's part of the global batch that
 * starts at `start` and holds `size` images. */
void distq_shard_rows(int64_t start, int64_t size, int rank, int nranks, int64_t *first, int64_t *count);

/* cfg: model, calib_data, calib_batches, calib_batch_size, observer,
 * reduce_range, quantized. Every rank calibrates its shards; rank 0 converts
 * once and writes cfg->quantized; the other ranks then load that file, so
 * every rank's *q_out (optional) is the int8 graph in the file. A failure on
 * any rank fails the job on every rank (through the reducer's agree). */
distq_status distq_ptq_run(const distq_config *cfg, const distq_job_ctx *ctx, distq_ptq_report *rep,
                           distq_graph **q_out);

/* Per-rank sums, plain doubles so ranks can MPI_SUM them as an array. */
typedef struct {
    double images, sq_diff, sq_ref; /* logits: sum (int8 - fp32)^2, sum fp32^2 */
    double agree;                   /* images whose int8 and fp32 argmax agree */
    double labeled, correct_fp32, correct_int8;
} distq_eval_sums;
#define DISTQ_EVAL_SUMS_COUNT 7


/* Runs the fp32 graph (oneDNN) and the int8 graph (backend b) over this
 * rank's shards of data_path (global batches of batch_size) and adds to *sums
 * (the caller sums them over ranks). */
distq_status distq_eval_run(const distq_graph *fp32, const distq_graph *q, distq_backend b,
                            const char *data_path, int64_t batch_size, const distq_job_ctx *ctx,
                            distq_eval_sums *sums);
void distq_eval_finish(const distq_eval_sums *sums, distq_eval_report *rep);

/* --- data-parallel fp32 training (src/jobs/train.c) ------------------------ */

typedef struct {
    int64_t epoch, epochs, step;
    double lr, loss, train_acc, test_acc; /* test_acc -1 without [train] test */
    double images_per_s, elapsed_s;       /* training images/s over all ranks */
} distq_epoch_report;
typedef void (*distq_epoch_fn)(void *user, const distq_epoch_report *r);

typedef struct {
    int64_t steps, images;
    double train_s;
    int64_t allreduce_bytes; /* gradient all-reduce payload per rank */
    distq_epoch_report final;      /* QAT: test_acc is the fake-quant model's */
    double int8_test_acc;          /* QAT: the converted int8 model's (-1 without test data) */
    int reduce_range;              /* QAT: what convert used */
    int threads;                   /* this rank's threads (placement: an mpirun binding is kept) */
} distq_train_report;

struct distq_dist;
/* Collective over d. cfg: [model] path (or, with resume, [train] checkpoint),
 * [train] data, test, epochs, batch_size (global), lr schedule, momentum,
 * weight_decay, seed, max_steps, checkpoint, output. qat != 0: QAT from the
 * fp32 model (distq/qat.h) with [qat] freeze_bn_after, freeze_observers_after,
 * reduce_range; at the end the model is converted, [output] quantized is
 * written (rank 0) and the int8 test accuracy measured. */
distq_status distq_train_job(const distq_config *cfg, struct distq_dist *d, int qat, int resume, distq_epoch_fn on_epoch,
                             void *user, distq_train_report *rep);

/* --- benchmark points and the whole run (src/jobs/mbench.c, run.c) -------- */

/* Collective over d: benchmarks g (fp32) or q (int8, if not NULL) at `batch`
 * on every rank; serial = one rank at a time. Rank 0 receives the gathered
 * point (free with distq_bench_point_free); other ranks get it empty. */
distq_status distq_bench_point_run(distq_dist *d, const distq_graph *g, const distq_graph *q,
                                   distq_backend b, int64_t batch, const distq_bench_opts *opts, int serial,
                                   uint64_t seed, distq_bench_point *pt);

/* The whole `distq run` flow on every rank of d (collective): placement,
 * sharded calibration, convert once, accuracy, benchmark, results file
 * (cfg->results, if set). Rank 0 receives *res (free with
 * distq_results_free); warn gets this rank's placement warning, if any. */
distq_status distq_run_job(const distq_config *cfg, const char *config_path, distq_dist *d,
                           distq_progress_fn progress, void *progress_user, distq_results *res,
                           char *warn, size_t warn_len);

/* --- ONNX test cases (src/jobs/onnx_test.c) ----------------------------------
 * A folder in ONNX's test-case layout (model.onnx, test_data_set_N/input_K.pb
 * and output_*.pb, as in Debian's libonnx-testdata or what
 * scripts/export_torchvision.py writes): imported with graph inputs after the
 * first bound to their data as constants, run on a backend at the batch of
 * input_0, compared with output_0. */
typedef struct {
    double rtol, atol; /* ONNX's runner: |out - ref| <= atol + rtol |ref|, 1e-3 and 1e-7 */
    double logits_tol; /* > 0: max |out - ref| <= logits_tol * max |ref| instead (whole models) */
} distq_onnx_test_tol;
typedef enum { DISTQ_CASE_PASSED = 0, DISTQ_CASE_FAILED, DISTQ_CASE_REFUSED } distq_case_outcome;
typedef struct {
    distq_case_outcome outcome;
    int n_sets;            /* data sets compared */
    double max_abs_err;    /* the largest |out - ref| */
    double max_abs_ref;    /* the largest |ref| */
    char detail[768];      /* why it was refused, or where it differs most */
} distq_onnx_case_result;
/* Never an error: what goes wrong is the case's outcome (a refusal names the
 * file, node, op or tensor at fault). */
void distq_onnx_test_case(const char *dir, distq_backend b, const distq_onnx_test_tol *tol,
                          distq_onnx_case_result *r);

#ifdef __cplusplus
}
#endif
#endif
