/* fuzz_sign: the AK/SK signer's canonicalisation (src/cloud/sign.c).
 *
 * Input, as lines: method, decoded path, query "n=v&n2=v2" (decoded, split
 * on '&' and the first '='), then header lines "Name:value" up to an empty
 * line; every byte after that empty line is the body.  Checks, beyond
 * memory safety:
 *   - the canonical request has its 6 + nheaders lines: the method, the
 *     canonical URI (each byte but '/' and A-Z a-z 0-9 - _ . ~ as
 *     upper-case %XX, then '/' unless it ends with one), nquery params
 *     encoded and sorted by decoded name, then decoded value, the headers with lower-case names, sorted,
 *     values trimmed, an empty line, SignedHeaders, hex SHA-256 of the body;
 *   - the order in which query parameters and (distinct) headers are given
 *     does not change it;
 *   - sign_authorization() answers exactly when there is an X-Sdk-Date
 *     header (any case), with "SDK-HMAC-SHA256 Access=<ak>,
 *     SignedHeaders=<list>, Signature=<64 hex>". */
#include "fuzz.h"
#include "sign.h"

#include <ctype.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#define MAX_PARAMS 64

/* Undoes %XX (upper-case hex, as the signer writes it); malloc'd. */
static char *decode(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    FUZZ_CHECK(out != NULL, "out of memory");
    for (; *s; s++) {
        if (s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            char hex[3] = { s[1], s[2], 0 };
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

struct input {
    char *method, *path;
    struct sign_param query[MAX_PARAMS], headers[MAX_PARAMS];
    size_t nquery, nheaders;
    const uint8_t *body;
    size_t body_len;
    char *store[4 * MAX_PARAMS + 4]; /* every string allocated, to free */
    size_t nstore;
};

static char *keep(struct input *in, const uint8_t *p, size_t n)
{
    char *s = strndup((const char *)p, n); /* an embedded NUL ends the string */
    FUZZ_CHECK(s != NULL, "out of memory");
    in->store[in->nstore++] = s;
    return s;
}

/* The next line of [*p, end): returns its length and moves *p past '\n';
 * -1 when no bytes are left. */
static long next_line(const uint8_t **p, const uint8_t *end, const uint8_t **line)
{
    if (*p >= end)
        return -1;
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    *line = *p;
    long n = (long)((nl ? nl : end) - *p);
    *p = nl ? nl + 1 : end;
    return n;
}

static void parse_input(struct input *in, const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size, *line = data;
    long n = next_line(&p, end, &line);
    in->method = n < 0 ? keep(in, (const uint8_t *)"", 0) : keep(in, line, (size_t)n);
    n = next_line(&p, end, &line);
    in->path = n < 0 ? keep(in, (const uint8_t *)"", 0) : keep(in, line, (size_t)n);
    n = next_line(&p, end, &line);
    for (const uint8_t *q = line, *qend = line + (n > 0 ? n : 0); n > 0 && q < qend;) {
        const uint8_t *amp = memchr(q, '&', (size_t)(qend - q));
        const uint8_t *pend = amp ? amp : qend;
        const uint8_t *eq = memchr(q, '=', (size_t)(pend - q));
        if (in->nquery < MAX_PARAMS) {
            struct sign_param *sp = &in->query[in->nquery++];
            sp->name = keep(in, q, (size_t)((eq ? eq : pend) - q));
            sp->value = eq ? keep(in, eq + 1, (size_t)(pend - eq - 1)) : keep(in, q, 0);
        }
        q = amp ? amp + 1 : qend;
    }
    while ((n = next_line(&p, end, &line)) > 0) {
        if (in->nheaders == MAX_PARAMS)
            continue;
        const uint8_t *colon = memchr(line, ':', (size_t)n);
        struct sign_param *h = &in->headers[in->nheaders++];
        h->name = keep(in, line, (size_t)((colon ? colon : line + n) - line));
        h->value = colon ? keep(in, colon + 1, (size_t)(line + n - colon - 1)) : keep(in, line, 0);
    }
    in->body = p;
    in->body_len = (size_t)(end - p);
}

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

/* The canonical URI, written the plain way to compare against. */
static char *expected_uri(const char *path)
{
    size_t n = strlen(path);
    char *out = malloc(3 * n + 2), *o = out;
    FUZZ_CHECK(out != NULL, "out of memory");
    for (const char *s = path; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '/' || unreserved(c))
            *o++ = (char)c;
        else
            o += sprintf(o, "%%%02X", c);
    }
    if (o == out || o[-1] != '/')
        *o++ = '/';
    *o = '\0';
    return out;
}

/* Splits s on '\n' in place; returns the number of lines. */
static size_t split_lines(char *s, char **lines, size_t max)
{
    size_t n = 0;
    for (;;) {
        char *nl = strchr(s, '\n');
        if (n < max)
            lines[n] = s;
        n++;
        if (!nl)
            return n;
        *nl = '\0';
        s = nl + 1;
    }
}

static void check_canonical(const struct input *in, char *canon, const char *signed_names)
{
    char *lines[MAX_PARAMS + 8];
    size_t n = split_lines(canon, lines, MAX_PARAMS + 8);
    FUZZ_CHECK(n == 6 + in->nheaders, "%zu lines for %zu headers", n, in->nheaders);
    FUZZ_CHECK(strcmp(lines[0], in->method) == 0, "method '%s' became '%s'", in->method,
               lines[0]);
    char *uri = expected_uri(in->path);
    FUZZ_CHECK(strcmp(lines[1], uri) == 0, "canonical URI '%s', expected '%s'", lines[1], uri);
    free(uri);

    /* Query: nquery "name=value" pairs, encoded, sorted. */
    size_t params = 0;
    char *prev_name = NULL, *prev_value = NULL;
    for (char *q = lines[2]; in->nquery && q;) {
        char *amp = strchr(q, '&');
        if (amp)
            *amp = '\0';
        for (const char *c = q; *c; c++)
            FUZZ_CHECK(unreserved((unsigned char)*c) || *c == '%' || *c == '=',
                       "unencoded byte 0x%02x in the query", (unsigned char)*c);
        char *eq = strchr(q, '=');
        FUZZ_CHECK(eq != NULL && !strchr(eq + 1, '='), "parameter '%s' not name=value", q);
        *eq = '\0';
        if (prev_name) {
            /* Sorted by decoded name, then decoded value, as the SDKs sort. */
            char *pn = decode(prev_name), *pv = decode(prev_value), *n = decode(q),
                 *v = decode(eq + 1);
            int c = strcmp(pn, n);
            FUZZ_CHECK(c < 0 || (c == 0 && strcmp(pv, v) <= 0),
                       "query not sorted: %s=%s before %s=%s", prev_name, prev_value, q, eq + 1);
            free(pn);
            free(pv);
            free(n);
            free(v);
        }
        prev_name = q;
        prev_value = eq + 1;
        params++;
        q = amp ? amp + 1 : NULL;
    }
    FUZZ_CHECK(params == in->nquery, "%zu params for %zu given", params, in->nquery);

    /* Headers: lower-case name, sorted by name, trimmed value. */
    for (size_t i = 0; i < in->nheaders; i++) {
        const char *h = lines[3 + i];
        /* Names cannot hold ':' here (the input splits on the first). */
        const char *colon = strchr(h, ':');
        FUZZ_CHECK(colon != NULL, "header line '%s' without ':'", h);
        for (const char *k = h; k < colon; k++)
            FUZZ_CHECK(!(*k >= 'A' && *k <= 'Z'), "upper case in header name '%s'", h);
        FUZZ_CHECK(!isspace((unsigned char)colon[1]) &&
                   (!colon[1] || !isspace((unsigned char)h[strlen(h) - 1])),
                   "value not trimmed: '%s'", h);
    }
    FUZZ_CHECK(lines[3 + in->nheaders][0] == '\0', "no empty line after the headers");
    FUZZ_CHECK(strcmp(lines[4 + in->nheaders], signed_names) == 0, "SignedHeaders differ");
    for (const char *s = signed_names; *s; s++)
        FUZZ_CHECK(!(*s >= 'A' && *s <= 'Z'), "upper case in SignedHeaders '%s'", signed_names);

    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(in->body_len ? in->body : (const uint8_t *)"", in->body_len, digest);
    char hex[65];
    for (size_t i = 0; i < sizeof digest; i++)
        sprintf(hex + 2 * i, "%02x", digest[i]);
    FUZZ_CHECK(strcmp(lines[5 + in->nheaders], hex) == 0, "body hash differs");
}

/* 1 when two headers have the same name but for case: their order after
 * sorting is then up to qsort, so permutations may differ. */
static int duplicate_names(const struct input *in)
{
    for (size_t i = 0; i < in->nheaders; i++)
        for (size_t k = i + 1; k < in->nheaders; k++)
            if (strcasecmp(in->headers[i].name, in->headers[k].name) == 0)
                return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in;
    memset(&in, 0, sizeof in);
    parse_input(&in, data, size);

    char *signed_names = NULL;
    char *canon = sign_canonical_request(in.method, in.path, in.query, in.nquery, in.headers,
                                         in.nheaders, in.body, in.body_len, &signed_names);
    FUZZ_CHECK(canon && signed_names, "canonical request failed");

    /* Reversed parameter and header order: the same canonical request. */
    struct sign_param rq[MAX_PARAMS], rh[MAX_PARAMS];
    for (size_t i = 0; i < in.nquery; i++)
        rq[i] = in.query[in.nquery - 1 - i];
    for (size_t i = 0; i < in.nheaders; i++)
        rh[i] = in.headers[in.nheaders - 1 - i];
    char *signed2 = NULL;
    char *canon2 = sign_canonical_request(in.method, in.path, rq, in.nquery, rh, in.nheaders,
                                          in.body, in.body_len, &signed2);
    FUZZ_CHECK(canon2 && signed2, "canonical request failed");
    if (!duplicate_names(&in))
        FUZZ_CHECK(strcmp(canon, canon2) == 0, "order of parameters/headers matters:\n%s\n--\n%s",
                   canon, canon2);

    int has_date = 0;
    for (size_t i = 0; i < in.nheaders; i++)
        has_date |= strcasecmp(in.headers[i].name, "x-sdk-date") == 0;
    char *auth = sign_authorization("AKFUZZ", "secret", in.method, in.path, in.query, in.nquery,
                                    in.headers, in.nheaders, in.body, in.body_len);
    FUZZ_CHECK(!auth == !has_date, "authorization %s with%s an X-Sdk-Date header",
               auth ? "given" : "refused", has_date ? "" : "out");
    if (auth) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "SDK-HMAC-SHA256 Access=AKFUZZ, SignedHeaders=");
        size_t pl = strlen(prefix), sl = strlen(signed_names);
        FUZZ_CHECK(strncmp(auth, prefix, pl) == 0 && strncmp(auth + pl, signed_names, sl) == 0 &&
                   strncmp(auth + pl + sl, ", Signature=", 12) == 0 &&
                   strlen(auth + pl + sl + 12) == 64, "authorization '%s'", auth);
    }
    check_canonical(&in, canon, signed_names);

    free(auth);
    free(canon);
    free(canon2);
    free(signed_names);
    free(signed2);
    for (size_t i = 0; i < in.nstore; i++)
        free(in.store[i]);
    return 0;
}
