#!/usr/bin/env python3
"""Checks the capacity planner (`swiftdiffusion trace simulate`) against a measured multi-replica run (issue 14 item 5).
Standard library only; needs a PostgreSQL the replicas can share.

    python3 tools/bench/validate_planner.py --store postgres://USER:PASSWORD@127.0.0.1:5432/DB --replicas 2
    python3 tools/bench/validate_planner.py --store ... --replicas 3 --loras 12 --lora-cache-mb 4 --placement affinity,random,fifo

1. Stage times: a fresh `serve` (SQLite in a temporary folder, SWIFTDIFFUSION_THREADS = --threads) measured by
   tools/bench/stage_times.py at the run's size and steps, while --replicas - 1 other such servers run plain jobs back
   to back (the replicas share the machine; a replica's jobs are slower then than alone).
2. Measured run: --replicas `serve --store URL?schema=<fresh>` processes (each with --threads threads) on one shared
   queue; a generated long-tailed trace (`trace generate`, --requests) is replayed open-loop against the first replica
   (`trace replay`; the others take work from the shared queue), its arrivals compressed so the offered compute is
   about --utilization of the replicas' capacity (from the stage times).
3. Simulation: `trace simulate --placement affinity` with the same replica count and those stage times, on the
   replayed trace itself (the arrival times, sizes, steps and adapters that were really sent; the server's default
   model as the one base model).
4. Prints measured and simulated p50/p95 (submission to completion: the server's queue + total seconds) and the ratio
   simulated / measured p50; exits 1 when it is off by more than --tolerance (default 20 %).
With --loras N the replicas serve N LoRA files (copies of the embedded model's two, under names of their own) and keep
at most --lora-cache-mb of them each, so placement decides how often LoRAs load; with --placement affinity,random,fifo
the measured run is repeated per claim rule, each against the same trace, and the adapter loads (the replicas'
`swiftdiffusion_adapter_cache_total{result="miss"}`) and p95 of each are compared with affinity's. random is `serve
--placement random` (each job to the replica its id hashes to: a load balancer spreading requests at random); fifo is
the affinity claim with `serve --max-wait 0`: every queued job is due at once, so a free replica takes the oldest (no
affinity). Each is simulated with the simulator's policy of the same name (fifo: affinity with a maximum wait of 0).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {seconds} s")


def start_server(binary, threads, arguments, log):
    port = free_port()
    env = dict(os.environ, SWIFTDIFFUSION_THREADS=str(threads))
    process = subprocess.Popen([binary, "serve", "--host", "127.0.0.1", "--port", str(port)] + arguments,
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process)
    return process, url


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def background_load(url, spec, stop_event):
    """Plain jobs back to back on `url` until `stop_event` is set (one outstanding at a time)."""
    while not stop_event.is_set():
        try:
            request = urllib.request.Request(url + "/v1/images/jobs", data=json.dumps(spec).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                job = json.loads(response.read())
            while not stop_event.is_set():
                with urllib.request.urlopen(url + "/v1/images/jobs/" + job["id"], timeout=60) as response:
                    if json.loads(response.read())["status"] in ("succeeded", "failed", "cancelled"):
                        break
                time.sleep(0.05)
        except Exception:
            time.sleep(0.1)


def quantile(values, q):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftdiffusion", default=".build/debug/swiftdiffusion")
    parser.add_argument("--store", required=True, help="postgres://USER:PASSWORD@HOST:PORT/DATABASE (a fresh schema is used)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per replica")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--utilization", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--lora", default="outline")
    parser.add_argument("--controlnet", default="shapes-sd-controlnet-canny")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--tolerance", type=float, default=0.2)
    parser.add_argument("--out-dir", help="keep the traces, stage times and logs here (default: a temporary folder)")
    parser.add_argument("--loras", type=int, default=0, help="LoRA files the replicas serve (0: the embedded model's two)")
    parser.add_argument("--lora-cache-mb", type=int, help="each replica's LoRA cache (serve --lora-cache-mb)")
    parser.add_argument("--placement", default="affinity",
                        help="claim rules to measure, comma-separated: affinity (serve's default), random (serve --placement "
                             "random), fifo (serve --max-wait 0)")
    args = parser.parse_args()
    if not 1 <= args.replicas <= 8:
        raise SystemExit("--replicas must be between 1 and 8")
    binary = os.path.abspath(args.swiftdiffusion)
    work = args.out_dir or tempfile.mkdtemp(prefix="validate-planner-")
    os.makedirs(work, exist_ok=True)
    logs = open(os.path.join(work, "servers.log"), "w")
    policies = [p.strip() for p in args.placement.split(",") if p.strip()]
    if not policies or any(p not in ("affinity", "random", "fifo") for p in policies):
        raise SystemExit("--placement takes affinity, random and/or fifo")
    extra = []
    if args.loras > 0:
        models = os.path.join(work, "models")
        os.makedirs(os.path.join(models, "loras"), exist_ok=True)
        shipped = os.path.join(HERE, "..", "..", "models", "shapes-sd-loras")
        sources = sorted(os.path.join(shipped, f) for f in os.listdir(shipped) if f.endswith(".safetensors"))
        for i in range(args.loras):
            shutil.copyfile(sources[i % len(sources)], os.path.join(models, "loras", f"lora-{i:03d}.safetensors"))
        extra += ["--models", models]
        args.lora = "lora-000"
    if args.lora_cache_mb is not None:
        extra += ["--lora-cache-mb", str(args.lora_cache_mb)]

    # 1. Stage times on one fresh server, while --replicas - 1 other servers run plain jobs back to back: a replica's
    #    service times as they are when the replicas share the machine (alone, jobs run about a quarter faster here).
    stages_path = os.path.join(work, "stage-times.json")
    state = tempfile.mkdtemp(prefix="planner-state-")
    servers = []
    stop_background = threading.Event()
    try:
        for i in range(args.replicas):
            servers.append(start_server(binary, args.threads, ["--database", os.path.join(state, f"jobs-{i}.sqlite"),
                                                               "--lora-deadline", "0"] + extra, logs))
        plain = {"prompt": "background", "steps": args.steps, "width": args.size, "height": args.size}
        workers = [threading.Thread(target=background_load, args=(url, plain, stop_background), daemon=True)
                   for _, url in servers[1:]]
        for worker in workers:
            worker.start()
        subprocess.run([sys.executable, os.path.join(HERE, "stage_times.py"), "--url", servers[0][1], "--lora", args.lora,
                        "--controlnet", args.controlnet, "--steps", str(args.steps), "--size", str(args.size),
                        "--repetitions", "5", "--out", stages_path], check=True, stdout=subprocess.DEVNULL)
    finally:
        stop_background.set()
        for process, _ in servers:
            stop(process)
        shutil.rmtree(state, ignore_errors=True)
    with open(stages_path) as handle:
        stages = json.load(handle)
    print("stage times:", json.dumps({k: v for k, v in stages.items() if k != "source"}))

    # The trace: long-tailed adapters, arrivals compressed to the wanted utilization.
    trace_in = os.path.join(work, "trace-in.jsonl")
    subprocess.run([binary, "trace", "generate", "--requests", str(args.requests), "--seed", str(args.seed), "--services", "1",
                    "--instances", "1", "--days", "0.01", "--out", trace_in], check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in open(trace_in) if line.strip()]
    span = max(r["timestamp"] for r in records) - min(r["timestamp"] for r in records)
    def compute(r):
        controls = min(len(r.get("controlnets", [])), 3)
        return stages["fixed_s"] + args.steps * stages["denoise_step_s"] * (1 + stages["controlnet_step_fraction"] * controls)
    offered = sum(compute(r) for r in records)
    # Offered compute / (span / speed) = utilization x replicas.
    speed = args.utilization * args.replicas * span / offered
    print(f"trace: {len(records)} requests over {span:.0f} s; offered compute {offered:.1f} s; speed {speed:.2f}x")

    # 2. The measured run per claim rule: replicas on one PostgreSQL queue, a fresh schema each.
    # The simulator counts LoRAs at their file size (float16 here); the server's LoRA cache counts them parsed to
    # float32, twice that: its budget in the simulator's units is half.
    cache_bytes = stages["base_model_bytes"] + 4 * stages["controlnet_bytes"] + (
        (args.lora_cache_mb << 20) // 2 if args.lora_cache_mb is not None else 1 << 34)
    outcome = {}
    for policy in policies:
        outcome[policy] = measure(args, binary, work, logs, extra, policy, trace_in, speed, stages_path, cache_bytes)
    if "affinity" in outcome:
        a = outcome["affinity"]
        for other in (p for p in policies if p != "affinity"):
            f = outcome[other]
            print(f"measured affinity vs {other}: adapter loads {a['loads']} vs {f['loads']} "
                  f"({100 * (a['loads'] / max(f['loads'], 1) - 1):+.1f} %), p95 {a['p95']:.3f} vs {f['p95']:.3f} s "
                  f"({a['p95'] / f['p95']:.2f}x)")
    print(f"files: {work}")
    ratio = outcome[policies[0]]["ratio"]
    sys.exit(0 if abs(ratio - 1) <= args.tolerance else 1)


def scrape_misses(url):
    """Adapter loads so far: the replica's LoRA and ControlNet cache misses."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("swiftdiffusion_adapter_cache_total{") and 'result="miss"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def measure(args, binary, work, logs, extra, policy, trace_in, speed, stages_path, cache_bytes):
    # fifo: a maximum wait of 0 makes every queued job due, so the claim takes the oldest (the same rule, no affinity).
    max_wait = 0 if policy == "fifo" else 30
    claim = ["--placement", "random"] if policy == "random" else []
    schema = f"planner_{policy}_{int(time.time())}"
    store = args.store + ("&" if "?" in args.store else "?") + "schema=" + schema
    replicas = []
    loads = 0
    try:
        for _ in range(args.replicas):
            replicas.append(start_server(binary, args.threads, ["--store", store, "--queue-capacity", "1024", "--lora-deadline", "0",
                                                                "--max-wait", str(max_wait)] + claim + extra, logs))
        trace_out = os.path.join(work, f"trace-measured-{policy}.jsonl")
        started = time.time()
        subprocess.run([binary, "trace", "replay", "--url", replicas[0][1], "--trace", trace_in, "--speed", f"{speed:.6f}",
                        "--width", str(args.size), "--height", str(args.size), "--steps", str(args.steps),
                        "--max-in-flight", "1024", "--poll-seconds", "0.5", "--out", trace_out], check=True, stdout=subprocess.DEVNULL)
        print(f"{policy}: replayed in {time.time() - started:.0f} s")
        loads = sum(scrape_misses(url) for _, url in replicas)
    finally:
        for process, _ in replicas:
            stop(process)
    measured = [json.loads(line) for line in open(trace_out) if line.strip()]
    done = [r for r in measured if r.get("outcome") == "succeeded" and r.get("queue_s") is not None and r.get("total_s") is not None]
    if len(done) != len(measured):
        print(f"warning: {len(measured) - len(done)} of {len(measured)} requests did not succeed")
    latencies = [r["queue_s"] + r["total_s"] for r in done]

    # 3. The simulation of that run.
    simulated_in = os.path.join(work, f"trace-simulated-{policy}.jsonl")
    with open(simulated_in, "w") as handle:
        for r in done:
            handle.write(json.dumps(dict(r, base_model="default", instance="replica")) + "\n")
    simulated_policy = "random" if policy == "random" else "affinity"
    output = subprocess.run([binary, "trace", "simulate", "--trace", simulated_in, "--replicas", str(args.replicas),
                             "--cache-bytes", str(cache_bytes), "--placement", simulated_policy, "--max-wait", str(max_wait),
                             "--stage-times", stages_path],
                            check=True, capture_output=True, text=True).stdout
    print(output.rstrip())
    row = next(line for line in output.splitlines() if line.startswith(simulated_policy + " "))
    fields = re.split(r"\s+", row.strip())
    sim_p50, sim_p95, sim_loads = float(fields[2]), float(fields[3]), int(fields[5])

    # 4. The comparison.
    p50, p95 = quantile(latencies, 0.5), quantile(latencies, 0.95)
    ratio = sim_p50 / p50
    print(f"{policy} measured ({len(done)} jobs, {args.replicas} replicas x {args.threads} thread(s)): p50 {p50:.3f} s, "
          f"p95 {p95:.3f} s, mean {statistics.mean(latencies):.3f} s, adapter loads {loads}")
    print(f"{policy} simulated ({simulated_policy}): p50 {sim_p50:.3f} s, p95 {sim_p95:.3f} s, adapter loads {sim_loads}")
    print(f"{policy} simulated / measured: p50 {ratio:.2f}x, p95 {sim_p95 / p95:.2f}x (tolerance {args.tolerance:.0%} on p50)")
    return {"p50": p50, "p95": p95, "loads": loads, "ratio": ratio}


if __name__ == "__main__":
    main()
