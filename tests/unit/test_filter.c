/* Checks the filter rules and the incremental incomplete/complete/invalid
 * decision, including writes split at every byte of valid filters. */
#include "filter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "check.h"

static const char *result_name(enum filter_parse_result r)
{
    return r == FILTER_INCOMPLETE ? "INCOMPLETE" : r == FILTER_COMPLETE ? "COMPLETE" : "INVALID";
}

/* A message is sent back as one line: it must be printable ASCII. */
static int one_printable_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Parses buf and checks the result; for INVALID, that why contains
 * want_why (when given) and is one printable line.  Returns the body. */
static char *expect_n(int line, const char *buf, size_t len, enum filter_parse_result want,
                      const char *want_why)
{
    json_t *obj = (json_t *)1;
    char *body = (char *)1, *why = (char *)1;
    enum filter_parse_result r = filter_parse(buf, len, &obj, &body, &why);
    checks++;
    if (r != want) {
        failures++;
        fprintf(stderr, "line %d: %.*s: got %s (%s), want %s\n", line, (int)(len > 200 ? 200 : len),
                buf, result_name(r), why ? why : "", result_name(want));
    }
    if (r == FILTER_COMPLETE) {
        CHECK(json_is_object(obj) && body && !why, "line %d: outputs of COMPLETE", line);
    } else {
        CHECK(obj == NULL && body == NULL, "line %d: outputs left set", line);
        if (r == FILTER_INCOMPLETE)
            CHECK(why == NULL, "line %d: why set for INCOMPLETE", line);
        else
            CHECK(why && one_printable_line(why), "line %d: why '%s'", line, why ? why : "(null)");
        if (r == FILTER_INVALID && want_why)
            CHECK(why && strstr(why, want_why), "line %d: why '%s' lacks '%s'", line,
                  why ? why : "(null)", want_why);
    }
    json_decref(obj);
    free(why);
    if (r != FILTER_COMPLETE) {
        free(body);
        return NULL;
    }
    return body;
}

#define EXPECT(buf, want, why) free(expect_n(__LINE__, (buf), strlen(buf), (want), (why)))
#define EXPECT_N(buf, len, want, why) free(expect_n(__LINE__, (buf), (len), (want), (why)))

/* Every prefix that ends before the closing brace is INCOMPLETE, every one
 * from there on (trailing whitespace included) COMPLETE: what a writer
 * splitting the filter at any byte (dd bs=1, tee, pipes) sees. */
static void split_everywhere(int line, const char *text)
{
    size_t len = strlen(text);
    size_t complete_at = (size_t)(strrchr(text, '}') - text) + 1;
    for (size_t i = 0; i <= len; i++) {
        json_t *obj = NULL;
        char *body = NULL, *why = NULL;
        enum filter_parse_result want = i < complete_at ? FILTER_INCOMPLETE : FILTER_COMPLETE;
        enum filter_parse_result r = filter_parse(text, i, &obj, &body, &why);
        checks++;
        if (r != want) {
            failures++;
            fprintf(stderr, "line %d: prefix of %zu bytes: %s (%s), want %s\n", line, i,
                    result_name(r), why ? why : "", result_name(want));
        }
        json_decref(obj);
        free(body);
        free(why);
    }
}

static void test_blank_and_prefixes(void)
{
    EXPECT("", FILTER_INCOMPLETE, NULL);
    EXPECT("  \n", FILTER_INCOMPLETE, NULL);
    EXPECT(" \t\r\n ", FILTER_INCOMPLETE, NULL);
    EXPECT("{", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"recent\": \"to", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"recent\":\"today\",", FILTER_INCOMPLETE, NULL);
    /* Cut inside escapes, UTF-8, numbers and literals: jansson alone would
     * call these errors. */
    EXPECT("{\"url\":\"\\", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"url\":\"\\u00", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"url\":\"\\uD83D", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"url\":\"\xC3", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"url\":\"\xF0\x9F\x98", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[tr", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[nul", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[-", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[1.", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[1e", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[1e+", FILTER_INCOMPLETE, NULL);
    EXPECT("{\"ids\":[12", FILTER_INCOMPLETE, NULL);
}

static void test_split_writes(void)
{
    split_everywhere(__LINE__, "{\"recent\":\"today\",\"dump_columns\":[\"id\",\"time\",\"attack\"]}");
    split_everywhere(__LINE__, "{\"recent\":\"today\",\"dump_columns\":[\"id\"]}\n");
    split_everywhere(__LINE__,
                     "\n  {\r\n\t\"recent\" : \"1week\" ,\n \"dump_columns\" : [ \"url\" , \"sip\" ] ,"
                     " \"ids\" : [ ] , \"url\" : \"/a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\","
                     " \"sip\":\"\xC3\xBC\xE2\x82\xAC\xF0\x9F\x98\x80\xED\x9F\xBF\" }  \n\n");
    split_everywhere(__LINE__,
                     "{\"recent\":\"1month\",\"dump_columns\":[\"id\",\"time\",\"policyid\",\"sip\","
                     "\"host\",\"host_id\",\"url\",\"attack\",\"rule\",\"action\",\"payload\","
                     "\"payload_location\",\"request_line\",\"status\",\"region\",\"process_time\","
                     "\"response_time\",\"response_size\",\"cookie\",\"request_body\"],"
                     "\"ids\":[\"a\"],\"nids\":[\"b\"],\"attacks\":[\"sqli\",\"xss\"],\"nattacks\":[],"
                     "\"rules\":[\"1\"],\"nrules\":[],\"sips\":[\"1.2.3.4\"],\"nsips\":[],"
                     "\"urls\":[\"/x\"],\"nurls\":[],\"actions\":[\"block\"],\"nactions\":[\"log\"],"
                     "\"hosts\":[\"a.example\"],\"instances\":[\"i\"],\"sip\":\"10.\",\"url\":\"/\"}");
}

static void test_body(void)
{
    const char *in = " { \"recent\" : \"today\" ,\n \"dump_columns\" : [ \"time\", \"id\" ],"
                     " \"url\": \"/\\u00e9\" , \"hosts\":[] }\n";
    char *body = expect_n(__LINE__, in, strlen(in), FILTER_COMPLETE, NULL);
    /* Compact, keys in the order written, non-ASCII as UTF-8. */
    CHECK(body && !strcmp(body, "{\"recent\":\"today\",\"dump_columns\":[\"time\",\"id\"],"
                                "\"url\":\"/\xC3\xA9\",\"hosts\":[]}"),
          "body %s", body ? body : "(null)");
    free(body);

    /* Duplicate keys: the last one wins, as with the cloud's parser; only
     * that one is sent. */
    const char *dup = "{\"recent\":\"bogus\",\"recent\":\"today\",\"dump_columns\":[\"id\"]}";
    body = expect_n(__LINE__, dup, strlen(dup), FILTER_COMPLETE, NULL);
    CHECK(body && !strcmp(body, "{\"recent\":\"today\",\"dump_columns\":[\"id\"]}"), "dup %s",
          body ? body : "(null)");
    free(body);

    /* Every output pointer is optional. */
    const char *ok = "{\"recent\":\"today\",\"dump_columns\":[\"id\"]}";
    CHECK(filter_parse(ok, strlen(ok), NULL, NULL, NULL) == FILTER_COMPLETE, "NULL outputs");
    CHECK(filter_parse("[", 1, NULL, NULL, NULL) == FILTER_INVALID, "NULL outputs, invalid");
    json_t *obj = NULL;
    CHECK(filter_parse(ok, strlen(ok), &obj, NULL, NULL) == FILTER_COMPLETE && obj, "obj only");
    json_decref(obj);
}

static void test_bad_json(void)
{
    EXPECT("{\"a\":1}{", FILTER_INVALID, "end of file expected");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\"]}{", FILTER_INVALID, "invalid JSON at line 1");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\"]} x", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\"]}\n\n}", FILTER_INVALID, "line 3");
    EXPECT("12", FILTER_INVALID, "not a number");
    EXPECT("-", FILTER_INVALID, "not a number");
    EXPECT("  [", FILTER_INVALID, "not an array");
    EXPECT("\"x", FILTER_INVALID, "not a string");
    EXPECT("t", FILTER_INVALID, "JSON object");
    EXPECT("x", FILTER_INVALID, "invalid JSON at line 1 column 1");
    EXPECT("\n\n  x", FILTER_INVALID, "invalid JSON at line 3 column 3");
    EXPECT("\xEF\xBB\xBF{}", FILTER_INVALID, "JSON object");
    EXPECT("{,", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"recent\" \"today\"", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"recent\":\"today\",}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"recent\":\"today\"]", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[\"a\",]", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[\"a\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[tx", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[01", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[1.e", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[-a", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"ids\":[1x", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\\x", FILTER_INVALID, "invalid escape");
    EXPECT("{\"url\":\"\\u12G", FILTER_INVALID, "invalid escape");
    EXPECT("{\"url\":\"a\nb\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"a\tb\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xC0\x80\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xED\xA0\x80\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xF4\x90\x80\x80\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xFF", FILTER_INVALID, "invalid JSON");
    /* Bad UTF-8 is refused as soon as it is seen, not when the text ends. */
    EXPECT("{\"url\":\"\xC0", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xC1", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\x80", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xE0\x80", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xED\xA0", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xF0\x80", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xF4\x90", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xF5", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xE2\x82(", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"url\":\"\xC3(", FILTER_INVALID, "invalid JSON");
    /* Laxer than jansson only until the string closes. */
    EXPECT("{\"url\":\"\\uD800\"}", FILTER_INVALID, "invalid JSON");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"url\":\"a\\u0000b\"}", FILTER_INVALID,
           "\\\\u0000 is not allowed");
    /* NUL bytes: inside a string, in a key, after the object. */
    static const char nul_in_string[] = "{\"url\":\"a\0b\"}";
    EXPECT_N(nul_in_string, sizeof nul_in_string - 1, FILTER_INVALID, "invalid JSON");
    static const char nul_after[] = "{\"recent\":\"today\",\"dump_columns\":[\"id\"]}\0";
    EXPECT_N(nul_after, sizeof nul_after - 1, FILTER_INVALID, "invalid JSON");
    static const char nul_first[] = "\0{}";
    EXPECT_N(nul_first, sizeof nul_first - 1, FILTER_INVALID, "invalid JSON");

    /* Deep nesting ends in an error, not in an everlasting INCOMPLETE. */
    size_t deep = 5000;
    char *buf = malloc(deep + 8);
    memcpy(buf, "{\"ids\":", 7);
    memset(buf + 7, '[', deep);
    EXPECT_N(buf, deep + 7, FILTER_INVALID, "depth");
    free(buf);
}

static void test_size_limit(void)
{
    const char *ok = "{\"recent\":\"today\",\"dump_columns\":[\"id\"]}";
    size_t n = FILTER_MAX_SIZE + 1;
    char *buf = malloc(n);
    memset(buf, ' ', n);
    memcpy(buf, ok, strlen(ok));
    EXPECT_N(buf, FILTER_MAX_SIZE, FILTER_COMPLETE, NULL);          /* exactly 1 MiB */
    EXPECT_N(buf, n, FILTER_INVALID, "filter larger than 1 MiB"); /* one byte over */
    memset(buf, ' ', n);
    EXPECT_N(buf, n, FILTER_INVALID, "filter larger than 1 MiB"); /* even if blank */
    free(buf);
}

static void test_rules(void)
{
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"foo\":1}", FILTER_INVALID,
           "unknown field 'foo'");
    EXPECT("{\"foo\":[],\"recent\":\"today\",\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           "unknown field 'foo'");
    EXPECT("{\"Recent\":\"today\",\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           "unknown field 'Recent'");
    EXPECT("{}", FILTER_INVALID, "missing required field 'recent'");
    EXPECT("{\"dump_columns\":[\"id\"]}", FILTER_INVALID, "missing required field 'recent'");
    EXPECT("{\"recent\":\"today\"}", FILTER_INVALID, "missing required field 'dump_columns'");
    const char *recents[] = { "yesterday", "today", "3days", "1week", "1month" };
    for (size_t i = 0; i < 5; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "{\"recent\":\"%s\",\"dump_columns\":[\"id\"]}", recents[i]);
        EXPECT(buf, FILTER_COMPLETE, NULL);
    }
    const char *want_recent = "recent must be one of yesterday, today, 3days, 1week, 1month";
    EXPECT("{\"recent\":\"Today\",\"dump_columns\":[\"id\"]}", FILTER_INVALID, want_recent);
    EXPECT("{\"recent\":\"2days\",\"dump_columns\":[\"id\"]}", FILTER_INVALID, want_recent);
    EXPECT("{\"recent\":\"\",\"dump_columns\":[\"id\"]}", FILTER_INVALID, want_recent);
    EXPECT("{\"recent\":1,\"dump_columns\":[\"id\"]}", FILTER_INVALID, want_recent);
    EXPECT("{\"recent\":[\"today\"],\"dump_columns\":[\"id\"]}", FILTER_INVALID, want_recent);
    EXPECT("{\"recent\":null,\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           "recent must not be null");

    EXPECT("{\"recent\":\"today\",\"dump_columns\":[]}", FILTER_INVALID,
           "dump_columns must not be empty");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":\"id\"}", FILTER_INVALID,
           "dump_columns must be an array of strings");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":{}}", FILTER_INVALID,
           "dump_columns must be an array of strings");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":null}", FILTER_INVALID,
           "dump_columns must not be null");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\",\"time\",\"bogus\"]}", FILTER_INVALID,
           "dump_columns[2]: unknown column 'bogus'");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\",1]}", FILTER_INVALID,
           "dump_columns[1] must be a string");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"ID\"]}", FILTER_INVALID,
           "dump_columns[0]: unknown column 'ID'");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"instances\"]}", FILTER_INVALID,
           "unknown column 'instances'");

    size_t ncol = 0;
    for (; filter_columns[ncol]; ncol++) {
        char buf[128];
        snprintf(buf, sizeof buf, "{\"recent\":\"today\",\"dump_columns\":[\"%s\"]}",
                 filter_columns[ncol]);
        EXPECT(buf, FILTER_COMPLETE, NULL);
    }
    CHECK(ncol == 20, "%zu columns", ncol);

    const char *arrays[] = { "ids",   "nids",  "attacks", "nattacks", "rules",
                             "nrules", "sips",  "nsips",   "urls",     "nurls",
                             "actions", "nactions", "hosts", "instances" };
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) {
        char buf[256], want[128];
        const char *fmt = "{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"%s\":%s}";
        snprintf(buf, sizeof buf, fmt, arrays[i], "[]");
        EXPECT(buf, FILTER_COMPLETE, NULL);
        snprintf(buf, sizeof buf, fmt, arrays[i], "[\"a\",\"\"]");
        EXPECT(buf, FILTER_COMPLETE, NULL);
        snprintf(buf, sizeof buf, fmt, arrays[i], "\"a\"");
        snprintf(want, sizeof want, "%s must be an array of strings", arrays[i]);
        EXPECT(buf, FILTER_INVALID, want);
        snprintf(buf, sizeof buf, fmt, arrays[i], "[\"a\",null]");
        snprintf(want, sizeof want, "%s[1] must be a string", arrays[i]);
        EXPECT(buf, FILTER_INVALID, want);
        snprintf(buf, sizeof buf, fmt, arrays[i], "[[\"a\"]]");
        snprintf(want, sizeof want, "%s[0] must be a string", arrays[i]);
        EXPECT(buf, FILTER_INVALID, want);
        snprintf(buf, sizeof buf, fmt, arrays[i], "null");
        snprintf(want, sizeof want, "%s must not be null (omit it instead)", arrays[i]);
        EXPECT(buf, FILTER_INVALID, want);
    }
    const char *strings[] = { "sip", "url" };
    for (size_t i = 0; i < 2; i++) {
        char buf[256], want[128];
        const char *fmt = "{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"%s\":%s}";
        snprintf(buf, sizeof buf, fmt, strings[i], "\"\"");
        EXPECT(buf, FILTER_COMPLETE, NULL);
        snprintf(buf, sizeof buf, fmt, strings[i], "[\"a\"]");
        snprintf(want, sizeof want, "%s must be a string", strings[i]);
        EXPECT(buf, FILTER_INVALID, want);
        snprintf(buf, sizeof buf, fmt, strings[i], "true");
        EXPECT(buf, FILTER_INVALID, want);
        snprintf(buf, sizeof buf, fmt, strings[i], "null");
        snprintf(want, sizeof want, "%s must not be null", strings[i]);
        EXPECT(buf, FILTER_INVALID, want);
    }
}

/* User text quoted in a message is cut and made printable: the message is
 * sent back as a single reply line. */
static void test_messages_sanitized(void)
{
    EXPECT("{\"a\\nb\\u00e9\\\\\":1,\"recent\":\"today\",\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           "unknown field 'a\\x0Ab\\xC3\\xA9\\\\'");
    char buf[512];
    snprintf(buf, sizeof buf, "{\"recent\":\"today\",\"dump_columns\":[\"%0200d\"]}", 7);
    EXPECT(buf, FILTER_INVALID, "0000...'");
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\"]}\x01", FILTER_INVALID, "invalid JSON");
}

/* With several faults, the first complaint is the emulator's: unknown
 * fields, then recent, then dump_columns, then the arrays, then strings. */
static void test_check_order(void)
{
    EXPECT("{\"recent\":\"bad\",\"dump_columns\":[],\"foo\":1}", FILTER_INVALID,
           "unknown field 'foo'");
    EXPECT("{\"url\":1,\"dump_columns\":[\"bogus\"],\"recent\":\"bad\"}", FILTER_INVALID,
           "recent must be one of");
    EXPECT("{\"url\":1,\"ids\":\"x\",\"dump_columns\":[\"bogus\"],\"recent\":\"today\"}",
           FILTER_INVALID, "dump_columns[0]: unknown column");
    EXPECT("{\"url\":1,\"ids\":\"x\",\"dump_columns\":[\"id\"],\"recent\":\"today\"}",
           FILTER_INVALID, "ids must be an array");
    EXPECT("{\"url\":1,\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           "missing required field 'recent'");
}

static void test_validate_direct(void)
{
    char *why = NULL;
    json_t *arr = json_array();
    CHECK(filter_validate(arr, &why) == -EINVAL && why && strstr(why, "JSON object"), "array");
    free(why);
    json_decref(arr);
    CHECK(filter_validate(NULL, NULL) == -EINVAL, "NULL filter");
    json_t *ok = json_pack("{s:s, s:[s]}", "recent", "3days", "dump_columns", "cookie");
    why = (char *)1;
    CHECK(filter_validate(ok, &why) == 0 && why == NULL, "valid object");
    json_decref(ok);
    /* A string with a NUL can only come from a caller building objects itself. */
    json_t *odd = json_pack("{s:s, s:[s], s:s%}", "recent", "today", "dump_columns", "id", "url",
                            "a\0b", (size_t)3);
    why = NULL;
    CHECK(odd && filter_validate(odd, &why) == -EINVAL && why && strstr(why, "url must not contain a NUL byte"),
          "string with NUL built by hand: %s", why ? why : "");
    free(why);
    json_decref(odd);
    odd = json_pack("{s:s%, s:[s]}", "recent", "today\0x", (size_t)7, "dump_columns", "id");
    why = NULL;
    CHECK(odd && filter_validate(odd, &why) == -EINVAL && why && strstr(why, "recent must be"),
          "recent with NUL: %s", why ? why : "");
    free(why);
    json_decref(odd);
}

int main(void)
{
    test_blank_and_prefixes();
    test_split_writes();
    test_body();
    test_bad_json();
    test_size_limit();
    test_rules();
    test_messages_sanitized();
    test_check_order();
    test_validate_direct();
    printf("filter: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
