/* filter_waf: the rules of a WAF filter (cloud-api.md §2; filter.h).
 * Calls filter_text. */
#include "filter_waf.h"
#include "filter_text.h"
#include "why.h"

#include <errno.h>
#include <string.h>

/* ---- the fields ---- */

/* WAF (cloud-api.md §2).  dump_columns has no closed list: the cloud judges
 * column names (it answers 400), the filter checks only their shape. */
static const char *const recent_values[] = { "yesterday", "today", "3days", "1week", "1month",
                                             NULL };

static const char *const waf_array_fields[] = { "ids",     "nids",     "attacks", "nattacks",
                                                "rules",   "nrules",   "sips",    "nsips",
                                                "urls",    "nurls",    "actions", "nactions",
                                                "hosts",   "instances", NULL };

static const char *const waf_string_fields[] = { "sip", "url", NULL };

int filter_waf_has_key(const char *key)
{
    return !strcmp(key, "recent") || !strcmp(key, "dump_columns") ||
           filter_in_list(waf_array_fields, key) || filter_in_list(waf_string_fields, key);
}

static int check_string_array(const char *name, const json_t *v, char **why)
{
    if (!json_is_array(v)) {
        set_why(why, "%s must be an array of strings", name);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!filter_is_plain_string(e)) {
            set_why(why, json_is_string(e) ? "%s[%zu] must not contain a NUL byte"
                                           : "%s[%zu] must be a string", name, i);
            return -EINVAL;
        }
    }
    return 0;
}

static int check_recent(const json_t *v, char **why)
{
    if (!filter_is_plain_string(v) || !filter_in_list(recent_values, json_string_value(v))) {
        filter_set_one_of(why, "recent", recent_values);
        return -EINVAL;
    }
    return 0;
}

/* Shape only: a non-empty array of non-empty strings. */
static int check_dump_columns(const json_t *v, char **why)
{
    int rc = check_string_array("dump_columns", v, why);
    if (rc < 0)
        return rc;
    if (json_array_size(v) == 0) {
        set_why(why, "dump_columns must not be empty");
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        if (json_string_length(json_array_get(v, i)) == 0) {
            set_why(why, "dump_columns[%zu] must not be empty", i);
            return -EINVAL;
        }
    }
    return 0;
}

/* Checks in the emulator's order (unknown fields, which filter_validate
 * refuses first, then recent, dump_columns, arrays, strings) so that a
 * filter with several faults gets the same first complaint from both. */
int filter_validate_waf(json_t *obj, char **why)
{
    json_t *v;
    int rc;
    if (!(v = json_object_get(obj, "recent"))) {
        set_why(why, "missing required field 'recent'");
        return -EINVAL;
    }
    if ((rc = filter_check_not_null("recent", v, 1, why)) < 0 || (rc = check_recent(v, why)) < 0)
        return rc;
    if (!(v = json_object_get(obj, "dump_columns"))) {
        set_why(why, "missing required field 'dump_columns'");
        return -EINVAL;
    }
    if ((rc = filter_check_not_null("dump_columns", v, 1, why)) < 0 ||
        (rc = check_dump_columns(v, why)) < 0)
        return rc;
    for (const char *const *f = waf_array_fields; *f; f++) {
        if ((v = json_object_get(obj, *f)) &&
            ((rc = filter_check_not_null(*f, v, 0, why)) < 0 || (rc = check_string_array(*f, v, why)) < 0))
            return rc;
    }
    for (const char *const *f = waf_string_fields; *f; f++) {
        if ((v = json_object_get(obj, *f)) && (rc = filter_check_not_null(*f, v, 0, why)) < 0)
            return rc;
        if (v && !filter_is_plain_string(v)) {
            set_why(why, json_is_string(v) ? "%s must not contain a NUL byte" : "%s must be a string",
                    *f);
            return -EINVAL;
        }
    }
    return 0;
}

/* -- HSS -- */
