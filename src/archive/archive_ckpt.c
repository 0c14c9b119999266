/*
 * archive_ckpt: checkpoints of large deflate entries -- finding them,
 * building their access points (zran glue), the lazily built per-entry
 * point sets, the "<zip>.ckpt" sidecar (load and write) and
 * aindex_build_checkpoints / aindex_checkpoint_stats.
 */
#include "archive_internal.h"

/* ---------------------------------------------------------- checkpoints
 *
 * Large deflate entries (at least AINDEX_CKPT_MIN bytes, method 8, not
 * encrypted) are read without libarchive: their raw deflate stream is
 * inflated straight from the mapping, starting at the nearest access point
 * (zran.h) at or before the offset asked for.
 *
 * Where the stream is: the central directory is walked once (only when the
 * index has such entries) for method, flags, CRC and sizes (zip64 extra
 * fields included); an entry takes this path only if its local header's
 * data start equals the data start libarchive reported and its sizes agree
 * with the tree's.  Anything else keeps the libarchive reader.
 *
 * Points are built by inflating the whole entry once (zran_build), which
 * also checks its size and CRC-32 against the central directory: an entry
 * with points is known good; one whose build failed reads EIO.  Each point
 * carries the CRC-32 of its 32 KiB window and of the compressed bytes of
 * its span (up to the next point): a reader checks the window before
 * resuming from it and each span's compressed bytes before serving output
 * from that span, so a sidecar from another archive or bytes changed on
 * disk since the build are caught before a byte is served.
 *
 * Sidecar "<zip>.ckpt" (native byte order, local cache only):
 *   header (page 0): magic, version, the zip's size and mtime (ns), the
 *     span, the offset/length/CRC-32 of the table, CRC-32 of the header;
 *   windows: per entry, npoints slots of 32 KiB (page aligned);
 *   table: struct side_entry[n], then every entry's struct ckpt_point[].
 * Loading validates everything but the windows (checked at use) and maps
 * the file: windows cost page cache, not heap.  A sidecar that fails any
 * check is ignored (and replaced by the next build).  Writes are atomic:
 * temporary file, fsync, rename.
 *
 * Entries without points get them on their first read (lazily, one build
 * per entry; other readers of that entry wait); the windows of such a
 * build go to an unlinked temporary file beside the zip (mapped), then the
 * sidecar is rewritten with every entry built so far.
 */

struct mapping {
    void *addr;
    size_t len;
    struct mapping *next;
};

struct ckpt_state {
    struct bigent *big; /* sorted by data */
    size_t nbig;
    pthread_mutex_t lock; /* sets/maps lists, sidecar writes */
    struct zset *sets;
    struct mapping *maps;
    atomic_uint built, loaded;
};

#define SIDE_MAGIC "HCXCKPT\1"
#define SIDE_VERSION 1u
#define SIDE_PAGE ((uint64_t)4096)

struct side_header {
    char magic[8];
    uint32_t version;
    uint32_t nentries;
    uint64_t zip_size;
    int64_t mtime_sec;
    int64_t mtime_nsec;
    uint64_t span;
    uint64_t table_off;
    uint64_t table_len;
    uint32_t window;
    uint32_t point_size;
    uint32_t table_crc;
    uint32_t header_crc;
};

struct side_entry {
    uint64_t data, csize, usize;
    uint32_t crc;
    uint32_t npoints;
    uint64_t stream_len;
    uint64_t points_off; /* within the table */
    uint64_t wins_off;   /* within the file */
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_bigent(const void *a, const void *b)
{
    return cmp_u64(&((const struct bigent *)a)->data, &((const struct bigent *)b)->data);
}

struct bigent *aix_find_big(const struct ckpt_state *ck, uint64_t data)
{
    size_t lo = 0, hi = ck ? ck->nbig : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ck->big[mid].data == data)
            return &ck->big[mid];
        if (ck->big[mid].data < data)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Finds the large deflate entries: nodes of at least AINDEX_CKPT_MIN
 * bytes whose central directory record and local header agree with the
 * index.  Leaves ix->ck NULL when there are none. */
int aix_ckpt_find_entries(struct aindex *ix)
{
    uint64_t *cand = NULL;
    size_t ncand = 0, cap = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind != KIND_FILE || (n->flags & NODE_ENCRYPTED) || n->size < AINDEX_CKPT_MIN)
            continue;
        if (ncand == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(cand, cap * sizeof *p);
            if (!p) {
                free(cand);
                return -ENOMEM;
            }
            cand = p;
        }
        cand[ncand++] = n->data;
    }
    if (!ncand)
        return 0;
    qsort(cand, ncand, sizeof *cand, cmp_u64);

    const unsigned char *m = ix->map;
    size_t len = ix->map_len;
    uint64_t cd, count;
    struct bigent *big = NULL;
    size_t nbig = 0;
    if (aix_find_cd(m, len, &cd, &count) == 0) {
        big = calloc(ncand, sizeof *big);
        if (!big) {
            free(cand);
            return -ENOMEM;
        }
        uint64_t p = cd;
        struct cdrec rec;
        for (uint64_t k = 0; k < count && nbig < ncand && aix_cd_record(m, len, &p, &rec); k++) {
            uint64_t data = rec.data, csize = rec.csize, usize = rec.usize;
            uint32_t crc = rec.crc;
            if (rec.method != 8 || (rec.flags & 1) || usize < AINDEX_CKPT_MIN
                || data == UINT64_MAX || !bsearch(&data, cand, ncand, sizeof *cand, cmp_u64))
                continue;
            struct bigent *e = &big[nbig++];
            e->data = data;
            e->csize = csize;
            e->usize = usize;
            e->crc = crc;
        }
    }
    free(cand);
    if (!nbig) {
        free(big);
        return 0;
    }
    qsort(big, nbig, sizeof *big, cmp_bigent);
    /* Two records claiming one data start: trust neither. */
    size_t w = 0;
    for (size_t i = 0; i < nbig; i++) {
        bool dup = (i > 0 && big[i - 1].data == big[i].data)
                   || (i + 1 < nbig && big[i + 1].data == big[i].data);
        if (!dup)
            big[w++] = big[i];
    }
    nbig = w;
    struct ckpt_state *ck = calloc(1, sizeof *ck);
    if (!ck) {
        free(big);
        return -ENOMEM;
    }
    ck->big = big;
    ck->nbig = nbig;
    pthread_mutex_init(&ck->lock, NULL);
    for (size_t i = 0; i < nbig; i++) {
        pthread_mutex_init(&big[i].lock, NULL);
        atomic_init(&big[i].set, NULL);
        atomic_init(&big[i].bad, 0);
    }
    ix->ck = ck;
    return 0;
}

void aix_ckpt_free(struct ckpt_state *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->nbig; i++)
        pthread_mutex_destroy(&ck->big[i].lock);
    free(ck->big);
    for (struct zset *s = ck->sets, *nx; s; s = nx) {
        nx = s->next;
        free(s->own_pts);
        free(s);
    }
    for (struct mapping *mp = ck->maps, *nx; mp; mp = nx) {
        nx = mp->next;
        munmap(mp->addr, mp->len);
        free(mp);
    }
    pthread_mutex_destroy(&ck->lock);
    free(ck);
}

static char *sidecar_path(const char *zip)
{
    char *s;
    return asprintf(&s, "%s.ckpt", zip) < 0 ? NULL : s;
}

static uint32_t header_crc(const struct side_header *h)
{
    struct side_header c = *h;
    c.header_crc = 0;
    return zran_crc32(0, (const unsigned char *)&c, sizeof c);
}

/* Checks the points of one sidecar entry against the archive. */
static bool points_valid(const struct bigent *e, const struct side_entry *se,
                         const struct ckpt_point *pts)
{
    if (se->npoints == 0 || pts[0].out != 0 || pts[0].in_bits != 0
        || se->stream_len == 0 || se->stream_len > e->csize)
        return false;
    for (uint32_t i = 1; i < se->npoints; i++)
        if (pts[i].out <= pts[i - 1].out || pts[i].out >= e->usize
            || pts[i].in_bits <= pts[i - 1].in_bits || pts[i].in_bits >= se->stream_len * 8)
            return false;
    return true;
}

/* Loads "<zip>.ckpt" if it matches this archive; silently ignores it
 * otherwise. */
void aix_ckpt_load(struct aindex *ix)
{
    struct ckpt_state *ck = ix->ck;
    char *path = sidecar_path(ix->path);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    if (fd < 0)
        return;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
        && (uint64_t)st.st_size >= SIDE_PAGE)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    size_t flen = (size_t)st.st_size;
    const unsigned char *m = map;
    struct side_header h;
    memcpy(&h, m, sizeof h);
    bool ok = memcmp(h.magic, SIDE_MAGIC, 8) == 0 && h.version == SIDE_VERSION
              && h.header_crc == header_crc(&h) && h.zip_size == (uint64_t)ix->st.st_size
              && h.mtime_sec == (int64_t)ix->st.st_mtim.tv_sec
              && h.mtime_nsec == (int64_t)ix->st.st_mtim.tv_nsec
              && h.window == ZRAN_WINDOW && h.point_size == sizeof(struct ckpt_point)
              && h.table_off >= SIDE_PAGE && h.table_off <= flen
              && h.table_len <= flen - h.table_off
              && (uint64_t)h.nentries * sizeof(struct side_entry) <= h.table_len
              && h.table_off % 8 == 0
              && zran_crc32(0, m + h.table_off, (size_t)h.table_len) == h.table_crc;
    struct zset *sets = NULL;
    struct bigent *adopted = NULL;
    for (uint32_t i = 0; ok && i < h.nentries; i++) {
        const struct side_entry *se =
            (const struct side_entry *)(m + h.table_off) + i;
        struct bigent *e = aix_find_big(ck, se->data);
        bool adopt = e && e->measure && !adopted;
        if (!e || e->csize != se->csize
            || (!adopt && (e->usize != se->usize || e->crc != se->crc)))
            continue; /* not an entry of this archive (any more) */
        if (adopt) { /* a gzip stream: the sidecar knows its size and CRC */
            e->usize = se->usize;
            e->crc = se->crc;
            e->measure = false;
            adopted = e;
        }
        uint64_t plen = (uint64_t)se->npoints * sizeof(struct ckpt_point);
        if (se->points_off % 8 || se->points_off > h.table_len
            || plen > h.table_len - se->points_off || se->wins_off % SIDE_PAGE
            || se->wins_off > flen
            || (uint64_t)se->npoints * ZRAN_WINDOW > flen - se->wins_off) {
            ok = false;
            break;
        }
        const struct ckpt_point *pts =
            (const struct ckpt_point *)(m + h.table_off + se->points_off);
        if (!points_valid(e, se, pts)) {
            ok = false;
            break;
        }
        if (atomic_load(&e->set))
            continue;
        struct zset *zs = calloc(1, sizeof *zs);
        if (!zs) {
            ok = false;
            break;
        }
        zs->n = se->npoints;
        zs->stream_len = se->stream_len;
        zs->pts = pts;
        zs->wins = m + se->wins_off;
        zs->wins_shared = true;
        zs->owner = e;
        zs->next = sets;
        sets = zs;
    }
    struct mapping *mp = ok && sets ? malloc(sizeof *mp) : NULL;
    if (!mp) {
        for (struct zset *s = sets, *nx; s; s = nx) {
            nx = s->next;
            free(s);
        }
        if (adopted) {
            adopted->usize = UINT64_MAX;
            adopted->crc = 0;
            adopted->measure = true;
        }
        munmap(map, flen);
        return;
    }
    /* Publish (aindex_open is still single-threaded here). */
    for (struct zset *s = sets, *nx; s; s = nx) {
        nx = s->next;
        s->next = ck->sets;
        ck->sets = s;
        if (!atomic_load(&s->owner->set)) {
            atomic_store(&s->owner->set, s);
            atomic_fetch_add(&ck->loaded, 1);
        }
    }
    mp->addr = map;
    mp->len = flen;
    mp->next = ck->maps;
    ck->maps = mp;
}

/* Drops [lo, hi) of the zip mapping from this process's page tables (not
 * from the page cache: the mapping is shared and read-only, the next
 * access faults the same bytes back in).  Clamped to whole pages inside the
 * mapping: never touches any other memory. */
uint32_t aix_span_of(const struct zset *s, uint64_t offset)
{
    uint32_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->pts[mid].out <= offset)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void aix_release_windows(const struct zset *s, uint32_t from, uint32_t to)
{
    if (!s->wins_shared || to > s->n)
        to = s->wins_shared ? s->n : 0;
    if (from < to) /* whole windows: each starts on a page of the shared file mapping */
        madvise((void *)(uintptr_t)(s->wins + (size_t)from * ZRAN_WINDOW),
                (size_t)(to - from) * ZRAN_WINDOW, MADV_DONTNEED);
}

void aix_release_map(const struct aindex *ix, uintptr_t lo, uintptr_t hi)
{
    aix_release_range(ix->map, ix->map_len, lo, hi);
}

/* CRC-32 of mapped bytes [p, p + n), released from our RSS as it goes. */
uint32_t aix_crc_release(const struct aindex *ix, uint32_t crc, const unsigned char *p,
                         uint64_t n)
{
    while (n > 0) {
        uint64_t k = n > RELEASE_STEP ? RELEASE_STEP : n;
        crc = zran_crc32(crc, p, (size_t)k);
        aix_release_map(ix, (uintptr_t)p, (uintptr_t)(p + k));
        p += k;
        n -= k;
    }
    return crc;
}

static void fsync_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

static uint64_t page_up(uint64_t x) { return (x + SIDE_PAGE - 1) / SIDE_PAGE * SIDE_PAGE; }

/* A sidecar being written: the temporary file and where each entry's
 * windows go. */
struct side_plan {
    int fd;
    char *tmp;                 /* its name, removed unless renamed */
    uint64_t *woff;            /* per bigent: start of its window region */
    uint32_t *slots;           /* per bigent: windows the region holds */
    const struct zset **placed; /* per bigent: set whose windows are there */
    uint64_t wend;             /* end of the window regions */
};

static void plan_free(struct side_plan *pl)
{
    if (pl->fd >= 0)
        close(pl->fd);
    if (pl->tmp) {
        unlink(pl->tmp);
        free(pl->tmp);
    }
    free(pl->woff);
    free(pl->slots);
    free((void *)pl->placed);
    memset(pl, 0, sizeof *pl);
    pl->fd = -1;
}

/* Creates "<dest>.tmp.XXXXXX" with a region of slots[i] windows per entry
 * (slots: min_slots[i], or the current set's size if larger).  0 or
 * -errno. */
static int plan_open(const struct aindex *ix, const char *dest, const size_t *min_slots,
                     struct side_plan *pl)
{
    const struct ckpt_state *ck = ix->ck;
    memset(pl, 0, sizeof *pl);
    pl->fd = -1;
    pl->woff = calloc(ck->nbig, sizeof *pl->woff);
    pl->slots = calloc(ck->nbig, sizeof *pl->slots);
    pl->placed = calloc(ck->nbig, sizeof *pl->placed);
    if (!pl->woff || !pl->slots || !pl->placed || asprintf(&pl->tmp, "%s.tmp.XXXXXX", dest) < 0) {
        pl->tmp = NULL;
        plan_free(pl);
        return -ENOMEM;
    }
    uint64_t off = SIDE_PAGE;
    for (size_t i = 0; i < ck->nbig; i++) {
        const struct zset *s = atomic_load(&ck->big[i].set);
        size_t k = min_slots ? min_slots[i] : 0;
        if (s && s->n > k)
            k = s->n;
        pl->slots[i] = (uint32_t)k;
        pl->woff[i] = off;
        off += page_up((uint64_t)k * ZRAN_WINDOW);
    }
    pl->wend = off;
    if ((pl->fd = mkstemp(pl->tmp)) < 0) {
        int e = errno;
        free(pl->tmp);
        pl->tmp = NULL;
        plan_free(pl);
        return -e;
    }
    return 0;
}

/* Writes the table and header of the plan's file for every entry that has
 * points now, copies the windows that are not in place, and renames it to
 * dest (durably).  Caller holds ck->lock.  0 or -errno. */
static int plan_commit(const struct aindex *ix, struct side_plan *pl, const char *dest)
{
    const struct ckpt_state *ck = ix->ck;
    const struct zset **snap = calloc(ck->nbig ? ck->nbig : 1, sizeof *snap);
    if (!snap)
        return -ENOMEM;
    size_t n = 0;
    uint64_t npts = 0;
    for (size_t i = 0; i < ck->nbig; i++) {
        const struct zset *s = atomic_load(&ck->big[i].set);
        if (s && s->n <= pl->slots[i]) { /* one snapshot: sets may change meanwhile */
            snap[i] = s;
            n++;
            npts += s->n;
        }
    }
    int rc = 0;
    unsigned char *table = NULL;
    size_t tlen = n * sizeof(struct side_entry) + (size_t)npts * sizeof(struct ckpt_point);
    if (!n)
        goto out;
    if (!(table = calloc(1, tlen))) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t poff = n * sizeof(struct side_entry);
    size_t k = 0;
    for (size_t i = 0; i < ck->nbig; i++) {
        const struct bigent *e = &ck->big[i];
        const struct zset *s = snap[i];
        if (!s)
            continue;
        struct side_entry se = {
            .data = e->data, .csize = e->csize, .usize = e->usize, .crc = e->crc,
            .npoints = s->n, .stream_len = s->stream_len, .points_off = poff,
            .wins_off = pl->woff[i],
        };
        memcpy(table + k++ * sizeof se, &se, sizeof se);
        memcpy(table + poff, s->pts, (size_t)s->n * sizeof *s->pts);
        poff += (uint64_t)s->n * sizeof *s->pts;
        if (pl->placed[i] == s)
            continue; /* built straight into this file */
        size_t wlen = (size_t)s->n * ZRAN_WINDOW;
        for (size_t done = 0; done < wlen;) {
            size_t step = wlen - done > RELEASE_STEP ? (size_t)RELEASE_STEP : wlen - done;
            ssize_t w = pwrite(pl->fd, s->wins + done, step, (off_t)(pl->woff[i] + done));
            if (w < 0) {
                rc = -errno;
                goto out;
            }
            /* Copied windows leave our RSS as we go (shared file mapping:
             * the page cache keeps them). */
            if (s->wins_shared && w > 0) {
                uintptr_t lo = (uintptr_t)(s->wins + done) & ~(uintptr_t)4095;
                uintptr_t hi = ((uintptr_t)(s->wins + done + (size_t)w)) & ~(uintptr_t)4095;
                if (hi > lo)
                    madvise((void *)lo, hi - lo, MADV_DONTNEED);
            }
            done += (size_t)w;
        }
        if (s->wins_shared)
            madvise((void *)(uintptr_t)s->wins, wlen, MADV_DONTNEED);
    }
    struct side_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SIDE_MAGIC, 8);
    h.version = SIDE_VERSION;
    h.nentries = (uint32_t)n;
    h.zip_size = (uint64_t)ix->st.st_size;
    h.mtime_sec = (int64_t)ix->st.st_mtim.tv_sec;
    h.mtime_nsec = (int64_t)ix->st.st_mtim.tv_nsec;
    h.span = AINDEX_CKPT_SPAN;
    h.table_off = pl->wend;
    h.table_len = tlen;
    h.window = ZRAN_WINDOW;
    h.point_size = sizeof(struct ckpt_point);
    h.table_crc = zran_crc32(0, table, tlen);
    h.header_crc = header_crc(&h);
    unsigned char page[SIDE_PAGE];
    memset(page, 0, sizeof page);
    memcpy(page, &h, sizeof h);
    errno = 0;
    if (pwrite(pl->fd, table, tlen, (off_t)pl->wend) != (ssize_t)tlen
        || pwrite(pl->fd, page, sizeof page, 0) != (ssize_t)sizeof page) {
        rc = errno ? -errno : -ENOSPC;
        goto out;
    }
    if (fsync(pl->fd) != 0) {
        rc = -errno;
        goto out;
    }
    if (rename(pl->tmp, dest) != 0) {
        rc = -errno;
        goto out;
    }
    free(pl->tmp);
    pl->tmp = NULL;
    fsync_parent(dest); /* the rename itself */
out:
    free(table);
    free((void *)snap);
    return rc;
}

/* Writes "dest" atomically with every entry that has points.  Caller
 * holds ck->lock.  0 or -errno. */
static int ckpt_write(const struct aindex *ix, const char *dest)
{
    bool any = false;
    for (size_t i = 0; i < ix->ck->nbig && !any; i++)
        any = atomic_load(&ix->ck->big[i].set) != NULL;
    if (!any)
        return 0;
    struct side_plan pl;
    int rc = plan_open(ix, dest, NULL, &pl);
    if (rc == 0)
        rc = plan_commit(ix, &pl, dest);
    plan_free(&pl);
    return rc;
}

struct build_ctx {
    const struct aindex *ix;
    const unsigned char *in; /* the entry's data (mapped) */
    uint64_t released;       /* input below this left our RSS */
    struct ckpt_point *pts;
    size_t n, max;
    int fd;              /* windows go to this file at base (not read back), or */
    off_t base;
    unsigned char *wins; /* to these max slots of anonymous memory */
    bool grow;           /* size not known: pts and wins grow (no sink) */
};

static int on_point(void *c, const struct zran_point *p, const unsigned char *w, size_t wl)
{
    struct build_ctx *b = c;
    if (b->n == b->max && !b->grow)
        return -EIO; /* more points than the entry's size allows */
    if (b->n == b->max) {
        size_t nmax = b->max * 2;
        struct ckpt_point *np = realloc(b->pts, nmax * sizeof *np);
        if (!np)
            return -ENOMEM;
        b->pts = np;
        if (b->fd < 0) {
            void *w = mremap(b->wins, b->max * ZRAN_WINDOW, nmax * ZRAN_WINDOW, MREMAP_MAYMOVE);
            if (w == MAP_FAILED)
                return -ENOMEM;
            b->wins = w;
        }
        b->max = nmax;
    }
    b->pts[b->n] = (struct ckpt_point){
        .out = p->out, .in_bits = p->in_bits, .win_crc = zran_crc32(0, w, wl),
    };
    if (b->n) { /* the previous span is complete: its compressed bytes' CRC */
        uint64_t beg = b->pts[b->n - 1].in_bits >> 3, end = (p->in_bits + 7) >> 3;
        b->pts[b->n - 1].span_crc = zran_crc32(0, b->in + beg, (size_t)(end - beg));
    }
    if (b->fd >= 0) {
        for (size_t done = 0; done < wl;) {
            ssize_t k = pwrite(b->fd, w + done, wl - done,
                               b->base + (off_t)(b->n * ZRAN_WINDOW + done));
            if (k <= 0)
                return -ENOMEM; /* out of space: no points for now */
            done += (size_t)k;
        }
    } else
        memcpy(b->wins + b->n * ZRAN_WINDOW, w, wl);
    b->n++;
    return 0;
}

/* Window storage for a build: an unlinked file beside the zip, written
 * with pwrite and mapped read-only afterwards (page cache, not heap, and
 * only the windows a reader uses count in its RSS); else anonymous
 * memory.  Returns the fd or -1 with *anon set (or NULL: no memory). */
static int windows_file(const struct aindex *ix, size_t len, unsigned char **anon)
{
    char *dir = strdup(ix->path);
    int fd = -1;
    *anon = NULL;
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        fd = open(slash ? dir : ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        free(dir);
    }
    if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *anon = p == MAP_FAILED ? NULL : p;
    return -1;
}

/* Spacing of the points: HCX_CKPT_SPAN (bytes, >= 64 KiB) overrides it
 * (benchmarks). */
static uint64_t ckpt_span(void)
{
    const char *env = getenv("HCX_CKPT_SPAN");
    return env && strtoull(env, NULL, 0) >= 65536 ? strtoull(env, NULL, 0) : AINDEX_CKPT_SPAN;
}

/* Most points a build of e can make (window slots to reserve). */
static size_t ckpt_max_points(const struct bigent *e)
{
    return (size_t)(e->usize / ckpt_span()) + 2;
}

/* The build consumed its input up to k (called every few MiB): out of
 * our RSS. */
static void on_consumed(void *c, uint64_t k)
{
    struct build_ctx *b = c;
    aix_release_map(b->ix, (uintptr_t)(b->in + b->released) - FAULT_MARGIN, (uintptr_t)(b->in + k));
    b->released = k;
}

/* Where a build puts its windows: a region of a file that is already
 * mapped (the sidecar being written by aindex_build_checkpoints), with
 * room for ckpt_max_points(e) slots. */
struct win_sink {
    int fd;
    off_t off;                /* region start in the file */
    const unsigned char *map; /* the region, mapped read-only */
};

/* What a build of a stream of unknown size (e->measure, no sink)
 * measured. */
struct measure {
    uint64_t stream_len, produced;
};

/* Inflates entry e once and makes its points.  0, -EIO (corrupt: e->why
 * says why) or -ENOMEM.  Caller holds e->lock.  sink: where the windows go
 * (NULL: a file of the build's own).  e->measure: its size and CRC are
 * measured (ms) instead of checked, the points and windows grow as the
 * output does. */
static int ckpt_build(const struct aindex *ix, struct bigent *e, const struct win_sink *sink,
                      struct zset **out, struct measure *ms)
{
    struct ckpt_state *ck = ix->ck;
    uint64_t span = ckpt_span();
    bool grow = e->measure;
    struct build_ctx b = {.max = grow ? 64 : ckpt_max_points(e), .grow = grow};
    size_t wlen = b.max * ZRAN_WINDOW;
    if (grow && (sink || !ms)) {
        snprintf(e->why, sizeof e->why, "stream of unknown size");
        return -EINVAL;
    }
    struct zset *s = calloc(1, sizeof *s);
    struct mapping *mp = sink ? NULL : malloc(sizeof *mp);
    b.pts = malloc(b.max * sizeof *b.pts);
    if (sink) {
        b.fd = sink->fd;
        b.base = sink->off;
    } else
        b.fd = windows_file(ix, wlen, &b.wins);
    if (!s || (!sink && !mp) || !b.pts || (b.fd < 0 && !b.wins)) {
        free(s);
        free(mp);
        free(b.pts);
        if (b.fd >= 0 && !sink)
            close(b.fd);
        if (b.wins)
            munmap(b.wins, wlen);
        snprintf(e->why, sizeof e->why, "out of memory");
        return -ENOMEM;
    }
    uint64_t stream_len = 0;
    char err[160];
    const unsigned char *in = ix->map + e->data;
    b.ix = ix;
    b.in = in;
    int rc;
    if (grow) {
        uint64_t usize = 0;
        uint32_t crc = 0;
        rc = zran_build_gzip(in, e->csize, true, &usize, &crc, span, on_point, on_consumed, &b,
                             &stream_len, err, sizeof err);
        ms->produced = usize;
        if (rc == 0) {
            /* A point at the very end (after a last non-final block that
             * made no output) has no span: dropped. */
            while (b.n > 1 && b.pts[b.n - 1].out >= usize)
                b.n--;
            e->usize = usize;
            e->crc = crc;
            e->measure = false;
            ms->stream_len = stream_len;
        }
        wlen = b.max * ZRAN_WINDOW; /* what the windows hold now */
        if (rc == 0 && b.fd >= 0 && ftruncate(b.fd, (off_t)wlen) != 0) {
            snprintf(err, sizeof err, "windows file: %s", strerror(errno));
            rc = -EIO;
        }
    } else if (e->gzip) {
        uint64_t usize = e->usize;
        uint32_t crc = e->crc;
        rc = zran_build_gzip(in, e->csize, false, &usize, &crc, span, on_point, on_consumed, &b,
                             &stream_len, err, sizeof err);
    } else
        rc = zran_build_consumed(in, e->csize, e->usize, e->crc, span, on_point, on_consumed,
                                 &b, &stream_len, err, sizeof err);
    if (rc) {
        aix_release_map(ix, (uintptr_t)in, (uintptr_t)in + e->csize);
        snprintf(e->why, sizeof e->why, "%s", err);
        free(s);
        free(mp);
        free(b.pts);
        if (b.fd >= 0 && !sink)
            close(b.fd);
        if (b.wins)
            munmap(b.wins, wlen);
        return rc == -ENOMEM ? -ENOMEM : -EIO;
    }
    if (grow) {
        struct ckpt_point *np = realloc(b.pts, (b.n ? b.n : 1) * sizeof *np);
        if (np)
            b.pts = np; /* trimmed: the set keeps it */
    }
    if (sink) {
        b.wins = (unsigned char *)(uintptr_t)sink->map;
        s->wins_shared = true;
    } else if (b.fd >= 0) {
        void *p = mmap(NULL, wlen, PROT_READ, MAP_SHARED, b.fd, 0);
        close(b.fd);
        if (p == MAP_FAILED) {
            free(s);
            free(mp);
            free(b.pts);
            snprintf(e->why, sizeof e->why, "out of memory");
            return -ENOMEM;
        }
        b.wins = p;
        s->wins_shared = true;
    } else
        mprotect(b.wins, wlen, PROT_READ);
    /* on_point took the CRCs of every span but the last. */
    if (b.n) {
        uint64_t beg = b.pts[b.n - 1].in_bits >> 3;
        b.pts[b.n - 1].span_crc = aix_crc_release(ix, 0, in + beg, stream_len - beg);
    }
    /* The rest of the entry's mapped input the build touched: out of our
     * RSS too (the zip is a shared file mapping; the page cache keeps it). */
    aix_release_map(ix, (uintptr_t)in + b.released,
                    (uintptr_t)in + stream_len);
    s->n = (uint32_t)b.n;
    s->stream_len = stream_len;
    s->pts = s->own_pts = b.pts;
    s->wins = b.wins;
    s->owner = e;
    pthread_mutex_lock(&ck->lock);
    if (mp) { /* a sink's mapping is registered by its owner */
        mp->addr = b.wins;
        mp->len = wlen;
        mp->next = ck->maps;
        ck->maps = mp;
    }
    /* The points array is freed with the set: keep it in a mapping-less
     * allocation that aix_ckpt_free releases through the set list. */
    s->next = ck->sets;
    ck->sets = s;
    pthread_mutex_unlock(&ck->lock);
    atomic_fetch_add(&ck->built, 1);
    *out = s;
    return 0;
}

/* The points of e, building them on first use.  sidecar: also rewrite the
 * sidecar after a build (best effort). */
int aix_ckpt_get(const struct aindex *ix, struct bigent *e, bool sidecar,
                 const struct zset *discard, const struct zset **out, char *err,
                 size_t errlen)
{
    struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
    if (s && s != discard) {
        *out = s;
        return 0;
    }
    int rc = 0;
    bool built = false;
    pthread_mutex_lock(&e->lock);
    s = atomic_load_explicit(&e->set, memory_order_acquire);
    if (s == discard && s) {
        /* It failed a reader's checks: build afresh (once per set). */
        s = NULL;
        atomic_store(&e->set, NULL);
    }
    if (!s) {
        if (atomic_load(&e->bad))
            rc = -EIO;
        else if ((rc = ckpt_build(ix, e, NULL, &s, NULL)) == 0) {
            atomic_store_explicit(&e->set, s, memory_order_release);
            built = true;
        } else if (rc == -EIO)
            atomic_store(&e->bad, 1);
        if (rc)
            snprintf(err, errlen, "%s", e->why);
    }
    pthread_mutex_unlock(&e->lock);
    if (rc)
        return rc;
    if (built && sidecar) {
        char *path = sidecar_path(ix->path);
        if (path) {
            pthread_mutex_lock(&ix->ck->lock);
            ckpt_write(ix, path);
            pthread_mutex_unlock(&ix->ck->lock);
            free(path);
        }
    }
    *out = s;
    return 0;
}

/* The cleaned path of node idx (for messages), into buf. */
void aix_node_path(const struct aindex *ix, uint32_t idx, char *buf, size_t cap)
{
    uint32_t chain[MAX_DEPTH + 2];
    size_t depth = 0;
    while (idx != ROOT && depth < MAX_DEPTH + 1) {
        chain[depth++] = idx;
        uint32_t parent = ROOT;
        for (uint32_t d = 0; d < idx; d++) { /* only on errors: a scan is fine */
            const struct anode *n = &ix->nodes[d];
            if (n->kind == KIND_DIR && idx >= n->first_child
                && idx - n->first_child < n->nchildren) {
                parent = d;
                break;
            }
        }
        idx = parent;
    }
    size_t at = 0;
    buf[0] = '\0';
    while (depth-- > 0 && at + 1 < cap) {
        int k = snprintf(buf + at, cap - at, "%s%s", at ? "/" : "",
                         ix->arena + ix->nodes[chain[depth]].name_off);
        if (k < 0)
            break;
        at += (size_t)k < cap - at ? (size_t)k : cap - at - 1;
    }
}

/* The path of the (first) file node whose data starts at data. */
static void data_path(const struct aindex *ix, uint64_t data, char *buf, size_t cap)
{
    snprintf(buf, cap, "data at offset %ju", (uintmax_t)data);
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && ix->nodes[i].data == data) {
            aix_node_path(ix, i, buf, cap);
            return;
        }
}

struct build_job {
    const struct aindex *ix;
    const struct win_sink *sinks; /* per bigent */
    struct side_plan *pl;
    const size_t *order;          /* bigents, largest first */
    size_t norder;
    atomic_size_t next;
    atomic_int failed;            /* index + 1 of a bigent that failed */
    atomic_int error;             /* its -errno */
};

static void *build_worker(void *arg)
{
    struct build_job *bj = arg;
    struct ckpt_state *ck = bj->ix->ck;
    for (;;) {
        size_t k = atomic_fetch_add(&bj->next, 1);
        if (k >= bj->norder || atomic_load(&bj->failed))
            break;
        size_t i = bj->order[k];
        struct bigent *e = &ck->big[i];
        int rc = 0;
        pthread_mutex_lock(&e->lock);
        struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
        if (!s) {
            if (atomic_load(&e->bad))
                rc = -EIO;
            else if ((rc = ckpt_build(bj->ix, e, &bj->sinks[i], &s, NULL)) == 0) {
                atomic_store_explicit(&e->set, s, memory_order_release);
                bj->pl->placed[i] = s;
            } else if (rc == -EIO)
                atomic_store(&e->bad, 1);
        }
        pthread_mutex_unlock(&e->lock);
        if (rc) {
            int none = 0;
            if (atomic_compare_exchange_strong(&bj->failed, &none, (int)i + 1))
                atomic_store(&bj->error, rc);
            break;
        }
    }
    return NULL;
}

static int cmp_usize_desc(const void *a, const void *b, void *ctx)
{
    const struct ckpt_state *ck = ctx;
    uint64_t x = ck->big[*(const size_t *)a].usize, y = ck->big[*(const size_t *)b].usize;
    return x > y ? -1 : x < y;
}

int aindex_build_checkpoints(const struct aindex *ix, const char *sidecar, char **why)
{
    if (why)
        *why = NULL;
    struct ckpt_state *ck = ix->ck;
    if (!ck)
        return 0;
    char *dest = sidecar ? strdup(sidecar) : sidecar_path(ix->path);
    size_t *min_slots = calloc(ck->nbig, sizeof *min_slots);
    size_t *order = calloc(ck->nbig, sizeof *order);
    struct win_sink *sinks = calloc(ck->nbig, sizeof *sinks);
    struct mapping *mp = malloc(sizeof *mp);
    struct side_plan pl = {.fd = -1};
    int rc = 0;
    unsigned char *map = MAP_FAILED;
    if (!dest || !min_slots || !order || !sinks || !mp) {
        rc = -ENOMEM;
        aix_set_why(why, "%s: out of memory", ix->path);
        goto out;
    }
    size_t norder = 0;
    for (size_t i = 0; i < ck->nbig; i++) {
        min_slots[i] = atomic_load(&ck->big[i].set) ? 0 : ckpt_max_points(&ck->big[i]);
        if (min_slots[i])
            order[norder++] = i;
    }
    if (!norder && !sidecar) {
        /* Nothing to build: if every entry's points came from the sidecar
         * there already, it stays as it is. */
        bool all_loaded = true;
        for (size_t i = 0; i < ck->nbig && all_loaded; i++) {
            const struct zset *s = atomic_load(&ck->big[i].set);
            all_loaded = s && !s->own_pts;
        }
        if (all_loaded)
            goto out;
    }
    /* The windows of the builds go straight into the new sidecar's
     * regions (mapped: they are the sets' windows from now on). */
    if ((rc = plan_open(ix, dest, min_slots, &pl)) != 0
        || (norder && ftruncate(pl.fd, (off_t)pl.wend) != 0 && (rc = -errno))) {
        aix_set_why(why, "%s: %s", dest, strerror(-rc));
        goto out;
    }
    if (norder) {
        map = mmap(NULL, (size_t)pl.wend, PROT_READ, MAP_SHARED, pl.fd, 0);
        if (map == MAP_FAILED) {
            rc = -ENOMEM;
            aix_set_why(why, "%s: mmap: %s", dest, strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < ck->nbig; i++)
            sinks[i] = (struct win_sink){pl.fd, (off_t)pl.woff[i], map + pl.woff[i]};
        qsort_r(order, norder, sizeof *order, cmp_usize_desc, ck);
        struct build_job bj = {.ix = ix, .sinks = sinks, .pl = &pl, .order = order,
                               .norder = norder};
        atomic_init(&bj.next, 0);
        atomic_init(&bj.failed, 0);
        atomic_init(&bj.error, 0);
        /* One build per core (each is one single-threaded inflate). */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t nthreads = cpus > 1 ? (size_t)cpus : 1;
        if (nthreads > 4)
            nthreads = 4;
        if (nthreads > norder)
            nthreads = norder;
        pthread_t th[4];
        size_t started = 0;
        for (size_t t = 1; t < nthreads; t++)
            if (pthread_create(&th[started], NULL, build_worker, &bj) == 0)
                started++;
        build_worker(&bj);
        for (size_t t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        /* Sets built into the map live as long as the index: so does it. */
        bool used = false;
        for (size_t i = 0; i < ck->nbig && !used; i++)
            used = pl.placed[i] != NULL;
        if (used) {
            pthread_mutex_lock(&ck->lock);
            mp->addr = map;
            mp->len = (size_t)pl.wend;
            mp->next = ck->maps;
            ck->maps = mp;
            pthread_mutex_unlock(&ck->lock);
            mp = NULL;
            map = MAP_FAILED;
        }
        int failed = atomic_load(&bj.failed);
        if (failed) {
            const struct bigent *e = &ck->big[failed - 1];
            char path[MAX_PATH_BYTES + 64];
            data_path(ix, e->data, path, sizeof path);
            rc = atomic_load(&bj.error);
            aix_set_why(why, "%s: entry '%s': %s", ix->path, path, e->why);
            goto out;
        }
    }
    pthread_mutex_lock(&ck->lock);
    rc = plan_commit(ix, &pl, dest);
    pthread_mutex_unlock(&ck->lock);
    if (rc)
        aix_set_why(why, "%s: %s", dest, strerror(-rc));
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)pl.wend);
    plan_free(&pl);
    free(mp);
    free(sinks);
    free(order);
    free(min_slots);
    free(dest);
    return rc;
}

void aindex_checkpoint_stats(const struct aindex *ix, struct aindex_ckpt_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!ix->ck)
        return;
    st->entries = ix->ck->nbig;
    for (size_t i = 0; i < ix->ck->nbig; i++) {
        const struct zset *s = atomic_load(&ix->ck->big[i].set);
        if (s) {
            st->ready++;
            st->points += s->n;
        }
        if (atomic_load(&ix->ck->big[i].bad))
            st->corrupt++;
    }
    st->loaded = atomic_load(&ix->ck->loaded);
    st->built = atomic_load(&ix->ck->built);
}


/* ------------------------------------------------------- single gzip stream */

int aix_ckpt_single(struct aindex *ix, uint64_t data, uint64_t csize, uint64_t usize,
                    uint32_t crc)
{
    struct ckpt_state *ck = calloc(1, sizeof *ck);
    struct bigent *big = calloc(1, sizeof *big);
    if (!ck || !big) {
        free(ck);
        free(big);
        return -ENOMEM;
    }
    big->data = data;
    big->csize = csize;
    big->usize = usize;
    big->crc = crc;
    big->measure = usize == UINT64_MAX;
    big->gzip = true;
    pthread_mutex_init(&big->lock, NULL);
    atomic_init(&big->set, NULL);
    atomic_init(&big->bad, 0);
    ck->big = big;
    ck->nbig = 1;
    pthread_mutex_init(&ck->lock, NULL);
    ix->ck = ck;
    return 0;
}

struct bigent *aix_ckpt_single_entry(const struct aindex *ix)
{
    return ix->ck && ix->ck->nbig == 1 ? &ix->ck->big[0] : NULL;
}

int aix_ckpt_build_measure(struct aindex *ix, uint64_t *stream_len, uint64_t *produced,
                           char *err, size_t errlen)
{
    struct bigent *e = aix_ckpt_single_entry(ix);
    struct measure ms = {0, 0};
    struct zset *s = NULL;
    if (!e)
        return -EINVAL;
    e->usize = UINT64_MAX;
    e->measure = true;
    int rc = ckpt_build(ix, e, NULL, &s, &ms);
    *produced = ms.produced;
    if (rc) {
        snprintf(err, errlen, "%s", e->why);
        e->usize = ms.produced;
        e->measure = false;
        return rc;
    }
    *stream_len = ms.stream_len;
    atomic_store_explicit(&e->set, s, memory_order_release);
    return 0;
}

void aix_ckpt_single_bad(struct aindex *ix, const char *why)
{
    struct bigent *e = aix_ckpt_single_entry(ix);
    if (!e)
        return;
    atomic_store(&e->set, NULL); /* a built set stays listed (freed with ck) */
    e->measure = false;
    atomic_store(&e->bad, 1);
    snprintf(e->why, sizeof e->why, "%s", why);
}
