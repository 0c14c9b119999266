/* why: formatted error messages handed back to callers. */
#include "why.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void set_why(char **why, const char *fmt, ...)
{
    if (!why)
        return;
    free(*why);
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(why, fmt, ap) < 0)
        *why = NULL;
    va_end(ap);
}
