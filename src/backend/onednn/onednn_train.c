/*
 * The trainer's oneDNN kernels (declared in distq/exec.h): conv2d training
 * through oneDNN's primitives (forward_training, backward data and backward
 * weights, each on the layouts oneDNN picks, with the trainer's NCHW
 * buffers reordered in and out) and oneDNN's sgemm. src/train calls these
 * and makes no oneDNN call of its own.
 *
 * Why blocked layouts and reorders: for one 3x3 conv 32->32 at 28x28, batch
 * 64, 2 threads, forward + both backwards took 16.8 ms on oneDNN's blocked
 * layouts (plus ~0.14 ms per activation reorder), 34.0 ms with plain NCHW
 * (oneDNN falls back to gemm:jit there) and 25.0 ms with the plain-C im2col
 * path (train_ops.c), which stays as the reference.
 *
 * Primitives depend on the batch size: each conv keeps a few, made on first
 * use for an N (the step's local batch, the last short batch, predict's
 * chunks) and reused; the least recently made is replaced when full.
 * Outputs the trainer accumulates (dx of a value with several readers, the
 * weight and bias gradients) go through a scratch buffer and are added.
 */
#include <string.h>

#include "backend/onednn/onednn_impl.h"
#include "distq/exec.h"

#define CONV_CACHE 3

/* One argument: the trainer's plain buffer (handle set per call), the memory
 * in the primitive's layout and the reorder between them (NULL: same layout,
 * inner == user). */
typedef struct {
    dnnl_memory_t user, inner;
    dnnl_primitive_t reorder;
} conv_arg;

enum { A_SRC, A_W, A_B, A_DST, A_BW_SRC, A_BW_DDST, A_DW, A_DB, A_BD_DDST, A_BD_W, A_DSRC, A_COUNT };

typedef struct {
    int64_t N; /* 0: empty */
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    conv_arg a[A_COUNT];
    float *scratch; /* N*C*H*W + OC*K + OC: accumulated outputs */
} conv_prims;

struct distq_onednn_train {
    int n_nodes;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    conv_prims (*conv)[CONV_CACHE]; /* [n_nodes] */
    int *next;                      /* [n_nodes] cache slot to replace next */
};

static void prims_free(conv_prims *p)
{
    if (p->fwd) dnnl_primitive_destroy(p->fwd);
    if (p->bwd_data) dnnl_primitive_destroy(p->bwd_data);
    if (p->bwd_weights) dnnl_primitive_destroy(p->bwd_weights);
    for (int k = 0; k < A_COUNT; k++) {
        conv_arg *a = &p->a[k];
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
        if (a->inner && a->inner != a->user) dnnl_memory_destroy(a->inner);
        if (a->user) dnnl_memory_destroy(a->user);
    }
    distq_free(p->scratch);
    memset(p, 0, sizeof *p);
}

/* a: user memory of `plain` (no buffer yet) and, if the primitive wants
 * another layout, an inner memory and the reorder (in: user -> inner). */
static distq_status bind_arg(dnnl_engine_t eng, const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *want,
                             int in, conv_arg *a, const char *ctx)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_desc_t rpd = NULL;
    CHECK(dnnl_memory_create(&a->user, plain, eng, DNNL_MEMORY_NONE));
    if (dnnl_memory_desc_equal(plain, want)) {
        a->inner = a->user;
    } else {
        CHECK(dnnl_memory_create(&a->inner, want, eng, DNNL_MEMORY_ALLOCATE));
        if (in) CHECK(dnnl_reorder_primitive_desc_create(&rpd, plain, eng, want, eng, NULL));
        else CHECK(dnnl_reorder_primitive_desc_create(&rpd, want, eng, plain, eng, NULL));
        CHECK(dnnl_primitive_create(&a->reorder, rpd));
    }
cleanup:
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    return st;
}

static const dnnl_memory_desc_t *md_of(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* The three primitives of node nd for batch N, on layouts of oneDNN's choice. */
static distq_status prims_create(distq_onednn_train *d, const distq_graph *g, const distq_node *nd, int64_t N,
                                 conv_prims *p)
{
    distq_status st = DISTQ_OK;
    const char *ctx = nd->name;
    dnnl_engine_t eng = d->engine;
    const distq_value *xv = &g->values[nd->inputs[0]], *yv = &g->values[nd->output];
    const distq_tensor *w = &g->params[nd->params[DISTQ_PARAM_WEIGHT]];
    int has_bias = nd->params[DISTQ_PARAM_BIAS] >= 0;
    int64_t G = nd->attr.groups;
    dnnl_dims_t sd = {N, xv->dims[1], xv->dims[2], xv->dims[3]}, dd = {N, yv->dims[1], yv->dims[2], yv->dims[3]};
    dnnl_dims_t wd = {G, w->dims[0] / G, w->dims[1], w->dims[2], w->dims[3]}, bd = {w->dims[0]};
    dnnl_dims_t strides = {nd->attr.stride[0], nd->attr.stride[1]};
    dnnl_dims_t dil = {nd->attr.dilation[0] - 1, nd->attr.dilation[1] - 1};
    dnnl_dims_t pad = {nd->attr.padding[0], nd->attr.padding[1]};
    /* PyTorch pads both sides alike; oneDNN wants the right pad that makes the output size */
    dnnl_dims_t pad_r = {(yv->dims[2] - 1) * strides[0] + (w->dims[2] - 1) * nd->attr.dilation[0] + 1 - xv->dims[2] - pad[0],
                         (yv->dims[3] - 1) * strides[1] + (w->dims[3] - 1) * nd->attr.dilation[1] + 1 - xv->dims[3] - pad[1]};
    dnnl_memory_desc_t s_plain, d_plain, w_plain, b_plain, s_any, d_any, w_any;
    dnnl_convolution_desc_t fd, bdd, bwd;
    dnnl_primitive_desc_t fpd = NULL, bdpd = NULL, bwpd = NULL;
    memset(p, 0, sizeof *p);
    CHECK(dnnl_memory_desc_init_by_tag(&s_plain, 4, sd, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&d_plain, 4, dd, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&w_plain, 5, wd, dnnl_f32, dnnl_goihw));
    CHECK(dnnl_memory_desc_init_by_tag(&b_plain, 1, bd, dnnl_f32, dnnl_x));
    CHECK(dnnl_memory_desc_init_by_tag(&s_any, 4, sd, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&d_any, 4, dd, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&w_any, 5, wd, dnnl_f32, dnnl_format_tag_any));
    const dnnl_memory_desc_t *b = has_bias ? &b_plain : NULL;
    CHECK(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &s_any,
                                                     &w_any, b, &d_any, strides, dil, pad, pad_r));
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL));
    CHECK(dnnl_dilated_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &s_any, &w_any, &d_any,
                                                           strides, dil, pad, pad_r));
    CHECK(dnnl_primitive_desc_create(&bdpd, &bdd, NULL, eng, fpd));
    CHECK(dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &s_any, &w_any, b,
                                                              &d_any, strides, dil, pad, pad_r));
    CHECK(dnnl_primitive_desc_create(&bwpd, &bwd, NULL, eng, fpd));
    CHECK(dnnl_primitive_create(&p->fwd, fpd));
    CHECK(dnnl_primitive_create(&p->bwd_data, bdpd));
    CHECK(dnnl_primitive_create(&p->bwd_weights, bwpd));
    TRY(bind_arg(eng, &s_plain, md_of(fpd, dnnl_query_src_md), 1, &p->a[A_SRC], ctx));
    TRY(bind_arg(eng, &w_plain, md_of(fpd, dnnl_query_weights_md), 1, &p->a[A_W], ctx));
    if (has_bias) TRY(bind_arg(eng, &b_plain, &b_plain, 1, &p->a[A_B], ctx));
    TRY(bind_arg(eng, &d_plain, md_of(fpd, dnnl_query_dst_md), 0, &p->a[A_DST], ctx));
    TRY(bind_arg(eng, &s_plain, md_of(bwpd, dnnl_query_src_md), 1, &p->a[A_BW_SRC], ctx));
    TRY(bind_arg(eng, &d_plain, md_of(bwpd, dnnl_query_diff_dst_md), 1, &p->a[A_BW_DDST], ctx));
    TRY(bind_arg(eng, &w_plain, md_of(bwpd, dnnl_query_diff_weights_md), 0, &p->a[A_DW], ctx));
    if (has_bias)
        TRY(bind_arg(eng, &b_plain, dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_weights_md, 1), 0,
                     &p->a[A_DB], ctx));
    TRY(bind_arg(eng, &d_plain, md_of(bdpd, dnnl_query_diff_dst_md), 1, &p->a[A_BD_DDST], ctx));
    TRY(bind_arg(eng, &w_plain, md_of(bdpd, dnnl_query_weights_md), 1, &p->a[A_BD_W], ctx));
    TRY(bind_arg(eng, &s_plain, md_of(bdpd, dnnl_query_diff_src_md), 0, &p->a[A_DSRC], ctx));
    size_t nscratch = (size_t)(N * xv->dims[1] * xv->dims[2] * xv->dims[3] + distq_tensor_numel(w) + w->dims[0]);
    p->scratch = distq_malloc(nscratch * sizeof(float));
    if (!p->scratch) st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (oneDNN conv '%s')", nd->name);
    p->N = N;
cleanup:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bdpd) dnnl_primitive_desc_destroy(bdpd);
    if (bwpd) dnnl_primitive_desc_destroy(bwpd);
    if (st) prims_free(p);
    return st;
}

/* --- lifecycle ----------------------------------------------------------------- */

distq_status distq_onednn_train_create(int n_nodes, distq_onednn_train **out)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "trainer";
    *out = NULL;
    struct distq_onednn_train *d = distq_calloc(sizeof *d);
    if (!d) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (oneDNN trainer)");
    d->n_nodes = n_nodes;
    d->conv = distq_calloc((size_t)(n_nodes > 0 ? n_nodes : 1) * sizeof *d->conv);
    d->next = distq_calloc((size_t)(n_nodes > 0 ? n_nodes : 1) * sizeof *d->next);
    if (!d->conv || !d->next) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory (oneDNN trainer)");
        goto cleanup;
    }
    CHECK(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));
cleanup:
    if (st) distq_onednn_train_destroy(d);
    else *out = d;
    return st;
}

void distq_onednn_train_destroy(distq_onednn_train *d)
{
    if (!d) return;
    for (int i = 0; d->conv && i < d->n_nodes; i++)
        for (int k = 0; k < CONV_CACHE; k++) prims_free(&d->conv[i][k]);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    distq_free(d->conv);
    distq_free(d->next);
    distq_free(d);
}

/* --- execution ------------------------------------------------------------------- */

static distq_status prims_for(distq_onednn_train *d, const distq_graph *g, int i, int64_t N, conv_prims **out)
{
    if (i < 0 || i >= d->n_nodes || i >= g->n_nodes)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "oneDNN trainer: node %d of %d", i, d->n_nodes);
    for (int k = 0; k < CONV_CACHE; k++)
        if (d->conv[i][k].N == N) {
            *out = &d->conv[i][k];
            return DISTQ_OK;
        }
    conv_prims *p = &d->conv[i][d->next[i]];
    d->next[i] = (d->next[i] + 1) % CONV_CACHE;
    prims_free(p);
    *out = p;
    return prims_create(d, g, &g->nodes[i], N, p);
}

/* Points the argument at buf; an input is then reordered into the primitive's layout. */
static distq_status arg_set(distq_onednn_train *d, conv_arg *a, const float *buf, int in, const char *ctx)
{
    distq_status st = DISTQ_OK;
    CHECK(dnnl_memory_set_data_handle(a->user, (void *)buf));
    if (in && a->reorder) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->inner}};
        CHECK(dnnl_primitive_execute(a->reorder, d->stream, 2, args));
    }
cleanup:
    return st;
}

/* An output computed in the primitive's layout goes back to the trainer's. */
static distq_status arg_done(distq_onednn_train *d, conv_arg *a, const char *ctx)
{
    distq_status st = DISTQ_OK;
    if (a->reorder) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a->inner}, {DNNL_ARG_TO, a->user}};
        CHECK(dnnl_primitive_execute(a->reorder, d->stream, 2, args));
    }
cleanup:
    return st;
}

static distq_status run(distq_onednn_train *d, dnnl_primitive_t prim, int n, const dnnl_exec_arg_t *args, const char *ctx)
{
    distq_status st = DISTQ_OK;
    CHECK(dnnl_primitive_execute(prim, d->stream, n, args));
cleanup:
    return st;
}

static void add_into(float *dst, const float *src, int64_t n, int nthreads)
{
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t j = 0; j < n; j++) dst[j] += src[j];
}

distq_status distq_onednn_conv_train_fwd(distq_onednn_train *d, const distq_graph *g, int i, int64_t N, const float *x,
                                        const float *w, const float *b, float *y)
{
    const char *ctx = i >= 0 && i < g->n_nodes ? g->nodes[i].name : "conv";
    conv_prims *p = NULL;
    distq_status st = prims_for(d, g, i, N, &p);
    if (st) return st;
    if (!b != !p->a[A_B].user) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: bias given for a conv without one, or missing", ctx);
    TRY(arg_set(d, &p->a[A_SRC], x, 1, ctx));
    TRY(arg_set(d, &p->a[A_W], w, 1, ctx));
    if (b) TRY(arg_set(d, &p->a[A_B], b, 1, ctx));
    TRY(arg_set(d, &p->a[A_DST], y, 0, ctx));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->a[A_SRC].inner},
                               {DNNL_ARG_WEIGHTS, p->a[A_W].inner},
                               {DNNL_ARG_DST, p->a[A_DST].inner},
                               {DNNL_ARG_BIAS, b ? p->a[A_B].inner : NULL}};
    TRY(run(d, p->fwd, b ? 4 : 3, args, ctx));
    TRY(arg_done(d, &p->a[A_DST], ctx));
    CHECK(dnnl_stream_wait(d->stream));
cleanup:
    return st;
}

distq_status distq_onednn_conv_train_bwd(distq_onednn_train *d, const distq_graph *g, int i, int64_t N, const float *x,
                                        const float *w, const float *dy, float *dx, int dx_add, float *dw, float *db,
                                        int nthreads)
{
    const char *ctx = i >= 0 && i < g->n_nodes ? g->nodes[i].name : "conv";
    conv_prims *p = NULL;
    distq_status st = prims_for(d, g, i, N, &p);
    if (st) return st;
    const distq_node *nd = &g->nodes[i];
    int64_t nx = distq_value_numel(&g->values[nd->inputs[0]], N);
    int64_t nw = distq_tensor_numel(&g->params[nd->params[DISTQ_PARAM_WEIGHT]]);
    int64_t OC = g->values[nd->output].dims[1];
    float *sdx = p->scratch, *sdw = sdx + nx, *sdb = sdw + nw;
    if (db && !p->a[A_DB].user) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: a bias gradient without a bias", ctx);
    if (dw) {
        /* the trainer adds parameter gradients: compute into scratch, then add */
        TRY(arg_set(d, &p->a[A_BW_SRC], x, 1, ctx));
        TRY(arg_set(d, &p->a[A_BW_DDST], dy, 1, ctx));
        TRY(arg_set(d, &p->a[A_DW], sdw, 0, ctx));
        if (db) TRY(arg_set(d, &p->a[A_DB], sdb, 0, ctx));
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->a[A_BW_SRC].inner},
                                   {DNNL_ARG_DIFF_DST, p->a[A_BW_DDST].inner},
                                   {DNNL_ARG_DIFF_WEIGHTS, p->a[A_DW].inner},
                                   {DNNL_ARG_DIFF_BIAS, db ? p->a[A_DB].inner : NULL}};
        TRY(run(d, p->bwd_weights, db ? 4 : 3, args, ctx));
        TRY(arg_done(d, &p->a[A_DW], ctx));
        if (db) TRY(arg_done(d, &p->a[A_DB], ctx));
    }
    if (dx) {
        TRY(arg_set(d, &p->a[A_BD_DDST], dy, 1, ctx));
        TRY(arg_set(d, &p->a[A_BD_W], w, 1, ctx));
        TRY(arg_set(d, &p->a[A_DSRC], dx_add ? sdx : dx, 0, ctx));
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, p->a[A_BD_DDST].inner},
                                   {DNNL_ARG_WEIGHTS, p->a[A_BD_W].inner},
                                   {DNNL_ARG_DIFF_SRC, p->a[A_DSRC].inner}};
        TRY(run(d, p->bwd_data, 3, args, ctx));
        TRY(arg_done(d, &p->a[A_DSRC], ctx));
    }
    CHECK(dnnl_stream_wait(d->stream));
    if (dw) add_into(dw, sdw, nw, nthreads);
    if (db) add_into(db, sdb, OC, nthreads);
    if (dx && dx_add) add_into(dx, sdx, nx, nthreads);
cleanup:
    return st;
}

int distq_onednn_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                       int64_t ldb, int accumulate, float *C, int64_t ldc)
{
    return dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C,
                      ldc) == dnnl_success;
}
