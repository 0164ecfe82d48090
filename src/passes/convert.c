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
    /* Tensors one export shares between nodes (torch dedups equal
     * initializers, e.g. zero biases): one bias, and the codes made once
     * (the same tensor has the same codes; QAT's ranges are per tensor too). */
    const distq_tensor *have = distq_graph_find_param(q, w->name);
    if (have && have->dtype != DISTQ_DTYPE_S8)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "weight '%s' is read by an int8 node and an fp32 one",
                               w->name);
    if (have) {
        names[DISTQ_PARAM_WEIGHT] = have->name;
        DISTQ_TRY(distq_graph_intern_suffixed(q, w->name, "_scale", &names[DISTQ_PARAM_WEIGHT_SCALE]));
        if (bias && !distq_graph_find_param(q, bias->name))
            DISTQ_TRY(distq_graph_add_param(q, bias->name, DISTQ_DTYPE_F32, bias->ndim, bias->dims, bias->data, NULL));
        if (bias) names[DISTQ_PARAM_BIAS] = bias->name;
        return DISTQ_OK;
    }
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
        if (!distq_graph_find_param(q, bias->name))
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


/* Names, in q's store, of each fp32 value's two forms as convert emits them:
 * its u8 codes (int8 readers) and its f32 values (fp32 readers); NULL until
 * made. A value computed in one form gets the other on first demand, through
 * a quantize ("<v>.quant", with v's observer) or a dequantize ("<v>.dequant"). */
typedef struct {
    const distq_prepared *p;
    const distq_qparams *qps;
    int32_t qmax;
    distq_graph *q;
    const char **u8_name, **f32_name;
} emitter;

static distq_status u8_form(emitter *E, int v, const char **out)
{
    const distq_graph *g = E->p->g;
    if (!E->u8_name[v]) {
        int obs = E->p->value_observer[v];
        if (obs < 0 || !E->f32_name[v])
            return distq_error_set(DISTQ_ERR_UNSUPPORTED, "value '%s' is read as int8 but has no observer",
                                   g->values[v].name);
        const char *name = NULL, *ins[1] = {E->f32_name[v]};
        distq_attrs a = distq_attrs_default(DISTQ_OP_QUANTIZE);
        set_out_qparams(&a, &E->qps[obs], E->qmax);
        DISTQ_TRY(distq_graph_intern_suffixed(E->q, g->values[v].name, ".quant", &name));
        DISTQ_TRY(distq_graph_add_node(E->q, name, DISTQ_OP_QUANTIZE, &a, 1, ins, NULL, name));
        E->u8_name[v] = name;
    }
    *out = E->u8_name[v];
    return DISTQ_OK;
}

/* Records value v as computed under name: u8 when it has an observer (the
 * node writes with obs's qparams), else f32. */
static void record_output(emitter *E, int v, int obs, const char *name)
{
    if (obs >= 0) E->u8_name[v] = name;
    else E->f32_name[v] = name;
}

static distq_status f32_form(emitter *E, int v, const char **out)
{
    if (!E->f32_name[v] && !E->u8_name[v])
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "value '%s' exists only inside a fused int8 pattern",
                               E->p->g->values[v].name);
    if (!E->f32_name[v]) {
        const char *name = NULL, *ins[1] = {E->u8_name[v]};
        distq_attrs a = distq_attrs_default(DISTQ_OP_DEQUANTIZE);
        DISTQ_TRY(distq_graph_intern_suffixed(E->q, E->p->g->values[v].name, ".dequant", &name));
        DISTQ_TRY(distq_graph_add_node(E->q, name, DISTQ_OP_DEQUANTIZE, &a, 1, ins, NULL, name));
        E->f32_name[v] = name;
    }
    *out = E->f32_name[v];
    return DISTQ_OK;
}

/* A head's s8 weights, fused post-ops and output qparams (u8 where an
 * observer has its output, else f32); a propagation op needs its observer. */
static distq_status head_or_shared(emitter *E, const distq_node *n, const distq_node_plan *pl, int obs, int head,
                                   distq_attrs *out_attrs, const char *names[DISTQ_MAX_PARAMS])
{
    const distq_graph *g = E->p->g;
    distq_attrs a = *out_attrs;
    if (head) {
        const distq_tensor *w = &g->params[n->params[DISTQ_PARAM_WEIGHT]];
        const distq_tensor *b = n->params[DISTQ_PARAM_BIAS] >= 0 ? &g->params[n->params[DISTQ_PARAM_BIAS]] : NULL;
        DISTQ_TRY(quantize_weights(E->q, w, b, pl->weight_min, pl->weight_max, names));
        a.post_relu = pl->relu;
        if (pl->post_node >= 0) { /* the elementwise op and its attributes ride on the head */
            const distq_attrs *pa = &g->nodes[pl->post_node].attr;
            a.post_op = g->nodes[pl->post_node].op;
            a.min = pa->min;
            a.max = pa->max;
            a.alpha = pa->alpha;
            a.beta = pa->beta;
        }
        if (obs >= 0) set_out_qparams(&a, &E->qps[obs], E->qmax); /* else the head writes f32 */
    } else if (obs < 0) {
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "node '%s': int8 output without qparams", n->name);
    }
    *out_attrs = a;
    return DISTQ_OK;
}

/* The node of the int8 graph for the pattern headed by fp32 node h. */
static distq_status emit_pattern(emitter *E, int h)
{
    const distq_prepared *p = E->p;
    const distq_graph *g = p->g;
    const distq_node *n = &g->nodes[h];
    const distq_node_plan *pl = &p->plan[h];
    distq_attrs a = n->attr;
    const char *names[DISTQ_MAX_PARAMS] = {0}; /* into g's and q's stores */
    int obs = p->value_observer[pl->out_value];
    int head = distq_op_info_of(n->op)->qrole == DISTQ_QROLE_HEAD;
    /* a head reads its input [and the residual]; a propagation op (a concat:
     * any count) all of its inputs, as u8 */
    int n_ins = head ? 1 + (pl->sum_value >= 0) : n->n_inputs;
    const char **ins = distq_calloc((size_t)n_ins * sizeof *ins);
    if (!ins) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
    distq_status st = DISTQ_OK;
    for (int k = 0; k < n_ins && !st; k++)
        st = u8_form(E, head && k == 1 ? pl->sum_value : n->inputs[k], &ins[k]);
    if (!st) st = head_or_shared(E, n, pl, obs, head, &a, names);
    const char *out = g->values[pl->out_value].name;
    if (!st) st = distq_graph_add_node(E->q, n->name, n->op, &a, n_ins, ins, head ? names : NULL, out);
    distq_free(ins);
    if (st) return st;
    record_output(E, pl->out_value, obs, out);
    return DISTQ_OK;
}


/* An fp32 node as it is, reading the f32 form of its inputs; its parameters
 * are copied (once each: nodes may share one). */
static distq_status emit_float(emitter *E, int i)
{
    const distq_graph *g = E->p->g;
    const distq_node *n = &g->nodes[i];
    const char *names[DISTQ_MAX_PARAMS] = {0};
    const char **ins = distq_calloc((size_t)n->n_inputs * sizeof *ins + 1);
    if (!ins) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
    distq_status st = DISTQ_OK;
    for (int k = 0; k < n->n_inputs && !st; k++) st = f32_form(E, n->inputs[k], &ins[k]);
    for (int sl = 0; sl < DISTQ_MAX_PARAMS && !st; sl++) {
        if (n->params[sl] < 0) continue;
        const distq_tensor *t = &g->params[n->params[sl]];
        names[sl] = t->name;
        const distq_tensor *have = distq_graph_find_param(E->q, t->name);
        if (have && have->dtype != t->dtype)
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "weight '%s' is read by an int8 node and an fp32 one",
                                 t->name);
        else if (!have)
            st = distq_graph_add_param(E->q, t->name, t->dtype, t->ndim, t->dims, t->data, NULL);
    }
    if (!st) st = distq_graph_add_node(E->q, n->name, n->op, &n->attr, n->n_inputs, ins, names, n->output_name);
    if (!st) E->f32_name[n->output] = n->output_name;
    distq_free(ins);
    return st;
}

/* A batch_norm as the depthwise 1x1 int8 conv computing the same
 * a(c) * x + b(c), a = gamma / sqrt(var + eps), b = beta - mean * a: the s8
 * weight of channel c is +-127 (0 where a is 0) with scale |a| / 127, so
 * weight_scale * code is a itself; the bias b stays f32. */
static distq_status emit_bn_as_conv(emitter *E, int i)
{
    const distq_prepared *p = E->p;
    const distq_graph *g = p->g;
    const distq_node *n = &g->nodes[i];
    const distq_node_plan *pl = &p->plan[i];
    const distq_value *x = &g->values[n->inputs[0]];
    const int64_t C = x->dims[1], wdims[4] = {C, 1, 1, 1};
    const float *gamma = n->params[DISTQ_PARAM_WEIGHT] >= 0 ? g->params[n->params[DISTQ_PARAM_WEIGHT]].data : NULL;
    const float *beta = n->params[DISTQ_PARAM_BIAS] >= 0 ? g->params[n->params[DISTQ_PARAM_BIAS]].data : NULL;
    const float *mean = g->params[n->params[DISTQ_PARAM_RUNNING_MEAN]].data;
    const float *var = g->params[n->params[DISTQ_PARAM_RUNNING_VAR]].data;
    int8_t *codes = distq_malloc((size_t)C);
    float *scale = distq_malloc((size_t)C * sizeof(float)), *bias = distq_malloc((size_t)C * sizeof(float));
    const char *names[DISTQ_MAX_PARAMS] = {0}, *ins[1] = {NULL};
    distq_status st = !codes || !scale || !bias ? distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)") : DISTQ_OK;
    for (int64_t c = 0; c < C && !st; c++) {
        double a = (gamma ? gamma[c] : 1.0) / sqrt((double)var[c] + (double)n->attr.eps);
        if (!isfinite(a))
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "batch_norm '%s' channel %lld: scale %g is not finite",
                                 n->name, (long long)c, a);
        codes[c] = (int8_t)(a > 0 ? 127 : a < 0 ? -127 : 0);
        scale[c] = a != 0 ? (float)(fabs(a) / 127.0) : 1.0f;
        bias[c] = (float)((beta ? beta[c] : 0.0) - mean[c] * a);
    }
    if (!st) st = distq_graph_intern_suffixed(E->q, n->name, ".weight", &names[DISTQ_PARAM_WEIGHT]);
    if (!st) st = distq_graph_intern_suffixed(E->q, n->name, ".weight_scale", &names[DISTQ_PARAM_WEIGHT_SCALE]);
    if (!st) st = distq_graph_intern_suffixed(E->q, n->name, ".bias", &names[DISTQ_PARAM_BIAS]);
    if (!st) st = distq_graph_add_param(E->q, names[DISTQ_PARAM_WEIGHT], DISTQ_DTYPE_S8, 4, wdims, codes, NULL);
    if (!st) st = distq_graph_add_param(E->q, names[DISTQ_PARAM_WEIGHT_SCALE], DISTQ_DTYPE_F32, 1, &C, scale, NULL);
    if (!st) st = distq_graph_add_param(E->q, names[DISTQ_PARAM_BIAS], DISTQ_DTYPE_F32, 1, &C, bias, NULL);
    if (!st) st = u8_form(E, n->inputs[0], &ins[0]);
    int obs = p->value_observer[pl->out_value];
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.groups = C;
    a.post_relu = pl->relu;
    if (obs >= 0) set_out_qparams(&a, &E->qps[obs], E->qmax);
    const char *out = g->values[pl->out_value].name;
    if (!st) st = distq_graph_add_node(E->q, n->name, DISTQ_OP_CONV2D, &a, 1, ins, names, out);
    if (!st) record_output(E, pl->out_value, obs, out);
    distq_free(codes);
    distq_free(scale);
    distq_free(bias);
    return st;
}

/* The squeeze-excite gate: mul (u8 x, f32 gate), u8 out where an int8
 * pattern reads it (its observer), else f32. */
static distq_status emit_gate(emitter *E, int i)
{
    const distq_prepared *p = E->p;
    const distq_graph *g = p->g;
    const distq_node *n = &g->nodes[i];
    const distq_node_plan *pl = &p->plan[i];
    const int x = n->inputs[0] == pl->sum_value ? n->inputs[1] : n->inputs[0];
    const char *ins[2] = {NULL, NULL};
    DISTQ_TRY(u8_form(E, x, &ins[0]));
    DISTQ_TRY(f32_form(E, pl->sum_value, &ins[1]));
    int obs = p->value_observer[pl->out_value];
    distq_attrs a = distq_attrs_default(DISTQ_OP_MUL);
    if (obs >= 0) set_out_qparams(&a, &E->qps[obs], E->qmax);
    DISTQ_TRY(distq_graph_add_node(E->q, n->name, DISTQ_OP_MUL, &a, 2, ins, NULL, n->output_name));
    record_output(E, n->output, obs, n->output_name);
    return DISTQ_OK;
}

/* The int8 graph: one node per pattern (in the fp32 graph's order; a conv +
 * add pattern where its add runs, as the add's other input is ready only
 * there), each fp32 node as it is, quantize / dequantize where a value
 * crosses between the two (the graph input included), and the output f32. */
static distq_status build(const distq_prepared *p, const distq_qparams *qps, int32_t qmax, distq_graph *q)
{
    const distq_graph *g = p->g;
    distq_status st;
    emitter E = {.p = p, .qps = qps, .qmax = qmax, .q = q};
    E.u8_name = distq_calloc((size_t)g->n_values * sizeof *E.u8_name);
    E.f32_name = distq_calloc((size_t)g->n_values * sizeof *E.f32_name);
    if (!E.u8_name || !E.f32_name) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (convert)");
        goto cleanup;
    }
    const distq_value *in = &g->values[g->input_value];
    if ((st = distq_graph_set_input(q, in->name, in->ndim, in->dims))) goto cleanup;
    E.f32_name[g->input_value] = in->name;
    for (int i = 0; i < g->n_nodes; i++) {
        distq_pattern pt = p->plan[i].pattern;
        if (pt == DISTQ_PATTERN_FLOAT || pt == DISTQ_PATTERN_BN || pt == DISTQ_PATTERN_GATE) {
            st = pt == DISTQ_PATTERN_BN     ? emit_bn_as_conv(&E, i)
                 : pt == DISTQ_PATTERN_GATE ? emit_gate(&E, i)
                                            : emit_float(&E, i);
            if (st) goto cleanup;
            continue;
        }
        int h = i;
        if (pt == DISTQ_PATTERN_CONV_SUM) continue;
        if (pt == DISTQ_PATTERN_NONE) {
            h = -1;
            for (int j = 0; j < i && h < 0; j++)
                if (p->plan[j].pattern == DISTQ_PATTERN_CONV_SUM && p->plan[j].add_node == i) h = j;
            if (h < 0) continue;
        }
        if ((st = emit_pattern(&E, h))) goto cleanup;
    }
    /* every graph output in f32, in the float graph's order */
    for (int k = 0; k < g->n_outputs; k++) {
        int v = g->output_values[k];
        const char *out = NULL;
        if (!E.u8_name[v] && !E.f32_name[v]) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph output '%s' is never computed", g->output_names[k]);
            goto cleanup;
        }
        if ((st = f32_form(&E, v, &out)) || (st = distq_graph_add_output(q, out))) goto cleanup;
    }
    st = distq_graph_finalize(q);
cleanup:
    distq_free(E.u8_name);
    distq_free(E.f32_name);
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

