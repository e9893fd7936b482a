#!/usr/bin/env python3
"""The one table of bench/run.sh, from the raw files the benches leave in build/bench/: every figure
as median (min-max) over its runs, the ratios, and the goals of issue #9 (and #6, #15) met or not.
  python3 bench/report.py                 prints the table
  python3 bench/report.py --md FILE [--notes bench/NOTES.md]
                                          also writes it as Markdown (bench/RESULTS.md), with the
                                          notes on each goal missed in this run
  python3 bench/report.py --only PART     prints one part (startup, requests, import, import_latency,
                                          import_batch_sizes, store, stream)
Ratios are ratios of medians. A missing raw file leaves its part out."""
import os
import re
import statistics
import sys
import time

RAW = "build/bench"


def read(name):
    """Rows (lists of fields) and the header's key=value settings of build/bench/NAME."""
    path = os.path.join(RAW, name)
    if not os.path.exists(path):
        return None, {}
    rows, meta = [], {}
    for line in open(path):
        if line.startswith("#"):
            meta.update(re.findall(r"(\w+)=(\S+)", line))
        elif line.strip():
            rows.append(line.split())
    return rows, meta


class Fig:
    """A figure over runs: median, min, max."""

    def __init__(self, values):
        self.v = sorted(values)
        self.med = statistics.median(self.v) if self.v else float("nan")

    def fmt(self, f):
        return "%s (%s-%s)" % (f(self.med), f(self.v[0]), f(self.v[-1]))


def num(d):
    return lambda x: "{:,.{}f}".format(x, d)


class Report:
    def __init__(self):
        self.rows = []    # (part, program, figure, Fig, format)
        self.goals = []   # (goal, measured, met)
        self.notes = []   # (part, text)
        self.ratios = []  # (what, text)

    def fig(self, part, program, figure, values, f):
        fig = Fig(values)
        self.rows.append((part, program, figure, fig, f))
        return fig

    def goal(self, text, measured, met):
        self.goals.append((text, measured, met))

    def ratio(self, what, text):
        self.ratios.append((what, text))


def startup(r):
    rows, _ = read("startup.txt")
    if not rows:
        return
    # spawn_time gives median/min/max itself (rounds in bench/run.sh's header line, if any)
    med = {}
    for name, m, lo, hi, rmax, rmed, rmin in (x[:7] for x in rows):
        label = {"node_client": "node + official client"}.get(name, name)
        f = Fig([]); f.v, f.med = [float(lo), float(hi)], float(m)
        r.rows.append(("start-up", label, "wall ms", f, num(2)))
        g = Fig([]); g.v, g.med = [float(rmin), float(rmax)], float(rmed)
        r.rows.append(("start-up", label, "peak RSS MB", g, num(1)))
        med[name] = float(m)
    ratio = med["lettash"] / med["lua5.4"]
    r.goal("start-up <= 2x lua5.4", "%.2fx" % ratio, ratio <= 2)
    if "node_client" in med:
        ratio = med["node_client"] / med["lettash"]
        r.goal("start-up >= 50x faster than node + official client", "%.0fx" % ratio, ratio >= 50)


def requests(r):
    rows, meta = read("requests.txt")
    if not rows:
        return
    n, k = int(meta.get("N", 20000)), meta.get("inflight", "64")
    by = {}
    for row in rows:
        by.setdefault(row[1], []).append([float(x) for x in row[2:6]])
    names = {"lettash": "lettash", "curl": "bare libcurl", "ts": "official client"}
    cpu, rps, rss = {}, {}, {}
    for mode, part in (("seq", "per request: %d sequential GETs, nginx" % n),
                       (k, "in flight: %d GETs, %s at a time, nginx" % (n, k))):
        for prog in ("lettash", "curl", "ts"):
            runs = by.get("%s_%s" % (prog, mode))
            if not runs:
                continue
            key = (prog, mode)
            cpu[key] = r.fig(part, names[prog], "CPU us/request", [(u + s) / n * 1e6 for u, s, w, m in runs], num(1)).med
            rps[key] = r.fig(part, names[prog], "requests/s", [n / w for u, s, w, m in runs], num(0)).med
            rss[key] = r.fig(part, names[prog], "peak RSS MB", [m / 1024 for u, s, w, m in runs], num(1)).med
    for mode, label in (("seq", "sequential"), (k, "%s in flight" % k)):
        ratio = cpu[("lettash", mode)] / cpu[("curl", mode)]
        r.goal("CPU/request <= 1.3x bare libcurl, %s" % label, "%.2fx" % ratio, ratio <= 1.3)
        if ("ts", mode) in cpu:
            ratio = cpu[("ts", mode)] / cpu[("lettash", mode)]
            r.goal("CPU/request >= 10x less than official client, %s" % label, "%.1fx" % ratio, ratio >= 10)
    if ("ts", k) in rps:
        ratio = rps[("lettash", k)] / rps[("ts", k)]
        r.goal("%s in flight: >= 10x official client's requests/s" % k, "%.1fx" % ratio, ratio >= 10)
        ratio = rss[("ts", k)] / rss[("lettash", k)]
        r.goal("%s in flight: <= 1/5 of official client's peak RSS" % k, "1/%.1f" % ratio, ratio >= 5)


def import_runs(rows, name):
    """(runs of NAME, passages/s, CPU s, peak RSS MB) from an import raw file's rows."""
    runs = [x for x in rows if x[1] == name]
    return (runs, [float(x[7]) for x in runs], [float(x[3]) + float(x[4]) for x in runs],
            [float(x[6]) / 1024 for x in runs])


def imports(r):
    """Issue #15's setting: per-passage vs batched lettash vs the official client's createMany."""
    rows, meta = read("import.txt")
    if not rows:
        return
    part = "bulk import: %s passages, emulator at %s ms + embeddings %s ms, %s at once" % (
        "{:,}".format(int(meta.get("N", 0))), meta.get("latency_ms", "?"), meta.get("embed_ms", "?"),
        meta.get("embed_concurrency", "?"))
    c, bc, b = meta.get("concurrency", "16"), meta.get("batch_concurrency", "4"), meta.get("batch", "?")
    names = {"lettash_p1": "lettash, per passage, %s in flight" % c,
             "lettash_batch": "lettash, batch %s, %s in flight" % (b, bc),
             "ts_batch": "official client createMany, batch %s, %s in flight" % (b, bc)}
    rate, rss, cpu = {}, {}, {}
    for name in ("lettash_p1", "lettash_batch", "ts_batch"):
        runs, rates, cpus, rsss = import_runs(rows, name)
        if not runs:
            continue
        if runs[0][2] != meta.get("N"):   # the slow importer's prefix: its rate is what counts
            names[name] += " (first %s)" % "{:,}".format(int(runs[0][2]))
        rate[name] = r.fig(part, names[name], "passages/s", rates, num(0)).med
        cpu[name] = r.fig(part, names[name], "CPU s (%s items)" % runs[0][2], cpus, num(2)).med / int(runs[0][2])
        r.fig(part, names[name], "wall s (whole process)", [float(x[5]) for x in runs], num(2))
        rss[name] = r.fig(part, names[name], "peak RSS MB", rsss, num(1)).med
        if len(runs[0]) > 9:    # what the emulator counted: one per passage, or one per batch
            r.fig(part, names[name], "server's embedding requests", [float(x[9]) for x in runs], num(0))
    if "lettash_p1" in rate and "lettash_batch" in rate:
        ratio = rate["lettash_batch"] / rate["lettash_p1"]
        r.goal("import: batched >= 10x per-passage passages/s", "%.1fx" % ratio, ratio >= 10)
    if "ts_batch" in rate and "lettash_batch" in rate:
        ratio = rate["lettash_batch"] / rate["ts_batch"]
        r.goal("import: batched >= official client's batched passages/s", "%.3fx" % ratio, ratio >= 1)
        ratio = rss["ts_batch"] / rss["lettash_batch"]
        r.goal("import: batched <= 1/4 of official client's peak RSS", "1/%.1f" % ratio, ratio >= 4)
        r.ratio("bulk import", "lettash batched/per passage %.1fx the passages/s; lettash/official client, both batched: "
                "%.2fx the passages/s, 1/%.1f the peak RSS, %.1fx less CPU per passage"
                % (rate["lettash_batch"] / rate.get("lettash_p1", float("nan")), rate["lettash_batch"] / rate["ts_batch"],
                   rss["ts_batch"] / rss["lettash_batch"], cpu["ts_batch"] / cpu["lettash_batch"]))


def import_latency(r):
    """Issue #6's setting (bench/import.sh --latency): one passage a request, no embedding cost."""
    rows, meta = read("import_latency.txt")
    if not rows:
        return
    lat, c = int(meta.get("latency_ms", 20)), int(meta.get("concurrency", 16))
    part = "bulk import per passage, emulator at %d ms, no embedding cost" % lat
    names = {"lettash_c1": "lettash, 1 at a time", "lettash_c16": "lettash, %d at a time" % c,
             "ts_c16": "official client, %d promises" % c}
    rate, rss = {}, {}
    for name in ("lettash_c1", "lettash_c16", "ts_c16"):
        runs, rates, cpus, rsss = import_runs(rows, name)
        if not runs:
            continue
        rate[name] = r.fig(part, names[name], "passages/s", rates, num(0)).med
        r.fig(part, names[name], "CPU s (%s items)" % runs[0][2], cpus, num(2))
        rss[name] = r.fig(part, names[name], "peak RSS MB", rsss, num(1)).med
    ideal = c * 1000 / lat
    r.goal("import: %d in flight >= 80%% of ideal %d/s" % (c, ideal), "%.0f%%" % (100 * rate["lettash_c16"] / ideal),
           rate["lettash_c16"] >= 0.8 * ideal)
    ratio = rate["lettash_c16"] / rate["lettash_c1"]
    r.goal("import: %d in flight >= 10x 1 at a time" % c, "%.1fx" % ratio, ratio >= 10)
    ratio = rate["lettash_c16"] / rate["ts_c16"]
    r.goal("import: >= official client's passages/s", "%.2fx" % ratio, ratio >= 1)
    ratio = rss["ts_c16"] / rss["lettash_c16"]
    r.goal("import: <= 1/4 of official client's peak RSS", "1/%.1f" % ratio, ratio >= 4)


def import_batch_sizes(r):
    """bench/import.sh --batch-sizes: passages/s and peak RSS at each batch size (no goal)."""
    rows, meta = read("import_batch_sizes.txt")
    if not rows:
        return
    part = "bulk import by batch size: %s passages, %s in flight, emulator at %s ms + embeddings %s ms" % (
        "{:,}".format(int(meta.get("N", 0))), meta.get("batch_concurrency", "4"), meta.get("latency_ms", "?"),
        meta.get("embed_ms", "?"))
    names = {"lettash_batch": "lettash", "ts_batch": "official client"}
    sizes = sorted({int(x[8]) for x in rows})
    for name in ("lettash_batch", "ts_batch"):
        for size in sizes:
            runs, rates, cpus, rsss = import_runs([x for x in rows if int(x[8]) == size], name)
            if runs:
                r.fig(part, "%s, batch %d" % (names[name], size), "passages/s", rates, num(0))
                r.fig(part, "%s, batch %d" % (names[name], size), "peak RSS MB", rsss, num(1))


def store(r):
    rows, meta = read("store.txt")
    if rows:
        part = "store: %s lookups over %s user records" % (meta.get("lookups", "?"), meta.get("records", "?"))
        r.fig(part, "lettash", "store:user(name)/s", [float(x[1]) for x in rows], num(0))
        r.fig(part, "lettash", "raw txn:get/s", [float(x[2]) for x in rows], num(0))
    rows, meta = read("onboard.txt")
    if rows:
        part = "onboarding %s users, %s at a time, emulator" % (meta.get("N", "?"), meta.get("concurrency", "?"))
        names = {"onboard": "lettash (durable commits)", "onboard_nosync": "lettash, store:durable(false)"}
        for name in ("onboard", "onboard_nosync"):
            runs = [x for x in rows if x[1] == name]
            if runs:
                r.fig(part, names[name], "users/s", [float(x[7]) for x in runs], num(0))
                r.fig(part, names[name], "CPU ms/user", [(float(x[2]) + float(x[3])) / int(x[6]) * 1e3 for x in runs], num(2))


def stream(r):
    rows, meta = read("stream.txt")
    if not rows:
        return
    part = "streaming: %s token deltas, emulator" % meta.get("words", "?")
    names = {"lettash": "lettash", "ts": "official client"}
    first, rate, cpu = {}, {}, {}
    for name in ("lettash", "ts"):
        runs = [x for x in rows if x[1] == name]
        if not runs:
            continue
        first[name] = r.fig(part, names[name], "first event ms", [float(x[6]) for x in runs], num(1)).med
        rate[name] = r.fig(part, names[name], "events/s", [float(x[9]) for x in runs], num(0)).med
        cpu[name] = r.fig(part, names[name], "CPU us/event",
                          [(float(x[2]) + float(x[3])) / int(x[7]) * 1e6 for x in runs], num(1)).med
        r.fig(part, names[name], "peak RSS MB", [float(x[5]) / 1024 for x in runs], num(1))
    if "ts" in rate:
        r.ratio("streaming", "lettash/official client: first event %.1fx sooner, %.2fx the events/s, %.1fx less CPU per event"
                % (first["ts"] / first["lettash"], rate["lettash"] / rate["ts"], cpu["ts"] / cpu["lettash"]))


PARTS = {"startup": startup, "requests": requests, "import": imports, "import_latency": import_latency,
         "import_batch_sizes": import_batch_sizes, "store": store, "stream": stream}


def table(r):
    """The figures as aligned text, one block per part."""
    out, last = [], None
    w = max([len(p) for _, p, _, _, _ in r.rows] + [8])
    wf = max([len(f) for _, _, f, _, _ in r.rows] + [8])
    for part, prog, figure, fig, f in r.rows:
        if part != last:
            out.append(part)
            last = part
        out.append("  %-*s  %-*s  %s" % (w, prog, wf, figure, fig.fmt(f)))
    if r.ratios:
        out += ["ratios"] + ["  " + t for _, t in r.ratios]
    if r.goals:
        out.append("goals")
        wg = max(len(g) for g, _, _ in r.goals)
        out += ["  %-*s  %8s  %s" % (wg, g, m, "met" if ok else "NOT met") for g, m, ok in r.goals]
    return "\n".join(out)


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def markdown(r, notes_file):
    rounds = os.environ.get("BENCH_ROUNDS_NOTE", "")
    md = ["# Benchmark results", "",
          "Produced by `bench/run.sh` on %s: %s, %d cores (`nproc`), load average before the run %s." % (
              time.strftime("%Y-%m-%d %H:%M %Z"), cpu_model(), os.cpu_count(), os.environ.get("BENCH_LOAD", "?")),
          "Measured: %s." % os.environ.get("BENCH_BUILD", "bin/lettash"),
          "Every figure is the median over its runs, with the smallest and largest in brackets; the compared",
          "programs ran interleaved, round by round, after a warm-up. Ratios are ratios of medians.", ""]
    if rounds:
        md += [rounds, ""]
    md += ["## Goals (issue #9; import: issues #15 and #6)", "", "| goal | measured | |", "|---|---:|---|"]
    md += ["| %s | %s | %s |" % (g, m, "met" if ok else "**NOT met**") for g, m, ok in r.goals]
    md += ["", "## Figures", "", "| benchmark | program | figure | median (min-max) |", "|---|---|---|---:|"]
    last = None
    for part, prog, figure, fig, f in r.rows:
        md.append("| %s | %s | %s | %s |" % (part if part != last else "", prog, figure, fig.fmt(f)))
        last = part
    if r.ratios:
        md += ["", "Other ratios: " + "; ".join("%s: %s" % (w, t) for w, t in r.ratios) + "."]
    always, by_goal = read_notes(notes_file)
    missed = [g for g, _, ok in r.goals if not ok]
    md += ["", "## Goals not met: what bounds them, what would move them", ""]
    if not missed:
        md.append("Every goal was met in this run.")
    for g in missed:
        md += ["### " + g, "", by_goal.get(g, "(no note in bench/NOTES.md for this goal yet: profile it)"), ""]
    if always:
        md += ["", always]
    return "\n".join(md).rstrip() + "\n"


def read_notes(path):
    """bench/NOTES.md: what comes before the first '### ' heading is always printed; each
    '### <goal>' section only when that goal is missed in this run."""
    if not path or not os.path.exists(path):
        return "", {}
    text = re.sub(r"<!--.*?-->\n?", "", open(path).read(), flags=re.S)
    parts = re.split(r"^### (.*)$", text, flags=re.M)
    return parts[0].strip(), {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts), 2)}


def main(argv):
    only, md_path, notes = None, None, None
    i = 1
    while i < len(argv):
        if argv[i] == "--only":
            only = argv[i + 1]; i += 2
        elif argv[i] == "--md":
            md_path = argv[i + 1]; i += 2
        elif argv[i] == "--notes":
            notes = argv[i + 1]; i += 2
        else:
            sys.exit(__doc__)
    r = Report()
    for name, fn in PARTS.items():
        if only is None or only == name:
            fn(r)
    print(table(r))
    if md_path:
        with open(md_path, "w") as f:
            f.write(markdown(r, notes))


if __name__ == "__main__":
    main(sys.argv)
