/* SplitMix64 random numbers (see rng.h). */
#include "models/rng.h"

#include <math.h>

#include "common/core/log.h"

void rng_seed(struct rng *r, uint64_t seed) { r->state = seed; }

uint64_t rng_u64(struct rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float rng_uniform(struct rng *r) { return (float)(rng_u64(r) >> 40) / 16777216.0f; }

float rng_normal(struct rng *r) {
    /* u1 in (0, 1] so log(u1) is finite */
    double u1 = ((double)(rng_u64(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(rng_u64(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

int rng_fill_normal(struct rng *r, float *x, size_t n, float mean, float std) {
    if (!r || (!x && n)) return sushi_error(SUSHI_EINVAL, "rng_fill_normal: NULL argument");
    for (size_t i = 0; i < n; i++) x[i] = mean + std * rng_normal(r);
    return 0;
}
