/*
 * archive_internal.h: PRIVATE to archive_index.c, archive_ckpt.c,
 * archive_reader.c, archive_readahead.c and archive_verify.c -- never
 * include it anywhere else (the public API is archive_index.h).  Owns the
 * definitions these files share: the index and node layout, the mapping
 * view, cleaned paths, checkpoint sets, central directory records, struct
 * areader, and the aix_* helpers each file exports to the others.
 */
#ifndef HCX_ARCHIVE_INTERNAL_H
#define HCX_ARCHIVE_INTERNAL_H

#include "archive_index.h"
#include "zran.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#define MAX_COMPONENT_BYTES 255
#define MAX_DEPTH 256
#define MAX_PATH_BYTES 4000
#define MAX_LINK_TARGET 4095
#define MAX_LINK_TOTAL ((uint64_t)64 << 20)
#define NO_NODE UINT32_MAX
#define ROOT 0u
/* libarchive sees the mapping in blocks of at most this size: it keeps
 * zlib's 32-bit avail_in safe while copying nothing; a block leaves the
 * process's RSS when libarchive asks for the next one. */
#define VIEW_BLOCK ((size_t)4 << 20)
/* Passes that stream through mapped input drop what they consumed from
 * the process's RSS every this many bytes (the page cache keeps it). */
#define RELEASE_STEP ((uint64_t)8 << 20)
/* Releases of input behind a streaming decoder reach this far below what
 * was touched last: the kernel's fault-around maps up to 64 KiB around a
 * faulting page, so pages below a released range come back mapped. */
#define FAULT_MARGIN ((uintptr_t)128 << 10)
/* A local header is at most 30 + 65535 + 65535 bytes before its data. */
#define LOCAL_HEADER_MAX (30 + 2 * 65535)
#define MAX_HEADER_CANDIDATES 16

enum node_kind { KIND_DIR = 1, KIND_FILE = 2, KIND_INLINE = 3 };
/* NODE_DIRECT_*: a small file (at most AINDEX_WINDOW bytes) stored or
 * deflated, whose central directory record, local header and index agree
 * (direct_ok): read straight from the mapping, without libarchive.  Such a
 * node keeps its CRC-32 in first_child and its compressed size in
 * nchildren (unused for files). */
enum { NODE_ENCRYPTED = 1, NODE_DIRECT_STORED = 2, NODE_DIRECT_DEFLATE = 4 };
/* Single-file formats (AFORMAT_PLAIN / AFORMAT_GZIP: the index's only file
 * node).  NODE_PLAIN: the whole mapped file, read as is (data 0).
 * NODE_GZIP: the deflate stream at data, read through its checkpoints
 * (the index's only bigent); first_child keeps its CRC-32.  NODE_BAD: the
 * gzip stream failed its checks when indexed: every read fails with EIO
 * (size: the bytes it inflated to, at least 1). */
enum { NODE_PLAIN = 8, NODE_GZIP = 16, NODE_BAD = 32 };

struct anode {
    uint64_t size;
    uint64_t data;        /* FILE: data offset in the zip; INLINE: arena offset */
    uint64_t name_off;    /* arena offset of the NUL-terminated name */
    int64_t mtime;
    uint32_t first_child; /* DIR: index of the first child */
    uint32_t nchildren;
    uint16_t name_len;
    uint8_t kind;
    uint8_t flags;
};

struct ckpt_state; /* checkpoints of large deflate entries (below) */

struct aindex {
    const unsigned char *map;
    size_t map_len;
    struct stat st;       /* of the zip when mapped (sidecar validation) */
    char *path;
    struct ckpt_state *ck; /* NULL when the archive has no large deflate entry */
    struct anode *nodes;
    uint32_t nnodes;
    char *arena;
    uint64_t arena_len;
    bool from_sidecar;    /* nodes and arena came from "<zip>.idx" */
    uint64_t total_size;
    struct aindex_stats stats;
    uint64_t bad_entries; /* entries skipped as unreadable, not for encryption */
    enum aformat fmt;
    uint64_t single_hash; /* of fmt and the single file's name and mtime (.idx) */
    char *bad_why;        /* NODE_BAD: why (NULL when loaded from the .idx) */
};

/* ---------------------------------------------------------- archive_index.c */

struct view {
    const unsigned char *base;
    int64_t len;
    int64_t pos;
    int64_t prev, prev_len; /* the block handed out last */
};

struct clean_path {
    char buf[MAX_PATH_BYTES + MAX_COMPONENT_BYTES + 8];
    size_t len;
    uint16_t comp_off[MAX_DEPTH + 1];
    uint16_t comp_len[MAX_DEPTH + 1];
    size_t ncomp;
    bool truncated;
    bool renamed;
};

enum clean_status { CLEAN_OK, CLEAN_TOO_DEEP, CLEAN_TOO_LONG };

void aix_set_why(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *aix_archive_err(struct archive *a);
int aix_map_file(const char *path, const unsigned char **map, size_t *len,
                 struct stat *stp, char **why);
void aix_release_range(const unsigned char *map, size_t map_len, uintptr_t lo, uintptr_t hi);
int aix_open_view(struct view *v, bool seekable, struct archive **out);
enum clean_status aix_clean_name(const char *raw, const char *const *reserved,
                                 struct clean_path *cp);

/* -------------------------------------------------------- archive_persist.c */

/* Fills ix->nodes, arena, counts and stats from "<ix->path>.idx" when that
 * sidecar matches the mapped archive (ix->map, ix->st) and the reserved
 * names; -ENOENT (none), -EINVAL (stale or damaged: rebuild), -ENOMEM. */
int aix_index_load(struct aindex *ix, const char *const *reserved);

/* ----------------------------------------------------------- archive_ckpt.c */

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
    char why[200];
};

static inline uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const unsigned char *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

int aix_ckpt_find_entries(struct aindex *ix);
/* AFORMAT_GZIP: the one bigent, for the gzip members whose first deflate
 * data starts at data (csize: the rest of the file).  usize UINT64_MAX:
 * not known yet (a sidecar entry with the same data and csize then gives
 * usize and crc). */
int aix_ckpt_single(struct aindex *ix, uint64_t data, uint64_t csize, uint64_t usize,
                    uint32_t crc);
struct bigent *aix_ckpt_single_entry(const struct aindex *ix);
/* Builds the points of the single bigent of unknown size by inflating the
 * members once (every trailer checked): 0 with e->usize, e->crc and
 * *stream_len measured (the set published), or -EIO / -ENOMEM with err
 * set and *produced the output inflated. */
int aix_ckpt_build_measure(struct aindex *ix, uint64_t *stream_len, uint64_t *produced,
                           char *err, size_t errlen);
/* Forgets the published set of the single bigent and marks it bad. */
void aix_ckpt_single_bad(struct aindex *ix, const char *why);
void aix_ckpt_load(struct aindex *ix);
void aix_ckpt_free(struct ckpt_state *ck);
struct bigent *aix_find_big(const struct ckpt_state *ck, uint64_t data);
void aix_release_map(const struct aindex *ix, uintptr_t lo, uintptr_t hi);
/* Drops windows [from, to) of a set mapped from the sidecar from this
 * process's RSS (the page cache keeps them; a later use faults them back).
 * Fault-around maps the neighbours of every window touched, so callers
 * release a window's neighbours with it. */
void aix_release_windows(const struct zset *s, uint32_t from, uint32_t to);
/* The point whose span holds offset (the last point with out <= offset). */
uint32_t aix_span_of(const struct zset *s, uint64_t offset);
uint32_t aix_crc_release(const struct aindex *ix, uint32_t crc, const unsigned char *p,
                         uint64_t n);
int aix_ckpt_get(const struct aindex *ix, struct bigent *e, bool sidecar,
                 const struct zset *discard, const struct zset **out, char *err,
                 size_t errlen);
void aix_node_path(const struct aindex *ix, uint32_t idx, char *buf, size_t cap);

/* --------------------------------------------------------- archive_verify.c */

/* One central directory record, zip64 sizes resolved.  data: where the
 * local header at lho says the data starts (UINT64_MAX when there is no
 * valid local header there). */
struct cdrec {
    uint64_t lho, csize, usize, data;
    uint32_t crc;
    uint16_t flags, method;
};

int aix_find_cd(const unsigned char *m, size_t len, uint64_t *off, uint64_t *count);
bool aix_cd_record(const unsigned char *m, size_t len, uint64_t *pp, struct cdrec *r);
int aix_mark_direct(struct aindex *ix);

/* --------------------------------------------------------- archive_reader.c */

struct ra_state;

struct areader {
    const struct aindex *ix;
    const struct anode *node;
    struct archive *a;     /* positioned in the entry's data, or NULL */
    struct view v;
    uint64_t produced;     /* entry bytes decompressed so far by a */
    bool end_checked;      /* a reached the entry's end, CRC good */
    /* Small direct entries (NODE_DIRECT_*): the whole entry, checked
     * (size and CRC), in the mapping (stored) or fbuf (deflate); NULL
     * until the first read. */
    const unsigned char *fdata;
    unsigned char *fbuf;
    /* Ring of the last bytes produced: offset x lives at win[x % win_cap];
     * valid for [produced - win_len, produced). */
    unsigned char *win;
    size_t win_cap, win_len;
    /* Checkpointed entries: the decoder and the span it is in. */
    struct bigent *big;    /* non-NULL: read through the checkpoints */
    const struct zset *zset;
    struct zran_stream *zs;
    bool zactive;          /* zs is positioned at produced */
    uint32_t zspan;        /* point whose span produced is in */
    uint64_t zverified;    /* end of the spans checked so far */
    const struct zset *discard; /* a set that failed its checks */
    uintptr_t zrelease;    /* mapped input below this was released */
    uint32_t wrelease;     /* windows of spans below this were released */
    /* Read-ahead (checkpointed entries read sequentially): spans inflated
     * by the worker pool, or NULL until first needed. */
    struct ra_state *ra;
    uint64_t ra_prev_end;  /* end of the previous read */
    unsigned ra_streak;    /* consecutive reads continuing the previous */
    uint64_t ra_prev_len;  /* size of the last read */
    char err[320];
};

/* areader_pread for a checkpointed entry: [offset, end) within the entry. */
ssize_t aix_zpread_sync(struct areader *r, unsigned char *out, uint64_t offset,
                        uint64_t end);

/* ------------------------------------------------------ archive_readahead.c */

void aix_ra_free(struct ra_state *ra);
ssize_t aix_zpread(struct areader *r, unsigned char *out, uint64_t offset, uint64_t end);

#endif
