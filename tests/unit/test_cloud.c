/* Checks the cloud's reply parsers on buffers (cloud_parse_submit_reply,
 * cloud_parse_query_reply, cloud_parse_event_page, cloud_describe_error)
 * for both services: the spec's example
 * answers, the fields that must be refused, and that every message stays
 * one line without the server's control characters. */
#include "cloud.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>


#include "check.h"

static struct cloud_error fresh(void)
{
    struct cloud_error e;
    memset(&e, 0, sizeof e);
    e.retry_after = -1;
    return e;
}

static int one_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int submit(const char *body, struct submit_reply *out, struct cloud_error *e)
{
    *e = fresh();
    return cloud_parse_submit_reply(SERVICE_WAF, body, strlen(body), out, e);
}

static int query(const char *body, struct task_info *out, struct cloud_error *e)
{
    *e = fresh();
    return cloud_parse_query_reply(SERVICE_HSS, body, strlen(body), "t1", out, e);
}

static void test_submit(void)
{
    struct submit_reply r;
    struct cloud_error e;
    /* cloud-api.md §2 */
    CHECK(submit("{ \"status\": \"RUNNING\", \"message\": \"Checking domain name configuration\",\n"
                 "  \"job_id\": \"f67a449d22634193a7edd4edb5b29ee5\" }", &r, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(r.job_id, "f67a449d22634193a7edd4edb5b29ee5"), "job_id %s", r.job_id);
    CHECK(!strcmp(r.status, "RUNNING") && !strcmp(r.message, "Checking domain name configuration"),
          "status %s message %s", r.status, r.message);
    CHECK(e.err == 0 && e.msg[0] == '\0', "error set on success");

    const char *bad[] = {
        "{\"status\":\"RUNNING\"}",                /* no job_id */
        "{\"job_id\":null}",
        "{\"job_id\":\"../etc\"}",                 /* not a safe id */
        "{\"job_id\":\"..\"}",
        "{\"job_id\":\"a/b\"}",
        "{\"job_id\":12}",
        "{\"job_id\":\"" "0123456789012345678901234567890123456789012345678901234567890123456789"
        "\"}",                                     /* longer than 64 */
        "{\"job_id\":\"ok\",\"status\":[1]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(submit(bad[i], &r, &e) == -EIO && e.err == EIO, "accepted %s", bad[i]);
        CHECK(!strcmp(e.msg, "submit WAF export job: the answer has no usable job_id"), "msg %s",
              e.msg);
    }
    /* An unusable message is dropped, not fatal. */
    CHECK(submit("{\"job_id\":\"j1\",\"message\":{}}", &r, &e) == 0 && r.message[0] == '\0',
          "message object: %s", e.msg);
    /* Server text is made printable. */
    CHECK(submit("{\"job_id\":\"j1\",\"message\":\"a\\nb\\u001bc\"}", &r, &e) == 0 &&
          !strcmp(r.message, "a b c"), "message '%s'", r.message);
}

static void test_malformed(void)
{
    struct submit_reply r;
    struct cloud_error e = fresh();
    CHECK(cloud_parse_submit_reply(SERVICE_WAF, NULL, 0, &r, &e) == -EIO && e.err == EIO, "empty body");
    CHECK(strstr(e.msg, "submit WAF export job: malformed answer from the cloud (") == e.msg, "msg %s",
          e.msg);
    CHECK(submit("[\"job_id\"]", &r, &e) == -EIO, "array accepted");
    CHECK(strstr(e.msg, "(not an object)") != NULL, "msg %s", e.msg);
    /* jansson quotes the bad input in its message: it must not carry
     * control characters into a log line. */
    CHECK(submit("{\"job_id\":1\n\x1b[31m}", &r, &e) == -EIO, "bad JSON accepted");
    CHECK(one_line(e.msg), "msg not one line: %s", e.msg);
    /* Not NUL-terminated: only len bytes are read. */
    const char body[] = "{\"job_id\":\"j2\"}XXXX";
    e = fresh();
    CHECK(cloud_parse_submit_reply(SERVICE_WAF, body, sizeof body - 5, &r, &e) == 0 && !strcmp(r.job_id, "j2"),
          "%s", e.msg);
}

static void test_query(void)
{
    struct task_info t;
    struct cloud_error e;
    /* cloud-api.md §3 */
    CHECK(query("{ \"task_id\": \"41d200ee-6f9c-4855-9936-e50b94561544\",\n"
                "  \"task_name\": \"event_host_17156456152_export_task\",\n"
                "  \"task_status\": \"success\",\n"
                "  \"file_id\": \"0d014482-320c-4756-813a-a14b15651f6e7f\",\n"
                "  \"file_name\": \"hss-event-zh-156414651.zip\" }", &t, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(t.task_status, "success") && !strcmp(t.file_id, "0d014482-320c-4756-813a-a14b15651f6e7f") &&
          !strcmp(t.file_name, "hss-event-zh-156414651.zip") &&
          !strcmp(t.task_name, "event_host_17156456152_export_task"), "fields");
    CHECK(query("{\"task_status\":\"running\"}", &t, &e) == 0 && t.file_id[0] == '\0', "running");
    CHECK(query("{\"task_status\":\"failure\",\"file_id\":null}", &t, &e) == 0, "failure");

    const char *bad[] = {
        "{}",
        "{\"task_status\":\"success\"}",                       /* no file_id */
        "{\"task_status\":\"success\",\"file_id\":\"../x\"}",
        "{\"task_status\":\"running\",\"file_name\":7}",
        "{\"task_status\":7}",
        "{\"task_status\":\"\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(query(bad[i], &t, &e) == -EIO && e.err == EIO, "accepted %s", bad[i]);
        CHECK(!strcmp(e.msg, "query HSS export task t1: the answer has no valid task_status/file_id") ||
              !strcmp(e.msg, "query HSS export task t1: the answer has no file_id for a successful task"),
              "msg %s", e.msg);
    }
    e = fresh();
    CHECK(cloud_parse_query_reply(SERVICE_HSS, "x", 1, "id\n\x1b", &t, &e) == -EIO, "bad JSON");
    CHECK(strstr(e.msg, "query HSS export task id  : malformed answer") == e.msg && one_line(e.msg),
          "msg %s", e.msg);
}

/* A word the client does not know reads running and is kept as the
 * cloud's own (filesystem.md: status). */
static void test_status_words(void)
{
    struct task_info t;
    struct cloud_error e;
    CHECK(query("{\"task_status\":\"done\"}", &t, &e) == 0 &&
          !strcmp(t.task_status, "running") && !strcmp(t.cloud_status, "done"), "unknown word");
    const char *waf[][2] = { { "RUNNING", "running" }, { "SUCCESS", "success" },
                             { "FAILED", "failure" }, { "PENDING", "running" } };
    for (size_t i = 0; i < sizeof waf / sizeof *waf; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"status\":\"%s\",\"message\":\"m\",\"job_id\":\"j\"}",
                 waf[i][0]);
        e = fresh();
        CHECK(cloud_parse_query_reply(SERVICE_WAF, body, strlen(body), "j", &t, &e) == 0 &&
              !strcmp(t.task_status, waf[i][1]) && !strcmp(t.cloud_status, waf[i][0]),
              "WAF %s -> %s (%s)", waf[i][0], t.task_status, e.msg);
    }
    e = fresh();
    CHECK(cloud_parse_query_reply(SERVICE_WAF, "{\"job_id\":\"j\"}", 14, "j", &t, &e) == -EIO &&
          !strcmp(e.msg, "query WAF job j: the answer has no usable status"), "msg %s", e.msg);
    /* The cloud's word is made printable and bounded. */
    const char *odd = "{\"status\":\"A\\u001bB\"}";
    e = fresh();
    CHECK(cloud_parse_query_reply(SERVICE_WAF, odd, strlen(odd), "j", &t, &e) == 0 &&
          !strcmp(t.cloud_status, "A B") && !strcmp(t.task_status, "running"), "odd word");
}

static void test_hss_submit(void)
{
    struct submit_reply r;
    struct cloud_error e = fresh();
    const char *ok = "{ \"task_id\": \"41d200ee-6f9c-4855-9936-e50b94561544\", "
                     "\"record_total_num\": 120 }";
    CHECK(cloud_parse_submit_reply(SERVICE_HSS, ok, strlen(ok), &r, &e) == 0 &&
          !strcmp(r.job_id, "41d200ee-6f9c-4855-9936-e50b94561544") &&
          !strcmp(r.status, "running"), "hss submit %s", e.msg);
    const char *bad = "{\"job_id\":\"x\"}";
    e = fresh();
    CHECK(cloud_parse_submit_reply(SERVICE_HSS, bad, strlen(bad), &r, &e) == -EIO &&
          !strcmp(e.msg, "create HSS export task: the answer has no usable task_id"), "msg %s",
          e.msg);
}

static void test_event_page(void)
{
    struct event_page pg;
    struct cloud_error e = fresh();
    const char *body =
        "{\"total\": 3, \"items\": ["
        "{\"id\":\"f1\",\"filename\":\"waf-events-1.csv\",\"obsname\":\"o/1\","
        "\"start\":1,\"end\":2,\"timestamp\":1764547200000,\"total\":5,"
        "\"url\":\"https://obs.example.com/b/o1?Expires=1&Signature=x\",\"urltimestamp\":3},"
        "{\"filename\":7},"                                        /* skipped: mistyped */
        "{\"id\":\"f3\",\"url\":\"file:///etc/passwd\"},"           /* no fetchable url */
        "{}]}";
    CHECK(cloud_parse_event_page(body, strlen(body), &pg, &e) == 0, "%s", e.msg);
    CHECK(pg.total == 3 && pg.n == 3 && pg.skipped == 1, "total %lld n %zu skipped %zu",
          (long long)pg.total, pg.n, pg.skipped);
    CHECK(!strcmp(pg.items[0].id, "f1") && !strcmp(pg.items[0].filename, "waf-events-1.csv") &&
          pg.items[0].timestamp == 1764547200000LL && pg.items[0].start == 1 &&
          pg.items[0].url && strstr(pg.items[0].url, "https://obs.example.com/") == pg.items[0].url,
          "item 0");
    CHECK(!strcmp(pg.items[1].id, "f3") && pg.items[1].url == NULL, "file URL refused");
    CHECK(pg.items[2].id[0] == '\0' && pg.items[2].timestamp == -1 && !pg.items[2].url,
          "empty item");
    event_page_release(&pg);
    e = fresh();
    CHECK(cloud_parse_event_page("{\"items\":{}}", 12, &pg, &e) == -EIO && pg.n == 0 &&
          !pg.items, "items object");
    e = fresh();
    CHECK(cloud_parse_event_page("{}", 2, &pg, &e) == 0 && pg.n == 0 && pg.total == -1,
          "empty list");
    event_page_release(&pg);
}

static void test_errors(void)
{
    struct cloud_error e = fresh();
    const char *b = "{\"error_code\":\"APIGW.0301\",\"error_msg\":\"Incorrect IAM\\nauth\"}";
    cloud_describe_error("query export task", 401, b, strlen(b), &e);
    CHECK(!strcmp(e.msg, "query export task: HTTP 401 APIGW.0301: Incorrect IAM auth"), "msg %s",
          e.msg);
    CHECK(e.err == 0 && e.status == 0, "describe changed err/status");
    cloud_describe_error("submit export job", 502, "<html>", 6, &e);
    CHECK(!strcmp(e.msg, "submit export job: HTTP 502"), "msg %s", e.msg);
    cloud_describe_error("download archive", 404, NULL, 0, &e);
    CHECK(!strcmp(e.msg, "download archive: HTTP 404"), "msg %s", e.msg);
    char big[2048];
    int n = snprintf(big, sizeof big, "{\"error_code\":\"C\",\"error_msg\":\"");
    memset(big + n, 'm', 1500);
    strcpy(big + n + 1500, "\"}");
    cloud_describe_error("x", 400, big, strlen(big), &e);
    CHECK(strlen(e.msg) < sizeof e.msg && strstr(e.msg, "x: HTTP 400 C: mmm") == e.msg,
          "long msg %s", e.msg);
}

int main(void)
{
    test_submit();
    test_malformed();
    test_query();
    test_status_words();
    test_hss_submit();
    test_event_page();
    test_errors();
    printf("cloud: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
