/* locator: finds a succeeded WAF job's file in WAF's event-log list.
 *
 * WAF's list (GET /v1/{project}/waf/event/dump, newest first) holds every
 * export file of the project -- WAF's daily files and the files of jobs
 * submitted by anyone -- and no documented field links a file to the job
 * that made it (cloud-api.md §4).  So a job is matched, in this order, to
 *   1. an item whose id is the job id;
 *   2. an item whose filename, obsname or description contains the job id;
 *   3. the earliest item generated at or after the job's submission and
 *      no later than five minutes after the job was seen succeeded, whose
 *      window fits the job's `recent`, and that no job of this mount has
 *      claimed.  Both times are the cloud's own (the Date header of its
 *      answers) when it sent one, from the start of the second the submit
 *      reply's Date names (a job's file is made long after it was taken);
 *      else ours, less (plus) five minutes of clock skew.  A file made
 *      after its job succeeded (if WAF does that) still matches within
 *      those five minutes.  Items whose window ends
 *      within the job's life are preferred; another is taken only after
 *      a few lookups found none (PATIENT_LOOKUPS).
 * Rules 1 and 2 are tried for every waiting job before any job matches by
 * time, so that a time match never takes a file that names another job;
 * time matches go in submission order (the earliest job takes the
 * earliest candidate).  A claim is the file's id (else its object name),
 * kept in the job's journal record, so it holds across restarts.
 *
 * Runs on the poller thread only: lookups of one mount never race each
 * other for a file.
 *
 *   $ cat exports/<job>/.job.json | grep -E 'file_(match|name)'
 *     "file_name": "waf-events-20261201-1a2b.csv",
 *     "file_match": "time",
 */
#include "log.h"
#include "why.h"
#include "job.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    PAGE_SIZE = 100,           /* WAF's list APIs take up to 100 per page */
    MAX_PAGES = 50,            /* hard cap: 5,000 files per lookup */
    MAX_WAITING = 256,         /* jobs matched in one pass */
    /* Lookups before a job's file counts as not to be had: with the
     * backoff, about 25 minutes at the default poll_interval.  Reading the
     * job's directory later starts looking again. */
    MAX_LOOKUPS = 40,
};
#define SKEW_MS ((int64_t)5 * 60 * 1000)
#define DAY_MS ((int64_t)24 * 3600 * 1000)

struct waiting {
    struct job *job;
    int64_t order_ms;          /* submission order within a second */
    int64_t lower_ms;          /* earliest plausible generation time; -1 none */
    int64_t upper_ms;          /* latest plausible one; -1 none */
    char recent[16];
    int matched;
};

struct listing {
    struct event_file *items;  /* newest first, as listed */
    size_t n, cap;
};

static void listing_release(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].url);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Lists pages until an item is older than stop_ms (newest first), the
 * list ends, or the cap.  0 or -errno with e filled. */
static int list_files(struct registry *r, const char *project, int64_t stop_ms,
                      struct listing *out, struct cloud_error *e)
{
    for (int page = 1; page <= MAX_PAGES; page++) {
        struct event_page pg;
        int rc = cloud_list_event_files(r->cloud, project, page, PAGE_SIZE, &pg, e);
        if (rc)
            return rc;
        int older = 0;
        if (out->n + pg.n > out->cap) {
            size_t cap = (out->n + pg.n) * 2;
            struct event_file *items = realloc(out->items, cap * sizeof *items);
            if (!items) {
                event_page_release(&pg);
                snprintf(e->msg, sizeof e->msg, "list WAF event-log files: out of memory");
                e->err = ENOMEM;
                return -ENOMEM;
            }
            out->items = items;
            out->cap = cap;
        }
        for (size_t i = 0; i < pg.n; i++) {
            out->items[out->n++] = pg.items[i];
            pg.items[i].url = NULL; /* moved */
            if (stop_ms >= 0 && pg.items[i].timestamp >= 0 && pg.items[i].timestamp < stop_ms)
                older = 1;
        }
        size_t got = pg.n;
        int64_t total = pg.total;
        event_page_release(&pg);
        /* A service that caps pages below PAGE_SIZE still says `total`:
         * a short page ends the list only when no total is given. */
        if (older || got == 0 || (total >= 0 && (int64_t)out->n >= total) ||
            (total < 0 && got < PAGE_SIZE))
            return 0;
    }
    log_warn("project %s: WAF's event-log list is longer than %d files; looked at the newest",
             project, MAX_PAGES * PAGE_SIZE);
    return 0;
}

/* Whether item f is the file that job j already claimed. */
static int is_claimed_by(const struct job *j, const struct event_file *f)
{
    if (f->id[0])
        return strcmp(j->task.file_id, f->id) == 0;
    return f->obsname[0] && strcmp(j->file_obsname, f->obsname) == 0;
}

/* Whether any WAF job of the project other than self has claimed f; lock held. */
static int claimed_by_other_locked(const struct project *p, const struct job *self,
                                   const struct event_file *f)
{
    for (size_t k = 0; k < p->njobs; k++) {
        const struct job *j = p->jobs[k];
        if (j != self && j->service == SERVICE_WAF && (j->task.file_id[0] || j->file_obsname[0])
            && is_claimed_by(j, f))
            return 1;
    }
    return 0;
}

static int window_fits(const char *recent, const struct event_file *f)
{
    if (!recent[0] || f->start < 0 || f->end < 0)
        return 1; /* nothing to compare: the fields are optional */
    int64_t d = f->end - f->start;
    if (d < 0)
        return 0;
    if (strcmp(recent, "today") == 0)
        return d <= DAY_MS + SKEW_MS;
    int64_t want = !strcmp(recent, "yesterday") ? DAY_MS
                   : !strcmp(recent, "3days")   ? 3 * DAY_MS
                   : !strcmp(recent, "1week")   ? 7 * DAY_MS
                   : !strcmp(recent, "1month")  ? 30 * DAY_MS
                                                : -1;
    if (want < 0)
        return 1;
    /* A month may be counted as 28 to 31 days; the rest within 10%. */
    int64_t slack = want / 10 > 3600 * 1000 ? want / 10 : 3600 * 1000;
    if (want == 30 * DAY_MS)
        return d >= 28 * DAY_MS - slack && d <= 31 * DAY_MS + slack;
    return d >= want - slack && d <= want + slack;
}

static int contains(const char *hay, const char *needle) { return hay[0] && strstr(hay, needle); }

/* Records the match; lock held. */
static void claim_locked(struct registry *r, struct job *j, const struct event_file *f,
                         const char *how)
{
    snprintf(j->task.file_id, sizeof j->task.file_id, "%s", f->id);
    snprintf(j->task.file_name, sizeof j->task.file_name, "%s", f->filename);
    snprintf(j->file_obsname, sizeof j->file_obsname, "%s", f->obsname);
    snprintf(j->file_match, sizeof j->file_match, "%s", how);
    j->file_time_ms = f->timestamp;
    free(j->file_url);
    j->file_url = f->url ? strdup(f->url) : NULL;
    j->lookups = 0;
    job_set_error_locked(j, NULL);
    if (j->archive == ARCHIVE_LOCATING)
        job_set_archive_locked(r, j, ARCHIVE_QUEUED, "file found");
    else
        registry_changed_locked(r, j);
}

static void match_by_id_or_name_locked(struct registry *r, struct project *p, struct listing *l,
                                       struct waiting *w)
{
    const char *id = w->job->id;
    for (int rule = 0; rule < 2 && !w->matched; rule++)
        for (size_t i = 0; i < l->n && !w->matched; i++) {
            const struct event_file *f = &l->items[i];
            int hit = rule == 0 ? strcmp(f->id, id) == 0
                                : contains(f->filename, id) || contains(f->obsname, id) ||
                                      contains(f->description, id);
            if (hit && (f->id[0] || f->obsname[0]) && !claimed_by_other_locked(p, w->job, f)) {
                claim_locked(r, w->job, f, rule == 0 ? "id" : "name");
                w->matched = 1;
            }
        }
}

/* Whether f's window ends inside the job's life (submission to success),
 * as an export of the recent past does when its window ends when it was
 * asked for.  Public documentation does not say where WAF ends a window,
 * so this only orders candidates (see match_by_time_locked). */
static int ends_in_job_life(const struct waiting *w, const struct event_file *f)
{
    if (f->end < 0 || strcmp(w->recent, "yesterday") == 0)
        return 1; /* nothing to tell by */
    /* A window ends when its job was taken, a little before our Date. */
    return f->end >= w->lower_ms - 1000 && (w->upper_ms < 0 || f->end <= w->upper_ms);
}

/* Candidates go to jobs in submission order, earliest first.  A window
 * that ends when its job was asked for (the recent past up to "now") tells
 * the order of submission even when jobs take different times; files of
 * equal ends go by generation time. */
static int earlier_candidate(const struct event_file *a, const struct event_file *b)
{
    if (a->end >= 0 && b->end >= 0 && a->end != b->end)
        return a->end < b->end;
    return a->timestamp < b->timestamp;
}

/* Lookups that must find no candidate ending inside the job's life before
 * one ending elsewhere is taken: a job's own file may be listed a little
 * after the file of a job submitted just before it elsewhere. */
enum { PATIENT_LOOKUPS = 3 };

static void match_by_time_locked(struct registry *r, struct project *p, struct listing *l,
                                 struct waiting *w)
{
    if (w->lower_ms < 0)
        return; /* attached after it succeeded: no time to go by */
    const struct event_file *best = NULL, *best_inside = NULL;
    for (size_t i = 0; i < l->n; i++) {
        const struct event_file *f = &l->items[i];
        if (f->timestamp < 0 || f->timestamp < w->lower_ms ||
            (w->upper_ms >= 0 && f->timestamp > w->upper_ms) ||
            !(f->id[0] || f->obsname[0]) || !window_fits(w->recent, f) ||
            claimed_by_other_locked(p, w->job, f))
            continue;
        if (!best || earlier_candidate(f, best))
            best = f;
        if (ends_in_job_life(w, f) && (!best_inside || earlier_candidate(f, best_inside)))
            best_inside = f;
    }
    if (!best_inside && best && w->job->lookups + 1 < PATIENT_LOOKUPS)
        return; /* look again before taking a file whose window ends elsewhere */
    if (best_inside || best) {
        claim_locked(r, w->job, best_inside ? best_inside : best, "time");
        w->matched = 1;
    }
}

static int by_submission(const void *a, const void *b)
{
    const struct waiting *x = a, *y = b;
    if (x->order_ms != y->order_ms)
        return x->order_ms < y->order_ms ? -1 : 1;
    return strcmp(x->job->id, y->job->id);
}

static double lookup_delay(const struct registry *r, int lookups)
{
    int doublings = lookups / 10;
    return r->poll_interval * (double)(1 << (doublings < 3 ? doublings : 3));
}

void locator_run(struct registry *r, const char *project)
{
    struct waiting w[MAX_WAITING];
    size_t n = 0;
    int64_t stop_ms = -1;
    double now = monotonic_now();
    int whole_list = 0;
    pthread_mutex_lock(&r->lock);
    struct project *p = registry_project_locked(r, project);
    for (size_t k = 0; p && k < p->njobs && n < MAX_WAITING; k++) {
        struct job *j = p->jobs[k];
        if (j->service != SERVICE_WAF || j->archive != ARCHIVE_LOCATING || j->next_lookup > now)
            continue;
        struct waiting *x = &w[n++];
        memset(x, 0, sizeof *x);
        x->job = j;
        x->order_ms = job_submit_order_locked(j);
        j->refs++;
        /* With the cloud's own clock (Date headers) the bounds are exact
         * to its one-second resolution; with ours, clock skew is allowed. */
        time_t from = j->submitted_at ? j->submitted_at : j->attached_at;
        /* The Date of the submit reply is whole seconds: the cloud took the
         * job at or after it, bar a second boundary crossed while it was
         * answering, and a file is made well after that. */
        if (j->cloud_since_ms >= 0)
            x->lower_ms = j->cloud_since_ms;
        else
            x->lower_ms = from ? (int64_t)from * 1000 - SKEW_MS : -1;
        if (j->cloud_success_ms >= 0)
            x->upper_ms = j->cloud_success_ms + 1000 + SKEW_MS;
        else
            x->upper_ms = j->polled_at ? (int64_t)j->polled_at * 1000 + SKEW_MS : -1;
        const char *recent = json_string_value(json_object_get(j->filter, "recent"));
        snprintf(x->recent, sizeof x->recent, "%s", recent ? recent : "");
        if (x->lower_ms < 0)
            whole_list = 1;
        else if (stop_ms < 0 || x->lower_ms < stop_ms)
            stop_ms = x->lower_ms;
    }
    pthread_mutex_unlock(&r->lock);
    if (n == 0)
        return;

    struct listing l = { 0 };
    struct cloud_error e;
    int rc = list_files(r, project, whole_list ? -1 : stop_ms, &l, &e);

    pthread_mutex_lock(&r->lock);
    p = registry_project_locked(r, project);
    qsort(w, n, sizeof *w, by_submission);
    for (size_t i = 0; !rc && p && i < n; i++)
        if (!w[i].job->forgotten && w[i].job->archive == ARCHIVE_LOCATING)
            match_by_id_or_name_locked(r, p, &l, &w[i]);
    for (size_t i = 0; !rc && p && i < n; i++)
        if (!w[i].matched && !w[i].job->forgotten && w[i].job->archive == ARCHIVE_LOCATING)
            match_by_time_locked(r, p, &l, &w[i]);
    for (size_t i = 0; i < n; i++) {
        struct job *j = w[i].job;
        if (w[i].matched || j->archive != ARCHIVE_LOCATING)
            continue;
        j->lookups++;
        double delay = lookup_delay(r, j->lookups);
        j->next_lookup = monotonic_now() + delay;
        char next[96];
        if (j->lookups >= MAX_LOOKUPS) {
            j->fetch_failed_at = time(NULL);
            job_set_archive_locked(r, j, ARCHIVE_FAILED, "file lookup gave up");
            snprintf(next, sizeof next, "gave up after %d lookups (reading the job's directory "
                     "looks again)", j->lookups);
        } else {
            snprintf(next, sizeof next, "looking again in %.1f s", delay);
        }
        char msg[sizeof e.msg + 300];
        if (rc)
            snprintf(msg, sizeof msg, "%s; %s", e.msg, next);
        else if (w[i].lower_ms < 0)
            snprintf(msg, sizeof msg,
                     "WAF's event-log list has no file naming this job (looked %d times; an "
                     "attached job that had already succeeded is matched by id or name only); %s",
                     j->lookups, next);
        else
            snprintf(msg, sizeof msg,
                     "the job's file is not in WAF's event-log list yet (looked %d times in "
                     "%zu files); %s", j->lookups, l.n, next);
        job_set_error_locked(j, msg);
    }
    pthread_mutex_unlock(&r->lock);

    for (size_t i = 0; i < n; i++) {
        struct job *j = w[i].job;
        if (w[i].matched)
            log_info("project %s: job %s: file %s found by %s", project, j->id,
                     j->task.file_name[0] ? j->task.file_name : j->task.file_id, j->file_match);
        else if (j->lookups == 1 || rc)
            log_info("project %s: job %s: %s", project, j->id, rc ? e.msg
                     : "file not listed yet; looking again");
        registry_save_job(r, j);
        registry_notify(r, j);
        registry_put_job(r, j);
    }
    listing_release(&l);
}

int locator_refresh_url(struct registry *r, struct job *j, char **why)
{
    char project[65];
    struct event_file claim;
    memset(&claim, 0, sizeof claim);
    pthread_mutex_lock(&r->lock);
    snprintf(project, sizeof project, "%s", j->project->id);
    snprintf(claim.id, sizeof claim.id, "%s", j->task.file_id);
    snprintf(claim.obsname, sizeof claim.obsname, "%s", j->file_obsname);
    int64_t stop_ms = j->file_time_ms >= 0 ? j->file_time_ms - SKEW_MS : -1;
    pthread_mutex_unlock(&r->lock);

    struct listing l = { 0 };
    struct cloud_error e;
    int rc = list_files(r, project, stop_ms, &l, &e);
    if (rc) {
        set_why(why, "%s", e.msg);
        listing_release(&l);
        return rc;
    }
    rc = -ENOENT;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < l.n; i++)
        if (is_claimed_by(j, &l.items[i]) && l.items[i].url) {
            free(j->file_url);
            j->file_url = strdup(l.items[i].url);
            rc = j->file_url ? 0 : -ENOMEM;
            break;
        }
    pthread_mutex_unlock(&r->lock);
    if (rc == -ENOENT)
        set_why(why, "file %s is no longer in WAF's event-log list (WAF keeps files "
                "for a limited time)", claim.id[0] ? claim.id : claim.obsname);
    else if (rc)
        set_why(why, "out of memory");
    listing_release(&l);
    return rc;
}
