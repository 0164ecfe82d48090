/*
 * Results files (format "distq-results"; layout in docs/file-formats.md,
 * "Results files"), written once by rank 0 at the end of `distq run`:
 *
 *     /                         format, version, nranks, provenance, config text
 *     /ranks/<r>                placement: host, numa_node, cpus, n_cores, threads,
 *                               bound_by, oversubscribed, membind
 *     /ranks/<r>/<point>        latency [iters] raw samples; setup_s, first_s,
 *                               images_per_s
 *     /points/<point>           p50, p90, p99, images_per_s [nranks],
 *                               aggregate_images_per_s, iters [nranks]
 *     /calibration              wall_s, forward_s, observe_s, images, batches,
 *                               reduce_bytes_per_rank, reduce_calls
 *     /accuracy                 (only with an evaluation) images, rel_l2,
 *                               top1_agreement [, acc_fp32, acc_int8]
 *
 * <point> is "<precision>_bs<batch>" ("int8_bs50"), with "_<concurrency>"
 * appended unless the ranks ran all at once ("int8_bs50_serial"). Every
 * dataset has a "units" attribute. Numbers are written as given: the
 * percentiles are the caller's (distq_bench_point_run), not recomputed here.
 * distq_results_read below is the library's one reader of the layout
 * (distq inspect formats what it returns); scripts/plot_results.py reads the
 * files with h5py.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "distq/results.h"
#include "distq/tensor.h"
#include "io/h5_util_impl.h"
#include "io/model_io_impl.h"

#ifndef DISTQ_VERSION
#error "DISTQ_VERSION is defined by CMake for distq_lib's sources"
#endif
#ifndef DISTQ_GIT_REVISION
#error "DISTQ_GIT_REVISION is defined by CMake for distq_lib's sources"
#endif

/* Capacity for one point's link name: precision[8] + "_bs" + int64 + "_" + concurrency[8]. */
#define POINT_NAME_MAX 64

// --- helpers ------------------------------------------------------------------------

/* A fixed-size char field of a struct as a terminated string (the field may
 * be full without a terminator). buf has room for cap + 1 bytes. */
static const char *field_str(char *buf, const char *field, size_t cap)
{
    size_t n = strnlen(field, cap);
    memcpy(buf, field, n);
    buf[n] = '\0';
    return buf;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

static distq_status create_group(hid_t loc, const char *name, hid_t *out, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t gcpl = H5I_INVALID_HID;
    *out = H5I_INVALID_HID;
    DISTQ_CHECK(distq_h5_compact_gcpl(&gcpl, where));
    DISTQ_H5_CHECK(*out = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT), DISTQ_ERR_IO,
                   "%s: cannot create group '%s'", where, name);
cleanup:
    distq_h5_close(&gcpl);
    return st;
}

/* Writes loc/name (rank 0 = scalar) with its "units" attribute and, if
 * meaning is not NULL, a "meaning" attribute. where names loc. */
static distq_status write_dataset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                                  const int64_t *dims, const void *data, const char *units,
                                  const char *meaning, const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t dset = H5I_INVALID_HID;
    char dwhere[DISTQ_H5_WHERE_MAX];
    snprintf(dwhere, sizeof dwhere, "%s/%s", where, name);
    DISTQ_CHECK(distq_h5_write_array(loc, name, ftype, mtype, ndim, dims, data, where));
    DISTQ_H5_CHECK(dset = H5Dopen2(loc, name, H5P_DEFAULT), DISTQ_ERR_IO, "%s: cannot reopen",
                   dwhere);
    DISTQ_CHECK(distq_h5_attr_write_str(dset, "units", units, dwhere));
    if (meaning) DISTQ_CHECK(distq_h5_attr_write_str(dset, "meaning", meaning, dwhere));
cleanup:
    distq_h5_close(&dset);
    return st;
}

static distq_status write_f64(hid_t loc, const char *name, double v, const char *units,
                              const char *meaning, const char *where)
{
    return write_dataset(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, &v, units, meaning,
                         where);
}

static distq_status write_i64(hid_t loc, const char *name, int64_t v, const char *units,
                              const char *meaning, const char *where)
{
    return write_dataset(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &v, units, meaning,
                         where);
}

static distq_status attr_i64(hid_t loc, const char *name, int64_t v, const char *where)
{
    return distq_h5_attr_write_i64(loc, name, 0, &v, where);
}

/* Like distq_h5_create_tmp, but the root group keeps up to 32 attributes in
 * compact storage: a results file has 17 root attributes, above HDF5's
 * default of 8, and HDF5 before 1.14.4 segfaults copying an object whose
 * variable-length string attributes are dense (HDFGroup/hdf5#2414) -- and
 * copying the root of several runs' files into one is how results get
 * merged (h5copy -s /, h5py Group.copy). */
static distq_status create_tmp_compact_root(const char *path, char *tmp, hid_t *out)
{
    distq_status st = DISTQ_OK;
    hid_t fcpl = H5I_INVALID_HID;
    *out = H5I_INVALID_HID;
    tmp[0] = '\0';
    DISTQ_H5_CHECK(fcpl = H5Pcreate(H5P_FILE_CREATE), DISTQ_ERR_IO, "%s: H5Pcreate", path);
    DISTQ_H5_CHECK(H5Pset_attr_phase_change(fcpl, 32, 24), DISTQ_ERR_IO,
                   "%s: H5Pset_attr_phase_change", path);
    /* compact root: its many provenance attributes stay in the object header */
    DISTQ_CHECK(distq_h5_create_tmp_fcpl(path, DISTQ_RESULTS_FORMAT, DISTQ_RESULTS_VERSION, fcpl, tmp, out));
cleanup:
    distq_h5_close(&fcpl);
    return st;
}

// --- validation ---------------------------------------------------------------------

static void point_name(const distq_bench_point *pt, char *buf, size_t len)
{
    char prec[sizeof pt->precision + 1], conc[sizeof pt->concurrency + 1];
    field_str(prec, pt->precision, sizeof pt->precision);
    field_str(conc, pt->concurrency, sizeof pt->concurrency);
    if (strcmp(conc, "all") == 0)
        snprintf(buf, len, "%s_bs%lld", prec, (long long)pt->batch);
    else
        snprintf(buf, len, "%s_bs%lld_%s", prec, (long long)pt->batch, conc);
}

/* Everything the layout relies on, before a temporary file exists. */
static distq_status check_results(const char *path, const distq_results *r,
                                  char (*names)[POINT_NAME_MAX])
{
    if (r->nranks < 1 || !r->placement)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: results with %d rank(s)%s", path,
                               r->nranks, r->placement ? "" : " and no placement");
    if (r->n_points < 0 || (r->n_points > 0 && !r->points))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: results with %d point(s) and %s", path,
                               r->n_points, r->points ? "points" : "no points array");
    for (int i = 0; i < r->n_points; i++) {
        const distq_bench_point *pt = &r->points[i];
        char prec[sizeof pt->precision + 1], conc[sizeof pt->concurrency + 1];
        field_str(prec, pt->precision, sizeof pt->precision);
        field_str(conc, pt->concurrency, sizeof pt->concurrency);
        if (!distq_h5_name_ok(prec) || !distq_h5_name_ok(conc))
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "%s: point %d has precision '%s' and concurrency '%s' "
                                   "(both must be non-empty, without '/')",
                                   path, i, prec, conc);
        point_name(pt, names[i], POINT_NAME_MAX);
        if (pt->nranks != r->nranks)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: point %s has %d rank(s), the run %d",
                                   path, names[i], pt->nranks, r->nranks);
        if (!pt->iters || !pt->samples_s || !pt->setup_s || !pt->first_s || !pt->images_per_s)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: point %s has a NULL per-rank array",
                                   path, names[i]);
        for (int k = 0; k < pt->nranks; k++)
            if (pt->iters[k] < 0 || (pt->iters[k] > 0 && !pt->samples_s[k]))
                return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                       "%s: point %s, rank %d: %lld samples%s", path, names[i],
                                       k, (long long)pt->iters[k],
                                       pt->iters[k] < 0 ? "" : " but no sample array");
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                       "%s: points %d and %d are both %s (batch, precision and "
                                       "concurrency must differ)",
                                       path, j, i, names[i]);
    }
    return DISTQ_OK;
}

// --- sections -------------------------------------------------------------------------

static distq_status write_root(hid_t fid, const distq_results *r, const char *path)
{
    distq_status st = DISTQ_OK;
    unsigned maj = 0, min = 0, rel = 0;
    char h5ver[32], buf[160];
    DISTQ_H5_CHECK(H5get_libversion(&maj, &min, &rel), DISTQ_ERR_IO, "%s: H5get_libversion",
                   path);
    snprintf(h5ver, sizeof h5ver, "%u.%u.%u", maj, min, rel);
    DISTQ_CHECK(attr_i64(fid, "nranks", r->nranks, path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "date", field_str(buf, r->date, sizeof r->date),
                                        path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "distq_version", DISTQ_VERSION, path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "git_revision", DISTQ_GIT_REVISION, path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "hdf5_version", h5ver, path));
    DISTQ_CHECK(distq_h5_attr_write_str(
        fid, "onednn_version", field_str(buf, r->onednn_version, sizeof r->onednn_version), path));
    DISTQ_CHECK(distq_h5_attr_write_str(
        fid, "mpi_version", field_str(buf, r->mpi_version, sizeof r->mpi_version), path));
    DISTQ_CHECK(distq_h5_attr_write_str(
        fid, "hwloc_version", field_str(buf, r->hwloc_version, sizeof r->hwloc_version), path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "isa", field_str(buf, r->isa, sizeof r->isa), path));
    field_str(buf, r->max_isa, sizeof r->max_isa);
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "max_isa", buf[0] ? buf : "none", path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "config_path", or_empty(r->config_path), path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "config_text", or_empty(r->config_text), path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "model", or_empty(r->model_path), path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "quantized_model", or_empty(r->quantized_path), path));
    DISTQ_CHECK(distq_h5_attr_write_str(fid, "observer",
                                        field_str(buf, r->observer, sizeof r->observer), path));
    DISTQ_CHECK(attr_i64(fid, "reduce_range", r->reduce_range, path));
cleanup:
    return st;
}

/* batch, precision, concurrency on a point group (under /ranks or /points). */
static distq_status write_point_attrs(hid_t grp, const distq_bench_point *pt, const char *where)
{
    distq_status st = DISTQ_OK;
    char prec[sizeof pt->precision + 1], conc[sizeof pt->concurrency + 1];
    DISTQ_CHECK(attr_i64(grp, "batch", pt->batch, where));
    DISTQ_CHECK(distq_h5_attr_write_str(
        grp, "precision", field_str(prec, pt->precision, sizeof pt->precision), where));
    DISTQ_CHECK(distq_h5_attr_write_str(
        grp, "concurrency", field_str(conc, pt->concurrency, sizeof pt->concurrency), where));
cleanup:
    return st;
}

static distq_status write_rank(hid_t ranks, int k, const distq_results *r,
                               char (*names)[POINT_NAME_MAX], const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID, pg = H5I_INVALID_HID;
    const distq_placement *pl = &r->placement[k];
    char name[32], where[DISTQ_H5_WHERE_MAX], pwhere[DISTQ_H5_WHERE_MAX + POINT_NAME_MAX + 1];
    char buf[sizeof pl->host + sizeof pl->cpus + 1];
    snprintf(name, sizeof name, "%d", k);
    snprintf(where, sizeof where, "%s: /ranks/%d", path, k);
    DISTQ_CHECK(create_group(ranks, name, &grp, where));
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "host", field_str(buf, pl->host, sizeof pl->host),
                                        where));
    DISTQ_CHECK(attr_i64(grp, "numa_node", pl->numa_node, where));
    DISTQ_CHECK(distq_h5_attr_write_str(grp, "cpus", field_str(buf, pl->cpus, sizeof pl->cpus),
                                        where));
    DISTQ_CHECK(attr_i64(grp, "n_cores", pl->n_cores, where));
    DISTQ_CHECK(attr_i64(grp, "threads", pl->threads, where));
    DISTQ_CHECK(distq_h5_attr_write_str(
        grp, "bound_by", field_str(buf, pl->bound_by, sizeof pl->bound_by), where));
    DISTQ_CHECK(attr_i64(grp, "oversubscribed", pl->oversubscribed != 0, where));
    DISTQ_CHECK(attr_i64(grp, "membind", pl->membind != 0, where));

    for (int i = 0; i < r->n_points; i++) {
        const distq_bench_point *pt = &r->points[i];
        snprintf(pwhere, sizeof pwhere, "%s/%s", where, names[i]);
        DISTQ_CHECK(create_group(grp, names[i], &pg, pwhere));
        DISTQ_CHECK(write_point_attrs(pg, pt, pwhere));
        DISTQ_CHECK(write_dataset(pg, "latency", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1,
                                  &pt->iters[k], pt->samples_s[k], "s",
                                  "one inference of the whole batch per sample, in run order",
                                  pwhere));
        DISTQ_CHECK(write_f64(pg, "setup_s", pt->setup_s[k], "s",
                              "executor creation (weights prepacked)", pwhere));
        DISTQ_CHECK(write_f64(pg, "first_s", pt->first_s[k], "s", "the first inference", pwhere));
        DISTQ_CHECK(write_f64(pg, "images_per_s", pt->images_per_s[k], "images/s",
                              "batch * iters / sum(latency)", pwhere));
        distq_h5_close(&pg);
    }
cleanup:
    distq_h5_close(&pg);
    distq_h5_close(&grp);
    return st;
}

static distq_status write_point(hid_t points, const distq_bench_point *pt, const char *name,
                                const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    int64_t n = pt->nranks;
    snprintf(where, sizeof where, "%s: /points/%s", path, name);
    DISTQ_CHECK(create_group(points, name, &grp, where));
    DISTQ_CHECK(write_point_attrs(grp, pt, where));
    DISTQ_CHECK(attr_i64(grp, "nranks", pt->nranks, where));
    DISTQ_CHECK(write_f64(grp, "p50", pt->p50_s, "s", "median latency over all ranks' samples",
                          where));
    DISTQ_CHECK(write_f64(grp, "p90", pt->p90_s, "s",
                          "90th percentile latency over all ranks' samples", where));
    DISTQ_CHECK(write_f64(grp, "p99", pt->p99_s, "s",
                          "99th percentile latency over all ranks' samples", where));
    DISTQ_CHECK(write_dataset(grp, "images_per_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n,
                              pt->images_per_s, "images/s", "per rank", where));
    DISTQ_CHECK(write_f64(grp, "aggregate_images_per_s", pt->aggregate_images_per_s, "images/s",
                          "sum over ranks", where));
    DISTQ_CHECK(write_dataset(grp, "iters", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, pt->iters,
                              "count", "latency samples per rank", where));
cleanup:
    distq_h5_close(&grp);
    return st;
}

static distq_status write_calibration(hid_t fid, const distq_results *r, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    snprintf(where, sizeof where, "%s: /calibration", path);
    DISTQ_CHECK(create_group(fid, "calibration", &grp, where));
    DISTQ_CHECK(write_f64(grp, "wall_s", r->calib_wall_s, "s", "the whole calibration", where));
    DISTQ_CHECK(write_f64(grp, "forward_s", r->calib_forward_s, "s",
                          "rank 0's time in forward passes", where));
    DISTQ_CHECK(write_f64(grp, "observe_s", r->calib_observe_s, "s",
                          "rank 0's time feeding observers", where));
    DISTQ_CHECK(write_i64(grp, "images", r->calib_images, "count", "over all ranks", where));
    DISTQ_CHECK(write_i64(grp, "batches", r->calib_batches, "count", "global batches", where));
    DISTQ_CHECK(write_i64(grp, "reduce_bytes_per_rank", r->reduce_bytes, "bytes",
                          "observer state each rank passed to all-reduces", where));
    DISTQ_CHECK(write_i64(grp, "reduce_calls", r->reduce_calls, "count",
                          "all-reduces of observer state", where));
cleanup:
    distq_h5_close(&grp);
    return st;
}

static distq_status write_accuracy(hid_t fid, const distq_eval_report *e, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    snprintf(where, sizeof where, "%s: /accuracy", path);
    DISTQ_CHECK(create_group(fid, "accuracy", &grp, where));
    DISTQ_CHECK(attr_i64(grp, "has_labels", e->has_labels != 0, where));
    DISTQ_CHECK(write_i64(grp, "images", e->images, "count", "held-out images evaluated", where));
    DISTQ_CHECK(write_f64(grp, "rel_l2", e->rel_l2, "1",
                          "||int8 - fp32|| / ||fp32|| over all logits", where));
    DISTQ_CHECK(write_f64(grp, "top1_agreement", e->top1_agreement, "fraction",
                          "images whose int8 and fp32 argmax agree", where));
    if (e->has_labels) {
        DISTQ_CHECK(write_f64(grp, "acc_fp32", e->acc_fp32, "fraction", "top-1 accuracy, fp32",
                              where));
        DISTQ_CHECK(write_f64(grp, "acc_int8", e->acc_int8, "fraction", "top-1 accuracy, int8",
                              where));
    }
cleanup:
    distq_h5_close(&grp);
    return st;
}

// --- entry points -----------------------------------------------------------------------

distq_status distq_results_write(const char *path, const distq_results *r)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    char tmp[DISTQ_H5_WHERE_MAX] = "", where[DISTQ_H5_WHERE_MAX];
    char (*names)[POINT_NAME_MAX] = NULL;
    const char **order = NULL;
    if (!path || !r)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_results_write: NULL argument");
    names = distq_malloc((size_t)(r->n_points > 0 ? r->n_points : 1) * sizeof *names);
    order = distq_malloc((size_t)(r->n_points > 0 ? r->n_points : 1) * sizeof *order);
    if (!names || !order) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    DISTQ_CHECK(check_results(path, r, names));

    DISTQ_CHECK(create_tmp_compact_root(path, tmp, &fid));
    DISTQ_CHECK(write_root(fid, r, path));

    snprintf(where, sizeof where, "%s: /ranks", path);
    DISTQ_CHECK(create_group(fid, "ranks", &grp, where));
    for (int k = 0; k < r->nranks; k++) DISTQ_CHECK(write_rank(grp, k, r, names, path));
    distq_h5_close(&grp);

    snprintf(where, sizeof where, "%s: /points", path);
    DISTQ_CHECK(create_group(fid, "points", &grp, where));
    /* Run order; HDF5 lists groups by name. */
    for (int i = 0; i < r->n_points; i++) order[i] = names[i];
    DISTQ_CHECK(distq_h5_attr_write_strs(grp, "order", r->n_points, order, where));
    for (int i = 0; i < r->n_points; i++)
        DISTQ_CHECK(write_point(grp, &r->points[i], names[i], path));
    distq_h5_close(&grp);

    DISTQ_CHECK(write_calibration(fid, r, path));
    if (r->has_eval) DISTQ_CHECK(write_accuracy(fid, &r->eval, path));
    DISTQ_CHECK(distq_h5_commit(&fid, tmp, path));
cleanup:
    distq_h5_close(&grp);
    if (st != DISTQ_OK) distq_h5_discard(&fid, tmp);
    distq_free(order);
    distq_free(names);
    return st;
}

// --- reading back ---------------------------------------------------------------------

/* Dataset loc/name of exactly n values (a scalar counts as 1) as mtype. */
static distq_status read_values(hid_t loc, const char *name, hid_t mtype, int64_t n, void *out,
                                const char *where)
{
    distq_status st = DISTQ_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hssize_t np;
    htri_t has;
    DISTQ_H5_CHECK(has = H5Lexists(loc, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up '%s'", where, name);
    if (!has) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: missing dataset '%s'", where, name);
        goto cleanup;
    }
    DISTQ_H5_CHECK(dset = H5Dopen2(loc, name, H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: '%s' is not a dataset", where, name);
    DISTQ_H5_CHECK(space = H5Dget_space(dset), DISTQ_ERR_FORMAT,
                   "%s: cannot read the shape of '%s'", where, name);
    DISTQ_H5_CHECK(np = H5Sget_simple_extent_npoints(space), DISTQ_ERR_FORMAT,
                   "%s: cannot read the shape of '%s'", where, name);
    if (np != n) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: dataset '%s' has %lld values, expected %lld",
                             where, name, (long long)np, (long long)n);
        goto cleanup;
    }
    if (n > 0)
        DISTQ_H5_CHECK(H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), DISTQ_ERR_FORMAT,
                       "%s: cannot read '%s'", where, name);
cleanup:
    distq_h5_close(&space);
    distq_h5_close(&dset);
    return st;
}

static distq_status read_f64(hid_t loc, const char *name, double *v, const char *where)
{
    return read_values(loc, name, H5T_NATIVE_DOUBLE, 1, v, where);
}

static distq_status read_i64(hid_t loc, const char *name, int64_t *v, const char *where)
{
    return read_values(loc, name, H5T_NATIVE_INT64, 1, v, where);
}

static distq_status read_int(hid_t loc, const char *name, int *v, const char *where)
{
    int64_t x = 0;
    distq_status st = distq_h5_attr_read_i64(loc, name, 1, 1, &x, NULL, where);
    if (st == DISTQ_OK) *v = (int)x;
    return st;
}

/* A scalar string attribute into buf[len], or `fallback` if loc lacks it
 * (files written before the attribute existed). */
static distq_status read_str_or(hid_t loc, const char *name, char *buf, size_t len,
                                const char *fallback, const char *where)
{
    distq_status st = DISTQ_OK;
    htri_t has;
    DISTQ_H5_CHECK(has = H5Aexists(loc, name), DISTQ_ERR_FORMAT,
                   "%s: cannot look up attribute '%s'", where, name);
    if (has) DISTQ_CHECK(distq_h5_attr_read_str(loc, name, buf, len, where));
    else snprintf(buf, len, "%s", fallback);
cleanup:
    return st;
}

static distq_status read_root(hid_t fid, distq_results *r, const char *path)
{
    distq_status st = DISTQ_OK;
    const char *const long_keys[4] = {"config_path", "config_text", "model", "quantized_model"};
    const char **long_vals[4] = {&r->config_path, &r->config_text, &r->model_path, &r->quantized_path};
    DISTQ_CHECK(distq_h5_check_format(fid, path, DISTQ_RESULTS_FORMAT, DISTQ_RESULTS_VERSION));
    DISTQ_CHECK(read_int(fid, "nranks", &r->nranks, path));
    if (r->nranks < 1 || r->nranks > (1 << 20)) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: root attribute nranks is %d", path, r->nranks);
        goto cleanup;
    }
    DISTQ_CHECK(read_int(fid, "reduce_range", &r->reduce_range, path));
    DISTQ_CHECK(read_str_or(fid, "date", r->date, sizeof r->date, "?", path));
    DISTQ_CHECK(read_str_or(fid, "distq_version", r->distq_version, sizeof r->distq_version, "?", path));
    DISTQ_CHECK(read_str_or(fid, "git_revision", r->git_revision, sizeof r->git_revision, "?", path));
    DISTQ_CHECK(read_str_or(fid, "hdf5_version", r->hdf5_version, sizeof r->hdf5_version, "?", path));
    DISTQ_CHECK(read_str_or(fid, "onednn_version", r->onednn_version, sizeof r->onednn_version, "?", path));
    DISTQ_CHECK(read_str_or(fid, "mpi_version", r->mpi_version, sizeof r->mpi_version, "?", path));
    DISTQ_CHECK(read_str_or(fid, "hwloc_version", r->hwloc_version, sizeof r->hwloc_version, "?", path));
    DISTQ_CHECK(read_str_or(fid, "isa", r->isa, sizeof r->isa, "?", path));
    DISTQ_CHECK(read_str_or(fid, "max_isa", r->max_isa, sizeof r->max_isa, "none", path));
    DISTQ_CHECK(read_str_or(fid, "observer", r->observer, sizeof r->observer, "?", path));
    for (int i = 0; i < 4; i++) {
        htri_t has;
        int n = 0;
        DISTQ_H5_CHECK(has = H5Aexists(fid, long_keys[i]), DISTQ_ERR_FORMAT,
                       "%s: cannot look up attribute '%s'", path, long_keys[i]);
        if (!has) continue;
        DISTQ_CHECK(distq_h5_attr_read_strlist(fid, long_keys[i], 1, 1, &r->owned_strings[i], &n, path));
        *long_vals[i] = r->owned_strings[i][0];
    }
cleanup:
    return st;
}

static distq_status read_rank(hid_t ranks, int k, distq_placement *pl, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char name[32], full[64], where[DISTQ_H5_WHERE_MAX];
    snprintf(name, sizeof name, "%d", k);
    snprintf(full, sizeof full, "/ranks/%d", k);
    snprintf(where, sizeof where, "%s: %s", path, full);
    DISTQ_CHECK(distq_h5_open_group(ranks, name, path, full, &grp));
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "host", pl->host, sizeof pl->host, where));
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "cpus", pl->cpus, sizeof pl->cpus, where));
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "bound_by", pl->bound_by, sizeof pl->bound_by, where));
    DISTQ_CHECK(read_int(grp, "numa_node", &pl->numa_node, where));
    DISTQ_CHECK(read_int(grp, "n_cores", &pl->n_cores, where));
    DISTQ_CHECK(read_int(grp, "threads", &pl->threads, where));
    DISTQ_CHECK(read_int(grp, "oversubscribed", &pl->oversubscribed, where));
    DISTQ_CHECK(read_int(grp, "membind", &pl->membind, where));
cleanup:
    distq_h5_close(&grp);
    return st;
}

/* Rank k's samples of point `name` (/ranks/<k>/<name>). */
static distq_status read_rank_point(hid_t ranks, int k, const char *name, distq_bench_point *pt,
                                    const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char rel[POINT_NAME_MAX + 32], full[POINT_NAME_MAX + 40], where[DISTQ_H5_WHERE_MAX];
    snprintf(rel, sizeof rel, "%d/%s", k, name);
    snprintf(full, sizeof full, "/ranks/%s", rel);
    snprintf(where, sizeof where, "%s: %s", path, full);
    DISTQ_CHECK(distq_h5_open_group(ranks, rel, path, full, &grp));
    if (pt->iters[k] < 0 || pt->iters[k] > ((int64_t)1 << 32)) {
        st = distq_error_set(DISTQ_ERR_FORMAT, "%s: %lld samples", where, (long long)pt->iters[k]);
        goto cleanup;
    }
    if (!(pt->samples_s[k] = distq_malloc((size_t)(pt->iters[k] ? pt->iters[k] : 1) * sizeof(double)))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
        goto cleanup;
    }
    DISTQ_CHECK(read_values(grp, "latency", H5T_NATIVE_DOUBLE, pt->iters[k], pt->samples_s[k], where));
    DISTQ_CHECK(read_f64(grp, "setup_s", &pt->setup_s[k], where));
    DISTQ_CHECK(read_f64(grp, "first_s", &pt->first_s[k], where));
cleanup:
    distq_h5_close(&grp);
    return st;
}

static distq_status read_point(hid_t points, hid_t ranks, const char *name, int nranks,
                               distq_bench_point *pt, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char full[POINT_NAME_MAX + 16], where[DISTQ_H5_WHERE_MAX];
    snprintf(full, sizeof full, "/points/%s", name);
    snprintf(where, sizeof where, "%s: %s", path, full);
    pt->nranks = nranks;
    pt->iters = distq_calloc((size_t)nranks * sizeof *pt->iters);
    pt->samples_s = distq_calloc((size_t)nranks * sizeof *pt->samples_s);
    pt->setup_s = distq_calloc((size_t)nranks * sizeof *pt->setup_s);
    pt->first_s = distq_calloc((size_t)nranks * sizeof *pt->first_s);
    pt->images_per_s = distq_calloc((size_t)nranks * sizeof *pt->images_per_s);
    if (!pt->iters || !pt->samples_s || !pt->setup_s || !pt->first_s || !pt->images_per_s) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_open_group(points, name, path, full, &grp));
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "precision", pt->precision, sizeof pt->precision, where));
    DISTQ_CHECK(distq_h5_attr_read_str(grp, "concurrency", pt->concurrency, sizeof pt->concurrency, where));
    DISTQ_CHECK(distq_h5_attr_read_i64(grp, "batch", 1, 1, &pt->batch, NULL, where));
    DISTQ_CHECK(read_f64(grp, "p50", &pt->p50_s, where));
    DISTQ_CHECK(read_f64(grp, "p90", &pt->p90_s, where));
    DISTQ_CHECK(read_f64(grp, "p99", &pt->p99_s, where));
    DISTQ_CHECK(read_f64(grp, "aggregate_images_per_s", &pt->aggregate_images_per_s, where));
    DISTQ_CHECK(read_values(grp, "images_per_s", H5T_NATIVE_DOUBLE, nranks, pt->images_per_s, where));
    DISTQ_CHECK(read_values(grp, "iters", H5T_NATIVE_INT64, nranks, pt->iters, where));
    for (int k = 0; k < nranks; k++) DISTQ_CHECK(read_rank_point(ranks, k, name, pt, path));
cleanup:
    distq_h5_close(&grp);
    return st;
}

static distq_status read_points(hid_t fid, hid_t ranks, distq_results *r, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t points = H5I_INVALID_HID;
    char **names = NULL;
    char where[DISTQ_H5_WHERE_MAX];
    int n = 0;
    H5G_info_t info;
    snprintf(where, sizeof where, "%s: /points", path);
    DISTQ_CHECK(distq_h5_open_group(fid, "points", path, "/points", &points));
    DISTQ_H5_CHECK(H5Gget_info(points, &info), DISTQ_ERR_FORMAT, "%s: cannot list the group", where);
    if (info.nlinks > 0)
        DISTQ_CHECK(distq_h5_attr_read_strlist(points, "order", (int)info.nlinks, (int)info.nlinks, &names,
                                               &n, where));
    if (n > 0 && !(r->points = distq_calloc((size_t)n * sizeof *r->points))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory", where);
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        r->n_points = i + 1; /* what is allocated gets freed */
        DISTQ_CHECK(read_point(points, ranks, names[i], r->nranks, &r->points[i], path));
    }
cleanup:
    distq_free(names);
    distq_h5_close(&points);
    return st;
}

static distq_status read_calibration(hid_t fid, distq_results *r, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    snprintf(where, sizeof where, "%s: /calibration", path);
    DISTQ_CHECK(distq_h5_open_group(fid, "calibration", path, "/calibration", &grp));
    DISTQ_CHECK(read_f64(grp, "wall_s", &r->calib_wall_s, where));
    DISTQ_CHECK(read_f64(grp, "forward_s", &r->calib_forward_s, where));
    DISTQ_CHECK(read_f64(grp, "observe_s", &r->calib_observe_s, where));
    DISTQ_CHECK(read_i64(grp, "images", &r->calib_images, where));
    DISTQ_CHECK(read_i64(grp, "batches", &r->calib_batches, where));
    DISTQ_CHECK(read_i64(grp, "reduce_bytes_per_rank", &r->reduce_bytes, where));
    DISTQ_CHECK(read_i64(grp, "reduce_calls", &r->reduce_calls, where));
cleanup:
    distq_h5_close(&grp);
    return st;
}

static distq_status read_accuracy(hid_t fid, distq_results *r, const char *path)
{
    distq_status st = DISTQ_OK;
    hid_t grp = H5I_INVALID_HID;
    char where[DISTQ_H5_WHERE_MAX];
    htri_t has;
    DISTQ_H5_CHECK(has = H5Lexists(fid, "accuracy", H5P_DEFAULT), DISTQ_ERR_FORMAT,
                   "%s: cannot look up /accuracy", path);
    if (!has) goto cleanup; /* no evaluation in this run */
    r->has_eval = 1;
    snprintf(where, sizeof where, "%s: /accuracy", path);
    DISTQ_CHECK(distq_h5_open_group(fid, "accuracy", path, "/accuracy", &grp));
    DISTQ_CHECK(read_int(grp, "has_labels", &r->eval.has_labels, where));
    DISTQ_CHECK(read_i64(grp, "images", &r->eval.images, where));
    DISTQ_CHECK(read_f64(grp, "rel_l2", &r->eval.rel_l2, where));
    DISTQ_CHECK(read_f64(grp, "top1_agreement", &r->eval.top1_agreement, where));
    if (r->eval.has_labels) {
        DISTQ_CHECK(read_f64(grp, "acc_fp32", &r->eval.acc_fp32, where));
        DISTQ_CHECK(read_f64(grp, "acc_int8", &r->eval.acc_int8, where));
    }
cleanup:
    distq_h5_close(&grp);
    return st;
}

distq_status distq_results_read(const char *path, distq_results *r)
{
    distq_status st = DISTQ_OK;
    hid_t fid = H5I_INVALID_HID, ranks = H5I_INVALID_HID;
    if (!path || !r) return distq_error_set(DISTQ_ERR_INVALID_ARG, "distq_results_read: NULL argument");
    memset(r, 0, sizeof *r);
    DISTQ_CHECK(distq_h5_open_read(path, H5P_DEFAULT, &fid));
    DISTQ_CHECK(read_root(fid, r, path));
    if (!(r->placement = distq_calloc((size_t)r->nranks * sizeof *r->placement))) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "%s: out of memory reading /ranks", path);
        goto cleanup;
    }
    DISTQ_CHECK(distq_h5_open_group(fid, "ranks", path, "/ranks", &ranks));
    for (int k = 0; k < r->nranks; k++) DISTQ_CHECK(read_rank(ranks, k, &r->placement[k], path));
    DISTQ_CHECK(read_points(fid, ranks, r, path));
    DISTQ_CHECK(read_calibration(fid, r, path));
    DISTQ_CHECK(read_accuracy(fid, r, path));
cleanup:
    distq_h5_close(&ranks);
    distq_h5_close(&fid);
    if (st != DISTQ_OK) distq_results_free(r);
    return st;
}

/* The results types own their arrays, so they are freed here, in io, for the
 * jobs that fill them (jobs/mbench.c) and the readers alike. */
void distq_bench_point_free(distq_bench_point *pt)
{
    for (int r = 0; pt->samples_s && r < pt->nranks; r++) distq_free(pt->samples_s[r]);
    distq_free(pt->samples_s);
    distq_free(pt->iters);
    distq_free(pt->setup_s);
    distq_free(pt->first_s);
    distq_free(pt->images_per_s);
    memset(pt, 0, sizeof *pt);
}

/* Frees every point's arrays (distq_bench_point_free), the points array and
 * the placement array, all distq_malloc'd by the run job or the reader; the
 * const strings (config_path, config_text, model_path, quantized_path) are
 * borrowed from the run job, or the reader's owned_strings. Safe to call
 * twice. */
void distq_results_free(distq_results *r)
{
    if (!r) return;
    for (int i = 0; r->points && i < r->n_points; i++) distq_bench_point_free(&r->points[i]);
    distq_free(r->points);
    distq_free(r->placement);
    r->points = NULL;
    r->placement = NULL;
    r->n_points = 0;
    for (int i = 0; i < 4; i++) {
        distq_free(r->owned_strings[i]);
        r->owned_strings[i] = NULL;
    }
}
