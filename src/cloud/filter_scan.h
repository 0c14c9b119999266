/* filter_scan: the incremental JSON scanner of filter_parse (filter.h).
 * Internal to src/cloud: called by filter.c; calls nothing. */
#ifndef HCX_FILTER_SCAN_H
#define HCX_FILTER_SCAN_H

#include <jansson.h>
#include <stddef.h>

enum scan_result { SCAN_PREFIX, SCAN_COMPLETE, SCAN_BAD };

static inline int filter_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
static inline int filter_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Follows the grammar jansson accepts and says whether p[0..len) is a
 * complete text, a proper prefix of one, or neither (SCAN_BAD: *bad_at is
 * the offending byte's offset and *what jansson-style words for it). */
enum scan_result filter_scan_json(const unsigned char *p, size_t len, size_t *bad_at,
                                  const char **what);

#endif
