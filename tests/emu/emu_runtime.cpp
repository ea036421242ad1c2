/* The CUDA emulator's execution model (cuda_emu.h): a launch runs its blocks one after
 * another; every CUDA thread of the running block is a user-space fiber with its own
 * stack, switched with a few lines of x86-64 assembly (callee-saved registers, MXCSR and
 * the x87 control word), all on the calling OS thread. The scheduler resumes the live
 * fibers round-robin; a fiber runs until it waits at __syncthreads (released when every
 * live thread of the block has arrived; exited threads count as arrived) or at a warp
 * collective (released when every lane of its mask has arrived or exited). A pass over
 * the block in which no fiber moves is a deadlock: the launch fails with a message naming
 * the kernel, the block and where the threads wait. The runtime API subset lives here too:
 * device memory is host memory tracked in a map (so cudaMemcpy can refuse a host pointer
 * passed as device memory, and cudaPointerGetAttributes can tell them apart); fresh
 * allocations and dynamic shared memory are filled with 0xFF bytes (NaN as floats), so
 * reading them before writing shows. Threads run in index order between barriers, so a
 * missing barrier shows where a thread reads what a later one writes;
 * SUSHI_EMU_ORDER=reverse runs them last first, for the other direction. */
#include "tests/emu/cuda_emu.h"
#include "tests/emu/emu_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <map>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

/* saves the callee-saved state on the current stack, stores its pointer in *save and
 * continues on the stack `next` (prepared by fiber_prepare or saved by an earlier switch) */
extern "C" void sushi_emu_switch(void **save, void *next);
asm(".text\n.globl sushi_emu_switch\n.type sushi_emu_switch,@function\n"
    "sushi_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n"
    ".size sushi_emu_switch, .-sushi_emu_switch\n");

dim3 sushi_emu::thread_idx, sushi_emu::block_idx, sushi_emu::block_dim, sushi_emu::grid_dim;

namespace sushi_emu {

#ifdef EMU_ASAN
static const size_t STACK_BYTES = (size_t)1 << 20;
#else
static const size_t STACK_BYTES = (size_t)256 << 10;
#endif

struct fiber {
    char *stack;
    void *sp;
    bool done;
    const char *waits;          /* what it waits for, for the deadlock message */
    async_queue copies;
};

struct warp_state {
    unsigned arrived, need, exited, gen;
    unsigned char slots[2][32][32];
};

static fiber fibers[1024];
static warp_state warps[32];
static int nthreads, live, cur;
static void *sched_sp;
static bool progress, failed;
static unsigned bar_gen, bar_arrived;
static int bar_or, bar_count, bar_or_result, bar_count_result;
static block_fn run_body;
static void *run_ctx;
static const char *run_name;
static char fail_msg[256];
#ifdef EMU_ASAN
static void *asan_fake;
static const void *sched_bottom;
static size_t sched_size;
#endif

static cudaError_t last_error = cudaSuccess;
void set_error(cudaError_t e) { if (last_error == cudaSuccess) last_error = e; }

/* the launch fails: stops the block after the current fiber yields */
void fail(const char *fmt, const char *what) {
    if (!failed) {
        failed = true;
        snprintf(fail_msg, sizeof fail_msg, fmt, what);
    }
}

/* ---- switching ---- */

static void to_scheduler(bool finished) {
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(finished ? NULL : &asan_fake, sched_bottom, sched_size);
#else
    (void)finished;
#endif
    sushi_emu_switch(&fibers[cur].sp, sched_sp);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(asan_fake, &sched_bottom, &sched_size);
#endif
}

static void thread_exit_update(int t);

static void fiber_entry(void) {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &sched_bottom, &sched_size);
#endif
    run_body(run_ctx);
    fibers[cur].done = true;
    thread_exit_update(cur);
    to_scheduler(true);
    abort();   /* a finished fiber is never resumed */
}

static void fiber_prepare(fiber *f) {
    if (!f->stack) {
        void *m = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "cuda emu: cannot map a %zu-byte fiber stack\n", STACK_BYTES);
            abort();
        }
        f->stack = (char *)m;
    }
    uint64_t *top = (uint64_t *)(f->stack + STACK_BYTES);
    top[-1] = 0;                                  /* fiber_entry's return address: none */
    top[-2] = (uint64_t)(uintptr_t)&fiber_entry;  /* where the first switch "returns" */
    for (int r = 3; r <= 8; r++) top[-r] = 0;     /* rbp rbx r12 r13 r14 r15 */
    uint32_t csr[2];
    asm volatile("stmxcsr %0\n fnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
    memcpy(&top[-9], csr, 8);
    f->sp = &top[-9];
    f->done = false;
    f->waits = NULL;
    f->copies.clear();
}

static void set_thread_idx(int t) {
    thread_idx.x = (unsigned)t % block_dim.x;
    thread_idx.y = (unsigned)t / block_dim.x % block_dim.y;
    thread_idx.z = (unsigned)t / (block_dim.x * block_dim.y);
}

static void resume(int t) {
    cur = t;
    set_thread_idx(t);
#ifdef EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, fibers[t].stack, STACK_BYTES);
#endif
    sushi_emu_switch(&sched_sp, fibers[t].sp);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* ---- barriers ---- */

static void warp_try_release(warp_state &w) {
    if (w.arrived && ((w.arrived | w.exited) & w.need) == w.need) {
        w.gen++;
        w.arrived = w.need = 0;
    }
}

static void block_try_release(void) {
    if (bar_arrived && bar_arrived == (unsigned)live) {
        bar_arrived = 0;
        bar_gen++;
        bar_or_result = bar_or, bar_count_result = bar_count;
        bar_or = bar_count = 0;
    }
}

static void thread_exit_update(int t) {
    live--;
    progress = true;
    warp_state &w = warps[t / 32];
    w.exited |= 1u << (t % 32);
    warp_try_release(w);
    block_try_release();
}

static void block_wait(int pred) {
    unsigned g = bar_gen;
    bar_arrived++;
    bar_or |= pred != 0;
    bar_count += pred != 0;
    progress = true;
    block_try_release();
    fibers[cur].waits = "__syncthreads";
    while (bar_gen == g) to_scheduler(false);
    fibers[cur].waits = NULL;
}

void syncthreads(void) { block_wait(0); }
int syncthreads_or(int pred) { block_wait(pred); return bar_or_result; }
int syncthreads_count(int pred) { block_wait(pred); return bar_count_result; }

int lane_id(void) { return cur % 32; }

unsigned live_lanes(void) { return ~warps[cur / 32].exited; }

const unsigned char *warp_exchange(unsigned mask, const void *mine, size_t bytes) {
    int lane = cur % 32;
    warp_state &w = warps[cur / 32];
    unsigned buf = w.gen & 1u;
    if (!(mask >> lane & 1u)) fail("%s: a warp collective called by a lane outside its mask", run_name);
    if (bytes) memcpy(w.slots[buf][lane], mine, bytes);
    unsigned g = w.gen;
    w.arrived |= 1u << lane;
    w.need |= mask;
    progress = true;
    warp_try_release(w);
    fibers[cur].waits = "a warp collective";
    while (w.gen == g) to_scheduler(false);
    fibers[cur].waits = NULL;
    return &w.slots[buf][0][0];
}

async_queue &my_async_queue(void) { return fibers[cur].copies; }

/* ---- launches ---- */

alignas(128) static unsigned char shared_window[SHARED_WINDOW];
static std::map<const void *, int> func_smem;

void *dynamic_shared(void) { return shared_window; }

void *shared_ptr(uint32_t addr) { return shared_window + (int32_t)addr; }

cudaError_t func_set_smem(const void *fn, int bytes) {
    if (!fn || bytes < 0 || bytes > SHARED_OPTIN) return cudaErrorInvalidValue;
    func_smem[fn] = bytes;
    return cudaSuccess;
}

/* one block: every thread a fiber, round-robin until all finish or nothing moves */
static void run_block(void) {
    live = nthreads;
    bar_arrived = 0, bar_or = bar_count = 0;
    for (int w = 0; w < (nthreads + 31) / 32; w++) {
        warps[w].arrived = warps[w].need = 0;
        int in_warp = nthreads - 32 * w;
        warps[w].exited = in_warp >= 32 ? 0u : ~((1u << in_warp) - 1u);
    }
    for (int t = 0; t < nthreads; t++) fiber_prepare(&fibers[t]);
    static int reverse = -1;
    if (reverse < 0) reverse = getenv("SUSHI_EMU_ORDER") && !strcmp(getenv("SUSHI_EMU_ORDER"), "reverse");
    while (live > 0 && !failed) {
        progress = false;
        for (int k = 0; k < nthreads && !failed; k++) {
            int t = reverse ? nthreads - 1 - k : k;
            if (!fibers[t].done) resume(t);
        }
        if (!progress && live > 0 && !failed) {
            int t = 0;
            while (fibers[t].done) t++;
            snprintf(fail_msg, sizeof fail_msg, "%s: deadlock in block (%u,%u,%u): thread %d waits at %s, %d threads live",
                     run_name, block_idx.x, block_idx.y, block_idx.z, t, fibers[t].waits ? fibers[t].waits : "?", live);
            failed = true;
        }
    }
}

/* SUSHI_EMU_TRACE=1: at exit, every kernel launched with its launch and block counts */
static std::map<std::string, std::pair<long, long>> *trace;

static void trace_print(void) {
    fprintf(stderr, "cuda emu: kernels launched (launches, blocks):\n");
    for (auto &k : *trace) fprintf(stderr, "  %-60s %8ld %10ld\n", k.first.c_str(), k.second.first, k.second.second);
}

static void trace_launch(const char *name, dim3 grid) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SUSHI_EMU_TRACE");
        on = e && *e == '1';
        if (on) trace = new std::map<std::string, std::pair<long, long>>, atexit(trace_print);
    }
    if (!on) return;
    auto &c = (*trace)[name];
    c.first++;
    c.second += (long)grid.x * grid.y * grid.z;
}

void launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem, block_fn body, void *ctx) {
    trace_launch(name, grid);
    unsigned long threads = (unsigned long)block.x * block.y * block.z;
    auto it = func_smem.find(fn);
    size_t smem_max = it != func_smem.end() && it->second > SHARED_DEFAULT ? (size_t)it->second : (size_t)SHARED_DEFAULT;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu) {
        fprintf(stderr, "cuda emu: %s: bad launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n", name, grid.x,
                grid.y, grid.z, block.x, block.y, block.z);
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > smem_max) {
        fprintf(stderr, "cuda emu: %s: %zu bytes of dynamic shared memory above the kernel's limit %zu "
                "(cudaFuncSetAttribute)\n", name, smem, smem_max);
        set_error(cudaErrorInvalidValue);
        return;
    }
    grid_dim = grid, block_dim = block;
    nthreads = (int)threads;
    run_body = body, run_ctx = ctx, run_name = name;
    failed = false;
    for (unsigned z = 0; z < grid.z && !failed; z++)
        for (unsigned y = 0; y < grid.y && !failed; y++)
            for (unsigned x = 0; x < grid.x && !failed; x++) {
                block_idx = dim3(x, y, z);
                memset(shared_window, 0xff, smem);
                run_block();
            }
    if (failed) {
        fprintf(stderr, "cuda emu: launch failed: %s\n", fail_msg);
        set_error(cudaErrorLaunchFailure);
    }
}

} // namespace sushi_emu

size_t __cvta_generic_to_shared(const void *p) {
    return (uint32_t)((intptr_t)p - (intptr_t)sushi_emu::dynamic_shared());
}

/* ---- runtime API ---- */

using namespace sushi_emu;

static std::map<uintptr_t, size_t> allocs;   /* device allocations: start -> bytes */
static size_t alloc_total;

/* true when [p, p+bytes) lies inside one device allocation */
static bool is_device(const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return false;
    --it;
    return a >= it->first && a - it->first + bytes <= it->second && (bytes || a < it->first + it->second);
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated kernel failed)";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }

static cudaError_t ret(cudaError_t e) {
    set_error(e);
    return e;
}

cudaError_t cudaGetDeviceCount(int *n) { return n ? (*n = 1, cudaSuccess) : ret(cudaErrorInvalidValue); }
cudaError_t cudaGetDevice(int *d) { return d ? (*d = 0, cudaSuccess) : ret(cudaErrorInvalidValue); }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : ret(cudaErrorInvalidValue); }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (!p || d != 0) return ret(cudaErrorInvalidValue);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "sushi CUDA emulator (sm_90 on the CPU)");
    p->totalGlobalMem = (size_t)16 << 30;
    p->sharedMemPerBlock = SHARED_DEFAULT;
    p->sharedMemPerBlockOptin = SHARED_OPTIN;
    p->major = 9, p->minor = 0;
    p->multiProcessorCount = 1, p->maxThreadsPerBlock = 1024, p->warpSize = 32;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    if (!v || d != 0) return ret(cudaErrorInvalidValue);
    switch (a) {
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = SHARED_DEFAULT; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = SHARED_OPTIN; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *v = 1; return cudaSuccess;
    }
    return ret(cudaErrorInvalidValue);
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (!p) return ret(cudaErrorInvalidValue);
    *p = NULL;
    if (bytes == 0) return cudaSuccess;
    void *m = aligned_alloc(256, (bytes + 255) & ~(size_t)255);
    if (!m) return ret(cudaErrorMemoryAllocation);
    memset(m, 0xff, bytes);
    allocs[(uintptr_t)m] = bytes;
    alloc_total += bytes;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end()) return ret(cudaErrorInvalidDevicePointer);
    alloc_total -= it->second;
    allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return cudaSuccess;
    if (!dst || !src) return ret(cudaErrorInvalidValue);
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind > cudaMemcpyDefault) return ret(cudaErrorInvalidMemcpyDirection);
    if ((dst_dev && !is_device(dst, bytes)) || (src_dev && !is_device(src, bytes))) {
        fprintf(stderr, "cuda emu: cudaMemcpy of %zu bytes (kind %d): %s is not inside one device allocation\n", bytes,
                (int)kind, dst_dev && !is_device(dst, bytes) ? "the destination" : "the source");
        return ret(cudaErrorInvalidValue);
    }
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *p, int v, size_t bytes) {
    if (bytes == 0) return cudaSuccess;
    if (!p || !is_device(p, bytes)) return ret(cudaErrorInvalidValue);
    memset(p, v, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t) { return cudaMemset(p, v, bytes); }

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    if (!free_bytes || !total) return ret(cudaErrorInvalidValue);
    *total = (size_t)16 << 30;
    *free_bytes = *total > alloc_total ? *total - alloc_total : 0;
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
    if (!a) return ret(cudaErrorInvalidValue);
    memset(a, 0, sizeof *a);
    bool dev = p && is_device(p, 0);
    a->type = dev ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
    a->devicePointer = dev ? (void *)p : NULL;
    a->hostPointer = dev ? NULL : (void *)p;
    return cudaSuccess;
}
