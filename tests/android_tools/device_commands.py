"""Stand-ins for the phone's own commands on the loopback device: getprop, dumpsys, id, su, df, logcat, cmd.

``python device_commands.py NAME ARGS...``; the device's state lives in ``$LOOPBACK_STATE``. Each
prints what the real command prints (sources beside each function), from that state.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ.get("LOOPBACK_STATE", "."))


def _state(name: str, default: str = "") -> str:
    try:
        return (STATE / name).read_text()
    except OSError:
        return default


def getprop(args: list[str]) -> int:
    """`getprop` lists ``[key]: [value]`` lines; ``getprop KEY`` prints the value (AOSP toolbox getprop)."""
    props = json.loads(_state("props.json", "{}"))
    if args:
        print(props.get(args[0], ""))
    else:
        for k in sorted(props):
            print(f"[{k}]: [{props[k]}]")
    return 0


def _battery_temp(pop: bool = True) -> int:
    """The next battery temperature (tenths of a degree), consumed by `dumpsys battery`; the last one stays."""
    lines = [x for x in _state("battery_temps", "285\n").splitlines() if x.strip()]
    if pop and len(lines) > 1:
        tmp = STATE / ".battery_temps.tmp"
        tmp.write_text("".join(f"{x}\n" for x in lines[1:]))
        os.replace(tmp, STATE / "battery_temps")
    return int(lines[0]) if lines else 285


def dumpsys(args: list[str]) -> int:
    """`dumpsys thermalservice` and `dumpsys battery` in the layout of Android 13-14
    (https://android.stackexchange.com/questions/246774; BatteryService dump)."""
    if args[:1] == ["thermalservice"]:
        status = _state("thermal_status", "0").strip()
        temp = _battery_temp(pop=False) / 10
        print("IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 1\n\tkilled: false\n"
              "\tbroadcasts count: -1\nThermalStatusListeners:\n\tcallbacks: 1\n\tkilled: false\n"
              f"\tbroadcasts count: -1\nThermal Status: {status}\nCached temperatures:\n"
              f"\tTemperature{{mValue={temp}, mType=2, mName=battery, mStatus=0}}\nHAL Ready: true\n"
              "HAL connection:\n\tThermalHAL 2.0 connected: yes\nCurrent temperatures from HAL:\n"
              f"\tTemperature{{mValue={temp}, mType=2, mName=battery, mStatus=0}}\n"
              f"\tTemperature{{mValue={temp + 5.5:.1f}, mType=0, mName=cpu0, mStatus={status}}}\n"
              f"\tTemperature{{mValue={temp + 2.0:.1f}, mType=3, mName=skin, mStatus=0}}\n"
              "Current cooling devices from HAL:\n\tCoolingDevice{mValue=0, mType=2, mName=cpu0}")
        return 0
    if args[:1] == ["battery"]:
        print("Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
              "  Wireless powered: false\n  Max charging current: 500000\n  Max charging voltage: 5000000\n"
              "  Charge counter: 2931000\n  status: 2\n  health: 2\n  present: true\n  level: 87\n"
              f"  scale: 100\n  voltage: 4213\n  temperature: {_battery_temp()}\n  technology: Li-ion")
        return 0
    print(f"Can't find service: {args[0] if args else ''}")
    return 0


def _rooted() -> bool:
    return _state("rooted", "0").strip() == "1"


def id_(args: list[str]) -> int:
    """toybox id: adbd's shell runs as uid 2000 (shell) unless adbd itself runs as root."""
    root = os.environ.get("LOOPBACK_AS_ROOT") == "1"  # under our su
    if args[:1] == ["-u"]:
        print(0 if root else 2000)
    elif root:
        print("uid=0(root) gid=0(root) groups=0(root) context=u:r:magisk:s0")
    else:
        print("uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1011(adb),1015(sdcard_rw)")
    return 0


def su(args: list[str]) -> int:
    """Magisk-style ``su -c CMD`` and AOSP userdebug ``su 0 CMD ...``; absent on an unrooted phone."""
    if not _rooted():
        print("/system/bin/sh: su: inaccessible or not found", file=sys.stderr)
        return 127
    os.environ["LOOPBACK_AS_ROOT"] = "1"
    if args[:1] == ["-c"] and len(args) >= 2:
        sh = os.environ["LOOPBACK_SH"]  # the phone's sh: mksh
        os.execv(sh, ["sh", "-c", args[1]])
    if args[:1] in (["0"], ["root"]) and len(args) >= 2:
        os.execvp(args[1], args[1:])
    print("usage: su [WHO [COMMAND...]]", file=sys.stderr)
    return 1


def df(args: list[str]) -> int:
    """``df -k PATH``: toybox's, or 1 MB available when the storage is full."""
    if (STATE / "full_df").exists():
        print("Filesystem     1K-blocks     Used Available Use% Mounted on")
        print("/dev/block/dm-5 115000000 114999000     1000 100% /data")
        return 0
    toybox = os.environ["LOOPBACK_TOYBOX"]
    os.execv(toybox, ["df", *args])


_LEVELS = "VDIWEF"


def logcat(args: list[str]) -> int:
    """``logcat -d --pid=N -s TAG:LEVEL ...``: the lines a tool logged through __android_log_print (threadtime),
    of that process; with ``-s``, only the tags named, at or above their level (logcat's filterspecs)."""
    logs = STATE / "logcat"
    if "-c" in args:
        for f in logs.glob("*.log"):
            f.unlink()
        return 0
    pid = next((a.split("=", 1)[1] for a in args if a.startswith("--pid=")), None)
    specs = dict(a.split(":", 1) if ":" in a else (a, "V") for a in args[args.index("-s") + 1:]) if "-s" in args else {}
    files = [logs / f"{pid}.log"] if pid else sorted(logs.glob("*.log"))
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines(keepends=True):
            fields = line.split(None, 6)  # date time pid tid level tag: message
            if specs and len(fields) > 5:
                tag, level = fields[5].rstrip(":"), fields[4]
                if tag not in specs or _LEVELS.find(level) < _LEVELS.find(specs[tag]):
                    continue
            sys.stdout.write(line)
    return 0


def cmd(args: list[str]) -> int:
    """``cmd power set-fixed-performance-mode-enabled true|false`` (Android 11+)."""
    if args[:2] == ["power", "set-fixed-performance-mode-enabled"] and len(args) == 3:
        (STATE / "perf_mode").write_text(args[2])
        return 0
    print(f"Unknown command: {' '.join(args)}", file=sys.stderr)
    return 255


COMMANDS = {"getprop": getprop, "dumpsys": dumpsys, "id": id_, "su": su, "df": df, "logcat": logcat, "cmd": cmd}

if __name__ == "__main__":
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
