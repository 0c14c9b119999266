/* filter_hss: the field rules of an HSS filter (filter.h: filter_validate).
 * Internal to src/cloud: called by filter.c; calls filter_text. */
#ifndef HCX_FILTER_HSS_H
#define HCX_FILTER_HSS_H

#include <jansson.h>

/* key is a field of HSS filters (`service` is not). */
int filter_hss_has_key(const char *key);
/* The rules of an HSS filter whose keys are all HSS fields (or `service`):
 * 0, or -EINVAL with *why (why may be NULL). */
int filter_validate_hss(json_t *obj, char **why);

#endif
