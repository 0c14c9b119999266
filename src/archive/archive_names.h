/*
 * archive_names: the name rules of archive_index.h ("Names") as pure
 * functions: a raw entry name into a cleaned path.  Calls nothing.
 */
#ifndef HCX_ARCHIVE_NAMES_H
#define HCX_ARCHIVE_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wchar.h>

#define MAX_COMPONENT_BYTES 255
#define MAX_DEPTH 256
#define MAX_PATH_BYTES 4000

struct clean_path {
    char buf[MAX_PATH_BYTES + MAX_COMPONENT_BYTES + 8];
    size_t len;
    uint16_t comp_off[MAX_DEPTH + 1];
    uint16_t comp_len[MAX_DEPTH + 1];
    size_t ncomp;
    bool truncated;
    bool renamed;
};

enum clean_status { CLEAN_OK, CLEAN_TOO_DEEP, CLEAN_TOO_LONG };

/* raw cleaned into cp; reserved: root names that get a '_' prefix (may be
 * NULL).  cp holds what was cleaned so far even when it fails. */
enum clean_status aix_clean_name(const char *raw, const char *const *reserved,
                                 struct clean_path *cp);

/* The raw bytes libarchive has for a string attribute, trying the forms it
 * may hold (a name that failed charset conversion has no multibyte form;
 * the wide form is encoded as UTF-8).  *tmp receives a malloc'd buffer to
 * free when one was needed.  NULL: none (or no memory). */
const char *aix_entry_string(const char *mbs, const char *utf8, const wchar_t *w, char **tmp);

#endif
