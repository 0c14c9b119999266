/* check.h: the unit tests' one assertion macro.  CHECK(cond, fmt, ...)
 * counts the check, and on failure prints where, the condition and the
 * message, and counts the failure; main() reports `failures` (with
 * check_summary(), or its own line). */
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

/* The summary line, "N checks, N failures"; -> main()'s exit status. */
static inline int check_summary(void)
{
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

#endif
