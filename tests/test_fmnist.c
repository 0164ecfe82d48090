/*
 * Fashion-MNIST support: IDX parsing (on small gzip fixtures written here with
 * zlib, and on the Debian package's real files when installed), conversion to
 * data files with the training set's normalisation, the fmnist_cnn builder
 * (shapes, names, PTQ patterns, int8 vs fp32) and training checkpoints (bit-
 * exact round trip, every corruption rejected naming the culprit).
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "distq/exec.h"
#include "distq/io.h"
#include "distq/quant.h"
#include "test_util.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

// --- helpers ------------------------------------------------------------------------

static void put_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* Writes an IDX file: magic, ndim dims (as declared), then n_body body bytes.
 * gz != 0 compresses with gzwrite, else a plain file. */
static void write_idx(const char *path, int gz, uint32_t magic, int ndim, const uint32_t *dims,
                      const unsigned char *body, size_t n_body)
{
    unsigned char hdr[16];
    put_be32(hdr, magic);
    for (int i = 0; i < ndim; i++) put_be32(hdr + 4 + 4 * i, dims[i]);
    size_t nh = 4 + 4 * (size_t)ndim;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        CU_ASSERT_EQUAL(gzwrite(f, hdr, (unsigned)nh), (int)nh);
        if (n_body) CU_ASSERT_EQUAL(gzwrite(f, body, (unsigned)n_body), (int)n_body);
        CU_ASSERT_EQUAL(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        CU_ASSERT_EQUAL(fwrite(hdr, 1, nh, f), nh);
        if (n_body) CU_ASSERT_EQUAL(fwrite(body, 1, n_body, f), n_body);
        fclose(f);
    }
}

/* Keeps the first nbytes of a file. */
static void truncate_file(const char *path, long nbytes) { CU_ASSERT_EQUAL(truncate(path, nbytes), 0); }

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static float root_attr_f32(const char *path, const char *name)
{
    float v = NAN;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    CU_ASSERT(a >= 0);
    if (a >= 0) {
        CU_ASSERT(H5Aread(a, H5T_NATIVE_FLOAT, &v) >= 0);
        H5Aclose(a);
    }
    H5Fclose(f);
    return v;
}

/* Root string attribute into buf (variable-length, as our writers store it). */
static void root_attr_str(const char *path, const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    hid_t t = H5Aget_type(a);
    char *s = NULL;
    CU_ASSERT(H5Tis_variable_str(t) > 0);
    CU_ASSERT(H5Aread(a, t, &s) >= 0);
    if (s) snprintf(buf, len, "%s", s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);
}

// --- IDX parsing -----------------------------------------------------------------------

/* 3 images of 2x3 with pixel = 10 * image + index, and their labels. */
static const uint32_t small_img_dims[3] = {3, 2, 3};
static unsigned char small_img[18];
static const unsigned char small_lab[3] = {7, 0, 9};

static void make_small(void)
{
    for (int i = 0; i < 18; i++) small_img[i] = (unsigned char)(10 * (i / 6) + i % 6);
}

static void test_idx_read_small(void)
{
    char gzi[512], gzl[512], plain[512];
    make_small();
    test_tmp_path(gzi, sizeof gzi, "small-images-idx3-ubyte.gz");
    test_tmp_path(gzl, sizeof gzl, "small-labels-idx1-ubyte.gz");
    test_tmp_path(plain, sizeof plain, "small-images-idx3-ubyte");
    write_idx(gzi, 1, DISTQ_IDX_MAGIC_IMAGES, 3, small_img_dims, small_img, 18);
    write_idx(gzl, 1, DISTQ_IDX_MAGIC_LABELS, 1, small_img_dims, small_lab, 3);
    write_idx(plain, 0, DISTQ_IDX_MAGIC_IMAGES, 3, small_img_dims, small_img, 18);

    distq_idx x;
    TEST_OK(distq_idx_read(gzi, DISTQ_IDX_MAGIC_IMAGES, 0, &x));
    CU_ASSERT_EQUAL(x.magic, DISTQ_IDX_MAGIC_IMAGES);
    CU_ASSERT_EQUAL(x.ndim, 3);
    CU_ASSERT_EQUAL(x.dims[0], 3);
    CU_ASSERT_EQUAL(x.dims[1], 2);
    CU_ASSERT_EQUAL(x.dims[2], 3);
    CU_ASSERT_EQUAL(x.n_declared, 3);
    CU_ASSERT_EQUAL(memcmp(x.data, small_img, 18), 0);
    distq_idx_free(&x);
    CU_ASSERT_PTR_NULL(x.data);
    distq_idx_free(&x); /* twice is a no-op */
    distq_idx_free(NULL);

    /* the first N only; plain (uncompressed) files read the same */
    TEST_OK(distq_idx_read(plain, DISTQ_IDX_MAGIC_IMAGES, 2, &x));
    CU_ASSERT_EQUAL(x.dims[0], 2);
    CU_ASSERT_EQUAL(x.n_declared, 3);
    CU_ASSERT_EQUAL(memcmp(x.data, small_img, 12), 0);
    distq_idx_free(&x);

    TEST_OK(distq_idx_read(gzl, DISTQ_IDX_MAGIC_LABELS, 0, &x));
    CU_ASSERT_EQUAL(x.ndim, 1);
    CU_ASSERT_EQUAL(x.dims[0], 3);
    CU_ASSERT_EQUAL(memcmp(x.data, small_lab, 3), 0);
    distq_idx_free(&x);

    /* exact stats: pixels 0..5, 10..15, 20..25 over 255 */
    TEST_OK(distq_idx_read(gzi, DISTQ_IDX_MAGIC_IMAGES, 0, &x));
    double mean, std, m = 0, v = 0;
    distq_idx_pixel_stats(&x, &mean, &std);
    for (int i = 0; i < 18; i++) m += small_img[i] / 255.0 / 18;
    for (int i = 0; i < 18; i++) v += (small_img[i] / 255.0 - m) * (small_img[i] / 255.0 - m) / 18;
    CU_ASSERT_DOUBLE_EQUAL(mean, m, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(std, sqrt(v), 1e-12);
    distq_idx_free(&x);
}

static void test_idx_read_errors(void)
{
    char p[512], ok[512];
    distq_idx x;
    make_small();
    test_tmp_path(ok, sizeof ok, "ok-images.gz");
    write_idx(ok, 1, DISTQ_IDX_MAGIC_IMAGES, 3, small_img_dims, small_img, 18);

    /* an image file read as labels, and a magic that is not IDX at all */
    TEST_ERR_PATH(distq_idx_read(ok, DISTQ_IDX_MAGIC_LABELS, 0, &x), DISTQ_ERR_FORMAT,
                  "bad magic 0x00000803, expected 0x00000801", ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), "this is an IDX image file"));
    CU_ASSERT_PTR_NULL(x.data);
    test_tmp_path(p, sizeof p, "badmagic.gz");
    write_idx(p, 1, 0x00000d03u, 3, small_img_dims, small_img, 18);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT,
                  "bad magic 0x00000d03", p);

    /* truncated: inside the magic, inside the header, in the body */
    test_tmp_path(p, sizeof p, "empty.gz");
    write_idx(p, 1, DISTQ_IDX_MAGIC_IMAGES, 0, NULL, NULL, 0); /* 4 bytes: just the magic */
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT,
                  "truncated: the file ends after 4 bytes, inside the 16-byte IDX header", p);
    FILE *f = fopen(p, "wb");
    fclose(f);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT,
                  "truncated: the file ends after 0 bytes", p);
    test_tmp_path(p, sizeof p, "short-body.gz");
    write_idx(p, 1, DISTQ_IDX_MAGIC_IMAGES, 3, small_img_dims, small_img, 14);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT,
                  "truncated: the header declares 3 items of 6 bytes, but the data ends after 2 "
                  "items (14 of 18 bytes)",
                  p);
    /* the first 2 are all there */
    TEST_OK(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 2, &x));
    distq_idx_free(&x);

    /* a gzip stream cut in the middle (the IDX bytes are fine, the file is not) */
    static unsigned char big[3 * 4096];
    uint32_t bdims[3] = {3, 64, 64};
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)((i * 2654435761u) >> 24);
    test_tmp_path(p, sizeof p, "cut.gz");
    write_idx(p, 1, DISTQ_IDX_MAGIC_IMAGES, 3, bdims, big, sizeof big);
    truncate_file(p, file_size(p) / 2);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT, "truncated",
                  p);
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), "gzip stream is cut short"));

    /* corrupt deflate data */
    test_tmp_path(p, sizeof p, "corrupt.gz");
    write_idx(p, 1, DISTQ_IDX_MAGIC_IMAGES, 3, bdims, big, sizeof big);
    f = fopen(p, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 40, SEEK_SET);
    for (int i = 0; i < 64; i++) fputc(0xff, f);
    fclose(f);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT, "", p);

    /* more data than declared, and more items requested than declared */
    test_tmp_path(p, sizeof p, "long.gz");
    uint32_t two[3] = {2, 2, 3};
    write_idx(p, 1, DISTQ_IDX_MAGIC_IMAGES, 3, two, small_img, 18);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT,
                  "count mismatch: the header declares 2 items, but more data follows", p);
    TEST_ERR_PATH(distq_idx_read(ok, DISTQ_IDX_MAGIC_IMAGES, 4, &x), DISTQ_ERR_FORMAT,
                  "holds 3 items, 4 were requested", ok);

    /* a zero dimension in the header */
    test_tmp_path(p, sizeof p, "zero-rows.gz");
    uint32_t zr[3] = {3, 0, 3};
    write_idx(p, 1, DISTQ_IDX_MAGIC_IMAGES, 3, zr, NULL, 0);
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_FORMAT,
                  "header dimension 1 is 0", p);

    test_tmp_path(p, sizeof p, "missing.gz");
    TEST_ERR_PATH(distq_idx_read(p, DISTQ_IDX_MAGIC_IMAGES, 0, &x), DISTQ_ERR_IO, "cannot open",
                  p);
}

// --- conversion to data files ------------------------------------------------------------

static void test_data_from_idx_small(void)
{
    char tri[512], trl[512], tei[512], tel[512], out[512], s[512];
    make_small();
    test_tmp_path(tri, sizeof tri, "tr-images.gz");
    test_tmp_path(trl, sizeof trl, "tr-labels.gz");
    test_tmp_path(tei, sizeof tei, "te-images.gz");
    test_tmp_path(tel, sizeof tel, "te-labels.gz");
    test_tmp_path(out, sizeof out, "small.h5");
    write_idx(tri, 1, DISTQ_IDX_MAGIC_IMAGES, 3, small_img_dims, small_img, 18);
    write_idx(trl, 1, DISTQ_IDX_MAGIC_LABELS, 1, small_img_dims, small_lab, 3);
    unsigned char te[12] = {0, 255, 128, 1, 2, 3, 200, 201, 202, 203, 204, 205};
    uint32_t te_dims[3] = {2, 2, 3};
    unsigned char te_lab[2] = {4, 5};
    write_idx(tei, 1, DISTQ_IDX_MAGIC_IMAGES, 3, te_dims, te, 12);
    write_idx(tel, 1, DISTQ_IDX_MAGIC_LABELS, 1, te_dims, te_lab, 2);

    /* train: its own statistics; first 2 of 3 images, stats still over all 3 */
    distq_idx x;
    double mean, std;
    TEST_OK(distq_idx_read(tri, DISTQ_IDX_MAGIC_IMAGES, 0, &x));
    distq_idx_pixel_stats(&x, &mean, &std);
    distq_idx_free(&x);
    int64_t n = 0;
    float m = 0, sd = 0;
    TEST_OK(distq_data_from_idx(out, tri, trl, NULL, 2, &n, &m, &sd));
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(m, (float)mean);
    CU_ASSERT_EQUAL(sd, (float)std);
    distq_data_info info;
    TEST_OK(distq_data_info_read(out, &info));
    CU_ASSERT_EQUAL(info.ndim, 4);
    CU_ASSERT_EQUAL(info.dims[0], 2);
    CU_ASSERT_EQUAL(info.dims[1], 1);
    CU_ASSERT_EQUAL(info.dims[2], 2);
    CU_ASSERT_EQUAL(info.dims[3], 3);
    CU_ASSERT_TRUE(info.has_labels);
    float img[12];
    int64_t lab[2];
    TEST_OK(distq_data_read(out, 0, 2, img, lab));
    for (int i = 0; i < 12; i++)
        CU_ASSERT_EQUAL(img[i], ((float)small_img[i] / 255.0f - m) / sd);
    CU_ASSERT_EQUAL(lab[0], 7);
    CU_ASSERT_EQUAL(lab[1], 0);
    CU_ASSERT_EQUAL(root_attr_f32(out, "mean"), m);
    CU_ASSERT_EQUAL(root_attr_f32(out, "std"), sd);
    root_attr_str(out, "normalize_from", s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, tri);
    root_attr_str(out, "source_labels", s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, trl);

    /* test: the training set's statistics */
    TEST_OK(distq_data_from_idx(out, tei, tel, tri, 0, &n, &m, &sd));
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(m, (float)mean);
    CU_ASSERT_EQUAL(sd, (float)std);
    TEST_OK(distq_data_read(out, 0, 2, img, lab));
    for (int i = 0; i < 12; i++) CU_ASSERT_EQUAL(img[i], ((float)te[i] / 255.0f - m) / sd);
    CU_ASSERT_EQUAL(lab[1], 5);
    root_attr_str(out, "normalize_from", s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, tri);
    root_attr_str(out, "source_images", s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, tei);

    /* without labels */
    TEST_OK(distq_data_from_idx(out, tei, NULL, tri, 0, NULL, NULL, NULL));
    TEST_OK(distq_data_info_read(out, &info));
    CU_ASSERT_FALSE(info.has_labels);

    /* errors: count mismatch, labels as images, other image size, constant images */
    TEST_ERR(distq_data_from_idx(out, tei, trl, tri, 0, NULL, NULL, NULL), DISTQ_ERR_FORMAT,
             "count mismatch");
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), tei));
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), trl));
    TEST_ERR_PATH(distq_data_from_idx(out, tei, tel, trl, 0, NULL, NULL, NULL), DISTQ_ERR_FORMAT,
                  "bad magic", trl);
    char odd[512], flat[512];
    test_tmp_path(odd, sizeof odd, "odd-images.gz");
    uint32_t odd_dims[3] = {2, 3, 2};
    write_idx(odd, 1, DISTQ_IDX_MAGIC_IMAGES, 3, odd_dims, te, 12);
    TEST_ERR_PATH(distq_data_from_idx(out, odd, NULL, tri, 0, NULL, NULL, NULL),
                  DISTQ_ERR_INVALID_ARG, "normalisation source", tri);
    test_tmp_path(flat, sizeof flat, "flat-images.gz");
    unsigned char same[12];
    memset(same, 7, sizeof same);
    write_idx(flat, 1, DISTQ_IDX_MAGIC_IMAGES, 3, te_dims, same, 12);
    TEST_ERR_PATH(distq_data_from_idx(out, tei, NULL, flat, 0, NULL, NULL, NULL),
                  DISTQ_ERR_INVALID_ARG, "standard deviation is 0", flat);
}

// --- the real dataset --------------------------------------------------------------------

/* Mean and std of all images of a data file, read in chunks. */
static void data_stats(const char *path, int64_t n, int64_t per, double *mean, double *std)
{
    enum { CHUNK = 5000 };
    float *x = malloc((size_t)(CHUNK * per) * sizeof *x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    double s = 0, ss = 0;
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t c = n - start < CHUNK ? n - start : CHUNK;
        TEST_OK(distq_data_read(path, start, c, x, NULL));
        for (int64_t i = 0; i < c * per; i++) {
            s += x[i];
            ss += (double)x[i] * x[i];
        }
    }
    *mean = s / (double)(n * per);
    *std = sqrt(ss / (double)(n * per) - *mean * *mean);
    free(x);
}

static void test_fmnist_real(void)
{
    const char *tri = FMNIST_DIR "/train-images-idx3-ubyte.gz";
    const char *trl = FMNIST_DIR "/train-labels-idx1-ubyte.gz";
    const char *tei = FMNIST_DIR "/t10k-images-idx3-ubyte.gz";
    const char *tel = FMNIST_DIR "/t10k-labels-idx1-ubyte.gz";
    if (access(tri, R_OK) != 0 || access(tei, R_OK) != 0) {
        printf(" [skipped: %s absent; scripts/install_deps.sh installs dataset-fashion-mnist] ",
               FMNIST_DIR);
        return;
    }
    /* labels: 60000 / 10000, 0..9, balanced (6000 / 1000 per class) */
    const char *labs[2] = {trl, tel};
    const int64_t want_n[2] = {60000, 10000};
    for (int k = 0; k < 2; k++) {
        distq_idx y;
        int64_t per_class[10] = {0};
        TEST_OK(distq_idx_read(labs[k], DISTQ_IDX_MAGIC_LABELS, 0, &y));
        CU_ASSERT_EQUAL(y.dims[0], want_n[k]);
        for (int64_t i = 0; i < y.dims[0]; i++) {
            CU_ASSERT_FATAL(y.data[i] <= 9);
            per_class[y.data[i]]++;
        }
        for (int c = 0; c < 10; c++) CU_ASSERT_EQUAL(per_class[c], want_n[k] / 10);
        distq_idx_free(&y);
    }

    char out_tr[512], out_te[512];
    test_tmp_path(out_tr, sizeof out_tr, "fmnist_train.h5");
    test_tmp_path(out_te, sizeof out_te, "fmnist_test.h5");
    int64_t n = 0;
    float m = 0, s = 0, m2 = 0, s2 = 0;
    TEST_OK(distq_data_from_idx(out_tr, tri, trl, tri, 0, &n, &m, &s));
    CU_ASSERT_EQUAL(n, 60000);
    printf(" [train pixels: mean %.4f std %.4f] ", m, s);
    CU_ASSERT(m > 0.28f && m < 0.29f); /* 0.2860 / 0.3530, the published Fashion-MNIST figures */
    CU_ASSERT(s > 0.35f && s < 0.36f);
    TEST_OK(distq_data_from_idx(out_te, tei, tel, tri, 0, &n, &m2, &s2));
    CU_ASSERT_EQUAL(n, 10000);
    CU_ASSERT_EQUAL(m2, m); /* the training set's normalisation */
    CU_ASSERT_EQUAL(s2, s);

    distq_data_info info;
    TEST_OK(distq_data_info_read(out_tr, &info));
    CU_ASSERT_EQUAL(info.dims[0], 60000);
    CU_ASSERT_EQUAL(info.dims[1], 1);
    CU_ASSERT_EQUAL(info.dims[2], 28);
    CU_ASSERT_EQUAL(info.dims[3], 28);
    CU_ASSERT_TRUE(info.has_labels);
    double mean, std;
    data_stats(out_tr, 60000, 784, &mean, &std);
    printf(" [normalised train: mean %.2e std %.6f] ", mean, std);
    CU_ASSERT(fabs(mean) < 1e-4);
    CU_ASSERT(fabs(std - 1.0) < 1e-4);
    data_stats(out_te, 10000, 784, &mean, &std); /* close to, not exactly, 0 and 1 */
    CU_ASSERT(fabs(mean) < 0.05);
    CU_ASSERT(fabs(std - 1.0) < 0.05);
    int64_t lab[5];
    float img[5 * 784];
    TEST_OK(distq_data_read(out_te, 0, 5, img, lab));
    distq_idx y;
    TEST_OK(distq_idx_read(tel, DISTQ_IDX_MAGIC_LABELS, 5, &y));
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(lab[i], y.data[i]);
    distq_idx_free(&y);
    remove(out_tr);
    remove(out_te);
}

// --- fmnist_cnn ------------------------------------------------------------------------------

static void expect_dims(const distq_graph *g, const char *value, int ndim, int64_t c, int64_t h,
                        int64_t w)
{
    int v = distq_graph_find_value(g, value);
    CU_ASSERT_FATAL(v >= 0);
    const distq_value *x = &g->values[v];
    int64_t want[4] = {1, c, h, w};
    CU_ASSERT_EQUAL(x->ndim, ndim);
    for (int i = 0; i < ndim; i++) CU_ASSERT_EQUAL(x->dims[i], want[i]);
}

static void test_fmnist_cnn_shapes(void)
{
    distq_graph *g = NULL, *g2 = NULL, *g3 = NULL;
    TEST_OK(distq_build_fmnist_cnn(7, &g));
    CU_ASSERT_TRUE(g->finalized);
    CU_ASSERT_EQUAL(g->input_ndim, 4);
    int64_t in[4] = {1, 1, 28, 28};
    CU_ASSERT_EQUAL(memcmp(g->input_dims, in, sizeof in), 0);
    expect_dims(g, "stem.relu", 4, 32, 28, 28);
    expect_dims(g, "block1.relu_1", 4, 32, 28, 28);
    expect_dims(g, "maxpool", 4, 32, 14, 14);
    expect_dims(g, "block2.relu", 4, 64, 7, 7);
    expect_dims(g, "block2.downsample.1", 4, 64, 7, 7);
    expect_dims(g, "block2.relu_1", 4, 64, 7, 7);
    expect_dims(g, "avgpool", 4, 64, 1, 1);
    expect_dims(g, "flatten", 2, 64, 0, 0);
    expect_dims(g, "fc", 2, 10, 0, 0);
    CU_ASSERT_STRING_EQUAL(g->output_names[0], "fc");

    /* torchvision-style state_dict keys, in parameter order */
    static const char *const convs[] = {"stem.conv", "block1.conv1", "block1.conv2",
                                        "block2.conv1", "block2.conv2", "block2.downsample.0"};
    static const char *const bns[] = {"stem.bn", "block1.bn1", "block1.bn2",
                                      "block2.bn1", "block2.bn2", "block2.downsample.1"};
    static const char *const bn_suffix[] = {"weight", "bias", "running_mean", "running_var",
                                            "num_batches_tracked"};
    int n_expected = 0;
    for (int i = 0; i < 6; i++) {
        char name[DISTQ_NAME_MAX];
        snprintf(name, sizeof name, "%s.weight", convs[i]);
        CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, name));
        snprintf(name, sizeof name, "%s.bias", convs[i]);
        CU_ASSERT_PTR_NULL(distq_graph_find_param(g, name)); /* convs have no bias */
        for (int k = 0; k < 5; k++) {
            snprintf(name, sizeof name, "%s.%s", bns[i], bn_suffix[k]);
            CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, name));
        }
        n_expected += 6;
    }
    CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, "fc.weight"));
    CU_ASSERT_PTR_NOT_NULL(distq_graph_find_param(g, "fc.bias"));
    CU_ASSERT_EQUAL(g->n_params, n_expected + 2);
    CU_ASSERT_STRING_EQUAL(g->params[0].name, "stem.conv.weight");
    CU_ASSERT_STRING_EQUAL(g->params[g->n_params - 1].name, "fc.bias");
    const distq_tensor *w = distq_graph_find_param(g, "block2.conv1.weight");
    int64_t wd[4] = {64, 32, 3, 3};
    CU_ASSERT_EQUAL(memcmp(w->dims, wd, sizeof wd), 0);
    w = distq_graph_find_param(g, "block2.downsample.0.weight");
    int64_t dd[4] = {64, 32, 1, 1};
    CU_ASSERT_EQUAL(memcmp(w->dims, dd, sizeof dd), 0);
    int n = distq_graph_find_node(g, "block2.conv1");
    CU_ASSERT_EQUAL(g->nodes[n].attr.stride[0], 2);
    CU_ASSERT_EQUAL(g->nodes[n].attr.padding[0], 1);
    n = distq_graph_find_node(g, "maxpool");
    CU_ASSERT_EQUAL(g->nodes[n].attr.kernel[0], 2);
    CU_ASSERT_EQUAL(g->nodes[n].attr.stride[1], 2);

    /* deterministic: same seed, same bytes (also through distq_build_model) */
    TEST_OK(distq_build_model("fmnist_cnn", 7, &g2));
    TEST_OK(distq_build_fmnist_cnn(8, &g3));
    CU_ASSERT_EQUAL_FATAL(g2->n_params, g->n_params);
    int differs = 0;
    for (int i = 0; i < g->n_params; i++) {
        CU_ASSERT_EQUAL(memcmp(g->params[i].data, g2->params[i].data,
                               distq_tensor_nbytes(&g->params[i])),
                        0);
        differs |= memcmp(g->params[i].data, g3->params[i].data,
                          distq_tensor_nbytes(&g->params[i])) != 0;
    }
    CU_ASSERT_TRUE(differs);
    distq_graph_destroy(g3);
    TEST_ERR(distq_build_model("fmnist", 7, &g3), DISTQ_ERR_INVALID_ARG, "fmnist_cnn");
    distq_graph_destroy(g);
    distq_graph_destroy(g2);
}

static double rel_l2(const float *a, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / den);
}

/* The PTQ recipe accepts it: every add follows a conv; then int8 vs fp32. */
static void test_fmnist_cnn_ptq(void)
{
    enum { NCAL = 16, NTEST = 4, PER = 784 };
    static float cal[NCAL * PER], x[NTEST * PER], y32[NTEST * 10], y8[NTEST * 10];
    distq_graph *g = NULL;
    distq_prepared *p = NULL;
    distq_calibrator *c = NULL;
    distq_graph *q = NULL;
    distq_exec *e32 = NULL, *e8 = NULL;
    TEST_OK(distq_build_fmnist_cnn(3, &g));
    TEST_OK(distq_prepare(g, DISTQ_OBSERVER_HISTOGRAM, &p));
    int count[DISTQ_PATTERN_FLATTEN + 1] = {0};
    for (int i = 0; i < p->g->n_nodes; i++) count[p->plan[i].pattern]++;
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_CONV], 4); /* stem, block1.conv1, block2.conv1, downsample */
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_CONV_SUM], 2);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_LINEAR], 1);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_MAX_POOL], 1);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_AVG_POOL], 1);
    CU_ASSERT_EQUAL(count[DISTQ_PATTERN_FLATTEN], 1);
    int b2 = distq_graph_find_node(p->g, "block2.conv2");
    CU_ASSERT_EQUAL(p->plan[b2].pattern, DISTQ_PATTERN_CONV_SUM);
    CU_ASSERT_STRING_EQUAL(p->g->values[p->plan[b2].sum_value].name, "block2.downsample.1");

    test_fill_uniform(cal, NCAL * PER, 31, -1.0f, 2.5f); /* the range normalised pixels have */
    test_fill_uniform(x, NTEST * PER, 32, -1.0f, 2.5f);
    TEST_OK(distq_calibrator_create(p, 8, NULL, &c));
    for (int s = 0; s < NCAL; s += 8) TEST_OK(distq_calibrate_batch(c, cal + s * PER, 8));
    TEST_OK(distq_convert(p, 0, &q));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, g, NTEST, &e32));
    TEST_OK(distq_exec_run(e32, x, y32));
    TEST_OK(distq_exec_create(DISTQ_BACKEND_REF, q, NTEST, &e8));
    TEST_OK(distq_exec_run(e8, x, y8));
    double err = rel_l2(y8, y32, NTEST * 10);
    printf(" [int8 vs fp32: rel L2 %.4f] ", err);
    CU_ASSERT(err < 0.10); /* the bound test_quant.c uses for resnet18 */
    distq_exec_destroy(e8);
    distq_exec_destroy(e32);
    distq_graph_destroy(q);
    distq_calibrator_destroy(c);
    distq_prepared_destroy(p);
    distq_graph_destroy(g);
}

// --- checkpoints ------------------------------------------------------------------------------

/* Elements of the f32 weight and bias of every node. */
static int64_t trainable(const distq_graph *g)
{
    int64_t n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int s = DISTQ_PARAM_WEIGHT; s <= DISTQ_PARAM_BIAS; s++)
            if (g->nodes[i].params[s] >= 0) n += distq_tensor_numel(&g->params[g->nodes[i].params[s]]);
    return n;
}

static void assert_graphs_equal(const distq_graph *a, const distq_graph *b)
{
    CU_ASSERT_TRUE(b->finalized);
    CU_ASSERT_STRING_EQUAL(a->input_name, b->input_name);
    CU_ASSERT_EQUAL(memcmp(a->input_dims, b->input_dims, sizeof a->input_dims), 0);
    CU_ASSERT_EQUAL_FATAL(a->n_outputs, b->n_outputs); for (int k_ = 0; k_ < a->n_outputs; k_++) CU_ASSERT_STRING_EQUAL(a->output_names[k_], b->output_names[k_]);
    CU_ASSERT_EQUAL_FATAL(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        CU_ASSERT_STRING_EQUAL(a->nodes[i].name, b->nodes[i].name);
        CU_ASSERT_EQUAL(a->nodes[i].op, b->nodes[i].op);
        CU_ASSERT(distq_attrs_equal(a->nodes[i].op, &a->nodes[i].attr, &b->nodes[i].attr));
        for (int k = 0; k < DISTQ_MAX_PARAMS; k++)
            CU_ASSERT_STRING_EQUAL(a->nodes[i].param_names[k], b->nodes[i].param_names[k]);
    }
    CU_ASSERT_EQUAL_FATAL(a->n_params, b->n_params);
    for (int i = 0; i < a->n_params; i++) {
        CU_ASSERT_STRING_EQUAL_FATAL(a->params[i].name, b->params[i].name);
        CU_ASSERT_EQUAL(a->params[i].dtype, b->params[i].dtype);
        CU_ASSERT_EQUAL(memcmp(a->params[i].dims, b->params[i].dims, sizeof a->params[i].dims), 0);
        CU_ASSERT_EQUAL(memcmp(a->params[i].data, b->params[i].data,
                               distq_tensor_nbytes(&a->params[i])),
                        0);
    }
}

static float *make_velocity(int64_t n)
{
    float *v = malloc((size_t)n * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    test_fill_uniform(v, n, 77, -1e-3f, 1e-3f);
    v[0] = -0.0f; /* bit patterns, not just values */
    v[1] = 1e-40f; /* subnormal */
    v[2] = NAN;
    return v;
}

static void test_checkpoint_roundtrip(void)
{
    char path[512];
    distq_graph *g = NULL, *h = NULL;
    float *got = NULL;
    int64_t nv = -1, step = -1, epoch = -1;
    test_tmp_path(path, sizeof path, "ckpt.h5");
    TEST_OK(distq_build_fmnist_cnn(11, &g));
    int64_t n = trainable(g);
    CU_ASSERT_EQUAL(n, 77290); /* convs 76064 + BN 576 + fc 650 */
    /* running stats that training would have changed, num_batches_tracked too */
    distq_tensor *rm = distq_graph_find_param(g, "block1.bn2.running_mean");
    ((float *)rm->data)[3] = 0.123456789f;
    *(int64_t *)distq_graph_find_param(g, "stem.bn.num_batches_tracked")->data = 4321;
    float *v = make_velocity(n);
    const char *config = "[train]\nlr = 0.1\nmomentum = 0.9\n";
    TEST_OK(distq_checkpoint_save(path, g, v, n, 1234, 5, config, NULL, 0));
    TEST_OK(distq_checkpoint_load(path, &h, &got, &nv, &step, &epoch, NULL, NULL));
    assert_graphs_equal(g, h);
    CU_ASSERT_EQUAL_FATAL(nv, n);
    CU_ASSERT_EQUAL(memcmp(got, v, (size_t)n * sizeof *v), 0);
    CU_ASSERT_EQUAL(step, 1234);
    CU_ASSERT_EQUAL(epoch, 5);
    char s[256];
    root_attr_str(path, "config_text", s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, config);
    root_attr_str(path, "format", s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, DISTQ_CHECKPOINT_FORMAT);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT(H5Lexists(f, "qat", H5P_DEFAULT) > 0); /* reserved */
    H5Fclose(f);
    distq_graph_destroy(h);
    distq_free(got);
    h = NULL;
    got = NULL;

    /* no velocity (plain SGD) */
    TEST_OK(distq_checkpoint_save(path, g, NULL, 0, 0, 0, NULL, NULL, 0));
    TEST_OK(distq_checkpoint_load(path, &h, &got, &nv, &step, &epoch, NULL, NULL));
    CU_ASSERT_EQUAL(nv, 0);
    CU_ASSERT_PTR_NULL(got);
    CU_ASSERT_EQUAL(step, 0);
    assert_graphs_equal(g, h);
    distq_graph_destroy(h);

    /* save errors name the problem and leave no file behind */
    char other[512];
    test_tmp_path(other, sizeof other, "ckpt-bad.h5");
    TEST_ERR_PATH(distq_checkpoint_save(other, g, v, n - 1, 1, 0, NULL, NULL, 0), DISTQ_ERR_INVALID_ARG,
                  "velocity has 77289 elements, but the graph has 77290 trainable", other);
    TEST_ERR_PATH(distq_checkpoint_save(other, g, NULL, n, 1, 0, NULL, NULL, 0), DISTQ_ERR_INVALID_ARG,
                  "NULL velocity", other);
    TEST_ERR_PATH(distq_checkpoint_save(other, g, v, n, -1, 0, NULL, NULL, 0), DISTQ_ERR_INVALID_ARG,
                  "negative step", other);
    CU_ASSERT_EQUAL(access(other, F_OK), -1);
    free(v);
    distq_graph_destroy(g);
}

/* Saves a fresh checkpoint to path, then lets damage() edit it with HDF5. */
static void damaged_checkpoint(const char *path, void (*damage)(hid_t))
{
    distq_graph *g = NULL;
    TEST_OK(distq_build_fmnist_cnn(12, &g));
    int64_t n = trainable(g);
    float *v = make_velocity(n);
    TEST_OK(distq_checkpoint_save(path, g, v, n, 10, 1, "x", NULL, 0));
    free(v);
    distq_graph_destroy(g);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    damage(f);
    H5Fclose(f);
}

static void velocity_as_int32(hid_t f)
{
    CU_ASSERT(H5Ldelete(f, "optimizer/velocity", H5P_DEFAULT) >= 0);
    hsize_t d = 77290;
    int32_t *z = calloc(d, sizeof *z);
    hid_t s = H5Screate_simple(1, &d, NULL);
    hid_t ds = H5Dcreate2(f, "optimizer/velocity", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    CU_ASSERT(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
    H5Dclose(ds);
    H5Sclose(s);
    free(z);
}

static void velocity_short(hid_t f)
{
    CU_ASSERT(H5Ldelete(f, "optimizer/velocity", H5P_DEFAULT) >= 0);
    hsize_t d = 100;
    float z[100] = {0};
    hid_t s = H5Screate_simple(1, &d, NULL);
    hid_t ds = H5Dcreate2(f, "optimizer/velocity", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    CU_ASSERT(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
    H5Dclose(ds);
    H5Sclose(s);
}

static void velocity_missing(hid_t f) { CU_ASSERT(H5Ldelete(f, "optimizer/velocity", H5P_DEFAULT) >= 0); }
static void optimizer_missing(hid_t f) { CU_ASSERT(H5Ldelete(f, "optimizer", H5P_DEFAULT) >= 0); }

static void step_negative(hid_t f)
{
    CU_ASSERT(H5Adelete(f, "step") >= 0);
    int64_t v = -3;
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "step", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
}

static void epoch_missing(hid_t f) { CU_ASSERT(H5Adelete(f, "epoch") >= 0); }

/* fc.weight (10, 64) replaced by (10, 63): the graph check names the node. */
static void weight_wrong_shape(hid_t f)
{
    CU_ASSERT(H5Ldelete(f, "tensors/fc.weight", H5P_DEFAULT) >= 0);
    hsize_t d[2] = {10, 63};
    static float z[630];
    hid_t s = H5Screate_simple(2, d, NULL);
    hid_t ds = H5Dcreate2(f, "tensors/fc.weight", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    CU_ASSERT(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
    H5Dclose(ds);
    H5Sclose(s);
}

static void test_checkpoint_corrupt(void)
{
    char path[512];
    distq_graph *g = NULL;
    float *v = NULL;
    int64_t nv, step, epoch;
    test_tmp_path(path, sizeof path, "ckpt-corrupt.h5");
    static const struct {
        void (*damage)(hid_t);
        const char *needle;
    } cases[] = {
        {velocity_as_int32, "dataset /optimizer/velocity: has type int32, expected float32"},
        {velocity_short, "dataset /optimizer/velocity: has shape (100), expected (77290)"},
        {velocity_missing, "missing dataset /optimizer/velocity"},
        {optimizer_missing, "missing group /optimizer"},
        {step_negative, "attribute 'step' is -3"},
        {epoch_missing, "epoch"},
        {weight_wrong_shape, "fc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        damaged_checkpoint(path, cases[i].damage);
        TEST_ERR_PATH(distq_checkpoint_load(path, &g, &v, &nv, &step, &epoch, NULL, NULL), DISTQ_ERR_FORMAT,
                      cases[i].needle, path);
        CU_ASSERT_PTR_NULL(g);
        CU_ASSERT_PTR_NULL(v);
    }

    /* truncated file, and a model file where a checkpoint is expected */
    damaged_checkpoint(path, epoch_missing);
    truncate_file(path, file_size(path) / 2);
    TEST_ERR_PATH(distq_checkpoint_load(path, &g, &v, &nv, &step, &epoch, NULL, NULL), DISTQ_ERR_FORMAT, "",
                  path);
    TEST_OK(distq_build_fmnist_cnn(1, &g));
    TEST_OK(distq_model_save(g, path));
    distq_graph_destroy(g);
    g = NULL;
    TEST_ERR_PATH(distq_checkpoint_load(path, &g, &v, &nv, &step, &epoch, NULL, NULL), DISTQ_ERR_FORMAT,
                  "format is 'distq-model', expected 'distq-checkpoint'", path);
}

int main(void)
{
    static const test_case cases[] = {
        {"IDX: small gzip and plain files", test_idx_read_small},
        {"IDX: bad magic, truncated, corrupt, count mismatch", test_idx_read_errors},
        {"IDX -> data file, training-set normalisation", test_data_from_idx_small},
        {"Fashion-MNIST package files", test_fmnist_real},
        {"fmnist_cnn: shapes, names, determinism", test_fmnist_cnn_shapes},
        {"fmnist_cnn: PTQ prepare, int8 vs fp32", test_fmnist_cnn_ptq},
        {"checkpoint: bit-exact round trip", test_checkpoint_roundtrip},
        {"checkpoint: corruption rejected", test_checkpoint_corrupt},
    };
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the fixtures' own expected failures */
    return test_run_suite("fmnist", cases, (int)(sizeof cases / sizeof cases[0]));
}
