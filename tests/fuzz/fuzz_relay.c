/* fuzz_relay.c — libFuzzer harness for vd_forward_relay, the step that turns an upstream's
 * answer into the client's response (the DNSpooq-class code path).
 * Input layout: [qlen][query: qlen bytes][max_len selector][cap selector][upstream answer].
 * The query must parse (vd_wire_parse_query) for the relay to run. Checks the length limits
 * and header rules always; when ldns reads the upstream answer cleanly, also that the
 * response reads cleanly and every record of the sections it kept arrives unchanged (TTLs
 * above 2^31 - 1 as 0).
 * Every relayed answer is also stored in a cache and served back from it (the upstream
 * answer path: parse, check, cache insert, relay). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "fuzz_util.h"
#include "vpcdns/cache.h"
#include "vpcdns/forward.h"

static size_t pick_len(uint8_t sel)
{
        static const size_t fixed[] = {0, 11, 12, 17, 64, 128, 256, 512, 1232, 4096, 65535};
        if (sel < sizeof(fixed) / sizeof(fixed[0]))
                return fixed[sel];
        return (size_t)sel * 7;
}

/* The same records, names compared without regard to case: the relay writes the client's
 * spelling of the question, and compressed names that point into it (owners, and names in
 * rdata) take that spelling. Compared as ldns's text, folded to lower case. */
static bool same_records(const ldns_rr_list *a, const ldns_rr_list *b)
{
        char *ta = ldns_rr_list2str(a), *tb = ldns_rr_list2str(b);
        FUZZ_CHECK(ta != NULL && tb != NULL);
        for (char *p = ta; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        for (char *p = tb; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        bool same = strcmp(ta, tb) == 0;
        free(ta);
        free(tb);
        return same;
}

/* RFC 2181 §8: the relay passes a TTL with the top bit set on as 0. Returns whether any was. */
static bool clamp_ttls(ldns_rr_list *l)
{
        bool clamped = false;
        for (size_t i = 0; i < ldns_rr_list_rr_count(l); i++) {
                ldns_rr *rr = ldns_rr_list_rr(l, i);
                if (ldns_rr_ttl(rr) > 0x7FFFFFFFu) {
                        ldns_rr_set_ttl(rr, 0);
                        clamped = true;
                }
        }
        return clamped;
}

/* The sections the response kept (sections are only ever left out whole, from the end) are
 * the upstream's, TTLs clamped. When a TTL was clamped the records are not compared: a
 * compression pointer may lead through a TTL's octets (a reader follows it; only a lying
 * upstream writes one), and the name read through it then changes with the TTL. */
static void check_sections_equal(ldns_pkt *up, const ldns_pkt *resp, int kept)
{
        bool clamped = clamp_ttls(ldns_pkt_answer(up));
        clamped = clamp_ttls(ldns_pkt_authority(up)) || clamped;
        clamped = clamp_ttls(ldns_pkt_additional(up)) || clamped;
        if (clamped)
                return;
        FUZZ_CHECK(same_records(ldns_pkt_answer(up), ldns_pkt_answer(resp)));
        if (kept >= 2)
                FUZZ_CHECK(same_records(ldns_pkt_authority(up), ldns_pkt_authority(resp)));
        if (kept >= 3)
                FUZZ_CHECK(same_records(ldns_pkt_additional(up), ldns_pkt_additional(resp)));
}

/* Whether any record of msg (walked with the project's reader) has the given type. */
static bool has_type(const uint8_t *msg, size_t len, uint16_t wanted)
{
        size_t pos = VD_HEADER_LEN;
        uint8_t name[VD_NAME_MAX];
        size_t name_len;
        if (vd_wire_read_name(msg, len, &pos, name, &name_len, false) != 0)
                return false;
        pos += 4;
        size_t total =
            (size_t)vd_wire_get16(msg + 6) + vd_wire_get16(msg + 8) + vd_wire_get16(msg + 10);
        for (size_t i = 0; i < total; i++) {
                uint16_t type;
                size_t fixed;
                if (vd_wire_skip_rr(msg, len, &pos, &type, &fixed) != 0)
                        return false;
                if (type == wanted)
                        return true;
        }
        return false;
}

/* Additional-section records the relay drops besides the OPT: TSIG and SIG(0). */
static unsigned dropped_signatures(const uint8_t *msg, size_t len)
{
        size_t pos = VD_HEADER_LEN;
        uint8_t name[VD_NAME_MAX];
        size_t name_len;
        unsigned n = 0;
        if (vd_wire_read_name(msg, len, &pos, name, &name_len, false) != 0)
                return 0;
        pos += 4;
        size_t before = (size_t)vd_wire_get16(msg + 6) + vd_wire_get16(msg + 8);
        size_t total = before + vd_wire_get16(msg + 10);
        for (size_t i = 0; i < total; i++) {
                uint16_t type;
                size_t fixed;
                if (vd_wire_skip_rr(msg, len, &pos, &type, &fixed) != 0)
                        return n;
                if (i >= before && (type == 250 || type == 24))
                        n++;
        }
        return n;
}

/* Stores the answer in a small cache and reads it back: whatever the upstream sent, a cached
 * response respects the limits and the header rules, and from a clean answer it parses. */
static void check_cache(const vd_query_info *qi, const uint8_t *answer, size_t answer_len,
                        size_t max_len, size_t cap, bool clean)
{
        /* A fresh cache per input: what it serves then comes from this input alone. */
        vd_cache *cache = NULL;
        vd_cache_options o;
        vd_cache_options_default(&o);
        o.max_entries = 4;
        FUZZ_CHECK(vd_cache_new(&o, &cache) == 0);
        const uint64_t now = 1000000;
        if (vd_cache_store(cache, qi, answer, answer_len, now) != 0) {
                vd_cache_free(cache);
                return;
        }
        uint8_t *out = malloc(cap ? cap : 1);
        FUZZ_CHECK(out != NULL);
        size_t m = vd_cache_lookup(cache, qi, now + 500, max_len, out, cap);
        FUZZ_CHECK(m <= max_len && m <= cap);
        if (m > 0) {
                fuzz_check_header(qi, out, m);
                FUZZ_CHECK(!(vd_wire_get16(out + 2) & VD_FLAG_AA));
                if (getenv("FUZZ_VERBOSE") != NULL) {
                        fprintf(stderr, "fuzz_relay: cached response=");
                        for (size_t i = 0; i < m; i++)
                                fprintf(stderr, "%02x", out[i]);
                        fprintf(stderr, "\n");
                }
                if (clean) {
                        ldns_pkt *p = NULL;
                        ldns_status st = ldns_wire2pkt(&p, out, m);
                        if (st != LDNS_STATUS_OK)
                                fprintf(stderr, "fuzz_relay: cached response unreadable: %s\n",
                                        ldns_get_errorstr_by_id(st));
                        FUZZ_CHECK(st == LDNS_STATUS_OK);
                        ldns_pkt_free(p);
                }
        }
        free(out);
        vd_cache_free(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        size_t qlen = data[0];
        if (size < 1 + qlen + 2)
                return 0;
        size_t max_len = pick_len(data[1 + qlen]);
        size_t cap = pick_len(data[2 + qlen]);
        const uint8_t *answer = data + 3 + qlen;
        size_t answer_len = size - 3 - qlen;

        /* Own heap copies, exactly sized, so ASan catches any read or write past the end. */
        uint8_t *query = malloc(qlen ? qlen : 1);
        uint8_t *out = malloc(cap ? cap : 1);
        FUZZ_CHECK(query != NULL && out != NULL);
        memcpy(query, data + 1, qlen);

        vd_query_info qi;
        if (vd_wire_parse_query(query, qlen, &qi) != VD_PARSE_OK)
                goto out;

        size_t n = vd_forward_relay(&qi, answer, answer_len, max_len, out, cap);
        FUZZ_CHECK(n <= max_len);
        FUZZ_CHECK(n <= cap);
        if (n == 0)
                goto out;
        if (getenv("FUZZ_VERBOSE") != NULL) { /* triage: the response in hex */
                fprintf(stderr, "fuzz_relay: max_len=%zu cap=%zu response=", max_len, cap);
                for (size_t i = 0; i < n; i++)
                        fprintf(stderr, "%02x", out[i]);
                fprintf(stderr, "\n");
        }

        fuzz_check_header(&qi, out, n);
        uint16_t flags = vd_wire_get16(out + 2);
        uint16_t up_flags = vd_wire_get16(answer + 2);
        FUZZ_CHECK(!(flags & VD_FLAG_AA)); /* we answer as a recursive service */
        FUZZ_CHECK(flags & VD_FLAG_RA);
        FUZZ_CHECK((flags & VD_FLAG_RD) == (qi.flags & VD_FLAG_RD));
        /* Either every record passes (upstream's OPT replaced by ours, or dropped), or the
         * additional section and then the authority section (of an answer with records in
         * its answer section) were left out without TC, or we truncated: TC, header, question
         * and at most our OPT. */
        unsigned up_opt = has_type(answer, answer_len, VD_TYPE_OPT) ? 1 : 0;
        unsigned up_sigs = dropped_signatures(answer, answer_len);
        unsigned our_opt = qi.has_edns ? 1u : 0u;
        uint16_t an = vd_wire_get16(out + 6), ns = vd_wire_get16(out + 8);
        uint16_t ar = vd_wire_get16(out + 10);
        uint16_t up_an = vd_wire_get16(answer + 6), up_ns = vd_wire_get16(answer + 8);
        bool passed = an == up_an && ns == up_ns &&
                      ar + up_opt + up_sigs == vd_wire_get16(answer + 10) + our_opt;
        bool tc_ours = (flags & VD_FLAG_TC) && !(up_flags & VD_FLAG_TC);
        bool no_additional = !passed && an == up_an && ns == up_ns && ar == our_opt && !tc_ours;
        bool no_authority =
            !passed && an == up_an && an > 0 && up_ns > 0 && ns == 0 && ar == our_opt && !tc_ours;
        bool truncated = (flags & VD_FLAG_TC) && an == 0 && ns == 0 && ar == our_opt;
        FUZZ_CHECK(passed || no_additional || no_authority || truncated);
        int kept = passed ? 3 : no_additional ? 2 : no_authority ? 1 : 0;

        /* The relay copies rdata without reading it, so an upstream answer that ldns reads
         * differently (see fuzz_ldns_agrees) may come out just as unreadable. A clean one
         * must come out clean, with every record unchanged. */
        /* TSIG and SIG(0) sign the upstream's message and are not relayed: records then differ
         * on purpose, so such answers are not compared record by record. */
        bool clean = fuzz_ldns_agrees(answer, answer_len) && up_sigs == 0;
        check_cache(&qi, answer, answer_len, max_len, cap, clean);
        if (getenv("FUZZ_VERBOSE") != NULL)
                fprintf(stderr, "fuzz_relay: upstream clean=%d response clean=%d\n", clean,
                        fuzz_ldns_agrees(out, n));
        if (!clean)
                goto out;
        if (!fuzz_ldns_agrees(out, n)) {
                ldns_pkt *bad = NULL;
                fprintf(stderr, "fuzz_relay: clean upstream answer, unreadable response: %s\n",
                        ldns_get_errorstr_by_id(ldns_wire2pkt(&bad, out, n)));
                ldns_pkt_free(bad);
                FUZZ_CHECK(!"response from a clean answer reads back clean");
        }
        fuzz_check_response(&qi, out, n);
        ldns_pkt *resp = NULL, *up = NULL;
        FUZZ_CHECK(ldns_wire2pkt(&resp, out, n) == LDNS_STATUS_OK);
        FUZZ_CHECK(ldns_wire2pkt(&up, answer, answer_len) == LDNS_STATUS_OK);
        FUZZ_CHECK(ldns_pkt_edns(resp) == qi.has_edns);
        if (kept > 0) {
                check_sections_equal(up, resp, kept);
                FUZZ_CHECK(ldns_pkt_get_rcode(up) == ldns_pkt_get_rcode(resp));
        }
        ldns_pkt_free(up);
        ldns_pkt_free(resp);
out:
        free(out);
        free(query);
        return 0;
}
