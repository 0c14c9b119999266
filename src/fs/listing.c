/* fs/listing: readdir and readdirplus.  Offsets are entry indices, so a
 * large directory goes a buffer at a time; readdirplus hands the kernel
 * each entry's attributes with it (saving one LOOKUP per entry), and each
 * such entry counts as a lookup of its inode (inodes.h).  A job directory
 * whose archive is still coming answers REGISTRY_WAIT before anything is
 * put in the buffer, and the listing runs again when it is there. */
#include "fs_internal.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The d_ino of an entry the kernel gets no inode for (as libfuse's
 * high-level API reports it). */
#define UNKNOWN_INO 0xffffffffu

struct dirbuf {
    struct fs *fs;
    fuse_req_t req;
    const char *dirpath;
    char *buf;
    size_t size, used;
    off_t offset;       /* entries before this one were sent already */
    off_t next;         /* index of the next entry emitted */
    int plus, full;
    /* readdirplus: the inodes the buffer hands over, each a lookup; taken
     * back if the reply never reaches the kernel (an interrupted listing) */
    fuse_ino_t *sent;
    size_t nsent, sent_cap;
};

/* Remembers an inode the buffer counts as looked up; 0 when it cannot (the
 * entry then goes without it, as an entry the kernel must look up). */
static int note_sent(struct dirbuf *d, fuse_ino_t ino)
{
    if (d->nsent == d->sent_cap) {
        size_t cap = d->sent_cap ? d->sent_cap * 2 : 32;
        fuse_ino_t *grown = realloc(d->sent, cap * sizeof *grown);
        if (!grown)
            return 0;
        d->sent = grown;
        d->sent_cap = cap;
    }
    d->sent[d->nsent++] = ino;
    return 1;
}

static bool is_dots(const char *name)
{
    return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

/* type: S_IFDIR or S_IFREG, for an entry whose attributes are not given.
 * Returns 1 once the buffer is full (stop listing). */
static int emit(struct dirbuf *d, const char *name, const struct stat *st, mode_t type)
{
    off_t idx = d->next++;
    if (d->full || idx < d->offset)
        return d->full;
    size_t room = d->size - d->used, need;
    if (d->plus) {
        struct fuse_entry_param e = { 0 };
        e.attr.st_mode = type;
        e.attr.st_ino = UNKNOWN_INO;
        if (st && !is_dots(name)) {
            char child[PATH_MAX];
            int n = snprintf(child, sizeof child, "%s/%s", strcmp(d->dirpath, "/") ? d->dirpath : "",
                             name);
            if (n > 0 && (size_t)n < sizeof child && (e.ino = inodes_ref(d->fs->inodes, child))) {
                e.attr = *st;
                e.attr.st_ino = e.ino;
                e.attr_timeout = FS_ATTR_TIMEOUT;
                e.entry_timeout = FS_ENTRY_TIMEOUT;
            }
        }
        if (e.ino && !note_sent(d, e.ino)) {
            inodes_forget(d->fs->inodes, e.ino, 1);
            memset(&e, 0, sizeof e);
            e.attr.st_mode = type;
            e.attr.st_ino = UNKNOWN_INO;
        }
        need = fuse_add_direntry_plus(d->req, d->buf + d->used, room, name, &e, idx + 1);
        if (need > room && e.ino) {
            inodes_forget(d->fs->inodes, e.ino, 1); /* not sent: not looked up */
            d->nsent--;
        }
    } else {
        struct stat s = { .st_mode = st ? st->st_mode : type, .st_ino = UNKNOWN_INO };
        need = fuse_add_direntry(d->req, d->buf + d->used, room, name, &s, idx + 1);
    }
    if (need > room)
        d->full = 1;
    else
        d->used += need;
    return d->full;
}

/* Offsets count every name emitted before: skip the snapshot's names
 * that an earlier buffer held.  Returns the first index to emit. */
static size_t first_unsent(struct dirbuf *d, size_t count)
{
    size_t skip = d->offset > d->next ? (size_t)(d->offset - d->next) : 0;
    if (skip > count)
        skip = count;
    d->next += (off_t)skip;
    return skip;
}

/* A job directory (entry NULL) or a directory of its archive. */
static int list_job(struct registry *r, struct job *j, struct dirbuf *d, const char *entry,
                    const void **key)
{
    struct job_view v;
    registry_job_view(r, j, 0, &v);
    bool has_archive = v.has_archive;
    struct aindex *idx = NULL;
    const struct anode *dir = NULL;
    int rc = entry || has_archive ? job_entry(r, j, entry, true, &dir, &idx, key) : 0;
    if (rc == REGISTRY_WAIT)
        return rc;
    if (rc && (entry || (rc != -EIO && rc != -EAGAIN)))
        return rc;
    /* Without its archive (running, failed, or not to be had now: the
     * error shows in .job.json) a job lists its control files alone. */
    if (!entry) {
        struct stat st;
        registry_job_view(r, j, JOB_VIEW_TEXTS, &v);
        for (int i = 0; control_files[i]; i++) {
            stat_control(&v, i == 0 ? N_STATUS : i == 1 ? N_JOB_JSON : N_WAIT, &st);
            emit(d, control_files[i], &st, S_IFREG);
        }
        job_view_release(&v);
    }
    if (!dir)
        return 0;
    if (!anode_is_dir(dir)) {
        registry_index_done(r, j);
        return -ENOTDIR;
    }
    size_t count = anode_child_count(dir);
    for (size_t i = first_unsent(d, count); i < count && !d->full; i++) {
        const struct anode *c = anode_child(idx, dir, i);
        struct stat st;
        fill_anode(&st, c);
        emit(d, anode_name(idx, c), &st, st.st_mode & S_IFMT);
    }
    registry_index_done(r, j);
    return 0;
}

/* event-logs/ */
static int list_evlogs(struct registry *r, const struct node *n, struct dirbuf *d,
                       struct dir_snapshot *dh, const void **key)
{
    if (!registry_eventlogs(r))
        return 0;
    if (!dh->listed) {
        int rc = eventlogs_list(registry_eventlogs(r), n->project, &dh->listing, key);
        if (rc)
            return rc;
        dh->listed = 1;
    }
    size_t count = dh->listing.n;
    for (size_t i = first_unsent(d, count); i < count && !d->full; i++) {
        const struct eventlog_entry *e = &dh->listing.entries[i];
        struct stat st;
        fill_file(&st, 0444, (off_t)e->size, (time_t)e->mtime);
        emit(d, e->name, &st, S_IFREG);
    }
    return 0;
}

/* Adds a name to the snapshot; runs under the registry's lock, so it only
 * allocates.  A failure is kept for after the walk (nomem). */
static int snap_add(struct dir_snapshot *dh, const char *name, mode_t type, time_t dir_time)
{
    if (dh->n == dh->cap) {
        size_t cap = dh->cap ? dh->cap * 2 : 16;
        struct dir_name *grown = realloc(dh->names, cap * sizeof *grown);
        if (!grown)
            return dh->nomem = 1;
        dh->names = grown;
        dh->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return dh->nomem = 1;
    dh->names[dh->n++] = (struct dir_name){ copy, type, dir_time };
    return 0;
}

static int snap_project(void *arg, const char *id)
{
    return snap_add(arg, id, S_IFDIR, 0);
}

/* exports/<job> */
static int snap_job_dir(void *arg, const struct job_view *v)
{
    return snap_add(arg, v->id, S_IFDIR, v->dir_time);
}

/* archives/<job>.<format>: shown only when its stat answers (job_view). */
static int snap_archive_file(void *arg, const struct job_view *v)
{
    if (!v->archive_listed)
        return 0;
    char name[NODE_ID_MAX + NODE_FORMAT_MAX + 1];
    snprintf(name, sizeof name, "%s.%s", v->id, v->format);
    return snap_add(arg, name, S_IFREG, 0);
}

/* projects/, exports/ (after "new") or archives/, from the snapshot. */
static int list_names(struct registry *r, const struct node *n, struct dirbuf *d,
                      struct dir_snapshot *dh)
{
    if (!dh->listed) {
        int rc = 0;
        if (n->kind == N_PROJECTS)
            registry_each_project(r, snap_project, dh);
        else
            rc = registry_each_job(r, n->project,
                                   n->kind == N_EXPORTS ? snap_job_dir : snap_archive_file, dh);
        if (rc || dh->nomem) {
            if (!rc)
                log_error("listing %s: %s (taking its snapshot)", d->dirpath, strerror(ENOMEM));
            dir_snapshot_clear(dh);
            return rc ? rc : -ENOMEM;
        }
        dh->listed = 1;
    }
    for (size_t i = first_unsent(d, dh->n); i < dh->n && !d->full; i++) {
        const struct dir_name *e = &dh->names[i];
        struct stat st;
        if (e->dir_time)
            fill_dir(&st, 0555, e->dir_time);
        emit(d, e->name, e->dir_time ? &st : NULL, e->type);
    }
    return 0;
}

static int list_node(struct fs *fs, const struct node *n, struct dirbuf *d, struct dir_snapshot *dh,
                     const void **key)
{
    struct registry *r = fs->r;
    struct stat st;
    emit(d, ".", NULL, S_IFDIR);
    emit(d, "..", NULL, S_IFDIR);
    if (n->kind == N_ROOT) {
        emit(d, ".stats", NULL, S_IFREG);
        emit(d, "projects", NULL, S_IFDIR);
        return 0;
    }
    if (n->kind == N_PROJECTS)
        return list_names(r, n, d, dh);
    time_t added;
    if (registry_project_time(r, n->project, &added) != 0)
        return -ENOENT;
    switch (n->kind) {
    case N_PROJECT:
        emit(d, "archives", NULL, S_IFDIR);
        emit(d, "event-logs", NULL, S_IFDIR);
        emit(d, "exports", NULL, S_IFDIR);
        return 0;
    case N_EVLOGS:
        return list_evlogs(r, n, d, dh, key);
    case N_EXPORTS:
        fill_file(&st, 0644, 0, added);
        emit(d, "new", &st, S_IFREG);
        return list_names(r, n, d, dh);
    case N_ARCHIVES:
        return list_names(r, n, d, dh);
    case N_JOB:
    case N_ENTRY:
        break;
    default:
        return -ENOTDIR;
    }
    struct job *j = registry_get_job(r, n->project, n->job);
    if (!j)
        return -ENOENT;
    int rc = list_job(r, j, d, n->kind == N_ENTRY ? n->entry : NULL, key);
    registry_put_job(r, j);
    return rc;
}

int run_readdir(struct fs_call *c)
{
    struct fs *fs = c->ctx;
    struct node n;
    int rc = path_parse(c->path, &n);
    char *buf = rc ? NULL : malloc(c->size ? c->size : 1);
    if (!rc && !buf)
        rc = -ENOMEM;
    struct dirbuf d = { fs, c->req, c->path, buf, c->size, 0, c->off, 0, c->plus, 0, NULL, 0, 0 };
    /* Offset 0 starts a listing (opendir or rewinddir): a fresh snapshot.
     * A readdir without a handle of ours lists from a snapshot of its own. */
    struct dir_snapshot own = { 0 };
    struct dir_snapshot *dh = c->handle ? &((struct handle *)c->handle)->snap : &own;
    if (c->off == 0)
        dir_snapshot_clear(dh);
    if (!rc)
        rc = list_node(fs, &n, &d, dh, &c->key);
    dir_snapshot_clear(&own);
    if (rc == REGISTRY_WAIT || rc) {
        /* nothing is sent: no entry was looked up */
        for (size_t i = 0; i < d.nsent; i++)
            inodes_forget(fs->inodes, d.sent[i], 1);
    }
    if (rc == REGISTRY_WAIT) {
        free(d.sent);
        free(buf);
        return rc;
    }
    if (rc) {
        fuse_reply_err(c->req, -rc);
    } else if (fuse_reply_buf(c->req, buf, d.used) != 0) {
        /* The kernel dropped the request (the lister was interrupted): it
         * never saw these entries, so it will never forget them. */
        for (size_t i = 0; i < d.nsent; i++)
            inodes_forget(fs->inodes, d.sent[i], 1);
    }
    free(d.sent);
    free(buf);
    return 0;
}
