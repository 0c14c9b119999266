/* region: the official Huawei Cloud SDKs' region tables for the services
 * hcexportfs calls, as data (region name -> endpoint URL).
 *
 * Copied from huaweicloud-sdk-go-v3 services/waf/v1/region/region.go,
 * services/hss/v5/region/region.go and services/iam/v3/region/region.go
 * (see region.c for the commit).  Most endpoints are
 * https://{service}.{region}.myhuaweicloud.com; the tables' exceptions are
 * kept as they are (WAF cn-north-9 on .cn, HSS and IAM eu-west-101 on .eu).
 * A region a service's table does not list has no endpoint for it. */
#ifndef HCX_REGION_H
#define HCX_REGION_H

#include <stddef.h>

enum region_service { REGION_WAF, REGION_HSS, REGION_IAM };

/* The SDK core's IAM endpoint for a region its IAM table lacks
 * (core/auth/internal/iam_helper.go DefaultIamEndpoint): IAM is global. */
#define REGION_IAM_GLOBAL_ENDPOINT "https://iam.myhuaweicloud.com"

/* The endpoint URL (no trailing '/') of svc in region, or NULL when the
 * table does not list region (names are matched exactly, as the SDKs do:
 * lower case) or svc is out of range. */
const char *region_endpoint(enum region_service svc, const char *region);

/* "WAF", "HSS", "IAM" (NULL for an out-of-range svc). */
const char *region_service_name(enum region_service svc);

/* The number of regions in svc's table, and its i-th entry (table order;
 * NULL past the end, *endpoint left alone then).  endpoint may be NULL. */
size_t region_count(enum region_service svc);
const char *region_at(enum region_service svc, size_t i, const char **endpoint);

#endif
