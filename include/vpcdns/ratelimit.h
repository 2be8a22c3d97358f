/* ratelimit.h — per-client limits of the transports: response rate limiting (RRL) for UDP by
 * client prefix, with slip (an empty TC answer so that a real client retries over TCP), and
 * counts per client address (forwarded queries pending upstream, TCP connections open).
 *
 * The tables are not per worker: the server makes one of each kind (so one for the process)
 * and every worker thread uses it, so a limit holds for a client across all workers,
 * whichever of them SO_REUSEPORT gives its packets to. Every call is thread-safe. The tables
 * have a fixed size chosen at creation (the only allocation); lookups never allocate and take
 * a bounded number of steps under one lock of many (the tables are lock-striped by the hash
 * of the client), so threads serving different clients rarely meet on a lock. Entries are
 * found through SipHash under a random key per table (siphash.h), so a client cannot choose
 * addresses that collide. Time is passed in by the caller (seconds from one monotonic clock
 * for all threads), so tests can use a fake clock. */
#ifndef VPCDNS_RATELIMIT_H
#define VPCDNS_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- response rate limiting ------------------------------------------------------------ */

typedef struct vd_ratelimit vd_ratelimit;

typedef struct vd_ratelimit_options {
        unsigned responses_per_second; /* per client prefix; must be > 0 */
        unsigned slip;                 /* every slip-th response over the limit is sent as TC;
                                          0: drop them all */
        unsigned ipv4_prefix;          /* 0..32: clients in one IPv4 /N share a budget */
        unsigned ipv6_prefix;          /* 0..128 */
        size_t entries;                /* table size (rounded up); 0: a default of 4096 */
} vd_ratelimit_options;

typedef enum vd_ratelimit_verdict {
        VD_RATELIMIT_SEND = 0, /* within the limit: send the response */
        VD_RATELIMIT_DROP,     /* over the limit: send nothing */
        VD_RATELIMIT_SLIP,     /* over the limit: send vd_ratelimit_slip()'s TC answer instead */
} vd_ratelimit_verdict;

/* Returns 0, -EINVAL (rate 0 or a prefix out of range) or -ENOMEM. */
int vd_ratelimit_new(const vd_ratelimit_options *opt, vd_ratelimit **out);
/* Changes the rate, slip and prefixes of a table in use (a reload), from any thread while
 * others check; entries stay (a new prefix length starts new keys). 0 or -EINVAL as above;
 * opt->entries is not read. */
int vd_ratelimit_set(vd_ratelimit *rl, const vd_ratelimit_options *opt);
void vd_ratelimit_free(vd_ratelimit *rl);

/* Accounts one response to client (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as
 * IPv4) at now_s and says what to do with it. Each prefix may send responses_per_second
 * responses per second, counted over every thread that calls this. A now_s earlier than the
 * prefix's current second (another thread's clock read later) counts in the current second.
 * When the table is full, the entry of the prefix seen longest ago is reused: a prefix never
 * spends another one's budget. Other families: always SEND. */
vd_ratelimit_verdict vd_ratelimit_check(vd_ratelimit *rl, const struct sockaddr *client,
                                        uint64_t now_s);

/* Turns the response resp[0..len) into the slip answer in out: its header and question only,
 * TC set, the other counts 0 (no records, no OPT). out may equal resp. Returns the length
 * (at least 12), or 0 when len < 12 or cap is too small. */
size_t vd_ratelimit_slip(const uint8_t *resp, size_t len, uint8_t *out, size_t cap);

/* ---- counts per client address: forwarded queries pending, TCP connections open --------- */

typedef struct vd_ratelimit_pending vd_ratelimit_pending;

#define VD_PENDING_UNTRACKED (-1) /* no room near the address: not counted, not limited */
#define VD_PENDING_FULL (-2)      /* the address is at its limit */

/* entries: table size (rounded up); 0: a default of 4096. Returns 0 or -ENOMEM. */
int vd_ratelimit_pending_new(size_t entries, vd_ratelimit_pending **out);
void vd_ratelimit_pending_free(vd_ratelimit_pending *t);

/* The slot counting the pending queries of client's address (port ignored), claimed when the
 * address has none yet. The slot stays the address's own while its count is above 0.
 * Returns -1 when the table has no room near this address (the query is then not tracked). */
int vd_ratelimit_pending_slot(vd_ratelimit_pending *t, const struct sockaddr *client);
unsigned vd_ratelimit_pending_count(vd_ratelimit_pending *t, int slot);
void vd_ratelimit_pending_inc(vd_ratelimit_pending *t, int slot);
/* A decrement below 0 is a programming error (VD_CHECK). */
void vd_ratelimit_pending_dec(vd_ratelimit_pending *t, int slot);

/* Counts one more for client's address unless it already has max: its slot (give it back with
 * vd_ratelimit_pending_dec), VD_PENDING_FULL, or VD_PENDING_UNTRACKED. One step under the
 * address's lock, so two workers cannot both take the last one. (vd_ratelimit_pending_slot
 * followed by _inc is two steps: another thread may claim a free slot in between.) */
int vd_ratelimit_pending_acquire(vd_ratelimit_pending *t, const struct sockaddr *client,
                                 unsigned max);

#endif
