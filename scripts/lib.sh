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
