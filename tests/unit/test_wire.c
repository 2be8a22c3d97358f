/* test_wire.c — the bounds-checked reader: every malformed-input class gets its defined
 * outcome, and the response writer echoes what RFC 1035/6891 say it must. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vpcdns/wire.h"

/* A query for "a.example." type A, id 0xbeef, RD set; with_opt appends an OPT record. */
static size_t make_query(uint8_t *buf, bool with_opt)
{
        static const uint8_t q[] = {0xbe, 0xef, 0x01, 0x00, 0,   1,   0,   0,   0, 0, 0, 0, 1, 'A',
                                    7,    'e',  'x',  'a',  'm', 'p', 'l', 'e', 0, 0, 1, 0, 1};
        memcpy(buf, q, sizeof(q));
        size_t len = sizeof(q);
        if (with_opt) {
                static const uint8_t opt[] = {0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0};
                memcpy(buf + len, opt, sizeof(opt));
                len += sizeof(opt);
                buf[11] = 1;
        }
        return len;
}

Test(wire, parses_a_plain_query)
{
        uint8_t pkt[512];
        size_t len = make_query(pkt, false);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_OK);
        cr_assert_eq(qi.id, 0xbeef);
        cr_assert_eq(qi.qtype, 1);
        cr_assert_eq(qi.labels, 2);
        cr_assert_eq(qi.qname_len, 11);
        cr_assert_eq(memcmp(qi.qname_lower, "\1a\7example", 11), 0);
        cr_assert_eq(qi.qname[1], 'A', "the as-sent pointer keeps the client's case");
        cr_assert_not(qi.has_edns);
        cr_assert_eq(vd_wire_client_udp_max(&qi), 512);
}

Test(wire, parses_edns)
{
        uint8_t pkt[512];
        size_t len = make_query(pkt, true);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_OK);
        cr_assert(qi.has_edns);
        cr_assert(qi.edns_do);
        cr_assert_eq(qi.edns_udp_size, 4096);
        cr_assert_eq(vd_wire_client_udp_max(&qi), VD_UDP_PAYLOAD);
}

/* The question is lower-cased eight octets at a time: every octet value, at every position
 * of the word, comes out as the one-octet rule says (only 'A'..'Z' change). */
Test(wire, every_octet_value_is_lower_cased_as_ascii_says)
{
        for (unsigned round = 0; round < 16; round++) {
                unsigned shift = round % 8;
                uint8_t pkt[512] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
                size_t len = VD_HEADER_LEN, label_at[4];
                unsigned value = round < 8 ? 0 : 128; /* two rounds cover all 256 values */
                for (int l = 0; l < 4; l++) {
                        size_t n = l == 0 ? 62 - shift : 62;
                        label_at[l] = len;
                        pkt[len++] = (uint8_t)n;
                        for (size_t i = 0; i < n; i++)
                                pkt[len++] = (uint8_t)(value++ & 0xFF);
                }
                pkt[len++] = 0;
                size_t name_len = len - VD_HEADER_LEN;
                pkt[len++] = 0;
                pkt[len++] = 1;
                pkt[len++] = 0;
                pkt[len++] = 1;
                vd_query_info qi;
                cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_OK);
                cr_assert_eq(qi.qname_len, name_len);
                for (size_t i = 0; i < name_len; i++) {
                        uint8_t c = pkt[VD_HEADER_LEN + i];
                        bool is_length = false;
                        for (int l = 0; l < 4; l++)
                                is_length = is_length || VD_HEADER_LEN + i == label_at[l];
                        uint8_t want = (!is_length && c >= 'A' && c <= 'Z') ? c + 32 : c;
                        cr_assert_eq(qi.qname_lower[i], want, "octet %zu (0x%02x), shift %u", i, c,
                                     shift);
                }
        }
}

Test(wire, short_packets_and_responses_are_dropped)
{
        uint8_t pkt[512];
        vd_query_info qi;
        size_t len = make_query(pkt, false);
        for (size_t n = 0; n < VD_HEADER_LEN; n++)
                cr_assert_eq(vd_wire_parse_query(pkt, n, &qi), VD_PARSE_DROP);
        pkt[2] |= 0x80;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_DROP);
}

Test(wire, every_truncation_of_the_question_is_formerr)
{
        uint8_t pkt[512];
        vd_query_info qi;
        size_t len = make_query(pkt, false);
        for (size_t n = VD_HEADER_LEN; n < len; n++)
                cr_assert_eq(vd_wire_parse_query(pkt, n, &qi), VD_PARSE_FORMERR, "len %zu", n);
}

Test(wire, bad_counts_are_formerr)
{
        uint8_t pkt[512];
        vd_query_info qi;
        size_t len = make_query(pkt, false);
        pkt[5] = 0;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_FORMERR);
        pkt[5] = 2;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_FORMERR);
        pkt[5] = 1;
        pkt[7] = 1; /* an answer record that is not there */
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_FORMERR);
        pkt[7] = 0;
        pkt[11] = 200;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_FORMERR);
}

Test(wire, trailing_garbage_is_formerr)
{
        uint8_t pkt[512];
        vd_query_info qi;
        size_t len = make_query(pkt, false);
        pkt[len] = 0x55;
        cr_assert_eq(vd_wire_parse_query(pkt, len + 1, &qi), VD_PARSE_FORMERR);
}

Test(wire, other_opcodes_are_notimp_with_the_question)
{
        uint8_t pkt[512];
        vd_query_info qi;
        size_t len = make_query(pkt, false);
        pkt[2] |= (uint8_t)(2 << 3); /* STATUS */
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_NOTIMP);
        uint8_t out[512];
        size_t n = vd_wire_error_response(&qi, VD_RCODE_NOTIMP, out, sizeof(out));
        cr_assert_eq(n, len);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_NOTIMP);
        cr_assert_eq((out[2] >> 3) & 0xF, 2, "opcode echoed");
}

Test(wire, long_labels_and_names_are_formerr)
{
        uint8_t pkt[600] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
        vd_query_info qi;
        size_t p = 12;
        pkt[p++] = 64; /* label of 64 */
        memset(pkt + p, 'a', 64);
        p += 64;
        pkt[p++] = 0;
        pkt[p++] = 0;
        pkt[p++] = 1;
        pkt[p++] = 0;
        pkt[p++] = 1;
        cr_assert_eq(vd_wire_parse_query(pkt, p, &qi), VD_PARSE_FORMERR);
        /* 5 labels of 63 = 320 octets */
        p = 12;
        for (int i = 0; i < 5; i++) {
                pkt[p++] = 63;
                memset(pkt + p, 'b', 63);
                p += 63;
        }
        pkt[p++] = 0;
        memcpy(pkt + p, "\0\1\0\1", 4);
        p += 4;
        cr_assert_eq(vd_wire_parse_query(pkt, p, &qi), VD_PARSE_FORMERR);
}

Test(wire, compression_in_the_question_is_formerr)
{
        uint8_t pkt[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(pkt, sizeof(pkt), &qi), VD_PARSE_FORMERR);
}

Test(wire, opt_rules)
{
        uint8_t pkt[512];
        vd_query_info qi;
        size_t len = make_query(pkt, true);
        /* a second OPT */
        memcpy(pkt + len, pkt + len - 11, 11);
        pkt[11] = 2;
        cr_assert_eq(vd_wire_parse_query(pkt, len + 11, &qi), VD_PARSE_FORMERR);
        /* OPT in the answer section */
        len = make_query(pkt, true);
        pkt[11] = 0;
        pkt[7] = 1;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_FORMERR);
        /* option length beyond the rdata */
        len = make_query(pkt, true);
        static const uint8_t bad_opt[] = {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 6, 0, 10, 0, 9, 1, 2};
        memcpy(pkt + len - 11, bad_opt, sizeof(bad_opt));
        cr_assert_eq(vd_wire_parse_query(pkt, len - 11 + sizeof(bad_opt), &qi), VD_PARSE_FORMERR);
        /* version 1 */
        len = make_query(pkt, true);
        pkt[len - 5] = 1;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_BADVERS);
        uint8_t out[512];
        size_t n = vd_wire_error_response(&qi, VD_RCODE_BADVERS, out, sizeof(out));
        cr_assert_eq(out[3] & 0xF, 0);
        cr_assert_eq(out[n - 6], 1, "extended rcode 1 in the OPT TTL: BADVERS = 16");
}

Test(wire, read_name_rejects_loops_forward_pointers_and_header_pointers)
{
        uint8_t out[VD_NAME_MAX];
        size_t olen, pos;
        /* header (12) then: name "a" + pointer to itself-ish loops */
        uint8_t msg[64] = {0};
        msg[12] = 1;
        msg[13] = 'a';
        msg[14] = 0xC0;
        msg[15] = 12; /* a.<pointer to a.> : loop */
        pos = 12;
        cr_assert_neq(vd_wire_read_name(msg, 16, &pos, out, &olen, true), 0);
        msg[15] = 20; /* forward pointer */
        pos = 12;
        cr_assert_neq(vd_wire_read_name(msg, 24, &pos, out, &olen, true), 0);
        msg[15] = 2; /* into the header */
        pos = 12;
        cr_assert_neq(vd_wire_read_name(msg, 16, &pos, out, &olen, true), 0);
        /* a valid backward pointer */
        msg[16] = 1;
        msg[17] = 'B';
        msg[18] = 0xC0;
        msg[19] = 20;
        msg[20] = 1;
        msg[21] = 'c';
        msg[22] = 0;
        msg[23] = 0xC0;
        msg[24] = 16;
        pos = 23;
        cr_assert_eq(vd_wire_read_name(msg, 25, &pos, out, &olen, true), -EBADMSG,
                     "16 -> 20 is forward");
        pos = 20;
        cr_assert_eq(vd_wire_read_name(msg, 25, &pos, out, &olen, true), 0);
        cr_assert_eq(pos, 23);
        cr_assert_eq(olen, 3);
}

Test(wire, name_text_round_trip)
{
        uint8_t w[VD_NAME_MAX];
        size_t len;
        char text[1024];
        cr_assert_eq(vd_name_from_text("Sqs.US-east-1.amazonaws.com", w, &len), 0);
        cr_assert_eq(len, 29);
        cr_assert_eq(vd_name_to_text(w, text, sizeof(text)), 0);
        cr_assert_str_eq(text, "sqs.us-east-1.amazonaws.com.");
        cr_assert_eq(vd_name_from_text("*.s3.eu-west-1.amazonaws.com.", w, &len), 0);
        cr_assert_eq(vd_name_from_text(".", w, &len), 0);
        cr_assert_eq(len, 1);
        cr_assert_neq(vd_name_from_text("", w, &len), 0);
        cr_assert_neq(vd_name_from_text("a..b", w, &len), 0);
        cr_assert_neq(vd_name_from_text(".a", w, &len), 0);
        cr_assert_neq(vd_name_from_text("a.*.b", w, &len), 0);
        cr_assert_neq(vd_name_from_text("a b.c", w, &len), 0);
        char big[300];
        memset(big, 'x', 64);
        big[64] = 0;
        cr_assert_neq(vd_name_from_text(big, w, &len), 0, "label of 64");
        big[63] = 0;
        cr_assert_eq(vd_name_from_text(big, w, &len), 0, "label of 63");
        cr_assert_eq(len, 65);
        cr_assert_neq(vd_name_from_text("**.a", w, &len), 0);
        cr_assert_neq(vd_name_from_text("*a.b", w, &len), 0);
        cr_assert_neq(vd_name_from_text("a*.b", w, &len), 0);
        cr_assert_eq(vd_name_from_text("*.*", w, &len), -EINVAL, "a second '*' label");

        /* 255 octets on the wire: three labels of 63 and one of 61, and not one more */
        size_t o = 0;
        for (int i = 0; i < 3; i++) {
                memset(big + o, 'a' + i, 63);
                big[o + 63] = '.';
                o += 64;
        }
        memset(big + o, 'd', 61);
        big[o + 61] = 0;
        cr_assert_eq(vd_name_from_text(big, w, &len), 0);
        cr_assert_eq(len, VD_NAME_MAX);
        big[o + 61] = 'd';
        big[o + 62] = 0;
        cr_assert_neq(vd_name_from_text(big, w, &len), 0, "256 octets");
        /* a trailing dot names the same name */
        big[o + 61] = '.';
        cr_assert_eq(vd_name_from_text(big, w, &len), 0);
        cr_assert_eq(len, VD_NAME_MAX);
}

Test(wire, a_compressed_name_never_runs_past_its_pointer)
{
        uint8_t out[VD_NAME_MAX];
        size_t olen, pos;
        uint8_t msg[32] = {0};
        /* a pointer at 24 to a label at 22 whose octets run over the pointer itself */
        msg[22] = 3;
        msg[23] = 'p';
        msg[24] = 0xC0;
        msg[25] = 22;
        msg[26] = 0;
        pos = 24;
        cr_assert_eq(vd_wire_read_name(msg, 27, &pos, out, &olen, false), -EBADMSG);
        /* the same label ending before the pointer is fine */
        msg[12] = 1;
        msg[13] = 'q';
        msg[14] = 0;
        msg[15] = 0xC0;
        msg[16] = 12;
        pos = 15;
        cr_assert_eq(vd_wire_read_name(msg, 17, &pos, out, &olen, false), 0);
        cr_assert_eq(olen, 3);
        cr_assert_eq(pos, 17);
}
