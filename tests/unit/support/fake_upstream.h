/* fake_upstream.h — the upstream DNS server of the unit tests (support library): UDP, and TCP
 * on the same port when asked, on a loopback address with a port the kernel picks. It answers
 * every query in its mode (A records 192.0.2.x owned by the question through a compression
 * pointer, the question echoed as received), records what it saw (IDs, questions as sent,
 * source ports, counts) and never asserts anything about the code under test.
 *
 * It runs either in the test's own libuv loop (fake_upstream_start: every callback on the
 * test's thread, settings may change between queries) or on a loop of its own in a thread
 * (fake_upstream_start_thread: for tests whose code under test blocks the test's thread or
 * runs its own loops; settings are fixed once it starts, only the atomic counters may be
 * read while it runs, the rest after fake_upstream_stop). The caller owns the struct, which
 * must stay put until the upstream has stopped and, in loop mode, the loop has run the close
 * callbacks. */
#ifndef VD_TEST_FAKE_UPSTREAM_H
#define VD_TEST_FAKE_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "support/dns_msg.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

typedef enum fake_mode {
        FAKE_ANSWER,   /* `records` A records (TCP: `tcp_records`) at once */
        FAKE_SILENT,   /* counts and records queries, never answers */
        FAKE_SERVFAIL, /* SERVFAIL, no records */
        FAKE_REFUSED,  /* REFUSED, no records */
        FAKE_TC,       /* over UDP an empty answer with TC set; over TCP the full answer */
        FAKE_DELAY,    /* as FAKE_ANSWER over UDP, delay_ms later (dropped when it stops first) */
        FAKE_HOLD,     /* as FAKE_ANSWER over UDP, once fake_upstream_release was called */
        /* The first UDP query gets an answer whose question has every letter's case flipped
         * and whose records are 192.0.2.FAKE_WRONG_CASE_OCTET; later ones as FAKE_ANSWER. */
        FAKE_WRONG_CASE_FIRST,
        /* Every UDP answer is preceded by the same answer under another ID (a spoof attempt
         * that guessed the question but not the ID). */
        FAKE_WRONG_ID_FIRST,
        /* As FAKE_ANSWER with each record's owner name written out in full instead of as a
         * pointer to the question (legal, and what a re-encoder would change). */
        FAKE_UNCOMPRESSED,
} fake_mode;

#define FAKE_TCP_RECORDS 60      /* default tcp_records */
#define FAKE_WRONG_CASE_OCTET 66 /* last octet of FAKE_WRONG_CASE_FIRST's records */
#define FAKE_DELAY_MS 20         /* default delay_ms */
#define FAKE_MAX_SEEN 16         /* queries whose ID and question are kept */
#define FAKE_MAX_PORTS 64        /* distinct UDP source ports kept */

typedef struct fake_upstream fake_upstream;

/* A test's own answer to query (qi parsed from it): written to *m; false sends nothing. */
typedef bool (*fake_answer_fn)(fake_upstream *up, const uint8_t *query, const vd_query_info *qi,
                               bool tcp, dns_msg *m);

struct fake_upstream {
        /* Settings: defaults from fake_upstream_init. */
        fake_mode mode;
        unsigned records;      /* A records in a UDP answer (1) */
        unsigned tcp_records;  /* A records in a TCP answer (FAKE_TCP_RECORDS) */
        uint32_t ttl;          /* of every record (300) */
        unsigned octet;        /* the first record is 192.0.2.octet, the next +1 (1) */
        unsigned delay_ms;     /* FAKE_DELAY (FAKE_DELAY_MS) */
        bool opt;              /* an OPT (payload 1232, the query's DO) in every answer (true) */
        fake_answer_fn answer; /* NULL: the mode's own answer; the mode still decides whether
                                * and when an answer goes (silent, delayed, held) */
        void (*on_sent)(fake_upstream *up); /* after each answer sent (NULL: none) */
        void *owner;                        /* the test's, for answer and on_sent */

        /* What it saw. The counters may be read at any time; the rest in thread mode only
         * after fake_upstream_stop. */
        vd_addr addr; /* where it listens */
        atomic_int udp_queries, tcp_queries;
        atomic_int answers;                            /* sent (UDP datagrams and TCP messages) */
        uint16_t seen_id[FAKE_MAX_SEEN];               /* the first queries' IDs */
        vd_query_info seen[FAKE_MAX_SEEN];             /* their questions (qname NULL) */
        uint8_t seen_name[FAKE_MAX_SEEN][VD_NAME_MAX]; /* as sent, letter case included */
        size_t n_seen;
        uint16_t ports[FAKE_MAX_PORTS]; /* distinct UDP source ports */
        size_t n_ports;
        uint8_t last_udp[512]; /* the last UDP answer built, as sent (when it fits) */
        size_t last_udp_len;

        /* Inside. */
        uv_loop_t *loop;
        uv_udp_t udp;
        uv_tcp_t tcp;
        bool with_tcp, running;
        struct fake_conn *conns;
        struct fake_later *later; /* delayed and held answers */
        bool threaded;
        uv_loop_t own_loop;
        uv_thread_t thread;
        uv_async_t wake;
        atomic_bool stop, released;
        atomic_int errors; /* thread mode: failures it could not assert on its thread */
};

/* Clears *up and sets the defaults and the mode; settings may be changed after. */
void fake_upstream_init(fake_upstream *up, fake_mode mode);

/* Listens on ip (IPv4 or IPv6 text) in loop: UDP, and TCP on the same port when with_tcp.
 * Returns false when the address cannot be bound (no ::1, say); the loop must still run once
 * to close what was opened. */
bool fake_upstream_start(fake_upstream *up, uv_loop_t *loop, bool with_tcp, const char *ip);

/* Listens over UDP on 127.0.0.1 on a loop of its own, in a thread of its own. */
void fake_upstream_start_thread(fake_upstream *up);

/* FAKE_HOLD: answers the held queries and every later one at once. Any thread. */
void fake_upstream_release(fake_upstream *up);

/* Loop mode: closes every handle (the loop ends once the close callbacks ran); delayed and
 * held answers are dropped. Thread mode: the same on its thread, then joins it and asserts
 * that its loop closed clean and nothing failed there. Once only. */
void fake_upstream_stop(fake_upstream *up);

/* The port it listens on. */
unsigned fake_upstream_port(const fake_upstream *up);

#endif
