/* The SDKs' region tables: sizes, the exceptions to
 * https://{service}.{region}.myhuaweicloud.com, regions some tables lack,
 * and lookups of names the tables do not hold. */
#include "region.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static const struct {
    enum region_service svc;
    const char *region, *endpoint;
} exceptions[] = {
    { REGION_WAF, "cn-north-9", "https://waf.cn-north-9.myhuaweicloud.cn" },
    { REGION_HSS, "eu-west-101", "https://hss.eu-west-101.myhuaweicloud.eu" },
    { REGION_IAM, "eu-west-101", "https://iam.eu-west-101.myhuaweicloud.eu" },
};

static int is_exception(enum region_service svc, const char *region)
{
    for (size_t i = 0; i < sizeof exceptions / sizeof *exceptions; i++)
        if (exceptions[i].svc == svc && streq(exceptions[i].region, region))
            return 1;
    return 0;
}

static void test_tables(void)
{
    const enum region_service svcs[] = { REGION_WAF, REGION_HSS, REGION_IAM };
    const size_t sizes[] = { 34, 30, 28 };
    for (size_t s = 0; s < 3; s++) {
        enum region_service svc = svcs[s];
        const char *name = region_service_name(svc);
        CHECK(region_count(svc) == sizes[s], "%s: %zu regions, want %zu", name,
              region_count(svc), sizes[s]);
        size_t n = 0;
        const char *ep = NULL, *r;
        for (size_t i = 0; (r = region_at(svc, i, &ep)) != NULL; i++) {
            n++;
            CHECK(streq(region_endpoint(svc, r), ep), "%s %s: lookup disagrees", name, r);
            /* No name twice (the lookup would hide the second). */
            for (size_t j = 0; j < i; j++)
                CHECK(!streq(region_at(svc, j, NULL), r), "%s %s listed twice", name, r);
            /* Everything else follows the pattern. */
            if (!is_exception(svc, r)) {
                char want[128], lower[8];
                snprintf(lower, sizeof lower, "%s", name);
                for (char *c = lower; *c; c++)
                    *c = (char)(*c - 'A' + 'a');
                snprintf(want, sizeof want, "https://%s.%s.myhuaweicloud.com", lower, r);
                CHECK(streq(ep, want), "%s %s: %s, want %s", name, r, ep, want);
            }
            CHECK(ep[strlen(ep) - 1] != '/', "%s %s: trailing slash", name, r);
        }
        CHECK(n == region_count(svc), "%s: region_at gives %zu of %zu", name, n,
              region_count(svc));
        CHECK(region_at(svc, n, &ep) == NULL, "%s: entry past the end", name);
    }
}

static void test_exceptions(void)
{
    for (size_t i = 0; i < sizeof exceptions / sizeof *exceptions; i++)
        CHECK(streq(region_endpoint(exceptions[i].svc, exceptions[i].region),
                    exceptions[i].endpoint),
              "%s %s: %s", region_service_name(exceptions[i].svc), exceptions[i].region,
              region_endpoint(exceptions[i].svc, exceptions[i].region));
    /* The exceptions are per service, not per region. */
    CHECK(streq(region_endpoint(REGION_HSS, "cn-north-9"), "https://hss.cn-north-9.myhuaweicloud.com"),
          "HSS cn-north-9");
    CHECK(streq(region_endpoint(REGION_IAM, "cn-north-9"), "https://iam.cn-north-9.myhuaweicloud.com"),
          "IAM cn-north-9");
    CHECK(streq(region_endpoint(REGION_WAF, "eu-west-101"),
                "https://waf.eu-west-101.myhuaweicloud.com"),
          "WAF eu-west-101");
    CHECK(streq(region_endpoint(REGION_WAF, "cn-north-4"), "https://waf.cn-north-4.myhuaweicloud.com"),
          "WAF cn-north-4");
    CHECK(streq(region_endpoint(REGION_HSS, "ap-southeast-1"),
                "https://hss.ap-southeast-1.myhuaweicloud.com"),
          "HSS ap-southeast-1");
}

static void test_missing(void)
{
    /* Regions that only some tables list. */
    const char *waf_only[] = { "af-north-1", "ap-southeast-5", "ru-northwest-2" };
    for (size_t i = 0; i < 3; i++) {
        CHECK(region_endpoint(REGION_WAF, waf_only[i]) != NULL, "WAF %s", waf_only[i]);
        CHECK(region_endpoint(REGION_HSS, waf_only[i]) == NULL, "HSS %s", waf_only[i]);
        CHECK(region_endpoint(REGION_IAM, waf_only[i]) == NULL, "IAM %s", waf_only[i]);
    }
    CHECK(region_endpoint(REGION_WAF, "eu-west-0") && !region_endpoint(REGION_HSS, "eu-west-0") &&
              region_endpoint(REGION_IAM, "eu-west-0"),
          "eu-west-0 is WAF and IAM, not HSS");
    const char *no_iam[] = { "cn-south-4", "cn-southwest-3", "cn-north-11" };
    for (size_t i = 0; i < 3; i++)
        CHECK(region_endpoint(REGION_WAF, no_iam[i]) && region_endpoint(REGION_HSS, no_iam[i]) &&
                  !region_endpoint(REGION_IAM, no_iam[i]),
              "%s: WAF and HSS, not IAM", no_iam[i]);

    /* Names the tables do not hold: exact match only. */
    const char *unknown[] = { "",          "xx-nowhere-1", "CN-NORTH-4", "cn-north-4 ",
                              " cn-north-4", "cn-north-",  "cn-north-44", "cn-north" };
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        for (int s = REGION_WAF; s <= REGION_IAM; s++)
            CHECK(region_endpoint((enum region_service)s, unknown[i]) == NULL, "'%s'",
                  unknown[i]);
    CHECK(region_endpoint(REGION_WAF, NULL) == NULL, "NULL region");
    CHECK(region_endpoint((enum region_service)3, "cn-north-4") == NULL, "service 3");
    CHECK(region_endpoint((enum region_service)-1, "cn-north-4") == NULL, "service -1");
    CHECK(region_service_name((enum region_service)7) == NULL, "name of service 7");
    CHECK(region_count((enum region_service)7) == 0, "count of service 7");
    CHECK(region_at((enum region_service)7, 0, NULL) == NULL, "entry of service 7");
    CHECK(strcmp(REGION_IAM_GLOBAL_ENDPOINT, "https://iam.myhuaweicloud.com") == 0, "global IAM");
}

int main(void)
{
    test_tables();
    test_exceptions();
    test_missing();
    return check_summary();
}
