/* The PTQ job: load -> prepare -> calibrate over a dataset -> convert -> save. */
#include <string.h>

#include "distq/bench.h"
#include "distq/io.h"
#include "distq/jobs.h"

void distq_shard_rows(int64_t start, int64_t size, int rank, int nranks, int64_t *first, int64_t *count)
{
    int64_t lo = size * rank / nranks, hi = size * (rank + 1) / nranks;
    *first = start + lo;
    *count = hi - lo;
}

/* Every rank learns whether any rank failed (a no-op alone). */
static distq_status sync(const distq_job_ctx *ctx, distq_status st)
{
    const distq_reducer *r = ctx->reducer;
    return r && r->agree ? r->agree(r->ctx, st) : st;
}

distq_status distq_ptq_run(const distq_config *cfg, const distq_job_ctx *ctx, distq_ptq_report *rep,
                           distq_graph **q_out)
{
    distq_graph *g = NULL;
    distq_prepared *p = NULL;
    distq_calibrator *cal = NULL;
    distq_graph *q = NULL;
    float *images = NULL;
    distq_data_file *data = NULL;
    distq_data_info info = {0};
    memset(rep, 0, sizeof *rep);
    if (q_out) *q_out = NULL;
    distq_status st_args = DISTQ_OK;
    if (!cfg->model[0] || !cfg->calib_data[0] || (ctx->rank == 0 && !cfg->quantized[0]))
        st_args = distq_error_set(DISTQ_ERR_INVALID_ARG, "PTQ needs a model, calibration data and an output path");
    if ((st_args = sync(ctx, st_args))) return st_args; /* rank 0's output path: every rank stops */

    double t0 = distq_now_s();
    distq_status st = distq_job_load_model(cfg->model, ctx, &g); /* an ONNX file parsed once */
    /* the open is collective under MPI-IO: every rank makes it */
    distq_status st_open = distq_data_open(cfg->calib_data, ctx->comm, ctx->reducer, &data);
    if (!st) st = st_open;
    if (!st) info = *distq_data_file_info(data);
    if ((st = sync(ctx, st))) goto cleanup;
    int64_t per = distq_value_numel(&g->values[g->input_value], 1);
    int64_t B = cfg->calib_batch_size;
    int64_t total = cfg->calib_batches ? cfg->calib_batches * B : info.n;
    st = distq_data_check_input(cfg->calib_data, &info, &g->values[g->input_value], cfg->model);
    if (!st && (B < 1 || total < 1))
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "calibration of %s on %s: no images to calibrate on "
                             "(%lld batches of %lld)", cfg->model, cfg->calib_data,
                             (long long)cfg->calib_batches, (long long)B);
    if (!st && total > info.n)
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s holds %lld images; calibration asks for %lld batches of %lld",
                             cfg->calib_data, (long long)info.n, (long long)cfg->calib_batches, (long long)B);
    /* every rank takes the same branch, even where ranks see different files */
    if ((st = sync(ctx, st))) goto cleanup;
    rep->load_s = distq_now_s() - t0;

    t0 = distq_now_s();
    st = distq_prepare_excluding(g, cfg->observer, cfg->calib_exclude, &p);
    rep->prepare_s = distq_now_s() - t0;
    /* this rank's largest share of a global batch */
    int64_t local_max = (B + ctx->nranks - 1) / ctx->nranks;
    if (!st) {
        rep->n_observers = p->n_observers;
        images = distq_malloc((size_t)(local_max * per) * sizeof *images);
        if (!images)
            st = distq_error_set(DISTQ_ERR_NOMEM, "batch size %lld (--batch-size, [calibration] batch_size): out of "
                                 "memory for a calibration batch", (long long)B);
    }
    if (!st) st = distq_calibrator_create(p, local_max, ctx->reducer, &cal);
    if ((st = sync(ctx, st))) goto cleanup;
    t0 = distq_now_s();
    distq_progress prog = {.batches_total = (total + B - 1) / B, .images_total = total};
    for (int64_t start = 0; start < total; start += B) {
        int64_t size = total - start < B ? total - start : B, first, count;
        distq_shard_rows(start, size, ctx->rank, ctx->nranks, &first, &count);
        if (count > 0) st = distq_data_file_read(data, first, count, images, NULL);
        if ((st = sync(ctx, st))) goto cleanup;
        if ((st = distq_calibrate_batch(cal, images, count))) goto cleanup;
        prog.batches_done++;
        prog.images_done += size;
        prog.elapsed_s = distq_now_s() - t0;
        if (ctx->progress) ctx->progress(ctx->progress_user, &prog);
    }
    rep->calibrate_s = distq_now_s() - t0;
    rep->images = total;
    rep->batches = prog.batches_done;
    distq_calibrator_times(cal, &rep->forward_s, &rep->observe_s);

    /* Convert once: rank 0 converts and writes; the others read what it wrote.
     * (The observers are identical everywhere, but the file is the record.)
     * auto reduce_range: 7-bit activations where oneDNN's u8*s8 would saturate (no VNNI) */
    rep->reduce_range = cfg->reduce_range >= 0 ? cfg->reduce_range : !distq_backend_caps_of(DISTQ_BACKEND_ONEDNN).u8s8_exact;
    if (ctx->rank == 0) {
        t0 = distq_now_s();
        st = distq_convert(p, rep->reduce_range, &q);
        rep->convert_s = distq_now_s() - t0;
        t0 = distq_now_s();
        if (!st) {
            distq_quant_record rec = distq_prepared_record(p);
            st = distq_qmodel_save(&rec, q, cfg->quantized);
        }
        rep->save_s = distq_now_s() - t0;
    }
    if ((st = sync(ctx, st))) goto cleanup;
    if (ctx->rank != 0) st = distq_qmodel_load(cfg->quantized, &q, NULL);
    if ((st = sync(ctx, st))) goto cleanup;
    if (q_out) {
        *q_out = q;
        q = NULL;
    }
cleanup:
    distq_data_close(data);
    distq_free(images);
    distq_calibrator_destroy(cal);
    distq_graph_destroy(q);
    distq_prepared_destroy(p);
    distq_graph_destroy(g);
    return st;
}
