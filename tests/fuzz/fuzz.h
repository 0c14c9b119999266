/* fuzz.h: what every fuzz target shares: the libFuzzer entry points and a
 * check macro.  A broken invariant aborts, which libFuzzer reports as a
 * crash (with the input saved) and the replay driver as a failed test. */
#ifndef HCX_FUZZ_H
#define HCX_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Makes a fresh directory $TMPDIR/<name>-XXXXXX (/tmp when TMPDIR is unset
 * or longer than 31 bytes, so that the paths below it stay short) in dir,
 * which holds 64 bytes. */
static inline void fuzz_scratch_dir(char dir[64], const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, 64, "%s/%s-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp", name);
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

/* 1 if s (NUL-terminated) is one printable ASCII line: what every message
 * that reaches a log line or an "error:" reply must be. */
static inline int fuzz_printable_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* 1 if s has no control character (C0 or DEL): one line that cannot
 * move a terminal's cursor; bytes >= 0x80 (UTF-8 text) allowed. */
static inline int fuzz_no_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

#endif
