/* test_hosted_zone.c — unit tests of the Route 53 hosted zone loader (resolver/hosted_zone*.c)
 * and of alias records in the builder (resolver/snapshot_alias.c): escaped names, every record
 * type, aliases (local, at the apex, chains, loops, upstream), routing-policy choices, the
 * negative TTL, zone conflicts and the most specific zone, and the error messages for bad
 * files. Files come from tests/data/hosted/ or are written to a temporary directory; answers
 * are real DNS messages read back with ldns. */
#include <criterion/criterion.h>
#include <ldns/ldns.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpcdns/aws.h"
#include "vpcdns/hosted_zone.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"
#include "vpcdns/zonefile.h"

#define HOSTED VD_TEST_DATA "/hosted"
#define SOA_SET                                                                                    \
        "{\"Name\": \"corp.internal.\", \"Type\": \"SOA\", \"TTL\": 900, \"ResourceRecords\": "    \
        "[{\"Value\": \"ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 "        \
        "1209600 86400\"}]}"

static char tmpdir[64];

static void make_tmpdir(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/vd-hz-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        cr_assert_eq(system(cmd), 0);
}

/* Writes text to tmpdir/name; the path in out. */
static void write_file(const char *name, const char *text, char *out, size_t cap)
{
        snprintf(out, cap, "%s/%s", tmpdir, name);
        FILE *f = fopen(out, "w");
        cr_assert_not_null(f);
        cr_assert_eq(fputs(text, f) >= 0, true);
        cr_assert_eq(fclose(f), 0);
}

/* Loads one JSON text as a hosted zone; returns the load's code and the message in err. */
static int load_text(const char *text, vd_error *err, char *path, size_t cap)
{
        vd_builder *b = vd_builder_new();
        write_file("zone.json", text, path, cap);
        int rc = vd_hosted_zone_load(b, path, NULL, err);
        if (rc == 0) {
                vd_snapshot *s = NULL;
                rc = vd_builder_finish(b, &s, err);
                if (s != NULL)
                        vd_snapshot_unref(s);
        }
        vd_builder_free(b);
        return rc;
}

/* The message of a file that must not load. */
static const char *load_error(const char *text)
{
        static vd_error err;
        char path[128];
        memset(&err, 0, sizeof(err));
        cr_assert_lt(load_text(text, &err, path, sizeof(path)), 0, "the file loaded: %s", text);
        cr_assert_not_null(strstr(err.msg, path), "the message does not name the file: %s",
                           err.msg);
        return err.msg;
}

static void expect_error(const char *text, const char *part)
{
        const char *msg = load_error(text);
        cr_assert_not_null(strstr(msg, part), "expected '%s' in: %s", part, msg);
}

static vd_snapshot *finish(vd_builder *b)
{
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return s;
}

/* corp.json alone, or with the hub snapshot (region us-east-1) loaded first. */
static vd_snapshot *corp(bool with_hub)
{
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};
        if (with_hub) {
                cr_assert_eq(vd_aws_load(b, HOSTED "/hub", NULL, &err), 0, "%s", err.msg);
                cr_assert_eq(vd_hosted_zone_load_dir(b, HOSTED "/hub", NULL, &err), 0, "%s",
                             err.msg);
        }
        cr_assert_eq(vd_hosted_zone_load(b, HOSTED "/corp.json", NULL, &err), 0, "%s", err.msg);
        return finish(b);
}

typedef struct answer {
        ldns_pkt *pkt;
        vd_local_result result;
} answer;

static answer ask(const vd_snapshot *s, const char *name, ldns_rr_type type)
{
        ldns_pkt *q = NULL;
        cr_assert_eq(ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
        uint8_t *wire = NULL;
        size_t wlen = 0, len = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, q, &wlen), LDNS_STATUS_OK);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(wire, wlen, &qi), VD_PARSE_OK);
        static uint8_t out[65535];
        answer a = {0};
        a.result = vd_snapshot_answer(s, &qi, 0, out, sizeof(out), &len);
        if (a.result == VD_LOCAL_ANSWERED)
                cr_assert_eq(ldns_wire2pkt(&a.pkt, out, len), LDNS_STATUS_OK);
        free(wire);
        ldns_pkt_free(q);
        return a;
}

/* The answer section's first rdata fields, sorted, joined by " " ("10.0.0.1 10.0.0.2"). */
static void answer_text(const answer *a, ldns_rr_type type, char *out, size_t cap)
{
        char *items[64];
        size_t n = 0, used = 0;
        ldns_rr_list *an = ldns_pkt_answer(a->pkt);
        for (size_t i = 0; i < ldns_rr_list_rr_count(an) && n < 64; i++) {
                ldns_rr *rr = ldns_rr_list_rr(an, i);
                if (ldns_rr_get_type(rr) == type)
                        items[n++] = ldns_rdf2str(ldns_rr_rdf(rr, 0));
        }
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (strcmp(items[j], items[i]) < 0) {
                                char *t = items[i];
                                items[i] = items[j];
                                items[j] = t;
                        }
        out[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? " " : "", items[i]);
                free(items[i]);
        }
}

static void expect_answer(const vd_snapshot *s, const char *name, ldns_rr_type type,
                          const char *want, uint32_t ttl)
{
        char got[512];
        answer a = ask(s, name, type);
        cr_assert_eq(a.result, VD_LOCAL_ANSWERED, "%s was not answered locally", name);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), LDNS_RCODE_NOERROR, "%s", name);
        answer_text(&a, type, got, sizeof(got));
        cr_assert_str_eq(got, want, "%s", name);
        ldns_rr_list *an = ldns_pkt_answer(a.pkt);
        for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
                ldns_rr *rr = ldns_rr_list_rr(an, i);
                cr_assert_eq(ldns_rr_get_type(rr), type, "%s: a record of another type", name);
                cr_assert_eq(ldns_rr_ttl(rr), ttl, "%s: TTL %u, expected %u", name, ldns_rr_ttl(rr),
                             ttl);
        }
        ldns_pkt_free(a.pkt);
}

/* NXDOMAIN (nx) or NODATA with the zone's SOA in the authority section at TTL ttl. */
static void expect_negative(const vd_snapshot *s, const char *name, ldns_rr_type type, bool nx,
                            const char *apex, uint32_t ttl)
{
        answer a = ask(s, name, type);
        cr_assert_eq(a.result, VD_LOCAL_ANSWERED, "%s was not answered locally", name);
        cr_assert_eq(ldns_pkt_get_rcode(a.pkt), nx ? LDNS_RCODE_NXDOMAIN : LDNS_RCODE_NOERROR, "%s",
                     name);
        cr_assert_eq(ldns_pkt_ancount(a.pkt), 0, "%s", name);
        ldns_rr_list *ns = ldns_pkt_authority(a.pkt);
        cr_assert_eq(ldns_rr_list_rr_count(ns), 1, "%s: expected the SOA", name);
        ldns_rr *soa = ldns_rr_list_rr(ns, 0);
        cr_assert_eq(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
        char *owner = ldns_rdf2str(ldns_rr_owner(soa));
        cr_assert_str_eq(owner, apex);
        free(owner);
        cr_assert_eq(ldns_rr_ttl(soa), ttl, "%s: negative TTL %u, expected %u", name,
                     ldns_rr_ttl(soa), ttl);
        ldns_pkt_free(a.pkt);
}

/* ---- names ---- */

Test(hosted_zone, names_decode_octal_escapes)
{
        uint8_t w[VD_NAME_MAX];
        size_t len;
        const char *why;
        cr_assert_eq(vd_hosted_zone_decode_name("\\052.apps.corp.internal.", w, &len, &why), 0);
        cr_assert_eq(memcmp(w, "\001*\004apps\004corp\010internal", len), 0);
        /* \056 is a dot inside a label, not a separator */
        cr_assert_eq(vd_hosted_zone_decode_name("a\\056b.Corp.internal", w, &len, &why), 0);
        cr_assert_eq(len, 19);
        cr_assert_eq(memcmp(w, "\003a.b\004corp\010internal", len), 0);
        /* a \052 not first is a plain star; \040 a space; \134 a backslash */
        cr_assert_eq(vd_hosted_zone_decode_name("x\\052y\\040z\\134.corp.", w, &len, &why), 0);
        cr_assert_eq(memcmp(w, "\006x*y z\\\004corp", len), 0);
        cr_assert_eq(vd_hosted_zone_decode_name("corp.internal", w, &len, &why), 0);
        cr_assert_eq(len, 15);
}

Test(hosted_zone, bad_names_say_why)
{
        uint8_t w[VD_NAME_MAX];
        size_t len;
        const char *why = NULL;
        cr_assert_lt(vd_hosted_zone_decode_name("a..b.", w, &len, &why), 0);
        cr_assert_not_null(strstr(why, "empty label"));
        cr_assert_lt(vd_hosted_zone_decode_name("a\\08.b.", w, &len, &why), 0);
        cr_assert_not_null(strstr(why, "three octal digits"));
        cr_assert_lt(vd_hosted_zone_decode_name("a\\05", w, &len, &why), 0);
        cr_assert_lt(vd_hosted_zone_decode_name("a b.corp.", w, &len, &why), 0);
        cr_assert_lt(vd_hosted_zone_decode_name(".", w, &len, &why), 0);
        char label[80];
        memset(label, 'a', 64);
        memcpy(label + 64, ".corp.", 7);
        cr_assert_lt(vd_hosted_zone_decode_name(label, w, &len, &why), 0);
        cr_assert_not_null(strstr(why, "63"));
}

/* ---- data ---- */

struct count_ctx {
        uint16_t type;
        size_t n;
};

static int count_type(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                      const uint8_t *rdata, uint16_t rdlen)
{
        struct count_ctx *c = arg;
        c->n += type == c->type;
        return 0;
}

Test(hosted_zone, every_record_type_loads)
{
        vd_snapshot *s = corp(false);
        static const uint16_t types[] = {
            LDNS_RR_TYPE_A,     LDNS_RR_TYPE_AAAA,  LDNS_RR_TYPE_CAA,   LDNS_RR_TYPE_CNAME,
            LDNS_RR_TYPE_MX,    LDNS_RR_TYPE_NAPTR, LDNS_RR_TYPE_NS,    LDNS_RR_TYPE_PTR,
            LDNS_RR_TYPE_SOA,   LDNS_RR_TYPE_SPF,   LDNS_RR_TYPE_SRV,   LDNS_RR_TYPE_TXT,
            LDNS_RR_TYPE_HTTPS, LDNS_RR_TYPE_SVCB,  LDNS_RR_TYPE_SSHFP, LDNS_RR_TYPE_TLSA};
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                struct count_ctx c = {types[i], 0};
                vd_snapshot_foreach(s, count_type, &c);
                cr_assert_gt(c.n, 0, "no record of type %u", types[i]);
        }
        expect_answer(s, "corp.internal.", LDNS_RR_TYPE_MX, "10", 300);
        expect_answer(s, "_sip._tcp.corp.internal.", LDNS_RR_TYPE_SRV, "10 20", 300);
        expect_answer(s, "corp.internal.", LDNS_RR_TYPE_NS,
                      "ns-0.awsdns-00.com. ns-1024.awsdns-00.org. ns-1536.awsdns-00.co.uk. "
                      "ns-512.awsdns-00.net.",
                      172800);
        /* a name with a dot inside its first label */
        expect_answer(s, "a\\.b.corp.internal.", LDNS_RR_TYPE_A, "10.0.9.9", 300);
        vd_snapshot_unref(s);
}

Test(hosted_zone, wildcard_from_octal_star)
{
        vd_snapshot *s = corp(false);
        expect_answer(s, "anything.apps.corp.internal.", LDNS_RR_TYPE_A, "10.0.1.1", 60);
        expect_answer(s, "a.b.apps.corp.internal.", LDNS_RR_TYPE_A, "10.0.1.1", 60);
        vd_snapshot_unref(s);
}

Test(hosted_zone, negative_answers_carry_the_soa_with_the_smaller_ttl)
{
        vd_snapshot *s = corp(false);
        /* SOA TTL 900, MINIMUM 300: negative answers 300, the SOA itself 900 */
        expect_negative(s, "nope.corp.internal.", LDNS_RR_TYPE_A, true, "corp.internal.", 300);
        expect_negative(s, "web.corp.internal.", LDNS_RR_TYPE_TXT, false, "corp.internal.", 300);
        expect_answer(s, "corp.internal.", LDNS_RR_TYPE_SOA, "ns-1536.awsdns-00.co.uk.", 900);
        vd_snapshot_unref(s);
        /* MINIMUM above the TTL: the TTL wins */
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};
        cr_assert_eq(
            vd_hosted_zone_load(b, HOSTED "/hub/hosted-zones/Z0SQSUSEAST1.json", NULL, &err), 0,
            "%s", err.msg);
        s = finish(b);
        expect_negative(s, "x.sqs.us-east-1.amazonaws.com.", LDNS_RR_TYPE_A, true,
                        "sqs.us-east-1.amazonaws.com.", 900);
        vd_snapshot_unref(s);
}

/* ---- aliases ---- */

Test(hosted_zone, alias_at_the_apex_and_chains_answer_the_targets_records)
{
        vd_snapshot *s = corp(false);
        /* corp.internal. A -> web; app -> corp.internal.; www -> app: TTL from web (120) */
        expect_answer(s, "corp.internal.", LDNS_RR_TYPE_A, "10.0.0.1 10.0.0.2", 120);
        expect_answer(s, "app.corp.internal.", LDNS_RR_TYPE_A, "10.0.0.1 10.0.0.2", 120);
        expect_answer(s, "www.corp.internal.", LDNS_RR_TYPE_A, "10.0.0.1 10.0.0.2", 120);
        /* an alias answers only its own type */
        expect_negative(s, "www.corp.internal.", LDNS_RR_TYPE_AAAA, false, "corp.internal.", 300);
        /* an alias to a load balancer, answered without a chase: no data, and listed */
        expect_negative(s, "elb.corp.internal.", LDNS_RR_TYPE_A, false, "corp.internal.", 300);
        const vd_alias_info *al;
        size_t n = vd_snapshot_aliases(s, &al), upstream = 0;
        cr_assert_eq(n, 4);
        for (size_t i = 0; i < n; i++)
                upstream += al[i].state == VD_ALIAS_UPSTREAM;
        cr_assert_eq(upstream, 1);
        vd_snapshot_unref(s);
}

/* The answer path hands an alias to a name outside local data to the chase: the target, the
 * alias's name (the question) as the owner of what comes back, and the zone's SOA for a
 * negative end, written after the response so far. */
static vd_local_result ask_chase(const vd_snapshot *s, const char *name, ldns_rr_type type,
                                 vd_local_chase *lc, uint8_t *out, size_t cap, size_t *len)
{
        ldns_pkt *q = NULL;
        cr_assert_eq(ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
        uint8_t *wire = NULL;
        size_t wlen = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, q, &wlen), LDNS_STATUS_OK);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(wire, wlen, &qi), VD_PARSE_OK);
        memset(lc, 0, sizeof(*lc));
        vd_local_result r = vd_snapshot_answer_chase(s, &qi, 0, out, cap, len, lc);
        free(wire);
        ldns_pkt_free(q);
        return r;
}

Test(hosted_zone, alias_to_an_upstream_name_is_chased_under_the_alias_name)
{
        vd_snapshot *s = corp(false);
        static uint8_t out[65535];
        size_t len = 0;
        vd_local_chase lc;
        const char *owner = "elb.corp.internal.";
        cr_assert_eq(ask_chase(s, owner, LDNS_RR_TYPE_A, &lc, out, sizeof(out), &len),
                     VD_LOCAL_CHASE);
        cr_assert(lc.alias);
        char target[VD_NAME_MAX * 4 + 2];
        vd_name_to_text(lc.target, target, sizeof(target));
        cr_assert_str_eq(target, "dualstack.internal-app-1234567890.us-east-1.elb.amazonaws.com.");
        cr_assert_eq(lc.target_ref, VD_HEADER_LEN);
        cr_assert_eq(len, VD_HEADER_LEN + strlen(owner) + 1 + 4, "header and question only");
        cr_assert_eq(vd_wire_get16(out + 6), 0);
        /* the SOA after it: a pointer into the question, then type SOA, TTL 300 (MINIMUM) */
        cr_assert_gt(lc.alias_soa_len, 12);
        cr_assert_eq(out[len] & 0xC0, 0xC0);
        cr_assert_eq(vd_wire_get16(out + len + 2), VD_TYPE_SOA);
        cr_assert_eq(vd_wire_get32(out + len + 6), 300);
        /* no alias of that type: NODATA here; no chase argument: NODATA as before */
        cr_assert_eq(ask_chase(s, owner, LDNS_RR_TYPE_AAAA, &lc, out, sizeof(out), &len),
                     VD_LOCAL_ANSWERED);
        expect_negative(s, owner, LDNS_RR_TYPE_A, false, "corp.internal.", 300);
        vd_snapshot_unref(s);
}

Test(hosted_zone, the_vpc_of_a_snapshot_directorys_captures)
{
        char path[256], vpc[64];
        vd_error err = {{0}};
        make_tmpdir();
        cr_assert_eq(vd_hosted_zone_dir_vpc(tmpdir, vpc, sizeof(vpc), &err), 0, "%s", err.msg);
        cr_assert_str_eq(vpc, "", "no file: every VPC");
        write_file(VD_HOSTED_ZONES_VPC_FILE, "vpc-0a1b2c3d\n", path, sizeof(path));
        cr_assert_eq(vd_hosted_zone_dir_vpc(tmpdir, vpc, sizeof(vpc), &err), 0, "%s", err.msg);
        cr_assert_str_eq(vpc, "vpc-0a1b2c3d");
        const char *bad[] = {"", "vpc-\n", "subnet-0a1b\n", "vpc-0a1b\nvpc-0c2d\n", "vpc-XYZ\n"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                write_file(VD_HOSTED_ZONES_VPC_FILE, bad[i], path, sizeof(path));
                cr_assert_eq(vd_hosted_zone_dir_vpc(tmpdir, vpc, sizeof(vpc), &err), -EINVAL,
                             "'%s' was taken", bad[i]);
                cr_assert(strstr(err.msg, path) != NULL && strstr(err.msg, "expected the VPC id"),
                          "%s", err.msg);
        }
        remove_tmpdir();
}

Test(hosted_zone, hub_apex_alias_answers_the_endpoint_addresses)
{
        vd_snapshot *s = corp(true);
        expect_answer(s, "sqs.us-east-1.amazonaws.com.", LDNS_RR_TYPE_A, "127.0.53.11 127.0.53.12",
                      60);
        expect_negative(s, "other.sqs.us-east-1.amazonaws.com.", LDNS_RR_TYPE_A, true,
                        "sqs.us-east-1.amazonaws.com.", 900);
        vd_snapshot_unref(s);
}

Test(hosted_zone, zonal_alias_and_an_alias_of_a_type_the_target_lacks)
{
        make_tmpdir();
        char hz[128];
        vd_error err = {{0}};
        write_file(
            "zonal.json",
            "{\"ResourceRecordSets\": [" SOA_SET ",\n"
            "{\"Name\": \"sqs-a.corp.internal.\", \"Type\": \"A\", \"AliasTarget\": "
            "{\"HostedZoneId\": \"Z7HUB4K7XBMSFB\", \"DNSName\": "
            "\"vpce-0a1b2c3d4e5f60718-k2j4h6g8-us-east-1a.sqs.us-east-1.vpce.amazonaws.com\", "
            "\"EvaluateTargetHealth\": true}},\n"
            "{\"Name\": \"sqs-a.corp.internal.\", \"Type\": \"AAAA\", \"AliasTarget\": "
            "{\"HostedZoneId\": \"Z7HUB4K7XBMSFB\", \"DNSName\": "
            "\"vpce-0a1b2c3d4e5f60718-k2j4h6g8-us-east-1a.sqs.us-east-1.vpce.amazonaws.com\", "
            "\"EvaluateTargetHealth\": true}}]}",
            hz, sizeof(hz));
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_aws_load(b, HOSTED "/hub", NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_hosted_zone_load(b, hz, NULL, &err), 0, "%s", err.msg);
        vd_snapshot *s = finish(b);
        expect_answer(s, "sqs-a.corp.internal.", LDNS_RR_TYPE_A, "127.0.53.11", 60);
        /* an IPv4 endpoint has no AAAA: the AAAA alias answers NODATA */
        expect_negative(s, "sqs-a.corp.internal.", LDNS_RR_TYPE_AAAA, false, "corp.internal.", 900);
        const vd_alias_info *al;
        cr_assert_eq(vd_snapshot_aliases(s, &al), 2);
        cr_assert_eq(al[0].state, VD_ALIAS_LOCAL);
        cr_assert_eq(al[1].state, VD_ALIAS_EMPTY);
        vd_snapshot_unref(s);
        remove_tmpdir();
}

Test(hosted_zone, alias_loop_is_an_error_naming_each_place)
{
        make_tmpdir();
        const char *msg = load_error(
            "{\"ResourceRecordSets\": [" SOA_SET ",\n"
            "{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", \"AliasTarget\": {\"HostedZoneId\": "
            "\"Z1\", \"DNSName\": \"b.corp.internal.\", \"EvaluateTargetHealth\": false}},\n"
            "{\"Name\": \"b.corp.internal.\", \"Type\": \"A\", \"AliasTarget\": {\"HostedZoneId\": "
            "\"Z1\", \"DNSName\": \"a.corp.internal.\", \"EvaluateTargetHealth\": false}}]}");
        cr_assert_not_null(strstr(msg, "loop"), "%s", msg);
        cr_assert_not_null(strstr(msg, "ResourceRecordSets[1]"), "%s", msg);
        cr_assert_not_null(strstr(msg, "ResourceRecordSets[2]"), "%s", msg);
        remove_tmpdir();
}

Test(hosted_zone, alias_to_a_missing_local_name_is_an_error)
{
        make_tmpdir();
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", \"AliasTarget\": "
                     "{\"HostedZoneId\": \"Z1\", \"DNSName\": \"gone.corp.internal.\", "
                     "\"EvaluateTargetHealth\": false}}]}",
                     "ResourceRecordSets[1]: alias a.corp.internal. -> gone.corp.internal.: the "
                     "target does not exist in the zone corp.internal.");
        remove_tmpdir();
}

Test(hosted_zone, alias_to_a_zone_file_name_and_an_alias_beside_a_cname)
{
        make_tmpdir();
        char zone[128], hz[128];
        vd_error err = {{0}};
        write_file("lab.zone",
                   "$ORIGIN lab.example.\n@ 300 IN SOA ns. host. 1 2 3 4 5\nhost 45 IN A "
                   "192.0.2.5\nweb 45 IN CNAME host\n",
                   zone, sizeof(zone));
        write_file("alias.json",
                   "{\"ResourceRecordSets\": [" SOA_SET ",\n"
                   "{\"Name\": \"lab.corp.internal.\", \"Type\": \"A\", \"AliasTarget\": "
                   "{\"HostedZoneId\": \"Z1\", \"DNSName\": \"host.lab.example.\", "
                   "\"EvaluateTargetHealth\": false}}]}",
                   hz, sizeof(hz));
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_zonefile_load(b, zone, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_hosted_zone_load(b, hz, NULL, &err), 0, "%s", err.msg);
        vd_snapshot *s = finish(b);
        expect_answer(s, "lab.corp.internal.", LDNS_RR_TYPE_A, "192.0.2.5", 45);
        vd_snapshot_unref(s);
        /* an A alias onto a name with a CNAME beside it: the place is named */
        write_file("clash.json",
                   "{\"ResourceRecordSets\": [" SOA_SET ",\n"
                   "{\"Name\": \"x.corp.internal.\", \"Type\": \"CNAME\", \"TTL\": 60, "
                   "\"ResourceRecords\": [{\"Value\": \"host.lab.example\"}]},\n"
                   "{\"Name\": \"x.corp.internal.\", \"Type\": \"A\", \"AliasTarget\": "
                   "{\"HostedZoneId\": \"Z1\", \"DNSName\": \"host.lab.example.\", "
                   "\"EvaluateTargetHealth\": false}}]}",
                   hz, sizeof(hz));
        b = vd_builder_new();
        cr_assert_eq(vd_zonefile_load(b, zone, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_hosted_zone_load(b, hz, NULL, &err), 0, "%s", err.msg);
        vd_snapshot *out = NULL;
        cr_assert_lt(vd_builder_finish(b, &out, &err), 0);
        cr_assert_not_null(strstr(err.msg, "clash.json: ResourceRecordSets[2]: alias "
                                           "x.corp.internal. -> host.lab.example.: "),
                           "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "CNAME"), "%s", err.msg);
        vd_builder_free(b);
        remove_tmpdir();
}

/* ---- routing policies ---- */

Test(hosted_zone, routing_policies_follow_their_rule)
{
        vd_snapshot *s = corp(true);
        /* the PRIMARY, though the SECONDARY comes first in the file */
        expect_answer(s, "db.corp.internal.", LDNS_RR_TYPE_A, "10.0.3.1", 60);
        expect_answer(s, "lat.corp.internal.", LDNS_RR_TYPE_A, "10.0.4.1", 60); /* us-east-1 */
        expect_answer(s, "geo.corp.internal.", LDNS_RR_TYPE_A, "10.0.5.1", 60); /* "*" */
        expect_answer(s, "mv.corp.internal.", LDNS_RR_TYPE_A, "10.0.6.1 10.0.6.2", 60);
        /* weighted 50:50: one record set per answer */
        answer a = ask(s, "api.corp.internal.", LDNS_RR_TYPE_A);
        char got[128];
        answer_text(&a, LDNS_RR_TYPE_A, got, sizeof(got));
        cr_assert(strcmp(got, "10.0.2.1") == 0 || strcmp(got, "10.0.2.2") == 0, "%s", got);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
        /* without a snapshot there is no region: latency answers the first record set */
        s = corp(false);
        expect_answer(s, "lat.corp.internal.", LDNS_RR_TYPE_A, "10.0.4.2", 60);
        vd_snapshot_unref(s);
}

Test(hosted_zone, check_notes_list_policies_and_counts)
{
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};
        vd_hosted_zone_summary sum = {0};
        cr_assert_eq(vd_hosted_zone_load(b, HOSTED "/corp.json", &sum, &err), 0, "%s", err.msg);
        cr_assert_eq(sum.zones, 1);
        cr_assert_eq(sum.record_sets, 33);
        cr_assert_eq(sum.aliases, 4);
        cr_assert_eq(sum.policies, 10);
        cr_assert_not_null(strstr(sum.notes, "hosted zone corp.internal."));
        cr_assert_not_null(strstr(sum.notes, "routing policy: db.corp.internal. A failover, 2 "
                                             "record sets; answers the PRIMARY, or the SECONDARY"),
                           "%s", sum.notes);
        cr_assert_not_null(strstr(sum.notes, "routing policy: api.corp.internal. A weighted, 2 "
                                             "record sets; answers one record set per answer, "
                                             "chosen by Weight, from: 'blue', 'green'"),
                           "%s", sum.notes);
        cr_assert_not_null(strstr(sum.notes, "routing policy not applied: geo.corp.internal. A "
                                             "geolocation"),
                           "%s", sum.notes);
        cr_assert_null(strstr(sum.notes, "not applied: api."), "%s", sum.notes);
        /* a Route 53 health check cannot be evaluated here: --check says so */
        cr_assert_not_null(strstr(sum.notes, "health check not evaluated: ResourceRecordSets"),
                           "%s", sum.notes);
        cr_assert_not_null(strstr(sum.notes, "(api.corp.internal. A) (HealthCheckId "
                                             "abcdef11-2222-3333-4444-555555fedcba) is answered "
                                             "as healthy"),
                           "%s", sum.notes);
        vd_hosted_zone_summary_free(&sum);
        vd_builder_free(b);
}

/* ---- sources ---- */

Test(hosted_zone, the_same_zone_from_two_sources_is_an_error_naming_both)
{
        make_tmpdir();
        char one[128], two[128], zone[128];
        vd_error err = {{0}};
        write_file("one.json", "{\"ResourceRecordSets\": [" SOA_SET "]}", one, sizeof(one));
        write_file("two.json", "{\"ResourceRecordSets\": [" SOA_SET "]}", two, sizeof(two));
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_hosted_zone_load(b, one, NULL, &err), 0, "%s", err.msg);
        cr_assert_lt(vd_hosted_zone_load(b, two, NULL, &err), 0);
        cr_assert_not_null(strstr(err.msg, "zone corp.internal. is claimed twice"), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, one), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, two), "%s", err.msg);
        vd_builder_free(b);

        write_file("corp.zone",
                   "$ORIGIN corp.internal.\n@ 300 IN SOA ns. host. 1 2 3 4 5\nweb 60 IN A "
                   "192.0.2.1\n",
                   zone, sizeof(zone));
        b = vd_builder_new();
        cr_assert_eq(vd_zonefile_load(b, zone, NULL, &err), 0, "%s", err.msg);
        cr_assert_lt(vd_hosted_zone_load(b, one, NULL, &err), 0);
        cr_assert_not_null(strstr(err.msg, "claimed twice"), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, zone), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, one), "%s", err.msg);
        vd_builder_free(b);
        remove_tmpdir();
}

Test(hosted_zone, the_most_specific_zone_wins)
{
        make_tmpdir();
        char zone[128], hz[128];
        vd_error err = {{0}};
        /* a zone file under the hosted zone, and endpoint private names (the integration
         * snapshot: sqs.eu-west-1.amazonaws.com) under a hosted zone for the region */
        write_file("sub.zone",
                   "$ORIGIN sub.corp.internal.\n@ 300 IN SOA ns. host. 1 2 3 4 5\nhost 60 IN A "
                   "192.0.2.7\n",
                   zone, sizeof(zone));
        write_file("region.json",
                   "{\"ResourceRecordSets\": [{\"Name\": \"eu-west-1.amazonaws.com.\", \"Type\": "
                   "\"SOA\", \"TTL\": 900, \"ResourceRecords\": [{\"Value\": \"ns. host. 1 2 3 4 "
                   "60\"}]}, {\"Name\": \"mine.eu-west-1.amazonaws.com.\", \"Type\": \"A\", "
                   "\"TTL\": 30, \"ResourceRecords\": [{\"Value\": \"192.0.2.9\"}]}]}",
                   hz, sizeof(hz));
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_aws_load(b, VD_TEST_DATA "/integ/snapshot", NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_hosted_zone_load(b, HOSTED "/corp.json", NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_zonefile_load(b, zone, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_hosted_zone_load(b, hz, NULL, &err), 0, "%s", err.msg);
        vd_snapshot *s = finish(b);
        expect_answer(s, "host.sub.corp.internal.", LDNS_RR_TYPE_A, "192.0.2.7", 60);
        expect_negative(s, "web.sub.corp.internal.", LDNS_RR_TYPE_A, true, "sub.corp.internal.", 5);
        expect_answer(s, "web.corp.internal.", LDNS_RR_TYPE_A, "10.0.0.1 10.0.0.2", 120);
        expect_answer(s, "sqs.eu-west-1.amazonaws.com.", LDNS_RR_TYPE_A,
                      "10.1.1.10 10.1.2.10 10.1.3.10", 60);
        expect_answer(s, "mine.eu-west-1.amazonaws.com.", LDNS_RR_TYPE_A, "192.0.2.9", 30);
        expect_negative(s, "nope.eu-west-1.amazonaws.com.", LDNS_RR_TYPE_A, true,
                        "eu-west-1.amazonaws.com.", 60);
        vd_snapshot_unref(s);
        remove_tmpdir();
}

/* ---- bad files ---- */

Test(hosted_zone, bad_values_name_the_record_set_and_what_was_expected)
{
        make_tmpdir();
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"api.corp.internal.\", \"Type\": \"MX\", \"TTL\": 300, "
                     "\"ResourceRecords\": [{\"Value\": \"mail.corp.internal\"}]}]}",
                     "zone.json: ResourceRecordSets[1] (api.corp.internal. MX): "
                     "ResourceRecords[0].Value: expected a preference (0-65535) and a host name, "
                     "got 'mail.corp.internal'");
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", \"TTL\": 300, "
                     "\"ResourceRecords\": [{\"Value\": \"10.0.0.1\"}, {\"Value\": \"10.0.0\"}]}]}",
                     "ResourceRecordSets[1] (a.corp.internal. A): ResourceRecords[1].Value: "
                     "expected an IPv4 address, got '10.0.0'");
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"a.corp.internal.\", \"Type\": \"DS\", \"TTL\": 300, "
                     "\"ResourceRecords\": [{\"Value\": \"1 2 3 abcd\"}]}]}",
                     "ResourceRecordSets[1] (a.corp.internal. DS): record type 'DS' is not "
                     "supported; expected A, AAAA");
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", "
                     "\"ResourceRecords\": [{\"Value\": \"10.0.0.1\"}]}]}",
                     "ResourceRecordSets[1] (a.corp.internal. A): TTL: expected a number of "
                     "seconds (0-2147483647), but it is missing");
        expect_error(
            "{\"ResourceRecordSets\": [" SOA_SET ",\n"
            "{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", \"TTL\": 60, "
            "\"AliasTarget\": {\"HostedZoneId\": \"Z1\", \"DNSName\": \"b.corp.internal.\", "
            "\"EvaluateTargetHealth\": false}}]}",
            "an alias with a TTL");
        expect_error(
            "{\"ResourceRecordSets\": [" SOA_SET ",\n"
            "{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", \"TTL\": 60, "
            "\"SetIdentifier\": \"x\", \"ResourceRecords\": [{\"Value\": \"10.0.0.1\"}]}]}",
            "SetIdentifier without a routing policy");
        remove_tmpdir();
}

Test(hosted_zone, bad_structure_is_refused)
{
        make_tmpdir();
        expect_error("{\"ResourceRecordSets\": [\n  {\"Name\": \"corp.internal.\",\n  \"Type\" "
                     "\"SOA\"}]}",
                     "zone.json:3:");
        expect_error("{\"ResourceRecordSets\": [{\"Name\": \"a.corp.internal.\", \"Type\": \"A\", "
                     "\"TTL\": 60, \"ResourceRecords\": [{\"Value\": \"10.0.0.1\"}]}]}",
                     "expected an SOA record set");
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"a.example.com.\", \"Type\": \"A\", \"TTL\": 60, "
                     "\"ResourceRecords\": [{\"Value\": \"10.0.0.1\"}]}]}",
                     "ResourceRecordSets[1] (a.example.com. A): the name is outside the zone "
                     "corp.internal.");
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ", " SOA_SET "]}",
                     "a second SOA record set");
        expect_error("{\"ResourceRecordSets\": [" SOA_SET ",\n"
                     "{\"Name\": \"a..corp.internal.\", \"Type\": \"A\", \"TTL\": 60, "
                     "\"ResourceRecords\": [{\"Value\": \"10.0.0.1\"}]}]}",
                     "ResourceRecordSets[1].Name: 'a..corp.internal.': an empty label");
        expect_error("{\"HostedZones\": []}",
                     "ResourceRecordSets: expected an array, but it is missing");
        remove_tmpdir();
}

Test(hosted_zone, a_truncated_capture_is_refused)
{
        make_tmpdir();
        const char *msg = load_error("{\"ResourceRecordSets\": [" SOA_SET "], \"IsTruncated\": "
                                     "true, \"NextRecordName\": \"m.corp.internal.\", "
                                     "\"NextRecordType\": \"A\", \"MaxItems\": \"1\"}");
        cr_assert_not_null(strstr(msg, "the capture is incomplete"), "%s", msg);
        cr_assert_not_null(strstr(msg, "--max-items"), "%s", msg);
        expect_error("{\"ResourceRecordSets\": [" SOA_SET "], \"NextToken\": \"eyJ4Ijog\"}",
                     "the capture is incomplete (NextToken is set)");
        remove_tmpdir();
}

/* ---- routing policies per answer, from the file ---- */

#define HUB_VPCE "vpce-0a1b2c3d4e5f60718-k2j4h6g8.sqs.us-east-1.vpce.amazonaws.com."

/* The hub snapshot plus one JSON text as a hosted zone. */
static vd_snapshot *hub_with(const char *text)
{
        char path[128];
        vd_error err = {{0}};
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_aws_load(b, HOSTED "/hub", NULL, &err), 0, "%s", err.msg);
        write_file("zone.json", text, path, sizeof(path));
        cr_assert_eq(vd_hosted_zone_load(b, path, NULL, &err), 0, "%s", err.msg);
        return finish(b);
}

Test(hosted_zone, failover_alias_with_evaluate_target_health_follows_eni_health)
{
        make_tmpdir();
        vd_snapshot *s = hub_with(
            "{\"ResourceRecordSets\": [" SOA_SET ",\n"
            "{\"Name\": \"db.corp.internal.\", \"Type\": \"A\", \"SetIdentifier\": \"hub\", "
            "\"Failover\": \"PRIMARY\", \"AliasTarget\": {\"HostedZoneId\": \"Z7HUB\", "
            "\"DNSName\": \"" HUB_VPCE "\", \"EvaluateTargetHealth\": true}},\n"
            "{\"Name\": \"db.corp.internal.\", \"Type\": \"A\", \"SetIdentifier\": \"dr\", "
            "\"Failover\": \"SECONDARY\", \"TTL\": 30, "
            "\"ResourceRecords\": [{\"Value\": \"10.9.9.9\"}]}]}");
        expect_answer(s, "db.corp.internal.", LDNS_RR_TYPE_A, "127.0.53.11 127.0.53.12", 60);
        size_t n = vd_snapshot_eni_count(s);
        cr_assert_gt(n, 0);
        for (size_t i = 0; i < n; i++)
                vd_snapshot_eni_set_up(s, i, false);
        expect_answer(s, "db.corp.internal.", LDNS_RR_TYPE_A, "10.9.9.9", 30);
        vd_snapshot_eni_set_up(s, 0, true);
        answer a = ask(s, "db.corp.internal.", LDNS_RR_TYPE_A);
        char got[128];
        answer_text(&a, LDNS_RR_TYPE_A, got, sizeof(got));
        cr_assert_null(strstr(got, "10.9.9.9"), "an address is back up: the PRIMARY (%s)", got);
        ldns_pkt_free(a.pkt);
        vd_snapshot_unref(s);
        remove_tmpdir();
}

Test(hosted_zone, weighted_record_sets_split_by_weight)
{
        make_tmpdir();
        vd_snapshot *s = hub_with(
            "{\"ResourceRecordSets\": [" SOA_SET ",\n"
            "{\"Name\": \"api.corp.internal.\", \"Type\": \"A\", \"SetIdentifier\": \"blue\", "
            "\"Weight\": 10, \"TTL\": 60, \"ResourceRecords\": [{\"Value\": \"10.0.2.1\"}]},\n"
            "{\"Name\": \"api.corp.internal.\", \"Type\": \"A\", \"SetIdentifier\": \"green\", "
            "\"Weight\": 30, \"AliasTarget\": {\"HostedZoneId\": \"Z7HUB\", "
            "\"DNSName\": \"" HUB_VPCE "\", \"EvaluateTargetHealth\": false}}]}");
        ldns_pkt *q = NULL;
        cr_assert_eq(ldns_pkt_query_new_frm_str(&q, "api.corp.internal.", LDNS_RR_TYPE_A,
                                                LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
        uint8_t *wire = NULL;
        size_t wlen = 0;
        cr_assert_eq(ldns_pkt2wire(&wire, q, &wlen), LDNS_STATUS_OK);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(wire, wlen, &qi), VD_PARSE_OK);
        static uint8_t out[4096];
        unsigned blue = 0, green = 0;
        for (uint32_t rot = 0; rot < 4000; rot++) {
                size_t len = 0;
                cr_assert_eq(vd_snapshot_answer(s, &qi, rot, out, sizeof(out), &len),
                             VD_LOCAL_ANSWERED);
                ldns_pkt *p = NULL;
                cr_assert_eq(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
                size_t an = ldns_pkt_ancount(p);
                if (an == 1)
                        blue++;
                else if (an == 2)
                        green++; /* the alias: both ENI addresses */
                ldns_pkt_free(p);
        }
        cr_assert_eq(blue + green, 4000);
        cr_assert(blue >= 850 && blue <= 1150, "weight 10 of 40: %u of 4000", blue);
        free(wire);
        ldns_pkt_free(q);
        vd_snapshot_unref(s);
        remove_tmpdir();
}
