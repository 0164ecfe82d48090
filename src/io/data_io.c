/*
 * Data files (images and optional labels) and output files (logits); layouts
 * in docs/file-formats.md:
 *
 *     data:    / format = "distq-data", version = 1
 *              /images f32 (N, C, H, W) or (N, F), attribute layout
 *              /labels int64 (N), optional
 *     output:  / format = "distq-output", version = 1
 *              /logits f32 (N, K), attributes model and data (source paths)
 *
 * distq_data_read() is a hyperslab read of rows [start, start + count), so each
 * rank can read only its shard. Files are opened with the default (sec2)
 * driver here; MPI-IO is left to the distributed layer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/io.h"
#include "io/h5_util_impl.h"

// --- data files ---------------------------------------------------------------------

distq_status distq_data_write(const char *path, const float *images, int ndim,
                              const int64_t *dims, const int64_t *labels)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "", where[DISTQ_H5_WHERE_MAX];
    hsize_t hd[DISTQ_MAX_DIMS];
    if (!path || !images || !dims)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_data_write: NULL argument");
    if (ndim < 2 || ndim > DISTQ_MAX_DIMS)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: images need rank 2 (N, F) to %d (N, C, H, W, ...), got %d",
                               path, DISTQ_MAX_DIMS, ndim);
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1) {
            char shape[96];
            distq_dims_format(ndim, dims, shape, sizeof shape);
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: bad image shape %s", path, shape);
        }
        hd[i] = (hsize_t)dims[i];
    }
    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_DATA_FORMAT, DISTQ_DATA_VERSION, tmp, &fid));

    snprintf(where, sizeof where, "%s: /images", path);
    DISTQ_H5_CHECK(space = H5Screate_simple(ndim, hd, NULL), DISTQ_ERR_IO, "%s: H5Screate_simple",
                   where);
    DISTQ_H5_CHECK(dset = H5Dcreate2(fid, "images", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                                     H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create dataset", where);
    DISTQ_H5_CHECK(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, images),
                   DISTQ_ERR_IO, "%s: cannot write", where);
    static const char *const layouts[] = {"", "", "NF", "NCL", "NCHW", "NCDHW"};
    const char *layout = ndim < (int)(sizeof layouts / sizeof *layouts) ? layouts[ndim] : "N...";
    DISTQ_CHECK(distq_h5_attr_write_str(dset, "layout", layout, where));
    distq_h5_close(&dset);
    distq_h5_close(&space);

    if (labels) {
        snprintf(where, sizeof where, "%s: /labels", path);
        DISTQ_H5_CHECK(space = H5Screate_simple(1, hd, NULL), DISTQ_ERR_IO,
                       "%s: H5Screate_simple", where);
        DISTQ_H5_CHECK(dset = H5Dcreate2(fid, "labels", H5T_STD_I64LE, space, H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT),
                       DISTQ_ERR_IO, "%s: cannot create dataset", where);
        DISTQ_H5_CHECK(H5Dwrite(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels),
                       DISTQ_ERR_IO, "%s: cannot write", where);
        distq_h5_close(&dset);
        distq_h5_close(&space);
    }
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    distq_h5_close(&dset);
    distq_h5_close(&space);
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

/* Opens a data file and checks it: format, /images f32 of rank 2..DISTQ_MAX_DIMS, /labels
 * (if present) integer of length N. *images and *labels (or
 * H5I_INVALID_HID if absent) are returned open, with *fid. */
static distq_status data_open(const char *path, hid_t fapl, hid_t *fid, hid_t *images,
                              hid_t *labels, distq_data_info *info)
{
    distq_status st = DISTQ_OK;
    hid_t type = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX], tt[64], shape[96];
    htri_t has;
    int64_t ldims[DISTQ_MAX_DIMS];
    int lndim = 0;
    memset(info, 0, sizeof *info);
    DISTQ_CHECK(distq_h5_open_read(path, fapl, fid));
    DISTQ_CHECK(distq_h5_check_format(*fid, path, DISTQ_DATA_FORMAT, DISTQ_DATA_VERSION));

    snprintf(where, sizeof where, "%s: dataset /images", path);
    DISTQ_H5_CHECK(has = H5Lexists(*fid, "images", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up /images", path);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing dataset /images", path);
        goto cleanup;
    }
    DISTQ_H5_CHECK(*images = H5Dopen2(*fid, "images", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: /images is not a dataset", path);
    DISTQ_H5_CHECK(type = H5Dget_type(*images), DISTQ_ERR_FORMAT, "%s: cannot read its type",
                   where);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4) {
        distq_h5_type_text(type, tt, sizeof tt);
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has type %s, expected float32", where, tt);
        goto cleanup;
    }
    distq_h5_close(&type);
    DISTQ_CHECK(distq_h5_dataset_shape(*images, &info->ndim, info->dims, where));
    if (info->ndim < 2) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: has rank %d, expected 2 (N, F) to %d (N, C, H, W, ...)", where,
                             info->ndim, DISTQ_MAX_DIMS);
        goto cleanup;
    }
    info->n = info->dims[0];
    /* every buffer of images is sized from these: refuse a shape whose bytes
     * would not fit (a product that wraps around would look small) */
    int64_t all = distq_dims_numel(info->ndim, info->dims);
    if (all < 0 || all > INT64_MAX / (int64_t)sizeof(float) || info->n < 1) {
        distq_dims_format(info->ndim, info->dims, shape, sizeof shape);
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has shape %s: %s", where, shape,
                             info->n < 1 ? "no images" : "too many elements to address");
        goto cleanup;
    }

    snprintf(where, sizeof where, "%s: dataset /labels", path);
    DISTQ_H5_CHECK(has = H5Lexists(*fid, "labels", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up /labels", path);
    if (has) {
        DISTQ_H5_CHECK(*labels = H5Dopen2(*fid, "labels", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                       "%s: /labels is not a dataset", path);
        DISTQ_H5_CHECK(type = H5Dget_type(*labels), DISTQ_ERR_FORMAT, "%s: cannot read its type",
                       where);
        if (H5Tget_class(type) != H5T_INTEGER) {
            distq_h5_type_text(type, tt, sizeof tt);
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has type %s, expected int64", where, tt);
            goto cleanup;
        }
        DISTQ_CHECK(distq_h5_dataset_shape(*labels, &lndim, ldims, where));
        if (lndim != 1 || ldims[0] != info->n) {
            distq_dims_format(lndim, ldims, shape, sizeof shape);
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: has shape %s, expected (%lld): one label per image", where,
                                 shape, (long long)info->n);
            goto cleanup;
        }
        info->has_labels = 1;
    }
cleanup:
    distq_h5_close(&type);
    return st;
}

distq_status distq_data_info_read(const char *path, distq_data_info *info)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, images = H5I_INVALID_HID, labels = H5I_INVALID_HID;
    if (!path || !info)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_data_info_read: NULL argument");
    DISTQ_CHECK(data_open(path, H5P_DEFAULT, &fid, &images, &labels, info));
cleanup:
    distq_h5_close(&labels);
    distq_h5_close(&images);
    distq_h5_close(&fid);
    return st;
}

/* Reads rows [start, start + count) of a rank-ndim dataset into buf as mtype. */
static distq_status read_rows(hid_t dset, hid_t mtype, int ndim, const int64_t *dims,
                              int64_t start, int64_t count, void *buf, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hsize_t off[DISTQ_MAX_DIMS] = {0}, cnt[DISTQ_MAX_DIMS];
    off[0] = (hsize_t)start;
    cnt[0] = (hsize_t)count;
    for (int i = 1; i < ndim; i++) cnt[i] = (hsize_t)dims[i];
    DISTQ_H5_CHECK(fspace = H5Dget_space(dset), DISTQ_ERR_FORMAT, "%s: H5Dget_space", where);
    DISTQ_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL),
                   DISTQ_ERR_FORMAT, "%s: cannot select rows [%lld, %lld)", where,
                   (long long)start, (long long)(start + count));
    DISTQ_H5_CHECK(mspace = H5Screate_simple(ndim, cnt, NULL), DISTQ_ERR_FORMAT,
                   "%s: H5Screate_simple", where);
    DISTQ_H5_CHECK(H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT, buf), DISTQ_ERR_IO,
                   "%s: cannot read rows [%lld, %lld)", where, (long long)start,
                   (long long)(start + count));
cleanup:
    distq_h5_close(&mspace);
    distq_h5_close(&fspace);
    return st;
}

struct distq_data_file {
    char path[DISTQ_PATH_MAX];
    hid_t fid, images, labels;
    distq_data_info info;
};

/* Rank 0's n int64 v into root, through the reducer's broadcast. */
static distq_status bcast_i64(const distq_reducer *red, const int64_t *v, int64_t *root, int n)
{
    memcpy(root, v, (size_t)n * sizeof *v);
    void *buf = root;
    size_t len = (size_t)n * sizeof *v;
    distq_status st = red->bcast_bytes(red->ctx, &buf, &len);
    if (st) return st;
    if (buf != root) { /* a copy arrived: this is not rank 0 */
        if (len == (size_t)n * sizeof *v) memcpy(root, buf, len);
        free(buf);
        if (len != (size_t)n * sizeof *v)
            return distq_error_set(DISTQ_ERR_MPI, "broadcast of %d values brought %zu bytes", n, len);
    }
    return DISTQ_OK;
}

/* Every rank names the same file, and each can read it, before the
 * collective open (a node-local path missing on one node, a dangling symlink,
 * an MPMD launch with different configs). HDF5's parallel open and close are
 * collective, so no rank may leave for its own error while the others wait
 * in them: red->agree gives every rank any rank's failure. */
static distq_status precheck_collective(const char *path, const distq_reducer *red)
{
    distq_status st = distq_h5_check_readable(path);
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the path */
    for (const char *c = path; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    int64_t mine = (int64_t)h, root = 0; /* rank 0's is the reference: only a rank that differs fails */
    distq_status bst = bcast_i64(red, &mine, &root, 1);
    if (bst) return distq_error_set(bst, "%s: broadcasting the path: %s", path, distq_error_message());
    if (!st && root != mine)
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "this rank reads %s, rank 0 a different file: every rank must "
                             "read the same data file", path);
    return red->agree(red->ctx, st);
}

/* After the open: every rank found the same shape (a node-local copy with
 * fewer images or another shape would shard the data wrongly). */
static distq_status agree_on_shape(const char *path, const distq_reducer *red, distq_status st,
                                   const distq_data_info *info)
{
    int64_t v[2 + DISTQ_MAX_DIMS] = {info->ndim, info->has_labels}, root[2 + DISTQ_MAX_DIMS];
    for (int i = 0; i < DISTQ_MAX_DIMS; i++) v[2 + i] = i < info->ndim ? info->dims[i] : 0;
    if (st) v[0] = -1; /* a failed rank 0 compares with nobody */
    distq_status saved = st;
    char saved_msg[1000];
    snprintf(saved_msg, sizeof saved_msg, "%s", distq_error_message());
    distq_status bst = bcast_i64(red, v, root, 2 + DISTQ_MAX_DIMS);
    if (bst) return distq_error_set(bst, "%s: broadcasting the shape: %s", path, distq_error_message());
    if (saved) st = distq_error_set(saved, "%s", saved_msg); /* the broadcast may have reset the message */
    if (!st && root[0] >= 0 && memcmp(root, v, sizeof v) != 0) {
        char shape[96], shape0[96];
        int64_t dims0[DISTQ_MAX_DIMS];
        for (int i = 0; i < DISTQ_MAX_DIMS; i++) dims0[i] = root[2 + i];
        distq_dims_format(info->ndim, info->dims, shape, sizeof shape);
        distq_dims_format((int)root[0], dims0, shape0, sizeof shape0);
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: this rank sees /images %s%s, rank 0 %s%s: every rank must "
                             "read the same file", path, shape, info->has_labels ? " with labels" : "", shape0,
                             root[1] ? " with labels" : "");
    }
    return red->agree(red->ctx, st);
}

distq_status distq_data_open(const char *path, MPI_Comm comm, const distq_reducer *red, distq_data_file **out)
{
    distq_status st = DISTQ_OK;
    hid_t fapl = H5I_INVALID_HID;
    distq_data_file *f = NULL;
    *out = NULL;
    if (!path) return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_data_open: NULL path");
    if (comm != MPI_COMM_NULL && (!red || !red->agree || !red->bcast_bytes))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_data_open: %s: a collective open needs a reducer", path);
    if (strlen(path) >= DISTQ_PATH_MAX)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "data path '%.60s...' is too long", path);
    f = distq_calloc(sizeof *f);
    if (!f) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory opening %s", path);
    strcpy(f->path, path);
    f->fid = f->images = f->labels = H5I_INVALID_HID;
    if (comm != MPI_COMM_NULL) {
        /* MPI-IO: one collective open, then each rank reads its own hyperslab
         * independently (no rank waits on another's read). */
        DISTQ_CHECK(precheck_collective(path, red));
        DISTQ_H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS), DISTQ_ERR_IO, "%s: H5Pcreate", path);
        DISTQ_H5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), DISTQ_ERR_IO,
                       "%s: H5Pset_fapl_mpio", path);
    }
    st = data_open(path, fapl == H5I_INVALID_HID ? H5P_DEFAULT : fapl, &f->fid, &f->images, &f->labels, &f->info);
    if (comm != MPI_COMM_NULL) st = agree_on_shape(path, red, st, &f->info);
    if (st) goto cleanup;
    *out = f;
    f = NULL;
cleanup:
    distq_h5_close(&fapl);
    distq_data_close(f);
    return st;
}

const distq_data_info *distq_data_file_info(const distq_data_file *f) { return &f->info; }

distq_status distq_data_file_read(distq_data_file *f, int64_t start, int64_t count, float *images,
                                  int64_t *labels)
{
    distq_status st = DISTQ_OK;
    char where[DISTQ_H5_WHERE_MAX];
    const distq_data_info *info = &f->info;
    int64_t ldims[1] = {info->n};
    if (start < 0 || count < 0 || start > info->n || count > info->n - start)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: rows [%lld, %lld) out of range: start %lld, count %lld, but "
                               "the file has N = %lld images",
                               f->path, (long long)start, (long long)start + count, (long long)start,
                               (long long)count, (long long)info->n);
    if (labels && !info->has_labels)
        return distq_error_set(DISTQ_ERR_FORMAT,
                               "%s: labels requested, but there is no /labels dataset", f->path);
    if (count == 0) return DISTQ_OK;
    if (!images) return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_data_read: NULL buffer");
    snprintf(where, sizeof where, "%s: dataset /images", f->path);
    DISTQ_CHECK(read_rows(f->images, H5T_NATIVE_FLOAT, info->ndim, info->dims, start, count, images,
                          where));
    if (labels) {
        snprintf(where, sizeof where, "%s: dataset /labels", f->path);
        DISTQ_CHECK(read_rows(f->labels, H5T_NATIVE_INT64, 1, ldims, start, count, labels, where));
    }
cleanup:
    return st;
}

void distq_data_close(distq_data_file *f)
{
    if (!f) return;
    distq_h5_close(&f->labels);
    distq_h5_close(&f->images);
    distq_h5_close(&f->fid);
    distq_free(f);
}

distq_status distq_data_read(const char *path, int64_t start, int64_t count, float *images,
                             int64_t *labels)
{
    distq_data_file *f = NULL;
    distq_status st = distq_data_open(path, MPI_COMM_NULL, NULL, &f);
    if (st == DISTQ_OK) st = distq_data_file_read(f, start, count, images, labels);
    distq_data_close(f);
    return st;
}

// --- output files -------------------------------------------------------------------

/* One (n, k) f32 dataset of an output file, with its provenance. */
static distq_status write_output_dataset(hid_t fid, const char *path, const char *dset_name, const char *value_name,
                                         const float *v, int64_t n, int64_t k, const char *model_path,
                                         const char *data_path)
{
    distq_status st = DISTQ_OK;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    hsize_t hd[2] = {(hsize_t)n, (hsize_t)k};
    snprintf(where, sizeof where, "%s: /%s", path, dset_name);
    DISTQ_H5_CHECK(space = H5Screate_simple(2, hd, NULL), DISTQ_ERR_IO, "%s: H5Screate_simple", where);
    DISTQ_H5_CHECK(dset = H5Dcreate2(fid, dset_name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create dataset", where);
    DISTQ_H5_CHECK(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), DISTQ_ERR_IO,
                   "%s: cannot write", where);
    DISTQ_CHECK(distq_h5_attr_write_str(dset, "output", value_name, where));
    DISTQ_CHECK(distq_h5_attr_write_str(dset, "model", model_path ? model_path : "", where));
    DISTQ_CHECK(distq_h5_attr_write_str(dset, "data", data_path ? data_path : "", where));
cleanup:
    distq_h5_close(&dset);
    distq_h5_close(&space);
    return st;
}

distq_status distq_output_write(const char *path, int n_outputs, const char *const *names,
                                const float *const *values, const int64_t *k, int64_t n, const char *model_path,
                                const char *data_path)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "";
    if (!path || !names || !values || !k || n_outputs < 1)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_output_write: NULL argument or no output");
    for (int o = 0; o < n_outputs; o++)
        if (n < 1 || k[o] < 1)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: bad shape (%lld, %lld) of output '%s'", path,
                                   (long long)n, (long long)k[o], names[o]);
    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_OUTPUT_FORMAT, DISTQ_OUTPUT_VERSION, tmp, &fid));
    for (int o = 0; o < n_outputs; o++) {
        char dset_name[32];
        if (o == 0) snprintf(dset_name, sizeof dset_name, "logits");
        else snprintf(dset_name, sizeof dset_name, "output_%d", o);
        DISTQ_CHECK(write_output_dataset(fid, path, dset_name, names[o], values[o], n, k[o], model_path, data_path));
    }
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

distq_status distq_data_check_input(const char *data_path, const distq_data_info *info, const distq_value *input,
                                    const char *model_path)
{
    int same = info->ndim == input->ndim;
    for (int i = 1; same && i < info->ndim; i++) same = info->dims[i] == input->dims[i];
    if (same) return DISTQ_OK;
    char got[96], want[96];
    distq_dims_format(info->ndim - 1, info->dims + 1, got, sizeof got);
    distq_dims_format(input->ndim - 1, input->dims + 1, want, sizeof want);
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: dataset /images holds images of shape %s; model %s takes %s",
                           data_path, got, model_path, want);
}
