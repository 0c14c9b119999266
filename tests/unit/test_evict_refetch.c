/* Issue 13, point 4: cache_max eviction never deletes a copy fetched again
 * meanwhile.
 *
 * registry_enforce_cache_max() marks its victim evicted under the registry
 * lock, drops that lock, and unlinks the file under journal_lock.  In the
 * gap a read may queue the job again and a fetcher rename a fresh copy into
 * place (the fetcher renames under journal_lock too); or an rmdir forgets
 * the job and a mkdir attaches it again, whose fetch brings a file of the
 * same name.  The eviction must then leave the file alone: it re-checks,
 * under journal_lock, that the job is still evicted and not forgotten
 * before unlinking (`still_evicted`).  Without that re-check the fresh copy
 * is deleted while its job goes on to be READY: its reads fail.
 *
 * Deterministic, no sleeps that decide anything: the test holds journal_lock
 * before the evicting thread starts, so that thread always stops in the gap
 * (it has marked the victim evicted, the test sees that under the registry
 * lock, and it cannot unlink before the test lets journal_lock go).  In the
 * gap the test does what the other threads do: registry_job_index() queues
 * the evicted job (the real call), the job is taken for fetching and the
 * fresh copy renamed into place under journal_lock (as fetcher.c does); or
 * registry_forget()'s steps, then the namesake's file renamed into place. */
#include "journal.h"
#include "job.h" /* private to jobs/: these tests look into jobs */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"
#include "scratch_journal.h"

#define PROJ "0123456789abcdef0123456789abcdef"
#define JOB_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"   /* least recently used: the victim */
#define JOB_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"   /* most recently fetched: kept */
#define FILE_BYTES 1000

static int write_file(const char *path, char fill, size_t n)
{
    char buf[FILE_BYTES];
    memset(buf, fill, sizeof buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = write(fd, buf, n) == (ssize_t)n;
    return close(fd) == 0 && ok ? 0 : -1;
}

/* What the file at path holds: its fill byte, 0 when absent, '?' when mixed. */
static char file_fill(const char *path)
{
    char buf[FILE_BYTES + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n != FILE_BYTES)
        return '?';
    for (ssize_t i = 1; i < n; i++)
        if (buf[i] != buf[0])
            return '?';
    return buf[0];
}

/* A finished WAF job whose CSV file is local (registry_load makes it READY). */
static void add_local_job(struct journal *jr, const char *job, char fill)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "job_id", job,
                            "project_id", PROJ, "service", "waf", "task_status", "success",
                            "state", "success", "file_id", job, "file_name", "events.csv",
                            "archive", "ready", "format", "csv");
    CHECK(rec && journal_save_job(jr, PROJ, job, rec) == 0, "journal record of %s", job);
    json_decref(rec);
    char dir[PATH_MAX], path[PATH_MAX];
    CHECK(journal_archive_dir(jr, PROJ, dir) == 0, "archives/%s", PROJ);
    journal_archive_path(jr, PROJ, job, "csv", path);
    CHECK(write_file(path, fill, FILE_BYTES) == 0, "write %s", path);
}

static void *evict(void *arg)
{
    registry_enforce_cache_max(arg);
    return NULL;
}

static enum archive_state state_of(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    enum archive_state s = j->archive;
    pthread_mutex_unlock(&r->lock);
    return s;
}

/* Two local jobs in a fresh cache, a over cache_max with b; and an
 * eviction stopped in its gap: it has marked a evicted and waits for
 * journal_lock, which the caller holds until it calls gap_end().  A
 * gap_begin() that fails has torn the setup down. */
struct setup {
    struct journal *jr;
    struct registry *r;
    struct job *a, *b;              /* references of the test's own */
    char path_a[PATH_MAX], path_b[PATH_MAX];
    pthread_t evictor;
};

static void teardown(struct setup *s)
{
    if (s->a)
        registry_put_job(s->r, s->a);
    if (s->b)
        registry_put_job(s->r, s->b);
    registry_destroy(s->r);
    if (s->jr)
        journal_close(s->jr);
}

static int gap_begin(struct setup *s, const char *tmp, const char *name)
{
    memset(s, 0, sizeof *s);
    char cache[PATH_MAX];
    snprintf(cache, sizeof cache, "%s/%s", tmp, name);
    s->jr = journal_open_checked(cache);
    if (!s->jr)
        goto fail;
    add_local_job(s->jr, JOB_A, 'a');
    add_local_job(s->jr, JOB_B, 'b');
    CHECK(registry_create(s->jr, NULL, 1.0, &s->r) == 0, "registry_create");
    struct registry *r = s->r;
    CHECK(registry_load(r) == 0, "registry_load");
    s->a = registry_get_job(r, PROJ, JOB_A);
    s->b = registry_get_job(r, PROJ, JOB_B);
    CHECK(s->a && s->b, "jobs loaded");
    if (!s->a || !s->b)
        goto fail;
    struct job *a = s->a, *b = s->b;
    pthread_mutex_lock(&r->lock);
    CHECK(a->archive == ARCHIVE_READY && b->archive == ARCHIVE_READY,
          "loaded as local files (%d, %d)", a->archive, b->archive);
    CHECK(a->archive_bytes == FILE_BYTES && b->archive_bytes == FILE_BYTES, "sizes %lld, %lld",
          (long long)a->archive_bytes, (long long)b->archive_bytes);
    a->last_used = a->fetched_at = 1000; /* a: the least recently used */
    b->last_used = b->fetched_at = 2000;
    b->fetch_seq = r->fetch_seq = 1;     /* b: the newest fetch, never the victim */
    r->cache_max = FILE_BYTES + FILE_BYTES / 2; /* room for one of the two */
    job_archive_path_locked(r, a, s->path_a);
    job_archive_path_locked(r, b, s->path_b);
    pthread_mutex_unlock(&r->lock);

    /* The eviction runs into the gap and waits there for journal_lock. */
    pthread_mutex_lock(&r->journal_lock);
    if (pthread_create(&s->evictor, NULL, evict, r) != 0) {
        CHECK(0, "pthread_create");
        pthread_mutex_unlock(&r->journal_lock);
        goto fail;
    }
    struct timespec pause = { 0, 1000000 };
    double give_up = monotonic_now() + 30;
    while (state_of(r, a) != ARCHIVE_EVICTED && monotonic_now() < give_up)
        nanosleep(&pause, NULL);
    CHECK(state_of(r, a) == ARCHIVE_EVICTED, "a was not chosen for eviction (state %d)",
          state_of(r, a));
    CHECK(file_fill(s->path_a) == 'a', "a's file went before journal_lock was free");
    return 0;
fail:
    teardown(s);
    return -1;
}

/* A copy of a's file (every byte `fill`) renamed into place from its
 * partial file, as a fetcher does, while the eviction waits in the gap. */
static void place_copy_of_a(struct setup *s, char fill)
{
    char part[PATH_MAX];
    journal_partial_path(s->jr, PROJ, JOB_A, part);
    CHECK(write_file(part, fill, FILE_BYTES) == 0, "write %s", part);
    CHECK(rename(part, s->path_a) == 0, "rename %s: %s", part, strerror(errno));
}

/* Lets the eviction go on and waits for its end; then a's file must still
 * be the copy `fill` (whose story `what` tells) and b's file b's. */
static void gap_end(struct setup *s, char fill, const char *what)
{
    pthread_mutex_unlock(&s->r->journal_lock);
    pthread_join(s->evictor, NULL);
    char got = file_fill(s->path_a);
    CHECK(got == fill, "%s was %s by the eviction", what, got == 0 ? "deleted" : "damaged");
    CHECK(file_fill(s->path_b) == 'b', "b (newest, within cache_max) was kept");
}

/* A read queues the evicted job again and a fetcher brings a fresh copy. */
static void test_refetched_copy_survives_eviction(const char *tmp)
{
    struct setup s;
    if (gap_begin(&s, tmp, "refetch") != 0)
        return;
    struct registry *r = s.r;
    struct job *a = s.a, *b = s.b;

    /* A read of a: it is queued again (the real call, as files.c makes it). */
    struct aindex *idx = NULL;
    CHECK(registry_job_index(r, a, &idx) == REGISTRY_WAIT, "a read of the evicted job waits");
    CHECK(state_of(r, a) == ARCHIVE_QUEUED, "queued again (state %d)", state_of(r, a));
    /* A fetcher takes it, downloads it and renames the fresh copy into
     * place under journal_lock (fetcher.c), which it then lets go. */
    pthread_mutex_lock(&r->lock);
    a->archive = ARCHIVE_FETCHING;
    pthread_mutex_unlock(&r->lock);
    place_copy_of_a(&s, 'A');

    /* The eviction goes on: the job is no longer evicted, the file stays. */
    gap_end(&s, 'A', "the copy fetched again");

    /* The fetch ends (fetcher.c finish): a is READY and readable. */
    pthread_mutex_lock(&r->lock);
    a->archive = ARCHIVE_READY;
    a->archive_bytes = FILE_BYTES;
    a->fetched_at = a->last_used = time(NULL);
    a->fetch_seq = ++r->fetch_seq;
    pthread_mutex_unlock(&r->lock);
    idx = NULL;
    int rc = registry_job_index(r, a, &idx);
    CHECK(rc == 0 && idx, "the fetched copy opens (rc %d)", rc);
    if (rc == 0)
        registry_index_done(r, a);

    /* Now over cache_max again with a the newest: b goes, a stays. */
    registry_enforce_cache_max(r);
    CHECK(state_of(r, b) == ARCHIVE_EVICTED, "b evicted (state %d)", state_of(r, b));
    CHECK(file_fill(s.path_b) == 0, "b's file removed");
    CHECK(file_fill(s.path_a) == 'A', "a's file kept");
    teardown(&s);
}

/* rmdir of a, then mkdir of a again: the namesake's fresh copy has the same
 * path.  The forget is registry_forget()'s own steps (it would wait for
 * journal_lock, held here as registry_forget holds it); the namesake's
 * attach and fetch are its file renamed into place under journal_lock. */
static void test_namesake_copy_survives_eviction_of_forgotten_job(const char *tmp)
{
    struct setup s;
    if (gap_begin(&s, tmp, "forget") != 0)
        return;
    struct registry *r = s.r;
    struct job *a = s.a;
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, PROJ);
    size_t at = 0;
    while (at < p->njobs && p->jobs[at] != a)
        at++;
    CHECK(at < p->njobs, "a is in its project");
    if (at < p->njobs) {
        memmove(p->jobs + at, p->jobs + at + 1, (p->njobs - at - 1) * sizeof *p->jobs);
        p->njobs--;
    }
    a->forgotten = 1;
    atomic_store(&a->cancelled, 1);
    registry_changed_locked(r, a);
    pthread_mutex_unlock(&r->lock);
    CHECK(journal_remove_job(s.jr, PROJ, JOB_A) == 0, "journal_remove_job");
    registry_put_job(r, a); /* the registry's reference, as registry_forget drops it */
    CHECK(file_fill(s.path_a) == 0, "rmdir removed a's file");
    place_copy_of_a(&s, 'N');

    /* The eviction of the forgotten a goes on: the namesake's file stays. */
    gap_end(&s, 'N', "the namesake's copy (its job forgotten)");
    teardown(&s);
}

int main(void)
{
    if (scratch_make("hcx-unit-evict-") < 0)
        return 1;
    test_refetched_copy_survives_eviction(tmpdir);
    test_namesake_copy_survives_eviction_of_forgotten_job(tmpdir);
    scratch_remove();
    return check_summary();
}
