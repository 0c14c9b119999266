/* Reproduces every vector made by the official Huawei Cloud SDK signer,
 * and checks that changing any input changes the signature; the query
 * order of the SDKs; and the headers auth_apply() sends and signs
 * (X-Project-Id on project-level AK/SK calls), and which credentials are
 * renewable after a 401. */
#include "auth.h"
#include "sign.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* The canonical query line (the third) of a GET / with these parameters. */
static char *canonical_query(const struct sign_param *q, size_t n)
{
    const struct sign_param h[] = { { "host", "h" }, { "x-sdk-date", "20260101T000000Z" } };
    char *names = NULL;
    char *canon = sign_canonical_request("GET", "/", q, n, h, 2, "", 0, &names);
    free(names);
    if (!canon)
        return NULL;
    char *line = strchr(canon, '\n');
    line = line ? strchr(line + 1, '\n') : NULL;
    char *end = line ? strchr(line + 1, '\n') : NULL;
    char *out = end ? strndup(line + 1, (size_t)(end - line - 1)) : NULL;
    free(canon);
    return out;
}

/* The SDKs sort by decoded name, then decoded value, and encode after. */
static void test_query_order(void)
{
    const struct sign_param q1[] = { { "a/", "1" }, { "a-", "2" } };
    char *got = canonical_query(q1, 2);
    CHECK(streq(got, "a-=2&a%2F=1"), "decoded name order: %s", got ? got : "(null)");
    free(got);
    const struct sign_param q2[] = { { "k", "/" }, { "k", "-" }, { "k", "" } };
    got = canonical_query(q2, 3);
    CHECK(streq(got, "k=&k=-&k=%2F"), "decoded value order: %s", got ? got : "(null)");
    free(got);
    const struct sign_param q3[] = { { "\xC3\xA9", "x" }, { "~", "y" }, { "Z", "z" } };
    got = canonical_query(q3, 3);
    CHECK(streq(got, "Z=z&~=y&%C3%A9=x"), "bytewise order: %s", got ? got : "(null)");
    free(got);
    const struct sign_param q4[] = { { "enterprise_project_id", "all_granted_eps" } };
    got = canonical_query(q4, 1);
    CHECK(streq(got, "enterprise_project_id=all_granted_eps"), "one parameter: %s",
          got ? got : "(null)");
    free(got);
}

/* Finds "Name: value" in a header list (name case-insensitively). */
static const char *header_value(const struct curl_slist *l, const char *name)
{
    size_t n = strlen(name);
    for (; l; l = l->next)
        if (strncasecmp(l->data, name, n) == 0 && l->data[n] == ':')
            return l->data + n + 1 + (l->data[n + 1] == ' ');
    return NULL;
}

static int count_headers(const struct curl_slist *l, const char *name)
{
    int c = 0;
    size_t n = strlen(name);
    for (; l; l = l->next)
        c += strncasecmp(l->data, name, n) == 0 && l->data[n] == ':';
    return c;
}

static struct auth *make_auth(enum creds_kind kind, const char *security_token)
{
    struct creds c = { .kind = kind };
    if (kind == CREDS_AKSK) {
        c.ak = strdup("AKIDTEST");
        c.sk = strdup("SKTEST");
        c.security_token = security_token ? strdup(security_token) : NULL;
    } else if (kind == CREDS_TOKEN_FILE) {
        c.token_file = strdup("/nonexistent/token");
    } else if (kind == CREDS_PASSWORD) {
        c.user = strdup("alice");
        c.password = strdup("pw");
        c.domain = strdup("acme");
    }
    c.source = strdup("test");
    struct auth *a = NULL;
    if (auth_create(&c, NULL, "http://127.0.0.1:9", &a) != 0)
        abort();
    return a;
}

/* Applies AK/SK auth and checks that the headers sent are exactly the ones
 * signed, and that the signature verifies over them. */
static void check_aksk(const char *project, const char *security_token, const char *body)
{
    struct auth *a = make_auth(CREDS_AKSK, security_token);
    const struct sign_param query[] = { { "enterprise_project_id", "0" } };
    struct auth_target t = {
        .project = project, .method = body ? "POST" : "GET", .host = "waf.cn-north-4.myhuaweicloud.com",
        .path = "/v1/0a1b2c3d4e5f60718293a4b5c6d7e8f9/waf/event/job/export", .query = query,
        .nquery = 1, .content_type = body ? "application/json;charset=utf8" : NULL,
        .body = body, .body_len = body ? strlen(body) : 0,
    };
    struct curl_slist *h = NULL;
    char *why = NULL;
    int rc = auth_apply(a, &t, &h, &why);
    CHECK(rc == 0, "auth_apply: %d %s", rc, why ? why : "");
    free(why);
    const char *pid = header_value(h, "X-Project-Id");
    const char *authz = header_value(h, "Authorization");
    const char *sh = authz ? strstr(authz, "SignedHeaders=") : NULL;
    char signed_names[256] = "";
    if (sh)
        sscanf(sh, "SignedHeaders=%255[^,]", signed_names);
    if (project) {
        CHECK(streq(pid, project), "X-Project-Id: %s", pid ? pid : "(none)");
        CHECK(count_headers(h, "X-Project-Id") == 1, "one X-Project-Id");
    } else {
        CHECK(pid == NULL, "X-Project-Id without a project");
    }
    /* SignedHeaders names exactly the headers sent, sorted, lower case. */
    char want[256];
    snprintf(want, sizeof want, "%shost%s;x-sdk-date%s", body ? "content-type;" : "",
             project ? ";x-project-id" : "", security_token ? ";x-security-token" : "");
    CHECK(streq(signed_names, want), "SignedHeaders=%s, want %s", signed_names, want);
    int sent = 0;
    for (struct curl_slist *l = h; l; l = l->next)
        sent += strncasecmp(l->data, "Authorization:", 14) != 0;
    CHECK(sent == 2 + (body != NULL) + (project != NULL) + (security_token != NULL),
          "%d headers sent besides Authorization", sent);
    /* The signature verifies over the headers as sent. */
    struct sign_param hs[8];
    size_t n = 0;
    const char *names[] = { "Host", "X-Sdk-Date", "Content-Type", "X-Project-Id",
                            "X-Security-Token" };
    for (size_t i = 0; i < 5; i++)
        if (header_value(h, names[i]))
            hs[n++] = (struct sign_param){ names[i], header_value(h, names[i]) };
    char *again = sign_authorization("AKIDTEST", "SKTEST", t.method, t.path, query, 1, hs, n,
                                     body, body ? strlen(body) : 0);
    CHECK(streq(again, authz), "signature over the sent headers:\n  %s\n  %s",
          again ? again : "(null)", authz ? authz : "(null)");
    /* And a different project id changes it (it is signed). */
    if (project) {
        for (size_t i = 0; i < n; i++)
            if (!strcmp(hs[i].name, "X-Project-Id"))
                hs[i].value = "ffffffffffffffffffffffffffffffff";
        char *other = sign_authorization("AKIDTEST", "SKTEST", t.method, t.path, query, 1, hs, n,
                                         body, body ? strlen(body) : 0);
        CHECK(other && !streq(other, authz), "X-Project-Id is not covered by the signature");
        free(other);
    }
    free(again);
    curl_slist_free_all(h);
    auth_destroy(a);
}

static void test_auth_headers(void)
{
    check_aksk("0a1b2c3d4e5f60718293a4b5c6d7e8f9", NULL, NULL);
    check_aksk("0a1b2c3d4e5f60718293a4b5c6d7e8f9", NULL, "{\"a\":1}");
    check_aksk("0a1b2c3d4e5f60718293a4b5c6d7e8f9", "SECTOKEN", "{}");
    check_aksk(NULL, NULL, NULL);
    check_aksk(NULL, "SECTOKEN", "{}");

    /* Header injection through the project, host or content type. */
    struct auth *a = make_auth(CREDS_AKSK, NULL);
    const char *bad_projects[] = { "p\r\nX-Evil: 1", "p\n", "" };
    for (size_t i = 0; i < 3; i++) {
        struct auth_target t = { .project = bad_projects[i], .method = "GET", .host = "h",
                                 .path = "/" };
        struct curl_slist *h = NULL;
        char *why = NULL;
        CHECK(auth_apply(a, &t, &h, &why) == -EINVAL && !h && why, "bad project %zu", i);
        curl_slist_free_all(h);
        free(why);
    }
    struct auth_target t = { .project = "p", .method = "GET", .host = "h\r\nX: y", .path = "/" };
    struct curl_slist *h = NULL;
    char *why = NULL;
    CHECK(auth_apply(a, &t, &h, &why) == -EINVAL && !h && why, "bad host");
    curl_slist_free_all(h);
    auth_destroy(a);

    /* No credentials: EACCES, and nothing signed. */
    a = make_auth(CREDS_NONE, NULL);
    t = (struct auth_target){ .project = "p", .method = "GET", .host = "h", .path = "/" };
    h = NULL;
    CHECK(auth_apply(a, &t, &h, &why) == -EACCES && why && strstr(why, "no credentials"),
          "no credentials");
    free(why);
    CHECK(!header_value(h, "Authorization") && !header_value(h, "X-Auth-Token"), "no auth header");
    curl_slist_free_all(h);
    auth_destroy(a);
}

static void test_renewable(void)
{
    struct auth *a = make_auth(CREDS_AKSK, NULL);
    CHECK(auth_renewable(a) == 0, "AK/SK is not renewable");
    auth_destroy(a);
    a = make_auth(CREDS_AKSK, "SECTOKEN");
    CHECK(auth_renewable(a) == 0, "temporary AK/SK is not renewable");
    auth_destroy(a);
    a = make_auth(CREDS_TOKEN_FILE, NULL);
    CHECK(auth_renewable(a) == 0, "a token file is not renewable");
    auth_destroy(a);
    a = make_auth(CREDS_NONE, NULL);
    CHECK(auth_renewable(a) == 0, "no credentials are not renewable");
    auth_destroy(a);
    a = make_auth(CREDS_PASSWORD, NULL);
    CHECK(auth_renewable(a) == 1, "IAM password login is renewable");
    auth_destroy(a);
    CHECK(auth_renewable(NULL) == 0, "NULL");
}

static char *sign_vector(json_t *v, const char *override_body)
{
    json_t *q = json_object_get(v, "query"), *h = json_object_get(v, "headers");
    struct sign_param query[16], headers[16];
    size_t nq = 0, nh = 0;
    const char *k;
    json_t *val;
    json_object_foreach(q, k, val) { query[nq++] = (struct sign_param){ k, json_string_value(val) }; }
    json_object_foreach(h, k, val) { headers[nh++] = (struct sign_param){ k, json_string_value(val) }; }
    const char *body = override_body ? override_body : json_string_value(json_object_get(v, "body"));
    return sign_authorization(json_string_value(json_object_get(v, "ak")),
                              json_string_value(json_object_get(v, "sk")),
                              json_string_value(json_object_get(v, "method")),
                              json_string_value(json_object_get(v, "path")), query, nq, headers,
                              nh, body, strlen(body));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS.json\n", argv[0]);
        return 2;
    }
    json_error_t err;
    json_t *vectors = json_load_file(argv[1], 0, &err);
    if (!json_is_array(vectors) || json_array_size(vectors) == 0) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], err.text);
        return 2;
    }
    size_t i;
    json_t *v;
    json_array_foreach(vectors, i, v) {
        const char *want = json_string_value(json_object_get(v, "authorization"));
        char *got = sign_vector(v, NULL);
        if (!got || strcmp(got, want) != 0) {
            fprintf(stderr, "vector %zu: want %s\n            got  %s\n", i, want,
                    got ? got : "(null)");
            failures++;
        }
        char *tampered = sign_vector(v, "{}x");
        if (!tampered || strcmp(tampered, want) == 0) {
            fprintf(stderr, "vector %zu: a changed body kept the signature\n", i);
            failures++;
        }
        free(got);
        free(tampered);
    }
    char date[17];
    sign_format_date(1795342500, date); /* 2026-11-22T10:15:00Z */
    if (strcmp(date, "20261122T101500Z") != 0) {
        fprintf(stderr, "sign_format_date: got %s\n", date);
        failures++;
    }
    char *enc = sign_uri_encode("a b/ü~");
    if (!enc || strcmp(enc, "a%20b%2F%C3%BC~") != 0) {
        fprintf(stderr, "sign_uri_encode: got %s\n", enc ? enc : "(null)");
        failures++;
    }
    free(enc);
    test_query_order();
    test_auth_headers();
    test_renewable();
    printf("%zu vectors, %d checks, %d failures\n", json_array_size(vectors), checks, failures);
    json_decref(vectors);
    return failures ? 1 : 0;
}
