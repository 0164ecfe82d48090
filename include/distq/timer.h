#ifndef DISTQ_TIMER_H
#define DISTQ_TIMER_H
/* The one clock every layer times with (calibration, training, benchmarks). */

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic wall clock in seconds. */
double distq_now_s(void);

#ifdef __cplusplus
}
#endif
#endif
