/* distq import: an ONNX model into a distq model file. */
#include <getopt.h>
#include <stdio.h>
#include <time.h>

#include "cli/cli.h"
#include "distq/io.h"
#include "distq/onnx.h"

static const char import_usage[] = "MODEL.onnx -o MODEL.h5";

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cmd_import(const cli_ctx *ctx, int argc, char **argv)
{
    const char *out = NULL;
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': printf("usage: distq import %s\n", import_usage); return CLI_OK;
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
    double t0 = now_s();
    distq_graph *g = NULL;
    st = distq_onnx_import(in, NULL, &g);
    double t_import = now_s() - t0;
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
