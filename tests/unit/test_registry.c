/* The registry (src/jobs) against the cloud emulator (contrib/hwcloud-emulator),
 * started by this test on a free 127.0.0.1 port (--listen 127.0.0.1:0) and
 * stopped at exit whatever the checks gave (atexit), killed on a fatal
 * signal (the handler), and killed by the kernel if this process is
 * SIGKILLed (PR_SET_PDEATHSIG).  After failed checks the temporary
 * directory (emulator.log, cache/) is kept and named.
 *
 * The emulator runs with a job delay of an hour: jobs end only when the test
 * finishes them (POST /_emulator/jobs/<id>/finish), and the fetchers start
 * only after the answers that must be REGISTRY_WAIT were seen, so no check
 * depends on timing.  Waits are bounded (20 s) and driven by the wake hook:
 * a request that got REGISTRY_WAIT asks again only after on_wake(job), so a
 * change that forgets to wake its job fails here as it would hang a mount.
 *
 * Phase 1 (a mount): submit a WAF job, an HSS task and a WAF job left
 * running; the poller ends the first two; their files are located
 * (WAF: file_match), fetched and indexed; attach of an unknown id; forget;
 * workers_stop.  Phase 2 (a second registry over the same cache dir): the
 * journal gives back the jobs and their states; a small cache_max evicts an
 * archive, which is fetched and indexed again with the same remembered size
 * and modification time.
 *
 * argv[1]: the emulator launcher (contrib/hwcloud-emulator). */
#include "cloud.h"
#include "creds.h"
#include "filter.h"
#include "journal.h"
#include "job.h" /* private to jobs/: these tests look into jobs */

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"

#define PROJECT "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define AK "QTWAOYTTINDUT2QVKYUC"
#define SK "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
#define PYTHON "/usr/bin/python3"   /* Debian's: never the python3 on PATH */
#define WAIT_SECONDS 20.0

/* ---- the emulator process ------------------------------------------------- */

static volatile sig_atomic_t emu_pid;   /* 0: none running */
static char emu_url[256];

/* atexit: SIGTERM (the emulator exits cleanly), SIGKILL if it lingers. */
static void emu_stop(void)
{
    pid_t pid = (pid_t)emu_pid;
    if (pid <= 0)
        return;
    emu_pid = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < 250; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Fatal signals (a crash, meson's timeout): only async-signal-safe calls. */
static void emu_kill_on_signal(int sig)
{
    pid_t pid = (pid_t)emu_pid;
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        emu_pid = 0;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int emu_start(const char *launcher)
{
    char state[PATH_MAX], log[PATH_MAX];
    snprintf(state, sizeof state, "%s/emu-state", tmpdir);
    snprintf(log, sizeof log, "%s/emulator.log", tmpdir);
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* Dies with this process even if it is SIGKILLed (the emulator
         * also watches its parent, every second). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int err = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (err < 0 || dup2(out[1], 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        execl(PYTHON, PYTHON, launcher, "--listen", "127.0.0.1:0", "--state-dir", state,
              "--job-delay", "3600", "--rows", "50", "--project", PROJECT, "--ak", AK, "--sk",
              SK, "--max-lifetime", "600", (char *)NULL);
        _exit(127);
    }
    emu_pid = pid;
    close(out[1]);
    /* Ready when it prints "URL http://127.0.0.1:PORT" (its first line). */
    char buf[256];
    size_t n = 0;
    double deadline = monotonic_now() + 10;
    while (!memchr(buf, '\n', n) && n < sizeof buf - 1) {
        struct pollfd pfd = { out[0], POLLIN, 0 };
        int left = (int)((deadline - monotonic_now()) * 1000);
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        ssize_t got = read(out[0], buf + n, sizeof buf - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(out[0]);
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    if (!nl || strncmp(buf, "URL ", 4) != 0) {
        fprintf(stderr, "the emulator did not print its URL line in 10 s (got '%s'); see %s\n",
                buf, log);
        return -EIO;
    }
    *nl = '\0';
    snprintf(emu_url, sizeof emu_url, "%s", buf + 4);
    return 0;
}

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* POST /_emulator/jobs/<id>/finish: the job ends now.  The HTTP status. */
static long emu_finish(const char *job_id, const char *status)
{
    char url[512], body[64];
    snprintf(url, sizeof url, "%s/_emulator/jobs/%s/finish", emu_url, job_id);
    snprintf(body, sizeof body, "{\"status\":\"%s\"}", status);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    long code = -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return code;
}

/* ---- the wake hook: counts calls per key --------------------------------- */

static struct {
    pthread_mutex_t m;
    const void *key[64];
    int count[64];
    size_t n;
    int null_count;
} wakes = { .m = PTHREAD_MUTEX_INITIALIZER };

/* Called with r->lock held: only records. */
static void on_wake(void *arg, const void *key)
{
    (void)arg;
    pthread_mutex_lock(&wakes.m);
    if (!key) {
        wakes.null_count++;
    } else {
        size_t i = 0;
        while (i < wakes.n && wakes.key[i] != key)
            i++;
        if (i == wakes.n && wakes.n < 64)
            wakes.key[wakes.n++] = key;
        if (i < 64)
            wakes.count[i]++;
    }
    pthread_mutex_unlock(&wakes.m);
}

static int wake_count(const void *key)
{
    pthread_mutex_lock(&wakes.m);
    int n = 0;
    if (!key)
        n = wakes.null_count;
    for (size_t i = 0; key && i < wakes.n; i++)
        if (wakes.key[i] == key)
            n = wakes.count[i];
    pthread_mutex_unlock(&wakes.m);
    return n;
}

/* Waits (bounded) until key was woken more than `seen` times. */
static int wait_wake(const void *key, int seen)
{
    double deadline = monotonic_now() + WAIT_SECONDS;
    while (wake_count(key) <= seen) {
        if (monotonic_now() > deadline)
            return -ETIMEDOUT;
        usleep(20000);
    }
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

struct mount {
    struct journal *jr;
    struct cloud *cloud;
    struct registry *r;
};

static int mount_open(struct mount *m, const char *cache, uint64_t cache_max, int *damaged)
{
    char *why = NULL;
    memset(m, 0, sizeof *m);
    int rc = journal_open(cache, &m->jr, &why);
    CHECK(rc == 0, "journal_open %s: %s", cache, why ? why : strerror(-rc));
    free(why);
    why = NULL;
    if (rc)
        return rc;
    struct creds creds = { 0 };
    rc = creds_resolve(NULL, NULL, &creds, &why);
    CHECK(rc == 0 && creds.kind == CREDS_AKSK, "credentials from the environment: %s",
          why ? why : strerror(-rc));
    free(why);
    why = NULL;
    struct cloud_config cc = { .waf_base = emu_url, .hss_base = emu_url, .iam_base = emu_url,
                               .request_timeout_s = 10 };
    rc = cloud_create(&cc, &creds, &m->cloud, &why);
    creds_clear(&creds);
    CHECK(rc == 0, "cloud_create: %s", why ? why : strerror(-rc));
    free(why);
    if (rc)
        return rc;
    rc = registry_create(m->jr, m->cloud, 0.1, &m->r);
    CHECK(rc == 0, "registry_create: %d", rc);
    if (rc)
        return rc;
    m->r->locate_wait = 30;
    m->r->cache_max = cache_max;
    m->r->on_wake = on_wake;
    *damaged = registry_load(m->r);
    rc = registry_add_project(m->r, PROJECT);
    CHECK(rc == 0 || rc == -EEXIST, "registry_add_project: %d", rc);
    return 0;
}

static void mount_close(struct mount *m)
{
    registry_destroy(m->r);
    cloud_destroy(m->cloud);
    journal_close(m->jr);
    memset(m, 0, sizeof *m);
}

/* The job's .job.json (caller decrefs). */
static json_t *snapshot(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    json_t *o = job_to_json_locked(j);
    pthread_mutex_unlock(&r->lock);
    return o;
}

static const char *field(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "(null)";
}

static json_int_t int_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Waits until the job's `archive` is `want` (another worker's state change). */
static int wait_archive(struct registry *r, struct job *j, const char *want)
{
    double deadline = monotonic_now() + WAIT_SECONDS;
    for (;;) {
        json_t *o = snapshot(r, j);
        int ok = strcmp(field(o, "archive"), want) == 0;
        json_decref(o);
        if (ok)
            return 0;
        if (monotonic_now() > deadline)
            return -ETIMEDOUT;
        usleep(20000);
    }
}

static int polls_of(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    int n = j->polls;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* registry_job_ended until it is not REGISTRY_WAIT, asking again only when
 * the job was woken. */
static int wait_ended(struct registry *r, struct job *j)
{
    for (;;) {
        int seen = wake_count(j);
        int rc = registry_job_ended(r, j);
        if (rc != REGISTRY_WAIT || wait_wake(j, seen) != 0)
            return rc;
    }
}

/* registry_job_listing or _index until it is not REGISTRY_WAIT, likewise. */
static int wait_index(struct registry *r, struct job *j, int listing, struct aindex **out,
                      int *waits)
{
    for (;;) {
        int seen = wake_count(j);
        int rc = listing ? registry_job_listing(r, j, out) : registry_job_index(r, j, out);
        if (rc != REGISTRY_WAIT)
            return rc;
        (*waits)++;
        if (wait_wake(j, seen) != 0)
            return rc;
    }
}

static struct job *submit(struct registry *r, const char *filter_text, char id[65])
{
    json_t *filter = NULL;
    char *body = NULL, *why = NULL;
    enum filter_parse_result pr = filter_parse(filter_text, strlen(filter_text), &filter, &body,
                                               &why);
    CHECK(pr == FILTER_COMPLETE, "filter_parse %s: %s", filter_text, why ? why : "?");
    free(why);
    if (pr != FILTER_COMPLETE)
        return NULL;
    char *msg = NULL;
    int rc = registry_submit(r, PROJECT, filter, body, id, &msg);
    CHECK(rc == 0, "registry_submit %s: %d %s", filter_text, rc, msg ? msg : "");
    free(msg);
    json_decref(filter);
    free(body);
    return rc ? NULL : registry_get_job(r, PROJECT, id);
}

static void check_local_file(struct registry *r, struct job *j, json_int_t size,
                             json_int_t mtime, const char *what)
{
    char path[PATH_MAX];
    pthread_mutex_lock(&r->lock);
    int rc = job_archive_path_locked(r, j, path);
    pthread_mutex_unlock(&r->lock);
    CHECK(rc == 0, "%s: no archive path", what);
    struct stat st;
    CHECK(rc == 0 && stat(path, &st) == 0, "%s: %s is not there", what, path);
    if (rc == 0 && stat(path, &st) == 0) {
        CHECK(st.st_size == size, "%s: %s has %lld bytes, local_size %lld", what, path,
              (long long)st.st_size, (long long)size);
        CHECK(st.st_mtime == mtime, "%s: %s has mtime %lld, local_mtime %lld", what, path,
              (long long)st.st_mtime, (long long)mtime);
    }
}

/* ---- phase 1 -------------------------------------------------------------- */

struct remembered {
    char waf[65], hss[65], running[65];
    char waf_match[16], waf_file_id[65], waf_format[8], hss_file_id[65], hss_format[8];
    json_int_t size[2], mtime[2];   /* waf, hss */
};

static void phase1(const char *cache, struct remembered *mem)
{
    struct mount m;
    int damaged = -1;
    if (mount_open(&m, cache, 0, &damaged))
        return;
    struct registry *r = m.r;
    CHECK(damaged == 0, "a fresh cache has %d damaged records", damaged);

    struct job *waf = submit(r, "{\"recent\":\"today\",\"dump_columns\":[\"id\",\"time\",\"host\"]}",
                             mem->waf);
    struct job *hss = submit(r, "{\"service\":\"hss\",\"category\":\"host\",\"last_days\":7}",
                             mem->hss);
    struct job *run = submit(r, "{\"recent\":\"1week\",\"dump_columns\":[\"id\"]}", mem->running);
    if (!waf || !hss || !run)
        goto out;
    CHECK(waf->service == SERVICE_WAF, "the WAF job's service is %d", waf->service);
    CHECK(hss->service == SERVICE_HSS, "the HSS job's service is %d", hss->service);

    /* No worker runs: nothing can have changed. */
    struct aindex *idx = NULL;
    CHECK(registry_job_ended(r, waf) == REGISTRY_WAIT, "a running job has ended");
    CHECK(registry_job_ended(r, hss) == REGISTRY_WAIT, "a running task has ended");
    CHECK(registry_job_listing(r, waf, &idx) == -ENOENT, "a running job has an archive");

    CHECK(poller_start(r) == 0, "poller_start");
    /* Polled twice each (still running: they end when finished below). */
    double deadline = monotonic_now() + WAIT_SECONDS;
    while ((polls_of(r, waf) < 2 || polls_of(r, hss) < 2) && monotonic_now() < deadline)
        usleep(20000);
    CHECK(polls_of(r, waf) >= 2 && polls_of(r, hss) >= 2, "the poller did not poll (%d, %d)",
          polls_of(r, waf), polls_of(r, hss));
    CHECK(registry_job_ended(r, waf) == REGISTRY_WAIT, "a running job has ended");
    CHECK(registry_job_ended(r, hss) == REGISTRY_WAIT, "a running task has ended");

    int waf_woken = wake_count(waf), hss_woken = wake_count(hss);
    CHECK(emu_finish(mem->waf, "success") == 200, "finish %s", mem->waf);
    CHECK(emu_finish(mem->hss, "success") == 200, "finish %s", mem->hss);
    CHECK(wait_ended(r, waf) == 0, "the WAF job did not end");
    CHECK(wait_ended(r, hss) == 0, "the HSS task did not end");
    CHECK(wake_count(waf) > waf_woken, "no wake for the WAF job when it ended");
    CHECK(wake_count(hss) > hss_woken, "no wake for the HSS task when it ended");
    CHECK(registry_job_ended(r, run) == REGISTRY_WAIT, "the job left running has ended");

    /* Located (WAF) and queued; no fetcher runs yet: the archive is awaited. */
    CHECK(wait_archive(r, waf, "queued") == 0, "the WAF job's file was not located");
    CHECK(wait_archive(r, hss, "queued") == 0, "the HSS task's file was not queued");
    json_t *o = snapshot(r, waf);
    CHECK(strcmp(field(o, "state"), "success") == 0, "WAF state %s", field(o, "state"));
    CHECK(strcmp(field(o, "file_match"), "time") == 0, "WAF file_match %s",
          field(o, "file_match"));
    CHECK(strcmp(field(o, "file_id"), "(null)") != 0, "WAF file_id is null");
    json_decref(o);
    CHECK(registry_job_listing(r, waf, &idx) == REGISTRY_WAIT, "listing before the fetch");
    CHECK(registry_job_index(r, waf, &idx) == REGISTRY_WAIT, "index before the fetch");
    CHECK(registry_job_listing(r, hss, &idx) == REGISTRY_WAIT, "listing before the fetch");
    CHECK(registry_job_index(r, hss, &idx) == REGISTRY_WAIT, "index before the fetch");

    CHECK(fetcher_start(r) == 0, "fetcher_start");
    struct job *jobs[2] = { waf, hss };
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "HSS" : "WAF";
        int waits = 0, rc;
        idx = NULL;
        rc = wait_index(r, jobs[k], 1, &idx, &waits);
        CHECK(rc == 0 && idx, "%s: listing %d", name, rc);
        if (rc == 0) {
            CHECK(aindex_entry_count(idx) >= 1, "%s: an empty index", name);
            registry_index_done(r, jobs[k]);
        }
        idx = NULL;
        rc = wait_index(r, jobs[k], 0, &idx, &waits);
        CHECK(rc == 0 && idx, "%s: index %d", name, rc);
        if (rc == 0) {
            CHECK(aindex_entry_count(idx) >= 1, "%s: an empty index", name);
            registry_index_done(r, jobs[k]);
        }
        CHECK(wait_archive(r, jobs[k], "ready") == 0, "%s: the archive is not ready", name);
        o = snapshot(r, jobs[k]);
        CHECK(strcmp(field(o, "format"), k ? "zip" : "csv") == 0, "%s: format %s", name,
              field(o, "format"));
        CHECK(int_field(o, "local_size") > 0 && int_field(o, "local_mtime") > 0,
              "%s: local_size %lld local_mtime %lld", name, (long long)int_field(o, "local_size"),
              (long long)int_field(o, "local_mtime"));
        mem->size[k] = int_field(o, "local_size");
        mem->mtime[k] = int_field(o, "local_mtime");
        check_local_file(r, jobs[k], mem->size[k], mem->mtime[k], name);
        snprintf(k ? mem->hss_file_id : mem->waf_file_id, 65, "%s", field(o, "file_id"));
        snprintf(k ? mem->hss_format : mem->waf_format, 8, "%s", field(o, "format"));
        if (!k)
            snprintf(mem->waf_match, sizeof mem->waf_match, "%s", field(o, "file_match"));
        json_decref(o);
    }

    char *why = NULL;
    CHECK(registry_attach(r, PROJECT, "ffffffffffffffffffffffffffffffff", &why)
              == -ENOENT, "attach of an unknown id: %s", why ? why : "");
    free(why);
    CHECK(registry_get_job(r, PROJECT, "ffffffffffffffffffffffffffffffff") == NULL,
          "a job not attached is known");

    /* Stopping wakes every waiter (key NULL); a running job answers -ESHUTDOWN. */
    int all_woken = wake_count(NULL);
    workers_stop(r);
    CHECK(wake_count(NULL) > all_woken, "workers_stop did not wake everything (key NULL)");
    CHECK(registry_job_ended(r, run) == -ESHUTDOWN, "a running job after workers_stop: %d",
          registry_job_ended(r, run));
    CHECK(registry_job_ended(r, waf) == 0, "an ended job after workers_stop");

    /* Forgetting: the job answers -ENOENT to those still holding it, and
     * they are woken. */
    int run_woken = wake_count(run);
    CHECK(registry_forget(r, PROJECT, mem->running) == 0, "registry_forget");
    CHECK(registry_job_ended(r, run) == -ENOENT, "a forgotten job: %d",
          registry_job_ended(r, run));
    CHECK(registry_job_listing(r, run, &idx) == -ENOENT, "a forgotten job's listing");
    CHECK(wake_count(run) > run_woken, "registry_forget did not wake the job");
    CHECK(registry_get_job(r, PROJECT, mem->running) == NULL, "a forgotten job is still known");
    CHECK(registry_forget(r, PROJECT, mem->running) == -ENOENT, "forgetting twice");
out:
    if (waf)
        registry_put_job(r, waf);
    if (hss)
        registry_put_job(r, hss);
    if (run)
        registry_put_job(r, run);
    workers_stop(r); /* again: a no-op, or the stop of a phase cut short */
    mount_close(&m);
}

/* Makes both files a day older, in their records and on disk, as if fetched
 * yesterday: a fetch again must give back that time, not today's (the same
 * second as the first fetch would not tell them apart). */
static void age_files(const char *cache, struct remembered *mem)
{
    const char *ids[2] = { mem->waf, mem->hss };
    const char *formats[2] = { mem->waf_format, mem->hss_format };
    for (int k = 0; k < 2; k++) {
        char dir[PATH_MAX], path[PATH_MAX];
        pathf(dir, "%s/journal/jobs/%s", cache, PROJECT);
        pathf(path, "%s/%s.json", dir, ids[k]);
        json_t *rec = json_load_file(path, 0, NULL);
        CHECK(json_is_object(rec), "cannot read %s", path);
        if (!rec)
            continue;
        mem->mtime[k] -= 86400;
        json_object_set_new(rec, "local_mtime", json_integer(mem->mtime[k]));
        char *text = json_dumps(rec, JSON_COMPACT);
        char name[128];
        snprintf(name, sizeof name, "%s.json", ids[k]);
        CHECK(text && write_file_atomic(dir, name, text, strlen(text)) == 0, "rewrite %s", path);
        free(text);
        json_decref(rec);
        pathf(path, "%s/archives/%s/%s.%s", cache, PROJECT, ids[k], formats[k]);
        struct timespec times[2] = { { (time_t)mem->mtime[k], 0 }, { (time_t)mem->mtime[k], 0 } };
        CHECK(utimensat(AT_FDCWD, path, times, 0) == 0, "utimensat %s: %s", path,
              strerror(errno));
    }
}

/* ---- phase 2: the journal reloaded; cache_max ---------------------------- */

static void phase2(const char *cache, const struct remembered *mem)
{
    struct mount m;
    int damaged = -1;
    if (mount_open(&m, cache, 1, &damaged))
        return;
    struct registry *r = m.r;
    CHECK(damaged == 0, "%d damaged records", damaged);
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, PROJECT);
    size_t njobs = p ? p->njobs : 0;
    pthread_mutex_unlock(&r->lock);
    CHECK(njobs == 2, "the reloaded project has %zu jobs, want 2 (the forgotten one gone)",
          njobs);
    CHECK(registry_get_job(r, PROJECT, mem->running) == NULL, "a forgotten job came back");
    struct job *jobs[2] = { registry_get_job(r, PROJECT, mem->waf),
                            registry_get_job(r, PROJECT, mem->hss) };
    CHECK(jobs[0] && jobs[1], "the reloaded registry lacks a job (%p %p)", (void *)jobs[0],
          (void *)jobs[1]);
    if (!jobs[0] || !jobs[1])
        goto out;
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "HSS" : "WAF";
        json_t *o = snapshot(r, jobs[k]);
        CHECK(strcmp(field(o, "service"), k ? "hss" : "waf") == 0, "%s: service %s", name,
              field(o, "service"));
        CHECK(strcmp(field(o, "state"), "success") == 0, "%s: state %s", name,
              field(o, "state"));
        CHECK(strcmp(field(o, "archive"), "ready") == 0, "%s: archive %s", name,
              field(o, "archive"));
        CHECK(strcmp(field(o, "file_id"), k ? mem->hss_file_id : mem->waf_file_id) == 0,
              "%s: file_id %s", name, field(o, "file_id"));
        CHECK(strcmp(field(o, "format"), k ? mem->hss_format : mem->waf_format) == 0,
              "%s: format %s", name, field(o, "format"));
        CHECK(int_field(o, "local_size") == mem->size[k] &&
              int_field(o, "local_mtime") == mem->mtime[k], "%s: local_size/mtime changed",
              name);
        if (!k)
            CHECK(strcmp(field(o, "file_match"), mem->waf_match) == 0, "WAF: file_match %s",
                  field(o, "file_match"));
        json_decref(o);
        CHECK(registry_job_ended(r, jobs[k]) == 0, "%s: not ended after reload", name);
    }

    /* cache_max 1 byte: every archive but the most recently fetched goes. */
    registry_enforce_cache_max(r);
    int evicted = -1, n_evicted = 0;
    for (int k = 0; k < 2; k++) {
        json_t *o = snapshot(r, jobs[k]);
        if (strcmp(field(o, "archive"), "evicted") == 0) {
            evicted = k;
            n_evicted++;
        }
        json_decref(o);
    }
    CHECK(n_evicted == 1, "%d archives evicted, want 1", n_evicted);
    if (n_evicted != 1)
        goto out;
    struct job *ev = jobs[evicted], *kept = jobs[!evicted];
    const char *name = evicted ? "HSS" : "WAF";
    char path[PATH_MAX];
    struct stat st;
    pthread_mutex_lock(&r->lock);
    job_archive_path_locked(r, ev, path);
    pthread_mutex_unlock(&r->lock);
    CHECK(stat(path, &st) < 0 && errno == ENOENT, "%s: the evicted %s is still there", name,
          path);

    /* Used again: fetched again, with the size and time it first had. */
    CHECK(poller_start(r) == 0 && fetcher_start(r) == 0, "workers");
    struct aindex *idx = NULL;
    int waits = 0;
    int rc = wait_index(r, ev, 1, &idx, &waits);
    CHECK(rc == 0 && idx, "%s: listing after eviction: %d", name, rc);
    CHECK(waits >= 1, "%s: an evicted archive was listed without a fetch", name);
    if (rc == 0)
        registry_index_done(r, ev);
    rc = wait_index(r, ev, 0, &idx, &waits);
    CHECK(rc == 0 && idx, "%s: index after eviction: %d", name, rc);
    if (rc == 0) {
        CHECK(aindex_entry_count(idx) >= 1, "%s: an empty index", name);
        registry_index_done(r, ev);
    }
    CHECK(wait_archive(r, ev, "ready") == 0, "%s: not ready after the fetch", name);
    json_t *o = snapshot(r, ev);
    CHECK(int_field(o, "local_size") == mem->size[evicted], "%s: local_size %lld, was %lld",
          name, (long long)int_field(o, "local_size"), (long long)mem->size[evicted]);
    CHECK(int_field(o, "local_mtime") == mem->mtime[evicted], "%s: local_mtime %lld, was %lld",
          name, (long long)int_field(o, "local_mtime"), (long long)mem->mtime[evicted]);
    json_decref(o);
    check_local_file(r, ev, mem->size[evicted], mem->mtime[evicted], name);
    /* Now the other one is the least recently fetched: it goes. */
    CHECK(wait_archive(r, kept, "evicted") == 0, "the other archive was not evicted");
out:
    workers_stop(r);
    for (int k = 0; k < 2; k++)
        if (jobs[k])
            registry_put_job(r, jobs[k]);
    mount_close(&m);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s contrib/hwcloud-emulator\n", argv[0]);
        return 2;
    }
    if (access(PYTHON, X_OK) != 0) {
        fprintf(stderr, "%s is missing: skipped\n", PYTHON);
        return 77;
    }
    if (scratch_make("hcx-unit-registry-") < 0)
        return 1;
    atexit(emu_stop);
    static const int fatal[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS,
                                 SIGFPE, SIGILL };
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        signal(fatal[i], emu_kill_on_signal);
    signal(SIGPIPE, SIG_IGN);
    /* The credentials, as the integration tests give them. */
    unsetenv("HUAWEICLOUD_SDK_AK");
    unsetenv("HUAWEICLOUD_SDK_SK");
    unsetenv("HUAWEICLOUD_SDK_SECURITY_TOKEN");
    unsetenv("CLOUD_SDK_SECURITY_TOKEN");
    setenv("CLOUD_SDK_AK", AK, 1);
    setenv("CLOUD_SDK_SK", SK, 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    double started = monotonic_now();
    if (emu_start(argv[1]) == 0) {
        char cache[PATH_MAX];
        snprintf(cache, sizeof cache, "%s/cache", tmpdir);
        struct remembered mem;
        memset(&mem, 0, sizeof mem);
        phase1(cache, &mem);
        if (!failures)
            age_files(cache, &mem);
        if (!failures)
            phase2(cache, &mem);
    } else {
        failures++;
    }
    emu_stop();
    aindex_shutdown();
    curl_global_cleanup();
    if (failures) {
        fprintf(stderr, "kept %s (emulator.log, cache/) for a look\n", tmpdir);
    } else {
        scratch_remove();
    }
    printf("registry: %d checks, %d failed (%.1f s)\n", checks, failures,
           monotonic_now() - started);
    return failures != 0;
}
