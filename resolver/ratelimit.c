/* ratelimit.c — per-client limits that every worker thread of a server shares: the response
 * rate limiting table (one entry per client prefix and second) with slip, and the tables of
 * counts per client address (forwarded queries pending, TCP connections open). All are
 * set-associative: a keyed hash (SipHash under a random key per table, so a client cannot
 * choose addresses that collide) picks a bucket of WAYS entries, and a key lives in one entry
 * of its bucket. Each table is lock-striped: bucket b is guarded by lock b % n_stripes, so two
 * threads meet on a lock only when their clients hash to the same stripe, and a lock is held
 * for one bucket scan (a few dozen instructions, never a system call). Allocation happens
 * only in the _new functions; the lookups are bounded loops over one bucket. Knows nothing
 * about sockets or libuv. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/common.h"
#include "vpcdns/ratelimit.h"
#include "vpcdns/siphash.h"
#include "vpcdns/wire.h"

#define WAYS 8
#define DEFAULT_ENTRIES 4096
#define MAX_ENTRIES (1u << 24)
#define KEY_LEN 17 /* family tag (4 or 6), then 16 address octets, host bits zeroed */
/* Locks per table (fewer when the table has fewer buckets): two threads looking up random
 * different clients take the same lock once in STRIPES lookups. */
#define STRIPES 256
#define CACHE_LINE 64

/* ---- keys and hashing ------------------------------------------------------------------- */

static void mask_bits(uint8_t *addr, size_t octets, unsigned bits)
{
        for (size_t i = 0; i < octets; i++) {
                if (bits >= 8) {
                        bits -= 8;
                        continue;
                }
                addr[i] &= (uint8_t)(0xffu << (8 - bits));
                bits = 0;
        }
}

/* client → key of its /v4_bits or /v6_bits prefix. False for other families. */
static bool make_key(const struct sockaddr *sa, unsigned v4_bits, unsigned v6_bits,
                     uint8_t key[KEY_LEN])
{
        memset(key, 0, KEY_LEN);
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                key[0] = 4;
                memcpy(key + 1, &in->sin_addr, 4);
                mask_bits(key + 1, 4, v4_bits);
                return true;
        }
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        key[0] = 4;
                        memcpy(key + 1, in6->sin6_addr.s6_addr + 12, 4);
                        mask_bits(key + 1, 4, v4_bits);
                } else {
                        key[0] = 6;
                        memcpy(key + 1, in6->sin6_addr.s6_addr, 16);
                        mask_bits(key + 1, 16, v6_bits);
                }
                return true;
        }
        return false;
}

/* The table's bucket hash: SipHash under the table's own random key, like every table whose
 * keys clients choose (siphash.h). */
static uint64_t hash_key(const uint64_t seed[2], const uint8_t key[KEY_LEN])
{
        return vd_siphash13(seed[0], seed[1], key, KEY_LEN);
}

/* Buckets for at least entries entries: a power of two. */
static size_t bucket_count(size_t entries)
{
        size_t buckets = 1;
        if (entries == 0)
                entries = DEFAULT_ENTRIES;
        if (entries > MAX_ENTRIES)
                entries = MAX_ENTRIES;
        while (buckets * WAYS < entries)
                buckets <<= 1;
        return buckets;
}

/* One lock on a cache line of its own, so that taking it never invalidates a neighbour's. */
typedef struct stripe {
        _Alignas(CACHE_LINE) pthread_mutex_t lock;
} stripe;

/* n locks for a table of buckets buckets (n: a power of two, at most buckets); NULL when out
 * of memory. */
static stripe *stripes_new(size_t buckets, size_t *n)
{
        *n = buckets < STRIPES ? buckets : STRIPES;
        stripe *s = aligned_alloc(CACHE_LINE, *n * sizeof(*s));
        if (s == NULL)
                return NULL;
        for (size_t i = 0; i < *n; i++) {
                if (pthread_mutex_init(&s[i].lock, NULL) != 0) {
                        while (i-- > 0)
                                pthread_mutex_destroy(&s[i].lock);
                        free(s);
                        return NULL;
                }
        }
        return s;
}

static void stripes_free(stripe *s, size_t n)
{
        if (s == NULL)
                return;
        for (size_t i = 0; i < n; i++)
                pthread_mutex_destroy(&s[i].lock);
        free(s);
}

/* n * size bytes, zeroed, on cache-line boundaries: a bucket of either table is a whole
 * number of cache lines (asserted below), so two buckets, guarded by two different stripes,
 * never share a line. NULL when out of memory. */
static void *zalloc_aligned(size_t n, size_t size)
{
        if (size != 0 && n > SIZE_MAX / size)
                return NULL;
        size_t bytes = (n * size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
        void *p = aligned_alloc(CACHE_LINE, bytes);
        if (p != NULL)
                memset(p, 0, bytes);
        return p;
}

/* ---- response rate limiting ------------------------------------------------------------- */

typedef struct rrl_entry {
        uint64_t second; /* the second count and over belong to */
        uint32_t count;  /* responses sent in that second */
        uint32_t over;   /* responses over the limit in that second */
        uint8_t key[KEY_LEN];
        bool used;
} rrl_entry;

_Static_assert(WAYS * sizeof(rrl_entry) % CACHE_LINE == 0, "an RRL bucket is whole cache lines");

struct vd_ratelimit {
        /* Set at creation and by vd_ratelimit_set (a reload) while workers read them: read and
         * written with __atomic builtins. */
        unsigned rate;
        unsigned slip;
        unsigned v4_bits;
        unsigned v6_bits;
        uint64_t seed[2];   /* the SipHash key, random per table */
        size_t mask;        /* buckets - 1 */
        size_t stripe_mask; /* n_stripes - 1 */
        stripe *stripes;    /* bucket b: stripes[b & stripe_mask] */
        rrl_entry *entries; /* guarded by their bucket's stripe */
};

int vd_ratelimit_new(const vd_ratelimit_options *opt, vd_ratelimit **out)
{
        *out = NULL;
        if (opt->responses_per_second == 0 || opt->ipv4_prefix > 32 || opt->ipv6_prefix > 128)
                return -EINVAL;
        vd_ratelimit *rl = calloc(1, sizeof(*rl));
        if (rl == NULL)
                return -ENOMEM;
        size_t buckets = bucket_count(opt->entries);
        size_t n_stripes = 0;
        rl->entries = zalloc_aligned(buckets * WAYS, sizeof(rl->entries[0]));
        rl->stripes = stripes_new(buckets, &n_stripes);
        if (rl->entries == NULL || rl->stripes == NULL) {
                stripes_free(rl->stripes, n_stripes);
                free(rl->entries);
                free(rl);
                return -ENOMEM;
        }
        vd_ratelimit_set(rl, opt);
        vd_siphash_new_key(rl->seed);
        rl->mask = buckets - 1;
        rl->stripe_mask = n_stripes - 1;
        *out = rl;
        return 0;
}

int vd_ratelimit_set(vd_ratelimit *rl, const vd_ratelimit_options *opt)
{
        if (opt->responses_per_second == 0 || opt->ipv4_prefix > 32 || opt->ipv6_prefix > 128)
                return -EINVAL;
        __atomic_store_n(&rl->rate, opt->responses_per_second, __ATOMIC_RELAXED);
        __atomic_store_n(&rl->slip, opt->slip, __ATOMIC_RELAXED);
        __atomic_store_n(&rl->v4_bits, opt->ipv4_prefix, __ATOMIC_RELAXED);
        __atomic_store_n(&rl->v6_bits, opt->ipv6_prefix, __ATOMIC_RELAXED);
        return 0;
}

void vd_ratelimit_free(vd_ratelimit *rl)
{
        if (rl == NULL)
                return;
        stripes_free(rl->stripes, rl->stripe_mask + 1);
        free(rl->entries);
        free(rl);
}

/* The entry of key in bucket; when absent, the free entry or the one seen longest ago is
 * taken over (reset for the new key). The bucket's stripe is held. */
static rrl_entry *rrl_entry_for(rrl_entry *bucket, const uint8_t key[KEY_LEN], uint64_t now_s)
{
        rrl_entry *victim = NULL;

        for (size_t i = 0; i < WAYS; i++) {
                rrl_entry *e = &bucket[i];
                if (e->used && memcmp(e->key, key, KEY_LEN) == 0)
                        return e;
                if (victim != NULL && !victim->used)
                        continue;
                if (victim == NULL || !e->used || e->second < victim->second)
                        victim = e;
        }
        memcpy(victim->key, key, KEY_LEN);
        victim->used = true;
        victim->second = now_s;
        victim->count = 0;
        victim->over = 0;
        return victim;
}

/* Accounts one response in e. The workers' clocks are read at slightly different moments:
 * a now_s behind the entry's second counts in that second rather than starting an older one,
 * so two workers cannot reset each other's count back and forth. */
static vd_ratelimit_verdict rrl_account(const vd_ratelimit *rl, rrl_entry *e, uint64_t now_s)
{
        if (now_s > e->second) {
                e->second = now_s;
                e->count = 0;
                e->over = 0;
        }
        unsigned slip = __atomic_load_n(&rl->slip, __ATOMIC_RELAXED);
        if (e->count < __atomic_load_n(&rl->rate, __ATOMIC_RELAXED)) {
                e->count++;
                return VD_RATELIMIT_SEND;
        }
        if (e->over < UINT32_MAX)
                e->over++;
        if (slip > 0 && e->over % slip == 0)
                return VD_RATELIMIT_SLIP;
        return VD_RATELIMIT_DROP;
}

vd_ratelimit_verdict vd_ratelimit_check(vd_ratelimit *rl, const struct sockaddr *client,
                                        uint64_t now_s)
{
        uint8_t key[KEY_LEN];

        if (!make_key(client, __atomic_load_n(&rl->v4_bits, __ATOMIC_RELAXED),
                      __atomic_load_n(&rl->v6_bits, __ATOMIC_RELAXED), key))
                return VD_RATELIMIT_SEND;
        size_t b = hash_key(rl->seed, key) & rl->mask;
        pthread_mutex_t *lock = &rl->stripes[b & rl->stripe_mask].lock;
        pthread_mutex_lock(lock);
        vd_ratelimit_verdict v =
            rrl_account(rl, rrl_entry_for(rl->entries + b * WAYS, key, now_s), now_s);
        pthread_mutex_unlock(lock);
        return v;
}

size_t vd_ratelimit_slip(const uint8_t *resp, size_t len, uint8_t *out, size_t cap)
{
        size_t end = VD_HEADER_LEN;
        uint16_t qdcount = 0;

        if (len < VD_HEADER_LEN || cap < VD_HEADER_LEN)
                return 0;
        if (vd_wire_get16(resp + 4) == 1) {
                uint8_t name[VD_NAME_MAX];
                size_t name_len = 0;
                size_t pos = VD_HEADER_LEN;
                if (vd_wire_read_name(resp, len, &pos, name, &name_len, false) == 0 &&
                    pos + 4 <= len && pos + 4 <= cap) {
                        end = pos + 4;
                        qdcount = 1;
                }
        }
        memmove(out, resp, end);
        vd_wire_put16(out + 2, (uint16_t)(vd_wire_get16(out + 2) | VD_FLAG_TC));
        vd_wire_put16(out + 4, qdcount);
        memset(out + 6, 0, 6);
        return end;
}

/* ---- counts per client address ---------------------------------------------------------- */

typedef struct pending_entry {
        uint32_t count; /* 0: free */
        uint8_t key[KEY_LEN];
} pending_entry;

_Static_assert(WAYS * sizeof(pending_entry) % CACHE_LINE == 0,
               "a pending bucket is whole cache lines");

/* Shared by every worker thread, lock-striped like the RRL table: a slot's count and key are
 * guarded by the stripe of its bucket. Used only for a query about to go upstream and its
 * answer, or for a TCP connection's accept and close, never for a local answer or a cache
 * hit. */
struct vd_ratelimit_pending {
        uint64_t seed[2];   /* the SipHash key, random per table */
        size_t mask;        /* buckets - 1 */
        size_t stripe_mask; /* n_stripes - 1 */
        size_t n_entries;
        stripe *stripes;
        pending_entry *entries;
};

int vd_ratelimit_pending_new(size_t entries, vd_ratelimit_pending **out)
{
        *out = NULL;
        vd_ratelimit_pending *t = calloc(1, sizeof(*t));
        if (t == NULL)
                return -ENOMEM;
        size_t buckets = bucket_count(entries);
        size_t n_stripes = 0;
        t->entries = zalloc_aligned(buckets * WAYS, sizeof(t->entries[0]));
        t->stripes = stripes_new(buckets, &n_stripes);
        if (t->entries == NULL || t->stripes == NULL) {
                stripes_free(t->stripes, n_stripes);
                free(t->entries);
                free(t);
                return -ENOMEM;
        }
        vd_siphash_new_key(t->seed);
        t->mask = buckets - 1;
        t->stripe_mask = n_stripes - 1;
        t->n_entries = buckets * WAYS;
        *out = t;
        return 0;
}

void vd_ratelimit_pending_free(vd_ratelimit_pending *t)
{
        if (t == NULL)
                return;
        stripes_free(t->stripes, t->stripe_mask + 1);
        free(t->entries);
        free(t);
}

/* The lock guarding slot. */
static pthread_mutex_t *slot_lock(vd_ratelimit_pending *t, int slot)
{
        VD_CHECK(slot >= 0 && (size_t)slot < t->n_entries);
        return &t->stripes[((size_t)slot / WAYS) & t->stripe_mask].lock;
}

/* The slot of key in bucket b, claimed when it has none; -1 when none is free. b's stripe
 * is held. */
static int pending_slot_locked(vd_ratelimit_pending *t, size_t b, const uint8_t key[KEY_LEN])
{
        int free_slot = -1;
        size_t first = b * WAYS;

        for (size_t i = first; i < first + WAYS; i++) {
                pending_entry *e = &t->entries[i];
                if (e->count > 0 && memcmp(e->key, key, KEY_LEN) == 0)
                        return (int)i;
                if (e->count == 0 && free_slot < 0)
                        free_slot = (int)i;
        }
        if (free_slot >= 0)
                memcpy(t->entries[free_slot].key, key, KEY_LEN);
        return free_slot;
}

/* client's key and bucket; false for families other than IPv4 and IPv6. */
static bool pending_bucket(const vd_ratelimit_pending *t, const struct sockaddr *client,
                           uint8_t key[KEY_LEN], size_t *b)
{
        if (!make_key(client, 32, 128, key))
                return false;
        *b = hash_key(t->seed, key) & t->mask;
        return true;
}

int vd_ratelimit_pending_slot(vd_ratelimit_pending *t, const struct sockaddr *client)
{
        uint8_t key[KEY_LEN];
        size_t b;

        if (!pending_bucket(t, client, key, &b))
                return -1;
        pthread_mutex_t *lock = &t->stripes[b & t->stripe_mask].lock;
        pthread_mutex_lock(lock);
        int slot = pending_slot_locked(t, b, key);
        pthread_mutex_unlock(lock);
        return slot;
}

unsigned vd_ratelimit_pending_count(vd_ratelimit_pending *t, int slot)
{
        pthread_mutex_t *lock = slot_lock(t, slot);
        pthread_mutex_lock(lock);
        unsigned n = t->entries[slot].count;
        pthread_mutex_unlock(lock);
        return n;
}

void vd_ratelimit_pending_inc(vd_ratelimit_pending *t, int slot)
{
        pthread_mutex_t *lock = slot_lock(t, slot);
        pthread_mutex_lock(lock);
        if (t->entries[slot].count < UINT32_MAX)
                t->entries[slot].count++;
        pthread_mutex_unlock(lock);
}

void vd_ratelimit_pending_dec(vd_ratelimit_pending *t, int slot)
{
        pthread_mutex_t *lock = slot_lock(t, slot);
        pthread_mutex_lock(lock);
        VD_CHECK(t->entries[slot].count > 0);
        t->entries[slot].count--;
        pthread_mutex_unlock(lock);
}

int vd_ratelimit_pending_acquire(vd_ratelimit_pending *t, const struct sockaddr *client,
                                 unsigned max)
{
        uint8_t key[KEY_LEN];
        size_t b;

        if (!pending_bucket(t, client, key, &b))
                return VD_PENDING_UNTRACKED;
        pthread_mutex_t *lock = &t->stripes[b & t->stripe_mask].lock;
        pthread_mutex_lock(lock);
        int slot = pending_slot_locked(t, b, key);
        if (slot >= 0) {
                if (t->entries[slot].count >= max)
                        slot = VD_PENDING_FULL;
                else
                        t->entries[slot].count++;
        } else {
                slot = VD_PENDING_UNTRACKED;
        }
        pthread_mutex_unlock(lock);
        return slot;
}
