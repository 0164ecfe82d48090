/* INI job configuration via libinih, plus the value parsers the CLI shares. */
#include <errno.h>
#include <math.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "distq/config.h"
#include "distq/tensor.h"

distq_status distq_parse_i64(const char *what, const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: '%s' is not an integer in [%lld, %lld]",
                               what, text, (long long)lo, (long long)hi);
    *out = v;
    return DISTQ_OK;
}

distq_status distq_parse_double(const char *what, const char *text, double lo, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    /* finite only: an infinite time or rate would never end a loop */
    if (errno || end == text || *end || !(v >= lo) || !isfinite(v))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: '%s' is not a finite number >= %g", what, text, lo);
    *out = v;
    return DISTQ_OK;
}

distq_status distq_parse_i64_list(const char *what, const char *text, int max, int64_t *out, int *count)
{
    char buf[256];
    if (strlen(text) >= sizeof buf)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: value too long", what);
    strcpy(buf, text);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (n == max)
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: more than %d values in '%s'", what, max, text);
        distq_status st = distq_parse_i64(what, tok, 1, INT32_MAX, &out[n]);
        if (st) return st;
        n++;
    }
    /* strtok_r skips empty fields: "1,,2" must still be an error */
    if (n == 0 || strstr(text, ",,") || text[0] == ',' || text[strlen(text) - 1] == ',')
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: '%s' is not a list like 1,50", what, text);
    *count = n;
    return DISTQ_OK;
}

distq_status distq_parse_auto_bool(const char *what, const char *text, int *out)
{
    if (strcmp(text, "auto") == 0) *out = -1;
    else if (strcmp(text, "on") == 0 || strcmp(text, "true") == 0 || strcmp(text, "1") == 0) *out = 1;
    else if (strcmp(text, "off") == 0 || strcmp(text, "false") == 0 || strcmp(text, "0") == 0) *out = 0;
    else return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: '%s' is not auto, on or off", what, text);
    return DISTQ_OK;
}

distq_status distq_parse_precisions(const char *what, const char *text, int *fp32, int *int8)
{
    int f = 0, i = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (strcmp(tok, "fp32") == 0) f = 1;
        else if (strcmp(tok, "int8") == 0) i = 1;
        else
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: unknown precision '%s' (fp32, int8)", what, tok);
    }
    if (!f && !i) return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: no precision given", what);
    *fp32 = f;
    *int8 = i;
    return DISTQ_OK;
}

void distq_config_defaults(distq_config *c)
{
    memset(c, 0, sizeof *c);
    c->calib_batches = 8;
    c->calib_batch_size = 8;
    c->observer = DISTQ_OBSERVER_HISTOGRAM;
    c->reduce_range = -1;
    c->bench_batch[0] = 1;
    c->bench_batch[1] = 50;
    c->n_bench_batch = 2;
    c->bench_min_time_s = 5.0;
    c->bench_min_iters = 10;
    c->bench_warmup = 2;
    c->bench_int8 = 1;
    c->eval_batch_size = 50;
    c->bind = DISTQ_BIND_CORE;
    c->epochs = 8;
    c->train_batch_size = 128;
    c->lr = 0.05;
    c->momentum = 0.9;
    c->weight_decay = 5e-4;
    c->lr_step_epochs = 3;
    c->lr_gamma = 0.1;
}

void distq_config_free(distq_config *c)
{
    distq_free(c->text);
    c->text = NULL;
}

typedef struct {
    distq_config *c;
    const char *path;
    distq_status st;
    char msg[512];
} parse_ctx;

static int set_path(char *dst, const char *value)
{
    if (strlen(value) >= DISTQ_PATH_MAX) return 0;
    strcpy(dst, value);
    return 1;
}

/* 0 (too long) or 1, as set_path */
static int set_exclude(char *dst, size_t cap, const char *value)
{
    if (strlen(value) >= cap) return 0;
    strcpy(dst, value);
    return 1;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *p = user;
    distq_config *c = p->c;
    char what[160];
    snprintf(what, sizeof what, "%s: key %s.%s", p->path, section, name);
#define KEY(s, k) (strcmp(section, s) == 0 && strcmp(name, k) == 0)
    distq_status st = DISTQ_OK;
    int ok = 1;
    if (KEY("model", "path")) ok = set_path(c->model, value);
    else if (KEY("calibration", "data")) ok = set_path(c->calib_data, value);
    else if (KEY("calibration", "batches")) st = distq_parse_i64(what, value, 0, INT32_MAX, &c->calib_batches);
    else if (KEY("calibration", "batch_size")) st = distq_parse_i64(what, value, 1, 1 << 20, &c->calib_batch_size);
    else if (KEY("calibration", "observer")) {
        st = distq_observer_kind_from_name(value, &c->observer);
        if (st) st = distq_error_set(st, "%s: %s", what, distq_error_message());
    } else if (KEY("calibration", "reduce_range")) st = distq_parse_auto_bool(what, value, &c->reduce_range);
    else if (KEY("calibration", "exclude")) {
        if (!set_exclude(c->calib_exclude, sizeof c->calib_exclude, value))
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: longer than %zu characters", what,
                                 sizeof c->calib_exclude - 1);
    }
    else if (KEY("output", "quantized")) ok = set_path(c->quantized, value);
    else if (KEY("output", "results")) ok = set_path(c->results, value);
    else if (KEY("bench", "batch")) {
        st = distq_parse_i64_list(what, value, DISTQ_MAX_BENCH_BATCHES, c->bench_batch, &c->n_bench_batch);
        for (int i = 0; !st && i < c->n_bench_batch; i++) /* each point is named by its batch */
            for (int j = 0; j < i; j++)
                if (c->bench_batch[i] == c->bench_batch[j])
                    st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: batch size %lld given twice", what,
                                         (long long)c->bench_batch[i]);
    }
    else if (KEY("bench", "min_time")) st = distq_parse_double(what, value, 0.0, &c->bench_min_time_s);
    else if (KEY("bench", "min_iters")) st = distq_parse_i64(what, value, 1, 100000000, &c->bench_min_iters);
    else if (KEY("bench", "warmup")) st = distq_parse_i64(what, value, 0, 1000000, &c->bench_warmup);
    else if (KEY("bench", "threads")) st = distq_parse_i64(what, value, 0, 4096, &c->bench_threads);
    else if (KEY("bench", "precision")) st = distq_parse_precisions(what, value, &c->bench_fp32, &c->bench_int8);
    else if (KEY("eval", "data")) ok = set_path(c->eval_data, value);
    else if (KEY("eval", "batch_size")) st = distq_parse_i64(what, value, 1, 1 << 20, &c->eval_batch_size);
    else if (KEY("run", "bind")) {
        st = distq_bind_from_name(value, &c->bind);
        if (st) st = distq_error_set(st, "%s: %s", what, distq_error_message());
    } else if (KEY("run", "concurrency")) {
        if (strcmp(value, "all") && strcmp(value, "serial"))
            st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: '%s' is not all or serial", what, value);
        c->bench_serial = strcmp(value, "serial") == 0;
    } else if (KEY("train", "data")) ok = set_path(c->train_data, value);
    else if (KEY("train", "test")) ok = set_path(c->test_data, value);
    else if (KEY("train", "checkpoint")) ok = set_path(c->checkpoint, value);
    else if (KEY("train", "output")) ok = set_path(c->trained, value);
    else if (KEY("train", "epochs")) st = distq_parse_i64(what, value, 1, 100000, &c->epochs);
    else if (KEY("train", "batch_size")) st = distq_parse_i64(what, value, 1, 1 << 20, &c->train_batch_size);
    else if (KEY("train", "seed")) st = distq_parse_i64(what, value, 0, INT64_MAX, &c->train_seed);
    else if (KEY("train", "lr_step_epochs")) st = distq_parse_i64(what, value, 0, 100000, &c->lr_step_epochs);
    else if (KEY("train", "max_steps")) st = distq_parse_i64(what, value, 0, INT64_MAX, &c->max_steps);
    else if (KEY("train", "lr")) st = distq_parse_double(what, value, 0.0, &c->lr);
    else if (KEY("train", "momentum")) st = distq_parse_double(what, value, 0.0, &c->momentum);
    else if (KEY("train", "weight_decay")) st = distq_parse_double(what, value, 0.0, &c->weight_decay);
    else if (KEY("train", "lr_gamma")) st = distq_parse_double(what, value, 0.0, &c->lr_gamma);
    else if (KEY("qat", "freeze_bn_after")) st = distq_parse_i64(what, value, 0, INT64_MAX, &c->qat_freeze_bn_after);
    else if (KEY("qat", "freeze_observers_after"))
        st = distq_parse_i64(what, value, 0, INT64_MAX, &c->qat_freeze_observers_after);
    else if (KEY("qat", "reduce_range")) st = distq_parse_auto_bool(what, value, &c->reduce_range);
    else
        st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: unknown key", what);
#undef KEY
    if (!ok) st = distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: path too long", what);
    if (st && !p->st) { /* keep the first error; inih reports its line */
        p->st = st;
        snprintf(p->msg, sizeof p->msg, "%s", distq_error_message());
    }
    return st == DISTQ_OK;
}

/* Reads the whole file for provenance (the results file records it); *n
 * gets its length (a NUL inside makes strlen shorter). */
static distq_status slurp(const char *path, char **text, size_t *n_out)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return distq_error_set(DISTQ_ERR_IO, "%s: is %s, not a config file", path,
                               S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file");
    FILE *f = fopen(path, "rb");
    if (!f) return distq_error_set(DISTQ_ERR_IO, "%s: cannot open config: %s", path, strerror(errno));
    distq_status st = DISTQ_OK;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    buf = distq_malloc((size_t)n + 1);
    if (!buf) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "out of memory reading %s", path);
        goto done;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) goto io;
    buf[n] = '\0';
    *text = buf;
    *n_out = (size_t)n;
    buf = NULL;
    goto done;
io:
    st = distq_error_set(DISTQ_ERR_IO, "%s: cannot read config: %s", path, strerror(errno));
done:
    distq_free(buf);
    fclose(f);
    return st;
}

/* What libinih (Debian's build: INI_MAX_LINE 200, no handler call for a
 * section without keys) would misread silently: a NUL byte ends its input, a
 * longer line is split and its tail parsed as a line of its own (a comment's
 * tail becomes a key), and a section header alone is never seen. */
static distq_status check_text(const char *path, const char *text, size_t n)
{
    static const char *const sections[] = {"model", "calibration", "output", "bench", "eval", "run", "train", "qat"};
    enum { MAX_CHARS = INI_MAX_LINE - 1 }; /* its reader keeps INI_MAX_LINE - 1 characters and the NUL */
    int line = 1;
    for (size_t start = 0; start < n; line++) {
        size_t end = start;
        while (end < n && text[end] != '\n') end++;
        size_t len = end - start;
        if (len && text[end - 1] == '\r') len--;
        if (memchr(text + start, '\0', len))
            return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: line %d holds a NUL byte: not a text file", path, line);
        if (len > MAX_CHARS)
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "%s: line %d has %zu characters; the INI parser (libinih) reads at most %d "
                                   "per line",
                                   path, line, len, MAX_CHARS);
        const char *s = text + start, *e = text + start + len;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        if (s < e && *s == '[') {
            const char *close = memchr(s, ']', (size_t)(e - s));
            int known = 0;
            for (size_t k = 0; close && k < sizeof sections / sizeof sections[0]; k++)
                known |= (size_t)(close - s - 1) == strlen(sections[k]) && !strncmp(s + 1, sections[k], strlen(sections[k]));
            if (!known)
                return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: line %d: unknown section %.*s (model, calibration, "
                                       "output, bench, eval, run, train, qat)",
                                       path, line, (int)(close ? close - s + 1 : e - s), s);
        }
        start = end + 1;
    }
    return DISTQ_OK;
}

distq_status distq_config_load(const char *path, distq_config *c)
{
    char *text = NULL;
    size_t n = 0;
    distq_status st = slurp(path, &text, &n);
    if (!st) st = check_text(path, text, n);
    if (st) {
        distq_free(text);
        return st;
    }
    parse_ctx p = {.c = c, .path = path};
    int line = ini_parse_string(text, on_key, &p);
    if (line != 0) {
        distq_free(text);
        if (p.st) return distq_error_set(p.st, "%s (line %d)", p.msg, line);
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "%s: syntax error on line %d", path, line);
    }
    distq_free(c->text);
    c->text = text;
    return DISTQ_OK;
}
