/* aws_eni.c — the interfaces file of an AWS snapshot: every NetworkInterfaces[] entry checked
 * (id present and unique, addresses valid) into the loader's ENI array, and the id table that
 * finds an ENI by id. Must not: read the endpoints file or add anything to the builder. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_int.h"
#include "vpcdns/wire.h"

static int parse_address(loader *l, const json_t *v, const char *path, int family, address *out)
{
        const char *text;

        if (!cJSON_IsString(v))
                return vd_aws_type_error(
                    l, l->if_file, path,
                    family == AF_INET ? "an IPv4 address string" : "an IPv6 address string", v);
        text = json_str(v);
        memset(out, 0, sizeof(*out));
        out->type = family == AF_INET ? VD_TYPE_A : VD_TYPE_AAAA;
        if (inet_pton(family, text, out->bytes) != 1)
                return vd_error_set(l->err, "%s: %s: expected an %s address, got \"%.80s\"",
                                    l->if_file, path, family == AF_INET ? "IPv4" : "IPv6", text);
        return 0;
}

/* where.array[i].key as an address (item is array[i]). The path is formatted only for an
 * error: this runs for every address of every ENI. */
static int read_address(loader *l, const json_t *item, const char *where, const char *array,
                        size_t i, const char *key, int family, address *out)
{
        const json_t *ip = vd_aws_string_member(item, key);
        char path[JSON_PATH_CAP];
        int rc;

        memset(out, 0, sizeof(*out));
        if (ip != NULL && inet_pton(family, ip->valuestring, out->bytes) == 1) {
                out->type = family == AF_INET ? VD_TYPE_A : VD_TYPE_AAAA;
                return 0;
        }
        snprintf(path, sizeof(path), "%s.%s[%zu]", where, array, i);
        if (!cJSON_IsObject(item))
                return vd_aws_type_error(l, l->if_file, path, "an object", item);
        if ((rc = vd_aws_member(l, l->if_file, item, path, key, WANT_STRING, true, &ip)) < 0)
                return rc;
        snprintf(path, sizeof(path), "%s.%s[%zu].%s", where, array, i, key);
        return parse_address(l, ip, path, family, out);
}

/* FNV-1a of an ENI id, for the id table. Ids come from the operator's file, not from the
 * network, so no keyed hash is needed. */
static uint64_t eni_hash(const char *id)
{
        uint64_t h = 0xcbf29ce484222325ull;
        for (; *id != '\0'; id++)
                h = (h ^ (uint8_t)*id) * 0x100000001b3ull;
        return h;
}

static int load_one_eni(loader *l, const json_t *v, size_t index, eni *e)
{
        char where[JSON_WHERE_CAP], path[JSON_PATH_CAP];
        const json_t *id, *az, *list, *primary, *v6;
        size_t n4 = 0, n6 = 0, n = 0, i;
        int rc;

        size_t at = 0;
        where[0] = '\0';
        vd_aws_put_text(where, sizeof(where), &at, "NetworkInterfaces", FILE_PATH_CAP);
        vd_aws_put_index(where, sizeof(where), &at, index);
        e->index = index;
        if (!cJSON_IsObject(v))
                return vd_aws_type_error(l, l->if_file, where, "an object", v);
        static const char *const keys[] = {"NetworkInterfaceId", "AvailabilityZone",
                                           "PrivateIpAddresses", "PrivateIpAddress",
                                           "Ipv6Addresses",      "SubnetId"};
        const json_t *f[6], *subnet_id;
        bool two[6];
        const char *file = l->if_file;
        vd_aws_pick(v, keys, 6, f, two);
        if ((rc = vd_aws_check_member(l, file, where, keys[0], f[0], two[0], WANT_STRING, true,
                                      &id)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[1], f[1], two[1], WANT_STRING, false,
                                      &az)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[2], f[2], two[2], WANT_ARRAY, false,
                                      &list)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[3], f[3], two[3], WANT_STRING, false,
                                      &primary)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[4], f[4], two[4], WANT_ARRAY, false,
                                      &v6)) < 0 ||
            (rc = vd_aws_check_member(l, file, where, keys[5], f[5], two[5], WANT_STRING, false,
                                      &subnet_id)) < 0)
                return rc;
        e->id = json_str(id);
        e->az = az ? json_str(az) : NULL;
        e->subnet = subnet_id ? json_str(subnet_id) : NULL;
        n4 = list ? json_len(list) : 0;
        if (n4 == 0 && primary != NULL)
                n4 = 1;
        n6 = v6 ? json_len(v6) : 0;
        if (n4 + n6 == 0)
                return 0;
        /* In the load's arena, with the documents: released with them, no free per ENI. */
        e->addrs = vd_aws_arena_malloc((n4 + n6) * sizeof(*e->addrs));
        if (e->addrs == NULL)
                return vd_aws_no_memory(l);
        memset(e->addrs, 0, (n4 + n6) * sizeof(*e->addrs));
        if (list != NULL && list->child != NULL) {
                i = 0;
                JSON_EACH(item, list)
                {
                        if ((rc = read_address(l, item, where, "PrivateIpAddresses", i++,
                                               "PrivateIpAddress", AF_INET, &e->addrs[n])) < 0)
                                return rc;
                        n++;
                }
        } else if (primary != NULL) {
                snprintf(path, sizeof(path), "%s.PrivateIpAddress", where);
                if ((rc = parse_address(l, primary, path, AF_INET, &e->addrs[n])) < 0)
                        return rc;
                n++;
        }
        i = 0;
        JSON_EACH(item, v6)
        {
                if ((rc = read_address(l, item, where, "Ipv6Addresses", i++, "Ipv6Address",
                                       AF_INET6, &e->addrs[n])) < 0)
                        return rc;
                n++;
        }
        e->n_addrs = n;
        return 0;
}

int vd_aws_load_interfaces(loader *l, const json_t *root)
{
        const json_t *list;
        size_t i;
        int rc;

        if ((rc = vd_aws_member(l, l->if_file, root, "", "NetworkInterfaces", WANT_ARRAY, true,
                                &list)) < 0)
                return rc;
        l->n_enis = json_len(list);
        if (l->n_enis == 0)
                return 0;
        l->enis = calloc(l->n_enis, sizeof(*l->enis));
        if (l->enis == NULL)
                return vd_aws_no_memory(l);
        i = 0;
        JSON_EACH(item, list)
        {
                if ((rc = load_one_eni(l, item, i, &l->enis[i])) < 0)
                        return rc;
                i++;
        }
        /* The id table: open addressing over indexes into l->enis, at most half full. */
        l->eni_mask = 1;
        while (l->eni_mask + 1 < 2 * l->n_enis)
                l->eni_mask = l->eni_mask * 2 + 1;
        l->eni_table = malloc((l->eni_mask + 1) * sizeof(*l->eni_table));
        if (l->eni_table == NULL)
                return vd_aws_no_memory(l);
        memset(l->eni_table, 0xff, (l->eni_mask + 1) * sizeof(*l->eni_table));
        for (i = 0; i < l->n_enis; i++) {
                size_t slot = eni_hash(l->enis[i].id) & l->eni_mask;
                for (; l->eni_table[slot] != SIZE_MAX; slot = (slot + 1) & l->eni_mask) {
                        const eni *other = &l->enis[l->eni_table[slot]];
                        if (strcmp(other->id, l->enis[i].id) == 0)
                                return vd_error_set(
                                    l->err,
                                    "%s: NetworkInterfaces[%zu].NetworkInterfaceId: expected a "
                                    "unique id, but %s is also NetworkInterfaces[%zu]",
                                    l->if_file, i, l->enis[i].id, other->index);
                }
                l->eni_table[slot] = i;
        }
        return 0;
}

const eni *vd_aws_find_eni(const loader *l, const char *id)
{
        if (l->n_enis == 0)
                return NULL;
        for (size_t slot = eni_hash(id) & l->eni_mask; l->eni_table[slot] != SIZE_MAX;
             slot = (slot + 1) & l->eni_mask) {
                const eni *e = &l->enis[l->eni_table[slot]];
                if (strcmp(e->id, id) == 0)
                        return e;
        }
        return NULL;
}
