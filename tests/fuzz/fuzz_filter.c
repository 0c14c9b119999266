/* fuzz_filter: the filter written to `new` (src/cloud/filter*.c): the
 * incremental scanner, jansson behind it, the field validation (WAF and
 * HSS) and what is sent (the body, the HSS query parameters).
 *
 * The input is the bytes written so far.  Beyond "no crash, no leak", it
 * checks what the filesystem relies on:
 *   - a message (why) is one printable line, and INVALID always has one;
 *   - COMPLETE: the object validates and filter_service_of() agrees with
 *     its `service`; what is sent is what was checked:
 *       WAF: the body parses COMPLETE again to the same body, and to the
 *         filter without `service` (never sent);
 *       HSS: the body is the compact `columns` (none without columns), and
 *         the query parameters are exactly the filter's other keys in
 *         order, arrays as repeats, integers in decimal, every value a
 *         non-empty string without control characters;
 *   - a text split anywhere before its closing '}' is INCOMPLETE (writes
 *     split over several write(2) calls must not fail early);
 *   - a text with a NUL byte is INVALID;
 *   - otherwise the scanner is never stricter than jansson: a text jansson
 *     parses is never INCOMPLETE nor refused as bad JSON, and one that is
 *     an object that validates is COMPLETE. */
#include "fuzz.h"
#include "filter.h"

#include <errno.h>
#include <string.h>

static void check_why(const char *why, enum filter_parse_result r)
{
    if (r == FILTER_INVALID)
        FUZZ_CHECK(why != NULL, "INVALID without a message");
    else
        FUZZ_CHECK(why == NULL, "message '%s' for a %s text", why,
                   r == FILTER_COMPLETE ? "complete" : "incomplete");
    if (why)
        FUZZ_CHECK(fuzz_printable_line(why) && why[0], "message not one printable line: '%s'",
                   why);
}

static int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* WAF: the body is the filter without `service`, and parses back to
 * itself. */
static void check_waf_sent(const json_t *obj, const char *body)
{
    FUZZ_CHECK(body != NULL, "WAF filter without a body");
    json_t *obj2 = NULL;
    char *body2 = NULL, *why2 = NULL;
    enum filter_parse_result r2 = filter_parse(body, strlen(body), &obj2, &body2, &why2);
    FUZZ_CHECK(r2 == FILTER_COMPLETE, "the body sent does not parse again: %s (%s)", body,
               why2 ? why2 : "incomplete");
    FUZZ_CHECK(strcmp(body, body2) == 0, "body not stable: '%s' vs '%s'", body, body2);
    FUZZ_CHECK(!json_object_get(obj2, "service"), "service sent in the body: %s", body);
    FUZZ_CHECK(filter_service_of(obj2) == SERVICE_WAF, "the body sent is not a WAF filter");
    json_t *expect = json_copy((json_t *)obj);
    FUZZ_CHECK(expect != NULL, "out of memory");
    json_object_del(expect, "service");
    FUZZ_CHECK(json_equal(expect, obj2), "body parses to another object: %s", body);
    struct filter_param *p = NULL;
    size_t n = 1;
    FUZZ_CHECK(filter_hss_query(obj, &p, &n) == -EINVAL && !p && !n,
               "HSS query parameters for a WAF filter");
    json_decref(expect);
    json_decref(obj2);
    free(body2);
}

/* HSS: the body is the compact columns (or nothing); the parameters are
 * the other keys, walked in the filter's order. */
static void check_hss_sent(const json_t *obj, const char *body)
{
    const json_t *columns = json_object_get(obj, "columns");
    if (!columns) {
        FUZZ_CHECK(body == NULL, "HSS body without columns: %s", body);
    } else {
        FUZZ_CHECK(body != NULL, "HSS columns but no body");
        char *want = json_dumps(columns, JSON_COMPACT | JSON_PRESERVE_ORDER);
        FUZZ_CHECK(want && strcmp(body, want) == 0, "HSS body '%s' is not the columns '%s'", body,
                   want);
        json_t *back = json_loads(body, 0, NULL);
        FUZZ_CHECK(back && json_equal(back, columns), "HSS body does not parse to the columns");
        json_decref(back);
        free(want);
    }

    struct filter_param *p = NULL;
    size_t n = 0;
    FUZZ_CHECK(filter_hss_query(obj, &p, &n) == 0 && p, "no query for a valid HSS filter");
    size_t at = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (!strcmp(key, "service") || !strcmp(key, "columns"))
            continue;
        size_t count = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < count; i++, at++) {
            const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
            FUZZ_CHECK(at < n, "fewer parameters than values (%zu)", n);
            FUZZ_CHECK(strcmp(p[at].name, key) == 0, "parameter %zu is '%s', want '%s'", at,
                       p[at].name, key);
            char num[32];
            const char *want = num;
            if (json_is_integer(e))
                snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(e));
            else
                want = json_string_value(e);
            FUZZ_CHECK(want && strcmp(p[at].value, want) == 0, "parameter %s='%s', want '%s'",
                       key, p[at].value, want ? want : "(not a string)");
            FUZZ_CHECK(p[at].value[0] && fuzz_no_control(p[at].value),
                       "parameter %s: empty or control characters", key);
        }
    }
    FUZZ_CHECK(at == n, "%zu parameters for %zu values", n, at);
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    json_t *obj = NULL;
    char *body = NULL, *why = NULL;
    enum filter_parse_result r = filter_parse(buf, size, &obj, &body, &why);
    check_why(why, r);

    /* The same call without the optional outputs must agree. */
    FUZZ_CHECK(filter_parse(buf, size, NULL, NULL, NULL) == r, "verdict depends on outputs");

    if (r == FILTER_COMPLETE) {
        FUZZ_CHECK(obj != NULL, "COMPLETE without object");
        char *why2 = NULL;
        FUZZ_CHECK(filter_validate(obj, &why2) == 0, "COMPLETE but invalid: %s", why2);
        const json_t *service = json_object_get(obj, "service");
        int hss = service && !strcmp(json_string_value(service), "hss");
        FUZZ_CHECK(filter_service_of(obj) == (hss ? SERVICE_HSS : SERVICE_WAF),
                   "filter_service_of disagrees with the service key");
        if (hss)
            check_hss_sent(obj, body);
        else
            check_waf_sent(obj, body);

        /* Every split before the closing brace is still a prefix.  All of
         * them for short texts, a spread of them for long ones. */
        size_t end = size;
        while (end > 0 && is_ws(data[end - 1]))
            end--;
        size_t step = end <= 512 ? 1 : end / 256;
        for (size_t cut = 0; cut + 1 < end; cut += step) {
            enum filter_parse_result rp = filter_parse(buf, cut, NULL, NULL, NULL);
            FUZZ_CHECK(rp == FILTER_INCOMPLETE, "a %zu-byte write of a complete %zu-byte text "
                       "is %s", cut, size, rp == FILTER_COMPLETE ? "COMPLETE" : "INVALID");
        }
        for (size_t cut = end; cut < size; cut++)
            FUZZ_CHECK(filter_parse(buf, cut, NULL, NULL, NULL) == FILTER_COMPLETE,
                       "complete text followed by part of its whitespace is not COMPLETE");
    } else {
        FUZZ_CHECK(!obj && !body, "%s text with an object or body",
                   r == FILTER_INVALID ? "INVALID" : "INCOMPLETE");
    }

    /* A NUL byte is valid nowhere in a JSON text (not whitespace, and a
     * control character inside strings). */
    int has_nul = memchr(data, 0, size) != NULL;
    if (has_nul)
        FUZZ_CHECK(r == FILTER_INVALID, "a text with a NUL byte is %s",
                   r == FILTER_COMPLETE ? "COMPLETE" : "INCOMPLETE");

    /* The scanner must not refuse (or hold back) what jansson accepts.
     * Except for NUL bytes: jansson 2.14 drops a NUL that follows a number
     * or a literal (its stream takes an ungot '\0' for "buffer empty"), so
     * it parses "[1\0]" as [1]; the scanner is right to refuse those. */
    if (r != FILTER_COMPLETE && size <= FILTER_MAX_SIZE && !has_nul) {
        json_t *j = json_loadb(buf, size, 0, NULL);
        if (j) {
            char *jwhy = NULL;
            int ok = json_is_object(j) && filter_validate(j, &jwhy) == 0;
            FUZZ_CHECK(!ok, "jansson accepts a valid filter that filter_parse calls %s (%s)",
                       r == FILTER_INVALID ? "INVALID" : "INCOMPLETE", why ? why : "-");
            /* Whatever the fields: a text jansson parses is complete, and
             * not a JSON error. */
            FUZZ_CHECK(r != FILTER_INCOMPLETE, "jansson parses a text called INCOMPLETE");
            FUZZ_CHECK(strncmp(why, "invalid JSON", 12) != 0,
                       "jansson parses a text called '%s'", why);
            free(jwhy);
            json_decref(j);
        }
    }
    json_decref(obj);
    free(body);
    free(why);
    return 0;
}
