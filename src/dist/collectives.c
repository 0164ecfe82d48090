/*
 * Checked collectives on the job's communicator, so that jobs make no MPI
 * call themselves. Each error names what was being exchanged and carries
 * MPI's own text (MPI_Error_string).
 */
#include <stdio.h>

#include "distq/dist.h"

static distq_status mpi_failed(int rc, const char *call, const char *what)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", rc);
    return distq_error_set(DISTQ_ERR_MPI, "%s of %s failed: %s", call, what, text);
}

static MPI_Op mpi_op(distq_dist_op op)
{
    static const MPI_Op ops[] = {[DISTQ_DIST_SUM] = MPI_SUM, [DISTQ_DIST_MIN] = MPI_MIN,
                                 [DISTQ_DIST_LOR] = MPI_LOR};
    return ops[op];
}

static distq_status allreduce(distq_dist *d, void *buf, int n, MPI_Datatype type, distq_dist_op op,
                              const char *what)
{
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, type, mpi_op(op), d->comm);
    return rc == MPI_SUCCESS ? DISTQ_OK : mpi_failed(rc, "MPI_Allreduce", what);
}

distq_status distq_dist_allreduce_f32(distq_dist *d, float *buf, int n, distq_dist_op op, const char *what)
{
    return allreduce(d, buf, n, MPI_FLOAT, op, what);
}

distq_status distq_dist_allreduce_f64(distq_dist *d, double *buf, int n, distq_dist_op op, const char *what)
{
    return allreduce(d, buf, n, MPI_DOUBLE, op, what);
}

distq_status distq_dist_allreduce_int(distq_dist *d, int *buf, int n, distq_dist_op op, const char *what)
{
    return allreduce(d, buf, n, MPI_INT, op, what);
}

distq_status distq_dist_barrier(distq_dist *d, const char *what)
{
    int rc = MPI_Barrier(d->comm);
    return rc == MPI_SUCCESS ? DISTQ_OK : mpi_failed(rc, "MPI_Barrier", what);
}

distq_status distq_dist_gather(distq_dist *d, const void *send, int bytes, void *recv, const char *what)
{
    int rc = MPI_Gather(send, bytes, MPI_BYTE, recv, bytes, MPI_BYTE, 0, d->comm);
    return rc == MPI_SUCCESS ? DISTQ_OK : mpi_failed(rc, "MPI_Gather", what);
}

distq_status distq_dist_gatherv_f64(distq_dist *d, const double *send, int n, double *recv,
                                    const int *counts, const int *displs, const char *what)
{
    int rc = MPI_Gatherv(send, n, MPI_DOUBLE, recv, counts, displs, MPI_DOUBLE, 0, d->comm);
    return rc == MPI_SUCCESS ? DISTQ_OK : mpi_failed(rc, "MPI_Gatherv", what);
}
