/* Checks the cloud's reply parsers on buffers (cloud_parse_submit_reply,
 * cloud_parse_query_reply, cloud_describe_error): the spec's example
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
    return cloud_parse_submit_reply(body, strlen(body), out, e);
}

static int query(const char *body, struct task_info *out, struct cloud_error *e)
{
    *e = fresh();
    return cloud_parse_query_reply(body, strlen(body), "t1", out, e);
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
        CHECK(!strcmp(e.msg, "submit export job: the answer has no usable job_id"), "msg %s",
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
    CHECK(cloud_parse_submit_reply(NULL, 0, &r, &e) == -EIO && e.err == EIO, "empty body");
    CHECK(strstr(e.msg, "submit export job: malformed answer from the cloud (") == e.msg, "msg %s",
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
    CHECK(cloud_parse_submit_reply(body, sizeof body - 5, &r, &e) == 0 && !strcmp(r.job_id, "j2"),
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
        "{\"task_status\":\"done\"}",
        "{\"task_status\":\"success\"}",                       /* no file_id */
        "{\"task_status\":\"success\",\"file_id\":\"../x\"}",
        "{\"task_status\":\"running\",\"file_name\":7}",
        "{\"task_status\":\"RUNNING\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(query(bad[i], &t, &e) == -EIO && e.err == EIO, "accepted %s", bad[i]);
        CHECK(!strcmp(e.msg, "query export task t1: the answer has no valid task_status/file_id"),
              "msg %s", e.msg);
    }
    e = fresh();
    CHECK(cloud_parse_query_reply("x", 1, "id\n\x1b", &t, &e) == -EIO, "bad JSON");
    CHECK(strstr(e.msg, "query export task id  : malformed answer") == e.msg && one_line(e.msg),
          "msg %s", e.msg);
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
    test_errors();
    printf("cloud: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
