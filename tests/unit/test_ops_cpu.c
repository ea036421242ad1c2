// libs: cuda kernels core
/* The CPU op table against PyTorch (tests/oracle/ops_ref.py, float64, autograd for the
 * backward ops): every op forward and backward on fresh random inputs (the seed is
 * printed; SUSHI_TEST_SEED=N repeats a run) at odd shapes, ‖a − b‖₂/‖b‖₂ ≤ 1e-5 per
 * tensor. Every buffer has sentinels on both sides that must survive. Also: results do
 * not depend on the thread count, bad inputs are refused with an error code, and
 * ops_by_name picks the backends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>
#include <unistd.h>

#include "common/core/log.h"
#include "kernels/ops.h"
#include "tests/unit/ops_case.h"

#define TOL 1e-5

static const struct ops *cpu;

static const char *repo_root(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

static int have_torch(void) {
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static void seed_rng(void) {
    const char *s = getenv("SUSHI_TEST_SEED");
    uint64_t seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    oc_state = seed;
    print_message("seed %llu (SUSHI_TEST_SEED=%llu repeats it)\n", (unsigned long long)seed,
                  (unsigned long long)seed);
}

/* ---- cases ---- */

static void case_matmul(struct oc_dir *d, int m, int n, int k, int ta, int tb, float alpha, float beta,
                        int pad) {
    struct oc_buf A, B, Cb;
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    float *a = oc_randn(&A, (size_t)(ta ? k : m) * lda, 1.0f);
    float *b = oc_randn(&B, (size_t)(tb ? n : k) * ldb, 1.0f);
    float *c = oc_randn(&Cb, (size_t)m * ldc, 1.0f);
    oc_case(d, "matmul");
    oc_int_arg(d, "m", m), oc_int_arg(d, "n", n), oc_int_arg(d, "k", k);
    oc_int_arg(d, "ta", ta), oc_int_arg(d, "tb", tb);
    oc_int_arg(d, "lda", lda), oc_int_arg(d, "ldb", ldb), oc_int_arg(d, "ldc", ldc);
    oc_float_arg(d, "alpha", alpha), oc_float_arg(d, "beta", beta);
    oc_f32(d, "a", a, A.n), oc_f32(d, "b", b, B.n), oc_f32(d, "c0", c, Cb.n);
    assert_int_equal(cpu->matmul(c, a, b, m, n, k, ta, tb, alpha, beta, pad ? lda : 0, pad ? ldb : 0,
                                 pad ? ldc : 0), 0);
    oc_f32(d, "out_c", c, Cb.n);
}

static void case_elementwise(struct oc_dir *d, size_t n) {
    struct oc_buf A, B, O, Y, S, F;
    float *a = oc_randn(&A, n, 1.0f), *b = oc_randn(&B, n, 1.0f), *o = oc_alloc(&O, n);
    float *y = oc_randn(&Y, n, 1.0f), *s = oc_randn(&S, n, 1.0f), *f = oc_randn(&F, n, 1.0f);
    oc_case(d, "elementwise");
    oc_float_arg(d, "alpha", 0.37), oc_float_arg(d, "fill", -1.5);
    oc_f32(d, "a", a, n), oc_f32(d, "b", b, n), oc_f32(d, "y0", y, n), oc_f32(d, "s0", s, n);
    assert_int_equal(cpu->add(o, a, b, n), 0);
    assert_int_equal(cpu->axpy(y, 0.37f, a, n), 0);
    assert_int_equal(cpu->scale(s, 0.37f, n), 0);
    assert_int_equal(cpu->fill(f, -1.5f, n), 0);
    float ss = 0.0f;
    assert_int_equal(cpu->sumsq(&ss, a, n), 0);
    oc_f32(d, "out_add", o, n), oc_f32(d, "out_axpy", y, n), oc_f32(d, "out_scale", s, n);
    oc_f32(d, "out_fill", f, n), oc_f32(d, "out_sumsq", &ss, 1);
}

static void case_embedding(struct oc_dir *d, int V, int N, int C) {
    struct oc_buf Tb, O, D, G;
    int32_t *ids = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) ids[i] = i % 3 == 2 ? ids[i - 1] : oc_int(V);   /* repeats */
    float *table = oc_randn(&Tb, (size_t)V * C, 1.0f), *out = oc_alloc(&O, (size_t)N * C);
    float *dout = oc_randn(&D, (size_t)N * C, 1.0f), *dtab = oc_randn(&G, (size_t)V * C, 1.0f);
    oc_case(d, "embedding");
    oc_int_arg(d, "V", V), oc_int_arg(d, "N", N), oc_int_arg(d, "C", C);
    oc_i32(d, "ids", ids, N), oc_f32(d, "table", table, Tb.n), oc_f32(d, "dout", dout, D.n);
    oc_f32(d, "dtable0", dtab, G.n);
    assert_int_equal(cpu->embedding_forward(out, ids, table, N, C), 0);
    assert_int_equal(cpu->embedding_backward(dtab, ids, dout, N, C), 0);
    oc_f32(d, "out_out", out, O.n), oc_f32(d, "out_dtable", dtab, G.n);
    free(ids);
}

static void case_rmsnorm(struct oc_dir *d, int N, int C) {
    struct oc_buf X, W, O, R, D, DX, DW;
    float *x = oc_randn(&X, (size_t)N * C, 2.0f), *w = oc_randn(&W, C, 1.0f);
    float *out = oc_alloc(&O, (size_t)N * C), *rstd = oc_alloc(&R, N);
    float *dout = oc_randn(&D, (size_t)N * C, 1.0f), *dx = oc_alloc(&DX, (size_t)N * C);
    float *dw = oc_randn(&DW, C, 1.0f);
    oc_case(d, "rmsnorm");
    oc_int_arg(d, "N", N), oc_int_arg(d, "C", C), oc_float_arg(d, "eps", 1e-5);
    oc_f32(d, "x", x, X.n), oc_f32(d, "w", w, C), oc_f32(d, "dout", dout, D.n), oc_f32(d, "dw0", dw, C);
    assert_int_equal(cpu->rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f), 0);
    assert_int_equal(cpu->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C), 0);
    oc_f32(d, "out_out", out, O.n), oc_f32(d, "out_rstd", rstd, N);
    oc_f32(d, "out_dx", dx, DX.n), oc_f32(d, "out_dw", dw, C);
}

static void case_swiglu(struct oc_dir *d, int N, int F) {
    struct oc_buf Hb, O, D, DH;
    float *h = oc_randn(&Hb, (size_t)N * 2 * F, 2.0f), *out = oc_alloc(&O, (size_t)N * F);
    float *dout = oc_randn(&D, (size_t)N * F, 1.0f), *dh = oc_alloc(&DH, (size_t)N * 2 * F);
    oc_case(d, "swiglu");
    oc_int_arg(d, "N", N), oc_int_arg(d, "F", F);
    oc_f32(d, "h", h, Hb.n), oc_f32(d, "dout", dout, D.n);
    assert_int_equal(cpu->swiglu_forward(out, h, N, F), 0);
    assert_int_equal(cpu->swiglu_backward(dh, dout, h, N, F), 0);
    oc_f32(d, "out_out", out, O.n), oc_f32(d, "out_dh", dh, DH.n);
}

/* rope on nheads heads of width head_stride inside rows of row_stride, rotating
 * rot_dim values from offset (MLA: the rope part follows the no-rope part) */
static void case_rope(struct oc_dir *d, int N, int nheads, int head_stride, int offset, int rot,
                      int row_stride, int inter) {
    struct oc_buf X, DX, Cs, Sn;
    const int maxp = 29, half = rot / 2;
    int32_t *pos = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) pos[i] = oc_int(maxp);
    float *cs = oc_alloc(&Cs, (size_t)maxp * half), *sn = oc_alloc(&Sn, (size_t)maxp * half);
    for (int p = 0; p < maxp; p++)
        for (int i = 0; i < half; i++) {
            double th = p * pow(10000.0, -2.0 * i / rot);
            cs[p * half + i] = (float)cos(th);
            sn[p * half + i] = (float)sin(th);
        }
    float *x = oc_randn(&X, (size_t)N * row_stride, 1.0f), *dx = oc_randn(&DX, (size_t)N * row_stride, 1.0f);
    struct rope_shape s = {N, nheads, row_stride, head_stride, offset, rot, inter, maxp, pos, cs, sn};
    oc_case(d, "rope");
    oc_int_arg(d, "N", N), oc_int_arg(d, "nheads", nheads), oc_int_arg(d, "row_stride", row_stride);
    oc_int_arg(d, "head_stride", head_stride), oc_int_arg(d, "offset", offset);
    oc_int_arg(d, "rot_dim", rot), oc_int_arg(d, "interleaved", inter);
    oc_i32(d, "pos", pos, N), oc_f32(d, "cos", cs, Cs.n), oc_f32(d, "sin", sn, Sn.n);
    oc_f32(d, "x", x, X.n), oc_f32(d, "dy", dx, DX.n);
    assert_int_equal(cpu->rope_forward(x, &s), 0);
    assert_int_equal(cpu->rope_backward(dx, &s), 0);
    oc_f32(d, "out_y", x, X.n), oc_f32(d, "out_dx", dx, DX.n);
    free(pos);
}

static void case_attention(struct oc_dir *d, int B, int T, int H, int G, int dqk, int dv, int window,
                           int docs, int pad) {
    struct oc_buf Q, K, V, O, L, DO, DQ, DK, DV;
    int32_t *doc = NULL;
    if (docs) {   /* 1-3 documents per sequence, boundaries at random places */
        doc = malloc(sizeof(int32_t) * B * T);
        for (int b = 0; b < B; b++) {
            int id = 0;
            for (int t = 0; t < T; t++) {
                if (t > 0 && oc_int(T) < 2) id++;
                doc[b * T + t] = id;
            }
        }
    }
    struct attn_shape s = {B, T, H, G, dqk, dv, H * dqk + pad, G * dqk + pad, G * dv + pad, H * dv + pad,
                           1.0f / sqrtf((float)dqk), window, doc};
    size_t N = (size_t)B * T;
    float *q = oc_randn(&Q, N * s.q_stride, 1.0f), *k = oc_randn(&K, N * s.k_stride, 1.0f);
    float *v = oc_randn(&V, N * s.v_stride, 1.0f), *out = oc_alloc(&O, N * s.o_stride);
    float *lse = oc_alloc(&L, (size_t)B * H * T), *dout = oc_randn(&DO, N * s.o_stride, 1.0f);
    float *dq = oc_alloc(&DQ, N * s.q_stride), *dk = oc_alloc(&DK, N * s.k_stride);
    float *dvv = oc_alloc(&DV, N * s.v_stride);
    oc_case(d, "attention");
    oc_int_arg(d, "B", B), oc_int_arg(d, "T", T), oc_int_arg(d, "H", H), oc_int_arg(d, "G", G);
    oc_int_arg(d, "dqk", dqk), oc_int_arg(d, "dv", dv), oc_int_arg(d, "window", window);
    oc_int_arg(d, "docs", docs), oc_int_arg(d, "pad", pad), oc_float_arg(d, "scale", s.scale);
    oc_f32(d, "q", q, Q.n), oc_f32(d, "k", k, K.n), oc_f32(d, "v", v, V.n), oc_f32(d, "dout", dout, DO.n);
    if (doc) oc_i32(d, "doc", doc, N);
    assert_int_equal(cpu->attention_forward(out, lse, q, k, v, &s), 0);
    assert_int_equal(cpu->attention_backward(dq, dk, dvv, dout, out, lse, q, k, v, &s), 0);
    oc_f32(d, "out_out", out, O.n), oc_f32(d, "out_lse", lse, L.n);
    oc_f32(d, "out_dq", dq, DQ.n), oc_f32(d, "out_dk", dk, DK.n), oc_f32(d, "out_dv", dvv, DV.n);
    free(doc);
}

/* teacher top-K from a random teacher at temperature T: K distinct ids (the teacher's
 * largest and a few random ones), their log-probs and the exact tail log-mass;
 * zero_bucket makes the first bucket and the tail impossible (log p = −inf). */
static void case_loss(struct oc_dir *d, int N, int V, int Vp, int K, enum kd_mode mode, float T,
                      float alpha, float eps, int zero_bucket) {
    struct oc_buf S, TL, TP, TT, Lo, CE, KD, DL;
    float *s = oc_randn(&S, (size_t)N * Vp, 3.0f), *dl = oc_alloc(&DL, (size_t)N * Vp);
    float *loss = oc_alloc(&Lo, N), *ce = oc_alloc(&CE, N), *kd = oc_alloc(&KD, N);
    int32_t *y = malloc(sizeof(int32_t) * N), *ids = malloc(sizeof(int32_t) * (N * K + 1));
    float *lp = oc_alloc(&TL, (size_t)N * K + 1), *tail = oc_alloc(&TT, N);
    float *tlog = oc_randn(&TP, V, 2.0f);
    for (int n = 0; n < N; n++) {
        y[n] = n % 4 == 3 ? -1 : oc_int(V);   /* ignored rows */
        for (int v = 0; v < V; v++) tlog[v] = 2.0f * oc_normal();
        double m = -INFINITY, z = 0.0, in = 0.0;
        for (int v = 0; v < V; v++) m = fmax(m, tlog[v] / T);
        for (int v = 0; v < V; v++) z += exp(tlog[v] / T - m);
        for (int b = 0; b < K; b++) {
            int id, dup;
            do {
                id = oc_int(V);
                dup = 0;
                for (int j = 0; j < b; j++) dup |= ids[n * K + j] == id;
            } while (dup);
            ids[n * K + b] = id;
            double p = exp(tlog[id] / T - m) / z;
            lp[n * K + b] = (float)log(p);
            in += p;
        }
        tail[n] = (float)log1p(-in);
        if (zero_bucket && n % 2 == 0) {
            lp[n * K] = -INFINITY;
            tail[n] = -INFINITY;
        }
    }
    struct loss_args a = {N, V, Vp, eps, alpha, mode, T, 0.4f, K, ids, lp, tail, 0.25f};
    oc_case(d, "loss");
    oc_int_arg(d, "N", N), oc_int_arg(d, "V", V), oc_int_arg(d, "Vp", Vp), oc_int_arg(d, "K", K);
    oc_int_arg(d, "mode", mode), oc_float_arg(d, "T", T), oc_float_arg(d, "alpha", alpha);
    oc_float_arg(d, "eps", eps), oc_float_arg(d, "beta", 0.4), oc_float_arg(d, "grad_scale", 0.25);
    oc_f32(d, "logits", s, S.n), oc_i32(d, "y", y, N);
    if (K) oc_i32(d, "ids", ids, (size_t)N * K), oc_f32(d, "lp", lp, (size_t)N * K), oc_f32(d, "tail", tail, N);
    assert_int_equal(cpu->loss_forward_backward(loss, ce, kd, dl, s, y, &a), 0);
    oc_f32(d, "out_loss", loss, N), oc_f32(d, "out_ce", ce, N), oc_f32(d, "out_kd", kd, N);
    oc_f32(d, "out_dlogits", dl, DL.n);
    /* in place (dlogits aliasing logits) gives the same gradient */
    assert_int_equal(cpu->loss_forward_backward(NULL, NULL, NULL, s, s, y, &a), 0);
    assert_memory_equal(s, dl, DL.n * sizeof(float));
    free(y);
    free(ids);
}

static void case_adamw(struct oc_dir *d, size_t n, int steps) {
    struct oc_buf M, P, Mo, Vo, Gr;
    float *master = oc_randn(&M, n, 1.0f), *param = oc_alloc(&P, n);
    float *m = oc_alloc(&Mo, n), *v = oc_alloc(&Vo, n), *g = oc_alloc(&Gr, n);
    oc_case(d, "adamw");
    oc_int_arg(d, "n", (long)n), oc_int_arg(d, "steps", steps);
    oc_float_arg(d, "lr", 1e-2), oc_float_arg(d, "beta1", 0.9), oc_float_arg(d, "beta2", 0.95);
    oc_float_arg(d, "eps", 1e-8), oc_float_arg(d, "wd", 0.1), oc_float_arg(d, "grad_scale", 0.5);
    oc_f32(d, "master0", master, n);
    for (int t = 1; t <= steps; t++) {
        char name[16];
        for (size_t i = 0; i < n; i++) g[i] = oc_normal() * (i % 7 == 0 ? 1e-3f : 1.0f);
        snprintf(name, sizeof name, "g%d", t);
        oc_f32(d, name, g, n);
        struct adamw_args a = {n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f, 0, 0};
        assert_int_equal(cpu->adamw(master, param, g, m, v, &a), 0);
    }
    assert_memory_equal(param, master, n * sizeof(float));
    oc_f32(d, "out_master", master, n), oc_f32(d, "out_m", m, n), oc_f32(d, "out_v", v, n);
}

/* ---- oracle ---- */

/* runs ops_ref.py on the directory; every case must report, every error ≤ TOL */
static void check_with_oracle(struct oc_dir *d) {
    char cmd[600], line[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/ops_ref.py %s", repo_root(), d->path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int *seen = calloc((size_t)d->ncases, sizeof(int));
    int bad = 0, done = 0, checked = 0;
    double worst = 0.0;
    while (fgets(line, sizeof line, p)) {
        char cname[32], op[32], tensor[64];
        double err;
        int ci;
        if (sscanf(line, "ERR c%d %31s %63s %lf", &ci, op, tensor, &err) == 4 && ci >= 0 && ci < d->ncases) {
            seen[ci]++;
            checked++;
            if (err > worst) worst = err;
            if (!(err <= TOL)) {
                bad++;
                print_error("c%d %s %s: rel err %.3g > %g\n", ci, op, tensor, err, TOL);
            }
        } else if (sscanf(line, "DONE %31s", cname) == 1) {
            done = 1;
        } else {
            print_message("oracle: %s", line);
        }
    }
    int rc = pclose(p);
    int missing = 0;
    for (int i = 0; i < d->ncases; i++)
        if (!seen[i]) {
            missing++;
            print_error("case c%d: no result from the oracle\n", i);
        }
    free(seen);
    print_message("%d tensors over %d cases checked, worst rel err %.3g (tolerance %g)\n", checked,
                  d->ncases, worst, TOL);
    assert_int_equal(rc, 0);
    assert_true(done);
    assert_int_equal(missing, 0);
    assert_int_equal(bad, 0);
}

/* ---- tests ---- */

static void test_against_torch(void **st) {
    (void)st;
    if (!have_torch()) skip();
    seed_rng();
    struct oc_dir d;
    assert_int_equal(oc_dir_open(&d), 0);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            case_matmul(&d, 7, 33, 13, ta, tb, 0.7f, 0.3f, 3);
            case_matmul(&d, 64, 48, 40, ta, tb, 1.0f, 0.0f, 0);
            case_matmul(&d, 300, 70, 150, ta, tb, 0.5f, 1.0f, 2);   /* split over rows of C */
            case_matmul(&d, 70, 301, 150, ta, tb, 1.0f, -0.5f, 0);  /* split over columns */
        }
    case_elementwise(&d, 100003);
    case_embedding(&d, 97, 13, 33);
    case_rmsnorm(&d, 7, 33);
    case_rmsnorm(&d, 13, 512);
    case_swiglu(&d, 7, 33);
    case_swiglu(&d, 13, 176);
    for (int inter = 0; inter < 2; inter++) {
        case_rope(&d, 13, 6, 24, 8, 16, 6 * 24 + 5, inter);   /* MLA-like: rope after nope */
        case_rope(&d, 7, 2, 16, 96, 16, 160, inter);          /* heads after another block */
    }
    case_rope(&d, 13, 3, 24, 0, 24, 3 * 24, 0);                /* whole head, student layout */
    case_attention(&d, 2, 13, 6, 2, 16, 16, 0, 0, 0);
    case_attention(&d, 2, 13, 6, 3, 24, 16, 0, 1, 5);
    case_attention(&d, 1, 13, 6, 6, 16, 24, 4, 0, 3);
    case_attention(&d, 2, 77, 4, 2, 16, 16, 9, 1, 0);         /* several query blocks */
    case_attention(&d, 1, 150, 2, 1, 24, 24, 0, 0, 1);
    case_attention(&d, 1, 150, 4, 2, 16, 8, 70, 1, 2);
    case_loss(&d, 7, 97, 104, 0, KD_FORWARD, 1.0f, 0.0f, 0.1f, 0);
    case_loss(&d, 7, 97, 104, 5, KD_FORWARD, 2.0f, 0.5f, 0.0f, 0);
    case_loss(&d, 8, 97, 104, 5, KD_FORWARD, 1.5f, 0.6f, 0.1f, 1);
    case_loss(&d, 7, 97, 104, 6, KD_REVERSE, 1.5f, 0.7f, 0.05f, 0);
    case_loss(&d, 7, 97, 104, 4, KD_JSD, 2.0f, 1.0f, 0.0f, 0);
    case_loss(&d, 8, 97, 104, 4, KD_JSD, 1.0f, 0.3f, 0.1f, 1);
    case_loss(&d, 13, 1000, 1024, 16, KD_FORWARD, 2.0f, 0.5f, 0.1f, 0);
    case_adamw(&d, 1001, 4);
    oc_dir_close(&d);
    assert_int_equal(oc_release_all(), 0);   /* sentinels intact */
    check_with_oracle(&d);
    oc_dir_remove(&d);
}

/* outputs that depend only on a row's own data are identical for 1 and 3 threads */
static void test_thread_count(void **st) {
    (void)st;
    seed_rng();
    int saved = ops_cpu_threads();
    struct oc_buf Q, O1, O2, L1, L2, S, D1, D2;
    struct attn_shape s = {2, 90, 4, 2, 16, 16, 64, 32, 32, 64, 0.25f, 0, NULL};
    float *q = oc_randn(&Q, 2 * 90 * 64, 1.0f);
    float *o1 = oc_alloc(&O1, 2 * 90 * 64), *o2 = oc_alloc(&O2, 2 * 90 * 64);
    float *l1 = oc_alloc(&L1, 2 * 4 * 90), *l2 = oc_alloc(&L2, 2 * 4 * 90);
    float *logits = oc_randn(&S, 11 * 300, 2.0f), *d1 = oc_alloc(&D1, 11 * 300), *d2 = oc_alloc(&D2, 11 * 300);
    int32_t y[11];
    for (int i = 0; i < 11; i++) y[i] = oc_int(300);
    struct loss_args a = {11, 300, 300, 0.1f, 0.0f, KD_FORWARD, 1.0f, 0.5f, 0, NULL, NULL, NULL, 1.0f};
    for (int pass = 0; pass < 2; pass++) {
        ops_cpu_set_threads(pass ? 3 : 1);
        assert_int_equal(ops_cpu_threads(), pass ? 3 : 1);
        assert_int_equal(cpu->attention_forward(pass ? o2 : o1, pass ? l2 : l1, q, q + 32, q + 48, &s), 0);
        assert_int_equal(cpu->loss_forward_backward(NULL, NULL, NULL, pass ? d2 : d1, logits, y, &a), 0);
    }
    ops_cpu_set_threads(saved);
    assert_memory_equal(o1, o2, O1.n * sizeof(float));
    assert_memory_equal(l1, l2, L1.n * sizeof(float));
    assert_memory_equal(d1, d2, D1.n * sizeof(float));
    assert_int_equal(oc_release_all(), 0);
}

static void expect_refused(int rc, int code, const char *what) {
    print_message("%-28s -> %d: %s\n", what, rc, sushi_last_error());
    assert_int_equal(rc, code);
    assert_true(strlen(sushi_last_error()) > 0);
}

static void test_bad_inputs(void **st) {
    (void)st;
    float buf[64] = {0};
    int32_t ids[4] = {0, 1, 2, 300};
    expect_refused(cpu->matmul(buf, buf, buf, -1, 2, 2, 0, 0, 1, 0, 0, 0, 0), SUSHI_ESHAPE, "matmul m<0");
    expect_refused(cpu->matmul(buf, buf, buf, 2, 4, 3, 0, 0, 1, 0, 2, 0, 0), SUSHI_ESHAPE, "matmul lda<k");
    struct attn_shape as = {1, 4, 6, 4, 4, 4, 24, 16, 16, 24, 0.5f, 0, NULL};
    expect_refused(cpu->attention_forward(buf, buf, buf, buf, buf, &as), SUSHI_ESHAPE, "attention G∤H");
    as.G = 3;
    as.q_stride = 8;
    expect_refused(cpu->attention_forward(buf, buf, buf, buf, buf, &as), SUSHI_ESHAPE, "attention q_stride");
    int32_t pos[2] = {0, 9};
    struct rope_shape rs = {2, 1, 8, 8, 0, 8, 0, 9, pos, buf, buf};
    expect_refused(cpu->rope_forward(buf, &rs), SUSHI_EINVAL, "rope position >= max_pos");
    rs.rot_dim = 7;
    expect_refused(cpu->rope_forward(buf, &rs), SUSHI_ESHAPE, "rope odd rot_dim");
    struct loss_args la = {4, 16, 16, 0.0f, 0.0f, KD_FORWARD, 1.0f, 0.5f, 0, NULL, NULL, NULL, 1.0f};
    expect_refused(cpu->loss_forward_backward(NULL, NULL, NULL, buf, buf, ids, &la), SUSHI_EINVAL,
                   "loss target >= vocab");
    int32_t y[4] = {0, 1, 2, 3}, tk[4] = {5, 5, 1, 2};
    float lp[4] = {-1, -1, -1, -1}, tl[2] = {-1, -1};
    struct loss_args lk = {2, 16, 16, 0.0f, 0.5f, KD_FORWARD, 1.0f, 0.5f, 2, tk, lp, tl, 1.0f};
    expect_refused(cpu->loss_forward_backward(NULL, NULL, NULL, buf, buf, y, &lk), SUSHI_EINVAL,
                   "loss repeated top-K id");
    tk[1] = 16;
    expect_refused(cpu->loss_forward_backward(NULL, NULL, NULL, buf, buf, y, &lk), SUSHI_EINVAL,
                   "loss top-K id >= vocab");
    lk.k = 0;
    lk.alpha = 2.0f;
    expect_refused(cpu->loss_forward_backward(NULL, NULL, NULL, buf, buf, y, &lk), SUSHI_EINVAL, "loss alpha > 1");
    struct adamw_args aw = {4, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 1.0f, 0, 0};
    expect_refused(cpu->adamw(buf, NULL, buf, buf, buf, &aw), SUSHI_EINVAL, "adamw step 0");
    int32_t neg[1] = {-3};
    expect_refused(cpu->embedding_forward(buf, neg, buf, 1, 4), SUSHI_EINVAL, "embedding negative id");
    expect_refused(cpu->rmsnorm_forward(buf, buf, buf, buf, 2, 0, 1e-5f), SUSHI_ESHAPE, "rmsnorm C=0");
    expect_refused(cpu->copy(NULL, buf, 4), SUSHI_EINVAL, "copy NULL");
}

static void test_backend_names(void **st) {
    (void)st;
    assert_ptr_equal(ops_by_name("cpu"), ops_cpu());
    assert_string_equal(ops_cpu()->name, "cpu");
    assert_int_equal(ops_cpu()->act_dtype, DT_F32);
    const struct ops *a = ops_by_name("auto");
    assert_non_null(a);
    const struct ops *c = ops_cuda();
    assert_ptr_equal(a, c ? c : ops_cpu());
    assert_null(ops_by_name("tpu"));
    assert_non_null(strstr(sushi_last_error(), "tpu"));
    assert_null(ops_by_name(NULL));
    void *p = cpu->alloc(100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (int i = 0; i < 100; i++) assert_int_equal(((unsigned char *)p)[i], 0);
    cpu->free(p);
}

/* ops->mem_stats counts what alloc handed out (rounded to 64 bytes) and the peak */
static void test_mem_stats(void **st) {
    (void)st;
    struct ops_mem m0, m1, m2;
    assert_int_equal(cpu->mem_stats(&m0), 0);
    void *a = cpu->alloc(1000), *b = cpu->alloc(64);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(cpu->mem_stats(&m1), 0);
    assert_int_equal(m1.allocated - m0.allocated, 1024 + 64);
    assert_true(m1.peak >= m1.allocated);
    cpu->free(a);
    cpu->free(NULL);
    assert_int_equal(cpu->mem_stats(&m2), 0);
    assert_int_equal(m2.allocated - m0.allocated, 64);
    assert_int_equal(m2.peak, m1.peak);
    /* many blocks: the table grows and keeps exact counts */
    void *many[2000];
    for (int i = 0; i < 2000; i++) many[i] = cpu->alloc(128);
    for (int i = 0; i < 2000; i += 2) cpu->free(many[i]);
    assert_int_equal(cpu->mem_stats(&m1), 0);
    assert_int_equal(m1.allocated - m2.allocated, 1000 * 128);
    for (int i = 1; i < 2000; i += 2) cpu->free(many[i]);
    cpu->free(b);
    assert_int_equal(cpu->mem_stats(&m1), 0);
    assert_int_equal(m1.allocated, m0.allocated);
    assert_int_equal(cpu->mem_stats(NULL), SUSHI_EINVAL);
}

int main(void) {
    cpu = ops_cpu();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_torch),
        cmocka_unit_test(test_thread_count),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_backend_names),
        cmocka_unit_test(test_mem_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
