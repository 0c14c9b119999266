/*
 * archive_zip: zip structures read straight from a mapping, never trusting
 * an offset or a length before it is checked against the mapping's end;
 * and the signatures that tell a job's file format (aformat_sniff).
 * Layer: pure functions, calls nothing.
 */
#include "archive_zip.h"
#include "archive_index.h"

#include <stdlib.h>

static inline uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const unsigned char *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

enum aformat aformat_sniff(const void *head, size_t len)
{
    const unsigned char *h = head;
    if (len >= 4 && h[0] == 'P' && h[1] == 'K'
        && ((h[2] == 3 && h[3] == 4) || (h[2] == 5 && h[3] == 6) || (h[2] == 7 && h[3] == 8)))
        return AFORMAT_ZIP;
    if (len >= 2 && h[0] == 0x1f && h[1] == 0x8b)
        return AFORMAT_GZIP;
    return AFORMAT_PLAIN;
}

const char *aformat_suffix(enum aformat f)
{
    switch (f) {
    case AFORMAT_ZIP:
        return "zip";
    case AFORMAT_GZIP:
        return "csv.gz";
    case AFORMAT_PLAIN:
        break;
    }
    return "csv";
}

int aix_find_cd(const unsigned char *m, size_t len, uint64_t *off, uint64_t *count)
{
    if (len < 22)
        return -1; /* no room for the end record */
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
            if (len < 56 || z > len - 56 || le32(m + z) != 0x06064b50u)
                return -1;
            *count = le64(m + z + 32);
            *off = le64(m + z + 48);
        }
        return *off < len ? 0 : -1;
    }
    return -1;
}

bool aix_cd_record(const unsigned char *m, size_t len, uint64_t *pp, struct cdrec *r)
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

bool aix_zip_direct_ok(const unsigned char *m, size_t len, uint64_t size, const struct cdrec *r)
{
    if ((r->method != 0 && r->method != 8) || (r->flags & 1) || r->usize != size
        || (r->method == 0 && r->csize != r->usize) || r->data == UINT64_MAX)
        return false;
    const unsigned char *lh = m + r->lho; /* valid: aix_cd_record checked it */
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

static int cmp_cdmatch(const void *a, const void *b)
{
    const struct cdmatch *x = a, *y = b;
    if (x->data != y->data)
        return x->data < y->data ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

int aix_cd_match(const unsigned char *m, size_t len, struct cdmatch *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c[i].nrec = 0;
    qsort(c, n, sizeof *c, cmp_cdmatch);
    uint64_t p, count;
    if (aix_find_cd(m, len, &p, &count) != 0)
        return -1;
    struct cdrec r;
    for (uint64_t k = 0; k < count && aix_cd_record(m, len, &p, &r); k++) {
        if (r.data == UINT64_MAX)
            continue;
        size_t lo = 0, hi = n; /* the first with data >= r.data */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c[mid].data < r.data)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n && c[lo].data == r.data; lo++) {
            struct cdmatch *x = &c[lo];
            if (x->nrec++ == 0)
                x->rec = r;
            else
                x->nrec = 2; /* two records, one data start: trust neither */
        }
    }
    return 0;
}
