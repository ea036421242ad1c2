/* `sushi inspect` for DeepSeek-V3 / V2 checkpoints: the architecture from config.json,
 * dense and MoE layers, experts, and parameter counts — total and active per token
 * (shared experts plus num_experts_per_tok routed ones), without V3's multi-token-
 * prediction layer. */
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

int deepseek_describe(const char *dir, json_t *out) {
    if (!dir || !out) return sushi_error(SUSHI_EINVAL, "deepseek_describe: NULL argument");
    struct ds_config c;
    int rc = ds_config_load(&c, dir);
    if (rc) return rc;
    size_t C = (size_t)c.C, H = (size_t)c.H, dqk = (size_t)(c.nope + c.rope), V = (size_t)c.vocab;
    size_t q = c.q_lora ? C * c.q_lora + c.q_lora + (size_t)c.q_lora * H * dqk : C * H * dqk;
    size_t attn = q + C * (c.kv_lora + c.rope) + c.kv_lora + (size_t)c.kv_lora * H * (c.nope + c.dv) + H * c.dv * C;
    size_t dense = 3 * (size_t)c.F * C, expert = 3 * (size_t)c.F_moe * C;
    size_t router = (size_t)c.n_routed * C + (c.topk_method == DS_NOAUX_TC ? (size_t)c.n_routed : 0);
    size_t shared = expert * c.n_shared;
    size_t total = V * C * (c.tied ? 1 : 2) + C, active = total;
    int n_moe = 0;
    for (int l = 0; l < c.L; l++) {
        size_t base = attn + 2 * C;
        if (ds_layer_is_moe(&c, l)) {
            n_moe++;
            total += base + router + shared + expert * c.n_routed;
            active += base + router + shared + expert * c.top_k;
        } else {
            total += base + dense;
            active += base + dense;
        }
    }
    static const char *const scoring[] = {"sigmoid", "softmax"};
    static const char *const method[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    json_t *arch = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:s}",
                             "layers", c.L, "dense_layers", c.L - n_moe, "moe_layers", n_moe, "width", c.C,
                             "heads", c.H, "q_lora_rank", c.q_lora, "kv_lora_rank", c.kv_lora, "qk_rope_head_dim",
                             c.rope, "vocab", c.vocab, "tied", c.tied, "yarn", c.yarn.on,
                             "weights", c.fp8 ? "fp8 e4m3, 128x128 block scales" : "as stored");
    json_t *moe = json_pack("{s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:f, s:b}", "routed_experts", c.n_routed,
                            "shared_experts", c.n_shared, "experts_per_token", c.top_k, "groups", c.n_group,
                            "groups_per_token", c.topk_group, "scoring", scoring[c.scoring], "topk_method",
                            method[c.topk_method], "routed_scaling_factor", (double)c.routed_scale, "norm_topk_prob",
                            c.norm_topk);
    json_t *params = json_pack("{s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)total, "active_per_token",
                               (json_int_t)active, "attention_per_layer", (json_int_t)attn, "expert",
                               (json_int_t)expert, "embedding", (json_int_t)(V * C));
    if (!arch || !moe || !params) {
        json_decref(arch);
        json_decref(moe);
        json_decref(params);
        return sushi_error(SUSHI_ENOMEM, "deepseek_describe: out of memory");
    }
    json_object_set_new(out, "architecture", arch);
    json_object_set_new(out, "moe", moe);
    json_object_set_new(out, "parameters", params);
    return 0;
}
