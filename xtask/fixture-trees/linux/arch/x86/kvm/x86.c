// SPDX-License-Identifier: GPL-2.0
/* arch/x86/kvm/x86.c: fixture source (snp-build test fixture, not Linux). */
#include <linux/fixture.h>

unsigned long kvm_arch_init_fixture(unsigned long x)
{
	unsigned long i, acc = 0;

	for (i = 0; i < 64; i++)
		acc += fixture_mix(x + i, i);
	return acc;
}
