"""CPU threads that behave on a busy desk PC: the OpenMP wait policy, set before torch starts.

OpenMP worker threads (torch's CPU kernels) spin on their core between parallel regions by
default. When other programs hold the cores, the spinning threads fight them for time and a
run slows several-fold instead of in proportion to the load (measured: docs/reliability.md,
"Threads on a busy machine"). ``OMP_WAIT_POLICY=PASSIVE`` makes idle workers sleep instead.
The variable is read once, when the OpenMP runtime loads (with torch), so it must be in the
environment before then: ``quiet_threads()`` is called first thing by the command line and
the desktop app, and the GUI's training subprocess inherits it (``child_env``).

A policy the user set (``OMP_WAIT_POLICY`` in the environment) is kept;
``DEFECT_STUDIO_OMP=default``
leaves the OpenMP runtime's own default (benchmarks/busy_threads.py compares the two).
ONNX Runtime has its own thread pool; ``quiet_onnx_options`` turns its spinning off.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

WAIT_POLICY = "PASSIVE"
OPT_OUT_VAR = "DEFECT_STUDIO_OMP"  # "default": leave OMP_WAIT_POLICY unset


def quiet_env(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Put the wait policy into ``env`` (a dict or os.environ) unless it is set there or the
    opt-out asks for the runtime's default; returns ``env``."""
    if env.get(OPT_OUT_VAR, "").strip().lower() == "default":
        return env
    if not env.get("OMP_WAIT_POLICY", "").strip():
        env["OMP_WAIT_POLICY"] = WAIT_POLICY
    return env


def quiet_threads() -> str | None:
    """Set the wait policy for this process (call before torch or onnxruntime is imported);
    returns the policy now in force (None: the OpenMP runtime's default)."""
    quiet_env(os.environ)
    return os.environ.get("OMP_WAIT_POLICY") or None


def child_env(base: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process that trains or scores: ``base`` (default: this
    process's) with the wait policy."""
    env = dict(os.environ if base is None else base)
    quiet_env(env)
    return env


def quiet_onnx_options(opts: Any) -> Any:
    """ONNX Runtime session options whose idle threads sleep instead of spinning (unless the
    opt-out asks for the default); returns ``opts``."""
    if os.environ.get(OPT_OUT_VAR, "").strip().lower() != "default":
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts
