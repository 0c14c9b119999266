/* main: options, start-up checks and the FUSE loop.
 *
 * Everything that can fail (options, credentials, cache directory,
 * journal) is checked before mounting, so a mistake gives a message and an
 * exit code instead of a dead mount.  Exit codes: 0 clean unmount, 1 bad
 * usage or option, 2 credentials refused, 3 cache directory or journal
 * unusable, 4 mounting failed, 5 out of memory. */
#include "cloud.h"
#include "creds.h"
#include "eventlogs.h"
#include "fs.h"
#include "journal.h"
#include "log.h"
#include "region.h"
#include "registry.h"

#include <archive.h>
#include <curl/curl.h>
#include <errno.h>
#include <fuse_lowlevel.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l.h>
#endif
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_USAGE = 1, EXIT_CREDENTIALS = 2, EXIT_CACHE = 3, EXIT_MOUNT = 4, EXIT_NOMEM = 5 };

struct options {
    char *endpoint, *region, *waf_endpoint, *hss_endpoint, *iam_endpoint;
    char *projects, *enterprise_project_id, *cache_dir, *poll_interval, *credentials;
    char *token_file, *cafile, *cache_max, *log_level, *request_timeout;
    int help, version, allow_other, default_permissions, secret_option;
    char *nonopts[3];
    int nnonopts;
};

#define OPT(t, field) { t, offsetof(struct options, field), 1 }
enum { KEY_HELP, KEY_VERSION, KEY_ALLOW_OTHER, KEY_DEFAULT_PERMISSIONS, KEY_SECRET };

static const struct fuse_opt option_spec[] = {
    OPT("endpoint=%s", endpoint),
    OPT("region=%s", region),
    OPT("waf_endpoint=%s", waf_endpoint),
    OPT("hss_endpoint=%s", hss_endpoint),
    OPT("iam_endpoint=%s", iam_endpoint),
    OPT("projects=%s", projects),
    OPT("enterprise_project_id=%s", enterprise_project_id),
    OPT("cache_dir=%s", cache_dir),
    OPT("poll_interval=%s", poll_interval),
    OPT("credentials=%s", credentials),
    OPT("token_file=%s", token_file),
    OPT("cafile=%s", cafile),
    OPT("cache_max=%s", cache_max),
    OPT("log_level=%s", log_level),
    OPT("request_timeout=%s", request_timeout),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    FUSE_OPT_KEY("default_permissions", KEY_DEFAULT_PERMISSIONS),
    /* Secrets given as options would sit in /proc/PID/cmdline and ps
     * output for every local user: refused without echoing the value. */
    FUSE_OPT_KEY("ak=", KEY_SECRET),
    FUSE_OPT_KEY("sk=", KEY_SECRET),
    FUSE_OPT_KEY("security_token=", KEY_SECRET),
    FUSE_OPT_KEY("token=", KEY_SECRET),
    FUSE_OPT_KEY("password=", KEY_SECRET),
    FUSE_OPT_END,
};

static void usage(const char *prog)
{
    /* One line per option: scripts and the man page test grep this list. */
    printf("usage: %s [-f] [-d] [-o OPTION[,OPTION...]] [SOURCE] MOUNTPOINT\n"
           "       mount -t fuse.hcexportfs hcexportfs MOUNTPOINT -o OPTION[,OPTION...]\n\n"
           "SOURCE (as passed by mount.fuse3) is accepted and ignored.\n\n"
           "hcexportfs options:\n"
           "    -o endpoint=URL             one base URL for all services (emulator, proxy)\n"
           "    -o region=NAME              WAF, HSS and IAM URLs from the official SDKs' region "
           "tables (e.g. cn-north-4)\n"
           "    -o waf_endpoint=URL         WAF service URL (overrides endpoint/region)\n"
           "    -o hss_endpoint=URL         HSS service URL (overrides endpoint/region)\n"
           "    -o iam_endpoint=URL         IAM service URL (overrides endpoint/region)\n"
           "    -o projects=ID[:ID...]      projects to expose (default: those remembered)\n"
           "    -o enterprise_project_id=ID passed on every call (default: none)\n"
           "    -o cache_dir=DIR            journal and archives (default "
           "$XDG_CACHE_HOME/hcexportfs, else ~/.cache/hcexportfs)\n"
           "    -o poll_interval=SECONDS    how often running jobs are polled at most (default 10)\n"
           "    -o credentials=FILE         credentials file, mode 0600 (default: SDK lookup)\n"
           "    -o token_file=FILE          a file holding an IAM token, re-read when it changes\n"
           "    -o cafile=FILE              extra CA certificates for TLS (default: system CAs)\n"
           "    -o cache_max=SIZE           bound on cached archives, K/M/G/T suffixes "
           "(default: no bound)\n"
           "    -o log_level=LEVEL          error, warn, info or debug (default info)\n"
           "    -o request_timeout=SECONDS  give up on an unanswered call (default 30)\n\n",
           prog);
}

static int option_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
    struct options *o = data;
    (void)out;
    switch (key) {
    case KEY_HELP:
        o->help = 1;
        return 1; /* keep it: libfuse prints its own options too */
    case KEY_VERSION:
        o->version = 1;
        return 1;
    case KEY_ALLOW_OTHER:
        o->allow_other = 1;
        return 1;
    case KEY_DEFAULT_PERMISSIONS:
        o->default_permissions = 1;
        return 1;
    case KEY_SECRET: {
        /* Name the option, never its value. */
        const char *eq = strchr(arg, '=');
        fprintf(stderr, "hcexportfs: -o %.*s=... refused: credentials are never taken from the "
                        "command line (visible in ps); use -o credentials=FILE (mode 0600), "
                        "-o token_file=FILE or the CLOUD_SDK_AK/CLOUD_SDK_SK environment\n",
                (int)(eq ? eq - arg : 0), arg);
        o->secret_option = 1;
        return 0;
    }
    case FUSE_OPT_KEY_NONOPT:
        /* mount.fuse3 passes a source word before the mount point. */
        if (o->nnonopts >= 2) {
            fprintf(stderr, "hcexportfs: unexpected argument '%s'\n", arg);
            return -1;
        }
        o->nonopts[o->nnonopts++] = strdup(arg);
        return 0;
    default:
        return 1;
    }
}

static int parse_seconds(const char *name, const char *s, double min, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= min) || v > 86400) {
        fprintf(stderr, "hcexportfs: %s=%s: expected a number of seconds from %g to 86400\n",
                name, s, min);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_size(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-')
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    else if (*end == 'T' || *end == 't')
        shift = 40;
    if (shift)
        end++;
    if (*end || (shift && v > (~0ULL >> shift)))
        return -1;
    *out = v << shift;
    return 0;
}

static char *default_cache_dir(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *dir = NULL;
    if (xdg && xdg[0] == '/') {
        if (asprintf(&dir, "%s/hcexportfs", xdg) < 0)
            return NULL;
    } else if (home && home[0] == '/') {
        if (asprintf(&dir, "%s/.cache/hcexportfs", home) < 0)
            return NULL;
    }
    return dir;
}

struct endpoints {
    char *waf, *hss, *iam;
};

/* A region name is also sent to the cloud (cloud_config.region): lower-case letters,
 * digits and '-' only, as every SDK region is. */
static int region_name_ok(const char *r)
{
    if (!*r || strlen(r) > 64)
        return 0;
    for (const char *c = r; *c; c++)
        if (!(*c >= 'a' && *c <= 'z') && !(*c >= '0' && *c <= '9') &&
            *c != '-')
            return 0;
    return 1;
}

/* Per service: its own option, else endpoint=, else the SDK region table
 * for region=.  WAF and HSS need an endpoint; a region their table lacks
 * is refused unless the service's endpoint is given.  IAM is only used for
 * password login: a region the IAM table lacks gets the global IAM
 * endpoint, as the SDKs' own IAM calls do. */
static int resolve_endpoints(const struct options *o, struct endpoints *e)
{
    if (o->region && !region_name_ok(o->region)) {
        fprintf(stderr, "hcexportfs: region=%s: not a region name (lower case, such as cn-north-4)\n",
                o->region);
        return -1;
    }
    static const struct {
        enum region_service svc;
        const char *option;
        size_t field;    /* in struct options */
        size_t out;      /* in struct endpoints */
    } svcs[] = {
        { REGION_WAF, "waf_endpoint", offsetof(struct options, waf_endpoint),
          offsetof(struct endpoints, waf) },
        { REGION_HSS, "hss_endpoint", offsetof(struct options, hss_endpoint),
          offsetof(struct endpoints, hss) },
        { REGION_IAM, "iam_endpoint", offsetof(struct options, iam_endpoint),
          offsetof(struct endpoints, iam) },
    };
    for (size_t i = 0; i < sizeof svcs / sizeof *svcs; i++) {
        const char *own = *(char *const *)((const char *)o + svcs[i].field);
        char **out = (char **)((char *)e + svcs[i].out);
        const char *url = own ? own : o->endpoint;
        if (!url && o->region) {
            url = region_endpoint(svcs[i].svc, o->region);
            if (!url && svcs[i].svc == REGION_IAM) {
                url = REGION_IAM_GLOBAL_ENDPOINT;
                log_debug("region %s is not in the SDK's IAM region table; IAM password login "
                         "uses %s (set iam_endpoint= to change)", o->region, url);
            } else if (!url) {
                fprintf(stderr, "hcexportfs: region=%s: the %s service has no endpoint in that "
                                "region (not in the official SDK's %s region table); give "
                                "%s=URL\n",
                        o->region, region_service_name(svcs[i].svc),
                        region_service_name(svcs[i].svc), svcs[i].option);
                return -1;
            }
        }
        if (url && !(*out = strdup(url))) {
            fprintf(stderr, "hcexportfs: out of memory\n");
            return -1;
        }
    }
    if (!e->waf || !e->hss) {
        fprintf(stderr, "hcexportfs: no cloud endpoint: give -o endpoint=URL or -o region=NAME "
                        "(or waf_endpoint= and hss_endpoint=)\n");
        return -1;
    }
    return 0;
}

static void free_options(struct options *o)
{
    char **fields[] = { &o->endpoint, &o->region, &o->waf_endpoint, &o->hss_endpoint,
                        &o->iam_endpoint, &o->projects, &o->enterprise_project_id, &o->cache_dir,
                        &o->poll_interval, &o->credentials, &o->token_file, &o->cafile,
                        &o->cache_max, &o->log_level, &o->request_timeout };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        free(*fields[i]);
    for (int i = 0; i < o->nnonopts; i++)
        free(o->nonopts[i]);
}

static int run_fuse(struct fuse_args *args, struct registry *r)
{
    struct fuse_cmdline_opts cmd;
    if (fuse_parse_cmdline(args, &cmd) != 0)
        return EXIT_USAGE;
    int rc = EXIT_MOUNT;
    struct fs *fs = fs_new(args, r);
    if (!fs) {
        rc = EXIT_USAGE; /* libfuse has printed which option it refused */
        goto out;
    }
    struct fuse_session *se = fs_session(fs);
    if (fuse_session_mount(se, cmd.mountpoint) != 0) {
        fs_free(fs);
        goto out;
    }
    if (fuse_daemonize(cmd.foreground) != 0) {
        fuse_session_unmount(se);
        fs_free(fs);
        goto out;
    }
    if (!cmd.foreground)
        log_use_syslog(1);
    if (fuse_set_signal_handlers(se) != 0) {
        fuse_session_unmount(se);
        fs_free(fs);
        goto out;
    }
    log_info("mounted on %s", cmd.mountpoint);
    int loop_rc;
    if (cmd.singlethread) {
        loop_rc = fuse_session_loop(se);
    } else {
        /* Requests that wait hold no worker (fs/calls.h): a few suffice. */
        struct fuse_loop_config *loop = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(loop, (unsigned)cmd.clone_fd);
        fuse_loop_cfg_set_max_threads(loop, cmd.max_threads ? cmd.max_threads : 16);
        loop_rc = fuse_session_loop_mt(se, loop);
        fuse_loop_cfg_destroy(loop);
    }
    /* The workers call into libfuse (invalidation) and answer waiting
     * requests: stop them while the session still exists. */
    fs_stop(fs);
    aindex_shutdown(); /* joins the read-ahead pool */
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fs_free(fs);
    log_info("unmounted %s", cmd.mountpoint);
    /* libfuse reports the signal that ended the loop; those are clean exits. */
    rc = loop_rc == 0 || loop_rc == SIGTERM || loop_rc == SIGINT || loop_rc == SIGHUP ? 0 : EXIT_MOUNT;
out:
    free(cmd.mountpoint);
    return rc;
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct options o = { 0 };
    int rc = EXIT_USAGE;
    struct endpoints ep = { 0 };
    struct journal *journal = NULL;
    struct cloud *cloud = NULL;
    struct registry *r = NULL;
    struct creds creds = { 0 };
    char *why = NULL;

    signal(SIGPIPE, SIG_IGN);
    /* Without TZ, glibc re-reads /etc/localtime for every zip entry time;
     * naming the same zone explicitly makes indexing about 3x faster. */
    setenv("TZ", ":/etc/localtime", 0);
    if (fuse_opt_parse(&args, &o, option_spec, option_proc) != 0)
        goto out;
    if (o.secret_option)
        goto out;
    /* With allow_other the kernel must check the modes this filesystem
     * reports (0755/0644 on the writable parts): without
     * default_permissions any local user could submit jobs with the
     * mounting user's credentials. */
    if (o.allow_other && !o.default_permissions &&
        fuse_opt_add_arg(&args, "-odefault_permissions") != 0) {
        fprintf(stderr, "hcexportfs: out of memory\n");
        goto out;
    }
    if (o.help) {
        usage(argv[0]);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        rc = 0;
        goto out;
    }
    if (o.version) {
        int av = archive_version_number();
        printf("hcexportfs version %s\nlibfuse %s\nlibcurl %s\nlibarchive %d.%d.%d\njansson %s\n"
               "zlib %s\n%s\n",
               HCX_VERSION, fuse_pkgversion(), curl_version_info(CURLVERSION_NOW)->version,
               av / 1000000, av / 1000 % 1000, av % 1000, jansson_version_str(), zlibVersion(),
               OpenSSL_version(OPENSSL_VERSION));
#ifdef HAVE_ISAL
        /* ISA-L has no run-time version call: this is the one built against. */
        printf("ISA-L %d.%d.%d (igzip inflate)\n", ISAL_MAJOR_VERSION, ISAL_MINOR_VERSION,
               ISAL_PATCH_VERSION);
#else
        printf("ISA-L not used (zlib inflate)\n");
#endif
        rc = 0;
        goto out;
    }
    if (o.nnonopts == 0) {
        fprintf(stderr, "hcexportfs: no mount point given (see --help)\n");
        goto out;
    }
    fuse_opt_add_arg(&args, o.nonopts[o.nnonopts - 1]);

    enum log_level level = LOG_LVL_INFO;
    if (o.log_level && log_parse_level(o.log_level, &level) < 0) {
        fprintf(stderr, "hcexportfs: log_level=%s: expected error, warn, info or debug\n",
                o.log_level);
        goto out;
    }
    log_set_level(level);
    double poll_interval = 10, request_timeout = 30;
    if (o.poll_interval && parse_seconds("poll_interval", o.poll_interval, 0.1, &poll_interval))
        goto out;
    if (o.request_timeout &&
        parse_seconds("request_timeout", o.request_timeout, 1, &request_timeout))
        goto out;
    unsigned long long cache_max = 0;
    if (o.cache_max && parse_size(o.cache_max, &cache_max) < 0) {
        fprintf(stderr, "hcexportfs: cache_max=%s: expected a size such as 500M or 2G\n",
                o.cache_max);
        goto out;
    }
    if (resolve_endpoints(&o, &ep) < 0)
        goto out;
    if (o.enterprise_project_id && !cloud_id_is_safe(o.enterprise_project_id, 256)) {
        fprintf(stderr, "hcexportfs: enterprise_project_id=%s is not a valid id\n",
                o.enterprise_project_id);
        goto out;
    }
    /* Projects are checked before anything is written. */
    char *projects = o.projects ? strdup(o.projects) : NULL;
    char *check = o.projects ? strdup(o.projects) : NULL;
    for (char *save = NULL, *id = check ? strtok_r(check, ":", &save) : NULL; id;
         id = strtok_r(NULL, ":", &save)) {
        if (!project_id_is_valid(id)) {
            fprintf(stderr, "hcexportfs: projects: '%s' is not a project id (1 to 64 letters, "
                            "digits, '-' or '_')\n", id);
            free(projects);
            free(check);
            goto out;
        }
    }
    free(check);

    rc = EXIT_CREDENTIALS;
    int crc = creds_resolve(o.credentials, o.token_file, &creds, &why);
    if (crc < 0) {
        fprintf(stderr, "hcexportfs: credentials refused: %s\n", why ? why : strerror(-crc));
        free(projects);
        goto out;
    }

    rc = EXIT_CACHE;
    char *cache_dir = o.cache_dir ? strdup(o.cache_dir) : default_cache_dir();
    if (!cache_dir) {
        fprintf(stderr, "hcexportfs: no cache directory: set -o cache_dir=DIR or HOME\n");
        free(projects);
        goto out;
    }
    char resolved[PATH_MAX];
    int jrc = journal_open(cache_dir, &journal, &why);
    if (jrc == 0 && realpath(cache_dir, resolved))
        log_debug("cache directory %s", resolved);
    free(cache_dir);
    if (jrc < 0) {
        fprintf(stderr, "hcexportfs: %s\n", why ? why : strerror(-jrc));
        free(projects);
        goto out;
    }

    struct cloud_config cc = { .waf_base = ep.waf, .hss_base = ep.hss, .iam_base = ep.iam,
                               .enterprise_project_id = o.enterprise_project_id,
                               .region = o.region,
                               .cafile = o.cafile, .request_timeout_s = (long)request_timeout };
    char cafile[PATH_MAX];
    if (o.cafile && (access(o.cafile, R_OK) < 0 || !realpath(o.cafile, cafile))) {
        fprintf(stderr, "hcexportfs: cafile=%s: %s\n", o.cafile, strerror(errno));
        rc = EXIT_USAGE;
        free(projects);
        goto out;
    }
    cc.cafile = o.cafile ? cafile : NULL; /* absolute: the daemon runs in / */
    int crc2 = cloud_create(&cc, &creds, &cloud, &why);
    if (crc2 < 0) {
        fprintf(stderr, "hcexportfs: %s\n", why ? why : strerror(-crc2));
        rc = crc2 == -ENOMEM ? EXIT_NOMEM : EXIT_USAGE;
        free(projects);
        goto out;
    }
    log_info("credentials: %s", cloud_auth_description(cloud));

    if (registry_create(journal, cloud, poll_interval, &r) < 0) {
        rc = EXIT_NOMEM;
        free(projects);
        goto out;
    }
    registry_configure(r, cache_max, request_timeout);
    int damaged = registry_load(r);
    if (damaged)
        log_error("%d damaged journal record(s) were moved aside (*.corrupt); their jobs are "
                  "queried from the cloud again, the other records are loaded", damaged);
    for (char *save = NULL, *id = projects ? strtok_r(projects, ":", &save) : NULL; id;
         id = strtok_r(NULL, ":", &save)) {
        int prc = registry_add_project(r, id);
        if (prc < 0 && prc != -EEXIST) {
            fprintf(stderr, "hcexportfs: cannot record project %s: %s\n", id, strerror(-prc));
            free(projects);
            goto out;
        }
    }
    free(projects);
    struct eventlogs *el = NULL;
    if (eventlogs_create(r, &el) != 0)
        log_warn("event-logs/ folders are not available");
    registry_enforce_cache_max(r); /* cache_max may have been lowered */

    rc = run_fuse(&args, r);
    eventlogs_destroy(el); /* its users, the fetchers, have stopped */
out:
    registry_destroy(r);
    cloud_destroy(cloud);
    journal_close(journal);
    creds_clear(&creds);
    free(ep.waf);
    free(ep.hss);
    free(ep.iam);
    free(why);
    free_options(&o);
    fuse_opt_free_args(&args);
    return rc;
}
