/* filter_waf: the field rules of a WAF filter (filter.h: filter_validate).
 * Internal to src/cloud: called by filter.c; calls filter_text. */
#ifndef HCX_FILTER_WAF_H
#define HCX_FILTER_WAF_H

#include <jansson.h>

/* key is a field of WAF filters (`service` is not). */
int filter_waf_has_key(const char *key);
/* The rules of a WAF filter whose keys are all WAF fields (or `service`):
 * 0, or -EINVAL with *why (why may be NULL). */
int filter_validate_waf(json_t *obj, char **why);

#endif
