#ifndef DISTQ_ONNX_IMPL_H
#define DISTQ_ONNX_IMPL_H
/*
 * Inside the ONNX importer: onnx_import.c walks the model (file, tensors,
 * graph input and output, constants, aliases) and onnx_ops.c holds the table
 * of ONNX op types, each translated into registry ops by one function.
 */
#include "distq/graph.h"
#include "distq/onnx.h"
#include "onnx.pb-c.h"

/* Runs a distq call and returns its status if it failed. */
#define ONNX_TRY(call)                  \
    do {                                \
        distq_status try_st_ = (call);  \
        if (try_st_) return try_st_;    \
    } while (0)

/* A constant: an initializer, a Constant node's output or a bound input.
 * Floats are f32, integers and bools s64. */
typedef struct {
    const char *name; /* the ONNX name (the graph's string store) */
    distq_dtype dtype;
    int ndim;
    int64_t dims[DISTQ_MAX_DIMS];
    void *data;        /* owned, until a parameter takes it over */
    const char *param; /* the graph parameter holding it unchanged; NULL until one does */
    int borrowed;      /* data is that parameter's (the graph frees it) */
} onnx_const;

typedef struct {
    const char *from, *to; /* an ONNX value name and the name it stands for */
    /* A zero-valued Pad's output: `to` padded by (top, left, bottom, right),
     * folded into the Conv or AveragePool that reads it; pad_node names the
     * Pad (NULL: no padding). */
    int64_t pad[4];
    const char *pad_node;
} onnx_alias;

/* An ONNX pattern imported as one op (onnx_fuse.c), emitted at its last node. */
typedef struct {
    distq_op op;
    int last;      /* the ONNX node at which it is emitted */
    const char *x; /* its input (an ONNX name) */
    float eps;     /* layer_norm */
    int weight_node, bias_node; /* layer_norm: the Mul / Add of its affine part, -1 if none */
} onnx_fusion;
#define ONNX_NOT_FUSED (-1)
#define ONNX_ABSORBED (-2)

typedef struct {
    const char *path; /* the model file, for messages */
    const char *dir;  /* its folder, for external data */
    int64_t opset;    /* of the default domain */
    int64_t batch;    /* the graph input's declared first dim; -1 if symbolic */
    int training_graph; /* distq_onnx_options.training_graph */
    const Onnx__GraphProto *gp; /* the graph being imported */
    distq_graph *g;
    onnx_const *consts;
    int n_consts, cap_consts;
    onnx_alias *aliases;
    int n_aliases, cap_aliases;
    int dirty; /* nodes added since the graph was last finalized */
    int *fusion_of; /* per ONNX node: ONNX_NOT_FUSED, ONNX_ABSORBED or the fusion it emits */
    onnx_fusion *fusions;
    int n_fusions, cap_fusions;
    /* the node being translated, for messages */
    const Onnx__NodeProto *node;
    const char *node_name;
} onnx_importer;

/* One ONNX op type: its translation and the attributes it understands (any
 * other is refused, naming it). */
typedef distq_status (*onnx_op_fn)(onnx_importer *im, const Onnx__NodeProto *n);
typedef struct {
    const char *op_type;
    onnx_op_fn translate;
    const char *attrs; /* space-separated names, "" for none */
} onnx_op_row;

/* The row of op_type, NULL if distq does not import it. */
const onnx_op_row *onnx_op_find(const char *op_type);
/* The table, for `distq ops` and docs. */
const onnx_op_row *onnx_op_table(int *n);

/* "PATH: node 'NAME' (OpType, opset N): detail", returning st. */
distq_status onnx_node_error(const onnx_importer *im, distq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 if a node of the graph reads value `name` or it is a graph output. */
int onnx_value_is_read(const onnx_importer *im, const char *name);
/* Input k of n: 1 if present (ONNX marks a skipped optional input with ""). */
int onnx_has_input(const Onnx__NodeProto *n, int k);
/* The constant input k holds, or NULL (absent, or not a constant). */
onnx_const *onnx_input_const(onnx_importer *im, const Onnx__NodeProto *n, int k);
/* Input k as a constant; an error naming the input if it is not one. */
distq_status onnx_need_const(onnx_importer *im, const Onnx__NodeProto *n, int k, const char *role,
                             onnx_const **out);
/* Input k as an activation value (its graph name); an error naming the
 * input if it is a constant or produced by no node before n. */
distq_status onnx_need_value(onnx_importer *im, const Onnx__NodeProto *n, int k, const char **out);
/* As onnx_need_value, and the padding of a Pad between (zeros if none), for
 * the ops that fold it into their own (Conv, AveragePool). */
distq_status onnx_need_padded_value(onnx_importer *im, const Onnx__NodeProto *n, int k, const char **out,
                                    int64_t pad[4]);
/* The dims of value name (dims[0] is the batch, held at 1). */
distq_status onnx_value_dims(onnx_importer *im, const char *name, int *ndim, int64_t *dims);

/* A graph parameter holding c unchanged, named as c (added on first use). */
distq_status onnx_param_of(onnx_importer *im, onnx_const *c, const char **name);
/* A new f32 parameter named base + suffix (data copied): a constant that
 * import had to change (transposed, scaled). */
distq_status onnx_param_new(onnx_importer *im, const char *base, const char *suffix, int ndim,
                            const int64_t *dims, const float *data, const char **name);
/* A constant named name (n's output); data is taken over (freed on error too). */
distq_status onnx_const_add(onnx_importer *im, const char *name, distq_dtype dtype, int ndim,
                            const int64_t *dims, void *data);
/* A constant from a TensorProto (its data or external file), named name. */
distq_status onnx_const_from_tensor(onnx_importer *im, const Onnx__TensorProto *t,
                                    const char *name);
/* Output k of n stands for the value or constant `to`. */
distq_status onnx_alias_add(onnx_importer *im, const char *from, const char *to);
/* from is `to` padded by pad (top, left, bottom, right): the node being
 * translated is a Pad; a Pad of a Pad is refused. */
distq_status onnx_alias_add_padded(onnx_importer *im, const char *from, const char *to, const int64_t pad[4]);

/* Adds the node being translated, writing n's output 0. */
distq_status onnx_emit(onnx_importer *im, distq_op op, const distq_attrs *a, int n_inputs,
                       const char *const *inputs, const char *const *params);
/* Adds one more node for the ONNX node being translated (one ONNX op as two
 * registry ops): named after it plus suffix, writing value out. */
distq_status onnx_emit_as(onnx_importer *im, distq_op op, const distq_attrs *a, int n_inputs,
                          const char *const *inputs, const char *const *params, const char *suffix,
                          const char *out);

/* Attributes: NULL if absent. */
const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n, const char *name);
distq_status onnx_attr_int(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                           int64_t def, int64_t *out);
distq_status onnx_attr_float(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                             float def, float *out);
/* Up to max ints; *count = 0 if absent. */
distq_status onnx_attr_ints(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                            int max, int *count, int64_t *out);
/* The string attribute into buf; def if absent. */
distq_status onnx_attr_string(const onnx_importer *im, const Onnx__NodeProto *n, const char *name,
                              const char *def, char *buf, size_t len);

/* --- patterns (onnx_fuse.c) --- */
/* Finds the patterns of gp imported as one op, filling fusion_of. */
distq_status onnx_find_fusions(onnx_importer *im, const Onnx__GraphProto *gp);
/* Emits fusion f (the node being translated is its last). */
distq_status onnx_emit_fusion(onnx_importer *im, const Onnx__GraphProto *gp, const onnx_fusion *f);

/* --- constant folding (onnx_fold.c) --- */
/* Shape's entry for the batch, which stays symbolic. */
#define ONNX_SYM_BATCH INT64_MIN
/* The folding of n when every input is a constant and its op folds, else NULL. */
onnx_op_fn onnx_fold_find(onnx_importer *im, const Onnx__NodeProto *n);
/* Rows whose ONNX ops distq runs only on constants (shape arithmetic). */
distq_status onnx_fold_shape(onnx_importer *im, const Onnx__NodeProto *n);
distq_status onnx_fold_gather(onnx_importer *im, const Onnx__NodeProto *n);
distq_status onnx_fold_cast(onnx_importer *im, const Onnx__NodeProto *n);
/* Squeeze / Unsqueeze: the axes (attribute or input, by opset) and the dims after. */
distq_status onnx_axes(onnx_importer *im, const Onnx__NodeProto *n, int *count, int64_t *axes);
distq_status onnx_unsqueezed_dims(onnx_importer *im, const Onnx__NodeProto *n, int nd, const int64_t *dims,
                                  int *out_nd, int64_t *out);
distq_status onnx_squeezed_dims(onnx_importer *im, const Onnx__NodeProto *n, int nd, const int64_t *dims,
                                int *out_nd, int64_t *out);

#endif
