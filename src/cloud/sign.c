/* sign: SDK-HMAC-SHA256 canonical request, string to sign and signature,
 * as the official Huawei Cloud SDK signer computes them (cloud-api.md §5). */
#include "sign.h"
#include "strbuf.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sign_format_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void encode_into(struct strbuf *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            strbuf_putc(sb, (char)c);
        } else {
            char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
            strbuf_append(sb, esc, 3);
        }
    }
}

char *sign_uri_encode(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    encode_into(&sb, s, strlen(s));
    return strbuf_finish(&sb);
}

static void hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data, len, digest);
    hex_encode(digest, sizeof digest, out);
}

struct encoded_param {
    const char *raw_name, *raw_value; /* as given: the sort keys */
    char *name;
    char *value;
};

/* The SDKs sort the parameters by their decoded names, and a repeated
 * name's values by decoded value, and encode afterwards (Go signer.go
 * canonicalQueryString, Node.js signer.js CanonicalQueryString): sorting
 * the encoded forms orders "a-" and "a/" ("a%2F") the other way round. */
static int compare_params(const void *a, const void *b)
{
    const struct encoded_param *x = a, *y = b;
    int c = strcmp(x->raw_name, y->raw_name);
    return c ? c : strcmp(x->raw_value, y->raw_value);
}

struct lower_header {
    char *name;
    const char *value;
};

static int compare_headers(const void *a, const void *b)
{
    return strcmp(((const struct lower_header *)a)->name,
                  ((const struct lower_header *)b)->name);
}

/* Values are trimmed of surrounding blanks, as the SDK does. */
static void put_trimmed(struct strbuf *sb, const char *v)
{
    const char *end = v + strlen(v);
    while (v < end && isspace((unsigned char)*v))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    strbuf_append(sb, v, (size_t)(end - v));
}

static void put_canonical_uri(struct strbuf *sb, const char *path)
{
    const char *p = path;
    /* Each segment between slashes is encoded; the slashes are kept. */
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t seg = slash ? (size_t)(slash - p) : strlen(p);
        encode_into(sb, p, seg);
        if (!slash)
            break;
        strbuf_putc(sb, '/');
        p = slash + 1;
    }
    if (sb->len == 0 || sb->data[sb->len - 1] != '/')
        strbuf_putc(sb, '/');
}

char *sign_canonical_request(const char *method, const char *path,
                             const struct sign_param *query, size_t nquery,
                             const struct sign_param *headers, size_t nheaders,
                             const void *body, size_t body_len, char **signed_headers)
{
    char *result = NULL;
    *signed_headers = NULL;
    struct strbuf canon = STRBUF_INIT, signed_names = STRBUF_INIT;
    struct encoded_param *params = calloc(nquery ? nquery : 1, sizeof *params);
    struct lower_header *hdrs = calloc(nheaders ? nheaders : 1, sizeof *hdrs);
    if (!params || !hdrs)
        goto out;

    for (size_t i = 0; i < nquery; i++) {
        params[i].raw_name = query[i].name;
        params[i].raw_value = query[i].value;
        params[i].name = sign_uri_encode(query[i].name);
        params[i].value = sign_uri_encode(query[i].value);
        if (!params[i].name || !params[i].value)
            goto out;
    }
    qsort(params, nquery, sizeof *params, compare_params);

    for (size_t i = 0; i < nheaders; i++) {
        hdrs[i].name = strdup(headers[i].name);
        if (!hdrs[i].name)
            goto out;
        for (char *c = hdrs[i].name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        hdrs[i].value = headers[i].value;
    }
    qsort(hdrs, nheaders, sizeof *hdrs, compare_headers);

    strbuf_puts(&canon, method);
    strbuf_putc(&canon, '\n');
    put_canonical_uri(&canon, path);
    strbuf_putc(&canon, '\n');
    for (size_t i = 0; i < nquery; i++) {
        if (i)
            strbuf_putc(&canon, '&');
        strbuf_printf(&canon, "%s=%s", params[i].name, params[i].value);
    }
    strbuf_putc(&canon, '\n');
    for (size_t i = 0; i < nheaders; i++) {
        strbuf_printf(&canon, "%s:", hdrs[i].name);
        put_trimmed(&canon, hdrs[i].value);
        strbuf_putc(&canon, '\n');
        if (i)
            strbuf_putc(&signed_names, ';');
        strbuf_puts(&signed_names, hdrs[i].name);
    }
    strbuf_putc(&canon, '\n');
    strbuf_puts(&canon, signed_names.data ? signed_names.data : "");
    strbuf_putc(&canon, '\n');
    char body_hash[65];
    sha256_hex(body ? body : "", body ? body_len : 0, body_hash);
    strbuf_puts(&canon, body_hash);
    if (canon.failed || signed_names.failed)
        goto out;
    if (!(*signed_headers = strbuf_finish(&signed_names)))
        goto out;
    if (!(result = strbuf_finish(&canon))) {
        free(*signed_headers);
        *signed_headers = NULL;
    }

out:
    if (params)
        for (size_t i = 0; i < nquery; i++) {
            free(params[i].name);
            free(params[i].value);
        }
    if (hdrs)
        for (size_t i = 0; i < nheaders; i++)
            free(hdrs[i].name);
    free(params);
    free(hdrs);
    strbuf_release(&canon);
    strbuf_release(&signed_names);
    return result;
}

char *sign_authorization(const char *ak, const char *sk, const char *method,
                         const char *path, const struct sign_param *query, size_t nquery,
                         const struct sign_param *headers, size_t nheaders,
                         const void *body, size_t body_len)
{
    /* The date signed is the X-Sdk-Date header's (any case; the last one). */
    const char *date = NULL;
    for (size_t i = 0; i < nheaders; i++)
        if (strcasecmp(headers[i].name, "x-sdk-date") == 0)
            date = headers[i].value;
    if (!date)
        return NULL;

    char *signed_names = NULL;
    char *canon = sign_canonical_request(method, path, query, nquery, headers, nheaders, body,
                                         body_len, &signed_names);
    if (!canon)
        return NULL;
    char canon_hash[65];
    sha256_hex(canon, strlen(canon), canon_hash);
    free(canon);

    char *result = NULL;
    struct strbuf to_sign = STRBUF_INIT;
    strbuf_printf(&to_sign, "SDK-HMAC-SHA256\n%s\n%s", date, canon_hash);
    if (!to_sign.failed) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        HMAC(EVP_sha256(), sk, (int)strlen(sk), (const unsigned char *)to_sign.data, to_sign.len,
             mac, &mac_len);
        char signature[2 * EVP_MAX_MD_SIZE + 1];
        hex_encode(mac, mac_len, signature);
        struct strbuf auth = STRBUF_INIT;
        strbuf_printf(&auth, "SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%s", ak,
                      signed_names, signature);
        result = strbuf_finish(&auth);
    }
    strbuf_release(&to_sign);
    free(signed_names);
    return result;
}
