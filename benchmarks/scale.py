"""Scale: every command at N rows on one machine, and datatrove's MinHash dedup at the same N.

    python benchmarks/scale.py [--rows 100000,1000000] [--datatrove auto|on|off]
        [--stop-after COMMAND] [--cache DIR] [--keep-stores]

Corpus: stages.py's (PyPI summaries, ~8% exact and ~8% near copies, hashed character
3-gram 384-d vectors) with every original two summaries joined (`joined`: the same text
lengths at every N, so a stage's growth from 1M to 10M is the growth with N; with the
746k distinct summaries alone, 10M texts were 1.7x as long as 1M texts), cached in
DIR/corpus-joined-N. On a fresh store, each command runs as
its own process of the working tree's code (stages.prepare): init, ingest, dedup
--exact / --fuzzy 0.8 / --semantic 0.95, score prototype,density, select --keep 0.3,
export. Per command: seconds, rows in / s (rows_in of its run in the `runs` table),
the driver's peak RSS, the largest Ray worker's (stages.measure, with VmHWM), the
largest single process of the tree (any process: raylet, DuckDB task, ...), the
largest private memory of one process (RssAnon, sampled: RSS also counts the pages of
the memory-mapped vector index a task has read, which are the kernel's page cache), and
the tree's peak PSS (shared pages split between the processes sharing them; sampled
every 0.5 s) next to stages.measure's RSS sum.

Datatrove (default for N <= 1M): the texts exact dedup kept (the same rows thresher's
fuzzy pass reads), as 2 Parquet files, through datatrove's MinHash pipeline on the
LocalPipelineExecutor (2 workers): signatures (2 tasks), buckets (one task per band),
cluster (1 task), filter (2 tasks, no writer), with thresher's bands x rows at 0.8
and character 5-grams (a tokenizer that returns characters; text normalized to lower
case and single spaces, as thresher does; punctuation and digits kept; its default
64-bit xxhash, the str encoded first: datatrove 0.10.1 calls xxhash<4's str API). Removed
documents are counted from its .remove files; thresher's from `duplicates`.

Targets (issue): 10M completes; no process above 4 GiB at 10M; each stage's time at
10M <= 12x its time at 1M; thresher's fuzzy rows/s >= 2x datatrove's at <= 1.5x its
tree PSS. Raw results: DIR/scale-results-<stamp>.json; earlier results of the same
code (HEAD + a hash of the uncommitted package changes) fill in the other N.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from stages import GIB, INGEST, ROOT, corpus, git, hwm, measure, prepare, tomllib

COMMANDS = ["init", "ingest", "dedup-exact", "dedup-fuzzy", "dedup-semantic", "score"]
COMMANDS += ["select", "export"]
DT = "datatrove-minhash"
MID, BIG, MAX_PROC, MAX_GROWTH = 1_000_000, 10_000_000, 4.0, 12.0


def code_key() -> str:
    """HEAD plus a hash of uncommitted changes in the package folders (untracked files too)."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = list(dirs["package-dir"].values())
    blob = git("diff", "HEAD", "--", *dirs)
    for f in git("ls-files", "--others", "--exclude-standard", "--", *dirs).split():
        blob += f + (ROOT / f).read_text(errors="replace")
    head = git("rev-parse", "HEAD")[:12]
    return f"{head}+{zlib.crc32(blob.encode()):08x}" if blob else head


def short(cmd: list[str]) -> str:
    """`ray::task`, `raylet`, `agent.py`, `python -c from thresher...`: the program, not paths."""
    words = " ".join(cmd).split(" --")[0].split()
    return " ".join(w.rsplit("/", 1)[-1] if w.startswith("/") else w for w in words)[:60]


class Tree(threading.Thread):
    """Every process under this one: peak PSS sum, each process's peak RSS (VmHWM) and its
    peak private memory (RssAnon, sampled): RSS also counts the pages of files a process
    maps (the vector index parts), which the kernel drops under pressure; RssAnon is what
    it holds."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop, self.pss, self.procs = threading.Event(), 0, {}  # pid -> [name, peak, root]
        self.anon: dict[int, list] = {}  # pid -> [name, peak RssAnon]
        self.at_peak: list[tuple[int, str]] = []  # (PSS, name) per process at the PSS peak

    def run(self) -> None:
        me = psutil.Process()
        mine = me.cmdline()
        while not self.stop.is_set():
            roots, now = {p.pid for p in me.children()}, []
            for p in me.children(recursive=True):
                try:
                    if (cmd := p.cmdline()) == mine:  # forked, not yet exec'd
                        continue
                    now.append((p.memory_full_info().pss, name := short(cmd)))
                    peak = max(p.memory_info().rss, hwm(p))
                    anon = rss_anon(p.pid)
                except psutil.Error:
                    continue
                if anon > self.anon.get(p.pid, ["", 0])[1]:
                    self.anon[p.pid] = [name, anon]
                old = self.procs.get(p.pid)
                if old is None or peak > old[1]:
                    self.procs[p.pid] = [name, peak, p.pid in roots]
            if sum(x for x, _ in now) > self.pss:
                self.pss, self.at_peak = sum(x for x, _ in now), sorted(now, reverse=True)
            self.stop.wait(0.5)


def run_one(argv: list[str], env: dict, cwd: Path, log: Path, timeout: float) -> dict:
    tree = Tree()
    tree.start()
    r = measure(argv, env, cwd, log, timeout)
    tree.stop.set()
    tree.join()
    top = max(tree.procs.values(), key=lambda x: x[1], default=["-", 0, True])
    if r["driver_gib"] * GIB >= top[1]:  # measure samples the driver more often
        top = ["driver", r["driver_gib"] * GIB, True]
    child = max((x[1] for x in tree.procs.values() if not x[2]), default=0)
    by_process = [(name, x / GIB) for x, name in tree.at_peak]
    gib = dict(pss_gib=tree.pss / GIB, top_gib=top[1] / GIB, child_gib=child / GIB)
    anon = max(tree.anon.values(), key=lambda x: x[1], default=["-", 0])
    gib.update(anon_gib=anon[1] / GIB)
    return dict(r, **gib, top=top[0], anon_top=anon[0], pss_by_process=by_process)


def rss_anon(pid: int) -> int:
    """A live process's private memory now (RssAnon: its heap, not the files it maps)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("RssAnon:"))
    except (OSError, StopIteration):
        return 0


def sql(v: dict, env: dict, store: Path, query: str, *extra: str) -> list[dict]:
    fmt = list(extra) or ["--format", "csv"]
    argv = [*v["argv"], "sql", str(store), query, *fmt]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return [] if extra else list(csv.DictReader(io.StringIO(out)))


def run_n(n: int, v: dict, files: list[Path], work: Path, args, code: str) -> list[dict]:
    base = work / f"scale-{n}"
    shutil.rmtree(base, ignore_errors=True)
    (base / "logs").mkdir(parents=True)
    env = {**v["env"], "PREFECT_HOME": str(base / "prefect")}
    store, s = base / "store", str(base / "store")
    cmds = {
        "init": ["init", s],
        "ingest": ["ingest", s, *map(str, files), *INGEST.split()],
        "dedup-exact": ["dedup", s, "--exact"],
        "dedup-fuzzy": ["dedup", s, "--fuzzy", "0.8"],
        "dedup-semantic": ["dedup", s, "--semantic", "0.95", "--model", "vector"],
        "score": ["score", s, "--metrics", "prototype,density", "--model", "vector"],
        "select": ["select", s, "small", "--keep", "0.3"],
        "export": ["export", s, "small", str(base / "export")],
    }
    results: list[dict] = []

    def record(name: str, argv: list[str], cwd: Path = base, **extra) -> dict:
        print(f"[{n:,}] {name} ...", end=" ", file=sys.stderr, flush=True)
        r = run_one(argv, env, cwd, base / "logs" / name, args.timeout)
        print(
            f"{r['seconds']:.1f} s, driver {r['driver_gib']:.2f}, top {r['top_gib']:.2f} GiB, "
            f"PSS {r['pss_gib']:.2f} GiB" + (f"  FAILED {r['error']}" if r["error"] else ""),
            file=sys.stderr,
            flush=True,
        )
        results.append(
            dict(rows=n, command=name, code=code, corpus="joined", argv=argv, **r, **extra)
        )
        return results[-1]

    for name, cli in cmds.items():
        r = record(name, [*v["argv"], *cli])
        if r["error"] or name == args.stop_after:
            break  # later commands need this one's output
        if name == "dedup-exact" and (
            args.datatrove == "on" or (args.datatrove == "auto" and n <= MID)
        ):
            run_datatrove(v, env, base, record)
    if (store / "catalog.duckdb").exists():
        runs: dict[str, list[dict]] = {}  # flow -> its runs in order
        for run in sql(v, env, store, "SELECT flow, rows_in, rows_kept FROM runs ORDER BY run_id"):
            runs.setdefault(run["flow"], []).append(run)
        dups = sql(v, env, store, "SELECT method, count(*) AS n FROM duplicates GROUP BY method")
        removed = {d["method"]: int(d["n"]) for d in dups}
        kept = None
        for r in results:
            flow = r["command"].split("-")[0]
            if flow in ("ingest", "dedup", "score", "select") and runs.get(flow):
                run = runs[flow].pop(0)
                r["rows_in"], kept = int(run["rows_in"]), int(run["rows_kept"])
            elif flow == "export":  # records no run: it writes what select kept
                r["rows_in"] = kept
        for r in results:
            r["removed"] = r.get("removed", removed.get(r["command"].removeprefix("dedup-")))
            if r["command"] == DT:
                r["thresher_fuzzy_removed"] = removed.get("fuzzy")
    if not args.keep_stores:
        for d in ("store", "export", "prefect", "datatrove"):
            shutil.rmtree(base / d, ignore_errors=True)
    return results


def run_datatrove(v: dict, env: dict, base: Path, record) -> None:
    job = base / "datatrove"
    (job / "input").mkdir(parents=True)
    kept = "item_id NOT IN (SELECT item_id FROM duplicates)"
    for i in range(2):  # one file per signature task
        q = f"SELECT item_id AS id, text FROM items WHERE {kept} AND (item_id & 1) = {i}"
        dest = str(job / f"input/{i}.parquet")
        sql(v, env, base / "store", q, "--format", "parquet", "--out", dest)
    q = "from thresher.selection.minhash import LSHParams; print(*LSHParams(0.8).bands())"
    got = subprocess.run([sys.executable, "-c", q], env=env, check=True, capture_output=True)
    bands, rows = map(int, got.stdout.split())
    argv = [sys.executable, __file__, "--datatrove-job", str(job), "--bands", f"{bands},{rows}"]
    r = record(DT, argv, cwd=job)
    info = json.loads((job / "result.json").read_text()) if not r["error"] else {}
    r.update(info, bands=bands, band_rows=rows, removed=info.get("removed"))


def datatrove_job(job: Path, bands: int, rows: int) -> None:
    """Runs in its own process (measured): datatrove's four MinHash stages over job/input."""
    import pyarrow.parquet as pq
    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import minhash as mh
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Chars(WordTokenizer):  # n-grams of characters = character shingles
        def word_tokenize(self, text: str) -> list[str]:
            return list(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    mh.load_word_tokenizer = Chars  # the default (NLTK words) would need nltk
    norm = TextNormConfig(
        remove_punctuation=False, norm_unicode_diacritics=False, norm_numbers=False
    )
    cfg = mh.MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, norm_config=norm)
    inp, out = str(job / "input"), job / "out"

    def reader() -> ParquetReader:
        return ParquetReader(inp, text_key="text", id_key="id", read_metadata=False)

    sig = mh.MinhashDedupSignature(str(out / "sigs"), config=cfg)
    sig._hash_func = lambda s: xxhash.xxh64_intdigest(s.encode())  # datatrove's needs xxhash<4
    bkt = mh.MinhashDedupBuckets(str(out / "sigs"), str(out / "bkt"), config=cfg)
    stages = {
        "signatures": ([reader(), sig], 2),
        "buckets": ([bkt], bands),  # datatrove wants one task per band (or a multiple)
        "cluster": ([mh.MinhashDedupCluster(str(out / "bkt"), str(out / "rm"), config=cfg)], 1),
        "filter": ([reader(), mh.MinhashDedupFilter(str(out / "rm"))], 2),
    }
    seconds = {}
    for name, (pipeline, tasks) in stages.items():
        t0 = time.perf_counter()
        logs = str(job / "logs" / name)
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(2, tasks), logging_dir=logs).run()
        seconds[name] = time.perf_counter() - t0
    texts = sum(pq.ParquetFile(f).metadata.num_rows for f in (job / "input").glob("*.parquet"))
    removed = sum(f.stat().st_size // 4 for f in (out / "rm").glob("*.remove"))
    pairs = sum(f.stat().st_size // 16 for f in (out / "bkt").glob("*.dups"))
    about = dict(texts=texts, removed=removed, pairs=pairs, stage_seconds=seconds)
    (job / "result.json").write_text(json.dumps(about))


# -- reporting ------------------------------------------------------------------------------


def md(head: list[str], rows: list[list[str]]) -> list[str]:
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    pad = [str.ljust] + [str.rjust] * (len(head) - 1)
    cells = [[f(c, x) for f, c, x in zip(pad, r, w, strict=True)] for r in [head, *rows]]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return [lines[0], "|" + "|".join("-" * (x + 2) for x in w) + "|", *lines[1:]]


def rate(r: dict) -> float | None:
    rows = r.get("texts") if r["command"] == DT else r.get("rows_in")
    return rows / r["seconds"] if rows and not r["error"] else None


HEAD = "command | s | rows in/s | driver GiB | worker GiB | top process GiB | top private GiB"
HEAD += " | tree PSS GiB | tree RSS GiB | removed"


def cells(r: dict) -> list[str]:
    if r["error"]:
        return [r["command"], f"{r['seconds']:.1f}", "FAILED " + r["error"][:80]] + ["-"] * 7
    worker = r["child_gib"] if r["command"] == DT else r["worker_gib"]  # datatrove: pool process
    gib = [r["driver_gib"], worker, r["top_gib"], r.get("anon_gib"), r["pss_gib"], r["tree_gib"]]
    removed = f"{r['removed']:,}" if r.get("removed") is not None else ""
    speed = f"{rate(r):,.0f}" if rate(r) else "-"
    shown = ("-" if x is None else f"{x:.2f}" for x in gib)  # no private peak in older runs
    return [r["command"], f"{r['seconds']:.1f}", speed, *shown, removed]


def table(n: int, results: list[dict]) -> list[str]:
    mine = [r for r in results if r["rows"] == n]
    lines = [*md(HEAD.split(" | "), [cells(r) for r in mine]), ""]
    for r in (r for r in mine if r["command"] == DT and not r["error"]):
        st = ", ".join(f"{k} {s:.1f} s" for k, s in r["stage_seconds"].items())
        lines.append(
            f"datatrove: {r['texts']:,} texts (after exact dedup), {r['bands']} bands x "
            f"{r['band_rows']} rows, char 5-grams; {st}; {r['pairs']:,} band matches; "
            f"removes {r['removed']:,} vs thresher fuzzy {r['thresher_fuzzy_removed']:,}"
        )
    for r in (r for r in mine if r["command"] in ("dedup-fuzzy", DT) and r.get("pss_by_process")):
        parts = ", ".join(f"{name} {x:.2f}" for name, x in r["pss_by_process"][:6])
        lines.append(f"{r['command']} PSS at its peak, GiB: {parts}")
    top = max((r for r in mine if not r["error"]), key=lambda r: r["top_gib"], default=None)
    if top:
        lines.append(f"largest process: {top['top_gib']:.2f} GiB in {top['command']}: {top['top']}")
    held = max((r for r in mine if r.get("anon_gib")), key=lambda r: r["anon_gib"], default=None)
    if held:
        lines.append(
            f"largest private memory: {held['anon_gib']:.2f} GiB in {held['command']}: "
            f"{held['anon_top']}"
        )
    return lines


def targets(results: list[dict], earlier: list[dict], code: str) -> list[str]:
    best = {(r["rows"], r["command"]): r for r in [*earlier, *results] if r["code"] == code}

    def ok(c: bool) -> str:
        return "met" if c else "MISSED"

    lines = [f"targets (code {code}):"]
    big = [r for (n, c), r in best.items() if n == BIG and c != DT]  # thresher's commands
    failed = ", ".join(r["command"] for r in big if r["error"])
    ran = {r["command"] for r in big if not r["error"]}
    verdict = "MISSED" if failed else "met" if ran >= set(COMMANDS) else "not run"
    if big and not failed and not ran >= set(COMMANDS):  # a --stop-after run
        verdict = f"not measured (ran {len(ran)} of {len(COMMANDS)} commands)"
    lines.append(f"- 10M completes: {verdict} {failed}".rstrip())
    for n in sorted({n for n, _ in best}):
        top = max((r for (m, c), r in best.items() if m == n), key=lambda r: r["top_gib"])
        verdict = ok(top["top_gib"] <= MAX_PROC) if n == BIG else "(target at 10M)"
        lines.append(
            f"- largest process at {n:,}: {top['top_gib']:.2f} GiB RSS in {top['command']} "
            f"[{top['top'][:50]}] {verdict}"
        )
        mine = [r for (m, _), r in best.items() if m == n and r.get("anon_gib")]
        if held := max(mine, key=lambda r: r["anon_gib"], default=None):
            verdict = ok(held["anon_gib"] <= MAX_PROC) if n == BIG else "(target at 10M)"
            lines.append(
                f"- largest private memory at {n:,}: {held['anon_gib']:.2f} GiB in "
                f"{held['command']} [{held['anon_top'][:50]}] {verdict}"
            )
    growth = []
    for c in COMMANDS:
        a, b = best.get((MID, c)), best.get((BIG, c))
        if a and b and not a["error"] and not b["error"]:
            x = b["seconds"] / a["seconds"]
            growth.append(f"{c} {x:.1f}x {ok(x <= MAX_GROWTH)}")
    lines.append("- time 10M/1M <= 12x: " + ("; ".join(growth) or "needs both 1M and 10M"))
    for n in sorted({n for n, c in best if c == DT}):
        d, f = best[(n, DT)], best.get((n, "dedup-fuzzy"))
        if d["error"] or not f or f["error"]:
            continue
        speed, mem = rate(f) / rate(d), f["pss_gib"] / d["pss_gib"]
        lines.append(
            f"- fuzzy vs datatrove at {n:,}: {rate(f):,.0f} vs {rate(d):,.0f} rows/s = "
            f"{speed:.2f}x ({ok(speed >= 2)} >= 2x); tree PSS {f['pss_gib']:.2f} vs "
            f"{d['pss_gib']:.2f} GiB = {mem:.2f}x ({ok(mem <= 1.5)} <= 1.5x); removed "
            f"{f['removed']:,} (verified pairs) vs {d['removed']:,} (datatrove)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    dt = "datatrove's MinHash at the same N [auto: N <= 1M]"
    parser.add_argument("--datatrove", choices=["auto", "on", "off"], default="auto", help=dt)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-stages")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per command")
    parser.add_argument("--stop-after", choices=COMMANDS, help="the last command to run")
    parser.add_argument("--keep-stores", action="store_true", help="keep stores after the run")
    parser.add_argument("--datatrove-job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bands", default="14,9", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datatrove_job:
        return datatrove_job(args.datatrove_job, *map(int, args.bands.split(",")))
    cache, stamp, code = args.cache.resolve(), time.strftime("%Y%m%d-%H%M%S"), code_key()
    v = prepare("after", str(ROOT))
    earlier = [
        r
        for f in sorted(cache.glob("scale-results-*.json"))
        for r in json.loads(f.read_text())["results"]
        if r.get("corpus") == "joined"
    ]
    out, results = cache / f"scale-results-{stamp}.json", []
    for n in (int(x) for x in args.rows.split(",")):
        files = corpus(n, cache, joined=True)
        results += run_n(n, v, files, cache / f"run-{stamp}", args, code)
        about = {"code": code, "label": v["label"], "results": results}
        out.write_text(json.dumps(about, indent=1))
        print(f"\nscale: {n:,} rows; {v['label']}, code {code}\n")
        print("\n".join(table(n, results)), flush=True)
    if code_key() != code:
        print(f"\nWARNING: the working tree's code changed during the run ({code} -> {code_key()})")
    print("\n" + "\n".join(targets(results, earlier, code)))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
