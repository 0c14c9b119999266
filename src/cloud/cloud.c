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
#include <strings.h>
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
    char *region;
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
    if (!rc && cfg->region && !(c->region = strdup(cfg->region)))
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
    free(c->region);
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

/* Query parameters a call may carry: its own plus the enterprise project. */
#define MAX_QUERY 512

struct call_spec {
    enum http_call call;
    const char *what;           /* for messages: "submit job", ... */
    const char *method;
    const struct endpoint *ep;  /* NULL with url: a pre-signed storage URL */
    const char *url;            /* used as given; no credentials are sent */
    const char *project;
    char path[512];             /* decoded path below the base path */
    struct cloud_param query[MAX_QUERY];
    size_t nquery;
    const char *region;         /* sent as the "region" header when set */
    const char *body;
    size_t body_len;
    int attempts;
    int out_fd;
    uint64_t resume_from;
    void (*progress)(void *, uint64_t, int64_t);
    void *progress_arg;
    const atomic_int *cancel;   /* the caller's own abort flag (downloads), or NULL */
    int probe;                  /* headers only: see http_request.probe */
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
static int perform_call(struct cloud *c, const struct call_spec *s, struct http_response *resp,
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
            rc = auth_apply(c->auth, &target, &headers, e->msg, sizeof e->msg);
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

const char *cloud_service_name(enum cloud_service svc) { return svc == SERVICE_HSS ? "hss" : "waf"; }

static int submit_waf_fields(json_t *j, void *arg, const char **problem)
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

static int submit_hss_fields(json_t *j, void *arg, const char **problem)
{
    struct submit_reply *out = arg;
    *problem = "usable task_id";
    memset(out, 0, sizeof *out);
    if (copy_field(j, "task_id", out->job_id, sizeof out->job_id, 1) < 0 ||
        !cloud_id_is_safe(out->job_id, 64))
        return -1;
    snprintf(out->status, sizeof out->status, "running");
    return 0;
}

/* Maps a service's state word onto running/success/failure; a word the
 * client does not know reads running (and is shown as the cloud's own). */
void cloud_map_status(struct task_info *t, const char *word)
{
    copy_printable(t->cloud_status, sizeof t->cloud_status, word);
    const char *state = "running";
    if (strcasecmp(word, "success") == 0)
        state = "success";
    else if (strcasecmp(word, "failure") == 0 || strcasecmp(word, "failed") == 0)
        state = "failure";
    snprintf(t->task_status, sizeof t->task_status, "%s", state);
}

static int waf_job_fields(json_t *j, void *arg, const char **problem)
{
    struct task_info *out = arg;
    char word[32];
    *problem = "usable status";
    memset(out, 0, sizeof *out);
    if (copy_field(j, "status", word, sizeof word, 1) < 0 || !word[0])
        return -1;
    if (copy_field(j, "message", out->message, sizeof out->message, 0) < 0)
        out->message[0] = '\0'; /* an unusable message is dropped, not fatal */
    cloud_map_status(out, word);
    return 0;
}

static int hss_task_fields(json_t *j, void *arg, const char **problem)
{
    struct task_info *out = arg;
    char word[32];
    *problem = "valid task_status/file_id";
    memset(out, 0, sizeof *out);
    if (copy_field(j, "task_status", word, sizeof word, 1) < 0 || !word[0] ||
        copy_field(j, "task_name", out->task_name, sizeof out->task_name, 0) < 0 ||
        copy_field(j, "file_id", out->file_id, sizeof out->file_id, 0) < 0 ||
        copy_field(j, "file_name", out->file_name, sizeof out->file_name, 0) < 0 ||
        (out->file_id[0] != '\0' && !cloud_id_is_safe(out->file_id, 64)))
        return -1;
    cloud_map_status(out, word);
    if (strcmp(out->task_status, "success") == 0 && !out->file_id[0]) {
        *problem = "file_id for a successful task";
        return -1;
    }
    return 0;
}

int cloud_parse_submit_reply(enum cloud_service svc, const char *body, size_t len,
                             struct submit_reply *out, struct cloud_error *e)
{
    return svc == SERVICE_HSS
               ? parse_reply(body, len, "create HSS export task", submit_hss_fields, out, e)
               : parse_reply(body, len, "submit WAF export job", submit_waf_fields, out, e);
}

static void query_what(char *buf, size_t cap, enum cloud_service svc, const char *task_id)
{
    char safe[80];
    copy_printable(safe, sizeof safe, task_id);
    snprintf(buf, cap, svc == SERVICE_HSS ? "query HSS export task %s" : "query WAF job %s",
             safe);
}

int cloud_parse_query_reply(enum cloud_service svc, const char *body, size_t len,
                            const char *task_id, struct task_info *out, struct cloud_error *e)
{
    char what[128];
    query_what(what, sizeof what, svc, task_id);
    return parse_reply(body, len, what, svc == SERVICE_HSS ? hss_task_fields : waf_job_fields,
                       out, e);
}

/* An optional integer field; -1 when absent or not an integer. */
static int64_t int_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

/* Pre-signed URLs are long but bounded; anything else is not a URL to fetch. */
#define MAX_URL_BYTES 8192

static int url_is_fetchable(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > MAX_URL_BYTES ||
        (strncasecmp(u, "https://", 8) != 0 && strncasecmp(u, "http://", 7) != 0))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return 0;
    return 1;
}

/* A listed file whose fields do not fit is skipped rather than cut: a cut
 * id or name could match the wrong job. */
static int event_file_from_json(json_t *o, struct event_file *f)
{
    memset(f, 0, sizeof *f);
    if (!json_is_object(o) ||
        copy_field(o, "id", f->id, sizeof f->id, 0) < 0 ||
        copy_field(o, "filename", f->filename, sizeof f->filename, 0) < 0 ||
        copy_field(o, "obsname", f->obsname, sizeof f->obsname, 0) < 0)
        return -1;
    if (copy_field(o, "description", f->description, sizeof f->description, 0) < 0)
        f->description[0] = '\0';
    f->start = int_field(o, "start");
    f->end = int_field(o, "end");
    f->timestamp = int_field(o, "timestamp");
    f->total = int_field(o, "total");
    const char *url = json_string_value(json_object_get(o, "url"));
    if (url && url_is_fetchable(url) && !(f->url = strdup(url)))
        return -ENOMEM;
    return 0;
}

void event_page_release(struct event_page *p)
{
    for (size_t i = 0; p->items && i < p->n; i++)
        free(p->items[i].url);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* Bounds one page: the client asks for at most this many items. */
#define MAX_PAGE_ITEMS 1000

static int event_page_fields(json_t *j, void *arg, const char **problem)
{
    struct event_page *out = arg;
    json_t *items = json_object_get(j, "items");
    *problem = "items array";
    out->total = int_field(j, "total");
    if (items && !json_is_null(items) && !json_is_array(items))
        return -1;
    size_t n = json_array_size(items);
    if (n > MAX_PAGE_ITEMS) {
        *problem = "page of a sane size";
        return -1;
    }
    out->items = n ? calloc(n, sizeof *out->items) : NULL;
    if (n && !out->items) {
        *problem = "page that fits in memory";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = event_file_from_json(json_array_get(items, i), &out->items[out->n]);
        if (rc == -ENOMEM) {
            *problem = "page that fits in memory";
            return -1;
        }
        if (rc == 0)
            out->n++;
        else
            free(out->items[out->n].url), out->items[out->n].url = NULL;
    }
    return 0;
}

int cloud_parse_event_page(const char *body, size_t len, struct event_page *out,
                           struct cloud_error *e)
{
    memset(out, 0, sizeof *out);
    int rc = parse_reply(body, len, "list WAF event-log files", event_page_fields, out, e);
    if (rc)
        event_page_release(out);
    return rc;
}

/* Runs a call whose 2xx answer is a JSON object; *server_ms (when given)
 * is the cloud's clock from the answer's Date header, -1 without one. */
static int call_and_parse(struct cloud *c, const struct call_spec *s, const char *what,
                          reply_fields fields, void *out, struct cloud_error *e,
                          int64_t *server_ms)
{
    struct http_response resp;
    http_response_init(&resp);
    int rc = perform_call(c, s, &resp, e);
    if (!rc)
        rc = parse_reply(resp.body.data, resp.body.len, what, fields, out, e);
    if (server_ms)
        *server_ms = resp.server_date > 0 ? (int64_t)resp.server_date * 1000 : -1;
    http_response_release(&resp);
    return rc;
}

/* Adds the mount's enterprise project to a call that takes it, spelled as
 * that call spells it (HSS: enterprise_project_id; WAF's async-job call:
 * enterpriseProjectId; WAF's submit and list take none). */
static void add_enterprise_project(const struct cloud *c, struct call_spec *s, const char *name)
{
    for (size_t i = 0; i < s->nquery; i++)
        if (strcmp(s->query[i].name, name) == 0)
            return; /* the filter gave its own */
    if (c->enterprise_project_id && s->nquery < MAX_QUERY)
        s->query[s->nquery++] = (struct cloud_param){ name, c->enterprise_project_id };
}

int cloud_submit_waf(struct cloud *c, const char *project, const char *body, size_t len,
                     struct submit_reply *out, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_SUBMIT, .what = "submit WAF export job",
                           .method = "POST", .ep = &c->waf, .project = project, .body = body,
                           .body_len = len, .attempts = 4, .out_fd = -1 };
    snprintf(s.path, sizeof s.path, "/v1/%s/waf/event/job/export", project);
    return call_and_parse(c, &s, s.what, submit_waf_fields, out, e, &out->server_ms);
}

int cloud_submit_hss(struct cloud *c, const char *project, const struct cloud_param *query,
                     size_t nquery, const char *body, size_t len, struct submit_reply *out,
                     struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_SUBMIT, .what = "create HSS export task",
                           .method = "POST", .ep = &c->hss, .project = project, .body = body,
                           .body_len = len, .attempts = 4, .out_fd = -1 };
    memset(e, 0, sizeof *e);
    if (nquery >= MAX_QUERY) {
        snprintf(e->msg, sizeof e->msg, "%s: more than %d query parameters", s.what,
                 MAX_QUERY - 1);
        e->err = EINVAL;
        return -EINVAL;
    }
    memcpy(s.query, query, nquery * sizeof *query);
    s.nquery = nquery;
    add_enterprise_project(c, &s, "enterprise_project_id");
    snprintf(s.path, sizeof s.path, "/v5/%s/event/export", project);
    return call_and_parse(c, &s, s.what, submit_hss_fields, out, e, &out->server_ms);
}

int cloud_job_status(struct cloud *c, enum cloud_service svc, const char *project,
                     const char *id, int attempts, struct task_info *out, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_QUERY, .method = "GET", .project = project,
                           .attempts = attempts, .out_fd = -1 };
    char what[128];
    query_what(what, sizeof what, svc, id);
    s.what = what;
    if (svc == SERVICE_HSS) {
        s.ep = &c->hss;
        snprintf(s.path, sizeof s.path, "/v5/%s/event/export-task/%s", project, id);
        add_enterprise_project(c, &s, "enterprise_project_id");
    } else {
        s.ep = &c->waf;
        snprintf(s.path, sizeof s.path, "/v1/%s/waf/async-job/%s", project, id);
        add_enterprise_project(c, &s, "enterpriseProjectId");
    }
    int64_t server_ms = -1;
    int rc = call_and_parse(c, &s, what, svc == SERVICE_HSS ? hss_task_fields : waf_job_fields,
                            out, e, &server_ms);
    if (rc == 0)
        out->server_ms = server_ms;
    /* Services answer an id they do not know with 404, some with 400. */
    if (rc == -EINVAL && e->status == 400)
        rc = -ENOENT, e->err = ENOENT;
    return rc;
}

int cloud_list_event_files(struct cloud *c, const char *project, int page, int pagesize,
                           struct event_page *out, struct cloud_error *e)
{
    char pagebuf[16], sizebuf[16];
    snprintf(pagebuf, sizeof pagebuf, "%d", page);
    snprintf(sizebuf, sizeof sizebuf, "%d", pagesize);
    struct call_spec s = { .call = CALL_LIST, .what = "list WAF event-log files",
                           .method = "GET", .ep = &c->waf, .project = project, .attempts = 3,
                           .out_fd = -1 };
    s.query[s.nquery++] = (struct cloud_param){ "page", pagebuf };
    s.query[s.nquery++] = (struct cloud_param){ "pagesize", sizebuf };
    snprintf(s.path, sizeof s.path, "/v1/%s/waf/event/dump", project);
    memset(out, 0, sizeof *out);
    int rc = call_and_parse(c, &s, s.what, event_page_fields, out, e, NULL);
    if (rc)
        event_page_release(out);
    return rc;
}

/* The whole list: pages of WAF's largest size, each item once.  A page
 * that adds nothing new ends it too: a service that ignores `page` would
 * otherwise send its first page max_items/100 times. */
int cloud_list_all_event_files(struct cloud *c, const char *project, size_t max_items,
                               struct event_list *out, struct cloud_error *e)
{
    enum { PAGE = 100 };
    memset(out, 0, sizeof *out);
    out->total = -1;
    int64_t first_total = -2;
    for (int page = 1; out->n < max_items; page++) {
        struct event_page pg;
        int rc = cloud_list_event_files(c, project, page, PAGE, &pg, e);
        out->calls++;
        if (rc) {
            event_list_release(out);
            return rc;
        }
        if (first_total == -2)
            first_total = pg.total;
        else if (pg.total != first_total)
            out->moved = 1; /* files came or went while paging */
        out->total = pg.total;
        size_t fresh = 0;
        for (size_t i = 0; i < pg.n && out->n < max_items; i++) {
            struct event_file *f = &pg.items[i];
            int dup = 0;
            /* Pages overlap only where the list moved: look back one page. */
            for (size_t k = out->n > 2 * PAGE ? out->n - 2 * PAGE : 0; k < out->n && !dup; k++)
                dup = (f->id[0] && !strcmp(f->id, out->items[k].id)) ||
                      (!f->id[0] && f->obsname[0] && !out->items[k].id[0] &&
                       !strcmp(f->obsname, out->items[k].obsname));
            if (dup) {
                out->moved = 1;
                continue;
            }
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 256;
                struct event_file *items = realloc(out->items, cap * sizeof *items);
                if (!items) {
                    event_page_release(&pg);
                    event_list_release(out);
                    memset(e, 0, sizeof *e);
                    snprintf(e->msg, sizeof e->msg, "list WAF event-log files: out of memory");
                    e->err = ENOMEM;
                    return -ENOMEM;
                }
                out->items = items;
                out->cap = cap;
            }
            out->items[out->n++] = *f;
            f->url = NULL; /* moved */
            fresh++;
        }
        size_t got = pg.n;
        event_page_release(&pg);
        /* A service that caps pages below PAGE still says `total`: a short
         * page ends the list only when no total is given. */
        if (got == 0 || fresh == 0 || (out->total >= 0 && (int64_t)out->n >= out->total) ||
            (out->total < 0 && got < PAGE)) {
            /* Fewer items than the total said: some went while paging. */
            if (out->total >= 0 && (int64_t)out->n < out->total)
                out->moved = 1;
            return 0;
        }
    }
    out->cut = 1;
    return 0;
}

void event_list_release(struct event_list *l)
{
    for (size_t i = 0; l->items && i < l->n; i++)
        free(l->items[i].url);
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

/* Learns a stored file's size without its body: a GET of the first byte
 * (a pre-signed URL is signed for GET, and OBS signs the verb, so HEAD is
 * refused with it), the size from Content-Range, or from Content-Length
 * when storage ignores Range.  An empty object answers 416 (bytes * /0) or
 * 200 with no body. */
int cloud_storage_size(struct cloud *c, const char *url, int64_t *size, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_PROBE, .what = "size of WAF event-log file",
                           .method = "GET", .url = url, .attempts = 3, .out_fd = -1,
                           .probe = 1 };
    *size = -1;
    if (!url_is_fetchable(url)) {
        memset(e, 0, sizeof *e);
        snprintf(e->msg, sizeof e->msg, "%s: the listed URL is not an http(s) URL", s.what);
        e->err = EIO;
        return -EIO;
    }
    struct http_response resp;
    http_response_init(&resp);
    int rc = perform_call(c, &s, &resp, e);
    if (rc && e->status == 416 && resp.total == 0)
        rc = 0; /* nothing at byte 0: an empty file */
    if (rc == 0 && (resp.total < 0 || resp.total > CLOUD_MAX_FILE_BYTES)) {
        snprintf(e->msg, sizeof e->msg, "%s: storage announced %s", s.what,
                 resp.total < 0 ? "no size" : "an implausible size");
        e->err = EIO;
        rc = -EIO;
    }
    if (rc == 0)
        *size = resp.total;
    http_response_release(&resp);
    return rc;
}

/* The shared part of both downloads: resume, restart, exact length. */
static int download(struct cloud *c, struct call_spec *s, const char *name, int fd,
                    uint64_t have, int64_t *total, struct cloud_error *e)
{
    if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
        memset(e, 0, sizeof *e);
        snprintf(e->msg, sizeof e->msg, "download: seek: %s", strerror(errno));
        e->err = errno;
        return -e->err;
    }
    s->out_fd = fd;
    s->resume_from = have;
    s->attempts = 4;
    struct http_response resp;
    http_response_init(&resp);
    int rc = perform_call(c, s, &resp, e);
    if (rc && e->status == 416 && have > 0) {
        /* Nothing left to send: the partial file may already be whole
         * (interrupted between the last byte and the rename). */
        if (resp.total == (int64_t)have) {
            rc = 0;
            resp.written = 0;
        } else if (ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
            log_info("download %s: partial file does not fit the file; starting over", name);
            s->resume_from = 0;
            rc = perform_call(c, s, &resp, e);
        }
    }
    if (resp.restarted) {
        log_info("download %s: the server ignored Range; fetched again from byte 0", name);
        s->resume_from = 0;
    }
    if (total)
        *total = resp.total;
    if (!rc && resp.total >= 0 && s->resume_from + resp.written != (uint64_t)resp.total) {
        snprintf(e->msg, sizeof e->msg, "%s: got %llu of %lld bytes", s->what,
                 (unsigned long long)(s->resume_from + resp.written), (long long)resp.total);
        e->err = EIO;
        rc = -EIO;
    }
    http_response_release(&resp);
    return rc;
}

int cloud_download_url(struct cloud *c, const char *url, int fd, uint64_t have,
                       cloud_progress_fn progress, void *arg, const atomic_int *cancel,
                       int64_t *total, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_DOWNLOAD, .what = "download WAF event-log file",
                           .method = "GET", .url = url, .progress = progress,
                           .progress_arg = arg, .cancel = cancel };
    if (!url_is_fetchable(url)) {
        memset(e, 0, sizeof *e);
        snprintf(e->msg, sizeof e->msg, "%s: the listed URL is not an http(s) URL", s.what);
        e->err = EIO;
        return -EIO;
    }
    return download(c, &s, "of the WAF file", fd, have, total, e);
}

int cloud_download_hss(struct cloud *c, const char *project, const char *file_id, int fd,
                       uint64_t have, cloud_progress_fn progress, void *arg,
                       const atomic_int *cancel, int64_t *total, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_DOWNLOAD, .what = "download HSS export file",
                           .method = "GET", .ep = &c->hss, .project = project,
                           .progress = progress, .progress_arg = arg, .region = c->region,
                           .cancel = cancel };
    snprintf(s.path, sizeof s.path, "/v5/%s/download/%s", project, file_id);
    add_enterprise_project(c, &s, "enterprise_project_id");
    return download(c, &s, file_id, fd, have, total, e);
}

json_t *cloud_stats_json(struct cloud *c) { return http_stats_json(c->http); }
