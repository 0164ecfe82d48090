#ifndef DISTQ_GRAPH_H
#define DISTQ_GRAPH_H
/*
 * The graph IR: named parameters, named activation values and named nodes.
 *
 *     distq_graph *g;
 *     distq_graph_create(&g);
 *     int64_t in[4] = {1, 3, 224, 224};          // dims[0] is the batch, held at 1
 *     distq_graph_set_input(g, "input", 4, in);
 *     distq_graph_add_param(g, "conv1.weight", DISTQ_DTYPE_F32, 4, wdims, NULL, &w);
 *     const char *ins[] = {"input"};
 *     distq_graph_add_node(g, "conv1", DISTQ_OP_CONV2D, &attr, 1, ins, params, "conv1");
 *     distq_graph_set_output(g, "fc");
 *     distq_graph_finalize(g);                    // resolve names, order, infer shapes
 *
 * Values are activations: the graph input and each node's single output. Their
 * dims are per batch of one (dims[0] == 1); executors are built for a batch N.
 * Nodes are added in any order; distq_graph_finalize() resolves names, sorts the
 * nodes topologically (once), infers every value's shape and checks every
 * parameter, and reports the first bad node by name.
 *
 * One IR for fp32 and int8 (PT2E's q/dq graph after lowering, ONNX's QDQ
 * after QLinear fusion): convert (quant.h) rewrites a float graph into the
 * same structure with u8 values, quantize / dequantize nodes and conv2d /
 * linear nodes that carry s8 weights, their scales and post-op attributes
 * (a conv2d's optional second input is a residual summed before post_relu).
 */
#include <stdint.h>

#include "distq/status.h"
#include "distq/tensor.h"

/* Graph outputs a model may declare (ONNX models with several heads). */
#define DISTQ_MAX_OUTPUTS 16

#ifdef __cplusplus
extern "C" {
#endif

/* Only ever append: the names below are stored in model files. */
typedef enum {
    DISTQ_OP_CONV2D = 0,
    DISTQ_OP_BATCH_NORM,
    DISTQ_OP_RELU,
    DISTQ_OP_ADD,
    DISTQ_OP_MAX_POOL2D,
    DISTQ_OP_ADAPTIVE_AVG_POOL2D,
    DISTQ_OP_FLATTEN,
    DISTQ_OP_LINEAR,
    DISTQ_OP_HARDSWISH,   /* x * relu6(x + 3) / 6 */
    DISTQ_OP_HARDSIGMOID, /* clamp(alpha * x + beta, 0, 1) */
    DISTQ_OP_CLIP,        /* clamp(x, min, max): relu6 is clip(0, 6) */
    DISTQ_OP_SIGMOID,
    DISTQ_OP_MUL,         /* numpy broadcasting, e.g. (1,C,H,W) * (1,C,1,1) */
    DISTQ_OP_CONCAT,      /* any number of inputs, along axis */
    DISTQ_OP_QUANTIZE,    /* f32 -> u8 with the node's out_* qparams */
    DISTQ_OP_DEQUANTIZE,  /* u8 -> f32 with the input value's qparams */
    DISTQ_OP_AVG_POOL2D,  /* windowed average (PyTorch's avg_pool2d, ONNX AveragePool) */
    DISTQ_OP_TANH,
    DISTQ_OP_LEAKY_RELU,  /* x >= 0 ? x : alpha * x */
    DISTQ_OP_SUB,         /* broadcasting as mul */
    DISTQ_OP_DIV,         /* broadcasting as mul */
    DISTQ_OP_SILU,        /* x * sigmoid(x) (swish) */
    DISTQ_OP_SOFTMAX,     /* along axis (not the batch) */
    DISTQ_OP_LOG_SOFTMAX, /* along axis (not the batch) */
    DISTQ_OP_TRANSPOSE,   /* out dim i = in dim perm[i]; perm[0] == 0 (the batch stays first) */
    DISTQ_OP_RESHAPE,     /* to (batch, shape[1..]) */
    DISTQ_OP_SLICE,       /* the box [starts[i], ends[i]) of each dim i >= 1, step 1 (the batch whole) */
    DISTQ_OP_GELU,        /* x * Phi(x) = x/2 (1 + erf(x / sqrt 2)) (PyTorch's default, not the tanh form) */
    DISTQ_OP_LAYER_NORM,  /* over the dims from axis on: (x - mean) / sqrt(var + eps) * weight + bias */
    DISTQ_OP_SQRT,
    DISTQ_OP_EXP,
    DISTQ_OP_LOG,         /* natural */
    DISTQ_OP_ABS,
    DISTQ_OP_NEG,
    DISTQ_OP_RECIPROCAL,  /* 1 / x */
    DISTQ_OP_POW,         /* x ^ alpha (a constant exponent) */
    DISTQ_OP_ELU,         /* x > 0 ? x : alpha (exp(x) - 1) */
    DISTQ_OP_ERF,
    DISTQ_OP_COUNT
} distq_op;

/* The registry's name of op ("conv2d", "batch_norm", ...); "?" outside the enum. */
const char *distq_op_name(distq_op op);
distq_status distq_op_from_name(const char *name, distq_op *out);

/* Typed attributes; each op reads only its own fields (see distq_attrs_default). */
typedef struct {
    int64_t kernel[2];      /* max_pool2d, avg_pool2d: (KH, KW) */
    int64_t stride[2];      /* conv2d, max_pool2d, avg_pool2d */
    int64_t padding[2];     /* conv2d, max_pool2d, avg_pool2d: (PH, PW) before (top, left) */
    int64_t padding_end[2]; /* ... after (bottom, right); -1: as padding (symmetric, PyTorch's) */
    int64_t dilation[2];    /* conv2d (1 = dense); max_pool2d must be 1 */
    int64_t groups;         /* conv2d */
    int64_t ceil_mode;      /* max_pool2d: 0 or 1 (PyTorch rule) */
    int64_t output_size[2]; /* adaptive_avg_pool2d: only (1, 1) supported */
    int64_t start_dim;      /* flatten: only 1 supported (flatten(x, 1)) */
    float eps;              /* batch_norm, layer_norm */
    float momentum;         /* batch_norm (training only) */
    float alpha, beta;      /* hardsigmoid (PyTorch's: 1/6, 1/2); leaky_relu's slope is alpha (0.01) */
    float min, max;         /* clip */
    int64_t axis;           /* concat, softmax, log_softmax, layer_norm (may be negative: counted from the end) */
    int64_t count_include_pad; /* avg_pool2d: 1 divides by the whole window, 0 by its cells inside the image */
    int64_t perm[DISTQ_MAX_DIMS];  /* transpose: one entry per input dim, 0 past the rank */
    int64_t shape[DISTQ_MAX_DIMS]; /* reshape: per-image dims after shape[0] == 1 (the batch), 0 past the rank */
    int64_t starts[DISTQ_MAX_DIMS], ends[DISTQ_MAX_DIMS]; /* slice: [0] and past the rank 0 */
    /* Quantized forms (written by convert; optional in files, default off):
     * post_relu: conv2d / linear apply relu last (after the sum, if any);
     * post_op: ... or this elementwise op instead (clip, hardswish, silu,
     * gelu; -1 none), with its attributes in min, max, alpha, beta;
     * out_scale > 0: the node writes u8 codes with these qparams (quantize;
     * conv2d / linear on a u8 input), 0: it writes f32. */
    int64_t post_relu;
    int64_t post_op;
    float out_scale;
    int64_t out_zero_point;
    int64_t out_quant_max; /* 255, or 127 with reduce_range */
} distq_attrs;

/* PyTorch's defaults for op: stride 1, padding 0, dilation 1, groups 1,
 * eps 1e-5, momentum 0.1, output_size (1,1), start_dim 1, hardsigmoid
 * alpha 1/6 beta 1/2, clip [0, 6], concat axis 1, count_include_pad 1; no post_relu, f32 output
 * (out_scale 0, out_zero_point 0, out_quant_max 255). */
distq_attrs distq_attrs_default(distq_op op);

/* Parameter slots. conv2d: WEIGHT (OC, IC/groups, KH, KW), BIAS (OC) optional.
 * linear: WEIGHT (OUT, IN), BIAS (OUT) optional; on the last dim of an input of
 * any rank >= 2 (f32 or u8). layer_norm: WEIGHT, BIAS optional, one
 * value per normalized element (any shape). batch_norm: WEIGHT, BIAS,
 * RUNNING_MEAN, RUNNING_VAR (C), NUM_BATCHES_TRACKED (s64 scalar) optional.
 * A conv2d / linear on a u8 input has s8 WEIGHT codes and WEIGHT_SCALE (OC)
 * f32, the per-output-channel symmetric scales; its BIAS stays f32. */
enum {
    DISTQ_PARAM_WEIGHT = 0,
    DISTQ_PARAM_BIAS = 1,
    DISTQ_PARAM_RUNNING_MEAN = 2,
    DISTQ_PARAM_RUNNING_VAR = 3,
    DISTQ_PARAM_NUM_BATCHES_TRACKED = 4,
    DISTQ_PARAM_WEIGHT_SCALE = 5,
    DISTQ_MAX_PARAMS = 6
};

/* Names are of any length (ONNX's run long) and owned by the graph that holds
 * them (its string store, freed with it): a node or tensor of one graph never
 * points at another graph's names. */
typedef struct {
    const char *name;
    distq_op op;
    distq_attrs attr;
    int n_inputs;                                /* any count the op's arity allows */
    const char **input_names;                    /* n_inputs names; the array is the node's */
    const char *param_names[DISTQ_MAX_PARAMS];   /* "" = slot empty */
    const char *output_name;
    /* Resolved by distq_graph_finalize(): */
    int *inputs;                  /* n_inputs value indices, owned by the graph */
    int params[DISTQ_MAX_PARAMS]; /* parameter index or -1 */
    int output;                   /* value index */
} distq_node;

/* A value is f32, or u8 codes of real = scale * (q - zero_point) with q in
 * [0, quant_max]. Inference derives dtype and qparams from the producer. */
typedef struct {
    const char *name;             /* its producer's output_name (or the graph input's) */
    distq_dtype dtype;            /* F32 or U8 */
    int ndim;
    int64_t dims[DISTQ_MAX_DIMS]; /* dims[0] == 1 (batch placeholder) */
    float scale;                  /* U8 only */
    int32_t zero_point;
    int32_t quant_max;
    int producer;                 /* node index, -1 for the graph input */
    int n_consumers;              /* nodes reading it (+1 if it is a graph output) */
} distq_value;

typedef struct distq_graph {
    int n_nodes, cap_nodes;
    distq_node *nodes; /* execution order after finalize */
    int n_params, cap_params;
    distq_tensor *params; /* owned, with data */
    int n_values, cap_values;
    distq_value *values; /* filled by finalize; [0] is the graph input */
    const char *input_name; /* NULL until set */
    int input_ndim;
    int64_t input_dims[DISTQ_MAX_DIMS]; /* (1, C, H, W) or (1, F) */
    /* The graph outputs, in order; [0] is the primary one (the logits that
     * eval, calibrate and train read). */
    int n_outputs;
    const char *output_names[DISTQ_MAX_OUTPUTS];
    int input_value;                       /* value index after finalize */
    int output_values[DISTQ_MAX_OUTPUTS];  /* value indices after finalize */
    int finalized;
    int n_strings, cap_strings;
    char **strings; /* the string store: every name above points into it */
} distq_graph;

/* --- the op registry (src/graph/op_registry.c) ----------------------------
 * One row per op. Everything that is true of an op whatever runs it lives
 * here: the file format reads and writes a node's attributes from `attrs`,
 * finalize checks arity and calls `infer`, describe prints `attr_text`,
 * prepare reads `qrole`. Executors and the trainer hold their own kernel
 * tables indexed by op (a missing kernel is an error when they are built). */
/* DIMS: int64[DISTQ_MAX_DIMS]; OP: an op (int64 in memory, -1 none), its name in files */
typedef enum { DISTQ_ATTR_I64, DISTQ_ATTR_PAIR, DISTQ_ATTR_F32, DISTQ_ATTR_DIMS, DISTQ_ATTR_OP } distq_attr_kind;
typedef struct {
    const char *name; /* HDF5 attribute name */
    distq_attr_kind kind;
    size_t offset; /* into distq_attrs */
    int optional;  /* a file may omit it: distq_attrs_default's value (added in version 2) */
} distq_attr_spec;

/* What the x86 recipe does with the op (X86InductorQuantizer's annotations). */
typedef enum {
    DISTQ_QROLE_FP32 = 0,      /* stays fp32: dequantize before, quantize after */
    DISTQ_QROLE_HEAD,          /* int8 pattern head with weights (conv, linear) */
    DISTQ_QROLE_POST_OP,       /* fusable into the head before it (relu, add as sum) */
    DISTQ_QROLE_SHARES_INPUT,  /* int8 in and out with its input's qparams (pools) */
    DISTQ_QROLE_QDQ,           /* quantize / dequantize themselves */
} distq_qrole;

#define DISTQ_VARIADIC (-1) /* max_inputs: any count >= min_inputs */
#define DISTQ_PARAM_BIT(slot) (1u << (slot))

struct distq_graph;
typedef struct {
    const char *name;
    int min_inputs, max_inputs;
    unsigned params;          /* DISTQ_PARAM_BIT of each slot the op may have */
    unsigned params_required; /* ... must have */
    unsigned params_trained;  /* ... the trainer updates by gradient */
    const distq_attr_spec *attrs;
    int n_attrs;
    distq_qrole qrole;
    /* Checks attributes, input shapes and params; fills out's dtype and dims.
     * Errors name the node and the tensor or attribute at fault. */
    distq_status (*infer)(struct distq_graph *g, distq_node *n, distq_value *out);
    /* The op-specific part of a describe line ("k3x3 s1 p1"); NULL: none. */
    void (*attr_text)(const struct distq_graph *g, const distq_node *n, char *buf, size_t len);
} distq_op_info;

/* "weight", "bias", ..., "weight_scale" (PyTorch's state_dict suffixes); "?" outside. */
const char *distq_param_slot_name(int slot);

/* Bytes of one attribute's field in distq_attrs. */
size_t distq_attr_size(const distq_attr_spec *s);
/* 1 if a and b agree on every attribute op's schema lists (bit for bit). */
int distq_attrs_equal(distq_op op, const distq_attrs *a, const distq_attrs *b);

/* The registry row of op, NULL outside the enum. */
const distq_op_info *distq_op_info_of(distq_op op);

/* 1 if the x86 recipe fuses elementwise op post into an int8 head (conv2d
 * + relu / clip / hardswish / silu, linear + relu / gelu), as
 * X86InductorQuantizer annotates them; the table is the registry's. */
int distq_x86_fuses(distq_op head, distq_op post);
/* The attributes of a head's fused post_op, as a node of that op has them. */
distq_attrs distq_post_op_attrs(const distq_attrs *head);

/* Creates an empty graph. Free with distq_graph_destroy (NULL is a no-op). */
distq_status distq_graph_create(distq_graph **out);
void distq_graph_destroy(distq_graph *g);

/* Declares the single graph input: f32, dims[0] must be 1. */
distq_status distq_graph_set_input(distq_graph *g, const char *name, int ndim,
                                   const int64_t *dims);
/* Declares name as the only graph output (replacing any declared before). */
distq_status distq_graph_set_output(distq_graph *g, const char *name);
/* Appends name to the graph outputs (at most DISTQ_MAX_OUTPUTS, no repeats). */
distq_status distq_graph_add_output(distq_graph *g, const char *name);
/* 1 if value v (finalized graph) is one of the graph outputs. */
int distq_graph_is_output(const distq_graph *g, int v);

/* Adds a parameter. data == NULL zero-fills; otherwise the bytes are copied.
 * *out (optional) is borrowed and valid until the next add_param. Duplicate
 * names are DISTQ_ERR_INVALID_ARG. */
distq_status distq_graph_add_param(distq_graph *g, const char *name, distq_dtype dtype,
                                   int ndim, const int64_t *dims, const void *data,
                                   distq_tensor **out);

/* Adds a node. inputs: n_inputs value names. params: DISTQ_MAX_PARAMS names
 * ("" or NULL for an empty slot), or NULL for none. Un-finalizes the graph. */
distq_status distq_graph_add_node(distq_graph *g, const char *name, distq_op op,
                                  const distq_attrs *attr, int n_inputs,
                                  const char *const *inputs, const char *const *params,
                                  const char *output);

/* Resolves names, orders nodes topologically, infers shapes, checks params.
 * Errors name the first bad node: unknown input, shape mismatch, cycle,
 * missing weight, bad attribute. */
distq_status distq_graph_finalize(distq_graph *g);

/* Lookups; NULL / -1 if absent. Borrowed. */
distq_tensor *distq_graph_find_param(const distq_graph *g, const char *name);
int distq_graph_find_value(const distq_graph *g, const char *name);
int distq_graph_find_node(const distq_graph *g, const char *name);

/* Removes node i (freeing what it owns). Un-finalizes the graph. */
void distq_graph_remove_node(distq_graph *g, int i);
/* *out = a copy of s in g's string store, valid as long as g: what a pass
 * assigns to a name field. s must not be empty. */
distq_status distq_graph_intern(distq_graph *g, const char *s, const char **out);
/* The same for base followed by suffix ("conv1" ".bias"). */
distq_status distq_graph_intern_suffixed(distq_graph *g, const char *base, const char *suffix,
                                         const char **out);

/* Drops parameters that no node references (e.g. a folded BN's). Un-finalizes
 * the graph: call distq_graph_finalize() after. *n_removed is optional. */
void distq_graph_remove_unused_params(distq_graph *g, int *n_removed);

/* 1 if any value of the finalized graph g is u8 (a converted int8 graph). */
int distq_graph_is_quantized(const distq_graph *g);
/* 1 if the int8 graph q keeps activations on the 7-bit grid (reduce_range). */
int distq_graph_reduce_range(const distq_graph *q);

/* Deep copy (params included). The copy is finalized if g was. */
distq_status distq_graph_clone(const distq_graph *g, distq_graph **out);

/* An axis attribute as an index into ndim dims (negative counts from the
 * end, as in ONNX and PyTorch). The result may still be out of range. */
int64_t distq_axis_index(int64_t axis, int ndim);

/* Number of elements of a value for batch N (per-image numel times N). */
int64_t distq_value_numel(const distq_value *v, int64_t batch);

/* Output size of one spatial dim of a conv or pool padded pad_begin before
 * and pad_end after, PyTorch's formula (ceil_mode: the last window must start
 * inside the input or the padding before it). */
int64_t distq_conv_out_dim(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                           int64_t pad_end, int64_t dilation, int ceil_mode);

/* The padding after spatial dim i (0: H, 1: W) of a conv or pool. */
static inline int64_t distq_pad_end(const distq_attrs *a, int i)
{
    return a->padding_end[i] < 0 ? a->padding[i] : a->padding_end[i];
}

/* --- builders (src/graph/builders.c) --------------------------------------
 * Deterministic init from seed (README "Model init"): conv weights ~
 * N(0, 2/fan_out) (torchvision), linear ~ U(+-1/sqrt(in)) (nn.Linear), BN
 * gamma ~ U(0.5, 1.5), beta, running_mean ~ U(-0.1, 0.1), running_var ~
 * U(0.5, 1.5) so that folding BN is exercised. Returned graphs are finalized. */
distq_status distq_build_resnet18(uint64_t seed, int64_t num_classes, distq_graph **out);
distq_status distq_build_linear(uint64_t seed, distq_graph **out); /* Linear(1024, 1000) */
/* Small residual CNN for Fashion-MNIST, input (1, 1, 28, 28), 10 logits:
 * stem.{conv,bn,relu} 1->32 3x3; block1: BasicBlock 32->32; maxpool 2x2/2
 * (28 -> 14); block2: BasicBlock 32->64 stride 2 with downsample.{0,1}
 * (14 -> 7); avgpool, flatten, fc 64->10. Convs have no bias. */
distq_status distq_build_fmnist_cnn(uint64_t seed, distq_graph **out);
/* Builds by name: "resnet18", "linear" or "fmnist_cnn". */
distq_status distq_build_model(const char *arch, uint64_t seed, distq_graph **out);

#ifdef __cplusplus
}
#endif
#endif
