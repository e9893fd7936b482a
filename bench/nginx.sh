# A private nginx on loopback serving Letta's health answer, for benches (sourced, not run):
#   . bench/nginx.sh; nginx_start     -> sets NGINX_URL (http://127.0.0.1:PORT) and NGINX_PID
#   nginx_stop                        (idempotent; nginx_start also traps EXIT, INT and TERM)
# Everything it writes (config, pid, logs, temp paths) lives in one mktemp -d folder. A caller
# with its own EXIT trap must call nginx_stop from it: a later trap replaces this one.

NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
NGINX_DIR=
NGINX_PID=
NGINX_URL=

nginx_stop() {
  if [ -n "$NGINX_PID" ]; then
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
  fi
  if [ -n "$NGINX_DIR" ]; then
    rm -rf "$NGINX_DIR"
    NGINX_DIR=
  fi
}

nginx_install() {
  [ -x "$NGINX_BIN" ] && return 0
  echo "nginx.sh: installing nginx-light" >&2
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null ||
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null; }
  # The package starts a system nginx on port 80; ours does not need it, but leave it as apt set it.
  [ -x "$NGINX_BIN" ] || { echo "nginx.sh: $NGINX_BIN missing after install" >&2; return 1; }
}

# Writes the config for PORT into $NGINX_DIR/nginx.conf.
nginx_config() {
  local port=$1 user_line=
  # As root the master would hand the worker to "nobody", who cannot enter the 0700 folder.
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  cat >"$NGINX_DIR/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $NGINX_DIR/client_body;
  proxy_temp_path $NGINX_DIR/proxy;
  fastcgi_temp_path $NGINX_DIR/fastcgi;
  uwsgi_temp_path $NGINX_DIR/uwsgi;
  scgi_temp_path $NGINX_DIR/scgi;
  server {
    listen 127.0.0.1:$port;
    location = /v1/health/ {
      default_type application/json;
      return 200 '{"version":"0.16.8","status":"ok"}';
    }
  }
}
EOF
}

# Starts nginx on a free loopback port (a random one; another is tried if it is taken).
nginx_start() {
  nginx_install || return 1
  NGINX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lettash-nginx.XXXXXX")
  trap nginx_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local try port i
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    nginx_config "$port"
    : >"$NGINX_DIR/error.log"
    "$NGINX_BIN" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log" </dev/null 2>>"$NGINX_DIR/error.log" &
    NGINX_PID=$!
    for i in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        if kill -0 "$NGINX_PID" 2>/dev/null; then
          NGINX_URL="http://127.0.0.1:$port"
          return 0
        fi
        break # someone else answers on that port and ours died
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
    grep -q 'Address already in use' "$NGINX_DIR/error.log" || break
  done
  echo "nginx.sh: nginx did not start:" >&2
  cat "$NGINX_DIR/error.log" >&2
  return 1
}
