/* fs/paths: the mount's path grammar (filesystem.md "Tree").  A path is
 * parsed into a node kind plus its project, job and entry parts; nothing
 * here knows whether they exist.
 *
 *   /projects/<p>/exports/<j>/a/b.csv   -> N_ENTRY, p, j, entry "a/b.csv"
 *   /projects/<p>/archives/<j>.csv.gz   -> N_ARCHIVE_FILE, p, j, "csv.gz"
 *   /projects/<p>/event-logs/<name>     -> N_EVLOG_FILE, p, entry "<name>" */
#ifndef HCX_FS_PATHS_H
#define HCX_FS_PATHS_H

#include <stdbool.h>

enum node_kind {
    N_ROOT, N_STATS, N_PROJECTS, N_PROJECT, N_EXPORTS, N_NEW, N_JOB, N_STATUS, N_JOB_JSON,
    N_WAIT, N_ENTRY, N_ARCHIVES, N_ARCHIVE_FILE, N_EVLOGS, N_EVLOG_FILE,
};

#define NODE_ID_MAX 65      /* project and job ids: 64 characters */
#define NODE_FORMAT_MAX 8   /* "csv.gz" */

struct node {
    enum node_kind kind;
    char project[NODE_ID_MAX];
    char job[NODE_ID_MAX];
    const char *entry;      /* N_ENTRY: the path below the job; N_EVLOG_FILE: the
                             * file's name (both inside the parsed string) */
    char format[NODE_FORMAT_MAX]; /* N_ARCHIVE_FILE: the name's suffix */
};

/* 0, -ENOENT (no such name can exist) or -ENOTDIR.  n->entry points into
 * path, which must outlive n. */
int path_parse(const char *path, struct node *n);

/* Inside a job directory (the job itself included): read-only. */
bool node_inside_job(const struct node *n);

#endif
