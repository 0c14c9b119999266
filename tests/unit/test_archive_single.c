/*
 * Unit test of archive_index's single-file formats (aindex_open_format):
 * format sniffing, a plain CSV and gzipped CSVs (made here with zlib):
 * exact sizes and mtime, byte-exact reads at random offsets and
 * sequentially, checkpoints and their sidecars across reopens (no inflate
 * the second time), header fields, reserved names, and hostile streams
 * (bad CRC, lying ISIZE, truncation, trailing garbage, bad header, damage
 * in a later member) that must read EIO or fail to open, never crash;
 * multi-member files (read across member boundaries).
 *
 * AGZ_BIG_MIB: size of the large gzip (default 12).  AGZ_BENCH_MIB: also
 * time open+verify and 200 random 4 KiB reads of a gzip that large.
 */
#include "archive_index.h"
#include "zran.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "scratch.h"
#include "testdata.h"

static const char *const reserved[] = {"status", ".job.json", ".wait", NULL};
static const time_t T = 1700000000;

static void unlink_sidecars(const char *path)
{
    char *p;
    if (asprintf(&p, "%s.idx", path) >= 0) {
        unlink(p);
        free(p);
    }
    if (asprintf(&p, "%s.ckpt", path) >= 0) {
        unlink(p);
        free(p);
    }
}

struct gzopt {
    bool name, extra, comment, hcrc;
    int level;
    int flush_every; /* bytes between Z_FULL_FLUSH (0: none) */
};

/* data gzipped by zlib (one member), malloc'd; *outlen its size. */
static unsigned char *gz_make(const unsigned char *data, size_t len, const struct gzopt *o,
                              size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, o && o->level ? o->level : 6, Z_DEFLATED, 31, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    gz_header h;
    memset(&h, 0, sizeof h);
    static unsigned char extra[] = "AB\4\0xyzw";
    if (o) {
        h.name = o->name ? (Bytef *)"export.csv" : Z_NULL;
        h.comment = o->comment ? (Bytef *)"a comment" : Z_NULL;
        if (o->extra) {
            h.extra = extra;
            h.extra_len = 8;
        }
        h.hcrc = o->hcrc;
        h.time = (uLong)T;
        deflateSetHeader(&z, &h);
    }
    size_t cap = deflateBound(&z, (uLong)len) + 1024 + len / 100;
    unsigned char *out = malloc(cap);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    size_t fed = 0;
    size_t step = o && o->flush_every ? (size_t)o->flush_every : len + 1;
    for (;;) {
        size_t k = len - fed < step ? len - fed : step;
        z.next_in = (Bytef *)(uintptr_t)(data + fed);
        z.avail_in = (uInt)k;
        fed += k;
        int flush = fed == len ? Z_FINISH : Z_FULL_FLUSH;
        int rc = deflate(&z, flush);
        if (flush == Z_FINISH) {
            if (rc != Z_STREAM_END)
                abort();
            break;
        }
    }
    *outlen = z.total_out;
    deflateEnd(&z);
    return out;
}

static uint32_t le32get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void le32put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* The one file of a single-file index (root's only child). */
static const struct anode *only_file(const struct aindex *ix, const char *name)
{
    const struct anode *root = aindex_root(ix);
    if (anode_child_count(root) != 1)
        return NULL;
    const struct anode *n = anode_child(ix, root, 0);
    if (strcmp(anode_name(ix, n), name) != 0 || anode_is_dir(n))
        return NULL;
    return n;
}

static int open_single(const char *path, enum aformat fmt, const char *name,
                       struct aindex **ix, char **why)
{
    struct aindex_single s = {.entry_name = name, .mtime = T};
    return aindex_open_format(path, path, fmt, &s, reserved, ix, why);
}

/* Reads [off, off+len) and compares it with want. */
static bool range_ok(struct areader *r, const unsigned char *want, uint64_t size, uint64_t off,
                     size_t len)
{
    unsigned char *buf = malloc(len ? len : 1);
    ssize_t got = areader_pread(r, buf, len, off);
    size_t expect = off >= size ? 0 : (size - off < len ? (size_t)(size - off) : len);
    bool ok = got == (ssize_t)expect && memcmp(buf, want + (off < size ? off : 0), expect) == 0;
    if (!ok)
        fprintf(stderr, "  read %zu at %ju: got %zd (%s), want %zu\n", len, (uintmax_t)off,
                got, areader_error(r) ? areader_error(r) : "-", expect);
    free(buf);
    return ok;
}

static bool random_reads(const struct aindex *ix, const struct anode *n, const unsigned char *want,
                         uint64_t size, int count, uint64_t seed)
{
    struct areader *r;
    if (areader_open(ix, n, &r) != 0)
        return false;
    bool ok = true;
    for (int i = 0; i < count && ok; i++) {
        uint64_t off = size ? rng_next(&seed) % (size + 100) : 0;
        size_t len = (size_t)(rng_next(&seed) % 3 == 0 ? rng_next(&seed) % 300000 + 1 : 4096);
        ok = range_ok(r, want, size, off, len);
    }
    /* The very end, and past it. */
    if (ok && size)
        ok = range_ok(r, want, size, size - 1, 10) && range_ok(r, want, size, size, 10);
    areader_close(r);
    return ok;
}

static bool seq_reads(const struct aindex *ix, const struct anode *n, const unsigned char *want,
                      uint64_t size, size_t chunk)
{
    struct areader *r;
    if (areader_open(ix, n, &r) != 0)
        return false;
    bool ok = true;
    for (uint64_t off = 0; off < size && ok; off += chunk)
        ok = range_ok(r, want, size, off, chunk);
    areader_close(r);
    return ok;
}

/* ------------------------------------------------------------------ tests */

static void test_sniff(void)
{
    CHECK(aformat_sniff("PK\3\4xx", 6) == AFORMAT_ZIP, "PK34");
    CHECK(aformat_sniff("PK\5\6", 4) == AFORMAT_ZIP, "PK56");
    CHECK(aformat_sniff("PK\7\x08", 4) == AFORMAT_ZIP, "PK78");
    CHECK(aformat_sniff("PK\3", 3) == AFORMAT_PLAIN, "short PK");
    CHECK(aformat_sniff("PK\1\2", 4) == AFORMAT_PLAIN, "PK12");
    CHECK(aformat_sniff("\x1f\x8b", 2) == AFORMAT_GZIP, "gzip magic");
    CHECK(aformat_sniff("\x1f\x8b\x08\x00", 4) == AFORMAT_GZIP, "gzip");
    CHECK(aformat_sniff("\x1f", 1) == AFORMAT_PLAIN, "short gzip");
    CHECK(aformat_sniff("", 0) == AFORMAT_PLAIN, "empty");
    CHECK(aformat_sniff(NULL, 0) == AFORMAT_PLAIN, "NULL empty");
    CHECK(aformat_sniff("id,time\n1,2\n", 12) == AFORMAT_PLAIN, "csv");
    CHECK(strcmp(aformat_suffix(AFORMAT_ZIP), "zip") == 0, "suffix zip");
    CHECK(strcmp(aformat_suffix(AFORMAT_GZIP), "csv.gz") == 0, "suffix gz");
    CHECK(strcmp(aformat_suffix(AFORMAT_PLAIN), "csv") == 0, "suffix csv");
}

static void test_plain(void)
{
    char *path = tpath("plain.csv");
    size_t len = (size_t)3 << 20;
    unsigned char *data = gen_csv(7, len);
    spit(path, data, len);
    struct aindex *ix = NULL;
    char *why = NULL;
    int rc = open_single(path, AFORMAT_PLAIN, "export.csv", &ix, &why);
    CHECK(rc == 0, "plain open: %s", why ? why : "");
    free(why);
    why = NULL;
    if (ix) {
        const struct anode *n = only_file(ix, "export.csv");
        CHECK(n && anode_size(n) == len && anode_mtime(n) == T, "plain node");
        CHECK(anode_mtime(aindex_root(ix)) == T, "root mtime");
        CHECK(aindex_total_size(ix) == len && aindex_entry_count(ix) == 1, "plain totals");
        if (n) {
            CHECK(random_reads(ix, n, data, len, 200, 1), "plain random reads");
            CHECK(seq_reads(ix, n, data, len, 131072), "plain sequential");
        }
        CHECK(aindex_build_checkpoints(ix, NULL, &why) == 0, "plain checkpoints: %s",
              why ? why : "");
        free(why);
        why = NULL;
        CHECK(aindex_verify_rest(ix, &why) == 0, "plain verify: %s", why ? why : "");
        free(why);
        why = NULL;
        CHECK(aindex_save(ix, reserved, &why) == 0, "plain save");
        free(why);
        why = NULL;
        aindex_free(ix);
        ix = NULL;
    }
    /* Reopen from the .idx. */
    CHECK(open_single(path, AFORMAT_PLAIN, "export.csv", &ix, &why) == 0 && aindex_from_sidecar(ix),
          "plain reopen from .idx");
    if (ix) {
        const struct anode *n = only_file(ix, "export.csv");
        CHECK(n && anode_size(n) == len && random_reads(ix, n, data, len, 50, 2),
              "plain reopened reads");
        aindex_free(ix);
        ix = NULL;
    }
    /* Other name or mtime: the .idx does not serve. */
    struct aindex_single s2 = {.entry_name = "other.csv", .mtime = T};
    CHECK(aindex_open_format(path, path, AFORMAT_PLAIN, &s2, reserved, &ix, &why) == 0
              && !aindex_from_sidecar(ix) && only_file(ix, "other.csv"),
          "plain other name");
    aindex_free(ix);
    ix = NULL;
    s2 = (struct aindex_single){.entry_name = "export.csv", .mtime = T + 1};
    CHECK(aindex_open_format(path, path, AFORMAT_PLAIN, &s2, reserved, &ix, &why) == 0
              && !aindex_from_sidecar(ix) && anode_mtime(only_file(ix, "export.csv")) == T + 1,
          "plain other mtime");
    aindex_free(ix);
    ix = NULL;
    /* No single: refused. */
    CHECK(aindex_open_format(path, path, AFORMAT_PLAIN, NULL, reserved, &ix, &why) == -EINVAL
              && why && !ix,
          "plain without single");
    free(why);
    why = NULL;
    unlink_sidecars(path);
    unlink(path);

    /* An empty file. */
    spit(path, "", 0);
    CHECK(open_single(path, AFORMAT_PLAIN, "e.csv", &ix, &why) == 0, "empty plain: %s",
          why ? why : "");
    free(why);
    why = NULL;
    if (ix) {
        const struct anode *n = only_file(ix, "e.csv");
        struct areader *r;
        char b[16];
        CHECK(n && anode_size(n) == 0 && areader_open(ix, n, &r) == 0
                  && areader_pread(r, b, 16, 0) == 0,
              "empty plain reads 0");
        if (n)
            areader_close(r);
        CHECK(aindex_verify_rest(ix, NULL) == 0, "empty plain verify");
        CHECK(aindex_save(ix, reserved, NULL) == 0, "empty plain save");
        aindex_free(ix);
        ix = NULL;
        CHECK(open_single(path, AFORMAT_PLAIN, "e.csv", &ix, &why) == 0 && aindex_from_sidecar(ix),
              "empty plain reopen");
        aindex_free(ix);
        ix = NULL;
    }
    unlink_sidecars(path);
    unlink(path);

    /* Reserved names, a '/' in the name, an empty name. */
    spit(path, "a,b\n", 4);
    CHECK(open_single(path, AFORMAT_PLAIN, "status", &ix, &why) == 0 && only_file(ix, "_status")
              && aindex_stats(ix)->renamed_reserved == 1,
          "reserved name renamed");
    aindex_free(ix);
    ix = NULL;
    CHECK(open_single(path, AFORMAT_PLAIN, "../x\n.csv", &ix, &why) == 0
              && only_file(ix, "x%0A.csv"),
          "name cleaned");
    aindex_free(ix);
    ix = NULL;
    CHECK(open_single(path, AFORMAT_PLAIN, "", &ix, &why) == 0 && only_file(ix, "data.csv"),
          "empty name shown as data.csv");
    aindex_free(ix);
    ix = NULL;
    CHECK(open_single(path, AFORMAT_PLAIN, "d/e.csv", &ix, &why) == 0 && aindex_lookup(ix, "d/e.csv")
              && anode_size(aindex_lookup(ix, "d/e.csv")) == 4
              && anode_mtime(aindex_lookup(ix, "d")) == T,
          "name with a directory");
    aindex_free(ix);
    ix = NULL;
    unlink(path);
    free(data);
    free(path);
}

/* Opens a gzip expected to be fine; checks tree, size, reads. */
static struct aindex *gz_open_ok(const char *path, const unsigned char *data, size_t len,
                                 const char *what)
{
    struct aindex *ix = NULL;
    char *why = NULL;
    int rc = open_single(path, AFORMAT_GZIP, "export.csv", &ix, &why);
    CHECK(rc == 0, "%s: open: %d %s", what, rc, why ? why : "");
    free(why);
    if (!ix)
        return NULL;
    const struct anode *n = only_file(ix, "export.csv");
    CHECK(n && anode_size(n) == len && anode_mtime(n) == T, "%s: node (size %ju, want %zu)",
          what, n ? (uintmax_t)anode_size(n) : 0, len);
    CHECK(aindex_total_size(ix) == len, "%s: total", what);
    if (n && anode_size(n) == len)
        CHECK(random_reads(ix, n, data, len, 120, len), "%s: random reads", what);
    return ix;
}

static void test_gzip_small(void)
{
    char *path = tpath("small.csv.gz");
    size_t len = 100000;
    unsigned char *data = gen_csv(3, len);
    static const struct gzopt opts[] = {
        {0}, {.name = true}, {.extra = true}, {.comment = true}, {.hcrc = true},
        {.name = true, .extra = true, .comment = true, .hcrc = true},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        size_t glen;
        unsigned char *gz = gz_make(data, len, &opts[i], &glen);
        spit(path, gz, glen);
        CHECK(aformat_sniff(gz, glen) == AFORMAT_GZIP, "sniff gz");
        char what[64];
        snprintf(what, sizeof what, "small gzip opts %zu", i);
        struct aindex *ix = gz_open_ok(path, data, len, what);
        if (ix) {
            char *why = NULL;
            CHECK(aindex_verify_rest(ix, &why) == 0, "%s: verify: %s", what, why ? why : "");
            free(why);
            struct aindex_ckpt_stats cs;
            aindex_checkpoint_stats(ix, &cs);
            CHECK(cs.entries == 1 && cs.ready == 1 && cs.built == 1 && cs.points >= 1,
                  "%s: points", what);
            aindex_free(ix);
        }
        unlink_sidecars(path);
        free(gz);
    }
    /* Empty content. */
    size_t glen;
    unsigned char *gz = gz_make((const unsigned char *)"", 0, NULL, &glen);
    spit(path, gz, glen);
    struct aindex *ix = gz_open_ok(path, (const unsigned char *)"", 0, "empty gzip");
    if (ix) {
        CHECK(aindex_verify_rest(ix, NULL) == 0, "empty gzip verify");
        CHECK(aindex_build_checkpoints(ix, NULL, NULL) == 0, "empty gzip checkpoints");
        CHECK(aindex_save(ix, reserved, NULL) == 0, "empty gzip save");
        aindex_free(ix);
        ix = gz_open_ok(path, (const unsigned char *)"", 0, "empty gzip reopened");
        CHECK(ix && aindex_from_sidecar(ix), "empty gzip from .idx");
        aindex_free(ix);
    }
    unlink_sidecars(path);
    free(gz);
    /* Reserved entry name. */
    gz = gz_make(data, len, NULL, &glen);
    spit(path, gz, glen);
    ix = NULL;
    CHECK(open_single(path, AFORMAT_GZIP, ".wait", &ix, NULL) == 0 && only_file(ix, "_.wait")
              && anode_size(only_file(ix, "_.wait")) == len,
          "gzip reserved name");
    aindex_free(ix);
    unlink_sidecars(path);
    free(gz);
    unlink(path);
    free(path);
    free(data);
}

/* A gzip whose stream is bad: opens, its file reads EIO (every offset),
 * checkpoints and verification fail naming why; so after a save and
 * reopen. */
static void expect_bad_stream(const char *path, const void *gz, size_t glen, const char *what,
                              const char *needle)
{
    unlink_sidecars(path);
    spit(path, gz, glen);
    struct aindex *ix = NULL;
    char *why = NULL;
    int rc = open_single(path, AFORMAT_GZIP, "export.csv", &ix, &why);
    CHECK(rc == 0, "%s: open: %s", what, why ? why : "");
    free(why);
    why = NULL;
    for (int round = 0; ix && round < 2; round++) {
        const struct anode *n = only_file(ix, "export.csv");
        CHECK(n && anode_size(n) >= 1, "%s: node", what);
        struct areader *r;
        if (n && areader_open(ix, n, &r) == 0) {
            char b[4096];
            ssize_t got = areader_pread(r, b, sizeof b, 0);
            CHECK(got == -EIO, "%s: pread at 0 gave %zd", what, got);
            CHECK(areader_pread(r, b, sizeof b, anode_size(n) + 5) == -EIO, "%s: pread past end",
                  what);
            const char *e = areader_error(r);
            CHECK(e && (round || !needle || strstr(e, needle)), "%s: error '%s'", what,
                  e ? e : "");
            areader_close(r);
        }
        rc = aindex_build_checkpoints(ix, NULL, &why);
        struct aindex_ckpt_stats cs;
        aindex_checkpoint_stats(ix, &cs);
        CHECK(rc == -EIO && why && cs.corrupt == 1, "%s: checkpoints %d corrupt %u", what, rc,
              cs.corrupt);
        free(why);
        why = NULL;
        rc = aindex_verify_rest(ix, &why);
        CHECK(rc == -EIO && why && (round || !needle || strstr(why, needle)),
              "%s: verify %d: %s", what, rc, why ? why : "");
        free(why);
        why = NULL;
        if (round == 0) {
            CHECK(aindex_save(ix, reserved, NULL) == 0, "%s: save", what);
            aindex_free(ix);
            ix = NULL;
            CHECK(open_single(path, AFORMAT_GZIP, "export.csv", &ix, NULL) == 0
                      && aindex_from_sidecar(ix),
                  "%s: reopen", what);
        }
    }
    aindex_free(ix);
    unlink_sidecars(path);
}

static void expect_open_fails(const char *path, const void *gz, size_t glen, const char *what)
{
    spit(path, gz, glen);
    struct aindex *ix = NULL;
    char *why = NULL;
    int rc = open_single(path, AFORMAT_GZIP, "export.csv", &ix, &why);
    CHECK(rc == -EIO && !ix && why, "%s: open gave %d", what, rc);
    free(why);
    aindex_free(ix);
}

static void test_gzip_hostile(void)
{
    char *path = tpath("bad.csv.gz");
    size_t len = (size_t)5 << 20; /* several spans */
    unsigned char *data = gen_csv(11, len);
    size_t glen;
    struct gzopt o = {.name = true, .hcrc = true};
    unsigned char *gz = gz_make(data, len, &o, &glen);
    unsigned char *b = malloc(glen + 64);

    memcpy(b, gz, glen);
    b[glen - 8] ^= 1;
    expect_bad_stream(path, b, glen, "bad CRC", "CRC");
    memcpy(b, gz, glen);
    le32put(b + glen - 4, le32get(b + glen - 4) + 1);
    expect_bad_stream(path, b, glen, "ISIZE +1", "ISIZE");
    memcpy(b, gz, glen);
    le32put(b + glen - 4, 0xFFFFFFF0u);
    expect_bad_stream(path, b, glen, "ISIZE huge", "ISIZE");
    expect_bad_stream(path, gz, glen / 2, "truncated at half", "truncated");
    expect_bad_stream(path, gz, glen - 4, "trailer cut", "trailer");
    expect_bad_stream(path, gz, glen - 9, "stream cut", NULL);
    memcpy(b, gz, glen);
    memcpy(b + glen, "garbage", 7);
    expect_bad_stream(path, b, glen + 7, "trailing garbage", "trailing");
    memset(b + glen, 0, 16);
    expect_bad_stream(path, b, glen + 16, "trailing zeros", "trailing");
    memcpy(b, gz, glen);
    b[glen / 2] ^= 0x55;
    expect_bad_stream(path, b, glen, "flipped data", NULL);

    /* Multi-member: damage in a later member. */
    {
        size_t g2len;
        unsigned char *g2 = gz_make((const unsigned char *)"more,rows\n", 10, NULL, &g2len);
        unsigned char *mm = malloc(glen + g2len + 16);
        memcpy(mm, gz, glen);
        memcpy(mm + glen, g2, g2len);
        mm[glen + g2len - 8] ^= 1;
        expect_bad_stream(path, mm, glen + g2len, "second member CRC", "CRC");
        memcpy(mm + glen, g2, g2len);
        mm[glen + 3] = 0x80;
        expect_bad_stream(path, mm, glen + g2len, "second member header", "reserved");
        memcpy(mm + glen, g2, g2len);
        memcpy(mm + glen + g2len, "\x1f\x8b", 2);
        expect_bad_stream(path, mm, glen + g2len + 2, "third member cut", "member");
        memcpy(mm + glen + g2len, "zz", 2);
        expect_bad_stream(path, mm, glen + g2len + 2, "garbage after members", "trailing");
        free(mm);
        free(g2);
    }

    /* Headers that do not parse: the open fails. */
    expect_open_fails(path, "\x1f\x8b", 2, "magic only");
    expect_open_fails(path, "\x1f\x8b\x08\x00\0\0\0\0\0\3", 10, "header only");
    memcpy(b, gz, glen);
    b[2] = 7;
    expect_open_fails(path, b, glen, "method 7");
    memcpy(b, gz, glen);
    b[3] |= 0x20;
    expect_open_fails(path, b, glen, "reserved flag");
    memcpy(b, gz, glen);
    b[12] ^= 1; /* in FNAME: the header CRC no longer matches */
    expect_open_fails(path, b, glen, "header CRC");
    memcpy(b, "\x1f\x8b\x08\x08\0\0\0\0\0\3abc", 13); /* FNAME never ends */
    expect_open_fails(path, b, 13, "unterminated name");
    memcpy(b, "\x1f\x8b\x08\x04\0\0\0\0\0\3\xff\xff", 12); /* FEXTRA beyond the end */
    expect_open_fails(path, b, 12, "extra too long");
    memcpy(b, "\x1f\x8b\x08\x02\0\0\0\0\0\3\x00", 11); /* FHCRC cut */
    expect_open_fails(path, b, 11, "hcrc cut");

    /* Random damage anywhere: never a crash. */
    uint64_t seed = 99;
    for (int i = 0; i < 30; i++) {
        memcpy(b, gz, glen);
        size_t cut = glen - (size_t)(rng_next(&seed) % 64);
        for (int k = 0; k < 3; k++)
            b[rng_next(&seed) % cut] ^= (unsigned char)(rng_next(&seed) | 1);
        spit(path, b, cut);
        struct aindex *ix = NULL;
        if (open_single(path, AFORMAT_GZIP, "export.csv", &ix, NULL) == 0) {
            const struct anode *n = only_file(ix, "export.csv");
            struct areader *r;
            if (n && areader_open(ix, n, &r) == 0) {
                char buf[4096];
                for (int k = 0; k < 4; k++)
                    (void)areader_pread(r, buf, sizeof buf, rng_next(&seed) % (len + 1));
                areader_close(r);
            }
            (void)aindex_verify_rest(ix, NULL);
            aindex_free(ix);
        }
        unlink_sidecars(path);
    }
    unlink(path);
    free(b);
    free(gz);
    free(data);
    free(path);
}

struct rthread {
    const struct aindex *ix;
    const struct anode *n;
    const unsigned char *want;
    uint64_t size, seed;
    bool ok;
};

static void *rthread_main(void *p)
{
    struct rthread *t = p;
    t->ok = random_reads(t->ix, t->n, t->want, t->size, 60, t->seed)
            && (t->seed % 2 || seq_reads(t->ix, t->n, t->want, t->size, 65536));
    return NULL;
}

/* Four threads, each its own reader, random and sequential reads; with
 * the points not built yet, the first reads wait for one lazy build. */
static bool threads_ok(const struct aindex *ix, const struct anode *n, const unsigned char *want,
                       uint64_t size)
{
    struct rthread t[4];
    pthread_t th[4];
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        t[i] = (struct rthread){ix, n, want, size, (uint64_t)i + 77, false};
        if (pthread_create(&th[i], NULL, rthread_main, &t[i]) != 0)
            return false;
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok = ok && t[i].ok;
    }
    return ok;
}

/* Concatenated members (gzip -c a b > ab.gz): one file, the members'
 * data one after the other, random access across member boundaries. */
static void test_gzip_multi(void)
{
    char *path = tpath("multi.csv.gz");
    size_t len = ((size_t)9 << 20) + 777;
    unsigned char *data = gen_csv(21, len);
    /* Members of uneven sizes, an empty one among them. */
    size_t cuts[] = {0, 1000, 1000, (size_t)3 << 20, ((size_t)3 << 20) + 5, (size_t)7 << 20, len};
    size_t ncuts = sizeof cuts / sizeof cuts[0];
    unsigned char *gz = NULL;
    size_t glen = 0;
    for (size_t i = 0; i + 1 < ncuts; i++) {
        size_t ml;
        struct gzopt o = {.name = i % 2, .hcrc = i == 3, .level = 1};
        unsigned char *m = gz_make(data + cuts[i], cuts[i + 1] - cuts[i], &o, &ml);
        gz = realloc(gz, glen + ml);
        memcpy(gz + glen, m, ml);
        glen += ml;
        free(m);
    }
    spit(path, gz, glen);
    enum zran_backend backend = zran_default_backend();
    for (int round = 0; round < 2; round++) {
        /* The reopen reads with zlib: both decoders restart at members. */
        if (round)
            zran_set_backend(ZRAN_ZLIB);
        struct aindex *ix = gz_open_ok(path, data, len, round ? "multi reopened" : "multi");
        if (!ix)
            break;
        const struct anode *n = only_file(ix, "export.csv");
        struct aindex_ckpt_stats cs;
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.ready == 1 && cs.built == (round ? 0u : 1u) && cs.points > 20, "multi: points");
        CHECK(n && seq_reads(ix, n, data, len, 131072), "multi: sequential");
        /* Reads across each member boundary. */
        struct areader *r;
        if (n && areader_open(ix, n, &r) == 0) {
            for (size_t i = 1; i + 1 < ncuts; i++)
                CHECK(range_ok(r, data, len, cuts[i] > 3000 ? cuts[i] - 3000 : 0, 8000),
                      "multi: across boundary %zu", i);
            areader_close(r);
        }
        CHECK(aindex_verify_rest(ix, NULL) == 0, "multi: verify");
        if (!round) {
            CHECK(aindex_build_checkpoints(ix, NULL, NULL) == 0, "multi: checkpoints");
            CHECK(aindex_save(ix, reserved, NULL) == 0, "multi: save");
        }
        aindex_free(ix);
    }
    zran_set_backend(backend);
    unlink(path);
    unlink_sidecars(path);
    free(gz);
    free(data);
    free(path);
}

static void test_gzip_large(void)
{
    const char *env = getenv("AGZ_BIG_MIB");
    size_t len = ((size_t)(env ? atoi(env) : 12) << 20) + 12345;
    char *path = tpath("big.csv.gz");
    unsigned char *data = gen_csv(5, len);
    size_t glen;
    struct gzopt o = {.level = 1};
    unsigned char *gz = gz_make(data, len, &o, &glen);
    spit(path, gz, glen);
    free(gz);

    struct aindex *ix = gz_open_ok(path, data, len, "large gzip");
    struct aindex_ckpt_stats cs;
    char *why = NULL;
    if (ix) {
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.entries == 1 && cs.ready == 1 && cs.built == 1 && cs.loaded == 0
                  && cs.points >= len / AINDEX_CKPT_SPAN / 2,
              "large gzip: points %ju built %u", (uintmax_t)cs.points, cs.built);
        const struct anode *n = only_file(ix, "export.csv");
        CHECK(n && seq_reads(ix, n, data, len, 131072), "large gzip: sequential 128 KiB");
        CHECK(n && seq_reads(ix, n, data, len, 4096 * 3 + 1), "large gzip: sequential odd");
        struct aindex_ra_stats ra;
        aindex_readahead_stats(&ra);
        CHECK(ra.reads_served > 0, "large gzip: read-ahead served nothing");
        CHECK(aindex_build_checkpoints(ix, NULL, &why) == 0, "large gzip: checkpoints: %s",
              why ? why : "");
        free(why);
        why = NULL;
        CHECK(aindex_verify_rest(ix, &why) == 0, "large gzip: verify: %s", why ? why : "");
        free(why);
        why = NULL;
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.built == 1, "large gzip: built again (%u)", cs.built);
        CHECK(aindex_save(ix, reserved, &why) == 0, "large gzip: save: %s", why ? why : "");
        free(why);
        why = NULL;
        aindex_free(ix);
    }
    /* Remount: .idx and .ckpt serve, nothing inflated. */
    ix = gz_open_ok(path, data, len, "large gzip reopened");
    if (ix) {
        aindex_checkpoint_stats(ix, &cs);
        CHECK(aindex_from_sidecar(ix) && cs.loaded == 1 && cs.built == 0 && cs.ready == 1,
              "large gzip reopened: from sidecars (loaded %u built %u)", cs.loaded, cs.built);
        CHECK(aindex_verify_rest(ix, &why) == 0, "large gzip reopened: verify: %s",
              why ? why : "");
        free(why);
        why = NULL;
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.built == 0, "large gzip reopened: verify inflated");
        aindex_free(ix);
    }
    /* Only the .ckpt: the size comes from it, still no inflate. */
    char *idx;
    if (asprintf(&idx, "%s.idx", path) < 0)
        abort();
    unlink(idx);
    ix = gz_open_ok(path, data, len, "large gzip, .ckpt only");
    if (ix) {
        aindex_checkpoint_stats(ix, &cs);
        CHECK(!aindex_from_sidecar(ix) && cs.loaded == 1 && cs.built == 0,
              "large gzip, .ckpt only: loaded %u built %u", cs.loaded, cs.built);
        aindex_free(ix);
    }
    /* A damaged .ckpt: ignored, rebuilt at open. */
    char *ck;
    if (asprintf(&ck, "%s.ckpt", path) < 0)
        abort();
    int fd = open(ck, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "XXXX", 4, 0) == 4, "damage .ckpt");
    if (fd >= 0)
        close(fd);
    ix = gz_open_ok(path, data, len, "large gzip, damaged .ckpt");
    if (ix) {
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.loaded == 0 && cs.built == 1, "damaged .ckpt: loaded %u built %u", cs.loaded,
              cs.built);
        CHECK(threads_ok(ix, only_file(ix, "export.csv"), data, len), "threads");
        aindex_free(ix);
    }
    /* .idx without .ckpt: size from the .idx, points built lazily on the
     * first read (and the sidecar written then). */
    unlink(ck);
    ix = gz_open_ok(path, data, len, "pre-save");
    if (ix) {
        CHECK(aindex_save(ix, reserved, NULL) == 0, "save");
        aindex_free(ix);
    }
    unlink(ck);
    struct aindex *ix2 = NULL;
    CHECK(open_single(path, AFORMAT_GZIP, "export.csv", &ix2, NULL) == 0 && aindex_from_sidecar(ix2),
          ".idx only: open");
    if (ix2) {
        aindex_checkpoint_stats(ix2, &cs);
        CHECK(cs.ready == 0 && cs.built == 0, ".idx only: nothing built at open");
        const struct anode *n = only_file(ix2, "export.csv");
        CHECK(n && anode_size(n) == len && threads_ok(ix2, n, data, len),
              ".idx only: reads from threads");
        aindex_checkpoint_stats(ix2, &cs);
        CHECK(cs.ready == 1 && cs.built == 1, ".idx only: lazily built");
        CHECK(access(ck, F_OK) == 0, ".idx only: lazy build wrote the .ckpt");
        aindex_free(ix2);
    }
    /* The file replaced by another gzip (other mtime): sidecars ignored. */
    free(idx);
    free(ck);
    unlink_sidecars(path);
    unlink(path);
    free(path);
    free(data);
}

/* A zip through aindex_open_format is aindex_open_as. */
static void test_zip_format(void)
{
    char *path = tpath("z.zip");
    struct archive *w = archive_write_new();
    archive_write_set_format_zip(w);
    CHECK(archive_write_open_filename(w, path) == ARCHIVE_OK, "zip write");
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "status");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 6);
    archive_entry_set_mtime(e, T, 0);
    archive_write_header(w, e);
    archive_write_data(w, "hello\n", 6);
    archive_entry_free(e);
    archive_write_close(w);
    archive_write_free(w);
    unsigned char head[4] = {0};
    FILE *f = fopen(path, "rb");
    CHECK(f && fread(head, 1, 4, f) == 4, "zip head");
    if (f)
        fclose(f);
    CHECK(aformat_sniff(head, 4) == AFORMAT_ZIP, "zip sniffed");
    struct aindex *ix = NULL;
    CHECK(aindex_open_format(path, path, AFORMAT_ZIP, NULL, reserved, &ix, NULL) == 0
              && only_file(ix, "_status") && anode_size(only_file(ix, "_status")) == 6,
          "zip via aindex_open_format");
    aindex_free(ix);
    unlink(path);
    free(path);
}

/* Timing (AGZ_BENCH_MIB): open (inflate + points) + checkpoints sidecar +
 * verify, reopen from the sidecars, 200 random 4 KiB reads. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bench(void)
{
    const char *env = getenv("AGZ_BENCH_MIB");
    if (!env)
        return;
    size_t len = (size_t)atoi(env) << 20;
    char *path = tpath("bench.csv.gz");
    unsigned char *data = gen_csv(9, len);
    size_t glen;
    struct gzopt o = {.level = 6};
    unsigned char *gz = gz_make(data, len, &o, &glen);
    spit(path, gz, glen);
    free(gz);
    double t0 = now();
    struct aindex *ix = NULL;
    char *why = NULL;
    CHECK(open_single(path, AFORMAT_GZIP, "b.csv", &ix, &why) == 0, "bench open");
    double t1 = now();
    CHECK(ix && aindex_build_checkpoints(ix, NULL, &why) == 0, "bench ckpt");
    double t2 = now();
    CHECK(ix && aindex_verify_rest(ix, &why) == 0, "bench verify");
    CHECK(ix && aindex_save(ix, reserved, &why) == 0, "bench save");
    double t3 = now();
    aindex_free(ix);
    ix = NULL;
    CHECK(open_single(path, AFORMAT_GZIP, "b.csv", &ix, &why) == 0, "bench reopen");
    double t4 = now();
    const struct anode *n = ix ? only_file(ix, "b.csv") : NULL;
    struct areader *r = NULL;
    double worst = 0, t5 = now();
    if (n && areader_open(ix, n, &r) == 0) {
        uint64_t seed = 5;
        unsigned char buf[4096];
        for (int i = 0; i < 200; i++) {
            uint64_t off = rng_next(&seed) % (len - 4096);
            double a = now();
            ssize_t got = areader_pread(r, buf, 4096, off);
            double d = now() - a;
            worst = d > worst ? d : worst;
            CHECK(got == 4096 && memcmp(buf, data + off, 4096) == 0, "bench read");
        }
        areader_close(r);
    }
    double t6 = now();
    printf("TIMING gzip %zu MiB (%zu MiB compressed): open (inflate+points) %.2f s, "
           "checkpoints sidecar %.2f s, verify+save %.2f s; reopen %.4f s; 200 random 4 KiB "
           "reads %.3f s (mean %.3f ms, worst %.2f ms)\n",
           len >> 20, glen >> 20, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5,
           (t6 - t5) / 200 * 1e3, worst * 1e3);
    free(why);
    aindex_free(ix);
    unlink_sidecars(path);
    unlink(path);
    free(path);
    free(data);
}

/* Any file a test left: named, then removed. */
static bool left_behind(const char *name)
{
    if (name[0] == '.')
        return false;
    fprintf(stderr, "left behind: %s\n", name);
    return true;
}

int main(void)
{
    if (scratch_make("asingle-test-") < 0)
        return 1;
    test_sniff();
    test_plain();
    test_gzip_small();
    test_gzip_hostile();
    test_gzip_multi();
    test_gzip_large();
    test_zip_format();
    bench();
    aindex_shutdown();
    scratch_rmdir(left_behind);
    return check_summary();
}
