/*
 * archive_base: libarchive's error text, read-only mappings and their
 * release, and libarchive over a mapping.  Layer: the bottom of
 * src/archive; calls only zran (CRC-32), libarchive and util's set_why.
 */
#include "archive_base.h"
#include "why.h"
#include "zran.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *aix_archive_err(struct archive *a)
{
    const char *s = a ? archive_error_string(a) : NULL;
    return s ? s : "unknown libarchive error";
}

int aix_map_file(const char *path, bool allow_empty, const unsigned char **map, size_t *len,
                 struct stat *stp, char **why)
{
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_why(why, "%s: open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        set_why(why, "%s: stat: %s", path, strerror(e));
        return -e;
    }
    if (stp)
        *stp = st;
    if (!S_ISREG(st.st_mode) || (!allow_empty && st.st_size < 22)) {
        close(fd);
        if (allow_empty)
            set_why(why, "%s: not a regular file", path);
        else
            set_why(why, "%s: not a zip archive (too short or not a file)", path);
        return -EIO;
    }
    if (st.st_size == 0) { /* cannot be mapped; only allow_empty gets here */
        close(fd);
        return 0;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        set_why(why, "%s: mmap: %s", path, strerror(e));
        return e == ENOMEM ? -ENOMEM : -EIO;
    }
    *map = p;
    *len = (size_t)st.st_size;
    return 0;
}

/* Not from the page cache: the mapping is shared and read-only, the next
 * access faults the same bytes back in.  Whole pages inside the mapping
 * only, so that no other memory is ever touched. */
void aix_release_range(const unsigned char *map, size_t map_len, uintptr_t lo, uintptr_t hi)
{
    uintptr_t base = (uintptr_t)map, top = base + map_len;
    if (lo < base)
        lo = base;
    if (hi > top)
        hi = top;
    lo = (lo + 4095) & ~(uintptr_t)4095;
    hi &= ~(uintptr_t)4095;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

uint32_t aix_crc_range(const unsigned char *map, size_t map_len, uint32_t crc,
                         const unsigned char *p, uint64_t n)
{
    while (n > 0) {
        uint64_t k = n > RELEASE_STEP ? RELEASE_STEP : n;
        crc = zran_crc32(crc, p, (size_t)k);
        aix_release_range(map, map_len, (uintptr_t)p, (uintptr_t)(p + k));
        p += k;
        n -= k;
    }
    return crc;
}

/* ------------------------------------------- libarchive over a mapping */

static la_ssize_t view_read(struct archive *a, void *cd, const void **buf)
{
    (void)a;
    struct view *v = cd;
    /* libarchive is done with the previous block (its pointer is valid
     * only until this call): out of our RSS. */
    if (v->prev_len)
        aix_release_range(v->base, (size_t)v->len, (uintptr_t)(v->base + v->prev),
                          (uintptr_t)(v->base + v->prev + v->prev_len));
    v->prev_len = 0;
    if (v->pos >= v->len)
        return 0;
    int64_t n = v->len - v->pos;
    if (n > (int64_t)VIEW_BLOCK)
        n = (int64_t)VIEW_BLOCK;
    *buf = v->base + v->pos;
    v->prev = v->pos;
    v->prev_len = n;
    v->pos += n;
    return (la_ssize_t)n;
}

static la_int64_t view_skip(struct archive *a, void *cd, la_int64_t request)
{
    (void)a;
    struct view *v = cd;
    int64_t n = v->len - v->pos;
    if (request < n)
        n = request;
    if (n < 0)
        n = 0;
    v->pos += n;
    return n;
}

static la_int64_t view_seek(struct archive *a, void *cd, la_int64_t off, int whence)
{
    (void)a;
    struct view *v = cd;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? v->pos : v->len;
    int64_t to = base + off;
    if (to < 0 || to > v->len)
        return ARCHIVE_FATAL;
    v->pos = to;
    return to;
}

int aix_open_view(struct view *v, bool seekable, struct archive **out)
{
    struct archive *a = archive_read_new();
    *out = a;
    if (!a)
        return ARCHIVE_FATAL;
    if ((seekable ? archive_read_support_format_zip_seekable(a)
                  : archive_read_support_format_zip_streamable(a)) != ARCHIVE_OK
        || archive_read_set_read_callback(a, view_read) != ARCHIVE_OK
        || archive_read_set_skip_callback(a, view_skip) != ARCHIVE_OK
        || archive_read_set_seek_callback(a, view_seek) != ARCHIVE_OK
        || archive_read_set_callback_data(a, v) != ARCHIVE_OK)
        return ARCHIVE_FATAL;
    return archive_read_open1(a);
}
