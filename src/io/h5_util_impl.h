#ifndef DISTQ_IO_H5_UTIL_IMPL_H
#define DISTQ_IO_H5_UTIL_IMPL_H
/*
 * Internal HDF5 helpers shared by model_io.c, qmodel_io.c, data_io.c and describe.c: error
 * capture, quiet close, open/create-temp/commit, format checks, typed
 * attributes and dtype mapping. Not API.
 *
 * Every message names where it happened: callers pass `where`, a prefix such
 * as "model.h5: /graph/nodes/conv1", and messages read
 * "<where>: missing attribute 'op'".
 *
 *     distq_status st = DISTQ_OK;
 *     hid_t fid = H5I_INVALID_HID;
 *     DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
 *     DISTQ_H5_CHECK(H5Gopen2(fid, "/graph", H5P_DEFAULT), DISTQ_ERR_FORMAT, "%s: ...", path);
 *   cleanup:
 *     distq_h5_close(&fid);
 *     return st;
 */
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "distq/status.h"
#include "distq/tensor.h"

/* Capacity for "<path>: /group/name" prefixes and temp names. */
#define DISTQ_H5_WHERE_MAX 1024

/* Runs a distq call; on failure keeps its status and message and jumps to cleanup. */
#define DISTQ_CHECK(call)                \
    do {                                 \
        st = (call);                     \
        if (st != DISTQ_OK) goto cleanup; \
    } while (0)

/* Runs an HDF5 call; a negative result records the printf-style message plus
 * HDF5's own text and this source line, sets st = status, jumps to cleanup. */
#define DISTQ_H5_CHECK(call, status, ...)                                      \
    do {                                                                       \
        if ((call) < 0) {                                                      \
            st = distq_h5_fail((status), __FILE__, __LINE__, __VA_ARGS__);     \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

/* Turns HDF5's automatic error printing off (library code never prints). */
void distq_h5_quiet(void);

/* Innermost entry of the current HDF5 error stack, e.g. "truncated file: eof
 * = 1024, ..." ("" if the stack is empty). */
void distq_h5_error_text(char *buf, size_t len);

/* Records "<fmt...> (HDF5: <text>) [src:line]" and returns st. */
distq_status distq_h5_fail(distq_status st, const char *src, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Closes any HDF5 id quietly and sets it to H5I_INVALID_HID; invalid ids are a no-op. */
void distq_h5_close(hid_t *id);

/* --- files ------------------------------------------------------------------ */

/* path exists, is not a directory and can be opened for reading: the
 * checks before a (collective) H5Fopen, each a one-line DISTQ_ERR_IO. */
distq_status distq_h5_check_readable(const char *path);

/* Opens path read-only. DISTQ_ERR_IO if it is missing or unreadable,
 * DISTQ_ERR_FORMAT ("<path>: not an HDF5 file or truncated") otherwise. */
distq_status distq_h5_open_read(const char *path, hid_t fapl, hid_t *out);

/* Starts a file for path, built in memory (HDF5's core driver, no backing
 * store), with the root attributes format and version; tmp
 * [DISTQ_H5_WHERE_MAX] gets the name "<path>.tmp.<host>.<pid>" commit will
 * write (the host: pids of other nodes sharing the directory are not ours).
 * Nothing touches the disk until commit. On failure nothing is left.
 *
 * Why in memory: HDF5 1.10.8 (Debian 12) cannot survive a failed H5Fclose
 * (a full disk at the final flush): it keeps a file ID whose internals are
 * freed and crashes closing it again at library shutdown (HDFFV-11052, fixed
 * in 1.14.1). An in-memory file's close cannot fail on the disk; commit
 * writes its image with write(2)/fsync(2), so ENOSPC is an ordinary error.
 * The cost: the file's size in memory while it is written. */
distq_status distq_h5_create_tmp(const char *path, const char *format, int64_t version,
                                 char *tmp, hid_t *out);
/* The same with a file creation property list (H5P_DEFAULT = create_tmp). */
distq_status distq_h5_create_tmp_fcpl(const char *path, const char *format, int64_t version, hid_t fcpl,
                                      char *tmp, hid_t *out);
/* The in-memory files behind create_tmp / commit (h5_image.c): set fapl up
 * for the next H5Fcreate, bind the file it created (or H5I_INVALID_HID),
 * then close it and write it whole to tmp, or close it and drop it. */
distq_status distq_h5_image_fapl(hid_t fapl, const char *path);
void distq_h5_image_bind(hid_t fid);
distq_status distq_h5_image_close_write(hid_t *fid, const char *tmp, const char *path);
void distq_h5_image_close_drop(hid_t *fid);
/* Closes the in-memory file fid and hands its image over: *buf (free() it),
 * *len bytes, a complete HDF5 file. */
distq_status distq_h5_image_close_take(hid_t *fid, const char *what, void **buf, size_t *len);
/* Opens the HDF5 file image buf (len bytes) read-only, in place: buf must
 * outlive *fid and is never copied or freed by HDF5. */
distq_status distq_h5_image_open_read(const void *buf, size_t len, const char *what, hid_t *fid);
/* The temporary file is gone (renamed or removed): a signal no longer needs to remove it. */
void distq_h5_image_written(void);

/* Closes *fid, writes its image to tmp, fsyncs it and renames tmp over path;
 * on failure removes tmp and leaves path as it was. */
distq_status distq_h5_commit(hid_t *fid, const char *tmp, const char *path);
/* Closes *fid (if open) and removes tmp, after a failed write. Keeps the message. */
void distq_h5_discard(hid_t *fid, const char *tmp);

/* Checks the root attributes: format == want (else names what it is) and
 * version == want_version. DISTQ_ERR_FORMAT naming path. */
distq_status distq_h5_check_format(hid_t fid, const char *path, const char *want,
                                   int64_t want_version);
/* The same, accepting any version from oldest to want_version (a reader of
 * a format that grew compatibly). */
distq_status distq_h5_check_format_since(hid_t fid, const char *path, const char *want,
                                         int64_t oldest, int64_t want_version);

/* The root attribute 'format' into format[len], or "" if the file has none.
 * DISTQ_ERR_FORMAT if it is there but not a string. */
distq_status distq_h5_read_format(hid_t fid, const char *path, char *format, size_t len);

/* --- attributes --------------------------------------------------------------
 * Strings are written as variable-length UTF-8 (h5py reads them as str);
 * fixed-length strings are accepted on read. Integers are written as int64 and
 * floats as float32; any integer (float) type is accepted on read. */

/* 1 if loc has attribute name, 0 if not, <0 on HDF5 error. */
htri_t distq_h5_attr_exists(hid_t loc, const char *name);

distq_status distq_h5_attr_write_str(hid_t loc, const char *name, const char *value,
                                     const char *where);
/* 1-D array of n strings (NULL entries are written as ""). */
distq_status distq_h5_attr_write_strs(hid_t loc, const char *name, int n,
                                      const char *const *values, const char *where);
/* n == 0: a scalar v[0]; n >= 1: a 1-D array of n. */
distq_status distq_h5_attr_write_i64(hid_t loc, const char *name, int n, const int64_t *v,
                                     const char *where);
distq_status distq_h5_attr_write_f32(hid_t loc, const char *name, float v, const char *where);
/* 1-D array of n >= 1 floats. */
distq_status distq_h5_attr_write_f32s(hid_t loc, const char *name, int n, const float *v,
                                      const char *where);

/* Reads a scalar string attribute into buf[len]. DISTQ_ERR_FORMAT if missing,
 * not a string, not a single value or too long. */
distq_status distq_h5_attr_read_str(hid_t loc, const char *name, char *buf, size_t len,
                                    const char *where);
/* Reads a string attribute of between min_n and max_n values into
 * names[max_n][DISTQ_NAME_MAX]; *n gets the count. */
distq_status distq_h5_attr_read_strs(hid_t loc, const char *name, int min_n, int max_n,
                                     char (*names)[DISTQ_NAME_MAX], int *n, const char *where);
/* Reads a string attribute of between min_n and max_n values, each of any
 * length, into one allocated block: (*list)[i] for i < *n; distq_free(*list)
 * releases it all. min_n = max_n = 1 reads a scalar string. */
distq_status distq_h5_attr_read_strlist(hid_t loc, const char *name, int min_n, int max_n,
                                        char ***list, int *n, const char *where);
/* Reads an integer attribute of between min_n and max_n values (a scalar
 * counts as 1) into v; *n (optional) gets the count. */
distq_status distq_h5_attr_read_i64(hid_t loc, const char *name, int min_n, int max_n,
                                    int64_t *v, int *n, const char *where);
/* Reads a single float attribute. */
distq_status distq_h5_attr_read_f32(hid_t loc, const char *name, float *v, const char *where);

/* --- datatypes ---------------------------------------------------------------- */

/* The little-endian file type for dt (H5T_IEEE_F32LE, H5T_STD_U8LE, ...). */
hid_t distq_h5_file_type(distq_dtype dt);
/* The native memory type for dt. */
hid_t distq_h5_mem_type(distq_dtype dt);
/* Maps a dataset's type to a distq dtype (either byte order). 0 on success,
 * -1 if no distq dtype matches. */
int distq_h5_dtype_of(hid_t type, distq_dtype *out);
/* Describes an HDF5 type the way numpy would: "float64", "int16", "string", ... */
void distq_h5_type_text(hid_t type, char *buf, size_t len);

/* Rank and dims of a dataset (at most DISTQ_MAX_DIMS, else DISTQ_ERR_FORMAT
 * naming where). A scalar has rank 0. */
distq_status distq_h5_dataset_shape(hid_t dset, int *ndim, int64_t *dims, const char *where);

/* Writes a contiguous dataset loc/name of file type ftype from data in memory
 * type mtype (rank 0 = scalar dataspace). */
distq_status distq_h5_write_array(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                                  const int64_t *dims, const void *data, const char *where);
/* Writes t as a contiguous dataset loc/name with t's dtype and shape (rank 0
 * = scalar dataspace). */
distq_status distq_h5_write_tensor(hid_t loc, const char *name, const distq_tensor *t,
                                   const char *where);

#endif
