"""Checks FIDELITY.md against the emulator and, given a checkout of the Letta source, against it.

    python3 tests/emulator/check_fidelity.py [LETTA_SRC]

Always: every route the emulator serves has a `### METHOD /path` section; every row says `same`
or `differs ...`, cites a source location (a Letta file, or the framework for routing and
validation; only an emulator-only feature may cite none), and names tests that exist. With LETTA_SRC (the letta-ai/letta
tree at 56ba9c25): every cited `file.py:name` exists there and defines or mentions that name.
Prints one line per problem and "N rows, N problems"; exits 1 when there are problems.
"""

import ast
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROW_RX = re.compile(r"^\|(.*)\|(.*)\|(.*)\|(.*)\|\s*$")
CITE_RX = re.compile(r"`([\w./-]+\.py)(?::([\w.]+))?")
LIBRARIES = ("starlette/", "fastapi/", "FastAPI", "pydantic", "uvicorn")   # the server's frameworks
TEST_RX = re.compile(r"(test_\w+\.py):(test_\w+)")


def rows(path):
    """(line number, section, behaviour, source, emulator, test) for every table row."""
    section = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("### "):
                section = line[4:].strip()
            m = ROW_RX.match(line)
            if not m or line.startswith("|---"):
                continue
            cells = [c.strip() for c in m.groups()]
            if cells[0] in ("behaviour", "area"):
                continue
            yield (n, section, *cells)


def test_names():
    """{file: set of test method names} of the emulator's test files."""
    out = {}
    for name in os.listdir(HERE):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(HERE, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            out[name] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return out


def served_routes():
    sys.path.insert(0, HERE)
    from letta_api import Api

    class _Store:
        runs = {}
    api = Api.__new__(Api)
    api.s = _Store()
    return [(m, p) for m, p, _ in api.routes()]


def structural_problems(path):
    problems, tests, count = [], test_names(), 0
    sections = set()
    for n, section, behaviour, source, emulator, test in rows(path):
        if section and section.split()[0] not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            sections.add(section)
        count += 1
        where = "FIDELITY.md:%d" % n
        if not behaviour:
            problems.append("%s: no behaviour" % where)
        cited = CITE_RX.search(source) or any(lib in source for lib in LIBRARIES)
        if not cited and not emulator.startswith("differs on purpose"):
            problems.append("%s: no source location (`file.py:function`)" % where)
        if not (emulator.startswith("same") or emulator.startswith("differs")):
            problems.append("%s: emulator column is neither 'same' nor 'differs ...'" % where)
        for tfile, tname in TEST_RX.findall(test):
            if tname not in tests.get(tfile, ()):
                problems.append("%s: no test %s:%s" % (where, tfile, tname))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    headings = {h.strip() for h in re.findall(r"^### (.*)$", text, re.M)}
    for method, route in served_routes():
        if not any(h == "%s %s" % (method, route) or h.startswith("%s %s " % (method, route))
                   for h in headings):
            problems.append("FIDELITY.md: no section for %s %s" % (method, route))
    return count, problems


def source_problems(path, src):
    """Every cited file exists in src (a bare name must be unique there) and holds the name."""
    by_base = {}
    for root, _, files in os.walk(os.path.join(src, "letta")):
        for name in files:
            if name.endswith(".py"):
                full = os.path.join(root, name)
                by_base.setdefault(name, []).append(full)
    problems, cache = [], {}
    for n, _, _, source, _, _ in rows(path):
        for fname, name in CITE_RX.findall(source):
            if fname.startswith(("tests/", "starlette/", "fastapi/")) or fname.startswith("test_"):
                continue
            full = os.path.join(src, fname)
            if not os.path.exists(full):
                hits = [p for p in by_base.get(os.path.basename(fname), []) if p.endswith("/" + fname)]
                if len(hits) != 1:
                    problems.append("FIDELITY.md:%d: %s not found in the source%s" % (
                        n, fname, " (ambiguous)" if len(hits) > 1 else ""))
                    continue
                full = hits[0]
            if not name:
                continue
            if full not in cache:
                with open(full, encoding="utf-8") as f:
                    cache[full] = f.read()
            last = name.split(".")[-1]
            if not re.search(r"\b%s\b" % re.escape(last), cache[full]):
                problems.append("FIDELITY.md:%d: %s has no %s" % (n, fname, name))
    return problems


def main(argv):
    path = os.path.join(HERE, "FIDELITY.md")
    count, problems = structural_problems(path)
    if len(argv) > 1:
        problems += source_problems(path, argv[1])
    for p in problems:
        print(p)
    print("%d rows, %d problems" % (count, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
