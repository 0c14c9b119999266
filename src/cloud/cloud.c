/* cloud: a mount's cloud (its endpoints, credentials and HTTP client,
 * created, stopped and destroyed here), its statistics, and the call both
 * services share: a job's status.  The calls of each flow are in
 * cloud_waf and cloud_hss; all go through cloud_call, and read answers
 * with cloud_reply. */
#include "cloud_call.h"
#include "why.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_endpoint(const char *url, struct endpoint *ep, char **why)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int rc = -EINVAL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        set_why(why, "invalid endpoint URL '%s'", url);
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        set_why(why, "endpoint '%s': only http and https are supported", url);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    size_t plen = path ? strlen(path) : 0;
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (asprintf(&ep->host, "%s%s%s", host, port ? ":" : "", port ? port : "") < 0 ||
        asprintf(&ep->origin, "%s://%s", scheme, ep->host) < 0 ||
        !(ep->base_path = strndup(path ? path : "", plen))) {
        rc = -ENOMEM;
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

static void endpoint_release(struct endpoint *ep)
{
    free(ep->origin);
    free(ep->host);
    free(ep->base_path);
}

int cloud_create(const struct cloud_config *cfg, struct creds *creds, struct cloud **out,
                 char **why)
{
    struct cloud *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->stop_lock, NULL);
    pthread_cond_init(&c->stop_cond, NULL);
    int rc = parse_endpoint(cfg->waf_base, &c->waf, why);
    if (!rc)
        rc = parse_endpoint(cfg->hss_base, &c->hss, why);
    if (!rc && cfg->iam_base) {
        struct endpoint iam = { 0 };
        rc = parse_endpoint(cfg->iam_base, &iam, why);
        endpoint_release(&iam);
    }
    if (!rc && cfg->enterprise_project_id &&
        !(c->enterprise_project_id = strdup(cfg->enterprise_project_id)))
        rc = -ENOMEM;
    if (!rc && cfg->region && !(c->region = strdup(cfg->region)))
        rc = -ENOMEM;
    if (!rc)
        rc = http_client_create(cfg->cafile, cfg->request_timeout_s, &c->http, why);
    if (!rc)
        rc = auth_create(creds, c->http, cfg->iam_base, &c->auth);
    if (rc) {
        cloud_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cloud_destroy(struct cloud *c)
{
    if (!c)
        return;
    auth_destroy(c->auth);
    http_client_destroy(c->http);
    endpoint_release(&c->waf);
    endpoint_release(&c->hss);
    free(c->enterprise_project_id);
    free(c->region);
    pthread_mutex_destroy(&c->stop_lock);
    pthread_cond_destroy(&c->stop_cond);
    free(c);
}

const char *cloud_auth_description(const struct cloud *c) { return auth_describe(c->auth); }

void cloud_stop(struct cloud *c)
{
    pthread_mutex_lock(&c->stop_lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->stop_cond);
    pthread_mutex_unlock(&c->stop_lock);
}


int cloud_job_status(struct cloud *c, enum cloud_service svc, const char *project,
                     const char *id, int attempts, struct task_info *out, struct cloud_error *e)
{
    struct call_spec s = { .call = CALL_QUERY, .method = "GET", .project = project,
                           .attempts = attempts, .out_fd = -1 };
    char what[128];
    cloud_query_what(what, sizeof what, svc, id);
    s.what = what;
    if (svc == SERVICE_HSS) {
        s.ep = &c->hss;
        snprintf(s.path, sizeof s.path, "/v5/%s/event/export-task/%s", project, id);
        cloud_add_enterprise_project(c, &s, "enterprise_project_id");
    } else {
        s.ep = &c->waf;
        snprintf(s.path, sizeof s.path, "/v1/%s/waf/async-job/%s", project, id);
        cloud_add_enterprise_project(c, &s, "enterpriseProjectId");
    }
    int64_t server_ms = -1;
    int rc = cloud_call_and_parse(c, &s, what, svc == SERVICE_HSS ? cloud_hss_task_fields : cloud_waf_job_fields,
                            out, e, &server_ms);
    if (rc == 0)
        out->server_ms = server_ms;
    /* Services answer an id they do not know with 404, some with 400. */
    if (rc == -EINVAL && e->status == 400)
        rc = -ENOENT, e->err = ENOENT;
    return rc;
}


json_t *cloud_stats_json(struct cloud *c) { return http_stats_json(c->http); }
