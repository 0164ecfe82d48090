/*
 * distq bench: every rank builds the frozen executor and benchmarks it for
 * each batch size, all starting together after a barrier; rank 0 prints one
 * line per rank plus a machine-readable `perf,...` CSV line per point.
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

static const char bench_usage[] =
    "--model M [--batch 1,50] [--warmup W] [--iters N] [--min-time S] [--threads T]\n"
    "       [--backend onednn|ref] [--seed S]";

#define MAX_BATCHES 16
/* Per-rank figures gathered to rank 0, in this order. */
enum { F_SETUP, F_FIRST, F_P50, F_P90, F_P99, F_IPS, F_ITERS, F_THREADS, F_COUNT };

typedef struct {
    const char *model;
    int64_t batches[MAX_BATCHES];
    int n_batches;
    distq_bench_opts opts;
    int64_t threads, seed;
    distq_backend backend;
} bench_args;

/* Benchmarks one batch size on this rank; fills fig[F_COUNT]. */
static distq_status bench_one(const distq_graph *g, const bench_args *a, int64_t batch,
                              double fig[F_COUNT])
{
    distq_exec *e = NULL;
    float *in = NULL, *out = NULL;
    distq_bench_result res = {0};
    double t0 = distq_now_s();
    distq_status st = distq_exec_create(a->backend, g, batch, &e);
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
    if (worst && !mine)
        return distq_error_set((distq_status)worst, "another rank failed (see its message)");
    return st;
}

static void print_point(const cli_ctx *ctx, const bench_args *a, const char *cmdline,
                        int64_t batch, const double *all)
{
    double total_ips = 0.0;
    for (int r = 0; r < ctx->size; r++) {
        const double *f = all + r * F_COUNT;
        total_ips += f[F_IPS];
        printf("  bs %-4lld rank %d  threads %d  setup %7.1f ms  first %8.2f ms  p50 %8.2f  p90 %8.2f"
               "  p99 %8.2f ms  %8.1f images/s  (%d iters)\n",
               (long long)batch, r, (int)f[F_THREADS], 1e3 * f[F_SETUP], 1e3 * f[F_FIRST],
               1e3 * f[F_P50], 1e3 * f[F_P90], 1e3 * f[F_P99], f[F_IPS], (int)f[F_ITERS]);
    }
    if (ctx->size > 1)
        printf("  bs %-4lld all %d ranks: %.1f images/s\n", (long long)batch, ctx->size, total_ips);
    for (int r = 0; r < ctx->size; r++) {
        const double *f = all + r * F_COUNT;
        printf("perf,%s,fp32,%s,%lld,%d,%d,%d,%.4f,%.4f,%.4f,%.2f,%s,\"%s\"\n", a->model,
               distq_backend_name(a->backend), (long long)batch, r, ctx->size, (int)f[F_THREADS],
               1e3 * f[F_P50], 1e3 * f[F_P90], 1e3 * f[F_P99], f[F_IPS], distq_onednn_isa(),
               cmdline);
    }
}

static int parse_bench_args(int argc, char **argv, bench_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"batch", required_argument, 0, 'b'},
        {"warmup", required_argument, 0, 'w'},  {"iters", required_argument, 0, 'i'},
        {"min-iters", required_argument, 0, 'i'}, {"min-time", required_argument, 0, 't'},
        {"threads", required_argument, 0, 'T'}, {"backend", required_argument, 0, 'B'},
        {"seed", required_argument, 0, 's'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'b': st = cli_parse_i64_list("--batch", optarg, MAX_BATCHES, a->batches, &a->n_batches); break;
        case 'w': st = cli_parse_i64("--warmup", optarg, 0, 1000000, &a->opts.warmup); break;
        case 'i': st = cli_parse_i64("--iters", optarg, 1, 100000000, &a->opts.min_iters); break;
        case 't': st = cli_parse_double("--min-time", optarg, 0.0, &a->opts.min_time_s); break;
        case 'T': st = cli_parse_i64("--threads", optarg, 1, 4096, &a->threads); break;
        case 'B': st = cli_parse_backend(optarg, &a->backend); break;
        case 's': st = cli_parse_i64("--seed", optarg, 0, INT64_MAX, &a->seed); break;
        case 'h': printf("usage: distq bench %s\n", bench_usage); return -1;
        default: return cli_usage_error("bench", bench_usage, "bad option");
        }
        if (st) return cli_usage_error("bench", bench_usage, "%s", distq_error_message());
    }
    if (!a->model) return cli_usage_error("bench", bench_usage, "--model is required");
    return CLI_OK;
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
    double *all = NULL;
    distq_status st = distq_model_load(a.model, &g);
    if (!st) st = distq_onednn_set_threads((int)a.threads);
    if (ctx->rank == 0 && (all = distq_malloc((size_t)ctx->size * F_COUNT * sizeof *all)) == NULL)
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    if ((st = agree(st))) goto cleanup;
    if (ctx->rank == 0)
        printf("distq bench: %s, %s fp32, %d rank(s), oneDNN ISA %s\n", a.model,
               distq_backend_name(a.backend), ctx->size, distq_onednn_isa());
    for (int b = 0; b < a.n_batches; b++) {
        double fig[F_COUNT] = {0};
        /* All ranks start each point together (a multi-instance benchmark). */
        MPI_Barrier(MPI_COMM_WORLD);
        st = bench_one(g, &a, a.batches[b], fig);
        if ((st = agree(st))) goto cleanup;
        if (MPI_Gather(fig, F_COUNT, MPI_DOUBLE, all, F_COUNT, MPI_DOUBLE, 0, MPI_COMM_WORLD) !=
            MPI_SUCCESS) {
            st = distq_error_set(DISTQ_ERR_MPI, "MPI_Gather of bench results failed");
            goto cleanup;
        }
        if (ctx->rank == 0) print_point(ctx, &a, cmdline, a.batches[b], all);
        fflush(stdout);
    }
cleanup:
    distq_free(all);
    distq_graph_destroy(g);
    return st ? cli_fail(ctx, "bench", st) : CLI_OK;
}
