/* eventlogs_internal: the folder model shared by eventlogs.c (list, names,
 * sizes, journal, API), eventlogs_model.c (the files and their names),
 * eventlogs_fetch.c (opening, download, hand-over to jobs) and
 * eventlogs_local.c (where copies live, adoption, eviction).  Everything here is guarded by the
 * registry's lock unless said otherwise. */
#ifndef HCX_EVENTLOGS_INTERNAL_H
#define HCX_EVENTLOGS_INTERNAL_H

#include "eventlogs.h"
#include "job.h"

#include <limits.h>
#include <stdatomic.h>

enum ev_local { EV_REMOTE, EV_QUEUED, EV_FETCHING, EV_READY, EV_FAILED };
enum ev_size { SIZE_UNKNOWN, SIZE_QUEUED, SIZE_PROBING, SIZE_KNOWN, SIZE_FAILED };

struct evproject;

struct evfile {
    struct evproject *proj;
    char key[514];            /* "i<id>", else "o<obsname>": identity in the list */
    char id[65], obsname[512], filename[256];
    char name[256];           /* shown; assigned once */
    char lid[66];             /* local file stem */
    uint64_t ino;
    int64_t timestamp;        /* ms; -1 unknown */
    int64_t size;             /* -1 unknown */
    enum ev_size sizing;
    int probe_fails;          /* size probes failed in a row */
    double probe_retry_at;    /* CLOCK_MONOTONIC: a failed probe waits till then */
    char *url;                /* memory only: a bearer credential that expires */
    int gone;                 /* left the list: out of the project, freed with refs */
    enum ev_local local;
    char format[8];           /* of the local copy */
    int64_t local_bytes;
    time_t last_used, failed_at;
    int fail_errno;
    uint64_t fetch_seq;
    int users;                /* open descriptors on our copy */
    int refs;                 /* the project's (until gone) + workers' */
    atomic_int cancel;        /* stops its download (gone, unmount) */
};

struct evproject {
    char id[65];
    struct evfile **files;    /* sorted by key */
    struct evfile **names;    /* the same files, sorted by name */
    size_t n, cap, names_cap;
    int have_list;            /* listed (or remembered) at least once */
    int list_arrived;         /* a list call of the first refresh answered: its
                               * files show as their sizes arrive (a first
                               * listing waits for the probes at most
                               * request_timeout, like a later one) */
    int refresh_wanted, refreshing, probes_pending;
    double fresh_at;          /* CLOCK_MONOTONIC: when the last refresh ended (or
                               * failed); the next is due poll_interval later */
    double refresh_started;
    double stale_deadline;    /* a listing waiting since then answers the old list; 0 none */
    time_t listed_at;         /* wall clock of the last complete refresh (journal) */
    int last_errno;           /* of the last refresh, 0 when it worked */
    char error[512];
    int dirty;                /* to save in the journal */
    int probe_failures;       /* in this refresh (logged once) */
};

struct eventlogs {
    struct registry *r;
    pthread_cond_t work;      /* with r->lock: wakes the list/size threads */
    pthread_mutex_t save_lock;  /* one journal write of a project at a time */
    struct evproject **projects;
    size_t nprojects, cap;
    struct evfile **probes;   /* FIFO of files whose size is to be learnt */
    size_t probe_head, nprobes, probe_cap;
    struct cache_client client;   /* r->cache_client */
    /* The files the registry's fetcher threads are fetching now: a file
     * that left the list and came back is a new evfile with the same local
     * stem, and its fetch waits until the old one has let its .part go. */
    struct evfile *fetching[REGISTRY_FETCHERS];
    pthread_t threads[4];
    int nthreads;
    int stopping;
    char dir[PATH_MAX];       /* journal/eventlogs */
    /* .stats */
    atomic_ullong list_calls, refreshes, size_probes, files_fetched, bytes_fetched,
        shared_with_jobs, handed_to_jobs, evicted;
    char last_error[512];
};

/* eventlogs_model.c (lock held unless said otherwise) */
/* The project's folder, made on first use when the registry knows the
 * project; NULL otherwise. */
struct evproject *ev_project_locked(struct eventlogs *, const char *id);
void ev_unref_locked(struct eventlogs *, struct evfile *);
/* A new file for a listed item (one reference, no name yet). */
struct evfile *ev_new_file(const struct event_file *, const char *project);
/* Gives f its name (-EEXIST when no form of it is free). */
int ev_assign_name(struct evproject *, struct evfile *);
/* Into both sorted views; f must have its name. */
int ev_add_file(struct evproject *, struct evfile *);
/* Binary search of a view (by key, or by name) of n files. */
size_t ev_find_slot(struct evfile *const *view, size_t n, const char *s, int by_name, int *found);
void ev_remove_sorted(struct evfile **view, size_t n, const struct evfile *f, int by_name);
struct evfile *ev_by_name_locked(struct evproject *, const char *name);
/* The WAF job of the mount that claimed f, or NULL. */
struct job *ev_claimed_by_locked(struct eventlogs *, const struct evfile *);
/* The journal record: loaded at create (lock held, single-threaded), saved
 * when the project changed (lock NOT held). */
void ev_load_project(struct eventlogs *, const char *id);
void ev_save_project(struct eventlogs *, struct evproject *);

/* eventlogs_fetch.c */
/* The fetcher's and cache_max's side (struct cache_client, registry.h).
 * A file queued for download, marked fetching and referenced; lock held. */
struct evfile *eventlogs_next_queued_locked(struct eventlogs *);
/* Downloads, verifies and stores it, then drops the reference. */
void eventlogs_fetch(struct eventlogs *, struct evfile *);
/* For a WAF job about to download its claimed file: if the folder has a
 * local copy of that file (waiting for one being fetched), moves it to the
 * job's partial path and returns its size: the job verifies it instead of
 * downloading.  -1 when there is none. */
int64_t eventlogs_hand_over(struct eventlogs *, struct job *, const char *part);

/* eventlogs_local.c */
/* The bytes our copies hold, and whether one may go (not open, not the
 * newest fetched): then *lru is its last use.  Lock held. */
int eventlogs_cache_locked(struct eventlogs *, uint64_t *bytes, time_t *lru);
/* Evicts the least recently used copy that may go (takes the locks);
 * 1 when one went. */
int eventlogs_evict_lru(struct eventlogs *);
/* archives/<project>/event-logs (created when create is set); 0 or -errno. */
int ev_local_dir(struct eventlogs *, const char *project, int create, char out[PATH_MAX]);
/* Paths of f's copy (format) and of its download. */
int ev_local_path(struct eventlogs *, const char *project, const struct evfile *,
                  const char *format, char out[PATH_MAX]);
int ev_part_path(struct eventlogs *, const char *project, const struct evfile *,
                 char out[PATH_MAX]);
/* Adopts the copies found in the project's local directory (at load);
 * removes those of files the folder no longer has.  Lock NOT held. */
void ev_adopt_local(struct eventlogs *, struct evproject *);
/* Paging the list for one file's fresh URL (an expired one, or none after a
 * remount): 0, -ENOENT (not listed), -errno. */
int ev_find_url(struct eventlogs *, struct evfile *, char **why);

#endif
