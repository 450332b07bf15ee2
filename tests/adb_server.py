"""Google's ``adb`` server for the tests: started on a private port with a private HOME (its own
``~/.android/adbkey``), in the foreground (``adb -P PORT nodaemon server``) so that the test owns the
process; stopped with ``adb -P PORT kill-server``, then killed if it is still there. The default port
5037, where a developer's own server may run, is never touched.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.android_userland import ADB
from tests.loopback_adb import free_port


class AdbServer:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.port = free_port()
        if self.port == 5037:  # never the default server's port
            self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
        # no emulator scan on 5555-5585 (ADB_LOCAL_TRANSPORT_MAX_PORT below the range), no mDNS
        return {**env, "HOME": str(self.home), "ANDROID_ADB_SERVER_PORT": str(self.port),
                "ADB_LOCAL_TRANSPORT_MAX_PORT": "5554", "ADB_MDNS": "0"}

    def adb(self, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Google's adb client against this server."""
        return subprocess.run([ADB, "-P", str(self.port), *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def start(self) -> "AdbServer":
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "adb-server.log", "wb")
        self.proc = subprocess.Popen([ADB, "-P", str(self.port), "nodaemon", "server"], env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        for _ in range(200):  # it answers within a second or two
            if self.proc.poll() is not None:
                raise RuntimeError(f"adb server exited: {(self.home / 'adb-server.log').read_text()[-2000:]}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the adb server did not answer within 10 s")

    def _answers(self) -> bool:
        from device_agents.android.adb_server import ServerAddress

        return ServerAddress("127.0.0.1", self.port).answers()

    def connect(self, address: str) -> str:
        """``adb connect`` and wait until the server lists it as a device."""
        out = self.adb("connect", address).stdout
        self.adb("-s", address, "wait-for-device", timeout=30)
        return out

    def devices(self) -> dict[str, str]:
        lines = self.adb("devices").stdout.splitlines()[1:]
        return dict(ln.split("\t", 1) for ln in lines if "\t" in ln)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.adb("kill-server", timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=5)
        self.proc = None
