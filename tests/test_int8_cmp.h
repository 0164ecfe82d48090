#ifndef DISTQ_TEST_INT8_CMP_H
#define DISTQ_TEST_INT8_CMP_H
/*
 * Holding an int8 executor against a reference, with bounds that come from
 * the quantization itself, never from what one CPU happened to give.
 *
 * Two kinds of check, because they fail for different reasons:
 *
 * 1. Forced, layer by layer (test_int8_run_forced). Right after oneDNN
 *    computes a value, it is compared with the reference's value of the same
 *    name and then overwritten with it, so every layer sees exactly the
 *    reference's inputs. Both sides compute the same exact s32 accumulator; the
 *    real value it stands for is rounded to a code through a different f32 /
 *    double formula, so a value within a few ulps of a .5 tie can land on the
 *    neighbouring code. The bound: codes equal or off by one, never off by 2
 *    (that is a bug: indexing, layout, zero point, scale), and off by one on at
 *    most TEST_MAX_OFF1 of a value's elements. f32 values: f32 against double
 *    rounding of the same integers, TEST_F32_EXACT_TOL.
 *
 * 2. Chained, end to end (test_int8_vs_quant_noise). A free run feeds each
 *    layer the implementation's own codes, so one flipped tie moves the next
 *    layer's inputs and can tip further ties. How far that cascade goes
 *    depends on where the kernels' accumulation order (AVX2 and AVX-512
 *    differ) puts the first flip and on how strongly the network amplifies a
 *    perturbation, not on any bug: a random-init resnet18 is close to chaotic
 *    (one flipped code in 12,288 at layer2 grew to 8% of layer4's codes). What
 *    should hold whatever the ISA is the comparison with the quantization error
 *    of the same input, which is the same kind of perturbation, only larger
 *    (an argument and the measurements below, not a proof):
 *
 *        || y_impl - y_ref ||_2  <=  TEST_IMPL_VS_QUANT * || y_ref - y_fp32 ||_2
 *
 *    Why 1: rounding moves every element of every quantized value by up to
 *    half a step (RMS 0.29 LSB); an implementation that differs only by tie
 *    flips moves a small fraction of elements by one step. Both travel the
 *    same layers, and a network cannot amplify the smaller injected
 *    perturbation beyond the larger one (a chaotic network saturates both at
 *    the same decorrelated level). Measured (oneDNN 2.6): 0 where no tie
 *    flipped; 0.08 for resnet18 64x64 with one flip at layer1.1 on AVX-512;
 *    0.45 for resnet18 32x32 (tests/isa_e2e.sh) with one flip at layer2 on
 *    AVX2; 0.06 for the QAT fmnist_cnn on AVX-512. A wrong zero point, scale
 *    or layout moves the output by about the signal itself, |y_fp32|, which
 *    is 4-5x the quantization error in these tests (asserted at least 2x), so
 *    such a bug gives a ratio of 2 or more. Subtle bugs (a code off by one
 *    everywhere) are the forced check's job.
 *    Argmax: the same reasoning per image (an image's implementation
 *    difference stays within its own quantization error, L2): where the
 *    reference's top-1 margin over its runner-up exceeds 2 * TEST_IMPL_VS_QUANT
 *    * || y_ref - y_fp32 ||_2 of that image (what such a difference could move
 *    two logits by), the implementation's argmax must be the reference's.
 */
#include <stdint.h>

#include "distq/exec.h"
#include "distq/quant.h"

#define TEST_MAX_OFF1 1e-3       /* forced: fraction of a value's codes off by one */
#define TEST_F32_EXACT_TOL 1e-5  /* forced: f32 values, f32 vs double rounding (~1e-7 seen) */
#define TEST_IMPL_VS_QUANT 1.0   /* chained: implementation vs quantization error, L2 */

/* Codes of one u8 value against the wanted ones. */
typedef struct {
    int64_t n, exact, off1, worse, at_qmax;
    int maxd;
} test_code_diff;

void test_codes_compare(const uint8_t *want, const uint8_t *got, int64_t n, int quant_max, test_code_diff *d);
/* "    what: name  u8  exact ...  off-by-1 ...  worse ... (max ...)  at qmax ..." */
void test_codes_print(const char *what, const char *name, const test_code_diff *d);
/* max |got - want| / max |want|: f32 values against the reference's */
double test_f32_max_rel_diff(const float *want, const float *got, int64_t n);

/* Fills want with the reference's copy of value `val` at batch N (codes for
 * u8, floats for f32). Returns 0 if the reference has no copy (the value is
 * then checked only through what follows it). */
typedef int (*test_want_fn)(void *ctx, const distq_value *val, int64_t batch, void *want);

/* What a forced run found over all its values. */
typedef struct {
    int n_u8, n_f32;        /* values compared */
    int64_t off1, worse;    /* u8 elements, all values */
    int64_t u8_elems, at_qmax;
    double worst_f32;       /* max rel diff of the f32 values */
} test_forced_sum;

/* Runs the oneDNN int8 executor e (of q, at batch) on x, forcing every value
 * the reference has (want) after comparing it strictly (bounds above, asserted
 * per value). Prints one line per value when verbose or when a value is not
 * exact. output gets the run's output. */
void test_int8_run_forced(distq_exec *e, const distq_graph *q, int64_t batch, const float *x, float *output,
                          test_want_fn want, void *ctx, const char *what, int verbose, test_forced_sum *sum);

/* The reference as a want source: another int8 executor (the plain-C one)
 * that has run the same input; every value it keeps. */
int test_want_from_exec(void *exec, const distq_value *val, int64_t batch, void *want);

/* The chained check: y_impl vs y_ref against y_ref vs y_fp32, (batch, K)
 * each; argmax as above when K > 1. Prints one line, asserts. */
void test_int8_vs_quant_noise(const char *what, const float *y_impl, const float *y_ref, const float *y_fp32,
                              int64_t batch, int64_t K);

#endif
