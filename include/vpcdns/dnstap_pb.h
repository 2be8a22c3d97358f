/* dnstap_pb.h — the protobuf encoding of one dnstap.Dnstap frame (type MESSAGE) holding one
 * dnstap.Message, written by hand from the dnstap schema's field numbers. Pure: no I/O, no
 * allocation; the caller owns every buffer. */
#ifndef VPCDNS_DNSTAP_PB_H
#define VPCDNS_DNSTAP_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Message.Type values used here */
#define VD_DNSTAP_CLIENT_QUERY 5
#define VD_DNSTAP_CLIENT_RESPONSE 6
#define VD_DNSTAP_FORWARDER_QUERY 7
#define VD_DNSTAP_FORWARDER_RESPONSE 8
/* SocketFamily, SocketProtocol */
#define VD_DNSTAP_INET 1
#define VD_DNSTAP_INET6 2
#define VD_DNSTAP_UDP 1
#define VD_DNSTAP_TCP 2

typedef struct vd_dnstap_msg {
        unsigned type;                                   /* VD_DNSTAP_CLIENT_QUERY ... */
        unsigned family;                                 /* VD_DNSTAP_INET or VD_DNSTAP_INET6 */
        unsigned protocol;                               /* VD_DNSTAP_UDP or VD_DNSTAP_TCP */
        const uint8_t *query_address, *response_address; /* 4 or 16 bytes; NULL: left out */
        size_t address_len;
        uint32_t query_port, response_port; /* 0: left out */
        bool has_query_time, has_response_time;
        uint64_t query_time_sec, response_time_sec;
        uint32_t query_time_nsec, response_time_nsec;
        const uint8_t *query_message, *response_message; /* NULL: left out */
        size_t query_message_len, response_message_len;
} vd_dnstap_msg;

/* Encodes Dnstap{identity, version (both optional: NULL), type MESSAGE, message m} into out.
 * Returns the length, or 0 when cap is too small; with out NULL, the length it would take. */
size_t vd_dnstap_encode(const vd_dnstap_msg *m, const char *identity, const char *version,
                        uint8_t *out, size_t cap);

#endif
