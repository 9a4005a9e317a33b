/** @file
  GenFv of the snp-build fixture edk2 (not edk2's): writes one firmware
  volume of SIZE bytes whose content is a deterministic function of SEED
  (a hex digest of everything that went into the build) and NAME:

  - an EFI_FIRMWARE_VOLUME_HEADER (signature "_FVH" at offset 40, length,
    block map, header checksum), as in the PI specification;
  - pseudo-random "compressed modules" over part of the volume, erased
    flash (0xFF) after them;
  - with -r, the end of the volume carries what OVMF's reset vector FV
    carries: the GUIDed footer table (SEV hash table block, SEV-ES reset
    block, SEV metadata with SNP_SEC_MEM/SECRETS/CPUID/SNP_KERNEL_HASHES
    sections) that VMMs and launch measurement tools read, followed by a
    16-byte reset vector. (The hash table is what QEMU's kernel-hashes=on
    fills for direct kernel boot, as in AmdSev OVMF builds.)

  Usage: GenFv -o OUTPUT -s SIZE -g SEEDHEX -n NAME [-r]

  SPDX-License-Identifier: BSD-2-Clause-Patent
**/
#include <string.h>
#include "FixtureCommon.h"

/* EFI_FIRMWARE_FILE_SYSTEM2_GUID 8c8ce578-8a3d-4f1c-9935-896185c32dd3 */
static const uint8_t FfsGuid[16] = {
  0x78, 0xe5, 0x8c, 0x8c, 0x3d, 0x8a, 0x1c, 0x4f,
  0x99, 0x35, 0x89, 0x61, 0x85, 0xc3, 0x2d, 0xd3
};
/* OVMF_TABLE_FOOTER_GUID 96b582de-1fb2-45f7-baea-a366c55a082d */
static const uint8_t FooterGuid[16] = {
  0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45,
  0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d
};
/* SEV_ES_RESET_BLOCK_GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e */
static const uint8_t SevEsResetGuid[16] = {
  0xde, 0x71, 0xf7, 0x00, 0x7e, 0x1a, 0xcb, 0x4f,
  0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e
};
/* OVMF_SEV_METADATA_GUID dc886566-984a-4798-a75e-5585a7bf67cc */
static const uint8_t SevMetadataGuid[16] = {
  0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47,
  0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc
};

/* SEV_HASH_TABLE_RV_GUID 7255371f-3a3b-4b04-927b-1da6efa8d454 */
static const uint8_t SevHashTableGuid[16] = {
  0x1f, 0x37, 0x55, 0x72, 0x3b, 0x3a, 0x04, 0x4b,
  0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54
};

/* The kernel hashes page (QEMU's SEV hash table): GPA and size */
#define HASH_TABLE_BASE 0x00810000
#define HASH_TABLE_SIZE 0x00001000

/* SEV metadata sections: GPA, size, type (1 SNP_SEC_MEM, 2 SECRETS, 3 CPUID,
   0x10 SNP_KERNEL_HASHES) */
static const uint32_t SevSections[][3] = {
  { 0x00800000, 0x00009000, 1 },
  { 0x00809000, 0x00001000, 2 },
  { 0x0080A000, 0x00001000, 3 },
  { 0x0080B000, 0x00005000, 1 },
  { HASH_TABLE_BASE, HASH_TABLE_SIZE, 0x10 },
};

static uint64_t
SplitMix (uint64_t *State)
{
  uint64_t z = (*State += 0x9e3779b97f4a7c15ULL);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int
HexValue (int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Append one footer table entry ending at *End: data, u16 size, GUID. */
static void
PutEntry (uint8_t *Fv, uint32_t *End, const uint8_t *Guid, const uint8_t *Data, uint16_t DataLen)
{
  uint16_t Size = (uint16_t)(DataLen + 18);
  uint32_t Start = *End - Size;

  memcpy (Fv + Start, Data, DataLen);
  PutLe16 (Fv + Start + DataLen, Size);
  memcpy (Fv + Start + DataLen + 2, Guid, 16);
  *End = Start;
}

int
main (int argc, char **argv)
{
  const char *Output = NULL, *Seed = NULL, *Name = "FV";
  unsigned long long Size = 0;
  int       ResetVector = 0;
  uint64_t  State = 0x5eed;
  uint8_t   *Fv;
  uint32_t  i, Fill, Sum;
  FILE      *Out;

  for (i = 1; i < (uint32_t)argc; i++) {
    if (!strcmp (argv[i], "-o") && i + 1 < (uint32_t)argc) {
      Output = argv[++i];
    } else if (!strcmp (argv[i], "-s") && i + 1 < (uint32_t)argc) {
      Size = strtoull (argv[++i], NULL, 0);
    } else if (!strcmp (argv[i], "-g") && i + 1 < (uint32_t)argc) {
      Seed = argv[++i];
    } else if (!strcmp (argv[i], "-n") && i + 1 < (uint32_t)argc) {
      Name = argv[++i];
    } else if (!strcmp (argv[i], "-r")) {
      ResetVector = 1;
    } else {
      Error ("GenFv", "Unknown option", argv[i]);
      return 1;
    }
  }
  if (Output == NULL || Seed == NULL || Size < 0x4000 || Size > 0x10000000 || (Size & 0xFFF) != 0) {
    Error ("GenFv", "Missing or invalid options",
           "usage: GenFv -o OUTPUT -s SIZE(4 KiB multiple) -g SEEDHEX -n NAME [-r]");
    return 1;
  }
  for (i = 0; Seed[i] != '\0'; i++) {
    int v = HexValue (Seed[i]);
    if (v < 0) {
      Error ("GenFv", "Seed is not hexadecimal", Seed);
      return 1;
    }
    State = (State << 4 | (uint64_t)v) ^ (State >> 60) * 0x100000001b3ULL;
  }
  for (i = 0; Name[i] != '\0'; i++) {
    State = (State ^ (uint8_t)Name[i]) * 0x100000001b3ULL;
  }

  Fv = malloc (Size);
  if (Fv == NULL) {
    Error ("GenFv", "Out of memory", NULL);
    return 1;
  }
  memset (Fv, 0xFF, Size);

  /* Pseudo-random module data over about 5/8 of the volume. */
  Fill = (uint32_t)(Size / 8 * 5);
  for (i = 0x48; i + 8 <= Fill; i += 8) {
    PutLe64 (Fv + i, SplitMix (&State));
  }

  /* EFI_FIRMWARE_VOLUME_HEADER */
  memset (Fv, 0, 0x48);
  memcpy (Fv + 16, FfsGuid, 16);
  PutLe64 (Fv + 32, Size);
  memcpy (Fv + 40, "_FVH", 4);
  PutLe32 (Fv + 44, 0x0004FEFF);            /* attributes */
  PutLe16 (Fv + 48, 0x48);                  /* header length */
  PutLe16 (Fv + 52, 0);                     /* no extended header */
  Fv[55] = 2;                               /* revision */
  PutLe32 (Fv + 56, (uint32_t)(Size / 0x1000)); /* block map: blocks */
  PutLe32 (Fv + 60, 0x1000);                /*            block size */
  for (Sum = 0, i = 0; i < 0x48; i += 2) {
    Sum += (uint32_t)(Fv[i] | Fv[i + 1] << 8);
  }
  PutLe16 (Fv + 50, (uint16_t)(0x10000 - (Sum & 0xFFFF)));

  if (ResetVector) {
    uint32_t End = (uint32_t)Size - 32;
    uint32_t TableEnd = End - 18;
    uint32_t MetaOffset = (uint32_t)Size - 0x1000;
    uint32_t n = sizeof SevSections / sizeof SevSections[0];
    uint8_t  Data[8];

    /* SEV metadata ("ASEV" header, then GPA/size/type triples) */
    memset (Fv + MetaOffset, 0, 16 + 12 * n);
    memcpy (Fv + MetaOffset, "ASEV", 4);
    PutLe32 (Fv + MetaOffset + 4, 16 + 12 * n);
    PutLe32 (Fv + MetaOffset + 8, 1);
    PutLe32 (Fv + MetaOffset + 12, n);
    for (i = 0; i < n; i++) {
      PutLe32 (Fv + MetaOffset + 16 + 12 * i, SevSections[i][0]);
      PutLe32 (Fv + MetaOffset + 20 + 12 * i, SevSections[i][1]);
      PutLe32 (Fv + MetaOffset + 24 + 12 * i, SevSections[i][2]);
    }

    /* GUIDed footer table, read backwards from 32 bytes before the end */
    End = TableEnd;
    PutLe32 (Data, (uint32_t)Size - MetaOffset);
    PutEntry (Fv, &End, SevMetadataGuid, Data, 4);
    PutLe32 (Data, 0x0080B004);             /* SEV-ES AP reset IP */
    PutEntry (Fv, &End, SevEsResetGuid, Data, 4);
    PutLe32 (Data, HASH_TABLE_BASE);
    PutLe32 (Data + 4, HASH_TABLE_SIZE);
    PutEntry (Fv, &End, SevHashTableGuid, Data, 8);
    PutLe16 (Fv + TableEnd, (uint16_t)(TableEnd + 18 - End));
    memcpy (Fv + TableEnd + 2, FooterGuid, 16);

    /* Reset vector: 16 bytes below 4 GiB (nop; jmp near; padding) */
    memset (Fv + Size - 32, 0, 32);
    Fv[Size - 16] = 0x90;
    Fv[Size - 15] = 0xE9;
    PutLe16 (Fv + Size - 14, 0xFFF0);
  }

  Out = fopen (Output, "wb");
  if (Out == NULL || fwrite (Fv, 1, Size, Out) != Size || fclose (Out) != 0) {
    Error ("GenFv", "Error writing file", Output);
    return 1;
  }
  free (Fv);
  return 0;
}
