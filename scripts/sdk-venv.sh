#!/usr/bin/env bash
# The official Python SDKs, pinned, in a venv under ~/.cache/switchyard (installed on first use,
# a version check after that), for tests/e2e/python-sdks.test.mjs. Prints the venv's python.
set -euo pipefail
openai_version="3.57.0"
anthropic_version="2.15.0"
venv="${SWITCHYARD_SDK_VENV:-$HOME/.cache/switchyard/sdk-venv}"
say() { echo "sdk-venv: $*" >&2; }
installed() {
  "$venv/bin/python" -c "import openai, anthropic; print(openai.__version__, anthropic.__version__)" 2>/dev/null || true
}
if [ "$(installed)" != "$openai_version $anthropic_version" ]; then
  say "installing openai $openai_version and anthropic $anthropic_version into ${venv/#$HOME/\~} (once)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    say "python3 cannot make a venv here; installing Debian's python3-venv"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "openai==$openai_version" "anthropic==$anthropic_version" >&2
fi
echo "$venv/bin/python"
