/* Choosing a backend by name, and the CPU backend's thread count. */
#include <string.h>

#include "common/core/log.h"
#include "common/core/nvml.h"
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

int ops_device_metrics(const struct ops *ops, json_t *meta) {
    if (!ops || !json_is_object(meta)) return sushi_error(SUSHI_EINVAL, "ops_device_metrics: bad argument");
    struct ops_mem m;
    if (ops->mem_stats && ops->mem_stats(&m) == 0) {
        json_object_set_new(meta, "mem_allocated_bytes", json_integer((json_int_t)m.allocated));
        json_object_set_new(meta, "mem_peak_bytes", json_integer((json_int_t)m.peak));
        if (m.total) {
            json_object_set_new(meta, "device_mem_free_bytes", json_integer((json_int_t)m.free));
            json_object_set_new(meta, "device_mem_total_bytes", json_integer((json_int_t)m.total));
        }
    }
    /* utilisation only where a GPU computes; NVML is not even opened on the CPU */
    struct nvml_sample s;
    if (ops != ops_cpu() && nvml_sample(0, &s) == 0) {
        json_object_set_new(meta, "gpu_util_pct", json_integer(s.util_gpu));
        json_object_set_new(meta, "gpu_mem_util_pct", json_integer(s.util_mem));
        json_object_set_new(meta, "gpu_mem_used_bytes", json_integer((json_int_t)s.mem_used));
        if (s.temp_c) json_object_set_new(meta, "gpu_temp_c", json_integer(s.temp_c));
        if (s.power_mw) json_object_set_new(meta, "gpu_power_w", json_real(s.power_mw / 1000.0));
    }
    sushi_clear_error();
    return 0;
}
