"""Where the time of one IRLLRec training step goes, on a GPU: step times of the fused and torch
paths (float32, and with TF32 matmuls allowed) and the fused step's kernels by total GPU time.

    python scripts/profile_step.py [--dataset amazon] [--top 25] [--compile] [--bf16] [--graph]

--compile adds the torch path under torch.compile with TF32 matmuls allowed (the best a user gets
without this library), timed after its compiling calls.

The step is the one of benchmarks/test_bench_train_step.py (the dataset's graph, 1536-wide random
text, batch 4096, forward + backward + Adam). Prints markdown tables.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import conftest  # noqa: E402,F401  (sets IRLLREC_FAST_SHARED like the benchmarks)
from test_bench_train_step import make_model, step_inputs  # noqa: E402


def make_step(impl: str, dataset: str, device: torch.device, compile: bool = False,
              graph: bool = False, **config):
    model = make_model(impl, dataset, device, **config)
    batch = tuple(t.to(device) for t in step_inputs(dataset)[3])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                 capturable=graph)

    def total_loss():
        return model.calculate_loss(batch)[0]

    loss_fn = torch.compile(total_loss) if compile else total_loss

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    if not graph:
        return step
    replay = capture(step)
    weights = model.user_intent  # a trainable parameter every step's Adam update moves
    before = weights.detach().clone()
    replay()
    torch.cuda.synchronize()
    if torch.equal(before, weights.detach()):
        raise RuntimeError("the captured step left the weights unchanged")

    def replay_step():
        replay()

    # the graph holds no Python references: without these the model, optimiser and batch it
    # replays on would be freed (and the peak memory measured without them)
    replay_step.owners = (model, optimizer, batch)
    return replay_step


def capture(step, warmup: int = 3):
    """The step recorded once as a CUDA graph (after `warmup` eager calls on a side stream, as
    torch.cuda.graphs asks); returns the graph's replay, which launches it all at once."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def time_ms(step, rounds: int = 20) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def print_row(label: str, impl: str, dataset: str, device: torch.device, tf32: bool,
              **config) -> None:
    """One markdown row: the step's median time and peak memory (or why it could not run)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    matmul = "tf32" if tf32 else "fp32"
    try:
        step = make_step(impl, dataset, device, **config)
    except Exception as error:  # noqa: BLE001  (a failed capture must not hide the other rows)
        print(f"| {label} | {matmul} | failed: {str(error).splitlines()[0][:150]} | |", flush=True)
        return
    torch.cuda.reset_peak_memory_stats()
    ms = time_ms(step)
    peak = torch.cuda.max_memory_allocated() / 2**20
    print(f"| {label} | {matmul} | {ms:.2f} | {peak:.0f} |", flush=True)
    del step
    torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile of the torch path with TF32 allowed")
    parser.add_argument("--bf16", action="store_true",
                        help="also time the fused step with text_mlp_bf16 (docs/precision.md)")
    parser.add_argument("--graph", action="store_true",
                        help="also time the fused step captured as one CUDA graph (launch "
                             "overhead gone; Adam capturable)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("profile_step.py needs a CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    print(f"## IRLLRec step, {args.dataset} shapes, {torch.cuda.get_device_name(device)}\n")
    print("| impl | matmul | median ms | peak MB |")
    print("|---|---|---|---|")
    variants = [("fused", "fused", {}), ("torch", "torch", {})]  # (label, impl, make_step args)
    if args.bf16:
        variants.append(("fused, text_mlp_bf16", "fused", {"text_mlp_bf16": True}))
    for tf32 in (False, True):
        for label, impl, config in variants:
            print_row(label, impl, args.dataset, device, tf32, **config)
    step = make_step("fused", args.dataset, device)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    rounds = 5
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(rounds):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in kernels)
    print(f"\n## fused float32 step: GPU kernels, per step (total {total / rounds / 1e3:.2f} ms "
          "of kernel time)\n")
    print("| kernel | calls | ms | share |")
    print("|---|---|---|---|")
    for e in kernels[:args.top]:
        name = e.key.replace("|", "/")[:110]
        print(f"| {name} | {e.count // rounds} | {e.self_device_time_total / rounds / 1e3:.3f} "
              f"| {e.self_device_time_total / max(total, 1):.1%} |")

    # after the eager rows and the kernel table: a capture that fails can leave the device in a
    # state to keep away from them
    if args.graph:
        print("\n## the fused step captured as one CUDA graph\n")
        print("| impl | matmul | median ms | peak MB |")
        print("|---|---|---|---|")
        for tf32 in (False, True):
            print_row("fused, CUDA graph", "fused", args.dataset, device, tf32, graph=True)
    if args.compile:  # last: its first call compiles for about a minute
        print("\n## the torch path under torch.compile\n")
        print("| impl | matmul | median ms | peak MB |")
        print("|---|---|---|---|")
        print_compiled_row(args.dataset, device)
    return 0


def print_compiled_row(dataset: str, device: torch.device) -> None:
    """torch.compile of the torch path with TF32 allowed, timed after its compiling call."""
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        step = make_step("torch", dataset, device, compile=True)
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - start
        torch.cuda.reset_peak_memory_stats()
        ms = time_ms(step)
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"| torch.compile(torch) | tf32 | {ms:.2f} | {peak:.0f} |  (first call, compiling: "
              f"{compile_s:.0f} s)", flush=True)
    except Exception as error:  # noqa: BLE001  (print why, as print_row does)
        print(f"| torch.compile(torch) | tf32 | failed: {str(error).splitlines()[0][:150]} | |",
              flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
