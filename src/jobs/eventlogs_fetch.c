/* eventlogs_fetch: the bytes of event-logs/ files: opening a file (its
 * job's archive when a job of the mount claimed it, else our own copy),
 * the download of our copy on a fetcher thread (pre-signed URL without
 * credentials, a fresh URL listed when it expired, resumed from the partial
 * file, the length storage announced, a zip's CRCs and a gzip stream
 * checked, a plain file checked to be CSV text), and its hand-over to a
 * job that claims the file (one copy, one download).  Where copies live
 * and their eviction: eventlogs_local.c. */
#include "eventlogs_internal.h"
#include "why.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_TRANSFER_ATTEMPTS = 6, MAX_BAD_COPIES = 3, MAX_URL_REFRESHES = 3, RETRY_PAUSE_S = 30 };
#define SKEW_MS ((int64_t)5 * 60 * 1000)

int ev_find_url(struct eventlogs *el, struct evfile *f, char **why)
{
    struct registry *r = el->r;
    char project[65], key[sizeof f->key];
    pthread_mutex_lock(&r->lock);
    snprintf(project, sizeof project, "%s", f->proj->id);
    snprintf(key, sizeof key, "%s", f->key);
    int64_t stop_ms = f->timestamp >= 0 ? f->timestamp - SKEW_MS : -1;
    pthread_mutex_unlock(&r->lock);
    size_t seen = 0;
    for (int page = 1; page <= EVENTLOGS_MAX_FILES / 100; page++) {
        struct event_page pg;
        struct cloud_error e;
        int rc = cloud_list_event_files(r->cloud, project, page, 100, &pg, &e);
        atomic_fetch_add(&el->list_calls, 1);
        if (rc) {
            set_why(why, "%s", e.msg);
            return rc;
        }
        int found = 0, older = 0;
        for (size_t i = 0; i < pg.n && !found; i++) {
            const struct event_file *it = &pg.items[i];
            char k[sizeof f->key];
            snprintf(k, sizeof k, "%c%s", it->id[0] ? 'i' : 'o', it->id[0] ? it->id : it->obsname);
            if (!strcmp(k, key) && it->url) {
                pthread_mutex_lock(&r->lock);
                free(f->url);
                f->url = strdup(it->url);
                found = f->url ? 1 : -1;
                pthread_mutex_unlock(&r->lock);
            }
            older |= stop_ms >= 0 && it->timestamp >= 0 && it->timestamp < stop_ms;
        }
        seen += pg.n;
        size_t got = pg.n;
        int64_t total = pg.total;
        event_page_release(&pg);
        if (found)
            return found > 0 ? 0 : -ENOMEM;
        if (older || got == 0 || (total >= 0 && (int64_t)seen >= total) || (total < 0 && got < 100))
            break;
    }
    set_why(why, "the file is no longer in WAF's event-log list");
    return -ENOENT;
}

/* ------------------------------------------------------------------ open */

static int wait_for(const void *what, const void **wait_key)
{
    *wait_key = what;
    return REGISTRY_WAIT;
}

/* Queues our copy's download; lock held. */
static void queue_fetch_locked(struct eventlogs *el, struct evfile *f)
{
    f->local = EV_QUEUED;
    pthread_cond_broadcast(&el->r->work);
}

/* The job's archive as the file's bytes: 0 with out->fd and out->job (the
 * job is kept from cache_max eviction until eventlogs_release, as an open
 * archives/ file keeps it), REGISTRY_WAIT, 1 when the job cannot serve it
 * (our own copy then), -errno.  Lock held; dropped around the open. */
static int open_job_copy(struct eventlogs *el, struct job *j, struct eventlog_file *out,
                         const void **wait_key)
{
    struct registry *r = el->r;
    char path[PATH_MAX];
    switch (j->archive) {
    case ARCHIVE_READY:
        if (job_archive_path_locked(r, j, path))
            return 1;
        j->last_used = time(NULL);
        j->index_users++; /* pinned before the lock goes: no eviction meanwhile */
        j->refs++;
        pthread_mutex_unlock(&r->lock);
        out->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        int rc = out->fd >= 0 ? 0 : -errno;
        pthread_mutex_lock(&r->lock);
        if (rc == 0) {
            out->job = j;
        } else {
            j->index_users--;
            if (--j->refs == 0) { /* forgotten meanwhile: ours was the last */
                pthread_mutex_unlock(&r->lock);
                job_free(j);
                pthread_mutex_lock(&r->lock);
            }
        }
        return rc;
    case ARCHIVE_EVICTED:
        log_info("job %s: archive was evicted by cache_max; fetching it again (event-logs)",
                 j->id);
        job_set_archive_locked(r, j, ARCHIVE_QUEUED, "evicted, wanted by event-logs/");
        return wait_for(j, wait_key);
    case ARCHIVE_QUEUED:
    case ARCHIVE_FETCHING:
        return wait_for(j, wait_key);
    case ARCHIVE_FAILED:
        if (time(NULL) - j->fetch_failed_at < RETRY_PAUSE_S)
            return -EIO;
        job_set_archive_locked(r, j, ARCHIVE_QUEUED, "failed, retried for event-logs/");
        return wait_for(j, wait_key);
    default:
        return 1;
    }
}

int eventlogs_open(struct eventlogs *el, const char *project, const char *name,
                   struct eventlog_file *out, const void **wait_key)
{
    struct registry *r = el->r;
    char path[PATH_MAX];
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int rc = -ENOENT;
    pthread_mutex_lock(&r->lock);
    for (int tries = 0; tries < 3; tries++) {
        struct evproject *p = ev_project_locked(el, project);
        struct evfile *f = p ? ev_by_name_locked(p, name) : NULL;
        if (!f || f->sizing != SIZE_KNOWN) {
            rc = -ENOENT;
            break;
        }
        struct job *j = ev_claimed_by_locked(el, f);
        rc = j ? open_job_copy(el, j, out, wait_key) : 1;
        if (rc == 0) {
            atomic_fetch_add(&el->shared_with_jobs, 1);
            break;
        }
        if (rc == -ENOENT)
            continue; /* evicted under us: its state says what now */
        if (rc != 1)
            break;
        if (f->local == EV_READY) {
            rc = ev_local_path(el, p->id, f, f->format, path);
            if (rc)
                break;
            f->users++;
            f->refs++;
            f->last_used = time(NULL);
            pthread_mutex_unlock(&r->lock);
            out->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            rc = out->fd >= 0 ? 0 : -errno;
            pthread_mutex_lock(&r->lock);
            if (rc == 0) {
                out->pinned = f;
                break;
            }
            f->users--;
            /* f may go with our reference (a refresh dropped it meanwhile):
             * decide before letting it go. */
            int again = rc == -ENOENT && !f->gone;
            if (again)
                f->local = EV_REMOTE; /* the copy vanished: fetched again */
            ev_unref_locked(el, f);
            if (!again)
                break;
            continue;
        }
        if (f->local == EV_REMOTE ||
            (f->local == EV_FAILED && time(NULL) - f->failed_at >= RETRY_PAUSE_S))
            queue_fetch_locked(el, f);
        if (f->local == EV_FAILED)
            rc = -(f->fail_errno ? f->fail_errno : EIO);
        else
            rc = wait_for(f, wait_key);
        break;
    }
    pthread_mutex_unlock(&r->lock);
    struct stat st;
    if (rc == 0 && fstat(out->fd, &st) == 0) {
        out->size = st.st_size;
    } else if (rc == 0) {
        rc = -errno;
        eventlogs_release(el, out);
    }
    return rc;
}

void eventlogs_release(struct eventlogs *el, struct eventlog_file *h)
{
    struct registry *r = el->r;
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    if (h->job) {
        registry_index_done(r, h->job); /* the job's archive may go now */
        registry_put_job(r, h->job);
        h->job = NULL;
    }
    if (!h->pinned)
        return;
    pthread_mutex_lock(&r->lock);
    if (--h->pinned->users == 0 && r->cache_over) {
        r->cache_retry = 1; /* a copy may go now */
        pthread_cond_broadcast(&r->work);
    }
    ev_unref_locked(el, h->pinned);
    pthread_mutex_unlock(&r->lock);
    h->pinned = NULL;
}

/* ---------------------------------------------------------------- fetch */

/* A file of the same project and local stem (one that left the list)
 * whose fetch still winds down: both would write one .part file. */
static int namesake_fetching_locked(const struct eventlogs *el, const struct evfile *f)
{
    for (int i = 0; i < REGISTRY_FETCHERS; i++) {
        const struct evfile *g = el->fetching[i];
        if (g && g != f && g->proj == f->proj && !strcmp(g->lid, f->lid))
            return 1;
    }
    return 0;
}

struct evfile *eventlogs_next_queued_locked(struct eventlogs *el)
{
    int slot = 0;
    while (slot < REGISTRY_FETCHERS && el->fetching[slot])
        slot++;
    if (slot == REGISTRY_FETCHERS) {
        log_error("event-logs: more fetches than fetcher threads; none started");
        return NULL;
    }
    for (size_t i = 0; i < el->nprojects; i++) {
        struct evproject *p = el->projects[i];
        for (size_t k = 0; k < p->n; k++) {
            struct evfile *f = p->files[k];
            if (f->local == EV_QUEUED && !namesake_fetching_locked(el, f)) {
                f->local = EV_FETCHING;
                f->refs++;
                el->fetching[slot] = f;
                return f;
            }
        }
    }
    return NULL;
}

/* Sleeps up to secs; -1 when unmounting or the file left the list. */
static int pause_fetch(struct eventlogs *el, struct evfile *f, double secs)
{
    struct registry *r = el->r;
    pthread_mutex_lock(&r->lock);
    double until = monotonic_now() + secs;
    while (!r->stopping && !atomic_load(&f->cancel) && monotonic_now() < until) {
        struct timespec ts = { (time_t)until, (long)((until - (double)(time_t)until) * 1e9) };
        pthread_cond_timedwait(&r->changed, &r->lock, &ts);
    }
    int stop = r->stopping || atomic_load(&f->cancel);
    pthread_mutex_unlock(&r->lock);
    return stop ? -1 : 0;
}

/* Checks a whole copy the way job files are checked: NULL when good, else
 * why; *damaged says the copy is an archive with bad data (kept after
 * MAX_BAD_COPIES tries: it is what storage holds). */
static const char *verify_copy(const char *part, const char *final, const char *name,
                               time_t mtime, char *buf, size_t cap, const char **format,
                               int *damaged)
{
    unsigned char head[8];
    int fd = open(part, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, head, sizeof head, 0) : -1;
    if (fd >= 0)
        close(fd);
    *damaged = 0;
    if (n < 0)
        return "cannot be read back";
    enum aformat fmt = aformat_sniff(head, (size_t)n);
    *format = aformat_suffix(fmt);
    char *why = NULL;
    int rc = 0;
    if (fmt == AFORMAT_PLAIN) {
        const char *bad = fetcher_not_csv_text(part);
        if (bad)
            snprintf(buf, cap, "downloaded file is not an export: %s", bad);
        return bad ? buf : NULL;
    }
    if (fmt == AFORMAT_ZIP) {
        rc = aindex_verify_data(part, &why);
    } else {
        struct aindex *idx = NULL;
        struct aindex_single single = { .entry_name = name, .mtime = mtime };
        rc = aindex_open_format(part, final, fmt, &single, NULL, &idx, &why);
        if (rc == 0) {
            rc = aindex_verify_rest(idx, &why);
            aindex_free(idx);
        }
    }
    if (rc) {
        snprintf(buf, cap, "downloaded file has damaged data: %s", why ? why : strerror(-rc));
        *damaged = 1;
    }
    free(why);
    return rc ? buf : NULL;
}

/* The copy is whole and checked: it takes its name.  0, or -errno. */
static int commit_copy(struct eventlogs *el, struct evfile *f, const char *part,
                       const char *final, const char *dir, const char *format, int64_t size)
{
    struct registry *r = el->r;
    int fd = open(part, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 || fsync(fd) < 0 ? -errno : 0;
    if (fd >= 0)
        close(fd);
    if (rc)
        return rc;
    pthread_mutex_lock(&r->journal_lock);
    pthread_mutex_lock(&r->lock);
    int gone = f->gone;
    pthread_mutex_unlock(&r->lock);
    rc = gone ? -ENOENT : rename(part, final) < 0 ? -errno : 0;
    pthread_mutex_unlock(&r->journal_lock);
    if (rc)
        return rc;
    fsync_dir(dir);
    pthread_mutex_lock(&r->lock);
    if (f->gone) {
        /* It left the list while being renamed (a refresh drops files
         * without the journal lock): not kept outside cache_max. */
        pthread_mutex_unlock(&r->lock);
        unlink(final);
        return -ENOENT;
    }
    f->local = EV_READY;
    snprintf(f->format, sizeof f->format, "%s", format);
    f->local_bytes = size;
    f->fetch_seq = ++r->fetch_seq;
    f->last_used = time(NULL);
    f->fail_errno = 0;
    if (f->size != size) {
        /* What storage announced at listing time is not what it served:
         * the file changed; stat shows the bytes served from now on. */
        log_warn("project %s: event-logs: %s has %lld bytes, %lld were announced", f->proj->id,
                 f->name, (long long)size, (long long)f->size);
        f->size = size;
        f->proj->dirty = 1;
    }
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    atomic_fetch_add(&el->files_fetched, 1);
    return 0;
}

void eventlogs_fetch(struct eventlogs *el, struct evfile *f)
{
    struct registry *r = el->r;
    char project[65], dir[PATH_MAX], part[PATH_MAX] = "", final[PATH_MAX], msg[PATH_MAX + 700] = "";
    pthread_mutex_lock(&r->lock);
    snprintf(project, sizeof project, "%s", f->proj->id);
    time_t mtime = (time_t)(f->timestamp / 1000);
    /* Claimed since it was queued: the job's own fetch brings it. */
    int skip = f->gone || ev_claimed_by_locked(el, f) != NULL;
    if (skip)
        f->local = EV_REMOTE;
    pthread_mutex_unlock(&r->lock);
    int rc = skip ? 0 : ev_local_dir(el, project, 1, dir);
    if (!skip && !rc)
        rc = ev_part_path(el, project, f, part);
    if (rc)
        snprintf(msg, sizeof msg, "cannot create the event-logs cache directory: %s",
                 strerror(-rc));
    int failures = 0, bad = 0, refreshes = 0, need_url = 0, done = skip;
    char *url = NULL;
    while (!skip && !rc && !done && !r->stopping && !atomic_load(&f->cancel)) {
        pthread_mutex_lock(&r->lock);
        free(url);
        url = f->url && !need_url ? strdup(f->url) : NULL;
        pthread_mutex_unlock(&r->lock);
        if (!url) {
            char *why = NULL;
            int urc = ev_find_url(el, f, &why);
            if (why)
                snprintf(msg, sizeof msg, "%s", why);
            free(why);
            need_url = 0;
            if (urc == -ENOENT) {
                rc = -ENOENT;
                break;
            }
            if (urc && (++failures >= MAX_TRANSFER_ATTEMPTS || pause_fetch(el, f, 1 << failures)))
                rc = urc;
            continue;
        }
        int fd = open(part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            rc = -errno;
            snprintf(msg, sizeof msg, "cannot open %s: %s", part, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        struct cloud_error e;
        int64_t total = -1;
        int drc = cloud_download_url(r->cloud, url, fd, (uint64_t)st.st_size, NULL, NULL,
                                     &f->cancel, &total, &e);
        off_t have = st.st_size;
        off_t size = fstat(fd, &st) == 0 ? st.st_size : -1;
        close(fd);
        if (size > have)
            atomic_fetch_add(&el->bytes_fetched, (unsigned long long)(size - have));
        if (drc == -ECANCELED || atomic_load(&f->cancel))
            break;
        if (drc && (e.status == 403 || e.status == 404) && refreshes++ < MAX_URL_REFRESHES) {
            need_url = 1; /* expired or withdrawn: the list has a fresh one */
            continue;
        }
        if (drc) {
            snprintf(msg, sizeof msg, "%s", e.msg[0] ? e.msg : strerror(-drc));
            if (drc == -ENOSPC || drc == -EDQUOT)
                unlink(part); /* the space is the cache's and the journal's */
            if (++failures >= MAX_TRANSFER_ATTEMPTS || drc == -EACCES || drc == -ENOENT ||
                pause_fetch(el, f, 1 << (failures < 4 ? failures : 4))) {
                rc = drc;
                break;
            }
            continue;
        }
        const char *format = "csv";
        int damaged = 0;
        if (pathf(final, "%s/%s.tmp", dir, f->lid)) { /* the gzip check's name, never made */
            rc = -ENAMETOOLONG;
            break;
        }
        const char *why = verify_copy(part, final, f->name, mtime, msg, sizeof msg, &format,
                                      &damaged);
        if (why && (++bad < MAX_BAD_COPIES || !damaged)) {
            unlink(part);
            log_warn("project %s: event-logs: %s: %s%s", project, f->name, why,
                     bad < MAX_BAD_COPIES ? "; fetching again" : "");
            if (bad >= MAX_BAD_COPIES) {
                rc = -EIO;
                break;
            }
            continue;
        }
        if (why)
            log_error("project %s: event-logs: %s: %s (in every copy fetched: served as storage "
                      "holds it)", project, f->name, why);
        if ((rc = ev_local_path(el, project, f, format, final)) == 0)
            rc = commit_copy(el, f, part, final, dir, format, (int64_t)size);
        if (rc)
            snprintf(msg, sizeof msg, "cannot store %s: %s", final, strerror(-rc));
        done = rc == 0;
    }
    free(url);
    pthread_mutex_lock(&r->lock);
    if (!done && (atomic_load(&f->cancel) || f->gone)) {
        if (part[0])
            unlink(part); /* left the list: nothing to resume */
    } else if (!done && !r->stopping) {
        f->local = EV_FAILED;
        f->failed_at = time(NULL);
        f->fail_errno = rc == -ENOENT ? ENOENT : rc == -ENOSPC ? ENOSPC : EIO;
        if (rc == -ENOENT)
            f->proj->fresh_at = -1e18; /* gone: the next listing reads the list again */
        snprintf(el->last_error, sizeof el->last_error, "%.511s", msg);
        pthread_mutex_unlock(&r->lock);
        log_error("project %s: event-logs: fetching %s failed: %s", project, f->name, msg);
        pthread_mutex_lock(&r->lock);
    } else if (!done) {
        f->local = EV_REMOTE;
    }
    registry_changed_locked(r, f);
    pthread_mutex_unlock(&r->lock);
    if (done && !skip)
        registry_enforce_cache_max(r);
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < REGISTRY_FETCHERS; i++)
        if (el->fetching[i] == f)
            el->fetching[i] = NULL;
    pthread_cond_broadcast(&r->work); /* a namesake may start now */
    ev_unref_locked(el, f);
    pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------ with jobs */

int64_t eventlogs_hand_over(struct eventlogs *el, struct job *j, const char *part)
{
    struct registry *r = el->r;
    char final[PATH_MAX], key[sizeof ((struct evfile *)0)->key];
    struct evfile *f = NULL;
    pthread_mutex_lock(&r->lock);
    if (j->task.file_id[0] || j->file_obsname[0])
        snprintf(key, sizeof key, "%c%s", j->task.file_id[0] ? 'i' : 'o',
                 j->task.file_id[0] ? j->task.file_id : j->file_obsname);
    for (size_t i = 0; i < el->nprojects && !f && (j->task.file_id[0] || j->file_obsname[0]); i++)
        if (!strcmp(el->projects[i]->id, j->project->id))
            for (size_t k = 0; k < el->projects[i]->n && !f; k++)
                if (!strcmp(el->projects[i]->files[k]->key, key))
                    f = el->projects[i]->files[k];
    if (f)
        f->refs++;
    /* A copy on its way is waited for: the job then takes it. */
    while (f && f->local == EV_FETCHING && !r->stopping && !atomic_load(&j->cancelled)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->changed, &r->lock, &ts);
    }
    int take = f && f->local == EV_READY && !f->gone &&
               ev_local_path(el, f->proj->id, f, f->format, final) == 0;
    if (f && (take || f->local == EV_QUEUED))
        f->local = EV_REMOTE; /* the job's copy serves it from now on */
    pthread_mutex_unlock(&r->lock);
    int64_t handed = -1;
    if (take) {
        pthread_mutex_lock(&r->journal_lock);
        struct stat st;
        if (rename(final, part) == 0 && stat(part, &st) == 0)
            handed = st.st_size;
        else
            log_warn("job %s: cannot take the event-logs copy %s: %s", j->id, final,
                     strerror(errno));
        pthread_mutex_unlock(&r->journal_lock);
    }
    if (handed >= 0) {
        atomic_fetch_add(&el->handed_to_jobs, 1);
        log_info("job %s: its file is the event-logs copy of %s (%lld bytes): not downloaded "
                 "again", j->id, f->name, (long long)handed);
    }
    if (f) {
        pthread_mutex_lock(&r->lock);
        registry_changed_locked(r, f); /* its openers go to the job now */
        ev_unref_locked(el, f);
        pthread_mutex_unlock(&r->lock);
    }
    return handed;
}
