/*
 * HDF5 plumbing shared by the model, data and output files: quiet error
 * capture, open/create-temp/commit, root format checks, typed attributes and
 * the dtype <-> HDF5 type map (see h5_util_impl.h).
 *
 * It knows nothing about graphs or datasets; the layouts live in model_io.c
 * and data_io.c and are documented in docs/file-formats.md.
 */
#include "io/h5_util_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "distq/tensor.h"

// --- errors -----------------------------------------------------------------

void distq_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char *buf;
    size_t len;
} err_walk_ctx;

/* Walked upward, entry 0 is the innermost error: the most specific text
 * ("truncated file: eof = ...", "unable to open file: ... errno = 2"). */
static herr_t err_walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    err_walk_ctx *ctx = data;
    if (n != 0) return 0;
    if (e->desc && e->desc[0]) {
        snprintf(ctx->buf, ctx->len, "%s", e->desc);
    } else {
        char minor[256];
        if (H5Eget_msg(e->min_num, NULL, minor, sizeof minor) > 0)
            snprintf(ctx->buf, ctx->len, "%s", minor);
    }
    return 1; /* stop: one line is enough */
}

void distq_h5_error_text(char *buf, size_t len)
{
    err_walk_ctx ctx = {buf, len};
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, err_walk_cb, &ctx);
}

distq_status distq_h5_fail(distq_status st, const char *src, int line, const char *fmt, ...)
{
    char msg[768], h5[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    distq_h5_error_text(h5, sizeof h5);
    const char *base = strrchr(src, '/');
    base = base ? base + 1 : src;
    if (h5[0]) return distq_error_set(st, "%s (HDF5: %s) [%s:%d]", msg, h5, base, line);
    return distq_error_set(st, "%s [%s:%d]", msg, base, line);
}

void distq_h5_close(hid_t *id)
{
    if (*id < 0) return;
    H5E_BEGIN_TRY
    {
        switch (H5Iget_type(*id)) {
        case H5I_FILE: H5Fclose(*id); break;
        case H5I_GROUP: H5Gclose(*id); break;
        case H5I_DATASET: H5Dclose(*id); break;
        case H5I_ATTR: H5Aclose(*id); break;
        case H5I_DATASPACE: H5Sclose(*id); break;
        case H5I_DATATYPE: H5Tclose(*id); break;
        case H5I_GENPROP_LST: H5Pclose(*id); break;
        default: break;
        }
    }
    H5E_END_TRY;
    *id = H5I_INVALID_HID;
}

// --- files ------------------------------------------------------------------

distq_status distq_h5_check_readable(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return distq_error_set(DISTQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return distq_error_set(DISTQ_ERR_IO, "%s: is a directory, not a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return distq_error_set(DISTQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    return DISTQ_OK;
}

distq_status distq_h5_open_read(const char *path, hid_t fapl, hid_t *out)
{
    distq_status st = DISTQ_OK;
    *out = H5I_INVALID_HID;
    distq_h5_quiet();
    DISTQ_CHECK(distq_h5_check_readable(path));
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    DISTQ_H5_CHECK(fid, DISTQ_ERR_FORMAT, "%s: not an HDF5 file or truncated", path);
    *out = fid;
cleanup:
    return st;
}

distq_status distq_h5_create_tmp(const char *path, const char *format, int64_t version,
                                 char *tmp, hid_t *out)
{
    return distq_h5_create_tmp_fcpl(path, format, version, H5P_DEFAULT, tmp, out);
}

distq_status distq_h5_create_tmp_fcpl(const char *path, const char *format, int64_t version, hid_t fcpl,
                                      char *tmp, hid_t *out)
{
    distq_status st = DISTQ_OK;
    hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID;
    *out = H5I_INVALID_HID;
    tmp[0] = '\0';
    distq_h5_quiet();
    char host[64] = "host";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    int len = snprintf(tmp, DISTQ_H5_WHERE_MAX, "%s.tmp.%s.%ld", path, host, (long)getpid());
    if (len < 0 || len >= DISTQ_H5_WHERE_MAX) {
        tmp[0] = '\0';
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: path too long", path);
    }
    DISTQ_H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS), DISTQ_ERR_IO, "%s: H5Pcreate", path);
    /* v1.8 object formats: readable by any HDF5 >= 1.8 (h5py, h5dump), and
     * large attributes (node_order of big graphs) go to dense storage. */
    DISTQ_H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), DISTQ_ERR_IO,
                   "%s: H5Pset_libver_bounds", path);
    /* Closing the file closes anything left open on the error path. */
    DISTQ_H5_CHECK(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), DISTQ_ERR_IO,
                   "%s: H5Pset_fclose_degree", path);
    /* in memory; commit writes it (h5_image.c) */
    DISTQ_CHECK(distq_h5_image_fapl(fapl, path));
    fid = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    distq_h5_image_bind(fid);
    DISTQ_H5_CHECK(fid, DISTQ_ERR_IO, "%s: cannot create the in-memory file for %s", path, tmp);
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "format", format, tmp));
    DISTQ_CHECK(distq_h5_attr_write_i64(fid, "version", 0, &version, tmp));
    *out = fid;
    fid = H5I_INVALID_HID;
cleanup:
    distq_h5_close(&fapl);
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    return st;
}

distq_status distq_h5_commit(hid_t *fid, const char *tmp, const char *path)
{
    distq_status st = distq_h5_image_close_write(fid, tmp, path);
    if (st) goto cleanup;
    if (rename(tmp, path) != 0) {
        st = distq_error_set(DISTQ_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp,
                             strerror(errno));
        goto cleanup;
    }
    distq_h5_image_written();
    return DISTQ_OK;
cleanup:
    remove(tmp);
    distq_h5_image_written();
    return st;
}

void distq_h5_discard(hid_t *fid, const char *tmp)
{
    distq_h5_image_close_drop(fid);
    if (tmp[0]) remove(tmp);
}

distq_status distq_h5_check_format(hid_t fid, const char *path, const char *want,
                                   int64_t want_version)
{
    return distq_h5_check_format_since(fid, path, want, want_version, want_version);
}

distq_status distq_h5_check_format_since(hid_t fid, const char *path, const char *want,
                                         int64_t oldest, int64_t want_version)
{
    distq_status st = DISTQ_OK;
    char format[DISTQ_NAME_MAX];
    int64_t version = 0;
    htri_t has;
    DISTQ_H5_CHECK(has = distq_h5_attr_exists(fid, "format"), DISTQ_ERR_FORMAT,
                   "%s: cannot read root attributes", path);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT,
                             "%s: no root attribute 'format': not a distq file "
                             "(expected a %s file)",
                             path, want);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_str(fid, "format", format, sizeof format, path));
    if (strcmp(format, want) != 0) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: format is '%s', expected '%s'", path, format,
                             want);
        goto cleanup;
    }
    DISTQ_H5_CHECK(has = distq_h5_attr_exists(fid, "version"), DISTQ_ERR_FORMAT,
                   "%s: cannot read root attributes", path);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: %s file has no root attribute 'version'",
                             path, want);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_attr_read_i64(fid, "version", 1, 1, &version, NULL, path));
    if (version < oldest || version > want_version) {
        if (oldest == want_version)
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: %s version %lld is not supported (this build reads version %lld)",
                                 path, want, (long long)version, (long long)want_version);
        else
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: %s version %lld is not supported (this build reads versions "
                                 "%lld to %lld)",
                                 path, want, (long long)version, (long long)oldest,
                                 (long long)want_version);
        goto cleanup;
    }
cleanup:
    return st;
}

distq_status distq_h5_read_format(hid_t fid, const char *path, char *format, size_t len)
{
    distq_status st = DISTQ_OK;
    htri_t has;
    format[0] = '\0';
    DISTQ_H5_CHECK(has = distq_h5_attr_exists(fid, "format"), DISTQ_ERR_FORMAT,
                   "%s: cannot read root attributes", path);
    if (has) DISTQ_CHECK(distq_h5_attr_read_str(fid, "format", format, len, path));
cleanup:
    return st;
}

// --- attributes ---------------------------------------------------------------

htri_t distq_h5_attr_exists(hid_t loc, const char *name) { return H5Aexists(loc, name); }

/* Variable-length UTF-8 string type; the caller closes it. */
static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        distq_h5_close(&t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* Creates attribute name of type/space on loc and writes buf. */
static distq_status attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                               hid_t space, const void *buf, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID;
    DISTQ_H5_CHECK(attr = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create attribute '%s'", where, name);
    DISTQ_H5_CHECK(H5Awrite(attr, mtype, buf), DISTQ_ERR_IO, "%s: cannot write attribute '%s'",
                   where, name);
cleanup:
    distq_h5_close(&attr);
    return st;
}

distq_status distq_h5_attr_write_str(hid_t loc, const char *name, const char *value,
                                     const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    const char *v = value ? value : "";
    DISTQ_H5_CHECK(type = vlen_str_type(), DISTQ_ERR_IO, "%s: string type", where);
    DISTQ_H5_CHECK(space = H5Screate(H5S_SCALAR), DISTQ_ERR_IO, "%s: H5Screate", where);
    DISTQ_CHECK(attr_write(loc, name, type, type, space, &v, where));
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    return st;
}

distq_status distq_h5_attr_write_strs(hid_t loc, const char *name, int n,
                                      const char *const *values, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    const char **v = distq_malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v)
        return distq_error_set(DISTQ_ERR_NOMEM, "%s: attribute '%s': out of memory", where, name);
    for (int i = 0; i < n; i++) v[i] = values[i] ? values[i] : "";
    hsize_t dims[1] = {(hsize_t)n};
    DISTQ_H5_CHECK(type = vlen_str_type(), DISTQ_ERR_IO, "%s: string type", where);
    DISTQ_H5_CHECK(space = H5Screate_simple(1, dims, NULL), DISTQ_ERR_IO, "%s: H5Screate_simple",
                   where);
    DISTQ_CHECK(attr_write(loc, name, type, type, space, v, where));
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    distq_free(v);
    return st;
}

distq_status distq_h5_attr_write_i64(hid_t loc, const char *name, int n, const int64_t *v,
                                     const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t space = H5I_INVALID_HID;
    hsize_t dims[1] = {(hsize_t)n};
    DISTQ_H5_CHECK(space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL),
                   DISTQ_ERR_IO, "%s: dataspace for attribute '%s'", where, name);
    DISTQ_CHECK(attr_write(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space, v, where));
cleanup:
    distq_h5_close(&space);
    return st;
}

distq_status distq_h5_attr_write_f32(hid_t loc, const char *name, float v, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t space = H5I_INVALID_HID;
    DISTQ_H5_CHECK(space = H5Screate(H5S_SCALAR), DISTQ_ERR_IO, "%s: H5Screate", where);
    DISTQ_CHECK(attr_write(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, &v, where));
cleanup:
    distq_h5_close(&space);
    return st;
}

distq_status distq_h5_attr_write_f32s(hid_t loc, const char *name, int n, const float *v,
                                      const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t space = H5I_INVALID_HID;
    hsize_t dims[1] = {(hsize_t)n};
    DISTQ_H5_CHECK(space = H5Screate_simple(1, dims, NULL), DISTQ_ERR_IO,
                   "%s: dataspace for attribute '%s'", where, name);
    DISTQ_CHECK(attr_write(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, v, where));
cleanup:
    distq_h5_close(&space);
    return st;
}

/* Opens attribute name on loc and checks its class and value count.
 * *attr, *type and *space are returned open; *n gets the count. */
static distq_status attr_open(hid_t loc, const char *name, H5T_class_t want_class,
                              const char *want_text, int min_n, int max_n, hid_t *attr,
                              hid_t *type, hid_t *space, int *n, const char *where)
{
    distq_status st = DISTQ_OK;
    htri_t has;
    hssize_t npoints;
    char tt[64];
    DISTQ_H5_CHECK(has = H5Aexists(loc, name), DISTQ_ERR_FORMAT,
                   "%s: cannot look up attribute '%s'", where, name);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing attribute '%s'", where, name);
        goto cleanup;
    }
    DISTQ_H5_CHECK(*attr = H5Aopen(loc, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot open attribute '%s'", where, name);
    DISTQ_H5_CHECK(*type = H5Aget_type(*attr), DISTQ_ERR_FORMAT,
                   "%s: cannot read the type of attribute '%s'", where, name);
    DISTQ_H5_CHECK(*space = H5Aget_space(*attr), DISTQ_ERR_FORMAT,
                   "%s: cannot read the shape of attribute '%s'", where, name);
    if (H5Tget_class(*type) != want_class) {
        distq_h5_type_text(*type, tt, sizeof tt);
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: attribute '%s' is %s, expected %s", where,
                             name, tt, want_text);
        goto cleanup;
    }
    DISTQ_H5_CHECK(npoints = H5Sget_simple_extent_npoints(*space), DISTQ_ERR_FORMAT,
                   "%s: cannot read the shape of attribute '%s'", where, name);
    if (npoints < min_n || npoints > max_n) {
        if (min_n == max_n)
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: attribute '%s' has %lld values, expected %d", where, name,
                                 (long long)npoints, min_n);
        else
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: attribute '%s' has %lld values, expected %d to %d", where,
                                 name, (long long)npoints, min_n, max_n);
        goto cleanup;
    }
    *n = (int)npoints;
cleanup:
    return st;
}

/* Reads the n strings of attr (variable or fixed length) into one block:
 * *out = n pointers followed by the characters they point to; one
 * distq_free releases it. Strings are of any length. */
static distq_status attr_read_list(hid_t attr, hid_t ftype, hid_t space, int n, char ***out,
                                   const char *name, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t mtype = H5I_INVALID_HID;
    char **vs = NULL; /* variable-length: one pointer per value */
    char *fixed = NULL, **list = NULL;
    size_t size = 0, total = 0, *lens = NULL;
    htri_t is_var;
    int read_done = 0;
    H5T_cset_t cset;
    *out = NULL;
    DISTQ_H5_CHECK(is_var = H5Tis_variable_str(ftype), DISTQ_ERR_FORMAT,
                   "%s: attribute '%s': string type", where, name);
    DISTQ_H5_CHECK(cset = H5Tget_cset(ftype), DISTQ_ERR_FORMAT,
                   "%s: attribute '%s': string type", where, name);
    lens = distq_calloc((size_t)(n > 0 ? n : 1) * sizeof *lens);
    if (!lens) goto nomem;
    if (is_var) {
        if (!(vs = distq_calloc((size_t)(n > 0 ? n : 1) * sizeof *vs))) goto nomem;
        DISTQ_H5_CHECK(mtype = H5Tcopy(H5T_C_S1), DISTQ_ERR_FORMAT, "%s: H5Tcopy", where);
        DISTQ_H5_CHECK(H5Tset_size(mtype, H5T_VARIABLE), DISTQ_ERR_FORMAT, "%s: H5Tset_size",
                       where);
        DISTQ_H5_CHECK(H5Tset_cset(mtype, cset), DISTQ_ERR_FORMAT, "%s: H5Tset_cset", where);
        DISTQ_H5_CHECK(H5Aread(attr, mtype, vs), DISTQ_ERR_FORMAT,
                       "%s: cannot read attribute '%s'", where, name);
        read_done = 1;
        for (int i = 0; i < n; i++) lens[i] = vs[i] ? strlen(vs[i]) : 0;
    } else {
        size = H5Tget_size(ftype);
        if (size == 0) {
            st = distq_h5_fail(DISTQ_ERR_FORMAT, __FILE__, __LINE__,
                               "%s: attribute '%s': string size", where, name);
            goto cleanup;
        }
        if (!(fixed = distq_malloc(size * (size_t)(n > 0 ? n : 1)))) goto nomem;
        DISTQ_H5_CHECK(mtype = H5Tcopy(ftype), DISTQ_ERR_FORMAT, "%s: H5Tcopy", where);
        DISTQ_H5_CHECK(H5Aread(attr, mtype, fixed), DISTQ_ERR_FORMAT,
                       "%s: cannot read attribute '%s'", where, name);
        H5T_str_t pad = H5Tget_strpad(ftype);
        for (int i = 0; i < n; i++) {
            const char *f = fixed + (size_t)i * size;
            size_t len = 0;
            while (len < size && f[len]) len++;
            if (pad == H5T_STR_SPACEPAD)
                while (len > 0 && f[len - 1] == ' ') len--;
            lens[i] = len;
        }
    }
    for (int i = 0; i < n; i++) total += lens[i] + 1;
    if (!(list = distq_malloc((size_t)(n > 0 ? n : 1) * sizeof *list + total))) goto nomem;
    char *chars = (char *)(list + (n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        const char *src = is_var ? (vs[i] ? vs[i] : "") : fixed + (size_t)i * size;
        memcpy(chars, src, lens[i]);
        chars[lens[i]] = '\0';
        list[i] = chars;
        chars += lens[i] + 1;
    }
    *out = list;
    list = NULL;
    goto cleanup;
nomem:
    st = distq_error_set(DISTQ_ERR_NOMEM, "%s: attribute '%s': out of memory", where, name);
cleanup:
    if (read_done) {
        H5E_BEGIN_TRY { H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, vs); }
        H5E_END_TRY;
    }
    distq_h5_close(&mtype);
    distq_free(vs);
    distq_free(fixed);
    distq_free(lens);
    distq_free(list);
    return st;
}

/* Reads n strings into dst + i * stride, each of capacity cap bytes
 * including the terminator (a longer one is DISTQ_ERR_FORMAT). */
static distq_status attr_read_strings(hid_t attr, hid_t ftype, hid_t space, int n, char *dst,
                                      size_t stride, size_t cap, const char *name,
                                      const char *where)
{
    char **list = NULL;
    distq_status st = attr_read_list(attr, ftype, space, n, &list, name, where);
    for (int i = 0; st == DISTQ_OK && i < n; i++) {
        size_t len = strlen(list[i]);
        if (len >= cap)
            st = distq_error_set(DISTQ_ERR_FORMAT,
                                 "%s: attribute '%s' value %d is too long (%zu bytes, at most %zu)",
                                 where, name, i, len, cap - 1);
        else
            memcpy(dst + (size_t)i * stride, list[i], len + 1);
    }
    distq_free(list);
    return st;
}

distq_status distq_h5_attr_read_str(hid_t loc, const char *name, char *buf, size_t len,
                                    const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int n = 0;
    DISTQ_CHECK(attr_open(loc, name, H5T_STRING, "a string", 1, 1, &attr, &type, &space, &n,
                          where));
    DISTQ_CHECK(attr_read_strings(attr, type, space, 1, buf, len, len, name, where));
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    distq_h5_close(&attr);
    return st;
}

distq_status distq_h5_attr_read_strs(hid_t loc, const char *name, int min_n, int max_n,
                                     char (*names)[DISTQ_NAME_MAX], int *n, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    *n = 0;
    DISTQ_CHECK(attr_open(loc, name, H5T_STRING, "an array of strings", min_n, max_n, &attr,
                          &type, &space, n, where));
    DISTQ_CHECK(attr_read_strings(attr, type, space, *n, names[0], DISTQ_NAME_MAX,
                                  DISTQ_NAME_MAX, name, where));
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    distq_h5_close(&attr);
    return st;
}

distq_status distq_h5_attr_read_strlist(hid_t loc, const char *name, int min_n, int max_n,
                                        char ***list, int *n, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    *n = 0;
    *list = NULL;
    DISTQ_CHECK(attr_open(loc, name, H5T_STRING, min_n == 1 && max_n == 1 ? "a string" : "an array of strings",
                          min_n, max_n, &attr, &type, &space, n, where));
    DISTQ_CHECK(attr_read_list(attr, type, space, *n, list, name, where));
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    distq_h5_close(&attr);
    return st;
}

distq_status distq_h5_attr_read_i64(hid_t loc, const char *name, int min_n, int max_n,
                                    int64_t *v, int *n, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int count = 0;
    DISTQ_CHECK(attr_open(loc, name, H5T_INTEGER, "an integer", min_n, max_n, &attr, &type,
                          &space, &count, where));
    DISTQ_H5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, v), DISTQ_ERR_FORMAT,
                   "%s: cannot read attribute '%s'", where, name);
    if (n) *n = count;
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    distq_h5_close(&attr);
    return st;
}

distq_status distq_h5_attr_read_f32(hid_t loc, const char *name, float *v, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int count = 0;
    DISTQ_CHECK(attr_open(loc, name, H5T_FLOAT, "a float", 1, 1, &attr, &type, &space, &count,
                          where));
    DISTQ_H5_CHECK(H5Aread(attr, H5T_NATIVE_FLOAT, v), DISTQ_ERR_FORMAT,
                   "%s: cannot read attribute '%s'", where, name);
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&type);
    distq_h5_close(&attr);
    return st;
}

// --- datatypes ----------------------------------------------------------------

hid_t distq_h5_file_type(distq_dtype dt)
{
    switch (dt) {
    case DISTQ_DTYPE_F32: return H5T_IEEE_F32LE;
    case DISTQ_DTYPE_U8: return H5T_STD_U8LE;
    case DISTQ_DTYPE_S8: return H5T_STD_I8LE;
    case DISTQ_DTYPE_S32: return H5T_STD_I32LE;
    case DISTQ_DTYPE_S64: return H5T_STD_I64LE;
    default: return H5I_INVALID_HID;
    }
}

hid_t distq_h5_mem_type(distq_dtype dt)
{
    switch (dt) {
    case DISTQ_DTYPE_F32: return H5T_NATIVE_FLOAT;
    case DISTQ_DTYPE_U8: return H5T_NATIVE_UINT8;
    case DISTQ_DTYPE_S8: return H5T_NATIVE_INT8;
    case DISTQ_DTYPE_S32: return H5T_NATIVE_INT32;
    case DISTQ_DTYPE_S64: return H5T_NATIVE_INT64;
    default: return H5I_INVALID_HID;
    }
}

int distq_h5_dtype_of(hid_t type, distq_dtype *out)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT && size == 4) {
        *out = DISTQ_DTYPE_F32;
        return 0;
    }
    if (cls != H5T_INTEGER) return -1;
    H5T_sign_t sign = H5Tget_sign(type);
    if (size == 1 && sign == H5T_SGN_NONE) *out = DISTQ_DTYPE_U8;
    else if (size == 1 && sign == H5T_SGN_2) *out = DISTQ_DTYPE_S8;
    else if (size == 4 && sign == H5T_SGN_2) *out = DISTQ_DTYPE_S32;
    else if (size == 8 && sign == H5T_SGN_2) *out = DISTQ_DTYPE_S64;
    else return -1;
    return 0;
}

void distq_h5_type_text(hid_t type, char *buf, size_t len)
{
    size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
    case H5T_FLOAT: snprintf(buf, len, "float%zu", bits); break;
    case H5T_INTEGER:
        snprintf(buf, len, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_STRING: snprintf(buf, len, "a string"); break;
    case H5T_COMPOUND: snprintf(buf, len, "a compound type"); break;
    case H5T_ENUM: snprintf(buf, len, "an enum"); break;
    case H5T_ARRAY: snprintf(buf, len, "an array type"); break;
    case H5T_VLEN: snprintf(buf, len, "a variable-length type"); break;
    default: snprintf(buf, len, "an unsupported HDF5 type"); break;
    }
}

distq_status distq_h5_dataset_shape(hid_t dset, int *ndim, int64_t *dims, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t space = H5I_INVALID_HID;
    hsize_t hd[H5S_MAX_RANK];
    int rank;
    DISTQ_H5_CHECK(space = H5Dget_space(dset), DISTQ_ERR_FORMAT, "%s: cannot read its shape",
                   where);
    DISTQ_H5_CHECK(rank = H5Sget_simple_extent_ndims(space), DISTQ_ERR_FORMAT,
                   "%s: cannot read its shape", where);
    if (H5Sget_simple_extent_type(space) == H5S_NULL) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: has a null dataspace (no data)", where);
        goto cleanup;
    }
    if (rank > DISTQ_MAX_DIMS) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: rank %d, at most %d supported", where, rank,
                             DISTQ_MAX_DIMS);
        goto cleanup;
    }
    DISTQ_H5_CHECK(H5Sget_simple_extent_dims(space, hd, NULL), DISTQ_ERR_FORMAT,
                   "%s: cannot read its shape", where);
    *ndim = rank;
    for (int i = 0; i < rank; i++) dims[i] = (int64_t)hd[i];
cleanup:
    distq_h5_close(&space);
    return st;
}

distq_status distq_h5_write_array(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                                  const int64_t *dims, const void *data, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t hd[DISTQ_MAX_DIMS];
    if (ftype < 0 || ndim < 0 || ndim > DISTQ_MAX_DIMS) {
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: dataset '%s' has rank %d or no type",
                             where, name, ndim);
        goto cleanup;
    }
    for (int i = 0; i < ndim; i++) hd[i] = (hsize_t)dims[i];
    DISTQ_H5_CHECK(space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, hd, NULL),
                   DISTQ_ERR_IO, "%s: dataspace for dataset '%s'", where, name);
    DISTQ_H5_CHECK(dset = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT,
                                     H5P_DEFAULT),
                   DISTQ_ERR_IO, "%s: cannot create dataset '%s'", where, name);
    if (distq_dims_numel(ndim, dims) > 0)
        DISTQ_H5_CHECK(H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), DISTQ_ERR_IO,
                       "%s: cannot write dataset '%s'", where, name);
cleanup:
    distq_h5_close(&dset);
    distq_h5_close(&space);
    return st;
}

distq_status distq_h5_write_tensor(hid_t loc, const char *name, const distq_tensor *t,
                                   const char *where)
{
    hid_t ftype = distq_h5_file_type(t->dtype);
    if (ftype < 0 || t->ndim < 0 || t->ndim > DISTQ_MAX_DIMS)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: tensor '%s' has dtype %d and rank %d",
                               where, t->name, (int)t->dtype, t->ndim);
    return distq_h5_write_array(loc, name, ftype, distq_h5_mem_type(t->dtype), t->ndim, t->dims,
                                t->data, where);
}
