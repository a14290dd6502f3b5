"""Prints a markdown table from a pytest-benchmark JSON file: per group, every implementation's
median time and peak extra memory, and how much faster / leaner the fused one is.

    python scripts/summarize_bench.py bench.json [--bandwidth-gbs 4300] [--exp-per-s 4e12]
                                                 [--flops-per-s 6.7e13]

Given the device's rates, the fused rows also show the fraction of DESIGN.md's hardware floor
they reach (floor time / measured time), float32 (s = 4 bytes), int32 indices:
- spmm: bytes >= 4(n+1) + E*(4+4) + 2*n*d*s, over the bandwidth (twice for forward+backward);
- intent_propagate: spmm's bytes plus r (n*d*s) and the row sums (n*s); forward+backward about
  three times the forward;
- intent_assign, forward: max(2*n*d*s / BW, 4*n*d*K / flops, n*K / exp rate);
- infonce, forward (infonce-fwd-*): max((2B + M)*d*s / BW, 2*B*M*d / flops, B*M / exp rate).
A bound whose rate is not given is left out.
"""
import argparse
import json
from collections import defaultdict
from typing import Optional

S = 4  # bytes per float32 value


def spmm_bytes(info) -> float:
    n, e, d = info["nodes"], info["edges"], info["d"]
    return 4 * (n + 1) + e * 8 + 2 * n * d * S


def floor_seconds(group: str, info, bandwidth: Optional[float], exp_rate: Optional[float],
                  flops: Optional[float]) -> Optional[float]:
    """DESIGN.md's floor for a fused benchmark, or None where the group has none or no rate."""
    def bound(amount, rate):
        return amount / rate if rate else 0.0

    backward_too = "-fwdbwd-" in group
    if group.startswith("spmm-"):
        seconds = bound(spmm_bytes(info), bandwidth) * (2 if backward_too else 1)
    elif group.startswith("intent_propagate-"):
        n, d = info["nodes"], info["d"]
        seconds = bound(spmm_bytes(info) + n * d * S + n * S, bandwidth) * (3 if backward_too else 1)
    elif group.startswith("intent_assign-fwd-"):
        n, d, K = info["nodes"], info["d"], info["K"]
        seconds = max(bound(2 * n * d * S, bandwidth), bound(4 * n * d * K, flops),
                      bound(n * K, exp_rate))
    elif group.startswith("infonce-fwd-"):
        B, M, d = info["B"], info["M"], info["d"]
        seconds = max(bound((2 * B + M) * d * S, bandwidth), bound(2 * B * M * d, flops),
                      bound(B * M, exp_rate))
    else:
        return None
    return seconds or None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("json_file")
    parser.add_argument("--bandwidth-gbs", type=float, default=None,
                        help="device memory bandwidth, read + write (a device-to-device copy)")
    parser.add_argument("--exp-per-s", type=float, default=None,
                        help="exponentials per second (about 4e12 on an H100/H200)")
    parser.add_argument("--flops-per-s", type=float, default=None,
                        help="float32 FMA-unit FLOP/s (about 6.7e13 on an H100/H200 SXM)")
    args = parser.parse_args()
    bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else None
    data = json.load(open(args.json_file))
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        impl = info.get("impl", bench["name"])
        groups[bench["group"]][impl] = (bench["stats"]["median"] * 1e3, info.get("peak_extra_mb"), info)
    print("| group | impl | median ms | extra MB | fused speed-up | fused memory ratio | floor |")
    print("|---|---|---|---|---|---|---|")
    for group in sorted(groups):
        impls = groups[group]
        fused = impls.get("fused")
        for impl, (ms, mb, info) in sorted(impls.items(), key=lambda kv: kv[0] != "fused"):
            speed = mem = floor = ""
            if fused and impl != "fused":
                speed = f"{ms / fused[0]:.1f}x"
                if mb and fused[1]:
                    mem = f"{mb / max(fused[1], 1e-3):.1f}x"
            if impl == "fused":
                seconds = floor_seconds(group, info, bandwidth, args.exp_per_s, args.flops_per_s)
                if seconds:
                    floor = f"{seconds * 1e3 / ms:.0%} of floor ({seconds * 1e3:.3f} ms)"
            print(f"| {group} | {impl} | {ms:.3f} | {mb} | {speed} | {mem} | {floor} |")


if __name__ == "__main__":
    main()
