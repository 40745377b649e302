"""Adapter loads of a static partition of a generated trace over 8 replicas (docs/scale-out.md, "Results").

    python3 tools/placement/static_partition.py trace.jsonl 48000000

Sends every job of a base model to a fixed group of replicas sized by the model's share of a
`trace generate` trace (A-base-1 and B-base-1: 3 replicas each; A-base-2 and A-base-3 share one, B-base-2 and
B-base-3 another) and, within a group, either to a random replica or to the replica most of its adapters hash to
(rendezvous), and replays each replica's jobs in arrival order through the simulator's byte-bounded LRU cache
(base model 33285473 bytes, LoRA 632508, ControlNet 3994753; a job's own components are never evicted for each
other). Waiting is ignored entirely (no replica is ever busy), so this is what placement could reach if latency
did not matter; it prints adapter loads and base-model loads per assignment, and for random placement.
"""

import collections
import hashlib
import json
import sys

LORA_BYTES, CONTROLNET_BYTES, MODEL_BYTES = 632508, 3994753, 33285473
GROUPS = {
    "A-base-1": [0, 1, 2], "B-base-1": [3, 4, 5], "A-base-2": [6], "A-base-3": [6], "B-base-2": [7], "B-base-3": [7],
}


def stable_hash(text):
    return int(hashlib.md5(text.encode()).hexdigest()[:12], 16)


def replay(jobs, assign, capacity):
    caches = [collections.OrderedDict() for _ in range(8)]
    used = [0] * 8
    adapter_loads = base_loads = 0
    for job in jobs:
        r = assign(job)
        cache = caches[r]
        keys = [("model:" + job["base_model"], MODEL_BYTES)]
        keys += [("lora:" + x, LORA_BYTES) for x in job["loras"]]
        keys += [("controlnet:" + x, CONTROLNET_BYTES) for x in job["controlnets"]]
        pinned = {k for k, _ in keys}
        for key, size in keys:
            if key in cache:
                cache.move_to_end(key)
                continue
            if key.startswith("model:"):
                base_loads += 1
            else:
                adapter_loads += 1
            while used[r] + size > capacity:
                victim = next((k for k in cache if k not in pinned), None)
                if victim is None:
                    break
                used[r] -= cache.pop(victim)
            if used[r] + size <= capacity:
                cache[key] = size
                used[r] += size
    return adapter_loads, base_loads


def by_adapters(job):
    group = GROUPS[job["base_model"]]
    adapters = ["lora:" + x for x in job["loras"]] + ["controlnet:" + x for x in job["controlnets"]]
    if not adapters:
        return group[0]
    votes = collections.Counter(max(group, key=lambda r: stable_hash(a + str(r))) for a in adapters)
    return max(group, key=lambda r: (votes[r], -r))


def main():
    jobs = [json.loads(line) for line in open(sys.argv[1])]
    capacity = int(sys.argv[2])
    print("model groups, random replica within:", replay(jobs, lambda j: GROUPS[j["base_model"]][
        stable_hash(str(j["timestamp"])) % len(GROUPS[j["base_model"]])], capacity))
    print("model groups, replica by adapter votes:", replay(jobs, by_adapters, capacity))
    print("random replica:", replay(jobs, lambda j: stable_hash(str(j["timestamp"])) % 8, capacity))


if __name__ == "__main__":
    main()
