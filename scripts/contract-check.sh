#!/usr/bin/env bash
# contract-check.sh [sqlite|postgres] — start a fresh cmdb-server and run the black-box wire-contract
# check (scripts/server_contract.py) against it with a collector key and a viewer token.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
# Not CMDB_SERVER_*: the server reads that prefix as configuration and refuses unknown keys.
bin=${CONTRACT_SERVER_BIN:-target/debug/cmdb-server}
[ -x "$bin" ] || cargo build --locked -p cmdb-server
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
case $backend in
  sqlite) url="sqlite://$dir/cmdb.db" ;;
  postgres)
    db="cmdb_contract_$$"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db"
    url="postgres://postgres@127.0.0.1:5432/$db" ;;
  *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;;
esac
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  [ "$backend" = postgres ] && psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin" --listen "127.0.0.1:$port" --database-url "$url" --data-dir "$dir/data" > "$dir/server.out" 2> "$dir/server.err" &
server=$!
ready=no
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=yes; break; fi
  sleep 0.1
done
if [ $ready != yes ]; then
  echo "contract-check: cmdb-server did not become ready on $backend; its stderr:" >&2
  grep -v '^  ' "$dir/server.err" >&2 || true
  exit 1
fi
key=$("$bin" --database-url "$url" --data-dir "$dir/data" agent-key create --scope collector --name contract 2>/dev/null)
key_id=$(echo "$key" | sed -n 's/^key_id = "\(.*\)"$/\1/p')
secret=$(echo "$key" | sed -n 's/^secret = "\(.*\)"$/\1/p')
token=$("$bin" --database-url "$url" token create --role viewer --name contract 2>/dev/null)
python3 scripts/server_contract.py "http://127.0.0.1:$port" "$key_id" "$secret" "$token"
