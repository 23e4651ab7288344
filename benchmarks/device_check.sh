#!/usr/bin/env bash
# The GPU checks of issue #15 as one command for a lent device machine (one H200; its python3 has a
# CUDA build of torch, pandas, scipy, networkx, xarray ..., but not pyro, chirho, y0 or ArviZ).
#
# Prepare here, once (pure-Python wheels, about 3 MB; .whl is ignored through .git/info/exclude):
#   echo /.whl/ >> .git/info/exclude
#   python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl pyro-ppl==1.9.2 pyro-api==0.1.2 \
#     chirho==0.3.0 y0==0.2.11 more-click more-itertools arviz==0.23.4 xarray-einstats \
#     h5netcdf==1.3.0 platformdirs
# Run there (the device tool's `run`), leaving time to run it again within the session's device time:
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
# What it writes under $OUT comes back: the environment, the CUDA tests' output, and
# fit_many_speed's table and JSON (batch and scale on the GPU, N = 10^6 included). Copy those two
# into benchmarks/results/.
set -uo pipefail
OUT="${OUT:-/tmp/device_check}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1

python3 - <<'PY' 2>&1 | tee "$OUT/env.txt"
import torch, pyro, causal_pp
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("pyro", pyro.__version__, "causal_pp", causal_pp.__version__)
PY

# 1. The tests that need a GPU (they skip without one), and the device checks around them.
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_inference.py tests/test_batched.py -k "cuda or device" \
  2>&1 | tee "$OUT/tests.txt"

# 2. Batch (R = 20 at N = 200 and 1000) and scale (N = 10^3 ... 10^6) on the GPU.
timeout 330 python3 benchmarks/fit_many_speed.py --device cuda --out "$OUT" 2>&1 | tee "$OUT/speed.txt"
