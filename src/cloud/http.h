/* http: libcurl plumbing shared by every cloud call.
 *
 * One http_client per mount holds the curl share (connection and DNS
 * cache, so keep-alive survives across calls and threads), TLS settings,
 * timeouts and the per-call counters shown in .stats.  Each request uses
 * its own easy handle, so calls from different threads never share one. */
#ifndef HCX_HTTP_H
#define HCX_HTTP_H

#include "strbuf.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

/* "list" is WAF's event-log file list; downloads count storage and HSS alike;
 * "probe" is the one-byte storage GET that learns a file's size. */
enum http_call { CALL_SUBMIT, CALL_QUERY, CALL_DOWNLOAD, CALL_TOKEN, CALL_LIST, CALL_PROBE,
                 CALL_KINDS };

struct http_client;

int http_client_create(const char *cafile, long request_timeout_s, struct http_client **out,
                       char **why);
void http_client_destroy(struct http_client *);

struct http_request {
    enum http_call call;
    const char *method;
    const char *url;                 /* fully encoded */
    struct curl_slist *headers;
    const char *body;                /* NULL for none */
    size_t body_len;
    /* Download mode: a 200/206 body goes to out_fd instead of memory. */
    int out_fd;
    uint64_t resume_from;            /* sends Range: bytes=N- when > 0 */
    void (*progress)(void *arg, uint64_t done, int64_t total);
    void *progress_arg;
    const atomic_int *cancel;        /* set to abort a transfer (read from curl callbacks) */
    const atomic_int *cancel_also;   /* a second one: this transfer's own (NULL: none) */
    /* Sends Range: bytes=0-0 and stops at the first byte of a 200/206 body:
     * the answer's headers tell the file's size (resp->total) without the
     * body, whether or not the server honours Range. */
    int probe;
};

struct http_response {
    long status;                     /* 0 when no HTTP answer */
    CURLcode curl_code;
    int not_sent;                    /* failed before the request left */
    int untrusted;                   /* TLS peer verification failed: permanent */
    struct strbuf body;              /* API bodies and error bodies */
    double retry_after;              /* seconds, -1 when absent */
    char *subject_token;             /* X-Subject-Token, IAM only */
    int64_t total;                   /* full size of a download, -1 unknown */
    time_t server_date;              /* the Date header (the cloud's clock), 0 when none */
    uint64_t written;                /* bytes written to out_fd this call */
    int restarted;                   /* Range ignored: out_fd rewritten from 0 */
    char error[CURL_ERROR_SIZE];
};

void http_response_init(struct http_response *);
void http_response_release(struct http_response *);

/* Performs one attempt.  Returns 0 when an HTTP answer came (any status),
 * else -errno (ETIMEDOUT, ECONNREFUSED, EIO, ECANCELED) with resp->error. */
int http_perform(struct http_client *, const struct http_request *, struct http_response *);

void http_note_retry(struct http_client *, enum http_call);
/* Counters per call kind and status, retries and bytes, as JSON. */
json_t *http_stats_json(struct http_client *);
const char *http_call_name(enum http_call);

#endif
