/* filter: the export filter written to `new`, checked exactly as the cloud
 * checks a submit body (cloud-api.md §2) so that a bad filter fails the
 * write with EINVAL and nothing is sent.
 *
 * Owns: the incremental "is this buffer a complete JSON text yet?" decision
 * for writes split over several write(2) calls, the field and column rules,
 * and the compact body that is sent.  Pure functions, no I/O, thread-safe. */
#ifndef HCX_FILTER_H
#define HCX_FILTER_H

#include <jansson.h>
#include <stddef.h>

/* Largest buffer filter_parse() accepts. */
#define FILTER_MAX_SIZE (1024 * 1024)

enum filter_parse_result { FILTER_INCOMPLETE, FILTER_COMPLETE, FILTER_INVALID };

/* Incremental parse for the `new` file: buf holds everything written so far
 * on one descriptor (it may contain NUL bytes; len counts them).
 *
 * INCOMPLETE: blank, or a proper prefix of some JSON text.  Writes split
 *   anywhere (inside an escape, a UTF-8 sequence, a number or a literal)
 *   stay INCOMPLETE until the text is complete.
 * COMPLETE: one complete JSON object followed only by whitespace, and it
 *   passes filter_validate(); *out = the object (caller decrefs), *body =
 *   compact JSON text to send (malloc'd, JSON_COMPACT|JSON_PRESERVE_ORDER).
 * INVALID: bad JSON, trailing data, not an object, over FILTER_MAX_SIZE, or
 *   fails filter_validate(); *why = malloc'd one-line message naming the
 *   field or problem (NULL only if even that allocation failed).
 *
 * Each of out, body and why may be NULL when the caller does not want it;
 * the ones given are set to NULL unless filled. */
enum filter_parse_result filter_parse(const char *buf, size_t len, json_t **out, char **body,
                                      char **why);

/* The field rules: object only; `recent` a string in {yesterday, today,
 * 3days, 1week, 1month}; `dump_columns` a non-empty array of column names
 * (filter_columns); the optional include/exclude arrays of strings and the
 * optional strings sip and url; any other key, or null for any field, is
 * refused.  Returns 0, or -EINVAL with *why (malloc'd, one line; why may be
 * NULL). */
int filter_validate(const json_t *filter, char **why);

/* The 20 WAF event field names valid in dump_columns, NULL-terminated. */
extern const char *const filter_columns[];

#endif
