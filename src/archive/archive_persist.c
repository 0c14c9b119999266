/*
 * archive_persist: the index sidecar "<job>.zip.idx" -- the finished node
 * table and name arena of an archive, saved once it has been built and
 * verified, so that a later mount serves the job's tree without walking
 * the archive again (the walk costs ~2 us per entry through libarchive
 * and several hundred bytes per entry at its peak; loading is one read).
 *
 * The sidecar is a cache: anything wrong with it (other archive size or
 * mtime, other format or naming rules, a CRC mismatch, a node pointing
 * outside the table, the arena or the archive) makes the loader refuse it
 * and the index is built from the archive as before.  It is written to a
 * temporary name and renamed; no fsync, because a torn file is caught by
 * its CRC and costs only a rebuild.
 *
 *   $ ls ~/.cache/hcexportfs/archives/<project>/
 *   <job>.zip  <job>.zip.ckpt  <job>.zip.idx
 *
 * Layer: a sibling of archive_tree and archive_ckpt (never calls them);
 * calls archive_nodes, archive_base and zran (CRC-32).
 */
#include "archive_persist.h"
#include "why.h"
#include "zran.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IDX_MAGIC "HCXIDX\0\1"
/* Bump when the name rules, the node layout or what the builder records
 * change: older sidecars are then rebuilt. */
#define IDX_VERSION 2u
#define IDX_MAX_NODES ((uint64_t)64 << 20)
#define IDX_MAX_ARENA ((uint64_t)4 << 30)

struct idx_header {
    char magic[8];
    uint32_t version;
    uint32_t node_size;     /* sizeof(struct idx_node) */
    uint64_t zip_size;
    int64_t mtime_sec;
    int64_t mtime_nsec;
    uint64_t reserved_hash; /* of the root names the builder renamed */
    uint32_t format;        /* enum aformat */
    uint32_t zero;
    uint64_t single_hash;   /* PLAIN/GZIP: of the format, file name and mtime */
    uint64_t nnodes;
    uint64_t arena_len;
    uint64_t total_size;
    uint64_t bad_entries;
    struct aindex_stats stats;
    uint32_t payload_crc;   /* nodes then arena */
    uint32_t header_crc;
};

/* struct anode without its padding, so that every byte written is set. */
struct idx_node {
    uint64_t size, data, name_off;
    int64_t mtime;
    uint32_t first_child, nchildren;
    uint16_t name_len;
    uint8_t kind, flags;
    uint32_t zero;
};

static uint64_t reserved_hash(const char *const *reserved)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; reserved && reserved[i]; i++)
        for (const unsigned char *p = (const unsigned char *)reserved[i];; p++) {
            h = (h ^ *p) * 1099511628211ull;
            if (!*p)
                break;
        }
    return h;
}

static uint32_t header_crc(const struct idx_header *h)
{
    struct idx_header c = *h;
    c.header_crc = 0;
    return zran_crc32(0, (const unsigned char *)&c, sizeof c);
}

static void fill_header(const struct aindex *ix, const char *const *reserved,
                        struct idx_header *h)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, IDX_MAGIC, 8);
    h->version = IDX_VERSION;
    h->node_size = sizeof(struct idx_node);
    h->zip_size = (uint64_t)ix->st.st_size;
    h->mtime_sec = (int64_t)ix->st.st_mtim.tv_sec;
    h->mtime_nsec = (int64_t)ix->st.st_mtim.tv_nsec;
    h->reserved_hash = reserved_hash(reserved);
    h->format = (uint32_t)ix->fmt;
    h->single_hash = ix->single_hash;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int aindex_save(const struct aindex *ix, const char *const *reserved, char **why)
{
    char *dest = NULL, *tmp = NULL;
    struct idx_node *nodes = NULL;
    int fd = -1, rc;
    if (asprintf(&dest, "%s.idx", ix->path) < 0) {
        dest = NULL;
        rc = -ENOMEM;
        goto out;
    }
    if (asprintf(&tmp, "%s.tmp.%ld", dest, (long)getpid()) < 0) {
        tmp = NULL;
        rc = -ENOMEM;
        goto out;
    }
    if (!(nodes = calloc(ix->nnodes, sizeof *nodes))) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        nodes[i] = (struct idx_node){n->size, n->data, n->name_off, n->mtime, n->first_child,
                                     n->nchildren, n->name_len, n->kind, n->flags, 0};
    }
    struct idx_header h;
    fill_header(ix, reserved, &h);
    h.nnodes = ix->nnodes;
    h.arena_len = ix->arena_len;
    h.total_size = ix->total_size;
    h.bad_entries = ix->bad_entries;
    h.stats = ix->stats;
    h.payload_crc = zran_crc32(zran_crc32(0, (const unsigned char *)nodes,
                                          ix->nnodes * sizeof *nodes),
                               (const unsigned char *)ix->arena, ix->arena_len);
    h.header_crc = header_crc(&h);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = write_all(fd, &h, sizeof h))
        || (rc = write_all(fd, nodes, ix->nnodes * sizeof *nodes))
        || (rc = write_all(fd, ix->arena, ix->arena_len)))
        goto out;
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    rc = rename(tmp, dest) < 0 ? -errno : 0;
out:
    if (rc)
        set_why(why, "%s: cannot save the index: %s", dest ? dest : ix->path,
                strerror(-rc));
    if (fd >= 0)
        close(fd);
    if (rc && tmp)
        unlink(tmp);
    free(nodes);
    free(tmp);
    free(dest);
    return rc;
}

int64_t aindex_saved_bytes(const struct aindex *ix)
{
    return (int64_t)(sizeof(struct idx_header) + (uint64_t)ix->nnodes * sizeof(struct idx_node)
                     + ix->arena_len);
}

static int read_all(int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EIO;
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

/* Every reference a node makes stays inside the table, the arena or the
 * archive, and children come after their directory (no cycles): the
 * readers trust nodes as they trust a freshly built index. */
static bool nodes_valid(const struct aindex *ix)
{
    const struct anode *root = &ix->nodes[ROOT];
    if (root->kind != KIND_DIR || root->name_len != 0)
        return false;
    for (uint64_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->name_off >= ix->arena_len || n->name_len > ix->arena_len - n->name_off - 1
            || ix->arena[n->name_off + n->name_len] != '\0'
            || memchr(ix->arena + n->name_off, '\0', n->name_len))
            return false;
        switch (n->kind) {
        case KIND_DIR:
            if (n->flags || (n->nchildren
                             && (n->first_child <= i || n->first_child > ix->nnodes
                                 || n->nchildren > ix->nnodes - n->first_child)))
                return false;
            break;
        case KIND_FILE:
            if (n->data > ix->map_len)
                return false;
            if ((n->flags & (NODE_DIRECT_STORED | NODE_DIRECT_DEFLATE))
                && (n->nchildren > ix->map_len - n->data || n->size > AINDEX_WINDOW))
                return false;
            if ((n->flags & (NODE_PLAIN | NODE_GZIP | NODE_BAD)) && ix->fmt == AFORMAT_ZIP)
                return false;
            if ((n->flags & NODE_PLAIN) && n->size > ix->map_len - n->data)
                return false;
            break;
        case KIND_INLINE:
            if (n->data > ix->arena_len || n->size > ix->arena_len - n->data)
                return false;
            break;
        default:
            return false;
        }
    }
    return true;
}

int aix_index_load(struct aindex *ix, const char *const *reserved)
{
    char *path;
    if (asprintf(&path, "%s.idx", ix->path) < 0)
        return -ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return -ENOENT;
    struct stat st;
    struct idx_header h, want;
    struct idx_node *raw = NULL;
    int rc = -EINVAL;
    fill_header(ix, reserved, &want);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof h
        || read_all(fd, &h, sizeof h, 0) != 0)
        goto out;
    if (memcmp(&h, &want, offsetof(struct idx_header, nnodes)) != 0
        || h.header_crc != header_crc(&h) || h.nnodes == 0 || h.nnodes > IDX_MAX_NODES
        || h.arena_len == 0 || h.arena_len > IDX_MAX_ARENA
        || (uint64_t)st.st_size != sizeof h + h.nnodes * sizeof *raw + h.arena_len)
        goto out;
    rc = -ENOMEM;
    raw = malloc(h.nnodes * sizeof *raw);
    ix->nodes = malloc(h.nnodes * sizeof *ix->nodes);
    ix->arena = malloc(h.arena_len);
    if (!raw || !ix->nodes || !ix->arena)
        goto out;
    rc = -EINVAL;
    if (read_all(fd, raw, h.nnodes * sizeof *raw, sizeof h)
        || read_all(fd, ix->arena, h.arena_len, (off_t)(sizeof h + h.nnodes * sizeof *raw)))
        goto out;
    uint32_t crc = zran_crc32(zran_crc32(0, (const unsigned char *)raw, h.nnodes * sizeof *raw),
                              (const unsigned char *)ix->arena, h.arena_len);
    if (crc != h.payload_crc)
        goto out;
    for (uint64_t i = 0; i < h.nnodes; i++) {
        const struct idx_node *s = &raw[i];
        ix->nodes[i] = (struct anode){.size = s->size, .data = s->data,
                                      .name_off = s->name_off, .mtime = s->mtime,
                                      .first_child = s->first_child,
                                      .nchildren = s->nchildren, .name_len = s->name_len,
                                      .kind = s->kind, .flags = s->flags};
    }
    ix->nnodes = (uint32_t)h.nnodes;
    ix->arena_len = h.arena_len;
    if (!nodes_valid(ix))
        goto out;
    ix->total_size = h.total_size;
    ix->bad_entries = h.bad_entries;
    ix->stats = h.stats;
    rc = 0;
out:
    close(fd);
    free(raw);
    if (rc)
        aix_tree_clear(ix);
    return rc;
}
