/* The trainer's settings: the `train` section of a training YAML (the `model` section
 * is the student config), with `key.path=value` overrides from the command line. */
#ifndef SUSHI_TRAIN_CONFIG_H
#define SUSHI_TRAIN_CONFIG_H

#include <stdint.h>

#include "models/optim.h"
#include "models/student/student.h"

struct train_config {
    struct student_config model;
    struct optim_config optim;
    int batch_size;          /* sequences per micro-batch (B) */
    int seq_len;             /* T (≤ model.max_seq) */
    int steps;               /* optimizer steps */
    int scale_lr;            /* lr = optim.lr · (B·accum) / base_batch */
    int base_batch;          /* batch at which optim.lr is the right value (16) */
    int log_every;
    int threads;             /* CPU threads, 0 = backend default */
    float smoothing;         /* label smoothing */
    uint64_t seed;
    char corpus[512];        /* byte-level training text, relative to the repo root */
    char backend[16];        /* cpu | cuda | auto */
};

/* Reads `path` with the overrides applied; messages name the file and key. */
int train_config_load(const char *path, const char *const *overrides, int n_overrides,
                      struct train_config *out);

#endif
