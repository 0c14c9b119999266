/* fs/handles: the life of a handle (fs_internal.h struct handle), an open
 * file's or an open directory's.  Every handle is also on the mount's list,
 * so that the ones the kernel never released (an unmount ends the session
 * first; release and releasedir are asynchronous) are freed at the end. */
#include "fs_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct handle *handle_new(struct fs *fs, enum node_kind kind)
{
    struct handle *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->kind = kind;
    h->fd = -1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_lock(&fs->handles_lock);
    h->next = fs->handles;
    if (fs->handles)
        fs->handles->prev = h;
    fs->handles = h;
    pthread_mutex_unlock(&fs->handles_lock);
    return h;
}

void handle_free(struct fs *fs, struct handle *h)
{
    pthread_mutex_lock(&fs->handles_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        fs->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&fs->handles_lock);
    if (h->reader)
        areader_close(h->reader);
    if (h->holds_index)
        registry_index_done(fs->r, h->job);
    if (h->job)
        registry_put_job(fs->r, h->job);
    if (h->fd >= 0)
        close(h->fd);
    if (h->holds_evlog)
        eventlogs_release(registry_eventlogs(fs->r), &h->evlog);
    free(h->text);
    free(h->reply);
    free(h->entry_path);
    dir_snapshot_clear(&h->snap);
    strbuf_release(&h->input);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void dir_snapshot_clear(struct dir_snapshot *snap)
{
    if (snap->listed)
        eventlog_listing_release(&snap->listing);
    for (size_t i = 0; i < snap->n; i++)
        free(snap->names[i].name);
    free(snap->names);
    memset(snap, 0, sizeof *snap);
}
