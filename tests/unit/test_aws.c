/* test_aws.c — the AWS snapshot loader (resolver/aws.c) against docs/endpoint-dns.md: loads the
 * snapshots in tests/data/aws/, compiles them with the snapshot builder and checks the exact
 * records (owner, type, TTL, rdata) that come out, plus every kind of bad input. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vpcdns/aws.h"
#include "vpcdns/log.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

#include "support/client.h"

#define DATA VD_TEST_DATA "/aws/"

typedef struct rec {
        char owner[VD_NAME_MAX * 4 + 2];
        uint16_t type;
        uint32_t ttl;
        char rdata[VD_NAME_MAX * 8 + 64];
} rec;

typedef struct recs {
        rec *v;
        size_t n;
        vd_snapshot *snap;
        vd_aws_summary sum;
} recs;

static const char *type_name(uint16_t type)
{
        switch (type) {
        case VD_TYPE_A:
                return "A";
        case VD_TYPE_AAAA:
                return "AAAA";
        case VD_TYPE_CNAME:
                return "CNAME";
        case VD_TYPE_NS:
                return "NS";
        case VD_TYPE_SOA:
                return "SOA";
        default:
                return "?";
        }
}

static void rdata_text(uint16_t type, const uint8_t *rdata, uint16_t rdlen, char *out, size_t cap)
{
        char a[VD_NAME_MAX * 4 + 2], b[VD_NAME_MAX * 4 + 2];
        size_t n1, n2;

        switch (type) {
        case VD_TYPE_A:
                cr_assert_eq(rdlen, 4);
                inet_ntop(AF_INET, rdata, out, (socklen_t)cap);
                return;
        case VD_TYPE_AAAA:
                cr_assert_eq(rdlen, 16);
                inet_ntop(AF_INET6, rdata, out, (socklen_t)cap);
                return;
        case VD_TYPE_CNAME:
        case VD_TYPE_NS:
                cr_assert_eq(vd_name_len(rdata, rdlen), rdlen);
                cr_assert_eq(vd_name_to_text(rdata, out, cap), 0);
                return;
        case VD_TYPE_SOA:
                n1 = vd_name_len(rdata, rdlen);
                cr_assert(n1 > 0);
                n2 = vd_name_len(rdata + n1, rdlen - n1);
                cr_assert(n2 > 0);
                cr_assert_eq(n1 + n2 + 20, rdlen);
                vd_name_to_text(rdata, a, sizeof(a));
                vd_name_to_text(rdata + n1, b, sizeof(b));
                snprintf(out, cap, "%s %s %u %u %u %u %u", a, b, vd_wire_get32(rdata + n1 + n2),
                         vd_wire_get32(rdata + n1 + n2 + 4), vd_wire_get32(rdata + n1 + n2 + 8),
                         vd_wire_get32(rdata + n1 + n2 + 12), vd_wire_get32(rdata + n1 + n2 + 16));
                return;
        default:
                snprintf(out, cap, "(%u octets)", rdlen);
        }
}

static int collect(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                   const uint8_t *rdata, uint16_t rdlen)
{
        recs *r = arg;
        rec *v = realloc(r->v, (r->n + 1) * sizeof(*r->v));
        cr_assert_not_null(v);
        r->v = v;
        rec *x = &r->v[r->n++];
        memset(x, 0, sizeof(*x));
        cr_assert_eq(vd_name_to_text(owner, x->owner, sizeof(x->owner)), 0);
        x->type = type;
        x->ttl = ttl;
        rdata_text(type, rdata, rdlen, x->rdata, sizeof(x->rdata));
        return 0;
}

/* Loads the snapshot in dir into a fresh builder, compiles it and collects every record. */
static void load_dir_ok(const char *dir, recs *r)
{
        vd_error err = {{0}};
        vd_builder *b = vd_builder_new();
        int rc;

        memset(r, 0, sizeof(*r));
        vd_log_set_level(VD_LOG_ERROR); /* the skipped zonal name warns; keep output short */
        cr_assert_not_null(b);
        rc = vd_aws_load(b, dir, &r->sum, &err);
        cr_assert_eq(rc, 0, "loading %s: %s", dir, err.msg);
        rc = vd_builder_finish(b, &r->snap, &err);
        cr_assert_eq(rc, 0, "finishing %s: %s", dir, err.msg);
        vd_builder_free(b);
        cr_assert_eq(vd_snapshot_foreach(r->snap, collect, r), 0);
}

/* Loads DATA/sub, as load_dir_ok. */
static void load_ok(const char *sub, recs *r)
{
        char dir[512];
        snprintf(dir, sizeof(dir), DATA "%s", sub);
        load_dir_ok(dir, r);
}

static void recs_free(recs *r)
{
        free(r->v);
        if (r->snap != NULL)
                vd_snapshot_unref(r->snap);
}

static int compare_text(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The rdata of every record at owner with type, sorted and joined by spaces ("" when none).
 * Checks on the way that one RRset has one TTL and returns it in *ttl. */
static const char *rrset(const recs *r, const char *owner, uint16_t type, uint32_t *ttl)
{
        static char out[8192];
        const char *items[512];
        size_t n = 0, o = 0;

        for (size_t i = 0; i < r->n; i++) {
                if (strcmp(r->v[i].owner, owner) != 0 || r->v[i].type != type)
                        continue;
                cr_assert(n < 512);
                if (n > 0 && ttl != NULL)
                        cr_assert_eq(r->v[i].ttl, *ttl, "%s %s: two TTLs in one RRset", owner,
                                     type_name(type));
                if (ttl != NULL)
                        *ttl = r->v[i].ttl;
                items[n++] = r->v[i].rdata;
        }
        qsort(items, n, sizeof(items[0]), compare_text);
        out[0] = '\0';
        for (size_t i = 0; i < n; i++)
                o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", i ? " " : "", items[i]);
        return out;
}

/* Asserts the RRset at owner/type is exactly `want` (sorted rdata) with the given TTL. */
static void expect_rrset(const recs *r, const char *owner, uint16_t type, uint32_t want_ttl,
                         const char *want)
{
        uint32_t ttl = 0;
        const char *got = rrset(r, owner, type, &ttl);
        cr_expect_str_eq(got, want, "%s %s: got \"%s\", want \"%s\"", owner, type_name(type), got,
                         want);
        if (want[0] != '\0')
                cr_expect_eq(ttl, want_ttl, "%s %s: TTL %u, want %u", owner, type_name(type), ttl,
                             want_ttl);
}

static void expect_addresses(const recs *r, const char *owner, const char *want_a,
                             const char *want_aaaa)
{
        expect_rrset(r, owner, VD_TYPE_A, VD_ENDPOINT_TTL, want_a);
        expect_rrset(r, owner, VD_TYPE_AAAA, VD_ENDPOINT_TTL, want_aaaa);
        expect_rrset(r, owner, VD_TYPE_CNAME, VD_ENDPOINT_TTL, "");
}

static size_t records_at(const recs *r, const char *owner)
{
        size_t n = 0;
        for (size_t i = 0; i < r->n; i++)
                n += strcmp(r->v[i].owner, owner) == 0;
        return n;
}

/* Counts records whose owner contains `part` (to show that an endpoint left no trace). */
static size_t records_mentioning(const recs *r, const char *part)
{
        size_t n = 0;
        for (size_t i = 0; i < r->n; i++)
                n += strstr(r->v[i].owner, part) != NULL || strstr(r->v[i].rdata, part) != NULL;
        return n;
}

#define AWS_SOA "ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 60"
#define AWS_NS                                                                                     \
        "ns-0.awsdns-00.com. ns-1024.awsdns-00.org. ns-1536.awsdns-00.co.uk. "                     \
        "ns-512.awsdns-00.net."

/* A private DNS name's hidden zone: SOA (TTL 60) and four NS (TTL 172800) at the apex. */
static void expect_hidden_zone(const recs *r, const char *apex)
{
        expect_rrset(r, apex, VD_TYPE_SOA, 60, AWS_SOA);
        expect_rrset(r, apex, VD_TYPE_NS, 172800, AWS_NS);
}

/* Asks the compiled snapshot one question and returns the rcode, the answer count and the
 * owner of the first authority record (the SOA of a negative answer) as text. */
static int ask(const vd_snapshot *s, const char *qname, uint16_t qtype, unsigned *ancount,
               char *auth_owner, size_t cap)
{
        uint8_t out[4096], tmp[VD_NAME_MAX];
        size_t len = 0, pos, tmp_len;
        dns_msg q;
        vd_query_info qi;

        client_query(&q, &qi, 0x4242, qname, qtype, false, false);
        if (vd_snapshot_answer(s, &qi, 0, out, sizeof(out), &len) != VD_LOCAL_ANSWERED)
                return -1;
        *ancount = vd_wire_get16(out + 6);
        pos = qi.question_end;
        for (unsigned i = 0; i < *ancount; i++) {
                uint16_t type;
                size_t fixed;
                cr_assert_eq(vd_wire_skip_rr(out, len, &pos, &type, &fixed), 0);
        }
        auth_owner[0] = '\0';
        if (vd_wire_get16(out + 8) > 0) {
                cr_assert_eq(vd_wire_read_name(out, len, &pos, tmp, &tmp_len, true), 0);
                cr_assert_eq(vd_name_to_text(tmp, auth_owner, cap), 0);
        }
        return out[3] & 0xF;
}

/* ---- the shared example (spec/example-snapshot) ---------------------------------------- */

Test(aws, example_snapshot_records)
{
        recs r;
        load_ok("ap-southeast-2", &r);

        /* ECR API: dualstack with service-defined records: AAAA on vpce names only. */
        expect_addresses(
            &r, "vpce-0793a67c9e2ed829a-48iq1s0k.api.ecr.ap-southeast-2.vpce.amazonaws.com.",
            "10.41.19.11 10.41.3.11", "2a05:d01c:1:1::11 2a05:d01c:1:2::11");
        expect_addresses(&r,
                         "vpce-0793a67c9e2ed829a-48iq1s0k-ap-southeast-2a.api.ecr.ap-southeast-2."
                         "vpce.amazonaws.com.",
                         "10.41.3.11", "2a05:d01c:1:1::11");
        expect_addresses(&r,
                         "vpce-0793a67c9e2ed829a-48iq1s0k-ap-southeast-2b.api.ecr.ap-southeast-2."
                         "vpce.amazonaws.com.",
                         "10.41.19.11", "2a05:d01c:1:2::11");
        expect_addresses(&r, "api.ecr.ap-southeast-2.amazonaws.com.", "10.41.19.11 10.41.3.11", "");
        expect_addresses(&r, "ecr.ap-southeast-2.api.aws.", "10.41.19.11 10.41.3.11", "");
        expect_hidden_zone(&r, "api.ecr.ap-southeast-2.amazonaws.com.");
        expect_hidden_zone(&r, "ecr.ap-southeast-2.api.aws.");

        /* S3 interface endpoint: wildcard vpce names and wildcard private name. */
        expect_addresses(&r,
                         "*.vpce-0f2a080ad8541c11a-6o9sk2d0.s3.ap-southeast-2.vpce.amazonaws.com.",
                         "10.42.19.12 10.42.3.12", "");
        expect_addresses(&r,
                         "*.vpce-0f2a080ad8541c11a-6o9sk2d0-ap-southeast-2a.s3.ap-southeast-2.vpce."
                         "amazonaws.com.",
                         "10.42.3.12", "");
        expect_addresses(&r,
                         "*.vpce-0f2a080ad8541c11a-6o9sk2d0-ap-southeast-2b.s3.ap-southeast-2.vpce."
                         "amazonaws.com.",
                         "10.42.19.12", "");
        expect_addresses(&r, "s3.ap-southeast-2.amazonaws.com.", "10.42.19.12 10.42.3.12", "");
        expect_addresses(&r, "*.s3.ap-southeast-2.amazonaws.com.", "10.42.19.12 10.42.3.12", "");
        expect_hidden_zone(&r, "s3.ap-southeast-2.amazonaws.com.");

        /* The DynamoDB gateway endpoint: nothing. */
        cr_expect_eq(records_mentioning(&r, "dynamodb"), 0);
        cr_expect_eq(records_mentioning(&r, "vpce-009cd75d167853d00"), 0);

        /* Nothing else: 20 address records, and SOA + 4 NS for each of three hidden zones. */
        cr_expect_eq(r.n, (4 + 2 + 2 + 2 + 2) + (2 + 1 + 1 + 2 + 2) + 3 * 5, "%zu records", r.n);
        recs_free(&r);
}

Test(aws, example_snapshot_summary)
{
        recs r;
        load_ok("ap-southeast-2", &r);
        cr_expect_eq(r.sum.endpoints, 3);
        cr_expect_eq(r.sum.endpoints_served, 2);
        cr_expect_eq(r.sum.names, 10);
        cr_expect_eq(r.sum.addresses, 20);
        recs_free(&r);
}

Test(aws, summary_adds_to_caller_counts)
{
        vd_aws_summary sum = {.endpoints = 100, .endpoints_served = 10, .names = 7, .addresses = 1};
        vd_error err = {{0}};
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_aws_load(b, DATA "ap-southeast-2/", &sum, &err), 0, "%s", err.msg);
        cr_expect_eq(sum.endpoints, 103);
        cr_expect_eq(sum.endpoints_served, 12);
        cr_expect_eq(sum.names, 17);
        cr_expect_eq(sum.addresses, 21);
        /* NULL summary is allowed; loading the same snapshot twice merges (same claims). */
        cr_expect_eq(vd_aws_load(b, DATA "ap-southeast-2", NULL, &err), 0, "%s", err.msg);
        vd_builder_free(b);
}

/* ---- cases: one endpoint per spec row (us-west-2) ------------------------------------------ */

#define SQS_ID "vpce-0a1b2c3d4e5f60001-abcd1234"

Test(aws, ipv4_regional_zonal_private)
{
        recs r;
        load_ok("cases", &r);
        /* Every PrivateIpAddresses entry, the PrivateIpAddress fallback, an ENI listed twice,
         * InterfaceType "interface", an AZ written in capitals. No AAAA although the ENI has
         * an IPv6 address: the endpoint is ipv4. */
        const char *all = "10.1.1.10 10.1.1.11 10.1.2.10 10.1.3.10";
        expect_addresses(&r, SQS_ID ".sqs.us-west-2.vpce.amazonaws.com.", all, "");
        expect_addresses(&r, SQS_ID "-us-west-2a.sqs.us-west-2.vpce.amazonaws.com.",
                         "10.1.1.10 10.1.1.11", "");
        expect_addresses(&r, SQS_ID "-us-west-2b.sqs.us-west-2.vpce.amazonaws.com.", "10.1.2.10",
                         "");
        expect_addresses(&r, SQS_ID "-us-west-2c.sqs.us-west-2.vpce.amazonaws.com.", "10.1.3.10",
                         "");
        /* A zonal name for an AZ without ENIs is skipped, not an error. */
        cr_expect_eq(records_at(&r, SQS_ID "-us-west-2d.sqs.us-west-2.vpce.amazonaws.com."), 0);
        expect_addresses(&r, "sqs.us-west-2.amazonaws.com.", all, "");
        expect_hidden_zone(&r, "sqs.us-west-2.amazonaws.com.");
        /* The ENI no endpoint lists is never served. */
        cr_expect_eq(records_mentioning(&r, "10.1.1.200"), 0);
        recs_free(&r);
}

Test(aws, ipv6_record_type)
{
        recs r;
        load_ok("cases", &r);
        const char *id = "vpce-0a1b2c3d4e5f60002-efgh5678";
        char name[256];
        snprintf(name, sizeof(name), "%s.sts.us-west-2.vpce.amazonaws.com.", id);
        expect_addresses(&r, name, "", "2600:1f14:aaa:1::20 2600:1f14:aaa:2::20");
        snprintf(name, sizeof(name), "%s-us-west-2a.sts.us-west-2.vpce.amazonaws.com.", id);
        expect_addresses(&r, name, "", "2600:1f14:aaa:1::20");
        expect_addresses(&r, "sts.us-west-2.amazonaws.com.", "",
                         "2600:1f14:aaa:1::20 2600:1f14:aaa:2::20");
        expect_hidden_zone(&r, "sts.us-west-2.amazonaws.com.");
        recs_free(&r);
}

Test(aws, dualstack_from_ip_address_type)
{
        recs r;
        load_ok("cases", &r);
        /* No DnsOptions: IpAddressType dualstack decides; A and AAAA on all names. */
        expect_addresses(&r, "vpce-0a1b2c3d4e5f60003-kms00003.kms.us-west-2.vpce.amazonaws.com.",
                         "10.1.1.30", "2600:1f14:aaa:1::30");
        expect_addresses(&r, "kms.us-west-2.amazonaws.com.", "10.1.1.30", "2600:1f14:aaa:1::30");
        recs_free(&r);
}

Test(aws, service_defined_and_name_case)
{
        recs r;
        load_ok("cases", &r);
        expect_addresses(&r, "vpce-0a1b2c3d4e5f60004-logs0004.logs.us-west-2.vpce.amazonaws.com.",
                         "10.1.1.40", "2600:1f14:aaa:1::40");
        expect_addresses(
            &r, "vpce-0a1b2c3d4e5f60004-logs0004-us-west-2a.logs.us-west-2.vpce.amazonaws.com.",
            "10.1.1.40", "2600:1f14:aaa:1::40");
        /* "Logs.US-West-2.amazonaws.com." in the file: lower-cased, A only. */
        expect_addresses(&r, "logs.us-west-2.amazonaws.com.", "10.1.1.40", "");
        expect_hidden_zone(&r, "logs.us-west-2.amazonaws.com.");
        recs_free(&r);
}

Test(aws, no_record_type_means_ipv4_and_state_is_case_insensitive)
{
        recs r;
        load_ok("cases", &r);
        /* State "Available", neither DnsRecordIpType nor IpAddressType: A only. */
        expect_addresses(&r, "vpce-0a1b2c3d4e5f60005-ssm00005.ssm.us-west-2.vpce.amazonaws.com.",
                         "10.1.2.50", "");
        expect_addresses(&r, "ssm.us-west-2.amazonaws.com.", "10.1.2.50", "");
        recs_free(&r);
}

Test(aws, unserved_endpoints_leave_no_trace)
{
        recs r;
        load_ok("cases", &r);
        cr_expect_eq(records_mentioning(&r, "monitoring"), 0, "pendingAcceptance was served");
        cr_expect_eq(records_mentioning(&r, "vpce-0a1b2c3d4e5f60007"), 0, "gateway was served");
        cr_expect_eq(records_mentioning(&r, "cloudformation"), 0, "no VpcEndpointType: served");
        cr_expect_eq(records_mentioning(&r, "states"), 0, "no State: served");
        cr_expect_eq(records_mentioning(&r, "10.1.1.99"), 0);
        recs_free(&r);
}

Test(aws, old_eight_hex_id)
{
        recs r;
        unsigned an = 99;
        char owner[300];
        load_ok("cases", &r);
        expect_addresses(&r, "vpce-032a826a-k9m2p7q4.ec2.us-west-2.vpce.amazonaws.com.",
                         "10.1.3.60", "");
        expect_addresses(&r, "ec2.us-west-2.amazonaws.com.", "10.1.3.60", "");
        /* A vpce name, not a private one: no hidden zone of its own, NODATA from the region. */
        cr_expect_eq(records_at(&r, "vpce-032a826a-k9m2p7q4.ec2.us-west-2.vpce.amazonaws.com."), 1);
        cr_expect_eq(ask(r.snap, "vpce-032a826a-k9m2p7q4.ec2.us-west-2.vpce.amazonaws.com",
                         VD_TYPE_AAAA, &an, owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_str_eq(owner, "us-west-2.vpce.amazonaws.com.");
        recs_free(&r);
}

Test(aws, private_dns_disabled_serves_vpce_names_only)
{
        recs r;
        load_ok("cases", &r);
        expect_addresses(
            &r, "vpce-0a1b2c3d4e5f60008-secr0008.secretsmanager.us-west-2.vpce.amazonaws.com.",
            "10.1.1.70", "");
        cr_expect_eq(records_at(&r, "secretsmanager.us-west-2.amazonaws.com."), 0);
        recs_free(&r);
}

Test(aws, inbound_resolver_only_private_names_not_served)
{
        recs r;
        load_ok("cases", &r);
        /* Clients count as inside the VPC (docs/endpoint-dns.md), so only the vpce names
         * answer. */
        expect_addresses(&r, "*.vpce-0a1b2c3d4e5f60009-s3inbd09.s3.us-west-2.vpce.amazonaws.com.",
                         "10.1.1.80", "");
        expect_addresses(
            &r, "*.vpce-0a1b2c3d4e5f60009-s3inbd09-us-west-2a.s3.us-west-2.vpce.amazonaws.com.",
            "10.1.1.80", "");
        cr_expect_eq(records_at(&r, "s3.us-west-2.amazonaws.com."), 0);
        cr_expect_eq(records_at(&r, "*.s3.us-west-2.amazonaws.com."), 0);
        recs_free(&r);
}

#define PARTNER_REGIONAL                                                                           \
        "vpce-0a1b2c3d4e5f60010-ptnr0010.vpce-svc-0123456789abcdef0.us-west-2.vpce.amazonaws.com."

Test(aws, endpoint_service_private_name_is_cname)
{
        recs r;
        load_ok("cases", &r);
        expect_addresses(&r, PARTNER_REGIONAL, "10.1.1.90 10.1.2.90", "");
        expect_addresses(&r,
                         "vpce-0a1b2c3d4e5f60010-ptnr0010-us-west-2a.vpce-svc-0123456789abcdef0."
                         "us-west-2.vpce.amazonaws.com.",
                         "10.1.1.90", "");
        /* The private names: a CNAME to the regional name, no addresses of their own. */
        expect_rrset(&r, "api.partner.example.", VD_TYPE_CNAME, 60, PARTNER_REGIONAL);
        expect_rrset(&r, "*.api.partner.example.", VD_TYPE_CNAME, 60, PARTNER_REGIONAL);
        expect_rrset(&r, "api.partner.example.", VD_TYPE_A, 60, "");
        expect_rrset(&r, "*.api.partner.example.", VD_TYPE_A, 60, "");
        expect_hidden_zone(&r, "api.partner.example.");
        recs_free(&r);
}

Test(aws, wildcard_private_name)
{
        recs r;
        load_ok("cases", &r);
        expect_addresses(&r, "execute-api.us-west-2.amazonaws.com.", "10.1.2.100", "");
        expect_addresses(&r, "*.execute-api.us-west-2.amazonaws.com.", "10.1.2.100", "");
        /* For "*.x" the apex is x: one hidden zone for both names. */
        expect_hidden_zone(&r, "execute-api.us-west-2.amazonaws.com.");
        cr_expect_eq(records_at(&r, "*.execute-api.us-west-2.amazonaws.com."), 1);
        recs_free(&r);
}

Test(aws, cases_summary_and_next_token)
{
        recs r;
        /* Both files carry a null NextToken: a complete capture. */
        load_ok("cases", &r);
        cr_expect_eq(r.sum.endpoints, 14);
        cr_expect_eq(r.sum.endpoints_served, 10);
        cr_expect_eq(r.sum.names, 27);
        cr_expect_eq(r.sum.addresses, 39);
        recs_free(&r);
}

Test(aws, negative_answers_use_the_right_zone)
{
        recs r;
        unsigned an = 99;
        char owner[300];
        load_ok("cases", &r);
        /* A known vpce name asked for a type it lacks: NODATA, SOA of the region's zone. */
        cr_expect_eq(ask(r.snap, SQS_ID ".sqs.us-west-2.vpce.amazonaws.com", VD_TYPE_AAAA, &an,
                         owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_eq(an, 0);
        cr_expect_str_eq(owner, "us-west-2.vpce.amazonaws.com.");
        /* Under a private name: NXDOMAIN with the hidden zone's SOA. */
        cr_expect_eq(
            ask(r.snap, "foo.sqs.us-west-2.amazonaws.com", VD_TYPE_A, &an, owner, sizeof(owner)),
            VD_RCODE_NXDOMAIN);
        cr_expect_str_eq(owner, "sqs.us-west-2.amazonaws.com.");
        /* AAAA at an ipv4 private name: NODATA from its hidden zone. */
        cr_expect_eq(
            ask(r.snap, "sqs.us-west-2.amazonaws.com", VD_TYPE_AAAA, &an, owner, sizeof(owner)),
            VD_RCODE_NOERROR);
        cr_expect_eq(an, 0);
        cr_expect_str_eq(owner, "sqs.us-west-2.amazonaws.com.");
        /* Unknown vpce names and names of unserved endpoints are forwarded. */
        cr_expect_eq(ask(r.snap, "vpce-0ffffffffffffffff-zzzz9999.sqs.us-west-2.vpce.amazonaws.com",
                         VD_TYPE_A, &an, owner, sizeof(owner)),
                     -1);
        cr_expect_eq(
            ask(r.snap, "monitoring.us-west-2.amazonaws.com", VD_TYPE_A, &an, owner, sizeof(owner)),
            -1);
        cr_expect_eq(
            ask(r.snap, "s3.us-west-2.amazonaws.com", VD_TYPE_A, &an, owner, sizeof(owner)), -1);
        recs_free(&r);
}

/* ---- China and GovCloud ------------------------------------------------------------------ */

Test(aws, china_and_govcloud)
{
        recs r;
        unsigned an = 99;
        char owner[300];
        load_ok("partitions", &r);
        expect_addresses(&r,
                         "vpce-0c0c0c0c0c0c0c0c1-cn000001.sqs.cn-north-1.vpce.amazonaws.com.cn.",
                         "172.31.1.5 172.31.2.5", "");
        expect_addresses(
            &r, "vpce-0c0c0c0c0c0c0c0c1-cn000001-cn-north-1a.sqs.cn-north-1.vpce.amazonaws.com.cn.",
            "172.31.1.5", "");
        expect_addresses(&r, "sqs.cn-north-1.amazonaws.com.cn.", "172.31.1.5 172.31.2.5", "");
        expect_hidden_zone(&r, "sqs.cn-north-1.amazonaws.com.cn.");
        expect_addresses(&r,
                         "vpce-0606060606060606a-gov00001.sts.us-gov-west-1.vpce.amazonaws.com.",
                         "10.9.1.5", "");
        expect_addresses(
            &r,
            "vpce-0606060606060606a-gov00001-us-gov-west-1a.sts.us-gov-west-1.vpce.amazonaws.com.",
            "10.9.1.5", "");
        expect_addresses(&r, "sts.us-gov-west-1.amazonaws.com.", "10.9.1.5", "");
        cr_expect_eq(ask(r.snap,
                         "vpce-0c0c0c0c0c0c0c0c1-cn000001.sqs.cn-north-1.vpce.amazonaws.com.cn",
                         VD_TYPE_MX, &an, owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_str_eq(owner, "cn-north-1.vpce.amazonaws.com.cn.");
        cr_expect_eq(ask(r.snap,
                         "vpce-0606060606060606a-gov00001-us-gov-west-1a.sts.us-gov-west-1.vpce."
                         "amazonaws.com",
                         VD_TYPE_AAAA, &an, owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_str_eq(owner, "us-gov-west-1.vpce.amazonaws.com.");
        recs_free(&r);
}

/* ---- errors ------------------------------------------------------------------------------ */

/* Loads DATA/sub, expects failure, and returns the message. */
static const char *load_fails(const char *sub)
{
        static vd_error err;
        char dir[512];
        vd_aws_summary sum = {0};
        vd_builder *b = vd_builder_new();
        vd_snapshot *s = NULL;
        int rc;

        memset(&err, 0, sizeof(err));
        snprintf(dir, sizeof(dir), DATA "%s", sub);
        rc = vd_aws_load(b, dir, &sum, &err);
        if (rc == 0) /* conflicts may surface only when the builder compiles */
                rc = vd_builder_finish(b, &s, &err);
        cr_assert_lt(rc, 0, "%s loaded without error", sub);
        cr_assert_neq(err.msg[0], '\0', "%s: empty message", sub);
        if (strncmp(sub, "conflict", 8) != 0) {
                cr_expect_eq(sum.endpoints + sum.names + sum.addresses, 0,
                             "%s: summary changed on failure", sub);
        }
        vd_builder_free(b);
        return err.msg;
}

static void expect_msg(const char *msg, const char *part)
{
        cr_expect(strstr(msg, part) != NULL, "message \"%s\" lacks \"%s\"", msg, part);
}

#define EP_FILE "describe-vpc-endpoints.json"
#define IF_FILE "describe-network-interfaces.json"
#define BAD(case, file) DATA "bad/" case "/" file

Test(aws, two_endpoints_claiming_one_private_name)
{
        const char *msg = load_fails("conflict");
        expect_msg(msg, "sqs.us-west-2.amazonaws.com");
        expect_msg(msg, DATA "conflict/" EP_FILE
                             ": VpcEndpoints[0] (vpce-0c1c1c1c1c1c1c1c1, vpc-0f1e2d3c4b5a69788)");
        expect_msg(msg, DATA "conflict/" EP_FILE
                             ": VpcEndpoints[1] (vpce-0c2c2c2c2c2c2c2c2, vpc-0f1e2d3c4b5a69788)");
        expect_msg(msg, DATA "conflict/" EP_FILE ": VpcEndpoints[1].DnsEntries[1].DnsName: ");
        /* one VPC: the hint about several VPCs would mislead */
        cr_expect_null(strstr(msg, "several VPCs"), "message \"%s\" blames several VPCs", msg);
}

/* An unfiltered `aws ec2 describe-vpc-endpoints` lists every VPC of the region: the same
 * private DNS name then comes from two VPCs, and the message says how to take one. */
Test(aws, name_claimed_from_two_vpcs_says_how_to_capture_one)
{
        const char *msg = load_fails("conflict-vpcs");
        expect_msg(msg, "sqs.us-west-2.amazonaws.com");
        expect_msg(msg, "VpcEndpoints[0] (vpce-0c1c1c1c1c1c1c1c1, vpc-0f1e2d3c4b5a69788)");
        expect_msg(msg, "VpcEndpoints[1] (vpce-0c2c2c2c2c2c2c2c2, vpc-0a9b8c7d6e5f40312)");
        expect_msg(msg, "; the snapshot holds endpoints of several VPCs (vpc-0f1e2d3c4b5a69788, "
                        "vpc-0a9b8c7d6e5f40312): capture one VPC with --filters "
                        "Name=vpc-id,Values=<id>");
        cr_expect_null(strchr(msg, '\n'), "message \"%s\" has more than one line", msg);
}

Test(aws, two_endpoints_claiming_one_vpce_name)
{
        const char *msg = load_fails("conflict-vpce");
        expect_msg(msg, "vpce-0c1c1c1c1c1c1c1c1-aaaa1111.sqs.us-west-2.vpce.amazonaws.com");
        expect_msg(msg, "VpcEndpoints[0] (vpce-0c1c1c1c1c1c1c1c1, vpc-0f1e2d3c4b5a69788)");
        expect_msg(msg, "VpcEndpoints[1] (vpce-0c2c2c2c2c2c2c2c2, vpc-0f1e2d3c4b5a69788)");
}

/* got holds exactly the records of want (a non-empty load of the same snapshot). */
static void expect_same_records(const recs *got, const recs *want, const char *how)
{
        cr_assert_gt(want->n, 0);
        cr_assert_eq(got->n, want->n, "%zu records %s, %zu without", got->n, how, want->n);
        for (size_t i = 0; i < want->n; i++) {
                cr_expect_str_eq(got->v[i].owner, want->v[i].owner);
                cr_expect_eq(got->v[i].type, want->v[i].type);
                cr_expect_eq(got->v[i].ttl, want->v[i].ttl);
                cr_expect_str_eq(got->v[i].rdata, want->v[i].rdata);
        }
}

/* RFC 8259 §8.1 lets a parser ignore a UTF-8 byte-order mark; Windows tools add one when a
 * user saves the CLI's output. The records must be exactly those of the file without it. */
Test(aws, utf8_byte_order_mark_is_ignored)
{
        recs plain, marked;

        load_ok("ap-southeast-2", &plain);
        load_ok("bom", &marked);
        expect_same_records(&marked, &plain, "with the mark");
        cr_expect_eq(marked.sum.endpoints_served, plain.sum.endpoints_served);
        cr_expect_eq(marked.sum.addresses, plain.sum.addresses);
        recs_free(&plain);
        recs_free(&marked);
}

/* Copies the file src into the FIFO dst from a child process, then 200 KiB of newlines (JSON
 * lets the text end in white space) so that the reader's buffer has to grow; returns its pid. */
static pid_t feed_fifo(const char *src, const char *dst)
{
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid != 0)
                return pid;
        alarm(20); /* a loader that never opens the FIFO must not leave us waiting forever */
        FILE *in = fopen(src, "rb");
        FILE *out = fopen(dst, "wb"); /* blocks until the loader opens it */
        char buf[4096];
        size_t n;
        if (in == NULL || out == NULL)
                _exit(1);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                if (fwrite(buf, 1, n, out) != n)
                        _exit(1);
        memset(buf, '\n', sizeof(buf));
        for (int i = 0; i < 50; i++)
                if (fwrite(buf, 1, sizeof(buf), out) != sizeof(buf))
                        _exit(1);
        _exit(fclose(out) == 0 ? 0 : 1);
}

/* A snapshot read from pipes (`aws ec2 ... > fifo`): no size to go by, the buffer grows as the
 * text comes. The records must be those of the same files on disk. */
Test(aws, snapshot_from_fifos)
{
        static const char *const files[] = {"describe-vpc-endpoints.json",
                                            "describe-network-interfaces.json"};
        char dir[] = "/tmp/vpcdns-fifo.XXXXXX";
        char src[512], dst[600];
        pid_t pids[2];
        recs plain, piped;

        load_ok("ap-southeast-2", &plain);
        cr_assert_not_null(mkdtemp(dir));
        for (size_t i = 0; i < 2; i++) {
                snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
                cr_assert_eq(mkfifo(dst, 0600), 0);
        }
        for (size_t i = 0; i < 2; i++) {
                snprintf(src, sizeof(src), DATA "ap-southeast-2/%s", files[i]);
                snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
                pids[i] = feed_fifo(src, dst);
        }
        load_dir_ok(dir, &piped);
        for (size_t i = 0; i < 2; i++) {
                int status = -1;
                cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
                unlink(dst);
        }
        rmdir(dir);
        expect_same_records(&piped, &plain, "from the pipes");
        recs_free(&plain);
        recs_free(&piped);
}

Test(aws, utf16_file_is_refused_by_name)
{
        const char *msg = load_fails("bad/utf16");
        expect_msg(msg, BAD("utf16", EP_FILE) ": the file is UTF-16");
        expect_msg(msg, "expected UTF-8 JSON as the AWS CLI prints it");
}

/* Runs vd_aws_load on DATA/sub at log level level with stderr in a temporary file; returns
 * what was logged. */
static char *load_logging(const char *sub, vd_log_level level)
{
        char dir[512];
        char *text;
        FILE *log = tmpfile();
        vd_error err = {{0}};
        vd_builder *b = vd_builder_new();
        int saved = dup(STDERR_FILENO);
        long size;
        int rc;

        cr_assert_not_null(log);
        cr_assert_geq(saved, 0);
        fflush(stderr);
        cr_assert_geq(dup2(fileno(log), STDERR_FILENO), 0);
        vd_log_set_level(level);
        snprintf(dir, sizeof(dir), DATA "%s", sub);
        rc = vd_aws_load(b, dir, NULL, &err);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        vd_log_set_level(VD_LOG_ERROR);
        cr_assert_eq(rc, 0, "loading %s: %s", dir, err.msg);
        vd_builder_free(b);
        size = ftell(log);
        cr_assert_geq(size, 0);
        text = calloc(1, (size_t)size + 1);
        cr_assert_not_null(text);
        rewind(log);
        cr_assert_eq(fread(text, 1, (size_t)size, log), (size_t)size);
        fclose(log);
        return text;
}

/* The line of log that mentions needle, copied into out; false when there is none. */
static bool log_line(const char *log, const char *needle, char *out, size_t cap)
{
        const char *at = strstr(log, needle), *start, *end;

        if (at == NULL)
                return false;
        for (start = at; start > log && start[-1] != '\n'; start--)
                ;
        end = strchr(at, '\n');
        if (end == NULL)
                end = at + strlen(at);
        snprintf(out, cap, "%.*s", (int)(end - start), start);
        return true;
}

/* A served endpoint whose names get no address (ipv6 records, IPv4-only ENIs; no ENIs at
 * all) would be served as SOA-only zones: one warning line each says which and why. */
Test(aws, endpoint_without_addresses_warns_once_each)
{
        char *log = load_logging("no-address", VD_LOG_WARN);
        char line[1024];
        size_t count = 0;

        for (const char *p = log; (p = strstr(p, "event=aws_endpoint_without_addresses")) != NULL;
             p++)
                count++;
        cr_expect_eq(count, 2, "expected two warnings, got:\n%s", log);
        cr_assert(log_line(log, "endpoint=vpce-0c2c2c2c2c2c2c2c2", line, sizeof(line)),
                  "no warning for the ipv6 endpoint:\n%s", log);
        expect_msg(line, "level=warn");
        expect_msg(line, "path=VpcEndpoints[1]");
        expect_msg(line, "vpc=vpc-0f1e2d3c4b5a69788");
        expect_msg(line, "record_ip_type=ipv6");
        expect_msg(line, "reason=ipv6_records_but_its_enis_have_no_ipv6_address");
        cr_assert(log_line(log, "endpoint=vpce-0c3c3c3c3c3c3c3c3", line, sizeof(line)),
                  "no warning for the endpoint without ENIs:\n%s", log);
        expect_msg(line, "reason=no_network_interfaces");
        /* served with addresses, or not served at all: nothing to say */
        cr_expect_null(strstr(log, "vpce-0c1c1c1c1c1c1c1c1"), "%s", log);
        cr_expect_null(strstr(log, "vpce-0c4c4c4c4c4c4c4c4"), "%s", log);
        free(log);
}

/* Endpoints that are not served are named at debug level only, each with its reason. */
Test(aws, skipped_endpoints_named_at_debug_level)
{
        static const struct {
                const char *id, *reason;
        } skipped[] = {
            {"endpoint=vpce-0a1b2c3d4e5f60006 ", "reason=state_not_available"},
            {"endpoint=vpce-0a1b2c3d4e5f60007 ", "reason=not_an_interface_endpoint"},
            {"endpoint=vpce-0a1b2c3d4e5f60011 ", "reason=no_endpoint_type"},
            {"endpoint=vpce-0a1b2c3d4e5f60012 ", "reason=no_state"},
        };
        char *log = load_logging("cases", VD_LOG_DEBUG);
        char line[1024];
        size_t count = 0;

        for (const char *p = log; (p = strstr(p, "event=aws_endpoint_skipped")) != NULL; p++)
                count++;
        cr_expect_eq(count, 4, "expected four skipped endpoints, got:\n%s", log);
        for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++) {
                cr_assert(log_line(log, skipped[i].id, line, sizeof(line)), "%s not named:\n%s",
                          skipped[i].id, log);
                expect_msg(line, "level=debug event=aws_endpoint_skipped");
                expect_msg(line, skipped[i].reason);
        }
        expect_msg(log, "type=Gateway state=available");
        free(log);
        log = load_logging("cases", VD_LOG_INFO);
        cr_expect_null(strstr(log, "aws_endpoint_skipped"), "%s", log);
        free(log);
}

Test(aws, empty_file)
{
        const char *msg = load_fails("bad/empty");
        expect_msg(msg, BAD("empty", EP_FILE) ": ");
        expect_msg(msg, "empty");
}

Test(aws, empty_interfaces_file)
{
        const char *msg = load_fails("bad/interfaces-empty");
        expect_msg(msg, BAD("interfaces-empty", IF_FILE) ": ");
        expect_msg(msg, "empty");
}

Test(aws, missing_file)
{
        const char *msg = load_fails("bad/missing-file");
        expect_msg(msg, BAD("missing-file", EP_FILE) ": cannot open");
        expect_msg(msg, "No such file");
        msg = load_fails("bad/no-such-directory");
        expect_msg(msg, BAD("no-such-directory", EP_FILE));
}

Test(aws, next_token_set_is_refused)
{
        /* The CLI stopped paging: the capture is incomplete, whichever file it is in. */
        const char *msg = load_fails("bad/next-token");
        expect_msg(msg, BAD("next-token", EP_FILE) ": NextToken: expected null or no NextToken");
        expect_msg(msg, "incomplete");
        msg = load_fails("bad/next-token-interfaces");
        expect_msg(msg, BAD("next-token-interfaces", IF_FILE) ": NextToken: expected null");
}

Test(aws, not_json_names_line_and_column)
{
        const char *msg = load_fails("bad/not-json");
        expect_msg(msg, BAD("not-json", EP_FILE) ":3:");
        expect_msg(msg, "not valid JSON");
}

/* The AWS CLI never writes these; each is named with its place. */
Test(aws, json_duplicate_key_trailing_text_and_truncation)
{
        const char *msg = load_fails("bad/not-json");
        expect_msg(msg, ":3:36: not valid JSON near '}'");
        msg = load_fails("bad/duplicate-key");
        expect_msg(msg, BAD("duplicate-key", EP_FILE) ": ");
        expect_msg(msg, "VpcEndpoints: expected one value, but the key appears twice");
        msg = load_fails("bad/trailing-text");
        expect_msg(msg, BAD("trailing-text", EP_FILE) ":4:1: not valid JSON: text after");
        msg = load_fails("bad/truncated");
        expect_msg(msg, BAD("truncated", EP_FILE) ":5:1: not valid JSON: the text ends early");
}

Test(aws, top_level_not_object)
{
        const char *msg = load_fails("bad/top-array");
        expect_msg(msg, BAD("top-array", EP_FILE) ": ");
        expect_msg(msg, "expected an object, got an array");
}

Test(aws, endpoints_missing_or_not_array)
{
        const char *msg = load_fails("bad/no-endpoints");
        expect_msg(msg, BAD("no-endpoints", EP_FILE) ": VpcEndpoints: expected an array");
        expect_msg(msg, "missing");
        msg = load_fails("bad/endpoints-not-array");
        expect_msg(msg, BAD("endpoints-not-array",
                            EP_FILE) ": VpcEndpoints: expected an array, got an object");
}

Test(aws, interfaces_missing_or_not_array)
{
        const char *msg = load_fails("bad/no-interfaces");
        expect_msg(msg, BAD("no-interfaces", IF_FILE) ": NetworkInterfaces: expected an array");
        msg = load_fails("bad/interfaces-not-array");
        expect_msg(msg, BAD("interfaces-not-array",
                            IF_FILE) ": NetworkInterfaces: expected an array, got a string");
}

Test(aws, wrong_field_types)
{
        const char *msg = load_fails("bad/endpoint-not-object");
        expect_msg(msg, BAD("endpoint-not-object",
                            EP_FILE) ": VpcEndpoints[1]: expected an object, got a string");
        msg = load_fails("bad/name-not-string");
        expect_msg(msg, BAD("name-not-string", EP_FILE) ": VpcEndpoints[1].DnsEntries[1].DnsName: "
                                                        "expected a string, got a number");
        msg = load_fails("bad/bool-as-string");
        expect_msg(msg, BAD("bool-as-string", EP_FILE) ": VpcEndpoints[0].PrivateDnsEnabled: "
                                                       "expected true or false, got a string");
        msg = load_fails("bad/ids-not-array");
        expect_msg(
            msg,
            BAD("ids-not-array",
                EP_FILE) ": VpcEndpoints[0].NetworkInterfaceIds: expected an array, got a string");
}

Test(aws, invalid_dns_names)
{
        const char *msg = load_fails("bad/bad-name");
        expect_msg(msg, BAD("bad-name", EP_FILE) ": VpcEndpoints[0].DnsEntries[0].DnsName: "
                                                 "expected a DNS name, got \"sqs..us-west-2");
        msg = load_fails("bad/bad-name-star");
        expect_msg(msg,
                   BAD("bad-name-star",
                       EP_FILE) ": VpcEndpoints[0].DnsEntries[0].DnsName: expected a DNS name");
}

Test(aws, invalid_addresses)
{
        const char *msg = load_fails("bad/bad-ipv4");
        expect_msg(msg,
                   BAD("bad-ipv4",
                       IF_FILE) ": NetworkInterfaces[1].PrivateIpAddresses[0].PrivateIpAddress: "
                                "expected an "
                                "IPv4 address, got \"10.2.2.300\"");
        msg = load_fails("bad/bad-primary-ipv4");
        expect_msg(
            msg, BAD("bad-primary-ipv4",
                     IF_FILE) ": NetworkInterfaces[1].PrivateIpAddress: expected an IPv4 address");
        msg = load_fails("bad/bad-ipv6");
        expect_msg(
            msg,
            BAD("bad-ipv6",
                IF_FILE) ": NetworkInterfaces[0].Ipv6Addresses[0].Ipv6Address: expected an IPv6 "
                         "address, got \"2600:1f14::zz\"");
}

Test(aws, endpoint_eni_missing_from_interfaces)
{
        const char *msg = load_fails("bad/missing-eni");
        expect_msg(msg, BAD("missing-eni", EP_FILE) ": VpcEndpoints[0].NetworkInterfaceIds[1]: ");
        expect_msg(msg, "eni-0b0000000000000ff");
        expect_msg(msg, IF_FILE);
}

Test(aws, duplicate_eni_id)
{
        const char *msg = load_fails("bad/duplicate-eni");
        expect_msg(msg, BAD("duplicate-eni", IF_FILE) ": NetworkInterfaces[2].NetworkInterfaceId");
        expect_msg(msg, "NetworkInterfaces[0]");
}

Test(aws, unknown_record_type)
{
        const char *msg = load_fails("bad/bad-record-type");
        expect_msg(msg,
                   BAD("bad-record-type", EP_FILE) ": VpcEndpoints[0].DnsOptions.DnsRecordIpType: "
                                                   "expected ipv4, ipv6, dualstack "
                                                   "or service-defined, got \"ipv5\"");
        msg = load_fails("bad/bad-ip-address-type");
        expect_msg(msg, BAD("bad-ip-address-type", EP_FILE) ": VpcEndpoints[0].IpAddressType: ");
}

Test(aws, endpoint_service_without_regional_name)
{
        const char *msg = load_fails("bad/service-no-regional");
        expect_msg(msg, BAD("service-no-regional", EP_FILE) ": VpcEndpoints[0]");
        expect_msg(msg, "vpce-0b0b0b0b0b0b0b0b1");
        expect_msg(msg, "regional");
}

/* ---- the example the daemon serves by default (zones/example) ---------------------------- */

static void load_example(recs *r)
{
        vd_error err = {{0}};
        vd_builder *b = vd_builder_new();

        memset(r, 0, sizeof(*r));
        vd_log_set_level(VD_LOG_ERROR);
        cr_assert_eq(vd_aws_load(b, VD_SOURCE_DIR "/zones/example", &r->sum, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(vd_builder_finish(b, &r->snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        cr_assert_eq(vd_snapshot_foreach(r->snap, collect, r), 0);
}

Test(aws, example_zone_data)
{
        recs r;
        load_example(&r);
        cr_expect_eq(r.sum.endpoints, 21);
        cr_expect_eq(r.sum.endpoints_served, 18); /* not: two gateways, one pendingAcceptance */
        expect_addresses(&r, "sqs.us-east-1.amazonaws.com.", "10.0.1.10 10.0.2.10 10.0.3.10", "");
        expect_addresses(&r, "*.dkr.ecr.us-east-1.amazonaws.com.", "10.0.1.20 10.0.2.20", "");
        expect_addresses(&r, "kms.us-east-1.amazonaws.com.", "10.0.1.15 10.0.2.15", "");
        expect_addresses(&r, "ec2.us-east-1.amazonaws.com.", "10.0.1.23 10.0.2.23 10.0.3.23",
                         "2600:1f18:4a3:6e01::17 2600:1f18:4a3:6e02::17 2600:1f18:4a3:6e03::17");
        expect_addresses(&r, "lambda.us-east-1.amazonaws.com.", "10.0.1.24 10.0.2.24", "");
        expect_addresses(&r, "sns.us-east-1.amazonaws.com.", "",
                         "2600:1f18:4a3:6e01::19 2600:1f18:4a3:6e02::19");
        expect_addresses(&r, "elasticloadbalancing.us-east-1.amazonaws.com.", "10.0.1.28 10.0.2.28",
                         "");
        expect_rrset(&r, "api.partner.example.", VD_TYPE_CNAME, 60,
                     "vpce-02e5da6d5ac7461b4-sgbm5d8l.vpce-svc-0a7c3e5f9b1d24680.us-east-1.vpce."
                     "amazonaws.com.");
        cr_expect_eq(records_mentioning(&r, "billing.vendor.example"), 0);
        cr_expect_eq(records_mentioning(&r, "dynamodb"), 0);
        cr_expect_eq(records_mentioning(&r, "10.0.1.200"), 0);
        recs_free(&r);
}

/* ---- the ENI table ----------------------------------------------------------------------- */

static size_t eni_entry(const vd_snapshot *s, int family, const char *ip)
{
        uint8_t addr[16] = {0};
        cr_assert_eq(inet_pton(family, ip, addr), 1);
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++) {
                const vd_snapshot_eni *e = vd_snapshot_eni_at(s, i);
                if (e->family == family && memcmp(e->addr, addr, family == AF_INET ? 4 : 16) == 0)
                        return i;
        }
        cr_assert_fail("no ENI entry for %s", ip);
        return SIZE_MAX;
}

Test(aws, eni_table_of_the_example)
{
        recs r;
        unsigned an = 0;
        char owner[300];
        load_ok("ap-southeast-2", &r);
        /* ECR: two IPv4 and two IPv6 addresses; S3: two IPv4 addresses. Each address once,
         * however many names (regional, zonal, private, wildcard) answer it. */
        cr_assert_eq(vd_snapshot_eni_count(r.snap), 6);
        for (size_t i = 0; i < vd_snapshot_eni_count(r.snap); i++) {
                const vd_snapshot_eni *e = vd_snapshot_eni_at(r.snap, i);
                cr_expect(strncmp(e->endpoint_id, "vpce-", 5) == 0, "%s", e->endpoint_id);
                cr_expect(strncmp(e->eni_id, "eni-", 4) == 0, "%s", e->eni_id);
                cr_expect(strncmp(e->az_name, "ap-southeast-2", 14) == 0, "%s", e->az_name);
        }
        size_t i = eni_entry(r.snap, AF_INET, "10.41.3.11");
        const vd_snapshot_eni *e = vd_snapshot_eni_at(r.snap, i);
        cr_expect_str_eq(e->endpoint_id, "vpce-0793a67c9e2ed829a");
        cr_expect_str_eq(e->eni_id, "eni-09ce6ca6b0b9658d7");
        cr_expect_str_eq(e->az_name, "ap-southeast-2a");
        e = vd_snapshot_eni_at(r.snap, eni_entry(r.snap, AF_INET6, "2a05:d01c:1:1::11"));
        cr_expect_str_eq(e->eni_id, "eni-09ce6ca6b0b9658d7");

        /* Down: gone from the regional and private names; the zonal name fails open. */
        vd_snapshot_eni_set_up(r.snap, i, false);
        cr_expect_eq(ask(r.snap,
                         "vpce-0793a67c9e2ed829a-48iq1s0k.api.ecr.ap-southeast-2.vpce."
                         "amazonaws.com",
                         VD_TYPE_A, &an, owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_eq(an, 1);
        cr_expect_eq(ask(r.snap, "api.ecr.ap-southeast-2.amazonaws.com", VD_TYPE_A, &an, owner,
                         sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_eq(an, 1);
        cr_expect_eq(ask(r.snap,
                         "vpce-0793a67c9e2ed829a-48iq1s0k-ap-southeast-2a.api.ecr."
                         "ap-southeast-2.vpce.amazonaws.com",
                         VD_TYPE_A, &an, owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_eq(an, 1);
        /* The IPv6 address of the same ENI is an entry of its own, still up. */
        cr_expect_eq(ask(r.snap,
                         "vpce-0793a67c9e2ed829a-48iq1s0k.api.ecr.ap-southeast-2.vpce."
                         "amazonaws.com",
                         VD_TYPE_AAAA, &an, owner, sizeof(owner)),
                     VD_RCODE_NOERROR);
        cr_expect_eq(an, 2);
        recs_free(&r);
}

/* The answer's addresses in order, for a client at ip (or NULL) in az (or NULL), prefer. */
static void answer_order(const vd_snapshot *s, const char *ip, const char *az, const char *name,
                         char *out, size_t cap)
{
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (ip != NULL) {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                a->sin_family = AF_INET;
                cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1);
        }
        vd_answer_client c = {VD_AZ_AFFINITY_PREFER, az,
                              ip != NULL ? (struct sockaddr *)&ss : NULL};
        uint8_t resp[4096];
        size_t len = 0, pos;
        dns_msg q;
        vd_query_info qi;
        vd_local_chase lc = {0};
        lc.client = &c;
        client_query(&q, &qi, 0x4242, name, VD_TYPE_A, false, false);
        cr_assert_eq(vd_snapshot_answer_chase(s, &qi, 0, resp, sizeof(resp), &len, &lc),
                     VD_LOCAL_ANSWERED);
        unsigned an = vd_wire_get16(resp + 6);
        pos = qi.question_end;
        size_t at = 0;
        out[0] = '\0';
        for (unsigned i = 0; i < an; i++) {
                uint16_t type;
                size_t fixed;
                cr_assert_eq(vd_wire_skip_rr(resp, len, &pos, &type, &fixed), 0);
                char ipt[64];
                cr_assert_eq(type, VD_TYPE_A);
                inet_ntop(AF_INET, resp + pos - 4, ipt, sizeof(ipt));
                at += (size_t)snprintf(out + at, cap - at, "%s%s", i ? " " : "", ipt);
        }
}

/* ---- the subnets file ---------------------------------------------------------------------- */

static const char *client_az_id(const vd_snapshot *s, const char *ip)
{
        struct sockaddr_storage ss = client_addr(ip);
        vd_answer_client c = {VD_AZ_AFFINITY_PREFER, NULL, (struct sockaddr *)&ss};
        int az = vd_snapshot_client_az(s, &c);
        return az < 0 ? "-" : vd_snapshot_az_id(s, (size_t)az);
}

Test(aws, subnets_give_az_ids_and_the_client_table)
{
        recs r;
        load_ok("subnets", &r);
        /* the records are those of the same capture without the subnets file */
        cr_expect_eq(r.n, (4 + 2 + 2 + 2 + 2) + (2 + 1 + 1 + 2 + 2) + 3 * 5);
        const vd_snapshot_eni *e =
            vd_snapshot_eni_at(r.snap, eni_entry(r.snap, AF_INET, "10.41.3.11"));
        cr_expect_str_eq(e->az_name, "ap-southeast-2a");
        cr_expect_str_eq(e->az_id, "apse2-az3");
        e = vd_snapshot_eni_at(r.snap, eni_entry(r.snap, AF_INET, "10.41.19.11"));
        cr_expect_str_eq(e->az_id, "apse2-az1");
        /* 3 IPv4 blocks, 2 associated IPv6 blocks (the disassociated one is left out) */
        cr_expect_eq(vd_snapshot_subnet_count(r.snap), 5);
        cr_expect_eq(vd_snapshot_az_count(r.snap), 3);
        cr_expect_str_eq(client_az_id(r.snap, "10.41.7.9"), "apse2-az3");
        cr_expect_str_eq(client_az_id(r.snap, "10.41.17.9"), "apse2-az1");
        cr_expect_str_eq(client_az_id(r.snap, "10.41.40.1"), "apse2-az2");
        cr_expect_str_eq(client_az_id(r.snap, "10.99.0.1"), "-");
        cr_expect_str_eq(client_az_id(r.snap, "2a05:d01c:1:2::77"), "apse2-az1");
        cr_expect_str_eq(client_az_id(r.snap, "2a05:d01c:1:9::77"), "-");

        /* a client of apse2-az1 gets its AZ's ENI first, by address or by AZ ID */
        char got[256];
        answer_order(r.snap, "10.41.17.9", NULL, "api.ecr.ap-southeast-2.amazonaws.com", got,
                     sizeof(got));
        cr_expect_str_eq(got, "10.41.19.11 10.41.3.11");
        answer_order(r.snap, NULL, "apse2-az3", "api.ecr.ap-southeast-2.amazonaws.com", got,
                     sizeof(got));
        cr_expect_str_eq(got, "10.41.3.11 10.41.19.11");
        recs_free(&r);
}

Test(aws, subnets_file_errors_name_file_and_path)
{
        const char *msg = load_fails("bad/subnet-cidr");
        expect_msg(msg, "subnet-cidr/describe-subnets.json: Subnets[1].CidrBlock: expected an "
                        "IPv4 CIDR block");
        expect_msg(msg, "10.41.16.0/33");
        msg = load_fails("bad/subnet-no-az");
        expect_msg(msg, "describe-subnets.json: Subnets[2].AvailabilityZone: expected a string, "
                        "but it is missing");
        msg = load_fails("bad/subnet-ipv6");
        expect_msg(msg, "describe-subnets.json: "
                        "Subnets[0].Ipv6CidrBlockAssociationSet[0].Ipv6CidrBlock: expected an "
                        "IPv6 CIDR block");
        msg = load_fails("bad/subnet-not-json");
        expect_msg(msg, "describe-subnets.json:2:");
}
