/*
 * archive_persist: the index sidecar "<name>.idx" (aindex_save writes it;
 * aix_index_load reads it).  Calls archive_nodes, archive_base, zran.
 */
#ifndef HCX_ARCHIVE_PERSIST_H
#define HCX_ARCHIVE_PERSIST_H

#include "archive_nodes.h"

/* Fills ix->nodes, arena, counts and stats from "<ix->path>.idx" when that
 * sidecar matches the mapped archive (ix->map, ix->st), its format and
 * single_hash, and the reserved names; -ENOENT (none), -EINVAL (stale or
 * damaged: rebuild), -ENOMEM.  On failure ix has no tree. */
int aix_index_load(struct aindex *ix, const char *const *reserved);

#endif
