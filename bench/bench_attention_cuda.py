"""PyTorch reference timings for bench_attention_cuda: scaled_dot_product_attention
(causal, bf16) forward and forward+backward, timed with CUDA events (median of reps).
Prints one line per shape: B T H D fwd_ms bwd_ms (bwd_ms = backward alone)."""
import sys
import torch
import torch.nn.functional as F


def median_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    reps = int(sys.argv[1])
    for spec in sys.argv[2:]:
        B, T, H, D = (int(x) for x in spec.split(","))
        q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        dout = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
        fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), reps)

        def fwd_bwd():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(out, (q, k, v), dout)
        both = median_ms(fwd_bwd, reps)
        print(f"{B} {T} {H} {D} {fwd:.4f} {max(both - fwd, 1e-6):.4f}", flush=True)


if __name__ == "__main__":
    main()
