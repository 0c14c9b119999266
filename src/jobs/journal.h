/* journal: what the mount remembers across unmounts, restarts and crashes.
 *
 * Layout under cache_dir (created 0700):
 *   CACHEDIR.TAG                     so backup tools skip the cache
 *   lock                             flock()ed: one mount per cache_dir
 *   journal/projects/<project>.json  one record per known project
 *   journal/jobs/<project>/<job>.json one record per known job
 *   archives/<project>/<job>.<fmt>   verified files, fmt zip, csv.gz or csv
 *                                    (.<job>.zip.part while fetching, whatever the format)
 *   journal/eventlogs/<project>.json, archives/<project>/event-logs/
 *                                    the event-logs/ folders (eventlogs.h)
 * Every record is written to a temporary file, fsync()ed, renamed over the
 * old one and the directory fsync()ed, so a crash leaves the old or the new
 * record, never a torn one.  One file per job means a damaged file costs at
 * most that job; it is moved aside as *.corrupt and reported. */
#ifndef HCX_JOURNAL_H
#define HCX_JOURNAL_H

#include <jansson.h>
#include <stddef.h>

struct journal;

int journal_open(const char *cache_dir, struct journal **out, char **why);
void journal_close(struct journal *);
const char *journal_cache_dir(const struct journal *);

typedef void (*journal_project_fn)(void *arg, const char *project, json_t *record);
typedef void (*journal_job_fn)(void *arg, const char *project, const char *job, json_t *record);
/* Calls back for every readable record; returns the number of damaged ones. */
int journal_load(struct journal *, journal_project_fn, journal_job_fn, void *arg);

int journal_save_project(struct journal *, const char *project, const json_t *record);
int journal_save_job(struct journal *, const char *project, const char *job, const json_t *record);
int journal_remove_job(struct journal *, const char *project, const char *job);

/* The formats a job's local file can have, NULL-terminated. */
extern const char *const journal_formats[];
/* Paths of a job's file (format: one of journal_formats) and of its
 * download in progress; out must hold PATH_MAX bytes. */
void journal_archive_path(const struct journal *, const char *project, const char *job,
                          const char *format, char *out);
void journal_partial_path(const struct journal *, const char *project, const char *job, char *out);
/* The sidecars kept beside an archive "<job>.zip" (its checkpoints and its
 * saved index, rebuilt from the archive when missing): removed with it and
 * counted in its size. */
void journal_unlink_sidecars(const char *zip_path);
int64_t journal_sidecar_bytes(const char *zip_path);
/* Creates archives/<project>/ if needed. */
int journal_archive_dir(const struct journal *, const char *project, char *out);

/* snprintf into a PATH_MAX buffer; -ENAMETOOLONG when it does not fit. */
int pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes data to dir/name atomically and durably.  Returns 0 or -errno. */
int write_file_atomic(const char *dir, const char *name, const void *data, size_t len);
int fsync_dir(const char *dir);

#endif
