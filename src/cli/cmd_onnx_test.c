/* distq onnx-test: ONNX test cases (libonnx-testdata's, or exported models). */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "distq/jobs.h"
#include "distq/onnx.h"

static const char onnx_test_usage[] =
    "CASE_DIR... [--backend ref,onednn] [--rtol R] [--atol A | --logits-tol T] [-v]\n"
    "   or: distq onnx-test --suite DIR [...]   (every case folder in DIR whose ops distq imports)";

typedef struct {
    int passed, failed, refused, unclaimed;
} tally;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *outcome_name(distq_case_outcome o)
{
    return o == DISTQ_CASE_PASSED ? "passed" : o == DISTQ_CASE_FAILED ? "FAILED" : "unsupported";
}

/* One case on each backend: one line per (case, backend) unless it passed
 * and not verbose. */
static void run_case(const char *dir, const char *label, const distq_backend *bs, int n_b,
                     const distq_onnx_test_tol *tol, int verbose, int suite, tally *t)
{
    if (suite) {
        char model[4096], missing[128] = "";
        int claimed = 0;
        snprintf(model, sizeof model, "%s/model.onnx", dir);
        if (distq_onnx_claims(model, &claimed, missing, sizeof missing) || !claimed) {
            t->unclaimed++;
            if (verbose) printf("%-48s not claimed: op %s\n", label, claimed ? "?" : missing);
            return;
        }
    }
    for (int i = 0; i < n_b; i++) {
        distq_onnx_case_result r;
        distq_onnx_test_case(dir, bs[i], tol, &r);
        if (r.outcome == DISTQ_CASE_PASSED) t->passed++;
        else if (r.outcome == DISTQ_CASE_FAILED) t->failed++;
        else t->refused++;
        if (r.outcome != DISTQ_CASE_PASSED || verbose || !suite) {
            printf("%-48s %-6s %-11s", label, distq_backend_name(bs[i]), outcome_name(r.outcome));
            if (r.outcome != DISTQ_CASE_REFUSED)
                printf(" max |err| %.3g (max |ref| %.3g, %d data set%s)", r.max_abs_err, r.max_abs_ref,
                       r.n_sets, r.n_sets == 1 ? "" : "s");
            if (r.outcome != DISTQ_CASE_PASSED) printf(": %s", r.detail);
            printf("\n");
        }
    }
}

/* The case folders of a suite, sorted. */
static int list_suite(const char *suite, char ***names, int *n)
{
    DIR *d = opendir(suite);
    *names = NULL;
    *n = 0;
    if (!d) return -1;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            char **p = realloc(*names, (size_t)cap * sizeof *p);
            if (!p) break;
            *names = p;
        }
        if (!((*names)[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return 0;
}

int cmd_onnx_test(const cli_ctx *ctx, int argc, char **argv)
{
    const char *suite = NULL;
    const char *backends = "ref,onednn";
    distq_onnx_test_tol tol = {1e-3, 1e-7, 0.0};
    int verbose = 0;
    static const struct option opts[] = {{"backend", required_argument, 0, 'b'},
                                         {"suite", required_argument, 0, 's'},
                                         {"rtol", required_argument, 0, 'r'},
                                         {"atol", required_argument, 0, 'a'},
                                         {"logits-tol", required_argument, 0, 'l'},
                                         {"verbose", no_argument, 0, 'v'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    distq_status st = DISTQ_OK;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case 'b': backends = optarg; break;
        case 's': suite = optarg; break;
        case 'r': st = distq_parse_double("option --rtol", optarg, 0.0, &tol.rtol); break;
        case 'a': st = distq_parse_double("option --atol", optarg, 0.0, &tol.atol); break;
        case 'l': st = distq_parse_double("option --logits-tol", optarg, 0.0, &tol.logits_tol); break;
        case 'v': verbose = 1; break;
        case 'h': printf("usage: distq onnx-test %s\n", onnx_test_usage); return CLI_OK;
        default: return cli_usage_error("onnx-test", onnx_test_usage, "bad option");
        }
        if (st) return cli_usage_error("onnx-test", onnx_test_usage, "%s", distq_error_message());
    }
    if (!suite && optind >= argc)
        return cli_usage_error("onnx-test", onnx_test_usage, "a case folder or --suite DIR is required");
    if (suite && optind < argc)
        return cli_usage_error("onnx-test", onnx_test_usage, "unexpected argument '%s' with --suite", argv[optind]);
    distq_backend bs[DISTQ_BACKEND_COUNT];
    int n_b = 0;
    char list[64];
    snprintf(list, sizeof list, "%s", backends);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (n_b == DISTQ_BACKEND_COUNT || cli_parse_backend(tok, &bs[n_b]))
            return cli_usage_error("onnx-test", onnx_test_usage, "option --backend: '%s' is not ref or onednn", tok);
        n_b++;
    }
    if (ctx->rank != 0) return CLI_OK; /* one process checks; nothing to share */
    char isa[96];
    printf("onnx-test: oneDNN ISA %s; tolerance %s\n", cli_isa_text(isa, sizeof isa),
           tol.logits_tol > 0 ? "logits" : "ONNX's (|out - ref| <= atol + rtol |ref|)");
    tally t = {0};
    if (suite) {
        char **names;
        int n;
        if (list_suite(suite, &names, &n))
            return cli_fail(ctx, "onnx-test", distq_error_set(DISTQ_ERR_IO, "%s: cannot read the folder", suite));
        for (int i = 0; i < n; i++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s", suite, names[i]);
            run_case(dir, names[i], bs, n_b, &tol, verbose, 1, &t);
            free(names[i]);
        }
        free(names);
    } else {
        for (int i = optind; i < argc; i++) run_case(argv[i], argv[i], bs, n_b, &tol, verbose, 0, &t);
    }
    printf("%d passed, %d failed, %d unsupported", t.passed, t.failed, t.refused);
    if (suite) printf(" (case x backend); %d cases with ops distq does not import, not run", t.unclaimed);
    printf("\n");
    if (t.failed) return CLI_FAIL;
    /* a single case the importer refuses is a failure for the user who asked for it */
    if (!suite && t.refused) return CLI_FAIL;
    return CLI_OK;
}
