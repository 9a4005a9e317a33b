// SPDX-License-Identifier: GPL-2.0
/* kernel/fixture.c: lets a test break the build with a config knob. */
#include <linux/fixture.h>

#ifdef CONFIG_FIXTURE_BROKEN
#error "CONFIG_FIXTURE_BROKEN is set: this build fails on purpose"
#endif

unsigned long fixture_selftest(unsigned long x)
{
	return fixture_mix(x, 1);
}
