/* eventlogs_model: the folder model's data: a listed file's identity,
 * local stem and inode number, the two sorted views of a project's files
 * (by identity, by name), the naming rules (cleaned names, "<id>.csv",
 * "-<id>" on a clash) and the journal record that keeps names, sizes and
 * times across remounts. */
#include "eventlogs_internal.h"
#include "sorted.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

/* SHA-256 of a, its NUL, then b. */
static void digest(const char *a, const char *b, unsigned char out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(c, a, strlen(a) + 1) || !EVP_DigestUpdate(c, b, strlen(b)) ||
        !EVP_DigestFinal_ex(c, out, NULL)) {
        /* Out of memory: a weaker digest still keeps names distinct. */
        uint64_t h = 1469598103934665603ULL;
        for (const char *s = b; *s; s++)
            h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        memset(out, 0, 32);
        memcpy(out, &h, sizeof h);
    }
    EVP_MD_CTX_free(c);
}

/* Identity, local stem and inode number of a listed file.  A hostile list
 * must not make two files share a local copy: the stem is the id when it is
 * a safe file name, else 128 bits of SHA-256 of the identity. */
static void file_identity(struct evfile *f, const char *project)
{
    unsigned char d[32];
    snprintf(f->key, sizeof f->key, "%c%s", f->id[0] ? 'i' : 'o', f->id[0] ? f->id : f->obsname);
    if (f->id[0] && cloud_id_is_safe(f->id, 64)) {
        snprintf(f->lid, sizeof f->lid, "i%s", f->id);
    } else {
        digest("", f->key, d);
        f->lid[0] = 'h';
        for (int i = 0; i < 16; i++)
            snprintf(f->lid + 1 + 2 * i, 3, "%02x", d[i]);
    }
    digest(project, f->key, d);
    uint64_t ino = 0;
    for (int i = 0; i < 8; i++)
        ino = ino << 8 | d[i];
    f->ino = ino ? ino : 1;
}

static const char *name_of(const void *f) { return ((const struct evfile *)f)->name; }
static const char *key_of(const void *f) { return ((const struct evfile *)f)->key; }

size_t ev_find_slot(struct evfile *const *a, size_t n, const char *s, int by_name, int *found)
{
    return sorted_slot((void *const *)a, n, s, by_name ? name_of : key_of, found);
}

static int insert_sorted(struct evfile ***a, size_t n, size_t *cap, struct evfile *f, int by_name)
{
    int found;
    size_t at = ev_find_slot(*a, n, by_name ? f->name : f->key, by_name, &found);
    if (found)
        return -EEXIST;
    if (n >= *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        struct evfile **p = realloc(*a, ncap * sizeof *p);
        if (!p)
            return -ENOMEM;
        *a = p;
        *cap = ncap;
    }
    memmove(*a + at + 1, *a + at, (n - at) * sizeof **a);
    (*a)[at] = f;
    return 0;
}

void ev_remove_sorted(struct evfile **a, size_t n, const struct evfile *f, int by_name)
{
    int found;
    size_t at = ev_find_slot(a, n, by_name ? f->name : f->key, by_name, &found);
    if (found && a[at] == f)
        memmove(a + at, a + at + 1, (n - at - 1) * sizeof *a);
}

/* ------------------------------------------------------------------ names */

static int is_packing_suffix(const char *ext)
{
    return !strcasecmp(ext, ".gz") || !strcasecmp(ext, ".bz2") || !strcasecmp(ext, ".xz") ||
           !strcasecmp(ext, ".zst");
}

/* Where the extension starts ("a.csv.gz": at ".csv.gz"); strlen when none. */
static size_t ext_start(const char *name)
{
    size_t n = strlen(name);
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || n - (size_t)(dot - name) > 11)
        return n;
    size_t at = (size_t)(dot - name);
    if (is_packing_suffix(dot))
        for (size_t k = at; k-- > 1 && at - k <= 8;)
            if (name[k] == '.') {
                at = k;
                break;
            }
    return at;
}

/* base with suffix put before its extension, cut to fit 255 bytes. */
static void with_suffix(const char *base, const char *suffix, char out[256])
{
    size_t e = ext_start(base), sl = strlen(suffix), xl = strlen(base + e);
    size_t room = 255 > sl + xl ? 255 - sl - xl : 0;
    size_t keep = aindex_name_cut(base, e, room);
    snprintf(out, 256, "%.*s%s%s", (int)keep, base, suffix, base + e);
}

static int name_taken(const struct evproject *p, const char *name)
{
    int found;
    ev_find_slot(p->names, p->n, name, 1, &found);
    return found;
}

/* filesystem.md: the file's name cleaned like archive entry names,
 * "<id>.csv" when empty, and "-<id>" before the extension on a clash. */
int ev_assign_name(struct evproject *p, struct evfile *f)
{
    char base[256], idpart[256], tag[80], cand[256];
    aindex_clean_flat_name(f->id, idpart);
    idpart[aindex_name_cut(idpart, strlen(idpart), 64)] = '\0';
    if (!idpart[0])
        snprintf(idpart, sizeof idpart, "%.13s", f->lid + 1);
    aindex_clean_flat_name(f->filename, base);
    if (!base[0])
        snprintf(base, sizeof base, "%s.csv", idpart);
    snprintf(cand, sizeof cand, "%s", base);
    for (int k = 1; name_taken(p, cand); k++) {
        if (k > 100)
            return -EEXIST;
        if (k == 1)
            snprintf(tag, sizeof tag, "-%s", idpart);
        else
            snprintf(tag, sizeof tag, "-%s-%d", idpart, k);
        with_suffix(base, tag, cand);
    }
    snprintf(f->name, sizeof f->name, "%s", cand);
    return 0;
}

/* ------------------------------------------------------------- the model */

void ev_unref_locked(struct eventlogs *el, struct evfile *f)
{
    (void)el;
    if (--f->refs == 0) {
        free(f->url);
        free(f);
    }
}

static struct evproject *new_project(struct eventlogs *el, const char *id)
{
    if (el->nprojects == el->cap) {
        size_t ncap = el->cap ? el->cap * 2 : 8;
        struct evproject **a = realloc(el->projects, ncap * sizeof *a);
        if (!a)
            return NULL;
        el->projects = a;
        el->cap = ncap;
    }
    struct evproject *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->id, sizeof p->id, "%s", id);
    p->fresh_at = -1e18;
    el->projects[el->nprojects++] = p;
    return p;
}

struct evproject *ev_project_locked(struct eventlogs *el, const char *id)
{
    for (size_t i = 0; i < el->nprojects; i++)
        if (!strcmp(el->projects[i]->id, id))
            return el->projects[i];
    return registry_project_locked(el->r, id) ? new_project(el, id) : NULL;
}

struct evfile *ev_new_file(const struct event_file *it, const char *project)
{
    struct evfile *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    snprintf(f->id, sizeof f->id, "%s", it->id);
    snprintf(f->obsname, sizeof f->obsname, "%s", it->obsname);
    snprintf(f->filename, sizeof f->filename, "%s", it->filename);
    f->timestamp = it->timestamp;
    f->size = -1;
    f->refs = 1;
    file_identity(f, project);
    return f;
}

/* Into both arrays; the file must have its name.  Lock held. */
int ev_add_file(struct evproject *p, struct evfile *f)
{
    int rc = insert_sorted(&p->files, p->n, &p->cap, f, 0);
    if (rc)
        return rc;
    rc = insert_sorted(&p->names, p->n, &p->names_cap, f, 1);
    if (rc) {
        ev_remove_sorted(p->files, p->n + 1, f, 0);
        return rc;
    }
    f->proj = p;
    p->n++;
    return 0;
}

struct job *ev_claimed_by_locked(struct eventlogs *el, const struct evfile *f)
{
    struct project *rp = registry_project_locked(el->r, f->proj->id);
    for (size_t k = 0; rp && k < rp->njobs; k++) {
        struct job *j = rp->jobs[k];
        if (j->service != SERVICE_WAF || j->forgotten || j->archive == ARCHIVE_NONE ||
            j->archive == ARCHIVE_LOCATING)
            continue;
        if (f->id[0] ? !strcmp(j->task.file_id, f->id)
                     : f->obsname[0] && !strcmp(j->file_obsname, f->obsname))
            return j;
    }
    return NULL;
}


/* ---------------------------------------------------------------- journal */

void ev_load_project(struct eventlogs *el, const char *id)
{
    char path[PATH_MAX];
    if (pathf(path, "%s/%s.json", el->dir, id))
        return;
    json_error_t jerr;
    json_t *rec = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!rec) {
        if (access(path, F_OK) == 0)
            log_error("event-logs record %s is damaged (%s); the folder is listed again",
                      path, jerr.text);
        return;
    }
    struct evproject *p = ev_project_locked(el, id);
    json_t *files = json_object_get(rec, "files"), *v;
    size_t i, bad = 0;
    json_array_foreach(files, i, v) {
        struct event_file it = { .timestamp = -1 };
        const char *s;
        if ((s = json_string_value(json_object_get(v, "id"))))
            snprintf(it.id, sizeof it.id, "%s", s);
        if ((s = json_string_value(json_object_get(v, "obsname"))))
            snprintf(it.obsname, sizeof it.obsname, "%s", s);
        if ((s = json_string_value(json_object_get(v, "filename"))))
            snprintf(it.filename, sizeof it.filename, "%s", s);
        json_t *ts = json_object_get(v, "timestamp"), *sz = json_object_get(v, "size");
        const char *name = json_string_value(json_object_get(v, "name"));
        char check[256];
        aindex_clean_flat_name(name ? name : "", check);
        struct evfile *f = p && (it.id[0] || it.obsname[0]) && name && name[0] &&
                           !strcmp(check, name) ? ev_new_file(&it, id) : NULL;
        if (!f) {
            bad++;
            continue;
        }
        snprintf(f->name, sizeof f->name, "%s", name);
        f->timestamp = json_is_integer(ts) ? json_integer_value(ts) : -1;
        if (json_is_integer(sz) && json_integer_value(sz) >= 0 &&
            json_integer_value(sz) <= CLOUD_MAX_FILE_BYTES) {
            f->size = json_integer_value(sz);
            f->sizing = SIZE_KNOWN;
        }
        if (ev_add_file(p, f)) {
            bad++;
            free(f);
        }
    }
    json_t *at = json_object_get(rec, "listed_at");
    if (p && json_is_integer(at)) {
        p->have_list = 1;
        p->listed_at = (time_t)json_integer_value(at);
        /* A list younger than poll_interval is not listed again at once. */
        double age = difftime(time(NULL), p->listed_at);
        p->fresh_at = monotonic_now() - (age > 0 ? age : 0);
    }
    if (bad)
        log_warn("event-logs record %s: %zu entries unusable; they are listed again", path, bad);
    json_decref(rec);
}

/* Writes the project's record when it changed (a snapshot taken under
 * the lock, written outside it). */
void ev_save_project(struct eventlogs *el, struct evproject *p)
{
    struct registry *r = el->r;
    pthread_mutex_lock(&el->save_lock);
    pthread_mutex_lock(&r->lock);
    json_t *rec = NULL;
    if (p->dirty && p->have_list) {
        p->dirty = 0;
        json_t *files = json_array();
        for (size_t i = 0; i < p->n; i++) {
            const struct evfile *f = p->files[i];
            json_array_append_new(files, json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "id", f->id,
                                                   "obsname", f->obsname, "filename",
                                                   f->filename, "name", f->name, "timestamp",
                                                   (json_int_t)f->timestamp, "size",
                                                   f->sizing == SIZE_KNOWN
                                                       ? json_integer(f->size) : json_null()));
        }
        rec = json_pack("{s:s, s:I, s:o}", "project_id", p->id, "listed_at",
                        (json_int_t)p->listed_at, "files", files);
    }
    pthread_mutex_unlock(&r->lock);
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    if (rec) {
        char name[80];
        snprintf(name, sizeof name, "%s.json", p->id);
        int rc = text ? write_file_atomic(el->dir, name, text, strlen(text)) : -ENOMEM;
        if (rc) {
            log_error("project %s: cannot save the event-logs record: %s", p->id, strerror(-rc));
            pthread_mutex_lock(&r->lock);
            p->dirty = 1;
            pthread_mutex_unlock(&r->lock);
        }
    }
    free(text);
    json_decref(rec);
    pthread_mutex_unlock(&el->save_lock);
}

struct evfile *ev_by_name_locked(struct evproject *p, const char *name)
{
    int found;
    size_t at = ev_find_slot(p->names, p->n, name, 1, &found);
    return found ? p->names[at] : NULL;
}
