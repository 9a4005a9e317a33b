/** @file
  Shared helpers of the snp-build fixture BaseTools C tools.

  SPDX-License-Identifier: BSD-2-Clause-Patent
**/
#ifndef FIXTURE_COMMON_H_
#define FIXTURE_COMMON_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define UTILITY_MAJOR_VERSION 0
#define UTILITY_MINOR_VERSION 1

static inline void
Error (const char *Tool, const char *Message, const char *Extra)
{
  fprintf (stderr, "%s: ERROR 0001: %s\n  %s\n", Tool, Message, Extra ? Extra : "");
}

static inline void
PutLe16 (uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static inline void
PutLe32 (uint8_t *p, uint32_t v)
{
  PutLe16 (p, (uint16_t)v);
  PutLe16 (p + 2, (uint16_t)(v >> 16));
}

static inline void
PutLe64 (uint8_t *p, uint64_t v)
{
  PutLe32 (p, (uint32_t)v);
  PutLe32 (p + 4, (uint32_t)(v >> 32));
}

#endif
