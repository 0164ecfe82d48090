/* The monotonic clock (timer.h). */
#include <time.h>

#include "distq/timer.h"

double distq_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
