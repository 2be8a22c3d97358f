/* aws_subnets.c — the optional subnets file of an AWS snapshot (`aws ec2 describe-subnets`):
 * every Subnets[] entry checked (SubnetId, AvailabilityZone, AvailabilityZoneId, CidrBlock,
 * Ipv6CidrBlockAssociationSet[].Ipv6CidrBlock) into the loader's subnet list, which gives
 * each ENI its AZ ID; and each subnet's IPv4 and IPv6 prefixes fed to the builder as the
 * client-address → AZ table. A missing file is no error (no AZ IDs, no client table). Must
 * not: read the endpoints or interfaces file, or add records. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "aws_int.h"
#include "vpcdns/addr.h"

/* A prefix "ADDR/LEN" of family, read from v at path; *out holds the network. */
static int read_prefix(loader *l, const json_t *v, const char *path, int family, vd_cidr *out)
{
        const char *text = json_str(v);
        const char *what = family == AF_INET ? "an IPv4 CIDR block (10.0.1.0/24)"
                                             : "an IPv6 CIDR block (2600:1f18:4a3:6e01::/64)";
        if (strchr(text, '/') == NULL || vd_cidr_parse(text, out) != 0 ||
            out->ss.ss_family != family)
                return vd_error_set(l->err, "%s: %s: expected %s, got \"%.80s\"", l->sn_file, path,
                                    what, text);
        return 0;
}

static int add_prefix(loader *l, const vd_cidr *c, const subnet *sn, const char *path)
{
        const uint8_t *bytes =
            c->ss.ss_family == AF_INET
                ? (const uint8_t *)&((const struct sockaddr_in *)(const void *)&c->ss)->sin_addr
                : ((const struct sockaddr_in6 *)(const void *)&c->ss)->sin6_addr.s6_addr;
        int rc = vd_builder_add_subnet(l->b, c->ss.ss_family, bytes, c->prefix, sn->az,
                                       sn->az_id != NULL ? sn->az_id : "", l->err);
        if (rc < 0 && rc != -ENOMEM) {
                char msg[sizeof(l->err->msg)];
                memcpy(msg, l->err->msg, sizeof(msg));
                msg[sizeof(msg) - 1] = '\0';
                vd_error_set(l->err, "%s: %s: %.200s", l->sn_file, path, msg);
        }
        return rc;
}

/* Ipv6CidrBlockAssociationSet[i]: its block, unless its state says it is not associated. */
static int load_v6_block(loader *l, const json_t *item, const char *where, size_t i,
                         const subnet *sn)
{
        char path[JSON_PATH_CAP];
        const json_t *block, *state, *st = NULL;
        vd_cidr c;
        int rc;

        snprintf(path, sizeof(path), "%s.Ipv6CidrBlockAssociationSet[%zu]", where, i);
        if (!cJSON_IsObject(item))
                return vd_aws_type_error(l, l->sn_file, path, "an object", item);
        if ((rc = vd_aws_member(l, l->sn_file, item, path, "Ipv6CidrBlock", WANT_STRING, true,
                                &block)) < 0 ||
            (rc = vd_aws_member(l, l->sn_file, item, path, "Ipv6CidrBlockState", WANT_OBJECT, false,
                                &state)) < 0)
                return rc;
        if (state != NULL) {
                char spath[JSON_PATH_CAP + 32];
                snprintf(spath, sizeof(spath), "%s.Ipv6CidrBlockState", path);
                if ((rc = vd_aws_member(l, l->sn_file, state, spath, "State", WANT_STRING, false,
                                        &st)) < 0)
                        return rc;
                if (st != NULL && strcasecmp(json_str(st), "associated") != 0)
                        return 0; /* associating, disassociated, failed: not in use */
        }
        char bpath[JSON_PATH_CAP + 16];
        snprintf(bpath, sizeof(bpath), "%s.Ipv6CidrBlock", path);
        if ((rc = read_prefix(l, block, bpath, AF_INET6, &c)) < 0)
                return rc;
        return add_prefix(l, &c, sn, bpath);
}

static int load_one_subnet(loader *l, const json_t *v, size_t index, subnet *sn)
{
        static const char *const keys[] = {"SubnetId", "AvailabilityZone", "AvailabilityZoneId",
                                           "CidrBlock", "Ipv6CidrBlockAssociationSet"};
        char where[JSON_WHERE_CAP], path[JSON_PATH_CAP];
        const json_t *f[5], *id, *az, *az_id, *cidr, *v6;
        bool two[5];
        const char *file = l->sn_file;
        vd_cidr c;
        int rc;

        snprintf(where, sizeof(where), "Subnets[%zu]", index);
        if (!cJSON_IsObject(v))
                return vd_aws_type_error(l, file, where, "an object", v);
        vd_aws_pick(v, keys, 5, f, two);
        if ((rc = vd_aws_check_member(l, file, where, keys[0], f[0], two[0], WANT_STRING, true,
                                      &id)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[1], f[1], two[1], WANT_STRING, true,
                                      &az)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[2], f[2], two[2], WANT_STRING, false,
                                      &az_id)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[3], f[3], two[3], WANT_STRING, false,
                                      &cidr)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[4], f[4], two[4], WANT_ARRAY, false,
                                      &v6)) < 0)
                return rc;
        sn->id = json_str(id);
        sn->az = json_str(az);
        sn->az_id = az_id != NULL ? json_str(az_id) : NULL;
        if (sn->az[0] == '\0') {
                snprintf(path, sizeof(path), "%s.AvailabilityZone", where);
                return vd_error_set(l->err, "%s: %s: expected an AZ name (us-east-1a), got \"\"",
                                    file, path);
        }
        if (cidr != NULL) {
                snprintf(path, sizeof(path), "%s.CidrBlock", where);
                if ((rc = read_prefix(l, cidr, path, AF_INET, &c)) < 0 ||
                    (rc = add_prefix(l, &c, sn, path)) < 0)
                        return rc;
        }
        size_t i = 0;
        JSON_EACH(item, v6)
        {
                if ((rc = load_v6_block(l, item, where, i++, sn)) < 0)
                        return rc;
        }
        return 0;
}

int vd_aws_load_subnets(loader *l)
{
        struct stat st;
        json_t *doc = NULL;
        const json_t *list;
        int rc;

        if (fstatat(l->dir_fd, VD_AWS_SUBNETS_FILE, &st, 0) != 0) {
                if (errno == ENOENT)
                        return 0; /* optional */
                return vd_error_set(l->err, "%s: cannot open: %s", l->sn_file, strerror(errno));
        }
        if ((rc = vd_aws_load_json(l, l->sn_file, &doc)) < 0 ||
            (rc = vd_aws_member(l, l->sn_file, doc, "", "Subnets", WANT_ARRAY, true, &list)) < 0)
                return rc;
        const json_t *token;
        if ((rc = vd_aws_member(l, l->sn_file, doc, "", "NextToken", WANT_STRING, false, &token)) <
            0)
                return rc;
        if (token != NULL && json_str(token)[0] != '\0')
                return vd_error_set(l->err,
                                    "%s: NextToken: expected null or no NextToken, got a token: "
                                    "the capture is incomplete; capture again without "
                                    "--max-items or --no-paginate",
                                    l->sn_file);
        size_t n = json_len(list);
        if (n == 0)
                return 0;
        l->subnets = calloc(n, sizeof(*l->subnets));
        if (l->subnets == NULL)
                return vd_aws_no_memory(l);
        size_t i = 0;
        JSON_EACH(item, list)
        {
                if ((rc = load_one_subnet(l, item, i, &l->subnets[i])) < 0)
                        return rc;
                i++;
        }
        l->n_subnets = n;
        return 0;
}

const char *vd_aws_az_id(const loader *l, const eni *e)
{
        if (e->subnet != NULL)
                for (size_t i = 0; i < l->n_subnets; i++)
                        if (l->subnets[i].az_id != NULL && strcmp(l->subnets[i].id, e->subnet) == 0)
                                return l->subnets[i].az_id;
        /* No subnet of its own in the file: the ID that a subnet of the same AZ name has. */
        if (e->az != NULL)
                for (size_t i = 0; i < l->n_subnets; i++)
                        if (l->subnets[i].az_id != NULL && strcmp(l->subnets[i].az, e->az) == 0)
                                return l->subnets[i].az_id;
        return NULL;
}
