/* fuzz_archive: the archive index (src/archive: the index, tree builder and
 * sidecars, and the reader, checkpoint and verification code) on a fuzzed zip file.
 *
 * The input is written to a file, indexed with the job directory's reserved
 * names, and then everything is used the way the filesystem uses it: the
 * tree walked and looked up, every file read through an areader (in order,
 * then at a second offset that must give the same bytes), the data
 * verified, checkpoints built into a sidecar, and the archive indexed
 * again with that sidecar and read again.
 *
 * The format is sniffed from the first bytes (aformat_sniff): a gzip or
 * plain input is indexed as one file (aindex_open_format) and used the
 * same way.
 *
 * Checks, beyond memory safety: the hostile-name rules (every name
 * non-empty, no '/', not "." or "..", at most 255 bytes, valid UTF-8
 * without control characters, no reserved name at the root, siblings
 * strictly sorted, cleaned paths at most 4000 bytes and 256 levels);
 * aindex_lookup finds each node by its path; counts and total size agree
 * with the walk; reads never return more than asked or past the size, a
 * file read whole gives exactly its size, and two reads of the same bytes
 * agree; errors are -EIO/-ENOMEM with a message. */
#include "fuzz.h"
#include "archive_index.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const char *const reserved[] = { "status", ".job.json", ".wait", NULL };

/* Bounds so that a small input declaring huge entries stays fast. */
#define READ_CHUNK ((size_t)128 << 10)
#define READ_BUDGET ((uint64_t)32 << 20) /* bytes read per input */
#define KEEP_MAX ((size_t)1 << 20)       /* bytes kept per file to compare */

static char dir[64], zip[96], sidecar[128];

static void clean_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            char p[384];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
}

static void cleanup(void)
{
    aindex_shutdown();
    clean_dir();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_scratch_dir(dir, "hcx-fuzz-zip");
    snprintf(zip, sizeof zip, "%s/job.zip", dir);
    snprintf(sidecar, sizeof sidecar, "%s/job.zip.ckpt", dir);
    log_set_level(LOG_LVL_ERROR);
    atexit(cleanup);
    return 0;
}

/* Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF). */
static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned char c = *s++;
        int need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80)
            continue;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else
            return 0;
        for (; need; need--, lo = 0x80, hi = 0xBF, s++)
            if (*s < lo || *s > hi)
                return 0;
    }
    return 1;
}

struct walk {
    const struct aindex *ix;
    uint64_t nodes, total, budget;
    int reopened;
};

static void check_read_error(ssize_t n, const struct areader *r, const char *path)
{
    FUZZ_CHECK(n == -EIO || n == -ENOMEM, "read of %s returned %zd", path, n);
    const char *e = areader_error(r);
    FUZZ_CHECK(e && e[0], "read of %s failed without a message", path);
}

static void read_file(struct walk *w, const struct anode *n, const char *path)
{
    struct areader *r = NULL;
    int rc = areader_open(w->ix, n, &r);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM, "areader_open %s: %d", path, rc);
    if (rc)
        return;
    uint64_t size = anode_size(n), off = 0;
    size_t keep = size < KEEP_MAX ? (size_t)size : KEEP_MAX;
    unsigned char *first = malloc(keep ? keep : 1), *buf = malloc(READ_CHUNK);
    FUZZ_CHECK(first && buf, "out of memory");
    int whole = 1;
    while (off < size && w->budget > 0) {
        ssize_t got = areader_pread(r, buf, READ_CHUNK, off);
        if (got < 0) {
            check_read_error(got, r, path);
            whole = 0;
            break;
        }
        FUZZ_CHECK((size_t)got <= READ_CHUNK && off + (uint64_t)got <= size,
                   "read of %s at %llu gave %zd bytes of %llu", path, (unsigned long long)off,
                   got, (unsigned long long)size);
        FUZZ_CHECK(got > 0, "read of %s stopped at %llu of %llu", path, (unsigned long long)off,
                   (unsigned long long)size);
        if (off < keep)
            memcpy(first + off, buf, (size_t)got < keep - off ? (size_t)got : keep - off);
        off += (uint64_t)got;
        w->budget = w->budget > (uint64_t)got ? w->budget - (uint64_t)got : 0;
    }
    if (whole && off == size) {
        ssize_t got = areader_pread(r, buf, READ_CHUNK, size);
        FUZZ_CHECK(got == 0 || got == -EIO, "read at EOF of %s gave %zd", path, got);
    }
    /* The same bytes again, from an offset inside them: a restart or a
     * seek back in the decompressor must give what the first pass gave. */
    uint64_t have = off < keep ? off : keep;
    if (have > 1) {
        uint64_t at = have / 3;
        size_t want = (size_t)(have - at);
        ssize_t got = areader_pread(r, buf, want < READ_CHUNK ? want : READ_CHUNK, at);
        if (got < 0)
            check_read_error(got, r, path);
        else
            FUZZ_CHECK(memcmp(buf, first + at, (size_t)got) == 0,
                       "%s: bytes at %llu differ between two reads", path,
                       (unsigned long long)at);
    }
    free(first);
    free(buf);
    areader_close(r);
}

static void walk(struct walk *w, const struct anode *d, char *path, size_t plen, int depth)
{
    FUZZ_CHECK(depth <= 256, "%d levels", depth);
    const char *prev = NULL;
    for (size_t i = 0; i < anode_child_count(d); i++) {
        const struct anode *c = anode_child(w->ix, d, i);
        FUZZ_CHECK(c != NULL, "child %zu of %zu missing", i, anode_child_count(d));
        const char *name = anode_name(w->ix, c);
        size_t len = strlen(name);
        FUZZ_CHECK(len > 0 && len <= 255, "name of %zu bytes", len);
        FUZZ_CHECK(!strchr(name, '/') && strcmp(name, ".") && strcmp(name, ".."), "name '%s'",
                   name);
        FUZZ_CHECK(fuzz_no_control(name), "control character in name '%s'", name);
        FUZZ_CHECK(valid_utf8((const unsigned char *)name), "name not UTF-8: '%s'", name);
        if (depth == 1)
            for (const char *const *r = reserved; *r; r++)
                FUZZ_CHECK(strcmp(name, *r), "reserved name '%s' at the root", name);
        if (prev)
            FUZZ_CHECK(strcmp(prev, name) < 0, "children not sorted: '%s' then '%s'", prev, name);
        prev = name;

        size_t clen = plen + (plen ? 1 : 0) + len;
        FUZZ_CHECK(clen <= 4000, "cleaned path of %zu bytes", clen);
        if (plen)
            path[plen] = '/';
        memcpy(path + plen + (plen ? 1 : 0), name, len + 1);
        FUZZ_CHECK(aindex_lookup(w->ix, path) == c, "lookup of '%s' finds another node", path);
        w->nodes++;
        if (anode_is_dir(c)) {
            FUZZ_CHECK(anode_size(c) == 0, "directory '%s' with a size", path);
            walk(w, c, path, clen, depth + 1);
        } else {
            FUZZ_CHECK(anode_child_count(c) == 0, "file '%s' with children", path);
            w->total += anode_size(c);
            read_file(w, c, path);
        }
        path[plen] = '\0';
    }
}

static void check_why(int rc, char *why, const char *what)
{
    FUZZ_CHECK(rc == 0 || rc == -EIO || rc == -ENOMEM || rc == -EFBIG, "%s: %d", what, rc);
    if (rc)
        FUZZ_CHECK(why && fuzz_no_control(why), "%s failed (%d) with message '%s'", what, rc,
                   why ? why : "(none)");
    free(why);
}

/* Indexes the zip and uses all of it; returns the number of large deflate
 * entries (the ones with checkpoints), or -1 if the zip was refused. */
static int use_index(int reopened)
{
    struct aindex *ix = NULL;
    char *why = NULL;
    /* The format by the first bytes, as the fetcher tells it: a gzip or
     * plain input is one file (the gzip header and stream fuzzed). */
    unsigned char head[4] = {0};
    size_t hl = 0;
    int hfd = open(zip, O_RDONLY | O_CLOEXEC);
    if (hfd >= 0) {
        ssize_t k = read(hfd, head, sizeof head);
        hl = k > 0 ? (size_t)k : 0;
        close(hfd);
    }
    struct aindex_single single = { .entry_name = "export.csv", .mtime = 1700000000 };
    int rc = aindex_open_format(zip, zip, aformat_sniff(head, hl), &single, reserved, &ix, &why);
    check_why(rc, why, "aindex_open_format");
    if (rc)
        return -1;
    const struct anode *root = aindex_root(ix);
    FUZZ_CHECK(root && anode_is_dir(root) && anode_name(ix, root)[0] == '\0', "root");
    FUZZ_CHECK(aindex_lookup(ix, "") == root && aindex_lookup(ix, "/") == root, "root lookup");

    static char path[4096 + 512];
    path[0] = '\0';
    struct walk w = { .ix = ix, .budget = READ_BUDGET, .reopened = reopened };
    walk(&w, root, path, 0, 1);
    FUZZ_CHECK(w.nodes == aindex_entry_count(ix), "walked %llu nodes, index says %llu",
               (unsigned long long)w.nodes, (unsigned long long)aindex_entry_count(ix));
    FUZZ_CHECK(w.total == aindex_total_size(ix), "sizes add up to %llu, index says %llu",
               (unsigned long long)w.total, (unsigned long long)aindex_total_size(ix));

    why = NULL;
    /* (rc first: the order in which arguments are evaluated is unspecified.) */
    rc = aindex_verify_rest(ix, &why);
    check_why(rc, why, "aindex_verify_rest");
    struct aindex_ckpt_stats cs;
    if (!reopened) {
        why = NULL;
        rc = aindex_build_checkpoints(ix, sidecar, &why);
        check_why(rc, why, "aindex_build_checkpoints");
    }
    aindex_checkpoint_stats(ix, &cs);
    FUZZ_CHECK(cs.ready + cs.corrupt <= cs.entries, "checkpoint stats %u+%u of %u", cs.ready,
               cs.corrupt, cs.entries);
    aindex_free(ix);
    aindex_shutdown();
    return (int)cs.entries;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(zip, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", zip, strerror(errno));
    FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size, "write: %s", strerror(errno));
    close(fd);

    /* With large deflate entries, a second index loads the sidecar the
     * first one wrote. */
    if (use_index(0) > 0)
        use_index(1);
    char *why = NULL;
    int rc = aindex_verify_data(zip, &why);
    FUZZ_CHECK(rc == 0 || rc == -EIO || rc == -ENOMEM, "aindex_verify_data: %d", rc);
    if (rc)
        FUZZ_CHECK(why && fuzz_no_control(why), "verify_data message '%s'", why ? why : "(none)");
    free(why);
    clean_dir();
    return 0;
}
