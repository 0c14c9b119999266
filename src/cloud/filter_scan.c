/* filter_scan: the incremental JSON scanner behind filter_parse: is this
 * buffer a complete JSON text, a proper prefix of one, or neither?  Calls
 * nothing else of cloud/.
 *
 * jansson alone cannot make the decision: it reports a text cut inside an
 * escape ("\u00"), a UTF-8 sequence, a number ("1e") or a literal ("tr")
 * as a syntax error, not as premature end.  So this scanner, which follows
 * jansson's grammar, decides "prefix or not" first, and jansson only
 * parses texts the scanner found complete (or names the error in bad
 * ones). */
#include "filter_scan.h"

#include <string.h>

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

static int is_xdigit(unsigned char c)
{
    return filter_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Follows the grammar jansson accepts (RFC 8259, strict UTF-8, no trailing
 * commas, no leading zeros, control characters refused in strings) and
 * says whether buf is a complete text, a proper prefix of one, or neither.
 * It is never stricter than jansson on a prefix; where it is laxer (\u0000,
 * lone surrogate escapes) jansson rejects the text once it is complete. */
enum scan_result filter_scan_json(const unsigned char *p, size_t len, size_t *bad_at,
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
            if (filter_is_ws(c))
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
            } else if (filter_is_digit(c)) {
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
            if (filter_is_ws(c))
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
            if (filter_is_ws(c))
                break;
            if (c != ':')
                BAD("':' expected");
            st = ST_VALUE;
            break;
        case ST_AFTER:
            if (filter_is_ws(c))
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
            if (!filter_is_ws(c))
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
            if (!filter_is_digit(c))
                BAD("invalid number");
            st = c == '0' ? ST_NUM_ZERO : ST_NUM_INT;
            break;
        case ST_NUM_ZERO:
        case ST_NUM_INT:
        case ST_NUM_FRAC:
        case ST_NUM_EXP:
            if (filter_is_digit(c) && st != ST_NUM_ZERO)
                break;
            if (filter_is_digit(c))
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
            if (!filter_is_digit(c))
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
            if (!filter_is_digit(c))
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
