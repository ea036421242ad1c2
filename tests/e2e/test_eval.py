#!/usr/bin/python3
"""sushi-eval --once against PyTorch: a random student (HF Llama layout written here with
numpy) and a random DeepSeek-V2 teacher (tests/oracle/deepseek_ref.py write), both over
a byte-level vocabulary of 257 (deepseek_ref.py tokenizer), evaluated on a held-out text.
The held-out batches come from sushi-loader --dump of the same data section; the
reference runs the student in float64 here and the teacher with deepseek_ref's forward,
each document segment from position 0. Checks perplexity, loss, teacher perplexity and
KD loss (1e-4 relative), top-1 agreement (exact), the passkey grid against a greedy
float64 decode of the same prompts, a DeepSeek checkpoint evaluated as the model, and
the error paths (missing eval.data, an unreadable checkpoint).

The helpers here are shared by test_eval_watch.py and test_eval_events.py."""
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import BIN, ROOT, spawn, stop, tail, tmpdir, wait_for  # noqa: E402

import torch  # noqa: E402

ORACLE = os.path.join(ROOT, "tests", "oracle")
sys.path.insert(0, ORACLE)
import deepseek_ref  # noqa: E402

torch.set_grad_enabled(False)

VOCAB = 257          # bytes + </s> (deepseek_ref.py tokenizer)
EOS = 256
STUDENT = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, max_seq=512, theta=10000.0, eps=1e-5)
PREAMBLE = ("There is important info hidden inside a lot of irrelevant text. Find it and memorize it. "
            "I will quiz you about the important information there.")
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = " What is the pass key? The pass key is"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def write_safetensors(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    raw = open(path, "rb").read()
    (hl,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hl])
    header.pop("__metadata__", None)
    dt = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "U64": np.uint64}
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + hl + b:8 + hl + e], dtype=dt[t["dtype"]]).reshape(t["shape"])
    return out


def write_student(d, seed, cfg=STUDENT, step=None):
    """a random student in the HF Llama layout (untied head), optionally with trainer_state.json"""
    rng = np.random.default_rng(seed)
    C, H, G, F = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"], cfg["d_ff"]
    D = C // H
    t = {"model.embed_tokens.weight": rng.normal(0, 1.0, (VOCAB, C)), "model.norm.weight": 1 + 0.1 * rng.normal(size=C),
         "lm_head.weight": rng.normal(0, 1.0 / math.sqrt(C), (VOCAB, C))}
    for l in range(cfg["n_layers"]):
        p = "model.layers.%d." % l
        for name, shape in [("self_attn.q_proj", (H * D, C)), ("self_attn.k_proj", (G * D, C)),
                            ("self_attn.v_proj", (G * D, C)), ("self_attn.o_proj", (C, H * D)),
                            ("mlp.gate_proj", (F, C)), ("mlp.up_proj", (F, C)), ("mlp.down_proj", (C, F))]:
            t[p + name + ".weight"] = rng.normal(0, 1.0 / math.sqrt(shape[1]), shape)
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=C)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=C)
    os.makedirs(d, exist_ok=True)
    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C, "intermediate_size": F,
          "num_attention_heads": H, "num_key_value_heads": G, "num_hidden_layers": cfg["n_layers"],
          "vocab_size": VOCAB, "max_position_embeddings": cfg["max_seq"], "rms_norm_eps": cfg["eps"],
          "rope_theta": cfg["theta"], "tie_word_embeddings": False, "hidden_act": "silu"}
    write_safetensors(os.path.join(d, "model.safetensors"), {k: v.astype(np.float32) for k, v in t.items()},
                      {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf, f)
    if step is not None:
        with open(os.path.join(d, "trainer_state.json"), "w") as f:
            json.dump({"step": step}, f)


def student_logits(d, ids, cfg=STUDENT):
    """float64 logits (T, V) of one row, positions 0..T-1, causal (no document mask)"""
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in read_safetensors(os.path.join(d, "model.safetensors")).items()}
    C, H, G = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"]
    D, T, eps = C // H, len(ids), cfg["eps"]

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    inv = 1.0 / cfg["theta"] ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]

    def rope(x):
        return x * cos + torch.cat([-x[..., D // 2:], x[..., :D // 2]], -1) * sin

    x = W["model.embed_tokens.weight"][torch.tensor([int(i) for i in ids], dtype=torch.long)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["n_layers"]):
        p = "model.layers.%d." % l
        h = norm(x, W[p + "input_layernorm.weight"])
        q = rope((h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D))
        k = rope((h @ W[p + "self_attn.k_proj.weight"].T).view(T, G, D)).repeat_interleave(H // G, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, G, D).repeat_interleave(H // G, 1)
        s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask
        o = torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(T, H * D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    return norm(x, W["model.norm.weight"]) @ W["lm_head.weight"].T


def teacher_logits(d, ids, doc):
    """float64 logits (T, V) of one row, each document segment from position 0"""
    c = json.load(open(os.path.join(d, "config.json")))
    W = deepseek_ref.read_checkpoint(d)
    out, s = [], 0
    while s < len(ids):
        e = s + 1
        while e < len(ids) and doc[e] == doc[s]:
            e += 1
        out.append(deepseek_ref.forward(c, W, [int(i) for i in ids[s:e]]))
        s = e
    return torch.cat(out)


def write_noisy_copy(src, dst, scale, seed):
    """dst = src with gaussian noise (scale x each tensor's std) on its F32 tensors"""
    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    raw = bytearray(open(path, "rb").read())
    (hl,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hl])
    rng = np.random.default_rng(seed)
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = 8 + hl + t["data_offsets"][0], 8 + hl + t["data_offsets"][1]
        x = np.frombuffer(bytes(raw[b:e]), dtype=np.float32)
        x = x + scale * (x.std() + 1e-3) * rng.normal(size=x.shape).astype(np.float32)
        raw[b:e] = x.astype(np.float32).tobytes()
    open(path, "wb").write(bytes(raw))


def write_heldout(path, n_docs=12):
    words = ("the quick brown fox jumps over a lazy dog while seven sushi chefs slice fresh fish "
             "under paper lanterns and the tide rolls in slowly at dusk").split()
    rng = np.random.default_rng(7)
    with open(path, "w") as f:
        for i in range(n_docs):
            n = int(rng.integers(20, 60))
            f.write(" ".join(words[j] for j in rng.integers(0, len(words), n)).capitalize() + ".\n%\n")


def make_run(d, teacher=True, needle=True, extra=""):
    """tokenizer, held-out text, teacher and run config under d; returns the config path"""
    tok = os.path.join(d, "tok.json")
    subprocess.run([sys.executable, os.path.join(ORACLE, "deepseek_ref.py"), "tokenizer", tok], check=True)
    write_heldout(os.path.join(d, "heldout.txt"))
    if teacher:
        subprocess.run([sys.executable, os.path.join(ORACLE, "deepseek_ref.py"), "write", os.path.join(d, "teacher"),
                        "v2", "5", "--vocab", str(VOCAB)], check=True)
    cfg = os.path.join(d, "run.yaml")
    with open(cfg, "w") as f:
        f.write("""run:
  dir: {d}/run
data:
  seed: 3
  seq_len: 64
  batch_size: 2
  threads: 1
  tokenizer: {d}/tok.json
  sources:
    - {{name: train, path: {d}/heldout.txt, format: text, separator: "%"}}
teacher:
  checkpoint: {teacher}
eval:
  batches: 2
  threads: 1
  data:
    seed: 11
    sources:
      - {{name: heldout, path: {d}/heldout.txt, format: text, separator: "%"}}
{needle}{extra}""".format(d=d, teacher=os.path.join(d, "teacher") if teacher else '""',
                          needle="  needle: {lengths: [300, 1000], depths: [0.0, 1.0], trials: 2, seed: 9}\n"
                          if needle else "", extra=extra))
    return cfg


def heldout_batches(d, n=2):
    """the first n held-out batches, as sushi-loader writes them for the same data section"""
    cfg = os.path.join(d, "dump.yaml")
    with open(cfg, "w") as f:
        f.write("""data:
  seed: 11
  seq_len: 64
  batch_size: 2
  threads: 1
  needle_share: 0.0
  tokenizer: {d}/tok.json
  sources:
    - {{name: heldout, path: {d}/heldout.txt, format: text, separator: "%"}}
""".format(d=d))
    out = os.path.join(d, "batches")
    subprocess.run([os.path.join(BIN, "sushi-loader"), "--config", cfg, "--dump", str(n), out], check=True,
                   stdout=subprocess.DEVNULL)
    return [read_safetensors(os.path.join(out, f)) for f in sorted(os.listdir(out))]


def reference(d, model, batches, arch="llama"):
    """loss, ppl, agreement, kd, teacher ppl as sushi-eval defines them"""
    ce = kd = agree = tce = 0.0
    n = 0
    for b in batches:
        for r in range(b["tokens"].shape[0]):
            ids, tg, doc = b["tokens"][r], b["targets"][r], b["doc_ids"][r]
            z = student_logits(model, ids) if arch == "llama" else teacher_logits(model, ids, doc)
            lp = torch.log_softmax(z, -1)
            tlp = torch.log_softmax(teacher_logits(os.path.join(d, "teacher"), ids, doc), -1)
            for t in range(len(ids)):
                if tg[t] < 0:
                    continue
                n += 1
                ce -= lp[t, tg[t]].item()
                tce -= tlp[t, tg[t]].item()
                agree += int(lp[t].argmax() == tlp[t].argmax())
                kd += (tlp[t].exp() * (tlp[t] - lp[t])).sum().item()
    return dict(loss=ce / n, ppl=math.exp(ce / n), top1_agreement=agree / n, kd_loss=kd / n,
                teacher_ppl=math.exp(tce / n), tokens=n)


def needle_reference(model, length, depth, key):
    """1 when the float64 student's greedy continuation is the key, else 0"""
    ask = list(b" %05d" % key)
    fixed = len(PREAMBLE) + len(" The pass key is %05d. Remember it." % key) + len(QUESTION) + len(ask)
    n_fill = (length - fixed) // len(FILLER)
    before = min(int(depth * n_fill + 0.5), n_fill)
    text = PREAMBLE + FILLER * before + " The pass key is %05d. Remember it." % key + FILLER * (n_fill - before) + QUESTION
    ids = list(text.encode())
    for _ in ask:
        ids.append(int(student_logits(model, ids)[-1].argmax()))
    return int(ids[-len(ask):] == ask)


def needle_keys(seed, li, di, trials):
    """the pass keys of cell (li, di): SplitMix64 (models/rng.c) seeded per cell"""
    M = (1 << 64) - 1
    state = seed ^ (((li * 16 + di + 1) * 0x9E3779B97F4A7C15) & M)
    keys = []
    for _ in range(trials):
        state = (state + 0x9E3779B97F4A7C15) & M
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        keys.append(10000 + (z ^ (z >> 31)) % 90000)
    return keys


def close(a, b, rel, what):
    check(a is not None and abs(a - b) <= rel * max(abs(b), 1e-12), "%s: sushi-eval %r, reference %r" % (what, a, b))


def run_once(cfg, ckpt, log, *extra):
    p = subprocess.run([os.path.join(BIN, "sushi-eval"), "--config", cfg, "--once", ckpt] + list(extra),
                       stdout=subprocess.PIPE, stderr=open(log, "ab"), cwd=ROOT, timeout=120)
    lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.startswith("{")]
    return p.returncode, lines


def main():
    if not os.path.exists(os.path.join(BIN, "sushi-eval")) or not os.path.exists(os.path.join(BIN, "sushi-loader")):
        print("skip: sushi-eval or sushi-loader is not built")
        sys.exit(77)
    d = tmpdir()
    log = os.path.join(d, "eval.log")
    try:
        cfg = make_run(d)
        write_student(os.path.join(d, "student"), 1, step=40)
        batches = heldout_batches(d)
        rc, out = run_once(cfg, os.path.join(d, "student"), log)
        check(rc == 0 and len(out) == 1, "--once: exit %d, %d result lines\n%s" % (rc, len(out), tail(log)))
        got = got_student = out[0]
        ref = reference(d, os.path.join(d, "student"), batches)
        print("sushi-eval:", json.dumps(got))
        print("reference: ", json.dumps(ref))
        for k in ("ppl", "loss", "teacher_ppl"):
            close(got[k], ref[k], 1e-4, k)
        close(got["kd_loss"], ref["kd_loss"], 1e-4, "kd_loss")
        check(got["top1_agreement"] == ref["top1_agreement"],
              "top1_agreement %r, reference %r" % (got["top1_agreement"], ref["top1_agreement"]))
        check(got["tokens"] == ref["tokens"] and got["step"] == 40 and got["arch"] == "llama" and
              got["checkpoint"] == os.path.join(d, "student"), "tokens/step/arch/checkpoint: %r" % got)
        # passkey grid: 1000 tokens exceed the student's 512 positions -> null cells
        check(set(got["needle"]) == {"300@0", "300@1", "1000@0", "1000@1"}, "needle cells %r" % got["needle"])
        check(got["needle"]["1000@0"] is None and got["needle"]["1000@1"] is None, "long cells %r" % got["needle"])
        # eval.jsonl holds the same result
        lines = [json.loads(x) for x in open(os.path.join(d, "run", "eval.jsonl"))]
        check(lines == [got], "eval.jsonl %r" % lines)

        # the grid against a float64 greedy decode of the same prompts (keys drawn as
        # eval_needle.c draws them: SplitMix64 seeded per cell)
        for di, depth in enumerate((0.0, 1.0)):
            keys = needle_keys(9, 0, di, 2)
            acc = sum(needle_reference(os.path.join(d, "student"), 300, depth, k) for k in keys) / 2
            check(got["needle"]["300@%g" % depth] == acc, "needle 300@%g: %r, reference %r (keys %r)" %
                  (depth, got["needle"]["300@%g" % depth], acc, keys))
        check(got["needle_accuracy"] == (got["needle"]["300@0"] + got["needle"]["300@1"]) / 2,
              "needle_accuracy %r" % got["needle_accuracy"])

        # DeepSeek checkpoints evaluated as the model (by config.json): the teacher itself agrees
        # with itself; a perturbed copy agrees in part, as the float64 reference says
        rc, out = run_once(cfg, os.path.join(d, "teacher"), log, "eval.needle.lengths=[200,320]")
        check(rc == 0 and len(out) == 1, "--once teacher: exit %d\n%s" % (rc, tail(log)))
        t = out[0]
        check(t["arch"] == "deepseek" and t["top1_agreement"] == 1.0 and abs(t["kd_loss"]) < 1e-6 and t["step"] is None,
              "teacher as model: %r" % t)
        close(t["ppl"], ref["teacher_ppl"], 1e-4, "teacher as model: ppl")
        check(t["needle"] == {"200@0": None, "200@1": None, "320@0": 0.0, "320@1": 0.0}, "teacher needle %r" % t["needle"])
        noisy = os.path.join(d, "noisy")
        write_noisy_copy(os.path.join(d, "teacher"), noisy, 0.1, 3)
        rc, out = run_once(cfg, noisy, log, "eval.needle.trials=0")
        check(rc == 0 and len(out) == 1, "--once noisy teacher: exit %d\n%s" % (rc, tail(log)))
        got, ref = out[0], reference(d, noisy, batches, arch="deepseek")
        print("noisy teacher: sushi-eval", json.dumps(got), "\nreference", json.dumps(ref))
        for k in ("ppl", "loss", "teacher_ppl", "kd_loss"):
            close(got[k], ref[k], 1e-4, "noisy teacher: " + k)
        check(got["top1_agreement"] == ref["top1_agreement"] and 0.1 < ref["top1_agreement"] < 0.95,
              "noisy teacher: top1_agreement %r, reference %r" % (got["top1_agreement"], ref["top1_agreement"]))
        check(got["needle_accuracy"] is None and got["needle"] == {}, "no grid: %r" % got)

        # teacher log-probabilities recomputed per evaluation (over eval.kd_cache_mb): same numbers
        rc, out = run_once(cfg, os.path.join(d, "student"), log, "eval.kd_cache_mb=0", "eval.needle.trials=0")
        check(rc == 0 and len(out) == 1 and all(out[0][k] == got_student[k] for k in
              ("ppl", "top1_agreement", "teacher_ppl", "kd_loss")), "uncached teacher: %r" % out)

        # eval.teacher="" turns the teacher metrics off
        rc, out = run_once(cfg, os.path.join(d, "student"), log, 'eval.teacher=""', "eval.needle.trials=0")
        check(rc == 0 and len(out) == 1 and out[0]["top1_agreement"] is None and out[0]["teacher_ppl"] is None and
              out[0]["kd_loss"] is None and out[0]["ppl"] == got_student["ppl"], "no teacher: %r" % out)

        # failures: a truncated checkpoint exits 1 with a message naming it; no eval.data exits 2
        bad = os.path.join(d, "bad")
        shutil.copytree(os.path.join(d, "student"), bad)
        with open(os.path.join(bad, "model.safetensors"), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(bad, "model.safetensors")) // 2)
        rc, out = run_once(cfg, bad, log)
        check(rc == 1 and not out and "bad" in tail(log, 5), "truncated: exit %d\n%s" % (rc, tail(log, 5)))
        rc, out = run_once(cfg, os.path.join(d, "student"), log, "eval.data=null")
        check(rc == 2 and "eval.data" in tail(log, 2), "no eval.data: exit %d\n%s" % (rc, tail(log, 2)))
        print("ok")
    except AssertionError as e:
        print("FAIL:", e)
        print(tail(log))
        sys.exit(1)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
