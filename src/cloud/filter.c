/* filter: the entry points of filter.h: filter_parse (after each write,
 * an incomplete, complete or invalid text; what is sent), filter_validate
 * (the service, unknown fields, then the service's rules) and
 * filter_service_of.  Calls filter_scan (is the text complete yet?),
 * filter_waf and filter_hss (the field rules), filter_text (messages).
 * The HSS query parameters are filter_query's. */
#include "filter.h"
#include "filter_hss.h"
#include "filter_scan.h"
#include "filter_text.h"
#include "filter_waf.h"
#include "why.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refuse_unknown(const char *key, enum cloud_service svc, char **why)
{
    /* Keys cannot hold NUL (JSON_ALLOW_NUL is off), so strlen is the length. */
    char *q = filter_quote(key, strlen(key));
    const char *hint = "";
    if (svc == SERVICE_WAF && filter_hss_has_key(key))
        hint = " (an hss field: add \"service\":\"hss\")";
    else if (svc == SERVICE_HSS && filter_waf_has_key(key))
        hint = " (a waf field, and this is an hss filter)";
    set_why(why, "unknown field '%s'%s", q ? q : "?", hint);
    free(q);
    return -EINVAL;
}

/* `service`: absent (waf), "waf" or "hss". */
static int check_service(const json_t *filter, enum cloud_service *svc, char **why)
{
    const json_t *v = json_object_get(filter, "service");
    *svc = SERVICE_WAF;
    if (!v)
        return 0;
    if (json_is_null(v)) {
        set_why(why, "service must not be null (omit it for waf)");
        return -EINVAL;
    }
    if (filter_is_plain_string(v) && strcmp(json_string_value(v), "waf") == 0)
        return 0;
    if (filter_is_plain_string(v) && strcmp(json_string_value(v), "hss") == 0) {
        *svc = SERVICE_HSS;
        return 0;
    }
    if (json_is_string(v)) {
        char *q = filter_quote(json_string_value(v), json_string_length(v));
        set_why(why, "service must be \"waf\" or \"hss\", not '%s'", q ? q : "?");
        free(q);
    } else {
        set_why(why, "service must be the string \"waf\" or \"hss\"");
    }
    return -EINVAL;
}

int filter_validate(const json_t *filter, char **why)
{
    if (why)
        *why = NULL;
    if (!json_is_object(filter)) {
        set_why(why, "filter must be a JSON object");
        return -EINVAL;
    }
    enum cloud_service svc;
    int rc = check_service(filter, &svc, why);
    if (rc < 0)
        return rc;
    /* jansson's iterators take a non-const object; nothing is modified. */
    json_t *obj = (json_t *)filter;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "service") &&
            !(svc == SERVICE_HSS ? filter_hss_has_key(key) : filter_waf_has_key(key)))
            return refuse_unknown(key, svc, why);
    }
    return svc == SERVICE_HSS ? filter_validate_hss(obj, why) : filter_validate_waf(obj, why);
}

enum cloud_service filter_service_of(const json_t *filter)
{
    const json_t *v = json_object_get(filter, "service");
    return filter_is_plain_string(v) && strcmp(json_string_value(v), "hss") == 0 ? SERVICE_HSS
                                                                          : SERVICE_WAF;
}

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
    char *q = filter_quote(text, strlen(text));
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
                     : (c == '-' || filter_is_digit(c)) ? "a number"
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
    if (filter_service_of(filter) == SERVICE_HSS) {
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
    while (start < len && filter_is_ws((unsigned char)buf[start]))
        start++;
    if (start == len)
        return FILTER_INCOMPLETE;
    if (buf[start] != '{') {
        set_not_object_why(why, buf, start);
        return FILTER_INVALID;
    }

    size_t bad_at = 0;
    const char *what = NULL;
    enum scan_result sr = filter_scan_json((const unsigned char *)buf, len, &bad_at, &what);
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
