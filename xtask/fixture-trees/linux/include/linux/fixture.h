/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the fixture kernel's sources (snp-build test fixture). */
#ifndef _LINUX_FIXTURE_H
#define _LINUX_FIXTURE_H

/* A little real work per file, so that compiling is not free. */
static inline unsigned long fixture_mix(unsigned long x, unsigned long k)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdUL + k;
	x ^= x >> 33;
	return x;
}

extern const char linux_banner[];
#endif
