/* The journal (src/jobs/journal.c) alone, and the registry's reading of its
 * records (registry_load, no cloud, no workers):
 *   - records written and read back: a job record with every field the
 *     registry writes (job_to_json_locked), through the journal and through
 *     a registry that loads it;
 *   - a damaged record moved aside as *.corrupt and counted, the others
 *     kept; a damaged job record comes back as a running job with an error
 *     and an unknown service (asked of the cloud again);
 *   - temporary files of interrupted writes (records and sidecars), the
 *     download of a forgotten job and orphaned sidecars removed at load;
 *   - records of the previous version (no `service`: WAF jobs) upgraded and
 *     written back; records with a bad state or service skipped;
 *   - the paths of archives, downloads and sidecars; journal_remove_job;
 *     write_file_atomic; pathf;
 *   - the cache directory rules of journal_open: created 0700, refused
 *     when writable by group or others or owned by another user (-EPERM),
 *     journal/, journal/projects, journal/jobs and archives refused when
 *     links or not directories (-ELOOP/-ENOTDIR), the cache directory
 *     itself resolved (a link to a private directory is used, its target
 *     checked), one mount per directory (-EBUSY). */
#include "journal.h"
#include "job.h" /* private to jobs/: these tests look into jobs */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"

#define P "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define WJ "4f0c1e2a9b8d7c6e5f4a3b2c1d0e9f8a"
#define HJ "e9130db2-4b17-4f12-be84-c26f1f55a31c"


/* ---- helpers -------------------------------------------------------------- */

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot create %s: %s", path, strerror(errno));
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int mode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static long long size_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Creates dir (one level), mode exactly `mode`. */
static void make_dir(const char *dir, mode_t mode)
{
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    CHECK(chmod(dir, mode) == 0, "chmod %s: %s", dir, strerror(errno));
}

static struct journal *open_ok(const char *dir)
{
    struct journal *j = NULL;
    char *why = NULL;
    int rc = journal_open(dir, &j, &why);
    CHECK(rc == 0 && j, "journal_open %s: %d %s", dir, rc, why ? why : "");
    free(why);
    return rc ? NULL : j;
}

/* journal_open must fail with rc (or rc2 when not 0) and a reason holding `says`. */
static void open_refused(const char *dir, int rc, int rc2, const char *says)
{
    struct journal *j = NULL;
    char *why = NULL;
    int got = journal_open(dir, &j, &why);
    CHECK(got == rc || (rc2 && got == rc2), "journal_open %s: %d, want %d (%s)", dir, got, rc,
          why ? why : "no reason");
    CHECK(why && strstr(why, says), "journal_open %s: reason '%s' lacks '%s'", dir,
          why ? why : "(null)", says);
    free(why);
    if (got == 0)
        journal_close(j);
}

struct collected {
    json_t *projects;   /* id -> record */
    json_t *jobs;       /* "project/job" -> record */
};

static void got_project(void *arg, const char *project, json_t *rec)
{
    struct collected *c = arg;
    json_object_set(c->projects, project, rec);
}

static void got_job(void *arg, const char *project, const char *job, json_t *rec)
{
    struct collected *c = arg;
    char key[200];
    snprintf(key, sizeof key, "%s/%s", project, job);
    json_object_set(c->jobs, key, rec);
}

static int load(struct journal *j, struct collected *c)
{
    c->projects = json_object();
    c->jobs = json_object();
    return journal_load(j, got_project, got_job, c);
}

static void collected_free(struct collected *c)
{
    json_decref(c->projects);
    json_decref(c->jobs);
}

/* A job with every field the registry keeps in its record set. */
static struct job *full_job(struct project *p, const char *id, enum cloud_service service)
{
    struct job *j = calloc(1, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->project = p;
    j->service = service;
    j->filter = service == SERVICE_HSS
                    ? json_pack("{s:s, s:s, s:i}", "service", "hss", "category", "host",
                                "last_days", 7)
                    : json_pack("{s:s, s:[s,s]}", "recent", "today", "dump_columns", "id", "time");
    snprintf(j->task.task_status, sizeof j->task.task_status, "success");
    snprintf(j->task.cloud_status, sizeof j->task.cloud_status,
             service == SERVICE_HSS ? "success" : "SUCCESS");
    snprintf(j->task.task_name, sizeof j->task.task_name, "event_host_1764650000000_export_task");
    snprintf(j->task.file_id, sizeof j->task.file_id, "%s",
             service == SERVICE_HSS ? "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a" : "f1e2d3c4b5a6");
    snprintf(j->task.file_name, sizeof j->task.file_name, "waf-events-20261202-2e3d1e80.csv");
    snprintf(j->format, sizeof j->format, service == SERVICE_HSS ? "zip" : "csv");
    snprintf(j->file_match, sizeof j->file_match, service == SERVICE_HSS ? "" : "time");
    snprintf(j->file_obsname, sizeof j->file_obsname,
             service == SERVICE_HSS ? "" : "waf/" P "/2026/12/02/waf-events-20261202-2e3d1e80.csv");
    j->file_time_ms = 1764650012345;
    j->attached_at = 1764650001;
    j->cloud_since_ms = 1764650000000;
    j->cloud_success_ms = 1764650011000;
    j->submitted_ms = 1764650000123;
    snprintf(j->message, sizeof j->message, "Export succeeded");
    j->error = strdup("archive has damaged entries: x.csv");
    j->submitted_at = 1764650000;
    j->polled_at = 1764650011;
    j->dl_done = j->dl_total = 3388;
    j->archive = ARCHIVE_READY;
    j->local_size = 3388;
    j->local_mtime = 1764650013;
    return j;
}

static void job_done(struct job *j)
{
    json_decref(j->filter);
    free(j->error);
    free(j);
}

static json_t *job_record(struct job *j)
{
    return job_to_json_locked(j); /* no registry: nothing to lock */
}

/* ---- the cache directory -------------------------------------------------- */

static void test_open(void)
{
    char dir[PATH_MAX], path[PATH_MAX], real[PATH_MAX];
    pathf(dir, "%s/open/cache", tmpdir); /* two levels: created */
    struct journal *j = open_ok(dir);
    if (!j)
        return;
    CHECK(realpath(dir, real) && strcmp(journal_cache_dir(j), real) == 0, "cache dir %s",
          journal_cache_dir(j));
    static const char *const subdirs[] = { "", "/journal", "/journal/projects", "/journal/jobs",
                                           "/archives" };
    for (size_t i = 0; i < 5; i++) {
        pathf(path, "%s%s", dir, subdirs[i]);
        CHECK(mode_of(path) == 0700, "%s: mode %04o, want 0700", path, mode_of(path));
    }
    pathf(path, "%s/CACHEDIR.TAG", dir);
    FILE *f = fopen(path, "r");
    char line[128] = "";
    CHECK(f && fgets(line, sizeof line, f), "no %s", path);
    if (f)
        fclose(f);
    CHECK(strcmp(line, "Signature: 8a477f597d28d172789f06886806bc55\n") == 0,
          "CACHEDIR.TAG starts with '%s'", line);
    /* One mount per cache directory. */
    open_refused(dir, -EBUSY, 0, "in use by another hcexportfs mount");
    journal_close(j);
    j = open_ok(dir); /* the lock went with the first */
    journal_close(j);
}

static void test_private_dir(void)
{
    char dir[PATH_MAX], path[PATH_MAX], link[PATH_MAX];
    /* Writable by group, by others: refused before anything is created in it. */
    static const mode_t bad[] = { 0770, 0702, 0777, 0720 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pathf(dir, "%s/mode%o", tmpdir, (unsigned)bad[i]);
        make_dir(dir, bad[i]);
        open_refused(dir, -EPERM, 0, "writable by group or others");
        pathf(path, "%s/journal", dir);
        CHECK(!exists(path), "journal/ created in a refused %s", dir);
    }
    /* Readable by others is not the point: only write bits refuse. */
    pathf(dir, "%s/mode755", tmpdir);
    make_dir(dir, 0755);
    journal_close(open_ok(dir));

    /* Owned by another user (only root can make one). */
    if (geteuid() == 0) {
        pathf(dir, "%s/foreign", tmpdir);
        make_dir(dir, 0700);
        CHECK(chown(dir, 65534, 65534) == 0, "chown %s: %s", dir, strerror(errno));
        open_refused(dir, -EPERM, 0, "owned by uid 65534");
    }

    /* The cache directory is resolved: a link to a private directory is
     * that directory; a link to a directory writable by others is refused
     * like the directory. */
    pathf(dir, "%s/target", tmpdir);
    make_dir(dir, 0700);
    pathf(link, "%s/link", tmpdir);
    CHECK(symlink(dir, link) == 0, "symlink: %s", strerror(errno));
    struct journal *j = open_ok(link);
    if (j) {
        char real[PATH_MAX];
        CHECK(realpath(dir, real) && strcmp(journal_cache_dir(j), real) == 0,
              "a link's cache dir is %s, want its target", journal_cache_dir(j));
        journal_close(j);
    }
    pathf(dir, "%s/opentarget", tmpdir);
    make_dir(dir, 0777);
    pathf(link, "%s/linkopen", tmpdir);
    CHECK(symlink(dir, link) == 0, "symlink: %s", strerror(errno));
    open_refused(link, -EPERM, 0, "writable by group or others");

    /* Below it, links are refused (not followed), and so are files. */
    static const char *const below[] = { "journal", "journal/projects", "journal/jobs",
                                         "archives" };
    for (size_t i = 0; i < 4; i++) {
        pathf(dir, "%s/below%zu", tmpdir, i);
        make_dir(dir, 0700);
        journal_close(open_ok(dir)); /* the layout */
        char sub[PATH_MAX], elsewhere[PATH_MAX];
        pathf(sub, "%s/%s", dir, below[i]);
        pathf(elsewhere, "%s/elsewhere%zu", tmpdir, i);
        CHECK(rename(sub, elsewhere) == 0, "rename %s: %s", sub, strerror(errno));
        CHECK(symlink(elsewhere, sub) == 0, "symlink %s: %s", sub, strerror(errno));
        open_refused(dir, -ELOOP, -ENOTDIR, "(a link or not a directory)");
        /* A subdirectory writable by group: the same rule as the top. */
        CHECK(unlink(sub) == 0 && rename(elsewhere, sub) == 0, "restore %s", sub);
        CHECK(chmod(sub, 0770) == 0, "chmod %s", sub);
        open_refused(dir, -EPERM, 0, "writable by group or others");
        CHECK(chmod(sub, 0700) == 0, "chmod %s", sub);
        journal_close(open_ok(dir));
    }
    pathf(dir, "%s/archivesfile", tmpdir);
    make_dir(dir, 0700);
    pathf(path, "%s/archives", dir);
    put_file(path, "not a directory\n");
    open_refused(dir, -ENOTDIR, 0, "(a link or not a directory)");
}

/* ---- records -------------------------------------------------------------- */

static const char *const record_fields[] = {
    "job_id", "project_id", "service", "filter", "task_name", "task_status", "state", "file_id",
    "file_name", "file_match", "file_obsname", "file_time", "message", "submitted_at",
    "polled_at", "attached_at", "cloud_since_ms", "cloud_success_ms", "submitted_ms",
    "download", "error", "archive", "format", "local_size", "local_mtime", NULL
};

static void test_records(void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    pathf(dir, "%s/records", tmpdir);
    struct journal *jr = open_ok(dir);
    if (!jr)
        return;
    struct project proj = { .id = P };
    struct job *w = full_job(&proj, WJ, SERVICE_WAF), *h = full_job(&proj, HJ, SERVICE_HSS);
    json_t *wrec = job_record(w), *hrec = job_record(h);
    for (size_t i = 0; record_fields[i]; i++)
        CHECK(json_object_get(wrec, record_fields[i]), "the record lacks %s", record_fields[i]);
    /* Every field carries a value here (none null): a field lost on the way shows. */
    const char *key;
    json_t *v;
    json_object_foreach(wrec, key, v)
        CHECK(!json_is_null(v), "field %s is null in the full record", key);

    json_t *prec = json_pack("{s:s, s:I}", "project_id", P, "added_at", (json_int_t)1764640000);
    CHECK(journal_save_project(jr, P, prec) == 0, "journal_save_project");
    CHECK(journal_save_job(jr, P, WJ, wrec) == 0, "journal_save_job WAF");
    CHECK(journal_save_job(jr, P, HJ, hrec) == 0, "journal_save_job HSS");
    pathf(path, "%s/journal/jobs/%s/%s.json", dir, P, WJ);
    CHECK(mode_of(path) == 0600, "%s: mode %04o", path, mode_of(path));
    pathf(path, "%s/journal/jobs/%s", dir, P);
    CHECK(mode_of(path) == 0700, "%s: mode %04o", path, mode_of(path));

    struct collected c;
    CHECK(load(jr, &c) == 0, "damaged records in a clean journal");
    CHECK(json_object_size(c.projects) == 1 && json_equal(json_object_get(c.projects, P), prec),
          "the project record did not come back");
    CHECK(json_object_size(c.jobs) == 2, "%zu job records, want 2", json_object_size(c.jobs));
    CHECK(json_equal(json_object_get(c.jobs, P "/" WJ), wrec), "the WAF record changed");
    CHECK(json_equal(json_object_get(c.jobs, P "/" HJ), hrec), "the HSS record changed");
    collected_free(&c);

    /* A record saved again replaces the old one. */
    json_object_set_new(hrec, "message", json_string("second"));
    CHECK(journal_save_job(jr, P, HJ, hrec) == 0, "journal_save_job again");
    load(jr, &c);
    CHECK(json_equal(json_object_get(c.jobs, P "/" HJ), hrec), "the second save was lost");
    collected_free(&c);
    json_object_set_new(hrec, "message", json_string("Export succeeded"));
    journal_save_job(jr, P, HJ, hrec);

    /* Through a registry: every field is read back into the job.  The WAF
     * job's file is local (its archive is ready); the HSS task's is not
     * (queued for a fetch). */
    char local[PATH_MAX];
    CHECK(journal_archive_dir(jr, P, path) == 0, "journal_archive_dir");
    journal_archive_path(jr, P, WJ, "csv", local);
    put_file(local, "id,time\n1,2\n");
    struct registry *r = NULL;
    CHECK(registry_create(jr, NULL, 1.0, &r) == 0, "registry_create");
    CHECK(registry_load(r) == 0, "registry_load: damaged records");
    struct job *lw = registry_get_job(r, P, WJ), *lh = registry_get_job(r, P, HJ);
    CHECK(lw && lh, "the registry lacks a job");
    if (lw && lh) {
        pthread_mutex_lock(&r->lock);
        json_t *again = job_to_json_locked(lw);
        CHECK(json_equal(again, wrec), "the WAF job read back differs from its record");
        if (!json_equal(again, wrec)) {
            char *a = json_dumps(again, JSON_SORT_KEYS), *b = json_dumps(wrec, JSON_SORT_KEYS);
            fprintf(stderr, "  read back: %s\n  record:    %s\n", a, b);
            free(a);
            free(b);
        }
        json_decref(again);
        again = job_to_json_locked(lh);
        CHECK(strcmp(json_string_value(json_object_get(again, "archive")), "queued") == 0,
              "an HSS task whose file is not local: archive %s",
              json_string_value(json_object_get(again, "archive")));
        json_object_del(again, "archive");
        json_object_del(hrec, "archive");
        CHECK(json_equal(again, hrec), "the HSS task read back differs from its record");
        json_decref(again);
        CHECK(lw->archive_bytes == size_of(local), "archive_bytes %lld",
              (long long)lw->archive_bytes);
        CHECK(lw->service == SERVICE_WAF && !lw->service_unknown && lh->service == SERVICE_HSS,
              "services");
        pthread_mutex_unlock(&r->lock);
    }
    if (lw)
        registry_put_job(r, lw);
    if (lh)
        registry_put_job(r, lh);
    registry_destroy(r);
    json_decref(prec);
    json_decref(wrec);
    json_decref(hrec);
    job_done(w);
    job_done(h);
    journal_close(jr);
}

static void test_damaged(void)
{
    char dir[PATH_MAX], path[PATH_MAX], jobs[PATH_MAX];
    pathf(dir, "%s/damaged", tmpdir);
    struct journal *jr = open_ok(dir);
    if (!jr)
        return;
    struct project proj = { .id = P };
    struct job *w = full_job(&proj, WJ, SERVICE_WAF);
    json_t *wrec = job_record(w);
    json_t *prec = json_pack("{s:s, s:I}", "project_id", P, "added_at", (json_int_t)1);
    journal_save_project(jr, P, prec);
    journal_save_job(jr, P, WJ, wrec);
    pathf(jobs, "%s/journal/jobs/%s", dir, P);
    static const char *const bad[] = { "aaaa0000000000000000000000000001", "{\"job_id\": \"x\", ",
                                       "aaaa0000000000000000000000000002", "[1, 2, 3]",
                                       "aaaa0000000000000000000000000003", "" };
    for (size_t i = 0; i < 6; i += 2) {
        pathf(path, "%s/%s.json", jobs, bad[i]);
        put_file(path, bad[i + 1]);
    }
    pathf(path, "%s/journal/projects/bbbb.json", dir);
    put_file(path, "{\"project_id\": ");   /* a damaged project: skipped, not recovered */

    struct collected c;
    int damaged = load(jr, &c);
    CHECK(damaged == 4, "%d damaged records, want 4", damaged);
    CHECK(json_equal(json_object_get(c.jobs, P "/" WJ), wrec), "a good record was lost");
    CHECK(json_object_get(c.projects, P) && !json_object_get(c.projects, "bbbb"),
          "projects: the good one kept, the damaged one skipped");
    for (size_t i = 0; i < 6; i += 2) {
        char key[200];
        snprintf(key, sizeof key, "%s/%s", P, bad[i]);
        json_t *rec = json_object_get(c.jobs, key);
        CHECK(rec, "damaged record %s: its job is lost (it should be recovered)", bad[i]);
        if (!rec)
            continue;
        CHECK(json_is_null(json_object_get(rec, "service")), "%s: service not null", bad[i]);
        CHECK(strcmp(json_string_value(json_object_get(rec, "task_status")), "running") == 0,
              "%s: not running", bad[i]);
        const char *err = json_string_value(json_object_get(rec, "error"));
        CHECK(err && strstr(err, "damaged") && strstr(err, ".corrupt"), "%s: error '%s'", bad[i],
              err ? err : "(null)");
        pathf(path, "%s/%s.json", jobs, bad[i]);
        CHECK(!exists(path), "%s is still there", path);
        pathf(path, "%s/%s.json.corrupt", jobs, bad[i]);
        CHECK(exists(path), "%s was not kept aside", path);
    }
    pathf(path, "%s/journal/projects/bbbb.json.corrupt", dir);
    CHECK(exists(path), "the damaged project record was not kept aside");
    collected_free(&c);
    /* Moved aside: counted once. */
    CHECK(load(jr, &c) == 0, "damaged records counted twice");
    CHECK(json_object_size(c.jobs) == 1, "%zu job records after the move", json_object_size(c.jobs));
    collected_free(&c);

    /* Through a registry: the recovered job runs with an unknown service. */
    pathf(path, "%s/%s.json", jobs, bad[0]);
    put_file(path, "{{");
    struct registry *r = NULL;
    registry_create(jr, NULL, 1.0, &r);
    CHECK(registry_load(r) == 1, "registry_load: damaged count");
    struct job *j = registry_get_job(r, P, bad[0]), *good = registry_get_job(r, P, WJ);
    CHECK(j && good, "the registry lacks the recovered or the good job");
    if (j) {
        pthread_mutex_lock(&r->lock);
        CHECK(j->service_unknown && !job_has_ended_locked(j) && j->error,
              "recovered: service_unknown %d, status %s", j->service_unknown,
              j->task.task_status);
        json_t *o = job_to_json_locked(j);
        CHECK(json_is_null(json_object_get(o, "service")), "recovered: service not null");
        json_decref(o);
        pthread_mutex_unlock(&r->lock);
        registry_put_job(r, j);
    }
    if (good)
        registry_put_job(r, good);
    registry_destroy(r);
    json_decref(wrec);
    json_decref(prec);
    job_done(w);
    journal_close(jr);
}

static void test_leftovers(void)
{
    char dir[PATH_MAX], path[PATH_MAX], jobs[PATH_MAX], arch[PATH_MAX];
    pathf(dir, "%s/leftovers", tmpdir);
    struct journal *jr = open_ok(dir);
    if (!jr)
        return;
    json_t *rec = json_pack("{s:s, s:s, s:s}", "job_id", WJ, "service", "waf", "task_status",
                            "running");
    journal_save_job(jr, P, WJ, rec);
    json_t *prec = json_pack("{s:s}", "project_id", P);
    journal_save_project(jr, P, prec);
    pathf(jobs, "%s/journal/jobs/%s", dir, P);
    /* Interrupted writes: a temporary record (torn), of a job and a project. */
    char tmp_job[PATH_MAX], tmp_job2[PATH_MAX], tmp_project[PATH_MAX];
    pathf(tmp_job, "%s/.%s.json.tmp.4242.7", jobs, WJ);
    put_file(tmp_job, "{\"job_id\": \"torn");
    pathf(tmp_job2, "%s/.cccc.json.tmp.4242.8", jobs);
    put_file(tmp_job2, "{}");
    pathf(tmp_project, "%s/journal/projects/.%s.json.tmp.1.1", dir, P);
    put_file(tmp_project, "{");
    /* archives/<project>/ after a crash. */
    CHECK(journal_archive_dir(jr, P, arch) == 0, "journal_archive_dir");
    struct {
        const char *name;
        int kept;
    } files[] = {
        { WJ ".zip", 1 },                       /* an archive */
        { WJ ".zip.idx", 1 },                   /* its sidecars */
        { WJ ".zip.ckpt", 1 },
        { WJ ".zip.ckpt.tmp.99.1", 0 },         /* a sidecar being written */
        { WJ ".csv.gz.idx.tmp.99.2", 0 },
        { "." WJ ".zip.part", 1 },              /* the download of a known job */
        { ".dddd.zip.part", 0 },                /* of a job the journal forgot */
        { "eeee.zip.idx", 0 },                  /* sidecars whose archive is gone */
        { "eeee.csv.gz.ckpt", 0 },
        { "ffff.csv.gz", 1 },                   /* an archive of another format */
        { "ffff.csv.gz.idx", 1 },
        { "gggg.zip.idx", 1 },                  /* its download is under way */
        { ".gggg.zip.part", 1 },
        { "notes.txt", 1 },                     /* not ours: left alone */
    };
    size_t nfiles = sizeof files / sizeof *files;
    for (size_t i = 0; i < nfiles; i++) {
        pathf(path, "%s/%s", arch, files[i].name);
        put_file(path, "x");
    }
    /* gggg is known only by a damaged record: its download stays too. */
    pathf(path, "%s/gggg.json.corrupt", jobs);
    put_file(path, "{");

    struct collected c;
    int damaged = load(jr, &c);
    CHECK(damaged == 0, "%d damaged: a temporary file counted as a record", damaged);
    CHECK(json_object_size(c.jobs) == 1 && json_equal(json_object_get(c.jobs, P "/" WJ), rec),
          "the job's record is not the one renamed into place");
    CHECK(json_object_size(c.projects) == 1, "%zu projects", json_object_size(c.projects));
    CHECK(!exists(tmp_job) && !exists(tmp_job2) && !exists(tmp_project),
          "temporary records left behind");
    for (size_t i = 0; i < nfiles; i++) {
        pathf(path, "%s/%s", arch, files[i].name);
        CHECK(exists(path) == files[i].kept, "archives/%s/%s: %s", P, files[i].name,
              files[i].kept ? "removed, should stay" : "left, should go");
    }
    collected_free(&c);
    json_decref(rec);
    json_decref(prec);
    journal_close(jr);
}

/* Records of the previous version: no service (WAF jobs), the cloud's
 * lower-case word in task_status, no state; its file_id came from HSS and
 * is dropped; only a local zip is kept. */
static void test_upgrade(void)
{
    char dir[PATH_MAX], path[PATH_MAX];
    pathf(dir, "%s/upgrade", tmpdir);
    struct journal *jr = open_ok(dir);
    if (!jr)
        return;
    static const char *const ids[] = { "1111aaaa", "2222bbbb", "3333cccc", "4444dddd",
                                       "5555eeee" };
    json_t *old_local = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:[s]}, s:s, s:{s:i, s:i}}",
                                  "job_id", ids[0], "project_id", P, "task_status", "success",
                                  "file_id", "a-file-of-hss", "filter", "recent", "today",
                                  "dump_columns", "id", "submitted_at", "2026-12-01T10:00:00Z",
                                  "download", "done", 10, "total", 10);
    json_t *old_gone = json_pack("{s:s, s:s, s:s}", "job_id", ids[1], "task_status", "success",
                                 "file_id", "a-file-of-hss");
    json_t *old_running = json_pack("{s:s, s:s}", "job_id", ids[2], "task_status", "running");
    json_t *bad_service = json_pack("{s:s, s:s, s:s}", "job_id", ids[3], "service", "obs",
                                    "task_status", "running");
    json_t *bad_state = json_pack("{s:s, s:s, s:s}", "job_id", ids[4], "service", "waf",
                                  "task_status", "maybe");
    journal_save_job(jr, P, ids[0], old_local);
    journal_save_job(jr, P, ids[1], old_gone);
    journal_save_job(jr, P, ids[2], old_running);
    journal_save_job(jr, P, ids[3], bad_service);
    journal_save_job(jr, P, ids[4], bad_state);
    char arch[PATH_MAX];
    journal_archive_dir(jr, P, arch);
    journal_archive_path(jr, P, ids[0], "zip", path);
    put_file(path, "PK\005\006" "000000000000000000");

    struct registry *r = NULL;
    registry_create(jr, NULL, 1.0, &r);
    CHECK(registry_load(r) == 0, "registry_load: damaged");
    struct job *local = registry_get_job(r, P, ids[0]), *gone = registry_get_job(r, P, ids[1]),
               *running = registry_get_job(r, P, ids[2]);
    CHECK(local && gone && running, "an old record was not loaded");
    CHECK(!registry_get_job(r, P, ids[3]), "a record with an unknown service was loaded");
    CHECK(!registry_get_job(r, P, ids[4]), "a record with an unknown state was loaded");
    if (local && gone && running) {
        pthread_mutex_lock(&r->lock);
        CHECK(local->service == SERVICE_WAF && !local->service_unknown && !local->upgrade,
              "old record: service %d unknown %d upgrade %d", local->service,
              local->service_unknown, local->upgrade);
        CHECK(strcmp(local->format, "zip") == 0 && local->archive == ARCHIVE_READY,
              "old record with its zip: format '%s' archive %d", local->format, local->archive);
        CHECK(local->task.file_id[0] == '\0', "old record kept HSS's file_id %s",
              local->task.file_id);
        CHECK(gone->format[0] == '\0' && gone->archive == ARCHIVE_LOCATING,
              "old record without its zip: format '%s' archive %d (want locating)",
              gone->format, gone->archive);
        CHECK(running->service == SERVICE_WAF && !job_has_ended_locked(running),
              "old running record");
        pthread_mutex_unlock(&r->lock);
    }
    /* Written back in this version's form. */
    for (size_t i = 0; i < 3; i++) {
        pathf(path, "%s/journal/jobs/%s/%s.json", dir, P, ids[i]);
        json_t *rec = json_load_file(path, 0, NULL);
        CHECK(rec && strcmp(json_string_value(json_object_get(rec, "service")), "waf") == 0,
              "%s: not upgraded (service)", ids[i]);
        CHECK(rec && json_is_string(json_object_get(rec, "state")), "%s: no state", ids[i]);
        if (i < 2)
            CHECK(rec && json_is_null(json_object_get(rec, "file_id")), "%s: file_id kept",
                  ids[i]);
        json_decref(rec);
    }
    if (local)
        registry_put_job(r, local);
    if (gone)
        registry_put_job(r, gone);
    if (running)
        registry_put_job(r, running);
    registry_destroy(r);
    json_decref(old_local);
    json_decref(old_gone);
    json_decref(old_running);
    json_decref(bad_service);
    json_decref(bad_state);
    journal_close(jr);
}

/* ---- paths ---------------------------------------------------------------- */

static void write_bytes(const char *path, size_t n)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f)
        return;
    for (size_t i = 0; i < n; i++)
        fputc('x', f);
    fclose(f);
}

static void test_paths(void)
{
    char dir[PATH_MAX], path[PATH_MAX], want[PATH_MAX], arch[PATH_MAX];
    pathf(dir, "%s/paths", tmpdir);
    struct journal *jr = open_ok(dir);
    if (!jr)
        return;
    const char *top = journal_cache_dir(jr);
    pathf(want, "%s/archives/%s", top, P);
    CHECK(!exists(want), "archives/<project> before it is asked for");
    CHECK(journal_archive_dir(jr, P, arch) == 0 && strcmp(arch, want) == 0,
          "journal_archive_dir: %s", arch);
    CHECK(mode_of(arch) == 0700, "%s: mode %04o", arch, mode_of(arch));
    CHECK(journal_archive_dir(jr, P, arch) == 0, "journal_archive_dir twice");
    for (size_t f = 0; journal_formats[f]; f++) {
        journal_archive_path(jr, P, WJ, journal_formats[f], path);
        pathf(want, "%s/archives/%s/%s.%s", top, P, WJ, journal_formats[f]);
        CHECK(strcmp(path, want) == 0, "archive path %s", path);
    }
    CHECK(!strcmp(journal_formats[0], "zip") && !strcmp(journal_formats[1], "csv.gz") &&
          !strcmp(journal_formats[2], "csv") && !journal_formats[3], "journal_formats");
    journal_partial_path(jr, P, WJ, path);
    pathf(want, "%s/archives/%s/.%s.zip.part", top, P, WJ);
    CHECK(strcmp(path, want) == 0, "partial path %s", path);

    /* Sidecars: "<archive>.ckpt" and "<archive>.idx", whatever the format. */
    for (size_t f = 0; journal_formats[f]; f++) {
        char side[PATH_MAX];
        journal_archive_path(jr, P, WJ, journal_formats[f], path);
        write_bytes(path, 10);
        CHECK(journal_sidecar_bytes(path) == 0, "sidecar bytes without sidecars");
        pathf(side, "%s.ckpt", path);
        write_bytes(side, 100);
        pathf(side, "%s.idx", path);
        write_bytes(side, 1000);
        CHECK(journal_sidecar_bytes(path) == 1100, "%s: sidecar bytes %lld", journal_formats[f],
              (long long)journal_sidecar_bytes(path));
        journal_unlink_sidecars(path);
        CHECK(!exists(side) && exists(path), "%s: unlink_sidecars", journal_formats[f]);
        pathf(side, "%s.ckpt", path);
        CHECK(!exists(side), "%s: the checkpoints stayed", journal_formats[f]);
        journal_unlink_sidecars(path); /* none: fine */
    }

    /* journal_remove_job: the record, every format's file and sidecars, the download. */
    json_t *rec = json_pack("{s:s, s:s, s:s}", "job_id", WJ, "service", "waf", "task_status",
                            "success");
    journal_save_job(jr, P, WJ, rec);
    json_decref(rec);
    char files[8][PATH_MAX];
    int nf = 0;
    for (size_t f = 0; journal_formats[f]; f++) {
        journal_archive_path(jr, P, WJ, journal_formats[f], files[nf]);
        write_bytes(files[nf++], 1);
    }
    journal_archive_path(jr, P, WJ, "zip", path);
    pathf(files[nf], "%s.idx", path);
    write_bytes(files[nf++], 1);
    pathf(files[nf], "%s.ckpt", path);
    write_bytes(files[nf++], 1);
    journal_partial_path(jr, P, WJ, files[nf]);
    write_bytes(files[nf++], 1);
    pathf(files[nf++], "%s/journal/jobs/%s/%s.json", top, P, WJ);
    /* Another job's files stay. */
    char other[PATH_MAX];
    journal_archive_path(jr, P, HJ, "zip", other);
    write_bytes(other, 1);
    CHECK(journal_remove_job(jr, P, WJ) == 0, "journal_remove_job");
    for (int i = 0; i < nf; i++)
        CHECK(!exists(files[i]), "%s left after journal_remove_job", files[i]);
    CHECK(exists(other), "journal_remove_job took another job's file");
    CHECK(journal_remove_job(jr, P, WJ) == 0, "journal_remove_job of a job already gone");

    /* write_file_atomic: whole, private, replaced, no temporary left. */
    CHECK(write_file_atomic(arch, "f.json", "first", 5) == 0, "write_file_atomic");
    CHECK(write_file_atomic(arch, "f.json", "second!", 7) == 0, "write_file_atomic again");
    pathf(path, "%s/f.json", arch);
    CHECK(size_of(path) == 7 && mode_of(path) == 0600, "f.json: %lld bytes, mode %04o",
          size_of(path), mode_of(path));
    pathf(path, "%s/nodir", arch);
    CHECK(write_file_atomic(path, "f.json", "x", 1) == -ENOENT, "into a missing directory");
    int leftovers = 0;
    FILE *ls = NULL;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '\\.tmp\\.'", arch);
    ls = popen(cmd, "r");
    if (ls) {
        CHECK(fscanf(ls, "%d", &leftovers) == 1, "ls");
        pclose(ls);
    }
    CHECK(leftovers == 0, "%d temporary files left by write_file_atomic", leftovers);

    /* pathf: PATH_MAX bytes at most. */
    char big[PATH_MAX + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(pathf(path, "%s", big) == -ENAMETOOLONG, "pathf of an over-long path");
    big[PATH_MAX - 1] = '\0';
    CHECK(pathf(path, "%s", big) == 0 && strlen(path) == PATH_MAX - 1, "pathf at the limit");
    journal_close(jr);
}

int main(void)
{
    umask(022);
    if (scratch_make("hcx-unit-journal-") < 0)
        return 1;
    test_open();
    test_private_dir();
    test_records();
    test_damaged();
    test_leftovers();
    test_upgrade();
    test_paths();
    scratch_remove();
    return check_summary();
}
