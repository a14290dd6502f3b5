"""Prints a markdown table from a pytest-benchmark JSON file: per group, every implementation's
median time and peak extra memory, and how much faster / leaner the fused one is.

    python scripts/summarize_bench.py bench.json [--bandwidth-gbs 4300]

With --bandwidth-gbs, spmm groups also show the fused kernel's fraction of its memory floor
(DESIGN.md: bytes >= 4(n+1) + E*(4+4) + 2*n*d*4, int32 indices, float32 values). With
--exp-per-s (about 4e12 on an H100/H200), infonce forward groups (infonce-fwd-*) show the fused
kernel's time over its exp-unit floor, B * M exponentials.
"""
import argparse
import json
from collections import defaultdict


def spmm_floor_ms(info, bandwidth_gbs):
    n, e, d = info["nodes"], info["edges"], info["d"]
    passes = 2 if "fwdbwd" in info.get("pass", "") else 1
    bytes_moved = 4 * (n + 1) + e * 8 + 2 * n * d * 4
    return passes * bytes_moved / (bandwidth_gbs * 1e9) * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("json_file")
    parser.add_argument("--bandwidth-gbs", type=float, default=None)
    parser.add_argument("--exp-per-s", type=float, default=None)
    args = parser.parse_args()
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
            if impl == "fused" and args.bandwidth_gbs and group.startswith("spmm-"):
                info = dict(info, **{"pass": group})
                floor = f"{spmm_floor_ms(info, args.bandwidth_gbs) / ms:.0%} of BW floor"
            if impl == "fused" and args.exp_per_s and group.startswith("infonce-fwd-"):
                exp_floor_ms = info["B"] * info["M"] / args.exp_per_s * 1e3
                floor = f"{ms / exp_floor_ms:.1f}x the exp floor ({exp_floor_ms:.2f} ms)"
            print(f"| {group} | {impl} | {ms:.3f} | {mb} | {speed} | {mem} | {floor} |")


if __name__ == "__main__":
    main()
