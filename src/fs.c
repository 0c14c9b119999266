/* fs: FUSE callbacks.  Paths are parsed into a node kind plus project, job
 * and entry parts; state comes from the registry, archive entries from the
 * job's index.  Nothing here blocks while holding the registry lock. */
#include "fs.h"

#include <fuse_lowlevel.h>
#include "filter.h"
#include "log.h"
#include "registry.h"
#include "strbuf.h"

#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

enum node_kind {
    N_ROOT, N_STATS, N_PROJECTS, N_PROJECT, N_EXPORTS, N_NEW, N_JOB, N_STATUS, N_JOB_JSON,
    N_WAIT, N_ENTRY, N_ARCHIVES, N_ARCHIVE_FILE,
};

struct node {
    enum node_kind kind;
    char project[65];
    char job[65];
    const char *entry;      /* path below the job directory, for N_ENTRY */
    char format[JOB_FORMAT_MAX]; /* N_ARCHIVE_FILE: the name's suffix */
};

static struct registry *reg(void) { return fuse_get_context()->private_data; }

/* Ends a blocking wait when the caller got a signal or the mount is going
 * away (otherwise the FUSE loop would wait for the job before exiting). */
static int request_cancelled(void)
{
    return fuse_interrupted() || fuse_session_exited(fuse_get_session(fuse_get_context()->fuse));
}

/* Copies the next component of *p into out; 0 at the end, -ENOENT if too long. */
static int next_component(const char **p, char *out, size_t cap)
{
    while (**p == '/')
        (*p)++;
    const char *end = strchrnul(*p, '/');
    size_t n = (size_t)(end - *p);
    if (n == 0)
        return 0;
    if (n >= cap)
        return -ENOENT;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = end;
    return 1;
}

static int parse_path(const char *path, struct node *n)
{
    char part[NAME_MAX + 1];
    const char *p = path;
    memset(n, 0, sizeof *n);
    n->kind = N_ROOT;
    int rc = next_component(&p, part, sizeof part);
    if (rc <= 0)
        return rc;
    if (strcmp(part, ".stats") == 0) {
        n->kind = N_STATS;
        return next_component(&p, part, sizeof part) == 0 ? 0 : -ENOTDIR;
    }
    if (strcmp(part, "projects") != 0)
        return -ENOENT;
    n->kind = N_PROJECTS;
    if ((rc = next_component(&p, n->project, sizeof n->project)) <= 0)
        return rc;
    n->kind = N_PROJECT;
    if ((rc = next_component(&p, part, sizeof part)) <= 0)
        return rc;
    if (strcmp(part, "archives") == 0) {
        n->kind = N_ARCHIVES;
        if ((rc = next_component(&p, part, sizeof part)) <= 0)
            return rc;
        /* <job>.<format>: ".csv.gz" is tried before ".csv". */
        size_t len = strlen(part), k = 0;
        for (size_t f = 0; journal_formats[f] && !k; f++) {
            size_t flen = strlen(journal_formats[f]);
            if (len > flen + 1 && part[len - flen - 1] == '.' &&
                strcmp(part + len - flen, journal_formats[f]) == 0 &&
                len - flen - 1 < sizeof n->job) {
                k = len - flen - 1;
                memcpy(n->format, journal_formats[f], flen + 1 <= sizeof n->format ? flen + 1 : 0);
            }
        }
        if (!k)
            return -ENOENT;
        memcpy(n->job, part, k);
        n->job[k] = '\0';
        n->kind = N_ARCHIVE_FILE;
        return next_component(&p, part, sizeof part) == 0 ? 0 : -ENOTDIR;
    }
    if (strcmp(part, "exports") != 0)
        return -ENOENT;
    n->kind = N_EXPORTS;
    if ((rc = next_component(&p, part, sizeof part)) <= 0)
        return rc;
    if (strcmp(part, "new") == 0) {
        n->kind = N_NEW;
        return next_component(&p, part, sizeof part) == 0 ? 0 : -ENOTDIR;
    }
    if (strlen(part) >= sizeof n->job)
        return -ENOENT;
    strcpy(n->job, part);
    n->kind = N_JOB;
    while (*p == '/')
        p++;
    if (!*p)
        return 0;
    if (strcmp(p, "status") == 0)
        n->kind = N_STATUS;
    else if (strcmp(p, ".job.json") == 0)
        n->kind = N_JOB_JSON;
    else if (strcmp(p, ".wait") == 0)
        n->kind = N_WAIT;
    else
        n->kind = N_ENTRY;
    n->entry = p;
    return 0;
}

static int is_inside_job(const struct node *n) { return n->kind >= N_JOB && n->kind <= N_ENTRY; }

/* ---- content of generated files ---- */

static char *status_line_locked(const struct job *j)
{
    char *s = NULL;
    return asprintf(&s, "%s\n", j->task.task_status) < 0 ? NULL : s;
}

static char *job_json_locked(const struct job *j)
{
    json_t *o = job_to_json_locked(j);
    char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (s) {
        char *t = NULL;
        if (asprintf(&t, "%s\n", s) < 0)
            t = NULL;
        free(s);
        s = t;
    }
    return s;
}

static char *stats_text(struct registry *r)
{
    json_t *o = cloud_stats_json(r->cloud);
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
    json_object_set_new(o, "jobs", json_pack("{s:I, s:I, s:I}", "running", running, "success",
                                             success, "failure", failure));
    json_object_set_new(o, "projects", json_integer(projects));
    json_object_set_new(o, "cache", json_pack("{s:I, s:I}", "archives", archives, "bytes",
                                              cache_bytes));
    json_object_set_new(o, "submits", json_integer((json_int_t)atomic_load(&r->submits)));
    json_object_set_new(o, "reads", json_integer((json_int_t)atomic_load(&r->reads)));
    json_object_set_new(o, "bytes_read", json_integer((json_int_t)atomic_load(&r->bytes_read)));
    json_object_set_new(o, "uptime_s", json_integer((json_int_t)(time(NULL) - r->started_at)));
    char *s = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    char *t = NULL;
    if (s && asprintf(&t, "%s\n", s) < 0)
        t = NULL;
    free(s);
    return t;
}

/* ---- attributes ---- */

static void fill_dir(struct stat *st, mode_t mode, time_t mtime)
{
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFDIR | mode;
    st->st_nlink = 2;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_mtime = st->st_ctime = st->st_atime = mtime;
}

static void fill_file(struct stat *st, mode_t mode, off_t size, time_t mtime)
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

static time_t job_time_locked(const struct job *j)
{
    return j->submitted_at ? j->submitted_at : j->project->added_at;
}

static void fill_anode(struct stat *st, const struct anode *a)
{
    if (anode_is_dir(a))
        fill_dir(st, 0555, anode_mtime(a));
    else
        fill_file(st, 0444, (off_t)anode_size(a), anode_mtime(a));
}

static int stat_control_locked(const struct job *j, enum node_kind kind, struct stat *st)
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

/* Resolves an entry of a job's archive (waiting for the archive).  On
 * success the index is in use until registry_index_done(). */
static int lookup_entry(struct registry *r, struct job *j, const char *entry, bool listing,
                        const struct anode **out, struct aindex **idx_out)
{
    struct aindex *idx;
    int rc = listing ? registry_job_listing(r, j, request_cancelled, &idx)
                     : registry_job_index(r, j, request_cancelled, &idx);
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

static int hcx_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    struct registry *r = reg();
    struct node n;
    int rc = parse_path(path, &n);
    if (rc)
        return rc;
    switch (n.kind) {
    case N_ROOT:
    case N_PROJECTS:
        fill_dir(st, 0755, r->started_at);
        return 0;
    case N_STATS: {
        char *s = stats_text(r);
        fill_file(st, 0444, s ? (off_t)strlen(s) : 0, time(NULL));
        free(s);
        return 0;
    }
    default:
        break;
    }
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, n.project);
    if (!p) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    time_t added = p->added_at;
    if (n.kind == N_PROJECT || n.kind == N_EXPORTS || n.kind == N_ARCHIVES) {
        pthread_mutex_unlock(&r->lock);
        fill_dir(st, n.kind == N_ARCHIVES ? 0555 : 0755, added);
        return 0;
    }
    if (n.kind == N_NEW) {
        pthread_mutex_unlock(&r->lock);
        fill_file(st, 0644, 0, added);
        return 0;
    }
    struct job *j = project_job_locked(p, n.job);
    if (!j) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    switch (n.kind) {
    case N_JOB:
        fill_dir(st, 0555, job_time_locked(j));
        pthread_mutex_unlock(&r->lock);
        return 0;
    case N_STATUS:
    case N_JOB_JSON:
    case N_WAIT:
        rc = stat_control_locked(j, n.kind, st);
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
    const struct anode *a;
    if (n.kind == N_ARCHIVE_FILE) {
        /* Size and time are remembered once the file has been local:
         * answered without fetching an evicted file (filesystem.md). */
        pthread_mutex_lock(&r->lock);
        int known = strcmp(j->format, n.format) == 0 && j->local_size >= 0 &&
                    j->local_mtime >= 0 && j->archive != ARCHIVE_NONE;
        if (known)
            fill_file(st, 0444, (off_t)j->local_size, (time_t)j->local_mtime);
        pthread_mutex_unlock(&r->lock);
        if (known) {
            registry_put_job(r, j);
            return 0;
        }
        struct aindex *idx;
        rc = registry_job_index(r, j, request_cancelled, &idx);
        if (!rc) {
            char file[PATH_MAX];
            pthread_mutex_lock(&r->lock);
            rc = strcmp(j->format, n.format) == 0 ? job_archive_path_locked(r, j, file) : -ENOENT;
            pthread_mutex_unlock(&r->lock);
            struct stat real;
            if (!rc)
                rc = stat(file, &real) < 0 ? -errno : 0;
            if (!rc)
                fill_file(st, 0444, real.st_size, real.st_mtime);
            registry_index_done(r, j);
        }
    } else if (!(rc = lookup_entry(r, j, n.entry, true, &a, NULL))) {
        fill_anode(st, a);
        registry_index_done(r, j);
    }
    registry_put_job(r, j);
    return rc;
}

/* ---- directories ---- */

/* Directory listings use offsets: only then does libfuse pass our stat
 * data to the kernel with READDIRPLUS (saving one LOOKUP per entry), and a
 * large directory is produced a buffer at a time. */
struct dirfill {
    void *buf;
    fuse_fill_dir_t filler;
    off_t offset;   /* entries before this one were sent already */
    off_t next;     /* index of the next entry emitted */
    int full;
};

/* Returns 1 when the kernel's buffer is full (stop listing). */
static int emit(struct dirfill *d, const char *name, const struct stat *st)
{
    off_t idx = d->next++;
    if (d->full || idx < d->offset)
        return d->full;
    if (d->filler(d->buf, name, st, idx + 1, st ? FUSE_FILL_DIR_PLUS : 0))
        d->full = 1;
    return d->full;
}

static int list_job(struct registry *r, struct job *j, struct dirfill *d, const char *entry)
{
    struct stat st;
    if (!entry) {
        pthread_mutex_lock(&r->lock);
        int has_archive = j->archive != ARCHIVE_NONE;
        for (int i = 0; control_files[i]; i++) {
            stat_control_locked(j, i == 0 ? N_STATUS : i == 1 ? N_JOB_JSON : N_WAIT, &st);
            emit(d, control_files[i], &st);
        }
        pthread_mutex_unlock(&r->lock);
        if (!has_archive)
            return 0;
    }
    struct aindex *idx;
    const struct anode *dir;
    int rc = lookup_entry(r, j, entry, true, &dir, &idx);
    if ((rc == -EIO || rc == -EAGAIN) && !entry)
        return 0; /* the error shows in .job.json; the control files stay usable */
    if (rc)
        return rc;
    if (!anode_is_dir(dir)) {
        registry_index_done(r, j);
        return -ENOTDIR;
    }
    size_t count = anode_child_count(dir);
    size_t skip = d->offset > d->next ? (size_t)(d->offset - d->next) : 0;
    if (skip > count)
        skip = count;
    d->next += (off_t)skip;
    for (size_t i = skip; i < count && !d->full; i++) {
        const struct anode *c = anode_child(idx, dir, i);
        fill_anode(&st, c);
        emit(d, anode_name(idx, c), &st);
    }
    registry_index_done(r, j);
    return 0;
}

static int hcx_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)fi;
    (void)flags;
    struct registry *r = reg();
    struct node n;
    int rc = parse_path(path, &n);
    if (rc)
        return rc;
    struct dirfill d = { buf, filler, offset, 0, 0 };
    emit(&d, ".", NULL);
    emit(&d, "..", NULL);
    if (n.kind == N_ROOT) {
        emit(&d, ".stats", NULL);
        emit(&d, "projects", NULL);
        return 0;
    }
    pthread_mutex_lock(&r->lock);
    if (n.kind == N_PROJECTS) {
        for (size_t i = 0; i < r->nprojects; i++)
            emit(&d, r->projects[i]->id, NULL);
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    struct project *p = registry_project_locked(r, n.project);
    if (!p) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    struct stat st;
    switch (n.kind) {
    case N_PROJECT:
        emit(&d, "archives", NULL);
        emit(&d, "exports", NULL);
        pthread_mutex_unlock(&r->lock);
        return 0;
    case N_EXPORTS:
        fill_file(&st, 0644, 0, p->added_at);
        emit(&d, "new", &st);
        for (size_t i = 0; i < p->njobs; i++) {
            fill_dir(&st, 0555, job_time_locked(p->jobs[i]));
            emit(&d, p->jobs[i]->id, &st);
        }
        pthread_mutex_unlock(&r->lock);
        return 0;
    case N_ARCHIVES:
        for (size_t i = 0; i < p->njobs; i++) {
            /* A job's file shows only when its stat answers: it is local
             * (or its index being verified is published), or it has been
             * local and its size and time are remembered (evicted).  A
             * copy being fetched (again) or failing is not listed. */
            const struct job *aj = p->jobs[i];
            if (strcmp(aj->task.task_status, "success") != 0 || !aj->format[0] ||
                !(aj->archive == ARCHIVE_READY || aj->pending ||
                  (aj->archive != ARCHIVE_NONE && aj->local_size >= 0 && aj->local_mtime >= 0)))
                continue;
            char name[80];
            snprintf(name, sizeof name, "%s.%s", p->jobs[i]->id, p->jobs[i]->format);
            emit(&d, name, NULL);
        }
        pthread_mutex_unlock(&r->lock);
        return 0;
    case N_JOB:
    case N_ENTRY:
        break;
    default:
        pthread_mutex_unlock(&r->lock);
        return -ENOTDIR;
    }
    struct job *j = project_job_locked(p, n.job);
    if (j)
        j->refs++;
    pthread_mutex_unlock(&r->lock);
    if (!j)
        return -ENOENT;
    rc = list_job(r, j, &d, n.kind == N_ENTRY ? n.entry : NULL);
    registry_put_job(r, j);
    return rc;
}

static int hcx_mkdir(const char *path, mode_t mode)
{
    (void)mode;
    struct registry *r = reg();
    struct node n;
    int rc = parse_path(path, &n);
    if (rc == -ENOENT)
        return -EPERM;
    if (rc)
        return rc;
    char why[600] = "";
    switch (n.kind) {
    case N_PROJECT:
        rc = registry_add_project(r, n.project);
        if (rc == -EINVAL)
            log_error("mkdir %s: a project id is 1 to 64 letters, digits, '-' or '_'", path);
        else if (!rc)
            log_info("project %s added", n.project);
        return rc;
    case N_JOB:
        rc = registry_attach(r, n.project, n.job, why, sizeof why);
        return rc;
    default:
        return is_inside_job(&n) ? -EROFS : -EEXIST;
    }
}

static int hcx_rmdir(const char *path)
{
    struct registry *r = reg();
    struct node n;
    int rc = parse_path(path, &n);
    if (rc)
        return rc;
    if (n.kind == N_JOB)
        return registry_forget(r, n.project, n.job);
    if (is_inside_job(&n))
        return -EROFS;
    return n.kind == N_PROJECT ? -ENOTEMPTY : -EPERM;
}

static int refuse_change(const char *path)
{
    struct node n;
    int rc = parse_path(path, &n);
    if (rc == -ENOENT) {
        /* A new name: inside a job directory the whole tree is read-only. */
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        if (parse_path(parent, &n) == 0 && is_inside_job(&n))
            return -EROFS;
        return -EPERM;
    }
    return is_inside_job(&n) ? -EROFS : -EPERM;
}

static int hcx_unlink(const char *path) { return refuse_change(path); }
static int hcx_symlink(const char *from, const char *to) { (void)from; return refuse_change(to); }
static int hcx_link(const char *from, const char *to) { (void)from; return refuse_change(to); }
static int hcx_mknod(const char *path, mode_t m, dev_t d) { (void)m; (void)d; return refuse_change(path); }

static int hcx_rename(const char *from, const char *to, unsigned int flags)
{
    (void)flags;
    int rc = refuse_change(from);
    return rc == -EROFS ? rc : refuse_change(to);
}

static int hcx_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)mode;
    (void)fi;
    return refuse_change(path);
}

static int hcx_chown(const char *path, uid_t u, gid_t g, struct fuse_file_info *fi)
{
    (void)u;
    (void)g;
    (void)fi;
    return refuse_change(path);
}

static int hcx_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)tv;
    (void)fi;
    struct node n;
    if (parse_path(path, &n) == 0 && n.kind == N_NEW)
        return 0; /* touch new: harmless */
    return refuse_change(path);
}

static int hcx_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    (void)fi;
    struct node n;
    int rc = parse_path(path, &n);
    if (rc)
        return rc;
    if (n.kind == N_NEW)
        return size == 0 ? 0 : -EINVAL; /* `>` and cp truncate before writing */
    return refuse_change(path);
}

/* ---- open files ---- */

struct handle {
    enum node_kind kind;
    struct job *job;
    pthread_mutex_t lock;
    /* N_STATUS, N_JOB_JSON, N_STATS: a snapshot taken at open */
    char *text;
    size_t text_len;
    /* N_NEW */
    struct strbuf input;
    enum { SUB_COLLECTING, SUB_DONE, SUB_FAILED } sub_state;
    char *reply;                  /* "job id\n" or "error: why\n" */
    int sub_errno;
    off_t reply_base;
    int reply_base_set;
    char project[65];
    /* N_ENTRY, N_ARCHIVE_FILE: the archive is in use (not evicted) */
    int holds_index;
    struct areader *reader;
    /* N_ARCHIVE_FILE */
    int fd;
    struct handle *prev, *next;   /* open_handles */
};

/* Every handle not released yet: an unmount can end the session before the
 * kernel's last RELEASEs arrive, and destroy frees what is left. */
static struct handle *open_handles;
static pthread_mutex_t open_handles_lock = PTHREAD_MUTEX_INITIALIZER;

static struct handle *handle_of(struct fuse_file_info *fi)
{
    return (struct handle *)(uintptr_t)fi->fh;
}

static struct handle *handle_new(enum node_kind kind)
{
    struct handle *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->kind = kind;
    h->fd = -1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_lock(&open_handles_lock);
    h->next = open_handles;
    if (open_handles)
        open_handles->prev = h;
    open_handles = h;
    pthread_mutex_unlock(&open_handles_lock);
    return h;
}

static void handle_free(struct registry *r, struct handle *h)
{
    pthread_mutex_lock(&open_handles_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        open_handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&open_handles_lock);
    if (h->reader)
        areader_close(h->reader);
    if (h->holds_index)
        registry_index_done(r, h->job);
    if (h->job)
        registry_put_job(r, h->job);
    if (h->fd >= 0)
        close(h->fd);
    free(h->text);
    free(h->reply);
    strbuf_release(&h->input);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static int open_new(struct registry *r, const struct node *n, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&r->lock);
    int known = registry_project_locked(r, n->project) != NULL;
    pthread_mutex_unlock(&r->lock);
    if (!known)
        return -ENOENT;
    struct handle *h = handle_new(N_NEW);
    if (!h)
        return -ENOMEM;
    snprintf(h->project, sizeof h->project, "%s", n->project);
    fi->fh = (uintptr_t)h;
    fi->direct_io = 1; /* the reply line is not file data: never cache it */
    return 0;
}

static int hcx_open(const char *path, struct fuse_file_info *fi)
{
    struct registry *r = reg();
    struct node n;
    int rc = parse_path(path, &n);
    if (rc)
        return rc;
    int writing = (fi->flags & O_ACCMODE) != O_RDONLY;
    if (n.kind == N_NEW)
        return open_new(r, &n, fi);
    if (writing)
        return is_inside_job(&n) ? -EROFS : -EACCES;
    if (n.kind == N_STATS) {
        struct handle *h = handle_new(N_STATS);
        if (!h)
            return -ENOMEM;
        if (!(h->text = stats_text(r))) {
            handle_free(r, h); /* it is linked in open_handles */
            return -ENOMEM;
        }
        h->text_len = strlen(h->text);
        fi->fh = (uintptr_t)h;
        fi->direct_io = 1;
        return 0;
    }
    if (n.kind < N_JOB && n.kind != N_ARCHIVE_FILE)
        return -EISDIR;
    struct job *j = registry_get_job(r, n.project, n.job);
    if (!j)
        return -ENOENT;
    struct handle *h = handle_new(n.kind);
    if (!h) {
        registry_put_job(r, j);
        return -ENOMEM;
    }
    h->job = j;
    switch (n.kind) {
    case N_STATUS:
    case N_JOB_JSON:
        pthread_mutex_lock(&r->lock);
        h->text = n.kind == N_STATUS ? status_line_locked(j) : job_json_locked(j);
        pthread_mutex_unlock(&r->lock);
        rc = h->text ? 0 : -ENOMEM;
        h->text_len = h->text ? strlen(h->text) : 0;
        fi->direct_io = 1;
        break;
    case N_WAIT:
        fi->direct_io = 1;
        break;
    case N_ARCHIVE_FILE: {
        struct aindex *idx;
        rc = registry_job_index(r, j, request_cancelled, &idx);
        if (!rc) {
            h->holds_index = 1;
            char file[PATH_MAX];
            pthread_mutex_lock(&r->lock);
            rc = strcmp(j->format, n.format) == 0 ? job_archive_path_locked(r, j, file) : -ENOENT;
            pthread_mutex_unlock(&r->lock);
            h->fd = rc ? -1 : open(file, O_RDONLY | O_CLOEXEC);
            if (!rc)
                rc = h->fd < 0 ? -errno : 0;
            fi->keep_cache = 1; /* a verified archive never changes */
        }
        break;
    }
    case N_ENTRY: {
        const struct anode *a;
        struct aindex *idx;
        rc = lookup_entry(r, j, n.entry, false, &a, &idx);
        h->holds_index = rc == 0;
        if (!rc && anode_is_dir(a))
            rc = -EISDIR;
        if (!rc)
            rc = areader_open(idx, a, &h->reader);
        fi->keep_cache = 1; /* archive content is immutable */
        break;
    }
    default:
        rc = -EISDIR;
    }
    if (rc) {
        handle_free(r, h);
        return rc;
    }
    fi->noflush = 1; /* read-only: nothing to report at close, save a round trip */
    fi->fh = (uintptr_t)h;
    return 0;
}

static int hcx_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)mode;
    struct node n;
    int rc = parse_path(path, &n);
    if (rc == 0 && n.kind == N_NEW)
        return open_new(reg(), &n, fi);
    return refuse_change(path);
}

static int copy_out(char *buf, size_t size, off_t off, const char *text, size_t len)
{
    if (off < 0 || (size_t)off >= len)
        return 0;
    size_t n = len - (size_t)off < size ? len - (size_t)off : size;
    memcpy(buf, text + off, n);
    return (int)n;
}

static int read_new(struct handle *h, char *buf, size_t size, off_t off)
{
    pthread_mutex_lock(&h->lock);
    int n = 0;
    if (h->reply) {
        /* The reply starts wherever the first read starts, so that
         * `read job <&3` after a write works whatever the offset. */
        if (!h->reply_base_set) {
            h->reply_base = off;
            h->reply_base_set = 1;
        }
        off_t rel = off >= h->reply_base ? off - h->reply_base : 0;
        n = copy_out(buf, size, rel, h->reply, strlen(h->reply));
    }
    pthread_mutex_unlock(&h->lock);
    return n;
}

static int hcx_read(const char *path, char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)path;
    struct registry *r = reg();
    struct handle *h = handle_of(fi);
    int rc;
    switch (h->kind) {
    case N_NEW:
        return read_new(h, buf, size, off);
    case N_STATS:
    case N_STATUS:
    case N_JOB_JSON:
        return copy_out(buf, size, off, h->text, h->text_len);
    case N_WAIT: {
        rc = registry_wait_ended(r, h->job, request_cancelled);
        if (rc)
            return rc;
        pthread_mutex_lock(&r->lock);
        char *line = status_line_locked(h->job);
        pthread_mutex_unlock(&r->lock);
        if (!line)
            return -ENOMEM;
        rc = copy_out(buf, size, off, line, strlen(line));
        free(line);
        return rc;
    }
    case N_ARCHIVE_FILE: {
        ssize_t got = pread(h->fd, buf, size, off);
        if (got < 0)
            return -errno;
        atomic_fetch_add(&r->reads, 1);
        atomic_fetch_add(&r->bytes_read, (unsigned long long)got);
        return (int)got;
    }
    case N_ENTRY: {
        pthread_mutex_lock(&h->lock);
        ssize_t got = areader_pread(h->reader, buf, size, (uint64_t)off);
        if (got < 0) {
            /* The reader's own text says why (CRC, encrypted, method...). */
            const char *why = areader_error(h->reader);
            log_error("read %s at %lld: %s%s%s", path ? path : "(entry)", (long long)off,
                      strerror((int)-got), why ? ": " : "", why ? why : "");
        }
        pthread_mutex_unlock(&h->lock);
        if (got < 0)
            return (int)got;
        atomic_fetch_add(&r->reads, 1);
        atomic_fetch_add(&r->bytes_read, (unsigned long long)got);
        return (int)got;
    }
    default:
        return -EISDIR;
    }
}

static int hcx_write(const char *path, const char *data, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)path;
    (void)off; /* `new` is a stream: offsets (O_APPEND, >>) do not matter */
    struct handle *h = handle_of(fi);
    if (h->kind != N_NEW)
        return -EROFS;
    pthread_mutex_lock(&h->lock);
    int rc = (int)size;
    if (h->sub_state != SUB_COLLECTING) {
        /* One job per open: only trailing blanks may follow. */
        for (size_t i = 0; i < size; i++)
            if (!strchr(" \t\r\n", data[i]))
                rc = h->sub_state == SUB_FAILED ? -h->sub_errno : -EINVAL;
        pthread_mutex_unlock(&h->lock);
        return rc;
    }
    strbuf_append(&h->input, data, size);
    if (h->input.failed) {
        pthread_mutex_unlock(&h->lock);
        return -ENOMEM;
    }
    json_t *filter = NULL;
    char *body = NULL, *why = NULL;
    enum filter_parse_result res = filter_parse(h->input.data, h->input.len, &filter, &body, &why);
    if (res == FILTER_INCOMPLETE) {
        pthread_mutex_unlock(&h->lock);
        return rc;
    }
    char reason[700], job_id[65];
    if (res == FILTER_INVALID) {
        snprintf(reason, sizeof reason, "%s", why ? why : "invalid filter");
        log_error("project %s: filter refused, nothing submitted: %s", h->project, reason);
        h->sub_errno = EINVAL;
    } else {
        int src = registry_submit(reg(), h->project, filter, body, job_id, reason, sizeof reason);
        h->sub_errno = -src;
    }
    if (h->sub_errno) {
        h->sub_state = SUB_FAILED;
        if (asprintf(&h->reply, "error: %s\n", reason) < 0)
            h->reply = NULL;
        rc = -h->sub_errno;
    } else {
        h->sub_state = SUB_DONE;
        if (asprintf(&h->reply, "%s\n", job_id) < 0)
            h->reply = NULL;
    }
    json_decref(filter);
    free(body);
    free(why);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static int hcx_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct handle *h = handle_of(fi);
    if (h->kind != N_NEW)
        return 0;
    pthread_mutex_lock(&h->lock);
    int rc = 0;
    if (h->sub_state == SUB_COLLECTING && h->input.len > 0) {
        int blank = 1;
        for (size_t i = 0; i < h->input.len; i++)
            if (!strchr(" \t\r\n", h->input.data[i]))
                blank = 0;
        if (!blank) {
            log_error("project %s: closed with an incomplete filter; nothing submitted",
                      h->project);
            rc = -EINVAL;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static int hcx_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    handle_free(reg(), handle_of(fi));
    return 0;
}

static int hcx_opendir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    (void)fi;
    return 0;
}

static int hcx_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    memset(st, 0, sizeof *st);
    st->f_bsize = st->f_frsize = 4096;
    st->f_namemax = 255;
    if (statvfs(journal_cache_dir(reg()->journal), st) == 0)
        st->f_namemax = 255;
    st->f_flag |= ST_NOSUID | ST_NODEV;
    return 0;
}

/* Drops the kernel's cached attributes of a job's changing files, so that
 * `stat` then `read` agree (tar relies on it). */
static void invalidate_job(void *arg, const char *project, const char *job)
{
    struct fuse *f = arg;
    static const char *const files[] = { "", "/status", "/.job.json", "/.wait" };
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "/projects/%s/exports/%s%s", project, job, files[i]);
        fuse_invalidate_path(f, path); /* -ENOENT: the kernel has not seen it */
    }
}

static void *hcx_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->entry_timeout = 1;
    cfg->attr_timeout = 1;
    cfg->negative_timeout = 0; /* new jobs must show up at once */
    cfg->kernel_cache = 0;
    cfg->use_ino = 0;
    cfg->intr = 1;             /* a signal ends a blocked .wait read (main.c) */
    cfg->intr_signal = SIGUSR1;
    struct registry *r = fuse_get_context()->private_data;
    r->on_change = invalidate_job;
    r->on_change_arg = fuse_get_context()->fuse;
    /* Threads start here, after fuse_main has daemonized. */
    if (poller_start(r) < 0 || fetcher_start(r) < 0)
        log_error("background workers did not start: jobs will not be polled or fetched");
    return r;
}

static void hcx_destroy(void *private_data)
{
    workers_stop(private_data);
    pthread_mutex_lock(&open_handles_lock);
    struct handle *left = open_handles;
    pthread_mutex_unlock(&open_handles_lock);
    while (left) {
        struct handle *next = left->next;
        handle_free(private_data, left); /* no request runs any more */
        left = next;
    }
}

static const struct fuse_operations operations = {
    .init = hcx_init,
    .destroy = hcx_destroy,
    .getattr = hcx_getattr,
    .readdir = hcx_readdir,
    .opendir = hcx_opendir,
    .mkdir = hcx_mkdir,
    .rmdir = hcx_rmdir,
    .unlink = hcx_unlink,
    .symlink = hcx_symlink,
    .link = hcx_link,
    .mknod = hcx_mknod,
    .rename = hcx_rename,
    .chmod = hcx_chmod,
    .chown = hcx_chown,
    .utimens = hcx_utimens,
    .truncate = hcx_truncate,
    .open = hcx_open,
    .create = hcx_create,
    .read = hcx_read,
    .write = hcx_write,
    .flush = hcx_flush,
    .release = hcx_release,
    .statfs = hcx_statfs,
};

const struct fuse_operations *fs_operations(void) { return &operations; }
