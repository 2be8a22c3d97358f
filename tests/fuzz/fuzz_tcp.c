/* fuzz_tcp.c — libFuzzer harness for TCP framing and the connection state machine (tcp.c,
 * RFC 7766) through the real server: one vd_server on 127.0.0.1 runs in a thread of the fuzzing
 * process (so its code is instrumented and covered), serving the example snapshot with no
 * upstream. Each input is written to a fresh connection in chunks whose size the first byte
 * chooses (exercising reassembly of split and merged frames), then the write side is shut and
 * every framed reply is read until the server closes. Invariants: every reply is a well-framed
 * DNS response that ldns parses, carrying the ID of a complete frame that was sent, and there
 * are never more replies than complete frames. Loopback only; every wait is bounded. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <ldns/ldns.h>

#include "fuzz_util.h"
#include "vpcdns/acl.h"
#include "vpcdns/aws.h"
#include "vpcdns/config.h"
#include "vpcdns/server.h"
#include "vpcdns/zonefile.h"

#ifndef VD_SOURCE_DIR
#error "build with -DVD_SOURCE_DIR=\"/path/to/repo\""
#endif

#define MAX_REPLY_BYTES (4u << 20)

static uint16_t port;
static uint8_t *replies;

static void *serve(void *arg)
{
        vd_server_run(arg);
        return NULL;
}

static uint16_t free_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
        FUZZ_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
        close(fd);
        return ntohs(a.sin_port);
}

static int connect_server(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct timeval tv = {.tv_sec = 3};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        FUZZ_CHECK(fd >= 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
                close(fd);
                return -1;
        }
        return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        vd_config cfg;
        vd_server *srv = NULL;
        char listen[32];
        pthread_t thread;

        fuzz_setup();
        vd_builder *b = vd_builder_new();
        FUZZ_CHECK(b != NULL);
        if (vd_aws_load(b, VD_SOURCE_DIR "/zones/example", NULL, &err) != 0 ||
            vd_zonefile_load(b, VD_SOURCE_DIR "/zones/example/corp.zone", NULL, &err) != 0 ||
            vd_builder_finish(b, &snap, &err) != 0) {
                fprintf(stderr, "fuzz_tcp: cannot load the example snapshot: %s\n", err.msg);
                abort();
        }
        vd_builder_free(b);

        /* No vd_config_finalize: it would take upstreams from resolv.conf. */
        vd_config_init(&cfg);
        port = free_port();
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
        FUZZ_CHECK(vd_addr_parse(listen, 53, &cfg.listen[0]) == 0);
        cfg.n_listen = 1;
        cfg.workers = 1;
        cfg.tcp_idle_timeout_ms = 2000;
        cfg.tcp_max_connections_per_client = 1000000;
        cfg.n_allow = vd_acl_defaults(cfg.allow, VD_MAX_ACL);
        if (vd_server_new(&cfg, snap, &srv, &err) != 0) {
                fprintf(stderr, "fuzz_tcp: cannot start the server: %s\n", err.msg);
                abort();
        }
        vd_snapshot_unref(snap); /* the server holds its own reference */
        vd_config_free(&cfg);
        FUZZ_CHECK(pthread_create(&thread, NULL, serve, srv) == 0);
        for (int i = 0; i < 200; i++) { /* up to 2 s for the first answer */
                int fd = connect_server();
                if (fd >= 0) {
                        close(fd);
                        break;
                }
                usleep(10000);
        }
        replies = malloc(MAX_REPLY_BYTES);
        FUZZ_CHECK(replies != NULL);
        return 0;
}

/* IDs of the complete frames before the first length-0 frame, and their count. */
static size_t sent_frames(const uint8_t *p, size_t n, uint16_t *ids, size_t cap)
{
        size_t count = 0, off = 0;
        while (off + 2 <= n) {
                size_t len = ((size_t)p[off] << 8) | p[off + 1];
                if (len == 0 || off + 2 + len > n)
                        break;
                if (count < cap)
                        ids[count] = len >= 2 ? (uint16_t)((p[off + 2] << 8) | p[off + 3]) : 0;
                count++;
                off += 2 + len;
        }
        return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint16_t ids[65536];
        if (size < 1)
                return 0;
        size_t chunk = (size_t)(data[0] % 64) + 1;
        const uint8_t *payload = data + 1;
        size_t n = size - 1;
        size_t frames = sent_frames(payload, n, ids, sizeof(ids) / sizeof(ids[0]));

        /* Hundreds of thousands of short connections on a loaded machine: a connect may time
         * out now and then. Retry for a while; a server that stopped accepting still fails. */
        int fd = -1;
        for (int attempt = 0; attempt < 6 && fd < 0; attempt++) {
                fd = connect_server();
                if (fd < 0) {
                        fprintf(stderr, "fuzz_tcp: connect failed (%s), retrying\n",
                                strerror(errno));
                        usleep(200000u << attempt);
                }
        }
        FUZZ_CHECK(fd >= 0);
        for (size_t off = 0; off < n;) {
                size_t part = n - off < chunk ? n - off : chunk;
                ssize_t w = send(fd, payload + off, part, MSG_NOSIGNAL);
                if (w <= 0)
                        break; /* the server may close early (length 0, limits) */
                off += (size_t)w;
        }
        shutdown(fd, SHUT_WR);

        size_t got = 0;
        for (;;) {
                if (got == MAX_REPLY_BYTES)
                        break;
                ssize_t r = recv(fd, replies + got, MAX_REPLY_BYTES - got, 0);
                if (r <= 0)
                        break; /* closed by the server, reset, or the 3 s timeout */
                got += (size_t)r;
        }
        close(fd);

        size_t off = 0, count = 0;
        while (off + 2 <= got) {
                size_t len = ((size_t)replies[off] << 8) | replies[off + 1];
                FUZZ_CHECK(off + 2 + len <= got); /* a reply is never cut */
                const uint8_t *msg = replies + off + 2;
                FUZZ_CHECK(len >= VD_HEADER_LEN);
                FUZZ_CHECK(vd_wire_get16(msg + 2) & VD_FLAG_QR);
                uint16_t id = vd_wire_get16(msg);
                bool known = false;
                for (size_t i = 0; i < frames && i < sizeof(ids) / sizeof(ids[0]) && !known; i++)
                        known = ids[i] == id;
                FUZZ_CHECK(known);
                ldns_pkt *pkt = NULL;
                FUZZ_CHECK(ldns_wire2pkt(&pkt, msg, len) == LDNS_STATUS_OK);
                ldns_pkt_free(pkt);
                count++;
                off += 2 + len;
        }
        FUZZ_CHECK(off == got);
        FUZZ_CHECK(count <= frames);
        return 0;
}
