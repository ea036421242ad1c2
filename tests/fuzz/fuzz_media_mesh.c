/* libFuzzer target for mesh import (assimp) and surface sampling (tests/fuzz/media.mk).
 * Byte 0 picks the format by extension (.obj .ply .stl .gltf), the rest is the file.
 * Sampled points must lie in the unit sphere with unit normals. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/core/log.h"
#include "common/media/media.h"
#include "fuzz_media_file.h"

/* assimp leaks C++ objects on some malformed files (inside the library, never through
 * this C code, which allocates nothing with operator new): not reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libstdc++.so\nleak:libassimp.so\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { log_set_level(LOG_QUIET); quiet = 1; }
    if (size < 1) return 0;
    static const char *ext[4] = {".obj", ".ply", ".stl", ".gltf"};
    const char *path = fuzz_media_file(data + 1, size - 1, ext[data[0] % 4]);
    struct media_mesh_opts o = {.points = 64, .seed = size};
    struct media_errors errs = {0};
    struct media_points p;
    int rc = media_mesh_load(path, &o, &p, &errs);
    unlink(path);
    if (rc) {
        if (media_errors_total(&errs) != 1 || p.data) abort();
        return 0;
    }
    for (int i = 0; i < p.n; i++) {
        const float *q = p.data + i * 6;
        double r = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2]);
        double n = sqrt(q[3] * q[3] + q[4] * q[4] + q[5] * q[5]);
        if (!(r <= 1.001) || !(fabs(n - 1) < 1e-3)) abort();
    }
    media_points_free(&p);
    return 0;
}
