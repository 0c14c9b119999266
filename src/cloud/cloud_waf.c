/* cloud_waf: the calls of the WAF flow (cloud-api.md §2-4): submit an
 * export job, list the event-log files (a page, or the whole list), learn
 * a listed file's size and download it through its pre-signed URL.  Calls
 * cloud_call and cloud_reply. */
#include "cloud_call.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cloud_submit_waf(struct cloud *c, const char *project, const char *body, size_t len,
                     struct submit_reply *out, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_SUBMIT, .what = "submit WAF export job",
                           .method = "POST", .ep = &c->waf, .project = project, .body = body,
                           .body_len = len, .attempts = 4, .out_fd = -1 };
    snprintf(s.path, sizeof s.path, "/v1/%s/waf/event/job/export", project);
    return cloud_call_and_parse(c, &s, s.what, cloud_submit_waf_fields, out, e, &out->server_ms);
}


int cloud_list_event_files(struct cloud *c, const char *project, int page, int pagesize,
                           struct event_page *out, struct cloud_error *e)
{
    char pagebuf[16], sizebuf[16];
    snprintf(pagebuf, sizeof pagebuf, "%d", page);
    snprintf(sizebuf, sizeof sizebuf, "%d", pagesize);
    struct call_spec s = { .call = CALL_LIST, .what = "list WAF event-log files",
                           .method = "GET", .ep = &c->waf, .project = project, .attempts = 3,
                           .out_fd = -1 };
    s.query[s.nquery++] = (struct cloud_param){ "page", pagebuf };
    s.query[s.nquery++] = (struct cloud_param){ "pagesize", sizebuf };
    snprintf(s.path, sizeof s.path, "/v1/%s/waf/event/dump", project);
    memset(out, 0, sizeof *out);
    int rc = cloud_call_and_parse(c, &s, s.what, cloud_event_page_fields, out, e, NULL);
    if (rc)
        event_page_release(out);
    return rc;
}

/* The whole list: pages of WAF's largest size, each item once.  A page
 * that adds nothing new ends it too: a service that ignores `page` would
 * otherwise send its first page max_items/100 times. */
int cloud_list_all_event_files(struct cloud *c, const char *project, size_t max_items,
                               struct event_list *out, struct cloud_error *e)
{
    enum { PAGE = 100 };
    memset(out, 0, sizeof *out);
    out->total = -1;
    int64_t first_total = -2;
    for (int page = 1; out->n < max_items; page++) {
        struct event_page pg;
        int rc = cloud_list_event_files(c, project, page, PAGE, &pg, e);
        out->calls++;
        if (rc) {
            event_list_release(out);
            return rc;
        }
        if (first_total == -2)
            first_total = pg.total;
        else if (pg.total != first_total)
            out->moved = 1; /* files came or went while paging */
        out->total = pg.total;
        size_t fresh = 0;
        for (size_t i = 0; i < pg.n && out->n < max_items; i++) {
            struct event_file *f = &pg.items[i];
            int dup = 0;
            /* Pages overlap only where the list moved: look back one page. */
            for (size_t k = out->n > 2 * PAGE ? out->n - 2 * PAGE : 0; k < out->n && !dup; k++)
                dup = (f->id[0] && !strcmp(f->id, out->items[k].id)) ||
                      (!f->id[0] && f->obsname[0] && !out->items[k].id[0] &&
                       !strcmp(f->obsname, out->items[k].obsname));
            if (dup) {
                out->moved = 1;
                continue;
            }
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 256;
                struct event_file *items = realloc(out->items, cap * sizeof *items);
                if (!items) {
                    event_page_release(&pg);
                    event_list_release(out);
                    memset(e, 0, sizeof *e);
                    return cloud_fail(e, ENOMEM, "list WAF event-log files: out of memory");
                }
                out->items = items;
                out->cap = cap;
            }
            out->items[out->n++] = *f;
            f->url = NULL; /* moved */
            fresh++;
        }
        size_t got = pg.n + pg.skipped;
        out->skipped += pg.skipped;
        fresh += pg.skipped; /* unusable, but listed: the list went on */
        event_page_release(&pg);
        /* A service that caps pages below PAGE still says `total`: a short
         * page ends the list only when no total is given. */
        int64_t seen = (int64_t)(out->n + out->skipped);
        if (got == 0 || fresh == 0 || (out->total >= 0 && seen >= out->total) ||
            (out->total < 0 && got < PAGE)) {
            /* Fewer items than the total said: some went while paging. */
            if (out->total >= 0 && seen < out->total)
                out->moved = 1;
            return 0;
        }
    }
    out->cut = 1;
    return 0;
}

void event_list_release(struct event_list *l)
{
    for (size_t i = 0; l->items && i < l->n; i++)
        free(l->items[i].url);
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

/* Learns a stored file's size without its body: a GET of the first byte
 * (a pre-signed URL is signed for GET, and OBS signs the verb, so HEAD is
 * refused with it), the size from Content-Range, or from Content-Length
 * when storage ignores Range.  An empty object answers 200 with no body or
 * 416: a first byte past the end is what 416 means for bytes=0-0, so a 416
 * tells an empty file whether or not it names the size (bytes * /0), unless
 * its Content-Range names another one. */
int cloud_storage_size(struct cloud *c, const char *url, int64_t *size, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_PROBE, .what = "size of WAF event-log file",
                           .method = "GET", .url = url, .attempts = 3, .out_fd = -1,
                           .probe = 1 };
    *size = -1;
    if (!cloud_url_is_fetchable(url)) {
        memset(e, 0, sizeof *e);
        return cloud_fail(e, EIO, "%s: the listed URL is not an http(s) URL", s.what);
    }
    struct http_response resp;
    http_response_init(&resp);
    int rc = cloud_perform(c, &s, &resp, e);
    if (rc && e->status == 416 && resp.total <= 0) {
        rc = 0; /* nothing at byte 0: an empty file */
        resp.total = 0;
    }
    if (rc == 0 && (resp.total < 0 || resp.total > CLOUD_MAX_FILE_BYTES)) {
        rc = cloud_fail(e, EIO, "%s: storage announced %s", s.what,
                        resp.total < 0 ? "no size" : "an implausible size");
    }
    if (rc == 0)
        *size = resp.total;
    http_response_release(&resp);
    return rc;
}

int cloud_download_url(struct cloud *c, const char *url, int fd, uint64_t have,
                       cloud_progress_fn progress, void *arg, const atomic_int *cancel,
                       int64_t *total, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_DOWNLOAD, .what = "download WAF event-log file",
                           .method = "GET", .url = url, .progress = progress,
                           .progress_arg = arg, .cancel = cancel };
    if (!cloud_url_is_fetchable(url)) {
        memset(e, 0, sizeof *e);
        return cloud_fail(e, EIO, "%s: the listed URL is not an http(s) URL", s.what);
    }
    return cloud_download(c, &s, "of the WAF file", fd, have, total, e);
}

