/* fuzz_util.h — helpers shared by the libFuzzer harnesses in tests/fuzz/: a scratch directory for
 * loaders that read files, query construction, and invariant checks on responses through
 * ldns (an independent parser). Not part of the daemon; never linked into it. */
#ifndef VPCDNS_FUZZ_UTIL_H
#define VPCDNS_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

/* An invariant of the code under test does not hold: print and abort (libFuzzer saves the
 * input as a crash). */
#define FUZZ_CHECK(cond)                                                                           \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz: invariant failed: %s at %s:%d\n", #cond, __FILE__,  \
                                __LINE__);                                                         \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* Quietens logs and creates the scratch directory once per process; returns its path. */
const char *fuzz_setup(void);

/* Writes data to dir/name, returning the path in a static buffer (one per call site is not
 * needed: callers use it before the next call). Aborts on I/O failure. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t len);

/* Builds a one-question query for a wire name; with edns, an OPT with udp_size and the DO
 * bit when dnssec_ok. Returns its length. out must hold 512 bytes. */
size_t fuzz_make_query(uint16_t id, const uint8_t *name, size_t name_len, uint16_t qtype, bool edns,
                       uint16_t udp_size, bool dnssec_ok, uint8_t *out);

/* Checks the header of a response: QR set, the client's ID, and the question bytes as the
 * client sent them. Aborts when not. */
void fuzz_check_header(const vd_query_info *qi, const uint8_t *resp, size_t len);

/* fuzz_check_header, and the response parses with ldns, with an OPT only when the client
 * sent one. For responses built from our own data. */
void fuzz_check_response(const vd_query_info *qi, const uint8_t *resp, size_t len);

/* True when ldns parses msg and reads every record exactly as far as its RDLENGTH says.
 * ldns does not check that typed rdata ends at RDLENGTH (an MX with trailing octets, a name
 * running past it), so on such messages ldns and the RDLENGTH walk disagree on where the next
 * record starts and ldns-based checks say nothing about the code under test. Also false when
 * ldns decompresses a name inside rdata that RFC 3597 §4 keeps opaque (the records differ). */
bool fuzz_ldns_agrees(const uint8_t *msg, size_t len);

/* Answers a few fixed queries and, for up to max_names names of s (in the snapshot's order),
 * A/AAAA/CNAME/SOA/ANY questions, with and without EDNS, with vd_snapshot_answer; checks
 * every local answer with fuzz_check_response and its length against the cap. */
void fuzz_answer_snapshot(const vd_snapshot *s, size_t max_names);

#endif
