/* test_cache.c — the answer cache: what of an upstream answer is kept (the question's chain,
 * the SOA of a negative answer), how long (TTL clamps, RFC 2308 negative TTLs, SERVFAIL), how
 * it is served (countdown, client ID and case, EDNS, TC), the LRU bound, and hostile input.
 * Upstream answers are built with ldns or by hand; responses are parsed back with ldns. */
#include <criterion/criterion.h>
#include <ldns/ldns.h>
#include <string.h>
#include <uv.h>

#include "vpcdns/cache.h"

#include "support/client.h"

#define T0 1000000u /* a store time, ms */

static vd_cache_options opts(void)
{
        vd_cache_options o;
        vd_cache_options_default(&o);
        return o;
}

static vd_cache *new_cache(const vd_cache_options *o)
{
        vd_cache *c = NULL;
        cr_assert_eq(vd_cache_new(o, &c), 0);
        return c;
}

/* Writes a presentation name ("Www.Example.com") as an uncompressed wire name, keeping case. */
static size_t put_wire_name(uint8_t *w, const char *text)
{
        size_t n = 0;
        while (*text != '\0') {
                const char *dot = strchr(text, '.');
                size_t lab = dot ? (size_t)(dot - text) : strlen(text);
                w[n] = (uint8_t)lab;
                memcpy(w + n + 1, text, lab);
                n += 1 + lab;
                if (dot == NULL)
                        break;
                text = dot + 1;
        }
        w[n++] = 0;
        return n;
}

/* A client query (support/client.h) in a packet buffer of its own, small enough for a
 * thousand of them; qi points into it. */
struct client {
        uint8_t pkt[512];
        vd_query_info qi;
};

static void client_query_in(struct client *cl, uint16_t id, const char *name, uint16_t type,
                            bool edns, bool dnssec_ok)
{
        dns_msg m;
        client_query(&m, &cl->qi, id, name, type, edns, dnssec_ok);
        cr_assert_leq(m.n, sizeof(cl->pkt));
        memset(cl->pkt, 0, sizeof(cl->pkt));
        memcpy(cl->pkt, m.b, m.n);
        cr_assert_eq(vd_wire_parse_query(cl->pkt, m.n, &cl->qi), VD_PARSE_OK);
}

/* An upstream answer built with ldns from record texts (NULL-terminated lists, may be NULL). */
static size_t upstream(uint8_t *out, size_t cap, const char *qname, uint16_t qtype, uint8_t rcode,
                       const char *const *an, const char *const *ns, const char *const *ar)
{
        ldns_pkt *pkt = NULL;
        cr_assert_eq(
            ldns_pkt_query_new_frm_str(&pkt, qname, (ldns_rr_type)qtype, LDNS_RR_CLASS_IN, LDNS_RD),
            LDNS_STATUS_OK);
        ldns_pkt_set_id(pkt, 0x4242);
        ldns_pkt_set_qr(pkt, true);
        ldns_pkt_set_ra(pkt, true);
        ldns_pkt_set_rcode(pkt, rcode);
        const char *const *lists[3] = {an, ns, ar};
        const ldns_pkt_section sections[3] = {LDNS_SECTION_ANSWER, LDNS_SECTION_AUTHORITY,
                                              LDNS_SECTION_ADDITIONAL};
        for (int s = 0; s < 3; s++) {
                for (size_t i = 0; lists[s] != NULL && lists[s][i] != NULL; i++) {
                        ldns_rr *rr = NULL;
                        cr_assert_eq(ldns_rr_new_frm_str(&rr, lists[s][i], 3600, NULL, NULL),
                                     LDNS_STATUS_OK, "%s", lists[s][i]);
                        cr_assert(ldns_pkt_push_rr(pkt, sections[s], rr));
                }
        }
        uint8_t *wire = NULL;
        size_t size = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, pkt, &size), LDNS_STATUS_OK);
        cr_assert_leq(size, cap);
        memcpy(out, wire, size);
        free(wire);
        ldns_pkt_free(pkt);
        return size;
}

static ldns_pkt *parse(const uint8_t *buf, size_t len)
{
        ldns_pkt *pkt = NULL;
        cr_assert_gt(len, 0, "expected a cache hit");
        cr_assert_eq(ldns_wire2pkt(&pkt, buf, len), LDNS_STATUS_OK);
        return pkt;
}

/* Record i of a section as ldns text without the trailing newline. */
static char *rr_text(ldns_rr_list *list, size_t i)
{
        char *s = ldns_rr2str(ldns_rr_list_rr(list, i));
        size_t n = strlen(s);
        if (n > 0 && s[n - 1] == '\n')
                s[n - 1] = '\0';
        return s;
}

static void assert_rr(ldns_rr_list *list, size_t i, const char *want)
{
        cr_assert_lt(i, ldns_rr_list_rr_count(list));
        char *got = rr_text(list, i);
        cr_assert_str_eq(got, want);
        free(got);
}

static const char *const A_WWW[] = {"www.example.com. 300 IN A 192.0.2.1", NULL};

Test(cache, positive_answer_counts_down_and_expires)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 7, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);

        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)), 0);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);

        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        assert_rr(ldns_pkt_answer(p), 0, "www.example.com.\t300\tIN\tA\t192.0.2.1");
        ldns_pkt_free(p);

        p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 10999, 512, out, sizeof(out)));
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), 290,
                     "10.999 s elapsed → 10 s off");
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        cr_assert(ldns_pkt_qr(p) && ldns_pkt_ra(p) && ldns_pkt_rd(p));
        cr_assert_not(ldns_pkt_aa(p));
        ldns_pkt_free(p);

        p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 299999, 512, out, sizeof(out)));
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), 1);
        ldns_pkt_free(p);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 300000, 512, out, sizeof(out)), 0,
                     "expired after its TTL");

        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.hits, 3);
        cr_assert_eq(k.misses, 2);
        cr_assert_eq(k.stores, 1);
        cr_assert_eq(k.entries, 1, "an expired entry stays until evicted or replaced");
        vd_cache_free(c);
}

Test(cache, only_the_cname_chain_is_kept)
{
        static const char *const an[] = {
            "www.example.com. 600 IN CNAME web.example.net.",
            "other.example.org. 600 IN A 198.51.100.66", /* not on the chain */
            "web.example.net. 120 IN CNAME edge.cdn.test.",
            "www.example.net. 120 IN A 198.51.100.99", /* a look-alike name: off chain */
            "edge.cdn.test. 60 IN A 192.0.2.10",
            "edge.cdn.test. 60 IN A 192.0.2.11",
            "edge.cdn.test. 60 IN AAAA 2001:db8::1", /* wrong type */
            NULL};
        static const char *const ns[] = {"cdn.test. 3600 IN NS ns1.evil.test.", NULL};
        static const char *const ar[] = {"ns1.evil.test. 3600 IN A 203.0.113.1", NULL};
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[2048], out[1232];
        client_query_in(&cl, 1, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, an, ns, ar);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);

        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        ldns_rr_list *a = ldns_pkt_answer(p);
        cr_assert_eq(ldns_rr_list_rr_count(a), 4);
        assert_rr(a, 0, "www.example.com.\t60\tIN\tCNAME\tweb.example.net.");
        assert_rr(a, 1, "web.example.net.\t60\tIN\tCNAME\tedge.cdn.test.");
        assert_rr(a, 2, "edge.cdn.test.\t60\tIN\tA\t192.0.2.10");
        assert_rr(a, 3, "edge.cdn.test.\t60\tIN\tA\t192.0.2.11");
        cr_assert_eq(ldns_pkt_nscount(p), 0, "authority NS dropped");
        cr_assert_eq(ldns_pkt_arcount(p), 0, "additional glue dropped");
        ldns_pkt_free(p);

        /* The glue is not an answer for its own name either. */
        client_query_in(&cl, 2, "ns1.evil.test", VD_TYPE_A, false, false);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)), 0);
        vd_cache_free(c);
}

Test(cache, additional_section_and_opt_are_dropped)
{
        static const char *const ar[] = {"www.example.com. 300 IN AAAA 2001:db8::5",
                                         "x.example.com. 300 IN A 192.0.2.77", NULL};
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 1, "www.example.com", VD_TYPE_A, true, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, ar);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 1232, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        cr_assert_eq(ldns_pkt_arcount(p), 0, "only our OPT (ldns keeps it apart)");
        cr_assert(ldns_pkt_edns(p));
        ldns_pkt_free(p);
        vd_cache_free(c);
}

static const char *const SOA_EXAMPLE[] = {
    "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 900 1209600 300",
    NULL};

Test(cache, nxdomain_negative_ttl_is_soa_minimum_clamped)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 9, "nope.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN,
                            NULL, SOA_EXAMPLE, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 1000, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        cr_assert_eq(ldns_pkt_ancount(p), 0);
        assert_rr(ldns_pkt_authority(p), 0,
                  "example.com.\t299\tIN\tSOA\tns1.example.com. hostmaster.example.com. 1 7200 "
                  "900 1209600 300");
        ldns_pkt_free(p);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 300000, 512, out, sizeof(out)), 0,
                     "negative TTL min(SOA TTL 3600, MINIMUM 300)");
        vd_cache_free(c);

        o.max_neg_ttl = 60;
        c = new_cache(&o);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cr_assert_gt(vd_cache_lookup(c, &cl.qi, T0 + 59999, 512, out, sizeof(out)), 0);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 60000, 512, out, sizeof(out)), 0,
                     "clamped by max_neg_ttl");
        vd_cache_free(c);

        /* SOA TTL below MINIMUM wins */
        static const char *const soa_low[] = {
            "example.com. 30 IN SOA ns1.example.com. h.example.com. 1 7200 900 1209600 300", NULL};
        o = opts();
        c = new_cache(&o);
        n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL,
                     soa_low, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cr_assert_gt(vd_cache_lookup(c, &cl.qi, T0 + 29999, 512, out, sizeof(out)), 0);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 30000, 512, out, sizeof(out)), 0);
        vd_cache_free(c);
}

Test(cache, nodata_is_a_negative_entry)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 9, "www.example.com", VD_TYPE_AAAA, false, false);
        static const char *const an[] = {"www.example.com. 300 IN A 192.0.2.1", NULL};
        size_t n =
            upstream(up, sizeof(up), "www.example.com.", VD_TYPE_AAAA, 0, an, SOA_EXAMPLE, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        cr_assert_eq(ldns_pkt_ancount(p), 0, "the A record is not an AAAA answer");
        cr_assert_eq(ldns_pkt_nscount(p), 1);
        cr_assert_eq(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), LDNS_RR_TYPE_SOA);
        cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), 300);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, negative_without_usable_soa_is_not_stored)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 9, "nope.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN,
                            NULL, NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, 0, NULL, NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0, "NODATA without SOA");
        /* an SOA of a zone the name is not in */
        static const char *const other[] = {
            "evil.test. 3600 IN SOA ns.evil.test. h.evil.test. 1 2 3 4 86400", NULL};
        n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL,
                     other, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        /* a CNAME whose target is not answered, without SOA: an incomplete chain */
        static const char *const an[] = {"nope.example.com. 300 IN CNAME x.example.net.", NULL};
        n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)), 0);
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.stores, 0);
        cr_assert_eq(k.entries, 0);
        vd_cache_free(c);
}

Test(cache, servfail_is_kept_servfail_ttl_seconds)
{
        vd_cache_options o = opts();
        o.servfail_ttl = 5;
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 3, "broken.example.com", VD_TYPE_A, true, false);
        size_t n = upstream(up, sizeof(up), "broken.example.com.", VD_TYPE_A, LDNS_RCODE_SERVFAIL,
                            NULL, SOA_EXAMPLE, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 4999, 1232, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
        cr_assert_eq(ldns_pkt_ancount(p) + ldns_pkt_nscount(p), 0);
        ldns_pkt_free(p);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 5000, 1232, out, sizeof(out)), 0);
        vd_cache_free(c);

        o.servfail_ttl = 0;
        c = new_cache(&o);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0, "servfail_ttl 0: never kept");
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0, 1232, out, sizeof(out)), 0);
        vd_cache_free(c);
}

Test(cache, refused_formerr_tc_and_any_are_not_stored)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 3, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, LDNS_RCODE_REFUSED, NULL,
                            NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, LDNS_RCODE_FORMERR, NULL, NULL,
                     NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        up[2] |= VD_FLAG_TC >> 8;
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0, "TC answers are not stored");
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)), 0);

        client_query_in(&cl, 3, "www.example.com", VD_TYPE_ANY, false, false);
        n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_ANY, 0, A_WWW, NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0, "ANY is never cached");
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.stores, 0);
        vd_cache_free(c);
}

static uint32_t stored_ttl(const vd_cache_options *o, const char *record)
{
        vd_cache *c = new_cache(o);
        struct client cl;
        uint8_t up[1024], out[1232];
        const char *an[] = {record, NULL};
        client_query_in(&cl, 3, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        uint32_t ttl = ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0));
        ldns_pkt_free(p);
        vd_cache_free(c);
        return ttl;
}

Test(cache, min_and_max_ttl_clamps)
{
        vd_cache_options o = opts();
        o.min_ttl = 60;
        o.max_ttl = 3600;
        cr_assert_eq(stored_ttl(&o, "www.example.com. 5 IN A 192.0.2.1"), 60);
        cr_assert_eq(stored_ttl(&o, "www.example.com. 0 IN A 192.0.2.1"), 60);
        cr_assert_eq(stored_ttl(&o, "www.example.com. 999999 IN A 192.0.2.1"), 3600);
        cr_assert_eq(stored_ttl(&o, "www.example.com. 1234 IN A 192.0.2.1"), 1234);
        cr_assert_eq(stored_ttl(&o, "www.example.com. 2147483648 IN A 192.0.2.1"), 60,
                     "RFC 2181 §8: TTLs with the top bit set are 0");

        /* the smallest TTL of the kept records counts */
        o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        static const char *const an[] = {"www.example.com. 900 IN A 192.0.2.1",
                                         "www.example.com. 100 IN A 192.0.2.2", NULL};
        client_query_in(&cl, 3, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 100000, 512, out, sizeof(out)), 0);

        /* TTL 0 with no min_ttl: not stored */
        static const char *const zero[] = {"www.example.com. 0 IN A 192.0.2.1", NULL};
        n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, zero, NULL, NULL);
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        vd_cache_free(c);
}

Test(cache, do_bit_keeps_entries_apart)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client plain, dnssec, edns_no_do;
        uint8_t up[1024], out[1232];
        client_query_in(&plain, 1, "www.example.com", VD_TYPE_A, false, false);
        client_query_in(&edns_no_do, 2, "www.example.com", VD_TYPE_A, true, false);
        client_query_in(&dnssec, 3, "www.example.com", VD_TYPE_A, true, true);
        static const char *const an[] = {
            "www.example.com. 300 IN A 192.0.2.1",
            "www.example.com. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 "
            "example.com. dGVzdHNpZ25hdHVyZXRlc3RzaWduYXR1cmU=",
            NULL};
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &dnssec.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_lookup(c, &plain.qi, T0, 512, out, sizeof(out)), 0);
        cr_assert_eq(vd_cache_lookup(c, &edns_no_do.qi, T0, 1232, out, sizeof(out)), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &dnssec.qi, T0, 1232, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_ancount(p), 2, "DO=1 keeps the RRSIG");
        cr_assert(ldns_pkt_edns_do(p));
        ldns_pkt_free(p);

        cr_assert_eq(vd_cache_store(c, &plain.qi, up, n, T0), 0);
        p = parse(out, vd_cache_lookup(c, &plain.qi, T0, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_ancount(p), 1, "DO=0 gets no RRSIG");
        ldns_pkt_free(p);
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.entries, 2);
        vd_cache_free(c);
}

Test(cache, key_is_case_insensitive_and_the_client_case_and_id_are_echoed)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client a, b;
        uint8_t up[1024], out[1232];
        client_query_in(&a, 0x1111, "WWW.EXAMPLE.COM", VD_TYPE_A, false, false);
        client_query_in(&b, 0xabcd, "wWw.ExAmPlE.cOm", VD_TYPE_A, false, false);
        static const char *const an[] = {"WWW.EXAMPLE.COM. 300 IN A 192.0.2.1", NULL};
        size_t n = upstream(up, sizeof(up), "WWW.EXAMPLE.COM.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &a.qi, up, n, T0), 0);
        size_t len = vd_cache_lookup(c, &b.qi, T0, 512, out, sizeof(out));
        cr_assert_gt(len, 0);
        cr_assert_eq(vd_wire_get16(out), 0xabcd);
        cr_assert_eq(memcmp(out + VD_HEADER_LEN, b.pkt + VD_HEADER_LEN, b.qi.qname_len + 4), 0,
                     "question as the client sent it");
        size_t owner = VD_HEADER_LEN + b.qi.qname_len + 4;
        cr_assert(out[owner] == 0xC0 && out[owner + 1] == VD_HEADER_LEN,
                  "the answer owner points at the question: the client's spelling");
        ldns_pkt *p = parse(out, len);
        cr_assert_eq(ldns_pkt_id(p), 0xabcd);
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, opt_only_for_edns_clients)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client plain, edns;
        uint8_t up[1024], out[1232];
        client_query_in(&plain, 1, "www.example.com", VD_TYPE_A, false, false);
        client_query_in(&edns, 2, "www.example.com", VD_TYPE_A, true, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &plain.qi, up, n, T0), 0);
        size_t len = vd_cache_lookup(c, &plain.qi, T0, 512, out, sizeof(out));
        cr_assert_gt(len, 0);
        cr_assert_eq(vd_wire_get16(out + 10), 0, "no OPT for a client without EDNS");
        ldns_pkt *p = parse(out, len);
        cr_assert_not(ldns_pkt_edns(p));
        ldns_pkt_free(p);

        len = vd_cache_lookup(c, &edns.qi, T0, 1232, out, sizeof(out));
        cr_assert_gt(len, 0);
        cr_assert_eq(vd_wire_get16(out + 10), 1);
        p = parse(out, len);
        cr_assert(ldns_pkt_edns(p));
        cr_assert_eq(ldns_pkt_edns_udp_size(p), VD_UDP_PAYLOAD);
        cr_assert_eq(ldns_pkt_ancount(p), 1);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, tc_with_no_records_when_over_max_len)
{
        static char texts[30][64];
        const char *an[31];
        for (int i = 0; i < 30; i++) {
                snprintf(texts[i], sizeof(texts[i]), "big.example.com. 300 IN A 192.0.2.%d", i + 1);
                an[i] = texts[i];
        }
        an[30] = NULL;
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client plain, edns;
        uint8_t up[2048], out[2048];
        client_query_in(&plain, 1, "big.example.com", VD_TYPE_A, false, false);
        client_query_in(&edns, 2, "big.example.com", VD_TYPE_A, true, false);
        size_t n = upstream(up, sizeof(up), "big.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &plain.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_store(c, &edns.qi, up, n, T0), 0);

        size_t len = vd_cache_lookup(c, &plain.qi, T0, 512, out, sizeof(out));
        cr_assert_gt(len, 0);
        cr_assert_leq(len, 512);
        ldns_pkt *p = parse(out, len);
        cr_assert(ldns_pkt_tc(p));
        cr_assert_eq(ldns_pkt_ancount(p), 0);
        ldns_pkt_free(p);

        len = vd_cache_lookup(c, &edns.qi, T0, 1232, out, sizeof(out));
        p = parse(out, len);
        cr_assert_leq(len, 1232);
        cr_assert_not(ldns_pkt_tc(p));
        cr_assert_eq(ldns_pkt_ancount(p), 30);
        cr_assert(ldns_pkt_edns(p));
        ldns_pkt_free(p);

        /* just the exact size fits; one octet less is TC (the OPT's 11 octets counted) */
        size_t exact = len;
        cr_assert_eq(vd_cache_lookup(c, &edns.qi, T0, exact, out, sizeof(out)), exact);
        len = vd_cache_lookup(c, &edns.qi, T0, exact - 1, out, sizeof(out));
        p = parse(out, len);
        cr_assert(ldns_pkt_tc(p));
        cr_assert(ldns_pkt_edns(p));
        ldns_pkt_free(p);
        vd_cache_free(c);
}

static void store_name(vd_cache *c, const char *name, uint64_t now)
{
        struct client cl;
        uint8_t up[1024];
        char fqdn[300], rec[400];
        snprintf(fqdn, sizeof(fqdn), "%s.", name);
        snprintf(rec, sizeof(rec), "%s 300 IN A 192.0.2.1", fqdn);
        const char *an[] = {rec, NULL};
        client_query_in(&cl, 1, name, VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), fqdn, VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, now), 0);
}

static bool cached(vd_cache *c, const char *name, uint64_t now)
{
        struct client cl;
        uint8_t out[1232];
        client_query_in(&cl, 1, name, VD_TYPE_A, false, false);
        return vd_cache_lookup(c, &cl.qi, now, 512, out, sizeof(out)) > 0;
}

/* The bucket arrays grow with the entries: thousands of names stay findable across every
 * doubling, and eviction still works once the cache is full. With 6000 entries the cache has
 * 16 shards of 375, each with its own LRU order, and the hash key is random. 20000 names put
 * about 1250 in each shard (a shard left under its share would take 25 standard deviations),
 * so the total holds exactly; the last 2000 put about 125 in each, so none of them is evicted
 * (that would take 375). With only a few more names than entries, a shard can stay under its
 * share by chance and the total is then below the bound, which is why the test stores so many. */
Test(cache, buckets_grow_with_the_entries)
{
        enum { NAMES = 20000, BOUND = 6000, RECENT = 2000 };
        vd_cache_options o = opts();
        o.max_entries = BOUND;
        vd_cache *c = new_cache(&o);
        char name[64];
        for (unsigned i = 0; i < NAMES; i++) {
                snprintf(name, sizeof(name), "host%u.grow.test", i);
                store_name(c, name, T0);
        }
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.entries, BOUND);
        cr_assert_eq(k.evictions, NAMES - BOUND);
        unsigned kept = 0;
        for (unsigned i = 0; i < NAMES; i++) {
                snprintf(name, sizeof(name), "host%u.grow.test", i);
                bool hit = cached(c, name, T0);
                kept += hit;
                if (i >= NAMES - RECENT)
                        cr_assert(hit, "%s", name);
        }
        cr_assert_eq(kept, BOUND);
        vd_cache_free(c);
}

Test(cache, lru_evicts_the_least_recently_used)
{
        vd_cache_options o = opts();
        o.max_entries = 3;
        vd_cache *c = new_cache(&o);
        store_name(c, "a.test", T0);
        store_name(c, "b.test", T0);
        store_name(c, "c.test", T0);
        cr_assert(cached(c, "a.test", T0)); /* a is now the most recent; b the least */
        store_name(c, "d.test", T0);
        cr_assert_not(cached(c, "b.test", T0));
        cr_assert(cached(c, "c.test", T0));
        cr_assert(cached(c, "a.test", T0));
        cr_assert(cached(c, "d.test", T0)); /* most recent first: d, a, c */
        store_name(c, "e.test", T0);
        cr_assert_not(cached(c, "c.test", T0));
        cr_assert(cached(c, "a.test", T0));
        /* replacing an entry does not evict */
        store_name(c, "a.test", T0 + 1000);
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.evictions, 2);
        cr_assert_eq(k.entries, 3);
        cr_assert_eq(k.stores, 6);
        vd_cache_free(c);

        o.max_entries = 0; /* disabled */
        c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[512];
        client_query_in(&cl, 1, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)), 0);
        vd_cache_free(c);
}

Test(cache, replacement_takes_the_new_answer)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 1, "www.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        static const char *const an[] = {"www.example.com. 50 IN A 192.0.2.2", NULL};
        n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0 + 400000), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 410000, 512, out, sizeof(out)));
        assert_rr(ldns_pkt_answer(p), 0, "www.example.com.\t40\tIN\tA\t192.0.2.2");
        ldns_pkt_free(p);
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.entries, 1);
        vd_cache_free(c);
}

/* --- hand-built wire messages with compression --- */

struct wire {
        uint8_t b[1024];
        size_t n;
};

static void m16(struct wire *m, uint16_t v)
{
        vd_wire_put16(m->b + m->n, v);
        m->n += 2;
}

static void m32(struct wire *m, uint32_t v)
{
        vd_wire_put32(m->b + m->n, v);
        m->n += 4;
}

static size_t mname(struct wire *m, const char *text)
{
        size_t at = m->n;
        m->n += put_wire_name(m->b + m->n, text) - 1; /* without the root: caller ends it */
        return at;
}

static void mptr(struct wire *m, size_t off)
{
        m16(m, (uint16_t)(0xC000u | off));
}

static void mroot(struct wire *m)
{
        m->b[m->n++] = 0;
}

/* type, class IN, ttl; returns the offset of rdlength to patch */
static size_t mfixed(struct wire *m, uint16_t type, uint32_t ttl)
{
        m16(m, type);
        m16(m, VD_CLASS_IN);
        m32(m, ttl);
        size_t at = m->n;
        m16(m, 0);
        return at;
}

static void mrdlen(struct wire *m, size_t at)
{
        vd_wire_put16(m->b + at, (uint16_t)(m->n - at - 2));
}

/* www.example.com A: www CNAME web.<ptr example.com>; web A; MX-free; with counts given. */
static void compressed_cname_answer(struct wire *m)
{
        memset(m, 0, sizeof(*m));
        m16(m, 0x4242);
        m16(m, VD_FLAG_QR | VD_FLAG_RD | VD_FLAG_RA);
        m16(m, 1);
        m16(m, 2);
        m16(m, 1);
        m16(m, 0);
        size_t qname = m->n; /* 12 */
        mname(m, "www");
        size_t example = m->n; /* 16 */
        mname(m, "example.com");
        mroot(m);
        m16(m, VD_TYPE_A);
        m16(m, VD_CLASS_IN);
        /* www.example.com CNAME web.example.com */
        mptr(m, qname);
        size_t rl = mfixed(m, VD_TYPE_CNAME, 300);
        size_t web = m->n;
        mname(m, "web");
        mptr(m, example);
        mrdlen(m, rl);
        /* web.example.com A */
        mptr(m, web);
        rl = mfixed(m, VD_TYPE_A, 200);
        m32(m, 0xC0000205);
        mrdlen(m, rl);
        /* authority: example.com NS ns1.<ptr example.com> (dropped) */
        mptr(m, example);
        rl = mfixed(m, VD_TYPE_NS, 300);
        mname(m, "ns1");
        mptr(m, example);
        mrdlen(m, rl);
}

/* The stored answer is compressed again, against the question and the names before each
 * name: exactly what a compressing upstream would send. */
Test(cache, names_are_compressed_against_the_question_and_earlier_names)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        struct wire m;
        uint8_t out[1232];
        compressed_cname_answer(&m);
        client_query_in(&cl, 5, "www.example.com", VD_TYPE_A, false, false);
        cr_assert_eq(vd_cache_store(c, &cl.qi, m.b, m.n, T0), 0);
        size_t len = vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out));
        static const uint8_t want[] = {
            0x00, 0x05, 0x81, 0x80, 0, 1,   0,   2,   0,   0,   0,   0, /* header */
            3,    'w',  'w',  'w',  7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3,   'c', 'o', 'm', 0,
            0,    1,    0,    1, /* question: the name at 12, "example.com" at 16 */
            0xC0, 12,   0,    5,    0, 1,   0,   0,   0,   200, 0,   6,   3,   'w', 'e', 'b', 0xC0,
            16, /* www CNAME web.<example.com>; "web" at 45 */
            0xC0, 45,   0,    1,    0, 1,   0,   0,   0,   200, 0,   4,   192, 0,   2,   5, /* web A
                                                                                             */
        };
        cr_assert_eq(len, sizeof(want));
        cr_assert_eq(memcmp(out, want, sizeof(want)), 0);
        ldns_pkt *p = parse(out, len);
        assert_rr(ldns_pkt_answer(p), 0, "www.example.com.\t200\tIN\tCNAME\tweb.example.com.");
        assert_rr(ldns_pkt_answer(p), 1, "web.example.com.\t200\tIN\tA\t192.0.2.5");
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, compressed_mx_and_soa_rdata_are_expanded)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        struct wire m;
        uint8_t out[1232];
        memset(&m, 0, sizeof(m));
        m16(&m, 1);
        m16(&m, VD_FLAG_QR | VD_FLAG_RD | VD_FLAG_RA);
        m16(&m, 1);
        m16(&m, 1);
        m16(&m, 0);
        m16(&m, 0);
        size_t qname = mname(&m, "example.com");
        mroot(&m);
        m16(&m, VD_TYPE_MX);
        m16(&m, VD_CLASS_IN);
        mptr(&m, qname);
        size_t rl = mfixed(&m, VD_TYPE_MX, 300);
        m16(&m, 10);
        mname(&m, "mail");
        mptr(&m, qname);
        mrdlen(&m, rl);
        client_query_in(&cl, 5, "Example.com", VD_TYPE_MX, false, false);
        cr_assert_eq(vd_cache_store(c, &cl.qi, m.b, m.n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        /* (the exchange's suffix points at the question: the client's spelling) */
        assert_rr(ldns_pkt_answer(p), 0, "Example.com.\t300\tIN\tMX\t10 mail.Example.com.");
        ldns_pkt_free(p);

        /* NXDOMAIN for x.example.com with a fully compressed SOA */
        memset(&m, 0, sizeof(m));
        m16(&m, 1);
        m16(&m, VD_FLAG_QR | VD_FLAG_RD | VD_FLAG_RA | VD_RCODE_NXDOMAIN);
        m16(&m, 1);
        m16(&m, 0);
        m16(&m, 1);
        m16(&m, 0);
        mname(&m, "x");
        size_t apex = mname(&m, "example.com");
        mroot(&m);
        m16(&m, VD_TYPE_A);
        m16(&m, VD_CLASS_IN);
        mptr(&m, apex);
        rl = mfixed(&m, VD_TYPE_SOA, 3600);
        mname(&m, "ns1");
        mptr(&m, apex);
        mname(&m, "hostmaster");
        mptr(&m, apex);
        m32(&m, 2024);
        m32(&m, 7200);
        m32(&m, 900);
        m32(&m, 1209600);
        m32(&m, 120);
        mrdlen(&m, rl);
        client_query_in(&cl, 6, "x.example.com", VD_TYPE_A, false, false);
        cr_assert_eq(vd_cache_store(c, &cl.qi, m.b, m.n, T0), 0);
        p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        assert_rr(ldns_pkt_authority(p), 0,
                  "example.com.\t120\tIN\tSOA\tns1.example.com. hostmaster.example.com. 2024 "
                  "7200 900 1209600 120");
        ldns_pkt_free(p);
        vd_cache_free(c);
}

static void assert_not_stored(vd_cache *c, const vd_query_info *qi, const uint8_t *msg, size_t len,
                              const char *what)
{
        uint8_t out[1232];
        cr_assert_lt(vd_cache_store(c, qi, msg, len, T0), 0, "%s", what);
        cr_assert_eq(vd_cache_lookup(c, qi, T0, 512, out, sizeof(out)), 0, "%s", what);
}

Test(cache, every_truncation_is_rejected)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        struct wire m;
        uint8_t copy[1024];
        compressed_cname_answer(&m);
        client_query_in(&cl, 5, "www.example.com", VD_TYPE_A, false, false);
        for (size_t n = 0; n < m.n; n++) {
                /* a fresh heap copy of exactly n octets, so ASan sees any overread */
                uint8_t *t = malloc(n + 1);
                memcpy(t, m.b, n);
                cr_assert_lt(vd_cache_store(c, &cl.qi, t, n, T0), 0, "length %zu", n);
                free(t);
        }
        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.stores, 0);
        memcpy(copy, m.b, m.n);
        copy[m.n] = 0;
        cr_assert_lt(vd_cache_store(c, &cl.qi, copy, m.n + 1, T0), 0, "a trailing octet");
        cr_assert_eq(vd_cache_store(c, &cl.qi, copy, m.n, T0), 0, "the whole message is fine");
        vd_cache_free(c);
}

Test(cache, hostile_pointers_and_counts_are_rejected)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        struct wire m;
        client_query_in(&cl, 5, "www.example.com", VD_TYPE_A, false, false);
        /* layout of compressed_cname_answer: question at 12..32, first record owner at 33 */
        compressed_cname_answer(&m);
        size_t first = 12 + cl.qi.qname_len + 4;
        cr_assert_eq(m.b[first], 0xC0);

        m.b[first + 1] = (uint8_t)first; /* owner points at itself */
        assert_not_stored(c, &cl.qi, m.b, m.n, "self pointer");
        m.b[first + 1] = (uint8_t)(first + 2); /* forward pointer */
        assert_not_stored(c, &cl.qi, m.b, m.n, "forward pointer");
        m.b[first + 1] = 2; /* into the header */
        assert_not_stored(c, &cl.qi, m.b, m.n, "pointer into the header");

        /* CNAME rdata: "web" + pointer to the pointer itself (a loop) */
        compressed_cname_answer(&m);
        size_t web_ptr = first + 2 + 10 + 4;
        cr_assert_eq(m.b[web_ptr], 0xC0);
        m.b[web_ptr + 1] = (uint8_t)(first + 2 + 10); /* back to "web": web.web.web... */
        assert_not_stored(c, &cl.qi, m.b, m.n, "pointer loop in rdata");

        compressed_cname_answer(&m);
        vd_wire_put16(m.b + 6, 5); /* ANCOUNT larger than the records */
        assert_not_stored(c, &cl.qi, m.b, m.n, "ancount too large");
        vd_wire_put16(m.b + 6, 0xFFFF);
        assert_not_stored(c, &cl.qi, m.b, m.n, "ancount 65535");

        compressed_cname_answer(&m);
        vd_wire_put16(m.b + first + 10, 0xFFF0); /* rdlength past the end */
        assert_not_stored(c, &cl.qi, m.b, m.n, "rdlength");

        compressed_cname_answer(&m);
        vd_wire_put16(m.b + first + 10, 2); /* CNAME rdata shorter than its name */
        assert_not_stored(c, &cl.qi, m.b, m.n, "short rdata");

        compressed_cname_answer(&m);
        m.b[13] = 'x'; /* another question */
        assert_not_stored(c, &cl.qi, m.b, m.n, "question mismatch");

        compressed_cname_answer(&m);
        m.b[2] &= 0x7F; /* QR clear */
        assert_not_stored(c, &cl.qi, m.b, m.n, "not a response");

        /* Flip every octet to a few hostile values: never a crash (ASan), and whatever is
         * stored still parses as a valid response. */
        static const uint8_t values[] = {0x00, 0x01, 0x3F, 0x40, 0xC0, 0xFF};
        for (size_t i = 0; i < m.n; i++) {
                for (size_t v = 0; v < sizeof(values); v++) {
                        compressed_cname_answer(&m);
                        m.b[i] = values[v];
                        uint8_t *t = malloc(m.n);
                        memcpy(t, m.b, m.n);
                        if (vd_cache_store(c, &cl.qi, t, m.n, T0) == 0) {
                                uint8_t out[1232];
                                size_t len = vd_cache_lookup(c, &cl.qi, T0, 1232, out, 1232);
                                ldns_pkt *p = parse(out, len);
                                ldns_pkt_free(p);
                        }
                        free(t);
                }
        }
        vd_cache_free(c);
}

Test(cache, cname_loops_and_long_chains_are_not_stored)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[4096];
        client_query_in(&cl, 5, "a.loop.test", VD_TYPE_A, false, false);
        static const char *const loop[] = {"a.loop.test. 300 IN CNAME b.loop.test.",
                                           "b.loop.test. 300 IN CNAME a.loop.test.", NULL};
        size_t n = upstream(up, sizeof(up), "a.loop.test.", VD_TYPE_A, 0, loop, SOA_EXAMPLE, NULL);
        assert_not_stored(c, &cl.qi, up, n, "CNAME loop");

        /* 10 links: longer than we follow */
        static char texts[11][80];
        const char *an[12];
        for (int i = 0; i < 10; i++) {
                snprintf(texts[i], sizeof(texts[i]), "n%d.chain.test. 300 IN CNAME n%d.chain.test.",
                         i, i + 1);
                an[i] = texts[i];
        }
        snprintf(texts[10], sizeof(texts[10]), "n10.chain.test. 300 IN A 192.0.2.1");
        an[10] = texts[10];
        an[11] = NULL;
        client_query_in(&cl, 5, "n0.chain.test", VD_TYPE_A, false, false);
        n = upstream(up, sizeof(up), "n0.chain.test.", VD_TYPE_A, 0, an, NULL, NULL);
        assert_not_stored(c, &cl.qi, up, n, "chain too long");

        /* 8 links are fine */
        client_query_in(&cl, 5, "n2.chain.test", VD_TYPE_A, false, false);
        n = upstream(up, sizeof(up), "n2.chain.test.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        uint8_t out[1232];
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 1232, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_ancount(p), 9);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, cname_into_nxdomain_keeps_chain_and_soa)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        static const char *const an[] = {"alias.example.org. 900 IN CNAME gone.example.com.", NULL};
        client_query_in(&cl, 5, "alias.example.org", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "alias.example.org.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN,
                            an, SOA_EXAMPLE, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        assert_rr(ldns_pkt_answer(p), 0, "alias.example.org.\t300\tIN\tCNAME\tgone.example.com.");
        cr_assert_eq(ldns_pkt_nscount(p), 1);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, dname_above_the_name_is_kept_before_its_cname)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        static const char *const an[] = {"a.b.example.com. 300 IN CNAME a.b.example.net.",
                                         "example.com. 300 IN DNAME example.net.",
                                         "other.example.com. 300 IN DNAME evil.test.",
                                         "a.b.example.net. 300 IN A 192.0.2.9", NULL};
        client_query_in(&cl, 5, "a.b.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "a.b.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_ancount(p), 3);
        assert_rr(ldns_pkt_answer(p), 0, "example.com.\t300\tIN\tDNAME\texample.net.");
        assert_rr(ldns_pkt_answer(p), 1, "a.b.example.com.\t300\tIN\tCNAME\ta.b.example.net.");
        assert_rr(ldns_pkt_answer(p), 2, "a.b.example.net.\t300\tIN\tA\t192.0.2.9");
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, dnssec_negative_answer_keeps_its_denial_records_for_do_only)
{
        static const char *const ns[] = {
            "example.com. 3600 IN SOA ns1.example.com. h.example.com. 1 7200 900 1209600 300",
            "example.com. 3600 IN RRSIG SOA 13 2 3600 20300101000000 20200101000000 12345 "
            "example.com. dGVzdHNpZ25hdHVyZXRlc3RzaWduYXR1cmU=",
            "m.example.com. 300 IN NSEC p.example.com. A RRSIG NSEC",
            "m.example.com. 300 IN RRSIG NSEC 13 3 300 20300101000000 20200101000000 12345 "
            "example.com. dGVzdHNpZ25hdHVyZXRlc3RzaWduYXR1cmU=",
            "example.com. 3600 IN NS ns1.example.com.",
            NULL};
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client plain, dnssec;
        uint8_t up[2048], out[1232];
        client_query_in(&plain, 1, "nope.example.com", VD_TYPE_A, true, false);
        client_query_in(&dnssec, 2, "nope.example.com", VD_TYPE_A, true, true);
        size_t n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN,
                            NULL, ns, NULL);
        up[3] |= VD_FLAG_AD;
        cr_assert_eq(vd_cache_store(c, &plain.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_store(c, &dnssec.qi, up, n, T0), 0);

        ldns_pkt *p = parse(out, vd_cache_lookup(c, &plain.qi, T0, 1232, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_nscount(p), 1);
        cr_assert_not(ldns_pkt_ad(p), "AD only for a client that asks with DO or AD");
        ldns_pkt_free(p);

        p = parse(out, vd_cache_lookup(c, &dnssec.qi, T0, 1232, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        cr_assert_eq(ldns_pkt_nscount(p), 4, "SOA, its RRSIG, NSEC, its RRSIG; not the NS");
        cr_assert_eq(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), LDNS_RR_TYPE_SOA);
        cr_assert(ldns_pkt_ad(p));
        for (size_t i = 0; i < 4; i++)
                cr_assert_eq(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(p), i)), 300);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, answers_to_cd_questions_are_not_stored)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 1, "www.example.com", VD_TYPE_A, true, true);
        cl.qi.flags |= VD_FLAG_CD;
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        cr_assert_lt(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cl.qi.flags &= (uint16_t)~VD_FLAG_CD;
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cl.qi.flags |= VD_FLAG_CD;
        size_t len = vd_cache_lookup(c, &cl.qi, T0, 1232, out, sizeof(out));
        cr_assert_gt(len, 0, "a CD client may be answered from validated data");
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_CD, "CD echoed");
        vd_cache_free(c);
}

/* --- serve-stale (RFC 8767) and prefetch --- */

static uint32_t first_ttl(ldns_rr_list *list)
{
        cr_assert_gt(ldns_rr_list_rr_count(list), 0);
        return ldns_rr_ttl(ldns_rr_list_rr(list, 0));
}

Test(cache, stale_lookup_serves_expired_entries_with_ttl_30_until_stale_max)
{
        static const char *const an[] = {"www.example.com. 300 IN CNAME web.example.net.",
                                         "web.example.net. 60 IN A 192.0.2.5", NULL};
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 0x5151, "WWW.example.com", VD_TYPE_A, true, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);

        cr_assert_eq(vd_cache_lookup_stale(c, &cl.qi, T0 + 59999, 3600, 1232, out, sizeof(out)), 0,
                     "a fresh entry is not stale: vd_cache_lookup serves it");
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 60000, 1232, out, sizeof(out)), 0);

        ldns_pkt *p = parse(out, vd_cache_lookup_stale(c, &cl.qi, T0 + 60000 + 3600000, 3600, 1232,
                                                       out, sizeof(out)));
        cr_assert_eq(ldns_pkt_id(p), 0x5151);
        cr_assert_eq(ldns_pkt_ancount(p), 2);
        assert_rr(ldns_pkt_answer(p), 0, "WWW.example.com.\t30\tIN\tCNAME\tweb.example.net.");
        assert_rr(ldns_pkt_answer(p), 1, "web.example.net.\t30\tIN\tA\t192.0.2.5");
        cr_assert(ldns_pkt_edns(p), "an EDNS client gets its OPT");
        ldns_pkt_free(p);

        cr_assert_eq(
            vd_cache_lookup_stale(c, &cl.qi, T0 + 60000 + 3600001, 3600, 1232, out, sizeof(out)), 0,
            "older than stale_max");
        cr_assert_gt(
            vd_cache_lookup_stale(c, &cl.qi, T0 + 60000 + 3600001, 7200, 1232, out, sizeof(out)), 0,
            "the entry itself is kept until evicted");
        cr_assert_eq(vd_cache_lookup_stale(c, &cl.qi, T0 + 61000, 0, 1232, out, sizeof(out)), 0,
                     "stale_max 0: serve-stale off");

        struct client other;
        client_query_in(&other, 1, "www.example.com", VD_TYPE_AAAA, true, false);
        cr_assert_eq(vd_cache_lookup_stale(c, &other.qi, T0 + 61000, 3600, 1232, out, sizeof(out)),
                     0, "no entry for another type");
        vd_cache_free(c);
}

Test(cache, stale_negative_entry_keeps_its_soa_with_ttl_30)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 9, "nope.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "nope.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN,
                            NULL, SOA_EXAMPLE, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        ldns_pkt *p =
            parse(out, vd_cache_lookup_stale(c, &cl.qi, T0 + 400000, 3600, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        cr_assert_eq(first_ttl(ldns_pkt_authority(p)), 30);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, servfail_is_kept_alongside_an_older_entry_for_serve_stale)
{
        vd_cache_options o = opts();
        o.servfail_ttl = 5;
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t good[1024], bad[1024], out[1232];
        client_query_in(&cl, 3, "flaky.example.com", VD_TYPE_A, false, false);
        static const char *const an[] = {"flaky.example.com. 10 IN A 192.0.2.9", NULL};
        size_t ng =
            upstream(good, sizeof(good), "flaky.example.com.", VD_TYPE_A, 0, an, NULL, NULL);
        size_t nb = upstream(bad, sizeof(bad), "flaky.example.com.", VD_TYPE_A, LDNS_RCODE_SERVFAIL,
                             NULL, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, good, ng, T0), 0);

        /* A SERVFAIL while the entry is fresh (a failed refresh) changes nothing visible. */
        cr_assert_eq(vd_cache_store(c, &cl.qi, bad, nb, T0 + 5000), 0);
        ldns_pkt *p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 6000, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        cr_assert_eq(first_ttl(ldns_pkt_answer(p)), 4);
        ldns_pkt_free(p);

        /* Expired, then SERVFAIL: lookups answer SERVFAIL for servfail_ttl (RFC 9520), while
         * the old records are still there for serve-stale. */
        cr_assert_eq(vd_cache_store(c, &cl.qi, bad, nb, T0 + 20000), 0);
        p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 24999, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
        cr_assert_eq(ldns_pkt_ancount(p), 0);
        ldns_pkt_free(p);
        p = parse(out, vd_cache_lookup_stale(c, &cl.qi, T0 + 24999, 3600, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        assert_rr(ldns_pkt_answer(p), 0, "flaky.example.com.\t30\tIN\tA\t192.0.2.9");
        ldns_pkt_free(p);
        cr_assert_eq(vd_cache_lookup(c, &cl.qi, T0 + 25000, 512, out, sizeof(out)), 0,
                     "the SERVFAIL is over: ask upstream again");
        cr_assert_gt(vd_cache_lookup_stale(c, &cl.qi, T0 + 25000, 3600, 512, out, sizeof(out)), 0);

        vd_cache_counters k;
        vd_cache_counters_get(c, &k);
        cr_assert_eq(k.entries, 1);

        /* A good answer replaces everything. */
        cr_assert_eq(vd_cache_store(c, &cl.qi, good, ng, T0 + 30000), 0);
        p = parse(out, vd_cache_lookup(c, &cl.qi, T0 + 30000, 512, out, sizeof(out)));
        cr_assert_eq(first_ttl(ldns_pkt_answer(p)), 10);
        ldns_pkt_free(p);
        vd_cache_free(c);
}

Test(cache, servfail_alone_is_never_served_stale)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 3, "broken.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "broken.example.com.", VD_TYPE_A, LDNS_RCODE_SERVFAIL,
                            NULL, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_lookup_stale(c, &cl.qi, T0 + 1000, 3600, 512, out, sizeof(out)), 0);
        cr_assert_eq(vd_cache_lookup_stale(c, &cl.qi, T0 + 9000, 3600, 512, out, sizeof(out)), 0);
        vd_cache_free(c);
}

/* A lookup at now_ms that must hit; returns whether it claimed the entry for a prefetch. */
static bool hit_claims_prefetch(vd_cache *c, const vd_query_info *qi, uint64_t now_ms)
{
        uint8_t out[1232];
        bool prefetch = true;
        cr_assert_gt(vd_cache_lookup_prefetch(c, qi, now_ms, 512, out, sizeof(out), &prefetch), 0);
        return prefetch;
}

Test(cache, prefetch_once_per_entry_in_the_last_tenth_of_its_ttl)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl, other;
        uint8_t up[1024], out[1232];
        client_query_in(&cl, 1, "www.example.com", VD_TYPE_A, false, false);
        client_query_in(&other, 2, "other.example.com", VD_TYPE_A, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0); /* TTL 300 */

        cr_assert_not(hit_claims_prefetch(c, &cl.qi, T0 + 269999), "31 s left: not yet");
        bool prefetch = true;
        cr_assert_eq(
            vd_cache_lookup_prefetch(c, &other.qi, T0 + 280000, 512, out, sizeof(out), &prefetch),
            0);
        cr_assert_not(prefetch, "no entry");
        cr_assert_gt(vd_cache_lookup(c, &cl.qi, T0 + 280000, 512, out, sizeof(out)), 0);
        cr_assert(hit_claims_prefetch(c, &cl.qi, T0 + 280000),
                  "20 s of 300 left (a plain lookup does not claim)");
        cr_assert_not(hit_claims_prefetch(c, &cl.qi, T0 + 281000), "only once per entry");
        prefetch = true;
        cr_assert_eq(
            vd_cache_lookup_prefetch(c, &cl.qi, T0 + 300000, 512, out, sizeof(out), &prefetch), 0);
        cr_assert_not(prefetch, "expired");

        /* The refreshed entry can be prefetched again in its own last tenth; the key is
         * case-insensitive. */
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0 + 290000), 0);
        struct client upper;
        client_query_in(&upper, 3, "WWW.EXAMPLE.COM", VD_TYPE_A, false, false);
        cr_assert_not(hit_claims_prefetch(c, &upper.qi, T0 + 290000 + 100000));
        cr_assert(hit_claims_prefetch(c, &upper.qi, T0 + 290000 + 271000));
        vd_cache_free(c);
}

Test(cache, prefetch_claim_follows_the_entry_not_the_last_lookup)
{
        vd_cache_options o = opts();
        o.max_entries = 1;
        vd_cache *c = new_cache(&o);
        struct client a, b;
        uint8_t up[1024], out[1232];
        client_query_in(&a, 1, "www.example.com", VD_TYPE_A, false, false);
        client_query_in(&b, 2, "www.example.com", VD_TYPE_AAAA, false, false);
        size_t n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_A, 0, A_WWW, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &a.qi, up, n, T0), 0);
        cr_assert_gt(vd_cache_lookup(c, &a.qi, T0 + 1000, 512, out, sizeof(out)), 0);
        static const char *const aaaa[] = {"www.example.com. 100 IN AAAA 2001:db8::1", NULL};
        n = upstream(up, sizeof(up), "www.example.com.", VD_TYPE_AAAA, 0, aaaa, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &b.qi, up, n, T0 + 2000), 0); /* evicts the A entry */
        bool prefetch = true;
        cr_assert_eq(
            vd_cache_lookup_prefetch(c, &a.qi, T0 + 280000, 512, out, sizeof(out), &prefetch), 0);
        cr_assert_not(prefetch, "evicted: nothing to do");
        cr_assert(hit_claims_prefetch(c, &b.qi, T0 + 2000 + 95000));
        vd_cache_free(c);
}

/* --- one cache, several threads --- */

#define MT_NAMES 1024
#define MT_THREADS 4
#define MT_ROUNDS 20000

struct mt_shared {
        vd_cache *cache;
        struct client clients[MT_NAMES];
        uint8_t answers[MT_NAMES][128];
        size_t answer_len[MT_NAMES];
};

struct mt_thread {
        struct mt_shared *shared;
        unsigned index;
        uv_thread_t thread;
        unsigned long lookups, hits, stores, wrong;
};

/* Each thread walks the names in its own order: a hit must carry the name's own address
 * (10.0.hi.lo) and the client's ID; a miss stores the upstream answer. Failures are counted:
 * Criterion's assertions belong to the test's own thread. */
static void mt_worker(void *arg)
{
        struct mt_thread *t = arg;
        struct mt_shared *sh = t->shared;
        uint8_t out[512];
        for (unsigned i = 0; i < MT_ROUNDS; i++) {
                unsigned j = (i * 7919u + t->index * 257u) % MT_NAMES;
                const vd_query_info *qi = &sh->clients[j].qi;
                uint64_t now = T0 + i;
                t->lookups++;
                size_t n = vd_cache_lookup(sh->cache, qi, now, 512, out, sizeof(out));
                if (n == 0) {
                        if (vd_cache_store(sh->cache, qi, sh->answers[j], sh->answer_len[j], now) !=
                            0)
                                t->wrong++;
                        t->stores++;
                        continue;
                }
                t->hits++;
                const uint8_t want[4] = {10, 0, (uint8_t)(j >> 8), (uint8_t)j};
                if (n < 16 || vd_wire_get16(out) != qi->id || vd_wire_get16(out + 6) != 1 ||
                    memcmp(out + n - 4, want, 4) != 0)
                        t->wrong++;
        }
}

Test(cache, threads_share_one_cache_and_every_hit_is_the_right_answer)
{
        struct mt_shared *sh = calloc(1, sizeof(*sh));
        cr_assert_not_null(sh);
        vd_cache_options o = opts();
        o.max_entries = 600; /* two shards, and fewer entries than names: evictions race too */
        sh->cache = new_cache(&o);
        for (unsigned j = 0; j < MT_NAMES; j++) {
                char name[64], fqdn[80], rec[160];
                snprintf(name, sizeof(name), "host%u.threads.test", j);
                snprintf(fqdn, sizeof(fqdn), "%s.", name);
                snprintf(rec, sizeof(rec), "%s 300 IN A 10.0.%u.%u", fqdn, j >> 8, j & 255);
                const char *an[] = {rec, NULL};
                client_query_in(&sh->clients[j], (uint16_t)(j + 1), name, VD_TYPE_A, false, false);
                sh->answer_len[j] = upstream(sh->answers[j], sizeof(sh->answers[j]), fqdn,
                                             VD_TYPE_A, 0, an, NULL, NULL);
        }
        struct mt_thread threads[MT_THREADS];
        memset(threads, 0, sizeof(threads));
        for (unsigned i = 0; i < MT_THREADS; i++) {
                threads[i].shared = sh;
                threads[i].index = i;
                cr_assert_eq(uv_thread_create(&threads[i].thread, mt_worker, &threads[i]), 0);
        }
        unsigned long lookups = 0, hits = 0, stores = 0;
        for (unsigned i = 0; i < MT_THREADS; i++) {
                uv_thread_join(&threads[i].thread);
                cr_assert_eq(threads[i].wrong, 0, "thread %u: wrong answers or failed stores", i);
                lookups += threads[i].lookups;
                hits += threads[i].hits;
                stores += threads[i].stores;
        }
        vd_cache_counters k;
        vd_cache_counters_get(sh->cache, &k);
        cr_assert_eq(k.hits, hits);
        cr_assert_eq(k.misses, lookups - hits);
        cr_assert_eq(k.stores, stores);
        cr_assert_eq(k.entries, 600, "the bound holds for the whole cache");
        /* (two threads missing the same name at once both store: one replaces) */
        cr_assert_geq(k.stores - k.evictions, 600);
        cr_assert_gt(hits, 0);
        vd_cache_free(sh->cache);
        free(sh);
}

/* --- what the writer sends: DNAME kept for CNAME questions, sizes, TC --- */

Test(cache, cname_question_under_a_dname_keeps_the_dname_and_its_rrsig)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client cl;
        uint8_t up[2048], out[1232];
        static const char *const an[] = {
            "a.example.com. 300 IN DNAME b.example.net.",
            "a.example.com. 300 IN RRSIG DNAME 8 3 300 20300101000000 20200101000000 12345 "
            "example.com. AAAAAAAA",
            "x.a.example.com. 300 IN CNAME x.b.example.net.",
            NULL,
        };
        client_query_in(&cl, 7, "x.a.example.com", VD_TYPE_CNAME, true, true);
        size_t n = upstream(up, sizeof(up), "x.a.example.com.", VD_TYPE_CNAME, 0, an, NULL, NULL);
        cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
        size_t len = vd_cache_lookup(c, &cl.qi, T0, 1232, out, sizeof(out));
        ldns_pkt *got = parse(out, len);
        ldns_pkt *first = parse(up, n);
        /* the same records as the upstream's answer, in its order */
        ldns_rr_list *want = ldns_pkt_answer(first);
        cr_assert_eq(ldns_pkt_ancount(got), 3);
        for (size_t i = 0; i < 3; i++) {
                char *w = rr_text(want, i);
                assert_rr(ldns_pkt_answer(got), i, w);
                free(w);
        }
        ldns_pkt_free(first);
        ldns_pkt_free(got);

        /* without DO: the DNAME, not its RRSIG */
        struct client plain;
        client_query_in(&plain, 8, "x.a.example.com", VD_TYPE_CNAME, false, false);
        cr_assert_eq(vd_cache_store(c, &plain.qi, up, n, T0), 0);
        got = parse(out, vd_cache_lookup(c, &plain.qi, T0, 512, out, sizeof(out)));
        cr_assert_eq(ldns_pkt_ancount(got), 2);
        assert_rr(ldns_pkt_answer(got), 0, "a.example.com.\t300\tIN\tDNAME\tb.example.net.");
        assert_rr(ldns_pkt_answer(got), 1, "x.a.example.com.\t300\tIN\tCNAME\tx.b.example.net.");
        ldns_pkt_free(got);
        vd_cache_free(c);
}

/* A cached answer is no larger than the compressing upstream's, so one that fit the first time
 * fits again. */
Test(cache, cached_answers_are_no_larger_than_the_upstreams)
{
        static char texts[3][12][96];
        static const char *const owners[3] = {"www.example.com.", "mail.example.com.",
                                              "example.com."};
        static const uint16_t types[3] = {VD_TYPE_A, VD_TYPE_MX, VD_TYPE_NS};
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        for (int t = 0; t < 3; t++) {
                const char *an[13];
                for (int i = 0; i < 12; i++) {
                        if (types[t] == VD_TYPE_A)
                                snprintf(texts[t][i], sizeof(texts[t][i]), "%s 300 IN A 192.0.2.%d",
                                         owners[t], i + 1);
                        else if (types[t] == VD_TYPE_MX)
                                snprintf(texts[t][i], sizeof(texts[t][i]),
                                         "%s 300 IN MX %d mx%d.example.com.", owners[t], i, i);
                        else
                                snprintf(texts[t][i], sizeof(texts[t][i]),
                                         "%s 300 IN NS ns%d.example.com.", owners[t], i);
                        an[i] = texts[t][i];
                }
                an[12] = NULL;
                struct client cl;
                uint8_t up[2048], out[2048];
                char name[64];
                snprintf(name, sizeof(name), "%.*s", (int)strlen(owners[t]) - 1, owners[t]);
                client_query_in(&cl, 9, name, types[t], false, false);
                size_t n = upstream(up, sizeof(up), owners[t], types[t], 0, an, NULL, NULL);
                cr_assert_eq(vd_cache_store(c, &cl.qi, up, n, T0), 0);
                size_t len = vd_cache_lookup(c, &cl.qi, T0, 512, out, sizeof(out));
                cr_assert_gt(len, 0);
                cr_assert_leq(len, n, "%s: cached %zu octets, upstream %zu", owners[t], len, n);
                ldns_pkt *p = parse(out, len);
                cr_assert_not(ldns_pkt_tc(p));
                cr_assert_eq(ldns_pkt_ancount(p), 12);
                ldns_pkt_free(p);
        }
        vd_cache_free(c);
}

/* When the authority section does not fit, it is left out without TC (RFC 2181 §9); a DO
 * client's denial proofs are required data, so for it the answer is TC. */
/* A negative answer's SOA is what says how long the denial may be cached (RFC 2308 §5): it is
 * never left out to fit, with or without DO; the client gets TC and asks over TCP, as it does
 * when the same answer is relayed on a cache miss. */
Test(cache, negative_answer_whose_soa_does_not_fit_is_tc)
{
        vd_cache_options o = opts();
        vd_cache *c = new_cache(&o);
        struct client plain, dnssec;
        uint8_t up[2048], out[1232];
        static const char *const ns[] = {
            "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 900 "
            "1209600 300",
            NULL,
        };
        client_query_in(&plain, 10, "nx.example.com", VD_TYPE_A, false, false);
        client_query_in(&dnssec, 11, "nx.example.com", VD_TYPE_A, true, true);
        size_t n = upstream(up, sizeof(up), "nx.example.com.", VD_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL,
                            ns, NULL);
        cr_assert_eq(vd_cache_store(c, &plain.qi, up, n, T0), 0);
        cr_assert_eq(vd_cache_store(c, &dnssec.qi, up, n, T0), 0);
        size_t bare = VD_HEADER_LEN + plain.qi.qname_len + 4;

        size_t len = vd_cache_lookup(c, &plain.qi, T0, bare + 20, out, sizeof(out));
        cr_assert_eq(len, bare);
        ldns_pkt *p = parse(out, len);
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
        cr_assert(ldns_pkt_tc(p));
        cr_assert_eq(ldns_pkt_nscount(p), 0);
        ldns_pkt_free(p);

        len = vd_cache_lookup(c, &dnssec.qi, T0, bare + 11 + 20, out, sizeof(out));
        p = parse(out, len);
        cr_assert(ldns_pkt_tc(p));
        cr_assert_eq(ldns_pkt_nscount(p), 0);
        ldns_pkt_free(p);

        /* with room, the SOA is there */
        p = parse(out, vd_cache_lookup(c, &plain.qi, T0, 512, out, sizeof(out)));
        cr_assert_not(ldns_pkt_tc(p));
        cr_assert_eq(ldns_pkt_nscount(p), 1);
        ldns_pkt_free(p);
        vd_cache_free(c);
}
