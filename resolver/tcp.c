/* tcp.c — the TCP transport of one worker (RFC 7766): accepts connections up to the
 * worker's cap, reassembles 2-byte length framed queries from a per-connection buffer, runs
 * each through vd_query_handle and writes the responses (local ones at once, forwarded ones
 * when they arrive, so pipelined answers may come back in any order).
 *
 * Limits: tcp_max_connections per worker — a connection beyond it is accepted and closed at
 * once (the client learns immediately instead of waiting in a backlog that the kernel keeps
 * filling through SO_REUSEPORT); tcp_max_per_client connections per client address, counted
 * in the table all workers share, same treatment; tcp_max_queries per connection — after that many
 * queries the connection reads no more, answers what it has and closes once the writes drained;
 * VD_TCP_MAX_INFLIGHT forwarded queries per connection — reading pauses until one completes;
 * VD_TCP_MAX_UNSENT bytes queued in libuv — a client that does not read its answers is closed;
 * tcp_idle_timeout_ms without a complete query or a finished write closes the connection
 * unless queries are still in flight (partial reads never reset it: a client trickling one
 * byte at a time is closed like a silent one).
 *
 * Access control is decided once per connection at accept: a client outside the access list
 * is closed at once (deny_action drop) or gets REFUSED for every query (refuse). Forwarded
 * queries count against the peer address's pending limit like UDP ones. TCP is exempt from
 * response rate limiting: the handshake proves the source address.
 *
 * Lifetime: a connection holds one reference while its handles are open and one per
 * forwarded query; it is freed when both close callbacks ran and the last reply (len 0 on
 * shutdown) came back. A reply for a closing connection is discarded. A query of length 0
 * or the client's EOF ends the connection after in-flight answers were written. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport.h"
#include "vpcdns/wire.h"

#define TCP_READ_CHUNK 4096
#define TCP_RBUF_MAX (2 * (2 + VD_TCP_MAX))

typedef struct vd_tcp_conn {
        uv_tcp_t handle; /* handle.data and idle.data point back here */
        uv_timer_t idle;
        uv_shutdown_t shutdown_req;
        vd_worker *worker;
        struct vd_tcp_conn *prev, *next; /* worker->tcp_conns while not closing */
        uint8_t *rbuf;                   /* unprocessed bytes from the client */
        size_t rlen, rcap;
        unsigned refs;         /* 1 for the handles + 1 per forwarded query */
        unsigned handles_open; /* close callbacks still to come */
        unsigned inflight;     /* forwarded queries not answered yet */
        unsigned counted;      /* of those, counted in worker->env.pending (at pending_slot) */
        int pending_slot;      /* the peer's slot in worker->env.pending while counted > 0 */
        int client_slot;       /* the peer's slot in worker->tcp_clients, -1 when not counted */
        unsigned queries;      /* messages handled, for tcp_max_queries */
        struct sockaddr_storage peer;
        struct sockaddr_storage local; /* our end, for the query log (only when it is on) */
        bool denied; /* outside the access list (deny_action refuse): every query is REFUSED */
        bool closing;
        bool reading;
        bool finishing; /* EOF or length-0 message: answer what is in flight, then close */
        bool shut;      /* uv_shutdown issued */
        /* stats: when each forwarded query arrived, by its ID, to time its reply */
        unsigned n_started;
        uint16_t started_id[VD_TCP_MAX_INFLIGHT];
        uint64_t started_ns[VD_TCP_MAX_INFLIGHT];
} vd_tcp_conn;

/* stats: counts a forwarded query's reply, timed from when the query with its ID arrived. */
static void count_reply(vd_tcp_conn *c, const uint8_t *resp, size_t len, unsigned source)
{
        uint64_t now = vd_stats_now_ns(), start = now;
        uint16_t id = len >= 2 ? vd_wire_get16(resp) : 0;
        for (unsigned i = 0; i < c->n_started; i++) {
                if (c->started_id[i] == id) {
                        start = c->started_ns[i];
                        c->n_started--;
                        c->started_id[i] = c->started_id[c->n_started];
                        c->started_ns[i] = c->started_ns[c->n_started];
                        break;
                }
        }
        vd_stats_response(&c->worker->env.stats, vd_stats_rcode_of(resp, len),
                          (vd_stats_source)source, now - start);
}

typedef struct tcp_write {
        uv_write_t req;
        uint8_t data[]; /* what uv_try_write left of the 2-byte length + message */
} tcp_write;

static void conn_process(vd_tcp_conn *c);

static void conn_unref(vd_tcp_conn *c)
{
        VD_CHECK(c->refs > 0);
        if (--c->refs == 0) {
                free(c->rbuf);
                free(c);
        }
}

static void conn_on_close(uv_handle_t *h)
{
        vd_tcp_conn *c = h->data;
        if (--c->handles_open == 0)
                conn_unref(c);
}

static void conn_close(vd_tcp_conn *c)
{
        vd_worker *w = c->worker;

        if (c->closing)
                return;
        c->closing = true;
        c->reading = false;
        if (c->prev != NULL)
                c->prev->next = c->next;
        else
                w->tcp_conns = c->next;
        if (c->next != NULL)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        w->tcp_count--;
        vd_count_set(&w->tcp_open, w->tcp_count);
        if (c->client_slot >= 0) {
                vd_ratelimit_pending_dec(w->tcp_clients, c->client_slot);
                c->client_slot = -1;
        }
        uv_close((uv_handle_t *)&c->handle, conn_on_close);
        uv_close((uv_handle_t *)&c->idle, conn_on_close);
}

static void idle_cb(uv_timer_t *t);

static void idle_restart(vd_tcp_conn *c)
{
        unsigned ms = c->worker->tcp_idle_timeout_ms;
        if (ms > 0 && !c->closing)
                uv_timer_start(&c->idle, idle_cb, ms, 0);
}

static void idle_cb(uv_timer_t *t)
{
        vd_tcp_conn *c = t->data;
        if (c->inflight > 0) { /* waiting for upstream is not idleness */
                idle_restart(c);
                return;
        }
        vd_count_add(&c->worker->env.counters.tcp_idle_closed, 1);
        conn_close(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
        vd_tcp_conn *c = req->handle->data;
        (void)status;
        conn_close(c);
}

/* After EOF or a length-0 message: once nothing is in flight, flush the queued writes and
 * close. */
static void conn_finish(vd_tcp_conn *c)
{
        if (c->closing || c->shut || c->inflight > 0)
                return;
        c->shut = true;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->handle, shutdown_cb) < 0)
                conn_close(c);
}

static void write_cb(uv_write_t *req, int status)
{
        tcp_write *wr = (tcp_write *)req;
        vd_tcp_conn *c = req->handle->data;

        free(wr);
        if (status < 0) {
                conn_close(c); /* no-op when the close cancelled this write */
                return;
        }
        idle_restart(c);
}

/* Sends one framed message. Most answers go straight to the socket with uv_try_write and no
 * copy; only what the kernel does not take now is copied and queued (libuv refuses a try
 * while writes are queued, so order is kept). */
static void conn_send(vd_tcp_conn *c, const uint8_t *msg, size_t len)
{
        if (c->closing || len == 0 || len > VD_TCP_MAX)
                return;
        uint8_t prefix[2];
        vd_wire_put16(prefix, (uint16_t)len);
        size_t total = len + 2;
        uv_buf_t bufs[2] = {uv_buf_init((char *)prefix, 2),
                            uv_buf_init((char *)msg, (unsigned)len)};
        int n = uv_try_write((uv_stream_t *)&c->handle, bufs, 2);
        if (n == UV_EAGAIN)
                n = 0;
        if (n < 0) {
                conn_close(c);
                return;
        }
        size_t done = (size_t)n;
        if (done == total) {
                idle_restart(c);
                return;
        }
        size_t rest = total - done;
        tcp_write *wr = malloc(sizeof(*wr) + rest);
        if (wr == NULL) {
                conn_close(c);
                return;
        }
        if (done < 2) {
                memcpy(wr->data, prefix + done, 2 - done);
                memcpy(wr->data + 2 - done, msg, len);
        } else {
                memcpy(wr->data, msg + (done - 2), rest);
        }
        uv_buf_t buf = uv_buf_init((char *)wr->data, (unsigned)rest);
        if (uv_write(&wr->req, (uv_stream_t *)&c->handle, &buf, 1, write_cb) < 0) {
                free(wr);
                conn_close(c);
                return;
        }
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->handle) > VD_TCP_MAX_UNSENT) {
                vd_count_add(&c->worker->env.counters.tcp_slow_closed, 1);
                conn_close(c);
        }
}

/* conn_send for an answer: logged first when the query log is on. */
static void conn_answer(vd_tcp_conn *c, const uint8_t *msg, size_t len)
{
        vd_worker *w = c->worker;
        if (w->qlog != NULL && !c->closing)
                vd_transport_qlog(w, VD_QLOG_RESPONSE, true, (const struct sockaddr *)&c->peer,
                                  (const struct sockaddr *)&c->local, msg, len);
        conn_send(c, msg, len);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

static void reading_update(vd_tcp_conn *c)
{
        bool want = !c->closing && !c->finishing && c->inflight < VD_TCP_MAX_INFLIGHT;
        if (want && !c->reading) {
                if (uv_read_start((uv_stream_t *)&c->handle, alloc_cb, read_cb) < 0) {
                        conn_close(c);
                        return;
                }
                c->reading = true;
        } else if (!want && c->reading) {
                uv_read_stop((uv_stream_t *)&c->handle);
                c->reading = false;
        }
}

/* The forwarder's answer to one of this connection's queries; len 0 on shutdown. */
static void tcp_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        vd_tcp_conn *c = arg;

        VD_CHECK(c->inflight > 0);
        c->inflight--;
        if (c->counted > 0) {
                /* which of the in-flight queries this was does not matter: the count is */
                c->counted--;
                vd_ratelimit_pending_dec(c->worker->env.pending, c->pending_slot);
        }
        if (!c->closing && !c->worker->stopping) {
                if (len > 0) {
                        count_reply(c, resp, len, source);
                        conn_answer(c, resp, len);
                        idle_restart(c);
                }
                if (c->finishing)
                        conn_finish(c);
                else if (!c->reading)
                        conn_process(c); /* reading was paused on the in-flight cap */
        }
        conn_unref(c);
}

static void handle_message(vd_tcp_conn *c, const uint8_t *msg, size_t len)
{
        vd_worker *w = c->worker;
        size_t out_len = 0;

        if (w->qlog != NULL)
                vd_transport_qlog(w, VD_QLOG_QUERY, true, (const struct sockaddr *)&c->peer,
                                  (const struct sockaddr *)&c->local, msg, len);
        if (c->denied) {
                out_len = vd_query_refused(msg, len, w->out, VD_TCP_MAX);
                if (out_len > 0) {
                        vd_count_add(&w->env.counters.acl_refused, 1);
                        conn_answer(c, w->out, out_len);
                } else {
                        vd_count_add(&w->env.counters.acl_dropped, 1);
                }
                idle_restart(c);
                return;
        }

        c->refs++;
        c->inflight++;
        vd_query_client client = {.addr = (const struct sockaddr *)&c->peer};
        vd_query_outcome outcome = vd_query_handle(&w->env, &client, msg, len, true, w->out,
                                                   VD_TCP_MAX, &out_len, tcp_reply, c);
        int slot = client.pending_slot;
        if (slot >= 0) {
                /* while counted > 0 the peer's slot cannot change */
                VD_CHECK(c->counted == 0 || c->pending_slot == slot);
                c->pending_slot = slot;
                c->counted++;
        }
        if (outcome == VD_QUERY_PENDING && c->n_started < VD_TCP_MAX_INFLIGHT && len >= 2) {
                c->started_id[c->n_started] = vd_wire_get16(msg); /* stats */
                c->started_ns[c->n_started++] = w->env.stats_start_ns;
        }
        if (outcome != VD_QUERY_PENDING) {
                c->inflight--;
                c->refs--; /* never the last one: the handles still hold theirs */
        }
        if (outcome == VD_QUERY_REPLY)
                conn_answer(c, w->out, out_len);
        idle_restart(c);
}

/* Answers every complete message in the buffer, up to the in-flight cap. */
static void conn_process(vd_tcp_conn *c)
{
        size_t off = 0;

        while (!c->closing && !c->finishing && c->inflight < VD_TCP_MAX_INFLIGHT) {
                size_t avail = c->rlen - off;
                if (avail < 2)
                        break;
                size_t len = vd_wire_get16(c->rbuf + off);
                if (len == 0) {
                        c->finishing = true;
                        break;
                }
                if (avail < 2 + len)
                        break;
                handle_message(c, c->rbuf + off + 2, len);
                off += 2 + len;
                unsigned max = c->worker->tcp_max_queries;
                if (max > 0 && ++c->queries >= max && !c->closing) {
                        vd_count_add(&c->worker->env.counters.tcp_query_limit_closed, 1);
                        c->finishing = true; /* answer what is in flight, then close */
                        break;
                }
        }
        if (c->finishing || c->closing) {
                c->rlen = 0; /* whatever follows a length-0 message is ignored */
        } else if (off > 0) {
                memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                c->rlen -= off;
        }
        reading_update(c);
        if (c->finishing)
                conn_finish(c);
}

/* Reads go straight into the connection's buffer, after the bytes not yet processed; it
 * grows to hold one whole message and never beyond TCP_RBUF_MAX. */
static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
        vd_tcp_conn *c = handle->data;
        size_t want = c->rlen + TCP_READ_CHUNK;

        (void)suggested;
        if (c->rlen >= 2) {
                size_t need = 2 + (size_t)vd_wire_get16(c->rbuf);
                if (need > want)
                        want = need;
        }
        if (want > TCP_RBUF_MAX)
                want = TCP_RBUF_MAX;
        if (c->rcap < want) {
                uint8_t *n = realloc(c->rbuf, want);
                if (n != NULL) {
                        c->rbuf = n;
                        c->rcap = want;
                }
        }
        if (c->rbuf == NULL || c->rcap == c->rlen) {
                *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
                return;
        }
        *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
        vd_tcp_conn *c = stream->data;

        (void)buf;
        if (c->closing)
                return;
        if (nread == UV_EOF) {
                c->finishing = true;
                c->rlen = 0;
                reading_update(c);
                conn_finish(c);
                return;
        }
        if (nread < 0) {
                conn_close(c);
                return;
        }
        if (nread == 0)
                return;
        c->rlen += (size_t)nread;
        conn_process(c);
}

static void reject_on_close(uv_handle_t *h)
{
        free(h);
}

static void reject(vd_worker *w, uv_stream_t *server)
{
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t == NULL)
                return;
        uv_tcp_init(&w->loop, t);
        (void)uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, reject_on_close);
        vd_count_add(&w->env.counters.tcp_rejected, 1);
}

static void on_connection(uv_stream_t *server, int status)
{
        vd_tcp_listener *l = server->data;
        vd_worker *w = l->worker;

        if (status < 0 && !w->stopping) {
                int fd = -1;
                (void)uv_fileno((const uv_handle_t *)server, &fd);
                vd_transport_listener_error(w, "tcp", fd, status, &l->last_error);
        }
        if (status < 0 || w->stopping)
                return;
        if (w->tcp_count >= w->tcp_max_connections) {
                reject(w, server);
                return;
        }
        vd_tcp_conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
                reject(w, server);
                return;
        }
        c->worker = w;
        c->refs = 1;
        c->handles_open = 2;
        c->pending_slot = -1;
        c->client_slot = -1;
        uv_tcp_init(&w->loop, &c->handle);
        uv_timer_init(&w->loop, &c->idle);
        c->handle.data = c;
        c->idle.data = c;
        c->next = w->tcp_conns;
        if (w->tcp_conns != NULL)
                w->tcp_conns->prev = c;
        w->tcp_conns = c;
        w->tcp_count++;
        vd_count_set(&w->tcp_open, w->tcp_count);

        if (uv_accept(server, (uv_stream_t *)&c->handle) < 0) {
                conn_close(c);
                return;
        }
        int peer_len = (int)sizeof(c->peer);
        if (uv_tcp_getpeername(&c->handle, (struct sockaddr *)&c->peer, &peer_len) < 0) {
                conn_close(c); /* the client already left */
                return;
        }
        if (w->qlog != NULL) {
                int local_len = (int)sizeof(c->local);
                if (uv_tcp_getsockname(&c->handle, (struct sockaddr *)&c->local, &local_len) < 0)
                        memset(&c->local, 0, sizeof(c->local));
        }
        if (!vd_transport_allowed(w, (const struct sockaddr *)&c->peer)) {
                if (w->deny_action == VD_DENY_DROP) {
                        vd_count_add(&w->env.counters.acl_dropped, 1);
                        conn_close(c);
                        return;
                }
                c->denied = true;
        }
        if (w->tcp_clients != NULL) {
                int slot = vd_ratelimit_pending_acquire(
                    w->tcp_clients, (const struct sockaddr *)&c->peer, w->tcp_max_per_client);
                if (slot == VD_PENDING_FULL) {
                        vd_count_add(&w->env.counters.tcp_client_rejected, 1);
                        conn_close(c);
                        return;
                }
                c->client_slot = slot;
        }
        vd_count_add(&w->env.counters.tcp_accepted, 1);
        uv_tcp_nodelay(&c->handle, 1);
        reading_update(c);
        idle_restart(c);
}

int vd_tcp_listener_open(vd_worker *w, vd_tcp_listener *l, int fd)
{
        int r;

        l->worker = w;
        r = uv_tcp_init(&w->loop, &l->handle);
        if (r < 0) {
                close(fd);
                return r;
        }
        l->open = true;
        l->handle.data = l;
        r = uv_tcp_open(&l->handle, fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        return uv_listen((uv_stream_t *)&l->handle, VD_TCP_BACKLOG, on_connection);
}

void vd_tcp_listener_close(vd_tcp_listener *l)
{
        if (!l->open)
                return;
        l->open = false;
        uv_close((uv_handle_t *)&l->handle, NULL);
}

void vd_tcp_close_all(vd_worker *w)
{
        while (w->tcp_conns != NULL)
                conn_close(w->tcp_conns);
}
