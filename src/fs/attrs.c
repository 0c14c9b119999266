/* fs/attrs: what each node of the tree looks like: the text of the
 * generated files (status, .job.json, .stats) and the stat of any parsed
 * path.  Nothing here blocks: a stat that needs a job's archive answers
 * REGISTRY_WAIT while it is fetched. */
#include "fs_internal.h"
#include "jsontext.h"

#include "eventlogs.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *stats_text(struct fs *fs)
{
    struct registry *r = fs->r;
    json_t *o = cloud_stats_json(registry_cloud(r));
    if (!o)
        return NULL;
    struct registry_stats rs;
    registry_get_stats(r, &rs);
    struct calls_stats cs;
    calls_get_stats(fs->calls, &cs);
    json_object_set_new(o, "jobs", json_pack("{s:I, s:I, s:I}", "running",
                                             (json_int_t)rs.running, "success",
                                             (json_int_t)rs.success, "failure",
                                             (json_int_t)rs.failure));
    json_object_set_new(o, "projects", json_integer((json_int_t)rs.projects));
    json_object_set_new(o, "cache", json_pack("{s:I, s:I}", "archives", (json_int_t)rs.archives,
                                              "bytes", (json_int_t)rs.cache_bytes));
    json_object_set_new(o, "submits", json_integer((json_int_t)rs.submits));
    json_object_set_new(o, "reads", json_integer((json_int_t)rs.reads));
    json_object_set_new(o, "bytes_read", json_integer((json_int_t)rs.bytes_read));
    /* Requests waiting without a thread (calls.h), and the kernel's inodes. */
    json_object_set_new(o, "waiting",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "now", (json_int_t)cs.parked,
                                  "peak", (json_int_t)cs.peak_parked, "total",
                                  (json_int_t)cs.parks, "interrupted", (json_int_t)cs.interrupts,
                                  "network", (json_int_t)(cs.slow_queued + cs.slow_running)));
    json_object_set_new(o, "inodes", json_integer((json_int_t)inodes_count(fs->inodes)));
    if (registry_eventlogs(r))
        json_object_set_new(o, "event_logs", eventlogs_stats_json(registry_eventlogs(r)));
    json_object_set_new(o, "uptime_s", json_integer((json_int_t)(time(NULL) - rs.started_at)));
    char *s = json_text_line(o, JSON_INDENT(2));
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

int stat_control(const struct job_view *v, enum node_kind kind, struct stat *st)
{
    const char *text = kind == N_JOB_JSON ? v->json_text : v->status_text;
    if (!text)
        return -ENOMEM;
    off_t size = (off_t)strlen(text);
    if (kind == N_WAIT && !v->ended)
        size = 0; /* unknown until the job ends */
    fill_file(st, 0444, size, v->control_time);
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
    struct job_view v;
    registry_job_view(r, j, 0, &v);
    if (strcmp(v.format, format) == 0 && v.local_size >= 0 && v.local_mtime >= 0 &&
        v.has_archive) {
        fill_file(st, 0444, (off_t)v.local_size, (time_t)v.local_mtime);
        return 0;
    }
    struct aindex *idx;
    int rc = registry_job_index(r, j, &idx);
    if (rc == REGISTRY_WAIT)
        *key = j;
    if (rc)
        return rc;
    char file[PATH_MAX];
    rc = registry_job_file(r, j, format, file);
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
    if (!registry_eventlogs(r))
        return -ENOENT;
    int rc = eventlogs_lookup(registry_eventlogs(r), n->project, n->entry, &e, key);
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
        fill_dir(st, 0755, registry_started_at(r));
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
    time_t added;
    if (registry_project_time(r, n->project, &added) != 0)
        return -ENOENT;
    if (n->kind == N_PROJECT || n->kind == N_EXPORTS || n->kind == N_ARCHIVES ||
        n->kind == N_EVLOGS) {
        fill_dir(st, n->kind == N_ARCHIVES || n->kind == N_EVLOGS ? 0555 : 0755, added);
        return 0;
    }
    if (n->kind == N_EVLOG_FILE)
        return evlog_attr(r, n, st, key);
    if (n->kind == N_NEW) {
        fill_file(st, 0644, 0, added);
        return 0;
    }
    struct job *j = registry_get_job(r, n->project, n->job);
    if (!j)
        return -ENOENT;
    struct job_view v;
    int rc;
    switch (n->kind) {
    case N_JOB:
        registry_job_view(r, j, 0, &v);
        fill_dir(st, 0555, v.dir_time);
        rc = 0;
        break;
    case N_STATUS:
    case N_JOB_JSON:
    case N_WAIT:
        registry_job_view(r, j, n->kind == N_JOB_JSON ? JOB_VIEW_JSON : JOB_VIEW_STATUS, &v);
        rc = stat_control(&v, n->kind, st);
        job_view_release(&v);
        break;
    default:
        registry_job_view(r, j, 0, &v);
        rc = strcmp(v.status, "success") != 0 ? -ENOENT : job_node_attr(r, j, n, st, key);
    }
    registry_put_job(r, j);
    return rc;
}
