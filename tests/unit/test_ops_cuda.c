// libs: cuda kernels core
/* The CUDA op table against the CPU reference: every op on fresh random inputs
 * (representable in the backend's act dtype, bf16 or f16, so both backends see the same
 * numbers) at several shapes including odd ones. Each output is compared by
 * ‖gpu − cpu‖/‖cpu‖ within a stated tolerance, must be free of NaN/Inf, and device
 * outputs sit between guard bytes that must stay untouched. Tolerances: outputs rounded
 * to the act dtype once (copies, elementwise, norms, rope, swiglu, matmul, row gather/
 * scatter, softmax) 1e-2 for bf16 (8-bit mantissa) and 2.5e-3 for f16 (11-bit); f32
 * outputs computed from the same inputs (rstd, lse, losses, AdamW state, sumsq, row dot
 * products) 1e-3 or tighter; attention gradients, which go through act out and dout,
 * 2e-2 for both. Attention runs each case through the fast kernels that apply and again
 * through the plain ones (SUSHI_ATTN_SIMPLE). AdamW's stochastic rounding: every weight
 * is one of the two act neighbours of its master, the same seed gives the same bits,
 * and the mean error over 1M weights is ≪ ½ ulp where round-to-nearest is biased.
 * SUSHI_CUDA_DTYPE=f16 runs everything on f16 (make test-gpu does both). Without a
 * usable GPU every test is skipped.
 * SUSHI_TEST_SEED fixes the otherwise time-based seed (printed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "kernels/ops.h"

#define GUARD 256
#define GUARD_BYTE 0xA5

static const struct ops *gpu, *cpu;
static uint64_t rng_state;

/* ---- random inputs ---- */

static uint32_t rnd_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)rnd_u32() / 4294967296.0f * 2.0f - 1.0f; }
static int rnd_int(int n) { return (int)(rnd_u32() % (uint32_t)n); }

/* ---- the act dtype on the host: bit patterns and tolerances ---- */

static int act_f16(void) { return gpu && gpu->act_dtype == DT_F16; }
static uint16_t act_bits(float x) { return act_f16() ? f32_to_f16(x) : f32_to_bf16(x); }
static float act_value(uint16_t h) { return act_f16() ? f16_to_f32(h) : bf16_to_f32(h); }
static float act_round(float x) { return act_value(act_bits(x)); }
/* tolerance of an output rounded to the act dtype, given the bf16 one: f16 rounds 8×
 * finer (2⁻¹¹ vs 2⁻⁸), a quarter of the bf16 tolerance leaves 2× of that margin */
static double act_tol(double bf16_tol) { return act_f16() ? bf16_tol / 4 : bf16_tol; }

/* n floats in [−scale, scale], rounded to the act dtype */
static float *rnd_act(size_t n, float scale) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = act_round(scale * rnd_unit());
    return x;
}

/* ---- guarded device buffers ---- */

struct gbuf {
    uint8_t *base;   /* device: GUARD | body | GUARD */
    void *p;         /* device body */
    size_t bytes;
};

static struct gbuf gbuf_new(size_t bytes) {
    struct gbuf g = {0};
    g.bytes = bytes;
    g.base = gpu->alloc(bytes + 2 * GUARD);
    assert_non_null(g.base);
    g.p = g.base + GUARD;
    uint8_t *h = malloc(bytes + 2 * GUARD);
    assert_non_null(h);
    memset(h, GUARD_BYTE, GUARD);
    memset(h + GUARD, 0xFF, bytes);            /* poison: bf16/f32 NaN */
    memset(h + GUARD + bytes, GUARD_BYTE, GUARD);
    assert_int_equal(gpu->to_device(g.base, h, bytes + 2 * GUARD), 0);
    free(h);
    return g;
}

static void gbuf_free(struct gbuf *g) {
    uint8_t *h = malloc(g->bytes + 2 * GUARD);
    assert_non_null(h);
    assert_int_equal(gpu->to_host(h, g->base, g->bytes + 2 * GUARD), 0);
    for (size_t i = 0; i < GUARD; i++) {
        if (h[i] != GUARD_BYTE || h[GUARD + g->bytes + i] != GUARD_BYTE)
            fail_msg("guard byte %zu %s the buffer was overwritten", i,
                     h[i] != GUARD_BYTE ? "before" : "after");
    }
    free(h);
    gpu->free(g->base);
    g->base = NULL;
}

static struct gbuf dev_act(const float *x, size_t n) {
    struct gbuf g = gbuf_new(n * 2);
    assert_int_equal(gpu->f32_to_act(g.p, x, n), 0);
    return g;
}

static struct gbuf dev_raw(const void *x, size_t bytes) {
    struct gbuf g = gbuf_new(bytes);
    assert_int_equal(gpu->to_device(g.p, x, bytes), 0);
    return g;
}

static float *host_act(const struct gbuf *g, size_t n) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    assert_int_equal(gpu->sync(), 0);
    assert_int_equal(gpu->act_to_f32(x, g->p, n), 0);
    return x;
}

static float *host_f32(const struct gbuf *g, size_t n) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    assert_int_equal(gpu->sync(), 0);
    assert_int_equal(gpu->to_host(x, g->p, n * sizeof(float)), 0);
    return x;
}

/* ‖got − ref‖/‖ref‖ ≤ tol and no NaN/Inf in got; frees got */
static void expect_close(const char *what, float *got, const float *ref, size_t n, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) fail_msg("%s: element %zu is %g (reference %g)", what, i, got[i], ref[i]);
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    print_message("%-44s n=%-8zu rel err %.2e (tol %.0e)\n", what, n, err, tol);
    if (!(err <= tol)) fail_msg("%s: relative error %.3e above %.0e", what, err, tol);
    free(got);
}

/* max |got − ref| ≤ tol and no NaN/Inf, for outputs that are zero up to rounding; frees got */
static void expect_small(const char *what, float *got, const float *ref, size_t n, double tol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) fail_msg("%s: element %zu is %g", what, i, got[i]);
        double d = fabs((double)got[i] - ref[i]);
        if (d > worst) worst = d;
    }
    print_message("%-44s n=%-8zu max abs err %.2e (tol %.0e)\n", what, n, worst, tol);
    if (!(worst <= tol)) fail_msg("%s: max abs error %.3e above %.0e", what, worst, tol);
    free(got);
}

static int setup(void **st) {
    (void)st;
    const char *seed = getenv("SUSHI_TEST_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL) * 2654435761u;
    if (rng_state == 0) rng_state = 1;
    print_message("seed %llu (SUSHI_TEST_SEED)\n", (unsigned long long)rng_state);
    cpu = ops_cpu();
    gpu = ops_cuda();
    if (!gpu) print_message("no GPU: %s\n", sushi_last_error());
    else print_message("act dtype %s\n", act_f16() ? "f16" : "bf16");
    return 0;
}

#define NEED_GPU()                  \
    do {                            \
        (void)st;                   \
        if (!gpu || !cpu) skip();   \
    } while (0)

/* ---- memory, conversions, elementwise ---- */

static void test_memory_elementwise(void **st) {
    NEED_GPU();
    size_t sizes[] = {1, 31, 1000, 65537};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        float *a = rnd_act(n, 2.0f), *b = rnd_act(n, 1.0f), *ref = malloc(n * sizeof(float));
        struct gbuf ga = dev_act(a, n), gb = dev_act(b, n), go = gbuf_new(n * 2);
        char name[64];
        /* round trip and copy: exact */
        assert_int_equal(gpu->copy(go.p, ga.p, n * 2), 0);
        snprintf(name, sizeof name, "copy/round trip n=%zu", n);
        expect_close(name, host_act(&go, n), a, n, 0.0);
        /* f32 ↔ act through device f32 buffers too */
        struct gbuf gf = dev_raw(a, n * 4);
        assert_int_equal(gpu->f32_to_act(go.p, gf.p, n), 0);
        assert_int_equal(gpu->act_to_f32(gf.p, go.p, n), 0);
        expect_close("f32_to_act/act_to_f32 device", host_f32(&gf, n), a, n, 0.0);
        gbuf_free(&gf);

        memcpy(ref, a, n * sizeof(float));
        assert_int_equal(cpu->add(ref, a, b, n), 0);
        assert_int_equal(gpu->add(go.p, ga.p, gb.p, n), 0);
        expect_close("add", host_act(&go, n), ref, n, act_tol(1e-2));

        /* the device holds add's result rounded to the act dtype: start from that */
        for (size_t i = 0; i < n; i++) ref[i] = act_round(ref[i]);
        assert_int_equal(cpu->axpy(ref, -0.75f, b, n), 0);
        assert_int_equal(gpu->axpy(go.p, -0.75f, gb.p, n), 0);
        expect_close("axpy", host_act(&go, n), ref, n, act_tol(1e-2));

        assert_int_equal(cpu->scale(ref, 3.5f, n), 0);
        assert_int_equal(gpu->scale(go.p, 3.5f, n), 0);
        expect_close("scale", host_act(&go, n), ref, n, act_tol(1e-2));

        for (size_t i = 0; i < n; i++) ref[i] = 0.3125f;
        assert_int_equal(gpu->fill(go.p, 0.3125f, n), 0);
        expect_close("fill", host_act(&go, n), ref, n, 0.0);

        float got = 0, want = 0;
        assert_int_equal(cpu->sumsq(&want, a, n), 0);
        assert_int_equal(gpu->sumsq(&got, ga.p, n), 0);
        expect_close("sumsq", memcpy(malloc(4), &got, 4), &want, 1, 1e-4);

        gbuf_free(&ga);
        gbuf_free(&gb);
        gbuf_free(&go);
        free(a);
        free(b);
        free(ref);
    }
}

/* ---- matmul ---- */

static void check_matmul(int m, int n, int k, int ta, int tb, int pad, float alpha, float beta) {
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = rnd_act(na, 1.0f), *b = rnd_act(nb, 1.0f), *c = rnd_act(nc, 1.0f);
    struct gbuf ga = dev_act(a, na), gb = dev_act(b, nb), gc = dev_act(c, nc);
    assert_int_equal(cpu->matmul(c, a, b, m, n, k, ta, tb, alpha, beta, pad ? lda : 0, pad ? ldb : 0,
                                 pad ? ldc : 0), 0);
    assert_int_equal(gpu->matmul(gc.p, ga.p, gb.p, m, n, k, ta, tb, alpha, beta, pad ? lda : 0,
                                 pad ? ldb : 0, pad ? ldc : 0), 0);
    char name[96];
    snprintf(name, sizeof name, "matmul %dx%dx%d t%d%d pad%d b%.1f", m, n, k, ta, tb, pad, beta);
    expect_close(name, host_act(&gc, nc), c, nc, act_tol(1e-2));  /* padding columns too: untouched */
    gbuf_free(&ga);
    gbuf_free(&gb);
    gbuf_free(&gc);
    free(a);
    free(b);
    free(c);
}

static void test_matmul(void **st) {
    NEED_GPU();
    int shapes[][3] = {{1, 1, 1}, {17, 33, 65}, {128, 96, 64}, {257, 129, 191}};
    for (int s = 0; s < 4; s++)
        for (int t = 0; t < 4; t++)
            check_matmul(shapes[s][0], shapes[s][1], shapes[s][2], t & 1, t >> 1, (s + t) % 2 ? 8 : 0,
                         t == 3 ? 0.5f : 1.0f, s % 2 ? 0.25f : 0.0f);
    /* errors, not crashes */
    assert_true(gpu->matmul(NULL, NULL, NULL, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0) < 0);
}

/* ---- embedding ---- */

static void test_embedding(void **st) {
    NEED_GPU();
    int shapes[][3] = {{97, 67, 131}, {1000, 256, 64}};   /* V, C, N */
    for (int s = 0; s < 2; s++) {
        int V = shapes[s][0], C = shapes[s][1], N = shapes[s][2];
        int32_t *ids = malloc(N * sizeof(int32_t));
        ids[0] = rnd_int(V);
        for (int i = 1; i < N; i++) ids[i] = i % 5 == 0 ? ids[0] : rnd_int(V);  /* repeats */
        float *table = rnd_act((size_t)V * C, 1.0f), *out = malloc((size_t)N * C * 4);
        float *dout = rnd_act((size_t)N * C, 1.0f), *dtab = rnd_act((size_t)V * C, 1.0f);
        struct gbuf gi = dev_raw(ids, N * 4), gt = dev_act(table, (size_t)V * C);
        struct gbuf go = gbuf_new((size_t)N * C * 2), gd = dev_act(dout, (size_t)N * C);
        struct gbuf gdt = dev_act(dtab, (size_t)V * C);
        assert_int_equal(cpu->embedding_forward(out, ids, table, N, C), 0);
        assert_int_equal(gpu->embedding_forward(go.p, gi.p, gt.p, N, C), 0);
        expect_close("embedding_forward", host_act(&go, (size_t)N * C), out, (size_t)N * C, 0.0);
        assert_int_equal(cpu->embedding_backward(dtab, ids, dout, N, C), 0);
        assert_int_equal(gpu->embedding_backward(gdt.p, gi.p, gd.p, N, C), 0);
        expect_close("embedding_backward (+=)", host_act(&gdt, (size_t)V * C), dtab, (size_t)V * C,
                     act_tol(1e-2));
        /* a negative id is skipped and reported by sync() */
        ids[N / 2] = -3;
        assert_int_equal(gpu->to_device(gi.p, ids, N * 4), 0);
        assert_int_equal(gpu->embedding_forward(go.p, gi.p, gt.p, N, C), 0);
        assert_true(gpu->sync() < 0);
        assert_non_null(strstr(sushi_last_error(), "embedding id"));
        assert_int_equal(gpu->sync(), 0);
        gbuf_free(&gi);
        gbuf_free(&gt);
        gbuf_free(&go);
        gbuf_free(&gd);
        gbuf_free(&gdt);
        free(ids);
        free(table);
        free(out);
        free(dout);
        free(dtab);
    }
}

/* ---- rmsnorm ---- */

static void test_rmsnorm(void **st) {
    NEED_GPU();
    int shapes[][2] = {{37, 259}, {256, 768}, {1, 64}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], C = shapes[s][1];
        size_t nx = (size_t)N * C;
        float *x = rnd_act(nx, 2.0f), *w = rnd_act(C, 1.0f), *dout = rnd_act(nx, 1.0f);
        float *dw = rnd_act(C, 1.0f), *out = malloc(nx * 4), *rstd = malloc(N * 4), *dx = malloc(nx * 4);
        struct gbuf gx = dev_act(x, nx), gw = dev_act(w, C), gd = dev_act(dout, nx), gdw = dev_act(dw, C);
        struct gbuf go = gbuf_new(nx * 2), gr = gbuf_new(N * 4), gdx = gbuf_new(nx * 2);
        assert_int_equal(cpu->rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f), 0);
        assert_int_equal(gpu->rmsnorm_forward(go.p, gr.p, gx.p, gw.p, N, C, 1e-5f), 0);
        expect_close("rmsnorm_forward out", host_act(&go, nx), out, nx, act_tol(1e-2));
        expect_close("rmsnorm_forward rstd", host_f32(&gr, N), rstd, N, 1e-3);
        assert_int_equal(cpu->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C), 0);
        assert_int_equal(gpu->rmsnorm_backward(gdx.p, gdw.p, gd.p, gx.p, gw.p, gr.p, N, C), 0);
        expect_close("rmsnorm_backward dx", host_act(&gdx, nx), dx, nx, act_tol(1e-2));
        expect_close("rmsnorm_backward dw (+=)", host_act(&gdw, C), dw, C, act_tol(1e-2));
        gbuf_free(&gx);
        gbuf_free(&gw);
        gbuf_free(&gd);
        gbuf_free(&gdw);
        gbuf_free(&go);
        gbuf_free(&gr);
        gbuf_free(&gdx);
        free(x);
        free(w);
        free(dout);
        free(dw);
        free(out);
        free(rstd);
        free(dx);
    }
}

/* ---- rope ---- */

static void test_rope(void **st) {
    NEED_GPU();
    for (int inter = 0; inter < 2; inter++) {
        int N = 45, nheads = 3, head_stride = 40, row_stride = 3 * 40 + 7, offset = 8, rot = 32, maxp = 64;
        size_t nx = (size_t)N * row_stride;
        float *x = rnd_act(nx, 1.0f), *cs = malloc(maxp * rot / 2 * 4), *sn = malloc(maxp * rot / 2 * 4);
        for (int i = 0; i < maxp * rot / 2; i++) {
            float th = 3.14159f * rnd_unit();
            cs[i] = cosf(th);
            sn[i] = sinf(th);
        }
        int32_t *pos = malloc(N * 4);
        for (int i = 0; i < N; i++) pos[i] = rnd_int(maxp);
        struct gbuf gx = dev_act(x, nx), gp = dev_raw(pos, N * 4);
        struct gbuf gc = dev_raw(cs, maxp * rot / 2 * 4), gs = dev_raw(sn, maxp * rot / 2 * 4);
        struct rope_shape hs = {N, nheads, row_stride, head_stride, offset, rot, inter, maxp, pos, cs, sn};
        struct rope_shape ds = {N, nheads, row_stride, head_stride, offset, rot, inter, maxp, gp.p, gc.p, gs.p};
        assert_int_equal(cpu->rope_forward(x, &hs), 0);
        assert_int_equal(gpu->rope_forward(gx.p, &ds), 0);
        expect_close(inter ? "rope_forward interleaved" : "rope_forward half-split", host_act(&gx, nx), x, nx,
                     act_tol(1e-2));
        assert_int_equal(cpu->rope_backward(x, &hs), 0);
        assert_int_equal(gpu->rope_backward(gx.p, &ds), 0);
        expect_close(inter ? "rope_backward interleaved" : "rope_backward half-split", host_act(&gx, nx), x, nx,
                     act_tol(1e-2));
        gbuf_free(&gx);
        gbuf_free(&gp);
        gbuf_free(&gc);
        gbuf_free(&gs);
        free(x);
        free(cs);
        free(sn);
        free(pos);
    }
}

/* ---- swiglu ---- */

static void test_swiglu(void **st) {
    NEED_GPU();
    int shapes[][2] = {{33, 97}, {128, 1408}};
    for (int s = 0; s < 2; s++) {
        int N = shapes[s][0], F = shapes[s][1];
        size_t nh = (size_t)N * 2 * F, no = (size_t)N * F;
        float *h = rnd_act(nh, 3.0f), *dout = rnd_act(no, 1.0f), *out = malloc(no * 4), *dh = malloc(nh * 4);
        struct gbuf gh = dev_act(h, nh), gd = dev_act(dout, no), go = gbuf_new(no * 2), gdh = gbuf_new(nh * 2);
        assert_int_equal(cpu->swiglu_forward(out, h, N, F), 0);
        assert_int_equal(gpu->swiglu_forward(go.p, gh.p, N, F), 0);
        expect_close("swiglu_forward", host_act(&go, no), out, no, act_tol(1e-2));
        assert_int_equal(cpu->swiglu_backward(dh, dout, h, N, F), 0);
        assert_int_equal(gpu->swiglu_backward(gdh.p, gd.p, gh.p, N, F), 0);
        expect_close("swiglu_backward", host_act(&gdh, nh), dh, nh, act_tol(1e-2));
        gbuf_free(&gh);
        gbuf_free(&gd);
        gbuf_free(&go);
        gbuf_free(&gdh);
        free(h);
        free(dout);
        free(out);
        free(dh);
    }
}

/* ---- attention ---- */

struct attn_case { int B, T, H, G, dqk, dv, pad, window, docs; };

static void check_attention(const struct attn_case *c) {
    struct attn_shape s = {c->B, c->T, c->H, c->G, c->dqk, c->dv,
                           c->H * c->dqk + c->pad, c->G * c->dqk + c->pad, c->G * c->dv + c->pad,
                           c->H * c->dv + c->pad, 1.0f / sqrtf((float)c->dqk), c->window, NULL};
    size_t rows = (size_t)c->B * c->T, nq = rows * s.q_stride, nk = rows * s.k_stride;
    size_t nv = rows * s.v_stride, no = rows * s.o_stride, nl = (size_t)c->B * c->H * c->T;
    float *q = rnd_act(nq, 2.0f), *k = rnd_act(nk, 2.0f), *v = rnd_act(nv, 1.0f), *dout = rnd_act(no, 1.0f);
    /* outputs start equal on both sides so padding columns compare too */
    float *out = rnd_act(no, 1.0f), *dq = rnd_act(nq, 1.0f), *dk = rnd_act(nk, 1.0f), *dv = rnd_act(nv, 1.0f);
    float *lse = malloc(nl * 4);
    int32_t *docs = malloc(rows * 4);
    for (int b = 0; b < c->B; b++) {
        int d = 0;
        for (int t = 0; t < c->T; t++) {
            if (t > 0 && rnd_int(23) == 0) d++;
            docs[b * c->T + t] = d;
        }
    }
    struct gbuf gq = dev_act(q, nq), gk = dev_act(k, nk), gv = dev_act(v, nv), gdo = dev_act(dout, no);
    struct gbuf go = dev_act(out, no), gdq = dev_act(dq, nq), gdk = dev_act(dk, nk), gdv = dev_act(dv, nv);
    struct gbuf gl = gbuf_new(nl * 4), gdoc = dev_raw(docs, rows * 4);
    struct attn_shape hs = s, ds = s;
    if (c->docs) {
        hs.doc_ids = docs;
        ds.doc_ids = gdoc.p;
    }
    char name[128];
    snprintf(name, sizeof name, "B%d T%d H%d G%d d%d/%d pad%d w%d doc%d", c->B, c->T, c->H, c->G, c->dqk,
             c->dv, c->pad, c->window, c->docs);
    print_message("attention %s\n", name);
    assert_int_equal(cpu->attention_forward(out, lse, q, k, v, &hs), 0);
    assert_int_equal(gpu->attention_forward(go.p, gl.p, gq.p, gk.p, gv.p, &ds), 0);
    expect_close("  attention_forward out", host_act(&go, no), out, no, 1e-2);
    expect_close("  attention_forward lse", host_f32(&gl, nl), lse, nl, 1e-3);
    assert_int_equal(cpu->attention_backward(dq, dk, dv, dout, out, lse, q, k, v, &hs), 0);
    assert_int_equal(gpu->attention_backward(gdq.p, gdk.p, gdv.p, gdo.p, go.p, gl.p, gq.p, gk.p, gv.p, &ds), 0);
    if (c->T == 1) {
        /* one key: p = 1 and dp = delta, so dq = dk = 0 up to rounding (the reference is
         * rounding noise too, so only the size is checked) */
        expect_small("  attention_backward dq (T=1, zero)", host_act(&gdq, nq), dq, nq, 1e-3);
        expect_small("  attention_backward dk (T=1, zero)", host_act(&gdk, nk), dk, nk, 1e-3);
    } else {
        expect_close("  attention_backward dq", host_act(&gdq, nq), dq, nq, 2e-2);
        expect_close("  attention_backward dk", host_act(&gdk, nk), dk, nk, 2e-2);
    }
    expect_close("  attention_backward dv", host_act(&gdv, nv), dv, nv, 2e-2);
    struct gbuf *all[] = {&gq, &gk, &gv, &gdo, &go, &gdq, &gdk, &gdv, &gl, &gdoc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gbuf_free(all[i]);
    float *host[] = {q, k, v, dout, out, dq, dk, dv, lse};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
    free(docs);
}

static void test_attention(void **st) {
    NEED_GPU();
    struct attn_case cases[] = {
        {2, 67, 4, 2, 40, 24, 0, 0, 0},
        {1, 130, 3, 1, 64, 64, 0, 17, 1},
        {2, 33, 2, 2, 96, 128, 5, 0, 1},
        {1, 200, 4, 4, 64, 64, 3, 50, 0},
        {1, 40, 2, 1, 256, 256, 0, 0, 0},
        {2, 1, 6, 3, 16, 8, 0, 0, 0},
        {2, 150, 4, 2, 64, 64, 0, 0, 0},      /* mma.sync paths: GQA, partial last tile */
        {1, 260, 2, 1, 128, 128, 8, 70, 0},   /* head dim 128 forward, window */
        {1, 129, 4, 2, 64, 64, 0, 0, 1},
        {2, 300, 6, 2, 64, 64, 8, 0, 0},      /* 5 key blocks, 3 heads per group, padded rows */
        {1, 520, 2, 1, 64, 64, 0, 150, 1},    /* window and documents across 9 tiles */
    };
    /* tensor-core kernels where head dims allow it, the fused backward (SUSHI_FA_BWD=fused:
     * bf16, head dim 64, else the same fall-back), then the plain kernels everywhere */
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) setenv("SUSHI_FA_BWD", "fused", 1);
        if (pass == 2) {
            unsetenv("SUSHI_FA_BWD");
            setenv("SUSHI_ATTN_SIMPLE", "1", 1);
        }
        print_message("attention pass: %s\n", pass == 0 ? "default" : pass == 1 ? "SUSHI_FA_BWD=fused" : "plain");
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_attention(&cases[i]);
    }
    unsetenv("SUSHI_ATTN_SIMPLE");
    struct attn_shape bad = {1, 8, 3, 2, 64, 64, 192, 128, 128, 192, 0.125f, 0, NULL};
    assert_int_equal(gpu->attention_forward((void *)1, (float *)1, (void *)1, (void *)1, (void *)1, &bad),
                     SUSHI_EINVAL);
}

/* ---- loss ---- */

static void check_loss(int N, int V, int Vp, int K, enum kd_mode mode, float alpha, int alias) {
    size_t nl = (size_t)N * Vp;
    float *logits = rnd_act(nl, 4.0f), *dl = malloc(nl * 4);
    int32_t *tg = malloc(N * 4), *ids = malloc((size_t)(K ? K : 1) * N * 4);
    float *lp = malloc((size_t)(K ? K : 1) * N * 4), *tail = malloc(N * 4);
    const float T = 2.0f;
    for (int n = 0; n < N; n++) {
        tg[n] = n % 7 == 3 ? -1 : rnd_int(V);
        /* teacher: a softmax over random logits at temperature T, top-K of distinct ids */
        double *p = malloc(V * sizeof(double)), z = 0;
        for (int v = 0; v < V; v++) z += (p[v] = exp(4.0 * rnd_unit() / T));
        double inK = 0;
        for (int b = 0; b < K; b++) {
            int id, dup;
            do {
                id = rnd_int(V);
                dup = 0;
                for (int e = 0; e < b; e++) dup |= ids[n * K + e] == id;
            } while (dup);
            ids[n * K + b] = id;
            lp[n * K + b] = (float)log(p[id] / z);
            inK += p[id];
        }
        tail[n] = (float)log((z - inK) / z);
        free(p);
    }
    struct loss_args a = {N, V, Vp, 0.1f, alpha, mode, T, 0.4f, K, ids, lp, tail, 0.5f};
    float *loss = malloc(N * 4), *ce = malloc(N * 4), *kd = malloc(N * 4);
    assert_int_equal(cpu->loss_forward_backward(loss, ce, kd, dl, logits, tg, &a), 0);
    struct gbuf gx = dev_act(logits, nl), gd = alias ? gx : gbuf_new(nl * 2), gt = dev_raw(tg, N * 4);
    struct gbuf gi = dev_raw(ids, (size_t)(K ? K : 1) * N * 4), gp = dev_raw(lp, (size_t)(K ? K : 1) * N * 4);
    struct gbuf gtl = dev_raw(tail, N * 4), gloss = gbuf_new(N * 4), gce = gbuf_new(N * 4), gkd = gbuf_new(N * 4);
    struct loss_args da = a;
    da.topk_ids = gi.p;
    da.topk_logprobs = gp.p;
    da.tail_logprob = gtl.p;
    assert_int_equal(gpu->loss_forward_backward(gloss.p, gce.p, gkd.p, gd.p, gx.p, gt.p, &da), 0);
    char name[96];
    snprintf(name, sizeof name, "loss N%d V%d/%d K%d mode%d a%.1f alias%d", N, V, Vp, K, (int)mode, alpha, alias);
    print_message("%s\n", name);
    expect_close("  loss", host_f32(&gloss, N), loss, N, 1e-3);
    expect_close("  ce", host_f32(&gce, N), ce, N, 1e-3);
    if (K) expect_close("  kd", host_f32(&gkd, N), kd, N, 1e-3);
    /* f16: probabilities below 6e-5 are subnormal (fewer mantissa bits), so at V 50304 the
     * f16 dlogits carry more relative error than bf16's */
    expect_close("  dlogits", host_act(&gd, nl), dl, nl, act_f16() ? 2e-2 : 1e-2);
    struct gbuf *all[] = {&gx, &gt, &gi, &gp, &gtl, &gloss, &gce, &gkd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gbuf_free(all[i]);
    if (!alias) gbuf_free(&gd);
    float *host[] = {logits, dl, lp, tail, loss, ce, kd};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
    free(tg);
    free(ids);
}

static void test_loss(void **st) {
    NEED_GPU();
    check_loss(13, 1000, 1024, 0, KD_FORWARD, 0.0f, 0);
    check_loss(13, 1000, 1024, 8, KD_FORWARD, 0.5f, 0);
    check_loss(9, 777, 800, 16, KD_REVERSE, 0.7f, 1);
    check_loss(9, 777, 777, 5, KD_JSD, 0.3f, 0);
    check_loss(4, 50304, 50304, 32, KD_FORWARD, 1.0f, 1);
}

/* ---- adamw ---- */

static void test_adamw(void **st) {
    NEED_GPU();
    size_t n = 1003;
    struct adamw_args a = {n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.5f, 0, 0};
    float *w = rnd_act(n, 1.0f), *g = rnd_act(n, 1.0f), *m = rnd_act(n, 0.1f), *v = rnd_act(n, 0.1f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    struct gbuf gw = dev_raw(w, n * 4), gg = dev_act(g, n), gm = dev_raw(m, n * 4), gv = dev_raw(v, n * 4);
    struct gbuf gpar = gbuf_new(n * 2);
    for (int step = 3; step <= 5; step++) {
        a.step = step;
        assert_int_equal(cpu->adamw(w, NULL, g, m, v, &a), 0);
        assert_int_equal(gpu->adamw(gw.p, gpar.p, gg.p, gm.p, gv.p, &a), 0);
    }
    expect_close("adamw master", host_f32(&gw, n), w, n, 1e-5);
    expect_close("adamw m", host_f32(&gm, n), m, n, 1e-5);
    expect_close("adamw v", host_f32(&gv, n), v, n, 1e-5);
    expect_close("adamw act param", host_act(&gpar, n), w, n, act_tol(1e-2));
    a.step = 0;
    assert_int_equal(gpu->adamw(gw.p, gpar.p, gg.p, gm.p, gv.p, &a), SUSHI_EINVAL);
    struct gbuf *all[] = {&gw, &gg, &gm, &gv, &gpar};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gbuf_free(all[i]);
    free(w);
    free(g);
    free(m);
    free(v);
}

/* ---- row gather / scatter / dot (mixture-of-experts routing) ---- */

static void test_rows(void **st) {
    NEED_GPU();
    int shapes[][3] = {{50, 20, 67}, {300, 256, 512}, {7, 1, 1}};   /* M, n, C */
    for (int s = 0; s < 3; s++) {
        int M = shapes[s][0], n = shapes[s][1], C = shapes[s][2];
        size_t nx = (size_t)M * C, nr = (size_t)n * C;
        int32_t *perm = malloc(M * 4);   /* distinct rows: a random permutation's prefix */
        for (int i = 0; i < M; i++) perm[i] = i;
        for (int i = M - 1; i > 0; i--) {
            int j = rnd_int(i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        float *x = rnd_act(nx, 2.0f), *r = rnd_act(nr, 1.0f), *y = rnd_act(nx, 1.0f), *w = rnd_act(n, 1.5f);
        float *out = malloc(nr * 4), *dot = malloc(n * 4);
        struct gbuf gx = dev_act(x, nx), gr = dev_act(r, nr), gy = dev_act(y, nx), gw = dev_raw(w, n * 4);
        struct gbuf gp = dev_raw(perm, n * 4), go = gbuf_new(nr * 2), gd = gbuf_new(n * 4);
        assert_int_equal(cpu->gather_rows(out, x, perm, n, M, C), 0);
        assert_int_equal(gpu->gather_rows(go.p, gx.p, gp.p, n, M, C), 0);
        expect_close("gather_rows (exact)", host_act(&go, nr), out, nr, 0.0);
        for (int pass = 0; pass < 2; pass++) {   /* weighted, then w = NULL (= 1) */
            const float *wc = pass ? NULL : w, *wg = pass ? NULL : gw.p;
            assert_int_equal(cpu->scatter_add_rows(y, r, perm, wc, n, M, C), 0);
            assert_int_equal(gpu->scatter_add_rows(gy.p, gr.p, gp.p, wg, n, M, C), 0);
            expect_close(pass ? "scatter_add_rows w=NULL (+=)" : "scatter_add_rows weighted (+=)", host_act(&gy, nx),
                         y, nx, act_tol(1e-2));
        }
        assert_int_equal(cpu->rows_dot(dot, x, perm, r, n, M, C), 0);
        assert_int_equal(gpu->rows_dot(gd.p, gx.p, gp.p, gr.p, n, M, C), 0);
        expect_close("rows_dot (f32)", host_f32(&gd, n), dot, n, 1e-4);
        /* a row outside [0, M) is skipped and reported by sync() */
        perm[0] = M;
        assert_int_equal(gpu->to_device(gp.p, perm, 4), 0);
        assert_int_equal(gpu->gather_rows(go.p, gx.p, gp.p, n, M, C), 0);
        assert_true(gpu->sync() < 0);
        assert_non_null(strstr(sushi_last_error(), "row index"));
        assert_int_equal(gpu->sync(), 0);
        struct gbuf *all[] = {&gx, &gr, &gy, &gw, &gp, &go, &gd};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) gbuf_free(all[i]);
        float *host[] = {x, r, y, w, out, dot};
        for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
        free(perm);
    }
}

/* ---- grouped causal softmax ---- */

static void test_softmax_causal(void **st) {
    NEED_GPU();
    int shapes[][3] = {{12, 40, 3}, {64, 64, 1}, {8, 300, 8}, {5, 5, 5}};   /* R, S, group */
    for (int c = 0; c < 4; c++) {
        int R = shapes[c][0], S = shapes[c][1], group = shapes[c][2];
        size_t ns = (size_t)R * S;
        float *sc = rnd_act(ns, 8.0f), *p = malloc(ns * 4);
        assert_int_equal(cpu->softmax_causal(p, sc, R, S, group, 0.7f), 0);
        for (int alias = 0; alias < 2; alias++) {
            struct gbuf gs = dev_act(sc, ns), gp = alias ? gs : gbuf_new(ns * 2);
            assert_int_equal(gpu->softmax_causal(gp.p, gs.p, R, S, group, 0.7f), 0);
            float *got = host_act(&gp, ns);
            for (int r = 0; r < R; r++)   /* hidden columns exactly 0 */
                for (int col = S - R / group + r / group + 1; col < S; col++)
                    if (got[(size_t)r * S + col] != 0.0f)
                        fail_msg("softmax_causal R%d S%d: hidden (%d, %d) is %g", R, S, r, col,
                                 got[(size_t)r * S + col]);
            char name[80];
            snprintf(name, sizeof name, "softmax_causal R%d S%d group%d alias%d", R, S, group, alias);
            expect_close(name, got, p, ns, act_tol(1e-2));
            gbuf_free(&gs);
            if (!alias) gbuf_free(&gp);
        }
        free(sc);
        free(p);
    }
    assert_int_equal(gpu->softmax_causal((void *)1, (void *)1, 6, 4, 4, 1.0f), SUSHI_EINVAL);
}

/* ---- AdamW: stochastic rounding of the act weights ---- */

/* Masters a ± f·ulp between two act neighbours a (toward zero) and a ± ulp, over
 * magnitudes 2⁻²⁰..2⁷ (f16 subnormals included), f uniform in [0, 1) on odd and in
 * [0, ½) on even elements, where rounding to nearest always goes to a (biased by −¼ ulp
 * on those). lr = 0 leaves the masters as they are, so only the rounding is seen. */
static void test_adamw_stochastic(void **st) {
    NEED_GPU();
    size_t n = (size_t)1 << 20;
    float *master = malloc(n * 4), *frac = malloc(n * 4);
    uint16_t *lo = malloc(n * 2), *got = malloc(n * 2), *again = malloc(n * 2);
    assert_true(master && frac && lo && got && again);
    for (size_t i = 0; i < n; i++) {
        float a = act_round((rnd_unit() < 0 ? -1.0f : 1.0f) * ldexpf(1.0f + 0.5f * (rnd_unit() + 1.0f),
                                                                   -20 + rnd_int(27)));
        lo[i] = act_bits(a);
        float ulp = fabsf(act_value((uint16_t)(lo[i] + 1)) - a);
        /* 12-bit fractions keep a + f·ulp exact in f32 */
        float f = (float)(rnd_u32() >> 20) / 4096.0f * (i % 2 ? 1.0f : 0.5f);
        master[i] = a + copysignf(f * ulp, a);
        frac[i] = (fabsf(master[i]) - fabsf(a)) / ulp;   /* f as stored */
        assert_true(frac[i] >= 0.0f && frac[i] < 1.0f);
    }
    struct gbuf gw = dev_raw(master, n * 4), gg = gbuf_new(n * 2), gm = gbuf_new(n * 4), gv = gbuf_new(n * 4);
    struct gbuf gpar = gbuf_new(n * 2);
    assert_int_equal(gpu->fill(gg.p, 0.0f, n), 0);
    float *zero = calloc(n, 4);
    assert_int_equal(gpu->to_device(gm.p, zero, n * 4), 0);
    assert_int_equal(gpu->to_device(gv.p, zero, n * 4), 0);
    struct adamw_args a = {n, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 7, 1.0f, 1, 12345u};
    double sum_sr = 0, sum_rn = 0, ups = 0, fsum = 0, worst_rn = 0;
    for (int pass = 0; pass < 4; pass++) {   /* SR, SR again, SR other seed, nearest */
        a.seed = pass == 2 ? 777u : 12345u;
        a.stochastic_rounding = pass < 3;
        assert_int_equal(gpu->adamw(gw.p, gpar.p, gg.p, gm.p, gv.p, &a), 0);
        assert_int_equal(gpu->sync(), 0);
        uint16_t *dst = pass == 0 ? got : again;
        assert_int_equal(gpu->to_host(dst, gpar.p, n * 2), 0);
        if (pass == 1) assert_memory_equal(got, again, n * 2);   /* same seed, same bits */
        if (pass == 2) {
            size_t differ = 0;
            for (size_t i = 0; i < n; i++) differ += got[i] != again[i];
            print_message("stochastic rounding: another seed changes %.3f of the weights\n", (double)differ / n);
            assert_true(differ > n / 10);
        }
        if (pass == 1 || pass == 2) continue;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dst[i];
            float a0 = act_value(lo[i]), ulp = fabsf(act_value((uint16_t)(lo[i] + 1)) - a0);
            double e = ((double)fabsf(act_value(h)) - fabsf(master[i])) / ulp;   /* toward +|w| */
            if (pass == 0) {
                if (h != lo[i] && h != (uint16_t)(lo[i] + 1))
                    fail_msg("stochastic rounding: %g became %g, not one of its neighbours %g, %g", master[i],
                             act_value(h), a0, act_value((uint16_t)(lo[i] + 1)));
                sum_sr += e;
                ups += h != lo[i];
                fsum += frac[i];
            } else {
                if (h != act_bits(master[i]))
                    fail_msg("round to nearest: %g became %g, not %g", master[i], act_value(h),
                             act_round(master[i]));
                sum_rn += e;
                worst_rn = fabs(e) > worst_rn ? fabs(e) : worst_rn;
            }
        }
    }
    print_message("mean error in ulps: stochastic %+.5f, nearest %+.5f (max |e| %.4f); rounded up %.4f "
                  "of the weights for a mean fraction %.4f\n",
                  sum_sr / n, sum_rn / n, worst_rn, ups / n, fsum / n);
    assert_true(fabs(sum_sr / n) < 0.01);          /* σ of the mean ≤ 0.5/√n = 5e-4 */
    assert_true(fabs(ups - fsum) / n < 0.005);     /* P(up) = f */
    assert_true(worst_rn <= 0.5);
    assert_true(sum_rn / n < -0.1);                /* the data is one nearest rounding gets wrong */
    struct gbuf *all[] = {&gw, &gg, &gm, &gv, &gpar};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gbuf_free(all[i]);
    free(master);
    free(frac);
    free(lo);
    free(got);
    free(again);
    free(zero);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_elementwise),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_loss),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_softmax_causal),
        cmocka_unit_test(test_adamw_stochastic),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
