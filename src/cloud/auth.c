/* auth: AK/SK signing, token files and IAM password tokens. */
#include "auth.h"
#include "why.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct iam_token {
    struct iam_token *next;
    char *project;
    char *token;
    time_t obtained, expires;
};

struct auth {
    struct creds creds;
    struct http_client *http;
    char *iam_base;
    char description[256];
    pthread_mutex_t lock;      /* token file cache and IAM tokens */
    char *file_token;
    struct timespec file_mtime;
    struct iam_token *tokens;
};

int auth_create(struct creds *creds, struct http_client *http, const char *iam_base,
                struct auth **out)
{
    struct auth *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->creds = *creds;
    memset(creds, 0, sizeof *creds);
    a->http = http;
    const char *iam = a->creds.iam_endpoint ? a->creds.iam_endpoint : iam_base;
    a->iam_base = iam ? strdup(iam) : NULL;
    pthread_mutex_init(&a->lock, NULL);
    static const char *const kinds[] = { "none", "AK/SK", "token file", "IAM password" };
    snprintf(a->description, sizeof a->description, "%s (%s)", kinds[a->creds.kind],
             a->creds.source ? a->creds.source : "not configured");
    *out = a;
    return 0;
}

static void free_tokens(struct iam_token *t)
{
    while (t) {
        struct iam_token *next = t->next;
        if (t->token)
            explicit_bzero(t->token, strlen(t->token));
        free(t->token);
        free(t->project);
        free(t);
        t = next;
    }
}

void auth_destroy(struct auth *a)
{
    if (!a)
        return;
    creds_clear(&a->creds);
    if (a->file_token)
        explicit_bzero(a->file_token, strlen(a->file_token));
    free(a->file_token);
    free_tokens(a->tokens);
    free(a->iam_base);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

const char *auth_describe(const struct auth *a) { return a->description; }

static int add_header(struct curl_slist **headers, const char *name, const char *value)
{
    char line[40000];
    int n = snprintf(line, sizeof line, "%s: %s", name, value);
    if (n < 0 || (size_t)n >= sizeof line)
        return -EINVAL;
    struct curl_slist *l = curl_slist_append(*headers, line);
    explicit_bzero(line, (size_t)n); /* may hold a token */
    if (!l)
        return -ENOMEM;
    *headers = l;
    return 0;
}

/* Copies the current token of the token file, re-reading it if it changed. */
static int token_from_file(struct auth *a, char **out, char **why)
{
    struct stat st;
    if (stat(a->creds.token_file, &st) < 0) {
        set_why(why, "token file %s: %s", a->creds.token_file, strerror(errno));
        return -EACCES;
    }
    pthread_mutex_lock(&a->lock);
    if (!a->file_token || st.st_mtim.tv_sec != a->file_mtime.tv_sec ||
        st.st_mtim.tv_nsec != a->file_mtime.tv_nsec) {
        char *token = NULL, *err = NULL;
        struct timespec mtime;
        int rc = creds_read_token_file(a->creds.token_file, &token, &mtime, &err);
        if (rc < 0) {
            pthread_mutex_unlock(&a->lock);
            set_why(why, "%s", err ? err : "token file unreadable");
            free(err);
            return -EACCES;
        }
        if (a->file_token)
            explicit_bzero(a->file_token, strlen(a->file_token));
        free(a->file_token);
        a->file_token = token;
        a->file_mtime = mtime;
        log_info("token file %s (re)read", a->creds.token_file);
    }
    *out = strdup(a->file_token);
    pthread_mutex_unlock(&a->lock);
    return *out ? 0 : -ENOMEM;
}

static time_t parse_rfc3339(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    return end ? timegm(&tm) : (time_t)-1;
}

/* Logs in to IAM with the password method; the token is scoped to project. */
static int iam_login(struct auth *a, const char *project, struct iam_token **out, char **why,
                     double *retry_in)
{
    *retry_in = -1; /* >= 0: a transient failure, worth another attempt */
    if (!a->iam_base) {
        set_why(why, "no IAM endpoint configured for password login");
        return -EACCES;
    }
    json_t *body_json = json_pack(
        "{s:{s:{s:[s], s:{s:{s:s, s:s, s:{s:s}}}}, s:{s:{s:s}}}}", "auth", "identity", "methods",
        "password", "password", "user", "name", a->creds.user, "password", a->creds.password,
        "domain", "name", a->creds.domain, "scope", "project", "id", project);
    char *body = body_json ? json_dumps(body_json, JSON_COMPACT) : NULL;
    json_decref(body_json);
    if (!body)
        return -ENOMEM;
    char url[2048];
    snprintf(url, sizeof url, "%s/v3/auth/tokens", a->iam_base);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json;charset=utf8");
    struct http_request req = { .call = CALL_TOKEN, .method = "POST", .url = url,
                                .headers = headers, .body = body, .body_len = strlen(body),
                                .out_fd = -1 };
    struct http_response resp;
    http_response_init(&resp);
    int rc = http_perform(a->http, &req, &resp);
    explicit_bzero(body, strlen(body));
    free(body);
    curl_slist_free_all(headers);
    if (rc < 0) {
        set_why(why, "IAM login at %s: %s", a->iam_base, resp.error);
        /* A refused or reset connection: a login has no side effect.  Not
         * after a timeout: that already took request_timeout, with the
         * token lock held. */
        if (rc != -ECANCELED && rc != -ETIMEDOUT)
            *retry_in = 0.5;
    } else if (resp.status != 201 && resp.status != 200) {
        json_t *err = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(err, "error_msg"));
        /* Server text: control characters (newlines, escapes) would break
         * the "error:" reply line and forge log lines. */
        char safe[201];
        size_t n = 0;
        for (size_t i = 0; msg && msg[i] && n + 1 < sizeof safe; i++)
            safe[n++] = (unsigned char)msg[i] < 0x20 || msg[i] == 0x7f ? ' ' : msg[i];
        safe[n] = '\0';
        set_why(why, "IAM login refused (HTTP %ld%s%s)", resp.status, msg ? ": " : "", safe);
        json_decref(err);
        rc = resp.status == 401 || resp.status == 403 ? -EACCES : -EIO;
        if (resp.status == 429 || resp.status >= 500) {
            rc = resp.status == 429 ? -EAGAIN : -EIO;
            *retry_in = resp.retry_after >= 0 ? resp.retry_after : 0.5;
        }
    } else if (!resp.subject_token || !*resp.subject_token) {
        set_why(why, "IAM login answered without X-Subject-Token");
        rc = -EIO;
    } else {
        json_t *reply = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
        time_t now = time(NULL);
        time_t expires = parse_rfc3339(
            json_string_value(json_object_get(json_object_get(reply, "token"), "expires_at")));
        json_decref(reply);
        struct iam_token *t = calloc(1, sizeof *t);
        if (!t) {
            rc = -ENOMEM;
        } else {
            t->project = strdup(project);
            t->token = resp.subject_token;
            resp.subject_token = NULL;
            t->obtained = now;
            t->expires = expires > now ? expires : now + 3600;
            *out = t;
            log_info("IAM token obtained for project %s, valid until %lld", project,
                     (long long)t->expires);
        }
    }
    if (resp.subject_token)
        explicit_bzero(resp.subject_token, strlen(resp.subject_token));
    http_response_release(&resp);
    return rc;
}

enum { IAM_ATTEMPTS = 4 };

/* A login is idempotent, so throttling, 5xx and connection failures are
 * retried a few times; each wait is capped so that the whole stays short
 * (the caller holds the token lock). */
static int iam_login_retrying(struct auth *a, const char *project, struct iam_token **out,
                              char **why)
{
    for (int attempt = 1;; attempt++) {
        double wait;
        int rc = iam_login(a, project, out, why, &wait);
        if (rc == 0 || wait < 0 || attempt >= IAM_ATTEMPTS)
            return rc;
        if (wait > 2)
            wait = 2;
        log_warn("%s; retrying in %.1fs (%d/%d)", why && *why ? *why : "IAM login failed", wait,
                 attempt, IAM_ATTEMPTS);
        struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
}

static int needs_renewal(const struct iam_token *t, time_t now)
{
    time_t life = t->expires - t->obtained;
    time_t margin = life / 4 < 3600 ? life / 4 : 3600;
    return now >= t->expires - margin;
}

static int token_from_iam(struct auth *a, const char *project, char **out, char **why)
{
    /* The lock is held across the login so that concurrent calls do not
     * each log in; logins are rare (once a day per project). */
    pthread_mutex_lock(&a->lock);
    struct iam_token **pp = &a->tokens;
    while (*pp && strcmp((*pp)->project, project) != 0)
        pp = &(*pp)->next;
    time_t now = time(NULL);
    if (!*pp || needs_renewal(*pp, now)) {
        struct iam_token *fresh = NULL;
        int rc = iam_login_retrying(a, project, &fresh, why);
        if (rc < 0 && *pp && now < (*pp)->expires - 30) {
            /* Renewal is early; the current token still works for now. */
            log_warn("%s; keeping the current token (valid until %lld)",
                     why && *why ? *why : "IAM login failed", (long long)(*pp)->expires);
            if (why) {
                free(*why); /* the call goes on: no message to hand back */
                *why = NULL;
            }
            *out = strdup((*pp)->token);
            pthread_mutex_unlock(&a->lock);
            return *out ? 0 : -ENOMEM;
        }
        if (rc < 0) {
            pthread_mutex_unlock(&a->lock);
            return rc;
        }
        if (*pp) {
            fresh->next = (*pp)->next;
            (*pp)->next = NULL;
            free_tokens(*pp);
        }
        *pp = fresh;
    }
    *out = strdup((*pp)->token);
    pthread_mutex_unlock(&a->lock);
    return *out ? 0 : -ENOMEM;
}

void auth_invalidate(struct auth *a, const char *project)
{
    pthread_mutex_lock(&a->lock);
    for (struct iam_token **pp = &a->tokens; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->project, project) == 0) {
            struct iam_token *t = *pp;
            *pp = t->next;
            t->next = NULL;
            free_tokens(t);
            break;
        }
    }
    pthread_mutex_unlock(&a->lock);
}

/* Signs every header that auth_apply() sends, as the Node.js and Python
 * SDKs do (cloud-api.md §9): Host, Content-Type, X-Sdk-Date, and
 * X-Project-Id on a project-level call (the SDKs' BasicCredentials always
 * add it; a sub-project needs it), X-Security-Token with temporary keys. */
static int sign_aksk(struct auth *a, const struct auth_target *t, struct curl_slist **headers)
{
    char date[17];
    sign_format_date(time(NULL), date);
    struct sign_param signed_headers[5];
    size_t n = 0;
    signed_headers[n++] = (struct sign_param){ "host", t->host };
    signed_headers[n++] = (struct sign_param){ "x-sdk-date", date };
    if (t->content_type)
        signed_headers[n++] = (struct sign_param){ "content-type", t->content_type };
    if (t->project)
        signed_headers[n++] = (struct sign_param){ "x-project-id", t->project };
    if (a->creds.security_token)
        signed_headers[n++] = (struct sign_param){ "x-security-token", a->creds.security_token };
    char *authorization = sign_authorization(a->creds.ak, a->creds.sk, t->method, t->path,
                                             t->query, t->nquery, signed_headers, n, t->body,
                                             t->body_len);
    if (!authorization)
        return -ENOMEM;
    int rc = add_header(headers, "X-Sdk-Date", date);
    if (!rc && t->project)
        rc = add_header(headers, "X-Project-Id", t->project);
    if (!rc && a->creds.security_token)
        rc = add_header(headers, "X-Security-Token", a->creds.security_token);
    if (!rc)
        rc = add_header(headers, "Authorization", authorization);
    free(authorization);
    return rc;
}

/* A header value must not be able to end its line or add a header. */
static int header_safe(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return 0;
    return 1;
}

int auth_renewable(const struct auth *a)
{
    return a && a->creds.kind == CREDS_PASSWORD;
}

int auth_apply(struct auth *a, const struct auth_target *t, struct curl_slist **headers,
               char **why)
{
    if (!header_safe(t->host) || (t->project && (!*t->project || !header_safe(t->project))) ||
        (t->content_type && !header_safe(t->content_type))) {
        set_why(why, "refusing a request with a control character in its host, "
                     "project or content type");
        return -EINVAL;
    }
    int rc = add_header(headers, "Host", t->host);
    if (!rc && t->content_type)
        rc = add_header(headers, "Content-Type", t->content_type);
    if (rc)
        return rc;
    char *token = NULL;
    switch (a->creds.kind) {
    case CREDS_NONE:
        set_why(why, "no credentials configured (set CLOUD_SDK_AK/CLOUD_SDK_SK, "
                     "-o credentials=FILE or -o token_file=FILE)");
        return -EACCES;
    case CREDS_AKSK:
        return sign_aksk(a, t, headers);
    case CREDS_TOKEN_FILE:
        rc = token_from_file(a, &token, why);
        break;
    case CREDS_PASSWORD:
        rc = token_from_iam(a, t->project, &token, why);
        break;
    }
    if (rc)
        return rc;
    rc = add_header(headers, "X-Auth-Token", token);
    explicit_bzero(token, strlen(token));
    free(token);
    return rc;
}
