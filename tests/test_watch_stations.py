"""Several watch stations on one inbox, each part scored once; stale claims taken over;
SIGTERM at random moments; --move-to on a full disk. Real watcher processes, a hand-made
ONNX package (tests/deploy_support.py: no torch, no training) and tiny images."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_support import read_jsonl, tiny_package, tiny_score

from defect_studio.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return tiny_package(tmp_path_factory.mktemp("pkg") / "tiny")


def _parts(folder: Path, names, seed=0) -> dict[str, np.ndarray]:
    """Distinct 32x32 gray PNGs, each written under a temporary name and renamed in."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        img = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        tmp = folder / f".{name}.tmp"
        ok, data = cv2.imencode(".png", img)
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, folder / name)
        out[name] = img
    return out


def _station(inbox, package, out, name, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "tests"))
    cmd = [sys.executable, "-m", "defect_studio", "watch", str(inbox), "--model",
           str(package), "--out", str(out), "--settle", "0.1", "--lease", "2",
           "--rescan", "0.5", "--threads", "1", "--station", name, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait(check, timeout, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        for p in procs:
            if p.poll() is not None and p.returncode not in (0, -9):
                raise AssertionError(f"a station ended with {p.returncode}: "
                                     f"{p.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the stations")


def test_three_stations_score_each_part_once_across_a_kill(package, tmp_path):
    """3 stations, 300 parts, kill -9 of one station while it scores: every part scored
    once, none lost, all in one results.jsonl, each moved once into --move-to."""
    inbox, out, done = tmp_path / "inbox", tmp_path / "out", tmp_path / "done"
    inbox.mkdir()
    names = [f"p{i:03d}.png" for i in range(300)]
    images = _parts(inbox, names[:240])
    procs = [_station(inbox, package, out, f"s{i}", "--move-to", str(done)) for i in range(3)]
    results = out / "results.jsonl"
    try:
        _wait(lambda: len(read_jsonl(results)) >= 60, 40, procs)
        victim = procs[random.Random(7).randrange(3)]
        victim.kill()  # kill -9, wherever it is: claiming, scoring, copying, appending
        victim.wait()
        images.update(_parts(inbox, names[240:], seed=1))  # more parts after the kill
        _wait(lambda: len(read_jsonl(results)) + len(read_jsonl(out / "rejected.jsonl")) >= 300, 40,
              procs)
        time.sleep(1.0)  # more polls and rescans of the survivors: nothing scored twice
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=20) for p in procs]
    logs = "".join(p.stderr.read() for p in procs)
    assert sorted(codes) == [-9, 0, 0], logs[-3000:]
    rows = read_jsonl(results)
    assert read_jsonl(out / "rejected.jsonl") == []
    scored = sorted(Path(r["file"]).name for r in rows)
    assert scored == names, "a part was scored twice or never"
    assert len({r["key"] for r in rows}) == 300
    assert {r["station"] for r in rows} <= {"s0", "s1", "s2"} and len({r["station"]
                                                                       for r in rows}) >= 2
    for r in rows[::37]:
        assert abs(r["score"] - tiny_score(images[Path(r["file"]).name])) < 1e-4
    # every part moved once, under its own name, and none is left in the inbox
    assert sorted(p.name for p in done.iterdir() if not p.name.startswith(".")) == names
    assert [p.name for p in inbox.iterdir() if not p.name.startswith(".")] == []
    for name in names[::50]:
        assert cv2.imread(str(done / name), cv2.IMREAD_UNCHANGED).tobytes() == \
            images[name].tobytes()
    # no claim is left, except (rarely) the killed station's, when it died after moving its
    # part out and before removing its claim: the next start's prune removes that one
    left_claims = [p for p in (inbox / ".ds-claims").iterdir() if p.suffix == ".claim"]
    assert len(left_claims) <= 1
    # the killed station's heartbeat stays until it is a day old, then a start removes it
    from defect_studio.deploy.claim import Claims

    beats = list((inbox / ".ds-claims" / "stations").iterdir())
    assert len(beats) == 1 and beats[0].name.startswith(f"s{procs.index(victim)}~")
    os.utime(beats[0], (time.time() - 2 * 86400,) * 2)
    cleaner = Claims(inbox, "cleaner")
    cleaner.prune()
    assert not [p for p in (inbox / ".ds-claims").iterdir() if p.suffix == ".claim"]
    left = [p.name for p in (inbox / ".ds-claims" / "stations").iterdir()]
    assert len(left) == 1 and left[0].startswith("cleaner~")
    cleaner.close()



def _dead_owner_claim(inbox: Path, part: Path, generation: int, host="other-pc:1") -> Path:
    """A claim left by a station of another host that died (its heartbeat never changes)."""
    from defect_studio.deploy.claim import CLAIM_DIR, Claims

    claims = inbox / CLAIM_DIR
    (claims / "stations").mkdir(parents=True, exist_ok=True)
    (claims / "stations" / "dead~1.alive").write_text("7 4242\n")
    h = Claims.digest(part, part.stat())
    for n in range(1, generation + 1):
        (claims / f"{h}.{n}.claim").write_text(json.dumps(
            {"station": "dead", "instance": "dead~1", "host": host, "pid": 4242}))
    return claims / f"{h}.{generation}.claim"


def _scan(w) -> None:
    """One look at the inbox: list it, note the files, handle those that are still."""
    w._rescan()
    w.scan_once()
    w.scan_once()


def test_claims_of_a_dead_station_are_taken_over_and_a_crashing_part_given_up(package,
                                                                              tmp_path):
    from defect_studio.deploy import load_package
    from defect_studio.deploy.claim import Claims
    from defect_studio.deploy.watch import Watcher

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    _parts(inbox, ["a.png", "b.png", "c.png"])
    _dead_owner_claim(inbox, inbox / "a.png", 1)  # another PC died while scoring a.png
    _dead_owner_claim(inbox, inbox / "b.png", 2)  # b.png was taken over once and killed again
    # c.png is held by a live station of this host (its heartbeat moves): never taken
    live = Claims(inbox, "alive", lease_s=0.6)
    live.start_heartbeat()
    held = live.claim(inbox / "c.png", (inbox / "c.png").stat())
    assert held is not None and held.tries == 1
    w = Watcher(inbox, load_package(package, num_threads=1), out, settle_s=0.0, poll_s=0.02,
                station="me", lease_s=0.6)
    _scan(w)
    assert read_jsonl(out / "results.jsonl") == []  # the dead owners' leases are not over yet
    time.sleep(0.8)
    _scan(w)
    live.close()
    rows = {Path(r["file"]).name: r for r in read_jsonl(out / "results.jsonl")}
    rejected = {Path(r["file"]).name: r for r in read_jsonl(out / "rejected.jsonl")}
    assert sorted(rows) == ["a.png"] and rows["a.png"]["station"] == "me"
    assert sorted(rejected) == ["b.png"] and "stopped 2 times" in rejected["b.png"]["error"]
    # the held part stayed with its owner; the others are done and keep no claim files
    assert w.claims.claim(inbox / "c.png", (inbox / "c.png").stat()) is None
    names = sorted(p.name for p in (inbox / ".ds-claims").iterdir())
    assert sum(n.endswith(".done") for n in names) == 2
    assert [n for n in names if n.endswith(".claim")] == [held.marker_name]
    # a restart of this host's station after kill -9: its pid is gone, taken over at once
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (inbox / ".ds-claims" / held.marker_name).write_text(json.dumps(
        {"station": "me", "instance": "me~old", "host": w.claims.host, "pid": gone.pid}))
    w._seen.clear()
    _scan(w)
    assert [Path(r["file"]).name for r in read_jsonl(out / "results.jsonl")] == ["a.png", "c.png"]


def test_watch_stops_on_sigterm_at_random_moments(package, tmp_path):
    """SIGTERM (once, twice, three times) at random moments: while one station starts,
    while the others score a stream of parts or sit idle; each stops within seconds,
    every time, and cleanly once its handler is in place."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    rng = random.Random(11)
    procs = [_station(inbox, package, out, f"t{i}") for i in range(4)]
    beats = inbox / ".ds-claims" / "stations"

    def ready(i):  # its Watcher exists: the handler is installed a moment later
        return beats.is_dir() and any(beats.glob(f"t{i}~*.alive"))

    plan = {0: (0.0, 1)}  # station 0: SIGTERM while it starts up
    plan.update({i: (rng.uniform(0.3, 2.5), rng.randint(1, 3)) for i in (1, 2, 3)})
    since: dict[int, float] = {}
    stopped_at: dict[int, float] = {}
    feed = 0
    deadline = time.monotonic() + 30
    while len(stopped_at) < 4 and time.monotonic() < deadline:
        _parts(inbox, [f"f{feed:04d}.png"], seed=feed)  # a part every ~20 ms
        feed += 1
        time.sleep(0.02)
        for i, (delay, times) in plan.items():
            if i in stopped_at:
                continue
            if i not in since and (i == 0 or ready(i)):
                since[i] = time.monotonic()
            if i in since and time.monotonic() - since[i] >= delay:
                for _ in range(times):
                    procs[i].send_signal(signal.SIGTERM)
                    time.sleep(rng.uniform(0, 0.05))
                stopped_at[i] = time.monotonic()
    codes = {}
    for i, p in enumerate(procs):
        try:
            codes[i] = p.wait(timeout=max(1.0, 8.0 - (time.monotonic() - stopped_at.get(i, 0))))
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"station {i} ignored SIGTERM: "
                                 f"{p.stderr.read()[-2000:]}") from None
        err = p.stderr.read()
        # before its handler is installed SIGTERM ends it the default way; after: cleanly
        assert codes[i] in (0, -signal.SIGTERM), err[-2000:]
        if codes[i] == 0:
            assert "stopped:" in err
    assert len(stopped_at) == 4
    assert codes[1] == codes[2] == codes[3] == 0, (codes, plan)
    keys = [r["key"] for r in read_jsonl(out / "results.jsonl")]
    assert len(keys) == len(set(keys)) > 0


def test_move_to_on_a_full_disk_leaves_the_original(package, tmp_path, monkeypatch):
    """A copy into --move-to that fails (ENOSPC at the first or the last byte) leaves the
    part in the inbox, no file under a real name in --move-to, and a warning; once there is
    room again the next start moves it without scoring it again."""
    import builtins

    from defect_studio.deploy import load_package
    from defect_studio.deploy.watch import Watcher

    inbox, out, done = tmp_path / "inbox", tmp_path / "out", tmp_path / "done"
    inbox.mkdir()
    _parts(inbox, ["a.png", "b.png"])
    real_open = builtins.open
    state = {"written": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            if state["written"] == 0:  # a.png: the disk fills after a few bytes
                self.f.write(data[:7])
            state["written"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return self.f.__exit__(*a)

    def full_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if str(file).startswith(str(done)) and "w" in mode:
            return FullDisk(f)
        return f

    w = Watcher(inbox, load_package(package, num_threads=1), out, done, settle_s=0.0,
                poll_s=0.02)
    monkeypatch.setattr(builtins, "open", full_open)
    _scan(w)
    monkeypatch.setattr(builtins, "open", real_open)
    assert state["written"] == 2
    assert sorted(p.name for p in inbox.iterdir() if p.suffix == ".png") == ["a.png", "b.png"]
    assert list(done.iterdir()) == []  # not even the hidden temporary copy
    assert len(read_jsonl(out / "results.jsonl")) == 2
    w.claims.close()
    w2 = Watcher(inbox, load_package(package, num_threads=1), out, done, settle_s=0.0)
    _scan(w2)
    w2.claims.close()
    assert len(read_jsonl(out / "results.jsonl")) == 2  # moved, not scored again
    assert sorted(p.name for p in done.iterdir()) == ["a.png", "b.png"]
    assert [p.name for p in inbox.iterdir() if p.suffix == ".png"] == []


def test_watch_arguments_are_bounded_and_read_only_out_found_at_start(package, tmp_path,
                                                                        capsys, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    base = ["watch", str(inbox), "--model", str(package), "--out", str(tmp_path / "o")]
    for extra, said in ((["--threads", "100000"], "--threads must be between 1 and 256"),
                        (["--threads", "0"], "--threads must be between 1 and 256"),
                        (["--lease", "nan"], "--lease must be between"),
                        (["--lease", "-5"], "--lease must be between"),
                        (["--rescan", "1e9"], "--rescan must be between"),
                        (["--station", "../x"], "--station '../x'"),
                        (["--station", "a" * 65], "--station"),
                        (["--threshold", "-5"], "threshold must be between 0 and 1")):
        t = time.monotonic()
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err and time.monotonic() - t < 5
    # a read-only --out (a share mounted read-only; root writes anywhere, so the file
    # system's answer is simulated) is refused at start, before any part is taken
    import builtins

    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = builtins.open

    def ro_open(file, mode="r", *a, **k):
        if str(file).startswith(str(ro)) and set(mode) & set("wax+"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(file, mode, *a, **k)

    _parts(inbox, ["x.png"])
    monkeypatch.setattr(builtins, "open", ro_open)
    assert main(["watch", str(inbox), "--model", str(package), "--out", str(ro)]) == 2
    monkeypatch.setattr(builtins, "open", real_open)
    err = capsys.readouterr().err
    assert "cannot write into --out" in err and "Read-only file system" in err
    assert (inbox / "x.png").is_file() and not (inbox / ".ds-claims").exists()


def test_idle_watcher_beside_scored_parts_does_no_work(package, tmp_path, monkeypatch):
    """A watcher beside parts it has scored (no --move-to: they stay in the inbox) only
    lists the folder when it rescans: no path resolving, no hashing, no claims per file
    (11.5 % of a core beside 20,000 files before; benchmarks/watch_idle.py)."""
    from defect_studio.deploy import load_package, watch
    from defect_studio.deploy.watch import Watcher

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    _parts(inbox, [f"p{i:03d}.png" for i in range(60)])
    w = Watcher(inbox, load_package(package, num_threads=1), out, settle_s=0.0, poll_s=0.02)
    _scan(w)
    assert len(read_jsonl(out / "results.jsonl")) == 60
    calls = {"resolve": 0, "key": 0, "claim": 0}
    real_resolve, real_key, real_claim = Path.resolve, watch._file_key, w.claims.claim

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(Path, "resolve", counting("resolve", real_resolve))
    monkeypatch.setattr(watch, "_file_key", counting("key", real_key))
    monkeypatch.setattr(w.claims, "claim", counting("claim", real_claim))
    for _ in range(3):
        _scan(w)
    assert calls == {"resolve": 0, "key": 0, "claim": 0} and not w._pending
    _parts(inbox, ["new.png"], seed=5)  # a new part is still found at the next rescan
    _scan(w)
    assert calls["key"] == 1 and len(read_jsonl(out / "results.jsonl")) == 61
    import shutil

    shutil.rmtree(inbox / ".ds-claims")  # someone cleans the inbox: the claims are made again
    _parts(inbox, ["new2.png"], seed=6)
    _scan(w)
    assert len(read_jsonl(out / "results.jsonl")) == 62
    w.claims.close()
