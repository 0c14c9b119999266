/*
 * archive_ckpt: building checkpoints (see archive_ckpt.c).  Calls
 * archive_points, archive_zip, archive_nodes, archive_base, zran.
 */
#ifndef HCX_ARCHIVE_CKPT_H
#define HCX_ARCHIVE_CKPT_H

#include "archive_points.h"

/* Finds the large deflate entries: nodes of at least AINDEX_CKPT_MIN
 * bytes whose central directory record and local header agree with the
 * index.  Leaves ix->ck NULL when there are none.  0 or -ENOMEM. */
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
 * *stream_len measured (the set published), or -EIO / -ENOMEM with *why
 * set (util/why.h) and *produced the output inflated. */
int aix_ckpt_build_measure(struct aindex *ix, uint64_t *stream_len, uint64_t *produced,
                           char **why);
/* Forgets the published set of the single bigent and marks it bad. */
void aix_ckpt_single_bad(struct aindex *ix, const char *why);
/* The points of e, building them on first use (or afresh when the
 * published set is discard, a set that failed a reader's checks).
 * sidecar: also rewrite the sidecar after a build (best effort).  0, or
 * -EIO / -ENOMEM with *why set (util/why.h: e->why, the entry's state). */
int aix_ckpt_get(const struct aindex *ix, struct bigent *e, bool sidecar,
                 const struct zset *discard, const struct zset **out, char **why);

#endif
