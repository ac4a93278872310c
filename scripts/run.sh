#!/usr/bin/env bash
# `make run`: the authority (in-process store unless REDIS_URL is set, with a demo key on an empty store)
# and a gateway in front of it on 0.0.0.0:8080. Without OPENAI_API_KEY the gateway answers from its
# built-in demo upstream, so the whole path works offline. Ctrl-C stops both gracefully.
set -uo pipefail
cd "$(dirname "$0")/.."

node dist/src/main/cli.js serve --demo-key on &
authority=$!
node dist/src/main/cli.js gateway --demo-upstream on &
gateway=$!

stop() {
  kill -TERM "$authority" "$gateway" 2>/dev/null
  wait "$authority" "$gateway"
}
trap 'stop; exit 0' INT TERM

# When either exits on its own (a bad setting, a port in use), stop the other and fail.
wait -n "$authority" "$gateway"
status=$?
stop
exit "$status"
