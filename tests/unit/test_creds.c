/* Checks the credentials lookup order, the profile format, the ownership and
 * permission checks, token file reading, and that no message ever carries a
 * secret.  Works in a private temporary HOME, removed at the end. */
#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"

static char home[128];

/* Every secret used below contains this marker, and nothing else does. */
#define MARK "S3CR3T"

static const char *const env_names[] = {
    "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "CLOUD_SDK_AK",       "CLOUD_SDK_SK",       "CLOUD_SDK_SECURITY_TOKEN",
    "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
};

static void clean_env(void)
{
    for (size_t i = 0; i < sizeof env_names / sizeof *env_names; i++)
        unsetenv(env_names[i]);
    setenv("HOME", home, 1);
}

static void check_no_secret(int line, const char *why)
{
    checks++;
    if (why && strstr(why, MARK)) {
        failures++;
        fprintf(stderr, "line %d: message leaks a secret: %s\n", line, why);
    }
}

static void write_file(const char *path, const char *content, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, content, len) != (ssize_t)len || close(fd) < 0) {
        perror(path);
        abort();
    }
    if (chmod(path, mode) < 0)
        abort();
}

static char *put_file(const char *name, const char *content, mode_t mode)
{
    char *p = tpath(name);
    write_file(p, content, strlen(content), mode);
    return p;
}

/* Resolves and checks the result code; for errors, that why names
 * want_why and no secret.  Fills *c (cleared by the caller). */
static int resolve_n(int line, const char *opt, const char *tok, struct creds *c, int want_rc,
                     const char *want_why)
{
    char *why = (char *)1;
    int rc = creds_resolve(opt, tok, c, &why);
    checks++;
    if (rc != want_rc) {
        failures++;
        fprintf(stderr, "line %d: creds_resolve = %d (%s), want %d\n", line, rc,
                why ? why : "", want_rc);
    }
    check_no_secret(line, why);
    if (rc < 0) {
        CHECK(why != NULL, "line %d: no message", line);
        CHECK(c->kind == CREDS_NONE && !c->ak && !c->sk && !c->source, "line %d: out not empty",
              line);
        if (want_why)
            CHECK(why && strstr(why, want_why), "line %d: '%s' lacks '%s'", line,
                  why ? why : "(null)", want_why);
    } else {
        CHECK(why == NULL, "line %d: message on success: %s", line, why ? why : "");
        check_no_secret(line, c->source);
    }
    free(why);
    return rc;
}

#define RESOLVE(opt, tok, c, rc, why) resolve_n(__LINE__, (opt), (tok), (c), (rc), (why))

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static const char *profile_a = "[basic]\nak = AKID_FILE_A\nsk = SK_" MARK "_A\n";

static void test_precedence(void)
{
    clean_env();
    struct creds c;
    char *opt = put_file("opt.ini", profile_a, 0600);
    char *tok = put_file("token", "TOKEN_" MARK "\n", 0600);
    char *envfile = put_file("envfile.ini",
                             "[basic]\nak = AKID_ENVFILE\nsk = SK_" MARK "_ENVFILE\n", 0600);
    char dir[256], deflt[300];
    snprintf(dir, sizeof dir, "%s/.huaweicloud", home);
    mkdir(dir, 0700);
    snprintf(deflt, sizeof deflt, "%s/credentials", dir);
    const char *home_profile = "[basic]\nak = AKID_HOME\nsk = SK_" MARK "_HOME\n";
    write_file(deflt, home_profile, strlen(home_profile), 0600);
    setenv("HUAWEICLOUD_SDK_AK", "AKID_HW", 1);
    setenv("HUAWEICLOUD_SDK_SK", "SK_" MARK "_HW", 1);
    setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", "ST_" MARK "_HW", 1);
    setenv("CLOUD_SDK_AK", "AKID_CLOUD", 1);
    setenv("CLOUD_SDK_SK", "SK_" MARK "_CLOUD", 1);
    setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", envfile, 1);

    /* 1: the credentials option beats everything. */
    RESOLVE(opt, tok, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_FILE_A") && streq(c.sk, "SK_" MARK "_A") &&
              !c.security_token && !c.token_file,
          "option: kind %d ak %s", c.kind, c.ak ? c.ak : "");
    char want_source[512];
    snprintf(want_source, sizeof want_source, "credentials file %s", opt);
    CHECK(streq(c.source, want_source), "source %s", c.source ? c.source : "");
    creds_clear(&c);

    /* 2: then the token file option. */
    RESOLVE(NULL, tok, &c, 0, NULL);
    CHECK(c.kind == CREDS_TOKEN_FILE && streq(c.token_file, tok) && !c.ak,
          "token file: kind %d", c.kind);
    snprintf(want_source, sizeof want_source, "token file %s", tok);
    CHECK(streq(c.source, want_source), "source %s", c.source ? c.source : "");
    creds_clear(&c);

    /* 3: the SDKs' variables, with their security token only. */
    setenv("CLOUD_SDK_SECURITY_TOKEN", "ST_" MARK "_CLOUD", 1);
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_HW") && streq(c.sk, "SK_" MARK "_HW") &&
              streq(c.security_token, "ST_" MARK "_HW"),
          "HUAWEICLOUD_SDK_: ak %s", c.ak ? c.ak : "");
    CHECK(streq(c.source, "environment HUAWEICLOUD_SDK_AK"), "source %s", c.source ? c.source : "");
    creds_clear(&c);
    unsetenv("HUAWEICLOUD_SDK_SECURITY_TOKEN");
    unsetenv("CLOUD_SDK_SECURITY_TOKEN");
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_HW") && !c.security_token,
          "no token from the other family");
    creds_clear(&c);

    /* 3b: then the API Explorer names. */
    unsetenv("HUAWEICLOUD_SDK_AK");
    setenv("HUAWEICLOUD_SDK_SK", "", 1); /* empty counts as unset */
    setenv("CLOUD_SDK_SECURITY_TOKEN", "ST_" MARK "_CLOUD", 1);
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_CLOUD") && streq(c.sk, "SK_" MARK "_CLOUD") &&
              streq(c.security_token, "ST_" MARK "_CLOUD"),
          "CLOUD_SDK_: ak %s", c.ak ? c.ak : "");
    CHECK(streq(c.source, "environment CLOUD_SDK_AK"), "source %s", c.source ? c.source : "");
    creds_clear(&c);

    /* 4: the profile named by the environment... */
    unsetenv("CLOUD_SDK_AK");
    unsetenv("CLOUD_SDK_SK");
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_ENVFILE"), "env profile: ak %s",
          c.ak ? c.ak : "");
    CHECK(c.source && strstr(c.source, envfile) &&
              strstr(c.source, "HUAWEICLOUD_SDK_CREDENTIALS_FILE"),
          "source %s", c.source ? c.source : "");
    creds_clear(&c);

    /* ...which, named but absent, means nothing (not the default). */
    setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", "/nonexistent/hcexportfs/credentials", 1);
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_NONE && !c.source, "absent env profile: kind %d", c.kind);
    creds_clear(&c);

    /* 4b: else ~/.huaweicloud/credentials. */
    unsetenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE");
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_HOME"), "home profile: ak %s",
          c.ak ? c.ak : "");
    snprintf(want_source, sizeof want_source, "credentials file %s", deflt);
    CHECK(streq(c.source, want_source), "source %s", c.source ? c.source : "");
    creds_clear(&c);

    /* Nothing at all: not an error. */
    unlink(deflt);
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_NONE, "nothing: kind %d", c.kind);
    creds_clear(&c);
    rmdir(dir);
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_NONE, "no ~/.huaweicloud: kind %d", c.kind);
    unsetenv("HOME");
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_NONE, "no HOME: kind %d", c.kind);
    setenv("HOME", home, 1);

    /* A broken higher level is an error, not a fall-through. */
    setenv("HUAWEICLOUD_SDK_AK", "AKID_HW", 1);
    setenv("HUAWEICLOUD_SDK_SK", "SK_" MARK "_HW", 1);
    char *missing = tpath("missing.ini");
    RESOLVE(missing, NULL, &c, -ENOENT, missing);
    RESOLVE(NULL, missing, &c, -ENOENT, missing);
    chmod(opt, 0640);
    RESOLVE(opt, NULL, &c, -EPERM, "chmod 600");

    free(missing);
    free(opt);
    free(tok);
    free(envfile);
    clean_env();
}

static void test_env_pairs(void)
{
    clean_env();
    struct creds c;
    setenv("HUAWEICLOUD_SDK_AK", "AKID_HW", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK is not");
    /* Even with a complete other family: the half pair is a mistake. */
    setenv("CLOUD_SDK_AK", "AKID_CLOUD", 1);
    setenv("CLOUD_SDK_SK", "SK_" MARK "_CLOUD", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "HUAWEICLOUD_SDK_SK is not");
    clean_env();
    setenv("HUAWEICLOUD_SDK_SK", "SK_" MARK "_HW", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "HUAWEICLOUD_SDK_SK is set but HUAWEICLOUD_SDK_AK is not");
    clean_env();
    setenv("CLOUD_SDK_SK", "SK_" MARK "_CLOUD", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "CLOUD_SDK_SK is set but CLOUD_SDK_AK is not");
    clean_env();
    setenv("CLOUD_SDK_AK", "AKID_CLOUD", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "CLOUD_SDK_AK is set but CLOUD_SDK_SK is not");
    /* A value that would inject a header. */
    setenv("CLOUD_SDK_SK", "SK_" MARK "\r\nX-Evil: 1", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "CLOUD_SDK_SK contains a control character");
    setenv("CLOUD_SDK_SK", "SK_" MARK, 1);
    setenv("CLOUD_SDK_SECURITY_TOKEN", "ST_" MARK "\n", 1);
    RESOLVE(NULL, NULL, &c, -EINVAL, "CLOUD_SDK_SECURITY_TOKEN contains a control character");
    /* A security token alone is ignored. */
    clean_env();
    setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", "ST_" MARK, 1);
    RESOLVE(NULL, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_NONE, "lone security token: kind %d", c.kind);
    clean_env();
}

static void test_file_checks(void)
{
    clean_env();
    struct creds c;
    char *f = put_file("perm.ini", profile_a, 0600);
    char want[512];
    snprintf(want, sizeof want, "chmod 600 %s", f);
    const mode_t refused[] = { 0640, 0604, 0620, 0602, 0610, 0601, 0644, 0660, 0666 };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        chmod(f, refused[i]);
        RESOLVE(f, NULL, &c, -EPERM, want);
        RESOLVE(NULL, f, &c, -EPERM, want); /* same rule for token files */
    }
    chmod(f, 0640);
    RESOLVE(f, NULL, &c, -EPERM, "mode 0640");
    const mode_t accepted[] = { 0600, 0400, 0700 };
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; i++) {
        chmod(f, accepted[i]);
        RESOLVE(f, NULL, &c, 0, NULL);
        CHECK(c.kind == CREDS_AKSK, "mode %o", (unsigned)accepted[i]);
        creds_clear(&c);
    }
    chmod(f, 0600);

    /* The default profile is held to the same rule. */
    char dir[256], deflt[300];
    snprintf(dir, sizeof dir, "%s/.huaweicloud", home);
    mkdir(dir, 0700);
    snprintf(deflt, sizeof deflt, "%s/credentials", dir);
    write_file(deflt, profile_a, strlen(profile_a), 0604);
    snprintf(want, sizeof want, "chmod 600 %s", deflt);
    RESOLVE(NULL, NULL, &c, -EPERM, want);
    unlink(deflt);
    mkdir(deflt, 0700); /* a directory where the profile should be */
    RESOLVE(NULL, NULL, &c, -EINVAL, "is not a regular file");
    rmdir(deflt);
    rmdir(dir);

    /* Not a regular file. */
    RESOLVE(tmpdir, NULL, &c, -EINVAL, "is not a regular file");
    RESOLVE(NULL, tmpdir, &c, -EINVAL, "is not a regular file");
    char *fifo = tpath("fifo");
    mkfifo(fifo, 0600);
    RESOLVE(fifo, NULL, &c, -EINVAL, "is not a regular file"); /* and no hang */
    RESOLVE(NULL, "/dev/null", &c, -EINVAL, "is not a regular file");

    /* Symlinks are followed; the target is what is checked. */
    char *link = tpath("link.ini");
    if (symlink(f, link) < 0)
        abort();
    RESOLVE(link, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK, "through a symlink");
    creds_clear(&c);
    chmod(f, 0644);
    RESOLVE(link, NULL, &c, -EPERM, "chmod 600");
    chmod(f, 0600);

    /* Ownership: only testable as root, who can give a file away. */
    if (geteuid() == 0) {
        char *other = put_file("other.ini", profile_a, 0600);
        if (chown(other, 65534, 65534) == 0) {
            RESOLVE(other, NULL, &c, -EPERM, "is owned by uid 65534");
            RESOLVE(NULL, other, &c, -EPERM, "is owned by uid 65534");
            char *tok = NULL, *why = NULL;
            CHECK(creds_read_token_file(other, &tok, NULL, &why) == -EPERM && !tok,
                  "token owned by another user");
            free(why);
        }
        free(other);
    } else {
        /* Unreadable option file: root would read it anyway. */
        chmod(f, 0000);
        RESOLVE(f, NULL, &c, -EACCES, "Permission denied");
        chmod(f, 0600);
    }

    /* Size: 64 KiB is the limit. */
    size_t max = CREDS_FILE_MAX;
    char *big = malloc(max + 2);
    memset(big, '#', max + 1);
    memcpy(big, profile_a, strlen(profile_a));
    big[strlen(profile_a)] = '#';
    big[max - 1] = '\n';
    char *bigf = tpath("big.ini");
    write_file(bigf, big, max, 0600);
    RESOLVE(bigf, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK, "64 KiB file");
    creds_clear(&c);
    write_file(bigf, big, max + 1, 0600);
    RESOLVE(bigf, NULL, &c, -EINVAL, "larger than 64 KiB");
    free(big);
    free(bigf);

    free(link);
    free(fifo);
    free(f);
}

struct content_case {
    int line;
    const char *text;
    int rc;
    const char *want; /* message part, for errors */
};

static void test_contents(void)
{
    clean_env();
    const struct content_case bad[] = {
        { __LINE__, "", -EINVAL, "has no [basic] section" },
        { __LINE__, "ak = AKID\nsk = SK_" MARK "\n", -EINVAL, "has no [basic] section" },
        { __LINE__, "[default]\nak = AKID\nsk = SK_" MARK "\n", -EINVAL, "no [basic] section" },
        { __LINE__, "[Basic]\nak = AKID\nsk = SK_" MARK "\n", -EINVAL, "no [basic] section" },
        { __LINE__, "[basic]\n", -EINVAL, "neither ak and sk nor user, password and domain" },
        { __LINE__, "[basic]\nak = AKID\n", -EINVAL, "has ak but no sk" },
        { __LINE__, "[basic]\nsk = SK_" MARK "\n", -EINVAL, "has sk but no ak" },
        { __LINE__, "[basic]\nak = AKID\nsk =\n", -EINVAL, "has ak but no sk" },
        { __LINE__, "[basic]\nak = AKID\n[other]\nsk = SK_" MARK "\n", -EINVAL, "no sk" },
        { __LINE__, "[basic]\nuser = alice\npassword = PW_" MARK "\n", -EINVAL, "missing: domain" },
        { __LINE__, "[basic]\npassword = PW_" MARK "\n", -EINVAL, "missing: user, domain" },
        { __LINE__, "[basic]\ndomain = acme\n", -EINVAL, "missing: user, password" },
        { __LINE__, "[basic]\nak = AKID\nsk = SK_" MARK "\tX\n", -EINVAL,
          "line 3: the value of 'sk' contains a control character" },
        { __LINE__, "[basic]\nak = AKID\nsk = SK_" MARK "\x7f\n", -EINVAL, "control character" },
        { __LINE__, "[basic]\nak = AKID\nsk = SK_" MARK "\rX\n", -EINVAL, "control character" },
        { __LINE__, "[basic]\nak = AKID\nsk = SK_" MARK "\nsk = SK_" MARK "2\n", -EINVAL,
          "line 4: duplicate key 'sk'" },
        { __LINE__, "[basic]\nak = AKID\nSK_" MARK "\n", -EINVAL,
          "line 3: expected 'key = value'" },
        { __LINE__, "[basic\nak = AKID\nsk = SK_" MARK "\n", -EINVAL,
          "line 1: malformed section header" },
        { __LINE__, "[[basic\nak = AKID\nsk = SK_" MARK "\n", -EINVAL, "malformed section" },
        { __LINE__, "[basic]\nak = AKID\nsk = SK_" MARK "\niam_endpoint = iam.example\n",
          -EINVAL, "iam_endpoint must be an http:// or https:// URL" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct creds c;
        char *f = put_file("content.ini", bad[i].text, 0600);
        resolve_n(bad[i].line, f, NULL, &c, bad[i].rc, bad[i].want);
        creds_clear(&c);
        free(f);
    }
    /* A NUL byte. */
    struct creds c;
    char *f = tpath("nul.ini");
    write_file(f, "[basic]\nak = A\0\nsk = B\n", 22, 0600);
    RESOLVE(f, NULL, &c, -EINVAL, "NUL byte");
    free(f);

    /* Accepted: comments, blanks, CRLF, a BOM, other sections, unknown
     * keys, an inline comment after a blank, '=' inside a value. */
    f = put_file("good.ini",
                 "\xEF\xBB\xBF# profile\r\n"
                 "; another comment\r\n"
                 "[default]\r\n"
                 "ak = AKID_WRONG\r\n"
                 "not a key value line\r\n"
                 "\r\n"
                 "  [ basic ]  \r\n"
                 "\tak\t=\tAKID_GOOD  \r\n"
                 "sk=SK_" MARK "=x # not a comment\r\n"
                 "security_token = ST_" MARK "\r\n"
                 "project_id = 0123456789abcdef0123456789abcdef\r\n"
                 "iam_endpoint = https://iam.example:8443\r\n"
                 "user = bob\r\n"
                 "[other]\r\n"
                 "sk = SK_WRONG",
                 0600);
    RESOLVE(f, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID_GOOD") &&
              streq(c.sk, "SK_" MARK "=x") &&
              streq(c.security_token, "ST_" MARK) &&
              streq(c.iam_endpoint, "https://iam.example:8443") && !c.user && !c.password,
          "good profile: ak '%s' sk ok %d", c.ak ? c.ak : "", streq(c.sk, "SK_" MARK "=x"));
    creds_clear(&c);
    free(f);

    /* Password login, with a security token that only AK/SK would use. */
    f = put_file("pw.ini",
                 "[basic]\nuser = alice\npassword = PW_" MARK "\ndomain = acme\n"
                 "security_token = ST_" MARK "\nsecurity_token_x =\n",
                 0600);
    RESOLVE(f, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_PASSWORD && streq(c.user, "alice") &&
              streq(c.password, "PW_" MARK) && streq(c.domain, "acme") && !c.ak &&
              !c.security_token && !c.iam_endpoint,
          "password profile: kind %d", c.kind);
    creds_clear(&c);
    free(f);

    /* An empty security_token means none; no final newline is fine. */
    f = put_file("empty-st.ini", "[basic]\nak = AKID\nsk = SK_" MARK "\nsecurity_token =", 0600);
    RESOLVE(f, NULL, &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && !c.security_token && streq(c.sk, "SK_" MARK), "empty token");
    creds_clear(&c);
    free(f);
}

/* One profile text, resolved; returns the creds (cleared by the caller). */
static int profile_n(int line, const char *text, struct creds *c, int want_rc, const char *want_why)
{
    char *f = put_file("lenient.ini", text, 0600);
    int rc = resolve_n(line, f, NULL, c, want_rc, want_why);
    free(f);
    return rc;
}
#define PROFILE(text, c, rc, why) profile_n(__LINE__, (text), (c), (rc), (why))

/* The SDKs' INI leniency, one rule at a time. */
static void test_lenient(void)
{
    clean_env();
    struct creds c;

    /* Key names are case-insensitive. */
    PROFILE("[basic]\nAK = AKID\nSk = SK_" MARK "\nSECURITY_TOKEN = ST_" MARK "\n", &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK) &&
              streq(c.security_token, "ST_" MARK), "upper-case keys");
    creds_clear(&c);
    PROFILE("[basic]\nUser = alice\nPASSWORD = PW_" MARK "\nDomain = acme\n", &c, 0, NULL);
    CHECK(c.kind == CREDS_PASSWORD && streq(c.user, "alice") && streq(c.domain, "acme"),
          "mixed-case password keys");
    creds_clear(&c);

    /* '=' or ':' separate; the first one ends the key. */
    PROFILE("[basic]\nak: AKID\nsk :SK_" MARK "=a:b\niam_endpoint: https://iam.x:8443/p\n", &c, 0,
            NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK "=a:b") &&
              streq(c.iam_endpoint, "https://iam.x:8443/p"),
          "':' separator: ak '%s' iam '%s'", c.ak ? c.ak : "", c.iam_endpoint ? c.iam_endpoint : "");
    creds_clear(&c);
    PROFILE("[basic]\nak=AKID\nsk=SK_" MARK "\n", &c, 0, NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK), "no blanks around '='");
    creds_clear(&c);

    /* Surrounding quotes are removed; the inside is kept verbatim. */
    PROFILE("[basic]\nak = \"AKID\"\nsk = 'SK_" MARK " x'\nsecurity_token = `ST_" MARK "`\n", &c,
            0, NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK " x") && streq(c.security_token, "ST_" MARK),
          "quotes: ak '%s'", c.ak ? c.ak : "");
    creds_clear(&c);
    PROFILE("[basic]\nuser = \" alice \"\npassword = \"\"\"PW_" MARK " #1;\"\"\"\ndomain = 'acme' ; c\n",
            &c, 0, NULL);
    CHECK(streq(c.user, " alice ") && streq(c.password, "PW_" MARK " #1;") && streq(c.domain, "acme"),
          "quotes keep blanks, '#' and ';': user '%s' domain '%s'", c.user ? c.user : "",
          c.domain ? c.domain : "");
    creds_clear(&c);
    PROFILE("[basic]\nuser = \"a\"b\"\npassword = \"PW_" MARK "'\ndomain = \"\n", &c, 0, NULL);
    CHECK(streq(c.user, "a\"b") && streq(c.password, "\"PW_" MARK "'") && streq(c.domain, "\""),
          "unmatched quotes are kept: user '%s' domain '%s'", c.user ? c.user : "",
          c.domain ? c.domain : "");
    creds_clear(&c);
    PROFILE("[basic]\nak = AKID\nsk = SK_" MARK "\nsecurity_token = \"\"\n", &c, 0, NULL);
    CHECK(c.kind == CREDS_AKSK && !c.security_token, "\"\" is an empty value");
    creds_clear(&c);
    PROFILE("[basic]\n\"ak\" = AKID\n`sk` = SK_" MARK "\n", &c, 0, NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK), "quoted key names");
    creds_clear(&c);
    PROFILE("[basic]\nak = AKID\nsk = \"SK_" MARK "\tX\"\n", &c, -EINVAL, "control character");
    creds_clear(&c);

    /* Comment lines ('#', ';', indented), inline comments after a blank,
     * '#' and ';' inside a word kept. */
    PROFILE("# c1\n; c2\n  # c3\n\t; c4\n[basic]\n   # ak = AKID_COMMENTED\n"
            "ak = AKID ; the key\nsk = SK_" MARK "#1;2 # the secret\n#sk = SK_OLD\n"
            "security_token = # none\n",
            &c, 0, NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK "#1;2") && !c.security_token,
          "comments: ak '%s'", c.ak ? c.ak : "");
    creds_clear(&c);

    /* Blank lines and blanks (spaces, tabs) around everything. */
    PROFILE("\n\n   \n\t[\tbasic\t]\t\n\n \t ak \t = \t AKID \t \n\n\tsk\t=\tSK_" MARK "\t\n\n",
            &c, 0, NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK), "blanks: ak '%s'", c.ak ? c.ak : "");
    creds_clear(&c);

    /* Section names: trimmed, case-sensitive as in both SDKs, text after
     * the last ']' ignored; a second [basic] continues the first. */
    PROFILE("[BASIC]\nak = AKID\nsk = SK_" MARK "\n", &c, -EINVAL, "section names are case-sensitive");
    creds_clear(&c);
    PROFILE("[basic] # the default\nak = AKID\n[global]\nak = AKID_G\n[basic]\nsk = SK_" MARK "\n",
            &c, 0, NULL);
    CHECK(streq(c.ak, "AKID") && streq(c.sk, "SK_" MARK), "[basic] twice: ak '%s'",
          c.ak ? c.ak : "");
    creds_clear(&c);
    PROFILE("[basic]]\nak = AKID\nsk = SK_" MARK "\n", &c, -EINVAL, "no [basic] section");
    creds_clear(&c);
    PROFILE("[basic\nak = AKID\nsk = SK_" MARK "\n", &c, -EINVAL, "line 1: malformed section");
    creds_clear(&c);

    /* Keys before any section are not read. */
    PROFILE("ak = AKID\nsk = SK_" MARK "\n", &c, -EINVAL, "line 1 on, before any section header");
    creds_clear(&c);
    PROFILE("ak = AKID_X\n[basic]\nak = AKID\nsk = SK_" MARK "\n", &c, 0, NULL);
    CHECK(streq(c.ak, "AKID"), "keys before [basic] ignored");
    creds_clear(&c);

    /* Duplicates in [basic] are refused, whatever their case or section. */
    PROFILE("[basic]\nak = AKID\nsk = SK_" MARK "\nAK = AKID2\n", &c, -EINVAL,
            "line 4: duplicate key 'ak' in [basic] (first on line 2)");
    creds_clear(&c);
    PROFILE("[basic]\nak = AKID\nsk = SK_" MARK "\n[basic]\nsk = SK_" MARK "2\n", &c, -EINVAL,
            "line 5: duplicate key 'sk'");
    creds_clear(&c);
    PROFILE("[basic]\nak = AKID\nsk = SK_" MARK "\nsecurity_token =\nsecurity_token = X\n", &c,
            -EINVAL, "duplicate key 'security_token'");
    creds_clear(&c);
    PROFILE("[basic]\nak = AKID\nsk = SK_" MARK "\n[other]\nak = A\nak = B\n", &c, 0, NULL);
    CHECK(streq(c.ak, "AKID"), "duplicates outside [basic] do not matter");
    creds_clear(&c);

    /* Hostile: a line as long as the file may be, keys with no value. */
    size_t big = CREDS_FILE_MAX - 64;
    char *text = malloc(big + 64);
    int n = snprintf(text, 64, "[basic]\nak = AKID\nsk = SK_" MARK);
    memset(text + n, 'x', big - (size_t)n);
    text[big] = '\0';
    PROFILE(text, &c, 0, NULL);
    CHECK(c.sk && strlen(c.sk) == big - (size_t)n + strlen("SK_" MARK), "long line");
    creds_clear(&c);
    memset(text, '[', big);
    PROFILE(text, &c, -EINVAL, "malformed section");
    creds_clear(&c);
    memset(text, '=', big);
    PROFILE(text, &c, -EINVAL, "no [basic] section");
    creds_clear(&c);
    free(text);
    PROFILE("[basic]\n=\n:\nak =\nsk:\n", &c, -EINVAL, "neither ak and sk");
    creds_clear(&c);
}

static void test_token_file_resolve(void)
{
    clean_env();
    struct creds c;
    /* A relative path is made absolute: the daemon later runs in "/". */
    char *cwd = getcwd(NULL, 0);
    if (!cwd || chdir(tmpdir) < 0)
        abort();
    char *tok = put_file("rel-token", "", 0600); /* content may come later */
    RESOLVE(NULL, "rel-token", &c, 0, NULL);
    CHECK(c.kind == CREDS_TOKEN_FILE && streq(c.token_file, tok), "relative: %s",
          c.token_file ? c.token_file : "");
    creds_clear(&c);
    RESOLVE(NULL, "./missing-token", &c, -ENOENT, "missing-token");
    if (chdir(cwd) < 0)
        abort();
    free(cwd);
    free(tok);
}

static int read_token(int line, const char *content, size_t len, int want_rc, const char *want,
                      const char *want_token)
{
    char *p = tpath("tok");
    write_file(p, content, len, 0600);
    char *token = (char *)1, *why = (char *)1;
    struct timespec mtime = { 0, 0 };
    int rc = creds_read_token_file(p, &token, &mtime, &why);
    checks++;
    if (rc != want_rc) {
        failures++;
        fprintf(stderr, "line %d: creds_read_token_file = %d (%s), want %d\n", line, rc,
                why ? why : "", want_rc);
    }
    check_no_secret(line, why);
    if (rc == 0) {
        struct stat st;
        stat(p, &st);
        CHECK(!why && streq(token, want_token), "line %d: token '%s'", line, token ? token : "");
        CHECK(mtime.tv_sec == st.st_mtim.tv_sec && mtime.tv_nsec == st.st_mtim.tv_nsec,
              "line %d: mtime", line);
    } else {
        CHECK(!token && why && strstr(why, want) && strstr(why, p), "line %d: '%s' lacks '%s'",
              line, why ? why : "(null)", want);
    }
    if (token)
        explicit_bzero(token, strlen(token));
    free(token);
    free(why);
    free(p);
    return rc;
}

#define READ_TOKEN(s, rc, want, tok) read_token(__LINE__, (s), strlen(s), (rc), (want), (tok))

static void test_token_reading(void)
{
    READ_TOKEN("TOK_" MARK, 0, NULL, "TOK_" MARK);
    READ_TOKEN("  \t\r\nTOK_" MARK "-._~+/=\r\n\n ", 0, NULL, "TOK_" MARK "-._~+/=");
    READ_TOKEN("", -EINVAL, "is empty", NULL);
    READ_TOKEN(" \n\r\n\t", -EINVAL, "is empty", NULL);
    READ_TOKEN("TOK_" MARK " TOK2", -EINVAL, "at offset 10", NULL);
    READ_TOKEN("TOK_" MARK "\r\nX-Evil: 1\n", -EINVAL, "blank, control or non-ASCII", NULL);
    READ_TOKEN("TOK_" MARK "\tB", -EINVAL, "control", NULL);
    READ_TOKEN("TOK_" MARK "\x7f", -EINVAL, "control", NULL);
    READ_TOKEN("TOK_" MARK "\xC3\xA9", -EINVAL, "non-ASCII", NULL);
    read_token(__LINE__, "TOK_" MARK "\0B", 12, -EINVAL, "control", NULL);

    size_t max = CREDS_TOKEN_MAX;
    char *big = malloc(max + 2);
    memset(big, 'A', max + 1);
    big[max + 1] = '\0';
    memcpy(big, "TOK_" MARK, 10);
    char *want = strndup(big, max);
    read_token(__LINE__, big, max, 0, NULL, want);
    read_token(__LINE__, big, max + 1, -EINVAL, "larger than 32 KiB", NULL);
    memset(big, ' ', max + 1); /* even when trimming would make it small */
    memcpy(big + 5, "TOK_" MARK, 10);
    read_token(__LINE__, big, max + 1, -EINVAL, "larger than 32 KiB", NULL);
    free(want);
    free(big);

    char *token = NULL, *why = NULL;
    char *p = tpath("no-such-token");
    CHECK(creds_read_token_file(p, &token, NULL, &why) == -ENOENT && !token && why &&
              strstr(why, p),
          "missing token file: %s", why ? why : "");
    free(why);
    why = NULL;
    CHECK(creds_read_token_file(tmpdir, &token, NULL, &why) == -EINVAL && why &&
              strstr(why, "not a regular file"),
          "directory: %s", why ? why : "");
    free(why);
    why = NULL;
    char *loose = put_file("loose-token", "TOK_" MARK, 0644);
    CHECK(creds_read_token_file(loose, &token, NULL, &why) == -EPERM && why &&
              strstr(why, "chmod 600") && !strstr(why, MARK),
          "mode 0644: %s", why ? why : "");
    free(why);
    CHECK(creds_read_token_file(loose, &token, NULL, NULL) == -EPERM, "why may be NULL");
    free(loose);
    free(p);
}

static void test_clear(void)
{
    struct creds c;
    memset(&c, 0, sizeof c);
    creds_clear(&c);
    creds_clear(&c);
    creds_clear(NULL);
    c.kind = CREDS_PASSWORD;
    c.user = strdup("u");
    c.password = strdup("PW_" MARK);
    c.domain = strdup("d");
    c.source = strdup("test");
    creds_clear(&c);
    CHECK(c.kind == CREDS_NONE && !c.user && !c.password && !c.domain && !c.source, "cleared");
    /* why may be NULL. */
    clean_env();
    setenv("CLOUD_SDK_AK", "AKID", 1);
    CHECK(creds_resolve(NULL, NULL, &c, NULL) == -EINVAL && c.kind == CREDS_NONE, "NULL why");
    clean_env();
}

int main(void)
{
    if (scratch_make("test_creds.") < 0)
        return 2;
    if (snprintf(home, sizeof home, "%s/home", tmpdir) >= (int)sizeof home) {
        fprintf(stderr, "%s: too long a path\n", tmpdir);
        scratch_remove();
        return 2;
    }
    mkdir(home, 0700);

    test_precedence();
    test_env_pairs();
    test_file_checks();
    test_contents();
    test_lenient();
    test_token_file_resolve();
    test_token_reading();
    test_clear();

    scratch_remove();
    return check_summary();
}
