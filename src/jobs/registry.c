/* registry: projects and jobs in memory, their journal records, and the
 * waits that user calls make on background work. */
#include "job.h"
#include "filter.h"
#include "log.h"
#include "why.h"

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
            j->next_lookup = monotonic_now();
            j->locating_since = monotonic_now();
            job_set_archive_locked(r, j, ARCHIVE_LOCATING, "succeeded: its file is to look up");
        } else {
            job_set_archive_locked(r, j, ARCHIVE_QUEUED, "succeeded");
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
    if (filter_service_of(filter) == SERVICE_WAF)
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
                    char job_id[65], char **why)
{
    pthread_mutex_lock(&r->lock);
    int known = registry_project_locked(r, project) != NULL;
    pthread_mutex_unlock(&r->lock);
    if (!known) {
        set_why(why, "unknown project %s", project);
        return -ENOENT;
    }
    enum cloud_service service = filter_service_of(filter);
    struct submit_reply reply;
    struct cloud_error e;
    atomic_fetch_add(&r->submits, 1);
    /* The order of sending is the order the cloud takes concurrent submits in. */
    struct timespec sent;
    clock_gettime(CLOCK_REALTIME, &sent);
    int rc = submit_to_cloud(r, project, filter, body, &reply, &e);
    if (rc) {
        set_why(why, "%s", e.msg);
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
        set_why(why, "job %s was created but cannot be recorded: %s", reply.job_id,
                strerror(-rc));
        log_error("project %s: job %s was created but cannot be recorded: %s", project,
                  reply.job_id, strerror(-rc));
        job_free(j);
        return rc;
    }
    registry_save_job(r, j);
    snprintf(job_id, 65, "%s", reply.job_id);
    log_info("project %s: submitted job %s", project, reply.job_id);
    return 0;
}

int registry_attach(struct registry *r, const char *project, const char *job_id, char **why)
{
    if (!cloud_id_is_safe(job_id, 64)) {
        set_why(why, "'%s' is not a valid job id", job_id);
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
        set_why(why, "%s", e.msg);
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
        j->fetch_failures++;
        if (j->fetch_failures > 3) {
            j->fetch_failed_at = time(NULL);
            job_set_archive_locked(r, j, ARCHIVE_FAILED, "local copy unreadable, fetches failed");
        } else {
            job_set_archive_locked(r, j, ARCHIVE_QUEUED, "local copy unreadable: fetch again");
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
            job_set_archive_locked(r, j, ARCHIVE_QUEUED, "evicted, wanted again");
            continue;
        }
        if (j->archive == ARCHIVE_FAILED) {
            /* Try again when asked, but not in a tight loop. */
            if (time(NULL) - j->fetch_failed_at >= 30 &&
                (j->task.file_id[0] || j->file_obsname[0])) {
                job_set_archive_locked(r, j, ARCHIVE_QUEUED, "failed, wanted again after a pause");
                continue;
            }
            if (time(NULL) - j->fetch_failed_at >= 30 && j->service == SERVICE_WAF &&
                !j->task.file_id[0] && !j->file_obsname[0]) {
                j->lookups = 0; /* its lookup gave up: look again */
                j->next_lookup = j->locating_since = monotonic_now();
                job_set_archive_locked(r, j, ARCHIVE_LOCATING, "lookup gave up, wanted again");
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

