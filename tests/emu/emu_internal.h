/* Pieces shared by the CUDA emulator's own files (emu_runtime.cpp, emu_ptx.cpp): shared
 * memory limits, the per-thread cp.async queue and launch failure reporting. */
#ifndef SUSHI_EMU_INTERNAL_H
#define SUSHI_EMU_INTERNAL_H

#include <vector>

namespace sushi_emu {

enum {
    SHARED_DEFAULT = 48 * 1024,   /* dynamic shared memory without cudaFuncSetAttribute */
    SHARED_OPTIN = 227 * 1024,    /* sm_90's opt-in limit per block */
    SHARED_WINDOW = 256 * 1024,   /* the static buffer that holds dynamic shared memory */
};

/* cp.async copies of one thread: issued (not yet committed) and committed groups, oldest
 * first; a copy happens when cp.async.wait_group lets its group complete */
struct async_copy {
    void *dst;
    const void *src;
    unsigned bytes, src_bytes;
};
struct async_queue {
    std::vector<async_copy> open;
    std::vector<std::vector<async_copy>> groups;
    void clear() { open.clear(), groups.clear(); }
};
async_queue &my_async_queue(void);

/* fails the running launch with a message (fmt has one %s: what) */
void fail(const char *fmt, const char *what);
void set_error(cudaError_t e);
void *dynamic_shared(void);

} // namespace sushi_emu

#endif
