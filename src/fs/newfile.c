/* fs/newfile: the `new` protocol (filesystem.md "Submitting a job").
 * Writes collect a JSON text; the write that completes it submits it (on
 * the pool for network calls, calls.h: no libfuse worker waits for the
 * cloud) and answers with its outcome; reads on the same descriptor then
 * return "<job id>\n" or "error: <why>\n".
 *
 *   $ exec 3<>exports/new
 *   $ echo '{"recent":"today","dump_columns":["id","time"]}' >&3
 *   $ read job <&3; echo "$job"
 *   4f0c...e2 */
#include "fs_internal.h"

#include "filter.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int new_open(struct fs *fs, const struct node *n, struct fuse_file_info *fi)
{
    time_t added;
    if (registry_project_time(fs->r, n->project, &added) != 0)
        return -ENOENT;
    struct handle *h = handle_new(fs, N_NEW);
    if (!h)
        return -ENOMEM;
    snprintf(h->project, sizeof h->project, "%s", n->project);
    fi->fh = (uintptr_t)h;
    fi->direct_io = 1; /* the reply line is not file data: never cache it */
    return 0;
}

static bool blank(const char *data, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (!strchr(" \t\r\n", data[i]))
            return false;
    return true;
}

/* Sets the outcome the descriptor reads back; h->lock held. */
static void set_outcome_locked(struct handle *h, int err, const char *job_id, const char *why)
{
    h->sub_errno = err;
    h->sub_state = err ? SUB_FAILED : SUB_DONE;
    free(h->reply);
    if ((err ? asprintf(&h->reply, "error: %s\n", why) : asprintf(&h->reply, "%s\n", job_id)) < 0)
        h->reply = NULL;
}

struct submission {
    json_t *filter;
    char *body;
    int ran;
};

static int run_submit(struct fs_call *c)
{
    struct fs *fs = c->ctx;
    struct handle *h = c->handle;
    struct submission *s = c->data;
    char *why = NULL, job_id[NODE_ID_MAX] = "";
    s->ran = 1;
    int rc = registry_submit(fs->r, h->project, s->filter, s->body, job_id, &why);
    pthread_mutex_lock(&h->lock);
    set_outcome_locked(h, -rc, job_id, why ? why : rc ? strerror(-rc) : "");
    pthread_mutex_unlock(&h->lock);
    free(why);
    if (rc)
        fuse_reply_err(c->req, -rc);
    else
        fuse_reply_write(c->req, c->size);
    return 0;
}

/* A submission interrupted before it was sent: nothing was submitted. */
static void release_submission(struct fs_call *c)
{
    struct submission *s = c->data;
    if (!s->ran) {
        struct handle *h = c->handle;
        pthread_mutex_lock(&h->lock);
        set_outcome_locked(h, EINTR, NULL, "interrupted before it was sent: nothing submitted");
        pthread_mutex_unlock(&h->lock);
        log_info("project %s: submission interrupted before it was sent", h->project);
    }
    json_decref(s->filter);
    free(s->body);
    free(s);
}

/* Queues the submission of a complete, valid filter; takes filter and body. */
static void submit(struct fs *fs, fuse_req_t req, struct handle *h, size_t size, json_t *filter,
                   char *body)
{
    struct fs_call *c = call_new(req, run_submit, fs);
    struct submission *s = c ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        free(c);
        json_decref(filter);
        free(body);
        pthread_mutex_lock(&h->lock);
        set_outcome_locked(h, ENOMEM, NULL, "out of memory: nothing submitted");
        pthread_mutex_unlock(&h->lock);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    s->filter = filter;
    s->body = body;
    c->data = s;
    c->handle = h;
    c->size = size;
    c->release = release_submission;
    calls_dispatch_slow(fs->calls, c);
}

void new_write(struct fs *fs, fuse_req_t req, struct handle *h, const char *data, size_t size)
{
    pthread_mutex_lock(&h->lock);
    if (h->sub_state != SUB_COLLECTING) {
        /* One job per open: only trailing blanks may follow. */
        int err = blank(data, size) ? 0 : h->sub_state == SUB_FAILED ? h->sub_errno : EINVAL;
        pthread_mutex_unlock(&h->lock);
        if (err)
            fuse_reply_err(req, err);
        else
            fuse_reply_write(req, size);
        return;
    }
    strbuf_append(&h->input, data, size);
    if (h->input.failed) {
        pthread_mutex_unlock(&h->lock);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    json_t *filter = NULL;
    char *body = NULL, *why = NULL;
    enum filter_parse_result res = filter_parse(h->input.data, h->input.len, &filter, &body, &why);
    if (res == FILTER_INCOMPLETE) {
        pthread_mutex_unlock(&h->lock);
        fuse_reply_write(req, size);
        return;
    }
    if (res == FILTER_INVALID) {
        const char *reason = why ? why : "invalid filter";
        log_error("project %s: filter refused, nothing submitted: %s", h->project, reason);
        set_outcome_locked(h, EINVAL, NULL, reason);
        pthread_mutex_unlock(&h->lock);
        json_decref(filter);
        free(body);
        free(why);
        fuse_reply_err(req, EINVAL);
        return;
    }
    free(why);
    h->sub_state = SUB_SUBMITTING;
    pthread_mutex_unlock(&h->lock);
    submit(fs, req, h, size, filter, body);
}

void new_read(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
    pthread_mutex_lock(&h->lock);
    const char *text = "";
    size_t len = 0;
    if (h->reply && h->sub_state != SUB_SUBMITTING) {
        /* The reply starts wherever the first read starts, so that
         * `read job <&3` after a write works whatever the offset. */
        if (!h->reply_base_set) {
            h->reply_base = off;
            h->reply_base_set = 1;
        }
        off_t rel = off >= h->reply_base ? off - h->reply_base : 0;
        len = strlen(h->reply);
        text = h->reply + (rel < (off_t)len ? (size_t)rel : len);
        len -= (size_t)(text - h->reply);
    }
    /* Answered under the lock: a submission's outcome cannot replace the
     * text while it is being sent. */
    fuse_reply_buf(req, text, len < size ? len : size);
    pthread_mutex_unlock(&h->lock);
}

int new_flush(struct handle *h)
{
    pthread_mutex_lock(&h->lock);
    int rc = 0;
    if (h->sub_state == SUB_COLLECTING && h->input.len > 0 && !blank(h->input.data, h->input.len)) {
        log_error("project %s: closed with an incomplete filter; nothing submitted", h->project);
        rc = -EINVAL;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}
