/*
 * zran: access points into a raw deflate stream, and decoders resumed at
 * them.  See zran.h.
 */
#include "zran.h"
#include "why.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifdef HAVE_ISAL
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#endif

/* Input is handed to the decoders in pieces their 32-bit counters hold. */
#define IN_CHUNK ((uint64_t)1 << 30)
/* Input step of a build that reports its progress. */
#define BUILD_IN_STEP ((uint64_t)2 << 20)
/* Output buffer of the build: history (32 KiB) plus room to inflate into. */
#define BUILD_OUT ((size_t)1 << 20)

static enum zran_backend default_backend = -1;

int zran_have_isal(void)
{
#ifdef HAVE_ISAL
    return 1;
#else
    return 0;
#endif
}

enum zran_backend zran_default_backend(void)
{
    enum zran_backend b = __atomic_load_n(&default_backend, __ATOMIC_RELAXED);
    if ((int)b >= 0)
        return b;
    const char *env = getenv("HCX_INFLATE");
    b = zran_have_isal() && !(env && strcmp(env, "zlib") == 0) ? ZRAN_ISAL : ZRAN_ZLIB;
    __atomic_store_n(&default_backend, b, __ATOMIC_RELAXED);
    return b;
}

int zran_set_backend(enum zran_backend b)
{
    if (b == ZRAN_ISAL && !zran_have_isal())
        return -1;
    __atomic_store_n(&default_backend, b, __ATOMIC_RELAXED);
    return 0;
}

uint32_t zran_crc32(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t k = n > IN_CHUNK ? (size_t)IN_CHUNK : n;
#ifdef HAVE_ISAL
        crc = crc32_gzip_refl(crc, p, k);
#else
        crc = (uint32_t)crc32(crc, p, (uInt)k);
#endif
        p += k;
        n -= k;
    }
    return crc;
}

/* ---------------------------------------------------------------- build */

int zran_build(const unsigned char *in, uint64_t in_len, uint64_t out_size,
               uint32_t crc, uint64_t span, zran_point_fn fn, void *ctx,
               uint64_t *stream_len, char **why)
{
    return zran_build_consumed(in, in_len, out_size, crc, span, fn, NULL, ctx, stream_len,
                               why);
}

static inline uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

int zran_gzip_header(const unsigned char *m, uint64_t len, uint64_t *data, char **why)
{
    if (len < 10) {
        set_why(why, "gzip header truncated (%ju bytes)", (uintmax_t)len);
        return -EIO;
    }
    if (m[0] != 0x1f || m[1] != 0x8b) {
        set_why(why, "no gzip magic");
        return -EIO;
    }
    if (m[2] != 8) {
        set_why(why, "gzip compression method %u (only 8, deflate, exists)", m[2]);
        return -EIO;
    }
    unsigned flg = m[3];
    if (flg & 0xE0) {
        set_why(why, "gzip header has reserved flags set (0x%02x)", flg);
        return -EIO;
    }
    uint64_t p = 10;
    if (flg & 4) { /* FEXTRA */
        if (len - p < 2 || len - p - 2 < rd16(m + p)) {
            set_why(why, "gzip header truncated in its extra field");
            return -EIO;
        }
        p += 2 + (uint64_t)rd16(m + p);
    }
    for (unsigned bit = 8; bit <= 16; bit <<= 1) { /* FNAME, FCOMMENT */
        if (!(flg & bit))
            continue;
        const unsigned char *z = NULL;
        for (uint64_t at = p; at < len && !z;) { /* memchr in pieces a size_t holds */
            uint64_t k = len - at > IN_CHUNK ? IN_CHUNK : len - at;
            z = memchr(m + at, 0, (size_t)k);
            at += k;
        }
        if (!z) {
            set_why(why, "gzip header truncated in its %s",
                    bit == 8 ? "file name" : "comment");
            return -EIO;
        }
        p = (uint64_t)(z - m) + 1;
    }
    if (flg & 2) { /* FHCRC: low 16 bits of the CRC-32 of the header before it */
        if (len - p < 2) {
            set_why(why, "gzip header truncated in its CRC");
            return -EIO;
        }
        uint32_t c = zran_crc32(0, m, (size_t)p) & 0xFFFFu;
        if (c != rd16(m + p)) {
            set_why(why, "gzip header CRC mismatch (header %04x, stored %04x)", c,
                    rd16(m + p));
            return -EIO;
        }
        p += 2;
    }
    if (p >= len) {
        set_why(why, "gzip data ends after a member header");
        return -EIO;
    }
    *data = p;
    return 0;
}

/* After a gzip member's deflate data ending at in[end]: its trailer (8
 * bytes; checked against the member's crc and size when check), then
 * either the end of in (0) or another member, whose deflate data starts at
 * *next (1); else -EIO with *why. */
static int member_next(const unsigned char *in, uint64_t in_len, uint64_t end, bool check,
                       uint32_t crc, uint64_t size, uint64_t *next, char **why)
{
    if (end > in_len || in_len - end < 8) {
        set_why(why, "gzip trailer truncated (%ju of 8 bytes)",
                (uintmax_t)(end > in_len ? 0 : in_len - end));
        return -EIO;
    }
    if (check && rd32(in + end) != crc) {
        set_why(why, "gzip CRC mismatch (data %08x, trailer %08x)", crc, rd32(in + end));
        return -EIO;
    }
    if (check && rd32(in + end + 4) != (uint32_t)size) {
        set_why(why,
                "gzip ISIZE %u does not match the %ju bytes inflated (mod 2^32: %u)",
                rd32(in + end + 4), (uintmax_t)size, (uint32_t)size);
        return -EIO;
    }
    uint64_t h = end + 8;
    if (h == in_len)
        return 0;
    if (in_len - h < 2 || in[h] != 0x1f || in[h + 1] != 0x8b) {
        set_why(why, "%ju bytes of trailing garbage after the gzip data",
                (uintmax_t)(in_len - h));
        return -EIO;
    }
    uint64_t d;
    char *herr = NULL;
    if (zran_gzip_header(in + h, in_len - h, &d, &herr)) {
        set_why(why, "gzip member at +%ju: %s", (uintmax_t)h, herr ? herr : "bad header");
        free(herr);
        return -EIO;
    }
    *next = h + d;
    return 1;
}

/* known: out_size and crc are checked; else they are measured (out_size
 * is only the most output allowed) and reported through *got_size and
 * *got_crc (*got_size also on failure: the output produced until then).
 * gzip: in holds gzip members from the first one's deflate data on (see
 * zran_build_gzip). */
static int build_core(const unsigned char *in, uint64_t in_len, uint64_t out_size,
                      uint32_t crc, bool known, bool gzip, uint64_t span, zran_point_fn fn,
                      zran_consumed_fn consumed, void *ctx, uint64_t *stream_len,
                      uint64_t *got_size, uint32_t *got_crc, char **why)
{
    uint64_t step = consumed ? BUILD_IN_STEP : IN_CHUNK;
    z_stream s;
    memset(&s, 0, sizeof s);
    unsigned char *buf = malloc(BUILD_OUT);
    if (!buf || inflateInit2(&s, -15) != Z_OK) {
        free(buf);
        set_why(why, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    size_t pos = 0;          /* bytes in buf: retained history + new output */
    uint64_t total = 0;      /* output so far */
    uint64_t fed = 0;        /* input handed to zlib so far */
    uint64_t last = 0;       /* output offset of the last point */
    uint32_t c = 0;
    uint32_t mc = 0;         /* gzip: CRC-32 of this member's output */
    uint64_t mstart = 0;     /* gzip: output offset where this member starts */
    uint64_t end = 0;        /* end of the (last member's) deflate data */
    struct zran_point p = {0, 0};
    if ((rc = fn(ctx, &p, buf, 0)))
        goto out;
    for (;;) {
        if (s.avail_in == 0 && fed < in_len) {
            if (consumed && fed)
                consumed(ctx, fed); /* zlib keeps no pointer into its input */
            uint64_t k = in_len - fed > step ? step : in_len - fed;
            s.next_in = (unsigned char *)(uintptr_t)(in + fed);
            s.avail_in = (uInt)k;
            fed += k;
        }
        if (pos == BUILD_OUT) {
            memmove(buf, buf + pos - ZRAN_WINDOW, ZRAN_WINDOW);
            pos = ZRAN_WINDOW;
        }
        s.next_out = buf + pos;
        s.avail_out = (uInt)(BUILD_OUT - pos);
        int ret = inflate(&s, Z_BLOCK);
        size_t got = BUILD_OUT - pos - s.avail_out;
        if (got) {
            if (gzip)
                mc = zran_crc32(mc, buf + pos, got);
            c = zran_crc32(c, buf + pos, got);
            pos += got;
            total += got;
            if (total > out_size) {
                set_why(why, known ? "deflate data longer than the declared %ju bytes"
                                            : "deflate data longer than %ju bytes",
                        (uintmax_t)out_size);
                rc = -EIO;
                goto out;
            }
        }
        if (ret == Z_STREAM_END) {
            end = fed - s.avail_in;
            if (!gzip)
                break;
            uint64_t next;
            int m = member_next(in, in_len, end, true, mc, total - mstart, &next, why);
            if (m < 0) {
                rc = -EIO;
                goto out;
            }
            if (m == 0)
                break;
            /* Another member: its deflate data continues the output. */
            if (inflateReset(&s) != Z_OK) {
                set_why(why, "cannot reset inflate");
                rc = -EIO;
                goto out;
            }
            mc = 0;
            mstart = total;
            fed = next;
            s.avail_in = 0;
            continue;
        }
        if (ret == Z_BUF_ERROR && s.avail_in == 0 && fed == in_len) {
            set_why(why, "deflate data truncated after %ju bytes of output",
                    (uintmax_t)total);
            rc = -EIO;
            goto out;
        }
        if (ret != Z_OK && ret != Z_BUF_ERROR) {
            if (ret == Z_MEM_ERROR) {
                set_why(why, "out of memory");
                rc = -ENOMEM;
            } else {
                set_why(why, "corrupt deflate data at output %ju: %s",
                        (uintmax_t)total, s.msg ? s.msg : "inflate error");
                rc = -EIO;
            }
            goto out;
        }
        /* At a block boundary (end of a non-final block): a point. */
        if ((s.data_type & 0xC0) == 0x80 && total - last >= span && total < out_size) {
            uint64_t at = fed - s.avail_in;
            p.out = total;
            p.in_bits = at * 8 - (uint64_t)(s.data_type & 7);
            size_t wl = total < ZRAN_WINDOW ? (size_t)total : ZRAN_WINDOW;
            if ((rc = fn(ctx, &p, buf + pos - wl, wl)))
                goto out;
            last = total;
        }
    }
    if (!known)
        *stream_len = end;
    else if (total != out_size) {
        set_why(why, "deflate data ends at %ju bytes, %ju declared",
                (uintmax_t)total, (uintmax_t)out_size);
        rc = -EIO;
    } else if (c != crc) {
        set_why(why, "CRC mismatch (data %08x, declared %08x)", c, crc);
        rc = -EIO;
    } else
        *stream_len = end;
out:
    if (got_size)
        *got_size = total;
    if (got_crc)
        *got_crc = c;
    inflateEnd(&s);
    free(buf);
    return rc;
}

int zran_build_consumed(const unsigned char *in, uint64_t in_len, uint64_t out_size,
                        uint32_t crc, uint64_t span, zran_point_fn fn,
                        zran_consumed_fn consumed, void *ctx, uint64_t *stream_len,
                        char **why)
{
    return build_core(in, in_len, out_size, crc, true, false, span, fn, consumed, ctx,
                      stream_len, NULL, NULL, why);
}

int zran_build_gzip(const unsigned char *in, uint64_t in_len, bool measure, uint64_t *out_size,
                    uint32_t *crc, uint64_t span, zran_point_fn fn, zran_consumed_fn consumed,
                    void *ctx, uint64_t *stream_len, char **why)
{
    if (measure)
        return build_core(in, in_len, UINT64_MAX - 1, 0, false, true, span, fn, consumed, ctx,
                          stream_len, out_size, crc, why);
    return build_core(in, in_len, *out_size, *crc, true, true, span, fn, consumed, ctx,
                      stream_len, NULL, NULL, why);
}

/* --------------------------------------------------------------- stream */

struct zran_stream {
    enum zran_backend be;
    const unsigned char *in;
    uint64_t in_len;
    uint64_t fed;      /* input handed to the decoder so far */
    bool done;         /* the stream's end was reached */
    bool gzip;         /* members: see zran_stream_gzip */
    bool failed;
    bool z_init;
    z_stream z;
#ifdef HAVE_ISAL
    struct inflate_state *isal;
#endif
    /* The stream's state, not a message handed back: the text of its
     * failure, for zran_stream_error() (one line, as util's messages). */
    char err[160];
};

int zran_stream_new(struct zran_stream **out)
{
    struct zran_stream *zs = calloc(1, sizeof *zs);
    *out = zs;
    if (!zs)
        return -ENOMEM;
    zs->be = zran_default_backend();
#ifdef HAVE_ISAL
    if (zs->be == ZRAN_ISAL && !(zs->isal = malloc(sizeof *zs->isal))) {
        free(zs);
        *out = NULL;
        return -ENOMEM;
    }
#endif
    return 0;
}

void zran_stream_free(struct zran_stream *zs)
{
    if (!zs)
        return;
    if (zs->z_init)
        inflateEnd(&zs->z);
#ifdef HAVE_ISAL
    free(zs->isal);
#endif
    free(zs);
}

const char *zran_stream_error(const struct zran_stream *zs)
{
    return zs->err[0] ? zs->err : "inflate error";
}

uint64_t zran_stream_consumed(const struct zran_stream *zs)
{
#ifdef HAVE_ISAL
    if (zs->be == ZRAN_ISAL)
        return zs->fed - zs->isal->avail_in;
#endif
    return zs->fed - zs->z.avail_in;
}

static int stream_fail(struct zran_stream *zs, const char *fmt, const char *what)
{
    snprintf(zs->err, sizeof zs->err, fmt, what);
    zs->failed = true;
    return -EIO;
}

int zran_stream_start(struct zran_stream *zs, const unsigned char *in,
                      uint64_t in_len, const struct zran_point *p,
                      const unsigned char *window, size_t window_len)
{
    uint64_t byte = p->in_bits >> 3;
    unsigned rem = (unsigned)(p->in_bits & 7);
    zs->err[0] = '\0';
    zs->failed = zs->done = zs->gzip = false;
    zs->in = in;
    zs->in_len = in_len;
    if (byte > in_len || (rem && byte >= in_len) || window_len > ZRAN_WINDOW)
        return stream_fail(zs, "%s", "access point outside the data");
    zs->fed = rem ? byte + 1 : byte;
#ifdef HAVE_ISAL
    if (zs->be == ZRAN_ISAL) {
        struct inflate_state *st = zs->isal;
        isal_inflate_init(st);
        st->crc_flag = ISAL_DEFLATE;
        st->hist_bits = 0;
        if (rem) {
            st->read_in = (uint64_t)(in[byte] >> rem);
            st->read_in_length = (int32_t)(8 - rem);
        }
        if (window_len
            && isal_inflate_set_dict(st, (uint8_t *)(uintptr_t)window,
                                     (uint32_t)window_len) != COMP_OK)
            return stream_fail(zs, "%s", "cannot set the inflate dictionary");
        return 0;
    }
#endif
    int ret = zs->z_init ? inflateReset(&zs->z) : inflateInit2(&zs->z, -15);
    if (ret != Z_OK)
        return stream_fail(zs, "%s", "cannot initialise inflate");
    zs->z_init = true;
    zs->z.avail_in = 0;
    if (rem && inflatePrime(&zs->z, (int)(8 - rem), in[byte] >> rem) != Z_OK)
        return stream_fail(zs, "%s", "inflatePrime failed");
    if (window_len
        && inflateSetDictionary(&zs->z, window, (uInt)window_len) != Z_OK)
        return stream_fail(zs, "%s", "cannot set the inflate dictionary");
    return 0;
}

void zran_stream_gzip(struct zran_stream *zs) { zs->gzip = true; }

/* A member's deflate data ended at in[end]: 1 if another follows (the
 * decoder is to restart at zs->fed, set here), 0 at the end of the data,
 * or -EIO. */
static int stream_member_end(struct zran_stream *zs, uint64_t end)
{
    if (!zs->gzip || end >= zs->in_len)
        return 0;
    uint64_t next;
    /* Trailers were checked by the build; in_len stops before the last. */
    if (zs->in_len - end < 8
        || member_next(zs->in, zs->in_len, end, false, 0, 0, &next, NULL) != 1)
        return stream_fail(zs, "%s", "bad gzip member boundary");
    zs->fed = next;
    return 1;
}

static void feed(struct zran_stream *zs, const unsigned char **next, uint32_t *avail)
{
    uint64_t k = zs->in_len - zs->fed > IN_CHUNK ? IN_CHUNK : zs->in_len - zs->fed;
    *next = zs->in + zs->fed;
    *avail = (uint32_t)k;
    zs->fed += k;
}

ssize_t zran_stream_read(struct zran_stream *zs, unsigned char *out, size_t n)
{
    if (zs->failed)
        return -EIO;
    if (zs->done || n == 0)
        return 0;
    if (n > (size_t)1 << 30)
        n = (size_t)1 << 30;
#ifdef HAVE_ISAL
    if (zs->be == ZRAN_ISAL) {
        struct inflate_state *st = zs->isal;
        st->next_out = out;
        st->avail_out = (uint32_t)n;
        while (st->avail_out > 0) {
            if (st->avail_in == 0 && zs->fed < zs->in_len) {
                const unsigned char *next;
                feed(zs, &next, &st->avail_in);
                st->next_in = (uint8_t *)(uintptr_t)next;
            }
            uint32_t before_out = st->avail_out, before_in = st->avail_in;
            int ret = isal_inflate(st);
            if (ret < 0) {
                char what[32];
                snprintf(what, sizeof what, "%d", ret);
                return stream_fail(zs, "corrupt deflate data (ISA-L error %s)", what);
            }
            if (st->block_state == ISAL_BLOCK_FINISH) {
                /* Bytes ISA-L read ahead into its bit buffer are not
                 * consumed (whole bytes; a partial one is padding). */
                uint64_t end = zs->fed - st->avail_in - (uint64_t)(st->read_in_length / 8);
                int m = stream_member_end(zs, end);
                if (m < 0)
                    return m;
                if (m == 0) {
                    zs->done = true;
                    break;
                }
                uint8_t *no = st->next_out;
                uint32_t ao = st->avail_out;
                isal_inflate_init(st);
                st->crc_flag = ISAL_DEFLATE;
                st->hist_bits = 0;
                st->next_out = no;
                st->avail_out = ao;
                st->avail_in = 0;
                continue;
            }
            if (st->avail_out == before_out && st->avail_in == before_in
                && (zs->fed == zs->in_len || before_in > 0))
                return stream_fail(zs, "%s", zs->fed == zs->in_len
                                             ? "deflate data truncated"
                                             : "inflate made no progress");
        }
        return (ssize_t)(n - st->avail_out);
    }
#endif
    z_stream *z = &zs->z;
    z->next_out = out;
    z->avail_out = (uInt)n;
    while (z->avail_out > 0) {
        if (z->avail_in == 0 && zs->fed < zs->in_len) {
            const unsigned char *next;
            uint32_t avail;
            feed(zs, &next, &avail);
            z->next_in = (unsigned char *)(uintptr_t)next;
            z->avail_in = avail;
        }
        int ret = inflate(z, Z_NO_FLUSH);
        if (ret == Z_STREAM_END) {
            int m = stream_member_end(zs, zs->fed - z->avail_in);
            if (m < 0)
                return m;
            if (m == 0) {
                zs->done = true;
                break;
            }
            if (inflateReset(z) != Z_OK)
                return stream_fail(zs, "%s", "cannot reset inflate");
            z->avail_in = 0;
            continue;
        }
        if (ret == Z_BUF_ERROR && z->avail_in == 0 && zs->fed == zs->in_len)
            return stream_fail(zs, "%s", "deflate data truncated");
        if (ret != Z_OK && ret != Z_BUF_ERROR)
            return stream_fail(zs, "corrupt deflate data: %s",
                               z->msg ? z->msg : "inflate error");
    }
    return (ssize_t)(n - z->avail_out);
}
