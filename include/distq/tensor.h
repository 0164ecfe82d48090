#ifndef DISTQ_TENSOR_H
#define DISTQ_TENSOR_H
/*
 * Element types, allocation and named tensors.
 *
 * A distq_tensor is a named, dense, row-major (C order) array. Parameters
 * (weights, biases, BN buffers) own their data; activations in a graph are
 * described by a distq_value (graph.h) and carry no data.
 */
#include <stddef.h>
#include <stdint.h>

#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 8: reshape/transpose patterns of imported models need 6 (shufflenet 5);
 * oneDNN takes up to 12 */
#define DISTQ_MAX_DIMS 8
/* Room for short fixed strings (formats, op and observer kinds, enum names);
 * graph names have no length limit. */
#define DISTQ_NAME_MAX 128

typedef enum {
    DISTQ_DTYPE_F32 = 0,
    DISTQ_DTYPE_U8,
    DISTQ_DTYPE_S8,
    DISTQ_DTYPE_S32,
    DISTQ_DTYPE_S64, /* BN num_batches_tracked, labels */
    DISTQ_DTYPE_COUNT
} distq_dtype;

/* Bytes per element; 0 for an invalid dtype. */
size_t distq_dtype_size(distq_dtype dt);
/* "f32", "u8", "s8", "s32", "s64"; "?" for an invalid dtype. */
const char *distq_dtype_name(distq_dtype dt);
/* Inverse of distq_dtype_name. DISTQ_ERR_INVALID_ARG if unknown. */
distq_status distq_dtype_from_name(const char *name, distq_dtype *out);

/* All allocation goes through these, 64-byte aligned; distq_free(NULL) is a no-op. */
void *distq_malloc(size_t nbytes);
void *distq_calloc(size_t nbytes);
void distq_free(void *p);
/* Allocation fault injection for tests (SQLite's pattern): the n-th
 * distq_malloc / distq_calloc from now returns NULL, once (0 disarms);
 * distq_alloc_failed says whether it has happened since; distq_alloc_live
 * counts allocations not yet freed (a leak check). */
void distq_alloc_fail_nth(int64_t n);
int distq_alloc_failed(void);
int64_t distq_alloc_live(void);

typedef struct distq_tensor {
    const char *name; /* owned by the graph holding the tensor (any length) */
    distq_dtype dtype;
    int ndim;
    int64_t dims[DISTQ_MAX_DIMS];
    void *data; /* owned by whoever owns the tensor; row-major */
} distq_tensor;

/* The product of dims; -1 if a dim is negative or the product overflows int64. */
int64_t distq_dims_numel(int ndim, const int64_t *dims);
int64_t distq_tensor_numel(const distq_tensor *t);
size_t distq_tensor_nbytes(const distq_tensor *t);
/* Writes "(64, 3, 7, 7)" into buf. */
void distq_dims_format(int ndim, const int64_t *dims, char *buf, size_t len);

/* Deterministic random numbers (splitmix64): the same seed gives the same
 * stream on every platform. */
typedef struct { uint64_t state; } distq_rng;
void distq_rng_seed(distq_rng *r, uint64_t seed);
uint64_t distq_rng_next(distq_rng *r);
/* Uniform in [lo, hi). */
float distq_rng_uniform(distq_rng *r, float lo, float hi);
/* Standard normal (Box-Muller). */
float distq_rng_normal(distq_rng *r);

#ifdef __cplusplus
}
#endif
#endif
