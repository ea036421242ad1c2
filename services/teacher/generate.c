/* Generation, shared by `sushi-teacher generate` and the service's generate request:
 * prompt ids -> one prefill pass -> one cached step per new token (the MLA cache holds
 * only c and k_pe), greedy or temperature / top-k / top-p sampling, stopping at a stop
 * token or after max_new tokens. The command encodes a prompt and prints the text; with
 * --prompts-file it runs over a JSONL file of {"prompt": "..."} lines and writes one
 * {"text": prompt + continuation} line each to --out (chain-of-thought data for a later
 * training stage, read as a JSONL text source). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"
#include "models/deepseek/deepseek.h"
#include "models/rng.h"
#include "services/teacher/teacher.h"

#define GEN_MAX_STOPS 16

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: sushi generate --model DIR --tokenizer FILE --prompt TEXT [--max-tokens N]\n"
            "                      [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop ID]... [--backend NAME]\n"
            "       sushi generate --model DIR --prompts-file F.jsonl --out OUT.jsonl [--max-new N] [...]\n\n"
            "Generates a continuation of TEXT with a DeepSeek-V3/V2 checkpoint and prints it.\n"
            "With --prompts-file: for each line {\"prompt\": \"...\"} of F.jsonl (blank lines skipped)\n"
            "writes {\"text\": prompt + continuation} to OUT.jsonl (atomically, in order; sampling\n"
            "seeded per line with seed + line index).\n\n"
            "  --model DIR        checkpoint folder (config.json + safetensors)\n"
            "  --tokenizer FILE   tokenizer.json (default DIR/tokenizer.json)\n"
            "  --prompt TEXT      the prompt (encoded with the tokenizer's special tokens)\n"
            "  --prompts-file F   JSONL prompts (batch mode)\n"
            "  --out FILE         batch mode: the JSONL written\n"
            "  --max-tokens N     new tokens at most (default 128; --max-new is the same)\n"
            "  --temperature T    0 = greedy (default 0)\n"
            "  --top-k K          sample among the K most likely ids (default 0 = all)\n"
            "  --top-p P          nucleus sampling mass (default 1.0)\n"
            "  --seed S           sampling seed (default 1)\n"
            "  --stop ID          stop token id, repeatable (default: the tokenizer's EOS)\n"
            "  --backend NAME     compute backend (default cpu)\n");
}

struct gen_sampler {
    float temperature, top_p;
    int top_k;
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
    int keep = 0, most = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    double mass = 0;
    while (keep < most && (keep == 0 || mass < s->top_p)) mass += s->p[s->order[keep++]];
    double u = rng_uniform(&s->rng) * mass, acc = 0;
    for (int j = 0; j < keep; j++) {
        acc += s->p[s->order[j]];
        if (u < acc) return s->order[j];
    }
    return s->order[keep - 1];
}

int teacher_generate_ids(struct ds_model *m, struct ds_cache *cache, const int32_t *prompt, int n,
                         const struct teacher_gen_opts *o, int32_t *out, int *n_out) {
    if (!m || !cache || !prompt || n < 1 || !o || !out || !n_out || o->max_new < 1 || o->temperature < 0 ||
        !(o->top_p > 0 && o->top_p <= 1) || o->top_k < 0 || (o->n_stops > 0 && !o->stops))
        return sushi_error(SUSHI_EINVAL, "teacher_generate_ids: bad argument");
    *n_out = 0;
    /* the last new token is never fed back */
    if ((int64_t)n + o->max_new - 1 > cache->cap)
        return sushi_error(SUSHI_EINVAL, "generate: a prompt of %d tokens and %d new ones exceed the maximum %d",
                           n, o->max_new, cache->cap);
    int V = m->cfg.vocab, rc = teacher_check_ids("prompt", prompt, (size_t)n, V);
    if (rc) return rc;
    struct gen_sampler s = {.temperature = o->temperature, .top_p = o->top_p, .top_k = o->top_k};
    rng_seed(&s.rng, o->seed);
    float *logits = malloc((size_t)n * V * sizeof(float));
    s.order = malloc((size_t)V * sizeof(int));
    s.p = malloc((size_t)V * sizeof(double));
    if (!logits || !s.order || !s.p) rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
    ds_cache_reset(cache);
    if (!rc) rc = ds_forward(m, cache, prompt, n, logits);  /* prefill */
    const float *last = logits + (size_t)(n - 1) * V;
    while (!rc && *n_out < o->max_new) {
        int32_t next = gen_sample(&s, last, V);
        int stop = 0;
        for (int i = 0; i < o->n_stops; i++) stop |= next == o->stops[i];
        if (stop) break;
        out[(*n_out)++] = next;
        if (*n_out < o->max_new) rc = ds_forward(m, cache, &next, 1, logits);
        last = logits;
    }
    free(logits);
    free(s.order);
    free(s.p);
    return rc;
}

/* one prompt line: its text (borrowed from *j), or an error naming the file and line */
static int gen_prompt_line(const char *file, int lineno, const char *line, json_t **j, const char **prompt) {
    json_error_t err;
    *j = json_loads(line, JSON_REJECT_DUPLICATES, &err);
    if (!*j) return sushi_error(SUSHI_EFORMAT, "%s:%d: corrupt JSON: %s", file, lineno, err.text);
    json_t *p = json_object_get(*j, "prompt");
    if (!json_is_string(p) || json_string_length(p) == 0)
        return sushi_error(SUSHI_EFORMAT, "%s:%d: needs a non-empty string \"prompt\"", file, lineno);
    *prompt = json_string_value(p);
    return 0;
}

/* batch mode: every prompt of prompts_file → one {"text"} line of out_path */
static int gen_batch(const char *model, const char *backend, struct tokenizer *tok, const char *prompts_file,
                     const char *out_path, struct teacher_gen_opts g) {
    char *buf = NULL;
    size_t len = 0;
    int rc = fs_read_all(prompts_file, &buf, &len);
    if (rc) return rc;
    /* pass 1: encode every prompt (the cache is sized for the longest) */
    int cap = 0, n_lines = 0;
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        n_lines++;
    }
    int32_t **ids = calloc((size_t)n_lines + 1, sizeof *ids);
    size_t *n_ids = calloc((size_t)n_lines + 1, sizeof *n_ids);
    const char **prompts = calloc((size_t)n_lines + 1, sizeof *prompts);
    json_t **docs = calloc((size_t)n_lines + 1, sizeof *docs);
    if (!ids || !n_ids || !prompts || !docs) rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
    char *line = buf;
    for (int i = 0; i < n_lines && !rc; i++, line += strlen(line) + 1) {
        const char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (!*s) continue;   /* blank line */
        rc = gen_prompt_line(prompts_file, i + 1, line, &docs[i], &prompts[i]);
        if (!rc) rc = tok_encode(tok, prompts[i], strlen(prompts[i]), 1, &ids[i], &n_ids[i]);
        if (!rc && n_ids[i] == 0) rc = sushi_error(SUSHI_EINVAL, "%s:%d: prompt encodes to no tokens", prompts_file, i + 1);
        if (!rc && (int)n_ids[i] > cap) cap = (int)n_ids[i];
    }
    struct ds_model m;
    struct ds_cache cache = {0};
    int have_model = 0;
    if (!rc) rc = teacher_load(&m, model, backend, 0, cap + g.max_new);
    have_model = !rc;
    if (!rc) rc = ds_cache_init(&cache, &m);
    int32_t *out = malloc((size_t)g.max_new * sizeof(int32_t));
    json_t *all = json_array();
    if (!rc && (!out || !all)) rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
    int done = 0;
    for (int i = 0; i < n_lines && !rc; i++) {
        if (!prompts[i]) continue;
        int n_out = 0;
        struct teacher_gen_opts o = g;
        o.seed = g.seed + (uint64_t)i;
        rc = teacher_generate_ids(&m, &cache, ids[i], (int)n_ids[i], &o, out, &n_out);
        char *text = NULL;
        size_t tlen = 0;
        if (!rc) rc = tok_decode(tok, out, (size_t)n_out, 1, &text, &tlen);
        if (!rc) {
            size_t pl = strlen(prompts[i]);
            char *full = malloc(pl + tlen + 1);
            if (!full) rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
            else {
                memcpy(full, prompts[i], pl);
                memcpy(full + pl, text, tlen);
                full[pl + tlen] = 0;
                json_t *str = json_stringn(full, pl + tlen), *o_line = str ? json_object() : NULL;
                if (!str) rc = sushi_error(SUSHI_EFORMAT, "%s:%d: the continuation is not valid UTF-8", prompts_file, i + 1);
                else if (!o_line) json_decref(str);
                if (str && (!o_line || json_object_set_new(o_line, "text", str) || json_array_append_new(all, o_line)))
                    rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
                free(full);
            }
        }
        free(text);
        if (!rc && ++done % 10 == 0) log_info("generate: %d prompts done", done);
    }
    /* the JSONL file, written atomically */
    size_t total = 0, used = 0;
    char *jsonl = NULL;
    for (size_t i = 0; !rc && i < json_array_size(all); i++) {
        char *s = json_dumps(json_array_get(all, i), JSON_COMPACT | JSON_ENSURE_ASCII);
        size_t n = s ? strlen(s) : 0;
        char *grown = s ? realloc(jsonl, used + n + 2) : NULL;
        if (!grown) {
            free(s);
            rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
            break;
        }
        jsonl = grown;
        memcpy(jsonl + used, s, n);
        jsonl[used + n] = '\n';
        used += n + 1;
        total++;
        free(s);
    }
    if (!rc) rc = fs_write_atomic(out_path, jsonl ? jsonl : "", used);
    if (!rc) log_info("generate: %zu continuations (at most %d new tokens each) -> %s", total, g.max_new, out_path);
    free(jsonl);
    json_decref(all);
    free(out);
    if (have_model) {
        ds_cache_free(&cache, &m);
        ds_free(&m);
    }
    for (int i = 0; i < n_lines; i++) {
        free(ids ? ids[i] : NULL);
        json_decref(docs ? docs[i] : NULL);
    }
    free(ids);
    free(n_ids);
    free(prompts);
    free(docs);
    free(buf);
    return rc;
}

int teacher_generate(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *prompt = NULL, *backend = "cpu";
    const char *prompts_file = NULL, *out_path = NULL;
    char tok_default[1100];
    int max_tokens = 128, seed = 1, n_stop = 0, top_k = 0;
    int32_t stops[GEN_MAX_STOPS];
    struct teacher_gen_opts g = {.temperature = 0.0f, .top_p = 1.0f};
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"tokenizer", required_argument, 0, 'k'},
        {"prompt", required_argument, 0, 'p'},      {"max-tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'}, {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},        {"stop", required_argument, 0, 'S'},
        {"backend", required_argument, 0, 'b'},     {"top-k", required_argument, 0, 'K'},
        {"prompts-file", required_argument, 0, 'F'}, {"out", required_argument, 0, 'o'},
        {"max-new", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'k': tok_path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': if (teacher_parse_int("--max-tokens", optarg, 1, 1 << 20, &max_tokens)) return 2; break;
        case 't': if (teacher_parse_float("--temperature", optarg, &g.temperature) || g.temperature < 0)
                      return 2;
                  break;
        case 'K': if (teacher_parse_int("--top-k", optarg, 0, 1L << 30, &top_k)) return 2; break;
        case 'P': if (teacher_parse_float("--top-p", optarg, &g.top_p) || !(g.top_p > 0 && g.top_p <= 1)) {
                      log_error("--top-p must be in (0, 1]");
                      return 2;
                  } break;
        case 's': if (teacher_parse_int("--seed", optarg, 0, 1L << 30, &seed)) return 2; break;
        case 'S': {
            int id;
            if (n_stop == GEN_MAX_STOPS) { log_error("--stop: at most %d", GEN_MAX_STOPS); return 2; }
            if (teacher_parse_int("--stop", optarg, 0, 1L << 30, &id)) return 2;
            stops[n_stop++] = id;
            break;
        }
        case 'b': backend = optarg; break;
        case 'F': prompts_file = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h': generate_usage(stdout); return 0;
        default: generate_usage(stderr); return 2;
        }
    }
    if (model && !tok_path) {
        snprintf(tok_default, sizeof tok_default, "%.1000s/tokenizer.json", model);
        tok_path = tok_default;
    }
    if (!model || optind < argc || (prompts_file ? (prompt || !out_path) : (!prompt || out_path))) {
        log_error("generate needs --model DIR and either --prompt TEXT or --prompts-file F.jsonl with --out FILE "
                  "(see --help)");
        return 2;
    }
    if (!ops_by_name(backend)) { log_error("--backend %s: %s", backend, sushi_last_error()); return 2; }
    struct tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = tok_load(&tok, tok_path);
    if (!rc && n_stop == 0 && tok_eos_id(tok) >= 0 && prompts_file) stops[n_stop++] = tok_eos_id(tok);
    if (!rc && prompts_file) {
        g.max_new = max_tokens;
        g.top_k = top_k;
        g.seed = (uint64_t)seed;
        g.stops = stops;
        g.n_stops = n_stop;
        rc = gen_batch(model, backend, tok, prompts_file, out_path, g);
        if (rc) log_error("%s", sushi_last_error());
        tok_free(tok);
        return rc ? 1 : 0;
    }
    if (!rc) rc = tok_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids);
    if (!rc && n_ids == 0) rc = sushi_error(SUSHI_EINVAL, "--prompt: encodes to no tokens");
    if (!rc && n_stop == 0 && tok_eos_id(tok) >= 0) stops[n_stop++] = tok_eos_id(tok);
    if (rc) { log_error("%s", sushi_last_error()); tok_free(tok); free(ids); return 1; }
    g.max_new = max_tokens;
    g.top_k = top_k;
    g.seed = (uint64_t)seed;
    g.stops = stops;
    g.n_stops = n_stop;
    struct ds_model m;
    struct ds_cache cache = {0};
    rc = teacher_load(&m, model, backend, 0, (int)n_ids + max_tokens);
    if (rc) { log_error("%s", sushi_last_error()); tok_free(tok); free(ids); return 1; }
    int32_t *out = malloc((size_t)max_tokens * sizeof(int32_t));
    int n_out = 0;
    if (!out) rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
    if (!rc) rc = ds_cache_init(&cache, &m);
    if (!rc) rc = teacher_generate_ids(&m, &cache, ids, (int)n_ids, &g, out, &n_out);
    char *text = NULL;
    size_t len = 0;
    if (!rc) rc = tok_decode(tok, out, (size_t)n_out, 1, &text, &len);
    if (!rc) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
    }
    if (rc) log_error("%s", sushi_last_error());
    free(text);
    free(out);
    free(ids);
    ds_cache_free(&cache, &m);
    ds_free(&m);
    tok_free(tok);
    return rc ? 1 : 0;
}
