"""`splitbench demo`: the main job on the embedded default, the local single-core profile.

Two parts, each a real run written to its own results directory:

1. ``vgg16_gender``: Osia et al.'s seven configurations of VGG-16 (conv5_1, conv5_2, conv5_3 x
   simple/reduced, plus on-premise), exported for every backend that runs here and measured on
   ``cpu-1core`` with the papers' 60 timed runs. To fit ten minutes on a 2-core machine the input
   is 112x112 instead of 224x224: the weights — and so the load time and memory that make the
   papers' point — are those of the 224x224 network (fc6 keeps its 25088x4096 matrix thanks to
   the adaptive pool); inference takes about a quarter of the full-size time.
2. ``digits``: a small CNN trained in seconds on scikit-learn's handwritten digits (primary task
   "digit >= 5", the digit as the sensitive label), its privacy under DPFE's noise sweep for every
   cut and embedding, its phone cost measured on the same profile, merged into the trade-off plots,
   ``report.html`` and a recommendation for a sample budget.

A second ``splitbench demo`` resumes: what is already measured for the same artifacts and device is
kept (remove the directory to measure again).
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from harness.spec import parse_spec

VGG_SPEC = """
name = "demo_vgg16_gender"

[model]
zoo = "vgg16_gender"
seed = 0
input_shape = [1, 3, 112, 112]   # the papers use 224x224: see harness/demo.py

[split]
cuts = ["conv5_1", "conv5_2", "conv5_3"]
embeddings = ["simple", "reduced"]

[export]
backends = ["onnx", "litert", "executorch"]   # Core ML converts here but runs only on Apple devices

[run]
targets = ["cpu-1core"]
runs = 60
warmup = 5
warm_loads = 3
timeout_s = 600
"""

def digits_factory():
    """The digits CNN and an example input: the spec's ``source`` for the measured part."""
    import torch

    from harness.privacy_demo import digits_cnn

    return digits_cnn(), torch.zeros(1, 1, 8, 8)


def _digits_spec(weights: Path, runs: int) -> str:
    from harness.privacy_demo import DIGITS_CUTS, DIGITS_REDUCED_DIM

    dims = "\n".join(f"{c} = {DIGITS_REDUCED_DIM}" for c in DIGITS_CUTS)
    return f"""
name = "demo_digits"

[model]
source = "{Path(__file__).resolve()}:digits_factory"
weights = "{weights.resolve()}"

[split]
cuts = {list(DIGITS_CUTS)!r}
embeddings = ["simple", "reduced"]

[split.reduced_dims]
{dims}

[export]
backends = ["onnx", "litert", "executorch"]

[run]
targets = ["cpu-1core"]
runs = {runs}
warmup = 5
warm_loads = 3
timeout_s = 300
"""


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run_digits(out: Path, *, runs: int = 60, ratios=None) -> int:
    """Privacy sweep, measured phone cost, merge, report: the digits half of the demo."""
    from harness.configurations import identify
    from harness.orchestrate import run_spec
    from harness.privacy_demo import DIGITS_RATIOS, digits_demo
    from harness.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    weights = out / "digits_cnn.pt"
    _say("digits: training, then the privacy sweep (every cut x embedding x noise ratio)")
    table = digits_demo(None, ratios=DIGITS_RATIOS if ratios is None else ratios, seed=0, weights=weights)
    spec = parse_spec(tomllib.loads(_digits_spec(weights, runs)), origin="demo (digits)", path=out / "spec.toml")
    table["model"] = identify(spec).name  # the privacy rows join the measurements on this name
    table.to_csv(out / "privacy.csv", index=False)

    _say("digits: phone cost on cpu-1core")
    outcome = run_spec(spec, out, resume=True)
    build_report(out)
    return outcome.exit_code


def run_vgg(out: Path) -> int:
    from harness.orchestrate import run_spec

    spec = parse_spec(tomllib.loads(VGG_SPEC), origin="demo (vgg16_gender)", path=out / "spec.toml")
    return run_spec(spec, out, resume=True).exit_code


def run_demo(out: Path) -> int:
    """Run both parts; print where the results are. Exit code: the worst of the two runs."""
    out = Path(out)
    t0 = time.perf_counter()
    _say(f"splitbench demo: results under {out}/")
    codes = [run_vgg(out / "vgg16_gender"), run_digits(out / "digits")]
    minutes = (time.perf_counter() - t0) / 60
    print(f"\nDemo finished in {minutes:.1f} min.")
    for part in ("vgg16_gender", "digits"):
        d = out / part
        print(f"  {part:13s} {d / 'report.html'}   (summary: {d / 'summary.csv'}, figures: {d / 'figures'})")
    print(f"Try: splitbench recommend {out / 'digits'} --max-latency-ms 60 --max-memory-mb 20 --network lte --min-accuracy 0.9")
    return max(codes)
