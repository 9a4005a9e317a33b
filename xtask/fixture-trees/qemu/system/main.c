/* SPDX-License-Identifier: GPL-2.0-or-later */
/* system/main.c: entry point of the fixture qemu-system-x86_64. */
#include "qemu/fixture.h"

int main(int argc, char **argv)
{
    return qemu_main(argc, argv);
}
