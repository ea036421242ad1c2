# libFuzzer targets for the media decoders (common/media), one per decoder:
#   $(BUILD)/fuzz/fuzz_media_{image,audio,video,mesh,manifest}
# built by `all` when clang has libFuzzer; the main Makefile includes this file.
# tests/unit/test_media_fuzz runs each for ~10 s in `make test` (seeds from the
# fixtures of scripts/gen-media-fixtures.sh) and skips when they are absent.
#   make fuzz-media MEDIA_FUZZ=mesh FUZZ_SECONDS=600   a longer run by hand
MEDIA_FUZZ_CC    ?= clang
MEDIA_FUZZ_NAMES := image audio video mesh manifest
MEDIA_FUZZ_BINS  := $(patsubst %,$(BUILD)/fuzz/fuzz_media_%,$(MEDIA_FUZZ_NAMES))
MEDIA_FUZZ_SRCS  := $(wildcard common/media/*.c) common/core/log.c common/core/fsutil.c common/core/dtype.c
MEDIA_FUZZ_HAVE  := $(shell echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
                      | $(MEDIA_FUZZ_CC) -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1 && echo 1)

ifeq ($(MEDIA_FUZZ_HAVE),1)
all: $(MEDIA_FUZZ_BINS)
endif

$(BUILD)/fuzz/fuzz_media_%: tests/fuzz/fuzz_media_%.c $(MEDIA_FUZZ_SRCS) $(wildcard common/media/*.h) \
                            tests/fuzz/fuzz_media_file.h
	@mkdir -p $(dir $@)
	$(MEDIA_FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g -I. -Itests/fuzz -Wall -Wextra -pthread \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $< $(MEDIA_FUZZ_SRCS) -o $@ $(EXT_media) -ljansson -lm

MEDIA_FUZZ ?= image
.PHONY: fuzz-media
fuzz-media: $(BUILD)/fuzz/fuzz_media_$(MEDIA_FUZZ)
	@mkdir -p $(BUILD)/fuzz/media-corpus-$(MEDIA_FUZZ)
	$< -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/media-corpus-$(MEDIA_FUZZ)
