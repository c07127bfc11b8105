"""Runs each example that ports a Python tutorial program and checks its
output against examples/expected/NAME.txt.

In an expected file, {pid} stands for a process id, and the lines between
"~any order" and "~end" may come in any order (children racing to print).
Exits 1 with a diff-like report if any example differs or fails.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def blocks(lines):
    """The lines as ('line', text) and ('set', sorted lines) items."""
    out, group = [], None
    for line in lines:
        if line == "~any order":
            group = []
        elif line == "~end":
            out.append(("set", sorted(group)))
            group = None
        elif group is not None:
            group.append(line)
        else:
            out.append(("line", line))
    return out


def matches(pattern, line):
    regex = re.escape(pattern).replace(re.escape("{pid}"), r"\d+")
    return re.fullmatch(regex, line) is not None


def check(name):
    expected = (ROOT / "examples" / "expected" / f"{name}.txt").read_text().splitlines()
    run = subprocess.run(
        ["cargo", "run", "--release", "-q", "--example", name],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    got = run.stdout.splitlines()
    problems = []
    if run.returncode != 0:
        problems.append(f"exit code {run.returncode}; stderr:\n{run.stderr}")
    at = 0
    for kind, want in blocks(expected):
        if kind == "line":
            line = got[at] if at < len(got) else "<end of output>"
            if not matches(want, line):
                problems.append(f"line {at + 1}: expected {want!r}, got {line!r}")
            at += 1
        else:
            chunk = sorted(got[at : at + len(want)])
            if chunk != want:
                problems.append(f"lines {at + 1}-{at + len(want)} (any order): expected {want}, got {chunk}")
            at += len(want)
    if at < len(got):
        problems.append(f"unexpected output after line {at}: {got[at:]!r}")
    return problems


def main():
    names = sorted(p.stem for p in (ROOT / "examples" / "expected").glob("*.txt"))
    failed = 0
    for name in names:
        problems = check(name)
        print(f"{name}: {'ok' if not problems else 'FAILED'}", flush=True)
        for p in problems:
            print(f"  {p}")
        failed += bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
