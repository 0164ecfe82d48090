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
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/bench.h"
#include "distq/dist.h"
#include "distq/exec.h"
#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/quant.h"
#include "distq/results.h"
#include "distq/tensor.h"

static const char bench_usage[] =
    "--model M [--batch 1,50] [--precision fp32,int8] [--warmup W] [--min-iters N]\n"
    "       [--min-time S] [--threads T] [--bind none|core|numa] [--concurrency all|serial]\n"
    "       [--backend onednn|ref] [--seed S] [--max-isa avx2|avx512_core|avx512_core_vnni|...]\n"
    "       [--profile]";

typedef struct {
    const char *model;
    int64_t batches[DISTQ_MAX_BENCH_BATCHES];
    int n_batches;
    int fp32, int8, precision_given, serial;
    distq_bench_opts opts;
    int64_t threads, seed;
    distq_backend backend;
    distq_bind bind;
    int profile; /* --profile: time per step after each point (rank 0) */
} bench_args;

static int cmp_step_desc(const void *a, const void *b)
{
    double x = ((const distq_profile_step *)a)->seconds, y = ((const distq_profile_step *)b)->seconds;
    return (x < y) - (x > y);
}

/* --profile: the graph run step by step (each waited for) on rank 0, as
 * benchmark_app's -pc: the costliest steps, the time by kind, and the sum of
 * oneDNN's primitives against the benchmark's p50 (what runs outside them). */
static distq_status print_profile(const distq_graph *g, distq_backend b, int64_t batch, uint64_t seed,
                                  int64_t iters, double p50_s)
{
    distq_exec *e = NULL;
    distq_profile_step *rows = NULL;
    int n = 0;
    double wall = 0;
    float *in = NULL, *out = NULL;
    distq_status st = distq_exec_create(b, g, batch, &e);
    if (!st) {
        in = distq_malloc((size_t)(distq_exec_input_numel(e) * batch) * sizeof *in);
        out = distq_malloc((size_t)(distq_exec_output_numel(e) * batch) * sizeof *out);
        if (!in || !out) st = distq_error_set(DISTQ_ERR_NOMEM, "profile: out of memory");
    }
    if (!st) {
        distq_rng r; /* the benchmark's inputs: N(0, 1) from the seed */
        distq_rng_seed(&r, seed);
        for (int64_t i = 0; i < distq_exec_input_numel(e) * batch; i++) in[i] = distq_rng_normal(&r);
        for (int w = 0; w < 2 && !st; w++) st = distq_exec_run(e, in, out);
    }
    if (!st) st = distq_exec_profile(e, in, out, (int)iters, &rows, &n, &wall);
    if (st) goto cleanup;
    double total = 0, prims = 0, csteps = 0, reorders = 0;
    for (int i = 0; i < n; i++) {
        total += rows[i].seconds;
        if (strcmp(rows[i].kind, "C step") == 0) csteps += rows[i].seconds;
        else if (strncmp(rows[i].kind, "reorder", 7) == 0) reorders += rows[i].seconds;
        else prims += rows[i].seconds;
    }
    const double per = 1e3 / (double)iters;
    printf("  profile bs %lld (%lld runs, each step waited for): %d steps, %.3f ms per run in steps, %.3f ms wall\n",
           (long long)batch, (long long)iters, n, total * per, wall * per);
    printf("    primitives %.3f ms, reorders %.3f ms, C steps %.3f ms per run; primitives = %.0f%% of the benchmark's "
           "p50 %.3f ms\n", prims * per, reorders * per, csteps * per, 100.0 * prims * per / (1e3 * p50_s), 1e3 * p50_s);
    qsort(rows, (size_t)n, sizeof *rows, cmp_step_desc);
    for (int i = 0; i < n && i < 12; i++)
        printf("    %8.3f ms %5.1f%%  %-40s %s\n", rows[i].seconds * per, 100.0 * rows[i].seconds / total,
               rows[i].kind, rows[i].node);
cleanup:
    free(rows);
    distq_free(in);
    distq_free(out);
    distq_exec_destroy(e);
    return st;
}

/* Prints one gathered point (rank 0). */
void cli_print_point(const distq_bench_point *pt, const char *model, const char *backend, const int *threads,
                     const char *cmdline)
{
    for (int r = 0; r < pt->nranks; r++)
        printf("  %-4s bs %-4lld rank %d  threads %d  setup %7.1f ms  first %8.2f ms  %8.1f images/s  (%lld iters)\n",
               pt->precision, (long long)pt->batch, r, threads[r], 1e3 * pt->setup_s[r], 1e3 * pt->first_s[r],
               pt->images_per_s[r], (long long)pt->iters[r]);
    printf("  %-4s bs %-4lld %s %d rank(s): p50 %.2f  p90 %.2f  p99 %.2f ms (all samples), %.1f images/s\n",
           pt->precision, (long long)pt->batch, pt->nranks > 1 ? pt->concurrency : "on", pt->nranks,
           1e3 * pt->p50_s, 1e3 * pt->p90_s, 1e3 * pt->p99_s, pt->aggregate_images_per_s);
    for (int r = 0; r < pt->nranks; r++) {
        double p50 = distq_percentile(pt->samples_s[r], pt->iters[r], 50.0);
        double p90 = distq_percentile(pt->samples_s[r], pt->iters[r], 90.0);
        double p99 = distq_percentile(pt->samples_s[r], pt->iters[r], 99.0);
        printf("perf,%s,%s,%s,%lld,%d,%d,%d,%.4f,%.4f,%.4f,%.2f,%s,\"%s\"\n", model, pt->precision, backend,
               (long long)pt->batch, r, pt->nranks, threads[r], 1e3 * p50, 1e3 * p90, 1e3 * p99,
               pt->images_per_s[r], distq_onednn_isa(), cmdline);
    }
}

static int parse_bench_args(int argc, char **argv, bench_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"batch", required_argument, 0, 'b'},
        {"warmup", required_argument, 0, 'w'},    {"iters", required_argument, 0, 'i'},
        {"min-iters", required_argument, 0, 'i'}, {"min-time", required_argument, 0, 't'},
        {"threads", required_argument, 0, 'T'},   {"backend", required_argument, 0, 'B'},
        {"seed", required_argument, 0, 's'},      {"precision", required_argument, 0, 'p'},
        {"bind", required_argument, 0, 'N'},      {"concurrency", required_argument, 0, 'C'},
        {"max-isa", required_argument, 0, 'I'},   {"help", no_argument, 0, 'h'},
        {"profile", no_argument, 0, 'P'},
        {0, 0, 0, 0}};
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
        case 'N': st = distq_bind_from_name(optarg, &a->bind); break;
        case 'I': /* benchdnn's --max-isa: before anything asks oneDNN for its ISA */
            if ((st = distq_onednn_set_max_isa(optarg)))
                st = distq_error_set(st, "option --max-isa: %s", distq_error_message());
            break;
        case 'C':
            if (strcmp(optarg, "all") && strcmp(optarg, "serial"))
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "option --concurrency: '%s' (all, serial)", optarg);
            a->serial = strcmp(optarg, "serial") == 0;
            break;
        case 'P': a->profile = 1; break;
        case 'h': printf("usage: distq bench %s\n", bench_usage); return -1;
        default: return cli_usage_error("bench", bench_usage, "bad option");
        }
        if (st) return cli_usage_error("bench", bench_usage, "%s", distq_error_message());
    }
    if (optind < argc) return cli_usage_error("bench", bench_usage, "unexpected argument '%s'", argv[optind]);
    if (!a->model) return cli_usage_error("bench", bench_usage, "--model is required");
    return CLI_OK;
}

/* Loads the float graph, and the int8 graph when the file is quantized and int8 is asked for. */
static distq_status load_models(bench_args *a, distq_graph **g, distq_graph **q)
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
    if (a->fp32 && (st = distq_job_load_fp32(a->model, a->backend, g))) return st;
    return DISTQ_OK;
}

int cmd_bench(const cli_ctx *ctx, int argc, char **argv)
{
    bench_args a = {.batches = {1, 50}, .n_batches = 2,
                    .opts = {.warmup = 2, .min_iters = 10, .min_time_s = 2.0},
                    .backend = DISTQ_BACKEND_ONEDNN, .bind = DISTQ_BIND_CORE};
    int rc = parse_bench_args(argc, argv, &a);
    if (rc) return rc < 0 ? CLI_OK : rc;
    char cmdline[1024] = "distq";
    for (int i = 0; i < argc; i++) {
        size_t used = strlen(cmdline);
        snprintf(cmdline + used, sizeof cmdline - used, " %s", argv[i]);
    }
    distq_dist d;
    distq_placement pl;
    distq_graph *g = NULL;
    distq_graph *q = NULL;
    int *threads = NULL;
    char warn[256] = "";
    distq_status st = distq_dist_init_world(&d);
    if (st) return cli_fail(ctx, "bench", st);
    st = distq_place(&d, a.bind, (int)a.threads, &pl, warn, sizeof warn);
    if (!st) st = load_models(&a, &g, &q);
    if (!st && ctx->rank == 0 && !(threads = distq_malloc((size_t)d.size * sizeof *threads)))
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    if ((st = distq_dist_agree(&d, st))) goto cleanup;
    if (warn[0]) fprintf(stderr, "distq bench: warning (rank %d): %s\n", d.rank, warn);
    if ((st = distq_dist_gather(&d, &pl.threads, (int)sizeof pl.threads, threads, "thread counts"))) goto cleanup;
    if (ctx->rank == 0) {
        char isa[96];
        printf("distq bench: %s, %s%s%s, %d rank(s) (%s), oneDNN ISA %s\n", a.model, distq_backend_name(a.backend),
               a.fp32 ? " fp32" : "", a.int8 ? " int8" : "", d.size, a.serial ? "one at a time" : "all at once",
               cli_isa_text(isa, sizeof isa));
        if (q && distq_graph_reduce_range(q))
            printf("  int8 activations on the 7-bit grid u8 [0, 127] (reduce_range: %s)\n",
                   distq_backend_caps_of(DISTQ_BACKEND_ONEDNN).u8s8_exact ? "the model was quantized so; this ISA has VNNI and could use 8 bits"
                                           : "this ISA has no VNNI, whose u8*s8 pair sums would saturate");
    }
    for (int b = 0; b < a.n_batches; b++) {
        double ips[2] = {0, 0};
        for (int prec = 0; prec < 2; prec++) {
            if (prec == 0 ? !a.fp32 : !a.int8) continue;
            distq_bench_point pt;
            st = distq_bench_point_run(&d, g, prec ? q : NULL, a.backend, a.batches[b], &a.opts, a.serial,
                                       (uint64_t)a.seed, &pt);
            if (st) goto cleanup;
            if (ctx->rank == 0) {
                cli_print_point(&pt, a.model, distq_backend_name(a.backend), threads, cmdline);
                ips[prec] = pt.aggregate_images_per_s;
                if (a.profile)
                    st = print_profile(prec ? q : g, a.backend, a.batches[b], (uint64_t)a.seed,
                                       a.opts.min_iters > 5 ? a.opts.min_iters : 5, pt.p50_s);
            }
            distq_bench_point_free(&pt);
            if (st) goto cleanup;
            fflush(stdout);
        }
        if (ctx->rank == 0 && a.fp32 && a.int8)
            printf("  bs %-4lld int8/fp32 speed-up: %.2fx (same run)\n", (long long)a.batches[b], ips[1] / ips[0]);
    }
cleanup:
    distq_free(threads);
    distq_graph_destroy(q);
    distq_graph_destroy(g);
    distq_dist_free(&d);
    return st ? cli_fail_agreed(ctx, "bench") : CLI_OK;
}
