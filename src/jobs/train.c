/*
 * Data-parallel training (`distq train`, fp32; `distq qat`, the same loop
 * with fake quantization, then conversion to int8): every rank holds the model and
 * the training set, takes its contiguous share of every global batch (the
 * same seeded shuffle on every rank), and after backward the gradients are
 * summed in one fused MPI_Allreduce; BN batch statistics are summed inside the
 * step (the reducer of distq/reducer.h). Every rank then applies the same SGD update, so
 * the weights stay identical and the run equals one process with the global
 * batch, up to fp32 summation order. Rank 0 checkpoints after every epoch.
 */
#include <math.h>
#include <string.h>

#include "distq/bench.h"
#include "distq/dist.h"
#include "distq/exec.h"
#include "distq/io.h"
#include "distq/jobs.h"
#include "distq/qat.h"
#include "distq/train.h"

/* The same permutation of [0, n) on every rank: Fisher-Yates on a seeded stream. */
static void shuffle(int64_t *perm, int64_t n, uint64_t seed)
{
    distq_rng r;
    distq_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(distq_rng_next(&r) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Whole dataset in memory (Fashion-MNIST: 188 MB of f32). Labels are checked
 * here, on every rank alike: a bad one found inside a step would stop one
 * rank while the others wait in the step's collectives. */
static distq_status load_all(const char *path, const distq_value *input, const char *model_path, int64_t classes,
                             float **x, int64_t **y, int64_t *n)
{
    distq_data_info info;
    distq_status st = distq_data_info_read(path, &info);
    if (st) return st;
    if (!info.has_labels) return distq_error_set(DISTQ_ERR_FORMAT, "%s: training needs /labels", path);
    if ((st = distq_data_check_input(path, &info, input, model_path))) return st;
    int64_t per = distq_value_numel(input, 1);
    *x = distq_malloc((size_t)(info.n * per) * sizeof **x);
    *y = distq_malloc((size_t)info.n * sizeof **y);
    if (!*x || !*y) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory loading %s", path);
    *n = info.n;
    st = distq_data_read(path, 0, info.n, *x, *y);
    for (int64_t i = 0; !st && i < info.n; i++)
        if ((*y)[i] < 0 || (*y)[i] >= classes)
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: /labels[%lld] = %lld is outside [0, %lld), the model's classes",
                                 path, (long long)i, (long long)(*y)[i], (long long)classes);
    return st;
}

/* What test accuracy is measured with: the trainer (fp32, or QAT's fake
 * quant) or a frozen int8 executor built for `chunk` images (a short last
 * chunk is padded through `pad`). */
typedef struct {
    distq_trainer *t;
    distq_exec *e;
    float *pad;
} predictor;

static distq_status predict(const predictor *p, const float *x, int64_t m, int64_t chunk, int64_t per, float *logits)
{
    if (p->t) return distq_trainer_predict(p->t, x, m, logits);
    if (m == chunk) return distq_exec_run(p->e, x, logits);
    memcpy(p->pad, x, (size_t)(m * per) * sizeof *x);
    memset(p->pad + m * per, 0, (size_t)((chunk - m) * per) * sizeof *x);
    return distq_exec_run(p->e, p->pad, logits);
}

/* Accuracy on this rank's share of (x, y), counts summed over ranks. logits:
 * chunk x k floats. */
static distq_status test_accuracy(const predictor *p, distq_dist *d, const float *x, const int64_t *y, int64_t n,
                                  int64_t per, int64_t k, int64_t chunk, float *logits, double *acc)
{
    int64_t first, count;
    distq_shard_rows(0, n, d->rank, d->size, &first, &count);
    double sums[2] = {0, (double)count};
    distq_status st = DISTQ_OK;
    for (int64_t s = 0; s < count && !st; s += chunk) {
        int64_t m = count - s < chunk ? count - s : chunk;
        st = predict(p, x + (first + s) * per, m, chunk, per, logits);
        for (int64_t i = 0; !st && i < m; i++) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (logits[i * k + j] > logits[i * k + best]) best = j;
            sums[0] += best == y[first + s + i];
        }
    }
    if ((st = distq_dist_agree(d, st))) return st;
    if ((st = distq_dist_allreduce_f64(d, sums, 2, DISTQ_DIST_SUM, "test accuracy"))) return st;
    *acc = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
    return DISTQ_OK;
}

/* After QAT: every rank converts (the state is identical on every rank), rank
 * 0 writes the int8 model, and the int8 graph's test accuracy is measured on
 * the same shards as the fake-quant one. */
static distq_status finish_qat(const distq_config *cfg, distq_dist *d, const distq_graph *g, const distq_qat *q,
                               const float *xt, const int64_t *yt, int64_t nt, int64_t per, int64_t k,
                               int64_t chunk, float *pad, float *logits, distq_train_report *rep)
{
    distq_prepared *p = NULL;
    distq_graph *qg = NULL;
    distq_exec *e = NULL;
    distq_status st = distq_qat_convert(g, q, &p, &qg);
    if (!st && cfg->quantized[0] && d->rank == 0) {
        distq_quant_record rec = distq_prepared_record(p);
        st = distq_qmodel_save(&rec, qg, cfg->quantized);
    }
    if (!st && nt) st = distq_exec_create(DISTQ_BACKEND_ONEDNN, qg, chunk, &e);
    if ((st = distq_dist_agree(d, st))) goto done;
    if (nt) {
        predictor pr = {.e = e, .pad = pad};
        st = test_accuracy(&pr, d, xt, yt, nt, per, k, chunk, logits, &rep->int8_test_acc);
    }
done:
    distq_exec_destroy(e);
    distq_graph_destroy(qg);
    distq_prepared_destroy(p);
    return st;
}

distq_status distq_train_job(const distq_config *cfg, distq_dist *d, int qat, int resume, distq_epoch_fn on_epoch,
                             void *user, distq_train_report *rep)
{
    distq_graph *g = NULL;
    distq_trainer *t = NULL;
    distq_qat *q = NULL;
    float *qstate = NULL;
    int64_t n_qstate = 0;
    distq_sgd sgd = {0};
    float *x = NULL, *xt = NULL, *batch = NULL, *logits = NULL, *velocity = NULL, *qstate_buf = NULL;
    int64_t *y = NULL, *yt = NULL, *labels = NULL, *perm = NULL, n = 0, nt = 0, n_vel = 0, step = 0, epoch0 = 0;
    distq_reducer red = distq_dist_reducer(d);
    distq_status st = DISTQ_OK;
    memset(rep, 0, sizeof *rep);
    rep->int8_test_acc = rep->final.test_acc = -1;
    int64_t B = cfg->train_batch_size;
    if (!cfg->train_data[0] || (!cfg->model[0] && !resume))
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "training needs [model] path and [train] data");
    else if (B < d->size)
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "[train] batch_size %lld is smaller than the %d ranks",
                             (long long)B, d->size);
    else if (resume && !cfg->checkpoint[0])
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "--resume needs [train] checkpoint");
    distq_placement pl;
    char warn[256];
    if (!st) st = distq_place(d, cfg->bind, (int)cfg->bench_threads, &pl, warn, sizeof warn);
    if ((st = distq_dist_agree(d, st))) return st;
    rep->threads = pl.threads;
    /* auto reduce_range as in PTQ: 7-bit activations where oneDNN's u8*s8 would
     * saturate (no VNNI); on every rank if on any, since ranks must fake-quantize alike */
    int no_vnni = !distq_backend_caps_of(DISTQ_BACKEND_ONEDNN).u8s8_exact;
    if ((st = distq_dist_allreduce_int(d, &no_vnni, 1, DISTQ_DIST_LOR, "the CPUs' VNNI support"))) return st;
    int reduce_range = cfg->reduce_range >= 0 ? cfg->reduce_range : no_vnni;

    st = resume ? distq_checkpoint_load(cfg->checkpoint, &g, &velocity, &n_vel, &step, &epoch0, &qstate, &n_qstate)
                : distq_model_load(cfg->model, &g);
    if (!st && resume && !qat != !n_qstate)
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: this is %s checkpoint; resume it with `distq %s`",
                             cfg->checkpoint, n_qstate ? "a QAT" : "an fp32", n_qstate ? "qat" : "train");
    if (!st && qat) {
        distq_qat_opts qo = {.reduce_range = reduce_range};
        st = distq_qat_create(g, &qo, &q);
        if (!st && resume && (st = distq_qat_state_set(q, qstate, n_qstate)))
            st = distq_error_set(st, "%s: dataset /qat/state: %s", cfg->checkpoint, distq_error_message());
        /* resumed: the checkpoint's activation grid wins over auto, not over a setting */
        if (!st && resume && cfg->reduce_range >= 0 && cfg->reduce_range != distq_qat_reduce_range(q))
            st = distq_error_set(DISTQ_ERR_INVALID_ARG,
                                 "%s was trained with reduce_range %s; the config sets reduce_range = %s "
                                 "(auto resumes as trained)",
                                 cfg->checkpoint, distq_qat_reduce_range(q) ? "on" : "off",
                                 cfg->reduce_range ? "on" : "off");
        /* 8-bit activations train anywhere, but their int8 test at the end needs VNNI:
         * refuse now rather than after the training */
        else if (!st && !distq_qat_reduce_range(q) && no_vnni && cfg->test_data[0])
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED,
                                 "%s%s reduce_range off (8-bit activations), but oneDNN has no VNNI on some "
                                 "rank, so the int8 test accuracy at the end could not run; use VNNI CPUs%s, or "
                                 "leave out [train] test",
                                 resume ? cfg->checkpoint : "the config sets", resume ? " was trained with" : "",
                                 resume ? "" : ", reduce_range = auto or on");
        if (!st) rep->reduce_range = distq_qat_reduce_range(q);
    }
    int64_t per = 0, k = 0, local_max = (B + d->size - 1) / d->size;
    if (!st) {
        per = distq_value_numel(&g->values[g->input_value], 1);
        k = distq_value_numel(&g->values[g->output_values[0]], 1);
        st = load_all(cfg->train_data, &g->values[g->input_value], cfg->model, k, &x, &y, &n);
    }
    if (!st && cfg->test_data[0]) st = load_all(cfg->test_data, &g->values[g->input_value], cfg->model, k, &xt, &yt, &nt);
    if (!st) {
        distq_train_opts opts = {.max_batch = local_max, .loss = DISTQ_LOSS_CROSS_ENTROPY, .reducer = &red};
        st = distq_trainer_create(g, &opts, &t);
        if (!st && q) st = distq_trainer_attach_qat(t, q);
    }
    if (!st) st = distq_sgd_init(&sgd, t, (float)cfg->lr, (float)cfg->momentum, (float)cfg->weight_decay);
    if (!st && resume) {
        if (n_vel != sgd.count && n_vel != 0)
            st = distq_error_set(DISTQ_ERR_FORMAT, "%s: %lld optimizer values, the model has %lld",
                                 cfg->checkpoint, (long long)n_vel, (long long)sgd.count);
        else if (n_vel) memcpy(sgd.velocity, velocity, (size_t)n_vel * sizeof(float));
        sgd.step = step;
    }
    if (!st) {
        batch = distq_malloc((size_t)(local_max * per) * sizeof *batch);
        labels = distq_malloc((size_t)local_max * sizeof *labels);
        logits = distq_malloc((size_t)(local_max * k) * sizeof *logits);
        perm = distq_malloc((size_t)(n + 1) * sizeof *perm);
        if (q) qstate_buf = distq_malloc((size_t)distq_qat_state_count(q) * sizeof *qstate_buf);
        if (!batch || !labels || !logits || !perm || (q && !qstate_buf))
            st = distq_error_set(DISTQ_ERR_NOMEM, "[train] batch_size %lld: out of memory for a training batch",
                                 (long long)B);
    }
    if ((st = distq_dist_agree(d, st))) goto cleanup;

    int64_t n_grads = 0;
    float *grads = distq_trainer_grads(t, &n_grads);
    for (int64_t epoch = epoch0; epoch < cfg->epochs; epoch++) {
        int64_t decays = cfg->lr_step_epochs ? epoch / cfg->lr_step_epochs : 0;
        sgd.lr = (float)(cfg->lr * pow(cfg->lr_gamma, (double)decays));
        shuffle(perm, n, (uint64_t)cfg->train_seed * 1000003u + (uint64_t)epoch);
        double sums[3] = {0, 0, 0}; /* loss, correct, images */
        double t0 = distq_now_s();
        for (int64_t s = 0; s < n; s += B) {
            int64_t size = n - s < B ? n - s : B, first, count;
            distq_shard_rows(s, size, d->rank, d->size, &first, &count);
            for (int64_t i = 0; i < count; i++) {
                memcpy(batch + i * per, x + perm[first + i] * per, (size_t)per * sizeof *batch);
                labels[i] = y[perm[first + i]];
            }
            if (q) {
                /* the usual QAT schedule: BN statistics, then observers, freeze after a number of steps */
                distq_qat_set_observers(q, !(cfg->qat_freeze_observers_after && sgd.step >= cfg->qat_freeze_observers_after));
                distq_trainer_freeze_bn(t, cfg->qat_freeze_bn_after && sgd.step >= cfg->qat_freeze_bn_after);
            }
            distq_step_stats ss;
            st = distq_trainer_step(t, batch, count, labels, NULL, size, &ss);
            if ((st = distq_dist_agree(d, st))) goto cleanup;
            /* one fused all-reduce of every gradient: the global mean */
            if ((st = distq_dist_allreduce_f32(d, grads, (int)n_grads, DISTQ_DIST_SUM, "gradients"))) goto cleanup;
            rep->allreduce_bytes += n_grads * (int64_t)sizeof(float);
            if ((st = distq_sgd_step(&sgd, g, t))) goto cleanup;
            sums[0] += ss.loss_sum;
            sums[1] += (double)ss.correct;
            sums[2] += (double)ss.images;
            rep->steps++;
            if (cfg->max_steps && rep->steps >= cfg->max_steps) break;
        }
        double elapsed = distq_now_s() - t0;
        if ((st = distq_dist_allreduce_f64(d, sums, 3, DISTQ_DIST_SUM, "epoch statistics"))) goto cleanup;
        distq_epoch_report er = {.epoch = epoch + 1, .epochs = cfg->epochs, .step = sgd.step, .lr = sgd.lr,
                                 .loss = sums[2] > 0 ? sums[0] / sums[2] : 0, .train_acc = sums[2] > 0 ? sums[1] / sums[2] : 0,
                                 .images_per_s = elapsed > 0 ? sums[2] / elapsed : 0, .elapsed_s = elapsed, .test_acc = -1};
        predictor pr = {.t = t};
        if (nt && (st = test_accuracy(&pr, d, xt, yt, nt, per, k, local_max, logits, &er.test_acc))) goto cleanup;
        rep->images += (int64_t)sums[2];
        rep->train_s += elapsed;
        rep->final = er;
        if (q) distq_qat_state_get(q, qstate_buf);
        if (cfg->checkpoint[0] && d->rank == 0)
            st = distq_checkpoint_save(cfg->checkpoint, g, sgd.velocity, sgd.count, sgd.step, epoch + 1, cfg->text,
                                       qstate_buf, q ? distq_qat_state_count(q) : 0);
        if ((st = distq_dist_agree(d, st))) goto cleanup;
        if (on_epoch) on_epoch(user, &er);
        if (cfg->max_steps && rep->steps >= cfg->max_steps) break;
    }
    if (cfg->trained[0] && d->rank == 0) st = distq_model_save(g, cfg->trained);
    if ((st = distq_dist_agree(d, st))) goto cleanup;
    if (q) st = finish_qat(cfg, d, g, q, xt, yt, nt, per, k, local_max, batch, logits, rep);
cleanup:
    distq_qat_destroy(q);
    distq_free(qstate);
    distq_free(qstate_buf);
    distq_sgd_free(&sgd);
    distq_trainer_destroy(t);
    distq_graph_destroy(g);
    distq_free(x);
    distq_free(y);
    distq_free(xt);
    distq_free(yt);
    distq_free(batch);
    distq_free(labels);
    distq_free(logits);
    distq_free(perm);
    distq_free(velocity);
    return st;
}
