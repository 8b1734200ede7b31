"""Wall time and peak memory of each CLI command, two code versions in the same run.

    python benchmarks/stages.py [--rows 100000,1000000] [--before REF] [--after PATH]
        [--only before|after|both] [--commands dedup-fuzzy,...] [--density] [--cache DIR]

Corpus (built once per N, 4 Parquet files in DIR/corpus-N/): distinct PyPI
summaries (../shared/data; joined pairs of them when N needs more), ~8% exact
copies (case and whitespace changed), ~8% near copies (three character edits or
one word swapped); columns `id`, `text`, `family` (label: CRC32 of the first
word mod 20), `planted` (original / exact / near) and `vector`: character
3-grams hashed into 384 buckets with random signs, L2-normalized (no encoder;
similar texts get similar vectors).

Per variant and N, on a fresh store, each command runs as its own process of
that variant's code: init, ingest, dedup --exact / --fuzzy 0.8 / --semantic 0.95,
score prototype / uncertainty (density only with --density and N <= 100k: it is
exact all-pairs), select --keep 0.3 --policy random, export, and `filter` where
that variant's CLI has one. psutil samples the process tree every 0.2 s: peak RSS
of the driver and of the largest Ray worker (`ray::*` / `default_worker.py`, not
Ray's agents), with the kernel's high-water mark (VmHWM) so no peak falls between
samples, and of the whole tree (a sum of sampled RSS; shared pages count per
process). "before" is a git ref (a worktree under /tmp), "after" a folder (the
working tree); both use this interpreter's packages, the code first on PYTHONPATH.

Targets (issue): the driver's peak RSS at 1M is at most 1.2x its peak at 100k for
every stage; no stage slower than before by more than 10% at 100k. Raw results:
DIR/results-<timestamp>.json; "before" results of the same commit from earlier
runs count for the targets too (so 100k and 1M can run separately).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import summaries

ROOT = Path(__file__).resolve().parents[1]
SMALL, LARGE = 100_000, 1_000_000
DIM, FILES, GIB = 384, 4, 2**30
FILE_ROWS, SLICE_ROWS = 1_000_000, 100_000  # rows per source file above 4M; per write
STAGES = (  # noqa: SIM905
    "init ingest dedup-exact dedup-fuzzy dedup-semantic score-prototype score-uncertainty "
    "score-density select export filter"
).split()
INGEST = "--id-column id --text-column text --label-column family --embedding-column vector"


# -- corpus ---------------------------------------------------------------------------------


def _near(text: str, rng: np.random.Generator, vocab: list[str]) -> str:
    words = text.split()
    if len(words) >= 4 and rng.random() < 0.5:
        words[rng.integers(len(words))] = vocab[rng.integers(len(vocab))]
        return " ".join(words)
    chars = list(text)
    for _ in range(3):
        chars[rng.integers(len(chars))] = "abcdefghijklmnopqrstuvwxyz"[rng.integers(26)]
    return "".join(chars)


def _exact(text: str, rng: np.random.Generator) -> str:
    text = [str.upper, str.lower, str.title, str.swapcase][rng.integers(4)](text)
    return "  " + text.replace(" ", " \t ") + " " if rng.random() < 0.5 else text + "   "


def vectors(texts: list[str]) -> pa.Array:
    """Hashed character 3-grams (within words) into 384 signed buckets, L2-normalized."""
    from sklearn.feature_extraction.text import HashingVectorizer

    kw = dict(analyzer="char_wb", ngram_range=(3, 3), alternate_sign=True, norm="l2")
    hv = HashingVectorizer(n_features=DIM, dtype=np.float32, **kw)
    x = hv.transform(texts).toarray()
    x[~x.any(axis=1), 0] = 1.0  # no all-zero vector
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)


def corpus(n: int, cache: Path, seed: int = 0, joined: bool = False) -> list[Path]:
    """N rows in 4 Parquet files (1M rows a file above 4M), written 100k rows at a time, so
    building 10M rows holds the texts but never a dense vector array of a whole file.
    Originals are the distinct summaries, then (past their 746k) two of them joined;
    `joined`: every original is two joined, so texts have the same lengths at every N."""
    out = cache / (f"corpus-joined-{n}" if joined else f"corpus-{n}")
    files = [out / f"part-{i}.parquet" for i in range(max(FILES, -(-n // FILE_ROWS)))]
    if all(f.exists() for f in files):
        return files
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    base = summaries(10**8)
    n_exact = n_near = round(n * 0.08)
    n_orig = n - n_exact - n_near
    originals = [] if joined else base[:n_orig]
    while len(originals) < n_orig:  # more rows than distinct summaries: join two
        i, j = rng.integers(len(base), size=2)
        originals.append(base[i] + " " + base[j])
    vocab = [w for t in base[:5000] for w in t.split()]
    src = rng.integers(n_orig, size=n_exact + n_near)
    texts = originals + [_exact(originals[s], rng) for s in src[:n_exact]]
    texts += [_near(originals[s], rng, vocab) for s in src[n_exact:]]
    planted = np.repeat(["original", "exact", "near"], [n_orig, n_exact, n_near])
    order = rng.permutation(n)
    out.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(order, len(files))):
        writer = None
        for part in np.array_split(rows, max(1, -(-len(rows) // SLICE_ROWS))):
            table = _slice(part, texts, planted)
            if writer is None:
                writer = pq.ParquetWriter(
                    files[i].with_suffix(".tmp"), table.schema, compression="zstd"
                )
            writer.write_table(table)
        assert writer is not None
        writer.close()
        files[i].with_suffix(".tmp").rename(files[i])
    print(f"corpus: {n:,} rows in {time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)
    return files


def _slice(part: np.ndarray, texts: list[str], planted: np.ndarray) -> pa.Table:
    chunk = [texts[k] for k in part]
    family = [f"family-{zlib.crc32(t.split()[0].lower().encode()) % 20:02d}" for t in chunk]
    columns = dict(id=part.astype(np.int64), text=chunk, family=family, planted=planted[part])
    return pa.table(dict(**columns, vector=vectors(chunk)))


# -- variants -------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def prepare(variant: str, spec: str) -> dict:
    """A folder `thresher/` of symlinks to a tree's packages, put first on PYTHONPATH."""
    if variant == "before":
        sha = git("rev-parse", f"{spec}^{{commit}}")
        tree = Path(f"/tmp/thresher-before-{sha[:12]}")
        if not tree.exists():
            git("worktree", "add", "--detach", str(tree), sha)
        label = f"{spec} ({sha[:9]})"
    else:
        tree, sha = Path(spec).resolve(), None
        label = f"{tree} (working tree)"
    imp = Path(f"{tree}-import" if sha else f"/tmp/thresher-after-{zlib.crc32(bytes(tree))}")
    pkg = imp / "thresher"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").touch()
    dirs = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name, folder in dirs["package-dir"].items():  # never removed: another run may use it
        if not (pkg / name.split(".", 1)[1]).is_symlink():
            (pkg / name.split(".", 1)[1]).symlink_to(tree / folder)
    env = dict(os.environ, PYTHONPATH=str(imp), RAY_AUTH_MODE="disabled")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    argv = [sys.executable, "-c", "from thresher.flows.cli import main; main()"]
    check = "import thresher.flows.cli as m; print(m.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not where.startswith(str(imp)):
        sys.exit(f"{variant}: thresher imports from {where}, not {imp}")
    helptext = subprocess.run([*argv, "--help"], env=env, capture_output=True, text=True).stdout
    verbs = {x.split()[0] for x in helptext.split("Commands:")[-1].splitlines() if x.strip()}
    return dict(variant=variant, label=label, sha=sha, env=env, argv=argv, verbs=verbs)


def commands(store: Path, files: list[Path], n: int, v: dict, args) -> list[tuple[str, list]]:
    s = str(store)
    cmds = [
        ("init", ["init", s]),
        ("ingest", ["ingest", s, *map(str, files), *INGEST.split()]),
        ("dedup-exact", ["dedup", s, "--exact"]),
        ("dedup-fuzzy", ["dedup", s, "--fuzzy", "0.8"]),
        ("dedup-semantic", ["dedup", s, "--semantic", "0.95", "--model", "vector"]),
        ("score-prototype", ["score", s, "--metrics", "prototype", "--model", "vector"]),
        ("score-uncertainty", ["score", s, "--metrics", "uncertainty", "--model", "vector"]),
        ("score-density", ["score", s, "--metrics", "density", "--model", "vector"]),
        ("select", ["select", s, "small", "--keep", "0.3", "--policy", "random"]),
        ("export", ["export", s, "small", str(store.parent / "export")]),
        ("filter", ["filter", s]),
    ]
    wanted = set(args.commands.split(",")) if args.commands else set(STAGES)
    keep = []
    for name, cli in cmds:
        if name == "score-density" and not (args.density and n <= SMALL):
            continue
        if name == "filter" and "filter" not in v["verbs"]:
            continue
        if name in ("init", "ingest") or name in wanted:
            keep.append((name, cli))
    return keep


# -- measuring ------------------------------------------------------------------------------


def hwm(p: psutil.Process) -> int:
    """The kernel's peak RSS of a live process (VmHWM), so no peak falls between samples."""
    try:
        with open(f"/proc/{p.pid}/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def measure(argv: list[str], env: dict, cwd: Path, log: Path, timeout: float) -> dict:
    peak = {"driver": 0, "worker": 0, "tree": 0}
    seen: dict[int, psutil.Process] = {}
    workers: set[int] = set()
    stop = threading.Event()
    t0 = time.perf_counter()
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        root = psutil.Process(proc.pid)

        def sample() -> None:
            while not stop.is_set():
                try:
                    rss = root.memory_info().rss
                    kids = root.children(recursive=True)
                except psutil.Error:
                    return
                peak["driver"], total = max(peak["driver"], rss, hwm(root)), rss
                for k in kids:
                    try:
                        rss = k.memory_info().rss
                        seen.setdefault(k.pid, k)
                        if k.pid not in workers:
                            cmd = " ".join(k.cmdline())
                            if ("ray::" in cmd or "default_worker.py" in cmd) and not any(
                                a in cmd for a in ("DashboardAgent", "RuntimeEnvAgent")
                            ):
                                workers.add(k.pid)
                    except psutil.Error:
                        continue
                    total += rss
                    if k.pid in workers:
                        peak["worker"] = max(peak["worker"], rss, hwm(k))
                peak["tree"] = max(peak["tree"], total)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join()
        if rc is None:  # kill the tree: only processes this command started (pid + start time)
            alive = [root, *seen.values()]
        else:  # Ray's processes outliving the driver get 10 s to go
            alive = psutil.wait_procs(list(seen.values()), timeout=10)[1]
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait()
    stderr = log.with_suffix(".err").read_text(errors="replace")
    lines = [x for x in stderr.splitlines() if x.strip()]
    error = f"rc {rc}: {lines[-1].strip() if lines else '(no stderr)'}" if rc else None
    if rc is None:
        error = f"timeout after {timeout:.0f} s"
    gib = {f"{k}_gib": val / GIB for k, val in peak.items()}
    return dict(seconds=seconds, rc=rc, error=error, workers=len(workers), **gib)


def run_variant(v: dict, n: int, files: list[Path], work: Path, args) -> list[dict]:
    base = work / f"{v['variant']}-{n}"
    shutil.rmtree(base, ignore_errors=True)
    (base / "logs").mkdir(parents=True)
    env = {**v["env"], "PREFECT_HOME": str(base / "prefect")}
    results = []
    for name, cli in commands(base / "store", files, n, v, args):
        print(f"[{v['variant']} {n:,}] {name} ...", end=" ", file=sys.stderr, flush=True)
        r = measure([*v["argv"], *cli], env, base, base / "logs" / name, args.timeout)
        print(
            f"{r['seconds']:.1f} s, driver {r['driver_gib']:.2f} GiB, worker "
            f"{r['worker_gib']:.2f} GiB" + (f"  FAILED {r['error']}" if r["error"] else ""),
            file=sys.stderr,
            flush=True,
        )
        about = {k: v[k] for k in ("variant", "label", "sha")}
        results.append(dict(**about, rows=n, command=name, argv=cli, **r))
    if not args.keep_stores:
        shutil.rmtree(base / "store", ignore_errors=True)
        shutil.rmtree(base / "export", ignore_errors=True)
        shutil.rmtree(base / "prefect", ignore_errors=True)
    return results


# -- reporting ------------------------------------------------------------------------------


def table(n: int, results: list[dict], variants: list[dict]) -> list[str]:
    got = {(r["variant"], r["command"]): r for r in results if r["rows"] == n}
    names = [v["variant"] for v in variants]
    cols = ("s", "driver GiB", "worker GiB", "tree GiB")
    head = ["command"] + [f"{v} {c}" for v in names for c in cols]
    head += ["after/before time"] * (len(names) == 2)
    rows = []
    for stage in STAGES:
        if not any((v, stage) in got for v in names):
            continue
        cells = [stage]
        for v in names:
            r = got.get((v, stage))
            if r is None:
                cells += ["-"] * 4
            elif r["error"]:
                failed = "FAILED " + r["error"][:90].replace("|", "/")
                cells += [f"{r['seconds']:.1f}", failed, "-", "-"]
            else:
                cells += [f"{r['seconds']:.1f}"]
                cells += [f"{r[f'{k}_gib']:.2f}" for k in ("driver", "worker", "tree")]
        if len(names) == 2:
            a, b = got.get(("after", stage)), got.get(("before", stage))
            ok = a and b and not a["error"] and not b["error"]
            cells.append(f"{a['seconds'] / b['seconds']:.2f}" if ok else "-")
        rows.append(cells)
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    pad = [str.ljust] + [str.rjust] * (len(head) - 1)
    rows = [[f(c, x) for f, c, x in zip(pad, r, w, strict=True)] for r in [head, *rows]]
    rule = "|" + "|".join("-" * (x + 2) for x in w) + "|"
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    return [lines[0], rule, *lines[1:]]


def targets(results: list[dict], earlier: list[dict]) -> list[str]:
    """Scaling per variant (earlier "before" runs of the same commit fill gaps), speed at 100k."""
    best: dict = {}
    for r in [*earlier, *results]:
        if not r["error"]:
            best[(r["variant"], r["rows"], r["command"])] = r
    lines = ["targets: driver peak at 1M <= 1.2x its peak at 100k; after time <= 1.1x before "]
    lines[0] += "time at 100k\n"
    for stage in STAGES:
        parts = []
        for v in ("before", "after"):
            s, big = best.get((v, SMALL, stage)), best.get((v, LARGE, stage))
            if s and big:
                ratio = big["driver_gib"] / s["driver_gib"]
                parts.append(
                    f"{v} driver 1M/100k {big['driver_gib']:.2f}/{s['driver_gib']:.2f} GiB "
                    f"= {ratio:.2f}x ({'met' if ratio <= 1.2 else 'MISSED'})"
                )
        b, a = best.get(("before", SMALL, stage)), best.get(("after", SMALL, stage))
        if a and b:
            ratio = a["seconds"] / b["seconds"]
            parts.append(
                f"time after/before at 100k {ratio:.2f}x ({'met' if ratio <= 1.1 else 'MISSED'})"
            )
        if parts:
            lines.append(f"- {stage}: " + "; ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--before", default="HEAD", help="git ref [HEAD]")
    parser.add_argument("--after", default=str(ROOT), help="folder [the working tree]")
    parser.add_argument("--only", choices=["before", "after", "both"], default="both")
    where = "corpora, stores while running, logs, results JSON [bench-stages]"
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-stages", help=where)
    parser.add_argument("--commands", help=f"subset of {','.join(STAGES[2:])} (+init, ingest)")
    parser.add_argument("--density", action="store_true", help="score density too (N <= 100k)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per command [7200]")
    parser.add_argument("--keep-stores", action="store_true", help="keep stores after the run")
    args = parser.parse_args()
    ns = [int(x) for x in args.rows.split(",")]
    cache = args.cache.resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    spec = {"before": args.before, "after": args.after}
    variants = [prepare(v, spec[v]) for v in ("before", "after") if args.only in (v, "both")]
    earlier = [
        r
        for f in sorted(cache.glob("results-*.json"))
        for r in json.loads(f.read_text())["results"]
        if r["variant"] == "before" and any(r["sha"] == v["sha"] for v in variants)
    ]
    results: list[dict] = []
    out = cache / f"results-{stamp}.json"
    for n in ns:
        files = corpus(n, cache)
        for v in variants:
            results += run_variant(v, n, files, cache / f"run-{stamp}", args)
            labels = {v["variant"]: v["label"] for v in variants}
            out.write_text(json.dumps({"variants": labels, "results": results}, indent=1))
        print(
            f"\nstages: {n:,} rows; "
            + "; ".join(f"{v['variant']} = {v['label']}" for v in variants)
            + "\n"
        )
        print("\n".join(table(n, results, variants)), flush=True)
    print("\n" + "\n".join(targets(results, earlier)))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
