/* fs: the FUSE operations: the mount's tree (filesystem.md "Tree"), the
 * `new` submission protocol, control files and the archive view.
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

#include <fuse.h>

struct registry;

const struct fuse_operations *fs_operations(void);

#endif
