#!/usr/bin/env bash
# Create tools/venv with the pinned vallr-pin stack. Called by tools/Makefile; run it through `make -C tools`.
#
# Each step is named; a failing step prints which one failed and removes the completion stamp, so a half-made
# environment never looks complete (the Makefile only trusts venv/.installed). Re-running resumes: pip skips
# what is already installed at the pinned version.
set -euo pipefail
cd "$(dirname "$0")"
venv=venv
stamp=$venv/.installed
log=install.log
python=${PYTHON:-python3}

rm -f "$stamp"
: > "$log"
step() {
  local name=$1; shift
  echo "tools: [$name] ..."
  if ! "$@" >>"$log" 2>&1; then
    echo "tools: FAILED at step [$name]: $*" >&2
    echo "tools: last lines of tools/$log:" >&2
    grep -v '^WARNING: Location' "$log" | tail -n 15 >&2
    exit 1
  fi
}

[ -x $venv/bin/python ] || step "create venv ($python -m venv)" "$python" -m venv $venv
pip="$venv/bin/python -m pip --disable-pip-version-check"
# pip>=25 refuses ci_sdr (an ESPnet import) because its metadata declares a git-URL extra; 24.2 still accepts it.
step "pip 24.2" $pip install -q pip==24.2 setuptools wheel
step "pinned stack (requirements.txt + constraints.txt)" $pip install -r requirements.txt -c constraints.txt
# ESPnet's own metadata pins setuptools<74 (torch needs >=77) and pulls a git-URL dependency: its runtime deps
# are in requirements.txt, the package itself goes in without them.
step "espnet 202511 (--no-deps)" $pip install --no-deps espnet==202511 ci_sdr==0.0.2 fast-bss-eval==0.1.3
# deepspeed is an sdist; DS_BUILD_OPS=0 skips compiling CUDA ops (they are JIT-built on a GPU machine).
step "deepspeed 0.19.8 (DS_BUILD_OPS=0)" env DS_BUILD_OPS=0 $pip install --no-build-isolation deepspeed==0.19.8
step "vallr_pin (editable)" $pip install --no-deps --no-build-isolation -e ..
step "import check" $venv/bin/python -c "import espnet2.tasks.abs_task, espnet.nets.batch_beam_search, funasr.models.sanm.encoder, swift, msgspec, decord, kaldiio, pypinyin, jiwer, mediapipe, deepspeed, opencc, vallr_pin"

# sclite (Debian sctk) is the scorer ESPnet recipes use; Debian keeps it off PATH, so link it into the venv.
if [ ! -x /usr/lib/sctk/bin/sclite ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    step "sctk (apt-get)" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sctk"
  else
    echo "tools: sclite not found; install Debian package sctk (sudo apt-get install sctk) for sclite scoring" >&2
  fi
fi
[ -x /usr/lib/sctk/bin/sclite ] && ln -sf /usr/lib/sctk/bin/sclite $venv/bin/sclite

touch "$stamp"
echo "tools: environment ready in tools/$venv ($(du -sh $venv | cut -f1))"
