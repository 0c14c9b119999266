/*
 * archive_zip: the zip format as pure functions over a mapping -- file
 * signatures, the end of central directory record, central directory
 * records and the local headers they point at.  Calls nothing.
 */
#ifndef HCX_ARCHIVE_ZIP_H
#define HCX_ARCHIVE_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A local header is at most 30 + 65535 + 65535 bytes before its data. */
#define LOCAL_HEADER_MAX (30 + 2 * 65535)

/* One central directory record, zip64 sizes resolved.  data: where the
 * local header at lho says the data starts (UINT64_MAX when there is no
 * valid local header there). */
struct cdrec {
    uint64_t lho, csize, usize, data;
    uint32_t crc;
    uint16_t flags, method;
};

/* The central directory's offset and record count, zip64 aware.  0 or -1
 * (no end record that reaches the end of the file exactly). */
int aix_find_cd(const unsigned char *m, size_t len, uint64_t *off, uint64_t *count);
/* Parses the record at *pp and advances *pp past it; false when there is
 * no well-formed record there (the walk ends). */
bool aix_cd_record(const unsigned char *m, size_t len, uint64_t *pp, struct cdrec *r);

/* Whether the data of record r (an entry of size bytes) can be read
 * straight from the mapping exactly as libarchive would serve it: stored
 * or deflate, not encrypted, and record, local header and size agree on
 * method, sizes and the CRC libarchive checks (the local header's, or the
 * data descriptor's). */
bool aix_zip_direct_ok(const unsigned char *m, size_t len, uint64_t size, const struct cdrec *r);

/* One data start to match against the central directory (aix_cd_match). */
struct cdmatch {
    uint64_t data;   /* in: the data start */
    uint32_t node;   /* in: the caller's (ties sort by it) */
    uint8_t nrec;    /* out: records whose data starts there (0, 1, or 2 for more) */
    struct cdrec rec;/* out: the first of them */
};

/* Sorts c by data start and finds the central directory records whose
 * data starts there.  -1 when the archive has no central directory
 * (nothing matched). */
int aix_cd_match(const unsigned char *m, size_t len, struct cdmatch *c, size_t n);

#endif
