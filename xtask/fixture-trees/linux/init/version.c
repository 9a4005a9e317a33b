// SPDX-License-Identifier: GPL-2.0
/* init/version.c: the version banner; UTS_RELEASE and UTS_VERSION come
 * from scripts/link-vmlinux.sh, as from include/generated/utsrelease.h. */
#include <linux/fixture.h>

const char linux_banner[] =
	"Linux version " UTS_RELEASE " (fixture@snp-build) " UTS_VERSION "\n";
