/* auth: turns the resolved credentials into request headers.
 *
 * AK/SK requests are signed (sign.h) with X-Sdk-Date, Host, Content-Type
 * and, for a project-level call, X-Project-Id; a token
 * file is re-read when it changes; IAM password credentials are exchanged
 * for a per-project token that is renewed before it expires.  Secrets live
 * only here and are never logged. */
#ifndef HCX_AUTH_H
#define HCX_AUTH_H

#include "creds.h"
#include "http.h"
#include "sign.h"

struct auth;

/* Takes over creds (cleared in the caller). */
int auth_create(struct creds *creds, struct http_client *http, const char *iam_base,
                struct auth **out);
void auth_destroy(struct auth *);
/* A description without secrets, e.g. "AK/SK from environment". */
const char *auth_describe(const struct auth *);

struct auth_target {
    const char *project;              /* a project-level call: X-Project-Id with AK/SK */
    const char *method;
    const char *host;                 /* Host header value */
    const char *path;                 /* decoded path as sent */
    const struct sign_param *query;
    size_t nquery;
    const char *content_type;         /* NULL for none */
    const char *body;
    size_t body_len;
};

/* Appends the auth headers (and Host, Content-Type; with AK/SK X-Sdk-Date,
 * X-Project-Id when t->project is set, X-Security-Token) to *headers.
 * Returns 0, or -EACCES with *why set (util/why.h: no credentials,
 * unreadable token file, IAM login refused), -EINVAL for a host, project
 * or content type with a control character (or an empty project), or
 * another -errno for transport failures (*why may then be set too). */
int auth_apply(struct auth *, const struct auth_target *, struct curl_slist **headers,
               char **why);
/* Forgets a cached IAM token after the cloud refused it. */
void auth_invalidate(struct auth *, const char *project);

/* 1 when a 401 can be cured by asking again: the credentials are an IAM
 * password login, whose token auth_invalidate() drops and auth_apply()
 * obtains anew.  0 for AK/SK (environment or file; the gateway locks a key
 * after a few bad signatures, so a refused signature is never retried), for
 * a token file or an environment token (the same token would be sent
 * again), for no credentials, and for NULL. */
int auth_renewable(const struct auth *);

#endif
