/* filter_hss: the rules of an HSS filter (cloud-api.md §6; filter.h).
 * Calls filter_text. */
#include "filter_hss.h"
#include "filter_text.h"
#include "why.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* HSS (cloud-api.md §6): every key but `columns` is a query parameter. */
static const char *const category_values[] = { "host", "container", NULL };
static const char *const severity_values[] = { "Security", "Low", "Medium", "High", "Critical",
                                               NULL };
static const char *const handle_status_values[] = { "unhandled", "handled", NULL };
static const char *const attack_tag_values[] = { "attack_success",    "attack_attempt",
                                                 "attack_blocked",    "abnormal_behavior",
                                                 "collapsible_host",  "system_vulnerability",
                                                 NULL };
static const char *const asset_value_values[] = { "important", "common", "test", NULL };

enum hss_kind {
    HK_ENUM,         /* a string from values */
    HK_STRING,       /* a non-empty string */
    HK_ENUM_ARRAY,   /* an array of strings from values */
    HK_STRING_ARRAY, /* an array of non-empty strings */
    HK_INT_ARRAY,    /* an array of integers 1..INT32_MAX */
    HK_LAST_DAYS,    /* an integer 1..30 */
    HK_TIME,         /* an integer >= 0, ms since the epoch */
    HK_COLUMNS,      /* a non-empty array of [key, header] string pairs: the body */
};

struct hss_field {
    const char *name;
    enum hss_kind kind;
    const char *const *values;
};

/* In the order of the table in cloud-api.md §6: the order of the checks. */
static const struct hss_field hss_fields[] = {
    { "category", HK_ENUM, category_values },
    { "enterprise_project_id", HK_STRING, NULL },
    { "last_days", HK_LAST_DAYS, NULL },
    { "begin_time", HK_TIME, NULL },
    { "end_time", HK_TIME, NULL },
    { "severity", HK_ENUM, severity_values },
    { "severity_list", HK_ENUM_ARRAY, severity_values },
    { "handle_status", HK_ENUM, handle_status_values },
    { "event_types", HK_INT_ARRAY, NULL },
    { "event_class_ids", HK_STRING_ARRAY, NULL },
    { "attack_tag", HK_ENUM, attack_tag_values },
    { "asset_value", HK_ENUM, asset_value_values },
    { "host_name", HK_STRING, NULL },
    { "host_id", HK_STRING, NULL },
    { "private_ip", HK_STRING, NULL },
    { "public_ip", HK_STRING, NULL },
    { "container_name", HK_STRING, NULL },
    { "cluster_id", HK_STRING, NULL },
    { "event_name", HK_STRING, NULL },
    { "columns", HK_COLUMNS, NULL },
    { NULL, HK_STRING, NULL },
};

/* begin_time and end_time at most 2 days apart. */
#define HSS_MAX_SPAN_MS 172800000LL
#define HSS_MAX_LAST_DAYS 30

int filter_hss_has_key(const char *key)
{
    for (const struct hss_field *f = hss_fields; f->name; f++)
        if (strcmp(f->name, key) == 0)
            return 1;
    return 0;
}

static int check_hss_string(const char *what, const json_t *v, char **why)
{
    if (!json_is_string(v)) {
        set_why(why, "%s must be a string", what);
        return -EINVAL;
    }
    if (!filter_is_plain_string(v)) {
        set_why(why, "%s must not contain a NUL byte", what);
        return -EINVAL;
    }
    if (json_string_length(v) == 0) {
        set_why(why, "%s must not be empty", what);
        return -EINVAL;
    }
    if (filter_has_control(json_string_value(v), json_string_length(v))) {
        set_why(why, "%s must not contain control characters", what);
        return -EINVAL;
    }
    return 0;
}

static int check_hss_enum(const char *what, const json_t *v, const char *const *values,
                          char **why)
{
    if (!filter_is_plain_string(v) || !filter_in_list(values, json_string_value(v))) {
        filter_set_one_of(why, what, values);
        return -EINVAL;
    }
    return 0;
}

/* A JSON integer (not 7.0, not true) in [lo, hi]. */
static int is_int_in(const json_t *v, json_int_t lo, json_int_t hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

static int check_hss_field(const struct hss_field *f, const json_t *v, char **why)
{
    char what[96]; /* field names are ours and short */
    switch (f->kind) {
    case HK_ENUM:
        return check_hss_enum(f->name, v, f->values, why);
    case HK_STRING:
        return check_hss_string(f->name, v, why);
    case HK_LAST_DAYS:
        if (!is_int_in(v, 1, HSS_MAX_LAST_DAYS)) {
            set_why(why, "%s must be an integer from 1 to %d", f->name, HSS_MAX_LAST_DAYS);
            return -EINVAL;
        }
        return 0;
    case HK_TIME:
        if (!is_int_in(v, 0, LLONG_MAX)) {
            set_why(why, "%s must be a non-negative integer (ms since the epoch)", f->name);
            return -EINVAL;
        }
        return 0;
    case HK_ENUM_ARRAY:
    case HK_STRING_ARRAY:
    case HK_INT_ARRAY:
        if (!json_is_array(v)) {
            set_why(why, "%s must be an array of %s", f->name,
                    f->kind == HK_INT_ARRAY ? "integers" : "strings");
            return -EINVAL;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            snprintf(what, sizeof what, "%s[%zu]", f->name, i);
            int rc = 0;
            if (f->kind == HK_ENUM_ARRAY) {
                rc = check_hss_enum(what, e, f->values, why);
            } else if (f->kind == HK_STRING_ARRAY) {
                rc = check_hss_string(what, e, why);
            } else if (!is_int_in(e, 1, INT32_MAX)) {
                set_why(why, "%s must be an integer from 1 to %d", what, INT32_MAX);
                rc = -EINVAL;
            }
            if (rc < 0)
                return rc;
        }
        return 0;
    case HK_COLUMNS:
        if (!json_is_array(v)) {
            set_why(why, "columns must be an array of [key, header] pairs");
            return -EINVAL;
        }
        if (json_array_size(v) == 0) {
            set_why(why, "columns must not be empty (omit it for the default columns)");
            return -EINVAL;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *pair = json_array_get(v, i);
            if (!json_is_array(pair) || json_array_size(pair) != 2) {
                set_why(why, "columns[%zu] must be a [key, header] pair of strings", i);
                return -EINVAL;
            }
            for (size_t k = 0; k < 2; k++) {
                snprintf(what, sizeof what, "columns[%zu][%zu]", i, k);
                int rc = check_hss_string(what, json_array_get(pair, k), why);
                if (rc < 0)
                    return rc;
            }
        }
        return 0;
    }
    return 0;
}

/* Unknown fields first (filter_validate), then `category`, then each field
 * in the order of hss_fields, then the rules between fields. */
int filter_validate_hss(json_t *obj, char **why)
{
    json_t *v;
    if (!json_object_get(obj, "category")) {
        set_why(why, "missing required field 'category'");
        return -EINVAL;
    }
    int rc;
    for (const struct hss_field *f = hss_fields; f->name; f++) {
        if ((v = json_object_get(obj, f->name)) &&
            ((rc = filter_check_not_null(f->name, v, f == hss_fields, why)) < 0 ||
             (rc = check_hss_field(f, v, why)) < 0))
            return rc;
    }
    const json_t *begin = json_object_get(obj, "begin_time");
    const json_t *end = json_object_get(obj, "end_time");
    if (json_object_get(obj, "last_days") && (begin || end)) {
        set_why(why, "last_days cannot be combined with begin_time/end_time");
        return -EINVAL;
    }
    if (!begin != !end) {
        set_why(why, "begin_time and end_time must be given together");
        return -EINVAL;
    }
    if (begin) {
        /* Both are in [0, JSON_INTEGER_MAX]: the difference cannot overflow. */
        json_int_t b = json_integer_value(begin), e = json_integer_value(end);
        if (e < b) {
            set_why(why, "end_time must not be before begin_time");
            return -EINVAL;
        }
        if (e - b > HSS_MAX_SPAN_MS) {
            set_why(why, "begin_time and end_time must be at most 2 days (%lld ms) apart",
                    (long long)HSS_MAX_SPAN_MS);
            return -EINVAL;
        }
    }
    return 0;
}
