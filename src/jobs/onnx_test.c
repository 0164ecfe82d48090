/*
 * One ONNX test case on one backend: import model.onnx with every graph
 * input after the first bound to its data, run each data set at the batch of
 * its input_0, compare every output_k the way ONNX's backend runner does
 * (assert_allclose with rtol, atol) or, for whole models, against the
 * largest reference logit.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "distq/jobs.h"
#include "distq/onnx.h"
#include "distq/passes.h"

#define MAX_CASE_INPUTS 16

static int exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0;
}

/* dir/name into p[PATH_LEN]; a path that does not fit is an error, not a cut. */
#define PATH_LEN 4096
static distq_status join(char *p, const char *dir, const char *name)
{
    int n = snprintf(p, PATH_LEN, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_LEN) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: path too long", dir);
    return DISTQ_OK;
}

static void refuse(distq_onnx_case_result *r, const char *msg)
{
    r->outcome = DISTQ_CASE_REFUSED;
    snprintf(r->detail, sizeof r->detail, "%s", msg);
}

/* The inputs of one data set; *n of them read. */
static distq_status read_inputs(const char *set, distq_onnx_tensor *in, int *n)
{
    char p[PATH_LEN], name[32];
    *n = 0;
    for (int k = 0; k < MAX_CASE_INPUTS; k++) {
        snprintf(name, sizeof name, "input_%d.pb", k);
        distq_status st = join(p, set, name);
        if (st) return st;
        if (!exists(p)) break;
        st = distq_onnx_tensor_read(p, &in[k]);
        if (st) return st;
        *n = k + 1;
    }
    if (*n == 0) return distq_error_set(DISTQ_ERR_FORMAT, "%s: no input_0.pb", set);
    return DISTQ_OK;
}

/* Compares distq's out (n values) with the reference want of data set `set`'s
 * output k; the first mismatch goes to r->detail. */
static void compare_output(const char *set, int k, const float *out, const float *want, int64_t n,
                           const distq_onnx_test_tol *tol, distq_onnx_case_result *r, int *mismatch)
{
    double max_ref = 0.0;
    for (int64_t i = 0; i < n; i++) max_ref = fmax(max_ref, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - want[i]);
        if (isnan(out[i]) != isnan(want[i])) d = INFINITY;
        else if (isnan(out[i]) || (isinf(want[i]) && out[i] == want[i])) d = 0.0;
        int bad = tol->logits_tol > 0 ? d > tol->logits_tol * max_ref : d > tol->atol + tol->rtol * fabs(want[i]);
        if (d > r->max_abs_err || (bad && !*mismatch)) {
            r->max_abs_err = fmax(r->max_abs_err, d);
            if (bad && !*mismatch)
                snprintf(r->detail, sizeof r->detail, "%.300s: output %d element %lld is %.9g, expected %.9g", set,
                         k, (long long)i, (double)out[i], (double)want[i]);
        }
        if (bad) *mismatch = 1;
    }
    r->max_abs_ref = fmax(r->max_abs_ref, max_ref);
}

/* The reference outputs output_0.pb, output_1.pb ... of one data set; *n read. */
static distq_status read_outputs(const char *set, distq_onnx_tensor *ref, int *n)
{
    char p[PATH_LEN], name[32];
    *n = 0;
    for (int k = 0; k < DISTQ_MAX_OUTPUTS; k++) {
        snprintf(name, sizeof name, "output_%d.pb", k);
        distq_status st = join(p, set, name);
        if (st) return st;
        if (!exists(p)) break;
        if ((st = distq_onnx_tensor_read(p, &ref[k]))) return st;
        *n = k + 1;
        if (ref[k].t.dtype != DISTQ_DTYPE_F32)
            return distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: %s is not float (distq runs float activations)", set,
                                   name);
    }
    if (*n == 0) return distq_error_set(DISTQ_ERR_FORMAT, "%s: no output_0.pb", set);
    return DISTQ_OK;
}

/* Runs model on the inputs of one data set and compares every output. */
static distq_status run_set(const char *model, const char *set, distq_backend b,
                            const distq_onnx_test_tol *tol, distq_onnx_case_result *r, int *mismatch)
{
    distq_onnx_tensor in[MAX_CASE_INPUTS] = {0}, ref[DISTQ_MAX_OUTPUTS] = {0};
    const distq_tensor *bind[MAX_CASE_INPUTS] = {0};
    distq_graph *g = NULL;
    distq_exec *e = NULL;
    float *out[DISTQ_MAX_OUTPUTS] = {0};
    int n_in = 0, n_ref = 0;
    distq_status st = read_inputs(set, in, &n_in);
    if (!st) st = read_outputs(set, ref, &n_ref);
    for (int k = 1; k < n_in; k++) bind[k] = &in[k].t;
    distq_onnx_options opt = {.n_inputs = n_in, .input_values = bind};
    if (!st) st = distq_onnx_import(model, &opt, &g);
    const distq_tensor *x = &in[0].t;
    if (!st && x->dtype != DISTQ_DTYPE_F32)
        st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: input_0 is not float (distq runs float activations)", set);
    /* input_0 must be (batch, the graph input's per-image dims) */
    if (!st && (x->ndim != g->input_ndim ||
                memcmp(x->dims + 1, g->input_dims + 1, (size_t)(x->ndim - 1) * sizeof *x->dims)))
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: input_0 does not have the model's input shape", set);
    if (!st && g->n_outputs != n_ref)
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: the model has %d outputs, the data set %d", set, g->n_outputs,
                             n_ref);
    if (!st && b == DISTQ_BACKEND_ONEDNN) st = distq_pass_fold_bn(g, NULL); /* the frozen graph */
    int64_t batch = !st ? x->dims[0] : 0;
    if (!st) st = distq_exec_create(b, g, batch, &e);
    for (int k = 0; k < n_ref && !st; k++) {
        int64_t n_out = batch * distq_exec_output_numel_at(e, k);
        if (n_out != distq_tensor_numel(&ref[k].t))
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: distq computes %lld values of output %d, output_%d holds %lld",
                                 set, (long long)n_out, k, k, (long long)distq_tensor_numel(&ref[k].t));
        else if (!(out[k] = distq_malloc((size_t)(n_out ? n_out : 1) * sizeof *out[k])))
            st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory");
    }
    if (!st) st = distq_exec_run_all(e, x->data, out);
    for (int k = 0; k < n_ref && !st; k++)
        compare_output(set, k, out[k], ref[k].t.data, distq_tensor_numel(&ref[k].t), tol, r, mismatch);
    for (int k = 0; k < DISTQ_MAX_OUTPUTS; k++) {
        distq_free(out[k]);
        distq_onnx_tensor_free(&ref[k]);
    }
    distq_exec_destroy(e);
    distq_graph_destroy(g);
    for (int k = 0; k < n_in; k++) distq_onnx_tensor_free(&in[k]);
    return st;
}

void distq_onnx_test_case(const char *dir, distq_backend b, const distq_onnx_test_tol *tol,
                          distq_onnx_case_result *r)
{
    memset(r, 0, sizeof *r);
    char model[PATH_LEN], set[PATH_LEN], name[32];
    if (join(model, dir, "model.onnx")) {
        refuse(r, distq_error_message());
        return;
    }
    int mismatch = 0;
    for (int s = 0;; s++) {
        snprintf(name, sizeof name, "test_data_set_%d", s);
        distq_status st = join(set, dir, name);
        if (!st && !exists(set)) break;
        if (!st) st = run_set(model, set, b, tol, r, &mismatch);
        if (st) {
            refuse(r, distq_error_message());
            return;
        }
        r->n_sets++;
    }
    if (r->n_sets == 0) {
        refuse(r, "no test_data_set_0 folder");
        return;
    }
    r->outcome = mismatch ? DISTQ_CASE_FAILED : DISTQ_CASE_PASSED;
}
