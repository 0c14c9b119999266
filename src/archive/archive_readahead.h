/*
 * archive_readahead: reads of checkpointed entries with read-ahead (see
 * "Read-ahead" in archive_index.h).  Calls archive_decode, archive_points,
 * archive_base, zran.
 */
#ifndef HCX_ARCHIVE_READAHEAD_H
#define HCX_ARCHIVE_READAHEAD_H

#include "archive_decode.h"

/* areader_pread for a checkpointed entry: [offset, end) within the entry,
 * from read-ahead spans when they cover it, else synchronously; schedules
 * the next spans while the reads are sequential. */
ssize_t aix_zpread(struct areader *r, unsigned char *out, uint64_t offset, uint64_t end);
/* Unqueues r's jobs and waits for its running ones, then frees ra. */
void aix_ra_free(struct ra_state *ra);

#endif
