/* Small defects of issue 13 that no integration test reaches: the zip end
 * record search on short buffers (aix_find_cd) and the project table of a
 * second registry in the same process (its capacity was process-global). */
#include "journal.h"
#include "job.h" /* private to jobs/: these tests look into jobs */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"
#include "scratch_journal.h"

#include "archive_zip.h" /* aix_find_cd */

static void test_find_cd_short_buffers(void)
{
    /* 50 bytes: a zip64 end locator (20 bytes at 8) pointing at offset 0,
     * where a zip64 end record's signature is, then the end record (22 bytes
     * at 28).  A zip64 end record needs 56 bytes: there is no room for one.
     * The buffer sits in a larger zeroed one so that a read past the 50
     * bytes is not a crash but a wrong answer. */
    unsigned char *big = calloc(1, 256);
    unsigned char *m = big;
    size_t len = 50;
    m[0] = 'P'; m[1] = 'K'; m[2] = 6; m[3] = 6;           /* zip64 end record sig */
    m[8] = 'P'; m[9] = 'K'; m[10] = 6; m[11] = 7;         /* zip64 locator sig */
    /* locator + 8: the record's offset, 0 */
    m[28] = 'P'; m[29] = 'K'; m[30] = 5; m[31] = 6;       /* end of central directory */
    uint64_t off = 99, count = 99;
    int rc = aix_find_cd(m, len, &off, &count);
    CHECK(rc == -1, "a zip64 record that does not fit in 50 bytes was accepted (rc %d, off %llu, "
          "count %llu)", rc, (unsigned long long)off, (unsigned long long)count);
    free(big);

    /* Shorter than an end record: nothing to find, nothing read. */
    for (size_t n = 0; n < 22; n++) {
        unsigned char *s = malloc(n ? n : 1);
        memset(s, 'P', n ? n : 1);
        CHECK(aix_find_cd(s, n, &off, &count) == -1, "%zu bytes", n);
        free(s);
    }
}

static void test_two_registries(const char *tmp)
{
    char dir[4096];
    for (int round = 0; round < 2; round++) {
        snprintf(dir, sizeof dir, "%s/cache%d", tmp, round);
        struct journal *jr = journal_open_checked(dir);
        if (!jr)
            return;
        struct registry *r = NULL;
        CHECK(registry_create(jr, NULL, 1.0, &r) == 0, "registry_create");
        /* The first registry's table grows to 16; the second starts empty. */
        int n = round == 0 ? 3 : 20;
        for (int i = 0; i < n; i++) {
            char id[32];
            snprintf(id, sizeof id, "proj%02d", i);
            CHECK(registry_add_project(r, id) == 0, "add %s in round %d", id, round);
        }
        CHECK(r->nprojects == (size_t)n, "round %d: %zu projects", round, r->nprojects);
        CHECK(registry_add_project(r, "proj00") == -EEXIST, "a known project");
        registry_destroy(r);
        journal_close(jr);
    }
}

int main(void)
{
    if (scratch_make("hcx-unit-lifecycle-") < 0)
        return 1;
    test_find_cd_short_buffers();
    test_two_registries(tmpdir);
    scratch_remove();
    return check_summary();
}
