#!/usr/bin/env bash
# Samples a command's resident set (VmRSS, KiB) every 0.1 s, to see where its peak sits.
# usage: tools/bench/sample_rss.sh OUT command [args...]
#   OUT: "seconds-since-start KiB" per line; OUT.stdout: the command's output.
# Example (docs/benchmarks.md, "AMD Zen 5, bf16"):
#   tools/bench/sample_rss.sh /tmp/rss swiftdiffusion bench pipeline --precision bf16
#   sort -k2 -n /tmp/rss | tail -1      # when the peak happened
set -euo pipefail
out=$1
shift
"$@" > "$out.stdout" 2>&1 &
pid=$!
start=$(date +%s.%N)
: > "$out"
while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}') $rss" >> "$out"
    sleep 0.1
done
wait "$pid"
