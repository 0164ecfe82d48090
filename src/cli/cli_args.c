/* Option value parsing and the CLI's error lines. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int progress_open; /* a '\r' progress line is on the terminal */

void cli_progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputc('\r', stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    progress_open = 1;
}

void cli_progress_done(void)
{
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
}

int cli_fail(const cli_ctx *ctx, const char *cmd, distq_status st)
{
    (void)st;
    cli_progress_done();
    if (ctx->size > 1)
        fprintf(stderr, "distq %s: error (rank %d): %s\n", cmd, ctx->rank, distq_error_message());
    else
        fprintf(stderr, "distq %s: error: %s\n", cmd, distq_error_message());
    return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "distq %s: error: %s\nusage: distq %s %s\n", cmd, msg, cmd, usage);
    return CLI_USAGE;
}

int cli_fail_agreed(const cli_ctx *ctx, const char *cmd)
{
    cli_progress_done();
    if (ctx->rank == 0) fprintf(stderr, "distq %s: error: %s\n", cmd, distq_error_message());
    return CLI_FAIL;
}

const char *cli_isa_text(char *buf, size_t len)
{
    const char *cap = distq_onednn_max_isa();
    if (!cap[0])
        snprintf(buf, len, "%s", distq_onednn_isa());
    else if (distq_onednn_isa_below_cap())
        snprintf(buf, len, "%s (capped at %s, which this CPU lacks)", distq_onednn_isa(), cap);
    else
        snprintf(buf, len, "%s (capped at %s)", distq_onednn_isa(), cap);
    return buf;
}
