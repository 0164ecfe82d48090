/* The frozen oneDNN int8 executor (work in progress: reports unsupported). */
#include <dnnl.h>

#include "backend/exec_impl.h"

int distq_onednn_has_vnni(void)
{
    /* dnnl_cpu_isa_t is a bit set: 0x40 = avx512_core_vnni, 0x400 = avx2_vnni. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & 0x40u) != 0 || (isa & 0x400u) != 0;
}

static distq_status onednn_int8_create(const distq_qgraph *q, int64_t batch, void **state)
{
    (void)q;
    (void)batch;
    *state = NULL;
    return distq_error_set(DISTQ_ERR_UNSUPPORTED, "the oneDNN int8 executor is not built yet");
}

static distq_status onednn_int8_run(void *state, const float *input, float *output)
{
    (void)state;
    (void)input;
    (void)output;
    return distq_error_set(DISTQ_ERR_UNSUPPORTED, "the oneDNN int8 executor is not built yet");
}

static void onednn_int8_destroy(void *state) { (void)state; }

const distq_exec_i distq_exec_onednn_int8_i = {
    .name = "onednn",
    .create_int8 = onednn_int8_create,
    .run = onednn_int8_run,
    .destroy = onednn_int8_destroy,
};
