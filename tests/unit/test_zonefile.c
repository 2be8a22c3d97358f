/* test_zonefile.c — unit tests of resolver/zonefile.c: zone files from tests/data/zones/ and
 * zones/example/ go through vd_zonefile_load() into a real builder, and the records that come
 * out of vd_snapshot_foreach() are checked octet by octet; bad files must be rejected with a
 * message naming the file and the line; --dump output must load back to the same records. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"
#include "vpcdns/zonefile.h"

#define ZONES VD_TEST_DATA "/zones"

/* ---- records as the snapshot holds them ---- */

struct rec {
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len;
        uint16_t type;
        uint32_t ttl;
        uint8_t rdata[512];
        uint16_t rdlen;
};

struct recs {
        struct rec *v;
        size_t n;
};

static int collect(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                   const uint8_t *rdata, uint16_t rdlen)
{
        struct recs *r = arg;
        struct rec *e;
        size_t len = vd_name_len(owner, VD_NAME_MAX);

        cr_assert(len > 0, "snapshot gave a malformed owner name");
        cr_assert(rdlen <= sizeof(e->rdata), "rdata of %u octets is too long for this test", rdlen);
        r->v = realloc(r->v, (r->n + 1) * sizeof(*r->v));
        cr_assert_not_null(r->v);
        e = &r->v[r->n++];
        memset(e, 0, sizeof(*e));
        memcpy(e->owner, owner, len);
        e->owner_len = len;
        e->type = type;
        e->ttl = ttl;
        memcpy(e->rdata, rdata, rdlen);
        e->rdlen = rdlen;
        return 0;
}

static struct recs records_of(const vd_snapshot *s)
{
        struct recs r = {0};
        cr_assert_eq(vd_snapshot_foreach(s, collect, &r), 0);
        return r;
}

static void name_wire(const char *text, uint8_t *out, size_t *len)
{
        cr_assert_eq(vd_name_from_text(text, out, len), 0, "bad name in test: %s", text);
}

/* Number of records at owner (text) of the given type. */
static size_t count_of(const struct recs *r, const char *owner, uint16_t type)
{
        uint8_t name[VD_NAME_MAX];
        size_t len;
        size_t n = 0;

        name_wire(owner, name, &len);
        for (size_t i = 0; i < r->n; i++) {
                if (r->v[i].type == type && r->v[i].owner_len == len &&
                    memcmp(r->v[i].owner, name, len) == 0) {
                        n++;
                }
        }
        return n;
}

/* The record at owner/type with exactly this rdata, or NULL. */
static const struct rec *find(const struct recs *r, const char *owner, uint16_t type,
                              const uint8_t *rdata, size_t rdlen)
{
        uint8_t name[VD_NAME_MAX];
        size_t len;

        name_wire(owner, name, &len);
        for (size_t i = 0; i < r->n; i++) {
                const struct rec *e = &r->v[i];
                if (e->type == type && e->owner_len == len && memcmp(e->owner, name, len) == 0 &&
                    e->rdlen == rdlen && memcmp(e->rdata, rdata, rdlen) == 0) {
                        return e;
                }
        }
        return NULL;
}

/* ---- expected rdata, written out octet by octet ---- */

struct bytes {
        uint8_t b[512];
        size_t n;
};

static void put8(struct bytes *x, unsigned v)
{
        cr_assert(x->n < sizeof(x->b));
        x->b[x->n++] = (uint8_t)v;
}

static void put16(struct bytes *x, unsigned v)
{
        put8(x, v >> 8);
        put8(x, v & 0xff);
}

static void put32(struct bytes *x, uint32_t v)
{
        put16(x, v >> 16);
        put16(x, v & 0xffff);
}

static void put_name(struct bytes *x, const char *text)
{
        uint8_t name[VD_NAME_MAX];
        size_t len;

        name_wire(text, name, &len);
        cr_assert(x->n + len <= sizeof(x->b));
        memcpy(x->b + x->n, name, len);
        x->n += len;
}

static void put_string(struct bytes *x, const char *s) /* one <character-string> */
{
        size_t len = strlen(s);

        put8(x, (unsigned)len);
        cr_assert(x->n + len <= sizeof(x->b));
        memcpy(x->b + x->n, s, len);
        x->n += len;
}

static void put_v4(struct bytes *x, unsigned a, unsigned b, unsigned c, unsigned d)
{
        put8(x, a);
        put8(x, b);
        put8(x, c);
        put8(x, d);
}

/* Asserts exactly one record at owner/type with rdata x and the given TTL. */
static void expect_rr(const struct recs *r, const char *owner, uint16_t type, uint32_t ttl,
                      const struct bytes *x)
{
        const struct rec *e = find(r, owner, type, x->b, x->n);
        cr_assert_not_null(e, "no %s record of type %u with the expected rdata", owner, type);
        cr_assert_eq(e->ttl, ttl, "%s type %u: ttl %u, expected %u", owner, type, e->ttl, ttl);
}

static void expect_a(const struct recs *r, const char *owner, uint32_t ttl, unsigned a, unsigned b,
                     unsigned c, unsigned d)
{
        struct bytes x = {0};
        put_v4(&x, a, b, c, d);
        expect_rr(r, owner, VD_TYPE_A, ttl, &x);
}

static void expect_soa(const struct recs *r, const char *apex, uint32_t ttl, const char *mname,
                       const char *rname, uint32_t serial, uint32_t minimum)
{
        struct bytes x = {0};
        put_name(&x, mname);
        put_name(&x, rname);
        put32(&x, serial);
        put32(&x, 7200);
        put32(&x, 900);
        put32(&x, 1209600);
        put32(&x, minimum);
        expect_rr(r, apex, VD_TYPE_SOA, ttl, &x);
        cr_assert_eq(count_of(r, apex, VD_TYPE_SOA), 1);
}

/* ---- loading ---- */

static vd_snapshot *load_all(const char *const *paths, size_t n, size_t *records)
{
        vd_builder *b = vd_builder_new();
        vd_snapshot *s = NULL;
        vd_error err = {{0}};

        cr_assert_not_null(b);
        for (size_t i = 0; i < n; i++) {
                int ret = vd_zonefile_load(b, paths[i], records, &err);
                cr_assert_eq(ret, 0, "loading %s failed: %s", paths[i], err.msg);
        }
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "finish failed: %s", err.msg);
        vd_builder_free(b);
        return s;
}

static vd_snapshot *load_one(const char *path, size_t *records)
{
        return load_all(&path, 1, records);
}

/* Loads path into a fresh builder, expects failure, returns the message in err. */
static int load_fails(const char *path, vd_error *err)
{
        vd_builder *b = vd_builder_new();
        size_t records = 12345;
        int ret;

        cr_assert_not_null(b);
        memset(err, 0, sizeof(*err));
        ret = vd_zonefile_load(b, path, &records, err);
        cr_assert_lt(ret, 0, "%s loaded but should have failed", path);
        cr_assert_eq(records, 0, "a failed load reported %zu records", records);
        vd_builder_free(b);
        return ret;
}

static void assert_contains(const char *msg, const char *want)
{
        cr_assert_not_null(strstr(msg, want), "message \"%s\" does not contain \"%s\"", msg, want);
}

/* ---- good files ---- */

Test(zonefile, basic_zone_every_record_exact)
{
        size_t records = 0;
        vd_snapshot *s = load_one(ZONES "/good/basic.zone", &records);
        struct recs r = records_of(s);
        struct bytes x;

        cr_assert_eq(records, 17, "records: %zu", records);
        cr_assert_eq(r.n, 17, "snapshot holds %zu records", r.n);

        /* multi-line SOA with comments, relative names completed by $ORIGIN, $TTL */
        expect_soa(&r, "example.test.", 3600, "ns1.example.test.", "hostmaster.example.test.",
                   2024010101, 300);
        /* blank owners after the SOA: NS at the apex, one relative, one absolute */
        x = (struct bytes){0};
        put_name(&x, "ns1.example.test.");
        expect_rr(&r, "example.test.", VD_TYPE_NS, 3600, &x);
        x = (struct bytes){0};
        put_name(&x, "ns2.example.net.");
        expect_rr(&r, "example.test.", VD_TYPE_NS, 3600, &x);
        cr_assert_eq(count_of(&r, "example.test.", VD_TYPE_NS), 2);

        /* two A records for www, the second with a blank owner */
        expect_a(&r, "www.example.test.", 3600, 192, 0, 2, 10);
        expect_a(&r, "www.example.test.", 3600, 192, 0, 2, 11);
        cr_assert_eq(count_of(&r, "www.example.test.", VD_TYPE_A), 2);

        x = (struct bytes){0};
        put32(&x, 0x20010db8);
        put32(&x, 0);
        put32(&x, 0);
        put32(&x, 0x10);
        expect_rr(&r, "www.example.test.", VD_TYPE_AAAA, 3600, &x);

        /* explicit TTL wins over $TTL */
        x = (struct bytes){0};
        put_name(&x, "www.example.test.");
        expect_rr(&r, "alias.example.test.", VD_TYPE_CNAME, 120, &x);

        /* wildcard owner passes through as "*" */
        expect_a(&r, "*.apps.example.test.", 60, 192, 0, 2, 80);

        x = (struct bytes){0};
        put16(&x, 10);
        put_name(&x, "mail.example.test.");
        expect_rr(&r, "example.test.", VD_TYPE_MX, 3600, &x);
        x = (struct bytes){0};
        put16(&x, 20);
        put_name(&x, "mail.example.net.");
        expect_rr(&r, "example.test.", VD_TYPE_MX, 3600, &x);

        /* one TXT record holding two character-strings */
        x = (struct bytes){0};
        put_string(&x, "v=spf1 -all");
        put_string(&x, "second string");
        expect_rr(&r, "txt.example.test.", VD_TYPE_TXT, 3600, &x);
        cr_assert_eq(count_of(&r, "txt.example.test.", VD_TYPE_TXT), 1);

        x = (struct bytes){0};
        put16(&x, 10);
        put16(&x, 60);
        put16(&x, 5060);
        put_name(&x, "sip.example.test.");
        expect_rr(&r, "_sip._tcp.example.test.", VD_TYPE_SRV, 3600, &x);

        x = (struct bytes){0}; /* CAA (RFC 8659): flags, tag length, tag, value */
        put8(&x, 0);
        put_string(&x, "issue");
        memcpy(x.b + x.n, "amazon.com", 10);
        x.n += 10;
        expect_rr(&r, "example.test.", 257, 3600, &x);

        x = (struct bytes){0};
        put_name(&x, "www.example.test.");
        expect_rr(&r, "10.example.test.", VD_TYPE_PTR, 3600, &x);

        free(r.v);
        vd_snapshot_unref(s);
}

Test(zonefile, soa_owner_is_origin_and_ttl_defaults_to_last_written)
{
        size_t records = 0;
        vd_snapshot *s = load_one(ZONES "/good/no-origin.zone", &records);
        struct recs r = records_of(s);

        cr_assert_eq(records, 5);
        expect_soa(&r, "corp.example.", 900, "ns1.corp.example.", "admin.corp.example.", 1, 300);
        /* relative names are completed with the SOA owner, not the root */
        expect_a(&r, "host.corp.example.", 600, 10, 1, 0, 1);
        /* no $TTL: an omitted TTL is the last one written (600), not ldns's 3600 */
        expect_a(&r, "host2.corp.example.", 600, 10, 1, 0, 2);
        /* ... also when the last one written is 0 */
        expect_a(&r, "host3.corp.example.", 0, 10, 1, 0, 3);
        expect_a(&r, "host4.corp.example.", 0, 10, 1, 0, 4);
        free(r.v);
        vd_snapshot_unref(s);
}

Test(zonefile, ttl_directive_zero_is_a_default)
{
        vd_snapshot *s = load_one(ZONES "/good/ttl-zero.zone", NULL);
        struct recs r = records_of(s);

        expect_soa(&r, "ttl.example.", 0, "ns.ttl.example.", "admin.ttl.example.", 1, 300);
        expect_a(&r, "a.ttl.example.", 0, 10, 9, 0, 1);
        expect_a(&r, "b.ttl.example.", 30, 10, 9, 0, 2);
        expect_a(&r, "c.ttl.example.", 0, 10, 9, 0, 3);
        free(r.v);
        vd_snapshot_unref(s);
}

Test(zonefile, ttl_units_as_bind_writes_them)
{
        vd_snapshot *s = load_one(ZONES "/good/ttl-units.zone", NULL);
        struct recs r = records_of(s);
        struct bytes x = {0};

        /* refresh 2h, retry 15m, expire 2w, minimum 5m: the periods expect_soa wants */
        expect_soa(&r, "units.example.", 3600, "ns.units.example.", "admin.units.example.", 1, 300);
        expect_a(&r, "a.units.example.", 5400, 10, 8, 0, 1);
        expect_a(&r, "b.units.example.", 172800, 10, 8, 0, 2);
        expect_a(&r, "c.units.example.", 604800, 10, 8, 0, 3);
        expect_a(&r, "d.units.example.", 90, 10, 8, 0, 4);
        expect_a(&r, "e.units.example.", 2147483647, 10, 8, 0, 5);
        expect_a(&r, "f.units.example.", 93600, 10, 8, 0, 6); /* $TTL 1d2h */
        expect_a(&r, "g.units.example.", 0, 10, 8, 0, 7);
        /* parentheses in quotes and escaped ones are text, not grouping */
        put_string(&x, "a (quoted) paren");
        put_string(&x, "(");
        expect_rr(&r, "h.units.example.", VD_TYPE_TXT, 93600, &x);
        free(r.v);
        vd_snapshot_unref(s);
}

Test(zonefile, example_corp_zone)
{
        size_t records = 0;
        vd_snapshot *s = load_one(VD_SOURCE_DIR "/zones/example/corp.zone", &records);
        struct recs r = records_of(s);
        struct bytes x;

        cr_assert_eq(records, r.n);
        expect_soa(&r, "corp.example.internal.", 900, "ns-1536.awsdns-00.co.uk.",
                   "awsdns-hostmaster.amazon.com.", 1, 300);
        cr_assert_eq(count_of(&r, "corp.example.internal.", VD_TYPE_NS), 4);
        x = (struct bytes){0};
        put_name(&x, "portal.corp.example.internal.");
        expect_rr(&r, "www.corp.example.internal.", VD_TYPE_CNAME, 300, &x);
        x = (struct bytes){0};
        put_name(&x, "web.corp.example.internal.");
        expect_rr(&r, "portal.corp.example.internal.", VD_TYPE_CNAME, 300, &x);
        cr_assert_eq(count_of(&r, "web.corp.example.internal.", VD_TYPE_A), 2);
        x = (struct bytes){0};
        put_name(&x, "sqs.us-east-1.amazonaws.com.");
        expect_rr(&r, "queue.corp.example.internal.", VD_TYPE_CNAME, 300, &x);
        expect_a(&r, "*.apps.corp.example.internal.", 300, 10, 0, 4, 100);
        expect_a(&r, "bastion.corp.example.internal.", 60, 10, 0, 0, 5);
        cr_assert_eq(count_of(&r, "corp.example.internal.", VD_TYPE_MX), 2);
        cr_assert_eq(count_of(&r, "_ldap._tcp.corp.example.internal.", VD_TYPE_SRV), 2);
        cr_assert_eq(count_of(&r, "_info.corp.example.internal.", VD_TYPE_TXT), 1);
        free(r.v);
        vd_snapshot_unref(s);
}

/* ---- bad files: each message names the file and the line ---- */

struct bad_case {
        const char *file;
        const char *where; /* "file:line:" or "file:" */
        const char *what;
};

Test(zonefile, bad_files_name_file_line_and_problem)
{
        static const struct bad_case cases[] = {
            {"syntax.zone",
             "syntax.zone:5: ", "A record: expected an IPv4 address, got '10.0.0.300'"},
            {"syntax-multiline.zone", "syntax-multiline.zone:3: ",
             "SOA record: expected a primary name server, a mailbox name, a serial (32-bit "
             "number) and refresh, retry, expire and minimum periods, got 'ns admin 1 7200 900 "
             "1209600' (too few fields)"},
            {"unknown-type.zone", "unknown-type.zone:3: ", "unknown record type 'BOGUS'"},
            /* parentheses ldns alone accepts: an unclosed one swallows the rest of the file */
            {"unclosed-paren.zone", "unclosed-paren.zone:6: ",
             "unbalanced parenthesis: the '(' on line 6 is never closed"},
            {"unclosed-paren-mid.zone", "unclosed-paren-mid.zone:5: ",
             "unbalanced parenthesis: the '(' on line 5 is never closed"},
            {"stray-paren.zone", "stray-paren.zone:3: ", "unbalanced parenthesis: a ')'"},
            /* TTLs ldns alone reads as far as they are digits, or wraps */
            {"ttl-bad-unit.zone", "ttl-bad-unit.zone:3: ",
             "bad TTL '1x'; expected a number of seconds or a BIND duration such as 1h30m"},
            {"ttl-trailing-number.zone", "ttl-trailing-number.zone:4: ", "bad TTL '1h30'"},
            {"ttl-directive-bad.zone", "ttl-directive-bad.zone:2: ", "bad $TTL value '1x'"},
            {"ttl-directive-empty.zone", "ttl-directive-empty.zone:2: ", "$TTL without a value"},
            {"ttl-wraps.zone", "ttl-wraps.zone:4: ", "TTL 4294967296 is too large"},
            /* rdata: what was expected and what was found */
            {"rdata-a.zone",
             "rdata-a.zone:6: ", "A record: expected an IPv4 address, got '300.1.1.1'"},
            {"rdata-aaaa.zone",
             "rdata-aaaa.zone:3: ", "AAAA record: expected an IPv6 address, got '2001:db8::g'"},
            {"rdata-mx.zone", "rdata-mx.zone:3: ",
             "MX record: expected a preference (0-65535) and a host name, got "
             "'mail.rdata.example.'"},
            {"rdata-mx-range.zone", "rdata-mx-range.zone:4: ",
             "MX record: expected a preference (0-65535) and a host name, got '70000 mail' "
             "(70000 is larger than 65535)"},
            {"rdata-generic.zone", "rdata-generic.zone:3: ",
             "SSHFP record: expected an 8-bit number, an 8-bit number and hex data, got '1 1 "
             "not-hex'"},
            {"rdata-missing.zone",
             "rdata-missing.zone:3: ", "A record: expected an IPv4 address, got nothing"},
            {"no-soa.zone", "no-soa.zone:4: ", "expected an SOA record"},
            {"comments-only.zone", "comments-only.zone: ", "expected an SOA record"},
            {"two-soa.zone", "two-soa.zone:4: ", "first is on line 2"},
            {"out-of-zone.zone", "out-of-zone.zone:4: ", "www.elsewhere.example. is outside"},
            {"class-ch.zone", "class-ch.zone:3: ", "class CH"},
            {"include.zone", "include.zone:3: ", "$INCLUDE"},
            {"soa-not-origin.zone", "soa-not-origin.zone:2: ", "not the zone origin"},
            {"root-soa.zone", "root-soa.zone:1: ", "root zone"},
            {"empty.zone", "empty.zone: ", "empty"},
            {"ttl-too-large.zone", "ttl-too-large.zone:3: ", "TTL 4000000000"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char path[512];
                char where[600];
                vd_error err;

                snprintf(path, sizeof(path), "%s/bad/%s", ZONES, cases[i].file);
                snprintf(where, sizeof(where), "%s/bad/%s", ZONES, cases[i].where);
                load_fails(path, &err);
                assert_contains(err.msg, where);
                assert_contains(err.msg, cases[i].what);
                cr_assert_null(strchr(err.msg, '\n'), "a message of more than one line: %s",
                               err.msg);
        }
}

Test(zonefile, missing_file_names_the_file)
{
        vd_error err;
        int ret = load_fails(ZONES "/bad/does-not-exist.zone", &err);

        cr_assert_eq(ret, -ENOENT);
        assert_contains(err.msg, ZONES "/bad/does-not-exist.zone: ");
        assert_contains(err.msg, "No such file");
}

Test(zonefile, directory_is_not_a_zone_file)
{
        vd_error err;

        load_fails(ZONES "/bad", &err);
        assert_contains(err.msg, ZONES "/bad: ");
}

/* ---- two files ---- */

Test(zonefile, two_files_for_one_apex_conflict_naming_both)
{
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};

        cr_assert_eq(vd_zonefile_load(b, ZONES "/good/same-apex-a.zone", NULL, &err), 0, "%s",
                     err.msg);
        cr_assert_lt(vd_zonefile_load(b, ZONES "/good/same-apex-b.zone", NULL, &err), 0);
        assert_contains(err.msg, ZONES "/good/same-apex-b.zone:1: ");
        assert_contains(err.msg, "same-apex-a.zone");
        vd_builder_free(b);
}

/* A zone nested in another zone's namespace (sub.nest.example inside nest.example) is allowed:
 * each file holds its own names. */
Test(zonefile, nested_zone_with_distinct_names_loads)
{
        static const char *const paths[] = {ZONES "/good/nested-parent.zone",
                                            ZONES "/good/nested-child.zone"};
        vd_snapshot *s = load_all(paths, 2, NULL);
        struct recs r = records_of(s);

        cr_assert_eq(r.n, 5, "records: %zu", r.n);
        cr_assert_eq(count_of(&r, "nest.example.", VD_TYPE_SOA), 1);
        cr_assert_eq(count_of(&r, "sub.nest.example.", VD_TYPE_SOA), 1);
        expect_a(&r, "www.nest.example.", 300, 10, 3, 0, 1);
        expect_a(&r, "host.sub.nest.example.", 300, 10, 3, 0, 9);
        expect_a(&r, "api.sub.nest.example.", 300, 10, 3, 1, 1);
        free(r.v);
        vd_snapshot_unref(s);
}

/* ... but a name that both files hold is a claim conflict (snapshot.h: a name held by two
 * claims is a load error naming both), reported at the line of the second file. */
Test(zonefile, nested_zone_holding_parents_name_conflicts)
{
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};

        cr_assert_eq(vd_zonefile_load(b, ZONES "/good/nested-parent.zone", NULL, &err), 0, "%s",
                     err.msg);
        cr_assert_lt(vd_zonefile_load(b, ZONES "/good/nested-child-clash.zone", NULL, &err), 0);
        assert_contains(err.msg, ZONES "/good/nested-child-clash.zone:5: ");
        assert_contains(err.msg, "nested-parent.zone");
        assert_contains(err.msg, "host.sub.nest.example");
        vd_builder_free(b);
}

/* ---- dump ---- */

/* Dumps s into a new temporary file; returns its path (caller unlinks and frees). */
static char *dump_to_file(const vd_snapshot *s)
{
        char *path = strdup("/tmp/vd_zonefile_dump_XXXXXX");
        int fd;
        FILE *out;

        cr_assert_not_null(path);
        fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        out = fdopen(fd, "w");
        cr_assert_not_null(out);
        cr_assert_eq(vd_zonefile_dump(s, out), 0);
        cr_assert_eq(fclose(out), 0);
        return path;
}

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "r");
        char *text = calloc(1, 1 << 16);
        size_t n;

        cr_assert_not_null(f);
        cr_assert_not_null(text);
        n = fread(text, 1, (1 << 16) - 1, f);
        text[n] = '\0';
        fclose(f);
        return text;
}

static void assert_same_records(const struct recs *a, const struct recs *b)
{
        cr_assert_eq(a->n, b->n, "%zu records before, %zu after", a->n, b->n);
        for (size_t i = 0; i < a->n; i++) {
                bool found = false;
                for (size_t j = 0; j < b->n && !found; j++) {
                        found = a->v[i].owner_len == b->v[j].owner_len &&
                                memcmp(a->v[i].owner, b->v[j].owner, a->v[i].owner_len) == 0 &&
                                a->v[i].type == b->v[j].type && a->v[i].ttl == b->v[j].ttl &&
                                a->v[i].rdlen == b->v[j].rdlen &&
                                memcmp(a->v[i].rdata, b->v[j].rdata, a->v[i].rdlen) == 0;
                }
                cr_assert(found, "record %zu (type %u) lost in the round trip", i, a->v[i].type);
        }
}

static void round_trip(const char *path)
{
        vd_snapshot *s = load_one(path, NULL);
        struct recs before = records_of(s);
        char *dumped = dump_to_file(s);
        vd_snapshot *again = load_one(dumped, NULL);
        struct recs after = records_of(again);

        assert_same_records(&before, &after);
        unlink(dumped);
        free(dumped);
        free(before.v);
        free(after.v);
        vd_snapshot_unref(s);
        vd_snapshot_unref(again);
}

Test(zonefile, dump_round_trips_basic_zone)
{
        round_trip(ZONES "/good/basic.zone");
}

Test(zonefile, dump_round_trips_example_corp_zone)
{
        round_trip(VD_SOURCE_DIR "/zones/example/corp.zone");
}

Test(zonefile, dump_prints_one_record_a_line_as_ldns_does)
{
        vd_snapshot *s = load_one(ZONES "/good/basic.zone", NULL);
        char *path = dump_to_file(s);
        char *text = slurp(path);
        size_t lines = 0;

        for (const char *p = text; *p != '\0'; p++) {
                lines += *p == '\n';
        }
        cr_assert_eq(lines, 17, "dump has %zu lines:\n%s", lines, text);
        assert_contains(text, "example.test.\t3600\tIN\tSOA\tns1.example.test. "
                              "hostmaster.example.test. 2024010101 7200 900 1209600 300\n");
        assert_contains(text, "www.example.test.\t3600\tIN\tA\t192.0.2.10\n");
        assert_contains(text, "*.apps.example.test.\t60\tIN\tA\t192.0.2.80\n");
        assert_contains(text, "txt.example.test.\t3600\tIN\tTXT\t\"v=spf1 -all\" \"second "
                              "string\"\n");
        assert_contains(text, "_sip._tcp.example.test.\t3600\tIN\tSRV\t10 60 5060 "
                              "sip.example.test.\n");
        unlink(path);
        free(path);
        free(text);
        vd_snapshot_unref(s);
}

/* The records the AWS loader produces (SOA, NS, A, AAAA, CNAME, wildcard), fed straight to
 * the builder, come out of --dump as master-file text. */
Test(zonefile, dump_prints_aws_loader_records)
{
        vd_builder *b = vd_builder_new();
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        const char *claim = "describe-vpc-endpoints.json: VpcEndpoints[0] (vpce-0abc)";
        const char *api_claim = "describe-vpc-endpoints.json: VpcEndpoints[1] (vpce-0def)";
        uint8_t apex[VD_NAME_MAX];
        uint8_t name[VD_NAME_MAX];
        size_t apex_len;
        size_t name_len;
        struct bytes soa = {0};
        struct bytes x;
        char *path;
        char *text;

        name_wire("sqs.us-east-1.amazonaws.com.", apex, &apex_len);
        put_name(&soa, "sqs.us-east-1.amazonaws.com.");
        put_name(&soa, "hostmaster.sqs.us-east-1.amazonaws.com.");
        put32(&soa, 1);
        put32(&soa, 7200);
        put32(&soa, 900);
        put32(&soa, 1209600);
        put32(&soa, 60);
        cr_assert_eq(vd_builder_add_zone(b, apex, true, soa.b, (uint16_t)soa.n, 60, claim, &err), 0,
                     "%s", err.msg);
        x = (struct bytes){0};
        put_name(&x, "ns.sqs.us-east-1.amazonaws.com.");
        cr_assert_eq(vd_builder_add_rr(b, apex, VD_TYPE_NS, 60, x.b, (uint16_t)x.n, claim, &err), 0,
                     "%s", err.msg);
        x = (struct bytes){0};
        put_v4(&x, 10, 0, 1, 23);
        cr_assert_eq(vd_builder_add_rr(b, apex, VD_TYPE_A, 60, x.b, (uint16_t)x.n, claim, &err), 0,
                     "%s", err.msg);
        x = (struct bytes){0};
        put32(&x, 0x20010db8);
        put32(&x, 0);
        put32(&x, 0);
        put32(&x, 0x123);
        cr_assert_eq(vd_builder_add_rr(b, apex, VD_TYPE_AAAA, 60, x.b, (uint16_t)x.n, claim, &err),
                     0, "%s", err.msg);
        name_wire("*.s3.us-east-1.amazonaws.com.", name, &name_len);
        x = (struct bytes){0};
        put_v4(&x, 10, 0, 2, 7);
        cr_assert_eq(vd_builder_add_rr(b, name, VD_TYPE_A, 60, x.b, (uint16_t)x.n, claim, &err), 0,
                     "%s", err.msg);
        name_wire("api.partner.example.", name, &name_len);
        x = (struct bytes){0};
        put_name(&x, "vpce-0def-abcd1234.vpce-svc-1.us-east-1.vpce.amazonaws.com.");
        cr_assert_eq(
            vd_builder_add_rr(b, name, VD_TYPE_CNAME, 60, x.b, (uint16_t)x.n, api_claim, &err), 0,
            "%s", err.msg);
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);

        path = dump_to_file(s);
        text = slurp(path);
        assert_contains(text, "sqs.us-east-1.amazonaws.com.\t60\tIN\tSOA\tsqs.us-east-1."
                              "amazonaws.com. hostmaster.sqs.us-east-1.amazonaws.com. 1 7200 "
                              "900 1209600 60\n");
        assert_contains(text, "sqs.us-east-1.amazonaws.com.\t60\tIN\tNS\tns.sqs.us-east-1."
                              "amazonaws.com.\n");
        assert_contains(text, "sqs.us-east-1.amazonaws.com.\t60\tIN\tA\t10.0.1.23\n");
        assert_contains(text, "sqs.us-east-1.amazonaws.com.\t60\tIN\tAAAA\t2001:db8::123\n");
        assert_contains(text, "*.s3.us-east-1.amazonaws.com.\t60\tIN\tA\t10.0.2.7\n");
        assert_contains(text, "api.partner.example.\t60\tIN\tCNAME\tvpce-0def-abcd1234.vpce-svc-"
                              "1.us-east-1.vpce.amazonaws.com.\n");
        unlink(path);
        free(path);
        free(text);
        vd_snapshot_unref(s);
}

Test(zonefile, dump_reports_write_errors)
{
        vd_snapshot *s = load_one(ZONES "/good/basic.zone", NULL);
        FILE *full = fopen("/dev/full", "w");

        cr_assert_not_null(full);
        cr_assert_eq(vd_zonefile_dump(s, full), -EIO);
        fclose(full);
        vd_snapshot_unref(s);
}

/* A CNAME loop is found when everything is loaded, and reported at its first record's line:
 * the file's own line numbers travel with each record into the builder. */
Test(zonefile, cname_loop_refused_at_finish_with_file_and_line)
{
        const char *path = ZONES "/bad/cname-loop.zone";
        vd_builder *b = vd_builder_new();
        vd_snapshot *s = NULL;
        vd_error err = {{0}};

        cr_assert_eq(vd_zonefile_load(b, path, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_builder_finish(b, &s, &err), -ELOOP, "a loop must not compile");
        cr_assert_null(s);
        assert_contains(err.msg, ZONES "/bad/cname-loop.zone:9: CNAME loop: start.loop.example.");
        assert_contains(err.msg, "middle.loop.example. (" ZONES "/bad/cname-loop.zone:10)");
        vd_builder_free(b);
}
