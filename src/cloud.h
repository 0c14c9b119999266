/* cloud: the four cloud calls of cloud-api.md (submit, query, download,
 * IAM token via auth), with the retry policy and the errno mapping of the
 * filesystem contract.
 *
 * Retry policy: GETs are retried on 429 (honouring Retry-After), 5xx and
 * transport failures, with bounded exponential backoff.  The submit POST is
 * not idempotent: it is retried only when the cloud cannot have acted on it
 * (a 429 from the gateway, or a connection that failed before sending). */
#ifndef HCX_CLOUD_H
#define HCX_CLOUD_H

#include "creds.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct cloud;

struct cloud_config {
    const char *waf_base, *hss_base, *iam_base;  /* e.g. http://127.0.0.1:8080 */
    const char *enterprise_project_id;           /* NULL: not sent */
    const char *region;                          /* NULL unless -o region=: HSS download's region header */
    const char *cafile;
    long request_timeout_s;
};

struct cloud_error {
    int err;               /* positive errno */
    long status;           /* HTTP status, 0 when none */
    double retry_after;    /* seconds from Retry-After, -1 when absent */
    char msg[512];         /* for logs and error: lines; never a secret */
};

/* Takes over creds. */
int cloud_create(const struct cloud_config *, struct creds *creds, struct cloud **out, char **why);
void cloud_destroy(struct cloud *);
const char *cloud_auth_description(const struct cloud *);
void cloud_stop(struct cloud *);      /* aborts waits and transfers (unmount) */

struct submit_reply {
    char job_id[65];
    char status[16];
    char message[256];
};

/* Returns 0 or -errno (EINVAL 400, EACCES 401/403, EAGAIN 429, EIO 5xx or a
 * malformed answer, ETIMEDOUT no answer). */
int cloud_submit(struct cloud *, const char *project, const char *body, size_t len,
                 struct submit_reply *out, struct cloud_error *e);

struct task_info {
    char task_status[16];    /* running, success, failure */
    char task_name[129];
    char file_id[65];
    char file_name[256];
};

/* attempts: 1 for the poller (it schedules its own retries), more for
 * interactive callers.  -ENOENT for an unknown task. */
int cloud_query(struct cloud *, const char *project, const char *task_id, int attempts,
                struct task_info *out, struct cloud_error *e);

/* Appends the file to fd from offset have (Range when have > 0; restarts
 * from 0 with ftruncate when the server ignores Range).  *total is the
 * archive's full size when known. */
int cloud_download(struct cloud *, const char *project, const char *file_id, int fd,
                   uint64_t have, void (*progress)(void *, uint64_t, int64_t), void *arg,
                   int64_t *total, struct cloud_error *e);

json_t *cloud_stats_json(struct cloud *);

/* The reply parsers behind cloud_submit and cloud_query, callable on a
 * buffer (the fuzz targets use them).  body need not be NUL-terminated.
 * They return 0 with *out filled, or -EIO with e->err = EIO and e->msg
 * (printable, one line); they change nothing else in *e. */
int cloud_parse_submit_reply(const char *body, size_t len, struct submit_reply *out,
                             struct cloud_error *e);
/* task_id only names the task in e->msg. */
int cloud_parse_query_reply(const char *body, size_t len, const char *task_id,
                            struct task_info *out, struct cloud_error *e);
/* e->msg for an HTTP error answer: "<what>: HTTP <status> [<error_code>][: <error_msg>]"
 * from the cloud's error body when it has those fields (printable, cut to
 * fit); nothing else in *e is changed. */
void cloud_describe_error(const char *what, long status, const char *body, size_t len,
                          struct cloud_error *e);

/* Characters allowed in ids used as file names and URL parts. */
int cloud_id_is_safe(const char *id, size_t max_len);

#endif
