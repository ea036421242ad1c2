/* Describes a Llama-family (sushi student) checkpoint: architecture and parameter
 * counts from the detected config (checkpoint_read_config). */
#include <stdio.h>

#include "common/core/config_student.h"
#include "common/core/log.h"
#include "models/student/checkpoint.h"
#include "tools/inspect/inspect.h"

static const char *source_name(enum ckpt_source s) {
    switch (s) {
    case CKPT_FROM_CONFIG_JSON: return "config.json";
    case CKPT_FROM_METADATA: return "safetensors metadata";
    default: return "tensor shapes (heads assume head_dim 64)";
    }
}

int inspect_describe_llama(const char *dir, json_t *out) {
    struct student_config c = {0};
    enum ckpt_source src;
    int rc = checkpoint_read_config(dir, &c, &src);
    if (rc) return rc;
    size_t C = (size_t)c.d_model, D = (size_t)c.d_head, H = (size_t)c.n_heads, G = (size_t)c.n_kv_heads;
    size_t F = (size_t)c.d_ff, Vp = (size_t)c.vocab_padded;
    size_t attn = (H * D + 2 * G * D) * C + C * H * D, mlp = 3 * F * C, norms = 2 * C;
    size_t embedding = Vp * C, head = c.tied ? 0 : Vp * C;
    size_t per_layer = attn + mlp + norms;
    size_t total = student_param_count(&c);
    json_t *params = json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:I}",
                               "total", (json_int_t)total, "embedding", (json_int_t)embedding,
                               "lm_head", (json_int_t)head, "per_layer", (json_int_t)per_layer,
                               "per_layer_parts", "attention", (json_int_t)attn, "mlp",
                               (json_int_t)mlp, "norms", (json_int_t)norms,
                               "non_embedding", (json_int_t)(total - embedding - head));
    json_t *cfg = config_student_to_json(&c);
    if (!params || !cfg) {
        json_decref(params);
        json_decref(cfg);
        return sushi_error(SUSHI_ENOMEM, "inspect: out of memory");
    }
    json_object_set_new(out, "config_source", json_string(source_name(src)));
    json_object_set_new(out, "layers", json_integer(c.n_layers));
    json_object_set_new(out, "width", json_integer(c.d_model));
    json_object_set_new(out, "heads", json_integer(c.n_heads));
    json_object_set_new(out, "kv_heads", json_integer(c.n_kv_heads));
    json_object_set_new(out, "head_dim", json_integer(c.d_head));
    json_object_set_new(out, "ffn", json_integer(c.d_ff));
    json_object_set_new(out, "vocab", json_integer(c.vocab));
    json_object_set_new(out, "vocab_padded", json_integer(c.vocab_padded));
    json_object_set_new(out, "tied", json_boolean(c.tied));
    json_object_set_new(out, "parameters", params);
    json_object_set_new(out, "student_config", cfg);
    return SUSHI_OK;
}
