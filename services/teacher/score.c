/* sushi-teacher score: token ids in (one sequence per line), per position the top-K
 * ids, their log-probabilities at temperature T and the tail log-mass out as JSON
 * lines; optionally every raw fp32 logit to a file (SPEC §1). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"
#include "services/teacher/teacher.h"

static void score_usage(FILE *f) {
    fprintf(f,
            "usage: sushi score --model DIR --ids-file F [--logits-out OUT] [--topk K] [--temperature T]\n"
            "                   [--backend cpu|cuda|auto]\n\n"
            "Scores sequences of token ids with a DeepSeek-V3/V2 checkpoint (HF layout). F holds one\n"
            "sequence per line, ids separated by spaces; each line starts at position 0. Prints one\n"
            "JSON object per position: {\"seq\": i, \"pos\": t, \"ids\": [...], \"logprobs\": [...], \"tail\": x}\n"
            "with the top-K ids of the logits, log_softmax(logits/T) at them and the log of the\n"
            "remaining mass (null when K is the whole vocabulary).\n\n"
            "  --model DIR        checkpoint folder (config.json + safetensors)\n"
            "  --ids-file F       token ids, one sequence per line\n"
            "  --logits-out OUT   also write raw fp32 logits (vocab_size per position, lines in order,\n"
            "                     little-endian, no header)\n"
            "  --topk K           default 64\n"
            "  --temperature T    default 1.0\n"
            "  --backend NAME     compute backend (default cpu)\n");
}

/* one line of ids; *n = 0 for a blank line */
static int score_parse_line(const char *path, int lineno, char *line, int32_t **ids, int *n, int *cap) {
    *n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) return 0;
        errno = 0;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" \t\r\n", *end)))
            return sushi_error(SUSHI_EFORMAT, "%s: line %d: \"%.20s\" is not a token id", path, lineno, p);
        if (*n == *cap) {
            int nc = *cap ? *cap * 2 : 256;
            int32_t *g = realloc(*ids, (size_t)nc * sizeof(int32_t));
            if (!g) return sushi_error(SUSHI_ENOMEM, "%s: line %d: out of memory", path, lineno);
            *ids = g;
            *cap = nc;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
}

/* the longest line, to size the cache and RoPE table */
static int score_longest(const char *path, int *longest) {
    FILE *f = fopen(path, "r");
    if (!f) return sushi_error(SUSHI_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    int32_t *ids = NULL;
    int n, cap = 0, rc = 0, lineno = 0;
    *longest = 0;
    while (!rc && getline(&line, &lcap, f) >= 0) {
        rc = score_parse_line(path, ++lineno, line, &ids, &n, &cap);
        if (n > *longest) *longest = n;
    }
    free(line);
    free(ids);
    fclose(f);
    return rc;
}

static void score_print(int seq, int t, const int32_t *ids, const float *lp, int K, float tail) {
    printf("{\"seq\": %d, \"pos\": %d, \"ids\": [", seq, t);
    for (int j = 0; j < K; j++) printf(j ? ", %d" : "%d", ids[j]);
    printf("], \"logprobs\": [");
    for (int j = 0; j < K; j++) printf(j ? ", %.7g" : "%.7g", (double)lp[j]);
    if (isfinite(tail)) printf("], \"tail\": %.7g}\n", (double)tail);
    else printf("], \"tail\": null}\n");
}

int teacher_score(int argc, char **argv) {
    const char *model = NULL, *ids_path = NULL, *logits_path = NULL, *backend = "cpu";
    int K = 64;
    float T = 1.0f;
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"ids-file", required_argument, 0, 'i'},
        {"logits-out", required_argument, 0, 'o'}, {"topk", required_argument, 0, 'k'},
        {"temperature", required_argument, 0, 't'}, {"backend", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'i': ids_path = optarg; break;
        case 'o': logits_path = optarg; break;
        case 'k': if (teacher_parse_int("--topk", optarg, 1, 1 << 20, &K)) return 2; break;
        case 't': if (teacher_parse_float("--temperature", optarg, &T) || !(T > 0)) {
                      log_error("--temperature must be a positive number");
                      return 2;
                  } break;
        case 'b': backend = optarg; break;
        case 'h': score_usage(stdout); return 0;
        default: score_usage(stderr); return 2;
        }
    }
    if (!model || !ids_path || optind < argc) {
        log_error("score needs --model DIR and --ids-file F (see --help)");
        return 2;
    }
    if (!ops_by_name(backend)) {
        log_error("--backend %s: %s", backend, sushi_last_error());
        return 2;
    }
    int longest = 0, rc = score_longest(ids_path, &longest);
    if (rc) goto fail_early;
    struct ds_model m;
    if ((rc = teacher_load(&m, model, backend, 0, longest > 0 ? longest : 1)) != 0) goto fail_early;
    int V = m.cfg.vocab;
    if (K > V) {
        log_error("--topk %d is larger than the vocabulary (%d)", K, V);
        ds_free(&m);
        return 2;
    }
    struct teacher_scorer sc;
    FILE *in = NULL, *lo = NULL;
    float *lp = malloc((size_t)(longest > 0 ? longest : 1) * K * sizeof(float));
    float *tail = malloc((size_t)(longest > 0 ? longest : 1) * sizeof(float));
    int32_t *top = malloc((size_t)(longest > 0 ? longest : 1) * K * sizeof(int32_t)), *ids = NULL;
    if ((rc = teacher_scorer_init(&sc, &m)) != 0) goto done;
    if (!lp || !tail || !top) { rc = sushi_error(SUSHI_ENOMEM, "score: out of memory"); goto done; }
    if (!(in = fopen(ids_path, "r"))) { rc = sushi_error(SUSHI_EIO, "%s: %s", ids_path, strerror(errno)); goto done; }
    if (logits_path && !(lo = fopen(logits_path, "wb"))) {
        rc = sushi_error(SUSHI_EIO, "%s: %s", logits_path, strerror(errno));
        goto done;
    }
    char *line = NULL;
    size_t lcap = 0;
    int n, cap = 0, lineno = 0;
    while (!rc && getline(&line, &lcap, in) >= 0) {
        int seq = lineno++;
        if ((rc = score_parse_line(ids_path, lineno, line, &ids, &n, &cap)) != 0 || n == 0) continue;
        if ((rc = teacher_score_seq(&sc, ids, n, K, T, top, lp, tail)) != 0) break;
        if (lo && fwrite(sc.logits, sizeof(float), (size_t)n * V, lo) != (size_t)n * V)
            rc = sushi_error(SUSHI_EIO, "%s: write failed", logits_path);
        for (int t = 0; !rc && t < n; t++) score_print(seq, t, top + (size_t)t * K, lp + (size_t)t * K, K, tail[t]);
    }
    free(line);
    if (lo && fclose(lo) && !rc) rc = sushi_error(SUSHI_EIO, "%s: close failed", logits_path);
    lo = NULL;
done:
    if (in) fclose(in);
    if (lo) fclose(lo);
    free(lp);
    free(tail);
    free(top);
    free(ids);
    teacher_scorer_free(&sc);
    ds_free(&m);
    if (fflush(stdout) && !rc) rc = sushi_error(SUSHI_EIO, "stdout: write failed");
fail_early:
    if (rc) log_error("%s", sushi_last_error());
    return rc ? 1 : 0;
}
