/*
 * Files built in memory and written out whole (see distq_h5_create_tmp).
 *
 * HDF5's core driver without a backing store keeps the file in a buffer that
 * it allocates through file image callbacks; ours keep the buffer when the
 * file closes instead of freeing it, so the complete file (every object
 * flushed and closed by H5Fclose) is then written with write(2) and
 * fsync(2), whose errors (ENOSPC, EDQUOT, EIO) are plain errno values.
 * H5Fget_file_image on an open file is not used: for the v1.8 superblock it
 * gives an image that does not reopen (HDF5 1.10.8).
 *
 * The buffer is larger than the file (it grows by whole increments); the
 * file's length is the end-of-file address in its superblock (version 2, the
 * only one written here: libver bounds v1.8).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5_util_impl.h"

/* One file being written; distq writes a handful at a time at most. */
typedef struct {
    int in_use;
    hid_t fid;   /* H5I_INVALID_HID until bound */
    void *buf;   /* the core driver's buffer: live, then kept at close */
    size_t size; /* its allocated size */
    int kept;    /* the driver closed the file and left buf to us */
    int orphan;  /* H5Fclose failed: HDF5 may still use buf; never freed, never reused */
} image_slot;

enum { N_SLOTS = 16 };
static image_slot slots[N_SLOTS];
static image_slot *pending; /* set up by distq_h5_image_fapl, bound by _bind */

static void *cb_malloc(size_t n, H5FD_file_image_op_t op, void *u)
{
    (void)op;
    image_slot *s = u;
    s->buf = calloc(1, n);
    s->size = s->buf ? n : 0;
    return s->buf;
}

static void *cb_memcpy(void *dst, const void *src, size_t n, H5FD_file_image_op_t op, void *u)
{
    (void)op;
    (void)u;
    return memcpy(dst, src, n);
}

static void *cb_realloc(void *p, size_t n, H5FD_file_image_op_t op, void *u)
{
    (void)op;
    image_slot *s = u;
    void *q = realloc(p, n);
    if (!q) return NULL;
    if (n > s->size) memset((char *)q + s->size, 0, n - s->size); /* no stale bytes in the file */
    s->buf = q;
    s->size = n;
    return q;
}

static herr_t cb_free(void *p, H5FD_file_image_op_t op, void *u)
{
    image_slot *s = u;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && p == s->buf) {
        s->kept = 1; /* the finished file: commit writes it, then frees it */
        return 0;
    }
    if (p == s->buf) {
        s->buf = NULL;
        s->size = 0;
    }
    free(p);
    return 0;
}

/* The fapl is copied with its udata: every copy points at the same slot. */
static void *cb_udata_copy(void *u) { return u; }
static herr_t cb_udata_free(void *u)
{
    (void)u;
    return 0;
}

distq_status distq_h5_image_fapl(hid_t fapl, const char *path)
{
    image_slot *s = NULL;
    for (int i = 0; i < N_SLOTS && !s; i++)
        if (!slots[i].in_use) s = &slots[i];
    if (!s) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: more than %d files being written at once", path, N_SLOTS);
    memset(s, 0, sizeof *s);
    s->in_use = 1;
    s->fid = H5I_INVALID_HID;
    H5FD_file_image_callbacks_t cb = {cb_malloc, cb_memcpy,     cb_realloc, cb_free,
                                      cb_udata_copy, cb_udata_free, s};
    /* in memory, grown 1 MiB at a time; no backing store: the disk is ours */
    if (H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0 || H5Pset_file_image_callbacks(fapl, &cb) < 0) {
        s->in_use = 0;
        return distq_h5_fail(DISTQ_ERR_IO, __FILE__, __LINE__, "%s: cannot set up the in-memory file", path);
    }
    pending = s;
    return DISTQ_OK;
}

void distq_h5_image_bind(hid_t fid)
{
    if (pending) pending->fid = fid;
    pending = NULL;
}

static image_slot *slot_of(hid_t fid)
{
    for (int i = 0; i < N_SLOTS; i++)
        if (slots[i].in_use && !slots[i].orphan && slots[i].fid == fid) return &slots[i];
    return NULL;
}

static void slot_release(image_slot *s)
{
    free(s->buf);
    memset(s, 0, sizeof *s);
    s->fid = H5I_INVALID_HID;
}

/* The file's length: the end-of-file address of its version 2 superblock
 * (signature 8, version, offset size, length size, flags, then base, extension
 * and EOF addresses of offset-size bytes, little-endian). */
static int64_t image_length(const unsigned char *b, size_t size)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (size < 40 || memcmp(b, sig, 8) != 0 || b[8] != 2 || b[9] != 8) return -1;
    uint64_t base = 0, eof = 0;
    for (int i = 7; i >= 0; i--) {
        base = base << 8 | b[12 + i];
        eof = eof << 8 | b[28 + i];
    }
    if (base != 0 || eof < 40 || eof > size) return -1;
    return (int64_t)eof;
}

/* The temporary file on disk right now, for a signal handler to remove. */
static char partial[DISTQ_H5_WHERE_MAX];
static volatile sig_atomic_t partial_set;

void distq_io_unlink_partial(void)
{
    if (partial_set) unlink(partial); /* async-signal-safe */
}

void distq_h5_image_written(void) { partial_set = 0; }

/* Removes "<name>.tmp.<host>.<pid>" siblings of tmp whose process is gone (a
 * SIGKILL'd writer of this host): tmp's own prefix, any pid that no longer
 * runs. Best effort: a failure only leaves the stale file. */
static void remove_stale(const char *tmp)
{
    char dir_copy[DISTQ_H5_WHERE_MAX], base_copy[DISTQ_H5_WHERE_MAX], prefix[DISTQ_H5_WHERE_MAX];
    snprintf(dir_copy, sizeof dir_copy, "%s", tmp);
    snprintf(base_copy, sizeof base_copy, "%s", tmp);
    const char *dir = dirname(dir_copy), *base = basename(base_copy);
    const char *dot = strrchr(base, '.'); /* "<name>.tmp.<host>." up to the pid */
    if (!dot) return;
    size_t plen = (size_t)(dot - base + 1);
    if (plen >= sizeof prefix) return;
    memcpy(prefix, base, plen);
    prefix[plen] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        char *end = NULL;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (pid <= 0 || *end || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char stale[DISTQ_H5_WHERE_MAX * 2];
        snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name);
        unlink(stale);
    }
    closedir(d);
}

/* Writes n bytes to a new file tmp and fsyncs it: every error is errno's. */
static distq_status write_all(const char *tmp, const char *path, const unsigned char *p, size_t n)
{
    remove_stale(tmp);
    snprintf(partial, sizeof partial, "%s", tmp);
    partial_set = 1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return distq_error_set(DISTQ_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = w < 0 ? errno : ENOSPC;
            close(fd);
            return distq_error_set(DISTQ_ERR_IO, "%s: writing %s failed: %s", path, tmp, strerror(err));
        }
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return distq_error_set(DISTQ_ERR_IO, "%s: writing %s failed (fsync): %s", path, tmp, strerror(err));
    }
    if (close(fd) != 0)
        return distq_error_set(DISTQ_ERR_IO, "%s: writing %s failed (close): %s", path, tmp, strerror(errno));
    return DISTQ_OK;
}

distq_status distq_h5_image_close_write(hid_t *fid, const char *tmp, const char *path)
{
    distq_status st = DISTQ_OK;
    image_slot *s = slot_of(*fid);
    herr_t rc = H5Fclose(*fid); /* in memory: no disk is touched */
    *fid = H5I_INVALID_HID;
    if (!s) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: not a file started by distq_h5_create_tmp", path);
    int64_t len = s->kept ? image_length(s->buf, s->size) : -1;
    if (rc < 0)
        st = distq_h5_fail(DISTQ_ERR_IO, __FILE__, __LINE__, "%s: closing the in-memory file failed", path);
    else if (len < 0)
        st = distq_error_set(DISTQ_ERR_IO, "%s: the in-memory file has no version 2 superblock to take its length "
                             "from", path);
    else
        st = write_all(tmp, path, s->buf, (size_t)len);
    if (rc < 0 && !s->kept)
        s->orphan = 1; /* the driver still owns buf (HDF5 may close the file again at exit): leave it */
    else
        slot_release(s);
    return st;
}

distq_status distq_h5_image_close_take(hid_t *fid, const char *what, void **buf, size_t *len)
{
    distq_status st = DISTQ_OK;
    image_slot *s = slot_of(*fid);
    herr_t rc = H5Fclose(*fid);
    *fid = H5I_INVALID_HID;
    *buf = NULL;
    *len = 0;
    if (!s) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: not a file started by distq_h5_create_tmp", what);
    int64_t n = s->kept ? image_length(s->buf, s->size) : -1;
    if (rc < 0)
        st = distq_h5_fail(DISTQ_ERR_IO, __FILE__, __LINE__, "%s: closing the in-memory file failed", what);
    else if (n < 0)
        st = distq_error_set(DISTQ_ERR_IO, "%s: the in-memory file has no version 2 superblock", what);
    if (rc < 0 && !s->kept) {
        s->orphan = 1; /* as in close_write */
        return st;
    }
    if (!st) { /* the caller's now */
        *buf = s->buf;
        *len = (size_t)n;
        s->buf = NULL;
    }
    slot_release(s);
    return st;
}

/* Reading a caller's image in place: HDF5 would copy it into the fapl, again
 * into every fapl copy and once more for the core driver (3-4x a model's
 * size); these callbacks hand out the caller's bytes instead and never free
 * them (what H5LT's DONT_COPY | DONT_RELEASE does). */
typedef struct {
    void *buf;
    size_t len;
} read_image;

static void *ro_malloc(size_t n, H5FD_file_image_op_t op, void *u)
{
    (void)op;
    read_image *r = u;
    return n == r->len ? r->buf : NULL;
}

static void *ro_memcpy(void *dst, const void *src, size_t n, H5FD_file_image_op_t op, void *u)
{
    (void)src;
    (void)op;
    read_image *r = u;
    return dst == r->buf && n <= r->len ? dst : NULL; /* the bytes are already there */
}

static void *ro_realloc(void *p, size_t n, H5FD_file_image_op_t op, void *u)
{
    (void)p;
    (void)n;
    (void)op;
    (void)u;
    return NULL; /* read-only */
}

static herr_t ro_free(void *p, H5FD_file_image_op_t op, void *u)
{
    (void)p;
    (void)op;
    (void)u;
    return 0; /* the caller's */
}

distq_status distq_h5_image_open_read(const void *buf, size_t len, const char *what, hid_t *out)
{
    distq_status st = DISTQ_OK;
    hid_t fapl = H5I_INVALID_HID;
    *out = H5I_INVALID_HID;
    static read_image r; /* HDF5 keeps the pointer until the file closes: one image open at a time */
    r.buf = (void *)buf;
    r.len = len;
    H5FD_file_image_callbacks_t cb = {ro_malloc, ro_memcpy, ro_realloc, ro_free, cb_udata_copy, cb_udata_free, &r};
    distq_h5_quiet();
    DISTQ_H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS), DISTQ_ERR_IO, "%s: H5Pcreate", what);
    DISTQ_H5_CHECK(H5Pset_fapl_core(fapl, (size_t)1 << 20, 0), DISTQ_ERR_IO, "%s: H5Pset_fapl_core", what);
    DISTQ_H5_CHECK(H5Pset_file_image_callbacks(fapl, &cb), DISTQ_ERR_IO, "%s: H5Pset_file_image_callbacks", what);
    DISTQ_H5_CHECK(H5Pset_file_image(fapl, (void *)buf, len), DISTQ_ERR_IO, "%s: H5Pset_file_image", what);
    /* a name no file has: HDF5 checks the disk for the name even with an image */
    *out = H5Fopen("/nonexistent/distq-model-image", H5F_ACC_RDONLY, fapl);
    DISTQ_H5_CHECK(*out, DISTQ_ERR_FORMAT, "%s: the model image does not open", what);
cleanup:
    distq_h5_close(&fapl);
    return st;
}

void distq_h5_image_close_drop(hid_t *fid)
{
    image_slot *s = slot_of(*fid);
    herr_t rc = 0;
    if (*fid >= 0) {
        H5E_BEGIN_TRY { rc = H5Fclose(*fid); }
        H5E_END_TRY;
    }
    *fid = H5I_INVALID_HID;
    if (s && rc < 0 && !s->kept) s->orphan = 1; /* as in close_write */
    else if (s) slot_release(s);
}
