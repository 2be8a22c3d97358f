/* fuzz_util.c — see fuzz_util.h. Test-only code: allocation and formatting are fine here. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ldns/ldns.h>

#include "fuzz_util.h"
#include "vpcdns/log.h"

static char scratch_dir[PATH_MAX];

static void remove_scratch(void)
{
        /* Only files this process wrote into its own mkdtemp directory. */
        static const char *const names[] = {"describe-vpc-endpoints.json",
                                            "describe-network-interfaces.json", "input.zone",
                                            "input.yaml"};
        char path[PATH_MAX + 64];
        if (scratch_dir[0] == '\0')
                return;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", scratch_dir, names[i]);
                unlink(path);
        }
        rmdir(scratch_dir);
}

const char *fuzz_setup(void)
{
        if (scratch_dir[0] != '\0')
                return scratch_dir;
        vd_log_set_level(VD_LOG_ERROR);
        const char *base = getenv("TMPDIR");
        snprintf(scratch_dir, sizeof(scratch_dir), "%s/vpcdns-fuzz-XXXXXX",
                 base != NULL && base[0] != '\0' ? base : "/tmp");
        if (mkdtemp(scratch_dir) == NULL) {
                perror("fuzz: mkdtemp");
                abort();
        }
        atexit(remove_scratch);
        return scratch_dir;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t len)
{
        static char path[PATH_MAX + 64];
        snprintf(path, sizeof(path), "%s/%s", fuzz_setup(), name);
        FILE *f = fopen(path, "wb");
        if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
                perror("fuzz: writing scratch file");
                abort();
        }
        return path;
}

size_t fuzz_make_query(uint16_t id, const uint8_t *name, size_t name_len, uint16_t qtype, bool edns,
                       uint16_t udp_size, bool dnssec_ok, uint8_t *out)
{
        size_t n = VD_HEADER_LEN;
        vd_wire_put16(out, id);
        vd_wire_put16(out + 2, VD_FLAG_RD);
        vd_wire_put16(out + 4, 1);
        vd_wire_put16(out + 6, 0);
        vd_wire_put16(out + 8, 0);
        vd_wire_put16(out + 10, edns ? 1 : 0);
        memcpy(out + n, name, name_len);
        n += name_len;
        vd_wire_put16(out + n, qtype);
        vd_wire_put16(out + n + 2, VD_CLASS_IN);
        n += 4;
        if (edns) {
                out[n] = 0; /* root owner */
                vd_wire_put16(out + n + 1, VD_TYPE_OPT);
                vd_wire_put16(out + n + 3, udp_size);
                vd_wire_put32(out + n + 5, dnssec_ok ? VD_EDNS_DO : 0);
                vd_wire_put16(out + n + 9, 0);
                n += 11;
        }
        return n;
}

void fuzz_check_header(const vd_query_info *qi, const uint8_t *resp, size_t len)
{
        FUZZ_CHECK(len >= VD_HEADER_LEN);
        FUZZ_CHECK(vd_wire_get16(resp) == qi->id);
        uint16_t flags = vd_wire_get16(resp + 2);
        FUZZ_CHECK(flags & VD_FLAG_QR);
        if (qi->question_ok) {
                FUZZ_CHECK(vd_wire_get16(resp + 4) == 1);
                FUZZ_CHECK(len >= VD_HEADER_LEN + (size_t)qi->qname_len + 4);
                FUZZ_CHECK(memcmp(resp + VD_HEADER_LEN, qi->qname, qi->qname_len) == 0);
                FUZZ_CHECK(vd_wire_get16(resp + VD_HEADER_LEN + qi->qname_len) == qi->qtype);
                FUZZ_CHECK(vd_wire_get16(resp + VD_HEADER_LEN + qi->qname_len + 2) == qi->qclass);
        }
}

void fuzz_check_response(const vd_query_info *qi, const uint8_t *resp, size_t len)
{
        fuzz_check_header(qi, resp, len);
        ldns_pkt *pkt = NULL;
        ldns_status st = ldns_wire2pkt(&pkt, resp, len);
        if (st != LDNS_STATUS_OK)
                fprintf(stderr, "fuzz: ldns rejects our response: %s\n",
                        ldns_get_errorstr_by_id(st));
        FUZZ_CHECK(st == LDNS_STATUS_OK);
        /* An OPT in the response only when the client sent one. */
        FUZZ_CHECK(!ldns_pkt_edns(pkt) || qi->has_edns || !qi->question_ok);
        ldns_pkt_free(pkt);
}

/* RFC 3597 §4: names in the rdata of later types are never compressed, and a reader keeps
 * that rdata as opaque octets. ldns decompresses names in some of them (RRSIG, NSEC, TALINK,
 * ...); when that changes the rdata, ldns and a conforming reader see different records. */
static bool opaque_rdata_same(const ldns_rr *rr, const uint8_t *rdata, size_t rdlen)
{
        ldns_buffer *b = ldns_buffer_new(rdlen + 16);
        FUZZ_CHECK(b != NULL);
        bool same = ldns_rr_rdata2buffer_wire(b, rr) == LDNS_STATUS_OK &&
                    ldns_buffer_position(b) == rdlen &&
                    memcmp(ldns_buffer_begin(b), rdata, rdlen) == 0;
        ldns_buffer_free(b);
        return same;
}

bool fuzz_ldns_agrees(const uint8_t *msg, size_t len)
{
        ldns_pkt *pkt = NULL;
        if (ldns_wire2pkt(&pkt, msg, len) != LDNS_STATUS_OK)
                return false;
        ldns_pkt_free(pkt);
        size_t pos = VD_HEADER_LEN;
        uint16_t counts[4];
        for (int s = 0; s < 4; s++)
                counts[s] = vd_wire_get16(msg + 4 + 2 * s);
        static const ldns_pkt_section sections[4] = {LDNS_SECTION_QUESTION, LDNS_SECTION_ANSWER,
                                                     LDNS_SECTION_AUTHORITY,
                                                     LDNS_SECTION_ADDITIONAL};
        for (int s = 0; s < 4; s++) {
                for (uint16_t i = 0; i < counts[s]; i++) {
                        size_t expect = pos, fixed = 0, prefix, names;
                        bool opaque = false;
                        if (s == 0) {
                                uint8_t name[VD_NAME_MAX];
                                size_t name_len;
                                if (vd_wire_read_name(msg, len, &expect, name, &name_len, false) !=
                                    0)
                                        return false;
                                expect += 4;
                        } else {
                                uint16_t type;
                                if (vd_wire_skip_rr(msg, len, &expect, &type, &fixed) != 0)
                                        return false;
                                opaque = !vd_wire_rdata_names(type, &prefix, &names);
                        }
                        ldns_rr *rr = NULL;
                        ldns_status st = ldns_wire2rr(&rr, msg, len, &pos, sections[s]);
                        bool same = st == LDNS_STATUS_OK && pos == expect &&
                                    (!opaque || opaque_rdata_same(rr, msg + fixed + 10,
                                                                  vd_wire_get16(msg + fixed + 8)));
                        ldns_rr_free(rr);
                        if (!same)
                                return false;
                }
        }
        return true;
}

struct owner_list {
        const uint8_t *names[64];
        size_t n, max;
};

static int collect_owner(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                         const uint8_t *rdata, uint16_t rdlen)
{
        struct owner_list *l = arg;
        if (l->n > 0 && l->names[l->n - 1] == owner)
                return 0;
        l->names[l->n++] = owner;
        return l->n >= l->max ? 1 : 0;
}

static void answer_one(const vd_snapshot *s, const uint8_t *name, size_t name_len, uint16_t qtype,
                       bool edns, uint16_t udp_size, uint32_t rotation)
{
        uint8_t query[512], out[VD_UDP_PAYLOAD];
        vd_query_info qi;
        size_t qlen = fuzz_make_query(0x1234, name, name_len, qtype, edns, udp_size, edns, query);
        FUZZ_CHECK(vd_wire_parse_query(query, qlen, &qi) == VD_PARSE_OK);
        size_t cap = vd_wire_client_udp_max(&qi);
        FUZZ_CHECK(cap <= sizeof(out));
        size_t len = 0;
        if (vd_snapshot_answer(s, &qi, rotation, out, cap, &len) != VD_LOCAL_ANSWERED)
                return;
        FUZZ_CHECK(len <= cap);
        fuzz_check_response(&qi, out, len);
        /* Again as a client in the snapshot's first AZ, with the mode and the ENIs' health
         * taken from rotation, for the AZ and health selection of ENI addresses. */
        vd_answer_client client = {(vd_az_affinity)(rotation % 3), NULL, NULL};
        if (vd_snapshot_az_count(s) > 0)
                client.az = vd_snapshot_az_id(s, 0)[0] != '\0' ? vd_snapshot_az_id(s, 0)
                                                               : vd_snapshot_az_name(s, 0);
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++)
                vd_snapshot_eni_set_up(s, i, ((rotation >> (i % 16)) & 1u) == 0);
        vd_local_chase lc;
        memset(&lc, 0, sizeof(lc));
        lc.client = &client;
        vd_local_result r = vd_snapshot_answer_chase(s, &qi, rotation, out, cap, &len, &lc);
        if (r == VD_LOCAL_ANSWERED) {
                FUZZ_CHECK(len <= cap);
                fuzz_check_response(&qi, out, len);
        }
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++)
                vd_snapshot_eni_set_up(s, i, true);
}

void fuzz_answer_snapshot(const vd_snapshot *s, size_t max_names)
{
        static const char *const fixed[] = {
            "sqs.us-east-1.amazonaws.com",
            "vpce-0fd9f58376efe8244-gm7vrd49.sqs.us-east-1.vpce.amazonaws.com",
            "x.y.execute-api.us-east-1.amazonaws.com",
            "nope.us-east-1.vpce.amazonaws.com",
            "www.corp.example.internal",
            "a.b.apps.corp.example.internal",
            "example.com",
        };
        static const uint16_t types[] = {VD_TYPE_A, VD_TYPE_AAAA, VD_TYPE_CNAME, VD_TYPE_SOA,
                                         VD_TYPE_ANY};
        uint8_t wire[VD_NAME_MAX];
        size_t wire_len;

        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
                FUZZ_CHECK(vd_name_from_text(fixed[i], wire, &wire_len) == 0);
                answer_one(s, wire, wire_len, VD_TYPE_A, false, 0, (uint32_t)i);
                answer_one(s, wire, wire_len, VD_TYPE_AAAA, true, 4096, (uint32_t)i);
        }

        struct owner_list owners = {.n = 0, .max = max_names < 64 ? max_names : 64};
        if (owners.max == 0)
                return;
        vd_snapshot_foreach(s, collect_owner, &owners);
        for (size_t i = 0; i < owners.n; i++) {
                size_t n = vd_name_len(owners.names[i], VD_NAME_MAX);
                FUZZ_CHECK(n > 0);
                for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
                        answer_one(s, owners.names[i], n, types[t], false, 0, (uint32_t)t);
                        answer_one(s, owners.names[i], n, types[t], true, 600, (uint32_t)i);
                }
        }
}
