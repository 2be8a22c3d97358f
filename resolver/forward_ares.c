/* forward_ares.c — the forwarder's c-ares and libuv glue: one-server c-ares channels (one UDP
 * source port each), the socket functions through which every datagram is checked before
 * c-ares sees it, a uv_poll_t per c-ares socket, one uv_timer_t for every channel's c-ares
 * timeouts, and the calls that differ between c-ares versions (1.18 and later are supported).
 * It knows nothing of budgets, health or which server to use (forward.c and forward_select.c
 * decide); it hands each send's end to vd_fwd_on_answer exactly once.
 *
 * c-ares versions, in one place: 1.22+ choose the query ID themselves (1.28+ report it from
 * ares_send_dnsrec; for 1.22 to 1.27 our send hook sees it go out), 1.23+ have a query cache
 * (turned off), 1.32+ shorten a send's timeout from measured RTTs, 1.34 deprecates ares_send,
 * ares_set_socket_functions and ares_set_servers_ports (ares_send_dnsrec,
 * ares_set_socket_functions_ex and ares_set_servers_ports_csv are used instead). */
#include <ares.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include "forward_int.h"
#include "vpcdns/counters.h"

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

/* The send waiting on c with this ID on the wire, or NULL. */
static struct attempt *find_send(const struct channel *c, uint16_t id)
{
        for (struct attempt *a = c->sends; a != NULL; a = a->chan_next)
                if (a->id_known && a->id == id)
                        return a;
        return NULL;
}

/* The send on c that datagram d answers, or NULL. */
static struct attempt *datagram_send(const struct channel *c, const uint8_t *d, size_t len,
                                     const struct sockaddr *from, ares_socklen_t from_len)
{
        vd_addr source;
        if (len < VD_HEADER_LEN || from_len == 0)
                return NULL;
        memset(&source, 0, sizeof(source));
        source.len = from_len <= sizeof(source.ss) ? from_len : sizeof(source.ss);
        memcpy(&source.ss, from, source.len);
        if (!vd_addr_equal(&source, &c->srv->addr))
                return NULL;
        struct attempt *a = find_send(c, vd_wire_get16(d));
        return a != NULL && vd_fwd_answer_matches(a->q, d, len) ? a : NULL;
}

/* c-ares 1.28 and later hand the answer over parsed, and writing it back to wire form does not
 * give the octets the server sent (it can come out longer, so an answer that fitted 512 octets
 * would no longer fit). The datagram is kept here, as received, for on_send_dnsrec to relay.
 * Without memory for the copy, the send's answer is the re-encoded one. */
static void keep_datagram(struct attempt *a, const uint8_t *d, size_t len)
{
#if ARES_VERSION >= 0x011c00
        uint8_t *copy = malloc(len);
        if (copy != NULL)
                memcpy(copy, d, len);
        free(a->raw);
        a->raw = copy;
        a->raw_len = copy != NULL ? len : 0;
#else
        (void)a;
        (void)d;
        (void)len;
#endif
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
                struct attempt *a = datagram_send(c, buf, (size_t)n, from, *from_len);
                if (a != NULL) {
                        keep_datagram(a, buf, (size_t)n);
                        return n;
                }
                vd_count_add(&c->f->counters.mismatches, 1);
                vd_count_add(&c->srv->stats.mismatches, 1);
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

bool vd_fwd_id_in_use(const void *chan, uint16_t id)
{
        return find_send(chan, id) != NULL;
}

/* ---- sends --------------------------------------------------------------------------- */

void vd_fwd_chan_link(struct channel *c, struct attempt *a)
{
        a->chan_prev = NULL;
        a->chan_next = c->sends;
        if (c->sends != NULL)
                c->sends->chan_prev = a;
        c->sends = a;
}

void vd_fwd_chan_unlink(struct channel *c, struct attempt *a)
{
        if (a->chan_prev != NULL)
                a->chan_prev->chan_next = a->chan_next;
        else
                c->sends = a->chan_next;
        if (a->chan_next != NULL)
                a->chan_next->chan_prev = a->chan_prev;
        a->chan_prev = a->chan_next = NULL;
}

#if ARES_VERSION >= 0x011c00 /* 1.28: ares_send_dnsrec, which reports the ID it chose */
/* Whether the kept datagram d is the message c-ares ended the send with: the same ID, TC bit,
 * RCODE and number of answers. It is not after c-ares has repeated the query over TCP (the
 * datagram had TC) or without EDNS (the datagram was a FORMERR); then the answer is
 * c-ares's. */
static bool kept_is_answer(const uint8_t *d, size_t len, const ares_dns_record_t *answer)
{
        if (d == NULL || len < VD_HEADER_LEN)
                return false;
        bool tc = (ares_dns_record_get_flags(answer) & ARES_FLAG_TC) != 0;
        return vd_wire_get16(d) == ares_dns_record_get_id(answer) && ((d[2] & 0x02) != 0) == tc &&
               (d[3] & 0x0f) == ((unsigned)ares_dns_record_get_rcode(answer) & 0x0f) &&
               vd_wire_get16(d + 6) == ares_dns_record_rr_cnt(answer, ARES_SECTION_ANSWER);
}

static void on_send_dnsrec(void *arg, ares_status_t status, size_t timeouts,
                           const ares_dns_record_t *answer)
{
        struct attempt *a = arg;
        uint8_t *raw = a->raw; /* freed here: a may be gone once vd_fwd_on_answer returns */
        size_t raw_len = a->raw_len;
        unsigned char *buf = NULL;
        size_t len = 0;
        (void)timeouts;
        a->raw = NULL;
        a->raw_len = 0;
        if (status == ARES_SUCCESS && answer != NULL && kept_is_answer(raw, raw_len, answer)) {
                vd_fwd_on_answer(a, ARES_SUCCESS, raw, raw_len);
                free(raw);
                return;
        }
        free(raw);
        /* The answer as c-ares parsed it, written back to wire form (what ares_send did). */
        if (status == ARES_SUCCESS &&
            (answer == NULL || ares_dns_write(answer, &buf, &len) != ARES_SUCCESS ||
             len > VD_TCP_MAX))
                status = ARES_EBADRESP;
        vd_fwd_on_answer(a, (int)status, status == ARES_SUCCESS ? buf : NULL,
                         status == ARES_SUCCESS ? len : 0);
        ares_free_string(buf);
}

void vd_fwd_ares_send(struct attempt *a, const uint8_t *pkt, size_t len)
{
        ares_dns_record_t *rec = NULL;
        unsigned short qid = 0;
        a->raw = NULL;
        a->raw_len = 0;
        ares_status_t st = ares_dns_parse(pkt, len, 0, &rec);
        if (st != ARES_SUCCESS) {
                vd_fwd_on_answer(a, (int)st, NULL, 0);
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
static void on_legacy_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
        (void)timeouts;
        vd_fwd_on_answer(arg, status, abuf, abuf != NULL && alen > 0 ? (size_t)alen : 0);
}

void vd_fwd_ares_send(struct attempt *a, const uint8_t *pkt, size_t len)
{
        struct channel *c = a->chan;
        c->capturing = true;
        c->captured = false;
        ares_send(c->ch, pkt, (int)len, on_legacy_answer, a);
        c->capturing = false;
        if (a->pending) {
                /* 1.18 to 1.21 send our ID; 1.22 to 1.27 their own, seen on its way out. */
                if (c->captured)
                        a->id = c->captured_id;
                a->id_known = true;
        }
}
#endif

/* ---- watches and the c-ares timer ---------------------------------------------------- */

static void on_ares_timer(uv_timer_t *t);

static void ares_timer_closed(uv_handle_t *h)
{
        vd_fwd_handle_closed(h->data);
}

static void watch_closed(uv_handle_t *h)
{
        struct sock_watch *w = h->data;
        vd_forwarder *f = w->chan->f;
        free(w);
        vd_fwd_handle_closed(f);
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
void vd_fwd_enter(vd_forwarder *f)
{
        f->depth++;
}

void vd_fwd_leave(vd_forwarder *f)
{
        f->depth--;
        if (f->depth > 0)
                return;
        if (f->destroy_deferred) {
                f->destroy_deferred = false;
                vd_fwd_finish_close(f);
                return;
        }
        arm_ares_timer(f);
}

static void on_ares_timer(uv_timer_t *t)
{
        vd_forwarder *f = t->data;
        if (!f->channels_live)
                return;
        vd_fwd_enter(f);
        for (size_t i = 0; i < f->n_servers && f->channels_live; i++) {
                struct server *s = &f->servers[i];
                for (unsigned c = 0; c < s->n_chans; c++)
                        if (s->chans[c].inflight > 0)
                                ares_process_fd(s->chans[c].ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        }
        vd_fwd_leave(f);
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
        vd_fwd_enter(f);
        ares_process_fd(chan->ch, rfd, wfd); /* may close this watch */
        vd_fwd_leave(f);
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

void vd_fwd_ares_timer_init(vd_forwarder *f)
{
        uv_timer_init(f->loop, &f->ares_timer);
        f->ares_timer.data = f;
        f->open_handles++;
}

void vd_fwd_glue_close(vd_forwarder *f)
{
        while (f->watches != NULL) {
                struct sock_watch *w = f->watches;
                f->watches = w->next;
                close_watch(w);
        }
        if (!uv_is_closing((uv_handle_t *)&f->ares_timer))
                uv_close((uv_handle_t *)&f->ares_timer, ares_timer_closed);
}

/* ---- channels ------------------------------------------------------------------------ */

static int ares_library_status = ARES_ENOTINITIALIZED;

/* Once per process, never cleaned up: ares_library_init is not thread-safe in 1.18. */
static void init_ares_library(void)
{
        ares_library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

int vd_fwd_ares_library(vd_error *err)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, init_ares_library);
        if (ares_library_status != ARES_SUCCESS)
                return vd_error_set(err, "forwarder: c-ares library init: %s",
                                    ares_strerror(ares_library_status));
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
int vd_fwd_channels_open(vd_forwarder *f, struct server *s, unsigned n, vd_error *err)
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
                 * on that channel.) */
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

void vd_fwd_channels_destroy(vd_forwarder *f)
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
