/*
 * archive_decode: the synchronous decoder under a reader -- a reader's
 * decoding state (struct areader: libarchive or zran decoder, the ring of
 * recent output), producing, serving and end checks, and positioned reads
 * of checkpointed entries (aix_zpread_sync).  struct areader is defined
 * here, not in the reader, because this layer and the read-ahead above it
 * work on it for the reader.  Calls archive_ckpt (points on first use),
 * archive_points, archive_base, zran.
 */
#ifndef HCX_ARCHIVE_DECODE_H
#define HCX_ARCHIVE_DECODE_H

#include "archive_ckpt.h"

#include <sys/types.h>

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
    /* The reader's state, not a message handed back: the text of its last
     * failure, kept for areader_error() after the call that failed (the
     * next read clears it).  One line by why_tidy, as util's messages. */
    char last_error[320];
};

/* Records the error (r->last_error), drops the decoder's position; -err. */
ssize_t aix_reader_fail(struct areader *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Back to "nothing decoded yet" on the libarchive path. */
void aix_reset_stream(struct areader *r);
/* Decompresses forward until produced == target, into the ring. */
int aix_advance_to(struct areader *r, uint64_t target);
/* Serves [offset, end) (total bytes) into out: what the ring still holds,
 * then fresh output of the decoder (skipping forward first if need be).
 * Bytes or -errno. */
ssize_t aix_serve_range(struct areader *r, uint64_t offset, uint64_t end, unsigned char *out,
                        size_t total);
/* At the declared end: the stream must end here, with a good CRC. */
int aix_check_end(struct areader *r);
/* areader_pread for a checkpointed entry: [offset, end) within the entry,
 * without read-ahead. */
ssize_t aix_zpread_sync(struct areader *r, unsigned char *out, uint64_t offset,
                        uint64_t end);

#endif
