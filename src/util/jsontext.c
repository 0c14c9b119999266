/* jsontext: see jsontext.h. */
#include "jsontext.h"

#include <stdio.h>
#include <stdlib.h>

char *json_text_line(const json_t *o, size_t flags)
{
    char *s = o ? json_dumps(o, flags) : NULL, *t = NULL;
    if (s && asprintf(&t, "%s\n", s) < 0)
        t = NULL;
    free(s);
    return t;
}
