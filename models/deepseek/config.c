/* config.json of a DeepSeek-V3 / V2 checkpoint (SPEC §1): both RoPE dialects (top-level
 * rope_theta + rope_scaling, or transformers 5.x rope_parameters), HF defaults per
 * model_type for absent fields, unsupported values refused by name. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/json_util.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

static void ds_defaults(struct ds_config *c, enum ds_family f) {
    memset(c, 0, sizeof *c);
    c->family = f;
    if (f == DS_V3) { /* transformers DeepseekV3Config defaults */
        *c = (struct ds_config){.family = f, .vocab = 129280, .C = 7168, .F = 18432, .F_moe = 2048,
            .L = 61, .H = 128, .q_lora = 1536, .kv_lora = 512, .nope = 128, .rope = 64, .dv = 128,
            .n_routed = 256, .n_shared = 1, .top_k = 8, .n_group = 8, .topk_group = 4,
            .routed_scale = 2.5f, .norm_topk = 1, .scoring = DS_SIGMOID, .topk_method = DS_NOAUX_TC,
            .first_dense = 3, .moe_freq = 1, .eps = 1e-6f, .rope_theta = 10000, .max_pos = 4096,
            .interleave = 1};
    } else {         /* transformers DeepseekV2Config defaults */
        *c = (struct ds_config){.family = f, .vocab = 32000, .C = 4096, .F = 11008, .F_moe = 1407,
            .L = 32, .H = 32, .q_lora = 1536, .kv_lora = 512, .nope = 128, .rope = 64, .dv = 128,
            .n_routed = 64, .n_shared = 2, .top_k = 0, .n_group = 1, .topk_group = 1,
            .routed_scale = 1.0f, .norm_topk = 0, .scoring = DS_SOFTMAX, .topk_method = DS_GREEDY,
            .first_dense = 0, .moe_freq = 1, .eps = 1e-6f, .rope_theta = 10000, .max_pos = 2048,
            .interleave = 1};
    }
}

static double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

/* rope_parameters (5.x) or rope_theta + rope_scaling (older files) */
static int ds_parse_rope(struct ds_config *c, const json_t *root, struct ju_where w) {
    json_t *rp = NULL, *rs = NULL;
    int rc = ju_object(root, w, "rope_parameters", 0, &rp);
    if (!rc) rc = ju_object(root, w, "rope_scaling", 0, &rs);
    if (rc) return rc;
    if (!rp && !rs) rp = (json_t *)root;   /* only a top-level rope_theta, or nothing */
    if (!rp) rp = rs;
    double theta = c->rope_theta;
    rc = ju_double(root, w, "rope_theta", 0, &theta);
    struct ju_where wp = {w.file, rp == root ? "" : rp == rs ? "rope_scaling" : "rope_parameters"};
    if (!rc && rp != root) rc = ju_double(rp, wp, "rope_theta", 0, &theta);
    if (rc) return rc;
    c->rope_theta = theta;
    const char *type = "default";
    if (rp != root) {
        rc = ju_string(rp, wp, "rope_type", 0, &type);
        if (!rc) rc = ju_string(rp, wp, "type", 0, &type);
        if (rc) return rc;
    }
    if (!strcmp(type, "default")) return 0;
    if (strcmp(type, "yarn"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: %s.rope_type \"%s\" is not supported (default or yarn)",
                           w.file, wp.path, type);
    struct ds_yarn *y = &c->yarn;
    y->on = 1;
    y->beta_fast = 32;
    y->beta_slow = 1;
    y->attention_factor = -1;
    y->attention_factor_given = 0;
    y->original_max_pos = 0;
    rc = ju_double(rp, wp, "factor", 1, &y->factor);
    if (!rc) rc = ju_double(rp, wp, "beta_fast", 0, &y->beta_fast);
    if (!rc) rc = ju_double(rp, wp, "beta_slow", 0, &y->beta_slow);
    if (!rc) rc = ju_double(rp, wp, "mscale", 0, &y->mscale);
    if (!rc) rc = ju_double(rp, wp, "mscale_all_dim", 0, &y->mscale_all_dim);
    if (!rc) rc = ju_double(rp, wp, "attention_factor", 0, &y->attention_factor);
    if (!rc) rc = ju_int(rp, wp, "original_max_position_embeddings", 0, 1, 1 << 30, &y->original_max_pos);
    if (rc) return rc;
    if (!(y->factor > 0)) return sushi_error(SUSHI_EINVAL, "%s: %s.factor must be > 0", w.file, wp.path);
    /* HF: with original_max_position_embeddings the frequencies and the cos/sin factor use
     * max_position_embeddings / original instead of `factor` */
    y->freq_factor = y->factor;
    y->original_given = y->original_max_pos != 0;
    if (y->original_max_pos) y->freq_factor = (double)c->max_pos / y->original_max_pos;
    else y->original_max_pos = c->max_pos;
    y->attention_factor_given = y->attention_factor >= 0;
    if (y->attention_factor < 0) {
        if (y->mscale != 0 && y->mscale_all_dim != 0)
            y->attention_factor = yarn_mscale(y->freq_factor, y->mscale) / yarn_mscale(y->freq_factor, y->mscale_all_dim);
        else
            y->attention_factor = yarn_mscale(y->freq_factor, 1.0);
    }
    return 0;
}

static int ds_parse_quant(struct ds_config *c, const json_t *root, struct ju_where w) {
    json_t *q = NULL;
    int rc = ju_object(root, w, "quantization_config", 0, &q);
    if (rc || !q) return rc;
    struct ju_where wq = {w.file, "quantization_config"};
    const char *method = "", *fmt = "e4m3";
    rc = ju_string(q, wq, "quant_method", 1, &method);
    if (!rc) rc = ju_string(q, wq, "fmt", 0, &fmt);
    if (rc) return rc;
    if (strcmp(method, "fp8") || strcmp(fmt, "e4m3"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: quantization_config: quant_method \"%s\" fmt \"%s\" is not supported "
                           "(fp8 e4m3 only)", w.file, method, fmt);
    json_t *bs = json_object_get(q, "weight_block_size");
    if (bs && !(json_is_array(bs) && json_array_size(bs) == 2 &&
                json_integer_value(json_array_get(bs, 0)) == 128 &&
                json_integer_value(json_array_get(bs, 1)) == 128))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: quantization_config.weight_block_size must be [128, 128]", w.file);
    c->fp8 = 1;
    return 0;
}

static int ds_expect_string(const json_t *root, struct ju_where w, const char *key, const char *want) {
    const char *v = NULL;
    int rc = ju_string(root, w, key, 0, &v);
    if (rc) return rc;
    if (v && strcmp(v, want))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: %s \"%s\" is not supported (%s)", w.file, key, v, want);
    return 0;
}

int ds_config_parse(struct ds_config *c, const json_t *root, const char *where) {
    if (!c || !root || !json_is_object(root))
        return sushi_error(SUSHI_EINVAL, "%s: config is not a JSON object", where ? where : "config");
    struct ju_where w = {where, ""};
    const char *mt = NULL;
    int rc = ju_string(root, w, "model_type", 1, &mt);
    if (rc) return rc;
    if (!strcmp(mt, "deepseek_v3")) ds_defaults(c, DS_V3);
    else if (!strcmp(mt, "deepseek_v2")) ds_defaults(c, DS_V2);
    else return sushi_error(SUSHI_EUNSUPPORTED, "%s: model_type \"%s\" is not a DeepSeek model", where, mt);
    int ab = 0;
    rc = ju_int(root, w, "vocab_size", 0, 1, 1 << 24, &c->vocab);
    if (!rc) rc = ju_int(root, w, "hidden_size", 0, 1, 1 << 20, &c->C);
    if (!rc) rc = ju_int(root, w, "intermediate_size", 0, 1, 1 << 24, &c->F);
    if (!rc) rc = ju_int(root, w, "moe_intermediate_size", 0, 1, 1 << 24, &c->F_moe);
    if (!rc) rc = ju_int(root, w, "num_hidden_layers", 0, 1, 4096, &c->L);
    if (!rc) rc = ju_int(root, w, "num_attention_heads", 0, 1, 4096, &c->H);
    if (!rc) rc = ju_int(root, w, "q_lora_rank", 0, 1, 1 << 20, &c->q_lora);
    if (!rc) rc = ju_int(root, w, "kv_lora_rank", 0, 1, 1 << 20, &c->kv_lora);
    if (!rc) rc = ju_int(root, w, "qk_nope_head_dim", 0, 1, 1 << 16, &c->nope);
    if (!rc) rc = ju_int(root, w, "qk_rope_head_dim", 0, 2, 1 << 16, &c->rope);
    if (!rc) rc = ju_int(root, w, "v_head_dim", 0, 1, 1 << 16, &c->dv);
    if (!rc) rc = ju_int(root, w, "n_routed_experts", 0, 1, 1 << 16, &c->n_routed);
    if (!rc) rc = ju_int(root, w, "n_shared_experts", 0, 0, 1 << 16, &c->n_shared);
    if (!rc) rc = ju_int(root, w, "num_experts_per_tok", 0, 1, 1 << 16, &c->top_k);
    if (!rc) rc = ju_int(root, w, "n_group", 0, 1, 1 << 16, &c->n_group);
    if (!rc) rc = ju_int(root, w, "topk_group", 0, 1, 1 << 16, &c->topk_group);
    if (!rc) rc = ju_float(root, w, "routed_scaling_factor", 0, &c->routed_scale);
    if (!rc) rc = ju_bool(root, w, "norm_topk_prob", 0, &c->norm_topk);
    if (!rc) rc = ju_int(root, w, "first_k_dense_replace", 0, 0, 4096, &c->first_dense);
    if (!rc) rc = ju_int(root, w, "moe_layer_freq", 0, 1, 4096, &c->moe_freq);
    if (!rc) rc = ju_float(root, w, "rms_norm_eps", 0, &c->eps);
    if (!rc) rc = ju_int(root, w, "max_position_embeddings", 0, 1, 1 << 30, &c->max_pos);
    if (!rc) rc = ju_bool(root, w, "tie_word_embeddings", 0, &c->tied);
    if (!rc) rc = ju_bool(root, w, "rope_interleave", 0, &c->interleave);
    if (!rc) rc = ju_bool(root, w, "attention_bias", 0, &ab);
    if (!rc) rc = ds_expect_string(root, w, "hidden_act", "silu");
    if (rc) return rc;
    json_t *ql = json_object_get(root, "q_lora_rank");
    if (ql && json_is_null(ql)) c->q_lora = 0;
    if (json_is_null(json_object_get(root, "n_shared_experts"))) c->n_shared = 0;
    if (ab) return sushi_error(SUSHI_EUNSUPPORTED, "%s: attention_bias true is not supported", where);
    const char *sf = NULL, *tm = NULL;
    rc = ju_string(root, w, "scoring_func", 0, &sf);
    if (!rc) rc = ju_string(root, w, "topk_method", 0, &tm);
    if (rc) return rc;
    if (c->family == DS_V3) {
        /* HF's V3 always routes with sigmoid scores and noaux_tc; other values would
         * silently change the math, so they are refused */
        if (sf && strcmp(sf, "sigmoid"))
            return sushi_error(SUSHI_EUNSUPPORTED, "%s: scoring_func \"%s\" is not supported for deepseek_v3 (sigmoid)", where, sf);
        if (tm && strcmp(tm, "noaux_tc"))
            return sushi_error(SUSHI_EUNSUPPORTED, "%s: topk_method \"%s\" is not supported for deepseek_v3 (noaux_tc)", where, tm);
    } else {
        if (sf && strcmp(sf, "softmax"))
            return sushi_error(SUSHI_EUNSUPPORTED, "%s: scoring_func \"%s\" is not supported for deepseek_v2 (softmax)", where, sf);
        if (tm && !strcmp(tm, "group_limited_greedy")) c->topk_method = DS_GROUP_LIMITED_GREEDY;
        else if (tm && strcmp(tm, "greedy"))
            return sushi_error(SUSHI_EUNSUPPORTED, "%s: topk_method \"%s\" is not supported for deepseek_v2 "
                               "(greedy, group_limited_greedy)", where, tm);
        c->norm_topk = 0;        /* HF's V2 router never renormalises (the original code may) */
        c->interleave = 1;       /* HF's V2 rotates complex pairs */
    }
    rc = ds_parse_rope(c, root, w);
    if (!rc) rc = ds_parse_quant(c, root, w);
    if (rc) return rc;
    if (c->top_k == 0)
        return sushi_error(SUSHI_EINVAL, "%s: num_experts_per_tok is required", where);
    if (c->top_k > c->n_routed || c->n_routed % c->n_group || c->topk_group > c->n_group ||
        c->top_k > c->topk_group * (c->n_routed / c->n_group))
        return sushi_error(SUSHI_EINVAL, "%s: routing needs num_experts_per_tok (%d) ≤ the experts of topk_group (%d) "
                           "of n_group (%d) groups over n_routed_experts (%d)", where, c->top_k, c->topk_group,
                           c->n_group, c->n_routed);
    if (c->topk_method == DS_NOAUX_TC && c->n_routed / c->n_group < 2)
        return sushi_error(SUSHI_EINVAL, "%s: noaux_tc needs at least 2 experts per group", where);
    if (c->rope % 2) return sushi_error(SUSHI_EINVAL, "%s: qk_rope_head_dim must be even", where);
    c->attn_scale = (float)(1.0 / sqrt((double)(c->nope + c->rope)));
    /* HF (V3 and, in transformers 5.17, V2 too) multiplies the softmax scale by
     * mscale(factor, mscale_all_dim)² with the raw `factor` when YaRN is on */
    if (c->yarn.on && c->yarn.mscale_all_dim != 0) {
        double m = yarn_mscale(c->yarn.factor, c->yarn.mscale_all_dim);
        c->attn_scale = (float)(c->attn_scale * m * m);
    }
    return 0;
}

int ds_config_load(struct ds_config *c, const char *dir) {
    if (!c || !dir) return sushi_error(SUSHI_EINVAL, "ds_config_load: NULL argument");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root) return sushi_error(SUSHI_EFORMAT, "%s: line %d: %s", path, e.line, e.text);
    int rc = ds_config_parse(c, root, path);
    json_decref(root);
    return rc;
}

int ds_layer_is_moe(const struct ds_config *c, int l) {
    return c->n_routed > 0 && l >= c->first_dense && l % c->moe_freq == 0;
}
