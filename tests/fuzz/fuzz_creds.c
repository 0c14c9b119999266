/* fuzz_creds: the credentials file parser and the token file reader
 * (src/cloud/creds.c), through their real entry points: the input is written to
 * a private file that creds_resolve() (as -o credentials=FILE) and
 * creds_read_token_file() read.
 *
 * Checks: a success has a consistent kind (AK/SK: ak and sk, no password
 * login; password: user, password and domain, no AK/SK), values without
 * control characters, an http(s) iam_endpoint; a refusal has a message
 * without control characters and leaves the struct empty; a token read is
 * printable non-blank ASCII. */
#include "fuzz.h"
#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char dir[64], file[96];

static void cleanup(void)
{
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_scratch_dir(dir, "hcx-fuzz-creds");
    snprintf(file, sizeof file, "%s/credentials", dir);
    atexit(cleanup);
    return 0;
}

static void check_value(const char *v, const char *name)
{
    FUZZ_CHECK(v && v[0], "%s missing", name);
    FUZZ_CHECK(fuzz_no_control(v), "%s holds a control character", name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", file, strerror(errno));
    FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size, "write: %s", strerror(errno));
    close(fd);

    struct creds c;
    memset(&c, 0, sizeof c);
    char *why = NULL;
    int rc = creds_resolve(file, NULL, &c, &why);
    if (rc == 0) {
        FUZZ_CHECK(why == NULL, "success with a message: %s", why);
        FUZZ_CHECK(c.kind == CREDS_AKSK || c.kind == CREDS_PASSWORD, "kind %d", (int)c.kind);
        FUZZ_CHECK(c.source && strstr(c.source, file), "source '%s'", c.source ? c.source : "");
        if (c.kind == CREDS_AKSK) {
            check_value(c.ak, "ak");
            check_value(c.sk, "sk");
            if (c.security_token)
                check_value(c.security_token, "security_token");
            FUZZ_CHECK(!c.user && !c.password && !c.domain, "AK/SK with a password login");
        } else {
            check_value(c.user, "user");
            check_value(c.password, "password");
            check_value(c.domain, "domain");
            FUZZ_CHECK(!c.ak && !c.sk && !c.security_token, "password login with AK/SK");
        }
        FUZZ_CHECK(!c.token_file, "a credentials file gave a token file");
        if (c.iam_endpoint) {
            check_value(c.iam_endpoint, "iam_endpoint");
            FUZZ_CHECK(!strncmp(c.iam_endpoint, "http://", 7) ||
                       !strncmp(c.iam_endpoint, "https://", 8), "iam_endpoint '%s'",
                       c.iam_endpoint);
        }
    } else {
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM, "rc %d", rc);
        FUZZ_CHECK(why && fuzz_no_control(why), "message '%s'", why ? why : "(none)");
        FUZZ_CHECK(c.kind == CREDS_NONE && !c.ak && !c.sk && !c.user && !c.password &&
                   !c.source, "refused but the struct is not empty");
    }
    creds_clear(&c);
    FUZZ_CHECK(c.kind == CREDS_NONE && !c.ak && !c.sk && !c.source, "creds_clear left data");
    free(why);
    why = NULL;

    char *token = NULL;
    struct timespec mtime;
    rc = creds_read_token_file(file, &token, &mtime, &why);
    if (rc == 0) {
        FUZZ_CHECK(token && token[0], "empty token accepted");
        FUZZ_CHECK(strlen(token) <= CREDS_TOKEN_MAX, "token longer than the limit");
        for (const char *t = token; *t; t++)
            FUZZ_CHECK(*t > 0x20 && *t < 0x7f, "token byte 0x%02x", (unsigned char)*t);
        free(token);
    } else {
        FUZZ_CHECK(!token, "token set on failure");
        FUZZ_CHECK(why && fuzz_no_control(why), "message '%s'", why ? why : "(none)");
    }
    free(why);
    return 0;
}
