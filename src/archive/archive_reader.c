/*
 * archive_reader: struct areader and its API (areader_open/close/pread/
 * error): the libarchive path, the ring of recent bytes, the synchronous
 * checkpointed path and the small-entry direct path.
 *
 * Reading: the archive is mapped read-only once per index.  The index pass
 * uses libarchive's seekable zip reader (central directory) and records,
 * for every entry, the file offset where its data starts (libarchive's
 * stream position right after the header).  A reader for entry k does not
 * walk k headers: it hands libarchive's *streamable* zip reader a view of
 * the mapping that starts at entry k's local header, so the first byte is
 * one header parse away whatever k is.  The local header is the
 * "PK\3\4" just before the data start for which libarchive, parsing from
 * there, ends its header exactly at the recorded data start; should no
 * candidate pass that check, the reader falls back to walking the archive
 * with the seekable reader (slow, but right).  All zip parsing is
 * libarchive's.
 */
#include "archive_internal.h"

/* -------------------------------------------------------------- readers */

/* Back to "nothing decoded yet" on the libarchive path. */
static void reset_stream(struct areader *r)
{
    if (r->a) {
        archive_read_free(r->a);
        r->a = NULL;
    }
    r->produced = 0;
    r->win_len = 0;
    r->end_checked = false;
}

static ssize_t reader_fail(struct areader *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ssize_t reader_fail(struct areader *r, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    for (size_t n = strlen(r->err); n > 0 && r->err[n - 1] == '\n'; n--)
        r->err[n - 1] = '\0';
    reset_stream(r);
    r->zactive = false;
    return -err;
}

int areader_open(const struct aindex *ix, const struct anode *file,
                 struct areader **out)
{
    *out = NULL;
    if (file->kind == KIND_DIR)
        return -EISDIR;
    struct areader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->ix = ix;
    r->node = file;
    if (file->kind == KIND_FILE && !(file->flags & (NODE_ENCRYPTED | NODE_PLAIN | NODE_BAD))
        && (file->size >= AINDEX_CKPT_MIN || (file->flags & NODE_GZIP))) {
        struct bigent *e = aix_find_big(ix->ck, file->data);
        if (e && e->usize == file->size)
            r->big = e;
    }
    *out = r;
    return 0;
}

void areader_close(struct areader *r)
{
    if (!r)
        return;
    aix_ra_free(r->ra); /* first: no job of r runs after this */
    if (r->big && r->zset && r->zrelease) {
        /* The input around the last position leaves our RSS. */
        const struct zset *s = r->zset;
        uint64_t hi = r->zspan + 1 < s->n ? s->pts[r->zspan + 1].in_bits >> 3 : s->stream_len;
        aix_release_map(r->ix, r->zrelease - FAULT_MARGIN,
                        (uintptr_t)(r->ix->map + r->big->data + hi) + FAULT_MARGIN);
    }
    if (r->a)
        archive_read_free(r->a);
    zran_stream_free(r->zs);
    free(r->win);
    free(r->fbuf);
    free(r);
}

const char *areader_error(const struct areader *r)
{
    return r->err[0] ? r->err : NULL;
}

/* Streamable reader on the view starting at lho; succeeds only if its
 * header ends exactly where the index saw the entry's data start. */
static struct archive *try_local_header(struct areader *r, uint64_t lho)
{
    const struct aindex *ix = r->ix;
    struct archive_entry *e;
    r->v = (struct view){.base = ix->map + lho, .len = (int64_t)(ix->map_len - lho)};
    struct archive *a;
    if (aix_open_view(&r->v, false, &a) != ARCHIVE_OK) {
        if (a)
            archive_read_free(a);
        return NULL;
    }
    int h = archive_read_next_header(a, &e);
    if ((h == ARCHIVE_OK || h == ARCHIVE_WARN)
        && archive_filter_bytes(a, 0) == (la_int64_t)(r->node->data - lho))
        return a;
    archive_read_free(a);
    return NULL;
}

/* Slow path: walk the archive with the seekable reader to the entry whose
 * data starts where the index says. */
static struct archive *walk_to_entry(struct areader *r)
{
    struct archive_entry *e;
    r->v = (struct view){.base = r->ix->map, .len = (int64_t)r->ix->map_len};
    struct archive *a;
    if (aix_open_view(&r->v, true, &a) != ARCHIVE_OK) {
        if (a)
            archive_read_free(a);
        return NULL;
    }
    for (;;) {
        int h = archive_read_next_header(a, &e);
        if (h == ARCHIVE_EOF || h == ARCHIVE_FATAL || h == ARCHIVE_RETRY)
            break;
        if (h != ARCHIVE_FAILED && archive_entry_filetype(e) == AE_IFREG
            && archive_filter_bytes(a, 0) == (la_int64_t)r->node->data)
            return a;
    }
    archive_read_free(a);
    return NULL;
}

/* Positions a fresh libarchive reader at the start of the entry's data. */
static int start_entry(struct areader *r)
{
    const struct aindex *ix = r->ix;
    uint64_t data = r->node->data;
    struct archive *a = NULL;
    reset_stream(r);
    if (data >= 30 && data <= ix->map_len) {
        uint64_t lo = data > LOCAL_HEADER_MAX ? data - LOCAL_HEADER_MAX : 0;
        int tried = 0;
        for (uint64_t p = data - 30 + 1; p-- > lo && tried < MAX_HEADER_CANDIDATES;) {
            const unsigned char *m = ix->map + p;
            if (m[0] != 'P' || m[1] != 'K' || m[2] != 3 || m[3] != 4)
                continue;
            tried++;
            if ((a = try_local_header(r, p)))
                break;
        }
    }
    if (!a)
        a = walk_to_entry(r);
    if (!a)
        return (int)reader_fail(r, EIO, "cannot position at the entry's data");
    r->a = a;
    if (!r->win) {
        r->win_cap = r->node->size < AINDEX_WINDOW ? (size_t)r->node->size : AINDEX_WINDOW;
        r->win = malloc(r->win_cap ? r->win_cap : 1);
        if (!r->win)
            return (int)reader_fail(r, ENOMEM, "out of memory");
    }
    return 0;
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

/* Decompresses up to want bytes into dst (which may be inside the ring),
 * keeping the ring and the declared size in step.  Returns bytes or
 * -errno; never 0 (running short of the declared size is an error). */
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
    uint64_t beg = s->pts[i].in_bits >> 3;
    uint64_t end = i + 1 < s->n ? (s->pts[i + 1].in_bits + 7) >> 3 : s->stream_len;
    if (zran_crc32(0, in + beg, (size_t)(end - beg)) != s->pts[i].span_crc)
        return (int)reader_fail(r, EIO, "archive data at %ju differs from when its "
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
                return reader_fail(r, EIO, "checkpoint spans inconsistent");
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
            return reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    } else {
        n = archive_read_data(r->a, dst, want);
        if (n < 0)
            return reader_fail(r, EIO, "%s", aix_archive_err(r->a));
    }
    if (n == 0)
        return reader_fail(r, EIO, "entry data ends at %ju bytes, %ju declared",
                           (uintmax_t)r->produced, (uintmax_t)r->node->size);
    if (!in_ring)
        win_store(r, r->produced, dst, (size_t)n);
    r->produced += (uint64_t)n;
    r->win_len = r->win_len + (size_t)n > r->win_cap ? r->win_cap : r->win_len + (size_t)n;
    return n;
}

/* Decompresses forward until produced == target, into the ring. */
static int advance_to(struct areader *r, uint64_t target)
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
static ssize_t serve_range(struct areader *r, uint64_t offset, uint64_t end, unsigned char *out,
                           size_t total)
{
    size_t done = 0;
    if (offset < r->produced) {
        uint64_t upto = end < r->produced ? end : r->produced;
        done = (size_t)(upto - offset);
        win_load(r, offset, out, done);
    } else if (offset > r->produced) {
        int rc = advance_to(r, offset);
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
static int check_end(struct areader *r)
{
    if (r->end_checked)
        return 0;
    unsigned char extra;
    la_ssize_t n;
    if (r->big) {
        if ((n = zran_stream_read(r->zs, &extra, 1)) < 0)
            return (int)reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    } else if ((n = archive_read_data(r->a, &extra, 1)) < 0)
        return (int)reader_fail(r, EIO, "%s", aix_archive_err(r->a));
    if (n > 0)
        return (int)reader_fail(r, EIO, "entry data longer than the declared %ju bytes",
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
            return (int)reader_fail(r, ENOMEM, "out of memory");
    }
    if (!r->zs && zran_stream_new(&r->zs))
        return (int)reader_fail(r, ENOMEM, "out of memory");
    if (zran_crc32(0, w, wl) != p->win_crc)
        return (int)reader_fail(r, EIO, "checkpoint window %u is damaged", k);
    int rc = span_verify(r, k, false);
    if (rc)
        return rc;
    struct zran_point zp = {.out = p->out, .in_bits = p->in_bits};
    if (zran_stream_start(r->zs, r->ix->map + r->big->data, s->stream_len, &zp, w, wl))
        return (int)reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
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
        char err[sizeof r->err];
        int rc = aix_ckpt_get(r->ix, r->big, true, r->discard, &s, err, sizeof err);
        if (rc)
            return (int)reader_fail(r, -rc, "%s", err);
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
    ssize_t served = serve_range(r, offset, end, out, total);
    if (served < 0)
        return served;
    size_t done = (size_t)served;
    if (end == r->node->size) {
        int rc = check_end(r);
        if (rc)
            return rc;
    }
    return (ssize_t)done;
}

/* Thread-cached decoder for direct_load (one per thread that read a small
 * deflate entry, freed with the thread). */
static pthread_key_t direct_key;
static pthread_once_t direct_once = PTHREAD_ONCE_INIT;
static bool direct_key_ok;

static void direct_key_free(void *p) { zran_stream_free(p); }
static void direct_key_init(void)
{
    direct_key_ok = pthread_key_create(&direct_key, direct_key_free) == 0;
}

/* A small direct entry, whole: stored bytes are checked in place, deflate
 * ones inflated (straight from the mapping) into r->fbuf; either way
 * exactly the declared size with the central directory's CRC-32 before a
 * byte is served.  0 or -errno. */
static int direct_load(struct areader *r)
{
    const struct anode *n = r->node;
    const unsigned char *in = r->ix->map + n->data;
    uint32_t crc = n->first_child;
    uint64_t csize = n->nchildren;
    if (n->flags & NODE_DIRECT_STORED) {
        /* direct_ok: csize == size, inside the mapping (aix_cd_record). */
        uint32_t c = zran_crc32(0, in, (size_t)n->size);
        if (c != crc)
            return (int)reader_fail(r, EIO, "CRC mismatch (data %08x, declared %08x)", c, crc);
        r->fdata = in;
        return 0;
    }
    pthread_once(&direct_once, direct_key_init);
    struct zran_stream *zs = direct_key_ok ? pthread_getspecific(direct_key) : NULL;
    bool cached = zs != NULL;
    if (!zs) {
        if (zran_stream_new(&zs))
            return (int)reader_fail(r, ENOMEM, "out of memory");
        cached = direct_key_ok && pthread_setspecific(direct_key, zs) == 0;
    }
    unsigned char *buf = r->fbuf ? r->fbuf : malloc((size_t)n->size);
    int rc = 0;
    if (!buf) {
        rc = (int)reader_fail(r, ENOMEM, "out of memory");
        goto out;
    }
    r->fbuf = buf;
    struct zran_point p0 = {0, 0};
    if (zran_stream_start(zs, in, csize, &p0, NULL, 0)) {
        rc = (int)reader_fail(r, EIO, "%s", zran_stream_error(zs));
        goto out;
    }
    uint64_t got = 0;
    while (got < n->size) {
        ssize_t k = zran_stream_read(zs, buf + got, (size_t)(n->size - got));
        if (k <= 0) {
            rc = k < 0 ? (int)reader_fail(r, EIO, "%s", zran_stream_error(zs))
                       : (int)reader_fail(r, EIO, "entry data ends at %ju bytes, %ju declared",
                                          (uintmax_t)got, (uintmax_t)n->size);
            goto out;
        }
        got += (uint64_t)k;
    }
    unsigned char extra;
    ssize_t k = zran_stream_read(zs, &extra, 1);
    if (k != 0) {
        rc = k < 0 ? (int)reader_fail(r, EIO, "%s", zran_stream_error(zs))
                   : (int)reader_fail(r, EIO, "entry data longer than the declared %ju bytes",
                                      (uintmax_t)n->size);
        goto out;
    }
    uint32_t c = zran_crc32(0, buf, (size_t)n->size);
    if (c != crc) {
        rc = (int)reader_fail(r, EIO, "CRC mismatch (data %08x, declared %08x)", c, crc);
        goto out;
    }
    r->fdata = buf;
out:
    if (!cached)
        zran_stream_free(zs);
    return rc;
}

ssize_t areader_pread(struct areader *r, void *buf, size_t size, uint64_t offset)
{
    const struct anode *node = r->node;
    unsigned char *out = buf;
    if (node->flags & NODE_BAD) {
        r->err[0] = '\0';
        return reader_fail(r, EIO, "%s", r->ix->bad_why ? r->ix->bad_why
                                         : "the gzip stream failed its checks when indexed");
    }
    if (offset >= node->size || size == 0)
        return 0;
    if (size > (size_t)SSIZE_MAX)
        size = (size_t)SSIZE_MAX;
    uint64_t end = node->size - offset < size ? node->size : offset + size;
    size_t total = (size_t)(end - offset);
    r->err[0] = '\0';

    if (node->kind == KIND_INLINE) {
        memcpy(out, r->ix->arena + node->data + offset, total);
        return (ssize_t)total;
    }
    if (node->flags & NODE_ENCRYPTED)
        return reader_fail(r, EIO, "entry is encrypted");
    if (node->flags & NODE_PLAIN) {
        const unsigned char *p = r->ix->map + node->data + offset;
        memcpy(out, p, total);
        /* Out of this process's RSS again (the page cache keeps it). */
        if (total >= 65536)
            aix_release_map(r->ix, (uintptr_t)p, (uintptr_t)(p + total));
        return (ssize_t)total;
    }
    if (r->big)
        return aix_zpread(r, out, offset, end);
    if (node->flags & NODE_GZIP)
        return reader_fail(r, EIO, "gzip stream without checkpoints");
    if (node->kind == KIND_FILE && (node->flags & (NODE_DIRECT_STORED | NODE_DIRECT_DEFLATE))) {
        if (!r->fdata) {
            int rc = direct_load(r);
            if (rc)
                return rc;
        }
        memcpy(out, r->fdata + offset, total);
        return (ssize_t)total;
    }

    bool have_window = r->a || r->end_checked;
    if (!have_window || offset < r->produced - r->win_len) {
        /* Nothing usable, or behind the window: start over. */
        int rc = start_entry(r);
        if (rc)
            return rc;
        if (node->size <= r->win_cap) {
            /* Small entry: decompress it whole and check its CRC before
             * serving a byte of it. */
            if ((rc = advance_to(r, node->size)) || (rc = check_end(r)))
                return rc;
        }
    }
    ssize_t served = serve_range(r, offset, end, out, total);
    if (served < 0)
        return served;
    size_t done = (size_t)served;
    if (end == node->size) {
        int rc = check_end(r);
        if (rc)
            return rc;
    }
    if (r->end_checked && r->a) {
        /* Everything was produced: the window serves what is left. */
        archive_read_free(r->a);
        r->a = NULL;
    }
    return (ssize_t)done;
}

