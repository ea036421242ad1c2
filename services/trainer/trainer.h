/* The trainer's two modes: standalone byte-level training on a corpus (standalone.c)
 * and the distillation pipeline stage (pipeline.c); main.c picks one from the config. */
#ifndef SUSHI_TRAINER_H
#define SUSHI_TRAINER_H

#include "services/trainer/train_config.h"

struct train_io {
    const char *save_dir;    /* --save: checkpoint written every save_every steps and at the end */
    const char *resume_dir;  /* --resume: continue from this checkpoint */
    int save_every;
};

/* Selects and sets up the compute backend named by train.backend (threads on CPU). */
int trainer_backend(const struct train_config *tc, const struct ops **out);

int trainer_standalone(const struct train_config *tc, const struct train_io *io);
int trainer_pipeline(const struct train_config *tc);

#endif
