/* job: projects and jobs in memory: creation, lookup, references, the
 * names of a job's local file, and the one setter of its archive state. */
#include "job.h"
#include "sorted.h"
#include "log.h"

#include <ctype.h>
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

void job_free(struct job *j)
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

/* Projects and jobs begin with their id (job.h). */
static const char *id_of(const void *item) { return (const char *)item; }

size_t find_slot(void *const *items, size_t n, const char *id, int *found)
{
    return sorted_slot(items, n, id, id_of, found);
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

int add_project_locked(struct registry *r, const char *id, time_t added_at,
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

int add_job_locked(struct project *p, struct job *j)
{
    int found;
    size_t at = find_slot((void *const *)p->jobs, p->njobs, j->id, &found);
    if (found)
        return -EEXIST;
    j->project = p;
    j->refs = 1; /* the registry's own reference */
    return insert_at((void ***)&p->jobs, &p->njobs, &p->cap, at, j);
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

int adopt_local_file_locked(struct registry *r, struct job *j)
{
    char path[PATH_MAX];
    struct stat st;
    if (!j->format[0] || job_archive_path_locked(r, j, path) != 0 || stat(path, &st) != 0)
        return 0;
    j->archive_bytes = st.st_size + journal_sidecar_bytes(path);
    j->last_used = j->fetched_at = st.st_mtime;
    if (j->local_size < 0 || j->local_mtime < 0) { /* records of older versions */
        j->local_size = st.st_size;
        j->local_mtime = st.st_mtime;
    }
    job_set_archive_locked(r, j, ARCHIVE_READY, "its file is local");
    return 1;
}


struct job *new_job(const char *id, enum cloud_service service)
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


void registry_changed_locked(struct registry *r, const void *key)
{
    pthread_cond_broadcast(&r->changed);
    if (r->on_wake)
        r->on_wake(r->on_wake_arg, key);
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

static const char *const archive_state_names[] = { "none",  "queued", "fetching", "ready",
                                                   "failed", "evicted", "locating" };

const char *archive_state_name(enum archive_state s) { return archive_state_names[s]; }

void job_set_archive_locked(struct registry *r, struct job *j, enum archive_state to,
                            const char *why)
{
    enum archive_state from = j->archive;
    j->archive = to;
    log_debug("job %s: archive %s -> %s: %s", j->id, archive_state_names[from],
              archive_state_names[to], why);
    if (to == ARCHIVE_QUEUED || to == ARCHIVE_LOCATING)
        pthread_cond_broadcast(&r->work); /* the fetchers, the poller's locator */
    registry_changed_locked(r, j);
}
