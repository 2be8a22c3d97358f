/* test_ratelimit.c — resolver/ratelimit.c with a fake clock: the per-prefix budget per
 * second, slip (every n-th response over the limit as TC), prefix grouping for IPv4, IPv6 and
 * IPv4-mapped addresses, a full table that never lets one prefix starve another, the slip
 * answer's wire form, and the table of pending forwarded queries per client address. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "vpcdns/ratelimit.h"
#include "vpcdns/wire.h"

static struct sockaddr_storage v4(const char *text)
{
        struct sockaddr_storage ss;
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        memset(&ss, 0, sizeof(ss));
        a->sin_family = AF_INET;
        a->sin_port = htons(5353);
        cr_assert_eq(inet_pton(AF_INET, text, &a->sin_addr), 1, "%s", text);
        return ss;
}

static struct sockaddr_storage v6(const char *text)
{
        struct sockaddr_storage ss;
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        memset(&ss, 0, sizeof(ss));
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(5353);
        cr_assert_eq(inet_pton(AF_INET6, text, &a->sin6_addr), 1, "%s", text);
        return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static vd_ratelimit *make(unsigned rate, unsigned slip, unsigned p4, unsigned p6, size_t entries)
{
        vd_ratelimit_options opt = {.responses_per_second = rate,
                                    .slip = slip,
                                    .ipv4_prefix = p4,
                                    .ipv6_prefix = p6,
                                    .entries = entries};
        vd_ratelimit *rl = NULL;
        cr_assert_eq(vd_ratelimit_new(&opt, &rl), 0);
        cr_assert_not_null(rl);
        return rl;
}

/* Sends n responses to client at now; counts the verdicts. */
static void burst(vd_ratelimit *rl, const struct sockaddr *client, uint64_t now, int n, int *sent,
                  int *slipped, int *dropped)
{
        *sent = *slipped = *dropped = 0;
        for (int i = 0; i < n; i++) {
                switch (vd_ratelimit_check(rl, client, now)) {
                case VD_RATELIMIT_SEND:
                        (*sent)++;
                        break;
                case VD_RATELIMIT_SLIP:
                        (*slipped)++;
                        break;
                case VD_RATELIMIT_DROP:
                        (*dropped)++;
                        break;
                }
        }
}

Test(ratelimit, rejects_bad_options)
{
        vd_ratelimit *rl = (vd_ratelimit *)1;
        vd_ratelimit_options opt = {
            .responses_per_second = 0, .ipv4_prefix = 24, .ipv6_prefix = 56};
        cr_assert_eq(vd_ratelimit_new(&opt, &rl), -EINVAL, "rate 0 means off: no table");
        cr_assert_null(rl);
        opt.responses_per_second = 5;
        opt.ipv4_prefix = 33;
        cr_assert_eq(vd_ratelimit_new(&opt, &rl), -EINVAL);
        opt.ipv4_prefix = 24;
        opt.ipv6_prefix = 129;
        cr_assert_eq(vd_ratelimit_new(&opt, &rl), -EINVAL);
}

Test(ratelimit, budget_per_second_then_slip_every_second_response)
{
        vd_ratelimit *rl = make(10, 2, 24, 56, 0);
        struct sockaddr_storage c = v4("192.0.2.7");
        int sent, slipped, dropped;

        burst(rl, SA(c), 1000, 200, &sent, &slipped, &dropped);
        cr_assert_eq(sent, 10);
        cr_assert_eq(slipped, 95, "every 2nd of the 190 over the limit is a TC answer");
        cr_assert_eq(dropped, 95);

        /* the order: 10 sent, then drop, slip, drop, slip ... */
        cr_assert_eq(vd_ratelimit_check(rl, SA(c), 1001), VD_RATELIMIT_SEND, "a new second");
        for (int i = 1; i < 10; i++)
                cr_assert_eq(vd_ratelimit_check(rl, SA(c), 1001), VD_RATELIMIT_SEND);
        cr_assert_eq(vd_ratelimit_check(rl, SA(c), 1001), VD_RATELIMIT_DROP);
        cr_assert_eq(vd_ratelimit_check(rl, SA(c), 1001), VD_RATELIMIT_SLIP);
        cr_assert_eq(vd_ratelimit_check(rl, SA(c), 1001), VD_RATELIMIT_DROP);
        cr_assert_eq(vd_ratelimit_check(rl, SA(c), 1001), VD_RATELIMIT_SLIP);
        vd_ratelimit_free(rl);
}

Test(ratelimit, slip_zero_drops_all_and_slip_one_truncates_all)
{
        vd_ratelimit *rl = make(3, 0, 24, 56, 0);
        struct sockaddr_storage c = v4("198.51.100.1");
        int sent, slipped, dropped;
        burst(rl, SA(c), 5, 50, &sent, &slipped, &dropped);
        cr_assert_eq(sent, 3);
        cr_assert_eq(slipped, 0);
        cr_assert_eq(dropped, 47);
        vd_ratelimit_free(rl);

        rl = make(3, 1, 24, 56, 0);
        burst(rl, SA(c), 5, 50, &sent, &slipped, &dropped);
        cr_assert_eq(sent, 3);
        cr_assert_eq(slipped, 47);
        cr_assert_eq(dropped, 0);
        vd_ratelimit_free(rl);
}

Test(ratelimit, clients_in_one_prefix_share_a_budget)
{
        vd_ratelimit *rl = make(4, 0, 24, 56, 0);
        struct sockaddr_storage a = v4("10.1.2.3"), b = v4("10.1.2.200"), other = v4("10.1.3.3");

        for (int i = 0; i < 2; i++) {
                cr_assert_eq(vd_ratelimit_check(rl, SA(a), 7), VD_RATELIMIT_SEND);
                cr_assert_eq(vd_ratelimit_check(rl, SA(b), 7), VD_RATELIMIT_SEND);
        }
        cr_assert_eq(vd_ratelimit_check(rl, SA(a), 7), VD_RATELIMIT_DROP, "same /24: shared");
        cr_assert_eq(vd_ratelimit_check(rl, SA(b), 7), VD_RATELIMIT_DROP);
        cr_assert_eq(vd_ratelimit_check(rl, SA(other), 7), VD_RATELIMIT_SEND,
                     "another /24 has its own budget");

        /* IPv6 /56: the low 72 bits do not matter; the 56th bit does */
        struct sockaddr_storage x = v6("2001:db8:0:100::1"), y = v6("2001:db8:0:1ff:ffff::9");
        struct sockaddr_storage z = v6("2001:db8:0:200::1");
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(vd_ratelimit_check(rl, SA(x), 7), VD_RATELIMIT_SEND);
                cr_assert_eq(vd_ratelimit_check(rl, SA(y), 7), VD_RATELIMIT_SEND);
        }
        cr_assert_eq(vd_ratelimit_check(rl, SA(y), 7), VD_RATELIMIT_DROP);
        cr_assert_eq(vd_ratelimit_check(rl, SA(z), 7), VD_RATELIMIT_SEND);

        /* an IPv4-mapped IPv6 client counts as the IPv4 one */
        struct sockaddr_storage mapped = v6("::ffff:10.1.3.77");
        for (int i = 0; i < 3; i++)
                cr_assert_eq(vd_ratelimit_check(rl, SA(mapped), 7), VD_RATELIMIT_SEND);
        cr_assert_eq(vd_ratelimit_check(rl, SA(other), 7), VD_RATELIMIT_DROP,
                     "10.1.3.3 and ::ffff:10.1.3.77 share 10.1.3.0/24");
        vd_ratelimit_free(rl);
}

Test(ratelimit, host_prefixes_separate_every_client)
{
        vd_ratelimit *rl = make(1, 0, 32, 128, 0);
        struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2");
        cr_assert_eq(vd_ratelimit_check(rl, SA(a), 1), VD_RATELIMIT_SEND);
        cr_assert_eq(vd_ratelimit_check(rl, SA(a), 1), VD_RATELIMIT_DROP);
        cr_assert_eq(vd_ratelimit_check(rl, SA(b), 1), VD_RATELIMIT_SEND);
        vd_ratelimit_free(rl);
}

Test(ratelimit, full_table_never_starves_a_prefix)
{
        /* 8 entries (one bucket): 1000 prefixes compete for them. */
        vd_ratelimit *rl = make(2, 0, 32, 128, 8);
        struct sockaddr_storage victim = v4("203.0.113.5");
        char text[32];

        for (uint64_t now = 100; now < 110; now++) {
                for (int i = 0; i < 1000; i++) {
                        snprintf(text, sizeof(text), "10.%d.%d.1", i / 256, i % 256);
                        struct sockaddr_storage c = v4(text);
                        (void)vd_ratelimit_check(rl, SA(c), now);
                        (void)vd_ratelimit_check(rl, SA(c), now);
                        (void)vd_ratelimit_check(rl, SA(c), now);
                }
                cr_assert_eq(vd_ratelimit_check(rl, SA(victim), now), VD_RATELIMIT_SEND,
                             "second %llu: a quiet client must get its answer",
                             (unsigned long long)now);
        }
        vd_ratelimit_free(rl);
}

Test(ratelimit, busy_prefix_is_still_limited_when_others_come_and_go)
{
        /* a big table: a prefix keeps its entry, and its count, while others pass */
        vd_ratelimit *rl = make(5, 0, 24, 56, 4096);
        struct sockaddr_storage busy = v4("192.0.2.1");
        char text[32];
        int sent = 0;
        for (int i = 0; i < 100; i++) {
                sent += vd_ratelimit_check(rl, SA(busy), 50) == VD_RATELIMIT_SEND;
                snprintf(text, sizeof(text), "172.16.%d.1", i);
                struct sockaddr_storage c = v4(text);
                cr_assert_eq(vd_ratelimit_check(rl, SA(c), 50), VD_RATELIMIT_SEND);
        }
        cr_assert_eq(sent, 5);
        vd_ratelimit_free(rl);
}

Test(ratelimit, other_families_pass)
{
        vd_ratelimit *rl = make(1, 0, 24, 56, 0);
        struct sockaddr_storage u;
        memset(&u, 0, sizeof(u));
        u.ss_family = AF_UNIX;
        for (int i = 0; i < 5; i++)
                cr_assert_eq(vd_ratelimit_check(rl, SA(u), 1), VD_RATELIMIT_SEND);
        vd_ratelimit_free(rl);
}

/* ---- the slip answer ------------------------------------------------------------------- */

Test(ratelimit, slip_answer_is_header_and_question_with_tc)
{
        /* a response: ID 0xbeef, QR RD RA, one question example.com A, one answer, one OPT */
        static const uint8_t resp[] = {
            0xbe, 0xef, 0x81, 0x80, 0,   1,   0,    1,    0,   0,   0,  1, 7, 'e',
            'x',  'a',  'm',  'p',  'l', 'e', 3,    'c',  'o', 'm', 0,  0, 1, 0,
            1,    0xc0, 12,   0,    1,   0,   1,    0,    0,   0,   60, 0, 4, 192,
            0,    2,    1,    0,    0,   41,  0x04, 0xd0, 0,   0,   0,  0, 0, 0};
        uint8_t out[512];
        size_t n = vd_ratelimit_slip(resp, sizeof(resp), out, sizeof(out));
        cr_assert_eq(n, 12 + 13 + 4);
        cr_assert_eq(vd_wire_get16(out), 0xbeef, "the client's ID");
        uint16_t flags = vd_wire_get16(out + 2);
        cr_assert(flags & VD_FLAG_TC, "TC set");
        cr_assert(flags & VD_FLAG_QR);
        cr_assert_eq(flags & 0xf, 0, "rcode kept (NOERROR)");
        cr_assert_eq(vd_wire_get16(out + 4), 1, "question kept");
        cr_assert_eq(vd_wire_get16(out + 6), 0, "no answers");
        cr_assert_eq(vd_wire_get16(out + 8), 0);
        cr_assert_eq(vd_wire_get16(out + 10), 0, "no OPT");
        cr_assert_eq(memcmp(out + 12, resp + 12, 17), 0, "question as sent");

        /* in place */
        uint8_t copy[sizeof(resp)];
        memcpy(copy, resp, sizeof(resp));
        cr_assert_eq(vd_ratelimit_slip(copy, sizeof(copy), copy, sizeof(copy)), n);
        cr_assert_eq(memcmp(copy, out, n), 0);
}

Test(ratelimit, slip_answer_without_a_readable_question_is_a_bare_header)
{
        uint8_t resp[12 + 3] = {0x12, 0x34, 0x81, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a', 'b'};
        uint8_t out[64];
        size_t n = vd_ratelimit_slip(resp, sizeof(resp), out, sizeof(out));
        cr_assert_eq(n, 12);
        cr_assert_eq(vd_wire_get16(out + 4), 0);
        cr_assert(vd_wire_get16(out + 2) & VD_FLAG_TC);
        cr_assert_eq(vd_ratelimit_slip(resp, 11, out, sizeof(out)), 0, "shorter than a header");
        cr_assert_eq(vd_ratelimit_slip(resp, sizeof(resp), out, 11), 0, "no room");
}

/* ---- pending per client ------------------------------------------------------------------ */

Test(ratelimit, pending_counts_per_address_not_port)
{
        vd_ratelimit_pending *t = NULL;
        cr_assert_eq(vd_ratelimit_pending_new(0, &t), 0);
        struct sockaddr_storage a = v4("10.0.0.1"), a2 = v4("10.0.0.1"), b = v4("10.0.0.2");
        ((struct sockaddr_in *)&a2)->sin_port = htons(999);

        int sa = vd_ratelimit_pending_slot(t, SA(a));
        cr_assert_geq(sa, 0);
        cr_assert_eq(vd_ratelimit_pending_count(t, sa), 0);
        vd_ratelimit_pending_inc(t, sa);
        vd_ratelimit_pending_inc(t, sa);
        cr_assert_eq(vd_ratelimit_pending_slot(t, SA(a2)), sa, "another port, same client");
        cr_assert_eq(vd_ratelimit_pending_count(t, sa), 2);

        int sb = vd_ratelimit_pending_slot(t, SA(b));
        cr_assert_geq(sb, 0);
        cr_assert_neq(sb, sa);
        cr_assert_eq(vd_ratelimit_pending_count(t, sb), 0, "10.0.0.2 has its own count");

        vd_ratelimit_pending_dec(t, sa);
        vd_ratelimit_pending_dec(t, sa);
        cr_assert_eq(vd_ratelimit_pending_count(t, vd_ratelimit_pending_slot(t, SA(a))), 0);

        struct sockaddr_storage x = v6("fd00::1"), mapped = v6("::ffff:10.0.0.2");
        int sx = vd_ratelimit_pending_slot(t, SA(x));
        vd_ratelimit_pending_inc(t, sx);
        cr_assert_eq(vd_ratelimit_pending_count(t, sx), 1);
        vd_ratelimit_pending_inc(t, sb);
        cr_assert_eq(vd_ratelimit_pending_slot(t, SA(mapped)), sb, "mapped IPv4 = IPv4");
        vd_ratelimit_pending_free(t);
}

Test(ratelimit, pending_table_full_leaves_new_clients_untracked)
{
        vd_ratelimit_pending *t = NULL;
        cr_assert_eq(vd_ratelimit_pending_new(8, &t), 0); /* one bucket of 8 */
        char text[32];
        int slots[8];
        for (int i = 0; i < 8; i++) {
                snprintf(text, sizeof(text), "10.0.0.%d", i + 1);
                struct sockaddr_storage c = v4(text);
                slots[i] = vd_ratelimit_pending_slot(t, SA(c));
                cr_assert_geq(slots[i], 0);
                vd_ratelimit_pending_inc(t, slots[i]);
        }
        struct sockaddr_storage late = v4("10.0.1.1");
        cr_assert_eq(vd_ratelimit_pending_slot(t, SA(late)), -1, "no room: not tracked");
        vd_ratelimit_pending_dec(t, slots[3]);
        int s = vd_ratelimit_pending_slot(t, SA(late));
        cr_assert_eq(s, slots[3], "a slot whose count fell to 0 is free again");
        cr_assert_eq(vd_ratelimit_pending_count(t, s), 0);
        vd_ratelimit_pending_free(t);
}

Test(ratelimit, acquire_counts_up_to_the_limit)
{
        vd_ratelimit_pending *t = NULL;
        cr_assert_eq(vd_ratelimit_pending_new(0, &t), 0);
        struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2");
        int s1 = vd_ratelimit_pending_acquire(t, SA(a), 2);
        int s2 = vd_ratelimit_pending_acquire(t, SA(a), 2);
        cr_assert_geq(s1, 0);
        cr_assert_eq(s2, s1, "one slot per address");
        cr_assert_eq(vd_ratelimit_pending_acquire(t, SA(a), 2), VD_PENDING_FULL);
        cr_assert_eq(vd_ratelimit_pending_count(t, s1), 2, "a refused acquire counts nothing");
        cr_assert_geq(vd_ratelimit_pending_acquire(t, SA(b), 2), 0, "another address");
        vd_ratelimit_pending_dec(t, s1);
        cr_assert_eq(vd_ratelimit_pending_acquire(t, SA(a), 2), s1, "given back, taken again");
        vd_ratelimit_pending_free(t);
}

/* Worker threads share one table: however they race, one address never holds more than the
 * limit, and every count given back leaves it at 0. */
struct racer {
        vd_ratelimit_pending *t;
        atomic_int held, most;
};

static void *race(void *arg)
{
        struct racer *r = arg;
        struct sockaddr_storage a = v4("10.0.0.1");
        for (int i = 0; i < 20000; i++) {
                int slot = vd_ratelimit_pending_acquire(r->t, SA(a), 3);
                if (slot < 0)
                        continue;
                int now = atomic_fetch_add(&r->held, 1) + 1;
                int most = atomic_load(&r->most);
                while (now > most && !atomic_compare_exchange_weak(&r->most, &most, now))
                        ;
                atomic_fetch_sub(&r->held, 1);
                vd_ratelimit_pending_dec(r->t, slot);
        }
        return NULL;
}

Test(ratelimit, acquire_holds_across_threads)
{
        struct racer r = {0};
        cr_assert_eq(vd_ratelimit_pending_new(0, &r.t), 0);
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
                cr_assert_eq(pthread_create(&th[i], NULL, race, &r), 0);
        for (int i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        cr_assert_leq(atomic_load(&r.most), 3, "held %d at once", atomic_load(&r.most));
        struct sockaddr_storage a = v4("10.0.0.1");
        int slot = vd_ratelimit_pending_slot(r.t, SA(a));
        cr_assert_geq(slot, 0);
        cr_assert_eq(vd_ratelimit_pending_count(r.t, slot), 0);
        vd_ratelimit_pending_free(r.t);
}

/* Every worker thread shares one RRL table: however many threads answer one client prefix
 * in one second, it gets the configured number of responses, no more; another prefix's
 * budget, spent on other threads at the same time, is its own. */
#define RRL_THREADS 4
#define RRL_TRIES 5000

struct rrl_racer {
        vd_ratelimit *rl;
        const char *client;
        uint64_t now;
        int sent, slipped;
};

static void *rrl_race(void *arg)
{
        struct rrl_racer *r = arg;
        struct sockaddr_storage c = v4(r->client);
        for (int i = 0; i < RRL_TRIES; i++) {
                switch (vd_ratelimit_check(r->rl, SA(c), r->now)) {
                case VD_RATELIMIT_SEND:
                        r->sent++;
                        break;
                case VD_RATELIMIT_SLIP:
                        r->slipped++;
                        break;
                case VD_RATELIMIT_DROP:
                        break;
                }
        }
        return NULL;
}

Test(ratelimit, budget_holds_across_threads)
{
        /* slip 3: of the responses over the limit exactly every third is slipped, whichever
         * thread counts it. */
        vd_ratelimit *rl = make(1000, 3, 24, 56, 0);
        struct rrl_racer r[2 * RRL_THREADS];
        pthread_t th[2 * RRL_THREADS];
        for (int i = 0; i < 2 * RRL_THREADS; i++) {
                /* half the threads answer 192.0.2.0/24 in second 7, the others 198.51.100.0/24
                 * in seconds 7 and 8 (a thread whose clock is behind counts in the newer
                 * second) */
                r[i] = (struct rrl_racer){.rl = rl,
                                          .client = i % 2 ? "198.51.100.9" : "192.0.2.1",
                                          .now = i % 2 && i > RRL_THREADS ? 8 : 7};
                cr_assert_eq(pthread_create(&th[i], NULL, rrl_race, &r[i]), 0);
        }
        int sent[2] = {0}, slipped[2] = {0};
        for (int i = 0; i < 2 * RRL_THREADS; i++) {
                pthread_join(th[i], NULL);
                sent[i % 2] += r[i].sent;
                slipped[i % 2] += r[i].slipped;
        }
        int total = RRL_THREADS * RRL_TRIES;
        cr_assert_eq(sent[0], 1000, "one second's budget across %d threads: sent %d", RRL_THREADS,
                     sent[0]);
        cr_assert_eq(slipped[0], (total - 1000) / 3, "slipped %d", slipped[0]);
        /* the second prefix: seconds 7 and 8 interleave; a late "7" counts in second 8 once
         * that began, so it gets at most two seconds' budgets and at least one */
        cr_assert_geq(sent[1], 1000, "sent %d", sent[1]);
        cr_assert_leq(sent[1], 2000, "sent %d", sent[1]);
        vd_ratelimit_free(rl);
}
