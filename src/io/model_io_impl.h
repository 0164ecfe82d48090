#ifndef DISTQ_IO_MODEL_IO_IMPL_H
#define DISTQ_IO_MODEL_IO_IMPL_H
/*
 * The float-model layer (model_io.c) as used by qmodel_io.c and describe.c:
 * a quantized model file holds its float graph in the distq-model layout, and
 * its int8 nodes store conv/pool attributes exactly as float nodes do. Not API.
 */
#include <hdf5.h>

#include "distq/graph.h"
#include "distq/status.h"

/* 1 if s can be an HDF5 link name (non-empty, no '/', not "."). */
int distq_h5_name_ok(const char *s);

/* Opens loc/name as a group; DISTQ_ERR_FORMAT "<path>: missing group <full>"
 * if absent, "<path>: <full> is not a group" if it is something else. */
distq_status distq_h5_open_group(hid_t loc, const char *name, const char *path, const char *full,
                                 hid_t *out);

/* A group creation property list that keeps up to 32 attributes compact (see
 * model_io.c: HDF5 < 1.14.4 crashes copying dense vlen-string attributes). */
distq_status distq_h5_compact_gcpl(hid_t *out, const char *where);

/* The attributes op stores (stride, padding, ... as in docs/file-formats.md);
 * ops without attributes store none. Reading starts from
 * distq_attrs_default(op); every attribute op stores is required. */
distq_status distq_h5_write_op_attrs(hid_t grp, distq_op op, const distq_attrs *a,
                                     const char *where);
distq_status distq_h5_read_op_attrs(hid_t grp, distq_op op, distq_attrs *a, const char *where);

/* Writes /graph and /tensors of a finalized g into the open file fid. */
distq_status distq_h5_write_graph(hid_t fid, const distq_graph *g, const char *path);
/* Reads /graph and /tensors of fid, validates and finalizes (root attributes
 * are the caller's business). Errors name path and the object at fault. */
distq_status distq_h5_read_graph(hid_t fid, const char *path, distq_graph **out);

#endif
