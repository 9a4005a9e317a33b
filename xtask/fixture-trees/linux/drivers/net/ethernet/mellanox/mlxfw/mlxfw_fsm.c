// SPDX-License-Identifier: GPL-2.0
/* drivers/net/ethernet/mellanox/mlxfw/mlxfw_fsm.c: fixture source (snp-build test fixture, not Linux). */
#include <linux/fixture.h>

unsigned long mlxfw_firmware_flash(unsigned long x)
{
	unsigned long i, acc = 0;

	for (i = 0; i < 64; i++)
		acc += fixture_mix(x + i, i);
	return acc;
}
