/* fs/files: open, read and release of the generated files and of archive
 * content (everything but `new`, newfile.c).  A handle holds what its
 * reads need: a snapshot of a generated file's text, or the archive's
 * index in use plus a positioned reader of its own (never shared between
 * handles, so reads of different files never serialize). */
#include "fs_internal.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* archives/<job>.<format>: the verified local file itself. */
static int open_archive_file(struct registry *r, struct handle *h, const struct node *n,
                             struct fuse_file_info *fi, const void **key)
{
    struct aindex *idx;
    int rc = registry_job_index(r, h->job, &idx);
    if (rc == REGISTRY_WAIT)
        *key = h->job;
    if (rc)
        return rc;
    h->holds_index = 1;
    char file[PATH_MAX];
    rc = registry_job_file(r, h->job, n->format, file);
    if (!rc && (h->fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno;
        log_error("open %s: %s", file, strerror(errno));
    }
    fi->keep_cache = 1; /* a verified archive never changes */
    return rc;
}

static int open_entry(struct registry *r, struct handle *h, const struct node *n,
                      struct fuse_file_info *fi, const void **key)
{
    const struct anode *a;
    struct aindex *idx;
    int rc = job_entry(r, h->job, n->entry, false, &a, &idx, key);
    if (rc)
        return rc;
    h->holds_index = 1;
    if (anode_is_dir(a))
        return -EISDIR;
    if ((rc = areader_open(idx, a, &h->reader)) != 0)
        return rc;
    fi->keep_cache = 1; /* archive content is immutable */
    return 0;
}

/* Opens a job's file; REGISTRY_WAIT while its archive is not there. */
static int open_job_file(struct fs *fs, const struct node *n, struct fuse_file_info *fi,
                         const void **key)
{
    struct registry *r = fs->r;
    struct job *j = registry_get_job(r, n->project, n->job);
    if (!j)
        return -ENOENT;
    struct handle *h = handle_new(fs, n->kind);
    if (!h) {
        registry_put_job(r, j);
        return -ENOMEM;
    }
    h->job = j;
    int rc = 0;
    switch (n->kind) {
    case N_STATUS:
    case N_JOB_JSON: {
        struct job_view v;
        registry_job_view(r, j, n->kind == N_STATUS ? JOB_VIEW_STATUS : JOB_VIEW_JSON, &v);
        h->text = n->kind == N_STATUS ? v.status_text : v.json_text;
        if (n->kind == N_STATUS)
            v.status_text = NULL; /* the handle's now */
        else
            v.json_text = NULL;
        job_view_release(&v);
        rc = h->text ? 0 : -ENOMEM;
        h->text_len = h->text ? strlen(h->text) : 0;
        fi->direct_io = 1; /* changing content: never from the page cache */
        break;
    }
    case N_WAIT:
        fi->direct_io = 1;
        break;
    case N_ARCHIVE_FILE:
        rc = open_archive_file(r, h, n, fi, key);
        break;
    case N_ENTRY:
        rc = open_entry(r, h, n, fi, key);
        break;
    default:
        rc = -EISDIR;
    }
    if (rc) {
        handle_free(fs, h);
        return rc;
    }
    fi->fh = (uintptr_t)h;
    return 0;
}

/* event-logs/<name>: a descriptor on the verified local copy (or the
 * job's archive that is the same file). */
static int open_evlog(struct fs *fs, const struct node *n, struct fuse_file_info *fi,
                      const void **key)
{
    struct eventlog_file ev;
    struct eventlogs *el = registry_eventlogs(fs->r);
    if (!el)
        return -ENOENT;
    int rc = eventlogs_open(el, n->project, n->entry, &ev, key);
    if (rc)
        return rc;
    struct handle *h = handle_new(fs, N_EVLOG_FILE);
    if (!h) {
        eventlogs_release(el, &ev);
        return -ENOMEM;
    }
    h->evlog = ev;
    h->holds_evlog = 1;
    fi->fh = (uintptr_t)h;
    fi->keep_cache = 1; /* a listed file's bytes never change */
    fi->noflush = 1;
    return 0;
}

int run_open(struct fs_call *c)
{
    struct fs *fs = c->ctx;
    struct node n;
    int rc = path_parse(c->path, &n);
    struct fuse_file_info *fi = &c->fi;
    if (!rc && n.kind == N_NEW) {
        rc = new_open(fs, &n, fi);
    } else if (!rc && (fi->flags & O_ACCMODE) != O_RDONLY) {
        rc = node_inside_job(&n) ? -EROFS : -EACCES;
    } else if (!rc && n.kind == N_STATS) {
        struct handle *h = handle_new(fs, N_STATS);
        if (!h || !(h->text = stats_text(fs))) {
            if (h)
                handle_free(fs, h);
            rc = -ENOMEM;
        } else {
            h->text_len = strlen(h->text);
            fi->fh = (uintptr_t)h;
            fi->direct_io = 1;
        }
    } else if (!rc && n.kind == N_EVLOG_FILE) {
        rc = open_evlog(fs, &n, fi, &c->key);
    } else if (!rc && ((n.kind < N_JOB && n.kind != N_ARCHIVE_FILE) || n.kind == N_EVLOGS)) {
        rc = -EISDIR;
    } else if (!rc) {
        rc = open_job_file(fs, &n, fi, &c->key);
        if (!rc)
            fi->noflush = 1; /* read-only: nothing to report at close, save a round trip */
        if (!rc && n.kind == N_ENTRY) /* for its read errors' log lines */
            ((struct handle *)(uintptr_t)fi->fh)->entry_path = strdup(c->path);
    }
    if (rc == REGISTRY_WAIT)
        return rc;
    if (rc) {
        fuse_reply_err(c->req, -rc);
    } else if (fuse_reply_open(c->req, fi) != 0) {
        handle_free(fs, (struct handle *)(uintptr_t)fi->fh); /* the opener is gone */
    }
    return 0;
}

/* The bytes of a read go through one buffer per thread, kept between
 * reads (a read is up to max_read bytes; a malloc and free of that much
 * per read costs more than the copy), freed when libfuse ends the thread. */
static pthread_key_t read_buffer_key;
static pthread_once_t read_buffer_once = PTHREAD_ONCE_INIT;

struct read_buffer {
    size_t cap;
    char bytes[];
};

static void read_buffer_key_create(void)
{
    if (pthread_key_create(&read_buffer_key, free) != 0)
        log_error("read buffers: pthread_key_create failed: each read allocates its own");
}

static char *read_buffer(size_t size, int *own)
{
    *own = 0;
    pthread_once(&read_buffer_once, read_buffer_key_create);
    struct read_buffer *b = pthread_getspecific(read_buffer_key);
    if (b && b->cap >= size)
        return b->bytes;
    struct read_buffer *grown = malloc(sizeof *grown + (size ? size : 1));
    if (!grown)
        return NULL;
    grown->cap = size;
    if (pthread_setspecific(read_buffer_key, grown) != 0) {
        *own = 1; /* no key: this read's alone */
        return grown->bytes;
    }
    free(b);
    return grown->bytes;
}

int run_wait_read(struct fs_call *c)
{
    struct fs *fs = c->ctx;
    struct handle *h = c->handle;
    int rc = registry_job_ended(fs->r, h->job);
    if (rc == REGISTRY_WAIT) {
        c->key = h->job;
        return rc;
    }
    if (rc) {
        fuse_reply_err(c->req, -rc);
        return 0;
    }
    struct job_view v;
    registry_job_view(fs->r, h->job, JOB_VIEW_STATUS, &v);
    char *line = v.status_text;
    v.status_text = NULL;
    job_view_release(&v);
    if (!line) {
        fuse_reply_err(c->req, ENOMEM);
        return 0;
    }
    size_t len = strlen(line);
    off_t off = c->off < 0 || (size_t)c->off > len ? (off_t)len : c->off;
    fuse_reply_buf(c->req, line + off, len - (size_t)off < c->size ? len - (size_t)off : c->size);
    free(line);
    return 0;
}

void files_read(struct fs *fs, fuse_req_t req, struct handle *h, size_t size, off_t off)
{
    struct registry *r = fs->r;
    int own;
    char *buf = read_buffer(size, &own);
    if (!buf) {
        log_error("read of %zu bytes: %s", size, strerror(ENOMEM));
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ssize_t got;
    size_t at;
    switch (h->kind) {
    case N_STATS:
    case N_STATUS:
    case N_JOB_JSON:
        /* Copied, not replied from the handle: the kernel hands the reply to
         * the reader inside our writev, so a close may free the handle
         * before writev returns (sanitizers read the iovec after it). */
        at = off < 0 || (size_t)off >= h->text_len ? h->text_len : (size_t)off;
        got = (ssize_t)(h->text_len - at < size ? h->text_len - at : size);
        memcpy(buf, h->text + at, (size_t)got);
        break;
    case N_ARCHIVE_FILE:
    case N_EVLOG_FILE:
        got = pread(h->kind == N_EVLOG_FILE ? h->evlog.fd : h->fd, buf, size, off);
        if (got < 0) {
            got = -errno;
            log_error("read %s at %lld: %s", h->kind == N_EVLOG_FILE ? "event-logs file"
                      : "archives/ file", (long long)off, strerror(errno));
        }
        break;
    case N_ENTRY:
        pthread_mutex_lock(&h->lock);
        got = areader_pread(h->reader, buf, size, (uint64_t)off);
        if (got < 0) {
            /* The reader's own text says why (CRC, encrypted, method...). */
            const char *why = areader_error(h->reader);
            log_error("read %s at %lld: %s%s%s", h->entry_path ? h->entry_path : "(entry)",
                      (long long)off, strerror((int)-got), why ? ": " : "", why ? why : "");
        }
        pthread_mutex_unlock(&h->lock);
        break;
    default:
        got = -EISDIR;
    }
    if (got < 0) {
        fuse_reply_err(req, (int)-got);
    } else {
        if (h->kind == N_ARCHIVE_FILE || h->kind == N_ENTRY || h->kind == N_EVLOG_FILE)
            registry_count_read(r, (uint64_t)got);
        fuse_reply_buf(req, buf, (size_t)got);
    }
    if (own)
        free(buf - offsetof(struct read_buffer, bytes));
}
