/* creds: looks credentials up the way the official Huawei Cloud SDKs do
 * (option file, token file, environment, profile file), parses the SDKs'
 * INI profile, and reads token files.
 *
 * Every file is opened first and checked with fstat() on the descriptor, so
 * the checks apply to exactly what is read (paths may be symlinks, e.g. a
 * Kubernetes secret, so O_NOFOLLOW is not used).  Messages name files,
 * variables, keys and line numbers, never a value: they end up in logs. */
#include "creds.h"
#include "why.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void creds_clear(struct creds *c)
{
    if (!c)
        return;
    /* Wipe every string, not only sk/password: an AK or a user name is not
     * a secret on its own but has no business lingering in freed memory. */
    wipe_free(c->ak);
    wipe_free(c->sk);
    wipe_free(c->security_token);
    wipe_free(c->token_file);
    wipe_free(c->user);
    wipe_free(c->password);
    wipe_free(c->domain);
    wipe_free(c->iam_endpoint);
    wipe_free(c->source);
    memset(c, 0, sizeof *c);
    c->kind = CREDS_NONE;
}

static int is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

static int has_control(const char *s)
{
    for (; *s; s++)
        if (is_control((unsigned char)*s))
            return 1;
    return 0;
}

/* Opens a credentials or token file and checks, on the open descriptor,
 * that it is a regular file owned by us and private to us: anyone else who
 * can read it can act as us in the cloud, and anyone who can write it can
 * make us act as them.  O_NONBLOCK so that a FIFO is refused instead of
 * blocking the mount. */
static int open_private(const char *label, const char *path, int *fd_out, struct stat *st,
                        char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        set_why(why, "%s %s: %s", label, path, strerror(e));
        return -e;
    }
    int rc = 0;
    if (fstat(fd, st) < 0) {
        rc = -errno;
        set_why(why, "%s %s: %s", label, path, strerror(-rc));
    } else if (!S_ISREG(st->st_mode)) {
        rc = -EINVAL;
        set_why(why, "%s %s is not a regular file", label, path);
    } else if (st->st_uid != geteuid()) {
        rc = -EPERM;
        set_why(why, "%s %s is owned by uid %u, not by the user running hcexportfs (uid %u)",
                label, path, (unsigned)st->st_uid, (unsigned)geteuid());
    } else if (st->st_mode & (S_IRWXG | S_IRWXO)) {
        rc = -EPERM;
        set_why(why, "%s %s is accessible by group or others (mode %04o); run: chmod 600 %s",
                label, path, (unsigned)(st->st_mode & 07777), path);
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Reads at most max bytes; the file may have grown since fstat(), so the
 * limit is enforced on what is actually read.  *data is NUL-terminated. */
static int read_limited(int fd, size_t max, const char *label, const char *path, char **data,
                        size_t *len, char **why)
{
    char *buf = malloc(max + 2);
    if (!buf) {
        set_why(why, "%s %s: out of memory", label, path);
        return -ENOMEM;
    }
    size_t n = 0;
    while (n <= max) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            explicit_bzero(buf, n);
            free(buf);
            set_why(why, "%s %s: %s", label, path, strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        explicit_bzero(buf, n);
        free(buf);
        set_why(why, "%s %s is larger than %zu KiB", label, path, max / 1024);
        return -EINVAL;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

static int read_private_file(const char *label, const char *path, size_t max, char **data,
                             size_t *len, struct stat *st, char **why)
{
    int fd;
    int rc = open_private(label, path, &fd, st, why);
    if (rc < 0)
        return rc;
    if ((unsigned long long)st->st_size > max) {
        set_why(why, "%s %s is larger than %zu KiB", label, path, max / 1024);
        rc = -EINVAL;
    } else {
        rc = read_limited(fd, max, label, path, data, len, why);
    }
    close(fd);
    return rc;
}

/* ---- the INI profile ---- */

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

static char *trim(char *s, char *end)
{
    while (s < end && is_blank(*s))
        s++;
    while (end > s && is_blank(end[-1]))
        end--;
    *end = '\0';
    return s;
}

struct profile_key {
    const char *name;
    size_t offset; /* into struct creds */
};

static const struct profile_key profile_keys[] = {
    { "ak", offsetof(struct creds, ak) },
    { "sk", offsetof(struct creds, sk) },
    { "security_token", offsetof(struct creds, security_token) },
    { "iam_endpoint", offsetof(struct creds, iam_endpoint) },
    { "user", offsetof(struct creds, user) },
    { "password", offsetof(struct creds, password) },
    { "domain", offsetof(struct creds, domain) },
};
#define NKEYS (sizeof profile_keys / sizeof *profile_keys)

/* The last occurrence of q (1 or 3 bytes) in s, or NULL. */
static char *last_quote(char *s, const char *q)
{
    char *found = NULL;
    for (char *p = strstr(s, q); p; p = strstr(p + 1, q))
        found = p;
    return found;
}

/* A value as the SDKs' INI readers take it, from v (trimmed; modified in
 * place): surrounded by """...""", "...", '...' or `...` (go-ini's quotes),
 * the text inside the quotes verbatim, and after the closing quote only
 * blanks or a comment; otherwise the text up to an inline comment, a '#' or
 * ';' that starts the value or follows a blank, trimmed.  go-ini cuts at
 * any '#' or ';' and Python's configparser at none: AK/SK never hold one,
 * so both SDKs read them alike; a password with " #" needs quotes here. */
static char *profile_value(char *v)
{
    const char *q = NULL;
    if (!strncmp(v, "\"\"\"", 3))
        q = "\"\"\"";
    else if (*v == '"')
        q = "\"";
    else if (*v == '\'')
        q = "'";
    else if (*v == '`')
        q = "`";
    if (q) {
        size_t ql = strlen(q);
        char *close = v[ql] ? last_quote(v + ql, q) : NULL;
        if (close) {
            const char *rest = close + ql;
            while (is_blank(*rest))
                rest++;
            if (*rest == '\0' || *rest == '#' || *rest == ';') {
                *close = '\0';
                return v + ql;
            }
        }
    }
    for (char *c = v; *c; c++) {
        if ((*c == '#' || *c == ';') && (c == v || is_blank(c[-1]))) {
            *c = '\0';
            break;
        }
    }
    return trim(v, v + strlen(v));
}

/* Parses the SDKs' profile as leniently as their INI readers (go-ini in
 * the Go SDK, configparser in the Python SDK):
 *  - lines end with LF or CRLF; a UTF-8 BOM is skipped; blanks around
 *    everything are ignored; blank lines and lines whose first non-blank
 *    is '#' or ';' are comments;
 *  - "[name]" starts a section; the name is trimmed and, as in both SDKs,
 *    case-sensitive ("[Basic]" is not [basic]); text after the last ']' is
 *    ignored; a second [basic] continues the first;
 *  - in [basic], "key = value" or "key: value" (the first '=' or ':' ends
 *    the key); key names are case-insensitive and may be quoted with '"' or
 *    '`'; values as profile_value() reads them; an empty value is as if the
 *    key were absent;
 *  - keys outside [basic] (before any section, or in other sections) and
 *    unknown keys (project_id, domain_id, ...) are ignored;
 *  - refused: a NUL byte, an unclosed '[', a line in [basic] without '='
 *    or ':', a value with a control character, and a key given twice in
 *    [basic] (any case; go-ini keeps the last, configparser refuses: for
 *    credentials, refusing is the safe reading of an ambiguous file).
 * data is modified in place. */
static int parse_profile(char *data, size_t len, const char *label, const char *path,
                         struct creds *c, char **why)
{
    if (memchr(data, '\0', len)) {
        set_why(why, "%s %s contains a NUL byte", label, path);
        return -EINVAL;
    }
    char *p = data, *end = data + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3))
        p += 3; /* a UTF-8 BOM, as Windows editors write */
    int in_basic = 0, seen_basic = 0, any_section = 0;
    unsigned seen[NKEYS] = { 0 }; /* the line each key was given on */
    unsigned case_line = 0, orphan_line = 0;
    for (unsigned line = 1; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        if (eol > p && eol[-1] == '\r')
            eol--;
        char *s = trim(p, eol);
        p = next;
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *close = strrchr(s, ']');
            if (!close) {
                set_why(why, "%s %s line %u: malformed section header (no ']')", label, path,
                        line);
                return -EINVAL;
            }
            const char *name = trim(s + 1, close);
            in_basic = !strcmp(name, "basic");
            seen_basic |= in_basic;
            any_section = 1;
            if (!in_basic && !strcasecmp(name, "basic") && !case_line)
                case_line = line;
            continue;
        }
        if (!in_basic) {
            if (!any_section && !orphan_line)
                orphan_line = line;
            continue;
        }
        char *eq = strpbrk(s, "=:");
        if (!eq) {
            set_why(why, "%s %s line %u: expected 'key = value' in [basic]", label, path, line);
            return -EINVAL;
        }
        char *key = trim(s, eq);
        size_t klen = strlen(key);
        if (klen >= 2 && (key[0] == '"' || key[0] == '`') && key[klen - 1] == key[0]) {
            key[klen - 1] = '\0';
            key++;
        }
        char *value = profile_value(trim(eq + 1, eq + 1 + strlen(eq + 1)));
        size_t k = NKEYS;
        for (size_t i = 0; i < NKEYS; i++)
            if (!strcasecmp(key, profile_keys[i].name))
                k = i;
        if (k == NKEYS)
            continue;
        if (seen[k]) {
            set_why(why, "%s %s line %u: duplicate key '%s' in [basic] (first on line %u)",
                    label, path, line, profile_keys[k].name, seen[k]);
            return -EINVAL;
        }
        seen[k] = line;
        if (has_control(value)) {
            set_why(why, "%s %s line %u: the value of '%s' contains a control character", label,
                    path, line, profile_keys[k].name);
            return -EINVAL;
        }
        if (*value == '\0')
            continue; /* "security_token =" means none */
        char **slot = (char **)((char *)c + profile_keys[k].offset);
        if (!(*slot = strdup(value))) {
            set_why(why, "%s %s: out of memory", label, path);
            return -ENOMEM;
        }
    }
    if (!seen_basic && case_line) {
        set_why(why, "%s %s has no [basic] section (section names are case-sensitive, as in "
                     "the SDKs; line %u has another spelling)", label, path, case_line);
        return -EINVAL;
    }
    if (!seen_basic && orphan_line) {
        set_why(why, "%s %s has no [basic] section (the keys from line %u on, before any "
                     "section header, are not read)", label, path, orphan_line);
        return -EINVAL;
    }
    if (!seen_basic) {
        set_why(why, "%s %s has no [basic] section", label, path);
        return -EINVAL;
    }
    if (c->iam_endpoint && strncmp(c->iam_endpoint, "https://", 8) &&
        strncmp(c->iam_endpoint, "http://", 7)) {
        set_why(why, "%s %s: iam_endpoint must be an http:// or https:// URL", label, path);
        return -EINVAL;
    }
    if (c->ak || c->sk) {
        if (!c->ak || !c->sk) {
            set_why(why, "%s %s: [basic] has %s but no %s", label, path, c->ak ? "ak" : "sk",
                    c->ak ? "sk" : "ak");
            return -EINVAL;
        }
        /* AK/SK wins over a password login in the same section. */
        wipe_free(c->user);
        wipe_free(c->password);
        wipe_free(c->domain);
        c->user = c->password = c->domain = NULL;
        c->kind = CREDS_AKSK;
        return 0;
    }
    wipe_free(c->security_token); /* only meaningful with AK/SK */
    c->security_token = NULL;
    if (c->user || c->password || c->domain) {
        if (!c->user || !c->password || !c->domain) {
            char missing[32] = "";
            const char *names[] = { "user", "password", "domain" };
            const char *vals[] = { c->user, c->password, c->domain };
            for (int i = 0; i < 3; i++) {
                if (!vals[i]) {
                    if (missing[0])
                        strcat(missing, ", ");
                    strcat(missing, names[i]);
                }
            }
            set_why(why, "%s %s: [basic] needs user, password and domain for IAM password login;"
                         " missing: %s", label, path, missing);
            return -EINVAL;
        }
        c->kind = CREDS_PASSWORD;
        return 0;
    }
    set_why(why, "%s %s: [basic] has neither ak and sk nor user, password and domain", label,
            path);
    return -EINVAL;
}

/* Reads and parses a credentials file; note says where the path came from
 * (for source), or is NULL. */
static int load_profile(const char *path, const char *note, struct creds *out, char **why)
{
    const char *label = "credentials file";
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    int rc = read_private_file(label, path, CREDS_FILE_MAX, &data, &len, &st, why);
    if (rc < 0)
        return rc;
    struct creds c = { .kind = CREDS_NONE };
    rc = parse_profile(data, len, label, path, &c, why);
    explicit_bzero(data, len);
    free(data);
    if (rc == 0 && asprintf(&c.source, "%s %s%s", label, path, note ? note : "") < 0) {
        c.source = NULL;
        set_why(why, "%s %s: out of memory", label, path);
        rc = -ENOMEM;
    }
    if (rc < 0) {
        creds_clear(&c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- token files ---- */

/* The token file is re-read for as long as the mount lives, after the
 * daemon has changed directory to "/": keep it absolute.  Not realpath():
 * a symlink (a Kubernetes secret) must be followed anew on each read. */
static int absolute_path(const char *path, char **out)
{
    if (path[0] == '/')
        return (*out = strdup(path)) ? 0 : -ENOMEM;
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return errno == ENOMEM ? -ENOMEM : -errno;
    int n = asprintf(out, "%s%s%s", cwd, cwd[strlen(cwd) - 1] == '/' ? "" : "/", path);
    free(cwd);
    if (n < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int use_token_file(const char *path, struct creds *out, char **why)
{
    int fd;
    struct stat st;
    /* Checked now so that a mistake shows at mount time; the content may
     * legitimately arrive later (a sidecar refreshing it), so it is read
     * when a call needs it. */
    int rc = open_private("token file", path, &fd, &st, why);
    if (rc < 0)
        return rc;
    close(fd);
    struct creds c = { .kind = CREDS_TOKEN_FILE };
    rc = absolute_path(path, &c.token_file);
    if (rc == 0 && asprintf(&c.source, "token file %s", c.token_file) < 0) {
        c.source = NULL;
        rc = -ENOMEM;
    }
    if (rc < 0) {
        set_why(why, "token file %s: cannot make the path absolute: %s", path, strerror(-rc));
        creds_clear(&c);
        return rc;
    }
    *out = c;
    return 0;
}

int creds_read_token_file(const char *path, char **token, struct timespec *mtime, char **why)
{
    const char *label = "token file";
    *token = NULL;
    if (why)
        *why = NULL;
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    int rc = read_private_file(label, path, CREDS_TOKEN_MAX, &data, &len, &st, why);
    if (rc < 0)
        return rc;
    size_t b = 0, e = len;
    while (b < e && data[b] && strchr(" \t\r\n\v\f", data[b]))
        b++;
    while (e > b && data[e - 1] && strchr(" \t\r\n\v\f", data[e - 1]))
        e--;
    if (b == e) {
        set_why(why, "%s %s is empty", label, path);
        rc = -EINVAL;
    }
    for (size_t i = b; rc == 0 && i < e; i++) {
        unsigned char c = (unsigned char)data[i];
        /* The token goes into an X-Auth-Token header: only printable,
         * non-blank ASCII, so it can never end the header or add one. */
        if (c <= 0x20 || c >= 0x7f) {
            set_why(why, "%s %s: the token has a blank, control or non-ASCII byte at offset %zu",
                    label, path, i);
            rc = -EINVAL;
        }
    }
    if (rc == 0 && !(*token = strndup(data + b, e - b))) {
        set_why(why, "%s %s: out of memory", label, path);
        rc = -ENOMEM;
    }
    explicit_bzero(data, len);
    free(data);
    if (rc == 0 && mtime)
        *mtime = st.st_mtim;
    return rc;
}

/* ---- environment ---- */

/* An empty variable counts as unset, as in the SDKs (`export X=` is a
 * common way to switch one off). */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Looks at one family of variables (HUAWEICLOUD_SDK_ or CLOUD_SDK_).
 * Returns 1 when found, 0 when neither AK nor SK is set, -errno on error. */
static int env_family(const char *prefix, struct creds *out, char **why)
{
    char ak_name[64], sk_name[64], st_name[64];
    snprintf(ak_name, sizeof ak_name, "%sAK", prefix);
    snprintf(sk_name, sizeof sk_name, "%sSK", prefix);
    snprintf(st_name, sizeof st_name, "%sSECURITY_TOKEN", prefix);
    const char *ak = env(ak_name), *sk = env(sk_name), *token = env(st_name);
    if (!ak && !sk) {
        if (token)
            log_warn("environment %s is set without %s and %s; ignored", st_name, ak_name,
                     sk_name);
        return 0;
    }
    if (!ak || !sk) {
        set_why(why, "environment %s is set but %s is not", ak ? ak_name : sk_name,
                ak ? sk_name : ak_name);
        return -EINVAL;
    }
    const char *bad = has_control(ak) ? ak_name : has_control(sk) ? sk_name
                    : token && has_control(token) ? st_name : NULL;
    if (bad) {
        set_why(why, "environment %s contains a control character", bad);
        return -EINVAL;
    }
    struct creds c = { .kind = CREDS_AKSK };
    c.ak = strdup(ak);
    c.sk = strdup(sk);
    c.security_token = token ? strdup(token) : NULL;
    if (!c.ak || !c.sk || (token && !c.security_token) ||
        asprintf(&c.source, "environment %s", ak_name) < 0) {
        c.source = NULL;
        creds_clear(&c);
        set_why(why, "environment %s: out of memory", ak_name);
        return -ENOMEM;
    }
    *out = c;
    return 1;
}

/* ---- the lookup order ---- */

int creds_resolve(const char *credentials_opt, const char *token_file_opt, struct creds *out,
                  char **why)
{
    memset(out, 0, sizeof *out);
    out->kind = CREDS_NONE;
    if (why)
        *why = NULL;

    if (credentials_opt)
        return load_profile(credentials_opt, NULL, out, why);
    if (token_file_opt)
        return use_token_file(token_file_opt, out, why);

    int rc = env_family("HUAWEICLOUD_SDK_", out, why);
    if (rc == 0)
        rc = env_family("CLOUD_SDK_", out, why);
    if (rc != 0)
        return rc < 0 ? rc : 0;

    const char *from_env = env("HUAWEICLOUD_SDK_CREDENTIALS_FILE");
    char *path = NULL;
    if (from_env) {
        path = strdup(from_env);
    } else {
        const char *home = env("HOME");
        if (!home) {
            log_debug("no credentials: nothing configured and HOME is not set");
            return 0;
        }
        if (asprintf(&path, "%s/.huaweicloud/credentials", home) < 0)
            path = NULL;
    }
    if (!path) {
        set_why(why, "out of memory looking for the credentials file");
        return -ENOMEM;
    }
    rc = load_profile(path, from_env ? " (from HUAWEICLOUD_SDK_CREDENTIALS_FILE)" : NULL, out,
                      why);
    /* The profile is optional: a missing one means "no credentials", while
     * one that exists but is wrong is an error worth stopping for. */
    if (rc == -ENOENT || rc == -ENOTDIR) {
        if (from_env)
            log_warn("HUAWEICLOUD_SDK_CREDENTIALS_FILE names %s, which does not exist", path);
        else
            log_debug("no credentials: %s does not exist", path);
        if (why) {
            free(*why);
            *why = NULL;
        }
        rc = 0;
    }
    free(path);
    return rc;
}
