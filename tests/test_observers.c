/* Observers and qparams: hand-computed cases, PyTorch reference values for the
 * histogram search (scripts/ref_hist_search.py), and exact merging. */
#include <math.h>
#include <string.h>

#include "distq/observers.h"
#include "distq/tensor.h"
#include "test_util.h"

static void expect_qp(float min, float max, float scale, int32_t zp)
{
    distq_qparams q;
    TEST_OK(distq_qparams_affine(min, max, 0, 255, &q));
    CU_ASSERT_DOUBLE_EQUAL(q.scale, scale, 1e-9);
    CU_ASSERT_EQUAL(q.zero_point, zp);
}

static void test_affine_edge_cases(void)
{
    expect_qp(0.0f, 0.0f, DISTQ_QEPS, 0);            /* all-zero tensor: eps scale */
    expect_qp(3.0f, 3.0f, 3.0f / 255, 0);            /* constant > 0: range [0, 3] */
    expect_qp(2.0f, 5.0f, 5.0f / 255, 0);            /* min > 0 widens to 0 */
    expect_qp(-4.0f, -1.0f, 4.0f / 255, 255);        /* max < 0 widens to 0 */
    expect_qp(-1.0f, 3.0f, 4.0f / 255, 64);          /* -(-1 / (4/255)) = 63.75 -> 64 */
    expect_qp(0.01f, 0.02f, DISTQ_QEPS, 0);          /* range < 255 * 2^-12: eps clamps */
    /* Tie: scale 1/16 exactly, mn/scale = -2.5 rounds to even (-2), zp 2. */
    expect_qp(-0.15625f, 15.78125f, 0.0625f, 2);
    distq_qparams q;
    TEST_OK(distq_qparams_affine(INFINITY, -INFINITY, 0, 255, &q)); /* never observed */
    CU_ASSERT_EQUAL(q.scale, 1.0f);
    CU_ASSERT_EQUAL(q.zero_point, 0);
    TEST_ERR(distq_qparams_affine(NAN, 1.0f, 0, 255, &q), DISTQ_ERR_INVALID_ARG, "bad observed range");
    TEST_ERR(distq_qparams_affine(2.0f, 1.0f, 0, 255, &q), DISTQ_ERR_INVALID_ARG, "bad observed range");
}

static void test_symmetric_weights(void)
{
    CU_ASSERT_DOUBLE_EQUAL(distq_qparams_symmetric_scale(-0.5f, 0.3f), 0.5f / 127.5f, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(distq_qparams_symmetric_scale(-0.1f, 0.7f), 0.7f / 127.5f, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(distq_qparams_symmetric_scale(0.0f, 0.01f), DISTQ_QEPS, 0);
    /* amax maps to about 127.5: +amax clamps to 127. With the f32 reciprocal
     * 1/(1/127.5) = 127.49999 (numpy agrees), so -amax gives -127, not the
     * -128 that exact arithmetic (spec §3.6) would. */
    float s = distq_qparams_symmetric_scale(-1.0f, 1.0f);
    CU_ASSERT_EQUAL(distq_quantize_value(1.0f, 1.0f / s, 0, -128, 127), 127);
    CU_ASSERT_EQUAL(distq_quantize_value(-1.0f, 1.0f / s, 0, -128, 127), -127);
}

static void test_quantize_rounding(void)
{
    CU_ASSERT_EQUAL(distq_quantize_value(0.5f, 1.0f, 0, 0, 255), 0);   /* half to even */
    CU_ASSERT_EQUAL(distq_quantize_value(1.5f, 1.0f, 0, 0, 255), 2);
    CU_ASSERT_EQUAL(distq_quantize_value(2.5f, 1.0f, 10, 0, 255), 12);
    CU_ASSERT_EQUAL(distq_quantize_value(-3.0f, 1.0f, 1, 0, 255), 0);  /* saturates */
    CU_ASSERT_EQUAL(distq_quantize_value(1e30f, 1.0f, 0, 0, 255), 255);
}

static void test_minmax(void)
{
    float a[4] = {1, -2, 3, 0.5f}, b[2] = {7, -1}, bad[3] = {1, NAN, 2}, inf[2] = {INFINITY, 0};
    distq_minmax_state st, other;
    distq_minmax_init(&st);
    TEST_OK(distq_minmax_observe(&st, a, 4));
    TEST_OK(distq_minmax_observe(&st, b, 2));
    CU_ASSERT_EQUAL(st.min, -2.0f);
    CU_ASSERT_EQUAL(st.max, 7.0f);
    TEST_ERR(distq_minmax_observe(&st, bad, 3), DISTQ_ERR_INVALID_ARG, "NaN at element 1");
    TEST_ERR(distq_minmax_observe(&st, inf, 2), DISTQ_ERR_INVALID_ARG, "Inf at element 0");
    /* merging is order-free: (b then a) == (a then b) */
    distq_minmax_init(&other);
    distq_minmax_observe(&other, b, 2);
    distq_minmax_state first;
    distq_minmax_init(&first);
    distq_minmax_observe(&first, a, 4);
    distq_minmax_merge(&other, &first);
    CU_ASSERT_EQUAL(memcmp(&other, &st, sizeof st), 0);
    float w[6] = {1, -3, 2, 0.5f, 0.25f, -0.75f}, mn[2], mx[2];
    distq_minmax_per_channel(w, 2, 3, mn, mx);
    CU_ASSERT_EQUAL(mn[0], -3.0f);
    CU_ASSERT_EQUAL(mx[0], 2.0f);
    CU_ASSERT_EQUAL(mn[1], -0.75f);
    CU_ASSERT_EQUAL(mx[1], 0.5f);
}

static void test_histc(void)
{
    float x[5] = {0.0f, 0.5f, 1.0f, -1.0f, 2.0f};
    int64_t c[DISTQ_HIST_BINS] = {0};
    distq_histc(x, 5, 0.0f, 1.0f, c);
    CU_ASSERT_EQUAL(c[0], 1);
    CU_ASSERT_EQUAL(c[1024], 1);
    CU_ASSERT_EQUAL(c[2047], 1); /* the max goes to the last bin; out-of-range ignored */
    int64_t total = 0;
    for (int i = 0; i < DISTQ_HIST_BINS; i++) total += c[i];
    CU_ASSERT_EQUAL(total, 3);
}

/* ERROR by hand: bw 1, one bin of 3 at bin 0, full range -> dw 8, the bin sits
 * in level 0 whose centre is 4: 3 * ((1-4)^3 - (0-4)^3) / 3 = 37. */
static void test_hist_error_by_hand(void)
{
    distq_hist_state h;
    distq_hist_init(&h);
    h.min = 0.0f;
    h.max = 2048.0f;
    h.hist[0] = 3.0;
    CU_ASSERT_DOUBLE_EQUAL(distq_hist_error(&h, 0, 2047), 37.0, 1e-9);
    /* Keep only bins 0..255 (dw = 1): the bin is its own level, error 3 * 2 * 0.5^3 / 3 = 0.25. */
    CU_ASSERT_DOUBLE_EQUAL(distq_hist_error(&h, 0, 255), 0.25, 1e-12);
}

/* Reference values printed by scripts/ref_hist_search.py with PyTorch 1.13. */
static void test_hist_search_vs_pytorch(void)
{
    distq_hist_state h;
    distq_qparams q;
    float lo, hi;
    distq_hist_init(&h);
    for (int i = 0; i < 300; i++) h.hist[i] = (double)((i * 37) % 101);
    h.hist[1500] = 3.0;
    h.hist[2047] = 1.0;
    h.min = -1.5f;
    h.max = 6.5f;
    TEST_OK(distq_hist_qparams(&h, &q, &lo, &hi));
    CU_ASSERT_DOUBLE_EQUAL(lo, -1.5, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(hi, 6.49609375, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(q.scale, 0.0313572288, 1e-8);
    CU_ASSERT_EQUAL(q.zero_point, 48);

    distq_hist_init(&h);
    for (int i = 0; i < 2048; i++) h.hist[i] = nearbyint(1000.0 * exp(-0.5 * pow((i - 1024) / 200.0, 2)));
    h.min = -3.0f;
    h.max = 5.0f;
    TEST_OK(distq_hist_qparams(&h, &q, &lo, &hi));
    CU_ASSERT_DOUBLE_EQUAL(lo, -2.0234375, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(hi, 3.88671875, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(q.scale, 0.0231770836, 1e-8);
    CU_ASSERT_EQUAL(q.zero_point, 87);
}

/* A batch split over "ranks" (min/max reduced, counts summed) gives the same
 * state bit for bit as the whole batch in one process. */
static void test_hist_split_batch_exact(void)
{
    enum { N = 5000 };
    static float x[N];
    test_fill_uniform(x, N, 5, -2.0f, 3.0f);
    distq_hist_state whole, split;
    distq_hist_init(&whole);
    distq_hist_init(&split);
    for (int batch = 0; batch < 2; batch++) {
        /* second batch: wider range, so the old histogram is resampled */
        for (int i = 0; batch == 1 && i < N; i++) x[i] *= 1.7f;
        TEST_OK(distq_hist_observe(&whole, x, N));
        int cut[4] = {0, 1234, 1235, N}; /* three uneven "ranks", one nearly empty */
        float lo = INFINITY, hi = -INFINITY, l, h, nlo, nhi;
        for (int r = 0; r < 3; r++) {
            TEST_OK(distq_batch_minmax(x + cut[r], cut[r + 1] - cut[r], &l, &h));
            lo = fminf(lo, l);
            hi = fmaxf(hi, h);
        }
        distq_hist_update_range(&split, lo, hi, &nlo, &nhi);
        int64_t counts[DISTQ_HIST_BINS] = {0};
        for (int r = 0; r < 3; r++) distq_histc(x + cut[r], cut[r + 1] - cut[r], nlo, nhi, counts);
        distq_hist_apply(&split, nlo, nhi, counts);
    }
    CU_ASSERT_EQUAL(memcmp(&whole, &split, sizeof whole), 0);
}

/* One batch vs the same images in several batches: min/max identical; the
 * histogram differs once its range grows (resampling), and is identical when
 * the first batch already spans the range. */
static void test_batches_vs_one(void)
{
    enum { N = 3000 };
    static float x[N];
    test_fill_uniform(x, N, 9, -1.0f, 1.0f);
    distq_minmax_state m1, m3;
    distq_hist_state h1, h3;
    distq_minmax_init(&m1);
    distq_minmax_init(&m3);
    distq_hist_init(&h1);
    distq_hist_init(&h3);
    x[0] = -5.0f; /* the first batch holds both extremes */
    x[1] = 5.0f;
    TEST_OK(distq_minmax_observe(&m1, x, N));
    TEST_OK(distq_hist_observe(&h1, x, N));
    for (int b = 0; b < 3; b++) {
        TEST_OK(distq_minmax_observe(&m3, x + b * 1000, 1000));
        TEST_OK(distq_hist_observe(&h3, x + b * 1000, 1000));
    }
    CU_ASSERT_EQUAL(memcmp(&m1, &m3, sizeof m1), 0);
    CU_ASSERT_EQUAL(memcmp(&h1, &h3, sizeof h1), 0);
    /* Extremes in the last batch: the histogram is resampled, so it differs. */
    x[0] = x[1] = 0.0f;
    x[N - 1] = 9.0f;
    distq_hist_init(&h1);
    distq_hist_init(&h3);
    TEST_OK(distq_hist_observe(&h1, x, N));
    for (int b = 0; b < 3; b++) TEST_OK(distq_hist_observe(&h3, x + b * 1000, 1000));
    CU_ASSERT_NOT_EQUAL(memcmp(h1.hist, h3.hist, sizeof h1.hist), 0);
    double t1 = 0, t3 = 0; /* resampling keeps the total mass */
    for (int i = 0; i < DISTQ_HIST_BINS; i++) {
        t1 += h1.hist[i];
        t3 += h3.hist[i];
    }
    CU_ASSERT_DOUBLE_EQUAL(t1, t3, 1e-6);
}

/* EMA: first batch sets, later batches move by 1%. */
static void test_ema_minmax(void)
{
    distq_minmax_state st;
    distq_minmax_init(&st);
    distq_ema_minmax_update(&st, -1.0f, 3.0f, DISTQ_EMA_CONSTANT);
    CU_ASSERT_EQUAL(st.min, -1.0f);
    CU_ASSERT_EQUAL(st.max, 3.0f);
    distq_ema_minmax_update(&st, -2.0f, 5.0f, DISTQ_EMA_CONSTANT);
    CU_ASSERT_DOUBLE_EQUAL(st.min, -1.01, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(st.max, 3.02, 1e-6);
}

/* Fake quant == quantize then dequantize; the mask marks the unclamped range. */
static void test_fake_quant(void)
{
    float x[6] = {-1.0f, 0.0f, 0.26f, 0.75f, 3.0f, 100.0f}, y[6];
    uint8_t mask[6];
    const float s = 0.5f;
    const int32_t zp = 2, qmax = 10; /* representable: [-1, 4] */
    distq_fake_quant(x, 6, s, zp, 0, qmax, y, mask);
    for (int i = 0; i < 6; i++) {
        int32_t q = distq_quantize_value(x[i], 1.0f / s, zp, 0, qmax);
        CU_ASSERT_EQUAL(y[i], (float)(q - zp) * s);
    }
    CU_ASSERT_EQUAL(y[2], 0.5f);  /* 0.52 -> 1 */
    CU_ASSERT_EQUAL(y[3], 1.0f);  /* 1.5 -> 2 (half to even) */
    uint8_t want[6] = {1, 1, 1, 1, 1, 0}; /* 3.0 -> q 8 inside; 100 -> q 202 outside */
    CU_ASSERT_EQUAL(memcmp(mask, want, 6), 0);
    float w[4] = {0.5f, -1.0f, 0.01f, 2.0f}, ws[2] = {1.0f / 127.0f, 0.01f}, wq[4];
    uint8_t wm[4];
    distq_fake_quant_per_channel(w, 2, 2, ws, wq, wm);
    CU_ASSERT_DOUBLE_EQUAL(wq[0], 64.0f / 127.0f, 1e-7); /* 63.5 -> 64 */
    CU_ASSERT_DOUBLE_EQUAL(wq[1], -1.0f, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(wq[3], 1.27f, 1e-6);          /* 200 clamps to 127 */
    CU_ASSERT_EQUAL(wm[3], 0);
    CU_ASSERT_EQUAL(wm[2], 1);
}

int main(void)
{
    static const test_case cases[] = {
        {"affine qparams edge cases", test_affine_edge_cases},
        {"symmetric weight scale", test_symmetric_weights},
        {"quantize rounds half to even", test_quantize_rounding},
        {"minmax observe/merge/NaN", test_minmax},
        {"histc bins", test_histc},
        {"histogram ERROR by hand", test_hist_error_by_hand},
        {"histogram search vs PyTorch 1.13", test_hist_search_vs_pytorch},
        {"histogram split batch exact", test_hist_split_batch_exact},
        {"one batch vs several", test_batches_vs_one},
        {"moving-average min/max", test_ema_minmax},
        {"fake quant and STE mask", test_fake_quant},
    };
    return test_run_suite("observers", cases, sizeof cases / sizeof cases[0]);
}
