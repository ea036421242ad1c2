# sushi — build, run, test.
#
# Libraries are folders: every .c in a library folder goes into build/lib/libsushi_NAME.a
# (LIBDIR_NAME below). A program or test names the libraries it links in its first
# line, e.g. `// libs: core kernels student`; external libraries come from EXT_NAME.
# Programs: tools/sushi.c -> sushi; tools/NAME/*.c -> sushi-NAME; services/NAME/*.c
# -> sushi-NAME. Tests: tests/unit/test_*.c -> build/tests/test_* (cmocka).

BUILD   ?= build
CC      ?= cc
CSTD    := -std=c11 -D_GNU_SOURCE
OPT     ?= -O2 -march=x86-64-v3 -mtune=generic
WARN    := -Wall -Wextra $(if $(CI),-Werror) $(EXTRA_WARN)
CFLAGS  ?=
CFLAGS  += $(CSTD) $(OPT) $(WARN) -g -I. -MMD -MP -pthread $(SAN)
LDFLAGS += -pthread $(SAN)

# library folders, in link order (a library may use those after it)
LIBS_ALL := wire data media tok config deepseek student kernels cuda core
LIBDIR_core     := common/core
LIBDIR_config   := common/config
LIBDIR_tok      := common/tokenizer
LIBDIR_data     := common/data
LIBDIR_kernels  := kernels kernels/cpu
LIBDIR_student  := models models/student
LIBDIR_deepseek := models/deepseek
LIBDIR_cuda     := kernels/cuda
LIBDIR_wire     := common/wire common/transport
LIBDIR_media    := common/media

EXT_core     := -ljansson -lm -ldl -lpthread
EXT_config   := -lyaml
EXT_tok      := -lpcre2-8 -licuuc
EXT_data     :=
EXT_kernels  := -lopenblas
EXT_student  :=
EXT_deepseek :=
EXT_wire     := -lzmq -lmsgpackc
EXT_media    := -lpng -ldeflate -ljpeg -lswscale -lswresample -lavformat -lavcodec -lavutil -lsndfile -lassimp -lm

# CUDA: compiled when nvcc is found; otherwise kernels/cuda/stub.c provides "no CUDA".
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)),)
ifneq ($(NVCC),)
  HAVE_CUDA := 1
  NVCCFLAGS ?= -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80 \
               -gencode=arch=compute_75,code=compute_75 \
               -Xcompiler -Wall,-Wextra -I. -DSUSHI_CUDA=1
  EXT_cuda  := -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart_static -ldl -lrt -lstdc++
else
  EXT_cuda  :=
endif

lib_c_srcs = $(filter-out %/stub.c,$(foreach d,$(LIBDIR_$(1)),$(wildcard $(d)/*.c)))
lib_cu_srcs = $(foreach d,$(LIBDIR_$(1)),$(wildcard $(d)/*.cu))
ifeq ($(HAVE_CUDA),1)
  lib_srcs = $(call lib_c_srcs,$(1)) $(call lib_cu_srcs,$(1))
else
  lib_srcs = $(call lib_c_srcs,$(1)) $(if $(filter cuda,$(1)),$(wildcard kernels/cuda/stub.c))
endif
lib_objs = $(patsubst %,$(BUILD)/obj/%.o,$(call lib_srcs,$(1)))
lib_file = $(BUILD)/lib/libsushi_$(1).a

# `// libs: a b c` on the first lines of a program or test
libs_of  = $(shell sed -n 's|^// libs: *||p' $(1) | head -1)
# `// ldlibs: -lfoo` on the first lines: external libraries only that program links
ldlibs_of = $(shell sed -n 's|^// ldlibs: *||p' $(1) | head -1)
# `// srcs: services/x/y.c` on the first lines of a test: service files it compiles in too
srcs_of = $(shell sed -n 's|^// srcs: *||p' $(1) | head -1)
libs_in_order = $(filter $(1),$(LIBS_ALL))
link_libs = $(foreach l,$(call libs_in_order,$(1)),$(call lib_file,$(l))) \
            $(foreach l,$(call libs_in_order,$(1)),$(EXT_$(l)))

TOOLS    := $(notdir $(patsubst %/,%,$(dir $(wildcard tools/*/main.c))))
SERVICES := $(notdir $(patsubst %/,%,$(dir $(wildcard services/*/main.c))))
PROGS    := $(BUILD)/bin/sushi $(patsubst %,$(BUILD)/bin/sushi-%,$(TOOLS) $(SERVICES)) \
            $(if $(wildcard pipelines/supervisor/main.c),$(BUILD)/bin/sushi-run)
TESTS    := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/bench_*.c))

.PHONY: all run test test-asan test-gpu bench deps clean check-deps core

all: check-deps $(PROGS) $(TESTS) $(BENCHES)

# The compute core alone (libc, BLAS, JSON; CUDA when present): what the GPU machine builds.
core: $(call lib_file,core) $(call lib_file,kernels) $(call lib_file,student) $(call lib_file,deepseek)

$(BUILD)/obj/%.c.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

define lib_rule
$(call lib_file,$(1)): $(call lib_objs,$(1))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	$(if $(call lib_objs,$(1)),ar rcs $$@ $$^,ar rcs $$@)
endef
$(foreach l,$(LIBS_ALL),$(eval $(call lib_rule,$(l))))

lib_deps = $(foreach l,$(call libs_in_order,$(1)),$(call lib_file,$(l)))

define prog_rule
$(1): $(2) $(call lib_deps,$(call libs_of,$(firstword $(2))))
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $(2) -o $$@ $$(LDFLAGS) -Wl,--start-group $(call link_libs,$(call libs_of,$(firstword $(2)))) -Wl,--end-group $(3) $(call ldlibs_of,$(firstword $(2)))
endef
$(eval $(call prog_rule,$(BUILD)/bin/sushi,tools/sushi.c))
$(foreach t,$(TOOLS),$(eval $(call prog_rule,$(BUILD)/bin/sushi-$(t),tools/$(t)/main.c $(filter-out tools/$(t)/main.c,$(wildcard tools/$(t)/*.c)))))
$(foreach s,$(SERVICES),$(eval $(call prog_rule,$(BUILD)/bin/sushi-$(s),services/$(s)/main.c $(filter-out services/$(s)/main.c,$(wildcard services/$(s)/*.c)))))
$(if $(wildcard pipelines/supervisor/main.c),$(eval $(call prog_rule,$(BUILD)/bin/sushi-run,pipelines/supervisor/main.c $(filter-out pipelines/supervisor/main.c,$(wildcard pipelines/supervisor/*.c)))))
$(foreach t,$(TESTS),$(eval $(call prog_rule,$(t),tests/unit/$(notdir $(t)).c $(call srcs_of,tests/unit/$(notdir $(t)).c),-lcmocka)))
$(foreach b,$(BENCHES),$(eval $(call prog_rule,$(b),bench/$(notdir $(b)).c)))

# Dependencies: installed by scripts/install-deps.sh when something is missing.
deps:
	bash scripts/install-deps.sh

check-deps:
	@bash scripts/install-deps.sh --check >/dev/null 2>&1 || bash scripts/install-deps.sh

run: all
	bash scripts/run-default.sh $(ARGS)

test: all
	bash scripts/run-tests.sh

# The suite again under AddressSanitizer + UndefinedBehaviorSanitizer (separate build dir).
test-asan: check-deps
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" OPT=-O1 all
	BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 bash scripts/run-tests.sh

# On the GPU machine: the CUDA op harness and GPU tests.
GPU_TESTS := test_ops_cuda test_student_cuda test_nvml test_encoders test_ops_rows test_ops_softmax test_topk \
             test_deepseek_score
test-gpu: core $(addprefix $(BUILD)/tests/,$(GPU_TESTS))
	bash scripts/run-gpu-tests.sh

bench: all
	bash scripts/run-bench.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
-include tests/fuzz/fuzz.mk
-include tests/fuzz/media.mk

# ---- CUDA emulation: kernels/cuda/*.cu as C++ on the CPU (tests/emu/cuda_emu.h) ----
# tests/emu/transform.py rewrites the sources (launches, extern __shared__, inline PTX)
# into $(BUILD)/emu/src; with the emulator's runtime they form libsushi_cuda_emu.a, which
# replaces libsushi_cuda in the GPU op tests, built into $(BUILD)/emu/tests. make test runs
# them through scripts in $(BUILD)/tests: TEST_emu (bf16, the emulated sm_90's default),
# TEST_emu_f16 (SUSHI_CUDA_DTYPE=f16) and TEST_emu_rev (SUSHI_EMU_ORDER=reverse: the threads
# of a block run last first). The scripts fix SUSHI_TEST_SEED (default 1; set it to try
# others): the tests' tolerances are marginal for a few draws (see tests/emu/README.md).
EMU_CXX      ?= g++
EMU_CXXFLAGS  = -std=c++17 $(OPT) $(WARN) -Wno-unknown-pragmas -Wno-unused-parameter -Wno-sign-compare -fno-strict-aliasing -g \
                -I$(BUILD)/emu/src -Itests/emu/include -I. -MMD -MP -pthread $(SAN) -DSUSHI_CUDA=1 -DSUSHI_CUDA_EMU=1
EMU_LIB      := $(BUILD)/emu/lib/libsushi_cuda_emu.a
EMU_GEN_HDRS := $(patsubst %,$(BUILD)/emu/src/%,$(wildcard kernels/cuda/*.h))
EMU_GEN_SRCS := $(patsubst %.cu,$(BUILD)/emu/src/%.cpp,$(wildcard kernels/cuda/*.cu))
EMU_OBJS     := $(patsubst %.cpp,%.o,$(EMU_GEN_SRCS)) $(patsubst %.cpp,$(BUILD)/emu/obj/%.o,$(wildcard tests/emu/*.cpp))
EMU_TESTS    := test_ops_cuda test_topk test_ops_rows test_ops_softmax test_deepseek_score test_encoders
EMU_SEED     ?= 1
EMU_BINS     := $(foreach t,$(EMU_TESTS),$(BUILD)/tests/$(t)_emu $(BUILD)/tests/$(t)_emu_f16 $(BUILD)/tests/$(t)_emu_rev) \
                $(BUILD)/tests/test_emu_self

.PHONY: emu test-emu
# the rewritten sources are kept (not deleted as intermediates), so a rebuild does not redo them
.SECONDARY: $(EMU_GEN_SRCS) $(EMU_GEN_HDRS) $(BUILD)/emu/src/tests/emu/test_emu_self.cpp
emu: $(EMU_BINS)
all: $(EMU_BINS)
test-emu: $(EMU_BINS)
	bash scripts/run-tests.sh emu

$(BUILD)/emu/src/kernels/cuda/%.h: kernels/cuda/%.h tests/emu/transform.py
	@mkdir -p $(dir $@)
	python3 tests/emu/transform.py $< $@

$(BUILD)/emu/src/kernels/cuda/%.cpp: kernels/cuda/%.cu tests/emu/transform.py
	@mkdir -p $(dir $@)
	python3 tests/emu/transform.py $< $@

$(BUILD)/emu/src/tests/emu/%.cpp: tests/emu/%.cu tests/emu/transform.py
	@mkdir -p $(dir $@)
	python3 tests/emu/transform.py $< $@

# the emulator's own test: built from a .cu through the same rewriting
$(BUILD)/tests/test_emu_self: $(BUILD)/emu/src/tests/emu/test_emu_self.o $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(EMU_CXX) $(EMU_CXXFLAGS) $< -o $@ $(LDFLAGS) $(EMU_LIB) -lcmocka

$(BUILD)/emu/src/%.o: $(BUILD)/emu/src/%.cpp $(EMU_GEN_HDRS)
	$(EMU_CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(BUILD)/emu/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(EMU_CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(EMU_LIB): $(EMU_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# $(1) test, $(2) script suffix, $(3) environment, $(4) what the script runs
define emu_script
$(BUILD)/tests/$(1)_$(2): $(BUILD)/emu/tests/$(1) Makefile
	@mkdir -p $$(dir $$@)
	printf '#!/bin/sh\n# $(1) on the emulated CUDA backend: $(4)\nSUSHI_TEST_SEED=$$$${SUSHI_TEST_SEED:-$(EMU_SEED)} $(3) exec "$$$$(dirname "$$$$0")/../emu/tests/$(1)" "$$$$@"\n' >$$@
	chmod +x $$@
endef
emu_libs = $(filter-out cuda,$(call libs_of,tests/unit/$(1).c))
define emu_test_rule
$(BUILD)/emu/tests/$(1): tests/unit/$(1).c $(EMU_LIB) $(call lib_deps,$(call emu_libs,$(1)))
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$< -o $$@ $$(LDFLAGS) -Wl,--start-group $(EMU_LIB) $(call link_libs,$(call emu_libs,$(1))) -Wl,--end-group -lcmocka -lstdc++
$(call emu_script,$(1),emu,,bf16)
$(call emu_script,$(1),emu_f16,SUSHI_CUDA_DTYPE=f16,f16)
$(call emu_script,$(1),emu_rev,SUSHI_EMU_ORDER=reverse,bf16 with the threads of a block run last first)
endef
$(foreach t,$(EMU_TESTS),$(eval $(call emu_test_rule,$(t))))
