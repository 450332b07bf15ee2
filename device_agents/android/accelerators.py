"""Which accelerators each Android tool on this phone can be asked for, read from its own ``--help``, and the
flags that ask for them (docs/android.md, "Accelerators").

An accelerator (``cpu``, ``gpu``, ``npu``: :data:`device_agents.base.ACCELERATORS`) maps per tool to a
:class:`Setting`: the arguments added to the tool's command line, the words recorded as the row's setting,
and the name the tool's output gives the delegate or execution provider (what ``tool_logs`` reads to tell
whether it applied). ``cpu`` is always today's command line, unchanged. A tool that cannot be asked for an
accelerator gets a reason naming the flag or build it lacks: the skipped row's reason.

- LiteRT ``benchmark_model`` (TFLite interpreter): ``gpu`` is ``--use_gpu=true`` in a build with the GPU delegate
  (its ``--help`` lists the delegate's own flags ``--gpu_backend`` / ``--gpu_precision_loss_allowed``; a build
  without it still lists ``--use_gpu`` and then runs on the CPU); ``npu`` is ``--use_nnapi=true`` (NNAPI: the
  phone's vendor drivers, NNAPI's own CPU implementation excluded by ``--disable_nnapi_cpu=true``).
- LiteRT ``benchmark_litert_model`` (CompiledModel; its ``--help`` lists ``--use_cpu`` / ``--use_npu``): ``gpu``
  is ``--use_gpu=true``, ``npu`` is ``--use_npu=true``, each with ``--use_cpu=false --require_full_delegation=true``:
  this tool prints nothing about where ops ran, so it is asked to refuse any op the accelerator does not take.
- ONNX Runtime ``onnxruntime_perf_test``: its ``-e`` lists every provider its parser knows, not the ones the build
  was made with, so each accelerator has candidates tried in order (``npu``: ``-e qnn`` with the HTP backend,
  then ``-e nnapi -i NNAPI_FLAG_CPU_DISABLED``; ``gpu``: ``-e qnn`` with the GPU backend); the first the build
  runs is used (the tool says "<EP> is not supported in this build" for the others).
- ExecuTorch ``executor_runner``: the accelerator is chosen at export, and splitbench exports XNNPACK (CPU) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from device_agents.android import protocol as P
from device_agents.android.tool_logs import DelegateReading
from device_agents.base import Delegation

# onnxruntime_perf_test's -e values (command_args_parser.cc, 2020 to now)
ORT_PROVIDERS = frozenset({"cpu", "cuda", "dnnl", "tensorrt", "nvtensorrtrtx", "openvino", "dml", "acl", "armnn", "nnapi",
                           "coreml", "qnn", "snpe", "rocm", "migraphx", "xnnpack", "vitisai", "webgpu", "vsinpu",
                           "nuphar"})
# what each -e value is called in the placement lines (onnxruntime/core/graph/constants.h)
ORT_EP_TYPES = {"cpu": "CPUExecutionProvider", "nnapi": "NnapiExecutionProvider", "qnn": "QNNExecutionProvider",
                "xnnpack": "XnnpackExecutionProvider", "webgpu": "WebGpuExecutionProvider"}
# splitbench exports ExecuTorch with the XNNPACK partitioner (CPU) only; what another accelerator would take
ET_MISSING = {
    "gpu": "ExecuTorch runs on the GPU through a Vulkan-lowered .pte (VulkanPartitioner at export) and an "
           "executor_runner built with -DEXECUTORCH_BUILD_VULKAN=ON; splitbench exports ExecuTorch with the XNNPACK "
           "partitioner (CPU) only",
    "npu": "ExecuTorch runs on the NPU through a QNN-lowered .pte (QnnPartitioner at export, which needs the "
           "Qualcomm AI Engine Direct SDK) and qnn_executor_runner; splitbench exports ExecuTorch with the XNNPACK "
           "partitioner (CPU) only",
}


@dataclass(frozen=True)
class Setting:
    """How one tool is asked for one accelerator.

    ``args`` are added to the tool's arguments (LiteRT, ExecuTorch) or replace its ``-e cpu`` (ONNX Runtime);
    ``setting`` is what the row records; ``delegate`` is the name the tool's output gives the delegate
    (LiteRT: ``GPU``, ``NNAPI``) or execution provider (ONNX Runtime: ``NnapiExecutionProvider``), None for
    the plain CPU; ``enforced`` says the tool was told to refuse any op the accelerator does not take (so a
    run that finished ran wholly on it).
    """

    accelerator: str
    args: tuple[str, ...]
    setting: str
    delegate: str | None = None
    enforced: bool = False


@dataclass(frozen=True)
class ToolAccelerators:
    """What one tool on this phone can be asked for: per accelerator the settings to try, in order, and per
    accelerator it cannot be asked for, why (naming the flag or build it lacks)."""

    candidates: dict[str, tuple[Setting, ...]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def accelerators(self) -> tuple[str, ...]:
        return tuple(a for a in ("cpu", "gpu", "npu") if a in self.candidates)


def for_tool(tool: str, help_text: str | None) -> ToolAccelerators:
    """The accelerators ``tool`` can be asked for, from what its ``--help`` printed (None: not asked, so
    only ``cpu``, with the reason that the tool's flags are unknown)."""
    flags = P.help_flags(help_text) if help_text else frozenset()
    cpu = {"cpu": (cpu_setting(tool, flags),)}
    if help_text is None:
        why = f"{tool} was not asked for its flags (not on the phone yet), so no accelerator flag is known"
        return ToolAccelerators(cpu, {"gpu": why, "npu": why})
    if tool == P.LITERT_TOOL:
        return _litert(flags, cpu)
    if tool == P.ORT_TOOL:
        return _onnxruntime(help_text, cpu)
    return ToolAccelerators(cpu, dict(ET_MISSING))


def cpu_setting(tool: str, flags: frozenset[str]) -> Setting:
    """``cpu``: today's command line, no delegate flag."""
    if tool == P.LITERT_TOOL:
        return Setting("cpu", (), "--num_threads=1, no delegate flag")
    if tool == P.ORT_TOOL:
        return Setting("cpu", ("-e", "cpu"), "-e cpu -x 1 -y 1")
    threads = " --cpu_threads=1" if "cpu_threads" in flags else ""
    return Setting("cpu", (), f"XNNPACK partitioner at export; executor_runner{threads}")


def _litert(flags: frozenset[str], cpu: dict[str, tuple[Setting, ...]]) -> ToolAccelerators:
    out, missing = dict(cpu), {}
    compiled = "use_cpu" in flags or "use_npu" in flags  # benchmark_litert_model (CompiledModel)
    full = ("--use_cpu=false", "--require_full_delegation=true")
    if compiled:
        for acc, flag in (("gpu", "use_gpu"), ("npu", "use_npu")):
            if flag in flags:
                args = (f"--{flag}=true", *full)
                out[acc] = (Setting(acc, args, " ".join(args), delegate=acc.upper(), enforced=True),)
            else:
                missing[acc] = f"this LiteRT benchmark tool's --help lists no --{flag}"
        return ToolAccelerators(out, missing)
    if "use_gpu" not in flags:
        missing["gpu"] = "benchmark_model's --help lists no --use_gpu: this build has no GPU delegate"
    elif not flags & {"gpu_backend", "gpu_precision_loss_allowed"}:
        missing["gpu"] = ("benchmark_model's --help lists --use_gpu but none of the GPU delegate's own flags "
                          "(--gpu_backend, --gpu_precision_loss_allowed): this build has no GPU delegate (built without "
                          "TFLITE_SUPPORTS_GPU_DELEGATE); use LiteRT's Android arm64 build")
    else:
        out["gpu"] = (Setting("gpu", ("--use_gpu=true",), "--use_gpu=true", delegate="GPU"),)
    if "use_nnapi" in flags:
        args = ("--use_nnapi=true", *(("--disable_nnapi_cpu=true",) if "disable_nnapi_cpu" in flags else ()))
        out["npu"] = (Setting("npu", args, " ".join(args), delegate="NNAPI"),)
    else:
        missing["npu"] = "benchmark_model's --help lists neither --use_npu nor --use_nnapi"
    return ToolAccelerators(out, missing)


_FLAG_START = re.compile(r"^\s*-{1,2}[A-Za-z]")


def ort_providers(help_text: str) -> frozenset[str]:
    """The ``-e`` values ``onnxruntime_perf_test --help`` lists: the old getopt usage
    (``-e [cpu|cuda|...|webgpu]: Specifies the provider ...``) and the abseil one
    (``-e (Specifies the provider 'cpu','cuda', ... or 'webgpu'.); default: "cpu";``, wrapped)."""
    lines = help_text.splitlines()
    found: set[str] = set()
    for i, line in enumerate(lines):
        if not (re.match(r"^\s*-{1,2}e\b", line) or "Specifies the provider" in line):
            continue
        text = [line]
        for more in lines[i + 1:i + 6]:  # abseil wraps a flag's help over the next lines
            if not more.strip() or _FLAG_START.match(more):
                break
            text.append(more)
        found.update(w for w in re.findall(r"[a-z][a-z0-9]*", " ".join(text)) if w in ORT_PROVIDERS)
    return frozenset(found)


def _onnxruntime(help_text: str, cpu: dict[str, tuple[Setting, ...]]) -> ToolAccelerators:
    listed = ort_providers(help_text)
    by_type = "backend_type" in help_text  # ORT 1.20+: -i "backend_type|htp"; before: the library's path

    def qnn(acc: str, backend: str, library: str) -> Setting:
        option = f"backend_type|{backend}" if by_type else f"backend_path|{library}"
        return Setting(acc, ("-e", "qnn", "-i", option), f"-e qnn -i {option} -x 1 -y 1",
                       delegate=ORT_EP_TYPES["qnn"])

    out, missing = dict(cpu), {}
    npu = []
    if "qnn" in listed:
        npu.append(qnn("npu", "htp", "libQnnHtp.so"))
    if "nnapi" in listed:
        npu.append(Setting("npu", ("-e", "nnapi", "-i", "NNAPI_FLAG_CPU_DISABLED"),
                           "-e nnapi -i NNAPI_FLAG_CPU_DISABLED -x 1 -y 1",
                           delegate=ORT_EP_TYPES["nnapi"]))
    if npu:
        out["npu"] = tuple(npu)
    else:
        missing["npu"] = "onnxruntime_perf_test's -e lists neither qnn nor nnapi"
    if "qnn" in listed:
        out["gpu"] = (qnn("gpu", "gpu", "libQnnGpu.so"),)
    else:
        missing["gpu"] = ("onnxruntime_perf_test's -e lists no GPU execution provider for Android (qnn, whose GPU "
                          "backend is libQnnGpu.so)")
    return ToolAccelerators(out, missing)


# --------------------------------------------------------------------------------------------------
# What a run's delegation means for its row

ORT_FUSED = ("ONNX Runtime counts nodes after the execution provider fused what it took: one fused node may hold "
             "many ONNX ops")


def enforced_reading(setting: Setting) -> DelegateReading:
    """A run of a tool told to refuse any op the accelerator does not take, that finished: the tool's own
    guarantee (it prints no counts)."""
    return DelegateReading("completely", words=f"{setting.setting}: the tool refuses a model any of whose ops the "
                                              f"{setting.accelerator} does not take, and this run finished (it prints "
                                              "no node counts)")


def verdict(setting: Setting, reading: DelegateReading | None, ort: bool = False
            ) -> tuple[Delegation, str | None, list[str]]:
    """The row's :class:`Delegation`, why the row fails (the delegate asked for did not apply, so what ran was
    the CPU: never kept as numbers of the accelerator), and the notes a reader needs."""
    r = reading or DelegateReading("unknown")
    if setting.accelerator == "cpu":  # no delegate asked for: what the tool said about its CPU kernels, if anything
        words = r.words if reading is not None and r.words else "no delegate asked for"
        return Delegation("cpu", setting.setting, "unknown", words=words), None, []
    d = Delegation(setting.accelerator, setting.setting, r.applied, r.delegated_nodes, r.total_nodes, r.words)
    what = f"the execution provider {setting.delegate}" if ort else f"the {setting.delegate} delegate"
    counts = (f"{r.delegated_nodes} of {r.total_nodes} nodes" if r.delegated_nodes is not None and r.total_nodes
              else None)
    notes = [ORT_FUSED] if ort and counts else []
    if r.applied == "not":
        return d, (f"{what} did not apply ({setting.setting}): {r.words}; what ran was the CPU, so no "
                   f"{setting.accelerator} numbers are kept (the tool's output is in stderr_tail)"), notes
    if r.applied == "partially":
        notes.insert(0, f"{setting.accelerator}: {what} took {counts or 'part of the graph'} (the tool's count); the "
                        "rest ran on the CPU")
    elif r.applied == "unknown":
        notes.insert(0, f"{setting.accelerator}: the tool did not say where the graph ran ({r.words or 'no lines'}): "
                        "these numbers may be the CPU's")
    return d, None, notes
