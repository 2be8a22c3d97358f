/* forward_random.c — query IDs and DNS 0x20 letter case from the CSPRNG (forward_random.h).
 * Owns the random pool; does no I/O but getrandom(2). */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "vpcdns/common.h"
#include "vpcdns/wire.h"

#include "forward_random.h"

#define ID_DRAWS 64

void vd_fwd_random_init(vd_fwd_random *r)
{
        memset(r, 0, sizeof(*r));
        r->pos = sizeof(r->pool); /* empty: the first use fills it */
}

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

int vd_fwd_random_bytes(vd_fwd_random *r, uint8_t *out, size_t n)
{
        VD_CHECK(n <= sizeof(r->pool));
        if (r->pos + n > sizeof(r->pool)) {
                int rc = fill_random(r->pool, sizeof(r->pool));
                if (rc < 0)
                        return rc;
                r->pos = 0;
        }
        memcpy(out, r->pool + r->pos, n);
        r->pos += n;
        return 0;
}

int vd_fwd_random_u16(vd_fwd_random *r, uint16_t *out)
{
        uint8_t b[2];
        int rc = vd_fwd_random_bytes(r, b, 2);
        if (rc == 0)
                *out = vd_wire_get16(b);
        return rc;
}

int vd_fwd_random_id(vd_fwd_random *r, uint16_t client_id, vd_fwd_id_in_use_fn in_use,
                     const void *arg, uint16_t *out)
{
        for (int draw = 0; draw < ID_DRAWS; draw++) {
                uint16_t id = 0;
                int rc = vd_fwd_random_u16(r, &id);
                if (rc < 0)
                        return rc;
                if (id == client_id || id == r->last_id || (in_use != NULL && in_use(arg, id)))
                        continue;
                r->last_id = id;
                *out = id;
                return 0;
        }
        return -EAGAIN;
}

int vd_fwd_random_case(vd_fwd_random *r, const uint8_t *lower, size_t len, uint8_t *out)
{
        uint8_t bits[VD_NAME_MAX / 8 + 1];
        if (len > VD_NAME_MAX)
                return -EINVAL;
        int rc = vd_fwd_random_bytes(r, bits, len / 8 + 1);
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
