/*
 * archive_names: the name rules (escapes, cuts, reserved root names, depth
 * and length limits), independent of the locale, and the raw forms of
 * libarchive's string attributes.  Layer: pure functions,
 * calls nothing.
 */
#include "archive_names.h"

#include "archive_index.h" /* aindex_clean_flat_name, aindex_name_cut: public */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if the
 * bytes there are not valid UTF-8 (overlongs and surrogates included). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Appends one cleaned component: escapes, cuts to 255 bytes at a token
 * boundary, renames reserved root names. */
static void append_component(struct clean_path *cp, const unsigned char *s,
                             size_t n, const char *const *reserved)
{
    static const char hex[] = "0123456789ABCDEF";
    char out[MAX_COMPONENT_BYTES + 1];
    size_t olen = 0;
    bool cut = false;
    for (size_t i = 0; i < n;) {
        size_t seq = utf8_seq_len(s + i, n - i);
        bool escape = seq == 0 || (seq == 1 && (s[i] < 0x20 || s[i] == 0x7F));
        size_t tok = escape ? 3 : seq;
        if (olen + tok > MAX_COMPONENT_BYTES) {
            cut = true;
            break;
        }
        if (escape) {
            out[olen++] = '%';
            out[olen++] = hex[s[i] >> 4];
            out[olen++] = hex[s[i] & 15];
            i += 1;
        } else {
            memcpy(out + olen, s + i, seq);
            olen += seq;
            i += seq;
        }
    }
    if (cp->ncomp == 0 && reserved) {
        for (const char *const *r = reserved; *r; r++) {
            if (strlen(*r) == olen && memcmp(*r, out, olen) == 0
                && olen < MAX_COMPONENT_BYTES) {
                memmove(out + 1, out, olen);
                out[0] = '_';
                olen++;
                cp->renamed = true;
                break;
            }
        }
    }
    if (cp->ncomp > 0)
        cp->buf[cp->len++] = '/';
    cp->comp_off[cp->ncomp] = (uint16_t)cp->len;
    cp->comp_len[cp->ncomp] = (uint16_t)olen;
    memcpy(cp->buf + cp->len, out, olen);
    cp->len += olen;
    cp->buf[cp->len] = '\0';
    cp->ncomp++;
    cp->truncated |= cut;
}

enum clean_status aix_clean_name(const char *raw, const char *const *reserved,
                                 struct clean_path *cp)
{
    const unsigned char *p = (const unsigned char *)raw;
    cp->len = 0;
    cp->ncomp = 0;
    cp->truncated = cp->renamed = false;
    cp->buf[0] = '\0';
    while (*p) {
        const unsigned char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (*p == '/')
            p++;
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            continue;
        if (cp->ncomp == MAX_DEPTH)
            return CLEAN_TOO_DEEP;
        append_component(cp, s, n, reserved);
        if (cp->len > MAX_PATH_BYTES)
            return CLEAN_TOO_LONG;
    }
    return CLEAN_OK;
}

/* UTF-8 encoding of a wide string (libarchive's last-resort form of a
 * name).  Malloc'd, NULL on failure. */
static char *wide_to_utf8(const wchar_t *w)
{
    size_t n = wcslen(w);
    char *out = malloc(n * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)w[i];
        if (c == 0 || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
            c = 0xFFFD;
        if (c < 0x80)
            *o++ = (char)c;
        else if (c < 0x800) {
            *o++ = (char)(0xC0 | c >> 6);
            *o++ = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            *o++ = (char)(0xE0 | c >> 12);
            *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *o++ = (char)(0x80 | (c & 0x3F));
        } else {
            *o++ = (char)(0xF0 | c >> 18);
            *o++ = (char)(0x80 | ((c >> 12) & 0x3F));
            *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *o++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *o = '\0';
    return out;
}

/* The raw bytes libarchive has for a string attribute, trying the forms it
 * may hold (a name that failed charset conversion has no multibyte form).
 * *tmp receives a malloc'd buffer to free when one was needed. */
const char *aix_entry_string(const char *mbs, const char *utf8,
                                const wchar_t *w, char **tmp)
{
    *tmp = NULL;
    if (mbs)
        return mbs;
    if (utf8)
        return utf8;
    if (w)
        return *tmp = wide_to_utf8(w);
    return NULL;
}

/* ------------------------------------------------------ flat folder names */

static int is_hex_digit(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

size_t aindex_name_cut(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t at = 0;
    while (at < len) {
        size_t tok = u[at] == '%' && at + 2 < len && is_hex_digit(u[at + 1]) &&
                             is_hex_digit(u[at + 2])
                         ? 3
                         : utf8_seq_len(u + at, len - at);
        if (tok == 0)
            tok = 1; /* not from the cleaning rules: a byte is a token */
        if (at + tok > max)
            break;
        at += tok;
    }
    return at;
}

void aindex_clean_flat_name(const char *raw, char out[256])
{
    struct clean_path cp;
    out[0] = '\0';
    /* Too deep or too long for a tree is not too long for one name: the
     * cut below bounds it; only what was cleaned so far is kept. */
    (void)aix_clean_name(raw, NULL, &cp);
    char joined[sizeof cp.buf * 3];
    size_t n = 0;
    for (size_t i = 0; i < cp.ncomp && n < 256; i++) {
        if (i > 0) {
            memcpy(joined + n, "%2F", 3);
            n += 3;
        }
        memcpy(joined + n, cp.buf + cp.comp_off[i], cp.comp_len[i]);
        n += cp.comp_len[i];
    }
    n = aindex_name_cut(joined, n, 255);
    memcpy(out, joined, n);
    out[n] = '\0';
}
