"""The command-line side of the cluster: ``train --cluster`` / re-attach, ``cluster-info``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from defect_studio.cluster.address import ClusterError
from defect_studio.errors import CancelledError

EXIT_CANCELLED = 3
LOCAL = None  # train_cluster's answer "go on with the local resume"


def wants_cluster(args: argparse.Namespace) -> bool:
    """Whether `train` goes through the cluster: --cluster, or --resume of a run whose
    cluster job may still live (it re-attaches)."""
    if getattr(args, "cluster", None):
        return True
    if args.resume:
        from defect_studio.cluster.client import read_record
        from defect_studio.project.runs import valid_run_id

        if valid_run_id(str(args.resume)):
            record = read_record(Path(args.project) / "runs" / str(args.resume))
            return record is not None and record.get("state") != "done"
    return False


def train_cluster(args: argparse.Namespace, config: Any, run_id: str | None, sink: Any,
                  stop: Any) -> int | None:
    """`train` with --cluster or a re-attach; exit code, or LOCAL to resume locally."""
    from defect_studio.cluster.client import attach, read_record, train_on_cluster

    try:
        if args.resume:
            record = read_record(Path(args.project) / "runs" / str(args.resume))
            if record is not None and record.get("state") != "done":
                print(f"run {args.resume} trains on the cluster at {record['address']}: "
                      "following it again", file=sys.stderr, flush=True)
                if attach(args.project, args.resume, on_event=sink, should_stop=stop):
                    return 0
                print(f"the cluster job of run {args.resume} no longer exists; continuing from "
                      "its last checkpoint", file=sys.stderr, flush=True)
                if not args.cluster:
                    return LOCAL
        train_on_cluster(args.project, config, address=args.cluster, run_id=run_id,
                         resume=bool(args.resume), gpus=getattr(args, "gpus", None),
                         on_event=sink, should_stop=stop)
        return 0
    except CancelledError as e:
        print(str(e), file=sys.stderr, flush=True)
        return EXIT_CANCELLED
    except ClusterError as e:
        if args.events:  # the GUI shows the error event's message
            sink({"event": "error", "message": str(e), "kind": "ClusterError"})
        raise


def attach_run(args: argparse.Namespace, sink: Any, stop: Any) -> int:
    """`train --attach RUN`: follow the run's cluster job again; exit 0 when its result is
    here, 3 when it was cancelled; ClusterError (exit 2) when unreachable or lost."""
    from defect_studio.cluster.client import follow_again

    try:
        follow_again(args.project, args.attach, on_event=sink, should_stop=stop)
        return 0
    except CancelledError as e:
        print(str(e), file=sys.stderr, flush=True)
        return EXIT_CANCELLED
    except ClusterError as e:
        if args.events:
            sink({"event": "error", "message": str(e), "kind": "ClusterError"})
        raise


def cluster_info(address: str) -> dict:
    """Nodes, CPUs, GPUs and free memory of the cluster at ``address``."""
    from defect_studio.cluster.client import connect

    normalised = connect(address)
    import ray

    try:
        nodes = []
        for n in ray.nodes():
            if not n.get("Alive"):
                continue
            res = n.get("Resources") or {}
            nodes.append({"host": n.get("NodeManagerHostname") or n.get("NodeManagerAddress"),
                          "address": n.get("NodeManagerAddress"), "cpus": res.get("CPU", 0),
                          "gpus": res.get("GPU", 0), "memory_gb": res.get("memory", 0) / 1e9})
        total, free = ray.cluster_resources(), ray.available_resources()
        return {"address": normalised, "ray": ray.__version__, "nodes": nodes,
                "cpus": total.get("CPU", 0), "gpus": total.get("GPU", 0),
                "free_cpus": free.get("CPU", 0), "free_gpus": free.get("GPU", 0),
                "free_memory_gb": free.get("memory", 0) / 1e9,
                "memory_gb": total.get("memory", 0) / 1e9}
    finally:
        ray.shutdown()


def describe(info: dict) -> str:
    """cluster_info as a few readable lines."""
    lines = [f"Ray cluster at {info['address']} (Ray {info['ray']}): {len(info['nodes'])} "
             f"node(s), {info['cpus']:g} CPUs ({info['free_cpus']:g} free), {info['gpus']:g} "
             f"GPUs ({info['free_gpus']:g} free), {info['free_memory_gb']:.1f} of "
             f"{info['memory_gb']:.1f} GB memory free"]
    for n in info["nodes"]:
        lines.append(f"  {n['host']} ({n['address']}): {n['cpus']:g} CPUs, {n['gpus']:g} GPUs, "
                     f"{n['memory_gb']:.1f} GB")
    return "\n".join(lines)


def cmd_cluster_info(args: argparse.Namespace) -> int:
    """Handler of `defect-studio cluster-info ADDRESS`."""
    info = cluster_info(args.address)
    print(json.dumps(info) if args.json else describe(info))
    return 0
