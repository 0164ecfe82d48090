/* distq model | data | infer | inspect. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/exec.h"
#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/quant.h"

/* --- distq model ----------------------------------------------------------- */

static const char model_usage[] =
    "--arch resnet18|linear|fmnist_cnn [--seed N] [--image-size S] -o FILE";

int cmd_model(const cli_ctx *ctx, int argc, char **argv)
{
    const char *arch = NULL, *out = NULL;
    int64_t seed = 0, image_size = 0;
    static const struct option opts[] = {{"arch", required_argument, 0, 'a'},
                                         {"image-size", required_argument, 0, 'S'},
                                         {"seed", required_argument, 0, 's'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': arch = optarg; break;
        case 's': st = distq_parse_i64("option --seed", optarg, 0, INT64_MAX, &seed); break;
        case 'S': st = distq_parse_i64("option --image-size", optarg, 32, 4096, &image_size); break;
        case 'o': out = optarg; break;
        case 'h': printf("usage: distq model %s\n", model_usage); return CLI_OK;
        default: return cli_usage_error("model", model_usage, "bad option");
        }
        if (st) return cli_usage_error("model", model_usage, "%s", distq_error_message());
    }
    if (optind < argc) return cli_usage_error("model", model_usage, "unexpected argument '%s'", argv[optind]);
    if (!arch || !out) return cli_usage_error("model", model_usage, "--arch and -o are required");
    distq_graph *g = NULL;
    st = distq_build_model(arch, (uint64_t)seed, &g);
    if (st == DISTQ_OK && image_size) { /* smaller images: same weights, cheaper tests */
        if (g->input_ndim != 4)
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "option --image-size: model '%s' takes no images", arch);
        else {
            g->input_dims[2] = g->input_dims[3] = image_size;
            st = distq_graph_finalize(g);
        }
    }
    if (st == DISTQ_OK && ctx->rank == 0) st = distq_model_save(g, out);
    distq_graph_destroy(g);
    if (st) return cli_fail(ctx, "model", st);
    if (ctx->rank == 0)
        printf("wrote %s: %s, seed %lld\n", out, arch, (long long)seed);
    return CLI_OK;
}

/* --- distq data ------------------------------------------------------------ */

static const char data_usage[] =
    "--shape C,H,W|F -n N [--seed S] [--classes K] -o FILE\n"
    "   or: distq data --from-idx IMAGES[.gz] [--labels LABELS[.gz]] [--normalize-from "
    "TRAIN_IMAGES[.gz]] [-n N] -o FILE";

/* --from-idx: IDX images (+ labels) normalised with the training set's pixel
 * mean and std (the images file itself unless --normalize-from). */
static int data_from_idx(const cli_ctx *ctx, const char *images, const char *labels,
                         const char *norm, int64_t n, const char *out)
{
    int64_t written = 0;
    float mean = 0, std = 0;
    distq_status st = DISTQ_OK;
    if (ctx->rank == 0)
        st = distq_data_from_idx(out, images, labels, norm, n, &written, &mean, &std);
    if (st) return cli_fail(ctx, "data", st);
    if (ctx->rank == 0)
        printf("wrote %s: %lld images%s from %s, normalised with mean %.6f std %.6f of %s\n", out,
               (long long)written, labels ? " and labels" : "", images, mean, std,
               norm ? norm : images);
    return CLI_OK;
}

int cmd_data(const cli_ctx *ctx, int argc, char **argv)
{
    int64_t shape[3] = {0}, n = 0, seed = 0, classes = 0;
    int ndim = 0;
    const char *out = NULL, *idx_images = NULL, *idx_labels = NULL, *idx_norm = NULL;
    static const struct option opts[] = {{"shape", required_argument, 0, 'S'},
                                         {"count", required_argument, 0, 'n'},
                                         {"seed", required_argument, 0, 's'},
                                         {"classes", required_argument, 0, 'k'},
                                         {"from-idx", required_argument, 0, 'I'},
                                         {"labels", required_argument, 0, 'L'},
                                         {"normalize-from", required_argument, 0, 'N'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "n:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'S': st = distq_parse_i64_list("option --shape", optarg, 3, shape, &ndim); break;
        case 'n': st = distq_parse_i64("option -n", optarg, 1, INT32_MAX, &n); break;
        case 's': st = distq_parse_i64("option --seed", optarg, 0, INT64_MAX, &seed); break;
        case 'k': st = distq_parse_i64("option --classes", optarg, 1, INT32_MAX, &classes); break;
        case 'I': idx_images = optarg; break;
        case 'L': idx_labels = optarg; break;
        case 'N': idx_norm = optarg; break;
        case 'o': out = optarg; break;
        case 'h': printf("usage: distq data %s\n", data_usage); return CLI_OK;
        default: return cli_usage_error("data", data_usage, "bad option");
        }
        if (st) return cli_usage_error("data", data_usage, "%s", distq_error_message());
    }
    if (optind < argc) return cli_usage_error("data", data_usage, "unexpected argument '%s'", argv[optind]);
    if (idx_images) {
        if (ndim || classes)
            return cli_usage_error("data", data_usage,
                                   "--shape and --classes do not apply to --from-idx (the IDX "
                                   "header gives the shape, --labels the classes)");
        if (!out) return cli_usage_error("data", data_usage, "--from-idx needs -o");
        const distq_file_role ins[] = {{idx_images, "--from-idx"}, {idx_labels, "--labels"},
                                       {idx_norm, "--normalize-from"}},
                              outs[] = {{out, "-o"}};
        if ((st = distq_check_outputs(ins, 3, outs, 1))) return cli_fail(ctx, "data", st);
        return data_from_idx(ctx, idx_images, idx_labels, idx_norm, n, out);
    }
    if (idx_labels || idx_norm)
        return cli_usage_error("data", data_usage, "--labels and --normalize-from need --from-idx");
    if (!ndim || !n || !out)
        return cli_usage_error("data", data_usage, "--shape, -n and -o are required");
    int64_t dims[DISTQ_MAX_DIMS] = {n};
    memcpy(dims + 1, shape, (size_t)ndim * sizeof *shape);
    int64_t per = distq_dims_numel(ndim, shape), all = distq_dims_numel(ndim + 1, dims);
    if (all < 0 || all > INT64_MAX / (int64_t)sizeof(float) / 2) {
        char text[128];
        distq_dims_format(ndim + 1, dims, text, sizeof text);
        return cli_usage_error("data", data_usage, "options --shape and -n: %s images are too many float32 values "
                               "to hold", text);
    }
    float *images = distq_malloc((size_t)(n * per) * sizeof *images);
    int64_t *labels = classes ? distq_malloc((size_t)n * sizeof *labels) : NULL;
    if (!images || (classes && !labels)) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory for %lld images", (long long)n);
    } else {
        /* Standard normal pixels: the range a normalised image has. */
        distq_rng r;
        distq_rng_seed(&r, (uint64_t)seed);
        for (int64_t i = 0; i < n * per; i++) images[i] = distq_rng_normal(&r);
        for (int64_t i = 0; labels && i < n; i++) labels[i] = (int64_t)(distq_rng_next(&r) % (uint64_t)classes);
        if (ctx->rank == 0) st = distq_data_write(out, images, ndim + 1, dims, labels);
    }
    distq_free(images);
    distq_free(labels);
    if (st) return cli_fail(ctx, "data", st);
    if (ctx->rank == 0) printf("wrote %s: %lld images\n", out, (long long)n);
    return CLI_OK;
}

/* --- distq infer ----------------------------------------------------------- */

static const char infer_usage[] =
    "--model M --data D -o OUT [--batch B] [--backend onednn|ref]";

distq_status cli_parse_backend(const char *text, distq_backend *out)
{
    for (int b = 0; b < DISTQ_BACKEND_COUNT; b++)
        if (strcmp(text, distq_backend_name((distq_backend)b)) == 0) {
            *out = (distq_backend)b;
            return DISTQ_OK;
        }
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "option --backend: unknown backend '%s' (onednn, ref)",
                           text);
}

/* Every graph output of one inference over a data file: out[o] (n x k[o]). */
typedef struct {
    int n_outputs;
    const char *names[DISTQ_MAX_OUTPUTS]; /* the run graph's */
    float *out[DISTQ_MAX_OUTPUTS];
    int64_t k[DISTQ_MAX_OUTPUTS];
    int64_t n;
} infer_outputs;

static void infer_outputs_free(infer_outputs *r)
{
    for (int o = 0; o < r->n_outputs; o++) distq_free(r->out[o]);
    memset(r, 0, sizeof *r);
}

/* Runs g (or, if q != NULL, the int8 graph q) of model_path over all images
 * of data_path in batches, into *r (free with infer_outputs_free). */
static distq_status infer_all(const distq_graph *g, const distq_graph *q, distq_backend backend,
                              const char *model_path, const char *data_path, int64_t batch, infer_outputs *r)
{
    distq_data_info info;
    distq_exec *e = NULL;
    float *images = NULL;
    const distq_graph *run = q ? q : g;
    memset(r, 0, sizeof *r);
    distq_status st = distq_data_info_read(data_path, &info);
    if (st) return st;
    const distq_value *in = &g->values[g->input_value];
    int64_t per = distq_value_numel(in, 1);
    if ((st = distq_data_check_input(data_path, &info, in, model_path))) return st;
    images = distq_malloc((size_t)(batch * per) * sizeof *images);
    int ok = images != NULL;
    r->n_outputs = run->n_outputs;
    r->n = info.n;
    for (int o = 0; o < run->n_outputs; o++) {
        r->names[o] = run->output_names[o];
        r->k[o] = distq_value_numel(&run->values[run->output_values[o]], 1);
        ok = ok && (r->out[o] = distq_malloc((size_t)(info.n * r->k[o]) * sizeof *r->out[o]));
    }
    if (!ok) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "option --batch %lld: out of memory for inference on %lld images",
                             (long long)batch, (long long)info.n);
        goto cleanup;
    }
    for (int64_t start = 0; start < info.n; start += batch) {
        int64_t count = info.n - start < batch ? info.n - start : batch;
        if (!e || distq_exec_batch(e) != count) {
            distq_exec_destroy(e);
            if ((st = distq_exec_create(backend, run, count, &e))) {
                st = distq_error_set(st, "option --batch %lld: %s", (long long)batch, distq_error_message());
                goto cleanup;
            }
        }
        float *at[DISTQ_MAX_OUTPUTS];
        for (int o = 0; o < r->n_outputs; o++) at[o] = r->out[o] + start * r->k[o];
        if ((st = distq_data_read(data_path, start, count, images, NULL))) goto cleanup;
        if ((st = distq_exec_run_all(e, images, at))) goto cleanup;
    }
cleanup:
    distq_exec_destroy(e);
    distq_free(images);
    if (st) infer_outputs_free(r);
    return st;
}

int cmd_infer(const cli_ctx *ctx, int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *out = NULL;
    int64_t batch = 32;
    distq_backend backend = DISTQ_BACKEND_ONEDNN;
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"output", required_argument, 0, 'o'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"backend", required_argument, 0, 'B'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'b': st = distq_parse_i64("option --batch", optarg, 1, 65536, &batch); break;
        case 'B': st = cli_parse_backend(optarg, &backend); break;
        case 'h': printf("usage: distq infer %s\n", infer_usage); return CLI_OK;
        default: return cli_usage_error("infer", infer_usage, "bad option");
        }
        if (st) return cli_usage_error("infer", infer_usage, "%s", distq_error_message());
    }
    if (optind < argc) return cli_usage_error("infer", infer_usage, "unexpected argument '%s'", argv[optind]);
    if (!model || !data || !out)
        return cli_usage_error("infer", infer_usage, "--model, --data and -o are required");
    const distq_file_role ins[] = {{model, "--model"}, {data, "--data"}}, outs[] = {{out, "-o"}};
    if ((st = distq_check_outputs(ins, 2, outs, 1))) return cli_fail(ctx, "infer", st);
    distq_graph *g = NULL;
    distq_graph *q = NULL;
    infer_outputs r = {0};
    int quantized = 0;
    st = distq_model_is_quantized(model, &quantized);
    if (!st) st = quantized ? distq_qmodel_load(model, &q, &g) : distq_job_load_fp32(model, backend, &g);
    if (!st) st = infer_all(g, q, backend, model, data, batch, &r);
    if (!st && ctx->rank == 0)
        st = distq_output_write(out, r.n_outputs, r.names, (const float *const *)r.out, r.k, r.n, model, data);
    if (!st && ctx->rank == 0) {
        printf("wrote %s: logits (%lld, %lld)", out, (long long)r.n, (long long)r.k[0]);
        for (int o = 1; o < r.n_outputs; o++) printf(", output_%d (%lld, %lld)", o, (long long)r.n, (long long)r.k[o]);
        printf(" from %s, %s on %s\n", model, quantized ? "int8" : "fp32", distq_backend_name(backend));
    }
    infer_outputs_free(&r);
    distq_graph_destroy(q);
    distq_graph_destroy(g);
    if (st) return cli_fail(ctx, "infer", st);
    return CLI_OK;
}

/* --- distq inspect ----------------------------------------------------------- */

int cmd_inspect(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2 && strcmp(argv[1], "--help") == 0) {
            printf("usage: distq inspect FILE\n");
            return CLI_OK;
        }
        return cli_usage_error("inspect", "FILE", "expected exactly one file");
    }
    char *text = NULL;
    distq_status st = distq_h5_describe(argv[1], &text);
    if (st) return cli_fail(ctx, "inspect", st);
    if (ctx->rank == 0) fputs(text, stdout);
    distq_free(text);
    return CLI_OK;
}
