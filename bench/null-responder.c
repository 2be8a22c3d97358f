/* null-responder.c — the kernel floor of bench/compare.sh: a UDP "DNS server" that does no DNS
 * work at all, so that its CPU time per query is what the kernel's UDP path alone costs on
 * this machine (receive, socket buffers, send, wake-ups).
 *
 * One non-blocking socket with a 4 MiB receive buffer (as vpcdns asks for), epoll, datagrams
 * read with recvmmsg in batches of 32; each datagram of 12 or more octets gets the QR bit set
 * and goes back to its sender in one sendmmsg per batch. Nothing is parsed, nothing is
 * allocated per query. SIGTERM or SIGINT ends it (exit 0).
 *
 * It is a measuring tool, not a server: it binds only to a loopback address (127.0.0.0/8 or
 * ::1) and refuses anything else with exit status 2. */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
        BATCH = 32,            /* datagrams per recvmmsg and sendmmsg */
        SLOT_SIZE = 4096,      /* larger datagrams are dropped (MSG_TRUNC) */
        HEADER_LEN = 12,       /* a DNS header; shorter datagrams get no answer */
        BATCHES_PER_WAKE = 16, /* then back to epoll_wait, so a signal is seen under load */
        RCVBUF = 4 << 20,
};

static void usage(void)
{
        fprintf(stderr, "usage: vpcdns-null-responder ADDR:PORT   (127.0.0.0/8 or [::1] only)\n");
}

/* Parses "A.B.C.D:PORT" or "[::1]:PORT" into addr; 0, or -1 with a message. Only loopback. */
/* The refusal of an address outside loopback; returns -1. */
static int not_loopback(const char *host)
{
        fprintf(stderr,
                "vpcdns-null-responder: %s is not a loopback address; this measuring tool binds "
                "to 127.0.0.0/8 or ::1 only\n",
                host);
        return -1;
}

static int parse_listen(const char *text, struct sockaddr_storage *addr, socklen_t *len)
{
        const char *arg = text;
        char host[64];
        const char *colon = strrchr(text, ':');
        if (colon == NULL || colon == text) {
                fprintf(stderr, "vpcdns-null-responder: '%s' is not ADDR:PORT\n", text);
                return -1;
        }
        size_t host_len = (size_t)(colon - text);
        if (text[0] == '[') {
                if (host_len < 2 || text[host_len - 1] != ']') {
                        fprintf(stderr, "vpcdns-null-responder: '%s' is not [ADDR]:PORT\n", text);
                        return -1;
                }
                text++;
                host_len -= 2;
        }
        if (host_len == 0 || host_len >= sizeof(host)) {
                fprintf(stderr, "vpcdns-null-responder: bad address in '%s'\n", arg);
                return -1;
        }
        memcpy(host, text, host_len);
        host[host_len] = '\0';

        char *end = NULL;
        errno = 0;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (errno != 0 || end == colon + 1 || *end != '\0' || port == 0 || port > 65535) {
                fprintf(stderr, "vpcdns-null-responder: bad port '%s'\n", colon + 1);
                return -1;
        }

        memset(addr, 0, sizeof(*addr));
        struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
        if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
                if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
                        return not_loopback(host);
                v4->sin_family = AF_INET;
                v4->sin_port = htons((uint16_t)port);
                *len = sizeof(*v4);
                return 0;
        }
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
                if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
                        return not_loopback(host);
                v6->sin6_family = AF_INET6;
                v6->sin6_port = htons((uint16_t)port);
                *len = sizeof(*v6);
                return 0;
        }
        fprintf(stderr, "vpcdns-null-responder: '%s' is not an IPv4 or IPv6 address\n", host);
        return -1;
}

/* The receive and send vectors of one batch; the send vector points into the receive slots. */
struct batch {
        uint8_t data[BATCH][SLOT_SIZE];
        struct sockaddr_storage peers[BATCH];
        struct iovec rx_iov[BATCH];
        struct mmsghdr rx[BATCH];
        struct iovec tx_iov[BATCH];
        struct mmsghdr tx[BATCH];
};

/* Reads up to BATCHES_PER_WAKE batches and echoes them; 0, or -1 on a socket error. */
static int serve(int fd, struct batch *b)
{
        for (int round = 0; round < BATCHES_PER_WAKE; round++) {
                for (int i = 0; i < BATCH; i++) {
                        b->rx_iov[i] = (struct iovec){.iov_base = b->data[i], .iov_len = SLOT_SIZE};
                        b->rx[i].msg_hdr = (struct msghdr){
                            .msg_name = &b->peers[i],
                            .msg_namelen = sizeof(b->peers[i]),
                            .msg_iov = &b->rx_iov[i],
                            .msg_iovlen = 1,
                        };
                        b->rx[i].msg_len = 0;
                }
                int got = recvmmsg(fd, b->rx, BATCH, MSG_DONTWAIT, NULL);
                if (got < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                                return 0;
                        perror("vpcdns-null-responder: recvmmsg");
                        return -1;
                }
                int answers = 0;
                for (int i = 0; i < got; i++) {
                        unsigned len = b->rx[i].msg_len;
                        if (len < HEADER_LEN || (b->rx[i].msg_hdr.msg_flags & MSG_TRUNC))
                                continue;
                        b->data[i][2] |= 0x80; /* QR: a response */
                        b->tx_iov[answers] = (struct iovec){.iov_base = b->data[i], .iov_len = len};
                        b->tx[answers].msg_hdr = (struct msghdr){
                            .msg_name = &b->peers[i],
                            .msg_namelen = b->rx[i].msg_hdr.msg_namelen,
                            .msg_iov = &b->tx_iov[answers],
                            .msg_iovlen = 1,
                        };
                        answers++;
                }
                /* Like a server whose send buffer is full, it drops what the kernel refuses. */
                for (int sent = 0; sent < answers;) {
                        int n = sendmmsg(fd, b->tx + sent, (unsigned)(answers - sent), 0);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        sent += n;
                }
                if (got < BATCH)
                        return 0;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc != 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
                usage();
                return 2;
        }
        struct sockaddr_storage addr;
        socklen_t addr_len = 0;
        if (parse_listen(argv[1], &addr, &addr_len) != 0)
                return 2;

        int status = 1;
        int fd = -1, sig_fd = -1, ep = -1;
        struct batch *b = NULL;

        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGTERM);
        sigaddset(&stop_signals, SIGINT);
        if (sigprocmask(SIG_BLOCK, &stop_signals, NULL) != 0) {
                perror("vpcdns-null-responder: sigprocmask");
                goto out;
        }
        sig_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sig_fd < 0) {
                perror("vpcdns-null-responder: signalfd");
                goto out;
        }

        fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                perror("vpcdns-null-responder: socket");
                goto out;
        }
        int want = RCVBUF;
        /* SO_RCVBUFFORCE passes net.core.rmem_max when privileged; else the kernel caps it. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0 &&
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)) != 0)
                perror("vpcdns-null-responder: SO_RCVBUF (continuing)");
        if (bind(fd, (struct sockaddr *)&addr, addr_len) != 0) {
                fprintf(stderr, "vpcdns-null-responder: bind %s: %s\n", argv[1], strerror(errno));
                goto out;
        }

        b = calloc(1, sizeof(*b));
        if (b == NULL) {
                perror("vpcdns-null-responder: calloc");
                goto out;
        }

        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) {
                perror("vpcdns-null-responder: epoll_create1");
                goto out;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        struct epoll_event sig_ev = {.events = EPOLLIN, .data.fd = sig_fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, sig_fd, &sig_ev) != 0) {
                perror("vpcdns-null-responder: epoll_ctl");
                goto out;
        }

        for (;;) {
                struct epoll_event events[2];
                int n = epoll_wait(ep, events, 2, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("vpcdns-null-responder: epoll_wait");
                        goto out;
                }
                for (int i = 0; i < n; i++) {
                        if (events[i].data.fd == sig_fd) {
                                status = 0;
                                goto out;
                        }
                        if (serve(fd, b) != 0)
                                goto out;
                }
        }

out:
        if (ep >= 0)
                close(ep);
        if (fd >= 0)
                close(fd);
        if (sig_fd >= 0)
                close(sig_fd);
        free(b);
        return status;
}
