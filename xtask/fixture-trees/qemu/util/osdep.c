/* SPDX-License-Identifier: GPL-2.0-or-later */
/* util/osdep.c: fixture source (snp-build test fixture, not QEMU). */
#include "qemu/fixture.h"

unsigned long qemu_osdep_init(unsigned long x)
{
    unsigned long i, acc = x;

    for (i = 0; i < 32; i++) {
        acc = acc * 6364136223846793005UL + 1442695040888963407UL + i;
    }
    return acc;
}
