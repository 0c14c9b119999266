/* workers: the end of the background threads (poller.c, fetcher.c). */
#include "job.h"

void workers_stop(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    r->stopping = 1;
    pthread_cond_broadcast(&r->work);
    registry_changed_locked(r, NULL); /* every waiting request answers */
    pthread_mutex_unlock(&r->lock);
    cloud_stop(r->cloud);
    fetcher_join();
    poller_join();
}
