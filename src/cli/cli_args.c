/* Option value parsing and the CLI's error lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int cli_fail(const cli_ctx *ctx, const char *cmd, distq_status st)
{
    (void)st;
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

distq_status cli_parse_i64(const char *opt, const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return distq_error_set(DISTQ_ERR_INVALID_ARG,
                               "option %s: '%s' is not an integer in [%lld, %lld]", opt, text,
                               (long long)lo, (long long)hi);
    *out = v;
    return DISTQ_OK;
}

distq_status cli_parse_double(const char *opt, const char *text, double lo, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "option %s: '%s' is not a number >= %g",
                               opt, text, lo);
    *out = v;
    return DISTQ_OK;
}

distq_status cli_parse_i64_list(const char *opt, const char *text, int max, int64_t *out,
                                int *count)
{
    char buf[256];
    if (strlen(text) >= sizeof buf)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "option %s: value too long", opt);
    strcpy(buf, text);
    *count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*count == max)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "option %s: more than %d values in '%s'",
                                   opt, max, text);
        distq_status st = cli_parse_i64(opt, tok, 1, INT32_MAX, &out[*count]);
        if (st) return st;
        (*count)++;
    }
    if (*count == 0)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "option %s: empty list", opt);
    return DISTQ_OK;
}
