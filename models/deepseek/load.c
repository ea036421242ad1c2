/* Loading a DeepSeek checkpoint in the HF layout: every expected tensor checked by
 * name, dtype and shape; FP8 e4m3 weights dequantised with their 128×128
 * weight_scale_inv blocks; each tensor converted from the mapping into the backend's
 * activation dtype one at a time; tensors nobody asked for reported by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/core/safetensors.h"
#include "models/deepseek/deepseek.h"

#define DS_BLOCK 128

int ds_fp8_dequant(float *dst, const uint8_t *src, const float *scale_inv, int64_t rows, int64_t cols) {
    if (!dst || !src || !scale_inv || rows <= 0 || cols <= 0)
        return sushi_error(SUSHI_EINVAL, "ds_fp8_dequant: bad argument");
    int64_t bc = (cols + DS_BLOCK - 1) / DS_BLOCK;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++)
            dst[r * cols + k] = f8e4m3_to_f32(src[r * cols + k]) * scale_inv[(r / DS_BLOCK) * bc + k / DS_BLOCK];
    return 0;
}

/* the loader's state: the tensor set and which of its tensors were used */
struct ds_loader {
    struct st_set set;
    const struct ops *ops;
    char *used;                       /* [set.n] */
    const struct st_tensor **sorted;  /* tensors by address, to find their index */
    size_t n_params;
};

static int ds_ptr_cmp(const void *a, const void *b) {
    const void *x = *(const void *const *)a, *y = *(const void *const *)b;
    return x < y ? -1 : x > y;
}

static void ds_mark_used(struct ds_loader *ld, const struct st_tensor *t) {
    const struct st_tensor **hit = bsearch(&t, ld->sorted, ld->set.n, sizeof *ld->sorted, ds_ptr_cmp);
    if (hit) ld->used[hit - ld->sorted] = 1;
}

/* Tensor NAME of shape (d0[, d1]) -> newly allocated backend buffer (act dtype); with
 * dst_off, writes into an existing buffer at element offset instead. */
static int ds_read_shape(struct ds_loader *ld, const char *name, int ndim, const int64_t *want, void **out,
                         void *into, size_t into_off) {
    const struct st_file *f = NULL;
    const struct st_tensor *t = st_set_find(&ld->set, name, &f);
    if (!t) return sushi_error(SUSHI_ENOTFOUND, "%s: tensor %s is missing", ld->set.dir, name);
    int ok = t->ndim == ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        ok = ok && t->shape[i] == want[i];
        n *= (size_t)want[i];
    }
    if (!ok) {
        char w[96] = "", h[96] = "";
        for (int i = 0; i < ndim; i++)
            snprintf(w + strlen(w), sizeof w - strlen(w), "%s%lld", i ? ", " : "", (long long)want[i]);
        for (int i = 0; i < t->ndim && i < 4; i++)
            snprintf(h + strlen(h), sizeof h - strlen(h), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        return sushi_error(SUSHI_ESHAPE, "%s: tensor %s: shape [%s] expected, file has [%s]", f->path, name, w, h);
    }
    int64_t d0 = want[0], d1 = ndim > 1 ? want[1] : 0;
    ds_mark_used(ld, t);
    float *tmp = malloc(n * sizeof(float));
    if (!tmp) return sushi_error(SUSHI_ENOMEM, "%s: tensor %s: out of memory", f->path, name);
    int rc = 0;
    if (t->dtype == DT_F8_E4M3) {
        char sname[512];
        snprintf(sname, sizeof sname, "%s_scale_inv", name);
        const struct st_file *sf = NULL;
        const struct st_tensor *s = st_set_find(&ld->set, sname, &sf);
        int64_t sshape[2] = {(d0 + DS_BLOCK - 1) / DS_BLOCK, (d1 + DS_BLOCK - 1) / DS_BLOCK};
        if (ndim != 2) rc = sushi_error(SUSHI_EFORMAT, "%s: tensor %s: FP8 only for matrices", f->path, name);
        else if (!s) rc = sushi_error(SUSHI_ENOTFOUND, "%s: FP8 tensor %s has no %s", ld->set.dir, name, sname);
        else if ((rc = st_expect(sf, sname, DT_F32, 2, sshape)) == 0) {
            ds_mark_used(ld, s);
            rc = ds_fp8_dequant(tmp, t->data, s->data, d0, d1);
        }
    } else if (t->dtype == DT_F32 || t->dtype == DT_BF16 || t->dtype == DT_F16) {
        rc = dtype_convert_to_f32(tmp, t->data, t->dtype, n);
    } else {
        rc = sushi_error(SUSHI_EFORMAT, "%s: tensor %s: dtype %s is not supported (F32, BF16, F16, F8_E4M3)", f->path,
                         name, dtype_name(t->dtype));
    }
    if (!rc) {
        size_t es = dtype_size(ld->ops->act_dtype);
        void *dst = into ? (char *)into + into_off * es : ld->ops->alloc(n * es);
        if (!dst) rc = sushi_error(SUSHI_ENOMEM, "%s: tensor %s: out of backend memory", f->path, name);
        else if ((rc = ld->ops->f32_to_act(dst, tmp, n)) != 0 && !into) ld->ops->free(dst);
        else if (!into) *out = dst;
    }
    if (!rc) ld->n_params += n;
    free(tmp);
    return rc;
}

static int ds_read(struct ds_loader *ld, const char *name, int ndim, int64_t d0, int64_t d1, void **out,
                   void *into, size_t into_off) {
    int64_t want[2] = {d0, d1};
    return ds_read_shape(ld, name, ndim, want, out, into, into_off);
}

/* gate_proj and up_proj into one (2F, C) buffer, down_proj (C, F) */
static int ds_read_mlp(struct ds_loader *ld, const char *prefix, int C, int F, struct ds_mlp *mlp) {
    char name[512];
    size_t es = dtype_size(ld->ops->act_dtype);
    mlp->F = F;
    mlp->gu = ld->ops->alloc((size_t)2 * F * C * es);
    if (!mlp->gu) return sushi_error(SUSHI_ENOMEM, "%s: out of backend memory", prefix);
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    int rc = ds_read(ld, name, 2, F, C, NULL, mlp->gu, 0);
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    if (!rc) rc = ds_read(ld, name, 2, F, C, NULL, mlp->gu, (size_t)F * C);
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    if (!rc) rc = ds_read(ld, name, 2, C, F, &mlp->down, NULL, 0);
    return rc;
}

static int ds_read_layer(struct ds_loader *ld, const struct ds_config *c, int l, struct ds_layer *y) {
    char p[256], name[512];
    int dqk = c->nope + c->rope, rc = 0;
#define RD(suffix, nd, a, b, out)                                      \
    do {                                                               \
        snprintf(name, sizeof name, "%s.%s", p, suffix);               \
        if (!rc) rc = ds_read(ld, name, nd, a, b, out, NULL, 0);       \
    } while (0)
    snprintf(p, sizeof p, "model.layers.%d", l);
    RD("input_layernorm.weight", 1, c->C, 0, &y->in_norm);
    RD("post_attention_layernorm.weight", 1, c->C, 0, &y->post_norm);
    snprintf(p, sizeof p, "model.layers.%d.self_attn", l);
    if (c->q_lora) {
        RD("q_a_proj.weight", 2, c->q_lora, c->C, &y->q_a);
        RD("q_a_layernorm.weight", 1, c->q_lora, 0, &y->q_a_norm);
        RD("q_b_proj.weight", 2, (int64_t)c->H * dqk, c->q_lora, &y->q_b);
    } else {
        RD("q_proj.weight", 2, (int64_t)c->H * dqk, c->C, &y->q_b);
    }
    RD("kv_a_proj_with_mqa.weight", 2, c->kv_lora + c->rope, c->C, &y->kv_a);
    RD("kv_a_layernorm.weight", 1, c->kv_lora, 0, &y->kv_a_norm);
    RD("kv_b_proj.weight", 2, (int64_t)c->H * (c->nope + c->dv), c->kv_lora, &y->kv_b);
    RD("o_proj.weight", 2, c->C, (int64_t)c->H * c->dv, &y->o);
    if (rc) return rc;
    y->moe = ds_layer_is_moe(c, l);
    snprintf(p, sizeof p, "model.layers.%d.mlp", l);
    if (!y->moe) return ds_read_mlp(ld, p, c->C, c->F, &y->dense);
    RD("gate.weight", 2, c->n_routed, c->C, &y->router);
    if (rc) return rc;
    y->router_bias = calloc((size_t)c->n_routed, sizeof(float));
    y->experts = calloc((size_t)c->n_routed, sizeof *y->experts);
    if (!y->router_bias || !y->experts) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", p);
    if (c->topk_method == DS_NOAUX_TC) {
        snprintf(name, sizeof name, "%s.gate.e_score_correction_bias", p);
        const struct st_file *f = NULL;
        const struct st_tensor *t = st_set_find(&ld->set, name, &f);
        int64_t shape[1] = {c->n_routed};
        if (!t) return sushi_error(SUSHI_ENOTFOUND, "%s: tensor %s is missing", ld->set.dir, name);
        if (t->ndim != 1 || t->shape[0] != c->n_routed || (t->dtype != DT_F32 && t->dtype != DT_BF16 && t->dtype != DT_F16))
            return st_expect(f, name, DT_F32, 1, shape) ? SUSHI_ESHAPE
                   : sushi_error(SUSHI_ESHAPE, "%s: tensor %s: bad dtype", f->path, name);
        ds_mark_used(ld, t);
        rc = dtype_convert_to_f32(y->router_bias, t->data, t->dtype, (size_t)c->n_routed);
        ld->n_params += (size_t)c->n_routed;
    }
    snprintf(name, sizeof name, "%s.experts.gate_up_proj", p);
    if (!rc && st_set_find(&ld->set, name, NULL)) {  /* the fused layout of transformers 5.x */
        size_t es = dtype_size(ld->ops->act_dtype), per = (size_t)2 * c->F_moe * c->C;
        int64_t gs[3] = {c->n_routed, 2 * c->F_moe, c->C}, dsz[3] = {c->n_routed, c->C, c->F_moe};
        rc = ds_read_shape(ld, name, 3, gs, &y->experts_gu, NULL, 0);
        snprintf(name, sizeof name, "%s.experts.down_proj", p);
        if (!rc) rc = ds_read_shape(ld, name, 3, dsz, &y->experts_down, NULL, 0);
        for (int e = 0; !rc && e < c->n_routed; e++) {
            y->experts[e].gu = (char *)y->experts_gu + (size_t)e * per * es;
            y->experts[e].down = (char *)y->experts_down + (size_t)e * per / 2 * es;
            y->experts[e].F = c->F_moe;
        }
    }
    for (int e = 0; !rc && !y->experts_gu && e < c->n_routed; e++) {
        char ep[300];
        snprintf(ep, sizeof ep, "%s.experts.%d", p, e);
        rc = ds_read_mlp(ld, ep, c->C, c->F_moe, &y->experts[e]);
    }
    if (!rc && c->n_shared > 0) {
        snprintf(name, sizeof name, "%s.shared_experts", p);
        rc = ds_read_mlp(ld, name, c->C, c->F_moe * c->n_shared, &y->shared);
    }
    return rc;
#undef RD
}

/* any tensor not used: an extra, unless it belongs to a layer ≥ L (V3's MTP module) */
static int ds_check_extra(struct ds_loader *ld, int L) {
    for (size_t i = 0; i < ld->set.n; i++) {
        if (ld->used[i]) continue;
        const char *name = ld->sorted[i]->name;
        int l;
        if (sscanf(name, "model.layers.%d.", &l) == 1 && l >= L) continue;
        return sushi_error(SUSHI_EFORMAT, "%s: unexpected tensor %s (not part of this config)", ld->set.dir, name);
    }
    return 0;
}

int ds_rope_tables(struct ds_model *m) {
    const struct ds_config *c = &m->cfg;
    int half = c->rope / 2, S = m->max_seq;
    float *cs = malloc((size_t)S * half * sizeof(float)), *sn = malloc((size_t)S * half * sizeof(float));
    int rc = (!cs || !sn) ? sushi_error(SUSHI_ENOMEM, "deepseek: RoPE tables: out of memory") : 0;
    double lo = 0, hi = 0, attn = 1;
    const struct ds_yarn *y = &c->yarn;
    if (y->on) { /* HF _compute_yarn_parameters with truncate */
        double D = c->rope, base = c->rope_theta;
        lo = floor(D * log(y->original_max_pos / (y->beta_fast * 2 * M_PI)) / (2 * log(base)));
        hi = ceil(D * log(y->original_max_pos / (y->beta_slow * 2 * M_PI)) / (2 * log(base)));
        if (lo < 0) lo = 0;
        if (hi > D - 1) hi = D - 1;
        if (lo == hi) hi += 0.001;
        attn = y->attention_factor;
    }
    for (int i = 0; !rc && i < half; i++) {
        double inv = pow(c->rope_theta, -2.0 * i / c->rope);
        if (y->on) {
            double ramp = (i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            inv = inv / y->freq_factor * ramp + inv * (1 - ramp);
        }
        for (int t = 0; t < S; t++) {
            cs[(size_t)t * half + i] = (float)(cos(t * inv) * attn);
            sn[(size_t)t * half + i] = (float)(sin(t * inv) * attn);
        }
    }
    size_t bytes = (size_t)S * half * sizeof(float);
    if (!rc) {
        m->rope_cos = m->ops->alloc(bytes);
        m->rope_sin = m->ops->alloc(bytes);
        if (!m->rope_cos || !m->rope_sin) rc = sushi_error(SUSHI_ENOMEM, "deepseek: RoPE tables: out of backend memory");
    }
    if (!rc) rc = m->ops->to_device(m->rope_cos, cs, bytes);
    if (!rc) rc = m->ops->to_device(m->rope_sin, sn, bytes);
    free(cs);
    free(sn);
    if (rc) return rc;
    /* identity (rope, rope) used to broadcast k_pe into every head with one matmul */
    size_t r = (size_t)c->rope;
    float *eye = calloc(r * r, sizeof(float));
    m->eye = m->ops->alloc(r * r * dtype_size(m->ops->act_dtype));
    if (!eye || !m->eye) rc = sushi_error(SUSHI_ENOMEM, "deepseek: out of memory");
    for (size_t i = 0; !rc && i < r; i++) eye[i * r + i] = 1.0f;
    if (!rc) rc = m->ops->f32_to_act(m->eye, eye, r * r);
    free(eye);
    return rc;
}

int ds_load(struct ds_model *m, const char *dir, const struct ops *ops, int max_seq) {
    if (!m || !dir || !ops || max_seq < 1) return sushi_error(SUSHI_EINVAL, "ds_load: bad argument");
    memset(m, 0, sizeof *m);
    m->ops = ops;
    int rc = ds_config_load(&m->cfg, dir);
    if (rc) return rc;
    const struct ds_config *c = &m->cfg;
    m->max_seq = max_seq;
    struct ds_loader ld = {.ops = ops};
    if ((rc = st_set_open(&ld.set, dir, "model")) != 0) return rc;
    ld.used = calloc(ld.set.n ? ld.set.n : 1, 1);
    ld.sorted = malloc((ld.set.n ? ld.set.n : 1) * sizeof *ld.sorted);
    m->layers = calloc((size_t)c->L, sizeof *m->layers);
    if (!ld.used || !ld.sorted || !m->layers) rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", dir);
    if (!rc) {
        memcpy(ld.sorted, ld.set.tensors, ld.set.n * sizeof *ld.sorted);
        qsort(ld.sorted, ld.set.n, sizeof *ld.sorted, ds_ptr_cmp);
        rc = ds_read(&ld, "model.embed_tokens.weight", 2, c->vocab, c->C, &m->embed, NULL, 0);
    }
    if (!rc) rc = ds_read(&ld, "model.norm.weight", 1, c->C, 0, &m->final_norm, NULL, 0);
    if (!rc && c->tied) m->head = m->embed;
    else if (!rc) rc = ds_read(&ld, "lm_head.weight", 2, c->vocab, c->C, &m->head, NULL, 0);
    for (int l = 0; !rc && l < c->L; l++) rc = ds_read_layer(&ld, c, l, &m->layers[l]);
    if (!rc) rc = ds_check_extra(&ld, c->L);
    if (!rc) rc = ds_rope_tables(m);
    m->n_params = ld.n_params;
    free(ld.used);
    free(ld.sorted);
    st_set_close(&ld.set);
    if (rc) ds_free(m);
    return rc;
}

static void ds_free_mlp(const struct ops *ops, struct ds_mlp *p) {
    if (p->gu) ops->free(p->gu);
    if (p->down) ops->free(p->down);
}

void ds_free(struct ds_model *m) {
    if (!m || !m->ops) return;
    const struct ops *ops = m->ops;
    for (int l = 0; m->layers && l < m->cfg.L; l++) {
        struct ds_layer *y = &m->layers[l];
        void *bufs[] = {y->in_norm, y->post_norm, y->q_a, y->q_a_norm, y->q_b, y->kv_a, y->kv_a_norm,
                        y->kv_b, y->o, y->router};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) ops->free(bufs[i]);
        ds_free_mlp(ops, &y->dense);
        ds_free_mlp(ops, &y->shared);
        if (y->experts_gu) ops->free(y->experts_gu);
        if (y->experts_down) ops->free(y->experts_down);
        for (int e = 0; y->experts && !y->experts_gu && e < m->cfg.n_routed; e++) ds_free_mlp(ops, &y->experts[e]);
        free(y->experts);
        free(y->router_bias);
    }
    free(m->layers);
    if (m->head && m->head != m->embed) ops->free(m->head);
    if (m->embed) ops->free(m->embed);
    if (m->final_norm) ops->free(m->final_norm);
    if (m->rope_cos) ops->free(m->rope_cos);
    if (m->rope_sin) ops->free(m->rope_sin);
    if (m->eye) ops->free(m->eye);
    memset(m, 0, sizeof *m);
}
