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
#endif
