# Sourced by `make test`: makes sure the services the tests use are there, and exports their URLs.
# Redis: the machine's on 127.0.0.1:6379 when it answers, else a throwaway redis-server on a free
# port (installing Debian's package first when missing and running as root).
_ssehub_redis_ping() { "$1" -h 127.0.0.1 -p "$2" ping 2>/dev/null | grep -q PONG; }
if [ -z "${SSEHUB_TEST_REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
  fi
  if command -v redis-cli >/dev/null 2>&1 && _ssehub_redis_ping redis-cli 6379; then
    export SSEHUB_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
  elif command -v redis-server >/dev/null 2>&1; then
    _ssehub_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    _ssehub_dir=$(mktemp -d)
    redis-server --port "$_ssehub_port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$_ssehub_dir" --daemonize yes --pidfile "$_ssehub_dir/redis.pid" >/dev/null
    for _ in $(seq 50); do _ssehub_redis_ping redis-cli "$_ssehub_port" && break; sleep 0.1; done
    export SSEHUB_TEST_REDIS_URL="redis://127.0.0.1:$_ssehub_port/0"
    trap 'kill "$(cat "$_ssehub_dir/redis.pid")" 2>/dev/null' EXIT
  fi
fi
# nginx for tests/integration/test_nginx.py (run there as its own child, never as a service).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null 2>&1 || true
fi
# docker-compose validates deploy/compose.yaml (`config` needs no Docker engine).
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null 2>&1 || true
fi
# Chromium for the browser end-to-end tests (tests/e2e): Debian's package when missing and root.
if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || true
fi
_ssehub_chromium=$(command -v chromium 2>/dev/null || echo none)
echo "test services: redis=${SSEHUB_TEST_REDIS_URL:-none} chromium=${_ssehub_chromium}"
