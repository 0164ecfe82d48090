#ifndef DISTQ_REDUCER_H
#define DISTQ_REDUCER_H
/*
 * The one cross-rank interface below dist: calibration (observer state),
 * training (BN statistics, fake-quant ranges), the collective data-file open
 * and the ONNX model broadcast all reduce through it. src/dist supplies the
 * MPI implementation (distq_dist_reducer); NULL means one process.
 *
 * Every call is collective: every rank makes it, in the same order, with the
 * same n. Reductions are exact (MIN / MAX of floats, SUM of integers), so a
 * result does not depend on the rank count; sum_f64 is the one exception, an
 * fp64 SUM whose rounding depends on the order of the ranks.
 */
#include <stddef.h>
#include <stdint.h>

#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    void *ctx;
    /* DISTQ_OK on every rank if every rank passed DISTQ_OK; otherwise the
     * lowest failing rank's status and message ("rank R: ...") on every rank.
     * Called before a reduction so that a rank that failed stops the others
     * instead of leaving them waiting. */
    distq_status (*agree)(void *ctx, distq_status local);
    distq_status (*min_max)(void *ctx, float *lo, float *hi, int n); /* MIN / MAX in place */
    distq_status (*sum_i64)(void *ctx, int64_t *counts, int n);      /* SUM in place */
    distq_status (*sum_f64)(void *ctx, double *sums, int n);         /* SUM in place */
    /* rank 0's *buf (*len bytes) to every rank: elsewhere *buf becomes a
     * malloc'd copy (free() it) and *len its size; rank 0's is left as is. */
    distq_status (*bcast_bytes)(void *ctx, void **buf, size_t *len);
} distq_reducer;

#ifdef __cplusplus
}
#endif
#endif
