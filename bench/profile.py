"""Scenario 6's reading of a py-spy profile: top functions by own and by inclusive samples, per
thread kind, from py-spy's collapsed stacks (``--format raw --threads``)."""

from __future__ import annotations

import re
from collections import Counter

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """``function (path:line)`` -> ``function (package/module.py)``, line numbers merged."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    if "trigger_operator/" in path:
        path = "trigger_operator/" + path.split("trigger_operator/", 1)[1]
    else:
        for marker in ("site-packages/", "lib/python3.11/", "lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
    return f"{match['function']} ({path})"


def _thread_kind(frame: str) -> str:
    """py-spy names threads ``thread (0x..)`` or by their name; kube-N, kube-events-N, MainThread."""
    name = frame.strip()
    for prefix in ("kube-events", "kube", "asyncio", "ThreadPoolExecutor"):
        if prefix in name:
            return prefix
    return name if len(name) < 40 else name[:40]


# Frames that say nothing of who asked for the work: the callers section looks past them.
_GENERIC = ("copy.py", "json/", "dataclasses.py", "typing.py", "threading.py", "asyncio/", "functools.py",
            "_validate_call.py", "api_client.py", "<string>")


def _file(frame: str) -> str:
    return frame[frame.rfind("(") + 1:].rstrip(")")


def _caller(names: list[str]) -> str:
    """The nearest frame above the leaf from another, not generic, file (with the one above it)."""
    leaf = _file(names[-1])
    for i in range(len(names) - 2, -1, -1):
        f = _file(names[i])
        if f != leaf and not any(g in f for g in _GENERIC):
            return names[i] + (f" < {names[i - 1]}" if i else "")
    return "?"


def summarize_profile(collapsed: str, top: int = 30, explained: int = 8) -> str:
    own: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        frames, count = match["stack"].split(";"), int(match["count"])
        total += count
        thread = frames[0] if frames and (frames[0].startswith(("thread", "process")) or "(" not in frames[0]) else ""
        if thread:
            frames = frames[1:]
            if frames and frames[0].startswith("process"):
                frames = frames[1:]
        threads[_thread_kind(thread) if thread else "?"] += count
        names = [_short(f) for f in frames if f]
        if names:
            own[names[-1]] += count
            callers.setdefault(names[-1], Counter())[_caller(names)] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "no samples\n"

    def table(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{title}", f"{'share':>7}  {'samples':>7}  function"]
        rows += [f"{100 * c / total:6.1f}%  {c:7d}  {name}" for name, c in counter.most_common(top)]
        return [*rows, ""]

    lines = [f"py-spy samples: {total}", ""]
    lines += table("by thread", threads)
    lines += table(f"top {top} functions by own samples (the frame on the CPU)", own)
    lines += table(f"top {top} functions by inclusive samples (on the stack)", inclusive)
    lines.append(f"who calls the top {explained} (nearest caller from another, not generic, module)")
    for name, c in own.most_common(explained):
        lines.append(f"{100 * c / total:6.1f}%  {name}")
        for caller, k in callers[name].most_common(3):
            lines.append(f"           {k:5d}  <- {caller}")
    lines.append("")
    ours = Counter({name: c for name, c in inclusive.items() if "(trigger_operator/" in name
                    and "(trigger_operator/cli.py)" not in name and "__main__" not in name})
    lines += table(f"top {top} of the operator's own functions by inclusive samples", ours)
    return "\n".join(lines)
