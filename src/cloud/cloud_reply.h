/* cloud_reply: what the cloud answers, read safely, and the messages of
 * struct cloud_error.  The module below every call of cloud/ (cloud_call,
 * cloud_waf, cloud_hss and cloud.c use it); it calls nothing of cloud/ and
 * no I/O: the parsers of cloud.h (cloud_parse_*) and their field rules,
 * the HTTP error text (cloud_describe_error), and cloud_fail.  Internal to
 * src/cloud. */
#ifndef HCX_CLOUD_REPLY_H
#define HCX_CLOUD_REPLY_H

#include "cloud.h"

#include <jansson.h>
#include <stddef.h>

/* Sets e->err and e->msg (formatted, cut to fit, one line: why_tidy) and
 * returns -err; the rest of *e is left as it is. */
int cloud_fail(struct cloud_error *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies an untrusted server text into a log-safe message. */
void cloud_copy_printable(char *dst, size_t cap, const char *src);

/* The fields of one kind of reply: 0, or -1 when a required one is missing
 * or unusable; *problem then says which (for the message). */
typedef int (*cloud_reply_fields)(json_t *j, void *out, const char **problem);
int cloud_submit_waf_fields(json_t *j, void *arg, const char **problem);
int cloud_submit_hss_fields(json_t *j, void *arg, const char **problem);
int cloud_waf_job_fields(json_t *j, void *arg, const char **problem);
int cloud_hss_task_fields(json_t *j, void *arg, const char **problem);
int cloud_event_page_fields(json_t *j, void *arg, const char **problem);

/* The body must be a JSON object whose fields check out; anything else is
 * -EIO with e->err and e->msg naming the call (what). */
int cloud_parse_reply(const char *body, size_t len, const char *what, cloud_reply_fields fields,
                      void *out, struct cloud_error *e);

/* "query WAF job <id>" / "query HSS export task <id>", id made printable. */
void cloud_query_what(char *buf, size_t cap, enum cloud_service svc, const char *task_id);

/* An http(s) URL of a sane length without spaces or control characters. */
int cloud_url_is_fetchable(const char *u);

#endif
