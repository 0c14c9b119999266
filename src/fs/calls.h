/* fs/calls: requests that wait without holding a thread.
 *
 * A request that must wait (a `.wait` read, a listing or open of a job
 * whose file is still being fetched) is parked: its fuse_req_t is kept with
 * the operation's arguments, the libfuse worker thread returns to the
 * kernel at once, and the call is run again when the registry says the job
 * changed (calls_wake) — by a resume thread, which answers it.  Ctrl-C on
 * the waiting process reaches on_interrupt and answers EINTR.  Calls that
 * block on the network once started (a submit, an attach) run on a small
 * pool of their own, so that they never hold a libfuse worker either.
 *
 * The interrupt callback is registered only while a call sits in a queue,
 * never while it runs: whoever takes it out of the queue owns it. */
#ifndef HCX_FS_CALLS_H
#define HCX_FS_CALLS_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

struct fs_call;

/* Answers the request and returns 0; or, when the answer is not ready,
 * sets call->key to what it waits for and returns REGISTRY_WAIT
 * (registry.h).  Runs again, from the start, after a wake of that key. */
typedef int (*call_run_fn)(struct fs_call *);

struct fs_call {
    fuse_req_t req;
    call_run_fn run;
    void (*release)(struct fs_call *);  /* frees what the arguments hold; may be NULL */
    const void *key;
    void *ctx;                          /* the filesystem (fs_internal.h) */
    /* The operation's arguments (each operation uses some). */
    char *path;
    char *name;
    fuse_ino_t ino;
    size_t size;
    off_t off;
    int plus;
    struct fuse_file_info fi;
    void *handle;
    void *data;
    /* Owned by calls.c. */
    struct calls *queue;
    struct fs_call *prev, *next;
    int where;
    int interrupted;
    uint64_t seq;
};

struct calls;

struct calls_stats {
    uint64_t parked, queued, slow_queued, slow_running;  /* now */
    uint64_t peak_parked, parks, wakes, interrupts;       /* since the mount */
};

struct calls *calls_new(void);
/* Starts the resume threads and the pool for blocking calls. */
int calls_start(struct calls *, unsigned resumers, unsigned slow_workers);
/* Joins the threads and answers every call still waiting with EINTR
 * (the mount is going away). */
void calls_stop(struct calls *);
void calls_free(struct calls *);

/* A zeroed call for req; NULL when out of memory (then the caller answers
 * ENOMEM). */
struct fs_call *call_new(fuse_req_t req, call_run_fn run, void *ctx);
/* Runs the call in this thread; parks it when it must wait.  Consumes it. */
void calls_dispatch(struct calls *, struct fs_call *);
/* Queues a call that blocks (network) for the pool.  Consumes it. */
void calls_dispatch_slow(struct calls *, struct fs_call *);
/* key changed: its parked calls run again (NULL: every call). */
void calls_wake(struct calls *, const void *key);

void calls_get_stats(struct calls *, struct calls_stats *);

#endif
