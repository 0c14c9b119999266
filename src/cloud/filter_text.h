/* filter_text: what the filter's rules share (messages naming user text
 * on one printable line; plain strings; null fields).  Internal to
 * src/cloud: used by filter, filter_waf and filter_hss; calls nothing else
 * of cloud/. */
#ifndef HCX_FILTER_TEXT_H
#define HCX_FILTER_TEXT_H

#include <jansson.h>
#include <stddef.h>

/* s is one of the NULL-terminated list. */
int filter_in_list(const char *const *list, const char *s);
/* A malloc'd copy of user text for a message: printable ASCII, anything
 * else as \xNN, cut after 64 bytes ("..."); NULL without memory. */
char *filter_quote(const char *s, size_t len);
/* *why = "<what> must be one of a, b, c" (set_why). */
void filter_set_one_of(char **why, const char *what, const char *const *values);
/* A string without NUL bytes (jansson can hold them in objects built by
 * hand; the parser never makes them). */
int filter_is_plain_string(const json_t *v);
/* s[0..len) holds a control character. */
int filter_has_control(const char *s, size_t len);
/* Null is refused for every field: -EINVAL with *why, else 0. */
int filter_check_not_null(const char *key, const json_t *v, int required, char **why);

#endif
