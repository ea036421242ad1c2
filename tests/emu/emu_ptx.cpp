/* The inline PTX the CUDA kernels use (kernels/cuda/mma_sm80.h), executed by the emulator
 * (transform.py turns each asm statement into sushi_emu::ptx(text, operands)), and the
 * f16 conversions of cuda_emu.h. Instructions, with the PTX ISA's fragment layouts
 * (lane = 4·g + t):
 *   mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 {d0-3}, {a0-3}, {b0,b1}, {c0-3}
 *     a0: A[g][2t,2t+1]  a1: A[g+8][2t,2t+1]  a2: A[g][2t+8,2t+9]  a3: A[g+8][2t+8,2t+9]
 *     b0: B[2t,2t+1][g]  b1: B[2t+8,2t+9][g]  c/d: rows g (c0,c1) and g+8 (c2,c3), columns 2t, 2t+1
 *   ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 {r...}, [addr]
 *     lanes 8m..8m+7 give the row addresses of matrix m; r[m] = row g, elements 2t, 2t+1
 *     (transposed: elements g of rows 2t and 2t+1)
 *   cp.async.{ca,cg}.shared.global [dst], [src], size{, src_size}  (zero fill past src_size)
 *   cp.async.commit_group, cp.async.wait_group N, cp.async.wait_all
 * The copies of cp.async happen when a wait lets their group complete, so a kernel that
 * reads shared memory before waiting sees stale bytes, as it may on the GPU.
 * Anything else fails the launch naming the instruction. */
#include "tests/emu/cuda_emu.h"
#include "tests/emu/emu_internal.h"

#include <stdlib.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace sushi_emu {

/* ---- f16 ---- */

uint16_t f32_to_f16(float v, int toward_zero) {
    uint32_t u = f32_bits(v), sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);              /* NaN */
    int e = (int)(u >> 23) - 127;
    if (e > 15) return (uint16_t)(sign | (toward_zero ? 0x7bffu : 0x7c00u));
    if (e < -25) return (uint16_t)sign;                                  /* below half the smallest subnormal */
    uint32_t mant = (u & 0x7fffffu) | 0x800000u;
    int shift = e >= -14 ? 13 : 13 + (-14 - e);
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (e >= -14) h += (uint32_t)(e + 14) << 10;                         /* implicit bit carries the exponent */
    if (!toward_zero && (rem > half || (rem == half && (h & 1u)))) h++;
    if (toward_zero && h > 0x7bffu) h = 0x7bffu;
    return (uint16_t)(sign | h);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-08f;   /* m · 2⁻²⁴ */
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* ---- parsing ---- */

struct ptx_item {
    bool reg;        /* %N, else a literal */
    long long v;
};
struct ptx_insn {
    std::string op;
    std::vector<std::vector<ptx_item>> args;   /* {a, b}, [a] and a are groups */
};

static bool parse(const char *text, ptx_insn *out) {
    const char *p = text;
    while (*p == ' ' || *p == '\t') p++;
    const char *s = p;
    while (*p && *p != ' ' && *p != '\t' && *p != ';' && *p != '\n') p++;
    out->op.assign(s, (size_t)(p - s));
    std::vector<ptx_item> group;
    bool open = false;
    for (; *p && *p != ';'; p++) {
        char c = *p;
        if (c == '{' || c == '[') {
            open = true;
        } else if (c == '}' || c == ']') {
            open = false;
        } else if (c == ',') {
            if (!open) out->args.push_back(group), group.clear();
        } else if (c == '%' || (c >= '0' && c <= '9')) {
            char *end;
            long long v = strtoll(c == '%' ? p + 1 : p, &end, 10);
            if (end == p + (c == '%')) return false;
            group.push_back({c == '%', v});
            p = end - 1;
        } else if (c != ' ' && c != '\t' && c != '\n') {
            return false;
        }
    }
    if (!group.empty()) out->args.push_back(group);
    return true;
}

struct ptx_ops {
    const ptx_operand *op;
    size_t n;
    bool ok = true;
    const ptx_operand *at(const ptx_item &it) {
        if (!it.reg || it.v < 0 || (size_t)it.v >= n) {
            ok = false;
            return NULL;
        }
        return &op[it.v];
    }
    uint64_t get(const ptx_item &it, size_t bytes) {
        if (!it.reg) return (uint64_t)it.v;
        const ptx_operand *o = at(it);
        if (!o) return 0;
        if (!o->out) return o->in;
        uint64_t v = 0;
        memcpy(&v, o->out, bytes);
        return v;
    }
    void set(const ptx_item &it, const void *v, size_t bytes) {
        const ptx_operand *o = at(it);
        if (o && o->out) memcpy(o->out, v, bytes);
        else ok = false;
    }
};

static float half_of(uint32_t w, int hi, bool f16) {
    uint16_t b = (uint16_t)(hi ? w >> 16 : w);
    return f16 ? f16_to_f32(b) : bf16_to_f32(b);
}

/* ---- instructions ---- */

static bool mma(const ptx_insn &in, ptx_ops &o, bool f16) {
    if (in.args.size() != 4 || in.args[0].size() != 4 || in.args[1].size() != 4 || in.args[2].size() != 2 ||
        in.args[3].size() != 4)
        return false;
    uint32_t ab[6];
    for (int i = 0; i < 4; i++) ab[i] = (uint32_t)o.get(in.args[1][i], 4);
    for (int i = 0; i < 2; i++) ab[4 + i] = (uint32_t)o.get(in.args[2][i], 4);
    float c[4];
    for (int i = 0; i < 4; i++) {
        uint32_t w = (uint32_t)o.get(in.args[3][i], 4);
        c[i] = bits_f32(w);
    }
    const unsigned char *s = warp_exchange(0xffffffffu, ab, sizeof ab);
    int lane = lane_id(), g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; e++) {
        int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
        float acc = 0.0f;
        for (int k = 0; k < 16; k++) {
            /* A[row][k]: lane 4·(row%8) + (k%8)/2, register (row ≥ 8) + 2·(k ≥ 8) */
            uint32_t aw = lane_value<uint32_t>(s + 4 * ((row >= 8) + 2 * (k >= 8)), 4 * (row % 8) + (k % 8) / 2);
            /* B[k][col]: lane 4·col + (k%8)/2, register 4 + (k ≥ 8) */
            uint32_t bw = lane_value<uint32_t>(s + 4 * (4 + (k >= 8)), 4 * col + (k % 8) / 2);
            acc += half_of(aw, k & 1, f16) * half_of(bw, k & 1, f16);
        }
        float d = c[e] + acc;
        o.set(in.args[0][e], &d, 4);
    }
    return o.ok;
}

static bool ldmatrix(const ptx_insn &in, ptx_ops &o, int count, bool trans) {
    if (in.args.size() != 2 || (int)in.args[0].size() != count || in.args[1].size() != 1) return false;
    const uint16_t *row = (const uint16_t *)shared_ptr((uint32_t)o.get(in.args[1][0], 4));
    const unsigned char *s = warp_exchange(0xffffffffu, &row, sizeof row);
    int lane = lane_id(), g = lane / 4, t = lane % 4;
    for (int m = 0; m < count; m++) {
        uint16_t lo, hi;
        if (!trans) {
            const uint16_t *r = lane_value<const uint16_t *>(s, 8 * m + g);
            lo = r[2 * t], hi = r[2 * t + 1];
        } else {
            lo = lane_value<const uint16_t *>(s, 8 * m + 2 * t)[g];
            hi = lane_value<const uint16_t *>(s, 8 * m + 2 * t + 1)[g];
        }
        uint32_t w = (uint32_t)lo | (uint32_t)hi << 16;
        o.set(in.args[0][m], &w, 4);
    }
    return o.ok;
}

static void complete_groups(async_queue &q, size_t keep) {
    while (q.groups.size() > keep) {
        for (const async_copy &c : q.groups.front()) {
            memset(c.dst, 0, c.bytes);
            memcpy(c.dst, c.src, c.src_bytes);
        }
        q.groups.erase(q.groups.begin());
    }
}

static bool cp_async(const ptx_insn &in, ptx_ops &o) {
    async_queue &q = my_async_queue();
    if (in.op == "cp.async.commit_group") {
        q.groups.push_back(q.open), q.open.clear();
        return in.args.empty();
    }
    if (in.op == "cp.async.wait_group") {
        if (in.args.size() != 1 || in.args[0].size() != 1) return false;
        complete_groups(q, (size_t)o.get(in.args[0][0], 4));
        return o.ok;
    }
    if (in.op == "cp.async.wait_all") {
        q.groups.push_back(q.open), q.open.clear();
        complete_groups(q, 0);
        return true;
    }
    if (in.args.size() < 3 || in.args.size() > 4) return false;
    async_copy c;
    c.dst = shared_ptr((uint32_t)o.get(in.args[0][0], 4));
    c.src = (const void *)(uintptr_t)o.get(in.args[1][0], 8);
    c.bytes = (unsigned)o.get(in.args[2][0], 4);
    c.src_bytes = in.args.size() == 4 ? (unsigned)o.get(in.args[3][0], 4) : c.bytes;
    if ((c.bytes != 4 && c.bytes != 8 && c.bytes != 16) || c.src_bytes > c.bytes) return false;
    if (((uintptr_t)c.dst | (uintptr_t)c.src) % c.bytes) {
        fail("%s: cp.async with a misaligned address", in.op.c_str());
        return true;
    }
    q.open.push_back(c);
    return o.ok;
}

void ptx(const char *text, std::initializer_list<ptx_operand> ops) {
    static std::unordered_map<const char *, ptx_insn> cache;
    auto it = cache.find(text);
    if (it == cache.end()) {
        ptx_insn in;
        if (!parse(text, &in)) {
            fail("inline PTX that cannot be parsed: %s", text);
            return;
        }
        it = cache.emplace(text, in).first;
    }
    const ptx_insn &in = it->second;
    ptx_ops o{ops.begin(), ops.size()};
    const std::string &op = in.op;
    bool ok;
    if (op == "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32") ok = mma(in, o, false);
    else if (op == "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") ok = mma(in, o, true);
    else if (op.rfind("ldmatrix.sync.aligned.m8n8.x", 0) == 0 && op.size() > 28 &&
             op.find(".shared.b16") != std::string::npos) {
        int count = op[28] - '0';
        ok = (count == 1 || count == 2 || count == 4) && ldmatrix(in, o, count, op.find(".trans") != std::string::npos);
    } else if (op.rfind("cp.async.", 0) == 0) ok = cp_async(in, o);
    else ok = false;
    if (!ok) fail("unsupported inline PTX (or its operands): %s", text);
}

} // namespace sushi_emu
