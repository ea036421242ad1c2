/* NVML through dlopen: the few entry points sushi needs, resolved at run time. */
#include "common/core/nvml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"

/* NVML's ABI: nvmlReturn_t is an int (0 = success), handles are opaque pointers. */
typedef int nvml_ret;
typedef void *nvml_dev;
struct nvml_util { unsigned gpu, memory; };
struct nvml_mem { unsigned long long total, free, used; };

static struct {
    void *lib;
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    nvml_ret (*count)(unsigned *);
    nvml_ret (*handle)(unsigned, nvml_dev *);
    nvml_ret (*util)(nvml_dev, struct nvml_util *);
    nvml_ret (*mem)(nvml_dev, struct nvml_mem *);
    nvml_ret (*temp)(nvml_dev, int, unsigned *);
    nvml_ret (*power)(nvml_dev, unsigned *);
    const char *(*error)(nvml_ret);
} nv;
static pthread_mutex_t nvml_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *nvml_err(nvml_ret r) {
    return nv.error ? nv.error(r) : "unknown NVML error";
}

static void nvml_unload(void) {
    if (nv.lib) dlclose(nv.lib);
    memset(&nv, 0, sizeof nv);
}

static int nvml_load(void) {
    const char *path = getenv("SUSHI_NVML_LIB");
    if (!path || !*path) path = "libnvidia-ml.so.1";
    nv.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!nv.lib) {
        const char *why = dlerror();
        return sushi_error(SUSHI_ENOTFOUND, "NVML: cannot open %s (%s): no NVIDIA driver here", path,
                           why ? why : "not found");
    }
    struct { const char *name; void **slot; int required; } syms[] = {
        {"nvmlInit_v2", (void **)&nv.init, 1},
        {"nvmlShutdown", (void **)&nv.shutdown, 1},
        {"nvmlDeviceGetCount_v2", (void **)&nv.count, 1},
        {"nvmlDeviceGetHandleByIndex_v2", (void **)&nv.handle, 1},
        {"nvmlDeviceGetUtilizationRates", (void **)&nv.util, 1},
        {"nvmlDeviceGetMemoryInfo", (void **)&nv.mem, 1},
        {"nvmlDeviceGetTemperature", (void **)&nv.temp, 0},
        {"nvmlDeviceGetPowerUsage", (void **)&nv.power, 0},
        {"nvmlErrorString", (void **)&nv.error, 0},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(nv.lib, syms[i].name);
        if (!*syms[i].slot && syms[i].required) {
            int rc = sushi_error(SUSHI_ENOTFOUND, "NVML: %s lacks %s", path, syms[i].name);
            nvml_unload();
            return rc;
        }
    }
    nvml_ret r = nv.init();
    if (r != 0) {
        int rc = sushi_error(SUSHI_ENOTFOUND, "NVML: nvmlInit failed: %s", nvml_err(r));
        nvml_unload();
        return rc;
    }
    return 0;
}

int nvml_open(void) {
    pthread_mutex_lock(&nvml_lock);
    int rc = nv.lib ? 0 : nvml_load();
    pthread_mutex_unlock(&nvml_lock);
    return rc;
}

void nvml_close(void) {
    pthread_mutex_lock(&nvml_lock);
    if (nv.lib) nv.shutdown();
    nvml_unload();
    pthread_mutex_unlock(&nvml_lock);
}

int nvml_device_count(int *n) {
    if (!n) return sushi_error(SUSHI_EINVAL, "nvml_device_count: NULL");
    int rc = nvml_open();
    if (rc) return rc;
    unsigned c = 0;
    nvml_ret r = nv.count(&c);
    if (r != 0) return sushi_error(SUSHI_EBACKEND, "NVML: device count: %s", nvml_err(r));
    *n = (int)c;
    return 0;
}

int nvml_sample(int device, struct nvml_sample *out) {
    if (!out || device < 0) return sushi_error(SUSHI_EINVAL, "nvml_sample: bad argument");
    int rc = nvml_open();
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    nvml_dev d = NULL;
    struct nvml_util u = {0, 0};
    struct nvml_mem m = {0, 0, 0};
    nvml_ret r = nv.handle((unsigned)device, &d);
    if (r == 0) r = nv.util(d, &u);
    if (r == 0) r = nv.mem(d, &m);
    if (r != 0) return sushi_error(SUSHI_EBACKEND, "NVML: device %d: %s", device, nvml_err(r));
    out->util_gpu = u.gpu;
    out->util_mem = u.memory;
    out->mem_used = m.used;
    out->mem_total = m.total;
    if (nv.temp && nv.temp(d, 0 /* NVML_TEMPERATURE_GPU */, &out->temp_c) != 0) out->temp_c = 0;
    if (nv.power && nv.power(d, &out->power_mw) != 0) out->power_mw = 0;
    return 0;
}
