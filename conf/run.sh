#!/usr/bin/env bash
# Starts nginx with the module in the foreground (make run). Ctrl-C stops it (QUIT: sessions are saved).
#   PORT=8080                          where the API listens (loopback)
#   WA_SERVER=wss://web.whatsapp.com/ws/chat   the WhatsApp endpoint; WA_SERVER=sim starts the local
#                                      test server (t/wa-sim) and points the gateway at it
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var
PORT=${PORT:-8080}
SERVER=${WA_SERVER:-wss://web.whatsapp.com/ws/chat}
MODULE=$ROOT/objs/ngx_http_whatsapp_module.so
mkdir -p "$VAR/logs" "$VAR/tmp" "$VAR/state"
chmod 0755 "$VAR"

if [ ! -s "$VAR/api.key" ]; then
    (umask 077; openssl rand -hex 24 > "$VAR/api.key")
fi
KEY=$(head -1 "$VAR/api.key")

ROOT_KEY_LINE=""
SIM_PID=""
cleanup() { [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true; }
trap cleanup EXIT
if [ "$SERVER" = sim ]; then
    exec 3< <(node t/wa-sim/bin/wa-sim.mjs --listen 127.0.0.1:0 --control 127.0.0.1:0 \
        --key-file "$VAR/sim-keys.json" --state "$VAR/sim-state.json" 2>"$VAR/logs/wa-sim.log")
    SIM_PID=$!
    read -r -t 20 READY <&3
    SERVER=$(printf '%s' "$READY" | sed -E 's/.*"ws_url":"([^"]+)".*/\1/')
    SIM_ROOT=$(printf '%s' "$READY" | sed -E 's/.*"root_key":"([^"]+)".*/\1/')
    CONTROL=$(printf '%s' "$READY" | sed -E 's/.*"control_url":"([^"]+)".*/\1/')
    ROOT_KEY_LINE="whatsapp_root_key $SIM_ROOT;"
    echo "test WhatsApp server: $SERVER (control API $CONTROL)"
fi

# Workers and the helper drop to an unprivileged user; it must be able to reach ./var.
USER_LINE="nobody nogroup"
if [ "$(id -u)" = 0 ] && ! runuser -u nobody -- test -x "$VAR" 2>/dev/null; then
    echo "note: user nobody cannot reach $VAR (a parent directory is private); workers run as root for this dev run"
    USER_LINE="root root"
fi

sed -e "s|@MODULE@|$MODULE|" -e "s|@VAR@|$VAR|g" -e "s|@PORT@|$PORT|" -e "s|@SERVER@|$SERVER|" \
    -e "s|@ROOT_KEY@|$ROOT_KEY_LINE|" -e "s|@USER@|$USER_LINE|" conf/run.conf.in > "$VAR/nginx.conf"

nginx -t -q -p "$VAR" -c "$VAR/nginx.conf" -e "$VAR/logs/error.log"
cat <<MSG
ngx_whatsapp is running: http://127.0.0.1:$PORT/api/  (health: http://127.0.0.1:$PORT/health)
  operator dashboard: http://127.0.0.1:$PORT/dashboard/
  API key (X-API-Key): $KEY   (in $VAR/api.key)
  try: curl -s -H 'X-API-Key: $KEY' -H 'Content-Type: application/json' \\
         -d '{"organization_id":"23"}' http://127.0.0.1:$PORT/api/start-session
       curl -s -H 'X-API-Key: $KEY' http://127.0.0.1:$PORT/api/status/23
  logs: $VAR/logs/error.log   state: $VAR/state   stop: Ctrl-C
MSG
nginx -p "$VAR" -c "$VAR/nginx.conf" -e "$VAR/logs/error.log" &
NGINX_PID=$!
trap 'kill -QUIT $NGINX_PID 2>/dev/null; wait $NGINX_PID; cleanup' INT TERM
wait $NGINX_PID
