/* service: the two export services of the mount, named once for the filter
 * (which service a filter is for) and the cloud calls (which flow a job
 * follows: cloud-api.md, WAF and HSS each only their own jobs). */
#ifndef HCX_SERVICE_H
#define HCX_SERVICE_H

enum cloud_service { SERVICE_WAF, SERVICE_HSS };
const char *cloud_service_name(enum cloud_service);   /* "waf", "hss" */

#endif
