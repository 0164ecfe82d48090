/*
 * IDX files (MNIST, Fashion-MNIST) and their conversion to distq data files.
 *
 *     IDX:  u32 magic (big-endian): 0x0000 | type 0x08 (u8) | ndim
 *           ndim x u32 dims (big-endian), then the items, row-major u8
 *     labels 0x00000801 (N), images 0x00000803 (N, rows, cols)
 *
 * Files are read through zlib's gz* functions, which read gzip and plain
 * files alike. Only the u8 type and the two magics above are accepted; other
 * IDX element types (s8, s16, s32, f32, f64) are not needed for the datasets
 * we use and are rejected as a bad magic. The conversion normalises with the
 * statistics of a training set (README of Fashion-MNIST gives none; we
 * compute them), stores those in the data file and writes it atomically with
 * the shared HDF5 helpers. Nothing here prints.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "distq/io.h"
#include "io/h5_util_impl.h"

// --- reading --------------------------------------------------------------------------

/* Largest body accepted: 16 GiB, far above any IDX dataset, so a corrupt
 * header fails here rather than in malloc. */
#define IDX_MAX_BYTES ((int64_t)1 << 34)

static const char *idx_kind(uint32_t magic)
{
    return magic == DISTQ_IDX_MAGIC_IMAGES   ? "u8 images, N x rows x cols"
           : magic == DISTQ_IDX_MAGIC_LABELS ? "u8 labels, N"
                                             : "unsupported";
}

/* Reads up to len bytes; *got = bytes read (short only at the end of the
 * data). A gzip or read error other than "unexpected end of file" (a cut
 * gzip stream, reported by the caller as truncation) fails. */
static distq_status gz_read_upto(gzFile f, const char *path, void *buf, int64_t len, int64_t *got,
                                 int *cut)
{
    unsigned char *p = buf;
    int errnum = Z_OK;
    *got = 0;
    *cut = 0;
    while (*got < len) {
        int64_t left = len - *got;
        unsigned chunk = left > (1 << 30) ? 1u << 30 : (unsigned)left;
        int r = gzread(f, p + *got, chunk);
        if (r < 0) {
            const char *text = gzerror(f, &errnum);
            size_t lp = strlen(path); /* zlib prefixes its text with "<path>: " */
            if (strncmp(text, path, lp) == 0 && strncmp(text + lp, ": ", 2) == 0) text += lp + 2;
            if (errnum == Z_ERRNO)
                return distq_error_set(DISTQ_ERR_IO, "%s: read error: %s", path, strerror(errno));
            return distq_error_set(DISTQ_ERR_FORMAT, "%s: corrupt gzip data (zlib: %s)", path,
                                   text);
        }
        if (r == 0) break;
        *got += r;
    }
    if (*got < len) {
        gzerror(f, &errnum);
        *cut = errnum == Z_BUF_ERROR;
    }
    return DISTQ_OK;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

distq_status distq_idx_read(const char *path, uint32_t magic, int64_t max_n, distq_idx *out)
{
    distq_status st = DISTQ_OK;
    gzFile f = NULL;
    unsigned char hdr[16];
    int64_t got = 0, want, per = 1, count;
    int cut = 0;
    if (!out) return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_idx_read: NULL out");
    memset(out, 0, sizeof *out);
    if (!path) return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_idx_read: NULL path");
    if (magic != DISTQ_IDX_MAGIC_IMAGES && magic != DISTQ_IDX_MAGIC_LABELS)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "%s: distq_idx_read: magic 0x%08x is not supported (0x%08x images, "
                               "0x%08x labels)",
                               path, (unsigned)magic, (unsigned)DISTQ_IDX_MAGIC_IMAGES,
                               (unsigned)DISTQ_IDX_MAGIC_LABELS);
    errno = 0;
    f = gzopen(path, "rb");
    if (!f)
        return distq_error_set(DISTQ_ERR_IO, "%s: cannot open: %s", path,
                               errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);

    /* Header: magic, then ndim = magic & 0xff dims. */
    DISTQ_CHECK(gz_read_upto(f, path, hdr, 4, &got, &cut));
    if (got < 4) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: truncated: the file ends after %lld bytes, inside the 4-byte "
                             "IDX magic",
                             path, (long long)got);
        goto cleanup;
    }
    uint32_t m = be32(hdr);
    if (m != magic) {
        const char *hint = m == DISTQ_IDX_MAGIC_IMAGES   ? " (this is an IDX image file)"
                           : m == DISTQ_IDX_MAGIC_LABELS ? " (this is an IDX label file)"
                                                         : " (not an IDX u8 file)";
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s)%s",
                             path, (unsigned)m, (unsigned)magic, idx_kind(magic), hint);
        goto cleanup;
    }
    out->magic = m;
    out->ndim = (int)(m & 0xff);
    want = 4 * (int64_t)out->ndim;
    DISTQ_CHECK(gz_read_upto(f, path, hdr + 4, want, &got, &cut));
    if (got < want) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: truncated: the file ends after %lld bytes, inside the %lld-byte "
                             "IDX header",
                             path, (long long)(4 + got), (long long)(4 + want));
        goto cleanup;
    }
    for (int i = 0; i < out->ndim; i++) out->dims[i] = be32(hdr + 4 + 4 * i);
    for (int i = 1; i < out->ndim; i++) {
        if (out->dims[i] < 1 || out->dims[i] > 65536) {
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: header dimension %d is %lld (1 to 65536)",
                                 path, i, (long long)out->dims[i]);
            goto cleanup;
        }
        per *= out->dims[i];
    }
    out->n_declared = out->dims[0];
    if (out->n_declared * per > IDX_MAX_BYTES) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: header declares %lld items of %lld bytes, more than %lld bytes",
                             path, (long long)out->n_declared, (long long)per,
                             (long long)IDX_MAX_BYTES);
        goto cleanup;
    }
    if (max_n > out->n_declared) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: holds %lld items, %lld were requested", path,
                             (long long)out->n_declared, (long long)max_n);
        goto cleanup;
    }
    count = max_n > 0 ? max_n : out->n_declared;
    out->dims[0] = count;

    /* Body. */
    out->data = distq_malloc((size_t)(count * per > 0 ? count * per : 1));
    if (!out->data) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory for %lld bytes", path,
                             (long long)(count * per));
        goto cleanup;
    }
    DISTQ_CHECK(gz_read_upto(f, path, out->data, count * per, &got, &cut));
    if (got < count * per) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: truncated: the header declares %lld items of %lld bytes, but the "
                             "data ends after %lld items (%lld of %lld bytes)%s",
                             path, (long long)out->n_declared, (long long)per,
                             (long long)(got / per), (long long)got, (long long)(count * per),
                             cut ? "; the gzip stream is cut short" : "");
        goto cleanup;
    }
    if (count == out->n_declared) {
        unsigned char extra;
        DISTQ_CHECK(gz_read_upto(f, path, &extra, 1, &got, &cut));
        if (got > 0) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: count mismatch: the header declares %lld items, but more "
                                 "data follows them",
                                 path, (long long)out->n_declared);
            goto cleanup;
        }
    }
cleanup:
    if (f) gzclose_r(f);
    if (st != DISTQ_OK) distq_idx_free(out);
    return st;
}

void distq_idx_free(distq_idx *x)
{
    if (!x) return;
    distq_free(x->data);
    memset(x, 0, sizeof *x);
}

void distq_idx_pixel_stats(const distq_idx *x, double *mean, double *std)
{
    int64_t hist[256] = {0}, n = 1;
    for (int i = 0; i < x->ndim; i++) n *= x->dims[i];
    for (int64_t i = 0; i < n; i++) hist[x->data[i]]++;
    double s = 0, ss = 0;
    for (int v = 0; v < 256; v++) s += (double)hist[v] * (v / 255.0);
    double m = n > 0 ? s / (double)n : 0;
    for (int v = 0; v < 256; v++) ss += (double)hist[v] * (v / 255.0 - m) * (v / 255.0 - m);
    *mean = m;
    *std = n > 0 ? sqrt(ss / (double)n) : 0;
}

// --- conversion -----------------------------------------------------------------------

static distq_status write_data(const char *path, const float *images, const int64_t *dims,
                               const int64_t *labels, float mean, float std,
                               const char *images_path, const char *labels_path,
                               const char *norm_path, int64_t n_source)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "", where[DISTQ_H5_WHERE_MAX];
    DISTQ_CHECK(distq_h5_create_tmp(path, DISTQ_DATA_FORMAT, DISTQ_DATA_VERSION, tmp, &fid));
    snprintf(where, sizeof where, "%s: /", path);
    DISTQ_CHECK(distq_h5_attr_write_f32(fid, "mean", mean, where));
    DISTQ_CHECK(distq_h5_attr_write_f32(fid, "std", std, where));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "normalization", "(pixel / 255 - mean) / std", where));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "normalize_from", norm_path, where));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "source_images", images_path, where));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "source_labels", labels_path ? labels_path : "",
                                        where));
    DISTQ_CHECK(distq_h5_attr_write_i64(fid, "source_count", 0, &n_source, where));

    snprintf(where, sizeof where, "%s: /images", path);
    DISTQ_CHECK(distq_h5_write_array(fid, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims,
                                     images, where));
    DISTQ_H5_CHECK(dset = H5Dopen2(fid, "images", H5P_DEFAULT), DISTQ_ERR_IO, "%s: cannot reopen",
                   where);
    DISTQ_CHECK(distq_h5_attr_write_str(dset, "layout", "NCHW", where));
    distq_h5_close(&dset);
    if (labels) {
        snprintf(where, sizeof where, "%s: /labels", path);
        DISTQ_CHECK(distq_h5_write_array(fid, "labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dims,
                                         labels, where));
    }
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    distq_h5_close(&dset);
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

distq_status distq_data_from_idx(const char *out_path, const char *images_path,
                                 const char *labels_path, const char *normalize_from,
                                 int64_t max_n, int64_t *n_out, float *mean_out, float *std_out)
{
    distq_status st = DISTQ_OK;
    distq_idx img = {0}, lab = {0}, train = {0};
    float *x = NULL;
    int64_t *y = NULL;
    double mean = 0, std = 0;
    if (!out_path || !images_path)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_data_from_idx: NULL path");
    if (!normalize_from) normalize_from = images_path;

    DISTQ_CHECK(distq_idx_read(images_path, DISTQ_IDX_MAGIC_IMAGES, max_n, &img));
    if (img.dims[0] == 0) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: holds no images", images_path);
        goto cleanup;
    }
    if (labels_path) {
        DISTQ_CHECK(distq_idx_read(labels_path, DISTQ_IDX_MAGIC_LABELS, max_n, &lab));
        if (lab.n_declared != img.n_declared) {
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "count mismatch: %s declares %lld images, but %s declares %lld "
                                 "labels",
                                 images_path, (long long)img.n_declared, labels_path,
                                 (long long)lab.n_declared);
            goto cleanup;
        }
    }

    /* Statistics over every image of the training file, whatever max_n is. */
    const distq_idx *src = &img;
    if (strcmp(normalize_from, images_path) != 0 || img.dims[0] != img.n_declared) {
        DISTQ_CHECK(distq_idx_read(normalize_from, DISTQ_IDX_MAGIC_IMAGES, 0, &train));
        if (train.dims[1] != img.dims[1] || train.dims[2] != img.dims[2]) {
            st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                                 "%s has %lldx%lld images, but %s (normalisation source) has "
                                 "%lldx%lld",
                                 images_path, (long long)img.dims[1], (long long)img.dims[2],
                                 normalize_from, (long long)train.dims[1],
                                 (long long)train.dims[2]);
            goto cleanup;
        }
        src = &train;
    }
    distq_idx_pixel_stats(src, &mean, &std);
    if (!(std > 0)) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                             "%s: every pixel is the same, so its standard deviation is 0 and "
                             "cannot normalise",
                             normalize_from);
        goto cleanup;
    }
    distq_idx_free(&train);

    /* The f32 values stored are the ones applied, through one table. */
    float m = (float)mean, s = (float)std, lut[256];
    for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - m) / s;
    int64_t n = img.dims[0], per = img.dims[1] * img.dims[2];
    int64_t dims[4] = {n, 1, img.dims[1], img.dims[2]};
    x = distq_malloc((size_t)(n * per) * sizeof *x);
    y = labels_path ? distq_malloc((size_t)n * sizeof *y) : NULL;
    if (!x || (labels_path && !y)) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory for %lld images", out_path,
                             (long long)n);
        goto cleanup;
    }
    for (int64_t i = 0; i < n * per; i++) x[i] = lut[img.data[i]];
    for (int64_t i = 0; y && i < n; i++) y[i] = lab.data[i];
    DISTQ_CHECK(write_data(out_path, x, dims, y, m, s, images_path, labels_path, normalize_from,
                           img.n_declared));
    if (n_out) *n_out = n;
    if (mean_out) *mean_out = m;
    if (std_out) *std_out = s;
cleanup:
    distq_idx_free(&img);
    distq_idx_free(&lab);
    distq_idx_free(&train);
    distq_free(x);
    distq_free(y);
    return st;
}
