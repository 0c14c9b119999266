/* region: the SDKs' region tables (region.h).  Data only.
 *
 * Source: huaweicloud/huaweicloud-sdk-go-v3 at
 * 1cd70eb6f730ea721771a6ec8d96352bbb801787 (2026-03-13):
 *   services/waf/v1/region/region.go  (34 regions; last changed 8b0e068)
 *   services/hss/v5/region/region.go  (30 regions; last changed 07369e2)
 *   services/iam/v3/region/region.go  (28 regions; last changed b0fabeb)
 * in the files' order.  When updating, copy the tables again rather than
 * deriving names: the exceptions differ per service (WAF cn-north-9 is on
 * myhuaweicloud.cn while HSS and IAM cn-north-9 are on .com; HSS and IAM
 * eu-west-101 are on myhuaweicloud.eu while WAF eu-west-101 is on .com). */
#include "region.h"

#include <string.h>

struct region_entry {
    const char *name;
    const char *endpoint;
};

static const struct region_entry waf_regions[] = {
    { "cn-north-1", "https://waf.cn-north-1.myhuaweicloud.com" },
    { "cn-north-2", "https://waf.cn-north-2.myhuaweicloud.com" },
    { "cn-north-4", "https://waf.cn-north-4.myhuaweicloud.com" },
    { "cn-east-3", "https://waf.cn-east-3.myhuaweicloud.com" },
    { "cn-east-2", "https://waf.cn-east-2.myhuaweicloud.com" },
    { "cn-south-1", "https://waf.cn-south-1.myhuaweicloud.com" },
    { "cn-south-2", "https://waf.cn-south-2.myhuaweicloud.com" },
    { "ap-southeast-1", "https://waf.ap-southeast-1.myhuaweicloud.com" },
    { "ap-southeast-2", "https://waf.ap-southeast-2.myhuaweicloud.com" },
    { "ap-southeast-3", "https://waf.ap-southeast-3.myhuaweicloud.com" },
    { "af-south-1", "https://waf.af-south-1.myhuaweicloud.com" },
    { "ru-northwest-2", "https://waf.ru-northwest-2.myhuaweicloud.com" },
    { "cn-southwest-2", "https://waf.cn-southwest-2.myhuaweicloud.com" },
    { "cn-north-9", "https://waf.cn-north-9.myhuaweicloud.cn" },
    { "la-south-2", "https://waf.la-south-2.myhuaweicloud.com" },
    { "sa-brazil-1", "https://waf.sa-brazil-1.myhuaweicloud.com" },
    { "la-north-2", "https://waf.la-north-2.myhuaweicloud.com" },
    { "na-mexico-1", "https://waf.na-mexico-1.myhuaweicloud.com" },
    { "ae-ad-1", "https://waf.ae-ad-1.myhuaweicloud.com" },
    { "my-kualalumpur-1", "https://waf.my-kualalumpur-1.myhuaweicloud.com" },
    { "eu-west-0", "https://waf.eu-west-0.myhuaweicloud.com" },
    { "cn-east-5", "https://waf.cn-east-5.myhuaweicloud.com" },
    { "tr-west-1", "https://waf.tr-west-1.myhuaweicloud.com" },
    { "me-east-1", "https://waf.me-east-1.myhuaweicloud.com" },
    { "eu-west-101", "https://waf.eu-west-101.myhuaweicloud.com" },
    { "ru-moscow-1", "https://waf.ru-moscow-1.myhuaweicloud.com" },
    { "ap-southeast-4", "https://waf.ap-southeast-4.myhuaweicloud.com" },
    { "ap-southeast-5", "https://waf.ap-southeast-5.myhuaweicloud.com" },
    { "af-north-1", "https://waf.af-north-1.myhuaweicloud.com" },
    { "cn-south-4", "https://waf.cn-south-4.myhuaweicloud.com" },
    { "cn-north-12", "https://waf.cn-north-12.myhuaweicloud.com" },
    { "cn-southwest-3", "https://waf.cn-southwest-3.myhuaweicloud.com" },
    { "cn-east-4", "https://waf.cn-east-4.myhuaweicloud.com" },
    { "cn-north-11", "https://waf.cn-north-11.myhuaweicloud.com" },
};

static const struct region_entry hss_regions[] = {
    { "cn-north-9", "https://hss.cn-north-9.myhuaweicloud.com" },
    { "cn-north-1", "https://hss.cn-north-1.myhuaweicloud.com" },
    { "cn-north-4", "https://hss.cn-north-4.myhuaweicloud.com" },
    { "cn-southwest-2", "https://hss.cn-southwest-2.myhuaweicloud.com" },
    { "cn-east-2", "https://hss.cn-east-2.myhuaweicloud.com" },
    { "cn-east-3", "https://hss.cn-east-3.myhuaweicloud.com" },
    { "cn-east-4", "https://hss.cn-east-4.myhuaweicloud.com" },
    { "cn-south-1", "https://hss.cn-south-1.myhuaweicloud.com" },
    { "cn-south-2", "https://hss.cn-south-2.myhuaweicloud.com" },
    { "ap-southeast-1", "https://hss.ap-southeast-1.myhuaweicloud.com" },
    { "ap-southeast-2", "https://hss.ap-southeast-2.myhuaweicloud.com" },
    { "ap-southeast-3", "https://hss.ap-southeast-3.myhuaweicloud.com" },
    { "na-mexico-1", "https://hss.na-mexico-1.myhuaweicloud.com" },
    { "af-south-1", "https://hss.af-south-1.myhuaweicloud.com" },
    { "sa-brazil-1", "https://hss.sa-brazil-1.myhuaweicloud.com" },
    { "la-south-2", "https://hss.la-south-2.myhuaweicloud.com" },
    { "cn-south-4", "https://hss.cn-south-4.myhuaweicloud.com" },
    { "la-north-2", "https://hss.la-north-2.myhuaweicloud.com" },
    { "tr-west-1", "https://hss.tr-west-1.myhuaweicloud.com" },
    { "cn-north-2", "https://hss.cn-north-2.myhuaweicloud.com" },
    { "ap-southeast-4", "https://hss.ap-southeast-4.myhuaweicloud.com" },
    { "ae-ad-1", "https://hss.ae-ad-1.myhuaweicloud.com" },
    { "me-east-1", "https://hss.me-east-1.myhuaweicloud.com" },
    { "cn-east-5", "https://hss.cn-east-5.myhuaweicloud.com" },
    { "my-kualalumpur-1", "https://hss.my-kualalumpur-1.myhuaweicloud.com" },
    { "eu-west-101", "https://hss.eu-west-101.myhuaweicloud.eu" },
    { "ru-moscow-1", "https://hss.ru-moscow-1.myhuaweicloud.com" },
    { "cn-north-12", "https://hss.cn-north-12.myhuaweicloud.com" },
    { "cn-southwest-3", "https://hss.cn-southwest-3.myhuaweicloud.com" },
    { "cn-north-11", "https://hss.cn-north-11.myhuaweicloud.com" },
};

static const struct region_entry iam_regions[] = {
    { "cn-north-2", "https://iam.cn-north-2.myhuaweicloud.com" },
    { "cn-north-4", "https://iam.cn-north-4.myhuaweicloud.com" },
    { "cn-north-1", "https://iam.cn-north-1.myhuaweicloud.com" },
    { "cn-east-2", "https://iam.cn-east-2.myhuaweicloud.com" },
    { "cn-east-3", "https://iam.cn-east-3.myhuaweicloud.com" },
    { "cn-south-1", "https://iam.cn-south-1.myhuaweicloud.com" },
    { "cn-south-2", "https://iam.cn-south-2.myhuaweicloud.com" },
    { "cn-southwest-2", "https://iam.cn-southwest-2.myhuaweicloud.com" },
    { "ap-southeast-1", "https://iam.ap-southeast-1.myhuaweicloud.com" },
    { "ap-southeast-2", "https://iam.ap-southeast-2.myhuaweicloud.com" },
    { "ap-southeast-3", "https://iam.ap-southeast-3.myhuaweicloud.com" },
    { "af-south-1", "https://iam.af-south-1.myhuaweicloud.com" },
    { "sa-brazil-1", "https://iam.sa-brazil-1.myhuaweicloud.com" },
    { "la-south-2", "https://iam.la-south-2.myhuaweicloud.com" },
    { "na-mexico-1", "https://iam.na-mexico-1.myhuaweicloud.com" },
    { "la-north-2", "https://iam.la-north-2.myhuaweicloud.com" },
    { "cn-north-9", "https://iam.cn-north-9.myhuaweicloud.com" },
    { "eu-west-101", "https://iam.eu-west-101.myhuaweicloud.eu" },
    { "eu-west-0", "https://iam.eu-west-0.myhuaweicloud.com" },
    { "my-kualalumpur-1", "https://iam.my-kualalumpur-1.myhuaweicloud.com" },
    { "ru-moscow-1", "https://iam.ru-moscow-1.myhuaweicloud.com" },
    { "me-east-1", "https://iam.me-east-1.myhuaweicloud.com" },
    { "ap-southeast-4", "https://iam.ap-southeast-4.myhuaweicloud.com" },
    { "ae-ad-1", "https://iam.ae-ad-1.myhuaweicloud.com" },
    { "cn-east-4", "https://iam.cn-east-4.myhuaweicloud.com" },
    { "cn-east-5", "https://iam.cn-east-5.myhuaweicloud.com" },
    { "tr-west-1", "https://iam.tr-west-1.myhuaweicloud.com" },
    { "cn-north-12", "https://iam.cn-north-12.myhuaweicloud.com" },
};
#define TABLE(t) { t, sizeof t / sizeof *t }

static const struct {
    const struct region_entry *entries;
    size_t n;
} tables[] = {
    [REGION_WAF] = TABLE(waf_regions),
    [REGION_HSS] = TABLE(hss_regions),
    [REGION_IAM] = TABLE(iam_regions),
};

static const char *const service_names[] = {
    [REGION_WAF] = "WAF",
    [REGION_HSS] = "HSS",
    [REGION_IAM] = "IAM",
};

static int valid(enum region_service svc)
{
    return (unsigned)svc < sizeof tables / sizeof *tables;
}

const char *region_endpoint(enum region_service svc, const char *region)
{
    if (!valid(svc) || !region)
        return NULL;
    for (size_t i = 0; i < tables[svc].n; i++)
        if (strcmp(tables[svc].entries[i].name, region) == 0)
            return tables[svc].entries[i].endpoint;
    return NULL;
}

const char *region_service_name(enum region_service svc)
{
    return valid(svc) ? service_names[svc] : NULL;
}

size_t region_count(enum region_service svc) { return valid(svc) ? tables[svc].n : 0; }

const char *region_at(enum region_service svc, size_t i, const char **endpoint)
{
    if (!valid(svc) || i >= tables[svc].n)
        return NULL;
    if (endpoint)
        *endpoint = tables[svc].entries[i].endpoint;
    return tables[svc].entries[i].name;
}
