/* Copyright 2013 Google Inc. All Rights Reserved.
   Distributed under MIT license.
   snp-build fixture copy of the Brotli submodule: a few declarations. */
#ifndef BROTLI_DEC_DECODE_H_
#define BROTLI_DEC_DECODE_H_
typedef enum {
  BROTLI_DECODER_RESULT_ERROR = 0,
  BROTLI_DECODER_RESULT_SUCCESS = 1
} BrotliDecoderResult;
unsigned long BrotliDecoderVersion(void);
unsigned long BrotliDictionaryWords(unsigned long seed);
#endif
