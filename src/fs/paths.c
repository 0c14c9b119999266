/* fs/paths: see paths.h. */
#include "paths.h"

#include "journal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* Copies the next component of *p into out; 0 at the end, -ENOENT if too long. */
static int next_component(const char **p, char *out, size_t cap)
{
    while (**p == '/')
        (*p)++;
    const char *end = strchrnul(*p, '/');
    size_t n = (size_t)(end - *p);
    if (n == 0)
        return 0;
    if (n >= cap)
        return -ENOENT;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = end;
    return 1;
}

static int at_end(const char **p)
{
    char rest[NAME_MAX + 1];
    return next_component(p, rest, sizeof rest) == 0 ? 0 : -ENOTDIR;
}

/* <job>.<format>: ".csv.gz" is tried before ".csv" (journal_formats' order). */
static int parse_archive_name(const char *name, struct node *n)
{
    size_t len = strlen(name);
    for (size_t f = 0; journal_formats[f]; f++) {
        size_t flen = strlen(journal_formats[f]);
        if (len > flen + 1 && name[len - flen - 1] == '.' &&
            strcmp(name + len - flen, journal_formats[f]) == 0 && len - flen - 1 < sizeof n->job &&
            flen < sizeof n->format) {
            memcpy(n->job, name, len - flen - 1);
            n->job[len - flen - 1] = '\0';
            memcpy(n->format, journal_formats[f], flen + 1);
            return 0;
        }
    }
    return -ENOENT;
}

int path_parse(const char *path, struct node *n)
{
    char part[NAME_MAX + 1];
    const char *p = path;
    memset(n, 0, sizeof *n);
    n->kind = N_ROOT;
    int rc = next_component(&p, part, sizeof part);
    if (rc <= 0)
        return rc;
    if (strcmp(part, ".stats") == 0) {
        n->kind = N_STATS;
        return at_end(&p);
    }
    if (strcmp(part, "projects") != 0)
        return -ENOENT;
    n->kind = N_PROJECTS;
    if ((rc = next_component(&p, n->project, sizeof n->project)) <= 0)
        return rc;
    n->kind = N_PROJECT;
    if ((rc = next_component(&p, part, sizeof part)) <= 0)
        return rc;
    if (strcmp(part, "archives") == 0) {
        n->kind = N_ARCHIVES;
        if ((rc = next_component(&p, part, sizeof part)) <= 0)
            return rc;
        if ((rc = parse_archive_name(part, n)) < 0)
            return rc;
        n->kind = N_ARCHIVE_FILE;
        return at_end(&p);
    }
    if (strcmp(part, "event-logs") == 0) {
        n->kind = N_EVLOGS;
        while (*p == '/')
            p++;
        const char *name = p;
        if ((rc = next_component(&p, part, sizeof part)) <= 0)
            return rc;
        n->kind = N_EVLOG_FILE;
        n->entry = name;
        return *p ? -ENOTDIR : 0; /* a folder of files: nothing below a name */
    }
    if (strcmp(part, "exports") != 0)
        return -ENOENT;
    n->kind = N_EXPORTS;
    if ((rc = next_component(&p, part, sizeof part)) <= 0)
        return rc;
    if (strcmp(part, "new") == 0) {
        n->kind = N_NEW;
        return at_end(&p);
    }
    if (strlen(part) >= sizeof n->job)
        return -ENOENT;
    strcpy(n->job, part);
    n->kind = N_JOB;
    while (*p == '/')
        p++;
    if (!*p)
        return 0;
    if (strcmp(p, "status") == 0)
        n->kind = N_STATUS;
    else if (strcmp(p, ".job.json") == 0)
        n->kind = N_JOB_JSON;
    else if (strcmp(p, ".wait") == 0)
        n->kind = N_WAIT;
    else
        n->kind = N_ENTRY;
    n->entry = p;
    return 0;
}

bool node_inside_job(const struct node *n) { return n->kind >= N_JOB && n->kind <= N_ENTRY; }
