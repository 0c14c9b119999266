/* filter: the export filter written to `new`, checked before anything is
 * sent so that a bad filter fails the write with EINVAL and nothing is
 * submitted.  Two services (filesystem.md, "Submitting a job: new"):
 *
 *   - WAF attack events (`"service": "waf"`, or no `service`): the fields of
 *     the WAF submit body (cloud-api.md §2), sent as the POST body;
 *   - HSS security events (`"service": "hss"`): the query parameters of the
 *     HSS export call (cloud-api.md §6) as JSON keys, plus `columns`, the
 *     optional [key, header] pairs sent as the POST body.
 *
 * `service` is the mount's own key: it is never sent.
 *
 * Owns: the incremental "is this buffer a complete JSON text yet?" decision
 * for writes split over several write(2) calls, the field rules, the body
 * that is sent and the HSS query parameters.  Pure functions, no I/O,
 * thread-safe. */
#ifndef HCX_FILTER_H
#define HCX_FILTER_H

#include "service.h"

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
 *   passes filter_validate().
 *   *out = the whole validated object, `service` included: the job's filter
 *   as the filesystem keeps it (caller decrefs).
 *   *body = what is sent as the POST body (malloc'd, compact JSON, keys in
 *   the order written):
 *     WAF: the filter without `service`;
 *     HSS: the `columns` array ([[key,header],...]), or NULL when the
 *          filter has no `columns` (send no body: the service exports its
 *          default columns).  The query parameters come from
 *          filter_hss_query().
 *   So *body == NULL with COMPLETE means "HSS, no body", never an error.
 * INVALID: bad JSON, trailing data, not an object, over FILTER_MAX_SIZE, or
 *   fails filter_validate(); *why = malloc'd one-line message naming the
 *   field or problem (NULL only if even that allocation failed).
 *
 * Each of out, body and why may be NULL when the caller does not want it;
 * the ones given are set to NULL unless filled. */
enum filter_parse_result filter_parse(const char *buf, size_t len, json_t **out, char **body,
                                      char **why);

/* The field rules.  An object; `service` absent, "waf" or "hss".
 *
 * WAF: `recent` a string in {yesterday, today, 3days, 1week, 1month};
 *   `dump_columns` a non-empty array of non-empty strings (names are the
 *   cloud's to judge); the optional include/exclude arrays of strings (ids,
 *   nids, attacks, nattacks, rules, nrules, sips, nsips, urls, nurls,
 *   actions, nactions, hosts, instances) and the optional strings sip, url.
 * HSS: `category` host|container (required); enterprise_project_id;
 *   last_days 1..30 (not with begin_time/end_time); begin_time and end_time
 *   (ms since the epoch, both or neither, end >= begin, at most 2 days
 *   apart); severity and severity_list[] in {Security, Low, Medium, High,
 *   Critical}; handle_status unhandled|handled; event_types[] integers
 *   1..2147483647; event_class_ids[] strings; attack_tag; asset_value
 *   important|common|test; host_name, host_id, private_ip, public_ip,
 *   container_name, cluster_id, event_name; columns a non-empty array of
 *   [key, header] pairs.  Every HSS string is non-empty and holds no
 *   control character; integers are JSON integers (not 7.0, not true).
 *
 * Both: any other key, or null for any field, is refused; strings holding
 * NUL bytes (only possible in objects built by hand) are refused.  Empty
 * arrays mean no restriction (except dump_columns and columns).
 * Returns 0, or -EINVAL with *why (malloc'd, one line; why may be NULL). */
int filter_validate(const json_t *filter, char **why);

/* The service of a validated filter: SERVICE_HSS when `service` is "hss",
 * else SERVICE_WAF. */
enum cloud_service filter_service_of(const json_t *filter);

/* One query parameter: name=value, both unencoded (the caller
 * percent-encodes them). */
struct filter_param {
    const char *name;
    const char *value;
};

/* HSS: the query parameters of POST /v5/{project}/event/export for a
 * validated HSS filter, in a deterministic order (the filter's key order),
 * arrays as repeated names in array order (an empty array gives none),
 * integers in decimal; `columns` and `service` are not parameters.
 * *out is ONE malloc'd block holding the array and the strings: free(*out)
 * releases all.  Returns 0, -ENOMEM, or -EINVAL when filter is not a valid
 * HSS filter; on failure *out = NULL and *n = 0. */
int filter_hss_query(const json_t *filter, struct filter_param **out, size_t *n);

#endif
