/* dnstap_pb.c — owns the protobuf wire encoding of dnstap frames (dnstap_pb.h): varints,
 * fixed32 and length-delimited fields of Dnstap and Message by their schema numbers. Must
 * not do I/O or allocate: the query log's writer thread calls it with its own buffer. */
#include <string.h>

#include "vpcdns/dnstap_pb.h"

/* Field numbers of the dnstap schema. */
#define DNSTAP_IDENTITY 1
#define DNSTAP_VERSION 2
#define DNSTAP_MESSAGE 14
#define DNSTAP_TYPE 15
#define DNSTAP_TYPE_MESSAGE 1

#define MSG_TYPE 1
#define MSG_SOCKET_FAMILY 2
#define MSG_SOCKET_PROTOCOL 3
#define MSG_QUERY_ADDRESS 4
#define MSG_RESPONSE_ADDRESS 5
#define MSG_QUERY_PORT 6
#define MSG_RESPONSE_PORT 7
#define MSG_QUERY_TIME_SEC 8
#define MSG_QUERY_TIME_NSEC 9
#define MSG_QUERY_MESSAGE 10
#define MSG_RESPONSE_TIME_SEC 12
#define MSG_RESPONSE_TIME_NSEC 13
#define MSG_RESPONSE_MESSAGE 14

#define WIRE_VARINT 0
#define WIRE_LEN 2
#define WIRE_FIXED32 5

typedef struct pb {
        uint8_t *p;
        size_t cap, len;
        bool over; /* ran out of room: the result is void */
} pb;

/* p NULL: only counts (the size of an embedded message before it is written). */
static void put_byte(pb *b, uint8_t v)
{
        if (b->p == NULL) {
                b->len++;
                return;
        }
        if (b->len >= b->cap) {
                b->over = true;
                return;
        }
        b->p[b->len++] = v;
}

static void put_varint(pb *b, uint64_t v)
{
        while (v >= 0x80) {
                put_byte(b, (uint8_t)(v | 0x80));
                v >>= 7;
        }
        put_byte(b, (uint8_t)v);
}

static void put_tag(pb *b, unsigned field, unsigned wire)
{
        put_varint(b, ((uint64_t)field << 3) | wire);
}

static void put_uint(pb *b, unsigned field, uint64_t v)
{
        put_tag(b, field, WIRE_VARINT);
        put_varint(b, v);
}

static void put_fixed32(pb *b, unsigned field, uint32_t v)
{
        put_tag(b, field, WIRE_FIXED32);
        for (int i = 0; i < 4; i++)
                put_byte(b, (uint8_t)(v >> (8 * i)));
}

static void put_bytes(pb *b, unsigned field, const void *data, size_t len)
{
        put_tag(b, field, WIRE_LEN);
        put_varint(b, len);
        if (b->p == NULL) {
                b->len += len;
                return;
        }
        if (b->over || b->cap - b->len < len) {
                b->over = true;
                return;
        }
        memcpy(b->p + b->len, data, len);
        b->len += len;
}

static void put_message(pb *b, const vd_dnstap_msg *m)
{
        put_uint(b, MSG_TYPE, m->type);
        put_uint(b, MSG_SOCKET_FAMILY, m->family);
        put_uint(b, MSG_SOCKET_PROTOCOL, m->protocol);
        if (m->query_address != NULL)
                put_bytes(b, MSG_QUERY_ADDRESS, m->query_address, m->address_len);
        if (m->response_address != NULL)
                put_bytes(b, MSG_RESPONSE_ADDRESS, m->response_address, m->address_len);
        if (m->query_port != 0)
                put_uint(b, MSG_QUERY_PORT, m->query_port);
        if (m->response_port != 0)
                put_uint(b, MSG_RESPONSE_PORT, m->response_port);
        if (m->has_query_time) {
                put_uint(b, MSG_QUERY_TIME_SEC, m->query_time_sec);
                put_fixed32(b, MSG_QUERY_TIME_NSEC, m->query_time_nsec);
        }
        if (m->query_message != NULL)
                put_bytes(b, MSG_QUERY_MESSAGE, m->query_message, m->query_message_len);
        if (m->has_response_time) {
                put_uint(b, MSG_RESPONSE_TIME_SEC, m->response_time_sec);
                put_fixed32(b, MSG_RESPONSE_TIME_NSEC, m->response_time_nsec);
        }
        if (m->response_message != NULL)
                put_bytes(b, MSG_RESPONSE_MESSAGE, m->response_message, m->response_message_len);
}

size_t vd_dnstap_encode(const vd_dnstap_msg *m, const char *identity, const char *version,
                        uint8_t *out, size_t cap)
{
        pb b = {.p = out, .cap = cap};
        if (identity != NULL)
                put_bytes(&b, DNSTAP_IDENTITY, identity, strlen(identity));
        if (version != NULL)
                put_bytes(&b, DNSTAP_VERSION, version, strlen(version));
        pb size = {.p = NULL}; /* counts the message first: its length comes before it */
        put_message(&size, m);
        put_tag(&b, DNSTAP_MESSAGE, WIRE_LEN);
        put_varint(&b, size.len);
        put_message(&b, m);
        put_uint(&b, DNSTAP_TYPE, DNSTAP_TYPE_MESSAGE);
        return b.over ? 0 : b.len;
}
