/*
 * The trainer's sgemm: C (M, N) [+]= op(A) (M, K) * op(B) (K, N), row-major.
 *
 * distq_sgemm calls oneDNN's dnnl_sgemm (distq_onednn_sgemm; its JIT kernels; single-threaded
 * here, because the trainer calls it inside its own OpenMP regions, where
 * nested parallelism is off). Measured on fmnist_cnn training, 2 ranks x 1
 * thread, batch 128: 855 images/s against 580 with the plain-C kernel below.
 *
 * distq_sgemm_ref is that plain-C kernel, kept as the reference the tests
 * compare against and as the fallback if oneDNN rejects a call: the GotoBLAS
 * loop nest, B packed in KC x NR panels, A in MR x KC panels (zero-padded at
 * the edges), and a MR x NR register-tile micro-kernel that gcc -O3
 * vectorizes by itself. No intrinsics: the blocked driver is compiled twice
 * (target_clones), once for FMA (which implies 256-bit AVX) and once for the
 * baseline ISA, and the loader picks one at run time. "fma" rather than
 * "arch=haswell": an arch= clone is chosen only on that very CPU family, so
 * an AMD EPYC fell back to SSE2 (29 vs 64 GFLOPS measured). fp-contract lets
 * gcc emit FMAs (ISO C mode turns contraction off by default).
 *
 * Deliberately not here: threading (callers parallelise over images), alpha
 * and general beta (0 or 1 is all the trainer needs), packed-B reuse across
 * calls.
 */
#include <string.h>

#include "distq/exec.h"
#include "train/train_impl.h"

/* Micro-tile 8 x 8: 8 ymm accumulators, which gcc keeps in registers (6 x 16
 * spills with plain C loops; measured 58 vs 41 GFLOPS in L1 on AVX2). */
#define MR 8
#define NR 8
#define KC 256
#define MC 128
#define NC 1024

size_t distq_sgemm_work_floats(void) { return (size_t)MC * KC + (size_t)KC * NC; }

/* op(A) rows [i0, i0+mc), cols [p0, p0+kc) -> MR-row panels, each (kc, MR).
 * Full panels copy fixed-size rows: a variable-length inner loop becomes a
 * call to memmove per 8 floats (measured: 20% of the time). */
static inline void pack_a(int ta, const float *A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                          int64_t kc, float *restrict out)
{
    for (int64_t ir = 0; ir < mc; ir += MR, out += kc * MR) {
        int64_t mr = mc - ir < MR ? mc - ir : MR;
        const float *a = ta ? A + p0 * lda + i0 + ir : A + (i0 + ir) * lda + p0;
        if (mr == MR && ta) {
            for (int64_t k = 0; k < kc; k++)
                for (int i = 0; i < MR; i++) out[k * MR + i] = a[k * lda + i];
        } else if (mr == MR) {
            for (int i = 0; i < MR; i++)
                for (int64_t k = 0; k < kc; k++) out[k * MR + i] = a[i * lda + k];
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int64_t i = 0; i < MR; i++)
                    out[k * MR + i] = i >= mr ? 0.0f : ta ? a[k * lda + i] : a[i * lda + k];
        }
    }
}

/* op(B) rows [p0, p0+kc), cols [j0, j0+nc) -> NR-col panels, each (kc, NR). */
static inline void pack_b(int tb, const float *B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                          int64_t nc, float *restrict out)
{
    for (int64_t jr = 0; jr < nc; jr += NR, out += kc * NR) {
        int64_t nr = nc - jr < NR ? nc - jr : NR;
        const float *b = tb ? B + (j0 + jr) * ldb + p0 : B + p0 * ldb + j0 + jr;
        if (nr == NR && !tb) {
            for (int64_t k = 0; k < kc; k++)
                for (int j = 0; j < NR; j++) out[k * NR + j] = b[k * ldb + j];
        } else if (nr == NR) {
            for (int j = 0; j < NR; j++)
                for (int64_t k = 0; k < kc; k++) out[k * NR + j] = b[j * ldb + k];
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int64_t j = 0; j < NR; j++)
                    out[k * NR + j] = j >= nr ? 0.0f : tb ? b[j * ldb + k] : b[k * ldb + j];
        }
    }
}

/* c (mr, nr) [+]= a (kc, MR)^T * b (kc, NR) */
static inline __attribute__((always_inline)) void micro_kernel(int64_t kc, const float *restrict a,
                                                               const float *restrict b,
                                                               float *restrict c, int64_t ldc,
                                                               int64_t mr, int64_t nr, int accumulate)
{
    float acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            float ai = a[k * MR + i];
#pragma GCC unroll 8
            for (int j = 0; j < NR; j++) acc[i][j] += ai * b[k * NR + j];
        }
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
    } else {
        for (int64_t i = 0; i < mr; i++)
            for (int64_t j = 0; j < nr; j++)
                c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
    }
}

__attribute__((target_clones("fma", "default"), optimize("fp-contract=fast")))
void distq_sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc, float *work)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    float *ap = work, *bp = work + (size_t)MC * KC;
    for (int64_t j0 = 0; j0 < N; j0 += NC) {
        int64_t nc = N - j0 < NC ? N - j0 : NC;
        for (int64_t p0 = 0; p0 < K; p0 += KC) {
            int64_t kc = K - p0 < KC ? K - p0 : KC;
            int acc = accumulate || p0 > 0;
            pack_b(tb, B, ldb, p0, kc, j0, nc, bp);
            for (int64_t i0 = 0; i0 < M; i0 += MC) {
                int64_t mc = M - i0 < MC ? M - i0 : MC;
                pack_a(ta, A, lda, i0, mc, p0, kc, ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nr = nc - jr < NR ? nc - jr : NR;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t mr = mc - ir < MR ? mc - ir : MR;
                        micro_kernel(kc, ap + ir * kc, bp + jr * kc, C + (i0 + ir) * ldc + j0 + jr,
                                     ldc, mr, nr, acc);
                    }
                }
            }
        }
    }
}

void distq_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc, float *work)
{
    if (M <= 0 || N <= 0) return;
    /* oneDNN returns an error only for arguments it considers invalid; the
     * plain kernel then computes the same product, so the result stands
     * (tests/test_train.c checks that oneDNN accepts the shapes used) */
    if (K > 0 && distq_onednn_sgemm(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc)) return;
    distq_sgemm_ref(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc, work);
}
