/* The `model:` section of a training YAML with arch: deepseek (deepseek.h): the field
 * names of an HF DeepseekV3/V2 config.json, read by ds_config_parse. For training, the
 * shape fields are required (HF's defaults describe the 671B model), q_lora_rank 0 or
 * null means a plain q_proj, n_group / topk_group default to 1, model_type to
 * deepseek_v3, and unknown keys are refused by name. */
#include <stdio.h>
#include <string.h>

#include "common/core/json_util.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

static const char *const known[] = {
    "arch", "model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size",
    "moe_intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "q_lora_rank",
    "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "head_dim", "qk_head_dim",
    "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group",
    "routed_scaling_factor", "norm_topk_prob", "scoring_func", "topk_method", "first_k_dense_replace",
    "moe_layer_freq", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "rope_interleave",
    "max_position_embeddings", "tie_word_embeddings", "hidden_act", "attention_bias", NULL};

static const char *const required[] = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts", "moe_intermediate_size",
    "num_experts_per_tok", "first_k_dense_replace", NULL};

int ds_config_from_train_json(struct ds_config *c, const json_t *model, const char *file) {
    if (!file) file = "config";
    if (!c || !json_is_object(model)) return sushi_error(SUSHI_EINVAL, "%s: model: missing or not a map", file);
    struct ju_where w = {file, "model"};
    int rc = ju_check_keys(model, w, known);
    if (rc) return rc;
    const char *arch = NULL;
    if ((rc = ju_string(model, w, "arch", 0, &arch))) return rc;
    if (arch && strcmp(arch, "deepseek"))
        return sushi_error(SUSHI_EINVAL, "%s: model.arch: \"%s\" is not deepseek", file, arch);
    for (int i = 0; required[i]; i++) {
        json_t *v = json_object_get(model, required[i]);
        if (!v || json_is_null(v))
            return sushi_error(SUSHI_EINVAL, "%s: model.%s is required for arch deepseek", file, required[i]);
    }
    json_t *j = json_deep_copy(model);
    if (!j) return sushi_error(SUSHI_ENOMEM, "%s: model: out of memory", file);
    json_object_del(j, "arch");
    if (!json_object_get(j, "model_type")) json_object_set_new(j, "model_type", json_string("deepseek_v3"));
    json_t *ql = json_object_get(j, "q_lora_rank");
    if (!ql || (json_is_integer(ql) && json_integer_value(ql) == 0)) json_object_set_new(j, "q_lora_rank", json_null());
    if (!json_object_get(j, "n_group")) json_object_set_new(j, "n_group", json_integer(1));
    if (!json_object_get(j, "topk_group")) json_object_set_new(j, "topk_group", json_integer(1));
    char where[1024];
    snprintf(where, sizeof where, "%s: model", file);
    rc = ds_config_parse(c, j, where);
    json_decref(j);
    if (!rc && c->fp8) rc = sushi_error(SUSHI_EUNSUPPORTED, "%s: model.quantization_config: FP8 cannot be trained", file);
    return rc;
}
