/* oneDNN's version, for provenance in results files. */
#include <dnnl.h>
#include <stdio.h>

#include "distq/exec.h"

const char *distq_onednn_version(void)
{
    static char text[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
    return text;
}
