#!/usr/bin/env bash
# A self-written CNN (asinh stretch inside) gated three ways in a fresh project outside the repository:
# `shortcutgates init`, then `pytest gate_tests` with --model finder.onnx (dynamo export, external data),
# --model finder.pt2, and a shortcutgates_scorer fixture; compare.py checks the three reports agree.
# Usage: bash scripts/foreign_routes/run.sh WORKDIR   (about 5 min on a loaded 2-core machine)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${1:?usage: run.sh WORKDIR}
export PYTHONPATH=$REPO OMP_NUM_THREADS=1
rm -rf "$WORK/proj" && mkdir -p "$WORK/proj" && cd "$WORK/proj"
cp -r "$REPO/fixtures/data/clean" data_clean
printf '[project]\nname = "my-finder"\n' > pyproject.toml
python -m shortcutgates.cli init . ; echo "init exit $?"
python "$HERE/make_model.py" data_clean 2>&1 | grep -v -i warn | tail -2
cp gate_tests/conftest.py conftest_stub.py
GATES='-p no:cacheprovider -q'
python -m pytest gate_tests --data data_clean --model finder.onnx --gate-report onnx.json $GATES > onnx.txt 2>&1; echo "onnx exit $?"
python -m pytest gate_tests --data data_clean --model finder.pt2 --gate-report pt2.json $GATES > pt2.txt 2>&1; echo "pt2 exit $?"
cat > gate_tests/conftest.py <<PY
import sys

import pytest
import torch

sys.path.insert(0, "$HERE")


@pytest.fixture(scope="session")
def shortcutgates_scorer():
    from make_model_def import Finder

    model = Finder()
    model.load_state_dict(torch.load("finder_weights.pt", weights_only=True))
    model.eval()

    def score(images):
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(images))).double().numpy()

    score.preprocess = "none"
    return score
PY
python -m pytest gate_tests --data data_clean --gate-report fixture.json $GATES > fixture.txt 2>&1; echo "fixture exit $?"
cp conftest_stub.py gate_tests/conftest.py
python "$HERE/compare.py" onnx.json pt2.json fixture.json
