/** @file
  BrotliDecompress.c: snp-build fixture module source (not edk2's).

  SPDX-License-Identifier: BSD-2-Clause-Patent
**/
#include <Uefi.h>
#include "brotli/c/include/brotli/decode.h"

UINTN
BrotliUefiDecompress (
  IN UINTN  Seed
  )
{
  UINTN  Index;
  UINTN  Acc;

  Acc = Seed;
  for (Index = 0; Index < 16; Index++) {
    Acc = Acc * 6364136223846793005ULL + Index;
  }
  return Acc;
}
