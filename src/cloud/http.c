/* http: one curl attempt at a time, with a shared connection cache. */
#include "http.h"
#include "why.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define STATUS_SLOTS 600

struct http_client {
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    char *cafile;
    long request_timeout_s;
    atomic_ulong calls[CALL_KINDS][STATUS_SLOTS]; /* slot 0: no HTTP answer */
    atomic_ulong retries[CALL_KINDS];
    atomic_ullong bytes_downloaded;
};

static const char *const call_names[CALL_KINDS] = { "submit", "query", "download", "token",
                                                        "list", "probe" };

static void global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        log_error("curl_global_init failed");
}

const char *http_call_name(enum http_call c) { return call_names[c]; }

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access a, void *arg)
{
    (void)h;
    (void)a;
    struct http_client *c = arg;
    pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    (void)h;
    struct http_client *c = arg;
    pthread_mutex_unlock(&c->share_locks[data]);
}

int http_client_create(const char *cafile, long request_timeout_s, struct http_client **out,
                       char **why)
{
    static pthread_once_t global_once = PTHREAD_ONCE_INIT;
    pthread_once(&global_once, global_init);

    struct http_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_locks[i], NULL);
    c->request_timeout_s = request_timeout_s;
    if (cafile && !(c->cafile = strdup(cafile)))
        goto nomem;
    c->share = curl_share_init();
    if (!c->share)
        goto nomem;
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    if (curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK)
        log_warn("libcurl cannot share connections; each call opens its own");
    *out = c;
    return 0;
nomem:
    http_client_destroy(c);
    set_why(why, "out of memory creating the HTTP client");
    return -ENOMEM;
}

void http_client_destroy(struct http_client *c)
{
    if (!c)
        return;
    if (c->share)
        curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_locks[i]);
    free(c->cafile);
    free(c);
}

void http_response_init(struct http_response *r)
{
    memset(r, 0, sizeof *r);
    r->retry_after = -1;
    r->total = -1;
}

void http_response_release(struct http_response *r)
{
    strbuf_release(&r->body);
    free(r->subject_token);
    r->subject_token = NULL;
}

struct transfer {
    const struct http_request *req;
    struct http_response *resp;
    CURL *easy;
    int write_failed;
    int started;
    uint64_t unflushed; /* download bytes written since writeback was started */
    int status;         /* of the response whose headers arrive */
    size_t header_bytes; /* of all responses of this transfer */
    int probe_done;     /* a probe stopped at its body on purpose */
};

/* Downloads start the disk's writeback every this many bytes, so that the
 * fsync before the archive is committed finds little left to write. */
#define WRITEBACK_STEP ((uint64_t)16 << 20)

/* API answers carry a few hundred bytes of headers; anything near curl's own
 * 100 KiB per-header limit is hostile, and curl reports that limit as "out of
 * memory", which would reach the user as ENOMEM. */
#define MAX_HEADER_BYTES ((size_t)64 << 10)

static int is_download_status(long status) { return status == 200 || status == 206; }

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct transfer *t = arg;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (t->req->probe && is_download_status(status)) {
        t->probe_done = 1;
        return 0; /* the headers said it all; makes curl stop (CURLE_WRITE_ERROR) */
    }
    if (t->req->out_fd >= 0 && is_download_status(status)) {
        if (!t->started && status == 200 && t->req->resume_from > 0) {
            /* The server ignored Range and sends everything from byte 0. */
            if (ftruncate(t->req->out_fd, 0) < 0 || lseek(t->req->out_fd, 0, SEEK_SET) < 0) {
                t->write_failed = errno;
                return 0;
            }
            t->resp->restarted = 1;
        }
        t->started = 1;
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(t->req->out_fd, data + off, len - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                t->write_failed = errno;
                return 0; /* makes curl fail with CURLE_WRITE_ERROR */
            }
            off += (size_t)w;
        }
        t->resp->written += len;
        t->unflushed += len;
        if (t->unflushed >= WRITEBACK_STEP) {
            t->unflushed = 0;
            /* Asynchronous; a failure here only means a longer fsync later. */
            (void)sync_file_range(t->req->out_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
        return len;
    }
    /* API answers are small; refuse absurd ones rather than grow forever. */
    if (t->resp->body.len + len > 4u << 20) {
        t->write_failed = EFBIG;
        return 0;
    }
    strbuf_append(&t->resp->body, data, len);
    return t->resp->body.failed ? 0 : len;
}

static int header_is(const char *line, size_t len, const char *name, const char **value,
                     size_t *value_len)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    const char *v = line + n + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    *value = v;
    *value_len = (size_t)(end - v);
    return 1;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    struct transfer *t = arg;
    size_t len = size * n;
    const char *v;
    size_t vlen;
    char tmp[64];
    t->header_bytes += len;
    if (t->header_bytes > MAX_HEADER_BYTES) {
        t->write_failed = E2BIG;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (e.g. after 100-continue): forget earlier headers. */
        t->resp->retry_after = -1;
        t->resp->total = -1;
        const char *sp = memchr(line, ' ', len);
        t->status = sp && (size_t)(sp - line) + 4 <= len ? atoi(sp + 1) : 0;
    } else if (t->status == 200 && header_is(line, len, "Content-Length", &v, &vlen)
               && vlen > 0 && vlen < 20 && strspn(v, "0123456789") >= vlen) {
        /* A whole-file answer announces the size here (a 206 in Content-Range). */
        memcpy(tmp, v, vlen);
        tmp[vlen] = '\0';
        t->resp->total = strtoll(tmp, NULL, 10);
    } else if (header_is(line, len, "Retry-After", &v, &vlen) && vlen < sizeof tmp) {
        memcpy(tmp, v, vlen);
        tmp[vlen] = '\0';
        char *end;
        double secs = strtod(tmp, &end);
        if (end != tmp && *end == '\0' && secs >= 0)
            t->resp->retry_after = secs;
        else
            t->resp->retry_after = 1; /* an HTTP date: treat as "soon" */
    } else if (header_is(line, len, "Date", &v, &vlen) && vlen < sizeof tmp) {
        memcpy(tmp, v, vlen);
        tmp[vlen] = '\0';
        time_t d = curl_getdate(tmp, NULL);
        t->resp->server_date = d > 0 ? d : 0;
    } else if (header_is(line, len, "X-Subject-Token", &v, &vlen) && vlen < 32768) {
        free(t->resp->subject_token);
        t->resp->subject_token = strndup(v, vlen);
    } else if (header_is(line, len, "Content-Range", &v, &vlen) && vlen < sizeof tmp) {
        memcpy(tmp, v, vlen);
        tmp[vlen] = '\0';
        const char *slash = strchr(tmp, '/');
        if (slash && slash[1] != '*')
            t->resp->total = strtoll(slash + 1, NULL, 10);
    }
    return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    struct transfer *t = arg;
    if (t->req->cancel && atomic_load(t->req->cancel))
        return 1;
    if (t->req->cancel_also && atomic_load(t->req->cancel_also))
        return 1;
    if (t->req->progress && t->resp->written)
        t->req->progress(t->req->progress_arg,
                         (t->resp->restarted ? 0 : t->req->resume_from) + t->resp->written,
                         t->resp->total);
    return 0;
}

static int errno_for(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ECONNREFUSED;
    case CURLE_ABORTED_BY_CALLBACK:
        return ECANCELED;
    case CURLE_OUT_OF_MEMORY:
        return ENOMEM;
    default:
        return EIO;
    }
}

int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp)
{
    CURL *easy = curl_easy_init();
    if (!easy) {
        snprintf(resp->error, sizeof resp->error, "curl_easy_init failed");
        return -ENOMEM;
    }
    struct transfer t = { .req = req, .resp = resp, .easy = easy };
    char range[48];

    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_SHARE, c->share);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->error);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "hcexportfs/" HCX_VERSION);
    if (c->cafile)
        curl_easy_setopt(easy, CURLOPT_CAINFO, c->cafile);
    if (req->out_fd >= 0) {
        /* Downloads may be long: give up only when the transfer stalls. */
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, c->request_timeout_s);
        curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 512L * 1024);
        if (req->resume_from > 0) {
            snprintf(range, sizeof range, "%llu-", (unsigned long long)req->resume_from);
            curl_easy_setopt(easy, CURLOPT_RANGE, range);
        }
    } else {
        curl_easy_setopt(easy, CURLOPT_TIMEOUT, c->request_timeout_s);
        if (req->probe)
            curl_easy_setopt(easy, CURLOPT_RANGE, "0-0");
    }
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }

    CURLcode rc = curl_easy_perform(easy);
    if (rc == CURLE_WRITE_ERROR && t.probe_done)
        rc = CURLE_OK;
    resp->curl_code = rc;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->status);
    if (resp->status == 200 && req->out_fd >= 0) {
        curl_off_t cl = -1;
        curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        resp->total = cl >= 0 ? (int64_t)cl : -1;
    }
    long sent = 0;
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
    resp->not_sent = (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                      rc == CURLE_COULDNT_RESOLVE_PROXY) ||
                     (rc != CURLE_OK && sent == 0 && resp->status == 0);
    curl_easy_cleanup(easy);

    long slot = resp->status > 0 && resp->status < STATUS_SLOTS ? resp->status : 0;
    atomic_fetch_add(&c->calls[req->call][slot], 1);
    if (req->out_fd >= 0)
        atomic_fetch_add(&c->bytes_downloaded, resp->written);

    if (t.write_failed) {
        snprintf(resp->error, sizeof resp->error, "%s",
                 t.write_failed == EFBIG  ? "answer too large"
                 : t.write_failed == E2BIG ? "answer headers too large (over 64 KiB)"
                                           : strerror(t.write_failed));
        return -(t.write_failed == EFBIG || t.write_failed == E2BIG ? EIO : t.write_failed);
    }
    if (rc == CURLE_OUT_OF_MEMORY && resp->status > 0) {
        /* curl's answer to a header line over its 100 KiB limit (the status
         * line had arrived): a hostile answer, not a shortage of memory. */
        snprintf(resp->error, sizeof resp->error,
                 "answer headers too large (HTTP %ld; a header line over curl's limit)",
                 resp->status);
        return -EIO;
    }
    if (rc != CURLE_OK) {
        if (!resp->error[0])
            snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(rc));
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
            rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH) {
            /* Retrying cannot help, and the user needs to know where to look. */
            resp->untrusted = 1;
            size_t n = strlen(resp->error);
            snprintf(resp->error + n, sizeof resp->error - n,
                     " (TLS certificate of %s not trusted; -o cafile=FILE adds a CA)",
                     req->url ? req->url : "the server");
        }
        return -errno_for(rc);
    }
    return 0;
}

void http_note_retry(struct http_client *c, enum http_call call)
{
    atomic_fetch_add(&c->retries[call], 1);
}

json_t *http_stats_json(struct http_client *c)
{
    json_t *calls = json_object(), *retries = json_object();
    for (int k = 0; k < CALL_KINDS; k++) {
        json_t *by_status = json_object();
        for (int s = 0; s < STATUS_SLOTS; s++) {
            unsigned long n = atomic_load(&c->calls[k][s]);
            if (!n)
                continue;
            char key[16];
            snprintf(key, sizeof key, "%s", s ? "" : "no_answer");
            if (s)
                snprintf(key, sizeof key, "%d", s);
            json_object_set_new(by_status, key, json_integer((json_int_t)n));
        }
        json_object_set_new(calls, call_names[k], by_status);
        json_object_set_new(retries, call_names[k],
                            json_integer((json_int_t)atomic_load(&c->retries[k])));
    }
    return json_pack("{s:o, s:o, s:I}", "calls", calls, "retries", retries, "bytes_downloaded",
                     (json_int_t)atomic_load(&c->bytes_downloaded));
}
