/* The mount's path grammar (src/fs/paths.c): every node kind, the parts it
 * extracts, names that cannot exist (ENOENT) and paths that go through a
 * file (ENOTDIR), ids at and over their limit. */
#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#define P "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define J "4f0c1e2a9b8d7c6e5f4a3b2c1d0e9f8a"

static void expect(const char *path, int rc, enum node_kind kind, const char *project,
                   const char *job, const char *entry, const char *format)
{
    struct node n;
    int got = path_parse(path, &n);
    CHECK(got == rc, "%s: rc %d, want %d", path, got, rc);
    if (rc || got)
        return;
    CHECK(n.kind == kind, "%s: kind %d, want %d", path, n.kind, kind);
    CHECK(!strcmp(n.project, project), "%s: project '%s'", path, n.project);
    CHECK(!strcmp(n.job, job), "%s: job '%s'", path, n.job);
    CHECK(entry ? n.entry && !strcmp(n.entry, entry) : !n.entry, "%s: entry '%s'", path,
          n.entry ? n.entry : "(null)");
    CHECK(!strcmp(n.format, format), "%s: format '%s'", path, n.format);
}

static void test_kinds(void)
{
    expect("/", 0, N_ROOT, "", "", NULL, "");
    expect("/.stats", 0, N_STATS, "", "", NULL, "");
    expect("/projects", 0, N_PROJECTS, "", "", NULL, "");
    expect("/projects/" P, 0, N_PROJECT, P, "", NULL, "");
    expect("/projects/" P "/exports", 0, N_EXPORTS, P, "", NULL, "");
    expect("/projects/" P "/exports/new", 0, N_NEW, P, "", NULL, "");
    expect("/projects/" P "/exports/" J, 0, N_JOB, P, J, NULL, "");
    expect("/projects/" P "/exports/" J "/status", 0, N_STATUS, P, J, "status", "");
    expect("/projects/" P "/exports/" J "/.job.json", 0, N_JOB_JSON, P, J, ".job.json", "");
    expect("/projects/" P "/exports/" J "/.wait", 0, N_WAIT, P, J, ".wait", "");
    expect("/projects/" P "/exports/" J "/a/b.csv", 0, N_ENTRY, P, J, "a/b.csv", "");
    expect("/projects/" P "/exports/" J "/status/x", 0, N_ENTRY, P, J, "status/x", "");
    expect("/projects/" P "/archives", 0, N_ARCHIVES, P, "", NULL, "");
    expect("/projects/" P "/archives/" J ".zip", 0, N_ARCHIVE_FILE, P, J, NULL, "zip");
    expect("/projects/" P "/archives/" J ".csv", 0, N_ARCHIVE_FILE, P, J, NULL, "csv");
    /* ".csv.gz" is the longer suffix: the job id is not "<job>.csv". */
    expect("/projects/" P "/archives/" J ".csv.gz", 0, N_ARCHIVE_FILE, P, J, NULL, "csv.gz");
    /* Repeated slashes mean one. */
    expect("//projects//" P "//exports//new", 0, N_NEW, P, "", NULL, "");
}

static void test_refused(void)
{
    expect("/nothing", -ENOENT, N_ROOT, "", "", NULL, "");
    expect("/projects/" P "/other", -ENOENT, N_ROOT, "", "", NULL, "");
    expect("/projects/" P "/archives/" J, -ENOENT, N_ROOT, "", "", NULL, "");
    expect("/projects/" P "/archives/" J ".tar", -ENOENT, N_ROOT, "", "", NULL, "");
    expect("/projects/" P "/archives/.zip", -ENOENT, N_ROOT, "", "", NULL, "");
    expect("/.stats/x", -ENOTDIR, N_ROOT, "", "", NULL, "");
    expect("/projects/" P "/exports/new/x", -ENOTDIR, N_ROOT, "", "", NULL, "");
    expect("/projects/" P "/archives/" J ".zip/x", -ENOTDIR, N_ROOT, "", "", NULL, "");
    /* Ids: 64 characters fit, 65 do not. */
    char id64[65], id65[66], path[256];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'a', 65);
    id65[65] = '\0';
    snprintf(path, sizeof path, "/projects/%s", id64);
    expect(path, 0, N_PROJECT, id64, "", NULL, "");
    snprintf(path, sizeof path, "/projects/%s", id65);
    expect(path, -ENOENT, N_ROOT, "", "", NULL, "");
    snprintf(path, sizeof path, "/projects/" P "/exports/%s", id64);
    expect(path, 0, N_JOB, P, id64, NULL, "");
    snprintf(path, sizeof path, "/projects/" P "/exports/%s", id65);
    expect(path, -ENOENT, N_ROOT, "", "", NULL, "");
    snprintf(path, sizeof path, "/projects/" P "/archives/%s.csv.gz", id65);
    expect(path, -ENOENT, N_ROOT, "", "", NULL, "");
}

static void test_inside_job(void)
{
    struct node n;
    static const struct {
        const char *path;
        bool inside;
    } cases[] = {
        { "/projects/" P "/exports", false },
        { "/projects/" P "/exports/new", false },
        { "/projects/" P "/exports/" J, true },
        { "/projects/" P "/exports/" J "/.wait", true },
        { "/projects/" P "/exports/" J "/x/y", true },
        { "/projects/" P "/archives/" J ".zip", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(path_parse(cases[i].path, &n) == 0, "%s", cases[i].path);
        CHECK(node_inside_job(&n) == cases[i].inside, "%s", cases[i].path);
    }
}

int main(void)
{
    test_kinds();
    test_refused();
    test_inside_job();
    printf("paths: %d checks, %d failed\n", checks, failures);
    return failures != 0;
}
