/* eventlogs: the model behind each project's event-logs/ folder: every
 * file of WAF's event-log list (cloud-api.md §4) under a stable name, with
 * its exact size (storage's, learnt before any read) and its generation
 * time, remembered across remounts; and the local copy of a file's bytes,
 * fetched on first open through the fetcher threads into the same cache as
 * job files (a file a job of the mount claimed IS the job's archive: one
 * copy, one download).
 *
 * Non-blocking for the FUSE side: a call that cannot answer yet arranges
 * the work on a background thread and returns REGISTRY_WAIT with *wait_key
 * naming what it waits for (a project's list, one file, or a job); the
 * registry's on_wake(*wait_key) says when to call again (calling again
 * earlier is safe).  Keys are identities only: never dereferenced,
 * possibly stale.
 *
 *   list and lookup   answer from the model; a listing refreshes the list
 *                     first when the last refresh is older than
 *                     poll_interval (the whole list, at most
 *                     EVENTLOGS_MAX_FILES, then the sizes of new files); a
 *                     refresh that takes longer than request_timeout
 *                     answers with the previous list.
 *   open              a descriptor on the verified local copy.
 *
 * Cache layout (under cache_dir):
 *   journal/eventlogs/<project>.json   names, sizes, times of the listed files
 *   archives/<project>/event-logs/<lid>.<fmt>  local copies of files no job
 *                                      claimed (lid: "i<id>", else "h<hash>";
 *                                      ".<lid>.part" while fetching)
 * A file that leaves the list leaves the folder, and its local copy goes
 * (a job's archive stays in archives/: that is the folder for keeping). */
#ifndef HCX_EVENTLOGS_H
#define HCX_EVENTLOGS_H

#include "registry.h"

#include <jansson.h>
#include <stdint.h>

/* The most files one refresh takes from the list (the newest): 100 pages
 * of 100.  A longer list shows its newest EVENTLOGS_MAX_FILES. */
#define EVENTLOGS_MAX_FILES 10000

struct eventlogs;
struct evfile;

/* Loads what the journal remembers of every known project's folder and
 * adopts the local copies; sets r->eventlogs.  After registry_load(). */
int eventlogs_create(struct registry *, struct eventlogs **out);
/* Starts the threads that list and learn sizes (downloads run on the
 * fetcher threads).  Stop them before workers_stop() (or after: both
 * notice r->stopping); destroy after workers_stop(). */
int eventlogs_start(struct eventlogs *);
void eventlogs_stop(struct eventlogs *);
void eventlogs_destroy(struct eventlogs *);

struct eventlog_entry {
    const char *name;       /* in the listing's storage (lookup: NULL) */
    int64_t size;           /* bytes, exact */
    int64_t mtime;          /* s since the epoch: the file's generation time */
    uint64_t ino;           /* stable for a project's file, never 0 */
};
struct eventlog_listing {
    struct eventlog_entry *entries;   /* sorted by name, bytewise */
    size_t n;
    char *names;
};
/* The folder: 0 with *out (release it), REGISTRY_WAIT, -ENOENT (no such
 * project), or the errno of a list that failed when there is no earlier
 * one to show (-EACCES, -EIO, ...). */
int eventlogs_list(struct eventlogs *, const char *project, struct eventlog_listing *out,
                   const void **wait_key);
void eventlog_listing_release(struct eventlog_listing *);

/* One name: 0 with *out, -ENOENT, REGISTRY_WAIT (no list yet, or a name
 * not in a list older than poll_interval: it is listed again). */
int eventlogs_lookup(struct eventlogs *, const char *project, const char *name,
                     struct eventlog_entry *out, const void **wait_key);

/* An open file: read it with pread(fd) (or splice); size is its length. */
struct eventlog_file {
    int fd;
    int64_t size;
    struct evfile *pinned;  /* our own copy (kept from eviction), or NULL */
    struct job *job;        /* the job whose archive it is (kept from
                             * eviction while open), or NULL */
};
/* 0 with *out (release it), REGISTRY_WAIT while the copy is fetched and
 * verified, -ENOENT, -EIO (the fetch failed; tried again on an open 30 s
 * later), -ENOSPC. */
int eventlogs_open(struct eventlogs *, const char *project, const char *name,
                   struct eventlog_file *out, const void **wait_key);
void eventlogs_release(struct eventlogs *, struct eventlog_file *);

/* .stats: {"list_calls", "refreshes", "size_probes", "files_fetched",
 * "bytes_fetched", "shared_with_jobs", "handed_to_jobs", "files",
 * "cached_files", "cached_bytes", "evicted", "last_error"}. */
json_t *eventlogs_stats_json(struct eventlogs *);

#endif
