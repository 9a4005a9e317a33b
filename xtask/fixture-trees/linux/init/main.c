// SPDX-License-Identifier: GPL-2.0
/* init/main.c: the fixture kernel's "start_kernel" (a host program). */
#include <stdio.h>
#include <linux/fixture.h>

int main(void)
{
	printf("%s", linux_banner);
#ifdef CONFIG_KVM_AMD_SEV
	printf("SEV: KVM_AMD_SEV built in\n");
#endif
	return 0;
}
