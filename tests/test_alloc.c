/* Out of memory at every allocation in turn (test_alloc_sweep): the model,
 * quantized-model, data and config readers, the describe (inspect) path, the
 * ONNX importer, the model image MPI ranks exchange, and one prepare +
 * calibrate + convert + save, each failing cleanly with an error
 * and nothing leaked. The results writer and reader: test_results_io. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distq/config.h"
#include "distq/io.h"
#include "distq/onnx.h"
#include "distq/passes.h"
#include "distq/quant.h"
#include "test_util.h"

/* The quantized model file of p and its converted graph q. */
static distq_status save_qmodel(const distq_prepared *p, const distq_graph *q, const char *path)
{
    distq_quant_record rec = distq_prepared_record(p);
    return distq_qmodel_save(&rec, q, path);
}

enum { N_IMAGES = 8 };

static char model_path[512], qmodel_path[512], data_path[512], config_path[512], out_path[512];

/* x (1, 3, 8, 8) -> conv 3x3 + relu -> max pool -> conv 1x1 -> avg pool -> flatten -> linear */
static distq_graph *small_net(void)
{
    int64_t in[4] = {1, 3, 8, 8};
    distq_graph *g = test_new_graph(4, in);
    test_add_conv(g, "conv1", "x", 3, (test_conv_spec){8, 3, 1, 1, 1, 1, 1}, 1);
    test_add_op(g, "relu1", DISTQ_OP_RELU, NULL, "conv1", NULL, NULL);
    distq_attrs mp = distq_attrs_default(DISTQ_OP_MAX_POOL2D);
    mp.kernel[0] = mp.kernel[1] = 2;
    mp.stride[0] = mp.stride[1] = 2;
    test_add_op(g, "pool", DISTQ_OP_MAX_POOL2D, &mp, "relu1", NULL, NULL);
    test_add_conv(g, "conv2", "pool", 8, (test_conv_spec){6, 1, 1, 0, 1, 1, 1}, 2);
    test_add_op(g, "avgpool", DISTQ_OP_ADAPTIVE_AVG_POOL2D, NULL, "conv2", NULL, NULL);
    test_add_op(g, "flatten", DISTQ_OP_FLATTEN, NULL, "avgpool", NULL, NULL);
    test_add_linear(g, "fc", "flatten", 6, 4, 1, 3);
    test_finish(g, "fc");
    return g;
}

/* What one op made, for cleanup to free. */
typedef struct {
    distq_graph *g, *g2;
    distq_graph *q;
    distq_prepared *p;
    distq_calibrator *c;
    float *x;
    char *text;
    distq_config cfg;
} made;

static void cleanup(void *ctx)
{
    made *m = ctx;
    distq_graph_destroy(m->g2);
    distq_graph_destroy(m->q);
    distq_calibrator_destroy(m->c);
    distq_prepared_destroy(m->p);
    distq_free(m->text);
    distq_config_free(&m->cfg);
    m->g2 = NULL;
    m->q = NULL;
    m->c = NULL;
    m->p = NULL;
    m->text = NULL;
}

static distq_status load_model(void *ctx) { return distq_model_load(model_path, &((made *)ctx)->g2); }

static distq_status load_qmodel(void *ctx)
{
    made *m = ctx;
    return distq_qmodel_load(qmodel_path, &m->q, &m->g2);
}

static distq_status read_data(void *ctx)
{
    made *m = ctx;
    distq_data_info info;
    distq_status st = distq_data_info_read(data_path, &info);
    if (!st) st = distq_data_read(data_path, 0, N_IMAGES, m->x, NULL);
    return st;
}

static distq_status load_config(void *ctx)
{
    made *m = ctx;
    distq_config_defaults(&m->cfg);
    return distq_config_load(config_path, &m->cfg);
}

static distq_status describe_model(void *ctx) { return distq_h5_describe(model_path, &((made *)ctx)->text); }
static distq_status describe_qmodel(void *ctx) { return distq_h5_describe(qmodel_path, &((made *)ctx)->text); }
static distq_status describe_data(void *ctx) { return distq_h5_describe(data_path, &((made *)ctx)->text); }

/* ONNX's own files (Debian's libonnx-testdata): a padded conv, an eval BN */
static const char *const onnx_files[] = {
    "/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv2d_padding/model.onnx",
    "/usr/share/libonnx-testdata/data/pytorch-converted/test_BatchNorm2d_eval/model.onnx",
};
static int onnx_file;
static distq_status import_onnx(void *ctx) { return distq_onnx_import(onnx_files[onnx_file], NULL, &((made *)ctx)->g2); }

/* what rank 0 sends other ranks under MPI, and what they make of it */
static distq_status model_image(void *ctx)
{
    made *m = ctx;
    void *buf = NULL;
    size_t len = 0;
    distq_status st = distq_model_to_image(m->g, "small_net", &buf, &len);
    if (!st) st = distq_model_from_image(buf, len, "small_net", &m->g2);
    free(buf);
    return st;
}

/* prepare, calibrate on the data, convert, save: the PTQ flow of one rank */
static distq_status ptq(void *ctx)
{
    made *m = ctx;
    distq_status st = distq_prepare(m->g, DISTQ_OBSERVER_HISTOGRAM, &m->p);
    if (!st) st = distq_calibrator_create(m->p, 4, NULL, &m->c);
    for (int64_t s = 0; !st && s < N_IMAGES; s += 4) st = distq_calibrate_batch(m->c, m->x + s * 3 * 8 * 8, 4);
    if (!st) st = distq_convert(m->p, 1, &m->q);
    if (!st) st = save_qmodel(m->p, m->q, out_path);
    return st;
}

static void test_sweep(void)
{
    made m = {0};
    distq_config_defaults(&m.cfg);
    m.g = small_net();
    m.x = malloc(sizeof(float) * N_IMAGES * 3 * 8 * 8);
    CU_ASSERT_FATAL(m.x != NULL);
    test_fill_uniform(m.x, N_IMAGES * 3 * 8 * 8, 7, -1.0f, 1.0f);
    test_tmp_path(model_path, sizeof model_path, "alloc_model.h5");
    test_tmp_path(qmodel_path, sizeof qmodel_path, "alloc_q.h5");
    test_tmp_path(data_path, sizeof data_path, "alloc_data.h5");
    test_tmp_path(config_path, sizeof config_path, "alloc.ini");
    test_tmp_path(out_path, sizeof out_path, "alloc_out.h5");
    /* the fixtures, written with allocation working */
    TEST_OK(distq_model_save(m.g, model_path));
    int64_t dims[4] = {N_IMAGES, 3, 8, 8};
    TEST_OK(distq_data_write(data_path, m.x, 4, dims, NULL));
    TEST_OK(ptq(&m));
    TEST_OK(save_qmodel(m.p, m.q, qmodel_path));
    cleanup(&m);
    FILE *f = fopen(config_path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "[model]\npath = %s\n[calibration]\ndata = %s\nbatches = 2\nbatch_size = 4\n[output]\n"
               "quantized = %s\n[bench]\nbatch = 1,8\n",
            model_path, data_path, out_path);
    fclose(f);

    int64_t total = 0;
    total += test_alloc_sweep("model reader", load_model, cleanup, &m);
    total += test_alloc_sweep("quantized-model reader", load_qmodel, cleanup, &m);
    total += test_alloc_sweep("data reader", read_data, cleanup, &m);
    total += test_alloc_sweep("config reader", load_config, cleanup, &m);
    total += test_alloc_sweep("describe model", describe_model, cleanup, &m);
    total += test_alloc_sweep("describe quantized model", describe_qmodel, cleanup, &m);
    total += test_alloc_sweep("describe data", describe_data, cleanup, &m);
    total += test_alloc_sweep("prepare + calibrate + convert + save", ptq, cleanup, &m);
    for (onnx_file = 0; onnx_file < 2; onnx_file++) total += test_alloc_sweep("ONNX import", import_onnx, cleanup, &m);
    total += test_alloc_sweep("model as image bytes and back", model_image, cleanup, &m);
    printf("\n    all: %lld allocations failed, each handled", (long long)total);
    /* no failed save left a temporary behind, and the last (whole) one is valid */
    DIR *dir = opendir(test_tmpdir());
    CU_ASSERT_FATAL(dir != NULL);
    int temporaries = 0;
    for (struct dirent *e; (e = readdir(dir));) temporaries += strstr(e->d_name, ".tmp.") != NULL;
    closedir(dir);
    CU_ASSERT_EQUAL(temporaries, 0);
    TEST_OK(distq_qmodel_load(out_path, &m.q, NULL));
    cleanup(&m);
    distq_graph_destroy(m.g);
    free(m.x);
    test_assert_no_open_hdf5();
}

int main(void)
{
    static const test_case cases[] = {
        {"every allocation fails in turn", test_sweep},
    };
    return test_run_suite("alloc", cases, (int)(sizeof cases / sizeof cases[0]));
}
