/*
 * The plain-C fp32 reference executor: the oracle that tests hold the oneDNN
 * executor against. Written for reading, never tuned: obvious loops in NCHW,
 * no fusion, BatchNorm applied as written (inference mode, running stats).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "backend/exec_impl.h"
#include "distq/tensor.h"

typedef struct {
    distq_graph *g; /* private copy */
    int64_t N;
    float **vals; /* one buffer per value, N x per-image numel */
} ref_state;

static const float *P(const ref_state *s, const distq_node *n, int slot)
{
    return n->params[slot] >= 0 ? s->g->params[n->params[slot]].data : NULL;
}

/* x (N, C, H, W) * w (OC, C/groups, KH, KW) + b -> y (N, OC, OH, OW) */
static void conv2d_ref(const ref_state *s, const distq_node *n)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    const distq_attrs *a = &n->attr;
    const float *x = s->vals[n->inputs[0]], *w = P(s, n, DISTQ_PARAM_WEIGHT);
    const float *b = P(s, n, DISTQ_PARAM_BIAS);
    float *y = s->vals[n->output];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3];
    int64_t OC = yv->dims[1], OH = yv->dims[2], OW = yv->dims[3];
    const distq_tensor *wt = &s->g->params[n->params[DISTQ_PARAM_WEIGHT]];
    int64_t KH = wt->dims[2], KW = wt->dims[3];
    int64_t G = a->groups, ICg = C / G, OCg = OC / G;
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t oc = 0; oc < OC; oc++) {
            int64_t g = oc / OCg;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int64_t ic = 0; ic < ICg; ic++)
                        for (int64_t kh = 0; kh < KH; kh++) {
                            int64_t ih = oh * a->stride[0] - a->padding[0] + kh * a->dilation[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t iw = ow * a->stride[1] - a->padding[1] + kw * a->dilation[1];
                                if (iw < 0 || iw >= W) continue;
                                acc += (double)x[((nb * C + g * ICg + ic) * H + ih) * W + iw] *
                                       w[((oc * ICg + ic) * KH + kh) * KW + kw];
                            }
                        }
                    y[((nb * OC + oc) * OH + oh) * OW + ow] = (float)acc;
                }
        }
}

/* y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel (dim 1). */
static void batch_norm_ref(const ref_state *s, const distq_node *n)
{
    const distq_value *xv = &s->g->values[n->inputs[0]];
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    const float *gamma = P(s, n, DISTQ_PARAM_WEIGHT), *beta = P(s, n, DISTQ_PARAM_BIAS);
    const float *mean = P(s, n, DISTQ_PARAM_RUNNING_MEAN), *var = P(s, n, DISTQ_PARAM_RUNNING_VAR);
    int64_t C = xv->dims[1], HW = distq_value_numel(xv, 1) / C;
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(var[c] + n->attr.eps);
            for (int64_t i = 0; i < HW; i++) {
                int64_t k = (nb * C + c) * HW + i;
                y[k] = (x[k] - mean[c]) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
            }
        }
}

static void relu_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    for (int64_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void add_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const float *x = s->vals[n->inputs[0]], *z = s->vals[n->inputs[1]];
    float *y = s->vals[n->output];
    for (int64_t i = 0; i < count; i++) y[i] = x[i] + z[i];
}

/* Padded cells never win (PyTorch pads max pooling with -inf). */
static void max_pool2d_ref(const ref_state *s, const distq_node *n)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    const distq_attrs *a = &n->attr;
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    for (int64_t nc = 0; nc < s->N * C; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float best = -INFINITY;
                for (int64_t kh = 0; kh < a->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < a->kernel[1]; kw++) {
                        int64_t ih = oh * a->stride[0] - a->padding[0] + kh;
                        int64_t iw = ow * a->stride[1] - a->padding[1] + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        float v = x[(nc * H + ih) * W + iw];
                        if (v > best) best = v;
                    }
                y[(nc * OH + oh) * OW + ow] = best;
            }
}

static void adaptive_avg_pool2d_ref(const ref_state *s, const distq_node *n)
{
    const distq_value *xv = &s->g->values[n->inputs[0]];
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    int64_t HW = xv->dims[2] * xv->dims[3];
    for (int64_t nc = 0; nc < s->N * xv->dims[1]; nc++) {
        double sum = 0.0;
        for (int64_t i = 0; i < HW; i++) sum += x[nc * HW + i];
        y[nc] = (float)(sum / (double)HW);
    }
}

/* x (N, IN) * w^T (OUT, IN) + b -> y (N, OUT) */
static void linear_ref(const ref_state *s, const distq_node *n)
{
    int64_t IN = s->g->values[n->inputs[0]].dims[1], OUT = s->g->values[n->output].dims[1];
    const float *x = s->vals[n->inputs[0]], *w = P(s, n, DISTQ_PARAM_WEIGHT);
    const float *b = P(s, n, DISTQ_PARAM_BIAS);
    float *y = s->vals[n->output];
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t o = 0; o < OUT; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < IN; i++) acc += (double)x[nb * IN + i] * w[o * IN + i];
            y[nb * OUT + o] = (float)acc;
        }
}

static void ref_destroy(void *state)
{
    ref_state *s = state;
    if (!s) return;
    for (int i = 0; s->vals && i < s->g->n_values; i++) distq_free(s->vals[i]);
    distq_free(s->vals);
    distq_graph_destroy(s->g);
    distq_free(s);
}

static distq_status ref_create(const distq_graph *g, int64_t batch, void **state)
{
    ref_state *s = distq_calloc(sizeof *s);
    if (!s) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (ref executor)");
    s->N = batch;
    distq_status st = distq_graph_clone(g, &s->g);
    if (st) goto fail;
    s->vals = distq_calloc((size_t)s->g->n_values * sizeof *s->vals);
    if (!s->vals) goto nomem;
    for (int i = 0; i < s->g->n_values; i++) {
        s->vals[i] = distq_malloc((size_t)distq_value_numel(&s->g->values[i], batch) * sizeof(float));
        if (!s->vals[i]) goto nomem;
    }
    *state = s;
    return DISTQ_OK;
nomem:
    st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory for ref activations (batch %lld)",
                         (long long)batch);
fail:
    ref_destroy(s);
    return st;
}

static distq_status ref_run(void *state, const float *input, float *output)
{
    ref_state *s = state;
    const distq_graph *g = s->g;
    memcpy(s->vals[g->input_value], input,
           (size_t)distq_value_numel(&g->values[g->input_value], s->N) * sizeof(float));
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        int64_t count = distq_value_numel(&g->values[n->output], s->N);
        switch (n->op) {
        case DISTQ_OP_CONV2D: conv2d_ref(s, n); break;
        case DISTQ_OP_BATCH_NORM: batch_norm_ref(s, n); break;
        case DISTQ_OP_RELU: relu_ref(s, n, count); break;
        case DISTQ_OP_ADD: add_ref(s, n, count); break;
        case DISTQ_OP_MAX_POOL2D: max_pool2d_ref(s, n); break;
        case DISTQ_OP_ADAPTIVE_AVG_POOL2D: adaptive_avg_pool2d_ref(s, n); break;
        case DISTQ_OP_FLATTEN: /* NCHW is already (N, C*H*W) in memory */
            memcpy(s->vals[n->output], s->vals[n->inputs[0]], (size_t)count * sizeof(float));
            break;
        case DISTQ_OP_LINEAR: linear_ref(s, n); break;
        default:
            return distq_error_set(DISTQ_ERR_UNSUPPORTED, "ref: node '%s': op %s not implemented",
                                   n->name, distq_op_name(n->op));
        }
    }
    memcpy(output, s->vals[g->output_value],
           (size_t)distq_value_numel(&g->values[g->output_value], s->N) * sizeof(float));
    return DISTQ_OK;
}

static distq_status ref_get_value(void *state, const char *name, void *out)
{
    ref_state *s = state;
    int v = distq_graph_find_value(s->g, name);
    if (v < 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph has no value '%s'", name);
    memcpy(out, s->vals[v], (size_t)distq_value_numel(&s->g->values[v], s->N) * sizeof(float));
    return DISTQ_OK;
}

const distq_exec_i distq_exec_ref_i = {
    .name = "ref",
    .create = ref_create,
    .run = ref_run,
    .destroy = ref_destroy,
    .get_value = ref_get_value,
};
