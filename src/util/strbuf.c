/* strbuf: growable strings with sticky allocation failure. */
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct strbuf *sb, size_t extra)
{
    if (sb->failed)
        return -1;
    if (sb->len + extra + 1 <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1) {
        if (cap > (size_t)-1 / 2) {
            sb->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(sb->data, cap);
    if (!p) {
        sb->failed = 1;
        return -1;
    }
    sb->data = p;
    sb->cap = cap;
    return 0;
}

void strbuf_append(struct strbuf *sb, const void *data, size_t len)
{
    if (reserve(sb, len) < 0)
        return;
    if (len)
        memcpy(sb->data + sb->len, data, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
}

void strbuf_puts(struct strbuf *sb, const char *s) { strbuf_append(sb, s, strlen(s)); }

void strbuf_putc(struct strbuf *sb, char c) { strbuf_append(sb, &c, 1); }

void strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(sb, (size_t)n) < 0) {
        sb->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

char *strbuf_finish(struct strbuf *sb)
{
    if (sb->failed) {
        strbuf_release(sb);
        return NULL;
    }
    if (!sb->data && reserve(sb, 0) < 0)
        return NULL;
    if (sb->len == 0)
        sb->data[0] = '\0';
    char *out = sb->data;
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return out;
}

void strbuf_release(struct strbuf *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
    sb->failed = 0;
}
