/* cloud_reply: reading the cloud's answers (cloud.h's cloud_parse_*, the
 * field rules of each reply, cloud_describe_error) and setting the
 * messages of struct cloud_error (cloud_fail).  Calls nothing else of
 * cloud/; no I/O. */
#include "cloud_reply.h"
#include "why.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cloud_fail(struct cloud_error *e, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    why_tidy(e->msg);
    e->err = err;
    return -err;
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
void cloud_copy_printable(char *dst, size_t cap, const char *src)
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
    cloud_copy_printable(safe_code, sizeof safe_code, code);
    cloud_copy_printable(safe_msg, sizeof safe_msg, msg);
    snprintf(e->msg, sizeof e->msg, "%s: HTTP %ld%s%s%s%s", what, status, code ? " " : "",
             code ? safe_code : "", msg ? ": " : "", msg ? safe_msg : "");
    json_decref(j);
}


/* Copies an optional string field, refusing ones that do not fit. */
int cloud_copy_field(json_t *obj, const char *key, char *dst, size_t cap, int required)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        dst[0] = '\0';
        return required ? -1 : 0;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= cap)
        return -1;
    cloud_copy_printable(dst, cap, s);
    return 0;
}

/* The fields of one kind of reply: 0, or -1 when a required one is missing
 * or unusable; *problem then says which (for the message). */
typedef int (*cloud_reply_fields)(json_t *j, void *out, const char **problem);

/* The part submit and query share: the body must be a JSON object whose
 * fields check out.  Anything else is EIO with a message naming the call. */
int cloud_parse_reply(const char *body, size_t len, const char *what, cloud_reply_fields fields,
                       void *out, struct cloud_error *e)
{
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", len, 0, &jerr);
    const char *problem = NULL;
    int rc = -EIO;
    if (!json_is_object(j)) {
        /* jansson quotes the offending input in its text: keep it printable. */
        char safe[sizeof jerr.text];
        cloud_copy_printable(safe, sizeof safe, jerr.text);
        cloud_fail(e, EIO, "%s: malformed answer from the cloud (%s)", what,
                   j ? "not an object" : safe);
    } else if (fields(j, out, &problem) < 0) {
        cloud_fail(e, EIO, "%s: the answer has no %s", what, problem);
    } else {
        rc = 0;
    }
    json_decref(j);
    return rc;
}

const char *cloud_service_name(enum cloud_service svc) { return svc == SERVICE_HSS ? "hss" : "waf"; }

int cloud_submit_waf_fields(json_t *j, void *arg, const char **problem)
{
    struct submit_reply *out = arg;
    *problem = "usable job_id";
    if (cloud_copy_field(j, "job_id", out->job_id, sizeof out->job_id, 1) < 0 ||
        !cloud_id_is_safe(out->job_id, 64) ||
        cloud_copy_field(j, "status", out->status, sizeof out->status, 0) < 0)
        return -1;
    if (cloud_copy_field(j, "message", out->message, sizeof out->message, 0) < 0)
        out->message[0] = '\0';
    return 0;
}

int cloud_submit_hss_fields(json_t *j, void *arg, const char **problem)
{
    struct submit_reply *out = arg;
    *problem = "usable task_id";
    memset(out, 0, sizeof *out);
    if (cloud_copy_field(j, "task_id", out->job_id, sizeof out->job_id, 1) < 0 ||
        !cloud_id_is_safe(out->job_id, 64))
        return -1;
    snprintf(out->status, sizeof out->status, "running");
    return 0;
}

/* Maps a service's state word onto running/success/failure; a word the
 * client does not know reads running (and is shown as the cloud's own). */
void cloud_map_status(struct task_info *t, const char *word)
{
    cloud_copy_printable(t->cloud_status, sizeof t->cloud_status, word);
    const char *state = "running";
    if (strcasecmp(word, "success") == 0)
        state = "success";
    else if (strcasecmp(word, "failure") == 0 || strcasecmp(word, "failed") == 0)
        state = "failure";
    snprintf(t->task_status, sizeof t->task_status, "%s", state);
}

int cloud_waf_job_fields(json_t *j, void *arg, const char **problem)
{
    struct task_info *out = arg;
    char word[32];
    *problem = "usable status";
    memset(out, 0, sizeof *out);
    if (cloud_copy_field(j, "status", word, sizeof word, 1) < 0 || !word[0])
        return -1;
    if (cloud_copy_field(j, "message", out->message, sizeof out->message, 0) < 0)
        out->message[0] = '\0'; /* an unusable message is dropped, not fatal */
    cloud_map_status(out, word);
    return 0;
}

int cloud_hss_task_fields(json_t *j, void *arg, const char **problem)
{
    struct task_info *out = arg;
    char word[32];
    *problem = "valid task_status/file_id";
    memset(out, 0, sizeof *out);
    if (cloud_copy_field(j, "task_status", word, sizeof word, 1) < 0 || !word[0] ||
        cloud_copy_field(j, "task_name", out->task_name, sizeof out->task_name, 0) < 0 ||
        cloud_copy_field(j, "file_id", out->file_id, sizeof out->file_id, 0) < 0 ||
        cloud_copy_field(j, "file_name", out->file_name, sizeof out->file_name, 0) < 0 ||
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
               ? cloud_parse_reply(body, len, "create HSS export task", cloud_submit_hss_fields, out, e)
               : cloud_parse_reply(body, len, "submit WAF export job", cloud_submit_waf_fields, out, e);
}

void cloud_query_what(char *buf, size_t cap, enum cloud_service svc, const char *task_id)
{
    char safe[80];
    cloud_copy_printable(safe, sizeof safe, task_id);
    snprintf(buf, cap, svc == SERVICE_HSS ? "query HSS export task %s" : "query WAF job %s",
             safe);
}

int cloud_parse_query_reply(enum cloud_service svc, const char *body, size_t len,
                            const char *task_id, struct task_info *out, struct cloud_error *e)
{
    char what[128];
    cloud_query_what(what, sizeof what, svc, task_id);
    return cloud_parse_reply(body, len, what, svc == SERVICE_HSS ? cloud_hss_task_fields : cloud_waf_job_fields,
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

int cloud_url_is_fetchable(const char *u)
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
        cloud_copy_field(o, "id", f->id, sizeof f->id, 0) < 0 ||
        cloud_copy_field(o, "filename", f->filename, sizeof f->filename, 0) < 0 ||
        cloud_copy_field(o, "obsname", f->obsname, sizeof f->obsname, 0) < 0)
        return -1;
    if (cloud_copy_field(o, "description", f->description, sizeof f->description, 0) < 0)
        f->description[0] = '\0';
    f->start = int_field(o, "start");
    f->end = int_field(o, "end");
    f->timestamp = int_field(o, "timestamp");
    f->total = int_field(o, "total");
    const char *url = json_string_value(json_object_get(o, "url"));
    if (url && cloud_url_is_fetchable(url) && !(f->url = strdup(url)))
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

int cloud_event_page_fields(json_t *j, void *arg, const char **problem)
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
        if (rc == 0) {
            out->n++;
        } else {
            free(out->items[out->n].url), out->items[out->n].url = NULL;
            out->skipped++;
        }
    }
    return 0;
}

int cloud_parse_event_page(const char *body, size_t len, struct event_page *out,
                           struct cloud_error *e)
{
    memset(out, 0, sizeof *out);
    int rc = cloud_parse_reply(body, len, "list WAF event-log files", cloud_event_page_fields, out, e);
    if (rc)
        event_page_release(out);
    return rc;
}

