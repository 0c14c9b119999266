/* registry: projects and jobs in memory, their journal records, and the
 * waits that user calls make on background work. */
#include "registry.h"
#include "filter.h"
#include "log.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const control_files[] = { "status", ".job.json", ".wait", NULL };

double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int project_id_is_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_')
            return 0;
    return 1;
}

int registry_create(struct journal *journal, struct cloud *cloud, double poll_interval,
                    struct registry **out)
{
    struct registry *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->journal_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->changed, &attr);
    pthread_cond_init(&r->work, &attr);
    pthread_condattr_destroy(&attr);
    r->journal = journal;
    r->cloud = cloud;
    r->poll_interval = poll_interval;
    r->started_at = time(NULL);
    *out = r;
    return 0;
}

static void job_free(struct job *j)
{
    json_decref(j->filter);
    free(j->error);
    free(j->file_url);
    aindex_free(j->index);
    free(j);
}

void registry_destroy(struct registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nprojects; i++) {
        struct project *p = r->projects[i];
        for (size_t k = 0; k < p->njobs; k++)
            job_free(p->jobs[k]);
        free(p->jobs);
        free(p);
    }
    free(r->projects);
    pthread_cond_destroy(&r->changed);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->journal_lock);
    free(r);
}

/* Binary search over an array of pointers to structs starting with char id[]. */
static size_t find_slot(void *const *items, size_t n, const char *id, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp((const char *)items[mid], id); /* id is the first member */
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static int insert_at(void ***items, size_t *n, size_t *cap, size_t at, void *item)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void **p = realloc(*items, ncap * sizeof *p);
        if (!p)
            return -ENOMEM;
        *items = p;
        *cap = ncap;
    }
    memmove(*items + at + 1, *items + at, (*n - at) * sizeof **items);
    (*items)[at] = item;
    (*n)++;
    return 0;
}

struct project *registry_project_locked(struct registry *r, const char *id)
{
    int found;
    size_t i = find_slot((void *const *)r->projects, r->nprojects, id, &found);
    return found ? r->projects[i] : NULL;
}

struct job *project_job_locked(struct project *p, const char *job_id)
{
    int found;
    size_t i = find_slot((void *const *)p->jobs, p->njobs, job_id, &found);
    return found ? p->jobs[i] : NULL;
}

static int add_project_locked(struct registry *r, const char *id, time_t added_at,
                              struct project **out)
{
    int found;
    size_t at = find_slot((void *const *)r->projects, r->nprojects, id, &found);
    if (found) {
        *out = r->projects[at];
        return -EEXIST;
    }
    struct project *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    snprintf(p->id, sizeof p->id, "%s", id);
    p->added_at = added_at;
    if (insert_at((void ***)&r->projects, &r->nprojects, &r->projects_cap, at, p) < 0) {
        free(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

static int add_job_locked(struct project *p, struct job *j)
{
    int found;
    size_t at = find_slot((void *const *)p->jobs, p->njobs, j->id, &found);
    if (found)
        return -EEXIST;
    j->project = p;
    j->refs = 1; /* the registry's own reference */
    return insert_at((void ***)&p->jobs, &p->njobs, &p->cap, at, j);
}

int registry_add_project(struct registry *r, const char *id)
{
    if (!project_id_is_valid(id))
        return -EINVAL;
    pthread_mutex_lock(&r->lock);
    struct project *p = NULL;
    int rc = add_project_locked(r, id, time(NULL), &p);
    time_t added = rc == 0 && p ? p->added_at : 0;
    pthread_mutex_unlock(&r->lock);
    if (rc)
        return rc;
    json_t *rec = json_pack("{s:s, s:I}", "project_id", id, "added_at", (json_int_t)added);
    rc = rec ? journal_save_project(r->journal, id, rec) : -ENOMEM;
    json_decref(rec);
    return rc;
}

struct job *registry_get_job(struct registry *r, const char *project, const char *job_id)
{
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    struct job *j = p ? project_job_locked(p, job_id) : NULL;
    if (j)
        j->refs++;
    pthread_mutex_unlock(&r->lock);
    return j;
}

void registry_put_job(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&r->lock);
    if (last)
        job_free(j);
}

int job_has_ended_locked(const struct job *j) { return strcmp(j->task.task_status, "running") != 0; }

void job_set_error_locked(struct job *j, const char *msg)
{
    free(j->error);
    j->error = msg ? strdup(msg) : NULL;
}

static void put_time(json_t *o, const char *key, time_t t)
{
    if (!t) {
        json_object_set_new(o, key, json_null());
        return;
    }
    struct tm tm;
    char buf[32];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(o, key, json_string(buf));
}

static json_t *string_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

static const char *const archive_state_names[] = { "none",  "queued", "fetching", "ready",
                                                   "failed", "evicted", "locating" };

static json_t *ms_or_null(int64_t ms) { return ms >= 0 ? json_integer(ms) : json_null(); }

json_t *job_to_json_locked(const struct job *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "job_id", json_string(j->id));
    json_object_set_new(o, "project_id", json_string(j->project->id));
    json_object_set_new(o, "service", j->service_unknown ? json_null()
                                      : json_string(cloud_service_name(j->service)));
    /* A copy: jansson's reference counts are not safe to share between
     * threads, and the object is dumped and freed outside the lock. */
    json_object_set_new(o, "filter", j->filter ? json_deep_copy(j->filter) : json_null());
    json_object_set_new(o, "task_name", string_or_null(j->task.task_name));
    /* The cloud's own word; `state` is what `status` shows. */
    json_object_set_new(o, "task_status", json_string(j->task.cloud_status[0]
                                                      ? j->task.cloud_status
                                                      : j->task.task_status));
    json_object_set_new(o, "state", json_string(j->task.task_status));
    json_object_set_new(o, "file_id", string_or_null(j->task.file_id));
    json_object_set_new(o, "file_name", string_or_null(j->task.file_name));
    json_object_set_new(o, "file_match", string_or_null(j->file_match));
    json_object_set_new(o, "file_obsname", string_or_null(j->file_obsname));
    json_object_set_new(o, "file_time", ms_or_null(j->file_time_ms));
    json_object_set_new(o, "message", string_or_null(j->message));
    put_time(o, "submitted_at", j->submitted_at);
    put_time(o, "polled_at", j->polled_at);
    if (j->attached_at)
        put_time(o, "attached_at", j->attached_at);
    json_object_set_new(o, "cloud_since_ms", ms_or_null(j->cloud_since_ms));
    json_object_set_new(o, "cloud_success_ms", ms_or_null(j->cloud_success_ms));
    json_object_set_new(o, "submitted_ms", ms_or_null(j->submitted_ms));
    json_object_set_new(o, "download",
                        json_pack("{s:I, s:o}", "done", (json_int_t)j->dl_done, "total",
                                  j->dl_total >= 0 ? json_integer(j->dl_total) : json_null()));
    json_object_set_new(o, "error", string_or_null(j->error));
    json_object_set_new(o, "archive", json_string(j->pending ? "verifying"
                                                  : archive_state_names[j->archive]));
    json_object_set_new(o, "format", string_or_null(j->format));
    json_object_set_new(o, "local_size", ms_or_null(j->local_size));
    json_object_set_new(o, "local_mtime", ms_or_null(j->local_mtime));
    return o;
}

int job_archive_path_locked(struct registry *r, const struct job *j, char out[PATH_MAX])
{
    if (!j->format[0])
        return -ENOENT;
    journal_archive_path(r->journal, j->project->id, j->id, j->format, out);
    return 0;
}

void job_single_name_locked(const struct job *j, const char *format, char *out, size_t cap)
{
    /* filesystem.md: named by the file's name, gunzipped when it came
     * gzipped; "<id>.csv" when the list gave no name. */
    const char *name = j->task.file_name;
    size_t n = strlen(name);
    if (n == 0) {
        snprintf(out, cap, "%s.csv", j->task.file_id[0] ? j->task.file_id : j->id);
        return;
    }
    if (strcmp(format, "csv.gz") == 0 && n > 3 && strcasecmp(name + n - 3, ".gz") == 0)
        n -= 3;
    snprintf(out, cap, "%.*s", (int)n, name);
}

void registry_notify(struct registry *r, struct job *j)
{
    char project[65];
    /* The front end sets and clears the hook under the lock (mount, unmount). */
    pthread_mutex_lock(&r->lock);
    void (*hook)(void *, const char *, const char *) = r->on_change;
    void *arg = r->on_change_arg;
    snprintf(project, sizeof project, "%s", j->project->id);
    pthread_mutex_unlock(&r->lock);
    if (hook)
        hook(arg, project, j->id);
}

void registry_save_job(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->journal_lock);
    pthread_mutex_lock(&r->lock);
    if (j->forgotten) {
        pthread_mutex_unlock(&r->lock);
        pthread_mutex_unlock(&r->journal_lock);
        return;
    }
    json_t *rec = job_to_json_locked(j);
    char project[65];
    snprintf(project, sizeof project, "%s", j->project->id);
    pthread_mutex_unlock(&r->lock);
    if (rec)
        journal_save_job(r->journal, project, j->id, rec);
    pthread_mutex_unlock(&r->journal_lock);
    json_decref(rec);
}

static time_t parse_time(json_t *v)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *s = json_string_value(v);
    return s && strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) ? timegm(&tm) : 0;
}

static void copy_str(char *dst, size_t cap, json_t *v)
{
    const char *s = json_string_value(v);
    snprintf(dst, cap, "%s", s ? s : "");
}

static void project_from_journal(void *arg, const char *id, json_t *rec)
{
    struct registry *r = arg;
    struct project *p;
    if (!project_id_is_valid(id))
        return;
    json_int_t added = json_integer_value(json_object_get(rec, "added_at"));
    add_project_locked(r, id, (time_t)added, &p);
}

static int is_state_word(const char *s)
{
    return s && (!strcmp(s, "running") || !strcmp(s, "success") || !strcmp(s, "failure"));
}

/* Takes the job's local file as its archive when there is one; lock held. */
static int adopt_local_file_locked(struct registry *r, struct job *j)
{
    char path[PATH_MAX];
    struct stat st;
    if (!j->format[0] || job_archive_path_locked(r, j, path) != 0 || stat(path, &st) != 0)
        return 0;
    j->archive = ARCHIVE_READY;
    j->archive_bytes = st.st_size + journal_sidecar_bytes(path);
    j->last_used = j->fetched_at = st.st_mtime;
    if (j->local_size < 0 || j->local_mtime < 0) { /* records of older versions */
        j->local_size = st.st_size;
        j->local_mtime = st.st_mtime;
    }
    return 1;
}

/* Where a loaded success job's file stands: local, evicted or to fetch. */
static void archive_from_journal_locked(struct registry *r, struct job *j, json_t *rec)
{
    const char *was = json_string_value(json_object_get(rec, "archive"));
    if (adopt_local_file_locked(r, j)) {
        /* local */
    } else if (j->service == SERVICE_WAF && !j->task.file_id[0] && !j->file_obsname[0]) {
        j->archive = ARCHIVE_LOCATING; /* look the file up (again) */
        j->next_lookup = monotonic_now();
        j->locating_since = monotonic_now();
    } else if (j->service == SERVICE_HSS && !j->task.file_id[0]) {
        j->archive = ARCHIVE_FAILED;
    } else if (was && strcmp(was, "evicted") == 0) {
        j->archive = ARCHIVE_EVICTED; /* fetched again when used */
    } else {
        j->archive = ARCHIVE_QUEUED;  /* interrupted or never fetched */
    }
}

static void job_from_journal(void *arg, const char *project, const char *job_id, json_t *rec)
{
    struct registry *r = arg;
    /* Records of the previous version have no service (they are WAF
     * jobs), a lower-case task_status and no state: upgraded on load. */
    json_t *service_v = json_object_get(rec, "service");
    const char *service = json_string_value(service_v);
    const char *word = json_string_value(json_object_get(rec, "task_status"));
    const char *state = json_string_value(json_object_get(rec, "state"));
    if (!state)
        state = word;
    if (!project_id_is_valid(project) || !is_state_word(state) ||
        (service && strcmp(service, "waf") && strcmp(service, "hss"))) {
        log_error("journal: job %s/%s has no valid task_status or service; skipped", project,
                  job_id);
        return;
    }
    struct project *p;
    if (add_project_locked(r, project, time(NULL), &p) == -ENOMEM)
        return;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    snprintf(j->id, sizeof j->id, "%s", job_id);
    j->project = p; /* paths below name it; add_job_locked() sets it again */
    j->service = service && !strcmp(service, "hss") ? SERVICE_HSS : SERVICE_WAF;
    /* Absent: a record of the previous version (a WAF job).  Null: a
     * damaged record recovered by the journal, service to be asked. */
    j->service_unknown = json_is_null(service_v);
    j->upgrade = !service_v;
    if (j->service_unknown) {
        j->attached_at = time(NULL); /* like an attach: a lower bound */
        /* Its file may be local: kept when the cloud says it succeeded. */
        for (size_t f = 0; journal_formats[f] && !j->format[0]; f++) {
            char path[PATH_MAX];
            struct stat st;
            journal_archive_path(r->journal, project, job_id, journal_formats[f], path);
            if (stat(path, &st) == 0)
                snprintf(j->format, sizeof j->format, "%s", journal_formats[f]);
        }
    }
    json_t *filter = json_object_get(rec, "filter");
    j->filter = json_is_object(filter) ? json_deep_copy(filter) : NULL;
    snprintf(j->task.task_status, sizeof j->task.task_status, "%s", state);
    copy_str(j->task.cloud_status, sizeof j->task.cloud_status, json_object_get(rec, "task_status"));
    copy_str(j->task.task_name, sizeof j->task.task_name, json_object_get(rec, "task_name"));
    copy_str(j->task.file_id, sizeof j->task.file_id, json_object_get(rec, "file_id"));
    copy_str(j->task.file_name, sizeof j->task.file_name, json_object_get(rec, "file_name"));
    copy_str(j->file_match, sizeof j->file_match, json_object_get(rec, "file_match"));
    copy_str(j->file_obsname, sizeof j->file_obsname, json_object_get(rec, "file_obsname"));
    copy_str(j->message, sizeof j->message, json_object_get(rec, "message"));
    json_t *ft = json_object_get(rec, "file_time");
    j->file_time_ms = json_is_integer(ft) ? json_integer_value(ft) : -1;
    json_t *cs = json_object_get(rec, "cloud_since_ms"), *cx = json_object_get(rec, "cloud_success_ms");
    j->cloud_since_ms = json_is_integer(cs) ? json_integer_value(cs) : -1;
    j->cloud_success_ms = json_is_integer(cx) ? json_integer_value(cx) : -1;
    json_t *sm = json_object_get(rec, "submitted_ms");
    j->submitted_ms = json_is_integer(sm) ? json_integer_value(sm) : -1;
    json_t *ls = json_object_get(rec, "local_size"), *lm = json_object_get(rec, "local_mtime");
    j->local_size = json_is_integer(ls) && json_integer_value(ls) >= 0 ? json_integer_value(ls) : -1;
    j->local_mtime = json_is_integer(lm) && json_integer_value(lm) >= 0 ? json_integer_value(lm) : -1;
    const char *format = json_string_value(json_object_get(rec, "format"));
    for (size_t f = 0; format && journal_formats[f]; f++)
        if (strcmp(format, journal_formats[f]) == 0)
            snprintf(j->format, sizeof j->format, "%s", format);
    if (j->upgrade) {
        /* The previous version kept only zips, and its file_id came from
         * HSS, which never knew a WAF job: only a local file is kept. */
        snprintf(j->format, sizeof j->format, "zip");
        char path[PATH_MAX];
        struct stat st;
        if (job_archive_path_locked(r, j, path) != 0 || stat(path, &st) != 0)
            j->format[0] = '\0';
        j->task.file_id[0] = '\0';
    }
    const char *err = json_string_value(json_object_get(rec, "error"));
    j->error = err ? strdup(err) : NULL;
    j->submitted_at = parse_time(json_object_get(rec, "submitted_at"));
    j->polled_at = parse_time(json_object_get(rec, "polled_at"));
    j->attached_at = parse_time(json_object_get(rec, "attached_at"));
    json_t *dl = json_object_get(rec, "download");
    j->dl_done = json_integer_value(json_object_get(dl, "done"));
    json_t *total = json_object_get(dl, "total");
    j->dl_total = json_is_integer(total) ? json_integer_value(total) : -1;
    j->next_poll = monotonic_now();
    j->archive = ARCHIVE_NONE;
    if (strcmp(state, "success") == 0)
        archive_from_journal_locked(r, j, rec);
    if (add_job_locked(p, j) < 0)
        job_free(j);
}

int registry_load(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    int damaged = journal_load(r->journal, project_from_journal, job_from_journal, r);
    pthread_mutex_unlock(&r->lock);
    /* Records of the previous version are written again in this one's
     * form (single-threaded: no worker runs yet). */
    size_t upgraded = 0;
    for (size_t p = 0; p < r->nprojects; p++)
        for (size_t k = 0; k < r->projects[p]->njobs; k++) {
            struct job *j = r->projects[p]->jobs[k];
            if (j->upgrade) {
                j->upgrade = 0;
                registry_save_job(r, j);
                upgraded++;
            }
        }
    if (upgraded)
        log_info("journal: %zu job records of an older version upgraded (WAF jobs)", upgraded);
    return damaged;
}

static struct job *new_job(const char *id, enum cloud_service service)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    snprintf(j->id, sizeof j->id, "%s", id);
    j->service = service;
    j->file_time_ms = -1;
    j->cloud_since_ms = j->cloud_success_ms = j->submitted_ms = -1;
    j->local_size = j->local_mtime = -1;
    snprintf(j->task.task_status, sizeof j->task.task_status, "running");
    j->dl_total = -1;
    return j;
}

/* Applies a query answer to a job; lock held.  Returns 1 if it ended now. */
int job_apply_task_locked(struct registry *r, struct job *j, const struct task_info *t)
{
    int was_running = !job_has_ended_locked(j);
    struct task_info keep = j->task;
    snprintf(j->task.task_status, sizeof j->task.task_status, "%s", t->task_status);
    snprintf(j->task.cloud_status, sizeof j->task.cloud_status, "%s", t->cloud_status);
    if (t->task_name[0])
        snprintf(j->task.task_name, sizeof j->task.task_name, "%s", t->task_name);
    if (t->message[0])
        snprintf(j->message, sizeof j->message, "%s", t->message);
    if (j->service == SERVICE_HSS) {
        /* HSS names the file in the task; WAF's is found by the locator. */
        snprintf(j->task.file_id, sizeof j->task.file_id, "%s", t->file_id);
        snprintf(j->task.file_name, sizeof j->task.file_name, "%s", t->file_name);
    } else {
        snprintf(j->task.file_id, sizeof j->task.file_id, "%s", keep.file_id);
        snprintf(j->task.file_name, sizeof j->task.file_name, "%s", keep.file_name);
    }
    j->polled_at = time(NULL);
    int ended = was_running && job_has_ended_locked(j);
    if (ended && j->cloud_success_ms < 0)
        j->cloud_success_ms = t->server_ms;
    if (strcmp(t->task_status, "success") == 0 && j->archive == ARCHIVE_NONE) {
        if (adopt_local_file_locked(r, j)) {
            /* a recovered record whose file is local */
        } else if (j->service == SERVICE_WAF && !j->task.file_id[0] && !j->file_obsname[0]) {
            j->archive = ARCHIVE_LOCATING;
            j->next_lookup = monotonic_now();
            j->locating_since = monotonic_now();
        } else {
            j->archive = ARCHIVE_QUEUED;
        }
        pthread_cond_broadcast(&r->work);
    }
    if (ended)
        registry_changed_locked(r, j);
    return ended;
}

/* Sends a validated filter to its service. */
static int submit_to_cloud(struct registry *r, const char *project, json_t *filter,
                           const char *body, struct submit_reply *reply, struct cloud_error *e)
{
    if (filter_service_of(filter) == FILTER_WAF)
        return cloud_submit_waf(r->cloud, project, body, strlen(body), reply, e);
    struct filter_param *fp = NULL;
    size_t n = 0;
    int rc = filter_hss_query(filter, &fp, &n);
    struct cloud_param *q = rc == 0 && n ? calloc(n, sizeof *q) : NULL;
    if (rc == 0 && n && !q)
        rc = -ENOMEM;
    if (rc) {
        memset(e, 0, sizeof *e);
        snprintf(e->msg, sizeof e->msg, "create HSS export task: %s", strerror(-rc));
        e->err = -rc;
        free(fp);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        q[i] = (struct cloud_param){ fp[i].name, fp[i].value };
    rc = cloud_submit_hss(r->cloud, project, q, n, body, body ? strlen(body) : 0, reply, e);
    free(q);
    free(fp);
    return rc;
}

int registry_submit(struct registry *r, const char *project, json_t *filter, const char *body,
                    char job_id[65], char *why, size_t whylen)
{
    pthread_mutex_lock(&r->lock);
    int known = registry_project_locked(r, project) != NULL;
    pthread_mutex_unlock(&r->lock);
    if (!known) {
        snprintf(why, whylen, "unknown project %s", project);
        return -ENOENT;
    }
    enum cloud_service service =
        filter_service_of(filter) == FILTER_HSS ? SERVICE_HSS : SERVICE_WAF;
    struct submit_reply reply;
    struct cloud_error e;
    atomic_fetch_add(&r->submits, 1);
    /* The order of sending is the order the cloud takes concurrent submits in. */
    struct timespec sent;
    clock_gettime(CLOCK_REALTIME, &sent);
    int rc = submit_to_cloud(r, project, filter, body, &reply, &e);
    if (rc) {
        snprintf(why, whylen, "%s", e.msg);
        log_error("project %s: %s", project, e.msg);
        return rc;
    }
    struct job *j = new_job(reply.job_id, service);
    if (!j)
        return -ENOMEM;
    j->filter = json_deep_copy(filter); /* the caller frees its own, in its thread */
    j->submitted_at = sent.tv_sec;
    j->submitted_ms = (int64_t)sent.tv_sec * 1000 + sent.tv_nsec / 1000000;
    j->cloud_since_ms = reply.server_ms;
    snprintf(j->message, sizeof j->message, "%s", reply.message);
    struct task_info first = { 0 };
    cloud_map_status(&first, reply.status[0] ? reply.status : "running");
    snprintf(j->task.task_status, sizeof j->task.task_status, "%s", first.task_status);
    snprintf(j->task.cloud_status, sizeof j->task.cloud_status, "%s", first.cloud_status);
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    j->next_poll = monotonic_now() + r->poll_interval;
    rc = p ? add_job_locked(p, j) : -ENOENT;
    if (rc == 0)
        pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->lock);
    if (rc) {
        /* The cloud created it; say so rather than lose the id. */
        snprintf(why, whylen, "job %s was created but cannot be recorded: %s", reply.job_id,
                 strerror(-rc));
        log_error("project %s: %s", project, why);
        job_free(j);
        return rc;
    }
    registry_save_job(r, j);
    snprintf(job_id, 65, "%s", reply.job_id);
    log_info("project %s: submitted job %s", project, reply.job_id);
    return 0;
}

int registry_attach(struct registry *r, const char *project, const char *job_id, char *why,
                    size_t whylen)
{
    if (!cloud_id_is_safe(job_id, 64)) {
        snprintf(why, whylen, "'%s' is not a valid job id", job_id);
        return -EINVAL;
    }
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    int rc = !p ? -ENOENT : project_job_locked(p, job_id) ? -EEXIST : 0;
    pthread_mutex_unlock(&r->lock);
    if (rc)
        return rc;
    /* Each service knows only its own ids: WAF first, then HSS. */
    struct task_info info;
    struct cloud_error e;
    enum cloud_service service = SERVICE_WAF;
    rc = cloud_job_status(r->cloud, SERVICE_WAF, project, job_id, 3, &info, &e);
    /* A user may hold rights to one service only: WAF's 403 does not
     * stop the HSS lookup (a 401 would fail there the same way). */
    if (rc == -ENOENT || (rc == -EACCES && e.status == 403)) {
        struct cloud_error waf_e = e;
        int waf_rc = rc;
        service = SERVICE_HSS;
        rc = cloud_job_status(r->cloud, SERVICE_HSS, project, job_id, 3, &info, &e);
        if (rc == -ENOENT && waf_rc == -ENOENT)
            snprintf(e.msg, sizeof e.msg, "neither WAF nor HSS knows job %s", job_id);
        else if (rc == -ENOENT) {
            e = waf_e;
            rc = waf_rc;
        }
    }
    if (rc) {
        snprintf(why, whylen, "%s", e.msg);
        log_error("project %s: attach %s: %s", project, job_id, e.msg);
        return rc;
    }
    struct job *j = new_job(job_id, service);
    if (!j)
        return -ENOMEM;
    /* A WAF job seen running has its file made after now; one that has
     * already succeeded can only be matched by id or name (an attached
     * job's submission time is unknown). */
    if (strcmp(info.task_status, "running") == 0) {
        j->attached_at = time(NULL);
        j->cloud_since_ms = info.server_ms;
    }
    pthread_mutex_lock(&r->lock);
    p = registry_project_locked(r, project);
    j->next_poll = monotonic_now() + r->poll_interval;
    rc = p ? add_job_locked(p, j) : -ENOENT;
    if (rc == 0) {
        job_apply_task_locked(r, j, &info);
        pthread_cond_broadcast(&r->work);
    }
    pthread_mutex_unlock(&r->lock);
    if (rc) {
        job_free(j);
        return rc;
    }
    registry_save_job(r, j);
    log_info("project %s: attached job %s (%s, %s)", project, job_id, info.task_status,
             cloud_service_name(service));
    return 0;
}

int registry_forget(struct registry *r, const char *project, const char *job_id)
{
    pthread_mutex_lock(&r->journal_lock);
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    int found = 0;
    size_t at = p ? find_slot((void *const *)p->jobs, p->njobs, job_id, &found) : 0;
    if (!found) {
        pthread_mutex_unlock(&r->lock);
        pthread_mutex_unlock(&r->journal_lock);
        return -ENOENT;
    }
    struct job *j = p->jobs[at];
    memmove(p->jobs + at, p->jobs + at + 1, (p->njobs - at - 1) * sizeof *p->jobs);
    p->njobs--;
    j->forgotten = 1;
    atomic_store(&j->cancelled, 1); /* its download stops now */
    registry_changed_locked(r, j);
    pthread_mutex_unlock(&r->lock);
    int rc = journal_remove_job(r->journal, project, job_id);
    pthread_mutex_unlock(&r->journal_lock);
    if (rc)
        log_error("project %s: forgetting job %s: %s", project, job_id, strerror(-rc));
    log_info("project %s: forgot job %s", project, job_id);
    registry_put_job(r, j);
    return 0;
}

void registry_changed_locked(struct registry *r, const void *key)
{
    pthread_cond_broadcast(&r->changed);
    if (r->on_wake)
        r->on_wake(r->on_wake_arg, key);
}

int registry_job_ended(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    int rc = REGISTRY_WAIT;
    if (j->forgotten)
        rc = -ENOENT;
    else if (job_has_ended_locked(j))
        rc = 0;
    else if (atomic_load(&r->stopping))
        rc = -ESHUTDOWN;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* Opens the index of a READY job's local file (lock held on entry and
 * return; dropped while reading the file). */
static void load_index_locked(struct registry *r, struct job *j)
{
    j->index_loading = 1;
    char path[PATH_MAX], entry[256];
    job_archive_path_locked(r, j, path);
    job_single_name_locked(j, j->format, entry, sizeof entry);
    struct aindex_single single = { .entry_name = entry, .mtime = job_file_mtime_locked(j) };
    enum aformat fmt = job_aformat_locked(j);
    pthread_mutex_unlock(&r->lock);
    struct aindex *idx = NULL;
    char *why = NULL;
    int orc = aindex_open_format(path, path, fmt, &single, control_files, &idx, &why);
    int64_t saved_bytes = 0;
    if (orc == 0 && !aindex_from_sidecar(idx)) {
        char *save_why = NULL; /* files fetched by older versions */
        if (aindex_save(idx, control_files, &save_why) != 0)
            log_warn("job %s: %s", j->id, save_why ? save_why : "index not saved");
        else
            saved_bytes = aindex_saved_bytes(idx);
        free(save_why);
    }
    pthread_mutex_lock(&r->lock);
    j->archive_bytes += saved_bytes;
    j->index_loading = 0;
    if (orc == 0) {
        j->index = idx;
    } else {
        log_error("job %s: cannot read %s: %s", j->id, path, why ? why : strerror(-orc));
        char msg[512];
        snprintf(msg, sizeof msg, "archive unreadable: %s", why ? why : strerror(-orc));
        job_set_error_locked(j, msg);
        /* Fetch it again: the local copy is damaged. */
        unlink(path);
        j->archive = ARCHIVE_QUEUED;
        j->fetch_failures++;
        if (j->fetch_failures > 3) {
            j->archive = ARCHIVE_FAILED;
            j->fetch_failed_at = time(NULL);
        }
        pthread_cond_broadcast(&r->work);
    }
    free(why);
    registry_changed_locked(r, j);
}

static int job_index(struct registry *r, struct job *j, bool listing, struct aindex **out)
{
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        if (j->forgotten) {
            rc = -ENOENT;
            break;
        }
        if (j->index || (listing && j->pending)) {
            *out = j->index ? j->index : j->pending;
            j->index_users++;
            j->last_used = time(NULL);
            break;
        }
        if (j->archive == ARCHIVE_EVICTED) {
            log_info("job %s: archive was evicted by cache_max; fetching it again", j->id);
            j->archive = ARCHIVE_QUEUED;
            pthread_cond_broadcast(&r->work);
            continue;
        }
        if (j->archive == ARCHIVE_FAILED) {
            /* Try again when asked, but not in a tight loop. */
            if (time(NULL) - j->fetch_failed_at >= 30 &&
                (j->task.file_id[0] || j->file_obsname[0])) {
                j->archive = ARCHIVE_QUEUED;
                pthread_cond_broadcast(&r->work);
                continue;
            }
            if (time(NULL) - j->fetch_failed_at >= 30 && j->service == SERVICE_WAF &&
                !j->task.file_id[0] && !j->file_obsname[0]) {
                j->archive = ARCHIVE_LOCATING; /* its lookup gave up: look again */
                j->lookups = 0;
                j->next_lookup = j->locating_since = monotonic_now();
                pthread_cond_broadcast(&r->work);
                continue;
            }
            rc = -EIO;
            break;
        }
        if (j->archive == ARCHIVE_NONE) {
            rc = -ENOENT; /* no archive: running or failed job */
            break;
        }
        if (j->archive == ARCHIVE_LOCATING &&
            monotonic_now() - j->locating_since >= r->locate_wait) {
            rc = -EAGAIN; /* not listed yet: .job.json says so */
            break;
        }
        if (j->archive == ARCHIVE_READY && !j->index_loading) {
            load_index_locked(r, j);
            continue;
        }
        rc = r->stopping ? -ESHUTDOWN : REGISTRY_WAIT;
        break;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int64_t job_submit_order_locked(const struct job *j)
{
    /* On our clock: consistent within the mount, finer than the cloud's Date. */
    return j->submitted_ms >= 0 ? j->submitted_ms
                                : (int64_t)(j->submitted_at ? j->submitted_at : j->attached_at) * 1000;
}

int64_t job_file_mtime_locked(const struct job *j)
{
    return j->file_time_ms >= 0 ? j->file_time_ms / 1000 : (int64_t)j->submitted_at;
}

enum aformat job_aformat_locked(const struct job *j)
{
    return !strcmp(j->format, "csv.gz") ? AFORMAT_GZIP
           : !strcmp(j->format, "csv")  ? AFORMAT_PLAIN
                                        : AFORMAT_ZIP;
}

int registry_job_index(struct registry *r, struct job *j, struct aindex **out)
{
    return job_index(r, j, false, out);
}

int registry_job_listing(struct registry *r, struct job *j, struct aindex **out)
{
    return job_index(r, j, true, out);
}

void registry_index_done(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    if (--j->index_users == 0) {
        if (j->withdrawing)
            pthread_cond_broadcast(&r->changed);
        if (r->cache_over) {
            r->cache_retry = 1; /* an archive may go now */
            pthread_cond_broadcast(&r->work);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

void registry_publish_pending(struct registry *r, struct job *j, struct aindex *idx,
                              int64_t size, const char *format)
{
    pthread_mutex_lock(&r->lock);
    j->pending = idx;
    /* archives/ lists the file from now on; its stat and open wait for
     * the verified index like the entries do. */
    snprintf(j->format, sizeof j->format, "%s", format);
    j->dl_done = j->dl_total = size; /* every byte is here */
    registry_changed_locked(r, j); /* listings waiting for the archive */
    pthread_mutex_unlock(&r->lock);
    registry_notify(r, j);
}

void registry_withdraw_pending(struct registry *r, struct job *j)
{
    pthread_mutex_lock(&r->lock);
    if (j->pending) {
        j->pending = NULL;
        j->withdrawing = 1;
        /* Listings hold it for one callback: short waits.  (Opens never
         * get a pending index; j->index is NULL while the fetcher runs.) */
        while (j->index_users > 0 && !j->index)
            pthread_cond_wait(&r->changed, &r->lock);
        j->withdrawing = 0;
    }
    pthread_mutex_unlock(&r->lock);
    registry_notify(r, j);
}

/* Picks the least recently used archive that may go; lock held. */
static struct job *eviction_victim_locked(struct registry *r, uint64_t *total)
{
    struct job *victim = NULL, *newest = NULL;
    *total = 0;
    for (size_t p = 0; p < r->nprojects; p++)
        for (size_t k = 0; k < r->projects[p]->njobs; k++) {
            struct job *j = r->projects[p]->jobs[k];
            if (j->archive != ARCHIVE_READY)
                continue;
            *total += (uint64_t)j->archive_bytes;
            /* Seconds are too coarse to tell two fetches apart. */
            if (!newest || j->fetch_seq > newest->fetch_seq
                || (j->fetch_seq == newest->fetch_seq && j->fetched_at > newest->fetched_at))
                newest = j;
        }
    for (size_t p = 0; p < r->nprojects; p++)
        for (size_t k = 0; k < r->projects[p]->njobs; k++) {
            struct job *j = r->projects[p]->jobs[k];
            if (j->archive != ARCHIVE_READY || j->index_users > 0 || j->index_loading ||
                j == newest)
                continue;
            if (!victim || j->last_used < victim->last_used)
                victim = j;
        }
    return victim;
}

void registry_enforce_cache_max(struct registry *r)
{
    if (!r->cache_max)
        return;
    for (;;) {
        uint64_t total;
        pthread_mutex_lock(&r->lock);
        struct job *victim = eviction_victim_locked(r, &total);
        /* event-logs/ copies share the bound and the LRU order. */
        uint64_t ev_bytes = 0;
        time_t ev_lru = 0;
        const struct cache_client *cc = r->cache_client;
        int ev_can = cc && cc->usage_locked(cc->arg, &ev_bytes, &ev_lru);
        total += ev_bytes;
        if (total <= r->cache_max || (!victim && !ev_can)) {
            int was_over = r->cache_over;
            r->cache_over = total > r->cache_max;
            pthread_mutex_unlock(&r->lock);
            if (total > r->cache_max && !was_over)
                log_info("cache holds %llu bytes (cache_max %llu): the rest is in use, "
                         "evicted once let go", (unsigned long long)total,
                         (unsigned long long)r->cache_max);
            return;
        }
        if (ev_can && (!victim || ev_lru <= victim->last_used)) {
            pthread_mutex_unlock(&r->lock);
            cc->evict_lru(cc->arg);
            continue;
        }
        struct aindex *idx = victim->index;
        victim->index = NULL;
        victim->archive = ARCHIVE_EVICTED;
        victim->refs++;
        char path[PATH_MAX];
        job_archive_path_locked(r, victim, path);
        long long bytes = (long long)victim->archive_bytes;
        pthread_mutex_unlock(&r->lock);

        aindex_free(idx);
        /* The lock was dropped: a read may have queued the job again and a
         * fetcher renamed a fresh copy into place (under journal_lock).  The
         * file goes only while the job is still evicted. */
        pthread_mutex_lock(&r->journal_lock);
        pthread_mutex_lock(&r->lock);
        int still_evicted = victim->archive == ARCHIVE_EVICTED && !victim->forgotten;
        pthread_mutex_unlock(&r->lock);
        if (still_evicted) {
            if (unlink(path) < 0 && errno != ENOENT)
                log_error("cannot evict %s: %s", path, strerror(errno));
            journal_unlink_sidecars(path);
        }
        pthread_mutex_unlock(&r->journal_lock);
        log_info("job %s: archive evicted (%lld bytes) to keep the cache within cache_max",
                 victim->id, bytes);
        registry_save_job(r, victim);
        registry_notify(r, victim);
        registry_put_job(r, victim);
    }
}
