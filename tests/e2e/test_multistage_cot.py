"""sushi-teacher generate --prompts-file (chain-of-thought data for a training stage):
a tiny DeepSeek checkpoint and the byte-level tokenizer from tests/oracle/deepseek_ref.py;
each {"prompt"} line becomes {"text": prompt + continuation}, where the greedy
continuation equals the argmax over the float64 reference logits of every prefix
(stopping at </s>); blank lines are skipped, the output keeps the input order; sampled
generation is reproducible per seed; a line without "prompt" is refused with its line
number and no output file is written."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_teacher_serve import VOCAB, oracle, reference_logits, write_checkpoint  # noqa: E402
from sushi_e2e import *  # noqa: E402,F401,F403

PROMPTS = ["Hi!", "The pass key is", "abc"]
MAX_NEW = 5


def greedy_reference(ck, prompt, d):
    seq = list(prompt.encode())
    new = []
    for _ in range(MAX_NEW):
        z = reference_logits(ck, [seq], d)[0]
        nxt = int(np.argmax(z[-1]))
        if nxt == VOCAB - 1:   # </s>
            break
        new.append(nxt)
        seq.append(nxt)
    return prompt + bytes(new).decode("utf-8", errors="replace")


def generate(ck, tok, prompts_file, out, *extra):
    return subprocess.run([os.path.join(BIN, "sushi-teacher"), "generate", "--model", ck, "--tokenizer", tok,
                           "--prompts-file", prompts_file, "--out", out, "--max-new", str(MAX_NEW)] + list(extra),
                          capture_output=True, text=True, timeout=60)


def main():
    d = tmpdir()
    try:
        ck = write_checkpoint(d)
        tok = os.path.join(ck, "tokenizer.json")   # the default --tokenizer: MODEL/tokenizer.json
        oracle("tokenizer", tok)
        src = os.path.join(d, "prompts.jsonl")
        with open(src, "w") as f:
            f.write(json.dumps({"prompt": PROMPTS[0]}) + "\n\n")
            for p in PROMPTS[1:]:
                f.write(json.dumps({"prompt": p, "id": 7}) + "\n")
        out = os.path.join(d, "cot.jsonl")
        r = subprocess.run([os.path.join(BIN, "sushi-teacher"), "generate", "--model", ck, "--prompts-file", src,
                            "--out", out, "--max-new", str(MAX_NEW)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        lines = [json.loads(l) for l in open(out).read().splitlines()]
        want = [greedy_reference(ck, p, d) for p in PROMPTS]
        assert [l["text"] for l in lines] == want, "got %s\nwant %s" % (lines, want)
        assert all(set(l) == {"text"} for l in lines), lines
        assert any(len(l["text"]) > len(p) for l, p in zip(lines, PROMPTS)), "nothing generated: %s" % lines

        # seeded sampling: same seed, same file; another seed, (almost surely) another
        s1, s2, s3 = (os.path.join(d, n) for n in ("s1.jsonl", "s2.jsonl", "s3.jsonl"))
        for path, seed in ((s1, 3), (s2, 3), (s3, 4)):
            r = generate(ck, tok, src, path, "--temperature", "2.0", "--seed", str(seed))
            assert r.returncode == 0, r.stderr[-2000:]
        assert open(s1).read() == open(s2).read()
        assert open(s1).read() != open(s3).read(), "seeds 3 and 4 sampled the same text"

        # a bad line: refused, naming the file and line; nothing written
        bad = os.path.join(d, "bad.jsonl")
        with open(bad, "w") as f:
            f.write(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"text": "no prompt"}) + "\n")
        nope = os.path.join(d, "nope.jsonl")
        r = generate(ck, tok, bad, nope)
        assert r.returncode == 1 and "bad.jsonl:2" in r.stderr and "prompt" in r.stderr, r.stderr[-1000:]
        assert not os.path.exists(nope)
        r = generate(ck, tok, src, "")   # --out empty: usage error
        assert r.returncode != 0
        print("ok: %d continuations equal the reference greedy ones" % len(lines))
        return 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
