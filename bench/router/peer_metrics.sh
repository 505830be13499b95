#!/usr/bin/env bash
# peer_metrics.sh - the router with its request metrics on against the same router with them off,
# measured with the shared side-by-side script ../shared/bench/peer_lb.sh (wrk + two nginx
# backends on loopback), in one run, and the ratio printed.
#
# "on"  = python -m services.router.standalone --metrics on: every request counted (status,
#         latency histogram, upstream errors, retries; libs/telemetry/router_stats.py) and
#         /metrics served on 127.0.0.1:$METRICS_PORT, scraped every $SCRAPE s during the run.
# "off" = the same with --metrics off (STRATUS_ROUTER_METRICS=off): nothing counted or served.
#
# peer_lb.sh measures one ROUTER_CMD per invocation, so this runs it 2 x ITER times with
# ROUNDS=1, alternating the order (on,off / off,on / on,off ...) so that both see the same
# drift of the machine's load, and reports per connection count the median req/s of each, the
# ratio of the medians, the median of the per-pair ratios and the router's CPU time per request.
#
# Usage (from the repository root):
#   bash bench/router/peer_metrics.sh
#   ITER=5 CONNS="1 16 64" DURATION=10 bash bench/router/peer_metrics.sh
# Env knobs: ITER (pairs, default 3), CONNS (default "1 16 64"), DURATION (s per wrk run,
#   default 10), DIRECT=1 (also measure wrk straight to a backend in each run), SCRAPE (seconds
#   between scrapes of /metrics while "on" runs, default 5; 0: none), METRICS_PORT (default
#   18490), PEER_LB (default ../shared/bench/peer_lb.sh), OUT (default /tmp/peer_metrics/<stamp>).
# Only processes started here are stopped (the scraper loop, by its pid; peer_lb.sh stops its own).
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEER_LB=${PEER_LB:-$REPO/../shared/bench/peer_lb.sh}
ITER=${ITER:-3}
CONNS=${CONNS:-"1 16 64"}
DURATION=${DURATION:-10}
DIRECT=${DIRECT:-0}
SCRAPE=${SCRAPE:-5}
METRICS_PORT=${METRICS_PORT:-18490}
OUT=${OUT:-/tmp/peer_metrics/$(date -u +%Y%m%dT%H%M%SZ)}
PY=$(command -v python)

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
[[ -f "$PEER_LB" ]] || { log "FATAL: $PEER_LB not found"; exit 1; }
mkdir -p "$OUT"

router_cmd() {  # MODE -> the ROUTER_CMD peer_lb.sh runs (it sets PORT and BACKENDS)
  echo "cd '$REPO' && exec '$PY' -m services.router.standalone --metrics $1 --metrics-port $METRICS_PORT"
}

SCRAPER_PID=""
stop_scraper() {
  if [[ -n "$SCRAPER_PID" ]]; then
    kill "$SCRAPER_PID" 2>/dev/null
    wait "$SCRAPER_PID" 2>/dev/null
    SCRAPER_PID=""
  fi
}
trap stop_scraper EXIT

run_one() {  # ITERATION MODE
  local i=$1 mode=$2 name="metrics_$2" peers
  peers="$name"
  [[ "$DIRECT" == 1 ]] && peers="direct $name"
  if [[ "$mode" == on && "$SCRAPE" != 0 ]]; then
    # A scraper as Prometheus would be (bounded: at most one scrape per SCRAPE s for 1 hour).
    ( for _ in $(seq 1 $((3600 / SCRAPE))); do
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics"
        sleep "$SCRAPE"
      done ) &
    SCRAPER_PID=$!
  fi
  log "pair $i: router with metrics $mode"
  PEERS="$peers" ROUTER_NAME="$name" ROUTER_CMD="$(router_cmd "$mode")" ROUNDS=1 CONNS="$CONNS" \
    DURATION="$DURATION" WORK=/tmp/peer_lb_metrics OUT_DIR="$OUT/$i-$mode" \
    bash "$PEER_LB" >"$OUT/$i-$mode.log" 2>&1 || log "peer_lb.sh failed: see $OUT/$i-$mode.log"
  stop_scraper
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >"$OUT/load.txt"
for i in $(seq 1 "$ITER"); do
  if ((i % 2)); then run_one "$i" on; run_one "$i" off; else run_one "$i" off; run_one "$i" on; fi
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >>"$OUT/load.txt"

"$PY" - "$OUT" "$CONNS" <<'EOF' | tee "$OUT/summary.md"
import csv, glob, os, statistics, sys
out, conns = sys.argv[1], [int(c) for c in sys.argv[2].split()]
rows = {}  # (mode, iteration, conns) -> row
for f in glob.glob(os.path.join(out, "*-*", "runs.csv")):
    i, mode = os.path.basename(os.path.dirname(f)).split("-")
    for r in csv.DictReader(open(f)):
        if r["peer"] == f"metrics_{mode}":
            rows[(mode, int(i), int(r["conns"]))] = r
def med(xs): return statistics.median(xs) if xs else float("nan")
print("| conns | on req/s (median) | off req/s (median) | on/off (medians) | on/off (median of pairs) "
      "| on CPU us/req | off CPU us/req | errors | on req/s per pair | off req/s per pair |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
for c in conns:
    pairs = sorted({i for (m, i, cc) in rows if cc == c})
    on = [float(rows[("on", i, c)]["rps"]) for i in pairs if ("on", i, c) in rows]
    off = [float(rows[("off", i, c)]["rps"]) for i in pairs if ("off", i, c) in rows]
    ratios = [float(rows[("on", i, c)]["rps"]) / float(rows[("off", i, c)]["rps"])
              for i in pairs if ("on", i, c) in rows and ("off", i, c) in rows]
    cpu = {m: med([1e4 * float(rows[(m, i, c)]["peer_cpu"]) / float(rows[(m, i, c)]["rps"])
                   for i in pairs if (m, i, c) in rows]) for m in ("on", "off")}
    errors = sum(int(r["sock_err"]) + int(r["non2xx"]) for (m, i, cc), r in rows.items() if cc == c)
    print(f"| {c} | {med(on):.0f} | {med(off):.0f} | {med(on) / med(off):.3f} | {med(ratios):.3f} "
          f"| {cpu['on']:.1f} | {cpu['off']:.1f} | {errors} | {'/'.join(f'{x:.0f}' for x in on)} "
          f"| {'/'.join(f'{x:.0f}' for x in off)} |")
print()
print(open(os.path.join(out, "load.txt")).read().strip())
EOF
log "results in $OUT"
