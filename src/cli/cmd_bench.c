/*
 * distq bench: every rank builds the frozen executor(s) and benchmarks them for
 * each batch size and precision, all ranks starting together after a barrier;
 * rank 0 prints one line per rank plus a machine-readable `perf,...` CSV line
 * per point. A quantized model runs int8 (and fp32, its float graph, with
 * --precision fp32,int8, printing the int8/fp32 speed-up of the same run).
 */
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "distq/bench.h"
#include "distq/exec.h"
#include "distq/io.h"
#include "distq/quant.h"

static const char bench_usage[] =
    "--model M [--batch 1,50] [--precision fp32,int8] [--warmup W] [--min-iters N]\n"
    "       [--min-time S] [--threads T] [--backend onednn|ref] [--seed S]";

/* Per-rank figures gathered to rank 0, in this order. */
enum { F_SETUP, F_FIRST, F_P50, F_P90, F_P99, F_IPS, F_ITERS, F_THREADS, F_COUNT };

typedef struct {
    const char *model;
    int64_t batches[DISTQ_MAX_BENCH_BATCHES];
    int n_batches;
    int fp32, int8, precision_given;
    distq_bench_opts opts;
    int64_t threads, seed;
    distq_backend backend;
} bench_args;

/* Benchmarks one (batch, precision) point on this rank; fills fig[F_COUNT]. */
static distq_status bench_one(const distq_graph *g, const distq_qgraph *q, const bench_args *a,
                              int64_t batch, double fig[F_COUNT])
{
    distq_exec *e = NULL;
    float *in = NULL, *out = NULL;
    distq_bench_result res = {0};
    double t0 = distq_now_s();
    distq_status st = q ? distq_exec_create_int8(a->backend, q, batch, &e)
                        : distq_exec_create(a->backend, g, batch, &e);
    if (st) goto cleanup;
    fig[F_SETUP] = distq_now_s() - t0;
    int64_t in_n = batch * distq_exec_input_numel(e), out_n = batch * distq_exec_output_numel(e);
    in = distq_malloc((size_t)in_n * sizeof *in);
    out = distq_malloc((size_t)out_n * sizeof *out);
    if (!in || !out) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory for batch %lld", (long long)batch);
        goto cleanup;
    }
    distq_rng r;
    distq_rng_seed(&r, (uint64_t)a->seed);
    for (int64_t i = 0; i < in_n; i++) in[i] = distq_rng_normal(&r);
    if ((st = distq_bench_run(e, in, out, &a->opts, &res))) goto cleanup;
    fig[F_FIRST] = res.first_s;
    fig[F_P50] = res.p50_s;
    fig[F_P90] = res.p90_s;
    fig[F_P99] = res.p99_s;
    fig[F_IPS] = res.images_per_s;
    fig[F_ITERS] = (double)res.iters;
    fig[F_THREADS] = (double)a->threads;
cleanup:
    distq_bench_result_free(&res);
    distq_exec_destroy(e);
    distq_free(in);
    distq_free(out);
    return st;
}

/* The whole run's status, agreed by all ranks (so none waits in a collective). */
static distq_status agree(distq_status st)
{
    int mine = st, worst = 0;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return distq_error_set(DISTQ_ERR_MPI, "MPI_Allreduce of the bench status failed");
    if (worst && !mine) return distq_error_set((distq_status)worst, "stopped: another rank failed");
    return st;
}

/* Prints one point; returns the aggregate images/s over ranks. */
static double print_point(const cli_ctx *ctx, const bench_args *a, const char *cmdline, const char *prec,
                          int64_t batch, const double *all)
{
    double total_ips = 0.0;
    for (int r = 0; r < ctx->size; r++) {
        const double *f = all + r * F_COUNT;
        total_ips += f[F_IPS];
        printf("  %-4s bs %-4lld rank %d  threads %d  setup %7.1f ms  first %8.2f ms  p50 %8.2f  p90 %8.2f"
               "  p99 %8.2f ms  %8.1f images/s  (%d iters)\n",
               prec, (long long)batch, r, (int)f[F_THREADS], 1e3 * f[F_SETUP], 1e3 * f[F_FIRST],
               1e3 * f[F_P50], 1e3 * f[F_P90], 1e3 * f[F_P99], f[F_IPS], (int)f[F_ITERS]);
    }
    if (ctx->size > 1)
        printf("  %-4s bs %-4lld all %d ranks: %.1f images/s\n", prec, (long long)batch, ctx->size, total_ips);
    for (int r = 0; r < ctx->size; r++) {
        const double *f = all + r * F_COUNT;
        printf("perf,%s,%s,%s,%lld,%d,%d,%d,%.4f,%.4f,%.4f,%.2f,%s,\"%s\"\n", a->model, prec,
               distq_backend_name(a->backend), (long long)batch, r, ctx->size, (int)f[F_THREADS],
               1e3 * f[F_P50], 1e3 * f[F_P90], 1e3 * f[F_P99], f[F_IPS], distq_onednn_isa(), cmdline);
    }
    return total_ips;
}

static int parse_bench_args(int argc, char **argv, bench_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"batch", required_argument, 0, 'b'},
        {"warmup", required_argument, 0, 'w'},    {"iters", required_argument, 0, 'i'},
        {"min-iters", required_argument, 0, 'i'}, {"min-time", required_argument, 0, 't'},
        {"threads", required_argument, 0, 'T'},   {"backend", required_argument, 0, 'B'},
        {"seed", required_argument, 0, 's'},      {"precision", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'b': st = distq_parse_i64_list("option --batch", optarg, DISTQ_MAX_BENCH_BATCHES, a->batches, &a->n_batches); break;
        case 'w': st = distq_parse_i64("option --warmup", optarg, 0, 1000000, &a->opts.warmup); break;
        case 'i': st = distq_parse_i64("option --min-iters", optarg, 1, 100000000, &a->opts.min_iters); break;
        case 't': st = distq_parse_double("option --min-time", optarg, 0.0, &a->opts.min_time_s); break;
        case 'T': st = distq_parse_i64("option --threads", optarg, 1, 4096, &a->threads); break;
        case 'B': st = cli_parse_backend(optarg, &a->backend); break;
        case 's': st = distq_parse_i64("option --seed", optarg, 0, INT64_MAX, &a->seed); break;
        case 'p':
            st = distq_parse_precisions("option --precision", optarg, &a->fp32, &a->int8);
            a->precision_given = 1;
            break;
        case 'h': printf("usage: distq bench %s\n", bench_usage); return -1;
        default: return cli_usage_error("bench", bench_usage, "bad option");
        }
        if (st) return cli_usage_error("bench", bench_usage, "%s", distq_error_message());
    }
    if (!a->model) return cli_usage_error("bench", bench_usage, "--model is required");
    return CLI_OK;
}

/* Loads the float graph, and the int8 graph when the file is quantized and int8 is asked for. */
static distq_status load_models(bench_args *a, distq_graph **g, distq_qgraph **q)
{
    int quantized = 0;
    distq_status st = distq_model_is_quantized(a->model, &quantized);
    if (st) return st;
    if (!a->precision_given) {
        a->fp32 = !quantized;
        a->int8 = quantized;
    }
    if (a->int8 && !quantized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: int8 asked for, but the model is not quantized "
                                                      "(run distq calibrate first)", a->model);
    if (a->int8 && (st = distq_qmodel_load(a->model, q, NULL))) return st;
    if (a->fp32 && (st = distq_model_load(a->model, g))) return st;
    return DISTQ_OK;
}

int cmd_bench(const cli_ctx *ctx, int argc, char **argv)
{
    bench_args a = {.batches = {1, 50}, .n_batches = 2,
                    .opts = {.warmup = 2, .min_iters = 10, .min_time_s = 2.0},
                    .backend = DISTQ_BACKEND_ONEDNN};
    int rc = parse_bench_args(argc, argv, &a);
    if (rc) return rc < 0 ? CLI_OK : rc;
    char cmdline[1024] = "distq";
    for (int i = 0; i < argc; i++) {
        size_t used = strlen(cmdline);
        snprintf(cmdline + used, sizeof cmdline - used, " %s", argv[i]);
    }
    if (a.threads == 0) {
        /* Share this node's cores among its ranks. */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        a.threads = cores / ctx->local_size > 0 ? cores / ctx->local_size : 1;
    }

    distq_graph *g = NULL;
    distq_qgraph *q = NULL;
    double *all = NULL;
    distq_status st = load_models(&a, &g, &q);
    if (!st) st = distq_onednn_set_threads((int)a.threads);
    if (!st && ctx->rank == 0 && (all = distq_malloc((size_t)ctx->size * F_COUNT * sizeof *all)) == NULL)
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    if ((st = agree(st))) goto cleanup;
    if (ctx->rank == 0)
        printf("distq bench: %s, %s%s%s, %d rank(s), oneDNN ISA %s\n", a.model, distq_backend_name(a.backend),
               a.fp32 ? " fp32" : "", a.int8 ? " int8" : "", ctx->size, distq_onednn_isa());
    for (int b = 0; b < a.n_batches; b++) {
        double ips[2] = {0, 0};
        for (int prec = 0; prec < 2; prec++) {
            if (prec == 0 ? !a.fp32 : !a.int8) continue;
            double fig[F_COUNT] = {0};
            /* All ranks start each point together (a multi-instance benchmark). */
            MPI_Barrier(MPI_COMM_WORLD);
            st = bench_one(g, prec ? q : NULL, &a, a.batches[b], fig);
            if ((st = agree(st))) goto cleanup;
            if (MPI_Gather(fig, F_COUNT, MPI_DOUBLE, all, F_COUNT, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
                st = distq_error_set(DISTQ_ERR_MPI, "MPI_Gather of bench results failed");
                goto cleanup;
            }
            if (ctx->rank == 0)
                ips[prec] = print_point(ctx, &a, cmdline, prec ? "int8" : "fp32", a.batches[b], all);
            fflush(stdout);
        }
        if (ctx->rank == 0 && a.fp32 && a.int8)
            printf("  bs %-4lld int8/fp32 speed-up: %.2fx (same run)\n", (long long)a.batches[b], ips[1] / ips[0]);
    }
cleanup:
    distq_free(all);
    distq_qgraph_destroy(q);
    distq_graph_destroy(g);
    if (st && strstr(distq_error_message(), "another rank failed")) return CLI_FAIL; /* that rank reports */
    return st ? cli_fail(ctx, "bench", st) : CLI_OK;
}
