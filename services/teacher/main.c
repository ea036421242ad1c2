// libs: wire config tok deepseek student kernels cuda core
/* sushi-teacher: the DeepSeek teacher (SPEC §1) as a tool, a pipeline stage and a service.
 *   score     token ids -> per-position top-K log-probabilities (+ raw logits)
 *   generate  prompt -> text, with the MLA latent cache; --prompts-file: JSONL in -> JSONL out
 *   pipeline  a replica of the distill pipeline: batches from the loader -> scored
 *             batches to the trainer (pipeline.c)
 *   serve     a ROUTER service answering info / score / generate requests (serve.c)
 * `sushi score` and `sushi generate` are aliases. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "services/teacher/teacher.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sushi-teacher COMMAND [OPTIONS]\n\n"
            "Runs a DeepSeek-V3/V2 checkpoint in the HF layout (bf16, f16, f32 or FP8 e4m3).\n\n"
            "  score      score token ids: top-K log-probabilities per position (sushi score)\n"
            "  generate   generate text from a prompt, or from each line of a JSONL prompts file\n"
            "             (--prompts-file F --out OUT.jsonl: chain-of-thought data; sushi generate)\n"
            "  pipeline   run as a teacher replica of a distill run (--config RUN.yaml)\n"
            "  serve      answer info / score / generate requests over ZeroMQ\n\n"
            "COMMAND --help describes each.\n");
}

int teacher_parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        log_error("%s: \"%s\" is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int teacher_parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) {
        log_error("%s: \"%s\" is not a number", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    log_set_name("sushi-teacher");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "score")) return teacher_score(argc - 1, argv + 1);
    if (!strcmp(argv[1], "generate")) return teacher_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "pipeline")) return teacher_pipeline(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return teacher_serve(argc - 1, argv + 1);
    log_error("unknown command \"%s\" (score, generate, pipeline, serve)", argv[1]);
    usage(stderr);
    return 2;
}
