// SPDX-License-Identifier: GPL-2.0
/* drivers/net/ethernet/mellanox/mlxsw/pci.c: fixture source (snp-build test fixture, not Linux). */
#include <linux/fixture.h>

unsigned long mlxsw_pci_init_fixture(unsigned long x)
{
	unsigned long i, acc = 0;

	for (i = 0; i < 64; i++)
		acc += fixture_mix(x + i, i);
	return acc;
}
