"""A Ray head on 127.0.0.1 for the cluster tests (tests/conftest.py's ray_head fixture).

Started once per test module by the tests themselves (`ray start --head --block` in its
own process group, its own temp folder and node cache, 2 CPUs, no dashboard), bounded in
time, and stopped at the end by ending that process group only (never `ray stop`, which
would stop every Ray of the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 90
MAX_LIFE_S = 1200  # the whole suite takes about 5 minutes


def _term_when_parent_dies() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started it dies."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # short: Ray's socket paths must fit in 107 characters
        self.temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
        self.cache = self.temp / "cache"
        # the first scoring task of the session kills its worker (a retry must follow)
        self.scorer_died = self.temp / "scorer-died"
        self.env = dict(os.environ, DEFECT_STUDIO_CLUSTER_CACHE=str(self.cache),
                        RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
                        DEFECT_STUDIO_FAULT_SCORER_EXIT=str(self.scorer_died))
        self.proc: subprocess.Popen | None = None

    def start(self) -> RayHead:
        cmd = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; "
               "sys.argv[0] = 'ray'; main()", "start", "--head", "--block",
               "--node-ip-address", "127.0.0.1", "--port", str(self.port), "--num-cpus", "2",
               "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
               "--temp-dir", str(self.temp), "--object-store-memory", str(200 << 20),
               "--min-worker-port", "0", "--max-worker-port", "0"]
        # bounded in time even when the test process dies without its teardown (a crash,
        # kill -9): `timeout` ends the head after MAX_LIFE_S, and gets SIGTERM (which it
        # passes on; `ray start --block` then stops its node) when this process dies
        cmd = ["timeout", "-k", "10", str(MAX_LIFE_S), *cmd]
        self.log = open(self.temp / "head.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_term_when_parent_dies)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ray start failed:\n" +
                                   (self.temp / "head.log").read_text()[-3000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError(f"the Ray head did not answer within {START_TIMEOUT_S} s")
        # the GCS answers before the node is up: wait for its CPUs
        probe = subprocess.run(
            [sys.executable, "-c", f"import ray, time; ray.init(address='{self.address}', "
             "log_to_driver=False, logging_level='ERROR'); t = time.time()\n"
             "while ray.cluster_resources().get('CPU', 0) < 2 and time.time() - t < 60: "
             "time.sleep(0.2)\nprint(ray.cluster_resources().get('CPU', 0))"],
            env=self.env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if probe.returncode != 0 or not probe.stdout.strip().startswith("2"):
            self.stop()
            raise RuntimeError(f"the Ray head is not ready: {probe.stdout} {probe.stderr}")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # `ray start --block` cleans up its nodes
            self.proc.wait(timeout=2)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None
        self.log.close()
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)  # session logs, sockets, node cache
