# Sourced by the test script: makes sure a Postgres server answers on
# 127.0.0.1:5432 for user postgres without a password (the tests create and
# drop their own databases). Installs and starts Debian's server if needed.
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1 || ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "== installing PostgreSQL"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      ver=$(ls /etc/postgresql | head -1)
      # Test server only: local connections without a password.
      sed -i 's/\(scram-sha-256\|md5\|peer\)$/trust/' /etc/postgresql/"$ver"/main/pg_hba.conf
    else
      echo "PostgreSQL is not installed; install it, or set BIOMERO_TEST_BACKENDS=sqlite" >&2
      exit 1
    fi
  fi
  echo "== starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
