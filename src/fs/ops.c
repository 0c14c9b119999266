/* fs/ops: libfuse's low-level operations table, the entry point of every
 * request.  Each operation turns the inode number into its path (inodes.h),
 * parses it (paths.h) and hands it to the module that owns the family:
 * attrs (lookup, getattr), listing (readdir), files and newfile (open,
 * read, write).  Operations that may wait run as calls (calls.h): the
 * libfuse worker returns at once and the answer comes from whichever
 * thread ends the wait.  Nothing here blocks on the network or on a job.
 *
 *   $ hcexportfs -f -o endpoint=http://127.0.0.1:8080,projects=0a1b /mnt &
 *   $ for j in /mnt/projects/0a1b/exports/[!n]*; do cat "$j/.wait" & done; wait
 *   success
 *   ...                        (a thousand waiting readers, no thread each) */
#include "fs.h"
#include "fs_internal.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* Threads that run woken calls, and the pool for calls that block on the
 * network (submits, attaches). */
#define RESUME_THREADS 2
#define NETWORK_THREADS 4

static struct fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

/* The path of ino, or of name inside ino; NULL with *err. */
static char *path_of(struct fs *fs, fuse_ino_t ino, const char *name, int *err)
{
    char *dir = inodes_path(fs->inodes, ino, err);
    if (!dir || !name)
        return dir;
    char *path = NULL;
    if (strlen(name) > NAME_MAX)
        *err = -ENAMETOOLONG;
    else if (asprintf(&path, "%s/%s", strcmp(dir, "/") ? dir : "", name) < 0)
        *err = -ENOMEM, path = NULL;
    free(dir);
    return path;
}

/* A call for req on the path of ino (or of name in ino), or NULL after
 * answering the error. */
static struct fs_call *call_at(fuse_req_t req, call_run_fn run, fuse_ino_t ino, const char *name)
{
    int err = 0;
    char *path = path_of(fs_of(req), ino, name, &err);
    struct fs_call *c = path ? call_new(req, run, fs_of(req)) : NULL;
    if (!c) {
        free(path);
        fuse_reply_err(req, path ? ENOMEM : -err);
        return NULL;
    }
    c->path = path;
    return c;
}

/* Answers a lookup (or mkdir, create) of c->path with attributes st. */
/* The entry the kernel gets for c->path (one more lookup of its inode);
 * e->ino is 0 when out of memory. */
static void entry_of(struct fs_call *c, const struct stat *st, struct fuse_entry_param *e)
{
    struct fs *fs = c->ctx;
    memset(e, 0, sizeof *e);
    e->ino = inodes_ref(fs->inodes, c->path);
    e->attr = *st;
    e->attr.st_ino = e->ino;
    e->attr_timeout = FS_ATTR_TIMEOUT;
    e->entry_timeout = FS_ENTRY_TIMEOUT;
}

static void reply_entry(struct fs_call *c, const struct stat *st)
{
    struct fs *fs = c->ctx;
    struct fuse_entry_param e;
    entry_of(c, st, &e);
    if (!e.ino)
        fuse_reply_err(c->req, ENOMEM);
    else if (fuse_reply_entry(c->req, &e) != 0)
        inodes_forget(fs->inodes, e.ino, 1); /* the kernel did not take it */
}

/* ---- lookup, getattr ---- */

/* The attributes of c->path, or the errno answered; REGISTRY_WAIT to park. */
static int attr_or_answer(struct fs_call *c, struct stat *st)
{
    struct node n;
    int rc = path_parse(c->path, &n);
    if (!rc)
        rc = node_attr(c->ctx, &n, st, &c->key);
    if (rc && rc != REGISTRY_WAIT)
        fuse_reply_err(c->req, -rc);
    return rc;
}

static int run_lookup(struct fs_call *c)
{
    struct stat st;
    int rc = attr_or_answer(c, &st);
    if (!rc)
        reply_entry(c, &st);
    return rc == REGISTRY_WAIT ? rc : 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs_call *c = call_at(req, run_lookup, parent, name);
    if (c)
        calls_dispatch(fs_of(req)->calls, c);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    inodes_forget(fs_of(req)->inodes, ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        inodes_forget(fs_of(req)->inodes, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static int run_getattr(struct fs_call *c)
{
    struct stat st;
    int rc = attr_or_answer(c, &st);
    if (!rc) {
        st.st_ino = c->ino;
        fuse_reply_attr(c->req, &st, FS_ATTR_TIMEOUT);
    }
    return rc == REGISTRY_WAIT ? rc : 0;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct fs_call *c = call_at(req, run_getattr, ino, NULL);
    if (c) {
        c->ino = ino;
        calls_dispatch(fs_of(req)->calls, c);
    }
}

/* ---- changes: only `new` and the project and job directories change ---- */

/* The errno for a change at path: inside a job the tree is read-only
 * (EROFS); elsewhere the tree's shape is fixed (EPERM). */
static int refused(const char *path)
{
    struct node n;
    if (path_parse(path, &n) == -ENOENT) {
        /* A new name: inside a job directory the whole tree is read-only. */
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        return path_parse(parent, &n) == 0 && node_inside_job(&n) ? EROFS : EPERM;
    }
    return node_inside_job(&n) ? EROFS : EPERM;
}

static void refuse_at(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    int err;
    char *path = path_of(fs_of(req), parent, name, &err);
    fuse_reply_err(req, path ? refused(path) : -err);
    free(path);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)fi;
    struct fs *fs = fs_of(req);
    int err;
    char *path = path_of(fs, ino, NULL, &err);
    struct node n;
    struct stat st;
    if (!path) {
        fuse_reply_err(req, -err);
        return;
    }
    const void *key;
    if (path_parse(path, &n) == 0 && n.kind == N_NEW &&
        !(to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
        /* `>` and cp truncate `new` before writing; touch sets its times. */
        if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size != 0)
            fuse_reply_err(req, EINVAL);
        else if ((err = node_attr(fs, &n, &st, &key)) != 0)
            fuse_reply_err(req, -err);
        else
            st.st_ino = ino, fuse_reply_attr(req, &st, FS_ATTR_TIMEOUT);
    } else {
        fuse_reply_err(req, refused(path));
    }
    free(path);
}

static int run_mkdir(struct fs_call *c)
{
    struct fs *fs = c->ctx;
    struct node n;
    struct stat st;
    const void *key;
    char *why = NULL;
    int rc = path_parse(c->path, &n);
    if (rc == -ENOENT)
        rc = -EPERM;
    else if (!rc && n.kind == N_PROJECT) {
        rc = registry_add_project(fs->r, n.project);
        if (rc == -EINVAL)
            log_error("mkdir %s: a project id is 1 to 64 letters, digits, '-' or '_'", c->path);
        else if (!rc)
            log_info("project %s added", n.project);
    } else if (!rc && n.kind == N_JOB)
        rc = registry_attach(fs->r, n.project, n.job, &why); /* logs why */
    else if (!rc)
        rc = node_inside_job(&n) ? -EROFS : -EEXIST;
    if (!rc && (rc = node_attr(fs, &n, &st, &key)) == REGISTRY_WAIT)
        rc = -EIO; /* a directory's own attributes never wait */
    free(why);
    if (rc)
        fuse_reply_err(c->req, -rc);
    else
        reply_entry(c, &st);
    return 0;
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)mode;
    struct fs_call *c = call_at(req, run_mkdir, parent, name);
    if (c)
        calls_dispatch_slow(fs_of(req)->calls, c); /* attaching asks the cloud */
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs *fs = fs_of(req);
    int err;
    char *path = path_of(fs, parent, name, &err);
    struct node n;
    if (path && (err = path_parse(path, &n)) == 0)
        err = n.kind == N_JOB          ? registry_forget(fs->r, n.project, n.job)
              : node_inside_job(&n)   ? -EROFS
              : n.kind == N_PROJECT   ? -ENOTEMPTY
                                      : -EPERM;
    fuse_reply_err(req, -err);
    free(path);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    refuse_at(req, parent, name);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)mode;
    (void)rdev;
    refuse_at(req, parent, name);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link;
    refuse_at(req, parent, name);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
    (void)ino;
    refuse_at(req, parent, name);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    (void)flags;
    int err;
    char *from = path_of(fs_of(req), parent, name, &err);
    if (!from) {
        fuse_reply_err(req, -err);
        return;
    }
    err = refused(from);
    free(from);
    if (err == EROFS)
        fuse_reply_err(req, err);
    else
        refuse_at(req, newparent, newname);
}

/* ---- files ---- */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_call *c = call_at(req, run_open, ino, NULL);
    if (c) {
        c->fi = *fi;
        calls_dispatch(fs_of(req)->calls, c);
    }
}

static int run_create(struct fs_call *c)
{
    struct fs *fs = c->ctx;
    struct node n;
    struct stat st;
    const void *key;
    int rc = path_parse(c->path, &n);
    if (rc || n.kind != N_NEW) {
        fuse_reply_err(c->req, refused(c->path));
        return 0;
    }
    if ((rc = node_attr(fs, &n, &st, &key)) == 0 && (rc = new_open(fs, &n, &c->fi)) == 0) {
        struct fuse_entry_param e;
        entry_of(c, &st, &e);
        if (!e.ino || fuse_reply_create(c->req, &e, &c->fi) != 0) {
            if (e.ino)
                inodes_forget(fs->inodes, e.ino, 1);
            else
                fuse_reply_err(c->req, ENOMEM);
            handle_free(fs, (struct handle *)(uintptr_t)c->fi.fh);
        }
        return 0;
    }
    fuse_reply_err(c->req, rc == REGISTRY_WAIT ? EIO : -rc);
    return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    (void)mode;
    struct fs_call *c = call_at(req, run_create, parent, name);
    if (c) {
        c->fi = *fi;
        calls_dispatch(fs_of(req)->calls, c);
    }
}

static struct handle *handle_of(struct fuse_file_info *fi)
{
    return (struct handle *)(uintptr_t)fi->fh;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)ino;
    struct fs *fs = fs_of(req);
    struct handle *h = handle_of(fi);
    if (h->kind == N_NEW) {
        new_read(req, h, size, off);
    } else if (h->kind == N_WAIT) {
        struct fs_call *c = call_new(req, run_wait_read, fs);
        if (!c) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        c->handle = h;
        c->size = size;
        c->off = off;
        calls_dispatch(fs->calls, c);
    } else {
        files_read(fs, req, h, size, off);
    }
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino;
    (void)off; /* `new` is a stream: offsets (O_APPEND, >>) do not matter */
    struct handle *h = handle_of(fi);
    if (h->kind != N_NEW)
        fuse_reply_err(req, EROFS);
    else
        new_write(fs_of(req), req, h, buf, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct handle *h = handle_of(fi);
    fuse_reply_err(req, h->kind == N_NEW ? -new_flush(h) : 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    handle_free(fs_of(req), handle_of(fi));
    fuse_reply_err(req, 0);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    int err;
    char *path = path_of(fs_of(req), ino, NULL, &err);
    struct node n;
    struct handle *dh = NULL;
    fi->fh = 0;
    if (path && path_parse(path, &n) == 0 &&
        (n.kind == N_PROJECTS || n.kind == N_EXPORTS || n.kind == N_ARCHIVES ||
         n.kind == N_EVLOGS)) {
        if (!(dh = handle_new(fs_of(req), n.kind))) {
            free(path);
            fuse_reply_err(req, ENOMEM);
            return;
        }
        fi->fh = (uintptr_t)dh;
    }
    free(path);
    if (fuse_reply_open(req, fi) != 0 && dh)
        handle_free(fs_of(req), dh);
}

static void list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus,
                 struct fuse_file_info *fi)
{
    struct fs_call *c = call_at(req, run_readdir, ino, NULL);
    if (c) {
        c->handle = (void *)(uintptr_t)fi->fh;
        c->size = size;
        c->off = off;
        c->plus = plus;
        calls_dispatch(fs_of(req)->calls, c);
    }
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    list(req, ino, size, off, 0, fi);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    list(req, ino, size, off, 1, fi);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct handle *dh = handle_of(fi);
    if (dh)
        handle_free(fs_of(req), dh);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct statvfs st;
    memset(&st, 0, sizeof st);
    st.f_bsize = st.f_frsize = 4096;
    if (statvfs(registry_cache_dir(fs_of(req)->r), &st) != 0)
        memset(&st, 0, sizeof st), st.f_bsize = st.f_frsize = 4096;
    st.f_namemax = 255;
    st.f_flag |= ST_NOSUID | ST_NODEV;
    fuse_reply_statfs(req, &st);
}

/* ---- the mount's life ---- */

/* Drops the kernel's cached attributes and pages of a job's changing
 * files, so that `stat` then `read` agree (tar relies on it). */
static void invalidate_job(void *arg, const char *project, const char *job)
{
    struct fs *fs = arg;
    static const char *const files[] = { "", "/status", "/.job.json", "/.wait" };
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "/projects/%s/exports/%s%s", project, job, files[i]);
        fuse_ino_t ino = inodes_find(fs->inodes, path);
        if (ino)
            fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0); /* -ENOENT: already gone */
    }
}

static void wake_calls(void *arg, const void *key) { calls_wake(((struct fs *)arg)->calls, key); }

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct fs *fs = userdata;
    /* Without it the kernel holds a directory's lock for the whole of a
     * readdir or lookup: one listing waiting for a download would block
     * every lookup and listing of that directory. */
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    else
        log_warn("this kernel serializes operations on a directory: a listing that waits "
                 "for a download holds up the others of its directory");
    struct registry *r = fs->r;
    registry_set_hooks(r, invalidate_job, wake_calls, fs);
    /* Threads start here, after the process has daemonized. */
    if (calls_start(fs->calls, RESUME_THREADS, NETWORK_THREADS) < 0)
        log_error("request threads did not start: waiting requests will not be answered");
    if (poller_start(r) < 0 || fetcher_start(r) < 0)
        log_error("background workers did not start: jobs will not be polled or fetched");
    if (registry_eventlogs(r) && eventlogs_start(registry_eventlogs(r)) < 0)
        log_error("event-logs workers did not start: event-logs/ will not be listed");
}

static void op_destroy(void *userdata)
{
    struct fs *fs = userdata;
    fs_stop(fs);
    pthread_mutex_lock(&fs->handles_lock);
    struct handle *left = fs->handles;
    pthread_mutex_unlock(&fs->handles_lock);
    while (left) {
        struct handle *next = left->next;
        handle_free(fs, left); /* no request runs any more */
        left = next;
    }
}

static const struct fuse_lowlevel_ops operations = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
};

struct fs *fs_new(struct fuse_args *args, struct registry *r)
{
    struct fs *fs = calloc(1, sizeof *fs);
    if (!fs)
        return NULL;
    fs->r = r;
    pthread_mutex_init(&fs->handles_lock, NULL);
    fs->inodes = inodes_new();
    fs->calls = calls_new();
    if (fs->inodes && fs->calls)
        fs->se = fuse_session_new(args, &operations, sizeof operations, fs);
    if (!fs->se) {
        fs_free(fs);
        return NULL;
    }
    return fs;
}

struct fuse_session *fs_session(struct fs *fs) { return fs->se; }

void fs_stop(struct fs *fs)
{
    if (fs->stopped)
        return;
    fs->stopped = 1;
    /* Workers first: their last changes wake calls, which answer.  The
     * event-logs threads after them: stopping them stops the cloud, and a
     * download cut before r->stopping is set would count as failed. */
    workers_stop(fs->r);
    if (registry_eventlogs(fs->r))
        eventlogs_stop(registry_eventlogs(fs->r));
    registry_set_hooks(fs->r, NULL, NULL, NULL);
    calls_stop(fs->calls);
}

void fs_free(struct fs *fs)
{
    if (!fs)
        return;
    if (fs->se)
        fuse_session_destroy(fs->se); /* calls op_destroy if the mount got going */
    inodes_free(fs->inodes);
    calls_free(fs->calls);
    pthread_mutex_destroy(&fs->handles_lock);
    free(fs);
}
