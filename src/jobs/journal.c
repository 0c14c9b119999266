/* journal: atomic, durable per-record files for projects and jobs. */
#include "journal.h"
#include "cloud.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct journal {
    char *dir;
    int lock_fd;
};

static const char cachedir_tag[] =
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by hcexportfs.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n";

int pathf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_MAX, fmt, ap);
    va_end(ap);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int write_file_atomic(const char *dir, const char *name, const void *data, size_t len)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    static unsigned long counter;
    unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    if (pathf(tmp, "%s/.%s.tmp.%d.%lu", dir, name, (int)getpid(), n) ||
        pathf(final, "%s/%s", dir, name))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    const char *p = data;
    size_t left = len;
    int rc = 0;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, final) < 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(dir);
}

/* The cache holds the journal and the downloaded files: like a credentials
 * file, it must be the mounting user's and not writable by group or others
 * (else anyone could plant links or records in it).  0, or -errno with why. */
static int check_private_dir(const char *path, char **why)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    int rc = fd < 0 || fstat(fd, &st) < 0 ? -errno : 0;
    if (fd >= 0)
        close(fd);
    if (rc) {
        if (asprintf(why, "cache directory %s: %s%s", path, strerror(-rc),
                     rc == -ELOOP || rc == -ENOTDIR ? " (a link or not a directory)" : "") < 0)
            *why = NULL;
        return rc;
    }
    if (st.st_uid != geteuid()) {
        if (asprintf(why, "cache directory %s is owned by uid %u, not by the mounting user "
                     "(uid %u); refusing it", path, (unsigned)st.st_uid,
                     (unsigned)geteuid()) < 0)
            *why = NULL;
        return -EPERM;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        if (asprintf(why, "cache directory %s is writable by group or others (mode %04o); "
                     "refusing it: chmod go-w %s", path, (unsigned)(st.st_mode & 07777),
                     path) < 0)
            *why = NULL;
        return -EPERM;
    }
    return 0;
}

int journal_open(const char *cache_dir_arg, struct journal **out, char **why)
{
    char path[PATH_MAX], cache_dir[PATH_MAX];
    int rc = mkdir_p(cache_dir_arg, 0700);
    /* Absolute, because the daemon chdir()s to / after start-up. */
    if (!rc && !realpath(cache_dir_arg, cache_dir))
        rc = -errno;
    if (rc) {
        if (asprintf(why, "cannot create cache directory %s: %s", cache_dir_arg,
                     strerror(-rc)) < 0)
            *why = NULL;
        return rc;
    }
    static const char *const subdirs[] = { "journal/projects", "journal/jobs", "archives" };
    if ((rc = check_private_dir(cache_dir, why)) != 0)
        return rc;
    for (size_t i = 0; i < 3; i++) {
        pathf(path, "%s/%s", cache_dir, subdirs[i]);
        if ((rc = mkdir_p(path, 0700))) {
            if (asprintf(why, "cannot create %s: %s", path, strerror(-rc)) < 0)
                *why = NULL;
            return rc;
        }
    }
    /* journal/ and the three below: the same rule (not followed as links). */
    static const char *const checked[] = { "journal", "journal/projects", "journal/jobs",
                                           "archives" };
    for (size_t i = 0; i < 4; i++) {
        pathf(path, "%s/%s", cache_dir, checked[i]);
        if ((rc = check_private_dir(path, why)) != 0)
            return rc;
    }
    pathf(path, "%s/CACHEDIR.TAG", cache_dir);
    if (access(path, F_OK) < 0 &&
        (rc = write_file_atomic(cache_dir, "CACHEDIR.TAG", cachedir_tag, sizeof cachedir_tag - 1))) {
        if (asprintf(why, "cannot write %s: %s", path, strerror(-rc)) < 0)
            *why = NULL;
        return rc;
    }
    pathf(path, "%s/lock", cache_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        if (asprintf(why, rc == -EWOULDBLOCK
                     ? "cache directory %s is in use by another hcexportfs mount"
                     : "cannot lock %s: %s", rc == -EWOULDBLOCK ? cache_dir : path,
                     strerror(-rc)) < 0)
            *why = NULL;
        if (fd >= 0)
            close(fd);
        return rc == -EWOULDBLOCK ? -EBUSY : rc;
    }
    struct journal *j = calloc(1, sizeof *j);
    if (!j || !(j->dir = strdup(cache_dir))) {
        free(j);
        close(fd);
        return -ENOMEM;
    }
    j->lock_fd = fd;
    *out = j;
    return 0;
}

void journal_close(struct journal *j)
{
    if (!j)
        return;
    close(j->lock_fd);
    free(j->dir);
    free(j);
}

const char *journal_cache_dir(const struct journal *j) { return j->dir; }

/* A damaged record is moved aside and reported.  A job's id and project
 * are in its path, so with `recover` the job is kept as running with an
 * error: the poller asks the cloud for its state again (only the filter
 * is lost, as for an attached job) rather than the job vanishing. */
static json_t *load_record(const char *dir, const char *file, int *damaged, int recover)
{
    char path[PATH_MAX], aside[PATH_MAX];
    pathf(path, "%s/%s", dir, file);
    json_error_t err;
    json_t *rec = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (json_is_object(rec))
        return rec;
    json_decref(rec);
    pathf(aside, "%s.corrupt", path);
    log_error("journal record %s is damaged (%s); moved aside to %s, other records are kept",
              path, err.text[0] ? err.text : "not an object", aside);
    if (rename(path, aside) < 0)
        log_error("cannot move %s aside: %s", path, strerror(errno));
    (*damaged)++;
    if (!recover)
        return NULL;
    char msg[PATH_MAX + 200];
    snprintf(msg, sizeof msg, "journal record was damaged (kept as %s); state recovered from "
             "the cloud", aside);
    /* Which service the job belongs to is lost with the record (null):
     * the poller asks WAF, then HSS, as an attach does. */
    return json_pack("{s:s, s:s, s:n}", "task_status", "running", "error", msg, "service");
}

/* Yields the ids of dir's "<id>.json" files; temporary files are removed. */
static int for_each_record(const char *dir, int *damaged, int recover,
                           void (*fn)(void *, const char *id, json_t *), void *arg)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        if (name[0] == '.') {
            if (strstr(name, ".tmp.")) {
                /* Left by a crash before its rename: the old record stands. */
                char path[PATH_MAX];
                pathf(path, "%s/%s", dir, name);
                unlink(path);
            }
            continue;
        }
        if (n <= 5 || strcmp(name + n - 5, ".json") != 0)
            continue;
        char id[NAME_MAX + 1];
        snprintf(id, sizeof id, "%.*s", (int)(n - 5), name);
        if (!cloud_id_is_safe(id, 64))
            continue;
        json_t *rec = load_record(dir, name, damaged, recover);
        if (rec) {
            fn(arg, id, rec);
            json_decref(rec);
        }
    }
    closedir(d);
    return 0;
}

struct load_ctx {
    struct journal *j;
    journal_project_fn on_project;
    journal_job_fn on_job;
    void *arg;
    int *damaged;
};

static void project_loaded(void *p, const char *id, json_t *rec)
{
    struct load_ctx *ctx = p;
    ctx->on_project(ctx->arg, id, rec);
}

struct job_ctx {
    struct load_ctx *ctx;
    const char *project;
};

static void job_loaded(void *p, const char *id, json_t *rec)
{
    struct job_ctx *jc = p;
    jc->ctx->on_job(jc->ctx->arg, jc->project, id, rec);
}

static int journal_load_records(struct journal *, journal_project_fn, journal_job_fn, void *);

/* Whether journal/jobs/<project>/<job>.json (or its damaged copy) exists. */
static int job_is_known(const struct journal *j, const char *project, const char *job)
{
    char path[PATH_MAX];
    if (pathf(path, "%s/journal/jobs/%s/%s.json", j->dir, project, job) == 0
        && access(path, F_OK) == 0)
        return 1;
    return pathf(path, "%s/journal/jobs/%s/%s.json.corrupt", j->dir, project, job) == 0
           && access(path, F_OK) == 0;
}

/* Removes what a crash can leave in archives/<project>/: temporary
 * sidecars ("<job>.zip.ckpt.tmp.*", "<job>.zip.idx.tmp.*"), downloads (".<job>.zip.part")
 * of jobs the journal no longer knows, and sidecars whose archive and
 * download are both gone.  Runs at load, before any worker starts. */
static const char *const sidecar_suffixes[] = {".ckpt", ".idx", NULL};

enum sidecar_kind { NOT_SIDECAR, SIDECAR, SIDECAR_TMP };

const char *const journal_formats[] = { "zip", "csv.gz", "csv", NULL };

/* Whether name is "<job>.<format><suffix>" (job set) or a temporary file
 * of one being written ("<job>.<format><suffix>.tmp.*"). */
static enum sidecar_kind sidecar_name(const char *name, char *job, size_t jobsize)
{
    for (size_t f = 0; journal_formats[f]; f++)
        for (size_t i = 0; sidecar_suffixes[i]; i++) {
            char zsuffix[24];
            snprintf(zsuffix, sizeof zsuffix, ".%s%s", journal_formats[f], sidecar_suffixes[i]);
            size_t n = strlen(name), k = strlen(zsuffix);
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%s.tmp.", zsuffix);
            if (strstr(name, tmp))
                return SIDECAR_TMP;
            if (name[0] != '.' && n > k && strcmp(name + n - k, zsuffix) == 0) {
                snprintf(job, jobsize, "%.*s", (int)(n - k), name);
                return SIDECAR;
            }
        }
    return NOT_SIDECAR;
}

/* Whether the job has a local file in dir, of any format. */
static int archive_exists(const char *dir, const char *job)
{
    char path[PATH_MAX];
    struct stat st;
    for (size_t f = 0; journal_formats[f]; f++)
        if (pathf(path, "%s/%s.%s", dir, job, journal_formats[f]) == 0 && stat(path, &st) == 0)
            return 1;
    return 0;
}

static void clean_archives(const struct journal *j)
{
    char top[PATH_MAX];
    if (pathf(top, "%s/archives", j->dir))
        return;
    DIR *d = opendir(top);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *project = de->d_name;
        char sub[PATH_MAX];
        if (!cloud_id_is_safe(project, 64) || pathf(sub, "%s/%s", top, project))
            continue;
        DIR *pd = opendir(sub);
        if (!pd)
            continue;
        struct dirent *fe;
        while ((fe = readdir(pd))) {
            const char *name = fe->d_name;
            size_t n = strlen(name);
            char path[PATH_MAX], job[NAME_MAX + 1], other[PATH_MAX];
            if (pathf(path, "%s/%s", sub, name))
                continue;
            enum sidecar_kind side = sidecar_name(name, job, sizeof job);
            if (side == SIDECAR_TMP) {
                log_info("removing %s (left by an interrupted write)", path);
                unlink(path);
            } else if (name[0] == '.' && n > 10 && strcmp(name + n - 9, ".zip.part") == 0) {
                snprintf(job, sizeof job, "%.*s", (int)(n - 10), name + 1);
                if (!job_is_known(j, project, job)) {
                    log_info("removing %s (download of a forgotten job)", path);
                    unlink(path);
                }
            } else if (side == SIDECAR) {
                struct stat st;
                if (!archive_exists(sub, job) && pathf(other, "%s/.%s.zip.part", sub, job) == 0
                    && stat(other, &st) < 0 && errno == ENOENT) {
                    log_info("removing %s (its archive is gone)", path);
                    unlink(path);
                }
            }
        }
        closedir(pd);
    }
    closedir(d);
}

int journal_load(struct journal *j, journal_project_fn on_project, journal_job_fn on_job, void *arg)
{
    clean_archives(j);
    return journal_load_records(j, on_project, on_job, arg);
}

static int journal_load_records(struct journal *j, journal_project_fn on_project,
                                journal_job_fn on_job, void *arg)
{
    int damaged = 0;
    struct load_ctx ctx = { j, on_project, on_job, arg, &damaged };
    char dir[PATH_MAX];
    pathf(dir, "%s/journal/projects", j->dir);
    for_each_record(dir, &damaged, 0, project_loaded, &ctx);

    pathf(dir, "%s/journal/jobs", j->dir);
    DIR *d = opendir(dir);
    if (!d)
        return damaged;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!cloud_id_is_safe(de->d_name, 64))
            continue;
        char sub[PATH_MAX];
        pathf(sub, "%s/%s", dir, de->d_name);
        struct job_ctx jc = { &ctx, de->d_name };
        for_each_record(sub, &damaged, 1, job_loaded, &jc);
    }
    closedir(d);
    return damaged;
}

static int save_record(const char *dir, const char *id, const json_t *record)
{
    char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return -ENOMEM;
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s.json", id);
    int rc = write_file_atomic(dir, name, text, strlen(text));
    free(text);
    if (rc)
        log_error("cannot write journal record %s/%s: %s", dir, name, strerror(-rc));
    return rc;
}

int journal_save_project(struct journal *j, const char *project, const json_t *record)
{
    char dir[PATH_MAX];
    pathf(dir, "%s/journal/projects", j->dir);
    return save_record(dir, project, record);
}

int journal_save_job(struct journal *j, const char *project, const char *job, const json_t *record)
{
    char dir[PATH_MAX], parent[PATH_MAX];
    pathf(dir, "%s/journal/jobs/%s", j->dir, project);
    struct stat st;
    int fresh = stat(dir, &st) < 0;
    int rc = mkdir_p(dir, 0700);
    if (rc)
        return rc;
    /* The first record of a project: its new directory's entry must be
     * on disk too, or a crash loses the record with it. */
    pathf(parent, "%s/journal/jobs", j->dir);
    if (fresh && (rc = fsync_dir(parent)) != 0)
        return rc;
    return save_record(dir, job, record);
}

int journal_remove_job(struct journal *j, const char *project, const char *job)
{
    char path[PATH_MAX], dir[PATH_MAX];
    pathf(dir, "%s/journal/jobs/%s", j->dir, project);
    pathf(path, "%s/%s.json", dir, job);
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    fsync_dir(dir);
    for (size_t f = 0; journal_formats[f]; f++) {
        journal_archive_path(j, project, job, journal_formats[f], path);
        unlink(path);
        journal_unlink_sidecars(path);
    }
    journal_partial_path(j, project, job, path);
    unlink(path);
    return 0;
}

void journal_archive_path(const struct journal *j, const char *project, const char *job,
                          const char *format, char *out)
{
    pathf(out, "%s/archives/%s/%s.%s", j->dir, project, job, format);
}

void journal_partial_path(const struct journal *j, const char *project, const char *job, char *out)
{
    pathf(out, "%s/archives/%s/.%s.zip.part", j->dir, project, job);
}

void journal_unlink_sidecars(const char *zip_path)
{
    char side[PATH_MAX];
    for (size_t i = 0; sidecar_suffixes[i]; i++)
        if (pathf(side, "%s%s", zip_path, sidecar_suffixes[i]) == 0 && unlink(side) < 0
            && errno != ENOENT)
            log_error("cannot remove %s: %s", side, strerror(errno));
}

int64_t journal_sidecar_bytes(const char *zip_path)
{
    char side[PATH_MAX];
    struct stat st;
    int64_t total = 0;
    for (size_t i = 0; sidecar_suffixes[i]; i++)
        if (pathf(side, "%s%s", zip_path, sidecar_suffixes[i]) == 0 && stat(side, &st) == 0)
            total += st.st_size;
    return total;
}

int journal_archive_dir(const struct journal *j, const char *project, char *out)
{
    pathf(out, "%s/archives/%s", j->dir, project);
    return mkdir_p(out, 0700);
}
