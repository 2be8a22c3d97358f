/* forward.h — sends queries that local data does not answer to the upstream servers through
 * c-ares on a libuv loop, and turns each upstream answer into the client's response.
 *
 * One forwarder per worker loop; it is not thread-safe and never blocks. For every query it
 * accepts it calls the done callback exactly once, never from inside vd_forwarder_query():
 * with the client's response (upstream answer with the client's ID, question as sent, our OPT
 * or none as the client asked, TC when larger than the client accepts), with SERVFAIL when no
 * upstream answered within the time budget, or with len 0 when the forwarder is closing. */
#ifndef VPCDNS_FORWARD_H
#define VPCDNS_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

typedef struct vd_forwarder vd_forwarder;

/* resp is valid only during the call. len 0: nothing to send (shutdown). */
typedef void (*vd_reply_fn)(void *arg, const uint8_t *resp, size_t len);

typedef struct vd_forward_options {
        const vd_addr *servers; /* copied */
        size_t n_servers;
        unsigned timeout_ms; /* total budget per query, e.g. 2000 */
        /* Called with every upstream answer that answers its question (also one arriving after
         * the client already got SERVFAIL), before the client's reply is built: the worker's
         * cache stores it. qi is the client's question; may be NULL. */
        void (*on_answer)(void *arg, const vd_query_info *qi, const uint8_t *answer, size_t len);
        void *on_answer_arg;
} vd_forward_options;

int vd_forwarder_new(uv_loop_t *loop, const vd_forward_options *opt, vd_forwarder **out,
                     vd_error *err);

/* Forwards the query described by qi (copied; the packet may be freed after return).
 * max_len is the largest response the client accepts (UDP limit, or 65535 for TCP).
 * Returns 0 when accepted (done will be called once), or a negative code when the query
 * cannot be sent now (no upstreams, out of memory): done is then never called. */
int vd_forwarder_query(vd_forwarder *f, const vd_query_info *qi, size_t max_len, vd_reply_fn done,
                       void *arg);

/* Cancels every pending query (their callbacks run with len 0), closes every handle and frees
 * the forwarder once libuv has closed them; the loop can then end. */
void vd_forwarder_close(vd_forwarder *f);

/* Builds the client's response from an upstream answer: checks that it answers qi's question
 * (ID not checked here), restores the client's ID and question case, replaces the upstream's
 * OPT with ours (or removes it for a client without EDNS), and truncates with TC when longer
 * than max_len; AA is cleared (we answer as a recursive service, spec §5). Returns the response
 * length, or 0 when the answer is malformed or does not match (the caller then answers SERVFAIL).
 * Exposed for tests and fuzzing. */
size_t vd_forward_relay(const vd_query_info *qi, const uint8_t *answer, size_t answer_len,
                        size_t max_len, uint8_t *out, size_t cap);

#endif
