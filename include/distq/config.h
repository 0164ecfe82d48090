#ifndef DISTQ_CONFIG_H
#define DISTQ_CONFIG_H
/*
 * Job configuration files (INI, parsed by Debian's libinih). Every key is
 * optional; unknown sections or keys are errors that name the file, line and
 * key. Paths are used as written (relative to the working directory).
 *
 *     [model]        path = results/resnet18.h5
 *     [calibration]  data = ..., batches = 8 (0 = all), batch_size = 8,
 *                    observer = histogram | minmax, reduce_range = auto|on|off,
 *                    exclude = node-name globs or op names, comma-separated (fp32)
 *     [output]       quantized = results/resnet18_q.h5, results = results/run.h5
 *     [bench]        batch = 1,50   min_time = 5   min_iters = 10   warmup = 2
 *                    threads = 0 (auto)   precision = fp32,int8
 *     [eval]         data = ...,  batch_size = 50
 *     [run]          bind = none | core | numa,  concurrency = all | serial
 *     [train]        data, test, epochs = 8, batch_size = 128 (global), lr = 0.05,
 *                    momentum = 0.9, weight_decay = 5e-4, lr_step_epochs = 3,
 *                    lr_gamma = 0.1, seed = 0, max_steps = 0 (no limit),
 *                    checkpoint = ..., output = ...
 *     [qat]          freeze_bn_after = 0, freeze_observers_after = 0 (optimizer
 *                    steps; 0 = never), reduce_range = auto|on|off (as
 *                    [calibration]); the int8 model goes to [output] quantized
 */
#include <stdint.h>

#include "distq/dist.h"
#include "distq/io.h"
#include "distq/quant.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DISTQ_MAX_BENCH_BATCHES 16

typedef struct {
    char model[DISTQ_PATH_MAX];
    char calib_data[DISTQ_PATH_MAX];
    int64_t calib_batches;    /* 0 = every image */
    int64_t calib_batch_size; /* global batch (all ranks together) */
    distq_observer_kind observer;
    int reduce_range; /* -1 auto (on where oneDNN lacks VNNI), 0 off, 1 on */
    char calib_exclude[4 * DISTQ_PATH_MAX]; /* nodes kept fp32 (distq_prepare_excluding) */
    char quantized[DISTQ_PATH_MAX];
    char results[DISTQ_PATH_MAX];
    int64_t bench_batch[DISTQ_MAX_BENCH_BATCHES];
    int n_bench_batch;
    double bench_min_time_s;
    int64_t bench_min_iters, bench_warmup, bench_threads;
    int bench_fp32, bench_int8; /* precisions to benchmark */
    char eval_data[DISTQ_PATH_MAX];
    int64_t eval_batch_size;
    distq_bind bind;      /* placement of ranks (default core) */
    /* [train]: data-parallel fp32 training */
    char train_data[DISTQ_PATH_MAX], test_data[DISTQ_PATH_MAX];
    char checkpoint[DISTQ_PATH_MAX]; /* written after every epoch (rank 0) */
    char trained[DISTQ_PATH_MAX];    /* the final model */
    int64_t epochs, train_batch_size, train_seed, lr_step_epochs, max_steps;
    double lr, momentum, weight_decay, lr_gamma;
    /* [qat]: optimizer steps after which BN statistics / observers freeze (0 = never) */
    int64_t qat_freeze_bn_after, qat_freeze_observers_after;
    int bench_serial;     /* [run] concurrency = serial: one rank at a time */
    char *text; /* the file's full text (for provenance); owned */
} distq_config;

/* Defaults: 8 batches of 8, histogram, bench 1,50 / 5 s / 10 iters / warmup 2,
 * int8 only, eval batch 50. */
void distq_config_defaults(distq_config *c);
/* Reads path over the current values of c. */
distq_status distq_config_load(const char *path, distq_config *c);
void distq_config_free(distq_config *c);

/* Parsers shared with the CLI; errors name `what` (an option or a key). */
distq_status distq_parse_i64(const char *what, const char *text, int64_t lo, int64_t hi, int64_t *out);
distq_status distq_parse_double(const char *what, const char *text, double lo, double *out);
/* Comma-separated positive integers ("1,50"). */
distq_status distq_parse_i64_list(const char *what, const char *text, int max, int64_t *out, int *count);
/* "auto" (-1), "on" (1), "off" (0). */
distq_status distq_parse_auto_bool(const char *what, const char *text, int *out);
/* "fp32", "int8" or "fp32,int8". */
distq_status distq_parse_precisions(const char *what, const char *text, int *fp32, int *int8);

#ifdef __cplusplus
}
#endif
#endif
