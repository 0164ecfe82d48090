#ifndef DISTQ_QUANT_H
#define DISTQ_QUANT_H
/*
 * Post-training quantization with the x86 recipe (shared/spec): prepare,
 * calibrate, convert, and the fused int8 graph that the int8 executors run.
 *
 *     distq_prepared *p;
 *     distq_prepare(fp32_graph, DISTQ_OBSERVER_HISTOGRAM, &p);  // fold BN, annotate
 *     distq_calibrator *c;  distq_calibrator_create(p, batch, NULL, &c);
 *     distq_calibrate_batch(c, images, n);                      // per batch
 *     distq_graph *q;    distq_convert(p, rr, &q);              // once
 *     distq_exec_create(DISTQ_BACKEND_ONEDNN, q, batch, &e);    // frozen int8
 *
 * Values: activations are u8 per-tensor affine (real = s * (q - zp)); weights
 * s8 per-output-channel symmetric; bias f32; the model input is quantized,
 * the last conv/linear writes f32 (or a final dequantize does).
 */
#include <stdint.h>

#include "distq/graph.h"
#include "distq/io.h"
#include "distq/observers.h"
#include "distq/reducer.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- prepare: fold BN, annotate, attach observers ------------------------- */



/* Fused int8 patterns, in the spec's order of matching. */
typedef enum {
    DISTQ_PATTERN_NONE = 0,   /* not a pattern head (a fused tail, or the input) */
    DISTQ_PATTERN_CONV,       /* conv [+relu] */
    DISTQ_PATTERN_CONV_SUM,   /* conv + add [+relu]: the add's other input as sum post-op */
    DISTQ_PATTERN_LINEAR,     /* linear [+relu] */
    DISTQ_PATTERN_MAX_POOL,   /* int8 in, int8 out, shares its input's qparams */
    DISTQ_PATTERN_AVG_POOL,
    DISTQ_PATTERN_FLATTEN,
    DISTQ_PATTERN_AVG_POOL2D, /* a windowed average (no padding counted) on u8 */
    DISTQ_PATTERN_CONCAT,     /* u8 in, u8 out: every input shares the output's qparams */
    DISTQ_PATTERN_LAYOUT,     /* transpose, slice, reshape on u8: the codes moved, qparams shared */
    DISTQ_PATTERN_GATE,       /* squeeze-excite: u8 x times an fp32 (N, C, 1, 1) gate (sum_value), requantized */
    DISTQ_PATTERN_BN,         /* a batch_norm no conv precedes [+relu], on an int8 input: run as
                                 the exact int8 depthwise 1x1 conv (codes +-127, scale |a|/127) */
    DISTQ_PATTERN_FLOAT       /* stays fp32: dequantize before it, quantize after where int8 reads it */
} distq_pattern;

typedef struct {
    distq_pattern pattern; /* for the head node of a pattern */
    int relu;              /* a relu is fused at the end */
    int post_node;         /* CONV / LINEAR: the fused elementwise node other than relu
                              (clip, hardswish, silu, gelu), or -1 */
    int add_node;          /* CONV_SUM: the add node index */
    int sum_value;         /* CONV_SUM: the add's other input (value index); GATE: the f32 gate */
    int out_value;         /* the value the whole pattern produces */
    /* conv/linear: per-output-channel weight range to take the s8 scales from
     * (QAT's trained weight observers, spec §4.3), or NULL: the weights' own
     * min/max (PTQ). Borrowed; set between prepare and convert. */
    const float *weight_min, *weight_max;
} distq_node_plan;

typedef struct distq_prepared {
    distq_graph *g; /* BN-folded fp32 graph (owned, finalized) */
    distq_observer_kind kind;
    int n_observers;
    distq_observer *observers;
    int *value_observer;     /* per value: observer index, or -1 (stays f32) */
    distq_node_plan *plan;   /* per node */
    char *excluded;          /* per node: 1 if the user's exclude patterns matched it */
} distq_prepared;

/* Clones g, folds BN, matches the recipe's patterns and attaches observers.
 * A node outside the patterns (an add not fed by a conv, a sigmoid, a
 * layer_norm...) stays fp32, as PT2E leaves it: convert puts a dequantize
 * before it and a quantize after it where an int8 pattern reads its output. */
distq_status distq_prepare(const distq_graph *g, distq_observer_kind kind, distq_prepared **out);
/* As distq_prepare, keeping in fp32 every node that one of the patterns in
 * exclude names (comma-separated; a glob on the node name, as fnmatch, or
 * exactly an op name: "conv2d", "*features.0*"), as PT2E's
 * set_module_name_qconfig(name, None), ORT's nodes_to_exclude or NNCF's
 * ignored scope. A pattern that matches nothing is an error naming it.
 * NULL or "": none. */
distq_status distq_prepare_excluding(const distq_graph *g, distq_observer_kind kind, const char *exclude,
                                     distq_prepared **out);
void distq_prepared_destroy(distq_prepared *p);

/* --- calibrate --------------------------------------------------------------- */

/* Cross-rank reduction: distq/reducer.h (src/dist supplies the MPI one; NULL
 * = one process). */

typedef struct distq_calibrator distq_calibrator;

/* Builds the fast fp32 (oneDNN) executor of p->g for batch size `batch`. */
distq_status distq_calibrator_create(distq_prepared *p, int64_t batch, const distq_reducer *red,
                                     distq_calibrator **out);
/* Runs n <= batch images (N, C, H, W) f32 and feeds every observer. With a
 * reducer, this rank's n images are its part of one global batch. */
distq_status distq_calibrate_batch(distq_calibrator *c, const float *images, int64_t n);
/* Seconds spent in the fp32 forward and in observers so far. */
void distq_calibrator_times(const distq_calibrator *c, double *forward_s, double *observe_s);
void distq_calibrator_destroy(distq_calibrator *c);

/* Computes every observer's qparams (histogram: the L2 search, once; each
 * observer records what it chose), quantizes the weights per channel and
 * rewrites p->g into the fused int8 graph (graph.h's quantized forms:
 * quantize, conv2d / linear on u8 with s8 weights and post-ops, u8 pools,
 * dequantize), finalized. reduce_range limits activations to [0, 127] (the
 * x86 config's reduce_range=True): needed where oneDNN multiplies u8 by s8
 * without VNNI, whose pairwise s16 sums saturate. */
distq_status distq_convert(distq_prepared *p, int reduce_range, distq_graph **out);
/* One observer's u8 qparams for activations in [0, qmax]; *lo, *hi (optional)
 * receive the range it chose (the histogram's searched range). */
distq_status distq_observer_qparams(const distq_observer *o, int32_t qmax, distq_qparams *qp,
                                    float *lo, float *hi);
/* What the quantized model file records of p (io writes it as given, never
 * asking passes): the observed graph, every observer as convert left it, the
 * user's exclusions. Borrowed from p. */
distq_quant_record distq_prepared_record(const distq_prepared *p);

#ifdef __cplusplus
}
#endif
#endif
