#!/usr/bin/env bash
# quickstart.sh — the main job on the embedded default, in one command:
#   builds cmdb-server and cmdb-agent, starts the server on a SQLite file under ./data (created and
#   migrated on first start), collects this machine with the agent using the key the server's first
#   start wrote, and prints the URL to open and how to log in. The server keeps running in the
#   foreground; Ctrl-C stops it. Run it again any time: the data stays in ./data.
# Env: QUICKSTART_LISTEN (default 127.0.0.1:8080), QUICKSTART_DATA (default ./data). Not CMDB_*: the
# agent reads every CMDB_* variable as its configuration and refuses keys it does not know.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTEN=${QUICKSTART_LISTEN:-127.0.0.1:8080}
DATA=${QUICKSTART_DATA:-data}
URL="http://$LISTEN"

cargo build --release --locked -p cmdb-server -p cmdb-agent
mkdir -p -m 700 "$DATA"  # private: the database and the key file live here
./target/release/cmdb-server --listen "$LISTEN" --data-dir "$DATA" --database-url "sqlite://$DATA/cmdb.db" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' INT TERM EXIT

for _ in $(seq 100); do
  curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "cmdb-server did not start" >&2; exit 1; }
  sleep 0.1
done

echo
echo "Collecting this machine with cmdb-agent (key from $DATA/agent-key.toml)..."
./target/release/cmdb-agent run --server-url "$URL" --key-file "$DATA/agent-key.toml" \
  --state-dir "$DATA/agent" --spool-dir "$DATA/agent/spool"

echo
echo "cmdb is running: open $URL"
if [ -f "$DATA/admin-password" ]; then
  echo "  log in as: admin / $(cat "$DATA/admin-password")   (also in $DATA/admin-password)"
fi
echo "  API token (admin): $DATA/admin-token   e.g. curl -H \"Authorization: Bearer \$(cat $DATA/admin-token)\" $URL/api/v1/assets"
echo "Press Ctrl-C to stop the server."
wait "$server"
