/* poller: one background thread that queries running jobs, each through
 * its own service (WAF's async-job call, HSS's export-task query), and
 * looks up the files of succeeded WAF jobs (locator.c).
 *
 * Each running job is queried at most once per poll_interval; after ten
 * polls the interval doubles every ten polls up to 8x (long jobs cost
 * fewer calls).  A 429 waits at least its Retry-After; other failures back
 * off exponentially up to 5 minutes.  Reading `status` never calls the
 * cloud: it shows what the poller last learnt.  Ended jobs are never
 * polled again. */
#include "log.h"
#include "job.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static pthread_t poller_thread;
static int poller_running;

static double next_delay(const struct registry *r, const struct job *j,
                         const struct cloud_error *e, int failed)
{
    double base = r->poll_interval;
    if (!failed) {
        int doublings = j->polls / 10;
        return base * (double)(1 << (doublings < 3 ? doublings : 3));
    }
    double d = base * (double)(1 << (j->poll_errors < 6 ? j->poll_errors : 6));
    if (d > 300)
        d = 300;
    if (e->status == 429 && e->retry_after > d)
        d = e->retry_after;
    return d;
}

static void poll_one(struct registry *r, struct job *j)
{
    struct task_info info;
    struct cloud_error e;
    char project[65];
    pthread_mutex_lock(&r->lock);
    snprintf(project, sizeof project, "%s", j->project->id);
    enum cloud_service service = j->service;
    int probe = j->service_unknown;
    pthread_mutex_unlock(&r->lock);

    int rc = cloud_job_status(r->cloud, probe ? SERVICE_WAF : service, project, j->id, 1, &info,
                              &e);
    if (probe && rc != -ENOENT)
        service = SERVICE_WAF;
    if (probe && rc == -ENOENT) {
        /* A recovered record: not a WAF job, perhaps an HSS task. */
        service = SERVICE_HSS;
        rc = cloud_job_status(r->cloud, SERVICE_HSS, project, j->id, 1, &info, &e);
    }

    pthread_mutex_lock(&r->lock);
    int save = 0;
    if (probe && rc != -ECANCELED && (rc == 0 || rc == -ENOENT)) {
        j->service = service;
        j->service_unknown = 0;
        if (rc == 0 && strcmp(info.task_status, "running") == 0)
            j->cloud_since_ms = info.server_ms;
        save = 1;
    }
    if (rc == 0) {
        j->polls++;
        j->poll_errors = 0;
        save = job_apply_task_locked(r, j, &info) || j->error != NULL || save;
        job_set_error_locked(j, NULL);
        if (save)
            log_info("project %s: job %s is %s", project, j->id, info.task_status);
    } else if (rc == -ENOENT) {
        /* The cloud no longer knows the task: it will never end otherwise. */
        struct task_info gone = j->task;
        snprintf(gone.task_status, sizeof gone.task_status, "failure");
        job_apply_task_locked(r, j, &gone);
        job_set_error_locked(j, j->service == SERVICE_HSS
                                    ? "HSS no longer knows this export task"
                                    : "WAF no longer knows this job");
        log_error("project %s: job %s: %s", project, j->id, e.msg);
        save = 1;
    } else if (rc != -ECANCELED) {
        j->poll_errors++;
        save = !j->error || strcmp(j->error, e.msg) != 0;
        job_set_error_locked(j, e.msg);
        log_warn("project %s: polling job %s: %s", project, j->id, e.msg);
    }
    j->next_poll = monotonic_now() + next_delay(r, j, &e, rc != 0);
    pthread_mutex_unlock(&r->lock);
    if (save)
        registry_save_job(r, j);
    registry_notify(r, j); /* polled_at changed at least */
}

static void *poller_main(void *arg)
{
    struct registry *r = arg;
    enum { BATCH = 32 };
    struct job *due[BATCH];
    char locate[BATCH][65];
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        double now = monotonic_now(), earliest = now + 3600;
        size_t n = 0, nlocate = 0;
        for (size_t p = 0; p < r->nprojects; p++) {
            struct project *proj = r->projects[p];
            /* A WAF job due for its file lookup is matched by time against
             * the files listed; a job of the mount submitted before it that
             * we still think running may have succeeded since its last poll
             * and its file be among them: it is polled first, in this round,
             * so that it claims its own file (locator.c matches in
             * submission order). */
            int project_due = 0;
            int64_t newest_due = INT64_MIN;
            for (size_t k = 0; k < proj->njobs; k++) {
                struct job *j = proj->jobs[k];
                if (j->archive != ARCHIVE_LOCATING)
                    continue;
                if (j->next_lookup <= now) {
                    project_due = 1;
                    if (job_submit_order_locked(j) > newest_due)
                        newest_due = job_submit_order_locked(j);
                } else if (j->next_lookup < earliest) {
                    earliest = j->next_lookup;
                }
            }
            for (size_t k = 0; k < proj->njobs; k++) {
                struct job *j = proj->jobs[k];
                if (job_has_ended_locked(j))
                    continue;
                int earlier = project_due && j->service == SERVICE_WAF &&
                              job_submit_order_locked(j) < newest_due;
                if ((j->next_poll <= now || earlier) && n < BATCH) {
                    j->refs++;
                    due[n++] = j;
                } else if (j->next_poll < earliest) {
                    earliest = j->next_poll;
                }
            }
            if (project_due && nlocate < BATCH)
                snprintf(locate[nlocate++], sizeof locate[0], "%s", proj->id);
        }
        if (n == 0 && nlocate == 0) {
            struct timespec until = { (time_t)earliest,
                                      (long)((earliest - (double)(time_t)earliest) * 1e9) };
            pthread_cond_timedwait(&r->work, &r->lock, &until);
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        for (size_t i = 0; i < n; i++) {
            if (!r->stopping)
                poll_one(r, due[i]);
            registry_put_job(r, due[i]);
        }
        /* Jobs that succeeded in this round are due for a lookup at
         * once (next_lookup is now): the next turn of the loop finds them. */
        for (size_t i = 0; i < nlocate && !r->stopping; i++)
            locator_run(r, locate[i]);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int poller_start(struct registry *r)
{
    int rc = pthread_create(&poller_thread, NULL, poller_main, r);
    if (rc) {
        log_error("cannot start the poller thread: %s", strerror(rc));
        return -rc;
    }
    poller_running = 1;
    return 0;
}

void poller_join(void)
{
    if (poller_running)
        pthread_join(poller_thread, NULL);
    poller_running = 0;
}
