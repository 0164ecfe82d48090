/*
 * The MPI side: our communicator, failure agreement, and the exact reducer
 * for observer state. Every MPI call's return code is checked; the
 * communicator returns errors instead of aborting.
 */
#include <hwloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/dist.h"

_Static_assert(MPI_MAX_PROCESSOR_NAME <= DISTQ_HOST_MAX, "a host name must fit distq_placement.host");

#define MPI_CHECK(call, what)                                                        \
    do {                                                                             \
        int rc_ = (call);                                                            \
        if (rc_ != MPI_SUCCESS) {                                                    \
            char text_[MPI_MAX_ERROR_STRING];                                        \
            int len_ = 0;                                                            \
            MPI_Error_string(rc_, text_, &len_);                                     \
            return distq_error_set(DISTQ_ERR_MPI, "%s failed: %s", (what), text_);   \
        }                                                                            \
    } while (0)

distq_status distq_dist_start(int *argc, char ***argv, distq_world *w)
{
    memset(w, 0, sizeof *w);
    MPI_CHECK(MPI_Init(argc, argv), "MPI_Init");
    int rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) MPI_Finalize();
    MPI_CHECK(rc, "MPI_Comm_set_errhandler");
    distq_dist d;
    distq_status st = distq_dist_init(MPI_COMM_WORLD, &d);
    if (st) {
        MPI_Finalize(); /* MPI is not left up half-started; the error is init's */
        return st;
    }
    *w = (distq_world){d.rank, d.size, d.local_rank, d.local_size};
    distq_dist_free(&d);
    return DISTQ_OK;
}

int distq_dist_finish(int rc)
{
    int worst = rc;
    if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) worst = rc ? rc : 1;
    if (MPI_Finalize() != MPI_SUCCESS && !worst) worst = 1;
    return worst;
}

distq_status distq_dist_init_world(distq_dist *d) { return distq_dist_init(MPI_COMM_WORLD, d); }

distq_status distq_dist_init(MPI_Comm parent, distq_dist *d)
{
    memset(d, 0, sizeof *d);
    d->comm = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_dup(parent, &d->comm), "MPI_Comm_dup");
    MPI_CHECK(MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_CHECK(MPI_Comm_rank(d->comm, &d->rank), "MPI_Comm_rank");
    MPI_CHECK(MPI_Comm_size(d->comm, &d->size), "MPI_Comm_size");
    MPI_Comm local = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local),
              "MPI_Comm_split_type");
    int rc1 = MPI_Comm_rank(local, &d->local_rank), rc2 = MPI_Comm_size(local, &d->local_size);
    MPI_Comm_free(&local);
    MPI_CHECK(rc1 != MPI_SUCCESS ? rc1 : rc2, "MPI_Comm_rank/size of the node communicator");
    int len = 0;
    MPI_CHECK(MPI_Get_processor_name(d->host, &len), "MPI_Get_processor_name");
    return DISTQ_OK;
}

void distq_dist_free(distq_dist *d)
{
    if (d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
}

distq_status distq_dist_agree(distq_dist *d, distq_status local)
{
    /* MAXLOC over (failed, rank) finds the lowest failing rank: among equal
     * values MPI_MAXLOC keeps the smallest index. */
    struct {
        int failed, rank;
    } mine = {local != DISTQ_OK, d->rank}, worst;
    MPI_CHECK(MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MAXLOC, d->comm), "MPI_Allreduce (agree)");
    if (!worst.failed) return DISTQ_OK;
    int root = worst.rank;
    struct {
        int status;
        char text[1000];
    } msg;
    memset(&msg, 0, sizeof msg);
    if (d->rank == root) {
        msg.status = (int)local;
        snprintf(msg.text, sizeof msg.text, "%s", distq_error_message());
    }
    MPI_CHECK(MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, root, d->comm), "MPI_Bcast (agree)");
    /* an error agreed on earlier (a collective open) already names its rank */
    if (strncmp(msg.text, "rank ", 5) == 0) return distq_error_set((distq_status)msg.status, "%s", msg.text);
    return distq_error_set((distq_status)msg.status, "rank %d: %s", root, msg.text);
}

distq_status distq_dist_agree_settings(distq_dist *d, const int64_t *v, const char *const *names, int n)
{
    enum { MAX_SETTINGS = 64 };
    if (n < 1 || n > MAX_SETTINGS)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_dist_agree_settings: %d settings", n);
    int64_t root[MAX_SETTINGS];
    memcpy(root, v, (size_t)n * sizeof *v);
    MPI_CHECK(MPI_Bcast(root, n, MPI_INT64_T, 0, d->comm), "MPI_Bcast (settings)");
    distq_status st = DISTQ_OK;
    for (int i = 0; i < n && !st; i++)
        if (root[i] != v[i])
            st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                                 "%s is %lld here, %lld on rank 0: every rank must run the same config", names[i],
                                 (long long)v[i], (long long)root[i]);
    return distq_dist_agree(d, st);
}

static distq_status agree_cb(void *ctx, distq_status local) { return distq_dist_agree(ctx, local); }

/* One MPI_MIN over (lo, -hi) instead of a MIN and a MAX (negation is exact):
 * QAT calls this once per fake-quantized value per step, so its latency
 * counts. */
static distq_status min_max_cb(void *ctx, float *lo, float *hi, int n)
{
    enum { PIECE = 256 };
    distq_dist *d = ctx;
    float buf[2 * PIECE];
    for (int off = 0; off < n; off += PIECE) {
        int m = n - off < PIECE ? n - off : PIECE;
        for (int i = 0; i < m; i++) {
            buf[i] = lo[off + i];
            buf[m + i] = -hi[off + i];
        }
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, 2 * m, MPI_FLOAT, MPI_MIN, d->comm), "MPI_Allreduce (min/max)");
        for (int i = 0; i < m; i++) {
            lo[off + i] = buf[i];
            hi[off + i] = -buf[m + i];
        }
        d->reduce_calls += 1;
    }
    d->reduce_bytes += 2 * (int64_t)n * (int64_t)sizeof(float);
    return DISTQ_OK;
}

static distq_status sum_f64_cb(void *ctx, double *sums, int n)
{
    distq_dist *d = ctx;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, n, MPI_DOUBLE, MPI_SUM, d->comm), "MPI_Allreduce (f64 sum)");
    d->reduce_bytes += (int64_t)n * (int64_t)sizeof(double);
    d->reduce_calls += 1;
    return DISTQ_OK;
}

static distq_status sum_i64_cb(void *ctx, int64_t *counts, int n)
{
    distq_dist *d = ctx;
    /* Integer sums are exact and order-free: the merged histogram is the same for any rank count. */
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, counts, n, MPI_INT64_T, MPI_SUM, d->comm), "MPI_Allreduce (sum)");
    d->reduce_bytes += (int64_t)n * (int64_t)sizeof(int64_t);
    d->reduce_calls += 1;
    return DISTQ_OK;
}

/* In pieces of at most 1 GiB: MPI counts are ints. */
static distq_status bcast_bytes_cb(void *ctx, void **buf, size_t *len)
{
    distq_dist *d = ctx;
    uint64_t n = d->rank == 0 ? (uint64_t)*len : 0;
    MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, d->comm), "MPI_Bcast (size)");
    distq_status st = DISTQ_OK;
    if (d->rank != 0) {
        *len = (size_t)n;
        *buf = malloc(n ? (size_t)n : 1);
        if (!*buf) st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory receiving %llu bytes", (unsigned long long)n);
    }
    if ((st = distq_dist_agree(d, st))) {
        if (d->rank != 0) {
            free(*buf);
            *buf = NULL;
        }
        return st;
    }
    const size_t piece = (size_t)1 << 30;
    for (size_t off = 0; off < (size_t)n; off += piece) {
        size_t k = (size_t)n - off < piece ? (size_t)n - off : piece;
        MPI_CHECK(MPI_Bcast((char *)*buf + off, (int)k, MPI_BYTE, 0, d->comm), "MPI_Bcast (bytes)");
    }
    return DISTQ_OK;
}

distq_reducer distq_dist_reducer(distq_dist *d)
{
    distq_reducer r = {.ctx = d, .agree = agree_cb, .min_max = min_max_cb, .sum_i64 = sum_i64_cb,
                       .sum_f64 = sum_f64_cb, .bcast_bytes = bcast_bytes_cb};
    return r;
}

const char *distq_mpi_version(void)
{
    static char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (!text[0] && MPI_Get_library_version(text, &len) == MPI_SUCCESS) {
        char *nl = strchr(text, ',');  /* "Open MPI v4.1.4, package: ..." -> first field */
        if (nl) *nl = '\0';
    }
    return text;
}

const char *distq_hwloc_version(void)
{
    static char text[32];
    unsigned v = hwloc_get_api_version();
    snprintf(text, sizeof text, "%u.%u.%u", v >> 16, (v >> 8) & 0xff, v & 0xff);
    return text;
}
