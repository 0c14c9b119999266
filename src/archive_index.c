/*
 * archive_index: builds the cleaned, immutable tree of one zip archive and
 * serves positioned reads of its entries.  See archive_index.h for the
 * naming rules and thread-safety contract.
 *
 * Layout (memory is ~50 bytes per node plus its name):
 *   - all nodes live in one array, numbered breadth-first so that every
 *     directory's children are contiguous and sorted by name; lookup is a
 *     binary search per component;
 *   - all names (NUL-terminated) and symlink targets live in one arena.
 *
 * Large deflate entries bypass libarchive: see "checkpoints" below.
 *
 * Reading: the archive is mapped read-only once per index.  The index pass
 * uses libarchive's seekable zip reader (central directory) and records,
 * for every entry, the file offset where its data starts (libarchive's
 * stream position right after the header).  A reader for entry k does not
 * walk k headers: it hands libarchive's *streamable* zip reader a view of
 * the mapping that starts at entry k's local header, so the first byte is
 * one header parse away whatever k is.  The local header is the
 * "PK\3\4" just before the data start for which libarchive, parsing from
 * there, ends its header exactly at the recorded data start; should no
 * candidate pass that check, the reader falls back to walking the archive
 * with the seekable reader (slow, but right).  All zip parsing is
 * libarchive's.
 */
#include "archive_index.h"
#include "zran.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#define MAX_COMPONENT_BYTES 255
#define MAX_DEPTH 256
#define MAX_PATH_BYTES 4000
#define MAX_LINK_TARGET 4095
#define MAX_LINK_TOTAL ((uint64_t)64 << 20)
#define NO_NODE UINT32_MAX
#define ROOT 0u
/* libarchive sees the mapping in blocks of at most this size: it keeps
 * zlib's 32-bit avail_in safe while copying nothing; a block leaves the
 * process's RSS when libarchive asks for the next one. */
#define VIEW_BLOCK ((size_t)4 << 20)
/* Passes that stream through mapped input drop what they consumed from
 * the process's RSS every this many bytes (the page cache keeps it). */
#define RELEASE_STEP ((uint64_t)8 << 20)
/* Releases of input behind a streaming decoder reach this far below what
 * was touched last: the kernel's fault-around maps up to 64 KiB around a
 * faulting page, so pages below a released range come back mapped. */
#define FAULT_MARGIN ((uintptr_t)128 << 10)
/* A local header is at most 30 + 65535 + 65535 bytes before its data. */
#define LOCAL_HEADER_MAX (30 + 2 * 65535)
#define MAX_HEADER_CANDIDATES 16

enum node_kind { KIND_DIR = 1, KIND_FILE = 2, KIND_INLINE = 3 };
/* NODE_DIRECT_*: a small file (at most AINDEX_WINDOW bytes) stored or
 * deflated, whose central directory record, local header and index agree
 * (direct_ok): read straight from the mapping, without libarchive.  Such a
 * node keeps its CRC-32 in first_child and its compressed size in
 * nchildren (unused for files). */
enum { NODE_ENCRYPTED = 1, NODE_DIRECT_STORED = 2, NODE_DIRECT_DEFLATE = 4 };

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

struct ckpt_state; /* checkpoints of large deflate entries (below) */

struct aindex {
    const unsigned char *map;
    size_t map_len;
    struct stat st;       /* of the zip when mapped (sidecar validation) */
    char *path;
    struct ckpt_state *ck; /* NULL when the archive has no large deflate entry */
    struct anode *nodes;
    uint32_t nnodes;
    char *arena;
    uint64_t total_size;
    struct aindex_stats stats;
    uint64_t bad_entries; /* entries skipped as unreadable, not for encryption */
};

static int ckpt_find_entries(struct aindex *ix);
static int mark_direct(struct aindex *ix);
static void ckpt_load(struct aindex *ix);
static void ckpt_free(struct ckpt_state *ck);

/* ---------------------------------------------------------------- utils */

static void set_why(char **why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_why(char **why, const char *fmt, ...)
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

static const char *archive_err(struct archive *a)
{
    const char *s = a ? archive_error_string(a) : NULL;
    return s ? s : "unknown libarchive error";
}

/* The archive file, mapped read-only.  An empty file cannot be mapped and
 * is not a zip anyway. */
static int map_file(const char *path, const unsigned char **map, size_t *len,
                    struct stat *stp, char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_why(why, "%s: open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        set_why(why, "%s: stat: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 22) {
        close(fd);
        set_why(why, "%s: not a zip archive (too short or not a file)", path);
        return -EIO;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        set_why(why, "%s: mmap: %s", path, strerror(e));
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
static void release_range(const unsigned char *map, size_t map_len, uintptr_t lo, uintptr_t hi)
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

struct view {
    const unsigned char *base;
    int64_t len;
    int64_t pos;
    int64_t prev, prev_len; /* the block handed out last */
};

static la_ssize_t view_read(struct archive *a, void *cd, const void **buf)
{
    (void)a;
    struct view *v = cd;
    /* libarchive is done with the previous block (its pointer is valid
     * only until this call): out of our RSS. */
    if (v->prev_len)
        release_range(v->base, (size_t)v->len, (uintptr_t)(v->base + v->prev),
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
static int open_view(struct view *v, bool seekable, struct archive **out)
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

struct clean_path {
    char buf[MAX_PATH_BYTES + MAX_COMPONENT_BYTES + 8];
    size_t len;
    uint16_t comp_off[MAX_DEPTH + 1];
    uint16_t comp_len[MAX_DEPTH + 1];
    size_t ncomp;
    bool truncated;
    bool renamed;
};

enum clean_status { CLEAN_OK, CLEAN_TOO_DEEP, CLEAN_TOO_LONG };

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

static enum clean_status clean_name(const char *raw, const char *const *reserved,
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
    switch (clean_name(raw, b->reserved, &b->cp)) {
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
        set_why(why, "%s: out of memory", path);
        goto fail;
    }
    b->reserved = reserved;
    if (!(ix->path = strdup(name ? name : path))) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", path);
        goto fail;
    }
    if ((rc = map_file(path, &ix->map, &ix->map_len, &ix->st, why)))
        goto fail;

    /* Root node. */
    b->cap = 1024;
    b->nodes = malloc(b->cap * sizeof *b->nodes);
    uint64_t root_name;
    if (!b->nodes || (rc = arena_add(b, "", 0, &root_name)) || (rc = grow_slots(b))) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", path);
        goto fail;
    }
    memset(&b->nodes[0], 0, sizeof b->nodes[0]);
    b->nodes[0].kind = KIND_DIR;
    b->nodes[0].first_child = b->nodes[0].next_sibling = NO_NODE;
    b->nodes[0].parent = NO_NODE;
    b->nodes[0].name_off = root_name;
    b->n = 1;

    loc = pin_utf8_locale(&saved);
    struct view v = {.base = ix->map, .len = (int64_t)ix->map_len};
    if (open_view(&v, true, &a) != ARCHIVE_OK) {
        rc = !a || archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
        set_why(why, "%s: not a readable zip archive: %s", path, archive_err(a));
        goto fail;
    }
    for (;;) {
        int r = archive_read_next_header2(a, e);
        if (r == ARCHIVE_EOF)
            break;
        if (r == ARCHIVE_FATAL || r == ARCHIVE_RETRY) {
            rc = archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
            set_why(why, "%s: unreadable zip (after %ju entries): %s", path,
                    (uintmax_t)b->stats.entries_seen, archive_err(a));
            goto fail;
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
        set_why(why, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    ix->stats = b->stats;
    ix->bad_entries = b->bad_entries;
    if ((rc = ckpt_find_entries(ix)) || (rc = mark_direct(ix))) {
        set_why(why, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    if (ix->ck)
        ckpt_load(ix);
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
    ckpt_free(ix->ck);
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

/* ---------------------------------------------------------- checkpoints
 *
 * Large deflate entries (at least AINDEX_CKPT_MIN bytes, method 8, not
 * encrypted) are read without libarchive: their raw deflate stream is
 * inflated straight from the mapping, starting at the nearest access point
 * (zran.h) at or before the offset asked for.
 *
 * Where the stream is: the central directory is walked once (only when the
 * index has such entries) for method, flags, CRC and sizes (zip64 extra
 * fields included); an entry takes this path only if its local header's
 * data start equals the data start libarchive reported and its sizes agree
 * with the tree's.  Anything else keeps the libarchive reader.
 *
 * Points are built by inflating the whole entry once (zran_build), which
 * also checks its size and CRC-32 against the central directory: an entry
 * with points is known good; one whose build failed reads EIO.  Each point
 * carries the CRC-32 of its 32 KiB window and of the compressed bytes of
 * its span (up to the next point): a reader checks the window before
 * resuming from it and each span's compressed bytes before serving output
 * from that span, so a sidecar from another archive or bytes changed on
 * disk since the build are caught before a byte is served.
 *
 * Sidecar "<zip>.ckpt" (native byte order, local cache only):
 *   header (page 0): magic, version, the zip's size and mtime (ns), the
 *     span, the offset/length/CRC-32 of the table, CRC-32 of the header;
 *   windows: per entry, npoints slots of 32 KiB (page aligned);
 *   table: struct side_entry[n], then every entry's struct ckpt_point[].
 * Loading validates everything but the windows (checked at use) and maps
 * the file: windows cost page cache, not heap.  A sidecar that fails any
 * check is ignored (and replaced by the next build).  Writes are atomic:
 * temporary file, fsync, rename.
 *
 * Entries without points get them on their first read (lazily, one build
 * per entry; other readers of that entry wait); the windows of such a
 * build go to an unlinked temporary file beside the zip (mapped), then the
 * sidecar is rewritten with every entry built so far.
 */

struct ckpt_point {
    uint64_t out;      /* uncompressed offset */
    uint64_t in_bits;  /* bit offset of the block in the stream */
    uint32_t win_crc;  /* CRC-32 of the window (min(out, 32 KiB) bytes) */
    uint32_t span_crc; /* CRC-32 of the compressed bytes of the span */
};

struct zset {
    uint32_t n;
    uint64_t stream_len;              /* bytes of the deflate stream */
    const struct ckpt_point *pts;
    const unsigned char *wins;        /* n slots of ZRAN_WINDOW bytes */
    struct zset *next;                /* every set, for freeing */
    struct bigent *owner;
    struct ckpt_point *own_pts;       /* heap copy to free, or NULL */
    bool wins_shared;                 /* wins is a shared file mapping */
};

struct bigent {
    uint64_t data, csize, usize;
    uint32_t crc;
    _Atomic(struct zset *) set;       /* published points, or NULL */
    atomic_int bad;                   /* the build found corrupt data */
    pthread_mutex_t lock;             /* one build at a time */
    char why[200];
};

struct mapping {
    void *addr;
    size_t len;
    struct mapping *next;
};

struct ckpt_state {
    struct bigent *big; /* sorted by data */
    size_t nbig;
    pthread_mutex_t lock; /* sets/maps lists, sidecar writes */
    struct zset *sets;
    struct mapping *maps;
    atomic_uint built, loaded;
};

#define SIDE_MAGIC "HCXCKPT\1"
#define SIDE_VERSION 1u
#define SIDE_PAGE ((uint64_t)4096)

struct side_header {
    char magic[8];
    uint32_t version;
    uint32_t nentries;
    uint64_t zip_size;
    int64_t mtime_sec;
    int64_t mtime_nsec;
    uint64_t span;
    uint64_t table_off;
    uint64_t table_len;
    uint32_t window;
    uint32_t point_size;
    uint32_t table_crc;
    uint32_t header_crc;
};

struct side_entry {
    uint64_t data, csize, usize;
    uint32_t crc;
    uint32_t npoints;
    uint64_t stream_len;
    uint64_t points_off; /* within the table */
    uint64_t wins_off;   /* within the file */
};

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_bigent(const void *a, const void *b)
{
    return cmp_u64(&((const struct bigent *)a)->data, &((const struct bigent *)b)->data);
}

static struct bigent *find_big(const struct ckpt_state *ck, uint64_t data)
{
    size_t lo = 0, hi = ck ? ck->nbig : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ck->big[mid].data == data)
            return &ck->big[mid];
        if (ck->big[mid].data < data)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The central directory's end: offset/size/count, zip64 aware.  0 or -1. */
static int find_cd(const unsigned char *m, size_t len, uint64_t *off, uint64_t *count)
{
    size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > lo;) {
        if (m[p] != 'P' || m[p + 1] != 'K' || m[p + 2] != 5 || m[p + 3] != 6)
            continue;
        if (p + 22 + (size_t)le16(m + p + 20) != len)
            continue; /* comment length must reach the end exactly */
        *count = le16(m + p + 10);
        *off = le32(m + p + 16);
        if (p >= 20 && le32(m + p - 20) == 0x07064b50u) {
            uint64_t z = le64(m + p - 20 + 8);
            if (z > len - 56 || le32(m + z) != 0x06064b50u)
                return -1;
            *count = le64(m + z + 32);
            *off = le64(m + z + 48);
        }
        return *off < len ? 0 : -1;
    }
    return -1;
}

/* One central directory record, zip64 sizes resolved.  data: where the
 * local header at lho says the data starts (UINT64_MAX when there is no
 * valid local header there). */
struct cdrec {
    uint64_t lho, csize, usize, data;
    uint32_t crc;
    uint16_t flags, method;
};

/* Parses the record at *p and advances *p past it; false when there is no
 * well-formed record there (the walk ends). */
static bool cd_record(const unsigned char *m, size_t len, uint64_t *pp, struct cdrec *r)
{
    uint64_t p = *pp;
    if (len < 46 || p > len - 46 || le32(m + p) != 0x02014b50u)
        return false;
    const unsigned char *h = m + p;
    r->flags = le16(h + 8);
    r->method = le16(h + 10);
    r->crc = le32(h + 16);
    r->csize = le32(h + 20);
    r->usize = le32(h + 24);
    r->lho = le32(h + 42);
    size_t nlen = le16(h + 28), xlen = le16(h + 30), clen = le16(h + 32);
    if (p + 46 + nlen + xlen + clen > len)
        return false;
    /* zip64 extra: the fields that are 0xFFFFFFFF, in this order. */
    const unsigned char *x = h + 46 + nlen, *xe = x + xlen;
    while (x + 4 <= xe) {
        uint16_t id = le16(x), sz = le16(x + 2);
        if (x + 4 + sz > xe)
            break;
        if (id == 1) {
            const unsigned char *f = x + 4, *fe = f + sz;
            if (r->usize == 0xFFFFFFFFu && f + 8 <= fe)
                r->usize = le64(f), f += 8;
            if (r->csize == 0xFFFFFFFFu && f + 8 <= fe)
                r->csize = le64(f), f += 8;
            if (r->lho == 0xFFFFFFFFu && f + 8 <= fe)
                r->lho = le64(f);
            break;
        }
        x += 4 + sz;
    }
    *pp = p + 46 + nlen + xlen + clen;
    r->data = UINT64_MAX;
    if (r->lho <= len - 30 && le32(m + r->lho) == 0x04034b50u) {
        uint64_t data = r->lho + 30 + le16(m + r->lho + 26) + le16(m + r->lho + 28);
        if (data <= len && r->csize <= len - data)
            r->data = data;
    }
    return true;
}

/* Finds the large deflate entries: nodes of at least AINDEX_CKPT_MIN
 * bytes whose central directory record and local header agree with the
 * index.  Leaves ix->ck NULL when there are none. */
static int ckpt_find_entries(struct aindex *ix)
{
    uint64_t *cand = NULL;
    size_t ncand = 0, cap = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind != KIND_FILE || (n->flags & NODE_ENCRYPTED) || n->size < AINDEX_CKPT_MIN)
            continue;
        if (ncand == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(cand, cap * sizeof *p);
            if (!p) {
                free(cand);
                return -ENOMEM;
            }
            cand = p;
        }
        cand[ncand++] = n->data;
    }
    if (!ncand)
        return 0;
    qsort(cand, ncand, sizeof *cand, cmp_u64);

    const unsigned char *m = ix->map;
    size_t len = ix->map_len;
    uint64_t cd, count;
    struct bigent *big = NULL;
    size_t nbig = 0;
    if (find_cd(m, len, &cd, &count) == 0) {
        big = calloc(ncand, sizeof *big);
        if (!big) {
            free(cand);
            return -ENOMEM;
        }
        uint64_t p = cd;
        struct cdrec rec;
        for (uint64_t k = 0; k < count && nbig < ncand && cd_record(m, len, &p, &rec); k++) {
            uint64_t data = rec.data, csize = rec.csize, usize = rec.usize;
            uint32_t crc = rec.crc;
            if (rec.method != 8 || (rec.flags & 1) || usize < AINDEX_CKPT_MIN
                || data == UINT64_MAX || !bsearch(&data, cand, ncand, sizeof *cand, cmp_u64))
                continue;
            struct bigent *e = &big[nbig++];
            e->data = data;
            e->csize = csize;
            e->usize = usize;
            e->crc = crc;
        }
    }
    free(cand);
    if (!nbig) {
        free(big);
        return 0;
    }
    qsort(big, nbig, sizeof *big, cmp_bigent);
    /* Two records claiming one data start: trust neither. */
    size_t w = 0;
    for (size_t i = 0; i < nbig; i++) {
        bool dup = (i > 0 && big[i - 1].data == big[i].data)
                   || (i + 1 < nbig && big[i + 1].data == big[i].data);
        if (!dup)
            big[w++] = big[i];
    }
    nbig = w;
    struct ckpt_state *ck = calloc(1, sizeof *ck);
    if (!ck) {
        free(big);
        return -ENOMEM;
    }
    ck->big = big;
    ck->nbig = nbig;
    pthread_mutex_init(&ck->lock, NULL);
    for (size_t i = 0; i < nbig; i++) {
        pthread_mutex_init(&big[i].lock, NULL);
        atomic_init(&big[i].set, NULL);
        atomic_init(&big[i].bad, 0);
    }
    ix->ck = ck;
    return 0;
}

static void ckpt_free(struct ckpt_state *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->nbig; i++)
        pthread_mutex_destroy(&ck->big[i].lock);
    free(ck->big);
    for (struct zset *s = ck->sets, *nx; s; s = nx) {
        nx = s->next;
        free(s->own_pts);
        free(s);
    }
    for (struct mapping *mp = ck->maps, *nx; mp; mp = nx) {
        nx = mp->next;
        munmap(mp->addr, mp->len);
        free(mp);
    }
    pthread_mutex_destroy(&ck->lock);
    free(ck);
}

static char *sidecar_path(const char *zip)
{
    char *s;
    return asprintf(&s, "%s.ckpt", zip) < 0 ? NULL : s;
}

static uint32_t header_crc(const struct side_header *h)
{
    struct side_header c = *h;
    c.header_crc = 0;
    return zran_crc32(0, (const unsigned char *)&c, sizeof c);
}

/* Checks the points of one sidecar entry against the archive. */
static bool points_valid(const struct bigent *e, const struct side_entry *se,
                         const struct ckpt_point *pts)
{
    if (se->npoints == 0 || pts[0].out != 0 || pts[0].in_bits != 0
        || se->stream_len == 0 || se->stream_len > e->csize)
        return false;
    for (uint32_t i = 1; i < se->npoints; i++)
        if (pts[i].out <= pts[i - 1].out || pts[i].out >= e->usize
            || pts[i].in_bits <= pts[i - 1].in_bits || pts[i].in_bits >= se->stream_len * 8)
            return false;
    return true;
}

/* Loads "<zip>.ckpt" if it matches this archive; silently ignores it
 * otherwise. */
static void ckpt_load(struct aindex *ix)
{
    struct ckpt_state *ck = ix->ck;
    char *path = sidecar_path(ix->path);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    if (fd < 0)
        return;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
        && (uint64_t)st.st_size >= SIDE_PAGE)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    size_t flen = (size_t)st.st_size;
    const unsigned char *m = map;
    struct side_header h;
    memcpy(&h, m, sizeof h);
    bool ok = memcmp(h.magic, SIDE_MAGIC, 8) == 0 && h.version == SIDE_VERSION
              && h.header_crc == header_crc(&h) && h.zip_size == (uint64_t)ix->st.st_size
              && h.mtime_sec == (int64_t)ix->st.st_mtim.tv_sec
              && h.mtime_nsec == (int64_t)ix->st.st_mtim.tv_nsec
              && h.window == ZRAN_WINDOW && h.point_size == sizeof(struct ckpt_point)
              && h.table_off >= SIDE_PAGE && h.table_off <= flen
              && h.table_len <= flen - h.table_off
              && (uint64_t)h.nentries * sizeof(struct side_entry) <= h.table_len
              && h.table_off % 8 == 0
              && zran_crc32(0, m + h.table_off, (size_t)h.table_len) == h.table_crc;
    struct zset *sets = NULL;
    for (uint32_t i = 0; ok && i < h.nentries; i++) {
        const struct side_entry *se =
            (const struct side_entry *)(m + h.table_off) + i;
        struct bigent *e = find_big(ck, se->data);
        if (!e || e->csize != se->csize || e->usize != se->usize || e->crc != se->crc)
            continue; /* not an entry of this archive (any more) */
        uint64_t plen = (uint64_t)se->npoints * sizeof(struct ckpt_point);
        if (se->points_off % 8 || se->points_off > h.table_len
            || plen > h.table_len - se->points_off || se->wins_off % SIDE_PAGE
            || se->wins_off > flen
            || (uint64_t)se->npoints * ZRAN_WINDOW > flen - se->wins_off) {
            ok = false;
            break;
        }
        const struct ckpt_point *pts =
            (const struct ckpt_point *)(m + h.table_off + se->points_off);
        if (!points_valid(e, se, pts)) {
            ok = false;
            break;
        }
        if (atomic_load(&e->set))
            continue;
        struct zset *zs = calloc(1, sizeof *zs);
        if (!zs) {
            ok = false;
            break;
        }
        zs->n = se->npoints;
        zs->stream_len = se->stream_len;
        zs->pts = pts;
        zs->wins = m + se->wins_off;
        zs->wins_shared = true;
        zs->owner = e;
        zs->next = sets;
        sets = zs;
    }
    struct mapping *mp = ok && sets ? malloc(sizeof *mp) : NULL;
    if (!mp) {
        for (struct zset *s = sets, *nx; s; s = nx) {
            nx = s->next;
            free(s);
        }
        munmap(map, flen);
        return;
    }
    /* Publish (aindex_open is still single-threaded here). */
    for (struct zset *s = sets, *nx; s; s = nx) {
        nx = s->next;
        s->next = ck->sets;
        ck->sets = s;
        if (!atomic_load(&s->owner->set)) {
            atomic_store(&s->owner->set, s);
            atomic_fetch_add(&ck->loaded, 1);
        }
    }
    mp->addr = map;
    mp->len = flen;
    mp->next = ck->maps;
    ck->maps = mp;
}

/* Drops [lo, hi) of the zip mapping from this process's page tables (not
 * from the page cache: the mapping is shared and read-only, the next
 * access faults the same bytes back in).  Clamped to whole pages inside the
 * mapping: never touches any other memory. */
static void release_map(const struct aindex *ix, uintptr_t lo, uintptr_t hi)
{
    release_range(ix->map, ix->map_len, lo, hi);
}

/* CRC-32 of mapped bytes [p, p + n), released from our RSS as it goes. */
static uint32_t crc_release(const struct aindex *ix, uint32_t crc, const unsigned char *p,
                            uint64_t n)
{
    while (n > 0) {
        uint64_t k = n > RELEASE_STEP ? RELEASE_STEP : n;
        crc = zran_crc32(crc, p, (size_t)k);
        release_map(ix, (uintptr_t)p, (uintptr_t)(p + k));
        p += k;
        n -= k;
    }
    return crc;
}

static void fsync_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

static uint64_t page_up(uint64_t x) { return (x + SIDE_PAGE - 1) / SIDE_PAGE * SIDE_PAGE; }

/* A sidecar being written: the temporary file and where each entry's
 * windows go. */
struct side_plan {
    int fd;
    char *tmp;                 /* its name, removed unless renamed */
    uint64_t *woff;            /* per bigent: start of its window region */
    uint32_t *slots;           /* per bigent: windows the region holds */
    const struct zset **placed; /* per bigent: set whose windows are there */
    uint64_t wend;             /* end of the window regions */
};

static void plan_free(struct side_plan *pl)
{
    if (pl->fd >= 0)
        close(pl->fd);
    if (pl->tmp) {
        unlink(pl->tmp);
        free(pl->tmp);
    }
    free(pl->woff);
    free(pl->slots);
    free((void *)pl->placed);
    memset(pl, 0, sizeof *pl);
    pl->fd = -1;
}

/* Creates "<dest>.tmp.XXXXXX" with a region of slots[i] windows per entry
 * (slots: min_slots[i], or the current set's size if larger).  0 or
 * -errno. */
static int plan_open(const struct aindex *ix, const char *dest, const size_t *min_slots,
                     struct side_plan *pl)
{
    const struct ckpt_state *ck = ix->ck;
    memset(pl, 0, sizeof *pl);
    pl->fd = -1;
    pl->woff = calloc(ck->nbig, sizeof *pl->woff);
    pl->slots = calloc(ck->nbig, sizeof *pl->slots);
    pl->placed = calloc(ck->nbig, sizeof *pl->placed);
    if (!pl->woff || !pl->slots || !pl->placed || asprintf(&pl->tmp, "%s.tmp.XXXXXX", dest) < 0) {
        pl->tmp = NULL;
        plan_free(pl);
        return -ENOMEM;
    }
    uint64_t off = SIDE_PAGE;
    for (size_t i = 0; i < ck->nbig; i++) {
        const struct zset *s = atomic_load(&ck->big[i].set);
        size_t k = min_slots ? min_slots[i] : 0;
        if (s && s->n > k)
            k = s->n;
        pl->slots[i] = (uint32_t)k;
        pl->woff[i] = off;
        off += page_up((uint64_t)k * ZRAN_WINDOW);
    }
    pl->wend = off;
    if ((pl->fd = mkstemp(pl->tmp)) < 0) {
        int e = errno;
        free(pl->tmp);
        pl->tmp = NULL;
        plan_free(pl);
        return -e;
    }
    return 0;
}

/* Writes the table and header of the plan's file for every entry that has
 * points now, copies the windows that are not in place, and renames it to
 * dest (durably).  Caller holds ck->lock.  0 or -errno. */
static int plan_commit(const struct aindex *ix, struct side_plan *pl, const char *dest)
{
    const struct ckpt_state *ck = ix->ck;
    const struct zset **snap = calloc(ck->nbig ? ck->nbig : 1, sizeof *snap);
    if (!snap)
        return -ENOMEM;
    size_t n = 0;
    uint64_t npts = 0;
    for (size_t i = 0; i < ck->nbig; i++) {
        const struct zset *s = atomic_load(&ck->big[i].set);
        if (s && s->n <= pl->slots[i]) { /* one snapshot: sets may change meanwhile */
            snap[i] = s;
            n++;
            npts += s->n;
        }
    }
    int rc = 0;
    unsigned char *table = NULL;
    size_t tlen = n * sizeof(struct side_entry) + (size_t)npts * sizeof(struct ckpt_point);
    if (!n)
        goto out;
    if (!(table = calloc(1, tlen))) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t poff = n * sizeof(struct side_entry);
    size_t k = 0;
    for (size_t i = 0; i < ck->nbig; i++) {
        const struct bigent *e = &ck->big[i];
        const struct zset *s = snap[i];
        if (!s)
            continue;
        struct side_entry se = {
            .data = e->data, .csize = e->csize, .usize = e->usize, .crc = e->crc,
            .npoints = s->n, .stream_len = s->stream_len, .points_off = poff,
            .wins_off = pl->woff[i],
        };
        memcpy(table + k++ * sizeof se, &se, sizeof se);
        memcpy(table + poff, s->pts, (size_t)s->n * sizeof *s->pts);
        poff += (uint64_t)s->n * sizeof *s->pts;
        if (pl->placed[i] == s)
            continue; /* built straight into this file */
        size_t wlen = (size_t)s->n * ZRAN_WINDOW;
        for (size_t done = 0; done < wlen;) {
            size_t step = wlen - done > RELEASE_STEP ? (size_t)RELEASE_STEP : wlen - done;
            ssize_t w = pwrite(pl->fd, s->wins + done, step, (off_t)(pl->woff[i] + done));
            if (w < 0) {
                rc = -errno;
                goto out;
            }
            /* Copied windows leave our RSS as we go (shared file mapping:
             * the page cache keeps them). */
            if (s->wins_shared && w > 0) {
                uintptr_t lo = (uintptr_t)(s->wins + done) & ~(uintptr_t)4095;
                uintptr_t hi = ((uintptr_t)(s->wins + done + (size_t)w)) & ~(uintptr_t)4095;
                if (hi > lo)
                    madvise((void *)lo, hi - lo, MADV_DONTNEED);
            }
            done += (size_t)w;
        }
        if (s->wins_shared)
            madvise((void *)(uintptr_t)s->wins, wlen, MADV_DONTNEED);
    }
    struct side_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SIDE_MAGIC, 8);
    h.version = SIDE_VERSION;
    h.nentries = (uint32_t)n;
    h.zip_size = (uint64_t)ix->st.st_size;
    h.mtime_sec = (int64_t)ix->st.st_mtim.tv_sec;
    h.mtime_nsec = (int64_t)ix->st.st_mtim.tv_nsec;
    h.span = AINDEX_CKPT_SPAN;
    h.table_off = pl->wend;
    h.table_len = tlen;
    h.window = ZRAN_WINDOW;
    h.point_size = sizeof(struct ckpt_point);
    h.table_crc = zran_crc32(0, table, tlen);
    h.header_crc = header_crc(&h);
    unsigned char page[SIDE_PAGE];
    memset(page, 0, sizeof page);
    memcpy(page, &h, sizeof h);
    errno = 0;
    if (pwrite(pl->fd, table, tlen, (off_t)pl->wend) != (ssize_t)tlen
        || pwrite(pl->fd, page, sizeof page, 0) != (ssize_t)sizeof page) {
        rc = errno ? -errno : -ENOSPC;
        goto out;
    }
    if (fsync(pl->fd) != 0) {
        rc = -errno;
        goto out;
    }
    if (rename(pl->tmp, dest) != 0) {
        rc = -errno;
        goto out;
    }
    free(pl->tmp);
    pl->tmp = NULL;
    fsync_parent(dest); /* the rename itself */
out:
    free(table);
    free((void *)snap);
    return rc;
}

/* Writes "dest" atomically with every entry that has points.  Caller
 * holds ck->lock.  0 or -errno. */
static int ckpt_write(const struct aindex *ix, const char *dest)
{
    bool any = false;
    for (size_t i = 0; i < ix->ck->nbig && !any; i++)
        any = atomic_load(&ix->ck->big[i].set) != NULL;
    if (!any)
        return 0;
    struct side_plan pl;
    int rc = plan_open(ix, dest, NULL, &pl);
    if (rc == 0)
        rc = plan_commit(ix, &pl, dest);
    plan_free(&pl);
    return rc;
}

struct build_ctx {
    const struct aindex *ix;
    const unsigned char *in; /* the entry's data (mapped) */
    uint64_t released;       /* input below this left our RSS */
    struct ckpt_point *pts;
    size_t n, max;
    int fd;              /* windows go to this file at base (not read back), or */
    off_t base;
    unsigned char *wins; /* to these max slots of anonymous memory */
};

static int on_point(void *c, const struct zran_point *p, const unsigned char *w, size_t wl)
{
    struct build_ctx *b = c;
    if (b->n == b->max)
        return -EIO; /* more points than the entry's size allows */
    b->pts[b->n] = (struct ckpt_point){
        .out = p->out, .in_bits = p->in_bits, .win_crc = zran_crc32(0, w, wl),
    };
    if (b->n) { /* the previous span is complete: its compressed bytes' CRC */
        uint64_t beg = b->pts[b->n - 1].in_bits >> 3, end = (p->in_bits + 7) >> 3;
        b->pts[b->n - 1].span_crc = zran_crc32(0, b->in + beg, (size_t)(end - beg));
    }
    if (b->fd >= 0) {
        for (size_t done = 0; done < wl;) {
            ssize_t k = pwrite(b->fd, w + done, wl - done,
                               b->base + (off_t)(b->n * ZRAN_WINDOW + done));
            if (k <= 0)
                return -ENOMEM; /* out of space: no points for now */
            done += (size_t)k;
        }
    } else
        memcpy(b->wins + b->n * ZRAN_WINDOW, w, wl);
    b->n++;
    return 0;
}

/* Window storage for a build: an unlinked file beside the zip, written
 * with pwrite and mapped read-only afterwards (page cache, not heap, and
 * only the windows a reader uses count in its RSS); else anonymous
 * memory.  Returns the fd or -1 with *anon set (or NULL: no memory). */
static int windows_file(const struct aindex *ix, size_t len, unsigned char **anon)
{
    char *dir = strdup(ix->path);
    int fd = -1;
    *anon = NULL;
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        fd = open(slash ? dir : ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        free(dir);
    }
    if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *anon = p == MAP_FAILED ? NULL : p;
    return -1;
}

/* Spacing of the points: HCX_CKPT_SPAN (bytes, >= 64 KiB) overrides it
 * (benchmarks). */
static uint64_t ckpt_span(void)
{
    const char *env = getenv("HCX_CKPT_SPAN");
    return env && strtoull(env, NULL, 0) >= 65536 ? strtoull(env, NULL, 0) : AINDEX_CKPT_SPAN;
}

/* Most points a build of e can make (window slots to reserve). */
static size_t ckpt_max_points(const struct bigent *e)
{
    return (size_t)(e->usize / ckpt_span()) + 2;
}

/* The build consumed its input up to k (called every few MiB): out of
 * our RSS. */
static void on_consumed(void *c, uint64_t k)
{
    struct build_ctx *b = c;
    release_map(b->ix, (uintptr_t)(b->in + b->released) - FAULT_MARGIN, (uintptr_t)(b->in + k));
    b->released = k;
}

/* Where a build puts its windows: a region of a file that is already
 * mapped (the sidecar being written by aindex_build_checkpoints), with
 * room for ckpt_max_points(e) slots. */
struct win_sink {
    int fd;
    off_t off;                /* region start in the file */
    const unsigned char *map; /* the region, mapped read-only */
};

/* Inflates entry e once and makes its points.  0, -EIO (corrupt: e->why
 * says why) or -ENOMEM.  Caller holds e->lock.  sink: where the windows go
 * (NULL: a file of the build's own). */
static int ckpt_build(const struct aindex *ix, struct bigent *e, const struct win_sink *sink,
                      struct zset **out)
{
    struct ckpt_state *ck = ix->ck;
    uint64_t span = ckpt_span();
    struct build_ctx b = {.max = ckpt_max_points(e)};
    size_t wlen = b.max * ZRAN_WINDOW;
    struct zset *s = calloc(1, sizeof *s);
    struct mapping *mp = sink ? NULL : malloc(sizeof *mp);
    b.pts = malloc(b.max * sizeof *b.pts);
    if (sink) {
        b.fd = sink->fd;
        b.base = sink->off;
    } else
        b.fd = windows_file(ix, wlen, &b.wins);
    if (!s || (!sink && !mp) || !b.pts || (b.fd < 0 && !b.wins)) {
        free(s);
        free(mp);
        free(b.pts);
        if (b.fd >= 0 && !sink)
            close(b.fd);
        if (b.wins)
            munmap(b.wins, wlen);
        snprintf(e->why, sizeof e->why, "out of memory");
        return -ENOMEM;
    }
    uint64_t stream_len = 0;
    char err[160];
    const unsigned char *in = ix->map + e->data;
    b.ix = ix;
    b.in = in;
    int rc = zran_build_consumed(in, e->csize, e->usize, e->crc, span, on_point, on_consumed,
                                 &b, &stream_len, err, sizeof err);
    if (rc) {
        release_map(ix, (uintptr_t)in, (uintptr_t)in + e->csize);
        snprintf(e->why, sizeof e->why, "%s", err);
        free(s);
        free(mp);
        free(b.pts);
        if (b.fd >= 0 && !sink)
            close(b.fd);
        if (b.wins)
            munmap(b.wins, wlen);
        return rc == -ENOMEM ? -ENOMEM : -EIO;
    }
    if (sink) {
        b.wins = (unsigned char *)(uintptr_t)sink->map;
        s->wins_shared = true;
    } else if (b.fd >= 0) {
        void *p = mmap(NULL, wlen, PROT_READ, MAP_SHARED, b.fd, 0);
        close(b.fd);
        if (p == MAP_FAILED) {
            free(s);
            free(mp);
            free(b.pts);
            snprintf(e->why, sizeof e->why, "out of memory");
            return -ENOMEM;
        }
        b.wins = p;
        s->wins_shared = true;
    } else
        mprotect(b.wins, wlen, PROT_READ);
    /* on_point took the CRCs of every span but the last. */
    if (b.n) {
        uint64_t beg = b.pts[b.n - 1].in_bits >> 3;
        b.pts[b.n - 1].span_crc = crc_release(ix, 0, in + beg, stream_len - beg);
    }
    /* The rest of the entry's mapped input the build touched: out of our
     * RSS too (the zip is a shared file mapping; the page cache keeps it). */
    release_map(ix, (uintptr_t)in + b.released,
                (uintptr_t)in + stream_len);
    s->n = (uint32_t)b.n;
    s->stream_len = stream_len;
    s->pts = s->own_pts = b.pts;
    s->wins = b.wins;
    s->owner = e;
    pthread_mutex_lock(&ck->lock);
    if (mp) { /* a sink's mapping is registered by its owner */
        mp->addr = b.wins;
        mp->len = wlen;
        mp->next = ck->maps;
        ck->maps = mp;
    }
    /* The points array is freed with the set: keep it in a mapping-less
     * allocation that ckpt_free releases through the set list. */
    s->next = ck->sets;
    ck->sets = s;
    pthread_mutex_unlock(&ck->lock);
    atomic_fetch_add(&ck->built, 1);
    *out = s;
    return 0;
}

/* The points of e, building them on first use.  sidecar: also rewrite the
 * sidecar after a build (best effort). */
static int ckpt_get(const struct aindex *ix, struct bigent *e, bool sidecar,
                    const struct zset *discard, const struct zset **out, char *err,
                    size_t errlen)
{
    struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
    if (s && s != discard) {
        *out = s;
        return 0;
    }
    int rc = 0;
    bool built = false;
    pthread_mutex_lock(&e->lock);
    s = atomic_load_explicit(&e->set, memory_order_acquire);
    if (s == discard && s) {
        /* It failed a reader's checks: build afresh (once per set). */
        s = NULL;
        atomic_store(&e->set, NULL);
    }
    if (!s) {
        if (atomic_load(&e->bad))
            rc = -EIO;
        else if ((rc = ckpt_build(ix, e, NULL, &s)) == 0) {
            atomic_store_explicit(&e->set, s, memory_order_release);
            built = true;
        } else if (rc == -EIO)
            atomic_store(&e->bad, 1);
        if (rc)
            snprintf(err, errlen, "%s", e->why);
    }
    pthread_mutex_unlock(&e->lock);
    if (rc)
        return rc;
    if (built && sidecar) {
        char *path = sidecar_path(ix->path);
        if (path) {
            pthread_mutex_lock(&ix->ck->lock);
            ckpt_write(ix, path);
            pthread_mutex_unlock(&ix->ck->lock);
            free(path);
        }
    }
    *out = s;
    return 0;
}

/* The cleaned path of node idx (for messages), into buf. */
static void node_path(const struct aindex *ix, uint32_t idx, char *buf, size_t cap)
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

/* The path of the (first) file node whose data starts at data. */
static void data_path(const struct aindex *ix, uint64_t data, char *buf, size_t cap)
{
    snprintf(buf, cap, "data at offset %ju", (uintmax_t)data);
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && ix->nodes[i].data == data) {
            node_path(ix, i, buf, cap);
            return;
        }
}

struct build_job {
    const struct aindex *ix;
    const struct win_sink *sinks; /* per bigent */
    struct side_plan *pl;
    const size_t *order;          /* bigents, largest first */
    size_t norder;
    atomic_size_t next;
    atomic_int failed;            /* index + 1 of a bigent that failed */
    atomic_int error;             /* its -errno */
};

static void *build_worker(void *arg)
{
    struct build_job *bj = arg;
    struct ckpt_state *ck = bj->ix->ck;
    for (;;) {
        size_t k = atomic_fetch_add(&bj->next, 1);
        if (k >= bj->norder || atomic_load(&bj->failed))
            break;
        size_t i = bj->order[k];
        struct bigent *e = &ck->big[i];
        int rc = 0;
        pthread_mutex_lock(&e->lock);
        struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
        if (!s) {
            if (atomic_load(&e->bad))
                rc = -EIO;
            else if ((rc = ckpt_build(bj->ix, e, &bj->sinks[i], &s)) == 0) {
                atomic_store_explicit(&e->set, s, memory_order_release);
                bj->pl->placed[i] = s;
            } else if (rc == -EIO)
                atomic_store(&e->bad, 1);
        }
        pthread_mutex_unlock(&e->lock);
        if (rc) {
            int none = 0;
            if (atomic_compare_exchange_strong(&bj->failed, &none, (int)i + 1))
                atomic_store(&bj->error, rc);
            break;
        }
    }
    return NULL;
}

static int cmp_usize_desc(const void *a, const void *b, void *ctx)
{
    const struct ckpt_state *ck = ctx;
    uint64_t x = ck->big[*(const size_t *)a].usize, y = ck->big[*(const size_t *)b].usize;
    return x > y ? -1 : x < y;
}

int aindex_build_checkpoints(const struct aindex *ix, const char *sidecar, char **why)
{
    if (why)
        *why = NULL;
    struct ckpt_state *ck = ix->ck;
    if (!ck)
        return 0;
    char *dest = sidecar ? strdup(sidecar) : sidecar_path(ix->path);
    size_t *min_slots = calloc(ck->nbig, sizeof *min_slots);
    size_t *order = calloc(ck->nbig, sizeof *order);
    struct win_sink *sinks = calloc(ck->nbig, sizeof *sinks);
    struct mapping *mp = malloc(sizeof *mp);
    struct side_plan pl = {.fd = -1};
    int rc = 0;
    unsigned char *map = MAP_FAILED;
    if (!dest || !min_slots || !order || !sinks || !mp) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", ix->path);
        goto out;
    }
    size_t norder = 0;
    for (size_t i = 0; i < ck->nbig; i++) {
        min_slots[i] = atomic_load(&ck->big[i].set) ? 0 : ckpt_max_points(&ck->big[i]);
        if (min_slots[i])
            order[norder++] = i;
    }
    if (!norder && !sidecar) {
        /* Nothing to build: if every entry's points came from the sidecar
         * there already, it stays as it is. */
        bool all_loaded = true;
        for (size_t i = 0; i < ck->nbig && all_loaded; i++) {
            const struct zset *s = atomic_load(&ck->big[i].set);
            all_loaded = s && !s->own_pts;
        }
        if (all_loaded)
            goto out;
    }
    /* The windows of the builds go straight into the new sidecar's
     * regions (mapped: they are the sets' windows from now on). */
    if ((rc = plan_open(ix, dest, min_slots, &pl)) != 0
        || (norder && ftruncate(pl.fd, (off_t)pl.wend) != 0 && (rc = -errno))) {
        set_why(why, "%s: %s", dest, strerror(-rc));
        goto out;
    }
    if (norder) {
        map = mmap(NULL, (size_t)pl.wend, PROT_READ, MAP_SHARED, pl.fd, 0);
        if (map == MAP_FAILED) {
            rc = -ENOMEM;
            set_why(why, "%s: mmap: %s", dest, strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < ck->nbig; i++)
            sinks[i] = (struct win_sink){pl.fd, (off_t)pl.woff[i], map + pl.woff[i]};
        qsort_r(order, norder, sizeof *order, cmp_usize_desc, ck);
        struct build_job bj = {.ix = ix, .sinks = sinks, .pl = &pl, .order = order,
                               .norder = norder};
        atomic_init(&bj.next, 0);
        atomic_init(&bj.failed, 0);
        atomic_init(&bj.error, 0);
        /* One build per core (each is one single-threaded inflate). */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t nthreads = cpus > 1 ? (size_t)cpus : 1;
        if (nthreads > 4)
            nthreads = 4;
        if (nthreads > norder)
            nthreads = norder;
        pthread_t th[4];
        size_t started = 0;
        for (size_t t = 1; t < nthreads; t++)
            if (pthread_create(&th[started], NULL, build_worker, &bj) == 0)
                started++;
        build_worker(&bj);
        for (size_t t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        /* Sets built into the map live as long as the index: so does it. */
        bool used = false;
        for (size_t i = 0; i < ck->nbig && !used; i++)
            used = pl.placed[i] != NULL;
        if (used) {
            pthread_mutex_lock(&ck->lock);
            mp->addr = map;
            mp->len = (size_t)pl.wend;
            mp->next = ck->maps;
            ck->maps = mp;
            pthread_mutex_unlock(&ck->lock);
            mp = NULL;
            map = MAP_FAILED;
        }
        int failed = atomic_load(&bj.failed);
        if (failed) {
            const struct bigent *e = &ck->big[failed - 1];
            char path[MAX_PATH_BYTES + 64];
            data_path(ix, e->data, path, sizeof path);
            rc = atomic_load(&bj.error);
            set_why(why, "%s: entry '%s': %s", ix->path, path, e->why);
            goto out;
        }
    }
    pthread_mutex_lock(&ck->lock);
    rc = plan_commit(ix, &pl, dest);
    pthread_mutex_unlock(&ck->lock);
    if (rc)
        set_why(why, "%s: %s", dest, strerror(-rc));
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)pl.wend);
    plan_free(&pl);
    free(mp);
    free(sinks);
    free(order);
    free(min_slots);
    free(dest);
    return rc;
}

void aindex_checkpoint_stats(const struct aindex *ix, struct aindex_ckpt_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!ix->ck)
        return;
    st->entries = ix->ck->nbig;
    for (size_t i = 0; i < ix->ck->nbig; i++) {
        const struct zset *s = atomic_load(&ix->ck->big[i].set);
        if (s) {
            st->ready++;
            st->points += s->n;
        }
        if (atomic_load(&ix->ck->big[i].bad))
            st->corrupt++;
    }
    st->loaded = atomic_load(&ix->ck->loaded);
    st->built = atomic_load(&ix->ck->built);
}

/* -------------------------------------------------------------- readers */

struct areader {
    const struct aindex *ix;
    const struct anode *node;
    struct archive *a;     /* positioned in the entry's data, or NULL */
    struct view v;
    uint64_t produced;     /* entry bytes decompressed so far by a */
    bool end_checked;      /* a reached the entry's end, CRC good */
    /* Small direct entries (NODE_DIRECT_*): the whole entry, checked
     * (size and CRC), in the mapping (stored) or fbuf (deflate); NULL
     * until the first read. */
    const unsigned char *fdata;
    unsigned char *fbuf;
    /* Ring of the last bytes produced: offset x lives at win[x % win_cap];
     * valid for [produced - win_len, produced). */
    unsigned char *win;
    size_t win_cap, win_len;
    /* Checkpointed entries: the decoder and the span it is in. */
    struct bigent *big;    /* non-NULL: read through the checkpoints */
    const struct zset *zset;
    struct zran_stream *zs;
    bool zactive;          /* zs is positioned at produced */
    uint32_t zspan;        /* point whose span produced is in */
    uint64_t zverified;    /* end of the spans checked so far */
    const struct zset *discard; /* a set that failed its checks */
    uintptr_t zrelease;    /* mapped input below this was released */
    /* Read-ahead (checkpointed entries read sequentially): spans inflated
     * by the worker pool, or NULL until first needed. */
    struct ra_state *ra;
    uint64_t ra_prev_end;  /* end of the previous read */
    unsigned ra_streak;    /* consecutive reads continuing the previous */
    uint64_t ra_prev_len;  /* size of the last read */
    char err[320];
};

static ssize_t reader_fail(struct areader *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ssize_t reader_fail(struct areader *r, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    for (size_t n = strlen(r->err); n > 0 && r->err[n - 1] == '\n'; n--)
        r->err[n - 1] = '\0';
    if (r->a) {
        archive_read_free(r->a);
        r->a = NULL;
    }
    r->produced = 0;
    r->win_len = 0;
    r->end_checked = false;
    r->zactive = false;
    return -err;
}

/* ------------------------------------------------------------ read-ahead
 *
 * A reader that reads a checkpointed entry sequentially gets the next
 * spans (from one point to the next) inflated ahead of it by a small
 * process-wide pool of RA_THREADS workers, into a bounded set of
 * RA_SLOTS per-reader buffers (the current span, one behind, the rest
 * ahead); reads those cover are a memcpy.  A job runs with its own decoder
 * (one per worker thread; the reader's decoder is never touched) and makes
 * the same checks as the synchronous path before its output can be
 * served: the CRC-32 of the point's window and of the span's compressed
 * bytes, the span's exact length, and at the entry's end that the stream
 * ends there.  A job that fails is dropped and the read that needs its
 * span takes the synchronous path, which checks again and reports EIO
 * (after rebuilding the points once, as usual).  A read whose span is
 * queued but not started yet inflates it on the reader's own thread
 * (with the reader's decoder) rather than waiting.
 *
 * One mutex (ra_pool.lock) guards the queue and every slot's state; the
 * buffers are written only by the job that owns a RUNNING slot and read
 * only by the reader once READY.  areader_close() unqueues its jobs and
 * waits for its running ones, so no worker touches a reader (or its
 * index) after close returns.
 */

#define RA_THREADS 2
/* Per reader: one span behind, the current one, RA_AHEAD ahead, or more
 * for large reads (twice the spans a read covers); buffers are allocated
 * as slots get used, so 128 KiB reads use 6 (~1.5 MiB). */
#define RA_SLOTS 12
#define RA_AHEAD 4

enum ra_slot_state { RA_EMPTY, RA_QUEUED, RA_RUNNING, RA_READY, RA_FAILED };

struct ra_slot {
    enum ra_slot_state state;
    uint32_t span;             /* point index */
    uint64_t beg, len;         /* output range [beg, beg + len) */
    unsigned char *buf;
    size_t cap;
    struct ra_state *ra;
    struct ra_slot *qnext;     /* queue link */
};

struct ra_state {
    const struct aindex *ix;
    struct bigent *big;
    const struct zset *zset;   /* the set the slots were made from */
    uint32_t ahead;            /* spans to keep inflated ahead */
    uint64_t last_ns;          /* when it last scheduled (monotonic) */
    struct ra_state *next;     /* every reader's, for ra_others_streaming */
    unsigned running;          /* slots RUNNING in a worker */
    pthread_cond_t done;       /* a job of this reader finished */
    struct ra_slot slot[RA_SLOTS];
};

static atomic_uint_least64_t ra_served, ra_spans, ra_failed;
static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct ra_slot *head, *tail;
    struct ra_state *readers;  /* every read-ahead state */
    pthread_t th[RA_THREADS];
    int nthreads;
    bool stop, failed;
} ra_pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

/* Inflates span k of set s of entry e into buf (len bytes), with the
 * synchronous path's checks.  0, or -EIO/-ENOMEM with err set. */
static int ra_inflate(const struct aindex *ix, const struct bigent *e, const struct zset *s,
                      uint32_t k, uint64_t len, unsigned char *buf, struct zran_stream *zs,
                      char *err, size_t errlen)
{
    const struct ckpt_point *p = &s->pts[k];
    const unsigned char *w = s->wins + (size_t)k * ZRAN_WINDOW;
    size_t wl = p->out < ZRAN_WINDOW ? (size_t)p->out : ZRAN_WINDOW;
    const unsigned char *in = ix->map + e->data;
    uint64_t beg = p->in_bits >> 3;
    uint64_t end = k + 1 < s->n ? (s->pts[k + 1].in_bits + 7) >> 3 : s->stream_len;
    if (zran_crc32(0, w, wl) != p->win_crc) {
        snprintf(err, errlen, "checkpoint window %u is damaged", k);
        return -EIO;
    }
    if (zran_crc32(0, in + beg, (size_t)(end - beg)) != p->span_crc) {
        snprintf(err, errlen, "archive data at %ju differs from when its checkpoints "
                 "were built", (uintmax_t)(e->data + beg));
        return -EIO;
    }
    struct zran_point zp = {.out = p->out, .in_bits = p->in_bits};
    if (zran_stream_start(zs, in, s->stream_len, &zp, w, wl)) {
        snprintf(err, errlen, "%s", zran_stream_error(zs));
        return -EIO;
    }
    if (s->wins_shared && wl) /* the decoder has its own copy now */
        madvise((void *)((uintptr_t)w & ~(uintptr_t)4095), ZRAN_WINDOW, MADV_DONTNEED);
    int rc = 0;
    for (uint64_t done = 0; done < len;) {
        ssize_t n = zran_stream_read(zs, buf + done, (size_t)(len - done));
        if (n <= 0) {
            if (n < 0)
                snprintf(err, errlen, "%s", zran_stream_error(zs));
            else
                snprintf(err, errlen, "entry data ends at %ju bytes, %ju declared",
                         (uintmax_t)(p->out + done), (uintmax_t)e->usize);
            rc = -EIO;
            break;
        }
        done += (uint64_t)n;
    }
    if (!rc && k + 1 >= s->n) {
        unsigned char extra;
        ssize_t n = zran_stream_read(zs, &extra, 1);
        if (n != 0) {
            if (n < 0)
                snprintf(err, errlen, "%s", zran_stream_error(zs));
            else
                snprintf(err, errlen, "entry data longer than the declared %ju bytes",
                         (uintmax_t)e->usize);
            rc = -EIO;
        }
    }
    /* The span's mapped input leaves our RSS (it stays in the page cache),
     * with what fault-around mapped below it. */
    release_map(ix, (uintptr_t)(in + beg) - FAULT_MARGIN, (uintptr_t)(in + end));
    return rc;
}

/* Runs a slot taken off the queue (state RUNNING, counted in running):
 * called without the lock, by a worker or by the slot's reader. */
static void ra_run(struct ra_slot *sl, struct zran_stream *zs)
{
    struct ra_state *ra = sl->ra;
    char err[200];
    int rc = -ENOMEM;
    if (sl->cap < sl->len) {
        unsigned char *b = realloc(sl->buf, (size_t)sl->len);
        if (b) {
            sl->buf = b;
            sl->cap = (size_t)sl->len;
        }
    }
    if (zs && sl->cap >= sl->len)
        rc = ra_inflate(ra->ix, ra->big, ra->zset, sl->span, sl->len, sl->buf, zs, err,
                        sizeof err);
    atomic_fetch_add_explicit(rc ? &ra_failed : &ra_spans, 1, memory_order_relaxed);
    pthread_mutex_lock(&ra_pool.lock);
    sl->state = rc ? RA_FAILED : RA_READY;
    ra->running--;
    pthread_cond_broadcast(&ra->done);
    pthread_mutex_unlock(&ra_pool.lock);
}

static void *ra_worker(void *arg)
{
    (void)arg;
    struct zran_stream *zs = NULL;
    pthread_mutex_lock(&ra_pool.lock);
    for (;;) {
        while (!ra_pool.head && !ra_pool.stop)
            pthread_cond_wait(&ra_pool.work, &ra_pool.lock);
        struct ra_slot *sl = ra_pool.head;
        if (!sl)
            break; /* stopping, queue drained */
        ra_pool.head = sl->qnext;
        if (!ra_pool.head)
            ra_pool.tail = NULL;
        sl->qnext = NULL;
        sl->state = RA_RUNNING;
        sl->ra->running++;
        pthread_mutex_unlock(&ra_pool.lock);
        if (!zs && zran_stream_new(&zs))
            zs = NULL;
        ra_run(sl, zs);
        pthread_mutex_lock(&ra_pool.lock);
    }
    pthread_mutex_unlock(&ra_pool.lock);
    zran_stream_free(zs);
    return NULL;
}

/* Starts the pool if need be.  Caller holds the lock.  false: no workers
 * (read-ahead off, reads stay synchronous). */
static bool ra_pool_up(void)
{
    if (ra_pool.nthreads || ra_pool.failed)
        return ra_pool.nthreads > 0;
    if (ra_pool.stop)
        return false;
    for (int i = 0; i < RA_THREADS; i++) {
        if (pthread_create(&ra_pool.th[i], NULL, ra_worker, NULL) != 0)
            break;
        ra_pool.nthreads++;
    }
    if (!ra_pool.nthreads)
        ra_pool.failed = true;
    return ra_pool.nthreads > 0;
}

void aindex_readahead_stats(struct aindex_ra_stats *st)
{
    st->reads_served = atomic_load(&ra_served);
    st->spans_inflated = atomic_load(&ra_spans);
    st->spans_failed = atomic_load(&ra_failed);
}

void aindex_shutdown(void)
{
    pthread_mutex_lock(&ra_pool.lock);
    int n = ra_pool.nthreads;
    ra_pool.stop = true;
    pthread_cond_broadcast(&ra_pool.work);
    pthread_mutex_unlock(&ra_pool.lock);
    for (int i = 0; i < n; i++)
        pthread_join(ra_pool.th[i], NULL);
    pthread_mutex_lock(&ra_pool.lock);
    ra_pool.nthreads = 0;
    ra_pool.stop = false; /* a later read-ahead starts the pool again */
    pthread_mutex_unlock(&ra_pool.lock);
}

/* Takes sl off the queue.  Caller holds the lock; sl is QUEUED. */
static void ra_unqueue(struct ra_slot *sl)
{
    struct ra_slot **pp = &ra_pool.head, *prev = NULL;
    while (*pp && *pp != sl) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp) {
        *pp = sl->qnext;
        if (ra_pool.tail == sl)
            ra_pool.tail = prev;
    }
    sl->qnext = NULL;
    sl->state = RA_EMPTY;
}

/* Drops every slot: unqueues the queued ones, waits for running ones.
 * Caller holds the lock. */
static void ra_drop_all_locked(struct ra_state *ra)
{
    for (int i = 0; i < RA_SLOTS; i++)
        if (ra->slot[i].state == RA_QUEUED)
            ra_unqueue(&ra->slot[i]);
    while (ra->running)
        pthread_cond_wait(&ra->done, &ra_pool.lock);
    for (int i = 0; i < RA_SLOTS; i++)
        ra->slot[i].state = RA_EMPTY;
}

static void ra_free(struct ra_state *ra)
{
    if (!ra)
        return;
    pthread_mutex_lock(&ra_pool.lock);
    ra_drop_all_locked(ra);
    for (struct ra_state **pp = &ra_pool.readers; *pp; pp = &(*pp)->next)
        if (*pp == ra) {
            *pp = ra->next;
            break;
        }
    pthread_mutex_unlock(&ra_pool.lock);
    for (int i = 0; i < RA_SLOTS; i++)
        free(ra->slot[i].buf);
    pthread_cond_destroy(&ra->done);
    free(ra);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether another reader streamed in the last RA_BUSY_NS: then the cores
 * are shared already and read-ahead would only add work (each stream has
 * its own thread).  Caller holds the lock. */
#define RA_BUSY_NS 50000000u
static bool ra_others_streaming(const struct ra_state *self, uint64_t now)
{
    for (const struct ra_state *o = ra_pool.readers; o; o = o->next)
        if (o != self && now - o->last_ns < RA_BUSY_NS)
            return true;
    return false;
}

static struct ra_slot *ra_find(struct ra_state *ra, uint32_t span)
{
    for (int i = 0; i < RA_SLOTS; i++)
        if (ra->slot[i].state != RA_EMPTY && ra->slot[i].span == span)
            return &ra->slot[i];
    return NULL;
}

/* The point whose span holds offset (last point with out <= offset). */
static uint32_t span_of(const struct zset *s, uint64_t offset)
{
    uint32_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->pts[mid].out <= offset)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* After a sequential read at offset, whose run has reached end: keeps the
 * slots of spans from the one before offset's to RA_AHEAD after end's,
 * and queues the missing ones after end's. */
static void ra_schedule(struct areader *r, uint64_t offset, uint64_t end)
{
    const struct zset *s = r->zset;
    if (!s || end >= r->node->size)
        return;
    struct ra_state *ra = r->ra;
    if (ra && ra->zset != s) {
        ra_free(ra); /* made from points since discarded */
        r->ra = ra = NULL;
    }
    if (!ra) {
        if (!(ra = calloc(1, sizeof *ra)))
            return;
        pthread_cond_init(&ra->done, NULL);
        ra->ix = r->ix;
        ra->big = r->big;
        ra->zset = s;
        for (int i = 0; i < RA_SLOTS; i++)
            ra->slot[i].ra = ra;
        r->ra = ra;
        pthread_mutex_lock(&ra_pool.lock);
        ra->next = ra_pool.readers;
        ra_pool.readers = ra;
        pthread_mutex_unlock(&ra_pool.lock);
    }
    uint32_t cur = span_of(s, end - 1), low = span_of(s, offset);
    uint64_t rlen = r->ra_prev_len, span = AINDEX_CKPT_SPAN;
    uint64_t per_read = (rlen + span - 1) / span + 1;
    uint32_t ahead = per_read * 2 > RA_AHEAD ? (uint32_t)(per_read * 2) : RA_AHEAD;
    ra->ahead = ahead > RA_SLOTS - 2 ? RA_SLOTS - 2 : ahead;
    uint64_t now = mono_ns();
    pthread_mutex_lock(&ra_pool.lock);
    ra->last_ns = now;
    /* Others streaming: keep what is inflated, queue nothing new. */
    bool more = !ra_others_streaming(ra, now);
    if (!ra_pool_up()) {
        pthread_mutex_unlock(&ra_pool.lock);
        return;
    }
    uint32_t keep = low > 0 ? low - 1 : 0;
    for (int i = 0; i < RA_SLOTS; i++) {
        struct ra_slot *sl = &ra->slot[i];
        bool stale = sl->span < keep || sl->span > cur + ra->ahead;
        if (sl->state == RA_FAILED || (stale && sl->state == RA_READY))
            sl->state = RA_EMPTY;
        else if (stale && sl->state == RA_QUEUED)
            ra_unqueue(sl);
    }
    bool queued = false;
    for (uint32_t k = cur + 1; more && k <= cur + ra->ahead && k < s->n; k++) {
        if (ra_find(ra, k))
            continue;
        struct ra_slot *sl = NULL;
        for (int i = 0; i < RA_SLOTS && !sl; i++)
            if (ra->slot[i].state == RA_EMPTY)
                sl = &ra->slot[i];
        if (!sl)
            break;
        sl->span = k;
        sl->beg = s->pts[k].out;
        sl->len = (k + 1 < s->n ? s->pts[k + 1].out : r->node->size) - sl->beg;
        sl->state = RA_QUEUED;
        sl->qnext = NULL;
        if (ra_pool.tail)
            ra_pool.tail->qnext = sl;
        else
            ra_pool.head = sl;
        ra_pool.tail = sl;
        queued = true;
    }
    if (queued)
        pthread_cond_broadcast(&ra_pool.work);
    pthread_mutex_unlock(&ra_pool.lock);
}

/* Serves [offset, end) from read-ahead slots if they cover it (waiting for
 * running jobs, running queued ones here).  Bytes served, or 0: not
 * covered (or a job failed: the caller takes the synchronous path, which
 * makes the same checks and reports the error). */
static ssize_t ra_serve(struct areader *r, unsigned char *out, uint64_t offset, uint64_t end)
{
    struct ra_state *ra = r->ra;
    if (!ra || ra->zset != r->zset)
        return 0;
    const struct zset *s = ra->zset;
    uint32_t k0 = span_of(s, offset), k1 = span_of(s, end - 1);
    if (k1 - k0 >= RA_SLOTS)
        return 0;
    struct ra_slot *use[RA_SLOTS];
    pthread_mutex_lock(&ra_pool.lock);
    for (uint32_t k = k0; k <= k1; k++)
        if (!ra_find(ra, k)) {
            pthread_mutex_unlock(&ra_pool.lock);
            return 0;
        }
    for (uint32_t k = k0; k <= k1; k++) {
        struct ra_slot *sl;
        while ((sl = ra_find(ra, k)) && sl->state != RA_READY) {
            if (sl->state == RA_FAILED) {
                sl->state = RA_EMPTY;
                sl = NULL;
                break;
            }
            if (sl->state == RA_QUEUED) {
                /* Not started: inflate it here rather than wait. */
                ra_unqueue(sl);
                sl->state = RA_RUNNING;
                ra->running++;
                pthread_mutex_unlock(&ra_pool.lock);
                if (!r->zs && zran_stream_new(&r->zs))
                    r->zs = NULL;
                r->zactive = false; /* its decoder is repositioned */
                r->end_checked = false;
                ra_run(sl, r->zs);
                pthread_mutex_lock(&ra_pool.lock);
            } else
                pthread_cond_wait(&ra->done, &ra_pool.lock);
        }
        if (!sl) {
            pthread_mutex_unlock(&ra_pool.lock);
            return 0;
        }
        use[k - k0] = sl;
    }
    pthread_mutex_unlock(&ra_pool.lock);
    /* READY slots are left alone by the workers and by ra_schedule (which
     * only this reader calls): copy without the lock. */
    uint64_t at = offset;
    for (uint32_t k = k0; k <= k1; k++) {
        struct ra_slot *sl = use[k - k0];
        uint64_t hi = sl->beg + sl->len < end ? sl->beg + sl->len : end;
        memcpy(out + (at - offset), sl->buf + (at - sl->beg), (size_t)(hi - at));
        at = hi;
    }
    return (ssize_t)(end - offset);
}

int areader_open(const struct aindex *ix, const struct anode *file,
                 struct areader **out)
{
    *out = NULL;
    if (file->kind == KIND_DIR)
        return -EISDIR;
    struct areader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->ix = ix;
    r->node = file;
    if (file->kind == KIND_FILE && !(file->flags & NODE_ENCRYPTED)
        && file->size >= AINDEX_CKPT_MIN) {
        struct bigent *e = find_big(ix->ck, file->data);
        if (e && e->usize == file->size)
            r->big = e;
    }
    *out = r;
    return 0;
}

void areader_close(struct areader *r)
{
    if (!r)
        return;
    ra_free(r->ra); /* first: no job of r runs after this */
    if (r->big && r->zset && r->zrelease) {
        /* The input around the last position leaves our RSS. */
        const struct zset *s = r->zset;
        uint64_t hi = r->zspan + 1 < s->n ? s->pts[r->zspan + 1].in_bits >> 3 : s->stream_len;
        release_map(r->ix, r->zrelease - FAULT_MARGIN,
                    (uintptr_t)(r->ix->map + r->big->data + hi) + FAULT_MARGIN);
    }
    if (r->a)
        archive_read_free(r->a);
    zran_stream_free(r->zs);
    free(r->win);
    free(r->fbuf);
    free(r);
}

const char *areader_error(const struct areader *r)
{
    return r->err[0] ? r->err : NULL;
}

/* Streamable reader on the view starting at lho; succeeds only if its
 * header ends exactly where the index saw the entry's data start. */
static struct archive *try_local_header(struct areader *r, uint64_t lho)
{
    const struct aindex *ix = r->ix;
    struct archive_entry *e;
    r->v = (struct view){.base = ix->map + lho, .len = (int64_t)(ix->map_len - lho)};
    struct archive *a;
    if (open_view(&r->v, false, &a) != ARCHIVE_OK) {
        if (a)
            archive_read_free(a);
        return NULL;
    }
    int h = archive_read_next_header(a, &e);
    if ((h == ARCHIVE_OK || h == ARCHIVE_WARN)
        && archive_filter_bytes(a, 0) == (la_int64_t)(r->node->data - lho))
        return a;
    archive_read_free(a);
    return NULL;
}

/* Slow path: walk the archive with the seekable reader to the entry whose
 * data starts where the index says. */
static struct archive *walk_to_entry(struct areader *r)
{
    struct archive_entry *e;
    r->v = (struct view){.base = r->ix->map, .len = (int64_t)r->ix->map_len};
    struct archive *a;
    if (open_view(&r->v, true, &a) != ARCHIVE_OK) {
        if (a)
            archive_read_free(a);
        return NULL;
    }
    for (;;) {
        int h = archive_read_next_header(a, &e);
        if (h == ARCHIVE_EOF || h == ARCHIVE_FATAL || h == ARCHIVE_RETRY)
            break;
        if (h != ARCHIVE_FAILED && archive_entry_filetype(e) == AE_IFREG
            && archive_filter_bytes(a, 0) == (la_int64_t)r->node->data)
            return a;
    }
    archive_read_free(a);
    return NULL;
}

/* Positions a fresh libarchive reader at the start of the entry's data. */
static int start_entry(struct areader *r)
{
    const struct aindex *ix = r->ix;
    uint64_t data = r->node->data;
    struct archive *a = NULL;
    if (r->a) {
        archive_read_free(r->a);
        r->a = NULL;
    }
    r->produced = 0;
    r->win_len = 0;
    r->end_checked = false;
    if (data >= 30 && data <= ix->map_len) {
        uint64_t lo = data > LOCAL_HEADER_MAX ? data - LOCAL_HEADER_MAX : 0;
        int tried = 0;
        for (uint64_t p = data - 30 + 1; p-- > lo && tried < MAX_HEADER_CANDIDATES;) {
            const unsigned char *m = ix->map + p;
            if (m[0] != 'P' || m[1] != 'K' || m[2] != 3 || m[3] != 4)
                continue;
            tried++;
            if ((a = try_local_header(r, p)))
                break;
        }
    }
    if (!a)
        a = walk_to_entry(r);
    if (!a)
        return (int)reader_fail(r, EIO, "cannot position at the entry's data");
    r->a = a;
    if (!r->win) {
        r->win_cap = r->node->size < AINDEX_WINDOW ? (size_t)r->node->size : AINDEX_WINDOW;
        r->win = malloc(r->win_cap ? r->win_cap : 1);
        if (!r->win)
            return (int)reader_fail(r, ENOMEM, "out of memory");
    }
    return 0;
}

static void win_store(struct areader *r, uint64_t off, const unsigned char *src, size_t n)
{
    if (n >= r->win_cap) {
        src += n - r->win_cap;
        off += n - r->win_cap;
        n = r->win_cap;
    }
    size_t at = (size_t)(off % r->win_cap);
    size_t first = n < r->win_cap - at ? n : r->win_cap - at;
    memcpy(r->win + at, src, first);
    memcpy(r->win, src + first, n - first);
}

static void win_load(const struct areader *r, uint64_t off, unsigned char *dst, size_t n)
{
    size_t at = (size_t)(off % r->win_cap);
    size_t first = n < r->win_cap - at ? n : r->win_cap - at;
    memcpy(dst, r->win + at, first);
    memcpy(dst + first, r->win, n - first);
}

/* Decompresses up to want bytes into dst (which may be inside the ring),
 * keeping the ring and the declared size in step.  Returns bytes or
 * -errno; never 0 (running short of the declared size is an error). */
static uint64_t span_end(const struct areader *r, uint32_t i)
{
    const struct zset *s = r->zset;
    return i + 1 < s->n ? s->pts[i + 1].out : r->node->size;
}

/* Checks the compressed bytes of span i against the CRC taken when the
 * points were built; then output up to the span's end may be served. */
static int span_verify(struct areader *r, uint32_t i, bool sequential)
{
    const struct zset *s = r->zset;
    const unsigned char *in = r->ix->map + r->big->data;
    uint64_t beg = s->pts[i].in_bits >> 3;
    uint64_t end = i + 1 < s->n ? (s->pts[i + 1].in_bits + 7) >> 3 : s->stream_len;
    if (zran_crc32(0, in + beg, (size_t)(end - beg)) != s->pts[i].span_crc)
        return (int)reader_fail(r, EIO, "archive data at %ju differs from when its "
                                "checkpoints were built",
                                (uintmax_t)(r->big->data + beg));
    r->zspan = i;
    r->zverified = span_end(r, i);
    /* Streaming on: the mapped compressed bytes of spans behind are not
     * needed by this reader any more; drop them from its RSS (they stay in
     * the page cache). */
    uintptr_t lo = (uintptr_t)in + (uintptr_t)(beg > 65536 ? beg - 65536 : 0);
    if (sequential && r->zrelease && lo > r->zrelease)
        release_map(r->ix, r->zrelease - FAULT_MARGIN, lo);
    r->zrelease = lo;
    return 0;
}

static ssize_t produce(struct areader *r, unsigned char *dst, size_t want, bool in_ring)
{
    uint64_t left = r->node->size - r->produced;
    if (want > left)
        want = (size_t)left;
    la_ssize_t n;
    if (r->big) {
        if (r->produced >= r->zverified) {
            const struct zset *s = r->zset;
            if (r->zspan + 1 >= s->n)
                return reader_fail(r, EIO, "checkpoint spans inconsistent");
            int rc = span_verify(r, r->zspan + 1, true);
            if (rc) {
                r->discard = s; /* the next read rebuilds the points */
                return rc;
            }
        }
        if (want > r->zverified - r->produced)
            want = (size_t)(r->zverified - r->produced);
        n = zran_stream_read(r->zs, dst, want);
        if (n < 0)
            return reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    } else {
        n = archive_read_data(r->a, dst, want);
        if (n < 0)
            return reader_fail(r, EIO, "%s", archive_err(r->a));
    }
    if (n == 0)
        return reader_fail(r, EIO, "entry data ends at %ju bytes, %ju declared",
                           (uintmax_t)r->produced, (uintmax_t)r->node->size);
    if (!in_ring)
        win_store(r, r->produced, dst, (size_t)n);
    r->produced += (uint64_t)n;
    r->win_len = r->win_len + (size_t)n > r->win_cap ? r->win_cap : r->win_len + (size_t)n;
    return n;
}

/* Decompresses forward until produced == target, into the ring. */
static int advance_to(struct areader *r, uint64_t target)
{
    while (r->produced < target) {
        size_t at = (size_t)(r->produced % r->win_cap);
        uint64_t want = target - r->produced;
        if (want > r->win_cap - at)
            want = r->win_cap - at;
        ssize_t n = produce(r, r->win + at, (size_t)want, true);
        if (n < 0)
            return (int)n;
    }
    return 0;
}

/* At the declared end: the stream must end here, with a good CRC. */
static int check_end(struct areader *r)
{
    if (r->end_checked)
        return 0;
    unsigned char extra;
    la_ssize_t n;
    if (r->big) {
        if ((n = zran_stream_read(r->zs, &extra, 1)) < 0)
            return (int)reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    } else if ((n = archive_read_data(r->a, &extra, 1)) < 0)
        return (int)reader_fail(r, EIO, "%s", archive_err(r->a));
    if (n > 0)
        return (int)reader_fail(r, EIO, "entry data longer than the declared %ju bytes",
                                (uintmax_t)r->node->size);
    r->end_checked = true;
    return 0;
}

/* Positions the decoder at point k of the current set.  0 or -errno. */
static int zstart(struct areader *r, uint32_t k)
{
    const struct zset *s = r->zset;
    const struct ckpt_point *p = &s->pts[k];
    const unsigned char *w = s->wins + (size_t)k * ZRAN_WINDOW;
    size_t wl = p->out < ZRAN_WINDOW ? (size_t)p->out : ZRAN_WINDOW;
    if (r->zactive && r->zrelease) {
        /* Leaving a position: its mapped input leaves this reader's RSS
         * (the pages stay in the page cache). */
        const struct zset *o = r->zset == s ? s : NULL;
        uint64_t hi = o && r->zspan + 1 < o->n ? (o->pts[r->zspan + 1].in_bits >> 3) + 65536
                                               : 0;
        uintptr_t end = (uintptr_t)(r->ix->map + r->big->data) + (uintptr_t)hi;
        if (end > r->zrelease)
            release_map(r->ix, r->zrelease - FAULT_MARGIN, end);
    }
    r->zactive = false;
    r->end_checked = false;
    r->win_len = 0;
    r->produced = p->out;
    if (!r->win) {
        r->win_cap = AINDEX_WINDOW;
        if (!(r->win = malloc(r->win_cap)))
            return (int)reader_fail(r, ENOMEM, "out of memory");
    }
    if (!r->zs && zran_stream_new(&r->zs))
        return (int)reader_fail(r, ENOMEM, "out of memory");
    if (zran_crc32(0, w, wl) != p->win_crc)
        return (int)reader_fail(r, EIO, "checkpoint window %u is damaged", k);
    int rc = span_verify(r, k, false);
    if (rc)
        return rc;
    struct zran_point zp = {.out = p->out, .in_bits = p->in_bits};
    if (zran_stream_start(r->zs, r->ix->map + r->big->data, s->stream_len, &zp, w, wl))
        return (int)reader_fail(r, EIO, "%s", zran_stream_error(r->zs));
    if (s->wins_shared && wl) /* the decoder has its own copy now */
        madvise((void *)((uintptr_t)w & ~(uintptr_t)4095), ZRAN_WINDOW, MADV_DONTNEED);
    r->produced = p->out;
    r->zactive = true;
    return 0;
}

/* Makes r->zset the entry's current points (building them if need be) and
 * positions the decoder at the last point at or before offset.  A set that
 * fails its checks (damaged sidecar) is rebuilt once. */
static int zseek(struct areader *r, uint64_t offset)
{
    for (int attempt = 0;; attempt++) {
        const struct zset *s;
        char err[sizeof r->err];
        int rc = ckpt_get(r->ix, r->big, true, r->discard, &s, err, sizeof err);
        if (rc)
            return (int)reader_fail(r, -rc, "%s", err);
        r->zset = s;
        uint32_t lo = 0, hi = s->n; /* last point with out <= offset */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (s->pts[mid].out <= offset)
                lo = mid;
            else
                hi = mid;
        }
        if (r->zactive && offset >= r->produced - r->win_len
            && s->pts[lo].out <= r->produced)
            return 0; /* forward from here is no longer than from a point */
        if ((rc = zstart(r, lo)) != -EIO || attempt > 0)
            return rc;
        r->discard = s;
    }
}

/* areader_pread for a checkpointed entry: [offset, end) within the entry. */
static ssize_t zpread_sync(struct areader *r, unsigned char *out, uint64_t offset,
                           uint64_t end);

static ssize_t zpread(struct areader *r, unsigned char *out, uint64_t offset, uint64_t end)
{
    /* Sequential: this read continues the previous one, give or take the
     * reordering of parallel kernel read-ahead requests (ra_prev_end is
     * the furthest end of the current run of sequential reads). */
    uint64_t prev = r->ra_prev_end;
    bool seq = offset <= prev + 2 * AINDEX_WINDOW && offset + 2 * AINDEX_WINDOW >= prev;
    r->ra_streak = seq ? r->ra_streak + 1 : 0;
    r->ra_prev_end = seq && prev > end ? prev : end;
    r->ra_prev_len = end - offset;
    ssize_t n = ra_serve(r, out, offset, end);
    if (n == 0)
        n = zpread_sync(r, out, offset, end);
    else
        atomic_fetch_add_explicit(&ra_served, 1, memory_order_relaxed);
    if (n > 0 && r->ra_streak >= 2)
        ra_schedule(r, offset, r->ra_prev_end);
    return n;
}

static ssize_t zpread_sync(struct areader *r, unsigned char *out, uint64_t offset,
                           uint64_t end)
{
    size_t total = (size_t)(end - offset);
    bool ring_hit = (r->zactive || r->end_checked) && r->win_len
                    && offset >= r->produced - r->win_len && end <= r->produced;
    if (!ring_hit) {
        int rc = zseek(r, offset);
        if (rc)
            return rc;
    }
    size_t done = 0;
    if (offset < r->produced) {
        uint64_t upto = end < r->produced ? end : r->produced;
        done = (size_t)(upto - offset);
        win_load(r, offset, out, done);
    } else if (offset > r->produced) {
        int rc = advance_to(r, offset);
        if (rc)
            return rc;
    }
    while (done < total) {
        ssize_t n = produce(r, out + done, total - done, false);
        if (n < 0)
            return n;
        done += (size_t)n;
    }
    if (end == r->node->size) {
        int rc = check_end(r);
        if (rc)
            return rc;
    }
    return (ssize_t)done;
}

/* Thread-cached decoder for direct_load (one per thread that read a small
 * deflate entry, freed with the thread). */
static pthread_key_t direct_key;
static pthread_once_t direct_once = PTHREAD_ONCE_INIT;
static bool direct_key_ok;

static void direct_key_free(void *p) { zran_stream_free(p); }
static void direct_key_init(void)
{
    direct_key_ok = pthread_key_create(&direct_key, direct_key_free) == 0;
}

/* A small direct entry, whole: stored bytes are checked in place, deflate
 * ones inflated (straight from the mapping) into r->fbuf; either way
 * exactly the declared size with the central directory's CRC-32 before a
 * byte is served.  0 or -errno. */
static int direct_load(struct areader *r)
{
    const struct anode *n = r->node;
    const unsigned char *in = r->ix->map + n->data;
    uint32_t crc = n->first_child;
    uint64_t csize = n->nchildren;
    if (n->flags & NODE_DIRECT_STORED) {
        /* direct_ok: csize == size, inside the mapping (cd_record). */
        uint32_t c = zran_crc32(0, in, (size_t)n->size);
        if (c != crc)
            return (int)reader_fail(r, EIO, "CRC mismatch (data %08x, declared %08x)", c, crc);
        r->fdata = in;
        return 0;
    }
    pthread_once(&direct_once, direct_key_init);
    struct zran_stream *zs = direct_key_ok ? pthread_getspecific(direct_key) : NULL;
    bool cached = zs != NULL;
    if (!zs) {
        if (zran_stream_new(&zs))
            return (int)reader_fail(r, ENOMEM, "out of memory");
        cached = direct_key_ok && pthread_setspecific(direct_key, zs) == 0;
    }
    unsigned char *buf = r->fbuf ? r->fbuf : malloc((size_t)n->size);
    int rc = 0;
    if (!buf) {
        rc = (int)reader_fail(r, ENOMEM, "out of memory");
        goto out;
    }
    r->fbuf = buf;
    struct zran_point p0 = {0, 0};
    if (zran_stream_start(zs, in, csize, &p0, NULL, 0)) {
        rc = (int)reader_fail(r, EIO, "%s", zran_stream_error(zs));
        goto out;
    }
    uint64_t got = 0;
    while (got < n->size) {
        ssize_t k = zran_stream_read(zs, buf + got, (size_t)(n->size - got));
        if (k <= 0) {
            rc = k < 0 ? (int)reader_fail(r, EIO, "%s", zran_stream_error(zs))
                       : (int)reader_fail(r, EIO, "entry data ends at %ju bytes, %ju declared",
                                          (uintmax_t)got, (uintmax_t)n->size);
            goto out;
        }
        got += (uint64_t)k;
    }
    unsigned char extra;
    ssize_t k = zran_stream_read(zs, &extra, 1);
    if (k != 0) {
        rc = k < 0 ? (int)reader_fail(r, EIO, "%s", zran_stream_error(zs))
                   : (int)reader_fail(r, EIO, "entry data longer than the declared %ju bytes",
                                      (uintmax_t)n->size);
        goto out;
    }
    uint32_t c = zran_crc32(0, buf, (size_t)n->size);
    if (c != crc) {
        rc = (int)reader_fail(r, EIO, "CRC mismatch (data %08x, declared %08x)", c, crc);
        goto out;
    }
    r->fdata = buf;
out:
    if (!cached)
        zran_stream_free(zs);
    return rc;
}

ssize_t areader_pread(struct areader *r, void *buf, size_t size, uint64_t offset)
{
    const struct anode *node = r->node;
    unsigned char *out = buf;
    if (offset >= node->size || size == 0)
        return 0;
    if (size > (size_t)SSIZE_MAX)
        size = (size_t)SSIZE_MAX;
    uint64_t end = node->size - offset < size ? node->size : offset + size;
    size_t total = (size_t)(end - offset);
    r->err[0] = '\0';

    if (node->kind == KIND_INLINE) {
        memcpy(out, r->ix->arena + node->data + offset, total);
        return (ssize_t)total;
    }
    if (node->flags & NODE_ENCRYPTED)
        return reader_fail(r, EIO, "entry is encrypted");
    if (r->big)
        return zpread(r, out, offset, end);
    if (node->kind == KIND_FILE && (node->flags & (NODE_DIRECT_STORED | NODE_DIRECT_DEFLATE))) {
        if (!r->fdata) {
            int rc = direct_load(r);
            if (rc)
                return rc;
        }
        memcpy(out, r->fdata + offset, total);
        return (ssize_t)total;
    }

    bool have_window = r->a || r->end_checked;
    if (!have_window || offset < r->produced - r->win_len) {
        /* Nothing usable, or behind the window: start over. */
        int rc = start_entry(r);
        if (rc)
            return rc;
        if (node->size <= r->win_cap) {
            /* Small entry: decompress it whole and check its CRC before
             * serving a byte of it. */
            if ((rc = advance_to(r, node->size)) || (rc = check_end(r)))
                return rc;
        }
    }
    size_t done = 0;
    if (offset < r->produced) {
        uint64_t upto = end < r->produced ? end : r->produced;
        done = (size_t)(upto - offset);
        win_load(r, offset, out, done);
    } else if (offset > r->produced) {
        int rc = advance_to(r, offset);
        if (rc)
            return rc;
    }
    while (done < total) {
        ssize_t n = produce(r, out + done, total - done, false);
        if (n < 0)
            return n;
        done += (size_t)n;
    }
    if (end == node->size) {
        int rc = check_end(r);
        if (rc)
            return rc;
    }
    if (r->end_checked && r->a) {
        /* Everything was produced: the window serves what is left. */
        archive_read_free(r->a);
        r->a = NULL;
    }
    return (ssize_t)done;
}

/* ---------------------------------------------------------- verification */

int aindex_verify_data(const char *path, char **why)
{
    const unsigned char *map;
    size_t len;
    if (why)
        *why = NULL;
    int rc = map_file(path, &map, &len, NULL, why);
    if (rc)
        return rc;
    struct view v = {.base = map, .len = (int64_t)len};
    struct archive *a;
    struct archive_entry *e;
    uint64_t seen = 0;
    if (open_view(&v, true, &a) != ARCHIVE_OK) {
        rc = !a || archive_errno(a) == ENOMEM ? -ENOMEM : -EIO;
        set_why(why, "%s: not a readable zip archive: %s", path, archive_err(a));
        if (a)
            archive_read_free(a);
        munmap((void *)map, len);
        return rc;
    }
    for (;;) {
        int h = archive_read_next_header(a, &e);
        if (h == ARCHIVE_EOF)
            break;
        seen++;
        if (h < ARCHIVE_WARN) {
            set_why(why, "%s: entry #%ju: unreadable header: %s", path,
                    (uintmax_t)seen, archive_err(a));
            rc = -EIO;
            break;
        }
        /* Encrypted entries are never served, so there is nothing to vouch
         * for; symlink targets are read (and checked) with the header. */
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_is_data_encrypted(e))
            continue;
        const void *buf;
        size_t n;
        la_int64_t off;
        uint64_t got = 0;
        int r;
        /* libarchive reports bad CRCs and sizes as ARCHIVE_WARN. */
        while ((r = archive_read_data_block(a, &buf, &n, &off)) == ARCHIVE_OK)
            got += n;
        struct clean_path *cp = malloc(sizeof *cp);
        const char *shown = "?";
        if (cp && archive_entry_pathname(e)) {
            clean_name(archive_entry_pathname(e), NULL, cp);
            shown = cp->buf;
        }
        if (r != ARCHIVE_EOF)
            set_why(why, "%s: entry '%s': %s", path, shown, archive_err(a));
        else if (archive_entry_size_is_set(e) && got != (uint64_t)archive_entry_size(e))
            set_why(why, "%s: entry '%s': %ju bytes of data, %jd declared", path, shown,
                    (uintmax_t)got, (intmax_t)archive_entry_size(e));
        else
            r = 0;
        free(cp);
        if (r) {
            rc = -EIO;
            break;
        }
    }
    archive_read_free(a);
    munmap((void *)map, len);
    return rc;
}

/* What aindex_verify_rest knows of one served entry. */
struct vent {
    uint64_t data;   /* data start (the index's) */
    uint64_t csize;  /* central directory's */
    uint32_t node;
    uint32_t crc;    /* central directory's */
    uint16_t method;
    uint8_t nrec;    /* central directory records whose data starts here (max 2) */
    bool direct;     /* the one record agrees with the index and its local header */
};

static int cmp_vent(const void *a, const void *b)
{
    const struct vent *x = a, *y = b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Whether entry v (central directory record r) can be checked straight
 * from the mapping: it must be served exactly as libarchive would serve
 * it, so its record, local header and the index must agree on method,
 * sizes and the CRC libarchive checks (local header's, or the data
 * descriptor's for entries written with one). */
static bool direct_ok(const struct aindex *ix, const struct anode *n, const struct cdrec *r)
{
    const unsigned char *m = ix->map;
    size_t len = ix->map_len;
    if ((r->method != 0 && r->method != 8) || (r->flags & 1) || r->usize != n->size
        || (r->method == 0 && r->csize != r->usize))
        return false;
    const unsigned char *lh = m + r->lho; /* valid: cd_record checked it */
    uint16_t lflags = le16(lh + 6), lmethod = le16(lh + 8);
    if (lmethod != r->method || (lflags & 1))
        return false;
    if (lflags & 8) {
        uint64_t d = r->data + r->csize;
        if (d > len || len - d < 8)
            return false;
        if (le32(m + d) == 0x08074b50u)
            d += 4;
        return le32(m + d) == r->crc;
    }
    uint32_t lcs = le32(lh + 18), lus = le32(lh + 22);
    return le32(lh + 14) == r->crc && (lcs == 0xFFFFFFFFu || lcs == r->csize)
           && (lus == 0xFFFFFFFFu || lus == r->usize);
}

/* One small file node of mark_direct. */
struct dcand {
    uint64_t data;
    uint32_t node;
    uint32_t crc, csize;
    uint8_t nrec, method;
    bool direct;
};

static int cmp_dcand(const void *a, const void *b)
{
    const struct dcand *x = a, *y = b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Flags the small stored/deflate files that can be read straight from the
 * mapping (NODE_DIRECT_*): exactly one central directory record starts
 * its data there, and it agrees with the index and the local header
 * (direct_ok, as aindex_verify_rest decides).  0 or -ENOMEM. */
static int mark_direct(struct aindex *ix)
{
    size_t nc = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_FILE && !(n->flags & NODE_ENCRYPTED) && n->size > 0
            && n->size <= AINDEX_WINDOW)
            nc++;
    }
    uint64_t cd, count;
    if (!nc || find_cd(ix->map, ix->map_len, &cd, &count) != 0)
        return 0;
    struct dcand *c = calloc(nc, sizeof *c);
    if (!c)
        return -ENOMEM;
    nc = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++) {
        const struct anode *n = &ix->nodes[i];
        if (n->kind == KIND_FILE && !(n->flags & NODE_ENCRYPTED) && n->size > 0
            && n->size <= AINDEX_WINDOW)
            c[nc++] = (struct dcand){.data = n->data, .node = i};
    }
    qsort(c, nc, sizeof *c, cmp_dcand);
    uint64_t p = cd;
    struct cdrec r;
    for (uint64_t k = 0; k < count && cd_record(ix->map, ix->map_len, &p, &r); k++) {
        if (r.data == UINT64_MAX)
            continue;
        size_t lo = 0, hi = nc; /* first candidate with data >= r.data */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c[mid].data < r.data)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < nc && c[lo].data == r.data; lo++) {
            struct dcand *x = &c[lo];
            if (x->nrec++ == 0) {
                x->direct = r.csize <= UINT32_MAX && direct_ok(ix, &ix->nodes[x->node], &r);
                x->crc = r.crc;
                x->csize = (uint32_t)r.csize;
                x->method = (uint8_t)r.method;
            } else {
                x->nrec = 2;
                x->direct = false; /* two records, one data start: trust neither */
            }
        }
    }
    for (size_t i = 0; i < nc; i++) {
        if (!c[i].direct)
            continue;
        struct anode *n = &ix->nodes[c[i].node];
        n->flags |= c[i].method == 0 ? NODE_DIRECT_STORED : NODE_DIRECT_DEFLATE;
        n->first_child = c[i].crc;
        n->nchildren = c[i].csize;
    }
    free(c);
    return 0;
}

/* Reads entry n whole through the reader that serves it (libarchive):
 * size and CRC checked at its end.  0 or -errno with err set. */
static int verify_by_reader(const struct aindex *ix, const struct anode *n,
                            unsigned char *buf, size_t cap, char *err, size_t errlen)
{
    struct areader *r;
    int rc = areader_open(ix, n, &r);
    if (rc) {
        snprintf(err, errlen, "%s", strerror(-rc));
        return rc;
    }
    uint64_t off = 0;
    ssize_t got;
    while ((got = areader_pread(r, buf, cap, off)) > 0)
        off += (uint64_t)got;
    if (got < 0) {
        rc = (int)got;
        snprintf(err, errlen, "%s", areader_error(r) ? areader_error(r) : strerror(-rc));
    } else if (off != n->size) {
        rc = -EIO;
        snprintf(err, errlen, "%ju bytes of data, %ju declared", (uintmax_t)off,
                 (uintmax_t)n->size);
    }
    areader_close(r);
    return rc;
}

/* Inflates the raw deflate data of v straight from the mapping: it must
 * end exactly at size bytes with v's CRC.  0 or -errno with err set. */
static int verify_deflate(const struct aindex *ix, const struct vent *v, uint64_t size,
                          struct zran_stream *zs, unsigned char *buf, size_t cap, char *err,
                          size_t errlen)
{
    struct zran_point p0 = {0, 0};
    const unsigned char *in = ix->map + v->data;
    if (zran_stream_start(zs, in, v->csize, &p0, NULL, 0)) {
        snprintf(err, errlen, "%s", zran_stream_error(zs));
        return -EIO;
    }
    uint64_t got = 0, released = 0;
    uint32_t c = 0;
    for (;;) {
        uint64_t used = zran_stream_consumed(zs);
        if (used >= released + RELEASE_STEP) { /* consumed input: out of our RSS */
            release_map(ix, (uintptr_t)(in + released), (uintptr_t)(in + used));
            released = used;
        }
        ssize_t k = zran_stream_read(zs, buf, cap);
        if (k < 0) {
            snprintf(err, errlen, "%s after %ju bytes of output", zran_stream_error(zs),
                     (uintmax_t)got);
            return -EIO;
        }
        if (k == 0)
            break;
        c = zran_crc32(c, buf, (size_t)k);
        got += (uint64_t)k;
        if (got > size) {
            snprintf(err, errlen, "deflate data longer than the declared %ju bytes",
                     (uintmax_t)size);
            return -EIO;
        }
    }
    if (got != size) {
        snprintf(err, errlen, "deflate data ends at %ju bytes, %ju declared", (uintmax_t)got,
                 (uintmax_t)size);
        return -EIO;
    }
    if (c != v->crc) {
        snprintf(err, errlen, "CRC mismatch (data %08x, declared %08x)", c, v->crc);
        return -EIO;
    }
    return 0;
}

/* A large deflate entry: its points, built if need be (checking it), or
 * if they came from a sidecar, every span's compressed bytes checked
 * against the CRCs recorded when they were built (rebuilt on mismatch). */
static int verify_big(const struct aindex *ix, struct bigent *e, char *err, size_t errlen)
{
    const struct zset *s = atomic_load_explicit(&e->set, memory_order_acquire);
    const struct zset *discard = NULL;
    if (s && !s->own_pts) { /* loaded, not built by this index */
        const unsigned char *in = ix->map + e->data;
        for (uint32_t i = 0; i < s->n && !discard; i++) {
            uint64_t beg = s->pts[i].in_bits >> 3;
            uint64_t end = i + 1 < s->n ? (s->pts[i + 1].in_bits + 7) >> 3 : s->stream_len;
            if (crc_release(ix, 0, in + beg, end - beg) != s->pts[i].span_crc)
                discard = s;
        }
        release_map(ix, (uintptr_t)in, (uintptr_t)in + s->stream_len);
        if (!discard)
            return 0;
    } else if (s)
        return 0;
    return ckpt_get(ix, e, false, discard, &s, err, errlen);
}

int aindex_verify_rest(const struct aindex *ix, char **why)
{
    if (why)
        *why = NULL;
    size_t nv = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && !(ix->nodes[i].flags & NODE_ENCRYPTED))
            nv++;
    struct vent *v = calloc(nv ? nv : 1, sizeof *v);
    size_t cap = AINDEX_WINDOW;
    unsigned char *buf = malloc(cap);
    struct zran_stream *zs = NULL;
    char err[400], path[MAX_PATH_BYTES + 64];
    int rc = 0;
    if (!v || !buf || zran_stream_new(&zs)) {
        rc = -ENOMEM;
        set_why(why, "%s: out of memory", ix->path);
        goto out;
    }
    nv = 0;
    for (uint32_t i = 0; i < ix->nnodes; i++)
        if (ix->nodes[i].kind == KIND_FILE && !(ix->nodes[i].flags & NODE_ENCRYPTED))
            v[nv++] = (struct vent){.data = ix->nodes[i].data, .node = i};
    qsort(v, nv, sizeof *v, cmp_vent);
    /* Hard links share their target's data: check it once. */
    size_t w = 0;
    for (size_t i = 0; i < nv; i++)
        if (!w || v[w - 1].data != v[i].data
            || ix->nodes[v[w - 1].node].size != ix->nodes[v[i].node].size)
            v[w++] = v[i];
    nv = w;

    uint64_t cd, count;
    if (nv && find_cd(ix->map, ix->map_len, &cd, &count) == 0) {
        uint64_t p = cd;
        struct cdrec r;
        for (uint64_t k = 0; k < count && cd_record(ix->map, ix->map_len, &p, &r); k++) {
            if (r.data == UINT64_MAX)
                continue;
            size_t lo = 0, hi = nv; /* first vent with data >= r.data */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (v[mid].data < r.data)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (; lo < nv && v[lo].data == r.data; lo++) {
                struct vent *x = &v[lo];
                if (x->nrec++ == 0) {
                    x->csize = r.csize;
                    x->crc = r.crc;
                    x->method = r.method;
                    x->direct = direct_ok(ix, &ix->nodes[x->node], &r);
                } else {
                    x->nrec = 2;
                    x->direct = false; /* two records, one data start: trust neither */
                }
            }
        }
    }

    uintptr_t released = (uintptr_t)ix->map;
    for (size_t i = 0; i < nv && !rc; i++) {
        const struct vent *x = &v[i];
        const struct anode *n = &ix->nodes[x->node];
        err[0] = '\0';
        struct bigent *e = n->size >= AINDEX_CKPT_MIN ? find_big(ix->ck, n->data) : NULL;
        if (e && e->usize == n->size)
            rc = verify_big(ix, e, err, sizeof err);
        else if (x->direct && x->method == 0) {
            uint32_t c = crc_release(ix, 0, ix->map + x->data, n->size);
            if (c != x->crc) {
                snprintf(err, sizeof err, "CRC mismatch (data %08x, declared %08x)", c, x->crc);
                rc = -EIO;
            }
        } else if (x->direct)
            rc = verify_deflate(ix, x, n->size, zs, buf, cap, err, sizeof err);
        else if (n->size > 0)
            rc = verify_by_reader(ix, n, buf, cap, err, sizeof err);
        if (rc) {
            node_path(ix, x->node, path, sizeof path);
            set_why(why, "%s: entry '%s': %s", ix->path, path, err);
            break;
        }
        /* What was checked leaves this process's RSS (page cache keeps it). */
        uintptr_t upto = (uintptr_t)ix->map + (uintptr_t)x->data;
        if (upto - released >= (uintptr_t)RELEASE_STEP) {
            release_map(ix, released, upto);
            released = upto;
        }
    }
    if (!rc)
        release_map(ix, released, (uintptr_t)ix->map + ix->map_len);
    if (!rc && ix->bad_entries) {
        rc = -EIO;
        set_why(why, "%s: %ju entries cannot be read (not shown)", ix->path,
                (uintmax_t)ix->bad_entries);
    }
out:
    zran_stream_free(zs);
    free(buf);
    free(v);
    return rc;
}
