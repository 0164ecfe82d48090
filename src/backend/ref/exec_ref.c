/*
 * The plain-C reference executor: the oracle that tests hold the oneDNN
 * executors against. Written for reading, never tuned: obvious loops in NCHW,
 * no fusion, BatchNorm applied as written (inference mode, running stats).
 * It runs fp32, int8 and mixed graphs: each node gets the f32 kernel below
 * or, when it reads u8 or quantizes, the int8 one (exec_ref_int8.c).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "backend/exec_impl.h"
#include "backend/ref/ref_impl.h"
#include "distq/tensor.h"

static const float *P(const ref_state *s, const distq_node *n, int slot)
{
    return n->params[slot] >= 0 ? s->g->params[n->params[slot]].data : NULL;
}

/* x (N, C, H, W) * w (OC, C/groups, KH, KW) + b -> y (N, OC, OH, OW) */
static void conv2d_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    const distq_attrs *a = &n->attr;
    const float *x = s->vals[n->inputs[0]], *w = P(s, n, DISTQ_PARAM_WEIGHT);
    const float *b = P(s, n, DISTQ_PARAM_BIAS);
    const float *r = n->n_inputs > 1 ? s->vals[n->inputs[1]] : NULL;
    float *y = s->vals[n->output];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3];
    int64_t OC = yv->dims[1], OH = yv->dims[2], OW = yv->dims[3];
    const distq_tensor *wt = &s->g->params[n->params[DISTQ_PARAM_WEIGHT]];
    int64_t KH = wt->dims[2], KW = wt->dims[3];
    int64_t G = a->groups, ICg = C / G, OCg = OC / G;
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t oc = 0; oc < OC; oc++) {
            int64_t g = oc / OCg;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int64_t ic = 0; ic < ICg; ic++)
                        for (int64_t kh = 0; kh < KH; kh++) {
                            int64_t ih = oh * a->stride[0] - a->padding[0] + kh * a->dilation[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t iw = ow * a->stride[1] - a->padding[1] + kw * a->dilation[1];
                                if (iw < 0 || iw >= W) continue;
                                acc += (double)x[((nb * C + g * ICg + ic) * H + ih) * W + iw] *
                                       w[((oc * ICg + ic) * KH + kh) * KW + kw];
                            }
                        }
                    int64_t o = ((nb * OC + oc) * OH + oh) * OW + ow;
                    if (r) acc += r[o]; /* the residual of the fused form */
                    if (a->post_relu && acc < 0) acc = 0;
                    y[o] = (float)acc;
                }
        }
}

/* y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel (dim 1). */
static void batch_norm_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]];
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    const float *gamma = P(s, n, DISTQ_PARAM_WEIGHT), *beta = P(s, n, DISTQ_PARAM_BIAS);
    const float *mean = P(s, n, DISTQ_PARAM_RUNNING_MEAN), *var = P(s, n, DISTQ_PARAM_RUNNING_VAR);
    int64_t C = xv->dims[1], HW = distq_value_numel(xv, 1) / C;
    for (int64_t nb = 0; nb < s->N; nb++)
        for (int64_t c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(var[c] + n->attr.eps);
            for (int64_t i = 0; i < HW; i++) {
                int64_t k = (nb * C + c) * HW + i;
                y[k] = (x[k] - mean[c]) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
            }
        }
}


// --- elementwise: one scalar function per op, shared with the int8 post-ops ----

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }
static float relu_1(const distq_attrs *a, float x) { (void)a; return x > 0.0f ? x : 0.0f; }
static float gelu_1(const distq_attrs *a, float x)
{
    (void)a;
    return (float)(0.5 * x * (1.0 + erf((double)x / sqrt(2.0))));
}
static float hardswish_1(const distq_attrs *a, float x) { (void)a; return x * clampf(x + 3.0f, 0.0f, 6.0f) / 6.0f; }
static float hardsigmoid_1(const distq_attrs *a, float x) { return clampf(a->alpha * x + a->beta, 0.0f, 1.0f); }
static float clip_1(const distq_attrs *a, float x) { return clampf(x, a->min, a->max); }
static float sigmoid_1(const distq_attrs *a, float x) { (void)a; return 1.0f / (1.0f + expf(-x)); }
static float silu_1(const distq_attrs *a, float x) { (void)a; return x / (1.0f + expf(-x)); }
static float tanh_1(const distq_attrs *a, float x) { (void)a; return tanhf(x); }
static float leaky_relu_1(const distq_attrs *a, float x) { return x >= 0.0f ? x : a->alpha * x; }
static float sqrt_1(const distq_attrs *a, float x) { (void)a; return sqrtf(x); }
static float exp_1(const distq_attrs *a, float x) { (void)a; return expf(x); }
static float log_1(const distq_attrs *a, float x) { (void)a; return logf(x); }
static float abs_1(const distq_attrs *a, float x) { (void)a; return fabsf(x); }
static float neg_1(const distq_attrs *a, float x) { (void)a; return -x; }
static float reciprocal_1(const distq_attrs *a, float x) { (void)a; return 1.0f / x; }
static float pow_1(const distq_attrs *a, float x) { return powf(x, a->alpha); }
static float elu_1(const distq_attrs *a, float x) { return x > 0.0f ? x : a->alpha * expm1f(x); }
static float erf_1(const distq_attrs *a, float x) { (void)a; return erff(x); }

static const distq_ref_scalar_fn scalar_fns[DISTQ_OP_COUNT] = {
    [DISTQ_OP_RELU] = relu_1,       [DISTQ_OP_GELU] = gelu_1,       [DISTQ_OP_HARDSWISH] = hardswish_1,
    [DISTQ_OP_HARDSIGMOID] = hardsigmoid_1, [DISTQ_OP_CLIP] = clip_1, [DISTQ_OP_SIGMOID] = sigmoid_1,
    [DISTQ_OP_SILU] = silu_1,       [DISTQ_OP_TANH] = tanh_1,       [DISTQ_OP_LEAKY_RELU] = leaky_relu_1,
    [DISTQ_OP_SQRT] = sqrt_1,       [DISTQ_OP_EXP] = exp_1,         [DISTQ_OP_LOG] = log_1,
    [DISTQ_OP_ABS] = abs_1,         [DISTQ_OP_NEG] = neg_1,         [DISTQ_OP_RECIPROCAL] = reciprocal_1,
    [DISTQ_OP_POW] = pow_1,         [DISTQ_OP_ELU] = elu_1,         [DISTQ_OP_ERF] = erf_1,
};

distq_ref_scalar_fn distq_ref_scalar(distq_op op)
{
    return (int)op >= 0 && op < DISTQ_OP_COUNT ? scalar_fns[op] : NULL;
}

static void eltwise_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    const distq_ref_scalar_fn f = scalar_fns[n->op];
    for (int64_t i = 0; i < count; i++) y[i] = f(&n->attr, x[i]);
}

static void binary_ref(const ref_state *s, const distq_node *n, int64_t count);

static void add_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    if (n->n_inputs == 1) { /* a constant operand broadcasts */
        binary_ref(s, n, count);
        return;
    }
    const float *x = s->vals[n->inputs[0]], *z = s->vals[n->inputs[1]];
    float *y = s->vals[n->output];
    for (int64_t i = 0; i < count; i++) y[i] = x[i] + z[i];
}

/* Padded cells never win (PyTorch pads max pooling with -inf). */
static void max_pool2d_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    const distq_attrs *a = &n->attr;
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    for (int64_t nc = 0; nc < s->N * C; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float best = -INFINITY;
                for (int64_t kh = 0; kh < a->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < a->kernel[1]; kw++) {
                        int64_t ih = oh * a->stride[0] - a->padding[0] + kh;
                        int64_t iw = ow * a->stride[1] - a->padding[1] + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        float v = x[(nc * H + ih) * W + iw];
                        if (v > best) best = v;
                    }
                y[(nc * OH + oh) * OW + ow] = best;
            }
}

/* The window's sum over its cells inside the image, divided by the whole
 * window (count_include_pad: padding counts as zeros) or by those cells. */
static void avg_pool2d_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    const distq_attrs *a = &n->attr;
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    for (int64_t nc = 0; nc < s->N * C; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double sum = 0.0;
                int64_t cells = 0;
                for (int64_t kh = 0; kh < a->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < a->kernel[1]; kw++) {
                        int64_t ih = oh * a->stride[0] - a->padding[0] + kh;
                        int64_t iw = ow * a->stride[1] - a->padding[1] + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        sum += x[(nc * H + ih) * W + iw];
                        cells++;
                    }
                int64_t div = a->count_include_pad ? a->kernel[0] * a->kernel[1] : cells;
                y[(nc * OH + oh) * OW + ow] = (float)(sum / (double)div);
            }
}

static void adaptive_avg_pool2d_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]];
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    int64_t HW = xv->dims[2] * xv->dims[3];
    for (int64_t nc = 0; nc < s->N * xv->dims[1]; nc++) {
        double sum = 0.0;
        for (int64_t i = 0; i < HW; i++) sum += x[nc * HW + i];
        y[nc] = (float)(sum / (double)HW);
    }
}

/* x (N, IN) * w^T (OUT, IN) + b -> y (N, OUT) */
/* y = x w^T + b along the last dim: rows are every position of every image */
static void linear_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    int64_t IN = xv->dims[xv->ndim - 1], OUT = yv->dims[yv->ndim - 1], rows = count / OUT;
    const float *x = s->vals[n->inputs[0]], *w = P(s, n, DISTQ_PARAM_WEIGHT);
    const float *b = P(s, n, DISTQ_PARAM_BIAS);
    float *y = s->vals[n->output];
    for (int64_t nb = 0; nb < rows; nb++)
        for (int64_t o = 0; o < OUT; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < IN; i++) acc += (double)x[nb * IN + i] * w[o * IN + i];
            if (n->attr.post_relu && acc < 0) acc = 0;
            y[nb * OUT + o] = (float)acc;
        }
}

/* flatten, reshape: NCHW is already (N, C*H*W) in memory (f32 or u8) */
void distq_ref_copy(const ref_state *s, const distq_node *n, int64_t count)
{
    memcpy(s->vals[n->output], s->vals[n->inputs[0]], (size_t)count * distq_dtype_size(s->g->values[n->output].dtype));
}

/* y[i] = x[off(i)] for an output of the input's rank: output dim d at index
 * k reads input dim src_dim[d] at k + start[d] (the batch is dim 0 of both).
 * transpose: src_dim = perm, start 0; slice: src_dim = d, start = starts. */
static void gather_ref(const ref_state *s, const distq_node *n, int64_t count, const int64_t *src_dim,
                       const int64_t *start)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *yv = &s->g->values[n->output];
    const char *x = s->vals[n->inputs[0]];
    char *y = s->vals[n->output];
    const size_t es = distq_dtype_size(yv->dtype); /* f32 or u8 codes */
    int nd = xv->ndim;
    int64_t in_stride[DISTQ_MAX_DIMS], st = 1, per_image = distq_value_numel(yv, 1);
    for (int d = nd - 1; d >= 1; d--) {
        in_stride[d] = st;
        st *= xv->dims[d];
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t rest = i % per_image, off = (i / per_image) * st;
        for (int d = nd - 1; d >= 1; d--) {
            off += (rest % yv->dims[d] + start[d]) * in_stride[src_dim[d]];
            rest /= yv->dims[d];
        }
        memcpy(y + (size_t)i * es, x + (size_t)off * es, es);
    }
}

void distq_ref_transpose(const ref_state *s, const distq_node *n, int64_t count)
{
    static const int64_t zero[DISTQ_MAX_DIMS];
    gather_ref(s, n, count, n->attr.perm, zero);
}

void distq_ref_slice(const ref_state *s, const distq_node *n, int64_t count)
{
    static const int64_t same_dim[DISTQ_MAX_DIMS] = {0, 1, 2, 3, 4, 5, 6, 7};
    _Static_assert(DISTQ_MAX_DIMS == 8, "one entry per dim");
    gather_ref(s, n, count, same_dim, n->attr.starts);
}

/* Per row of the dims from axis on: mean and (biased) variance in double. */
static void layer_norm_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]];
    int64_t axis = distq_axis_index(n->attr.axis, xv->ndim);
    int64_t inner = distq_dims_numel(xv->ndim - (int)axis, xv->dims + axis);
    const float *x = s->vals[n->inputs[0]], *w = P(s, n, DISTQ_PARAM_WEIGHT), *b = P(s, n, DISTQ_PARAM_BIAS);
    float *y = s->vals[n->output];
    for (int64_t r = 0; r < count / inner; r++) {
        const float *xr = x + r * inner;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < inner; i++) mean += xr[i];
        mean /= (double)inner;
        for (int64_t i = 0; i < inner; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= (double)inner;
        double inv = 1.0 / sqrt(var + (double)n->attr.eps);
        for (int64_t i = 0; i < inner; i++)
            y[r * inner + i] = (float)(((double)xr[i] - mean) * inv * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f));
    }
}






/* Per-image element strides of value v as read by an output of the same rank:
 * 0 along a dim of size 1, so that it broadcasts. dims[0] is the batch. */
static void broadcast_strides(const distq_value *v, int64_t *stride)
{
    int64_t st = 1;
    for (int i = v->ndim - 1; i >= 1; i--) {
        stride[i] = v->dims[i] == 1 ? 0 : st;
        st *= v->dims[i];
    }
}


/* Per image and position off the axis: exp(x - max) / sum, or its log. */
static void softmax_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    const distq_value *xv = &s->g->values[n->inputs[0]];
    const float *x = s->vals[n->inputs[0]];
    float *y = s->vals[n->output];
    int64_t axis = distq_axis_index(n->attr.axis, xv->ndim), len = xv->dims[axis], inner = 1, outer = s->N;
    for (int i = (int)axis + 1; i < xv->ndim; i++) inner *= xv->dims[i];
    for (int i = 1; i < (int)axis; i++) outer *= xv->dims[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            const float *xs = x + o * len * inner + in;
            float *ys = y + o * len * inner + in;
            float mx = -INFINITY;
            for (int64_t k = 0; k < len; k++) mx = fmaxf(mx, xs[k * inner]);
            double sum = 0.0;
            for (int64_t k = 0; k < len; k++) sum += exp((double)xs[k * inner] - mx);
            for (int64_t k = 0; k < len; k++)
                ys[k * inner] = n->op == DISTQ_OP_SOFTMAX ? (float)(exp((double)xs[k * inner] - mx) / sum)
                                                          : (float)((double)xs[k * inner] - mx - log(sum));
        }
}



/* add, mul, sub, div with numpy broadcasting of either input; operand 1 is
 * input 1 or the constant WEIGHT (the same for every image). */
static void binary_ref(const ref_state *s, const distq_node *n, int64_t count)
{
    const distq_value *xv = &s->g->values[n->inputs[0]], *zv;
    const distq_value *yv = &s->g->values[n->output];
    const float *x = s->vals[n->inputs[0]], *z;
    distq_value cv = {0};
    if (n->n_inputs == 2) {
        zv = &s->g->values[n->inputs[1]];
        z = s->vals[n->inputs[1]];
    } else {
        const distq_tensor *c = &s->g->params[n->params[DISTQ_PARAM_WEIGHT]];
        cv.ndim = c->ndim;
        memcpy(cv.dims, c->dims, sizeof cv.dims);
        zv = &cv;
        z = c->data;
    }
    float *y = s->vals[n->output];
    int nd = yv->ndim;
    int64_t sx[DISTQ_MAX_DIMS], sz[DISTQ_MAX_DIMS], per_image = distq_value_numel(yv, 1);
    broadcast_strides(xv, sx);
    broadcast_strides(zv, sz);
    int64_t x_image = distq_value_numel(xv, 1), z_image = n->n_inputs == 2 ? distq_value_numel(zv, 1) : 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t nb = i / per_image, rest = i % per_image, ox = nb * x_image, oz = nb * z_image;
        for (int d = nd - 1; d >= 1; d--) {
            int64_t c = rest % yv->dims[d];
            rest /= yv->dims[d];
            ox += c * sx[d];
            oz += c * sz[d];
        }
        y[i] = n->op == DISTQ_OP_ADD   ? x[ox] + z[oz]
               : n->op == DISTQ_OP_MUL ? x[ox] * z[oz]
               : n->op == DISTQ_OP_SUB ? x[ox] - z[oz]
                                       : x[ox] / z[oz];
    }
}

/* Inputs one after another along axis: per image and outer index, each input
 * contributes a contiguous run of dims[axis] * inner elements (f32 or u8). */
void distq_ref_concat(const ref_state *s, const distq_node *n, int64_t count)
{
    (void)count;
    const distq_value *yv = &s->g->values[n->output];
    const size_t es = distq_dtype_size(yv->dtype);
    int64_t axis = distq_axis_index(n->attr.axis, yv->ndim);
    int64_t outer = s->N, inner = 1;
    for (int64_t d = 1; d < axis; d++) outer *= yv->dims[d];
    for (int64_t d = axis + 1; d < yv->ndim; d++) inner *= yv->dims[d];
    char *y = s->vals[n->output];
    int64_t row = yv->dims[axis] * inner, at = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        int64_t run = s->g->values[n->inputs[k]].dims[axis] * inner;
        const char *x = s->vals[n->inputs[k]];
        for (int64_t o = 0; o < outer; o++)
            memcpy(y + (size_t)(o * row + at) * es, x + (size_t)(o * run) * es, (size_t)run * es);
        at += run;
    }
}

static const ref_kernel ref_kernels[DISTQ_OP_COUNT] = {
    [DISTQ_OP_CONV2D] = conv2d_ref,
    [DISTQ_OP_BATCH_NORM] = batch_norm_ref,
    [DISTQ_OP_RELU] = eltwise_ref,
    [DISTQ_OP_ADD] = add_ref,
    [DISTQ_OP_MAX_POOL2D] = max_pool2d_ref,
    [DISTQ_OP_AVG_POOL2D] = avg_pool2d_ref,
    [DISTQ_OP_ADAPTIVE_AVG_POOL2D] = adaptive_avg_pool2d_ref,
    [DISTQ_OP_FLATTEN] = distq_ref_copy,
    [DISTQ_OP_LINEAR] = linear_ref,
    [DISTQ_OP_HARDSWISH] = eltwise_ref,
    [DISTQ_OP_HARDSIGMOID] = eltwise_ref,
    [DISTQ_OP_CLIP] = eltwise_ref,
    [DISTQ_OP_SIGMOID] = eltwise_ref,
    [DISTQ_OP_MUL] = binary_ref,
    [DISTQ_OP_SUB] = binary_ref,
    [DISTQ_OP_DIV] = binary_ref,
    [DISTQ_OP_TANH] = eltwise_ref,
    [DISTQ_OP_SILU] = eltwise_ref,
    [DISTQ_OP_TRANSPOSE] = distq_ref_transpose,
    [DISTQ_OP_SLICE] = distq_ref_slice,
    [DISTQ_OP_GELU] = eltwise_ref,
    [DISTQ_OP_LAYER_NORM] = layer_norm_ref,
    [DISTQ_OP_RESHAPE] = distq_ref_copy, /* plain in and out: the same bytes */
    [DISTQ_OP_SOFTMAX] = softmax_ref,
    [DISTQ_OP_LOG_SOFTMAX] = softmax_ref,
    [DISTQ_OP_LEAKY_RELU] = eltwise_ref,
    [DISTQ_OP_CONCAT] = distq_ref_concat,
    [DISTQ_OP_SQRT] = eltwise_ref,
    [DISTQ_OP_EXP] = eltwise_ref,
    [DISTQ_OP_LOG] = eltwise_ref,
    [DISTQ_OP_ABS] = eltwise_ref,
    [DISTQ_OP_NEG] = eltwise_ref,
    [DISTQ_OP_RECIPROCAL] = eltwise_ref,
    [DISTQ_OP_POW] = eltwise_ref,
    [DISTQ_OP_ELU] = eltwise_ref,
    [DISTQ_OP_ERF] = eltwise_ref,
};

typedef struct {
    ref_state s;
    ref_kernel *kernel; /* per node, chosen once */
} ref_exec;

static void ref_destroy(void *state)
{
    ref_exec *e = state;
    if (!e) return;
    ref_state *s = &e->s;
    for (int i = 0; s->vals && i < s->g->n_values; i++) distq_free(s->vals[i]);
    distq_free(s->vals);
    distq_graph_destroy(s->g);
    distq_free(e->kernel);
    distq_free(e);
}

/* The f32 kernel, or the int8 one for a node that reads u8 or is a
 * quantize / dequantize. */
static ref_kernel kernel_of(const distq_graph *g, const distq_node *n, const char **table)
{
    int int8 = distq_op_info_of(n->op)->qrole == DISTQ_QROLE_QDQ ||
               g->values[n->inputs[0]].dtype == DISTQ_DTYPE_U8;
    *table = int8 ? "ref int8" : "ref";
    return int8 ? distq_ref_int8_kernels[n->op] : ref_kernels[n->op];
}

static distq_status ref_create(const distq_graph *g, int64_t batch, void **state)
{
    ref_exec *e = distq_calloc(sizeof *e);
    if (!e) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (ref executor)");
    ref_state *s = &e->s;
    s->N = batch;
    distq_status st = DISTQ_OK;
    if (!(e->kernel = distq_calloc((size_t)g->n_nodes * sizeof *e->kernel + 1)))
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (ref executor)");
    for (int i = 0; i < g->n_nodes && !st; i++) {
        const char *table = NULL;
        if (!(e->kernel[i] = kernel_of(g, &g->nodes[i], &table)))
            st = distq_backend_no_kernel(table, g->nodes[i].name, distq_op_name(g->nodes[i].op));
    }
    if (!st) st = distq_graph_clone(g, &s->g);
    if (st) goto fail;
    s->vals = distq_calloc((size_t)s->g->n_values * sizeof *s->vals);
    if (!s->vals) goto nomem;
    for (int i = 0; i < s->g->n_values; i++) {
        const distq_value *v = &s->g->values[i];
        s->vals[i] = distq_malloc((size_t)distq_value_numel(v, batch) * distq_dtype_size(v->dtype));
        if (!s->vals[i]) goto nomem;
    }
    *state = e;
    return DISTQ_OK;
nomem:
    st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory for ref activations (batch %lld)",
                         (long long)batch);
fail:
    ref_destroy(e);
    return st;
}

static distq_status ref_run(void *state, const float *input, float *output)
{
    ref_exec *e = state;
    ref_state *s = &e->s;
    const distq_graph *g = s->g;
    memcpy(s->vals[g->input_value], input,
           (size_t)distq_value_numel(&g->values[g->input_value], s->N) * sizeof(float));
    for (int i = 0; i < g->n_nodes; i++) {
        const distq_node *n = &g->nodes[i];
        int64_t count = distq_value_numel(&g->values[n->output], s->N);
        e->kernel[i](s, n, count); /* every node has one: checked in ref_create */
    }
    memcpy(output, s->vals[g->output_values[0]],
           (size_t)distq_value_numel(&g->values[g->output_values[0]], s->N) * sizeof(float));
    return DISTQ_OK;
}

static distq_status ref_get_value(void *state, const char *name, void *out)
{
    ref_state *s = &((ref_exec *)state)->s;
    int v = distq_graph_find_value(s->g, name);
    if (v < 0) return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph has no value '%s'", name);
    const distq_value *val = &s->g->values[v];
    memcpy(out, s->vals[v], (size_t)distq_value_numel(val, s->N) * distq_dtype_size(val->dtype));
    return DISTQ_OK;
}

static int ref_has_kernel(distq_op op) { return ref_kernels[op] != NULL; }
static int ref_has_int8_kernel(distq_op op) { return distq_ref_int8_kernels[op] != NULL; }
static distq_backend_caps ref_caps(void) { return (distq_backend_caps){1, "plain C"}; }

const distq_exec_i distq_exec_ref_i = {
    .name = "ref",
    .has_kernel = ref_has_kernel,
    .has_int8_kernel = ref_has_int8_kernel,
    .caps = ref_caps,
    .create = ref_create,
    .run = ref_run,
    .destroy = ref_destroy,
    .get_value = ref_get_value,
};
