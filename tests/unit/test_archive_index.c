/*
 * Unit test of archive_index: builds zips with libarchive's writer in a
 * temporary directory, then checks the cleaned tree, exact sizes and
 * times, byte-exact reads (sequential, random, backwards, past EOF, from
 * several threads), corrupt archives, and prints a few timings.
 *
 * AIDX_BIG_MIB sets the size of the throughput entry (default 64; use a
 * few MiB under valgrind).
 */
#include "archive_index.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"

static const char *const reserved[] = {"status", ".job.json", ".wait", NULL};

/* ------------------------------------------------------------ helpers */

#include "testdata.h"

enum { T_REG, T_DIR, T_LNK, T_HARD };

struct wentry {
    const char *name;
    int type;
    const void *data;
    size_t len;
    time_t mtime;
    const char *link;
};

static int write_zip(const char *path, const struct wentry *ents, size_t n, bool store)
{
    struct archive *w = archive_write_new();
    int rc = 0;
    archive_write_set_format_zip(w);
    if (store)
        archive_write_set_options(w, "zip:compression=store");
    if (archive_write_open_filename(w, path) != ARCHIVE_OK) {
        fprintf(stderr, "write_zip %s: %s\n", path, archive_error_string(w));
        archive_write_free(w);
        return -1;
    }
    struct archive_entry *e = archive_entry_new();
    for (size_t i = 0; i < n && rc == 0; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, ents[i].name);
        archive_entry_set_mtime(e, ents[i].mtime, 0);
        switch (ents[i].type) {
        case T_DIR:
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            break;
        case T_LNK:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, ents[i].link);
            break;
        case T_HARD:
            archive_entry_set_hardlink(e, ents[i].link);
            /* fall through */
        default:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_size(e, (la_int64_t)ents[i].len);
        }
        if (archive_write_header(w, e) != ARCHIVE_OK) {
            fprintf(stderr, "write_zip header %s: %s\n", ents[i].name,
                    archive_error_string(w));
            rc = -1;
        } else if (ents[i].type == T_REG || ents[i].type == T_HARD) {
            if (ents[i].len && archive_write_data(w, ents[i].data, ents[i].len)
                                   != (la_ssize_t)ents[i].len)
                rc = -1;
        }
    }
    archive_entry_free(e);
    if (archive_write_close(w) != ARCHIVE_OK)
        rc = -1;
    archive_write_free(w);
    return rc;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Reads the whole of node n with reads of pseudo-random sizes; compares. */
static bool read_all_matches(const struct aindex *ix, const struct anode *n,
                             const unsigned char *want, size_t len, uint64_t seed)
{
    struct areader *r;
    if (areader_open(ix, n, &r) != 0)
        return false;
    unsigned char *buf = malloc(len + 70000);
    size_t at = 0;
    bool ok = true;
    for (;;) {
        size_t ask = (size_t)(rng_next(&seed) % 70000) + 1;
        ssize_t got = areader_pread(r, buf + at, ask, at);
        if (got < 0) {
            fprintf(stderr, "  pread at %zu: %zd %s\n", at, got, areader_error(r));
            ok = false;
            break;
        }
        if (got == 0)
            break;
        at += (size_t)got;
        if (at > len)
            break;
    }
    ok = ok && at == len && memcmp(buf, want, len) == 0;
    free(buf);
    areader_close(r);
    return ok;
}

/* ------------------------------------------------------- the main zip */

struct expect {
    const char *path;
    const unsigned char *data;
    size_t len;
};

#define BIG_MAIN ((size_t)6 << 20)

static unsigned char *big_main;

static void test_tree_and_reads(void)
{
    static char deep[1024], too_deep[1024], too_long[6000], long_comp[400];
    static char long_comp_want[300];
    deep[0] = too_deep[0] = too_long[0] = '\0';
    for (int i = 0; i < 255; i++)
        strcat(deep, "e/");
    strcat(deep, "f.csv"); /* 256 components: kept */
    for (int i = 0; i < 256; i++)
        strcat(too_deep, "d/");
    strcat(too_deep, "f.csv"); /* 257: skipped */
    for (int i = 0; i < 17; i++) {
        size_t l = strlen(too_long);
        memset(too_long + l, 'x', 240);
        strcpy(too_long + l + 240, "/");
    }
    strcat(too_long, "f.csv"); /* > 4000 bytes: skipped */
    strcpy(long_comp, "long/");
    memset(long_comp + 5, 'L', 300);
    long_comp[305] = '\0';
    memset(long_comp_want, 'L', 255);
    long_comp_want[255] = '\0';
    /* A component cut inside a multi-byte character: 254 'M' + "é". */
    static char cut_utf8[300], cut_utf8_want[300];
    memset(cut_utf8, 'M', 254);
    strcpy(cut_utf8 + 254, "\xc3\xa9.csv");
    memset(cut_utf8_want, 'M', 254);
    cut_utf8_want[254] = '\0';

    big_main = gen_csv(1, BIG_MAIN);
    const time_t T = 1700000000;
    const struct wentry ents[] = {
        {"data/a.csv", T_REG, "a,b\n1,2\n", 8, T, NULL},
        {"data/", T_DIR, NULL, 0, T - 100000, NULL},
        {"implicit/deep/x.csv", T_REG, "x", 1, T + 50, NULL},
        {"dup.csv", T_REG, "first", 5, T, NULL},
        {"../escape.csv", T_REG, "esc", 3, T, NULL},
        {"/abs/p.csv", T_REG, "abs", 3, T, NULL},
        {"./dot/../x/./y.csv", T_REG, "dots", 4, T, NULL},
        {"link", T_LNK, NULL, 0, T, "data/a.csv"},
        {"hl.csv", T_HARD, "hard", 4, T, "data/a.csv"},
        {"status", T_REG, "S", 1, T, NULL},
        {".job.json", T_REG, "J", 1, T, NULL},
        {".wait/inner.csv", T_REG, "W", 1, T, NULL},
        {"sub/status", T_REG, "s2", 2, T, NULL},
        {"new\nline.csv", T_REG, "nl", 2, T, NULL},
        {"bad\xff\xfe" "name.csv", T_REG, "bad", 3, T, NULL},
        {"caf\xc3\xa9.csv", T_REG, "cafe", 4, T, NULL},
        {"ctl\x01\x7f.csv", T_REG, "ctl", 3, T, NULL},
        {deep, T_REG, "deep", 4, T, NULL},
        {too_deep, T_REG, "no", 2, T, NULL},
        {too_long, T_REG, "no", 2, T, NULL},
        {long_comp, T_REG, "long", 4, T, NULL},
        {cut_utf8, T_REG, "cut", 3, T, NULL},
        {"conflict", T_REG, "file", 4, T, NULL},
        {"conflict/inner.csv", T_REG, "in", 2, T, NULL},
        {"conflict2/", T_DIR, NULL, 0, T, NULL},
        {"conflict2", T_REG, "file", 4, T, NULL},
        {"empty.csv", T_REG, "", 0, T, NULL},
        {"big/events.csv", T_REG, big_main, BIG_MAIN, T + 2, NULL},
        {"dup.csv", T_REG, "second!", 7, T + 10, NULL},
    };
    char *zip = tpath("main.zip");
    CHECK(write_zip(zip, ents, sizeof ents / sizeof ents[0], false) == 0, "write main.zip");

    struct aindex *ix = NULL;
    char *why = NULL;
    int rc = aindex_open(zip, reserved, &ix, &why);
    CHECK(rc == 0, "aindex_open: %d %s", rc, why ? why : "");
    free(why);
    if (rc) {
        free(zip);
        return;
    }

    /* Root listing: sorted bytewise, reserved names prefixed. */
    static const char *root_want[] = {
        "_.job.json", "_.wait", "_status", "abs", "bad%FF%FEname.csv", "big", "caf\xc3\xa9.csv",
        "conflict", "conflict2", "ctl%01%7F.csv", "data", "dup.csv", "dot", "e", "empty.csv",
        "escape.csv", "hl.csv", "implicit", "link", "long", NULL /* cut_utf8 */, "new%0Aline.csv",
        "sub",
    };
    root_want[20] = cut_utf8_want;
    const struct anode *root = aindex_root(ix);
    size_t nroot = sizeof root_want / sizeof root_want[0];
    /* expected order is bytewise: sort the expectation the same way */
    for (size_t i = 0; i < nroot; i++)
        for (size_t j = i + 1; j < nroot; j++)
            if (strcmp(root_want[j], root_want[i]) < 0) {
                const char *t = root_want[i];
                root_want[i] = root_want[j];
                root_want[j] = t;
            }
    CHECK(anode_child_count(root) == nroot, "root has %zu children, want %zu",
          anode_child_count(root), nroot);
    for (size_t i = 0; i < anode_child_count(root) && i < nroot; i++) {
        const char *got = anode_name(ix, anode_child(ix, root, i));
        CHECK(strcmp(got, root_want[i]) == 0, "root child %zu: '%s', want '%s'", i, got,
              root_want[i]);
    }
    for (size_t i = 0; i < anode_child_count(root); i++)
        printf("  root: %s\n", anode_name(ix, anode_child(ix, root, i)));
    CHECK(anode_child(ix, root, nroot) == NULL, "child out of range");

    /* Every directory's children are sorted. */
    for (size_t i = 0; i < anode_child_count(root); i++) {
        const struct anode *d = anode_child(ix, root, i);
        for (size_t j = 1; j < anode_child_count(d); j++)
            CHECK(strcmp(anode_name(ix, anode_child(ix, d, j - 1)),
                         anode_name(ix, anode_child(ix, d, j))) < 0,
                  "children of %s unsorted", anode_name(ix, d));
    }

    /* Files, sizes, contents. */
    static char long_path[320], cut_path[320];
    snprintf(long_path, sizeof long_path, "long/%s", long_comp_want);
    snprintf(cut_path, sizeof cut_path, "%s", cut_utf8_want);
    char deep_clean[1024] = "";
    for (int i = 0; i < 255; i++)
        strcat(deep_clean, "e/");
    strcat(deep_clean, "f.csv");
    const struct expect files[] = {
        {"data/a.csv", (const unsigned char *)"a,b\n1,2\n", 8},
        {"implicit/deep/x.csv", (const unsigned char *)"x", 1},
        {"dup.csv", (const unsigned char *)"second!", 7},
        {"escape.csv", (const unsigned char *)"esc", 3},
        {"abs/p.csv", (const unsigned char *)"abs", 3},
        {"dot/x/y.csv", (const unsigned char *)"dots", 4},
        {deep_clean, (const unsigned char *)"deep", 4},
        {"link", (const unsigned char *)"data/a.csv", 10},
        {"hl.csv", (const unsigned char *)"hard", 4},
        {"_status", (const unsigned char *)"S", 1},
        {"_.job.json", (const unsigned char *)"J", 1},
        {"_.wait/inner.csv", (const unsigned char *)"W", 1},
        {"sub/status", (const unsigned char *)"s2", 2},
        {"new%0Aline.csv", (const unsigned char *)"nl", 2},
        {"bad%FF%FEname.csv", (const unsigned char *)"bad", 3},
        {"caf\xc3\xa9.csv", (const unsigned char *)"cafe", 4},
        {"ctl%01%7F.csv", (const unsigned char *)"ctl", 3},
        {long_path, (const unsigned char *)"long", 4},
        {cut_path, (const unsigned char *)"cut", 3},
        {"conflict/inner.csv", (const unsigned char *)"in", 2},
        {"empty.csv", (const unsigned char *)"", 0},
        {"big/events.csv", big_main, BIG_MAIN},
    };
    uint64_t total_want = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        total_want += files[i].len;
        const struct anode *n = aindex_lookup(ix, files[i].path);
        CHECK(n != NULL, "lookup %s", files[i].path);
        if (!n)
            continue;
        CHECK(!anode_is_dir(n), "%s is a dir", files[i].path);
        CHECK(anode_size(n) == files[i].len, "%s size %ju want %zu", files[i].path,
              (uintmax_t)anode_size(n), files[i].len);
        CHECK(read_all_matches(ix, n, files[i].data, files[i].len, i + 1),
              "content of %s", files[i].path);
    }
    /* "./dot/../x/./y.csv" is dot/x/y.csv: '..' is dropped, not applied. */
    CHECK(aindex_lookup(ix, "x") == NULL, "'..' applied");

    /* Directories and times. */
    const struct anode *d = aindex_lookup(ix, "data");
    CHECK(d && anode_is_dir(d) && anode_mtime(d) == T - 100000, "explicit dir mtime");
    d = aindex_lookup(ix, "implicit");
    CHECK(d && anode_is_dir(d) && anode_mtime(d) == T + 50, "implicit dir mtime %jd",
          d ? (intmax_t)anode_mtime(d) : -1);
    CHECK(anode_is_dir(aindex_lookup(ix, "conflict")), "dir wins over earlier file");
    CHECK(anode_is_dir(aindex_lookup(ix, "conflict2")), "dir wins over later file");
    const struct anode *dup = aindex_lookup(ix, "dup.csv");
    CHECK(dup && anode_mtime(dup) == T + 10, "duplicate: last one's mtime");
    CHECK(anode_mtime(aindex_lookup(ix, "data/a.csv")) == T, "file mtime");
    CHECK(aindex_lookup(ix, "") == root && aindex_lookup(ix, "/") == root, "root lookup");
    CHECK(aindex_lookup(ix, "data//a.csv") != NULL, "empty components ignored");
    CHECK(aindex_lookup(ix, "nope") == NULL && aindex_lookup(ix, "data/a.csv/x") == NULL
              && aindex_lookup(ix, "../data") == NULL,
          "absent paths");
    struct areader *rd;
    CHECK(areader_open(ix, aindex_lookup(ix, "data"), &rd) == -EISDIR, "open dir");

    const struct aindex_stats *st = aindex_stats(ix);
    CHECK(st->skipped_too_deep == 1, "too deep %ju", (uintmax_t)st->skipped_too_deep);
    CHECK(st->skipped_too_long == 1, "too long %ju", (uintmax_t)st->skipped_too_long);
    CHECK(st->renamed_reserved == 3, "renamed %ju", (uintmax_t)st->renamed_reserved);
    CHECK(st->replaced_duplicate == 1, "replaced %ju", (uintmax_t)st->replaced_duplicate);
    CHECK(st->shadowed_by_dir == 2, "shadowed %ju", (uintmax_t)st->shadowed_by_dir);
    CHECK(st->truncated_names == 2, "truncated %ju", (uintmax_t)st->truncated_names);
    CHECK(aindex_total_size(ix) == total_want, "total size %ju want %ju",
          (uintmax_t)aindex_total_size(ix), (uintmax_t)total_want);

    /* Random preads on the big entry, one reader: forward jumps, small
     * steps back (window), far steps back (restart), past EOF. */
    const struct anode *big = aindex_lookup(ix, "big/events.csv");
    struct areader *r;
    CHECK(areader_open(ix, big, &r) == 0, "open big");
    unsigned char *buf = malloc(1 << 20);
    uint64_t seed = 42;
    for (int i = 0; i < 300; i++) {
        uint64_t off = rng_next(&seed) % (BIG_MAIN + 1000);
        size_t sz = (size_t)(rng_next(&seed) % 300000) + 1;
        if (i % 3 == 0 && i > 0)
            off = off % 4096; /* often back to the start */
        ssize_t got = areader_pread(r, buf, sz, off);
        size_t want = off >= BIG_MAIN ? 0 : (BIG_MAIN - off < sz ? BIG_MAIN - off : sz);
        CHECK(got == (ssize_t)want, "pread(%zu @ %ju) = %zd want %zu (%s)", sz,
              (uintmax_t)off, got, want, areader_error(r) ? areader_error(r) : "");
        if (got > 0)
            CHECK(memcmp(buf, big_main + off, (size_t)got) == 0, "bytes @ %ju", (uintmax_t)off);
    }
    /* Reads slightly behind the position (parallel readahead). */
    for (uint64_t off = 2 << 20; off < (4u << 20); off += 131072) {
        ssize_t a = areader_pread(r, buf, 131072, off + 131072);
        ssize_t b = areader_pread(r, buf + 131072, 131072, off);
        CHECK(a == 131072 && b == 131072 && memcmp(buf, big_main + off + 131072, 131072) == 0
                  && memcmp(buf + 131072, big_main + off, 131072) == 0,
              "out-of-order pair @ %ju", (uintmax_t)off);
    }
    CHECK(areader_pread(r, buf, 10, BIG_MAIN) == 0, "pread at EOF");
    CHECK(areader_pread(r, buf, 10, BIG_MAIN + 5) == 0, "pread past EOF");
    CHECK(areader_pread(r, buf, 100, BIG_MAIN - 10) == 10, "short read at EOF");
    CHECK(areader_pread(r, buf, 0, 0) == 0, "zero-size read");
    areader_close(r);
    free(buf);

    char *vwhy = NULL;
    CHECK(aindex_verify_data(zip, &vwhy) == 0, "verify good zip: %s", vwhy ? vwhy : "");
    free(vwhy);
    aindex_free(ix);

    /* Truncated copy: the central directory is gone. */
    size_t zlen;
    unsigned char *zbytes = slurp(zip, &zlen);
    char *trunc = tpath("truncated.zip");
    spit(trunc, zbytes, zlen / 2);
    why = NULL;
    rc = aindex_open(trunc, reserved, &ix, &why);
    CHECK(rc == -EIO && why != NULL, "truncated zip: rc %d", rc);
    printf("  truncated zip: %s\n", why ? why : "(no message)");
    free(why);
    why = NULL;
    CHECK(aindex_verify_data(trunc, &why) == -EIO, "verify truncated");
    free(why);
    /* Not a zip at all, and a missing file. */
    spit(trunc, "hello, this is not a zip archive at all....", 40);
    why = NULL;
    CHECK(aindex_open(trunc, reserved, &ix, &why) == -EIO, "not a zip");
    free(why);
    why = NULL;
    CHECK(aindex_open("/nonexistent/x.zip", reserved, &ix, &why) == -ENOENT, "missing");
    free(why);
    unlink(trunc);
    free(trunc);
    free(zbytes);
    unlink(zip);
    free(zip);
}

/* ----------------------------------------------------------- threads */

struct thread_arg {
    const struct aindex *ix;
    const unsigned char *big;
    size_t big_len;
    uint64_t seed;
    int bad;
};

static void *reader_thread(void *p)
{
    struct thread_arg *ta = p;
    const struct anode *root = aindex_root(ta->ix);
    unsigned char *buf = malloc(200000);
    for (int it = 0; it < 120; it++) {
        size_t k = (size_t)(rng_next(&ta->seed) % anode_child_count(root));
        const struct anode *n = anode_child(ta->ix, root, k);
        const unsigned char *want;
        size_t len;
        char name[64];
        snprintf(name, sizeof name, "%s", anode_name(ta->ix, n));
        if (strcmp(name, "big.csv") == 0) {
            want = ta->big;
            len = ta->big_len;
        } else {
            unsigned idx = (unsigned)atoi(name + 1);
            want = NULL;
            len = 1000 + idx * 37;
            (void)want;
        }
        struct areader *r;
        if (areader_open(ta->ix, n, &r) != 0) {
            ta->bad++;
            continue;
        }
        unsigned char *gen = want ? NULL : gen_csv(1000 + (uint64_t)atoi(name + 1), len);
        const unsigned char *exp = want ? want : gen;
        for (int j = 0; j < 4; j++) {
            uint64_t off = rng_next(&ta->seed) % len;
            size_t sz = (size_t)(rng_next(&ta->seed) % 200000) + 1;
            ssize_t got = areader_pread(r, buf, sz, off);
            size_t w = len - off < sz ? len - off : sz;
            if (got != (ssize_t)w || memcmp(buf, exp + off, w) != 0)
                ta->bad++;
        }
        free(gen);
        areader_close(r);
    }
    free(buf);
    return NULL;
}

static void test_threads(void)
{
    enum { NFILES = 40 };
    size_t big_len = (size_t)3 << 20;
    unsigned char *big = gen_csv(7, big_len);
    struct wentry ents[NFILES + 1];
    unsigned char *datas[NFILES];
    char names[NFILES][32];
    for (int i = 0; i < NFILES; i++) {
        snprintf(names[i], sizeof names[i], "f%02d.csv", i);
        datas[i] = gen_csv(1000 + (uint64_t)i, 1000 + (size_t)i * 37);
        ents[i] = (struct wentry){names[i], T_REG, datas[i], 1000 + (size_t)i * 37, 1700000000,
                                  NULL};
    }
    ents[NFILES] = (struct wentry){"big.csv", T_REG, big, big_len, 1700000000, NULL};
    char *zip = tpath("threads.zip");
    CHECK(write_zip(zip, ents, NFILES + 1, false) == 0, "write threads.zip");
    struct aindex *ix;
    char *why = NULL;
    int rc = aindex_open(zip, reserved, &ix, &why);
    CHECK(rc == 0, "open threads.zip: %s", why ? why : "");
    free(why);
    if (rc == 0) {
        pthread_t th[4];
        struct thread_arg ta[4];
        for (int i = 0; i < 4; i++) {
            ta[i] = (struct thread_arg){ix, big, big_len, 99 + (uint64_t)i, 0};
            pthread_create(&th[i], NULL, reader_thread, &ta[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK(ta[i].bad == 0, "thread %d: %d bad reads", i, ta[i].bad);
        }
        aindex_free(ix);
    }
    for (int i = 0; i < NFILES; i++)
        free(datas[i]);
    free(big);
    unlink(zip);
    free(zip);
}

/* ------------------------------------------------------------ corrupt */

/* Position of the last occurrence of a 4-byte signature. */
static long find_sig_from_end(const unsigned char *b, size_t len, const char *sig)
{
    for (long i = (long)len - 4; i >= 0; i--)
        if (memcmp(b + i, sig, 4) == 0)
            return i;
    return -1;
}

static void expect_read_fails(const char *zip, const char *entry, const char *what,
                              bool small)
{
    struct aindex *ix;
    char *why = NULL;
    int rc = aindex_open(zip, reserved, &ix, &why);
    if (rc != 0) {
        CHECK(rc == -EIO, "%s: open rc %d", what, rc);
        printf("  %s: open fails: %s\n", what, why ? why : "");
        free(why);
        return;
    }
    const struct anode *n = aindex_lookup(ix, entry);
    CHECK(n != NULL, "%s: lookup", what);
    if (!n) {
        aindex_free(ix);
        return;
    }
    struct areader *r;
    areader_open(ix, n, &r);
    size_t len = (size_t)anode_size(n);
    unsigned char *buf = malloc(len + 1);
    ssize_t got = 0;
    size_t at = 0;
    bool failed = false;
    /* small entries: the first read must already fail (nothing served) */
    while (at < len) {
        got = areader_pread(r, buf + at, 65536, at);
        if (got < 0) {
            failed = true;
            CHECK(got == -EIO, "%s: error %zd", what, got);
            printf("  %s: pread fails at %zu: %s\n", what, at, areader_error(r));
            break;
        }
        if (got == 0)
            break;
        at += (size_t)got;
    }
    CHECK(failed, "%s: corrupt data was read without error", what);
    if (small)
        CHECK(at == 0, "%s: %zu bytes served before the error", what, at);
    /* A second attempt fails again (no stale state). */
    if (failed) {
        ssize_t again = 0;
        for (size_t o = 0; o < len && again >= 0; o += 65536)
            again = areader_pread(r, buf, 65536, o);
        CHECK(again == -EIO, "%s: second pass does not fail", what);
    }
    free(buf);
    areader_close(r);
    aindex_free(ix);
    /* The download path's one-pass check (checkpoints, then the rest). */
    if (aindex_open(zip, reserved, &ix, &why) == 0) {
        why = NULL;
        rc = aindex_build_checkpoints(ix, NULL, &why);
        if (rc == 0)
            rc = aindex_verify_rest(ix, &why);
        CHECK(rc == -EIO, "%s: build+verify_rest rc %d", what, rc);
        printf("  %s: verify_rest: %s\n", what, why ? why : "(none)");
        free(why);
        aindex_free(ix);
        char *side;
        if (asprintf(&side, "%s.ckpt", zip) > 0) {
            unlink(side);
            free(side);
        }
    }
    why = NULL;
    rc = aindex_verify_data(zip, &why);
    CHECK(rc == -EIO, "%s: verify rc %d", what, rc);
    printf("  %s: verify: %s\n", what, why ? why : "(none)");
    free(why);
}

static void test_corrupt(void)
{
    size_t small_len = 200000, big_len = (size_t)4 << 20;
    unsigned char *small = gen_csv(11, small_len), *big = gen_csv(12, big_len);
    char *zip = tpath("corrupt.zip");
    size_t len;
    unsigned char *b;

    for (int store = 0; store <= 1; store++) {
        struct wentry one = {"small.csv", T_REG, small, small_len, 1700000000, NULL};
        CHECK(write_zip(zip, &one, 1, store) == 0, "write");
        b = slurp(zip, &len);
        /* Flip a byte in the middle of the data (headers are ~100 bytes). */
        b[len / 3] ^= 0x55;
        spit(zip, b, len);
        expect_read_fails(zip, "small.csv", store ? "flipped stored" : "flipped deflate", true);
        free(b);
    }
    {
        struct wentry one = {"big.csv", T_REG, big, big_len, 1700000000, NULL};
        CHECK(write_zip(zip, &one, 1, false) == 0, "write");
        b = slurp(zip, &len);
        b[len / 2] ^= 0x10;
        spit(zip, b, len);
        expect_read_fails(zip, "big.csv", "flipped big deflate", false);
        free(b);
    }
    /* Size lies: the central directory's uncompressed size patched. */
    for (int delta = -1; delta <= 1; delta += 2) {
        for (int store = 0; store <= 1; store++) {
            struct wentry one = {"lie.csv", T_REG, small, small_len, 1700000000, NULL};
            CHECK(write_zip(zip, &one, 1, store) == 0, "write");
            b = slurp(zip, &len);
            long cd = find_sig_from_end(b, len, "PK\001\002");
            CHECK(cd > 0, "central header");
            uint32_t v = (uint32_t)(small_len + (size_t)(long)delta);
            memcpy(b + cd + 24, &v, 4); /* little-endian host */
            /* libarchive prefers the local header's size when it has one */
            uint32_t local_size;
            memcpy(&local_size, b + 22, 4);
            if (local_size != 0)
                memcpy(b + 22, &v, 4);
            spit(zip, b, len);
            char what[64];
            snprintf(what, sizeof what, "size lie %+d %s", delta, store ? "stored" : "deflate");
            expect_read_fails(zip, "lie.csv", what, true);
            free(b);
        }
    }
    unlink(zip);
    free(zip);
    free(small);
    free(big);
}

/* ---------------------------------------------- small direct entries */

/* Small stored and deflate entries are served straight from the mapping
 * (no libarchive): bytes exact at any offset, sizes 1 byte to the 1 MiB
 * limit and just past it (the libarchive path), and corruption of any of
 * them reads EIO, never different bytes. */
static void test_small_direct(void)
{
    static const size_t sizes[] = {1, 2, 100, 1024, 4096, 8191, 65536, 300000,
                                   (size_t)1 << 20, ((size_t)1 << 20) + 1};
    enum { NS = sizeof sizes / sizeof sizes[0], NFILES = 200 };
    char *zip = tpath("small.zip");
    struct wentry ents[NS + NFILES];
    unsigned char *data[NS + NFILES];
    char names[NS + NFILES][32];
    for (size_t i = 0; i < NS + NFILES; i++) {
        size_t len = i < NS ? sizes[i] : 1024 + (i * 7919) % 7168;
        data[i] = gen_csv(100 + i, len);
        if (i % 3 == 1) /* some incompressible data too */
            for (size_t k = 0; k < len; k++)
                data[i][k] = (unsigned char)(k * 2654435761u >> 13 ^ i);
        snprintf(names[i], sizeof names[i], "d%zu/f%zu.bin", i % 5, i);
        ents[i] = (struct wentry){names[i], T_REG, data[i], len, 1700000000, NULL};
    }
    for (int store = 0; store <= 1; store++) {
        CHECK(write_zip(zip, ents, NS + NFILES, store) == 0, "write");
        struct aindex *ix;
        char *why = NULL;
        int rc = aindex_open(zip, reserved, &ix, &why);
        CHECK(rc == 0, "open: %s", why ? why : "");
        free(why);
        if (rc)
            continue;
        for (size_t i = 0; i < NS + NFILES; i++) {
            const struct anode *n = aindex_lookup(ix, names[i]);
            CHECK(n && anode_size(n) == ents[i].len, "%s size", names[i]);
            if (!n)
                continue;
            CHECK(read_all_matches(ix, n, data[i], ents[i].len, 7 + i), "%s %s bytes",
                  store ? "stored" : "deflate", names[i]);
            /* Random reads, backwards, past the end, on one reader. */
            struct areader *r;
            CHECK(areader_open(ix, n, &r) == 0, "areader_open");
            unsigned char buf[600];
            uint64_t seed = 99 + i;
            for (int k = 0; k < 20; k++) {
                size_t off = (size_t)(rng_next(&seed) % (ents[i].len + 10));
                size_t ask = (size_t)(rng_next(&seed) % sizeof buf) + 1;
                ssize_t got = areader_pread(r, buf, ask, off);
                size_t want = off >= ents[i].len ? 0
                              : ents[i].len - off < ask ? ents[i].len - off : ask;
                CHECK(got == (ssize_t)want && memcmp(buf, data[i] + (want ? off : 0), want) == 0,
                      "%s random read %zu+%zu: %zd", names[i], off, ask, got);
            }
            areader_close(r);
        }
        why = NULL;
        CHECK(aindex_verify_rest(ix, &why) == 0, "verify_rest: %s", why ? why : "");
        free(why);
        aindex_free(ix);

        /* Corrupt each of a few small entries in turn: a byte of its data
         * flipped (stored: CRC mismatch; deflate: bad stream, size or CRC). */
        size_t len;
        unsigned char *orig = slurp(zip, &len);
        static const size_t victims[] = {2, 4, 5, 7, NS + 3, NS + 4};
        for (size_t v = 0; v < sizeof victims / sizeof *victims; v++) {
            size_t i = victims[v];
            /* the entry's data: find its local header by name */
            size_t nl = strlen(names[i]);
            long lh = -1;
            for (size_t p = 0; p + 30 + nl < len; p++)
                if (memcmp(orig + p, "PK\003\004", 4) == 0
                    && (size_t)(orig[p + 26] | orig[p + 27] << 8) == nl
                    && memcmp(orig + p + 30, names[i], nl) == 0) {
                    lh = (long)p;
                    break;
                }
            CHECK(lh >= 0, "local header of %s", names[i]);
            if (lh < 0)
                continue;
            size_t dstart = (size_t)lh + 30 + nl + (size_t)(orig[lh + 28] | orig[lh + 29] << 8);
            size_t csize = 0; /* the central directory record's */
            for (size_t p = len - 46 - nl; p > 0; p--)
                if (memcmp(orig + p, "PK\001\002", 4) == 0
                    && (size_t)(orig[p + 28] | orig[p + 29] << 8) == nl
                    && memcmp(orig + p + 46, names[i], nl) == 0) {
                    csize = (size_t)(orig[p + 20] | orig[p + 21] << 8 | orig[p + 22] << 16
                                     | (size_t)orig[p + 23] << 24);
                    break;
                }
            CHECK(csize > 0, "central record of %s", names[i]);
            unsigned char *b = malloc(len);
            memcpy(b, orig, len);
            b[dstart + csize / 2] ^= 0x20;
            spit(zip, b, len);
            free(b);
            if ((rc = aindex_open(zip, reserved, &ix, &why)) != 0) {
                free(why);
                why = NULL;
                continue;
            }
            const struct anode *n = aindex_lookup(ix, names[i]);
            CHECK(n != NULL, "lookup %s", names[i]);
            if (n) {
                struct areader *r;
                areader_open(ix, n, &r);
                unsigned char *buf = malloc(ents[i].len);
                ssize_t got = areader_pread(r, buf, ents[i].len, 0);
                bool same = got == (ssize_t)ents[i].len && memcmp(buf, data[i], ents[i].len) == 0;
                CHECK(got == -EIO || same, "corrupt %s %s: read %zd, wrong bytes",
                      store ? "stored" : "deflate", names[i], got);
                CHECK(got == -EIO, "corrupt %s %s: not detected (%zd)",
                      store ? "stored" : "deflate", names[i], got);
                got = areader_pread(r, buf, 1, ents[i].len - 1);
                CHECK(got == -EIO, "corrupt %s %s: second read %zd", store ? "stored" : "deflate",
                      names[i], got);
                free(buf);
                areader_close(r);
                /* Neighbours are unaffected. */
                const struct anode *o = aindex_lookup(ix, names[NS + 10]);
                CHECK(o && read_all_matches(ix, o, data[NS + 10], ents[NS + 10].len, 3),
                      "neighbour of corrupt %s", names[i]);
            }
            aindex_free(ix);
        }
        free(orig);
    }
    unlink(zip);
    free(zip);
    for (size_t i = 0; i < NS + NFILES; i++)
        free(data[i]);
}

/* ------------------------------------------------- download-path check */

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* What the fetcher does: index the .part under its final name, build the
 * checkpoints (sidecar straight to "<final>.ckpt"), verify the rest,
 * rename, and keep using the same index. */
static void test_verify_rest(void)
{
    size_t big_len = (size_t)5 << 20, mid_len = (size_t)2 << 20;
    unsigned char *big = gen_csv(21, big_len), *mid = gen_csv(22, mid_len);
    unsigned char *small = gen_csv(23, 5000);
    const struct wentry ents[] = {
        {"d/small.csv", T_REG, small, 5000, 1700000000, NULL},
        {"d/mid.csv", T_REG, mid, mid_len, 1700000000, NULL},
        {"big.csv", T_REG, big, big_len, 1700000000, NULL},
        {"empty.csv", T_REG, "", 0, 1700000000, NULL},
        {"ln", T_LNK, NULL, 0, 1700000000, "big.csv"},
        {"hl.csv", T_HARD, small, 5000, 1700000000, "d/small.csv"},
    };
    const size_t nents = sizeof ents / sizeof ents[0];
    char *part = tpath(".job.zip.part"), *final = tpath("job.zip");
    char *side = tpath("job.zip.ckpt"), *part_side = tpath(".job.zip.part.ckpt");
    for (int store = 0; store <= 1; store++) {
        CHECK(write_zip(part, ents, nents, store) == 0, "write part");
        struct aindex *ix = NULL;
        char *why = NULL;
        int rc = aindex_open_as(part, final, reserved, &ix, &why);
        CHECK(rc == 0, "open_as: %s", why ? why : "");
        free(why);
        if (rc)
            continue;
        why = NULL;
        double t0 = now_s();
        rc = aindex_build_checkpoints(ix, NULL, &why);
        CHECK(rc == 0, "build: %s", why ? why : "");
        free(why);
        why = NULL;
        rc = aindex_verify_rest(ix, &why);
        CHECK(rc == 0, "verify_rest: %s", why ? why : "");
        free(why);
        printf("  verify (store=%d): %.1f ms\n", store, (now_s() - t0) * 1e3);
        struct aindex_ckpt_stats cs;
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.entries == (store ? 0u : 1u) && cs.ready == cs.entries
                  && cs.built == cs.entries, "store=%d: ckpt %u/%u built %u", store,
              cs.ready, cs.entries, cs.built);
        CHECK(file_exists(side) == !store, "sidecar at the final name");
        CHECK(!file_exists(part_side), "no sidecar at the .part name");
        CHECK(rename(part, final) == 0, "rename");
        /* The same index serves after the rename, reads never rebuild. */
        const struct expect files[] = {
            {"d/small.csv", small, 5000}, {"d/mid.csv", mid, mid_len},
            {"big.csv", big, big_len}, {"empty.csv", (const unsigned char *)"", 0},
            {"ln", (const unsigned char *)"big.csv", 7}, {"hl.csv", small, 5000},
        };
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            const struct anode *n = aindex_lookup(ix, files[i].path);
            CHECK(n && read_all_matches(ix, n, files[i].data, files[i].len, i + 5),
                  "after rename: %s", files[i].path);
        }
        aindex_checkpoint_stats(ix, &cs);
        CHECK(cs.built == cs.entries, "no rebuild after the rename (%u)", cs.built);
        aindex_free(ix);
        /* A remount loads the sidecar; verify_rest checks its spans. */
        why = NULL;
        rc = aindex_open(final, reserved, &ix, &why);
        CHECK(rc == 0, "reopen: %s", why ? why : "");
        free(why);
        if (rc == 0) {
            aindex_checkpoint_stats(ix, &cs);
            CHECK(cs.loaded == cs.entries, "loaded %u of %u", cs.loaded, cs.entries);
            why = NULL;
            CHECK(aindex_build_checkpoints(ix, NULL, &why) == 0, "build (nothing to do)");
            free(why);
            why = NULL;
            CHECK(aindex_verify_rest(ix, &why) == 0, "verify_rest (loaded): %s",
                  why ? why : "");
            free(why);
            aindex_checkpoint_stats(ix, &cs);
            CHECK(cs.built == 0, "loaded points rebuilt (%u)", cs.built);
            const struct anode *n = aindex_lookup(ix, "big.csv");
            CHECK(n && read_all_matches(ix, n, big, big_len, 3), "big after reopen");
            aindex_free(ix);
        }
        if (!store) {
            /* The archive changed in place (size and mtime kept): the
             * loaded points do not check out, the rebuild finds the damage. */
            struct stat st;
            stat(final, &st);
            size_t len;
            unsigned char *b = slurp(final, &len);
            const struct anode *n = NULL;
            (void)n;
            b[len / 2] ^= 0x20; /* inside big.csv's data (most of the zip) */
            spit(final, b, len);
            free(b);
            struct timespec ts[2] = {st.st_atim, st.st_mtim};
            utimensat(AT_FDCWD, final, ts, 0);
            why = NULL;
            rc = aindex_open(final, reserved, &ix, &why);
            free(why);
            if (rc == 0) {
                aindex_checkpoint_stats(ix, &cs);
                CHECK(cs.loaded == 1, "changed zip: sidecar loaded (%u)", cs.loaded);
                why = NULL;
                rc = aindex_verify_rest(ix, &why);
                CHECK(rc == -EIO, "changed zip: verify_rest rc %d", rc);
                printf("  changed zip: %s\n", why ? why : "(none)");
                free(why);
                aindex_free(ix);
            }
        }
        unlink(final);
        unlink(side);
    }
    free(part);
    free(final);
    free(side);
    free(part_side);
    free(big);
    free(mid);
    free(small);
}

/* ------------------------------------------------------------- timing */

/* ------------------------------------------------------------ read-ahead */

/* Reads [0, len) sequentially in chunks of `chunk`; true if every byte
 * equals want.  *err: first error (0 none), *at: where. */
static bool seq_read(struct areader *r, const unsigned char *want, size_t len, size_t chunk,
                     ssize_t *err, size_t *at)
{
    unsigned char *buf = malloc(chunk);
    bool ok = true;
    *err = 0;
    *at = 0;
    while (*at < len) {
        ssize_t got = areader_pread(r, buf, chunk, *at);
        if (got <= 0) {
            *err = got < 0 ? got : -1;
            ok = false;
            break;
        }
        if (memcmp(buf, want + *at, (size_t)got) != 0) {
            ok = false;
            break;
        }
        *at += (size_t)got;
    }
    free(buf);
    return ok;
}

struct ra_arg {
    const struct aindex *ix;
    const struct anode *n;
    const unsigned char *want;
    size_t len, chunk;
    int bad;
};

static void *ra_thread(void *p)
{
    struct ra_arg *a = p;
    for (int pass = 0; pass < 2; pass++) {
        struct areader *r;
        if (areader_open(a->ix, a->n, &r) != 0) {
            a->bad++;
            continue;
        }
        ssize_t err;
        size_t at;
        if (!seq_read(r, a->want, a->len, a->chunk, &err, &at) || at != a->len)
            a->bad++;
        areader_close(r);
    }
    return NULL;
}

static void test_readahead(void)
{
    size_t len = (size_t)12 << 20;
    unsigned char *data = gen_csv(21, len);
    char *zip = tpath("ra.zip");
    char *side = tpath("ra.zip.ckpt");
    struct wentry one = {"big.csv", T_REG, data, len, 1700000000, NULL};
    CHECK(write_zip(zip, &one, 1, false) == 0, "write ra.zip");
    struct aindex *ix;
    char *why = NULL;
    int rc = aindex_open(zip, reserved, &ix, &why);
    CHECK(rc == 0, "open ra.zip: %s", why ? why : "");
    free(why);
    if (rc)
        goto out;
    why = NULL;
    CHECK(aindex_build_checkpoints(ix, NULL, &why) == 0, "ra build: %s", why ? why : "");
    free(why);
    const struct anode *n = aindex_lookup(ix, "big.csv");
    CHECK(n && anode_size(n) == len, "ra lookup");
    if (!n) {
        aindex_free(ix);
        goto out;
    }

    /* Sequential reads of several sizes: exact bytes, read-ahead used. */
    static const size_t chunks[] = {131072, 4096, 100003, (size_t)1 << 20, 700001};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        struct aindex_ra_stats before, after;
        aindex_readahead_stats(&before);
        struct areader *r;
        areader_open(ix, n, &r);
        ssize_t err;
        size_t at;
        bool ok = seq_read(r, data, len, chunks[c], &err, &at);
        CHECK(ok && at == len, "ra chunk %zu: bad bytes or error %zd at %zu (%s)", chunks[c],
              err, at, areader_error(r) ? areader_error(r) : "");
        /* Again from the start, then past the end. */
        unsigned char b[64];
        CHECK(areader_pread(r, b, sizeof b, 0) == (ssize_t)sizeof b
              && memcmp(b, data, sizeof b) == 0, "ra chunk %zu: reread start", chunks[c]);
        CHECK(areader_pread(r, b, sizeof b, len) == 0, "ra chunk %zu: EOF", chunks[c]);
        areader_close(r);
        aindex_readahead_stats(&after);
        CHECK(after.reads_served > before.reads_served
              && after.spans_inflated > before.spans_inflated
              && after.spans_failed == before.spans_failed,
              "ra chunk %zu: read-ahead not used (served %ju, spans %ju, failed %ju)", chunks[c],
              (uintmax_t)(after.reads_served - before.reads_served),
              (uintmax_t)(after.spans_inflated - before.spans_inflated),
              (uintmax_t)(after.spans_failed - before.spans_failed));
    }

    /* Sequential, then a jump back and forward: still exact. */
    {
        struct areader *r;
        areader_open(ix, n, &r);
        unsigned char *buf = malloc(131072);
        uint64_t offs[] = {0, 131072, 262144, 393216, 524288, 100, 5000000, 5131072, 5262144,
                           5393216, 5524288, 5655360, 262144, len - 1000, len - 131072};
        for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
            size_t want = len - offs[i] < 131072 ? (size_t)(len - offs[i]) : 131072;
            ssize_t got = areader_pread(r, buf, 131072, offs[i]);
            CHECK(got == (ssize_t)want && memcmp(buf, data + offs[i], want) == 0,
                  "ra jump read %zu at %ju", i, (uintmax_t)offs[i]);
        }
        free(buf);
        areader_close(r);
    }

    /* Readers closed while their jobs are queued or running (ASan: no
     * use after free), the index freed right after the last close. */
    for (int i = 0; i < 40; i++) {
        struct areader *r;
        areader_open(ix, n, &r);
        unsigned char *buf = malloc(131072);
        for (int j = 0; j < 2 + i % 5; j++)
            areader_pread(r, buf, 131072, (uint64_t)j * 131072);
        areader_close(r);
        free(buf);
    }

    /* Concurrent sequential readers of the same entry. */
    {
        pthread_t th[4];
        struct ra_arg a[4];
        for (int i = 0; i < 4; i++) {
            a[i] = (struct ra_arg){ix, n, data, len, chunks[i], 0};
            pthread_create(&th[i], NULL, ra_thread, &a[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK(a[i].bad == 0, "ra thread %d: %d bad passes", i, a[i].bad);
        }
    }
    aindex_free(ix);
    /* The pool stops and starts again. */
    aindex_shutdown();

    /* Archive bytes changed since the sidecar was built (same size and
     * mtime, so the sidecar loads): the read that reaches the damaged span
     * fails with EIO, every byte served before it is right. */
    {
        size_t zlen;
        unsigned char *b = slurp(zip, &zlen);
        struct stat st;
        stat(zip, &st);
        size_t data_at = 30 + strlen("big.csv");
        size_t flip = data_at + (zlen - data_at) * 3 / 4;
        b[flip] ^= 0x20;
        spit(zip, b, zlen);
        free(b);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(AT_FDCWD, zip, ts, 0);
        why = NULL;
        rc = aindex_open(zip, reserved, &ix, &why);
        CHECK(rc == 0, "open damaged ra.zip: %s", why ? why : "");
        free(why);
        if (rc == 0) {
            struct aindex_ckpt_stats cs;
            aindex_checkpoint_stats(ix, &cs);
            CHECK(cs.loaded == 1, "damaged ra.zip: sidecar loaded (%u)", cs.loaded);
            n = aindex_lookup(ix, "big.csv");
            for (int pass = 0; pass < 2 && n; pass++) {
                struct areader *r;
                areader_open(ix, n, &r);
                ssize_t err;
                size_t at;
                struct aindex_ra_stats before, after;
                aindex_readahead_stats(&before);
                bool ok = seq_read(r, data, len, 131072, &err, &at);
                aindex_readahead_stats(&after);
                CHECK(!ok && err == -EIO, "damaged span pass %d: err %zd at %zu", pass, err, at);
                CHECK(at < len, "damaged span pass %d: whole entry served", pass);
                if (pass == 0)
                    CHECK(at > len / 4 && after.spans_failed > before.spans_failed,
                          "damaged span: failed at %zu, %ju failed jobs", at,
                          (uintmax_t)(after.spans_failed - before.spans_failed));
                printf("  damaged span pass %d: EIO at %zu: %s\n", pass, at,
                       areader_error(r) ? areader_error(r) : "");
                areader_close(r);
            }
            aindex_free(ix);
        }
    }
out:
    unlink(side);
    unlink(zip);
    free(side);
    free(zip);
    free(data);
}

static void test_timing(void)
{
    enum { N = 10000 };
    struct wentry *ents = calloc(N, sizeof *ents);
    char (*names)[40] = calloc(N, 40);
    unsigned char *pool = gen_csv(5, 8192 + 40 * N);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 40, "dir%02d/file%05d.csv", i % 50, i);
        ents[i] = (struct wentry){names[i], T_REG, pool + (size_t)i * 40,
                                  1024 + (size_t)(i * 7919) % 7168, 1700000000, NULL};
    }
    char *zip = tpath("many.zip");
    CHECK(write_zip(zip, ents, N, false) == 0, "write many.zip");
    struct aindex *ix = NULL;
    char *why = NULL;
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        int rc = aindex_open(zip, reserved, &ix, &why);
        double t = now_s() - t0;
        CHECK(rc == 0, "open many.zip: %s", why ? why : "");
        free(why);
        why = NULL;
        if (rc)
            break;
        if (t < best)
            best = t;
        if (rep < 4)
            aindex_free(ix);
    }
    printf("TIMING open of a %d-entry archive: %.2f ms (best of 5, warm)\n", N, best * 1e3);
    if (ix) {
        CHECK(aindex_entry_count(ix) == N + 50, "entry count %ju",
              (uintmax_t)aindex_entry_count(ix));
        char last[40];
        snprintf(last, sizeof last, "dir%02d/file%05d.csv", (N - 1) % 50, N - 1);
        unsigned char buf[4096];
        double worst = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            const struct anode *n = aindex_lookup(ix, last);
            struct areader *r;
            areader_open(ix, n, &r);
            ssize_t got = areader_pread(r, buf, sizeof buf, 0);
            double t = now_s() - t0;
            CHECK(got > 0 && memcmp(buf, pool + (size_t)(N - 1) * 40, (size_t)got) == 0,
                  "last entry bytes");
            areader_close(r);
            if (t > worst)
                worst = t;
        }
        printf("TIMING first byte of the last entry: %.3f ms (worst of 5)\n", worst * 1e3);
        /* Read every file whole, in archive order (what cp -r does). */
        double t0 = now_s();
        uint64_t total = 0;
        unsigned char *fb = malloc(131072);
        for (int i = 0; i < N; i++) {
            const struct anode *n = aindex_lookup(ix, names[i]);
            struct areader *r;
            areader_open(ix, n, &r);
            ssize_t got;
            uint64_t off = 0;
            while ((got = areader_pread(r, fb, 131072, off)) > 0)
                off += (uint64_t)got;
            total += off;
            CHECK(got == 0 && off == anode_size(n), "read %s", names[i]);
            areader_close(r);
        }
        free(fb);
        printf("TIMING read all %d files: %.1f ms (%.1f MB)\n", N, (now_s() - t0) * 1e3,
               total / 1e6);
        aindex_free(ix);
    }
    unlink(zip);
    free(zip);
    free(ents);
    free(names);
    free(pool);

    /* One big entry: sequential throughput and random 4 KiB reads. */
    const char *env = getenv("AIDX_BIG_MIB");
    size_t mib = env ? (size_t)atoi(env) : 64;
    if (mib == 0)
        return;
    size_t big_len = mib << 20;
    unsigned char *big = gen_csv(3, big_len);
    zip = tpath("bigone.zip");
    struct wentry one = {"events.csv", T_REG, big, big_len, 1700000000, NULL};
    double t0 = now_s();
    CHECK(write_zip(zip, &one, 1, false) == 0, "write bigone.zip");
    struct stat st;
    stat(zip, &st);
    printf("TIMING (setup) wrote %zu MiB entry, zip %.1f MiB, in %.2f s\n", mib,
           st.st_size / 1048576.0, now_s() - t0);
    int rc = aindex_open(zip, reserved, &ix, &why);
    CHECK(rc == 0, "open bigone: %s", why ? why : "");
    free(why);
    if (rc == 0) {
        const struct anode *n = aindex_lookup(ix, "events.csv");
        unsigned char *buf = malloc(131072);
        for (int rep = 0; rep < 2; rep++) {
            struct areader *r;
            areader_open(ix, n, &r);
            t0 = now_s();
            uint64_t off = 0;
            ssize_t got;
            bool same = true;
            while ((got = areader_pread(r, buf, 131072, off)) > 0) {
                same = same && memcmp(buf, big + off, (size_t)got) == 0;
                off += (uint64_t)got;
            }
            double t = now_s() - t0;
            CHECK(got == 0 && off == big_len && same, "sequential read of big entry");
            printf("TIMING sequential read of %zu MiB in 128 KiB preads: %.3f s, %.0f MB/s\n",
                   mib, t, big_len / t / 1e6);
            areader_close(r);
        }
        /* Random 4 KiB reads on one reader: each backward jump beyond the
         * window restarts decompression from the entry's start. */
        struct areader *r;
        areader_open(ix, n, &r);
        uint64_t seed = 77;
        double worst = 0;
        t0 = now_s();
        enum { NRANDOM = 50 };
        for (int i = 0; i < NRANDOM; i++) {
            uint64_t off = rng_next(&seed) % (big_len - 4096);
            double t1 = now_s();
            ssize_t got = areader_pread(r, buf, 4096, off);
            double t = now_s() - t1;
            if (t > worst)
                worst = t;
            CHECK(got == 4096 && memcmp(buf, big + off, 4096) == 0, "random 4K @ %ju",
                  (uintmax_t)off);
        }
        double total = now_s() - t0;
        printf("TIMING %d random 4 KiB reads in %zu MiB: %.3f s total, mean %.1f ms, worst %.1f ms\n",
               NRANDOM, mib, total, total / NRANDOM * 1e3, worst * 1e3);
        areader_close(r);
        free(buf);
        aindex_free(ix);
    }
    unlink(zip);
    free(zip);
    free(big);
}

/* ------------------------------------------------- the saved index (.idx) */

/* Everything a listing shows, as text: names, kinds, sizes, times. */
static void describe_tree(const struct aindex *ix, const struct anode *n, const char *prefix,
                          FILE *out)
{
    fprintf(out, "%s|%d|%ju|%jd|%zu\n", prefix, anode_is_dir(n), (uintmax_t)anode_size(n),
            (intmax_t)anode_mtime(n), anode_child_count(n));
    for (size_t i = 0; i < anode_child_count(n); i++) {
        const struct anode *c = anode_child(ix, n, i);
        char *p;
        if (asprintf(&p, "%s/%s", prefix, anode_name(ix, c)) < 0)
            abort();
        describe_tree(ix, c, p, out);
        free(p);
    }
}

static char *tree_text(const struct aindex *ix)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    describe_tree(ix, aindex_root(ix), "", f);
    fprintf(f, "entries %ju total %ju\n", (uintmax_t)aindex_entry_count(ix),
            (uintmax_t)aindex_total_size(ix));
    fclose(f);
    return buf;
}

/* Opens zip, expects the given source of the tree, compares the tree with
 * want and reads every expected file byte for byte. */
static void check_open(const char *zip, const char *const *res, int want_sidecar,
                       const char *want, const struct expect *files, size_t nfiles,
                       const char *what)
{
    struct aindex *ix;
    char *why = NULL;
    int rc = aindex_open(zip, res, &ix, &why);
    CHECK(rc == 0, "%s: open: %s", what, why ? why : "?");
    free(why);
    if (rc)
        return;
    CHECK(aindex_from_sidecar(ix) == want_sidecar, "%s: from sidecar %d, want %d", what,
          aindex_from_sidecar(ix), want_sidecar);
    char *got = tree_text(ix);
    CHECK(strcmp(got, want) == 0, "%s: tree differs:\n%s\nwant:\n%s", what, got, want);
    free(got);
    for (size_t i = 0; i < nfiles; i++) {
        const struct anode *n = aindex_lookup(ix, files[i].path);
        CHECK(n && read_all_matches(ix, n, files[i].data, files[i].len, 7 + i),
              "%s: %s reads wrong", what, files[i].path);
    }
    if (!aindex_from_sidecar(ix)) {
        why = NULL;
        CHECK(aindex_save(ix, res, &why) == 0, "%s: save: %s", what, why ? why : "?");
        free(why);
    }
    aindex_free(ix);
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    /* CRC-32 (zip/gzip), bitwise: the test must not share the code under test. */
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static void test_saved_index(void)
{
    size_t big_len = (size_t)5 << 20;
    unsigned char *big = gen_csv(31, big_len), *mid = gen_csv(32, 300000);
    const time_t T = 1700000000;
    const struct wentry ents[] = {
        {"dir/", T_DIR, NULL, 0, T, NULL},
        {"dir/big.csv", T_REG, big, big_len, T + 1, NULL},
        {"dir/mid.csv", T_REG, mid, 300000, T + 2, NULL},
        {"small.txt", T_REG, "hello\n", 6, T + 3, NULL},
        {"status", T_REG, "not the control file\n", 21, T + 4, NULL},
        {"link", T_LNK, NULL, 0, T + 5, "dir/mid.csv"},
        {"deep/a/b/c/d.txt", T_REG, "d\n", 2, T + 6, NULL},
        {"../escape.txt", T_REG, "x\n", 2, T + 7, NULL},
    };
    const struct expect files[] = {
        {"dir/big.csv", big, big_len}, {"dir/mid.csv", mid, 300000},
        {"small.txt", (const unsigned char *)"hello\n", 6},
        {"_status", (const unsigned char *)"not the control file\n", 21},
        {"link", (const unsigned char *)"dir/mid.csv", 11},
        {"deep/a/b/c/d.txt", (const unsigned char *)"d\n", 2},
    };
    size_t nfiles = sizeof files / sizeof files[0];
    char *zip = tpath("saved.zip"), *idx = tpath("saved.zip.idx");
    CHECK(write_zip(zip, ents, sizeof ents / sizeof ents[0], false) == 0, "write saved.zip");

    struct aindex *ix;
    char *why = NULL;
    CHECK(aindex_open(zip, reserved, &ix, &why) == 0, "open: %s", why ? why : "?");
    free(why);
    char *want = tree_text(ix);
    aindex_free(ix);
    CHECK(strstr(want, "/_status|0|21|") != NULL, "reserved name not renamed:\n%s", want);

    /* First open walks the archive (and saves), the next ones load. */
    check_open(zip, reserved, 0, want, files, nfiles, "first");
    check_open(zip, reserved, 1, want, files, nfiles, "loaded");
    check_open(zip, reserved, 1, want, files, nfiles, "loaded again");

    size_t len;
    unsigned char *good = slurp(idx, &len);
    CHECK(good && len > 176, "idx file missing or short (%zu)", len);
    if (!good || len <= 176)
        goto out;

    /* A flipped byte anywhere: refused, rebuilt, saved again. */
    static const size_t flips[] = {0, 9, 30, 100, 200, 500};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        size_t at = flips[i] < len ? flips[i] : len - 1;
        unsigned char *bad = malloc(len);
        memcpy(bad, good, len);
        bad[at] ^= 0x40;
        spit(idx, bad, len);
        free(bad);
        check_open(zip, reserved, 0, want, files, nfiles, "flipped byte");
    }
    spit(idx, good, len / 2);
    check_open(zip, reserved, 0, want, files, nfiles, "truncated");
    spit(idx, "", 0);
    check_open(zip, reserved, 0, want, files, nfiles, "empty");

    /* CRCs right but a node pointing outside the table: refused. */
    {
        unsigned char *bad = malloc(len);
        memcpy(bad, good, len);
        uint64_t nnodes, arena_len;
        memcpy(&nnodes, bad + 64, 8);
        memcpy(&arena_len, bad + 72, 8);
        /* struct idx_node: size, data, name_off, mtime, first_child @32 */
        uint32_t far = (uint32_t)nnodes + 5;
        memcpy(bad + 192 + 32, &far, 4);
        uint32_t pc = crc32_of(bad + 192, len - 192);
        memcpy(bad + 184, &pc, 4);
        memset(bad + 188, 0, 4);
        uint32_t hc = crc32_of(bad, 192);
        memcpy(bad + 188, &hc, 4);
        spit(idx, bad, len);
        free(bad);
        CHECK(192 + nnodes * 48 + arena_len == len, "idx layout changed: update this test");
        check_open(zip, reserved, 0, want, files, nfiles, "node out of range");
    }

    /* Other reserved names: the tree differs, so the sidecar must not serve. */
    static const char *const other[] = {"status", NULL};
    struct aindex *ox;
    CHECK(aindex_open(zip, other, &ox, &why) == 0 && !aindex_from_sidecar(ox),
          "sidecar served for other reserved names");
    if (ox)
        aindex_free(ox);
    check_open(zip, reserved, 1, want, files, nfiles, "reserved unchanged");

    /* The archive changed (new mtime): refused. */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {T, 0}};
    CHECK(utimensat(AT_FDCWD, zip, ts, 0) == 0, "utimensat");
    check_open(zip, reserved, 0, want, files, nfiles, "archive touched");
    check_open(zip, reserved, 1, want, files, nfiles, "after touch");
out:
    free(good);
    free(want);
    unlink(zip);
    unlink(idx);
    free(zip);
    free(idx);
    free(big);
    free(mid);
}

/* Checkpoint sidecars the readers of large entries leave. */
static bool is_sidecar(const char *name)
{
    size_t l = strlen(name);
    return (l > 5 && strcmp(name + l - 5, ".ckpt") == 0)
           || (l > 4 && strcmp(name + l - 4, ".idx") == 0);
}

int main(void)
{
    /* With TZ unset glibc re-stats /etc/localtime on every mktime(), which
     * libarchive calls per zip entry: the filesystem's main() pins TZ the
     * same way before starting threads. */
    setenv("TZ", ":/etc/localtime", 0);
    if (scratch_make("aindex-test-") < 0)
        return 1;
    test_tree_and_reads();
    test_threads();
    test_corrupt();
    test_small_direct();
    test_verify_rest();
    test_readahead();
    test_timing();
    test_saved_index();
    free(big_main);
    scratch_rmdir(is_sidecar);
    return check_summary();
}
