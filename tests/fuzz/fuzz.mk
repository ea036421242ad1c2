# libFuzzer target for the wire decoder, included by the main Makefile.
#   $(BUILD)/fuzz/fuzz_wire   built by `all` when clang has libFuzzer (and core's dtype.c exists)
#   make fuzz-wire FUZZ_SECONDS=600   a longer run by hand (corpus kept in $(BUILD)/fuzz/corpus)
# tests/unit/test_wire_fuzz runs it for ~20 s in `make test` and skips when it is absent.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_BIN     := $(BUILD)/fuzz/fuzz_wire
FUZZ_SRCS    := tests/fuzz/fuzz_wire.c $(wildcard common/wire/*.c) common/core/log.c \
                $(wildcard common/core/dtype.c)
FUZZ_HAVE    := $(shell echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
                  | $(FUZZ_CC) -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1 && echo 1)

ifeq ($(FUZZ_HAVE)$(if $(wildcard common/core/dtype.c),1),11)
all: $(FUZZ_BIN)
endif

$(FUZZ_BIN): $(FUZZ_SRCS) $(wildcard common/wire/*.h common/core/log.h common/core/dtype.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g -I. -Wall -Wextra \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $(FUZZ_SRCS) -o $@ -ljansson -lm

.PHONY: fuzz-wire
fuzz-wire: $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz/corpus
	cp tests/fuzz/corpus/* $(BUILD)/fuzz/corpus/
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -dict=tests/fuzz/wire.dict \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus
