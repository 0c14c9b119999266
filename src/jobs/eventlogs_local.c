/* eventlogs_local: our copies of event-logs/ files on disk: where they
 * live (archives/<project>/event-logs/<stem>.<format>, a download in
 * .<stem>.part), adopting the copies a mount left behind (a .part is
 * resumed, a copy of a file no longer listed goes), and cache_max eviction
 * of the least recently used copy. */
#include "eventlogs_internal.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ev_local_dir(struct eventlogs *el, const char *project, int create, char out[PATH_MAX])
{
    if (pathf(out, "%s/archives/%s/event-logs", journal_cache_dir(el->r->journal), project))
        return -ENAMETOOLONG;
    if (!create)
        return 0;
    char parent[PATH_MAX];
    int rc = journal_archive_dir(el->r->journal, project, parent);
    if (rc)
        return rc;
    return mkdir(out, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int ev_local_path(struct eventlogs *el, const char *project, const struct evfile *f,
                  const char *format, char out[PATH_MAX])
{
    char dir[PATH_MAX];
    int rc = ev_local_dir(el, project, 0, dir);
    return rc ? rc : pathf(out, "%s/%s.%s", dir, f->lid, format);
}

int ev_part_path(struct eventlogs *el, const char *project, const struct evfile *f,
                 char out[PATH_MAX])
{
    char dir[PATH_MAX];
    int rc = ev_local_dir(el, project, 0, dir);
    return rc ? rc : pathf(out, "%s/.%s.part", dir, f->lid);
}

static int by_lid(const void *a, const void *b)
{
    return strcmp((*(struct evfile *const *)a)->lid, (*(struct evfile *const *)b)->lid);
}

static struct evfile *find_lid(struct evfile **sorted, size_t n, const char *lid)
{
    struct evfile key, *kp = &key;
    if (strlen(lid) >= sizeof key.lid)
        return NULL;
    memcpy(key.lid, lid, strlen(lid) + 1);
    struct evfile **hit = bsearch(&kp, sorted, n, sizeof *sorted, by_lid);
    return hit ? *hit : NULL;
}

void ev_adopt_local(struct eventlogs *el, struct evproject *p)
{
    char dir[PATH_MAX], path[PATH_MAX], lid[NAME_MAX + 1];
    DIR *d = ev_local_dir(el, p->id, 0, dir) ? NULL : opendir(dir);
    if (!d)
        return;
    struct evfile **sorted = malloc((p->n ? p->n : 1) * sizeof *sorted);
    if (!sorted) {
        closedir(d);
        return;
    }
    memcpy(sorted, p->files, p->n * sizeof *sorted);
    qsort(sorted, p->n, sizeof *sorted, by_lid);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        const char *format = NULL;
        if (name[0] == '.' && n > 6 && !strcmp(name + n - 5, ".part")) {
            snprintf(lid, sizeof lid, "%.*s", (int)(n - 6), name + 1);
        } else {
            for (size_t k = 0; journal_formats[k] && !format; k++) {
                size_t fl = strlen(journal_formats[k]);
                if (n > fl + 1 && name[n - fl - 1] == '.' && !strcmp(name + n - fl, journal_formats[k]))
                    format = journal_formats[k];
            }
            if (!format || (name[0] != 'i' && name[0] != 'h'))
                continue; /* not ours: left alone */
            snprintf(lid, sizeof lid, "%.*s", (int)(n - strlen(format) - 1), name);
        }
        struct evfile *f = find_lid(sorted, p->n, lid);
        struct stat st;
        if (pathf(path, "%s/%s", dir, name))
            continue;
        if (f && !format)
            continue; /* a partial download: resumed when fetched */
        if (f && f->local == EV_REMOTE && lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            f->local = EV_READY;
            snprintf(f->format, sizeof f->format, "%s", format);
            f->local_bytes = st.st_size;
            f->last_used = st.st_mtime;
            if (f->sizing != SIZE_KNOWN) {
                f->size = st.st_size;
                f->sizing = SIZE_KNOWN;
            }
            continue;
        }
        log_info("removing %s (a copy of an event-log file no longer listed)", path);
        unlink(path);
    }
    closedir(d);
    free(sorted);
}

/* --------------------------------------------------------------- eviction */

/* The least recently used copy not in use and not the newest fetched. */
static struct evfile *lru_locked(struct eventlogs *el, uint64_t *bytes)
{
    struct evfile *victim = NULL, *newest = NULL;
    *bytes = 0;
    for (size_t i = 0; i < el->nprojects; i++)
        for (size_t k = 0; k < el->projects[i]->n; k++) {
            struct evfile *f = el->projects[i]->files[k];
            if (f->local != EV_READY)
                continue;
            *bytes += (uint64_t)f->local_bytes;
            if (!newest || f->fetch_seq > newest->fetch_seq)
                newest = f;
        }
    for (size_t i = 0; i < el->nprojects; i++)
        for (size_t k = 0; k < el->projects[i]->n; k++) {
            struct evfile *f = el->projects[i]->files[k];
            if (f->local == EV_READY && f->users == 0 && f != newest &&
                (!victim || f->last_used < victim->last_used))
                victim = f;
        }
    return victim;
}

int eventlogs_cache_locked(struct eventlogs *el, uint64_t *bytes, time_t *lru)
{
    struct evfile *v = lru_locked(el, bytes);
    if (v)
        *lru = v->last_used;
    return v != NULL;
}

int eventlogs_evict_lru(struct eventlogs *el)
{
    struct registry *r = el->r;
    char path[PATH_MAX];
    uint64_t bytes;
    pthread_mutex_lock(&r->journal_lock);
    pthread_mutex_lock(&r->lock);
    struct evfile *f = lru_locked(el, &bytes);
    int ok = f && ev_local_path(el, f->proj->id, f, f->format, path) == 0;
    long long size = f ? (long long)f->local_bytes : 0;
    if (f) {
        f->local = EV_REMOTE; /* fetched again on the next open */
        f->local_bytes = 0;
    }
    char name[256] = "";
    if (f)
        snprintf(name, sizeof name, "%s", f->name);
    pthread_mutex_unlock(&r->lock);
    if (ok && unlink(path) < 0 && errno != ENOENT)
        log_error("cannot evict %s: %s", path, strerror(errno));
    pthread_mutex_unlock(&r->journal_lock);
    if (f) {
        atomic_fetch_add(&el->evicted, 1);
        log_info("event-logs: %s evicted (%lld bytes) to keep the cache within cache_max", name,
                 size);
    }
    return f != NULL;
}
