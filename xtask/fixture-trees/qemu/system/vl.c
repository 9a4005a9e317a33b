/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * system/vl.c: option parsing of the fixture qemu-system-x86_64.
 * `--version` / `-version` print what QEMU prints; anything else is
 * refused, since this binary cannot run guests.
 */
#include <stdio.h>
#include <string.h>
#include "qemu-version.h"
#include "qemu/fixture.h"

#define QEMU_COPYRIGHT "Copyright (c) 2003-2024 " \
    "Fabrice Bellard and the QEMU Project developers"

int qemu_main(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-version")) {
            printf("QEMU emulator version " QEMU_FULL_VERSION "\n"
                   QEMU_COPYRIGHT "\n");
            return 0;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("QEMU emulator version " QEMU_FULL_VERSION "\n"
                   QEMU_COPYRIGHT "\n"
                   "usage: qemu-system-x86_64 [options] [disk_image]\n");
            return 0;
        }
    }
    (void)pc_q35_init(pc_machine_init(sev_snp_guest_init(x86_cpu_realize(
        qemu_osdep_init(qemu_strtosz(0))))));
    fprintf(stderr, "qemu-system-x86_64: this is the snp-build test fixture; "
            "it cannot run guests\n");
    return 1;
}
