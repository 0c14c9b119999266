/* cloud: URLs, retries and error mapping for the WAF/HSS/IAM calls. */
#include "cloud.h"
#include "auth.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct endpoint {
    char *origin;      /* scheme://host[:port] */
    char *host;        /* Host header value */
    char *base_path;   /* path prefix without trailing '/', often "" */
};

struct cloud {
    struct endpoint waf, hss;
    char *enterprise_project_id;
    struct http_client *http;
    struct auth *auth;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    atomic_int stopping; /* read without stop_lock by transfers in progress */
};

static int parse_endpoint(const char *url, struct endpoint *ep, char **why)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int rc = -EINVAL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        if (why && asprintf(why, "invalid endpoint URL '%s'", url) < 0)
            *why = NULL;
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        if (why && asprintf(why, "endpoint '%s': only http and https are supported", url) < 0)
            *why = NULL;
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    size_t plen = path ? strlen(path) : 0;
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (asprintf(&ep->host, "%s%s%s", host, port ? ":" : "", port ? port : "") < 0 ||
        asprintf(&ep->origin, "%s://%s", scheme, ep->host) < 0 ||
        !(ep->base_path = strndup(path ? path : "", plen))) {
        rc = -ENOMEM;
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

static void endpoint_release(struct endpoint *ep)
{
    free(ep->origin);
    free(ep->host);
    free(ep->base_path);
}

int cloud_create(const struct cloud_config *cfg, struct creds *creds, struct cloud **out,
                 char **why)
{
    struct cloud *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->stop_lock, NULL);
    pthread_cond_init(&c->stop_cond, NULL);
    int rc = parse_endpoint(cfg->waf_base, &c->waf, why);
    if (!rc)
        rc = parse_endpoint(cfg->hss_base, &c->hss, why);
    if (!rc && cfg->iam_base) {
        struct endpoint iam = { 0 };
        rc = parse_endpoint(cfg->iam_base, &iam, why);
        endpoint_release(&iam);
    }
    if (!rc && cfg->enterprise_project_id &&
        !(c->enterprise_project_id = strdup(cfg->enterprise_project_id)))
        rc = -ENOMEM;
    if (!rc)
        rc = http_client_create(cfg->cafile, cfg->request_timeout_s, &c->http, why);
    if (!rc)
        rc = auth_create(creds, c->http, cfg->iam_base, &c->auth);
    if (rc) {
        cloud_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cloud_destroy(struct cloud *c)
{
    if (!c)
        return;
    auth_destroy(c->auth);
    http_client_destroy(c->http);
    endpoint_release(&c->waf);
    endpoint_release(&c->hss);
    free(c->enterprise_project_id);
    pthread_mutex_destroy(&c->stop_lock);
    pthread_cond_destroy(&c->stop_cond);
    free(c);
}

const char *cloud_auth_description(const struct cloud *c) { return auth_describe(c->auth); }

void cloud_stop(struct cloud *c)
{
    pthread_mutex_lock(&c->stop_lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->stop_cond);
    pthread_mutex_unlock(&c->stop_lock);
}

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

int cloud_id_is_safe(const char *id, size_t max_len)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > max_len || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("-_.", id[i]))
            return 0;
    return 1;
}

/* Copies an untrusted server text into a log-safe message. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src && src[i] && j + 1 < cap; i++)
        dst[j++] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
    dst[j] = '\0';
}

void cloud_describe_error(const char *what, long status, const char *body, size_t len,
                          struct cloud_error *e)
{
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(j, "error_code"));
    const char *msg = json_string_value(json_object_get(j, "error_msg"));
    char safe_code[64], safe_msg[300];
    copy_printable(safe_code, sizeof safe_code, code);
    copy_printable(safe_msg, sizeof safe_msg, msg);
    snprintf(e->msg, sizeof e->msg, "%s: HTTP %ld%s%s%s%s", what, status, code ? " " : "",
             code ? safe_code : "", msg ? ": " : "", msg ? safe_msg : "");
    json_decref(j);
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

struct call_spec {
    enum http_call call;
    const char *what;           /* for messages: "submit job", ... */
    const char *method;
    const struct endpoint *ep;
    const char *project;
    char path[512];             /* decoded path below the base path */
    const char *body;
    size_t body_len;
    int attempts;
    int out_fd;
    uint64_t resume_from;
    void (*progress)(void *, uint64_t, int64_t);
    void *progress_arg;
};

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
    if (c->enterprise_project_id) {
        char *enc = sign_uri_encode(c->enterprise_project_id);
        strbuf_printf(&u, "?enterprise_project_id=%s", enc ? enc : "");
        free(enc);
    }
    *url = strbuf_finish(&u);
    return *url ? 0 : -ENOMEM;
}

/* Runs a call with its retry policy.  On return 0, resp holds a 2xx answer. */
static int perform_call(struct cloud *c, const struct call_spec *s, struct http_response *resp,
                        struct cloud_error *e)
{
    char *url = NULL, *full_path = NULL;
    memset(e, 0, sizeof *e);
    e->retry_after = -1;
    int rc = build_url(c, s, &url, &full_path);
    if (rc)
        goto out;
    struct sign_param query = { "enterprise_project_id", c->enterprise_project_id };
    int reauthed = 0;
    for (int attempt = 1;; attempt++) {
        struct curl_slist *headers = NULL;
        struct auth_target target = {
            .project = s->project, .method = s->method, .host = s->ep->host,
            .path = full_path, .query = &query, .nquery = c->enterprise_project_id ? 1 : 0,
            .content_type = s->body ? "application/json;charset=utf8" : NULL,
            .body = s->body, .body_len = s->body_len,
        };
        rc = auth_apply(c->auth, &target, &headers, e->msg, sizeof e->msg);
        if (rc) {
            curl_slist_free_all(headers);
            e->err = -rc;
            goto out;
        }
        struct http_request req = {
            .call = s->call, .method = s->method, .url = url, .headers = headers,
            .body = s->body, .body_len = s->body_len, .out_fd = s->out_fd,
            .resume_from = s->resume_from, .progress = s->progress,
            .progress_arg = s->progress_arg, .cancel = &c->stopping,
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
            snprintf(e->msg, sizeof e->msg, "%s: %s", s->what, resp->error);
            e->err = -rc;
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
            } else if (resp->status == 401 && !reauthed) {
                /* An IAM token may have been revoked: log in again once. */
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

/* Copies an optional string field, refusing ones that do not fit. */
static int copy_field(json_t *obj, const char *key, char *dst, size_t cap, int required)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        dst[0] = '\0';
        return required ? -1 : 0;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= cap)
        return -1;
    copy_printable(dst, cap, s);
    return 0;
}

/* The fields of one kind of reply: 0, or -1 when a required one is missing
 * or unusable; *problem then says which (for the message). */
typedef int (*reply_fields)(json_t *j, void *out, const char **problem);

/* The part submit and query share: the body must be a JSON object whose
 * fields check out.  Anything else is EIO with a message naming the call. */
static int parse_reply(const char *body, size_t len, const char *what, reply_fields fields,
                       void *out, struct cloud_error *e)
{
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", len, 0, &jerr);
    const char *problem = NULL;
    int rc = -EIO;
    if (!json_is_object(j)) {
        /* jansson quotes the offending input in its text: keep it printable. */
        char safe[sizeof jerr.text];
        copy_printable(safe, sizeof safe, jerr.text);
        snprintf(e->msg, sizeof e->msg, "%s: malformed answer from the cloud (%s)", what,
                 j ? "not an object" : safe);
    } else if (fields(j, out, &problem) < 0) {
        snprintf(e->msg, sizeof e->msg, "%s: the answer has no %s", what, problem);
    } else {
        rc = 0;
    }
    json_decref(j);
    if (rc)
        e->err = EIO;
    return rc;
}

static int submit_fields(json_t *j, void *arg, const char **problem)
{
    struct submit_reply *out = arg;
    *problem = "usable job_id";
    if (copy_field(j, "job_id", out->job_id, sizeof out->job_id, 1) < 0 ||
        !cloud_id_is_safe(out->job_id, 64) ||
        copy_field(j, "status", out->status, sizeof out->status, 0) < 0)
        return -1;
    if (copy_field(j, "message", out->message, sizeof out->message, 0) < 0)
        out->message[0] = '\0';
    return 0;
}

static int query_fields(json_t *j, void *arg, const char **problem)
{
    struct task_info *out = arg;
    *problem = "valid task_status/file_id";
    if (copy_field(j, "task_status", out->task_status, sizeof out->task_status, 1) < 0 ||
        (strcmp(out->task_status, "running") != 0 && strcmp(out->task_status, "success") != 0 &&
         strcmp(out->task_status, "failure") != 0) ||
        copy_field(j, "task_name", out->task_name, sizeof out->task_name, 0) < 0 ||
        copy_field(j, "file_id", out->file_id, sizeof out->file_id, 0) < 0 ||
        copy_field(j, "file_name", out->file_name, sizeof out->file_name, 0) < 0 ||
        (out->file_id[0] != '\0' && !cloud_id_is_safe(out->file_id, 64)) ||
        (strcmp(out->task_status, "success") == 0 && !out->file_id[0]))
        return -1;
    return 0;
}

int cloud_parse_submit_reply(const char *body, size_t len, struct submit_reply *out,
                             struct cloud_error *e)
{
    return parse_reply(body, len, "submit export job", submit_fields, out, e);
}

static void query_what(char *buf, size_t cap, const char *task_id)
{
    char safe[80];
    copy_printable(safe, sizeof safe, task_id);
    snprintf(buf, cap, "query export task %s", safe);
}

int cloud_parse_query_reply(const char *body, size_t len, const char *task_id,
                            struct task_info *out, struct cloud_error *e)
{
    char what[128];
    query_what(what, sizeof what, task_id);
    return parse_reply(body, len, what, query_fields, out, e);
}

/* Runs a call whose 2xx answer is a JSON object (submit, query). */
static int call_and_parse(struct cloud *c, const struct call_spec *s, const char *what,
                          reply_fields fields, void *out, struct cloud_error *e)
{
    struct http_response resp;
    http_response_init(&resp);
    int rc = perform_call(c, s, &resp, e);
    if (!rc)
        rc = parse_reply(resp.body.data, resp.body.len, what, fields, out, e);
    http_response_release(&resp);
    return rc;
}

int cloud_submit(struct cloud *c, const char *project, const char *body, size_t len,
                 struct submit_reply *out, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_SUBMIT, .what = "submit export job", .method = "POST",
                           .ep = &c->waf, .project = project, .body = body, .body_len = len,
                           .attempts = 4, .out_fd = -1 };
    snprintf(s.path, sizeof s.path, "/v1/%s/waf/event/job/export", project);
    return call_and_parse(c, &s, s.what, submit_fields, out, e);
}

int cloud_query(struct cloud *c, const char *project, const char *task_id, int attempts,
                struct task_info *out, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_QUERY, .what = "query export task", .method = "GET",
                           .ep = &c->hss, .project = project, .attempts = attempts,
                           .out_fd = -1 };
    snprintf(s.path, sizeof s.path, "/v5/%s/event/export-task/%s", project, task_id);
    char what[128];
    query_what(what, sizeof what, task_id);
    return call_and_parse(c, &s, what, query_fields, out, e);
}

int cloud_download(struct cloud *c, const char *project, const char *file_id, int fd,
                   uint64_t have, void (*progress)(void *, uint64_t, int64_t), void *arg,
                   int64_t *total, struct cloud_error *e)
{
    if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
        snprintf(e->msg, sizeof e->msg, "download: seek: %s", strerror(errno));
        e->err = errno;
        return -e->err;
    }
    struct call_spec s = { .call = CALL_DOWNLOAD, .what = "download archive", .method = "GET",
                           .ep = &c->hss, .project = project, .attempts = 4, .out_fd = fd,
                           .resume_from = have, .progress = progress, .progress_arg = arg };
    snprintf(s.path, sizeof s.path, "/v5/%s/download/%s", project, file_id);
    struct http_response resp;
    http_response_init(&resp);
    int rc = perform_call(c, &s, &resp, e);
    if (rc && e->status == 416 && have > 0) {
        /* Nothing left to send: the partial file may already be whole
         * (interrupted between the last byte and the rename). */
        if (resp.total == (int64_t)have) {
            rc = 0;
            resp.written = 0;
        } else if (ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
            log_info("download %s: partial file does not fit the archive; starting over",
                     file_id);
            s.resume_from = 0;
            rc = perform_call(c, &s, &resp, e);
        }
    }
    if (resp.restarted) {
        log_info("download %s: the server ignored Range; fetched again from byte 0", file_id);
        s.resume_from = 0;
    }
    if (total)
        *total = resp.total;
    if (!rc && resp.total >= 0 && s.resume_from + resp.written != (uint64_t)resp.total) {
        snprintf(e->msg, sizeof e->msg, "download archive: got %llu of %lld bytes",
                 (unsigned long long)(s.resume_from + resp.written), (long long)resp.total);
        e->err = EIO;
        rc = -EIO;
    }
    http_response_release(&resp);
    return rc;
}

json_t *cloud_stats_json(struct cloud *c) { return http_stats_json(c->http); }
