/* sign: Huawei Cloud APIG "SDK-HMAC-SHA256" request signing (AK/SK).
 *
 * Reproduces the official SDK signer byte for byte (see
 * tests/data/aksk-sign-vectors.json). Pure functions, no I/O, thread-safe. */
#ifndef HCX_SIGN_H
#define HCX_SIGN_H

#include <stddef.h>
#include <time.h>

struct sign_param {
    const char *name;
    const char *value;
};

/* Formats t as the X-Sdk-Date value YYYYMMDDTHHMMSSZ (UTC) into out[17]. */
void sign_format_date(time_t t, char out[17]);

/* Percent-encodes everything but A-Z a-z 0-9 - _ . ~ (upper-case hex).
 * Returns a malloc'd string, or NULL when out of memory. */
char *sign_uri_encode(const char *s);

/* Computes the Authorization header value for a request.
 * path is the decoded path; query holds the decoded query parameters;
 * headers are exactly the headers to sign (any case; must include host and
 * X-Sdk-Date).  Returns a malloc'd string, or NULL when out of memory. */
char *sign_authorization(const char *ak, const char *sk, const char *method,
                         const char *path, const struct sign_param *query, size_t nquery,
                         const struct sign_param *headers, size_t nheaders,
                         const void *body, size_t body_len);

/* The canonical request that sign_authorization() hashes (method, canonical
 * URI, the encoded query sorted by decoded name then decoded value (as the
 * SDKs sort), sorted lower-cased headers with trimmed values,
 * signed header names, hex SHA-256 of the body), with *signed_headers = the
 * SignedHeaders list ("host;x-sdk-date").  Both malloc'd; NULL (and
 * *signed_headers NULL) when out of memory.  Separate so that it can be
 * tested and fuzzed on its own. */
char *sign_canonical_request(const char *method, const char *path,
                             const struct sign_param *query, size_t nquery,
                             const struct sign_param *headers, size_t nheaders,
                             const void *body, size_t body_len, char **signed_headers);

#endif
