/* distq_exec: dispatch to a backend's create/run/destroy (exec_impl.h). */
#include <string.h>

#include "backend/exec_impl.h"
#include "distq/tensor.h"

struct distq_exec {
    const distq_exec_i *impl;
    void *state;
    int64_t batch, input_numel; /* numel per image */
    int n_outputs;
    int64_t output_numel[DISTQ_MAX_OUTPUTS];
    char *output_name[DISTQ_MAX_OUTPUTS]; /* the executor does not keep the graph */
};

static const distq_exec_i *const backends[DISTQ_BACKEND_COUNT] = {
    [DISTQ_BACKEND_REF] = &distq_exec_ref_i,
    [DISTQ_BACKEND_ONEDNN] = &distq_exec_onednn_i,
};
/* Quantized graphs: ref runs every node with its f32 or int8 kernel; oneDNN's
 * int8 executor runs int8 nodes and hands the fp32 ones of a mixed graph to
 * the fp32 emitters. */
static const distq_exec_i *const backends_int8[DISTQ_BACKEND_COUNT] = {
    [DISTQ_BACKEND_REF] = &distq_exec_ref_i,
    [DISTQ_BACKEND_ONEDNN] = &distq_exec_onednn_int8_i,
};

const char *distq_backend_name(distq_backend b)
{
    return ((int)b >= 0 && b < DISTQ_BACKEND_COUNT) ? backends[b]->name : "?";
}

distq_backend_caps distq_backend_caps_of(distq_backend b)
{
    if ((int)b < 0 || b >= DISTQ_BACKEND_COUNT) return (distq_backend_caps){0, "?"};
    return backends[b]->caps();
}

int distq_exec_has_kernel(distq_backend b, distq_op op)
{
    if ((int)b < 0 || b >= DISTQ_BACKEND_COUNT || (int)op < 0 || op >= DISTQ_OP_COUNT) return 0;
    return backends[b]->has_kernel(op);
}

int distq_exec_has_int8_kernel(distq_backend b, distq_op op)
{
    if ((int)b < 0 || b >= DISTQ_BACKEND_COUNT || (int)op < 0 || op >= DISTQ_OP_COUNT) return 0;
    return backends_int8[b]->has_int8_kernel(op);
}

distq_status distq_exec_create(distq_backend b, const distq_graph *g, int64_t batch,
                               distq_exec **out)
{
    *out = NULL;
    if ((int)b < 0 || b >= DISTQ_BACKEND_COUNT)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "unknown backend %d", (int)b);
    if (!g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph is not finalized");
    if (batch < 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "batch size %lld < 1", (long long)batch);
    distq_exec *e = distq_calloc(sizeof *e);
    if (!e) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory creating executor");
    e->impl = distq_graph_is_quantized(g) ? backends_int8[b] : backends[b];
    e->batch = batch;
    e->input_numel = distq_value_numel(&g->values[g->input_value], 1);
    e->n_outputs = g->n_outputs;
    distq_status st = DISTQ_OK;
    for (int k = 0; k < g->n_outputs && !st; k++) {
        const distq_value *v = &g->values[g->output_values[k]];
        e->output_numel[k] = distq_value_numel(v, 1);
        if (v->dtype != DISTQ_DTYPE_F32)
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph output '%s' is %s; a graph ends in f32 "
                                 "(convert dequantizes every output)", v->name, distq_dtype_name(v->dtype));
        else if (!(e->output_name[k] = distq_malloc(strlen(v->name) + 1)))
            st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory creating executor");
        else
            strcpy(e->output_name[k], v->name);
    }
    if (!st) st = e->impl->create(g, batch, &e->state);
    if (st != DISTQ_OK) {
        for (int k = 0; k < e->n_outputs; k++) distq_free(e->output_name[k]);
        distq_free(e);
        return st;
    }
    *out = e;
    return DISTQ_OK;
}

distq_status distq_exec_profile(distq_exec *e, const float *input, float *output, int iters,
                                distq_profile_step **steps, int *n_steps, double *wall_s)
{
    *steps = NULL;
    *n_steps = 0;
    if (!e->impl->profile)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: no per-step profile (oneDNN has one)", e->impl->name);
    if (iters < 1) return distq_error_set(DISTQ_ERR_INVALID_ARG, "profile: iters %d < 1", iters);
    return e->impl->profile(e->state, input, output, iters, steps, n_steps, wall_s);
}

distq_status distq_exec_get_value(distq_exec *e, const char *name, void *out)
{
    if (!e->impl->get_value)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "backend %s cannot read back values",
                               e->impl->name);
    return e->impl->get_value(e->state, name, out);
}

distq_status distq_exec_run(distq_exec *e, const float *input, float *output)
{
    return e->impl->run(e->state, input, output);
}

distq_status distq_exec_run_all(distq_exec *e, const float *input, float *const *outputs)
{
    distq_status st = e->impl->run(e->state, input, outputs[0]);
    /* the others are values every backend keeps readable after a run */
    for (int k = 1; k < e->n_outputs && !st; k++) st = distq_exec_get_value(e, e->output_name[k], outputs[k]);
    return st;
}

void distq_exec_destroy(distq_exec *e)
{
    if (!e) return;
    e->impl->destroy(e->state);
    for (int k = 0; k < e->n_outputs; k++) distq_free(e->output_name[k]);
    distq_free(e);
}

int64_t distq_exec_input_numel(const distq_exec *e) { return e->input_numel; }
int64_t distq_exec_output_numel(const distq_exec *e) { return e->output_numel[0]; }
int distq_exec_n_outputs(const distq_exec *e) { return e->n_outputs; }
int64_t distq_exec_output_numel_at(const distq_exec *e, int k)
{
    return k >= 0 && k < e->n_outputs ? e->output_numel[k] : 0;
}
const char *distq_exec_output_name(const distq_exec *e, int k)
{
    return k >= 0 && k < e->n_outputs ? e->output_name[k] : NULL;
}
int64_t distq_exec_batch(const distq_exec *e) { return e->batch; }
void *distq_exec_impl_state(distq_exec *e) { return e->state; }

distq_status distq_backend_no_kernel(const char *backend, const char *node, const char *op)
{
    return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                           "node '%s': op %s has no kernel on backend %s ('distq ops' lists which "
                           "ops each backend runs)",
                           node, op, backend);
}
