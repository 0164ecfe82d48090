/*
 * convert: observers -> qparams, weights -> s8 per output channel, and the
 * fused int8 graph (spec §3.6, §3.7, §5, §6.3). Runs once, after calibration.
 * The int8 graph is a distq_graph (graph.h's quantized forms), built by name
 * and finalized, so the one validator checks what convert wrote.
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

/* s8 weights: PerChannelMinMax, scale = max(amax / 127.5, eps), q = round_ne(w / s).
 * range_min/max (OC, optional): the range to take the scales from instead of
 * w's. Adds to q: the s8 codes under w's name, the scales as
 * "<w>_scale" (OC) f32, and the f32 bias under its name; fills param names. */
static distq_status quantize_weights(distq_graph *q, const distq_tensor *w, const distq_tensor *bias,
                                     const float *range_min, const float *range_max,
                                     const char *names[DISTQ_MAX_PARAMS])
{
    int64_t OC = w->dims[0], per = distq_tensor_numel(w) / OC;
    int8_t *codes = distq_malloc((size_t)(OC * per));
    float *scale = distq_malloc((size_t)OC * sizeof(float));
    float *mn = distq_malloc((size_t)OC * sizeof(float)), *mx = distq_malloc((size_t)OC * sizeof(float));
    distq_status st = DISTQ_OK;
    if (!codes || !scale || !mn || !mx) {
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
        float sc = distq_qparams_symmetric_scale(mn[oc], mx[oc]), inv = 1.0f / sc;
        scale[oc] = sc;
        for (int64_t i = 0; i < per; i++)
            codes[oc * per + i] = (int8_t)distq_quantize_value(wd[oc * per + i], inv, 0, -128, 127);
    }
    names[DISTQ_PARAM_WEIGHT] = w->name;
    if ((st = distq_graph_intern_suffixed(q, w->name, "_scale", &names[DISTQ_PARAM_WEIGHT_SCALE])))
        goto cleanup;
    if ((st = distq_graph_add_param(q, w->name, DISTQ_DTYPE_S8, w->ndim, w->dims, codes, NULL))) goto cleanup;
    if ((st = distq_graph_add_param(q, names[DISTQ_PARAM_WEIGHT_SCALE], DISTQ_DTYPE_F32, 1, &OC, scale, NULL)))
        goto cleanup;
    if (bias) {
        names[DISTQ_PARAM_BIAS] = bias->name;
        st = distq_graph_add_param(q, bias->name, DISTQ_DTYPE_F32, bias->ndim, bias->dims, bias->data, NULL);
    }
cleanup:
    distq_free(codes);
    distq_free(scale);
    distq_free(mn);
    distq_free(mx);
    return st;
}

static void set_out_qparams(distq_attrs *a, const distq_qparams *qp, int32_t qmax)
{
    a->out_scale = qp->scale;
    a->out_zero_point = qp->zero_point;
    a->out_quant_max = qmax;
}


/* The node of the int8 graph for the pattern headed by fp32 node h. */
static distq_status emit_pattern(const distq_prepared *p, const distq_qparams *qps, int32_t qmax, int h,
                                 const char *const *qname, distq_graph *q)
{
    const distq_graph *g = p->g;
    const distq_node *n = &g->nodes[h];
    const distq_node_plan *pl = &p->plan[h];
    distq_attrs a = n->attr;
    const char *names[DISTQ_MAX_PARAMS] = {0}; /* into g's and q's stores */
    const char *ins[2] = {qname[n->inputs[0]], pl->sum_value >= 0 ? qname[pl->sum_value] : NULL};
    if (!ins[0] || (pl->sum_value >= 0 && !ins[1]))
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "node '%s': its input is not int8", n->name);
    int obs = p->value_observer[pl->out_value];
    int head = distq_op_info_of(n->op)->qrole == DISTQ_QROLE_HEAD;
    if (head) {
        distq_status st;
        const distq_tensor *w = &g->params[n->params[DISTQ_PARAM_WEIGHT]];
        const distq_tensor *b = n->params[DISTQ_PARAM_BIAS] >= 0 ? &g->params[n->params[DISTQ_PARAM_BIAS]] : NULL;
        if ((st = quantize_weights(q, w, b, pl->weight_min, pl->weight_max, names))) return st;
        a.post_relu = pl->relu;
        if (obs >= 0) set_out_qparams(&a, &qps[obs], qmax); /* else the head writes f32 */
    } else if (obs < 0) {
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "node '%s': int8 output without qparams", n->name);
    }
    return distq_graph_add_node(q, n->name, n->op, &a, ins[1] ? 2 : 1, ins, head ? names : NULL,
                    g->values[pl->out_value].name);
}

/* The fused int8 graph: quantize at the input, one node per pattern (in the
 * fp32 graph's order; a conv + add pattern where its add runs, as the add's
 * other input is ready only there), a dequantize if the last one writes u8. */
static distq_status build(const distq_prepared *p, const distq_qparams *qps, int32_t qmax, distq_graph *q)
{
    const distq_graph *g = p->g;
    distq_status st;
    const char *quant = NULL, *dequant = NULL; /* in q's store */
    /* per fp32 value: the name of its int8 counterpart, or NULL */
    const char **qname = distq_calloc((size_t)g->n_values * sizeof *qname);
    if (!qname) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
    const distq_value *in = &g->values[g->input_value];
    int in_obs = p->value_observer[g->input_value];
    if (in_obs < 0) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph input '%s' is not quantized", in->name);
        goto cleanup;
    }
    if ((st = distq_graph_set_input(q, in->name, in->ndim, in->dims))) goto cleanup;
    if ((st = distq_graph_intern_suffixed(q, in->name, ".quant", &quant))) goto cleanup;
    {
        distq_attrs a = distq_attrs_default(DISTQ_OP_QUANTIZE);
        set_out_qparams(&a, &qps[in_obs], qmax);
        const char *ins[1] = {in->name};
        if ((st = distq_graph_add_node(q, quant, DISTQ_OP_QUANTIZE, &a, 1, ins, NULL, quant))) goto cleanup;
        qname[g->input_value] = quant;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        int h = i;
        if (p->plan[i].pattern == DISTQ_PATTERN_CONV_SUM) continue;
        if (p->plan[i].pattern == DISTQ_PATTERN_NONE) {
            h = -1;
            for (int j = 0; j < i && h < 0; j++)
                if (p->plan[j].pattern == DISTQ_PATTERN_CONV_SUM && p->plan[j].add_node == i) h = j;
            if (h < 0) continue;
        }
        if ((st = emit_pattern(p, qps, qmax, h, qname, q))) goto cleanup;
        qname[p->plan[h].out_value] = g->values[p->plan[h].out_value].name;
    }
    const char *out = qname[g->output_value];
    if (!out) {
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph output '%s' is not produced by an int8 pattern",
                             g->output_name);
        goto cleanup;
    }
    if (p->value_observer[g->output_value] >= 0) { /* u8: end with a dequantize */
        if ((st = distq_graph_intern_suffixed(q, out, ".dequant", &dequant))) goto cleanup;
        distq_attrs a = distq_attrs_default(DISTQ_OP_DEQUANTIZE);
        const char *ins[1] = {out};
        if ((st = distq_graph_add_node(q, dequant, DISTQ_OP_DEQUANTIZE, &a, 1, ins, NULL, dequant))) goto cleanup;
        out = dequant;
    }
    if ((st = distq_graph_set_output(q, out))) goto cleanup;
    st = distq_graph_finalize(q);
cleanup:
    distq_free(qname);
    return st;
}

distq_status distq_convert(distq_prepared *p, int reduce_range, distq_graph **out)
{
    *out = NULL;
    distq_graph *q = NULL;
    const int32_t qmax = reduce_range ? 127 : 255;
    distq_qparams *qps = distq_calloc((size_t)(p->n_observers + 1) * sizeof *qps);
    if (!qps) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
    distq_status st = DISTQ_OK;
    for (int i = 0; i < p->n_observers && !st; i++) {
        distq_observer *o = &p->observers[i];
        st = distq_observer_qparams(o, qmax, &qps[i], &o->chosen_min, &o->chosen_max);
        o->chosen = qps[i]; /* recorded for the file: io never reruns the search */
        o->converted = !st;
        if (st)
            st = distq_error_set(st, "observer of '%s': %s", p->g->values[p->observers[i].values[0]].name,
                                 distq_error_message());
    }
    if (!st) st = distq_graph_create(&q);
    if (!st) st = build(p, qps, qmax, q);
    distq_free(qps);
    if (st) {
        distq_graph_destroy(q);
        return st;
    }
    *out = q;
    return DISTQ_OK;
}

int distq_graph_reduce_range(const distq_graph *q)
{
    for (int i = 0; i < q->n_values; i++)
        if (q->values[i].dtype == DISTQ_DTYPE_U8 && q->values[i].quant_max < 255) return 1;
    return 0;
}
