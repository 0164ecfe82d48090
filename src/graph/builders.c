/*
 * Model builders with deterministic, seeded initialisation.
 *
 * resnet18 follows torchvision's module tree exactly, so parameter and buffer
 * names equal torchvision's state_dict() keys ("layer2.0.downsample.0.weight").
 * Node names are module paths; torchvision's BasicBlock reuses one ReLU module
 * twice, so its second call is named "<block>.relu_1" (as torch.fx names it).
 *
 * Init (README "Model init"): conv weights ~ N(0, 2/fan_out) as torchvision's
 * kaiming_normal_(mode="fan_out"); linear weight and bias ~ U(-1/sqrt(in),
 * 1/sqrt(in)) as nn.Linear; BN gamma ~ U(0.5, 1.5), beta ~ U(-0.1, 0.1),
 * running_mean ~ U(-0.1, 0.1), running_var ~ U(0.5, 1.5), so folding BN is
 * exercised with non-trivial statistics (torchvision would use 1, 0, 0, 1).
 * One splitmix64 stream, consumed in parameter order.
 *
 * fmnist_cnn is a small ResNet-style net for Fashion-MNIST (1x28x28): a stem,
 * one identity BasicBlock at 32 channels, a 2x2 max pool, one strided
 * BasicBlock to 64 channels (with the 1x1 downsample), average pool and fc.
 * Its blocks use the same names as resnet18's ("block2.downsample.0").
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distq/graph.h"

typedef struct {
    distq_graph *g;
    distq_rng rng;
    distq_status st;
} builder;

static distq_tensor *param(builder *b, const char *name, distq_dtype dt, int ndim,
                           const int64_t *dims)
{
    distq_tensor *t = NULL;
    if (b->st == DISTQ_OK) b->st = distq_graph_add_param(b->g, name, dt, ndim, dims, NULL, &t);
    return b->st == DISTQ_OK ? t : NULL;
}

static void fill_uniform(builder *b, distq_tensor *t, float lo, float hi)
{
    if (!t) return;
    float *x = t->data;
    for (int64_t i = 0; i < distq_tensor_numel(t); i++) x[i] = distq_rng_uniform(&b->rng, lo, hi);
}

static void fill_normal(builder *b, distq_tensor *t, float std)
{
    if (!t) return;
    float *x = t->data;
    for (int64_t i = 0; i < distq_tensor_numel(t); i++) x[i] = std * distq_rng_normal(&b->rng);
}

static void node(builder *b, const char *name, distq_op op, const distq_attrs *a, int n_in,
                 const char *in0, const char *in1, const char *const *params)
{
    const char *ins[2] = {in0, in1};
    if (b->st == DISTQ_OK) b->st = distq_graph_add_node(b->g, name, op, a, n_in, ins, params, name);
}

/* conv without bias: "<name>.weight" (OC, IC, K, K). */
static void conv(builder *b, const char *name, const char *in, int64_t IC, int64_t OC, int64_t K,
                 int64_t stride, int64_t pad)
{
    char w[DISTQ_NAME_MAX];
    snprintf(w, sizeof w, "%s.weight", name);
    int64_t dims[4] = {OC, IC, K, K};
    fill_normal(b, param(b, w, DISTQ_DTYPE_F32, 4, dims), sqrtf(2.0f / (float)(OC * K * K)));
    distq_attrs a = distq_attrs_default(DISTQ_OP_CONV2D);
    a.stride[0] = a.stride[1] = stride;
    a.padding[0] = a.padding[1] = pad;
    const char *params[DISTQ_MAX_PARAMS] = {w};
    node(b, name, DISTQ_OP_CONV2D, &a, 1, in, NULL, params);
}

static void batch_norm(builder *b, const char *name, const char *in, int64_t C)
{
    char names[DISTQ_MAX_PARAMS][DISTQ_NAME_MAX];
    const char *params[DISTQ_MAX_PARAMS] = {0};
    for (int i = 0; i <= DISTQ_PARAM_NUM_BATCHES_TRACKED; i++) {
        snprintf(names[i], sizeof names[i], "%s.%s", name, distq_param_slot_name(i));
        params[i] = names[i];
    }
    fill_uniform(b, param(b, names[0], DISTQ_DTYPE_F32, 1, &C), 0.5f, 1.5f);
    fill_uniform(b, param(b, names[1], DISTQ_DTYPE_F32, 1, &C), -0.1f, 0.1f);
    fill_uniform(b, param(b, names[2], DISTQ_DTYPE_F32, 1, &C), -0.1f, 0.1f);
    fill_uniform(b, param(b, names[3], DISTQ_DTYPE_F32, 1, &C), 0.5f, 1.5f);
    param(b, names[4], DISTQ_DTYPE_S64, 0, NULL);
    node(b, name, DISTQ_OP_BATCH_NORM, NULL, 1, in, NULL, params);
}

static void linear(builder *b, const char *name, const char *in, int64_t IN, int64_t OUT)
{
    char w[DISTQ_NAME_MAX], bias[DISTQ_NAME_MAX];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(bias, sizeof bias, "%s.bias", name);
    int64_t dims[2] = {OUT, IN};
    float bound = 1.0f / sqrtf((float)IN);
    fill_uniform(b, param(b, w, DISTQ_DTYPE_F32, 2, dims), -bound, bound);
    fill_uniform(b, param(b, bias, DISTQ_DTYPE_F32, 1, &OUT), -bound, bound);
    const char *params[DISTQ_MAX_PARAMS] = {w, bias};
    node(b, name, DISTQ_OP_LINEAR, NULL, 1, in, NULL, params);
}

/* torchvision BasicBlock; returns (in out_name) the block's output value. */
static void basic_block(builder *b, const char *prefix, const char *in, int64_t inplanes,
                        int64_t planes, int64_t stride, char *out_name)
{
    char c1[96], b1[96], r[96], c2[96], b2[96], add[96], r1[96], d0[96], d1[96];
    snprintf(c1, sizeof c1, "%s.conv1", prefix);
    snprintf(b1, sizeof b1, "%s.bn1", prefix);
    snprintf(r, sizeof r, "%s.relu", prefix);
    snprintf(c2, sizeof c2, "%s.conv2", prefix);
    snprintf(b2, sizeof b2, "%s.bn2", prefix);
    snprintf(add, sizeof add, "%s.add", prefix);
    snprintf(r1, sizeof r1, "%s.relu_1", prefix);
    snprintf(d0, sizeof d0, "%s.downsample.0", prefix);
    snprintf(d1, sizeof d1, "%s.downsample.1", prefix);

    conv(b, c1, in, inplanes, planes, 3, stride, 1);
    batch_norm(b, b1, c1, planes);
    node(b, r, DISTQ_OP_RELU, NULL, 1, b1, NULL, NULL);
    conv(b, c2, r, planes, planes, 3, 1, 1);
    batch_norm(b, b2, c2, planes);
    const char *identity = in;
    if (stride != 1 || inplanes != planes) {
        conv(b, d0, in, inplanes, planes, 1, stride, 0);
        batch_norm(b, d1, d0, planes);
        identity = d1;
    }
    node(b, add, DISTQ_OP_ADD, NULL, 2, b2, identity, NULL);
    node(b, r1, DISTQ_OP_RELU, NULL, 1, add, NULL, NULL);
    strcpy(out_name, r1);
}

static distq_status finish(builder *b, const char *output, distq_graph **out)
{
    if (b->st == DISTQ_OK) b->st = distq_graph_set_output(b->g, output);
    if (b->st == DISTQ_OK) b->st = distq_graph_finalize(b->g);
    if (b->st != DISTQ_OK) {
        distq_graph_destroy(b->g);
        return b->st;
    }
    *out = b->g;
    return DISTQ_OK;
}

distq_status distq_build_resnet18(uint64_t seed, int64_t num_classes, distq_graph **out)
{
    builder b = {0};
    *out = NULL;
    distq_rng_seed(&b.rng, seed);
    if ((b.st = distq_graph_create(&b.g))) return b.st;
    int64_t in_dims[4] = {1, 3, 224, 224};
    b.st = distq_graph_set_input(b.g, "input", 4, in_dims);

    conv(&b, "conv1", "input", 3, 64, 7, 2, 3);
    batch_norm(&b, "bn1", "conv1", 64);
    node(&b, "relu", DISTQ_OP_RELU, NULL, 1, "bn1", NULL, NULL);
    distq_attrs mp = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    mp.kernel[0] = mp.kernel[1] = 3;
    mp.stride[0] = mp.stride[1] = 2;
    mp.padding[0] = mp.padding[1] = 1;
    node(&b, "maxpool", DISTQ_OP_MAX_POOL2D, &mp, 1, "relu", NULL, NULL);

    char prev[DISTQ_NAME_MAX] = "maxpool";
    int64_t inplanes = 64;
    for (int layer = 1; layer <= 4; layer++) {
        int64_t planes = 64LL << (layer - 1);
        for (int blk = 0; blk < 2; blk++) {
            char prefix[32], cur_in[DISTQ_NAME_MAX];
            snprintf(prefix, sizeof prefix, "layer%d.%d", layer, blk);
            strcpy(cur_in, prev);
            int64_t stride = (layer > 1 && blk == 0) ? 2 : 1;
            basic_block(&b, prefix, cur_in, inplanes, planes, stride, prev);
            inplanes = planes;
        }
    }
    node(&b, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, 1, prev, NULL, NULL);
    node(&b, "flatten", DISTQ_OP_FLATTEN, NULL, 1, "avgpool", NULL, NULL);
    linear(&b, "fc", "flatten", 512, num_classes);
    return finish(&b, "fc", out);
}

distq_status distq_build_linear(uint64_t seed, distq_graph **out)
{
    builder b = {0};
    *out = NULL;
    distq_rng_seed(&b.rng, seed);
    if ((b.st = distq_graph_create(&b.g))) return b.st;
    int64_t in_dims[2] = {1, 1024};
    b.st = distq_graph_set_input(b.g, "input", 2, in_dims);
    linear(&b, "linear", "input", 1024, 1000);
    return finish(&b, "linear", out);
}

/*
 * (1, 1, 28, 28) -> stem (1, 32, 28, 28) -> block1 (1, 32, 28, 28)
 * -> maxpool (1, 32, 14, 14) -> block2, stride 2 (1, 64, 7, 7)
 * -> avgpool (1, 64, 1, 1) -> flatten (1, 64) -> fc (1, 10).
 * Every add takes a conv's (BN-folded) output, as distq_prepare requires.
 */
distq_status distq_build_fmnist_cnn(uint64_t seed, distq_graph **out)
{
    builder b = {0};
    *out = NULL;
    distq_rng_seed(&b.rng, seed);
    if ((b.st = distq_graph_create(&b.g))) return b.st;
    int64_t in_dims[4] = {1, 1, 28, 28};
    b.st = distq_graph_set_input(b.g, "input", 4, in_dims);

    conv(&b, "stem.conv", "input", 1, 32, 3, 1, 1);
    batch_norm(&b, "stem.bn", "stem.conv", 32);
    node(&b, "stem.relu", DISTQ_OP_RELU, NULL, 1, "stem.bn", NULL, NULL);

    char prev[DISTQ_NAME_MAX];
    basic_block(&b, "block1", "stem.relu", 32, 32, 1, prev);
    distq_attrs mp = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    mp.kernel[0] = mp.kernel[1] = 2;
    mp.stride[0] = mp.stride[1] = 2;
    node(&b, "maxpool", DISTQ_OP_MAX_POOL2D, &mp, 1, prev, NULL, NULL);
    basic_block(&b, "block2", "maxpool", 32, 64, 2, prev);

    node(&b, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, 1, prev, NULL, NULL);
    node(&b, "flatten", DISTQ_OP_FLATTEN, NULL, 1, "avgpool", NULL, NULL);
    linear(&b, "fc", "flatten", 64, 10);
    return finish(&b, "fc", out);
}

distq_status distq_build_model(const char *arch, uint64_t seed, distq_graph **out)
{
    if (strcmp(arch, "resnet18") == 0) return distq_build_resnet18(seed, 1000, out);
    if (strcmp(arch, "linear") == 0) return distq_build_linear(seed, out);
    if (strcmp(arch, "fmnist_cnn") == 0) return distq_build_fmnist_cnn(seed, out);
    return distq_error_set(DISTQ_ERR_INVALID_ARG,
                           "unknown --arch '%s' (known: resnet18, linear, fmnist_cnn)", arch);
}
