# nginx (Debian's nginx-light) on 127.0.0.1 for the emulators (sourced by scripts/emulate-eodc and
# scripts/emulate-cdse): a private instance in the foreground, its files under a directory of the run.
#
#   start_nginx NAME DIR HTTP_BLOCK    writes DIR/NAME.conf around HTTP_BLOCK (directives of the
#                                      `http` context: zones, maps, `server` blocks), starts it and
#                                      waits for PORT_TO_WAIT (set by the caller) to accept; sets
#                                      NGINX_PIDS (space-separated, for stop_nginx)
#   stop_nginx

NGINX_PIDS=""

start_nginx() {
  local name=$1 dir=$2 block=$3 nginx user_line="" pid ok=0
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$nginx" ] || { echo "nginx missing; run scripts/setup" >&2; return 1; }
  mkdir -p "$dir/$name-tmp"
  [ "$(id -u)" = 0 ] && user_line="user root;"
  cat >"$dir/$name.conf" <<CONF
$user_line
daemon off;
worker_processes 1;
pid $dir/$name.pid;
error_log $dir/$name-error.log warn;
events { worker_connections 1024; }
http {
  access_log $dir/$name-access.log;
  client_body_temp_path $dir/$name-tmp/body;
  proxy_temp_path $dir/$name-tmp/proxy;
  fastcgi_temp_path $dir/$name-tmp/fastcgi;
  uwsgi_temp_path $dir/$name-tmp/uwsgi;
  scgi_temp_path $dir/$name-tmp/scgi;
$block
}
CONF
  "$nginx" -c "$dir/$name.conf" -p "$dir" >"$dir/$name.log" 2>&1 &
  pid=$!
  NGINX_PIDS="$NGINX_PIDS $pid"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT_TO_WAIT") 2>/dev/null && { ok=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  [ "$ok" = 1 ] || { echo "nginx ($name) did not start (see $dir/$name-error.log, $dir/$name.log)" >&2; return 1; }
}

stop_nginx() {
  local p
  for p in $NGINX_PIDS; do kill "$p" 2>/dev/null || true; done
  NGINX_PIDS=""
}
