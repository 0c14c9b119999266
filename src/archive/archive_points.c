/*
 * archive_points: checkpoint sets and the "<name>.ckpt" sidecar.
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
 * Layer: calls zran (CRC-32) only; archive_ckpt (builds), the decoder and
 * verification use it.
 */
#include "archive_points.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

struct ckpt_state *aix_points_new(struct bigent *big, size_t nbig)
{
    struct ckpt_state *ck = calloc(1, sizeof *ck);
    if (!ck)
        return NULL;
    ck->big = big;
    ck->nbig = nbig;
    pthread_mutex_init(&ck->lock, NULL);
    for (size_t i = 0; i < nbig; i++) {
        pthread_mutex_init(&big[i].lock, NULL);
        atomic_init(&big[i].set, NULL);
        atomic_init(&big[i].bad, 0);
    }
    return ck;
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

char *aix_side_path(const char *zip)
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

void aix_ckpt_load(struct aindex *ix)
{
    struct ckpt_state *ck = ix->ck;
    char *path = aix_side_path(ix->path);
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

void aix_plan_free(struct side_plan *pl)
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
int aix_plan_open(const struct aindex *ix, const char *dest, const size_t *min_slots,
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
        aix_plan_free(pl);
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
        aix_plan_free(pl);
        return -e;
    }
    return 0;
}

/* Writes the table and header of the plan's file for every entry that has
 * points now, copies the windows that are not in place, and renames it to
 * dest (durably).  Caller holds ck->lock.  0 or -errno. */
int aix_plan_commit(const struct aindex *ix, struct side_plan *pl, const char *dest)
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
int aix_ckpt_write(const struct aindex *ix, const char *dest)
{
    bool any = false;
    for (size_t i = 0; i < ix->ck->nbig && !any; i++)
        any = atomic_load(&ix->ck->big[i].set) != NULL;
    if (!any)
        return 0;
    struct side_plan pl;
    int rc = aix_plan_open(ix, dest, NULL, &pl);
    if (rc == 0)
        rc = aix_plan_commit(ix, &pl, dest);
    aix_plan_free(&pl);
    return rc;
}
