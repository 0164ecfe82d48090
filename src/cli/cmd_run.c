/* distq run CONFIG: the whole flow under mpirun (see src/jobs/run.c). */
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/dist.h"
#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/results.h"

static const char run_usage[] =
    "CONFIG.ini [--bind none|core|numa] [--concurrency all|serial] [--threads T] [--max-isa LEVEL]";

static void run_progress(void *user, const distq_progress *p)
{
    const cli_ctx *ctx = user;
    if (ctx->rank != 0) return;
    double ips = p->elapsed_s > 0 ? (double)p->images_done / p->elapsed_s : 0.0;
    double eta = ips > 0 ? (double)(p->images_total - p->images_done) / ips : 0.0;
    cli_progress("calibrate: batch %lld/%lld, %lld images, %.1f images/s, ETA %.0f s   ",
                 (long long)p->batches_done, (long long)p->batches_total, (long long)p->images_done, ips, eta);
    if (p->batches_done == p->batches_total) cli_progress_done();
}

static void print_summary(const distq_config *cfg, const distq_results *r)
{
    char isa[96];
    printf("oneDNN ISA %s\n", cli_isa_text(isa, sizeof isa));
    printf("placement:\n");
    for (int i = 0; i < r->nranks; i++) {
        const distq_placement *p = &r->placement[i];
        printf("  rank %d  host %s  numa %d  cpus %s  cores %d  threads %d  bound by %s%s\n", i, p->host,
               p->numa_node, p->cpus, p->n_cores, p->threads, p->bound_by, p->oversubscribed ? "  (oversubscribed)" : "");
    }
    printf("calibration: %lld images in %lld global batches, %.2f s wall on %d rank(s); observer state all-reduced: "
           "%lld bytes in %lld calls per rank; activations u8 [0, %d]%s\n",
           (long long)r->calib_images, (long long)r->calib_batches, r->calib_wall_s, r->nranks,
           (long long)r->reduce_bytes, (long long)r->reduce_calls, r->reduce_range ? 127 : 255,
           r->reduce_range ? " (7-bit grid: reduce_range)" : "");
    printf("calibration on rank 0: fp32 forward %.2f s, observers %.2f s (%.0f%% of the forward)\n", r->calib_forward_s,
           r->calib_observe_s, r->calib_forward_s > 0 ? 100.0 * r->calib_observe_s / r->calib_forward_s : 0.0);
    printf("wrote %s\n", cfg->quantized);
    if (r->has_eval) {
        printf("accuracy vs fp32 on %s (%lld images): relative L2 %.5f, top-1 agreement %.2f%%", cfg->eval_data,
               (long long)r->eval.images, r->eval.rel_l2, 100.0 * r->eval.top1_agreement);
        if (r->eval.has_labels)
            printf(", accuracy fp32 %.2f%% int8 %.2f%%", 100.0 * r->eval.acc_fp32, 100.0 * r->eval.acc_int8);
        printf("\n");
    }
    int threads[1024];
    for (int i = 0; i < r->nranks && i < 1024; i++) threads[i] = r->placement[i].threads;
    for (int i = 0; i < r->n_points; i++) cli_print_point(&r->points[i], cfg->model, "onednn", threads, "distq run");
    for (int i = 0; i + 1 < r->n_points; i++)
        if (r->points[i].batch == r->points[i + 1].batch && !strcmp(r->points[i].precision, "fp32") &&
            !strcmp(r->points[i + 1].precision, "int8"))
            printf("  bs %-4lld int8/fp32 speed-up: %.2fx (same run)\n", (long long)r->points[i].batch,
                   r->points[i + 1].aggregate_images_per_s / r->points[i].aggregate_images_per_s);
    if (cfg->results[0]) printf("wrote %s\n", cfg->results);
}

int cmd_run(const cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"bind", required_argument, 0, 'N'},
                                         {"concurrency", required_argument, 0, 'C'},
                                         {"threads", required_argument, 0, 'T'},
                                         {"max-isa", required_argument, 0, 'I'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    distq_config cfg;
    distq_config_defaults(&cfg);
    /* Options first (getopt moves the config path to the end), applied over the file. */
    const char *bind = NULL, *conc = NULL, *threads = NULL, *max_isa = NULL;
    int c, rc = CLI_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'N': bind = optarg; break;
        case 'C': conc = optarg; break;
        case 'T': threads = optarg; break;
        case 'I': max_isa = optarg; break;
        case 'h': printf("usage: distq run %s\n", run_usage); return CLI_OK;
        default: return cli_usage_error("run", run_usage, "bad option");
        }
    }
    if (optind != argc - 1) return cli_usage_error("run", run_usage, "expected one config file");
    const char *path = argv[optind];
    /* MPI first: a rank whose own config or output paths are refused is then
     * agreed on with every other rank instead of leaving them in a collective */
    distq_dist d;
    distq_results res = {0};
    char warn[256] = "";
    distq_status st = distq_dist_init_world(&d);
    if (st) {
        rc = cli_fail(ctx, "run", st);
        goto done;
    }
    distq_status opt_st = DISTQ_OK;
    st = distq_config_load(path, &cfg);
    if (!st && bind && (opt_st = distq_bind_from_name(bind, &cfg.bind)))
        opt_st = distq_error_set(opt_st, "option --bind: %s", distq_error_message());
    if (!st && !opt_st && conc) {
        if (strcmp(conc, "all") && strcmp(conc, "serial"))
            opt_st = distq_error_set(DISTQ_ERR_INVALID_ARG, "option --concurrency: '%s' (all, serial)", conc);
        cfg.bench_serial = strcmp(conc, "serial") == 0;
    }
    if (!st && !opt_st && threads) opt_st = distq_parse_i64("option --threads", threads, 1, 4096, &cfg.bench_threads);
    if (!st && !opt_st && max_isa && (opt_st = distq_onednn_set_max_isa(max_isa)))
        opt_st = distq_error_set(opt_st, "option --max-isa: %s", distq_error_message());
    if (opt_st) { /* the same command line on every rank: a usage error everywhere */
        rc = cli_usage_error("run", run_usage, "%s", distq_error_message());
        goto stop;
    }
    const distq_file_role ins[] = {{path, "the config"},
                                   {cfg.model, "[model] path ="},
                                   {cfg.calib_data, "[calibration] data ="},
                                   {cfg.eval_data, "[eval] data ="}},
                          outs[] = {{cfg.quantized, "[output] quantized ="}, {cfg.results, "[output] results ="}};
    if (!st) st = distq_check_outputs(ins, 4, outs, 2);
    if ((st = distq_dist_agree(&d, st))) {
        rc = cli_fail_agreed(ctx, "run");
        goto stop;
    }
    st = distq_run_job(&cfg, path, &d, run_progress, (void *)ctx, &res, warn, sizeof warn);
    if (warn[0]) fprintf(stderr, "distq run: warning (rank %d): %s\n", ctx->rank, warn);
    if (st) rc = cli_fail_agreed(ctx, "run");
    else if (ctx->rank == 0) print_summary(&cfg, &res);
    distq_results_free(&res);
stop:
    distq_dist_free(&d);
done:
    distq_config_free(&cfg);
    return rc;
}
