#ifndef DISTQ_STATUS_H
#define DISTQ_STATUS_H
/*
 * Status codes and the per-thread error message.
 *
 * Every fallible distq function returns a distq_status. On failure it also
 * records one human-readable line (naming the file, dataset, tensor, node or
 * config key at fault) that the CLI prints:
 *
 *     distq_status st = distq_model_load(path, &g);
 *     if (st != DISTQ_OK) fprintf(stderr, "error: %s\n", distq_error_message());
 *
 * Library code never prints and never calls exit()/abort().
 */
#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DISTQ_OK = 0,
    DISTQ_ERR_NOMEM,
    DISTQ_ERR_INVALID_ARG,
    DISTQ_ERR_UNSUPPORTED,
    DISTQ_ERR_FORMAT,
    DISTQ_ERR_IO,
    DISTQ_ERR_MPI,
    DISTQ_ERR_DNNL,
    DISTQ_ERR_HWLOC,
    DISTQ_STATUS_COUNT
} distq_status;

/* Static text for a status code ("out of memory", ...). */
const char *distq_status_str(distq_status st);

/* Records a printf-style message for the calling thread and returns st. The
 * arguments may include distq_error_message() (to prefix the current one). */
distq_status distq_error_set(distq_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" if none). Borrowed. */
const char *distq_error_message(void);

/* Clears the calling thread's message. */
void distq_error_clear(void);

/* Runs a fallible call and returns its status from the caller if it failed
 * (for functions that own nothing to clean up). */
#define DISTQ_TRY(call)                    \
    do {                                   \
        distq_status distq_try_st_ = (call); \
        if (distq_try_st_) return distq_try_st_; \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
