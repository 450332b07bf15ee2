"""The `splitbench` command line. This layer only parses; each command calls one function of a stage
module (which tests call directly). A :class:`UserError` (or a device agent's :class:`AgentError`), an
unknown option or command, are printed once, as one line, with their exit code (see
:mod:`harness.core.exitcodes`); never a traceback, except for a bug (exit code 70).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from harness.core import exitcodes
from harness.core.errors import UserError
from harness.core.text import visible

class _Group(TyperGroup):
    """A command group whose ``--help`` shows no value after a flag.

    Typer 0.29's rich help prints every option's type, flags included (``--resume <bool>``, ``--help
    <bool>``), as if each took a value. A flag's type is blanked before its command parses its
    arguments (``--help`` is handled there): the group's own flags, and each subcommand's as it is resolved.
    """

    def parse_args(self, ctx, args):
        _untyped_flags(self, ctx)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _untyped_flags(command, ctx)
        return name, command, rest


def _untyped_flags(command, ctx) -> None:
    for param in command.get_params(ctx):  # the --help option included
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # what the help shows instead of the type


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown",
                  help="Measure what each split of a neural network costs on a phone, beside how private "
                       "the features it uploads are.\n\nExit codes: " + exitcodes.describe() + ".")


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.command("models")
def models_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List the model zoo and each model's cut names."""
    from models import describe

    rows = describe()
    if json_out:
        _emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "input", "cuts", "reduced dims", "paper")
    for r in rows:
        table.add_row(r["name"], "x".join(map(str, r["input_shape"])), ", ".join(r["cuts"]),
                      ", ".join(f"{k}:{v}" for k, v in r["reduced_dims"].items()), r["paper"])
    Console().print(table)


@app.command("export")
def export_cmd(
    spec: Path = typer.Argument(..., help="The TOML spec."),
    force: bool = typer.Option(False, "--force", help="Rebuild every artifact, ignoring the cache."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Export and verify every split configuration for every backend and precision of SPEC.

    Exit code 0, or 2 when some (configuration, precision, backend) failed to convert or verify (an int8 part
    that is not really int8 fails); 1 for bad input.
    """
    from harness.config.spec import load_spec

    loaded = load_spec(spec)  # validate before the exporters' imports
    from harness.export.stage import export_spec, print_export_table

    result = export_spec(loaded, force=force, progress=not json_out)
    if json_out:
        _emit_json([a.to_dict() for a in result])
    else:
        print_export_table(result)
    raise typer.Exit(exitcodes.CONFIG_FAILED if any(a.status != "ok" for a in result) else exitcodes.OK)


@app.command("run")
def run_cmd(
    spec: Path = typer.Argument(..., help="The TOML spec."),
    out: Path = typer.Option(..., "--out", help="Results directory."),
    resume: bool = typer.Option(False, "--resume", help="Keep what OUT already measured for the same key; retry failed jobs."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Override the spec's run.targets (repeatable): "
                                               "cpu-1core[-NNNmb][:CPU], android, android:SERIAL, "
                                               "android:HOST:PORT, ios, ios:UDID."),
    runs: Optional[int] = typer.Option(None, "--runs", help="Override the spec's run.runs (the papers use 60)."),
    executor: str = typer.Option("serial", "--executor", help="serial (one job at a time), devices (every device "
                                 "of this host at once, one job each), or ray (many hosts)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="The Ray cluster (with --executor ray)."),
) -> None:
    """Export (through the cache), then measure every (configuration, backend, device) of SPEC.

    Writes into OUT, as each job finishes: records/, summary.csv, samples.parquet, manifest.json;
    then cloud.csv (the cloud part timed on this host), privacy.csv (when the spec has a privacy
    table), figures/ and report.html. Exit code 0; 2 when some configuration failed; 4 when a device
    was lost mid-run (finish with --resume); 5 when OUT or a device is in use by another run; 6 when
    OUT cannot be written; 130 when interrupted (finish with --resume).
    """
    from harness.orchestrate import run_spec
    from harness.config.spec import load_spec

    outcome = run_spec(load_spec(spec), out, resume=resume, targets=target, runs=runs, executor=executor,
                       ray_address=ray_address)
    raise typer.Exit(outcome.exit_code)


# The budget options `report` and `recommend` share (--max-latency-ms and --network each command words itself).
MaxMemoryMb = Annotated[Optional[float], typer.Option("--max-memory-mb", help="Phone model-memory budget.")]
MaxUploadKb = Annotated[Optional[float], typer.Option("--max-upload-kb", help="Uploaded feature budget.")]
MinAccuracy = Annotated[Optional[float], typer.Option("--min-accuracy", help="Primary-task accuracy floor.")]
UplinkMbps = Annotated[Optional[float], typer.Option("--uplink-mbps", help="Custom uplink.")]
DelayMs = Annotated[Optional[float], typer.Option("--delay-ms", help="Custom one-way delay.")]


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="A results directory written by `run`."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="The budget the report answers "
                                                   "for (default: the spec's [budget] table)."),
    max_memory_mb: MaxMemoryMb = None,
    max_upload_kb: MaxUploadKb = None,
    min_accuracy: MinAccuracy = None,
    network: Optional[str] = typer.Option(None, "--network", help="lte, 3g, wifi, 5g, or custom (with "
                                          "--uplink-mbps)."),
    uplink_mbps: UplinkMbps = None,
    delay_ms: DelayMs = None,
) -> None:
    """Rebuild the figures and report.html of a results directory.

    The report opens with the configuration `splitbench recommend` chooses for a budget: the options
    here, else the spec's [budget] table, else LTE with an accuracy floor 5 points below the
    noise-free accuracy. The page's controls then move the budget.
    """
    from harness.analysis.recommend import budget_from_mapping
    from harness.report import build_report

    budget = budget_from_mapping(dict(max_latency_ms=max_latency_ms, max_memory_mb=max_memory_mb,
                                      max_upload_kb=max_upload_kb, min_accuracy=min_accuracy, network=network,
                                      uplink_mbps=uplink_mbps, delay_ms=delay_ms))
    for path in build_report(out, budget=budget, say=lambda line: typer.echo(line, err=True)):
        typer.echo(visible(path))


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("results/demo"), "--out", help="Results directory."),
) -> None:
    """The main job on the embedded default: a paper setting on the local single-core profile."""
    from harness.demo import run_demo

    raise typer.Exit(run_demo(out))


@app.command("privacy-score")
def privacy_score_cmd(
    features: Path = typer.Argument(..., help="An .npz with train_features, train_sensitive, test_features, "
                                              "test_sensitive (optionally train_primary, test_primary), or one "
                                              "set: features, sensitive (optionally primary)."),
    estimator: str = typer.Option("splitbench", "--estimator",
                                  help="splitbench (default: standardised features, one shared bandwidth, works in "
                                       "d = 512), dpfe (exactly the DPFE authors' code: one gaussian_kde per class "
                                       "on the raw features) or osia (Osia et al.'s rank privacy; needs --noise-var)."),
    split: str = typer.Option("given", "--split", help="given: the file's train/test pair; dpfe: split one feature "
                                                      "set as the DPFE code does (classes of <= 18 features dropped, "
                                                      "10% test, random_state 14)."),
    noise_var: Optional[float] = typer.Option(None, "--noise-var", help="osia only: the variance of the isotropic "
                                                                         "Gaussian noise added to the features "
                                                                         "(seeded by --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (the scores are deterministic)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Score how much FEATURES give away of the sensitive label (rank and log-rank privacy, ...).

    Every output names the estimator that produced it; numbers of different estimators are not
    comparable one to one (see docs/privacy.md).
    """
    from harness.analysis.privacy import score_file

    scores = score_file(features, seed=seed, estimator=estimator, split=split, noise_var=noise_var)
    if json_out:
        _emit_json(scores)
    else:
        for key, value in scores.items():
            typer.echo(f"{key:28s} {value}")


@app.command("recommend")
def recommend_cmd(
    results: Path = typer.Argument(..., help="A results directory (with privacy scores merged)."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="End-to-end latency budget."),
    max_memory_mb: MaxMemoryMb = None,
    max_upload_kb: MaxUploadKb = None,
    network: Optional[str] = typer.Option(None, "--network", help="lte (the default), 3g, wifi, 5g, or custom "
                                          "(with --uplink-mbps)."),
    uplink_mbps: UplinkMbps = None,
    delay_ms: DelayMs = None,
    min_accuracy: MinAccuracy = None,
    target: Optional[list[str]] = typer.Option(None, "--target", help="Only this target's measurements "
                                               "(repeatable)."),
    backend: Optional[list[str]] = typer.Option(None, "--backend", help="Only this backend's measurements "
                                                "(repeatable)."),
    estimator: Optional[str] = typer.Option(None, "--estimator", help="Rank by this privacy estimator's scores "
                                            "(default: privacy.csv's only one, else the spec's, else splitbench)."),
    show_all: bool = typer.Option(False, "--all", help="One line per configuration and noise ratio, instead of "
                                                       "one per configuration with the ratios that fit."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Pick the most private configuration that fits a hardware and network budget.

    End-to-end latency = phone inference median + upload (delay + bytes over the uplink) + the cloud
    part (cloud.csv). Prints the choice and what it costs against on-premise, the Pareto frontier, and
    every other configuration on one line with the noise ratios that fit and the limits it breaks
    (--all: one line per noise ratio). Without privacy scores the fastest configuration that fits is
    chosen, and the output says privacy was not scored. With no budget option the budget is report.html's:
    the spec's [budget] table, else LTE with accuracy at most 5 points below noise-free. Exit code 0; 3 when nothing fits (one line
    names the closest configuration and what it breaks); 1 for bad input.
    """
    from harness.analysis.recommend import budget_from_mapping, recommend

    budget = budget_from_mapping(dict(max_latency_ms=max_latency_ms, max_memory_mb=max_memory_mb,
                                      max_upload_kb=max_upload_kb, network=network, uplink_mbps=uplink_mbps,
                                      delay_ms=delay_ms, min_accuracy=min_accuracy))
    raise typer.Exit(recommend(results, budget, json_out=json_out, estimator=estimator,
                               show_all=show_all, target=_one_or_tuple(target),
                               backends=tuple(backend) if backend else None))


def _one_or_tuple(values: list[str] | None) -> str | tuple[str, ...] | None:
    """One --target stays a string (as in --json's budget before --target was repeatable), several a tuple."""
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@app.command("devices")
def devices_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List every device this host can measure on: the local profile, Android phones, iPhones.

    With no phone attached it says so and exits 0.
    """
    from harness.measure.devices import list_devices

    raise typer.Exit(list_devices(json_out=json_out))


@app.command("doctor")
def doctor_cmd(
    platform: str = typer.Argument(..., help="local, android or ios."),
    target: Optional[str] = typer.Option(None, "--target", help="The device (default: the platform's only one)."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="A spec whose [android] / [ios] table to use."),
) -> None:
    """Check, one line each, what a platform needs to measure (tools, preconditions), and how to fix it.

    Exit code 0 when every check passes, 1 otherwise.
    """
    from harness.measure.devices import doctor

    raise typer.Exit(doctor(platform, target=target, spec_path=spec))


@app.command("clean")
def clean_cmd(
    device: str = typer.Option(..., "--device", help="The target whose splitbench files to remove "
                                                      "(android, android:SERIAL, ios:UDID, ...)."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="A spec whose [android] / [ios] table to use."),
) -> None:
    """Remove what splitbench left on a device (pushed artifacts, its work directory)."""
    from harness.measure.devices import clean

    raise typer.Exit(clean(device, spec_path=spec))


@app.command("compare")
def compare_cmd(
    base: Path = typer.Argument(..., help="The baseline results directory (e.g. the main branch's run)."),
    new: Path = typer.Argument(..., help="The results directory to judge (e.g. this change's run)."),
    fmt: str = typer.Option("table", "--format", help="table (terminal), md (a PR comment or job summary) or "
                                                      "json (every number and verdict)."),
    threshold: Optional[list[str]] = typer.Option(None, "--threshold", help="Practical size of a change: 5% or "
                                                  "0.05 for every metric, or METRIC=5% for one (repeatable). "
                                                  "Metrics: infer_median, infer_p90, load_warm, load_cold, "
                                                  "mem_model, artifact_bytes, upload_bytes."),
    allow_device_change: bool = typer.Option(False, "--allow-device-change", help="Compare pairs whose device, "
                                             "runtime version, threads or protocol differ anyway, and mark them."),
    alpha: float = typer.Option(0.01, "--alpha", help="False-alarm rate of the whole comparison "
                                "(Benjamini-Hochberg over every test)."),
) -> None:
    """Did the phone part get slower or bigger from BASE to NEW? Pairs rows by (model, cut, embedding,
    backend, target) and judges the inference median and p90, warm and cold load, model memory,
    artifact size and upload bytes.

    A regression is significant over the whole comparison and beyond the metric's threshold (defaults
    from measured noise; see docs/ci.md). A time with too few runs for its test to reach --alpha (one
    timed run, 3 warm loads, the p90 of 30 runs) is "not tested": shown, never a regression, counted in
    the headline. Exit code 0 no regression (metrics not tested included); 7 a regression (or a
    configuration that failed in NEW only); 8 nothing comparable; 1 bad input.
    """
    from harness.analysis.compare import compare

    raise typer.Exit(compare(base, new, fmt=fmt, thresholds=threshold or (), allow_device_change=allow_device_change,
                             alpha=alpha))


# --------------------------------------------------------------------------------------------------
# splitbench cluster: a lab of phones on many hosts, through Ray (harness/measure/lab/cluster.py does the work)

cluster_app = typer.Typer(cls=_Group, no_args_is_help=True, help=(
    "A lab of phones on many hosts as one Ray cluster: `start-head` on the first host, `join ADDR` on each "
    "device host (each registers its devices and serves until Ctrl-C), `status` anywhere; then `splitbench run "
    "SPEC --executor ray --ray-address ADDR` on the head. Token authentication is on unless --no-auth: "
    "`ray get-auth-token` on the head prints the token every other host needs in ~/.ray/auth_token."))
app.add_typer(cluster_app, name="cluster")

_DEVICE_HELP = ("Register this target (repeatable), e.g. cpu-1core:1, android:SERIAL; default: every device "
                "`splitbench devices` finds here.")
_NODE_IP_HELP = ("The address this host's Ray node gives the others (Ray's --node-ip-address): the interface that "
                 "faces the other hosts on a machine with several, or a loopback address such as 127.0.0.2 for a "
                 "lab on one host (Ray turns 127.0.0.1 into the interface address). Default: Ray's choice, the "
                 "primary interface.")


@cluster_app.command("start-head")
def cluster_start_head_cmd(
    port: int = typer.Option(6379, "--port", help="The cluster's port (its address is this host's IP:PORT)."),
    device: Optional[list[str]] = typer.Option(None, "--device", help=_DEVICE_HELP),
    no_devices: bool = typer.Option(False, "--no-devices", help="Register no device on the head."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Turn Ray's token authentication off (trusted network)."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Start Ray's dashboard too."),
    node_ip: Optional[str] = typer.Option(None, "--node-ip", help=_NODE_IP_HELP),
) -> None:
    """Start the lab's head on this host (with its devices) and serve until Ctrl-C."""
    from harness.measure.lab.cluster import ServeOptions, serve

    targets = () if no_devices else (tuple(device) if device else None)
    raise typer.Exit(serve(ServeOptions(head=True, port=port, targets=targets, auth=not no_auth,
                                        dashboard=dashboard, node_ip=node_ip), say=typer.echo))


@cluster_app.command("join")
def cluster_join_cmd(
    address: str = typer.Argument(..., help="The head's address, IP:PORT (printed by start-head)."),
    device: Optional[list[str]] = typer.Option(None, "--device", help=_DEVICE_HELP),
    no_auth: bool = typer.Option(False, "--no-auth", help="The head was started with --no-auth."),
    node_ip: Optional[str] = typer.Option(None, "--node-ip", help=_NODE_IP_HELP),
) -> None:
    """Join this host and its devices to the lab and serve until Ctrl-C; a phone plugged in later needs a new join."""
    from harness.measure.lab.cluster import ServeOptions, serve

    raise typer.Exit(serve(ServeOptions(head=False, address=address, targets=tuple(device) if device else None,
                                        auth=not no_auth, node_ip=node_ip), say=typer.echo))


@cluster_app.command("status")
def cluster_status_cmd(
    address: Optional[str] = typer.Option(None, "--address", help="The head's address (default: RAY_ADDRESS, "
                                          "or the cluster this host belongs to)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The lab's hosts, each with its devices, free or busy (and which run holds it), and devices lost."""
    from harness.measure.lab.cluster import cluster_status, print_status

    raise typer.Exit(print_status(cluster_status(address), json_out=json_out, write=typer.echo))


def _usage_line(exc) -> str:
    """One line from a typer/click usage error: the message and where to find help."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"error: {exc.format_message()}{where}"


@app.command("import-log")
def import_log_cmd(
    log: Path = typer.Argument(..., help="A log of benchmark_model, onnxruntime_perf_test or executor_runner."),
    tool: Optional[str] = typer.Option(None, "--tool", help="litert, onnxruntime or executorch (default: detected)."),
    result_file: Optional[Path] = typer.Option(None, "--result-file",
                                               help="onnxruntime_perf_test's result file: one line per run."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Read one benchmark tool run's log into splitbench's measurement record (ns, bytes, units named).

    benchmark_model's summary line alone ('Inference timings in us: ...') is the tool's mean with no run
    count, spread, min or max: an aggregate whose number of runs is left empty, never guessed. Every
    figure is checked (finite, not negative, a min not above its max); a log with one that is not is refused.

    The log is read a few MB at a time, so a long CI log holding the run can be given whole; a file over
    1 GB (10^9 bytes) is refused.

    The table prints times in ms (µs, s where they fit) and sizes in SI MB (1 MB = 10^6 bytes, as every
    splitbench table; the tools print MiB), 3 significant digits; --json keeps every figure in ns and bytes.

    Exit code 0, or 1 with one line naming what is missing or wrong when the log cannot be read.
    """
    from harness.measure.import_log import import_log, print_import_table

    record = import_log(log, tool, result_file=result_file)
    if json_out:
        _emit_json(record)
    else:
        print_import_table(record)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; every error the user can fix is one line and its exit code."""
    from typer._click import exceptions as click_exc  # typer >= 0.29 vendors click here (pinned in pyproject)

    from device_agents.base import AgentError
    from harness.core.interrupts import Terminated, signals_as_interrupt

    try:
        # Without standalone mode click returns a command's typer.Exit code instead of exiting. SIGTERM and
        # SIGHUP (a cancelled CI job, a closed terminal) end a command as Ctrl-C does.
        with signals_as_interrupt():
            rc = app(args=argv, standalone_mode=False, prog_name="splitbench")
    except (UserError, AgentError) as exc:
        sys.stderr.write(f"error: {visible(exc)}\n")  # a name in it is shown, never obeyed (a bidi override)
        return getattr(exc, "exit_code", exitcodes.USAGE)
    except typer.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort, click_exc.ClickException) as exc:
        if isinstance(exc, click_exc.NoArgsIsHelpError):
            return exitcodes.OK  # the help was printed
        if isinstance(exc, click_exc.ClickException):
            sys.stderr.write(_usage_line(exc) + "\n")
            return exitcodes.USAGE
        why = exc if isinstance(exc, Terminated) else exc.__cause__  # click turns an interrupt into Abort
        sys.stderr.write(f"interrupted by {why.signal_name}\n" if isinstance(why, Terminated) else "interrupted\n")
        return exitcodes.INTERRUPTED
    except Exception:  # noqa: BLE001 - a bug: say so, with the traceback, and a code of its own
        import traceback

        traceback.print_exc()
        sys.stderr.write("internal error: this is a bug in splitbench; please report it with the traceback above\n")
        return exitcodes.INTERNAL
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
