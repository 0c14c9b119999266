/* sorted: binary search in arrays of pointers kept sorted by a string key
 * (the registry's projects and jobs, an event-logs folder's files). */
#ifndef HCX_SORTED_H
#define HCX_SORTED_H

#include <stddef.h>

/* The index of the item whose key_of(item) equals key, or where it would go
 * to keep items sorted (strcmp order); *found says which. */
size_t sorted_slot(void *const *items, size_t n, const char *key,
                   const char *(*key_of)(const void *item), int *found);

#endif
