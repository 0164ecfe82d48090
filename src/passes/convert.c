/*
 * convert: observers -> qparams, weights -> s8 per output channel, and the
 * fused int8 graph (spec §3.6, §3.7, §5, §6.3). Runs once, after calibration.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/quant.h"

distq_status distq_observer_qparams(const distq_observer *o, int32_t qmax, distq_qparams *qp,
                                    float *lo, float *hi)
{
    float a = o->mm.min, b = o->mm.max;
    /* the histogram's L2 search runs here, once */
    if (o->kind == DISTQ_OBSERVER_HISTOGRAM) {
        a = o->hist->min;
        b = o->hist->max;
        if (!(a == INFINITY && b == -INFINITY)) distq_hist_search(o->hist, &a, &b);
    }
    if (lo) *lo = a;
    if (hi) *hi = b;
    return distq_qparams_affine(a, b, 0, qmax, qp);
}

/* dst = base + suffix, checked against DISTQ_NAME_MAX. */
static distq_status suffixed(char *dst, const char *base, const char *suffix)
{
    if (strlen(base) + strlen(suffix) >= DISTQ_NAME_MAX)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "name '%s%s' too long", base, suffix);
    strcpy(dst, base);
    strcat(dst, suffix);
    return DISTQ_OK;
}

static distq_status add_value_raw(distq_qgraph *q, const char *name, distq_dtype dt, int ndim,
                                  const int64_t *dims, const distq_qparams *qp, int *index);

static distq_status add_value(distq_qgraph *q, const char *name, distq_dtype dt, int ndim,
                              const int64_t *dims, const distq_qparams *qp, int *index)
{
    distq_status st = add_value_raw(q, name, dt, ndim, dims, qp, index);
    if (!st && dt == DISTQ_DTYPE_U8) q->values[*index].quant_max = q->reduce_range ? 127 : 255;
    return st;
}

static distq_status add_value_raw(distq_qgraph *q, const char *name, distq_dtype dt, int ndim,
                                  const int64_t *dims, const distq_qparams *qp, int *index)
{
    distq_qvalue *v = &q->values[q->n_values];
    memset(v, 0, sizeof *v);
    if (strlen(name) >= DISTQ_NAME_MAX)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "value name '%.40s...' too long", name);
    strcpy(v->name, name);
    v->dtype = dt;
    v->ndim = ndim;
    memcpy(v->dims, dims, sizeof v->dims);
    if (qp) {
        v->scale = qp->scale;
        v->zero_point = qp->zero_point;
    }
    *index = q->n_values++;
    return DISTQ_OK;
}

/* s8 weights: PerChannelMinMax, scale = max(amax / 127.5, eps), q = round_ne(w / s).
 * range_min/max (OC, optional): the range to take the scales from instead of w's. */
static distq_status quantize_weights(const distq_tensor *w, const distq_tensor *bias, const float *range_min,
                                     const float *range_max, distq_qnode *qn)
{
    int64_t OC = w->dims[0], per = distq_tensor_numel(w) / OC;
    qn->wndim = w->ndim;
    memcpy(qn->wdims, w->dims, sizeof qn->wdims);
    qn->weight = distq_malloc((size_t)(OC * per));
    qn->weight_scale = distq_malloc((size_t)OC * sizeof(float));
    float *mn = distq_malloc((size_t)OC * sizeof(float)), *mx = distq_malloc((size_t)OC * sizeof(float));
    if (bias) qn->bias = distq_malloc((size_t)OC * sizeof(float));
    distq_status st = DISTQ_OK;
    if (!qn->weight || !qn->weight_scale || !mn || !mx || (bias && !qn->bias)) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory quantizing '%s'", w->name);
        goto cleanup;
    }
    const float *wd = w->data;
    distq_minmax_per_channel(wd, OC, per, mn, mx);
    for (int64_t oc = 0; oc < OC; oc++) {
        if (!isfinite(mn[oc]) || !isfinite(mx[oc])) {
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "weight '%s' channel %lld holds NaN or Inf",
                                 w->name, (long long)oc);
            goto cleanup;
        }
        if (range_min && range_max && !(isfinite(range_min[oc]) && isfinite(range_max[oc]))) {
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "weight '%s' channel %lld: trained range [%g, %g] is not finite",
                                 w->name, (long long)oc, (double)range_min[oc], (double)range_max[oc]);
            goto cleanup;
        }
    }
    if (range_min && range_max) {
        memcpy(mn, range_min, (size_t)OC * sizeof(float));
        memcpy(mx, range_max, (size_t)OC * sizeof(float));
    }
    for (int64_t oc = 0; oc < OC; oc++) {
        float s = distq_qparams_symmetric_scale(mn[oc], mx[oc]), inv = 1.0f / s;
        qn->weight_scale[oc] = s;
        for (int64_t i = 0; i < per; i++)
            qn->weight[oc * per + i] = (int8_t)distq_quantize_value(wd[oc * per + i], inv, 0, -128, 127);
    }
    if (bias) memcpy(qn->bias, bias->data, (size_t)OC * sizeof(float));
cleanup:
    distq_free(mn);
    distq_free(mx);
    return st;
}

static distq_qop qop_of(distq_pattern pt)
{
    switch (pt) {
    case DISTQ_PATTERN_CONV:
    case DISTQ_PATTERN_CONV_SUM: return DISTQ_QOP_CONV;
    case DISTQ_PATTERN_LINEAR: return DISTQ_QOP_LINEAR;
    case DISTQ_PATTERN_MAX_POOL: return DISTQ_QOP_MAX_POOL;
    case DISTQ_PATTERN_AVG_POOL: return DISTQ_QOP_AVG_POOL;
    default: return DISTQ_QOP_FLATTEN;
    }
}

static distq_status build(const distq_prepared *p, const distq_qparams *qps, distq_qgraph *q)
{
    const distq_graph *g = p->g;
    distq_status st;
    /* qvalue index of each prepared value; -1 until produced */
    int *qv = distq_malloc((size_t)g->n_values * sizeof(int));
    if (!qv) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
    for (int v = 0; v < g->n_values; v++) qv[v] = -1;
    q->values = distq_calloc((size_t)(g->n_values + 2) * sizeof *q->values);
    q->nodes = distq_calloc((size_t)(g->n_nodes + 2) * sizeof *q->nodes);
    if (!q->values || !q->nodes) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
        goto cleanup;
    }
    const distq_value *in = &g->values[g->input_value];
    if ((st = add_value(q, in->name, DISTQ_DTYPE_F32, in->ndim, in->dims, NULL, &q->input))) goto cleanup;
    int in_obs = p->value_observer[g->input_value];
    if (in_obs < 0) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph input '%s' is not quantized", in->name);
        goto cleanup;
    }
    {
        distq_qnode *qn = &q->nodes[q->n_nodes++];
        if ((st = suffixed(qn->name, in->name, ".quant"))) goto cleanup;
        const char *qname = qn->name;
        qn->op = DISTQ_QOP_QUANTIZE;
        qn->src = q->input;
        qn->sum_src = -1;
        if ((st = add_value(q, qname, DISTQ_DTYPE_U8, in->ndim, in->dims, &qps[in_obs], &qn->dst))) goto cleanup;
        qv[g->input_value] = qn->dst;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        /* A conv + add pattern runs where its add runs: the add's other input
         * (a downsample conv after conv2 in graph order) is ready only there. */
        int h = i;
        if (p->plan[i].pattern == DISTQ_PATTERN_CONV_SUM) continue;
        if (p->plan[i].pattern == DISTQ_PATTERN_NONE) {
            h = -1;
            for (int j = 0; j < i && h < 0; j++)
                if (p->plan[j].pattern == DISTQ_PATTERN_CONV_SUM && p->plan[j].add_node == i) h = j;
            if (h < 0) continue;
        }
        const distq_node *n = &g->nodes[h];
        const distq_node_plan *pl = &p->plan[h];
        distq_qnode *qn = &q->nodes[q->n_nodes++];
        strcpy(qn->name, n->name);
        qn->op = qop_of(pl->pattern);
        qn->relu = pl->relu;
        qn->attr = n->attr;
        qn->src = qv[n->inputs[0]];
        qn->sum_src = pl->sum_value >= 0 ? qv[pl->sum_value] : -1;
        if (qn->src < 0 || (pl->sum_value >= 0 && qn->sum_src < 0)) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "node '%s': its input is not int8", n->name);
            goto cleanup;
        }
        if (qn->op == DISTQ_QOP_CONV || qn->op == DISTQ_QOP_LINEAR) {
            const distq_tensor *w = &g->params[n->params[DISTQ_PARAM_WEIGHT]];
            const distq_tensor *b = n->params[DISTQ_PARAM_BIAS] >= 0 ? &g->params[n->params[DISTQ_PARAM_BIAS]] : NULL;
            if ((st = quantize_weights(w, b, pl->weight_min, pl->weight_max, qn))) goto cleanup;
        }
        const distq_value *ov = &g->values[pl->out_value];
        int obs = p->value_observer[pl->out_value];
        if (obs < 0 && qn->op != DISTQ_QOP_CONV && qn->op != DISTQ_QOP_LINEAR) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "node '%s': int8 output without qparams", n->name);
            goto cleanup;
        }
        if ((st = add_value(q, ov->name, obs >= 0 ? DISTQ_DTYPE_U8 : DISTQ_DTYPE_F32, ov->ndim, ov->dims,
                            obs >= 0 ? &qps[obs] : NULL, &qn->dst)))
            goto cleanup;
        qv[pl->out_value] = qn->dst;
    }
    q->output = qv[g->output_value];
    if (q->output < 0) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph output '%s' is not produced by an int8 pattern",
                             g->output_name);
        goto cleanup;
    }
    if (q->values[q->output].dtype == DISTQ_DTYPE_U8) { /* end with a dequantize */
        const distq_qvalue *u = &q->values[q->output];
        distq_qnode *qn = &q->nodes[q->n_nodes++];
        if ((st = suffixed(qn->name, u->name, ".dequant"))) goto cleanup;
        const char *dname = qn->name;
        qn->op = DISTQ_QOP_DEQUANTIZE;
        qn->src = q->output;
        qn->sum_src = -1;
        int64_t dims[DISTQ_MAX_DIMS];
        memcpy(dims, u->dims, sizeof dims);
        if ((st = add_value(q, dname, DISTQ_DTYPE_F32, u->ndim, dims, NULL, &qn->dst))) goto cleanup;
        q->output = qn->dst;
    }
cleanup:
    distq_free(qv);
    return st;
}

distq_status distq_convert(const distq_prepared *p, int reduce_range, distq_qgraph **out)
{
    *out = NULL;
    distq_qgraph *q = NULL;
    distq_qparams *qps = distq_calloc((size_t)(p->n_observers + 1) * sizeof *qps);
    if (!qps) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
    distq_status st = DISTQ_OK;
    for (int i = 0; i < p->n_observers && !st; i++) {
        st = distq_observer_qparams(&p->observers[i], reduce_range ? 127 : 255, &qps[i], NULL, NULL);
        if (st)
            st = distq_error_set(st, "observer of '%s': %s", p->g->values[p->observers[i].values[0]].name,
                                 distq_error_message());
    }
    if (!st) st = distq_qgraph_create(&q);
    if (!st) {
        q->kind = p->kind;
        q->reduce_range = reduce_range != 0;
        st = build(p, qps, q);
    }
    distq_free(qps);
    if (st) {
        distq_qgraph_destroy(q);
        return st;
    }
    *out = q;
    return DISTQ_OK;
}
