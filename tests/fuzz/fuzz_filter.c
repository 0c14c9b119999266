/* fuzz_filter: the filter written to `new` (src/filter.c): the incremental
 * scanner, jansson behind it and the field validation.
 *
 * The input is the bytes written so far.  Beyond "no crash, no leak", it
 * checks what the filesystem relies on:
 *   - a message (why) is one printable line, and INVALID always has one;
 *   - COMPLETE: the object validates, its compact body parses COMPLETE
 *     again to the same body (what is sent is what was checked);
 *   - a text split anywhere before its closing '}' is INCOMPLETE (writes
 *     split over several write(2) calls must not fail early);
 *   - a text with a NUL byte is INVALID;
 *   - otherwise the scanner is never stricter than jansson: a text jansson
 *     parses is never INCOMPLETE nor refused as bad JSON, and one that is
 *     an object that validates is COMPLETE. */
#include "fuzz.h"
#include "filter.h"

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
        FUZZ_CHECK(obj && body, "COMPLETE without object or body");
        char *why2 = NULL;
        FUZZ_CHECK(filter_validate(obj, &why2) == 0, "COMPLETE but invalid: %s", why2);
        json_t *obj2 = NULL;
        char *body2 = NULL;
        enum filter_parse_result r2 = filter_parse(body, strlen(body), &obj2, &body2, &why2);
        FUZZ_CHECK(r2 == FILTER_COMPLETE, "the body sent does not parse again: %s (%s)", body,
                   why2 ? why2 : "incomplete");
        FUZZ_CHECK(strcmp(body, body2) == 0, "body not stable: '%s' vs '%s'", body, body2);
        FUZZ_CHECK(json_equal(obj, obj2), "body parses to another object");
        json_decref(obj2);
        free(body2);

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
