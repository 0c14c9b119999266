/*
 * archive_verify: whole-archive checks -- aindex_verify_data,
 * aindex_verify_rest, the central directory walk (aix_find_cd, aix_cd_record)
 * and aix_mark_direct (which small entries may be read straight from the
 * mapping).
 */
#include "archive_internal.h"

/* The central directory's end: offset/size/count, zip64 aware.  0 or -1. */
int aix_find_cd(const unsigned char *m, size_t len, uint64_t *off, uint64_t *count)
{
    if (len < 22)
        return -1; /* no room for the end record */
    size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > lo;) {
        if (m[p] != 'P' || m[p + 1] != 'K' || m[p + 2] != 5 || m[p + 3] != 6)
            continue;
        if (p + 22 + (size_t)le16(m + p + 20) != len)
            continue; /* comment length must reach the end exactly */
        *count = le16(m + p + 10);
        *off = le32(m + p + 16);
        if (p >= 20 && le32(m + p - 20) == 0x07064b50u) {
            uint64_t z = le64(m + p - 20 + 8);
            if (len < 56 || z > len - 56 || le32(m + z) != 0x06064b50u)
                return -1;
            *count = le64(m + z + 32);
            *off = le64(m + z + 48);
        }
        return *off < len ? 0 : -1;
    }
    return -1;
}

/* Parses the record at *p and advances *p past it; false when there is no
 * well-formed record there (the walk ends). */
bool aix_cd_record(const unsigned char *m, size_t len, uint64_t *pp, struct cdrec *r)
{
    uint64_t p = *pp;
    if (len < 46 || p > len - 46 || le32(m + p) != 0x02014b50u)
        return false;
    const unsigned char *h = m + p;
    r->flags = le16(h + 8);
    r->method = le16(h + 10);
    r->crc = le32(h + 16);
    r->csize = le32(h + 20);
    r->usize = le32(h + 24);
    r->lho = le32(h + 42);
    size_t nlen = le16(h + 28), xlen = le16(h + 30), clen = le16(h + 32);
    if (p + 46 + nlen + xlen + clen > len)
        return false;
    /* zip64 extra: the fields that are 0xFFFFFFFF, in this order. */
    const unsigned char *x = h + 46 + nlen, *xe = x + xlen;
    while (x + 4 <= xe) {
        uint16_t id = le16(x), sz = le16(x + 2);
        if (x + 4 + sz > xe)
            break;
        if (id == 1) {
            const unsigned char *f = x + 4, *fe = f + sz;
            if (r->usize == 0xFFFFFFFFu && f + 8 <= fe)
                r->usize = le64(f), f += 8;
            if (r->csize == 0xFFFFFFFFu && f + 8 <= fe)
                r->csize = le64(f), f += 8;
            if (r->lho == 0xFFFFFFFFu && f + 8 <= fe)
                r->lho = le64(f);
            break;
        }
        x += 4 + sz;
    }
    *pp = p + 46 + nlen + xlen + clen;
    r->data = UINT64_MAX;
    if (r->lho <= len - 30 && le32(m + r->lho) == 0x04034b50u) {
        uint64_t data = r->lho + 30 + le16(m + r->lho + 26) + le16(m + r->lho + 28);
        if (data <= len && r->csize <= len - data)
            r->data = data;
    }
    return true;
}

/* ---------------------------------------------------------- verification */

int aindex_verify_data(const char *path, char **why)
{
    const unsigned char *map;
    size_t len;
    if (why)
        *why = NULL;
    int rc = aix_map_file(path, &map, &len, NULL, why);
    if (rc)
        return rc;
    struct view v = {.base = map, .len = (int64_t)len};
    struct archive *a;
    struct archive_entry *e;
    uint64_t seen = 0;
    if (aix_open_view(&v, true, &a) != ARCHIVE_OK) {
        rc = !a || archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
        aix_set_why(why, "%s: not a readable zip archive: %s", path, aix_archive_err(a));
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
            aix_set_why(why, "%s: entry #%ju: unreadable header: %s", path,
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
            aix_set_why(why, "%s: entry '%s': %s", path, shown, aix_archive_err(a));
        else if (archive_entry_size_is_set(e) && got != (uint64_t)archive_entry_size(e))
            aix_set_why(why, "%s: entry '%s': %ju bytes of data, %jd declared", path, shown,
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

/* What aindex_verify_rest knows of one served entry. */
struct vent {
    uint64_t data;   /* data start (the index's) */
    uint64_t csize;  /* central directory's */
    uint32_t node;
    uint32_t crc;    /* central directory's */
    uint16_t method;
    uint8_t nrec;    /* central directory records whose data starts here (max 2) */
    bool direct;     /* the one record agrees with the index and its local header */
};

static int cmp_vent(const void *a, const void *b)
{
    const struct vent *x = a, *y = b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Whether entry v (central directory record r) can be checked straight
 * from the mapping: it must be served exactly as libarchive would serve
 * it, so its record, local header and the index must agree on method,
 * sizes and the CRC libarchive checks (local header's, or the data
 * descriptor's for entries written with one). */
static bool direct_ok(const struct aindex *ix, const struct anode *n, const struct cdrec *r)
{
    const unsigned char *m = ix->map;
    size_t len = ix->map_len;
    if ((r->method != 0 && r->method != 8) || (r->flags & 1) || r->usize != n->size
        || (r->method == 0 && r->csize != r->usize))
        return false;
    const unsigned char *lh = m + r->lho; /* valid: aix_cd_record checked it */
    uint16_t lflags = le16(lh + 6), lmethod = le16(lh + 8);
    if (lmethod != r->method || (lflags & 1))
        return false;
    if (lflags & 8) {
        uint64_t d = r->data + r->csize;
        if (d > len || len - d < 8)
            return false;
        if (le32(m + d) == 0x08074b50u)
            d += 4;
        return le32(m + d) == r->crc;
    }
    uint32_t lcs = le32(lh + 18), lus = le32(lh + 22);
    return le32(lh + 14) == r->crc && (lcs == 0xFFFFFFFFu || lcs == r->csize)
           && (lus == 0xFFFFFFFFu || lus == r->usize);
}

/* One small file node of aix_mark_direct. */
struct dcand {
    uint64_t data;
    uint32_t node;
    uint32_t crc, csize;
    uint8_t nrec, method;
    bool direct;
};

static int cmp_dcand(const void *a, const void *b)
{
    const struct dcand *x = a, *y = b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Flags the small stored/deflate files that can be read straight from the
 * mapping (NODE_DIRECT_*): exactly one central directory record starts
 * its data there, and it agrees with the index and the local header
 * (direct_ok, as aindex_verify_rest decides).  0 or -ENOMEM. */
int aix_mark_direct(struct aindex *ix)
{
    size_t nc = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_FILE && !(n->flags & NODE_ENCRYPTED) && n->size > 0
            && n->size <= AINDEX_WINDOW)
            nc++;
    }
    uint64_t cd, count;
    if (!nc || aix_find_cd(ix->map, ix->map_len, &cd, &count) != 0)
        return 0;
    struct dcand *c = calloc(nc, sizeof *c);
    if (!c)
        return -ENOMEM;
    nc = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_FILE && !(n->flags & NODE_ENCRYPTED) && n->size > 0
            && n->size <= AINDEX_WINDOW)
            c[nc++] = (struct dcand){.data = n->data, .node = i};
    }
    qsort(c, nc, sizeof *c, cmp_dcand);
    uint64_t p = cd;
    struct cdrec r;
    for (uint64_t k = 0; k < count && aix_cd_record(ix->map, ix->map_len, &p, &r); k++) {
        if (r.data == UINT64_MAX)
            continue;
        size_t lo = 0, hi = nc; /* first candidate with data >= r.data */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c[mid].data < r.data)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < nc && c[lo].data == r.data; lo++) {
            struct dcand *x = &c[lo];
            if (x->nrec++ == 0) {
                x->direct = r.csize <= UINT32_MAX && direct_ok(ix, &ix->nodes[x->node], &r);
                x->crc = r.crc;
                x->csize = (uint32_t)r.csize;
                x->method = (uint8_t)r.method;
            } else {
                x->nrec = 2;
                x->direct = false; /* two records, one data start: trust neither */
            }
        }
    }
    for (size_t i = 0; i < nc; i++) {
        if (!c[i].direct)
            continue;
        struct anode *n = &ix->nodes[c[i].node];
        n->flags |= c[i].method == 0 ? NODE_DIRECT_STORED : NODE_DIRECT_DEFLATE;
        n->first_child = c[i].crc;
        n->nchildren = c[i].csize;
    }
    free(c);
    return 0;
}

/* Reads entry n whole through the reader that serves it (libarchive):
 * size and CRC checked at its end.  0 or -errno with err set. */
static int verify_by_reader(const struct aindex *ix, const struct anode *n,
                            unsigned char *buf, size_t cap, char *err, size_t errlen)
{
    struct areader *r;
    int rc = areader_open(ix, n, &r);
    if (rc) {
        snprintf(err, errlen, "%s", strerror(-rc));
        return rc;
    }
    uint64_t off = 0;
    ssize_t got;
    while ((got = areader_pread(r, buf, cap, off)) > 0)
        off += (uint64_t)got;
    if (got < 0) {
        rc = (int)got;
        snprintf(err, errlen, "%s", areader_error(r) ? areader_error(r) : strerror(-rc));
    } else if (off != n->size) {
        rc = -EIO;
        snprintf(err, errlen, "%ju bytes of data, %ju declared", (uintmax_t)off,
                 (uintmax_t)n->size);
    }
    areader_close(r);
    return rc;
}

/* Inflates the raw deflate data of v straight from the mapping: it must
 * end exactly at size bytes with v's CRC.  0 or -errno with err set. */
static int verify_deflate(const struct aindex *ix, const struct vent *v, uint64_t size,
                          struct zran_stream *zs, unsigned char *buf, size_t cap, char *err,
                          size_t errlen)
{
    struct zran_point p0 = {0, 0};
    const unsigned char *in = ix->map + v->data;
    if (zran_stream_start(zs, in, v->csize, &p0, NULL, 0)) {
        snprintf(err, errlen, "%s", zran_stream_error(zs));
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
            snprintf(err, errlen, "%s after %ju bytes of output", zran_stream_error(zs),
                     (uintmax_t)got);
            return -EIO;
        }
        if (k == 0)
            break;
        c = zran_crc32(c, buf, (size_t)k);
        got += (uint64_t)k;
        if (got > size) {
            snprintf(err, errlen, "deflate data longer than the declared %ju bytes",
                     (uintmax_t)size);
            return -EIO;
        }
    }
    if (got != size) {
        snprintf(err, errlen, "deflate data ends at %ju bytes, %ju declared", (uintmax_t)got,
                 (uintmax_t)size);
        return -EIO;
    }
    if (c != v->crc) {
        snprintf(err, errlen, "CRC mismatch (data %08x, declared %08x)", c, v->crc);
        return -EIO;
    }
    return 0;
}

/* A large deflate entry: its points, built if need be (checking it), or
 * if they came from a sidecar, every span's compressed bytes checked
 * against the CRCs recorded when they were built (rebuilt on mismatch). */
static int verify_big(const struct aindex *ix, struct bigent *e, char *err, size_t errlen)
{
    const struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
    const struct zset *discard = NULL;
    if (s && !s->own_pts) { /* loaded, not built by this index */
        const unsigned char *in = ix->map + e->data;
        for (uint32_t i = 0; i < s->n && !discard; i++) {
            uint64_t beg = s->pts[i].in_bits >> 3;
            uint64_t end = i + 1 < s->n ? (s->pts[i + 1].in_bits + 7) >> 3 : s->stream_len;
            if (aix_crc_release(ix, 0, in + beg, end - beg) != s->pts[i].span_crc)
                discard = s;
        }
        aix_release_map(ix, (uintptr_t)in, (uintptr_t)in + s->stream_len);
        if (!discard)
            return 0;
    } else if (s)
        return 0;
    return aix_ckpt_get(ix, e, false, discard, &s, err, errlen);
}

/* aindex_verify_rest for a plain file (nothing to check) or a gzip
 * stream (its points: built, or the spans of loaded ones checked). */
static int verify_single(const struct aindex *ix, char **why)
{
    if (ix->fmt != AFORMAT_GZIP)
        return 0;
    char err[400], path[MAX_PATH_BYTES + 64];
    uint32_t fi = 0;
    for (uint32_t i = 0; i < ix->nnodes && !fi; i++)
        if (ix->nodes[i].kind == KIND_FILE)
            fi = i;
    struct bigent *e = aix_ckpt_single_entry(ix);
    int rc = -EIO;
    err[0] = '\0';
    if (!e || !fi)
        snprintf(err, sizeof err, "no gzip stream");
    else if (ix->nodes[fi].flags & NODE_BAD)
        snprintf(err, sizeof err, "%s", ix->bad_why ? ix->bad_why : e->why);
    else
        rc = verify_big(ix, e, err, sizeof err);
    if (rc) {
        if (fi)
            aix_node_path(ix, fi, path, sizeof path);
        else
            snprintf(path, sizeof path, "?");
        aix_set_why(why, "%s: file '%s': %s", ix->path, path, err);
    }
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
    struct vent *v = calloc(nv ? nv : 1, sizeof *v);
    size_t cap = AINDEX_WINDOW;
    unsigned char *buf = malloc(cap);
    struct zran_stream *zs = NULL;
    char err[400], path[MAX_PATH_BYTES + 64];
    int rc = 0;
    if (!v || !buf || zran_stream_new(&zs)) {
        rc = -ENOMEM;
        aix_set_why(why, "%s: out of memory", ix->path);
        goto out;
    }
    nv = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && !(ix->nodes[i].flags & NODE_ENCRYPTED))
            v[nv++] = (struct vent){.data = ix->nodes[i].data, .node = i};
    qsort(v, nv, sizeof *v, cmp_vent);
    /* Hard links share their target's data: check it once. */
    size_t w = 0;
    for (size_t i = 0; i < nv; i++)
        if (!w || v[w - 1].data != v[i].data
            || ix->nodes[v[w - 1].node].size != ix->nodes[v[i].node].size)
            v[w++] = v[i];
    nv = w;

    uint64_t cd, count;
    if (nv && aix_find_cd(ix->map, ix->map_len, &cd, &count) == 0) {
        uint64_t p = cd;
        struct cdrec r;
        for (uint64_t k = 0; k < count && aix_cd_record(ix->map, ix->map_len, &p, &r); k++) {
            if (r.data == UINT64_MAX)
                continue;
            size_t lo = 0, hi = nv; /* first vent with data >= r.data */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (v[mid].data < r.data)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (; lo < nv && v[lo].data == r.data; lo++) {
                struct vent *x = &v[lo];
                if (x->nrec++ == 0) {
                    x->csize = r.csize;
                    x->crc = r.crc;
                    x->method = r.method;
                    x->direct = direct_ok(ix, &ix->nodes[x->node], &r);
                } else {
                    x->nrec = 2;
                    x->direct = false; /* two records, one data start: trust neither */
                }
            }
        }
    }

    uintptr_t released = (uintptr_t)ix->map;
    for (size_t i = 0; i < nv && !rc; i++) {
        const struct vent *x = &v[i];
        const struct anode *n = &ix->nodes[x->node];
        err[0] = '\0';
        struct bigent *e = n->size >= AINDEX_CKPT_MIN ? aix_find_big(ix->ck, n->data) : NULL;
        if (e && e->usize == n->size)
            rc = verify_big(ix, e, err, sizeof err);
        else if (x->direct && x->method == 0) {
            uint32_t c = aix_crc_release(ix, 0, ix->map + x->data, n->size);
            if (c != x->crc) {
                snprintf(err, sizeof err, "CRC mismatch (data %08x, declared %08x)", c, x->crc);
                rc = -EIO;
            }
        } else if (x->direct)
            rc = verify_deflate(ix, x, n->size, zs, buf, cap, err, sizeof err);
        else if (n->size > 0)
            rc = verify_by_reader(ix, n, buf, cap, err, sizeof err);
        if (rc) {
            aix_node_path(ix, x->node, path, sizeof path);
            aix_set_why(why, "%s: entry '%s': %s", ix->path, path, err);
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
        aix_set_why(why, "%s: %ju entries cannot be read (not shown)", ix->path,
                    (uintmax_t)ix->bad_entries);
    }
out:
    zran_stream_free(zs);
    free(buf);
    free(v);
    return rc;
}
