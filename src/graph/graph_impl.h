#ifndef DISTQ_GRAPH_IMPL_H
#define DISTQ_GRAPH_IMPL_H
/* Internal: per-op shape inference and parameter checks used by finalize. */
#include "distq/graph.h"

/* Checks node n's attributes, input shapes and parameters and fills the shape
 * of its output value. Inputs and params are already resolved. Errors name the
 * node. */
distq_status distq_node_infer(distq_graph *g, distq_node *n);

#endif
