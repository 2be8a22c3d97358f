/* test_qlog_route53.c — the route53 line formatter (vd_qlog_route53_format, qlog.h): the
 * fields and their order for an answer with records of several types, compressed names,
 * escaping of odd bytes, NXDOMAIN without answers, malformed messages (empty fields, never a
 * crash), a buffer too small, and a JSON parser (cJSON) reading back every line: all 256 byte
 * values in a name, random answers of every type. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "vpcdns/qlog.h"

static const vd_qlog_route53_meta META = {.account_id = "",
                                          .region = "",
                                          .vpc_id = "",
                                          .timestamp = "2026-12-03T04:59:13.899Z",
                                          .srcaddr = "10.0.1.17",
                                          .srcport = 41055,
                                          .tcp = false,
                                          .endpoint = "10.0.0.2:53"};

/* A response for www.example.com./A with: A, CNAME (compressed), MX, TXT with a quote and a
 * control byte, and an unknown type. */
static const uint8_t RESPONSE[] = {
    0x12, 0x34, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0,
    /* question at 12: www.example.com. A IN */
    3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1,
    /* A 192.0.2.10 */
    0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 10,
    /* CNAME a.example.com. (a + pointer to example.com. at 16) */
    0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, 'a', 0xC0, 16,
    /* MX 10 example.com. */
    0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 4, 0, 10, 0xC0, 16,
    /* TXT "a\"b\001 c" */
    0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 7, 6, 'a', '"', 'b', 1, ' ', 'c',
    /* TYPE65280, 2 bytes */
    0xC0, 12, 0xFF, 0x00, 0, 1, 0, 0, 0, 60, 0, 2, 0xAB, 0xCD};

Test(qlog_route53, every_field_in_order)
{
        char line[4096];
        size_t n = vd_qlog_route53_format(RESPONSE, sizeof(RESPONSE), &META, line, sizeof(line));
        cr_assert_gt(n, 0);
        line[n] = '\0';
        const char *want =
            "{\"version\":\"1.100000\",\"account_id\":\"\",\"region\":\"\",\"vpc_id\":\"\","
            "\"query_timestamp\":\"2026-12-03T04:59:13.899Z\",\"query_name\":\"www.example.com.\","
            "\"query_type\":\"A\",\"query_class\":\"IN\",\"rcode\":\"NOERROR\",\"answers\":["
            "{\"Rdata\":\"192.0.2.10\",\"Type\":\"A\",\"Class\":\"IN\"},"
            "{\"Rdata\":\"a.example.com.\",\"Type\":\"CNAME\",\"Class\":\"IN\"},"
            "{\"Rdata\":\"10 example.com.\",\"Type\":\"MX\",\"Class\":\"IN\"},"
            "{\"Rdata\":\"\\\"a\\\\\\\"b\\\\001 c\\\"\",\"Type\":\"TXT\",\"Class\":\"IN\"},"
            "{\"Rdata\":\"\\\\# 2 abcd\",\"Type\":\"TYPE65280\",\"Class\":\"IN\"}],"
            "\"srcaddr\":\"10.0.1.17\",\"srcport\":\"41055\",\"transport\":\"UDP\","
            "\"srcids\":{\"resolver_endpoint\":\"10.0.0.2:53\"}}\n";
        cr_assert_str_eq(line, want);
        cr_assert_eq(n, strlen(want));
}

Test(qlog_route53, nxdomain_over_tcp_has_no_answers)
{
        uint8_t r[64];
        memcpy(r, RESPONSE, 33);
        r[3] = 0x83; /* NXDOMAIN */
        r[7] = 0;    /* ANCOUNT 0 */
        vd_qlog_route53_meta m = META;
        m.tcp = true;
        char line[2048];
        size_t n = vd_qlog_route53_format(r, 33, &m, line, sizeof(line));
        cr_assert_gt(n, 0);
        line[n] = '\0';
        cr_assert_not_null(strstr(line, "\"rcode\":\"NXDOMAIN\",\"answers\":[],"));
        cr_assert_not_null(strstr(line, "\"transport\":\"TCP\""));
}

Test(qlog_route53, odd_bytes_in_a_name_are_escaped)
{
        static const uint8_t r[] = {0, 0,   0x81, 0x80, 0, 1,    0, 0, 0,  0, 0, 0,
                                    3, 'a', '.',  '"',  1, 0x7f, 0, 0, 16, 0, 1};
        char line[2048];
        size_t n = vd_qlog_route53_format(r, sizeof(r), &META, line, sizeof(line));
        cr_assert_gt(n, 0);
        line[n] = '\0';
        /* a\.\". then \127. — each backslash doubled for JSON */
        cr_assert_not_null(strstr(line, "\"query_name\":\"a\\\\.\\\\\\\".\\\\127.\""), "%s", line);
        cr_assert_not_null(strstr(line, "\"query_type\":\"TXT\""));
}

Test(qlog_route53, malformed_messages_give_empty_fields)
{
        char line[2048];
        /* shorter than a header, a pointer loop, a name past the end */
        static const uint8_t loop[] = {0, 0, 0x81, 0x80, 0,  1, 0, 0, 0,
                                       0, 0, 0,    0xC0, 12, 0, 1, 0, 1};
        static const uint8_t past[] = {0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a'};
        const uint8_t *msgs[] = {RESPONSE, loop, past};
        size_t lens[] = {3, sizeof(loop), sizeof(past)};
        for (size_t i = 0; i < 3; i++) {
                size_t n = vd_qlog_route53_format(msgs[i], lens[i], &META, line, sizeof(line));
                cr_assert_gt(n, 0);
                line[n] = '\0';
                cr_assert_not_null(strstr(line, "\"query_name\":\"\",\"query_type\":\"\""), "%s",
                                   line);
                cr_assert_not_null(strstr(line, "\"answers\":[]"));
        }
        /* every truncation of a good response gives a line or nothing, never a crash */
        for (size_t len = 0; len <= sizeof(RESPONSE); len++)
                (void)vd_qlog_route53_format(RESPONSE, len, &META, line, sizeof(line));
}

Test(qlog_route53, too_small_a_buffer_gives_zero)
{
        char line[4096];
        size_t full = vd_qlog_route53_format(RESPONSE, sizeof(RESPONSE), &META, line, sizeof(line));
        cr_assert_gt(full, 0);
        for (size_t cap = 0; cap < full; cap += 7)
                cr_assert_eq(vd_qlog_route53_format(RESPONSE, sizeof(RESPONSE), &META, line, cap),
                             0);
        cr_assert_eq(vd_qlog_route53_format(RESPONSE, sizeof(RESPONSE), &META, line, full), full);
}

Test(qlog_route53, addresses_as_text)
{
        char text[INET6_ADDRSTRLEN];
        static const uint8_t zero[4] = {0, 0, 0, 0}, ones[4] = {255, 255, 255, 255},
                             mixed[4] = {10, 0, 1, 17};
        vd_qlog_ip_text(AF_INET, zero, text);
        cr_assert_str_eq(text, "0.0.0.0");
        vd_qlog_ip_text(AF_INET, ones, text);
        cr_assert_str_eq(text, "255.255.255.255");
        vd_qlog_ip_text(AF_INET, mixed, text);
        cr_assert_str_eq(text, "10.0.1.17");
        struct in6_addr six;
        cr_assert_eq(inet_pton(AF_INET6, "2001:db8::53", &six), 1);
        vd_qlog_ip_text(AF_INET6, &six, text);
        cr_assert_str_eq(text, "2001:db8::53");
}

Test(qlog_route53, numbers_as_text)
{
        char text[11];
        cr_assert_eq(vd_qlog_uint_text(0, text), 1);
        cr_assert_str_eq(text, "0");
        cr_assert_eq(vd_qlog_uint_text(65535, text), 5);
        cr_assert_str_eq(text, "65535");
        cr_assert_eq(vd_qlog_uint_text(4294967295u, text), 10);
        cr_assert_str_eq(text, "4294967295");
}

/* The lines are written by hand (qlog_route53.c says why); a JSON library reads them back
 * here. Checks one line: it parses, holds exactly the documented fields in order with their
 * types, and returns query_name as decoded text (malloc'd). */
static char *parse_line(const char *line, size_t n)
{
        static const char *const fields[] = {
            "version",    "account_id", "region",      "vpc_id", "query_timestamp",
            "query_name", "query_type", "query_class", "rcode",  "answers",
            "srcaddr",    "srcport",    "transport",   "srcids"};
        cr_assert_eq(line[n - 1], '\n');
        cr_assert_null(memchr(line, '\n', n - 1), "one line per entry");
        cJSON *root = cJSON_ParseWithLength(line, n);
        cr_assert_not_null(root, "not JSON: %.*s", (int)n, line);
        const cJSON *f = root->child;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++, f = f->next) {
                cr_assert_not_null(f, "missing %s in %s", fields[i], line);
                cr_assert_str_eq(f->string, fields[i]);
                if (strcmp(fields[i], "answers") == 0) {
                        cr_assert(cJSON_IsArray(f));
                        const cJSON *a;
                        cJSON_ArrayForEach(a, f)
                        {
                                cr_assert(cJSON_IsString(cJSON_GetObjectItem(a, "Rdata")));
                                cr_assert(cJSON_IsString(cJSON_GetObjectItem(a, "Type")));
                                cr_assert(cJSON_IsString(cJSON_GetObjectItem(a, "Class")));
                        }
                } else if (strcmp(fields[i], "srcids") == 0) {
                        cr_assert(cJSON_IsObject(f));
                } else {
                        cr_assert(cJSON_IsString(f), "%s is not a string", fields[i]);
                }
        }
        cr_assert_null(f, "a field too many in %s", line);
        char *name = strdup(cJSON_GetObjectItem(root, "query_name")->valuestring);
        cJSON_Delete(root);
        return name;
}

/* The label bytes of a presentation-form name of one label (RFC 4343: \X and \DDD). */
static size_t unpresent(const char *text, uint8_t *out)
{
        size_t n = 0;
        for (const char *p = text; *p != '\0' && *p != '.'; n++) {
                if (*p != '\\') {
                        out[n] = (uint8_t)*p++;
                } else if (p[1] >= '0' && p[1] <= '9') {
                        out[n] = (uint8_t)((p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0'));
                        p += 4;
                } else {
                        out[n] = (uint8_t)p[1];
                        p += 2;
                }
        }
        return n;
}

Test(qlog_route53, a_json_parser_reads_every_byte_of_a_name_back)
{
        /* One label of 63 bytes per message, covering all 256 byte values over five messages;
         * TXT data with the same bytes in the answer. */
        for (unsigned first = 0; first < 256; first += 63) {
                uint8_t label[63];
                for (unsigned k = 0; k < 63; k++)
                        label[k] = (uint8_t)(first + k);
                uint8_t msg[512] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0};
                size_t at = 12;
                msg[at++] = 63;
                memcpy(msg + at, label, 63);
                at += 63;
                msg[at++] = 0;
                static const uint8_t tail[] = {0, 16, 0, 1, 0xC0, 12, 0,  16, 0,
                                               1, 0,  0, 0, 60,   0,  64, 63};
                memcpy(msg + at, tail, sizeof(tail));
                at += sizeof(tail);
                memcpy(msg + at, label, 63);
                at += 63;
                char line[4096];
                size_t n = vd_qlog_route53_format(msg, at, &META, line, sizeof(line));
                cr_assert_gt(n, 0);
                char *name = parse_line(line, n);
                uint8_t back[63 * 4];
                cr_assert_eq(unpresent(name, back), 63, "%s", name);
                cr_assert_eq(memcmp(back, label, 63), 0, "%s", name);
                cr_assert_eq(name[strlen(name) - 1], '.');
                free(name);
        }
}

static uint8_t next_byte(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return (uint8_t)(*x >> 24);
}

Test(qlog_route53, a_json_parser_reads_every_line_of_random_answers)
{
        /* Answers of the types the formatter knows and some it does not, with random rdata of
         * random length (names, pointers, strings, addresses cut short or too long): whatever
         * it makes of them, the line is JSON with every field. */
        static const uint16_t types[] = {1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 257, 64, 65, 99, 7};
        uint64_t x = 0x9E3779B97F4A7C15u;
        unsigned with_answers = 0;
        for (unsigned round = 0; round < 3000; round++) {
                uint8_t msg[1024];
                memcpy(msg, RESPONSE, 33);
                size_t at = 33;
                unsigned count = 1 + next_byte(&x) % 4;
                for (unsigned i = 0; i < count; i++) {
                        uint16_t type = types[next_byte(&x) % (sizeof(types) / sizeof(types[0]))];
                        uint8_t rdlen = next_byte(&x) % 40;
                        const uint8_t head[] = {
                            0xC0, 12,   (uint8_t)(type >> 8), (uint8_t)type, 0, 1, 0, 0, 0, 60,
                            0,    rdlen};
                        memcpy(msg + at, head, sizeof(head));
                        at += sizeof(head);
                        for (unsigned k = 0; k < rdlen; k++)
                                msg[at++] = next_byte(&x);
                }
                msg[7] = (uint8_t)count;
                char line[16384];
                size_t n = vd_qlog_route53_format(msg, at, &META, line, sizeof(line) - 1);
                cr_assert_gt(n, 0);
                line[n] = '\0'; /* the formatter writes n bytes, no NUL */
                with_answers += strstr(line, "\"answers\":[]") == NULL;
                free(parse_line(line, n));
        }
        cr_assert_gt(with_answers, 1000, "too few lines with answers (%u): the test tests nothing",
                     with_answers);
}
