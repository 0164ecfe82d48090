/* Forced (layer by layer) and chained (against the quantization error)
 * comparisons of an int8 executor; the bounds are explained in the header. */
#include "test_int8_cmp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/exec_impl.h"
#include "backend/onednn/onednn_impl.h"
#include "test_util.h"

void test_codes_compare(const uint8_t *want, const uint8_t *got, int64_t n, int quant_max, test_code_diff *d)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    for (int64_t i = 0; i < n; i++) {
        int diff = abs((int)want[i] - (int)got[i]);
        d->maxd = diff > d->maxd ? diff : d->maxd;
        d->exact += diff == 0;
        d->off1 += diff == 1;
        d->worse += diff > 1;
        d->at_qmax += want[i] == quant_max;
        CU_ASSERT(got[i] <= quant_max);
    }
}

void test_codes_print(const char *what, const char *name, const test_code_diff *d)
{
    double n = (double)d->n;
    printf("\n    %s: %-24s u8  exact %.5f  off-by-1 %.5f  worse %lld (max %d)  at qmax %.3f", what, name,
           (double)d->exact / n, (double)d->off1 / n, (long long)d->worse, d->maxd, (double)d->at_qmax / n);
}

double test_f32_max_rel_diff(const float *want, const float *got, int64_t n)
{
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)want[i] - got[i]));
    }
    return maxdiff / fmax(maxref, 1e-30);
}

int test_want_from_exec(void *exec, const distq_value *val, int64_t batch, void *want)
{
    (void)batch;
    return distq_exec_get_value(exec, val->name, want) == DISTQ_OK;
}

typedef struct {
    distq_exec *e;
    const distq_graph *q;
    int64_t batch;
    test_want_fn want;
    void *ctx;
    const char *what;
    int verbose;
    test_forced_sum *sum;
} forcing;

static const distq_value *find_qvalue(const distq_graph *q, const char *name)
{
    int v = distq_graph_find_value(q, name);
    return v >= 0 ? &q->values[v] : NULL;
}

/* oneDNN has just computed `name`: compare it with the reference's and put the
 * reference's in its place. */
static distq_status force_value(void *ctx, const char *name)
{
    forcing *f = ctx;
    const distq_value *val = find_qvalue(f->q, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(val);
    int64_t n = f->batch * distq_dims_numel(val->ndim, val->dims);
    size_t bytes = (size_t)n * distq_dtype_size(val->dtype);
    void *want = malloc(bytes), *got = malloc(bytes);
    CU_ASSERT_FATAL(want && got);
    distq_status st = DISTQ_OK;
    if (!f->want(f->ctx, val, f->batch, want)) goto done;
    TEST_OK(distq_exec_get_value(f->e, name, got));
    if (val->dtype == DISTQ_DTYPE_U8) {
        test_code_diff d;
        test_codes_compare(want, got, n, val->quant_max, &d);
        f->sum->n_u8++;
        f->sum->off1 += d.off1;
        f->sum->worse += d.worse;
        f->sum->u8_elems += n;
        f->sum->at_qmax += d.at_qmax;
        if (f->verbose || d.exact != n) test_codes_print(f->what, name, &d);
        CU_ASSERT_EQUAL(d.worse, 0);
        CU_ASSERT((double)d.off1 <= TEST_MAX_OFF1 * (double)n);
    } else {
        double rel = test_f32_max_rel_diff(want, got, n);
        f->sum->n_f32++;
        f->sum->worst_f32 = fmax(f->sum->worst_f32, rel);
        if (f->verbose || !(rel <= TEST_F32_EXACT_TOL))
            printf("\n    %s: %-24s f32 max rel diff %.3g", f->what, name, rel);
        CU_ASSERT(rel <= TEST_F32_EXACT_TOL);
    }
    st = distq_onednn_put_value(distq_exec_impl_state(f->e), name, want);
done:
    free(want);
    free(got);
    return st;
}

void test_int8_run_forced(distq_exec *e, const distq_graph *q, int64_t batch, const float *x, float *output,
                          test_want_fn want, void *ctx, const char *what, int verbose, test_forced_sum *sum)
{
    memset(sum, 0, sizeof *sum);
    forcing f = {.e = e, .q = q, .batch = batch, .want = want, .ctx = ctx, .what = what, .verbose = verbose,
                 .sum = sum};
    TEST_OK(distq_onednn_run_observed(distq_exec_impl_state(e), x, output, force_value, &f));
    if (!verbose)
        printf("\n    %s: %d u8 values, off by one %lld of %lld codes, worse %lld; %d f32 values, max rel diff %.3g",
               what, sum->n_u8, (long long)sum->off1, (long long)sum->u8_elems, (long long)sum->worse, sum->n_f32,
               sum->worst_f32);
}

static double l2_diff(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s);
}

static int64_t argmax_row(const float *y, int64_t K, double *margin)
{
    int64_t best = 0, second = -1;
    for (int64_t k = 1; k < K; k++) {
        if (y[k] > y[best]) {
            second = best;
            best = k;
        } else if (second < 0 || y[k] > y[second]) {
            second = k;
        }
    }
    *margin = second >= 0 ? (double)y[best] - y[second] : INFINITY;
    return best;
}

void test_int8_vs_quant_noise(const char *what, const float *y_impl, const float *y_ref, const float *y_fp32,
                              int64_t batch, int64_t K)
{
    int64_t n = batch * K;
    double impl = l2_diff(y_impl, y_ref, n), quant = l2_diff(y_ref, y_fp32, n);
    double ratio = quant > 0 ? impl / quant : (impl > 0 ? INFINITY : 0);
    double signal = 0;
    for (int64_t i = 0; i < n; i++) signal += (double)y_fp32[i] * y_fp32[i];
    signal = sqrt(signal);
    int required = 0, agree_required = 0, agree = 0;
    if (K > 1)
        for (int64_t b = 0; b < batch; b++) {
            const float *r = y_ref + b * K, *f = y_fp32 + b * K, *m = y_impl + b * K;
            double margin, unused, row_quant = l2_diff(r, f, K);
            int64_t want = argmax_row(r, K, &margin), got = argmax_row(m, K, &unused);
            agree += want == got;
            if (margin > 2 * TEST_IMPL_VS_QUANT * row_quant) {
                required++;
                agree_required += want == got;
            }
        }
    printf("\n    %s: chained |impl - ref| / |ref - fp32| = %.4g / %.4g = %.4f (bound %.2f), |ref - fp32| / |fp32| "
           "%.4f",
           what, impl, quant, ratio, TEST_IMPL_VS_QUANT, quant / fmax(signal, 1e-30));
    if (K > 1)
        printf("; argmax agree %d/%lld (%d/%d where the margin requires it)", agree, (long long)batch,
               agree_required, required);
    CU_ASSERT(ratio <= TEST_IMPL_VS_QUANT);
    /* the bound tells a bug (a difference of about the signal) from tie flips
     * only while the quantization error is well below the signal */
    CU_ASSERT(quant <= 0.5 * signal);
    CU_ASSERT_EQUAL(agree_required, required);
}
