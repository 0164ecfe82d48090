/*
 * Which instruction set oneDNN dispatches, and the cap on it.
 *
 * oneDNN picks its kernels by the highest ISA the CPU has, lowered by a cap:
 * the ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) environment variable, or
 * dnnl_set_max_cpu_isa(), which only works before oneDNN creates its first
 * kernel or reports its ISA. The cap is how one machine runs the lower ISA
 * levels (tests, `distq bench --max-isa`), and whether VNNI is among the
 * dispatched instructions decides distq's int8 activation grid (docs/isa.md).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "distq/exec.h"
#include "distq/status.h"

static const struct {
    const char *name;
    dnnl_cpu_isa_t isa;
} levels[] = {
    {"all", dnnl_cpu_isa_all},
    {"sse41", dnnl_cpu_isa_sse41},
    {"avx", dnnl_cpu_isa_avx},
    {"avx2", dnnl_cpu_isa_avx2},
    {"avx2_vnni", dnnl_cpu_isa_avx2_vnni},
    {"avx512_mic", dnnl_cpu_isa_avx512_mic},
    {"avx512_mic_4ops", dnnl_cpu_isa_avx512_mic_4ops},
    {"avx512_core", dnnl_cpu_isa_avx512_core},
    {"avx512_core_vnni", dnnl_cpu_isa_avx512_core_vnni},
    {"avx512_core_bf16", dnnl_cpu_isa_avx512_core_bf16},
    {"avx512_core_amx", dnnl_cpu_isa_avx512_core_amx},
};
enum { N_LEVELS = sizeof levels / sizeof levels[0] };

/* The cap set through distq_onednn_set_max_isa, lower case; "" if none. */
static char cap_set[32];

const char *distq_onednn_isa(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    for (int i = 0; i < N_LEVELS; i++)
        if (levels[i].isa == isa) return levels[i].name;
    return "unknown";
}

int distq_onednn_has_vnni(void)
{
    /* dnnl_cpu_isa_t is a bit set: 0x40 = avx512_core_vnni (which bf16 and AMX
     * include), 0x400 = avx2_vnni. The effective ISA already obeys the cap. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & 0x40u) != 0 || (isa & 0x400u) != 0;
}

static void lower_copy(char *dst, size_t len, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < len; i++) dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

/* Index of a level name (lower case) in levels, or -1. */
static int level_index(const char *name)
{
    for (int i = 0; i < N_LEVELS; i++)
        if (strcmp(levels[i].name, name) == 0) return i;
    return -1;
}

const char *distq_onednn_max_isa(void)
{
    static char from_env[32];
    if (cap_set[0]) return cap_set;
    /* oneDNN's own order: the ONEDNN_ name first, then the older DNNL_ one */
    const char *env = getenv("ONEDNN_MAX_CPU_ISA");
    if (!env || !env[0]) env = getenv("DNNL_MAX_CPU_ISA");
    if (!env || !env[0]) return "";
    lower_copy(from_env, sizeof from_env, env);
    /* oneDNN ignores a value it does not know: then there is no cap */
    return level_index(from_env) >= 0 ? from_env : "";
}

distq_status distq_onednn_set_max_isa(const char *name)
{
    char want[32];
    lower_copy(want, sizeof want, name);
    int found = level_index(want);
    if (found < 0 || strstr(want, "mic"))
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "'%s' is not an ISA level (avx2, avx2_vnni, avx512_core, avx512_core_vnni, "
                               "avx512_core_bf16, avx512_core_amx, all)",
                               name);
    dnnl_status_t s = dnnl_set_max_cpu_isa(levels[found].isa);
    if (s != dnnl_success)
        return distq_error_set(DISTQ_ERR_UNSUPPORTED,
                               "oneDNN refused the ISA cap %s (dnnl status %d): the cap must be set before oneDNN "
                               "creates its first kernel, and this oneDNN build must allow it",
                               levels[found].name, (int)s);
    snprintf(cap_set, sizeof cap_set, "%s", levels[found].name);
    return DISTQ_OK;
}

int distq_onednn_isa_below_cap(void)
{
    const char *cap = distq_onednn_max_isa();
    if (!cap[0] || strcmp(cap, "all") == 0) return 0;
    return strcmp(cap, distq_onednn_isa()) != 0;
}
