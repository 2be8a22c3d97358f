/* fuzz_query.c — libFuzzer harness for the whole query pipeline (vd_query_handle) against
 * the example snapshot (zones/example: AWS JSON + corp.zone), without a forwarder, so no
 * network. Each input is one client message; an odd length means it came over TCP.
 * Checks the response invariants that hold whatever the client sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "fuzz_util.h"
#include "vpcdns/aws.h"
#include "vpcdns/query.h"
#include "vpcdns/zonefile.h"

#ifndef VD_SOURCE_DIR
#error "build with -DVD_SOURCE_DIR=\"/path/to/repo\""
#endif

static vd_snapshot *snapshot;
static uint8_t *out; /* exactly VD_TCP_MAX bytes, so ASan sees any write past out_cap */

static void never_called(void *arg, const uint8_t *resp, size_t len)
{
        FUZZ_CHECK(!"reply callback called without a forwarder");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        vd_error err = {{0}};
        fuzz_setup();
        vd_builder *b = vd_builder_new();
        FUZZ_CHECK(b != NULL);
        if (vd_aws_load(b, VD_SOURCE_DIR "/zones/example", NULL, &err) != 0 ||
            vd_zonefile_load(b, VD_SOURCE_DIR "/zones/example/corp.zone", NULL, &err) != 0 ||
            vd_builder_finish(b, &snapshot, &err) != 0) {
                fprintf(stderr, "fuzz_query: cannot load the example snapshot: %s\n", err.msg);
                abort();
        }
        vd_builder_free(b);
        out = malloc(VD_TCP_MAX);
        FUZZ_CHECK(out != NULL);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        bool tcp = (size & 1) != 0;
        vd_query_env env = {
            .snapshot = snapshot, .forwarder = NULL, .rotation = (uint32_t)size * 2654435761u};
        size_t out_len = 0;
        vd_query_outcome oc = vd_query_handle(&env, NULL, data, size, tcp, out, VD_TCP_MAX,
                                              &out_len, never_called, NULL);
        FUZZ_CHECK(oc == VD_QUERY_REPLY || oc == VD_QUERY_DROP);
        FUZZ_CHECK(env.counters.queries == 1);
        if (oc == VD_QUERY_DROP) {
                /* Only what has no header or is itself a response goes unanswered. */
                FUZZ_CHECK(size < VD_HEADER_LEN || (vd_wire_get16(data + 2) & VD_FLAG_QR));
                return 0;
        }
        FUZZ_CHECK(size >= VD_HEADER_LEN);
        FUZZ_CHECK(out_len >= VD_HEADER_LEN && out_len <= VD_TCP_MAX);

        uint16_t qflags = vd_wire_get16(data + 2);
        uint16_t rflags = vd_wire_get16(out + 2);
        FUZZ_CHECK(vd_wire_get16(out) == vd_wire_get16(data)); /* ID */
        FUZZ_CHECK(rflags & VD_FLAG_QR);
        FUZZ_CHECK(VD_OPCODE(rflags) == VD_OPCODE(qflags));
        FUZZ_CHECK((rflags & VD_FLAG_RD) == (qflags & VD_FLAG_RD));
        FUZZ_CHECK(!(tcp && (rflags & VD_FLAG_TC))); /* nothing in the example nears 64 KiB */

        /* The independent parser must accept every response we send. */
        ldns_pkt *resp = NULL;
        ldns_status st = ldns_wire2pkt(&resp, out, out_len);
        if (st != LDNS_STATUS_OK)
                fprintf(stderr, "fuzz_query: ldns rejects our response: %s\n",
                        ldns_get_errorstr_by_id(st));
        FUZZ_CHECK(st == LDNS_STATUS_OK);
        bool resp_opt = ldns_pkt_edns(resp);
        ldns_pkt_free(resp);

        vd_query_info qi;
        vd_parse_status ps = vd_wire_parse_query(data, size, &qi);
        FUZZ_CHECK(ps != VD_PARSE_DROP);
        if (qi.question_ok) {
                /* The question goes back exactly as sent (letter case included). */
                FUZZ_CHECK(vd_wire_get16(out + 4) == 1);
                FUZZ_CHECK(out_len >= qi.question_end);
                FUZZ_CHECK(memcmp(out + VD_HEADER_LEN, data + VD_HEADER_LEN,
                                  qi.question_end - VD_HEADER_LEN) == 0);
        } else {
                FUZZ_CHECK(vd_wire_get16(out + 4) == 0);
        }
        if (ps == VD_PARSE_OK) {
                FUZZ_CHECK(resp_opt == qi.has_edns); /* OPT back exactly when one came */
                fuzz_check_response(&qi, out, out_len);
        }
        if (!tcp) {
                /* RFC 1035 §4.2.1 / RFC 6891 §6.2.5: 512 without EDNS, else the client's
                 * payload size clamped to [512, our VD_UDP_PAYLOAD]. */
                size_t limit = VD_UDP_MIN;
                if (ps == VD_PARSE_OK && qi.has_edns) {
                        limit = qi.edns_udp_size;
                        if (limit < VD_UDP_MIN)
                                limit = VD_UDP_MIN;
                        if (limit > VD_UDP_PAYLOAD)
                                limit = VD_UDP_PAYLOAD;
                }
                if (!resp_opt)
                        FUZZ_CHECK(out_len <= VD_UDP_MIN);
                FUZZ_CHECK(out_len <= limit);
        }
        return 0;
}
