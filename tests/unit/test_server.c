/* test_server.c — the running server over real loopback sockets: UDP and TCP answers,
 * RFC 7766 framing (pipelining, 1-byte writes, length 0), idle timeout, connection cap,
 * a client that never reads, forwarding through a fake upstream (in-flight cap, pending
 * replies at shutdown), bind errors, the graceful stop on SIGTERM, and publishing snapshots
 * from another thread while the workers run and stop. The per-client limits: access
 * control (refuse and drop), response rate limiting with slip, TCP connections per client,
 * queries per connection, a slow sender against the idle timeout, and forwarded queries
 * pending per client. Clients bind 127.0.0.1 or 127.0.0.2 to be two different clients.
 * Every receive has a timeout so a failing test cannot hang. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/acl.h"
#include "vpcdns/config.h"
#include "vpcdns/log.h"
#include "vpcdns/server.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

#include "support/client.h"
#include "support/fake_upstream.h"

#define RCV_TIMEOUT_MS 1000

/* ---- helpers --------------------------------------------------------------------------- */

static long long now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_rcvtimeo(int fd, int ms)
{
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* A loopback port that is free for both UDP and TCP right now. */
static unsigned free_port(void)
{
        for (int attempt = 0; attempt < 50; attempt++) {
                struct sockaddr_in a = {.sin_family = AF_INET};
                socklen_t len = sizeof(a);
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                int t = socket(AF_INET, SOCK_STREAM, 0);
                cr_assert_geq(t, 0);
                cr_assert_eq(bind(t, (struct sockaddr *)&a, sizeof(a)), 0);
                cr_assert_eq(getsockname(t, (struct sockaddr *)&a, &len), 0);
                int u = socket(AF_INET, SOCK_DGRAM, 0);
                int ok = bind(u, (struct sockaddr *)&a, sizeof(a));
                close(u);
                close(t);
                if (ok == 0)
                        return ntohs(a.sin_port);
        }
        cr_assert_fail("no free port");
        return 0;
}

static struct sockaddr_in loopback(unsigned port)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return a;
}

/* A query for NAME (dotted, no final dot) type A with RD set. */
static size_t make_query(uint8_t *buf, uint16_t id, const char *name)
{
        dns_msg m;
        vd_query_info qi;
        client_query(&m, &qi, id, name, VD_TYPE_A, false, false);
        memcpy(buf, m.b, m.n);
        return m.n;
}

static uint8_t rcode_of(const uint8_t *resp)
{
        return resp[3] & 0x0f;
}

/* Binds fd to the loopback address src (port chosen by the kernel): another client. */
static void bind_source(int fd, const char *src)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        cr_assert_eq(inet_pton(AF_INET, src, &a.sin_addr), 1);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s: %s", src,
                     strerror(errno));
}

/* udp_exchange from the source address src. */
static ssize_t udp_exchange_from(const char *src, unsigned port, const uint8_t *q, size_t qlen,
                                 uint8_t *resp, size_t cap, int timeout_ms)
{
        struct sockaddr_in a = loopback(port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        cr_assert_geq(fd, 0);
        bind_source(fd, src);
        set_rcvtimeo(fd, timeout_ms);
        cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)qlen);
        ssize_t n = recv(fd, resp, cap, 0);
        close(fd);
        return n;
}

/* Sends one datagram and waits for the answer; returns its length or -1 on timeout. */
static ssize_t udp_exchange(unsigned port, const uint8_t *q, size_t qlen, uint8_t *resp, size_t cap,
                            int timeout_ms)
{
        struct sockaddr_in a = loopback(port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        cr_assert_geq(fd, 0);
        set_rcvtimeo(fd, timeout_ms);
        cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)qlen);
        ssize_t n = recv(fd, resp, cap, 0);
        close(fd);
        return n;
}

/* rcvbuf > 0 sets SO_RCVBUF before connecting, so the advertised window matches it; src
 * (NULL: any) is the client's source address. */
static int tcp_connect_ex(unsigned port, int rcvbuf, const char *src)
{
        struct sockaddr_in a = loopback(port);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        cr_assert_geq(fd, 0);
        if (src != NULL)
                bind_source(fd, src);
        if (rcvbuf > 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
                     strerror(errno));
        set_rcvtimeo(fd, RCV_TIMEOUT_MS);
        return fd;
}

static int tcp_connect_rcvbuf(unsigned port, int rcvbuf)
{
        return tcp_connect_ex(port, rcvbuf, NULL);
}

static int tcp_connect(unsigned port)
{
        return tcp_connect_ex(port, 0, NULL);
}

static int tcp_connect_from(const char *src, unsigned port)
{
        return tcp_connect_ex(port, 0, src);
}

static void send_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                cr_assert_gt(n, 0, "send: %s", strerror(errno));
                p += n;
                len -= (size_t)n;
        }
}

/* Reads exactly len bytes; returns false on EOF, error or timeout. */
static bool recv_all(int fd, uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = recv(fd, p, len, 0);
                if (n <= 0)
                        return false;
                p += n;
                len -= (size_t)n;
        }
        return true;
}

/* Reads one framed message; returns its length, or -1 on EOF/timeout. */
static ssize_t tcp_read_msg(int fd, uint8_t *buf, size_t cap)
{
        uint8_t lenbuf[2];
        if (!recv_all(fd, lenbuf, 2))
                return -1;
        size_t len = vd_wire_get16(lenbuf);
        cr_assert_leq(len, cap);
        if (!recv_all(fd, buf, len))
                return -1;
        return (ssize_t)len;
}

static size_t frame(uint8_t *out, const uint8_t *msg, size_t len)
{
        vd_wire_put16(out, (uint16_t)len);
        memcpy(out + 2, msg, len);
        return len + 2;
}

/* True when the peer closes (EOF or reset) within timeout_ms. */
static bool closed_within(int fd, int timeout_ms)
{
        long long end = now_ms() + timeout_ms;
        uint8_t buf[512];
        while (now_ms() < end) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int left = (int)(end - now_ms());
                if (poll(&p, 1, left > 0 ? left : 0) <= 0)
                        continue;
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
                        return true;
        }
        return false;
}

/* ---- the server under test --------------------------------------------------------------- */

struct running {
        vd_server *srv;
        pthread_t thread;
        int result;
        unsigned port;
};

static void *run_thread(void *arg)
{
        struct running *r = arg;
        r->result = vd_server_run(r->srv);
        return NULL;
}

static void base_config(vd_config *cfg, unsigned port)
{
        char text[32];
        vd_config_init(cfg);
        /* One worker unless a test says otherwise: the per-worker caps (tcp_max_connections)
         * are tested on one, and the machine's CPU count must not change what a test sees. */
        cfg->workers = 1;
        snprintf(text, sizeof(text), "127.0.0.1:%u", port);
        cr_assert_eq(vd_addr_parse(text, 53, &cfg->listen[0]), 0);
        cfg->n_listen = 1;
}

/* Starts the server and waits until it answers a probe from the source address src over
 * UDP (signal handlers are installed by then). The default probe is a malformed question,
 * answered locally (FORMERR) even with a silent upstream; valid_probe sends a real query
 * instead (a denied client gets REFUSED for it but nothing for garbage). */
static void start_probe(struct running *r, const vd_config *cfg, const char *src, bool valid_probe)
{
        vd_error err = {{0}};
        vd_log_set_level(VD_LOG_WARN);
        r->result = -1;
        int rc = vd_server_new(cfg, NULL, &r->srv, &err);
        cr_assert_eq(rc, 0, "vd_server_new: %s", err.msg);
        cr_assert_eq(pthread_create(&r->thread, NULL, run_thread, r), 0);

        uint8_t q[512] = {0x01, 0x01, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12};
        size_t qlen = valid_probe ? make_query(q, 0x0101, "probe.example") : 14;
        uint8_t resp[512];
        for (int i = 0; i < 50; i++) {
                if (udp_exchange_from(src, r->port, q, qlen, resp, sizeof(resp), 100) > 0)
                        return;
        }
        cr_assert_fail("server never answered");
}

static void start(struct running *r, const vd_config *cfg)
{
        start_probe(r, cfg, "127.0.0.1", false);
}

static void start_simple(struct running *r, unsigned idle_ms, unsigned max_conn)
{
        vd_config cfg;
        r->port = free_port();
        base_config(&cfg, r->port);
        cfg.tcp_idle_timeout_ms = idle_ms;
        cfg.tcp_max_connections = max_conn;
        start(r, &cfg);
        vd_config_free(&cfg);
}

/* SIGTERM to the server thread: vd_server_run returns 0 within 2 s. */
static void stop(struct running *r)
{
        struct timespec deadline;
        cr_assert_eq(pthread_kill(r->thread, SIGTERM), 0);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 2;
        int rc = pthread_timedjoin_np(r->thread, NULL, &deadline);
        cr_assert_eq(rc, 0, "vd_server_run did not return within 2 s");
        cr_assert_eq(r->result, 0);
        vd_server_free(r->srv);
}

/* ---- the fake upstream (support/fake_upstream.h) on its own thread ----------------------- */

/* answer: every query gets an A record; else none is ever answered. */
static void upstream_start(fake_upstream *u, bool answer)
{
        fake_upstream_init(u, answer ? FAKE_ANSWER : FAKE_SILENT);
        fake_upstream_start_thread(u);
}

static void start_forwarding(struct running *r, fake_upstream *u, unsigned timeout_ms)
{
        vd_config cfg;
        char text[32];
        r->port = free_port();
        base_config(&cfg, r->port);
        snprintf(text, sizeof(text), "127.0.0.1:%u", fake_upstream_port(u));
        cr_assert_eq(vd_addr_parse(text, 53, &cfg.upstream[0]), 0);
        cfg.n_upstream = 1;
        cfg.upstream_timeout_ms = timeout_ms;
        start(r, &cfg);
        vd_config_free(&cfg);
}

/* ---- UDP ----------------------------------------------------------------------------------- */

Test(server, udp_servfail_without_data_or_upstream)
{
        struct running r;
        uint8_t q[512], resp[512];
        start_simple(&r, 10000, 16);

        size_t qlen = make_query(q, 0xabcd, "sqs.us-east-1.amazonaws.com");
        ssize_t n = udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS);
        cr_assert_geq(n, 12);
        cr_assert_eq(vd_wire_get16(resp), 0xabcd, "the client's ID comes back");
        cr_assert(vd_wire_get16(resp + 2) & VD_FLAG_QR);
        cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
        cr_assert_eq(vd_wire_get16(resp + 4), 1, "question echoed");
        stop(&r);
}

Test(server, udp_formerr_for_garbage_with_readable_header)
{
        struct running r;
        uint8_t q[64], resp[512];
        start_simple(&r, 10000, 16);

        /* a header asking one question, then bytes that are no name */
        memset(q, 0, sizeof(q));
        vd_wire_put16(q, 0x4242);
        vd_wire_put16(q + 4, 1);
        q[12] = 0xc0; /* compression pointer in a question, pointing at itself */
        q[13] = 12;
        ssize_t n = udp_exchange(r.port, q, 14, resp, sizeof(resp), RCV_TIMEOUT_MS);
        cr_assert_geq(n, 12);
        cr_assert_eq(vd_wire_get16(resp), 0x4242);
        cr_assert_eq(rcode_of(resp), VD_RCODE_FORMERR);
        stop(&r);
}

Test(server, udp_response_packets_get_no_reply)
{
        struct running r;
        uint8_t q[512], resp[512];
        start_simple(&r, 10000, 16);

        size_t qlen = make_query(q, 0x7777, "example.com");
        vd_wire_put16(q + 2, VD_FLAG_QR | VD_FLAG_RD);
        cr_assert_lt(udp_exchange(r.port, q, qlen, resp, sizeof(resp), 300), 0,
                     "a QR=1 packet must not be answered (reflection loops)");
        /* and the server is still alive */
        qlen = make_query(q, 0x7778, "example.com");
        cr_assert_gt(udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS), 0);
        cr_assert_eq(vd_wire_get16(resp), 0x7778);
        stop(&r);
}

/* The in-process server's UDP socket on 127.0.0.1:port, found among our own descriptors. */
static int server_udp_fd(unsigned port)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int found = -1;
        cr_assert_not_null(d);
        while (found < 0 && (e = readdir(d)) != NULL) {
                int fd = atoi(e->d_name);
                int type = 0;
                socklen_t tl = sizeof(type);
                struct sockaddr_in a;
                socklen_t al = sizeof(a);
                if (e->d_name[0] == '.' || fd == dirfd(d) ||
                    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM ||
                    getsockname(fd, (struct sockaddr *)&a, &al) != 0 || a.sin_family != AF_INET)
                        continue;
                if (ntohs(a.sin_port) == port)
                        found = fd;
        }
        closedir(d);
        return found;
}

/* With IP_RECVERR on the listening socket, an answer to a client that already left queues an
 * ICMP port-unreachable error; epoll reports POLLERR, on which libuv stops a poll handle. The
 * listener must take the error and go on answering. */
Test(server, udp_socket_error_does_not_stop_the_listener)
{
        struct running r;
        uint8_t q[512], resp[512];
        start_simple(&r, 10000, 16);
        int sfd = server_udp_fd(r.port);
        cr_assert_geq(sfd, 0, "the server's UDP socket");
        int on = 1;
        cr_assert_eq(setsockopt(sfd, IPPROTO_IP, IP_RECVERR, &on, sizeof(on)), 0);

        struct sockaddr_in a = loopback(r.port);
        size_t qlen = make_query(q, 0x5151, "gone.example");
        int busy = socket(AF_INET, SOCK_DGRAM, 0);
        cr_assert_geq(busy, 0);
        for (int i = 0; i < 5; i++) {
                /* a burst keeps the worker busy while the next client sends and leaves, so
                 * that the answer meets a closed port */
                for (int k = 0; k < 200; k++)
                        sendto(busy, q, qlen, 0, (struct sockaddr *)&a, sizeof(a));
                int fd = socket(AF_INET, SOCK_DGRAM, 0);
                cr_assert_geq(fd, 0);
                cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)),
                             (ssize_t)qlen);
                close(fd);
                usleep(50 * 1000);
        }
        close(busy);
        qlen = make_query(q, 0x5152, "still.example");
        ssize_t n = udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS);
        cr_assert_geq(n, 12, "no answer after a socket error");
        cr_assert_eq(vd_wire_get16(resp), 0x5152);
        stop(&r);
}

Test(server, udp_burst_is_answered_in_full)
{
        struct running r;
        uint8_t q[512], resp[512];
        start_simple(&r, 10000, 16);

        /* 200 datagrams before reading any answer: several recvmmsg batches */
        struct sockaddr_in a = loopback(r.port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        int big = 1 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        set_rcvtimeo(fd, RCV_TIMEOUT_MS);
        bool seen[200] = {false};
        for (uint16_t i = 0; i < 200; i++) {
                size_t qlen = make_query(q, i, "burst.example");
                cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)),
                             (ssize_t)qlen);
        }
        int got = 0;
        while (got < 200) {
                ssize_t n = recv(fd, resp, sizeof(resp), 0);
                if (n < 12)
                        break;
                uint16_t id = vd_wire_get16(resp);
                cr_assert_lt(id, 200);
                cr_assert_not(seen[id], "ID %u answered twice", id);
                seen[id] = true;
                got++;
        }
        close(fd);
        cr_assert_eq(got, 200);
        stop(&r);
}

/* ---- TCP ----------------------------------------------------------------------------------- */

Test(server, tcp_two_pipelined_queries_in_one_write)
{
        struct running r;
        uint8_t q[512], wbuf[1024], resp[512];
        start_simple(&r, 10000, 16);

        int fd = tcp_connect(r.port);
        size_t len = make_query(q, 0x1111, "a.example");
        size_t w = frame(wbuf, q, len);
        len = make_query(q, 0x2222, "b.example");
        w += frame(wbuf + w, q, len);
        send_all(fd, wbuf, w);

        bool got1 = false, got2 = false;
        for (int i = 0; i < 2; i++) {
                ssize_t n = tcp_read_msg(fd, resp, sizeof(resp));
                cr_assert_geq(n, 12, "answer %d missing", i + 1);
                cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
                got1 |= vd_wire_get16(resp) == 0x1111;
                got2 |= vd_wire_get16(resp) == 0x2222;
        }
        cr_assert(got1 && got2);
        close(fd);
        stop(&r);
}

Test(server, tcp_query_in_one_byte_writes)
{
        struct running r;
        uint8_t q[512], wbuf[600], resp[512];
        start_simple(&r, 10000, 16);

        int fd = tcp_connect(r.port);
        size_t w = frame(wbuf, q, make_query(q, 0x3333, "slow.example"));
        for (size_t i = 0; i < w; i++) {
                send_all(fd, wbuf + i, 1);
                usleep(2000);
        }
        ssize_t n = tcp_read_msg(fd, resp, sizeof(resp));
        cr_assert_geq(n, 12);
        cr_assert_eq(vd_wire_get16(resp), 0x3333);
        /* the connection stays usable */
        send_all(fd, wbuf, frame(wbuf, q, make_query(q, 0x3334, "slow.example")));
        n = tcp_read_msg(fd, resp, sizeof(resp));
        cr_assert_geq(n, 12);
        cr_assert_eq(vd_wire_get16(resp), 0x3334);
        close(fd);
        stop(&r);
}

Test(server, tcp_length_zero_closes_after_answering)
{
        struct running r;
        uint8_t q[512], wbuf[600], resp[512];
        start_simple(&r, 10000, 16);

        int fd = tcp_connect(r.port);
        size_t w = frame(wbuf, q, make_query(q, 0x4444, "x.example"));
        wbuf[w++] = 0;
        wbuf[w++] = 0;
        send_all(fd, wbuf, w);
        ssize_t n = tcp_read_msg(fd, resp, sizeof(resp));
        cr_assert_geq(n, 12, "the query before the length-0 message is answered");
        cr_assert_eq(vd_wire_get16(resp), 0x4444);
        cr_assert(closed_within(fd, RCV_TIMEOUT_MS), "length 0 closes the connection");
        close(fd);

        /* length 0 alone */
        fd = tcp_connect(r.port);
        send_all(fd, (const uint8_t *)"\0\0", 2);
        cr_assert(closed_within(fd, RCV_TIMEOUT_MS));
        close(fd);
        stop(&r);
}

Test(server, tcp_idle_connection_is_closed)
{
        struct running r;
        uint8_t q[512], wbuf[600], resp[512];
        start_simple(&r, 300, 16);

        int fd = tcp_connect(r.port);
        long long t0 = now_ms();
        cr_assert(closed_within(fd, 2000), "a silent connection is closed");
        long long idle = now_ms() - t0;
        cr_assert_geq(idle, 250, "closed after %lld ms, before the idle timeout", idle);
        close(fd);

        /* a query resets the timer: 200 ms, query, 200 ms, query — still open */
        fd = tcp_connect(r.port);
        for (int i = 0; i < 3; i++) {
                usleep(200 * 1000);
                send_all(fd, wbuf, frame(wbuf, q, make_query(q, (uint16_t)(0x5000 + i), "i.x")));
                cr_assert_geq(tcp_read_msg(fd, resp, sizeof(resp)), 12, "closed while active");
        }
        close(fd);
        stop(&r);
}

Test(server, tcp_connections_over_the_cap_are_closed)
{
        struct running r;
        uint8_t q[512], wbuf[600], resp[512];
        start_simple(&r, 10000, 2);

        int a = tcp_connect(r.port);
        int b = tcp_connect(r.port);
        size_t w = frame(wbuf, q, make_query(q, 0x6000, "cap.example"));
        send_all(a, wbuf, w);
        send_all(b, wbuf, w);
        cr_assert_geq(tcp_read_msg(a, resp, sizeof(resp)), 12);
        cr_assert_geq(tcp_read_msg(b, resp, sizeof(resp)), 12);

        int c = tcp_connect(r.port);
        cr_assert(closed_within(c, RCV_TIMEOUT_MS), "the third connection is closed at once");
        close(c);

        /* the first two still work; closing one frees a slot */
        send_all(a, wbuf, w);
        cr_assert_geq(tcp_read_msg(a, resp, sizeof(resp)), 12);
        close(b);
        usleep(100 * 1000);
        c = tcp_connect(r.port);
        send_all(c, wbuf, w);
        cr_assert_geq(tcp_read_msg(c, resp, sizeof(resp)), 12, "a freed slot is usable");
        close(c);
        close(a);
        stop(&r);
}

Test(server, tcp_client_that_never_reads_is_closed, .timeout = 30)
{
        struct running r;
        uint8_t q[512];
        static uint8_t chunk[64 * 1024];
        start_simple(&r, 60000, 16); /* idle timeout out of reach: only the write cap acts */

        int fd = tcp_connect_rcvbuf(r.port, 16384);
        size_t one = frame(chunk, q, make_query(q, 0x7000, "flood.example"));
        size_t per = sizeof(chunk) / one;
        for (size_t i = 1; i < per; i++)
                memcpy(chunk + i * one, chunk, one);

        /* Keep writing queries, never read: the server must give up on us. */
        bool closed = false;
        size_t sent = 0; /* offset in chunk: partial sends keep the framing intact */
        long long end = now_ms() + 10000;
        while (!closed && now_ms() < end) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                if (poll(&p, 1, 100) <= 0)
                        continue;
                if (p.revents & (POLLERR | POLLHUP)) {
                        closed = true;
                        break;
                }
                ssize_t n = send(fd, chunk + sent, per * one - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                        closed = true;
                else if (n > 0)
                        sent = (sent + (size_t)n) % (per * one);
        }
        cr_assert(closed, "a client that never reads its answers was not closed");
        close(fd);
        stop(&r);
}

/* ---- forwarding ------------------------------------------------------------------------- */

Test(server, forwarded_answers_over_udp_and_tcp)
{
        struct running r;
        fake_upstream u;
        uint8_t q[512], wbuf[64 * 1024], resp[512];
        upstream_start(&u, true);
        start_forwarding(&r, &u, 2000);

        size_t qlen = make_query(q, 0x8001, "forwarded.example");
        ssize_t n = udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS);
        cr_assert_geq(n, 12);
        cr_assert_eq(vd_wire_get16(resp), 0x8001);
        cr_assert_eq(rcode_of(resp), VD_RCODE_NOERROR, "the upstream's answer is relayed");

        /* 100 pipelined forwarded queries on one connection: more than the in-flight cap,
         * so reading pauses and resumes; every one is answered exactly once. */
        int fd = tcp_connect(r.port);
        size_t w = 0;
        for (uint16_t i = 0; i < 100; i++) {
                char name[32];
                snprintf(name, sizeof(name), "q%u.example", i);
                w += frame(wbuf + w, q, make_query(q, i, name));
        }
        send_all(fd, wbuf, w);
        bool seen[100] = {false};
        for (int i = 0; i < 100; i++) {
                n = tcp_read_msg(fd, resp, sizeof(resp));
                cr_assert_geq(n, 12, "answer %d of 100 missing", i);
                uint16_t id = vd_wire_get16(resp);
                cr_assert_lt(id, 100);
                cr_assert_not(seen[id]);
                cr_assert_eq(rcode_of(resp), VD_RCODE_NOERROR);
                seen[id] = true;
        }
        close(fd);
        stop(&r);
        fake_upstream_stop(&u);
}

Test(server, silent_upstream_gives_servfail_and_keeps_idle_connection_open)
{
        struct running r;
        fake_upstream u;
        uint8_t q[512], wbuf[600], resp[512];
        vd_config cfg;
        char text[32];
        upstream_start(&u, false);
        r.port = free_port();
        base_config(&cfg, r.port);
        snprintf(text, sizeof(text), "127.0.0.1:%u", fake_upstream_port(&u));
        cr_assert_eq(vd_addr_parse(text, 53, &cfg.upstream[0]), 0);
        cfg.n_upstream = 1;
        cfg.upstream_timeout_ms = 600;
        cfg.tcp_idle_timeout_ms = 200; /* shorter than the upstream budget */
        start(&r, &cfg);
        vd_config_free(&cfg);

        int fd = tcp_connect(r.port);
        send_all(fd, wbuf, frame(wbuf, q, make_query(q, 0x9001, "silent.example")));
        ssize_t n = tcp_read_msg(fd, resp, sizeof(resp));
        cr_assert_geq(n, 12, "a connection waiting for upstream is not idle");
        cr_assert_eq(vd_wire_get16(resp), 0x9001);
        cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
        close(fd);
        stop(&r);
        fake_upstream_stop(&u);
}

Test(server, sigterm_with_queries_pending_upstream)
{
        struct running r;
        fake_upstream u;
        uint8_t q[512], wbuf[600];
        upstream_start(&u, false);
        start_forwarding(&r, &u, 10000);
        int seen_before = u.udp_queries;

        struct sockaddr_in a = loopback(r.port);
        int ufd = socket(AF_INET, SOCK_DGRAM, 0);
        size_t qlen = make_query(q, 0xa001, "pending.example");
        sendto(ufd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a));
        int tfd = tcp_connect(r.port);
        send_all(tfd, wbuf, frame(wbuf, q, make_query(q, 0xa002, "pending2.example")));
        for (int i = 0; i < 100 && u.udp_queries < seen_before + 2; i++)
                usleep(10 * 1000);
        cr_assert_geq(u.udp_queries, seen_before + 2, "both queries went upstream");

        long long t0 = now_ms();
        stop(&r); /* asserts a clean return within 2 s although 10 s budgets are pending */
        cr_assert_lt(now_ms() - t0, 2000);
        cr_assert(closed_within(tfd, RCV_TIMEOUT_MS), "the TCP client sees the close");
        close(tfd);
        close(ufd);
        fake_upstream_stop(&u);
}

/* ---- workers, errors, signals ------------------------------------------------------------ */

Test(server, several_workers_share_the_address)
{
        struct running r;
        vd_config cfg;
        uint8_t q[512], wbuf[600], resp[512];
        r.port = free_port();
        base_config(&cfg, r.port);
        cfg.workers = 3;
        start(&r, &cfg);
        vd_config_free(&cfg);

        for (uint16_t i = 0; i < 20; i++) {
                size_t qlen = make_query(q, i, "w.example");
                cr_assert_geq(udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS),
                              12);
                cr_assert_eq(vd_wire_get16(resp), i);
                int fd = tcp_connect(r.port);
                send_all(fd, wbuf, frame(wbuf, q, qlen));
                cr_assert_geq(tcp_read_msg(fd, resp, sizeof(resp)), 12);
                cr_assert_eq(vd_wire_get16(resp), i);
                close(fd);
        }
        stop(&r);
}

Test(server, bind_error_names_the_address)
{
        vd_config cfg;
        vd_server *srv = NULL;
        vd_error err = {{0}};
        unsigned port = free_port();
        struct sockaddr_in a = loopback(port);
        int held = socket(AF_INET, SOCK_DGRAM, 0); /* no SO_REUSEPORT: nobody may share it */
        cr_assert_eq(bind(held, (struct sockaddr *)&a, sizeof(a)), 0);

        base_config(&cfg, port);
        vd_log_set_level(VD_LOG_WARN);
        int rc = vd_server_new(&cfg, NULL, &srv, &err);
        cr_assert_lt(rc, 0);
        cr_assert_null(srv);
        char want[32];
        snprintf(want, sizeof(want), "127.0.0.1:%u", port);
        cr_assert(strstr(err.msg, want) != NULL, "message: %s", err.msg);
        cr_assert(strstr(err.msg, strerror(EADDRINUSE)) != NULL, "message: %s", err.msg);
        close(held);
        vd_config_free(&cfg);
}

Test(server, free_without_run_releases_everything)
{
        vd_config cfg;
        vd_server *srv = NULL;
        vd_error err = {{0}};
        unsigned port = free_port();
        base_config(&cfg, port);
        cfg.workers = 2;
        cr_assert_eq(vd_server_new(&cfg, NULL, &srv, &err), 0, "%s", err.msg);
        vd_server_free(srv);

        /* the port is free again for a socket that does not share */
        struct sockaddr_in a = loopback(port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "sockets were not closed");
        close(fd);
        vd_config_free(&cfg);
}

Test(server, sigint_stops_too)
{
        struct running r;
        struct timespec deadline;
        start_simple(&r, 10000, 16);
        cr_assert_eq(kill(getpid(), SIGINT), 0);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 2;
        cr_assert_eq(pthread_timedjoin_np(r.thread, NULL, &deadline), 0);
        cr_assert_eq(r.result, 0);
        vd_server_free(r.srv);
}

/* ---- publishing from another thread ------------------------------------------------------- */

/* A snapshot with a.example A 10.1.2.3. */
static vd_snapshot *snapshot_a_example(void)
{
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len = 0;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        static const uint8_t rdata[] = {10, 1, 2, 3};
        vd_builder *b = vd_builder_new();
        cr_assert_not_null(b);
        cr_assert_eq(vd_name_from_text("a.example", owner, &owner_len), 0);
        cr_assert_eq(vd_builder_add_rr(b, owner, VD_TYPE_A, 60, rdata, 4, "test", &err), 0, "%s",
                     err.msg);
        cr_assert_eq(vd_builder_finish(b, &snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return snap;
}

struct publisher {
        vd_server *srv;
        vd_snapshot *snap;
        pthread_t thread;
        _Atomic bool quit;
        _Atomic unsigned rounds;
};

/* Publishes snap and nothing by turns until told to quit; snap is the last one published. */
static void *publish_thread(void *arg)
{
        struct publisher *p = arg;
        while (!atomic_load(&p->quit)) {
                vd_server_publish(p->srv, NULL);
                vd_server_publish(p->srv, p->snap);
                atomic_fetch_add(&p->rounds, 1);
                usleep(100);
        }
        return NULL;
}

static void publisher_start(struct publisher *p, vd_server *srv, vd_snapshot *snap)
{
        p->srv = srv;
        p->snap = snap;
        atomic_store(&p->quit, false);
        atomic_store(&p->rounds, 0);
        cr_assert_eq(pthread_create(&p->thread, NULL, publish_thread, p), 0);
}

/* Lets the publisher run n more rounds, then stops it. */
static void publisher_stop(struct publisher *p, unsigned n)
{
        unsigned until = atomic_load(&p->rounds) + n;
        for (int i = 0; i < 2000 && atomic_load(&p->rounds) < until; i++)
                usleep(1000);
        cr_assert_geq(atomic_load(&p->rounds), until, "the publisher is stuck");
        atomic_store(&p->quit, true);
        cr_assert_eq(pthread_join(p->thread, NULL), 0);
}

/* The reload path publishes while the workers answer, and may still do so while they stop
 * and after vd_server_run returned: every worker ends up with the last snapshot, and nothing
 * touches a worker's handles once it closes them (ThreadSanitizer checks the rest). */
Test(server, publish_is_safe_from_another_thread_while_workers_run_and_stop)
{
        struct running r;
        struct publisher p;
        vd_config cfg;
        uint8_t q[512], resp[512];
        vd_snapshot *snap = snapshot_a_example();
        r.port = free_port();
        base_config(&cfg, r.port);
        cfg.workers = 3;
        start(&r, &cfg);
        vd_config_free(&cfg);
        size_t qlen = make_query(q, 0x5150, "a.example");

        publisher_start(&p, r.srv, snap);
        for (int i = 0; i < 20; i++) {
                cr_assert_geq(udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS),
                              12);
                cr_assert(rcode_of(resp) == VD_RCODE_NOERROR || rcode_of(resp) == VD_RCODE_SERVFAIL,
                          "rcode %u: the record, or no local data at all", rcode_of(resp));
        }
        publisher_stop(&p, 5); /* the last snapshot published is snap */
        bool answered = false;
        for (int i = 0; i < 50 && !answered; i++) {
                ssize_t n = udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS);
                answered =
                    n >= 12 && rcode_of(resp) == VD_RCODE_NOERROR && vd_wire_get16(resp + 6) == 1;
                if (!answered)
                        usleep(20 * 1000);
        }
        cr_assert(answered, "the workers took the last snapshot published");

        publisher_start(&p, r.srv, snap); /* and on through the stop */
        struct timespec deadline;
        cr_assert_eq(pthread_kill(r.thread, SIGTERM), 0);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        cr_assert_eq(pthread_timedjoin_np(r.thread, NULL, &deadline), 0);
        cr_assert_eq(r.result, 0);
        publisher_stop(&p, 20); /* after vd_server_run returned: a no-op for the workers */
        vd_server_free(r.srv);
        vd_snapshot_unref(snap);
}

/* ---- per-client limits ------------------------------------------------------------------ */

static void allow(vd_config *cfg, const char *cidr)
{
        cr_assert_lt(cfg->n_allow, VD_MAX_ACL);
        cr_assert_eq(vd_cidr_parse(cidr, &cfg->allow[cfg->n_allow]), 0, "%s", cidr);
        cfg->n_allow++;
}

Test(server, acl_refuse_answers_refused_over_udp_and_tcp)
{
        struct running r;
        vd_config cfg;
        uint8_t q[512], wbuf[1200], resp[512];
        r.port = free_port();
        base_config(&cfg, r.port);
        allow(&cfg, "10.0.0.0/8"); /* loopback is not in the list: we are a stranger */
        allow(&cfg, "fd00::/8");
        cfg.deny_action = VD_DENY_REFUSE;
        start_probe(&r, &cfg, "127.0.0.1", true);
        vd_config_free(&cfg);

        size_t qlen = make_query(q, 0xd001, "sqs.us-east-1.amazonaws.com");
        ssize_t n = udp_exchange(r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS);
        cr_assert_eq(n, (ssize_t)qlen, "REFUSED echoes the question and nothing else");
        cr_assert_eq(vd_wire_get16(resp), 0xd001);
        cr_assert(vd_wire_get16(resp + 2) & VD_FLAG_QR);
        cr_assert_eq(rcode_of(resp), VD_RCODE_REFUSED);
        cr_assert_eq(memcmp(resp + 12, q + 12, qlen - 12), 0);

        /* garbage that would earn FORMERR: a denied client gets nothing */
        uint8_t bad[14] = {0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12};
        cr_assert_lt(udp_exchange(r.port, bad, sizeof(bad), resp, sizeof(resp), 300), 0);

        /* TCP: the connection is accepted, each query is REFUSED */
        int fd = tcp_connect(r.port);
        size_t w = frame(wbuf, q, make_query(q, 0xd002, "a.example"));
        w += frame(wbuf + w, q, make_query(q, 0xd003, "b.example"));
        send_all(fd, wbuf, w);
        for (uint16_t id = 0xd002; id <= 0xd003; id++) {
                n = tcp_read_msg(fd, resp, sizeof(resp));
                cr_assert_geq(n, 12, "answer %#x missing", id);
                cr_assert_eq(vd_wire_get16(resp), id, "answers come back in order");
                cr_assert_eq(rcode_of(resp), VD_RCODE_REFUSED);
        }
        close(fd);
        stop(&r);
}

Test(server, acl_drop_sends_nothing_and_closes_tcp_at_accept)
{
        struct running r;
        vd_config cfg;
        uint8_t q[512], wbuf[600], resp[512];
        r.port = free_port();
        base_config(&cfg, r.port);
        allow(&cfg, "127.0.0.2/32"); /* only the second loopback address may ask */
        cfg.deny_action = VD_DENY_DROP;
        start_probe(&r, &cfg, "127.0.0.2", false);
        vd_config_free(&cfg);

        size_t qlen = make_query(q, 0xd101, "x.example");
        cr_assert_lt(udp_exchange_from("127.0.0.1", r.port, q, qlen, resp, sizeof(resp), 300), 0,
                     "a denied client gets no UDP answer");
        cr_assert_geq(
            udp_exchange_from("127.0.0.2", r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS), 12,
            "an allowed client does");
        cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);

        int fd = tcp_connect_from("127.0.0.1", r.port);
        cr_assert(closed_within(fd, RCV_TIMEOUT_MS), "a denied TCP client is closed at once");
        close(fd);
        fd = tcp_connect_from("127.0.0.2", r.port);
        send_all(fd, wbuf, frame(wbuf, q, qlen));
        cr_assert_geq(tcp_read_msg(fd, resp, sizeof(resp)), 12);
        cr_assert_eq(vd_wire_get16(resp), 0xd101);
        close(fd);
        stop(&r);
}

Test(server, tcp_connections_per_client_are_capped)
{
        struct running r;
        vd_config cfg;
        uint8_t q[512], wbuf[600], resp[512];
        r.port = free_port();
        base_config(&cfg, r.port);
        cfg.tcp_max_connections = 16;
        cfg.tcp_max_connections_per_client = 2;
        start(&r, &cfg);
        vd_config_free(&cfg);

        size_t w = frame(wbuf, q, make_query(q, 0xd201, "cap.example"));
        int a = tcp_connect_from("127.0.0.1", r.port);
        int b = tcp_connect_from("127.0.0.1", r.port);
        send_all(a, wbuf, w);
        send_all(b, wbuf, w);
        cr_assert_geq(tcp_read_msg(a, resp, sizeof(resp)), 12);
        cr_assert_geq(tcp_read_msg(b, resp, sizeof(resp)), 12);

        int c = tcp_connect_from("127.0.0.1", r.port);
        cr_assert(closed_within(c, RCV_TIMEOUT_MS), "a third connection from 127.0.0.1 is closed");
        close(c);

        int other = tcp_connect_from("127.0.0.2", r.port);
        send_all(other, wbuf, w);
        cr_assert_geq(tcp_read_msg(other, resp, sizeof(resp)), 12,
                      "another client is not affected");
        close(other);

        send_all(a, wbuf, w);
        cr_assert_geq(tcp_read_msg(a, resp, sizeof(resp)), 12, "the first two still work");
        close(b);
        usleep(100 * 1000);
        c = tcp_connect_from("127.0.0.1", r.port);
        send_all(c, wbuf, w);
        cr_assert_geq(tcp_read_msg(c, resp, sizeof(resp)), 12, "a freed slot is usable");
        close(c);
        close(a);
        stop(&r);
}

Test(server, tcp_queries_per_connection_are_capped)
{
        struct running r;
        vd_config cfg;
        uint8_t q[512], wbuf[4096], resp[512];
        r.port = free_port();
        base_config(&cfg, r.port);
        cfg.tcp_max_queries_per_connection = 3;
        start(&r, &cfg);
        vd_config_free(&cfg);

        /* five pipelined queries: three answers in order, then the server closes */
        int fd = tcp_connect(r.port);
        size_t w = 0;
        for (uint16_t i = 0; i < 5; i++)
                w += frame(wbuf + w, q, make_query(q, (uint16_t)(0xd300 + i), "p.example"));
        send_all(fd, wbuf, w);
        for (uint16_t i = 0; i < 3; i++) {
                cr_assert_geq(tcp_read_msg(fd, resp, sizeof(resp)), 12, "answer %u missing", i);
                cr_assert_eq(vd_wire_get16(resp), 0xd300 + i);
        }
        cr_assert(closed_within(fd, RCV_TIMEOUT_MS), "closed after the third answer");
        close(fd);

        /* one at a time: the third answer still arrives whole, then the close */
        fd = tcp_connect(r.port);
        for (uint16_t i = 0; i < 3; i++) {
                send_all(fd, wbuf, frame(wbuf, q, make_query(q, (uint16_t)(0xd310 + i), "s.x")));
                cr_assert_geq(tcp_read_msg(fd, resp, sizeof(resp)), 12, "answer %u missing", i);
                cr_assert_eq(vd_wire_get16(resp), 0xd310 + i);
        }
        cr_assert(closed_within(fd, RCV_TIMEOUT_MS));
        close(fd);
        stop(&r);
}

Test(server, slow_sender_is_closed_by_the_idle_timeout)
{
        struct running r;
        start_simple(&r, 400, 16);

        /* announce a 100-octet message, then trickle one octet every 50 ms: the message would
         * be complete only after 5 s, and partial reads must not keep the connection open */
        int fd = tcp_connect(r.port);
        long long t0 = now_ms();
        send_all(fd, (const uint8_t *)"\0\x64", 2);
        bool closed = false;
        for (int i = 0; i < 60 && !closed; i++) {
                uint8_t byte = 0;
                if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1)
                        break; /* reset: closed */
                closed = closed_within(fd, 50);
        }
        if (!closed)
                closed = closed_within(fd, 100);
        long long took = now_ms() - t0;
        cr_assert(closed, "a client trickling bytes kept its connection for %lld ms", took);
        cr_assert_geq(took, 350, "closed after %lld ms, before the idle timeout", took);
        cr_assert_lt(took, 1500, "closed after %lld ms: partial reads reset the timer", took);
        close(fd);
        stop(&r);
}

Test(server, pending_forwarded_queries_per_client_are_capped)
{
        struct running r;
        fake_upstream u;
        vd_config cfg;
        char text[32];
        uint8_t q[512], wbuf[600], resp[512];
        upstream_start(&u, false); /* silent: forwarded queries stay pending */
        r.port = free_port();
        base_config(&cfg, r.port);
        snprintf(text, sizeof(text), "127.0.0.1:%u", fake_upstream_port(&u));
        cr_assert_eq(vd_addr_parse(text, 53, &cfg.upstream[0]), 0);
        cfg.n_upstream = 1;
        cfg.upstream_timeout_ms = 1500;
        cfg.max_pending_per_client = 3;
        start(&r, &cfg);
        vd_config_free(&cfg);

        /* three forwarded queries from one UDP socket of 127.0.0.1 */
        struct sockaddr_in a = loopback(r.port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        bind_source(fd, "127.0.0.1");
        set_rcvtimeo(fd, 3000);
        int seen0 = u.udp_queries;
        for (uint16_t i = 0; i < 3; i++) {
                char name[32];
                snprintf(name, sizeof(name), "p%u.example", i);
                size_t qlen = make_query(q, (uint16_t)(0xd400 + i), name);
                cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)),
                             (ssize_t)qlen);
        }
        for (int i = 0; i < 100 && u.udp_queries < seen0 + 3; i++)
                usleep(10 * 1000);
        cr_assert_geq(u.udp_queries, seen0 + 3, "the three queries went upstream");

        /* the fourth, from another port of the same address, is SERVFAIL at once */
        long long t0 = now_ms();
        size_t qlen = make_query(q, 0xd410, "p4.example");
        ssize_t n = udp_exchange_from("127.0.0.1", r.port, q, qlen, resp, sizeof(resp), 1000);
        cr_assert_geq(n, 12, "no answer for the query over the limit");
        cr_assert_eq(vd_wire_get16(resp), 0xd410);
        cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
        cr_assert_lt(now_ms() - t0, 700, "SERVFAIL came from the upstream timeout, not the cap");

        /* over TCP too: the count is per address */
        int tfd = tcp_connect_from("127.0.0.1", r.port);
        t0 = now_ms();
        send_all(tfd, wbuf, frame(wbuf, q, make_query(q, 0xd411, "p5.example")));
        cr_assert_geq(tcp_read_msg(tfd, resp, sizeof(resp)), 12);
        cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
        cr_assert_lt(now_ms() - t0, 700);
        close(tfd);

        /* another client still goes upstream */
        int seen1 = u.udp_queries;
        int other = socket(AF_INET, SOCK_DGRAM, 0);
        bind_source(other, "127.0.0.2");
        qlen = make_query(q, 0xd420, "other.example");
        cr_assert_eq(sendto(other, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)qlen);
        for (int i = 0; i < 100 && u.udp_queries == seen1; i++)
                usleep(10 * 1000);
        cr_assert_gt(u.udp_queries, seen1, "127.0.0.2 is not limited by 127.0.0.1's queries");
        close(other);

        /* the three time out (SERVFAIL); then 127.0.0.1 may forward again */
        for (int i = 0; i < 3; i++) {
                n = recv(fd, resp, sizeof(resp), 0);
                cr_assert_geq(n, 12, "pending answer %d missing", i);
                cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
        }
        int seen2 = u.udp_queries;
        qlen = make_query(q, 0xd430, "again.example");
        cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)qlen);
        for (int i = 0; i < 100 && u.udp_queries == seen2; i++)
                usleep(10 * 1000);
        cr_assert_gt(u.udp_queries, seen2, "the count went down when the replies ran");
        close(fd);
        stop(&r);
        fake_upstream_stop(&u);
}

Test(server, udp_rate_limit_drops_and_slips)
{
        struct running r;
        vd_config cfg;
        uint8_t q[512], resp[512];
        r.port = free_port();
        base_config(&cfg, r.port);
        cfg.rrl_responses_per_second = 5;
        cfg.rrl_slip = 2;
        cfg.rrl_ipv4_prefix = 32;
        start_probe(&r, &cfg, "127.0.0.2", false); /* the probe spends 127.0.0.2's budget */
        vd_config_free(&cfg);

        struct sockaddr_in a = loopback(r.port);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        bind_source(fd, "127.0.0.1");
        set_rcvtimeo(fd, 300);
        for (uint16_t i = 0; i < 60; i++) {
                size_t qlen = make_query(q, i, "rrl.example");
                cr_assert_eq(sendto(fd, q, qlen, 0, (struct sockaddr *)&a, sizeof(a)),
                             (ssize_t)qlen);
        }
        int full = 0, tc = 0;
        for (int i = 0; i < 60; i++) {
                ssize_t n = recv(fd, resp, sizeof(resp), 0);
                if (n < 12)
                        break;
                if (vd_wire_get16(resp + 2) & VD_FLAG_TC) {
                        cr_assert_eq(vd_wire_get16(resp + 6), 0, "a slip answer has no records");
                        cr_assert_eq(vd_wire_get16(resp + 4), 1, "but keeps the question");
                        tc++;
                } else {
                        cr_assert_eq(rcode_of(resp), VD_RCODE_SERVFAIL);
                        full++;
                }
        }
        /* 5 per second (10 when the burst straddles a second), half of the rest as TC */
        cr_assert(full >= 5 && full <= 10, "%d full answers", full);
        cr_assert(tc >= (60 - full) / 2 - 1 && tc <= (60 - full) / 2 + 1, "%d TC answers", tc);
        close(fd);

        /* a second later the client is answered normally */
        usleep(1100 * 1000);
        size_t qlen = make_query(q, 0xd500, "rrl.example");
        cr_assert_geq(
            udp_exchange_from("127.0.0.1", r.port, q, qlen, resp, sizeof(resp), RCV_TIMEOUT_MS),
            12);
        cr_assert_not(vd_wire_get16(resp + 2) & VD_FLAG_TC);
        stop(&r);
}
