/* GPU utilisation and memory from NVML, opened with dlopen at run time: binaries never
 * link against the driver, so they start on machines without one (CI), and report the
 * GPU's state where it exists. The library is libnvidia-ml.so.1, or the file named by
 * SUSHI_NVML_LIB. */
#ifndef SUSHI_NVML_H
#define SUSHI_NVML_H

struct nvml_sample {
    unsigned util_gpu;              /* % of time a kernel ran over the last sample period */
    unsigned util_mem;              /* % of time device memory was read or written */
    unsigned long long mem_used;    /* bytes */
    unsigned long long mem_total;   /* bytes */
    unsigned temp_c;                /* GPU temperature, °C (0 when unknown) */
    unsigned power_mw;              /* board power, milliwatts (0 when unknown) */
};

/* Loads and initialises NVML (once; later calls are cheap). SUSHI_ENOTFOUND when the
 * library or a driver is absent, with the reason in sushi_last_error(). */
int nvml_open(void);
int nvml_device_count(int *n);
int nvml_sample(int device, struct nvml_sample *out);
/* Shuts NVML down and unloads it; nvml_open may be called again. */
void nvml_close(void);

#endif
