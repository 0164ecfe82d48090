/* Loading an fp32 model: for inference on a backend, and once for many ranks. */
#include <stdlib.h>

#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/onnx.h"
#include "distq/passes.h"

distq_status distq_job_load_model(const char *path, const distq_job_ctx *ctx, distq_graph **out)
{
    *out = NULL;
    const distq_reducer *r = ctx ? ctx->reducer : NULL;
    if (!r || !r->bcast_bytes || ctx->nranks < 2 || !distq_path_is_onnx(path)) return distq_model_load(path, out);
    /* an ONNX parse holds ~2x the file: one rank parses, the others get the
     * imported model as the bytes of its model file (read in place, 1x, plus
     * the graph) */
    distq_graph *g = NULL;
    void *buf = NULL;
    size_t len = 0;
    distq_status st = DISTQ_OK;
    if (ctx->rank == 0) {
        st = distq_onnx_import(path, NULL, &g);
        if (!st) st = distq_model_to_image(g, path, &buf, &len);
    }
    st = r->agree(r->ctx, st);
    if (!st) st = r->bcast_bytes(r->ctx, &buf, &len);
    if (!st && ctx->rank != 0) st = distq_model_from_image(buf, len, path, &g);
    free(buf);
    st = r->agree(r->ctx, st);
    if (st) {
        distq_graph_destroy(g);
        return st;
    }
    *out = g;
    return DISTQ_OK;
}

distq_status distq_job_load_fp32(const char *path, distq_backend b, distq_graph **out)
{
    *out = NULL;
    distq_graph *g = NULL;
    distq_status st = distq_model_load(path, &g);
    /* The frozen oneDNN graph runs BN folded into the preceding conv, as
     * torch.compile's freezing does; the reference runs the model as written. */
    if (!st && b == DISTQ_BACKEND_ONEDNN) st = distq_pass_fold_bn(g, NULL);
    if (st) {
        distq_graph_destroy(g);
        return st;
    }
    *out = g;
    return DISTQ_OK;
}
