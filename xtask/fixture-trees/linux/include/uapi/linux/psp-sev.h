/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* Fixture uapi header (installed by linux-libc-dev / kernel-headers). */
#ifndef _UAPI_LINUX_PSP_SEV_H
#define _UAPI_LINUX_PSP_SEV_H
#define SEV_SNP_PLATFORM_STATUS 9
#endif
