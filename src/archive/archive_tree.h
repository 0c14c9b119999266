/*
 * archive_tree: the tree builder -- the cleaned, sorted node table of an
 * index, from a zip's entries (libarchive) or for the one file of a
 * single-file format.  Calls archive_names, archive_zip, archive_nodes,
 * archive_base.
 */
#ifndef HCX_ARCHIVE_TREE_H
#define HCX_ARCHIVE_TREE_H

#include "archive_nodes.h"

/* Builds ix's tree (nodes, arena, sizes, stats, bad_entries) by walking
 * the zip mapped at ix->map, and flags the nodes that may be read straight
 * from the mapping (NODE_DIRECT_*).  0, or -errno with *why naming path. */
int aix_tree_build_zip(struct aindex *ix, const char *path, const char *const *reserved,
                       char **why);
/* Builds ix's tree for a single-file format: one file node (flags, size,
 * data, mtime) named entry_name by the name rules, or "data.csv" when the
 * rules would drop that name.  0, -ENOMEM or -EFBIG. */
int aix_tree_build_single(struct aindex *ix, const char *const *reserved,
                          const char *entry_name, uint8_t flags, uint64_t size, uint64_t data,
                          int64_t mtime);

#endif
