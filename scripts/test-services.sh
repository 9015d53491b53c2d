#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on loopback.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached
    for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
  fi
fi
if port_open 5672; then
  echo "RabbitMQ: listening on 127.0.0.1:5672"
else
  echo "RabbitMQ: not available (tests that need it will skip, or fail under CI)" >&2
fi

# PostgreSQL: the control-plane suites make a throwaway database there (VP_TEST_DATABASE_URL).
if port_open 5432; then
  echo "PostgreSQL: listening on 127.0.0.1:5432"
else
  echo "PostgreSQL: not available (its tests will skip, or fail under CI)" >&2
fi

# nginx, Chromium and wrk (the flood tests) come from Debian's packages.
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} from Debian's packages"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "could not install ${missing[*]}; end-to-end tests will skip (or fail under CI)" >&2
  else
    echo "missing ${missing[*]}: install them with apt-get (end-to-end tests need them)" >&2
  fi
fi
