/* job_json: a job as JSON (.job.json and its journal record), and the
 * registry loaded from the journal's records. */
#include "job.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
                                                  : archive_state_name(j->archive)));
    json_object_set_new(o, "format", string_or_null(j->format));
    json_object_set_new(o, "local_size", ms_or_null(j->local_size));
    json_object_set_new(o, "local_mtime", ms_or_null(j->local_mtime));
    return o;
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


/* Where a loaded success job's file stands: local, evicted or to fetch. */
static void archive_from_journal_locked(struct registry *r, struct job *j, json_t *rec)
{
    const char *was = json_string_value(json_object_get(rec, "archive"));
    if (adopt_local_file_locked(r, j)) {
        /* local */
    } else if (j->service == SERVICE_WAF && !j->task.file_id[0] && !j->file_obsname[0]) {
        j->next_lookup = monotonic_now();
        j->locating_since = monotonic_now();
        job_set_archive_locked(r, j, ARCHIVE_LOCATING, "journal: its file is to look up");
    } else if (j->service == SERVICE_HSS && !j->task.file_id[0]) {
        job_set_archive_locked(r, j, ARCHIVE_FAILED, "journal: HSS task without a file");
    } else if (was && strcmp(was, "evicted") == 0) {
        job_set_archive_locked(r, j, ARCHIVE_EVICTED, "journal: evicted"); /* fetched again when used */
    } else {
        job_set_archive_locked(r, j, ARCHIVE_QUEUED, "journal: interrupted or never fetched");
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

