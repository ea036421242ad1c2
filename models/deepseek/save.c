/* Export of a DeepSeek-style model in the HF layout: config.json (transformers 5.x
 * dialect: rope_parameters) and one f32 model.safetensors with HF's tensor names
 * (per-expert gate/up/down), so a model trained here loads in ds_load and in HF
 * transformers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/core/safetensors.h"
#include "models/deepseek/deepseek.h"

/* host f32 copies of backend tensors, kept until the file is written */
struct save_ctx {
    const struct ops *ops;
    struct st_writer *w;
    float **bufs;
    int n, cap;
};

/* adds tensor NAME: `rows`×`cols` act elements at src (cols 0: a vector) */
static int save_tensor(struct save_ctx *s, const char *name, const void *src, int64_t rows, int64_t cols) {
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 256;
        float **g = realloc(s->bufs, (size_t)nc * sizeof *g);
        if (!g) return sushi_error(SUSHI_ENOMEM, "ds_save: out of memory");
        s->bufs = g;
        s->cap = nc;
    }
    float *host = malloc(n * sizeof(float)), *dev = s->ops->alloc(n * sizeof(float));
    int rc = (!host || !dev) ? sushi_error(SUSHI_ENOMEM, "ds_save: %s: out of memory", name) : 0;
    if (!rc) rc = s->ops->act_to_f32(dev, src, n);
    if (!rc) rc = s->ops->to_host(host, dev, n * sizeof(float));
    if (dev) s->ops->free(dev);
    if (rc) {
        free(host);
        return rc;
    }
    s->bufs[s->n++] = host;
    int64_t shape[2] = {rows, cols};
    return st_writer_add(s->w, name, DT_F32, cols ? 2 : 1, shape, host);
}

static int save_mlp(struct save_ctx *s, const char *prefix, const struct ds_mlp *p, int C) {
    char name[512];
    size_t es = dtype_size(s->ops->act_dtype);
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    int rc = save_tensor(s, name, p->gu, p->F, C);
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    if (!rc) rc = save_tensor(s, name, (char *)p->gu + (size_t)p->F * C * es, p->F, C);
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    if (!rc) rc = save_tensor(s, name, p->down, C, p->F);
    return rc;
}

static int save_layer(struct save_ctx *s, const struct ds_config *c, int l, const struct ds_layer *y) {
    char p[256], name[512];
    int dqk = c->nope + c->rope, rc = 0;
#define SV(suffix, src, r, k)                                      \
    do {                                                           \
        snprintf(name, sizeof name, "%s.%s", p, suffix);           \
        if (!rc) rc = save_tensor(s, name, src, r, k);             \
    } while (0)
    snprintf(p, sizeof p, "model.layers.%d", l);
    SV("input_layernorm.weight", y->in_norm, c->C, 0);
    SV("post_attention_layernorm.weight", y->post_norm, c->C, 0);
    snprintf(p, sizeof p, "model.layers.%d.self_attn", l);
    if (c->q_lora) {
        SV("q_a_proj.weight", y->q_a, c->q_lora, c->C);
        SV("q_a_layernorm.weight", y->q_a_norm, c->q_lora, 0);
        SV("q_b_proj.weight", y->q_b, (int64_t)c->H * dqk, c->q_lora);
    } else {
        SV("q_proj.weight", y->q_b, (int64_t)c->H * dqk, c->C);
    }
    SV("kv_a_proj_with_mqa.weight", y->kv_a, c->kv_lora + c->rope, c->C);
    SV("kv_a_layernorm.weight", y->kv_a_norm, c->kv_lora, 0);
    SV("kv_b_proj.weight", y->kv_b, (int64_t)c->H * (c->nope + c->dv), c->kv_lora);
    SV("o_proj.weight", y->o, c->C, (int64_t)c->H * c->dv);
    snprintf(p, sizeof p, "model.layers.%d.mlp", l);
    if (!y->moe) return rc ? rc : save_mlp(s, p, &y->dense, c->C);
    SV("gate.weight", y->router, c->n_routed, c->C);
    if (!rc && c->topk_method == DS_NOAUX_TC) {   /* host f32 already */
        snprintf(name, sizeof name, "%s.gate.e_score_correction_bias", p);
        int64_t shape[1] = {c->n_routed};
        rc = st_writer_add(s->w, name, DT_F32, 1, shape, y->router_bias);
    }
    for (int e = 0; !rc && e < c->n_routed; e++) {
        snprintf(name, sizeof name, "%s.experts.%d", p, e);
        rc = save_mlp(s, name, &y->experts[e], c->C);
    }
    if (!rc && c->n_shared) {
        snprintf(name, sizeof name, "%s.shared_experts", p);
        rc = save_mlp(s, name, &y->shared, c->C);
    }
    return rc;
#undef SV
}

static json_t *save_config(const struct ds_config *c) {
    static const char *const method[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    const struct ds_yarn *y = &c->yarn;
    json_t *rp = json_pack("{s:s, s:f}", "rope_type", y->on ? "yarn" : "default", "rope_theta", c->rope_theta);
    if (rp && y->on) {
        json_object_set_new(rp, "factor", json_real(y->factor));
        json_object_set_new(rp, "beta_fast", json_real(y->beta_fast));
        json_object_set_new(rp, "beta_slow", json_real(y->beta_slow));
        json_object_set_new(rp, "mscale", json_real(y->mscale));
        json_object_set_new(rp, "mscale_all_dim", json_real(y->mscale_all_dim));
        if (y->original_given) json_object_set_new(rp, "original_max_position_embeddings", json_integer(y->original_max_pos));
        if (y->attention_factor_given) json_object_set_new(rp, "attention_factor", json_real(y->attention_factor));
    }
    json_t *j = json_pack(
        "{s:s, s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, "
        "s:s, s:s, s:i, s:i, s:f, s:i, s:b, s:b, s:b, s:s, s:o}",
        "model_type", c->family == DS_V3 ? "deepseek_v3" : "deepseek_v2", "architectures",
        c->family == DS_V3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM", "vocab_size", c->vocab,
        "hidden_size", c->C, "intermediate_size", c->F, "moe_intermediate_size", c->F_moe, "num_hidden_layers", c->L,
        "num_attention_heads", c->H, "num_key_value_heads", c->H, "kv_lora_rank", c->kv_lora, "qk_nope_head_dim",
        c->nope, "qk_rope_head_dim", c->rope, "v_head_dim", c->dv, "n_routed_experts", c->n_routed,
        "n_shared_experts", c->n_shared, "num_experts_per_tok", c->top_k, "n_group", c->n_group, "topk_group",
        c->topk_group, "head_dim", c->rope, "qk_head_dim", c->nope + c->rope, "routed_scaling_factor",
        (double)c->routed_scale, "norm_topk_prob", c->norm_topk, "scoring_func",
        c->scoring == DS_SIGMOID ? "sigmoid" : "softmax", "topk_method", method[c->topk_method],
        "first_k_dense_replace", c->first_dense, "moe_layer_freq", c->moe_freq, "rms_norm_eps", (double)c->eps,
        "max_position_embeddings", c->max_pos, "tie_word_embeddings", c->tied, "rope_interleave", c->interleave,
        "attention_bias", 0, "hidden_act", "silu", "rope_parameters", rp);
    if (j) json_object_set_new(j, "q_lora_rank", c->q_lora ? json_integer(c->q_lora) : json_null());
    return j;
}

int ds_save(const struct ds_model *m, const char *dir) {
    if (!m || !dir || !m->layers) return sushi_error(SUSHI_EINVAL, "ds_save: bad argument");
    const struct ds_config *c = &m->cfg;
    if (fs_mkdir_p(dir, 0755)) return sushi_error(SUSHI_EIO, "%s: cannot create the folder", dir);
    struct save_ctx s = {.ops = m->ops, .w = st_writer_new()};
    int rc = s.w ? 0 : sushi_error(SUSHI_ENOMEM, "ds_save: out of memory");
    if (!rc) rc = save_tensor(&s, "model.embed_tokens.weight", m->embed, c->vocab, c->C);
    if (!rc) rc = save_tensor(&s, "model.norm.weight", m->final_norm, c->C, 0);
    if (!rc && !c->tied) rc = save_tensor(&s, "lm_head.weight", m->head, c->vocab, c->C);
    for (int l = 0; !rc && l < c->L; l++) rc = save_layer(&s, c, l, &m->layers[l]);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc) rc = st_writer_commit(s.w, path);
    json_t *cfg = rc ? NULL : save_config(c);
    if (!rc && !cfg) rc = sushi_error(SUSHI_ENOMEM, "ds_save: config.json: out of memory");
    char *text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc && !text) rc = sushi_error(SUSHI_ENOMEM, "ds_save: config.json: out of memory");
    if (!rc) rc = fs_write_atomic(path, text, strlen(text));
    free(text);
    json_decref(cfg);
    for (int i = 0; i < s.n; i++) free(s.bufs[i]);
    free(s.bufs);
    st_writer_free(s.w);
    return rc;
}
