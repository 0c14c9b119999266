/*
 * zran: random access into one raw deflate stream held in memory (a zip
 * entry's data inside the mapped archive), in the spirit of zlib's
 * examples/zran.c (own code, zlib's public API only).
 *
 * Building: zran_build() inflates the whole stream once with zlib
 * (inflate(Z_BLOCK), raw, windowBits -15), checks that it yields exactly the
 * declared number of bytes with the declared CRC-32, and records an access
 * point at the first deflate block boundary after every `span` bytes of
 * output: {uncompressed offset, bit offset of that block in the stream,
 * the 32 KiB of output before it}.  Point 0 is the stream's start (no
 * window).  Nothing is reported as built unless the whole stream checked
 * out: once an index exists, the data it points into is known good.
 *
 * Resuming: zran_stream_start() positions a decoder at a point (the bits
 * before the block are primed, the window set as dictionary); reads then
 * inflate forward.  Two decoders are available: zlib (inflatePrime +
 * inflateSetDictionary) and, when built with ISA-L, isal_inflate (the
 * leading bits loaded through the public read_in / read_in_length fields,
 * the window through isal_inflate_set_dict; a point is a block boundary,
 * which is ISA-L's ISAL_BLOCK_NEW_HDR state).  ISA-L is the default when
 * present; HCX_INFLATE=zlib in the environment, or zran_set_backend(),
 * selects zlib.
 */
#ifndef HCX_ZRAN_H
#define HCX_ZRAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ZRAN_WINDOW 32768u

struct zran_point {
    uint64_t out;     /* uncompressed offset */
    uint64_t in_bits; /* bit offset of the block boundary in the stream */
};

/* Called for every point, in order; window holds the min(out, 32 KiB)
 * bytes that precede p->out.  Non-zero return aborts the build with that
 * value. */
typedef int (*zran_point_fn)(void *ctx, const struct zran_point *p,
                             const unsigned char *window, size_t window_len);

/* Inflates in[0..in_len) (raw deflate) completely.  Returns 0 and
 * *stream_len = bytes the deflate stream occupies, or -EIO (corrupt data,
 * size or CRC mismatch: *why says which, util/why.h), -ENOMEM, or the
 * callback's value. */
int zran_build(const unsigned char *in, uint64_t in_len, uint64_t out_size,
               uint32_t crc, uint64_t span, zran_point_fn fn, void *ctx,
               uint64_t *stream_len, char **why);

/* zran_build() with a progress callback: consumed(ctx, k) is called each
 * time the build has consumed another few MiB of its input (k: bytes of
 * in[] it will not read again), e.g. to drop them from a mapping's RSS. */
typedef void (*zran_consumed_fn)(void *ctx, uint64_t consumed);
int zran_build_consumed(const unsigned char *in, uint64_t in_len, uint64_t out_size,
                        uint32_t crc, uint64_t span, zran_point_fn fn,
                        zran_consumed_fn consumed, void *ctx, uint64_t *stream_len,
                        char **why);

/* zran_build_consumed() for gzip data: in[0..in_len) holds the deflate
 * data of a gzip member, its trailer, and maybe more members (header,
 * deflate data, trailer), and nothing else.  Every member's trailer is
 * checked (CRC-32 and ISIZE of that member's output); the output is the
 * members' outputs one after the other, and *stream_len ends at the last
 * member's deflate data (its trailer follows).  measure: *out_size and
 * *crc (of the whole output) are measured (*out_size also on failure: the
 * output produced until then), else checked.  Points are taken as by
 * zran_build (and in any member); when measuring possibly one at the very
 * end of the output (after a last non-final block that made no output):
 * callers drop it. */
int zran_build_gzip(const unsigned char *in, uint64_t in_len, bool measure, uint64_t *out_size,
                    uint32_t *crc, uint64_t span, zran_point_fn fn, zran_consumed_fn consumed,
                    void *ctx, uint64_t *stream_len, char **why);
/* RFC 1952 member header at m[0..len), parsed hostilely (every field
 * bounded by len; reserved flags, a method other than deflate or a wrong
 * FHCRC are errors): *data = where its deflate data starts.  0 or -EIO
 * with *why. */
int zran_gzip_header(const unsigned char *m, uint64_t len, uint64_t *data, char **why);

enum zran_backend { ZRAN_ZLIB = 0, ZRAN_ISAL = 1 };
/* Backend new streams use (ISA-L if compiled in and not disabled). */
enum zran_backend zran_default_backend(void);
/* For tests and benchmarks: -1 if the backend is not compiled in. */
int zran_set_backend(enum zran_backend b);
int zran_have_isal(void);

/* CRC-32 (zip/gzip polynomial), the fastest implementation available. */
uint32_t zran_crc32(uint32_t crc, const unsigned char *p, size_t n);

struct zran_stream;
int zran_stream_new(struct zran_stream **out); /* 0 or -ENOMEM */
void zran_stream_free(struct zran_stream *zs);
/* Positions zs at point p of the stream in[0..in_len); window is the
 * point's window (window_len = min(p->out, 32 KiB)).  0 or -EIO. */
int zran_stream_start(struct zran_stream *zs, const unsigned char *in,
                      uint64_t in_len, const struct zran_point *p,
                      const unsigned char *window, size_t window_len);
/* After zran_stream_start: the stream is gzip members (as built by
 * zran_build_gzip, in_len = its *stream_len): at the end of a member's
 * deflate data the decoder skips the trailer and the next member's header
 * and goes on. */
void zran_stream_gzip(struct zran_stream *zs);
/* Up to n bytes of output: > 0 bytes, 0 at the stream's end, -EIO on
 * corrupt data (zran_stream_error() says why). */
ssize_t zran_stream_read(struct zran_stream *zs, unsigned char *out, size_t n);
const char *zran_stream_error(const struct zran_stream *zs);
/* Bytes of the stream's input (from in[0], as given to zran_stream_start)
 * the decoder has consumed so far: it will not read below this again. */
uint64_t zran_stream_consumed(const struct zran_stream *zs);

#endif
