/* ratelimit.c — per-client limits for one worker: the response rate limiting table (one entry
 * per client prefix and second) with slip, and the table of forwarded queries pending per
 * client address. Both are set-associative: a keyed hash picks a bucket of WAYS entries, and
 * a key lives in one entry of its bucket. Allocation happens only in the _new functions; the
 * lookups are bounded loops over one bucket. Knows nothing about sockets or libuv. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/common.h"
#include "vpcdns/ratelimit.h"
#include "vpcdns/wire.h"

#define WAYS 8
#define DEFAULT_ENTRIES 4096
#define MAX_ENTRIES (1u << 24)
#define KEY_LEN 17 /* family tag (4 or 6), then 16 address octets, host bits zeroed */

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

static uint64_t mix64(uint64_t h)
{
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

static uint64_t hash_key(uint64_t seed, const uint8_t key[KEY_LEN])
{
        uint64_t h = seed;
        for (size_t i = 0; i < KEY_LEN; i += 8) {
                uint64_t word = 0;
                size_t n = KEY_LEN - i < 8 ? KEY_LEN - i : 8;
                memcpy(&word, key + i, n);
                h = mix64(h ^ word ^ (uint64_t)i);
        }
        return h;
}

static uint64_t random_seed(void)
{
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
        }
        return seed;
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

/* ---- response rate limiting ------------------------------------------------------------- */

typedef struct rrl_entry {
        uint64_t second; /* the second count and over belong to */
        uint32_t count;  /* responses sent in that second */
        uint32_t over;   /* responses over the limit in that second */
        uint8_t key[KEY_LEN];
        bool used;
} rrl_entry;

struct vd_ratelimit {
        unsigned rate;
        unsigned slip;
        unsigned v4_bits;
        unsigned v6_bits;
        uint64_t seed;
        size_t mask; /* buckets - 1 */
        rrl_entry *entries;
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
        rl->entries = calloc(buckets * WAYS, sizeof(rl->entries[0]));
        if (rl->entries == NULL) {
                free(rl);
                return -ENOMEM;
        }
        rl->rate = opt->responses_per_second;
        rl->slip = opt->slip;
        rl->v4_bits = opt->ipv4_prefix;
        rl->v6_bits = opt->ipv6_prefix;
        rl->seed = random_seed();
        rl->mask = buckets - 1;
        *out = rl;
        return 0;
}

void vd_ratelimit_free(vd_ratelimit *rl)
{
        if (rl == NULL)
                return;
        free(rl->entries);
        free(rl);
}

/* The entry of key in its bucket; when absent, the free entry or the one seen longest ago is
 * taken over (reset for the new key). */
static rrl_entry *rrl_entry_for(vd_ratelimit *rl, const uint8_t key[KEY_LEN], uint64_t now_s)
{
        rrl_entry *bucket = rl->entries + (hash_key(rl->seed, key) & rl->mask) * WAYS;
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

vd_ratelimit_verdict vd_ratelimit_check(vd_ratelimit *rl, const struct sockaddr *client,
                                        uint64_t now_s)
{
        uint8_t key[KEY_LEN];

        if (!make_key(client, rl->v4_bits, rl->v6_bits, key))
                return VD_RATELIMIT_SEND;
        rrl_entry *e = rrl_entry_for(rl, key, now_s);
        if (e->second != now_s) {
                e->second = now_s;
                e->count = 0;
                e->over = 0;
        }
        if (e->count < rl->rate) {
                e->count++;
                return VD_RATELIMIT_SEND;
        }
        if (e->over < UINT32_MAX)
                e->over++;
        if (rl->slip > 0 && e->over % rl->slip == 0)
                return VD_RATELIMIT_SLIP;
        return VD_RATELIMIT_DROP;
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

/* ---- pending forwarded queries per client address -------------------------------------- */

typedef struct pending_entry {
        uint32_t count; /* 0: free */
        uint8_t key[KEY_LEN];
} pending_entry;

/* Shared by every worker thread: each call holds the lock. It is taken only for a query about
 * to go upstream and its answer, or for a TCP connection's accept and close, never for a local
 * answer or a cache hit. */
struct vd_ratelimit_pending {
        pthread_mutex_t lock;
        uint64_t seed;
        size_t mask;
        size_t n_entries;
        pending_entry *entries;
};

int vd_ratelimit_pending_new(size_t entries, vd_ratelimit_pending **out)
{
        *out = NULL;
        vd_ratelimit_pending *t = calloc(1, sizeof(*t));
        if (t == NULL)
                return -ENOMEM;
        size_t buckets = bucket_count(entries);
        t->entries = calloc(buckets * WAYS, sizeof(t->entries[0]));
        if (t->entries == NULL) {
                free(t);
                return -ENOMEM;
        }
        if (pthread_mutex_init(&t->lock, NULL) != 0) {
                free(t->entries);
                free(t);
                return -ENOMEM;
        }
        t->seed = random_seed();
        t->mask = buckets - 1;
        t->n_entries = buckets * WAYS;
        *out = t;
        return 0;
}

void vd_ratelimit_pending_free(vd_ratelimit_pending *t)
{
        if (t == NULL)
                return;
        pthread_mutex_destroy(&t->lock);
        free(t->entries);
        free(t);
}

/* The slot of client's address, claimed when it has none; -1 when none is free. Lock held. */
static int pending_slot_locked(vd_ratelimit_pending *t, const struct sockaddr *client)
{
        uint8_t key[KEY_LEN];
        int free_slot = -1;

        if (!make_key(client, 32, 128, key))
                return -1;
        size_t first = (hash_key(t->seed, key) & t->mask) * WAYS;
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

int vd_ratelimit_pending_slot(vd_ratelimit_pending *t, const struct sockaddr *client)
{
        pthread_mutex_lock(&t->lock);
        int slot = pending_slot_locked(t, client);
        pthread_mutex_unlock(&t->lock);
        return slot;
}

unsigned vd_ratelimit_pending_count(vd_ratelimit_pending *t, int slot)
{
        VD_CHECK(slot >= 0 && (size_t)slot < t->n_entries);
        pthread_mutex_lock(&t->lock);
        unsigned n = t->entries[slot].count;
        pthread_mutex_unlock(&t->lock);
        return n;
}

void vd_ratelimit_pending_inc(vd_ratelimit_pending *t, int slot)
{
        VD_CHECK(slot >= 0 && (size_t)slot < t->n_entries);
        pthread_mutex_lock(&t->lock);
        if (t->entries[slot].count < UINT32_MAX)
                t->entries[slot].count++;
        pthread_mutex_unlock(&t->lock);
}

void vd_ratelimit_pending_dec(vd_ratelimit_pending *t, int slot)
{
        VD_CHECK(slot >= 0 && (size_t)slot < t->n_entries);
        pthread_mutex_lock(&t->lock);
        VD_CHECK(t->entries[slot].count > 0);
        t->entries[slot].count--;
        pthread_mutex_unlock(&t->lock);
}

int vd_ratelimit_pending_acquire(vd_ratelimit_pending *t, const struct sockaddr *client,
                                 unsigned max)
{
        pthread_mutex_lock(&t->lock);
        int slot = pending_slot_locked(t, client);
        if (slot >= 0) {
                if (t->entries[slot].count >= max)
                        slot = VD_PENDING_FULL;
                else
                        t->entries[slot].count++;
        }
        pthread_mutex_unlock(&t->lock);
        return slot < 0 && slot != VD_PENDING_FULL ? VD_PENDING_UNTRACKED : slot;
}
