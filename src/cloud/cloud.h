/* cloud: the calls of cloud-api.md's two export flows (WAF: submit, async
 * job, event-log list, pre-signed download; HSS: export, task, download;
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
#include "service.h"

#include <jansson.h>
#include <stdatomic.h>
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

/* How a call failed.  Not a `char **why` message (util/why.h): callers
 * decide on the parts (retry after retry_after, refresh a URL on a 403,
 * forget a job on ENOENT) as well as show the text, and the poller and the
 * fetchers fill one per attempt on their own stack, so it is a value that
 * needs no release.  Its message follows the rules of util's messages: one
 * line (why_tidy: no control character), set through cloud_fail in
 * cloud_reply.c, cut to fit. */
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
    char job_id[65];         /* WAF job_id, or HSS task_id */
    char status[16];
    char message[256];
    int64_t server_ms;       /* the cloud's clock when it answered (Date), -1 unknown */
};

/* A name/value pair of a query string (decoded; encoded when sent). */
struct cloud_param {
    const char *name;
    const char *value;
};

/* Returns 0 or -errno (EINVAL 400, EACCES 401/403, EAGAIN 429, EIO 5xx or a
 * malformed answer, ETIMEDOUT no answer).
 * WAF: POST /v1/{project}/waf/event/job/export with the JSON body.
 * HSS: POST /v5/{project}/event/export with the filter as query parameters
 * (query, nquery) and the columns as body (NULL: none, default columns). */
int cloud_submit_waf(struct cloud *, const char *project, const char *body, size_t len,
                     struct submit_reply *out, struct cloud_error *e);
int cloud_submit_hss(struct cloud *, const char *project, const struct cloud_param *query,
                     size_t nquery, const char *body, size_t len, struct submit_reply *out,
                     struct cloud_error *e);

struct task_info {
    char task_status[16];    /* running, success, failure (mapped) */
    char cloud_status[32];   /* the cloud's own word, printable */
    char task_name[129];
    char file_id[65];
    char file_name[256];
    char message[256];       /* WAF's message, "" when none */
    int64_t server_ms;       /* the cloud's clock when it answered (Date), -1 unknown */
};

/* Sets t's task_status (running, success, failure) and cloud_status from
 * a service's word (RUNNING/SUCCESS/FAILED, running/success/failure);
 * a word the client does not know reads running. */
void cloud_map_status(struct task_info *t, const char *word);

/* A job's state: WAF async-job (SUCCESS/FAILED/RUNNING; any other word is
 * running) or HSS export task.  attempts: 1 for the poller (it schedules
 * its own retries), more for interactive callers.  -ENOENT when the
 * service does not know the id (404, or 400 for an id it refuses). */
int cloud_job_status(struct cloud *, enum cloud_service, const char *project, const char *id,
                     int attempts, struct task_info *out, struct cloud_error *e);

/* One item of WAF's event-log file list (cloud-api.md §4): every field is
 * optional ("" or -1 when absent). */
struct event_file {
    char id[65];
    char filename[256];
    char obsname[512];
    char description[256];
    int64_t start, end, timestamp, total;   /* ms since the epoch; total: events */
    char *url;                              /* pre-signed, malloc'd; NULL when absent */
};
struct event_page {
    struct event_file *items;
    size_t n;
    size_t skipped;                         /* listed items whose fields do not fit */
    int64_t total;                          /* files in the whole list, -1 unknown */
};
/* GET /v1/{project}/waf/event/dump?page=&pagesize= (page from 1). */
int cloud_list_event_files(struct cloud *, const char *project, int page, int pagesize,
                           struct event_page *out, struct cloud_error *e);
void event_page_release(struct event_page *);

/* The whole list, newest first, in pages of 100 (WAF's largest), at most
 * max_items files (the newest: cut is set when there were more).  An item
 * listed twice (the list moved while paging) is kept once.  moved: the
 * pages did not agree on the total or overlapped, so files came or went
 * while paging and one may have shifted from a page to the next, past the
 * reader: a file missing from items may still be listed.  Without moved,
 * a file missing from items is not in the list (or past max_items). */
struct event_list {
    struct event_file *items;
    size_t n, cap;
    size_t skipped;         /* listed but unusable (event_page): they count
                             * against total, so they do not look like a
                             * list that moved */
    int64_t total;          /* as the last page said; -1 unknown */
    int moved, cut;
    int calls;              /* list calls made */
};
int cloud_list_all_event_files(struct cloud *, const char *project, size_t max_items,
                               struct event_list *out, struct cloud_error *e);
void event_list_release(struct event_list *);

/* Sizes above this are a hostile answer, not a file. */
#define CLOUD_MAX_FILE_BYTES ((int64_t)1 << 46)
/* A file's exact size from storage before reading it: a GET of its first
 * byte through the pre-signed URL (no credential header), the size from
 * Content-Range (or Content-Length when storage ignores Range).  An expired
 * URL is -EACCES with e->status 403, a gone file -ENOENT (404). */
int cloud_storage_size(struct cloud *, const char *url, int64_t *size, struct cloud_error *e);

/* Downloads append to fd from offset have (Range when have > 0; restart
 * from 0 with ftruncate when the server ignores Range).  *total is the
 * file's full size when known.
 * cloud_download_url: a pre-signed storage URL, fetched exactly as given
 * and with NO credential header of any kind; an expired URL is -EACCES
 * with e->status 403.  cloud_download_hss: GET /v5/{project}/download/{id}.
 * cancel (or NULL): setting it aborts the transfer at once (-ECANCELED). */
typedef void (*cloud_progress_fn)(void *, uint64_t done, int64_t total);
int cloud_download_url(struct cloud *, const char *url, int fd, uint64_t have,
                       cloud_progress_fn, void *arg, const atomic_int *cancel, int64_t *total,
                       struct cloud_error *e);
int cloud_download_hss(struct cloud *, const char *project, const char *file_id, int fd,
                       uint64_t have, cloud_progress_fn, void *arg, const atomic_int *cancel,
                       int64_t *total, struct cloud_error *e);

json_t *cloud_stats_json(struct cloud *);

/* The reply parsers behind cloud_submit and cloud_query, callable on a
 * buffer (the fuzz targets use them).  body need not be NUL-terminated.
 * They return 0 with *out filled, or -EIO with e->err = EIO and e->msg
 * (printable, one line); they change nothing else in *e. */
int cloud_parse_submit_reply(enum cloud_service, const char *body, size_t len,
                             struct submit_reply *out, struct cloud_error *e);
/* task_id only names the task in e->msg. */
int cloud_parse_query_reply(enum cloud_service, const char *body, size_t len,
                            const char *task_id, struct task_info *out, struct cloud_error *e);
int cloud_parse_event_page(const char *body, size_t len, struct event_page *out,
                           struct cloud_error *e);
/* e->msg for an HTTP error answer: "<what>: HTTP <status> [<error_code>][: <error_msg>]"
 * from the cloud's error body when it has those fields (printable, cut to
 * fit); nothing else in *e is changed. */
void cloud_describe_error(const char *what, long status, const char *body, size_t len,
                          struct cloud_error *e);

/* Characters allowed in ids used as file names and URL parts. */
int cloud_id_is_safe(const char *id, size_t max_len);

#endif
