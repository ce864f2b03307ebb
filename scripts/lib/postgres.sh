# Makes sure a Postgres that Purser can use is reachable, installing and starting one on
# Debian/Ubuntu when none is. Sourced by scripts/up.sh and scripts/test.sh.
#
# With DATABASE_URL set, that database is used as it is and nothing is installed. Without it,
# Purser uses postgres://purser:purser@127.0.0.1:5432/purser: a local server is started (and
# installed first if needed), and the `purser` role (LOGIN CREATEDB, password `purser`) and
# database are created when missing.

PURSER_DEFAULT_DATABASE_URL="postgres://purser:purser@127.0.0.1:5432/purser"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root (or sudo) to run: $*"; fi
}

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5432) >/dev/null 2>&1; }

wait_for_port() {
  for _ in $(seq 1 60); do port_open && return 0; sleep 0.5; done
  return 1
}

start_local_postgres() {
  local ver
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1 || true)
  # Change data capture (the purser_read_models publication) needs logical decoding; its test
  # reads through a real replication slot. Only for a server this script starts itself.
  if [ -n "$ver" ] && [ -d "/etc/postgresql/$ver/main/conf.d" ] \
     && ! grep -qs '^wal_level' "/etc/postgresql/$ver/main/conf.d/purser.conf"; then
    echo "wal_level = logical" | as_root tee "/etc/postgresql/$ver/main/conf.d/purser.conf" >/dev/null || true
  fi
  if [ -n "$ver" ] && command -v pg_ctlcluster >/dev/null; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
      || as_root pg_ctlcluster "$ver" main start 2>/dev/null || true
  fi
  port_open || as_root service postgresql start >/dev/null 2>&1 || true
  port_open || as_root systemctl start postgresql >/dev/null 2>&1 || true
  wait_for_port
}

install_postgres() {
  command -v apt-get >/dev/null || die "no Postgres on 127.0.0.1:5432 and no apt-get to install one; start Postgres or set DATABASE_URL"
  say "installing PostgreSQL (apt-get install postgresql)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
}

# Runs psql as a superuser: over the local socket as the postgres OS user, or over TCP as the
# postgres role where the server trusts local connections.
superuser_psql() {
  if command -v runuser >/dev/null && [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 \
     && runuser -u postgres -- psql -Atqc 'select 1' >/dev/null 2>&1; then
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -Atq "$@"
  elif command -v sudo >/dev/null && sudo -n -u postgres psql -Atqc 'select 1' >/dev/null 2>&1; then
    sudo -n -u postgres psql -v ON_ERROR_STOP=1 -Atq "$@"
  elif psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  else
    return 1
  fi
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    say "using DATABASE_URL as given"
    export DATABASE_URL
    return 0
  fi
  export DATABASE_URL="$PURSER_DEFAULT_DATABASE_URL"
  if ! port_open; then
    command -v pg_ctlcluster >/dev/null || install_postgres
    say "starting PostgreSQL"
    start_local_postgres || die "PostgreSQL did not start on 127.0.0.1:5432"
  fi
  command -v psql >/dev/null || {
    say "installing the psql client"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
  }
  if psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    return 0
  fi
  say "creating the purser role and database"
  superuser_psql -c "do \$\$ begin
      if not exists (select 1 from pg_roles where rolname = 'purser') then
        create role purser login createdb replication password 'purser';
      else
        alter role purser login createdb replication password 'purser';
      end if; end \$\$;" \
    || die "cannot act as a Postgres superuser to create the purser role; set DATABASE_URL to a database you can use"
  if [ "$(superuser_psql -c "select count(*) from pg_database where datname = 'purser'")" = 0 ]; then
    superuser_psql -c "create database purser owner purser"
  fi
  psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null \
    || die "cannot connect to $PURSER_DEFAULT_DATABASE_URL (check pg_hba.conf allows password logins on 127.0.0.1)"
}
