/* CUnit plumbing and numeric helpers shared by the test executables. */
#include "test_util.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "distq/exec.h"
#include "distq/tensor.h"
#include "hdf5.h"

/* Every test prints the ISA oneDNN dispatches (and the cap, ONEDNN_MAX_CPU_ISA,
 * under ctest's ISA matrix); a cap this CPU cannot reach would only rerun a
 * lower level under the wrong name, so it is a visible skip. */
static int report_isa(const char *suite_name)
{
    const char *cap = distq_onednn_max_isa();
    printf("%s: oneDNN ISA %s, cap %s\n", suite_name, distq_onednn_isa(), cap[0] ? cap : "none");
    if (distq_onednn_isa_below_cap()) {
        printf("SKIPPED: this CPU lacks %s (oneDNN would run %s)\n", cap, distq_onednn_isa());
        return 0;
    }
    return 1;
}

int test_run_suite(const char *suite_name, const test_case *cases, int n_cases)
{
    if (!report_isa(suite_name)) return TEST_SKIP_CODE;
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (!suite) goto fail;
    for (int i = 0; i < n_cases; i++)
        if (!CU_add_test(suite, cases[i].name, cases[i].fn)) goto fail;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
fail:
    fprintf(stderr, "CUnit setup failed: %s\n", CU_get_error_msg());
    CU_cleanup_registry();
    return 2;
}

void test_expect_error(distq_status got, distq_status want, const char *needle,
                       const char *expr_text, const char *file, int line)
{
    const char *msg = distq_error_message();
    int ok = got == want && (!needle || strstr(msg, needle) != NULL);
    if (!ok)
        fprintf(stderr, "\n  %s:%d: %s gave status %s, message \"%s\"; wanted %s containing \"%s\"\n",
                file, line, expr_text, distq_status_str(got), msg, distq_status_str(want),
                needle ? needle : "");
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, expr_text, file, "", CU_FALSE);
}

void test_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    distq_rng r;
    distq_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = distq_rng_uniform(&r, lo, hi);
}

double test_max_rel_err(const float *a, const float *ref, int64_t n)
{
    double scale = 1e-6, worst = 0.0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst / scale;
}

const char *test_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "tmp-%ld", (long)getpid());
        mkdir(dir, 0755);
    }
    return dir;
}

void test_tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", test_tmpdir(), name);
}

void test_assert_no_open_hdf5(void)
{
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) fprintf(stderr, "\n  %zd HDF5 objects still open\n", open_ids);
    CU_ASSERT_EQUAL(open_ids, 0);
}

int64_t test_alloc_sweep(const char *what, distq_status (*op)(void *ctx), void (*cleanup)(void *ctx), void *ctx)
{
    int64_t failed = 0, leaked_runs = 0, silent = 0;
    for (int64_t k = 1;; k++) {
        int64_t live = distq_alloc_live();
        distq_error_clear();
        distq_alloc_fail_nth(k);
        distq_status st = op(ctx);
        int hit = distq_alloc_failed();
        distq_alloc_fail_nth(0);
        cleanup(ctx);
        if (!hit) {
            CU_ASSERT_EQUAL(st, DISTQ_OK);
            break;
        }
        failed++;
        if (st == DISTQ_OK || !distq_error_message()[0]) silent++;
        if (distq_alloc_live() != live) leaked_runs++;
        if (st == DISTQ_OK || distq_alloc_live() != live)
            fprintf(stderr, "\n  %s: allocation %lld failed: status %s, %lld allocation(s) left behind", what,
                    (long long)k, distq_status_str(st), (long long)(distq_alloc_live() - live));
    }
    printf("\n    %s: %lld allocations failed in turn, %lld not reported as errors, %lld leaked", what,
           (long long)failed, (long long)silent, (long long)leaked_runs);
    CU_ASSERT(failed > 0);
    CU_ASSERT_EQUAL(silent, 0);
    CU_ASSERT_EQUAL(leaked_runs, 0);
    return failed;
}
