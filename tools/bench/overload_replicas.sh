#!/usr/bin/env bash
# Issue 14's overload target on one machine: REPLICAS `serve` replicas (default 3) on one PostgreSQL queue,
# `bench load --mode calibrate` (closed loop for DURATION seconds to measure capacity, then open loop at 2x that rate
# for DURATION seconds), then an open-loop phase during which replica 2 is killed with SIGKILL; afterwards the store
# is checked: every job in a terminal state, one set of outputs per succeeded job, attempts per job.
#
#   STORE=postgres://swiftdiffusion:swiftdiffusion@127.0.0.1:5432/swiftdiffusion_test tools/bench/overload_replicas.sh
#
# Environment: STORE (required), BIN (default .build/debug/swiftdiffusion), REPLICAS (3), DURATION (120), SIZE (32),
# STEPS (8), LEASE (5), CAPACITY (queue capacity, 8), KILL_AFTER (seconds into the kill phase, 8), SKIP_CALIBRATE
# (1: only the kill phase).
set -euo pipefail
: "${STORE:?set STORE=postgres://USER:PASSWORD@HOST:PORT/DATABASE}"
BIN=${BIN:-.build/debug/swiftdiffusion}
REPLICAS=${REPLICAS:-3}
DURATION=${DURATION:-120}
SIZE=${SIZE:-32}
STEPS=${STEPS:-8}
LEASE=${LEASE:-5}
CAPACITY=${CAPACITY:-8}
KILL_AFTER=${KILL_AFTER:-8}
SCHEMA="overload_$(date +%s)"
URL="$STORE?schema=$SCHEMA"
PSQL_URL="$STORE?options=-csearch_path%3D$SCHEMA"   # psql's spelling of the same schema
LOGS=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

for i in $(seq 1 "$REPLICAS"); do
  port=$((7880 + i))
  SWIFTDIFFUSION_THREADS=1 "$BIN" serve --host 127.0.0.1 --port "$port" --store "$URL" --queue-capacity "$CAPACITY" \
    --lease-seconds "$LEASE" >"$LOGS/replica-$i.log" 2>&1 &
  PIDS+=($!)
done
for i in $(seq 1 "$REPLICAS"); do
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$((7880 + i))/readyz" >/dev/null && break; sleep 0.2; done
done
echo "processor: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $REPLICAS replicas x 1 thread; schema $SCHEMA; logs $LOGS"

if [ "${SKIP_CALIBRATE:-0}" != 1 ]; then
  echo "== calibrate: closed loop ${DURATION}s, then open loop at 2x the measured rate for ${DURATION}s"
  "$BIN" bench load --url http://127.0.0.1:7881 --mode calibrate --load-factor 2 --concurrency $((CAPACITY + 1)) \
    --size "$SIZE" --steps "$STEPS" --duration "$DURATION" --drain 120
fi

echo "== kill -9 of replica 2 while it runs a job, ${KILL_AFTER}s or more into a 30 s open-loop phase at 8 jobs/s"
VICTIM=${PIDS[1]}
(
  sleep "$KILL_AFTER"
  # Replica ids are vm-PID-...: wait until replica 2 holds a running job's lease, then kill it.
  until [ "$(psql "$PSQL_URL" -tAq -c "SELECT count(*) FROM job WHERE status = 'running' AND lease_owner LIKE '%-$VICTIM-%'" 2>/dev/null)" -gt 0 ] 2>/dev/null; do
    sleep 0.02
  done
  kill -9 "$VICTIM"
  echo "killed replica 2 (pid $VICTIM) mid-job at $(date +%T.%N | cut -c1-12)"
) &
KILLER=$!
"$BIN" bench load --url http://127.0.0.1:7881 --mode open --rate 8 --size "$SIZE" --steps "$STEPS" --duration 30 --drain 90
wait "$KILLER"

echo "== the store"
psql "$STORE" -v ON_ERROR_STOP=1 -q <<SQL
SET search_path TO $SCHEMA;
SELECT status, count(*) AS jobs FROM job GROUP BY status ORDER BY status;
SELECT attempts, count(*) AS jobs FROM job GROUP BY attempts ORDER BY attempts;
SELECT count(*) AS succeeded_without_output FROM job j WHERE status = 'succeeded'
  AND NOT EXISTS (SELECT 1 FROM job_output o WHERE o.job_id = j.id);
SELECT count(*) AS jobs_with_more_outputs_than_images FROM (
  SELECT job_id, count(*) AS n FROM job_output GROUP BY job_id HAVING count(*) > 1) t;
SELECT id, claims, affinity_hits, loads FROM replica ORDER BY started_at;
SELECT id, attempts, round(extract(epoch FROM finished_at - enqueued_at)::numeric, 2) AS enqueued_to_finished_s
  FROM job WHERE attempts > 1;
SQL
