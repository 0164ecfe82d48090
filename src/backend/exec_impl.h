#ifndef DISTQ_EXEC_IMPL_H
#define DISTQ_EXEC_IMPL_H
/* The backend interface behind distq_exec (one implementation per folder). */
#include "distq/exec.h"

typedef struct distq_exec_i {
    const char *name;
    /* Build state for g and batch; *state is passed back to run/destroy. */
    distq_status (*create)(const distq_graph *g, int64_t batch, void **state);
    distq_status (*run)(void *state, const float *input, float *output);
    void (*destroy)(void *state); /* must accept NULL */
} distq_exec_i;

extern const distq_exec_i distq_exec_ref_i;
extern const distq_exec_i distq_exec_onednn_i;

#endif
