/* Built when nvcc is absent: the CUDA backend reports that it is not compiled in. */
#include "common/core/log.h"
#include "kernels/ops.h"

const struct ops *ops_cuda(void) {
    sushi_error(SUSHI_EUNSUPPORTED, "CUDA backend: this build has no CUDA (nvcc was not found at build time)");
    return NULL;
}
