"""Shared pytest helpers for the end-to-end suites (kept minimal on purpose): a free-port helper,
where the built binaries are, and starting/stopping a server process. Suite-specific fixtures live
in the suites' own modules (grpc_harness.py for qnext-engine, the gateway's for qnext-gateway).

Environment:
  QNEXT_BIN   folder with the built binaries (default: <repo>/build/bin)
  QNEXT_TEST_FORCED_OUTPUT  the real engine's forced-output test hook; when QNEXT_ENGINE_BIN (the real
              engine) is set and this is not, it defaults to tests/fixtures/engine/e2e_forced.json,
              which the forced-output suites (test_*_forced_output.py) need
"""
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FORCED_RULES = os.path.join(REPO, "tests", "fixtures", "engine", "e2e_forced.json")

if os.environ.get("QNEXT_ENGINE_BIN"):  # every engine process started from here inherits it
    os.environ.setdefault("QNEXT_TEST_FORCED_OUTPUT", FORCED_RULES)


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir():
    return os.environ.get("QNEXT_BIN") or os.path.join(REPO, "build", "bin")


def bin_path(name):
    """Path of a built binary in QNEXT_BIN (it must exist: a missing binary is a test failure)."""
    p = os.path.join(bin_dir(), name)
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} not found: build it first (cmake --build <dir> --target {name}) or set QNEXT_BIN")
    return p


class Proc:
    """A server process with its output in a log file. Use stop() (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, env=None, name="server"):
        self.argv = argv
        fd, self.log_path = tempfile.mkstemp(prefix=f"qnext-{name}-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    def log(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig=signal.SIGTERM):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or raises subprocess.TimeoutExpired."""
        return self.p.wait(timeout=timeout)

    def stop(self, timeout=30):
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode


def wait_tcp(port, timeout=30, proc=None):
    """Waits until 127.0.0.1:port accepts connections (fails early if proc died)."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc is not None and not proc.alive():
            pytest.fail(f"server exited with {proc.p.returncode} before listening:\n{proc.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listening on port {port} after {timeout} s")
