/* Checkpoints of a DeepSeek model in training (deepseek.h): the weights in ds_save's HF
 * layout (config.json + f32 model.safetensors, written by ds_save from a host copy of
 * the f32 master weights), optimizer.safetensors (f32 AdamW moments, NAME.exp_avg /
 * NAME.exp_avg_sq) and trainer_state.json, published atomically as a directory
 * (fs_dir_stage / fs_dir_publish, as the student's checkpoints). Loading reads the
 * weights through ds_load (names, shapes, dtypes, extras checked) after comparing the
 * saved config with the model's, field by field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/core/safetensors.h"
#include "models/deepseek/deepseek.h"

#define IO_PATH 4096
#define IO_STATE "trainer_state.json"
#define IO_OPT_STEM "optimizer"

/* ---- config comparison ------------------------------------------------------------- */

int ds_config_equal(const struct ds_config *a, const struct ds_config *b, const char *where) {
    if (!a || !b) return sushi_error(SUSHI_EINVAL, "ds_config_equal: NULL argument");
    const struct { const char *name; double x, y; } f[] = {
        {"model_type", a->family, b->family}, {"vocab_size", a->vocab, b->vocab}, {"hidden_size", a->C, b->C},
        {"intermediate_size", a->F, b->F}, {"moe_intermediate_size", a->F_moe, b->F_moe},
        {"num_hidden_layers", a->L, b->L}, {"num_attention_heads", a->H, b->H}, {"q_lora_rank", a->q_lora, b->q_lora},
        {"kv_lora_rank", a->kv_lora, b->kv_lora}, {"qk_nope_head_dim", a->nope, b->nope},
        {"qk_rope_head_dim", a->rope, b->rope}, {"v_head_dim", a->dv, b->dv},
        {"n_routed_experts", a->n_routed, b->n_routed}, {"n_shared_experts", a->n_shared, b->n_shared},
        {"num_experts_per_tok", a->top_k, b->top_k}, {"n_group", a->n_group, b->n_group},
        {"topk_group", a->topk_group, b->topk_group}, {"routed_scaling_factor", a->routed_scale, b->routed_scale},
        {"norm_topk_prob", a->norm_topk, b->norm_topk}, {"scoring_func", a->scoring, b->scoring},
        {"topk_method", a->topk_method, b->topk_method}, {"first_k_dense_replace", a->first_dense, b->first_dense},
        {"moe_layer_freq", a->moe_freq, b->moe_freq}, {"rms_norm_eps", a->eps, b->eps},
        {"rope_theta", a->rope_theta, b->rope_theta}, {"max_position_embeddings", a->max_pos, b->max_pos},
        {"rope_interleave", a->interleave, b->interleave}, {"tie_word_embeddings", a->tied, b->tied},
        {"quantization_config", a->fp8, b->fp8}, {"rope type (yarn)", a->yarn.on, b->yarn.on},
        {"yarn factor", a->yarn.factor, b->yarn.factor}, {"yarn frequency factor", a->yarn.freq_factor, b->yarn.freq_factor},
        {"yarn beta_fast", a->yarn.beta_fast, b->yarn.beta_fast}, {"yarn beta_slow", a->yarn.beta_slow, b->yarn.beta_slow},
        {"yarn attention factor", a->yarn.attention_factor, b->yarn.attention_factor},
        {"yarn original_max_position_embeddings", a->yarn.original_max_pos, b->yarn.original_max_pos},
        {"softmax scale", a->attn_scale, b->attn_scale},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].x != f[i].y && !(isnan(f[i].x) && isnan(f[i].y)))
            return sushi_error(SUSHI_ESHAPE, "%s: %s is %.9g, the model's is %.9g (config mismatch)",
                               where ? where : "config", f[i].name, f[i].x, f[i].y);
    return 0;
}

/* ---- saving ------------------------------------------------------------------------ */

/* A host view of the weights in h (f32, t's layout) as a ds_model on the CPU ops, with
 * t's router biases borrowed; *slots / *ns its slots. */
static int io_host_view(const struct ds_train *t, float *h, struct ds_model *hm, struct ds_slot **slots, int *ns) {
    int rc = ds_train_skeleton(hm, &t->m.cfg, ops_cpu(), 0);
    if (rc) return rc;
    if (!(rc = ds_train_layout(hm, h, sizeof(float), NULL, NULL))) rc = *ns = ds_train_slots(hm, slots, NULL);
    if (rc < 0) {
        ds_train_skeleton_free(hm, 0);
        return rc;
    }
    for (int l = 0; l < t->m.cfg.L; l++) hm->layers[l].router_bias = t->m.layers[l].router_bias;
    hm->max_seq = t->m.max_seq;
    return 0;
}

static size_t slot_numel(const struct ds_slot *s) { return (size_t)s->rows * (size_t)(s->cols ? s->cols : 1); }

/* element offset of slot s in the buffer base its model view was laid over */
static size_t slot_offset(const struct ds_slot *s, const float *base) {
    return (size_t)((const float *)*s->p - base) + s->off;
}

static int io_write_optimizer(const char *tmp, const struct ds_slot *s, int ns, const float *base, const float *m,
                              const float *v) {
    char path[IO_PATH + 64];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmp, IO_OPT_STEM);
    struct st_writer *w = st_writer_new();
    int rc = w ? st_writer_meta(w, "format", "pt") : sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    for (int k = 0; k < 2 && !rc; k++) {
        for (int i = 0; i < ns && !rc; i++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", s[i].name, k ? ".exp_avg_sq" : ".exp_avg");
            int64_t shape[2] = {s[i].rows, s[i].cols};
            rc = st_writer_add(w, name, DT_F32, s[i].cols ? 2 : 1, shape, (k ? v : m) + slot_offset(&s[i], base));
        }
    }
    if (!rc) rc = st_writer_commit(w, path);
    st_writer_free(w);
    return rc;
}

static int io_write_state(const char *tmp, const json_t *state) {
    char path[IO_PATH + 64];
    snprintf(path, sizeof path, "%s/%s", tmp, IO_STATE);
    char *text = json_dumps(state, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (!text) return sushi_error(SUSHI_ENOMEM, "%s: cannot serialise JSON", path);
    int rc = fs_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int ds_train_save(const struct ds_train *t, const char *dir, const float *m, const float *v, const json_t *state) {
    if (!t || !t->master || !dir || !*dir) return sushi_error(SUSHI_EINVAL, "ds_train_save: missing model or directory");
    if (!m != !v) return sushi_error(SUSHI_EINVAL, "ds_train_save: %s: give both AdamW moments or neither", dir);
    if (state && !json_is_object(state))
        return sushi_error(SUSHI_EINVAL, "ds_train_save: %s: trainer state must be a JSON object", dir);
    float *h = malloc(t->n_params * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "ds_train_save: %s: out of memory for %zu parameters", dir, t->n_params);
    int rc = t->m.ops->to_host(h, t->master, t->n_params * sizeof(float));
    struct ds_model hm;
    struct ds_slot *s = NULL;
    int ns = 0, viewed = 0;
    if (!rc) viewed = !(rc = io_host_view(t, h, &hm, &s, &ns));
    char tmp[IO_PATH];
    int staged = !rc && !(rc = fs_dir_stage(dir, tmp, sizeof tmp));
    if (!rc) rc = ds_save(&hm, tmp);
    if (!rc && m) rc = io_write_optimizer(tmp, s, ns, h, m, v);
    if (!rc && state) rc = io_write_state(tmp, state);
    if (!rc) rc = fs_dir_publish(tmp, dir);
    else if (staged) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        fs_remove_tree(tmp);
        rc = sushi_error(rc, "%s", msg);
    }
    if (viewed) ds_train_skeleton_free(&hm, 0);
    free(s);
    free(h);
    return rc;
}

/* ---- loading ----------------------------------------------------------------------- */

/* the moments of every slot from DIR/optimizer.safetensors (f32, exact shapes, nothing
 * else in the file) */
static int io_read_optimizer(const char *dir, const struct ds_slot *s, int ns, const float *base, float *m, float *v) {
    struct st_set set;
    int rc = st_set_open(&set, dir, IO_OPT_STEM);
    if (rc) return rc;
    size_t used = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        for (int i = 0; i < ns && !rc; i++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", s[i].name, k ? ".exp_avg_sq" : ".exp_avg");
            const struct st_file *f = NULL;
            const struct st_tensor *x = st_set_find(&set, name, &f);
            int64_t shape[2] = {s[i].rows, s[i].cols};
            if (!x) rc = sushi_error(SUSHI_ENOTFOUND, "%s/%s.safetensors: missing tensor %s", dir, IO_OPT_STEM, name);
            else rc = st_expect(f, name, DT_F32, s[i].cols ? 2 : 1, shape);
            if (!rc) memcpy((k ? v : m) + slot_offset(&s[i], base), x->data, slot_numel(&s[i]) * sizeof(float));
            used++;
        }
    }
    if (!rc && used != set.n)
        rc = sushi_error(SUSHI_EFORMAT, "%s/%s.safetensors: %zu tensors, this model has %zu moments (extra tensors)", dir,
                         IO_OPT_STEM, set.n, used);
    st_set_close(&set);
    return rc;
}

static int io_read_state(const char *dir, json_t **state) {
    char path[IO_PATH + 64];
    snprintf(path, sizeof path, "%s/%s", dir, IO_STATE);
    if (!fs_exists(path)) return sushi_error(SUSHI_ENOTFOUND, "%s: missing (no trainer state)", path);
    json_error_t e;
    *state = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!*state) return sushi_error(SUSHI_EFORMAT, "%s: corrupt JSON at line %d: %s", path, e.line, e.text);
    if (json_is_object(*state)) return 0;
    json_decref(*state);
    *state = NULL;
    return sushi_error(SUSHI_EFORMAT, "%s: not a JSON object", path);
}

/* the weights of the HF checkpoint in dir into h (t's layout) and t's router biases */
static int io_read_weights(struct ds_train *t, const char *dir, float *h, const struct ds_slot *s, int ns) {
    struct ds_model lm;
    int rc = ds_load(&lm, dir, ops_cpu(), 1);
    if (rc) return rc;
    struct ds_slot *ls = NULL;
    int nl = ds_train_slots(&lm, &ls, NULL);
    if (nl < 0) rc = nl;
    else if (nl != ns) rc = sushi_error(SUSHI_ESHAPE, "%s: %d tensors, the model has %d", dir, nl, ns);
    for (int i = 0; !rc && i < ns; i++)
        memcpy(h + slot_offset(&s[i], h), (const float *)*ls[i].p + ls[i].off, slot_numel(&s[i]) * sizeof(float));
    for (int l = 0; !rc && l < t->m.cfg.L; l++)
        if (t->m.layers[l].router_bias && lm.layers[l].router_bias)
            memcpy(t->m.layers[l].router_bias, lm.layers[l].router_bias, (size_t)t->m.cfg.n_routed * sizeof(float));
    free(ls);
    ds_free(&lm);
    return rc;
}

int ds_train_load(struct ds_train *t, const char *dir_in, float *m, float *v, json_t **state) {
    if (!t || !t->master || !dir_in) return sushi_error(SUSHI_EINVAL, "ds_train_load: missing model or directory");
    if (!m != !v) return sushi_error(SUSHI_EINVAL, "ds_train_load: %s: give both AdamW moments or neither", dir_in);
    if (state) *state = NULL;
    char dir[IO_PATH], where[IO_PATH + 32];
    int rc = fs_dir_resolve(dir_in, dir, sizeof dir);
    if (rc) return rc;
    struct ds_config c;
    snprintf(where, sizeof where, "%s/config.json", dir);
    if ((rc = ds_config_load(&c, dir)) || (rc = ds_config_equal(&c, &t->m.cfg, where))) return rc;
    float *h = malloc(t->n_params * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "ds_train_load: %s: out of memory for %zu parameters", dir, t->n_params);
    struct ds_model hm;
    struct ds_slot *s = NULL;
    int ns = 0, viewed = !(rc = io_host_view(t, h, &hm, &s, &ns));
    if (!rc) rc = io_read_weights(t, dir, h, s, ns);
    if (!rc && m) rc = io_read_optimizer(dir, s, ns, h, m, v);
    if (!rc && state) rc = io_read_state(dir, state);
    if (!rc) rc = t->m.ops->to_device(t->master, h, t->n_params * sizeof(float));
    if (!rc) rc = ds_train_sync_weights(t);
    if (rc && state && *state) {
        json_decref(*state);
        *state = NULL;
    }
    if (viewed) ds_train_skeleton_free(&hm, 0);
    free(s);
    free(h);
    return rc;
}
