/* cache: the cache_max policy: which archive goes (least recently used,
 * not in use, not the newest) and its eviction. */
#include "job.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        job_set_archive_locked(r, victim, ARCHIVE_EVICTED, "cache_max");
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

