#ifndef DISTQ_IO_H
#define DISTQ_IO_H
/*
 * HDF5 files: models (graph + tensors), quantized models (+ the int8 graph,
 * observers and recipe), datasets (images + labels), outputs, training
 * checkpoints; and the IDX files (MNIST, Fashion-MNIST) datasets come from.
 * The layouts are documented in docs/file-formats.md; every file carries
 * "format" and "version" attributes on its root group.
 *
 * Writers create "<path>.tmp.<host>.<pid>" and rename it over path only when
 * the file is complete, so an earlier file is never left half-written.
 */
#include <mpi.h>
#include <stdint.h>

#include "distq/graph.h"
#include "distq/observers.h"
#include "distq/reducer.h"
#include "distq/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest path a file name or config value may have. */
#define DISTQ_PATH_MAX 512

#define DISTQ_MODEL_FORMAT "distq-model"
#define DISTQ_MODEL_VERSION 3        /* 2: quantized ops and attributes; 3: padding_end, post_op; 1, 2 still load */
#define DISTQ_MODEL_OLDEST_VERSION 1
/* /graph input_shape[0] as written: the batch is symbolic (any size); files
 * with 1 there (version 1, or written by hand) load the same way. */
#define DISTQ_FILE_BATCH_ANY (-1)
#define DISTQ_DATA_FORMAT "distq-data"
#define DISTQ_DATA_VERSION 1
#define DISTQ_OUTPUT_FORMAT "distq-output"
#define DISTQ_OUTPUT_VERSION 1
#define DISTQ_QMODEL_FORMAT "distq-qmodel"
#define DISTQ_QMODEL_VERSION 3       /* 2: the int8 graph in the model layout; 3: as model 3; 2 loads, 1 is refused */
#define DISTQ_CHECKPOINT_FORMAT "distq-checkpoint"
#define DISTQ_CHECKPOINT_VERSION 1


/* Writes a finalized graph. */
distq_status distq_model_save(const distq_graph *g, const char *path);
/* Reads, validates and finalizes. Errors name the file and the dataset,
 * attribute or node at fault. A quantized model file (distq-qmodel) is
 * accepted too: its float graph is loaded. */
distq_status distq_model_load(const char *path, distq_graph **out);

/* What a quantized model file records of its quantization: convert's
 * choices, handed over by passes (distq_prepared_record), written as given. */
typedef struct {
    const distq_graph *observed; /* the BN-folded fp32 graph the observers watched */
    distq_observer_kind kind;
    int n_observers;
    const distq_observer *observers; /* each converted: chosen range and qparams set */
    const char *excluded; /* per node of observed: 1 if the user's patterns kept it fp32; NULL: none */
} distq_quant_record;

/* Quantized model file (docs/file-formats.md): the BN-folded fp32 graph rec->observed
 * in the distq-model layout (/graph, /tensors: the float model stays inside,
 * for `bench --precision fp32,int8` and `eval`), the int8 graph q in the same
 * layout under /int8 (u8 values from quantize / conv2d / linear attributes, s8
 * weights with their f32 scales, f32 bias), and /quant: the recipe as
 * attributes and every observer's final state (min, max, histogram, and the
 * range and qparams convert chose). q must be the int8 graph convert made
 * with those observers. Atomic (tmp + rename). */
distq_status distq_qmodel_save(const distq_quant_record *rec, const distq_graph *q, const char *path);
/* Loads the int8 graph into *q (required) and, if fp32 != NULL, the float
 * graph into *fp32, validated as any model (distq_graph_finalize) plus the
 * recipe; errors name the file and the object at fault. A plain distq-model
 * file is DISTQ_ERR_FORMAT "<path>: not a quantized model (format
 * distq-model); run distq calibrate first"; a version-1 file is refused with
 * the command that regenerates it. Observer states are not read back. */
distq_status distq_qmodel_load(const char *path, distq_graph **q, distq_graph **fp32);
/* A model as the bytes of its model file, in memory (*buf: free() it), and
 * back: how one rank's import reaches the others under MPI. what names the
 * model in messages. */
distq_status distq_model_to_image(const distq_graph *g, const char *what, void **buf, size_t *len);
distq_status distq_model_from_image(const void *buf, size_t len, const char *what, distq_graph **out);

/* *quantized = 1 if path is a distq-qmodel file, 0 if a plain distq-model or
 * an .onnx file (imported as fp32);
 * anything else (missing, not HDF5, other format, bad version) is the
 * loaders' error. */
distq_status distq_model_is_quantized(const char *path, int *quantized);

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
/* The images of info (read from data_path) are what `input` (a model's input
 * value, of model_path) takes, dim by dim, not only in element count: a
 * (N, 3072) or (N, 3, 16, 64) file is refused for a 3x32x32 model. */
distq_status distq_data_check_input(const char *data_path, const distq_data_info *info, const distq_value *input,
                                    const char *model_path);
/* A data file opened once for many reads. With comm != MPI_COMM_NULL it is
 * opened through MPI-IO (parallel HDF5): every rank of comm opens and closes
 * it together, and each rank then reads only its own rows; red (the ranks of
 * comm; src/dist supplies it) makes every rank fail together when one
 * cannot read the file or sees another file or shape. Alone: MPI_COMM_NULL
 * and red NULL. */
typedef struct distq_data_file distq_data_file;
distq_status distq_data_open(const char *path, MPI_Comm comm, const distq_reducer *red, distq_data_file **out);
const distq_data_info *distq_data_file_info(const distq_data_file *f);
/* Rows [start, start + count) (and labels if labels != NULL); count may be 0. */
distq_status distq_data_file_read(distq_data_file *f, int64_t start, int64_t count, float *images,
                                  int64_t *labels);
void distq_data_close(distq_data_file *f); /* NULL is a no-op */

/* Reads images [start, start + count) (and their labels if labels != NULL). */
distq_status distq_data_read(const char *path, int64_t start, int64_t count, float *images,
                             int64_t *labels);

/* Removes the temporary file a writer has on disk at this moment, if any.
 * Async-signal-safe: for a SIGINT / SIGTERM handler (the CLI installs one). */
void distq_io_unlink_partial(void);

/* A file a command reads or writes, and what named it ("option --model",
 * "[output] results"), for the error. */
typedef struct {
    const char *path; /* NULL or "" = not used in this run */
    const char *what;
} distq_file_role;

/* Refuses, before any work, an output that is the same file as an input or
 * as another output. Same file means same device and inode (or, for a file
 * not there yet, same directory and name), so symlinks, hard links and
 * "./x.h5" vs "x.h5" are caught. The error names both roles and paths. */
distq_status distq_check_outputs(const distq_file_role *inputs, int n_in, const distq_file_role *outputs,
                                 int n_out);

/* Output file of distq infer: the first graph output as /logits f32 (n, k[0]),
 * each further output o as /output_<o> (n, k[o]); each dataset names its
 * graph value (attribute output), the model and the data. */
distq_status distq_output_write(const char *path, int n_outputs, const char *const *names,
                                const float *const *values, const int64_t *k, int64_t n, const char *model_path,
                                const char *data_path);

/* --- IDX files (src/io/idx_io.c) -------------------------------------------
 * LeCun's MNIST format, as Fashion-MNIST ships it (Debian package
 * dataset-fashion-mnist: train-images-idx3-ubyte.gz and the like in
 * /usr/share/datasets/fashion-mnist): a big-endian header (magic 0x00000803
 * + N, rows, cols for images; 0x00000801 + N for labels) then u8 items. Read
 * through zlib, so .gz and plain files both work.
 *
 *     distq_idx x;
 *     distq_idx_read("train-images-idx3-ubyte.gz", DISTQ_IDX_MAGIC_IMAGES, 0, &x);
 *     ... x.data[(i * rows + r) * cols + c] ...
 *     distq_idx_free(&x);
 */
#define DISTQ_IDX_MAGIC_LABELS 0x00000801u /* u8, 1-D: (N) */
#define DISTQ_IDX_MAGIC_IMAGES 0x00000803u /* u8, 3-D: (N, rows, cols) */

typedef struct {
    uint32_t magic;
    int ndim;           /* 1 (labels) or 3 (images) */
    int64_t dims[3];    /* (N) or (N, rows, cols); dims[0] = items read */
    int64_t n_declared; /* items the header declares (>= dims[0]) */
    uint8_t *data;      /* all dims, row-major u8; owned, freed by distq_idx_free */
} distq_idx;

/* Reads the first max_n items (all if max_n <= 0) of an IDX file whose magic
 * must be `magic`. When reading all, data after the declared items is an
 * error. DISTQ_ERR_IO if the file cannot be opened or read, DISTQ_ERR_FORMAT
 * naming the file for a bad magic, a truncated header or body, a corrupt gzip
 * stream or max_n larger than the file; DISTQ_ERR_NOMEM. *out is zeroed on
 * failure. */
distq_status distq_idx_read(const char *path, uint32_t magic, int64_t max_n, distq_idx *out);
/* Frees x->data and zeroes *x; NULL or an already freed x is a no-op. */
void distq_idx_free(distq_idx *x);
/* Mean and population standard deviation (ddof 0) of pixel / 255 over every
 * item of x (exact: from a 256-bin histogram). */
void distq_idx_pixel_stats(const distq_idx *x, double *mean, double *std);

/* Converts IDX images (and labels, if labels_path != NULL) to a data file:
 * /images f32 (N, 1, rows, cols) = (pixel / 255 - mean) / std, /labels s64,
 * where mean and std come from ALL images of normalize_from (the training
 * set; NULL = images_path itself) so train and test share one
 * normalisation. max_n > 0 keeps the first max_n items. Root attributes
 * record mean, std (the f32 values used) and the source files
 * (docs/file-formats.md). Image and label files must declare the same N.
 * Atomic. n_out, mean_out, std_out are optional. */
distq_status distq_data_from_idx(const char *out_path, const char *images_path,
                                 const char *labels_path, const char *normalize_from,
                                 int64_t max_n, int64_t *n_out, float *mean_out, float *std_out);

/* --- checkpoints (src/io/checkpoint_io.c) ----------------------------------
 * A training checkpoint: the graph in the distq-model layout (so any tool can
 * read its weights with the model reader's checks), the optimizer's flat
 * velocity (distq_sgd.velocity, in distq_trainer_grads order), step, epoch,
 * the training config text and, for QAT, the observer state vector. */

/* Writes g (finalized), velocity[n_velocity] f32 (NULL if n_velocity == 0),
 * step, epoch, config_text (NULL = "") and qat_state[n_qat] (n_qat == 0:
 * none) to path, atomically (tmp + rename). n_velocity must be 0 or the
 * number of trainable elements of g (the f32 weight and bias of every node).
 * DISTQ_ERR_INVALID_ARG, _IO. */
distq_status distq_checkpoint_save(const char *path, const distq_graph *g, const float *velocity,
                                   int64_t n_velocity, int64_t step, int64_t epoch,
                                   const char *config_text, const float *qat_state, int64_t n_qat);
/* Reads and validates a checkpoint. *g (finalized), *velocity and *qat_state
 * (distq_malloc'd, NULL if the count is 0; qat_state/n_qat may be NULL to
 * skip it) are the caller's. The QAT state's length is checked by
 * distq_qat_state_set. Errors (DISTQ_ERR_FORMAT; _IO if unreadable) name the
 * file and the dataset or attribute at fault; on failure nothing is returned. */
distq_status distq_checkpoint_load(const char *path, distq_graph **g, float **velocity,
                                   int64_t *n_velocity, int64_t *step, int64_t *epoch, float **qat_state,
                                   int64_t *n_qat);

/* Describes any distq HDF5 file (model, qmodel, data, output) as text: ops, tensors,
 * shapes, sizes. *text is distq_malloc'd; the caller frees it. */
distq_status distq_h5_describe(const char *path, char **text);
/* The node lines of inspect's model view, for any graph (float, int8, mixed):
 * op, name, inputs, output (u8 marked), the registry's attribute text. *text
 * is distq_malloc'd. */
distq_status distq_graph_describe(const distq_graph *g, char **text);

#ifdef __cplusplus
}
#endif
#endif
