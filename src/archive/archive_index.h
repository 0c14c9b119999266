/*
 * archive_index: the read-only view of one job archive (a zip file in the
 * local cache).  This module owns everything between the zip bytes and the
 * tree the filesystem shows under a job directory: turning hostile entry
 * names into a safe, deterministic tree, exact sizes and times, and
 * positioned reads of entry data.  libarchive reads the archive's
 * structure and every entry but large deflate ones, whose raw stream is
 * inflated straight from the mapped archive (see "Large deflate entries").
 *
 * Thread-safety
 *   - struct aindex is immutable once aindex_open() returns: any number of
 *     threads may call every aindex_* / anode_* function and
 *     areader_open() on it concurrently, without locks.
 *   - struct areader is NOT thread-safe: one per open file handle; the
 *     caller serializes calls on one reader.  Readers of the same aindex are
 *     independent (each has its own struct archive) and may run in parallel.
 *   - aindex_free() must not run while readers of that index are open.
 *   - The checkpoints of large deflate entries (see below) are built on
 *     first use behind a per-entry lock and published atomically; that is
 *     the index's only mutable state.
 *   - The archive file is mapped into memory: it must not be truncated or
 *     rewritten in place while an index is open (replace it by rename; an
 *     unlink is fine).
 *
 * Names (every rule below is deterministic and independent of the locale):
 *   - The entry name is the raw pathname libarchive reports (bytes as
 *     stored when the zip's UTF-8 flag is off).  An entry whose name
 *     libarchive cannot decode at all (UTF-8 flag set on invalid UTF-8) is
 *     skipped and counted (skipped_bad_name).
 *   - Names are split on '/'.  Empty, "." and ".." components are dropped,
 *     so "../x" is "x" and "/abs/p.csv" is "abs/p.csv"; nothing can name a
 *     place outside the root.
 *   - Bytes that are not part of valid UTF-8, and the control characters
 *     0x00-0x1F and 0x7F, are written as "%XX" (upper-case hex).  A literal
 *     '%' is kept as is, so "a%0A" and "a\n" are the same name (and then
 *     follow the duplicate rule).
 *   - A component longer than 255 bytes is cut to at most 255 bytes, never
 *     inside a UTF-8 character or a %XX escape.
 *   - An entry with more than 256 components, or whose cleaned path is
 *     longer than 4000 bytes, is skipped (skipped_too_deep / _too_long).
 *   - A root-level name equal to a reserved name (the caller's list, e.g.
 *     "status", ".job.json", ".wait") gets a '_' prefix: "_status".  If the
 *     archive also holds "_status", the duplicate rule applies.
 *   - An entry whose name is empty after cleaning (e.g. "/", "../") is
 *     skipped (skipped_bad_name), unless it is a directory (it is the root).
 *
 * Entry types
 *   - Directories: parents are created implicitly; an explicit directory
 *     entry gives its mtime (the last one wins).  An implicit directory's
 *     mtime is the newest mtime of the entries below it.
 *   - Duplicates: the last file entry with a path wins (like unzip).  When a
 *     path is both a file and a directory the directory wins and the file
 *     is dropped (shadowed).
 *   - Symbolic links are never links: they are regular files whose content
 *     is the link target text.  Targets longer than 4095 bytes (or beyond
 *     64 MiB of targets in total) are skipped (skipped_type).
 *   - Hard links are served with the data of their target when the target
 *     is a regular file present in the archive, else skipped
 *     (skipped_hardlink).  (libarchive's zip reader never reports hard
 *     links today; the rule is there for completeness.)
 *   - Devices, fifos, sockets: skipped (skipped_type).
 *   - Encrypted entries are listed with their size; reads fail with EIO.
 *     Entries with an unsupported compression method likewise fail with
 *     EIO when read.
 *
 * Sizes are the central directory's.  Reads enforce them: data that turns
 * out shorter or longer than declared makes the read that reaches the
 * discrepancy fail with EIO; bytes are never padded or cut silently.
 *
 * Integrity: libarchive checks an entry's CRC when its end is decompressed.
 * Entries up to AINDEX_WINDOW bytes are decompressed whole (CRC included)
 * before their first byte is served, so corrupt data is never served for
 * them.  Large deflate entries (below) are inflated whole, size and CRC
 * checked, before their first byte is served too.  For the other entries
 * larger than AINDEX_WINDOW (stored ones, deflate ones under
 * AINDEX_CKPT_MIN, other methods) the CRC is checked when a read reaches
 * the end of the entry (that read fails with EIO on mismatch); bytes served
 * before that come straight from the decompressor and are only as good as
 * the deflate stream's own consistency checks.  aindex_verify_data()
 * checks everything up front (aindex_verify_rest(): everything the index
 * serves, in one pass together with aindex_build_checkpoints()).
 *
 * Large deflate entries (method 8, not encrypted, at least AINDEX_CKPT_MIN
 * bytes, found in the central directory at the data start libarchive
 * reported) are read without libarchive, with random access: checkpoints
 * every ~AINDEX_CKPT_SPAN bytes of output (deflate block boundary, bit
 * offset, the 32 KiB window before it; zran.h) let a read inflate from the
 * nearest one at or before its offset, with ISA-L when available (zlib
 * otherwise).  The checkpoints are built by inflating the entry once,
 * which checks its size and CRC-32: an entry whose build fails reads EIO,
 * and one that has checkpoints is known good.  They are kept in a sidecar
 * "<zip>.ckpt" (bound to the zip's size and mtime, checksummed, written
 * atomically; one that does not check out is ignored and rebuilt), so a
 * remount does not inflate again.  Each checkpoint also carries the CRC-32
 * of its window and of its span's compressed bytes, checked before a byte
 * of that span is served: a damaged sidecar or an archive changed since
 * the build is caught (the points are rebuilt once; data that still does
 * not match reads EIO).  Without a sidecar the first read of such an entry
 * builds them (one full zlib inflate, ~300 MB/s: ~1.7 s per 512 MiB; that
 * read waits, as do concurrent readers of the entry):
 * aindex_build_checkpoints() does it right after a download instead.
 *
 * Read-ahead: a reader reading such an entry sequentially (each read
 * continuing the previous one, give or take 2 MiB of reordering) has the
 * next spans, 4 ahead (twice the spans a read covers for large reads),
 * inflated from their checkpoints on a process-wide pool of 2 worker
 * threads (started on first use, joined by aindex_shutdown()), into at
 * most 12 span buffers per reader (6, ~1.5 MiB, for 128 KiB reads); reads
 * they cover are a copy.  Only while no other reader streams (within the
 * last 50 ms): concurrent streams already share the cores.  Each job has
 * its own decoder and makes the synchronous path's checks (window and span
 * CRCs, exact length, end of stream) before its bytes can be served; a job
 * that fails leaves the read that needs its span to the synchronous path,
 * which checks again and fails with EIO.

 * Children of a directory are sorted by name (bytewise), so readdir order
 * is stable and lookup is a binary search per path component.
 *
 * Single-file formats (aindex_open_format): a WAF export is a CSV, zipped
 * (AFORMAT_ZIP: everything above), gzipped or plain, told by its first
 * bytes (aformat_sniff).  A gzipped or plain file shows as ONE file, named
 * by the caller's entry_name cleaned by the rules above (reserved root
 * names get '_'; a '/' makes directories; a name the rules would drop is
 * shown as "data.csv"), with the caller's mtime (the file's generation
 * time); its directories take that mtime too.
 *   - AFORMAT_PLAIN: the file's bytes as they are, read straight from the
 *     mapping (any size, an empty file too; no libarchive).  Its size is
 *     the file's.  Nothing to verify.
 *   - AFORMAT_GZIP: the decompressed data.  Each member header (RFC 1952)
 *     is parsed hostilely (zran_gzip_header): FEXTRA, FNAME, FCOMMENT
 *     skipped within the file, FHCRC checked; a method other than deflate
 *     or reserved flags in the FIRST header make the open fail (-EIO).
 *     Multi-member files (concatenated members, as `cat a.gz b.gz` or
 *     pigz make) are supported: the members' data one after the other,
 *     like gunzip.  The size is EXACT before the first read: the open
 *     inflates the data once (zlib: ~3.6 s per GiB of output), building
 *     the checkpoints on the way (every AINDEX_CKPT_SPAN, as for large
 *     deflate entries above, whatever the size, across members; windows in
 *     an unlinked file beside `name`), and checks every member's trailer
 *     (CRC-32, ISIZE = that member's size mod 2^32) and that the file ends
 *     right after the last one (or another member starts); a later
 *     aindex_build_checkpoints only writes the points to the sidecar (no
 *     second inflate).  Nothing is allocated by a declared size.  Data that
 *     is corrupt, truncated, has a bad CRC, a lying ISIZE, a bad later
 *     member header or trailing bytes still opens, but its file reads EIO
 *     (every read, at any offset; its size is the bytes it inflated to, at
 *     least 1, so that a read reaches the filesystem), and
 *     aindex_build_checkpoints / aindex_verify_rest fail with the why
 *     (aindex_checkpoint_stats counts it corrupt).  Reads go through the
 *     checkpoints with read-ahead exactly like a large deflate entry (the
 *     decoders, ISA-L or zlib, step over member boundaries).
 *     Sidecars: "<name>.ckpt" (the points; written by
 *     aindex_build_checkpoints, or by a lazy build on first read) and
 *     "<name>.idx" (aindex_save: the tree with the exact size and CRC).  A
 *     reopen with the .idx inflates nothing (nor does one with only the
 *     .ckpt: it gives the size and CRC); with neither it inflates again.
 *   Both sidecars are bound to the file's size and mtime, and the .idx to
 *   the format, entry_name and mtime given.
 */
#ifndef HCX_ARCHIVE_INDEX_H
#define HCX_ARCHIVE_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Bytes of recently produced data each reader keeps, so that reads a bit
 * behind the current position (parallel kernel readahead) do not restart
 * decompression.  Also the size up to which entries are verified whole
 * before being served. */
#define AINDEX_WINDOW ((size_t)1 << 20)

/* Deflate entries of at least this size are read through checkpoints
 * (see "Large deflate entries" above); about one every AINDEX_CKPT_SPAN
 * bytes of output.  256 KiB: a random read inflates 128 KiB on average
 * (~0.15 ms with ISA-L); the sidecar holds a 32 KiB window per point,
 * i.e. 12.5% of the entry's uncompressed size. */
#define AINDEX_CKPT_MIN ((uint64_t)4 << 20)
#define AINDEX_CKPT_SPAN ((uint64_t)256 << 10)

struct aindex;  /* immutable after open: shared read-only by all threads */

/* What a job's file is, told by its first bytes (not its name). */
enum aformat { AFORMAT_ZIP, AFORMAT_GZIP, AFORMAT_PLAIN };
/* Told by the first bytes (len may be short): PK\3\4 / PK\5\6 / PK\7\8 zip,
 * 1f 8b gzip, else plain (an empty file is plain). */
enum aformat aformat_sniff(const void *head, size_t len);
const char *aformat_suffix(enum aformat); /* "zip", "csv.gz", "csv" */

struct aindex_single {      /* for GZIP and PLAIN: the one file shown */
    const char *entry_name; /* cleaned by the usual name rules; reserved names get '_' */
    time_t mtime;
};
struct anode;   /* a file or directory of the cleaned tree */

/* What the cleaning rules did to the archive's entries (for logging). */
struct aindex_stats {
    uint64_t entries_seen;       /* headers read from the archive */
    uint64_t skipped_too_deep;   /* > 256 components */
    uint64_t skipped_too_long;   /* cleaned path > 4000 bytes */
    uint64_t skipped_bad_name;   /* undecodable or empty name */
    uint64_t skipped_type;       /* device, fifo, socket, oversized link */
    uint64_t skipped_hardlink;   /* hard link without a regular-file target */
    uint64_t skipped_unreadable; /* header libarchive could not read */
    uint64_t replaced_duplicate; /* file entries overridden by a later one */
    uint64_t shadowed_by_dir;    /* files dropped because a dir has the path */
    uint64_t renamed_reserved;   /* root names given a '_' prefix */
    uint64_t truncated_names;    /* components cut to 255 bytes */
};

/* Builds the index of the zip at path (seekable zip reader: the central
 * directory is authoritative).  reserved: NULL-terminated list of names
 * entries may not take at the root (may be NULL).  Returns 0, or -errno
 * (EIO unreadable/corrupt archive, ENOMEM, EFBIG too many entries) with
 * *why set to a malloc'd message (caller frees). */
int aindex_open(const char *path, const char *const *reserved,
                struct aindex **out, char **why);
/* The same, for a file about to be renamed to `name` (e.g. a download's
 * "<job>.zip.part" that becomes "<job>.zip"): the index maps `path`, and
 * the mapping stays valid across the rename, but everything it later does
 * by name (the sidecar "<name>.ckpt", loaded at open and written by lazy
 * builds; temporary files beside it; messages after open) uses `name`. */
int aindex_open_as(const char *path, const char *name, const char *const *reserved,
                   struct aindex **out, char **why);
/* Like aindex_open_as, for any format (fmt from aformat_sniff of the
 * file's first bytes; single is required for GZIP/PLAIN, ignored for ZIP).
 * See "Single-file formats" above.  -EINVAL without single; -EIO for a
 * gzip header that does not parse (a bad stream after a good header opens:
 * its file reads EIO). */
int aindex_open_format(const char *path, const char *name, enum aformat fmt,
                       const struct aindex_single *single, const char *const *reserved,
                       struct aindex **out, char **why);
void aindex_free(struct aindex *ix);
/* Saves the index to "<name>.idx" (the sidecar aindex_open_as loads instead
 * of walking the archive, when it matches the archive and the reserved
 * names).  Call it once the archive is verified.  0, or -errno with *why. */
int aindex_save(const struct aindex *ix, const char *const *reserved, char **why);
/* Whether ix was loaded from that sidecar (nothing to save). */
int aindex_from_sidecar(const struct aindex *ix);
/* The size of that sidecar for ix. */
int64_t aindex_saved_bytes(const struct aindex *ix);

const struct anode *aindex_root(const struct aindex *ix);
/* relpath: "a/b.csv" (cleaned names as listed), "" or "/" = root; empty
 * components are ignored.  NULL if absent. */
const struct anode *aindex_lookup(const struct aindex *ix, const char *relpath);

int anode_is_dir(const struct anode *n);
uint64_t anode_size(const struct anode *n);   /* 0 for directories */
time_t anode_mtime(const struct anode *n);
/* NUL-terminated cleaned name; "" for the root.  Valid until aindex_free. */
const char *anode_name(const struct aindex *ix, const struct anode *n);
size_t anode_child_count(const struct anode *n);  /* 0 for files */
/* i-th child in bytewise name order, NULL if out of range. */
const struct anode *anode_child(const struct aindex *ix, const struct anode *dir,
                                size_t i);

uint64_t aindex_entry_count(const struct aindex *ix); /* nodes, root excluded */
uint64_t aindex_total_size(const struct aindex *ix);  /* sum of file sizes */
const struct aindex_stats *aindex_stats(const struct aindex *ix);

/* A positioned reader: one per open file handle; not thread-safe itself. */
struct areader;
/* -EISDIR for a directory, -ENOMEM. */
int areader_open(const struct aindex *ix, const struct anode *file,
                 struct areader **out);
/* Up to size bytes at offset: bytes read (short only at EOF), 0 at or past
 * EOF, or -EIO (corrupt data, CRC mismatch, size lie, encrypted) / -ENOMEM.
 * After an error the next call starts afresh. */
ssize_t areader_pread(struct areader *r, void *buf, size_t size, uint64_t offset);
/* The text of r's last failure (NULL if none): the reader's state, kept
 * until its next call, not a message handed back (util/why.h). */
const char *areader_error(const struct areader *r);
/* Waits for any read-ahead job of r still running (see "Read-ahead"). */
void areader_close(struct areader *r);

/* Stops the read-ahead worker pool (joins its threads; a later read-ahead
 * starts it again).  Call at unmount, after every reader is closed. */
void aindex_shutdown(void);

/* Process-wide read-ahead counters (for tests and statistics). */
struct aindex_ra_stats {
    uint64_t reads_served;   /* reads served from read-ahead spans */
    uint64_t spans_inflated; /* spans the read-ahead jobs inflated */
    uint64_t spans_failed;   /* jobs whose checks failed (or no memory) */
};
void aindex_readahead_stats(struct aindex_ra_stats *st);

/* Builds the checkpoints of every large deflate entry that has none yet
 * (inflating each once, size and CRC checked; one build per core at a
 * time) and writes them to the sidecar file `sidecar` (NULL: "<name>.ckpt",
 * see aindex_open_as), atomically; the windows of these builds are written
 * straight into the sidecar, which the index then uses (no second copy).
 * Meant to run once right after a download, so that no read has to: e.g.
 * on "<job>.zip.part" opened as "<job>.zip", before the rename (the sidecar
 * records the zip's size and mtime, which a rename keeps).  0, -EIO (an
 * entry is corrupt: *why names it, aindex_checkpoint_stats() counts it as
 * corrupt), -ENOMEM, or the sidecar write's -errno (the points built are
 * kept in memory: the entries are verified all the same).  Safe to call
 * while readers are open. */
int aindex_build_checkpoints(const struct aindex *ix, const char *sidecar, char **why);

struct aindex_ckpt_stats {
    uint32_t entries; /* large deflate entries */
    uint32_t ready;   /* ... with checkpoints */
    uint32_t loaded;  /* ... whose checkpoints came from the sidecar */
    uint32_t built;   /* checkpoint builds done by this index */
    uint32_t corrupt; /* entries whose build found bad data (they read EIO) */
    uint64_t points;
};
void aindex_checkpoint_stats(const struct aindex *ix, struct aindex_ckpt_stats *st);

/* Full verification of a ZIP: reads every entry's data through libarchive
 * (CRC and size checked).  0, or -EIO / -ENOMEM with *why naming the
 * entry.  (For any format, aindex_verify_rest.) */
int aindex_verify_data(const char *path, char **why);

/* Verifies every entry the index serves, in one pass over the data, so
 * that with aindex_build_checkpoints() each byte is inflated once:
 *   - large deflate entries with checkpoints are known good (built: size
 *     and CRC checked; loaded from the sidecar: the CRC of every span's
 *     compressed bytes is checked, a mismatch rebuilds them); those without
 *     are built here (without writing the sidecar);
 *   - stored and deflate entries whose central directory record and local
 *     header agree with the index (method, sizes, and the CRC libarchive
 *     would check: the local header's, or the data descriptor's) are
 *     checked straight from the mapping: CRC-32 of stored data; raw
 *     inflate (ISA-L when available, zlib otherwise) that must end exactly
 *     at the declared size with the declared CRC;
 *   - anything else (other methods, records that disagree) is read whole
 *     through the same libarchive reader that serves it.
 * Entries not served (encrypted ones, files shadowed by a later duplicate
 * or a directory, names the rules skip) are not checked; entries whose
 * header libarchive could not read make it fail (they cannot be shown).
 * 0, or -EIO / -ENOMEM with *why naming the entry.  Safe to call while
 * readers are open. */
int aindex_verify_rest(const struct aindex *ix, char **why);

/* Names of a flat folder (event-logs/, one file per name, no directories):
 * raw cleaned by the rules under "Names" above, the components joined with
 * "%2F" (the escape of '/') instead of making directories, cut to 255
 * bytes at a token boundary.  "" when nothing is left ("", "/", ".."). */
void aindex_clean_flat_name(const char *raw, char out[256]);
/* The longest prefix of a cleaned name s (len bytes) of at most max bytes
 * that ends between two tokens (a UTF-8 character or a %XX escape). */
size_t aindex_name_cut(const char *s, size_t len, size_t max);

#endif
