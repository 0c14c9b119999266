/* fuzz_cloud: the cloud's answers (src/cloud/cloud_reply.c): the submit
 * reply, the query reply and error bodies, as cloud_submit_*,
 * cloud_job_status and cloud_perform (src/cloud/cloud_call.c) parse them.
 *
 * Input: byte 0 picks the parser (0 submit, 1 query, 2 error body), bytes
 * 1-2 the HTTP status of an error body, the rest is the body (not
 * NUL-terminated, as it comes from the network).  Checks: e->msg is one
 * line without control characters; a reply accepted has a safe job_id / a known
 * task_status, printable fields, and a file_id when it says success; a
 * refused one has err = EIO and a message. */
#include "fuzz.h"
#include "cloud.h"

#include <errno.h>
#include <string.h>

static void check_field(const char *s, size_t cap, const char *name)
{
    FUZZ_CHECK(memchr(s, '\0', cap) != NULL, "%s not NUL-terminated", name);
    FUZZ_CHECK(fuzz_no_control(s), "%s holds a control character", name);
}

static void check_error(int rc, const struct cloud_error *e)
{
    FUZZ_CHECK(rc == -EIO && e->err == EIO, "refused with rc %d err %d", rc, e->err);
    FUZZ_CHECK(e->msg[0] != '\0', "refused without a message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const char *body = (const char *)data + 3;
    size_t len = size - 3;
    struct cloud_error e;
    memset(&e, 0, sizeof e);
    e.retry_after = -1;
    enum cloud_service svc = data[1] & 1 ? SERVICE_HSS : SERVICE_WAF;
    switch (data[0] % 4) {
    case 0: {
        struct submit_reply out;
        memset(&out, 0x55, sizeof out); /* no help from zeroed memory */
        int rc = cloud_parse_submit_reply(svc, body, len, &out, &e);
        if (rc == 0) {
            FUZZ_CHECK(e.err == 0 && e.msg[0] == '\0', "accepted but an error was set");
            FUZZ_CHECK(cloud_id_is_safe(out.job_id, 64), "accepted an unsafe job_id");
            check_field(out.status, sizeof out.status, "status");
            check_field(out.message, sizeof out.message, "message");
        } else {
            check_error(rc, &e);
        }
        break;
    }
    case 1: {
        struct task_info out;
        memset(&out, 0x55, sizeof out);
        int rc = cloud_parse_query_reply(svc, body, len, "task\n\x1b[1m", &out, &e);
        if (rc == 0) {
            FUZZ_CHECK(e.err == 0 && e.msg[0] == '\0', "accepted but an error was set");
            FUZZ_CHECK(!strcmp(out.task_status, "running") || !strcmp(out.task_status, "success") ||
                       !strcmp(out.task_status, "failure"), "task_status '%s'", out.task_status);
            check_field(out.cloud_status, sizeof out.cloud_status, "cloud_status");
            check_field(out.task_name, sizeof out.task_name, "task_name");
            check_field(out.file_id, sizeof out.file_id, "file_id");
            check_field(out.file_name, sizeof out.file_name, "file_name");
            FUZZ_CHECK(!out.file_id[0] || cloud_id_is_safe(out.file_id, 64), "unsafe file_id");
            /* HSS names the file in the task; WAF's is found in its list. */
            FUZZ_CHECK(svc == SERVICE_WAF || strcmp(out.task_status, "success") ||
                       out.file_id[0], "HSS success without a file_id");
            FUZZ_CHECK(svc == SERVICE_HSS || !out.file_id[0], "a WAF status gave a file_id");
        } else {
            check_error(rc, &e);
        }
        break;
    }
    case 2: {
        struct event_page pg;
        int rc = cloud_parse_event_page(body, len, &pg, &e);
        if (rc == 0) {
            FUZZ_CHECK(e.err == 0 && e.msg[0] == '\0', "accepted but an error was set");
            for (size_t i = 0; i < pg.n; i++) {
                check_field(pg.items[i].id, sizeof pg.items[i].id, "id");
                check_field(pg.items[i].filename, sizeof pg.items[i].filename, "filename");
                check_field(pg.items[i].obsname, sizeof pg.items[i].obsname, "obsname");
                FUZZ_CHECK(!pg.items[i].url || (!strncmp(pg.items[i].url, "http", 4) &&
                                                fuzz_no_control(pg.items[i].url)),
                           "unfetchable url kept");
            }
            event_page_release(&pg);
        } else {
            FUZZ_CHECK(pg.n == 0 && !pg.items, "failed parse left items");
            check_error(rc, &e);
        }
        break;
    }
    default: {
        long status = 100 + (long)((data[1] << 8 | data[2]) % 500);
        cloud_describe_error("fuzz call", status, body, len, &e);
        FUZZ_CHECK(e.err == 0, "describing an error set err");
        break;
    }
    }
    FUZZ_CHECK(memchr(e.msg, '\0', sizeof e.msg) != NULL, "msg not NUL-terminated");
    FUZZ_CHECK(fuzz_no_control(e.msg), "msg holds a control character: '%s'", e.msg);
    return 0;
}
