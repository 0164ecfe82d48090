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
 * There is no reader in the library; distq_h5_describe (describe.c) and
 * scripts/plot_results.py read these files.
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
 * the placement array, all distq_malloc'd by the run job; the const strings
 * (config_path, config_text, model_path, quantized_path) are borrowed and
 * left alone. Safe to call twice. */
void distq_results_free(distq_results *r)
{
    if (!r) return;
    for (int i = 0; r->points && i < r->n_points; i++) distq_bench_point_free(&r->points[i]);
    distq_free(r->points);
    distq_free(r->placement);
    r->points = NULL;
    r->placement = NULL;
    r->n_points = 0;
}
