/*
 * archive_verify: whole-archive checks -- aindex_verify_data (every entry
 * through libarchive, on a path) and aindex_verify_rest (every entry an
 * index serves, each by the cheapest path that checks it).
 *
 * Layer: the top of src/archive; calls archive_reader (public API),
 * archive_ckpt, archive_points, archive_zip, archive_names, archive_nodes,
 * archive_base, zran.  Nothing in src/archive calls it.
 */
#include "archive_ckpt.h"
#include "why.h"
#include "archive_names.h"
#include "archive_zip.h"

#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int aindex_verify_data(const char *path, char **why)
{
    const unsigned char *map;
    size_t len;
    if (why)
        *why = NULL;
    int rc = aix_map_file(path, false, &map, &len, NULL, why);
    if (rc)
        return rc;
    struct view v = {.base = map, .len = (int64_t)len};
    struct archive *a;
    struct archive_entry *e;
    uint64_t seen = 0;
    if (aix_open_view(&v, true, &a) != ARCHIVE_OK) {
        rc = !a || archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
        set_why(why, "%s: not a readable zip archive: %s", path, aix_archive_err(a));
        if (a)
            archive_read_free(a);
        munmap((void *)map, len);
        return rc;
    }
    for (;;) {
        int h = archive_read_next_header(a, &e);
        if (h == ARCHIVE_EOF)
            break;
        seen++;
        if (h < ARCHIVE_WARN) {
            set_why(why, "%s: entry #%ju: unreadable header: %s", path,
                    (uintmax_t)seen, aix_archive_err(a));
            rc = -EIO;
            break;
        }
        /* Encrypted entries are never served, so there is nothing to vouch
         * for; symlink targets are read (and checked) with the header. */
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_is_data_encrypted(e))
            continue;
        const void *buf;
        size_t n;
        la_int64_t off;
        uint64_t got = 0;
        int r;
        /* libarchive reports bad CRCs and sizes as ARCHIVE_WARN. */
        while ((r = archive_read_data_block(a, &buf, &n, &off)) == ARCHIVE_OK)
            got += n;
        struct clean_path *cp = malloc(sizeof *cp);
        const char *shown = "?";
        if (cp && archive_entry_pathname(e)) {
            aix_clean_name(archive_entry_pathname(e), NULL, cp);
            shown = cp->buf;
        }
        if (r != ARCHIVE_EOF)
            set_why(why, "%s: entry '%s': %s", path, shown, aix_archive_err(a));
        else if (archive_entry_size_is_set(e) && got != (uint64_t)archive_entry_size(e))
            set_why(why, "%s: entry '%s': %ju bytes of data, %jd declared", path, shown,
                    (uintmax_t)got, (intmax_t)archive_entry_size(e));
        else
            r = 0;
        free(cp);
        if (r) {
            rc = -EIO;
            break;
        }
    }
    archive_read_free(a);
    munmap((void *)map, len);
    return rc;
}

/* Reads entry n whole through the reader that serves it (libarchive):
 * size and CRC checked at its end.  0 or -errno with *err set. */
static int verify_by_reader(const struct aindex *ix, const struct anode *n,
                            unsigned char *buf, size_t cap, char **err)
{
    struct areader *r;
    int rc = areader_open(ix, n, &r);
    if (rc) {
        set_why(err, "%s", strerror(-rc));
        return rc;
    }
    uint64_t off = 0;
    ssize_t got;
    while ((got = areader_pread(r, buf, cap, off)) > 0)
        off += (uint64_t)got;
    if (got < 0) {
        rc = (int)got;
        set_why(err, "%s", areader_error(r) ? areader_error(r) : strerror(-rc));
    } else if (off != n->size) {
        rc = -EIO;
        set_why(err, "%ju bytes of data, %ju declared", (uintmax_t)off,
                (uintmax_t)n->size);
    }
    areader_close(r);
    return rc;
}

/* Inflates the raw deflate data of v straight from the mapping: it must
 * end exactly at size bytes with v's CRC.  0 or -errno with *err set. */
static int verify_deflate(const struct aindex *ix, const struct cdmatch *v, uint64_t size,
                          struct zran_stream *zs, unsigned char *buf, size_t cap, char **err)
{
    struct zran_point p0 = {0, 0};
    const unsigned char *in = ix->map + v->data;
    if (zran_stream_start(zs, in, v->rec.csize, &p0, NULL, 0)) {
        set_why(err, "%s", zran_stream_error(zs));
        return -EIO;
    }
    uint64_t got = 0, released = 0;
    uint32_t c = 0;
    for (;;) {
        uint64_t used = zran_stream_consumed(zs);
        if (used >= released + RELEASE_STEP) { /* consumed input: out of our RSS */
            aix_release_map(ix, (uintptr_t)(in + released), (uintptr_t)(in + used));
            released = used;
        }
        ssize_t k = zran_stream_read(zs, buf, cap);
        if (k < 0) {
            set_why(err, "%s after %ju bytes of output", zran_stream_error(zs),
                    (uintmax_t)got);
            return -EIO;
        }
        if (k == 0)
            break;
        c = zran_crc32(c, buf, (size_t)k);
        got += (uint64_t)k;
        if (got > size) {
            set_why(err, "deflate data longer than the declared %ju bytes",
                    (uintmax_t)size);
            return -EIO;
        }
    }
    if (got != size) {
        set_why(err, "deflate data ends at %ju bytes, %ju declared", (uintmax_t)got,
                (uintmax_t)size);
        return -EIO;
    }
    if (c != v->rec.crc) {
        set_why(err, "CRC mismatch (data %08x, declared %08x)", c, v->rec.crc);
        return -EIO;
    }
    return 0;
}

/* A large deflate entry: its points, built if need be (checking it), or
 * if they came from a sidecar, every span's compressed bytes checked
 * against the CRCs recorded when they were built (rebuilt on mismatch). */
static int verify_big(const struct aindex *ix, struct bigent *e, char **err)
{
    const struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
    const struct zset *discard = NULL;
    if (s && !s->own_pts) { /* loaded, not built by this index */
        const unsigned char *in = ix->map + e->data;
        for (uint32_t i = 0; i < s->n && !discard; i++) {
            uint64_t beg, end;
            aix_span_bytes(s, i, &beg, &end);
            if (aix_crc_release(ix, 0, in + beg, end - beg) != s->pts[i].span_crc)
                discard = s;
        }
        aix_release_map(ix, (uintptr_t)in, (uintptr_t)in + s->stream_len);
        if (!discard)
            return 0;
    } else if (s)
        return 0;
    return aix_ckpt_get(ix, e, false, discard, &s, err);
}

/* aindex_verify_rest for a plain file (nothing to check) or a gzip
 * stream (its points: built, or the spans of loaded ones checked). */
static int verify_single(const struct aindex *ix, char **why)
{
    if (ix->fmt != AFORMAT_GZIP)
        return 0;
    char *err = NULL, path[MAX_PATH_BYTES + 64];
    uint32_t fi = 0;
    for (uint32_t i = 0; i < ix->nnodes && !fi; i++)
        if (ix->nodes[i].kind == KIND_FILE)
            fi = i;
    struct bigent *e = aix_ckpt_single_entry(ix);
    int rc = -EIO;
    if (!e || !fi)
        set_why(&err, "no gzip stream");
    else if (ix->nodes[fi].flags & NODE_BAD)
        set_why(&err, "%s", ix->bad_why ? ix->bad_why : e->why);
    else
        rc = verify_big(ix, e, &err);
    if (rc) {
        if (fi)
            aix_node_path(ix, fi, path, sizeof path);
        else
            snprintf(path, sizeof path, "?");
        set_why(why, "%s: file '%s': %s", ix->path, path, err ? err : strerror(-rc));
    }
    free(err);
    return rc;
}

int aindex_verify_rest(const struct aindex *ix, char **why)
{
    if (why)
        *why = NULL;
    if (ix->fmt != AFORMAT_ZIP)
        return verify_single(ix, why);
    size_t nv = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && !(ix->nodes[i].flags & NODE_ENCRYPTED))
            nv++;
    struct cdmatch *v = calloc(nv ? nv : 1, sizeof *v);
    size_t cap = AINDEX_WINDOW;
    unsigned char *buf = malloc(cap);
    struct zran_stream *zs = NULL;
    char *err = NULL, path[MAX_PATH_BYTES + 64];
    int rc = 0;
    if (!v || !buf || zran_stream_new(&zs)) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", ix->path);
        goto out;
    }
    nv = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && !(ix->nodes[i].flags & NODE_ENCRYPTED))
            v[nv++] = (struct cdmatch){.data = ix->nodes[i].data, .node = i};
    aix_cd_match(ix->map, ix->map_len, v, nv);
    /* Hard links share their target's data: check it once. */
    size_t w = 0;
    for (size_t i = 0; i < nv; i++)
        if (!w || v[w - 1].data != v[i].data
            || ix->nodes[v[w - 1].node].size != ix->nodes[v[i].node].size)
            v[w++] = v[i];
    nv = w;

    uintptr_t released = (uintptr_t)ix->map;
    for (size_t i = 0; i < nv && !rc; i++) {
        const struct cdmatch *x = &v[i];
        const struct anode *n = &ix->nodes[x->node];
        bool direct = x->nrec == 1 && aix_zip_direct_ok(ix->map, ix->map_len, n->size, &x->rec);
        struct bigent *e = n->size >= AINDEX_CKPT_MIN ? aix_find_big(ix->ck, n->data) : NULL;
        if (e && e->usize == n->size)
            rc = verify_big(ix, e, &err);
        else if (direct && x->rec.method == 0) {
            uint32_t c = aix_crc_release(ix, 0, ix->map + x->data, n->size);
            if (c != x->rec.crc) {
                set_why(&err, "CRC mismatch (data %08x, declared %08x)", c, x->rec.crc);
                rc = -EIO;
            }
        } else if (direct)
            rc = verify_deflate(ix, x, n->size, zs, buf, cap, &err);
        else if (n->size > 0)
            rc = verify_by_reader(ix, n, buf, cap, &err);
        if (rc) {
            aix_node_path(ix, x->node, path, sizeof path);
            set_why(why, "%s: entry '%s': %s", ix->path, path, err ? err : strerror(-rc));
            break;
        }
        /* What was checked leaves this process's RSS (page cache keeps it). */
        uintptr_t upto = (uintptr_t)ix->map + (uintptr_t)x->data;
        if (upto - released >= (uintptr_t)RELEASE_STEP) {
            aix_release_map(ix, released, upto);
            released = upto;
        }
    }
    if (!rc)
        aix_release_map(ix, released, (uintptr_t)ix->map + ix->map_len);
    if (!rc && ix->bad_entries) {
        rc = -EIO;
        set_why(why, "%s: %ju entries cannot be read (not shown)", ix->path,
                (uintmax_t)ix->bad_entries);
    }
out:
    free(err);
    zran_stream_free(zs);
    free(buf);
    free(v);
    return rc;
}
