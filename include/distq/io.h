#ifndef DISTQ_IO_H
#define DISTQ_IO_H
/*
 * HDF5 files: models (graph + tensors), datasets (images + labels), outputs.
 * The layouts are documented in docs/file-formats.md; every file carries
 * "format" and "version" attributes on its root group.
 *
 * Writers create "<path>.tmp.<pid>" and rename it over path only when the
 * file is complete, so an earlier file is never left half-written.
 */
#include <stdint.h>

#include "distq/graph.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DISTQ_MODEL_FORMAT "distq-model"
#define DISTQ_MODEL_VERSION 1
#define DISTQ_DATA_FORMAT "distq-data"
#define DISTQ_DATA_VERSION 1
#define DISTQ_OUTPUT_FORMAT "distq-output"
#define DISTQ_OUTPUT_VERSION 1

/* Writes a finalized graph. */
distq_status distq_model_save(const distq_graph *g, const char *path);
/* Reads, validates and finalizes. Errors name the file and the dataset,
 * attribute or node at fault. */
distq_status distq_model_load(const char *path, distq_graph **out);

/* Dataset file: /images f32 (N, C, H, W) [, /labels s64 (N)]. */
typedef struct {
    int64_t n;       /* number of images */
    int ndim;        /* of one image + 1 */
    int64_t dims[DISTQ_MAX_DIMS]; /* (N, C, H, W) */
    int has_labels;
} distq_data_info;

distq_status distq_data_write(const char *path, const float *images, int ndim,
                              const int64_t *dims, const int64_t *labels);
distq_status distq_data_info_read(const char *path, distq_data_info *info);
/* Reads images [start, start + count) (and their labels if labels != NULL). */
distq_status distq_data_read(const char *path, int64_t start, int64_t count, float *images,
                             int64_t *labels);

/* Output file: /logits f32 (N, K) with attributes naming model and data. */
distq_status distq_output_write(const char *path, const float *logits, int64_t n, int64_t k,
                                const char *model_path, const char *data_path);

/* Describes any distq HDF5 file (model, data, output) as text: ops, tensors,
 * shapes, sizes. *text is distq_malloc'd; the caller frees it. */
distq_status distq_h5_describe(const char *path, char **text);

#ifdef __cplusplus
}
#endif
#endif
