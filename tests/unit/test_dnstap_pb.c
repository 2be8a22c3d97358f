/* test_dnstap_pb.c — the dnstap protobuf encoder (dnstap_pb.h): exact bytes of a small frame
 * against a hand-decoded reference, field by field through a minimal decoder, and the refusal
 * of a buffer too small. */
#include <criterion/criterion.h>
#include <string.h>

#include "vpcdns/dnstap_pb.h"

/* A minimal protobuf reader: the next field of [*p, end). */
typedef struct field {
        unsigned number, wire;
        uint64_t value;      /* varint, fixed32 */
        const uint8_t *data; /* length-delimited */
        size_t len;
} field;

static uint64_t varint(const uint8_t **p, const uint8_t *end)
{
        uint64_t v = 0;
        for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
                uint8_t b = *(*p)++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80))
                        return v;
        }
        cr_assert_fail("truncated varint");
        return 0;
}

static bool next(const uint8_t **p, const uint8_t *end, field *f)
{
        if (*p >= end)
                return false;
        uint64_t tag = varint(p, end);
        f->number = (unsigned)(tag >> 3);
        f->wire = (unsigned)(tag & 7);
        switch (f->wire) {
        case 0:
                f->value = varint(p, end);
                break;
        case 2:
                f->len = (size_t)varint(p, end);
                cr_assert_leq(f->len, (size_t)(end - *p));
                f->data = *p;
                *p += f->len;
                break;
        case 5:
                cr_assert_leq(4, end - *p);
                f->value = (uint64_t)(*p)[0] | (uint64_t)(*p)[1] << 8 | (uint64_t)(*p)[2] << 16 |
                           (uint64_t)(*p)[3] << 24;
                *p += 4;
                break;
        default:
                cr_assert_fail("unexpected wire type %u", f->wire);
        }
        return true;
}

Test(dnstap_pb, small_frame_exact_bytes)
{
        static const uint8_t addr[4] = {127, 0, 0, 1};
        static const uint8_t q[3] = {0xAB, 0xCD, 0xEF};
        vd_dnstap_msg m = {.type = VD_DNSTAP_CLIENT_QUERY,
                           .family = VD_DNSTAP_INET,
                           .protocol = VD_DNSTAP_UDP,
                           .query_address = addr,
                           .address_len = 4,
                           .query_port = 300,
                           .has_query_time = true,
                           .query_time_sec = 1,
                           .query_time_nsec = 2,
                           .query_message = q,
                           .query_message_len = 3};
        uint8_t out[128];
        size_t n = vd_dnstap_encode(&m, "x", NULL, out, sizeof(out));
        static const uint8_t want[] = {
            0x0a, 1,    'x',                 /* identity = "x" */
            0x72, 27,                        /* message, 27 bytes: */
            0x08, 5,                         /*   type CLIENT_QUERY */
            0x10, 1,                         /*   socket_family INET */
            0x18, 1,                         /*   socket_protocol UDP */
            0x22, 4,    127,  0,    0,    1, /*   query_address */
            0x30, 0xAC, 0x02,                /*   query_port 300 */
            0x40, 1,                         /*   query_time_sec 1 */
            0x4d, 2,    0,    0,    0,       /*   query_time_nsec 2 (fixed32) */
            0x52, 3,    0xAB, 0xCD, 0xEF,    /* query_message */
            0x78, 1,                         /* type MESSAGE */
        };
        cr_assert_eq(n, sizeof(want));
        cr_assert_arr_eq(out, want, sizeof(want));
}

Test(dnstap_pb, response_fields_decode_back)
{
        static uint8_t addr6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static uint8_t local6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
        static uint8_t resp[300];
        memset(resp, 0x5a, sizeof(resp)); /* long enough for a 2-byte length */
        vd_dnstap_msg m = {.type = VD_DNSTAP_CLIENT_RESPONSE,
                           .family = VD_DNSTAP_INET6,
                           .protocol = VD_DNSTAP_TCP,
                           .query_address = addr6,
                           .response_address = local6,
                           .address_len = 16,
                           .query_port = 65535,
                           .response_port = 53,
                           .has_response_time = true,
                           .response_time_sec = 1780000000,
                           .response_time_nsec = 999999999,
                           .response_message = resp,
                           .response_message_len = sizeof(resp)};
        uint8_t out[512];
        size_t n = vd_dnstap_encode(&m, "vpcdns", "1.2.3", out, sizeof(out));
        cr_assert_gt(n, 0);
        const uint8_t *p = out, *end = out + n, *mp = NULL, *mend = NULL;
        field f;
        unsigned seen = 0;
        while (next(&p, end, &f)) {
                if (f.number == 1)
                        cr_assert(f.len == 6 && memcmp(f.data, "vpcdns", 6) == 0);
                else if (f.number == 2)
                        cr_assert(f.len == 5 && memcmp(f.data, "1.2.3", 5) == 0);
                else if (f.number == 14) {
                        mp = f.data;
                        mend = f.data + f.len;
                } else if (f.number == 15)
                        cr_assert_eq(f.value, 1);
                else
                        cr_assert_fail("Dnstap field %u", f.number);
                seen |= 1u << f.number;
        }
        cr_assert_eq(seen, (1u << 1) | (1u << 2) | (1u << 14) | (1u << 15));
        seen = 0;
        while (next(&mp, mend, &f)) {
                seen |= 1u << f.number;
                switch (f.number) {
                case 1:
                        cr_assert_eq(f.value, 6);
                        break;
                case 2:
                        cr_assert_eq(f.value, 2);
                        break;
                case 3:
                        cr_assert_eq(f.value, 2);
                        break;
                case 4:
                        cr_assert(f.len == 16 && memcmp(f.data, addr6, 16) == 0);
                        break;
                case 5:
                        cr_assert(f.len == 16 && memcmp(f.data, local6, 16) == 0);
                        break;
                case 6:
                        cr_assert_eq(f.value, 65535);
                        break;
                case 7:
                        cr_assert_eq(f.value, 53);
                        break;
                case 12:
                        cr_assert_eq(f.value, 1780000000);
                        break;
                case 13:
                        cr_assert_eq(f.wire, 5);
                        cr_assert_eq(f.value, 999999999);
                        break;
                case 14:
                        cr_assert(f.len == sizeof(resp) && memcmp(f.data, resp, f.len) == 0);
                        break;
                default:
                        cr_assert_fail("Message field %u", f.number);
                }
        }
        unsigned want = 0;
        for (unsigned i = 1; i <= 7; i++)
                want |= 1u << i;
        want |= (1u << 12) | (1u << 13) | (1u << 14);
        cr_assert_eq(seen, want);
}

Test(dnstap_pb, too_small_a_buffer_gives_zero)
{
        static const uint8_t q[100] = {0};
        vd_dnstap_msg m = {.type = VD_DNSTAP_CLIENT_QUERY,
                           .family = VD_DNSTAP_INET,
                           .protocol = VD_DNSTAP_UDP,
                           .query_message = q,
                           .query_message_len = sizeof(q)};
        uint8_t out[256];
        size_t full = vd_dnstap_encode(&m, "vpcdns", NULL, out, sizeof(out));
        cr_assert_gt(full, 100);
        for (size_t cap = 0; cap < full; cap++)
                cr_assert_eq(vd_dnstap_encode(&m, "vpcdns", NULL, out, cap), 0, "cap %zu", cap);
        cr_assert_eq(vd_dnstap_encode(&m, "vpcdns", NULL, out, full), full);
}
