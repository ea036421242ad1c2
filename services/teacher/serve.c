/* sushi-teacher serve: the teacher as a ZeroMQ service any client can call.
 *
 *   ROUTER bind EP → request (kind `request`, meta.op) → info | score | generate
 *                  → reply (kind `reply`, the request's id) or error (meta.message)
 *
 * info      meta {model_type, vocab_size, hidden_size, layers, experts, params, max_seq,
 *           backend, tokenizer (loaded or not), requests, errors, bad_messages (so far)}
 * score     tokens [B,T] I32 (+ lengths [B] I32), meta topk (64, at most V), temperature
 *           (1.0) -> topk_ids [B,T,K] I32, topk_logprobs [B,T,K] F32, tail_logprob [B,T] F32
 *           (each row scored from position 0; positions past a length: ids -1, 0, 0)
 * generate  prompt [n] I32 or meta.prompt (text, with --tokenizer), meta max_new_tokens
 *           (64), temperature (0 = greedy), top_k (0), top_p (1), seed (1), stop (ids;
 *           default the tokenizer's EOS) -> tokens [m] I32, meta.text with a tokenizer
 *
 * A request the service cannot answer (unknown op, wrong kind, bad shapes, ids outside
 * the vocabulary, a reply over the message caps) gets an error naming the cause; an
 * invalid wire message is dropped and counted by the transport. The service keeps
 * serving either way, and exits 0 on SIGINT/SIGTERM. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"
#include "common/transport/heartbeat.h"
#include "common/transport/stage.h"
#include "common/transport/transport.h"
#include "services/teacher/teacher.h"

#define SERVE_DEFAULT_BIND "tcp://127.0.0.1:5580"
#define SERVE_DEFAULT_MAX_SEQ 4096
#define SERVE_MAX_OVERRIDES 64
#define SERVE_MAX_STOPS 16

struct serve_args {
    const char *model, *bind, *backend, *tokenizer;
    int max_seq, threads, allow_remote;
};

struct serve {
    struct stage st;
    struct transport *sock;
    struct ds_model m;
    struct teacher_scorer sc;
    struct tokenizer *tok;
    const char *backend;
    uint64_t requests, errors;
};

/* what a reply owns: tensor buffers freed after the send */
struct serve_reply {
    struct wire_msg msg;
    void *bufs[4];
    int nbufs;
};

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: sushi-teacher serve --model DIR [--bind EP] [--backend NAME] [--tokenizer FILE]\n"
            "                           [--max-seq N] [--threads N] [--config FILE] [key.path=value ...]\n\n"
            "Serves a DeepSeek checkpoint over ZeroMQ (ROUTER): a client (DEALER) sends a wire message\n"
            "of kind `request` with meta.op = info | score | generate and gets a `reply` with the same\n"
            "id, or an `error` with meta.message. See README.md, \"The teacher as a service\".\n\n"
            "  --model DIR        checkpoint folder (config.json + safetensors); config: teacher.checkpoint\n"
            "  --bind EP          endpoint (default " SERVE_DEFAULT_BIND "); config: teacher.bind\n"
            "  --backend NAME     cpu, cuda or auto (default cpu); config: teacher.backend\n"
            "  --tokenizer FILE   tokenizer.json: generate takes meta.prompt text and replies meta.text;\n"
            "                     config: teacher.tokenizer\n"
            "  --max-seq N        longest sequence (default: the model's maximum, at most %d);\n"
            "                     config: teacher.max_seq\n"
            "  --threads N        CPU threads (default: all cores); config: teacher.threads\n"
            "  --config FILE      run config with a `teacher` section; key.path=value overrides it\n"
            "  --allow-remote     permit a non-loopback tcp:// bind\n",
            SERVE_DEFAULT_MAX_SEQ);
}

/* Parses argv and the config (owned by *cfg); 1 when --help was shown. */
static int serve_parse(int argc, char **argv, struct serve_args *a, json_t **cfg) {
    const char *config = NULL, *over[SERVE_MAX_OVERRIDES];
    int nover = 0, rc;
    memset(a, 0, sizeof *a);
    *cfg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { serve_usage(stdout); return 1; }
        if (!strcmp(s, "--allow-remote")) { a->allow_remote = 1; continue; }
        if (s[0] != '-' && strchr(s, '=')) {
            if (nover == SERVE_MAX_OVERRIDES) return sushi_error(SUSHI_EINVAL, "more than %d overrides", nover);
            over[nover++] = s;
            continue;
        }
        const char **dst = !strcmp(s, "--model") ? &a->model : !strcmp(s, "--bind") ? &a->bind
                         : !strcmp(s, "--backend") ? &a->backend : !strcmp(s, "--tokenizer") ? &a->tokenizer
                         : !strcmp(s, "--config") ? &config : NULL;
        int *num = !strcmp(s, "--max-seq") ? &a->max_seq : !strcmp(s, "--threads") ? &a->threads : NULL;
        if (!dst && !num) return sushi_error(SUSHI_EINVAL, "unknown argument %s (see --help)", s);
        if (!v) return sushi_error(SUSHI_EINVAL, "%s: missing value", s);
        if (dst) *dst = v;
        else {
            char *end;
            long x = strtol(v, &end, 10);
            if (end == v || *end || x < 1 || x > (1 << 24))
                return sushi_error(SUSHI_EINVAL, "%s: \"%s\" is not an integer in [1, %d]", s, v, 1 << 24);
            *num = (int)x;
        }
        i++;
    }
    if (config) {
        if ((rc = config_load(config, over, nover, cfg))) return rc;
        if ((!a->model && (rc = config_get_string(*cfg, config, "teacher.checkpoint", 0, &a->model))) ||
            (!a->bind && (rc = config_get_string(*cfg, config, "teacher.bind", 0, &a->bind))) ||
            (!a->backend && (rc = config_get_string(*cfg, config, "teacher.backend", 0, &a->backend))) ||
            (!a->tokenizer && (rc = config_get_string(*cfg, config, "teacher.tokenizer", 0, &a->tokenizer))) ||
            (!a->max_seq && (rc = config_get_int(*cfg, config, "teacher.max_seq", 0, &a->max_seq))) ||
            (!a->threads && (rc = config_get_int(*cfg, config, "teacher.threads", 0, &a->threads))))
            return rc;
    } else if (nover) {
        return sushi_error(SUSHI_EINVAL, "%s: overrides need --config", over[0]);
    }
    if (!a->model) return sushi_error(SUSHI_EINVAL, "serve needs --model DIR or teacher.checkpoint (see --help)");
    if (!a->bind) a->bind = SERVE_DEFAULT_BIND;
    if (!a->backend) a->backend = "cpu";
    if (a->max_seq < 0 || a->threads < 0) return sushi_error(SUSHI_EINVAL, "max_seq and threads must be positive");
    return SUSHI_OK;
}

/* ---- request meta ---- */

static int serve_meta_int(const json_t *meta, const char *op, const char *key, long long def, long long lo,
                          long long hi, long long *out) {
    json_t *v = meta ? json_object_get(meta, key) : NULL;
    if (!v || json_is_null(v)) { *out = def; return SUSHI_OK; }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return sushi_error(SUSHI_EINVAL, "%s: meta.%s must be an integer in [%lld, %lld]", op, key, lo, hi);
    *out = json_integer_value(v);
    return SUSHI_OK;
}

static int serve_meta_float(const json_t *meta, const char *op, const char *key, double def, double lo,
                            double hi, int lo_open, float *out) {
    json_t *v = meta ? json_object_get(meta, key) : NULL;
    double x = def;
    if (v && !json_is_null(v)) {
        if (!json_is_number(v))
            return sushi_error(SUSHI_EINVAL, "%s: meta.%s must be a number", op, key);
        x = json_number_value(v);
    }
    if (!isfinite(x) || x < lo || (lo_open && x == lo) || x > hi)
        return sushi_error(SUSHI_EINVAL, "%s: meta.%s = %g must be in %c%g, %g]", op, key, x, lo_open ? '(' : '[',
                           lo, hi);
    *out = (float)x;
    return SUSHI_OK;
}

static void *serve_buf(struct serve_reply *r, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p) r->bufs[r->nbufs++] = p;
    return p;
}

/* ---- ops ---- */

static int serve_info(struct serve *s, struct serve_reply *r) {
    const struct ds_config *c = &s->m.cfg;
    r->msg.meta = json_pack("{s:s, s:i, s:i, s:i, s:i, s:I, s:i, s:s, s:b, s:I, s:I, s:I}", "model_type",
                            c->family == DS_V3 ? "deepseek_v3" : "deepseek_v2", "vocab_size", c->vocab,
                            "hidden_size", c->C, "layers", c->L, "experts", c->n_routed, "params",
                            (json_int_t)s->m.n_params, "max_seq", s->m.max_seq, "backend", s->m.ops->name,
                            "tokenizer", s->tok != NULL, "requests", (json_int_t)s->requests, "errors",
                            (json_int_t)s->errors, "bad_messages", (json_int_t)transport_bad_count(s->sock));
    return r->msg.meta ? SUSHI_OK : sushi_error(SUSHI_ENOMEM, "info: out of memory");
}

static int serve_score(struct serve *s, const struct wire_msg *q, struct serve_reply *r) {
    const struct wire_tensor *tk = wire_msg_tensor(q, "tokens"), *ln = wire_msg_tensor(q, "lengths");
    int V = s->m.cfg.vocab;
    if (!tk) return sushi_error(SUSHI_EINVAL, "score: tensor tokens [B,T] I32 is missing");
    if (tk->dtype != DT_I32 || tk->ndim != 2 || tk->shape[0] < 1 || tk->shape[1] < 1)
        return sushi_error(SUSHI_ESHAPE, "score: tokens must be [B,T] I32 with B, T >= 1 (got %s, %d dims)",
                           dtype_name(tk->dtype), tk->ndim);
    if (tk->shape[1] > s->m.max_seq)
        return sushi_error(SUSHI_EINVAL, "score: T = %lld exceeds the service's max_seq %d",
                           (long long)tk->shape[1], s->m.max_seq);
    if (tk->shape[0] > (1 << 20))
        return sushi_error(SUSHI_EINVAL, "score: B = %lld rows is oversize", (long long)tk->shape[0]);
    int B = (int)tk->shape[0], T = (int)tk->shape[1];
    if (ln && (ln->dtype != DT_I32 || ln->ndim != 1 || ln->shape[0] != B))
        return sushi_error(SUSHI_ESHAPE, "score: lengths must be [B] I32 with B = %d", B);
    long long K, defk = V < 64 ? V : 64;
    float temp;
    int rc;
    if ((rc = serve_meta_int(q->meta, "score", "topk", defk, 1, V, &K)) ||
        (rc = serve_meta_float(q->meta, "score", "temperature", 1.0, 0, 1e6, 1, &temp)))
        return rc;
    const int32_t *tokens = tk->data, *lengths = ln ? ln->data : NULL;
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : T;
        char what[64];
        if (len < 0 || len > T)
            return sushi_error(SUSHI_EINVAL, "score: lengths[%d] = %d is outside [0, %d]", b, len, T);
        snprintf(what, sizeof what, "score: tokens row %d", b);
        if ((rc = teacher_check_ids(what, tokens + (size_t)b * T, (size_t)len, V))) return rc;
    }
    struct wire_caps caps = wire_caps_default();
    size_t nk = (size_t)B * T * (size_t)K;
    if (nk * 4 > caps.max_tensor_bytes || 2 * nk * 4 + (size_t)B * T * 4 > caps.max_msg_bytes)
        return sushi_error(SUSHI_EINVAL, "score: the reply (%zu x %lld x 2 values) is oversize for the message caps",
                           (size_t)B * T, K);
    int32_t *top = serve_buf(r, nk * sizeof(int32_t));
    float *lp = serve_buf(r, nk * sizeof(float)), *tail = serve_buf(r, (size_t)B * T * sizeof(float));
    if (!top || !lp || !tail) return sushi_error(SUSHI_ENOMEM, "score: out of memory for the reply");
    struct teacher_rows rows = {.tokens = tokens, .lengths = lengths, .B = B, .T = T};
    if ((rc = teacher_score_rows(&s->sc, &rows, (int)K, temp, top, lp, tail, NULL, NULL))) return rc;
    int64_t s3[3] = {B, T, K};
    if ((rc = wire_msg_add_tensor(&r->msg, "topk_ids", DT_I32, 3, s3, top)) ||
        (rc = wire_msg_add_tensor(&r->msg, "topk_logprobs", DT_F32, 3, s3, lp)) ||
        (rc = wire_msg_add_tensor(&r->msg, "tail_logprob", DT_F32, 2, s3, tail)))
        return rc;
    r->msg.meta = json_pack("{s:I, s:f}", "topk", (json_int_t)K, "temperature", (double)temp);
    return SUSHI_OK;
}

/* meta.stop: a list of ids, else the tokenizer's EOS */
static int serve_stops(struct serve *s, const json_t *meta, int32_t *stops, int *n) {
    json_t *v = meta ? json_object_get(meta, "stop") : NULL;
    *n = 0;
    if (!v || json_is_null(v)) {
        if (s->tok && tok_eos_id(s->tok) >= 0) stops[(*n)++] = tok_eos_id(s->tok);
        return SUSHI_OK;
    }
    if (!json_is_array(v) || json_array_size(v) > SERVE_MAX_STOPS)
        return sushi_error(SUSHI_EINVAL, "generate: meta.stop must be a list of at most %d token ids", SERVE_MAX_STOPS);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= s->m.cfg.vocab)
            return sushi_error(SUSHI_EINVAL, "generate: meta.stop[%zu] is not a token id in [0, %d)", i,
                               s->m.cfg.vocab);
        stops[(*n)++] = (int32_t)json_integer_value(e);
    }
    return SUSHI_OK;
}

static int serve_generate(struct serve *s, const struct wire_msg *q, struct serve_reply *r) {
    const struct wire_tensor *pt = wire_msg_tensor(q, "prompt");
    json_t *text = q->meta ? json_object_get(q->meta, "prompt") : NULL;
    int32_t *enc = NULL, stops[SERVE_MAX_STOPS];
    size_t n = 0;
    const int32_t *prompt;
    int rc;
    if (pt) {
        if (pt->dtype != DT_I32 || pt->ndim != 1 || pt->shape[0] < 1)
            return sushi_error(SUSHI_ESHAPE, "generate: prompt must be [n] I32 with n >= 1 (got %s, %d dims)",
                               dtype_name(pt->dtype), pt->ndim);
        prompt = pt->data;
        n = (size_t)pt->shape[0];
    } else if (json_is_string(text)) {
        if (!s->tok)
            return sushi_error(SUSHI_EINVAL, "generate: meta.prompt (text) needs the service to run with --tokenizer");
        if ((rc = tok_encode(s->tok, json_string_value(text), json_string_length(text), 1, &enc, &n))) return rc;
        prompt = enc;
    } else {
        return sushi_error(SUSHI_EINVAL, "generate: give a tensor prompt [n] I32 or meta.prompt text");
    }
    long long max_new, top_k, seed;
    struct teacher_gen_opts g = {0};
    int32_t *out = NULL;
    int n_out = 0;
    if (n == 0) rc = sushi_error(SUSHI_EINVAL, "generate: the prompt encodes to no tokens");
    else if (n >= (size_t)s->m.max_seq)
        rc = sushi_error(SUSHI_EINVAL, "generate: a prompt of %zu tokens leaves no room within max_seq %d", n,
                         s->m.max_seq);
    else rc = serve_meta_int(q->meta, "generate", "max_new_tokens", 64, 1, s->m.max_seq - (long long)n + 1, &max_new);
    if (!rc) rc = serve_meta_int(q->meta, "generate", "top_k", 0, 0, s->m.cfg.vocab, &top_k);
    if (!rc) rc = serve_meta_int(q->meta, "generate", "seed", 1, 0, (1LL << 62), &seed);
    if (!rc) rc = serve_meta_float(q->meta, "generate", "temperature", 0.0, 0, 1e6, 0, &g.temperature);
    if (!rc) rc = serve_meta_float(q->meta, "generate", "top_p", 1.0, 0, 1, 1, &g.top_p);
    if (!rc) rc = serve_stops(s, q->meta, stops, &g.n_stops);
    if (!rc && !(out = serve_buf(r, (size_t)max_new * sizeof(int32_t))))
        rc = sushi_error(SUSHI_ENOMEM, "generate: out of memory");
    if (!rc) {
        g.max_new = (int)max_new;
        g.top_k = (int)top_k;
        g.seed = (uint64_t)seed;
        g.stops = stops;
        rc = teacher_generate_ids(&s->m, &s->sc.cache, prompt, (int)n, &g, out, &n_out);
    }
    int64_t shape[1] = {n_out};
    if (!rc) rc = wire_msg_add_tensor(&r->msg, "tokens", DT_I32, 1, shape, out);
    if (!rc) r->msg.meta = json_pack("{s:I}", "prompt_tokens", (json_int_t)n);
    if (!rc && s->tok) {
        char *dec = NULL;
        size_t len = 0;
        rc = tok_decode(s->tok, out, (size_t)n_out, 1, &dec, &len);
        if (!rc) json_object_set_new(r->msg.meta, "text", json_stringn(dec, len));
        free(dec);
    }
    free(enc);
    return rc;
}

/* ---- the loop ---- */

static int serve_send(struct serve *s, const struct transport_peer *to, struct serve_reply *r) {
    int rc = transport_send(s->sock, &r->msg, to, NULL, NULL);
    wire_msg_free(&r->msg);
    for (int i = 0; i < r->nbufs; i++) free(r->bufs[i]);
    r->nbufs = 0;
    return rc;
}

static void serve_request(struct serve *s, const struct wire_msg *q, const struct transport_peer *from) {
    struct serve_reply r = {.nbufs = 0};
    wire_msg_init(&r.msg, WIRE_REPLY);
    json_t *opv = q->meta ? json_object_get(q->meta, "op") : NULL;
    const char *op = json_is_string(opv) ? json_string_value(opv) : NULL;
    int rc;
    s->requests++;
    if (q->kind != WIRE_REQUEST)
        rc = sushi_error(SUSHI_EINVAL, "expected a message of kind request, got %s", wire_kind_name(q->kind));
    else if (!op) rc = sushi_error(SUSHI_EINVAL, "request: meta.op (info, score, generate) is missing");
    else if (!strcmp(op, "info")) rc = serve_info(s, &r);
    else if (!strcmp(op, "score")) rc = serve_score(s, q, &r);
    else if (!strcmp(op, "generate")) rc = serve_generate(s, q, &r);
    else rc = sushi_error(SUSHI_EINVAL, "request: unknown op \"%.64s\" (info, score, generate)", op);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        s->errors++;
        log_info("request %llu from %s: %s", (unsigned long long)q->id, from->name, msg);
        wire_msg_free(&r.msg);
        for (int i = 0; i < r.nbufs; i++) free(r.bufs[i]);
        r.nbufs = 0;
        wire_msg_init(&r.msg, WIRE_ERROR);
        r.msg.meta = json_pack("{s:s}", "message", msg);
        if (op) json_object_set_new(r.msg.meta, "op", json_string(op));
    }
    r.msg.id = q->id;
    snprintf(r.msg.stage, sizeof r.msg.stage, "%s", s->st.name);
    if (serve_send(s, from, &r)) log_warn("reply to %s: %s", from->name, sushi_last_error());
}

static int serve_loop(struct serve *s) {
    int64_t next_metrics = 0;
    while (!stage_stopping()) {
        struct wire_msg q;
        struct transport_peer from;
        int rc = transport_recv(s->sock, &q, &from, 200);
        if (rc < 0) {
            if (stage_stopping()) break;
            return rc;
        }
        if (rc == 1) {
            serve_request(s, &q, &from);
            wire_msg_free(&q);
        }
        int64_t now = heartbeat_now_ms();
        if (now >= next_metrics) {
            next_metrics = now + 1000;
            stage_publish(&s->st, WIRE_METRICS, 0,
                          json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)s->requests, "errors",
                                    (json_int_t)s->errors, "bad_messages", (json_int_t)transport_bad_count(s->sock)));
        }
    }
    return SUSHI_OK;
}

int teacher_serve(int argc, char **argv) {
    struct serve_args a;
    json_t *cfg = NULL;
    int rc = serve_parse(argc, argv, &a, &cfg);
    if (rc == 1) return 0;
    if (rc) {
        log_error("%s", sushi_last_error());
        json_decref(cfg);
        return 2;
    }
    struct serve s;
    memset(&s, 0, sizeof s);
    struct ds_config c;
    int max_seq = a.max_seq;
    if (!(rc = ds_config_load(&c, a.model)) && !max_seq)
        max_seq = c.max_pos > 0 && c.max_pos < SERVE_DEFAULT_MAX_SEQ ? c.max_pos : SERVE_DEFAULT_MAX_SEQ;
    int loaded = 0, scorer = 0;
    if (!rc && !(rc = teacher_load(&s.m, a.model, a.backend, a.threads, max_seq))) loaded = 1;
    if (!rc && !(rc = teacher_scorer_init(&s.sc, &s.m))) scorer = 1;
    if (!rc && a.tokenizer) rc = tok_load(&s.tok, a.tokenizer);
    if (!rc && s.tok && tok_vocab_size(s.tok) > s.m.cfg.vocab)
        log_warn("%s: the tokenizer has %d ids, the teacher's vocabulary %d", a.tokenizer, tok_vocab_size(s.tok),
                 s.m.cfg.vocab);
    int staged = 0;
    if (!rc && !(rc = stage_open(&s.st, "teacher", NULL, 1000))) staged = 1;
    if (!rc) {
        struct transport_opts o = transport_opts_default();
        o.allow_remote = a.allow_remote;
        o.name = "teacher service";
        rc = transport_open(&s.sock, s.st.zctx, TRANSPORT_ROUTER, a.bind, 1, &o);
    }
    if (!rc) {
        log_info("serving %s (%s, vocab %d, max_seq %d) on %s", a.model, s.m.ops->name, s.m.cfg.vocab, s.m.max_seq,
                 transport_endpoint(s.sock));
        rc = serve_loop(&s);
    }
    if (rc) log_error("%s", sushi_last_error());
    else log_info("stopping: %llu requests, %llu errors, %llu bad messages", (unsigned long long)s.requests,
                  (unsigned long long)s.errors, (unsigned long long)transport_bad_count(s.sock));
    transport_close(s.sock);
    if (staged) stage_close(&s.st);
    tok_free(s.tok);
    if (scorer) teacher_scorer_free(&s.sc);
    if (loaded) ds_free(&s.m);
    json_decref(cfg);
    return rc ? 1 : 0;
}
