/** @file
  SecMain.c: snp-build fixture module source (not edk2's).

  SPDX-License-Identifier: BSD-2-Clause-Patent
**/
#include <Uefi.h>

#ifdef FIXTURE_BROKEN
#error "built with -D FIXTURE_BROKEN: this build fails on purpose"
#endif

//
// As edk2's ASSERT and DEBUG macros: the source's path as the compiler was
// given it (edk2 compiles by absolute path).
//
const char *
SecAssertFile (
  void
  )
{
  return __FILE__;
}

UINTN
SecCoreStartupWithStack (
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
