/* fs/inodes: two chained hash tables (by number, by path) over one record
 * per live inode, under one mutex held only for the table operation. */
#include "inodes.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct inode {
    fuse_ino_t ino;
    uint64_t nlookup;
    struct inode *next_by_ino, *next_by_path;
    size_t hash;            /* of path */
    char path[];
};

struct inodes {
    pthread_mutex_t lock;
    struct inode **by_ino, **by_path;
    size_t buckets, count;
    fuse_ino_t next_ino;
};

static size_t hash_path(const char *s)
{
    size_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t slot_of_ino(const struct inodes *t, fuse_ino_t ino)
{
    return (size_t)(ino * 0x9E3779B97F4A7C15ULL) & (t->buckets - 1);
}

struct inodes *inodes_new(void)
{
    struct inodes *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->buckets = 1024;
    t->by_ino = calloc(t->buckets, sizeof *t->by_ino);
    t->by_path = calloc(t->buckets, sizeof *t->by_path);
    if (!t->by_ino || !t->by_path) {
        free(t->by_ino);
        free(t->by_path);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->next_ino = FUSE_ROOT_ID + 1;
    return t;
}

void inodes_free(struct inodes *t)
{
    if (!t)
        return;
    for (size_t b = 0; b < t->buckets; b++)
        for (struct inode *n = t->by_ino[b], *next; n; n = next) {
            next = n->next_by_ino;
            free(n);
        }
    free(t->by_ino);
    free(t->by_path);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct inode *find_path_locked(struct inodes *t, const char *path, size_t h)
{
    for (struct inode *n = t->by_path[h & (t->buckets - 1)]; n; n = n->next_by_path)
        if (n->hash == h && strcmp(n->path, path) == 0)
            return n;
    return NULL;
}

static struct inode *find_ino_locked(struct inodes *t, fuse_ino_t ino)
{
    for (struct inode *n = t->by_ino[slot_of_ino(t, ino)]; n; n = n->next_by_ino)
        if (n->ino == ino)
            return n;
    return NULL;
}

/* Doubles both tables when they hold one record per bucket; a failed
 * allocation only leaves the chains longer. */
static void grow_locked(struct inodes *t)
{
    size_t nb = t->buckets * 2;
    struct inode **bi = calloc(nb, sizeof *bi), **bp = calloc(nb, sizeof *bp);
    if (!bi || !bp) {
        free(bi);
        free(bp);
        return;
    }
    for (size_t b = 0; b < t->buckets; b++)
        for (struct inode *n = t->by_ino[b], *next; n; n = next) {
            next = n->next_by_ino;
            size_t si = (size_t)(n->ino * 0x9E3779B97F4A7C15ULL) & (nb - 1);
            n->next_by_ino = bi[si];
            bi[si] = n;
            n->next_by_path = bp[n->hash & (nb - 1)];
            bp[n->hash & (nb - 1)] = n;
        }
    free(t->by_ino);
    free(t->by_path);
    t->by_ino = bi;
    t->by_path = bp;
    t->buckets = nb;
}

fuse_ino_t inodes_ref(struct inodes *t, const char *path)
{
    if (strcmp(path, "/") == 0)
        return FUSE_ROOT_ID; /* the kernel never forgets the root */
    size_t h = hash_path(path);
    pthread_mutex_lock(&t->lock);
    struct inode *n = find_path_locked(t, path, h);
    if (!n) {
        size_t len = strlen(path);
        n = malloc(sizeof *n + len + 1);
        if (!n) {
            pthread_mutex_unlock(&t->lock);
            return 0;
        }
        memcpy(n->path, path, len + 1);
        n->hash = h;
        n->nlookup = 0;
        n->ino = t->next_ino++;
        size_t si = slot_of_ino(t, n->ino), sp = h & (t->buckets - 1);
        n->next_by_ino = t->by_ino[si];
        t->by_ino[si] = n;
        n->next_by_path = t->by_path[sp];
        t->by_path[sp] = n;
        if (++t->count > t->buckets)
            grow_locked(t);
    }
    n->nlookup++;
    fuse_ino_t ino = n->ino;
    pthread_mutex_unlock(&t->lock);
    return ino;
}

void inodes_forget(struct inodes *t, fuse_ino_t ino, uint64_t count)
{
    if (ino == FUSE_ROOT_ID)
        return;
    pthread_mutex_lock(&t->lock);
    struct inode *n = find_ino_locked(t, ino);
    if (n)
        n->nlookup = count < n->nlookup ? n->nlookup - count : 0;
    if (n && n->nlookup == 0) {
        struct inode **pp = &t->by_ino[slot_of_ino(t, ino)];
        while (*pp != n)
            pp = &(*pp)->next_by_ino;
        *pp = n->next_by_ino;
        pp = &t->by_path[n->hash & (t->buckets - 1)];
        while (*pp != n)
            pp = &(*pp)->next_by_path;
        *pp = n->next_by_path;
        t->count--;
        free(n);
    }
    pthread_mutex_unlock(&t->lock);
}

char *inodes_path(struct inodes *t, fuse_ino_t ino, int *err)
{
    if (ino == FUSE_ROOT_ID) {
        char *s = strdup("/");
        *err = s ? 0 : -ENOMEM;
        return s;
    }
    pthread_mutex_lock(&t->lock);
    struct inode *n = find_ino_locked(t, ino);
    char *s = n ? strdup(n->path) : NULL;
    *err = !n ? -ESTALE : s ? 0 : -ENOMEM;
    pthread_mutex_unlock(&t->lock);
    return s;
}

fuse_ino_t inodes_find(struct inodes *t, const char *path)
{
    if (strcmp(path, "/") == 0)
        return FUSE_ROOT_ID;
    size_t h = hash_path(path);
    pthread_mutex_lock(&t->lock);
    struct inode *n = find_path_locked(t, path, h);
    fuse_ino_t ino = n ? n->ino : 0;
    pthread_mutex_unlock(&t->lock);
    return ino;
}

size_t inodes_count(struct inodes *t)
{
    pthread_mutex_lock(&t->lock);
    size_t c = t->count;
    pthread_mutex_unlock(&t->lock);
    return c;
}
