/* strbuf: a growable byte string, NUL-terminated, for building requests,
 * canonical strings and file contents.  Allocation failure is sticky: the
 * buffer remembers it and strbuf_finish() returns NULL. */
#ifndef HCX_STRBUF_H
#define HCX_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

#define STRBUF_INIT { NULL, 0, 0, 0 }

void strbuf_append(struct strbuf *sb, const void *data, size_t len);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string over to the caller (never NULL unless allocation failed). */
char *strbuf_finish(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);

#endif
