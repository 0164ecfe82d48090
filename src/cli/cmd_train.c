/* distq train | qat CONFIG [--resume]: data-parallel fp32 training or
 * quantization-aware training (src/jobs/train.c). */
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/dist.h"
#include "distq/io.h"
#include "distq/jobs.h"

static const char train_usage[] = "CONFIG.ini [--resume] [--epochs N] [--max-steps K]";

/* One progress line per epoch on stderr, from rank 0. */
static void print_epoch(void *user, const distq_epoch_report *r)
{
    const cli_ctx *ctx = user;
    if (ctx->rank != 0) return;
    fprintf(stderr, "epoch %lld/%lld  step %lld  lr %.4g  loss %.4f  train acc %.2f%%", (long long)r->epoch,
            (long long)r->epochs, (long long)r->step, r->lr, r->loss, 100.0 * r->train_acc);
    if (r->test_acc >= 0) fprintf(stderr, "  test acc %.2f%%", 100.0 * r->test_acc);
    fprintf(stderr, "  %.1f images/s  (%.1f s)\n", r->images_per_s, r->elapsed_s);
}

static int run_training(const cli_ctx *ctx, const char *cmd, int qat, int argc, char **argv)
{
    static const struct option opts[] = {{"resume", no_argument, 0, 'r'},
                                         {"epochs", required_argument, 0, 'e'},
                                         {"max-steps", required_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c, resume = 0;
    const char *epochs = NULL, *max_steps = NULL;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': resume = 1; break;
        case 'e': epochs = optarg; break;
        case 'k': max_steps = optarg; break;
        case 'h': printf("usage: distq %s %s\n", cmd, train_usage); return CLI_OK;
        default: return cli_usage_error(cmd, train_usage, "bad option");
        }
    }
    if (optind != argc - 1) return cli_usage_error(cmd, train_usage, "expected one config file");
    distq_config cfg;
    distq_config_defaults(&cfg);
    distq_dist d;
    distq_train_report rep;
    int rc = CLI_OK;
    /* MPI first: a rank whose own config or output paths are refused is then
     * agreed on with every other rank instead of leaving them in a collective */
    distq_status st = distq_dist_init_world(&d);
    if (st) {
        distq_config_free(&cfg);
        return cli_fail(ctx, cmd, st);
    }
    st = distq_config_load(argv[optind], &cfg);
    if (!st && epochs) st = distq_parse_i64("option --epochs", epochs, 1, 100000, &cfg.epochs);
    if (!st && max_steps) st = distq_parse_i64("option --max-steps", max_steps, 0, INT64_MAX, &cfg.max_steps);
    const distq_file_role ins[] = {{argv[optind], "the config"},
                                   {cfg.model, "[model] path ="},
                                   {cfg.train_data, "[train] data ="},
                                   {cfg.test_data, "[train] test ="}},
                          outs[] = {{cfg.checkpoint, "[train] checkpoint ="},
                                    {cfg.trained, "[train] output ="},
                                    {qat ? cfg.quantized : NULL, "[output] quantized ="}};
    if (!st) st = distq_check_outputs(ins, 4, outs, 3);
    if ((st = distq_dist_agree(&d, st))) {
        rc = cli_fail_agreed(ctx, cmd);
    } else {
        st = distq_train_job(&cfg, &d, qat, resume, print_epoch, (void *)ctx, &rep);
        if (st) rc = cli_fail_agreed(ctx, cmd);
        else if (ctx->rank == 0) {
            printf("trained %lld steps on %d rank(s) x %d thread(s): %.1f images/s; gradient all-reduce %lld bytes "
                   "per rank\n", (long long)rep.steps, d.size, rep.threads,
                   rep.train_s > 0 ? (double)rep.images / rep.train_s : 0.0, (long long)rep.allreduce_bytes);
            if (qat && rep.final.test_acc >= 0)
                printf("test accuracy: QAT fake-quant %.2f%%, QAT int8 %.2f%% (reduce_range %s)\n",
                       100.0 * rep.final.test_acc, 100.0 * rep.int8_test_acc, rep.reduce_range ? "on" : "off");
            if (cfg.trained[0]) printf("wrote %s\n", cfg.trained);
            if (qat && cfg.quantized[0]) printf("wrote %s\n", cfg.quantized);
        }
    }
    distq_dist_free(&d);
    distq_config_free(&cfg);
    return rc;
}

int cmd_train(const cli_ctx *ctx, int argc, char **argv) { return run_training(ctx, "train", 0, argc, argv); }

int cmd_qat(const cli_ctx *ctx, int argc, char **argv) { return run_training(ctx, "qat", 1, argc, argv); }
