#ifndef DISTQ_DIST_H
#define DISTQ_DIST_H
/*
 * MPI and hwloc: the communicator, failure agreement, exact reductions of
 * observer state, and rank placement on NUMA nodes and cores.
 *
 *     distq_dist d;  distq_dist_init(MPI_COMM_WORLD, &d);
 *     st = distq_dist_agree(&d, st);        // every rank learns any rank's failure
 *     distq_reducer red = distq_dist_reducer(&d);   // for distq_calibrator_create
 *     distq_placement pl;  distq_place(&d, DISTQ_BIND_CORE, 0, &pl);
 */
#include <mpi.h>
#include <stdint.h>

#include "distq/quant.h"
#include "distq/results.h" /* distq_placement */
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where ranks run: unbound, one core set per rank, or one NUMA node per rank
 * (placement.c carries it out; configs and options name it). */
typedef enum { DISTQ_BIND_NONE = 0, DISTQ_BIND_CORE, DISTQ_BIND_NUMA, DISTQ_BIND_COUNT } distq_bind;
const char *distq_bind_name(distq_bind b); /* "none", "core", "numa" */
distq_status distq_bind_from_name(const char *name, distq_bind *out);

typedef struct distq_dist {
    MPI_Comm comm; /* a duplicate of the parent, errors returned, not fatal */
    int rank, size;
    int local_rank, local_size; /* among the ranks sharing this node */
    char host[MPI_MAX_PROCESSOR_NAME];
    int64_t reduce_bytes; /* bytes this rank passed to all-reduces of observer state */
    int64_t reduce_calls;
} distq_dist;

/* The process's start and end with MPI (the command line's main): MPI_Init
 * with MPI_COMM_WORLD returning errors instead of aborting; *w gets this
 * rank's place (rank, size, and among the ranks of its node). A failure is
 * DISTQ_ERR_MPI with MPI's text, and MPI is finalized again. */
typedef struct {
    int rank, size;
    int local_rank, local_size;
} distq_world;
distq_status distq_dist_start(int *argc, char ***argv, distq_world *w);
/* Collective over MPI_COMM_WORLD, then MPI_Finalize: returns the largest rc of
 * any rank, so that a failed rank's exit code is every rank's (a failed
 * reduction keeps this rank's rc, or 1 if it was 0). */
int distq_dist_finish(int rc);

distq_status distq_dist_init(MPI_Comm parent, distq_dist *d);
/* distq_dist_init on MPI_COMM_WORLD. */
distq_status distq_dist_init_world(distq_dist *d);
void distq_dist_free(distq_dist *d);

/* Collective: returns DISTQ_OK on every rank if every rank passed DISTQ_OK;
 * otherwise, on every rank, the lowest failing rank's status with the message
 * "rank R: <its message>". Call it at every point where a rank may have
 * failed, so that no rank waits in a later collective for a failed one. */
distq_status distq_dist_agree(distq_dist *d, distq_status local);
/* Collective: every rank holds the same n settings v (names[i] names v[i] in
 * the error). A rank whose v differs from rank 0's fails, named, on every
 * rank: ranks running different configs would otherwise meet in mismatched
 * collectives and hang. n must be the same on every rank. */
distq_status distq_dist_agree_settings(distq_dist *d, const int64_t *v, const char *const *names, int n);

/* Checked collectives on d->comm (src/dist/collectives.c): jobs make no MPI
 * call of their own. Errors name `what` ("gradients") and carry MPI's text.
 * Gathers go to rank 0; recv matters there only. */
typedef enum { DISTQ_DIST_SUM = 0, DISTQ_DIST_MIN, DISTQ_DIST_LOR } distq_dist_op;
distq_status distq_dist_allreduce_f32(distq_dist *d, float *buf, int n, distq_dist_op op, const char *what);
distq_status distq_dist_allreduce_f64(distq_dist *d, double *buf, int n, distq_dist_op op, const char *what);
distq_status distq_dist_allreduce_int(distq_dist *d, int *buf, int n, distq_dist_op op, const char *what);
distq_status distq_dist_barrier(distq_dist *d, const char *what);
/* Every rank sends `bytes` bytes; rank 0 receives size * bytes in rank order. */
distq_status distq_dist_gather(distq_dist *d, const void *send, int bytes, void *recv, const char *what);
distq_status distq_dist_gatherv_f64(distq_dist *d, const double *send, int n, double *recv,
                                    const int *counts, const int *displs, const char *what);

/* An exact reducer for the calibrator: MIN/MAX of floats, SUM of int64 counts,
 * and agree(). Counts bytes and calls in d. */
distq_reducer distq_dist_reducer(distq_dist *d);

/* Open MPI's and hwloc's versions, for provenance (static text). */
const char *distq_mpi_version(void);
const char *distq_hwloc_version(void);

/* --- placement ------------------------------------------------------------ */



/* Decides and applies this rank's placement. If the launcher already bound the
 * rank (its CPU set is smaller than the machine's), that binding is kept.
 * Otherwise `bind` picks: NUMA node = local_rank mod nodes, then a disjoint
 * share of that node's cores (CORE: bind to those cores; NUMA: to the node).
 * threads > 0 overrides the thread count (default: cores in the set). Sets
 * oneDNN/OpenMP threads. A warning (oversubscription, memory binding refused)
 * is returned in warn (may be ""). */
distq_status distq_place(const distq_dist *d, distq_bind bind, int threads, distq_placement *out,
                         char *warn, size_t warn_len);

#ifdef __cplusplus
}
#endif
#endif
