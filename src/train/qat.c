/*
 * QAT: the fake quants the trainer calls around each node (distq/qat.h has
 * the design and the deviations from PyTorch), their observer state, and the
 * conversion to the int8 graph.
 *
 * Everything is planned once from distq_prepare on a copy of the graph: its
 * observers become the activation fake quants (matched to the training graph
 * by value name: folding BN gives the conv the BN's output name), its
 * quantized conv / linear nodes get weight fake quants, and a BN it folded
 * marks its conv as a simulated conv-bn pair. convert re-runs the same
 * prepare, so observer i here is observer i there.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/qat.h"
#include "train/train_impl.h"

/* One weight fake quant (per output channel) of a conv2d or linear node. */
typedef struct {
    int node, bn;     /* bn: the batch_norm simulated with this conv, or -1 */
    int64_t OC, per;  /* weight viewed as (OC, per) */
    float *min, *max; /* moving average of the weight's channel ranges */
    float *r, *k;     /* conv-bn: r = 1 / sqrt(running_var + eps), k = gamma * r, this step */
    float *scale;     /* the scales of this forward */
    float *wq;        /* fake-quantized (scaled) weight */
    uint8_t *mask;    /* straight-through mask of the weight */
    double *dk;       /* d loss / d k, per channel */
} qat_weight;

struct distq_qat {
    int n_values, n_nodes; /* of the graph it was planned for */
    int reduce_range;
    float c; /* averaging constant */
    int observe;
    int n_obs;
    distq_minmax_state *act; /* [n_obs] moving-average range per activation fake quant */
    char (*obs_name)[DISTQ_NAME_MAX]; /* [n_obs] a value it quantizes, for messages */
    int *value_obs;          /* [n_values] observer, or -1 */
    int n_w;
    qat_weight *w;
    int *node_w;             /* [n_nodes] index into w, or -1 */
    uint8_t **act_mask;      /* [n_values] straight-through masks, sized at attach */
    int64_t max_batch;       /* of the attached trainer (0: none) */
};

/* --- planning --------------------------------------------------------------- */

static distq_status plan_activations(distq_qat *q, const distq_graph *g, const distq_prepared *p)
{
    q->n_obs = p->n_observers;
    q->act = distq_calloc((size_t)(q->n_obs ? q->n_obs : 1) * sizeof *q->act);
    q->obs_name = distq_calloc((size_t)(q->n_obs ? q->n_obs : 1) * sizeof *q->obs_name);
    if (!q->act || !q->obs_name) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (QAT observers)");
    for (int o = 0; o < q->n_obs; o++) {
        distq_minmax_init(&q->act[o]);
        for (int j = 0; j < p->observers[o].n_values; j++) {
            const char *name = p->g->values[p->observers[o].values[j]].name;
            int v = distq_graph_find_value(g, name);
            if (v < 0)
                return distq_error_set(DISTQ_ERR_UNSUPPORTED, "QAT: quantized value '%s' is not in the training graph",
                                       name);
            q->value_obs[v] = o;
            /* for messages: a long name is cut */
            if (!q->obs_name[o][0]) snprintf(q->obs_name[o], sizeof *q->obs_name, "%s", name);
        }
    }
    return DISTQ_OK;
}

/* The batch_norm that node c (a conv) feeds alone and that PTQ folded into it, or -1. */
static int simulated_bn(const distq_graph *g, int c, const distq_prepared *p)
{
    int v = g->nodes[c].output;
    if (g->values[v].n_consumers != 1) return -1;
    for (int i = c + 1; i < g->n_nodes; i++) {
        const distq_node *nd = &g->nodes[i];
        if (nd->inputs[0] != v) continue;
        if (nd->op != DISTQ_OP_BATCH_NORM) return -1;
        /* folded: the prepared conv now produces the BN's output */
        int pc = distq_graph_find_node(p->g, g->nodes[c].name);
        return pc >= 0 && strcmp(p->g->nodes[pc].output_name, nd->output_name) == 0 ? i : -1;
    }
    return -1;
}

static distq_status plan_weights(distq_qat *q, const distq_graph *g, const distq_prepared *p)
{
    q->w = distq_calloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *q->w);
    if (!q->w) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (QAT weights)");
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *nd = &g->nodes[i];
        if (nd->op != DISTQ_OP_CONV2D && nd->op != DISTQ_OP_LINEAR) continue;
        int pn = distq_graph_find_node(p->g, nd->name);
        distq_pattern pt = pn >= 0 ? p->plan[pn].pattern : DISTQ_PATTERN_NONE;
        if (pt != DISTQ_PATTERN_CONV && pt != DISTQ_PATTERN_CONV_SUM && pt != DISTQ_PATTERN_LINEAR) continue;
        qat_weight *w = &q->w[q->n_w];
        const distq_tensor *wt = &g->params[nd->params[DISTQ_PARAM_WEIGHT]];
        for (int j = 0; j < g->n_nodes; j++)
            for (int sl = 0; sl < DISTQ_MAX_PARAMS; sl++)
                if (j != i && g->nodes[j].params[sl] == nd->params[DISTQ_PARAM_WEIGHT])
                    /* its gradient would be masked once per user */
                    return distq_error_set(DISTQ_ERR_UNSUPPORTED, "QAT: weight '%s' is shared by '%s' and '%s'",
                                           wt->name, nd->name, g->nodes[j].name);
        w->node = i;
        w->bn = nd->op == DISTQ_OP_CONV2D ? simulated_bn(g, i, p) : -1;
        if (w->bn >= 0 && nd->params[DISTQ_PARAM_BIAS] >= 0)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                   "QAT: conv '%s' has a bias and feeds batch_norm '%s' (the conv-bn "
                                   "simulation supports bias-free convs, as torchvision's)",
                                   nd->name, g->nodes[w->bn].name);
        w->OC = wt->dims[0];
        w->per = distq_tensor_numel(wt) / w->OC;
        size_t OC = (size_t)w->OC, n = OC * (size_t)w->per;
        w->min = distq_malloc(OC * sizeof(float));
        w->max = distq_malloc(OC * sizeof(float));
        w->r = distq_malloc(OC * sizeof(float));
        w->k = distq_malloc(OC * sizeof(float));
        w->scale = distq_malloc(OC * sizeof(float));
        w->dk = distq_malloc(OC * sizeof(double));
        w->wq = distq_malloc(n * sizeof(float));
        w->mask = distq_malloc(n);
        q->node_w[i] = q->n_w++;
        if (!w->min || !w->max || !w->r || !w->k || !w->scale || !w->dk || !w->wq || !w->mask)
            return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (QAT weight '%s')", wt->name);
        for (size_t o = 0; o < OC; o++) {
            w->min[o] = INFINITY;
            w->max[o] = -INFINITY;
        }
    }
    return DISTQ_OK;
}

distq_status distq_qat_create(const distq_graph *g, const distq_qat_opts *opts, distq_qat **out)
{
    if (!out) return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: out is NULL");
    *out = NULL;
    if (!g || !opts || !g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: needs a finalized graph and options");
    distq_prepared *p = NULL;
    distq_status st = distq_prepare(g, DISTQ_OBSERVER_MINMAX, &p);
    if (st) return st;
    distq_qat *q = distq_calloc(sizeof *q);
    if (!q) {
        distq_prepared_destroy(p);
        return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (QAT)");
    }
    q->n_values = g->n_values;
    q->n_nodes = g->n_nodes;
    q->reduce_range = opts->reduce_range != 0;
    q->c = opts->averaging_constant > 0 ? opts->averaging_constant : DISTQ_EMA_CONSTANT;
    q->observe = 1;
    q->value_obs = distq_malloc((size_t)g->n_values * sizeof *q->value_obs);
    q->node_w = distq_malloc((size_t)g->n_nodes * sizeof *q->node_w);
    q->act_mask = distq_calloc((size_t)g->n_values * sizeof *q->act_mask);
    if (!q->value_obs || !q->node_w || !q->act_mask) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (QAT)");
    } else {
        for (int v = 0; v < g->n_values; v++) q->value_obs[v] = -1;
        for (int i = 0; i < g->n_nodes; i++) q->node_w[i] = -1;
        st = plan_activations(q, g, p);
        if (!st) st = plan_weights(q, g, p);
    }
    distq_prepared_destroy(p);
    if (st) {
        distq_qat_destroy(q);
        return st;
    }
    *out = q;
    return DISTQ_OK;
}

void distq_qat_destroy(distq_qat *q)
{
    if (!q) return;
    for (int i = 0; i < q->n_w; i++) {
        qat_weight *w = &q->w[i];
        distq_free(w->min);
        distq_free(w->max);
        distq_free(w->r);
        distq_free(w->k);
        distq_free(w->scale);
        distq_free(w->dk);
        distq_free(w->wq);
        distq_free(w->mask);
    }
    for (int v = 0; q->act_mask && v < q->n_values; v++) distq_free(q->act_mask[v]);
    distq_free(q->act_mask);
    distq_free(q->w);
    distq_free(q->act);
    distq_free(q->obs_name);
    distq_free(q->value_obs);
    distq_free(q->node_w);
    distq_free(q);
}

distq_status distq_trainer_attach_qat(distq_trainer *t, distq_qat *q)
{
    if (!t || !q) return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: trainer or QAT state is NULL");
    if (t->g->n_values != q->n_values || t->g->n_nodes != q->n_nodes)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: the trainer's graph is not the one QAT was planned for");
    if (q->max_batch && q->max_batch != t->max_batch)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: already attached to a trainer of another batch size");
    for (int v = 0; v < q->n_values && !q->max_batch; v++) {
        if (q->value_obs[v] < 0 || t->buf_of[v] != v || q->act_mask[v]) continue;
        q->act_mask[v] = distq_malloc((size_t)distq_value_numel(&t->g->values[v], t->max_batch));
        if (!q->act_mask[v]) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (QAT masks)");
    }
    q->max_batch = t->max_batch;
    t->qat = q;
    return DISTQ_OK;
}

void distq_qat_set_observers(distq_qat *q, int on) { q->observe = on != 0; }

/* --- forward ------------------------------------------------------------------ */

/* Fake-quantizes node i's weight (scaled by k for a conv-bn pair) into w->wq;
 * training steps with observers on move the moving average first. */
distq_status distq_qat_before_forward(distq_trainer *t, int i, int training)
{
    distq_qat *q = t->qat;
    if (q->node_w[i] < 0) return DISTQ_OK;
    qat_weight *w = &q->w[q->node_w[i]];
    const distq_graph *g = t->g;
    const distq_node *nd = &g->nodes[i];
    const distq_tensor *wt = &g->params[nd->params[DISTQ_PARAM_WEIGHT]];
    const float *W = wt->data;
    if (w->bn >= 0) {
        /* fold_bn's factor, from the running variance before this step updates it */
        const distq_node *bn = &g->nodes[w->bn];
        const float *rvar = g->params[bn->params[DISTQ_PARAM_RUNNING_VAR]].data;
        const float *gamma = bn->params[DISTQ_PARAM_WEIGHT] >= 0 ? g->params[bn->params[DISTQ_PARAM_WEIGHT]].data : NULL;
        for (int64_t o = 0; o < w->OC; o++) {
            w->r[o] = 1.0f / sqrtf(rvar[o] + bn->attr.eps);
            w->k[o] = (gamma ? gamma[o] : 1.0f) * w->r[o];
            if (!isfinite(w->k[o]) || w->k[o] == 0.0f) /* y = conv(...) / k needs k != 0 */
                return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                       "QAT: batch_norm '%s' channel %lld: gamma / sqrt(running_var + eps) is %g",
                                       bn->name, (long long)o, (double)w->k[o]);
        }
    }
    for (int64_t o = 0; o < w->OC; o++) {
        float *dst = w->wq + o * w->per, lo = INFINITY, hi = -INFINITY;
        const float *src = W + o * w->per;
        for (int64_t j = 0; j < w->per; j++) {
            dst[j] = w->bn >= 0 ? src[j] * w->k[o] : src[j];
            lo = dst[j] < lo ? dst[j] : lo;
            hi = dst[j] > hi ? dst[j] : hi;
        }
        if (!isfinite(lo) || !isfinite(hi))
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: weight '%s' channel %lld is not finite (training diverged?)",
                                   wt->name, (long long)o);
        distq_minmax_state mm = {w->min[o], w->max[o]};
        if (training && q->observe) distq_ema_minmax_update(&mm, lo, hi, q->c);
        w->min[o] = mm.min;
        w->max[o] = mm.max;
        /* never observed (evaluating an untrained state): this weight's own range */
        w->scale[o] = mm.min <= mm.max ? distq_qparams_symmetric_scale(mm.min, mm.max)
                                       : distq_qparams_symmetric_scale(lo, hi);
    }
    distq_fake_quant_per_channel(w->wq, w->OC, w->per, w->scale, w->wq, w->mask);
    t->nodes[i].wq = w->wq;
    return DISTQ_OK;
}

/* Elements per piece when a value's min/max and fake quant are split over
 * the trainer's threads (both are exact per element: the split changes no result). */
#define FQ_CHUNK 65536

/* Range of x[0..n) over the trainer's threads; 0 if any value is NaN or Inf. */
static int value_minmax(const distq_trainer *t, const float *x, int64_t n, float *lo, float *hi)
{
    float L = INFINITY, H = -INFINITY;
    int bad = 0;
#pragma omp parallel for schedule(static) num_threads(t->nthreads) reduction(min : L) reduction(max : H) \
    reduction(| : bad)
    for (int64_t off = 0; off < n; off += FQ_CHUNK) {
        float a, b;
        if (distq_batch_minmax(x + off, n - off < FQ_CHUNK ? n - off : FQ_CHUNK, &a, &b) != DISTQ_OK) {
            bad = 1;
            continue;
        }
        L = a < L ? a : L;
        H = b > H ? b : H;
    }
    *lo = L;
    *hi = H;
    return !bad;
}

/* Fake-quantizes value v in place (per tensor, u8 affine). */
static distq_status fake_quant_value(distq_trainer *t, int v, int64_t N, int training)
{
    distq_qat *q = t->qat;
    int o = q->value_obs[v];
    if (o < 0 || t->buf_of[v] != v) return DISTQ_OK;
    float *x = t->act[v], lo, hi;
    int64_t n = distq_value_numel(&t->g->values[v], N);
    const char *name = t->g->values[v].name;
    int bad = !value_minmax(t, x, n, &lo, &hi);
    distq_minmax_state *mm = &q->act[o];
    if (training && q->observe) {
        /* A rank that saw NaN or Inf still joins the reduction, with the range
         * (-inf, +inf) that no finite batch gives: every rank then fails here,
         * at the same node, instead of waiting in a later collective. */
        if (bad) {
            lo = -INFINITY;
            hi = INFINITY;
        }
        distq_status st;
        if (t->ranks.min_max && (st = t->ranks.min_max(t->ranks.ctx, &lo, &hi, 1)))
            return distq_error_set(st, "QAT: value '%s': reducing its range over ranks: %s", name,
                                   distq_error_message());
        if (!bad && (lo == -INFINITY || hi == INFINITY))
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: value '%s' holds NaN or Inf on another rank", name);
        if (!bad && lo <= hi) distq_ema_minmax_update(mm, lo, hi, q->c);
    }
    if (bad && training && !q->observe && t->ranks.min_max)
        /* No reduction here to piggy-back on, and failing alone would leave the
         * other ranks in the step's next collective: let NaN flow through the
         * step like fp32 training does; the gradient all-reduce spreads it to
         * every weight, and the next step's weight check fails on every rank. */
        return DISTQ_OK;
    if (bad) return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT: value '%s' holds NaN or Inf (training diverged?)", name);
    distq_qparams qp;
    float a = mm->min <= mm->max ? mm->min : lo, b = mm->min <= mm->max ? mm->max : hi;
    if (!(a <= b)) return DISTQ_OK; /* nothing observed and no images: nothing to quantize */
    int32_t qmax = q->reduce_range ? 127 : 255;
    distq_status st = distq_qparams_affine(a, b, 0, qmax, &qp);
    if (st) return distq_error_set(st, "QAT: value '%s': %s", name, distq_error_message());
    uint8_t *mask = training ? q->act_mask[v] : NULL;
#pragma omp parallel for schedule(static) num_threads(t->nthreads)
    for (int64_t off = 0; off < n; off += FQ_CHUNK)
        distq_fake_quant(x + off, n - off < FQ_CHUNK ? n - off : FQ_CHUNK, qp.scale, qp.zero_point, 0, qmax, x + off,
                         mask ? mask + off : NULL);
    return DISTQ_OK;
}

distq_status distq_qat_after_forward(distq_trainer *t, int i, int64_t N, int training)
{
    distq_qat *q = t->qat;
    if (i < 0) return fake_quant_value(t, t->g->input_value, N, training);
    const distq_node *nd = &t->g->nodes[i];
    int wi = q->node_w[i];
    if (wi >= 0 && q->w[wi].bn >= 0) {
        /* conv-bn: undo the weight scale on the output, y = conv(x, FQ(w k)) / k */
        const qat_weight *w = &q->w[wi];
        float *y = t->act[nd->output];
        int64_t HW = distq_value_numel(&t->g->values[nd->output], 1) / w->OC;
#pragma omp parallel for schedule(dynamic, 16) num_threads(t->nthreads)
        for (int64_t nc = 0; nc < N * w->OC; nc++) {
            float k = w->k[nc % w->OC];
            for (int64_t j = 0; j < HW; j++) y[nc * HW + j] /= k;
        }
    }
    return fake_quant_value(t, nd->output, N, training);
}

/* --- backward ----------------------------------------------------------------- */

void distq_qat_before_backward(distq_trainer *t, int i, int64_t N)
{
    distq_qat *q = t->qat;
    const distq_node *nd = &t->g->nodes[i];
    int v = nd->output;
    float *dy = t->dact[v];
    if (q->value_obs[v] >= 0 && t->buf_of[v] == v) {
        /* straight-through: no gradient where the fake quant clamped */
        const uint8_t *mask = q->act_mask[v];
        int64_t n = distq_value_numel(&t->g->values[v], N);
#pragma omp parallel for schedule(static) num_threads(t->nthreads)
        for (int64_t j = 0; j < n; j++) dy[j] = mask[j] ? dy[j] : 0.0f;
    }
    int wi = q->node_w[i];
    if (wi < 0 || q->w[wi].bn < 0) return;
    /* conv-bn, y = z / k: d loss / d k gets -sum(dy * y) / k; dz = dy / k */
    qat_weight *w = &q->w[wi];
    const float *y = t->act[v];
    int64_t OC = w->OC, HW = distq_value_numel(&t->g->values[v], 1) / OC;
#pragma omp parallel for schedule(dynamic, 1) num_threads(t->nthreads)
    for (int64_t o = 0; o < OC; o++) {
        double s = 0.0;
        float k = w->k[o];
        for (int64_t n = 0; n < N; n++) {
            float *d = dy + (n * OC + o) * HW;
            const float *yy = y + (n * OC + o) * HW;
            for (int64_t j = 0; j < HW; j++) {
                s += (double)d[j] * yy[j];
                d[j] /= k;
            }
        }
        w->dk[o] = -s / k;
    }
}

void distq_qat_after_backward(distq_trainer *t, int i)
{
    distq_qat *q = t->qat;
    int wi = q->node_w[i];
    if (wi < 0) return;
    qat_weight *w = &q->w[wi];
    const distq_graph *g = t->g;
    const distq_node *nd = &g->nodes[i];
    int wp = nd->params[DISTQ_PARAM_WEIGHT];
    if (t->grad_off[wp] < 0) return;
    float *gw = t->grads + t->grad_off[wp];
    const float *W = g->params[wp].data;
    /* gw holds d loss / d FQ(w k): mask it (STE), then through w k */
    for (int64_t o = 0; o < w->OC; o++) {
        double dkw = 0.0;
        for (int64_t j = o * w->per; j < (o + 1) * w->per; j++) {
            float gs = w->mask[j] ? gw[j] : 0.0f;
            if (w->bn < 0) {
                gw[j] = gs;
                continue;
            }
            dkw += (double)gs * W[j];
            gw[j] = gs * w->k[o];
        }
        if (w->bn < 0) continue;
        /* k = gamma * r: the BN weight's gradient gets d loss / d k * r */
        int gp = g->nodes[w->bn].params[DISTQ_PARAM_WEIGHT];
        if (gp >= 0 && t->grad_off[gp] >= 0) t->grads[t->grad_off[gp] + o] += (float)((w->dk[o] + dkw) * w->r[o]);
    }
}

/* --- state and convert ---------------------------------------------------------- */

int64_t distq_qat_state_count(const distq_qat *q)
{
    int64_t n = 2 * (int64_t)q->n_obs;
    for (int i = 0; i < q->n_w; i++) n += 2 * q->w[i].OC;
    return n + 1; /* reduce_range */
}

int distq_qat_reduce_range(const distq_qat *q) { return q->reduce_range; }

void distq_qat_state_get(const distq_qat *q, float *out)
{
    for (int o = 0; o < q->n_obs; o++) {
        *out++ = q->act[o].min;
        *out++ = q->act[o].max;
    }
    for (int i = 0; i < q->n_w; i++) {
        memcpy(out, q->w[i].min, (size_t)q->w[i].OC * sizeof *out);
        out += q->w[i].OC;
        memcpy(out, q->w[i].max, (size_t)q->w[i].OC * sizeof *out);
        out += q->w[i].OC;
    }
    *out = (float)q->reduce_range;
}

distq_status distq_qat_state_set(distq_qat *q, const float *in, int64_t n)
{
    if (n != distq_qat_state_count(q))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT state has %lld values, this model needs %lld%s",
                               (long long)n, (long long)distq_qat_state_count(q),
                               n == distq_qat_state_count(q) - 1
                                   ? " (a checkpoint from before reduce_range was stored: restart the QAT run)"
                                   : "");
    float rr = in[n - 1];
    if (rr != 0.0f && rr != 1.0f)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT state's last value (reduce_range) is %g, not 0 or 1",
                               (double)rr);
    for (int o = 0; o < q->n_obs; o++) {
        q->act[o].min = *in++;
        q->act[o].max = *in++;
    }
    for (int i = 0; i < q->n_w; i++) {
        memcpy(q->w[i].min, in, (size_t)q->w[i].OC * sizeof *in);
        in += q->w[i].OC;
        memcpy(q->w[i].max, in, (size_t)q->w[i].OC * sizeof *in);
        in += q->w[i].OC;
    }
    /* the weights were trained against that activation grid: the run goes on with it */
    q->reduce_range = rr != 0.0f;
    return DISTQ_OK;
}

distq_status distq_qat_convert(const distq_graph *g, const distq_qat *q, distq_prepared **p_out,
                               distq_graph **out)
{
    if (!out) return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT convert: out is NULL");
    *out = NULL;
    if (p_out) *p_out = NULL;
    if (!g || !q || g->n_values != q->n_values || g->n_nodes != q->n_nodes)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT convert: the graph is not the one QAT was planned for");
    /* (+inf, -inf) is an observer that never saw a value; NaN a corrupt state */
    for (int o = 0; o < q->n_obs; o++)
        if (!(q->act[o].min <= q->act[o].max))
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT convert: the fake quant of '%s' has range [%g, %g]%s",
                                   q->obs_name[o], (double)q->act[o].min, (double)q->act[o].max,
                                   q->act[o].min == INFINITY ? " (never observed a value)" : "");
    for (int i = 0; i < q->n_w; i++)
        for (int64_t o = 0; o < q->w[i].OC; o++)
            if (!(q->w[i].min[o] <= q->w[i].max[o]))
                return distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT convert: the weight of '%s' channel %lld has "
                                       "range [%g, %g]%s", g->nodes[q->w[i].node].name, (long long)o,
                                       (double)q->w[i].min[o], (double)q->w[i].max[o],
                                       q->w[i].min[o] == INFINITY ? " (never observed)" : "");
    distq_prepared *p = NULL;
    distq_status st = distq_prepare(g, DISTQ_OBSERVER_MINMAX, &p);
    if (st) return st;
    if (p->n_observers != q->n_obs) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT convert: %d observers, QAT planned %d", p->n_observers,
                             q->n_obs);
        goto done;
    }
    for (int o = 0; o < q->n_obs; o++) p->observers[o].mm = q->act[o];
    for (int i = 0; i < q->n_w; i++) {
        int pn = distq_graph_find_node(p->g, g->nodes[q->w[i].node].name);
        if (pn < 0) {
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "QAT convert: node '%s' vanished in prepare",
                                 g->nodes[q->w[i].node].name);
            goto done;
        }
        p->plan[pn].weight_min = q->w[i].min;
        p->plan[pn].weight_max = q->w[i].max;
    }
    st = distq_convert(p, q->reduce_range, out);
    /* the plan borrowed q's arrays: p must not point into q once returned */
    for (int i = 0; i < p->g->n_nodes; i++) p->plan[i].weight_min = p->plan[i].weight_max = NULL;
    if (!st && p_out) {
        *p_out = p;
        return DISTQ_OK;
    }
done:
    distq_prepared_destroy(p);
    return st;
}
