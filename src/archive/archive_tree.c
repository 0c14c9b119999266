/*
 * archive_tree: builds the cleaned tree.  While building, nodes live in a
 * hash of (parent, name) with unsorted child lists (archive order, with
 * "last one wins" for duplicates, directories over files, hard links
 * resolved after the walk); finalize() renumbers them breadth-first with
 * sorted children into the immutable struct aindex layout (archive_nodes.h).
 * Memory is ~50 bytes per node plus its name.
 *
 * Layer: calls archive_names (name rules), archive_zip (which small
 * entries are direct), archive_nodes, archive_base (libarchive over the
 * mapping).
 */
#include "archive_tree.h"
#include "why.h"
#include "archive_names.h"
#include "archive_zip.h"

#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINK_TARGET 4095
#define MAX_LINK_TOTAL ((uint64_t)64 << 20)

/* ------------------------------------------------------------- builder */

struct bnode {
    uint64_t size;
    uint64_t data;
    uint64_t name_off;
    int64_t mtime;
    uint32_t parent;
    uint32_t first_child; /* head of the (unsorted) child list */
    uint32_t next_sibling;
    uint16_t name_len;
    uint8_t kind;
    uint8_t flags;
    bool explicit_dir;
};

struct pending_link {
    char *path;   /* the hard link's own raw name */
    char *target; /* raw name of what it links to */
    int64_t mtime;
};

struct builder {
    struct bnode *nodes;
    uint32_t n, cap;
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *slots;  /* hash of (parent, name) -> node; NO_NODE = empty */
    size_t nslots;    /* power of two */
    uint64_t link_bytes;
    struct pending_link *links;
    size_t nlinks, links_cap;
    const char *const *reserved;
    struct aindex_stats stats;
    uint64_t bad_entries; /* unreadable, not for being encrypted */
    struct clean_path cp;
};

/* What one archive entry contributes. */
struct payload {
    uint8_t kind;
    uint8_t flags;
    uint64_t size;
    uint64_t data;
    int64_t mtime;
};

static uint64_t name_hash(uint32_t parent, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)parent * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int arena_add(struct builder *b, const void *s, size_t n, uint64_t *off)
{
    if (b->arena_len + n + 1 > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap : 4096;
        while (cap < b->arena_len + n + 1)
            cap *= 2;
        char *p = realloc(b->arena, cap);
        if (!p)
            return -ENOMEM;
        b->arena = p;
        b->arena_cap = cap;
    }
    *off = b->arena_len;
    memcpy(b->arena + b->arena_len, s, n);
    b->arena[b->arena_len + n] = '\0';
    b->arena_len += n + 1;
    return 0;
}

static int grow_slots(struct builder *b)
{
    size_t nslots = b->nslots ? b->nslots * 2 : 1024;
    uint32_t *slots = malloc(nslots * sizeof *slots);
    if (!slots)
        return -ENOMEM;
    memset(slots, 0xFF, nslots * sizeof *slots);
    for (uint32_t id = 1; id < b->n; id++) {
        const struct bnode *bn = &b->nodes[id];
        size_t i = name_hash(bn->parent, b->arena + bn->name_off, bn->name_len)
                   & (nslots - 1);
        while (slots[i] != NO_NODE)
            i = (i + 1) & (nslots - 1);
        slots[i] = id;
    }
    free(b->slots);
    b->slots = slots;
    b->nslots = nslots;
    return 0;
}

static uint32_t find_child(const struct builder *b, uint32_t parent,
                           const char *s, size_t n)
{
    if (!b->nslots)
        return NO_NODE;
    size_t i = name_hash(parent, s, n) & (b->nslots - 1);
    for (uint32_t id; (id = b->slots[i]) != NO_NODE; i = (i + 1) & (b->nslots - 1)) {
        const struct bnode *bn = &b->nodes[id];
        if (bn->parent == parent && bn->name_len == n
            && memcmp(b->arena + bn->name_off, s, n) == 0)
            return id;
    }
    return NO_NODE;
}

/* Creates an empty directory node under parent; returns its id in *id. */
static int add_child(struct builder *b, uint32_t parent, const char *s, size_t n,
                     uint32_t *id)
{
    if (b->n >= UINT32_MAX - 1)
        return -EFBIG;
    if ((size_t)(b->n + 1) * 2 > b->nslots) {
        int rc = grow_slots(b);
        if (rc)
            return rc;
    }
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? (b->cap > UINT32_MAX / 2 ? UINT32_MAX : b->cap * 2) : 1024;
        struct bnode *p = realloc(b->nodes, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        b->nodes = p;
        b->cap = cap;
    }
    uint64_t off;
    int rc = arena_add(b, s, n, &off);
    if (rc)
        return rc;
    uint32_t nid = b->n++;
    struct bnode *bn = &b->nodes[nid];
    memset(bn, 0, sizeof *bn);
    bn->name_off = off;
    bn->name_len = (uint16_t)n;
    bn->parent = parent;
    bn->kind = KIND_DIR;
    bn->first_child = NO_NODE;
    bn->next_sibling = b->nodes[parent].first_child;
    b->nodes[parent].first_child = nid;
    size_t i = name_hash(parent, s, n) & (b->nslots - 1);
    while (b->slots[i] != NO_NODE)
        i = (i + 1) & (b->nslots - 1);
    b->slots[i] = nid;
    *id = nid;
    return 0;
}

/* An implicit directory's mtime is the newest below it; an explicit one's
 * is its own entry's. */
static void touch_implicit(struct bnode *bn, int64_t mtime)
{
    if (!bn->explicit_dir && mtime > bn->mtime)
        bn->mtime = mtime;
}

/* Inserts the entry whose cleaned path is in b->cp. */
static int insert_entry(struct builder *b, const struct payload *pl)
{
    const struct clean_path *cp = &b->cp;
    uint32_t cur = ROOT;
    int rc;
    touch_implicit(&b->nodes[ROOT], pl->mtime);
    if (cp->ncomp == 0) {
        if (pl->kind == KIND_DIR) {
            b->nodes[ROOT].explicit_dir = true;
            b->nodes[ROOT].mtime = pl->mtime;
        } else
            b->stats.skipped_bad_name++;
        return 0;
    }
    for (size_t c = 0; c < cp->ncomp; c++) {
        const char *s = cp->buf + cp->comp_off[c];
        size_t n = cp->comp_len[c];
        bool last = c + 1 == cp->ncomp;
        uint32_t id = find_child(b, cur, s, n);
        if (id == NO_NODE) {
            if ((rc = add_child(b, cur, s, n, &id)))
                return rc;
            struct bnode *bn = &b->nodes[id];
            bn->mtime = pl->mtime;
            if (last) {
                bn->kind = pl->kind;
                bn->flags = pl->flags;
                bn->size = pl->size;
                bn->data = pl->data;
                bn->explicit_dir = pl->kind == KIND_DIR;
            }
            cur = id;
            continue;
        }
        struct bnode *bn = &b->nodes[id];
        if (!last || pl->kind == KIND_DIR) {
            if (bn->kind != KIND_DIR) {
                /* The directory wins over a file of the same path. */
                b->stats.shadowed_by_dir++;
                bn->kind = KIND_DIR;
                bn->flags = 0;
                bn->size = bn->data = 0;
                bn->mtime = pl->mtime;
            }
            if (last) {
                bn->explicit_dir = true;
                bn->mtime = pl->mtime;
            } else
                touch_implicit(bn, pl->mtime);
        } else if (bn->kind == KIND_DIR) {
            b->stats.shadowed_by_dir++;
        } else {
            /* Last one wins, like unzip. */
            b->stats.replaced_duplicate++;
            bn->kind = pl->kind;
            bn->flags = pl->flags;
            bn->size = pl->size;
            bn->data = pl->data;
            bn->mtime = pl->mtime;
        }
        cur = id;
    }
    return 0;
}

/* Cleans raw into b->cp, counting what the rules did; false = skip it. */
static bool clean_entry_name(struct builder *b, const char *raw)
{
    switch (aix_clean_name(raw, b->reserved, &b->cp)) {
    case CLEAN_TOO_DEEP:
        b->stats.skipped_too_deep++;
        return false;
    case CLEAN_TOO_LONG:
        b->stats.skipped_too_long++;
        return false;
    case CLEAN_OK:
        break;
    }
    if (b->cp.truncated)
        b->stats.truncated_names++;
    if (b->cp.renamed)
        b->stats.renamed_reserved++;
    return true;
}

/* Follows a cleaned path in the builder's tree. */
static uint32_t builder_lookup(const struct builder *b, const struct clean_path *cp)
{
    uint32_t cur = ROOT;
    for (size_t c = 0; c < cp->ncomp && cur != NO_NODE; c++)
        cur = find_child(b, cur, cp->buf + cp->comp_off[c], cp->comp_len[c]);
    return cur;
}

static int resolve_hardlinks(struct builder *b)
{
    for (size_t i = 0; i < b->nlinks; i++) {
        struct pending_link *pl = &b->links[i];
        if (!clean_entry_name(b, pl->target)) {
            b->stats.skipped_hardlink++;
            continue;
        }
        uint32_t t = builder_lookup(b, &b->cp);
        if (t == NO_NODE || b->nodes[t].kind != KIND_FILE) {
            b->stats.skipped_hardlink++;
            continue;
        }
        struct payload p = {
            .kind = KIND_FILE, .flags = b->nodes[t].flags, .size = b->nodes[t].size,
            .data = b->nodes[t].data, .mtime = pl->mtime,
        };
        if (!clean_entry_name(b, pl->path)) /* counted there */
            continue;
        int rc = insert_entry(b, &p);
        if (rc)
            return rc;
    }
    return 0;
}

static int defer_hardlink(struct builder *b, const char *path, const char *target,
                          int64_t mtime)
{
    if (b->nlinks == b->links_cap) {
        size_t cap = b->links_cap ? b->links_cap * 2 : 16;
        struct pending_link *p = realloc(b->links, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        b->links = p;
        b->links_cap = cap;
    }
    struct pending_link *pl = &b->links[b->nlinks];
    pl->path = strdup(path);
    pl->target = strdup(target);
    pl->mtime = mtime;
    if (!pl->path || !pl->target) {
        free(pl->path);
        free(pl->target);
        return -ENOMEM;
    }
    b->nlinks++;
    return 0;
}

static void builder_free(struct builder *b)
{
    free(b->nodes);
    free(b->arena);
    free(b->slots);
    for (size_t i = 0; i < b->nlinks; i++) {
        free(b->links[i].path);
        free(b->links[i].target);
    }
    free(b->links);
}

static int cmp_bnode_ids(const void *x, const void *y, void *ctx)
{
    const struct builder *b = ctx;
    const struct bnode *p = &b->nodes[*(const uint32_t *)x];
    const struct bnode *q = &b->nodes[*(const uint32_t *)y];
    return aix_cmp_names(b->arena + p->name_off, p->name_len, b->arena + q->name_off,
                     q->name_len);
}

/* Renumbers the tree breadth-first with sorted children: the final node
 * array, where each directory's children are one contiguous range. */
static int finalize(struct builder *b, struct aindex *ix)
{
    uint32_t n = b->n;
    uint32_t *order = malloc((size_t)n * sizeof *order);
    struct anode *nodes = calloc(n, sizeof *nodes);
    if (!order || !nodes) {
        free(order);
        free(nodes);
        return -ENOMEM;
    }
    uint32_t tail = 1;
    order[0] = ROOT;
    for (uint32_t head = 0; head < tail; head++) {
        const struct bnode *bn = &b->nodes[order[head]];
        struct anode *an = &nodes[head];
        an->name_off = bn->name_off;
        an->name_len = bn->name_len;
        an->kind = bn->kind;
        an->flags = bn->flags;
        an->mtime = bn->mtime;
        if (bn->kind != KIND_DIR) {
            an->size = bn->size;
            an->data = bn->data;
            ix->total_size += bn->size;
            continue;
        }
        uint32_t first = tail;
        for (uint32_t c = bn->first_child; c != NO_NODE; c = b->nodes[c].next_sibling)
            order[tail++] = c;
        /* The list was built by prepending: reverse to archive order, which
         * is usually sorted already, so the check below skips the sort. */
        for (uint32_t i = first, j = tail - 1; i < j; i++, j--) {
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        bool sorted = true;
        for (uint32_t i = first + 1; i < tail && sorted; i++)
            sorted = cmp_bnode_ids(&order[i - 1], &order[i], b) < 0;
        if (!sorted)
            qsort_r(order + first, tail - first, sizeof *order, cmp_bnode_ids, b);
        an->first_child = first;
        an->nchildren = tail - first;
    }
    free(order);
    ix->nodes = nodes;
    ix->nnodes = n;
    /* The arena is handed over; shrink it to what is used. */
    char *arena = realloc(b->arena, b->arena_len ? b->arena_len : 1);
    ix->arena = arena ? arena : b->arena;
    ix->arena_len = b->arena_len;
    b->arena = NULL;
    return 0;
}

/* Size of an entry whose header carries none: decompress and count. */
static int count_data(struct archive *a, uint64_t *size)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    uint64_t total = 0;
    for (;;) {
        int r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return -EIO;
        total += len;
    }
    *size = total;
    return 0;
}

/* One archive header into the builder. */
static int add_archive_entry(struct builder *b, struct archive *a,
                             struct archive_entry *e)
{
    char *tmp_name = NULL, *tmp_other = NULL;
    int rc = 0;
    const char *name = aix_entry_string(archive_entry_pathname(e),
                                    archive_entry_pathname_utf8(e),
                                    archive_entry_pathname_w(e), &tmp_name);
    int64_t mtime = archive_entry_mtime_is_set(e) ? (int64_t)archive_entry_mtime(e) : 0;
    struct payload pl = {.mtime = mtime};

    if (!name) {
        b->stats.skipped_bad_name++;
        goto out;
    }
    const char *hardlink = aix_entry_string(archive_entry_hardlink(e),
                                        archive_entry_hardlink_utf8(e),
                                        archive_entry_hardlink_w(e), &tmp_other);
    if (hardlink) {
        rc = defer_hardlink(b, name, hardlink, mtime);
        goto out;
    }
    switch (archive_entry_filetype(e)) {
    case AE_IFDIR:
        pl.kind = KIND_DIR;
        break;
    case AE_IFREG:
        pl.kind = KIND_FILE;
        /* Where the data starts: the reader's anchor. */
        pl.data = (uint64_t)archive_filter_bytes(a, 0);
        if (archive_entry_is_data_encrypted(e))
            pl.flags |= NODE_ENCRYPTED;
        if (archive_entry_size_is_set(e) && archive_entry_size(e) >= 0)
            pl.size = (uint64_t)archive_entry_size(e);
        else if (pl.flags & NODE_ENCRYPTED || count_data(a, &pl.size) != 0) {
            b->stats.skipped_unreadable++;
            b->bad_entries += !(pl.flags & NODE_ENCRYPTED);
            goto out;
        }
        break;
    case AE_IFLNK: {
        const char *target = aix_entry_string(archive_entry_symlink(e),
                                          archive_entry_symlink_utf8(e),
                                          archive_entry_symlink_w(e), &tmp_other);
        size_t tlen = target ? strlen(target) : 0;
        if (!target || tlen > MAX_LINK_TARGET || b->link_bytes + tlen > MAX_LINK_TOTAL) {
            b->stats.skipped_type++;
            goto out;
        }
        if ((rc = arena_add(b, target, tlen, &pl.data)))
            goto out;
        b->link_bytes += tlen;
        pl.kind = KIND_INLINE;
        pl.size = tlen;
        break;
    }
    default:
        b->stats.skipped_type++;
        goto out;
    }
    if (clean_entry_name(b, name))
        rc = insert_entry(b, &pl);
out:
    free(tmp_name);
    free(tmp_other);
    return rc;
}

/* The builder's root node. */
static int builder_root(struct builder *b)
{
    b->cap = 1024;
    b->nodes = malloc(b->cap * sizeof *b->nodes);
    uint64_t root_name;
    if (!b->nodes || arena_add(b, "", 0, &root_name) || grow_slots(b))
        return -ENOMEM;
    memset(&b->nodes[0], 0, sizeof b->nodes[0]);
    b->nodes[0].kind = KIND_DIR;
    b->nodes[0].first_child = b->nodes[0].next_sibling = NO_NODE;
    b->nodes[0].parent = NO_NODE;
    b->nodes[0].name_off = root_name;
    b->n = 1;
    return 0;
}

/* Names are decoded by libarchive according to the thread's locale:
 * pinning it to C.UTF-8 for the index pass makes names independent of the
 * process's locale (raw bytes for non-UTF-8-flagged names, UTF-8 kept as
 * is for flagged ones). */
static locale_t pin_utf8_locale(locale_t *saved)
{
    locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (loc == (locale_t)0)
        loc = newlocale(LC_CTYPE_MASK, "C.utf8", (locale_t)0);
    *saved = loc != (locale_t)0 ? uselocale(loc) : (locale_t)0;
    return loc;
}

static void unpin_locale(locale_t loc, locale_t saved)
{
    if (loc != (locale_t)0) {
        uselocale(saved);
        freelocale(loc);
    }
}

/* Flags the small stored/deflate files that can be read straight from the
 * mapping (NODE_DIRECT_*): exactly one central directory record starts
 * its data there, and it agrees with the index and the local header
 * (aix_zip_direct_ok, as aindex_verify_rest decides).  0 or -ENOMEM. */
static int mark_direct(struct aindex *ix)
{
    size_t nc = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_FILE && !(n->flags & NODE_ENCRYPTED) && n->size > 0
            && n->size <= AINDEX_WINDOW)
            nc++;
    }
    if (!nc)
        return 0;
    struct cdmatch *c = calloc(nc, sizeof *c);
    if (!c)
        return -ENOMEM;
    nc = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_FILE && !(n->flags & NODE_ENCRYPTED) && n->size > 0
            && n->size <= AINDEX_WINDOW)
            c[nc++] = (struct cdmatch){.data = n->data, .node = i};
    }
    if (aix_cd_match(ix->map, ix->map_len, c, nc) == 0) {
        for (size_t i = 0; i < nc; i++) {
            struct anode *n = &ix->nodes[c[i].node];
            const struct cdrec *r = &c[i].rec;
            if (c[i].nrec != 1 || r->csize > UINT32_MAX
                || !aix_zip_direct_ok(ix->map, ix->map_len, n->size, r))
                continue;
            n->flags |= r->method == 0 ? NODE_DIRECT_STORED : NODE_DIRECT_DEFLATE;
            n->first_child = r->crc;
            n->nchildren = (uint32_t)r->csize;
        }
    }
    free(c);
    return 0;
}

/* Every header of the archive into b (libarchive's seekable reader: the
 * central directory is authoritative). */
static int walk_zip(struct builder *b, const struct aindex *ix, const char *path, char **why)
{
    struct archive_entry *e = archive_entry_new();
    struct archive *a = NULL;
    locale_t saved = (locale_t)0, loc = pin_utf8_locale(&saved);
    int rc = 0;
    struct view v = {.base = ix->map, .len = (int64_t)ix->map_len};
    if (!e) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", path);
        goto out;
    }
    if (aix_open_view(&v, true, &a) != ARCHIVE_OK) {
        rc = !a || archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
        set_why(why, "%s: not a readable zip archive: %s", path, aix_archive_err(a));
        goto out;
    }
    for (;;) {
        int r = archive_read_next_header2(a, e);
        if (r == ARCHIVE_EOF)
            break;
        if (r == ARCHIVE_FATAL || r == ARCHIVE_RETRY) {
            rc = archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
            set_why(why, "%s: unreadable zip (after %ju entries): %s", path,
                    (uintmax_t)b->stats.entries_seen, aix_archive_err(a));
            goto out;
        }
        b->stats.entries_seen++;
        if (r == ARCHIVE_FAILED) {
            b->stats.skipped_unreadable++;
            b->bad_entries++;
            continue;
        }
        if ((rc = add_archive_entry(b, a, e))) {
            set_why(why, "%s: %s (after %ju entries)", path, strerror(-rc),
                    (uintmax_t)b->stats.entries_seen);
            goto out;
        }
    }
out:
    unpin_locale(loc, saved);
    if (a)
        archive_read_free(a);
    archive_entry_free(e);
    return rc;
}

int aix_tree_build_zip(struct aindex *ix, const char *path, const char *const *reserved,
                       char **why)
{
    struct builder *b = calloc(1, sizeof *b);
    int rc;
    if (!b || (rc = builder_root(b))) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", path);
        goto out;
    }
    b->reserved = reserved;
    if ((rc = walk_zip(b, ix, path, why)))
        goto out;
    if ((rc = resolve_hardlinks(b)) || (rc = finalize(b, ix))) {
        set_why(why, "%s: %s", path, strerror(-rc));
        goto out;
    }
    ix->stats = b->stats;
    ix->bad_entries = b->bad_entries;
    if ((rc = mark_direct(ix)))
        set_why(why, "%s: %s", path, strerror(-rc));
out:
    if (b)
        builder_free(b);
    free(b);
    return rc;
}

int aix_tree_build_single(struct aindex *ix, const char *const *reserved,
                          const char *entry_name, uint8_t flags, uint64_t size, uint64_t data,
                          int64_t mtime)
{
    aix_tree_clear(ix);
    struct builder *b = calloc(1, sizeof *b);
    int rc = -ENOMEM;
    if (!b || builder_root(b))
        goto out;
    b->reserved = reserved;
    b->stats.entries_seen = 1;
    struct payload pl = {
        .kind = KIND_FILE, .flags = flags, .size = size, .data = data, .mtime = mtime,
    };
    /* A name the rules would drop (empty, too deep or long) is shown
     * as "data.csv": the file's one entry is never hidden. */
    if (!clean_entry_name(b, entry_name) || b->cp.ncomp == 0)
        clean_entry_name(b, "data.csv");
    if ((rc = insert_entry(b, &pl)) || (rc = finalize(b, ix)))
        goto out;
    ix->stats = b->stats;
out:
    if (b)
        builder_free(b);
    free(b);
    return rc;
}
