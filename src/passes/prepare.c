/*
 * prepare: fold BN, match the x86 recipe's patterns (spec §2) and attach
 * activation observers (spec §3.1), on a private copy of the graph.
 *
 * Matching order as X86InductorQuantizer: conv patterns (longest first, convs
 * in graph order, so in a resnet block conv2 takes the add and the downsample
 * conv stays alone), then linear patterns, then the propagation ops (pools,
 * flatten) whose input is the output of a quantized pattern. Observers are
 * shared per tensor, and a propagation op's output joins its input's observer.
 * Every other node stays fp32 (PATTERN_FLOAT), as PT2E leaves what it does
 * not annotate: an int8 pattern's input is observed whoever produces it (a
 * quantize goes there if the producer is fp32); a head's output only where an
 * int8 pattern reads it (else the head writes f32 directly), a propagation
 * op's always (it shares its input's qparams; a dequantize follows where
 * fp32 nodes read it).
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/passes.h"
#include "distq/quant.h"

/* The single node reading value v, or -1 if v has several readers or is an output. */
static int sole_consumer(const distq_graph *g, int v)
{
    if (distq_graph_is_output(g, v) || g->values[v].n_consumers != 1) return -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == v) return i;
    return -1;
}

/* If value v is read only by an unclaimed relu, claims it and returns its output. */
static int absorb_relu(const distq_graph *g, int v, char *claimed, int *relu)
{
    int c = sole_consumer(g, v);
    if (c < 0 || claimed[c] || g->nodes[c].op != DISTQ_OP_RELU) return v;
    claimed[c] = 1;
    *relu = 1;
    return g->nodes[c].output;
}

/* If value v, the output of head op, is read only by an unclaimed
 * elementwise node the recipe fuses into that head, claims it (a relu as
 * pl->relu, any other as pl->post_node) and returns its output. */
static int absorb_post(const distq_graph *g, distq_op head, int v, char *claimed, distq_node_plan *pl)
{
    int c = sole_consumer(g, v);
    if (c < 0 || claimed[c] || !distq_x86_fuses(head, g->nodes[c].op)) return v;
    if (g->nodes[c].op == DISTQ_OP_RELU) return absorb_relu(g, v, claimed, &pl->relu);
    claimed[c] = 1;
    pl->post_node = c;
    return g->nodes[c].output;
}

static void match_conv(const distq_graph *g, int i, char *claimed, distq_node_plan *plan)
{
    const distq_node *n = &g->nodes[i];
    distq_node_plan *pl = &plan[i];
    pl->pattern = DISTQ_PATTERN_CONV;
    pl->out_value = n->output;
    pl->add_node = pl->sum_value = pl->post_node = -1;
    claimed[i] = 1;
    int c = sole_consumer(g, n->output);
    if (c >= 0 && !claimed[c] && g->nodes[c].op == DISTQ_OP_ADD && g->nodes[c].n_inputs == 2) {
        const distq_node *add = &g->nodes[c];
        int other = add->inputs[0] == n->output ? add->inputs[1] : add->inputs[0];
        if (other != n->output) {
            pl->pattern = DISTQ_PATTERN_CONV_SUM;
            pl->add_node = c;
            pl->sum_value = other;
            claimed[c] = 1;
            pl->out_value = absorb_relu(g, add->output, claimed, &pl->relu);
            return;
        }
    }
    pl->out_value = absorb_post(g, n->op, n->output, claimed, pl);
}

/* Union-find over values: observers shared by tensor and by propagation ops. */
static int find(int *parent, int v)
{
    while (parent[v] != v) v = parent[v] = parent[parent[v]];
    return v;
}

static distq_status attach_observers(distq_prepared *p, const char *observed, int *parent)
{
    const distq_graph *g = p->g;
    int *group_of_root = distq_malloc((size_t)g->n_values * sizeof(int));
    p->observers = distq_calloc((size_t)g->n_values * sizeof *p->observers);
    if (!group_of_root || !p->observers) {
        distq_free(group_of_root);
        return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (observers)");
    }
    for (int v = 0; v < g->n_values; v++) group_of_root[v] = -1;
    /* Values are indexed in production order (input first), so observers are
     * numbered, and fed, in execution order. */
    for (int v = 0; v < g->n_values; v++) {
        p->value_observer[v] = -1;
        if (!observed[v]) continue;
        int root = find(parent, v);
        if (group_of_root[root] < 0) {
            distq_observer *o = &p->observers[p->n_observers];
            o->kind = p->kind;
            distq_minmax_init(&o->mm);
            if (p->kind == DISTQ_OBSERVER_HISTOGRAM) {
                o->hist = distq_malloc(sizeof *o->hist);
                if (!o->hist) {
                    distq_free(group_of_root);
                    return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (histogram)");
                }
                distq_hist_init(o->hist);
            }
            group_of_root[root] = p->n_observers++;
        }
        distq_observer *o = &p->observers[group_of_root[root]];
        if (o->n_values == o->cap_values) {
            int cap = o->cap_values ? 2 * o->cap_values : 4;
            int *grown = distq_malloc((size_t)cap * sizeof *grown);
            if (grown && o->n_values) memcpy(grown, o->values, (size_t)o->n_values * sizeof *grown);
            if (grown) distq_free(o->values);
            if (!grown) {
                distq_free(group_of_root);
                return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (observer of '%s')", g->values[v].name);
            }
            o->values = grown;
            o->cap_values = cap;
        }
        o->values[o->n_values++] = v;
        p->value_observer[v] = group_of_root[root];
    }
    distq_free(group_of_root);
    return DISTQ_OK;
}

/* The int8 pattern of each op whose registry role is "shares its input's
 * qparams" and that the int8 IR has a node for. */
static const distq_pattern propagating_pattern[DISTQ_OP_COUNT] = {
    [DISTQ_OP_MAX_POOL2D] = DISTQ_PATTERN_MAX_POOL,
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = DISTQ_PATTERN_AVG_POOL,
    [DISTQ_OP_FLATTEN] = DISTQ_PATTERN_FLATTEN,
    [DISTQ_OP_AVG_POOL2D] = DISTQ_PATTERN_AVG_POOL2D,
    [DISTQ_OP_CONCAT] = DISTQ_PATTERN_CONCAT,
    [DISTQ_OP_TRANSPOSE] = DISTQ_PATTERN_LAYOUT,
    [DISTQ_OP_SLICE] = DISTQ_PATTERN_LAYOUT,
    [DISTQ_OP_RESHAPE] = DISTQ_PATTERN_LAYOUT,
};

/* 1 if node n can run int8 as its propagation pattern: every input int8
 * (X86InductorQuantizer quantizes cat only then), and an avg_pool2d whose
 * windows average real cells only (padding that counted as 0 would be the
 * code 0, not the real 0, on u8). */
static int propagates(const distq_node *n, const char *quantized_out)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (!quantized_out[n->inputs[k]]) return 0;
    const distq_attrs *a = &n->attr;
    int padded = a->padding[0] || a->padding[1] || distq_pad_end(a, 0) || distq_pad_end(a, 1);
    return n->op != DISTQ_OP_AVG_POOL2D || !padded || !a->count_include_pad;
}

/* For a mul of an int8 value x (N, C, H, W) by an fp32 gate (N, C, 1, 1):
 * the index of x among its inputs; -1 for any other node. */
static int gate_input(const distq_graph *g, const distq_node *n, const char *quantized_out)
{
    if (n->op != DISTQ_OP_MUL || n->n_inputs != 2) return -1;
    for (int k = 0; k < 2; k++) {
        const distq_value *x = &g->values[n->inputs[k]], *s = &g->values[n->inputs[1 - k]];
        if (quantized_out[n->inputs[k]] && !quantized_out[n->inputs[1 - k]] && x->ndim == 4 && s->ndim == 4 &&
            s->dims[1] == x->dims[1] && s->dims[2] == 1 && s->dims[3] == 1 && x->dims[2] * x->dims[3] > 1)
            return k;
    }
    return -1;
}

static distq_status annotate(distq_prepared *p)
{
    const distq_graph *g = p->g;
    distq_status st = DISTQ_OK;
    char *claimed = distq_calloc((size_t)g->n_nodes);
    char *observed = distq_calloc((size_t)g->n_values);
    char *quantized_out = distq_calloc((size_t)g->n_values); /* output of a quantized pattern */
    int *parent = distq_malloc((size_t)g->n_values * sizeof(int));
    if (!claimed || !observed || !quantized_out || !parent) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (annotate)");
        goto cleanup;
    }
    for (int v = 0; v < g->n_values; v++) parent[v] = v;
    for (int i = 0; i < g->n_nodes; i++) claimed[i] = p->excluded[i]; /* left to the FLOAT pass below */

    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == DISTQ_OP_CONV2D && !claimed[i]) match_conv(g, i, claimed, p->plan);
    for (int i = 0; i < g->n_nodes; i++) {
        /* any rank: X86InductorQuantizer annotates F.linear whatever its input */
        if (g->nodes[i].op != DISTQ_OP_LINEAR || claimed[i]) continue;
        distq_node_plan *pl = &p->plan[i];
        pl->pattern = DISTQ_PATTERN_LINEAR;
        pl->add_node = pl->sum_value = pl->post_node = -1;
        claimed[i] = 1;
        pl->out_value = absorb_post(g, DISTQ_OP_LINEAR, g->nodes[i].output, claimed, pl);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        distq_node_plan *pl = &p->plan[i];
        const distq_node *n = &g->nodes[i];
        /* A batch_norm left after folding (densenet's pre-activation BN -> relu
         * -> conv) on an int8 value: PT2E keeps it fp32 between a dequantize
         * and a quantize, which inductor fuses into one pass; distq runs that
         * same arithmetic, a(c) * x + b(c) [+ relu] requantized, as a depthwise
         * 1x1 int8 conv whose s8 weights are exact. */
        if (n->op == DISTQ_OP_BATCH_NORM && !claimed[i] && quantized_out[n->inputs[0]] && g->values[n->inputs[0]].ndim == 4) {
            claimed[i] = 1;
            pl->pattern = DISTQ_PATTERN_BN;
            pl->add_node = pl->sum_value = pl->post_node = -1;
            pl->out_value = absorb_relu(g, n->output, claimed, &pl->relu);
        }
        /* A squeeze-excite mul of an int8 value by an fp32 (N, C, 1, 1) gate:
         * PT2E keeps it fp32 between a dequantize and a quantize (inductor
         * fuses them); distq does the same arithmetic in one pass on the codes. */
        int gx = gate_input(g, n, quantized_out);
        if (gx >= 0 && !claimed[i]) {
            claimed[i] = 1;
            pl->pattern = DISTQ_PATTERN_GATE;
            pl->add_node = pl->post_node = -1;
            pl->sum_value = n->inputs[1 - gx];
            pl->out_value = n->output;
            observed[n->inputs[gx]] = 1;
            quantized_out[n->output] = 1;
            continue;
        }
        if (pl->pattern == DISTQ_PATTERN_CONV || pl->pattern == DISTQ_PATTERN_CONV_SUM ||
            pl->pattern == DISTQ_PATTERN_LINEAR || pl->pattern == DISTQ_PATTERN_BN) {
            observed[n->inputs[0]] = 1;
            if (pl->sum_value >= 0) observed[pl->sum_value] = 1;
            quantized_out[pl->out_value] = 1;
            continue;
        }
        if (claimed[i] && !p->excluded[i]) continue;
        distq_pattern prop = distq_op_info_of(n->op)->qrole == DISTQ_QROLE_SHARES_INPUT
                                 ? propagating_pattern[n->op]
                                 : DISTQ_PATTERN_NONE;
        claimed[i] = 1;
        pl->add_node = pl->sum_value = pl->post_node = -1;
        pl->out_value = n->output;
        if (prop == DISTQ_PATTERN_NONE || !propagates(n, quantized_out) || p->excluded[i]) {
            pl->pattern = DISTQ_PATTERN_FLOAT;
            continue;
        }
        pl->pattern = prop;
        observed[n->output] = 1;
        quantized_out[n->output] = 1;
        for (int k = 0; k < n->n_inputs; k++) { /* shares its inputs' qparams (a concat: all of them) */
            observed[n->inputs[k]] = 1;
            parent[find(parent, n->inputs[k])] = find(parent, n->output);
        }
    }
    st = attach_observers(p, observed, parent);
cleanup:
    distq_free(claimed);
    distq_free(observed);
    distq_free(quantized_out);
    distq_free(parent);
    return st;
}

/* Marks p->excluded from the comma-separated patterns. */
static distq_status match_exclusions(distq_prepared *p, const char *exclude)
{
    const distq_graph *g = p->g;
    const char *s = exclude;
    while (s && *s) {
        size_t len = strcspn(s, ",");
        char pat[DISTQ_NAME_MAX];
        if (len == 0 || len >= sizeof pat)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "exclude pattern '%.*s' is %s", (int)len, s,
                                   len ? "too long" : "empty");
        memcpy(pat, s, len);
        pat[len] = '\0';
        int hits = 0;
        for (int i = 0; i < g->n_nodes; i++)
            if (fnmatch(pat, g->nodes[i].name, 0) == 0 || strcmp(pat, distq_op_name(g->nodes[i].op)) == 0) {
                p->excluded[i] = 1;
                hits++;
            }
        if (!hits)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "exclude pattern '%s' matches no node name or op of the "
                                   "model ('distq inspect MODEL' lists them; a batch_norm folded into its conv is "
                                   "no node any more)", pat);
        s += len + (s[len] == ',');
    }
    return DISTQ_OK;
}

distq_status distq_prepare(const distq_graph *g, distq_observer_kind kind, distq_prepared **out)
{
    return distq_prepare_excluding(g, kind, NULL, out);
}

distq_status distq_prepare_excluding(const distq_graph *g, distq_observer_kind kind, const char *exclude,
                                     distq_prepared **out)
{
    *out = NULL;
    if ((int)kind < 0 || kind >= DISTQ_OBSERVER_COUNT)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "unknown observer kind %d", (int)kind);
    distq_prepared *p = distq_calloc(sizeof *p);
    if (!p) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (prepare)");
    p->kind = kind;
    distq_status st = distq_graph_clone(g, &p->g);
    if (!st) st = distq_pass_fold_bn(p->g, NULL);
    if (!st) {
        p->value_observer = distq_calloc((size_t)p->g->n_values * sizeof *p->value_observer);
        p->plan = distq_calloc((size_t)p->g->n_nodes * sizeof *p->plan);
        p->excluded = distq_calloc((size_t)p->g->n_nodes + 1);
        if (!p->value_observer || !p->plan || !p->excluded)
            st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (prepare)");
    }
    for (int i = 0; !st && i < p->g->n_nodes; i++) /* -1: no such node or value (0 is one) */
        p->plan[i].add_node = p->plan[i].sum_value = p->plan[i].post_node = p->plan[i].out_value = -1;
    if (!st) st = match_exclusions(p, exclude);
    if (!st) st = annotate(p);
    if (st) {
        distq_prepared_destroy(p);
        return st;
    }
    *out = p;
    return DISTQ_OK;
}

distq_quant_record distq_prepared_record(const distq_prepared *p)
{
    return (distq_quant_record){.observed = p->g,
                                .kind = p->kind,
                                .n_observers = p->n_observers,
                                .observers = p->observers,
                                .excluded = p->excluded};
}

void distq_prepared_destroy(distq_prepared *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_observers; i++) {
        distq_free(p->observers[i].hist);
        distq_free(p->observers[i].values);
    }
    distq_free(p->observers);
    distq_free(p->value_observer);
    distq_free(p->plan);
    distq_free(p->excluded);
    distq_graph_destroy(p->g);
    distq_free(p);
}
