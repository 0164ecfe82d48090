#ifndef DISTQ_GRAPH_IMPL_H
#define DISTQ_GRAPH_IMPL_H
/* Internal: per-op shape inference and parameter checks used by finalize. */
#include "distq/graph.h"

/* Checks node n's attributes, input shapes and parameters and fills the shape
 * of its output value. Inputs and params are already resolved. Errors name the
 * node. */
distq_status distq_node_infer(distq_graph *g, distq_node *n);

/* The registry's shape rules (shape.c), one per kind of op. */
distq_status distq_infer_conv2d(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_batch_norm(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_unary(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_clip(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_hardsigmoid(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_same_shape(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_broadcast(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_concat(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_max_pool2d(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_avg_pool2d(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_softmax(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_transpose(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_reshape(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_layer_norm(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_slice(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_adaptive_avg_pool2d(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_flatten(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_linear(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_quantize(distq_graph *g, distq_node *n, distq_value *out);
distq_status distq_infer_dequantize(distq_graph *g, distq_node *n, distq_value *out);

#endif
