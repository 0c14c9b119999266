/* check.h: the unit tests' one assertion macro.  CHECK(cond, fmt, ...)
 * counts the check, and on failure prints where, the condition and the
 * message, and counts the failure; main() reports `failures`. */
#ifndef HCX_TEST_CHECK_H
#define HCX_TEST_CHECK_H

#include <stdio.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#endif
