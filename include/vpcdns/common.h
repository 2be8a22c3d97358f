/* common.h — definitions every module shares: the error record that loaders fill,
 * the project's assertion macro, and DNS constants. Nothing here allocates. */
#ifndef VPCDNS_COMMON_H
#define VPCDNS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define VD_VERSION "0.1.0"

/* A human-readable error: "FILE:LINE: what was expected" or "FILE: JSON.path: ...".
 * Loaders fill it and return a negative errno-style code. */
typedef struct vd_error {
        char msg[1024];
} vd_error;

/* printf-style; always NUL-terminates; err may be NULL. Returns -EINVAL so that
 * callers can write `return vd_error_set(err, ...);`. */
int vd_error_set(vd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict decimal for configuration text: digits only (no sign, space or leading '+'), at most
 * ten of them, within [min, max]. Sets *out and returns true, or returns false. */
bool vd_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out);

/* Lowers the calling thread's scheduling priority (nice +VD_BACKGROUND_NICE) so that, on a
 * busy core, the worker threads that answer always run before it: for work that may fall
 * behind (the query-log writer, compiling reloaded data) but must never delay an answer.
 * Only ever lowers; a failure is ignored (the thread then runs at the normal priority). */
#define VD_BACKGROUND_NICE 10
void vd_thread_background(void);

/* The project's assertion: checked in every build type, prints where and aborts.
 * Use it for programming errors only, never for input. */
#define VD_CHECK(cond)                                                                             \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "vpcdns: check failed: %s at %s:%d\n", #cond, __FILE__,    \
                                __LINE__);                                                         \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* DNS constants (RFC 1035, 3596, 6891) */
#define VD_NAME_MAX 255 /* octets of a name in wire form, root label included */
#define VD_LABEL_MAX 63
#define VD_HEADER_LEN 12
#define VD_UDP_PAYLOAD 1232 /* our EDNS payload size */
#define VD_UDP_MIN 512
#define VD_TCP_MAX 65535
#define VD_ENDPOINT_TTL 60 /* what the VPC resolver gives */

enum vd_rrtype {
        VD_TYPE_A = 1,
        VD_TYPE_NS = 2,
        VD_TYPE_CNAME = 5,
        VD_TYPE_SOA = 6,
        VD_TYPE_PTR = 12,
        VD_TYPE_MX = 15,
        VD_TYPE_TXT = 16,
        VD_TYPE_AAAA = 28,
        VD_TYPE_SRV = 33,
        VD_TYPE_OPT = 41,
        VD_TYPE_ANY = 255,
};
#define VD_CLASS_IN 1

enum vd_rcode {
        VD_RCODE_NOERROR = 0,
        VD_RCODE_FORMERR = 1,
        VD_RCODE_SERVFAIL = 2,
        VD_RCODE_NXDOMAIN = 3,
        VD_RCODE_NOTIMP = 4,
        VD_RCODE_REFUSED = 5,
        VD_RCODE_BADVERS = 16, /* extended: upper bits travel in the OPT record */
};

#endif
