/* test_snapshot.c — the lookup structure: exact names, wildcards, zones, empty non-terminals,
 * borrowed (non-authoritative) zones, CNAME chains, rotation, TC, claims. Queries and answers
 * are real DNS messages, built and read with ldns. */
#include <criterion/criterion.h>
#include <ldns/ldns.h>
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "support/client.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/special.h"
#include "vpcdns/wire.h"

static const uint8_t soa_rdata[] = {
    /* ns.test. host.test. 1 7200 900 1209600 60 */
    2, 'n', 's',  4,    't', 'e',  's',  't', 0, 4, 'h', 'o', 's',  't',
    4, 't', 'e',  's',  't', 0,    0,    0,   0, 1, 0,   0,   0x1c, 0x20,
    0, 0,   0x03, 0x84, 0,   0x12, 0x75, 0,   0, 0, 0,   60};

static void wname(const char *text, uint8_t *out)
{
        size_t len;
        cr_assert_eq(vd_name_from_text(text, out, &len), 0, "bad name %s", text);
}

static void add_a(vd_builder *b, const char *owner, const char *ip, const char *claim)
{
        uint8_t name[VD_NAME_MAX];
        uint8_t addr[4];
        vd_error err = {{0}};
        wname(owner, name);
        cr_assert_eq(inet_pton(AF_INET, ip, addr), 1);
        cr_assert_eq(vd_builder_add_rr(b, name, VD_TYPE_A, 60, addr, 4, claim, &err), 0, "%s",
                     err.msg);
}

static void add_cname(vd_builder *b, const char *owner, const char *target, const char *claim)
{
        uint8_t name[VD_NAME_MAX], t[VD_NAME_MAX];
        size_t tlen;
        vd_error err = {{0}};
        wname(owner, name);
        cr_assert_eq(vd_name_from_text(target, t, &tlen), 0);
        cr_assert_eq(vd_builder_add_rr(b, name, VD_TYPE_CNAME, 60, t, (uint16_t)tlen, claim, &err),
                     0, "%s", err.msg);
}

static void add_zone(vd_builder *b, const char *apex, bool auth, const char *claim)
{
        uint8_t name[VD_NAME_MAX];
        vd_error err = {{0}};
        wname(apex, name);
        cr_assert_eq(
            vd_builder_add_zone(b, name, auth, soa_rdata, sizeof(soa_rdata), 300, claim, &err), 0,
            "%s", err.msg);
}

/* Compiles b, which must succeed, and frees it. */
static vd_snapshot *finish(vd_builder *b)
{
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return s;
}

static vd_snapshot *fixture(void)
{
        vd_builder *b = vd_builder_new();
        /* a hidden private zone with data at the apex, a wildcard and a deep name */
        add_zone(b, "sqs.test-1.amazonaws.com", true, "ep1");
        add_a(b, "sqs.test-1.amazonaws.com", "10.0.0.1", "ep1");
        add_a(b, "sqs.test-1.amazonaws.com", "10.0.0.2", "ep1");
        add_a(b, "sqs.test-1.amazonaws.com", "10.0.0.3", "ep1");
        add_zone(b, "s3.test-1.amazonaws.com", true, "ep2");
        add_a(b, "*.s3.test-1.amazonaws.com", "10.0.1.1", "ep2");
        /* a vpce island under a borrowed zone */
        add_zone(b, "test-1.vpce.amazonaws.com", false, "ep1");
        add_a(b, "vpce-1-abc.sqs.test-1.vpce.amazonaws.com", "10.0.0.1", "ep1");
        add_zone(b, "test-1.vpce.amazonaws.com", false, "ep2");
        add_a(b, "*.vpce-2-def.s3.test-1.vpce.amazonaws.com", "10.0.1.1", "ep2");
        /* an endpoint service: CNAME at its own apex to the vpce name */
        add_zone(b, "api.partner.example", true, "ep3");
        add_cname(b, "api.partner.example", "vpce-1-abc.sqs.test-1.vpce.amazonaws.com", "ep3");
        /* a zone file style zone with an empty non-terminal */
        add_zone(b, "corp.test", true, "corp.zone");
        add_a(b, "host.deep.corp.test", "192.0.2.1", "corp.zone");
        add_cname(b, "www.corp.test", "Host.Deep.corp.test", "corp.zone");
        add_cname(b, "out.corp.test", "elsewhere.example", "corp.zone");
        return finish(b);
}

typedef struct answer {
        vd_local_result result;
        ldns_pkt *pkt;
        size_t len;
} answer;

static answer ask_full(const vd_snapshot *s, const char *name, ldns_rr_type type, bool edns,
                       size_t cap, uint32_t rotation)
{
        ldns_pkt *q = NULL;
        cr_assert_eq(ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
        ldns_pkt_set_id(q, 0x1234);
        if (edns) {
                ldns_pkt_set_edns_udp_size(q, 4096);
                ldns_pkt_set_edns_do(q, false);
        }
        uint8_t *wire = NULL;
        size_t wlen = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, q, &wlen), LDNS_STATUS_OK);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(wire, wlen, &qi), VD_PARSE_OK);
        static uint8_t out[65535];
        answer a = {0};
        a.result = vd_snapshot_answer(s, &qi, rotation, out, cap, &a.len);
        if (a.result == VD_LOCAL_ANSWERED)
                cr_assert_eq(ldns_wire2pkt(&a.pkt, out, a.len), LDNS_STATUS_OK);
        free(wire);
        ldns_pkt_free(q);
        return a;
}

static answer ask(const vd_snapshot *s, const char *name, ldns_rr_type type)
{
        return ask_full(s, name, type, false, 512, 0);
}

static char *rr_text(ldns_rr_list *list, size_t i)
{
        return ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(list, i), 0));
}

Test(snapshot, exact_name_answers_all_addresses_with_ttl_60)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "SQS.test-1.amazonaws.com.", LDNS_RR_TYPE_A);
        cr_assert_eq(a.result, VD_LOCAL_ANSWERED);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 3);
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(a.pkt), 0)), 60);
        cr_assert(ldns_pkt_ra(a.pkt));
        cr_assert_not(ldns_pkt_aa(a.pkt));
        cr_assert_eq(ldns_pkt_id(a.pkt), 0x1234);
        /* question echoed as sent */
        char *q = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(a.pkt), 0)));
        cr_assert_str_eq(q, "SQS.test-1.amazonaws.com.");
        free(q);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, rotation_changes_the_first_address)
{
        vd_snapshot *s = fixture();
        char *first[3];
        for (uint32_t r = 0; r < 3; r++) {
                answer a = ask_full(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, false, 512, r);
                first[r] = rr_text(ldns_pkt_answer(a.pkt), 0);
                ldns_pkt_free(a.pkt);
        }
        cr_assert_str_neq(first[0], first[1]);
        cr_assert_str_neq(first[1], first[2]);
        cr_assert_str_neq(first[0], first[2]);
        for (int i = 0; i < 3; i++)
                free(first[i]);
        vd_snapshot_unref(s);
}

Test(snapshot, nodata_and_nxdomain_carry_the_soa)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_MX);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0);
        cr_assert_eq(ldns_pkt_nscount(a.pkt), 1);
        ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(a.pkt), 0);
        cr_assert_eq(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
        cr_assert_eq(ldns_rr_ttl(soa), 60, "negative TTL is min(SOA TTL, MINIMUM)");
        char *owner = ldns_rdf2str(ldns_rr_owner(soa));
        cr_assert_str_eq(owner, "sqs.test-1.amazonaws.com.");
        free(owner);
        ldns_pkt_free(a.pkt);

        a = ask(s, "foo.sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NXDOMAIN);
        cr_assert_eq(ldns_pkt_nscount(a.pkt), 1);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, soa_at_apex_is_answered)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_SOA);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 1);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, wildcard_matches_one_or_more_labels_not_the_apex)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "bucket.s3.test-1.amazonaws.com.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 1);
        char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(a.pkt), 0)));
        cr_assert_str_eq(owner, "bucket.s3.test-1.amazonaws.com.", "owner is the query name");
        free(owner);
        ldns_pkt_free(a.pkt);
        a = ask(s, "a.b.bucket.s3.test-1.amazonaws.com.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 1);
        ldns_pkt_free(a.pkt);
        /* the apex of "*.s3..." exists (SOA) but holds no A: NODATA */
        a = ask(s, "s3.test-1.amazonaws.com.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0);
        cr_assert_eq(ldns_pkt_nscount(a.pkt), 1);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

/* The lookup starts at the suffix as deep as the snapshot's deepest name (7 labels here): a
 * longer name must still find its wildcard, its NXDOMAIN and its way upstream. */
Test(snapshot, names_deeper_than_any_of_ours)
{
        vd_snapshot *s = fixture();
        char name[256];
        const char *const cases[][2] = {
            {"bucket.s3.test-1.amazonaws.com.", "wildcard"},
            {"foo.corp.test.", "nxdomain"},
            {"www.example.org.", "forward"},
            /* under the wildcard's own owner, which has our deepest 7 labels: that owner is
             * the closest encloser and no "*.*" exists, so no wildcard answer (RFC 4592
             * §3.3.1); a search that started one label too high would take *.vpce-2-def's */
            {"*.vpce-2-def.s3.test-1.vpce.amazonaws.com.", "forward"},
        };
        for (int depth = 1; depth <= 60; depth += 59) {
                for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
                        size_t n = 0;
                        for (int i = 0; i < depth; i++)
                                n += (size_t)snprintf(name + n, sizeof(name) - n, "x.");
                        snprintf(name + n, sizeof(name) - n, "%s", cases[c][0]);
                        answer a = ask(s, name, LDNS_RR_TYPE_A);
                        if (strcmp(cases[c][1], "forward") == 0) {
                                cr_expect_eq(a.result, VD_LOCAL_FORWARD, "%s", name);
                                continue;
                        }
                        cr_assert_eq(a.result, VD_LOCAL_ANSWERED, "%s", name);
                        if (strcmp(cases[c][1], "wildcard") == 0) {
                                cr_expect_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
                                cr_expect_eq(ldns_pkt_ancount(a.pkt), 1, "%s", name);
                                char *owner = ldns_rdf2str(
                                    ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(a.pkt), 0)));
                                cr_expect_str_eq(owner, name);
                                free(owner);
                        } else {
                                cr_expect_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NXDOMAIN, "%s",
                                             name);
                                cr_expect_eq(ldns_pkt_nscount(a.pkt), 1);
                        }
                        ldns_pkt_free(a.pkt);
                }
        }
        vd_snapshot_unref(s);
}

Test(snapshot, borrowed_zone_forwards_unknown_names_and_gives_nodata_for_known)
{
        vd_snapshot *s = fixture();
        cr_assert_eq(ask(s, "vpce-9-zzz.sqs.test-1.vpce.amazonaws.com.", LDNS_RR_TYPE_A).result,
                     VD_LOCAL_FORWARD);
        cr_assert_eq(ask(s, "test-1.vpce.amazonaws.com.", LDNS_RR_TYPE_SOA).result,
                     VD_LOCAL_FORWARD);
        cr_assert_eq(ask(s, "x.vpce-1-abc.sqs.test-1.vpce.amazonaws.com.", LDNS_RR_TYPE_A).result,
                     VD_LOCAL_FORWARD);
        cr_assert_eq(ask(s, "vpce-2-def.s3.test-1.vpce.amazonaws.com.", LDNS_RR_TYPE_A).result,
                     VD_LOCAL_FORWARD, "a wildcard's parent is not itself a name");
        answer a = ask(s, "b.vpce-2-def.s3.test-1.vpce.amazonaws.com.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 1);
        ldns_pkt_free(a.pkt);
        a = ask(s, "vpce-1-abc.sqs.test-1.vpce.amazonaws.com.", LDNS_RR_TYPE_AAAA);
        cr_assert_eq(a.result, VD_LOCAL_ANSWERED);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0);
        cr_assert_eq(ldns_pkt_nscount(a.pkt), 1);
        char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_authority(a.pkt), 0)));
        cr_assert_str_eq(owner, "test-1.vpce.amazonaws.com.");
        free(owner);
        ldns_pkt_free(a.pkt);
        cr_assert_eq(ask(s, "s3.amazonaws.com.", LDNS_RR_TYPE_A).result, VD_LOCAL_FORWARD);
        cr_assert_eq(ask(s, ".", LDNS_RR_TYPE_NS).result, VD_LOCAL_FORWARD);
        vd_snapshot_unref(s);
}

Test(snapshot, cname_chain_is_followed_in_the_answer)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "api.partner.example.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 2);
        cr_assert_eq(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(a.pkt), 0)),
                     LDNS_RR_TYPE_CNAME);
        ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(a.pkt), 1);
        cr_assert_eq(ldns_rr_get_type(rr), LDNS_RR_TYPE_A);
        char *owner = ldns_rdf2str(ldns_rr_owner(rr));
        cr_assert_str_eq(owner, "vpce-1-abc.sqs.test-1.vpce.amazonaws.com.");
        free(owner);
        ldns_pkt_free(a.pkt);
        /* SOA at the same apex answers directly, not through the CNAME */
        a = ask(s, "api.partner.example.", LDNS_RR_TYPE_SOA);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 1);
        cr_assert_eq(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(a.pkt), 0)),
                     LDNS_RR_TYPE_SOA);
        ldns_pkt_free(a.pkt);
        /* a mixed-case target in the zone still resolves */
        a = ask(s, "www.corp.test.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 2);
        ldns_pkt_free(a.pkt);
        /* a CNAME leaving our data: just the CNAME */
        a = ask(s, "out.corp.test.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 1);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, empty_non_terminal_is_nodata_not_nxdomain)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "deep.corp.test.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0);
        ldns_pkt_free(a.pkt);
        a = ask(s, "nope.deep.corp.test.", LDNS_RR_TYPE_A);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NXDOMAIN);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, any_returns_every_rrset)
{
        vd_snapshot *s = fixture();
        answer a = ask(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_ANY);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 4, "SOA + 3 A");
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, too_large_for_the_client_sets_tc_and_edns_gets_opt)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "big.test", true, "z");
        char ip[32];
        for (int i = 0; i < 60; i++) {
                snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
                add_a(b, "many.big.test", ip, "z");
        }
        vd_snapshot *s = NULL;
        vd_error err;
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0);
        vd_builder_free(b);
        answer a = ask(s, "many.big.test.", LDNS_RR_TYPE_A);
        cr_assert(ldns_pkt_tc(a.pkt));
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0);
        cr_assert_leq(a.len, 512);
        ldns_pkt_free(a.pkt);
        a = ask_full(s, "many.big.test.", LDNS_RR_TYPE_A, true, 1232, 0);
        cr_assert_not(ldns_pkt_tc(a.pkt));
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 60);
        cr_assert_eq(ldns_pkt_edns_udp_size(a.pkt), 1232);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

Test(snapshot, a_name_claimed_twice_names_both_sources)
{
        vd_builder *b = vd_builder_new();
        add_a(b, "x.test", "10.0.0.1", "first.json: VpcEndpoints[0]");
        uint8_t name[VD_NAME_MAX];
        uint8_t addr[4] = {10, 0, 0, 2};
        vd_error err = {{0}};
        wname("X.test.", name);
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_A, 60, addr, 4, "corp.zone", &err), 0);
        cr_assert(strstr(err.msg, "first.json: VpcEndpoints[0]") != NULL, "%s", err.msg);
        cr_assert(strstr(err.msg, "corp.zone") != NULL, "%s", err.msg);
        cr_assert(strstr(err.msg, "x.test.") != NULL, "%s", err.msg);
        vd_builder_free(b);
}

Test(snapshot, zone_claimed_twice_but_borrowed_zones_are_shared)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "shared.test", false, "a");
        add_zone(b, "shared.test", false, "b");
        add_zone(b, "own.test", true, "a");
        uint8_t name[VD_NAME_MAX];
        vd_error err = {{0}};
        wname("own.test", name);
        cr_assert_neq(
            vd_builder_add_zone(b, name, true, soa_rdata, sizeof(soa_rdata), 60, "b", &err), 0);
        cr_assert(strstr(err.msg, "by a and by b") != NULL, "%s", err.msg);
        vd_builder_free(b);
}

Test(snapshot, cname_beside_other_data_is_rejected)
{
        vd_builder *b = vd_builder_new();
        add_a(b, "h.test", "10.0.0.1", "z");
        uint8_t name[VD_NAME_MAX], t[VD_NAME_MAX];
        size_t tlen;
        vd_error err = {{0}};
        wname("h.test", name);
        vd_name_from_text("other.test", t, &tlen);
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_CNAME, 60, t, (uint16_t)tlen, "z", &err),
                      0);
        cr_assert(strstr(err.msg, "CNAME") != NULL);
        vd_builder_free(b);
}

static int count_rr(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                    const uint8_t *rdata, uint16_t rdlen)
{
        (*(int *)arg)++;
        return 0;
}

Test(snapshot, summary_and_foreach_agree)
{
        vd_snapshot *s = fixture();
        vd_snapshot_summary sum;
        vd_snapshot_summarize(s, &sum);
        int n = 0;
        cr_assert_eq(vd_snapshot_foreach(s, count_rr, &n), 0);
        cr_assert_eq((size_t)n, sum.records);
        cr_assert_eq(sum.zones, 4);
        /* SOA+3 A sqs, SOA+wildcard A s3, vpce A, vpce wildcard A, SOA+CNAME partner,
         * SOA+A+2 CNAME corp */
        cr_assert_eq(sum.records, 14);
        vd_snapshot_unref(s);
}

Test(snapshot, duplicate_records_are_merged)
{
        vd_builder *b = vd_builder_new();
        add_a(b, "d.test", "10.0.0.1", "z");
        add_a(b, "D.test", "10.0.0.1", "z");
        vd_snapshot *s = NULL;
        vd_error err;
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0);
        vd_snapshot_summary sum;
        vd_snapshot_summarize(s, &sum);
        cr_assert_eq(sum.records, 1);
        vd_snapshot_unref(s);
        vd_builder_free(b);
}

Test(snapshot, malformed_rdata_is_rejected)
{
        vd_builder *b = vd_builder_new();
        uint8_t name[VD_NAME_MAX];
        vd_error err = {{0}};
        wname("m.test", name);
        const uint8_t three[3] = {10, 0, 0};
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_A, 60, three, 3, "z", &err), 0);
        cr_assert(strstr(err.msg, "malformed rdata") != NULL, "%s", err.msg);
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_AAAA, 60, three, 3, "z", &err), 0);
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_CNAME, 60, NULL, 0, "z", &err), 0,
                      "an empty CNAME (zone file \\# 0) would send the lookup into the blob");
        const uint8_t junk[5] = {1, 'x', 0, 0xFF, 0xFF};
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_CNAME, 60, junk, 5, "z", &err), 0);
        const uint8_t runaway[2] = {9, 'x'};
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_NS, 60, runaway, 2, "z", &err), 0);
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_SOA, 60, junk, 5, "z", &err), 0);
        vd_builder_free(b);
}

Test(snapshot, cname_beside_ns_only_at_a_zone_apex)
{
        vd_builder *b = vd_builder_new();
        uint8_t name[VD_NAME_MAX], t[VD_NAME_MAX];
        size_t tlen;
        vd_error err = {{0}};
        wname("www.corp.test", name);
        vd_name_from_text("ns1.corp.test", t, &tlen);
        cr_assert_eq(vd_builder_add_rr(b, name, VD_TYPE_NS, 60, t, (uint16_t)tlen, "z", &err), 0);
        vd_name_from_text("x.example", t, &tlen);
        cr_assert_neq(vd_builder_add_rr(b, name, VD_TYPE_CNAME, 60, t, (uint16_t)tlen, "z", &err),
                      0, "NS and CNAME below an apex");
        /* at an apex (the endpoint-service case) SOA and NS may stand beside the CNAME */
        add_zone(b, "svc.test", true, "ep");
        add_cname(b, "svc.test", "vpce-1-abc.sqs.test-1.vpce.amazonaws.com", "ep");
        vd_builder_free(b);
}

/* ---- chains that leave local data, hop limit, loops ---------------------------------------- */

static bool leaves_host_deep(void *arg, const uint8_t *name, size_t len)
{
        uint8_t want[VD_NAME_MAX];
        wname("host.deep.corp.test", want);
        (*(int *)arg)++;
        return len == vd_name_len(want, VD_NAME_MAX) && memcmp(name, want, len) == 0;
}

/* Asks name/A with a vd_local_chase; the response (no OPT) is left in out. */
static vd_local_result ask_chase(const vd_snapshot *s, const char *name, vd_local_chase *lc,
                                 uint8_t *out, size_t cap, size_t *len)
{
        ldns_pkt *q = NULL;
        cr_assert_eq(
            ldns_pkt_query_new_frm_str(&q, name, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, LDNS_RD),
            LDNS_STATUS_OK);
        uint8_t *wire = NULL;
        size_t wlen = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, q, &wlen), LDNS_STATUS_OK);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(wire, wlen, &qi), VD_PARSE_OK);
        vd_local_result r = vd_snapshot_answer_chase(s, &qi, 0, out, cap, len, lc);
        free(wire);
        ldns_pkt_free(q);
        return r;
}

Test(snapshot, a_chain_leaving_local_data_says_where_it_goes_on)
{
        vd_snapshot *s = fixture();
        static uint8_t out[65535];
        size_t len = 0;
        vd_local_chase lc = {0};
        cr_assert_eq(ask_chase(s, "Out.corp.test.", &lc, out, 512, &len), VD_LOCAL_CHASE);
        uint8_t want[VD_NAME_MAX];
        wname("elsewhere.example", want);
        cr_assert_eq(lc.target_len, vd_name_len(want, VD_NAME_MAX));
        cr_assert_eq(memcmp(lc.target, want, lc.target_len), 0);
        cr_assert_eq(lc.hops, 1);
        cr_assert(lc.target_ref > VD_HEADER_LEN && lc.target_ref + lc.target_len <= len);
        cr_assert_eq(memcmp(out + lc.target_ref, want, lc.target_len), 0,
                     "the target stands uncompressed where target_ref says");
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK, "a valid message so far");
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        cr_assert_eq(ldns_pkt_arcount(p), 0, "no OPT yet: the chase adds it at the end");
        ldns_pkt_free(p);

        /* the caller's leaves() ends local data at a target a rule covers */
        int asked = 0;
        lc.leaves = leaves_host_deep;
        lc.leaves_arg = &asked;
        cr_assert_eq(ask_chase(s, "www.corp.test.", &lc, out, 512, &len), VD_LOCAL_CHASE);
        cr_assert_eq(asked, 1);
        cr_assert_eq(lc.target[1], 'h');
        /* a chain that stays local is answered as before */
        lc.leaves = NULL;
        cr_assert_eq(ask_chase(s, "www.corp.test.", &lc, out, 512, &len), VD_LOCAL_ANSWERED);
        /* a chain already too large for the client: the TC answer, no chase */
        cr_assert_eq(ask_chase(s, "out.corp.test.", &lc, out, 40, &len), VD_LOCAL_ANSWERED);
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC);
        vd_snapshot_unref(s);
}

/* A zone chain.test with n CNAMEs c0 -> c1 -> ... -> cn, and cn A 10.0.0.1. */
static vd_snapshot *chain_of(int n)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "chain.test", true, "chain.zone");
        for (int i = 0; i < n; i++) {
                char owner[32], target[32];
                snprintf(owner, sizeof(owner), "c%d.chain.test", i);
                snprintf(target, sizeof(target), "c%d.chain.test", i + 1);
                add_cname(b, owner, target, "chain.zone");
        }
        char last[32];
        snprintf(last, sizeof(last), "c%d.chain.test", n);
        add_a(b, last, "10.0.0.1", "chain.zone");
        return finish(b);
}

Test(snapshot, a_chain_longer_than_the_hop_limit_is_servfail)
{
        vd_snapshot *s = chain_of(VD_CNAME_MAX_HOPS);
        answer a = ask_full(s, "c0.chain.test.", LDNS_RR_TYPE_A, false, 65535, 0);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), VD_CNAME_MAX_HOPS + 1, "every hop, then the address");
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
        s = chain_of(VD_CNAME_MAX_HOPS + 1);
        a = ask_full(s, "c0.chain.test.", LDNS_RR_TYPE_A, true, 65535, 0);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_SERVFAIL);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0);
        ldns_pkt_free(a.pkt);
        a = ask_full(s, "c1.chain.test.", LDNS_RR_TYPE_A, true, 65535, 0);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR, "one hop less is fine");
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
}

static void add_cname_at(vd_builder *b, const char *owner, const char *target, const char *claim,
                         int line)
{
        uint8_t name[VD_NAME_MAX], t[VD_NAME_MAX];
        size_t tlen;
        vd_error err = {{0}};
        wname(owner, name);
        cr_assert_eq(vd_name_from_text(target, t, &tlen), 0);
        cr_assert_eq(
            vd_builder_add_rr_at(b, name, VD_TYPE_CNAME, 60, t, (uint16_t)tlen, claim, line, &err),
            0, "%s", err.msg);
}

/* Finishes b, which must fail; returns the message. */
static void expect_loop(vd_builder *b, const char *where)
{
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), -ELOOP, "a CNAME loop must not load");
        cr_assert_null(s);
        cr_assert(strstr(err.msg, where) == err.msg, "expected '%s' first: %s", where, err.msg);
        cr_assert(strstr(err.msg, "CNAME loop") != NULL, "%s", err.msg);
        vd_builder_free(b);
}

Test(snapshot, cname_loops_are_refused_at_load_with_their_place)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "corp.zone");
        add_cname_at(b, "a.corp.test", "b.corp.test", "corp.zone", 7);
        add_cname_at(b, "b.corp.test", "A.Corp.Test", "corp.zone", 9);
        expect_loop(b, "corp.zone:7: CNAME loop: a.corp.test. (corp.zone:7) -> b.corp.test. "
                       "(corp.zone:9) -> a.corp.test.");

        b = vd_builder_new(); /* onto itself */
        add_cname_at(b, "self.test", "self.test", "self.zone", 3);
        expect_loop(b, "self.zone:3:");

        b = vd_builder_new(); /* a wildcard whose target it answers itself */
        add_zone(b, "w.test", true, "w.zone");
        add_cname_at(b, "*.w.test", "x.w.test", "w.zone", 12);
        expect_loop(b, "w.zone:12:");

        b = vd_builder_new(); /* between a zone file and an endpoint's names */
        add_zone(b, "partner.example", true, "ep: VpcEndpoints[0]");
        add_cname(b, "api.partner.example", "alias.corp.test", "ep: VpcEndpoints[0]");
        add_zone(b, "corp.test", true, "corp.zone");
        add_cname_at(b, "alias.corp.test", "api.partner.example", "corp.zone", 4);
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), -ELOOP);
        cr_assert(strstr(err.msg, "(ep: VpcEndpoints[0])") != NULL, "%s", err.msg);
        cr_assert(strstr(err.msg, "(corp.zone:4)") != NULL, "%s", err.msg);
        vd_builder_free(b);

        /* a long chain that ends is no loop */
        s = chain_of(40);
        vd_snapshot_unref(s);
}

Test(snapshot, a_chain_to_a_special_use_name_ends_in_the_fallback_without_a_chase)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "corp.zone");
        add_cname(b, "lh.corp.test", "localhost", "corp.zone");
        add_cname(b, "bad.corp.test", "x.invalid", "corp.zone");
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);

        static uint8_t out[65535];
        size_t len = 0;
        vd_local_chase lc = {0};
        lc.fallback = vd_special_snapshot();
        cr_assert_not_null(lc.fallback);
        cr_assert_eq(ask_chase(s, "lh.corp.test.", &lc, out, 512, &len), VD_LOCAL_ANSWERED);
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
        cr_assert_eq(ldns_pkt_ancount(p), 2);
        ldns_rr *a = ldns_rr_list_rr(ldns_pkt_answer(p), 1);
        char *owner = ldns_rdf2str(ldns_rr_owner(a));
        char *addr = ldns_rdf2str(ldns_rr_rdf(a, 0));
        cr_assert_str_eq(owner, "localhost.", "owned by the CNAME's target");
        cr_assert_str_eq(addr, "127.0.0.1");
        free(owner);
        free(addr);
        ldns_pkt_free(p);

        cr_assert_eq(ask_chase(s, "bad.corp.test.", &lc, out, 512, &len), VD_LOCAL_ANSWERED);
        cr_assert_eq(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        cr_assert_eq(ldns_pkt_nscount(p), 1, "the SOA of invalid.");
        ldns_pkt_free(p);

        lc.fallback = NULL; /* without it the chain leaves local data */
        cr_assert_eq(ask_chase(s, "lh.corp.test.", &lc, out, 512, &len), VD_LOCAL_CHASE);
        vd_snapshot_unref(s);
}

/* ---- the ENI table and health ------------------------------------------------------------ */

static void add_eni_addr(vd_builder *b, const char *owner, const char *ip, const char *endpoint,
                         const char *eni, const char *az)
{
        uint8_t name[VD_NAME_MAX], addr[16];
        vd_error err = {{0}};
        vd_snapshot_eni e;
        bool v6 = strchr(ip, ':') != NULL;
        memset(&e, 0, sizeof(e));
        snprintf(e.endpoint_id, sizeof(e.endpoint_id), "%s", endpoint);
        snprintf(e.eni_id, sizeof(e.eni_id), "%s", eni);
        snprintf(e.az_name, sizeof(e.az_name), "%s", az);
        wname(owner, name);
        cr_assert_eq(inet_pton(v6 ? AF_INET6 : AF_INET, ip, addr), 1);
        cr_assert_eq(vd_builder_add_rr_eni(b, name, v6 ? VD_TYPE_AAAA : VD_TYPE_A, 60, addr,
                                           v6 ? 16 : 4, endpoint, &e, &err),
                     0, "%s", err.msg);
}

/* An endpoint with three ENIs (one per AZ) under a regional name, a private name and a
 * wildcard, with IPv6 on the first when v6. */
static void add_sqs_endpoint(vd_builder *b, bool v6)
{
        static const char *const names[] = {"vpce-1-abc.sqs.test-1.vpce.amazonaws.com",
                                            "sqs.test-1.amazonaws.com",
                                            "*.sqs.test-1.amazonaws.com"};
        add_zone(b, "test-1.vpce.amazonaws.com", false, "vpce-1");
        add_zone(b, "sqs.test-1.amazonaws.com", true, "vpce-1");
        for (size_t i = 0; i < 3; i++) {
                add_eni_addr(b, names[i], "10.0.1.1", "vpce-1", "eni-a", "test-1a");
                add_eni_addr(b, names[i], "10.0.2.1", "vpce-1", "eni-b", "test-1b");
                add_eni_addr(b, names[i], "10.0.3.1", "vpce-1", "eni-c", "test-1c");
                if (v6)
                        add_eni_addr(b, names[i], "2001:db8::1", "vpce-1", "eni-a", "test-1a");
        }
}

/* add_sqs_endpoint with IPv6, and a zone file record at another name. */
static vd_snapshot *eni_fixture(void)
{
        vd_builder *b = vd_builder_new();
        add_sqs_endpoint(b, true);
        add_zone(b, "corp.test", true, "corp.zone");
        add_a(b, "host.corp.test", "10.0.1.1", "corp.zone");
        return finish(b);
}

/* The addresses of an answer, in order, as "a b c". */
static void answer_text(const vd_snapshot *s, const char *name, ldns_rr_type type, uint32_t rot,
                        char *out, size_t cap)
{
        answer a = ask_full(s, name, type, false, 512, rot);
        cr_assert_eq(a.result, VD_LOCAL_ANSWERED);
        size_t at = 0;
        out[0] = '\0';
        for (size_t i = 0; i < ldns_pkt_ancount(a.pkt); i++) {
                char *t = rr_text(ldns_pkt_answer(a.pkt), i);
                at += (size_t)snprintf(out + at, cap - at, "%s%s", i ? " " : "", t);
                free(t);
        }
        ldns_pkt_free(a.pkt);
}

static size_t eni_find(const vd_snapshot *s, const char *ip)
{
        uint8_t addr[16] = {0};
        bool v6 = strchr(ip, ':') != NULL;
        cr_assert_eq(inet_pton(v6 ? AF_INET6 : AF_INET, ip, addr), 1);
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++) {
                const vd_snapshot_eni *e = vd_snapshot_eni_at(s, i);
                if (e->family == (v6 ? AF_INET6 : AF_INET) &&
                    memcmp(e->addr, addr, v6 ? 16 : 4) == 0)
                        return i;
        }
        cr_assert_fail("no ENI entry for %s", ip);
        return 0;
}

Test(snapshot, eni_table_has_one_entry_per_endpoint_address)
{
        vd_snapshot *s = eni_fixture();
        cr_assert_eq(vd_snapshot_eni_count(s), 4, "three names share each address");
        const vd_snapshot_eni *e = vd_snapshot_eni_at(s, eni_find(s, "10.0.2.1"));
        cr_assert_eq(e->family, AF_INET);
        cr_assert_str_eq(e->endpoint_id, "vpce-1");
        cr_assert_str_eq(e->eni_id, "eni-b");
        cr_assert_str_eq(e->az_name, "test-1b");
        cr_assert_str_eq(e->az_id, "");
        e = vd_snapshot_eni_at(s, eni_find(s, "2001:db8::1"));
        cr_assert_eq(e->family, AF_INET6);
        cr_assert_str_eq(e->eni_id, "eni-a");
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++)
                cr_assert(vd_snapshot_eni_up(s, i), "every address starts up");
        vd_snapshot_unref(s);
}

Test(snapshot, eni_of_another_endpoint_is_another_entry)
{
        vd_builder *b = vd_builder_new();
        add_eni_addr(b, "a.example", "10.0.0.1", "vpce-1", "eni-a", "z1");
        add_eni_addr(b, "b.example", "10.0.0.1", "vpce-2", "eni-b", "z2");
        add_eni_addr(b, "c.example", "10.0.0.1", "vpce-1", "eni-a", "z1");
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        cr_assert_eq(vd_snapshot_eni_count(s), 2);
        cr_assert_str_eq(vd_snapshot_eni_at(s, 0)->endpoint_id, "vpce-1");
        cr_assert_str_eq(vd_snapshot_eni_at(s, 1)->endpoint_id, "vpce-2");
        /* a down entry of vpce-1 leaves vpce-2's name alone */
        vd_snapshot_eni_set_up(s, 0, false);
        char got[256];
        answer_text(s, "b.example.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.0.1");
        vd_snapshot_unref(s);
}

Test(snapshot, eni_records_only_through_the_eni_call)
{
        vd_builder *b = vd_builder_new();
        uint8_t name[VD_NAME_MAX], t[VD_NAME_MAX];
        size_t tlen;
        vd_error err = {{0}};
        vd_snapshot_eni e;
        memset(&e, 0, sizeof(e));
        wname("a.example", name);
        cr_assert_eq(vd_name_from_text("b.example", t, &tlen), 0);
        cr_assert_neq(
            vd_builder_add_rr_eni(b, name, VD_TYPE_CNAME, 60, t, (uint16_t)tlen, "z", &e, &err), 0);
        uint8_t addr[4] = {10, 0, 0, 1};
        cr_assert_neq(vd_builder_add_rr_eni(b, name, VD_TYPE_A, 60, addr, 4, "z", NULL, &err), 0);
        cr_assert_neq(vd_builder_add_rr_eni(b, name, VD_TYPE_AAAA, 60, addr, 4, "z", &e, &err), 0);
        vd_builder_free(b);
}

Test(snapshot, down_addresses_leave_every_name_that_uses_them)
{
        vd_snapshot *s = eni_fixture();
        char got[256];
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.2.1"), false);
        cr_assert_not(vd_snapshot_eni_up(s, eni_find(s, "10.0.2.1")));
        static const char *const names[] = {"vpce-1-abc.sqs.test-1.vpce.amazonaws.com.",
                                            "sqs.test-1.amazonaws.com.",
                                            "x.y.sqs.test-1.amazonaws.com."};
        for (size_t i = 0; i < 3; i++) {
                for (uint32_t rot = 0; rot < 4; rot++) {
                        answer_text(s, names[i], LDNS_RR_TYPE_A, rot, got, sizeof(got));
                        cr_assert_null(strstr(got, "10.0.2.1"), "%s rot %u: %s", names[i], rot,
                                       got);
                        cr_assert_eq(strlen(got), strlen("10.0.1.1 10.0.3.1"), "%s", got);
                }
        }
        /* the zone file's record of the same address is not an ENI address */
        answer_text(s, "host.corp.test.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1");
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.1.1"), false);
        answer_text(s, "host.corp.test.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1");
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, 1, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.3.1");
        /* AAAA is its own RRset: its only address down, it fails open */
        vd_snapshot_eni_set_up(s, eni_find(s, "2001:db8::1"), false);
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_AAAA, 0, got, sizeof(got));
        cr_assert_str_eq(got, "2001:db8::1");
        vd_snapshot_unref(s);
}

Test(snapshot, every_address_down_answers_all_and_up_again_returns)
{
        vd_snapshot *s = eni_fixture();
        char got[256];
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++)
                vd_snapshot_eni_set_up(s, i, false);
        vd_snapshot_eni_set_up(s, 0, false); /* twice: still counted once */
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1 10.0.2.1 10.0.3.1");
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, 2, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.3.1 10.0.1.1 10.0.2.1", "fail open still rotates");
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.3.1"), true);
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, 1, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.3.1");
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++)
                vd_snapshot_eni_set_up(s, i, true);
        vd_snapshot_eni_set_up(s, 0, true);
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, 1, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.2.1 10.0.3.1 10.0.1.1");
        vd_snapshot_unref(s);
}

Test(snapshot, rotation_among_the_addresses_that_are_up)
{
        vd_builder *b = vd_builder_new();
        const char *ips[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"};
        for (size_t i = 0; i < 5; i++)
                add_eni_addr(b, "a.example", ips[i], "vpce-1", "eni-x", "z");
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        vd_snapshot_eni_set_up(s, 0, false);
        vd_snapshot_eni_set_up(s, 1, false);
        vd_snapshot_eni_set_up(s, 3, false);
        /* up: .3 and .5; each comes first equally often */
        const char *want[] = {"10.0.0.3 10.0.0.5", "10.0.0.5 10.0.0.3"};
        char got[256];
        for (uint32_t rot = 0; rot < 6; rot++) {
                answer_text(s, "a.example.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                cr_assert_str_eq(got, want[rot % 2], "rotation %u", rot);
        }
        vd_snapshot_unref(s);
}

/* A prober thread flipping flags while answers are made: never a duplicate or a lost record
 * beyond the down ones (TSan checks the flags are atomics). */
static void *flipper(void *arg)
{
        const vd_snapshot *s = arg;
        for (unsigned i = 0; i < 20000; i++)
                vd_snapshot_eni_set_up(s, i % 3, (i / 3) % 2 == 0);
        return NULL;
}

Test(snapshot, health_flips_while_answering)
{
        vd_snapshot *s = eni_fixture();
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, flipper, s), 0);
        char got[256];
        for (uint32_t rot = 0; rot < 3000; rot++) {
                answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                size_t n = 1;
                for (const char *p = got; *p; p++)
                        n += *p == ' ';
                cr_assert(n >= 1 && n <= 3, "%s", got);
                const char *ip[] = {"10.0.1.1", "10.0.2.1", "10.0.3.1"};
                for (size_t k = 0; k < 3; k++) {
                        const char *first = strstr(got, ip[k]);
                        cr_assert(first == NULL || strstr(first + 1, ip[k]) == NULL,
                                  "duplicate in %s", got);
                }
        }
        pthread_join(t, NULL);
        vd_snapshot_unref(s);
}

/* ---- AZ affinity ---------------------------------------------------------------------------- */

static void add_subnet(vd_builder *b, const char *cidr, const char *az_name, const char *az_id)
{
        char ip[64];
        uint8_t addr[16] = {0};
        vd_error err = {{0}};
        const char *slash = strchr(cidr, '/');
        snprintf(ip, sizeof(ip), "%.*s", (int)(slash - cidr), cidr);
        int family = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;
        cr_assert_eq(inet_pton(family, ip, addr), 1);
        cr_assert_eq(
            vd_builder_add_subnet(b, family, addr, (unsigned)atoi(slash + 1), az_name, az_id, &err),
            0, "%s", err.msg);
}

/* The ENI fixture plus subnets that pair each AZ name with an ID (the ENIs name AZs only). */
static vd_snapshot *az_fixture(void)
{
        vd_builder *b = vd_builder_new();
        add_sqs_endpoint(b, false);
        add_subnet(b, "10.0.0.0/16", "test-1a", "t1-az1");
        add_subnet(b, "10.0.2.0/24", "test-1b", "t1-az2");
        add_subnet(b, "10.0.3.0/24", "test-1c", "t1-az3");
        add_subnet(b, "10.0.4.0/24", "test-1d", "t1-az4");
        add_subnet(b, "10.0.3.128/25", "test-1a", "t1-az1");
        add_subnet(b, "10.0.4.0/24", "test-1a", "t1-az1"); /* again: the first AZ stays */
        add_subnet(b, "2001:db8:0:2::/64", "test-1b", "t1-az2");
        add_subnet(b, "2001:db8::/48", "test-1c", "t1-az3");
        return finish(b);
}

static void answer_for(const vd_snapshot *s, const vd_answer_client *client, const char *name,
                       uint32_t rot, char *out, size_t cap)
{
        ldns_pkt *q = NULL;
        cr_assert_eq(
            ldns_pkt_query_new_frm_str(&q, name, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, LDNS_RD),
            LDNS_STATUS_OK);
        uint8_t *wire = NULL;
        size_t wlen = 0, len = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, q, &wlen), LDNS_STATUS_OK);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(wire, wlen, &qi), VD_PARSE_OK);
        uint8_t resp[4096];
        vd_local_chase lc = {0};
        lc.client = client;
        cr_assert_eq(vd_snapshot_answer_chase(s, &qi, rot, resp, sizeof(resp), &len, &lc),
                     VD_LOCAL_ANSWERED);
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, resp, len), LDNS_STATUS_OK);
        size_t at = 0;
        out[0] = '\0';
        for (size_t i = 0; i < ldns_pkt_ancount(p); i++) {
                ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), i);
                char *t = ldns_rdf2str(ldns_rr_rdf(rr, ldns_rr_rd_count(rr) - 1));
                at += (size_t)snprintf(out + at, cap - at, "%s%s", i ? " " : "", t);
                free(t);
        }
        ldns_pkt_free(p);
        free(wire);
        ldns_pkt_free(q);
}

static const char *az_of_client(const vd_snapshot *s, const char *ip)
{
        struct sockaddr_storage ss = client_addr(ip);
        vd_answer_client c = {VD_AZ_AFFINITY_PREFER, NULL, (struct sockaddr *)&ss};
        int az = vd_snapshot_client_az(s, &c);
        return az < 0 ? "-" : vd_snapshot_az_id(s, (size_t)az);
}

Test(snapshot, az_table_pairs_names_with_ids)
{
        vd_snapshot *s = az_fixture();
        cr_assert_eq(vd_snapshot_az_count(s), 4);
        cr_assert_eq(vd_snapshot_subnet_count(s), 7, "the repeated prefix is kept once");
        int az = vd_snapshot_eni_az(s, eni_find(s, "10.0.2.1"));
        cr_assert_geq(az, 0);
        cr_assert_str_eq(vd_snapshot_az_id(s, (size_t)az), "t1-az2");
        cr_assert_str_eq(vd_snapshot_az_name(s, (size_t)az), "test-1b");
        vd_answer_client by_id = {VD_AZ_AFFINITY_PREFER, "T1-AZ2", NULL};
        vd_answer_client by_name = {VD_AZ_AFFINITY_PREFER, "test-1b", NULL};
        vd_answer_client unknown = {VD_AZ_AFFINITY_PREFER, "test-1z", NULL};
        cr_assert_eq(vd_snapshot_client_az(s, &by_id), az);
        cr_assert_eq(vd_snapshot_client_az(s, &by_name), az);
        cr_assert_eq(vd_snapshot_client_az(s, &unknown), -1);
        vd_snapshot_unref(s);
}

Test(snapshot, subnet_table_longest_prefix_v4_and_v6)
{
        vd_snapshot *s = az_fixture();
        cr_assert_str_eq(az_of_client(s, "10.0.1.77"), "t1-az1");
        cr_assert_str_eq(az_of_client(s, "10.0.2.77"), "t1-az2");
        cr_assert_str_eq(az_of_client(s, "10.0.3.7"), "t1-az3");
        cr_assert_str_eq(az_of_client(s, "10.0.3.200"), "t1-az1", "the /25 beats the /24");
        cr_assert_str_eq(az_of_client(s, "10.0.4.1"), "t1-az4", "the first of a repeated prefix");
        cr_assert_str_eq(az_of_client(s, "10.1.0.1"), "-");
        cr_assert_str_eq(az_of_client(s, "::ffff:10.0.2.9"), "t1-az2", "IPv4-mapped");
        cr_assert_str_eq(az_of_client(s, "2001:db8:0:2::99"), "t1-az2", "the /64 beats the /48");
        cr_assert_str_eq(az_of_client(s, "2001:db8:0:3::99"), "t1-az3");
        cr_assert_str_eq(az_of_client(s, "2001:db9::1"), "-");
        vd_answer_client none = {VD_AZ_AFFINITY_PREFER, NULL, NULL};
        cr_assert_eq(vd_snapshot_client_az(s, &none), -1);
        vd_snapshot_unref(s);
}

Test(snapshot, prefer_puts_the_clients_az_first_on_every_name)
{
        vd_snapshot *s = az_fixture();
        struct sockaddr_storage ss = client_addr("10.0.2.50");
        vd_answer_client c = {VD_AZ_AFFINITY_PREFER, NULL, (struct sockaddr *)&ss};
        static const char *const names[] = {"vpce-1-abc.sqs.test-1.vpce.amazonaws.com.",
                                            "sqs.test-1.amazonaws.com.",
                                            "a.b.sqs.test-1.amazonaws.com."};
        char got[256];
        for (size_t i = 0; i < 3; i++) {
                answer_for(s, &c, names[i], 0, got, sizeof(got));
                cr_assert_str_eq(got, "10.0.2.1 10.0.1.1 10.0.3.1", "%s", names[i]);
                answer_for(s, &c, names[i], 1, got, sizeof(got));
                cr_assert_str_eq(got, "10.0.2.1 10.0.3.1 10.0.1.1", "the rest rotates");
        }
        /* off: plain rotation, the client's AZ first only one time in three */
        c.affinity = VD_AZ_AFFINITY_OFF;
        answer_for(s, &c, names[1], 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1 10.0.2.1 10.0.3.1");
        /* by the configured AZ, name or ID, whatever the address */
        vd_answer_client cfg = {VD_AZ_AFFINITY_PREFER, "t1-az3", (struct sockaddr *)&ss};
        answer_for(s, &cfg, names[1], 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.3.1 10.0.1.1 10.0.2.1");
        vd_snapshot_unref(s);
}

Test(snapshot, strict_answers_the_az_alone_and_falls_back_to_all)
{
        vd_snapshot *s = az_fixture();
        vd_answer_client c = {VD_AZ_AFFINITY_STRICT, "test-1b", NULL};
        char got[256];
        for (uint32_t rot = 0; rot < 3; rot++) {
                answer_for(s, &c, "sqs.test-1.amazonaws.com.", rot, got, sizeof(got));
                cr_assert_str_eq(got, "10.0.2.1");
        }
        /* an AZ without an ENI of this endpoint: every address, rotated */
        c.az = "test-1d";
        answer_for(s, &c, "sqs.test-1.amazonaws.com.", 1, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.2.1 10.0.3.1 10.0.1.1");
        /* an AZ unknown to the snapshot: the same */
        c.az = "elsewhere-1a";
        answer_for(s, &c, "sqs.test-1.amazonaws.com.", 2, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.3.1 10.0.1.1 10.0.2.1");
        /* the AZ's only address down: the healthy rest */
        c.az = "test-1b";
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.2.1"), false);
        answer_for(s, &c, "sqs.test-1.amazonaws.com.", 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1 10.0.3.1");
        vd_snapshot_unref(s);
}

Test(snapshot, prefer_with_health)
{
        vd_snapshot *s = az_fixture();
        vd_answer_client c = {VD_AZ_AFFINITY_PREFER, "test-1a", NULL};
        char got[256];
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.3.1"), false);
        answer_for(s, &c, "sqs.test-1.amazonaws.com.", 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1 10.0.2.1");
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.1.1"), false);
        answer_for(s, &c, "sqs.test-1.amazonaws.com.", 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.2.1", "the client's AZ down: the others");
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.2.1"), false);
        answer_for(s, &c, "sqs.test-1.amazonaws.com.", 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1 10.0.2.1 10.0.3.1", "all down: fail open, AZ first");
        vd_snapshot_unref(s);
}

Test(snapshot, affinity_follows_an_endpoint_service_cname)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "test-1.vpce.amazonaws.com", false, "vpce-1");
        add_eni_addr(b, "vpce-1-abc.svc.test-1.vpce.amazonaws.com", "10.0.1.1", "vpce-1", "eni-a",
                     "test-1a");
        add_eni_addr(b, "vpce-1-abc.svc.test-1.vpce.amazonaws.com", "10.0.2.1", "vpce-1", "eni-b",
                     "test-1b");
        add_zone(b, "api.partner.example", true, "vpce-1");
        add_cname(b, "api.partner.example", "vpce-1-abc.svc.test-1.vpce.amazonaws.com", "vpce-1");
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        vd_answer_client c = {VD_AZ_AFFINITY_PREFER, "test-1b", NULL};
        char got[512];
        answer_for(s, &c, "api.partner.example.", 0, got, sizeof(got));
        cr_assert_str_eq(got, "vpce-1-abc.svc.test-1.vpce.amazonaws.com. 10.0.2.1 10.0.1.1");
        vd_snapshot_unref(s);
}

/* An alias (Route 53 AliasTarget) to an endpoint's regional name copies its ENI addresses with
 * their ENI entries: a down address leaves the alias's answer too (the hub-and-spoke apex). */
Test(snapshot, alias_to_an_endpoint_name_follows_eni_health)
{
        static const char *const regional = "vpce-1-abc.sqs.test-1.vpce.amazonaws.com";
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};
        add_zone(b, "test-1.vpce.amazonaws.com", false, "vpce-1");
        add_eni_addr(b, regional, "10.0.1.1", "vpce-1", "eni-a", "test-1a");
        add_eni_addr(b, regional, "10.0.2.1", "vpce-1", "eni-b", "test-1b");
        add_zone(b, "sqs.test-1.amazonaws.com", true, "hub.json");
        uint8_t owner[VD_NAME_MAX], target[VD_NAME_MAX];
        wname("sqs.test-1.amazonaws.com", owner);
        wname(regional, target);
        cr_assert_eq(vd_builder_add_alias(b, owner, VD_TYPE_A, target, "hub.json",
                                          "hub.json: ResourceRecordSets[2]", &err),
                     0, "%s", err.msg);
        vd_snapshot *s = NULL;
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        cr_assert_eq(vd_snapshot_eni_count(s), 2, "the copies share the endpoint's entries");
        char got[256];
        answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_eq(strlen(got), strlen("10.0.1.1 10.0.2.1"), "%s", got);
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.1.1"), false);
        for (uint32_t rot = 0; rot < 3; rot++) {
                answer_text(s, "sqs.test-1.amazonaws.com.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                cr_assert_str_eq(got, "10.0.2.1");
        }
        vd_snapshot_unref(s);
}

/* ---- routing policies chosen per answer -------------------------------------------------- */

static void member(vd_builder *b, vd_policy policy, uint8_t weight, bool secondary, bool eval)
{
        vd_policy_member m = {policy, weight, secondary, eval};
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_policy_member(b, &m, &err), 0, "%s", err.msg);
}

static void no_member(vd_builder *b)
{
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_policy_member(b, NULL, &err), 0);
}

Test(snapshot, weighted_answers_one_record_set_split_by_weight)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "z");
        member(b, VD_POLICY_WEIGHTED, 1, false, false);
        add_a(b, "w.corp.test", "10.0.0.1", "z");
        add_a(b, "w.corp.test", "10.0.0.2", "z");
        member(b, VD_POLICY_WEIGHTED, 3, false, false);
        add_a(b, "w.corp.test", "10.0.0.3", "z");
        member(b, VD_POLICY_WEIGHTED, 0, false, false); /* never, while others weigh */
        add_a(b, "w.corp.test", "10.0.0.9", "z");
        no_member(b);
        add_a(b, "plain.corp.test", "10.0.1.1", "z");
        vd_snapshot *s = finish(b);
        char got[256];
        unsigned light = 0, heavy = 0;
        for (uint32_t rot = 0; rot < 4000; rot++) {
                answer_text(s, "w.corp.test.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                if (strcmp(got, "10.0.0.1 10.0.0.2") == 0 || strcmp(got, "10.0.0.2 10.0.0.1") == 0)
                        light++;
                else if (strcmp(got, "10.0.0.3") == 0)
                        heavy++;
                else
                        cr_assert_fail("rotation %u: %s", rot, got);
        }
        /* 1:3 → 1,000 : 3,000 expected; the choice is a fixed function of the rotation value */
        cr_assert(light >= 850 && light <= 1150, "weight 1 of 4: %u of 4000", light);
        cr_assert_eq(light + heavy, 4000);
        answer_text(s, "plain.corp.test.", LDNS_RR_TYPE_A, 7, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1");
        vd_snapshot_unref(s);
}

Test(snapshot, weighted_all_zero_answers_each_equally)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "z");
        member(b, VD_POLICY_WEIGHTED, 0, false, false);
        add_a(b, "w.corp.test", "10.0.0.1", "z");
        member(b, VD_POLICY_WEIGHTED, 0, false, false);
        add_a(b, "w.corp.test", "10.0.0.1", "z"); /* the same value in two record sets */
        member(b, VD_POLICY_WEIGHTED, 0, false, false);
        add_a(b, "w.corp.test", "10.0.0.3", "z");
        no_member(b);
        vd_snapshot *s = finish(b);
        char got[256];
        unsigned one = 0, three = 0;
        for (uint32_t rot = 0; rot < 3000; rot++) {
                answer_text(s, "w.corp.test.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                one += strcmp(got, "10.0.0.1") == 0;
                three += strcmp(got, "10.0.0.3") == 0;
        }
        /* two record sets of three hold 10.0.0.1: 2,000 expected */
        cr_assert(one >= 1850 && one <= 2150, "%u of 3000", one);
        cr_assert_eq(one + three, 3000);
        vd_snapshot_unref(s);
}

Test(snapshot, weighted_cnames_chase_the_chosen_target)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "z");
        add_a(b, "blue.corp.test", "10.0.0.1", "z");
        add_a(b, "green.corp.test", "10.0.0.2", "z");
        member(b, VD_POLICY_WEIGHTED, 1, false, false);
        add_cname(b, "app.corp.test", "blue.corp.test", "z");
        member(b, VD_POLICY_WEIGHTED, 1, false, false);
        add_cname(b, "app.corp.test", "green.corp.test", "z");
        no_member(b);
        vd_snapshot *s = finish(b);
        unsigned blue = 0, green = 0;
        for (uint32_t rot = 0; rot < 200; rot++) {
                answer a = ask_full(s, "app.corp.test.", LDNS_RR_TYPE_A, false, 512, rot);
                cr_assert_eq(a.result, VD_LOCAL_ANSWERED);
                cr_assert_eq(ldns_pkt_ancount(a.pkt), 2, "one CNAME and its target's A");
                char *target = rr_text(ldns_pkt_answer(a.pkt), 0);
                char *addr = rr_text(ldns_pkt_answer(a.pkt), 1);
                if (strcmp(target, "blue.corp.test.") == 0) {
                        cr_assert_str_eq(addr, "10.0.0.1");
                        blue++;
                } else {
                        cr_assert_str_eq(target, "green.corp.test.");
                        cr_assert_str_eq(addr, "10.0.0.2");
                        green++;
                }
                free(target);
                free(addr);
                ldns_pkt_free(a.pkt);
        }
        cr_assert(blue > 50 && green > 50, "blue %u green %u", blue, green);
        vd_snapshot_unref(s);
}

Test(snapshot, multivalue_answers_up_to_eight_and_leaves_out_down_ones)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "z");
        char ip[32];
        for (int i = 1; i <= 10; i++) {
                member(b, VD_POLICY_MULTIVALUE, 0, false, false);
                snprintf(ip, sizeof(ip), "10.0.0.%d", i);
                add_a(b, "mv.corp.test", ip, "z");
        }
        member(b, VD_POLICY_MULTIVALUE, 0, false, false);
        add_eni_addr(b, "mv.corp.test", "10.0.9.1", "z", "eni-a", "az-1");
        no_member(b);
        vd_snapshot *s = finish(b);
        unsigned seen[12] = {0};
        char got[512];
        for (uint32_t rot = 0; rot < 200; rot++) {
                answer a = ask_full(s, "mv.corp.test.", LDNS_RR_TYPE_A, false, 512, rot);
                cr_assert_eq(ldns_pkt_ancount(a.pkt), 8, "rotation %u", rot);
                for (size_t i = 0; i < 8; i++) {
                        char *t = rr_text(ldns_pkt_answer(a.pkt), i);
                        unsigned last = (unsigned)atoi(strrchr(t, '.') + 1);
                        seen[strncmp(t, "10.0.9.", 7) == 0 ? 11 : last]++;
                        free(t);
                }
                ldns_pkt_free(a.pkt);
        }
        for (int i = 1; i <= 11; i++)
                cr_assert_gt(seen[i], 0, "record set %d never answered", i);
        /* the ENI address down: never in an answer */
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.9.1"), false);
        for (uint32_t rot = 0; rot < 200; rot++) {
                answer_text(s, "mv.corp.test.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                cr_assert_null(strstr(got, "10.0.9.1"), "rotation %u: %s", rot, got);
        }
        vd_snapshot_unref(s);
}

/* A PRIMARY whose records are an endpoint's ENI addresses (as an alias's copies are) and a
 * plain SECONDARY. */
static vd_snapshot *failover_fixture(bool evaluate)
{
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "z");
        member(b, VD_POLICY_FAILOVER, 0, true, false);
        add_a(b, "db.corp.test", "10.0.8.8", "z");
        member(b, VD_POLICY_FAILOVER, 0, false, evaluate);
        add_eni_addr(b, "db.corp.test", "10.0.1.1", "z", "eni-a", "az-1");
        add_eni_addr(b, "db.corp.test", "10.0.2.1", "z", "eni-b", "az-2");
        no_member(b);
        return finish(b);
}

Test(snapshot, failover_moves_to_the_secondary_when_the_primary_is_down)
{
        vd_snapshot *s = failover_fixture(true);
        char got[256];
        for (uint32_t rot = 0; rot < 4; rot++) {
                answer_text(s, "db.corp.test.", LDNS_RR_TYPE_A, rot, got, sizeof(got));
                cr_assert(strcmp(got, "10.0.1.1 10.0.2.1") == 0 ||
                              strcmp(got, "10.0.2.1 10.0.1.1") == 0,
                          "%s", got);
        }
        /* one address down: still the PRIMARY, without it */
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.1.1"), false);
        answer_text(s, "db.corp.test.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.2.1");
        /* all down: the SECONDARY */
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.2.1"), false);
        answer_text(s, "db.corp.test.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.8.8");
        /* one back up: the PRIMARY again */
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.1.1"), true);
        answer_text(s, "db.corp.test.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1");
        vd_snapshot_unref(s);
        /* without EvaluateTargetHealth the PRIMARY stays (its addresses fail open) */
        s = failover_fixture(false);
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.1.1"), false);
        vd_snapshot_eni_set_up(s, eni_find(s, "10.0.2.1"), false);
        answer_text(s, "db.corp.test.", LDNS_RR_TYPE_A, 0, got, sizeof(got));
        cr_assert_str_eq(got, "10.0.1.1 10.0.2.1");
        vd_snapshot_unref(s);
}

Test(snapshot, weighted_cname_loop_through_a_later_member_stays_bounded)
{
        /* The load-time loop check follows each name's first CNAME only; a loop through
         * another member ends at the hop limit with SERVFAIL, never a hang. */
        vd_builder *b = vd_builder_new();
        add_zone(b, "corp.test", true, "z");
        add_a(b, "ok.corp.test", "10.0.0.1", "z");
        member(b, VD_POLICY_WEIGHTED, 1, false, false);
        add_cname(b, "a.corp.test", "ok.corp.test", "z");
        member(b, VD_POLICY_WEIGHTED, 1, false, false);
        add_cname(b, "a.corp.test", "b.corp.test", "z");
        member(b, VD_POLICY_WEIGHTED, 1, false, false);
        add_cname(b, "b.corp.test", "a.corp.test", "z");
        no_member(b);
        vd_snapshot *s = finish(b);
        unsigned ok = 0, fail = 0;
        for (uint32_t rot = 0; rot < 64; rot++) {
                answer a = ask_full(s, "a.corp.test.", LDNS_RR_TYPE_A, true, 4096, rot);
                cr_assert_eq(a.result, VD_LOCAL_ANSWERED);
                if (ldns_pkt_get_rcode(a.pkt) == LDNS_RCODE_SERVFAIL)
                        fail++;
                else if (ldns_pkt_get_rcode(a.pkt) == LDNS_RCODE_NOERROR)
                        ok++;
                ldns_pkt_free(a.pkt);
        }
        cr_assert_eq(ok + fail, 64);
        cr_assert_gt(ok, 0);
        vd_snapshot_unref(s);
}
