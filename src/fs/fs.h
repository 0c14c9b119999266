/* fs: the FUSE front end (src/fs/): the mount's tree (filesystem.md
 * "Tree"), the `new` submission protocol, control files and the archive
 * view, on libfuse's low-level API so that waiting requests hold no thread.
 *
 *   $ hcexportfs -o endpoint=http://127.0.0.1:8080,projects=0a1b...f9 /mnt
 *   $ echo '{"recent":"today","dump_columns":["id","time"]}' > /mnt/projects/0a1b...f9/exports/new
 *   $ ls /mnt/projects/0a1b...f9/exports/
 *   4f0c...e2  new
 *   $ cat /mnt/projects/0a1b...f9/exports/4f0c...e2/.wait
 *   success
 *   $ ls /mnt/projects/0a1b...f9/exports/4f0c...e2/
 *   events.csv  manifest.json  status */
#ifndef HCX_FS_H
#define HCX_FS_H

#include <fuse_lowlevel.h>

struct registry;
struct fs;

/* The session for r; libfuse's own options are taken from args.  NULL
 * after libfuse printed why. */
struct fs *fs_new(struct fuse_args *args, struct registry *r);
struct fuse_session *fs_session(struct fs *);
/* Once the session loop ended: stops the registry's workers and answers
 * every request still waiting (EINTR).  Idempotent. */
void fs_stop(struct fs *);
/* Destroys the session (after fuse_session_unmount). */
void fs_free(struct fs *);

#endif
