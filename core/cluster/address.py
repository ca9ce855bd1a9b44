"""A cluster address as the user types it, checked before Ray is asked anything.

Two forms: ``HOST:PORT`` (the head's GCS port, 6379 by default: this computer joins as a
Ray driver) and ``ray://HOST:PORT`` (Ray Client, port 10001 by default, for a desktop
outside the cluster's network). A wrong address or a head that does not answer is a
ClusterError with one line, within seconds, instead of Ray's own minute-long retries.
"""

from __future__ import annotations

import re
import socket

from defect_studio.errors import UserError

REACH_TIMEOUT_S = 5.0
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$")


class ClusterError(UserError):
    """The cluster cannot be used: a bad address, unreachable, no Ray, a dead worker..."""


def parse_address(text: object) -> tuple[str, str, int]:
    """(scheme, host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; ClusterError otherwise.

    scheme is "" for a GCS address and "ray://" for Ray Client.
    """
    if not isinstance(text, str) or not text.strip():
        raise ClusterError("give the cluster's address as HOST:PORT (e.g. 10.0.0.5:6379) "
                           "or ray://HOST:PORT")
    raw = text.strip()
    scheme = ""
    if raw.startswith("ray://"):
        scheme, rest = "ray://", raw[len("ray://"):]
    elif "://" in raw:
        raise ClusterError(f"cluster address {raw!r}: use HOST:PORT or ray://HOST:PORT")
    else:
        rest = raw
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit() or len(port_text) > 5:
        raise ClusterError(f"cluster address {raw!r}: expected HOST:PORT, e.g. 10.0.0.5:6379")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ClusterError(f"cluster address {raw!r}: the port must be 1-65535")
    if not _HOST.match(host):
        raise ClusterError(f"cluster address {raw!r}: {host!r} is not a host name or IP address")
    return scheme, host.strip("[]"), port


def check_reachable(text: str, timeout: float = REACH_TIMEOUT_S) -> str:
    """The normalised address once something answers on its port; ClusterError otherwise."""
    scheme, host, port = parse_address(text)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else \
            (e.strerror or str(e))
        raise ClusterError(
            f"cannot reach the Ray cluster at {text.strip()} ({reason}): is `ray start --head` "
            "running there, and is the port open to this computer?") from None
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}{shown}:{port}"


def require_ray() -> None:
    """ClusterError when Ray is not installed (the optional ``cluster`` extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ClusterError("training on a cluster needs Ray: pip install "
                           "'defect-studio[cluster]'") from None
