/*
 * Results files: a hand-built run (3 ranks x 2 points, known samples and
 * percentiles) is written and read back with the plain HDF5 C API, so the
 * test checks the documented layout (docs/file-formats.md, "Results files")
 * rather than a reader of ours; every dataset must carry a "units"
 * attribute; describe shows the table; failed writes name the path, leave an
 * earlier file byte-for-byte untouched and leave no temporary file.
 *
 * No MPI: distq_results_write is a rank-0, serial-HDF5 affair.
 */
#include <dirent.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "distq/io.h"
#include "distq/results.h"
#include "test_util.h"

enum { NRANKS = 3, NPOINTS = 2 };

static const char *const HOSTS[NRANKS] = {"node-a", "node-b", "node-c"};
static const char CONFIG_TEXT[] = "[model]\npath = results/linear.h5\n\n[bench]\nbatch = 1,4\n";

/* Sample j of rank k at point i: distinct for every (i, k, j). */
static double sample(int i, int k, int j) { return 1e-3 * (i + 1) * (1.0 + 0.1 * j + 0.01 * k); }
static int64_t iters_of(int i, int k) { return 5 + k + 2 * i; }

/* Backing storage for one hand-built run; results.points etc. point into it. */
typedef struct {
    distq_results r;
    distq_placement pl[NRANKS];
    distq_bench_point pts[NPOINTS];
    int64_t iters[NPOINTS][NRANKS];
    double samples[NPOINTS][NRANKS][16];
    double *rows[NPOINTS][NRANKS];
    double setup[NPOINTS][NRANKS], first[NPOINTS][NRANKS], ips[NPOINTS][NRANKS];
} run_fixture;

static void build_run(run_fixture *f)
{
    memset(f, 0, sizeof *f);
    for (int k = 0; k < NRANKS; k++) {
        distq_placement *p = &f->pl[k];
        snprintf(p->host, sizeof p->host, "%s", HOSTS[k]);
        p->numa_node = k == 2 ? -1 : k;
        snprintf(p->cpus, sizeof p->cpus, "%d-%d", 4 * k, 4 * k + 3);
        p->n_cores = 4;
        p->threads = 4 + k;
        snprintf(p->bound_by, sizeof p->bound_by, "%s", k == 1 ? "launcher" : "distq");
        p->oversubscribed = k == 2;
        p->membind = k == 0;
    }
    for (int i = 0; i < NPOINTS; i++) {
        distq_bench_point *pt = &f->pts[i];
        pt->batch = i == 0 ? 1 : 4;
        snprintf(pt->precision, sizeof pt->precision, "%s", i == 0 ? "fp32" : "int8");
        snprintf(pt->concurrency, sizeof pt->concurrency, "%s", i == 0 ? "all" : "serial");
        pt->nranks = NRANKS;
        pt->iters = f->iters[i];
        pt->samples_s = f->rows[i];
        pt->setup_s = f->setup[i];
        pt->first_s = f->first[i];
        pt->images_per_s = f->ips[i];
        for (int k = 0; k < NRANKS; k++) {
            f->iters[i][k] = iters_of(i, k);
            for (int j = 0; j < f->iters[i][k]; j++) f->samples[i][k][j] = sample(i, k, j);
            f->rows[i][k] = f->samples[i][k];
            f->setup[i][k] = 0.25 + 0.01 * k + i;
            f->first[i][k] = 0.05 + 0.001 * k + i;
            f->ips[i][k] = 100.0 * (i + 1) + k;
            pt->aggregate_images_per_s += f->ips[i][k];
        }
        /* "As given": the writer stores these, it does not recompute them. */
        pt->p50_s = 0.0125 * (i + 1);
        pt->p90_s = 0.0150 * (i + 1);
        pt->p99_s = 0.0199 * (i + 1);
    }
    distq_results *r = &f->r;
    r->nranks = NRANKS;
    r->placement = f->pl;
    r->n_points = NPOINTS;
    r->points = f->pts;
    r->calib_wall_s = 3.5;
    r->calib_forward_s = 2.25;
    r->calib_observe_s = 0.75;
    r->calib_images = 64;
    r->calib_batches = 8;
    r->reduce_bytes = 123456;
    r->reduce_calls = 40;
    r->reduce_range = 1;
    snprintf(r->observer, sizeof r->observer, "histogram");
    r->has_eval = 1;
    r->eval = (distq_eval_report){.images = 500, .rel_l2 = 0.0123, .top1_agreement = 0.984,
                                  .has_labels = 1, .acc_fp32 = 0.702, .acc_int8 = 0.698};
    r->config_path = "configs/linear_ptq.ini";
    r->config_text = CONFIG_TEXT;
    r->model_path = "results/linear.h5";
    r->quantized_path = "results/linear_int8.h5";
    snprintf(r->isa, sizeof r->isa, "avx512_core_vnni");
    snprintf(r->max_isa, sizeof r->max_isa, "avx512_core_vnni");
    snprintf(r->onednn_version, sizeof r->onednn_version, "2.6.3");
    snprintf(r->mpi_version, sizeof r->mpi_version, "Open MPI v4.1.4");
    snprintf(r->hwloc_version, sizeof r->hwloc_version, "2.9.0");
    snprintf(r->date, sizeof r->date, "2024-05-01T10:00:00Z");
}

// --- reading back with plain HDF5 ------------------------------------------------------

/* Reads a scalar variable-length string attribute into buf ("" and a failed
 * assertion if it is missing or of another kind). */
static void read_attr_str(hid_t loc, const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    CU_ASSERT_FATAL(attr >= 0);
    hid_t ftype = H5Aget_type(attr), space = H5Aget_space(attr);
    CU_ASSERT_EQUAL(H5Tget_class(ftype), H5T_STRING);
    CU_ASSERT_TRUE(H5Tis_variable_str(ftype) > 0);
    CU_ASSERT_EQUAL(H5Sget_simple_extent_type(space), H5S_SCALAR);
    hid_t mtype = H5Tcopy(H5T_C_S1);
    H5Tset_size(mtype, H5T_VARIABLE);
    H5Tset_cset(mtype, H5T_CSET_UTF8);
    char *v = NULL;
    CU_ASSERT(H5Aread(attr, mtype, &v) >= 0);
    if (v) snprintf(buf, len, "%s", v);
    H5free_memory(v);
    H5Tclose(mtype);
    H5Sclose(space);
    H5Tclose(ftype);
    H5Aclose(attr);
}

static void check_attr_str(hid_t loc, const char *name, const char *want)
{
    char buf[1024];
    read_attr_str(loc, name, buf, sizeof buf);
    if (strcmp(buf, want) != 0)
        fprintf(stderr, "\n  attribute %s = \"%s\", expected \"%s\"\n", name, buf, want);
    CU_ASSERT_STRING_EQUAL(buf, want);
}

static void check_attr_i64(hid_t loc, const char *name, int64_t want)
{
    int64_t v = -12345;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    CU_ASSERT_FATAL(attr >= 0);
    hid_t ftype = H5Aget_type(attr);
    CU_ASSERT_EQUAL(H5Tget_class(ftype), H5T_INTEGER);
    CU_ASSERT(H5Aread(attr, H5T_NATIVE_INT64, &v) >= 0);
    if (v != want) fprintf(stderr, "\n  attribute %s = %lld, expected %lld\n", name, (long long)v,
                           (long long)want);
    CU_ASSERT_EQUAL(v, want);
    H5Tclose(ftype);
    H5Aclose(attr);
}

/* Reads dataset loc/name, which must hold n values (a scalar is 1), as mtype. */
static void read_ds(hid_t loc, const char *name, hid_t mtype, hssize_t n, void *out)
{
    hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT);
    if (dset < 0) fprintf(stderr, "\n  no dataset %s\n", name);
    CU_ASSERT_FATAL(dset >= 0);
    hid_t space = H5Dget_space(dset);
    CU_ASSERT_EQUAL_FATAL(H5Sget_simple_extent_npoints(space), n);
    CU_ASSERT(H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Sclose(space);
    H5Dclose(dset);
}

static double ds_f64(hid_t loc, const char *name)
{
    double v = -1;
    read_ds(loc, name, H5T_NATIVE_DOUBLE, 1, &v);
    return v;
}

static int64_t ds_i64(hid_t loc, const char *name)
{
    int64_t v = -1;
    read_ds(loc, name, H5T_NATIVE_INT64, 1, &v);
    return v;
}

typedef struct {
    int datasets, with_units;
    char missing[256];
} units_walk;

static herr_t units_cb(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    units_walk *w = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    w->datasets++;
    hid_t dset = H5Oopen(obj, name, H5P_DEFAULT);
    if (dset < 0) return -1;
    char units[64] = "";
    if (H5Aexists(dset, "units") > 0) {
        read_attr_str(dset, "units", units, sizeof units);
        if (units[0]) w->with_units++;
    }
    if (!units[0] && !w->missing[0]) snprintf(w->missing, sizeof w->missing, "%s", name);
    H5Oclose(dset);
    return 0;
}

static void test_round_trip(void)
{
    static run_fixture f;
    char path[512], buf[1024], name[128];
    build_run(&f);
    test_tmp_path(path, sizeof path, "run.h5");
    TEST_OK(distq_results_write(path, &f.r));

    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);

    /* Root: format, provenance, config. */
    check_attr_str(fid, "format", "distq-results");
    check_attr_i64(fid, "version", 1);
    check_attr_i64(fid, "nranks", NRANKS);
    check_attr_str(fid, "date", "2024-05-01T10:00:00Z");
    check_attr_str(fid, "config_path", "configs/linear_ptq.ini");
    check_attr_str(fid, "config_text", CONFIG_TEXT);
    check_attr_str(fid, "model", "results/linear.h5");
    check_attr_str(fid, "quantized_model", "results/linear_int8.h5");
    check_attr_str(fid, "observer", "histogram");
    check_attr_i64(fid, "reduce_range", 1);
    check_attr_str(fid, "isa", "avx512_core_vnni");
    check_attr_str(fid, "max_isa", "avx512_core_vnni");
    check_attr_str(fid, "onednn_version", "2.6.3");
    check_attr_str(fid, "mpi_version", "Open MPI v4.1.4");
    check_attr_str(fid, "hwloc_version", "2.9.0");
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(name, sizeof name, "%u.%u.%u", maj, min, rel);
    check_attr_str(fid, "hdf5_version", name);
    read_attr_str(fid, "distq_version", buf, sizeof buf);
    CU_ASSERT_TRUE(buf[0] >= '0' && buf[0] <= '9');
    read_attr_str(fid, "git_revision", buf, sizeof buf);
    CU_ASSERT_TRUE(buf[0] != '\0');

    /* Per rank: placement and raw samples. */
    static const char *const point_names[NPOINTS] = {"fp32_bs1", "int8_bs4_serial"};
    for (int k = 0; k < NRANKS; k++) {
        snprintf(name, sizeof name, "/ranks/%d", k);
        hid_t g = H5Gopen2(fid, name, H5P_DEFAULT);
        CU_ASSERT_FATAL(g >= 0);
        check_attr_str(g, "host", HOSTS[k]);
        check_attr_i64(g, "numa_node", k == 2 ? -1 : k);
        snprintf(buf, sizeof buf, "%d-%d", 4 * k, 4 * k + 3);
        check_attr_str(g, "cpus", buf);
        check_attr_i64(g, "n_cores", 4);
        check_attr_i64(g, "threads", 4 + k);
        check_attr_str(g, "bound_by", k == 1 ? "launcher" : "distq");
        check_attr_i64(g, "oversubscribed", k == 2);
        check_attr_i64(g, "membind", k == 0);
        for (int i = 0; i < NPOINTS; i++) {
            hid_t pg = H5Gopen2(g, point_names[i], H5P_DEFAULT);
            CU_ASSERT_FATAL(pg >= 0);
            check_attr_i64(pg, "batch", i == 0 ? 1 : 4);
            check_attr_str(pg, "precision", i == 0 ? "fp32" : "int8");
            check_attr_str(pg, "concurrency", i == 0 ? "all" : "serial");
            double lat[16];
            int64_t n = iters_of(i, k);
            read_ds(pg, "latency", H5T_NATIVE_DOUBLE, n, lat);
            for (int j = 0; j < n; j++) CU_ASSERT_EQUAL(lat[j], sample(i, k, j));
            CU_ASSERT_EQUAL(ds_f64(pg, "setup_s"), 0.25 + 0.01 * k + i);
            CU_ASSERT_EQUAL(ds_f64(pg, "first_s"), 0.05 + 0.001 * k + i);
            CU_ASSERT_EQUAL(ds_f64(pg, "images_per_s"), 100.0 * (i + 1) + k);
            H5Gclose(pg);
        }
        H5Gclose(g);
    }

    /* Per point: the percentiles as given, throughput, iteration counts, run order. */
    hid_t points = H5Gopen2(fid, "points", H5P_DEFAULT);
    CU_ASSERT_FATAL(points >= 0);
    {
        hid_t attr = H5Aopen(points, "order", H5P_DEFAULT);
        CU_ASSERT_FATAL(attr >= 0);
        hid_t space = H5Aget_space(attr), mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        H5Tset_cset(mtype, H5T_CSET_UTF8);
        char *order[NPOINTS] = {NULL, NULL};
        CU_ASSERT_EQUAL_FATAL(H5Sget_simple_extent_npoints(space), NPOINTS);
        CU_ASSERT(H5Aread(attr, mtype, order) >= 0);
        for (int i = 0; i < NPOINTS; i++) {
            CU_ASSERT_STRING_EQUAL(order[i] ? order[i] : "", point_names[i]);
            H5free_memory(order[i]);
        }
        H5Tclose(mtype);
        H5Sclose(space);
        H5Aclose(attr);
    }
    for (int i = 0; i < NPOINTS; i++) {
        hid_t pg = H5Gopen2(points, point_names[i], H5P_DEFAULT);
        CU_ASSERT_FATAL(pg >= 0);
        check_attr_i64(pg, "batch", i == 0 ? 1 : 4);
        check_attr_str(pg, "precision", i == 0 ? "fp32" : "int8");
        check_attr_str(pg, "concurrency", i == 0 ? "all" : "serial");
        check_attr_i64(pg, "nranks", NRANKS);
        CU_ASSERT_EQUAL(ds_f64(pg, "p50"), 0.0125 * (i + 1));
        CU_ASSERT_EQUAL(ds_f64(pg, "p90"), 0.0150 * (i + 1));
        CU_ASSERT_EQUAL(ds_f64(pg, "p99"), 0.0199 * (i + 1));
        double ips[NRANKS], agg = 0;
        int64_t iters[NRANKS];
        read_ds(pg, "images_per_s", H5T_NATIVE_DOUBLE, NRANKS, ips);
        read_ds(pg, "iters", H5T_NATIVE_INT64, NRANKS, iters);
        for (int k = 0; k < NRANKS; k++) {
            CU_ASSERT_EQUAL(ips[k], 100.0 * (i + 1) + k);
            CU_ASSERT_EQUAL(iters[k], iters_of(i, k));
            agg += ips[k];
        }
        CU_ASSERT_EQUAL(ds_f64(pg, "aggregate_images_per_s"), agg);
        H5Gclose(pg);
    }
    H5Gclose(points);

    hid_t cal = H5Gopen2(fid, "calibration", H5P_DEFAULT);
    CU_ASSERT_FATAL(cal >= 0);
    CU_ASSERT_EQUAL(ds_f64(cal, "wall_s"), 3.5);
    CU_ASSERT_EQUAL(ds_f64(cal, "forward_s"), 2.25);
    CU_ASSERT_EQUAL(ds_f64(cal, "observe_s"), 0.75);
    CU_ASSERT_EQUAL(ds_i64(cal, "images"), 64);
    CU_ASSERT_EQUAL(ds_i64(cal, "batches"), 8);
    CU_ASSERT_EQUAL(ds_i64(cal, "reduce_bytes_per_rank"), 123456);
    CU_ASSERT_EQUAL(ds_i64(cal, "reduce_calls"), 40);
    H5Gclose(cal);

    hid_t acc = H5Gopen2(fid, "accuracy", H5P_DEFAULT);
    CU_ASSERT_FATAL(acc >= 0);
    check_attr_i64(acc, "has_labels", 1);
    CU_ASSERT_EQUAL(ds_i64(acc, "images"), 500);
    CU_ASSERT_EQUAL(ds_f64(acc, "rel_l2"), 0.0123);
    CU_ASSERT_EQUAL(ds_f64(acc, "top1_agreement"), 0.984);
    CU_ASSERT_EQUAL(ds_f64(acc, "acc_fp32"), 0.702);
    CU_ASSERT_EQUAL(ds_f64(acc, "acc_int8"), 0.698);
    H5Gclose(acc);

    /* Every dataset in the file has a non-empty "units" attribute: per rank
     * and point 4 (latency, setup_s, first_s, images_per_s), per point 6,
     * calibration 7, accuracy 5. */
    units_walk w = {0};
    CU_ASSERT(H5Ovisit(fid, H5_INDEX_NAME, H5_ITER_INC, units_cb, &w) >= 0);
    if (w.missing[0]) fprintf(stderr, "\n  dataset %s has no units\n", w.missing);
    CU_ASSERT_EQUAL(w.datasets, NRANKS * NPOINTS * 4 + NPOINTS * 6 + 7 + 5);
    CU_ASSERT_EQUAL(w.with_units, w.datasets);

    /* Results get merged by copying each run's root into one file; HDF5 <
     * 1.14.4 segfaults there if the root's string attributes went to dense
     * storage (HDFGroup/hdf5#2414), so this copy is the regression test. */
    char merged[512];
    test_tmp_path(merged, sizeof merged, "merged.h5");
    hid_t dst = H5Fcreate(merged, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(dst >= 0);
    CU_ASSERT(H5Ocopy(fid, "/", dst, "run1", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hid_t run1 = H5Gopen2(dst, "run1", H5P_DEFAULT);
    CU_ASSERT_FATAL(run1 >= 0);
    check_attr_str(run1, "format", "distq-results");
    H5Gclose(run1);
    H5Fclose(dst);
    H5Fclose(fid);
}

/* No points, no evaluation: still a valid file that describe reads. */
static void test_empty_run(void)
{
    static run_fixture f;
    char path[512];
    char *text = NULL;
    build_run(&f);
    f.r.n_points = 0;
    f.r.points = NULL;
    f.r.has_eval = 0;
    f.r.calib_images = f.r.calib_batches = 0;
    test_tmp_path(path, sizeof path, "empty.h5");
    TEST_OK(distq_results_write(path, &f.r));
    TEST_OK(distq_h5_describe(path, &text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "points (0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "not evaluated"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "calibration  none"));
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    CU_ASSERT_EQUAL(H5Lexists(fid, "accuracy", H5P_DEFAULT), 0);
    H5Fclose(fid);
    distq_free(text);
}

static void test_describe(void)
{
    static run_fixture f;
    char path[512];
    char *text = NULL;
    build_run(&f);
    test_tmp_path(path, sizeof path, "describe.h5");
    TEST_OK(distq_results_write(path, &f.r));
    TEST_OK(distq_h5_describe(path, &text));
    CU_ASSERT_FATAL(text != NULL);
    printf("\n%s", text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "distq-results version 1"));
    for (int k = 0; k < NRANKS; k++) CU_ASSERT_PTR_NOT_NULL(strstr(text, HOSTS[k]));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "images/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "launcher"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "oversubscribed"));
    /* p50/p90/p99 of the int8 point in ms, aggregate and per-rank images/s. */
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "25.000    30.000    39.800"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "603.0  200.0 201.0 202.0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "64 images in 8 batches"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "0.123 MB per rank in 40 calls"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "top-1 agreement 98.40%"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "oneDNN 2.6.3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "isa avx512_core_vnni (cap avx512_core_vnni)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "2024-05-01T10:00:00Z"));
    distq_free(text);
    text = NULL;

    /* A damaged file: describe names the file, the group and what is missing. */
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    CU_ASSERT(H5Ldelete(fid, "points/int8_bs4_serial/p90", H5P_DEFAULT) >= 0);
    H5Fclose(fid);
    TEST_ERR(distq_h5_describe(path, &text), DISTQ_ERR_FORMAT, "/points/int8_bs4_serial");
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), path));
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), "'p90'"));
    CU_ASSERT_PTR_NULL(text);
}

// --- failures ----------------------------------------------------------------------------

static int read_file(const char *path, char **data, long *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    *len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *data = malloc((size_t)*len + 1);
    size_t got = fread(*data, 1, (size_t)*len, fp);
    fclose(fp);
    return got == (size_t)*len ? 0 : -1;
}

/* Entries of dir whose name contains ".tmp.". */
static int count_tmp_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* Writes r to path in a child process whose file-size limit (2 KiB; it binds
 * root too) is too small for the file, so HDF5 fails after the temporary file
 * exists. In a child because HDF5 1.10.8 cannot close a file whose metadata
 * it failed to flush: the id stays open and H5close segfaults on it at exit,
 * so the child leaves through _exit. 0 if the write failed with
 * DISTQ_ERR_IO naming path. */
static int write_under_fsize_limit(const char *path, const distq_results *r)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        struct rlimit lim = {2048, 2048};
        signal(SIGXFSZ, SIG_IGN); /* write() fails with EFBIG instead of killing */
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(3);
        distq_status st = distq_results_write(path, r);
        int ok = st == DISTQ_ERR_IO && strstr(distq_error_message(), path) != NULL;
        if (!ok)
            fprintf(stderr, "\n  child: status %s, message \"%s\"\n", distq_status_str(st),
                    distq_error_message());
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    if (WIFSIGNALED(status)) fprintf(stderr, "\n  child: signal %d\n", WTERMSIG(status));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

static void test_write_failures(void)
{
    static run_fixture f;
    char path[1024], bad[1024], dir[512], notdir[512];
    char *before = NULL, *after = NULL;
    long n_before = 0, n_after = 0;
    build_run(&f);

    /* A path under a regular file cannot be created, even by root. */
    test_tmp_path(notdir, sizeof notdir, "plainfile");
    FILE *fp = fopen(notdir, "w");
    CU_ASSERT_FATAL(fp != NULL);
    fputs("not a directory\n", fp);
    fclose(fp);
    snprintf(bad, sizeof bad, "%s/run.h5", notdir);
    TEST_ERR(distq_results_write(bad, &f.r), DISTQ_ERR_IO, bad);
    CU_ASSERT_EQUAL(count_tmp_files(test_tmpdir()), 0);

    /* An earlier file survives failed writes byte for byte, and no temporary
     * file is left, whether the write fails before the temporary exists
     * (invalid input), after it exists (HDF5 cannot write it: the file-size
     * limit) or at the rename (a directory in the way). */
    snprintf(dir, sizeof dir, "%s/fail", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/run.h5", dir);
    TEST_OK(distq_results_write(path, &f.r));
    CU_ASSERT_EQUAL_FATAL(read_file(path, &before, &n_before), 0);

    f.pts[1].nranks = 2;
    TEST_ERR(distq_results_write(path, &f.r), DISTQ_ERR_INVALID_ARG, path);
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), "int8_bs4_serial"));
    f.pts[1].nranks = NRANKS;
    f.pts[1].batch = 1;
    f.pts[1].concurrency[0] = 'a', f.pts[1].concurrency[1] = 'l', f.pts[1].concurrency[2] = 'l';
    f.pts[1].concurrency[3] = '\0';
    snprintf(f.pts[1].precision, sizeof f.pts[1].precision, "fp32");
    TEST_ERR(distq_results_write(path, &f.r), DISTQ_ERR_INVALID_ARG, "both fp32_bs1");
    build_run(&f);

    CU_ASSERT_EQUAL(write_under_fsize_limit(path, &f.r), 0);
    CU_ASSERT_EQUAL(count_tmp_files(dir), 0);

    CU_ASSERT_EQUAL_FATAL(read_file(path, &after, &n_after), 0);
    CU_ASSERT_EQUAL(n_after, n_before);
    CU_ASSERT_TRUE(n_after == n_before && memcmp(before, after, (size_t)n_before) == 0);
    free(after);
    after = NULL;

    snprintf(bad, sizeof bad, "%s/isadir.h5", dir);
    mkdir(bad, 0755);
    TEST_ERR(distq_results_write(bad, &f.r), DISTQ_ERR_IO, "cannot rename");
    CU_ASSERT_EQUAL(count_tmp_files(dir), 0);

    CU_ASSERT_EQUAL_FATAL(read_file(path, &after, &n_after), 0);
    CU_ASSERT_TRUE(n_after == n_before && memcmp(before, after, (size_t)n_before) == 0);
    free(before);
    free(after);

    /* NULL arguments. */
    TEST_ERR(distq_results_write(NULL, &f.r), DISTQ_ERR_INVALID_ARG, "NULL");
    TEST_ERR(distq_results_write(path, NULL), DISTQ_ERR_INVALID_ARG, "NULL");
}

/* distq_results_free releases a run built the way the run job builds it. */
static void test_free(void)
{
    distq_results r = {0};
    r.nranks = 2;
    r.placement = distq_calloc(2 * sizeof *r.placement);
    r.n_points = 1;
    r.points = distq_calloc(sizeof *r.points);
    CU_ASSERT_FATAL(r.placement && r.points);
    distq_bench_point *pt = &r.points[0];
    pt->nranks = 2;
    pt->iters = distq_calloc(2 * sizeof *pt->iters);
    pt->samples_s = distq_calloc(2 * sizeof *pt->samples_s);
    pt->setup_s = distq_calloc(2 * sizeof(double));
    pt->first_s = distq_calloc(2 * sizeof(double));
    pt->images_per_s = distq_calloc(2 * sizeof(double));
    for (int k = 0; k < 2; k++) pt->samples_s[k] = distq_calloc(4 * sizeof(double));
    distq_results_free(&r);
    CU_ASSERT_PTR_NULL(r.points);
    CU_ASSERT_PTR_NULL(r.placement);
    CU_ASSERT_EQUAL(r.n_points, 0);
    distq_results_free(&r); /* twice is harmless */
    distq_results_free(NULL);
}

/* distq_results_read returns every field the writer was given, samples included. */
static void test_read_back(void)
{
    static run_fixture f;
    char path[512];
    distq_results r;
    build_run(&f);
    test_tmp_path(path, sizeof path, "read_back.h5");
    TEST_OK(distq_results_write(path, &f.r));
    TEST_OK(distq_results_read(path, &r));
    CU_ASSERT_EQUAL_FATAL(r.nranks, NRANKS);
    for (int k = 0; k < NRANKS; k++) {
        const distq_placement *a = &f.pl[k], *b = &r.placement[k];
        CU_ASSERT_STRING_EQUAL(b->host, a->host);
        CU_ASSERT_STRING_EQUAL(b->cpus, a->cpus);
        CU_ASSERT_STRING_EQUAL(b->bound_by, a->bound_by);
        CU_ASSERT_EQUAL(b->numa_node, a->numa_node);
        CU_ASSERT_EQUAL(b->n_cores, a->n_cores);
        CU_ASSERT_EQUAL(b->threads, a->threads);
        CU_ASSERT_EQUAL(b->oversubscribed, a->oversubscribed);
        CU_ASSERT_EQUAL(b->membind, a->membind);
    }
    CU_ASSERT_EQUAL_FATAL(r.n_points, NPOINTS);
    for (int i = 0; i < NPOINTS; i++) {
        const distq_bench_point *a = &f.pts[i], *b = &r.points[i]; /* run order kept */
        CU_ASSERT_EQUAL(b->batch, a->batch);
        CU_ASSERT_STRING_EQUAL(b->precision, a->precision);
        CU_ASSERT_STRING_EQUAL(b->concurrency, a->concurrency);
        CU_ASSERT_EQUAL(b->nranks, NRANKS);
        CU_ASSERT_EQUAL(b->p50_s, a->p50_s); /* f64 in the file: exact */
        CU_ASSERT_EQUAL(b->p90_s, a->p90_s);
        CU_ASSERT_EQUAL(b->p99_s, a->p99_s);
        CU_ASSERT_EQUAL(b->aggregate_images_per_s, a->aggregate_images_per_s);
        for (int k = 0; k < NRANKS; k++) {
            CU_ASSERT_EQUAL_FATAL(b->iters[k], a->iters[k]);
            CU_ASSERT_EQUAL(memcmp(b->samples_s[k], a->samples_s[k], (size_t)a->iters[k] * sizeof(double)), 0);
            CU_ASSERT_EQUAL(b->setup_s[k], a->setup_s[k]);
            CU_ASSERT_EQUAL(b->first_s[k], a->first_s[k]);
            CU_ASSERT_EQUAL(b->images_per_s[k], a->images_per_s[k]);
        }
    }
    CU_ASSERT_EQUAL(r.calib_wall_s, f.r.calib_wall_s);
    CU_ASSERT_EQUAL(r.calib_forward_s, f.r.calib_forward_s);
    CU_ASSERT_EQUAL(r.calib_observe_s, f.r.calib_observe_s);
    CU_ASSERT_EQUAL(r.calib_images, f.r.calib_images);
    CU_ASSERT_EQUAL(r.calib_batches, f.r.calib_batches);
    CU_ASSERT_EQUAL(r.reduce_bytes, f.r.reduce_bytes);
    CU_ASSERT_EQUAL(r.reduce_calls, f.r.reduce_calls);
    CU_ASSERT_EQUAL(r.reduce_range, 1);
    CU_ASSERT_STRING_EQUAL(r.observer, "histogram");
    CU_ASSERT_EQUAL_FATAL(r.has_eval, 1);
    CU_ASSERT_EQUAL(r.eval.images, 500);
    CU_ASSERT_EQUAL(r.eval.rel_l2, f.r.eval.rel_l2);
    CU_ASSERT_EQUAL(r.eval.top1_agreement, f.r.eval.top1_agreement);
    CU_ASSERT_EQUAL(r.eval.has_labels, 1);
    CU_ASSERT_EQUAL(r.eval.acc_fp32, f.r.eval.acc_fp32);
    CU_ASSERT_EQUAL(r.eval.acc_int8, f.r.eval.acc_int8);
    CU_ASSERT_STRING_EQUAL(r.config_path, f.r.config_path);
    CU_ASSERT_STRING_EQUAL(r.config_text, CONFIG_TEXT);
    CU_ASSERT_STRING_EQUAL(r.model_path, f.r.model_path);
    CU_ASSERT_STRING_EQUAL(r.quantized_path, f.r.quantized_path);
    CU_ASSERT_STRING_EQUAL(r.isa, "avx512_core_vnni");
    CU_ASSERT_STRING_EQUAL(r.max_isa, "avx512_core_vnni");
    CU_ASSERT_STRING_EQUAL(r.onednn_version, "2.6.3");
    CU_ASSERT_STRING_EQUAL(r.mpi_version, "Open MPI v4.1.4");
    CU_ASSERT_STRING_EQUAL(r.hwloc_version, "2.9.0");
    CU_ASSERT_STRING_EQUAL(r.date, "2024-05-01T10:00:00Z");
    CU_ASSERT(r.distq_version[0] >= '0' && r.distq_version[0] <= '9'); /* this build's, written by the writer */
    CU_ASSERT(r.hdf5_version[0] >= '1' && r.hdf5_version[0] <= '9');
    distq_results_free(&r);

    /* A rank's samples gone: the reader names the file and the group. */
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(fid >= 0);
    CU_ASSERT(H5Ldelete(fid, "ranks/2/fp32_bs1/latency", H5P_DEFAULT) >= 0);
    H5Fclose(fid);
    TEST_ERR(distq_results_read(path, &r), DISTQ_ERR_FORMAT, "/ranks/2/fp32_bs1");
    CU_ASSERT_PTR_NOT_NULL(strstr(distq_error_message(), "'latency'"));
    CU_ASSERT_PTR_NULL(r.placement); /* freed on failure */
    CU_ASSERT_PTR_NULL(r.points);
}

/* The results writer and its reader (describe) with every distq allocation
 * failing in turn (test_alloc_sweep); a failed write leaves no file. */
typedef struct {
    run_fixture *f;
    char path[512];
    char *text;
    distq_results read;
} results_ctx;

static distq_status write_results(void *ctx)
{
    results_ctx *c = ctx;
    return distq_results_write(c->path, &c->f->r);
}

static distq_status describe_results_file(void *ctx)
{
    results_ctx *c = ctx;
    return distq_h5_describe(c->path, &c->text);
}

static distq_status read_results_file(void *ctx)
{
    results_ctx *c = ctx;
    return distq_results_read(c->path, &c->read);
}

static void drop_read(void *ctx)
{
    results_ctx *c = ctx;
    distq_results_free(&c->read);
}

static void drop_results(void *ctx)
{
    results_ctx *c = ctx;
    distq_free(c->text);
    c->text = NULL;
}

static void test_alloc_sweeps(void)
{
    static run_fixture f;
    build_run(&f);
    results_ctx c = {.f = &f};
    test_tmp_path(c.path, sizeof c.path, "alloc_run.h5");
    remove(c.path);
    test_alloc_sweep("results writer", write_results, drop_results, &c);
    test_alloc_sweep("results describe", describe_results_file, drop_results, &c);
    test_alloc_sweep("results reader", read_results_file, drop_read, &c);
    test_assert_no_open_hdf5();
}

int main(void)
{
    static const test_case cases[] = {
        {"write, read back with HDF5, units everywhere", test_round_trip},
        {"every allocation of write and describe fails in turn", test_alloc_sweeps},
        {"a run without points or evaluation", test_empty_run},
        {"describe prints the table", test_describe},
        {"read back: every field, samples included", test_read_back},
        {"failed writes name the path, keep the old file, leave no tmp", test_write_failures},
        {"results_free", test_free},
        {"no HDF5 handles left open", test_assert_no_open_hdf5},
    };
    return test_run_suite("results_io", cases, sizeof cases / sizeof cases[0]);
}
