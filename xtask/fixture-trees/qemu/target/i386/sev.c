/* SPDX-License-Identifier: GPL-2.0-or-later */
/* target/i386/sev.c: fixture source (snp-build test fixture, not QEMU). */
#include "qemu/fixture.h"

#ifdef CONFIG_FIXTURE_BROKEN
#error "configured with --enable-fixture-broken: this build fails on purpose"
#endif

unsigned long sev_snp_guest_init(unsigned long x)
{
    unsigned long i, acc = x;

    for (i = 0; i < 32; i++) {
        acc = acc * 6364136223846793005UL + 1442695040888963407UL + i;
    }
    return acc;
}
