/*
 * archive_readahead: the process-wide read-ahead worker pool and the
 * per-reader span cache for checkpointed entries read sequentially
 * (aix_zpread dispatches between it and the synchronous path),
 * aindex_readahead_stats and aindex_shutdown.
 *
 * Layer: below archive_reader, never calling it; a read it cannot serve
 * goes down to the synchronous decoder.  Calls archive_decode,
 * archive_points, archive_base, zran.
 */
#include "archive_readahead.h"
#include "why.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ read-ahead
 *
 * A reader that reads a checkpointed entry sequentially gets the next
 * spans (from one point to the next) inflated ahead of it by a small
 * process-wide pool of RA_THREADS workers, into a bounded set of
 * RA_SLOTS per-reader buffers (the current span, one behind, the rest
 * ahead); reads those cover are a memcpy.  A job runs with its own decoder
 * (one per worker thread; the reader's decoder is never touched) and makes
 * the same checks as the synchronous path before its output can be
 * served: the CRC-32 of the point's window and of the span's compressed
 * bytes, the span's exact length, and at the entry's end that the stream
 * ends there.  A job that fails is dropped and the read that needs its
 * span takes the synchronous path, which checks again and reports EIO
 * (after rebuilding the points once, as usual).  A read whose span is
 * queued but not started yet inflates it on the reader's own thread
 * (with the reader's decoder) rather than waiting.
 *
 * One mutex (ra_pool.lock) guards the queue and every slot's state; the
 * buffers are written only by the job that owns a RUNNING slot and read
 * only by the reader once READY.  areader_close() unqueues its jobs and
 * waits for its running ones, so no worker touches a reader (or its
 * index) after close returns.
 */

#define RA_THREADS 2
/* Per reader: one span behind, the current one, RA_AHEAD ahead, or more
 * for large reads (twice the spans a read covers); buffers are allocated
 * as slots get used, so 128 KiB reads use 6 (~1.5 MiB). */
#define RA_SLOTS 12
#define RA_AHEAD 4

enum ra_slot_state { RA_EMPTY, RA_QUEUED, RA_RUNNING, RA_READY, RA_FAILED };

struct ra_slot {
    enum ra_slot_state state;
    uint32_t span;             /* point index */
    uint64_t beg, len;         /* output range [beg, beg + len) */
    unsigned char *buf;
    size_t cap;
    struct ra_state *ra;
    struct ra_slot *qnext;     /* queue link */
};

struct ra_state {
    const struct aindex *ix;
    struct bigent *big;
    const struct zset *zset;   /* the set the slots were made from */
    uint32_t ahead;            /* spans to keep inflated ahead */
    uint64_t last_ns;          /* when it last scheduled (monotonic) */
    struct ra_state *next;     /* every reader's, for ra_others_streaming */
    unsigned running;          /* slots RUNNING in a worker */
    pthread_cond_t done;       /* a job of this reader finished */
    struct ra_slot slot[RA_SLOTS];
};

static atomic_uint_least64_t ra_served, ra_spans, ra_failed;
static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct ra_slot *head, *tail;
    struct ra_state *readers;  /* every read-ahead state */
    pthread_t th[RA_THREADS];
    int nthreads;
    bool stop, failed;
} ra_pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

/* Inflates span k of set s of entry e into buf (len bytes), with the
 * synchronous path's checks.  0, or -EIO/-ENOMEM with *why set. */
static int ra_inflate(const struct aindex *ix, const struct bigent *e, const struct zset *s,
                      uint32_t k, uint64_t len, unsigned char *buf, struct zran_stream *zs,
                      char **why)
{
    const struct ckpt_point *p = &s->pts[k];
    const unsigned char *w = s->wins + (size_t)k * ZRAN_WINDOW;
    size_t wl = p->out < ZRAN_WINDOW ? (size_t)p->out : ZRAN_WINDOW;
    const unsigned char *in = ix->map + e->data;
    uint64_t beg, end;
    aix_span_bytes(s, k, &beg, &end);
    if (zran_crc32(0, w, wl) != p->win_crc) {
        set_why(why, "checkpoint window %u is damaged", k);
        return -EIO;
    }
    if (zran_crc32(0, in + beg, (size_t)(end - beg)) != p->span_crc) {
        set_why(why, "archive data at %ju differs from when its checkpoints "
                "were built", (uintmax_t)(e->data + beg));
        return -EIO;
    }
    struct zran_point zp = {.out = p->out, .in_bits = p->in_bits};
    if (zran_stream_start(zs, in, s->stream_len, &zp, w, wl)) {
        set_why(why, "%s", zran_stream_error(zs));
        return -EIO;
    }
    if (e->gzip)
        zran_stream_gzip(zs);
    aix_release_windows(s, k ? k - 1 : 0, k + 2); /* the decoder has its own copy now */
    int rc = 0;
    for (uint64_t done = 0; done < len;) {
        ssize_t n = zran_stream_read(zs, buf + done, (size_t)(len - done));
        if (n <= 0) {
            if (n < 0)
                set_why(why, "%s", zran_stream_error(zs));
            else
                set_why(why, "entry data ends at %ju bytes, %ju declared",
                        (uintmax_t)(p->out + done), (uintmax_t)e->usize);
            rc = -EIO;
            break;
        }
        done += (uint64_t)n;
    }
    if (!rc && k + 1 >= s->n) {
        unsigned char extra;
        ssize_t n = zran_stream_read(zs, &extra, 1);
        if (n != 0) {
            if (n < 0)
                set_why(why, "%s", zran_stream_error(zs));
            else
                set_why(why, "entry data longer than the declared %ju bytes",
                        (uintmax_t)e->usize);
            rc = -EIO;
        }
    }
    /* The span's mapped input leaves our RSS (it stays in the page cache),
     * with what fault-around mapped below it. */
    aix_release_map(ix, (uintptr_t)(in + beg) - FAULT_MARGIN, (uintptr_t)(in + end));
    return rc;
}

/* Runs a slot taken off the queue (state RUNNING, counted in running):
 * called without the lock, by a worker or by the slot's reader. */
static void ra_run(struct ra_slot *sl, struct zran_stream *zs)
{
    struct ra_state *ra = sl->ra;
    int rc = -ENOMEM;
    if (sl->cap < sl->len) {
        unsigned char *b = realloc(sl->buf, (size_t)sl->len);
        if (b) {
            sl->buf = b;
            sl->cap = (size_t)sl->len;
        }
    }
    if (zs && sl->cap >= sl->len)
        /* No message: a failed span is read again by the synchronous
         * path, which reports what it finds. */
        rc = ra_inflate(ra->ix, ra->big, ra->zset, sl->span, sl->len, sl->buf, zs, NULL);
    atomic_fetch_add_explicit(rc ? &ra_failed : &ra_spans, 1, memory_order_relaxed);
    pthread_mutex_lock(&ra_pool.lock);
    sl->state = rc ? RA_FAILED : RA_READY;
    ra->running--;
    pthread_cond_broadcast(&ra->done);
    pthread_mutex_unlock(&ra_pool.lock);
}

static void *ra_worker(void *arg)
{
    (void)arg;
    struct zran_stream *zs = NULL;
    pthread_mutex_lock(&ra_pool.lock);
    for (;;) {
        while (!ra_pool.head && !ra_pool.stop)
            pthread_cond_wait(&ra_pool.work, &ra_pool.lock);
        struct ra_slot *sl = ra_pool.head;
        if (!sl)
            break; /* stopping, queue drained */
        ra_pool.head = sl->qnext;
        if (!ra_pool.head)
            ra_pool.tail = NULL;
        sl->qnext = NULL;
        sl->state = RA_RUNNING;
        sl->ra->running++;
        pthread_mutex_unlock(&ra_pool.lock);
        if (!zs && zran_stream_new(&zs))
            zs = NULL;
        ra_run(sl, zs);
        pthread_mutex_lock(&ra_pool.lock);
    }
    pthread_mutex_unlock(&ra_pool.lock);
    zran_stream_free(zs);
    return NULL;
}

/* Starts the pool if need be.  Caller holds the lock.  false: no workers
 * (read-ahead off, reads stay synchronous). */
static bool ra_pool_up(void)
{
    if (ra_pool.nthreads || ra_pool.failed)
        return ra_pool.nthreads > 0;
    if (ra_pool.stop)
        return false;
    for (int i = 0; i < RA_THREADS; i++) {
        if (pthread_create(&ra_pool.th[i], NULL, ra_worker, NULL) != 0)
            break;
        ra_pool.nthreads++;
    }
    if (!ra_pool.nthreads)
        ra_pool.failed = true;
    return ra_pool.nthreads > 0;
}

void aindex_readahead_stats(struct aindex_ra_stats *st)
{
    st->reads_served = atomic_load(&ra_served);
    st->spans_inflated = atomic_load(&ra_spans);
    st->spans_failed = atomic_load(&ra_failed);
}

void aindex_shutdown(void)
{
    pthread_mutex_lock(&ra_pool.lock);
    int n = ra_pool.nthreads;
    ra_pool.stop = true;
    pthread_cond_broadcast(&ra_pool.work);
    pthread_mutex_unlock(&ra_pool.lock);
    for (int i = 0; i < n; i++)
        pthread_join(ra_pool.th[i], NULL);
    pthread_mutex_lock(&ra_pool.lock);
    ra_pool.nthreads = 0;
    ra_pool.stop = false; /* a later read-ahead starts the pool again */
    pthread_mutex_unlock(&ra_pool.lock);
}

/* Takes sl off the queue.  Caller holds the lock; sl is QUEUED. */
static void ra_unqueue(struct ra_slot *sl)
{
    struct ra_slot **pp = &ra_pool.head, *prev = NULL;
    while (*pp && *pp != sl) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp) {
        *pp = sl->qnext;
        if (ra_pool.tail == sl)
            ra_pool.tail = prev;
    }
    sl->qnext = NULL;
    sl->state = RA_EMPTY;
}

/* Drops every slot: unqueues the queued ones, waits for running ones.
 * Caller holds the lock. */
static void ra_drop_all_locked(struct ra_state *ra)
{
    for (int i = 0; i < RA_SLOTS; i++)
        if (ra->slot[i].state == RA_QUEUED)
            ra_unqueue(&ra->slot[i]);
    while (ra->running)
        pthread_cond_wait(&ra->done, &ra_pool.lock);
    for (int i = 0; i < RA_SLOTS; i++)
        ra->slot[i].state = RA_EMPTY;
}

void aix_ra_free(struct ra_state *ra)
{
    if (!ra)
        return;
    pthread_mutex_lock(&ra_pool.lock);
    ra_drop_all_locked(ra);
    for (struct ra_state **pp = &ra_pool.readers; *pp; pp = &(*pp)->next)
        if (*pp == ra) {
            *pp = ra->next;
            break;
        }
    pthread_mutex_unlock(&ra_pool.lock);
    for (int i = 0; i < RA_SLOTS; i++)
        free(ra->slot[i].buf);
    pthread_cond_destroy(&ra->done);
    free(ra);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether another reader streamed in the last RA_BUSY_NS: then the cores
 * are shared already and read-ahead would only add work (each stream has
 * its own thread).  Caller holds the lock. */
#define RA_BUSY_NS 50000000u
static bool ra_others_streaming(const struct ra_state *self, uint64_t now)
{
    for (const struct ra_state *o = ra_pool.readers; o; o = o->next)
        if (o != self && now - o->last_ns < RA_BUSY_NS)
            return true;
    return false;
}

static struct ra_slot *ra_find(struct ra_state *ra, uint32_t span)
{
    for (int i = 0; i < RA_SLOTS; i++)
        if (ra->slot[i].state != RA_EMPTY && ra->slot[i].span == span)
            return &ra->slot[i];
    return NULL;
}

/* After a sequential read at offset, whose run has reached end: keeps the
 * slots of spans from the one before offset's to RA_AHEAD after end's,
 * and queues the missing ones after end's. */
static void ra_schedule(struct areader *r, uint64_t offset, uint64_t end)
{
    const struct zset *s = r->zset;
    if (!s || end >= r->node->size)
        return;
    struct ra_state *ra = r->ra;
    if (ra && ra->zset != s) {
        aix_ra_free(ra); /* made from points since discarded */
        r->ra = ra = NULL;
    }
    if (!ra) {
        if (!(ra = calloc(1, sizeof *ra)))
            return;
        pthread_cond_init(&ra->done, NULL);
        ra->ix = r->ix;
        ra->big = r->big;
        ra->zset = s;
        for (int i = 0; i < RA_SLOTS; i++)
            ra->slot[i].ra = ra;
        r->ra = ra;
        pthread_mutex_lock(&ra_pool.lock);
        ra->next = ra_pool.readers;
        ra_pool.readers = ra;
        pthread_mutex_unlock(&ra_pool.lock);
    }
    uint32_t cur = aix_span_of(s, end - 1), low = aix_span_of(s, offset);
    uint64_t rlen = r->ra_prev_len, span = AINDEX_CKPT_SPAN;
    uint64_t per_read = (rlen + span - 1) / span + 1;
    uint32_t ahead = per_read * 2 > RA_AHEAD ? (uint32_t)(per_read * 2) : RA_AHEAD;
    ra->ahead = ahead > RA_SLOTS - 2 ? RA_SLOTS - 2 : ahead;
    uint64_t now = mono_ns();
    pthread_mutex_lock(&ra_pool.lock);
    ra->last_ns = now;
    /* Others streaming: keep what is inflated, queue nothing new. */
    bool more = !ra_others_streaming(ra, now);
    if (!ra_pool_up()) {
        pthread_mutex_unlock(&ra_pool.lock);
        return;
    }
    uint32_t keep = low > 0 ? low - 1 : 0;
    for (int i = 0; i < RA_SLOTS; i++) {
        struct ra_slot *sl = &ra->slot[i];
        bool stale = sl->span < keep || sl->span > cur + ra->ahead;
        if (sl->state == RA_FAILED || (stale && sl->state == RA_READY))
            sl->state = RA_EMPTY;
        else if (stale && sl->state == RA_QUEUED)
            ra_unqueue(sl);
    }
    bool queued = false;
    for (uint32_t k = cur + 1; more && k <= cur + ra->ahead && k < s->n; k++) {
        if (ra_find(ra, k))
            continue;
        struct ra_slot *sl = NULL;
        for (int i = 0; i < RA_SLOTS && !sl; i++)
            if (ra->slot[i].state == RA_EMPTY)
                sl = &ra->slot[i];
        if (!sl)
            break;
        sl->span = k;
        sl->beg = s->pts[k].out;
        sl->len = (k + 1 < s->n ? s->pts[k + 1].out : r->node->size) - sl->beg;
        sl->state = RA_QUEUED;
        sl->qnext = NULL;
        if (ra_pool.tail)
            ra_pool.tail->qnext = sl;
        else
            ra_pool.head = sl;
        ra_pool.tail = sl;
        queued = true;
    }
    if (queued)
        pthread_cond_broadcast(&ra_pool.work);
    pthread_mutex_unlock(&ra_pool.lock);
}

/* Serves [offset, end) from read-ahead slots if they cover it (waiting for
 * running jobs, running queued ones here).  Bytes served, or 0: not
 * covered (or a job failed: the caller takes the synchronous path, which
 * makes the same checks and reports the error). */
static ssize_t ra_serve(struct areader *r, unsigned char *out, uint64_t offset, uint64_t end)
{
    struct ra_state *ra = r->ra;
    if (!ra || ra->zset != r->zset)
        return 0;
    const struct zset *s = ra->zset;
    uint32_t k0 = aix_span_of(s, offset), k1 = aix_span_of(s, end - 1);
    if (k1 - k0 >= RA_SLOTS)
        return 0;
    struct ra_slot *use[RA_SLOTS];
    pthread_mutex_lock(&ra_pool.lock);
    for (uint32_t k = k0; k <= k1; k++)
        if (!ra_find(ra, k)) {
            pthread_mutex_unlock(&ra_pool.lock);
            return 0;
        }
    for (uint32_t k = k0; k <= k1; k++) {
        struct ra_slot *sl;
        while ((sl = ra_find(ra, k)) && sl->state != RA_READY) {
            if (sl->state == RA_FAILED) {
                sl->state = RA_EMPTY;
                sl = NULL;
                break;
            }
            if (sl->state == RA_QUEUED) {
                /* Not started: inflate it here rather than wait. */
                ra_unqueue(sl);
                sl->state = RA_RUNNING;
                ra->running++;
                pthread_mutex_unlock(&ra_pool.lock);
                if (!r->zs && zran_stream_new(&r->zs))
                    r->zs = NULL;
                r->zactive = false; /* its decoder is repositioned */
                r->end_checked = false;
                ra_run(sl, r->zs);
                pthread_mutex_lock(&ra_pool.lock);
            } else
                pthread_cond_wait(&ra->done, &ra_pool.lock);
        }
        if (!sl) {
            pthread_mutex_unlock(&ra_pool.lock);
            return 0;
        }
        use[k - k0] = sl;
    }
    pthread_mutex_unlock(&ra_pool.lock);
    /* READY slots are left alone by the workers and by ra_schedule (which
     * only this reader calls): copy without the lock. */
    uint64_t at = offset;
    for (uint32_t k = k0; k <= k1; k++) {
        struct ra_slot *sl = use[k - k0];
        uint64_t hi = sl->beg + sl->len < end ? sl->beg + sl->len : end;
        memcpy(out + (at - offset), sl->buf + (at - sl->beg), (size_t)(hi - at));
        at = hi;
    }
    return (ssize_t)(end - offset);
}

ssize_t aix_zpread(struct areader *r, unsigned char *out, uint64_t offset, uint64_t end)
{
    /* Sequential: this read continues the previous one, give or take the
     * reordering of parallel kernel read-ahead requests (ra_prev_end is
     * the furthest end of the current run of sequential reads). */
    uint64_t prev = r->ra_prev_end;
    bool seq = offset <= prev + 2 * AINDEX_WINDOW && offset + 2 * AINDEX_WINDOW >= prev;
    r->ra_streak = seq ? r->ra_streak + 1 : 0;
    r->ra_prev_end = seq && prev > end ? prev : end;
    r->ra_prev_len = end - offset;
    ssize_t n = ra_serve(r, out, offset, end);
    if (n == 0)
        n = aix_zpread_sync(r, out, offset, end);
    else
        atomic_fetch_add_explicit(&ra_served, 1, memory_order_relaxed);
    if (n > 0 && r->ra_streak >= 2)
        ra_schedule(r, offset, r->ra_prev_end);
    return n;
}

