/*
 * archive_index: the public index API -- builds the cleaned, immutable tree
 * of one zip archive (name rules, builder, aindex_open/free) and answers
 * queries on it (aindex_lookup, anode_*).  Also owns the shared low-level
 * helpers (mapping the zip, libarchive over a mapping).  See
 * archive_index.h for the naming rules and thread-safety contract, and
 * archive_internal.h for what the archive_*.c files share.
 *
 * Layout (memory is ~50 bytes per node plus its name):
 *   - all nodes live in one array, numbered breadth-first so that every
 *     directory's children are contiguous and sorted by name; lookup is a
 *     binary search per component;
 *   - all names (NUL-terminated) and symlink targets live in one arena.
 *
 * Large deflate entries bypass libarchive: see archive_ckpt.c.  Reads of
 * entries: see archive_reader.c.
 */
#include "archive_internal.h"

/* ---------------------------------------------------------------- utils */

void aix_set_why(char **why, const char *fmt, ...)
{
    va_list ap;
    if (!why)
        return;
    va_start(ap, fmt);
    if (vasprintf(why, fmt, ap) < 0)
        *why = NULL;
    va_end(ap);
    /* Some libarchive messages end in a newline. */
    for (size_t n = *why ? strlen(*why) : 0; n > 0 && (*why)[n - 1] == '\n'; n--)
        (*why)[n - 1] = '\0';
}

const char *aix_archive_err(struct archive *a)
{
    const char *s = a ? archive_error_string(a) : NULL;
    return s ? s : "unknown libarchive error";
}

/* The archive file, mapped read-only.  An empty file cannot be mapped and
 * is not a zip anyway. */
int aix_map_file(const char *path, const unsigned char **map, size_t *len,
                 struct stat *stp, char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        aix_set_why(why, "%s: open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        aix_set_why(why, "%s: stat: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 22) {
        close(fd);
        aix_set_why(why, "%s: not a zip archive (too short or not a file)", path);
        return -EIO;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        aix_set_why(why, "%s: mmap: %s", path, strerror(e));
        return e == ENOMEM ? -ENOMEM : -EIO;
    }
    *map = p;
    *len = (size_t)st.st_size;
    if (stp)
        *stp = st;
    return 0;
}

/* Drops [lo, hi) of the mapping [map, map + map_len) from this process's
 * page tables (not from the page cache: the mapping is shared and
 * read-only, the next access faults the same bytes back in).  Clamped to
 * whole pages inside the mapping: never touches any other memory. */
void aix_release_range(const unsigned char *map, size_t map_len, uintptr_t lo, uintptr_t hi)
{
    uintptr_t base = (uintptr_t)map, top = base + map_len;
    if (lo < base)
        lo = base;
    if (hi > top)
        hi = top;
    lo = (lo + 4095) & ~(uintptr_t)4095;
    hi &= ~(uintptr_t)4095;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ------------------------------------------- libarchive over a mapping */

static la_ssize_t view_read(struct archive *a, void *cd, const void **buf)
{
    (void)a;
    struct view *v = cd;
    /* libarchive is done with the previous block (its pointer is valid
     * only until this call): out of our RSS. */
    if (v->prev_len)
        aix_release_range(v->base, (size_t)v->len, (uintptr_t)(v->base + v->prev),
                          (uintptr_t)(v->base + v->prev + v->prev_len));
    v->prev_len = 0;
    if (v->pos >= v->len)
        return 0;
    int64_t n = v->len - v->pos;
    if (n > (int64_t)VIEW_BLOCK)
        n = (int64_t)VIEW_BLOCK;
    *buf = v->base + v->pos;
    v->prev = v->pos;
    v->prev_len = n;
    v->pos += n;
    return (la_ssize_t)n;
}

static la_int64_t view_skip(struct archive *a, void *cd, la_int64_t request)
{
    (void)a;
    struct view *v = cd;
    int64_t n = v->len - v->pos;
    if (request < n)
        n = request;
    if (n < 0)
        n = 0;
    v->pos += n;
    return n;
}

static la_int64_t view_seek(struct archive *a, void *cd, la_int64_t off, int whence)
{
    (void)a;
    struct view *v = cd;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? v->pos : v->len;
    int64_t to = base + off;
    if (to < 0 || to > v->len)
        return ARCHIVE_FATAL;
    v->pos = to;
    return to;
}

/* A reader over v (which must outlive it).  seekable: central-directory
 * reader over the whole file; else the streamable reader.  Returns
 * ARCHIVE_OK with *out set; on failure *out may still hold the archive
 * (for its error text; the caller frees it) or NULL (out of memory). */
int aix_open_view(struct view *v, bool seekable, struct archive **out)
{
    struct archive *a = archive_read_new();
    *out = a;
    if (!a)
        return ARCHIVE_FATAL;
    if ((seekable ? archive_read_support_format_zip_seekable(a)
                  : archive_read_support_format_zip_streamable(a)) != ARCHIVE_OK
        || archive_read_set_read_callback(a, view_read) != ARCHIVE_OK
        || archive_read_set_skip_callback(a, view_skip) != ARCHIVE_OK
        || archive_read_set_seek_callback(a, view_seek) != ARCHIVE_OK
        || archive_read_set_callback_data(a, v) != ARCHIVE_OK)
        return ARCHIVE_FATAL;
    return archive_read_open1(a);
}

/* ----------------------------------------------------------- name rules */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if the
 * bytes there are not valid UTF-8 (overlongs and surrogates included). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Appends one cleaned component: escapes, cuts to 255 bytes at a token
 * boundary, renames reserved root names. */
static void append_component(struct clean_path *cp, const unsigned char *s,
                             size_t n, const char *const *reserved)
{
    static const char hex[] = "0123456789ABCDEF";
    char out[MAX_COMPONENT_BYTES + 1];
    size_t olen = 0;
    bool cut = false;
    for (size_t i = 0; i < n;) {
        size_t seq = utf8_seq_len(s + i, n - i);
        bool escape = seq == 0 || (seq == 1 && (s[i] < 0x20 || s[i] == 0x7F));
        size_t tok = escape ? 3 : seq;
        if (olen + tok > MAX_COMPONENT_BYTES) {
            cut = true;
            break;
        }
        if (escape) {
            out[olen++] = '%';
            out[olen++] = hex[s[i] >> 4];
            out[olen++] = hex[s[i] & 15];
            i += 1;
        } else {
            memcpy(out + olen, s + i, seq);
            olen += seq;
            i += seq;
        }
    }
    if (cp->ncomp == 0 && reserved) {
        for (const char *const *r = reserved; *r; r++) {
            if (strlen(*r) == olen && memcmp(*r, out, olen) == 0
                && olen < MAX_COMPONENT_BYTES) {
                memmove(out + 1, out, olen);
                out[0] = '_';
                olen++;
                cp->renamed = true;
                break;
            }
        }
    }
    if (cp->ncomp > 0)
        cp->buf[cp->len++] = '/';
    cp->comp_off[cp->ncomp] = (uint16_t)cp->len;
    cp->comp_len[cp->ncomp] = (uint16_t)olen;
    memcpy(cp->buf + cp->len, out, olen);
    cp->len += olen;
    cp->buf[cp->len] = '\0';
    cp->ncomp++;
    cp->truncated |= cut;
}

enum clean_status aix_clean_name(const char *raw, const char *const *reserved,
                                 struct clean_path *cp)
{
    const unsigned char *p = (const unsigned char *)raw;
    cp->len = 0;
    cp->ncomp = 0;
    cp->truncated = cp->renamed = false;
    cp->buf[0] = '\0';
    while (*p) {
        const unsigned char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (*p == '/')
            p++;
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            continue;
        if (cp->ncomp == MAX_DEPTH)
            return CLEAN_TOO_DEEP;
        append_component(cp, s, n, reserved);
        if (cp->len > MAX_PATH_BYTES)
            return CLEAN_TOO_LONG;
    }
    return CLEAN_OK;
}

/* UTF-8 encoding of a wide string (libarchive's last-resort form of a
 * name).  Malloc'd, NULL on failure. */
static char *wide_to_utf8(const wchar_t *w)
{
    size_t n = wcslen(w);
    char *out = malloc(n * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)w[i];
        if (c == 0 || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
            c = 0xFFFD;
        if (c < 0x80)
            *o++ = (char)c;
        else if (c < 0x800) {
            *o++ = (char)(0xC0 | c >> 6);
            *o++ = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            *o++ = (char)(0xE0 | c >> 12);
            *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *o++ = (char)(0x80 | (c & 0x3F));
        } else {
            *o++ = (char)(0xF0 | c >> 18);
            *o++ = (char)(0x80 | ((c >> 12) & 0x3F));
            *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *o++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *o = '\0';
    return out;
}

/* The raw bytes libarchive has for a string attribute, trying the forms it
 * may hold (a name that failed charset conversion has no multibyte form).
 * *tmp receives a malloc'd buffer to free when one was needed. */
static const char *entry_string(const char *mbs, const char *utf8,
                                const wchar_t *w, char **tmp)
{
    *tmp = NULL;
    if (mbs)
        return mbs;
    if (utf8)
        return utf8;
    if (w)
        return *tmp = wide_to_utf8(w);
    return NULL;
}

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

static int cmp_names(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static int cmp_bnode_ids(const void *x, const void *y, void *ctx)
{
    const struct builder *b = ctx;
    const struct bnode *p = &b->nodes[*(const uint32_t *)x];
    const struct bnode *q = &b->nodes[*(const uint32_t *)y];
    return cmp_names(b->arena + p->name_off, p->name_len, b->arena + q->name_off,
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
    const char *name = entry_string(archive_entry_pathname(e),
                                    archive_entry_pathname_utf8(e),
                                    archive_entry_pathname_w(e), &tmp_name);
    int64_t mtime = archive_entry_mtime_is_set(e) ? (int64_t)archive_entry_mtime(e) : 0;
    struct payload pl = {.mtime = mtime};

    if (!name) {
        b->stats.skipped_bad_name++;
        goto out;
    }
    const char *hardlink = entry_string(archive_entry_hardlink(e),
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
        const char *target = entry_string(archive_entry_symlink(e),
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

/* Names are decoded by libarchive according to the thread's locale:
 * pinning it to C.UTF-8 for the index pass makes names independent of the
 * process's locale (raw bytes for non-UTF-8-flagged names, UTF-8 kept as
 * is for flagged ones). */
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

int aindex_open(const char *path, const char *const *reserved,
                struct aindex **out, char **why)
{
    return aindex_open_as(path, path, reserved, out, why);
}

int aindex_open_as(const char *path, const char *name, const char *const *reserved,
                   struct aindex **out, char **why)
{
    *out = NULL;
    if (why)
        *why = NULL;
    struct aindex *ix = calloc(1, sizeof *ix);
    struct builder *b = calloc(1, sizeof *b);
    struct archive_entry *e = archive_entry_new();
    struct archive *a = NULL;
    locale_t saved = (locale_t)0, loc = (locale_t)0;
    int rc;
    if (!ix || !b || !e) {
        rc = -ENOMEM;
        aix_set_why(why, "%s: out of memory", path);
        goto fail;
    }
    b->reserved = reserved;
    if (!(ix->path = strdup(name ? name : path))) {
        rc = -ENOMEM;
        aix_set_why(why, "%s: out of memory", path);
        goto fail;
    }
    if ((rc = aix_map_file(path, &ix->map, &ix->map_len, &ix->st, why)))
        goto fail;
    rc = aix_index_load(ix, reserved);
    if (rc == -ENOMEM) {
        aix_set_why(why, "%s: out of memory", path);
        goto fail;
    }
    if (rc == 0) {
        ix->from_sidecar = true;
        goto built;
    }

    if ((rc = builder_root(b))) {
        aix_set_why(why, "%s: out of memory", path);
        goto fail;
    }

    loc = pin_utf8_locale(&saved);
    struct view v = {.base = ix->map, .len = (int64_t)ix->map_len};
    if (aix_open_view(&v, true, &a) != ARCHIVE_OK) {
        rc = !a || archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
        aix_set_why(why, "%s: not a readable zip archive: %s", path, aix_archive_err(a));
        goto fail;
    }
    for (;;) {
        int r = archive_read_next_header2(a, e);
        if (r == ARCHIVE_EOF)
            break;
        if (r == ARCHIVE_FATAL || r == ARCHIVE_RETRY) {
            rc = archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
            aix_set_why(why, "%s: unreadable zip (after %ju entries): %s", path,
                        (uintmax_t)b->stats.entries_seen, aix_archive_err(a));
            goto fail;
        }
        b->stats.entries_seen++;
        if (r == ARCHIVE_FAILED) {
            b->stats.skipped_unreadable++;
            b->bad_entries++;
            continue;
        }
        if ((rc = add_archive_entry(b, a, e))) {
            aix_set_why(why, "%s: %s (after %ju entries)", path, strerror(-rc),
                        (uintmax_t)b->stats.entries_seen);
            goto fail;
        }
    }
    unpin_locale(loc, saved);
    loc = (locale_t)0;
    archive_read_free(a);
    a = NULL;
    archive_entry_free(e);
    e = NULL;

    if ((rc = resolve_hardlinks(b)) || (rc = finalize(b, ix))) {
        aix_set_why(why, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    ix->stats = b->stats;
    ix->bad_entries = b->bad_entries;
    if ((rc = aix_mark_direct(ix))) {
        aix_set_why(why, "%s: %s", path, strerror(-rc));
        goto fail;
    }
built:
    if ((rc = aix_ckpt_find_entries(ix))) {
        aix_set_why(why, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    if (ix->ck)
        aix_ckpt_load(ix);
    archive_entry_free(e); /* NULL after a build; unused after a load */
    builder_free(b);
    free(b);
    *out = ix;
    return 0;

fail:
    unpin_locale(loc, saved);
    if (a)
        archive_read_free(a);
    archive_entry_free(e);
    if (b) {
        builder_free(b);
        free(b);
    }
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

/* -------------------------------------------------------------- queries */

const struct anode *aindex_root(const struct aindex *ix) { return &ix->nodes[ROOT]; }
int anode_is_dir(const struct anode *n) { return n->kind == KIND_DIR; }
uint64_t anode_size(const struct anode *n) { return n->kind == KIND_DIR ? 0 : n->size; }
time_t anode_mtime(const struct anode *n) { return (time_t)n->mtime; }
size_t anode_child_count(const struct anode *n) { return n->kind == KIND_DIR ? n->nchildren : 0; }
uint64_t aindex_entry_count(const struct aindex *ix) { return ix->nnodes - 1; }
uint64_t aindex_total_size(const struct aindex *ix) { return ix->total_size; }
const struct aindex_stats *aindex_stats(const struct aindex *ix) { return &ix->stats; }

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
            int cmp = cmp_names(ix->arena + c->name_off, c->name_len, s, n);
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


/* ------------------------------------------------- single-file formats */

enum aformat aformat_sniff(const void *head, size_t len)
{
    const unsigned char *h = head;
    if (len >= 4 && h[0] == 'P' && h[1] == 'K'
        && ((h[2] == 3 && h[3] == 4) || (h[2] == 5 && h[3] == 6) || (h[2] == 7 && h[3] == 8)))
        return AFORMAT_ZIP;
    if (len >= 2 && h[0] == 0x1f && h[1] == 0x8b)
        return AFORMAT_GZIP;
    return AFORMAT_PLAIN;
}

const char *aformat_suffix(enum aformat f)
{
    switch (f) {
    case AFORMAT_ZIP:
        return "zip";
    case AFORMAT_GZIP:
        return "csv.gz";
    case AFORMAT_PLAIN:
        break;
    }
    return "csv";
}

/* The file at path, mapped read-only; any size (an empty file is not
 * mapped: map NULL, length 0). */
static int map_any(const char *path, struct aindex *ix, char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        aix_set_why(why, "%s: open: %s", path, strerror(e));
        return -e;
    }
    if (fstat(fd, &ix->st) != 0 || !S_ISREG(ix->st.st_mode)) {
        int e = S_ISREG(ix->st.st_mode) ? errno : EIO;
        close(fd);
        aix_set_why(why, "%s: not a regular file", path);
        return -e;
    }
    if (ix->st.st_size == 0) {
        close(fd);
        return 0;
    }
    void *p = mmap(NULL, (size_t)ix->st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        aix_set_why(why, "%s: mmap: %s", path, strerror(e));
        return e == ENOMEM ? -ENOMEM : -EIO;
    }
    ix->map = p;
    ix->map_len = (size_t)ix->st.st_size;
    return 0;
}

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
    char err[300];
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
        snprintf(err, sizeof err, "checkpoints do not end at the gzip trailer");
    } else
        rc = aix_ckpt_build_measure(ix, &stream_len, &produced, err, sizeof err);
    if (rc == -ENOMEM)
        return rc;
    if (rc) {
        uint64_t size = e->usize && e->usize != UINT64_MAX ? e->usize : 1;
        n->flags |= NODE_BAD;
        n->size = size;
        n->first_child = 0;
        e->usize = size;
        aix_ckpt_single_bad(ix, err);
        if (!(ix->bad_why = strdup(err)))
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
        aix_set_why(why, "%s: unknown format, or no name for its file", path);
        return -EINVAL;
    }
    const char *ename = single->entry_name ? single->entry_name : "";
    struct aindex *ix = calloc(1, sizeof *ix);
    struct builder *b = NULL;
    int rc;
    char err[300];
    if (!ix || !(ix->path = strdup(name ? name : path))) {
        rc = -ENOMEM;
        aix_set_why(why, "%s: out of memory", path);
        goto fail;
    }
    ix->fmt = fmt;
    ix->single_hash = single_hash(fmt, ename, single->mtime);
    if ((rc = map_any(path, ix, why)))
        goto fail;
    uint64_t data = 0;
    if (fmt == AFORMAT_GZIP
        && (rc = zran_gzip_header(ix->map, ix->map_len, &data, err, sizeof err))) {
        aix_set_why(why, "%s: not a readable gzip file: %s", path, err);
        goto fail;
    }
    uint32_t fi = NO_NODE;
    rc = aix_index_load(ix, reserved);
    if (rc == -ENOMEM) {
        aix_set_why(why, "%s: out of memory", path);
        goto fail;
    }
    if (rc == 0 && (fi = single_node(ix, data)) != NO_NODE) {
        ix->from_sidecar = true;
    } else {
        free(ix->nodes);
        free(ix->arena);
        ix->nodes = NULL;
        ix->arena = NULL;
        ix->nnodes = 0;
        ix->arena_len = 0;
        ix->total_size = 0;
        memset(&ix->stats, 0, sizeof ix->stats);
        rc = -ENOMEM;
        if (!(b = calloc(1, sizeof *b)))
            goto nomem;
        b->reserved = reserved;
        if (builder_root(b))
            goto nomem;
        b->stats.entries_seen = 1;
        struct payload pl = {
            .kind = KIND_FILE, .flags = fmt == AFORMAT_PLAIN ? NODE_PLAIN : NODE_GZIP,
            .size = fmt == AFORMAT_PLAIN ? ix->map_len : 0, .data = data,
            .mtime = (int64_t)single->mtime,
        };
        /* A name the rules would drop (empty, too deep or long) is shown
         * as "data.csv": the file's one entry is never hidden. */
        if (!clean_entry_name(b, ename) || b->cp.ncomp == 0)
            clean_entry_name(b, "data.csv");
        if ((rc = insert_entry(b, &pl)) || (rc = finalize(b, ix)))
            goto nomem;
        ix->stats = b->stats;
        fi = single_node(ix, data);
        if (fi == NO_NODE) {
            rc = -EIO;
            aix_set_why(why, "%s: internal error: no file node", path);
            goto fail;
        }
    }
    if (fmt == AFORMAT_GZIP && (rc = gzip_setup(ix, fi, data)))
        goto nomem;
    if (b) {
        builder_free(b);
        free(b);
    }
    *out = ix;
    return 0;
nomem:
    aix_set_why(why, "%s: %s", path, strerror(-rc));
fail:
    if (b) {
        builder_free(b);
        free(b);
    }
    aindex_free(ix);
    return rc;
}

/* ------------------------------------------------------ flat folder names */

static int is_hex_digit(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

size_t aindex_name_cut(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t at = 0;
    while (at < len) {
        size_t tok = u[at] == '%' && at + 2 < len && is_hex_digit(u[at + 1]) &&
                             is_hex_digit(u[at + 2])
                         ? 3
                         : utf8_seq_len(u + at, len - at);
        if (tok == 0)
            tok = 1; /* not from the cleaning rules: a byte is a token */
        if (at + tok > max)
            break;
        at += tok;
    }
    return at;
}

void aindex_clean_flat_name(const char *raw, char out[256])
{
    struct clean_path cp;
    out[0] = '\0';
    /* Too deep or too long for a tree is not too long for one name: the
     * cut below bounds it; only what was cleaned so far is kept. */
    (void)aix_clean_name(raw, NULL, &cp);
    char joined[sizeof cp.buf * 3];
    size_t n = 0;
    for (size_t i = 0; i < cp.ncomp && n < 256; i++) {
        if (i > 0) {
            memcpy(joined + n, "%2F", 3);
            n += 3;
        }
        memcpy(joined + n, cp.buf + cp.comp_off[i], cp.comp_len[i]);
        n += cp.comp_len[i];
    }
    n = aindex_name_cut(joined, n, 255);
    memcpy(out, joined, n);
    out[n] = '\0';
}
