/* scratch.h: a unit test's scratch directory, `tmpdir`.  scratch_make()
 * makes it fresh under $TMPDIR (or /tmp), tpath() names a file in it;
 * at the end scratch_remove() removes it with all it holds, or
 * scratch_rmdir() checks that the test left nothing in it but what it
 * expects, and removes it. */
#ifndef HCX_TEST_SCRATCH_H
#define HCX_TEST_SCRATCH_H

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

/* Half of PATH_MAX: room for the names the tests put after it. */
static char tmpdir[PATH_MAX / 2];

/* Makes tmpdir, $TMPDIR/<prefix>XXXXXX: 0, or -1 (said on stderr). */
static inline int scratch_make(const char *prefix)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/%sXXXXXX", base && *base ? base : "/tmp", prefix);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* tmpdir/name, malloc'd (aborts when out of memory). */
static inline char *tpath(const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", tmpdir, name) < 0)
        abort();
    return p;
}

/* rm -rf tmpdir; a failure is said on stderr. */
static inline void scratch_remove(void)
{
    char cmd[sizeof tmpdir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* Unlinks the entries of tmpdir that leftover(name) picks (none when NULL),
 * then removes tmpdir: a check that nothing else was left in it. */
static inline void scratch_rmdir(bool (*leftover)(const char *name))
{
    DIR *d = leftover ? opendir(tmpdir) : NULL;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (leftover(de->d_name)) {
            char *p = tpath(de->d_name);
            unlink(p);
            free(p);
        }
    }
    if (d)
        closedir(d);
    CHECK(rmdir(tmpdir) == 0, "temporary directory not empty");
}

#endif
