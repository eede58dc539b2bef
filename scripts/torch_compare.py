"""PyTorch on the same shapes as kcache_gpu_bench, where PyTorch is installed (no install here):
decode attention (llama1b shape: 32 query heads, 8 KV heads, head_dim 64, 32k context, batch 8,
fp32 like kcache's KV cache) with scaled_dot_product_attention, and one bf16 linear layer
(2048 -> 8192) at batch 1. Prints RESULT lines like the benchmark."""
import json
import sys

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001
    print(f"torch not available: {e}")
    sys.exit(0)
if not torch.cuda.is_available():
    print("torch: no CUDA")
    sys.exit(0)


def timed(fn, iters=20):
    fn()
    torch.cuda.synchronize()
    best = 1e30
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / 1e3)
    return best


dev = "cuda"
B, H, KVH, D, T, L = 8, 32, 8, 64, 32768, 16
q = torch.randn(B, H, 1, D, device=dev)
k = torch.randn(B, KVH, T, D, device=dev)
v = torch.randn(B, KVH, T, D, device=dev)
kk, vv = k.repeat_interleave(H // KVH, dim=1), v.repeat_interleave(H // KVH, dim=1)
t = timed(lambda: F.scaled_dot_product_attention(q, kk, vv))
read = B * KVH * T * D * 4 * 2  # the unique K/V bytes one layer reads
print("RESULT " + json.dumps({"what": "torch_sdpa_decode", "torch": torch.__version__, "batch": B, "context": T,
                              "ms_per_layer": t * 1e3, "ms_16_layers": t * 1e3 * L, "unique_kv_GBps": read / t / 1e9}))
x = torch.randn(1, 2048, device=dev, dtype=torch.bfloat16)
lin = torch.nn.Linear(2048, 8192, bias=False, device=dev, dtype=torch.bfloat16)
t = timed(lambda: lin(x), 100)
print("RESULT " + json.dumps({"what": "torch_linear_bf16", "shape": [2048, 8192], "batch": 1, "us": t * 1e6,
                              "weight_GBps": 2048 * 8192 * 2 / t / 1e9}))
