/* tsan_criterion.c — linked into the unit tests of a VD_TSAN build only, so that Criterion
 * starts under ThreadSanitizer. Criterion (its BoxFort runner) maps an "inheritable arena" at
 * a fixed address drawn with rand_r() from 0x200000000000 + n * 16 MiB, n < 2^22; under
 * ThreadSanitizer almost all of that range is TSan's shadow and meta memory, so the mapping
 * fails and every test binary aborts at start with "Could not initialize inheritable arena"
 * (Criterion issue #274, open since 2018). The test executable's rand_r takes precedence
 * over libc's for libcriterion's call, and draws n from 0x360000..0x367fff instead: addresses
 * 0x560000000000..0x567fffffffff, application memory in ThreadSanitizer's x86-64 Linux layout
 * (BoxFort skips a draw whose pages are already mapped and draws again). Nothing else in the
 * tests or vpcdns calls rand_r. */
#include <stdlib.h>

int rand_r(unsigned int *seed)
{
        *seed = *seed * 1103515245u + 12345u;
        return (int)(0x360000u + (*seed >> 8) % 0x8000u);
}
