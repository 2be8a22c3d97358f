/* udp.c — the UDP transport of one worker: receives datagrams in batches (recvmmsg through
 * libuv) into a per-worker buffer pool, runs each through vd_query_handle and queues the
 * response; when the receive batch ends the queue leaves in one sendmmsg (a response that
 * does not fit a queue slot, or one outside a batch, is sent at once). Forwarded queries carry a
 * small record (client address, socket, pending slot) that is recycled through a per-worker free
 * list. Never blocks, never formats text; the only allocation is a pending record when the free
 * list is empty.
 *
 * Per-client limits: a datagram from a client outside the access list gets REFUSED or
 * nothing (deny_action); a client with max_pending queries upstream gets SERVFAIL for the
 * next one that would go upstream (query.c answers it); every response, local or forwarded,
 * passes the response rate limiter, which may drop it or send an empty TC answer instead. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "transport.h"
#include "vpcdns/wire.h"

/* What a forwarded query needs to send its reply later. */
typedef struct vd_udp_pending {
        struct vd_udp_pending *next; /* free-list link */
        vd_worker *worker;
        uv_udp_t *handle;
        int pending_slot; /* the client's slot in worker->pending, -1 when not counted */
        struct sockaddr_storage peer;
} vd_udp_pending;

/* Responses of one receive batch. libuv's send queue of our handles is always empty (only
 * uv_udp_try_send is used), so writing to the socket directly keeps datagrams in order. */
struct vd_udp_sendq {
        bool batching; /* inside a receive batch: queue instead of sending */
        size_t n;
        int fd[VD_UDP_SEND_BATCH];
        struct mmsghdr msgs[VD_UDP_SEND_BATCH];
        struct iovec iov[VD_UDP_SEND_BATCH];
        struct sockaddr_storage peer[VD_UDP_SEND_BATCH];
        uint8_t data[VD_UDP_SEND_BATCH][VD_UDP_PAYLOAD];
};

int vd_udp_worker_init(vd_worker *w)
{
        w->udp_sendq = calloc(1, sizeof(*w->udp_sendq));
        if (w->udp_sendq == NULL)
                return -ENOMEM;
        for (size_t i = 0; i < VD_UDP_POOL_BUFFERS; i++) {
                w->udp_pool[i] = malloc((size_t)VD_UDP_BATCH * VD_UDP_CHUNK_SIZE);
                if (w->udp_pool[i] == NULL)
                        return -ENOMEM;
                w->udp_pool_busy[i] = false;
        }
        return 0;
}

void vd_udp_worker_release(vd_worker *w)
{
        free(w->udp_sendq);
        w->udp_sendq = NULL;
        for (size_t i = 0; i < VD_UDP_POOL_BUFFERS; i++) {
                free(w->udp_pool[i]);
                w->udp_pool[i] = NULL;
        }
        while (w->udp_free != NULL) {
                vd_udp_pending *p = w->udp_free;
                w->udp_free = p->next;
                free(p);
        }
        w->udp_free_count = 0;
}

static void pool_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
        vd_udp_listener *l = handle->data;
        vd_worker *w = l->worker;

        (void)suggested;
        for (size_t i = 0; i < VD_UDP_POOL_BUFFERS; i++) {
                if (!w->udp_pool_busy[i] && w->udp_pool[i] != NULL) {
                        w->udp_pool_busy[i] = true;
                        /* With recvmmsg libuv reads one datagram per 64 KiB chunk; without it
                         * one datagram into the first chunk. */
                        size_t len = uv_udp_using_recvmmsg((uv_udp_t *)handle)
                                         ? (size_t)VD_UDP_BATCH * VD_UDP_CHUNK_SIZE
                                         : VD_UDP_CHUNK_SIZE;
                        *buf = uv_buf_init((char *)w->udp_pool[i], (unsigned)len);
                        return;
                }
        }
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS and retries later */
}

static void pool_release(vd_worker *w, const char *base)
{
        if (base == NULL)
                return;
        for (size_t i = 0; i < VD_UDP_POOL_BUFFERS; i++) {
                if ((const char *)w->udp_pool[i] == base) {
                        w->udp_pool_busy[i] = false;
                        return;
                }
        }
}

static vd_udp_pending *pending_get(vd_worker *w)
{
        vd_udp_pending *p = w->udp_free;
        if (p != NULL) {
                w->udp_free = p->next;
                w->udp_free_count--;
                return p;
        }
        p = malloc(sizeof(*p));
        if (p != NULL)
                p->worker = w;
        return p;
}

static void pending_put(vd_worker *w, vd_udp_pending *p)
{
        if (w->udp_free_count >= VD_UDP_FREE_MAX) {
                free(p);
                return;
        }
        p->next = w->udp_free;
        w->udp_free = p;
        w->udp_free_count++;
}

/* Sends the queued responses, one sendmmsg per run of the same socket. A full socket buffer
 * drops the rest of the run (as uv_udp_try_send's EAGAIN would); another error skips one. */
static void sendq_flush(vd_worker *w)
{
        struct vd_udp_sendq *q = w->udp_sendq;
        size_t i = 0;
        while (i < q->n) {
                size_t run = 1;
                while (i + run < q->n && q->fd[i + run] == q->fd[i])
                        run++;
                int r = sendmmsg(q->fd[i], q->msgs + i, (unsigned)run, 0);
                if (r > 0) {
                        i += (size_t)r;
                } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        w->transport.udp_send_dropped += run;
                        i += run;
                } else {
                        w->transport.udp_errors++;
                        i++;
                }
        }
        q->n = 0;
}

static void send_datagram(vd_worker *w, uv_udp_t *handle, const uint8_t *data, size_t len,
                          const struct sockaddr *peer)
{
        struct vd_udp_sendq *q = w->udp_sendq;
        int fd = ((const vd_udp_listener *)handle->data)->fd;
        if (q->batching && len <= VD_UDP_PAYLOAD && fd >= 0) {
                if (q->n == VD_UDP_SEND_BATCH)
                        sendq_flush(w);
                size_t k = q->n++;
                socklen_t peer_len = peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                 : sizeof(struct sockaddr_in);
                memcpy(q->data[k], data, len);
                memcpy(&q->peer[k], peer, peer_len);
                q->fd[k] = fd;
                q->iov[k] = (struct iovec){.iov_base = q->data[k], .iov_len = len};
                q->msgs[k].msg_hdr = (struct msghdr){.msg_name = &q->peer[k],
                                                     .msg_namelen = peer_len,
                                                     .msg_iov = &q->iov[k],
                                                     .msg_iovlen = 1};
                return;
        }
        uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_udp_try_send(handle, &buf, 1, peer);
        if (r == UV_EAGAIN)
                w->transport.udp_send_dropped++;
        else if (r < 0)
                w->transport.udp_errors++;
}

/* Sends a response through the rate limiter. resp may be w->out. */
static void send_response(vd_worker *w, uv_udp_t *handle, const uint8_t *resp, size_t len,
                          const struct sockaddr *peer)
{
        if (w->rrl != NULL) {
                uint64_t now_s = uv_now(&w->loop) / 1000;
                switch (vd_ratelimit_check(w->rrl, peer, now_s)) {
                case VD_RATELIMIT_SEND:
                        break;
                case VD_RATELIMIT_SLIP:
                        len = vd_ratelimit_slip(resp, len, w->out, sizeof(w->out));
                        if (len == 0)
                                return;
                        resp = w->out;
                        w->transport.rrl_slipped++;
                        break;
                case VD_RATELIMIT_DROP:
                default:
                        w->transport.rrl_dropped++;
                        return;
                }
        }
        send_datagram(w, handle, resp, len, peer);
}

/* The forwarder's answer for a query that went upstream. len 0: the forwarder is closing. */
static void udp_reply(void *arg, const uint8_t *resp, size_t len)
{
        vd_udp_pending *p = arg;
        vd_worker *w = p->worker;

        if (p->pending_slot >= 0)
                vd_transport_pending_done(w, p->pending_slot);
        if (len > 0 && !w->stopping)
                send_response(w, p->handle, resp, len, (const struct sockaddr *)&p->peer);
        pending_put(w, p);
}

size_t vd_transport_refused(const uint8_t *pkt, size_t len, uint8_t *out, size_t cap)
{
        vd_query_info qi;

        switch (vd_wire_parse_query(pkt, len, &qi)) {
        case VD_PARSE_OK:
        case VD_PARSE_NOTIMP:
        case VD_PARSE_BADVERS:
                return vd_wire_error_response(&qi, VD_RCODE_REFUSED, out, cap);
        case VD_PARSE_DROP:
        case VD_PARSE_FORMERR:
        default:
                return 0;
        }
}

/* A datagram from a client outside the access list. */
static void handle_denied(vd_worker *w, uv_udp_t *handle, const uint8_t *pkt, size_t len,
                          const struct sockaddr *peer)
{
        size_t n = 0;
        if (w->deny_action == VD_DENY_REFUSE)
                n = vd_transport_refused(pkt, len, w->out, VD_UDP_MIN);
        if (n == 0) {
                w->transport.acl_dropped++;
                return;
        }
        w->transport.acl_refused++;
        send_response(w, handle, w->out, n, peer);
}

static void handle_datagram(vd_worker *w, uv_udp_t *handle, const uint8_t *pkt, size_t len,
                            const struct sockaddr *peer)
{
        size_t peer_len;
        if (peer->sa_family == AF_INET)
                peer_len = sizeof(struct sockaddr_in);
        else if (peer->sa_family == AF_INET6)
                peer_len = sizeof(struct sockaddr_in6);
        else
                return;

        if (!vd_transport_allowed(w, peer)) {
                handle_denied(w, handle, pkt, len, peer);
                return;
        }

        vd_udp_pending *p = pending_get(w);
        if (p == NULL) {
                w->transport.udp_errors++;
                return;
        }
        p->handle = handle;
        memcpy(&p->peer, peer, peer_len);

        size_t out_len = 0;
        vd_transport_pending_begin(w, peer);
        vd_query_outcome outcome = vd_query_handle(&w->env, pkt, len, false, w->out, sizeof(w->out),
                                                   &out_len, udp_reply, p);
        p->pending_slot = vd_transport_pending_end(w, outcome);
        switch (outcome) {
        case VD_QUERY_REPLY:
                send_response(w, handle, w->out, out_len, peer);
                pending_put(w, p);
                break;
        case VD_QUERY_PENDING:
                break; /* udp_reply owns p now */
        case VD_QUERY_DROP:
        default:
                pending_put(w, p);
                break;
        }
}

/* libuv 1.44 recvmmsg protocol: each datagram arrives with UV_UDP_MMSG_CHUNK set and a buf
 * pointing inside our pool buffer (not to be released); a last call with UV_UDP_MMSG_FREE
 * (nread 0, addr NULL) hands the whole buffer back. Every other call (plain recvmsg, nothing
 * to read, errors) also hands the buffer back. */
static void udp_recv(uv_udp_t *handle, ssize_t nread, const uv_buf_t *buf,
                     const struct sockaddr *addr, unsigned flags)
{
        vd_udp_listener *l = handle->data;
        vd_worker *w = l->worker;

        /* Every datagram of a recvmmsg batch comes with UV_UDP_MMSG_CHUNK, and the batch ends
         * with a call without it: responses are queued until then. */
        w->udp_sendq->batching = (flags & UV_UDP_MMSG_CHUNK) != 0;
        if (nread < 0)
                w->transport.udp_errors++;
        else if (flags & UV_UDP_PARTIAL)
                w->transport.udp_errors++;
        else if (nread > 0 && addr != NULL && !w->stopping)
                handle_datagram(w, handle, (const uint8_t *)buf->base, (size_t)nread, addr);

        if (!(flags & UV_UDP_MMSG_CHUNK)) {
                if (w->udp_sendq->n > 0)
                        sendq_flush(w);
                pool_release(w, buf->base);
        }
}

int vd_udp_listener_open(vd_worker *w, vd_udp_listener *l, int fd)
{
        int r;

        l->worker = w;
        r = uv_udp_init_ex(&w->loop, &l->handle, AF_UNSPEC | UV_UDP_RECVMMSG);
        if (r < 0) {
                close(fd);
                return r;
        }
        l->open = true;
        l->handle.data = l;
        l->fd = -1;
        r = uv_udp_open(&l->handle, fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        l->fd = fd; /* for sendmmsg; libuv owns and closes it */
        return uv_udp_recv_start(&l->handle, pool_alloc, udp_recv);
}

void vd_udp_listener_close(vd_udp_listener *l)
{
        if (!l->open)
                return;
        l->open = false;
        uv_udp_recv_stop(&l->handle);
        uv_close((uv_handle_t *)&l->handle, NULL);
}
