/* cloud_call: one request to the cloud with its retry policy (cloud.h),
 * the state of a mount's cloud (struct cloud) and the download both
 * services share.  Calls cloud_reply (error texts), auth, http and sign;
 * called by cloud.c, cloud_waf and cloud_hss.  Internal to src/cloud. */
#ifndef HCX_CLOUD_CALL_H
#define HCX_CLOUD_CALL_H

#include "auth.h"
#include "cloud.h"
#include "cloud_reply.h"
#include "http.h"

#include <pthread.h>

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

/* Runs a call with its retry policy.  On return 0, resp holds a 2xx
 * answer; else -errno with *e filled (status, retry_after, message). */
int cloud_perform(struct cloud *c, const struct call_spec *s, struct http_response *resp,
                  struct cloud_error *e);

/* Runs a call whose 2xx answer is a JSON object; *server_ms (when given)
 * is the cloud's clock from the answer's Date header, -1 without one. */
int cloud_call_and_parse(struct cloud *c, const struct call_spec *s, const char *what,
                         cloud_reply_fields fields, void *out, struct cloud_error *e,
                         int64_t *server_ms);

/* Adds the mount's enterprise project to a call that takes it, spelled as
 * that call spells it (HSS: enterprise_project_id; WAF's async-job call:
 * enterpriseProjectId; WAF's submit and list take none). */
void cloud_add_enterprise_project(const struct cloud *c, struct call_spec *s, const char *name);

/* The shared part of both downloads (cloud.h): appends to fd from have,
 * restarts when the server ignores Range, checks the exact length.
 * name: the file, for log lines. */
int cloud_download(struct cloud *c, struct call_spec *s, const char *name, int fd,
                   uint64_t have, int64_t *total, struct cloud_error *e);

#endif
