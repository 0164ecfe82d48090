/* Graph IR: construction, validation errors, topological order, builders, fold_bn. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/exec.h"
#include "graph/graph_impl.h"
#include "distq/passes.h"
#include "test_util.h"

/* input (1,4,6,6) -> conv "c" 4->8 k3 p1 -> relu "r" */
static distq_graph *small_graph(void)
{
    distq_graph *g = NULL;
    int64_t in[4] = {1, 4, 6, 6}, w[4] = {8, 4, 3, 3};
    CU_ASSERT_EQUAL_FATAL(distq_graph_create(&g), DISTQ_OK);
    CU_ASSERT_EQUAL(distq_graph_set_input(g, "x", 4, in), DISTQ_OK);
    CU_ASSERT_EQUAL(distq_graph_add_param(g, "c.weight", DISTQ_DTYPE_F32, 4, w, NULL, NULL), DISTQ_OK);
    return g;
}

static void add_conv(distq_graph *g, const char *name, const char *in, const char *weight)
{
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.padding[0] = a.padding[1] = 1;
    const char *ins[] = {in};
    const char *params[DISTQ_MAX_PARAMS] = {weight};
    CU_ASSERT_EQUAL(distq_graph_add_node(g, name, DISTQ_OP_CONV2D, &a, 1, ins, params, name), DISTQ_OK);
}

static void add_unary(distq_graph *g, distq_op op, const char *name, const char *in)
{
    const char *ins[] = {in};
    CU_ASSERT_EQUAL(distq_graph_add_node(g, name, op, NULL, 1, ins, NULL, name), DISTQ_OK);
}

/* Every op of the enum has a complete registry row, names round-trip, and
 * no schema lists an attribute twice (the file format keys on the name). */
static void test_registry_complete(void)
{
    for (int i = 0; i < DISTQ_OP_COUNT; i++) {
        const distq_op_info *info = distq_op_info_of((distq_op)i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(info);
        CU_ASSERT_PTR_NOT_NULL(info->infer);
        CU_ASSERT(info->min_inputs >= 1);
        CU_ASSERT(info->max_inputs == DISTQ_VARIADIC || info->max_inputs >= info->min_inputs);
        CU_ASSERT_EQUAL(info->params_required & ~info->params, 0u);
        CU_ASSERT_EQUAL(info->params_trained & ~info->params, 0u);
        distq_op back = DISTQ_OP_COUNT;
        CU_ASSERT_EQUAL(distq_op_from_name(info->name, &back), DISTQ_OK);
        CU_ASSERT_EQUAL(back, (distq_op)i);
        for (int a = 0; a < info->n_attrs; a++)
            for (int b = a + 1; b < info->n_attrs; b++)
                CU_ASSERT(strcmp(info->attrs[a].name, info->attrs[b].name) != 0);
    }
    CU_ASSERT_PTR_NULL(distq_op_info_of(DISTQ_OP_COUNT));
    CU_ASSERT_PTR_NULL(distq_op_info_of((distq_op)-1));
    CU_ASSERT_EQUAL(distq_op_info_of(DISTQ_OP_CONCAT)->max_inputs, DISTQ_VARIADIC);
    CU_ASSERT_EQUAL(distq_op_info_of(DISTQ_OP_CONV2D)->qrole, DISTQ_QROLE_HEAD);
}

/* x (1,4,6,6) -> conv c (1,8,6,6); gap (1,8,1,1); mul c * gap; concat of
 * x, c, mul and x again along channels: (1, 4+8+8+4, 6, 6). */
static void test_concat_and_broadcast_shapes(void)
{
    distq_graph *g = small_graph();
    add_conv(g, "c", "x", "c.weight");
    add_unary(g, DISTQ_OP_ADAPTIVE_AVG_POOL2D, "gap", "c");
    const char *m_ins[] = {"gap", "c"}; /* the broadcasting operand first */
    TEST_OK(distq_graph_add_node(g, "m", DISTQ_OP_MUL, NULL, 2, m_ins, NULL, "m"));
    const char *cat_ins[] = {"x", "c", "m", "x"};
    TEST_OK(distq_graph_add_node(g, "cat", DISTQ_OP_CONCAT, NULL, 4, cat_ins, NULL, "cat"));
    distq_graph_set_output(g, "cat");
    TEST_OK(distq_graph_finalize(g));
    const distq_value *m = &g->values[distq_graph_find_value(g, "m")];
    CU_ASSERT_EQUAL(m->dims[1], 8);
    CU_ASSERT_EQUAL(m->dims[2], 6);
    const distq_value *cat = &g->values[g->output_values[0]];
    CU_ASSERT_EQUAL(cat->dims[1], 24);
    CU_ASSERT_EQUAL(cat->dims[3], 6);
    /* a clone deep-copies the variadic inputs */
    distq_graph *c = NULL;
    TEST_OK(distq_graph_clone(g, &c));
    int k = distq_graph_find_node(c, "cat");
    CU_ASSERT_EQUAL_FATAL(c->nodes[k].n_inputs, 4);
    CU_ASSERT_STRING_EQUAL(c->nodes[k].input_names[3], "x");
    CU_ASSERT(c->nodes[k].input_names != g->nodes[k].input_names);
    distq_graph_destroy(c);
    /* axis 2 joins heights, which must then match off the axis: 4 != 8 channels */
    g->nodes[distq_graph_find_node(g, "cat")].attr.axis = 2;
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'cat' (concat): shape mismatch");
    g->nodes[distq_graph_find_node(g, "cat")].attr.axis = 0;
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "batch axis 0 cannot be joined");
    distq_graph_destroy(g);
}

static void test_new_op_errors(void)
{
    distq_graph *g = small_graph();
    add_conv(g, "c", "x", "c.weight");
    const char *ins[] = {"c", "x"};
    TEST_OK(distq_graph_add_node(g, "m", DISTQ_OP_MUL, NULL, 2, ins, NULL, "m"));
    distq_graph_set_output(g, "m");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG,
             "node 'm' (mul): shape mismatch: 'c' (1, 8, 6, 6) vs 'x' (1, 4, 6, 6) (not broadcastable)");
    distq_graph_destroy(g);

    g = small_graph();
    const char *three[] = {"x", "x", "x"};
    TEST_OK(distq_graph_add_node(g, "a", DISTQ_OP_ADD, NULL, 3, three, NULL, "a"));
    distq_graph_set_output(g, "a");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'a' (add): has 3 inputs, expected 2");
    distq_graph_destroy(g);

    g = small_graph();
    distq_attrs a = distq_attrs_default(DISTQ_OP_CLIP);
    a.min = 6.0f;
    a.max = 0.0f;
    const char *one[] = {"x"};
    TEST_OK(distq_graph_add_node(g, "clip", DISTQ_OP_CLIP, &a, 1, one, NULL, "clip"));
    distq_graph_set_output(g, "clip");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'clip' (clip): min 6 is not <= max 0");
    distq_graph_destroy(g);

    /* a weight in a slot the op does not take */
    g = small_graph();
    const char *params[DISTQ_MAX_PARAMS] = {"c.weight"};
    TEST_OK(distq_graph_add_node(g, "r", DISTQ_OP_RELU, NULL, 1, one, params, "r"));
    distq_graph_set_output(g, "r");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "which relu does not take");
    distq_graph_destroy(g);
}

static void test_valid_small_graph(void)
{
    distq_graph *g = small_graph();
    /* Added out of order: finalize must sort. */
    add_unary(g, DISTQ_OP_RELU, "r", "c");
    add_conv(g, "c", "x", "c.weight");
    distq_graph_set_output(g, "r");
    TEST_OK(distq_graph_finalize(g));
    CU_ASSERT_STRING_EQUAL(g->nodes[0].name, "c");
    CU_ASSERT_STRING_EQUAL(g->nodes[1].name, "r");
    const distq_value *r = &g->values[g->output_values[0]];
    CU_ASSERT_EQUAL(r->ndim, 4);
    CU_ASSERT_EQUAL(r->dims[1], 8);
    CU_ASSERT_EQUAL(r->dims[2], 6);
    CU_ASSERT_EQUAL(r->dims[3], 6);
    distq_graph_destroy(g);
}

/* An op value outside the table (a corrupt file, a hand-built node) is an
 * error naming the node, not a call through a NULL entry. */
static void test_op_without_shape_rule(void)
{
    distq_graph *g = small_graph();
    add_conv(g, "c", "x", "c.weight");
    distq_graph_set_output(g, "c");
    TEST_OK(distq_graph_finalize(g));
    distq_node *n = &g->nodes[0];
    distq_op was = n->op;
    n->op = DISTQ_OP_COUNT;
    TEST_ERR(distq_node_infer(g, n), DISTQ_ERR_INVALID_ARG, "which is not in the op registry");
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), n->name));
    n->op = was;
    TEST_OK(distq_node_infer(g, n));
    distq_graph_destroy(g);
}

static void test_unknown_input(void)
{
    distq_graph *g = small_graph();
    add_conv(g, "c", "nope", "c.weight");
    distq_graph_set_output(g, "c");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'c': unknown input 'nope'");
    distq_graph_destroy(g);
}

static void test_missing_weight(void)
{
    distq_graph *g = small_graph();
    add_conv(g, "c", "x", "c.wrong");
    distq_graph_set_output(g, "c");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'c': missing weight 'c.wrong'");
    distq_graph_destroy(g);
}

static void test_weight_shape_mismatch(void)
{
    distq_graph *g = small_graph();
    int64_t w[4] = {8, 5, 3, 3};
    distq_graph_add_param(g, "bad.weight", DISTQ_DTYPE_F32, 4, w, NULL, NULL);
    add_conv(g, "c", "x", "bad.weight");
    distq_graph_set_output(g, "c");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG,
             "node 'c' (conv2d): weight 'bad.weight' has shape (8, 5, 3, 3), expected (8, 4, 3, 3)");
    distq_graph_destroy(g);
}

static void test_add_shape_mismatch(void)
{
    distq_graph *g = small_graph();
    add_conv(g, "c", "x", "c.weight");
    const char *ins[] = {"c", "x"};
    distq_graph_add_node(g, "sum", DISTQ_OP_ADD, NULL, 2, ins, NULL, "sum");
    distq_graph_set_output(g, "sum");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG,
             "node 'sum' (add): shape mismatch: 'c' (1, 8, 6, 6) vs 'x' (1, 4, 6, 6)");
    distq_graph_destroy(g);
}

static void test_cycle(void)
{
    distq_graph *g = small_graph();
    /* a reads b, b reads a. */
    add_unary(g, DISTQ_OP_RELU, "a", "b");
    add_unary(g, DISTQ_OP_RELU, "b", "a");
    distq_graph_set_output(g, "b");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'a': part of a cycle");
    distq_graph_destroy(g);
}

static void test_duplicates_and_output(void)
{
    distq_graph *g = small_graph();
    int64_t d[1] = {3};
    TEST_ERR(distq_graph_add_param(g, "c.weight", DISTQ_DTYPE_F32, 1, d, NULL, NULL),
             DISTQ_ERR_INVALID_ARG, "duplicate tensor 'c.weight'");
    add_conv(g, "c", "x", "c.weight");
    distq_graph_set_output(g, "missing");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "graph output 'missing'");
    distq_graph_destroy(g);
}

static void test_pool_attrs_checked(void)
{
    distq_graph *g = small_graph();
    distq_attrs a = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    a.kernel[0] = a.kernel[1] = 2;
    a.padding[0] = 2;
    const char *ins[] = {"x"};
    distq_graph_add_node(g, "mp", DISTQ_OP_MAX_POOL2D, &a, 1, ins, NULL, "mp");
    distq_graph_set_output(g, "mp");
    TEST_ERR(distq_graph_finalize(g), DISTQ_ERR_INVALID_ARG, "node 'mp' (max_pool2d): padding 2 is not below the kernel 2");
    distq_graph_destroy(g);
}

/* PyTorch's output-size rule, values from torch.nn.MaxPool2d / Conv2d docs. */
static void test_out_dim(void)
{
    CU_ASSERT_EQUAL(distq_conv_out_dim(224, 7, 2, 3, 3, 1, 0), 112);
    CU_ASSERT_EQUAL(distq_conv_out_dim(112, 3, 2, 1, 1, 1, 0), 56);
    CU_ASSERT_EQUAL(distq_conv_out_dim(5, 2, 2, 0, 0, 1, 0), 2);
    CU_ASSERT_EQUAL(distq_conv_out_dim(5, 2, 2, 0, 0, 1, 1), 3);
    CU_ASSERT_EQUAL(distq_conv_out_dim(6, 3, 2, 1, 1, 1, 1), 4);
    /* ceil mode: a window that would start in the right padding is dropped (5 -> 3, not 4). */
    CU_ASSERT_EQUAL(distq_conv_out_dim(5, 2, 2, 1, 1, 1, 1), 3);
    CU_ASSERT_EQUAL(distq_conv_out_dim(10, 3, 1, 0, 0, 2, 0), 6);
    /* asymmetric (ONNX pads): TF's SAME 3x3 stride 2 on 224 pads 0 before, 1 after -> 112 */
    CU_ASSERT_EQUAL(distq_conv_out_dim(224, 3, 2, 0, 1, 1, 0), 112);
    CU_ASSERT_EQUAL(distq_conv_out_dim(5, 2, 1, 1, 0, 1, 0), 5);
}

/* torchvision resnet18: 11,689,512 learnable parameters, state_dict key names. */
static void test_resnet18_layout(void)
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_resnet18(7, 1000, &g));
    int64_t learnable = 0;
    int n_bn_buffers = 0;
    for (int i = 0; i < g->n_params; i++) {
        const char *nm = g->params[i].name;
        if (strstr(nm, "running_") || strstr(nm, "num_batches_tracked")) n_bn_buffers++;
        else learnable += distq_tensor_numel(&g->params[i]);
    }
    CU_ASSERT_EQUAL(learnable, 11689512);
    CU_ASSERT_EQUAL(n_bn_buffers, 20 * 3);
    CU_ASSERT_EQUAL(g->n_params, 62 + 60);
    const char *keys[] = {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                          "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked",
                          "layer4.1.bn2.bias", "fc.weight", "fc.bias"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, keys[i]));
    const distq_value *out = &g->values[g->output_values[0]];
    CU_ASSERT_EQUAL(out->dims[1], 1000);
    CU_ASSERT_STRING_EQUAL(g->nodes[g->n_nodes - 1].name, "fc");
    /* Same seed, same weights; another seed, other weights. */
    distq_graph *g2 = NULL, *g3 = NULL;
    TEST_OK(distq_build_resnet18(7, 1000, &g2));
    TEST_OK(distq_build_resnet18(8, 1000, &g3));
    const distq_tensor *a = distq_graph_find_param(g, "layer3.1.conv2.weight");
    CU_ASSERT_EQUAL(memcmp(a->data, distq_graph_find_param(g2, a->name)->data, distq_tensor_nbytes(a)), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a->data, distq_graph_find_param(g3, a->name)->data, distq_tensor_nbytes(a)), 0);
    distq_graph_destroy(g);
    distq_graph_destroy(g2);
    distq_graph_destroy(g3);
}

static void test_linear_model(void)
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_model("linear", 1, &g));
    CU_ASSERT_EQUAL(g->n_nodes, 1);
    CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, "linear.weight"));
    CU_ASSERT_EQUAL(g->values[g->output_values[0]].dims[1], 1000);
    distq_graph_destroy(g);
    TEST_ERR(distq_build_model("vgg", 1, &g), DISTQ_ERR_INVALID_ARG, "unknown --arch 'vgg'");
}

/* Folding BN keeps the fp32 output within 1e-5 relative (reference executor). */
static void test_fold_bn_resnet18(void)
{
    distq_graph *g = NULL, *folded = NULL;
    TEST_OK(distq_build_resnet18(3, 1000, &g));
    /* Smaller input keeps the plain-C reference fast; the graph is re-finalized. */
    g->input_dims[2] = g->input_dims[3] = 64;
    TEST_OK(distq_graph_finalize(g));
    TEST_OK(distq_graph_clone(g, &folded));
    int n = 0;
    TEST_OK(distq_pass_fold_bn(folded, &n));
    CU_ASSERT_EQUAL(n, 20);
    for (int i = 0; i < folded->n_nodes; i++) CU_ASSERT_NOT_EQUAL(folded->nodes[i].op, DISTQ_OP_BATCH_NORM);
    CU_ASSERT_EQUAL(folded->n_nodes, g->n_nodes - 20);
    /* 20 conv weights + 20 new biases + fc weight and bias; BN tensors dropped */
    CU_ASSERT_EQUAL(folded->n_params, 42);
    CU_ASSERT_PTR_NULL(distq_graph_find_param(folded, "bn1.running_var"));
    CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(folded, "conv1.bias"));

    float x[3 * 64 * 64], y0[1000], y1[1000];
    test_fill_uniform(x, 3 * 64 * 64, 11, -2.0f, 2.0f);
    distq_exec *e0 = NULL, *e1 = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, 1, &e0));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, folded, 1, &e1));
    TEST_OK(distq_exec_run(e0, x, y0));
    TEST_OK(distq_exec_run(e1, x, y1));
    double err = test_max_rel_err(y1, y0, 1000);
    printf(" [fold_bn max rel err %.2e] ", err);
    CU_ASSERT(err < 1e-5);
    distq_exec_destroy(e0);
    distq_exec_destroy(e1);
    distq_graph_destroy(g);
    distq_graph_destroy(folded);
}

int main(void)
{
    static const test_case cases[] = {
        {"op registry complete", test_registry_complete},
        {"concat (variadic) and broadcast mul shapes", test_concat_and_broadcast_shapes},
        {"new ops' errors named", test_new_op_errors},
        {"valid graph is sorted and shaped", test_valid_small_graph},
        {"unknown input named", test_unknown_input},
        {"op without a shape rule named, not called", test_op_without_shape_rule},
        {"missing weight named", test_missing_weight},
        {"weight shape mismatch named", test_weight_shape_mismatch},
        {"add shape mismatch named", test_add_shape_mismatch},
        {"cycle named", test_cycle},
        {"duplicates and bad output", test_duplicates_and_output},
        {"pool attributes checked", test_pool_attrs_checked},
        {"conv/pool output size", test_out_dim},
        {"resnet18 torchvision layout", test_resnet18_layout},
        {"linear model", test_linear_model},
        {"fold_bn keeps outputs", test_fold_bn_resnet18},
    };
    return test_run_suite("graph", cases, sizeof cases / sizeof cases[0]);
}
