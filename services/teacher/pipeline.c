/* sushi-teacher pipeline: one teacher replica of the distill pipeline
 * (common/transport/protocol.h).
 *
 *   hello (role worker, credit) → loader
 *   loader ── batch ──► queue (at most `credit` batches) ──► score every row, each
 *   document segment from position 0 ──► scored (batch + topk_ids, topk_logprobs,
 *   tail_logprob) ──► trainer;  heartbeat with meta.credit → loader as each batch leaves
 *
 * Heartbeats go to both peers every heartbeat_ms, also between the sequences of a batch
 * being scored. A hello from the loader (a restarted loader: meta.reset = 1) is answered
 * with a hello granting the free slots. A batch that breaks the protocol (missing tensor,
 * wrong dtype or shape, ids outside the teacher's vocabulary, no credit) is logged once
 * per peer, counted in bad_messages and dropped, and its credit returned. SIGTERM or
 * SIGINT: exit 0. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "common/transport/credit.h"
#include "common/transport/heartbeat.h"
#include "common/transport/protocol.h"
#include "common/transport/stage.h"
#include "common/transport/transport.h"
#include "services/teacher/teacher.h"

#define PIPE_MAX_OVERRIDES 64

enum { PIPE_LOADER = 0, PIPE_TRAINER = 1 };
static const char *const pipe_peer_name[2] = {"loader", "trainer"};

struct pipe_cfg {
    const char *checkpoint, *backend, *loader, *trainer;
    int topk, credit, threads, heartbeat_ms, dead_after_ms, B, T, allow_remote;
    float temperature;
};

struct pipe {
    struct pipe_cfg c;
    struct stage st;
    struct transport *sock[2];     /* DEALERs to the loader and the trainer */
    struct ds_model m;
    struct teacher_scorer sc;
    struct credit_receiver cr;
    struct heartbeat hb;
    struct wire_msg *queue;        /* [credit] ring of held batches */
    int qhead, qlen;
    int32_t *top;                  /* [B,T,K] */
    float *lp, *tail;              /* [B,T,K], [B,T] */
    uint64_t scored, tokens, bad;
    double busy_s;                 /* seconds spent scoring */
    int logged[2];                 /* a protocol violation of this peer was logged */
    int fatal;                     /* a socket failure seen while scoring */
    int loaded;                    /* m holds a model */
    int64_t next_metrics_ms;
};

static void pipe_usage(FILE *f) {
    fprintf(f,
            "usage: sushi-teacher pipeline --config RUN.yaml [key.path=value ...]\n\n"
            "Runs one teacher replica of a distill run: takes batches from the loader\n"
            "(endpoints.loader), scores every document segment of every row with the teacher\n"
            "and sends the batch with its top-K log-probabilities to the trainer\n"
            "(endpoints.trainer). SUSHI_STAGE names the replica (teacher.1, teacher.2, ...).\n\n"
            "Config keys: teacher.checkpoint (required), teacher.backend (cpu), teacher.topk (64),\n"
            "teacher.temperature (1.0), teacher.credit (%d batches held), teacher.threads,\n"
            "teacher.heartbeat_ms (%d), teacher.dead_after_ms (%d), endpoints.loader,\n"
            "endpoints.trainer, endpoints.allow_remote (tcp beyond loopback), data.batch_size, data.seq_len (the batch shape [B,T]).\n",
            PROTO_WORKER_CREDIT, PROTO_HEARTBEAT_MS, PROTO_DEAD_AFTER_MS);
}

/* Reads the run config (and the student's vocabulary, 0 when not given); 1 when --help
 * was shown. */
static int pipe_parse(int argc, char **argv, struct pipe_cfg *c, json_t **cfg, int *student_vocab) {
    const char *file = NULL, *over[PIPE_MAX_OVERRIDES];
    int nover = 0, rc;
    *cfg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { pipe_usage(stdout); return 1; }
        if (!strcmp(s, "--config")) {
            if (i + 1 == argc) return sushi_error(SUSHI_EINVAL, "--config: missing value");
            file = argv[++i];
        } else if (s[0] != '-' && strchr(s, '=')) {
            if (nover == PIPE_MAX_OVERRIDES) return sushi_error(SUSHI_EINVAL, "more than %d overrides", nover);
            over[nover++] = s;
        } else {
            return sushi_error(SUSHI_EINVAL, "unknown argument %s (see --help)", s);
        }
    }
    if (!file) return sushi_error(SUSHI_EINVAL, "pipeline needs --config RUN.yaml (see --help)");
    if ((rc = config_load(file, over, nover, cfg))) return rc;
    *c = (struct pipe_cfg){.backend = "cpu", .topk = 64, .credit = PROTO_WORKER_CREDIT, .temperature = 1.0f,
                           .heartbeat_ms = PROTO_HEARTBEAT_MS, .dead_after_ms = PROTO_DEAD_AFTER_MS};
    if ((rc = config_get_string(*cfg, file, "teacher.checkpoint", 1, &c->checkpoint)) ||
        (rc = config_get_string(*cfg, file, "teacher.backend", 0, &c->backend)) ||
        (rc = config_get_int(*cfg, file, "teacher.topk", 0, &c->topk)) ||
        (rc = config_get_float(*cfg, file, "teacher.temperature", 0, &c->temperature)) ||
        (rc = config_get_int(*cfg, file, "teacher.credit", 0, &c->credit)) ||
        (rc = config_get_int(*cfg, file, "teacher.threads", 0, &c->threads)) ||
        (rc = config_get_int(*cfg, file, "teacher.heartbeat_ms", 0, &c->heartbeat_ms)) ||
        (rc = config_get_int(*cfg, file, "teacher.dead_after_ms", 0, &c->dead_after_ms)) ||
        (rc = config_get_string(*cfg, file, "endpoints.loader", 1, &c->loader)) ||
        (rc = config_get_string(*cfg, file, "endpoints.trainer", 1, &c->trainer)) ||
        (rc = config_get_bool(*cfg, file, "endpoints.allow_remote", 0, &c->allow_remote)) ||
        (rc = config_get_int(*cfg, file, "data.batch_size", 1, &c->B)) ||
        (rc = config_get_int(*cfg, file, "data.seq_len", 1, &c->T)))
        return rc;
    if (c->topk < 1) return sushi_error(SUSHI_EINVAL, "%s: teacher.topk: must be >= 1", file);
    if (!(c->temperature > 0)) return sushi_error(SUSHI_EINVAL, "%s: teacher.temperature: must be > 0", file);
    if (c->credit < 1 || c->credit > 1024)
        return sushi_error(SUSHI_EINVAL, "%s: teacher.credit: must be in [1, 1024]", file);
    if (c->heartbeat_ms < 10) return sushi_error(SUSHI_EINVAL, "%s: teacher.heartbeat_ms: must be >= 10", file);
    if (c->dead_after_ms < c->heartbeat_ms)
        return sushi_error(SUSHI_EINVAL, "%s: teacher.dead_after_ms: must be >= heartbeat_ms", file);
    if (c->B < 1 || c->T < 1)
        return sushi_error(SUSHI_EINVAL, "%s: data.batch_size and data.seq_len must be >= 1", file);
    if (c->threads < 0) return sushi_error(SUSHI_EINVAL, "%s: teacher.threads: must be >= 0", file);
    /* the student shares the teacher's tokenizer: a different vocabulary is a config error */
    *student_vocab = 0;
    return config_get_int(*cfg, file, "model.vocab_size", 0, student_vocab);
}

/* ---- sending ---- */

/* timeout_ms 0 for control messages (never stall on a missing peer) */
static int pipe_send(struct pipe *p, int peer, struct wire_msg *m, int timeout_ms) {
    snprintf(m->stage, sizeof m->stage, "%s", p->st.name);
    zmq_setsockopt(transport_zsock(p->sock[peer]), ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    int rc = transport_send(p->sock[peer], m, NULL, NULL, NULL);
    wire_msg_free(m);
    return rc;
}

/* hello or heartbeat; to the loader with the credits it may use now */
static void pipe_control(struct pipe *p, int peer, enum wire_kind kind) {
    struct wire_msg m;
    wire_msg_init(&m, kind);
    if (kind == WIRE_HELLO) m.meta = json_pack("{s:s}", "role", PROTO_ROLE_WORKER);
    if (peer == PIPE_LOADER) {
        int64_t n = credit_to_grant(&p->cr);
        if (n > 0) credit_put(&m, n);
        else if (kind == WIRE_HELLO) json_object_set_new(m.meta, "credit", json_integer(0));
    }
    if (pipe_send(p, peer, &m, 0))
        log_debug("%s to the %s: %s", wire_kind_name(kind), pipe_peer_name[peer], sushi_last_error());
}

/* a message that breaks the protocol: counted, logged once per peer, dropped */
static void pipe_bad(struct pipe *p, int peer, const char *why) {
    p->bad++;
    if (p->logged[peer]) {
        log_debug("dropped a message from the %s: %s", pipe_peer_name[peer], why);
        return;
    }
    p->logged[peer] = 1;
    log_warn("dropped a message from the %s (further ones are only counted): %s", pipe_peer_name[peer], why);
}

/* a held batch has left (scored, or dropped): free its slot, return the credit at once */
static void pipe_release(struct pipe *p) {
    wire_msg_free(&p->queue[p->qhead]);
    p->qhead = (p->qhead + 1) % p->c.credit;
    p->qlen--;
    credit_done(&p->cr, 1);
    pipe_control(p, PIPE_LOADER, WIRE_HEARTBEAT);
}

/* ---- receiving ---- */

static const struct { const char *name; enum dtype dt; int per_row; } pipe_batch_tensors[] = {
    {"tokens", DT_I32, 0},    {"targets", DT_I32, 0},    {"doc_ids", DT_I32, 0},
    {"positions", DT_I32, 0}, {"sample_ids", DT_U64, 1}, {"answer_mask", DT_U8, 0},
};
static const char *const pipe_added[] = {"topk_ids", "topk_logprobs", "tail_logprob"};

/* whether batch m is one this replica can score: SUSHI_OK or an error naming the cause */
static int pipe_check_batch(const struct pipe *p, const struct wire_msg *m) {
    for (size_t i = 0; i < sizeof pipe_batch_tensors / sizeof pipe_batch_tensors[0]; i++) {
        const char *name = pipe_batch_tensors[i].name;
        const struct wire_tensor *t = wire_msg_tensor(m, name);
        int ndim = pipe_batch_tensors[i].per_row ? 1 : 2;
        if (!t) return sushi_error(SUSHI_EFORMAT, "batch %llu: tensor %s is missing", (unsigned long long)m->id, name);
        if (t->dtype != pipe_batch_tensors[i].dt || t->ndim != ndim || t->shape[0] != p->c.B ||
            (ndim == 2 && t->shape[1] != p->c.T)) {
            char want[48], got[96];
            snprintf(want, sizeof want, ndim == 2 ? "[%d,%d]" : "[%d]", p->c.B, p->c.T);
            int n = snprintf(got, sizeof got, "%s [", dtype_name(t->dtype));
            for (int d = 0; d < t->ndim && n < (int)sizeof got - 24; d++)
                n += snprintf(got + n, sizeof got - (size_t)n, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            snprintf(got + n, sizeof got - (size_t)n, "]");
            return sushi_error(SUSHI_ESHAPE, "batch %llu: tensor %s must be %s %s (data.batch_size, data.seq_len), "
                               "got %s", (unsigned long long)m->id, name, dtype_name(pipe_batch_tensors[i].dt),
                               want, got);
        }
    }
    for (int i = 0; i < 3; i++)
        if (wire_msg_tensor(m, pipe_added[i]))
            return sushi_error(SUSHI_EFORMAT, "batch %llu: already has a tensor %s", (unsigned long long)m->id,
                               pipe_added[i]);
    if (m->ntensors + 3 > WIRE_MAX_TENSORS)
        return sushi_error(SUSHI_EFORMAT, "batch %llu: %d tensors leave no room for the teacher's 3",
                           (unsigned long long)m->id, m->ntensors);
    char what[64];
    snprintf(what, sizeof what, "batch %llu: tokens", (unsigned long long)m->id);
    return teacher_check_ids(what, wire_msg_tensor(m, "tokens")->data, (size_t)p->c.B * p->c.T, p->m.cfg.vocab);
}

static void pipe_from_loader(struct pipe *p, struct wire_msg *m) {
    if (m->kind == WIRE_HELLO) { /* the loader does not know us (it restarted): hello again */
        log_info("the loader asked for a hello: %d batches held", p->qlen);
        p->cr.outstanding = 0;
        pipe_control(p, PIPE_LOADER, WIRE_HELLO);
    } else if (m->kind == WIRE_BATCH) {
        if (credit_arrived(&p->cr)) { /* nothing was granted: no slot to hold it */
            pipe_bad(p, PIPE_LOADER, sushi_last_error());
        } else if (pipe_check_batch(p, m)) {
            pipe_bad(p, PIPE_LOADER, sushi_last_error());
            credit_done(&p->cr, 1);
            pipe_control(p, PIPE_LOADER, WIRE_HEARTBEAT);
        } else {
            p->queue[(p->qhead + p->qlen) % p->c.credit] = *m; /* takes the frames */
            p->qlen++;
            wire_msg_init(m, WIRE_BATCH);
        }
    } else if (m->kind != WIRE_HEARTBEAT) {
        char why[96];
        snprintf(why, sizeof why, "unexpected message kind %s", wire_kind_name(m->kind));
        pipe_bad(p, PIPE_LOADER, why);
    }
}

static void pipe_from_trainer(struct pipe *p, struct wire_msg *m) {
    if (m->kind != WIRE_HEARTBEAT && m->kind != WIRE_HELLO) {
        char why[96];
        snprintf(why, sizeof why, "unexpected message kind %s", wire_kind_name(m->kind));
        pipe_bad(p, PIPE_TRAINER, why);
    }
}

static void pipe_metrics(struct pipe *p) {
    uint64_t bad = p->bad + transport_bad_count(p->sock[0]) + transport_bad_count(p->sock[1]);
    stage_publish(&p->st, WIRE_METRICS, 0,
                  json_pack("{s:I, s:f, s:i, s:I}", "scored", (json_int_t)p->scored, "tokens_per_s",
                            p->busy_s > 0 ? (double)p->tokens / p->busy_s : 0.0, "queue_input", p->qlen,
                            "bad_messages", (json_int_t)bad));
}

/* Waits up to timeout_ms for messages, handles every one, and sends what is due
 * (heartbeats, metrics). < 0 on a socket failure. */
static int pipe_poll(struct pipe *p, int timeout_ms) {
    zmq_pollitem_t items[2] = {{transport_zsock(p->sock[0]), 0, ZMQ_POLLIN, 0},
                               {transport_zsock(p->sock[1]), 0, ZMQ_POLLIN, 0}};
    int n = zmq_poll(items, 2, timeout_ms);
    if (n < 0 && zmq_errno() != EINTR) return sushi_error(SUSHI_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    for (int peer = 0; peer < 2 && n > 0; peer++) {
        if (!(items[peer].revents & ZMQ_POLLIN)) continue;
        for (int k = 0; k < 64; k++) { /* drain, bounded so heartbeats stay on time */
            struct wire_msg m;
            int rc = transport_recv(p->sock[peer], &m, NULL, 0);
            if (rc < 0) return rc;
            if (rc == 0) break;
            if (heartbeat_seen(&p->hb, pipe_peer_name[peer], heartbeat_now_ms()) == 1)
                log_info("the %s is alive", pipe_peer_name[peer]);
            if (peer == PIPE_LOADER) pipe_from_loader(p, &m);
            else pipe_from_trainer(p, &m);
            wire_msg_free(&m);
        }
    }
    int64_t now = heartbeat_now_ms();
    if (heartbeat_due(&p->hb, now)) {
        pipe_control(p, PIPE_LOADER, WIRE_HEARTBEAT);
        pipe_control(p, PIPE_TRAINER, WIRE_HEARTBEAT);
        const char *dead[2];
        int nd = heartbeat_expired(&p->hb, now, dead, 2);
        for (int i = 0; i < nd; i++) log_warn("the %s has been silent for %d ms", dead[i], p->c.dead_after_ms);
    }
    if (now >= p->next_metrics_ms) {
        p->next_metrics_ms = now + (p->c.heartbeat_ms > 1000 ? p->c.heartbeat_ms : 1000);
        pipe_metrics(p);
    }
    return SUSHI_OK;
}

/* between sequences of a batch: keep talking; 1 stops scoring (a signal, or a socket
 * failure kept in p->fatal) */
static int pipe_tick(void *ctx) {
    struct pipe *p = ctx;
    if (stage_stopping()) return 1;
    int rc = pipe_poll(p, 0);
    if (rc < 0) p->fatal = rc;
    return rc < 0 ? 1 : 0;
}

/* ---- scoring ---- */

static int pipe_send_scored(struct pipe *p, const struct wire_msg *b) {
    struct wire_msg s;
    wire_msg_init(&s, WIRE_SCORED);
    s.id = b->id;
    s.epoch = b->epoch;
    s.cursor = b->cursor;
    s.meta = b->meta ? json_deep_copy(b->meta) : json_object();
    if (!s.meta) return sushi_error(SUSHI_ENOMEM, "batch %llu: out of memory", (unsigned long long)b->id);
    json_object_set_new(s.meta, "temperature", json_real(p->c.temperature));
    json_object_set_new(s.meta, "topk", json_integer(p->c.topk));
    json_object_set_new(s.meta, "teacher", json_string(p->st.name));
    int rc = SUSHI_OK;
    for (int i = 0; !rc && i < b->ntensors; i++) {
        const struct wire_tensor *t = &b->tensors[i];
        rc = wire_msg_add_tensor(&s, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    int64_t shape[3] = {p->c.B, p->c.T, p->c.topk};
    if (!rc) rc = wire_msg_add_tensor(&s, "topk_ids", DT_I32, 3, shape, p->top);
    if (!rc) rc = wire_msg_add_tensor(&s, "topk_logprobs", DT_F32, 3, shape, p->lp);
    if (!rc) rc = wire_msg_add_tensor(&s, "tail_logprob", DT_F32, 2, shape, p->tail);
    if (rc) {
        wire_msg_free(&s);
        return rc;
    }
    return pipe_send(p, PIPE_TRAINER, &s, p->c.heartbeat_ms);
}

/* Scores the oldest held batch and sends it on. 1 when stopping, < 0 on a socket failure. */
static int pipe_score_front(struct pipe *p) {
    const struct wire_msg *b = &p->queue[p->qhead];
    struct teacher_rows rows = {.tokens = wire_msg_tensor(b, "tokens")->data,
                                .doc_ids = wire_msg_tensor(b, "doc_ids")->data, .B = p->c.B, .T = p->c.T};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = teacher_score_rows(&p->sc, &rows, p->c.topk, p->c.temperature, p->top, p->lp, p->tail, pipe_tick, p);
    if (rc == 1) return p->fatal ? p->fatal : 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!rc) {
        p->busy_s += (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        p->tokens += (uint64_t)p->c.B * p->c.T;
        rc = pipe_send_scored(p, b);
        if (rc) log_warn("batch %llu: not sent to the trainer (the loader re-sends it): %s",
                         (unsigned long long)b->id, sushi_last_error());
        else p->scored++;
    } else {
        log_error("batch %llu: scoring failed (dropped): %s", (unsigned long long)b->id, sushi_last_error());
    }
    pipe_release(p);
    return SUSHI_OK;
}

/* ---- the stage ---- */

static int pipe_open(struct pipe *p, int student_vocab) {
    int rc = teacher_load(&p->m, p->c.checkpoint, p->c.backend, p->c.threads, p->c.T);
    if (rc) return rc;
    p->loaded = 1;
    int V = p->m.cfg.vocab;
    if (student_vocab > 0 && student_vocab != V)
        log_warn("model.vocab_size %d differs from the teacher's vocabulary %d (%s)", student_vocab, V,
                 p->c.checkpoint);
    if (p->c.topk > V)
        return sushi_error(SUSHI_EINVAL, "teacher.topk %d is larger than the teacher's vocabulary (%d)", p->c.topk, V);
    size_t nk = (size_t)p->c.B * p->c.T * p->c.topk;
    p->top = malloc(nk * sizeof(int32_t));
    p->lp = malloc(nk * sizeof(float));
    p->tail = malloc((size_t)p->c.B * p->c.T * sizeof(float));
    p->queue = calloc((size_t)p->c.credit, sizeof *p->queue);
    if (!p->top || !p->lp || !p->tail || !p->queue)
        return sushi_error(SUSHI_ENOMEM, "teacher: out of memory for batches of [%d,%d] x %d", p->c.B, p->c.T,
                           p->c.topk);
    if ((rc = teacher_scorer_init(&p->sc, &p->m))) return rc;
    if ((rc = credit_receiver_init(&p->cr, p->c.credit))) return rc;
    int missed = (p->c.dead_after_ms + p->c.heartbeat_ms - 1) / p->c.heartbeat_ms;
    if ((rc = heartbeat_init(&p->hb, p->c.heartbeat_ms, missed, heartbeat_now_ms()))) return rc;
    if ((rc = stage_open(&p->st, "teacher", NULL, p->c.heartbeat_ms))) return rc;
    const char *eps[2] = {p->c.loader, p->c.trainer};
    for (int i = 0; i < 2 && !rc; i++) {
        struct transport_opts o = transport_opts_default();
        o.name = pipe_peer_name[i];
        o.allow_remote = p->c.allow_remote;
        rc = transport_open(&p->sock[i], p->st.zctx, TRANSPORT_DEALER, eps[i], 0, &o);
    }
    return rc;
}

static void pipe_close(struct pipe *p) {
    for (int i = 0; p->queue && i < p->qlen; i++) wire_msg_free(&p->queue[(p->qhead + i) % p->c.credit]);
    transport_close(p->sock[0]);
    transport_close(p->sock[1]);
    if (p->st.impl) stage_close(&p->st);
    teacher_scorer_free(&p->sc);
    if (p->loaded) ds_free(&p->m);
    free(p->queue);
    free(p->top);
    free(p->lp);
    free(p->tail);
}

int teacher_pipeline(int argc, char **argv) {
    struct pipe p;
    memset(&p, 0, sizeof p);
    json_t *cfg = NULL;
    int student_vocab, rc = pipe_parse(argc, argv, &p.c, &cfg, &student_vocab);
    if (rc == 1) return 0;
    if (rc) {
        log_error("%s", sushi_last_error());
        json_decref(cfg);
        return 2;
    }
    if ((rc = pipe_open(&p, student_vocab)) == 0) {
        log_info("%s: %s on %s, batches [%d,%d], top-%d at T=%g, credit %d; loader %s, trainer %s", p.st.name,
                 p.c.checkpoint, p.m.ops->name, p.c.B, p.c.T, p.c.topk, (double)p.c.temperature, p.c.credit,
                 p.c.loader, p.c.trainer);
        pipe_control(&p, PIPE_LOADER, WIRE_HELLO);
        pipe_control(&p, PIPE_TRAINER, WIRE_HELLO);
    }
    while (!rc && !stage_stopping()) {
        if (p.qlen > 0) rc = pipe_score_front(&p);
        else rc = pipe_poll(&p, 50);
        if (rc == 1) rc = 0;
    }
    if (rc) log_error("%s", sushi_last_error());
    else log_info("stopping: %llu batches scored, %llu bad messages", (unsigned long long)p.scored,
                  (unsigned long long)(p.bad + transport_bad_count(p.sock[0]) + transport_bad_count(p.sock[1])));
    pipe_close(&p);
    json_decref(cfg);
    return rc ? 1 : 0;
}
