/* cuda_runtime.h for the CPU emulation build: everything is in tests/emu/cuda_emu.h. */
#include "tests/emu/cuda_emu.h"
