/* Checks the filter rules (WAF and HSS), the incremental
 * incomplete/complete/invalid decision, including writes split at every
 * byte of valid filters, what is sent (the body, the HSS query). */
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
        /* No body only for an HSS filter without columns. */
        int bodyless = json_is_object(obj) && filter_service_of(obj) == SERVICE_HSS &&
                       !json_object_get(obj, "columns");
        CHECK(json_is_object(obj) && !why && (body == NULL) == bodyless,
              "line %d: outputs of COMPLETE", line);
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
    EXPECT("{\"recent\":\"today\",\"dump_columns\":[\"id\",1]}", FILTER_INVALID,
           "dump_columns[1] must be a string");

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
    snprintf(buf, sizeof buf, "{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"%0200d\":1}", 7);
    EXPECT(buf, FILTER_INVALID, "unknown field '0000000000000000000000000000000000000000000000000000"
                                "000000000000...'");
    EXPECT("{\"service\":\"h\\u00e9ss\\n\\\\\"}", FILTER_INVALID,
           "service must be \"waf\" or \"hss\", not 'h\\xC3\\xA9ss\\x0A\\\\'");
    EXPECT("{\"service\":\"hss\",\"category\":\"host\",\"x\\u0007\":1}", FILTER_INVALID,
           "unknown field 'x\\x07'");
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
    EXPECT("{\"url\":1,\"ids\":\"x\",\"dump_columns\":[\"\"],\"recent\":\"today\"}",
           FILTER_INVALID, "dump_columns[0] must not be empty");
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

/* The message of an INVALID text must be exactly want. */
static void exact_why(int line, const char *text, const char *want)
{
    char *why = NULL;
    enum filter_parse_result r = filter_parse(text, strlen(text), NULL, NULL, &why);
    CHECK(r == FILTER_INVALID && why && !strcmp(why, want), "line %d: %s: got %s '%s', want '%s'",
          line, text, result_name(r), why ? why : "(null)", want);
    free(why);
}
#define EXACT(text, want) exact_why(__LINE__, (text), (want))

/* {"service":"hss","category":"host",<fields>} */
static const char *hss_text(const char *fields)
{
    static char buf[2048];
    snprintf(buf, sizeof buf, "{\"service\":\"hss\",\"category\":\"host\"%s%s}", *fields ? "," : "",
             fields);
    return buf;
}
#define HSS_OK(fields) EXPECT(hss_text(fields), FILTER_COMPLETE, NULL)
#define HSS_BAD(fields, why) EXPECT(hss_text(fields), FILTER_INVALID, (why))
#define HSS_EXACT(fields, why) EXACT(hss_text(fields), (why))

/* Parses a text expected COMPLETE; returns the object, *body the body. */
static json_t *parse_ok(int line, const char *text, char **body)
{
    json_t *obj = NULL;
    char *why = NULL;
    enum filter_parse_result r = filter_parse(text, strlen(text), &obj, body, &why);
    CHECK(r == FILTER_COMPLETE && obj, "line %d: %s: %s (%s)", line, text, result_name(r),
          why ? why : "");
    free(why);
    return obj;
}

static void test_service(void)
{
    const char *waf_min = "{\"recent\":\"today\",\"dump_columns\":[\"id\"]}";
    char *body = NULL;
    json_t *obj = parse_ok(__LINE__, waf_min, &body);
    CHECK(obj && filter_service_of(obj) == SERVICE_WAF, "no service is waf");
    CHECK(body && !strcmp(body, waf_min), "body %s", body ? body : "(null)");
    json_decref(obj);
    free(body);

    /* "service":"waf" anywhere: kept in the object, not sent. */
    const char *with[] = {
        "{\"service\":\"waf\",\"recent\":\"today\",\"dump_columns\":[\"id\"]}",
        "{\"recent\":\"today\",\"service\":\"waf\",\"dump_columns\":[\"id\"]}",
        "{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"service\":\"waf\"}\n",
        " { \"recent\" : \"today\" , \"dump_columns\" : [ \"id\" ] , \"service\" : \"waf\" } ",
    };
    for (size_t i = 0; i < sizeof with / sizeof *with; i++) {
        obj = parse_ok(__LINE__, with[i], &body);
        CHECK(obj && filter_service_of(obj) == SERVICE_WAF, "waf %zu", i);
        CHECK(obj && json_is_string(json_object_get(obj, "service")), "service kept in out %zu", i);
        CHECK(body && !strcmp(body, waf_min), "body %zu: %s", i, body ? body : "(null)");
        json_decref(obj);
        free(body);
        split_everywhere(__LINE__, with[i]);
    }

    const char *hss = "{\"service\":\"hss\",\"category\":\"host\"}";
    obj = parse_ok(__LINE__, hss, &body);
    CHECK(obj && filter_service_of(obj) == SERVICE_HSS, "hss");
    CHECK(body == NULL, "hss without columns has no body: %s", body ? body : "");
    CHECK(obj && json_object_size(obj) == 2, "out is the whole filter");
    json_decref(obj);
    free(body);

    const char *want_word = "service must be \"waf\" or \"hss\", not '";
    EXACT("{\"service\":\"HSS\",\"category\":\"host\"}",
          "service must be \"waf\" or \"hss\", not 'HSS'");
    EXPECT("{\"service\":\"\",\"recent\":\"today\",\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           want_word);
    EXPECT("{\"service\":\"waf \",\"recent\":\"today\",\"dump_columns\":[\"id\"]}", FILTER_INVALID,
           want_word);
    EXPECT("{\"service\":\"obs\"}", FILTER_INVALID, want_word);
    const char *want_type = "service must be the string \"waf\" or \"hss\"";
    EXACT("{\"service\":1,\"recent\":\"today\",\"dump_columns\":[\"id\"]}", want_type);
    EXACT("{\"service\":true}", want_type);
    EXACT("{\"service\":[\"hss\"]}", want_type);
    EXACT("{\"service\":{}}", want_type);
    EXACT("{\"service\":null,\"recent\":\"today\",\"dump_columns\":[\"id\"]}",
          "service must not be null (omit it for waf)");
    /* The service is decided first: its error beats every other. */
    EXPECT("{\"foo\":1,\"service\":\"x\"}", FILTER_INVALID, want_word);

    /* A field of the other service is unknown, with a hint. */
    EXACT("{\"recent\":\"today\",\"dump_columns\":[\"id\"],\"category\":\"host\"}",
          "unknown field 'category' (an hss field: add \"service\":\"hss\")");
    EXACT("{\"service\":\"waf\",\"recent\":\"today\",\"dump_columns\":[\"id\"],\"last_days\":1}",
          "unknown field 'last_days' (an hss field: add \"service\":\"hss\")");
    EXACT("{\"service\":\"hss\",\"category\":\"host\",\"recent\":\"today\"}",
          "unknown field 'recent' (a waf field, and this is an hss filter)");
    EXACT("{\"service\":\"hss\",\"category\":\"host\",\"dump_columns\":[\"id\"]}",
          "unknown field 'dump_columns' (a waf field, and this is an hss filter)");
    EXACT("{\"service\":\"hss\",\"category\":\"host\",\"foo\":1}", "unknown field 'foo'");
    EXACT("{\"service\":\"hss\",\"category\":\"host\",\"Category\":\"host\"}",
          "unknown field 'Category'");

    /* filter_service_of on anything. */
    CHECK(filter_service_of(NULL) == SERVICE_WAF, "NULL");
    json_t *arr = json_array();
    CHECK(filter_service_of(arr) == SERVICE_WAF, "array");
    json_decref(arr);
}

/* dump_columns: shape only, names are the cloud's to judge. */
static void test_waf_columns(void)
{
    const char *fmt = "{\"recent\":\"today\",\"dump_columns\":%s}";
    const char *good[] = {
        "[\"id\"]", "[\"bogus\"]", "[\"ID\"]", "[\"instances\"]",
        "[\"policy_id\",\"body\",\"enterprise_project_id\",\"enterprise_project_name\"]",
        "[\"headers\",\"response_body\",\"id\",\"id\"]", "[\"caf\\u00e9\"]", "[\" \"]",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, fmt, good[i]);
        EXPECT(buf, FILTER_COMPLETE, NULL);
    }
    char big[1024];
    snprintf(big, sizeof big, "{\"recent\":\"today\",\"dump_columns\":[\"%0500d\"]}", 1);
    EXPECT(big, FILTER_COMPLETE, NULL);

    struct {
        const char *value, *why;
    } bad[] = {
        { "[]", "dump_columns must not be empty" },
        { "[\"\"]", "dump_columns[0] must not be empty" },
        { "[\"id\",\"\"]", "dump_columns[1] must not be empty" },
        { "[\"id\",1]", "dump_columns[1] must be a string" },
        { "[null]", "dump_columns[0] must be a string" },
        { "[[\"id\"]]", "dump_columns[0] must be a string" },
        { "[true]", "dump_columns[0] must be a string" },
        { "\"id\"", "dump_columns must be an array of strings" },
        { "{}", "dump_columns must be an array of strings" },
        { "7", "dump_columns must be an array of strings" },
        { "null", "dump_columns must not be null" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, fmt, bad[i].value);
        EXACT(buf, bad[i].why);
    }
}

static void test_hss_rules(void)
{
    /* category */
    HSS_OK("");
    EXPECT("{\"service\":\"hss\",\"category\":\"container\"}", FILTER_COMPLETE, NULL);
    EXACT("{\"service\":\"hss\"}", "missing required field 'category'");
    EXACT("{\"service\":\"hss\",\"last_days\":7}", "missing required field 'category'");
    const char *want_cat = "category must be one of host, container";
    EXACT("{\"service\":\"hss\",\"category\":\"Host\"}", want_cat);
    EXACT("{\"service\":\"hss\",\"category\":\"\"}", want_cat);
    EXACT("{\"service\":\"hss\",\"category\":1}", want_cat);
    EXACT("{\"service\":\"hss\",\"category\":[\"host\"]}", want_cat);
    EXACT("{\"service\":\"hss\",\"category\":null}", "category must not be null");

    /* enterprise_project_id and the other plain strings */
    const char *strings[] = { "enterprise_project_id", "host_name", "host_id", "private_ip",
                              "public_ip", "container_name", "cluster_id", "event_name" };
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
        const char *f = strings[i];
        char fields[256], want[128];
        snprintf(fields, sizeof fields, "\"%s\":\"x\"", f);
        HSS_OK(fields);
        snprintf(fields, sizeof fields, "\"%s\":\"caf\\u00e9 1.2.3.4/x\"", f);
        HSS_OK(fields);
        snprintf(fields, sizeof fields, "\"%s\":\"\"", f);
        snprintf(want, sizeof want, "%s must not be empty", f);
        HSS_EXACT(fields, want);
        snprintf(want, sizeof want, "%s must be a string", f);
        const char *wrong[] = { "0", "true", "[\"x\"]", "{}", "1.5" };
        for (size_t k = 0; k < sizeof wrong / sizeof *wrong; k++) {
            snprintf(fields, sizeof fields, "\"%s\":%s", f, wrong[k]);
            HSS_EXACT(fields, want);
        }
        snprintf(want, sizeof want, "%s must not contain control characters", f);
        const char *ctl[] = { "\"a\\nb\"", "\"\\t\"", "\"a\\u0001\"", "\"\\u007f\"", "\"\\u001b[31m\"" };
        for (size_t k = 0; k < sizeof ctl / sizeof *ctl; k++) {
            snprintf(fields, sizeof fields, "\"%s\":%s", f, ctl[k]);
            HSS_EXACT(fields, want);
        }
    }
    HSS_OK("\"enterprise_project_id\":\"0\"");
    HSS_OK("\"enterprise_project_id\":\"all_granted_eps\"");

    /* last_days */
    HSS_OK("\"last_days\":1");
    HSS_OK("\"last_days\":30");
    const char *want_days = "last_days must be an integer from 1 to 30";
    const char *bad_days[] = { "0", "31", "-1", "-0" /* the integer 0 */, "7.0", "7.5", "7e0", "1E1", "true", "false",
                               "\"7\"", "[7]", "9223372036854775807", "-9223372036854775808" };
    for (size_t i = 0; i < sizeof bad_days / sizeof *bad_days; i++) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"last_days\":%s", bad_days[i]);
        HSS_EXACT(fields, want_days);
    }
    /* Beyond what jansson holds: a JSON error, still refused. */
    HSS_BAD("\"last_days\":9223372036854775808", "invalid JSON");
    HSS_BAD("\"last_days\":1e999", "invalid JSON");

    /* begin_time / end_time */
    HSS_OK("\"begin_time\":1700000000000,\"end_time\":1700000000000");
    HSS_OK("\"begin_time\":1700000000000,\"end_time\":1700172800000"); /* exactly 2 days */
    HSS_OK("\"end_time\":1700000000001,\"begin_time\":1700000000000");
    HSS_OK("\"begin_time\":0,\"end_time\":0");
    HSS_OK("\"begin_time\":9223372036854775807,\"end_time\":9223372036854775807");
    const char *want_span = "begin_time and end_time must be at most 2 days (172800000 ms) apart";
    HSS_EXACT("\"begin_time\":1700000000000,\"end_time\":1700172800001", want_span);
    HSS_EXACT("\"begin_time\":0,\"end_time\":9223372036854775807", want_span);
    HSS_EXACT("\"begin_time\":1700000000001,\"end_time\":1700000000000",
              "end_time must not be before begin_time");
    const char *want_pair = "begin_time and end_time must be given together";
    HSS_EXACT("\"begin_time\":1700000000000", want_pair);
    HSS_EXACT("\"end_time\":1700000000000", want_pair);
    const char *want_both = "last_days cannot be combined with begin_time/end_time";
    HSS_EXACT("\"last_days\":7,\"begin_time\":1700000000000,\"end_time\":1700000000000", want_both);
    HSS_EXACT("\"begin_time\":1700000000000,\"last_days\":7", want_both);
    HSS_EXACT("\"end_time\":1700000000000,\"last_days\":7", want_both);
    const char *bad_times[] = { "-1", "1.7e12", "1700000000000.0", "true", "\"1700000000000\"",
                                "[1]", "{}" };
    for (size_t i = 0; i < sizeof bad_times / sizeof *bad_times; i++) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"begin_time\":%s,\"end_time\":1", bad_times[i]);
        HSS_EXACT(fields, "begin_time must be a non-negative integer (ms since the epoch)");
        snprintf(fields, sizeof fields, "\"begin_time\":1,\"end_time\":%s", bad_times[i]);
        HSS_EXACT(fields, "end_time must be a non-negative integer (ms since the epoch)");
    }

    /* severity, severity_list */
    const char *sev[] = { "Security", "Low", "Medium", "High", "Critical" };
    for (size_t i = 0; i < 5; i++) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"severity\":\"%s\"", sev[i]);
        HSS_OK(fields);
        snprintf(fields, sizeof fields, "\"severity_list\":[\"%s\"]", sev[i]);
        HSS_OK(fields);
    }
    HSS_OK("\"severity_list\":[]");
    HSS_OK("\"severity_list\":[\"High\",\"Critical\",\"High\"]");
    const char *want_sev = "severity must be one of Security, Low, Medium, High, Critical";
    HSS_EXACT("\"severity\":\"high\"", want_sev);
    HSS_EXACT("\"severity\":\"\"", want_sev);
    HSS_EXACT("\"severity\":3", want_sev);
    HSS_EXACT("\"severity\":[\"High\"]", want_sev);
    HSS_EXACT("\"severity_list\":[\"High\",\"bad\"]",
              "severity_list[1] must be one of Security, Low, Medium, High, Critical");
    HSS_EXACT("\"severity_list\":[null]",
              "severity_list[0] must be one of Security, Low, Medium, High, Critical");
    HSS_EXACT("\"severity_list\":\"High\"", "severity_list must be an array of strings");
    HSS_EXACT("\"severity_list\":{}", "severity_list must be an array of strings");

    /* handle_status */
    HSS_OK("\"handle_status\":\"unhandled\"");
    HSS_OK("\"handle_status\":\"handled\"");
    HSS_EXACT("\"handle_status\":\"Handled\"", "handle_status must be one of unhandled, handled");
    HSS_EXACT("\"handle_status\":true", "handle_status must be one of unhandled, handled");

    /* event_types */
    HSS_OK("\"event_types\":[]");
    HSS_OK("\"event_types\":[1001,1,2147483647,1001]");
    const char *bad_types[] = { "0", "-5", "2147483648", "1001.0", "1.5", "1e3", "true", "null",
                                "\"1001\"", "[1]" };
    for (size_t i = 0; i < sizeof bad_types / sizeof *bad_types; i++) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"event_types\":[1001,%s]", bad_types[i]);
        HSS_EXACT(fields, "event_types[1] must be an integer from 1 to 2147483647");
    }
    HSS_EXACT("\"event_types\":1001", "event_types must be an array of integers");
    HSS_EXACT("\"event_types\":\"1001\"", "event_types must be an array of integers");

    /* event_class_ids */
    HSS_OK("\"event_class_ids\":[]");
    HSS_OK("\"event_class_ids\":[\"login_0001\",\"x\"]");
    HSS_EXACT("\"event_class_ids\":[\"\"]", "event_class_ids[0] must not be empty");
    HSS_EXACT("\"event_class_ids\":[\"a\",1]", "event_class_ids[1] must be a string");
    HSS_EXACT("\"event_class_ids\":[null]", "event_class_ids[0] must be a string");
    HSS_EXACT("\"event_class_ids\":[\"a\\nb\"]",
              "event_class_ids[0] must not contain control characters");
    HSS_EXACT("\"event_class_ids\":\"login_0001\"", "event_class_ids must be an array of strings");

    /* attack_tag */
    const char *tags[] = { "attack_success",   "attack_attempt",   "attack_blocked",
                           "abnormal_behavior", "collapsible_host", "system_vulnerability" };
    for (size_t i = 0; i < 6; i++) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"attack_tag\":\"%s\"", tags[i]);
        HSS_OK(fields);
    }
    const char *want_tag = "attack_tag must be one of attack_success, attack_attempt, "
                           "attack_blocked, abnormal_behavior, collapsible_host, "
                           "system_vulnerability";
    HSS_EXACT("\"attack_tag\":\"attack\"", want_tag);
    HSS_EXACT("\"attack_tag\":[\"attack_success\"]", want_tag);

    /* asset_value */
    HSS_OK("\"asset_value\":\"important\"");
    HSS_OK("\"asset_value\":\"common\"");
    HSS_OK("\"asset_value\":\"test\"");
    HSS_EXACT("\"asset_value\":\"Important\"", "asset_value must be one of important, common, test");
    HSS_EXACT("\"asset_value\":0", "asset_value must be one of important, common, test");

    /* columns */
    HSS_OK("\"columns\":[[\"event_name\",\"Event\"]]");
    HSS_OK("\"columns\":[[\"event_name\",\"Event\"],[\"severity\",\"S\\u00e9v\"],[\"x\",\"x\"]]");
    HSS_EXACT("\"columns\":[]", "columns must not be empty (omit it for the default columns)");
    HSS_EXACT("\"columns\":\"event_name\"", "columns must be an array of [key, header] pairs");
    HSS_EXACT("\"columns\":{\"event_name\":\"Event\"}",
              "columns must be an array of [key, header] pairs");
    const char *want_pair0 = "columns[0] must be a [key, header] pair of strings";
    HSS_EXACT("\"columns\":[[\"a\"]]", want_pair0);
    HSS_EXACT("\"columns\":[[]]", want_pair0);
    HSS_EXACT("\"columns\":[[\"a\",\"b\",\"c\"]]", want_pair0);
    HSS_EXACT("\"columns\":[\"a\"]", want_pair0);
    HSS_EXACT("\"columns\":[{\"a\":\"b\"}]", want_pair0);
    HSS_EXACT("\"columns\":[null]", want_pair0);
    HSS_EXACT("\"columns\":[[\"a\",\"b\"],[\"c\"]]",
              "columns[1] must be a [key, header] pair of strings");
    HSS_EXACT("\"columns\":[[\"\",\"b\"]]", "columns[0][0] must not be empty");
    HSS_EXACT("\"columns\":[[\"a\",\"\"]]", "columns[0][1] must not be empty");
    HSS_EXACT("\"columns\":[[\"a\",1]]", "columns[0][1] must be a string");
    HSS_EXACT("\"columns\":[[null,\"b\"]]", "columns[0][0] must be a string");
    HSS_EXACT("\"columns\":[[\"a\",\"b\\r\\n\"]]", "columns[0][1] must not contain control characters");

    /* null for any field; a boolean for any integer field */
    const char *all[] = { "enterprise_project_id", "last_days", "begin_time", "end_time",
                          "severity", "severity_list", "handle_status", "event_types",
                          "event_class_ids", "attack_tag", "asset_value", "host_name", "host_id",
                          "private_ip", "public_ip", "container_name", "cluster_id",
                          "event_name", "columns" };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char fields[128], want[128];
        snprintf(fields, sizeof fields, "\"%s\":null", all[i]);
        snprintf(want, sizeof want, "%s must not be null (omit it instead)", all[i]);
        HSS_EXACT(fields, want);
    }
    HSS_BAD("\"last_days\":true", "last_days must be an integer");
    HSS_BAD("\"begin_time\":false,\"end_time\":0", "begin_time must be a non-negative integer");
    HSS_BAD("\"event_types\":[true]", "event_types[0] must be an integer");

    /* Check order: unknown fields, category, the fields in the order of
     * cloud-api.md §6 (not the order written), then the rules between
     * fields. */
    EXACT("{\"service\":\"hss\",\"last_days\":0,\"foo\":1}", "unknown field 'foo'");
    EXACT("{\"service\":\"hss\",\"host_name\":\"\",\"last_days\":0}",
          "missing required field 'category'");
    HSS_EXACT("\"host_name\":\"\",\"last_days\":0", want_days);
    HSS_EXACT("\"columns\":[],\"severity\":\"x\"", want_sev);
    HSS_EXACT("\"last_days\":7,\"begin_time\":1,\"host_name\":\"\"", "host_name must not be empty");
    HSS_EXACT("\"begin_time\":5,\"end_time\":1,\"last_days\":7", want_both);
    EXACT("{\"category\":\"bad\",\"service\":\"hss\"}", want_cat);

    /* Everything at once, split at every byte. */
    split_everywhere(__LINE__,
                     "{\"service\":\"hss\",\"category\":\"container\",\"enterprise_project_id\":\"0\","
                     "\"begin_time\":1700000000000,\"end_time\":1700172800000,\"severity\":\"Low\","
                     "\"severity_list\":[\"High\",\"Critical\"],\"handle_status\":\"unhandled\","
                     "\"event_types\":[1001,3015],\"event_class_ids\":[\"login_0001\"],"
                     "\"attack_tag\":\"attack_success\",\"asset_value\":\"important\","
                     "\"host_name\":\"web-1\",\"host_id\":\"h\",\"private_ip\":\"10.0.0.1\","
                     "\"public_ip\":\"1.2.3.4\",\"container_name\":\"c\",\"cluster_id\":\"k\","
                     "\"event_name\":\"Brute force\",\"columns\":[[\"event_name\",\"Event\"]]}\n");
    split_everywhere(__LINE__, "\n{ \"category\" : \"host\" , \"last_days\" : 30 ,"
                               " \"service\" : \"hss\" }\r\n");
}

static void test_hss_body(void)
{
    char *body = NULL;
    json_t *obj = parse_ok(__LINE__,
                           " {\"service\":\"hss\", \"category\":\"host\", \"columns\" : [ [ \"event_name\" ,"
                           " \"Event\" ] , [\"severity\",\"S\\u00e9v\"] ], \"last_days\": 7 }\n",
                           &body);
    CHECK(body && !strcmp(body, "[[\"event_name\",\"Event\"],[\"severity\",\"S\xC3\xA9v\"]]"),
          "hss body %s", body ? body : "(null)");
    /* The body parses back to the filter's columns. */
    json_t *cols = body ? json_loads(body, 0, NULL) : NULL;
    CHECK(obj && cols && json_equal(cols, json_object_get(obj, "columns")), "columns round trip");
    /* The whole filter, service included, is what the filesystem keeps. */
    CHECK(obj && json_object_size(obj) == 4 &&
              !strcmp(json_string_value(json_object_get(obj, "service")), "hss"),
          "out is the whole filter");
    json_decref(cols);
    json_decref(obj);
    free(body);

    body = (char *)1;
    obj = parse_ok(__LINE__, "{\"service\":\"hss\",\"category\":\"host\",\"last_days\":7}", &body);
    CHECK(body == NULL, "no columns, no body");
    json_decref(obj);
    /* body not wanted */
    obj = parse_ok(__LINE__, "{\"service\":\"hss\",\"category\":\"host\",\"columns\":[[\"a\",\"b\"]]}",
                   NULL);
    json_decref(obj);
}

static void check_params(int line, const char *text, const char *const *want, size_t nwant)
{
    json_t *obj = parse_ok(line, text, NULL);
    struct filter_param *p = (struct filter_param *)1;
    size_t n = 99;
    int rc = filter_hss_query(obj, &p, &n);
    CHECK(rc == 0 && p && n == nwant, "line %d: rc %d n %zu, want %zu", line, rc, n, nwant);
    for (size_t i = 0; rc == 0 && i < n && i < nwant; i++) {
        char got[512];
        snprintf(got, sizeof got, "%s=%s", p[i].name, p[i].value);
        CHECK(!strcmp(got, want[i]), "line %d: param %zu is %s, want %s", line, i, got, want[i]);
        /* The strings live in the same block, after the array. */
        CHECK((const char *)p[i].name >= (const char *)(p + n) &&
                  (const char *)p[i].value >= (const char *)(p + n),
              "line %d: param %zu outside the block", line, i);
    }
    free(rc == 0 ? p : NULL); /* one free releases everything */
    json_decref(obj);
}
#define PARAMS(text, ...)                                                                          \
    do {                                                                                           \
        static const char *const want_[] = { __VA_ARGS__ };                                      \
        check_params(__LINE__, (text), want_, sizeof want_ / sizeof *want_);                       \
    } while (0)

static void test_hss_query(void)
{
    /* Key order, arrays as repeats in array order, empty arrays and
     * service/columns left out. */
    PARAMS("{\"event_types\":[1001,3015],\"service\":\"hss\",\"severity_list\":[\"High\",\"Critical\"],"
           "\"category\":\"container\",\"columns\":[[\"a\",\"b\"]],\"last_days\":7,"
           "\"event_class_ids\":[],\"host_name\":\"web 1&x=y\",\"enterprise_project_id\":\"0\"}",
           "event_types=1001", "event_types=3015", "severity_list=High", "severity_list=Critical",
           "category=container", "last_days=7", "host_name=web 1&x=y", "enterprise_project_id=0");
    PARAMS("{\"service\":\"hss\",\"category\":\"host\"}", "category=host");
    PARAMS("{\"category\":\"host\",\"service\":\"hss\"}", "category=host");
    /* Integers in decimal, whatever their size or how they were written. */
    PARAMS("{\"service\":\"hss\",\"category\":\"host\",\"end_time\":9223372036854775807,"
           "\"begin_time\":9223372036854775807,\"event_types\":[2147483647,1]}",
           "category=host", "end_time=9223372036854775807", "begin_time=9223372036854775807",
           "event_types=2147483647", "event_types=1");
    PARAMS("{\"service\":\"hss\",\"category\":\"host\",\"begin_time\":0,\"end_time\":172800000}",
           "category=host", "begin_time=0", "end_time=172800000");
    /* Every parameter, in the order written. */
    PARAMS("{\"service\":\"hss\",\"category\":\"container\",\"enterprise_project_id\":\"all_granted_eps\","
           "\"begin_time\":1700000000000,\"end_time\":1700172800000,\"severity\":\"Low\","
           "\"severity_list\":[\"Security\"],\"handle_status\":\"handled\",\"event_types\":[1001],"
           "\"event_class_ids\":[\"login_0001\",\"x\"],\"attack_tag\":\"attack_blocked\","
           "\"asset_value\":\"test\",\"host_name\":\"a\",\"host_id\":\"b\",\"private_ip\":\"10.0.0.1\","
           "\"public_ip\":\"1.2.3.4\",\"container_name\":\"c\",\"cluster_id\":\"d\","
           "\"event_name\":\"caf\\u00e9\"}",
           "category=container", "enterprise_project_id=all_granted_eps", "begin_time=1700000000000",
           "end_time=1700172800000", "severity=Low", "severity_list=Security",
           "handle_status=handled", "event_types=1001", "event_class_ids=login_0001",
           "event_class_ids=x", "attack_tag=attack_blocked", "asset_value=test", "host_name=a",
           "host_id=b", "private_ip=10.0.0.1", "public_ip=1.2.3.4", "container_name=c",
           "cluster_id=d", "event_name=caf\xC3\xA9");
    /* Duplicate keys: the last value, at the first one's place. */
    PARAMS("{\"service\":\"hss\",\"category\":\"host\",\"last_days\":3,\"category\":\"container\"}",
           "category=container", "last_days=3");

    /* Not a valid HSS filter: -EINVAL, nothing allocated. */
    json_t *waf = json_pack("{s:s, s:[s]}", "recent", "today", "dump_columns", "id");
    struct filter_param *p = (struct filter_param *)1;
    size_t n = 99;
    CHECK(filter_hss_query(waf, &p, &n) == -EINVAL && p == NULL && n == 0, "waf filter");
    json_decref(waf);
    json_t *bad = json_pack("{s:s, s:s, s:i}", "service", "hss", "category", "host", "last_days", 99);
    p = (struct filter_param *)1;
    CHECK(filter_hss_query(bad, &p, &n) == -EINVAL && p == NULL && n == 0, "invalid hss filter");
    json_decref(bad);
    p = (struct filter_param *)1;
    CHECK(filter_hss_query(NULL, &p, &n) == -EINVAL && p == NULL && n == 0, "NULL filter");

    /* Built by hand: the same parameters. */
    json_t *obj = json_pack("{s:s, s:s, s:[i,i], s:s}", "service", "hss", "category", "host",
                            "event_types", 5, 6, "event_name", "e");
    CHECK(obj && filter_validate(obj, NULL) == 0, "built filter valid");
    CHECK(filter_hss_query(obj, &p, &n) == 0 && n == 4 && !strcmp(p[0].name, "category") &&
              !strcmp(p[2].name, "event_types") && !strcmp(p[2].value, "6") &&
              !strcmp(p[3].value, "e"),
          "built filter params");
    free(p);
    json_decref(obj);
}

static void test_hss_validate_direct(void)
{
    char *why = NULL;
    json_t *o = json_pack("{s:s, s:s, s:s%}", "service", "hss", "category", "host", "host_name",
                          "a\0b", (size_t)3);
    CHECK(o && filter_validate(o, &why) == -EINVAL && why &&
              !strcmp(why, "host_name must not contain a NUL byte"),
          "NUL in host_name: %s", why ? why : "");
    free(why);
    json_decref(o);
    o = json_pack("{s:s%, s:s}", "service", "hss\0x", (size_t)5, "category", "host");
    why = NULL;
    CHECK(o && filter_validate(o, &why) == -EINVAL && why &&
              !strcmp(why, "service must be \"waf\" or \"hss\", not 'hss\\x00x'"),
          "NUL in service: %s", why ? why : "");
    CHECK(o && filter_service_of(o) == SERVICE_WAF, "service with a NUL is not hss");
    free(why);
    json_decref(o);
    o = json_pack("{s:s, s:s%}", "service", "hss", "category", "host\0", (size_t)5);
    why = NULL;
    CHECK(o && filter_validate(o, &why) == -EINVAL && why && strstr(why, "category must be one of"),
          "NUL in category: %s", why ? why : "");
    free(why);
    json_decref(o);
    o = json_pack("{s:s, s:s, s:[[s,s%]]}", "service", "hss", "category", "host", "columns", "k",
                  "h\0", (size_t)2);
    why = NULL;
    CHECK(o && filter_validate(o, &why) == -EINVAL && why &&
              !strcmp(why, "columns[0][1] must not contain a NUL byte"),
          "NUL in a header: %s", why ? why : "");
    free(why);
    json_decref(o);
    o = json_pack("{s:s, s:s, s:f}", "service", "hss", "category", "host", "last_days", 7.0);
    why = NULL;
    CHECK(o && filter_validate(o, &why) == -EINVAL && why && strstr(why, "last_days must be"),
          "real 7.0 built by hand: %s", why ? why : "");
    free(why);
    json_decref(o);
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
    test_service();
    test_waf_columns();
    test_hss_rules();
    test_hss_body();
    test_hss_query();
    test_hss_validate_direct();
    printf("filter: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
