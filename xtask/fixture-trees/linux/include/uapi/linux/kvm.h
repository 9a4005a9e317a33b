/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* Fixture uapi header (installed by linux-libc-dev / kernel-headers). */
#ifndef _UAPI_LINUX_KVM_H
#define _UAPI_LINUX_KVM_H
#define KVM_API_VERSION 12
#define KVM_SEV_SNP_LAUNCH_START 100
#endif
