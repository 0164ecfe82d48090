/*
 * Training checkpoints (layout in docs/file-formats.md):
 *
 *     /                     format = "distq-checkpoint", version = 1,
 *                           step, epoch (int64), config_text (string)
 *     /graph, /tensors      the model, in the distq-model layout (model_io.c)
 *     /optimizer            kind = "sgd"
 *     /optimizer/velocity   float32 (n): distq_sgd.velocity, distq_trainer_grads order
 *     /qat                  group; /qat/state float32 (n): distq_qat_state_get's
 *                           vector (QAT observer ranges), absent for fp32 training
 *
 * The graph goes through model_io's writer and reader, so a checkpoint gets
 * the same validation as a model file. The velocity length is checked
 * against the graph's trainable elements (the f32 weight and bias of every
 * node), on save and on load. Optimizer hyper-parameters are not stored
 * here: they are in config_text; neither are the QAT freeze switches, which
 * follow from step and the config.
 */
#include <stdio.h>
#include <string.h>

#include "distq/io.h"
#include "io/h5_util_impl.h"
#include "io/model_io_impl.h"

/* Elements that get a gradient: f32 parameters in a node's weight or bias slot. */
static int64_t trainable_elements(const distq_graph *g)
{
    int64_t n = 0;
    for (int p = 0; p < g->n_params; p++) {
        int used = 0;
        for (int i = 0; i < g->n_nodes && !used; i++)
            used = g->nodes[i].params[DISTQ_PARAM_WEIGHT] == p ||
                   g->nodes[i].params[DISTQ_PARAM_BIAS] == p;
        if (used && g->params[p].dtype == DISTQ_DTYPE_F32) n += distq_tensor_numel(&g->params[p]);
    }
    return n;
}

// --- save ----------------------------------------------------------------------------

distq_status distq_checkpoint_save(const char *path, const distq_graph *g, const float *velocity,
                                   int64_t n_velocity, int64_t step, int64_t epoch,
                                   const char *config_text, const float *qat_state, int64_t n_qat)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "", where[DISTQ_H5_WHERE_MAX];
    if (!path || !g)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_checkpoint_save: NULL path or graph");
    if (!g->finalized)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: graph is not finalized (call distq_graph_finalize first)",
                               path);
    int64_t trainable = trainable_elements(g);
    if (n_velocity != 0 && n_velocity != trainable)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: velocity has %lld elements, but the graph has %lld trainable "
                               "elements (or pass 0 for none)",
                               path, (long long)n_velocity, (long long)trainable);
    if (n_velocity > 0 && !velocity)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: NULL velocity of %lld elements", path,
                               (long long)n_velocity);
    if (n_qat < 0 || (n_qat > 0 && !qat_state))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: bad QAT state (%lld values)", path, (long long)n_qat);
    if (step < 0 || epoch < 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: negative step %lld or epoch %lld", path,
                               (long long)step, (long long)epoch);

    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_CHECKPOINT_FORMAT, DISTQ_CHECKPOINT_VERSION, tmp,
                                    &fid));
    snprintf(where, sizeof where, "%s: /", path);
    DISTQ_CHECK(distq_h5_attr_write_i64(fid, "step", 0, &step, where));
    DISTQ_CHECK(distq_h5_attr_write_i64(fid, "epoch", 0, &epoch, where));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "config_text", config_text ? config_text : "", where));
    DISTQ_CHECK(distq_h5_write_graph(fid, g, path));

    snprintf(where, sizeof where, "%s: /optimizer", path);
    DISTQ_H5_CHECK(grp = H5Gcreate2(fid, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create group", where);
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "kind", "sgd", where));
    DISTQ_CHECK(distq_h5_write_array(grp, "velocity", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1,
                                     &n_velocity, velocity, where));
    distq_h5_close(&grp);

    snprintf(where, sizeof where, "%s: /qat", path);
    DISTQ_H5_CHECK(grp = H5Gcreate2(fid, "qat", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create group", where);
    if (n_qat > 0)
        DISTQ_CHECK(distq_h5_write_array(grp, "state", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n_qat, qat_state, where));
    distq_h5_close(&grp);
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    distq_h5_close(&grp);
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

// --- load ----------------------------------------------------------------------------

/* A non-negative scalar integer root attribute. */
static distq_status read_counter(hid_t fid, const char *name, const char *path, int64_t *out)
{
    distq_status st = DISTQ_OK;
    char where[DISTQ_H5_WHERE_MAX];
    snprintf(where, sizeof where, "%s: /", path);
    DISTQ_CHECK(distq_h5_attr_read_i64(fid, name, 1, 1, out, NULL, where));
    if (*out < 0)
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: attribute '%s' is %lld, expected >= 0", where,
                             name, (long long)*out);
cleanup:
    return st;
}

/* /<group>/<name>: float32, 1-D, 0 or `expected` elements (expected < 0:
 * any length). A missing dataset is an error unless `optional`. */
static distq_status read_f32_vector(hid_t fid, const char *path, const char *group, const char *name,
                                    int64_t expected, int optional, float **out, int64_t *n_out)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID, type = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], gwhere[DISTQ_H5_WHERE_MAX], tt[64], shape[96];
    int64_t dims[DISTQ_MAX_DIMS];
    int ndim = 0;
    htri_t has;
    float *v = NULL;
    *out = NULL;
    *n_out = 0;
    snprintf(gwhere, sizeof gwhere, "/%s", group);
    DISTQ_CHECK(distq_h5_open_group(fid, group, path, gwhere, &grp));
    snprintf(where, sizeof where, "%s: dataset /%s/%s", path, group, name);
    DISTQ_H5_CHECK(has = H5Lexists(grp, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: cannot look it up", where);
    if (!has) {
        if (!optional) st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing dataset /%s/%s", path, group, name);
        goto cleanup;
    }
    DISTQ_H5_CHECK(dset = H5Dopen2(grp, name, H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: not a dataset", where);
    DISTQ_H5_CHECK(type = H5Dget_type(dset), DISTQ_ERR_FORMAT, "%s: cannot read its type", where);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4) {
        distq_h5_type_text(type, tt, sizeof tt);
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has type %s, expected float32", where, tt);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_dataset_shape(dset, &ndim, dims, where));
    if (ndim != 1 || (expected >= 0 && dims[0] != 0 && dims[0] != expected)) {
        distq_dims_format(ndim, dims, shape, sizeof shape);
        if (expected >= 0)
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: has shape %s, expected (%lld): one value per trainable element "
                                 "of the graph (or (0) for none)",
                                 where, shape, (long long)expected);
        else
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has shape %s, expected one dimension", where, shape);
        goto cleanup;
    }
    if (dims[0] > 0) {
        v = distq_malloc((size_t)dims[0] * sizeof *v);
        if (!v) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
            goto cleanup;
        }
        DISTQ_H5_CHECK(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v),
                       DISTQ_ERR_FORMAT, "%s: cannot read", where);
    }
    *out = v;
    *n_out = dims[0];
    v = NULL;
cleanup:
    distq_free(v);
    distq_h5_close(&type);
    distq_h5_close(&dset);
    distq_h5_close(&grp);
    return st;
}

distq_status distq_checkpoint_load(const char *path, distq_graph **g, float **velocity,
                                   int64_t *n_velocity, int64_t *step, int64_t *epoch, float **qat_state,
                                   int64_t *n_qat)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    distq_graph *graph = NULL;
    float *v = NULL, *qs = NULL;
    int64_t nv = 0, s = 0, e = 0, nq = 0;
    if (!path || !g || !velocity || !n_velocity || !step || !epoch)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_checkpoint_load: NULL argument");
    *g = NULL;
    *velocity = NULL;
    *n_velocity = *step = *epoch = 0;
    if (qat_state) *qat_state = NULL;
    if (n_qat) *n_qat = 0;

    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
    DISTQ_CHECK(distq_h5_check_format(fid, path, DISTQ_CHECKPOINT_FORMAT,
                                      DISTQ_CHECKPOINT_VERSION));
    DISTQ_CHECK(read_counter(fid, "step", path, &s));
    DISTQ_CHECK(read_counter(fid, "epoch", path, &e));
    DISTQ_CHECK(distq_h5_read_graph(fid, path, &graph));
    DISTQ_CHECK(read_f32_vector(fid, path, "optimizer", "velocity", trainable_elements(graph), 0, &v, &nv));
    if (qat_state && n_qat) {
        DISTQ_CHECK(read_f32_vector(fid, path, "qat", "state", -1, 1, &qs, &nq));
        *qat_state = qs;
        *n_qat = nq;
        qs = NULL;
    }
    *g = graph;
    *velocity = v;
    *n_velocity = nv;
    *step = s;
    *epoch = e;
    graph = NULL;
    v = NULL;
cleanup:
    distq_h5_close(&fid);
    distq_graph_destroy(graph);
    distq_free(v);
    distq_free(qs);
    return st;
}
