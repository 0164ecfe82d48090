/* The fused int8 graph: lifetime, names, and a one-line-per-node description. */
#include <stdio.h>
#include <string.h>

#include "distq/quant.h"

static const char *const qop_names[DISTQ_QOP_COUNT] = {
    [DISTQ_QOP_QUANTIZE] = "quantize",   [DISTQ_QOP_CONV] = "qconv",
    [DISTQ_QOP_LINEAR] = "qlinear",      [DISTQ_QOP_MAX_POOL] = "qmaxpool",
    [DISTQ_QOP_AVG_POOL] = "qavgpool",   [DISTQ_QOP_FLATTEN] = "qflatten",
    [DISTQ_QOP_DEQUANTIZE] = "dequantize",
};
_Static_assert(DISTQ_QOP_COUNT == 7, "update qop_names");

const char *distq_qop_name(distq_qop op)
{
    return ((int)op >= 0 && op < DISTQ_QOP_COUNT) ? qop_names[op] : "?";
}

distq_status distq_qgraph_create(distq_qgraph **out)
{
    *out = distq_calloc(sizeof **out);
    if (!*out) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (int8 graph)");
    (*out)->input = (*out)->output = -1;
    return DISTQ_OK;
}

void distq_qgraph_destroy(distq_qgraph *q)
{
    if (!q) return;
    for (int i = 0; q->nodes && i < q->n_nodes; i++) {
        distq_free(q->nodes[i].weight);
        distq_free(q->nodes[i].weight_scale);
        distq_free(q->nodes[i].bias);
    }
    distq_free(q->nodes);
    distq_free(q->values);
    distq_free(q);
}

static const char *dt(const distq_qgraph *q, int v)
{
    return q->values[v].dtype == DISTQ_DTYPE_U8 ? "u8" : "f32";
}

distq_status distq_qgraph_describe(const distq_qgraph *q, char **text)
{
    size_t cap = 256 + (size_t)q->n_nodes * 160, used = 0;
    char *buf = distq_malloc(cap);
    if (!buf) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (describe)");
    buf[0] = '\0';
    for (int i = 0; i < q->n_nodes; i++) {
        const distq_qnode *n = &q->nodes[i];
        char kind[48];
        if (n->op == DISTQ_QOP_CONV)
            snprintf(kind, sizeof kind, "qconv%lldx%lld%s", (long long)n->wdims[2], (long long)n->wdims[3],
                     n->attr.groups > 1 ? "g" : "");
        else
            snprintf(kind, sizeof kind, "%s", distq_qop_name(n->op));
        const distq_qvalue *d = &q->values[n->dst];
        used += (size_t)snprintf(buf + used, cap - used, "  %-24s %-10s %s->%s%s%s", n->name, kind,
                                 dt(q, n->src), dt(q, n->dst), n->sum_src >= 0 ? " +sum" : "",
                                 n->relu ? " +relu" : "");
        if (d->dtype == DISTQ_DTYPE_U8)
            used += (size_t)snprintf(buf + used, cap - used, "   out scale %.6g zp %d", (double)d->scale,
                                     (int)d->zero_point);
        used += (size_t)snprintf(buf + used, cap - used, "\n");
        if (used + 200 > cap) break; /* cap is sized for this; never overflow */
    }
    *text = buf;
    return DISTQ_OK;
}
