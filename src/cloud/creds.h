/* creds: finds the credentials to use, in the order the official Huawei
 * Cloud SDKs look for them (filesystem.md "Running it"), and reads token
 * files.
 *
 * Owns: the lookup order, the credentials file format (the SDKs' INI
 * profile, section [basic], read as leniently as the SDKs' INI readers:
 * case-insensitive key names, '=' or ':', quotes, '#'/';' comments; the
 * rules are listed at parse_profile() in creds.c), the ownership and permission checks on
 * credential files, and wiping secrets when they are dropped.  It does no
 * network I/O; auth.c turns the result into request headers. */
#ifndef HCX_CREDS_H
#define HCX_CREDS_H

#include <time.h>

/* Limits on what is read: a profile is a few lines, a token a few KiB. */
#define CREDS_FILE_MAX (64 * 1024)
#define CREDS_TOKEN_MAX (32 * 1024)

enum creds_kind { CREDS_NONE, CREDS_AKSK, CREDS_TOKEN_FILE, CREDS_PASSWORD };

struct creds {
    enum creds_kind kind;
    char *ak, *sk, *security_token; /* AKSK (security_token optional) */
    char *token_file;               /* TOKEN_FILE: an absolute path, re-read when it changes */
    char *user, *password, *domain; /* PASSWORD (IAM login) */
    char *iam_endpoint;             /* optional, from a credentials file */
    char *source;                   /* human text, e.g. "credentials file /x"; never a secret */
};

/* Looks credentials up, first found wins:
 *  1 credentials_opt (-o credentials=FILE);
 *  2 token_file_opt (-o token_file=FILE);
 *  3 environment HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK
 *    (+ HUAWEICLOUD_SDK_SECURITY_TOKEN), else CLOUD_SDK_AK + CLOUD_SDK_SK
 *    (+ CLOUD_SDK_SECURITY_TOKEN); an empty variable counts as unset;
 *  4 the profile $HUAWEICLOUD_SDK_CREDENTIALS_FILE, else
 *    $HOME/.huaweicloud/credentials (a missing file is skipped).
 *
 * Returns 0 with out->kind possibly CREDS_NONE (nothing found: the mount
 * still works, cloud calls fail with EACCES), or -errno with *why (malloc'd;
 * names files, variables and keys, never a value) when something explicit
 * is wrong:
 *  -ENOENT/-EACCES/...  an option's file cannot be opened;
 *  -EPERM   a credentials or token file is accessible by group or others
 *           ("chmod 600 FILE") or not owned by the effective user;
 *  -EINVAL  not a regular file, over CREDS_FILE_MAX, a NUL byte, no
 *           [basic] section (case-sensitive), neither ak+sk nor
 *           user+password+domain, a malformed line, a key given twice in
 *           [basic], a value with control characters, or an environment
 *           pair with one half set.
 * On error *out is left empty (CREDS_NONE); creds_clear() is safe either way.
 * why may be NULL. */
int creds_resolve(const char *credentials_opt, const char *token_file_opt, struct creds *out,
                  char **why);

/* Frees everything, wiping secrets with explicit_bzero first; leaves *c
 * empty (CREDS_NONE).  NULL and already cleared structs are fine. */
void creds_clear(struct creds *c);

/* Reads a token file (same ownership and permission checks as credentials
 * files): trims surrounding whitespace; refuses an empty token, a file over
 * CREDS_TOKEN_MAX, or anything but printable non-blank ASCII inside (the
 * token becomes a header value and must not be able to inject one).
 * Returns 0 with *token (malloc'd; wipe before freeing) and *mtime = the
 * file's st_mtim, so the caller re-reads when it changes; or -errno with
 * *why (why may be NULL). */
int creds_read_token_file(const char *path, char **token, struct timespec *mtime, char **why);

#endif
