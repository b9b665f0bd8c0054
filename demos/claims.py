"""Which worker trains which run: claims of run indices, safe across processes and machines.

Any number of demo processes ("workers") may train the same dataset, version
and framework at once, on one machine or on several machines sharing the
results folder. Each run index — and with it the run's seed, ``--seed`` +
index — is held by one worker at a time through a claim file::

    results/<dataset>/<version>/claims/<framework>/        (git-ignored)
        claim_<NNNN>_g<GGGG>.json   run NNNN, generation GGGG: 1 for the worker that
                                    started the run, G + 1 for the one that took it
                                    over from generation G
        .tmp-*                      a lease renewal being written (removed when stale)

**File-system operations relied on** (atomic on local POSIX file systems and on
NFS v3/v4, which does not reliably honour ``flock``; no lock is ever used):

1. ``os.open(name, O_CREAT | O_EXCL)``: of several processes creating one name,
   exactly one succeeds. Every claim is such a create of a name only one worker
   can win: ``claim_NNNN_g0001`` for a new run, ``claim_NNNN_g<G+1>`` to take
   over a free claim of generation G. (Renaming the old claim away before
   re-creating it could rename a claim another taker has just made.)
2. ``os.rename(tmp, name)`` replaces ``name`` whole: the owner renews its lease by
   rewriting its own claim file (:func:`demos.atomic.replace_file`). Only the
   owner ever writes a claim file, so a renewal never overwrites another's claim.
3. ``os.unlink``, and the results' own ``link``/``O_EXCL`` create
   (:func:`demos.atomic.create_file`), which never replaces a run file.

**Ownership.** A worker owns run NNNN while its claim is the highest generation
of NNNN and ``run_NNNN.json`` does not exist. :meth:`Claim.verify` checks both
before every checkpoint and before the result file is written; a worker whose
claim was taken over (it was paused for longer than twice its lease) raises
:class:`ClaimLost` and stops writing that run. Its late writes could only be a
checkpoint equal to the new owner's (same run, same deterministic epochs), and
a result file is never overwritten.

**Leases.** The owner rewrites its claim every ``lease / 4`` seconds from a
background thread (:class:`RunClaims`), recording its wall-clock time. A claim
is *free* — another worker may take it over and resume the run from its
checkpoint — when

* *released*: its owner stopped cleanly (Ctrl-C, an error) and said so;
* *dead*: its owner ran on this machine (same host name, boot and pid
  namespace) and that process is gone (its pid exited or was reused);
* *expired*: not renewed for ``2 x lease`` seconds, comparing the time the owner
  wrote with the taker's clock. Clocks of different machines may differ by up to
  about 1.75 leases without a live claim looking expired (default lease 300 s:
  minutes of skew; NTP keeps it under a second). On NFS, attribute and
  directory caching (``acdirmax``, 60 s by default) must stay well below the lease.

A checkpoint of a run without any claim (an older demo's checkpoint folder, or
a claim undone) is free too; so is a claim file left empty by a worker killed
between its create and its first write, once it is ``2 x lease`` old.

A worker claims free runs first (lowest index first), then new ones after
every index used so far. :meth:`RunClaims.claim_runs` takes ``count`` runs at
once: a worker that trains K runs together (``--parallel-runs K``) asks for K,
and its new runs are a block of K consecutive indices (consecutive seeds),
each index claimed by its own ``O_EXCL`` create; if another worker got one of
them first, the block's claims made so far are released (free for any worker:
no index is skipped) and a block further on is tried.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import atomic, results_store
from .machine import machine_id, process_alive, process_start

__all__ = ["DEFAULT_LEASE_SECONDS", "ClaimLost", "Claim", "RunClaims", "claims_dir"]

#: Default lease (seconds): renewed every quarter of it, taken over after twice it.
DEFAULT_LEASE_SECONDS = 300.0

_CLAIM_RE = re.compile(r"claim_([0-9]{4,})_g([0-9]{4,})\.json")
_FORMAT = 1
#: Tokens of the claims this process holds (a claim with this process's pid and
#: another token belongs to an earlier, finished demo in this process).
_LIVE_TOKENS: set[str] = set()


class ClaimLost(RuntimeError):
    """This worker no longer owns run ``run_index``: it must stop writing it."""

    def __init__(self, run_index: int, why: str):
        super().__init__(f"run {run_index}: {why}; this worker stops writing it")
        self.run_index = run_index


def claims_dir(dataset: str, version: str, framework: str,
               results_dir: os.PathLike | str | None = None) -> Path:
    """``<results_dir>/<dataset>/<version>/claims/<framework>`` (validated names)."""
    return results_store.state_dir("claims", dataset, version, framework, results_dir)


def _claim_name(run_index: int, generation: int) -> str:
    return f"claim_{run_index:04d}_g{generation:04d}.json"


@dataclass(frozen=True)
class _Seen:
    """A claim file as read: ``data`` is ``None`` while its creator has not written it."""

    run_index: int
    generation: int
    path: Path
    data: dict | None
    mtime: float

    def state(self, now: float, default_lease: float) -> str:
        """``"live"``, or why it is free: ``"released"``, ``"dead"`` or ``"expired"``."""
        data = self.data
        if data is None:
            return "expired" if now - self.mtime > 2 * default_lease else "live"
        if data.get("released"):
            return "released"
        pid = data.get("pid")
        if data.get("machine") == machine_id() and isinstance(pid, int):
            mine = pid == os.getpid()
            if (mine and data.get("token") not in _LIVE_TOKENS) or (
                    not mine and not process_alive(pid, data.get("pid_start"))):
                return "dead"
        try:
            lease = float(data.get("lease_seconds") or default_lease)
            renewed = float(data.get("renewed_unix") or 0.0)
        except (TypeError, ValueError):  # not written by this code: judge by the file's age
            lease, renewed = default_lease, self.mtime
        return "expired" if now - renewed > 2 * lease else "live"

    def owner(self) -> str:
        data = self.data or {}
        return f"pid {data.get('pid', '?')} on {data.get('host', '?')}"


def _read(path: Path) -> dict | None:
    """A claim file's contents; ``None`` if empty or partial (just created)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


class Claim:
    """Run ``run_index`` held by this process under claim ``generation`` (made by :class:`RunClaims`).

    ``took_over`` says from whom, when the run was taken over from another
    worker's free claim: ``{"generation", "why", "owner"}``; ``None`` otherwise.
    """

    def __init__(self, folder: RunClaims, run_index: int, generation: int,
                 took_over: dict | None = None):
        self.folder, self.run_index, self.generation = folder, run_index, generation
        self.took_over = took_over
        self.path = folder.path / _claim_name(run_index, generation)
        self.token = uuid.uuid4().hex
        self.claimed = time.time()
        self.lost: str | None = None

    def contents(self, released: bool = False) -> bytes:
        """The claim file's bytes now: owner, lease and the time of this renewal."""
        now = time.time()
        return (json.dumps({
            "format": _FORMAT, "run_index": self.run_index, "generation": self.generation,
            "token": self.token, "host": socket.gethostname(), "machine": machine_id(),
            "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "lease_seconds": self.folder.lease_seconds, "claimed_unix": self.claimed,
            "renewed_unix": now, "renewed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "released": released, "took_over": self.took_over,
        }, indent=1) + "\n").encode("utf-8")

    def verify(self) -> None:
        """Check that this worker still owns the run (before writing anything of it).

        Raises:
            ClaimLost: a higher generation exists (the run was taken over), this
                claim file is gone or is another's, or the run's result file exists.
        """
        if self.lost is None:
            self.lost = self.folder.ownership_problem(self)
        if self.lost is not None:
            raise ClaimLost(self.run_index, self.lost)

    def renew(self) -> None:
        """Rewrite the claim with a fresh time (tmp + rename), if this worker still owns it."""
        self.verify()
        atomic.replace_file(self.path, self.contents())

    def release(self) -> None:
        """Stop holding the run but leave it to be resumed: mark the claim released."""
        if self.folder.drop(self):
            try:
                self.verify()
            except ClaimLost:
                return
            atomic.replace_file(self.path, self.contents(released=True))

    def finish(self) -> None:
        """The run is saved or abandoned: delete its claim files of this generation and below."""
        self.folder.drop(self)
        for generation in sorted(self.folder.generations(self.run_index)):
            if generation <= self.generation:
                _unlink(self.folder.path / _claim_name(self.run_index, generation))

    def undo(self) -> None:
        """Give the claim back unused (the run is left as it was found): delete this claim file."""
        self.folder.drop(self)
        _unlink(self.path)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class RunClaims:
    """The claims of one dataset / version / framework, and those this process holds.

    Args:
        dataset, version, framework, results_dir: as in :mod:`demos.results_store`.
        lease_seconds: this process's lease: its claims are renewed every quarter
            of it and may be taken over after twice it without renewal.

    Raises:
        ValueError: ``lease_seconds`` is not a positive number.
    """

    def __init__(self, dataset: str, version: str, framework: str,
                 results_dir: os.PathLike | str | None = None, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS):
        if not (isinstance(lease_seconds, (int, float)) and 0 < lease_seconds < float("inf")):
            raise ValueError(f"lease_seconds: expected a positive number of seconds, "
                             f"got {lease_seconds!r}")
        self.path = claims_dir(dataset, version, framework, results_dir)
        self.result_dir = results_store.run_dir(dataset, version, framework, results_dir)
        self.lease_seconds = float(lease_seconds)
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------

    def _scan(self) -> dict[int, list[_Seen]]:
        """Every claim file, by run index, in increasing generation; drops stale temporaries."""
        found: dict[int, list[_Seen]] = {}
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return found
        now = time.time()
        for entry in entries:
            match = _CLAIM_RE.fullmatch(entry.name)
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if match is None:
                if entry.name.startswith(".tmp-") and now - mtime > 2 * self.lease_seconds:
                    _unlink(Path(entry.path))  # a renewal whose writer was killed
                continue
            index, generation = int(match[1]), int(match[2])
            if entry.name == _claim_name(index, generation):
                found.setdefault(index, []).append(
                    _Seen(index, generation, Path(entry.path), _read(Path(entry.path)), mtime))
        for claims in found.values():
            claims.sort(key=lambda seen: seen.generation)
        return found

    def generations(self, run_index: int) -> list[int]:
        """The generations of ``run_index``'s claim files now on disk (names only)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        prefix = f"claim_{run_index:04d}_g"
        return [int(match[2]) for name in names if name.startswith(prefix)
                and (match := _CLAIM_RE.fullmatch(name)) and int(match[1]) == run_index]

    def live_runs(self) -> set[int]:
        """Run indices whose newest claim is live (held by a running worker, as far as one can tell)."""
        now = time.time()
        return {index for index, claims in self._scan().items()
                if claims[-1].state(now, self.lease_seconds) == "live"}

    def ownership_problem(self, claim: Claim, *, result: bool = True) -> str | None:
        """Why ``claim`` no longer gives its run to this worker, or ``None`` (see :meth:`Claim.verify`)."""
        newest = max(self.generations(claim.run_index), default=0)
        if newest > claim.generation:
            return (f"another worker took it over (claim generation {newest} after this worker's "
                    f"{claim.generation}: this worker's lease expired; was it paused?)")
        data = _read(claim.path)
        if data is None or data.get("token") != claim.token:
            return f"its claim {claim.path} was removed or is another worker's"
        saved = self.result_dir / results_store.run_file_name(claim.run_index)
        if result and saved.exists():
            return f"{saved} was saved by another worker"
        return None

    # -- claiming ------------------------------------------------------------

    def claim_runs(self, count: int = 1, *, first_free: Callable[[], int],
                   resumable: Iterable[int] = ()) -> list[Claim]:
        """Claim ``count`` runs: free ones first (lowest index first), then new consecutive ones.

        Args:
            first_free: the lowest index no saved or abandoned run has used (asked
                again on every try, as other workers save runs meanwhile).
            resumable: indices with a checkpoint (free to take when unclaimed).

        Returns:
            ``count`` claims, held (renewed) until finished, released or undone. A
            taken-over run may already be saved (its owner died before deleting
            its claim): the caller checks, and then calls :meth:`Claim.finish`.
        """
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count: expected a positive int, got {count!r}")
        resumable, claims, floor = set(resumable), [], 0
        while len(claims) < count:
            seen = self._scan()
            for index, generation, took_over in self._free(seen, resumable):
                if index not in {c.run_index for c in claims}:
                    claim = self._create(index, generation, took_over)
                    claims += [claim] if claim is not None else []
                    if len(claims) == count:
                        return claims
            start = max([floor, first_free(), *(i + 1 for i in seen), *(i + 1 for i in resumable),
                         *(c.run_index + 1 for c in claims)])
            block, floor = self._new_block(start, count - len(claims))
            claims += block
        return claims

    def _free(self, seen: dict[int, list[_Seen]], resumable: set[int]) -> list[tuple]:
        """``(index, generation to create, took_over)`` of every free run, lowest index first."""
        now, free = time.time(), []
        for index in sorted(set(seen) | resumable):
            if index not in seen:  # a checkpoint nobody claims
                free.append((index, 1, None))
                continue
            newest = seen[index][-1]
            why = newest.state(now, self.lease_seconds)
            if why != "live":
                free.append((index, newest.generation + 1, {
                    "generation": newest.generation, "why": why, "owner": newest.owner()}))
        return free

    def _create(self, index: int, generation: int, took_over: dict | None, *,
                new: bool = False) -> Claim | None:
        """``O_EXCL``-create claim ``generation`` of run ``index``; ``None`` if another worker
        won (or, ``new``, has saved the run meanwhile: claimed, saved and released between
        this worker's look and its create)."""
        claim = Claim(self, index, generation, took_over)
        atomic.make_dirs(self.path)
        try:
            atomic.write_new(claim.path, claim.contents())
        except FileExistsError:
            return None
        atomic.fsync_dir(self.path)
        self._hold(claim)
        if self.ownership_problem(claim, result=new) is not None:
            claim.undo()
            return None
        return claim  # the lower generations stay until the run is finished (Claim.finish)

    def _new_block(self, start: int, count: int) -> tuple[list[Claim], int]:
        """Claims of the new runs ``start .. start + count - 1``, and where to try next."""
        made: list[Claim] = []
        for index in range(start, start + count):
            claim = self._create(index, 1, None, new=True)
            if claim is None:  # another worker got this index first: try after it, and
                for left in made:  # leave the ones made free for others (no gap of seeds)
                    left.release()
                return [], index + 1
            made.append(claim)
        return made, start + count

    # -- holding ---------------------------------------------------------------

    def held(self) -> list[Claim]:
        """The claims this object holds now."""
        with self._lock:
            return list(self._held.values())

    def _hold(self, claim: Claim) -> None:
        with self._lock:
            self._held[claim.token] = claim
            _LIVE_TOKENS.add(claim.token)
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._beat, name="claim-lease", daemon=True)
                self._thread.start()

    def drop(self, claim: Claim) -> bool:
        """Stop renewing ``claim``; whether it was held."""
        with self._lock:
            _LIVE_TOKENS.discard(claim.token)
            return self._held.pop(claim.token, None) is not None

    def _beat(self) -> None:
        """The lease thread: renews every held claim each quarter lease."""
        while not self._stop.wait(self.lease_seconds / 4):
            with self._lock:
                for claim in list(self._held.values()):
                    try:
                        claim.renew()
                    except ClaimLost:
                        pass  # the training thread learns it at its next verify()
                    except OSError as error:
                        print(f"warning: cannot renew {claim.path}: {error}", file=sys.stderr)

    def close(self) -> None:
        """Release every claim still held (left to be resumed) and stop the lease thread."""
        for claim in self.held():
            claim.release()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
