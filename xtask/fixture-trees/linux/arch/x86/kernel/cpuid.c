// SPDX-License-Identifier: GPL-2.0
/* arch/x86/kernel/cpuid.c: fixture source (snp-build test fixture, not Linux). */
#include <linux/fixture.h>

unsigned long cpuid_fixture_init(unsigned long x)
{
	unsigned long i, acc = 0;

	for (i = 0; i < 64; i++)
		acc += fixture_mix(x + i, i);
	return acc;
}
