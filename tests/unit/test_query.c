/* test_query.c — the query pipeline's header policy without local data or upstream. */
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
