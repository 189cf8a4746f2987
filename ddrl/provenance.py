"""Run integrity: a run directory holds only results that its config produced (issue 13).

Every run directory gets

  manifest.json  the resolved config, its hash (`config_hash`, over the keys that change
                 results), the project's git commit and whether the tree was dirty, package
                 versions, start and end time, and `status`: running | complete | failed
                 (a `running` manifest whose directory is not locked is a run that died);
                 a resumed run also lists its earlier parts (`earlier`: when, how each
                 ended, commit, host, CPU model) and how they differ from this one in code
                 or machine (`resumed_across`, also printed as a warning);
  .lock          an advisory `fcntl` lock held for the whole run, naming its owner: a second
                 run into the same directory stops at once with one line naming the first.

`claim(run_dir, config, resume)` takes the lock and refuses, with `RunDirError`, a directory
that holds another run's results: without `resume`, any manifest, summary or checkpoint;
with `resume=true`, a manifest whose config hash differs (the message lists the keys).

Keys left out of the hash (they change what is shown or selected, never a number):
`logger` (where metrics go), `resume`, `experiment_name` (a label), and the selections
`only` and `views`: a run resumed with another selection trains and evaluates each selected
method exactly as before, so `only=[a]` then `resume=true only=[a,b]` is one consistent run.
Everything else, methods' labels included, is hashed.

Outputs are written atomically (`atomic_write_text`: a temporary file in the same directory,
then `os.replace`), so a file is either absent or complete, and a symlink planted at the
destination is replaced, never written through. `strict_json` writes JSON with no NaN or
Infinity: a non-finite number becomes null, its path and value listed under `non_finite`.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"
LOCK = ".lock"
NON_RESULT_KEYS = ("logger", "resume", "experiment_name", "only", "views", "trainer.checkpoint_every_s", "jobs")  # dotted: nested
RESULT_FILES = ("summary.json", "results.md")  # files that look like a finished run
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "gymnax", "numpy", "hydra-core",
            "omegaconf", "scipy", "highspy", "wandb")  # fmt: skip
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_held_locks: dict[Path, int] = {}  # run dir -> open lock file descriptor, for this process's lifetime


class RunDirError(RuntimeError):
    """The run directory cannot take this run (locked, another run's results, unwritable)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored."""

    def __init__(self, path: Path | str, error: BaseException):
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        super().__init__(f"checkpoint at {path} is unreadable: {type(error).__name__}: {first[:300]}; "
                         "rerun without resume (into a new hydra.run.dir)")  # fmt: skip

    def __reduce__(self):  # picklable with its message, so a training worker's error reaches the parent
        return _checkpoint_error, (str(self),)


def _checkpoint_error(message: str) -> CheckpointError:
    error = RuntimeError.__new__(CheckpointError)
    error.args = (message,)
    return error


# ----------------------------------------------------------------------------- writing


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` if the block succeeds, else removed.

    A symlink at `path` is replaced by the file (os.replace does not follow it).
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def strict_json(data: Any) -> str:
    """JSON text without NaN/Infinity: non-finite numbers become null, listed in `non_finite`."""
    non_finite: dict[str, str] = {}
    plain = _finite(data, "", non_finite)
    if non_finite and isinstance(plain, dict):
        plain["non_finite"] = {path: f"{value} (not a finite number; written as null)"
                               for path, value in non_finite.items()}  # fmt: skip
    return json.dumps(plain, indent=2, allow_nan=False)


def _finite(value: Any, path: str, non_finite: dict[str, str], as_text: bool = False) -> Any:
    """`value` with each non-finite float replaced by None (or by its text, "inf", "-inf",
    "nan", with `as_text`), its path recorded in `non_finite`."""
    if isinstance(value, dict):
        return {k: _finite(v, f"{path}.{k}" if path else str(k), non_finite, as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{path}[{i}]", non_finite, as_text) for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        value = value.item()
    if hasattr(value, "tolist"):  # numpy arrays
        return _finite(value.tolist(), path, non_finite, as_text)
    if isinstance(value, float) and not math.isfinite(value):
        non_finite[path] = str(value)
        return str(value) if as_text else None
    return value


# ----------------------------------------------------------------------------- the config hash


def non_finite_as_text(config: dict[str, Any]) -> dict[str, Any]:
    """A (new) config with its non-finite floats as the text "inf", "-inf" or "nan" (e.g.
    `clip_x0: .inf`), so it survives strict JSON in the manifest and hashes the same after."""
    return _finite(config, "", {}, as_text=True)


def result_config(config: dict[str, Any], excludes: tuple[str, ...] | list[str] = NON_RESULT_KEYS) -> dict[str, Any]:
    """The resolved config without the keys that never change a number of the run (a dotted
    key names a nested one: `trainer.checkpoint_every_s`)."""
    kept = non_finite_as_text({k: v for k, v in config.items() if k != "hydra"})  # new dicts: popping below edits no caller's
    for path in excludes:
        *parents, leaf = path.split(".")
        node = kept
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return kept


def config_hash(config: dict[str, Any], excludes: tuple[str, ...] | list[str] = NON_RESULT_KEYS) -> str:
    """sha256 of the result-changing part of a resolved config (canonical JSON)."""
    text = json.dumps(result_config(config, excludes), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (lists stay values)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differing_keys(old: dict[str, Any], new: dict[str, Any],
                   excludes: tuple[str, ...] | list[str] = NON_RESULT_KEYS) -> list[str]:  # fmt: skip
    """'key: old -> new' for every result-changing key that differs."""
    before, after = flatten(result_config(old, excludes)), flatten(result_config(new, excludes))
    missing = object()
    changes = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, missing), after.get(key, missing)
        if a != b:
            shown = lambda v: "(absent)" if v is missing else json.dumps(v, default=str)  # noqa: E731
            changes.append(f"{key}: {shown(a)} -> {shown(b)}")
    return changes


# ----------------------------------------------------------------------------- the lock


def acquire_lock(run_dir: Path | str, owner: str = "") -> None:
    """Hold the advisory lock of `run_dir` for this process's lifetime; RunDirError if taken."""
    run_dir = Path(run_dir).absolute()
    if run_dir in _held_locks:
        return
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirError(f"cannot write to run directory {run_dir}: {error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        other = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirError(f"run directory {run_dir} is in use by another run ({other}); "
                              "wait for it to end or choose another hydra.run.dir") from None  # fmt: skip
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, (owner or owner_text()).encode(), 0)
    _held_locks[run_dir] = fd


def release_lock(run_dir: Path | str) -> None:
    """Release a lock taken by `acquire_lock` (tests; a run keeps it until it exits)."""
    fd = _held_locks.pop(Path(run_dir).absolute(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_locked(run_dir: Path | str) -> bool:
    """Whether some process holds the lock of `run_dir`."""
    run_dir = Path(run_dir).absolute()
    if run_dir in _held_locks:
        return True
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def owner_text() -> str:
    """'pid N on HOST since TIME: COMMAND' of this process."""
    command = " ".join(sys.argv)[:300]
    return f"pid {os.getpid()} on {socket.gethostname()} since {_now()}: {command}"


# ----------------------------------------------------------------------------- the manifest


def read_manifest(run_dir: Path | str) -> dict[str, Any] | None:
    """The run's manifest (None: none, or unreadable); a dead `running` run reads as `failed`."""
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if manifest.get("status") == "running" and not is_locked(run_dir):
        manifest = {**manifest, "status": "failed", "failure": "the process died (no end recorded)"}
    return manifest


def claim(run_dir: Path | str, config: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """Lock `run_dir` and check that this run may write there; return the earlier manifest.

    Raises RunDirError when the directory is locked by another run, is not writable, holds
    another run's results (without `resume`) or was made by another config (with it).
    """
    run_dir = Path(run_dir).absolute()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-probe.")
        probe.close()
    except OSError as error:
        raise RunDirError(f"cannot write to run directory {run_dir}: {error.strerror or error}") from None
    acquire_lock(run_dir)
    earlier = read_manifest(run_dir)
    if resume:
        _check_resume(run_dir, config, earlier)
    else:
        _check_unused(run_dir, earlier, "resume" in config)
    return earlier


def _check_unused(run_dir: Path, earlier: dict[str, Any] | None, resumable: bool) -> None:
    found = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        found.append("checkpoints/")
    if earlier is not None:
        found.insert(0, f"{MANIFEST} of a {earlier.get('status', '?')} run")
    if found:
        hint = "continue it with resume=true (same config) or " if resumable else ""
        raise RunDirError(f"run directory {run_dir} already holds another run ({', '.join(found)}); "
                          f"{hint}choose another hydra.run.dir")  # fmt: skip


def _check_resume(run_dir: Path, config: dict[str, Any], earlier: dict[str, Any] | None) -> None:
    if earlier is not None:
        old = earlier.get("config") or {}
        excludes = earlier.get("hash_excludes") or NON_RESULT_KEYS  # as hashed when the run began
        if earlier.get("config_hash") != config_hash(config, excludes):
            changes = differing_keys(old, config, excludes) or ["(the stored config does not match its hash)"]
            raise RunDirError(f"resume=true: the run in {run_dir} was made with another config, which "
                              f"differs in {'; '.join(changes)}; rerun without resume into another hydra.run.dir")
        return
    has_checkpoints = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    if has_checkpoints or any((run_dir / name).exists() for name in RESULT_FILES):
        raise RunDirError(f"resume=true: {run_dir} holds results but no {MANIFEST}, so the config that made "
                          "them is unknown; rerun without resume into another hydra.run.dir")


def start(run_dir: Path | str, config: dict[str, Any], overrides: list[str], resume: bool,
          earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the `running` manifest (and config.yaml); clear a resumed run's old results."""
    import yaml

    run_dir = Path(run_dir)
    if resume:  # rewritten from the checkpoints at the end; until then nothing looks complete
        for name in RESULT_FILES:
            (run_dir / name).unlink(missing_ok=True)
    manifest = {
        "status": "running",
        "config_hash": config_hash(config),
        "hash_excludes": list(NON_RESULT_KEYS),
        "started_at": _now(),
        "ended_at": None,
        "resumed": bool(resume and earlier is not None),
        "overrides": list(overrides),
        "command": sys.argv[:],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "git": git_state(),
        "python": platform.python_version(),
        "cpu": cpu_description(),
        "packages": package_versions(),
        "earlier": _earlier_runs(earlier),
        "config": non_finite_as_text(config),
    }
    manifest["resumed_across"] = resumed_across(manifest)
    write_manifest(run_dir, manifest)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return manifest


def cpu_description() -> dict[str, Any]:
    """The processor a run's programs were compiled for: XLA's CPU code depends on it, so the same
    commit and packages can round differently in the last bit on another CPU model (and a
    learner's trajectory then drifts over 500 episodes)."""
    model, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not model:
                model = value
            elif key == "flags" and not flags:
                flags = [f for f in value.split() if f.startswith(("avx", "fma", "amx"))]
    except OSError:  # not Linux: the platform's own description
        pass
    model = model or platform.processor() or platform.machine()
    return {"model": model, "cores": os.cpu_count(), "vector_flags": sorted(flags)}


def finish(run_dir: Path | str, manifest: dict[str, Any], status: str, failure: str | None = None) -> None:
    """Mark the manifest `complete` or `failed` (with the reason); a failed run's results go."""
    run_dir = Path(run_dir)
    if status != "complete":
        for name in RESULT_FILES:
            with contextlib.suppress(OSError):
                (run_dir / name).unlink(missing_ok=True)
    manifest.update(status=status, ended_at=_now())
    if failure is not None:
        manifest["failure"] = failure
    with contextlib.suppress(OSError):  # a read-only directory: nothing more can be recorded
        write_manifest(run_dir, manifest)


def write_manifest(run_dir: Path | str, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / MANIFEST, strict_json(manifest))


def _earlier_runs(earlier: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The earlier parts of a resumed run, oldest first: when, how they ended, and the code and
    machine each ran on (so a table can say which parts ran where)."""
    if earlier is None:
        return []
    previous = {k: earlier.get(k) for k in ("status", "started_at", "ended_at", "failure", "overrides", "host", "git")}
    cpu = earlier.get("cpu") or {}
    previous["cpu"] = {k: cpu.get(k) for k in ("model", "cores")} if cpu else None
    return [*(earlier.get("earlier") or []), previous]


def _commit_text(git: dict[str, Any] | None) -> str:
    if not git:
        return "no git checkout"
    return f"{str(git.get('commit'))[:7]}{' (dirty)' if git.get('dirty') else ''}"


def resumed_across(manifest: dict[str, Any]) -> list[str]:
    """How this part of a resumed run differs from its earlier parts in code or machine, one
    line per difference ("commit 39dacbc -> 6ef687f (dirty)", "cpu A -> B"); empty when every
    part ran the same clean commit on the same CPU model. Either difference can change the
    numbers (another CPU model rounds differently in the last bit), so the run stays valid
    but is no longer the bit-for-bit uninterrupted run; earlier parts recorded before this
    field existed are skipped."""
    now_commit = _commit_text(manifest.get("git"))
    now_cpu = (manifest.get("cpu") or {}).get("model")
    lines: list[str] = []
    for part in manifest.get("earlier") or []:
        if "git" in part and (_commit_text(part["git"]) != now_commit or (part["git"] or {}).get("dirty")):
            lines.append(f"commit {_commit_text(part['git'])} -> {now_commit}")
        model = (part.get("cpu") or {}).get("model")
        if model and now_cpu and model != now_cpu:
            lines.append(f"cpu {model} -> {now_cpu}")
    return list(dict.fromkeys(lines))


def git_state() -> dict[str, Any] | None:
    """The project's commit and whether its working tree had changes (None: not a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def last_step(run_dir: Path | str) -> tuple[str, int] | None:
    """(method, env step) of the newest metrics record under `run_dir` (None: no record yet)."""
    records = sorted(Path(run_dir).glob("*/metrics.jsonl"), key=lambda p: p.stat().st_mtime)
    for path in reversed(records):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "step" in record:
                    return path.parent.name, int(record["step"])
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
