/* aws_endpoint.c — the endpoints file of an AWS snapshot: reads one VpcEndpoints[] entry, its
 * fields checked, decides whether it is served (naming a skipped one at debug level), finds
 * its ENIs and names, and warns when a served endpoint yields no address. Must not: make
 * records itself (aws_records.c does) or read the interfaces file (aws_eni.c does). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws_int.h"
#include "vpcdns/log.h"
#include "vpcdns/wire.h"

static int parse_mode(loader *l, const json_t *v, const char *path, ip_mode *out)
{
        static const struct {
                const char *text;
                ip_mode mode;
        } modes[] = {
            {"ipv4", IP_V4},
            {"ipv6", IP_V6},
            {"dualstack", IP_DUALSTACK},
            {"service-defined", IP_SERVICE_DEFINED},
        };
        const char *text = json_str(v);

        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                if (strcasecmp(text, modes[i].text) == 0) {
                        *out = modes[i].mode;
                        return 0;
                }
        }
        return vd_error_set(l->err,
                            "%s: %s: expected ipv4, ipv6, dualstack or service-defined, got "
                            "\"%.80s\"",
                            l->ep_file, path, text);
}
/* Fields of a served endpoint: ENIs, record types, DNS flags and names. */
/* The fields of an endpoint that vpcdns reads, picked in one pass over the object. */
enum {
        EP_ID,
        EP_TYPE,
        EP_STATE,
        EP_VPC,
        EP_ENIS,
        EP_OPTIONS,
        EP_IP_TYPE,
        EP_DNS_ENABLED,
        EP_SERVICE,
        EP_ENTRIES,
        EP_FIELDS
};
static const char *const endpoint_keys[EP_FIELDS] = {
    "VpcEndpointId",       "VpcEndpointType", "State",         "VpcId",
    "NetworkInterfaceIds", "DnsOptions",      "IpAddressType", "PrivateDnsEnabled",
    "ServiceName",         "DnsEntries"};

static int read_served_endpoint(loader *l, const json_t *const *fv, const bool *two, endpoint *ep)
{
        const json_t *ids, *options, *rec_type = NULL, *ip_type, *dns_enabled, *inbound_only = NULL,
                                     *service, *entries;
        char path[JSON_PATH_CAP];
        const char *f = l->ep_file;
        const char *const *k = endpoint_keys;
        size_t i, n;
        int rc;

        if ((rc = vd_aws_check_member(l, f, ep->path, k[EP_ENIS], fv[EP_ENIS], two[EP_ENIS],
                                      WANT_ARRAY, false, &ids)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep->path, k[EP_OPTIONS], fv[EP_OPTIONS],
                                      two[EP_OPTIONS], WANT_OBJECT, false, &options)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep->path, k[EP_IP_TYPE], fv[EP_IP_TYPE],
                                      two[EP_IP_TYPE], WANT_STRING, false, &ip_type)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep->path, k[EP_DNS_ENABLED], fv[EP_DNS_ENABLED],
                                      two[EP_DNS_ENABLED], WANT_BOOL, false, &dns_enabled)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep->path, k[EP_SERVICE], fv[EP_SERVICE],
                                      two[EP_SERVICE], WANT_STRING, false, &service)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep->path, k[EP_ENTRIES], fv[EP_ENTRIES],
                                      two[EP_ENTRIES], WANT_ARRAY, false, &entries)) < 0)
                return rc;
        if (options != NULL) {
                snprintf(path, sizeof(path), "%s.DnsOptions", ep->path);
                if ((rc = vd_aws_member(l, f, options, path, "DnsRecordIpType", WANT_STRING, false,
                                        &rec_type)) < 0 ||
                    (rc = vd_aws_member(l, f, options, path,
                                        "PrivateDnsOnlyForInboundResolverEndpoint", WANT_BOOL,
                                        false, &inbound_only)) < 0)
                        return rc;
        }

        /* Record types: DnsRecordIpType, else IpAddressType, else ipv4. */
        ep->mode = IP_V4;
        if (rec_type != NULL) {
                snprintf(path, sizeof(path), "%s.DnsOptions.DnsRecordIpType", ep->path);
                if ((rc = parse_mode(l, rec_type, path, &ep->mode)) < 0)
                        return rc;
        } else if (ip_type != NULL) {
                snprintf(path, sizeof(path), "%s.IpAddressType", ep->path);
                if ((rc = parse_mode(l, ip_type, path, &ep->mode)) < 0)
                        return rc;
        }
        /* As the top of aws.c says: an endpoint whose private names are only for inbound
         * Resolver endpoints serves them only to inbound clients (opt.inbound); clients inside
         * the VPC get its vpce names alone. */
        ep->private_dns = dns_enabled != NULL && cJSON_IsTrue(dns_enabled) &&
                          (l->opt.inbound || !(inbound_only != NULL && cJSON_IsTrue(inbound_only)));
        ep->service = service != NULL && strstr(json_str(service), ".vpce-svc-") != NULL;

        /* ENIs, only through NetworkInterfaceIds (never by InterfaceType or Description). */
        n = ids ? json_len(ids) : 0;
        if (n > 0) {
                ep->enis = calloc(n, sizeof(*ep->enis));
                if (ep->enis == NULL)
                        return vd_aws_no_memory(l);
        }
        i = 0;
        JSON_EACH(id, ids)
        {
                const eni *e = cJSON_IsString(id) ? vd_aws_find_eni(l, id->valuestring) : NULL;
                bool seen = false;
                if (e == NULL) {
                        snprintf(path, sizeof(path), "%s.NetworkInterfaceIds[%zu]", ep->path, i);
                        if (!cJSON_IsString(id))
                                return vd_aws_type_error(l, f, path, "a string", id);
                        return vd_error_set(l->err,
                                            "%s: %s: expected a NetworkInterfaceId of %s, but "
                                            "%.80s is not there",
                                            f, path, l->if_file, json_str(id));
                }
                for (size_t j = 0; j < ep->n_enis && !seen; j++)
                        seen = ep->enis[j] == e;
                if (!seen)
                        ep->enis[ep->n_enis++] = e;
                i++;
        }

        /* Names, only from DnsEntries[].DnsName. */
        n = entries ? json_len(entries) : 0;
        if (n > 0) {
                ep->names = calloc(n, sizeof(*ep->names));
                if (ep->names == NULL)
                        return vd_aws_no_memory(l);
        }
        i = 0;
        JSON_EACH(entry, entries)
        {
                const json_t *dns_name_v = vd_aws_string_member(entry, "DnsName");
                if (dns_name_v == NULL) { /* the message needs the path */
                        snprintf(path, sizeof(path), "%s.DnsEntries[%zu]", ep->path, i);
                        if (!cJSON_IsObject(entry))
                                return vd_aws_type_error(l, f, path, "an object", entry);
                        if ((rc = vd_aws_member(l, f, entry, path, "DnsName", WANT_STRING, true,
                                                &dns_name_v)) < 0)
                                return rc;
                }
                if ((rc = vd_aws_parse_name(l, ep, dns_name_v, i, &ep->names[ep->n_names])) < 0)
                        return rc;
                if (ep->regional == NULL && ep->names[ep->n_names].kind == NAME_REGIONAL &&
                    !ep->names[ep->n_names].wildcard)
                        ep->regional = &ep->names[ep->n_names];
                ep->n_names++;
                i++;
        }
        return 0;
}

/* text for a key=value log field: at most cap - 1 octets, anything but a visible character
 * other than '=' and '"' replaced by '?', so untrusted ids cannot break the line. */
static const char *log_value(const char *text, char *out, size_t cap)
{
        size_t n = 0;

        for (; text[n] != '\0' && n + 1 < cap; n++)
                out[n] = (text[n] > ' ' && text[n] < 0x7f && text[n] != '=' && text[n] != '"')
                             ? text[n]
                             : '?';
        out[n] = '\0';
        return out;
}

/* Why a served endpoint yielded no address record for any of its names. */
static const char *no_address_reason(const endpoint *ep)
{
        bool v4 = false, v6 = false, served_name = false;

        if (ep->n_names == 0)
                return "no_dns_entries";
        if (ep->n_enis == 0)
                return "no_network_interfaces";
        for (size_t i = 0; i < ep->n_enis; i++) {
                for (size_t k = 0; k < ep->enis[i]->n_addrs; k++) {
                        v4 = v4 || ep->enis[i]->addrs[k].type == VD_TYPE_A;
                        v6 = v6 || ep->enis[i]->addrs[k].type == VD_TYPE_AAAA;
                }
        }
        if (ep->mode == IP_V6 && !v6)
                return "ipv6_records_but_its_enis_have_no_ipv6_address";
        if ((ep->mode == IP_V4 || ep->mode == IP_SERVICE_DEFINED) && !v4)
                return "ipv4_records_but_its_enis_have_no_ipv4_address";
        if (!v4 && !v6)
                return "its_enis_have_no_address";
        for (size_t i = 0; i < ep->n_names; i++)
                served_name = served_name || ep->names[i].kind != NAME_PRIVATE || ep->private_dns;
        if (!served_name)
                return "only_private_dns_names_and_private_dns_is_off";
        return "no_eni_in_the_availability_zones_of_its_names";
}

static void warn_no_address(const loader *l, const endpoint *ep)
{
        static const char *const modes[] = {"ipv4", "ipv6", "dualstack", "service-defined"};
        char id[128], vpc[128], file[sizeof(l->ep_file) * 2];

        vd_log(VD_LOG_WARN, "aws_endpoint_without_addresses",
               "file=%s path=%s endpoint=%s vpc=%s record_ip_type=%s enis=%zu names=%zu "
               "reason=%s",
               vd_log_value(l->ep_file, file, sizeof(file)), ep->path,
               log_value(ep->id, id, sizeof(id)),
               ep->vpc != NULL ? log_value(ep->vpc, vpc, sizeof(vpc)) : "-", modes[ep->mode],
               ep->n_enis, ep->n_names, no_address_reason(ep));
}

/* An endpoint that is not served, named at debug level: why its names are forwarded. */
static void debug_skipped(const loader *l, const endpoint *ep, const json_t *type,
                          const json_t *state)
{
        char id[128], vpc[128], type_text[64], state_text[64], file[sizeof(l->ep_file) * 2];
        const char *reason;

        if (vd_log_get_level() < VD_LOG_DEBUG)
                return;
        if (type == NULL)
                reason = "no_endpoint_type";
        else if (strcasecmp(json_str(type), "Interface") != 0)
                reason = "not_an_interface_endpoint";
        else if (state == NULL)
                reason = "no_state";
        else if (strcasecmp(json_str(state), "available") != 0)
                reason = "state_not_available";
        else
                reason = "another_vpc"; /* vd_aws_options.vpc */
        vd_log(VD_LOG_DEBUG, "aws_endpoint_skipped",
               "file=%s path=%s endpoint=%s vpc=%s type=%s state=%s reason=%s",
               vd_log_value(l->ep_file, file, sizeof(file)), ep->path,
               log_value(ep->id, id, sizeof(id)),
               ep->vpc != NULL ? log_value(ep->vpc, vpc, sizeof(vpc)) : "-",
               type != NULL ? log_value(json_str(type), type_text, sizeof(type_text)) : "-",
               state != NULL ? log_value(json_str(state), state_text, sizeof(state_text)) : "-",
               reason);
}

int vd_aws_load_endpoint(loader *l, const json_t *v, size_t index)
{
        const json_t *id, *type, *state, *vpc;
        endpoint ep;
        const char *f = l->ep_file;
        bool served, has_private = false;
        int rc;

        memset(&ep, 0, sizeof(ep));
        ep.index = index;
        size_t at = 0;
        vd_aws_put_text(ep.path, sizeof(ep.path), &at, "VpcEndpoints", FILE_PATH_CAP);
        vd_aws_put_index(ep.path, sizeof(ep.path), &at, index);
        l->sum.endpoints++;
        if (!cJSON_IsObject(v))
                return vd_aws_type_error(l, f, ep.path, "an object", v);
        const json_t *fv[EP_FIELDS];
        bool two[EP_FIELDS];
        const char *const *k = endpoint_keys;
        vd_aws_pick(v, endpoint_keys, EP_FIELDS, fv, two);
        if ((rc = vd_aws_check_member(l, f, ep.path, k[EP_ID], fv[EP_ID], two[EP_ID], WANT_STRING,
                                      false, &id)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep.path, k[EP_TYPE], fv[EP_TYPE], two[EP_TYPE],
                                      WANT_STRING, false, &type)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep.path, k[EP_STATE], fv[EP_STATE], two[EP_STATE],
                                      WANT_STRING, false, &state)) < 0 ||
            (rc = vd_aws_check_member(l, f, ep.path, k[EP_VPC], fv[EP_VPC], two[EP_VPC],
                                      WANT_STRING, false, &vpc)) < 0)
                return rc;
        ep.id = id ? json_str(id) : "?";
        ep.vpc = vpc ? json_str(vpc) : NULL;
        /* "FILE: VpcEndpoints[N] (vpce-..., vpc-...)", as several_vpcs_hint() expects */
        at = 0;
        ep.claim[0] = '\0';
        vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, f, FILE_PATH_CAP);
        vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, ": ", 2);
        vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, ep.path, sizeof(ep.path));
        vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, " (", 2);
        vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, ep.id, 100);
        if (ep.vpc != NULL) {
                vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, ", ", 2);
                vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, ep.vpc, 100);
        }
        vd_aws_put_text(ep.claim, sizeof(ep.claim), &at, ")", 1);

        /* Absent type or state: not served (see the top of aws.c). */
        served = type != NULL && strcasecmp(json_str(type), "Interface") == 0 && state != NULL &&
                 strcasecmp(json_str(state), "available") == 0;
        if (!served) {
                debug_skipped(l, &ep, type, state);
                return 0;
        }
        if (l->opt.vpc != NULL && (ep.vpc == NULL || strcmp(ep.vpc, l->opt.vpc) != 0)) {
                debug_skipped(l, &ep, type, state);
                return 0;
        }
        l->sum.endpoints_served++;

        if ((rc = read_served_endpoint(l, fv, two, &ep)) < 0)
                goto out;
        for (size_t i = 0; i < ep.n_names; i++)
                has_private = has_private || ep.names[i].kind == NAME_PRIVATE;
        if (ep.service && ep.private_dns && has_private && ep.regional == NULL) {
                rc = vd_error_set(l->err,
                                  "%s: %s.DnsEntries: endpoint %s is for an endpoint service, "
                                  "expected a regional vpce name for its private DNS names to "
                                  "point to",
                                  f, ep.path, ep.id);
                goto out;
        }
        l->ep_records = 0;
        for (size_t i = 0; i < ep.n_names; i++) {
                const dns_name *name = &ep.names[i];
                rc = 0;
                if (name->kind != NAME_PRIVATE)
                        rc = vd_aws_add_vpce_name(l, &ep, name);
                else if (ep.private_dns)
                        rc = vd_aws_add_private_name(l, &ep, name);
                if (rc < 0)
                        goto out;
        }
        if (l->ep_records == 0)
                warn_no_address(l, &ep);
out:
        free(ep.enis);
        free(ep.names);
        return rc;
}
