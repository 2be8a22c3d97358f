/* test_query.c — the query pipeline's header policy without local data or upstream, and the
 * minimal answer to ANY (RFC 8482). */
#include <criterion/criterion.h>
#include <string.h>

#include "vpcdns/query.h"
#include "vpcdns/wire.h"

static size_t make_query(uint8_t *buf)
{
        static const uint8_t q[] = {0xbe, 0xef, 0x01, 0x00, 0,   1,   0,   0,   0, 0, 0, 0, 1, 'A',
                                    7,    'e',  'x',  'a',  'm', 'p', 'l', 'e', 0, 0, 1, 0, 1};
        memcpy(buf, q, sizeof(q));
        return sizeof(q);
}

static vd_query_outcome run(vd_query_env *env, const uint8_t *pkt, size_t len, uint8_t *out,
                            size_t *out_len)
{
        return vd_query_handle(env, pkt, len, false, out, 1232, out_len, NULL, NULL);
}

Test(query, pipeline_outcomes_without_data_or_upstream)
{
        vd_query_env env = {0};
        uint8_t pkt[512], out[1232];
        size_t len = make_query(pkt), out_len = 0;
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL, "no upstream: SERVFAIL");
        cr_assert_eq(out[0], 0xbe);
        cr_assert(out[2] & 0x01, "RD echoed");
        cr_assert(out[3] & 0x80, "RA set");
        cr_assert_not(out[2] & 0x04, "AA clear");
        pkt[len - 1] = 3; /* class CH */
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_REFUSED);
        len = make_query(pkt);
        pkt[len - 3] = 252; /* AXFR */
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_REFUSED);
        pkt[2] |= 0x80;
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_DROP);
        len = make_query(pkt);
        pkt[5] = 2;
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_FORMERR);
        cr_assert_eq(out_len, VD_HEADER_LEN, "no question echoed when it cannot be read");
        cr_assert_eq(env.counters.queries, 5);
        cr_assert_eq(env.counters.dropped, 1);
}

/* ---- ANY (RFC 8482) ---------------------------------------------------------------------------
 */

/* "ExAmple.Net" type ANY, with an OPT record (payload 1232, DO set) when edns. */
static size_t make_any(uint8_t *buf, bool edns)
{
        static const uint8_t q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0,   0,
                                    0,    0,    7,    'E',  'x', 'A', 'm', 'p', 'l', 'e',
                                    3,    'N',  'e',  't',  0,   0,   255, 0,   1};
        static const uint8_t opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0};
        memcpy(buf, q, sizeof(q));
        if (!edns)
                return sizeof(q);
        buf[11] = 1; /* ARCOUNT */
        memcpy(buf + sizeof(q), opt, sizeof(opt));
        return sizeof(q) + sizeof(opt);
}

/* Asserts out holds the RFC 8482 answer for make_any()'s question; returns the offset just
 * past the HINFO record. */
static size_t expect_hinfo(const uint8_t *out, size_t out_len)
{
        static const uint8_t hinfo[] = {0xC0, 0x0C, 0,   13,  0,   1,   0,   0,   0x0E, 0x10, 0,
                                        9,    7,    'R', 'F', 'C', '8', '4', '8', '2',  0};
        cr_assert_eq(out[0], 0x12);
        cr_assert_eq(out[1], 0x34);
        cr_assert(out[2] & 0x80, "QR");
        cr_assert_eq(out[3] & 0xF, VD_RCODE_NOERROR, "ANY must be answered, not SERVFAIL");
        cr_assert_eq(vd_wire_get16(out + 4), 1);
        cr_assert_eq(vd_wire_get16(out + 6), 1, "exactly one answer record");
        cr_assert_eq(vd_wire_get16(out + 8), 0);
        size_t question_end = VD_HEADER_LEN + 13 + 4;
        cr_assert_geq(out_len, question_end + sizeof(hinfo));
        cr_assert_eq(memcmp(out + VD_HEADER_LEN + 1, "ExAmple", 7), 0, "question case kept");
        cr_assert_eq(memcmp(out + question_end, hinfo, sizeof(hinfo)), 0,
                     "not an HINFO \"RFC8482\" \"\" with TTL 3600 owned by the question name");
        return question_end + sizeof(hinfo);
}

Test(query, any_is_answered_minimally_without_upstream)
{
        vd_query_env env = {0};
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, false);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        size_t end = expect_hinfo(out, out_len);
        cr_assert_eq(out_len, end, "no OPT for a client without EDNS");
        cr_assert_eq(vd_wire_get16(out + 10), 0);
        cr_assert_eq(env.counters.servfail, 0);
        cr_assert_eq(env.counters.forwarded, 0);
}

Test(query, any_with_edns_gets_opt_and_ignores_forward_denial)
{
        vd_query_env env = {0};
        env.forward_denied = true; /* over its pending cap: ANY needs no upstream anyway */
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, true);
        cr_assert_eq(vd_query_handle(&env, pkt, len, true, out, sizeof(out), &out_len, NULL, NULL),
                     VD_QUERY_REPLY);
        size_t end = expect_hinfo(out, out_len);
        cr_assert_eq(vd_wire_get16(out + 10), 1, "OPT in the additional section");
        cr_assert_eq(out_len, end + 11);
        cr_assert_eq(out[end], 0);
        cr_assert_eq(vd_wire_get16(out + end + 1), VD_TYPE_OPT);
        cr_assert_eq(env.counters.forward_denied, 0);
}

Test(query, any_at_a_local_name_returns_its_records)
{
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len = 0;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        static const uint8_t a_rdata[] = {10, 1, 2, 3};
        vd_builder *b = vd_builder_new();
        cr_assert_not_null(b);
        cr_assert_eq(vd_name_from_text("example.net", owner, &owner_len), 0);
        cr_assert_eq(vd_builder_add_rr(b, owner, VD_TYPE_A, 60, a_rdata, 4, "test", &err), 0, "%s",
                     err.msg);
        cr_assert_eq(vd_builder_finish(b, &snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);

        vd_query_env env = {0};
        env.snapshot = snap;
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, false);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_NOERROR);
        cr_assert_eq(vd_wire_get16(out + 6), 1);
        size_t rr = VD_HEADER_LEN + 13 + 4;
        size_t pos = rr;
        uint16_t type = 0;
        size_t fixed = 0;
        cr_assert_eq(vd_wire_skip_rr(out, out_len, &pos, &type, &fixed), 0);
        cr_assert_eq(type, VD_TYPE_A, "a local name answers ANY with its own RRsets, not HINFO");
        cr_assert_eq(memcmp(out + pos - 4, a_rdata, 4), 0);
        vd_snapshot_unref(snap);
}
