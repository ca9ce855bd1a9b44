"""Training, sweeps and batch scoring on a Ray cluster (the optional ``cluster`` extra).

Nothing here is used without ``--cluster ADDRESS``: the local subprocess stays the default.
Only this package imports ``ray`` (an import contract in ``.importlinter``), and only inside
functions, so ``defect_studio`` imports without Ray installed.

- ``address``: checking a cluster address and whether it answers (no Ray needed).
- ``bundle``: the run's training data as content-addressed files (sha256) plus a
  snapshot of the project database that names only those files.
- ``worker``: ``TrainWorker``, the object that runs one training job on a cluster node
  (a detached Ray actor); plain Python, also usable without Ray.
- ``client``: the desktop side of ``train --cluster``: connect, ship, start, stream the
  events into the local run folder, cancel, re-attach, fetch the finished run.
- ``info``: ``cluster-info``, the nodes, GPUs and free memory of a cluster.
- ``sweep`` / ``predict``: the mask sweep's levels and batch scoring as parallel Ray tasks.
"""
