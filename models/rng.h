/* Deterministic random numbers for initialisation and sampling: a 64-bit generator
 * (SplitMix64) whose whole state is one integer, so a checkpoint saves and restores it
 * exactly. Same seed → same sequence on every machine. */
#ifndef SUSHI_RNG_H
#define SUSHI_RNG_H

#include <stddef.h>
#include <stdint.h>

struct rng {
    uint64_t state;
};

void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_u64(struct rng *r);
/* uniform in [0, 1) with 24 random bits */
float rng_uniform(struct rng *r);
/* standard normal (Box–Muller, one draw per call: no cached second value, so the state
 * is the only thing to save) */
float rng_normal(struct rng *r);
/* x[i] = mean + std · normal, i < n; returns 0 or SUSHI_EINVAL on a NULL buffer */
int rng_fill_normal(struct rng *r, float *x, size_t n, float mean, float std);

#endif
