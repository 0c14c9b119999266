/* registry: the in-memory state of the mount: projects, their jobs, each
 * job's remote fields, download progress and archive index.  What is in a
 * job is private to jobs/ (job.h); the front end (fs/) and main.c see a
 * job as an opaque reference and ask the functions below, each of which
 * copies what it answers under the registry's lock.
 *
 * One mutex guards this metadata and is held only for short, memory-only
 * sections: no network or disk I/O happens under it.  Jobs are reference
 * counted so that a forgotten job (rmdir) stays valid for handles still
 * open on it. */
#ifndef HCX_REGISTRY_H
#define HCX_REGISTRY_H

#include "archive_index.h"
#include "cloud.h"
#include "journal.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Formats of a job's local file (told by its first bytes at download). */
#define JOB_FORMAT_MAX 8

struct registry;
struct job;
struct eventlogs;

int registry_create(struct journal *, struct cloud *, double poll_interval,
                    struct registry **out);
/* cache_max: bytes, 0 unbounded; locate_wait: how long a listing waits
 * for a WAF job's file lookup (s).  Before the workers start. */
void registry_configure(struct registry *, uint64_t cache_max, double locate_wait);
void registry_destroy(struct registry *);
/* Loads the journal; returns the number of damaged records (reported). */
int registry_load(struct registry *);

double monotonic_now(void);
int project_id_is_valid(const char *id);

/* Adds a project (remembered in the journal).  -EEXIST, -EINVAL. */
int registry_add_project(struct registry *, const char *id);
/* 0 with the time the project was added, or -ENOENT. */
int registry_project_time(struct registry *, const char *project, time_t *added);

/* Takes a reference on a job, or returns NULL. */
struct job *registry_get_job(struct registry *, const char *project, const char *job_id);
void registry_put_job(struct registry *, struct job *);

/* Submits a validated filter (filter.h) to its service; on success
 * *job_id is filled.  On failure, *why (set_why, why.h: the caller frees
 * it) is the reason for the user's "error:" line, when there is one. */
int registry_submit(struct registry *, const char *project, json_t *filter, const char *body,
                    char job_id[65], char **why);
/* mkdir exports/<job>: asks WAF, then HSS; -ENOENT when neither knows it.
 * *why as for registry_submit. */
int registry_attach(struct registry *, const char *project, const char *job_id, char **why);
/* rmdir exports/<job>: forgets the job and drops its cached data. */
int registry_forget(struct registry *, const char *project, const char *job_id);

/* ---- What the front end shows of a job ---- */

/* A job as the tree shows it, copied under the lock by one call. */
struct job_view {
    char id[65];
    char status[16];                /* status's word: running, success, failure */
    bool ended;                     /* no longer running */
    bool has_archive;               /* succeeded with a file (local, coming or failing) */
    bool archive_listed;            /* archives/ lists <id>.<format> (filesystem.md) */
    char format[JOB_FORMAT_MAX];    /* "zip", "csv.gz", "csv"; "" before the first download */
    /* archives/<id>.<format> as first stored, remembered (also while
     * evicted) once has_archive; -1 unknown. */
    int64_t local_size, local_mtime;
    time_t dir_time;                /* the job directory's: its submission, else its
                                     * project's addition */
    time_t control_time;            /* status, .job.json, .wait: the last poll, else dir_time */
    /* With JOB_VIEW_STATUS, JOB_VIEW_JSON: the text of status, of
     * .job.json (NULL when out of memory); job_view_release frees them. */
    char *status_text, *json_text;
};
enum { JOB_VIEW_STATUS = 1, JOB_VIEW_JSON = 2, JOB_VIEW_TEXTS = 3 };
void registry_job_view(struct registry *, struct job *, unsigned flags, struct job_view *out);
void job_view_release(struct job_view *);

/* Calls fn for each project (sorted by id) until it answers nonzero.  fn
 * runs with the registry's lock held: it must not call the registry. */
void registry_each_project(struct registry *, int (*fn)(void *arg, const char *id), void *arg);
/* The same for a project's jobs (sorted by id), each as a view without
 * texts; -ENOENT for an unknown project. */
int registry_each_job(struct registry *, const char *project,
                      int (*fn)(void *arg, const struct job_view *), void *arg);

/* The job's local file, archives/<project>/<job>.<format>: -ENOENT when
 * its format is not format (or not known yet: never downloaded). */
int registry_job_file(struct registry *, struct job *, const char *format, char out[4096]);

/* The non-blocking calls below answer REGISTRY_WAIT when the answer is not
 * there yet: the work is under way on a worker thread, and on_wake(job)
 * says when to ask again.  No request thread ever sleeps in the registry. */
#define REGISTRY_WAIT 1

/* 0 once the job is no longer running; -ENOENT if it was forgotten,
 * -ESHUTDOWN when the mount stops, else REGISTRY_WAIT. */
int registry_job_ended(struct registry *, struct job *);
/* The index once the archive is local and indexed, valid until the
 * matching registry_index_done(); REGISTRY_WAIT (a fetch is under way),
 * or -EIO/-EAGAIN/-ENOENT/-ESHUTDOWN. */
int registry_job_index(struct registry *, struct job *, struct aindex **out);
/* The same for listings and stat: also returns the index of an archive
 * still being verified, so that a job's tree shows as soon as its last
 * byte arrived; its content is only read through registry_job_index. */
int registry_job_listing(struct registry *, struct job *, struct aindex **out);
/* Ends a use of the index returned by registry_job_index or _listing. */
void registry_index_done(struct registry *, struct job *);

/* The names of a job directory's generated files (status, .job.json,
 * .wait), NULL-terminated; archive entries of those names are hidden. */
extern const char *const control_files[];

/* ---- The mount's ---- */

/* Told (outside the lock) when a job's files change, so the kernel drops
 * cached sizes of status/.job.json; and, with the lock held, when
 * something a front-end request may be waiting on changed (key: the job;
 * NULL: everything, e.g. stopping): on_wake must only queue work, never
 * call back into the registry.  Set at mount, cleared (NULLs) at unmount. */
void registry_set_hooks(struct registry *,
                        void (*on_change)(void *arg, const char *project, const char *job),
                        void (*on_wake)(void *arg, const void *key), void *arg);

/* .stats: counts taken under the lock. */
struct registry_stats {
    int64_t running, success, failure;      /* jobs by status */
    int64_t archives, cache_bytes;          /* local archives, with their sidecars */
    int64_t projects;
    uint64_t submits, reads, bytes_read;
    time_t started_at;
};
void registry_get_stats(struct registry *, struct registry_stats *);
/* A read of archive content (bytes long), for .stats. */
void registry_count_read(struct registry *, uint64_t bytes);
time_t registry_started_at(struct registry *);
struct cloud *registry_cloud(struct registry *);
/* The event-logs/ folders (eventlogs.h), or NULL. */
struct eventlogs *registry_eventlogs(struct registry *);
const char *registry_cache_dir(struct registry *);

/* Evicts least recently used archives not in use until the cache fits
 * cache_max (the most recently fetched archive is kept). */
void registry_enforce_cache_max(struct registry *);

/* Background workers (poller.c, fetcher.c). */
int poller_start(struct registry *);
int fetcher_start(struct registry *);
void workers_stop(struct registry *);

#endif
