/*
 * ONNX importer: models built here with protobuf-c (the generated onnx.proto
 * bindings), written to files and imported. What imports computes what ONNX
 * defines (checked on the reference executor against values worked by hand);
 * what does not import is refused naming the file, node, op type, opset and
 * attribute or tensor at fault.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/exec.h"
#include "distq/io.h"
#include "distq/onnx.h"
#include "onnx.pb-c.h"
#include "test_util.h"

// --- building models -----------------------------------------------------------------

#define MAX_ITEMS 8

/* One model under construction: its messages live here, so nothing is freed. */
typedef struct {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    Onnx__NodeProto nodes[MAX_ITEMS], *node_ptrs[MAX_ITEMS];
    Onnx__TensorProto inits[MAX_ITEMS], *init_ptrs[MAX_ITEMS];
    Onnx__ValueInfoProto in, out, out2, *in_ptrs[1], *out_ptrs[2];
    Onnx__TypeProto in_type;
    Onnx__TypeProto__Tensor in_tensor;
    Onnx__TensorShapeProto in_shape;
    Onnx__TensorShapeProto__Dimension dims[4], *dim_ptrs[4];
    Onnx__AttributeProto attrs[MAX_ITEMS * 4], *attr_ptrs[MAX_ITEMS][4];
    int n_attrs;
    Onnx__StringStringEntryProto ext[3], *ext_ptrs[3];
} model;

/* A model with opset, graph input "x" (batch, C, H, W) and output "y". */
static void model_init(model *md, int64_t opset, int64_t C, int64_t H, int64_t W)
{
    memset(md, 0, sizeof *md);
    onnx__model_proto__init(&md->m);
    onnx__graph_proto__init(&md->g);
    onnx__operator_set_id_proto__init(&md->opset);
    md->m.has_ir_version = 1;
    md->m.ir_version = 8;
    md->opset.has_version = 1;
    md->opset.version = opset;
    md->opset.domain = "";
    md->opsets[0] = &md->opset;
    md->m.n_opset_import = 1;
    md->m.opset_import = md->opsets;
    md->m.graph = &md->g;
    md->g.name = "test";
    onnx__value_info_proto__init(&md->in);
    onnx__type_proto__init(&md->in_type);
    onnx__type_proto__tensor__init(&md->in_tensor);
    onnx__tensor_shape_proto__init(&md->in_shape);
    int64_t sizes[4] = {0, C, H, W};
    for (int i = 0; i < 4; i++) {
        onnx__tensor_shape_proto__dimension__init(&md->dims[i]);
        if (i == 0) {
            md->dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            md->dims[i].dim_param = "batch";
        } else {
            md->dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            md->dims[i].dim_value = sizes[i];
        }
        md->dim_ptrs[i] = &md->dims[i];
    }
    md->in_shape.n_dim = 4;
    md->in_shape.dim = md->dim_ptrs;
    md->in_tensor.has_elem_type = 1;
    md->in_tensor.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    md->in_tensor.shape = &md->in_shape;
    md->in_type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    md->in_type.tensor_type = &md->in_tensor;
    md->in.name = "x";
    md->in.type = &md->in_type;
    md->in_ptrs[0] = &md->in;
    md->g.n_input = 1;
    md->g.input = md->in_ptrs;
    onnx__value_info_proto__init(&md->out);
    md->out.name = "y";
    md->out_ptrs[0] = &md->out;
    md->g.n_output = 1;
    md->g.output = md->out_ptrs;
    md->g.node = md->node_ptrs;
    md->g.initializer = md->init_ptrs;
}

/* Appends node NAME of op_type reading in[0..n_in) and writing out. */
static Onnx__NodeProto *add_node(model *md, const char *name, const char *op_type, int n_in, char **in,
                                 char *out)
{
    Onnx__NodeProto *n = &md->nodes[md->g.n_node];
    onnx__node_proto__init(n);
    n->name = (char *)name;
    n->op_type = (char *)op_type;
    n->n_input = (size_t)n_in;
    n->input = in;
    static char *outs[MAX_ITEMS];
    outs[md->g.n_node] = out;
    n->n_output = 1;
    n->output = &outs[md->g.n_node];
    n->attribute = md->attr_ptrs[md->g.n_node];
    md->node_ptrs[md->g.n_node++] = n;
    return n;
}

static void add_ints_attr(model *md, Onnx__NodeProto *n, const char *name, int count, int64_t *v)
{
    Onnx__AttributeProto *a = &md->attrs[md->n_attrs++];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count;
    a->ints = v;
    n->attribute[n->n_attribute++] = a;
}

static void add_int_attr(model *md, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = &md->attrs[md->n_attrs++];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    n->attribute[n->n_attribute++] = a;
}

static void add_string_attr(model *md, Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a = &md->attrs[md->n_attrs++];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)v;
    n->attribute[n->n_attribute++] = a;
}

/* An initializer of float_data (f32) or int64_data (s64 when i64 != NULL). */
static Onnx__TensorProto *add_init(model *md, const char *name, int ndim, int64_t *dims, int n, float *f32,
                                   int64_t *i64)
{
    Onnx__TensorProto *t = &md->inits[md->g.n_initializer];
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->n_dims = (size_t)ndim;
    t->dims = dims;
    t->has_data_type = 1;
    if (i64) {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        t->n_int64_data = (size_t)n;
        t->int64_data = i64;
    } else {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        t->n_float_data = (size_t)n;
        t->float_data = f32;
    }
    md->init_ptrs[md->g.n_initializer++] = t;
    return t;
}

/* Writes md to test_tmpdir()/name; path gets the file's path. */
static void model_write(model *md, const char *name, char *path, size_t len)
{
    test_tmp_path(path, len, name);
    size_t n = onnx__model_proto__get_packed_size(&md->m);
    uint8_t *buf = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL_FATAL(onnx__model_proto__pack(&md->m, buf), n);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(buf, 1, n, f), n);
    fclose(f);
    free(buf);
}

/* Runs g on the reference executor: x (batch N) -> y. */
static void run_ref(distq_graph *g, int64_t N, const float *x, float *y)
{
    distq_exec *e = NULL;
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, N, &e));
    TEST_OK(distq_exec_run(e, x, y));
    distq_exec_destroy(e);
}

static void import_expect(model *md, const char *file, distq_status want, const char *needle);

// --- what imports -----------------------------------------------------------------

/* Conv 1x1 (weight 2, bias 1) then Relu: y = max(2x + 1, 0), any batch. */
static void test_conv_relu_values(void)
{
    model md;
    model_init(&md, 13, 1, 2, 2);
    int64_t wd[4] = {1, 1, 1, 1}, bd[1] = {1};
    float w = 2.0f, b = 1.0f;
    add_init(&md, "conv.weight", 4, wd, 1, &w, NULL);
    add_init(&md, "conv.bias", 1, bd, 1, &b, NULL);
    char *cin[] = {"x", "conv.weight", "conv.bias"}, *rin[] = {"c"};
    add_node(&md, "conv", "Conv", 3, cin, "c");
    add_node(&md, "relu", "Relu", 1, rin, "y");
    char path[512];
    model_write(&md, "conv_relu.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL(g->n_nodes, 2);
    CU_ASSERT_EQUAL(g->nodes[0].op, DISTQ_OP_CONV2D);
    CU_ASSERT_STRING_EQUAL(g->params[g->nodes[0].params[DISTQ_PARAM_WEIGHT]].name, "conv.weight");
    float x[8] = {-3, -1, 0, 1, 2, 0.5f, -0.25f, 4}, y[8];
    run_ref(g, 2, x, y);
    for (int i = 0; i < 8; i++) CU_ASSERT_DOUBLE_EQUAL(y[i], x[i] * 2 + 1 > 0 ? x[i] * 2 + 1 : 0, 1e-6);
    distq_graph_destroy(g);
}

/* The Conv 1x1 of test_conv_relu_values with both values as graph outputs,
 * the relu's first: each comes back on both backends (oneDNN would otherwise
 * fuse the relu into the conv and never write c). */
static void test_two_outputs(void)
{
    model md;
    model_init(&md, 13, 1, 2, 2);
    int64_t wd[4] = {1, 1, 1, 1}, bd[1] = {1};
    float w = 2.0f, b = 1.0f;
    add_init(&md, "conv.weight", 4, wd, 1, &w, NULL);
    add_init(&md, "conv.bias", 1, bd, 1, &b, NULL);
    char *cin[] = {"x", "conv.weight", "conv.bias"}, *rin[] = {"c"};
    add_node(&md, "conv", "Conv", 3, cin, "c");
    add_node(&md, "relu", "Relu", 1, rin, "y");
    onnx__value_info_proto__init(&md.out2);
    md.out2.name = "c";
    md.out_ptrs[1] = &md.out2;
    md.g.n_output = 2;
    char path[512];
    model_write(&md, "two_outputs.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL_FATAL(g->n_outputs, 2);
    CU_ASSERT_STRING_EQUAL(g->output_names[0], "y");
    CU_ASSERT_STRING_EQUAL(g->output_names[1], "c");
    float x[8] = {-3, -1, 0, 1, 2, 0.5f, -0.25f, 4};
    for (int bk = 0; bk < DISTQ_BACKEND_COUNT; bk++) {
        distq_exec *e = NULL;
        float y[8], c[8], *outs[2] = {y, c};
        TEST_OK(distq_exec_create((distq_backend)bk, g, 2, &e));
        TEST_OK(distq_exec_run_all(e, x, outs));
        for (int i = 0; i < 8; i++) {
            CU_ASSERT_DOUBLE_EQUAL(c[i], x[i] * 2 + 1, 1e-6);
            CU_ASSERT_DOUBLE_EQUAL(y[i], x[i] * 2 + 1 > 0 ? x[i] * 2 + 1 : 0, 1e-6);
        }
        distq_exec_destroy(e);
    }
    distq_graph_destroy(g);
    /* an output that is the graph input is refused, naming it */
    md.out2.name = "x";
    import_expect(&md, "output_is_input.onnx", DISTQ_ERR_UNSUPPORTED, "graph output 'x'");
}

/* Pad (zeros, 1 on each side of H, 2 of W) then AveragePool 3x5: the pad
 * folds into the pool as counted padding, H and W in ONNX's order. On a 1x1
 * image of value 15 the result is 15 / 15 = 1 (swapped pads would give a 3x1
 * output instead). */
/* Conv 2x2 of ones with pads (top 1, left 1, bottom 0, right 0), then a
 * 2x2 MaxPool with auto_pad SAME_UPPER (its extra padding after): on a 3x3
 * image both keep 3x3, each window summed / maxed over its cells inside the
 * image (computed here, on both backends, and after a model-file round trip). */
static void test_asymmetric_pads(void)
{
    model md;
    model_init(&md, 13, 1, 3, 3);
    int64_t wd[4] = {1, 1, 2, 2}, pads[4] = {1, 1, 0, 0}, k[2] = {2, 2};
    float w[4] = {1, 1, 1, 1};
    add_init(&md, "w", 4, wd, 4, w, NULL);
    char *cin[] = {"x", "w"}, *pin[] = {"c"};
    Onnx__NodeProto *n = add_node(&md, "conv", "Conv", 2, cin, "c");
    add_ints_attr(&md, n, "pads", 4, pads);
    n = add_node(&md, "pool", "MaxPool", 1, pin, "y");
    add_ints_attr(&md, n, "kernel_shape", 2, k);
    add_string_attr(&md, n, "auto_pad", "SAME_UPPER");
    char path[512];
    model_write(&md, "asym_pads.onnx", path, sizeof path);
    distq_graph *g = NULL, *back = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL_FATAL(g->n_nodes, 2);
    CU_ASSERT_EQUAL(g->nodes[0].attr.padding[0], 1);
    CU_ASSERT_EQUAL(distq_pad_end(&g->nodes[0].attr, 0), 0);
    CU_ASSERT_EQUAL(g->nodes[1].attr.padding[1], 0);
    CU_ASSERT_EQUAL(distq_pad_end(&g->nodes[1].attr, 1), 1);
    CU_ASSERT_EQUAL(distq_value_numel(&g->values[g->output_values[0]], 1), 9);
    test_tmp_path(path, sizeof path, "asym_pads.h5");
    TEST_OK(distq_model_save(g, path));
    TEST_OK(distq_model_load(path, &back));
    CU_ASSERT_EQUAL(distq_pad_end(&back->nodes[1].attr, 1), 1);
    float x[9] = {1, -2, 3, 0.5f, 4, -1, 2, 0, -3}, c[9], want[9], y[9];
    for (int oh = 0; oh < 3; oh++)
        for (int ow = 0; ow < 3; ow++) {
            float sum = 0;
            for (int ih = oh - 1; ih <= oh; ih++)
                for (int iw = ow - 1; iw <= ow; iw++)
                    if (ih >= 0 && iw >= 0) sum += x[ih * 3 + iw];
            c[oh * 3 + ow] = sum;
        }
    for (int oh = 0; oh < 3; oh++)
        for (int ow = 0; ow < 3; ow++) {
            float m = c[oh * 3 + ow];
            for (int ih = oh; ih <= oh + 1 && ih < 3; ih++)
                for (int iw = ow; iw <= ow + 1 && iw < 3; iw++)
                    if (c[ih * 3 + iw] > m) m = c[ih * 3 + iw];
            want[oh * 3 + ow] = m;
        }
    distq_backend backends[2] = {DISTQ_BACKEND_REF, DISTQ_BACKEND_ONEDNN};
    distq_graph *graphs[2] = {g, back};
    for (int m = 0; m < 2; m++)
        for (int b = 0; b < 2; b++) {
            distq_exec *e = NULL;
            TEST_OK(distq_exec_create(backends[b], graphs[m], 1, &e));
            TEST_OK(distq_exec_run(e, x, y));
            distq_exec_destroy(e);
            for (int i = 0; i < 9; i++) CU_ASSERT_DOUBLE_EQUAL(y[i], want[i], 1e-6);
        }
    distq_graph_destroy(g);
    distq_graph_destroy(back);
}

static void test_pad_folds_into_avgpool(void)
{
    model md;
    model_init(&md, 13, 1, 1, 1);
    int64_t pd[1] = {8}, pads[8] = {0, 0, 1, 2, 0, 0, 1, 2}, k[2] = {3, 5};
    add_init(&md, "pads", 1, pd, 8, NULL, pads);
    char *pin[] = {"x", "pads"}, *ain[] = {"p"};
    add_node(&md, "pad", "Pad", 2, pin, "p");
    Onnx__NodeProto *pool = add_node(&md, "pool", "AveragePool", 1, ain, "y");
    add_ints_attr(&md, pool, "kernel_shape", 2, k);
    char path[512];
    model_write(&md, "pad_pool.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL_FATAL(g->n_nodes, 1);
    CU_ASSERT_EQUAL(g->nodes[0].op, DISTQ_OP_AVG_POOL2D);
    CU_ASSERT_EQUAL(g->nodes[0].attr.padding[0], 1);
    CU_ASSERT_EQUAL(g->nodes[0].attr.padding[1], 2);
    CU_ASSERT_EQUAL(g->nodes[0].attr.count_include_pad, 1);
    CU_ASSERT_EQUAL(distq_value_numel(&g->values[g->output_values[0]], 1), 1); /* a 1x1 output */
    float x = 15.0f, y = 0.0f;
    run_ref(g, 1, &x, &y);
    CU_ASSERT_DOUBLE_EQUAL(y, 1.0, 1e-6);
    distq_graph_destroy(g);
}

/* ReduceMean over H, W without keepdims: global average, then flatten. */
static void test_reduce_mean(void)
{
    model md;
    model_init(&md, 13, 2, 1, 2);
    int64_t axes[2] = {-1, 2};
    char *in[] = {"x"};
    Onnx__NodeProto *n = add_node(&md, "mean", "ReduceMean", 1, in, "y");
    add_ints_attr(&md, n, "axes", 2, axes);
    add_int_attr(&md, n, "keepdims", 0);
    char path[512];
    model_write(&md, "mean.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL(g->n_nodes, 2);
    float x[4] = {1, 3, -2, 8}, y[2];
    run_ref(g, 1, x, y);
    CU_ASSERT_DOUBLE_EQUAL(y[0], 2.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[1], 3.0, 1e-6);
    distq_graph_destroy(g);
}

/* Sub and Div of activations, operand order kept, on both backends:
 * (x - relu(x)) / (x * x) = min(x, 0) / x^2, i.e. 1/x for x < 0, 0 above. */
static void test_sub_div(void)
{
    model md;
    model_init(&md, 14, 1, 2, 3);
    char *rin[] = {"x"}, *min[] = {"x", "x"}, *sin[] = {"x", "r"}, *din[] = {"s", "m"};
    add_node(&md, "relu", "Relu", 1, rin, "r");
    add_node(&md, "sq", "Mul", 2, min, "m");
    add_node(&md, "sub", "Sub", 2, sin, "s");
    add_node(&md, "div", "Div", 2, din, "y");
    char path[512];
    model_write(&md, "sub_div.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    float x[12] = {-2, -0.5f, 4, 1, -1, -8, 3, -4, 0.25f, -0.25f, 2, -3}, y[12];
    distq_backend backends[2] = {DISTQ_BACKEND_REF, DISTQ_BACKEND_ONEDNN};
    for (int b = 0; b < 2; b++) {
        distq_exec *e = NULL;
        TEST_OK(distq_exec_create(backends[b], g, 2, &e));
        TEST_OK(distq_exec_run(e, x, y));
        distq_exec_destroy(e);
        for (int i = 0; i < 12; i++) CU_ASSERT_DOUBLE_EQUAL(y[i], x[i] < 0 ? 1.0 / x[i] : 0.0, 1e-6);
    }
    distq_graph_destroy(g);
}

/* Constant operands, broadcast as ONNX aligns them (trailing dims):
 * y = ((x * s[c]) + 0.5 - b[w]) / 4 with s of shape (C, 1, 1), the scalar
 * first in the Add, b of shape (W), on both backends. */
static void test_constant_operands(void)
{
    model md;
    model_init(&md, 14, 2, 1, 3);
    int64_t sd[3] = {2, 1, 1}, bd[1] = {3};
    float sv[2] = {2.0f, -1.0f}, half = 0.5f, bv[3] = {1.0f, 0.0f, -1.0f}, four = 4.0f;
    add_init(&md, "scale", 3, sd, 2, sv, NULL);
    add_init(&md, "half", 0, NULL, 1, &half, NULL);
    add_init(&md, "shift", 1, bd, 3, bv, NULL);
    add_init(&md, "four", 0, NULL, 1, &four, NULL);
    char *min[] = {"x", "scale"}, *ain[] = {"half", "m"}, *sin[] = {"a", "shift"}, *din[] = {"s", "four"};
    add_node(&md, "mul", "Mul", 2, min, "m");
    add_node(&md, "add", "Add", 2, ain, "a");
    add_node(&md, "sub", "Sub", 2, sin, "s");
    add_node(&md, "div", "Div", 2, din, "y");
    char path[512];
    model_write(&md, "consts.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL_FATAL(g->n_nodes, 4);
    CU_ASSERT_EQUAL(g->nodes[0].n_inputs, 1);
    float x[12], y[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i - 5.0f;
    distq_backend backends[2] = {DISTQ_BACKEND_REF, DISTQ_BACKEND_ONEDNN};
    for (int b = 0; b < 2; b++) {
        distq_exec *e = NULL;
        TEST_OK(distq_exec_create(backends[b], g, 2, &e));
        TEST_OK(distq_exec_run(e, x, y));
        distq_exec_destroy(e);
        for (int i = 0; i < 12; i++) {
            int c = (i / 3) % 2, w = i % 3;
            CU_ASSERT_DOUBLE_EQUAL(y[i], (x[i] * sv[c] + 0.5f - bv[w]) / 4.0f, 1e-6);
        }
    }
    distq_graph_destroy(g);
    /* c - x is refused, naming the constant */
    model_init(&md, 14, 2, 1, 3);
    add_init(&md, "half", 0, NULL, 1, &half, NULL);
    char *rin[] = {"half", "x"};
    add_node(&md, "rsub", "Sub", 2, rin, "y");
    import_expect(&md, "rsub.onnx", DISTQ_ERR_UNSUPPORTED, "a constant first operand 'half'");
}

/* x * HardSigmoid(x; 1/6, 1/2) becomes one hardswish node and x * Sigmoid(x)
 * one silu node, with their values; a gate read by another node stays. */
static void test_gates_fused(void)
{
    const char *gates[2] = {"HardSigmoid", "Sigmoid"};
    distq_op want[2] = {DISTQ_OP_HARDSWISH, DISTQ_OP_SILU};
    for (int k = 0; k < 2; k++) {
        model md;
        model_init(&md, 13, 1, 2, 2);
        char *gin[] = {"x"}, *min[] = {"x", "g"};
        Onnx__NodeProto *gate = add_node(&md, "gate", gates[k], 1, gin, "g");
        if (k == 0) { /* PyTorch's hardswish constants, as torch exports them */
            Onnx__AttributeProto *a = &md.attrs[md.n_attrs++];
            onnx__attribute_proto__init(a);
            a->name = "alpha";
            a->has_type = 1;
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
            a->has_f = 1;
            a->f = 1.0f / 6.0f;
            gate->attribute[gate->n_attribute++] = a;
        }
        add_node(&md, "mul", "Mul", 2, min, "y");
        char path[512];
        model_write(&md, "gate.onnx", path, sizeof path);
        distq_graph *g = NULL;
        TEST_OK(distq_onnx_import(path, NULL, &g));
        CU_ASSERT_EQUAL_FATAL(g->n_nodes, 1);
        CU_ASSERT_EQUAL(g->nodes[0].op, want[k]);
        float x[4] = {-4, -1, 0.5f, 3.5f}, y[4];
        run_ref(g, 1, x, y);
        for (int i = 0; i < 4; i++) {
            float gv = k == 0 ? fminf(fmaxf(x[i] / 6.0f + 0.5f, 0.0f), 1.0f) : 1.0f / (1.0f + expf(-x[i]));
            CU_ASSERT_DOUBLE_EQUAL(y[i], x[i] * gv, 1e-6);
        }
        distq_graph_destroy(g);
    }
    /* the gate also feeds the graph's next op: not fused */
    model md;
    model_init(&md, 13, 1, 2, 2);
    char *gin[] = {"x"}, *min[] = {"x", "g"}, *ain[] = {"m", "g"};
    add_node(&md, "gate", "Sigmoid", 1, gin, "g");
    add_node(&md, "mul", "Mul", 2, min, "m");
    add_node(&md, "add", "Add", 2, ain, "y");
    char path[512];
    model_write(&md, "gate_shared.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL(g->n_nodes, 3);
    distq_graph_destroy(g);
}

/* What rank 0 sends under MPI: the imported model as model-file bytes and
 * back, the same nodes, weights and outputs. */
static void test_model_image_round_trip(void)
{
    model md;
    model_init(&md, 13, 1, 1, 2);
    int64_t wd[4] = {2, 1, 1, 1}, sd[1] = {1};
    float w[2] = {1.5f, -2.0f}, c = 0.25f;
    add_init(&md, "w", 4, wd, 2, w, NULL);
    add_init(&md, "c", 1, sd, 1, &c, NULL);
    char *cin[] = {"x", "w"}, *ain[] = {"v", "c"};
    add_node(&md, "conv", "Conv", 2, cin, "v");
    add_node(&md, "add", "Add", 2, ain, "y");
    char path[512];
    model_write(&md, "image.onnx", path, sizeof path);
    distq_graph *g = NULL, *back = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    void *buf = NULL;
    size_t len = 0;
    TEST_OK(distq_model_to_image(g, path, &buf, &len));
    CU_ASSERT(len > 0);
    TEST_OK(distq_model_from_image(buf, len, path, &back));
    free(buf);
    CU_ASSERT_EQUAL_FATAL(back->n_nodes, g->n_nodes);
    CU_ASSERT_EQUAL(back->nodes[1].n_inputs, 1);
    float x[2] = {2.0f, -1.0f}, y0[4], y1[4];
    run_ref(g, 1, x, y0);
    run_ref(back, 1, x, y1);
    for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(y0[i], y1[i]);
    CU_ASSERT_DOUBLE_EQUAL(y1[0], 3.25, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y1[3], 2.25, 1e-6);
    distq_graph_destroy(g);
    distq_graph_destroy(back);
    /* bytes that are not a model file */
    char junk[64] = "not an HDF5 file";
    TEST_ERR(distq_model_from_image(junk, sizeof junk, "junk", &back), DISTQ_ERR_FORMAT, "junk");
}

/* A weight in an external file at an offset that is not aligned. */
static void test_external_data(void)
{
    char bin[512];
    test_tmp_path(bin, sizeof bin, "ext_weight.bin");
    FILE *f = fopen(bin, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    float w = -3.0f;
    fwrite("abc", 1, 3, f);
    fwrite(&w, sizeof w, 1, f);
    fclose(f);
    model md;
    model_init(&md, 13, 1, 1, 1);
    int64_t wd[4] = {1, 1, 1, 1};
    Onnx__TensorProto *t = add_init(&md, "w", 4, wd, 0, NULL, NULL);
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    const char *kv[3][2] = {{"location", "ext_weight.bin"}, {"offset", "3"}, {"length", "4"}};
    for (int i = 0; i < 3; i++) {
        onnx__string_string_entry_proto__init(&md.ext[i]);
        md.ext[i].key = (char *)kv[i][0];
        md.ext[i].value = (char *)kv[i][1];
        md.ext_ptrs[i] = &md.ext[i];
    }
    t->n_external_data = 3;
    t->external_data = md.ext_ptrs;
    char *cin[] = {"x", "w"};
    add_node(&md, "conv", "Conv", 2, cin, "y");
    char path[512];
    model_write(&md, "ext.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    float x = 2.0f, y = 0.0f;
    run_ref(g, 1, &x, &y);
    CU_ASSERT_DOUBLE_EQUAL(y, -6.0, 1e-6);
    distq_graph_destroy(g);
    /* a location outside the model's folder is refused */
    md.ext[0].value = "../ext_weight.bin";
    model_write(&md, "ext_escape.onnx", path, sizeof path);
    TEST_ERR(distq_onnx_import(path, NULL, &g), DISTQ_ERR_FORMAT, "ext_weight.bin");
    CU_ASSERT_PTR_NULL(g);
}

/* torch's x.view(x.size(0), 2, 2, 3) (Shape -> Gather -> Unsqueeze -> Concat
 * -> Reshape, folded at import with the batch symbolic) then chunk's Split:
 * output 1 is each image's values 6..11, at batch 1 and 3 alike; arithmetic
 * on the batch size is refused. */
static void test_shape_subgraph_folds(void)
{
    model md;
    model_init(&md, 13, 4, 1, 3);
    int64_t scalar[1] = {0}, one = 1, three = 3, zero = 0, rest[3] = {2, 2, 3}, two = 2, halves[2] = {1, 1};
    add_init(&md, "idx0", 0, NULL, 1, NULL, &zero);
    add_init(&md, "axes0", 1, &one, 1, NULL, scalar);
    add_init(&md, "rest", 1, &three, 3, NULL, rest);
    add_init(&md, "halves", 1, &two, 2, NULL, halves);
    char *sin[] = {"x"}, *gin[] = {"s", "idx0"}, *uin[] = {"b", "axes0"}, *cin[] = {"bu", "rest"},
         *rin[] = {"x", "shape"}, *pin[] = {"r", "halves"};
    add_node(&md, "shape", "Shape", 1, sin, "s");
    add_node(&md, "gather", "Gather", 2, gin, "b");
    add_node(&md, "unsq", "Unsqueeze", 2, uin, "bu");
    Onnx__NodeProto *n = add_node(&md, "concat", "Concat", 2, cin, "shape");
    add_int_attr(&md, n, "axis", 0);
    add_node(&md, "reshape", "Reshape", 2, rin, "r");
    n = add_node(&md, "split", "Split", 2, pin, "a");
    add_int_attr(&md, n, "axis", 1);
    static char *split_out[2] = {"a", "y"};
    n->n_output = 2;
    n->output = split_out;
    char path[512];
    model_write(&md, "shape_fold.onnx", path, sizeof path);
    distq_graph *g = NULL;
    TEST_OK(distq_onnx_import(path, NULL, &g));
    CU_ASSERT_EQUAL(g->n_nodes, 3); /* reshape and two slices; the shape arithmetic left no node */
    float x[36], y[18];
    for (int i = 0; i < 36; i++) x[i] = (float)(i / 12 * 100 + i % 12);
    for (int64_t N = 1; N <= 3; N += 2) {
        run_ref(g, N, x, y);
        for (int i = 0; i < 6 * N; i++) CU_ASSERT_EQUAL(y[i], (float)(i / 6 * 100 + 6 + i % 6));
    }
    distq_graph_destroy(g);
    /* Mul of the batch size: refused, naming the constant */
    model_init(&md, 13, 4, 1, 3);
    add_init(&md, "idx0", 0, NULL, 1, NULL, &zero);
    add_init(&md, "two", 0, NULL, 1, NULL, &two);
    char *min[] = {"b", "two"};
    add_node(&md, "shape", "Shape", 1, sin, "s");
    add_node(&md, "gather", "Gather", 2, gin, "b");
    add_node(&md, "twice", "Mul", 2, min, "y");
    import_expect(&md, "batch_arith.onnx", DISTQ_ERR_UNSUPPORTED, "node 'twice' (Mul, opset 13): computes with 'b', "
                  "which holds the batch size");
}

// --- what is refused ----------------------------------------------------------------

static void import_expect(model *md, const char *file, distq_status want, const char *needle)
{
    char path[512];
    model_write(md, file, path, sizeof path);
    distq_graph *g = NULL;
    TEST_ERR(distq_onnx_import(path, NULL, &g), want, needle);
    TEST_ERR(distq_onnx_import(path, NULL, &g), want, file); /* the file is named */
    CU_ASSERT_PTR_NULL(g);
}

static void test_refusals(void)
{
    model md;
    char *in[] = {"x"};
    /* an op outside the table: the node, op type and opset */
    model_init(&md, 13, 1, 2, 2);
    add_node(&md, "soft", "Softsign", 1, in, "y");
    import_expect(&md, "op.onnx", DISTQ_ERR_UNSUPPORTED, "node 'soft' (Softsign, opset 13): op type Softsign");
    /* an attribute the row does not know */
    model_init(&md, 13, 1, 2, 2);
    Onnx__NodeProto *n = add_node(&md, "relu", "Relu", 1, in, "y");
    add_int_attr(&md, n, "bogus", 1);
    import_expect(&md, "attr.onnx", DISTQ_ERR_UNSUPPORTED, "attribute 'bogus' is not supported");
    /* a Pad read by an op it cannot fold into names the Pad */
    model_init(&md, 13, 1, 2, 2);
    int64_t pd[1] = {8}, p8[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    add_init(&md, "pads", 1, pd, 8, NULL, p8);
    char *pin[] = {"x", "pads"}, *rin[] = {"p"};
    add_node(&md, "pad", "Pad", 2, pin, "p");
    add_node(&md, "relu", "Relu", 1, rin, "y");
    import_expect(&md, "pad_relu.onnx", DISTQ_ERR_UNSUPPORTED, "output of Pad node 'pad'");
    /* opsets outside 1..17 */
    model_init(&md, 18, 1, 2, 2);
    add_node(&md, "relu", "Relu", 1, in, "y");
    import_expect(&md, "opset18.onnx", DISTQ_ERR_UNSUPPORTED, "opset 18 is not supported");
}

static void test_bad_files(void)
{
    distq_graph *g = NULL;
    char path[512];
    TEST_ERR(distq_onnx_import("no/such/model.onnx", NULL, &g), DISTQ_ERR_IO, "no/such/model.onnx");
    test_tmp_path(path, sizeof path, "garbage.onnx");
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite("\xff\xff\xff\xff not protobuf", 1, 17, f);
    fclose(f);
    TEST_ERR(distq_onnx_import(path, NULL, &g), DISTQ_ERR_FORMAT, "garbage.onnx");
    CU_ASSERT_PTR_NULL(g);
}

int main(void)
{
    static const test_case cases[] = {
        {"Conv + Relu values, initializer names kept", test_conv_relu_values},
        {"two graph outputs, an inner value among them, on both backends", test_two_outputs},
        {"Pad folds into AveragePool as counted padding", test_pad_folds_into_avgpool},
        {"asymmetric pads and auto_pad SAME_UPPER, ref and oneDNN, through a model file", test_asymmetric_pads},
        {"ReduceMean over H, W without keepdims", test_reduce_mean},
        {"Sub and Div keep operand order, ref and oneDNN", test_sub_div},
        {"Shape/Gather/Unsqueeze/Concat fold into Reshape; Split; batch arithmetic refused", test_shape_subgraph_folds},
        {"x * HardSigmoid(x), x * Sigmoid(x) become hardswish, silu", test_gates_fused},
        {"constant operands of Add, Mul, Sub, Div broadcast as ONNX's", test_constant_operands},
        {"the model as model-file bytes and back (what MPI ranks get)", test_model_image_round_trip},
        {"external data at an unaligned offset; escaping paths refused", test_external_data},
        {"refusals name node, op type, opset, attribute", test_refusals},
        {"missing and malformed files", test_bad_files},
    };
    return test_run_suite("onnx", cases, (int)(sizeof cases / sizeof cases[0]));
}
