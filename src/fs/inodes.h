/* fs/inodes: the kernel's inode numbers, each naming one path of the tree.
 * A number lives while the kernel holds lookups on it (its nlookup count);
 * numbers are never reused within a mount, so a forgotten and re-created
 * job never answers for an inode the kernel still has of its namesake. */
#ifndef HCX_FS_INODES_H
#define HCX_FS_INODES_H

#include <fuse_lowlevel.h>
#include <stdint.h>

struct inodes;

struct inodes *inodes_new(void);
void inodes_free(struct inodes *);

/* One more kernel lookup of path: its number (0 when out of memory). */
fuse_ino_t inodes_ref(struct inodes *, const char *path);
/* The kernel dropped n lookups of ino. */
void inodes_forget(struct inodes *, fuse_ino_t ino, uint64_t n);
/* A malloc'd copy of ino's path ("/" for the root); NULL: unknown number
 * (-ESTALE) or out of memory (-ENOMEM) in *err. */
char *inodes_path(struct inodes *, fuse_ino_t ino, int *err);
/* The number the kernel knows path by, or 0. */
fuse_ino_t inodes_find(struct inodes *, const char *path);
/* How many numbers are alive (for .stats and tests). */
size_t inodes_count(struct inodes *);

#endif
