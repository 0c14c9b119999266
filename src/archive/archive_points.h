/*
 * archive_points: the checkpoints of large deflate entries as data -- the
 * per-entry point sets (struct bigent, struct zset), their lookup, and
 * the sidecar "<name>.ckpt" that keeps them (loading it; writing it
 * atomically).  Building points is archive_ckpt's.  Calls zran (CRC-32).
 */
#ifndef HCX_ARCHIVE_POINTS_H
#define HCX_ARCHIVE_POINTS_H

#include "archive_nodes.h"
#include "zran.h"

#include <pthread.h>
#include <stdatomic.h>

struct ckpt_point {
    uint64_t out;      /* uncompressed offset */
    uint64_t in_bits;  /* bit offset of the block in the stream */
    uint32_t win_crc;  /* CRC-32 of the window (min(out, 32 KiB) bytes) */
    uint32_t span_crc; /* CRC-32 of the compressed bytes of the span */
};

struct zset {
    uint32_t n;
    uint64_t stream_len;              /* bytes of the deflate stream */
    const struct ckpt_point *pts;
    const unsigned char *wins;        /* n slots of ZRAN_WINDOW bytes */
    struct zset *next;                /* every set, for freeing */
    struct bigent *owner;
    struct ckpt_point *own_pts;       /* heap copy to free, or NULL */
    bool wins_shared;                 /* wins is a shared file mapping */
};

struct bigent {
    uint64_t data, csize, usize;
    uint32_t crc;
    _Atomic(struct zset *) set;       /* published points, or NULL */
    atomic_int bad;                   /* the build found corrupt data */
    pthread_mutex_t lock;             /* one build at a time */
    bool gzip;                        /* gzip members from data on (zran_build_gzip) */
    bool measure;                     /* gzip at open: usize/crc not known yet */
    char why[200];                    /* the entry's state: why its build failed, handed
                                       * to each caller by aix_ckpt_get (set_why) */
};

/* A file mapping that the sets' windows live in, unmapped with the index. */
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

/* A ckpt_state of nbig zeroed entries (the caller fills data, sizes and
 * CRCs, sorted by data); big becomes the state's.  NULL: no memory. */
struct ckpt_state *aix_points_new(struct bigent *big, size_t nbig);
void aix_ckpt_free(struct ckpt_state *ck);
struct bigent *aix_find_big(const struct ckpt_state *ck, uint64_t data);
/* The point whose span holds offset (the last point with out <= offset). */
uint32_t aix_span_of(const struct zset *s, uint64_t offset);
/* Drops windows [from, to) of a set mapped from the sidecar from this
 * process's RSS (the page cache keeps them; a later use faults them back).
 * Fault-around maps the neighbours of every window touched, so callers
 * release a window's neighbours with it. */
void aix_release_windows(const struct zset *s, uint32_t from, uint32_t to);
/* The compressed bytes [*beg, *end) of span i of set s. */
static inline void aix_span_bytes(const struct zset *s, uint32_t i, uint64_t *beg, uint64_t *end)
{
    *beg = s->pts[i].in_bits >> 3;
    *end = i + 1 < s->n ? (s->pts[i + 1].in_bits + 7) >> 3 : s->stream_len;
}

/* "<zip>.ckpt" for an archive named zip: malloc'd, NULL without memory. */
char *aix_side_path(const char *zip);
/* Loads ix's "<name>.ckpt" if it matches this archive; silently ignores
 * it otherwise. */
void aix_ckpt_load(struct aindex *ix);

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

/* Creates "<dest>.tmp.XXXXXX" with a region of slots[i] windows per entry
 * (slots: min_slots[i], or the current set's size if larger).  0 or
 * -errno. */
int aix_plan_open(const struct aindex *ix, const char *dest, const size_t *min_slots,
                  struct side_plan *pl);
/* Writes the table and header of the plan's file for every entry that has
 * points now, copies the windows that are not in place, and renames it to
 * dest (durably).  Caller holds ck->lock.  0 or -errno. */
int aix_plan_commit(const struct aindex *ix, struct side_plan *pl, const char *dest);
void aix_plan_free(struct side_plan *pl);
/* Writes "dest" atomically with every entry that has points.  Caller
 * holds ck->lock.  0 or -errno. */
int aix_ckpt_write(const struct aindex *ix, const char *dest);

#endif
