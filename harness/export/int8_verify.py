"""How an int8 artifact is verified here: run on an input from its calibration's distribution and compared
with the float32 PyTorch part (judged by :mod:`harness.export.int8_judge`), and, for a classifier, how often its
top-1 class agrees with float32's.

The verification input comes from the calibration's distribution: a held-out row of the model's data when it
calibrated on them (a standard normal input clips at an int8 input calibrated on [0, 1] images and comes out
0.36-2.7 wrong), else the float32 verification input (seeded standard normal, like the seeded random
calibration). Top-1 agreement is measured through the float32 cloud part, on the calibration inputs (a weak test:
the quantizer saw them) and on the held-out rows when the model's data has some.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from device_agents.litert_io import dequantize_output, quantize_input
from harness.config.backends import BACKENDS, Exported, check_coreml
from harness.export.calibration import Calibration
from harness.export.int8_judge import COREML_INT8_NOTE, FLOAT_SIZED_ERR, INT8_RTOL, Verification, judge
from harness.export.int8_readers import check_int8
from harness.export.part import Part, errors

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


# --------------------------------------------------------------------------------------------------
# Running an int8 artifact on this host


def runner(backend: str, exported: Exported) -> Callable[["np.ndarray"], "np.ndarray"] | None:
    """A function running the artifact on one float32 input (loaded once, one thread), or None when this host
    cannot run the backend (Core ML off macOS). LiteRT's int8 input is quantized and its int8 output
    dequantized with the interpreter's own parameters."""
    import numpy as np

    if backend == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        session = ort.InferenceSession(str(exported.path), so, providers=["CPUExecutionProvider"])
        return lambda x: session.run([exported.output_name], {exported.input_name: x})[0]
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(exported.path), num_threads=1)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]

        def run(x: "np.ndarray") -> "np.ndarray":
            it.set_tensor(inp["index"], quantize_input(x, inp))
            it.invoke()
            return dequantize_output(it.get_tensor(out["index"]), out)

        return run
    if backend == "executorch":
        import torch
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(exported.path)).load_method("forward")
        return lambda x: method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy().copy()
    run_once = BACKENDS[backend].run
    return None if run_once is None else (lambda x: run_once(exported, x))


def top1_agreement(run: Callable[["np.ndarray"], "np.ndarray"], part: Part,
                   inputs: Iterable["np.ndarray"]) -> dict[str, Any]:
    """Share of inputs whose top-1 class through (int8 phone part -> float32 cloud part) is float32's
    (phone part -> cloud part, in PyTorch). ``inputs``: batch-1 float arrays."""
    import numpy as np
    import torch

    same = n = 0
    with torch.no_grad():
        for x in inputs:
            t = torch.from_numpy(np.ascontiguousarray(x)).to(part.example.dtype)
            want = part.rest(part.phone(t)).argmax(-1)
            feature = torch.from_numpy(np.asarray(run(x), dtype=np.float32)).reshape(part.reference.shape)
            got = part.rest(feature.to(part.example.dtype)).argmax(-1)
            same += int((want == got).sum())
            n += want.numel()
    return {"agreement": same / n if n else None, "samples": n}


# --------------------------------------------------------------------------------------------------
# The verification of one int8 artifact


def verify_int8(backend: str, exported: Exported, part: Part, calibration: Calibration, shapes: tuple,
                timings: dict[str, float]) -> tuple[dict[str, Any], bool]:
    """The fields of an int8 artifact after its check (``verified``, ``max_abs_err``, ``max_rel_err``, ``reason``,
    ``quantization``: the calibration, the int8 check, the errors, the top-1 agreement), and whether the export
    failed (not quantized, or beyond the int8 tolerance). ``shapes``: the (input, output) shapes it must have."""
    import numpy as np

    check = check_int8(backend, exported, part.phone)
    quant: dict[str, Any] = {"calibration": calibration.to_dict(), "int8": check.to_dict(), "timings": timings,
                             "tolerance": {"int8_rtol": INT8_RTOL, "float_sized_err": FLOAT_SIZED_ERR},
                             "verify_input": None}
    fields: dict[str, Any] = {"verified": False, "quantization": quant}
    run = runner(backend, exported)
    verification = None
    if run is None:
        problem = check_coreml(exported, *shapes) if backend == "coreml" else None
        if problem is not None:
            return {**fields, "reason": f"verification: {problem}"}, True
    else:
        chosen = calibration.verify_input()
        if chosen is None:
            x, where = part.verify_input, part.verify_from
            ref, scale = part.reference, part.error_scale
        else:
            x, where = chosen
            ref, scale = part.reference_on(x)
        out = np.asarray(run(x), dtype=np.float32)
        abs_err, rel_err, out_rel = errors(out, ref, scale)
        verification = Verification(abs_err, rel_err, out_rel, bool(out.size) and not np.any(out))
        quant.update(verify_input=where, output_rel_err=out_rel)
        fields.update(max_abs_err=abs_err, max_rel_err=rel_err)
    reason = judge(check, verification, reduced=part.info.get("error_scale") not in (None, "max|ref|"))
    if reason is not None:  # a failed export is not measured further
        return {**fields, "reason": reason}, True
    if calibration.classifier:
        quant["top1_agreement"] = None if run is None else _agreements(run, part, calibration)
    if verification is None:
        return {**fields, "reason": COREML_INT8_NOTE}, False
    return {**fields, "verified": True}, False


def _agreements(run: Callable[["np.ndarray"], "np.ndarray"], part: Part, calibration: Calibration) -> dict[str, Any]:
    found = {"calibration": top1_agreement(run, part, (t.numpy() for t in calibration.inputs(part.example)))}
    held_out = calibration.held_out()
    if held_out is not None:
        found["held_out"] = top1_agreement(run, part, (held_out[i:i + 1] for i in range(len(held_out))))
    return found
