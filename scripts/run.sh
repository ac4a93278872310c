#!/usr/bin/env bash
# `make run`: the authority (in-process store unless REDIS_URL is set, with a demo key on an empty store)
# and a gateway in front of it. Without OPENAI_API_KEY the gateway answers from its built-in demo
# upstream, so the whole path works offline. Ctrl-C stops both gracefully.
#
# Ports: GATEWAY_PORT (8080), AUTHORITY_PORT (8081, gRPC) and METRICS_PORT (9464, the authority's
# /metrics), e.g. `make run GATEWAY_PORT=18080 AUTHORITY_PORT=18081 METRICS_PORT=19464`. The gateway is
# pointed at the authority, and the demo key's curl line at the gateway, whatever they are.
set -uo pipefail
cd "$(dirname "$0")/.."

host=${RUN_HOST:-0.0.0.0}
gateway_port=${GATEWAY_PORT:-8080}
authority_port=${AUTHORITY_PORT:-8081}
metrics_port=${METRICS_PORT:-9464}
# What a client on this machine dials: a wildcard listener is reached on loopback.
case "$host" in 0.0.0.0 | ::) local_host=127.0.0.1 ;; *) local_host=$host ;; esac

QUOTAD_GRPC_ADDR="$host:$authority_port" QUOTAD_METRICS_ADDR="$host:$metrics_port" \
  QUOTAD_DEMO_GATEWAY="http://$local_host:$gateway_port" \
  node dist/src/main/cli.js serve --demo-key on &
authority=$!
QUOTAD_GATEWAY_ADDR="$host:$gateway_port" QUOTAD_AUTHORITY="$local_host:$authority_port" \
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
if [ "$status" -ne 0 ]; then
  echo "make run: stopped (exit $status). Ports in use? Move them: make run GATEWAY_PORT=… AUTHORITY_PORT=… METRICS_PORT=…" >&2
fi
exit "$status"
