/* The trainer's settings: the `train` section of a training YAML (the `model` section
 * is the student config, or a DeepSeek config with `arch: deepseek`), with
 * `key.path=value` overrides from the command line. A config with an `endpoints`
 * section is a pipeline run config (README, protocol.h): then `run`, `endpoints`,
 * `data.batch_size`/`data.seq_len` and the pipeline fields of `train` apply too. */
#ifndef SUSHI_TRAIN_CONFIG_H
#define SUSHI_TRAIN_CONFIG_H

#include <stdint.h>

#include "models/deepseek/deepseek.h"
#include "models/optim.h"
#include "models/student/student.h"

enum train_arch { TRAIN_ARCH_LLAMA = 0, TRAIN_ARCH_DEEPSEEK = 1 };

struct train_kd {
    float alpha;             /* weight of the KD term (0: cross-entropy only) */
    enum kd_mode mode;       /* forward | reverse | jsd */
    float temperature;       /* must equal the teacher's meta.temperature */
    float jsd_beta;
};

/* train.loss_scale: auto (dynamic from 65536 when the backend computes in f16, else off),
 * off, dynamic (from 65536 on any backend) or a number (dynamic from that scale) */
enum train_loss_scale { TRAIN_SCALE_AUTO = 0, TRAIN_SCALE_OFF = 1, TRAIN_SCALE_DYNAMIC = 2 };
#define TRAIN_SCALE_INITIAL 65536.0f

struct train_config {
    enum train_arch arch;
    struct student_config model;  /* arch llama */
    struct ds_config ds;          /* arch deepseek */
    struct optim_config optim;   /* loss_scale resolved against the backend by
                                  * trainer_optim_config (loss_scale.h) */
    enum train_loss_scale loss_scale;
    float loss_scale_init;   /* initial dynamic scale (65536 unless a number was given) */
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

    /* training stages (pipelines/multistage.yaml) */
    char init_from[512];     /* weights only from this checkpoint when not resuming ("" = none) */
    int freeze_layers;       /* the embedding and the first N blocks get no updates */
    float image_mean[3], image_std[3];   /* u8 pixels → (x/255 − mean) / std (default 0.5, 0.5) */

    /* pipeline mode */
    int pipeline;            /* the config has `endpoints` */
    int direct;              /* no endpoints.trainer: batches come from the loader */
    int allow_remote;        /* endpoints.allow_remote: tcp endpoints beyond loopback */
    char run_dir[512];       /* run.dir: records go to RUN/trainer/ */
    char ep_loader[256], ep_trainer[256], ep_events[256];
    char checkpoint_dir[512];
    int save_every;          /* optimizer steps between checkpoints (and acks) */
    int window;              /* reorder window W */
    int heartbeat_ms, dead_after_ms;
    struct train_kd kd;
    int resume;              /* load checkpoint_dir at start when it holds a checkpoint */
    int save_initial;        /* a fresh run checkpoints its initial weights (step 0) first */
    int deterministic;       /* train.deterministic: bit-reproducible runs (CPU backend only) */
};

/* Reads `path` with the overrides applied; messages name the file and key. */
int train_config_load(const char *path, const char *const *overrides, int n_overrides,
                      struct train_config *out);

#endif
