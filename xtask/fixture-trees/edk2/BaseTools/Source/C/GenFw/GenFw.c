/** @file
  GenFw of the snp-build fixture edk2 (not edk2's): wraps a compiled module
  into a small PE-like image ("MZ" header, the object's bytes, then an
  "RSDS" record holding the input's path as given, like the CodeView debug
  entry of the real GenFw), as the real GenFw turns an ELF into a PE/COFF
  image.

  Usage: GenFw -e MODULE_TYPE -o OUTPUT INPUT

  SPDX-License-Identifier: BSD-2-Clause-Patent
**/
#include <string.h>
#include "FixtureCommon.h"

int
main (int argc, char **argv)
{
  const char *Output = NULL, *Input = NULL, *Type = "UEFI_APPLICATION";
  FILE *In, *Out;
  uint8_t Header[64];
  uint8_t Buffer[65536];
  size_t  Len;
  int     i;

  for (i = 1; i < argc; i++) {
    if (!strcmp (argv[i], "-o") && i + 1 < argc) {
      Output = argv[++i];
    } else if (!strcmp (argv[i], "-e") && i + 1 < argc) {
      Type = argv[++i];
    } else if (!strcmp (argv[i], "--version")) {
      printf ("GenFw Version %d.%d (snp-build fixture)\n", UTILITY_MAJOR_VERSION, UTILITY_MINOR_VERSION);
      return 0;
    } else {
      Input = argv[i];
    }
  }
  if (Output == NULL || Input == NULL) {
    Error ("GenFw", "Missing options", "usage: GenFw -e MODULE_TYPE -o OUTPUT INPUT");
    return 1;
  }
  In = fopen (Input, "rb");
  if (In == NULL) {
    Error ("GenFw", "Error opening file", Input);
    return 1;
  }
  Out = fopen (Output, "wb");
  if (Out == NULL) {
    Error ("GenFw", "Error opening output file", Output);
    fclose (In);
    return 1;
  }
  memset (Header, 0, sizeof Header);
  Header[0] = 'M';
  Header[1] = 'Z';
  strncpy ((char *)Header + 8, Type, 40);
  PutLe32 (Header + 60, sizeof Header);
  fwrite (Header, 1, sizeof Header, Out);
  while ((Len = fread (Buffer, 1, sizeof Buffer, In)) > 0) {
    fwrite (Buffer, 1, Len, Out);
  }
  fclose (In);
  //
  // As the real GenFw's CodeView debug entry: the input's path, as given.
  //
  fwrite ("RSDS", 1, 4, Out);
  fwrite (Input, 1, strlen (Input) + 1, Out);
  return fclose (Out) == 0 ? 0 : 1;
}
