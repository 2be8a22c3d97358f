/* forward.c — the forwarder: client queries that local data does not answer go upstream
 * through c-ares 1.18 driven by a libuv loop, and each upstream answer is turned into the
 * client's response (vd_forward_relay). Owns the c-ares channel, one uv_poll_t per c-ares
 * socket, one uv_timer_t for c-ares timeouts and one budget uv_timer_t per query.
 * It does not cache, route by name or track upstream health, and never parses by hand what
 * wire.h can read: every upstream byte goes through vd_wire_read_name / vd_wire_skip_rr.
 *
 * Lifetime of a query (struct fwd_query): it is answered once (done() called) by whichever
 * comes first — the c-ares callback, its budget timer, or vd_forwarder_close — and freed once
 * both the c-ares callback has run (c-ares fires it exactly once per ares_send) and its timer
 * handle has been closed. */
#include <ares.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <netinet/in.h>

#include "vpcdns/forward.h"

#define DEFAULT_BUDGET_MS 2000u
#define ARES_TRIES 3 /* per server; c-ares doubles the per-try timeout every round */
#define OPT_RR_LEN 11
#define QUERY_MAX (VD_HEADER_LEN + VD_NAME_MAX + 4 + OPT_RR_LEN)
#define QUERY_FREELIST_MAX 64

struct fwd_query {
        struct fwd_query *prev, *next; /* f->queries: every query not yet freed */
        vd_forwarder *f;
        uv_timer_t budget; /* data = this query */
        vd_reply_fn done;
        void *arg;
        size_t max_len;
        uint16_t upstream_id;
        bool sending;      /* inside ares_send(): a callback now is a synchronous failure */
        bool answered;     /* done() has run (or will never run) */
        bool ares_done;    /* the c-ares callback has run */
        bool timer_closed; /* the budget timer's close callback has run */
        int sync_status;   /* c-ares status of a synchronous callback */
        vd_query_info qi;  /* qi.qname points at qname below */
        uint8_t qname[VD_NAME_MAX];
};

struct sock_watch {
        struct sock_watch *next;
        vd_forwarder *f;
        ares_socket_t fd;
        uv_poll_t poll; /* data = this watch */
};

struct vd_forwarder {
        uv_loop_t *loop;
        ares_channel channel;
        bool channel_live;
        size_t n_servers;
        unsigned budget_ms;
        void (*on_answer)(void *arg, const vd_query_info *qi, const uint8_t *answer, size_t len);
        void *on_answer_arg;
        uv_timer_t ares_timer; /* data = forwarder */
        struct sock_watch *watches;
        struct fwd_query *queries;
        struct fwd_query *freelist;
        size_t n_free;
        unsigned open_handles; /* handles initialised and not yet through their close cb */
        int depth;             /* > 0 while inside a c-ares call that may run callbacks */
        bool closing;
        bool destroy_deferred; /* vd_forwarder_close ran inside a c-ares callback */
        uint16_t last_id;
        size_t rand_pos;
        uint8_t rand_buf[128];
        uint64_t ids_in_flight[65536 / 64];
        uint8_t out[VD_TCP_MAX]; /* response scratch, valid during one done() call */
};

static void finish_close(vd_forwarder *f);
static void on_ares_timer(uv_timer_t *t);

/* ---- randomness ---------------------------------------------------------------------- */

static int fill_random(uint8_t *buf, size_t len)
{
        size_t got = 0;
        while (got < len) {
                ssize_t n = getrandom(buf + got, len - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t)n;
        }
        return 0;
}

static int random_u16(vd_forwarder *f, uint16_t *out)
{
        if (f->rand_pos + 2 > sizeof(f->rand_buf)) {
                int rc = fill_random(f->rand_buf, sizeof(f->rand_buf));
                if (rc < 0)
                        return rc;
                f->rand_pos = 0;
        }
        *out = vd_wire_get16(f->rand_buf + f->rand_pos);
        f->rand_pos += 2;
        return 0;
}

static bool id_in_flight(const vd_forwarder *f, uint16_t id)
{
        return (f->ids_in_flight[id >> 6] >> (id & 63)) & 1u;
}

static void id_mark(vd_forwarder *f, uint16_t id, bool on)
{
        uint64_t bit = (uint64_t)1 << (id & 63);
        if (on)
                f->ids_in_flight[id >> 6] |= bit;
        else
                f->ids_in_flight[id >> 6] &= ~bit;
}

/* A fresh ID from the CSPRNG that differs from the client's, from the previous one and from
 * every ID c-ares still has in flight (c-ares matches answers to queries by ID). */
static int new_query_id(vd_forwarder *f, uint16_t client_id, uint16_t *out)
{
        for (int attempt = 0; attempt < 64; attempt++) {
                uint16_t id;
                int rc = random_u16(f, &id);
                if (rc < 0)
                        return rc;
                if (id == client_id || id == f->last_id || id_in_flight(f, id))
                        continue;
                f->last_id = id;
                *out = id;
                return 0;
        }
        return -EAGAIN; /* 64 misses: the ID space is nearly exhausted */
}

/* ---- c-ares ↔ libuv glue ------------------------------------------------------------- */

static void handle_closed(vd_forwarder *f)
{
        VD_CHECK(f->open_handles > 0);
        f->open_handles--;
        if (f->closing && !f->channel_live && f->open_handles == 0) {
                VD_CHECK(f->queries == NULL);
                while (f->freelist != NULL) {
                        struct fwd_query *q = f->freelist;
                        f->freelist = q->next;
                        free(q);
                }
                free(f);
        }
}

static void ares_timer_closed(uv_handle_t *h)
{
        handle_closed(h->data);
}

static void watch_closed(uv_handle_t *h)
{
        struct sock_watch *w = h->data;
        vd_forwarder *f = w->f;
        free(w);
        handle_closed(f);
}

/* Re-arms the c-ares timer from ares_timeout(); stops it when nothing is pending. */
static void arm_ares_timer(vd_forwarder *f)
{
        struct timeval tv;
        if (!f->channel_live || uv_is_closing((uv_handle_t *)&f->ares_timer))
                return;
        if (ares_timeout(f->channel, NULL, &tv) == NULL) {
                uv_timer_stop(&f->ares_timer);
                return;
        }
        /* Round up and add 1 ms so the timer never fires just before c-ares's deadline. */
        uint64_t ms = (uint64_t)tv.tv_sec * 1000u + ((uint64_t)tv.tv_usec + 999u) / 1000u + 1u;
        uv_timer_start(&f->ares_timer, on_ares_timer, ms, 0);
}

static void after_ares_call(vd_forwarder *f)
{
        f->depth--;
        if (f->depth > 0)
                return;
        if (f->destroy_deferred) {
                f->destroy_deferred = false;
                finish_close(f);
                return;
        }
        arm_ares_timer(f);
}

static void on_ares_timer(uv_timer_t *t)
{
        vd_forwarder *f = t->data;
        if (!f->channel_live)
                return;
        f->depth++;
        ares_process_fd(f->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        after_ares_call(f);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        struct sock_watch *w = p->data;
        vd_forwarder *f = w->f;
        ares_socket_t fd = w->fd;
        if (!f->channel_live)
                return;
        ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
        /* On a poll error let c-ares read/write the socket and discover the error itself. */
        if (status < 0 || (events & UV_READABLE))
                rfd = fd;
        if (status < 0 || (events & UV_WRITABLE))
                wfd = fd;
        f->depth++;
        ares_process_fd(f->channel, rfd, wfd); /* may close this watch: do not touch w after */
        after_ares_call(f);
}

static void close_watch(struct sock_watch *w)
{
        uv_poll_stop(&w->poll);
        uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
        vd_forwarder *f = data;
        struct sock_watch **link = &f->watches;
        while (*link != NULL && (*link)->fd != fd)
                link = &(*link)->next;
        struct sock_watch *w = *link;

        if (!readable && !writable) {
                if (w != NULL) {
                        *link = w->next;
                        close_watch(w);
                }
                return;
        }
        if (w == NULL) {
                w = calloc(1, sizeof(*w));
                if (w == NULL)
                        return; /* unwatched: the query ends by timeout */
                w->f = f;
                w->fd = fd;
                if (uv_poll_init_socket(f->loop, &w->poll, fd) != 0) {
                        free(w);
                        return;
                }
                w->poll.data = w;
                f->open_handles++;
                w->next = f->watches;
                f->watches = w;
        }
        int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
        uv_poll_start(&w->poll, events, on_poll);
}

/* ---- queries ------------------------------------------------------------------------- */

static void query_release(struct fwd_query *q)
{
        vd_forwarder *f = q->f;
        if (q->prev != NULL)
                q->prev->next = q->next;
        else
                f->queries = q->next;
        if (q->next != NULL)
                q->next->prev = q->prev;
        if (f->n_free < QUERY_FREELIST_MAX && !f->closing) {
                q->next = f->freelist;
                f->freelist = q;
                f->n_free++;
        } else {
                free(q);
        }
}

static void budget_closed(uv_handle_t *h)
{
        struct fwd_query *q = h->data;
        vd_forwarder *f = q->f;
        q->timer_closed = true;
        if (q->ares_done)
                query_release(q);
        handle_closed(f);
}

static void close_budget(struct fwd_query *q)
{
        if (!uv_is_closing((uv_handle_t *)&q->budget))
                uv_close((uv_handle_t *)&q->budget, budget_closed);
}

static void answer_servfail(struct fwd_query *q)
{
        vd_forwarder *f = q->f;
        size_t cap = q->max_len < sizeof(f->out) ? q->max_len : sizeof(f->out);
        size_t n = vd_wire_error_response(&q->qi, VD_RCODE_SERVFAIL, f->out, cap);
        q->done(q->arg, f->out, n);
}

static void on_budget(uv_timer_t *t)
{
        struct fwd_query *q = t->data;
        if (!q->answered) {
                q->answered = true; /* abandoned: the c-ares callback will only free it */
                answer_servfail(q);
        }
        close_budget(q);
}

static void on_ares_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
        struct fwd_query *q = arg;
        vd_forwarder *f = q->f;
        (void)timeouts;
        q->ares_done = true;
        id_mark(f, q->upstream_id, false);
        if (q->sending) {
                q->sync_status = status;
                return;
        }
        /* The relay also checks that the answer answers the question: only then is it
         * offered to the cache, late answers included. */
        size_t n = 0;
        if (status == ARES_SUCCESS && abuf != NULL && alen > 0)
                n = vd_forward_relay(&q->qi, abuf, (size_t)alen, q->max_len, f->out,
                                     sizeof(f->out));
        if (n > 0 && f->on_answer != NULL)
                f->on_answer(f->on_answer_arg, &q->qi, abuf, (size_t)alen);
        if (!q->answered) {
                q->answered = true;
                if (n > 0)
                        q->done(q->arg, f->out, n);
                else if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION)
                        q->done(q->arg, NULL, 0);
                else
                        answer_servfail(q);
                close_budget(q);
        }
        if (q->timer_closed)
                query_release(q);
}

/* Upstream query: fresh ID, RD, the client's CD (RFC 4035 §3.2.2: a client that validates
 * itself asks for unvalidated data), the client's question as sent, our OPT with its DO. */
static size_t build_upstream_query(const struct fwd_query *q, uint8_t *buf)
{
        const vd_query_info *qi = &q->qi;
        size_t n = 0;
        vd_wire_put16(buf, q->upstream_id);
        vd_wire_put16(buf + 2, (uint16_t)(VD_FLAG_RD | (qi->flags & VD_FLAG_CD)));
        vd_wire_put16(buf + 4, 1);
        vd_wire_put16(buf + 6, 0);
        vd_wire_put16(buf + 8, 0);
        vd_wire_put16(buf + 10, 1);
        n = VD_HEADER_LEN;
        memcpy(buf + n, qi->qname, qi->qname_len);
        n += qi->qname_len;
        vd_wire_put16(buf + n, qi->qtype);
        vd_wire_put16(buf + n + 2, qi->qclass);
        n += 4;
        buf[n] = 0; /* root owner */
        vd_wire_put16(buf + n + 1, VD_TYPE_OPT);
        vd_wire_put16(buf + n + 3, VD_UDP_PAYLOAD);
        vd_wire_put32(buf + n + 5, qi->edns_do ? VD_EDNS_DO : 0u); /* ext rcode 0, version 0 */
        vd_wire_put16(buf + n + 9, 0);
        return n + OPT_RR_LEN;
}

static int ares_to_errno(int status)
{
        switch (status) {
        case ARES_ENOMEM:
                return -ENOMEM;
        case ARES_ESERVFAIL:
                return -ENOENT;
        default:
                return -EIO;
        }
}

int vd_forwarder_query(vd_forwarder *f, const vd_query_info *qi, size_t max_len, vd_reply_fn done,
                       void *arg)
{
        if (f == NULL || qi == NULL || done == NULL)
                return -EINVAL;
        if (f->closing)
                return -ESHUTDOWN;
        if (f->n_servers == 0)
                return -ENOENT;
        if (!qi->question_ok || qi->qname == NULL || qi->qname_len == 0)
                return -EINVAL;

        struct fwd_query *q = f->freelist;
        if (q != NULL) {
                f->freelist = q->next;
                f->n_free--;
        } else {
                q = malloc(sizeof(*q));
                if (q == NULL)
                        return -ENOMEM;
        }
        memset(q, 0, offsetof(struct fwd_query, qi));
        q->f = f;
        q->done = done;
        q->arg = arg;
        q->max_len = max_len;
        q->qi = *qi;
        memcpy(q->qname, qi->qname, qi->qname_len);
        q->qi.qname = q->qname;

        int rc = new_query_id(f, qi->id, &q->upstream_id);
        if (rc < 0) {
                free(q);
                return rc;
        }
        uint8_t pkt[QUERY_MAX];
        size_t len = build_upstream_query(q, pkt);

        /* From here on the query is on the list and owns a timer handle. */
        q->next = f->queries;
        if (f->queries != NULL)
                f->queries->prev = q;
        f->queries = q;
        uv_timer_init(f->loop, &q->budget);
        q->budget.data = q;
        f->open_handles++;
        uv_timer_start(&q->budget, on_budget, f->budget_ms, 0);

        id_mark(f, q->upstream_id, true);
        q->sending = true;
        f->depth++;
        ares_send(f->channel, pkt, (int)len, on_ares_answer, q);
        q->sending = false;
        if (q->ares_done) {
                /* c-ares failed synchronously: the caller answers, done() never runs. */
                rc = ares_to_errno(q->sync_status);
                q->answered = true;
                close_budget(q);
        }
        after_ares_call(f);
        return rc;
}

/* ---- lifetime ------------------------------------------------------------------------ */

static int ares_library_status = ARES_ENOTINITIALIZED;

/* Once per process, never cleaned up: ares_library_init is not thread-safe in 1.18. */
static void init_ares_library(void)
{
        ares_library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

int vd_forwarder_new(uv_loop_t *loop, const vd_forward_options *opt, vd_forwarder **out,
                     vd_error *err)
{
        static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
        struct ares_addr_port_node *nodes = NULL;
        vd_forwarder *f = NULL;
        int rc = 0;

        *out = NULL;
        if (loop == NULL || opt == NULL || (opt->n_servers > 0 && opt->servers == NULL))
                return vd_error_set(err, "forwarder: invalid options");

        pthread_once(&ares_once, init_ares_library);
        if (ares_library_status != ARES_SUCCESS)
                return vd_error_set(err, "forwarder: c-ares library init: %s",
                                    ares_strerror(ares_library_status));

        f = calloc(1, sizeof(*f));
        nodes = opt->n_servers ? calloc(opt->n_servers, sizeof(*nodes)) : NULL;
        if (f == NULL || (opt->n_servers > 0 && nodes == NULL)) {
                vd_error_set(err, "forwarder: out of memory");
                rc = -ENOMEM;
                goto out;
        }
        f->loop = loop;
        f->n_servers = opt->n_servers;
        f->budget_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_BUDGET_MS;
        f->on_answer = opt->on_answer;
        f->on_answer_arg = opt->on_answer_arg;
        f->rand_pos = sizeof(f->rand_buf); /* empty: the first ID refills it */

        for (size_t i = 0; i < opt->n_servers; i++) {
                const struct sockaddr_storage *ss = &opt->servers[i].ss;
                struct ares_addr_port_node *n = &nodes[i];
                unsigned port;
                if (ss->ss_family == AF_INET) {
                        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
                        n->family = AF_INET;
                        memcpy(&n->addr.addr4, &sin->sin_addr, sizeof(n->addr.addr4));
                        port = ntohs(sin->sin_port);
                } else if (ss->ss_family == AF_INET6) {
                        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
                        n->family = AF_INET6;
                        memcpy(&n->addr.addr6, &sin6->sin6_addr, sizeof(n->addr.addr6));
                        port = ntohs(sin6->sin6_port);
                } else {
                        rc = vd_error_set(err, "forwarder: upstream %zu: not IPv4 or IPv6", i);
                        goto out;
                }
                n->udp_port = n->tcp_port = port ? (int)port : 53;
                n->next = i + 1 < opt->n_servers ? &nodes[i + 1] : NULL;
        }

        struct ares_options ao;
        memset(&ao, 0, sizeof(ao));
        /* NOCHECKRESP: SERVFAIL/REFUSED reach the client. TC answers are retried over TCP by
         * c-ares (no IGNTC). ARES_FLAG_EDNS is not used: we send our own OPT. */
        ao.flags = ARES_FLAG_NOCHECKRESP;
        ao.timeout = (int)(f->budget_ms / 3 ? f->budget_ms / 3 : 1);
        ao.tries = ARES_TRIES;
        ao.nservers = 0; /* no servers from /etc/resolv.conf: ours are set below */
        ao.sock_state_cb = on_sock_state;
        ao.sock_state_cb_data = f;
        int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SERVERS |
                   ARES_OPT_SOCK_STATE_CB | ARES_OPT_ROTATE;
        int ares_rc = ares_init_options(&f->channel, &ao, mask);
        if (ares_rc != ARES_SUCCESS) {
                vd_error_set(err, "forwarder: c-ares init: %s", ares_strerror(ares_rc));
                rc = ares_rc == ARES_ENOMEM ? -ENOMEM : -EIO;
                goto out;
        }
        f->channel_live = true;
        if (nodes != NULL) {
                ares_rc = ares_set_servers_ports(f->channel, nodes);
                if (ares_rc != ARES_SUCCESS) {
                        vd_error_set(err, "forwarder: c-ares servers: %s", ares_strerror(ares_rc));
                        rc = ares_rc == ARES_ENOMEM ? -ENOMEM : -EIO;
                        goto out;
                }
        }
        uv_timer_init(loop, &f->ares_timer);
        f->ares_timer.data = f;
        f->open_handles++;
        *out = f;
        f = NULL;
out:
        if (f != NULL) {
                if (f->channel_live)
                        ares_destroy(f->channel);
                free(f);
        }
        free(nodes);
        return rc;
}

/* Destroys the channel (outside any c-ares call) and closes the remaining handles. */
static void finish_close(vd_forwarder *f)
{
        if (f->channel_live) {
                f->depth++;
                ares_destroy(f->channel); /* queries: EDESTRUCTION; sockets: state cb (0,0) */
                f->depth--;
                f->channel_live = false;
        }
        while (f->watches != NULL) {
                struct sock_watch *w = f->watches;
                f->watches = w->next;
                close_watch(w);
        }
        for (struct fwd_query *q = f->queries; q != NULL; q = q->next)
                close_budget(q);
        if (!uv_is_closing((uv_handle_t *)&f->ares_timer))
                uv_close((uv_handle_t *)&f->ares_timer, ares_timer_closed);
}

void vd_forwarder_close(vd_forwarder *f)
{
        if (f == NULL || f->closing)
                return;
        f->closing = true;
        /* Every query still waiting gets its one callback with len 0. */
        for (struct fwd_query *q = f->queries; q != NULL; q = q->next) {
                if (q->answered)
                        continue;
                q->answered = true;
                q->done(q->arg, NULL, 0);
        }
        if (f->depth > 0)
                f->destroy_deferred = true; /* inside ares_process_fd: destroy on return */
        else
                finish_close(f);
}

/* ---- relay: upstream answer → client response ---------------------------------------- */

/* Header + client's question + our OPT, TC set, no records: "retry over TCP". */
static size_t relay_truncated(const vd_query_info *qi, uint16_t flags, uint8_t rcode, uint8_t *out,
                              size_t limit)
{
        size_t len = VD_HEADER_LEN + (size_t)qi->qname_len + 4;
        if (limit < len)
                return 0;
        vd_wire_put16(out, qi->id);
        vd_wire_put16(out + 2, (uint16_t)(flags | VD_FLAG_TC));
        vd_wire_put16(out + 4, 1);
        memset(out + 6, 0, 6);
        memcpy(out + VD_HEADER_LEN, qi->qname, qi->qname_len);
        vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len, qi->qtype);
        vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len + 2, qi->qclass);
        return vd_wire_add_opt(qi, rcode, out, len, limit);
}

/* Types whose rdata may carry compressed names (RFC 3597 §4 and the well-known later ones). */
static bool rdata_may_compress(uint16_t type)
{
        switch (type) {
        case 2:  /* NS */
        case 3:  /* MD */
        case 4:  /* MF */
        case 5:  /* CNAME */
        case 6:  /* SOA */
        case 7:  /* MB */
        case 8:  /* MG */
        case 9:  /* MR */
        case 12: /* PTR */
        case 14: /* MINFO */
        case 15: /* MX */
        case 17: /* RP */
        case 18: /* AFSDB */
        case 21: /* RT */
        case 26: /* PX */
        case 33: /* SRV */
        case 35: /* NAPTR */
        case 36: /* KX */
        case 39: /* DNAME */
                return true;
        default:
                return false;
        }
}

/* Reads n names of a record's rdata starting skip octets in (each through the bounded reader,
 * so a relayed pointer always leads to a valid name); the inline part must stay inside the
 * rdata. Returns false when one is malformed. */
static bool rdata_names_ok(const uint8_t *msg, size_t fixed, uint16_t type)
{
        uint8_t scratch[VD_NAME_MAX];
        size_t scratch_len;
        size_t rdata = fixed + 10;
        size_t end = rdata + vd_wire_get16(msg + fixed + 8);
        size_t skip = 0, names = 1;

        switch (type) {
        case 6:  /* SOA */
        case 14: /* MINFO */
        case 17: /* RP */
                names = 2;
                break;
        case 15: /* MX */
        case 18: /* AFSDB */
        case 21: /* RT */
        case 36: /* KX */
                skip = 2;
                break;
        case 26: /* PX */
                skip = 2;
                names = 2;
                break;
        case 33: /* SRV */
                skip = 6;
                break;
        case 35: /* NAPTR: order, preference, then flags, services and regexp strings */
                skip = 4;
                for (int k = 0; k < 3; k++) {
                        if (rdata + skip >= end)
                                return false;
                        skip += 1 + (size_t)msg[rdata + skip];
                }
                break;
        default:
                break;
        }
        size_t p = rdata + skip;
        for (size_t k = 0; k < names; k++) {
                if (p >= end || vd_wire_read_name(msg, end, &p, scratch, &scratch_len, false) != 0)
                        return false;
        }
        return p <= end;
}

/* Records a relay drops: they sign or extend the upstream's own message (RFC 8945 §5.1,
 * RFC 2931), and ours is a different message. */
static bool relay_drops(uint16_t type)
{
        return type == 250 /* TSIG */ || type == 24 /* SIG(0) */;
}

size_t vd_forward_relay(const vd_query_info *qi, const uint8_t *answer, size_t answer_len,
                        size_t max_len, uint8_t *out, size_t cap)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len;

        if (qi == NULL || !qi->question_ok || answer == NULL || out == NULL ||
            answer_len < VD_HEADER_LEN)
                return 0;
        uint16_t up_flags = vd_wire_get16(answer + 2);
        if (!(up_flags & VD_FLAG_QR) || VD_OPCODE(up_flags) != 0 || vd_wire_get16(answer + 4) != 1)
                return 0;

        /* The question must be the client's, uncompressed, so that compression pointers in the
         * records keep pointing at the same octets once the client's spelling replaces it. */
        size_t pos = VD_HEADER_LEN;
        if (vd_wire_read_name(answer, answer_len, &pos, name, &name_len, true) != 0 ||
            name_len != qi->qname_len || pos != VD_HEADER_LEN + name_len ||
            memcmp(name, qi->qname_lower, name_len) != 0 || pos + 4 > answer_len ||
            vd_wire_get16(answer + pos) != qi->qtype ||
            vd_wire_get16(answer + pos + 2) != qi->qclass)
                return 0;
        pos += 4;

        size_t limit = max_len < cap ? max_len : cap;
        size_t len = pos; /* header and question are written last */
        bool fits = len <= limit;
        uint16_t an = vd_wire_get16(answer + 6);
        uint16_t ns = vd_wire_get16(answer + 8);
        uint16_t ar = vd_wire_get16(answer + 10);
        size_t total = (size_t)an + ns + ar;
        bool seen_opt = false;
        size_t removed = 0; /* records not relayed: offsets after the first one shift */
        unsigned ext_rcode = 0;

        for (size_t i = 0; i < total; i++) {
                size_t start = pos, fixed;
                uint16_t type;
                if (vd_wire_skip_rr(answer, answer_len, &pos, &type, &fixed) != 0)
                        return 0;
                if (type == VD_TYPE_OPT) {
                        /* RFC 6891: one OPT, in the additional section, owned by the root. */
                        if (i < (size_t)an + ns || seen_opt || fixed != start + 1)
                                return 0;
                        seen_opt = true;
                        removed++;
                        ext_rcode = answer[fixed + 4];
                        continue;
                }
                if (i >= (size_t)an + ns && relay_drops(type)) {
                        removed++;
                        continue;
                }
                if (rdata_may_compress(type) && !rdata_names_ok(answer, fixed, type))
                        return 0;
                if (!fits)
                        continue;          /* keep validating the rest */
                size_t rest = pos - fixed; /* fixed part and rdata */
                if (removed == 0) {
                        if (len + (pos - start) > limit) {
                                fits = false;
                                continue;
                        }
                        memcpy(out + len, answer + start, pos - start);
                        len += pos - start;
                        continue;
                }
                /* After a removed record offsets shift: write the owner uncompressed, as spelt.
                 * Rdata is copied as is, so a record whose rdata may hold compressed names
                 * cannot follow it safely: such an answer is refused (SERVFAIL). */
                if (rdata_may_compress(type))
                        return 0;
                size_t owner_pos = start;
                if (vd_wire_read_name(answer, answer_len, &owner_pos, name, &name_len, false) != 0)
                        return 0;
                if (len + name_len + rest > limit) {
                        fits = false;
                        continue;
                }
                memcpy(out + len, name, name_len);
                memcpy(out + len + name_len, answer + fixed, rest);
                len += name_len + rest;
        }

        unsigned rcode = (ext_rcode << 4) | (up_flags & 0x0Fu);
        if (rcode > 0xFFu || (ext_rcode != 0 && !qi->has_edns))
                return 0; /* not expressible to this client */
        /* AA off (we are a recursive service), RD and CD as the client sent them, AD only
         * for a client that asked for it with DO or AD (RFC 6840 §5.8). */
        bool wants_ad = qi->edns_do || (qi->flags & VD_FLAG_AD);
        uint16_t flags =
            (uint16_t)((up_flags & ~(VD_FLAG_AA | VD_FLAG_AD | VD_FLAG_RD | VD_FLAG_CD | 0x0Fu)) |
                       (wants_ad ? (up_flags & VD_FLAG_AD) : 0) |
                       (qi->flags & (VD_FLAG_RD | VD_FLAG_CD)) | VD_FLAG_RA | (rcode & 0x0Fu));
        if (!fits)
                return relay_truncated(qi, flags, (uint8_t)rcode, out, limit);

        vd_wire_put16(out, qi->id);
        vd_wire_put16(out + 2, flags);
        vd_wire_put16(out + 4, 1);
        vd_wire_put16(out + 6, an);
        vd_wire_put16(out + 8, ns);
        vd_wire_put16(out + 10, (uint16_t)(ar - removed));
        memcpy(out + VD_HEADER_LEN, qi->qname, qi->qname_len);
        vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len, qi->qtype);
        vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len + 2, qi->qclass);
        size_t with_opt = vd_wire_add_opt(qi, (uint8_t)rcode, out, len, limit);
        if (with_opt == 0)
                return relay_truncated(qi, flags, (uint8_t)rcode, out, limit);
        return with_opt;
}
