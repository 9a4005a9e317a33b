/* Copyright 2013 Google Inc. All Rights Reserved.
   Distributed under MIT license.
   snp-build fixture copy of the Brotli submodule. */
#include "../include/brotli/decode.h"

unsigned long BrotliDecoderVersion(void)
{
  return 0x1000009; /* 1.0.9 */
}
