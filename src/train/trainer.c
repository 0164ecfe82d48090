/*
 * The fp32 trainer: buffers, the training step (forward in training mode,
 * loss, backward in reverse node order), the losses and inference-mode
 * prediction. The per-op kernels are in train_ops.c.
 *
 * Every buffer is carved from one slab at create: activations and their
 * gradients for max_batch images, saved per-node state, the gradient vector
 * and per-thread scratch. A step allocates nothing.
 *
 * Deliberately not here: the optimizer (sgd.c), the all-reduce of the
 * gradients (the caller's), the oneDNN conv primitives (backend/onednn/onednn_train.c).
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "train/train_impl.h"

/* --- layout ---------------------------------------------------------------- */

/* Bump allocator over the slab; with base == NULL it only measures. */
typedef struct {
    char *base;
    size_t off;
} carver;

static void *carve(carver *c, size_t nbytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (nbytes + 63) / 64 * 64;
    return p;
}

static int trainable_slot(distq_op op, int slot)
{
    return (op == DISTQ_OP_CONV2D || op == DISTQ_OP_LINEAR || op == DISTQ_OP_BATCH_NORM) &&
           (slot == DISTQ_PARAM_WEIGHT || slot == DISTQ_PARAM_BIAS);
}

/* flatten's output is its input's memory; every other value owns a buffer. */
static int buffer_owner(const distq_graph *g, int v)
{
    while (g->values[v].producer >= 0 && g->nodes[g->values[v].producer].op == DISTQ_OP_FLATTEN)
        v = g->nodes[g->values[v].producer].inputs[0];
    return v;
}

/* Sizes that do not depend on the slab: gradient count, scratch, channels. */
typedef struct {
    int64_t n_grads, max_channels;
    size_t col_floats, partial_floats;
} sizes;

static sizes measure(const distq_graph *g)
{
    sizes z = {0};
    for (int p = 0; p < g->n_params; p++) {
        int used = 0;
        for (int i = 0; i < g->n_nodes && !used; i++)
            for (int s = 0; s < DISTQ_MAX_PARAMS; s++)
                if (g->nodes[i].params[s] == p && trainable_slot(g->nodes[i].op, s)) used = 1;
        if (used) z.n_grads += distq_tensor_numel(&g->params[p]);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *nd = &g->nodes[i];
        const distq_value *xv = &g->values[nd->inputs[0]], *yv = &g->values[nd->output];
        if (nd->op == DISTQ_OP_BATCH_NORM && xv->dims[1] > z.max_channels) z.max_channels = xv->dims[1];
        if (nd->op != DISTQ_OP_CONV2D) continue;
        const distq_tensor *w = &g->params[nd->params[DISTQ_PARAM_WEIGHT]];
        size_t col = (size_t)(w->dims[1] * w->dims[2] * w->dims[3] * yv->dims[2] * yv->dims[3]);
        size_t partial = (size_t)(distq_tensor_numel(w) + yv->dims[1]);
        if (col > z.col_floats) z.col_floats = col;
        if (partial > z.partial_floats) z.partial_floats = partial;
    }
    return z;
}

/* Points every buffer of t into c (measuring only if c->base is NULL). */
static void layout(distq_trainer *t, const sizes *z, carver *c)
{
    const distq_graph *g = t->g;
    t->act = carve(c, (size_t)g->n_values * sizeof *t->act);
    t->dact = carve(c, (size_t)g->n_values * sizeof *t->dact);
    t->buf_of = carve(c, (size_t)g->n_values * sizeof *t->buf_of);
    t->ready = carve(c, (size_t)g->n_values);
    t->grad_off = carve(c, (size_t)g->n_params * sizeof *t->grad_off);
    t->nodes = carve(c, (size_t)g->n_nodes * sizeof *t->nodes);
    t->red = carve(c, (size_t)(2 * z->max_channels + 1) * sizeof *t->red);
    t->grads = carve(c, (size_t)z->n_grads * sizeof *t->grads);
    t->col_floats = (z->col_floats + 15) / 16 * 16;
    t->scratch_floats = (distq_sgemm_work_floats() + 2 * t->col_floats + 15) / 16 * 16;
    t->scratch = carve(c, (size_t)t->nthreads * t->scratch_floats * sizeof *t->scratch);
    t->partial_floats = (z->partial_floats + 15) / 16 * 16;
    t->partials = carve(c, (size_t)t->n_chunks * t->partial_floats * sizeof *t->partials);
    float **act = NULL, **dact = NULL;
    if (c->base) {
        act = t->act;
        dact = t->dact;
    }
    for (int v = 0; v < g->n_values; v++) {
        if (buffer_owner(g, v) != v) continue;
        size_t nbytes = (size_t)distq_value_numel(&g->values[v], t->max_batch) * sizeof(float);
        float *a = carve(c, nbytes), *d = carve(c, nbytes);
        if (act) {
            act[v] = a;
            dact[v] = d;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *nd = &g->nodes[i];
        distq_train_node s = {0};
        if (nd->op == DISTQ_OP_BATCH_NORM) {
            size_t C = (size_t)g->values[nd->inputs[0]].dims[1];
            s.mean = carve(c, C * sizeof(float));
            s.invstd = carve(c, C * sizeof(float));
            s.scale = carve(c, C * sizeof(float));
            s.shift = carve(c, C * sizeof(float));
        } else if (nd->op == DISTQ_OP_MAX_POOL2D) {
            s.argmax = carve(c, (size_t)distq_value_numel(&g->values[nd->output], t->max_batch) * sizeof(int32_t));
        }
        if (c->base) t->nodes[i] = s;
    }
    if (!c->base) return;
    for (int v = 0; v < g->n_values; v++) {
        int o = buffer_owner(g, v);
        t->buf_of[v] = o;
        t->act[v] = t->act[o];
        t->dact[v] = t->dact[o];
    }
    int64_t off = 0;
    for (int p = 0; p < g->n_params; p++) {
        t->grad_off[p] = -1;
        for (int i = 0; i < g->n_nodes && t->grad_off[p] < 0; i++)
            for (int s = 0; s < DISTQ_MAX_PARAMS; s++)
                if (g->nodes[i].params[s] == p && trainable_slot(g->nodes[i].op, s)) t->grad_off[p] = off;
        if (t->grad_off[p] >= 0) off += distq_tensor_numel(&g->params[p]);
    }
    t->n_grads = off;
}

/* --- lifecycle ------------------------------------------------------------- */

distq_status distq_trainer_create(distq_graph *g, const distq_train_opts *opts, distq_trainer **out)
{
    if (!out) return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: out is NULL");
    *out = NULL;
    if (!g || !opts) return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: graph or options are NULL");
    if (!g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: the graph must be finalized");
    if (opts->max_batch < 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: max_batch %lld must be >= 1",
                               (long long)opts->max_batch);
    distq_status ops_ok = distq_train_check_ops(g);
    if (ops_ok) return ops_ok;
    if (g->n_outputs != 1)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "trainer: the graph has %d outputs ('%s', '%s'...); "
                               "the trainer takes one loss on one output", g->n_outputs, g->output_names[0],
                               g->output_names[1]);
    const distq_value *out_v = &g->values[g->output_values[0]];
    if (opts->loss == DISTQ_LOSS_CROSS_ENTROPY) {
        if (out_v->ndim != 2)
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "trainer: cross-entropy needs (N, classes) logits, graph output "
                                   "'%s' has rank %d", out_v->name, out_v->ndim);
    } else if (opts->loss != DISTQ_LOSS_MSE) {
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: unknown loss %d", (int)opts->loss);
    }
    distq_trainer *t = distq_calloc(sizeof *t);
    if (!t) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (trainer)");
    t->g = g;
    t->max_batch = opts->max_batch;
    t->loss = opts->loss;
    if (opts->reducer) t->ranks = *opts->reducer;
    t->nthreads = omp_get_max_threads();
    t->n_chunks = 2 * (int64_t)t->nthreads;
    sizes z = measure(g);
    /* im2col columns and dW partials serve the plain-C conv only (with oneDNN
     * convs it runs for empty shards, where it touches neither) */
    if (!opts->plain_kernels) z.col_floats = z.partial_floats = 0;
    carver c = {0};
    layout(t, &z, &c);
    t->slab = distq_calloc(c.off);
    if (!t->slab) {
        distq_status st = distq_error_set(DISTQ_ERR_NOMEM,
                                          "out of memory for training buffers (%zu MiB, max_batch %lld)",
                                          c.off >> 20, (long long)opts->max_batch);
        distq_free(t);
        return st;
    }
    c = (carver){.base = t->slab};
    layout(t, &z, &c);
    if (!opts->plain_kernels) {
        distq_status st = distq_onednn_train_create(g->n_nodes, &t->dnn);
        if (st) {
            distq_trainer_destroy(t);
            return st;
        }
    }
    *out = t;
    return DISTQ_OK;
}

void distq_trainer_destroy(distq_trainer *t)
{
    if (!t) return;
    distq_onednn_train_destroy(t->dnn);
    distq_free(t->slab);
    distq_free(t);
}

float *distq_train_grad_out(distq_trainer *t, int v, int *accumulate)
{
    int o = t->buf_of[v];
    if (o == t->g->input_value && !t->want_input_grad) return NULL;
    *accumulate = t->ready[o];
    t->ready[o] = 1;
    return t->dact[o];
}

void distq_trainer_freeze_bn(distq_trainer *t, int on) { t->bn_frozen = on != 0; }

void distq_trainer_set_input_grad(distq_trainer *t, int on) { t->want_input_grad = on != 0; }

const float *distq_trainer_input_grad(const distq_trainer *t) { return t->dact[t->g->input_value]; }

float *distq_trainer_grad(distq_trainer *t, int p)
{
    if (!t || p < 0 || p >= t->g->n_params || t->grad_off[p] < 0) return NULL;
    return t->grads + t->grad_off[p];
}

float *distq_trainer_grads(distq_trainer *t, int64_t *count)
{
    if (count) *count = t->n_grads;
    return t->grads;
}

/* --- losses ----------------------------------------------------------------
 * Both write d(mean loss over the global batch) / d output into its gradient
 * buffer and add this rank's per-image losses to stats. */

/* loss_i = logsumexp(z_i) - z_i[label], the log-sum-exp shifted by max(z_i). */
static void loss_cross_entropy(distq_trainer *t, int64_t n, const int64_t *labels, int64_t global_batch,
                               distq_step_stats *stats)
{
    int v = t->g->output_values[0];
    int64_t K = distq_value_numel(&t->g->values[v], 1);
    const float *z = t->act[v];
    float *dz = t->dact[v];
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * K;
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (zi[k] > zi[best]) best = k;
        double s = 0.0;
        for (int64_t k = 0; k < K; k++) s += exp((double)zi[k] - zi[best]);
        double lse = zi[best] + log(s);
        stats->loss_sum += lse - zi[labels[i]];
        stats->correct += best == labels[i];
        for (int64_t k = 0; k < K; k++)
            dz[i * K + k] = (float)((exp((double)zi[k] - lse) - (k == labels[i])) / (double)global_batch);
    }
}

/* loss_i = mean over the image's elements of (y - target)^2 */
static void loss_mse(distq_trainer *t, int64_t n, const float *targets, int64_t global_batch,
                     distq_step_stats *stats)
{
    int v = t->g->output_values[0];
    int64_t D = distq_value_numel(&t->g->values[v], 1);
    const float *y = t->act[v];
    float *dy = t->dact[v];
    double scale = 2.0 / ((double)global_batch * (double)D);
    for (int64_t i = 0; i < n; i++) {
        double e = 0.0;
        for (int64_t k = 0; k < D; k++) {
            double d = (double)y[i * D + k] - targets[i * D + k];
            e += d * d;
            dy[i * D + k] = (float)(scale * d);
        }
        stats->loss_sum += e / (double)D;
    }
}

/* --- step and predict ------------------------------------------------------- */

/* Forward of every node over N images already in the input buffer; with QAT,
 * the fake quants around each node. */
static distq_status forward_all(distq_trainer *t, int64_t N, int training)
{
    distq_status st = DISTQ_OK;
    if (t->qat && (st = distq_qat_after_forward(t, -1, N, training))) return st;
    for (int i = 0; i < t->g->n_nodes; i++) {
        if (t->qat && (st = distq_qat_before_forward(t, i, training))) return st;
        if ((st = distq_train_forward_node(t, i, N, training))) return st;
        if (t->qat && (st = distq_qat_after_forward(t, i, N, training))) return st;
    }
    return DISTQ_OK;
}

distq_status distq_trainer_step(distq_trainer *t, const float *x, int64_t n, const int64_t *labels,
                                const float *targets, int64_t global_batch, distq_step_stats *stats)
{
    const distq_graph *g = t->g;
    distq_status st = DISTQ_OK;
    if (n < 0 || n > t->max_batch)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: step on %lld images, max_batch is %lld",
                               (long long)n, (long long)t->max_batch);
    if (!x && n > 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: step input is NULL");
    if (global_batch < n || global_batch < 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: global batch %lld is smaller than the "
                               "local batch %lld", (long long)global_batch, (long long)n);
    int64_t K = distq_value_numel(&g->values[g->output_values[0]], 1);
    if (t->loss == DISTQ_LOSS_CROSS_ENTROPY) {
        if (!labels && n > 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: cross-entropy needs labels");
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= K)
                return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                       "trainer: label %lld of image %lld is outside [0, %lld)",
                                       (long long)labels[i], (long long)i, (long long)K);
    } else if (!targets && n > 0) {
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: MSE needs targets");
    }
    int in = g->input_value;
    if (n > 0) memcpy(t->act[in], x, (size_t)distq_value_numel(&g->values[in], n) * sizeof(float));
    if ((st = forward_all(t, n, 1))) return st;

    distq_step_stats local = {.images = n};
    memset(t->ready, 0, (size_t)g->n_values);
    t->ready[t->buf_of[g->output_values[0]]] = 1;
    if (t->loss == DISTQ_LOSS_CROSS_ENTROPY) loss_cross_entropy(t, n, labels, global_batch, &local);
    else loss_mse(t, n, targets, global_batch, &local);

    memset(t->grads, 0, (size_t)t->n_grads * sizeof *t->grads);
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        /* A value nobody reads (dead branch) has no gradient: nothing flows back. */
        if (!t->ready[t->buf_of[g->nodes[i].output]]) continue;
        if (t->qat) distq_qat_before_backward(t, i, n);
        if ((st = distq_train_backward_node(t, i, n))) return st;
        if (t->qat) distq_qat_after_backward(t, i);
    }
    /* Asked for but unreached (the input feeds nothing trainable): zero. */
    if (t->want_input_grad && !t->ready[in])
        memset(t->dact[in], 0, (size_t)distq_value_numel(&g->values[in], n) * sizeof(float));
    if (stats) *stats = local;
    return DISTQ_OK;
}

distq_status distq_trainer_predict(distq_trainer *t, const float *x, int64_t n, float *logits)
{
    const distq_graph *g = t->g;
    distq_status st = DISTQ_OK;
    if (n < 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: predict on %lld images", (long long)n);
    if ((!x || !logits) && n > 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "trainer: predict input or output is NULL");
    int in = g->input_value, out = g->output_values[0];
    int64_t in_numel = distq_value_numel(&g->values[in], 1), out_numel = distq_value_numel(&g->values[out], 1);
    for (int64_t off = 0; off < n; off += t->max_batch) {
        int64_t m = n - off < t->max_batch ? n - off : t->max_batch;
        memcpy(t->act[in], x + off * in_numel, (size_t)(m * in_numel) * sizeof(float));
        if ((st = forward_all(t, m, 0))) return st;
        memcpy(logits + off * out_numel, t->act[out], (size_t)(m * out_numel) * sizeof(float));
    }
    return DISTQ_OK;
}
