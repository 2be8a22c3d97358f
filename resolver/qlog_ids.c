/* qlog_ids.c — owns the account, region and VPC that route53 lines name: read once, when the
 * query log opens, from describe-vpc-endpoints.json of the configured snapshot directories
 * (OwnerId, VpcId, and the region inside ServiceName). A value is kept only when every
 * endpoint agrees on it; otherwise, or without a snapshot, it stays "". Must not run on a
 * worker, and never fails the start: an unreadable file only leaves the values empty (the
 * snapshot loader reports it). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/qlog.h"

#define FILE_MAX (256u * 1024 * 1024)

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "rbe");
        if (f == NULL)
                return NULL;
        char *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (cap - len < 65536) {
                        if (cap >= FILE_MAX)
                                break;
                        char *grown = realloc(buf, cap + 1048576 + 1);
                        if (grown == NULL)
                                break;
                        buf = grown;
                        cap += 1048576;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0) {
                        fclose(f);
                        buf[len] = '\0';
                        return buf;
                }
        }
        fclose(f);
        free(buf);
        return NULL;
}

/* The region label of a service name: com.amazonaws.eu-west-1.sqs -> eu-west-1 (a label of
 * the form xx-word-N or xx-gov-word-N). */
static bool region_of(const char *service, char *out, size_t cap)
{
        const char *p = service;
        while (p != NULL && *p != '\0') {
                const char *end = strchr(p, '.');
                size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
                if (n >= 6 && n < cap && p[2] == '-' && p[n - 1] >= '0' && p[n - 1] <= '9' &&
                    p[n - 2] == '-') {
                        memcpy(out, p, n);
                        out[n] = '\0';
                        return true;
                }
                p = end != NULL ? end + 1 : NULL;
        }
        return false;
}

/* Merges one value into a field: the first one seen stays while every other agrees. */
static void agree(char *field, size_t cap, bool *mixed, const char *value)
{
        if (value == NULL || *mixed)
                return;
        if (field[0] == '\0' && strlen(value) < cap) {
                snprintf(field, cap, "%s", value);
        } else if (strcmp(field, value) != 0) {
                *mixed = true;
                field[0] = '\0';
        }
}

static const char *string_member(const cJSON *o, const char *name)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

void vd_qlog_ids_read(char *const *dirs, size_t n_dirs, const char *vpc, vd_qlog_ids *ids)
{
        bool mixed_account = false, mixed_region = false, mixed_vpc = false;
        memset(ids, 0, sizeof(*ids));
        for (size_t i = 0; i < n_dirs; i++) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/describe-vpc-endpoints.json", dirs[i]);
                char *text = slurp(path);
                cJSON *doc = text != NULL ? cJSON_Parse(text) : NULL;
                free(text);
                const cJSON *eps = cJSON_GetObjectItemCaseSensitive(doc, "VpcEndpoints");
                const cJSON *ep;
                cJSON_ArrayForEach(ep, eps)
                {
                        char region[32];
                        const char *service = string_member(ep, "ServiceName");
                        const char *ep_vpc = string_member(ep, "VpcId");
                        if (vpc != NULL && vpc[0] != '\0' &&
                            (ep_vpc == NULL || strcmp(ep_vpc, vpc) != 0))
                                continue; /* another VPC's, not served */
                        agree(ids->account_id, sizeof(ids->account_id), &mixed_account,
                              string_member(ep, "OwnerId"));
                        agree(ids->vpc_id, sizeof(ids->vpc_id), &mixed_vpc, ep_vpc);
                        if (service != NULL && region_of(service, region, sizeof(region)))
                                agree(ids->region, sizeof(ids->region), &mixed_region, region);
                }
                cJSON_Delete(doc);
        }
}
