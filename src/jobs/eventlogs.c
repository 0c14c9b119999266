/* eventlogs: the event-logs/ folders: the list refreshed on demand (the
 * whole list, then the sizes of new files from storage, on this module's
 * threads), and the calls the FUSE side makes to list and look up (see
 * eventlogs.h).  The model's data is eventlogs_model.c's; the bytes are
 * eventlogs_fetch.c's and the copies on disk eventlogs_local.c's. */
#include "eventlogs_internal.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- refresh */

static double list_wait(const struct eventlogs *el)
{
    return el->r->locate_wait > 0 ? el->r->locate_wait : 30;
}

static int queue_probe_locked(struct eventlogs *el, struct evfile *f)
{
    if (el->probe_head > 0 && el->nprobes == el->probe_cap) {
        memmove(el->probes, el->probes + el->probe_head,
                (el->nprobes - el->probe_head) * sizeof *el->probes);
        el->nprobes -= el->probe_head;
        el->probe_head = 0;
    }
    if (el->nprobes == el->probe_cap) {
        size_t ncap = el->probe_cap ? el->probe_cap * 2 : 256;
        struct evfile **a = realloc(el->probes, ncap * sizeof *a);
        if (!a)
            return -ENOMEM;
        el->probes = a;
        el->probe_cap = ncap;
    }
    el->probes[el->nprobes++] = f;
    f->refs++;
    f->sizing = SIZE_QUEUED;
    f->proj->probes_pending++;
    return 0;
}

/* A file's size without storage when the mount has the bytes: its job's
 * archive (remembered) or our copy.  Lock held. */
static int size_from_local_locked(struct eventlogs *el, struct evfile *f)
{
    struct job *j = ev_claimed_by_locked(el, f);
    int64_t size = j && j->local_size >= 0 ? j->local_size
                   : f->local == EV_READY  ? f->local_bytes
                                           : -1;
    if (size < 0)
        return 0;
    f->size = size;
    f->sizing = SIZE_KNOWN;
    f->proj->dirty = 1;
    return 1;
}

/* Drops f from its project (it left the list).  Its copy goes: returns its
 * path in drop (or "") for an unlink outside the lock.  Lock held. */
static void drop_file_locked(struct eventlogs *el, struct evfile *f, char drop[PATH_MAX])
{
    struct evproject *p = f->proj;
    drop[0] = '\0';
    if (f->local == EV_READY && ev_local_path(el, p->id, f, f->format, drop))
        drop[0] = '\0';
    ev_remove_sorted(p->files, p->n, f, 0);
    ev_remove_sorted(p->names, p->n, f, 1);
    p->n--;
    f->gone = 1;
    f->local = EV_REMOTE;
    atomic_store(&f->cancel, 1);
    p->dirty = 1;
    ev_unref_locked(el, f);
}

static int by_age(const void *a, const void *b)
{
    const struct evfile *x = *(struct evfile *const *)a, *y = *(struct evfile *const *)b;
    if (x->timestamp != y->timestamp)
        return x->timestamp < y->timestamp ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(struct evfile *const *)a)->key, (*(struct evfile *const *)b)->key);
}

struct merge_result {
    size_t added, left, skipped;
    char **drops;             /* local copies to unlink */
    size_t ndrops;
};

/* Folds a listing into the project; lock held. */
static void merge_locked(struct eventlogs *el, struct evproject *p, struct event_list *l,
                         struct merge_result *m)
{
    unsigned char *seen = calloc(p->n ? p->n : 1, 1);
    struct evfile **fresh = calloc(l->n ? l->n : 1, sizeof *fresh);
    size_t nfresh = 0, nold = p->n;
    if (!seen || !fresh) {
        free(seen);
        free(fresh);
        m->skipped = l->n;
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        struct event_file *it = &l->items[i];
        if (!it->id[0] && !it->obsname[0]) {
            m->skipped++; /* nothing to find it again by */
            continue;
        }
        struct evfile probe;
        snprintf(probe.key, sizeof probe.key, "%c%s", it->id[0] ? 'i' : 'o',
                 it->id[0] ? it->id : it->obsname);
        int found;
        size_t at = ev_find_slot(p->files, nold, probe.key, 0, &found);
        if (found) {
            struct evfile *f = p->files[at];
            seen[at] = 1;
            if (it->url) {
                free(f->url);
                f->url = it->url;
                it->url = NULL;
            }
            if (it->timestamp >= 0 && it->timestamp != f->timestamp) {
                f->timestamp = it->timestamp;
                p->dirty = 1;
            }
            continue;
        }
        struct evfile *f = ev_new_file(it, p->id);
        if (!f)
            continue;
        f->url = it->url;
        it->url = NULL;
        if (f->timestamp < 0) /* no generation time: when first seen, remembered */
            f->timestamp = (int64_t)time(NULL) * 1000;
        fresh[nfresh++] = f;
    }
    /* A hostile list may repeat an item anywhere: one file per identity. */
    qsort(fresh, nfresh, sizeof *fresh, by_key);
    size_t kept = 0;
    for (size_t i = 0; i < nfresh; i++) {
        if (kept && !strcmp(fresh[kept - 1]->key, fresh[i]->key))
            ev_unref_locked(el, fresh[i]);
        else
            fresh[kept++] = fresh[i];
    }
    nfresh = kept;
    /* Gone from a list that did not move while paged: gone from the folder. */
    char path[PATH_MAX];
    for (size_t i = nold; i-- > 0;) {
        if (seen[i] || l->moved)
            continue;
        drop_file_locked(el, p->files[i], path);
        m->left++;
        char *copy = path[0] ? strdup(path) : NULL;
        char **d = copy ? realloc(m->drops, (m->ndrops + 1) * sizeof *d) : NULL;
        if (d) {
            m->drops = d;
            m->drops[m->ndrops++] = copy;
        } else {
            free(copy);
        }
    }
    /* The older of two new namesakes keeps the plain name. */
    qsort(fresh, nfresh, sizeof *fresh, by_age);
    for (size_t i = 0; i < nfresh; i++) {
        struct evfile *f = fresh[i];
        if (ev_assign_name(p, f) || ev_add_file(p, f)) {
            m->skipped++;
            ev_unref_locked(el, f);
            continue;
        }
        m->added++;
        p->dirty = 1;
    }
    free(fresh);
    free(seen);
}

/* A file whose size probe keeps failing (storage refusing it, an object
 * gone while listed) is probed again after a pause that doubles with each
 * failure, not on every refresh: a list of thousands such files would
 * otherwise cost thousands of requests per poll_interval. */
#define PROBE_PAUSE_MIN_S 30.0
#define PROBE_PAUSE_MAX_S 3600.0

static double probe_pause(int fails)
{
    double pause = PROBE_PAUSE_MIN_S;
    for (int i = 1; i < fails && pause < PROBE_PAUSE_MAX_S; i++)
        pause *= 2;
    return pause < PROBE_PAUSE_MAX_S ? pause : PROBE_PAUSE_MAX_S;
}

/* After the list: sizes known locally, else queued for storage. */
static void queue_sizes_locked(struct eventlogs *el, struct evproject *p)
{
    double now = monotonic_now();
    for (size_t i = 0; i < p->n; i++) {
        struct evfile *f = p->files[i];
        if (f->sizing == SIZE_UNKNOWN || f->sizing == SIZE_FAILED) {
            if (size_from_local_locked(el, f))
                continue;
            if (f->sizing == SIZE_FAILED && now < f->probe_retry_at)
                continue;
            if (!f->url || queue_probe_locked(el, f))
                f->sizing = SIZE_FAILED;
        }
    }
    if (p->probes_pending)
        pthread_cond_broadcast(&el->work);
}

/* The refresh is over (its sizes too): save, wake the listings.  Lock held
 * on entry and return; dropped meanwhile. */
static void refresh_done(struct eventlogs *el, struct evproject *p)
{
    struct registry *r = el->r;
    p->refreshing = 0;
    p->have_list = 1;
    p->fresh_at = monotonic_now();
    p->listed_at = time(NULL);
    p->stale_deadline = 0;
    size_t n = 0, failures = (size_t)p->probe_failures;
    for (size_t i = 0; i < p->n; i++)
        n += p->files[i]->sizing == SIZE_KNOWN;
    pthread_mutex_unlock(&r->lock);
    if (failures)
        log_warn("project %s: event-logs: the size of %zu files could not be learnt from "
                 "storage (not shown until a listing learns it; each asked again after %.0f s "
                 "or more)", p->id, failures, PROBE_PAUSE_MIN_S);
    log_debug("project %s: event-logs listed: %zu files shown", p->id, n);
    ev_save_project(el, p);
    pthread_mutex_lock(&r->lock);
    registry_changed_locked(r, p);
}

static void refresh(struct eventlogs *el, struct evproject *p)
{
    struct registry *r = el->r;
    p->refreshing = 1;
    p->refresh_wanted = 0;
    p->refresh_started = monotonic_now();
    p->probe_failures = 0;
    char id[65];
    snprintf(id, sizeof id, "%s", p->id);
    pthread_mutex_unlock(&r->lock);

    struct event_list l;
    struct cloud_error e;
    int rc = cloud_list_all_event_files(r->cloud, id, EVENTLOGS_MAX_FILES, &l, &e);
    atomic_fetch_add(&el->list_calls, (unsigned long long)l.calls);
    atomic_fetch_add(&el->refreshes, 1);
    struct merge_result m = { 0 };
    pthread_mutex_lock(&r->lock);
    if (rc) {
        p->refreshing = 0;
        p->fresh_at = monotonic_now(); /* not tried again before poll_interval */
        p->last_errno = -rc;
        snprintf(p->error, sizeof p->error, "%s", e.msg);
        snprintf(el->last_error, sizeof el->last_error, "%s", e.msg);
        p->stale_deadline = 0;
        registry_changed_locked(r, p);
        pthread_mutex_unlock(&r->lock);
        log_warn("project %s: event-logs: %s", id, e.msg);
        pthread_mutex_lock(&r->lock);
        return;
    }
    p->last_errno = 0;
    p->list_arrived = 1;
    merge_locked(el, p, &l, &m);
    registry_changed_locked(r, p); /* a first listing may show what it has soon */
    queue_sizes_locked(el, p);
    int done = p->probes_pending == 0;
    pthread_mutex_unlock(&r->lock);
    event_list_release(&l);
    for (size_t i = 0; i < m.ndrops; i++) {
        if (unlink(m.drops[i]) < 0 && errno != ENOENT)
            log_warn("cannot remove %s: %s", m.drops[i], strerror(errno));
        journal_unlink_sidecars(m.drops[i]);
        free(m.drops[i]);
    }
    free(m.drops);
    if (m.added || m.left || m.skipped || l.n >= EVENTLOGS_MAX_FILES)
        log_info("project %s: event-logs: %zu files listed, %zu new, %zu left the list%s%s", id,
                 l.n, m.added, m.left, m.skipped ? ", some unusable (no id or name)" : "",
                 l.n >= EVENTLOGS_MAX_FILES ? "; the list is longer: the newest are shown" : "");
    pthread_mutex_lock(&r->lock);
    if (done && p->refreshing)
        refresh_done(el, p);
}

static void probe_one(struct eventlogs *el, struct evfile *f)
{
    struct registry *r = el->r;
    struct evproject *p = f->proj;
    char *url = NULL;
    if (!f->gone && f->sizing == SIZE_QUEUED && f->url) {
        f->sizing = SIZE_PROBING;
        url = strdup(f->url);
    }
    pthread_mutex_unlock(&r->lock);
    int64_t size = -1;
    struct cloud_error e = { 0 };
    int rc = url ? cloud_storage_size(r->cloud, url, &size, &e) : -ENOENT;
    if (url)
        atomic_fetch_add(&el->size_probes, 1);
    free(url);
    pthread_mutex_lock(&r->lock);
    if (!f->gone && f->sizing == SIZE_PROBING) {
        if (rc == 0) {
            f->size = size;
            f->sizing = SIZE_KNOWN;
            f->probe_fails = 0;
            p->dirty = 1;
        } else {
            f->sizing = SIZE_FAILED;
            f->probe_fails++;
            f->probe_retry_at = monotonic_now() + probe_pause(f->probe_fails);
            p->probe_failures++;
            snprintf(el->last_error, sizeof el->last_error, "%s", e.msg);
            log_debug("project %s: event-logs: %s (%s)", p->id, e.msg, f->name);
        }
    }
    ev_unref_locked(el, f);
    if (--p->probes_pending == 0 && p->refreshing)
        refresh_done(el, p);
}

static void *worker_main(void *arg)
{
    struct eventlogs *el = arg;
    struct registry *r = el->r;
    pthread_mutex_lock(&r->lock);
    while (!el->stopping && !r->stopping) {
        double now = monotonic_now(), next = now + 3600;
        struct evproject *due = NULL, *late = NULL;
        for (size_t i = 0; i < el->nprojects; i++) {
            struct evproject *p = el->projects[i];
            if (p->stale_deadline > 0 && p->stale_deadline <= now)
                late = p;
            else if (p->stale_deadline > 0 && p->stale_deadline < next)
                next = p->stale_deadline;
            if (p->refresh_wanted && !p->refreshing)
                due = p;
        }
        if (late) {
            /* Its listings wait no longer: they answer the previous list. */
            late->stale_deadline = 0;
            registry_changed_locked(r, late);
        } else if (due) {
            refresh(el, due);
        } else if (el->probe_head < el->nprobes) {
            struct evfile *f = el->probes[el->probe_head++];
            if (el->probe_head == el->nprobes)
                el->probe_head = el->nprobes = 0;
            probe_one(el, f);
        } else {
            struct timespec ts = { (time_t)next, (long)((next - (double)(time_t)next) * 1e9) };
            pthread_cond_timedwait(&el->work, &r->lock, &ts);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

static void *next_queued(void *arg) { return eventlogs_next_queued_locked(arg); }
static void fetch(void *arg, void *item) { eventlogs_fetch(arg, item); }
static int64_t hand_over(void *arg, struct job *j, const char *part)
{
    return eventlogs_hand_over(arg, j, part);
}
static int usage(void *arg, uint64_t *bytes, time_t *lru)
{
    return eventlogs_cache_locked(arg, bytes, lru);
}
static int evict(void *arg) { return eventlogs_evict_lru(arg); }

int eventlogs_create(struct registry *r, struct eventlogs **out)
{
    struct eventlogs *el = calloc(1, sizeof *el);
    if (!el)
        return -ENOMEM;
    el->r = r;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&el->work, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&el->save_lock, NULL);
    if (pathf(el->dir, "%s/journal/eventlogs", journal_cache_dir(r->journal)) ||
        (mkdir(el->dir, 0700) < 0 && errno != EEXIST)) {
        int rc = errno ? -errno : -ENAMETOOLONG;
        log_error("cannot create %s: %s", el->dir, strerror(-rc));
        eventlogs_destroy(el);
        return rc;
    }
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->nprojects; i++)
        ev_load_project(el, r->projects[i]->id);
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < el->nprojects; i++)
        ev_adopt_local(el, el->projects[i]);
    el->client = (struct cache_client){ el, next_queued, fetch, hand_over, usage, evict };
    r->eventlogs = el;
    r->cache_client = &el->client;
    *out = el;
    return 0;
}

int eventlogs_start(struct eventlogs *el)
{
    for (int i = 0; i < 4; i++) {
        int rc = pthread_create(&el->threads[i], NULL, worker_main, el);
        if (rc) {
            log_error("cannot start an event-logs thread: %s", strerror(rc));
            return -rc;
        }
        el->nthreads = i + 1;
    }
    return 0;
}

void eventlogs_stop(struct eventlogs *el)
{
    if (!el)
        return;
    pthread_mutex_lock(&el->r->lock);
    el->stopping = 1;
    pthread_cond_broadcast(&el->work);
    pthread_mutex_unlock(&el->r->lock);
    cloud_stop(el->r->cloud);
    for (int i = 0; i < el->nthreads; i++)
        pthread_join(el->threads[i], NULL);
    el->nthreads = 0;
    for (size_t i = 0; i < el->nprojects; i++)
        ev_save_project(el, el->projects[i]);
}

void eventlogs_destroy(struct eventlogs *el)
{
    if (!el)
        return;
    if (el->r && el->r->eventlogs == el) {
        el->r->eventlogs = NULL;
        el->r->cache_client = NULL;
    }
    for (size_t i = el->probe_head; i < el->nprobes; i++)
        ev_unref_locked(el, el->probes[i]);
    free(el->probes);
    for (size_t i = 0; i < el->nprojects; i++) {
        struct evproject *p = el->projects[i];
        for (size_t k = 0; k < p->n; k++)
            ev_unref_locked(el, p->files[k]);
        free(p->files);
        free(p->names);
        free(p);
    }
    free(el->projects);
    pthread_cond_destroy(&el->work);
    pthread_mutex_destroy(&el->save_lock);
    free(el);
}

/* ------------------------------------------------------------------- API */

/* Starts a refresh when one is due (or forced); REGISTRY_WAIT while one
 * runs, unless the previous list may answer.  Lock held. */
static int fresh_enough_locked(struct eventlogs *el, struct evproject *p, int force,
                               const void **wait_key)
{
    double now = monotonic_now();
    if (!p->refreshing && !p->refresh_wanted &&
        (force || now - p->fresh_at >= el->r->poll_interval)) {
        p->refresh_wanted = 1;
        pthread_cond_broadcast(&el->work);
    }
    /* Something to show: a list, or the first one whose sizes are coming. */
    int showable = p->have_list || p->list_arrived;
    if (p->refreshing || p->refresh_wanted) {
        double since = p->refreshing ? p->refresh_started : now;
        if (showable && now - since >= list_wait(el))
            return 0;
        if (showable && (p->stale_deadline == 0 || p->stale_deadline > since + list_wait(el))) {
            p->stale_deadline = since + list_wait(el);
            pthread_cond_broadcast(&el->work);
        }
        *wait_key = p;
        return REGISTRY_WAIT;
    }
    return showable ? 0 : -(p->last_errno ? p->last_errno : EIO);
}

int eventlogs_list(struct eventlogs *el, const char *project, struct eventlog_listing *out,
                   const void **wait_key)
{
    struct registry *r = el->r;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->lock);
    struct evproject *p = ev_project_locked(el, project);
    int rc = p ? fresh_enough_locked(el, p, 0, wait_key) : -ENOENT;
    size_t n = 0, bytes = 0;
    for (size_t i = 0; !rc && i < p->n; i++)
        if (p->names[i]->sizing == SIZE_KNOWN) {
            n++;
            bytes += strlen(p->names[i]->name) + 1;
        }
    if (!rc && (!(out->entries = calloc(n ? n : 1, sizeof *out->entries)) ||
                !(out->names = malloc(bytes ? bytes : 1))))
        rc = -ENOMEM;
    char *at = out->names;
    for (size_t i = 0; !rc && i < p->n; i++) {
        const struct evfile *f = p->names[i];
        if (f->sizing != SIZE_KNOWN)
            continue;
        size_t len = strlen(f->name) + 1;
        memcpy(at, f->name, len);
        out->entries[out->n++] = (struct eventlog_entry){ at, f->size, f->timestamp / 1000,
                                                          f->ino };
        at += len;
    }
    pthread_mutex_unlock(&r->lock);
    if (rc)
        eventlog_listing_release(out);
    return rc;
}

void eventlog_listing_release(struct eventlog_listing *l)
{
    free(l->entries);
    free(l->names);
    memset(l, 0, sizeof *l);
}

int eventlogs_lookup(struct eventlogs *el, const char *project, const char *name,
                     struct eventlog_entry *out, const void **wait_key)
{
    struct registry *r = el->r;
    pthread_mutex_lock(&r->lock);
    struct evproject *p = ev_project_locked(el, project);
    /* Never forced: a lookup that forced a refresh after a failed one would
     * list again at once, in a loop, while the cloud refuses. */
    int rc = !p ? -ENOENT : !p->have_list ? fresh_enough_locked(el, p, 0, wait_key) : 0;
    struct evfile *f = rc == 0 ? ev_by_name_locked(p, name) : NULL;
    if (rc == 0 && f && f->sizing == SIZE_KNOWN) {
        *out = (struct eventlog_entry){ NULL, f->size, f->timestamp / 1000, f->ino };
    } else if (rc == 0) {
        /* Not (yet) shown: a name listed since may be asked for by a script
         * that learnt it elsewhere; the list is read again when allowed. */
        rc = fresh_enough_locked(el, p, 0, wait_key);
        if (rc == 0)
            rc = -ENOENT;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

json_t *eventlogs_stats_json(struct eventlogs *el)
{
    struct registry *r = el->r;
    json_int_t files = 0, cached = 0, bytes = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < el->nprojects; i++)
        for (size_t k = 0; k < el->projects[i]->n; k++) {
            const struct evfile *f = el->projects[i]->files[k];
            files += f->sizing == SIZE_KNOWN;
            if (f->local == EV_READY) {
                cached++;
                bytes += f->local_bytes;
            }
        }
    json_t *err = el->last_error[0] ? json_string(el->last_error) : json_null();
    pthread_mutex_unlock(&r->lock);
#define C(x) (json_int_t) atomic_load(&el->x)
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
                     "list_calls", C(list_calls), "refreshes", C(refreshes), "size_probes",
                     C(size_probes), "files_fetched", C(files_fetched), "bytes_fetched",
                     C(bytes_fetched), "shared_with_jobs", C(shared_with_jobs), "handed_to_jobs",
                     C(handed_to_jobs), "evicted", C(evicted), "files", files, "cached_files",
                     cached, "cached_bytes", bytes, "last_error", err);
#undef C
}
