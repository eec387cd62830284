# Helpers shared by scripts/up and scripts/test. Source it; do not run it.

# Installs Debian packages that are missing: with apt-get when running as root, otherwise it
# prints the command and fails.
ensure_packages() {
  local missing=()
  local pkg bin
  for pkg in "$@"; do
    bin=${pkg#*:}
    pkg=${pkg%%:*}
    command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Keep Debian from starting the packages' own services (a system nginx on :80, a redis on
    # :6379): the stack and the tests start their own, on their own ports.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
  else
    echo "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

# Waits until "$@" succeeds, up to $WAIT_SECONDS (default 30) seconds.
wait_until() {
  local deadline=$(( $(date +%s) + ${WAIT_SECONDS:-30} ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "timed out waiting for: $*" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Like ensure_packages, for a package whose program is not on the PATH: installs PKG unless a
# file matching GLOB exists (e.g. postgresql and /usr/lib/postgresql/*/bin/postgres).
ensure_package_file() {
  local pkg=$1 glob=$2
  # shellcheck disable=SC2086 # the glob must expand
  ls $glob >/dev/null 2>&1 && return 0
  ensure_packages "$pkg:__${pkg}_is_missing__"
}

# redis-server flags of a Redis Cluster node (with --port, --cluster-port and --dir of its
# own): cluster-require-full-coverage no keeps the other shards serving while one fails over.
REDIS_CLUSTER_FLAGS=(--cluster-enabled yes --cluster-config-file nodes.conf
  --cluster-require-full-coverage no --bind 127.0.0.1 --save "" --daemonize no
  --repl-diskless-sync-delay 0)

# Makes the six running cluster nodes on 127.0.0.1 PORTS... a cluster of 3 masters and 3
# replicas (unless they already are one, as after a restart) and waits until every node agrees:
# cluster_state:ok comes before the nodes agree on roles, so it waits for 3 connected masters
# with slots and 3 connected replicas as each node sees them, each replica's first sync done.
redis_cluster_create() {
  local addrs=() port
  for port in "$@"; do addrs+=("127.0.0.1:$port"); done
  for port in "$@"; do wait_until redis-cli -p "$port" ping; done
  if ! redis-cli -p "$1" cluster info | grep -q '^cluster_known_nodes:6'; then
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  fi
  REDIS_CLUSTER_PORTS="$*" wait_until redis_cluster_agreed
}

redis_cluster_agreed() {
  local port nodes
  for port in $REDIS_CLUSTER_PORTS; do
    redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' || return 1
    nodes=$(redis-cli -p "$port" cluster nodes)
    [ "$(awk '$3 ~ /master/ && $3 !~ /fail/ && $8 == "connected" && NF > 8' <<<"$nodes" | wc -l)" = 3 ] || return 1
    [ "$(awk '$3 ~ /slave/ && $3 !~ /fail/ && $8 == "connected"' <<<"$nodes" | wc -l)" = 3 ] || return 1
    # A replica is shown connected before its first sync is done.
    redis-cli -p "$port" info replication | grep -qE '^(role:master|master_link_status:up)' || return 1
  done
}
