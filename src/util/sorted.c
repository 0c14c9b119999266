/* sorted: see sorted.h. */
#include "sorted.h"

#include <string.h>

size_t sorted_slot(void *const *items, size_t n, const char *key,
                   const char *(*key_of)(const void *item), int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key_of(items[mid]), key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}
