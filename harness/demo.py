"""`splitbench demo`: the main job on the embedded default, the local single-core profile.

Two parts, each a real run written to its own results directory:

1. ``vgg16_gender``: Osia et al.'s seven configurations of VGG-16 (conv5_1, conv5_2, conv5_3 x
   simple/reduced, plus on-premise), exported for every backend that runs here and measured on
   ``cpu-1core`` with the papers' 60 timed runs. To fit ten minutes on a 2-core machine the input
   is 112x112 instead of 224x224: the weights — and so the load time and memory that make the
   papers' point — are those of the 224x224 network (fc6 keeps its 25088x4096 matrix thanks to
   the adaptive pool); inference takes about a quarter of the full-size time.
2. ``digits``: a small CNN trained in seconds on scikit-learn's handwritten digits (primary task
   "digit >= 5", the digit as the sensitive label), in float32 and in static int8 (calibrated on its own
   training images): the privacy of the features each uploads under DPFE's noise sweep for every cut and
   embedding, with the primary-task accuracy, its phone cost measured on the same profile, merged into the
   trade-off plots, ``report.html`` and a recommendation for a sample budget.

A second ``splitbench demo`` resumes: what is already measured for the same artifacts and device is
kept (remove the directory to measure again).
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from harness.analysis.privacy.noise import PAPER_RATIOS
from harness.analysis.privacy.scores import DEFAULT_ESTIMATOR
from harness.analysis.privacy.sweep import EMBEDDINGS
from harness.analysis.privacy.stage import write_privacy_table
from harness.config.spec import parse_spec
from harness.results.layout import FIGURES_DIR, REPORT_HTML, SCREENSHOT_PNG, SUMMARY_CSV
from models import digits as digits_model

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

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

DIGITS_CUTS = digits_model.CUTS
DIGITS_REDUCED_DIM = digits_model.REDUCED_DIM
DIGITS_BACKENDS = ("onnx", "litert", "executorch")
#: The digits part measures and scores static int8 beside float32 (what a phone ships; issue 19).
DIGITS_PRECISIONS = ("float32", "int8")
#: The demo's default ratios: every ratio of the paper (the whole sweep takes about 25 s on one core).
DIGITS_RATIOS = PAPER_RATIOS


def _digits_spec(weights: Path, runs: int, *, cuts=DIGITS_CUTS, backends=DIGITS_BACKENDS,
                 precisions=DIGITS_PRECISIONS) -> str:
    dims = "\n".join(f"{c} = {DIGITS_REDUCED_DIM}" for c in cuts)
    return f"""
name = "demo_digits"

[model]
source = "{Path(digits_model.__file__).resolve()}:digits_factory"
weights = "{weights.resolve()}"

[split]
cuts = {list(cuts)!r}
embeddings = ["simple", "reduced"]

[split.reduced_dims]
{dims}

[export]
backends = {list(backends)!r}
precisions = {list(precisions)!r}

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


def run_digits(out: Path, *, runs: int = 60, ratios=None, cuts=DIGITS_CUTS, backends=DIGITS_BACKENDS,
               precisions=DIGITS_PRECISIONS) -> int:
    """Privacy sweep, measured phone cost, merge, report: the digits half of the demo, float32 and int8 (the
    tests run it with fewer runs, ratios, cuts or backends)."""
    from harness.split.configurations import identify
    from harness.orchestrate import run_spec
    from harness.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    weights = out / "digits_cnn.pt"
    _say(f"digits: training, then the privacy sweep (every cut x embedding x noise ratio, {' and '.join(precisions)})")
    table = digits_demo(None, ratios=DIGITS_RATIOS if ratios is None else ratios, seed=0, weights=weights, cuts=cuts,
                        precisions=precisions)
    spec = parse_spec(tomllib.loads(_digits_spec(weights, runs, cuts=cuts, backends=backends, precisions=precisions)),
                      origin="demo (digits)", path=out / "spec.toml")
    table["model"] = identify(spec).name  # the privacy rows join the measurements on this name
    write_privacy_table(out, table)

    _say("digits: phone cost on cpu-1core")
    outcome = run_spec(spec, out, resume=True)
    build_report(out)
    first_screen(out)
    return outcome.exit_code


def run_vgg(out: Path) -> int:
    from harness.orchestrate import run_spec

    spec = parse_spec(tomllib.loads(VGG_SPEC), origin="demo (vgg16_gender)", path=out / "spec.toml")
    code = run_spec(spec, out, resume=True).exit_code  # writes report.html
    first_screen(out)
    return code


def first_screen(out: Path) -> Path | None:
    """``report_first_screen.png`` beside the report: the page as a 1400x900 browser window first shows it.
    Needs headless Chromium; without it, one line says so and the demo goes on."""
    from harness.report.browser import find_chromium, screenshot

    if not (out / REPORT_HTML).is_file():
        return None
    if find_chromium() is None:
        _say(f"{out.name}: no first-screen screenshot (headless Chromium not installed; `make browser`)")
        return None
    try:
        return screenshot(out / REPORT_HTML, out / SCREENSHOT_PNG)
    except Exception as exc:  # noqa: BLE001 - a picture of the report is not worth failing the demo
        _say(f"{out.name}: no first-screen screenshot ({type(exc).__name__}: {exc})")
        return None


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
        print(f"  {part:13s} {d / REPORT_HTML}   (first screen: {d / SCREENSHOT_PNG}; summary: "
              f"{d / SUMMARY_CSV}, figures: {d / FIGURES_DIR})")
    print(f"Try: splitbench recommend {out / 'digits'} --max-latency-ms 60 --max-memory-mb 20 --network lte --min-accuracy 0.9")
    return max(codes)


# --------------------------------------------------------------------------------------------------
# The digits demonstration: train, then sweep (also the library's example of privacy_sweep)


def digits_demo(out: str | Path | None = None, *, ratios: Iterable[float] = DIGITS_RATIOS, seed: int = 0,
                cuts: Iterable[str] = DIGITS_CUTS, embeddings: Iterable[str] = EMBEDDINGS,
                reduced_dim: int = DIGITS_REDUCED_DIM, epochs: int = 25, weights: str | Path | None = None,
                estimators: Iterable[str] = (DEFAULT_ESTIMATOR,), split: str = "stratified",
                precisions: Iterable[str] = ("float32",)) -> "pd.DataFrame":
    """Train the digits CNN, sweep every cut x embedding x ratio, and write ``OUT/privacy.csv`` when ``out`` is given.

    ``weights``: where to save the trained CNN's state_dict (the demo measures that very network).
    ``estimators`` and ``split``: as :func:`harness.analysis.privacy.sweep.privacy_sweep` (one row per estimator).
    ``precisions``: whose uploaded features are scored (default float32 only); int8 parts are calibrated
    on the model's own data as the export calibrates: 32 of the training images (the export's default
    ``calibration_samples``), drawn with seed 0 (its default ``calibration_seed``).

    Primary task "digit >= 5", sensitive label the digit (K = 10); the images are split in half,
    stratified by digit: one half trains the CNN (:mod:`models.digits`), the other is the held-out
    set of the sweep. The table's ``model`` is ``digits-cnn``; ``DataFrame.attrs`` holds the CNN's
    held-out accuracy without a cut (``full_accuracy``) and the seconds spent training and sweeping.
    Runs on one thread (torch and BLAS): about 25 s of one core with every paper ratio.
    """
    import torch
    from threadpoolctl import threadpool_limits

    # The CNN and the scores are tiny: one thread is the fastest (threads only spin on 8x8 images)
    # and leaves the other cores to whatever is being measured. The caller's settings come back.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return _digits_demo(out, ratios=ratios, seed=seed, cuts=cuts, embeddings=embeddings,
                                reduced_dim=reduced_dim, epochs=epochs, weights=weights, estimators=estimators,
                                split=split, precisions=precisions)
    finally:
        torch.set_num_threads(previous)


def _digits_demo(out, *, ratios, seed, cuts, embeddings, reduced_dim, epochs, weights, estimators,
                 split, precisions) -> "pd.DataFrame":
    import torch

    from harness.analysis.privacy.quantized import Calibration
    from harness.analysis.privacy.sweep import privacy_sweep

    t0 = time.perf_counter()
    data = digits_model.digits_data(seed)
    model = digits_model.train_digits_cnn(data["train_x"], data["train_digit"] >= 5, seed=seed, epochs=epochs)
    t_train = time.perf_counter() - t0
    if weights is not None:
        torch.save(model.state_dict(), weights)
    test_primary = (data["test_digit"] >= 5).astype(np.int64)
    with torch.no_grad():
        full_acc = float((model(torch.from_numpy(data["test_x"])).argmax(1).numpy() == test_primary).mean())
    table = privacy_sweep(model, cuts, data["test_x"], test_primary, data["test_digit"], embeddings=embeddings,
                          dims=reduced_dim, ratios=ratios, seed=seed, model_name="digits-cnn",
                          estimators=estimators, split=split, precisions=precisions,
                          calibration=Calibration(data=data["train_x"], origin=f"digits_data({seed})['train_x']"))
    table.attrs.update(full_accuracy=full_acc, train_s=t_train, sweep_s=time.perf_counter() - t0 - t_train)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_privacy_table(out, table)
    return table
