/* filter: validates the export filter written to `new` the way the cloud
 * validates a submit body (cloud-api.md §2), and decides after each write
 * whether the bytes so far are an incomplete, a complete or an invalid text.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const filter_columns[] = {
    "id",      "time",     "policyid",         "sip",          "host",
    "host_id", "url",      "attack",           "rule",         "action",
    "payload", "payload_location", "request_line", "status",   "region",
    "process_time", "response_time", "response_size", "cookie", "request_body",
    NULL,
};

static const char *const recent_values[] = { "yesterday", "today", "3days", "1week", "1month",
                                             NULL };

static const char *const array_fields[] = { "ids",     "nids",     "attacks", "nattacks", "rules",
                                            "nrules",  "sips",     "nsips",   "urls",     "nurls",
                                            "actions", "nactions", "hosts",   "instances", NULL };

static const char *const string_fields[] = { "sip", "url", NULL };

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

/* ---- validation ---- */

/* jansson can hold strings with NUL bytes when a caller builds the object
 * itself; strcmp would then see "today\0x" as "today".  The parser never
 * produces them (JSON_ALLOW_NUL is off), validation refuses them too. */
static int is_plain_string(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

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
        set_why(why, "recent must be one of yesterday, today, 3days, 1week, 1month");
        return -EINVAL;
    }
    return 0;
}

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
        const json_t *col = json_array_get(v, i);
        if (!in_list(filter_columns, json_string_value(col))) {
            char *q = quote(json_string_value(col), json_string_length(col));
            set_why(why, "dump_columns[%zu]: unknown column '%s'", i, q ? q : "?");
            free(q);
            return -EINVAL;
        }
    }
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

/* Checks in the emulator's order (unknown fields, recent, dump_columns,
 * arrays, strings) so that a filter with several faults gets the same first
 * complaint from both. */
int filter_validate(const json_t *filter, char **why)
{
    if (why)
        *why = NULL;
    if (!json_is_object(filter)) {
        set_why(why, "filter must be a JSON object");
        return -EINVAL;
    }
    /* jansson's iterators take a non-const object; nothing is modified. */
    json_t *obj = (json_t *)filter;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "recent") && strcmp(key, "dump_columns") && !in_list(array_fields, key) &&
            !in_list(string_fields, key)) {
            /* Keys cannot hold NUL (JSON_ALLOW_NUL is off), so strlen is the length. */
            char *q = quote(key, strlen(key));
            set_why(why, "unknown field '%s'", q ? q : "?");
            free(q);
            return -EINVAL;
        }
    }
    int rc;
    if (!(v = json_object_get(filter, "recent"))) {
        set_why(why, "missing required field 'recent'");
        return -EINVAL;
    }
    if ((rc = check_not_null("recent", v, 1, why)) < 0 || (rc = check_recent(v, why)) < 0)
        return rc;
    if (!(v = json_object_get(filter, "dump_columns"))) {
        set_why(why, "missing required field 'dump_columns'");
        return -EINVAL;
    }
    if ((rc = check_not_null("dump_columns", v, 1, why)) < 0 ||
        (rc = check_dump_columns(v, why)) < 0)
        return rc;
    for (const char *const *f = array_fields; *f; f++) {
        if ((v = json_object_get(filter, *f)) &&
            ((rc = check_not_null(*f, v, 0, why)) < 0 || (rc = check_string_array(*f, v, why)) < 0))
            return rc;
    }
    for (const char *const *f = string_fields; *f; f++) {
        if ((v = json_object_get(filter, *f)) && (rc = check_not_null(*f, v, 0, why)) < 0)
            return rc;
        if (v && !is_plain_string(v)) {
            set_why(why, json_is_string(v) ? "%s must not contain a NUL byte" : "%s must be a string",
                    *f);
            return -EINVAL;
        }
    }
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
    if (body) {
        *body = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*body) {
            json_decref(j);
            set_why(why, "out of memory while encoding the filter");
            return FILTER_INVALID;
        }
    }
    if (out)
        *out = j;
    else
        json_decref(j);
    return FILTER_COMPLETE;
}
