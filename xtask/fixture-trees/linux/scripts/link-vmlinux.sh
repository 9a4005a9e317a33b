#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Link vmlinux (fixture version of Linux's scripts/link-vmlinux.sh plus
# init/build-version): every link is one more build, counted in .version,
# whose number is baked into the kernel's version string and used by the
# package targets as the package revision.
# Usage: link-vmlinux.sh CC OBJECTS...
set -e
cc=$1
shift

prev=$(cat .version 2>/dev/null || echo 0)
ver=$(expr 0"$prev" + 1 2>/dev/null || echo 1)
release=$(cat include/config/kernel.release)
timestamp=${KBUILD_BUILD_TIMESTAMP:-$(LC_ALL=C date)}

[ "$KBUILD_VERBOSE" = 1 ] || echo "  CC      init/version.o"
$cc $KBUILD_CFLAGS -DUTS_RELEASE="\"$release\"" \
	-DUTS_VERSION="\"#$ver SMP $timestamp\"" -c -o init/version.o init/version.c
[ "$KBUILD_VERBOSE" = 1 ] || echo "  LD      vmlinux"
$cc -o vmlinux "$@" init/version.o
[ "$KBUILD_VERBOSE" = 1 ] || echo "  SYSMAP  System.map"
${NM:-nm} -n vmlinux | grep -v ' [aUw] ' > System.map
echo "$ver" > .version
