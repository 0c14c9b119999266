/* fs/attrs: what each node of the tree looks like: the text of the
 * generated files (status, .job.json, .stats) and the stat of any parsed
 * path.  Nothing here blocks: a stat that needs a job's archive answers
 * REGISTRY_WAIT while it is fetched. */
#include "fs_internal.h"

#include "eventlogs.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *status_line_locked(const struct job *j)
{
    char *s = NULL;
    return asprintf(&s, "%s\n", j->task.task_status) < 0 ? NULL : s;
}

/* json_dumps' text plus the newline a file of text ends with. */
static char *dump_line(json_t *o, size_t flags)
{
    char *s = o ? json_dumps(o, flags) : NULL, *t = NULL;
    if (s && asprintf(&t, "%s\n", s) < 0)
        t = NULL;
    free(s);
    return t;
}

char *job_json_locked(const struct job *j)
{
    json_t *o = job_to_json_locked(j);
    char *s = dump_line(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

char *stats_text(struct fs *fs)
{
    struct registry *r = fs->r;
    json_t *o = cloud_stats_json(r->cloud);
    if (!o)
        return NULL;
    json_int_t running = 0, success = 0, failure = 0, archives = 0, cache_bytes = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t p = 0; p < r->nprojects; p++)
        for (size_t k = 0; k < r->projects[p]->njobs; k++) {
            const struct job *j = r->projects[p]->jobs[k];
            const char *s = j->task.task_status;
            running += strcmp(s, "running") == 0;
            success += strcmp(s, "success") == 0;
            failure += strcmp(s, "failure") == 0;
            if (j->archive == ARCHIVE_READY) {
                archives++;
                cache_bytes += j->archive_bytes; /* with its sidecars, as cache_max counts */
            }
        }
    json_int_t projects = (json_int_t)r->nprojects;
    pthread_mutex_unlock(&r->lock);
    struct calls_stats cs;
    calls_get_stats(fs->calls, &cs);
    json_object_set_new(o, "jobs", json_pack("{s:I, s:I, s:I}", "running", running, "success",
                                             success, "failure", failure));
    json_object_set_new(o, "projects", json_integer(projects));
    json_object_set_new(o, "cache", json_pack("{s:I, s:I}", "archives", archives, "bytes",
                                              cache_bytes));
    json_object_set_new(o, "submits", json_integer((json_int_t)atomic_load(&r->submits)));
    json_object_set_new(o, "reads", json_integer((json_int_t)atomic_load(&r->reads)));
    json_object_set_new(o, "bytes_read", json_integer((json_int_t)atomic_load(&r->bytes_read)));
    /* Requests waiting without a thread (calls.h), and the kernel's inodes. */
    json_object_set_new(o, "waiting",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "now", (json_int_t)cs.parked,
                                  "peak", (json_int_t)cs.peak_parked, "total",
                                  (json_int_t)cs.parks, "interrupted", (json_int_t)cs.interrupts,
                                  "network", (json_int_t)(cs.slow_queued + cs.slow_running)));
    json_object_set_new(o, "inodes", json_integer((json_int_t)inodes_count(fs->inodes)));
    if (r->eventlogs)
        json_object_set_new(o, "event_logs", eventlogs_stats_json(r->eventlogs));
    json_object_set_new(o, "uptime_s", json_integer((json_int_t)(time(NULL) - r->started_at)));
    char *s = dump_line(o, JSON_INDENT(2));
    json_decref(o);
    return s;
}

void fill_dir(struct stat *st, mode_t mode, time_t mtime)
{
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFDIR | mode;
    st->st_nlink = 2;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_mtime = st->st_ctime = st->st_atime = mtime;
}

void fill_file(struct stat *st, mode_t mode, off_t size, time_t mtime)
{
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFREG | mode;
    st->st_nlink = 1;
    st->st_size = size;
    st->st_blocks = (size + 511) / 512;
    st->st_blksize = 65536;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_mtime = st->st_ctime = st->st_atime = mtime;
}

void fill_anode(struct stat *st, const struct anode *a)
{
    if (anode_is_dir(a))
        fill_dir(st, 0555, anode_mtime(a));
    else
        fill_file(st, 0444, (off_t)anode_size(a), anode_mtime(a));
}

time_t job_time_locked(const struct job *j)
{
    return j->submitted_at ? j->submitted_at : j->project->added_at;
}

int stat_control_locked(const struct job *j, enum node_kind kind, struct stat *st)
{
    char *text = kind == N_JOB_JSON ? job_json_locked(j) : status_line_locked(j);
    if (!text)
        return -ENOMEM;
    off_t size = (off_t)strlen(text);
    free(text);
    if (kind == N_WAIT && !job_has_ended_locked(j))
        size = 0; /* unknown until the job ends */
    time_t t = j->polled_at ? j->polled_at : job_time_locked(j);
    fill_file(st, 0444, size, t);
    return 0;
}

int job_entry(struct registry *r, struct job *j, const char *entry, bool listing,
              const struct anode **out, struct aindex **idx_out, const void **key)
{
    struct aindex *idx;
    int rc = listing ? registry_job_listing(r, j, &idx) : registry_job_index(r, j, &idx);
    if (rc == REGISTRY_WAIT)
        *key = j;
    if (rc)
        return rc;
    const struct anode *a = aindex_lookup(idx, entry ? entry : "");
    if (!a) {
        registry_index_done(r, j);
        return -ENOENT;
    }
    *out = a;
    if (idx_out)
        *idx_out = idx;
    return 0;
}

/* archives/<job>.<format>: size and time are remembered once the file has
 * been local, and answered without fetching an evicted file
 * (filesystem.md); before that, the verified file's own. */
static int archive_file_attr(struct registry *r, struct job *j, const char *format,
                             struct stat *st, const void **key)
{
    pthread_mutex_lock(&r->lock);
    int known = strcmp(j->format, format) == 0 && j->local_size >= 0 && j->local_mtime >= 0 &&
                j->archive != ARCHIVE_NONE;
    if (known)
        fill_file(st, 0444, (off_t)j->local_size, (time_t)j->local_mtime);
    pthread_mutex_unlock(&r->lock);
    if (known)
        return 0;
    struct aindex *idx;
    int rc = registry_job_index(r, j, &idx);
    if (rc == REGISTRY_WAIT)
        *key = j;
    if (rc)
        return rc;
    char file[PATH_MAX];
    pthread_mutex_lock(&r->lock);
    rc = strcmp(j->format, format) == 0 ? job_archive_path_locked(r, j, file) : -ENOENT;
    pthread_mutex_unlock(&r->lock);
    struct stat real;
    if (!rc)
        rc = stat(file, &real) < 0 ? -errno : 0;
    if (!rc)
        fill_file(st, 0444, real.st_size, real.st_mtime);
    registry_index_done(r, j);
    return rc;
}

/* event-logs/<name>: the size storage announced, the generation time. */
static int evlog_attr(struct registry *r, const struct node *n, struct stat *st, const void **key)
{
    struct eventlog_entry e;
    if (!r->eventlogs)
        return -ENOENT;
    int rc = eventlogs_lookup(r->eventlogs, n->project, n->entry, &e, key);
    if (!rc)
        fill_file(st, 0444, (off_t)e.size, (time_t)e.mtime);
    return rc;
}

/* The nodes at and below a job directory; j is referenced by the caller. */
static int job_node_attr(struct registry *r, struct job *j, const struct node *n,
                         struct stat *st, const void **key)
{
    if (n->kind == N_ARCHIVE_FILE)
        return archive_file_attr(r, j, n->format, st, key);
    const struct anode *a;
    int rc = job_entry(r, j, n->entry, true, &a, NULL, key);
    if (!rc) {
        fill_anode(st, a);
        registry_index_done(r, j);
    }
    return rc;
}

int node_attr(struct fs *fs, const struct node *n, struct stat *st, const void **key)
{
    struct registry *r = fs->r;
    switch (n->kind) {
    case N_ROOT:
    case N_PROJECTS:
        fill_dir(st, 0755, r->started_at);
        return 0;
    case N_STATS: {
        /* The size of the text an open now would read: stat then read agree. */
        char *s = stats_text(fs);
        fill_file(st, 0444, s ? (off_t)strlen(s) : 0, time(NULL));
        free(s);
        return 0;
    }
    default:
        break;
    }
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, n->project);
    if (!p) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    if (n->kind == N_PROJECT || n->kind == N_EXPORTS || n->kind == N_ARCHIVES ||
        n->kind == N_EVLOGS) {
        fill_dir(st, n->kind == N_ARCHIVES || n->kind == N_EVLOGS ? 0555 : 0755, p->added_at);
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    if (n->kind == N_EVLOG_FILE) {
        pthread_mutex_unlock(&r->lock);
        return evlog_attr(r, n, st, key);
    }
    if (n->kind == N_NEW) {
        fill_file(st, 0644, 0, p->added_at);
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    struct job *j = project_job_locked(p, n->job);
    if (!j) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    int rc;
    switch (n->kind) {
    case N_JOB:
        fill_dir(st, 0555, job_time_locked(j));
        pthread_mutex_unlock(&r->lock);
        return 0;
    case N_STATUS:
    case N_JOB_JSON:
    case N_WAIT:
        rc = stat_control_locked(j, n->kind, st);
        pthread_mutex_unlock(&r->lock);
        return rc;
    default:
        break;
    }
    if (strcmp(j->task.task_status, "success") != 0) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    j->refs++;
    pthread_mutex_unlock(&r->lock);
    rc = job_node_attr(r, j, n, st, key);
    registry_put_job(r, j);
    return rc;
}
