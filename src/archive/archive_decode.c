/*
 * archive_decode: decoding an entry for a reader.  Two decoders share the
 * ring of recent output: libarchive's (positioned by the reader) and, for
 * checkpointed entries, zran's, started at the nearest point at or before
 * the offset wanted, with every window and span CRC checked before a byte
 * of that span is served.
 *
 * Layer: below archive_readahead and archive_reader (never calls them);
 * calls archive_ckpt (aix_ckpt_get), archive_points, archive_base, zran.
 */
#include "archive_decode.h"
#include "why.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aix_reset_stream(struct areader *r)
{
    if (r->a) {
        archive_read_free(r->a);
        r->a = NULL;
    }
    r->produced = 0;
    r->win_len = 0;
    r->end_checked = false;
}

ssize_t aix_reader_fail(struct areader *r, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    va_end(ap);
    why_tidy(r->last_error);
    aix_reset_stream(r);
    r->zactive = false;
    return -err;
}

static void win_store(struct areader *r, uint64_t off, const unsigned char *src, size_t n)
{
    if (n >= r->win_cap) {
        src += n - r->win_cap;
        off += n - r->win_cap;
        n = r->win_cap;
    }
    size_t at = (size_t)(off % r->win_cap);
    size_t first = n < r->win_cap - at ? n : r->win_cap - at;
    memcpy(r->win + at, src, first);
    memcpy(r->win, src + first, n - first);
}

static void win_load(const struct areader *r, uint64_t off, unsigned char *dst, size_t n)
{
    size_t at = (size_t)(off % r->win_cap);
    size_t first = n < r->win_cap - at ? n : r->win_cap - at;
    memcpy(dst, r->win + at, first);
    memcpy(dst + first, r->win, n - first);
}

/* The end of span i in the entry's output. */
static uint64_t span_end(const struct areader *r, uint32_t i)
{
    const struct zset *s = r->zset;
    return i + 1 < s->n ? s->pts[i + 1].out : r->node->size;
}

/* Checks the compressed bytes of span i against the CRC taken when the
 * points were built; then output up to the span's end may be served. */
static int span_verify(struct areader *r, uint32_t i, bool sequential)
{
    const struct zset *s = r->zset;
    const unsigned char *in = r->ix->map + r->big->data;
    uint64_t beg, end;
    aix_span_bytes(s, i, &beg, &end);
    if (zran_crc32(0, in + beg, (size_t)(end - beg)) != s->pts[i].span_crc)
        return (int)aix_reader_fail(r, EIO, "archive data at %ju differs from when its "
                                "checkpoints were built",
                                (uintmax_t)(r->big->data + beg));
    r->zspan = i;
    r->zverified = span_end(r, i);
    /* Streaming on: the mapped compressed bytes of spans behind are not
     * needed by this reader any more; drop them from its RSS (they stay in
     * the page cache). */
    uintptr_t lo = (uintptr_t)in + (uintptr_t)(beg > 65536 ? beg - 65536 : 0);
    if (sequential && r->zrelease && lo > r->zrelease)
        aix_release_map(r->ix, r->zrelease - FAULT_MARGIN, lo);
    r->zrelease = lo;
    /* The same for the checkpoint windows behind, which the read-ahead
     * workers' starts (and fault-around) left mapped. */
    if (sequential && i > r->wrelease) {
        aix_release_windows(s, r->wrelease, i + 1);
        r->wrelease = i;
    }
    return 0;
}

/* Decompresses up to want bytes into dst (which may be inside the ring),
 * keeping the ring and the declared size in step.  Returns bytes or
 * -errno; never 0 (running short of the declared size is an error). */
static ssize_t produce(struct areader *r, unsigned char *dst, size_t want, bool in_ring)
{
    uint64_t left = r->node->size - r->produced;
    if (want > left)
        want = (size_t)left;
    la_ssize_t n;
    if (r->big) {
        if (r->produced >= r->zverified) {
            const struct zset *s = r->zset;
            if (r->zspan + 1 >= s->n)
                return aix_reader_fail(r, EIO, "checkpoint spans inconsistent");
            int rc = span_verify(r, r->zspan + 1, true);
            if (rc) {
                r->discard = s; /* the next read rebuilds the points */
                return rc;
            }
        }
        if (want > r->zverified - r->produced)
            want = (size_t)(r->zverified - r->produced);
        n = zran_stream_read(r->zs, dst, want);
        if (n < 0)
            return aix_reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    } else {
        n = archive_read_data(r->a, dst, want);
        if (n < 0)
            return aix_reader_fail(r, EIO, "%s", aix_archive_err(r->a));
    }
    if (n == 0)
        return aix_reader_fail(r, EIO, "entry data ends at %ju bytes, %ju declared",
                           (uintmax_t)r->produced, (uintmax_t)r->node->size);
    if (!in_ring)
        win_store(r, r->produced, dst, (size_t)n);
    r->produced += (uint64_t)n;
    r->win_len = r->win_len + (size_t)n > r->win_cap ? r->win_cap : r->win_len + (size_t)n;
    return n;
}

/* Decompresses forward until produced == target, into the ring. */
int aix_advance_to(struct areader *r, uint64_t target)
{
    while (r->produced < target) {
        size_t at = (size_t)(r->produced % r->win_cap);
        uint64_t want = target - r->produced;
        if (want > r->win_cap - at)
            want = r->win_cap - at;
        ssize_t n = produce(r, r->win + at, (size_t)want, true);
        if (n < 0)
            return (int)n;
    }
    return 0;
}

/* Serves [offset, end) of total bytes: what the window still holds, then
 * fresh output of the decoder (skipping forward first if need be).  Bytes
 * or -errno. */
ssize_t aix_serve_range(struct areader *r, uint64_t offset, uint64_t end, unsigned char *out,
                           size_t total)
{
    size_t done = 0;
    if (offset < r->produced) {
        uint64_t upto = end < r->produced ? end : r->produced;
        done = (size_t)(upto - offset);
        win_load(r, offset, out, done);
    } else if (offset > r->produced) {
        int rc = aix_advance_to(r, offset);
        if (rc)
            return rc;
    }
    while (done < total) {
        ssize_t n = produce(r, out + done, total - done, false);
        if (n < 0)
            return n;
        done += (size_t)n;
    }
    return (ssize_t)done;
}


/* At the declared end: the stream must end here, with a good CRC. */
int aix_check_end(struct areader *r)
{
    if (r->end_checked)
        return 0;
    unsigned char extra;
    la_ssize_t n;
    if (r->big) {
        if ((n = zran_stream_read(r->zs, &extra, 1)) < 0)
            return (int)aix_reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    } else if ((n = archive_read_data(r->a, &extra, 1)) < 0)
        return (int)aix_reader_fail(r, EIO, "%s", aix_archive_err(r->a));
    if (n > 0)
        return (int)aix_reader_fail(r, EIO, "entry data longer than the declared %ju bytes",
                                (uintmax_t)r->node->size);
    r->end_checked = true;
    return 0;
}

/* Positions the decoder at point k of the current set.  0 or -errno. */
static int zstart(struct areader *r, uint32_t k)
{
    const struct zset *s = r->zset;
    const struct ckpt_point *p = &s->pts[k];
    const unsigned char *w = s->wins + (size_t)k * ZRAN_WINDOW;
    size_t wl = p->out < ZRAN_WINDOW ? (size_t)p->out : ZRAN_WINDOW;
    if (r->zactive && r->zrelease) {
        /* Leaving a position: its mapped input leaves this reader's RSS
         * (the pages stay in the page cache). */
        const struct zset *o = r->zset == s ? s : NULL;
        uint64_t hi = o && r->zspan + 1 < o->n ? (o->pts[r->zspan + 1].in_bits >> 3) + 65536
                                               : 0;
        uintptr_t end = (uintptr_t)(r->ix->map + r->big->data) + (uintptr_t)hi;
        if (end > r->zrelease)
            aix_release_map(r->ix, r->zrelease - FAULT_MARGIN, end);
    }
    r->zactive = false;
    r->end_checked = false;
    r->win_len = 0;
    r->produced = p->out;
    if (!r->win) {
        r->win_cap = AINDEX_WINDOW;
        if (!(r->win = malloc(r->win_cap)))
            return (int)aix_reader_fail(r, ENOMEM, "out of memory");
    }
    if (!r->zs && zran_stream_new(&r->zs))
        return (int)aix_reader_fail(r, ENOMEM, "out of memory");
    if (zran_crc32(0, w, wl) != p->win_crc)
        return (int)aix_reader_fail(r, EIO, "checkpoint window %u is damaged", k);
    int rc = span_verify(r, k, false);
    if (rc)
        return rc;
    struct zran_point zp = {.out = p->out, .in_bits = p->in_bits};
    if (zran_stream_start(r->zs, r->ix->map + r->big->data, s->stream_len, &zp, w, wl))
        return (int)aix_reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    if (r->big->gzip)
        zran_stream_gzip(r->zs);
    aix_release_windows(s, k ? k - 1 : 0, k + 2); /* the decoder has its own copy now */
    r->produced = p->out;
    r->zactive = true;
    return 0;
}

/* Makes r->zset the entry's current points (building them if need be) and
 * positions the decoder at the last point at or before offset.  A set that
 * fails its checks (damaged sidecar) is rebuilt once. */
static int zseek(struct areader *r, uint64_t offset)
{
    for (int attempt = 0;; attempt++) {
        const struct zset *s;
        char *why = NULL;
        int rc = aix_ckpt_get(r->ix, r->big, true, r->discard, &s, &why);
        if (rc) {
            rc = (int)aix_reader_fail(r, -rc, "%s", why ? why : strerror(-rc));
            free(why);
            return rc;
        }
        r->zset = s;
        uint32_t lo = aix_span_of(s, offset);
        if (r->zactive && offset >= r->produced - r->win_len
            && s->pts[lo].out <= r->produced)
            return 0; /* forward from here is no longer than from a point */
        if ((rc = zstart(r, lo)) != -EIO || attempt > 0)
            return rc;
        r->discard = s;
    }
}

ssize_t aix_zpread_sync(struct areader *r, unsigned char *out, uint64_t offset,
                        uint64_t end)
{
    size_t total = (size_t)(end - offset);
    bool ring_hit = (r->zactive || r->end_checked) && r->win_len
                    && offset >= r->produced - r->win_len && end <= r->produced;
    if (!ring_hit) {
        int rc = zseek(r, offset);
        if (rc)
            return rc;
    }
    ssize_t served = aix_serve_range(r, offset, end, out, total);
    if (served < 0)
        return served;
    size_t done = (size_t)served;
    if (end == r->node->size) {
        int rc = aix_check_end(r);
        if (rc)
            return rc;
    }
    return (ssize_t)done;
}
