/* fs/fs_internal.h: what the front end's modules share: the mount's state
 * (struct fs), open-file handles, and the functions each module offers the
 * operations table (ops.c, the top of this folder).
 *
 * Layers, bottom up: paths, inodes, calls (no registry knowledge beyond
 * REGISTRY_WAIT), handles -> attrs (generated text and stat of any node)
 * -> newfile (the `new` protocol) -> listing, files (one operation family
 * each) -> ops (the table; the only module libfuse calls). */
#ifndef HCX_FS_INTERNAL_H
#define HCX_FS_INTERNAL_H

#include "calls.h"
#include "eventlogs.h"
#include "inodes.h"
#include "paths.h"
#include "registry.h"
#include "strbuf.h"

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <sys/stat.h>

/* Cached by the kernel for this long; `new` jobs show at once (no
 * negative caching). */
#define FS_ENTRY_TIMEOUT 1.0
#define FS_ATTR_TIMEOUT 1.0

struct handle;

struct fs {
    struct registry *r;
    struct inodes *inodes;
    struct calls *calls;
    struct fuse_session *se;
    pthread_mutex_t handles_lock;
    struct handle *handles;         /* every open file and directory, freed at the end if left */
    int stopped;
};

/* One name of a directory snapshot: its type, and for a job directory
 * its modification time (dir_time != 0). */
struct dir_name {
    char *name;
    mode_t type;
    time_t dir_time;
};

/* The listing of an open directory whose names come and go (projects/,
 * exports/, archives/, event-logs/): every readdir of one listing answers
 * from a snapshot taken by its readdir at offset 0 (the first one, and
 * each rewinddir).  Offsets are indices into it, so a job, project or
 * event-log file that appears or leaves between two buffers can neither
 * repeat nor skip another name. */
struct dir_snapshot {
    int listed;
    struct eventlog_listing listing;    /* event-logs/ */
    struct dir_name *names;             /* the others */
    size_t n, cap;
    int nomem;                          /* while taking it */
};
void dir_snapshot_clear(struct dir_snapshot *);

struct handle {
    enum node_kind kind;
    struct job *job;                /* a reference (registry_get_job) */
    pthread_mutex_t lock;
    /* N_STATUS, N_JOB_JSON, N_STATS: a snapshot taken at open */
    char *text;
    size_t text_len;
    /* N_NEW */
    struct strbuf input;
    enum { SUB_COLLECTING, SUB_SUBMITTING, SUB_DONE, SUB_FAILED } sub_state;
    char *reply;                    /* "job id\n" or "error: why\n" */
    int sub_errno;
    off_t reply_base;
    int reply_base_set;
    char project[NODE_ID_MAX];
    /* N_ENTRY, N_ARCHIVE_FILE: the archive is in use (not evicted) */
    int holds_index;
    struct areader *reader;
    char *entry_path;               /* for error messages */
    /* N_ARCHIVE_FILE */
    int fd;
    /* N_EVLOG_FILE */
    struct eventlog_file evlog;
    int holds_evlog;
    /* projects/, exports/, archives/, event-logs/ (opendir) */
    struct dir_snapshot snap;
    struct handle *prev, *next;
};

/* ---- attrs.c ---- */
char *stats_text(struct fs *);
void fill_dir(struct stat *, mode_t mode, time_t mtime);
void fill_file(struct stat *, mode_t mode, off_t size, time_t mtime);
void fill_anode(struct stat *, const struct anode *);
/* stat of status, .job.json or .wait, from a view with its texts. */
int stat_control(const struct job_view *, enum node_kind, struct stat *);
/* stat of a parsed path: 0, -errno, or REGISTRY_WAIT with *key set. */
int node_attr(struct fs *, const struct node *, struct stat *, const void **key);
/* Resolves an entry of a job's archive, for a listing (which may see an
 * index still being verified) or an open; on 0 the index is in use until
 * registry_index_done().  REGISTRY_WAIT: *key is the job. */
int job_entry(struct registry *, struct job *, const char *entry, bool listing,
              const struct anode **out, struct aindex **idx_out, const void **key);

/* ---- listing.c: readdir and readdirplus ---- */
int run_readdir(struct fs_call *);

/* ---- handles.c ---- */
struct handle *handle_new(struct fs *, enum node_kind);
void handle_free(struct fs *, struct handle *);

/* ---- files.c: open/read/release of everything but `new` ---- */
int run_open(struct fs_call *);
int run_wait_read(struct fs_call *);
void files_read(struct fs *, fuse_req_t, struct handle *, size_t size, off_t off);

/* ---- newfile.c: the `new` protocol ---- */
int new_open(struct fs *, const struct node *, struct fuse_file_info *);
void new_write(struct fs *, fuse_req_t, struct handle *, const char *data, size_t size);
void new_read(fuse_req_t, struct handle *, size_t size, off_t off);
int new_flush(struct handle *);

#endif
