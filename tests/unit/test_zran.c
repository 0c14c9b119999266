/*
 * Unit test of the checkpointed reader of large deflate entries
 * (archive_ckpt, archive_points, archive_decode, archive_readahead and
 * zran): byte-exact random reads across checkpoint boundaries with both
 * inflaters, the "<zip>.ckpt" sidecar (reused, damaged ones ignored and
 * rebuilt, a changed archive caught), corrupt
 * deflate data reading EIO, stored entries, concurrent readers; then a
 * timing printout.
 *
 * ZRAN_BIG_MIB sets the size of the timing entry (default 32; 512 for the
 * issue's figures).  ZRAN_GZ=path also writes that entry's deflate stream
 * as a gzip file, to time `igzip -dc` / `zcat` on the very same stream.
 */
#include "archive_index.h"
#include "zran.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "scratch.h"

#include "testdata.h"

struct wentry {
    const char *name;
    const void *data;
    size_t len;
    bool store;
};

static int write_zip(const char *path, const struct wentry *ents, size_t n)
{
    struct archive *w = archive_write_new();
    int rc = 0;
    archive_write_set_format_zip(w);
    if (archive_write_open_filename(w, path) != ARCHIVE_OK) {
        archive_write_free(w);
        return -1;
    }
    struct archive_entry *e = archive_entry_new();
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((ents[i].store ? archive_write_zip_set_compression_store(w)
                           : archive_write_zip_set_compression_deflate(w))
            != ARCHIVE_OK)
            fprintf(stderr, "compression: %s\n", archive_error_string(w));
        archive_entry_clear(e);
        archive_entry_set_pathname(e, ents[i].name);
        archive_entry_set_mtime(e, 1700000000, 0);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)ents[i].len);
        if (archive_write_header(w, e) != ARCHIVE_OK
            || (ents[i].len
                && archive_write_data(w, ents[i].data, ents[i].len) != (la_ssize_t)ents[i].len))
            rc = -1;
        if (rc)
            fprintf(stderr, "write_zip: %s\n", archive_error_string(w));
    }
    archive_entry_free(e);
    if (archive_write_close(w) != ARCHIVE_OK)
        rc = -1;
    archive_write_free(w);
    return rc;
}

static char *ckpt_of(const char *zip)
{
    char *p;
    if (asprintf(&p, "%s.ckpt", zip) < 0)
        abort();
    return p;
}

static struct aindex *open_ix(const char *zip)
{
    struct aindex *ix = NULL;
    char *why = NULL;
    int rc = aindex_open(zip, NULL, &ix, &why);
    CHECK(rc == 0, "open %s: %s", zip, why ? why : "");
    free(why);
    return ix;
}

/* Flips one byte of a file in place, keeping its size and mtime. */
static void flip_keep_mtime(const char *path, off_t at, unsigned char mask)
{
    struct stat st;
    stat(path, &st);
    int fd = open(path, O_RDWR);
    unsigned char c;
    CHECK(pread(fd, &c, 1, at) == 1, "read %s", path);
    c ^= mask;
    CHECK(pwrite(fd, &c, 1, at) == 1, "write %s", path);
    close(fd);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    utimensat(AT_FDCWD, path, ts, 0);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Reads [off, off+len) and compares; true if equal. */
static bool read_cmp(struct areader *r, const unsigned char *want, uint64_t size,
                     uint64_t off, size_t len, unsigned char *buf)
{
    ssize_t got = areader_pread(r, buf, len, off);
    size_t expect = off >= size ? 0 : (size - off < len ? (size_t)(size - off) : len);
    if (got != (ssize_t)expect) {
        fprintf(stderr, "  pread(%zu @ %ju) = %zd, want %zu: %s\n", len, (uintmax_t)off, got,
                expect, areader_error(r) ? areader_error(r) : "");
        return false;
    }
    return memcmp(buf, want + off, expect) == 0;
}

/* Offsets a reader must get right: both sides of every MiB (checkpoints
 * sit at the first block boundary after each), random ones, backwards and
 * forwards jumps, the very end. */
static int exercise(const struct aindex *ix, const char *name, const unsigned char *want,
                    uint64_t size, uint64_t seed)
{
    const struct anode *n = aindex_lookup(ix, name);
    CHECK(n && anode_size(n) == size, "%s: lookup/size", name);
    if (!n)
        return 1;
    struct areader *r;
    CHECK(areader_open(ix, n, &r) == 0, "areader_open");
    unsigned char *buf = malloc((size_t)3 << 20);
    int bad = 0;
    for (uint64_t m = size / AINDEX_CKPT_SPAN; m-- > 0;) { /* backwards */
        uint64_t at = m * AINDEX_CKPT_SPAN;
        uint64_t s1 = at > 70000 ? at - 70000 : 0;
        bad += !read_cmp(r, want, size, s1, 140000, buf);   /* straddles */
        bad += !read_cmp(r, want, size, at + 40000, 4096, buf);
    }
    for (int i = 0; i < 300; i++) {
        uint64_t off = rng_next(&seed) % size;
        size_t len = i % 10 == 0 ? ((size_t)3 << 20) - (size_t)(rng_next(&seed) % 1000)
                                 : 1 + (size_t)(rng_next(&seed) % 70000);
        bad += !read_cmp(r, want, size, off, len, buf);
    }
    bad += !read_cmp(r, want, size, size - 1, 1, buf);
    bad += !read_cmp(r, want, size, size - 5000, 65536, buf);
    bad += !read_cmp(r, want, size, size, 10, buf);
    bad += !read_cmp(r, want, size, 0, 100, buf);
    /* Whole, sequentially. */
    uint64_t off = 0;
    while (off < size && read_cmp(r, want, size, off, 131072, buf))
        off += 131072;
    bad += off < size;
    areader_close(r);
    free(buf);
    CHECK(bad == 0, "%s: %d reads differ", name, bad);
    return bad;
}

/* ---------------------------------------------------------------- tests */

#define BIG ((size_t)24 << 20)
#define STORED ((size_t)6 << 20)

static unsigned char *big, *stored, *small;
static char *zip, *zip2;

static void test_crc(void)
{
    unsigned char *b = gen_csv(1, 100000);
    CHECK(zran_crc32(0, b, 100000) == (uint32_t)crc32(0, b, 100000), "crc32 differs");
    CHECK(zran_crc32(zran_crc32(0, b, 333), b + 333, 99667) == (uint32_t)crc32(0, b, 100000),
          "crc32 chaining differs");
    free(b);
}

static void test_reads(void)
{
    char *ck = ckpt_of(zip);
    unlink(ck);
    for (int be = 0; be <= 1; be++) {
        if (zran_set_backend(be ? ZRAN_ISAL : ZRAN_ZLIB) != 0) {
            printf("  (no ISA-L: zlib only)\n");
            continue;
        }
        struct aindex *ix = open_ix(zip);
        if (!ix)
            return;
        struct aindex_ckpt_stats st;
        aindex_checkpoint_stats(ix, &st);
        CHECK(st.entries == 1, "large deflate entries: %u", st.entries);
        CHECK(st.loaded == (be ? 1u : 0u), "loaded %u on pass %d", st.loaded, be);
        exercise(ix, "big.csv", big, BIG, 42 + (uint64_t)be);
        exercise(ix, "stored.bin", stored, STORED, 7);
        exercise(ix, "small.csv", small, 300000, 9);
        aindex_checkpoint_stats(ix, &st);
        CHECK(st.ready == 1 && st.points >= BIG / AINDEX_CKPT_SPAN - 1,
              "ready %u points %ju", st.ready, (uintmax_t)st.points);
        CHECK(st.built == (be ? 0u : 1u), "built %u on pass %d", st.built, be);
        printf("  %s: %ju points, loaded %u, built %u\n", be ? "isa-l" : "zlib",
               (uintmax_t)st.points, st.loaded, st.built);
        aindex_free(ix);
        CHECK(file_size(ck) > 0, "sidecar written");
    }
    zran_set_backend(zran_have_isal() ? ZRAN_ISAL : ZRAN_ZLIB);
    free(ck);
}

/* A damaged or foreign sidecar is ignored (or its damage caught at use)
 * and replaced; reads stay exact. */
static void test_sidecar_damage(void)
{
    char *ck = ckpt_of(zip);
    struct aindex *ix;
    struct aindex_ckpt_stats st;
    off_t len = file_size(ck);
    CHECK(len > 4096, "sidecar size %jd", (intmax_t)len);
    struct {
        const char *what;
        off_t at;
        bool loads; /* the damage is only seen when a window is used */
    } cases[] = {
        {"header", 20, false},
        {"table", len - 10, false},
        {"window", 4096 + 3 * 32768 + 100, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        flip_keep_mtime(ck, cases[i].at, 0x01);
        ix = open_ix(zip);
        aindex_checkpoint_stats(ix, &st);
        CHECK(st.loaded == (cases[i].loads ? 1u : 0u), "%s: loaded %u", cases[i].what,
              st.loaded);
        exercise(ix, "big.csv", big, BIG, 100 + i);
        aindex_checkpoint_stats(ix, &st);
        CHECK(st.built == 1, "%s: rebuilt %u", cases[i].what, st.built);
        aindex_free(ix);
        ix = open_ix(zip);
        aindex_checkpoint_stats(ix, &st);
        CHECK(st.loaded == 1, "%s: rewritten sidecar not loaded", cases[i].what);
        aindex_free(ix);
        printf("  damaged sidecar (%s): ignored and rebuilt\n", cases[i].what);
    }
    /* Truncated, empty, garbage. */
    CHECK(truncate(ck, len / 2) == 0, "truncate");
    ix = open_ix(zip);
    aindex_checkpoint_stats(ix, &st);
    CHECK(st.loaded == 0, "truncated sidecar loaded");
    exercise(ix, "big.csv", big, BIG, 200);
    aindex_free(ix);
    FILE *f = fopen(ck, "w");
    fputs("garbage", f);
    fclose(f);
    ix = open_ix(zip);
    aindex_checkpoint_stats(ix, &st);
    CHECK(st.loaded == 0, "garbage sidecar loaded");
    aindex_free(ix);
    /* The sidecar of another archive (same entry, other mtime). */
    char *ck2 = ckpt_of(zip2);
    unlink(ck2);
    ix = open_ix(zip2);
    CHECK(aindex_build_checkpoints(ix, NULL, NULL) == 0, "build zip2");
    aindex_free(ix);
    CHECK(rename(ck2, ck) == 0, "rename");
    ix = open_ix(zip);
    aindex_checkpoint_stats(ix, &st);
    CHECK(st.loaded == 0, "foreign sidecar loaded");
    exercise(ix, "big.csv", big, BIG, 300);
    aindex_free(ix);
    free(ck2);
    free(ck);
}

static void expect_eio(const char *z, const char *what, bool nothing_served)
{
    struct aindex *ix = open_ix(z);
    if (!ix)
        return;
    const struct anode *n = aindex_lookup(ix, "big.csv");
    struct areader *r;
    areader_open(ix, n, &r);
    unsigned char *buf = malloc(65536);
    uint64_t off = 0;
    ssize_t got = 0;
    /* Random reads first, then everything. */
    uint64_t seed = 5;
    bool failed = false;
    for (int i = 0; i < 20 && !failed; i++) {
        uint64_t o = rng_next(&seed) % BIG;
        got = areader_pread(r, buf, 4096, o);
        if (got < 0)
            failed = true;
        else if (nothing_served)
            CHECK(false, "%s: read at %ju served %zd bytes", what, (uintmax_t)o, got);
        else
            CHECK(memcmp(buf, big + o, (size_t)got) == 0, "%s: wrong bytes at %ju", what,
                  (uintmax_t)o);
    }
    while (!failed && (got = areader_pread(r, buf, 65536, off)) > 0) {
        CHECK(memcmp(buf, big + off, (size_t)got) == 0, "%s: wrong bytes at %ju", what,
              (uintmax_t)off);
        off += (uint64_t)got;
    }
    if (got < 0)
        failed = true;
    CHECK(failed && got == -EIO, "%s: read gave %zd, not EIO", what, got);
    printf("  %s: EIO (%s)\n", what, areader_error(r) ? areader_error(r) : "");
    /* And again. */
    CHECK(areader_pread(r, buf, 4096, 0) == -EIO || !nothing_served, "%s: second read", what);
    areader_close(r);
    free(buf);
    aindex_free(ix);
}

/* Offset of big.csv's data in the zip (for damaging it). */
static long data_start(const char *z)
{
    FILE *f = fopen(z, "rb");
    unsigned char h[30];
    long at = -1;
    if (f && fread(h, 1, 30, f) == 30 && memcmp(h, "PK\3\4", 4) == 0)
        at = 30 + (h[26] | h[27] << 8) + (h[28] | h[29] << 8);
    if (f)
        fclose(f);
    return at;
}

static void test_corrupt(void)
{
    char *bad = tpath("bad.zip");
    char *ck = ckpt_of(bad);
    struct wentry ents[] = {{"big.csv", big, BIG, false}};
    CHECK(write_zip(bad, ents, 1) == 0, "write bad.zip");
    long d = data_start(bad);
    off_t zl = file_size(bad);
    CHECK(d > 0, "data start");
    /* 1. Corrupt deflate data, no sidecar: the build fails, nothing is
     * served. */
    unlink(ck);
    flip_keep_mtime(bad, d + (zl - d) / 2, 0x20);
    expect_eio(bad, "corrupt deflate stream", true);
    CHECK(file_size(ck) < 0, "a sidecar was written for a corrupt entry");
    /* 2. Good archive with its sidecar, then the archive changes in place
     * (size and mtime kept): the span CRCs catch it. */
    CHECK(write_zip(bad, ents, 1) == 0, "write bad.zip");
    struct aindex *ix = open_ix(bad);
    CHECK(aindex_build_checkpoints(ix, NULL, NULL) == 0, "build");
    aindex_free(ix);
    flip_keep_mtime(bad, d + (zl - d) * 3 / 4, 0x04);
    expect_eio(bad, "archive changed after the sidecar", false);
    /* 3. Central directory CRC wrong (data intact): the build's CRC check. */
    CHECK(write_zip(bad, ents, 1) == 0, "write bad.zip");
    unlink(ck);
    FILE *f = fopen(bad, "rb");
    unsigned char *b = malloc((size_t)zl);
    CHECK(fread(b, 1, (size_t)zl, f) == (size_t)zl, "read");
    fclose(f);
    long cd = -1;
    for (long i = (long)zl - 4; i >= 0 && cd < 0; i--)
        if (memcmp(b + i, "PK\1\2", 4) == 0)
            cd = i;
    free(b);
    flip_keep_mtime(bad, cd + 16, 0x01);
    expect_eio(bad, "central directory CRC mismatch", true);
    unlink(ck);
    unlink(bad);
    free(ck);
    free(bad);
}

struct thr {
    const struct aindex *ix;
    uint64_t seed;
    int bad;
};

static void *thr_main(void *p)
{
    struct thr *t = p;
    const struct anode *n = aindex_lookup(t->ix, "big.csv");
    struct areader *r;
    areader_open(t->ix, n, &r);
    unsigned char *buf = malloc(200000);
    for (int i = 0; i < 150; i++) {
        uint64_t off = rng_next(&t->seed) % BIG;
        size_t len = 1 + (size_t)(rng_next(&t->seed) % 200000);
        t->bad += !read_cmp(r, big, BIG, off, len, buf);
    }
    areader_close(r);
    free(buf);
    return NULL;
}

static void test_threads(void)
{
    char *ck = ckpt_of(zip);
    for (int pass = 0; pass < 2; pass++) {
        unlink(ck); /* all threads race for the first build */
        struct aindex *ix = open_ix(zip);
        enum { NT = 6 };
        pthread_t th[NT];
        struct thr t[NT];
        for (int i = 0; i < NT; i++) {
            t[i] = (struct thr){ix, 1000 + (uint64_t)i * 7 + (uint64_t)pass, 0};
            pthread_create(&th[i], NULL, thr_main, &t[i]);
        }
        if (pass == 1) /* and an explicit build at the same time */
            CHECK(aindex_build_checkpoints(ix, NULL, NULL) == 0, "concurrent build");
        int bad = 0;
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            bad += t[i].bad;
        }
        struct aindex_ckpt_stats st;
        aindex_checkpoint_stats(ix, &st);
        CHECK(bad == 0 && st.built == 1, "threads: %d bad reads, %u builds", bad, st.built);
        aindex_free(ix);
    }
    free(ck);
}

/* The fetcher's way: build for "x.zip.part" into "x.zip.ckpt", rename. */
static void test_explicit_sidecar(void)
{
    char *part = tpath("job.zip.part"), *fin = tpath("job.zip");
    char *ck = ckpt_of(fin);
    struct wentry ents[] = {{"big.csv", big, BIG, false}, {"stored.bin", stored, STORED, true}};
    CHECK(write_zip(part, ents, 2) == 0, "write part");
    struct aindex *ix = open_ix(part);
    char *why = NULL;
    CHECK(aindex_build_checkpoints(ix, ck, &why) == 0, "build: %s", why ? why : "");
    free(why);
    aindex_free(ix);
    CHECK(rename(part, fin) == 0, "rename");
    ix = open_ix(fin);
    struct aindex_ckpt_stats st;
    aindex_checkpoint_stats(ix, &st);
    CHECK(st.loaded == 1 && st.entries == 1, "explicit sidecar not used");
    exercise(ix, "big.csv", big, BIG, 55);
    aindex_free(ix);
    unlink(fin);
    unlink(ck);
    free(part);
    free(fin);
    free(ck);
}

/* ---------------------------------------------------------------- timing */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static void write_gz(const char *zipp, const char *gz, uint64_t usize, uint32_t crc)
{
    long d = data_start(zipp);
    FILE *in = fopen(zipp, "rb"), *out = fopen(gz, "wb");
    if (!in || !out || d < 0)
        return;
    /* The central directory's compressed size of the (only) entry. */
    fseek(in, 0, SEEK_END);
    long zl = ftell(in);
    unsigned char *b = malloc((size_t)zl);
    fseek(in, 0, SEEK_SET);
    if (fread(b, 1, (size_t)zl, in) != (size_t)zl)
        return;
    long cd = -1;
    for (long i = zl - 4; i >= 0 && cd < 0; i--)
        if (memcmp(b + i, "PK\1\2", 4) == 0)
            cd = i;
    uint64_t csize = (uint64_t)(b[cd + 20] | b[cd + 21] << 8 | b[cd + 22] << 16)
                     | (uint64_t)b[cd + 23] << 24;
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    fwrite(hdr, 1, 10, out);
    fwrite(b + d, 1, (size_t)csize, out);
    unsigned char tr[8];
    for (int i = 0; i < 4; i++) {
        tr[i] = (unsigned char)(crc >> (8 * i));
        tr[4 + i] = (unsigned char)(usize >> (8 * i));
    }
    fwrite(tr, 1, 8, out);
    fclose(out);
    fclose(in);
    free(b);
    printf("TIMING wrote the entry's deflate stream as %s\n", gz);
}

static void test_timing(void)
{
    const char *env = getenv("ZRAN_BIG_MIB");
    size_t mib = env ? (size_t)atoi(env) : 32;
    if (!mib)
        return;
    size_t len = mib << 20;
    unsigned char *data = gen_csv(3, len);
    char *z = tpath("timing.zip"), *ck = ckpt_of(z);
    struct wentry one = {"events.csv", data, len, false};
    CHECK(write_zip(z, &one, 1) == 0, "write timing.zip");
    printf("TIMING entry %zu MiB, zip %.1f MiB (%.2f:1)\n", mib, file_size(z) / 1048576.0,
           (double)len / (double)file_size(z));
    if (getenv("ZRAN_GZ"))
        write_gz(z, getenv("ZRAN_GZ"), len, zran_crc32(0, data, len));
    unsigned char *buf = malloc(131072);
    long rss0 = rss_kib();
    for (int be = 0; be <= 1; be++) {
        if (zran_set_backend(be ? ZRAN_ISAL : ZRAN_ZLIB) != 0)
            continue;
        const char *bn = be ? "isa-l" : "zlib";
        unlink(ck);
        /* Cold: no sidecar; the first read builds the checkpoints. */
        struct aindex *ix = open_ix(z);
        const struct anode *n = aindex_lookup(ix, "events.csv");
        struct areader *r;
        areader_open(ix, n, &r);
        double t0 = now_s();
        uint64_t off = 0;
        ssize_t got;
        bool same = true;
        while ((got = areader_pread(r, buf, 131072, off)) > 0) {
            same = same && memcmp(buf, data + off, (size_t)got) == 0;
            off += (uint64_t)got;
        }
        double t = now_s() - t0;
        CHECK(same && off == len, "sequential");
        printf("TIMING [%s] no sidecar: build + full sequential read: %.3f s\n", bn, t);
        areader_close(r);
        aindex_free(ix);
        /* Sidecar present: open, sequential read, like cat after remount. */
        for (int rep = 0; rep < 2; rep++) {
            t0 = now_s();
            ix = open_ix(z);
            n = aindex_lookup(ix, "events.csv");
            areader_open(ix, n, &r);
            off = 0;
            while ((got = areader_pread(r, buf, 131072, off)) > 0)
                off += (uint64_t)got;
            t = now_s() - t0;
            CHECK(off == len, "sequential 2");
            printf("TIMING [%s] sidecar: open + sequential read: %.3f s (%.0f MB/s)\n", bn, t,
                   len / t / 1e6);
            areader_close(r);
            aindex_free(ix);
        }
        /* 200 random 4 KiB reads, first access after open, one reader. */
        for (int rep = 0; rep < 2; rep++) {
            t0 = now_s();
            ix = open_ix(z);
            double topen = now_s() - t0;
            n = aindex_lookup(ix, "events.csv");
            areader_open(ix, n, &r);
            uint64_t seed = 77;
            double worst = 0;
            t0 = now_s();
            for (int i = 0; i < 200; i++) {
                uint64_t o = rng_next(&seed) % (len - 4096);
                double t1 = now_s();
                got = areader_pread(r, buf, 4096, o);
                double dt = now_s() - t1;
                if (dt > worst)
                    worst = dt;
                CHECK(got == 4096 && memcmp(buf, data + o, 4096) == 0, "random");
            }
            t = now_s() - t0;
            printf("TIMING [%s] open %.2f ms; 200 random 4 KiB reads: %.1f ms total, worst "
                   "%.2f ms%s\n", bn, topen * 1e3, t * 1e3, worst * 1e3,
                   rep ? " (warm)" : "");
            areader_close(r);
            aindex_free(ix);
        }
    }
    printf("TIMING RSS growth over the timing runs: %ld KiB\n", rss_kib() - rss0);
    zran_set_backend(zran_have_isal() ? ZRAN_ISAL : ZRAN_ZLIB);
    unlink(z);
    unlink(ck);
    free(z);
    free(ck);
    free(buf);
    free(data);
}

int main(void)
{
    if (scratch_make("zran-test-") < 0)
        return 1;
    big = gen_csv(21, BIG);
    stored = gen_csv(22, STORED);
    small = gen_csv(23, 300000);
    zip = tpath("main.zip");
    zip2 = tpath("other.zip");
    struct wentry ents[] = {
        {"small.csv", small, 300000, false},
        {"big.csv", big, BIG, false},
        {"stored.bin", stored, STORED, true},
    };
    CHECK(write_zip(zip, ents, 3) == 0, "write main.zip");
    CHECK(write_zip(zip2, ents, 3) == 0, "write other.zip");
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
    utimensat(AT_FDCWD, zip2, ts, 0);

    printf("inflater: %s\n", zran_have_isal() ? "ISA-L (zlib also tested)" : "zlib");
    test_crc();
    test_reads();
    test_sidecar_damage();
    test_corrupt();
    test_threads();
    test_explicit_sidecar();
    test_timing();

    char *ck = ckpt_of(zip), *ck2 = ckpt_of(zip2);
    unlink(zip);
    unlink(zip2);
    unlink(ck);
    unlink(ck2);
    free(ck);
    free(ck2);
    free(zip);
    free(zip2);
    free(big);
    free(stored);
    free(small);
    scratch_rmdir(NULL);
    return check_summary();
}
