/*
 * archive_base: the archive view's lowest layer, calling nothing but zran,
 * libarchive and util (error messages: set_why).  Owns mapping a file
 * read-only, dropping mapped bytes from this process's RSS, and
 * libarchive reading straight from a mapping (struct view).
 */
#ifndef HCX_ARCHIVE_BASE_H
#define HCX_ARCHIVE_BASE_H

#include <archive.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

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

/* libarchive's last error text on a, or a fixed text without one. */
const char *aix_archive_err(struct archive *a);

/* The file at path, mapped read-only, with its stat.  allow_empty: any
 * regular file (an empty one is not mapped: *map NULL, *len 0); else it
 * must be long enough to be a zip (-EIO otherwise).  0 or -errno with
 * *why set. */
int aix_map_file(const char *path, bool allow_empty, const unsigned char **map, size_t *len,
                 struct stat *stp, char **why);
/* Drops [lo, hi) of the mapping [map, map + map_len) from this process's
 * page tables, clamped to whole pages inside the mapping. */
void aix_release_range(const unsigned char *map, size_t map_len, uintptr_t lo, uintptr_t hi);
/* CRC-32 of mapped bytes [p, p + n) of that mapping, released as it goes. */
uint32_t aix_crc_range(const unsigned char *map, size_t map_len, uint32_t crc,
                         const unsigned char *p, uint64_t n);

/* libarchive's input: [base, base + len), handed out in VIEW_BLOCKs. */
struct view {
    const unsigned char *base;
    int64_t len;
    int64_t pos;
    int64_t prev, prev_len; /* the block handed out last */
};

/* A zip reader over v (which must outlive it).  seekable: central-directory
 * reader over the whole file; else the streamable reader.  Returns
 * ARCHIVE_OK with *out set; on failure *out may still hold the archive
 * (for its error text; the caller frees it) or NULL (out of memory). */
int aix_open_view(struct view *v, bool seekable, struct archive **out);

#endif
