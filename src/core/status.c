/* Status text and the per-thread error message (see include/distq/status.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "distq/status.h"

static const char *const status_text[DISTQ_STATUS_COUNT] = {
    [DISTQ_OK] = "ok",
    [DISTQ_ERR_NOMEM] = "out of memory",
    [DISTQ_ERR_INVALID_ARG] = "invalid argument",
    [DISTQ_ERR_UNSUPPORTED] = "unsupported",
    [DISTQ_ERR_FORMAT] = "bad file format",
    [DISTQ_ERR_IO] = "I/O error",
    [DISTQ_ERR_MPI] = "MPI error",
    [DISTQ_ERR_DNNL] = "oneDNN error",
    [DISTQ_ERR_HWLOC] = "hwloc error",
};

static _Thread_local char last_message[1024];

const char *distq_status_str(distq_status st)
{
    if ((int)st < 0 || st >= DISTQ_STATUS_COUNT) return "unknown status";
    return status_text[st];
}

distq_status distq_error_set(distq_status st, const char *fmt, ...)
{
    /* Format into a scratch buffer first: callers often prefix the current
     * message, passing distq_error_message() as an argument. */
    char text[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(last_message, text, sizeof text);
    return st;
}

const char *distq_error_message(void) { return last_message; }

void distq_error_clear(void) { last_message[0] = '\0'; }
