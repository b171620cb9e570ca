#!/usr/bin/env bash
# Benchmark (not a test): GET /api/status/:org served by the module, against nginx's own `return 200` of the
# same body in the same nginx, and against the Node/Express/Baileys seed server (../shared/anchors/seed-server)
# on the same machine. Prints requests/s, latency and the ratios; writes bench/out/status.md.
# The module and nginx's `return` are measured in alternating runs (RUNS pairs, default 3): the ratio reported
# is the median of the pairs' ratios, with its spread (min-max), since one run on a shared machine says little.
#   DURATION=10s CONNECTIONS=50 THREADS=2 RUNS=3 bash bench/status.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
OUT=$ROOT/bench/out
WORK=$(mktemp -d /tmp/wa-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$OUT" "$WORK/state"
KEY=bench-key-0123456789
PORT=18480
SEED_PORT=18481
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The body the module answers for an organization that was never started.
BODY='{"success":true,"status":"disconnected","connected":false,"has_qr":false,"phone_number":null,"phone":null,"qr":null,"last_error":null,"retry_count":0,"connected_at":null,"state_since":null,"next_retry_in":null}'
cat > "$WORK/nginx.conf" <<CONF
load_module $ROOT/objs/ngx_http_whatsapp_module.so;
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/t1; proxy_temp_path $WORK/t2; fastcgi_temp_path $WORK/t3;
    uwsgi_temp_path $WORK/t4; scgi_temp_path $WORK/t5;
    whatsapp_zone wa 8m;
    whatsapp_state_dir $WORK/state;
    whatsapp_api_key $KEY;
    whatsapp_server ws://127.0.0.1:9/ws/chat;
    server {
        listen 127.0.0.1:$PORT;
        location /api/ { whatsapp_api; }
        location = /static/status { default_type application/json; return 200 '$BODY\n'; }
    }
}
CONF
nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/static/status" >/dev/null && break; sleep 0.1; done
diff <(curl -s -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/status/23") \
     <(curl -s "http://127.0.0.1:$PORT/static/status") >/dev/null || { echo "bodies differ"; exit 1; }

run_wrk() {  # url -> "rps p50 p99"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "X-API-Key: $KEY" "$1" > "$WORK/wrk.txt"
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
    if grep -q "Non-2xx" "$WORK/wrk.txt"; then echo "non-2xx answers from $1" >&2; cat "$WORK/wrk.txt" >&2; exit 1; fi
    echo "$rps $p50 $p99"
}

echo "warming up"; wrk -t1 -c10 -d2s -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/status/23" >/dev/null
RATIOS=()
for run in $(seq "$RUNS"); do
    read -r m_rps m_p50 m_p99 < <(run_wrk "http://127.0.0.1:$PORT/api/status/23")
    read -r s_rps s_p50 s_p99 < <(run_wrk "http://127.0.0.1:$PORT/static/status")
    r=$(awk -v a="$m_rps" -v b="$s_rps" 'BEGIN {printf "%.3f", a/b}')
    echo "run $run: module $m_rps req/s, return $s_rps req/s, ratio $r"
    RATIOS+=("$r $m_rps $m_p50 $m_p99 $s_rps $s_p50 $s_p99")
done
# The pair with the median ratio is the one reported; min and max give the spread.
read -r RATIO M_RPS M_P50 M_P99 S_RPS S_P50 S_P99 < <(printf '%s\n' "${RATIOS[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
SPREAD=$(printf '%s\n' "${RATIOS[@]}" | sort -n | awk 'NR==1 {min=$1} {max=$1} END {printf "%.2f-%.2f", min, max}')
RATIO=$(awk -v r="$RATIO" 'BEGIN {printf "%.2f", r}')

SEED_LINE="seed server: not measured (set SEED=1)"
if [ "${SEED:-1}" = 1 ]; then
    cp -r ../shared/anchors/seed-server "$WORK/seed-server"
    (cd "$WORK/seed-server" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    # exec: the PID we keep is node's own, so the cleanup really stops it.
    (cd "$WORK/seed-server" && PORT=$SEED_PORT API_KEY=$KEY WA_URL=ws://127.0.0.1:9/ws/chat AUTH_DIR="$WORK/auth" \
        exec node server.mjs > "$WORK/seed.log" 2>&1) &
    PIDS+=($!)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SEED_PORT/health" >/dev/null && break; sleep 0.1; done
    wrk -t1 -c10 -d2s -H "X-API-Key: $KEY" "http://127.0.0.1:$SEED_PORT/api/status/23" >/dev/null
    read -r N_RPS N_P50 N_P99 < <(run_wrk "http://127.0.0.1:$SEED_PORT/api/status/23")
    SEED_RATIO=$(awk -v a="$M_RPS" -v b="$N_RPS" 'BEGIN {printf "%.1f", a/b}')
    SEED_RSS=$(ps -o rss= -p "${PIDS[-1]}" | awk '{printf "%.0f", $1/1024}')
    SEED_LINE="| seed server (Express + Baileys, 1 node process) | $N_RPS | $N_P50 | $N_P99 |"
fi
NGX_RSS=$(ps -o rss= --ppid "$(cat "$WORK/nginx.pid")" | awk '{s+=$1} END {printf "%.0f", s/1024}')

{
    echo "# GET /api/status/:org — $(date -u +%Y-%m-%dT%H:%MZ), wrk -t$THREADS -c$CONNECTIONS -d$DURATION, 1 nginx worker, $(nproc) cores"
    echo
    echo "| server | requests/s | p50 | p99 |"
    echo "|---|---|---|---|"
    echo "| ngx_whatsapp \`/api/status/23\` (auth + shm read, document rendered by the helper) | $M_RPS | $M_P50 | $M_P99 |"
    echo "| nginx \`return 200\` of the same body | $S_RPS | $S_P50 | $S_P99 |"
    echo "$SEED_LINE"
    echo
    echo "- module / nginx return: **$RATIO**, median of $RUNS alternating runs (spread $SPREAD; target ≥ 0.9)"
    [ -n "${SEED_RATIO:-}" ] && echo "- module / seed server: **${SEED_RATIO}×**; resident memory: nginx workers+helper ${NGX_RSS} MiB, seed server ${SEED_RSS} MiB"
} | tee "$OUT/status.md"
