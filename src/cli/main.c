/* distq: parse the subcommand, bring MPI up and down, dispatch. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/dist.h"
#include "distq/io.h"

static const struct {
    const char *name;
    int (*fn)(const cli_ctx *, int, char **);
    const char *help;
} commands[] = {
    {"model", cmd_model, "build a model (resnet18, linear) with seeded weights"},
    {"import", cmd_import, "import an ONNX model (torch.onnx.export) into a distq model file"},
    {"onnx-test", cmd_onnx_test, "run ONNX test cases (model.onnx + test_data_set_*) on ref and oneDNN"},
    {"data", cmd_data, "write a synthetic dataset (float32 NCHW, optional labels)"},
    {"infer", cmd_infer, "run a model over a dataset and write the logits"},
    {"run", cmd_run, "the whole flow from a config, under mpirun: calibrate, convert, eval, bench"},
    {"train", cmd_train, "data-parallel fp32 training from a config (checkpoints, --resume)"},
    {"qat", cmd_qat, "quantization-aware training from an fp32 model, then int8 conversion"},
    {"calibrate", cmd_calibrate, "post-training quantization: calibrate, convert, write the int8 model"},
    {"eval", cmd_eval, "compare a quantized model's int8 output with its fp32 graph"},
    {"bench", cmd_bench, "benchmark a model: latency percentiles and images/s"},
    {"inspect", cmd_inspect, "describe a model, data or output file"},
    {"ops", cmd_ops, "the op registry: each op's inputs, parameters, attributes, kernels"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: distq <command> [options]   (distq <command> --help; distq --version)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

/* SIGINT / SIGTERM (Ctrl-C, mpirun passing on a kill, a batch system's
 * time limit): remove the temporary file being written, then die of the
 * signal as before. */
static void on_terminate(int sig)
{
    distq_io_unlink_partial();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_terminate;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* distq --version: what a bug report or a benchmark note needs to say. */
static int version(void)
{
    char isa[96];
    printf("distq %s (git %s)\noneDNN %s, ISA %s\n", DISTQ_VERSION, DISTQ_GIT_REVISION, distq_onednn_version(),
           cli_isa_text(isa, sizeof isa));
    return CLI_OK;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) return version();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    int found = -1;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) found = (int)i;
    if (found < 0) {
        fprintf(stderr, "distq: error: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return CLI_USAGE;
    }

    distq_world w;
    if (distq_dist_start(&argc, &argv, &w) != DISTQ_OK) {
        fprintf(stderr, "distq: error: %s\n", distq_error_message());
        return CLI_FAIL;
    }
    cli_ctx ctx = {w.rank, w.size, w.local_rank, w.local_size};

    install_signal_handlers(); /* after MPI_Init, which may install its own */
    int rc = commands[found].fn(&ctx, argc - 1, argv + 1);

    /* A failed rank must not leave the others waiting: agree on the worst exit code. */
    return distq_dist_finish(rc);
}
