/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared declarations of the fixture QEMU (snp-build test fixture). */
#ifndef QEMU_FIXTURE_H
#define QEMU_FIXTURE_H
unsigned long qemu_fixture_work(unsigned long seed);
unsigned long pc_machine_init(unsigned long x);
unsigned long pc_q35_init(unsigned long x);
unsigned long sev_snp_guest_init(unsigned long x);
unsigned long x86_cpu_realize(unsigned long x);
unsigned long qemu_osdep_init(unsigned long x);
unsigned long qemu_strtosz(unsigned long x);
int qemu_main(int argc, char **argv);

/* A little real work per generated file (generated/gen_NNN.c, bench
 * fixtures), so that compiling is not free. */
static inline unsigned long fixture_mix(unsigned long x, unsigned long k)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdUL + k;
	x ^= x >> 33;
	return x;
}
#endif
