/* filter: validates the export filter written to `new` before anything is
 * sent (WAF: cloud-api.md §2; HSS: §6), decides after each write whether
 * the bytes so far are an incomplete, a complete or an invalid text, and
 * builds what is sent (the WAF body; the HSS body and query parameters).
 *
 * jansson alone cannot make the incremental decision: it reports a text cut
 * inside an escape ("\u00"), a UTF-8 sequence, a number ("1e") or a literal
 * ("tr") as a syntax error, not as premature end.  So a small scanner that
 * follows jansson's grammar decides "prefix or not" first, and jansson only
 * parses texts the scanner found complete (or names the error in bad ones). */
#include "filter.h"
#include "why.h"
#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Longest piece of user text quoted in a message: enough to recognise it,
 * short enough that a reply line stays readable. */
#define QUOTE_MAX 64

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static const struct hss_field *hss_field_of(const char *key)
{
    for (const struct hss_field *f = hss_fields; f->name; f++)
        if (strcmp(f->name, key) == 0)
            return f;
    return NULL;
}

static int is_waf_key(const char *key)
{
    return !strcmp(key, "recent") || !strcmp(key, "dump_columns") ||
           in_list(waf_array_fields, key) || in_list(waf_string_fields, key);
}

/* Appends user-supplied bytes so that the message stays one printable line
 * (it is sent back as "error: <why>\n"): anything but printable ASCII
 * becomes \xNN, and long text is cut. */
static void put_sanitized(struct strbuf *sb, const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            strbuf_putc(sb, (char)c);
        else if (c == '\\')
            strbuf_puts(sb, "\\\\");
        else
            strbuf_printf(sb, "\\x%02X", c);
    }
    if (len > max)
        strbuf_puts(sb, "...");
}

/* Returns a malloc'd sanitized copy of user text for use in set_why(). */
static char *quote(const char *s, size_t len)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, "");
    put_sanitized(&sb, s, len, QUOTE_MAX);
    return strbuf_finish(&sb);
}

/* "<what> must be one of a, b, c" */
static void set_one_of(char **why, const char *what, const char *const *values)
{
    struct strbuf sb = STRBUF_INIT;
    for (const char *const *v = values; *v; v++) {
        if (v != values)
            strbuf_puts(&sb, ", ");
        strbuf_puts(&sb, *v);
    }
    char *list = strbuf_finish(&sb);
    set_why(why, "%s must be one of %s", what, list ? list : "the documented values");
    free(list);
}

/* ---- validation ---- */

/* jansson can hold strings with NUL bytes when a caller builds the object
 * itself; strcmp would then see "today\0x" as "today".  The parser never
 * produces them (JSON_ALLOW_NUL is off), validation refuses them too. */
static int is_plain_string(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* Null is refused for every field (the cloud treats it as a type error);
 * the message says how to get "no restriction" instead. */
static int check_not_null(const char *key, const json_t *v, int required, char **why)
{
    if (!json_is_null(v))
        return 0;
    set_why(why, required ? "%s must not be null" : "%s must not be null (omit it instead)", key);
    return -EINVAL;
}

static int refuse_unknown(const char *key, enum filter_service svc, char **why)
{
    /* Keys cannot hold NUL (JSON_ALLOW_NUL is off), so strlen is the length. */
    char *q = quote(key, strlen(key));
    const char *hint = "";
    if (svc == FILTER_WAF && hss_field_of(key))
        hint = " (an hss field: add \"service\":\"hss\")";
    else if (svc == FILTER_HSS && is_waf_key(key))
        hint = " (a waf field, and this is an hss filter)";
    set_why(why, "unknown field '%s'%s", q ? q : "?", hint);
    free(q);
    return -EINVAL;
}

/* `service`: absent (waf), "waf" or "hss". */
static int check_service(const json_t *filter, enum filter_service *svc, char **why)
{
    const json_t *v = json_object_get(filter, "service");
    *svc = FILTER_WAF;
    if (!v)
        return 0;
    if (json_is_null(v)) {
        set_why(why, "service must not be null (omit it for waf)");
        return -EINVAL;
    }
    if (is_plain_string(v) && strcmp(json_string_value(v), "waf") == 0)
        return 0;
    if (is_plain_string(v) && strcmp(json_string_value(v), "hss") == 0) {
        *svc = FILTER_HSS;
        return 0;
    }
    if (json_is_string(v)) {
        char *q = quote(json_string_value(v), json_string_length(v));
        set_why(why, "service must be \"waf\" or \"hss\", not '%s'", q ? q : "?");
        free(q);
    } else {
        set_why(why, "service must be the string \"waf\" or \"hss\"");
    }
    return -EINVAL;
}

/* -- WAF -- */

static int check_string_array(const char *name, const json_t *v, char **why)
{
    if (!json_is_array(v)) {
        set_why(why, "%s must be an array of strings", name);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!is_plain_string(e)) {
            set_why(why, json_is_string(e) ? "%s[%zu] must not contain a NUL byte"
                                           : "%s[%zu] must be a string", name, i);
            return -EINVAL;
        }
    }
    return 0;
}

static int check_recent(const json_t *v, char **why)
{
    if (!is_plain_string(v) || !in_list(recent_values, json_string_value(v))) {
        set_one_of(why, "recent", recent_values);
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

/* Checks in the emulator's order (unknown fields, recent, dump_columns,
 * arrays, strings) so that a filter with several faults gets the same first
 * complaint from both. */
static int validate_waf(json_t *obj, char **why)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "service") && !is_waf_key(key))
            return refuse_unknown(key, FILTER_WAF, why);
    }
    int rc;
    if (!(v = json_object_get(obj, "recent"))) {
        set_why(why, "missing required field 'recent'");
        return -EINVAL;
    }
    if ((rc = check_not_null("recent", v, 1, why)) < 0 || (rc = check_recent(v, why)) < 0)
        return rc;
    if (!(v = json_object_get(obj, "dump_columns"))) {
        set_why(why, "missing required field 'dump_columns'");
        return -EINVAL;
    }
    if ((rc = check_not_null("dump_columns", v, 1, why)) < 0 ||
        (rc = check_dump_columns(v, why)) < 0)
        return rc;
    for (const char *const *f = waf_array_fields; *f; f++) {
        if ((v = json_object_get(obj, *f)) &&
            ((rc = check_not_null(*f, v, 0, why)) < 0 || (rc = check_string_array(*f, v, why)) < 0))
            return rc;
    }
    for (const char *const *f = waf_string_fields; *f; f++) {
        if ((v = json_object_get(obj, *f)) && (rc = check_not_null(*f, v, 0, why)) < 0)
            return rc;
        if (v && !is_plain_string(v)) {
            set_why(why, json_is_string(v) ? "%s must not contain a NUL byte" : "%s must be a string",
                    *f);
            return -EINVAL;
        }
    }
    return 0;
}

/* -- HSS -- */

/* A non-empty string without NUL or control characters: HSS strings are
 * exact values (names, ids, addresses) that go into a URL or a CSV header. */
static int check_hss_string(const char *what, const json_t *v, char **why)
{
    if (!json_is_string(v)) {
        set_why(why, "%s must be a string", what);
        return -EINVAL;
    }
    if (!is_plain_string(v)) {
        set_why(why, "%s must not contain a NUL byte", what);
        return -EINVAL;
    }
    if (json_string_length(v) == 0) {
        set_why(why, "%s must not be empty", what);
        return -EINVAL;
    }
    if (has_control(json_string_value(v), json_string_length(v))) {
        set_why(why, "%s must not contain control characters", what);
        return -EINVAL;
    }
    return 0;
}

static int check_hss_enum(const char *what, const json_t *v, const char *const *values,
                          char **why)
{
    if (!is_plain_string(v) || !in_list(values, json_string_value(v))) {
        set_one_of(why, what, values);
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

/* Unknown fields first, then `category`, then each field in the order of
 * hss_fields, then the rules between fields. */
static int validate_hss(json_t *obj, char **why)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "service") && !hss_field_of(key))
            return refuse_unknown(key, FILTER_HSS, why);
    }
    if (!json_object_get(obj, "category")) {
        set_why(why, "missing required field 'category'");
        return -EINVAL;
    }
    int rc;
    for (const struct hss_field *f = hss_fields; f->name; f++) {
        if ((v = json_object_get(obj, f->name)) &&
            ((rc = check_not_null(f->name, v, f == hss_fields, why)) < 0 ||
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

int filter_validate(const json_t *filter, char **why)
{
    if (why)
        *why = NULL;
    if (!json_is_object(filter)) {
        set_why(why, "filter must be a JSON object");
        return -EINVAL;
    }
    enum filter_service svc;
    int rc = check_service(filter, &svc, why);
    if (rc < 0)
        return rc;
    /* jansson's iterators take a non-const object; nothing is modified. */
    json_t *obj = (json_t *)filter;
    return svc == FILTER_HSS ? validate_hss(obj, why) : validate_waf(obj, why);
}

enum filter_service filter_service_of(const json_t *filter)
{
    const json_t *v = json_object_get(filter, "service");
    return is_plain_string(v) && strcmp(json_string_value(v), "hss") == 0 ? FILTER_HSS
                                                                          : FILTER_WAF;
}

/* ---- HSS query parameters ---- */

/* Two passes over the filter: the first (params == NULL) counts the
 * parameters and the bytes of their strings, the second copies them into
 * the block. */
struct query_walk {
    struct filter_param *params;
    char *strings;
    size_t n;
    size_t bytes;
};

static const char *walk_copy(struct query_walk *w, const char *s, size_t len)
{
    w->bytes += len + 1;
    if (!w->params)
        return NULL;
    char *d = w->strings;
    memcpy(d, s, len);
    d[len] = '\0';
    w->strings += len + 1;
    return d;
}

static void walk_param(struct query_walk *w, const char *name, const json_t *v)
{
    char num[32];
    const char *s;
    size_t len;
    if (json_is_integer(v)) {
        int k = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
        len = k > 0 ? (size_t)k : 0;
    } else {
        s = json_string_value(v);
        len = json_string_length(v);
    }
    const char *value = walk_copy(w, s, len);
    if (w->params) {
        w->params[w->n].name = name;
        w->params[w->n].value = value;
    }
    w->n++;
}

static void walk_query(const json_t *filter, struct query_walk *w)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)filter, key, v) {
        if (!strcmp(key, "service") || !strcmp(key, "columns"))
            continue;
        if (json_is_array(v)) {
            /* One copy of the name serves all its repeats. */
            const char *name = NULL;
            for (size_t i = 0; i < json_array_size(v); i++) {
                if (i == 0)
                    name = walk_copy(w, key, strlen(key));
                walk_param(w, name, json_array_get(v, i));
            }
        } else {
            walk_param(w, walk_copy(w, key, strlen(key)), v);
        }
    }
}

int filter_hss_query(const json_t *filter, struct filter_param **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (filter_service_of(filter) != FILTER_HSS || filter_validate(filter, NULL) < 0)
        return -EINVAL;
    struct query_walk w = { NULL, NULL, 0, 0 };
    walk_query(filter, &w);
    if (w.n > (SIZE_MAX - w.bytes) / sizeof(struct filter_param))
        return -ENOMEM;
    size_t array = w.n * sizeof(struct filter_param);
    char *block = malloc(array + w.bytes > 0 ? array + w.bytes : 1);
    if (!block)
        return -ENOMEM;
    struct query_walk fill = { (struct filter_param *)(void *)block, block + array, 0, 0 };
    walk_query(filter, &fill);
    *out = fill.params;
    *n = fill.n;
    return 0;
}

/* ---- incremental scanner ---- */

enum scan_result { SCAN_PREFIX, SCAN_COMPLETE, SCAN_BAD };

enum scan_state {
    ST_VALUE,          /* a value must come (after ':' or ',' in an array) */
    ST_VALUE_OR_CLOSE, /* just after '[' */
    ST_KEY_OR_CLOSE,   /* just after '{' */
    ST_KEY,            /* after ',' in an object */
    ST_COLON,          /* after a key */
    ST_AFTER,          /* after a value inside a container: ',' or the closer */
    ST_END,            /* the top-level value is done: only whitespace may follow */
    ST_STRING,
    ST_ESCAPE,
    ST_UHEX,
    ST_UTF8,
    ST_NUM_MINUS, /* "-": a digit must follow */
    ST_NUM_ZERO,  /* "0": no more integer digits */
    ST_NUM_INT,
    ST_NUM_DOT, /* "1.": a digit must follow */
    ST_NUM_FRAC,
    ST_NUM_E,     /* "1e": sign or digit */
    ST_NUM_ESIGN, /* "1e+": digit */
    ST_NUM_EXP,
    ST_LITERAL,
};

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_xdigit(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Follows the grammar jansson accepts (RFC 8259, strict UTF-8, no trailing
 * commas, no leading zeros, control characters refused in strings) and
 * says whether buf is a complete text, a proper prefix of one, or neither.
 * It is never stricter than jansson on a prefix; where it is laxer (\u0000,
 * lone surrogate escapes) jansson rejects the text once it is complete. */
static enum scan_result scan_json(const unsigned char *p, size_t len, size_t *bad_at,
                                  const char **what)
{
    char stack[JSON_PARSER_MAX_DEPTH];
    size_t depth = 0;
    enum scan_state st = ST_VALUE;
    int in_key = 0;
    unsigned need = 0;                  /* UTF-8 continuation bytes or \u digits left */
    unsigned char lo = 0x80, hi = 0xBF; /* range of the next continuation byte */
    const char *lit = NULL;

#define BAD(msg)                                                                                   \
    do {                                                                                           \
        *bad_at = i;                                                                               \
        *what = (msg);                                                                             \
        return SCAN_BAD;                                                                           \
    } while (0)
#define VALUE_DONE() (st = depth ? ST_AFTER : ST_END)

    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        switch (st) {
        case ST_VALUE:
        case ST_VALUE_OR_CLOSE:
            if (is_ws(c))
                break;
            if (c == ']' && st == ST_VALUE_OR_CLOSE) {
                depth--;
                VALUE_DONE();
                break;
            }
            if (c == '{' || c == '[') {
                if (depth == sizeof stack)
                    BAD("maximum parsing depth reached");
                stack[depth++] = (char)c;
                st = c == '{' ? ST_KEY_OR_CLOSE : ST_VALUE_OR_CLOSE;
            } else if (c == '"') {
                in_key = 0;
                st = ST_STRING;
            } else if (c == '-') {
                st = ST_NUM_MINUS;
            } else if (c == '0') {
                st = ST_NUM_ZERO;
            } else if (is_digit(c)) {
                st = ST_NUM_INT;
            } else if (c == 't' || c == 'f' || c == 'n') {
                lit = c == 't' ? "rue" : c == 'f' ? "alse" : "ull";
                st = ST_LITERAL;
            } else {
                BAD("invalid token");
            }
            break;
        case ST_KEY_OR_CLOSE:
        case ST_KEY:
            if (is_ws(c))
                break;
            if (c == '}' && st == ST_KEY_OR_CLOSE) {
                depth--;
                VALUE_DONE();
            } else if (c == '"') {
                in_key = 1;
                st = ST_STRING;
            } else {
                BAD("string or '}' expected");
            }
            break;
        case ST_COLON:
            if (is_ws(c))
                break;
            if (c != ':')
                BAD("':' expected");
            st = ST_VALUE;
            break;
        case ST_AFTER:
            if (is_ws(c))
                break;
            if (c == ',') {
                st = stack[depth - 1] == '{' ? ST_KEY : ST_VALUE;
            } else if ((c == '}' && stack[depth - 1] == '{') ||
                       (c == ']' && stack[depth - 1] == '[')) {
                depth--;
                VALUE_DONE();
            } else {
                BAD(stack[depth - 1] == '{' ? "',' or '}' expected" : "',' or ']' expected");
            }
            break;
        case ST_END:
            if (!is_ws(c))
                BAD("end of file expected");
            break;
        case ST_STRING:
            if (c == '"') {
                if (in_key)
                    st = ST_COLON;
                else
                    VALUE_DONE();
            } else if (c == '\\') {
                st = ST_ESCAPE;
            } else if (c < 0x20) {
                BAD("control character in string");
            } else if (c >= 0x80) {
                /* Well-formed UTF-8 (RFC 3629): no overlongs, no surrogates,
                 * nothing above U+10FFFF; same as jansson's utf8_check_full. */
                lo = 0x80, hi = 0xBF;
                if (c >= 0xC2 && c <= 0xDF)
                    need = 1;
                else if (c >= 0xE0 && c <= 0xEF)
                    need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
                else if (c >= 0xF0 && c <= 0xF4)
                    need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
                else
                    BAD("invalid UTF-8");
                st = ST_UTF8;
            }
            break;
        case ST_UTF8:
            if (c < lo || c > hi)
                BAD("invalid UTF-8");
            lo = 0x80, hi = 0xBF;
            if (--need == 0)
                st = ST_STRING;
            break;
        case ST_ESCAPE:
            if (c == 'u') {
                need = 4;
                st = ST_UHEX;
            } else if (c && strchr("\"\\/bfnrt", c)) {
                st = ST_STRING;
            } else {
                BAD("invalid escape");
            }
            break;
        case ST_UHEX:
            if (!is_xdigit(c))
                BAD("invalid escape");
            if (--need == 0)
                st = ST_STRING;
            break;
        case ST_NUM_MINUS:
            if (!is_digit(c))
                BAD("invalid number");
            st = c == '0' ? ST_NUM_ZERO : ST_NUM_INT;
            break;
        case ST_NUM_ZERO:
        case ST_NUM_INT:
        case ST_NUM_FRAC:
        case ST_NUM_EXP:
            if (is_digit(c) && st != ST_NUM_ZERO)
                break;
            if (is_digit(c))
                BAD("invalid number"); /* leading zero */
            if (c == '.' && (st == ST_NUM_ZERO || st == ST_NUM_INT)) {
                st = ST_NUM_DOT;
            } else if ((c == 'e' || c == 'E') && st != ST_NUM_EXP) {
                st = ST_NUM_E;
            } else {
                /* The number ended; this byte belongs to what follows it. */
                VALUE_DONE();
                continue;
            }
            break;
        case ST_NUM_DOT:
            if (!is_digit(c))
                BAD("invalid number");
            st = ST_NUM_FRAC;
            break;
        case ST_NUM_E:
            if (c == '+' || c == '-') {
                st = ST_NUM_ESIGN;
                break;
            }
            /* fall through */
        case ST_NUM_ESIGN:
            if (!is_digit(c))
                BAD("invalid number");
            st = ST_NUM_EXP;
            break;
        case ST_LITERAL:
            if (c != (unsigned char)*lit)
                BAD("invalid token");
            if (*++lit == '\0')
                VALUE_DONE();
            break;
        }
        i++;
    }
#undef BAD
#undef VALUE_DONE
    return st == ST_END ? SCAN_COMPLETE : SCAN_PREFIX;
}

/* ---- the parse entry point ---- */

static void position_of(const char *buf, size_t pos, size_t *line, size_t *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < pos; i++) {
        if (buf[i] == '\n')
            ++*line, *column = 1;
        else
            ++*column;
    }
}

static void set_json_why(char **why, size_t line, size_t column, const char *text)
{
    char *q = quote(text, strlen(text));
    set_why(why, "invalid JSON at line %zu column %zu: %s", line, column, q ? q : "?");
    free(q);
}

/* Only objects are valid filters, so a text that starts otherwise is refused
 * at once (a number like "12" could still grow, but never into an object). */
static void set_not_object_why(char **why, const char *buf, size_t at)
{
    unsigned char c = (unsigned char)buf[at];
    const char *kind = c == '[' ? "an array"
                     : c == '"' ? "a string"
                     : (c == '-' || is_digit(c)) ? "a number"
                     : NULL;
    if (kind) {
        set_why(why, "filter must be a JSON object, not %s", kind);
        return;
    }
    size_t line, column;
    position_of(buf, at, &line, &column);
    set_json_why(why, line, column, "a filter must be a JSON object starting with '{'");
}

/* What is sent as the POST body of a validated filter (see filter.h):
 * WAF the filter without `service`, HSS its `columns` or nothing. */
static int encode_body(json_t *filter, char **body)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    *body = NULL;
    if (filter_service_of(filter) == FILTER_HSS) {
        json_t *columns = json_object_get(filter, "columns");
        if (columns && !(*body = json_dumps(columns, flags)))
            return -ENOMEM;
        return 0;
    }
    if (!json_object_get(filter, "service"))
        return (*body = json_dumps(filter, flags)) ? 0 : -ENOMEM;
    /* A shallow copy keeps the key order; its values are shared. */
    json_t *sent = json_copy(filter);
    if (!sent || json_object_del(sent, "service") < 0) {
        json_decref(sent);
        return -ENOMEM;
    }
    *body = json_dumps(sent, flags);
    json_decref(sent);
    return *body ? 0 : -ENOMEM;
}

enum filter_parse_result filter_parse(const char *buf, size_t len, json_t **out, char **body,
                                      char **why)
{
    if (out)
        *out = NULL;
    if (body)
        *body = NULL;
    if (why)
        *why = NULL;
    if (len > FILTER_MAX_SIZE) {
        set_why(why, "filter larger than 1 MiB");
        return FILTER_INVALID;
    }
    size_t start = 0;
    while (start < len && is_ws((unsigned char)buf[start]))
        start++;
    if (start == len)
        return FILTER_INCOMPLETE;
    if (buf[start] != '{') {
        set_not_object_why(why, buf, start);
        return FILTER_INVALID;
    }

    size_t bad_at = 0;
    const char *what = NULL;
    enum scan_result sr = scan_json((const unsigned char *)buf, len, &bad_at, &what);
    if (sr == SCAN_PREFIX)
        return FILTER_INCOMPLETE;

    json_error_t err;
    /* flags 0: no JSON_ALLOW_NUL (NUL inside strings is refused), objects or
     * arrays only, nothing but whitespace after the value. */
    json_t *j = json_loadb(buf, len, 0, &err);
    if (!j) {
        if (sr == SCAN_BAD && json_error_code(&err) == json_error_premature_end_of_input) {
            /* Cannot happen unless the two grammars differ; the scanner's
             * own finding is then the better message. */
            size_t line, column;
            position_of(buf, bad_at, &line, &column);
            set_json_why(why, line, column, what);
        } else if (json_error_code(&err) == json_error_out_of_memory) {
            set_why(why, "out of memory while parsing the filter");
        } else {
            set_json_why(why, err.line > 0 ? (size_t)err.line : 1,
                         err.column > 0 ? (size_t)err.column : 1, err.text);
        }
        return FILTER_INVALID;
    }
    if (sr == SCAN_BAD) {
        /* Same as above: trust the stricter verdict. */
        json_decref(j);
        size_t line, column;
        position_of(buf, bad_at, &line, &column);
        set_json_why(why, line, column, what);
        return FILTER_INVALID;
    }
    if (filter_validate(j, why) < 0) {
        json_decref(j);
        return FILTER_INVALID;
    }
    if (body && encode_body(j, body) < 0) {
        json_decref(j);
        set_why(why, "out of memory while encoding the filter");
        return FILTER_INVALID;
    }
    if (out)
        *out = j;
    else
        json_decref(j);
    return FILTER_COMPLETE;
}
