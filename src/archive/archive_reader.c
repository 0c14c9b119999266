/*
 * archive_reader: struct areader's API (areader_open/close/pread/error):
 * picks the path of each entry -- inline symlink targets, plain files,
 * small direct entries (whole, checked, straight from the mapping),
 * checkpointed entries (through read-ahead), and libarchive for the rest.
 *
 * The libarchive path: the archive is mapped read-only once per index.
 * The index pass uses libarchive's seekable zip reader (central
 * directory) and records, for every entry, the file offset where its data
 * starts (libarchive's stream position right after the header).  A reader
 * for entry k does not walk k headers: it hands libarchive's *streamable*
 * zip reader a view of the mapping that starts at entry k's local header,
 * so the first byte is one header parse away whatever k is.  The local
 * header is the "PK\3\4" just before the data start for which libarchive,
 * parsing from there, ends its header exactly at the recorded data start;
 * should no candidate pass that check, the reader falls back to walking
 * the archive with the seekable reader (slow, but right).
 *
 * Layer: the top of the read path; calls archive_readahead, archive_decode,
 * archive_points, archive_base, zran.
 */
#include "archive_readahead.h"
#include "archive_zip.h"

#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER_CANDIDATES 16

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
    return r->last_error[0] ? r->last_error : NULL;
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
    aix_reset_stream(r);
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
        return (int)aix_reader_fail(r, EIO, "cannot position at the entry's data");
    r->a = a;
    if (!r->win) {
        r->win_cap = r->node->size < AINDEX_WINDOW ? (size_t)r->node->size : AINDEX_WINDOW;
        r->win = malloc(r->win_cap ? r->win_cap : 1);
        if (!r->win)
            return (int)aix_reader_fail(r, ENOMEM, "out of memory");
    }
    return 0;
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
        /* aix_zip_direct_ok: csize == size, inside the mapping. */
        uint32_t c = zran_crc32(0, in, (size_t)n->size);
        if (c != crc)
            return (int)aix_reader_fail(r, EIO, "CRC mismatch (data %08x, declared %08x)", c, crc);
        r->fdata = in;
        return 0;
    }
    pthread_once(&direct_once, direct_key_init);
    struct zran_stream *zs = direct_key_ok ? pthread_getspecific(direct_key) : NULL;
    bool cached = zs != NULL;
    if (!zs) {
        if (zran_stream_new(&zs))
            return (int)aix_reader_fail(r, ENOMEM, "out of memory");
        cached = direct_key_ok && pthread_setspecific(direct_key, zs) == 0;
    }
    unsigned char *buf = r->fbuf ? r->fbuf : malloc((size_t)n->size);
    int rc = 0;
    if (!buf) {
        rc = (int)aix_reader_fail(r, ENOMEM, "out of memory");
        goto out;
    }
    r->fbuf = buf;
    struct zran_point p0 = {0, 0};
    if (zran_stream_start(zs, in, csize, &p0, NULL, 0)) {
        rc = (int)aix_reader_fail(r, EIO, "%s", zran_stream_error(zs));
        goto out;
    }
    uint64_t got = 0;
    while (got < n->size) {
        ssize_t k = zran_stream_read(zs, buf + got, (size_t)(n->size - got));
        if (k <= 0) {
            rc = k < 0 ? (int)aix_reader_fail(r, EIO, "%s", zran_stream_error(zs))
                       : (int)aix_reader_fail(r, EIO, "entry data ends at %ju bytes, %ju declared",
                                          (uintmax_t)got, (uintmax_t)n->size);
            goto out;
        }
        got += (uint64_t)k;
    }
    unsigned char extra;
    ssize_t k = zran_stream_read(zs, &extra, 1);
    if (k != 0) {
        rc = k < 0 ? (int)aix_reader_fail(r, EIO, "%s", zran_stream_error(zs))
                   : (int)aix_reader_fail(r, EIO, "entry data longer than the declared %ju bytes",
                                      (uintmax_t)n->size);
        goto out;
    }
    uint32_t c = zran_crc32(0, buf, (size_t)n->size);
    if (c != crc) {
        rc = (int)aix_reader_fail(r, EIO, "CRC mismatch (data %08x, declared %08x)", c, crc);
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
        r->last_error[0] = '\0';
        return aix_reader_fail(r, EIO, "%s", r->ix->bad_why ? r->ix->bad_why
                                         : "the gzip stream failed its checks when indexed");
    }
    if (offset >= node->size || size == 0)
        return 0;
    if (size > (size_t)SSIZE_MAX)
        size = (size_t)SSIZE_MAX;
    uint64_t end = node->size - offset < size ? node->size : offset + size;
    size_t total = (size_t)(end - offset);
    r->last_error[0] = '\0';

    if (node->kind == KIND_INLINE) {
        memcpy(out, r->ix->arena + node->data + offset, total);
        return (ssize_t)total;
    }
    if (node->flags & NODE_ENCRYPTED)
        return aix_reader_fail(r, EIO, "entry is encrypted");
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
        return aix_reader_fail(r, EIO, "gzip stream without checkpoints");
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
            if ((rc = aix_advance_to(r, node->size)) || (rc = aix_check_end(r)))
                return rc;
        }
    }
    ssize_t served = aix_serve_range(r, offset, end, out, total);
    if (served < 0)
        return served;
    size_t done = (size_t)served;
    if (end == node->size) {
        int rc = aix_check_end(r);
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

