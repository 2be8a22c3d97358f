/* fake_upstream.c — the fake upstream server of fake_upstream.h. Owns its sockets, its TCP
 * connections and its delayed and held answers (each freed from its close callback), and in
 * thread mode its loop and thread. It answers and records; it must not judge the code under
 * test, and in thread mode it asserts nothing on its own thread (failures are counted and
 * asserted by fake_upstream_stop on the test's thread). */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "support/fake_upstream.h"

#define ANSWER_MAX 2048 /* any answer it builds fits */

struct fake_conn {
        uv_tcp_t h; /* data = this */
        fake_upstream *up;
        struct fake_conn *next;
        size_t n;
        uint8_t buf[4096];
};

struct write_req {
        uv_write_t req;
        uint8_t buf[2 + ANSWER_MAX];
};

/* A delayed (timer running) or held (timer idle) UDP answer. */
struct fake_later {
        uv_timer_t timer; /* data = this */
        fake_upstream *up;
        struct fake_later *next;
        struct sockaddr_storage to;
        size_t n;
        uint8_t buf[ANSWER_MAX];
};

/* Asserts on the test's thread; counts in thread mode, for fake_upstream_stop to assert. */
static void check(fake_upstream *up, bool ok, const char *what)
{
        if (ok)
                return;
        if (up->threaded)
                atomic_fetch_add(&up->errors, 1);
        else
                cr_assert_fail("fake upstream: %s", what);
}

static void free_data_on_close(uv_handle_t *h)
{
        free(h->data);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        static _Thread_local uint8_t slab[65536]; /* each loop reads on its own thread */
        (void)h;
        (void)suggested;
        *buf = uv_buf_init((char *)slab, sizeof(slab));
}

/* Parses a query and records it among the first FAKE_MAX_SEEN. False: not a query. */
static bool note(fake_upstream *up, const uint8_t *query, size_t len, vd_query_info *qi)
{
        if (vd_wire_parse_query(query, len, qi) != VD_PARSE_OK)
                return false;
        if (up->n_seen < FAKE_MAX_SEEN) {
                up->seen_id[up->n_seen] = qi->id;
                up->seen[up->n_seen] = *qi;
                memcpy(up->seen_name[up->n_seen], qi->qname, qi->qname_len);
                up->seen[up->n_seen].qname = NULL; /* points into a buffer about to go */
                up->n_seen++;
        }
        return true;
}

/* The mode's answer: the query's ID and question, the records, an OPT when up->opt. */
static bool mode_answer(fake_upstream *up, const uint8_t *query, const vd_query_info *qi, bool tcp,
                        dns_msg *m)
{
        fake_mode mode = up->mode;
        unsigned rcode = mode == FAKE_REFUSED    ? VD_RCODE_REFUSED
                         : mode == FAKE_SERVFAIL ? VD_RCODE_SERVFAIL
                                                 : 0;
        bool wrong_case = mode == FAKE_WRONG_CASE_FIRST && atomic_load(&up->udp_queries) == 1;
        bool with_records = mode != FAKE_REFUSED && mode != FAKE_SERVFAIL && mode != FAKE_TC;
        unsigned records = tcp ? up->tcp_records : (with_records ? up->records : 0);
        unsigned flags = UP_FLAGS | rcode | (mode == FAKE_TC && !tcp ? VD_FLAG_TC : 0);
        header(m, qi->id, flags, 1, records, 0, up->opt ? 1 : 0);
        for (size_t i = VD_HEADER_LEN; i < qi->question_end; i++) {
                uint8_t c = query[i]; /* length octets are < 64: never letters */
                bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
                put8(m, wrong_case && letter && i < VD_HEADER_LEN + (size_t)qi->qname_len
                            ? c ^ 0x20u
                            : c);
        }
        for (unsigned i = 0; i < records; i++) {
                unsigned last = wrong_case ? FAKE_WRONG_CASE_OCTET : up->octet + i;
                const uint8_t rd[4] = {192, 0, 2, (uint8_t)(last & 0xFF)};
                if (mode == FAKE_UNCOMPRESSED) {
                        for (size_t k = 0; k < qi->qname_len; k++)
                                put8(m, query[VD_HEADER_LEN + k]);
                } else {
                        put_ptr(m, VD_HEADER_LEN);
                }
                rr_tail(m, VD_TYPE_A, VD_CLASS_IN, up->ttl, rd, sizeof(rd));
        }
        if (up->opt)
                opt_rr(m, 1232, 0, qi->edns_do, false);
        return true;
}

/* The answer to a recorded query into out (cap octets); 0 when none goes. */
static size_t build(fake_upstream *up, const uint8_t *query, const vd_query_info *qi, bool tcp,
                    uint8_t *out, size_t cap)
{
        dns_msg m = {.n = 0};
        bool send = up->answer != NULL ? up->answer(up, query, qi, tcp, &m)
                                       : mode_answer(up, query, qi, tcp, &m);
        if (!send)
                return 0;
        check(up, m.n > 0 && m.n <= cap, "answer too long");
        size_t n = m.n <= cap ? m.n : 0;
        memcpy(out, m.b, n);
        if (!tcp && n <= sizeof(up->last_udp)) {
                memcpy(up->last_udp, m.b, n);
                up->last_udp_len = n;
        }
        return n;
}

static void sent(fake_upstream *up)
{
        atomic_fetch_add(&up->answers, 1);
        if (up->on_sent != NULL)
                up->on_sent(up);
}

static void send_udp(fake_upstream *up, const uint8_t *buf, size_t n, const struct sockaddr *to)
{
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
        check(up, uv_udp_try_send(&up->udp, &b, 1, to) == (int)n, "UDP send failed");
        sent(up);
}

static void later_unlink(struct fake_later *l)
{
        struct fake_later **link = &l->up->later;
        while (*link != l)
                link = &(*link)->next;
        *link = l->next;
}

static void on_delayed(uv_timer_t *t)
{
        struct fake_later *l = t->data;
        later_unlink(l);
        send_udp(l->up, l->buf, l->n, (const struct sockaddr *)&l->to);
        uv_close((uv_handle_t *)&l->timer, free_data_on_close);
}

/* Sends every held answer (its timer idle; delayed ones keep waiting), oldest first. */
static void flush_held(fake_upstream *up)
{
        while (up->running) {
                struct fake_later **oldest = NULL; /* the list is newest first */
                for (struct fake_later **link = &up->later; *link != NULL; link = &(*link)->next)
                        if (!uv_is_active((uv_handle_t *)&(*link)->timer))
                                oldest = link;
                if (oldest == NULL)
                        return;
                struct fake_later *l = *oldest;
                *oldest = l->next;
                send_udp(up, l->buf, l->n, (const struct sockaddr *)&l->to);
                uv_close((uv_handle_t *)&l->timer, free_data_on_close);
        }
}

static void keep(fake_upstream *up, const uint8_t *buf, size_t n, const struct sockaddr *to,
                 unsigned delay_ms, bool timed)
{
        struct fake_later *l = calloc(1, sizeof(*l));
        check(up, l != NULL, "out of memory");
        if (l == NULL)
                return;
        l->up = up;
        memcpy(l->buf, buf, n);
        l->n = n;
        memcpy(&l->to, to,
               to->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        uv_timer_init(up->loop, &l->timer);
        l->timer.data = l;
        l->next = up->later;
        up->later = l;
        if (timed)
                uv_timer_start(&l->timer, on_delayed, delay_ms, 0);
}

static void on_udp(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                   unsigned flags)
{
        fake_upstream *up = h->data;
        (void)flags;
        if (nread <= 0 || from == NULL)
                return;
        atomic_fetch_add(&up->udp_queries, 1);
        uint16_t port = from->sa_family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)from)->sin_port)
                            : ntohs(((const struct sockaddr_in6 *)from)->sin6_port);
        bool known = false;
        for (size_t i = 0; i < up->n_ports; i++)
                known = known || up->ports[i] == port;
        if (!known && up->n_ports < FAKE_MAX_PORTS)
                up->ports[up->n_ports++] = port;

        const uint8_t *query = (const uint8_t *)buf->base;
        vd_query_info qi;
        if (!note(up, query, (size_t)nread, &qi) || up->mode == FAKE_SILENT)
                return;
        uint8_t out[ANSWER_MAX];
        size_t n = build(up, query, &qi, false, out, sizeof(out));
        if (n == 0)
                return;
        if (up->mode == FAKE_DELAY) {
                keep(up, out, n, from, up->delay_ms, true);
                return;
        }
        if (up->mode == FAKE_HOLD && !atomic_load(&up->released)) {
                keep(up, out, n, from, 0, false);
                return;
        }
        if (up->mode == FAKE_WRONG_ID_FIRST) {
                uint8_t spoof[ANSWER_MAX];
                memcpy(spoof, out, n);
                vd_wire_put16(spoof, (uint16_t)(vd_wire_get16(out) ^ 0x5A5Au));
                uv_buf_t sb = uv_buf_init((char *)spoof, (unsigned)n);
                check(up, uv_udp_try_send(h, &sb, 1, from) == (int)n, "UDP send failed");
        }
        send_udp(up, out, n, from);
}

static void conn_close(struct fake_conn *c)
{
        struct fake_conn **link = &c->up->conns;
        while (*link != c)
                link = &(*link)->next;
        *link = c->next;
        uv_close((uv_handle_t *)&c->h, free_data_on_close);
}

static void on_written(uv_write_t *req, int status)
{
        (void)status;
        free(req);
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
        struct fake_conn *c = s->data;
        fake_upstream *up = c->up;
        if (nread < 0) {
                conn_close(c);
                return;
        }
        check(up, c->n + (size_t)nread <= sizeof(c->buf), "TCP query too long");
        if (c->n + (size_t)nread > sizeof(c->buf)) {
                conn_close(c);
                return;
        }
        memcpy(c->buf + c->n, buf->base, (size_t)nread);
        c->n += (size_t)nread;
        while (c->n >= 2 && c->n >= 2u + vd_wire_get16(c->buf)) {
                size_t qlen = vd_wire_get16(c->buf);
                const uint8_t *query = c->buf + 2;
                atomic_fetch_add(&up->tcp_queries, 1);
                vd_query_info qi;
                if (note(up, query, qlen, &qi) && up->mode != FAKE_SILENT) {
                        struct write_req *w = calloc(1, sizeof(*w));
                        check(up, w != NULL, "out of memory");
                        size_t n = w != NULL
                                       ? build(up, query, &qi, true, w->buf + 2, sizeof(w->buf) - 2)
                                       : 0;
                        check(up, n > 0, "no TCP answer");
                        if (n > 0) {
                                vd_wire_put16(w->buf, (uint16_t)n);
                                uv_buf_t b = uv_buf_init((char *)w->buf, (unsigned)(n + 2));
                                check(up, uv_write(&w->req, s, &b, 1, on_written) == 0,
                                      "TCP write failed");
                                sent(up);
                        } else {
                                free(w);
                        }
                }
                memmove(c->buf, c->buf + 2 + qlen, c->n - 2 - qlen);
                c->n -= 2 + qlen;
        }
}

static void on_connection(uv_stream_t *server, int status)
{
        fake_upstream *up = server->data;
        check(up, status == 0, "accept failed");
        struct fake_conn *c = calloc(1, sizeof(*c));
        check(up, c != NULL, "out of memory");
        if (status != 0 || c == NULL) {
                free(c);
                return;
        }
        c->up = up;
        uv_tcp_init(server->loop, &c->h);
        c->h.data = c;
        check(up, uv_accept(server, (uv_stream_t *)&c->h) == 0, "accept failed");
        c->next = up->conns;
        up->conns = c;
        uv_read_start((uv_stream_t *)&c->h, alloc_cb, on_tcp_read);
}

void fake_upstream_init(fake_upstream *up, fake_mode mode)
{
        memset(up, 0, sizeof(*up));
        up->mode = mode;
        up->records = 1;
        up->tcp_records = FAKE_TCP_RECORDS;
        up->ttl = 300;
        up->octet = 1;
        up->delay_ms = FAKE_DELAY_MS;
        up->opt = true;
}

bool fake_upstream_start(fake_upstream *up, uv_loop_t *loop, bool with_tcp, const char *ip)
{
        up->loop = loop;
        up->with_tcp = with_tcp;
        struct sockaddr_storage ss;
        if (strchr(ip, ':') != NULL)
                cr_assert_eq(uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss), 0);
        else
                cr_assert_eq(uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss), 0);
        /* The UDP port is the kernel's choice; TCP on the same port may be taken: retry. */
        for (int attempt = 0; attempt < 20; attempt++) {
                uv_udp_init(loop, &up->udp);
                up->udp.data = up;
                if (uv_udp_bind(&up->udp, (struct sockaddr *)&ss, 0) != 0) {
                        uv_close((uv_handle_t *)&up->udp, NULL);
                        return false;
                }
                int len = sizeof(up->addr.ss);
                cr_assert_eq(uv_udp_getsockname(&up->udp, (struct sockaddr *)&up->addr.ss, &len),
                             0);
                up->addr.len = (socklen_t)len;
                if (!with_tcp)
                        break;
                uv_tcp_init(loop, &up->tcp);
                up->tcp.data = up;
                if (uv_tcp_bind(&up->tcp, (struct sockaddr *)&up->addr.ss, 0) == 0 &&
                    uv_listen((uv_stream_t *)&up->tcp, 16, on_connection) == 0)
                        break;
                cr_assert_lt(attempt, 19, "no port free for UDP and TCP");
                uv_close((uv_handle_t *)&up->udp, NULL);
                uv_close((uv_handle_t *)&up->tcp, NULL);
                uv_run(loop, UV_RUN_NOWAIT); /* the close callbacks: the handles are free again */
        }
        uv_udp_recv_start(&up->udp, alloc_cb, on_udp);
        up->running = true;
        return true;
}

static void close_all(fake_upstream *up)
{
        up->running = false;
        uv_close((uv_handle_t *)&up->udp, NULL);
        if (up->with_tcp)
                uv_close((uv_handle_t *)&up->tcp, NULL);
        while (up->conns != NULL)
                conn_close(up->conns);
        while (up->later != NULL) {
                struct fake_later *l = up->later;
                up->later = l->next;
                uv_close((uv_handle_t *)&l->timer, free_data_on_close);
        }
}

static void on_wake(uv_async_t *a)
{
        fake_upstream *up = a->data;
        if (atomic_load(&up->stop)) {
                close_all(up);
                uv_close((uv_handle_t *)&up->wake, NULL);
                return;
        }
        if (atomic_load(&up->released))
                flush_held(up);
}

static void run_thread(void *arg)
{
        fake_upstream *up = arg;
        uv_run(&up->own_loop, UV_RUN_DEFAULT);
}

void fake_upstream_start_thread(fake_upstream *up)
{
        cr_assert_eq(uv_loop_init(&up->own_loop), 0);
        cr_assert(fake_upstream_start(up, &up->own_loop, false, "127.0.0.1"));
        cr_assert_eq(uv_async_init(&up->own_loop, &up->wake, on_wake), 0);
        up->wake.data = up;
        up->threaded = true;
        cr_assert_eq(uv_thread_create(&up->thread, run_thread, up), 0);
}

void fake_upstream_release(fake_upstream *up)
{
        atomic_store(&up->released, true);
        if (up->threaded)
                uv_async_send(&up->wake);
        else
                flush_held(up);
}

void fake_upstream_stop(fake_upstream *up)
{
        if (!up->threaded) {
                close_all(up);
                return;
        }
        atomic_store(&up->stop, true);
        uv_async_send(&up->wake);
        cr_assert_eq(uv_thread_join(&up->thread), 0);
        cr_assert_eq(uv_loop_close(&up->own_loop), 0, "fake upstream: handles left open");
        cr_assert_eq(atomic_load(&up->errors), 0, "fake upstream: %d failures on its thread",
                     atomic_load(&up->errors));
}

unsigned fake_upstream_port(const fake_upstream *up)
{
        const struct sockaddr *sa = (const struct sockaddr *)&up->addr.ss;
        return sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                        : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}
