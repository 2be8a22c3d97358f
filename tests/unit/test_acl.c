/* test_acl.c — prefix text, the default allow list and matching of client addresses
 * (resolver/acl.c): who may query a vpcdns that was given no allow list, and that a strict
 * parser never silently widens or narrows what an operator wrote. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "vpcdns/acl.h"

/* A client address as a transport sees it: "192.0.2.1", "2001:db8::1", "::ffff:10.1.2.3". */
static const struct sockaddr *client(const char *text)
{
        static struct sockaddr_storage store[4];
        static int next;
        struct sockaddr_storage *ss = &store[next++ % 4];
        memset(ss, 0, sizeof(*ss));
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
                sin->sin_family = AF_INET;
                sin->sin_port = htons(40000);
        } else {
                cr_assert_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1, "%s", text);
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons(40000);
        }
        return (const struct sockaddr *)ss;
}

/* Parses each text into list (asserting success); returns the count. */
static size_t parse_list(vd_cidr *list, const char *const *texts, size_t n)
{
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(vd_cidr_parse(texts[i], &list[i]), 0, "rejected %s", texts[i]);
        return n;
}

static const char *cidr_text(const vd_cidr *c)
{
        static char out[INET6_ADDRSTRLEN + 8];
        char host[INET6_ADDRSTRLEN];
        const void *addr = c->ss.ss_family == AF_INET
                               ? (const void *)&((const struct sockaddr_in *)&c->ss)->sin_addr
                               : (const void *)&((const struct sockaddr_in6 *)&c->ss)->sin6_addr;
        cr_assert_not_null(inet_ntop(c->ss.ss_family, addr, host, sizeof(host)));
        snprintf(out, sizeof(out), "%s/%u", host, c->prefix);
        return out;
}

Test(acl, parse_accepts_and_normalizes)
{
        static const struct {
                const char *text;
                const char *want;
        } cases[] = {
            {"10.0.0.0/8", "10.0.0.0/8"},
            {"192.0.2.1", "192.0.2.1/32"},
            {"192.0.2.1/32", "192.0.2.1/32"},
            {"0.0.0.0/0", "0.0.0.0/0"},
            {"172.16.0.0/12", "172.16.0.0/12"},
            {"::1", "::1/128"},
            {"fd00::/8", "fd00::/8"},
            {"2001:db8:abcd:12::/64", "2001:db8:abcd:12::/64"},
            {"::/0", "::/0"},
            {"fe80::/10", "fe80::/10"},
            /* a mapped prefix is an IPv4 prefix: clients come in mapped on a [::] listener */
            {"::ffff:10.0.0.0/104", "10.0.0.0/8"},
            {"::ffff:192.0.2.7", "192.0.2.7/32"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                vd_cidr c;
                cr_assert_eq(vd_cidr_parse(cases[i].text, &c), 0, "rejected %s", cases[i].text);
                cr_assert_str_eq(cidr_text(&c), cases[i].want, "%s", cases[i].text);
        }
}

Test(acl, parse_rejects)
{
        static const char *const bad[] = {
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.1/8",  /* host bits set */
            "10.0.0.0/33", /* beyond the family */
            "::/129",
            "fe80::1/10",  /* host bits set */
            "10.0.0.0/08", /* leading zero in the length */
            "10.0.0.0/-8",
            "10.0.0.0/+8",
            "10.0.0.0/8 ",
            " 10.0.0.0/8",
            "10.0.0.0/8/8",
            "10.0.0/8", /* short IPv4 forms are not addresses */
            "010.0.0.0/8",
            "256.0.0.0/8",
            "10.0.0.0/x",
            "fe80::1%eth0", /* no scope ids in prefixes */
            "fe80::%1/64",
            "example.com",
            "10.0.0.0/4294967304", /* 2^32 + 8 must not wrap to 8 */
            "[::1]/128",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                vd_cidr c;
                cr_assert_eq(vd_cidr_parse(bad[i], &c), -EINVAL, "accepted '%s'", bad[i]);
        }
        vd_cidr c;
        cr_assert_eq(vd_cidr_parse(NULL, &c), -EINVAL);
}

Test(acl, match_ipv4_prefixes)
{
        static const char *const texts[] = {"10.0.0.0/8", "192.0.2.128/25", "198.51.100.7"};
        vd_cidr list[3];
        size_t n = parse_list(list, texts, 3);
        cr_assert(vd_acl_match(list, n, client("10.255.1.2")));
        cr_assert(vd_acl_match(list, n, client("10.0.0.0")));
        cr_assert_not(vd_acl_match(list, n, client("11.0.0.1")));
        cr_assert_not(vd_acl_match(list, n, client("9.255.255.255")));
        cr_assert(vd_acl_match(list, n, client("192.0.2.128")));
        cr_assert(vd_acl_match(list, n, client("192.0.2.255")));
        cr_assert_not(vd_acl_match(list, n, client("192.0.2.127")), "/25 boundary");
        cr_assert(vd_acl_match(list, n, client("198.51.100.7")));
        cr_assert_not(vd_acl_match(list, n, client("198.51.100.8")), "a host is /32");
        cr_assert_not(vd_acl_match(list, n, client("::ffff:11.0.0.1")));
        cr_assert(vd_acl_match(list, n, client("::ffff:10.9.8.7")), "mapped counts as IPv4");
        cr_assert_not(vd_acl_match(list, n, client("::a00:1")), "IPv4-compatible is IPv6");
        cr_assert_not(vd_acl_match(list, 0, client("10.0.0.1")), "an empty list allows none");
}

Test(acl, match_ipv6_prefixes)
{
        static const char *const texts[] = {"2001:db8::/33", "fd12:3456:789a::/48", "::1"};
        vd_cidr list[3];
        size_t n = parse_list(list, texts, 3);
        cr_assert(vd_acl_match(list, n, client("2001:db8:7fff:ffff::1")));
        cr_assert_not(vd_acl_match(list, n, client("2001:db8:8000::1")), "/33 boundary");
        cr_assert(vd_acl_match(list, n, client("fd12:3456:789a:1::53")));
        cr_assert_not(vd_acl_match(list, n, client("fd12:3456:789b::53")));
        cr_assert(vd_acl_match(list, n, client("::1")));
        cr_assert_not(vd_acl_match(list, n, client("::2")));
        cr_assert_not(vd_acl_match(list, n, client("127.0.0.1")), "families do not mix");
}

Test(acl, prefix_zero_matches_its_family_only)
{
        vd_cidr v4, v6;
        cr_assert_eq(vd_cidr_parse("0.0.0.0/0", &v4), 0);
        cr_assert_eq(vd_cidr_parse("::/0", &v6), 0);
        cr_assert(vd_acl_match(&v4, 1, client("203.0.113.9")));
        cr_assert(vd_acl_match(&v4, 1, client("::ffff:203.0.113.9")));
        cr_assert_not(vd_acl_match(&v4, 1, client("2001:db8::1")));
        cr_assert(vd_acl_match(&v6, 1, client("2001:db8::1")));
        cr_assert_not(vd_acl_match(&v6, 1, client("203.0.113.9")));
}

Test(acl, match_ignores_other_families)
{
        vd_cidr all;
        cr_assert_eq(vd_cidr_parse("0.0.0.0/0", &all), 0);
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        ss.ss_family = AF_UNIX;
        cr_assert_not(vd_acl_match(&all, 1, (const struct sockaddr *)&ss));
        cr_assert_not(vd_acl_match(&all, 1, NULL));
}

Test(acl, defaults_are_private_networks_only)
{
        vd_cidr list[VD_MAX_ACL];
        size_t n = vd_acl_defaults(list, VD_MAX_ACL);
        cr_assert_eq(n, 9);
        static const char *const allowed[] = {
            "127.0.0.1",        "127.255.255.254", "::1",
            "10.1.2.3",         "172.16.0.1",      "172.31.255.255",
            "192.168.1.1",      "169.254.169.254", "fe80::1",
            "febf::1",          "fc00::1",         "fd00:ec2::253",
            "100.64.0.1",       "100.127.255.254", "::ffff:10.0.0.2",
            "::ffff:127.0.0.1",
        };
        static const char *const refused[] = {
            "8.8.8.8",        "172.15.255.255", "172.32.0.0",  "192.169.0.1",
            "100.63.255.255", "100.128.0.0",    "169.253.0.1", "2001:db8::1",
            "fec0::1",        "fe00::1",        "::2",         "::",
            "0.0.0.0",        "::ffff:8.8.8.8", "11.0.0.1",
        };
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                cr_assert(vd_acl_match(list, n, client(allowed[i])), "%s refused", allowed[i]);
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                cr_assert_not(vd_acl_match(list, n, client(refused[i])),
                              "%s allowed: vpcdns would be an open resolver", refused[i]);
}

Test(acl, defaults_respect_capacity)
{
        vd_cidr list[3];
        memset(list, 0xAA, sizeof(list));
        cr_assert_eq(vd_acl_defaults(list, 2), 2);
        cr_assert_str_eq(cidr_text(&list[0]), "127.0.0.0/8");
        cr_assert_str_eq(cidr_text(&list[1]), "::1/128");
        cr_assert_eq(list[2].prefix, 0xAAAAAAAAu, "wrote past the capacity");
        cr_assert_eq(vd_acl_defaults(NULL, 0), 0);
}
