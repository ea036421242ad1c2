/* Choosing a backend by name, and the CPU backend's thread count. */
#include <string.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/ops.h"

const struct ops *ops_by_name(const char *name) {
    if (!name) {
        sushi_error(SUSHI_EINVAL, "backend: NULL name (expected cpu, cuda or auto)");
        return NULL;
    }
    if (strcmp(name, "cpu") == 0) return ops_cpu();
    if (strcmp(name, "cuda") == 0) return ops_cuda();
    if (strcmp(name, "auto") == 0) {
        const struct ops *o = ops_cuda();
        if (o) return o;
        log_info("backend auto: CUDA not usable (%s); using the CPU", sushi_last_error());
        sushi_clear_error();
        return ops_cpu();
    }
    sushi_error(SUSHI_EINVAL, "backend '%s': unknown (expected cpu, cuda or auto)", name);
    return NULL;
}

void ops_cpu_set_threads(int n) { cpu_pool_set_threads(n); }

int ops_cpu_threads(void) { return cpu_pool_threads(); }
