# Makes sure a RabbitMQ answers on 127.0.0.1:5672 for the broker tests (tests/broker.rs),
# installing and starting Debian's rabbitmq-server when none does. Sourced by scripts/test.sh
# after scripts/lib/postgres.sh (which defines say, die and as_root).
#
# When a broker answers, PURSER_REQUIRE_RABBITMQ=1 is exported, so a broker test that cannot
# reach it fails instead of skipping. When none can be had, this says so plainly and the
# broker tests skip with a line each.

amqp_port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) >/dev/null 2>&1; }

start_local_rabbitmq() {
  as_root service rabbitmq-server start >/dev/null 2>&1 \
    || as_root systemctl start rabbitmq-server >/dev/null 2>&1 \
    || { command -v rabbitmq-server >/dev/null && as_root sh -c 'rabbitmq-server -detached' >/dev/null 2>&1; } \
    || true
  for _ in $(seq 1 120); do amqp_port_open && return 0; sleep 0.5; done
  return 1
}

ensure_rabbitmq() {
  if ! amqp_port_open; then
    if ! command -v rabbitmq-server >/dev/null; then
      if command -v apt-get >/dev/null; then
        say "installing RabbitMQ (apt-get install rabbitmq-server)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null || true
      fi
    fi
    if command -v rabbitmq-server >/dev/null; then
      say "starting RabbitMQ"
      start_local_rabbitmq || true
    fi
  fi
  if amqp_port_open; then
    export PURSER_REQUIRE_RABBITMQ=1
  else
    say "NO RabbitMQ on 127.0.0.1:5672 (could not install or start rabbitmq-server): the broker tests will SKIP"
  fi
}
