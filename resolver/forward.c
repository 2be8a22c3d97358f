/* forward.c — the forwarder: queries that local data does not answer go upstream through
 * c-ares (1.18 and later, with the same behaviour on each) driven by a libuv loop. Owns the
 * upstream side: forwarding rules (most specific domain wins), per-server health (smoothed RTT,
 * consecutive failures, dead with a doubling backoff, background probes), per-server token
 * buckets (max_qps), server choice and failover within the query's budget, source-port
 * rotation (a pool of one-server c-ares channels per server, one picked at random per send),
 * CSPRNG query IDs, DNS 0x20, and the check that an answer answers its question. Also turns an
 * upstream answer into the client's response (vd_forward_relay). It does not cache or merge
 * questions (resolve.c does), and never parses by hand what wire.h can read.
 *
 * Handles: one uv_poll_t per c-ares socket (whatever channel it belongs to), one uv_timer_t
 * for every channel's c-ares timeouts (armed from the earliest ares_timeout of the channels
 * with sends in flight), and one uv_timer_t per query (next per-try deadline or the budget).
 *
 * Lifetime of a query (struct fwd_query): it is completed once (its callback run) by whichever
 * comes first — a usable answer, its budget, running out of servers, or vd_forwarder_close —
 * and freed once every send (struct attempt: one query handed to c-ares, whose callback c-ares
 * fires exactly once) has ended and its timer handle has been closed. Sends may outlive the
 * completion: a late answer still feeds server health and the on_answer hook. */
#include <ares.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>

#include "vpcdns/forward.h"

#define DEFAULT_BUDGET_MS 2000u
#define DEFAULT_PORTS 16u
#define MAX_PORTS 256u
#define OPT_RR_LEN 11
#define QUERY_MAX (VD_HEADER_LEN + VD_NAME_MAX + 4 + OPT_RR_LEN)
#define QUERY_FREELIST_MAX 64
#define MAX_ATTEMPTS 12       /* sends per query: tries, failovers and probes */
#define DEAD_AFTER_FAILS 3u   /* consecutive failures (errors or per-try timeouts) */
#define BACKOFF_MIN_MS 1000u  /* a dead server is probed after this, doubling */
#define BACKOFF_MAX_MS 60000u /* up to this */
#define TRY_MIN_MS 200u       /* per-try timeout: max(3 × smoothed RTT, this) */
#define TRY_MAX_MS 1000u      /* capped here (and by the budget) */
#define UNKNOWN_RTT_US 0u     /* unmeasured servers go first: every server gets measured */
#define TOKEN 1000u           /* token buckets count milli-tokens */
#define CLOSE_US 5000u        /* servers within 1.5 × best RTT + this are chosen at random */
#define EXPLORE_ONE_IN 64u    /* one first send in this many ignores RTTs (alive servers only) */

struct fwd_query;

struct attempt;

/* One c-ares channel with one server: its own UDP socket, so its own source port. */
struct channel {
        vd_forwarder *f;
        struct server *srv;
        ares_channel ch;
        bool live;
        unsigned inflight;     /* sends on this channel whose callback has not run */
        struct attempt *sends; /* those sends, linked through chan_prev/chan_next */
        bool capturing;        /* inside our ares_send: note the ID that goes out */
        bool captured;
        uint16_t captured_id;
};

struct server {
        vd_addr addr;
        struct channel *chans;
        unsigned n_chans;
        uint32_t srtt_us;
        bool rtt_known;
        unsigned fails; /* consecutive */
        bool dead;
        bool probing; /* a probe is in flight */
        uint64_t probe_at_ms;
        unsigned backoff_ms;
        uint64_t tokens; /* milli-tokens */
        uint64_t bucket_ms;
};

/* Servers of a rule or of the default upstreams: indexes into f->servers. */
struct server_list {
        uint16_t idx[VD_MAX_UPSTREAM];
        size_t n;
};

struct rule {
        uint8_t domain[VD_NAME_MAX];
        size_t domain_len;
        bool use_default;
        struct server_list list;
};

/* One ares_send. */
struct attempt {
        struct fwd_query *q;
        struct channel *chan;
        size_t pos;                            /* index in q->list */
        struct attempt *chan_prev, *chan_next; /* chan->sends, while pending */
        uint64_t sent_ns;
        uint16_t id;   /* the ID on the wire, once id_known */
        bool id_known; /* answers are matched only once the ID is known */
        bool pending;  /* the c-ares callback has not run */
        bool sending;  /* inside ares_send: a callback now is a synchronous failure */
        bool sync_failed;
        int sync_status;
        bool is_probe;        /* sent to a dead server to see whether it is back */
        bool timeout_counted; /* its per-try deadline passed */
};

struct fwd_query {
        struct fwd_query *prev, *next; /* f->queries: every query not yet freed */
        vd_forwarder *f;
        uv_timer_t timer;   /* data = this query */
        vd_reply_fn reply;  /* vd_forwarder_query */
        vd_upstream_fn raw; /* vd_forwarder_resolve */
        void *arg;
        size_t max_len;
        const struct server_list *list;
        uint64_t deadline_ms; /* the budget */
        uint64_t try_deadline_ms;
        int cur; /* the send the per-try deadline watches, -1 none */
        unsigned n_att, pending;
        bool answered;     /* the callback has run (or never will) */
        bool timer_closed; /* the timer's close callback has run */
        uint8_t tries[VD_MAX_UPSTREAM];
        struct attempt att[MAX_ATTEMPTS];
        vd_query_info qi; /* qi.qname points at qname below */
        uint8_t qname[VD_NAME_MAX];
        uint8_t sent[VD_NAME_MAX]; /* the name as sent upstream (0x20 case) */
};

struct sock_watch {
        struct sock_watch *next;
        struct channel *chan;
        ares_socket_t fd;
        int events;     /* what c-ares last asked for */
        uv_poll_t poll; /* data = this watch */
};

struct vd_forwarder {
        uv_loop_t *loop;
        struct server *servers;
        size_t n_servers;
        struct server_list defaults;
        struct rule *rules;
        size_t n_rules;
        unsigned budget_ms;
        unsigned max_qps;
        uint64_t burst; /* milli-tokens */
        bool use_0x20;
        bool channels_live;
        void (*on_answer)(void *arg, const vd_query_info *qi, const uint8_t *answer, size_t len);
        void *on_answer_arg;
        uv_timer_t ares_timer; /* data = forwarder */
        struct sock_watch *watches;
        struct fwd_query *queries;
        struct fwd_query *freelist;
        size_t n_free;
        unsigned open_handles; /* handles initialised and not yet through their close cb */
        int depth;             /* > 0 while inside a call that may run c-ares callbacks */
        bool closing;
        bool destroy_deferred; /* vd_forwarder_close ran inside a c-ares callback */
        vd_forward_counters counters;
        uint16_t last_id;
        size_t rand_pos;
        uint8_t rand_buf[256];
        uint8_t answer[VD_TCP_MAX]; /* upstream answer with the client's question case */
        uint8_t out[VD_TCP_MAX];    /* response scratch, valid during one done() call */
};

static void finish_close(vd_forwarder *f);
static void on_ares_timer(uv_timer_t *t);
static void on_query_timer(uv_timer_t *t);

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

/* n ≤ sizeof(rand_buf) octets from the CSPRNG, through a small pool. */
static int random_bytes(vd_forwarder *f, uint8_t *out, size_t n)
{
        VD_CHECK(n <= sizeof(f->rand_buf));
        if (f->rand_pos + n > sizeof(f->rand_buf)) {
                int rc = fill_random(f->rand_buf, sizeof(f->rand_buf));
                if (rc < 0)
                        return rc;
                f->rand_pos = 0;
        }
        memcpy(out, f->rand_buf + f->rand_pos, n);
        f->rand_pos += n;
        return 0;
}

static int random_u16(vd_forwarder *f, uint16_t *out)
{
        uint8_t b[2];
        int rc = random_bytes(f, b, 2);
        if (rc == 0)
                *out = vd_wire_get16(b);
        return rc;
}

/* ---- sockets ------------------------------------------------------------------------- */

/* c-ares reads and writes through these so that every UDP datagram is checked before c-ares
 * sees it, the same way on every c-ares version: it must come from the server's address and
 * port, carry the ID of a send still waiting on this channel and answer that send's question
 * (the exact spelling under 0x20). Anything else is counted as a mismatch and dropped, so a
 * spoofed or garbled datagram can neither end a send nor make c-ares close the socket (1.22+
 * do on a datagram they cannot parse). c-ares connects its UDP sockets, so the kernel already
 * discards datagrams from other ports; the check stays for what gets through. TCP (after a TC
 * answer) is a stream and passes unchecked: c-ares matches ID and question there, and the
 * answer is checked again when its send ends. */
#define MAX_DROPS_PER_READ 64

static bool answer_matches(const struct fwd_query *q, const uint8_t *a, size_t len);

/* The send waiting on c with this ID on the wire, or NULL. */
static struct attempt *find_send(const struct channel *c, uint16_t id)
{
        for (struct attempt *a = c->sends; a != NULL; a = a->chan_next)
                if (a->id_known && a->id == id)
                        return a;
        return NULL;
}

static bool datagram_answers(const struct channel *c, const uint8_t *d, size_t len,
                             const struct sockaddr *from, ares_socklen_t from_len)
{
        vd_addr source;
        if (len < VD_HEADER_LEN || from_len == 0)
                return false;
        memset(&source, 0, sizeof(source));
        source.len = from_len <= sizeof(source.ss) ? from_len : sizeof(source.ss);
        memcpy(&source.ss, from, source.len);
        if (!vd_addr_equal(&source, &c->srv->addr))
                return false;
        const struct attempt *a = find_send(c, vd_wire_get16(d));
        return a != NULL && answer_matches(a->q, d, len);
}

static ares_socket_t sock_open(int af, int type, int protocol, void *data)
{
        (void)data;
        return socket(af, type | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
}

static int sock_close(ares_socket_t fd, void *data)
{
        (void)data;
        return close(fd);
}

/* The ID of the query c-ares writes while our ares_send runs (c-ares 1.22 to 1.27 replace
 * ours and do not say which they chose). */
static void note_sent_id(struct channel *c, const void *buf, size_t len)
{
        if (c->capturing && !c->captured && len >= 2) {
                c->captured = true;
                c->captured_id = vd_wire_get16(buf);
        }
}

static ares_ssize_t sock_recvfrom(ares_socket_t fd, void *buf, size_t len, int flags,
                                  struct sockaddr *from, ares_socklen_t *from_len, void *data)
{
        struct channel *c = data;
        if (from == NULL || from_len == NULL) /* TCP */
                return recvfrom(fd, buf, len, flags, from, from_len);
        ares_socklen_t room = *from_len;
        for (unsigned dropped = 0; dropped < MAX_DROPS_PER_READ; dropped++) {
                *from_len = room;
                ares_ssize_t n = recvfrom(fd, buf, len, flags, from, from_len);
                if (n < 0)
                        return n;
                if (datagram_answers(c, buf, (size_t)n, from, *from_len))
                        return n;
                c->f->counters.mismatches++;
        }
        errno = EAGAIN; /* the rest on the next readable event */
        return -1;
}

#if ARES_VERSION >= 0x012200 /* 1.34: ares_set_socket_functions_ex */
static int sock_setsockopt(ares_socket_t fd, ares_socket_opt_t opt, const void *val,
                           ares_socklen_t len, void *data)
{
        (void)fd;
        (void)opt;
        (void)val;
        (void)len;
        (void)data;
        errno = ENOSYS; /* none is asked for: no buffer sizes, device or fast open set */
        return -1;
}

static int sock_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len,
                        unsigned int flags, void *data)
{
        (void)flags;
        (void)data;
        return connect(fd, sa, len);
}

static ares_ssize_t sock_sendto(ares_socket_t fd, const void *buf, size_t len, int flags,
                                const struct sockaddr *sa, ares_socklen_t sa_len, void *data)
{
        note_sent_id(data, buf, len);
        return sendto(fd, buf, len, flags, sa, sa_len);
}

static int sock_getsockname(ares_socket_t fd, struct sockaddr *sa, ares_socklen_t *len, void *data)
{
        (void)data;
        return getsockname(fd, sa, len);
}

static unsigned int sock_nametoindex(const char *name, void *data)
{
        (void)data;
        return if_nametoindex(name);
}

static const char *sock_indextoname(unsigned int index, char *buf, size_t len, void *data)
{
        (void)data;
        return len >= IF_NAMESIZE ? if_indextoname(index, buf) : NULL;
}

static const struct ares_socket_functions_ex socket_functions = {
    .version = 1,
    .flags = ARES_SOCKFUNC_FLAG_NONBLOCKING,
    .asocket = sock_open,
    .aclose = sock_close,
    .asetsockopt = sock_setsockopt,
    .aconnect = sock_connect,
    .arecvfrom = sock_recvfrom,
    .asendto = sock_sendto,
    .agetsockname = sock_getsockname,
    .aif_nametoindex = sock_nametoindex,
    .aif_indextoname = sock_indextoname,
};

static int set_socket_functions(struct channel *c)
{
        return ares_set_socket_functions_ex(c->ch, &socket_functions, c);
}
#else
static int sock_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len, void *data)
{
        (void)data;
        return connect(fd, sa, len);
}

static ares_ssize_t sock_sendv(ares_socket_t fd, const struct iovec *iov, int n, void *data)
{
        if (n >= 1)
                note_sent_id(data, iov[0].iov_base, iov[0].iov_len);
        return writev(fd, iov, n);
}

static const struct ares_socket_functions socket_functions = {
    .asocket = sock_open,
    .aclose = sock_close,
    .aconnect = sock_connect,
    .arecvfrom = sock_recvfrom,
    .asendv = sock_sendv,
};

static int set_socket_functions(struct channel *c)
{
        ares_set_socket_functions(c->ch, &socket_functions, c);
        return ARES_SUCCESS;
}
#endif

/* A fresh ID from the CSPRNG that differs from the client's, from the previous one and from
 * every ID still waiting on the channel (c-ares matches answers to sends by ID). c-ares 1.22
 * and later put an ID of their own choice on the wire instead (from their CSPRNG, unique per
 * channel); the send learns it once it is sent. */
static int new_query_id(vd_forwarder *f, const struct channel *c, uint16_t client_id, uint16_t *out)
{
        for (int attempt = 0; attempt < 64; attempt++) {
                uint16_t id = 0;
                int rc = random_u16(f, &id);
                if (rc < 0)
                        return rc;
                if (id == client_id || id == f->last_id || find_send(c, id) != NULL)
                        continue;
                f->last_id = id;
                *out = id;
                return 0;
        }
        return -EAGAIN; /* 64 misses: the ID space is nearly exhausted */
}

/* DNS 0x20: every letter of the lower-cased name gets a random case. */
static int randomise_case(vd_forwarder *f, const uint8_t *lower, size_t len, uint8_t *out)
{
        uint8_t bits[VD_NAME_MAX / 8 + 1];
        size_t nbytes = len / 8 + 1;
        int rc = random_bytes(f, bits, nbytes);
        if (rc < 0)
                return rc;
        size_t p = 0;
        while (p < len && lower[p] != 0) {
                size_t l = lower[p];
                out[p] = lower[p];
                for (size_t i = p + 1; i <= p + l && i < len; i++) {
                        uint8_t c = lower[i];
                        if (c >= 'a' && c <= 'z' && ((bits[i / 8] >> (i % 8)) & 1u))
                                c = (uint8_t)(c - 'a' + 'A');
                        out[i] = c;
                }
                p += l + 1;
        }
        if (p < len)
                out[p] = 0;
        return 0;
}

/* ---- servers: health, token buckets, choice ------------------------------------------ */

static bool same_addr(const vd_addr *a, const vd_addr *b)
{
        if (a->ss.ss_family != b->ss.ss_family)
                return false;
        if (a->ss.ss_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
                const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
                return x->sin_port == y->sin_port &&
                       memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr)) == 0;
        }
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static bool has_token(vd_forwarder *f, struct server *s, uint64_t now)
{
        if (f->max_qps == 0)
                return true;
        if (now > s->bucket_ms) {
                s->tokens += (now - s->bucket_ms) * f->max_qps; /* max_qps milli-tokens per ms */
                if (s->tokens > f->burst)
                        s->tokens = f->burst;
                s->bucket_ms = now;
        }
        return s->tokens >= TOKEN;
}

static uint32_t server_score(const struct server *s)
{
        return s->rtt_known ? s->srtt_us : UNKNOWN_RTT_US;
}

static unsigned per_try_ms(const struct server *s)
{
        uint64_t ms = s->rtt_known ? (uint64_t)s->srtt_us * 3u / 1000u : 0;
        if (ms < TRY_MIN_MS)
                ms = TRY_MIN_MS;
        if (ms > TRY_MAX_MS)
                ms = TRY_MAX_MS;
        return (unsigned)ms;
}

static void mark_dead(struct server *s, uint64_t now)
{
        if (s->dead)
                return;
        s->dead = true;
        s->backoff_ms = BACKOFF_MIN_MS;
        s->probe_at_ms = now + s->backoff_ms;
}

/* The server answered (any rcode): it is alive. */
static void server_answered(struct server *s, uint64_t rtt_us)
{
        uint32_t rtt = rtt_us > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt_us;
        if (s->rtt_known)
                s->srtt_us = (uint32_t)(((uint64_t)s->srtt_us * 7u + rtt) / 8u);
        else
                s->srtt_us = rtt;
        s->rtt_known = true;
        s->fails = 0;
        s->dead = false;
        s->probing = false;
        s->backoff_ms = BACKOFF_MIN_MS;
}

/* A send to s failed (error or no answer in time). */
static void server_failed(struct server *s, bool was_probe, uint64_t now)
{
        if (was_probe) {
                s->probing = false;
                if (s->dead) {
                        s->backoff_ms =
                            s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
                        s->probe_at_ms = now + s->backoff_ms;
                }
        }
        if (s->dead)
                return;
        if (was_probe || s->fails == 0)
                s->probe_at_ms = now + s->backoff_ms; /* failing: probed in the background */
        if (++s->fails >= DEAD_AFTER_FAILS)
                mark_dead(s, now);
}

/* A server that failed since its last answer: ranked after healthy ones and never picked at
 * random, so that no client waits for it; background probes bring it back. */
static inline bool failing(const struct server *s)
{
        return s->dead || s->fails > 0;
}

/* The position in q->list of the server for the next send, or -1 when none can be used.
 * Order: alive before dead, healthy before failing, fewest sends of this query, best RTT;
 * servers over their budget are never chosen; a random one among those close to the best.
 * untried_only: only servers this query has not used yet; exclude: a bit per position not to use;
 * explore: any RTT is close (so that a server measured slow once is measured again now and then).
 */
static int pick_server(vd_forwarder *f, const struct fwd_query *q, uint64_t now, bool untried_only,
                       unsigned exclude, bool explore)
{
        const struct server_list *l = q->list;
        int best = -1;
        for (size_t i = 0; i < l->n; i++) {
                struct server *s = &f->servers[l->idx[i]];
                if ((untried_only && q->tries[i] > 0) || ((exclude >> i) & 1u) ||
                    !has_token(f, s, now))
                        continue;
                if (best < 0) {
                        best = (int)i;
                        continue;
                }
                const struct server *b = &f->servers[l->idx[best]];
                if (s->dead != b->dead) {
                        if (!s->dead)
                                best = (int)i;
                        continue;
                }
                if (failing(s) != failing(b)) {
                        if (!failing(s))
                                best = (int)i;
                        continue;
                }
                if (q->tries[i] != q->tries[best]) {
                        if (q->tries[i] < q->tries[best])
                                best = (int)i;
                        continue;
                }
                if (server_score(s) < server_score(b))
                        best = (int)i;
        }
        if (best < 0)
                return -1;
        const struct server *b = &f->servers[l->idx[best]];
        uint64_t limit =
            explore ? UINT64_MAX : (uint64_t)server_score(b) + server_score(b) / 2u + CLOSE_US;
        size_t close[VD_MAX_UPSTREAM], n_close = 0;
        for (size_t i = 0; i < l->n; i++) {
                const struct server *s = &f->servers[l->idx[i]];
                if ((untried_only && q->tries[i] > 0) || ((exclude >> i) & 1u) ||
                    s->dead != b->dead || failing(s) != failing(b) ||
                    q->tries[i] != q->tries[best] || server_score(s) > limit ||
                    (f->max_qps > 0 && s->tokens < TOKEN))
                        continue;
                close[n_close++] = i;
        }
        uint16_t r = 0;
        if (n_close > 1 && random_u16(f, &r) == 0)
                return (int)close[r % n_close];
        return best;
}

/* ---- rules --------------------------------------------------------------------------- */

/* The most specific rule whose domain is qi's name or a label-wise suffix of it, or NULL. */
static const struct rule *match_rule(const vd_forwarder *f, const vd_query_info *qi)
{
        uint8_t boundary[VD_NAME_MAX + 1];
        const uint8_t *name = qi->qname_lower;
        size_t len = qi->qname_len;
        const struct rule *best = NULL;

        if (f->n_rules == 0)
                return NULL;
        memset(boundary, 0, sizeof(boundary));
        for (size_t p = 0; p < len;) {
                boundary[p] = 1;
                if (name[p] == 0)
                        break;
                p += (size_t)name[p] + 1;
        }
        for (size_t i = 0; i < f->n_rules; i++) {
                const struct rule *r = &f->rules[i];
                if (r->domain_len > len || !boundary[len - r->domain_len])
                        continue;
                if (best != NULL && r->domain_len <= best->domain_len)
                        continue;
                if (memcmp(name + len - r->domain_len, r->domain, r->domain_len) == 0)
                        best = r;
        }
        return best;
}

static const struct server_list *servers_for(const vd_forwarder *f, const vd_query_info *qi)
{
        const struct rule *r = match_rule(f, qi);
        const struct server_list *l = r != NULL && !r->use_default ? &r->list : &f->defaults;
        return l->n > 0 ? l : NULL;
}

bool vd_forwarder_rule_covers(const vd_forwarder *f, const vd_query_info *qi)
{
        if (f == NULL || qi == NULL || !qi->question_ok)
                return false;
        const struct rule *r = match_rule(f, qi);
        return r != NULL && !r->use_default;
}

/* ---- c-ares ↔ libuv glue ------------------------------------------------------------- */

static void free_forwarder(vd_forwarder *f)
{
        while (f->freelist != NULL) {
                struct fwd_query *q = f->freelist;
                f->freelist = q->next;
                free(q);
        }
        for (size_t i = 0; i < f->n_servers; i++)
                free(f->servers[i].chans);
        free(f->servers);
        free(f->rules);
        free(f);
}

static void handle_closed(vd_forwarder *f)
{
        VD_CHECK(f->open_handles > 0);
        f->open_handles--;
        if (f->closing && !f->channels_live && f->open_handles == 0) {
                VD_CHECK(f->queries == NULL);
                free_forwarder(f);
        }
}

static void ares_timer_closed(uv_handle_t *h)
{
        handle_closed(h->data);
}

static void watch_closed(uv_handle_t *h)
{
        struct sock_watch *w = h->data;
        vd_forwarder *f = w->chan->f;
        free(w);
        handle_closed(f);
}

/* Re-arms the c-ares timer from the earliest ares_timeout() of the channels in use. */
static void arm_ares_timer(vd_forwarder *f)
{
        struct timeval best = {0, 0}, tv;
        bool any = false;
        if (!f->channels_live || uv_is_closing((uv_handle_t *)&f->ares_timer))
                return;
        for (size_t i = 0; i < f->n_servers; i++) {
                struct server *s = &f->servers[i];
                for (unsigned c = 0; c < s->n_chans; c++) {
                        if (s->chans[c].inflight == 0 ||
                            ares_timeout(s->chans[c].ch, NULL, &tv) == NULL)
                                continue;
                        if (!any || tv.tv_sec < best.tv_sec ||
                            (tv.tv_sec == best.tv_sec && tv.tv_usec < best.tv_usec))
                                best = tv;
                        any = true;
                }
        }
        if (!any) {
                uv_timer_stop(&f->ares_timer);
                return;
        }
        /* Round up and add 1 ms so the timer never fires just before c-ares's deadline. */
        uint64_t ms = (uint64_t)best.tv_sec * 1000u + ((uint64_t)best.tv_usec + 999u) / 1000u + 1u;
        uv_timer_start(&f->ares_timer, on_ares_timer, ms, 0);
}

/* Every entry point that may run c-ares or its callbacks is bracketed by enter/leave. */
static void enter(vd_forwarder *f)
{
        f->depth++;
}

static void leave(vd_forwarder *f)
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
        if (!f->channels_live)
                return;
        enter(f);
        for (size_t i = 0; i < f->n_servers && f->channels_live; i++) {
                struct server *s = &f->servers[i];
                for (unsigned c = 0; c < s->n_chans; c++)
                        if (s->chans[c].inflight > 0)
                                ares_process_fd(s->chans[c].ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        }
        leave(f);
}

/* On POLLERR (an ICMP port unreachable on a connected UDP socket, while an upstream is down)
 * libuv 1.44 stops the poll handle itself before calling back. When c-ares keeps the socket
 * after reading the error, its wanted state is unchanged, so it never calls on_sock_state
 * again: without this the socket would stay unpolled for good — answers pile up unread and
 * every query on it times out (seen in the soak after an upstream outage). */
static void on_poll(uv_poll_t *p, int status, int events);

static void rearm_after_error(vd_forwarder *f, struct sock_watch *w)
{
        for (struct sock_watch *it = f->watches; it != NULL; it = it->next) {
                if (it == w) { /* still c-ares's socket: w is unlinked when it closes */
                        if (!uv_is_closing((uv_handle_t *)&w->poll))
                                uv_poll_start(&w->poll, w->events, on_poll);
                        return;
                }
        }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        struct sock_watch *w = p->data;
        struct channel *chan = w->chan;
        vd_forwarder *f = chan->f;
        ares_socket_t fd = w->fd;
        if (!chan->live)
                return;
        ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
        /* On a poll error let c-ares read/write the socket and discover the error itself. */
        if (status < 0 || (events & UV_READABLE))
                rfd = fd;
        if (status < 0 || (events & UV_WRITABLE))
                wfd = fd;
        enter(f);
        ares_process_fd(chan->ch, rfd, wfd); /* may close this watch */
        leave(f);
        if (status < 0)
                rearm_after_error(f, w);
}

static void close_watch(struct sock_watch *w)
{
        uv_poll_stop(&w->poll);
        uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
        struct channel *chan = data;
        vd_forwarder *f = chan->f;
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
                        return; /* unwatched: the send ends by timeout */
                w->chan = chan;
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
        w->events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
        uv_poll_start(&w->poll, w->events, on_poll);
}

/* ---- queries ------------------------------------------------------------------------- */

static void query_unlink(struct fwd_query *q)
{
        vd_forwarder *f = q->f;
        if (q->prev != NULL)
                q->prev->next = q->next;
        else
                f->queries = q->next;
        if (q->next != NULL)
                q->next->prev = q->prev;
}

static void query_free(struct fwd_query *q)
{
        vd_forwarder *f = q->f;
        if (f->n_free < QUERY_FREELIST_MAX && !f->closing) {
                q->next = f->freelist;
                f->freelist = q;
                f->n_free++;
        } else {
                free(q);
        }
}

static void maybe_release(struct fwd_query *q)
{
        if (q->answered && q->timer_closed && q->pending == 0) {
                query_unlink(q);
                query_free(q);
        }
}

static void timer_closed(uv_handle_t *h)
{
        struct fwd_query *q = h->data;
        vd_forwarder *f = q->f;
        q->timer_closed = true;
        maybe_release(q);
        handle_closed(f);
}

static void close_timer(struct fwd_query *q)
{
        if (!uv_is_closing((uv_handle_t *)&q->timer))
                uv_close((uv_handle_t *)&q->timer, timer_closed);
}

/* Runs the query's callback once: status 0 with the answer (client's question case), or a
 * negative code. */
static void complete(struct fwd_query *q, int status, const uint8_t *answer, size_t len)
{
        vd_forwarder *f = q->f;
        if (q->answered)
                return;
        q->answered = true;
        close_timer(q);
        if (status != 0 && status != -ECANCELED)
                f->counters.failures++;
        if (q->raw != NULL) {
                q->raw(q->arg, status, status == 0 ? answer : NULL, status == 0 ? len : 0);
                return;
        }
        if (status == -ECANCELED) {
                q->reply(q->arg, NULL, 0);
                return;
        }
        size_t n = 0;
        if (status == 0)
                n = vd_forward_relay(&q->qi, answer, len, q->max_len, f->out, sizeof(f->out));
        if (n == 0) {
                size_t cap = q->max_len < sizeof(f->out) ? q->max_len : sizeof(f->out);
                n = vd_wire_error_response(&q->qi, VD_RCODE_SERVFAIL, f->out, cap);
        }
        q->reply(q->arg, f->out, n);
}

/* Upstream query: fresh ID, RD, the client's CD (RFC 4035 §3.2.2: a client that validates
 * itself asks for unvalidated data), the question as sent upstream, our OPT with its DO. */
static size_t build_upstream_query(const struct fwd_query *q, uint16_t id, uint8_t *buf)
{
        const vd_query_info *qi = &q->qi;
        size_t n = 0;
        vd_wire_put16(buf, id);
        vd_wire_put16(buf + 2, (uint16_t)(VD_FLAG_RD | (qi->flags & VD_FLAG_CD)));
        vd_wire_put16(buf + 4, 1);
        vd_wire_put16(buf + 6, 0);
        vd_wire_put16(buf + 8, 0);
        vd_wire_put16(buf + 10, 1);
        n = VD_HEADER_LEN;
        memcpy(buf + n, q->sent, qi->qname_len);
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
        return status == ARES_ENOMEM ? -ENOMEM : -EIO;
}

static void on_attempt_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void chan_link(struct channel *c, struct attempt *a)
{
        a->chan_prev = NULL;
        a->chan_next = c->sends;
        if (c->sends != NULL)
                c->sends->chan_prev = a;
        c->sends = a;
}

static void chan_unlink(struct channel *c, struct attempt *a)
{
        if (a->chan_prev != NULL)
                a->chan_prev->chan_next = a->chan_next;
        else
                c->sends = a->chan_next;
        if (a->chan_next != NULL)
                a->chan_next->chan_prev = a->chan_prev;
        a->chan_prev = a->chan_next = NULL;
}

/* Hands the query to c-ares. Its callback (on_attempt_answer) runs exactly once, possibly
 * from inside this call. Sets a->id to the ID on the wire once it is known. */
#if ARES_VERSION >= 0x011c00 /* 1.28: ares_send_dnsrec, which reports the ID it chose */
static void on_send_dnsrec(void *arg, ares_status_t status, size_t timeouts,
                           const ares_dns_record_t *answer)
{
        unsigned char *buf = NULL;
        size_t len = 0;
        /* The answer as c-ares parsed it, written back to wire form (what ares_send did). */
        if (status == ARES_SUCCESS &&
            (answer == NULL || ares_dns_write(answer, &buf, &len) != ARES_SUCCESS ||
             len > VD_TCP_MAX))
                status = ARES_EBADRESP;
        on_attempt_answer(arg, (int)status, (int)timeouts, status == ARES_SUCCESS ? buf : NULL,
                          status == ARES_SUCCESS ? (int)len : 0);
        ares_free_string(buf);
}

static void ares_send_query(struct attempt *a, const uint8_t *pkt, size_t len)
{
        ares_dns_record_t *rec = NULL;
        unsigned short qid = 0;
        ares_status_t st = ares_dns_parse(pkt, len, 0, &rec);
        if (st != ARES_SUCCESS) {
                on_attempt_answer(a, (int)st, 0, NULL, 0);
                return;
        }
        st = ares_send_dnsrec(a->chan->ch, rec, on_send_dnsrec, a, &qid);
        ares_dns_record_destroy(rec);
        if (st == ARES_SUCCESS && a->pending) {
                a->id = qid;
                a->id_known = true;
        }
}
#else
static void ares_send_query(struct attempt *a, const uint8_t *pkt, size_t len)
{
        struct channel *c = a->chan;
        c->capturing = true;
        c->captured = false;
        ares_send(c->ch, pkt, (int)len, on_attempt_answer, a);
        c->capturing = false;
        if (a->pending) {
                /* 1.18 to 1.21 send our ID; 1.22 to 1.27 their own, seen on its way out. */
                if (c->captured)
                        a->id = c->captured_id;
                a->id_known = true;
        }
}
#endif

/* One send of q to the server at list position pos, on a random channel of that server.
 * Returns 0, or a negative code when nothing was sent (no attempt slot, over budget, no ID,
 * c-ares failed at once). Never runs q's callback. */
static int send_attempt(struct fwd_query *q, size_t pos, bool is_probe, uint64_t now)
{
        vd_forwarder *f = q->f;
        struct server *s = &f->servers[q->list->idx[pos]];
        uint16_t r = 0, id = 0;
        int rc;

        if (q->n_att >= MAX_ATTEMPTS)
                return -EAGAIN;
        if (!has_token(f, s, now))
                return -EBUSY;
        rc = random_u16(f, &r);
        struct channel *chan = &s->chans[r % s->n_chans];
        if (rc == 0)
                rc = new_query_id(f, chan, q->qi.id, &id);
        if (rc < 0)
                return rc;
        struct attempt *a = &q->att[q->n_att];
        memset(a, 0, sizeof(*a));
        a->q = q;
        a->chan = chan;
        a->pos = pos;
        a->id = id;
        a->is_probe = is_probe;
        a->sent_ns = uv_hrtime();
        a->pending = true;
        a->sending = true;
        q->n_att++;
        q->pending++;
        chan->inflight++;
        chan_link(chan, a);
        q->tries[pos]++;
        if (f->max_qps > 0)
                s->tokens -= TOKEN;

        uint8_t pkt[QUERY_MAX];
        size_t len = build_upstream_query(q, id, pkt);
        ares_send_query(a, pkt, len);
        a->sending = false;
        if (a->sync_failed) /* the callback already undid the counts */
                return ares_to_errno(a->sync_status);
        f->counters.upstream_queries++;
        if (is_probe)
                s->probing = true;
        return 0;
}

static void arm_query_timer(struct fwd_query *q, uint64_t now)
{
        uint64_t at = q->deadline_ms;
        if (q->cur >= 0 && q->try_deadline_ms < at)
                at = q->try_deadline_ms;
        uv_timer_start(&q->timer, on_query_timer, at > now ? at - now : 0, 0);
}

/* Sends q to the next server (see pick_server). Returns true when a send went out. */
static bool send_next(struct fwd_query *q, uint64_t now, bool untried_only)
{
        vd_forwarder *f = q->f;
        int prev = q->cur;
        size_t prev_pos = prev >= 0 ? q->att[prev].pos : SIZE_MAX;
        unsigned exclude = 0;
        while (q->n_att < MAX_ATTEMPTS) {
                int pos = pick_server(f, q, now, untried_only, exclude, false);
                if (pos < 0)
                        return false;
                int rc = send_attempt(q, (size_t)pos, false, now);
                if (rc < 0) {
                        /* Out of memory, IDs or attempt slots: stop. Otherwise (c-ares could
                         * not send, e.g. no socket) try another server. */
                        if (rc == -ENOMEM || rc == -EAGAIN)
                                return false;
                        exclude |= 1u << pos;
                        continue;
                }
                if (prev >= 0 && (size_t)pos != prev_pos)
                        f->counters.failovers++;
                q->cur = (int)q->n_att - 1;
                uint64_t until = now + per_try_ms(&f->servers[q->list->idx[pos]]);
                q->try_deadline_ms = until < q->deadline_ms ? until : q->deadline_ms;
                return true;
        }
        return false;
}

/* Nothing in flight and nothing more to send: the query fails now. */
static void fail_if_exhausted(struct fwd_query *q, uint64_t now)
{
        if (!q->answered && q->pending == 0)
                complete(q, now >= q->deadline_ms ? -ETIMEDOUT : -EIO, NULL, 0);
}

static void on_query_timer(uv_timer_t *t)
{
        struct fwd_query *q = t->data;
        vd_forwarder *f = q->f;
        uint64_t now = uv_now(f->loop);
        if (q->answered)
                return;
        enter(f);
        if (now >= q->deadline_ms) {
                complete(q, -ETIMEDOUT, NULL, 0);
                goto out;
        }
        if (q->cur >= 0 && now >= q->try_deadline_ms) {
                struct attempt *a = &q->att[q->cur];
                if (a->pending && !a->timeout_counted) {
                        a->timeout_counted = true;
                        f->counters.timeouts++;
                        server_failed(a->chan->srv, false, now);
                }
                if (!send_next(q, now, false)) {
                        q->cur = -1; /* wait for what is in flight, up to the budget */
                        fail_if_exhausted(q, now);
                }
        }
        if (!q->answered)
                arm_query_timer(q, now);
out:
        leave(f);
}

/* The answer answers q's question: header, one uncompressed question with our name (exactly
 * as sent under 0x20, else in any case), type and class. */
static bool answer_matches(const struct fwd_query *q, const uint8_t *a, size_t len)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len, pos = VD_HEADER_LEN;
        const vd_query_info *qi = &q->qi;

        if (len < VD_HEADER_LEN || !(vd_wire_get16(a + 2) & VD_FLAG_QR) ||
            vd_wire_get16(a + 4) != 1)
                return false;
        if (vd_wire_read_name(a, len, &pos, name, &name_len, false) != 0 ||
            name_len != qi->qname_len || pos != VD_HEADER_LEN + name_len || pos + 4 > len ||
            vd_wire_get16(a + pos) != qi->qtype || vd_wire_get16(a + pos + 2) != qi->qclass)
                return false;
        if (q->f->use_0x20)
                return memcmp(name, q->sent, name_len) == 0;
        vd_name_lower(name, name_len);
        return memcmp(name, qi->qname_lower, name_len) == 0;
}

static bool is_error_rcode(const uint8_t *a)
{
        unsigned rcode = a[3] & 0x0Fu;
        return rcode == VD_RCODE_SERVFAIL || rcode == VD_RCODE_REFUSED;
}

static void on_attempt_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
        struct attempt *a = arg;
        struct fwd_query *q = a->q;
        vd_forwarder *f = q->f;
        struct server *s = a->chan->srv;
        uint64_t now = uv_now(f->loop);
        (void)timeouts;

        a->pending = false;
        q->pending--;
        a->chan->inflight--;
        chan_unlink(a->chan, a);
        if (a->sending) {
                /* Synchronous failure inside ares_send: undo the send. */
                a->sync_failed = true;
                a->sync_status = status;
                q->n_att--;
                return;
        }
        if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION) {
                if (a->is_probe)
                        s->probing = false;
                goto out;
        }
        if (status != ARES_SUCCESS || abuf == NULL || alen <= 0) {
                if (status == ARES_ETIMEOUT && !a->timeout_counted)
                        f->counters.timeouts++;
                if (!a->timeout_counted)
                        server_failed(s, a->is_probe, now);
                a->timeout_counted = true;
                /* The send being watched ended: move on at once. An error rules its server
                 * out for this query; a timeout does not (c-ares 1.32 and later end a send
                 * after 5 times the server's average RTT, at least 250 ms, which can come
                 * before our per-try deadline). */
                if (!q->answered && q->cur == (int)(a - q->att) &&
                    !send_next(q, now, status != ARES_ETIMEOUT))
                        q->cur = -1;
                if (!q->answered && q->cur >= 0)
                        arm_query_timer(q, now);
                fail_if_exhausted(q, now);
                goto out;
        }
        size_t len = (size_t)alen;
        if (!answer_matches(q, abuf, len)) {
                f->counters.mismatches++; /* spoofed, or an upstream that broke 0x20 */
                if (a->is_probe)
                        server_failed(s, true, now); /* no proof of life: back off */
                if (!q->answered) {
                        if (send_next(q, now, false))
                                arm_query_timer(q, now);
                        else if (q->cur == (int)(a - q->att))
                                q->cur = -1;
                        fail_if_exhausted(q, now);
                }
                goto out;
        }
        server_answered(s, (uv_hrtime() - a->sent_ns) / 1000u);
        if (!q->answered && is_error_rcode(abuf) && send_next(q, now, true)) {
                arm_query_timer(q, now); /* SERVFAIL/REFUSED: another server may know */
                goto out;
        }
        /* Callers get the client's spelling of the question (same length, uncompressed). */
        memcpy(f->answer, abuf, len);
        memcpy(f->answer + VD_HEADER_LEN, q->qi.qname, q->qi.qname_len);
        if (f->on_answer != NULL)
                f->on_answer(f->on_answer_arg, &q->qi, f->answer, len);
        complete(q, 0, f->answer, len);
out:
        maybe_release(q);
}

static struct fwd_query *query_alloc(vd_forwarder *f)
{
        struct fwd_query *q = f->freelist;
        if (q != NULL) {
                f->freelist = q->next;
                f->n_free--;
                return q;
        }
        return malloc(sizeof(*q));
}

/* Starts q's first send and a probe to each dead server of its list that is due one. */
static int start_query(vd_forwarder *f, const vd_query_info *qi, size_t max_len, vd_reply_fn reply,
                       vd_upstream_fn raw, void *arg)
{
        if (f == NULL || qi == NULL || (reply == NULL && raw == NULL))
                return -EINVAL;
        if (f->closing)
                return -ESHUTDOWN;
        if (!qi->question_ok || qi->qname == NULL || qi->qname_len == 0)
                return -EINVAL;
        const struct server_list *list = servers_for(f, qi);
        if (list == NULL)
                return -ENOENT;

        struct fwd_query *q = query_alloc(f);
        if (q == NULL)
                return -ENOMEM;
        memset(q, 0, offsetof(struct fwd_query, qi));
        q->f = f;
        q->reply = reply;
        q->raw = raw;
        q->arg = arg;
        q->max_len = max_len;
        q->list = list;
        q->cur = -1;
        q->qi = *qi;
        memcpy(q->qname, qi->qname, qi->qname_len);
        q->qi.qname = q->qname;
        int rc = 0;
        if (f->use_0x20)
                rc = randomise_case(f, qi->qname_lower, qi->qname_len, q->sent);
        else
                memcpy(q->sent, qi->qname, qi->qname_len);
        if (rc < 0) {
                query_free(q);
                return rc;
        }

        uv_update_time(f->loop); /* the budget counts from now, not from the loop's last tick */
        uint64_t now = uv_now(f->loop);
        q->deadline_ms = now + f->budget_ms;
        enter(f);
        uint16_t dice = 1;
        (void)random_u16(f, &dice);
        int pos = pick_server(f, q, now, false, 0, dice % EXPLORE_ONE_IN == 0);
        if (pos < 0) {
                f->counters.budget_refused++;
                rc = -EBUSY;
        } else {
                rc = send_attempt(q, (size_t)pos, false, now);
        }
        if (rc < 0) {
                query_free(q);
                if (rc == -EIO)
                        rc = -EAGAIN;
                goto out;
        }
        q->cur = 0;
        uint64_t until = now + per_try_ms(&f->servers[list->idx[pos]]);
        q->try_deadline_ms = until < q->deadline_ms ? until : q->deadline_ms;

        /* From here on the query is on the list and owns a timer handle. */
        q->next = f->queries;
        if (f->queries != NULL)
                f->queries->prev = q;
        f->queries = q;
        uv_timer_init(f->loop, &q->timer);
        q->timer.data = q;
        f->open_handles++;
        arm_query_timer(q, now);

        for (size_t i = 0; i < list->n; i++) {
                struct server *s = &f->servers[list->idx[i]];
                if ((int)i != pos && failing(s) && !s->probing && now >= s->probe_at_ms &&
                    send_attempt(q, i, true, now) == 0)
                        s->probe_at_ms = now + s->backoff_ms; /* one probe per backoff */
        }
out:
        leave(f);
        return rc;
}

int vd_forwarder_query(vd_forwarder *f, const vd_query_info *qi, size_t max_len, vd_reply_fn done,
                       void *arg)
{
        if (done == NULL)
                return -EINVAL;
        return start_query(f, qi, max_len, done, NULL, arg);
}

int vd_forwarder_resolve(vd_forwarder *f, const vd_query_info *qi, vd_upstream_fn done, void *arg)
{
        if (done == NULL)
                return -EINVAL;
        return start_query(f, qi, VD_TCP_MAX, NULL, done, arg);
}

void vd_forwarder_counters_get(const vd_forwarder *f, vd_forward_counters *out)
{
        *out = f->counters;
        out->servers_down = 0;
        for (size_t i = 0; i < f->n_servers; i++)
                if (failing(&f->servers[i]))
                        out->servers_down++;
}

/* ---- lifetime ------------------------------------------------------------------------ */

static int ares_library_status = ARES_ENOTINITIALIZED;

/* Once per process, never cleaned up: ares_library_init is not thread-safe in 1.18. */
static void init_ares_library(void)
{
        ares_library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* Index of addr in f->servers, added when new. */
static int server_index(vd_forwarder *f, const vd_addr *addr, size_t cap, vd_error *err)
{
        for (size_t i = 0; i < f->n_servers; i++)
                if (same_addr(&f->servers[i].addr, addr))
                        return (int)i;
        if (addr->ss.ss_family != AF_INET && addr->ss.ss_family != AF_INET6)
                return vd_error_set(err, "forwarder: upstream: not IPv4 or IPv6");
        VD_CHECK(f->n_servers < cap);
        struct server *s = &f->servers[f->n_servers];
        memset(s, 0, sizeof(*s));
        s->addr = *addr;
        s->backoff_ms = BACKOFF_MIN_MS;
        return (int)f->n_servers++;
}

static int fill_list(vd_forwarder *f, struct server_list *l, const vd_addr *addrs, size_t n,
                     size_t cap, vd_error *err)
{
        if (n > VD_MAX_UPSTREAM)
                return vd_error_set(err, "forwarder: more than %d servers", VD_MAX_UPSTREAM);
        if (n > 0 && addrs == NULL)
                return vd_error_set(err, "forwarder: invalid options");
        l->n = 0;
        for (size_t i = 0; i < n; i++) {
                int idx = server_index(f, &addrs[i], cap, err);
                if (idx < 0)
                        return idx;
                bool dup = false;
                for (size_t k = 0; k < l->n; k++)
                        dup = dup || l->idx[k] == idx;
                if (!dup)
                        l->idx[l->n++] = (uint16_t)idx;
        }
        return 0;
}

/* The server as ares_set_servers_ports_csv takes it: "192.0.2.1:53", "[2001:db8::1]:53",
 * "[fe80::1%eth0]:53". */
static int server_csv(const vd_addr *addr, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN], scope[IF_NAMESIZE + 1] = "";
        unsigned port;
        if (addr->ss.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->ss;
                if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
                        return -EINVAL;
                port = ntohs(sin->sin_port);
        } else {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->ss;
                char ifname[IF_NAMESIZE];
                if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
                        return -EINVAL;
                if (sin6->sin6_scope_id != 0) {
                        if (if_indextoname(sin6->sin6_scope_id, ifname) == NULL)
                                return -EINVAL;
                        scope[0] = '%';
                        memcpy(scope + 1, ifname, strnlen(ifname, IF_NAMESIZE - 1) + 1);
                }
                port = ntohs(sin6->sin6_port);
        }
        bool v6 = addr->ss.ss_family == AF_INET6;
        int n = snprintf(out, cap, "%s%s%s%s:%u", v6 ? "[" : "", host, scope, v6 ? "]" : "",
                         port ? port : 53u);
        return n > 0 && (size_t)n < cap ? 0 : -EINVAL;
}

/* The server's channels: each a c-ares channel with this one server, tries 1 (we retry and
 * fail over ourselves), timeout = the budget (a late answer still counts for health; c-ares
 * 1.32 and later shorten it once they have measured the server), and no c-ares query cache
 * (1.23 and later have one, on by default: it would answer from under our cache, serve-stale
 * and prefetch, and hide upstream traffic from the budget). */
static int open_channels(vd_forwarder *f, struct server *s, unsigned n, vd_error *err)
{
        char csv[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
        if (server_csv(&s->addr, csv, sizeof(csv)) != 0)
                return vd_error_set(err, "forwarder: upstream address cannot be used");

        s->chans = calloc(n, sizeof(*s->chans));
        if (s->chans == NULL) {
                vd_error_set(err, "forwarder: out of memory");
                return -ENOMEM;
        }
        for (unsigned i = 0; i < n; i++) {
                struct channel *c = &s->chans[i];
                struct ares_options ao;
                memset(&ao, 0, sizeof(ao));
                c->f = f;
                c->srv = s;
                /* NOCHECKRESP: SERVFAIL/REFUSED reach us. TC answers are retried over TCP by
                 * c-ares (no IGNTC). We send our own OPT, but ARES_FLAG_EDNS with our payload
                 * size is still needed: without it c-ares 1.18 treats every UDP answer longer
                 * than 512 octets as truncated and repeats the query over TCP. (After a FORMERR
                 * without OPT it strips the last 11 octets — our OPT — and stays without EDNS
                 * on that channel, as DESIGN.md notes.) */
                ao.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_EDNS;
                ao.ednspsz = VD_UDP_PAYLOAD;
                ao.timeout = (int)f->budget_ms;
                ao.tries = 1;
                ao.nservers = 0; /* none from /etc/resolv.conf: ours is set below */
                ao.sock_state_cb = on_sock_state;
                ao.sock_state_cb_data = c;
                int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SERVERS |
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_EDNSPSZ;
#ifdef ARES_OPT_QUERY_CACHE
                ao.qcache_max_ttl = 0; /* 0: no query cache */
                mask |= ARES_OPT_QUERY_CACHE;
#endif
                int rc = ares_init_options(&c->ch, &ao, mask);
                if (rc != ARES_SUCCESS) {
                        vd_error_set(err, "forwarder: c-ares init: %s", ares_strerror(rc));
                        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
                }
                c->live = true;
                s->n_chans = i + 1;
                rc = set_socket_functions(c);
                if (rc == ARES_SUCCESS)
                        rc = ares_set_servers_ports_csv(c->ch, csv);
                if (rc != ARES_SUCCESS) {
                        vd_error_set(err, "forwarder: c-ares servers: %s", ares_strerror(rc));
                        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
                }
        }
        return 0;
}

static void destroy_channels(vd_forwarder *f)
{
        for (size_t i = 0; i < f->n_servers; i++) {
                struct server *s = &f->servers[i];
                for (unsigned c = 0; c < s->n_chans; c++) {
                        if (!s->chans[c].live)
                                continue;
                        s->chans[c].live = false;
                        ares_destroy(s->chans[c].ch); /* sends: EDESTRUCTION; sockets: (0,0) */
                }
        }
        f->channels_live = false;
}

int vd_forwarder_new(uv_loop_t *loop, const vd_forward_options *opt, vd_forwarder **out,
                     vd_error *err)
{
        static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
        vd_forwarder *f = NULL;
        int rc = 0;

        *out = NULL;
        if (loop == NULL || opt == NULL || (opt->n_servers > 0 && opt->servers == NULL) ||
            (opt->n_rules > 0 && opt->rules == NULL))
                return vd_error_set(err, "forwarder: invalid options");

        pthread_once(&ares_once, init_ares_library);
        if (ares_library_status != ARES_SUCCESS)
                return vd_error_set(err, "forwarder: c-ares library init: %s",
                                    ares_strerror(ares_library_status));

        size_t cap = opt->n_servers;
        for (size_t i = 0; i < opt->n_rules; i++)
                cap += opt->rules[i].n_servers;
        f = calloc(1, sizeof(*f));
        if (f != NULL && cap > 0)
                f->servers = calloc(cap, sizeof(*f->servers));
        if (f != NULL && opt->n_rules > 0)
                f->rules = calloc(opt->n_rules, sizeof(*f->rules));
        if (f == NULL || (cap > 0 && f->servers == NULL) ||
            (opt->n_rules > 0 && f->rules == NULL)) {
                vd_error_set(err, "forwarder: out of memory");
                rc = -ENOMEM;
                goto out;
        }
        f->loop = loop;
        f->budget_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_BUDGET_MS;
        f->max_qps = opt->max_qps;
        f->burst = (uint64_t)(opt->max_qps / 10 > 0 ? opt->max_qps / 10 : 1) * TOKEN;
        f->use_0x20 = opt->use_0x20;
        f->on_answer = opt->on_answer;
        f->on_answer_arg = opt->on_answer_arg;
        f->rand_pos = sizeof(f->rand_buf); /* empty: the first use refills it */
        unsigned ports = opt->ports_per_server ? opt->ports_per_server : DEFAULT_PORTS;
        if (ports > MAX_PORTS)
                ports = MAX_PORTS;

        rc = fill_list(f, &f->defaults, opt->servers, opt->n_servers, cap, err);
        if (rc < 0)
                goto out;
        for (size_t i = 0; i < opt->n_rules; i++) {
                const vd_forward_rule *in = &opt->rules[i];
                struct rule *r = &f->rules[i];
                if (in->domain_len == 0 || in->domain_len > VD_NAME_MAX ||
                    vd_name_len(in->domain, in->domain_len) != in->domain_len ||
                    (!in->use_default && in->n_servers == 0)) {
                        rc = vd_error_set(err, "forwarder: rule %zu: invalid domain or servers", i);
                        goto out;
                }
                memcpy(r->domain, in->domain, in->domain_len);
                r->domain_len = in->domain_len;
                vd_name_lower(r->domain, r->domain_len);
                r->use_default = in->use_default;
                if (!r->use_default) {
                        rc = fill_list(f, &r->list, in->servers, in->n_servers, cap, err);
                        if (rc < 0)
                                goto out;
                }
                f->n_rules = i + 1;
        }
        f->channels_live = true;
        for (size_t i = 0; i < f->n_servers; i++) {
                rc = open_channels(f, &f->servers[i], ports, err);
                if (rc < 0)
                        goto out;
        }
        uv_update_time(loop); /* opening channels takes a while: budgets start from now */
        for (size_t i = 0; i < f->n_servers; i++) {
                f->servers[i].tokens = f->burst;
                f->servers[i].bucket_ms = uv_now(loop);
        }
        uv_timer_init(loop, &f->ares_timer);
        f->ares_timer.data = f;
        f->open_handles++;
        *out = f;
        f = NULL;
out:
        if (f != NULL) {
                destroy_channels(f);
                free_forwarder(f);
        }
        return rc;
}

/* Destroys the channels (outside any c-ares call) and closes the remaining handles. */
static void finish_close(vd_forwarder *f)
{
        if (f->channels_live) {
                f->depth++;
                destroy_channels(f);
                f->depth--;
        }
        while (f->watches != NULL) {
                struct sock_watch *w = f->watches;
                f->watches = w->next;
                close_watch(w);
        }
        for (struct fwd_query *q = f->queries; q != NULL; q = q->next)
                close_timer(q);
        if (!uv_is_closing((uv_handle_t *)&f->ares_timer))
                uv_close((uv_handle_t *)&f->ares_timer, ares_timer_closed);
}

void vd_forwarder_close(vd_forwarder *f)
{
        if (f == NULL || f->closing)
                return;
        f->closing = true;
        /* Every query still waiting gets its one callback: len 0 / -ECANCELED. */
        for (struct fwd_query *q = f->queries; q != NULL; q = q->next)
                complete(q, -ECANCELED, NULL, 0);
        if (f->depth > 0)
                f->destroy_deferred = true; /* inside a c-ares call: destroy on return */
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

/* Reads the names of a record's rdata, for the types whose rdata may hold compressed names
 * (each through the bounded reader, so a relayed pointer always leads to a valid name); the
 * inline part must stay inside the rdata. Returns false when one is malformed. */
static bool rdata_names_ok(const uint8_t *msg, size_t fixed, uint16_t type)
{
        uint8_t scratch[VD_NAME_MAX];
        size_t scratch_len;
        size_t rdata = fixed + 10;
        size_t end = rdata + vd_wire_get16(msg + fixed + 8);
        size_t skip, names;

        if (!vd_wire_rdata_names(type, &skip, &names))
                return true; /* opaque rdata */
        if (type == 35) {    /* NAPTR: flags, services and regexp strings before the name */
                for (int k = 0; k < 3; k++) {
                        if (rdata + skip >= end)
                                return false;
                        skip += 1 + (size_t)msg[rdata + skip];
                }
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
                if (!rdata_names_ok(answer, fixed, type))
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
                size_t unused_prefix, unused_names;
                if (vd_wire_rdata_names(type, &unused_prefix, &unused_names))
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

        /* Octets after the last counted record belong to no record: the message is malformed
         * (as a query would be), and a pointer in opaque rdata could lead into them. */
        if (pos != answer_len)
                return 0;

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
