"""Accelerators on Android without a phone: what the tools' own output says about a delegate or execution
provider (real published lines, tests/fixtures/tool_logs/delegation, SOURCES.md), which accelerators a tool can
be asked for from its --help, the flags that ask for them (cpu: today's command line), and what a row says when
a delegate did not apply, applied to part of the graph, or said nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agents.android import accelerators as A
from device_agents.android import protocol as P
from device_agents.android.tool_logs import DelegateReading, not_in_build, read_delegation, read_placements
from device_agents.base import MeasureJob

DELEGATION = Path(__file__).parent / "fixtures" / "tool_logs" / "delegation"


def log(name: str) -> str:
    return (DELEGATION / name).read_text()


# -- LiteRT benchmark_model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["litert_benchmark_model_gpu_full_tf43541.txt",
                                  "litert_benchmark_model_gpu_full_windows_tf58379.txt"])
def test_a_gpu_delegate_that_took_the_whole_graph(name):
    r = read_delegation(log(name), "GPU")
    assert r.applied == "completely" and not r.refused
    assert "Explicitly applied GPU delegate, and the model graph will be completely executed" in r.words
    assert r.delegated_nodes is None and r.total_nodes is None  # the tool printed no counts: none made up


def test_nnapi_created_but_given_nothing_is_not_applied():
    r = read_delegation(log("litert_benchmark_model_nnapi_not_applied_logcat_tf56301.txt"), "NNAPI")
    assert r.applied == "not" and "Though NNAPI delegate is explicitly applied" in r.words
    assert r.words.startswith("05-31 10:31:13.157")  # the tool's line as printed, logcat prefix and all


def test_counts_come_from_the_requested_delegates_own_lines():
    text = log("litert_replacing_gpu_partial_discuss27507.txt")
    gpu = read_delegation(text, "GPU")
    assert (gpu.applied, gpu.delegated_nodes, gpu.total_nodes) == ("partially", 29, 65)
    assert "TfLiteGpuDelegateV2" in gpu.words and "TfLiteXNNPackDelegate" not in gpu.words
    # XNNPACK's default delegate, read for information only: its first line is the whole graph's
    xnn = read_delegation(text, "XNNPACK", requested=False)
    assert (xnn.applied, xnn.delegated_nodes, xnn.total_nodes) == ("partially", 52, 65)


def test_the_gpu_delegates_own_split_of_operations():
    r = read_delegation(log("litert_gpu_partial_ops_count_tf57907.txt"), "GPU")
    assert (r.applied, r.delegated_nodes, r.total_nodes) == ("partially", 97, 297)
    assert "Following operations are not supported by GPU delegate" in r.words


def test_partial_xnnpack_and_a_refused_delegate():
    r = read_delegation(log("litert_benchmark_model_xnnpack_partial_ti_am62x.txt"), "XNNPACK")
    assert r.applied == "partially" and "w/ 1 delegate kernels" in r.words and r.delegated_nodes is None
    failed = read_delegation(log("litert_xnnpack_failed_tf56166.txt"), "XNNPACK")
    assert failed.applied == "not" and failed.refused and "Failed to apply XNNPACK delegate." in failed.words


def test_a_requested_delegate_the_tool_never_names_did_not_apply():
    # a CPU run's log asked about the GPU: no application line at all
    r = read_delegation(log("litert_benchmark_model_xnnpack_partial_ti_am62x.txt"), "GPU")
    assert r.applied == "not" and "no 'Explicitly applied GPU delegate' line" in r.words
    # the excerpt stops after the unsupported ops: nothing says the GPU delegate was applied
    cut = read_delegation(log("litert_benchmark_model_gpu_unsupported_ops_logcat_tf56301.txt"), "GPU")
    assert cut.applied == "not" and "UNPACK" not in cut.words and "not supported by GPU delegate" in cut.words
    # not asked for (the cpu's default delegate): silence is unknown, not "not"
    assert read_delegation(log("litert_benchmark_model_gpu_full_tf43541.txt"), "XNNPACK",
                           requested=False).applied == "unknown"


# -- onnxruntime_perf_test -------------------------------------------------------------------------------------


def test_placements_give_the_providers_share_of_the_nodes():
    migraphx = read_placements(log("ort_node_placements_mixed_migraphx_amdmigraphx1641.txt"),
                               "MIGraphXExecutionProvider")
    assert (migraphx.applied, migraphx.delegated_nodes, migraphx.total_nodes) == ("partially", 2, 41)
    assert "Node(s) placed on [MIGraphXExecutionProvider]. Number of nodes: 2" in migraphx.words
    assert "Gather" not in migraphx.words  # the per-node lines are not the tool's verdict
    dml = read_placements(log("ort_node_placements_mixed_dml_ort21013.txt"), "DmlExecutionProvider")
    assert (dml.applied, dml.delegated_nodes, dml.total_nodes) == ("partially", 335, 344)
    cuda = read_placements(log("ort_node_placements_mixed_cuda_sherpa163.txt"), "CUDAExecutionProvider")
    assert (cuda.applied, cuda.delegated_nodes, cuda.total_nodes) == ("partially", 2426, 3301)


def test_all_nodes_on_the_cpu_is_a_provider_that_took_nothing():
    text = log("ort_1.32_host_all_cpu.txt")
    nnapi = read_placements(text, "NnapiExecutionProvider")
    assert (nnapi.applied, nnapi.delegated_nodes, nnapi.total_nodes) == ("not", 0, 11)
    cpu = read_placements(text, "CPUExecutionProvider")
    assert (cpu.applied, cpu.delegated_nodes, cpu.total_nodes) == ("completely", 11, 11)
    old = read_placements(log("ort_node_placements_all_cpu_2020_ort2921.txt"), "NnapiExecutionProvider")
    assert old.applied == "not" and old.total_nodes is None  # the 2020 wording prints no count


def test_no_placement_lines_is_unknown_never_not():
    # Android's logcat holds NNAPI's per-node support lines, which are not placements
    r = read_placements(log("ort_android_logcat_nnapi_ort14419.txt"), "NnapiExecutionProvider")
    assert r.applied == "unknown" and r.delegated_nodes is None
    refused = read_placements(log("ort_qnn_cpu_fallback_disabled_clpeak197.txt"), "QNNExecutionProvider")
    assert refused.applied == "unknown" and "fallback to CPU EP has been explicitly disabled" in refused.words


def test_a_provider_the_build_lacks_is_named_by_the_tools_line():
    line = not_in_build(log("ort_not_in_build_DERIVED.txt"))
    assert line == "NNAPI is not supported in this build"
    assert not_in_build(log("ort_1.32_host_all_cpu.txt")) is None


# -- what each tool can be asked for, from its --help ----------------------------------------------------------

# benchmark_model's usage as the tool prints it (Flags::Usage: "--name=default\ttype\toptional\tdescription")
LITERT_HELP = "\n".join(f"\t--{f}\tbool\toptional\t..." for f in (
    "num_threads=-1", "graph=", "use_gpu=false", "gpu_precision_loss_allowed=true", "gpu_backend=",
    "use_nnapi=false", "disable_nnapi_cpu=true", "use_xnnpack=false", "require_full_delegation=false"))
LITERT_NO_GPU_HELP = "\n".join(line for line in LITERT_HELP.splitlines() if "gpu_" not in line)
COMPILED_HELP = "\n".join(f"\t--{f}\tbool\toptional\t..." for f in (
    "graph=", "use_cpu=true", "use_gpu=false", "use_npu=false", "require_full_delegation=false"))
# onnxruntime_perf_test: the getopt usage (1.20, TI's SDK doc) and the abseil one (command_args_parser.cc, wrapped)
ORT_GETOPT_HELP = ("\t-e [cpu|cuda|dnnl|tensorrt|openvino|dml|acl|nnapi|coreml|qnn|snpe|rocm|migraphx|xnnpack|vitisai|"
                   "webgpu]: Specifies the provider 'cpu','cuda','dnnl','tensorrt', 'openvino', 'dml', 'acl', 'nnapi', "
                   "'coreml', 'qnn', 'snpe', 'rocm', 'migraphx', 'xnnpack', 'vitisai' or 'webgpu'. Default:'cpu'.\n"
                   "\t-i: [QNN only] [backend_path]: QNN backend path.\n")
ORT_ABSEIL_HELP = ("    -e (Specifies the provider 'cpu','cuda','dnnl','tensorrt', 'nvtensorrtrtx',\n"
                   "      'openvino', 'dml', 'acl', 'nnapi', 'coreml', 'qnn', 'snpe', 'migraphx',\n"
                   "      'xnnpack', 'vitisai' or 'webgpu'.); default: \"cpu\";\n"
                   "    -i (Specifies EP specific runtime options as key-value pairs.\n"
                   "      [QNN only] [backend_type]: QNN backend type. E.g., 'cpu', 'htp'.); default: \"\";\n")


def test_benchmark_model_with_the_gpu_delegate_and_nnapi():
    t = A.for_tool(P.LITERT_TOOL, LITERT_HELP)
    assert t.accelerators == ("cpu", "gpu", "npu") and not t.missing
    assert t.candidates["cpu"][0].args == ()  # the cpu: today's command line
    gpu, npu = t.candidates["gpu"][0], t.candidates["npu"][0]
    assert gpu.args == ("--use_gpu=true",) and gpu.delegate == "GPU" and not gpu.enforced
    assert npu.args == ("--use_nnapi=true", "--disable_nnapi_cpu=true") and npu.delegate == "NNAPI"


def test_a_build_without_the_gpu_delegate_says_which_flags_it_lacks():
    t = A.for_tool(P.LITERT_TOOL, LITERT_NO_GPU_HELP)
    assert t.accelerators == ("cpu", "npu")
    assert "--gpu_backend" in t.missing["gpu"] and "no GPU delegate" in t.missing["gpu"]


def test_the_compiled_model_tool_is_told_to_refuse_the_cpu():
    t = A.for_tool(P.LITERT_TOOL, COMPILED_HELP)
    assert t.accelerators == ("cpu", "gpu", "npu")
    npu = t.candidates["npu"][0]
    assert npu.args == ("--use_npu=true", "--use_cpu=false", "--require_full_delegation=true") and npu.enforced


@pytest.mark.parametrize("help_text, option", [(ORT_GETOPT_HELP, "backend_path|libQnnHtp.so"),
                                               (ORT_ABSEIL_HELP, "backend_type|htp")])
def test_onnxruntime_candidates_in_order(help_text, option):
    assert {"cpu", "nnapi", "qnn", "xnnpack", "webgpu"} <= A.ort_providers(help_text)
    t = A.for_tool(P.ORT_TOOL, help_text)
    assert t.candidates["cpu"][0].args == ("-e", "cpu")
    assert [s.args for s in t.candidates["npu"]] == [("-e", "qnn", "-i", option),
                                                     ("-e", "nnapi", "-i", "NNAPI_FLAG_CPU_DISABLED")]
    assert t.candidates["gpu"][0].args[:2] == ("-e", "qnn") and t.candidates["gpu"][0].delegate == "QNNExecutionProvider"


def test_an_old_perf_test_without_qnn_or_nnapi():
    t = A.for_tool(P.ORT_TOOL, "\t-e [cpu|cuda|dnnl|tensorrt|openvino|nuphar|dml|acl]: Specifies the provider.\n")
    assert t.accelerators == ("cpu",)
    assert "neither qnn nor nnapi" in t.missing["npu"] and "no GPU execution provider" in t.missing["gpu"]


def test_executorch_runs_what_its_export_chose():
    t = A.for_tool(P.ET_TOOL, "  -model_path ...\n  -cpu_threads ...\n")
    assert t.accelerators == ("cpu",)
    assert "Vulkan" in t.missing["gpu"] and "XNNPACK partitioner (CPU) only" in t.missing["gpu"]
    assert "QnnPartitioner" in t.missing["npu"] and "Qualcomm AI Engine Direct SDK" in t.missing["npu"]
    assert A.for_tool(P.ET_TOOL, None).missing["gpu"].endswith("no accelerator flag is known")


# -- command lines and rows ------------------------------------------------------------------------------------

JOB = MeasureJob(artifact_path="/w/m", backend="onnx", input_shape=(1, 3, 8, 8), runs=5, warmup=2)


def test_the_cpu_command_line_is_unchanged_and_the_accelerators_flags_are_added():
    for backend in ("litert", "onnx", "executorch"):
        for phase in ("cold", "warm"):
            assert P.tool_call(backend, "/w/m", JOB, phase, "/j") == P.tool_call(backend, "/w/m", JOB, phase, "/j",
                                                                                 accelerator=())
    ort = P.tool_call("onnx", "/w/m", JOB, "cold", "/j", accelerator=("-e", "nnapi", "-i", "NNAPI_FLAG_CPU_DISABLED"))
    assert "cpu" not in ort.args and ort.args[ort.args.index("-e"):ort.args.index("-e") + 4] == (
        "-e", "nnapi", "-i", "NNAPI_FLAG_CPU_DISABLED")
    lite = P.tool_call("litert", "/w/m", JOB, "cold", "/j", accelerator=("--use_gpu=true",))
    assert lite.args[-1] == "--use_gpu=true"
    placement = P.tool_call("onnx", "/w/m", JOB, "placement", "/j", accelerator=("-e", "qnn"))
    assert placement.args == ("-e", "qnn", "-x", "1", "-y", "1", "-v", "-n", "-I", "/w/m")
    with pytest.raises(ValueError):
        P.tool_call("litert", "/w/m", JOB, "placement", "/j")


def test_a_delegate_that_did_not_apply_fails_the_row_and_keeps_its_words():
    gpu = A.for_tool(P.LITERT_TOOL, LITERT_HELP).candidates["gpu"][0]
    d, why, _ = A.verdict(gpu, DelegateReading("not", words="Though GPU delegate is explicitly applied, ..."))
    assert d.applied == "not" and d.setting == "--use_gpu=true" and d.accelerator == "gpu"
    assert "did not apply" in why and "no gpu numbers are kept" in why and "Though GPU" in why
    d, why, notes = A.verdict(gpu, DelegateReading("partially", 29, 65, "Replacing 29 out of 65 ..."))
    assert why is None and (d.delegated_nodes, d.total_nodes) == (29, 65) and "took 29 of 65 nodes" in notes[0]
    d, why, notes = A.verdict(gpu, DelegateReading("unknown"))
    assert why is None and "may be the CPU's" in notes[0]
    cpu = A.for_tool(P.ORT_TOOL, ORT_GETOPT_HELP).candidates["cpu"][0]
    d, why, notes = A.verdict(cpu, None, ort=True)
    assert (d.accelerator, d.setting, d.applied, why, notes) == ("cpu", "-e cpu -x 1 -y 1", "unknown", None, [])


def test_the_compiled_model_tool_refusing_the_cpu_is_recorded_as_such():
    npu = A.for_tool(P.LITERT_TOOL, COMPILED_HELP).candidates["npu"][0]
    d, why, _ = A.verdict(npu, A.enforced_reading(npu))  # a run that finished under --require_full_delegation
    assert why is None and d.applied == "completely" and d.delegated_nodes is None  # it prints no counts
    assert "--require_full_delegation=true" in d.words and "refuses a model" in d.words
    refused = read_delegation(log("litert_compiledmodel_2.3.0_host_npu_full_delegation_refused.txt"), "NPU")
    assert refused.applied == "not" and "Some ops are not accelerated" in refused.words
