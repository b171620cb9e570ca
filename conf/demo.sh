#!/usr/bin/env bash
# `make demo`: nginx with the module (conf/demo.conf.in: the production shape of conf/nginx.conf on loopback), the
# Django example (examples/django, Debian's gunicorn) and the test WhatsApp server (t/wa-sim), all in the
# foreground. Ctrl-C stops the three. State in ./var/demo (kept: a linked organization stays linked).
#   PORT=8080          nginx (the URL to open)          DJANGO_PORT=8000   gunicorn, loopback
#   WA_SERVER=sim      the simulator (default); or wss://web.whatsapp.com/ws/chat to link a real phone
# While it runs, from another terminal:
#   bash conf/demo.sh scan 23 [573001112233]   the simulator's phone scans organization 23's QR
#   bash conf/demo.sh inbox [573001234567]     what the simulator's test contact received
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var/demo
PY=/usr/bin/python3                 # Debian's python3 (python3-django, python3-requests), whatever is first on PATH
GUNICORN=/usr/bin/gunicorn
NGINX=/usr/sbin/nginx
CONTACT=573001234567

json_field() { $PY -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$1"; }

case "${1:-}" in
scan)
    . "$VAR/demo.env"
    ORG=${2:?usage: conf/demo.sh scan ORG [PHONE]}
    PHONE=${3:-573001112233}
    QR=$(curl -fsS -H "X-API-Key: $(head -1 "$VAR/api.key")" "http://127.0.0.1:$PORT/whatsapp/api/qr/$ORG" | json_field qr_text)
    [ -n "$QR" ] || { echo "organization $ORG shows no QR (press «Conectar WhatsApp» first)"; exit 1; }
    curl -fsS -H 'Content-Type: application/json' -d "{\"qr\":\"$QR\",\"phone\":\"$PHONE\"}" "$CONTROL/scan"; echo
    exit 0 ;;
inbox)
    . "$VAR/demo.env"
    curl -fsS "$CONTROL/contacts/${2:-$CONTACT}/inbox"; echo
    exit 0 ;;
"") ;;
*) echo "usage: conf/demo.sh [scan ORG [PHONE] | inbox [PHONE]]"; exit 2 ;;
esac

PORT=${PORT:-8080}
DJANGO_PORT=${DJANGO_PORT:-8000}
SERVER=${WA_SERVER:-sim}
MODULE=$ROOT/objs/ngx_http_whatsapp_module.so
for f in "$PY" "$GUNICORN" "$NGINX" "$MODULE"; do [ -e "$f" ] || { echo "missing $f (make deps && make)"; exit 1; }; done
mkdir -p "$VAR/logs" "$VAR/tmp" "$VAR/state"
chmod 0755 "$VAR"
[ -s "$VAR/api.key" ] || (umask 077; openssl rand -hex 24 > "$VAR/api.key")
[ -s "$VAR/django.secret" ] || (umask 077; openssl rand -base64 48 > "$VAR/django.secret")

PIDS=()
NGINX_PID=""
stop_all() {
    trap - INT TERM EXIT
    [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo stopped"
}
trap stop_all EXIT
trap 'exit 0' INT TERM      # Ctrl-C is how the demo ends: not a failure for make

ROOT_KEY_LINE=""
CONTROL=""
if [ "$SERVER" = sim ]; then
    exec 3< <(exec node t/wa-sim/bin/wa-sim.mjs --listen 127.0.0.1:0 --control 127.0.0.1:0 \
        --key-file "$VAR/sim-keys.json" --state "$VAR/sim-state.json" 2>"$VAR/logs/wa-sim.log")
    PIDS+=($!)
    read -r -t 20 READY <&3 || { echo "the simulator did not start: $VAR/logs/wa-sim.log"; exit 1; }
    SERVER=$(printf '%s' "$READY" | sed -E 's/.*"ws_url":"([^"]+)".*/\1/')
    ROOT_KEY_LINE="whatsapp_root_key $(printf '%s' "$READY" | sed -E 's/.*"root_key":"([^"]+)".*/\1/');"
    CONTROL=$(printf '%s' "$READY" | sed -E 's/.*"control_url":"([^"]+)".*/\1/')
    # A contact with WhatsApp for the test message.
    curl -fsS -o /dev/null -H 'Content-Type: application/json' \
        -d "{\"phone\":\"$CONTACT\",\"devices\":1,\"name\":\"Cliente de prueba\"}" "$CONTROL/contacts"
fi
printf 'PORT=%s\nCONTROL=%s\n' "$PORT" "$CONTROL" > "$VAR/demo.env"

USER_LINE="nobody nogroup"
if [ "$(id -u)" = 0 ] && ! runuser -u nobody -- test -x "$VAR" 2>/dev/null; then
    USER_LINE="root root"    # a parent directory is private to root: workers stay root for this demo
fi
sed -e "s|@MODULE@|$MODULE|" -e "s|@VAR@|$VAR|g" -e "s|@PORT@|$PORT|" -e "s|@DJANGO_PORT@|$DJANGO_PORT|" \
    -e "s|@SERVER@|$SERVER|" -e "s|@ROOT_KEY@|$ROOT_KEY_LINE|" -e "s|@USER@|$USER_LINE|" conf/demo.conf.in > "$VAR/nginx.conf"
$NGINX -t -q -p "$VAR" -c "$VAR/nginx.conf" -e "$VAR/logs/error.log"
$NGINX -p "$VAR" -c "$VAR/nginx.conf" -e "$VAR/logs/error.log" 2>>"$VAR/logs/error.log" &
NGINX_PID=$!

# Django reads the key from the file (not from the command line, where ps would show it).
env DJANGO_SECRET_KEY="$(cat "$VAR/django.secret")" DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost \
    WHATSAPP_SERVER_URL="http://127.0.0.1:$PORT/whatsapp" WHATSAPP_API_KEY_FILE="$VAR/api.key" \
    $PY $GUNICORN --chdir "$ROOT/examples/django" --bind "127.0.0.1:$DJANGO_PORT" --workers 2 \
    --error-logfile "$VAR/logs/gunicorn.log" --access-logfile "$VAR/logs/gunicorn-access.log" opticaapp.wsgi &
PIDS+=($!)

URL="http://127.0.0.1:$PORT/organizacion/23/whatsapp/"
for _ in $(seq 100); do
    curl -fsS -o /dev/null "$URL" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null "$URL" || { echo "Django does not answer through nginx: see $VAR/logs/"; exit 1; }
cat <<MSG

  Demo ready. Open: $URL
  (any organization id works: /organizacion/<id>/whatsapp/)

  nginx :$PORT -> Django (gunicorn 127.0.0.1:$DJANGO_PORT), /whatsapp/ (API, loopback, key in $VAR/api.key),
  /whatsapp-live/ (browser, wa_token cookie)   WhatsApp server: ${CONTROL:+simulator }$SERVER
MSG
if [ -n "$CONTROL" ]; then cat <<MSG
  Press «Conectar WhatsApp», then let the simulator's phone scan the QR:   bash conf/demo.sh scan 23
  Send the test message to 300 123 4567 (a simulator contact), then:       bash conf/demo.sh inbox
MSG
fi
echo "  logs: $VAR/logs/   stop: Ctrl-C"
wait "$NGINX_PID"
