/*
 * Graph construction, name resolution, topological order and cloning.
 * Per-op facts live in the registry (op_registry.c), shape rules in shape.c.
 */
#include <stdio.h>
#include <string.h>

#include "distq/graph.h"
#include "graph/graph_impl.h"

int64_t distq_conv_out_dim(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                           int64_t pad_end, int64_t dilation, int ceil_mode)
{
    int64_t span = in + pad_begin + pad_end - dilation * (kernel - 1) - 1;
    if (span < 0) return 0;
    int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    /* PyTorch: with ceil_mode the last window must start inside the input or
     * the left padding, else it is dropped. */
    if (ceil_mode && (out - 1) * stride >= in + pad_begin) out--;
    return out;
}

int64_t distq_axis_index(int64_t axis, int ndim) { return axis < 0 ? axis + ndim : axis; }

int64_t distq_value_numel(const distq_value *v, int64_t batch)
{
    return distq_dims_numel(v->ndim, v->dims) * batch;
}

/* --- construction ------------------------------------------------------- */

distq_status distq_graph_create(distq_graph **out)
{
    *out = distq_calloc(sizeof **out);
    if (!*out) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory creating graph");
    (*out)->input_value = -1;
    return DISTQ_OK;
}

static void free_node(distq_node *n)
{
    distq_free((void *)n->input_names);
    distq_free(n->inputs);
    n->input_names = NULL;
    n->inputs = NULL;
}

void distq_graph_destroy(distq_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_strings; i++) distq_free(g->strings[i]);
    distq_free(g->strings);
    for (int i = 0; i < g->n_params; i++) distq_free(g->params[i].data);
    distq_free(g->params);
    for (int i = 0; i < g->n_nodes; i++) free_node(&g->nodes[i]);
    distq_free(g->nodes);
    distq_free(g->values);
    distq_free(g);
}

/* Grows *arr (of elem bytes) to hold at least need elements. */
static distq_status grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return DISTQ_OK;
    int new_cap = *cap ? *cap * 2 : 16;
    while (new_cap < need) new_cap *= 2;
    void *p = distq_calloc((size_t)new_cap * elem);
    if (!p) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory growing graph");
    if (*arr) memcpy(p, *arr, (size_t)*cap * elem);
    distq_free(*arr);
    *arr = p;
    *cap = new_cap;
    return DISTQ_OK;
}

static const char empty_name[] = ""; /* an empty parameter slot */

distq_status distq_graph_intern(distq_graph *g, const char *s, const char **out)
{
    if (!s || !s[0]) return distq_error_set(DISTQ_ERR_INVALID_ARG, "empty name");
    distq_status st = grow((void **)&g->strings, &g->cap_strings, g->n_strings + 1, sizeof *g->strings);
    if (st) return st;
    size_t len = strlen(s);
    char *copy = distq_malloc(len + 1);
    if (!copy) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory for a name of %zu bytes", len);
    memcpy(copy, s, len + 1);
    g->strings[g->n_strings++] = copy;
    *out = copy;
    return DISTQ_OK;
}

distq_status distq_graph_intern_suffixed(distq_graph *g, const char *base, const char *suffix,
                                         const char **out)
{
    size_t a = strlen(base), b = strlen(suffix);
    char *joined = distq_malloc(a + b + 1);
    if (!joined) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory for the name '%s%s'", base, suffix);
    memcpy(joined, base, a);
    memcpy(joined + a, suffix, b + 1);
    distq_status st = distq_graph_intern(g, joined, out);
    distq_free(joined);
    return st;
}

/* *dst = g's copy of src; names may be of any length, never empty. */
static distq_status copy_name(distq_graph *g, const char **dst, const char *src, const char *what)
{
    if (!src || !src[0]) return distq_error_set(DISTQ_ERR_INVALID_ARG, "empty %s name", what);
    return distq_graph_intern(g, src, dst);
}

distq_status distq_graph_set_input(distq_graph *g, const char *name, int ndim,
                                   const int64_t *dims)
{
    if (ndim < 2 || ndim > DISTQ_MAX_DIMS || dims[0] != 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "graph input '%s': need 2..%d dims with dims[0] == 1", name,
                               DISTQ_MAX_DIMS);
    for (int i = 1; i < ndim; i++)
        if (dims[i] < 1)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph input '%s': dim %d is %lld",
                                   name, i, (long long)dims[i]);
    distq_status st = copy_name(g, &g->input_name, name, "graph input");
    if (st) return st;
    g->input_ndim = ndim;
    memcpy(g->input_dims, dims, (size_t)ndim * sizeof *dims);
    g->finalized = 0;
    return DISTQ_OK;
}

distq_status distq_graph_set_output(distq_graph *g, const char *name)
{
    g->n_outputs = 0;
    return distq_graph_add_output(g, name);
}

distq_status distq_graph_add_output(distq_graph *g, const char *name)
{
    g->finalized = 0;
    for (int k = 0; k < g->n_outputs; k++)
        if (strcmp(g->output_names[k], name) == 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph output '%s' is declared twice", name);
    if (g->n_outputs == DISTQ_MAX_OUTPUTS)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "graph output '%s': distq takes at most %d outputs",
                               name, DISTQ_MAX_OUTPUTS);
    distq_status st = copy_name(g, &g->output_names[g->n_outputs], name, "graph output");
    if (!st) g->n_outputs++;
    return st;
}

int distq_graph_is_output(const distq_graph *g, int v)
{
    for (int k = 0; k < g->n_outputs; k++)
        if (g->output_values[k] == v) return 1;
    return 0;
}

distq_status distq_graph_add_param(distq_graph *g, const char *name, distq_dtype dtype,
                                   int ndim, const int64_t *dims, const void *data,
                                   distq_tensor **out)
{
    if (distq_graph_find_param(g, name))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "duplicate tensor '%s'", name);
    if (ndim < 0 || ndim > DISTQ_MAX_DIMS || distq_dtype_size(dtype) == 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "tensor '%s': bad rank %d or dtype", name,
                               ndim);
    distq_status st = grow((void **)&g->params, &g->cap_params, g->n_params + 1, sizeof *g->params);
    if (st) return st;
    distq_tensor *t = &g->params[g->n_params];
    memset(t, 0, sizeof *t);
    if ((st = copy_name(g, &t->name, name, "tensor"))) return st;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "tensor '%s': negative dim", name);
        t->dims[i] = dims[i];
    }
    size_t nbytes = distq_tensor_nbytes(t);
    t->data = distq_calloc(nbytes);
    if (!t->data) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory for tensor '%s'", name);
    if (data) memcpy(t->data, data, nbytes);
    g->n_params++;
    if (out) *out = t;
    return DISTQ_OK;
}

distq_status distq_graph_add_node(distq_graph *g, const char *name, distq_op op,
                                  const distq_attrs *attr, int n_inputs,
                                  const char *const *inputs, const char *const *params,
                                  const char *output)
{
    if ((int)op < 0 || op >= DISTQ_OP_COUNT)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "node '%s': unknown op %d", name, (int)op);
    if (n_inputs < 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "node '%s': %d inputs", name, n_inputs);
    if (distq_graph_find_node(g, name) >= 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "duplicate node '%s'", name);
    distq_status st = grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes);
    if (st) return st;
    distq_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    if ((st = copy_name(g, &n->name, name, "node"))) return st;
    for (int i = 0; i < DISTQ_MAX_PARAMS; i++) n->param_names[i] = empty_name;
    n->op = op;
    n->attr = attr ? *attr : distq_attrs_default(op);
    n->n_inputs = n_inputs;
    n->input_names = distq_calloc((size_t)n_inputs * sizeof *n->input_names);
    n->inputs = distq_calloc((size_t)n_inputs * sizeof *n->inputs);
    if (!n->input_names || !n->inputs) {
        free_node(n);
        return distq_error_set(DISTQ_ERR_NOMEM, "node '%s': out of memory for %d inputs", name,
                               n_inputs);
    }
    for (int i = 0; i < n_inputs && !st; i++) st = copy_name(g, &n->input_names[i], inputs[i], "input");
    for (int i = 0; !st && params && i < DISTQ_MAX_PARAMS; i++)
        if (params[i] && params[i][0]) st = copy_name(g, &n->param_names[i], params[i], "param");
    if (!st) st = copy_name(g, &n->output_name, output, "output");
    if (st) {
        free_node(n);
        return st;
    }
    g->n_nodes++;
    g->finalized = 0;
    return DISTQ_OK;
}

distq_tensor *distq_graph_find_param(const distq_graph *g, const char *name)
{
    for (int i = 0; i < g->n_params; i++)
        if (strcmp(g->params[i].name, name) == 0) return &g->params[i];
    return NULL;
}

int distq_graph_find_value(const distq_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

int distq_graph_find_node(const distq_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

/* --- finalize ------------------------------------------------------------ */

/* One value per node output plus the graph input; duplicates are an error. */
static distq_status build_values(distq_graph *g)
{
    g->n_values = 0;
    distq_status st = grow((void **)&g->values, &g->cap_values, g->n_nodes + 1, sizeof *g->values);
    if (st) return st;
    if (!g->input_name) return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph has no input");
    distq_value *in = &g->values[g->n_values++];
    memset(in, 0, sizeof *in);
    in->name = g->input_name;
    in->dtype = DISTQ_DTYPE_F32;
    in->ndim = g->input_ndim;
    memcpy(in->dims, g->input_dims, sizeof in->dims);
    in->producer = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        distq_node *n = &g->nodes[i];
        if (distq_graph_find_value(g, n->output_name) >= 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "node '%s': output '%s' is already produced elsewhere", n->name,
                                   n->output_name);
        distq_value *v = &g->values[g->n_values++];
        memset(v, 0, sizeof *v);
        v->name = n->output_name;
        v->producer = i;
    }
    return DISTQ_OK;
}

static distq_status resolve_node(distq_graph *g, distq_node *n)
{
    for (int i = 0; i < n->n_inputs; i++) {
        n->inputs[i] = distq_graph_find_value(g, n->input_names[i]);
        if (n->inputs[i] < 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "node '%s': unknown input '%s'", n->name,
                                   n->input_names[i]);
    }
    for (int i = 0; i < DISTQ_MAX_PARAMS; i++) {
        n->params[i] = -1;
        if (!n->param_names[i][0]) continue;
        distq_tensor *t = distq_graph_find_param(g, n->param_names[i]);
        if (!t)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "node '%s': missing weight '%s'",
                                   n->name, n->param_names[i]);
        n->params[i] = (int)(t - g->params);
    }
    n->output = distq_graph_find_value(g, n->output_name);
    return DISTQ_OK;
}

/* Kahn's algorithm, stable: among ready nodes the earliest added goes first, so
 * a graph built in execution order keeps its order. */
static distq_status sort_nodes(distq_graph *g)
{
    int n = g->n_nodes;
    distq_status st = DISTQ_OK;
    int *indeg = distq_calloc((size_t)(n + 1) * sizeof *indeg);
    char *done = distq_calloc((size_t)n + 1);
    distq_node *sorted = distq_calloc((size_t)(n + 1) * sizeof *sorted);
    if (!indeg || !done || !sorted) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory sorting graph");
        goto cleanup;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->values[g->nodes[i].inputs[k]].producer >= 0) indeg[i]++;
    for (int placed = 0; placed < n; placed++) {
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++)
            if (!done[i] && indeg[i] == 0) pick = i;
        if (pick < 0) {
            /* Every remaining node waits on another remaining node: a cycle. */
            int first = 0;
            while (done[first]) first++;
            st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                                 "node '%s': part of a cycle (its inputs never become ready)",
                                 g->nodes[first].name);
            goto cleanup;
        }
        done[pick] = 1;
        sorted[placed] = g->nodes[pick];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < g->nodes[i].n_inputs; k++)
                if (g->values[g->nodes[i].inputs[k]].producer == pick) indeg[i]--;
    }
    memcpy(g->nodes, sorted, (size_t)n * sizeof *sorted);
cleanup:
    distq_free(indeg);
    distq_free(done);
    distq_free(sorted);
    return st;
}

distq_status distq_graph_finalize(distq_graph *g)
{
    distq_status st;
    g->finalized = 0;
    if (g->n_nodes == 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph has no nodes");
    if ((st = build_values(g))) return st;
    for (int i = 0; i < g->n_nodes; i++)
        if ((st = resolve_node(g, &g->nodes[i]))) return st;
    if ((st = sort_nodes(g))) return st;
    /* Sorting moved nodes: rebuild values so producers are execution indices. */
    if ((st = build_values(g))) return st;
    for (int i = 0; i < g->n_nodes; i++) {
        if ((st = resolve_node(g, &g->nodes[i]))) return st;
        if ((st = distq_node_infer(g, &g->nodes[i]))) return st;
        for (int k = 0; k < g->nodes[i].n_inputs; k++) g->values[g->nodes[i].inputs[k]].n_consumers++;
    }
    g->input_value = 0;
    if (g->n_outputs == 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph has no output");
    for (int k = 0; k < g->n_outputs; k++) {
        g->output_values[k] = distq_graph_find_value(g, g->output_names[k]);
        if (g->output_values[k] < 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph output '%s' is not produced by any node",
                                   g->output_names[k]);
        g->values[g->output_values[k]].n_consumers++;
    }
    g->finalized = 1;
    return DISTQ_OK;
}

void distq_graph_remove_node(distq_graph *g, int i)
{
    free_node(&g->nodes[i]);
    memmove(&g->nodes[i], &g->nodes[i + 1], (size_t)(g->n_nodes - i - 1) * sizeof *g->nodes);
    g->n_nodes--;
    g->finalized = 0;
}

void distq_graph_remove_unused_params(distq_graph *g, int *n_removed)
{
    int kept = 0, removed = 0;
    for (int i = 0; i < g->n_params; i++) {
        int used = 0;
        for (int k = 0; k < g->n_nodes && !used; k++)
            for (int s = 0; s < DISTQ_MAX_PARAMS && !used; s++)
                used = strcmp(g->nodes[k].param_names[s], g->params[i].name) == 0;
        if (used) {
            g->params[kept++] = g->params[i];
        } else {
            distq_free(g->params[i].data);
            removed++;
        }
    }
    g->n_params = kept;
    g->finalized = 0;
    if (n_removed) *n_removed = removed;
}

distq_status distq_graph_clone(const distq_graph *g, distq_graph **out)
{
    distq_graph *c = NULL;
    distq_status st = distq_graph_create(&c);
    if (st) return st;
    for (int i = 0; i < g->n_params && !st; i++) {
        const distq_tensor *t = &g->params[i];
        st = distq_graph_add_param(c, t->name, t->dtype, t->ndim, t->dims, t->data, NULL);
    }
    /* g's nodes are valid already: copy them as they are, names into c's store */
    if (!st) st = grow((void **)&c->nodes, &c->cap_nodes, g->n_nodes, sizeof *c->nodes);
    for (int i = 0; i < g->n_nodes && !st; i++) {
        const distq_node *n = &g->nodes[i];
        distq_node *m = &c->nodes[i];
        *m = *n;
        m->input_names = distq_calloc((size_t)n->n_inputs * sizeof *m->input_names);
        m->inputs = distq_malloc((size_t)n->n_inputs * sizeof *m->inputs);
        c->n_nodes = i + 1; /* destroy frees m's arrays from here on */
        if (!m->input_names || !m->inputs) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory cloning node '%s'", n->name);
            break;
        }
        memcpy(m->inputs, n->inputs, (size_t)n->n_inputs * sizeof *m->inputs);
        st = copy_name(c, &m->name, n->name, "node");
        for (int k = 0; k < n->n_inputs && !st; k++)
            st = copy_name(c, &m->input_names[k], n->input_names[k], "input");
        for (int k = 0; k < DISTQ_MAX_PARAMS && !st; k++)
            if (n->param_names[k][0]) st = copy_name(c, &m->param_names[k], n->param_names[k], "param");
        if (!st) st = copy_name(c, &m->output_name, n->output_name, "output");
    }
    if (!st && g->input_name) st = copy_name(c, &c->input_name, g->input_name, "graph input");
    for (int k = 0; k < g->n_outputs && !st; k++) st = distq_graph_add_output(c, g->output_names[k]);
    if (!st) {
        memcpy(c->input_dims, g->input_dims, sizeof c->input_dims);
        c->input_ndim = g->input_ndim;
        if (g->finalized) st = distq_graph_finalize(c);
    }
    if (st) {
        distq_graph_destroy(c);
        return st;
    }
    *out = c;
    return DISTQ_OK;
}

int distq_graph_is_quantized(const distq_graph *g)
{
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].dtype == DISTQ_DTYPE_U8) return 1;
    return 0;
}

int distq_graph_reduce_range(const distq_graph *q)
{
    for (int i = 0; i < q->n_values; i++)
        if (q->values[i].dtype == DISTQ_DTYPE_U8 && q->values[i].quant_max < 255) return 1;
    return 0;
}
