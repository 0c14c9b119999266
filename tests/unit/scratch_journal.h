/* scratch_journal.h: a journal for the unit tests of the jobs layer. */
#ifndef HCX_TEST_SCRATCH_JOURNAL_H
#define HCX_TEST_SCRATCH_JOURNAL_H

#include <stdlib.h>

#include "check.h"
#include "journal.h"

/* journal_open(dir), a check: the journal, or NULL when it failed. */
static inline struct journal *journal_open_checked(const char *dir)
{
    struct journal *jr = NULL;
    char *why = NULL;
    int rc = journal_open(dir, &jr, &why);
    CHECK(rc == 0, "journal_open %s: %s", dir, why ? why : "?");
    free(why);
    return rc == 0 ? jr : NULL;
}

#endif
