/*
 * archive_nodes: struct aindex and its node table -- the layout every
 * other module reads (nodes in one array, breadth-first, each directory's
 * children contiguous and sorted by name; names in one arena), and the
 * queries on it.  Calls archive_base only.
 */
#ifndef HCX_ARCHIVE_NODES_H
#define HCX_ARCHIVE_NODES_H

#include "archive_base.h"
#include "archive_index.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#define NO_NODE UINT32_MAX
#define ROOT 0u

enum anode_kind { KIND_DIR = 1, KIND_FILE = 2, KIND_INLINE = 3 };
/* NODE_DIRECT_*: a small file (at most AINDEX_WINDOW bytes) stored or
 * deflated, whose central directory record, local header and index agree
 * (aix_zip_direct_ok): read straight from the mapping, without
 * libarchive.  Such a node keeps its CRC-32 in first_child and its
 * compressed size in nchildren (unused for files). */
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

struct ckpt_state; /* checkpoints of large deflate entries (archive_points.h) */

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

/* Drops mapped archive bytes [lo, hi) from this process's RSS. */
static inline void aix_release_map(const struct aindex *ix, uintptr_t lo, uintptr_t hi)
{
    aix_release_range(ix->map, ix->map_len, lo, hi);
}

/* CRC-32 of mapped archive bytes [p, p + n), released as it goes. */
static inline uint32_t aix_crc_release(const struct aindex *ix, uint32_t crc,
                                       const unsigned char *p, uint64_t n)
{
    return aix_crc_range(ix->map, ix->map_len, crc, p, n);
}

/* Forgets the tree (nodes, arena, sizes, stats): back to an index that
 * has only its mapping. */
void aix_tree_clear(struct aindex *ix);
/* Bytewise order of names, the order of every directory's children. */
int aix_cmp_names(const char *a, size_t an, const char *b, size_t bn);
/* The cleaned path of node idx (for messages), into buf. */
void aix_node_path(const struct aindex *ix, uint32_t idx, char *buf, size_t cap);

#endif
