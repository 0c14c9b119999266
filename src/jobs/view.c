/* view: what the front end (fs/) and main.c ask of the registry: a job's
 * view and its generated texts, the projects and jobs to list, the
 * counters of .stats, the hooks and the mount's settings.  Each call
 * copies what it answers under the lock; none blocks. */
#include "job.h"
#include "jsontext.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* archives/ lists a job's file only when its stat answers: it is local
 * (or its index being verified is published), or it has been local and
 * its size and time are remembered (evicted).  A copy being fetched
 * (again) or failing is not listed. */
static bool archive_listed_locked(const struct job *j)
{
    return strcmp(j->task.task_status, "success") == 0 && j->format[0] &&
           (j->archive == ARCHIVE_READY || j->pending ||
            (j->archive != ARCHIVE_NONE && j->local_size >= 0 && j->local_mtime >= 0));
}

static void view_locked(const struct job *j, unsigned flags, struct job_view *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->id, sizeof v->id, "%s", j->id);
    snprintf(v->status, sizeof v->status, "%s", j->task.task_status);
    v->ended = job_has_ended_locked(j);
    v->has_archive = j->archive != ARCHIVE_NONE;
    v->archive_listed = archive_listed_locked(j);
    snprintf(v->format, sizeof v->format, "%s", j->format);
    v->local_size = j->local_size;
    v->local_mtime = j->local_mtime;
    v->dir_time = j->submitted_at ? j->submitted_at : j->project->added_at;
    v->control_time = j->polled_at ? j->polled_at : v->dir_time;
    if ((flags & JOB_VIEW_STATUS) && asprintf(&v->status_text, "%s\n", j->task.task_status) < 0)
        v->status_text = NULL;
    if (flags & JOB_VIEW_JSON) {
        json_t *o = job_to_json_locked(j);
        v->json_text = json_text_line(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(o);
    }
}

void registry_job_view(struct registry *r, struct job *j, unsigned flags, struct job_view *out)
{
    pthread_mutex_lock(&r->lock);
    view_locked(j, flags, out);
    pthread_mutex_unlock(&r->lock);
}

void job_view_release(struct job_view *v)
{
    free(v->status_text);
    free(v->json_text);
    v->status_text = v->json_text = NULL;
}

int registry_project_time(struct registry *r, const char *project, time_t *added)
{
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    if (p)
        *added = p->added_at;
    pthread_mutex_unlock(&r->lock);
    return p ? 0 : -ENOENT;
}

void registry_each_project(struct registry *r, int (*fn)(void *arg, const char *id), void *arg)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->nprojects && !fn(arg, r->projects[i]->id); i++)
        ;
    pthread_mutex_unlock(&r->lock);
}

int registry_each_job(struct registry *r, const char *project,
                      int (*fn)(void *arg, const struct job_view *), void *arg)
{
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    for (size_t i = 0; p && i < p->njobs; i++) {
        struct job_view v;
        view_locked(p->jobs[i], 0, &v);
        if (fn(arg, &v))
            break;
    }
    pthread_mutex_unlock(&r->lock);
    return p ? 0 : -ENOENT;
}

int registry_job_file(struct registry *r, struct job *j, const char *format, char out[4096])
{
    pthread_mutex_lock(&r->lock);
    int rc = strcmp(j->format, format) == 0 ? job_archive_path_locked(r, j, out) : -ENOENT;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void registry_set_hooks(struct registry *r,
                        void (*on_change)(void *arg, const char *project, const char *job),
                        void (*on_wake)(void *arg, const void *key), void *arg)
{
    pthread_mutex_lock(&r->lock);
    r->on_change = on_change;
    r->on_change_arg = arg;
    r->on_wake = on_wake;
    r->on_wake_arg = arg;
    pthread_mutex_unlock(&r->lock);
}

void registry_configure(struct registry *r, uint64_t cache_max, double locate_wait)
{
    pthread_mutex_lock(&r->lock);
    r->cache_max = cache_max;
    r->locate_wait = locate_wait;
    pthread_mutex_unlock(&r->lock);
}

void registry_get_stats(struct registry *r, struct registry_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&r->lock);
    for (size_t p = 0; p < r->nprojects; p++)
        for (size_t k = 0; k < r->projects[p]->njobs; k++) {
            const struct job *j = r->projects[p]->jobs[k];
            const char *st = j->task.task_status;
            s->running += strcmp(st, "running") == 0;
            s->success += strcmp(st, "success") == 0;
            s->failure += strcmp(st, "failure") == 0;
            if (j->archive == ARCHIVE_READY) {
                s->archives++;
                s->cache_bytes += j->archive_bytes; /* with its sidecars, as cache_max counts */
            }
        }
    s->projects = (int64_t)r->nprojects;
    pthread_mutex_unlock(&r->lock);
    s->submits = atomic_load(&r->submits);
    s->reads = atomic_load(&r->reads);
    s->bytes_read = atomic_load(&r->bytes_read);
    s->started_at = r->started_at;
}

void registry_count_read(struct registry *r, uint64_t bytes)
{
    atomic_fetch_add(&r->reads, 1);
    atomic_fetch_add(&r->bytes_read, bytes);
}

time_t registry_started_at(struct registry *r) { return r->started_at; }

struct cloud *registry_cloud(struct registry *r) { return r->cloud; }

struct eventlogs *registry_eventlogs(struct registry *r) { return r->eventlogs; }

const char *registry_cache_dir(struct registry *r) { return journal_cache_dir(r->journal); }
