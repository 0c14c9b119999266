/*
 * archive_index: opening and freeing an index (aindex_open*, aindex_free):
 * maps the file, takes the tree from the "<name>.idx" sidecar or builds
 * it, finds the entries read through checkpoints and loads theirs; for
 * gzip files also measures the stream.  See archive_index.h for the
 * naming rules and the thread-safety contract.
 *
 * Layer: the top of the index side; calls archive_tree (build),
 * archive_persist (.idx), archive_ckpt and archive_points (checkpoints),
 * archive_base, zran (gzip headers).  Nothing below calls it.
 */
#include "archive_ckpt.h"
#include "why.h"
#include "archive_persist.h"
#include "archive_tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int aindex_open(const char *path, const char *const *reserved,
                struct aindex **out, char **why)
{
    return aindex_open_as(path, path, reserved, out, why);
}

/* A fresh index of the file at path, named name, mapped (a zip must be at
 * least an end record long; other formats may be empty). */
static int index_new(const char *path, const char *name, bool zip, struct aindex **out,
                     char **why)
{
    struct aindex *ix = calloc(1, sizeof *ix);
    *out = ix;
    if (!ix || !(ix->path = strdup(name ? name : path))) {
        set_why(why, "%s: out of memory", path);
        return -ENOMEM;
    }
    return aix_map_file(path, !zip, &ix->map, &ix->map_len, &ix->st, why);
}

int aindex_open_as(const char *path, const char *name, const char *const *reserved,
                   struct aindex **out, char **why)
{
    *out = NULL;
    if (why)
        *why = NULL;
    struct aindex *ix;
    int rc = index_new(path, name, true, &ix, why);
    if (rc)
        goto fail;
    rc = aix_index_load(ix, reserved);
    if (rc == -ENOMEM) {
        set_why(why, "%s: out of memory", path);
        goto fail;
    }
    if (rc == 0)
        ix->from_sidecar = true;
    else if ((rc = aix_tree_build_zip(ix, path, reserved, why)))
        goto fail;
    if ((rc = aix_ckpt_find_entries(ix))) {
        set_why(why, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    if (ix->ck)
        aix_ckpt_load(ix);
    *out = ix;
    return 0;

fail:
    aindex_free(ix);
    return rc;
}

void aindex_free(struct aindex *ix)
{
    if (!ix)
        return;
    if (ix->map)
        munmap((void *)ix->map, ix->map_len);
    aix_ckpt_free(ix->ck);
    free(ix->bad_why);
    free(ix->nodes);
    free(ix->arena);
    free(ix->path);
    free(ix);
}

/* ------------------------------------------------- single-file formats */

static uint64_t single_hash(enum aformat fmt, const char *name, time_t mtime)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    unsigned char buf[16];
    int64_t t = (int64_t)mtime;
    memcpy(buf, &t, 8);
    uint32_t f = (uint32_t)fmt + 1;
    memcpy(buf + 8, &f, 4);
    memset(buf + 12, 0, 4);
    for (size_t i = 0; i < sizeof buf; i++)
        h = (h ^ buf[i]) * 1099511628211ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

/* The single file node of a PLAIN/GZIP index (NO_NODE if the tree is not
 * one file of that format, e.g. a stale .idx). */
static uint32_t single_node(const struct aindex *ix, uint64_t data)
{
    uint32_t found = NO_NODE;
    uint8_t want = ix->fmt == AFORMAT_PLAIN ? NODE_PLAIN : NODE_GZIP;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_DIR)
            continue;
        if (found != NO_NODE || n->kind != KIND_FILE || !(n->flags & want) || n->data != data
            || (ix->fmt == AFORMAT_PLAIN && (n->flags != NODE_PLAIN || n->size != ix->map_len))
            || (ix->fmt == AFORMAT_GZIP && (n->flags & ~(NODE_GZIP | NODE_BAD))))
            return NO_NODE;
        found = i;
    }
    return found;
}

/* The gzip data's bigent: from the .idx's node, else measured (by the
 * .ckpt sidecar, or inflating the members once while their points are
 * built, every trailer checked).  Data that fails makes the node NODE_BAD. */
static int gzip_setup(struct aindex *ix, uint32_t fi, uint64_t data)
{
    struct anode *n = &ix->nodes[fi];
    uint64_t csize = ix->map_len - data;
    char *err = NULL;
    int rc;
    if (ix->from_sidecar) {
        bool bad = n->flags & NODE_BAD;
        if ((rc = aix_ckpt_single(ix, data, csize, n->size, bad ? 0 : n->first_child)))
            return rc;
        if (bad)
            aix_ckpt_single_bad(ix, "the gzip stream failed its checks when it was indexed");
        else
            aix_ckpt_load(ix);
        return 0;
    }
    if ((rc = aix_ckpt_single(ix, data, csize, UINT64_MAX, 0)))
        return rc;
    aix_ckpt_load(ix); /* the sidecar knows the size: no inflate */
    struct bigent *e = aix_ckpt_single_entry(ix);
    const struct zset *s = atomic_load(&e->set);
    uint64_t stream_len = 0, produced = 0;
    if (s) {
        /* Written after a build that checked every trailer (and bound to
         * this file's size and mtime): the last trailer ends the file. */
        stream_len = s->stream_len;
        rc = csize - stream_len == 8 ? 0 : -EIO;
        if (rc)
            set_why(&err, "checkpoints do not end at the gzip trailer");
    } else
        rc = aix_ckpt_build_measure(ix, &stream_len, &produced, &err);
    if (rc == -ENOMEM) {
        free(err);
        return rc;
    }
    if (rc) {
        uint64_t size = e->usize && e->usize != UINT64_MAX ? e->usize : 1;
        n->flags |= NODE_BAD;
        n->size = size;
        n->first_child = 0;
        e->usize = size;
        const char *text = err ? err : "the gzip stream is unreadable";
        aix_ckpt_single_bad(ix, text);
        ix->bad_why = strdup(text);
        free(err);
        if (!ix->bad_why)
            return -ENOMEM;
    } else {
        n->size = e->usize;
        n->first_child = e->crc;
    }
    ix->total_size = n->size;
    return 0;
}


int aindex_open_format(const char *path, const char *name, enum aformat fmt,
                       const struct aindex_single *single, const char *const *reserved,
                       struct aindex **out, char **why)
{
    if (fmt == AFORMAT_ZIP)
        return aindex_open_as(path, name, reserved, out, why);
    *out = NULL;
    if (why)
        *why = NULL;
    if ((fmt != AFORMAT_GZIP && fmt != AFORMAT_PLAIN) || !single) {
        set_why(why, "%s: unknown format, or no name for its file", path);
        return -EINVAL;
    }
    const char *ename = single->entry_name ? single->entry_name : "";
    struct aindex *ix;
    char *err = NULL;
    int rc = index_new(path, name, false, &ix, why);
    if (rc)
        goto fail;
    ix->fmt = fmt;
    ix->single_hash = single_hash(fmt, ename, single->mtime);
    uint64_t data = 0;
    if (fmt == AFORMAT_GZIP
        && (rc = zran_gzip_header(ix->map, ix->map_len, &data, &err))) {
        set_why(why, "%s: not a readable gzip file: %s", path, err ? err : "bad header");
        free(err);
        goto fail;
    }
    uint32_t fi = NO_NODE;
    rc = aix_index_load(ix, reserved);
    if (rc == -ENOMEM) {
        set_why(why, "%s: out of memory", path);
        goto fail;
    }
    if (rc == 0 && (fi = single_node(ix, data)) != NO_NODE) {
        ix->from_sidecar = true;
    } else {
        uint8_t flags = fmt == AFORMAT_PLAIN ? NODE_PLAIN : NODE_GZIP;
        if ((rc = aix_tree_build_single(ix, reserved, ename, flags,
                                        fmt == AFORMAT_PLAIN ? ix->map_len : 0, data,
                                        (int64_t)single->mtime)))
            goto nomem;
        fi = single_node(ix, data);
        if (fi == NO_NODE) {
            rc = -EIO;
            set_why(why, "%s: internal error: no file node", path);
            goto fail;
        }
    }
    if (fmt == AFORMAT_GZIP && (rc = gzip_setup(ix, fi, data)))
        goto nomem;
    *out = ix;
    return 0;
nomem:
    set_why(why, "%s: %s", path, strerror(-rc));
fail:
    aindex_free(ix);
    return rc;
}
