/* Evaluation: the int8 graph against its own fp32 graph on held-out data. */
#include <math.h>
#include <string.h>

#include "distq/io.h"
#include "distq/jobs.h"

static int64_t argmax(const float *x, int64_t k)
{
    int64_t best = 0;
    for (int64_t i = 1; i < k; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* (Re)builds *e for n images when its batch differs. */
static distq_status ensure(distq_exec **e, int64_t n, const distq_graph *g, const distq_graph *q,
                           distq_backend b)
{
    if (*e && distq_exec_batch(*e) == n) return DISTQ_OK;
    distq_exec_destroy(*e);
    *e = NULL;
    return g ? distq_exec_create(DISTQ_BACKEND_ONEDNN, g, n, e) : distq_exec_create(b, q, n, e);
}

distq_status distq_eval_run(const distq_graph *fp32, const distq_graph *q, distq_backend b,
                            const char *data_path, int64_t batch_size, const distq_job_ctx *ctx,
                            distq_eval_sums *sums)
{
    distq_data_file *data = NULL;
    distq_exec *e32 = NULL, *e8 = NULL;
    float *x = NULL, *y32 = NULL, *y8 = NULL;
    int64_t *labels = NULL;
    distq_status st = distq_data_open(data_path, ctx->comm, ctx->reducer, &data);
    if (st) return st;
    distq_data_info info = *distq_data_file_info(data);
    int64_t per = distq_value_numel(&fp32->values[fp32->input_value], 1);
    int64_t k = distq_value_numel(&fp32->values[fp32->output_values[0]], 1);
    if ((st = distq_data_check_input(data_path, &info, &fp32->values[fp32->input_value], "being evaluated")))
        goto cleanup;
    int64_t local_max = (batch_size + ctx->nranks - 1) / ctx->nranks;
    x = distq_malloc((size_t)(local_max * per) * sizeof *x);
    y32 = distq_malloc((size_t)(local_max * k) * sizeof *y32);
    y8 = distq_malloc((size_t)(local_max * k) * sizeof *y8);
    labels = distq_malloc((size_t)local_max * sizeof *labels);
    if (!x || !y32 || !y8 || !labels) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "batch size %lld (--batch-size, [eval] batch_size): out of memory",
                             (long long)batch_size);
        goto cleanup;
    }
    for (int64_t start = 0; start < info.n; start += batch_size) {
        int64_t size = info.n - start < batch_size ? info.n - start : batch_size, first, n;
        distq_shard_rows(start, size, ctx->rank, ctx->nranks, &first, &n);
        if (n == 0) continue;
        if ((st = distq_data_file_read(data, first, n, x, info.has_labels ? labels : NULL))) goto cleanup;
        for (int64_t i = 0; info.has_labels && i < n; i++)
            if (labels[i] < 0 || labels[i] >= k) {
                st = distq_error_set(DISTQ_ERR_FORMAT, "%s: /labels[%lld] = %lld is outside [0, %lld), the model's "
                                     "classes", data_path, (long long)(first + i), (long long)labels[i], (long long)k);
                goto cleanup;
            }
        if ((st = ensure(&e32, n, fp32, NULL, b)) || (st = ensure(&e8, n, NULL, q, b))) goto cleanup;
        if ((st = distq_exec_run(e32, x, y32)) || (st = distq_exec_run(e8, x, y8))) goto cleanup;
        for (int64_t i = 0; i < n; i++) {
            const float *a = y8 + i * k, *r = y32 + i * k;
            for (int64_t j = 0; j < k; j++) {
                double d = (double)a[j] - r[j];
                sums->sq_diff += d * d;
                sums->sq_ref += (double)r[j] * r[j];
            }
            int64_t t8 = argmax(a, k), t32 = argmax(r, k);
            sums->agree += t8 == t32;
            if (info.has_labels) {
                sums->labeled += 1;
                sums->correct_fp32 += t32 == labels[i];
                sums->correct_int8 += t8 == labels[i];
            }
        }
        sums->images += (double)n;
    }
cleanup:
    distq_data_close(data);
    distq_exec_destroy(e32);
    distq_exec_destroy(e8);
    distq_free(x);
    distq_free(y32);
    distq_free(y8);
    distq_free(labels);
    return st;
}

void distq_eval_finish(const distq_eval_sums *s, distq_eval_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->images = (int64_t)s->images;
    rep->rel_l2 = s->sq_ref > 0 ? sqrt(s->sq_diff / s->sq_ref) : 0.0;
    rep->top1_agreement = s->images > 0 ? s->agree / s->images : 0.0;
    rep->has_labels = s->labeled > 0;
    if (rep->has_labels) {
        rep->acc_fp32 = s->correct_fp32 / s->labeled;
        rep->acc_int8 = s->correct_int8 / s->labeled;
    }
}
