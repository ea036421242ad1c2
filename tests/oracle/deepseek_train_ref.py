#!/usr/bin/python3
"""PyTorch autograd reference for training a DeepSeek-style model (models/deepseek/train*.c),
in float64, from the checkpoint alone.

Usage: deepseek_train_ref.py grad DIR
  DIR holds an HF DeepSeek checkpoint (config.json + model.safetensors, read by
  deepseek_ref.read_checkpoint), case.json and inputs.bin. case.json: B, T, k (top-K
  width, 0 = cross-entropy only), doc_mask, vocab, smoothing, alpha, mode (0 forward,
  1 reverse, 2 jsd), temperature, jsd_beta, params (HF names in the order wanted).
  inputs.bin: as tests/oracle/student_ref.py reads it (ids, targets, doc ids when
  doc_mask, top-K ids, log-probabilities, tail).
  Each document segment (a run of equal doc ids in a row; the whole row without doc
  ids) is its own sequence from position 0 through deepseek_ref.forward (HF math); the
  logits of all rows go through student_ref's loss (label-smoothed CE mixed with the
  top-K KD divergence, mean over rows with a target).
  Writes DIR/out.bin: float64 loss, then the gradient of every name in params.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref  # noqa: E402
import student_ref  # noqa: E402


def segments(ids, doc):
    """(row, start, end) of each document segment"""
    B, T = ids.shape
    out = []
    for b in range(B):
        s = 0
        for t in range(1, T + 1):
            if t == T or (doc is not None and doc[b, t] != doc[b, t - 1]):
                out.append((b, s, t))
                s = t
    return out


def cmd_grad(d):
    case = json.load(open(os.path.join(d, "case.json")))
    c = json.load(open(os.path.join(d, "config.json")))
    W = deepseek_ref.read_checkpoint(d)
    names = case["params"]
    for k in names:
        W[k].requires_grad_(True)
    inp = student_ref.read_inputs(d, case)
    ids, doc = inp["ids"], inp["doc"]
    B, T = ids.shape
    with torch.enable_grad():
        z = torch.zeros(B, T, c["vocab_size"], dtype=torch.float64)
        parts = {}
        for b, s, e in segments(ids, doc):
            parts[(b, s)] = deepseek_ref.forward(c, W, ids[b, s:e].tolist())
        rows = []
        for b in range(B):
            rows.append(torch.cat([parts[k] for k in sorted(parts) if k[0] == b], 0))
        z = torch.stack(rows)
        loss = student_ref.loss_fn(lambda ids_, doc_: z, inp, case)
        loss.backward()
    with open(os.path.join(d, "out.bin"), "wb") as f:
        f.write(loss.detach().double().numpy().tobytes())
        for k in names:
            g = W[k].grad if W[k].grad is not None else torch.zeros_like(W[k])
            f.write(g.double().contiguous().numpy().tobytes())


def main():
    a = sys.argv[1:]
    if len(a) == 2 and a[0] == "grad":
        cmd_grad(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
