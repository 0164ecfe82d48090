/*
 * Model files: a finalized graph and its parameters in one HDF5 file (layout
 * in docs/file-formats.md):
 *
 *     /                 format = "distq-model", version = 2 (1 loads)
 *     /graph            input, input_shape, output, node_order
 *     /graph/nodes/<n>  op, inputs, output, params[6], the op's own attributes
 *     /tensors/<p>      one dataset per parameter, its dtype and shape
 *
 * The loader validates everything it reads and names the file plus the
 * attribute, node or dataset at fault; shape checks of weights against node
 * attributes are left to distq_graph_finalize(). The /graph + /tensors part is
 * also written and read by qmodel_io.c (a quantized model carries its float
 * graph), through model_io_impl.h; distq_model_load accepts both formats.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "distq/io.h"
#include "distq/onnx.h"
#include "io/h5_util_impl.h"
#include "io/model_io_impl.h"

// --- per-op attributes ----------------------------------------------------------
/* A node's attributes are its registry row's schema (op_registry.c): nothing
 * per op here. */

int distq_h5_name_ok(const char *s) { return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0; }

/* Node groups and tensor datasets are named after the node or tensor, but
 * HDF5 reserves '/' (ONNX names are full of them: /layer1/layer1.0/Conv) and
 * the name ".". Their link names escape '%' as %25, '/' as %2F and a name
 * "." as %2E; the real names stay in the attributes (inputs, params,
 * node_order), so readers see them as they are. *out: distq_free it. */
static distq_status link_escape(const char *name, char **out)
{
    size_t len = 0;
    for (const char *c = name; *c; c++) len += (*c == '%' || *c == '/') ? 3 : 1;
    if (!(*out = distq_malloc(len + 4)))
        return distq_error_set(DISTQ_ERR_NOMEM, "out of memory escaping the name '%s'", name);
    if (strcmp(name, ".") == 0) {
        strcpy(*out, "%2E");
        return DISTQ_OK;
    }
    char *o = *out;
    for (const char *c = name; *c; c++) {
        if (*c == '%' || *c == '/') {
            *o++ = '%';
            *o++ = '2';
            *o++ = *c == '%' ? '5' : 'F';
        } else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return DISTQ_OK;
}

/* Undoes link_escape in place; other '%' sequences are left as they are. */
static void link_unescape(char *s)
{
    char *o = s;
    for (const char *c = s; *c;) {
        if (c[0] == '%' && c[1] == '2' && (c[2] == '5' || c[2] == 'F' || c[2] == 'E')) {
            *o++ = c[2] == '5' ? '%' : c[2] == 'F' ? '/' : '.';
            c += 3;
        } else {
            *o++ = *c++;
        }
    }
    *o = '\0';
}

/* op outside the registry (qmodel_io's quantize/dequantize): no attributes. */
distq_status distq_h5_write_op_attrs(hid_t grp, distq_op op, const distq_attrs *a,
                                     const char *where)
{
    distq_status st = DISTQ_OK;
    const distq_op_info *info = distq_op_info_of(op);
    const distq_attrs dflt = distq_attrs_default(op);
    for (int i = 0; info && i < info->n_attrs; i++) {
        const distq_attr_spec *s = &info->attrs[i];
        const char *field = (const char *)a + s->offset;
        size_t size = distq_attr_size(s);
        /* an optional attribute at its default is left out: fp32 nodes stay as in version 1 */
        if (s->optional && memcmp(field, (const char *)&dflt + s->offset, size) == 0) continue;
        if (s->kind == DISTQ_ATTR_F32)
            DISTQ_CHECK(distq_h5_attr_write_f32(grp, s->name, *(const float *)field, where));
        else if (s->kind == DISTQ_ATTR_OP)
            DISTQ_CHECK(distq_h5_attr_write_str(grp, s->name, distq_op_name((distq_op)*(const int64_t *)field), where));
        else
            DISTQ_CHECK(distq_h5_attr_write_i64(grp, s->name,
                                                s->kind == DISTQ_ATTR_PAIR   ? 2
                                                : s->kind == DISTQ_ATTR_DIMS ? DISTQ_MAX_DIMS
                                                                             : 0,
                                                (const int64_t *)field, where));
    }
cleanup:
    return st;
}

distq_status distq_h5_read_op_attrs(hid_t grp, distq_op op, distq_attrs *a, const char *where)
{
    distq_status st = DISTQ_OK;
    const distq_op_info *info = distq_op_info_of(op);
    *a = distq_attrs_default(op);
    for (int i = 0; info && i < info->n_attrs; i++) {
        const distq_attr_spec *s = &info->attrs[i];
        char *field = (char *)a + s->offset;
        if (s->optional) {
            htri_t has;
            DISTQ_H5_CHECK(has = distq_h5_attr_exists(grp, s->name), DISTQ_ERR_FORMAT,
                           "%s: cannot query attribute '%s'", where, s->name);
            if (!has) continue; /* its default */
        }
        if (s->kind == DISTQ_ATTR_F32) {
            DISTQ_CHECK(distq_h5_attr_read_f32(grp, s->name, (float *)field, where));
        } else if (s->kind == DISTQ_ATTR_OP) {
            char name[64];
            distq_op post;
            DISTQ_CHECK(distq_h5_attr_read_str(grp, s->name, name, sizeof name, where));
            if (distq_op_from_name(name, &post)) {
                st = distq_error_set(DISTQ_ERR_FORMAT, "%s: attribute '%s' names no op ('%s')", where, s->name, name);
                goto cleanup;
            }
            *(int64_t *)field = post;
        } else {
            int n = s->kind == DISTQ_ATTR_PAIR ? 2 : s->kind == DISTQ_ATTR_DIMS ? DISTQ_MAX_DIMS : 1;
            DISTQ_CHECK(distq_h5_attr_read_i64(grp, s->name, n, n, (int64_t *)field, NULL, where));
        }
    }
cleanup:
    return st;
}

distq_status distq_h5_compact_gcpl(hid_t *out, const char *where)
{
    distq_status st = DISTQ_OK;
    *out = H5I_INVALID_HID;
    /* Keep attributes in the object header ("compact"), never in dense
     * storage: HDF5 before 1.14.4 segfaults in H5Ocopy (h5copy, h5py's
     * Group.copy, scripts/torch2h5.py) on dense variable-length string
     * attributes (HDFGroup/hdf5#2414). A max_pool2d node has 9 attributes;
     * the default switches to dense storage above 8. */
    DISTQ_H5_CHECK(*out = H5Pcreate(H5P_GROUP_CREATE), DISTQ_ERR_IO, "%s: H5Pcreate", where);
    DISTQ_H5_CHECK(H5Pset_attr_phase_change(*out, 32, 24), DISTQ_ERR_IO,
                   "%s: H5Pset_attr_phase_change", where);
cleanup:
    if (st != DISTQ_OK) distq_h5_close(out);
    return st;
}

/* Re-records the current message (from a graph call) prefixed with path. Any
 * failure other than out-of-memory is a content problem of the file. */
static distq_status prefix_error(distq_status st, const char *path)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", distq_error_message());
    return distq_error_set(st == DISTQ_ERR_NOMEM ? st : DISTQ_ERR_FORMAT, "%s: %s", path, msg);
}

// --- save -------------------------------------------------------------------------

static distq_status write_node(hid_t nodes, hid_t gcpl, const distq_node *nd, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    const char *ins[nd->n_inputs], *params[DISTQ_MAX_PARAMS];
    char *link = NULL;
    snprintf(where, sizeof where, "%s: /graph/nodes/%s", path, nd->name);
    DISTQ_CHECK(link_escape(nd->name, &link));
    DISTQ_H5_CHECK(grp = H5Gcreate2(nodes, link, H5P_DEFAULT, gcpl, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create group", where);
    for (int i = 0; i < nd->n_inputs; i++) ins[i] = nd->input_names[i];
    for (int i = 0; i < DISTQ_MAX_PARAMS; i++) params[i] = nd->param_names[i];
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "op", distq_op_name(nd->op), where));
    DISTQ_CHECK(distq_h5_attr_write_strs(grp, "inputs", nd->n_inputs, ins, where));
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "output", nd->output_name, where));
    DISTQ_CHECK(distq_h5_attr_write_strs(grp, "params", DISTQ_MAX_PARAMS, params, where));
    DISTQ_CHECK(distq_h5_write_op_attrs(grp, nd->op, &nd->attr, where));
cleanup:
    distq_free(link);
    distq_h5_close(&grp);
    return st;
}

distq_status distq_h5_write_graph(hid_t fid, const distq_graph *g, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t graph = H5I_INVALID_HID, nodes = H5I_INVALID_HID;
    hid_t tensors = H5I_INVALID_HID, gcpl = H5I_INVALID_HID, attr_gcpl = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], *link = NULL;
    const char **order = NULL;
    if (!g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: graph is not finalized (call distq_graph_finalize first)",
                               path);

    snprintf(where, sizeof where, "%s: /graph", path);
    DISTQ_CHECK(distq_h5_compact_gcpl(&attr_gcpl, where));
    DISTQ_H5_CHECK(graph = H5Gcreate2(fid, "graph", H5P_DEFAULT, attr_gcpl, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create group", where);
    DISTQ_CHECK(distq_h5_attr_write_str(graph, "input", g->input_name, where));
    /* the batch stays symbolic in the file: -1, any size (ONNX's dynamic axis) */
    int64_t input_shape[DISTQ_MAX_DIMS];
    memcpy(input_shape, g->input_dims, (size_t)g->input_ndim * sizeof *input_shape);
    input_shape[0] = DISTQ_FILE_BATCH_ANY;
    DISTQ_CHECK(distq_h5_attr_write_i64(graph, "input_shape", g->input_ndim, input_shape, where));
    /* one output: a string, as in every earlier version; several: a list,
     * which older readers refuse rather than run half a graph */
    if (g->n_outputs == 1) DISTQ_CHECK(distq_h5_attr_write_str(graph, "output", g->output_names[0], where));
    else DISTQ_CHECK(distq_h5_attr_write_strs(graph, "output", g->n_outputs, g->output_names, where));
    order = distq_malloc((size_t)(g->n_nodes > 0 ? g->n_nodes : 1) * sizeof *order);
    if (!order) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < g->n_nodes; i++) order[i] = g->nodes[i].name;
    DISTQ_CHECK(distq_h5_attr_write_strs(graph, "node_order", g->n_nodes, order, where));

    DISTQ_H5_CHECK(nodes = H5Gcreate2(graph, "nodes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s/nodes: cannot create group", where);
    for (int i = 0; i < g->n_nodes; i++)
        DISTQ_CHECK(write_node(nodes, attr_gcpl, &g->nodes[i], path));

    /* Tracking creation order lets the loader restore the parameter order. */
    snprintf(where, sizeof where, "%s: /tensors", path);
    DISTQ_H5_CHECK(gcpl = H5Pcreate(H5P_GROUP_CREATE), DISTQ_ERR_IO, "%s: H5Pcreate", where);
    DISTQ_H5_CHECK(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
                   DISTQ_ERR_IO, "%s: H5Pset_link_creation_order", where);
    DISTQ_H5_CHECK(tensors = H5Gcreate2(fid, "tensors", H5P_DEFAULT, gcpl, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create group", where);
    for (int i = 0; i < g->n_params; i++) {
        const distq_tensor *t = &g->params[i];
        distq_free(link);
        DISTQ_CHECK(link_escape(t->name, &link));
        DISTQ_CHECK(distq_h5_write_tensor(tensors, link, t, where));
    }
cleanup:
    distq_free(link);
    distq_h5_close(&attr_gcpl);
    distq_h5_close(&gcpl);
    distq_h5_close(&tensors);
    distq_h5_close(&nodes);
    distq_h5_close(&graph);
    distq_free(order);
    return st;
}

distq_status distq_model_save(const distq_graph *g, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "";
    if (!g || !path)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_model_save: NULL graph or path");
    if (!g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: graph is not finalized (call distq_graph_finalize first)",
                               path);
    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_MODEL_FORMAT, DISTQ_MODEL_VERSION, tmp, &fid));
    DISTQ_CHECK(distq_h5_write_graph(fid, g, path));
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

// --- load -------------------------------------------------------------------------

/* *name = the name (any length, distq_free it) of link idx of group grp in
 * the given index order. */
static distq_status link_name(hid_t grp, H5_index_t index, hsize_t idx, char **name,
                              const char *where)
{
    distq_status st = DISTQ_OK;
    ssize_t len;
    *name = NULL;
    DISTQ_H5_CHECK(len = H5Lget_name_by_idx(grp, ".", index, H5_ITER_INC, idx, NULL, 0,
                                            H5P_DEFAULT),
                   DISTQ_ERR_FORMAT, "%s: cannot list member %llu", where, (unsigned long long)idx);
    if (!(*name = distq_malloc((size_t)len + 1))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory for a name of %zd bytes", where, len);
        goto cleanup;
    }
    DISTQ_H5_CHECK(H5Lget_name_by_idx(grp, ".", index, H5_ITER_INC, idx, *name, (size_t)len + 1,
                                      H5P_DEFAULT),
                   DISTQ_ERR_FORMAT, "%s: cannot list member %llu", where, (unsigned long long)idx);
cleanup:
    if (st) {
        distq_free(*name);
        *name = NULL;
    }
    return st;
}

/* Opens loc/name as a group, or fails naming what is missing. */
distq_status distq_h5_open_group(hid_t loc, const char *name, const char *path, const char *full,
                               hid_t *out)
{
    distq_status st = DISTQ_OK;
    htri_t has;
    DISTQ_H5_CHECK(has = H5Lexists(loc, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up %s", path, full);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing group %s", path, full);
        goto cleanup;
    }
    DISTQ_H5_CHECK(*out = H5Gopen2(loc, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: %s is not a group", path, full);
cleanup:
    return st;
}

/* Adds every dataset of /tensors as a parameter, in creation order when the
 * file tracks it (ours do) and by name otherwise. */
static distq_status read_tensors(hid_t fid, const char *path, distq_graph *g)
{
    distq_status st = DISTQ_OK;
    hid_t tensors = H5I_INVALID_HID, gcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hid_t type = H5I_INVALID_HID;
    char gwhere[DISTQ_H5_WHERE_MAX], where[DISTQ_H5_WHERE_MAX], *name = NULL;
    char tt[64];
    H5G_info_t info;
    unsigned crt_flags = 0;
    snprintf(gwhere, sizeof gwhere, "%s: /tensors", path);
    DISTQ_CHECK(distq_h5_open_group(fid, "tensors", path, "/tensors", &tensors));
    DISTQ_H5_CHECK(H5Gget_info(tensors, &info), DISTQ_ERR_FORMAT, "%s: cannot list", gwhere);
    DISTQ_H5_CHECK(gcpl = H5Gget_create_plist(tensors), DISTQ_ERR_FORMAT, "%s: H5Gget_create_plist",
                   gwhere);
    DISTQ_H5_CHECK(H5Pget_link_creation_order(gcpl, &crt_flags), DISTQ_ERR_FORMAT,
                   "%s: H5Pget_link_creation_order", gwhere);
    H5_index_t index = (crt_flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        distq_dtype dt;
        int ndim = 0;
        int64_t dims[DISTQ_MAX_DIMS];
        distq_tensor *t = NULL;
        distq_free(name);
        DISTQ_CHECK(link_name(tensors, index, i, &name, gwhere));
        snprintf(where, sizeof where, "%s: dataset /tensors/%s", path, name);
        DISTQ_H5_CHECK(dset = H5Dopen2(tensors, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                       "%s: /tensors/%s is not a dataset", path, name);
        link_unescape(name); /* the tensor's own name */
        DISTQ_H5_CHECK(type = H5Dget_type(dset), DISTQ_ERR_FORMAT, "%s: cannot read its type",
                       where);
        if (distq_h5_dtype_of(type, &dt) != 0) {
            distq_h5_type_text(type, tt, sizeof tt);
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: has type %s; tensors must be f32, u8, s8, s32 or s64 "
                                 "(float32, uint8, int8, int32, int64)",
                                 where, tt);
            goto cleanup;
        }
        DISTQ_CHECK(distq_h5_dataset_shape(dset, &ndim, dims, where));
        st = distq_graph_add_param(g, name, dt, ndim, dims, NULL, &t);
        if (st != DISTQ_OK) {
            st = prefix_error(st, path);
            goto cleanup;
        }
        if (distq_tensor_numel(t) > 0)
            DISTQ_H5_CHECK(H5Dread(dset, distq_h5_mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                   t->data),
                           DISTQ_ERR_FORMAT, "%s: cannot read", where);
        distq_h5_close(&type);
        distq_h5_close(&dset);
    }
cleanup:
    distq_free(name);
    distq_h5_close(&type);
    distq_h5_close(&dset);
    distq_h5_close(&gcpl);
    distq_h5_close(&tensors);
    return st;
}

/* Reads /graph/nodes/<name> and adds it to g. */
static distq_status read_node(hid_t nodes, const char *name, const char *path, distq_graph *g)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], opname[DISTQ_NAME_MAX];
    char **ins = NULL, **output = NULL, **params = NULL; /* strlists: names of any length */
    const char *param_ptrs[DISTQ_MAX_PARAMS];
    int n_ins = 0, n_params = 0, n_out = 0;
    distq_op op;
    char *link = NULL;
    snprintf(where, sizeof where, "%s: /graph/nodes/%s", path, name);
    DISTQ_CHECK(link_escape(name, &link));
    DISTQ_H5_CHECK(grp = H5Gopen2(nodes, link, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: not a group", where);
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "op", opname, sizeof opname, where));
    if (distq_op_from_name(opname, &op) != DISTQ_OK) {
        char known[512] = "";
        size_t used = 0;
        for (int i = 0; i < DISTQ_OP_COUNT && used < sizeof known; i++)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                     distq_op_name((distq_op)i));
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: node '%s' has unknown op '%s' (known: %s)",
                             path, name, opname, known);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_strlist(grp, "inputs", 1, 1 << 20, &ins, &n_ins, where));
    DISTQ_CHECK(distq_h5_attr_read_strlist(grp, "output", 1, 1, &output, &n_out, where));
    DISTQ_CHECK(distq_h5_attr_read_strlist(grp, "params", 0, DISTQ_MAX_PARAMS, &params, &n_params,
                                           where));
    for (int i = 0; i < DISTQ_MAX_PARAMS; i++) {
        param_ptrs[i] = i < n_params ? params[i] : "";
        if (param_ptrs[i][0] && !distq_graph_find_param(g, params[i])) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: node '%s' uses parameter '%s', but there is no dataset "
                                 "/tensors/%s",
                                 path, name, params[i], params[i]);
            goto cleanup;
        }
    }
    distq_attrs attr;
    DISTQ_CHECK(distq_h5_read_op_attrs(grp, op, &attr, where));
    st = distq_graph_add_node(g, name, op, &attr, n_ins, (const char *const *)ins, param_ptrs,
                              output[0]);
    if (st != DISTQ_OK) st = prefix_error(st, path);
cleanup:
    distq_free(link);
    distq_free(ins);
    distq_free(output);
    distq_free(params);
    distq_h5_close(&grp);
    return st;
}

/* Fills names[n] (each distq_malloc'd; the caller frees them) with the
 * execution order: /graph's node_order attribute (checked to be a
 * permutation of /graph/nodes) or, without it, name order. */
static distq_status read_node_order(hid_t graph, hid_t nodes, int n, char **names, const char *path)
{
    distq_status st = DISTQ_OK;
    char where[DISTQ_H5_WHERE_MAX], **order = NULL;
    htri_t has;
    int got = 0;
    snprintf(where, sizeof where, "%s: /graph", path);
    DISTQ_H5_CHECK(has = H5Aexists(graph, "node_order"), DISTQ_ERR_FORMAT,
                   "%s: cannot look up attribute 'node_order'", where);
    if (!has) {
        snprintf(where, sizeof where, "%s: /graph/nodes", path);
        for (int i = 0; i < n; i++) {
            DISTQ_CHECK(link_name(nodes, H5_INDEX_NAME, (hsize_t)i, &names[i], where));
            link_unescape(names[i]);
        }
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_strlist(graph, "node_order", n, n, &order, &got, where));
    for (int i = 0; i < n; i++) {
        size_t len = strlen(order[i]);
        if (!(names[i] = distq_malloc(len + 1))) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
            goto cleanup;
        }
        memcpy(names[i], order[i], len + 1);
    }
    for (int i = 0; i < n; i++) {
        htri_t exists = 0;
        char *link = NULL;
        DISTQ_CHECK(link_escape(names[i], &link));
        if (names[i][0])
            exists = H5Lexists(nodes, link, H5P_DEFAULT);
        distq_free(link);
        DISTQ_H5_CHECK(exists, DISTQ_ERR_FORMAT, "%s: cannot look up /graph/nodes/%s", path, names[i]);
        if (!exists) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: /graph attribute node_order names '%s', but there is no "
                                 "group /graph/nodes/%s",
                                 path, names[i], names[i]);
            goto cleanup;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                st = distq_error_set(DISTQ_ERR_FORMAT,
                                     "%s: /graph attribute node_order lists '%s' twice", path,
                                     names[i]);
                goto cleanup;
            }
        }
    }
cleanup:
    distq_free(order);
    return st;
}

distq_status distq_h5_read_graph(hid_t fid, const char *path, distq_graph **out)
{
    distq_status st = DISTQ_OK;
    hid_t graph = H5I_INVALID_HID, nodes = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], **input = NULL, **output = NULL, **names = NULL;
    int64_t input_shape[DISTQ_MAX_DIMS];
    int input_ndim = 0, n_names = 0, one = 0, n_outputs = 0;
    H5G_info_t info;
    distq_graph *g = NULL;
    *out = NULL;

    snprintf(where, sizeof where, "%s: /graph", path);
    DISTQ_CHECK(distq_h5_open_group(fid, "graph", path, "/graph", &graph));
    DISTQ_CHECK(distq_h5_attr_read_strlist(graph, "input", 1, 1, &input, &one, where));
    DISTQ_CHECK(distq_h5_attr_read_i64(graph, "input_shape", 1, DISTQ_MAX_DIMS, input_shape,
                                       &input_ndim, where));
    if (input_shape[0] != DISTQ_FILE_BATCH_ANY && input_shape[0] != 1) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: input_shape[0] is %lld; the batch is -1 (any size) or 1 (version 1 files)",
                             where, (long long)input_shape[0]);
        goto cleanup;
    }
    input_shape[0] = 1; /* in memory the batch is a placeholder 1; executors take theirs */
    DISTQ_CHECK(distq_h5_attr_read_strlist(graph, "output", 1, DISTQ_MAX_OUTPUTS, &output, &n_outputs, where));
    DISTQ_CHECK(distq_h5_open_group(graph, "nodes", path, "/graph/nodes", &nodes));
    DISTQ_H5_CHECK(H5Gget_info(nodes, &info), DISTQ_ERR_FORMAT, "%s: cannot list /graph/nodes",
                   path);
    if (info.nlinks == 0) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: /graph/nodes is empty", path);
        goto cleanup;
    }
    names = distq_calloc(info.nlinks * sizeof *names);
    n_names = (int)info.nlinks;
    if (!names) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    DISTQ_CHECK(read_node_order(graph, nodes, (int)info.nlinks, names, path));

    st = distq_graph_create(&g);
    if (st == DISTQ_OK) st = distq_graph_set_input(g, input[0], input_ndim, input_shape);
    if (st != DISTQ_OK) {
        st = prefix_error(st, path);
        goto cleanup;
    }
    DISTQ_CHECK(read_tensors(fid, path, g));
    for (int i = 0; i < (int)info.nlinks; i++) DISTQ_CHECK(read_node(nodes, names[i], path, g));
    for (int k = 0; k < n_outputs && st == DISTQ_OK; k++) st = distq_graph_add_output(g, output[k]);
    if (st == DISTQ_OK) st = distq_graph_finalize(g);
    if (st != DISTQ_OK) {
        st = prefix_error(st, path);
        goto cleanup;
    }
    *out = g;
    g = NULL;
cleanup:
    distq_h5_close(&nodes);
    distq_h5_close(&graph);
    distq_graph_destroy(g);
    for (int i = 0; names && i < n_names; i++) distq_free(names[i]);
    distq_free(names);
    distq_free(input);
    distq_free(output);
    return st;
}

distq_status distq_model_to_image(const distq_graph *g, const char *what, void **buf, size_t *len)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX];
    *buf = NULL;
    *len = 0;
    /* the in-memory file of distq_model_save, handed over instead of written
     * (a short name of its own: nothing is written, so what's length is moot) */
    DISTQ_CHECK(distq_h5_create_tmp("distq-model-image", DISTQ_MODEL_FORMAT, DISTQ_MODEL_VERSION, tmp, &fid));
    DISTQ_CHECK(distq_h5_write_graph(fid, g, what));
    DISTQ_CHECK(distq_h5_image_close_take(&fid, what, buf, len));
cleanup:
    if (fid >= 0) distq_h5_image_close_drop(&fid);
    return st;
}

distq_status distq_model_from_image(const void *buf, size_t len, const char *what, distq_graph **out)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    char format[DISTQ_NAME_MAX] = "";
    *out = NULL;
    DISTQ_CHECK(distq_h5_image_open_read(buf, len, what, &fid));
    DISTQ_CHECK(distq_h5_read_format(fid, what, format, sizeof format));
    DISTQ_CHECK(distq_h5_check_format_since(fid, what, DISTQ_MODEL_FORMAT, DISTQ_MODEL_VERSION, DISTQ_MODEL_VERSION));
    DISTQ_CHECK(distq_h5_read_graph(fid, what, out));
cleanup:
    distq_h5_close(&fid);
    return st;
}

distq_status distq_model_load(const char *path, distq_graph **out)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    char format[DISTQ_NAME_MAX] = "";
    if (!out || !path)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_model_load: NULL path or out");
    *out = NULL;
    /* an ONNX model is imported in memory: every command that takes a model takes one */
    if (distq_path_is_onnx(path)) return distq_onnx_import(path, NULL, out);

    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
    /* A quantized model carries its float graph in the same layout: every
     * tool that takes a float model also takes one. */
    DISTQ_CHECK(distq_h5_read_format(fid, path, format, sizeof format));
    if (strcmp(format, DISTQ_QMODEL_FORMAT) == 0)
        DISTQ_CHECK(distq_h5_check_format_since(fid, path, DISTQ_QMODEL_FORMAT, 1, DISTQ_QMODEL_VERSION));
    else
        DISTQ_CHECK(distq_h5_check_format_since(fid, path, DISTQ_MODEL_FORMAT, DISTQ_MODEL_OLDEST_VERSION, DISTQ_MODEL_VERSION));
    DISTQ_CHECK(distq_h5_read_graph(fid, path, out));
cleanup:
    distq_h5_close(&fid);
    return st;
}
