"""sushi-teacher serve end to end, on a random V3-flavour checkpoint written by
tests/oracle/deepseek_ref.py: info fields equal the checkpoint's; score of two rows
(one cut short by lengths) equals the top-K of deepseek_ref.py's float64 logits (ids
exact, log-probabilities and tail within 1e-4) and the `sushi-teacher score` CLI output;
greedy generate equals argmax over a recomputation of every prefix, from a prompt tensor
and from text; every malformed message of sushi_e2e is dropped and counted, every bad
request gets an error naming its cause, and the service still answers afterwards; the
Python client in README.md (after <!-- teacher-client -->) runs and prints the
reference values; SIGTERM exits 0.

The helpers (checkpoint, reference top-K, wire client) are shared with
test_teacher_pipeline.py."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import *  # noqa: E402,F401,F403

ORACLE = os.path.join(ROOT, "tests", "oracle", "deepseek_ref.py")
VOCAB = 257  # the byte-level test tokenizer: ids 0-255 bytes, 256 </s>


def oracle(*args):
    """runs deepseek_ref.py; exit 77 (skip) when PyTorch is missing"""
    r = subprocess.run(["/usr/bin/python3", ORACLE] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        if "No module named 'torch'" in r.stderr:
            print("skip: PyTorch is not installed")
            sys.exit(77)
        raise AssertionError("deepseek_ref.py %s failed:\n%s" % (args[0], r.stderr[-2000:]))
    return r.stdout


def write_checkpoint(d, seed=21):
    ck = os.path.join(d, "ck")
    oracle("write", ck, "v3", seed, "--vocab", VOCAB)
    return ck


def reference_logits(ck, seqs, d):
    """float64 reference logits (as f32) of each sequence: a list of (n, V) arrays"""
    ids, out = os.path.join(d, "ref-ids.txt"), os.path.join(d, "ref-logits.f32")
    with open(ids, "w") as f:
        for s in seqs:
            f.write(" ".join(str(int(v)) for v in s) + "\n")
    oracle("logits", ck, ids, out)
    z = np.fromfile(out, np.float32)
    res, o = [], 0
    for s in seqs:
        n = len(s)
        res.append(z[o:o + n * VOCAB].reshape(n, VOCAB).astype(np.float64))
        o += n * VOCAB
    assert o == z.size, "reference logits: %d values for %d" % (z.size, o)
    return res


def reference_topk(z, K, T):
    """(ids [n,K], logprobs [n,K], tail [n]) of logits z (n, V) at temperature T"""
    ids = np.argsort(-z, axis=1, kind="stable")[:, :K]
    y = z / T
    m = y.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(y - m).sum(axis=1))
    lp = np.take_along_axis(y, ids, 1) - lse[:, None]
    rest = y.copy()
    np.put_along_axis(rest, ids, -np.inf, 1)
    mr = rest.max(axis=1, keepdims=True)
    tail = mr[:, 0] + np.log(np.exp(rest - mr).sum(axis=1)) - lse
    return ids, lp, tail


def check_topk(got_ids, got_lp, got_tail, z, K, T, what, tol=1e-4):
    ids, lp, tail = reference_topk(z, K, T)
    assert np.array_equal(got_ids, ids), "%s: top-K ids %s != reference %s" % (what, got_ids.tolist(), ids.tolist())
    err = max(np.abs(got_lp - lp).max(), np.abs(got_tail - tail).max())
    assert err < tol, "%s: log-probabilities differ from the reference by %g" % (what, err)


class Client:
    """a DEALER talking to a ROUTER: request(op, tensors, **meta) -> (kind, header, tensors)"""

    def __init__(self, ctx, ep):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(ep)
        self.next_id = 100

    def send(self, frames):
        self.sock.send_multipart(frames)

    def recv(self, timeout=20.0):
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError("no reply within %.0f s" % timeout)
        return decode(self.sock.recv_multipart())

    def request(self, op, tensors=None, kind="request", timeout=30.0, **meta):
        self.next_id += 1
        m = dict(meta)
        if op is not None:
            m["op"] = op
        self.send(encode(kind, id=self.next_id, meta=m, tensors=tensors))
        k, hdr, t = self.recv(timeout)
        assert hdr["id"] == self.next_id, "reply id %d != request id %d" % (hdr["id"], self.next_id)
        return k, hdr, t

    def ok(self, op, tensors=None, **meta):
        k, hdr, t = self.request(op, tensors, **meta)
        assert k == "reply", "%s: %s %s" % (op, k, hdr.get("meta"))
        return hdr["meta"], t

    def error(self, op, tensors=None, expect="", kind="request", **meta):
        k, hdr, _ = self.request(op, tensors, kind=kind, **meta)
        assert k == "error", "%s %s: expected an error, got %s" % (op, meta, k)
        msg = hdr["meta"]["message"]
        assert expect in msg, "error message %r does not name %r" % (msg, expect)
        return msg


def safetensors_numel(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    return sum(int(np.prod(v["shape"])) for k, v in hdr.items() if k != "__metadata__")


def readme_client():
    """the ```python block right after <!-- teacher-client --> in README.md"""
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- teacher-client -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md: no ```python block after <!-- teacher-client -->"
    return m.group(1)


def main():
    d = tmpdir()
    procs = []
    try:
        ck = write_checkpoint(d)
        cfg = json.load(open(os.path.join(ck, "config.json")))
        tok = os.path.join(d, "tokenizer.json")
        oracle("tokenizer", tok)
        ep = "ipc://%s/t.sock" % d
        log = os.path.join(d, "serve.log")
        srv = spawn(["sushi-teacher", "serve", "--model", ck, "--bind", ep, "--tokenizer", tok, "--threads", "1"], log)
        procs.append(srv)
        ctx = zmq.Context()
        c = Client(ctx, ep)

        # info
        info, _ = c.ok("info")
        want = {"model_type": "deepseek_v3", "vocab_size": VOCAB, "hidden_size": cfg["hidden_size"],
                "layers": cfg["num_hidden_layers"], "experts": cfg["n_routed_experts"],
                "max_seq": cfg["max_position_embeddings"], "backend": "cpu", "tokenizer": True,
                "params": safetensors_numel(os.path.join(ck, "model.safetensors"))}
        for k, v in want.items():
            assert info[k] == v, "info.%s = %r, expected %r" % (k, info[k], v)

        # score: two rows, the second cut at 5 by lengths; the README's rows too
        K, T = 5, 0.7
        rows = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, -1, -1, -1]], np.int32)
        readme_rows = [[3, 1, 4, 1, 5, 9], [2, 7, 1, 8, 2, 8]]
        prompt = [72, 105, 33]
        seqs = [rows[0], rows[1][:5]] + readme_rows
        meta, out = c.ok("score", {"tokens": rows, "lengths": np.array([8, 5], np.int32)}, topk=K, temperature=T)
        assert meta["topk"] == K and abs(meta["temperature"] - T) < 1e-6, meta
        assert out["topk_ids"].shape == (2, 8, K) and out["topk_ids"].dtype == np.int32
        assert out["topk_logprobs"].shape == (2, 8, K) and out["tail_logprob"].shape == (2, 8)

        # greedy generation from a prompt tensor, then checked against every prefix
        gmeta, gout = c.ok("generate", {"prompt": np.array(prompt, np.int32)}, max_new_tokens=6, stop=[])
        gen = gout["tokens"].tolist()
        assert len(gen) == 6 and gmeta["prompt_tokens"] == 3, (gen, gmeta)
        assert isinstance(gmeta.get("text"), str), gmeta
        prefixes = [prompt + gen[:i] for i in range(len(gen))]

        ref = reference_logits(ck, seqs + prefixes, d)
        check_topk(out["topk_ids"][0], out["topk_logprobs"][0], out["tail_logprob"][0], ref[0], K, T, "row 0")
        check_topk(out["topk_ids"][1, :5], out["topk_logprobs"][1, :5], out["tail_logprob"][1, :5], ref[1], K, T,
                   "row 1")
        pad = out["topk_ids"][1, 5:]
        assert (pad == -1).all() and (out["topk_logprobs"][1, 5:] == 0).all(), "padding: %s" % pad.tolist()
        for i, z in enumerate(ref[len(seqs):]):
            assert int(np.argmax(z[-1])) == gen[i], "generated token %d: %d, argmax of the reference %d" % (
                i, gen[i], int(np.argmax(z[-1])))

        # the same scores from the score CLI
        ids_file = os.path.join(d, "cli-ids.txt")
        with open(ids_file, "w") as f:
            f.write("3 1 4 1 5 9 2 6\n2 7 1 8 2\n")
        r = subprocess.run([os.path.join(BIN, "sushi-teacher"), "score", "--model", ck, "--ids-file", ids_file,
                            "--topk", str(K), "--temperature", str(T)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(l) for l in r.stdout.splitlines()]
        assert len(lines) == 13, "score CLI: %d lines" % len(lines)
        for l in lines:
            b, t = l["seq"], l["pos"]
            assert l["ids"] == out["topk_ids"][b, t].tolist(), "CLI ids differ at %d,%d" % (b, t)
            assert np.abs(np.array(l["logprobs"]) - out["topk_logprobs"][b, t]).max() < 1e-5
            assert abs(l["tail"] - out["tail_logprob"][b, t]) < 1e-5

        # generate from text: the byte-level tokenizer encodes "Hi!" as the prompt above
        tmeta, tout = c.ok("generate", max_new_tokens=6, stop=[], prompt="Hi!")
        assert tout["tokens"].tolist() == gen, "text prompt: %s != %s" % (tout["tokens"].tolist(), gen)
        assert tmeta["text"] == gmeta["text"]
        if all(v < 128 for v in gen):
            assert tmeta["text"] == bytes(gen).decode("ascii"), tmeta["text"]
        # sampling is reproducible with a seed and stays within top_k
        s1 = c.ok("generate", {"prompt": np.array(prompt, np.int32)}, max_new_tokens=5, temperature=1.0, top_k=3,
                  seed=5, stop=[])[1]["tokens"].tolist()
        s2 = c.ok("generate", {"prompt": np.array(prompt, np.int32)}, max_new_tokens=5, temperature=1.0, top_k=3,
                  seed=5, stop=[])[1]["tokens"].tolist()
        assert s1 == s2 and len(s1) == 5, (s1, s2)

        # malformed wire messages: dropped and counted, never answered
        bad = malformed_messages() + [("oversized", oversized_message())]
        for label, frames in bad:
            c.send(frames)
        info, _ = c.ok("info")
        assert info["bad_messages"] == len(bad), "bad_messages %d, sent %d" % (info["bad_messages"], len(bad))

        # bad requests: an error naming the cause each
        z = lambda *s: np.zeros(s, np.int32)  # noqa: E731
        c.error("nonsense", expect="unknown op")
        c.error(None, expect="meta.op")
        c.error("info", kind="heartbeat", expect="kind request")
        c.error("score", expect="tokens")
        c.error("score", {"tokens": np.zeros((2, 4), np.float32)}, expect="tokens must be")
        c.error("score", {"tokens": z(8)}, expect="tokens must be")
        c.error("score", {"tokens": np.full((1, 4), VOCAB, np.int32)}, expect="outside")
        c.error("score", {"tokens": np.full((1, 4), -3, np.int32)}, expect="outside")
        c.error("score", {"tokens": z(1, cfg["max_position_embeddings"] + 1)}, expect="max_seq")
        c.error("score", {"tokens": z(2, 4), "lengths": z(3)}, expect="lengths")
        c.error("score", {"tokens": z(2, 4), "lengths": np.array([4, 9], np.int32)}, expect="lengths[1]")
        c.error("score", {"tokens": z(1, 4)}, topk=0, expect="meta.topk")
        c.error("score", {"tokens": z(1, 4)}, topk=VOCAB + 1, expect="meta.topk")
        c.error("score", {"tokens": z(1, 4)}, temperature=-1.0, expect="meta.temperature")
        c.error("score", {"tokens": z(1, 4)}, temperature="hot", expect="meta.temperature")
        c.error("score", {"tokens": z(5000, 256)}, topk=VOCAB, expect="oversize")
        c.error("generate", expect="prompt")
        c.error("generate", {"prompt": z(2, 2)}, expect="prompt must be")
        c.error("generate", {"prompt": z(3)}, max_new_tokens=10 ** 6, expect="max_new_tokens")
        c.error("generate", {"prompt": np.array([999], np.int32)}, expect="outside")
        c.error("generate", {"prompt": z(3)}, top_p=0.0, expect="top_p")
        c.error("generate", {"prompt": z(3)}, stop=["x"], expect="meta.stop")
        info, _ = c.ok("info")
        assert info["errors"] == 22 and info["bad_messages"] == len(bad), info
        assert srv.poll() is None, "the service exited"

        # the README client, exactly as written
        r = subprocess.run(["/usr/bin/python3", "-c", readme_client()], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, SUSHI_TEACHER=ep))
        assert r.returncode == 0, "README client failed:\n" + r.stderr
        got = r.stdout.splitlines()
        ids, lp, tail = reference_topk(ref[3], 4, 1.0)
        assert got[0] == "model deepseek_v3 vocab %d layers %d backend cpu" % (VOCAB, cfg["num_hidden_layers"]), got
        assert got[1] == "topk_ids [2, 6, 4] %s" % ids[2].tolist(), (got[1], ids[2].tolist())
        vals = json.loads(got[2].split(" ", 1)[1])
        assert np.abs(np.array(vals) - lp[2]).max() < 2e-4, (vals, lp[2])
        assert abs(float(got[3].split()[1]) - tail[2]) < 2e-4, (got[3], tail[2])

        assert stop(srv) == 0, "serve: exit %s on SIGTERM\n%s" % (srv.returncode, tail_log(log))
        ctx.destroy(linger=0)
        print("ok: info, score (reference and CLI), generate, %d malformed messages, 22 bad requests, README client"
              % len(bad))
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(d, ignore_errors=True)


def tail_log(path):
    return tail(path)


if __name__ == "__main__":
    main()
