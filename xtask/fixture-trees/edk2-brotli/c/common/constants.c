/* Copyright 2013 Google Inc. All Rights Reserved.
   Distributed under MIT license.
   snp-build fixture copy of the Brotli submodule. */
#include "../include/brotli/decode.h"

unsigned long BrotliDictionaryWords(unsigned long seed)
{
  unsigned long i, acc = seed;
  for (i = 0; i < 24; i++) acc = acc * 1103515245UL + 12345UL + i;
  return acc;
}
