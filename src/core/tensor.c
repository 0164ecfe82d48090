/* dtypes, aligned allocation, dims helpers and the deterministic RNG. */
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/tensor.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[DISTQ_DTYPE_COUNT] = {
    [DISTQ_DTYPE_F32] = {"f32", 4}, [DISTQ_DTYPE_U8] = {"u8", 1}, [DISTQ_DTYPE_S8] = {"s8", 1},
    [DISTQ_DTYPE_S32] = {"s32", 4}, [DISTQ_DTYPE_S64] = {"s64", 8},
};
_Static_assert(DISTQ_DTYPE_COUNT == 5, "update dtype_table");

size_t distq_dtype_size(distq_dtype dt)
{
    return ((int)dt >= 0 && dt < DISTQ_DTYPE_COUNT) ? dtype_table[dt].size : 0;
}

const char *distq_dtype_name(distq_dtype dt)
{
    return ((int)dt >= 0 && dt < DISTQ_DTYPE_COUNT) ? dtype_table[dt].name : "?";
}

distq_status distq_dtype_from_name(const char *name, distq_dtype *out)
{
    for (int i = 0; i < DISTQ_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (distq_dtype)i;
            return DISTQ_OK;
        }
    }
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "unknown dtype '%s'", name);
}

/* Fault injection (tests): the n-th allocation from now fails, once. */
static _Atomic int64_t fail_countdown, live_allocations;
static _Atomic int failed_since_armed;

void distq_alloc_fail_nth(int64_t n)
{
    fail_countdown = n > 0 ? n : 0;
    failed_since_armed = 0;
}

int distq_alloc_failed(void) { return failed_since_armed; }

int64_t distq_alloc_live(void) { return live_allocations; }

void *distq_malloc(size_t nbytes)
{
    if (fail_countdown > 0 && --fail_countdown == 0) {
        failed_since_armed = 1;
        return NULL;
    }
    /* 64-byte alignment suits AVX-512 loads and oneDNN user memory; a size
     * that would wrap when rounded up cannot be allocated */
    if (nbytes > SIZE_MAX - 63) return NULL;
    size_t rounded = (nbytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) live_allocations++;
    return p;
}

void *distq_calloc(size_t nbytes)
{
    void *p = distq_malloc(nbytes);
    if (p) memset(p, 0, nbytes);
    return p;
}

void distq_free(void *p)
{
    if (p) live_allocations--;
    free(p);
}

int64_t distq_dims_numel(int ndim, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        /* checked: a file's dims must not wrap around to a plausible count */
        if (dims[i] < 0 || (dims[i] > 0 && n > INT64_MAX / dims[i])) return -1;
        n *= dims[i];
    }
    return n;
}

int64_t distq_tensor_numel(const distq_tensor *t) { return distq_dims_numel(t->ndim, t->dims); }

size_t distq_tensor_nbytes(const distq_tensor *t)
{
    return (size_t)distq_tensor_numel(t) * distq_dtype_size(t->dtype);
}

void distq_dims_format(int ndim, const int64_t *dims, char *buf, size_t len)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (used < len) snprintf(buf + used, len - used, ")");
}

/* splitmix64: tiny, well mixed, and identical on every platform. */
void distq_rng_seed(distq_rng *r, uint64_t seed) { r->state = seed; }

uint64_t distq_rng_next(distq_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float distq_rng_uniform(distq_rng *r, float lo, float hi)
{
    /* 24 random bits -> [0, 1) exactly representable in f32. */
    float u = (float)(distq_rng_next(r) >> 40) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * u;
}

float distq_rng_normal(distq_rng *r)
{
    double u1 = ((double)(distq_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(distq_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
