"""Demo processes for the SIGKILL tests, forked from a server that has already imported torch.

A fresh interpreter would spend seconds importing torch for every kill; a fork
of :class:`DemoServer`'s process starts a torch demo at once. The forked child
runs the unchanged demo code (:func:`demos.runner.main`) with its stdout and
stderr sent to a log file; it is a separate process, and SIGKILL ends it as
abruptly as any other.

With ``exclusive=FOLDER``, every child checks that no other process trains the
same run at the same time: around each :func:`demos.runner.train_run` it holds
an exclusive ``flock`` on ``FOLDER/run_<N>.lock`` (the kernel drops it the
moment the process dies); if another process holds it, the child writes
``FOLDER/violation_<N>_<pid>`` and exits with status 99.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.demo_runs import DATASET, REPO

__all__ = ["DemoServer"]

SERVER = r"""
import fcntl, json, os, sys
import torch
torch.set_num_threads(1)
# The imports a demo pays, once (torch.optim.Adam imports torch._dynamo: seconds).
import torch._dynamo, tqdm
from demos import runner, train_torch


def exclusive_runs(folder):
    train_run = runner.train_run

    def checked(framework, architecture, data, args, run_index, *rest, **options):
        fd = os.open(os.path.join(folder, f"run_{run_index}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            open(os.path.join(folder, f"violation_{run_index}_{os.getpid()}"), "w").close()
            os._exit(99)
        try:
            return train_run(framework, architecture, data, args, run_index, *rest, **options)
        finally:
            os.close(fd)

    runner.train_run = checked


for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "start":
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                if request.get("exclusive"):
                    exclusive_runs(request["exclusive"])
                code = runner.main(request["dataset"], request["framework"], request["argv"])
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        reply = {"pid": pid}
    else:
        _, status = os.waitpid(request["pid"], 0)
        reply = {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                 "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


class DemoServer:
    """Starts torch demo processes (forks of a torch-loaded server) and reaps them."""

    def __init__(self, exclusive: Path | None = None):
        self.exclusive = exclusive
        if exclusive is not None:
            exclusive.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)

    def _ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the demo server died"
        return json.loads(line)

    def start(self, argv: list[str], log: Path) -> int:
        """Fork a demo ``runner.main(DATASET, "torch", argv)`` logging to ``log``; its pid."""
        return self._ask(op="start", dataset=DATASET, framework="torch", argv=argv, log=str(log),
                         exclusive=None if self.exclusive is None else str(self.exclusive))["pid"]

    def wait(self, pid: int) -> dict:
        """Reap ``pid``: ``{"signal": N or None, "code": N or None}``."""
        return self._ask(op="wait", pid=pid)

    def violations(self) -> list[str]:
        """The runs some process found trained by another at the same time (``exclusive``)."""
        return sorted(p.name for p in self.exclusive.glob("violation_*")) if self.exclusive else []

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)
