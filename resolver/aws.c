/* aws.c — the AWS snapshot loader (what it answers: docs/endpoint-dns.md).
 *
 * Owns: vd_aws_load(), which reads DIR/describe-vpc-endpoints.json and
 * DIR/describe-network-interfaces.json with cJSON, refuses an incomplete capture, checks
 * every field it uses, maps each endpoint to its ENIs' addresses and feeds the resulting
 * zones and records to a vd_builder; and the SOA and NS of the hidden zone. Its parts: aws_json.c
 * (reading and checking JSON), aws_eni.c (the interfaces file), aws_subnets.c (the optional
 * subnets file), aws_endpoint.c (the endpoints file)
 * and aws_records.c (names and records). Must not: answer queries, touch sockets, or keep anything
 * after vd_aws_load() returns (both JSON documents are freed).
 *
 * Choices made here where AWS documents nothing:
 * - JSON null counts as absent (the CLI prints "NextToken": null).
 * - A NextToken that is set (a non-empty string) in either file refuses the load: the CLI
 *   stopped paging (--max-items, --no-paginate), so the capture lists only its first pages,
 *   and serving it would forward the missing endpoints' names to public DNS.
 * - DIR/describe-subnets.json is optional: when present (vpcdns-snapshot writes it) it gives
 *   each ENI its AZ ID (by the ENI's SubnetId) and the snapshot its client-address → AZ table
 *   (aws_subnets.c); without it, ENIs have AZ names only and clients no AZ by address.
 * - DIR is opened once and both files are opened in it, so a DIR that is a symlink swapped
 *   to a new capture while we read gives both files from one capture, never a mix.
 * - An endpoint without VpcEndpointType or without State is not served (counted in
 *   `endpoints` only). Interface endpoints and the State field have existed since
 *   interface endpoints launched (endpoints older than that were all Gateway endpoints), so
 *   a missing field means a Gateway endpoint or a hand-trimmed file; serving addresses we are
 *   not sure about could blackhole traffic, while forwarding falls back to public DNS.
 * - PrivateDnsEnabled absent → false: private DNS names are served only when it is true.
 * - Only served endpoints must have their NetworkInterfaceIds in the interfaces file
 *   (a pendingAcceptance endpoint may list ENIs that do not exist yet).
 * - Every ENI in the interfaces file is checked (id present and unique, addresses valid),
 *   so a damaged file is rejected whole even where no endpoint uses the damaged part.
 * - A zonal name whose AZ has none of the endpoint's ENIs is skipped with a warning.
 * - An endpoint with DnsOptions.PrivateDnsOnlyForInboundResolverEndpoint true serves its vpce
 *   names to every client, and its private DNS names only in a load for inbound clients
 *   (vd_aws_options.inbound, a view with inbound: true): clients inside the VPC get the public
 *   answer for those, as AWS gives them (their traffic takes the gateway endpoint).
 * - With a VPC filter (vd_aws_options.vpc), the endpoints of other VPCs are skipped like
 *   unserved ones (named at debug level) and their fields are not read.
 * - DnsRecordIpType / IpAddressType values are compared case-insensitively; an unknown
 *   value is an error rather than a guess.
 * - A file that starts with a UTF-8 byte-order mark is read as if the mark were not there.
 *   The AWS CLI never writes one, but Windows tools do when a user saves its output
 *   (PowerShell 5's Out-File -Encoding utf8, Notepad); RFC 8259 §8.1 lets a parser ignore
 *   it, and the text after it is the CLI's JSON unchanged, so refusing would only make the
 *   user strip an invisible character. UTF-16 (PowerShell 5's `>`) is refused by name.
 * - A served endpoint that ends up with no address record for any of its names (say ipv6
 *   records while its ENIs have no IPv6 address) is loaded (its names answer NODATA) with one
 *   warning line naming the endpoint and the reason.
 * - Claims name the endpoint's VpcId, and a name claimed by endpoints of two VPCs says that
 *   the snapshot mixes VPCs (an unfiltered describe-vpc-endpoints lists the whole region). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "aws_int.h"
#include "vpcdns/aws.h"
#include "vpcdns/wire.h"

#define ENDPOINTS_FILE "describe-vpc-endpoints.json"
#define INTERFACES_FILE "describe-network-interfaces.json"

static const char *const zone_ns[] = {
    "ns-1536.awsdns-00.co.uk.",
    "ns-0.awsdns-00.com.",
    "ns-1024.awsdns-00.org.",
    "ns-512.awsdns-00.net.",
};
_Static_assert(sizeof(zone_ns) / sizeof(zone_ns[0]) == ZONE_NS_COUNT,
               "ZONE_NS_COUNT is the size of zone_ns");

static int build_zone_data(loader *l)
{
        uint8_t name[VD_NAME_MAX];
        size_t len, pos = 0;
        const uint32_t fields[] = {SOA_SERIAL, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, SOA_MINIMUM};

        VD_CHECK(vd_name_from_text(SOA_MNAME, name, &len) == 0);
        memcpy(l->soa + pos, name, len);
        pos += len;
        VD_CHECK(vd_name_from_text(SOA_RNAME, name, &len) == 0);
        memcpy(l->soa + pos, name, len);
        pos += len;
        for (size_t i = 0; i < 5; i++, pos += 4)
                vd_wire_put32(l->soa + pos, fields[i]);
        l->soa_len = (uint16_t)pos;
        for (size_t i = 0; i < ZONE_NS_COUNT; i++) {
                VD_CHECK(vd_name_from_text(zone_ns[i], l->ns[i], &len) == 0);
                l->ns_len[i] = (uint16_t)len;
        }
        return 0;
}

/* Records vpc in sum (once; served if any of its endpoints is). */
static void note_vpc(vd_aws_summary *sum, const char *vpc, bool served)
{
        size_t len = strlen(vpc);

        for (size_t k = 0; k < sum->n_vpcs; k++) {
                if (strcmp(sum->vpcs[k].id, vpc) == 0) {
                        sum->vpcs[k].served = sum->vpcs[k].served || served;
                        return;
                }
        }
        if (len >= VD_AWS_VPC_ID_MAX || sum->n_vpcs >= VD_AWS_VPCS_MAX) {
                sum->vpcs_more++;
                return;
        }
        memcpy(sum->vpcs[sum->n_vpcs].id, vpc, len + 1);
        sum->vpcs[sum->n_vpcs++].served = served;
}

/* The distinct VpcIds of the endpoints, for the several-VPCs hint, and in l->sum with whether
 * one of their endpoints is served (as vd_aws_load_endpoint decides it). Fields of the wrong
 * type are left to vd_aws_load_endpoint() to report. */
static int collect_vpcs(loader *l, const json_t *list)
{
        size_t n = json_len(list);

        if (n == 0)
                return 0;
        l->vpcs = calloc(n, sizeof(*l->vpcs));
        if (l->vpcs == NULL)
                return vd_aws_no_memory(l);
        JSON_EACH(item, list)
        {
                const json_t *v = vd_aws_string_member(item, "VpcId");
                const char *vpc = v != NULL ? v->valuestring : NULL;
                const char *type = json_str(vd_aws_string_member(item, "VpcEndpointType"));
                const char *state = json_str(vd_aws_string_member(item, "State"));
                bool seen = false;
                if (vpc == NULL)
                        continue;
                note_vpc(&l->sum, vpc,
                         type != NULL && strcasecmp(type, "Interface") == 0 && state != NULL &&
                             strcasecmp(state, "available") == 0);
                for (size_t k = 0; k < l->n_vpcs && !seen; k++)
                        seen = strcmp(l->vpcs[k], vpc) == 0;
                if (!seen)
                        l->vpcs[l->n_vpcs++] = vpc;
        }
        return 0;
}

void vd_aws_summary_merge_vpcs(vd_aws_summary *into, const vd_aws_summary *from)
{
        for (size_t k = 0; k < from->n_vpcs; k++)
                note_vpc(into, from->vpcs[k].id, from->vpcs[k].served);
        into->vpcs_more += from->vpcs_more;
}

size_t vd_aws_served_vpcs(const vd_aws_summary *s)
{
        size_t n = s->vpcs_more;

        for (size_t k = 0; k < s->n_vpcs; k++)
                n += s->vpcs[k].served;
        return n;
}

bool vd_aws_has_vpc(const vd_aws_summary *s, const char *vpc)
{
        for (size_t k = 0; k < s->n_vpcs; k++) {
                if (strcmp(s->vpcs[k].id, vpc) == 0)
                        return true;
        }
        return s->vpcs_more > 0;
}

void vd_aws_format_vpcs(const vd_aws_summary *s, bool served_only, char *out, size_t cap)
{
        size_t pos = 0, shown = 0;

        if (cap == 0)
                return;
        out[0] = '\0';
        for (size_t k = 0; k < s->n_vpcs && pos < cap; k++) {
                if (served_only && !s->vpcs[k].served)
                        continue;
                int w =
                    snprintf(out + pos, cap - pos, "%s%s", shown > 0 ? ", " : "", s->vpcs[k].id);
                pos += w > 0 ? (size_t)w : 0;
                shown++;
        }
        if (s->vpcs_more > 0 && pos < cap)
                snprintf(out + pos, cap - pos, "%sand %zu more", shown > 0 ? ", " : "",
                         s->vpcs_more);
        else if (shown == 0)
                snprintf(out, cap, "none");
}

int vd_aws_several_vpcs_error(const vd_aws_summary *s, const char *where, vd_error *err)
{
        char list[512];

        vd_aws_format_vpcs(s, true, list, sizeof(list));
        return vd_error_set(err,
                            "%s: the snapshot serves endpoints of %zu VPCs (%s), and every "
                            "client would get all of their names: choose the one VPC to serve "
                            "with --vpc (key vpc: vpc-...), or give each group of clients its "
                            "VPC with the key views (docs/views.md)",
                            where, vd_aws_served_vpcs(s), list);
}

/* A capture the AWS CLI did not finish paging names its next page in NextToken. */
static int check_complete(loader *l, const char *file, const json_t *doc)
{
        const json_t *token;
        int rc = vd_aws_member(l, file, doc, "", "NextToken", WANT_STRING, false, &token);

        if (rc < 0 || token == NULL || json_str(token)[0] == '\0')
                return rc;
        return vd_error_set(l->err,
                            "%s: NextToken: expected null or no NextToken, got a token: the AWS "
                            "CLI stopped paging (--max-items or --no-paginate), so the capture "
                            "is incomplete; capture again without them",
                            file);
}

static int join_path(loader *l, const char *dir, const char *file, char *out, size_t cap)
{
        size_t n = strlen(dir);
        int w;

        while (n > 1 && dir[n - 1] == '/')
                n--;
        w = snprintf(out, cap, "%.*s%s%s", (int)n, dir, (n == 1 && dir[0] == '/') ? "" : "/", file);
        if (w < 0 || (size_t)w >= cap)
                return vd_error_set(l->err, "%s: snapshot directory path too long", dir);
        return 0;
}

int vd_aws_load(vd_builder *b, const char *dir, vd_aws_summary *sum, vd_error *err)
{
        return vd_aws_load_with(b, dir, NULL, sum, err);
}

int vd_aws_load_with(vd_builder *b, const char *dir, const vd_aws_options *opt, vd_aws_summary *sum,
                     vd_error *err)
{
        loader *l = NULL;
        json_arena arena = {NULL};
        json_t *endpoints_doc = NULL, *interfaces_doc = NULL;
        const json_t *list;
        int rc;

        VD_CHECK(b != NULL && dir != NULL);
        if (dir[0] == '\0')
                return vd_error_set(err, "snapshot directory: expected a path, got \"\"");
        l = calloc(1, sizeof(*l));
        if (l == NULL) {
                vd_error_set(err, "%s: out of memory", dir);
                return -ENOMEM;
        }
        l->b = b;
        l->err = err;
        l->dir_fd = -1;
        if (opt != NULL)
                l->opt = *opt;
        if ((rc = join_path(l, dir, ENDPOINTS_FILE, l->ep_file, sizeof(l->ep_file))) < 0 ||
            (rc = join_path(l, dir, INTERFACES_FILE, l->if_file, sizeof(l->if_file))) < 0 ||
            (rc = join_path(l, dir, VD_AWS_SUBNETS_FILE, l->sn_file, sizeof(l->sn_file))) < 0 ||
            (rc = build_zone_data(l)) < 0)
                goto out;
        l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (l->dir_fd < 0) { /* named as before: the file cannot be opened */
                rc = vd_error_set(err, "%s: cannot open: %s", l->ep_file, strerror(errno));
                goto out;
        }
        vd_aws_arena_begin(&arena);
        if ((rc = vd_aws_load_json(l, l->ep_file, &endpoints_doc)) < 0 ||
            (rc = vd_aws_load_json(l, l->if_file, &interfaces_doc)) < 0 ||
            (rc = check_complete(l, l->ep_file, endpoints_doc)) < 0 ||
            (rc = check_complete(l, l->if_file, interfaces_doc)) < 0)
                goto out;
        /* Every field not read below is ignored. */
        if ((rc = vd_aws_member(l, l->ep_file, endpoints_doc, "", "VpcEndpoints", WANT_ARRAY, true,
                                &list)) < 0)
                goto out;
        if ((rc = vd_aws_load_interfaces(l, interfaces_doc)) < 0 ||
            (rc = vd_aws_load_subnets(l)) < 0 || (rc = collect_vpcs(l, list)) < 0)
                goto out;
        if (l->opt.one_vpc && l->opt.vpc == NULL && vd_aws_served_vpcs(&l->sum) > 1) {
                rc = vd_aws_several_vpcs_error(&l->sum, l->ep_file, err);
                goto out;
        }
        size_t index = 0;
        JSON_EACH(item, list)
        {
                if ((rc = vd_aws_load_endpoint(l, item, index++)) < 0)
                        goto out;
        }
        if (sum != NULL) {
                sum->endpoints += l->sum.endpoints;
                sum->endpoints_served += l->sum.endpoints_served;
                sum->names += l->sum.names;
                sum->addresses += l->sum.addresses;
                vd_aws_summary_merge_vpcs(sum, &l->sum);
        }
out:
        if (l->dir_fd >= 0)
                close(l->dir_fd);
        free(l->enis); /* their addresses are in the arena */
        free(l->eni_table);
        free(l->subnets);
        free(l->vpcs);
        free(l);
        vd_aws_arena_end(&arena); /* both documents */
        return rc;
}
