#ifndef DISTQ_ONNX_H
#define DISTQ_ONNX_H
/*
 * ONNX import: a .onnx file (what torch.onnx.export writes) into a distq
 * graph, finalized, with the ONNX initializer names kept for the parameters.
 *
 *     distq_graph *g;
 *     distq_onnx_import("resnet18.onnx", NULL, &g);   // or distq_model_load
 *
 * The parser is protobuf-c over Debian's onnx.proto. protobuf-c copies every
 * weight out of the file buffer, so import holds about twice the file in
 * memory at its peak. Tensors with data_location EXTERNAL (torch above 2 GB)
 * are read from their file beside the model, at any offset.
 *
 * What is imported (docs/onnx.md): one float graph input whose first dim is
 * the batch (symbolic or not: the graph runs at any batch size), one graph
 * output, and the ops of the standard torchvision CNNs. Identity, Dropout and
 * Constant nodes are removed. An op, an attribute
 * value or a graph the IR cannot run exactly is refused, naming the file, the
 * node, its op type, the opset and the attribute or input at fault.
 */
#include "distq/graph.h"
#include "distq/status.h"
#include "distq/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Graph inputs given a fixed value become constants (an ONNX test case's
 * weights are graph inputs; bound, they are weights again). input_values[k]
 * binds the k-th graph input (initializers not counted); NULL leaves it the
 * activation input. Exactly one input may stay unbound. */
typedef struct {
    int n_inputs;
    const distq_tensor *const *input_values;
    /* 1: the file is a training-mode export (torch.onnx.export with
     * TrainingMode.PRESERVE or TRAINING on a model in train()), imported as
     * the network to train: a BatchNormalization's batch-statistics outputs
     * must be unused and are dropped (the node keeps its running statistics,
     * as a PyTorch module does; distq train / qat compute the batch's
     * themselves), and a training-mode Dropout becomes the identity (distq
     * trains without dropout). 0: such nodes are refused, naming this. */
    int training_graph;
} distq_onnx_options;

/* 1 if every node of the model at path has an op type the importer
 * translates; else 0 with the first other op type in missing. An unreadable
 * model is an error. */
distq_status distq_onnx_claims(const char *path, int *claimed, char *missing, size_t len);

/* 1 if path names an ONNX file (ends in ".onnx"). */
int distq_path_is_onnx(const char *path);

/* Imports path into a new finalized graph; opt may be NULL. */
distq_status distq_onnx_import(const char *path, const distq_onnx_options *opt, distq_graph **out);

/* A tensor read from a serialized TensorProto (an ONNX test case's
 * input_0.pb): t.name points at name; floats become f32, integers and bools
 * s64. Free with distq_onnx_tensor_free. */
typedef struct {
    char *name;
    distq_tensor t;
} distq_onnx_tensor;
distq_status distq_onnx_tensor_read(const char *path, distq_onnx_tensor *out);
void distq_onnx_tensor_free(distq_onnx_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
