/* filter_text: the pieces of the filter's messages and checks shared by
 * its rules (filter.c, filter_waf, filter_hss): user text quoted on one
 * printable line, "must be one of" lists, plain strings, null fields.
 * Calls nothing else of cloud/. */
#include "filter_text.h"
#include "strbuf.h"
#include "why.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Longest piece of user text quoted in a message: enough to recognise it,
 * short enough that a reply line stays readable. */
#define QUOTE_MAX 64

int filter_in_list(const char *const *list, const char *s)
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
char *filter_quote(const char *s, size_t len)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, "");
    put_sanitized(&sb, s, len, QUOTE_MAX);
    return strbuf_finish(&sb);
}

/* "<what> must be one of a, b, c" */
void filter_set_one_of(char **why, const char *what, const char *const *values)
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

/* jansson can hold strings with NUL bytes when a caller builds the object
 * itself; strcmp would then see "today\0x" as "today".  The parser never
 * produces them (JSON_ALLOW_NUL is off), validation refuses them too. */
int filter_is_plain_string(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

int filter_has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* Null is refused for every field (the cloud treats it as a type error);
 * the message says how to get "no restriction" instead. */
int filter_check_not_null(const char *key, const json_t *v, int required, char **why)
{
    if (!json_is_null(v))
        return 0;
    set_why(why, required ? "%s must not be null" : "%s must not be null (omit it instead)", key);
    return -EINVAL;
}
