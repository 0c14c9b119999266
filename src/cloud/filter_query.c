/* filter_query: the query parameters of an HSS export (filter.h:
 * filter_hss_query).  Calls filter.c (filter_service_of, filter_validate). */
#include "filter.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Two passes over the filter: the first (params == NULL) counts the
 * parameters and the bytes of their strings, the second copies them into
 * the block. */
struct query_walk {
    struct filter_param *params;
    char *strings;
    size_t n;
    size_t bytes;
};

static const char *walk_copy(struct query_walk *w, const char *s, size_t len)
{
    w->bytes += len + 1;
    if (!w->params)
        return NULL;
    char *d = w->strings;
    memcpy(d, s, len);
    d[len] = '\0';
    w->strings += len + 1;
    return d;
}

static void walk_param(struct query_walk *w, const char *name, const json_t *v)
{
    char num[32];
    const char *s;
    size_t len;
    if (json_is_integer(v)) {
        int k = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
        len = k > 0 ? (size_t)k : 0;
    } else {
        s = json_string_value(v);
        len = json_string_length(v);
    }
    const char *value = walk_copy(w, s, len);
    if (w->params) {
        w->params[w->n].name = name;
        w->params[w->n].value = value;
    }
    w->n++;
}

static void walk_query(const json_t *filter, struct query_walk *w)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)filter, key, v) {
        if (!strcmp(key, "service") || !strcmp(key, "columns"))
            continue;
        if (json_is_array(v)) {
            /* One copy of the name serves all its repeats. */
            const char *name = NULL;
            for (size_t i = 0; i < json_array_size(v); i++) {
                if (i == 0)
                    name = walk_copy(w, key, strlen(key));
                walk_param(w, name, json_array_get(v, i));
            }
        } else {
            walk_param(w, walk_copy(w, key, strlen(key)), v);
        }
    }
}

int filter_hss_query(const json_t *filter, struct filter_param **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (filter_service_of(filter) != SERVICE_HSS || filter_validate(filter, NULL) < 0)
        return -EINVAL;
    struct query_walk w = { NULL, NULL, 0, 0 };
    walk_query(filter, &w);
    if (w.n > (SIZE_MAX - w.bytes) / sizeof(struct filter_param))
        return -ENOMEM;
    size_t array = w.n * sizeof(struct filter_param);
    char *block = malloc(array + w.bytes > 0 ? array + w.bytes : 1);
    if (!block)
        return -ENOMEM;
    struct query_walk fill = { (struct filter_param *)(void *)block, block + array, 0, 0 };
    walk_query(filter, &fill);
    *out = fill.params;
    *n = fill.n;
    return 0;
}
