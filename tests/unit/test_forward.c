/* test_forward.c — tests of the forwarder (resolver/forward*.c): vd_forward_relay on hand-built
 * upstream answers; server health, token buckets and server choice as pure logic on a fake
 * clock; and the live forwarder against fake upstream servers (support/fake_upstream.h) on
 * 127.0.0.1 that run in the test's own libuv loop (UDP and TCP, canned answers, silent, TC,
 * REFUSED, wrong letter case, wrong ID): vd_forwarder_resolve and its status codes (answers relayed
 * to the client as resolve.c does), source port rotation, forwarding rules, max_qps, 0x20 and
 * closing with queries pending. Every live test is bounded by a guard timer and checks that the
 * loop ends with no handle left. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "vpcdns/stats.h"
#include "vpcdns/forward.h"
#include "vpcdns/forward_budget.h"
#include "vpcdns/forward_select.h"
#include "vpcdns/wire.h"

#include "support/client.h"
#include "support/dns_msg.h"
#include "support/fake_upstream.h"

/* ---- message builder (case-preserving, compression only where asked) ------------------- */

static void set_count(dns_msg *m, int which, unsigned v)
{
        vd_wire_put16(m->b + 4 + 2 * which, (uint16_t)v);
}

static void a_rr_ptr(dns_msg *m, size_t owner_off, uint8_t last_octet)
{
        const uint8_t rd[4] = {192, 0, 2, last_octet};
        put_ptr(m, owner_off);
        rr_tail(m, VD_TYPE_A, VD_CLASS_IN, 300, rd, 4);
}

/* Upstream answer header + question (as the upstream spells it). */
static void answer_start(dns_msg *m, unsigned flags, const char *name, unsigned qtype, unsigned an,
                         unsigned ns, unsigned ar)
{
        header(m, 0xBEEF, flags, 1, an, ns, ar);
        put_name(m, name);
        put16(m, qtype);
        put16(m, VD_CLASS_IN);
}

static ldns_pkt *parse_ldns(const uint8_t *b, size_t n)
{
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, b, n), LDNS_STATUS_OK, "response does not parse");
        return p;
}

/* Offset just past the question of a response built for qi. */
static size_t q_end(const vd_query_info *qi)
{
        return VD_HEADER_LEN + qi->qname_len + 4u;
}

/* ---- relay -------------------------------------------------------------------------------- */

Test(relay, restores_id_and_question_case_and_removes_opt)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 0x1234, "WwW.ExAmPle.COM", VD_TYPE_A, false, false);
        answer_start(&a, UP_FLAGS | VD_FLAG_AA, "www.example.com", VD_TYPE_A, 1, 0, 1);
        a_rr_ptr(&a, 12, 7);
        opt_rr(&a, 1232, 0, false, true);

        size_t n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_gt(n, 0);
        cr_assert_eq(vd_wire_get16(out), 0x1234);
        cr_assert_eq(memcmp(out + VD_HEADER_LEN, q.b + VD_HEADER_LEN, qi.qname_len + 4u), 0,
                     "question not as the client spelt it");
        cr_assert_eq(vd_wire_get16(out + 6), 1);
        cr_assert_eq(vd_wire_get16(out + 10), 0, "non-EDNS client must get no OPT");
        cr_assert_eq(n, q_end(&qi) + 16, "exactly the one A record after the question");
        cr_assert_eq(out[n - 1], 7);
        uint16_t flags = vd_wire_get16(out + 2);
        cr_assert(flags & VD_FLAG_QR);
        cr_assert(flags & VD_FLAG_RA);
        cr_assert(flags & VD_FLAG_RD);
        cr_assert_eq(flags & 0xF, 0);
        cr_assert_not(flags & VD_FLAG_AA, "we answer as a recursive service: AA clear");

        ldns_pkt *p = parse_ldns(out, n);
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
        char *owner = ldns_rdf2str(ldns_rr_owner(rr));
        cr_assert_str_eq(owner, "WwW.ExAmPle.COM.", "compressed owner points at the client's name");
        free(owner);
        ldns_pkt_free(p);
}

Test(relay, rd_echoed_from_the_client)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        header(&q, 9, 0, 1, 0, 0, 0); /* RD clear */
        put_name(&q, "example.com");
        put16(&q, VD_TYPE_A);
        put16(&q, VD_CLASS_IN);
        cr_assert_eq(vd_wire_parse_query(q.b, q.n, &qi), VD_PARSE_OK);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_gt(n, 0);
        cr_assert_eq(vd_wire_get16(out + 2) & VD_FLAG_RD, 0);
}

Test(relay, opt_replaced_for_edns_client)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 0x0102, "example.com", VD_TYPE_A, true, true);
        answer_start(&a, UP_FLAGS | VD_FLAG_AD, "example.com", VD_TYPE_A, 1, 0, 1);
        a_rr_ptr(&a, 12, 1);
        opt_rr(&a, 4096, 0, true, true);

        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi) + 16 + 11, "answer + our bare OPT, the upstream's option gone");
        cr_assert_eq(vd_wire_get16(out + 10), 1);
        const uint8_t *opt = out + n - 11;
        cr_assert_eq(opt[0], 0);
        cr_assert_eq(vd_wire_get16(opt + 1), VD_TYPE_OPT);
        cr_assert_eq(vd_wire_get16(opt + 3), VD_UDP_PAYLOAD);
        cr_assert_eq(vd_wire_get32(opt + 5), VD_EDNS_DO, "client's DO, ext rcode 0");
        cr_assert_eq(vd_wire_get16(opt + 9), 0);
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_AD, "upstream's AD kept");
}

Test(relay, opt_added_when_upstream_sent_none)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 5, "example.com", VD_TYPE_A, true, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi) + 16 + 11);
        cr_assert_eq(vd_wire_get16(out + 10), 1);
        cr_assert_eq(vd_wire_get16(out + n - 10), VD_TYPE_OPT);
}

/* Additional section [OPT, A ns1, AAAA ns1→(pointer to the A's owner, after the OPT)]. */
Test(relay, ad_only_for_a_client_that_asked)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 9, "example.com", VD_TYPE_A, true, false);
        answer_start(&a, UP_FLAGS | VD_FLAG_AD, "example.com", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_gt(n, 0);
        cr_assert_not(vd_wire_get16(out + 2) & VD_FLAG_AD, "neither DO nor AD asked: no AD");
        client_query(&q, &qi, 9, "example.com", VD_TYPE_A, false, false);
        q.b[3] |= 0x20; /* AD in the query */
        cr_assert_eq(vd_wire_parse_query(q.b, q.n, &qi), VD_PARSE_OK);
        n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_AD, "AD asked for: kept");
}

Test(relay, names_in_rdata_after_a_middle_opt_are_refused)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 78, "example.com", VD_TYPE_A, false, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 1, 0, 2);
        a_rr_ptr(&a, 12, 1);
        opt_rr(&a, 1232, 0, false, true);
        put_ptr(&a, 12);
        uint8_t cname[6] = {3, 'w', 'w', 'w', 0xC0, 12};
        rr_tail(&a, VD_TYPE_CNAME, VD_CLASS_IN, 300, cname, sizeof(cname));
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 4096, out, sizeof(out)), 0,
                     "a pointer in rdata after the OPT would shift: SERVFAIL, not a corrupt name");
}

Test(relay, opt_in_the_middle_of_additional)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 77, "example.com", VD_TYPE_NS, false, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_NS, 1, 0, 3);
        put_ptr(&a, 12);
        size_t ns_rdata = a.n + 10;
        uint8_t nsrd[6] = {3, 'n', 's', '1', 0xC0, 12};
        rr_tail(&a, VD_TYPE_NS, VD_CLASS_IN, 300, nsrd, sizeof(nsrd));
        opt_rr(&a, 1232, 0, false, true);
        size_t a_owner = a.n;
        put_name(&a, "Ns1.example.com");
        const uint8_t v4[4] = {192, 0, 2, 53};
        rr_tail(&a, VD_TYPE_A, VD_CLASS_IN, 300, v4, 4);
        put_ptr(&a, a_owner);
        uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
        v6[15] = 0x53;
        rr_tail(&a, VD_TYPE_AAAA, VD_CLASS_IN, 300, v6, 16);
        put_ptr(&a, ns_rdata); /* a third record pointing before the OPT */
        rr_tail(&a, VD_TYPE_A, VD_CLASS_IN, 300, v4, 4);
        set_count(&a, 3, 4);

        size_t n = vd_forward_relay(&qi, a.b, a.n, 4096, out, sizeof(out));
        cr_assert_gt(n, 0);
        cr_assert_eq(vd_wire_get16(out + 10), 3, "OPT removed, three glue records kept");
        ldns_pkt *p = parse_ldns(out, n);
        ldns_rr_list *add = ldns_pkt_additional(p);
        cr_assert_eq(ldns_rr_list_rr_count(add), 3);
        cr_assert_eq(ldns_pkt_edns(p), false, "no OPT left for a non-EDNS client");
        const ldns_rr_type types[3] = {LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA, LDNS_RR_TYPE_A};
        const char *owners[3] = {"Ns1.example.com.", "Ns1.example.com.", "ns1.example.com."};
        for (size_t i = 0; i < 3; i++) {
                ldns_rr *rr = ldns_rr_list_rr(add, i);
                char *o = ldns_rdf2str(ldns_rr_owner(rr));
                cr_assert_str_eq(o, owners[i], "record %zu owner %s", i, o);
                cr_assert_eq(ldns_rr_get_type(rr), types[i]);
                free(o);
        }
        char *aaaa = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(add, 1), 0));
        cr_assert_str_eq(aaaa, "2001:db8::53");
        free(aaaa);
        ldns_pkt_free(p);
}

Test(relay, nxdomain_with_soa_passes_through)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "nope.Example.com", VD_TYPE_AAAA, true, false);
        answer_start(&a, UP_FLAGS | VD_RCODE_NXDOMAIN, "nope.example.com", VD_TYPE_AAAA, 0, 1, 1);
        put_ptr(&a, 12 + 5); /* example.com */
        dns_msg soa = {.n = 0};
        put_name(&soa, "ns.example.com");
        put_name(&soa, "hostmaster.example.com");
        put32(&soa, 2024010101);
        put32(&soa, 7200);
        put32(&soa, 900);
        put32(&soa, 1209600);
        put32(&soa, 300);
        rr_tail(&a, VD_TYPE_SOA, VD_CLASS_IN, 300, soa.b, soa.n);
        opt_rr(&a, 1232, 0, false, false);

        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_gt(n, 0);
        cr_assert_eq(vd_wire_get16(out + 2) & 0xF, VD_RCODE_NXDOMAIN);
        cr_assert_eq(vd_wire_get16(out + 6), 0);
        cr_assert_eq(vd_wire_get16(out + 8), 1);
        ldns_pkt *p = parse_ldns(out, n);
        ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
        cr_assert_eq(ldns_rr_get_type(rr), LDNS_RR_TYPE_SOA);
        char *o = ldns_rdf2str(ldns_rr_owner(rr));
        cr_assert_str_eq(o, "Example.com.");
        free(o);
        cr_assert_eq(ldns_rdf2native_int32(ldns_rr_rdf(rr, 6)), 300);
        ldns_pkt_free(p);
}

Test(relay, extended_rcode_preserved)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, true, false);
        /* BADCOOKIE = 23: header rcode 7, OPT extended rcode 1 */
        answer_start(&a, UP_FLAGS | 7, "example.com", VD_TYPE_A, 0, 0, 1);
        opt_rr(&a, 1232, 1, false, true);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi) + 11);
        cr_assert_eq(vd_wire_get16(out + 2) & 0xF, 7);
        cr_assert_eq(out[n - 11 + 5], 1, "extended rcode bits in our OPT");

        /* A client without EDNS cannot be told: the caller answers SERVFAIL. */
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, false, false);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0);
}

Test(relay, upstream_servfail_and_refused_pass_through)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, false, false);
        answer_start(&a, UP_FLAGS | VD_RCODE_REFUSED, "example.com", VD_TYPE_A, 0, 0, 0);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi));
        cr_assert_eq(vd_wire_get16(out + 2) & 0xF, VD_RCODE_REFUSED);
}

Test(relay, wrong_question_rejected)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, false, false);

        answer_start(&a, UP_FLAGS, "example.org", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "other name");

        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_AAAA, 0, 0, 0);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "other type");

        answer_start(&a, UP_FLAGS, "www.example.com", VD_TYPE_A, 0, 0, 0);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "longer name");

        header(&a, 1, UP_FLAGS, 0, 0, 0, 0);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "no question");

        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 0, 0, 0);
        set_count(&a, 0, 2);
        put_name(&a, "example.com");
        put16(&a, VD_TYPE_A);
        put16(&a, VD_CLASS_IN);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "QDCOUNT 2");

        /* Same name in another case is the same question. */
        answer_start(&a, UP_FLAGS, "EXAMPLE.com", VD_TYPE_A, 0, 0, 0);
        cr_assert_gt(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0);
}

Test(relay, not_a_response_rejected)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, false, false);
        answer_start(&a, VD_FLAG_RD, "example.com", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "QR clear");
        answer_start(&a, UP_FLAGS | (2u << 11), "example.com", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0, "opcode STATUS");
        cr_assert_eq(vd_forward_relay(&qi, a.b, 11, 512, out, sizeof(out)), 0, "short header");
}

Test(relay, opt_outside_additional_or_twice_rejected)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, true, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 1, 0, 0);
        opt_rr(&a, 1232, 0, false, false);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out)), 0);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 0, 0, 2);
        opt_rr(&a, 1232, 0, false, false);
        opt_rr(&a, 1232, 0, false, false);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out)), 0);
}

/* Octets after the last counted record belong to no record; a pointer in opaque rdata could
 * lead into them, and the relay would cut them off (a fuzzer's find). */
Test(relay, trailing_octets_after_the_records_rejected)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, false, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 1, 0, 0);
        a_rr_ptr(&a, 12, 1);
        cr_assert_gt(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0);
        a.b[a.n++] = 0;
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out)), 0);
}

static void build_big_answer(dns_msg *a, const char *name, unsigned n_records)
{
        answer_start(a, UP_FLAGS, name, VD_TYPE_A, n_records, 0, 1);
        for (unsigned i = 0; i < n_records; i++)
                a_rr_ptr(a, 12, (uint8_t)i);
        opt_rr(a, 1232, 0, false, false);
}

Test(relay, every_cut_or_corruption_is_safe)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 3, "example.com", VD_TYPE_A, true, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 2, 1, 1);
        a_rr_ptr(&a, 12, 1);
        a_rr_ptr(&a, 12, 2);
        put_ptr(&a, 12);
        uint8_t nsrd[6] = {3, 'n', 's', '1', 0xC0, 12};
        rr_tail(&a, VD_TYPE_NS, VD_CLASS_IN, 300, nsrd, sizeof(nsrd));
        opt_rr(&a, 1232, 0, false, true);
        cr_assert_gt(vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out)), 0);

        for (size_t cut = 0; cut < a.n; cut++)
                cr_assert_eq(vd_forward_relay(&qi, a.b, cut, 1232, out, sizeof(out)), 0,
                             "answer cut at %zu accepted", cut);

        /* Counts larger than the records present. */
        dns_msg bad = a;
        set_count(&bad, 1, 3);
        cr_assert_eq(vd_forward_relay(&qi, bad.b, bad.n, 1232, out, sizeof(out)), 0);
        /* A compression loop in an owner name. */
        bad = a;
        size_t first_owner = q_end(&qi);
        vd_wire_put16(bad.b + first_owner, (uint16_t)(0xC000u | first_owner));
        cr_assert_eq(vd_forward_relay(&qi, bad.b, bad.n, 1232, out, sizeof(out)), 0);
        /* rdlength past the end. */
        bad = a;
        vd_wire_put16(bad.b + first_owner + 2 + 8, 0xFFFF);
        cr_assert_eq(vd_forward_relay(&qi, bad.b, bad.n, 1232, out, sizeof(out)), 0);

        /* Random corruption: never crash, never write past the limit. */
        srand(12345);
        for (int round = 0; round < 50000; round++) {
                bad = a;
                int flips = 1 + rand() % 4;
                for (int i = 0; i < flips; i++)
                        bad.b[rand() % bad.n] = (uint8_t)rand();
                uint8_t small[600];
                memset(small, 0xEE, sizeof(small));
                size_t n = vd_forward_relay(&qi, bad.b, bad.n, 512, small, 560);
                cr_assert_leq(n, 512);
                for (size_t i = 560; i < sizeof(small); i++)
                        cr_assert_eq(small[i], 0xEE, "wrote past cap");
        }
}

Test(relay, truncates_with_tc_when_larger_than_max_len)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        build_big_answer(&a, "example.com", 40); /* 40 × 16 octets of A records */

        client_query(&q, &qi, 0x55AA, "Example.com", VD_TYPE_A, false, false);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi), "header and question only");
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC);
        cr_assert_eq(vd_wire_get16(out), 0x55AA);
        cr_assert_eq(vd_wire_get16(out + 4), 1);
        cr_assert_eq(vd_wire_get16(out + 6), 0);
        cr_assert_eq(vd_wire_get16(out + 8), 0);
        cr_assert_eq(vd_wire_get16(out + 10), 0);

        client_query(&q, &qi, 0x55AA, "Example.com", VD_TYPE_A, true, true);
        n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi) + 11, "header, question and our OPT");
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC);
        cr_assert_eq(vd_wire_get16(out + 6), 0);
        cr_assert_eq(vd_wire_get16(out + 10), 1);

        /* The same answer fits a larger limit, without TC. */
        n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi) + 40 * 16 + 11);
        cr_assert_eq(vd_wire_get16(out + 2) & VD_FLAG_TC, 0);
        cr_assert_eq(vd_wire_get16(out + 6), 40);

        /* Exactly at the limit fits; one octet less truncates. */
        size_t exact = n;
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, exact, out, sizeof(out)), exact);
        cr_assert_eq(vd_forward_relay(&qi, a.b, a.n, exact - 1, out, sizeof(out)), q_end(&qi) + 11);
}

/* A positive answer: one A record, n_ns NS records in the authority section (each 30 octets),
 * n_glue A records in the additional section (16 octets each), then an OPT. */
static void build_sections(dns_msg *a, unsigned n_ns, unsigned n_glue)
{
        answer_start(a, UP_FLAGS, "example.com", VD_TYPE_A, 1, n_ns, n_glue + 1);
        a_rr_ptr(a, 12, 1);
        for (unsigned i = 0; i < n_ns; i++) {
                uint8_t rd[18] = {15,   'n', 's', '-', 'a', 'b', 'c', 'd',
                                  'e',  'f', 'g', 'h', 'i', 'j', 'k', (uint8_t)('a' + i % 26),
                                  0xC0, 12};
                put_ptr(a, 12);
                rr_tail(a, VD_TYPE_NS, VD_CLASS_IN, 300, rd, sizeof(rd));
        }
        for (unsigned i = 0; i < n_glue; i++)
                a_rr_ptr(a, 12, (uint8_t)(100 + i));
        opt_rr(a, 1232, 0, false, false);
}

Test(relay, too_big_drops_additional_then_authority_before_setting_tc)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 0x1234, "example.com", VD_TYPE_A, true, false);
        size_t head = q_end(&qi), answer = 16, opt = 11;

        /* Everything fits in 1232. */
        build_sections(&a, 4, 10);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_eq(n, head + answer + 4 * 30 + 10 * 16 + opt);
        cr_assert_eq(vd_wire_get16(out + 8), 4);
        cr_assert_eq(vd_wire_get16(out + 10), 11, "glue and our OPT");

        /* The additional section does not fit 512: it goes, our OPT stays, no TC. */
        build_sections(&a, 4, 30);
        n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(n, head + answer + 4 * 30 + opt);
        cr_assert_eq(vd_wire_get16(out + 2) & VD_FLAG_TC, 0, "TC for a dropped additional");
        cr_assert_eq(vd_wire_get16(out + 6), 1);
        cr_assert_eq(vd_wire_get16(out + 8), 4);
        cr_assert_eq(vd_wire_get16(out + 10), 1, "only our OPT");
        ldns_pkt *p = parse_ldns(out, n);
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        cr_assert(ldns_pkt_edns(p), "our OPT is kept");
        ldns_pkt_free(p);

        /* The authority section does not fit either: both go, the answer stays, no TC. */
        build_sections(&a, 20, 5);
        n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(n, head + answer + opt);
        cr_assert_eq(vd_wire_get16(out + 2) & VD_FLAG_TC, 0, "TC for a dropped authority");
        cr_assert_eq(vd_wire_get16(out + 6), 1);
        cr_assert_eq(vd_wire_get16(out + 8), 0);
        cr_assert_eq(vd_wire_get16(out + 10), 1);
        cr_assert_eq(vd_wire_get32(out + head + 6), 300, "the A record, whole");

        /* Only our OPT does not fit after everything: the additional records make room. */
        build_sections(&a, 0, 1);
        size_t all = head + answer + 16 + opt;
        n = vd_forward_relay(&qi, a.b, a.n, all - 1, out, sizeof(out));
        cr_assert_eq(n, head + answer + opt);
        cr_assert_eq(vd_wire_get16(out + 10), 1);

        /* The answer section itself does not fit: TC, no records. */
        build_big_answer(&a, "example.com", 40);
        n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(n, head + opt);
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC);
}

Test(relay, wildcard_proof_of_a_do_client_is_not_dropped)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        /* A wildcard answer: one A record; in the authority section the NSEC that proves no
         * closer name exists, padded with NS records so that all of it exceeds 512 octets. */
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 1, 21, 1);
        a_rr_ptr(&a, 12, 1);
        for (unsigned i = 0; i < 20; i++) {
                uint8_t rd[18] = {15,   'n', 's', '-', 'a', 'b', 'c', 'd',
                                  'e',  'f', 'g', 'h', 'i', 'j', 'k', (uint8_t)('a' + i % 26),
                                  0xC0, 12};
                put_ptr(&a, 12);
                rr_tail(&a, VD_TYPE_NS, VD_CLASS_IN, 300, rd, sizeof(rd));
        }
        const uint8_t nsec[] = {0, 0, 1, 0x40}; /* next name: the root; types: A */
        put_ptr(&a, 12);
        rr_tail(&a, 47, VD_CLASS_IN, 300, nsec, sizeof(nsec));
        opt_rr(&a, 1232, 0, true, false);

        /* Without DO the authority section goes and the answer stays. */
        client_query(&q, &qi, 0x4242, "example.com", VD_TYPE_A, true, false);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_eq(vd_wire_get16(out + 2) & VD_FLAG_TC, 0);
        cr_assert_eq(vd_wire_get16(out + 6), 1);
        cr_assert_eq(vd_wire_get16(out + 8), 0);
        cr_assert_eq(n, q_end(&qi) + 16 + 11);

        /* With DO the proof cannot go: TC, and the whole answer over TCP. */
        client_query(&q, &qi, 0x4242, "example.com", VD_TYPE_A, true, true);
        n = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC, "a DO answer without its wildcard proof");
        cr_assert_eq(vd_wire_get16(out + 6), 0);
        n = vd_forward_relay(&qi, a.b, a.n, 65535, out, sizeof(out));
        cr_assert_eq(vd_wire_get16(out + 2) & VD_FLAG_TC, 0);
        cr_assert_eq(vd_wire_get16(out + 8), 21);
}

Test(relay, negative_answer_whose_soa_does_not_fit_is_tc)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        client_query(&q, &qi, 7, "example.com", VD_TYPE_A, false, false);
        answer_start(&a, UP_FLAGS | VD_RCODE_NXDOMAIN, "example.com", VD_TYPE_A, 0, 1, 0);
        uint8_t soa[200];
        memset(soa, 0, sizeof(soa));
        soa[0] = 63; /* a long MNAME label, then root; RNAME root; five numbers */
        memset(soa + 1, 'm', 63);
        put_ptr(&a, 12);
        rr_tail(&a, VD_TYPE_SOA, VD_CLASS_IN, 300, soa, 1 + 63 + 1 + 1 + 20);
        size_t full = vd_forward_relay(&qi, a.b, a.n, 512, out, sizeof(out));
        cr_assert_gt(full, q_end(&qi));
        cr_assert_eq(vd_wire_get16(out + 8), 1);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_NXDOMAIN);
        size_t n = vd_forward_relay(&qi, a.b, a.n, full - 1, out, sizeof(out));
        cr_assert_eq(n, q_end(&qi), "no NXDOMAIN without its SOA: TC instead");
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_NXDOMAIN);
}

Test(relay, ttls_above_2_31_minus_1_become_0)
{
        dns_msg q, a;
        vd_query_info qi;
        uint8_t out[4096];
        const uint8_t rd[4] = {192, 0, 2, 1};
        const uint32_t ttls[4] = {0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu, 60};
        client_query(&q, &qi, 9, "example.com", VD_TYPE_A, true, false);
        answer_start(&a, UP_FLAGS, "example.com", VD_TYPE_A, 2, 1, 2);
        for (int i = 0; i < 2; i++) {
                put_ptr(&a, 12);
                rr_tail(&a, VD_TYPE_A, VD_CLASS_IN, ttls[i], rd, 4);
        }
        put_ptr(&a, 12);
        rr_tail(&a, VD_TYPE_A, VD_CLASS_IN, ttls[2], rd, 4);
        opt_rr(&a, 1232, 0, false, false);
        put_ptr(&a, 12); /* after the OPT: the owner is written out, offsets shift */
        rr_tail(&a, VD_TYPE_A, VD_CLASS_IN, 0x90000000u, rd, 4);
        size_t n = vd_forward_relay(&qi, a.b, a.n, 1232, out, sizeof(out));
        cr_assert_gt(n, 0);
        ldns_pkt *p = parse_ldns(out, n);
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), 0x7FFFFFFFu);
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 1)), 0);
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), 0);
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_additional(p), 0)), 0);
        ldns_pkt_free(p);
}

/* ---- live: upstream servers on 127.0.0.1 in the test's loop -------------------------- */

/* One live scenario: a loop, a forwarder, up to two upstreams, replies recorded per query. */
#define MAX_Q 8

typedef struct scenario scenario;

typedef struct reply {
        scenario *s;
        int calls;
        size_t len;
        uint64_t at_ns;
        bool null_resp;
        uint8_t buf[4096];
        vd_query_info qi; /* the client's question, for the relay */
        uint8_t qname[VD_NAME_MAX];
        size_t max_len;
} reply;

struct scenario {
        uv_loop_t loop;
        vd_forwarder *fwd;
        fake_upstream up[3];
        size_t n_up;
        uv_timer_t guard, linger, later;
        bool guard_fired, finished;
        uint64_t start_ns;
        reply r[MAX_Q];
        int expected, received;
        unsigned linger_ms;
        bool close_in_reply; /* vd_forwarder_close from inside the first done() */
        bool fwd_closed;
        void (*later_fn)(scenario *s);
        bool in_query;            /* done() must never run inside vd_forwarder_resolve */
        vd_forward_counters last; /* the counters just before finish() closed the forwarder */
};

static void finish(scenario *s)
{
        if (s->finished)
                return;
        s->finished = true;
        if (!s->fwd_closed) {
                vd_forwarder_counters_get(s->fwd, &s->last);
                vd_forwarder_close(s->fwd);
        }
        s->fwd_closed = true;
        for (size_t i = 0; i < s->n_up; i++)
                fake_upstream_stop(&s->up[i]);
        uv_close((uv_handle_t *)&s->guard, NULL);
        uv_close((uv_handle_t *)&s->linger, NULL);
        uv_close((uv_handle_t *)&s->later, NULL);
}

static void on_guard(uv_timer_t *t)
{
        scenario *s = t->data;
        s->guard_fired = true;
        finish(s);
}

static void on_linger(uv_timer_t *t)
{
        finish(t->data);
}

static void on_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        (void)source;
        reply *r = arg;
        scenario *s = r->s;
        cr_assert(!s->in_query, "done() called from inside vd_forwarder_resolve");
        r->calls++;
        r->len = len;
        r->null_resp = resp == NULL;
        r->at_ns = uv_hrtime();
        if (len > 0) {
                cr_assert_leq(len, sizeof(r->buf));
                memcpy(r->buf, resp, len);
        }
        if (r->calls > 1)
                return;
        s->received++;
        if (s->close_in_reply) {
                s->close_in_reply = false;
                s->fwd_closed = true;
                vd_forwarder_close(s->fwd);
        }
        if (s->received == s->expected && !s->finished)
                uv_timer_start(&s->linger, on_linger, s->linger_ms, 0);
}

/* The upstream's answer as resolve.c turns it into the client's response: relayed, or
 * SERVFAIL when there is none or it cannot be relayed; nothing on -ECANCELED. */
static void on_upstream_reply(void *arg, int status, const uint8_t *answer, size_t len)
{
        static uint8_t out[VD_TCP_MAX];
        reply *r = arg;
        if (status == -ECANCELED) {
                on_reply(r, NULL, 0, VD_STATS_SOURCE_ERROR);
                return;
        }
        size_t n =
            status == 0 ? vd_forward_relay(&r->qi, answer, len, r->max_len, out, sizeof(out)) : 0;
        if (n == 0)
                n = vd_wire_error_response(&r->qi, VD_RCODE_SERVFAIL, out,
                                           r->max_len < sizeof(out) ? r->max_len : sizeof(out));
        on_reply(r, out, n, VD_STATS_SOURCE_UPSTREAM);
}

/* A loop and up to three upstreams on 127.0.0.1; the forwarder comes next. */
static void scenario_upstreams(scenario *s, const fake_mode *modes, size_t n_up, bool with_tcp)
{
        memset(s, 0, sizeof(*s));
        cr_assert_eq(uv_loop_init(&s->loop), 0);
        cr_assert_leq(n_up, 3);
        for (size_t i = 0; i < n_up; i++) {
                fake_upstream_init(&s->up[i], modes[i]);
                cr_assert(fake_upstream_start(&s->up[i], &s->loop, with_tcp, "127.0.0.1"));
        }
        s->n_up = n_up;
}

/* The forwarder from opt (servers: every upstream when opt has neither servers nor rules), the
 * timers. */
static void scenario_forwarder(scenario *s, vd_forward_options opt)
{
        vd_addr servers[3];
        for (size_t i = 0; i < s->n_up; i++)
                servers[i] = s->up[i].addr;
        if (opt.servers == NULL && opt.n_servers == 0 && opt.n_rules == 0) {
                opt.servers = servers;
                opt.n_servers = s->n_up;
        }
        vd_error err;
        cr_assert_eq(vd_forwarder_new(&s->loop, &opt, &s->fwd, &err), 0, "%s", err.msg);
        uv_timer_init(&s->loop, &s->guard);
        uv_timer_init(&s->loop, &s->linger);
        uv_timer_init(&s->loop, &s->later);
        s->guard.data = s->linger.data = s->later.data = s;
        uv_timer_start(&s->guard, on_guard, 6000, 0);
        for (int i = 0; i < MAX_Q; i++)
                s->r[i].s = s;
}

static void scenario_init(scenario *s, const fake_mode *modes, size_t n_up, bool with_tcp,
                          unsigned budget_ms)
{
        scenario_upstreams(s, modes, n_up, with_tcp);
        scenario_forwarder(s, (vd_forward_options){.timeout_ms = budget_ms});
}

static unsigned client_extra_flags; /* OR-ed into the next queries' flags (RD is always set) */

static void send_query(scenario *s, int i, unsigned id, const char *name, bool edns, bool dnssec_ok,
                       size_t max_len)
{
        dns_msg q;
        vd_query_info qi;
        client_query_flags(&q, &qi, id, VD_FLAG_RD | client_extra_flags, name, VD_TYPE_A, edns,
                           dnssec_ok);
        if (s->start_ns == 0)
                s->start_ns = uv_hrtime();
        reply *r = &s->r[i];
        r->qi = qi;
        memcpy(r->qname, qi.qname, qi.qname_len);
        r->qi.qname = r->qname;
        r->max_len = max_len;
        s->in_query = true;
        int rc = vd_forwarder_resolve(s->fwd, &qi, on_upstream_reply, r);
        s->in_query = false;
        memset(&q, 0xAB, sizeof(q)); /* the forwarder must have copied what it needs */
        cr_assert_eq(rc, 0, "vd_forwarder_resolve: %d", rc);
}

/* Runs the loop to its end and checks that no handle is left (the forwarder's included). */
static void scenario_run(scenario *s)
{
        cr_assert_eq(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
        cr_assert(!s->guard_fired, "scenario did not finish in time");
        cr_assert_eq(uv_loop_close(&s->loop), 0, "handles left open");
}

static double elapsed_ms(const scenario *s, const reply *r)
{
        return (double)(r->at_ns - s->start_ns) / 1e6;
}

Test(forward_live, answer_reaches_client_with_its_id)
{
        scenario s;
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_init(&s, modes, 1, false, 2000);
        s.expected = 1;
        send_query(&s, 0, 0x4242, "WWW.Example.com", false, false, 512);
        scenario_run(&s);

        reply *r = &s.r[0];
        cr_assert_eq(r->calls, 1);
        cr_assert_eq(vd_wire_get16(r->buf), 0x4242);
        cr_assert_eq(vd_wire_get16(r->buf + 2) & 0xF, VD_RCODE_NOERROR);
        cr_assert_eq(vd_wire_get16(r->buf + 6), 1);
        cr_assert_eq(vd_wire_get16(r->buf + 10), 0, "no OPT for a non-EDNS client");
        cr_assert_eq(memcmp(r->buf + 12, "\3WWW\7Example\3com", 17), 0);
        cr_assert_eq(r->buf[r->len - 1], 1, "the upstream's A record");
        cr_assert_eq(s.up[0].n_seen, 1);
        cr_assert_neq(s.up[0].seen_id[0], 0x4242, "client's ID leaked upstream");
}

Test(forward_live, upstream_query_is_rd_edns_with_client_do_and_random_ids)
{
        scenario s;
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_init(&s, modes, 1, false, 2000);
        s.expected = 3;
        send_query(&s, 0, 7, "a.example.com", true, true, 1232);
        send_query(&s, 1, 7, "b.example.com", false, false, 512);
        client_extra_flags = VD_FLAG_CD;
        send_query(&s, 2, 7, "c.example.com", true, false, 1232);
        client_extra_flags = 0;
        scenario_run(&s);

        fake_upstream *up = &s.up[0];
        cr_assert_eq(up->n_seen, 3);
        cr_assert_neq(up->seen_id[0], up->seen_id[1]);
        cr_assert_neq(up->seen_id[1], up->seen_id[2]);
        cr_assert_neq(up->seen_id[0], up->seen_id[2]);
        for (size_t i = 0; i < 3; i++) {
                const vd_query_info *q = &up->seen[i];
                cr_assert_neq(up->seen_id[i], 7);
                cr_assert(q->flags & VD_FLAG_RD);
                cr_assert(q->has_edns, "EDNS always sent upstream");
                cr_assert_eq(q->edns_udp_size, VD_UDP_PAYLOAD);
                cr_assert_eq(q->edns_version, 0);
        }
        /* Queries reach the upstream in the order sent; DO follows each client. */
        cr_assert(up->seen[0].edns_do);
        cr_assert(!up->seen[1].edns_do);
        cr_assert(!up->seen[2].edns_do);
        /* CD follows each client too (RFC 4035 §3.2.2) */
        cr_assert_not(up->seen[0].flags & VD_FLAG_CD);
        cr_assert(up->seen[2].flags & VD_FLAG_CD);
        for (int i = 0; i < 3; i++) {
                cr_assert_eq(s.r[i].calls, 1);
                cr_assert_eq(vd_wire_get16(s.r[i].buf), 7);
        }
        cr_assert_eq(vd_wire_get16(s.r[0].buf + 10), 1, "EDNS client gets our OPT");
        cr_assert_eq(vd_wire_get16(s.r[1].buf + 10), 0);
}

Test(forward_live, silent_upstream_servfail_after_budget)
{
        scenario s;
        const fake_mode modes[] = {FAKE_SILENT};
        scenario_init(&s, modes, 1, false, 300);
        s.expected = 1;
        s.linger_ms = 1200; /* let c-ares finish its own retries: done must not run again */
        send_query(&s, 0, 0x0BAD, "example.com", true, false, 1232);
        scenario_run(&s);

        reply *r = &s.r[0];
        cr_assert_eq(r->calls, 1);
        double ms = elapsed_ms(&s, r);
        cr_assert(ms >= 299.0 && ms <= 1300.0, "SERVFAIL after %.1f ms, budget 300", ms);
        cr_assert_eq(vd_wire_get16(r->buf), 0x0BAD);
        cr_assert_eq(vd_wire_get16(r->buf + 2) & 0xF, VD_RCODE_SERVFAIL);
        cr_assert_eq(vd_wire_get16(r->buf + 4), 1);
        cr_assert_eq(vd_wire_get16(r->buf + 10), 1, "our OPT for the EDNS client");
        cr_assert_geq(s.up[0].udp_queries, 2, "retried within the budget");
}

Test(forward_live, tc_answer_retried_over_tcp)
{
        scenario s;
        const fake_mode modes[] = {FAKE_TC};
        scenario_init(&s, modes, 1, true, 2000);
        s.expected = 1;
        send_query(&s, 0, 0x7C7C, "big.example.com", false, false, VD_TCP_MAX);
        scenario_run(&s);

        reply *r = &s.r[0];
        cr_assert_eq(r->calls, 1);
        cr_assert_eq(s.up[0].udp_queries, 1);
        cr_assert_eq(s.up[0].tcp_queries, 1);
        cr_assert_eq(vd_wire_get16(r->buf), 0x7C7C);
        cr_assert_eq(vd_wire_get16(r->buf + 2) & (VD_FLAG_TC | 0xF), 0);
        cr_assert_eq(vd_wire_get16(r->buf + 6), FAKE_TCP_RECORDS, "the full answer from TCP");
        cr_assert_eq(r->len, 12 + 17 + 4 + FAKE_TCP_RECORDS * 16);
}

Test(forward_live, large_answer_truncated_for_udp_client)
{
        scenario s;
        const fake_mode modes[] = {FAKE_TC};
        scenario_init(&s, modes, 1, true, 2000);
        s.expected = 1;
        send_query(&s, 0, 1, "big.example.com", false, false, 512);
        scenario_run(&s);
        reply *r = &s.r[0];
        cr_assert_eq(r->calls, 1);
        cr_assert(vd_wire_get16(r->buf + 2) & VD_FLAG_TC);
        cr_assert_eq(r->len, 12 + 17 + 4);
}

Test(forward_live, second_server_answers_when_first_is_silent)
{
        scenario s;
        const fake_mode modes[] = {FAKE_SILENT, FAKE_ANSWER};
        scenario_init(&s, modes, 2, false, 1500);
        s.expected = 2;
        send_query(&s, 0, 11, "one.example.com", false, false, 512);
        send_query(&s, 1, 12, "two.example.com", false, false, 512);
        scenario_run(&s);
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(s.r[i].calls, 1);
                cr_assert_eq(vd_wire_get16(s.r[i].buf), 11 + i);
                cr_assert_eq(vd_wire_get16(s.r[i].buf + 2) & 0xF, VD_RCODE_NOERROR,
                             "query %d got rcode %u", i, vd_wire_get16(s.r[i].buf + 2) & 0xF);
                cr_assert_eq(vd_wire_get16(s.r[i].buf + 6), 1);
        }
        /* Both servers are unmeasured: each query picks one at random; whichever went to the
         * silent one moved on to the other within the budget. */
        cr_assert_eq(s.up[1].n_seen, 2);
}

static void on_later(uv_timer_t *t)
{
        scenario *s = t->data;
        s->later_fn(s);
}

static void send_three_more(scenario *s)
{
        for (int i = 1; i < 4; i++)
                send_query(s, i, (unsigned)(i + 1), "b.example.com", false, false, 512);
        s->later_fn = finish;
        uv_timer_start(&s->later, on_later, 150, 0);
}

Test(forward_live, close_with_pending_queries)
{
        scenario s;
        const fake_mode modes[] = {FAKE_SILENT};
        scenario_init(&s, modes, 1, false, 200);
        s.expected = MAX_Q; /* never reached: the close ends the scenario */
        /* Query 0 is abandoned at its 200 ms budget while c-ares still retries it; queries
         * 1-3, sent at 150 ms, are still waiting when the forwarder closes at 300 ms. */
        send_query(&s, 0, 1, "a.example.com", false, false, 512);
        s.later_fn = send_three_more;
        uv_timer_start(&s.later, on_later, 150, 0);
        scenario_run(&s);
        cr_assert_eq(s.r[0].calls, 1);
        cr_assert_gt(s.r[0].len, 0, "query 0 got its SERVFAIL before the close");
        cr_assert_eq(vd_wire_get16(s.r[0].buf + 2) & 0xF, VD_RCODE_SERVFAIL);
        for (int i = 1; i < 4; i++) {
                cr_assert_eq(s.r[i].calls, 1, "query %d: %d calls", i, s.r[i].calls);
                cr_assert_eq(s.r[i].len, 0, "query %d: cancelled with len 0", i);
        }
}

Test(forward_live, close_from_inside_done)
{
        scenario s;
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_init(&s, modes, 1, false, 2000);
        s.close_in_reply = true; /* the first done() closes the forwarder */
        s.expected = 2;
        send_query(&s, 0, 1, "a.example.com", false, false, 512);
        send_query(&s, 1, 2, "b.example.com", false, false, 512);
        scenario_run(&s);
        cr_assert_eq(s.r[0].calls, 1);
        cr_assert_eq(s.r[1].calls, 1);
        /* Whichever done() ran first got the answer; the other was cancelled by the close. */
        cr_assert((s.r[0].len > 0) != (s.r[1].len > 0), "lens %zu and %zu", s.r[0].len, s.r[1].len);
}

static void count_calls(void *arg, int status, const uint8_t *answer, size_t len)
{
        (void)status;
        (void)answer;
        (void)len;
        (*(int *)arg)++;
}

Test(forward_live, no_upstream_is_enoent)
{
        uv_loop_t loop;
        cr_assert_eq(uv_loop_init(&loop), 0);
        vd_forward_options opt = {.servers = NULL, .n_servers = 0, .timeout_ms = 500};
        vd_forwarder *f = NULL;
        vd_error err;
        cr_assert_eq(vd_forwarder_new(&loop, &opt, &f, &err), 0, "%s", err.msg);
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, "example.com", VD_TYPE_A, false, false);
        int calls = 0;
        cr_assert_eq(vd_forwarder_resolve(f, &qi, count_calls, &calls), -ENOENT);
        vd_forwarder_close(f);
        cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
        cr_assert_eq(uv_loop_close(&loop), 0);
        cr_assert_eq(calls, 0);
}

Test(forward_live, ipv6_upstream)
{
        uv_loop_t probe;
        fake_upstream tmp;
        cr_assert_eq(uv_loop_init(&probe), 0);
        fake_upstream_init(&tmp, FAKE_ANSWER);
        bool v6 = fake_upstream_start(&tmp, &probe, false, "::1");
        if (v6)
                fake_upstream_stop(&tmp);
        uv_run(&probe, UV_RUN_DEFAULT);
        uv_loop_close(&probe);
        if (!v6)
                cr_skip_test("no ::1 here");

        scenario s;
        memset(&s, 0, sizeof(s));
        cr_assert_eq(uv_loop_init(&s.loop), 0);
        fake_upstream_init(&s.up[0], FAKE_ANSWER);
        cr_assert(fake_upstream_start(&s.up[0], &s.loop, false, "::1"));
        s.n_up = 1;
        vd_forward_options opt = {.servers = &s.up[0].addr, .n_servers = 1, .timeout_ms = 1000};
        vd_error err;
        cr_assert_eq(vd_forwarder_new(&s.loop, &opt, &s.fwd, &err), 0, "%s", err.msg);
        uv_timer_init(&s.loop, &s.guard);
        uv_timer_init(&s.loop, &s.linger);
        uv_timer_init(&s.loop, &s.later);
        s.guard.data = s.linger.data = s.later.data = &s;
        uv_timer_start(&s.guard, on_guard, 6000, 0);
        for (int i = 0; i < MAX_Q; i++)
                s.r[i].s = &s;
        s.expected = 1;
        send_query(&s, 0, 0x6666, "v6.example.com", false, false, 512);
        scenario_run(&s);
        cr_assert_eq(s.r[0].calls, 1);
        cr_assert_eq(vd_wire_get16(s.r[0].buf + 6), 1);
}

Test(forward_live, rejects_bad_options)
{
        uv_loop_t loop;
        cr_assert_eq(uv_loop_init(&loop), 0);
        vd_addr bad;
        memset(&bad, 0, sizeof(bad));
        bad.ss.ss_family = AF_UNIX;
        vd_forward_options opt = {.servers = &bad, .n_servers = 1, .timeout_ms = 500};
        vd_forwarder *f = NULL;
        vd_error err = {{0}};
        cr_assert_lt(vd_forwarder_new(&loop, &opt, &f, &err), 0);
        cr_assert_null(f);
        cr_assert_neq(err.msg[0], '\0');
        cr_assert_eq(uv_loop_close(&loop), 0);
}

/* With no file descriptor left c-ares cannot open a socket and fails inside ares_send: the
 * query is refused with an error, done() never runs, and nothing leaks or stays open. */
Test(forward_live, socket_failure_refuses_query)
{
        scenario s;
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_init(&s, modes, 1, false, 2000);
        int probe = dup(0);
        cr_assert_geq(probe, 0);
        close(probe);
        struct rlimit old, tight;
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
        tight = old;
        tight.rlim_cur = (rlim_t)probe; /* the lowest free descriptor is now out of range */
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);

        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, "example.com", VD_TYPE_A, false, false);
        s.in_query = true;
        int rc = vd_forwarder_resolve(s.fwd, &qi, on_upstream_reply, &s.r[0]);
        s.in_query = false;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
        cr_assert_lt(rc, 0, "query accepted without a socket");
        finish(&s);
        scenario_run(&s);
        cr_assert_eq(s.r[0].calls, 0);
        cr_assert_eq(s.up[0].udp_queries, 0);
}

/* ---- raw path (vd_forwarder_resolve) ------------------------------------------------- */

typedef struct raw_result {
        scenario *s;
        int calls;
        int status;
        size_t len;
        bool null_answer;
        uint64_t sent_ns, at_ns;
        uint8_t buf[512];
} raw_result;

static void on_raw(void *arg, int status, const uint8_t *answer, size_t len)
{
        raw_result *r = arg;
        scenario *s = r->s;
        cr_assert(!s->in_query, "done() called from inside vd_forwarder_resolve");
        r->calls++;
        r->status = status;
        r->len = len;
        r->null_answer = answer == NULL;
        r->at_ns = uv_hrtime();
        if (len > 0 && len <= sizeof(r->buf))
                memcpy(r->buf, answer, len);
        if (r->calls > 1)
                return;
        s->received++;
        if (s->received == s->expected && !s->finished)
                uv_timer_start(&s->linger, on_linger, s->linger_ms, 0);
}

/* Builds a client query for name and hands it to vd_forwarder_resolve; returns its code. */
static int send_raw(scenario *s, raw_result *r, unsigned id, const char *name)
{
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, id, name, VD_TYPE_A, true, false);
        r->s = s;
        r->sent_ns = uv_hrtime();
        s->in_query = true;
        int rc = vd_forwarder_resolve(s->fwd, &qi, on_raw, r);
        s->in_query = false;
        memset(&q, 0xAB, sizeof(q)); /* the forwarder must have copied what it needs */
        return rc;
}

static double raw_ms(const raw_result *r)
{
        return (double)(r->at_ns - r->sent_ns) / 1e6;
}

/* Live counters, or the last ones once the scenario has finished. */
static void counters(const scenario *s, vd_forward_counters *c)
{
        if (s->finished)
                *c = s->last;
        else
                vd_forwarder_counters_get(s->fwd, c);
}

/* REFUSED is never an answer (RFC 1034 §4.3.1): every server is tried, then the query fails
 * at once and the client gets SERVFAIL (or stale data, from the resolver). */
Test(forward_live, refused_from_every_server_fails_at_once)
{
        scenario s;
        raw_result raw = {0};
        const fake_mode modes[] = {FAKE_REFUSED, FAKE_REFUSED};
        scenario_init(&s, modes, 2, false, 2000);
        s.expected = 2;
        send_query(&s, 0, 99, "example.com", false, false, 512);
        cr_assert_eq(send_raw(&s, &raw, 98, "raw.example.com"), 0);
        scenario_run(&s);
        cr_assert_eq(s.r[0].calls, 1);
        cr_assert_eq(vd_wire_get16(s.r[0].buf), 99);
        cr_assert_eq(vd_wire_get16(s.r[0].buf + 2) & 0xF, VD_RCODE_SERVFAIL);
        cr_assert_lt(elapsed_ms(&s, &s.r[0]), 500.0, "REFUSED must not wait for a timeout");
        cr_assert_eq(raw.calls, 1);
        cr_assert_eq(raw.status, -ECONNREFUSED);
        cr_assert(raw.null_answer);
        cr_assert_lt(raw_ms(&raw), 500.0);
        cr_assert_eq(s.up[0].udp_queries, 2, "each server asked once per query");
        cr_assert_eq(s.up[1].udp_queries, 2);
        vd_forward_counters c;
        counters(&s, &c);
        cr_assert_eq(c.failures, 2);
        cr_assert_eq(c.servers_down, 0, "a server that refuses is alive");
}

Test(forward_live, refused_goes_to_the_next_server)
{
        enum { N = 32 };
        scenario s;
        static raw_result r[N];
        memset(r, 0, sizeof(r));
        const fake_mode modes[] = {FAKE_REFUSED, FAKE_ANSWER};
        scenario_init(&s, modes, 2, false, 2000);
        s.expected = N;
        for (int i = 0; i < N; i++) {
                char name[32];
                snprintf(name, sizeof(name), "r%d.example.com", i);
                cr_assert_eq(send_raw(&s, &r[i], 100u + (unsigned)i, name), 0);
        }
        scenario_run(&s);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(r[i].calls, 1);
                cr_assert_eq(r[i].status, 0, "query %d: %d", i, r[i].status);
                cr_assert_eq(r[i].buf[3] & 0xF, VD_RCODE_NOERROR, "query %d", i);
                cr_assert_lt(raw_ms(&r[i]), 500.0);
        }
        /* Servers are picked at random while both are unmeasured: the refusing one is asked
         * first by some of 32 queries (all but certainly), and each then moves on. */
        cr_assert_geq(s.up[0].udp_queries, 1, "the refusing server was never asked");
        cr_assert_eq(s.up[1].udp_queries, N);
}

Test(forward_raw, answer_has_the_clients_question_case)
{
        scenario s;
        raw_result r = {0};
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_init(&s, modes, 1, false, 2000);
        s.expected = 1;
        cr_assert_eq(send_raw(&s, &r, 0x1111, "MiXeD.Example.COM"), 0);
        scenario_run(&s);
        cr_assert_eq(r.calls, 1);
        cr_assert_eq(r.status, 0);
        cr_assert_eq(memcmp(r.buf + VD_HEADER_LEN, "\5MiXeD\7Example\3COM", 19), 0);
        cr_assert_eq(vd_wire_get16(r.buf + 6), 1, "the upstream's answer record");
        cr_assert_eq(vd_wire_get16(r.buf), s.up[0].seen_id[0], "the upstream's own message");
}

/* The answer is handed over as the server sent it, octet for octet: not parsed and written
 * again (c-ares 1.28 and later parse every answer; writing it back would compress this one's
 * owner name, and can make other answers longer than the server made them). */
Test(forward_raw, answer_is_the_datagram_as_received)
{
        scenario s;
        raw_result r = {0};
        const fake_mode modes[] = {FAKE_UNCOMPRESSED};
        scenario_init(&s, modes, 1, false, 2000);
        s.expected = 1;
        cr_assert_eq(send_raw(&s, &r, 0x2222, "whole.example.com"), 0);
        scenario_run(&s);
        cr_assert_eq(r.calls, 1);
        cr_assert_eq(r.status, 0);
        cr_assert_gt(s.up[0].last_udp_len, 0);
        cr_assert_eq(r.len, s.up[0].last_udp_len);
        cr_assert_eq(memcmp(r.buf + VD_HEADER_LEN + 19 + 4,
                            s.up[0].last_udp + VD_HEADER_LEN + 19 + 4,
                            r.len - VD_HEADER_LEN - 19 - 4),
                     0, "the records differ from what the server sent");
}

Test(forward_raw, silent_upstream_times_out_within_budget)
{
        scenario s;
        raw_result r = {0};
        const fake_mode modes[] = {FAKE_SILENT};
        scenario_init(&s, modes, 1, false, 300);
        s.expected = 1;
        cr_assert_eq(send_raw(&s, &r, 1, "example.com"), 0);
        scenario_run(&s);
        cr_assert_eq(r.calls, 1);
        cr_assert_eq(r.status, -ETIMEDOUT);
        cr_assert(r.null_answer);
        double ms = raw_ms(&r);
        cr_assert(ms >= 290.0 && ms < 700.0, "-ETIMEDOUT after %.1f ms, budget 300", ms);
        vd_forward_counters c;
        counters(&s, &c);
        cr_assert_geq(c.timeouts, 1);
        cr_assert_eq(c.failures, 1);
}

/* An upstream port with nobody listening: the kernel reports "connection refused" and the
 * query fails with -EIO at once instead of waiting for the budget. */
Test(forward_raw, unreachable_upstream_is_eio_at_once)
{
        scenario s;
        raw_result r = {0};
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_upstreams(&s, modes, 1, false);
        vd_addr gone = s.up[0].addr;
        fake_upstream_stop(&s.up[0]); /* its port is now closed */
        s.n_up = 0;
        scenario_forwarder(
            &s, (vd_forward_options){.servers = &gone, .n_servers = 1, .timeout_ms = 2000});
        s.expected = 1;
        cr_assert_eq(send_raw(&s, &r, 1, "example.com"), 0);
        scenario_run(&s);
        cr_assert_eq(r.calls, 1);
        cr_assert_eq(r.status, -EIO);
        cr_assert_lt(raw_ms(&r), 150.0, "refused after %.1f ms", raw_ms(&r));
}

Test(forward_raw, no_server_for_the_name_is_enoent)
{
        scenario s;
        raw_result r = {0};
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_upstreams(&s, modes, 1, false);
        vd_forward_rule rule = {.n_servers = 1};
        rule.servers[0] = s.up[0].addr;
        size_t len;
        cr_assert_eq(vd_name_from_text("corp.example", rule.domain, &len), 0);
        rule.domain_len = len;
        /* No default upstreams: only the rule's names can be forwarded. */
        scenario_forwarder(
            &s,
            (vd_forward_options){
                .rules = &rule, .n_rules = 1, .servers = NULL, .n_servers = 0, .timeout_ms = 1000});
        s.expected = 1;
        raw_result other = {0};
        cr_assert_eq(send_raw(&s, &other, 1, "www.example.org"), -ENOENT);
        cr_assert_eq(send_raw(&s, &r, 2, "git.CORP.example"), 0);
        scenario_run(&s);
        cr_assert_eq(other.calls, 0);
        cr_assert_eq(r.calls, 1);
        cr_assert_eq(r.status, 0);
}

static void close_now(scenario *s)
{
        finish(s);
}

Test(forward_raw, close_cancels_each_pending_query_once)
{
        scenario s;
        static raw_result r[4];
        memset(r, 0, sizeof(r));
        const fake_mode modes[] = {FAKE_SILENT, FAKE_ANSWER};
        scenario_upstreams(&s, modes, 2, false);
        /* Query 0 goes to the answering server, 1-3 to the silent one (rules). */
        vd_forward_rule rule = {.n_servers = 1};
        rule.servers[0] = s.up[0].addr;
        size_t len;
        cr_assert_eq(vd_name_from_text("silent.example", rule.domain, &len), 0);
        rule.domain_len = len;
        scenario_forwarder(&s, (vd_forward_options){.servers = &s.up[1].addr,
                                                    .n_servers = 1,
                                                    .rules = &rule,
                                                    .n_rules = 1,
                                                    .timeout_ms = 2000});
        s.expected = 100; /* never reached: the close ends it */
        cr_assert_eq(send_raw(&s, &r[0], 1, "answered.example"), 0);
        for (int i = 1; i < 4; i++)
                cr_assert_eq(send_raw(&s, &r[i], (unsigned)i + 1, "q.silent.example"), 0);
        s.later_fn = close_now;
        uv_timer_start(&s.later, on_later, 100, 0);
        scenario_run(&s);
        cr_assert_eq(r[0].calls, 1);
        cr_assert_eq(r[0].status, 0);
        for (int i = 1; i < 4; i++) {
                cr_assert_eq(r[i].calls, 1, "query %d: %d calls", i, r[i].calls);
                cr_assert_eq(r[i].status, -ECANCELED);
        }
}

/* ---- source ports (RFC 5452) --------------------------------------------------------- */

#define LOAD_QUERIES 200

static void run_load(unsigned ports_per_server, size_t *distinct_ports, int *answered)
{
        scenario s;
        static raw_result r[LOAD_QUERIES];
        memset(r, 0, sizeof(r));
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_upstreams(&s, modes, 1, false);
        scenario_forwarder(
            &s, (vd_forward_options){.timeout_ms = 2000, .ports_per_server = ports_per_server});
        s.expected = LOAD_QUERIES;
        for (int i = 0; i < LOAD_QUERIES; i++) {
                char name[64];
                snprintf(name, sizeof(name), "n%d.example.com", i);
                cr_assert_eq(send_raw(&s, &r[i], (unsigned)i, name), 0);
        }
        scenario_run(&s);
        *answered = 0;
        for (int i = 0; i < LOAD_QUERIES; i++)
                *answered += r[i].calls == 1 && r[i].status == 0;
        *distinct_ports = s.up[0].n_ports;
        cr_assert_geq(s.up[0].udp_queries, LOAD_QUERIES, "%d upstream queries for %d",
                      s.up[0].udp_queries, LOAD_QUERIES);
}

Test(forward_ports, at_least_16_source_ports_under_load)
{
        size_t ports;
        int answered;
        run_load(0, &ports, &answered);
        cr_assert_eq(answered, LOAD_QUERIES);
        cr_assert_geq(ports, 16, "only %zu distinct source ports over %d queries", ports,
                      LOAD_QUERIES);
}

Test(forward_ports, one_port_per_server_when_asked)
{
        size_t ports;
        int answered;
        run_load(1, &ports, &answered);
        cr_assert_eq(answered, LOAD_QUERIES);
        cr_assert_eq(ports, 1, "%zu ports with ports_per_server 1", ports);
}

/* ---- rules --------------------------------------------------------------------------- */

static void make_rule(vd_forward_rule *r, const char *domain, const fake_upstream *up)
{
        memset(r, 0, sizeof(*r));
        size_t len;
        cr_assert_eq(vd_name_from_text(domain, r->domain, &len), 0);
        r->domain_len = len;
        if (up == NULL) {
                r->use_default = true;
        } else {
                r->servers[0] = up->addr;
                r->n_servers = 1;
        }
}

/* Which upstream saw name (lower-cased text), -1 when none did, -2 when several did. */
static int who_saw(const scenario *s, const char *name)
{
        uint8_t wire[VD_NAME_MAX];
        size_t len;
        cr_assert_eq(vd_name_from_text(name, wire, &len), 0);
        int who = -1;
        for (size_t u = 0; u < s->n_up; u++)
                for (size_t i = 0; i < s->up[u].n_seen; i++)
                        if (s->up[u].seen[i].qname_len == len &&
                            memcmp(s->up[u].seen[i].qname_lower, wire, len) == 0)
                                who = who == -1 || who == (int)u ? (int)u : -2;
        return who;
}

static bool covers(const scenario *s, const char *name)
{
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, name, VD_TYPE_A, false, false);
        return vd_forwarder_rule_covers(s->fwd, &qi);
}

Test(forward_rules, most_specific_rule_wins_and_default_carves_out)
{
        scenario s;
        static raw_result r[8];
        memset(r, 0, sizeof(r));
        const fake_mode modes[] = {FAKE_ANSWER, FAKE_ANSWER, FAKE_ANSWER};
        scenario_upstreams(&s, modes, 3, false);
        vd_forward_rule rules[3];
        make_rule(&rules[0], "Example.COM", &s.up[1]);
        make_rule(&rules[1], "a.b.example.com", &s.up[2]);
        make_rule(&rules[2], "sys.example.com", NULL); /* back to the default upstreams */
        scenario_forwarder(&s, (vd_forward_options){.servers = &s.up[0].addr,
                                                    .n_servers = 1,
                                                    .rules = rules,
                                                    .n_rules = 3,
                                                    .timeout_ms = 2000});
        const char *names[] = {"www.example.com", "x.a.b.example.com", "a.b.example.com",
                               "b.EXAMPLE.com",   "notexample.com",    "q.sys.example.com",
                               "example.com",     "example.org"};
        const int expect[] = {1, 2, 2, 1, 0, 0, 1, 0};
        s.expected = 8;
        for (int i = 0; i < 8; i++)
                cr_assert_eq(send_raw(&s, &r[i], (unsigned)i, names[i]), 0);
        scenario_run(&s);
        for (int i = 0; i < 8; i++) {
                cr_assert_eq(r[i].status, 0, "%s: %d", names[i], r[i].status);
                char lower[64];
                size_t k = 0;
                for (; names[i][k] != '\0'; k++)
                        lower[k] =
                            (char)((names[i][k] >= 'A' && names[i][k] <= 'Z') ? names[i][k] + 32
                                                                              : names[i][k]);
                lower[k] = '\0';
                cr_assert_eq(who_saw(&s, lower), expect[i], "%s went to upstream %d, not %d",
                             names[i], who_saw(&s, lower), expect[i]);
        }
}

Test(forward_rules, rule_covers_only_explicit_rules)
{
        scenario s;
        const fake_mode modes[] = {FAKE_ANSWER, FAKE_ANSWER};
        scenario_upstreams(&s, modes, 2, false);
        vd_forward_rule rules[2];
        make_rule(&rules[0], "corp.example", &s.up[1]);
        make_rule(&rules[1], "public.corp.example", NULL);
        scenario_forwarder(&s, (vd_forward_options){.servers = &s.up[0].addr,
                                                    .n_servers = 1,
                                                    .rules = rules,
                                                    .n_rules = 2,
                                                    .timeout_ms = 1000});
        cr_assert(covers(&s, "corp.example"));
        cr_assert(covers(&s, "Db.Corp.Example"));
        cr_assert_not(covers(&s, "www.public.corp.example"), "use_default carve-out");
        cr_assert_not(covers(&s, "public.corp.example"));
        cr_assert_not(covers(&s, "xcorp.example"), "suffix match is label-wise");
        cr_assert_not(covers(&s, "example.com"));
        finish(&s);
        scenario_run(&s);
}

/* ---- max_qps ------------------------------------------------------------------------- */

/* 50/s: a burst of 5, then one token every 20 ms, never more than the burst. */
Test(forward_budget, burst_then_one_token_per_interval_on_a_fake_clock)
{
        vd_fwd_bucket b;
        vd_fwd_bucket_init(&b, 50, 1000);
        for (int i = 0; i < 5; i++)
                cr_assert(vd_fwd_bucket_take(&b, 50, 1000), "token %d of the burst", i);
        cr_assert_not(vd_fwd_bucket_take(&b, 50, 1000), "a sixth at once");
        cr_assert_not(vd_fwd_bucket_has(&b, 50, 1019), "a token back before 20 ms");
        cr_assert(vd_fwd_bucket_take(&b, 50, 1020), "a token back after 20 ms");
        cr_assert_not(vd_fwd_bucket_take(&b, 50, 1020));
        cr_assert(vd_fwd_bucket_take(&b, 50, 1040));
        /* A long idle time refills the burst, not more. */
        for (int i = 0; i < 5; i++)
                cr_assert(vd_fwd_bucket_take(&b, 50, 60000), "token %d after idling", i);
        cr_assert_not(vd_fwd_bucket_take(&b, 50, 60000));
        /* A clock that goes back takes nothing back. */
        cr_assert_not(vd_fwd_bucket_take(&b, 50, 59000));
        /* Below 10/s the burst is one token; 0 is no limit. */
        vd_fwd_bucket_init(&b, 5, 0);
        cr_assert(vd_fwd_bucket_take(&b, 5, 0));
        cr_assert_not(vd_fwd_bucket_take(&b, 5, 199));
        cr_assert(vd_fwd_bucket_take(&b, 5, 200));
        vd_fwd_bucket_init(&b, 0, 0);
        for (int i = 0; i < 1000; i++)
                cr_assert(vd_fwd_bucket_take(&b, 0, 0));
}

Test(forward_budget, over_max_qps_is_ebusy_without_a_callback)
{
        scenario s;
        static raw_result r[2];
        memset(r, 0, sizeof(r));
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_upstreams(&s, modes, 1, false);
        /* 5/s: a burst of one, the next token 200 ms later. */
        scenario_forwarder(&s, (vd_forward_options){.timeout_ms = 1000, .max_qps = 5});
        s.expected = 1;
        cr_assert_eq(send_raw(&s, &r[0], 1, "burst.example.com"), 0);
        cr_assert_eq(send_raw(&s, &r[1], 2, "burst.example.com"), -EBUSY);
        vd_forward_counters c;
        counters(&s, &c);
        cr_assert_eq(c.budget_refused, 1);
        cr_assert_eq(c.upstream_queries, 1);
        scenario_run(&s);
        cr_assert_eq(r[0].calls, 1);
        cr_assert_eq(r[0].status, 0);
        cr_assert_eq(r[1].calls, 0, "a refused query gets no callback");
        cr_assert_eq(s.up[0].udp_queries, 1);
}

/* Two threads take tokens from one process-wide budget at the same fake times: together they
 * get exactly the budget, never each its own. */
typedef struct budget_user {
        vd_upstream_budget *budget;
        const vd_addr *addr;
        uint64_t now_ms;
        int took;
} budget_user;

static void *budget_thread(void *arg)
{
        budget_user *u = arg;
        vd_upstream_budget_slot *slot = vd_upstream_budget_slot_for(u->budget, u->addr);
        cr_assert_not_null(slot);
        for (int i = 0; i < 2000; i++)
                if (vd_upstream_budget_take(slot, u->now_ms))
                        u->took++;
        return NULL;
}

Test(forward_budget, one_budget_shared_by_two_threads)
{
        vd_upstream_budget *b = NULL;
        cr_assert_eq(vd_upstream_budget_new(100, &b), 0); /* a burst of 10, 1 token per 10 ms */
        vd_addr a1, a2;
        memset(&a1, 0, sizeof(a1));
        struct sockaddr_in *sin = (struct sockaddr_in *)&a1.ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(53);
        sin->sin_addr.s_addr = htonl(0x7F000001);
        a1.len = sizeof(*sin);
        a2 = a1;
        ((struct sockaddr_in *)&a2.ss)->sin_port = htons(54);
        cr_assert_eq(vd_upstream_budget_slot_for(b, &a1), vd_upstream_budget_slot_for(b, &a1));
        cr_assert_neq(vd_upstream_budget_slot_for(b, &a1), vd_upstream_budget_slot_for(b, &a2));

        const uint64_t times[] = {5000, 5000, 5050, 60000};
        const int expect[] = {10, 0, 5, 10};
        for (size_t t = 0; t < sizeof(times) / sizeof(times[0]); t++) {
                budget_user u[2] = {{b, &a1, times[t], 0}, {b, &a1, times[t], 0}};
                pthread_t th[2];
                for (int i = 0; i < 2; i++)
                        cr_assert_eq(pthread_create(&th[i], NULL, budget_thread, &u[i]), 0);
                for (int i = 0; i < 2; i++)
                        cr_assert_eq(pthread_join(th[i], NULL), 0);
                cr_assert_eq(u[0].took + u[1].took, expect[t], "at %llu ms: %d + %d tokens",
                             (unsigned long long)times[t], u[0].took, u[1].took);
        }
        /* The other address has its own bucket. */
        vd_upstream_budget_slot *other = vd_upstream_budget_slot_for(b, &a2);
        for (int i = 0; i < 10; i++)
                cr_assert(vd_upstream_budget_take(other, 60000));
        cr_assert_not(vd_upstream_budget_take(other, 60000));
        vd_upstream_budget_free(b);
}

/* Two forwarders on two loops (two workers) with one budget: what one sends, the other cannot;
 * without the shared budget each would have its own burst. */
Test(forward_budget, two_forwarders_on_two_loops_share_the_budget)
{
        scenario s;
        static raw_result r[3];
        memset(r, 0, sizeof(r));
        vd_upstream_budget *b = NULL;
        cr_assert_eq(vd_upstream_budget_new(5, &b), 0); /* a burst of one */
        const fake_mode modes[] = {FAKE_ANSWER};
        scenario_upstreams(&s, modes, 1, false);
        scenario_forwarder(&s, (vd_forward_options){.timeout_ms = 1000, .budget = b});

        uv_loop_t loop2;
        cr_assert_eq(uv_loop_init(&loop2), 0);
        vd_forward_options opt = {.servers = &s.up[0].addr,
                                  .n_servers = 1,
                                  .timeout_ms = 1000,
                                  .budget = b,
                                  .max_qps = 1000};
        vd_forwarder *f2 = NULL;
        vd_error err;
        cr_assert_eq(vd_forwarder_new(&loop2, &opt, &f2, &err), 0, "%s", err.msg);

        s.expected = 1;
        cr_assert_eq(send_raw(&s, &r[0], 1, "first.example.com"), 0);
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 2, "second.example.com", VD_TYPE_A, false, false);
        cr_assert_eq(vd_forwarder_resolve(f2, &qi, on_raw, &r[1]), -EBUSY,
                     "the other worker's forwarder got a token of its own");
        cr_assert_eq(send_raw(&s, &r[2], 3, "third.example.com"), -EBUSY);
        vd_forward_counters c;
        vd_forwarder_counters_get(f2, &c);
        cr_assert_eq(c.budget_refused, 1);
        cr_assert_eq(c.upstream_queries, 0);
        vd_forwarder_close(f2);
        cr_assert_eq(uv_run(&loop2, UV_RUN_DEFAULT), 0);
        cr_assert_eq(uv_loop_close(&loop2), 0);

        scenario_run(&s);
        cr_assert_eq(r[0].calls, 1);
        cr_assert_eq(r[0].status, 0);
        cr_assert_eq(r[1].calls + r[2].calls, 0, "a refused query gets no callback");
        cr_assert_eq(s.up[0].udp_queries, 1);
        vd_upstream_budget_free(b);
}

Test(forward_budget, server_over_budget_is_skipped_for_another)
{
        scenario s;
        static raw_result r[3];
        memset(r, 0, sizeof(r));
        const fake_mode modes[] = {FAKE_ANSWER, FAKE_ANSWER};
        scenario_upstreams(&s, modes, 2, false);
        scenario_forwarder(&s,
                           (vd_forward_options){.timeout_ms = 1000, .max_qps = 5}); /* burst 1 */
        s.expected = 2;
        cr_assert_eq(send_raw(&s, &r[0], 1, "a.example.com"), 0);
        cr_assert_eq(send_raw(&s, &r[1], 2, "b.example.com"), 0);
        cr_assert_eq(send_raw(&s, &r[2], 3, "c.example.com"), -EBUSY);
        scenario_run(&s);
        cr_assert_eq(s.up[0].udp_queries, 1);
        cr_assert_eq(s.up[1].udp_queries, 1);
}

/* ---- 0x20 ---------------------------------------------------------------------------- */

#define LONG_NAME "AbcdefghijklmnopqrstuvwxyZ.ExamplE.com"

Test(forward_0x20, mixed_case_upstream_and_wrong_case_answer_ignored)
{
        scenario s;
        raw_result raw = {0};
        const fake_mode modes[] = {FAKE_WRONG_CASE_FIRST};
        scenario_upstreams(&s, modes, 1, false);
        scenario_forwarder(&s, (vd_forward_options){.timeout_ms = 1500, .use_0x20 = true});
        s.expected = 2;
        send_query(&s, 0, 0x2020, LONG_NAME, false, false, 512);
        cr_assert_eq(send_raw(&s, &raw, 0x3030, LONG_NAME), 0);
        scenario_run(&s);

        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, LONG_NAME, VD_TYPE_A, false, false);
        fake_upstream *up = &s.up[0];
        cr_assert_eq(up->n_seen, 3, "two queries and one resend after the spoof-like answer");
        for (size_t i = 0; i < up->n_seen; i++) {
                const uint8_t *sent = up->seen_name[i];
                cr_assert_eq(memcmp(up->seen[i].qname_lower, qi.qname_lower, qi.qname_len), 0);
                cr_assert_neq(memcmp(sent, qi.qname_lower, qi.qname_len), 0, "sent all lower");
                cr_assert_neq(memcmp(sent, qi.qname, qi.qname_len), 0, "sent the client's case");
        }
        cr_assert_neq(memcmp(up->seen_name[0], up->seen_name[1], qi.qname_len), 0,
                      "each query gets its own case");

        /* The relay client: the right answer, with its own spelling of the question. */
        reply *r = &s.r[0];
        cr_assert_eq(r->calls, 1);
        cr_assert_eq(vd_wire_get16(r->buf), 0x2020);
        cr_assert_eq(vd_wire_get16(r->buf + 6), 1);
        cr_assert_eq(memcmp(r->buf + VD_HEADER_LEN, qi.qname, qi.qname_len), 0);
        cr_assert_eq(r->buf[r->len - 1], 1, "the wrong-case answer was used");
        /* The raw client too. */
        cr_assert_eq(raw.calls, 1);
        cr_assert_eq(raw.status, 0);
        cr_assert_eq(memcmp(raw.buf + VD_HEADER_LEN, qi.qname, qi.qname_len), 0);
        cr_assert_eq(raw.buf[raw.len - 1 - 11], 1, "A record before the OPT");

        vd_forward_counters c;
        counters(&s, &c);
        cr_assert_eq(c.mismatches, 1);
        cr_assert_eq(c.upstream_queries, 3);
}

Test(forward_0x20, off_sends_the_clients_case_and_any_case_is_accepted)
{
        scenario s;
        const fake_mode modes[] = {FAKE_WRONG_CASE_FIRST};
        scenario_upstreams(&s, modes, 1, false);
        scenario_forwarder(&s, (vd_forward_options){.timeout_ms = 1500});
        s.expected = 1;
        send_query(&s, 0, 0x2121, LONG_NAME, false, false, 512);
        scenario_run(&s);

        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, LONG_NAME, VD_TYPE_A, false, false);
        cr_assert_eq(s.up[0].n_seen, 1);
        cr_assert_eq(memcmp(s.up[0].seen_name[0], qi.qname, qi.qname_len), 0,
                     "without 0x20 the client's spelling goes upstream");
        reply *r = &s.r[0];
        cr_assert_eq(r->calls, 1);
        cr_assert_eq(r->buf[r->len - 1], FAKE_WRONG_CASE_OCTET, "case is not checked without 0x20");
        cr_assert_eq(memcmp(r->buf + VD_HEADER_LEN, qi.qname, qi.qname_len), 0);
        vd_forward_counters c;
        counters(&s, &c);
        cr_assert_eq(c.mismatches, 0);
}

/* ---- health and choice: pure logic on a fake clock ----------------------------------- */

Test(forward_health, failing_then_dead_probed_with_doubling_backoff_and_back)
{
        vd_fwd_health h;
        vd_fwd_health_init(&h);
        cr_assert_not(vd_fwd_health_failing(&h));
        cr_assert_eq(vd_fwd_health_try_ms(&h), VD_FWD_TRY_MIN_MS, "unmeasured: the minimum");
        vd_fwd_health_answered(&h, 100000); /* 100 ms */
        cr_assert_eq(vd_fwd_health_try_ms(&h), 300, "3 × RTT");
        vd_fwd_health_answered(&h, 900000);
        cr_assert_eq(vd_fwd_health_try_ms(&h), 600, "smoothed 200 ms");

        /* Three failures in a row: failing at once, dead after the third. */
        vd_fwd_health_failed(&h, false, 0);
        cr_assert(vd_fwd_health_failing(&h));
        cr_assert_not(h.dead);
        cr_assert_not(vd_fwd_health_probe_due(&h, 999));
        cr_assert(vd_fwd_health_probe_due(&h, 1000), "a failing server is probed after 1 s");
        vd_fwd_health_failed(&h, false, 10);
        cr_assert_not(h.dead);
        vd_fwd_health_failed(&h, false, 20);
        cr_assert(h.dead);
        cr_assert_not(vd_fwd_health_probe_due(&h, 1019));
        cr_assert(vd_fwd_health_probe_due(&h, 1020));

        /* One probe per backoff; a lost probe doubles it (1 s, 2 s, 4 s, ... 60 s). */
        vd_fwd_health_probe_sent(&h, 1020);
        cr_assert_not(vd_fwd_health_probe_due(&h, 5000), "a probe is in flight");
        vd_fwd_health_failed(&h, true, 1220);
        cr_assert_not(vd_fwd_health_probe_due(&h, 3219));
        cr_assert(vd_fwd_health_probe_due(&h, 3220));
        uint64_t now = 3220;
        for (int i = 0; i < 10; i++) {
                vd_fwd_health_probe_sent(&h, now);
                vd_fwd_health_failed(&h, true, now);
                now = h.probe_at_ms;
        }
        cr_assert_eq(h.backoff_ms, VD_FWD_BACKOFF_MAX_MS);
        cr_assert(h.dead);

        /* A cancelled probe tells nothing: the server stays dead, a new probe may go. */
        vd_fwd_health_probe_sent(&h, now);
        vd_fwd_health_probe_gone(&h);
        cr_assert(h.dead);
        cr_assert(vd_fwd_health_probe_due(&h, now + VD_FWD_BACKOFF_MAX_MS));

        /* An answer brings it back, with the shortest backoff again. */
        vd_fwd_health_answered(&h, 1000);
        cr_assert_not(vd_fwd_health_failing(&h));
        cr_assert_not(vd_fwd_health_probe_due(&h, UINT64_MAX));
        cr_assert_eq(h.backoff_ms, VD_FWD_BACKOFF_MIN_MS);
}

static vd_fwd_health measured(uint32_t rtt_us)
{
        vd_fwd_health h;
        vd_fwd_health_init(&h);
        vd_fwd_health_answered(&h, rtt_us);
        return h;
}

Test(forward_health, choice_prefers_alive_healthy_untried_fast_servers)
{
        vd_fwd_health fast = measured(1000), slow = measured(80000), dead = measured(500);
        vd_fwd_health failing = measured(500), unknown;
        vd_fwd_health_init(&unknown);
        for (int i = 0; i < 3; i++)
                vd_fwd_health_failed(&dead, false, 0);
        vd_fwd_health_failed(&failing, false, 0);
        cr_assert(dead.dead);
        cr_assert(!failing.dead && vd_fwd_health_failing(&failing));

        vd_fwd_candidate c[4] = {
            {.health = &dead, .usable = true},
            {.health = &failing, .usable = true},
            {.health = &slow, .usable = true},
            {.health = &fast, .usable = true},
        };
        for (uint16_t r = 0; r < 8; r++)
                cr_assert_eq(vd_fwd_choose(c, 4, false, r), 3, "the fast healthy server");
        c[3].usable = false; /* over its budget, say */
        cr_assert_eq(vd_fwd_choose(c, 4, false, 0), 2, "a slow healthy server beats a failing one");
        c[2].usable = false;
        cr_assert_eq(vd_fwd_choose(c, 4, false, 0), 1, "failing before dead");
        c[1].usable = false;
        cr_assert_eq(vd_fwd_choose(c, 4, false, 0), 0, "a dead server when nothing else is left");
        c[0].usable = false;
        cr_assert_eq(vd_fwd_choose(c, 4, false, 0), -1);

        /* Fewer sends of this query first, then RTT; unmeasured servers go first. */
        vd_fwd_candidate d[3] = {
            {.health = &slow, .usable = true, .tries = 1},
            {.health = &fast, .usable = true},
            {.health = &unknown, .usable = true, .tries = 1},
        };
        cr_assert_eq(vd_fwd_choose(d, 3, false, 0), 1);
        d[1].tries = 2;
        cr_assert_eq(vd_fwd_choose(d, 3, false, 0), 2);
}

Test(forward_health, random_among_close_servers_only)
{
        vd_fwd_health a = measured(10000), b = measured(14000), far = measured(40000);
        vd_fwd_candidate c[3] = {
            {.health = &a, .usable = true},
            {.health = &b, .usable = true},
            {.health = &far, .usable = true},
        };
        bool seen[3] = {false, false, false};
        for (uint16_t r = 0; r < 16; r++)
                seen[vd_fwd_choose(c, 3, false, r)] = true;
        cr_assert(seen[0] && seen[1], "both servers within 1.5 × best + 5 ms");
        cr_assert_not(seen[2], "a server 4 times slower is not picked at random");
        for (uint16_t r = 0; r < 16; r++)
                seen[vd_fwd_choose(c, 3, true, r)] = true;
        cr_assert(seen[2], "exploring picks any RTT");
}

Test(forward_live, wrong_id_answers_are_dropped_and_counted)
{
        scenario s;
        const fake_mode modes[] = {FAKE_WRONG_ID_FIRST};
        scenario_init(&s, modes, 1, false, 2000);
        s.expected = 3;
        send_query(&s, 0, 11, "a.example.com", false, false, 512);
        send_query(&s, 1, 12, "b.example.com", false, false, 512);
        send_query(&s, 2, 13, "c.example.com", false, false, 512);
        scenario_run(&s);
        for (int i = 0; i < 3; i++) {
                cr_assert_eq(s.r[i].calls, 1);
                cr_assert_eq(vd_wire_get16(s.r[i].buf), 11 + i, "the client's own ID");
                cr_assert_eq(s.r[i].buf[3] & 0xF, 0, "the real answer, not SERVFAIL");
        }
        vd_forward_counters c;
        counters(&s, &c);
        cr_assert_eq(c.mismatches, 3, "each spoofed datagram counted once");
}
