/* job.h: what the modules of jobs/ share about jobs and projects, and
 * nothing the front end sees (registry.h is its interface).  Included only
 * by the .c files of src/jobs (and the unit tests): tests/check-layers fails an
 * include of it from another folder. */
#ifndef HCX_JOB_H
#define HCX_JOB_H

#include "registry.h"

#include <pthread.h>
#include <stdatomic.h>

enum archive_state {
    ARCHIVE_NONE,       /* no archive: running or failed job */
    ARCHIVE_QUEUED,     /* waiting for a fetcher */
    ARCHIVE_FETCHING,
    ARCHIVE_READY,      /* verified and local */
    ARCHIVE_FAILED,     /* fetching failed; retried on access after a pause */
    ARCHIVE_EVICTED,    /* dropped by cache_max; fetched again on access */
    ARCHIVE_LOCATING,   /* WAF: succeeded, its file not found in the event-log list yet */
};

struct project;

/* Another user of the cache and of the download threads (the event-logs/
 * folders, eventlogs.h), plugged in so that the fetcher and cache_max serve
 * it without calling up into it.  Names ending in _locked are called with
 * the registry's lock held, the others without. */
struct cache_client {
    void *arg;
    void *(*next_queued_locked)(void *arg);   /* a download to run (marked running), or NULL */
    void (*fetch)(void *arg, void *item);     /* runs it on the calling fetcher thread */
    /* A WAF job about to download its claimed file: a verified copy of it
     * moved to part (its size), or -1. */
    int64_t (*hand_over)(void *arg, struct job *, const char *part);
    /* Bytes held, and whether a copy may go (then *lru is its last use). */
    int (*usage_locked)(void *arg, uint64_t *bytes, time_t *lru);
    int (*evict_lru)(void *arg);              /* 1 when a copy went */
};

enum { REGISTRY_FETCHERS = 2 };   /* download threads */

struct job {
    char id[65];
    struct project *project;
    enum cloud_service service;     /* set at creation; changed only while
                                     * service_unknown (a recovered record) */
    int service_unknown;            /* guarded by registry.lock */
    /* Everything below is guarded by registry.lock. */
    json_t *filter;                 /* NULL for an attached job */
    struct task_info task;          /* task_status is "running" until known */
    char format[JOB_FORMAT_MAX];    /* local file: "zip", "csv.gz", "csv"; "" before the
                                     * first download (remembered after eviction) */
    /* WAF: the job's file in the event-log list (locator.c).  file_id and
     * file_name live in task; the claim is file_id, else file_obsname. */
    char file_match[8];             /* "id", "name", "time"; "" until found */
    char file_obsname[512];
    int64_t file_time_ms;           /* the file's generation time; -1 unknown */
    char *file_url;                 /* current pre-signed URL: memory only (a bearer
                                     * credential for the file; it expires anyway) */
    int lookups;                    /* list lookups that did not find the file */
    double next_lookup;             /* CLOCK_MONOTONIC seconds */
    double locating_since;          /* when the lookup started (listings wait) */
    time_t attached_at;             /* mkdir of a job seen running: lower bound of
                                     * its file's time (no submission time known) */
    /* The cloud's clock (its Date header, ms) when it took the submission
     * (or answered the attach of a running job) and when it first said
     * success: bounds of the file's generation time free of local clock
     * skew.  -1 unknown (no Date header, older records). */
    int64_t cloud_since_ms, cloud_success_ms;
    int64_t submitted_ms;           /* our clock, ms: orders jobs submitted within the
                                     * second the cloud's Date resolves; -1 unknown */
    int upgrade;                    /* journal record of an older version: rewrite */
    char message[256];
    char *error;                    /* last error, NULL when none */
    time_t submitted_at, polled_at;
    int64_t dl_done, dl_total;      /* dl_total -1 until known */
    enum archive_state archive;
    int fetch_failures;
    time_t fetch_failed_at;
    int polls, poll_errors;
    double next_poll;               /* CLOCK_MONOTONIC seconds */
    struct aindex *index;           /* handed over by the fetcher (built and
                                     * verified on the download), else loaded
                                     * on first use of a READY archive */
    struct aindex *pending;         /* the index of a downloaded archive
                                     * still being verified: listings and
                                     * stat use it, opens wait for index */
    int index_loading;
    int withdrawing;                /* registry_withdraw_pending waits */
    int index_users;                /* lookups and open files using index
                                     * (or pending, while it is set) */
    int64_t archive_bytes;          /* local archive + checkpoint sidecar, when READY */
    /* archives/<job>.<format> as first stored: its size and modification
     * time (s), remembered (journal) so that stat of an evicted file answers
     * without fetching and a fetch again shows the same; -1 unknown. */
    int64_t local_size, local_mtime;
    time_t last_used, fetched_at;   /* for cache_max's LRU eviction */
    uint64_t fetch_seq;             /* order of fetches in this mount (0: before) */
    int refs;
    int forgotten;
    atomic_int cancelled;           /* set with forgotten: aborts its download at once */
};

struct project {
    char id[65];
    time_t added_at;
    struct job **jobs;              /* sorted by id */
    size_t njobs, cap;
};

struct registry {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    pthread_cond_t work;            /* wakes the poller and fetchers */
    struct project **projects;      /* sorted by id */
    size_t nprojects, projects_cap;
    struct journal *journal;
    /* Serializes journal/cache writes with forgetting, so that a job
     * forgotten by rmdir is never written back by a late save or rename. */
    pthread_mutex_t journal_lock;
    struct cloud *cloud;
    double poll_interval;
    double locate_wait;             /* how long a listing waits for a file lookup */
    uint64_t cache_max;             /* 0: unbounded */
    uint64_t fetch_seq;             /* last job->fetch_seq given */
    /* The job each download thread works on (NULL: idle).  A job re-attached
     * after rmdir is not fetched while its forgotten namesake's fetch still
     * winds down: the two never share the .part file or sidecars. */
    struct job *fetching[REGISTRY_FETCHERS];
    struct eventlogs *eventlogs;    /* the event-logs/ folders (eventlogs.h), or NULL */
    const struct cache_client *cache_client;  /* NULL: none */
    int cache_over;                 /* over cache_max with every archive in use */
    int cache_retry;                /* one was let go since: the fetcher evicts */
    time_t started_at;
    atomic_int stopping;            /* set under lock; the fetch loop reads it without */
    atomic_ullong reads, bytes_read, submits;
    /* Told (outside the lock) when a job's files change, so the kernel
     * drops cached sizes of status/.job.json (set by fs.c). */
    void (*on_change)(void *arg, const char *project, const char *job);
    void *on_change_arg;
    /* Told, with the lock held, when something a front-end request may be
     * waiting on changed (key: the job; NULL: everything, e.g. stopping).
     * It must only queue work: never call back into the registry. */
    void (*on_wake)(void *arg, const void *key);
    void *on_wake_arg;
};

/* Calls on_change; never with the lock held. */
void registry_notify(struct registry *, struct job *);

/* Lookups return NULL when absent; call with the lock held. */
struct project *registry_project_locked(struct registry *, const char *id);
struct job *project_job_locked(struct project *, const char *job_id);

/* .job.json content (also the journal record); caller frees. Lock held. */
json_t *job_to_json_locked(const struct job *);
/* Saves the job's record; takes the lock for the snapshot. */
void registry_save_job(struct registry *, struct job *);

int job_has_ended_locked(const struct job *);

/* Broadcasts `changed` and calls on_wake(key); lock held. */
void registry_changed_locked(struct registry *, const void *key);

/* Applies a query answer; lock held.  Returns 1 if the job ended now. */
int job_apply_task_locked(struct registry *, struct job *, const struct task_info *);

/* The fetcher's side: shows idx (built on the download, not yet verified)
 * to listings; withdraws it again (waiting until no listing uses it) when
 * verification fails.  The fetcher passes idx to its final state after. */
void registry_publish_pending(struct registry *, struct job *, struct aindex *idx,
                              int64_t size, const char *format);
void registry_withdraw_pending(struct registry *, struct job *);

/* Sets job->error (copied); lock held. */
void job_set_error_locked(struct job *, const char *msg);
/* The local file's path, archives/<project>/<job>.<format>; lock held.
 * -ENOENT when the format is not known yet (never downloaded). */
int job_archive_path_locked(struct registry *, const struct job *, char out[4096]);
/* The name of the one file a CSV or gzipped CSV export (format) shows;
 * lock held. */
void job_single_name_locked(const struct job *, const char *format, char *out, size_t cap);
/* Its modification time: the listed file's generation time, else the
 * submission; and the archive layer's name for the job's format. */
int64_t job_file_mtime_locked(const struct job *);
/* The order in which jobs of a mount were submitted (or attached), ms. */
int64_t job_submit_order_locked(const struct job *);
enum aformat job_aformat_locked(const struct job *);

/* WAF file lookup (locator.c), run by the poller: matches the project's
 * succeeded WAF jobs that have no file yet to files of the event-log list
 * (by id, then name, then time; cloud-api.md §4), claims them and queues
 * their download.  Jobs whose file is not listed yet are looked for again
 * with backoff. */
void locator_run(struct registry *, const char *project);
/* A fresh pre-signed URL for a job whose file is known (its claim), for a
 * download whose URL expired or was never had.  0, -ENOENT (no longer
 * listed), or -errno with *why (set_why). */
int locator_refresh_url(struct registry *, struct job *, char **why);

/* NULL when the plain file at path looks like the CSV text WAF exports,
 * else why not (fetcher.c; an error page served with 200 is not one). */
const char *fetcher_not_csv_text(const char *path);


/* ---- job.c ---- */
struct job *new_job(const char *id, enum cloud_service service);
void job_free(struct job *);
/* Binary search over an array of pointers to structs starting with char id[]. */
size_t find_slot(void *const *items, size_t n, const char *id, int *found);
/* -EEXIST (with *out the existing one), -ENOMEM; lock held. */
int add_project_locked(struct registry *, const char *id, time_t added_at, struct project **out);
/* Adds j (taking the registry's reference); -EEXIST, -ENOMEM; lock held. */
int add_job_locked(struct project *, struct job *);
/* Takes the job's local file as its archive when there is one; lock held. */
int adopt_local_file_locked(struct registry *, struct job *);
/* Every change of a job's archive state (lock held): logs it (debug),
 * wakes the workers when it gives them work (queued, locating) and the
 * requests waiting on the job.  why: the cause, for the log. */
void job_set_archive_locked(struct registry *, struct job *, enum archive_state,
                            const char *why);
const char *archive_state_name(enum archive_state);

/* ---- job_json.c ---- */

/* ---- poller.c, fetcher.c: their threads end (after r->stopping is set) ---- */
void poller_join(void);
void fetcher_join(void);

#endif
