/* why: the one convention for error messages in this program.  A fallible
 * call that has more to say than its -errno takes `char **why` and, on
 * failure, sets *why to a malloc'd message with set_why; the caller owns
 * it (free) and starts with `char *why = NULL`.  A message is one line:
 * set_why drops trailing newlines (libarchive's texts end in one) and turns
 * any other control character into a space.  Callers quote untrusted text
 * in their own way before (cleaned paths, \xNN escapes).
 *
 * Two kinds of error text are not this convention: struct cloud_error
 * (cloud.h), a structured answer whose message follows the same rules
 * (why_tidy), and state a module keeps to report later (the archive
 * reader's last error, areader_error). */
#ifndef HCX_WHY_H
#define HCX_WHY_H

/* Replaces *why with a formatted message, freeing the old one; does
 * nothing when why is NULL.  On allocation failure *why is NULL (callers
 * fall back to strerror). */
void set_why(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Makes s one line in place, as set_why does: trailing newlines dropped,
 * other control characters turned into spaces. */
void why_tidy(char *s);

#endif
