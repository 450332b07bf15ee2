"""The benchmark tools' log readers and `splitbench import-log`, on real published logs.

Every fixture in tests/fixtures/tool_logs is a copy of a log someone published (SOURCES.md gives each
one's address and date) except the `_DERIVED` ones, built from the tools' format strings with made-up
numbers. The expected figures below were read off each log by hand and converted by hand
(e.g. ``avg=2.95034e+06`` us -> 2_950_340_000 ns).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_agents.android.tool_logs import ToolLogError, detect_tool, parse_log, read_log
from device_agents.base import ContractError, MeasureJob, MeasureResult
from harness.cli import main
from harness.core.errors import UserError
from harness.measure.import_log import import_log

LOGS = Path(__file__).parent / "fixtures" / "tool_logs"
MIB = 1 << 20


def text(name: str) -> str:
    return (LOGS / name).read_text()


def fixtures() -> list[str]:
    return sorted(p.name for p in LOGS.iterdir() if p.suffix in (".txt", ".csv"))


def refused(name: str, tool: str | None = None) -> str:
    with pytest.raises(ToolLogError) as info:
        read_log(LOGS / name, tool)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ LiteRT / TFLite


def test_tflite_1_12_old_summary_and_all_same_warmup():
    m = read_log(LOGS / "litert_tflite1.12_ti_2019.txt")
    assert (m.tool, m.family, m.runs) == ("benchmark_model", "litert", 50)
    a = m.aggregate
    # count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896 (us)
    assert (a.n, a.mean_ns, a.std_ns, a.min_ns, a.max_ns) == (50, 137_722_000.0, 896_000.0, 137_079_000.0,
                                                              143_416_000.0)
    assert a.percentiles == {} and m.samples_ns == ()
    # count=1 curr=146161: the one warm-up run, which is the first inference
    assert m.first_infer_ns == 146_161_000
    assert (m.warmup.n, m.warmup.mean_ns, m.warmup.std_ns) == (1, 146_161_000.0, 0.0)
    assert m.init_ns == 4_452_000  # "Init: 4452" us (and "Initialized session in 4.452ms")
    assert m.memory == ()


def test_tflite_2_4_single_stat_line_told_apart_by_the_summary_and_old_memory_line():
    m = read_log(LOGS / "litert_tflite2.4_android_yolov5s_2021.txt")
    a = m.aggregate
    assert (a.n, a.mean_ns, a.std_ns, a.min_ns, a.max_ns) == (50, 249_684_000.0, 1_442_000.0, 247_067_000.0,
                                                              254_474_000.0)
    assert m.first_infer_ns == 360_262_000 and m.init_ns == 16_242_000
    # "Warmup (avg): 304586" has no count: the mean is kept, its number of runs stays unknown
    assert (m.warmup.n, m.warmup.mean_ns, m.warmup.std_ns) == (None, 304_586_000.0, None)
    assert "not printed" in m.units["warmup"]
    (mem,) = m.memory
    assert mem.method == "tool_reported" and mem.peak_b is None and mem.model_b == mem.growth_b == mem.detail["overall_delta_b"]  # the growth it reports
    # "Peak memory footprint (MB): init=4.92969 overall=138.809" are deltas, in MiB
    assert abs(mem.detail["init_delta_b"] - 4.92969 * MIB) <= 0.5
    assert abs(mem.detail["overall_delta_b"] - 138.809 * MIB) <= 0.5
    assert "Peak memory footprint" in m.units["memory"]


def test_tflite_2_8_scientific_notation_and_op_profiling_timings_are_not_the_runs():
    m = read_log(LOGS / "litert_tflite2.8_opprofiling_2022.txt")
    a = m.aggregate
    assert a.n == 50
    assert a.mean_ns == 2_950_340_000.0  # avg=2.95034e+06 us
    assert a.std_ns == 109_798_000.0 and a.min_ns == 2_727_568_000.0 and a.max_ns == 3_189_954_000.0
    # The op profiler's "Timings (microseconds): count=50 ... avg=2.9499e+06" is another thing
    assert a.mean_ns != 2_949_900_000.0
    assert m.first_infer_ns == 3_512_391_000 and m.init_ns == 17_187_000
    assert (m.warmup.n, m.warmup.mean_ns) == (1, 3_512_391_000.0)
    (mem,) = m.memory
    assert abs(mem.detail["overall_delta_b"] - 46.0859 * MIB) <= 0.5
    assert any("op profiling" in n for n in m.notes)


def test_tflite_2_18_info_prefix_without_percentiles():
    m = read_log(LOGS / "litert_tflite2.18_ti_2025.txt")
    a = m.aggregate
    assert (a.n, a.mean_ns, a.std_ns, a.min_ns, a.max_ns) == (50, 971_535_000.0, 39_112_000.0, 911_877_000.0,
                                                              1_112_273_000.0)
    assert a.percentiles == {}
    assert m.first_infer_ns == 1_041_765_000 and m.init_ns == 6_418_000
    assert abs(m.memory[0].detail["init_delta_b"] - 6.14844 * MIB) <= 0.5


def test_tflite_2_20_percentiles_also_on_the_all_same_form():
    m = read_log(LOGS / "litert_tflite2.20_ti_2026.txt")
    a = m.aggregate
    assert a.mean_ns == 1_240_270_000.0  # avg=1.24027e+06
    assert a.percentiles == {"5": 1_238_753_000.0, "50": 1_239_807_000.0, "95": 1_247_415_000.0}
    assert a.median_ns == 1_239_807_000.0
    # count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602
    assert m.warmup.n == 1 and m.warmup.percentiles["50"] == 1_357_602_000.0
    assert m.first_infer_ns == 1_357_602_000 and m.init_ns == 5_579_000


def test_litert_compiled_model_block_and_profiler_counts():
    m = read_log(LOGS / "litert_compiledmodel_android_sme2.txt")
    assert m.tool == "benchmark_litert_model"
    a = m.aggregate
    # the stat line (us) is preferred to the block's 0.01 ms; the profiler's count=3166 is not the runs
    assert a.n == 2112 and a.mean_ns == 464_545.0 and a.std_ns == 13_000.0
    assert (a.min_ns, a.max_ns) == (442_000.0, 979_000.0)
    assert a.percentiles == {"5": 460_000.0, "50": 462_000.0, "95": 478_000.0}
    assert (m.warmup.n, m.warmup.mean_ns) == (1055, 465_319.0)
    assert m.first_infer_ns == 1_033_000  # first=1033 of the warm-up line ("Warmup (first): 1.03 ms")
    assert m.init_ns == 4_478_000  # "Initialized session in 4.478ms." rather than "4.48 ms"
    (mem,) = m.memory
    assert mem.peak_b is None  # "Peak memory usage not available"
    assert abs(mem.detail["init_delta_b"] - 8.94 * MIB) <= 0.5
    assert abs(mem.detail["overall_delta_b"] - 11.51 * MIB) <= 0.5
    assert m.extra == {"throughput_mb_per_s": 525.55}


def test_litert_benchmark_results_block_alone():
    m = read_log(LOGS / "litert_benchmark_results_only_2026.txt")
    a = m.aggregate
    assert a.n == 10 and a.mean_ns == 7_430_200_000.0  # "7430.20 ms (10 runs)"
    assert (a.min_ns, a.max_ns, a.std_ns) == (7_416_400_000.0, 7_448_860_000.0, 9_920_000.0)
    assert m.first_infer_ns == 7_441_040_000 and m.init_ns == 23_744_730_000
    assert (m.warmup.n, m.warmup.mean_ns) == (1, 7_441_040_000.0)
    assert abs(m.memory[0].detail["overall_delta_b"] - 6391.74 * MIB) <= 0.5
    assert "0.01" in m.units["timed"]
    assert any("prefill_1024" in n for n in m.notes)


def test_litert_peak_monitoring_and_memory_status_derived_format():
    m = read_log(LOGS / "litert_peak_monitoring_DERIVED.txt")
    (mem,) = m.memory
    assert mem.peak_b == int(13.25 * MIB)  # "via periodic monitoring: 13.25" is an absolute ru_maxrss
    assert mem.detail == {"init_delta_b": int(2.5 * MIB), "overall_delta_b": int(8.75 * MIB),
                          "end_vmrss_b": 13 * MIB, "end_rss_anon_b": 7 * MIB, "end_rss_file_shmem_b": 6 * MIB}
    assert m.aggregate.mean_ns == 12_050_500.0 and m.runs == 60


def test_op_profiling_only_is_refused():
    message = refused("litert_opprofiling_only_android_2021.txt")
    assert "no statistics of the timed runs" in message and "op-profiling" in message


def test_summary_line_alone_is_a_mean_only_aggregate():
    # "Inference timings in us: Init: 1007529, First inference: 4098, Warmup (avg): 1686.59,
    # Inference (avg): 1687.92" and nothing else: the mean, with no run count, spread, min or max
    m = read_log(LOGS / "litert_apk_logcat_summary_only.txt")
    a = m.aggregate
    assert m.runs is None and a.n is None and m.samples_ns == ()
    assert (a.mean_ns, a.std_ns, a.min_ns, a.max_ns, a.percentiles) == (1_687_920.0, None, None, None, {})
    assert m.first_infer_ns == 4_098_000 and m.init_ns == 1_007_529_000
    assert (m.warmup.n, m.warmup.mean_ns) == (None, 1_686_590.0)
    assert any("summary only" in n and "not guessed" in n for n in m.notes)


def test_summary_and_memory_lines_alone_keep_the_memory():
    # google-research#802: the summary and memory lines quoted from a run of 1000 timed runs (the full log,
    # a comment earlier, says count=1000). Those two lines do not say 1000, so the count stays unknown.
    m = read_log(LOGS / "litert_summary_memory_only_kws_2022.txt")
    a = m.aggregate
    assert (m.tool, m.runs, a.n) == ("benchmark_model", None, None)
    assert (a.mean_ns, a.std_ns, a.min_ns, a.max_ns) == (1_039_660.0, None, None, None)
    assert m.first_infer_ns == 2_104_000 and m.init_ns == 17_851_000
    assert (m.warmup.n, m.warmup.mean_ns) == (None, 1_041_150.0)
    (mem,) = m.memory
    assert abs(mem.detail["init_delta_b"] - 10.7383 * MIB) <= 0.5
    assert abs(mem.detail["overall_delta_b"] - 12.1055 * MIB) <= 0.5
    assert mem.growth_b == mem.detail["overall_delta_b"] and mem.peak_b is None
    result = MeasureResult(status="ok", **m.result_fields())
    assert result.n_runs is None and result.infer_aggregate.n is None
    with pytest.raises(ContractError, match="does not say how many"):  # the Android agent's jobs ask for N runs
        result.check(MeasureJob(artifact_path="m", backend="x", input_shape=(1,), runs=60))
    record = import_log(LOGS / "litert_summary_memory_only_kws_2022.txt")
    assert record["timing_kind"] == "aggregate" and record["runs"] is None
    assert record["measure_result"]["infer_aggregate"]["n"] is None
    json.dumps(record)


def test_summary_with_only_the_warmup_stat_line_takes_the_summarys_mean():
    # The 2.18 log without its timed runs' stat line: the warm-up's line (count=1) is told apart by the
    # summary's "Warmup (avg)", and the timed runs are the summary's mean
    log = "\n".join(ln for ln in text("litert_tflite2.18_ti_2025.txt").splitlines() if "count=50 " not in ln)
    m = parse_log(log)
    assert m.runs is None and m.aggregate.mean_ns == 971_535_000.0
    assert (m.warmup.n, m.warmup.mean_ns) == (1, 1_041_765_000.0)


def test_a_log_cut_after_the_warmup_is_refused():
    lines = text("litert_tflite2.18_ti_2025.txt").splitlines()
    cut = "\n".join(lines[: next(i for i, ln in enumerate(lines) if "count=1 " in ln) + 1])
    with pytest.raises(ToolLogError, match="whether it is the warm-up or the timed runs"):
        parse_log(cut, "litert")


def test_no_warmup_run_means_no_first_inference_apart():
    # What the same run prints with --warmup_runs=0 --warmup_min_secs=0: an empty Stat prints "count=0",
    # its first() is 0 and its avg() nan (stats_calculator.h). Edited from the real 2.18 log.
    log = (text("litert_tflite2.18_ti_2025.txt").replace("count=1 curr=1041765", "count=0")
           .replace("First inference: 1041765, Warmup (avg): 1.04176e+06", "First inference: 0, Warmup (avg): nan"))
    m = parse_log(log)
    assert m.aggregate.n == 50 and m.first_infer_ns is None and m.warmup is None
    assert any("no warm-up run" in n for n in m.notes)


def test_two_runs_in_one_log_are_refused():
    two = text("litert_tflite2.18_ti_2025.txt") + text("litert_tflite2.20_ti_2026.txt")
    with pytest.raises(ToolLogError, match="several runs"):
        parse_log(two)


def test_a_stat_line_that_is_not_the_summarys_is_refused():
    log = text("litert_tflite2.18_ti_2025.txt").replace("Inference (avg): 971535", "Inference (avg): 971999")
    with pytest.raises(ToolLogError, match="do not belong together"):
        parse_log(log)


# ------------------------------------------------------------------------------------ onnxruntime_perf_test


def test_ort_2020_windows_format():
    m = read_log(LOGS / "ort_2020_windows_pr2798.txt")
    assert (m.tool, m.runs) == ("onnxruntime_perf_test", 1)
    assert m.aggregate.mean_ns == 734_606_000.0  # "Average inference time cost:734.606 ms"
    assert m.init_ns == 1_841_490_000  # "Session creation time cost:1.84149 s"
    assert m.wall_runs_ns == 734_761_000
    assert m.first_infer_ns is None and m.memory == ()


def test_ort_2020_android_peak_working_set():
    m = read_log(LOGS / "ort_2020_android_acl_issue4647.txt")
    assert m.runs == 10 and m.aggregate.mean_ns == 144_871_000.0
    assert m.init_ns == 127_918_000 and m.wall_runs_ns == 1_449_160_000
    (mem,) = m.memory
    assert (mem.method, mem.peak_b) == ("tool_reported", 158_171_136)  # already bytes
    assert m.extra["cpu_usage_pct"] == 68.0


def test_ort_current_format_with_latency_statistics():
    m = read_log(LOGS / "ort_android_sme2.txt")
    a = m.aggregate
    assert a.n == 5 and a.mean_ns == 98_961_997.0  # "Average inference time cost total: 98.961997 ms"
    assert (a.min_ns, a.max_ns) == (95_820_400.0, 101_519_000.0)  # "0.0958204 s", "0.101519 s"
    assert a.percentiles == {"50": 99_508_600.0, "90": 101_519_000.0, "95": 101_519_000.0,
                             "99": 101_519_000.0, "99.9": 101_519_000.0}
    assert a.std_ns is None  # not printed, not computed
    assert m.first_infer_ns == 196_000_000 and "whole ms" in m.units["first_infer"]
    assert m.init_ns == 217_932_000 and m.wall_runs_ns == 494_854_000
    assert m.memory[0].peak_b == 271_122_432


def test_ort_result_file_gives_samples():
    m = read_log(LOGS / "ort_result_file_DERIVED.csv")
    assert m.samples_ns == (12_345_600, 12_000_100, 13_100_000) and m.aggregate is None and m.runs == 3
    assert m.memory[0].peak_b == 36_696_064


def test_ort_result_file_with_the_wrong_log_is_refused():
    with pytest.raises(ToolLogError, match="3 runs, the log 5"):
        read_log(LOGS / "ort_android_sme2.txt", result_file=LOGS / "ort_result_file_DERIVED.csv")


def test_ort_result_file_appended_twice_is_refused():
    csv = text("ort_result_file_DERIVED.csv")
    with pytest.raises(ToolLogError, match="appended"):
        parse_log(csv + csv, "onnxruntime")


def test_ort_two_runs_in_one_log_are_refused():
    with pytest.raises(ToolLogError, match="several runs"):
        parse_log(text("ort_2020_android_acl_issue4647.txt") + text("ort_android_sme2.txt"))


# --------------------------------------------------------------------------------- ExecuTorch executor_runner


def test_executor_runner_iterations_first_kept_apart():
    m = read_log(LOGS / "executorch_iterations_posix_DERIVED.txt")
    assert (m.tool, m.runs) == ("executor_runner", 3)
    assert m.first_infer_ns == 7_500_000  # "Iteration 1 of 4: 7.500000 ms"
    assert m.samples_ns == (5_250_000, 5_125_000, 5_375_000)
    assert m.init_ns == 11_045_000  # "Model loaded in 11.045000 ms."


def test_executor_runner_through_logcat():
    m = read_log(LOGS / "executorch_iterations_logcat_DERIVED.txt")
    assert m.first_infer_ns == 98_500_000 and m.samples_ns == (90_125_000, 89_875_000)
    assert m.init_ns == 39_250_000


def test_executor_runner_total_only_is_an_aggregate_including_the_first_run():
    # Older builds print no Iteration lines: the derived log without them.
    log = "\n".join(ln for ln in text("executorch_iterations_posix_DERIVED.txt").splitlines()
                    if "Iteration" not in ln)
    m = parse_log(log)
    assert m.aggregate.n == 4 and m.aggregate.mean_ns == 5_812_500.0  # 23.25 ms / 4
    assert m.first_infer_ns is None and any("cannot be separated" in n for n in m.notes)


def test_executor_runner_single_execution_is_refused():
    assert "one execution only" in refused("executorch_docs_single_execution_2025.txt")


def test_executor_runner_missing_iteration_is_refused():
    log = "\n".join(ln for ln in text("executorch_iterations_posix_DERIVED.txt").splitlines()
                    if "Iteration 3 of 4" not in ln)
    with pytest.raises(ToolLogError, match="not iterations 1..4"):
        parse_log(log)


def test_benchmark_android_sh_summary():
    m = read_log(LOGS / "executorch_benchmark_android_sh_2026.txt")
    a = m.aggregate
    assert a.n == 10 and a.mean_ns == 95_209_700.0  # 952.097 ms / 10, not the printed (cut) 95.209
    assert (a.min_ns, a.max_ns) == (87_583_000.0, 142_932_000.0)
    assert m.init_ns == 39_258_000
    assert any("separate process" in n for n in m.notes)


# ------------------------------------------------------------------------------------ detection and errors


@pytest.mark.parametrize("name", fixtures())
def test_detection_names_the_family(name):
    assert detect_tool(text(name)) == {"litert": "litert", "ort": "onnxruntime",
                                       "executorch": "executorch"}[name.split("_")[0]]


def test_tool_given_but_not_in_the_log():
    message = refused("litert_tflite2.18_ti_2025.txt", "onnxruntime")
    assert "Total inference requests" in message


@pytest.mark.parametrize("content, expected", [
    ("", "empty"),
    ("hello\nworld\n", "not a log of benchmark_model, onnxruntime_perf_test or executor_runner"),
])
def test_unreadable_logs(content, expected):
    with pytest.raises(ToolLogError, match=expected):
        parse_log(content)


@pytest.mark.parametrize("name", [n for n in fixtures() if "only" not in n and "single" not in n])
def test_result_fields_make_a_valid_measure_result(name):
    m = read_log(LOGS / name)
    result = MeasureResult(status="ok", **m.result_fields())
    result.check(MeasureJob(artifact_path="m", backend="x", input_shape=(1,), runs=m.runs))
    assert result.n_runs == m.runs
    assert bool(result.infer_ns) != (result.infer_aggregate is not None)
    assert result.warmup_ns == ()
    assert (result.load_cold_ns is None) == (result.cold_method is None)


# ------------------------------------------------------------------------------------------- import-log


def test_import_log_record():
    record = import_log(LOGS / "litert_tflite2.8_opprofiling_2022.txt")
    assert record["tool"] == "benchmark_model" and record["source"].endswith("opprofiling_2022.txt")
    assert record["aggregate"]["mean_ns"] == 2_950_340_000.0
    assert record["measure_result"]["infer_aggregate"]["n"] == 50
    json.dumps(record)


def test_import_log_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError) as info:
        import_log(LOGS / "litert_opprofiling_only_android_2021.txt")
    assert str(info.value).startswith(str(LOGS / "litert_opprofiling_only_android_2021.txt") + ": ")
    with pytest.raises(UserError, match="unknown --tool"):
        import_log(LOGS / "ort_android_sme2.txt", "tflite")
    with pytest.raises(UserError, match="no such file"):
        import_log(tmp_path / "absent.txt")


def test_cli_import_log(capsys):
    assert main(["import-log", str(LOGS / "ort_android_sme2.txt"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["aggregate"]["n"] == 5 and record["memory"][0]["peak_b"] == 271_122_432
    assert main(["import-log", str(LOGS / "executorch_iterations_logcat_DERIVED.txt")]) == 0
    assert "first inference" in capsys.readouterr().out
    assert main(["import-log", str(LOGS / "litert_apk_logcat_summary_only.txt")]) == 0
    assert "number not printed" in capsys.readouterr().out
    assert main(["import-log", str(LOGS / "litert_opprofiling_only_android_2021.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_the_table_prints_si_megabytes(capsys):
    """Sizes in SI MB (10^6 bytes) as every splitbench table, not the tools' MiB, and the table says so."""
    assert main(["import-log", str(LOGS / "ort_android_sme2.txt")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "peak memory │ 271 MB" in out  # 271_122_432 bytes (258.6 MiB)
    assert "1 MB = 10^6 bytes" in out and "MiB" not in out
    assert main(["import-log", str(LOGS / "litert_tflite2.4_android_yolov5s_2021.txt")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "overall_delta │ 146 MB" in out  # "overall=138.809" MiB = 145.55e6 bytes
    assert "mean │ 250 ms" in out and "load / init │ 16.2 ms" in out
    assert main(["import-log", "--help"]) == 0
    assert "sizes in SI MB (1 MB = 10^6 bytes" in " ".join(capsys.readouterr().out.split())


def test_cli_import_log_with_result_file(capsys):
    assert main(["import-log", str(LOGS / "ort_result_file_DERIVED.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples_ns"] == [12_345_600, 12_000_100, 13_100_000]
    assert main(["import-log", str(LOGS / "ort_android_sme2.txt"), "--result-file",
                 str(LOGS / "ort_result_file_DERIVED.csv")]) == 1
    assert "3 runs, the log 5" in capsys.readouterr().err


def test_a_summary_only_row_is_an_aggregate_without_spread_in_stats_compare_and_report(tmp_path):
    """The mean-only aggregate through what reads records: its statistics, `compare` and the report."""
    from harness.analysis import compare as cmp
    from harness.report import build_report
    from harness.results.stats import compute_stats
    from harness.results.store import write_record
    from harness.results.tables import write_tables
    from test_compare import record

    agg = import_log(LOGS / "litert_summary_memory_only_kws_2022.txt")["measure_result"]["infer_aggregate"]
    phone = dict(backend="litert", target="android", device_id="android:PHONE")
    base = record(aggregate=agg, **phone)
    s = compute_stats(base)
    assert (s.timing_kind, s.n_runs, s.infer_ms_mean) == ("aggregate", None, 1.03966)
    assert (s.infer_ms_median, s.infer_ms_std, s.infer_ms_min, s.infer_ms_max, s.infer_ms_p90) == (None,) * 5
    assert not {w.code for w in s.warnings} & {"few_runs", "cv_high", "iqr_high", "min_far"}

    slower = record(aggregate=dict(agg, mean_ns=agg["mean_ns"] * 1.5), finished_at="2026-01-02T00:00:00", **phone)
    metrics = {m.metric: m for m in cmp.compare_records([base], [slower]).pairs[0].metrics}
    mean = metrics["infer_median"]  # no median printed: the ratio of the tool's means, untested
    assert (mean.test, mean.n_base, mean.n_new, mean.p_value) == (cmp.TEST_TOOL, None, None, None)
    assert mean.ratio == pytest.approx(1.5) and "no run count" in mean.note and "aggregate-only" in mean.note
    assert metrics["infer_p90"].verdict == cmp.NOT_COMPARABLE and "no p90" in metrics["infer_p90"].note

    out = tmp_path / "run"
    write_record(out, base)
    write_tables(out)
    paths = build_report(out)  # the figures too: the box plot of a row with no run count
    assert {"infer_box.png", "report.html"} <= {p.name for p in paths}
    page = (out / "report.html").read_text()
    assert "tool aggregate" in page and "1.04 ms" in page
