/* distq import: an ONNX model into a distq model file. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "distq/io.h"
#include "distq/onnx.h"
#include "distq/timer.h"

static const char import_usage[] = "MODEL.onnx -o MODEL.h5 [--training-graph]";

int cmd_import(const cli_ctx *ctx, int argc, char **argv)
{
    const char *out = NULL;
    distq_onnx_options opt = {0};
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"training-graph", no_argument, 0, 'T'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'T': opt.training_graph = 1; break;
        case 'h':
            printf("usage: distq import %s\n"
                   "  --training-graph  the file is a training-mode export (TrainingMode.PRESERVE on a model\n"
                   "                    in train()), imported as the network to train or QAT-train: BN keeps\n"
                   "                    its running statistics, Dropout becomes the identity\n",
                   import_usage);
            return CLI_OK;
        default: return cli_usage_error("import", import_usage, "bad option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("import", import_usage, optind < argc ? "one ONNX model, no other argument"
                                                                      : "an ONNX model is required");
    const char *in = argv[optind];
    if (!out) return cli_usage_error("import", import_usage, "-o is required");
    if (!distq_path_is_onnx(in))
        return cli_usage_error("import", import_usage, "'%s' does not end in .onnx", in);
    distq_file_role ins[] = {{in, "the ONNX model"}}, outs[] = {{out, "-o"}};
    distq_status st = distq_check_outputs(ins, 1, outs, 1);
    if (st) return cli_fail(ctx, "import", st);
    double t0 = distq_now_s();
    distq_graph *g = NULL;
    st = distq_onnx_import(in, &opt, &g);
    double t_import = distq_now_s() - t0;
    if (!st && ctx->rank == 0) st = distq_model_save(g, out);
    if (!st && ctx->rank == 0) {
        char dims[96];
        distq_dims_format(g->input_ndim - 1, g->input_dims + 1, dims, sizeof dims);
        printf("wrote %s: %d nodes, %d tensors, input '%s' (batch, %s, imported in %.2f s\n", out,
               g->n_nodes, g->n_params, g->input_name, dims + 1, t_import);
    }
    distq_graph_destroy(g);
    if (st) return cli_fail(ctx, "import", st);
    return CLI_OK;
}
