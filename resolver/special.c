/* special.c — the special-use names answered locally (see special.h): recognising them from the
 * question's last labels, and the one snapshot, built on first use, that answers them. */
#include <string.h>
#include <uv.h>

#include "vpcdns/special.h"

#define SPECIAL_TTL 10800
#define CLAIM "built-in special-use names (RFC 6761)"

/* Lower-case wire names, without the root octet where a suffix is compared. */
static const uint8_t localhost_name[] = "\x09localhost";
static const uint8_t invalid_name[] = "\x07invalid";
static const uint8_t loop_probe_zone[] = "\x11vpcdns-loop-check\x07invalid";
static const uint8_t v4_reverse[] = "\x03\x31\x32\x37\x07in-addr\x04\x61rpa";
static const uint8_t ip6_arpa[] = "\x03ip6\x04\x61rpa";
#define V6_NIBBLES 32

/* True when the name's last suffix_labels labels are suffix (suffix_len octets, root
 * excluded). */
static bool ends_with(const vd_query_info *qi, const uint8_t *suffix, size_t suffix_len,
                      int suffix_labels)
{
        if (qi->labels < suffix_labels)
                return false;
        size_t at = qi->label_off[qi->labels - suffix_labels];
        return qi->label_off[qi->labels] - at == suffix_len &&
               memcmp(qi->qname_lower + at, suffix, suffix_len) == 0;
}

/* The IPv6 loopback's reverse name: 1 followed by 31 zero nibbles under ip6.arpa. */
static bool is_v6_loopback_zone(const vd_query_info *qi)
{
        if (qi->labels < V6_NIBBLES + 2 || !ends_with(qi, ip6_arpa, sizeof(ip6_arpa) - 1, 2))
                return false;
        const uint8_t *p = qi->qname_lower + qi->label_off[qi->labels - V6_NIBBLES - 2];
        for (int i = 0; i < V6_NIBBLES; i++, p += 2)
                if (p[0] != 1 || p[1] != (i == 0 ? '1' : '0'))
                        return false;
        return true;
}

int vd_special_apex_labels(const vd_query_info *qi)
{
        if (!qi->question_ok || qi->labels == 0)
                return 0;
        if (ends_with(qi, localhost_name, sizeof(localhost_name) - 1, 1))
                return 1;
        if (ends_with(qi, invalid_name, sizeof(invalid_name) - 1, 1))
                return ends_with(qi, loop_probe_zone, sizeof(loop_probe_zone) - 1, 2) ? 0 : 1;
        if (ends_with(qi, v4_reverse, sizeof(v4_reverse) - 1, 3))
                return 3;
        if (is_v6_loopback_zone(qi))
                return V6_NIBBLES + 2;
        return 0;
}

/* ---- the compiled zones ------------------------------------------------------------------ */

static uv_once_t build_once = UV_ONCE_INIT;
static vd_snapshot *special;

/* name: text; rdata in wire form. Returns 0 or a negative code. */
static int add(vd_builder *b, const char *name, uint16_t type, const uint8_t *rdata, uint16_t rdlen,
               vd_error *err)
{
        uint8_t owner[VD_NAME_MAX];
        size_t len;
        if (vd_name_from_text(name, owner, &len) != 0)
                return -1;
        return vd_builder_add_rr(b, owner, type, SPECIAL_TTL, rdata, rdlen, CLAIM, err);
}

/* A zone with Unbound's SOA and NS localhost. */
static int add_zone(vd_builder *b, const char *apex, vd_error *err)
{
        /* localhost. nobody.invalid. 1 3600 1200 604800 10800 */
        static const uint8_t soa[] = {
            9,   'l',  'o',  'c', 'a', 'l',  'h',  'o', 's',  't',  0,    6, 'n', 'o',  'b', 'o',
            'd', 'y',  7,    'i', 'n', 'v',  'a',  'l', 'i',  'd',  0,    0, 0,   0,    1,   0,
            0,   0x0E, 0x10, 0,   0,   0x04, 0xB0, 0,   0x09, 0x3A, 0x80, 0, 0,   0x2A, 0x30};
        uint8_t name[VD_NAME_MAX];
        size_t len;
        if (vd_name_from_text(apex, name, &len) != 0)
                return -1;
        int rc = vd_builder_add_zone(b, name, true, soa, sizeof(soa), SPECIAL_TTL, CLAIM, err);
        if (rc != 0)
                return rc;
        return add(b, apex, VD_TYPE_NS, soa, 11, err); /* the SOA's MNAME: localhost. */
}

static void build(void)
{
        static const uint8_t v4[] = {127, 0, 0, 1};
        static const uint8_t v6[16] = {[15] = 1};
        static const uint8_t localhost[] = {9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0};
        char v6_reverse[V6_NIBBLES * 2 + sizeof("ip6.arpa")];
        vd_error err;
        vd_builder *b = vd_builder_new();
        if (b == NULL)
                return;
        size_t n = 0;
        for (int i = 0; i < V6_NIBBLES; i++) {
                v6_reverse[n++] = i == 0 ? '1' : '0';
                v6_reverse[n++] = '.';
        }
        memcpy(v6_reverse + n, "ip6.arpa", sizeof("ip6.arpa"));

        int rc;
        if ((rc = add_zone(b, "localhost", &err)) != 0 ||
            (rc = add(b, "localhost", VD_TYPE_A, v4, sizeof(v4), &err)) != 0 ||
            (rc = add(b, "localhost", VD_TYPE_AAAA, v6, sizeof(v6), &err)) != 0 ||
            /* every name under localhost. is localhost. too (RFC 6761 §6.3) */
            (rc = add(b, "*.localhost", VD_TYPE_A, v4, sizeof(v4), &err)) != 0 ||
            (rc = add(b, "*.localhost", VD_TYPE_AAAA, v6, sizeof(v6), &err)) != 0 ||
            (rc = add_zone(b, "invalid", &err)) != 0 ||
            (rc = add_zone(b, "127.in-addr.arpa", &err)) != 0 ||
            (rc = add(b, "1.0.0.127.in-addr.arpa", VD_TYPE_PTR, localhost, sizeof(localhost),
                      &err)) != 0 ||
            (rc = add_zone(b, v6_reverse, &err)) != 0 ||
            (rc = add(b, v6_reverse, VD_TYPE_PTR, localhost, sizeof(localhost), &err)) != 0)
                goto out;
        vd_snapshot *s = NULL;
        if (vd_builder_finish(b, &s, &err) == 0)
                special = s;
out:
        vd_builder_free(b);
}

const vd_snapshot *vd_special_snapshot(void)
{
        uv_once(&build_once, build);
        return special;
}
