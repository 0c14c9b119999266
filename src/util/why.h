/* why: the malloc'd error messages (`char **why`) that fallible calls
 * hand back to their caller, with context for the user. */
#ifndef HCX_WHY_H
#define HCX_WHY_H

/* Replaces *why with a formatted message; does nothing when why is NULL.
 * On allocation failure *why is NULL (callers fall back to strerror). */
void set_why(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
