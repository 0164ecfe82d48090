#ifndef DISTQ_TEST_UTIL_H
#define DISTQ_TEST_UTIL_H
/* Shared helpers for the CUnit test executables. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "distq/graph.h"
#include "distq/status.h"
#include "distq/tensor.h"

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

/* The exit code of a test skipped because this CPU lacks the ISA level the
 * test was asked to run at (ctest's SKIP_RETURN_CODE). */
#define TEST_SKIP_CODE 77

/* Prints oneDNN's ISA and cap; creates a registry with one suite of cases,
 * runs it in Basic mode and returns the process exit code (non-zero on any
 * failure, TEST_SKIP_CODE when the ISA cap is above what the CPU has). */
int test_run_suite(const char *suite, const test_case *cases, int n_cases);

/* Asserts st == DISTQ_OK, printing distq_error_message() on failure. */
#define TEST_OK(expr)                                                                  \
    do {                                                                               \
        distq_status st_ = (expr);                                                     \
        if (st_ != DISTQ_OK) fprintf(stderr, "\n  %s: %s\n", #expr, distq_error_message()); \
        CU_ASSERT_EQUAL_FATAL(st_, DISTQ_OK);                                          \
    } while (0)

/* Asserts expr fails with status want and that the message contains needle. */
void test_expect_error(distq_status got, distq_status want, const char *needle,
                       const char *expr_text, const char *file, int line);
#define TEST_ERR(expr, want, needle) \
    test_expect_error((expr), (want), (needle), #expr, __FILE__, __LINE__)

/* Fills x with seeded uniform values in [lo, hi). */
void test_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* max |a - b| / max(|b|_inf, floor): relative to the reference's magnitude. */
double test_max_rel_err(const float *a, const float *ref, int64_t n);

/* A directory for this test's files (created once, under the working dir). */
const char *test_tmpdir(void);
/* buf = test_tmpdir()/name */
void test_tmp_path(char *buf, size_t len, const char *name);

/* TEST_ERR plus: the message names the file. */
#define TEST_ERR_PATH(expr, want, needle, path)                                             \
    do {                                                                                    \
        TEST_ERR(expr, want, needle);                                                       \
        if (!strstr(distq_error_message(), (path)))                                         \
            fprintf(stderr, "\n  message \"%s\" does not name %s\n", distq_error_message(), \
                    (path));                                                                \
        CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), (path)));                      \
    } while (0)

/* A test case: no HDF5 object is left open (every save, load and error path
 * before it closed its handles). */
void test_assert_no_open_hdf5(void);

/* The allocation sweep (SQLite's pattern): runs op(ctx) with its k-th
 * distq_malloc failing, k = 1, 2, ... until a run completes without reaching
 * the fault (then cleanup(ctx) frees what it made and its status must be OK).
 * Every run that hit the fault must fail with an error message, crash-free,
 * and hold no allocation afterwards (cleanup is called for it too: it frees
 * what a failed op left in ctx, if anything). Prints and returns how many
 * allocations were failed. */
int64_t test_alloc_sweep(const char *what, distq_status (*op)(void *ctx), void (*cleanup)(void *ctx), void *ctx);

/* --- tiny graph builders (test_graphs.c) --- */
distq_graph *test_new_graph(int ndim, const int64_t *dims); /* input "x" */
/* An f32 parameter filled with U(lo, hi) from seed. */
void test_add_param(distq_graph *g, const char *name, int ndim, const int64_t *dims, uint64_t seed,
                    float lo, float hi);
/* Node `name` (and its output value `name`) on in0 (and in1), with params (or NULL). */
void test_add_op(distq_graph *g, const char *name, distq_op op, const distq_attrs *a, const char *in0,
                 const char *in1, const char *const *params);
typedef struct {
    int64_t OC, K, stride, pad, dil, groups;
    int bias;
} test_conv_spec;
void test_add_conv(distq_graph *g, const char *name, const char *in, int64_t IC, test_conv_spec c,
                   uint64_t seed);
void test_add_bn(distq_graph *g, const char *name, const char *in, int64_t C, uint64_t seed);
void test_add_linear(distq_graph *g, const char *name, const char *in, int64_t IN, int64_t OUT, int bias,
                     uint64_t seed);
void test_finish(distq_graph *g, const char *output); /* set output, finalize */
int64_t test_rand_int(distq_rng *r, int64_t lo, int64_t hi); /* uniform in [lo, hi] */

#endif
