/* cloud_call: one request to the cloud (URL, signing through auth, the
 * retry policy of cloud.h, the errno of an HTTP status) and the download
 * both services share.  Calls cloud_reply, auth, http, sign. */
#include "cloud_call.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Sleeps up to secs; returns -ECANCELED when the mount is going away. */
static int pause_for(struct cloud *c, double secs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)secs;
    until.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->stop_lock);
    while (!c->stopping && pthread_cond_timedwait(&c->stop_cond, &c->stop_lock, &until) == 0)
        ;
    int stopping = c->stopping;
    pthread_mutex_unlock(&c->stop_lock);
    return stopping ? -ECANCELED : 0;
}

static double backoff_seconds(int attempt)
{
    double base = 0.5 * (double)(1 << (attempt < 5 ? attempt : 5));
    if (base > 8)
        base = 8;
    return base * (0.75 + 0.5 * ((double)rand() / RAND_MAX)); /* jitter spreads retries */
}

static int errno_for_status(long status)
{
    if (status == 400)
        return EINVAL;
    if (status == 401 || status == 403)
        return EACCES;
    if (status == 404)
        return ENOENT;
    if (status == 429)
        return EAGAIN;
    return EIO;
}

/* Query parameters a call may carry: its own plus the enterprise project. */

static int build_url(const struct cloud *c, const struct call_spec *s, char **url,
                     char **full_path)
{
    struct strbuf u = STRBUF_INIT;
    if (asprintf(full_path, "%s%s", s->ep->base_path, s->path) < 0)
        return -ENOMEM;
    strbuf_puts(&u, s->ep->origin);
    /* The path is sent encoded exactly as it is signed. */
    const char *p = *full_path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t seg = slash ? (size_t)(slash - p) : strlen(p);
        char *part = strndup(p, seg);
        char *enc = part ? sign_uri_encode(part) : NULL;
        if (enc)
            strbuf_puts(&u, enc);
        else
            u.failed = 1;
        free(part);
        free(enc);
        if (!slash)
            break;
        strbuf_putc(&u, '/');
        p = slash + 1;
    }
    (void)c;
    for (size_t i = 0; i < s->nquery; i++) {
        char *name = sign_uri_encode(s->query[i].name);
        char *value = sign_uri_encode(s->query[i].value);
        if (name && value)
            strbuf_printf(&u, "%c%s=%s", i ? '&' : '?', name, value);
        else
            u.failed = 1;
        free(name);
        free(value);
    }
    *url = strbuf_finish(&u);
    return *url ? 0 : -ENOMEM;
}

/* Runs a call with its retry policy.  On return 0, resp holds a 2xx answer. */
int cloud_perform(struct cloud *c, const struct call_spec *s, struct http_response *resp,
                        struct cloud_error *e)
{
    char *url = NULL, *full_path = NULL;
    memset(e, 0, sizeof *e);
    e->retry_after = -1;
    int rc = s->url ? ((url = strdup(s->url)) && (full_path = strdup("(storage)")) ? 0 : -ENOMEM)
                    : build_url(c, s, &url, &full_path);
    if (rc)
        goto out;
    struct sign_param query[MAX_QUERY];
    for (size_t i = 0; i < s->nquery; i++)
        query[i] = (struct sign_param){ s->query[i].name, s->query[i].value };
    int reauthed = 0;
    for (int attempt = 1;; attempt++) {
        struct curl_slist *headers = NULL;
        if (!s->url) {
            struct auth_target target = {
                .project = s->project, .method = s->method, .host = s->ep->host,
                .path = full_path, .query = query, .nquery = s->nquery,
                .content_type = s->body ? "application/json;charset=utf8" : NULL,
                .body = s->body, .body_len = s->body_len,
            };
            char *why = NULL;
            rc = auth_apply(c->auth, &target, &headers, &why);
            if (rc && why)
                cloud_fail(e, -rc, "%s", why);
            free(why);
            if (!rc && s->region) {
                char line[128];
                snprintf(line, sizeof line, "region: %s", s->region);
                struct curl_slist *more = curl_slist_append(headers, line);
                if (more)
                    headers = more;
                else
                    rc = -ENOMEM;
            }
            if (rc) {
                curl_slist_free_all(headers);
                e->err = -rc;
                goto out;
            }
        }
        /* Storage URLs carry their own signature: no header of ours may
         * reach a storage host (it refuses two kinds of authentication,
         * and the user's credentials must not leave the cloud's APIs). */
        struct http_request req = {
            .call = s->call, .method = s->method, .url = url, .headers = headers,
            .body = s->body, .body_len = s->body_len, .out_fd = s->out_fd,
            .resume_from = s->resume_from, .progress = s->progress,
            .progress_arg = s->progress_arg, .cancel = &c->stopping,
            .cancel_also = s->cancel, .probe = s->probe,
        };
        http_response_release(resp);
        http_response_init(resp);
        rc = http_perform(c->http, &req, resp);
        curl_slist_free_all(headers);
        /* The path names the project and the job or file: one line per call. */
        if (rc < 0)
            log_debug("%s %s: %s (attempt %d)", s->method, full_path, resp->error, attempt);
        else
            log_debug("%s %s: HTTP %ld (attempt %d)", s->method, full_path, resp->status,
                      attempt);

        int is_post = strcmp(s->method, "POST") == 0;
        int retryable;
        double wait = backoff_seconds(attempt);
        if (rc < 0) {
            cloud_fail(e, -rc, "%s: %s", s->what, resp->error);
            /* A POST may have reached the cloud unless it never left. */
            retryable = rc != -ECANCELED && !resp->untrusted && (!is_post || resp->not_sent);
            if (s->out_fd >= 0 && resp->written > 0)
                retryable = 0; /* the caller resumes downloads itself */
        } else if (resp->status >= 200 && resp->status < 300) {
            rc = 0;
            break;
        } else {
            cloud_describe_error(s->what, resp->status, resp->body.data, resp->body.len, e);
            e->status = resp->status;
            e->err = errno_for_status(resp->status);
            e->retry_after = resp->retry_after;
            rc = -e->err;
            if (resp->status == 429) {
                retryable = 1;
                if (resp->retry_after >= 0)
                    wait = resp->retry_after < 30 ? resp->retry_after : 30;
            } else if (resp->status >= 500) {
                retryable = !is_post;
            } else if (resp->status == 401 && !reauthed && !s->url &&
                       auth_renewable(c->auth)) {
                /* An IAM token may have been revoked: log in again once.
                 * Never for a signature or a token file: the gateway locks
                 * a key after a few failures, and retrying changes nothing. */
                auth_invalidate(c->auth, s->project);
                reauthed = 1;
                retryable = 1;
                attempt--;
                wait = 0;
            } else {
                retryable = 0;
            }
        }
        if (!retryable || attempt >= s->attempts)
            break;
        http_note_retry(c->http, s->call);
        log_debug("%s: retrying in %.1fs after: %s", s->what, wait, e->msg);
        if (pause_for(c, wait) < 0) {
            rc = -ECANCELED;
            break;
        }
    }
out:
    free(url);
    free(full_path);
    if (rc && !e->err)
        e->err = -rc;
    return rc;
}

int cloud_call_and_parse(struct cloud *c, const struct call_spec *s, const char *what,
                          cloud_reply_fields fields, void *out, struct cloud_error *e,
                          int64_t *server_ms)
{
    struct http_response resp;
    http_response_init(&resp);
    int rc = cloud_perform(c, s, &resp, e);
    if (!rc)
        rc = cloud_parse_reply(resp.body.data, resp.body.len, what, fields, out, e);
    if (server_ms)
        *server_ms = resp.server_date > 0 ? (int64_t)resp.server_date * 1000 : -1;
    http_response_release(&resp);
    return rc;
}

void cloud_add_enterprise_project(const struct cloud *c, struct call_spec *s, const char *name)
{
    for (size_t i = 0; i < s->nquery; i++)
        if (strcmp(s->query[i].name, name) == 0)
            return; /* the filter gave its own */
    if (c->enterprise_project_id && s->nquery < MAX_QUERY)
        s->query[s->nquery++] = (struct cloud_param){ name, c->enterprise_project_id };
}

/* The shared part of both downloads: resume, restart, exact length. */
int cloud_download(struct cloud *c, struct call_spec *s, const char *name, int fd,
                    uint64_t have, int64_t *total, struct cloud_error *e)
{
    if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
        int err = errno;
        memset(e, 0, sizeof *e);
        return cloud_fail(e, err, "download: seek: %s", strerror(err));
    }
    s->out_fd = fd;
    s->resume_from = have;
    s->attempts = 4;
    struct http_response resp;
    http_response_init(&resp);
    int rc = cloud_perform(c, s, &resp, e);
    if (rc && e->status == 416 && have > 0) {
        /* Nothing left to send: the partial file may already be whole
         * (interrupted between the last byte and the rename). */
        if (resp.total == (int64_t)have) {
            rc = 0;
            resp.written = 0;
        } else if (ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
            log_info("download %s: partial file does not fit the file; starting over", name);
            s->resume_from = 0;
            rc = cloud_perform(c, s, &resp, e);
        }
    }
    if (resp.restarted) {
        log_info("download %s: the server ignored Range; fetched again from byte 0", name);
        s->resume_from = 0;
    }
    if (total)
        *total = resp.total;
    if (!rc && resp.total >= 0 && s->resume_from + resp.written != (uint64_t)resp.total) {
        rc = cloud_fail(e, EIO, "%s: got %llu of %lld bytes", s->what,
                        (unsigned long long)(s->resume_from + resp.written),
                        (long long)resp.total);
    }
    http_response_release(&resp);
    return rc;
}

