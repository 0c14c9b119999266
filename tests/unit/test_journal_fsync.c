/* Issue 13, point 4: the first journal record of a project makes its new
 * directory durable.
 *
 * journal_save_job() creates journal/jobs/<project>/ for a project's first
 * record.  Fsyncing the record and the new directory is not enough: the new
 * directory's entry lives in journal/jobs, and until that is fsynced too a
 * crash can lose the directory, and the record with it.  So the first record
 * of a project fsyncs journal/jobs (after the mkdir).
 *
 * This program defines fsync() itself: the library's calls (it is linked
 * statically) come here, and every fsync of a directory is logged with the
 * directory's path (readlink /proc/self/fd/N) and whether the new project
 * directory existed at that moment, then passed on to the kernel. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"
#include "scratch_journal.h"

#define MAX_LOG 256

static struct {
    char path[PATH_MAX];
    int watched_existed;            /* `watched` was there when it was fsynced */
} fsynced[MAX_LOG];
static int nfsynced;
static char watched[PATH_MAX];      /* the project directory about to be created */

int fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && nfsynced < MAX_LOG) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, fsynced[nfsynced].path, PATH_MAX - 1);
        fsynced[nfsynced].path[n > 0 ? n : 0] = '\0';
        fsynced[nfsynced].watched_existed = watched[0] && stat(watched, &st) == 0;
        nfsynced++;
    }
    return (int)syscall(SYS_fsync, fd);
}

/* The log entry of dir's fsync, or NULL. */
static const char *fsync_of(const char *dir, int *existed)
{
    for (int i = 0; i < nfsynced; i++)
        if (strcmp(fsynced[i].path, dir) == 0) {
            *existed = fsynced[i].watched_existed;
            return fsynced[i].path;
        }
    return NULL;
}

static void save(struct journal *jr, const char *project, const char *job)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s}", "job_id", job, "project_id", project,
                            "task_status", "running", "state", "running");
    int rc = rec ? journal_save_job(jr, project, job, rec) : -ENOMEM;
    CHECK(rc == 0, "journal_save_job %s/%s: %s", project, job, strerror(-rc));
    json_decref(rec);
}

static void test_first_record_fsyncs_parent(const char *tmp)
{
    char cache_arg[PATH_MAX], cache[PATH_MAX], jobs[PATH_MAX], projdir[PATH_MAX];
    snprintf(cache_arg, sizeof cache_arg, "%s/cache", tmp);
    struct journal *jr = journal_open_checked(cache_arg);
    if (!jr)
        return;
    CHECK(realpath(cache_arg, cache) != NULL, "realpath %s", cache_arg);
    CHECK(pathf(jobs, "%s/journal/jobs", cache) == 0, "path too long");

    for (int round = 0; round < 2; round++) {
        /* A project never seen: its first record. */
        const char *project = round == 0 ? "0123456789abcdef0123456789abcdef" : "second-project";
        CHECK(pathf(projdir, "%s/%s", jobs, project) == 0, "path too long");
        snprintf(watched, sizeof watched, "%s", projdir);
        struct stat st;
        CHECK(stat(projdir, &st) < 0, "%s exists before its first record", projdir);
        nfsynced = 0;
        save(jr, project, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        int existed = 0;
        const char *hit = fsync_of(jobs, &existed);
        CHECK(hit != NULL, "the first record of project %s did not fsync %s (the new "
              "directory's entry); directories fsynced: %d", project, jobs, nfsynced);
        CHECK(!hit || existed, "%s was fsynced before %s was made", jobs, projdir);
        CHECK(fsync_of(projdir, &existed) != NULL, "the record's own directory %s fsynced",
              projdir);

        /* The project's next record: its directory is known already. */
        save(jr, project, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        char rec[PATH_MAX];
        CHECK(pathf(rec, "%s/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.json", projdir) == 0, "path too long");
        CHECK(stat(rec, &st) == 0, "%s written", rec);
    }
    watched[0] = '\0';
    journal_close(jr);
}

int main(void)
{
    if (scratch_make("hcx-unit-jfsync-") < 0)
        return 1;
    test_first_record_fsyncs_parent(tmpdir);
    scratch_remove();
    return check_summary();
}
