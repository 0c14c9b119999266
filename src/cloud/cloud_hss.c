/* cloud_hss: the calls of the HSS flow (cloud-api.md §6-8): create an
 * export task and download its file.  Calls cloud_call. */
#include "cloud_call.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int cloud_submit_hss(struct cloud *c, const char *project, const struct cloud_param *query,
                     size_t nquery, const char *body, size_t len, struct submit_reply *out,
                     struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_SUBMIT, .what = "create HSS export task",
                           .method = "POST", .ep = &c->hss, .project = project, .body = body,
                           .body_len = len, .attempts = 4, .out_fd = -1 };
    memset(e, 0, sizeof *e);
    if (nquery >= MAX_QUERY) {
        return cloud_fail(e, EINVAL, "%s: more than %d query parameters", s.what,
                          MAX_QUERY - 1);
    }
    memcpy(s.query, query, nquery * sizeof *query);
    s.nquery = nquery;
    cloud_add_enterprise_project(c, &s, "enterprise_project_id");
    snprintf(s.path, sizeof s.path, "/v5/%s/event/export", project);
    return cloud_call_and_parse(c, &s, s.what, cloud_submit_hss_fields, out, e, &out->server_ms);
}


int cloud_download_hss(struct cloud *c, const char *project, const char *file_id, int fd,
                       uint64_t have, cloud_progress_fn progress, void *arg,
                       const atomic_int *cancel, int64_t *total, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_DOWNLOAD, .what = "download HSS export file",
                           .method = "GET", .ep = &c->hss, .project = project,
                           .progress = progress, .progress_arg = arg, .region = c->region,
                           .cancel = cancel };
    snprintf(s.path, sizeof s.path, "/v5/%s/download/%s", project, file_id);
    cloud_add_enterprise_project(c, &s, "enterprise_project_id");
    return cloud_download(c, &s, file_id, fd, have, total, e);
}

