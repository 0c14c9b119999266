/* job.h: what the modules of jobs/ share about jobs and projects, and
 * nothing the front end sees (registry.h is its interface).  Included only
 * by the .c files of src/jobs (and the unit tests): tests/check-layers fails an
 * include of it from another folder. */
#ifndef HCX_JOB_H
#define HCX_JOB_H

#include "registry.h"

/* ---- job.c ---- */
struct job *new_job(const char *id, enum cloud_service service);
void job_free(struct job *);
/* Binary search over an array of pointers to structs starting with char id[]. */
size_t find_slot(void *const *items, size_t n, const char *id, int *found);
/* -EEXIST (with *out the existing one), -ENOMEM; lock held. */
int add_project_locked(struct registry *, const char *id, time_t added_at, struct project **out);
/* Adds j (taking the registry's reference); -EEXIST, -ENOMEM; lock held. */
int add_job_locked(struct project *, struct job *);
/* Takes the job's local file as its archive when there is one; lock held. */
int adopt_local_file_locked(struct registry *, struct job *);
/* Every change of a job's archive state (lock held): logs it (debug),
 * wakes the workers when it gives them work (queued, locating) and the
 * requests waiting on the job.  why: the cause, for the log. */
void job_set_archive_locked(struct registry *, struct job *, enum archive_state,
                            const char *why);
const char *archive_state_name(enum archive_state);

/* ---- job_json.c ---- */

/* ---- poller.c, fetcher.c: their threads end (after r->stopping is set) ---- */
void poller_join(void);
void fetcher_join(void);

#endif
