# Shared by scripts/setup and scripts/setup-tests (sourced, not run).
PYTHON=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

make_venv() {
  if [ ! -x .venv/bin/python ]; then
    step "virtualenv .venv"
    "$PYTHON" -m venv .venv
  fi
}

# pip install with every version held to requirements.lock (the set the tests last passed with).
pip_locked() { .venv/bin/python -m pip install -q -c requirements.lock "$@"; }

# A stamp per set-up kind records the hash of the files that decide what gets installed, so a
# second run skips pip entirely when nothing changed.
_stamp_hash() { cat "$@" | sha256sum | cut -c1-16; }
stamp_is_current() {
  local kind=$1; shift
  [ -f ".venv/.narratives-$kind" ] && [ "$(cat ".venv/.narratives-$kind")" = "$(_stamp_hash "$@")" ]
}
write_stamp() {
  local kind=$1; shift
  _stamp_hash "$@" > ".venv/.narratives-$kind"
}
