#ifndef DISTQ_CLI_H
#define DISTQ_CLI_H
/* The command-line tool: each subcommand parses its arguments, calls the
 * library and is the only code that prints for users or picks exit codes. */
#include <stdint.h>

#include "distq/exec.h"
#include "distq/results.h"
#include "distq/status.h"

/* Exit codes: 0 ok, 1 runtime error, 2 usage error. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct {
    int rank, size;       /* MPI_COMM_WORLD */
    int local_rank, local_size; /* ranks sharing this node */
} cli_ctx;

int cmd_model(const cli_ctx *ctx, int argc, char **argv);
int cmd_import(const cli_ctx *ctx, int argc, char **argv);
int cmd_onnx_test(const cli_ctx *ctx, int argc, char **argv);
int cmd_data(const cli_ctx *ctx, int argc, char **argv);
int cmd_infer(const cli_ctx *ctx, int argc, char **argv);
int cmd_inspect(const cli_ctx *ctx, int argc, char **argv);
int cmd_ops(const cli_ctx *ctx, int argc, char **argv);
int cmd_bench(const cli_ctx *ctx, int argc, char **argv);
int cmd_calibrate(const cli_ctx *ctx, int argc, char **argv);
int cmd_eval(const cli_ctx *ctx, int argc, char **argv);
int cmd_run(const cli_ctx *ctx, int argc, char **argv);
int cmd_train(const cli_ctx *ctx, int argc, char **argv);
int cmd_qat(const cli_ctx *ctx, int argc, char **argv);

/* Prints a gathered benchmark point: per-rank lines, the all-sample
 * percentiles and one perf CSV line per rank (threads[nranks]). */
void cli_print_point(const distq_bench_point *pt, const char *model, const char *backend, const int *threads,
                     const char *cmdline);
/* For errors every rank agreed on (distq_dist_agree: the message already names
 * the failing rank): rank 0 prints it once. Returns CLI_FAIL. */
int cli_fail_agreed(const cli_ctx *ctx, const char *cmd);
/* "avx512_core_bf16", or "avx2 (capped at avx2)" when an ISA cap is set. */
const char *cli_isa_text(char *buf, size_t len);
/* "onednn" | "ref" -> backend. */
distq_status cli_parse_backend(const char *text, distq_backend *out);

/* Progress lines on stderr (calibration) end in '\r' until the last batch;
 * errors print on a fresh line. */
void cli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_progress_done(void);

/* Prints "distq <cmd>: error: <distq_error_message()>" (rank 0, or any rank
 * if all_ranks) and returns CLI_FAIL. */
int cli_fail(const cli_ctx *ctx, const char *cmd, distq_status st);
/* Prints "distq <cmd>: <message>" plus a usage hint and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Option values are parsed with distq_parse_* (distq/config.h), naming the option. */
#include "distq/config.h"

#endif
