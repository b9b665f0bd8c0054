"""``--workers N``: N processes of the same demo training one version and framework together.

Each is an ordinary demo process (``python -m demos DATASET FRAMEWORK ...`` with
the same arguments and ``--workers 1``), a worker of :mod:`demos.claims`: it
claims runs one at a time, so the N never train the same run, and a run one
of them leaves (stopped, killed) is resumed by another. This parent process
only starts them, divides the cores among them, passes on their output (each
line prefixed ``[worker i]``), forwards Ctrl-C, prints the combined
throughput and returns their combined exit status; it trains nothing and
schedules nothing.

The cores are divided by the usual variables, unless the environment sets
them already: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch) = cores // N
(at least 1), and with one thread each ``--xla_cpu_multi_thread_eigen=false``
in ``XLA_FLAGS`` (XLA:CPU has no thread-count flag; with more than one thread
each, its pool stays at one thread per core). On GPUs, a ``CUDA_VISIBLE_DEVICES``
list of several devices is dealt out round-robin and JAX's preallocation is
cut to ``0.9 / N`` of the memory (``XLA_PYTHON_CLIENT_MEM_FRACTION``). ``--runs R``
is split among the workers (R // N each, the first R % N one more). The
workers' progress bars are off (``--no-progress``).

On a cluster, start the same command once per job instead (a SLURM job array,
README "Many workers"); the claims need only the shared results folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .atomic import STOP_SIGNALS

__all__ = ["launch", "split_runs", "worker_environment", "combined_status"]

_REPO = Path(__file__).resolve().parent.parent


def split_runs(runs: int | None, workers: int) -> list[int | None]:
    """``--runs`` of each worker: ``runs`` shared out (no worker gets 0); ``None``: unlimited."""
    if runs is None:
        return [None] * workers
    return [runs // workers + (i < runs % workers) for i in range(min(workers, runs))]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_environment(index: int, workers: int, base: dict | None = None) -> dict:
    """The environment of worker ``index`` of ``workers`` (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    threads = max(1, _cores() // workers)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, str(threads))
    flags = env.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / workers:.3f}")
    devices = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(devices) > 1:
        env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_REPO) + (os.pathsep + path if path else "")
    return env


def combined_status(codes: list[int]) -> int:
    """2 if a worker failed on its input (status 2), else 1 if any failed, else 0."""
    if 2 in codes:
        return 2
    return 1 if any(codes) else 0


class _Output:
    """Passes the workers' lines on, prefixed, and counts their saved runs."""

    def __init__(self, workers: int):
        self.workers, self.saved, self.started = workers, 0, time.monotonic()
        self._lock = threading.Lock()

    def rate(self) -> str:
        hours = (time.monotonic() - self.started) / 3600
        per_hour = self.saved / hours if hours > 0 else 0.0
        return (f"{self.saved} run(s) saved in {hours * 3600:.0f} s: {per_hour:.1f} runs/hour "
                f"with {self.workers} workers")

    def pump(self, index: int, stream, out) -> None:
        for line in stream:
            with self._lock:
                out.write(f"[worker {index}] {line}")
                out.flush()
                if out is sys.stdout and line.startswith("saved run "):
                    self.saved += 1
                    print(f"[workers] {self.rate()}", flush=True)
        stream.close()


def _child_setup(libc, ignored: tuple) -> None:
    """In the child before exec: the stop signals as the parent had them before it began
    to forward them (ignored ones stay ignored), its own process group (a terminal's Ctrl-C
    reaches the parent, which forwards it once), and SIGTERM when the parent dies (Linux)."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN if number in ignored else signal.SIG_DFL)
    os.setpgid(0, 0)
    if libc is not None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover
        return None


def _start_worker(dataset: str, framework: str, argv: list[str], index: int, workers: int,
                  runs: int | None, libc, ignored: tuple) -> subprocess.Popen:
    command = [sys.executable, "-m", "demos", dataset, framework, *argv,
               "--workers", "1", "--no-progress"]
    if runs is not None:
        command += ["--runs", str(runs)]
    return subprocess.Popen(command, env=worker_environment(index, workers), text=True,
                            bufsize=1, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: _child_setup(libc, ignored))


def launch(dataset: str, framework: str, argv: list[str], args: argparse.Namespace) -> int:
    """Run ``args.workers`` workers of the demo ``argv`` and wait for them; the combined status."""
    runs = split_runs(args.runs, args.workers)
    print(f"starting {len(runs)} workers of {dataset} {framework} {args.version}, "
          f"{max(1, _cores() // args.workers)} thread(s) each", flush=True)
    libc, processes = _libc(), []
    held: list[int] | None = []  # the stops that come while the workers start

    def forward(signum, frame):
        if held is not None:
            held.append(signum)
            return
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    ignored = tuple(s for s, handler in previous.items() if handler == signal.SIG_IGN)
    try:
        try:
            for index, worker_runs in enumerate(runs):
                processes.append(_start_worker(dataset, framework, argv, index, len(runs),
                                               worker_runs, libc, ignored))
        except BaseException:
            for process in processes:  # nobody would read their output
                process.terminate()
                process.wait()
            raise
        # Once every worker is started, the held stops go to all of them (a handler that
        # runs during this line appends to the list read, or forwards at once).
        stops, held = held, None
        for signum in dict.fromkeys(stops):
            forward(signum, None)
        output = _Output(len(processes))
        pumps = [threading.Thread(target=output.pump, args=(i, stream, out), daemon=True)
                 for i, p in enumerate(processes)
                 for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr))]
        for pump in pumps:
            pump.start()
        codes = [process.wait() for process in processes]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for pump in pumps:
        pump.join()
    print(f"[workers] done: {output.rate()}; exit statuses {codes}", flush=True)
    return combined_status(codes)
