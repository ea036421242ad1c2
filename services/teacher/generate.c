/* sushi-teacher generate: prompt -> tokens -> one prefill pass -> one cached step per
 * new token (the MLA cache holds only c and k_pe), greedy or temperature / top-p
 * sampling, stopping at a stop token or after --max-tokens; prints the decoded text. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"
#include "models/deepseek/deepseek.h"
#include "models/rng.h"
#include "services/teacher/teacher.h"

#define GEN_MAX_STOPS 16

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: sushi generate --model DIR --tokenizer FILE --prompt TEXT [--max-tokens N]\n"
            "                      [--temperature T] [--top-p P] [--seed S] [--stop ID]... [--backend NAME]\n\n"
            "Generates a continuation of TEXT with a DeepSeek-V3/V2 checkpoint and prints it.\n\n"
            "  --model DIR        checkpoint folder (config.json + safetensors)\n"
            "  --tokenizer FILE   tokenizer.json\n"
            "  --prompt TEXT      the prompt (encoded with the tokenizer's special tokens)\n"
            "  --max-tokens N     new tokens at most (default 128)\n"
            "  --temperature T    0 = greedy (default 0)\n"
            "  --top-p P          nucleus sampling mass (default 1.0)\n"
            "  --seed S           sampling seed (default 1)\n"
            "  --stop ID          stop token id, repeatable (default: the tokenizer's EOS)\n"
            "  --backend NAME     compute backend (default cpu)\n");
}

struct gen_sampler {
    float temperature, top_p;
    struct rng rng;
    int *order;     /* [V] scratch */
    double *p;      /* [V] scratch */
};

static int gen_cmp_desc(const void *a, const void *b, void *ctx) {
    const double *p = ctx;
    double x = p[*(const int *)a], y = p[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* next token from one row of logits z (V) */
static int32_t gen_sample(struct gen_sampler *s, const float *z, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > z[best]) best = i;
    if (s->temperature <= 0) return best;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        s->p[i] = exp((z[i] - z[best]) / s->temperature);
        sum += s->p[i];
        s->order[i] = i;
    }
    for (int i = 0; i < V; i++) s->p[i] /= sum;
    qsort_r(s->order, (size_t)V, sizeof(int), gen_cmp_desc, s->p);
    int keep = 0;
    double mass = 0;
    while (keep < V && (keep == 0 || mass < s->top_p)) mass += s->p[s->order[keep++]];
    double u = rng_uniform(&s->rng) * mass, acc = 0;
    for (int j = 0; j < keep; j++) {
        acc += s->p[s->order[j]];
        if (u < acc) return s->order[j];
    }
    return s->order[keep - 1];
}

int teacher_generate(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *prompt = NULL, *backend = "cpu";
    int max_tokens = 128, seed = 1, n_stop = 0, stops[GEN_MAX_STOPS];
    struct gen_sampler s = {.temperature = 0.0f, .top_p = 1.0f};
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"tokenizer", required_argument, 0, 'k'},
        {"prompt", required_argument, 0, 'p'},      {"max-tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'}, {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},        {"stop", required_argument, 0, 'S'},
        {"backend", required_argument, 0, 'b'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'k': tok_path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': if (teacher_parse_int("--max-tokens", optarg, 1, 1 << 20, &max_tokens)) return 2; break;
        case 't': if (teacher_parse_float("--temperature", optarg, &s.temperature) || s.temperature < 0) return 2; break;
        case 'P': if (teacher_parse_float("--top-p", optarg, &s.top_p) || !(s.top_p > 0 && s.top_p <= 1)) {
                      log_error("--top-p must be in (0, 1]");
                      return 2;
                  } break;
        case 's': if (teacher_parse_int("--seed", optarg, 0, 1L << 30, &seed)) return 2; break;
        case 'S':
            if (n_stop == GEN_MAX_STOPS) { log_error("--stop: at most %d", GEN_MAX_STOPS); return 2; }
            if (teacher_parse_int("--stop", optarg, 0, 1L << 30, &stops[n_stop++])) return 2;
            break;
        case 'b': backend = optarg; break;
        case 'h': generate_usage(stdout); return 0;
        default: generate_usage(stderr); return 2;
        }
    }
    if (!model || !tok_path || !prompt || optind < argc) {
        log_error("generate needs --model DIR, --tokenizer FILE and --prompt TEXT (see --help)");
        return 2;
    }
    const struct ops *ops = ops_by_name(backend);
    if (!ops) { log_error("--backend %s: %s", backend, sushi_last_error()); return 2; }
    rng_seed(&s.rng, (uint64_t)seed);
    struct tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = tok_load(&tok, tok_path);
    if (!rc) rc = tok_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids);
    if (!rc && n_ids == 0) rc = sushi_error(SUSHI_EINVAL, "--prompt: encodes to no tokens");
    if (!rc && n_stop == 0 && tok_eos_id(tok) >= 0) stops[n_stop++] = tok_eos_id(tok);
    if (rc) { log_error("%s", sushi_last_error()); tok_free(tok); free(ids); return 1; }
    struct ds_model m;
    struct ds_cache cache = {0};
    int total = (int)n_ids + max_tokens;
    rc = ds_load(&m, model, ops, total);
    if (rc) { log_error("%s", sushi_last_error()); tok_free(tok); free(ids); return 1; }
    int V = m.cfg.vocab;
    float *logits = malloc((size_t)n_ids * V * sizeof(float));
    int32_t *out = malloc((size_t)max_tokens * sizeof(int32_t));
    s.order = malloc((size_t)V * sizeof(int));
    s.p = malloc((size_t)V * sizeof(double));
    if (!logits || !out || !s.order || !s.p) rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
    if (!rc) rc = ds_cache_init(&cache, &m);
    if (!rc) rc = ds_forward(&m, &cache, ids, (int)n_ids, logits);  /* prefill */
    int n_out = 0;
    const float *last = logits + (n_ids - 1) * (size_t)V;
    while (!rc && n_out < max_tokens) {
        int32_t next = gen_sample(&s, last, V);
        int stop = 0;
        for (int i = 0; i < n_stop; i++) stop |= next == stops[i];
        if (stop) break;
        out[n_out++] = next;
        if (n_out < max_tokens) rc = ds_forward(&m, &cache, &next, 1, logits);
        last = logits;
    }
    char *text = NULL;
    size_t len = 0;
    if (!rc) rc = tok_decode(tok, out, (size_t)n_out, 1, &text, &len);
    if (!rc) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
    }
    if (rc) log_error("%s", sushi_last_error());
    free(text);
    free(logits);
    free(out);
    free(s.order);
    free(s.p);
    free(ids);
    ds_cache_free(&cache, &m);
    ds_free(&m);
    tok_free(tok);
    return rc ? 1 : 0;
}
