/*
 * The plan machinery shared by the fp32 and int8 oneDNN executors
 * (onednn_impl.h): state, slots, steps, fixed memories, buffer planning,
 * binding, run and get_value. Nothing here knows about graphs or ops.
 */
#include <assert.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "backend/onednn/onednn_impl.h"
#include "distq/tensor.h"

// --- errors -------------------------------------------------------------------

distq_status distq_onednn_error(dnnl_status_t s, const char *file, int line, const char *call,
                                const char *ctx)
{
    distq_status st = s == dnnl_unimplemented  ? DISTQ_ERR_UNSUPPORTED
                      : s == dnnl_out_of_memory ? DISTQ_ERR_NOMEM
                                                : DISTQ_ERR_DNNL;
    int call_len = (int)strcspn(call, "(");
    return distq_error_set(st, "%s:%d: %s: %.*s: %s (oneDNN %d.%d.%d, isa %s)", file, line, ctx,
                           call_len, call, dnnl_status2str(s), DNNL_VERSION_MAJOR,
                           DNNL_VERSION_MINOR, DNNL_VERSION_PATCH, distq_onednn_isa());
}

// --- small helpers ------------------------------------------------------------

void distq_onednn_conv_geometry(const distq_attrs *a, const int64_t *wdims, distq_onednn_conv_geom *out)
{
    const int64_t G = a->groups, OC = wdims[0];
    out->w_ndim = G == 1 ? 4 : 5;
    if (G == 1) {
        for (int i = 0; i < 4; i++) out->w_dims[i] = wdims[i];
    } else { /* (G, OC/G, IC/G, KH, KW): the same bytes as (OC, IC/G, KH, KW) */
        out->w_dims[0] = G;
        out->w_dims[1] = OC / G;
        for (int i = 1; i < 4; i++) out->w_dims[i + 1] = wdims[i];
    }
    out->b_dims[0] = OC;
    for (int i = 0; i < 2; i++) {
        out->strides[i] = a->stride[i];
        out->dil[i] = a->dilation[i] - 1; /* oneDNN counts the gaps: 0 = dense */
        out->pad_l[i] = a->padding[i];
        out->pad_r[i] = distq_pad_end(a, i);
    }
}

dnnl_format_tag_t distq_onednn_plain_tag(int ndim)
{
    static const dnnl_format_tag_t plain[] = {dnnl_format_tag_undef, dnnl_a, dnnl_ab, dnnl_abc,
                                              dnnl_abcd, dnnl_abcde, dnnl_abcdef, dnnl_abcdefg,
                                              dnnl_abcdefgh};
    _Static_assert(sizeof plain / sizeof *plain == DISTQ_MAX_DIMS + 1, "a plain tag per rank");
    return ndim >= 1 && ndim <= DISTQ_MAX_DIMS ? plain[ndim] : dnnl_format_tag_undef;
}

distq_status distq_onednn_conv_begin(distq_onednn_state *S, const distq_graph *g, const distq_node *n,
                                     const distq_onednn_weighted_spec *spec, const_dnnl_primitive_attr_t attr,
                                     const char *ctx, distq_onednn_weighted_parts *out)
{
    distq_status st = DISTQ_OK;
    const distq_tensor *w = &g->params[n->params[DISTQ_PARAM_WEIGHT]];
    memset(out, 0, sizeof *out);
    out->s_src = out->s_dst = -1;
    dnnl_dims_t src_dims, dst_dims;
    distq_onednn_value_dims(&g->values[n->inputs[0]], S->batch, src_dims);
    distq_onednn_value_dims(&g->values[n->output], S->batch, dst_dims);
    distq_onednn_conv_geom cg;
    distq_onednn_conv_geometry(&n->attr, w->dims, &cg);
    dnnl_memory_desc_t src_md, w_md, b_md;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_dims, spec->src, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, cg.w_ndim, cg.w_dims, spec->wei, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, cg.b_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&out->dst_md, 4, dst_dims, spec->dst, dnnl_format_tag_any));
    dnnl_convolution_desc_t cd;
    CHECK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                     &src_md, &w_md, spec->bias ? &b_md : NULL,
                                                     &out->dst_md, cg.strides, cg.dil, cg.pad_l, cg.pad_r));
    CHECK(dnnl_primitive_desc_create(&out->pd, &cd, attr, S->engine, NULL));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_src_md, 0, &src_md, ctx));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_weights_md, 0, &w_md, ctx));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_weights_md, 1, &b_md, ctx));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_dst_md, 0, &out->dst_md, ctx));
    TRY(distq_onednn_slot_as(S, S->value_slot[n->inputs[0]], &src_md, n->name, ctx, &out->s_src));
    TRY(distq_onednn_make_param(S, &w_md, cg.w_ndim, cg.w_dims, spec->wei, spec->weights, ctx, &out->w_mem));
    if (spec->bias)
        TRY(distq_onednn_make_param(S, &b_md, 1, cg.b_dims, dnnl_f32, spec->bias, ctx, &out->b_mem));
    TRY(distq_onednn_new_slot(S, &out->dst_md, &out->s_dst));
cleanup:
    return st;
}

distq_status distq_onednn_ip_begin(distq_onednn_state *S, int s_in, const char *src_name, int64_t out_features,
                                   const distq_onednn_weighted_spec *spec, const_dnnl_primitive_attr_t attr,
                                   const char *ctx, distq_onednn_weighted_parts *out)
{
    distq_status st = DISTQ_OK;
    const dnnl_memory_desc_t *in_md = distq_onednn_slot_md(S, s_in);
    const int ndim = in_md->ndims;
    memset(out, 0, sizeof *out);
    out->s_src = out->s_dst = -1;
    dnnl_dims_t w_dims = {out_features}, b_dims = {out_features}, dst_dims = {in_md->dims[0], out_features};
    for (int i = 1; i < ndim; i++) w_dims[i] = in_md->dims[i]; /* (OUT, C, H, W) or (OUT, IN) */
    dnnl_memory_desc_t src_md = *in_md, w_md, b_md;
    CHECK(dnnl_memory_desc_init_by_tag(&w_md, ndim, w_dims, spec->wei, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&out->dst_md, 2, dst_dims, spec->dst, dnnl_format_tag_any));
    dnnl_inner_product_desc_t ipd;
    CHECK(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src_md, &w_md,
                                               spec->bias ? &b_md : NULL, &out->dst_md));
    dnnl_status_t s = dnnl_primitive_desc_create(&out->pd, &ipd, attr, S->engine, NULL);
    if (s == dnnl_unimplemented) {
        CHECK(dnnl_memory_desc_init_by_tag(&src_md, ndim, in_md->dims, spec->src, dnnl_format_tag_any));
        CHECK(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src_md, &w_md,
                                                   spec->bias ? &b_md : NULL, &out->dst_md));
        s = dnnl_primitive_desc_create(&out->pd, &ipd, attr, S->engine, NULL);
    }
    CHECK(s);
    TRY(distq_onednn_query_md(out->pd, dnnl_query_src_md, 0, &src_md, ctx));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_weights_md, 0, &w_md, ctx));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_weights_md, 1, &b_md, ctx));
    TRY(distq_onednn_query_md(out->pd, dnnl_query_dst_md, 0, &out->dst_md, ctx));
    TRY(distq_onednn_slot_as(S, s_in, &src_md, src_name, ctx, &out->s_src));
    TRY(distq_onednn_make_param(S, &w_md, ndim, w_dims, spec->wei, spec->weights, ctx, &out->w_mem));
    if (spec->bias)
        TRY(distq_onednn_make_param(S, &b_md, 1, b_dims, dnnl_f32, spec->bias, ctx, &out->b_mem));
    TRY(distq_onednn_new_slot(S, &out->dst_md, &out->s_dst));
cleanup:
    return st;
}

distq_status distq_onednn_weighted_step(distq_onednn_state *S, const distq_node *n,
                                    const distq_onednn_weighted_parts *c, const char *ctx,
                                    distq_onednn_step **out)
{
    distq_status st = DISTQ_OK;
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, n->name, &t));
    TRY(distq_onednn_step_set_prim(t, c->pd, ctx));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC, c->s_src, 0);
    distq_onednn_arg_mem(t, DNNL_ARG_WEIGHTS, c->w_mem);
    if (c->b_mem) distq_onednn_arg_mem(t, DNNL_ARG_BIAS, c->b_mem);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, c->s_dst, 1);
    *out = t;
cleanup:
    return st;
}

distq_status distq_onednn_query_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index,
                                   dnnl_memory_desc_t *out, const char *ctx)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
    if (!md)
        return distq_error_set(DISTQ_ERR_DNNL, "%s: oneDNN returned no memory desc (query %d)",
                               ctx, (int)what);
    *out = *md;
    return DISTQ_OK;
}

distq_status distq_onednn_attr_create(const char *ctx, dnnl_primitive_attr_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t attr = NULL;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    *out = attr;
    attr = NULL;
cleanup:
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

/* oneDNN computes out = (in + pl + pr - ext) / stride + 1 with ext the dilated
 * kernel, so any pr in [pr_min, pr_min + stride - 1] works. With ceil_mode the
 * extra cells on the right are padding, and padding never wins a max. */
int64_t distq_onednn_pool_pad_r(int64_t in, int64_t out, int64_t ext, int64_t stride,
                                int64_t pad_l, int64_t pad_end)
{
    int64_t pr_min = (out - 1) * stride + ext - in - pad_l;
    int64_t pr = pad_end;
    if (pr < pr_min) pr = pr_min;
    if (pr > pr_min + stride - 1) pr = pr_min + stride - 1;
    return pr;
}

distq_status distq_onednn_view_step(distq_onednn_state *S, const char *name, int s_src,
                                    const dnnl_memory_desc_t *view_md, int *s_view)
{
    distq_status st = DISTQ_OK;
    TRY(distq_onednn_new_slot(S, view_md, s_view));
    S->slots[*s_view].view_of = s_src;
    distq_onednn_step *t = NULL; /* no primitive: it marks where the view starts to live */
    TRY(distq_onednn_new_step(S, name, &t));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, *s_view, 1);
cleanup:
    return st;
}

// --- state --------------------------------------------------------------------

distq_status distq_onednn_state_create(int64_t batch, int cap_steps, int cap_slots, int cap_fixed,
                                       int n_values, distq_onednn_state **out)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "creating the oneDNN executor";
    distq_onednn_state *S = distq_calloc(sizeof *S);
    *out = NULL;
    if (!S) return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
    S->batch = batch;
    S->keep_values = 1;
    S->cap_steps = cap_steps;
    S->cap_slots = cap_slots;
    S->cap_fixed = cap_fixed;
    S->n_values = n_values;
    S->steps = distq_calloc(sizeof(distq_onednn_step) * (size_t)cap_steps);
    S->slots = distq_calloc(sizeof(distq_onednn_slot) * (size_t)cap_slots);
    S->fixed = distq_calloc(sizeof(dnnl_memory_t) * (size_t)cap_fixed);
    S->fixed_data = distq_calloc(sizeof(void *) * (size_t)cap_fixed);
    S->values = distq_calloc(sizeof(distq_onednn_value) * (size_t)(n_values ? n_values : 1));
    S->value_slot = distq_malloc(sizeof(int) * (size_t)(n_values ? n_values : 1));
    if (!S->steps || !S->slots || !S->fixed || !S->fixed_data || !S->values || !S->value_slot) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", ctx);
        goto cleanup;
    }
    for (int v = 0; v < n_values; v++) {
        S->value_slot[v] = -1;
        S->values[v].slot = -1;
    }
    CHECK(dnnl_engine_create(&S->engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&S->stream, S->engine, dnnl_stream_default_flags));
    *out = S;
    S = NULL;
cleanup:
    (void)distq_onednn_state_free(S, 1);
    return st;
}

distq_status distq_onednn_state_free(distq_onednn_state *S, int quiet)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "destroying the oneDNN executor";
    char saved[1024];
    if (!S) return DISTQ_OK;
    if (quiet) snprintf(saved, sizeof saved, "%s", distq_error_message());
    for (int t = 0; t < S->n_steps; t++)
        if (S->steps[t].prim) CHECK_CLEANUP(dnnl_primitive_destroy(S->steps[t].prim));
    for (int i = 0; i < S->n_slots; i++)
        if (S->slots[i].mem) CHECK_CLEANUP(dnnl_memory_destroy(S->slots[i].mem));
    for (int i = 0; i < S->n_fixed; i++) {
        if (S->fixed[i]) CHECK_CLEANUP(dnnl_memory_destroy(S->fixed[i]));
        distq_free(S->fixed_data[i]);
    }
    for (int i = 0; i < S->n_bufs; i++) distq_free(S->bufs[i].data);
    if (S->stream) CHECK_CLEANUP(dnnl_stream_destroy(S->stream));
    if (S->engine) CHECK_CLEANUP(dnnl_engine_destroy(S->engine));
    distq_free(S->steps);
    distq_free(S->slots);
    distq_free(S->bufs);
    distq_free(S->fixed);
    distq_free(S->fixed_data);
    for (int v = 0; S->values && v < S->n_values; v++) distq_free(S->values[v].name);
    distq_free(S->values);
    distq_free(S->value_slot);
    distq_free(S);
    if (st != DISTQ_OK && quiet) distq_error_set(st, "%s", saved);
    return st;
}

// --- plan building blocks -----------------------------------------------------

distq_status distq_onednn_new_slot(distq_onednn_state *S, const dnnl_memory_desc_t *md, int *out)
{
    if (S->n_slots == S->cap_slots)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: slot table full");
    distq_onednn_slot *s = &S->slots[S->n_slots];
    memset(s, 0, sizeof *s);
    s->md = *md;
    s->decided = 1;
    s->view_of = s->variant_of = -1;
    s->last_use = s->buf = -1;
    *out = S->n_slots++;
    return DISTQ_OK;
}

void distq_onednn_value_dims(const distq_value *v, int64_t batch, dnnl_dims_t out)
{
    for (int i = 0; i < v->ndim; i++) out[i] = v->dims[i];
    out[0] = batch;
}

void distq_onednn_node_ctx(const distq_graph *g, const distq_node *n, int64_t batch, char *buf,
                           size_t len)
{
    const distq_value *in = &g->values[n->inputs[0]];
    dnnl_dims_t dims;
    distq_onednn_value_dims(in, batch, dims);
    char shape[96];
    distq_dims_format(in->ndim, dims, shape, sizeof shape);
    snprintf(buf, len, "node '%s' (%s, input '%s' %s %s)", n->name, distq_op_name(n->op), in->name,
             shape, distq_dtype_name(in->dtype));
}

distq_status distq_onednn_new_step(distq_onednn_state *S, const char *name, distq_onednn_step **out)
{
    if (S->n_steps == S->cap_steps)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: step table full");
    distq_onednn_step *t = &S->steps[S->n_steps++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->inplace_dst = t->inplace_src = -1;
    *out = t;
    return DISTQ_OK;
}

void distq_onednn_arg_slot(distq_onednn_step *t, int arg, int s, int writes)
{
    assert(t->n_args < DISTQ_ONEDNN_MAX_ARGS);
    t->pargs[t->n_args++] = (distq_onednn_arg){.arg = arg, .slot = s, .writes = writes, .mem = NULL};
}

void distq_onednn_arg_mem(distq_onednn_step *t, int arg, dnnl_memory_t mem)
{
    assert(t->n_args < DISTQ_ONEDNN_MAX_ARGS);
    t->pargs[t->n_args++] = (distq_onednn_arg){.arg = arg, .slot = -1, .writes = 0, .mem = mem};
}

distq_status distq_onednn_step_set_prim(distq_onednn_step *t, const_dnnl_primitive_desc_t pd,
                                        const char *ctx)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_desc_t scratch_md;
    TRY(distq_onednn_query_md(pd, dnnl_query_scratchpad_md, 0, &scratch_md, ctx));
    t->scratch_size = dnnl_memory_desc_get_size(&scratch_md);
    const char *impl = NULL;
    dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind));
    snprintf(t->impl, sizeof t->impl, "%s %s", dnnl_prim_kind2str(kind), impl ? impl : "?");
    CHECK(dnnl_primitive_create(&t->prim, pd));
cleanup:
    return st;
}

distq_status distq_onednn_add_reorder(distq_onednn_state *S, const char *name,
                                      const dnnl_memory_desc_t *src_md,
                                      const dnnl_memory_desc_t *dst_md, dnnl_primitive_attr_t attr,
                                      const char *ctx, distq_onednn_step **out)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t own = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (attr) {
        CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    } else {
        TRY(distq_onednn_attr_create(ctx, &own));
        attr = own;
    }
    CHECK(dnnl_reorder_primitive_desc_create(&pd, src_md, S->engine, dst_md, S->engine, attr));
    TRY(distq_onednn_new_step(S, name, out));
    TRY(distq_onednn_step_set_prim(*out, pd, ctx));
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (own) CHECK_CLEANUP(dnnl_primitive_attr_destroy(own));
    return st;
}

distq_status distq_onednn_make_fixed(distq_onednn_state *S, const dnnl_memory_desc_t *md,
                                     const dnnl_memory_desc_t *user_md, const void *user_data,
                                     int alloc, const char *ctx, dnnl_memory_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t reorder = NULL;
    if (S->n_fixed == S->cap_fixed)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: fixed table full");
    int i = S->n_fixed;
    void *data = NULL;
    if (alloc) {
        size_t nbytes = dnnl_memory_desc_get_size(md);
        data = distq_malloc(nbytes ? nbytes : 1);
        if (!data) return distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory (%zu bytes)", ctx, nbytes);
    }
    S->fixed_data[i] = data;
    S->fixed[i] = NULL;
    S->n_fixed++;
    CHECK(dnnl_memory_create(&S->fixed[i], md, S->engine, data));
    if (user_data) {
        dnnl_exec_arg_t args[2];
        CHECK(dnnl_memory_create(&user, user_md, S->engine, (void *)user_data));
        CHECK(dnnl_reorder_primitive_desc_create(&pd, user_md, S->engine, md, S->engine, NULL));
        CHECK(dnnl_primitive_create(&reorder, pd));
        args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, user};
        args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, S->fixed[i]};
        CHECK(dnnl_primitive_execute(reorder, S->stream, 2, args));
        CHECK(dnnl_stream_wait(S->stream));
    }
    *out = S->fixed[i];
cleanup:
    if (reorder) CHECK_CLEANUP(dnnl_primitive_destroy(reorder));
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (user) CHECK_CLEANUP(dnnl_memory_destroy(user));
    return st;
}

distq_status distq_onednn_make_param(distq_onednn_state *S, const dnnl_memory_desc_t *md, int ndim,
                                     const dnnl_dims_t user_dims, dnnl_data_type_t dt,
                                     const void *data, const char *ctx, dnnl_memory_t *out)
{
    distq_status st = DISTQ_OK;
    dnnl_memory_desc_t user_md;
    CHECK(dnnl_memory_desc_init_by_tag(&user_md, ndim, user_dims, dt, distq_onednn_plain_tag(ndim)));
    TRY(distq_onednn_make_fixed(S, md, &user_md, data, 1, ctx, out));
cleanup:
    return st;
}

const dnnl_memory_desc_t *distq_onednn_slot_md(distq_onednn_state *S, int s)
{
    S->slots[s].decided = 1;
    return &S->slots[s].md;
}

distq_status distq_onednn_slot_as(distq_onednn_state *S, int s, const dnnl_memory_desc_t *md,
                                  const char *name, const char *ctx, int *out)
{
    distq_status st = DISTQ_OK;
    distq_onednn_slot *src = &S->slots[s];
    if (!src->decided) {
        src->md = *md;
        src->decided = 1;
    }
    if (dnnl_memory_desc_equal(&src->md, md)) {
        *out = s;
        return DISTQ_OK;
    }
    for (int i = 0; i < S->n_slots; i++) {
        if (S->slots[i].variant_of == s && dnnl_memory_desc_equal(&S->slots[i].md, md)) {
            *out = i;
            return DISTQ_OK;
        }
    }
    int v = -1;
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_slot(S, md, &v));
    S->slots[v].variant_of = s;
    TRY(distq_onednn_add_reorder(S, name, &S->slots[s].md, md, NULL, ctx, &t));
    distq_onednn_arg_slot(t, DNNL_ARG_FROM, s, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, v, 1);
    *out = v;
cleanup:
    return st;
}

distq_status distq_onednn_set_value(distq_onednn_state *S, int i, const char *name, int slot,
                                    const char *why)
{
    distq_onednn_value *v = &S->values[i];
    size_t len = strlen(name);
    distq_free(v->name);
    if (!(v->name = distq_malloc(len + 1)))
        return distq_error_set(DISTQ_ERR_NOMEM, "onednn: out of memory naming value '%s'", name);
    memcpy(v->name, name, len + 1);
    v->slot = slot;
    snprintf(v->why, sizeof v->why, "%s", slot < 0 && why ? why : "");
    if (slot >= 0 && S->keep_values) S->slots[slot].pinned = 1;
    return DISTQ_OK;
}

// --- buffers ------------------------------------------------------------------

/* Walks the steps in order: a slot gets its buffer when first written and the
 * buffer is free again after the last step reading any slot in it (never, for
 * a pinned slot). A view shares its source's buffer; an in-place candidate
 * shares its source's buffer when the source is dead after this step (and
 * then a pure copy disappears: this is how the sum post-op's operand is used
 * in place). */
distq_status distq_onednn_plan_buffers(distq_onednn_state *S)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "buffer planning";
    for (int t = 0; t < S->n_steps; t++) {
        for (int k = 0; k < S->steps[t].n_args; k++) {
            const distq_onednn_arg *pa = &S->steps[t].pargs[k];
            if (pa->slot >= 0 && !pa->writes) S->slots[pa->slot].last_use = t;
        }
    }
    for (int i = 0; i < S->n_slots; i++)
        if (S->slots[i].pinned) S->slots[i].last_use = S->n_steps;
    S->bufs = distq_calloc(sizeof(distq_onednn_buffer) * (size_t)(S->n_slots ? S->n_slots : 1));
    if (!S->bufs) return distq_error_set(DISTQ_ERR_NOMEM, "onednn: out of memory planning buffers");
    for (int t = 0; t < S->n_steps; t++) {
        distq_onednn_step *T = &S->steps[t];
        for (int k = 0; k < T->n_args; k++) {
            const distq_onednn_arg *pa = &T->pargs[k];
            if (pa->slot < 0 || !pa->writes || S->slots[pa->slot].buf >= 0) continue;
            distq_onednn_slot *s = &S->slots[pa->slot];
            size_t size = dnnl_memory_desc_get_size(&s->md);
            int b = -1;
            if (s->view_of >= 0) {
                b = S->slots[s->view_of].buf;
            } else if (T->inplace_dst == pa->slot && T->inplace_src >= 0) {
                const distq_onednn_slot *src = &S->slots[T->inplace_src];
                if (src->buf >= 0 && S->bufs[src->buf].end <= t &&
                    dnnl_memory_desc_equal(&src->md, &s->md)) {
                    b = src->buf;
                    if (T->is_copy) {
                        CHECK(dnnl_primitive_destroy(T->prim));
                        T->prim = NULL;
                    }
                }
            }
            if (b < 0) { /* best fit among free buffers, else grow the largest, else new */
                for (int i = 0; i < S->n_bufs; i++) {
                    if (S->bufs[i].busy) continue;
                    if (b < 0) {
                        b = i;
                        continue;
                    }
                    int fits = S->bufs[i].size >= size, b_fits = S->bufs[b].size >= size;
                    if ((fits && (!b_fits || S->bufs[i].size < S->bufs[b].size)) ||
                        (!fits && !b_fits && S->bufs[i].size > S->bufs[b].size))
                        b = i;
                }
                if (b < 0) b = S->n_bufs++;
                if (S->bufs[b].size < size) S->bufs[b].size = size;
                S->bufs[b].end = -1;
            }
            if (b < 0) {
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: view before its source");
                goto cleanup;
            }
            s->buf = b;
            S->bufs[b].busy = 1;
            int end = s->last_use > t ? s->last_use : t;
            if (S->bufs[b].end < end) S->bufs[b].end = end;
        }
        for (int i = 0; i < S->n_bufs; i++)
            if (S->bufs[i].busy && S->bufs[i].end <= t) S->bufs[i].busy = 0;
    }
cleanup:
    return st;
}

distq_status distq_onednn_bind_memories(distq_onednn_state *S)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "binding memories";
    for (int i = 0; i < S->n_bufs; i++) {
        S->bufs[i].data = distq_malloc(S->bufs[i].size);
        if (!S->bufs[i].data) {
            st = distq_error_set(DISTQ_ERR_NOMEM, "onednn: out of memory for a %zu-byte activation buffer",
                                 S->bufs[i].size);
            goto cleanup;
        }
    }
    for (int i = 0; i < S->n_slots; i++) {
        distq_onednn_slot *s = &S->slots[i];
        if (s->buf < 0) continue; /* a variant nobody reads never gets one */
        CHECK(dnnl_memory_create(&s->mem, &s->md, S->engine, S->bufs[s->buf].data));
    }
    for (int t = 0; t < S->n_steps; t++)
        if (S->steps[t].prim && S->steps[t].scratch_size > S->scratch_size)
            S->scratch_size = S->steps[t].scratch_size;
    if (S->scratch_size) {
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = {(dnnl_dim_t)S->scratch_size};
        CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_u8, dnnl_a));
        TRY(distq_onednn_make_fixed(S, &md, NULL, NULL, 1, ctx, &S->scratch));
    }
    for (int t = 0; t < S->n_steps; t++) {
        distq_onednn_step *T = &S->steps[t];
        if (!T->prim && !T->fn) continue;
        for (int k = 0; k < T->n_args; k++) {
            const distq_onednn_arg *pa = &T->pargs[k];
            dnnl_memory_t m = pa->slot >= 0 ? S->slots[pa->slot].mem : pa->mem;
            if (!m) {
                st = distq_error_set(DISTQ_ERR_INVALID_ARG, "onednn: internal: step '%s' arg %d unbound",
                                     T->name, pa->arg);
                goto cleanup;
            }
            T->args[k] = (dnnl_exec_arg_t){pa->arg, m};
        }
        T->n_exec_args = T->n_args;
        if (T->prim && T->scratch_size) {
            assert(T->n_exec_args < DISTQ_ONEDNN_MAX_ARGS);
            T->args[T->n_exec_args++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, S->scratch};
        }
    }
cleanup:
    return st;
}

// --- running ------------------------------------------------------------------

/* Runs the steps; with on_value, after each step that completes values (not a
 * residual copy into a conv's dst), calls it once per value held in a slot the
 * step wrote. */
/* step_s (optional): per step, the seconds it took, added (each step is
 * waited for: a profile, not a benchmark). */
static distq_status run_steps(distq_onednn_state *S, const float *input, float *output,
                              distq_status (*on_value)(void *ctx, const char *name), void *cb_ctx,
                              double *step_s)
{
    distq_status st = DISTQ_OK;
    const char *ctx = "run";
    CHECK(dnnl_memory_set_data_handle(S->user_in, (void *)input)); /* only read */
    CHECK(dnnl_memory_set_data_handle(S->user_out, output));
    for (int t = 0; t < S->n_steps; t++) {
        const distq_onednn_step *T = &S->steps[t];
        ctx = T->name;
        const double t0 = step_s ? omp_get_wtime() : 0.0;
        if (T->prim) {
            CHECK(dnnl_primitive_execute(T->prim, S->stream, T->n_exec_args, T->args));
        } else if (T->fn) {
            CHECK(dnnl_stream_wait(S->stream)); /* its inputs must be complete */
            TRY(T->fn(T));
        } else if (!on_value) {
            continue; /* a view's marker: nothing runs; an observer still sees the view */
        }
        if (step_s) {
            CHECK(dnnl_stream_wait(S->stream));
            step_s[t] += omp_get_wtime() - t0;
        }
        if (!on_value || T->is_copy) continue;
        CHECK(dnnl_stream_wait(S->stream));
        for (int k = 0; k < T->n_args; k++) {
            if (!T->pargs[k].writes || T->pargs[k].slot < 0) continue;
            for (int v = 0; v < S->n_values; v++)
                if (S->values[v].slot == T->pargs[k].slot) TRY(on_value(cb_ctx, S->values[v].name));
        }
    }
    ctx = "run";
    CHECK(dnnl_stream_wait(S->stream));
cleanup:
    return st;
}

distq_status distq_onednn_run(distq_onednn_state *S, const float *input, float *output)
{
    return run_steps(S, input, output, NULL, NULL, NULL);
}

distq_status distq_onednn_exec_profile(void *state, const float *input, float *output, int iters,
                                       distq_profile_step **steps, int *n_steps, double *wall_s)
{
    distq_onednn_state *S = state;
    distq_status st = DISTQ_OK;
    double *step_s = distq_calloc((size_t)S->n_steps * sizeof *step_s + 1);
    distq_profile_step *rows = NULL;
    int n = 0;
    if (!step_s) return distq_error_set(DISTQ_ERR_NOMEM, "profile: out of memory");
    const double t0 = omp_get_wtime();
    for (int k = 0; k < iters && !st; k++) st = run_steps(S, input, output, NULL, NULL, step_s);
    *wall_s = omp_get_wtime() - t0;
    if (!st && !(rows = calloc((size_t)S->n_steps + 1, sizeof *rows)))
        st = distq_error_set(DISTQ_ERR_NOMEM, "profile: out of memory");
    for (int t = 0; !st && t < S->n_steps; t++) {
        const distq_onednn_step *T = &S->steps[t];
        if (!T->prim && !T->fn) continue; /* views and elided copies: nothing ran */
        snprintf(rows[n].node, sizeof rows[n].node, "%s", T->name);
        snprintf(rows[n].kind, sizeof rows[n].kind, "%s", T->fn ? "C step" : T->impl);
        rows[n++].seconds = step_s[t];
    }
    distq_free(step_s);
    if (st) {
        free(rows);
        return st;
    }
    *steps = rows;
    *n_steps = n;
    return DISTQ_OK;
}

distq_status distq_onednn_run_observed(distq_onednn_state *S, const float *input, float *output,
                                       distq_status (*on_value)(void *ctx, const char *name),
                                       void *ctx)
{
    return run_steps(S, input, output, on_value, ctx, NULL);
}

/* Reorders value `name` between its slot and a plain user array (to_slot: from
 * the array into the slot). */
static distq_status copy_value(distq_onednn_state *S, const char *name, void *plain_data, int to_slot)
{
    distq_status st = DISTQ_OK;
    char ctx[DISTQ_NAME_MAX + 32];
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t reorder = NULL;
    const distq_onednn_value *v = NULL;
    snprintf(ctx, sizeof ctx, "%s value '%s'", to_slot ? "writing" : "reading", name);
    for (int i = 0; i < S->n_values && !v; i++)
        if (S->values[i].name && strcmp(S->values[i].name, name) == 0) v = &S->values[i];
    if (!v) return distq_error_set(DISTQ_ERR_INVALID_ARG, "graph has no value '%s'", name);
    if (v->slot < 0)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED, "value '%s' is not kept by the oneDNN executor: %s",
                               name, v->why);
    const distq_onednn_slot *s = &S->slots[v->slot];
    if (!s->pinned || !s->mem)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "value '%s': the oneDNN executor reuses its buffer (built without keep_values)",
                               name);
    /* Plain, in the slot's own dims: a flatten's value is its 4-D input in
     * plain order, which is the same bytes as (N, C*H*W). */
    dnnl_memory_desc_t plain;
    dnnl_exec_arg_t args[2];
    CHECK(dnnl_memory_desc_init_by_tag(&plain, s->md.ndims, s->md.dims, s->md.data_type,
                                       distq_onednn_plain_tag(s->md.ndims)));
    CHECK(dnnl_memory_create(&user, &plain, S->engine, plain_data));
    if (to_slot) {
        CHECK(dnnl_reorder_primitive_desc_create(&pd, &plain, S->engine, &s->md, S->engine, NULL));
        args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, user};
        args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, s->mem};
    } else {
        CHECK(dnnl_reorder_primitive_desc_create(&pd, &s->md, S->engine, &plain, S->engine, NULL));
        args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, s->mem};
        args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, user};
    }
    CHECK(dnnl_primitive_create(&reorder, pd));
    CHECK(dnnl_primitive_execute(reorder, S->stream, 2, args));
    CHECK(dnnl_stream_wait(S->stream));
cleanup:
    if (reorder) CHECK_CLEANUP(dnnl_primitive_destroy(reorder));
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (user) CHECK_CLEANUP(dnnl_memory_destroy(user));
    return st;
}

distq_status distq_onednn_get_value(distq_onednn_state *S, const char *name, void *out)
{
    return copy_value(S, name, out, 0);
}

distq_status distq_onednn_put_value(distq_onednn_state *S, const char *name, const void *in)
{
    return copy_value(S, name, (void *)in, 1);
}

distq_status distq_onednn_emit_pool(distq_onednn_state *S, const char *name, distq_op op, const distq_attrs *a,
                                    const dnnl_dims_t src_dims, const dnnl_dims_t dst_dims, dnnl_data_type_t dt,
                                    int s_src, const char *ctx, int *s_dst)
{
    distq_status st = DISTQ_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t kernel, strides, dil, pad_l, pad_r;
    dnnl_alg_kind_t alg;
    if (op == DISTQ_OP_MAX_POOL2D || op == DISTQ_OP_AVG_POOL2D) {
        alg = op == DISTQ_OP_MAX_POOL2D    ? dnnl_pooling_max
              : a->count_include_pad ? dnnl_pooling_avg_include_padding
                                     : dnnl_pooling_avg_exclude_padding;
        for (int i = 0; i < 2; i++) {
            kernel[i] = a->kernel[i];
            strides[i] = a->stride[i];
            dil[i] = a->dilation[i] - 1;
            pad_l[i] = a->padding[i];
            /* right padding chosen so oneDNN yields PyTorch's size (ceil_mode included) */
            pad_r[i] = distq_onednn_pool_pad_r(src_dims[2 + i], dst_dims[2 + i],
                                               dil[i] * (kernel[i] - 1) + kernel[i], strides[i], pad_l[i],
                                               distq_pad_end(a, i));
        }
    } else {
        if (dst_dims[2] != 1 || dst_dims[3] != 1) {
            st = distq_error_set(DISTQ_ERR_UNSUPPORTED, "%s: output size must be (1, 1)", ctx);
            goto cleanup;
        }
        alg = dnnl_pooling_avg_exclude_padding;
        for (int i = 0; i < 2; i++) {
            kernel[i] = src_dims[2 + i];
            strides[i] = 1;
            dil[i] = pad_l[i] = pad_r[i] = 0;
        }
    }
    dnnl_memory_desc_t src_md = *distq_onednn_slot_md(S, s_src), dst_md;
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_dims, dt, dnnl_format_tag_any));
    dnnl_pooling_v2_desc_t pool;
    CHECK(dnnl_pooling_v2_forward_desc_init(&pool, dnnl_forward_inference, alg, &src_md, &dst_md, strides, kernel,
                                            dil, pad_l, pad_r));
    TRY(distq_onednn_attr_create(ctx, &attr));
    CHECK(dnnl_primitive_desc_create(&pd, &pool, attr, S->engine, NULL));
    TRY(distq_onednn_query_md(pd, dnnl_query_dst_md, 0, &dst_md, ctx));
    TRY(distq_onednn_new_slot(S, &dst_md, s_dst));
    distq_onednn_step *t = NULL;
    TRY(distq_onednn_new_step(S, name, &t));
    TRY(distq_onednn_step_set_prim(t, pd, ctx));
    distq_onednn_arg_slot(t, DNNL_ARG_SRC, s_src, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_DST, *s_dst, 1);
cleanup:
    if (pd) CHECK_CLEANUP(dnnl_primitive_desc_destroy(pd));
    if (attr) CHECK_CLEANUP(dnnl_primitive_attr_destroy(attr));
    return st;
}

distq_status distq_onednn_add_residual_copy(distq_onednn_state *S, const char *name, int s_from, int s_dst,
                                            const dnnl_memory_desc_t *dst_md, const char *ctx)
{
    distq_onednn_step *t = NULL;
    distq_status st = distq_onednn_add_reorder(S, name, distq_onednn_slot_md(S, s_from), dst_md, NULL, ctx, &t);
    if (st) return st;
    distq_onednn_arg_slot(t, DNNL_ARG_FROM, s_from, 0);
    distq_onednn_arg_slot(t, DNNL_ARG_TO, s_dst, 1);
    t->inplace_dst = s_dst;
    t->inplace_src = s_from;
    t->is_copy = 1;
    return DISTQ_OK;
}

// --- the executor interface's entries, shared by the fp32 and int8 executors -----

distq_status distq_onednn_exec_run(void *state, const float *input, float *output)
{
    return distq_onednn_run(state, input, output);
}

distq_status distq_onednn_exec_get_value(void *state, const char *name, void *out)
{
    return distq_onednn_get_value(state, name, out);
}

void distq_onednn_exec_destroy(void *state) { (void)distq_onednn_state_free(state, 0); }
