/* Loading an fp32 model for inference on a backend. */
#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/passes.h"

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
