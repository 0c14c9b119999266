/* fs/calls: see calls.h.  Three lists under one mutex: parked (waiting
 * for a wake of their key), ready (to be run again by a resume thread) and
 * slow (waiting for a pool thread).  A wake scans the parked list: it
 * holds at most one call per waiting request, and wakes are rare (a job's
 * state changed), so a scan of a few thousand pointers is cheaper than
 * keeping an index by key up to date. */
#include "calls.h"

#include "log.h"
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { W_RUNNING, W_PARKED, W_READY, W_SLOW };

struct list {
    struct fs_call *head, *tail;
    uint64_t count;
};

#define MAX_THREADS 16

struct calls {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond, slow_cond;
    struct list parked, ready, slow;
    uint64_t wake_seq;      /* a call parking after a wake it did not see runs again */
    int stopping;
    pthread_t threads[MAX_THREADS];
    unsigned nthreads;
    struct calls_stats stats;
};

/* Parked calls are all run again this often: a safety net for a wake that
 * only time brings (a listing stops waiting for a file lookup after
 * request_timeout) and against a missed wake. */
#define SWEEP_MS 500

static void list_add(struct list *l, struct fs_call *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->count++;
}

static void list_del(struct list *l, struct fs_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->count--;
}

static struct list *list_of(struct calls *q, int where)
{
    return where == W_PARKED ? &q->parked : where == W_READY ? &q->ready : &q->slow;
}

struct fs_call *call_new(fuse_req_t req, call_run_fn run, void *ctx)
{
    struct fs_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->req = req;
    c->run = run;
    c->ctx = ctx;
    return c;
}

static void call_free(struct fs_call *c)
{
    if (c->release)
        c->release(c);
    free(c->path);
    free(c->name);
    free(c);
}

/* Answers a call that will not run (again) with EINTR.  Its release
 * comes first: once answered, the process may close the file whose handle
 * the arguments point to. */
static void answer_eintr(struct fs_call *c)
{
    if (c->release)
        c->release(c);
    c->release = NULL;
    fuse_reply_err(c->req, EINTR);
    call_free(c);
}

/* The interrupt callback: libfuse calls it under the request's own lock,
 * for an INTERRUPT from the kernel (or at once, on registration, for one
 * that came earlier).  A queued call is ours to answer; a running or
 * parking one is only marked, its owner answers. */
static void on_interrupt(fuse_req_t req, void *data)
{
    (void)req; /* the call's own */
    struct fs_call *c = data;
    struct calls *q = c->queue;
    pthread_mutex_lock(&q->lock);
    if (c->where == W_RUNNING) {
        c->interrupted = 1;
        pthread_mutex_unlock(&q->lock);
        return;
    }
    list_del(list_of(q, c->where), c);
    c->where = W_RUNNING;
    q->stats.interrupts++;
    pthread_mutex_unlock(&q->lock);
    answer_eintr(c);
}

/* Takes c out of the interrupt callback's reach: returns once no callback
 * runs for it.  Then c->interrupted says whether one came. */
static void own(struct fs_call *c)
{
    fuse_req_interrupt_func(c->req, NULL, NULL);
}

/* Puts a running call (interrupt callback unregistered) in a queue. */
static void enqueue(struct calls *q, struct fs_call *c, int where)
{
    /* Registered before queueing: an interrupt that already came calls
     * on_interrupt now, which only marks the call (W_RUNNING). */
    c->queue = q;
    fuse_req_interrupt_func(c->req, on_interrupt, c);
    pthread_mutex_lock(&q->lock);
    if (c->interrupted || q->stopping) {
        pthread_mutex_unlock(&q->lock);
        own(c);
        answer_eintr(c);
        return;
    }
    if (where == W_PARKED && c->seq != q->wake_seq)
        where = W_READY; /* woken while it ran: look again */
    c->where = where;
    list_add(list_of(q, where), c);
    if (where == W_PARKED) {
        q->stats.parks++;
        if (q->parked.count > q->stats.peak_parked)
            q->stats.peak_parked = q->parked.count;
    } else {
        pthread_cond_signal(where == W_READY ? &q->ready_cond : &q->slow_cond);
    }
    pthread_mutex_unlock(&q->lock);
}

static void run(struct calls *q, struct fs_call *c)
{
    pthread_mutex_lock(&q->lock);
    c->seq = q->wake_seq;
    pthread_mutex_unlock(&q->lock);
    c->key = NULL;
    int rc = c->run(c);
    if (rc == REGISTRY_WAIT)
        enqueue(q, c, W_PARKED);
    else
        call_free(c);
}

void calls_dispatch(struct calls *q, struct fs_call *c) { run(q, c); }

void calls_dispatch_slow(struct calls *q, struct fs_call *c) { enqueue(q, c, W_SLOW); }

void calls_wake(struct calls *q, const void *key)
{
    pthread_mutex_lock(&q->lock);
    q->wake_seq++;
    q->stats.wakes++;
    int moved = 0;
    for (struct fs_call *c = q->parked.head, *next; c; c = next) {
        next = c->next;
        if (key && c->key != key)
            continue;
        list_del(&q->parked, c);
        c->where = W_READY;
        list_add(&q->ready, c);
        moved = 1;
    }
    if (moved)
        pthread_cond_broadcast(&q->ready_cond);
    pthread_mutex_unlock(&q->lock);
}

/* Takes the first call of l for this thread (lock held). */
static struct fs_call *take_locked(struct list *l)
{
    struct fs_call *c = l->head;
    list_del(l, c);
    c->where = W_RUNNING;
    return c;
}

static void run_taken(struct calls *q, struct fs_call *c)
{
    own(c);
    if (c->interrupted) {
        answer_eintr(c);
        return;
    }
    run(q, c);
}

static void *resume_main(void *arg)
{
    struct calls *q = arg;
    pthread_mutex_lock(&q->lock);
    struct timespec sweep;
    clock_gettime(CLOCK_MONOTONIC, &sweep);
    while (!q->stopping) {
        if (!q->ready.head) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long due_ms = (sweep.tv_sec - now.tv_sec) * 1000LL +
                               (sweep.tv_nsec - now.tv_nsec) / 1000000 + SWEEP_MS;
            if (due_ms <= 0) {
                sweep = now;
                while (q->parked.head) {
                    struct fs_call *c = take_locked(&q->parked);
                    c->where = W_READY;
                    list_add(&q->ready, c);
                }
                continue;
            }
            struct timespec until = now;
            until.tv_sec += due_ms / 1000;
            until.tv_nsec += (due_ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&q->ready_cond, &q->lock, &until);
            continue;
        }
        struct fs_call *c = take_locked(&q->ready);
        pthread_mutex_unlock(&q->lock);
        run_taken(q, c);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void *slow_main(void *arg)
{
    struct calls *q = arg;
    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        if (!q->slow.head) {
            pthread_cond_wait(&q->slow_cond, &q->lock);
            continue;
        }
        struct fs_call *c = take_locked(&q->slow);
        q->stats.slow_running++;
        pthread_mutex_unlock(&q->lock);
        run_taken(q, c);
        pthread_mutex_lock(&q->lock);
        q->stats.slow_running--;
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct calls *calls_new(void)
{
    struct calls *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->ready_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&q->slow_cond, NULL);
    return q;
}

int calls_start(struct calls *q, unsigned resumers, unsigned slow_workers)
{
    for (unsigned i = 0; i < resumers + slow_workers && q->nthreads < MAX_THREADS; i++) {
        int rc = pthread_create(&q->threads[q->nthreads], NULL, i < resumers ? resume_main : slow_main, q);
        if (rc) {
            log_error("cannot start a request thread: %s", strerror(rc));
            return -rc;
        }
        q->nthreads++;
    }
    return 0;
}

void calls_stop(struct calls *q)
{
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->ready_cond);
    pthread_cond_broadcast(&q->slow_cond);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    q->nthreads = 0;
    struct list *lists[] = { &q->parked, &q->ready, &q->slow };
    for (size_t i = 0; i < 3; i++)
        for (;;) {
            pthread_mutex_lock(&q->lock);
            struct fs_call *c = lists[i]->head ? take_locked(lists[i]) : NULL;
            pthread_mutex_unlock(&q->lock);
            if (!c)
                break;
            own(c);
            answer_eintr(c);
        }
}

void calls_free(struct calls *q)
{
    if (!q)
        return;
    pthread_cond_destroy(&q->ready_cond);
    pthread_cond_destroy(&q->slow_cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

void calls_get_stats(struct calls *q, struct calls_stats *out)
{
    pthread_mutex_lock(&q->lock);
    *out = q->stats;
    out->parked = q->parked.count;
    out->queued = q->ready.count;
    out->slow_queued = q->slow.count;
    pthread_mutex_unlock(&q->lock);
}
