/* jsontext: a JSON value as the text of a file (generated files such as
 * .job.json and .stats end with a newline, like any text file). */
#ifndef HCX_JSONTEXT_H
#define HCX_JSONTEXT_H

#include <jansson.h>

/* json_dumps(o, flags) plus "\n", malloc'd; NULL for a NULL o or out of memory. */
char *json_text_line(const json_t *o, size_t flags);

#endif
