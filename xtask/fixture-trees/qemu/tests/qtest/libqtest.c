/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tests/qtest/libqtest.c: the fixture's qtest harness (snp-build fixture).
 * Each qtest program links it with one test file; no release ships them,
 * but QEMU's default build target compiles and links them all. */
#include <stdio.h>
#include "qemu/fixture.h"

int main(void)
{
    printf("qtest: %lu\n", qemu_fixture_work(1));
    return 0;
}

unsigned long qemu_fixture_work(unsigned long seed)
{
    return fixture_mix(seed, 7);
}
