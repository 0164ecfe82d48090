#ifndef DISTQ_EXEC_IMPL_H
#define DISTQ_EXEC_IMPL_H
/* The backend interface behind distq_exec (one implementation per folder). */
#include "distq/exec.h"

/* One table per backend and precision (the ref table serves both; oneDNN's
 * int8 table is picked for quantized graphs). */
typedef struct distq_exec_i {
    const char *name;
    /* Build state for g (finalized) and batch; *state is passed back to run/destroy. */
    distq_status (*create)(const distq_graph *g, int64_t batch, void **state);
    distq_status (*run)(void *state, const float *input, float *output);
    void (*destroy)(void *state); /* must accept NULL */
    /* Optional: copy the named value, plain row-major with the batch, into out
     * (the value's dtype: f32 or u8). */
    distq_status (*get_value)(void *state, const char *name, void *out);
    /* fp32 tables: 1 if the kernel table has op; what the backend can do. */
    int (*has_kernel)(distq_op op);
    distq_backend_caps (*caps)(void);
    /* tables that run quantized graphs: 1 if there is an int8 kernel for op */
    int (*has_int8_kernel)(distq_op op);
    /* Optional: distq_exec_profile's per-step timing. */
    distq_status (*profile)(void *state, const float *input, float *output, int iters,
                            distq_profile_step **steps, int *n_steps, double *wall_s);
} distq_exec_i;

/* The error for node n, whose op has no kernel in backend's table (found when
 * the executor is created, never as a NULL call on the hot path). */
distq_status distq_backend_no_kernel(const char *backend, const char *node, const char *op);

/* The backend state behind e (tests reach into a backend through it). */
void *distq_exec_impl_state(distq_exec *e);

extern const distq_exec_i distq_exec_ref_i;
extern const distq_exec_i distq_exec_onednn_i;
extern const distq_exec_i distq_exec_onednn_int8_i;

#endif
