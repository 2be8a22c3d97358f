/* siphash.h — SipHash-1-3 for hash tables keyed by untrusted input. Pure; hot-path safe. */
#ifndef VPCDNS_SIPHASH_H
#define VPCDNS_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* A fresh random key from getrandom(2); should that fail, one derived from the clock and
 * addresses (weaker, still different per table and per process). */
void vd_siphash_new_key(uint64_t key[2]);

/* The 64-bit SipHash-1-3 of in[0..n) under the key (k0, k1). */
uint64_t vd_siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t n);

#endif
