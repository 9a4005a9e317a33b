/** @file
  Root include file of the snp-build fixture edk2 (a few of edk2's types).

  SPDX-License-Identifier: BSD-2-Clause-Patent
**/
#ifndef __PI_UEFI_H__
#define __PI_UEFI_H__
typedef unsigned long long  UINT64;
typedef unsigned int        UINT32;
typedef unsigned char       UINT8;
typedef UINT64              UINTN;
#define IN
#define OUT
#endif
