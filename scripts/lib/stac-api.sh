# A STAC API on 127.0.0.1 for the emulators (sourced by scripts/emulate-cdse and emulate-eodc):
# stac-fastapi-pgstac on a private PostgreSQL 15 + PostGIS with pgstac. Needs ROOT, PY, RUN.
#
#   start_stac_api COLLECTIONS ITEMS_NDJSON COLLECTION_ID [PORT]   sets STAC_PORT
#   stop_stac_api
# COLLECTIONS holds one collection document, or several as ndjson (one per line; pypgstac reads
# either); ITEMS_NDJSON the items of all of them, each naming its collection. COLLECTION_ID is the
# collection whose answer tells that the API is up.
# Items are served as pgstac stores them: newest first (datetime, then id, descending).

PGBIN=/usr/lib/postgresql/15/bin
STAC_PID=""; PG_STARTED=0; PGDIR=""

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_stac_api() {
  local collection=$1 items=$2 id=$3
  STAC_PORT=${4:-$(free_port)}
  [ -x "$PGBIN/initdb" ] || { echo "PostgreSQL 15 missing; run scripts/setup" >&2; return 1; }
  local pg_port; pg_port=$(free_port)
  # PostgreSQL runs as `postgres` when we are root: its directory lives under /tmp, which it can
  # reach whatever the permissions of the run directory's parents.
  PGDIR=$(mktemp -d /tmp/emulate-stac-pg.XXXXXX)
  chmod 755 "$PGDIR"
  ln -sfn "$PGDIR" "$RUN/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PGDIR"; fi
  as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 >"$PGDIR/initdb.log" 2>&1
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $PGDIR -c fsync=off" start >/dev/null
  PG_STARTED=1
  export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres PGPASSWORD=postgres PGDATABASE=postgres
  "$ROOT/.venv/bin/pypgstac" migrate >"$RUN/pgstac-migrate.log" 2>&1
  "$ROOT/.venv/bin/pypgstac" load collections "$collection" --method upsert >"$RUN/pgstac-load.log" 2>&1
  "$ROOT/.venv/bin/pypgstac" load items "$items" --method upsert >>"$RUN/pgstac-load.log" 2>&1
  "$ROOT/.venv/bin/uvicorn" stac_fastapi.pgstac.app:create_app --factory --host 127.0.0.1 \
    --port "$STAC_PORT" --log-level warning >"$RUN/stac.log" 2>&1 &
  STAC_PID=$!
  local ok=0
  for _ in $(seq 300); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$STAC_PORT/collections/$id', timeout=1)" 2>/dev/null; then ok=1; break; fi
    kill -0 "$STAC_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "the STAC API did not start (see $RUN/stac.log)" >&2; return 1; }
}

stop_stac_api() {
  [ -n "$STAC_PID" ] && kill "$STAC_PID" 2>/dev/null || true
  if [ "$PG_STARTED" = 1 ]; then as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; fi
  if [ -n "$PGDIR" ]; then rm -rf "$PGDIR"; fi
}
