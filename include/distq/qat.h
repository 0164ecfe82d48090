#ifndef DISTQ_QAT_H
#define DISTQ_QAT_H
/*
 * Quantization-aware training (shared/spec §1.4, §2.8, §3.4, §4.2-§4.4):
 * fake quantization inside the fp32 trainer, then the same int8 conversion
 * as PTQ.
 *
 *     distq_qat *q;
 *     distq_qat_create(g, &opts, &q);       // g: fp32 graph with its BNs
 *     distq_trainer_create(g, ..., &t);
 *     distq_trainer_attach_qat(t, q);       // steps now fake-quantize
 *     ... train; distq_qat_set_observers(q, 0); distq_trainer_freeze_bn(t, 1) ...
 *     distq_graph *qg;  distq_qat_convert(g, q, NULL, &qg);   // -> int8 executors
 *
 * Where the fake quants go: exactly where PTQ puts observers (distq_prepare
 * on a copy of g), so the QAT model converts into the same fused int8 graph.
 * Activations: per tensor, u8 affine [0, 255] (or [0, 127] with
 * reduce_range), one moving-average min/max per PTQ observer (c = 0.01;
 * values that share an observer share the fake quant's state). The batch
 * range is reduced over ranks (reducer->min_max) before it moves the average,
 * so every rank holds the same state. Weights of every quantized conv and
 * linear: per output channel, s8 symmetric, moving-average min/max of the
 * weight the conv computes with. Weights are identical on every rank, so
 * their observers need no reduction.
 *
 * conv -> batch_norm pairs are simulated as in prepare_qat_pt2e (§4.2):
 * k = gamma / sqrt(running_var + eps) from the running variance at the start
 * of the step, y = conv(x, FQ(w * k)) / k, then batch_norm in training mode
 * with batch statistics. k is computed as fold_bn computes its factor, so
 * with BN and observers frozen the weight a forward (e.g. predict) fake-
 * quantizes is bit for bit the int8 weight times its scale that convert
 * makes of the same parameters (tested). Deviations from PyTorch, on purpose:
 *   - the BN's own eps is used (PyTorch hard-codes 1e-5; equal for our models);
 *   - training computes qparams with convert's formulas (distq_qparams_affine,
 *     distq_qparams_symmetric_scale), not the fused kernel's
 *     ChooseQuantizationParams (spec §4.4 "training/convert qparam mismatch",
 *     fixed the same way by torchao's use_kernel_params), so the scales a
 *     model trains with are the scales it is converted with;
 *   - a value aliased by flatten is fake-quantized once (PyTorch calls the
 *     shared fake quant again on the identical tensor);
 *   - fake quants sit exactly where PTQ observes (spec §2.8: PyTorch's QAT
 *     also fake-quantizes a conv-bn pattern's output when its consumer stays
 *     fp32, e.g. a conv-bn producing the model output; ours leaves it f32,
 *     as the converted model computes it);
 *   - shared conv / linear weights are refused (their gradient would be
 *     masked once per user).
 * Multi-rank: a rank whose activations hold NaN or Inf joins the range
 * reduction with (-inf, +inf), so every rank fails at the same node; with
 * observers frozen (no reduction) the NaN flows on and the next step's weight
 * check fails on every rank.
 * Backward: straight-through estimator (gradient masked where the value was
 * clamped), and the gradient of the BN weight through k (both paths: w * k
 * and / k), as PyTorch's autograd computes it.
 */
#include <stdint.h>

#include "distq/graph.h"
#include "distq/quant.h"
#include "distq/status.h"
#include "distq/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct distq_qat distq_qat;

typedef struct {
    int reduce_range;         /* 1: activations in [0, 127] (AVX2 without VNNI, see distq_convert) */
    float averaging_constant; /* 0 = DISTQ_EMA_CONSTANT (0.01) */
} distq_qat_opts;

/* Plans the fake quants for the finalized fp32 graph g (which keeps its
 * batch_norms). DISTQ_ERR_UNSUPPORTED names a node PTQ could not convert, or
 * a biased conv before a batch_norm. g is not kept: attach to a trainer of
 * the same graph. */
distq_status distq_qat_create(const distq_graph *g, const distq_qat_opts *opts, distq_qat **out);
void distq_qat_destroy(distq_qat *q);

/* Steps and predictions of t fake-quantize from now on (t's graph must be
 * the one q was planned for; t keeps q, which must outlive it). Allocates the
 * masks for t's max_batch. INVALID_ARG, NOMEM. */
distq_status distq_trainer_attach_qat(distq_trainer *t, distq_qat *q);

/* Observers on (default) or frozen: frozen, the fake quants keep their
 * qparams and training steps make no min/max reductions. */
void distq_qat_set_observers(distq_qat *q, int on);

/* Observer state as one f32 vector (for checkpoints): per activation
 * observer min, max; then per weight-quantized node, per channel min, max;
 * last reduce_range (0 or 1). */
int64_t distq_qat_state_count(const distq_qat *q);
void distq_qat_state_get(const distq_qat *q, float *out);
/* INVALID_ARG if n is not distq_qat_state_count(q). Takes the state's
 * reduce_range too, so a resumed run fake-quantizes as the saved one did. */
distq_status distq_qat_state_set(distq_qat *q, const float *state, int64_t n);
int distq_qat_reduce_range(const distq_qat *q);

/* Folds g's batch_norms with their running statistics (as PTQ does) and
 * converts with the trained observer ranges: activation qparams from the
 * moving averages, per-channel weight scales from the weight observers
 * (spec §4.3). *p_out (optional) gets the prepared model holding those
 * observer states, for distq_qmodel_save; the caller destroys it. A fake
 * quant that never observed anything is an error naming its value. */
distq_status distq_qat_convert(const distq_graph *g, const distq_qat *q, distq_prepared **p_out,
                               distq_graph **out);

#ifdef __cplusplus
}
#endif
#endif
