"""The int8 tolerance: when an int8 part is not quantized, or too far from the float32 PyTorch part.

The error measure is the float32 one (:mod:`harness.export.part`): ``max_rel_err = max|out - ref| / scale``
(``max|ref|``, or a reduced embedding's ``max(|W||f|+|b|)``) and ``output_rel_err = max|out - ref| / max|ref|``.
An int8 part is

- not quantized, when the artifact holds no int8 weights (:mod:`harness.export.int8_readers`), or when its
  ``max_rel_err`` is float-sized (``<= FLOAT_SIZED_ERR``): it computed in float;
- wrong, when ``max_rel_err`` or ``output_rel_err`` exceeds ``INT8_RTOL``.

Measured here (docs/exports.md has the tables): real int8 0.0014-0.021 ``max_rel_err`` and 0.0044-0.041
``output_rel_err`` (every digits cut x embedding x backend, trained weights, calibrated on its data) and
0.0047-0.0135 (VGG-16 conv5_x, simple embedding, seeded random calibration); broken quantization (calibration
inputs 10x too small, so real inputs clip) 0.32-1.07; an input outside the calibration's distribution
0.36-2.7; float32 artifacts 7e-9 - 4.4e-6, real int8 at least 1.6e-4.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.export.int8_readers import Int8Check

#: Largest accepted int8 error, on both max_rel_err and output_rel_err. Real int8 measured at most 0.021 / 0.041;
#: broken quantization at least 0.32. (A 10x too wide calibration range, 0.02-0.12, is a grey zone.)
INT8_RTOL = 0.1
#: At or below this max_rel_err an "int8" part computed in float: float32 artifacts measure 7e-9 - 4.4e-6, real
#: int8 at least 1.6e-4 (VGG-16 reduced, on the terms' scale).
FLOAT_SIZED_ERR = 3e-5
#: The row of a Core ML int8 artifact (not run off macOS).
COREML_INT8_NOTE = ("Core ML prediction needs macOS: int8 weights read from the ML program and its names and shapes "
                    "checked, not numerically verified; weight-only int8 (quantizing activations needs predictions: "
                    "macOS only); needs iOS 16+")


@dataclass(frozen=True)
class Verification:
    max_abs_err: float
    max_rel_err: float  # max|out - ref| / scale
    output_rel_err: float  # max|out - ref| / max|ref|
    output_all_zero: bool = False


def judge(check: Int8Check, verification: Verification | None, reduced: bool = False) -> str | None:
    """Why an int8 export fails ("not quantized: ..." or "verification: ..."), or None when it is a real,
    accurate int8 part. Accuracy first: an output collapsed to zeros is wrong, not "float-sized"."""
    if check.problem:
        return check.problem
    if verification is None:
        return None
    err, out_err = verification.max_rel_err, verification.output_rel_err
    worst = max(err, out_err)
    if worst > INT8_RTOL:
        which = "max relative error" if err >= out_err else "output relative error (max|out-ref|/max|ref|)"
        reason = (f"verification: {which} {worst:.3g} > {INT8_RTOL:g} (the int8 tolerance; max abs "
                  f"{verification.max_abs_err:.3g})")
        if reduced and err <= INT8_RTOL:
            zeros = ", the int8 output is all zeros" if verification.output_all_zero else ""
            reason += (f": the reduced embedding's PCA output is a small difference of large sums ({err:.2g} of "
                       f"the terms it sums but {out_err:.3g} of itself{zeros}); 8 bits cannot hold it with these "
                       "weights (random weights cancel the sums to ~1/1000 of their size): use trained weights or "
                       "the simple embedding")
        return reason
    if err <= FLOAT_SIZED_ERR:
        return (f"not quantized: max relative error {err:.2g} is float-sized (<= {FLOAT_SIZED_ERR:g}; float32 "
                "measures <= ~5e-6, int8 >= ~1.6e-4): the part computed in float")
    return None
