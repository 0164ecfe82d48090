/* The observer kinds' names, as config files and quantized-model files
 * store them. */
#include <string.h>

#include "distq/observers.h"

static const char *const kind_names[DISTQ_OBSERVER_COUNT] = {"histogram", "minmax"};

const char *distq_observer_kind_name(distq_observer_kind k)
{
    return ((int)k >= 0 && k < DISTQ_OBSERVER_COUNT) ? kind_names[k] : "?";
}

distq_status distq_observer_kind_from_name(const char *name, distq_observer_kind *out)
{
    for (int k = 0; k < DISTQ_OBSERVER_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (distq_observer_kind)k;
            return DISTQ_OK;
        }
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "unknown observer '%s' (histogram, minmax)", name);
}
