/* fetcher: background threads that bring succeeded jobs' files into the
 * cache: a WAF job's from the pre-signed storage URL its event-log list
 * entry gives (a fresh URL is listed when one expires), an HSS task's
 * through HSS's download call.
 *
 * A download streams into archives/<project>/.<job>.zip.part and resumes
 * from its size with Range (or starts over when the server ignores it).
 * Its first bytes tell its format (zip, gzip, plain CSV); only a file that
 * arrived whole (its Content-Length) and that reads back (a zip's central
 * directory, a gzip stream) is renamed to <job>.<format>, so the cache
 * never holds a partial or unreadable file under its real name.
 * Transport failures are retried a bounded number of times with backoff;
 * a bad archive is fetched again up to three times; after that the job
 * shows the error in .job.json and its directory lists no entries. */
#include "log.h"
#include "job.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FETCHERS = REGISTRY_FETCHERS, MAX_TRANSFER_ATTEMPTS = 6, MAX_BAD_ARCHIVES = 3 };

static pthread_t fetch_threads[FETCHERS];
static int fetchers_running;

/* Large downloads log their progress at info, so that a slow or stalled
 * transfer shows in the log without flooding it for the usual small
 * archives: a line each time another tenth of an archive of at least
 * PROGRESS_LOG_MIN_BYTES has arrived.  When the size is not known during
 * the transfer (a 200 reply without Content-Length, e.g. chunked), a line
 * every PROGRESS_LOG_MIN_BYTES instead. */
enum { PROGRESS_LOG_MIN_BYTES = 8 << 20, PROGRESS_LOG_STEPS = 10 };

struct progress_ctx {
    struct registry *r;
    struct job *j;
    double last_notify;
    double started;       /* this transfer's start */
    uint64_t start_bytes; /* where it started (resumed downloads) */
    int logged_step;      /* last tenth logged; -1: not set yet */
    uint64_t logged_mark; /* last multiple of PROGRESS_LOG_MIN_BYTES logged (size unknown) */
};

static void progress_start(struct progress_ctx *p, uint64_t from)
{
    p->started = monotonic_now();
    p->start_bytes = from;
    p->logged_step = -1;
    p->logged_mark = from / PROGRESS_LOG_MIN_BYTES;
}

static void log_progress(struct progress_ctx *p, uint64_t done, int64_t total, double now)
{
    double secs = now - p->started;
    double rate = secs > 0 && done > p->start_bytes
                      ? (double)(done - p->start_bytes) / secs / (1 << 20) : 0.0;
    if (total >= PROGRESS_LOG_MIN_BYTES && done <= (uint64_t)total) {
        /* Tenths already there when a resumed transfer started are not logged. */
        if (p->logged_step < 0)
            p->logged_step = (int)(p->start_bytes * PROGRESS_LOG_STEPS / (uint64_t)total);
        int step = (int)(done * PROGRESS_LOG_STEPS / (uint64_t)total);
        if (step > p->logged_step) {
            p->logged_step = step;
            log_info("job %s: downloaded %llu of %lld bytes (%d%%, %.1f MiB/s)", p->j->id,
                     (unsigned long long)done, (long long)total,
                     step * 100 / PROGRESS_LOG_STEPS, rate);
        }
    } else if (total < 0 && done / PROGRESS_LOG_MIN_BYTES > p->logged_mark) {
        p->logged_mark = done / PROGRESS_LOG_MIN_BYTES;
        log_info("job %s: downloaded %llu bytes, size not announced yet (%.1f MiB/s)", p->j->id,
                 (unsigned long long)done, rate);
    }
}

static void on_progress(void *arg, uint64_t done, int64_t total)
{
    struct progress_ctx *p = arg;
    pthread_mutex_lock(&p->r->lock);
    p->j->dl_done = (int64_t)done;
    if (total >= 0)
        p->j->dl_total = total;
    pthread_mutex_unlock(&p->r->lock);
    double now = monotonic_now();
    if (now - p->last_notify >= 0.5) { /* .job.json shows progress */
        p->last_notify = now;
        registry_notify(p->r, p->j);
    }
    log_progress(p, done, total, now);
}

/* idx: the verified archive's index (READY only), handed to the job so
 * that its first use does not build it again; freed here if not taken. */
static void finish(struct registry *r, struct job *j, enum archive_state state, const char *error,
                   int64_t size, int64_t disk_bytes, struct aindex *idx, const char *format)
{
    pthread_mutex_lock(&r->lock);
    if (state == ARCHIVE_READY) {
        snprintf(j->format, sizeof j->format, "%s", format);
        j->dl_done = j->dl_total = size;
        j->archive_bytes = disk_bytes; /* the zip and its sidecars */
        j->fetch_failures = 0;
        j->fetched_at = j->last_used = time(NULL);
        j->fetch_seq = ++r->fetch_seq;
        if (j->pending == idx) {
            j->pending = NULL; /* the same index, now verified: users carry over */
            j->index = idx;
            idx = NULL;
        } else if (!j->index && !j->index_loading) {
            j->index = idx;
            idx = NULL;
        }
    } else {
        j->fetch_failed_at = time(NULL);
    }
    job_set_error_locked(j, error);
    job_set_archive_locked(r, j, state, state == ARCHIVE_READY ? "fetched" : "fetch failed");
    pthread_mutex_unlock(&r->lock);
    aindex_free(idx);
    registry_save_job(r, j);
    registry_notify(r, j);
    if (state == ARCHIVE_READY)
        registry_enforce_cache_max(r);
}

/* Also ends early (-ECANCELED) when the job is forgotten (rmdir). */
static int sleep_unless_stopping(struct registry *r, struct job *j, double secs)
{
    pthread_mutex_lock(&r->lock);
    double until = monotonic_now() + secs;
    while (!r->stopping && !j->forgotten && monotonic_now() < until) {
        struct timespec ts = { (time_t)until, (long)((until - (double)(time_t)until) * 1e9) };
        pthread_cond_timedwait(&r->changed, &r->lock, &ts);
    }
    int stopping = r->stopping || j->forgotten;
    pthread_mutex_unlock(&r->lock);
    return stopping ? -ECANCELED : 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Drops a downloaded copy that will not become the archive: its tree
 * leaves the listings (once no listing uses it), then the files go. */
static void discard_copy(struct registry *r, struct job *j, struct aindex *idx,
                         const char *part, const char *final)
{
    registry_withdraw_pending(r, j);
    aindex_free(idx);
    unlink(part);
    journal_unlink_sidecars(final);
}

/* The job's pre-signed URL, listing again when it has none (restart,
 * eviction) or when storage refused it (expired).  0 or -errno with msg. */
static int storage_url(struct registry *r, struct job *j, int refresh, char **url, char *msg,
                       size_t msglen)
{
    free(*url);
    *url = NULL;
    if (!refresh) {
        pthread_mutex_lock(&r->lock);
        *url = j->file_url ? strdup(j->file_url) : NULL;
        pthread_mutex_unlock(&r->lock);
        if (*url)
            return 0;
    }
    char *why = NULL;
    int rc = locator_refresh_url(r, j, &why);
    if (rc) {
        snprintf(msg, msglen, "%s", why ? why : strerror(-rc));
        free(why);
        return rc;
    }
    pthread_mutex_lock(&r->lock);
    *url = j->file_url ? strdup(j->file_url) : NULL;
    pthread_mutex_unlock(&r->lock);
    return *url ? 0 : -ENOMEM;
}

/* Its format, from the first bytes of the downloaded file. */
static int sniff_file(const char *path, enum aformat *fmt)
{
    unsigned char head[8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, head, sizeof head, 0);
    int rc = n < 0 ? -errno : 0;
    close(fd);
    if (!rc)
        *fmt = aformat_sniff(head, (size_t)n);
    return rc;
}

/* A file that is neither a zip nor a gzip must be the CSV text WAF
 * exports (cloud-api.md §5: UTF-8, a header line, then events).  A proxy's
 * error page or a JSON error served with 200 is not one: it would show as
 * the export.  NULL when it looks like CSV text, else why not. */
const char *fetcher_not_csv_text(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return "cannot be read back";
    }
    if (st.st_size == 0) {
        close(fd);
        return NULL; /* an export of no events at all */
    }
    const unsigned char *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return "cannot be mapped";
    size_t n = (size_t)st.st_size, i = 0;
    madvise((void *)p, n, MADV_SEQUENTIAL);
    const char *why = NULL;
    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        i = 3; /* a UTF-8 byte order mark, as spreadsheet tools write */
    if (i < n && (p[i] == '<' || p[i] == '{' || p[i] == '['))
        why = "it starts like an HTML, XML or JSON document, not a CSV header line";
    while (!why && i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            if (c == 0)
                why = "it holds NUL bytes";
            i++;
            continue;
        }
        /* One UTF-8 sequence: lead byte, then continuation bytes. */
        size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
        if (len == 0 || i + len > n)
            why = "it is not UTF-8 text";
        for (size_t k = 1; !why && k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                why = "it is not UTF-8 text";
        i += len ? len : 1;
    }
    munmap((void *)p, n);
    return why;
}

/* .job.json says why a try failed at once, not only after the last one
 * (filesystem.md); a later success clears it. */
static void show_try_error(struct registry *r, struct job *j, const char *msg)
{
    pthread_mutex_lock(&r->lock);
    int same = j->error && strcmp(j->error, msg) == 0;
    if (!same && !j->forgotten)
        job_set_error_locked(j, msg);
    pthread_mutex_unlock(&r->lock);
    if (same)
        return;
    registry_save_job(r, j);
    registry_notify(r, j);
}

/* After a failed transfer: 0 to try again (after a pause growing with the
 * failures), -1 to give up (too many, or unmounting). */
static int transfer_retry(struct registry *r, struct job *j, const char *msg, int *failures)
{
    if (++*failures >= MAX_TRANSFER_ATTEMPTS)
        return -1;
    show_try_error(r, j, msg);
    log_warn("job %s: %s; retrying (%d/%d)", j->id, msg, *failures, MAX_TRANSFER_ATTEMPTS);
    return sleep_unless_stopping(r, j, 1 << (*failures < 4 ? *failures : 4)) < 0 ? -1 : 0;
}

/* After a copy that arrived whole but is not usable: drops it; 0 to fetch
 * again (the error shows meanwhile), -1 when MAX_BAD_ARCHIVES copies failed. */
static int bad_copy_retry(struct registry *r, struct job *j, const char *part, const char *msg,
                          int *bad_copies)
{
    unlink(part);
    if (++*bad_copies >= MAX_BAD_ARCHIVES)
        return -1;
    show_try_error(r, j, msg);
    log_warn("job %s: %s; fetching again (%d/%d)", j->id, msg, *bad_copies, MAX_BAD_ARCHIVES);
    return 0;
}

/* How many times a fetch lists again for a fresh storage URL. */
enum { MAX_URL_REFRESHES = 3 };

static void fetch_one(struct registry *r, struct job *j)
{
    char project[65], file_id[65], dir[PATH_MAX], part[PATH_MAX], final[PATH_MAX];
    char sidecar[PATH_MAX], entry[256];
    char msg[PATH_MAX + 600];
    pthread_mutex_lock(&r->lock);
    snprintf(project, sizeof project, "%s", j->project->id);
    snprintf(file_id, sizeof file_id, "%s", j->task.file_id);
    enum cloud_service service = j->service;
    pthread_mutex_unlock(&r->lock);

    int rc = journal_archive_dir(r->journal, project, dir);
    if (rc) {
        snprintf(msg, sizeof msg, "cannot create %s: %s", dir, strerror(-rc));
        log_error("job %s: %s", j->id, msg);
        finish(r, j, ARCHIVE_FAILED, msg, 0, 0, NULL, NULL);
        return;
    }
    journal_partial_path(r->journal, project, j->id, part);
    /* The event-logs/ folder may hold this very file: taken, not fetched. */
    const struct cache_client *cc = r->cache_client;
    int64_t handed = service == SERVICE_WAF && cc ? cc->hand_over(cc->arg, j, part) : -1;

    int transfer_failures = 0, bad_archives = 0, refreshes = 0, refresh = 0;
    char damaged[sizeof msg] = "";
    char *url = NULL;
    struct progress_ctx progress = { .r = r, .j = j };
    double started = monotonic_now();
    final[0] = '\0';
    while (!r->stopping && !atomic_load(&j->cancelled)) {
        if (service == SERVICE_WAF && handed < 0) {
            rc = storage_url(r, j, refresh, &url, msg, sizeof msg);
            refresh = 0;
            if (rc == -ECANCELED)
                break;
            if (rc == -ENOENT)
                break; /* no longer listed: nothing to fetch it from */
            if (rc) {
                if (transfer_retry(r, j, msg, &transfer_failures) < 0)
                    break;
                continue;
            }
        }
        int fd = open(part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            snprintf(msg, sizeof msg, "cannot open %s: %s", part, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        if (st.st_size > 0)
            log_info("job %s: resuming download at byte %lld", j->id, (long long)st.st_size);
        log_debug("job %s: GET download of file %s for project %s from byte %lld", j->id,
                  file_id[0] ? file_id : "(listed)", project, (long long)st.st_size);
        progress_start(&progress, (uint64_t)st.st_size);
        struct cloud_error e = { 0 };
        int64_t total = -1;
        if (handed >= 0 && st.st_size == handed)
            rc = 0, total = handed; /* whole already */
        else if (service == SERVICE_WAF && !url)
            rc = -EAGAIN, refresh = 1; /* a handed-over copy was not whole: fetch it */
        else if (service == SERVICE_WAF)
            rc = cloud_download_url(r->cloud, url, fd, (uint64_t)st.st_size, on_progress,
                                    &progress, &j->cancelled, &total, &e);
        else
            rc = cloud_download_hss(r->cloud, project, file_id, fd, (uint64_t)st.st_size,
                                    on_progress, &progress, &j->cancelled, &total, &e);
        handed = -1;
        double last_byte = monotonic_now();
        off_t size = fstat(fd, &st) == 0 ? st.st_size : -1;
        close(fd);
        if (rc == -EAGAIN && refresh)
            continue;
        if (rc == -ECANCELED || atomic_load(&j->cancelled))
            break; /* unmounting: the .part file is resumed next time;
                    * forgotten: dropped below */
        if (rc && service == SERVICE_WAF && (e.status == 403 || e.status == 404) &&
            refreshes < MAX_URL_REFRESHES) {
            /* An expired (or withdrawn) pre-signed URL: the list has a
             * fresh one.  The partial file stays and is resumed. */
            refreshes++;
            refresh = 1;
            log_info("job %s: storage refused the file's URL (HTTP %ld); listing again for a "
                     "fresh one", j->id, e.status);
            continue;
        }
        if (rc) {
            snprintf(msg, sizeof msg, "%s", e.msg[0] ? e.msg : strerror(-rc));
            if (rc == -ENOSPC || rc == -EDQUOT) {
                /* Cache disk full: the partial file would hold the space the
                 * journal and other jobs need; drop it, show the error now,
                 * and try again (bounded) from byte 0. */
                unlink(part);
                snprintf(msg, sizeof msg, "cannot store the archive in %s: %s", dir,
                         strerror(-rc));
                show_try_error(r, j, msg);
            }
            if (rc == -ENOENT || rc == -EACCES || transfer_retry(r, j, msg, &transfer_failures) < 0)
                break;
            continue;
        }
        enum aformat fmt = AFORMAT_PLAIN;
        if ((rc = sniff_file(part, &fmt)) != 0) {
            snprintf(msg, sizeof msg, "cannot read %s: %s", part, strerror(-rc));
            break;
        }
        const char *bad_kind = NULL;
        if (service == SERVICE_HSS && fmt != AFORMAT_ZIP)
            bad_kind = "an HSS export file must be a zip archive";
        else if (fmt == AFORMAT_PLAIN)
            bad_kind = fetcher_not_csv_text(part);
        if (bad_kind) {
            snprintf(msg, sizeof msg, "downloaded file is not an export: %s", bad_kind);
            if (bad_copy_retry(r, j, part, msg, &bad_archives) < 0)
                break;
            continue;
        }
        const char *format = aformat_suffix(fmt);
        journal_archive_path(r->journal, project, j->id, format, final);
        if (atomic_load(&j->cancelled))
            break;
        if (pathf(sidecar, "%s.ckpt", final)) {
            snprintf(msg, sizeof msg, "archive path too long");
            break;
        }
        pthread_mutex_lock(&r->lock);
        job_single_name_locked(j, format, entry, sizeof entry);
        struct aindex_single single = { .entry_name = entry,
                                        .mtime = (time_t)job_file_mtime_locked(j) };
        pthread_mutex_unlock(&r->lock);
        /* The index is built once, on the .part file but under the final
         * name (the mapping survives the rename; the sidecar goes straight
         * to <job>.zip.ckpt), and handed to the job: the first access does
         * not build it again. */
        struct aindex *idx = NULL;
        char *why = NULL;
        double verify_start = monotonic_now();
        rc = aindex_open_format(part, final, fmt, &single, control_files, &idx, &why);
        if (rc) {
            snprintf(msg, sizeof msg, "downloaded archive is unreadable: %s",
                     why ? why : strerror(-rc));
            free(why);
            if (bad_copy_retry(r, j, part, msg, &bad_archives) < 0)
                break;
            continue;
        }
        /* What the name rules did, once per archive: entries that are not
         * shown or not shown as named must be explainable from the log. */
        const struct aindex_stats *ist = aindex_stats(idx);
        if (ist->skipped_too_deep || ist->skipped_too_long || ist->skipped_bad_name ||
            ist->skipped_type || ist->skipped_hardlink || ist->skipped_unreadable ||
            ist->replaced_duplicate || ist->shadowed_by_dir || ist->renamed_reserved ||
            ist->truncated_names)
            log_warn("job %s: archive entries not shown as stored: of %ju, skipped %ju too deep, "
                     "%ju too long, %ju bad name, %ju device/fifo/socket/long link, "
                     "%ju hard link, %ju unreadable; %ju duplicates replaced, %ju shadowed by "
                     "a directory, %ju renamed (reserved), %ju names cut",
                     j->id, (uintmax_t)ist->entries_seen, (uintmax_t)ist->skipped_too_deep,
                     (uintmax_t)ist->skipped_too_long, (uintmax_t)ist->skipped_bad_name,
                     (uintmax_t)ist->skipped_type, (uintmax_t)ist->skipped_hardlink,
                     (uintmax_t)ist->skipped_unreadable, (uintmax_t)ist->replaced_duplicate,
                     (uintmax_t)ist->shadowed_by_dir, (uintmax_t)ist->renamed_reserved,
                     (uintmax_t)ist->truncated_names);
        /* Listings and stat may show the tree now (the last byte is
         * here); opens wait until the data is verified. */
        registry_publish_pending(r, j, idx, size, format);
        /* Every entry's data is checked (CRC, sizes) before the archive
         * counts as local, each inflated once: building the checkpoints of
         * large deflate entries checks them, aindex_verify_rest() the rest.
         * A failure is fetched again: transfers can be corrupted.  Damage
         * in every one of MAX_BAD_ARCHIVES copies is the archive itself: it
         * is kept, its bad entries read with EIO, and .job.json says so. */
        rc = aindex_build_checkpoints(idx, sidecar, &why);
        if (rc) {
            struct aindex_ckpt_stats cs;
            aindex_checkpoint_stats(idx, &cs);
            if (!cs.corrupt) {
                /* Not the data: the sidecar could not be written.  The
                 * points are in memory; reads write it again later. */
                log_warn("job %s: checkpoints not saved: %s", j->id,
                         why ? why : strerror(-rc));
                free(why);
                why = NULL;
                rc = 0;
            }
        }
        if (rc == 0)
            rc = aindex_verify_rest(idx, &why);
        double verify_secs = monotonic_now() - verify_start;
        if (rc) {
            snprintf(msg, sizeof msg, "archive has damaged entries: %s", why ? why : strerror(-rc));
            free(why);
            why = NULL;
            /* Kept only when every one of MAX_BAD_ARCHIVES copies is
             * damaged: two bad transfers in a row must not make a transit
             * fault permanent (a kept copy is never fetched again). */
            if (++bad_archives < MAX_BAD_ARCHIVES) {
                show_try_error(r, j, msg);
                log_warn("job %s: %s; fetching again (%d/%d)", j->id, msg, bad_archives,
                         MAX_BAD_ARCHIVES);
                discard_copy(r, j, idx, part, final);
                continue;
            }
            log_error("job %s: %s (in every copy fetched); serving the rest", j->id,
                      msg);
            snprintf(damaged, sizeof damaged, "%s", msg);
        } else {
            damaged[0] = '\0';
        }
        /* The next mount reads the tree from "<job>.zip.idx" instead of
         * walking the archive again; without it, it walks. */
        if (aindex_save(idx, control_files, &why) != 0) {
            log_warn("job %s: %s", j->id, why ? why : "index not saved");
            free(why);
            why = NULL;
        }
        /* Durable before it takes its final name (the rename is what a
         * restart trusts); synced only now so that listings need not wait
         * for the disk. */
        if ((rc = fsync_path(part)) != 0) {
            snprintf(msg, sizeof msg, "cannot write %s to disk: %s", part, strerror(-rc));
            discard_copy(r, j, idx, part, final);
            if (++transfer_failures >= MAX_TRANSFER_ATTEMPTS)
                break;
            show_try_error(r, j, msg);
            log_warn("job %s: %s; fetching again (%d/%d)", j->id, msg, transfer_failures,
                     MAX_TRANSFER_ATTEMPTS);
            continue;
        }
        /* archives/<job>.<format> keeps the size and modification time it
         * first had (filesystem.md): a copy fetched again after eviction
         * gets the remembered time, so that rsync sees nothing new. */
        pthread_mutex_lock(&r->lock);
        int64_t keep_size = j->local_size, keep_mtime = j->local_mtime;
        pthread_mutex_unlock(&r->lock);
        if (keep_mtime >= 0 && keep_size == (int64_t)size) {
            struct timespec times[2] = { { (time_t)keep_mtime, 0 }, { (time_t)keep_mtime, 0 } };
            if (utimensat(AT_FDCWD, part, times, 0) < 0)
                log_warn("job %s: cannot set the modification time of %s: %s", j->id, part,
                         strerror(errno));
        } else {
            if (keep_size >= 0)
                log_warn("job %s: the file fetched again has %lld bytes, not %lld as before",
                         j->id, (long long)size, (long long)keep_size);
            struct stat now_st;
            keep_size = (int64_t)size;
            keep_mtime = stat(part, &now_st) == 0 ? (int64_t)now_st.st_mtime : (int64_t)time(NULL);
        }
        pthread_mutex_lock(&r->journal_lock);
        pthread_mutex_lock(&r->lock);
        int forgotten = j->forgotten;
        if (!forgotten) {
            j->local_size = keep_size;
            j->local_mtime = keep_mtime;
        }
        pthread_mutex_unlock(&r->lock);
        if (forgotten) {
            unlink(part); /* rmdir while downloading: nothing to keep */
            journal_unlink_sidecars(final);
            pthread_mutex_unlock(&r->journal_lock);
            registry_withdraw_pending(r, j);
            aindex_free(idx);
            free(url);
            return;
        }
        int renamed = rename(part, final);
        int rename_errno = errno;
        pthread_mutex_unlock(&r->journal_lock);
        if (renamed < 0) {
            snprintf(msg, sizeof msg, "cannot rename %s: %s", part, strerror(rename_errno));
            registry_withdraw_pending(r, j);
            aindex_free(idx);
            journal_unlink_sidecars(final);
            break;
        }
        fsync_dir(dir);
        int64_t disk = (int64_t)size + journal_sidecar_bytes(final);
        double now = monotonic_now();
        log_info("job %s: archive fetched (%lld bytes in %.2fs; verified in %.2fs, browsable "
                 "%.2fs after the last byte)",
                 j->id, (long long)size, now - started, verify_secs, now - last_byte);
        finish(r, j, ARCHIVE_READY, damaged[0] ? damaged : NULL, size, disk, idx, format);
        free(url);
        return;
    }
    free(url);
    if (atomic_load(&j->cancelled)) {
        /* rmdir while downloading: the transfer stopped; what this fetch
         * wrote goes (a namesake attached again is not fetched until this
         * returns, so these names are still this fetch's own). */
        unlink(part);
        if (final[0])
            journal_unlink_sidecars(final);
        log_info("job %s: forgotten while downloading; download stopped", j->id);
        return;
    }
    if (r->stopping)
        return;
    log_error("job %s: download failed: %s", j->id, msg);
    finish(r, j, ARCHIVE_FAILED, msg, 0, 0, NULL, NULL);
}

/* A forgotten job of the same id whose fetch is still winding down. */
static int namesake_fetching_locked(struct registry *r, const struct job *j)
{
    for (int i = 0; i < FETCHERS; i++) {
        const struct job *f = r->fetching[i];
        if (f && f != j && f->forgotten && f->project == j->project && !strcmp(f->id, j->id))
            return 1;
    }
    return 0;
}

static struct job *next_queued_locked(struct registry *r)
{
    for (size_t p = 0; p < r->nprojects; p++)
        for (size_t k = 0; k < r->projects[p]->njobs; k++) {
            struct job *j = r->projects[p]->jobs[k];
            if (j->archive == ARCHIVE_QUEUED && !namesake_fetching_locked(r, j))
                return j;
        }
    return NULL;
}

struct fetcher_arg {
    struct registry *r;
    int slot;
};
static struct fetcher_arg fetcher_args[FETCHERS];

static void *fetcher_main(void *arg)
{
    struct registry *r = ((struct fetcher_arg *)arg)->r;
    int slot = ((struct fetcher_arg *)arg)->slot;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        struct job *j = next_queued_locked(r);
        const struct cache_client *cc = r->cache_client;
        void *other = j || !cc ? NULL : cc->next_queued_locked(cc->arg);
        if (other) {
            /* Jobs first; then the event-logs/ files opened (same cache). */
            pthread_mutex_unlock(&r->lock);
            cc->fetch(cc->arg, other);
            pthread_mutex_lock(&r->lock);
            continue;
        }
        if (!j && r->cache_retry) {
            r->cache_retry = 0;
            pthread_mutex_unlock(&r->lock);
            registry_enforce_cache_max(r);
            pthread_mutex_lock(&r->lock);
            continue;
        }
        if (!j) {
            pthread_cond_wait(&r->work, &r->lock);
            continue;
        }
        job_set_archive_locked(r, j, ARCHIVE_FETCHING, "a download thread took it");
        j->refs++;
        r->fetching[slot] = j;
        pthread_mutex_unlock(&r->lock);
        fetch_one(r, j);
        pthread_mutex_lock(&r->lock);
        r->fetching[slot] = NULL;
        pthread_cond_broadcast(&r->work); /* a namesake may be fetched now */
        pthread_mutex_unlock(&r->lock);
        registry_put_job(r, j);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int fetcher_start(struct registry *r)
{
    for (int i = 0; i < FETCHERS; i++) {
        fetcher_args[i] = (struct fetcher_arg){ .r = r, .slot = i };
        int rc = pthread_create(&fetch_threads[i], NULL, fetcher_main, &fetcher_args[i]);
        if (rc) {
            log_error("cannot start a download thread: %s", strerror(rc));
            return -rc;
        }
        fetchers_running = i + 1;
    }
    return 0;
}

void fetcher_join(void)
{
    for (int i = 0; i < fetchers_running; i++)
        pthread_join(fetch_threads[i], NULL);
    fetchers_running = 0;
}
