/*
 * archive_ckpt: building the checkpoints of large deflate entries (and of
 * a gzip file's members) -- finding the entries, inflating each once
 * (zran) into points, lazily on first read (aix_ckpt_get) or all at once
 * (aindex_build_checkpoints), and aindex_checkpoint_stats.
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
 * Entries without points get them on their first read (lazily, one build
 * per entry; other readers of that entry wait); the windows of such a
 * build go to an unlinked temporary file beside the zip (mapped), then the
 * sidecar is rewritten with every entry built so far.
 *
 * Layer: a sibling of archive_tree and archive_persist (never calls them);
 * calls archive_points (sets, sidecar), archive_zip (central directory),
 * archive_nodes (paths for messages), archive_base, zran.
 */
#include "archive_ckpt.h"
#include "why.h"
#include "archive_names.h"
#include "archive_zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_bigent(const void *a, const void *b)
{
    return cmp_u64(&((const struct bigent *)a)->data, &((const struct bigent *)b)->data);
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
    if (!(ix->ck = aix_points_new(big, nbig))) {
        free(big);
        return -ENOMEM;
    }
    return 0;
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

/* Frees what a failed build of ckpt_build had allocated. */
static void build_undo(struct build_ctx *b, struct zset *s, struct mapping *mp,
                       const struct win_sink *sink, size_t wlen)
{
    free(s);
    free(mp);
    free(b->pts);
    if (b->fd >= 0 && !sink)
        close(b->fd);
    if (b->wins)
        munmap(b->wins, wlen);
}

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
        build_undo(&b, s, mp, sink, wlen);
        snprintf(e->why, sizeof e->why, "out of memory");
        return -ENOMEM;
    }
    uint64_t stream_len = 0;
    char *why = NULL;
    const unsigned char *in = ix->map + e->data;
    b.ix = ix;
    b.in = in;
    int rc;
    if (grow) {
        uint64_t usize = 0;
        uint32_t crc = 0;
        rc = zran_build_gzip(in, e->csize, true, &usize, &crc, span, on_point, on_consumed, &b,
                             &stream_len, &why);
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
            set_why(&why, "windows file: %s", strerror(errno));
            rc = -EIO;
        }
    } else if (e->gzip) {
        uint64_t usize = e->usize;
        uint32_t crc = e->crc;
        rc = zran_build_gzip(in, e->csize, false, &usize, &crc, span, on_point, on_consumed, &b,
                             &stream_len, &why);
    } else
        rc = zran_build_consumed(in, e->csize, e->usize, e->crc, span, on_point, on_consumed,
                                 &b, &stream_len, &why);
    if (rc) {
        aix_release_map(ix, (uintptr_t)in, (uintptr_t)in + e->csize);
        snprintf(e->why, sizeof e->why, "%s", why ? why : strerror(-rc));
        free(why);
        build_undo(&b, s, mp, sink, wlen);
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
                 const struct zset *discard, const struct zset **out, char **why)
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
            set_why(why, "%s", e->why);
    }
    pthread_mutex_unlock(&e->lock);
    if (rc)
        return rc;
    if (built && sidecar) {
        char *path = aix_side_path(ix->path);
        if (path) {
            pthread_mutex_lock(&ix->ck->lock);
            aix_ckpt_write(ix, path);
            pthread_mutex_unlock(&ix->ck->lock);
            free(path);
        }
    }
    *out = s;
    return 0;
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
    char *dest = sidecar ? strdup(sidecar) : aix_side_path(ix->path);
    size_t *min_slots = calloc(ck->nbig, sizeof *min_slots);
    size_t *order = calloc(ck->nbig, sizeof *order);
    struct win_sink *sinks = calloc(ck->nbig, sizeof *sinks);
    struct mapping *mp = malloc(sizeof *mp);
    struct side_plan pl = {.fd = -1};
    int rc = 0;
    unsigned char *map = MAP_FAILED;
    if (!dest || !min_slots || !order || !sinks || !mp) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", ix->path);
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
    if ((rc = aix_plan_open(ix, dest, min_slots, &pl)) != 0
        || (norder && ftruncate(pl.fd, (off_t)pl.wend) != 0 && (rc = -errno))) {
        set_why(why, "%s: %s", dest, strerror(-rc));
        goto out;
    }
    if (norder) {
        map = mmap(NULL, (size_t)pl.wend, PROT_READ, MAP_SHARED, pl.fd, 0);
        if (map == MAP_FAILED) {
            rc = -ENOMEM;
            set_why(why, "%s: mmap: %s", dest, strerror(errno));
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
            set_why(why, "%s: entry '%s': %s", ix->path, path, e->why);
            goto out;
        }
    }
    pthread_mutex_lock(&ck->lock);
    rc = aix_plan_commit(ix, &pl, dest);
    pthread_mutex_unlock(&ck->lock);
    if (rc)
        set_why(why, "%s: %s", dest, strerror(-rc));
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)pl.wend);
    aix_plan_free(&pl);
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
    struct bigent *big = calloc(1, sizeof *big);
    if (!big)
        return -ENOMEM;
    big->data = data;
    big->csize = csize;
    big->usize = usize;
    big->crc = crc;
    big->measure = usize == UINT64_MAX;
    big->gzip = true;
    if (!(ix->ck = aix_points_new(big, 1))) {
        free(big);
        return -ENOMEM;
    }
    return 0;
}

struct bigent *aix_ckpt_single_entry(const struct aindex *ix)
{
    return ix->ck && ix->ck->nbig == 1 ? &ix->ck->big[0] : NULL;
}

int aix_ckpt_build_measure(struct aindex *ix, uint64_t *stream_len, uint64_t *produced,
                           char **why)
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
        set_why(why, "%s", e->why);
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
