/*
 * archive_nodes: the queries on the cleaned tree (aindex_root,
 * aindex_lookup, anode_*, counts), the tree's reset and node paths for
 * messages.  Layer: above archive_base (through its header only); calls
 * nothing.
 */
#include "archive_nodes.h"
#include "archive_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aix_tree_clear(struct aindex *ix)
{
    free(ix->nodes);
    free(ix->arena);
    ix->nodes = NULL;
    ix->arena = NULL;
    ix->nnodes = 0;
    ix->arena_len = 0;
    ix->total_size = 0;
    memset(&ix->stats, 0, sizeof ix->stats);
}

int aix_cmp_names(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

const struct anode *aindex_root(const struct aindex *ix) { return &ix->nodes[ROOT]; }
int anode_is_dir(const struct anode *n) { return n->kind == KIND_DIR; }
uint64_t anode_size(const struct anode *n) { return n->kind == KIND_DIR ? 0 : n->size; }
time_t anode_mtime(const struct anode *n) { return (time_t)n->mtime; }
size_t anode_child_count(const struct anode *n) { return n->kind == KIND_DIR ? n->nchildren : 0; }
uint64_t aindex_entry_count(const struct aindex *ix) { return ix->nnodes - 1; }
uint64_t aindex_total_size(const struct aindex *ix) { return ix->total_size; }
const struct aindex_stats *aindex_stats(const struct aindex *ix) { return &ix->stats; }
int aindex_from_sidecar(const struct aindex *ix) { return ix->from_sidecar; }

const char *anode_name(const struct aindex *ix, const struct anode *n)
{
    return ix->arena + n->name_off;
}

const struct anode *anode_child(const struct aindex *ix, const struct anode *dir, size_t i)
{
    if (dir->kind != KIND_DIR || i >= dir->nchildren)
        return NULL;
    return &ix->nodes[dir->first_child + i];
}

const struct anode *aindex_lookup(const struct aindex *ix, const char *relpath)
{
    const struct anode *cur = &ix->nodes[ROOT];
    const char *p = relpath;
    while (*p) {
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (*p == '/')
            p++;
        if (n == 0)
            continue;
        if (cur->kind != KIND_DIR)
            return NULL;
        size_t lo = 0, hi = cur->nchildren;
        const struct anode *found = NULL;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const struct anode *c = &ix->nodes[cur->first_child + mid];
            int cmp = aix_cmp_names(ix->arena + c->name_off, c->name_len, s, n);
            if (cmp == 0) {
                found = c;
                break;
            }
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (!found)
            return NULL;
        cur = found;
    }
    return cur;
}

void aix_node_path(const struct aindex *ix, uint32_t idx, char *buf, size_t cap)
{
    uint32_t chain[MAX_DEPTH + 2];
    size_t depth = 0;
    while (idx != ROOT && depth < MAX_DEPTH + 1) {
        chain[depth++] = idx;
        uint32_t parent = ROOT;
        for (uint32_t d = 0; d < idx; d++) { /* only on errors: a scan is fine */
            const struct anode *n = &ix->nodes[d];
            if (n->kind == KIND_DIR && idx >= n->first_child
                && idx - n->first_child < n->nchildren) {
                parent = d;
                break;
            }
        }
        idx = parent;
    }
    size_t at = 0;
    buf[0] = '\0';
    while (depth-- > 0 && at + 1 < cap) {
        int k = snprintf(buf + at, cap - at, "%s%s", at ? "/" : "",
                         ix->arena + ix->nodes[chain[depth]].name_off);
        if (k < 0)
            break;
        at += (size_t)k < cap - at ? (size_t)k : cap - at - 1;
    }
}
