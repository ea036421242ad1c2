// libs: wire data tok config deepseek student kernels cuda core
/* sushi-trainer: trains the student (or a DeepSeek model with model.arch: deepseek).
 *
 * Pipeline mode (the config is a run config with `endpoints`): the trainer stage of the
 * distillation pipeline (protocol.h) — scored batches from teacher replicas (or plain
 * batches straight from the loader in direct mode) → reorder window → KD + CE loss →
 * AdamW → checkpoints, acks, records and metrics. See pipeline.c.
 *
 * Standalone mode (no `endpoints`): byte-level language modelling on train.corpus. See
 * standalone.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "services/trainer/trainer.h"

#define MAX_OVERRIDES 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: sushi-trainer --config FILE [key.path=value ...] [--steps N] [--save DIR]\n"
            "                     [--save-every N] [--resume DIR]\n"
            "\n"
            "Trains the model described by the `model` section of FILE with the settings of\n"
            "its `train` section. Any field can be overridden: train.lr=1e-3 model.n_layers=2.\n"
            "\n"
            "With an `endpoints` section FILE is a pipeline run config: the trainer connects\n"
            "to endpoints.loader, takes scored batches from teacher replicas on\n"
            "endpoints.trainer (or batches from the loader when that is empty), applies them\n"
            "in id order, checkpoints to train.checkpoint_dir every train.save_every steps,\n"
            "acks the loader, announces checkpoints on endpoints.events, and writes\n"
            "RUN/trainer/applied.tsv and losses.tsv (run.dir). train.resume (default true)\n"
            "continues from the checkpoint found there.\n"
            "\n"
            "With model.encoders (a multimodal student) each batch's image / video / audio_mel /\n"
            "mesh_points tensors feed the encoders' prefix (train.image_mean / image_std, default\n"
            "0.5 / 0.5, normalise the pixels). Training stages (pipelines/multistage.yaml):\n"
            "train.init_from=DIR takes the weights of another checkpoint when there is nothing\n"
            "to resume (fresh optimizer and schedule; missing encoders freshly initialised);\n"
            "train.freeze_layers=N keeps the embedding and the first N blocks unchanged.\n"
            "\n"
            "Without it, trains byte-level on the corpus train.corpus (90%% train, 10%% held out).\n"
            "\n"
            "  --config FILE   YAML (e.g. configs/train/tiny-cpu.yaml, or a run config)\n"
            "  --steps N       same as train.steps=N\n"
            "  --save DIR      standalone: write a checkpoint (HF layout + optimizer + trainer\n"
            "                  state) at the end and every --save-every N steps\n"
            "  --resume DIR    standalone: continue a run from its checkpoint\n"
            "  -h, --help      this text\n");
}

int main(int argc, char **argv) {
    log_set_name("sushi-trainer");
    const char *config = NULL, *overrides[MAX_OVERRIDES];
    char steps_override[64];
    struct train_io io = {0};
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            snprintf(steps_override, sizeof steps_override, "train.steps=%s", argv[++i]);
            if (n_over < MAX_OVERRIDES) overrides[n_over++] = steps_override;
        } else if (!strcmp(argv[i], "--save") && i + 1 < argc) {
            io.save_dir = argv[++i];
        } else if (!strcmp(argv[i], "--save-every") && i + 1 < argc) {
            io.save_every = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
            io.resume_dir = argv[++i];
        } else if (argv[i][0] != '-' && strchr(argv[i], '=')) {
            if (n_over == MAX_OVERRIDES) {
                log_error("more than %d overrides", MAX_OVERRIDES);
                return 2;
            }
            overrides[n_over++] = argv[i];
        } else {
            log_error("unknown argument \"%s\" (see --help)", argv[i]);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    struct train_config tc;
    int rc = train_config_load(config, overrides, n_over, &tc);
    if (!rc) rc = tc.pipeline ? trainer_pipeline(&tc) : trainer_standalone(&tc, &io);
    if (rc) {
        log_error("%s", sushi_last_error());
        return 1;
    }
    return 0;
}
