/* distq calibrate | eval: post-training quantization and its accuracy check. */
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/dist.h"
#include "distq/io.h"
#include "distq/jobs.h"

/* --- distq calibrate ---------------------------------------------------------- */

static const char calibrate_usage[] =
    "[--config FILE] --model M --data D [--batches N] [--batch-size B]\n"
    "       [--observer histogram|minmax] [--reduce-range auto|on|off]\n"
    "       [--exclude NODE_GLOB_OR_OP[,...]] -o Q";

/* Progress on stderr: batches done, images/s, ETA. */
static void print_progress(void *user, const distq_progress *p)
{
    const cli_ctx *ctx = user;
    if (ctx->rank != 0) return;
    double ips = p->elapsed_s > 0 ? (double)p->images_done / p->elapsed_s : 0.0;
    double eta = ips > 0 ? (double)(p->images_total - p->images_done) / ips : 0.0;
    cli_progress("calibrate: batch %lld/%lld, %lld images, %.1f images/s, ETA %.0f s   ",
                 (long long)p->batches_done, (long long)p->batches_total, (long long)p->images_done, ips, eta);
    if (p->batches_done == p->batches_total) cli_progress_done();
}

int cmd_calibrate(const cli_ctx *ctx, int argc, char **argv)
{
    distq_config cfg;
    distq_config_defaults(&cfg);
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"batches", required_argument, 0, 'n'},
                                         {"batch-size", required_argument, 0, 'b'},
                                         {"observer", required_argument, 0, 'O'},
                                         {"reduce-range", required_argument, 0, 'R'},
                                         {"exclude", required_argument, 0, 'x'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    /* The config file first, so that options given on the command line win. */
    const char *config_path = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            distq_status st = distq_config_load(argv[i + 1], &cfg);
            if (st) return cli_fail(ctx, "calibrate", st);
            config_path = argv[i + 1];
        }
    int c, rc = CLI_OK;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': break;
        case 'm': snprintf(cfg.model, sizeof cfg.model, "%s", optarg); break;
        case 'd': snprintf(cfg.calib_data, sizeof cfg.calib_data, "%s", optarg); break;
        case 'n': st = distq_parse_i64("option --batches", optarg, 0, INT32_MAX, &cfg.calib_batches); break;
        case 'b': st = distq_parse_i64("option --batch-size", optarg, 1, 1 << 20, &cfg.calib_batch_size); break;
        case 'O': st = distq_observer_kind_from_name(optarg, &cfg.observer); break;
        case 'R': st = distq_parse_auto_bool("option --reduce-range", optarg, &cfg.reduce_range); break;
        case 'x':
            if (strlen(optarg) >= sizeof cfg.calib_exclude)
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "option --exclude: longer than %zu characters",
                                     sizeof cfg.calib_exclude - 1);
            else
                snprintf(cfg.calib_exclude, sizeof cfg.calib_exclude, "%s", optarg);
            break;
        case 'o': snprintf(cfg.quantized, sizeof cfg.quantized, "%s", optarg); break;
        case 'h': printf("usage: distq calibrate %s\n", calibrate_usage); goto done;
        default: rc = cli_usage_error("calibrate", calibrate_usage, "bad option"); goto done;
        }
        if (st) {
            rc = cli_usage_error("calibrate", calibrate_usage, "%s", distq_error_message());
            goto done;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("calibrate", calibrate_usage, "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if (!cfg.model[0] || !cfg.calib_data[0] || !cfg.quantized[0]) {
        rc = cli_usage_error("calibrate", calibrate_usage, "a model, calibration data and -o are required "
                                                           "(options or config keys)");
        goto done;
    }
    const distq_file_role ins[] = {{config_path, "--config"},
                                   {cfg.model, "the model (--model, [model] path)"},
                                   {cfg.calib_data, "the calibration data (--data, [calibration] data)"}},
                          outs[] = {{cfg.quantized, "the output (-o, [output] quantized)"}};
    if ((st = distq_check_outputs(ins, 3, outs, 1))) {
        rc = cli_fail(ctx, "calibrate", st);
        goto done;
    }
    distq_job_ctx job = distq_job_alone();
    job.rank = ctx->rank;
    job.progress = print_progress;
    job.progress_user = (void *)ctx;
    /* Pin threads to cores as distq run does: OpenMP loops stall on a migrated thread. */
    distq_dist d;
    distq_placement pl;
    char warn[256];
    if ((st = distq_dist_init_world(&d)) == DISTQ_OK) {
        st = distq_place(&d, cfg.bind, 0, &pl, warn, sizeof warn);
        distq_dist_free(&d);
    }
    if (st) {
        rc = cli_fail(ctx, "calibrate", st);
        goto done;
    }
    distq_ptq_report rep;
    distq_graph *q = NULL;
    if (ctx->size > 1) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "calibrate runs on one rank; use distq run for MPI jobs");
    } else {
        st = distq_ptq_run(&cfg, &job, &rep, &q);
    }
    if (st) {
        rc = cli_fail(ctx, "calibrate", st);
        goto done;
    }
    char *text = NULL;
    if (distq_graph_describe(q, &text) == DISTQ_OK) {
        printf("%s", text);
        distq_free(text);
    }
    char isa[96], why[160] = "";
    if (rep.reduce_range && distq_backend_caps_of(DISTQ_BACKEND_ONEDNN).u8s8_exact)
        snprintf(why, sizeof why, " (7-bit grid: reduce_range on as asked)");
    else if (rep.reduce_range)
        snprintf(why, sizeof why, " (7-bit grid, reduce_range: oneDNN ISA %s has no VNNI)",
                 cli_isa_text(isa, sizeof isa));
    printf("wrote %s: %s observer, %d observers, %lld images in %lld batches, activations u8 [0, %d]%s\n",
           cfg.quantized, distq_observer_kind_name(cfg.observer), rep.n_observers, (long long)rep.images,
           (long long)rep.batches, rep.reduce_range ? 127 : 255, why);
    printf("time: load %.2f s, prepare %.2f s, calibrate %.2f s (fp32 forward %.2f s, observers %.2f s = %.0f%% "
           "of forward), convert %.2f s, save %.2f s\n",
           rep.load_s, rep.prepare_s, rep.calibrate_s, rep.forward_s, rep.observe_s,
           rep.forward_s > 0 ? 100.0 * rep.observe_s / rep.forward_s : 0.0, rep.convert_s, rep.save_s);
    distq_graph_destroy(q);
done:
    distq_config_free(&cfg);
    return rc;
}

/* --- distq eval ------------------------------------------------------------------ */

static const char eval_usage[] = "--model Q --data D [--batch-size B] [--backend onednn|ref]";

int cmd_eval(const cli_ctx *ctx, int argc, char **argv)
{
    const char *model = NULL, *data = NULL;
    int64_t batch = 50;
    distq_backend backend = DISTQ_BACKEND_ONEDNN;
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"batch-size", required_argument, 0, 'b'},
                                         {"backend", required_argument, 0, 'B'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'b': st = distq_parse_i64("option --batch-size", optarg, 1, 1 << 20, &batch); break;
        case 'B': st = cli_parse_backend(optarg, &backend); break;
        case 'h': printf("usage: distq eval %s\n", eval_usage); return CLI_OK;
        default: return cli_usage_error("eval", eval_usage, "bad option");
        }
        if (st) return cli_usage_error("eval", eval_usage, "%s", distq_error_message());
    }
    if (optind < argc) return cli_usage_error("eval", eval_usage, "unexpected argument '%s'", argv[optind]);
    if (!model || !data) return cli_usage_error("eval", eval_usage, "--model and --data are required");
    distq_graph *g = NULL;
    distq_graph *q = NULL;
    distq_eval_sums sums = {0};
    distq_job_ctx job = distq_job_alone();
    st = distq_qmodel_load(model, &q, &g);
    if (!st) st = distq_eval_run(g, q, backend, data, batch, &job, &sums);
    distq_graph_destroy(q);
    distq_graph_destroy(g);
    if (st) return cli_fail(ctx, "eval", st);
    distq_eval_report rep;
    distq_eval_finish(&sums, &rep);
    printf("eval %s on %s: %lld images\n", model, data, (long long)rep.images);
    printf("  int8 vs fp32 logits: relative L2 error %.5f, top-1 agreement %.2f%%\n", rep.rel_l2,
           100.0 * rep.top1_agreement);
    if (rep.has_labels)
        printf("  accuracy: fp32 %.2f%%, int8 %.2f%%\n", 100.0 * rep.acc_fp32, 100.0 * rep.acc_int8);
    return CLI_OK;
}
