/* forward_random.h — the forwarder's randomness: upstream query IDs and DNS 0x20 letter case,
 * from the kernel's CSPRNG through a small pool. Private to resolver/forward*.c and their
 * tests. One per forwarder; not thread-safe. It knows nothing of sockets or c-ares: whether an
 * ID is still in use is asked of the caller. */
#ifndef VPCDNS_FORWARD_RANDOM_H
#define VPCDNS_FORWARD_RANDOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vd_fwd_random {
        size_t pos; /* next unused octet of pool; sizeof(pool): empty */
        uint16_t last_id;
        uint8_t pool[256];
} vd_fwd_random;

void vd_fwd_random_init(vd_fwd_random *r);

/* n ≤ 256 octets from the CSPRNG. 0 or a negative errno (getrandom failed). */
int vd_fwd_random_bytes(vd_fwd_random *r, uint8_t *out, size_t n);
int vd_fwd_random_u16(vd_fwd_random *r, uint16_t *out);

/* A query ID that differs from the client's, from the previous one and from every ID for which
 * in_use(arg, id) is true. -EAGAIN when 64 draws all missed (the ID space is nearly full). */
typedef bool (*vd_fwd_id_in_use_fn)(const void *arg, uint16_t id);
int vd_fwd_random_id(vd_fwd_random *r, uint16_t client_id, vd_fwd_id_in_use_fn in_use,
                     const void *arg, uint16_t *out);

/* DNS 0x20: out gets the lower-cased wire name lower (len octets) with every letter in a random
 * case. */
int vd_fwd_random_case(vd_fwd_random *r, const uint8_t *lower, size_t len, uint8_t *out);

#endif
