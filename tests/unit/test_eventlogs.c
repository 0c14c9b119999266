/* The event-logs/ model (eventlogs.h) against the emulator: names and
 * clashes, sizes learnt before reading and equal to what is read, times,
 * everything stable across a remount without a cloud call, a file that
 * leaves the list, an expired URL, a file shared with a job (downloaded
 * once, either way round), cache_max eviction and fetching again, and a
 * list of 5,000 files (time and calls).  The FUSE side is not here: the
 * calls are made as it will make them, again until they stop answering
 * REGISTRY_WAIT.  argv[1]: contrib/hwcloud-emulator. */
#include "eventlogs_internal.h"
#include "log.h"
#include "strbuf.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"

#define PROJECT "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define TOKEN "unit-test-token-0123456789"

static char base[200], cache[4096];
static pid_t emu_pid;

/* ---- the emulator -------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    struct strbuf *b = arg;
    strbuf_append(b, data, size * n);
    return size * n;
}

/* One HTTP call; returns the status, *out the body (caller frees). */
static long http(const char *method, const char *url, const char *body, const char *header,
                 char **out)
{
    CURL *c = curl_easy_init();
    struct strbuf b = STRBUF_INIT;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (header)
        h = curl_slist_append(h, header);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    char *s = strbuf_finish(&b);
    if (out)
        *out = s;
    else
        free(s);
    return status;
}

static json_t *admin(const char *method, const char *path, const char *body)
{
    char url[512], *out = NULL;
    snprintf(url, sizeof url, "%s/_emulator/%s", base, path);
    long st = http(method, url, body, NULL, &out);
    json_t *j = st == 200 && out ? json_loads(out, 0, NULL) : NULL;
    if (!j)
        fprintf(stderr, "admin %s %s -> %ld %s\n", method, path, st, out ? out : "");
    free(out);
    return j;
}

static void admin_ok(const char *method, const char *path, const char *body)
{
    json_decref(admin(method, path, body));
}

/* Request-log entries matching api (and file id, when given). */
static int count_log(const char *api, const char *file_id, const char *range)
{
    json_t *log = admin("GET", "log", NULL), *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(log, "requests"), i, e) {
        const char *a = json_string_value(json_object_get(e, "api"));
        const char *f = json_string_value(json_object_get(e, "file_id"));
        const char *rg = json_string_value(json_object_get(e, "range"));
        if (a && !strcmp(a, api) && (!file_id || (f && !strcmp(f, file_id))) &&
            (!range || (rg ? !strcmp(rg, range) : !strcmp(range, "none"))))
            n++;
    }
    json_decref(log);
    return n;
}

static int start_emulator(const char *script, const char *errlog)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    emu_pid = fork();
    if (emu_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        int err = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (err >= 0)
            dup2(err, 2);
        execlp("python3", "python3", script, "--listen", "127.0.0.1:0", "--project", PROJECT,
               "--token", TOKEN, "--job-delay", "0.2", "--max-lifetime", "600", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[256] = "";
    ssize_t n = read(fds[0], line, sizeof line - 1);
    close(fds[0]);
    if (n <= 4 || strncmp(line, "URL ", 4))
        return -1;
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    snprintf(base, sizeof base, "%.199s", line + 4);
    return 0;
}

/* ---- a mount without FUSE ------------------------------------------------- */

struct mount {
    struct journal *journal;
    struct cloud *cloud;
    struct registry *r;
    struct eventlogs *el;
};

static void mount_up(struct mount *m, double poll_interval)
{
    char *why = NULL;
    CHECK(journal_open(cache, &m->journal, &why) == 0, "journal: %s", why ? why : "?");
    struct creds c = { .kind = CREDS_TOKEN_FILE };
    char tok[4200];
    snprintf(tok, sizeof tok, "%s/token", cache);
    FILE *f = fopen(tok, "w");
    fputs(TOKEN, f);
    fclose(f);
    chmod(tok, 0600);
    c.token_file = strdup(tok);
    struct cloud_config cc = { .waf_base = base, .hss_base = base, .request_timeout_s = 10 };
    CHECK(cloud_create(&cc, &c, &m->cloud, &why) == 0, "cloud: %s", why ? why : "?");
    CHECK(registry_create(m->journal, m->cloud, poll_interval, &m->r) == 0, "registry");
    m->r->locate_wait = 10;
    registry_load(m->r);
    registry_add_project(m->r, PROJECT);
    CHECK(eventlogs_create(m->r, &m->el) == 0, "eventlogs_create");
    fetcher_start(m->r);
    poller_start(m->r);
    eventlogs_start(m->el);
}

static void mount_down(struct mount *m)
{
    eventlogs_stop(m->el);
    workers_stop(m->r);
    eventlogs_destroy(m->el);
    registry_destroy(m->r);
    cloud_destroy(m->cloud);
    journal_close(m->journal);
}

/* Calls again while the answer is REGISTRY_WAIT (as the FUSE side will,
 * woken by registry_wake); gives up after 30 s. */
#define UNTIL_ANSWER(rc, call)                                                                     \
    do {                                                                                           \
        const void *key_ = NULL;                                                                   \
        (void)key_;                                                                                \
        for (int i_ = 0; i_ < 6000; i_++) {                                                        \
            rc = (call);                                                                           \
            if (rc != REGISTRY_WAIT)                                                               \
                break;                                                                             \
            usleep(5000);                                                                          \
        }                                                                                          \
    } while (0)

static int list(struct mount *m, struct eventlog_listing *l)
{
    int rc;
    UNTIL_ANSWER(rc, eventlogs_list(m->el, PROJECT, l, &key_));
    return rc;
}

static const struct eventlog_entry *entry(const struct eventlog_listing *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->entries[i].name, name))
            return &l->entries[i];
    return NULL;
}

/* Reads a file as the FUSE side will; malloc'd bytes, *len. */
static char *read_file(struct mount *m, const char *name, int64_t *len, int *rc_out)
{
    struct eventlog_file h;
    int rc;
    UNTIL_ANSWER(rc, eventlogs_open(m->el, PROJECT, name, &h, &key_));
    *rc_out = rc;
    if (rc)
        return NULL;
    char *buf = calloc(1, (size_t)h.size + 2);
    *len = pread(h.fd, buf, (size_t)h.size + 1, 0); /* one more: the size is exact */
    eventlogs_release(m->el, &h);
    return buf;
}

static char *emulator_bytes(const char *file_id, long *len)
{
    char path[256], *out = NULL;
    snprintf(path, sizeof path, "files/%s/url", file_id);
    json_t *u = admin("GET", path, NULL);
    long st = http("GET", json_string_value(json_object_get(u, "url")), NULL, NULL, &out);
    json_decref(u);
    *len = out ? (long)strlen(out) : 0; /* CSV text: no NUL */
    return st == 200 ? out : (free(out), NULL);
}

static json_t *emu_file(const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "files/%s", id);
    return admin("GET", path, NULL);
}

static void reset_emulator(void)
{
    admin_ok("POST", "reset", NULL);
    admin_ok("PATCH", "config", "{\"daily_files\":0,\"daily_future\":0,\"foreign_files\":0}");
}

/* ---- the tests ------------------------------------------------------------ */

/* Names alone (no cloud): the cleaning, "<id>.csv", the clash suffix and
 * the 255-byte bound, on hostile names. */
static void test_naming(void)
{
    struct evproject p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", PROJECT);
    char longname[256];
    memset(longname, 'x', 250);
    memcpy(longname + 250, ".csv", 5);
    const struct {
        const char *id, *obsname, *filename, *want;
    } cases[] = {
        { "id1", "", "../../etc/passwd\n.csv", "etc%2Fpasswd%0A.csv" },
        { "id2", "", "", "id2.csv" },
        { "id3", "", ".", "id3.csv" },
        { "a/b", "", "", "a%2Fb.csv" },
        { "id5", "", "a.csv.gz", "a.csv.gz" },
        { "id6", "", "a.csv.gz", "a-id6.csv.gz" },
        { "id7", "", "a-id6.csv.gz", "a-id6-id7.csv.gz" },
        { "", "obs/x", "noid.csv", "noid.csv" },
        { "id9", "", "noid.csv", "noid-id9.csv" },
        { "idA", "", "caf\xc3\xa9\xff.csv", "caf\xc3\xa9%FF.csv" },
        { "idB", "", "README", "README" },
        { "idC", "", "README", "README-idC" },
        { "idD", "", longname, longname },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct event_file it = { .timestamp = 1 };
        snprintf(it.id, sizeof it.id, "%s", cases[i].id);
        snprintf(it.obsname, sizeof it.obsname, "%s", cases[i].obsname);
        snprintf(it.filename, sizeof it.filename, "%s", cases[i].filename);
        struct evfile *f = ev_new_file(&it, PROJECT);
        CHECK(f && ev_assign_name(&p, f) == 0 && ev_add_file(&p, f) == 0, "case %zu", i);
        CHECK(f && !strcmp(f->name, cases[i].want), "case %zu: '%s', want '%s'", i,
              f ? f->name : "", cases[i].want);
    }
    /* a clash of the longest name: cut before its extension, still 255 bytes */
    struct event_file it = { .timestamp = 1 };
    snprintf(it.id, sizeof it.id, "idE");
    snprintf(it.filename, sizeof it.filename, "%s", longname);
    struct evfile *f = ev_new_file(&it, PROJECT);
    CHECK(ev_assign_name(&p, f) == 0 && strlen(f->name) == 255 &&
          !strcmp(f->name + 255 - 8, "-idE.csv"), "long clash: %s", f->name);
    ev_add_file(&p, f);
    /* ids that are not file names get a hashed local stem */
    struct evfile *ab = ev_by_name_locked(&p, "a%2Fb.csv");
    CHECK(ab && ab->lid[0] == 'h' && strlen(ab->lid) == 33, "lid of a/b: %s", ab ? ab->lid : "");
    struct evfile *one = ev_by_name_locked(&p, "etc%2Fpasswd%0A.csv");
    CHECK(one && !strcmp(one->lid, "iid1") && one->ino && one->ino != ab->ino, "lid, ino");
    for (size_t i = 0; i < p.n; i++)
        ev_unref_locked(NULL, p.files[i]);
    free(p.files);
    free(p.names);
}

static void test_names_sizes_times(struct mount *m, json_t **ids)
{
    reset_emulator();
    *ids = admin("POST", "files/bulk", "{\"project\":\"" PROJECT "\",\"count\":30,"
                                       "\"clash_every\":5,\"empty_every\":7,\"step_ms\":1000}");
    json_t *files = json_object_get(*ids, "files");
    struct eventlog_listing l;
    CHECK(list(m, &l) == 0 && l.n == 30, "listed %zu", l.n);
    for (size_t i = 0; i < 30; i++) {
        const char *id = json_string_value(json_array_get(files, i));
        json_t *v = emu_file(id);
        char want[300];
        if (i % 7 == 6)
            snprintf(want, sizeof want, "%s.csv", id);
        else if (i % 5 == 4) /* the newer namesake (i-1) gets "-<id>" */
            snprintf(want, sizeof want, "waf-bulk-%05zu.csv", i - 1);
        else if (i % 5 == 3 && i + 1 < 30 && (i + 1) % 7 != 6)
            snprintf(want, sizeof want, "waf-bulk-%05zu-%s.csv", i, id);
        else
            snprintf(want, sizeof want, "waf-bulk-%05zu.csv", i);
        const struct eventlog_entry *e = entry(&l, want);
        CHECK(e != NULL, "file %zu: no entry %s", i, want);
        if (e) {
            json_int_t size = json_integer_value(json_object_get(v, "size"));
            json_int_t ts = json_integer_value(json_object_get(v, "timestamp"));
            CHECK(e->size == size && e->mtime == ts / 1000, "%s: size %lld/%lld mtime %lld/%lld",
                  want, (long long)e->size, (long long)size, (long long)e->mtime,
                  (long long)(ts / 1000));
        }
        json_decref(v);
    }
    eventlog_listing_release(&l);
    CHECK(count_log("storage", NULL, "none") == 0, "a listing downloaded a file");
    CHECK(count_log("storage", NULL, "bytes=0-0") == 30, "one size probe per file");
}

static void test_read(struct mount *m, json_t *ids)
{
    const char *id0 = json_string_value(json_array_get(json_object_get(ids, "files"), 0));
    long want_len = 0;
    char *want = emulator_bytes(id0, &want_len);
    admin_ok("DELETE", "log", NULL);
    int64_t len = 0;
    int rc;
    char *got = read_file(m, "waf-bulk-00000.csv", &len, &rc);
    CHECK(rc == 0 && got && want && len == want_len && !memcmp(got, want, (size_t)len),
          "read %d: %lld bytes, emulator %ld", rc, (long long)len, want_len);
    free(got);
    free(got = read_file(m, "waf-bulk-00000.csv", &len, &rc));
    free(want);
    CHECK(count_log("storage", id0, "none") == 1, "downloads of the file: %d",
          count_log("storage", id0, "none"));
    json_t *st = eventlogs_stats_json(m->el);
    CHECK(json_integer_value(json_object_get(st, "files_fetched")) == 1, "files_fetched");
    CHECK(json_integer_value(json_object_get(st, "size_probes")) == 30, "size_probes");
    json_decref(st);
}

/* A file that left the list and came back is a new evfile with the old
 * one's local stem: its fetch waits while the old one still winds down,
 * or both would write one .part file. */
static void test_namesake_waits_for_the_old_fetch(struct mount *m)
{
    struct eventlogs *el = m->el;
    struct registry *r = el->r;
    pthread_mutex_lock(&r->lock);
    struct evproject *p = ev_project_locked(el, PROJECT);
    struct evfile *f = NULL;
    for (size_t i = 0; p && i < p->n && !f; i++)
        if (p->files[i]->local == EV_REMOTE)
            f = p->files[i];
    CHECK(f != NULL, "no file left to fetch");
    int slot = 0;
    while (slot < REGISTRY_FETCHERS && el->fetching[slot])
        slot++;
    if (f && slot < REGISTRY_FETCHERS) {
        static struct evfile old; /* the one that left, its fetch stopping */
        old.proj = p;
        old.gone = 1;
        memcpy(old.lid, f->lid, sizeof old.lid);
        el->fetching[slot] = &old;
        f->local = EV_QUEUED;
        struct evfile *got = eventlogs_next_queued_locked(el);
        CHECK(got != f, "the namesake's fetch started while the old one ran");
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; got && i < REGISTRY_FETCHERS; i++)
                if (el->fetching[i] == got)
                    el->fetching[i] = NULL;
            if (got) { /* not fetched here: back as it was */
                got->local = EV_REMOTE;
                ev_unref_locked(el, got);
            }
            if (pass == 0) {
                el->fetching[slot] = NULL; /* the old fetch is over */
                f->local = EV_QUEUED;
                got = eventlogs_next_queued_locked(el);
                CHECK(got == f, "the namesake never fetched after the old fetch ended");
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static void test_remount_stable(struct mount *m, json_t *ids)
{
    struct eventlog_entry before, after;
    int rc;
    UNTIL_ANSWER(rc, eventlogs_lookup(m->el, PROJECT, "waf-bulk-00002.csv", &before, &key_));
    mount_down(m);
    admin_ok("DELETE", "log", NULL);
    mount_up(m, 3600);
    UNTIL_ANSWER(rc, eventlogs_lookup(m->el, PROJECT, "waf-bulk-00002.csv", &after, &key_));
    CHECK(rc == 0 && after.size == before.size && after.mtime == before.mtime &&
          after.ino == before.ino, "after a remount: rc %d size %lld mtime %lld", rc,
          (long long)after.size, (long long)after.mtime);
    struct eventlog_listing l;
    CHECK(list(m, &l) == 0 && l.n == 30, "remembered list %zu", l.n);
    eventlog_listing_release(&l);
    int64_t len;
    char *got = read_file(m, "waf-bulk-00000.csv", &len, &rc);
    CHECK(rc == 0 && got, "the local copy survives");
    free(got);
    json_t *log = admin("GET", "log", NULL);
    CHECK(json_array_size(json_object_get(log, "requests")) == 0,
          "a remount called the cloud %zu times", json_array_size(json_object_get(log, "requests")));
    json_decref(log);
    (void)ids;
}

static void test_leaves_the_list(struct mount *m, json_t *ids)
{
    const char *id0 = json_string_value(json_array_get(json_object_get(ids, "files"), 0));
    char path[128], dir[4200];
    snprintf(path, sizeof path, "files/%s", id0);
    admin_ok("DELETE", path, NULL);
    mount_down(m);
    mount_up(m, 0.2);
    usleep(300000);
    struct eventlog_listing l;
    CHECK(list(m, &l) == 0 && l.n == 29 && !entry(&l, "waf-bulk-00000.csv"),
          "after it left: %zu", l.n);
    eventlog_listing_release(&l);
    snprintf(dir, sizeof dir, "%s/archives/%s/event-logs/i%s.csv", cache, PROJECT, id0);
    CHECK(access(dir, F_OK) < 0, "its copy is still on disk");
    struct eventlog_entry e;
    int rc;
    UNTIL_ANSWER(rc, eventlogs_lookup(m->el, PROJECT, "waf-bulk-00000.csv", &e, &key_));
    CHECK(rc == -ENOENT, "lookup of a file that left: %d", rc);
}

static void test_expired_url(struct mount *m, json_t *ids)
{
    const char *id1 = json_string_value(json_array_get(json_object_get(ids, "files"), 1));
    struct eventlog_listing l;
    list(m, &l);
    eventlog_listing_release(&l);
    /* the URLs listed are 10 minutes old on the cloud's clock */
    admin_ok("PATCH", "config", "{\"clock_offset\":700}");
    admin_ok("DELETE", "log", NULL);
    int64_t len;
    int rc;
    char *got = read_file(m, "waf-bulk-00001.csv", &len, &rc);
    CHECK(rc == 0 && got, "read with an expired URL: %d", rc);
    free(got);
    /* storage names no file in the log of a refused request */
    CHECK(count_log("storage", NULL, "none") == 2 && count_log("storage", id1, "none") == 1 &&
          count_log("event_dump", NULL, NULL) >= 1, "expired: %d GETs, %d lists",
          count_log("storage", NULL, "none"), count_log("event_dump", NULL, NULL));
    admin_ok("PATCH", "config", "{\"clock_offset\":0}");
}

/* A WAF job whose file is id = job id: submitted elsewhere (the token). */
static char *submit_elsewhere(void)
{
    char url[512], *out = NULL;
    snprintf(url, sizeof url, "%s/v1/%s/waf/event/job/export", base, PROJECT);
    http("POST", url, "{\"recent\":\"today\",\"dump_columns\":[\"id\",\"time\"]}",
         "X-Auth-Token: " TOKEN, &out);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    char *id = strdup(json_string_value(json_object_get(j, "job_id")) ?: "");
    json_decref(j);
    free(out);
    return id;
}

static struct job *wait_archive(struct mount *m, const char *id)
{
    struct job *j = registry_get_job(m->r, PROJECT, id);
    struct aindex *idx = NULL;
    int rc = -ENOENT;
    if (j)
        UNTIL_ANSWER(rc, registry_job_index(m->r, j, &idx));
    CHECK(rc == 0, "job %s archive: %d", id, rc);
    if (rc == 0)
        registry_index_done(m->r, j);
    return j;
}

static void test_shared_with_jobs(struct mount *m)
{
    char *why = NULL;
    reset_emulator();
    admin_ok("PATCH", "config", "{\"waf_file_link\":\"id\"}");
    /* a job's file first: event-logs reads the job's archive */
    char *first = submit_elsewhere();
    usleep(500000);
    CHECK(registry_attach(m->r, PROJECT, first, &why) == 0, "attach: %s", why ? why : "");
    struct job *j = wait_archive(m, first);
    char name[256];
    pthread_mutex_lock(&m->r->lock);
    snprintf(name, sizeof name, "%s", j->task.file_name);
    pthread_mutex_unlock(&m->r->lock);
    usleep(300000);
    struct eventlog_listing l;
    CHECK(list(m, &l) == 0 && entry(&l, name), "the job's file is listed as %s", name);
    eventlog_listing_release(&l);
    int64_t len;
    int rc;
    free(read_file(m, name, &len, &rc));
    CHECK(rc == 0 && count_log("storage", first, "none") == 1 &&
          count_log("storage", first, "bytes=0-0") == 0,
          "job first: %d downloads, %d probes", count_log("storage", first, "none"),
          count_log("storage", first, "bytes=0-0"));
    registry_put_job(m->r, j);
    /* event-logs first: the job takes that copy */
    char *second = submit_elsewhere();
    usleep(500000);
    usleep(300000);
    CHECK(list(m, &l) == 0 && l.n == 2, "listed %zu", l.n);
    const char *other = strcmp(l.entries[0].name, name) ? l.entries[0].name : l.entries[1].name;
    snprintf(name, sizeof name, "%s", other);
    eventlog_listing_release(&l);
    char *bytes = read_file(m, name, &len, &rc);
    CHECK(rc == 0 && bytes, "event-logs read of the second file");
    CHECK(registry_attach(m->r, PROJECT, second, &why) == 0, "attach: %s", why ? why : "");
    j = wait_archive(m, second);
    CHECK(count_log("storage", second, "none") == 1, "event-logs first: %d downloads",
          count_log("storage", second, "none"));
    char *again = read_file(m, name, &len, &rc);
    CHECK(rc == 0 && again && !strcmp(again, bytes), "read from the job's copy");
    json_t *st = eventlogs_stats_json(m->el);
    CHECK(json_integer_value(json_object_get(st, "handed_to_jobs")) == 1 &&
          json_integer_value(json_object_get(st, "cached_files")) == 0, "handed over");
    json_decref(st);
    free(bytes);
    free(again);
    registry_put_job(m->r, j);
    /* their archives would share cache_max with the next test's files */
    registry_forget(m->r, PROJECT, first);
    registry_forget(m->r, PROJECT, second);
    free(first);
    free(second);
    free(why);
}

static void test_cache_max(struct mount *m)
{
    reset_emulator();
    json_t *ids = admin("POST", "files/bulk", "{\"project\":\"" PROJECT "\",\"count\":3,\"rows\":50,\"start\":90000,"
                                       "\"name_prefix\":\"c-\"}");
    struct eventlog_listing l;
    usleep(300000);
    CHECK(list(m, &l) == 0 && l.n == 3, "listed %zu", l.n);
    m->r->cache_max = (uint64_t)(l.entries[0].size + l.entries[1].size);
    eventlog_listing_release(&l);
    int64_t len;
    int rc;
    char *first = read_file(m, "c-90000.csv", &len, &rc);
    free(read_file(m, "c-90001.csv", &len, &rc));
    free(read_file(m, "c-90002.csv", &len, &rc));
    /* Eviction runs on the fetcher thread after the open was answered:
     * give it up to 10 s. */
    json_t *st = NULL;
    for (int i = 0; i < 500; i++) {
        json_decref(st);
        st = eventlogs_stats_json(m->el);
        if (json_integer_value(json_object_get(st, "evicted")) >= 1 &&
            (uint64_t)json_integer_value(json_object_get(st, "cached_bytes")) <= m->r->cache_max)
            break;
        usleep(20000);
    }
    CHECK(json_integer_value(json_object_get(st, "evicted")) >= 1 &&
          (uint64_t)json_integer_value(json_object_get(st, "cached_bytes")) <= m->r->cache_max,
          "evicted %lld, cached %lld", (long long)json_integer_value(json_object_get(st, "evicted")),
          (long long)json_integer_value(json_object_get(st, "cached_bytes")));
    json_decref(st);
    char *again = read_file(m, "c-90000.csv", &len, &rc);
    const char *id0 = json_string_value(json_array_get(json_object_get(ids, "files"), 0));
    CHECK(rc == 0 && again && first && !strcmp(again, first) &&
          count_log("storage", id0, "none") == 2, "fetched again after eviction: %d",
          count_log("storage", id0, "none"));
    free(first);
    free(again);
    json_decref(ids);
    m->r->cache_max = 0;
}

/* Zip and gzip copies are checked like job files (a corrupt transfer is
 * fetched again); a listing that waits longer than request_timeout for a
 * refresh answers with the previous list. */
static void test_verify_and_stale(struct mount *m)
{
    reset_emulator();
    json_t *ids = admin("POST", "files/bulk", "{\"project\":\"" PROJECT "\",\"count\":2,"
                                              "\"rows\":400,\"start\":91000,\"format\":\"zip\","
                                              "\"name_prefix\":\"z-\",\"name_suffix\":\".zip\"}");
    json_decref(admin("POST", "files/bulk", "{\"project\":\"" PROJECT "\",\"count\":1,"
                                            "\"rows\":400,\"start\":92000,\"format\":\"gzip\","
                                            "\"name_prefix\":\"g-\",\"name_suffix\":\".csv.gz\"}"));
    usleep(300000);
    struct eventlog_listing l;
    CHECK(list(m, &l) == 0 && l.n == 3, "listed %zu", l.n);
    eventlog_listing_release(&l);
    admin_ok("PATCH", "faults", "{\"corrupt_downloads\":1}");
    int64_t len;
    int rc;
    char *zip = read_file(m, "z-91000.zip", &len, &rc);
    const char *id = json_string_value(json_array_get(json_object_get(ids, "files"), 0));
    CHECK(rc == 0 && zip && len > 4 && !memcmp(zip, "PK", 2) &&
          count_log("storage", id, "none") == 2, "corrupt zip fetched again: %d",
          count_log("storage", id, "none"));
    free(zip);
    char *gz = read_file(m, "g-92000.csv.gz", &len, &rc);
    CHECK(rc == 0 && gz && (unsigned char)gz[0] == 0x1f, "gzip copy: %d", rc);
    free(gz);
    json_decref(ids);
    /* the list hangs: after request_timeout the previous list answers */
    admin_ok("PATCH", "faults", "{\"hang_calls\":[\"list\"]}");
    m->r->locate_wait = 1;
    usleep(300000);
    double t0 = monotonic_now();
    rc = list(m, &l);
    double waited = monotonic_now() - t0;
    CHECK(rc == 0 && l.n == 3 && waited >= 0.9 && waited < 5, "stale answer %d after %.2f s",
          rc, waited);
    eventlog_listing_release(&l);
    admin_ok("PUT", "faults", "{}");
    m->r->locate_wait = 10;
}

static void test_many(struct mount *m)
{
    reset_emulator();
    json_decref(admin("POST", "files/bulk", "{\"project\":\"" PROJECT "\",\"count\":5000,"
                                            "\"clash_every\":100,\"empty_every\":1000,"
                                            "\"build\":true}"));
    m->r->locate_wait = 120; /* the first listing waits for every size */
    usleep(300000);
    admin_ok("DELETE", "log", NULL);
    struct eventlog_listing l;
    double t0 = monotonic_now();
    int rc = list(m, &l);
    double first = monotonic_now() - t0;
    CHECK(rc == 0 && l.n == 5000, "listed %zu of 5000", l.n);
    eventlog_listing_release(&l);
    /* The emulator logs a request after answering it: the last probes may
     * show a moment later. */
    int lists = 0, probes = 0;
    for (int i = 0; i < 250 && probes < 5000; i++) {
        if (i)
            usleep(20000);
        lists = count_log("event_dump", NULL, NULL);
        probes = count_log("storage", NULL, NULL);
    }
    t0 = monotonic_now();
    list(m, &l);
    double second = monotonic_now() - t0;
    eventlog_listing_release(&l);
    printf("5000 files: first listing %.2f s (%d list calls, %d size probes), second %.4f s\n",
           first, lists, probes, second);
    /* One refresh pages 50 times; a loaded machine may see a page call time
     * out and the refresh run again, never more probes than files. */
    CHECK(lists >= 50 && lists <= 150 && probes == 5000,
          "calls: %d lists, %d probes", lists, probes);
}

int main(int argc, char **argv)
{
    if (argc < 2 || access(argv[1], R_OK) < 0) {
        fprintf(stderr, "usage: test_eventlogs contrib/hwcloud-emulator\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("HCX_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
    char errlog[PATH_MAX + 16];
    if (scratch_make("hcx-unit-eventlogs-") < 0 ||
        snprintf(errlog, sizeof errlog, "%s/emulator.log", tmpdir) < 0 ||
        start_emulator(argv[1], errlog) < 0) {
        fprintf(stderr, "cannot start the emulator (python3 %s)\n", argv[1]);
        return 77;
    }
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    reset_emulator();
    test_naming();
    struct mount m;
    mount_up(&m, 3600);
    json_t *ids = NULL;
    test_names_sizes_times(&m, &ids);
    test_read(&m, ids);
    test_namesake_waits_for_the_old_fetch(&m);
    test_remount_stable(&m, ids);
    test_leaves_the_list(&m, ids);
    test_expired_url(&m, ids);
    test_shared_with_jobs(&m);
    test_cache_max(&m);
    test_verify_and_stale(&m);
    test_many(&m);
    json_decref(ids);
    mount_down(&m);
    kill(emu_pid, SIGTERM);
    waitpid(emu_pid, NULL, 0);
    scratch_remove();
    return check_summary();
}
