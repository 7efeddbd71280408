"""Compiling rule files with yara-x, in a child process that is killed when it hangs.

The rule set under audit is untrusted; a pathological rule (an exploding
regular expression, a giant repetition) must not hang the release pipeline or
the reviewer's machine. So yara-x runs in a child (`python -m
overt.rules.compile`), which reports as it goes: which file it is compiling,
and each error with its file and line. The parent enforces a time limit per
file; when a file exceeds it, the child is killed, that file gets a
"compile-timeout" finding, and a fresh child carries on with the next file.

Checking stops before yara-x's `build()`: every error is reported by
`add_source`, and linking the scanner is only needed to scan (then
`compile_rules_text` builds and serialises the rules).

Each file is compiled in its own namespace, as a scanner loading the release
would, with the external variables a file scanner sets (filename, filepath,
extension, filetype, owner; the convention of the THOR and LOKI scanners that
public rule sets such as signature-base rely on).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overt.rules.parse import Finding, read_source

# External variables defined for compilation; scan.py sets them for each file.
EXTERNALS = ("filename", "filepath", "extension", "filetype", "owner")
DEFAULT_TIMEOUT_S = 60.0
# Findings of one file beyond this are summarised: a generated file with
# thousands of broken rules should not flood the report.
MAX_ERRORS_PER_FILE = 50
# Starting the child (interpreter, imports) is not a rule's fault: it gets this much
# extra time before the first file's clock starts.
STARTUP_ALLOWANCE_S = 10.0


class CompileJob:
    """Compile files in the background; `result()` waits for the findings.

    `displays` are the names findings use for the files (default: str(path)).
    With `output`, the compiled rules are serialised to that file when every
    file compiled.
    """

    def __init__(
        self,
        files: Sequence[Path],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        displays: Sequence[str] | None = None,
        sources: dict[str, str] | None = None,
        output: Path | None = None,
    ) -> None:
        if sources is not None:
            self.items: list[dict[str, str]] = [
                {"display": name, "text": text} for name, text in sources.items()
            ]
        else:
            names = list(displays) if displays is not None else [str(p) for p in files]
            self.items = [{"display": d, "path": str(p)} for p, d in zip(files, names, strict=True)]
        self.timeout_s = timeout_s
        self.output = output
        self.findings: list[Finding] = []
        self.complete = False  # every file compiled, and `output` written if asked
        self._run: _Child | None = _Child(self.items, 0, output) if self.items else None

    def result(self) -> list[Finding]:
        """Wait for the compilation; returns the findings (empty: all compiled)."""
        while self._run is not None:
            run = self._run
            outcome = run.wait(self.timeout_s)
            self.findings.extend(run.findings)
            if outcome == "done":
                self.complete = not self.findings
                self._run = None
                break
            if outcome == "timeout":
                where = run.current
                if where is None or where >= len(self.items):
                    self.findings.append(
                        _finding(None, "(rule set)", 0, "compile-timeout", self._late())
                    )
                    self._run = None
                    break
                self.findings.append(
                    _finding(None, self.items[where]["display"], 0, "compile-timeout", self._late())
                )
                restart = where + 1
            else:  # the child died: blame the file it was on
                where = run.current if run.current is not None else run.first
                display = self.items[where]["display"] if where < len(self.items) else "(rule set)"
                self.findings.append(
                    _finding(None, display, 0, "compile", f"the compiler crashed: {outcome}")
                )
                restart = where + 1
            self._run = _Child(self.items, restart, None) if restart < len(self.items) else None
        return self.findings

    def _late(self) -> str:
        return (
            f"compiling took longer than {self.timeout_s:g} s and was stopped: a "
            "pathological rule (e.g. an exploding regular expression)?"
        )

    def cancel(self) -> None:
        if self._run is not None:
            self._run.kill()
            self._run = None


def compile_files(paths: list[Path], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Finding]:
    """Compile each file with yara-x; every error as an "error" finding with file and line."""
    if not paths:
        return []
    job = CompileJob(paths, timeout_s)
    try:
        return job.result()
    finally:
        job.cancel()


def compile_rules_text(
    sources: dict[str, str], timeout_s: float = DEFAULT_TIMEOUT_S
) -> bytes | list[Finding]:
    """Compiled, serialised rules (yara_x.Rules.serialize_into) or why not.

    `sources` maps the name findings use for each source to its text; each
    source is its own namespace.
    """
    with tempfile.TemporaryDirectory(prefix="overt-rules-") as tmp:
        output = Path(tmp) / "rules.bin"
        job = CompileJob([], timeout_s, sources=sources, output=output)
        try:
            findings = job.result()
        finally:
            job.cancel()
        if findings or not job.complete:
            return findings or [
                _finding(None, "(rule set)", 0, "compile", "the rules could not be compiled")
            ]
        return output.read_bytes()


def _finding(rule: str | None, file: str, line: int, lint: str, message: str) -> Finding:
    return Finding(rule, file, line, lint, "error", message)


class _Child:
    """One compiler process, and a thread reading its reports."""

    def __init__(self, items: list[dict[str, str]], first: int, output: Path | None) -> None:
        self.first = first
        self.current: int | None = None
        self.findings: list[Finding] = []
        self.done = False
        self.progress_at = time.monotonic() + STARTUP_ALLOWANCE_S
        self._lock = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "overt.rules.compile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        job = {"items": items, "first": first, "output": str(output) if output else None}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._stderr: list[bytes] = []
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._err_reader.start()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job).encode("utf-8"))
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event: dict[str, Any] = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                self.progress_at = time.monotonic()
                if "start" in event:
                    self.current = int(event["start"])
                elif "error" in event:
                    e = event["error"]
                    self.findings.append(
                        _finding(e.get("rule"), e["file"], int(e["line"]), e["lint"], e["message"])
                    )
                elif event.get("done"):
                    self.done = True
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.append(self.proc.stderr.read()[-2000:])

    def wait(self, timeout_s: float) -> str:
        """ "done", "timeout" (no progress for timeout_s), or why the child died."""
        with self._lock:
            while not self.done:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    break
                left = self.progress_at + timeout_s - time.monotonic()
                if left <= 0:
                    self.kill()
                    return "timeout"
                self._lock.wait(min(left, 0.5))
        if self.done:
            self.proc.wait()
            return "done"
        self.proc.wait()
        self._err_reader.join(1)
        tail = b"".join(self._stderr).decode("utf-8", "replace").strip().splitlines()
        return f"exit status {self.proc.returncode}" + (f": {tail[-1]}" if tail else "")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# --- the child ------------------------------------------------------------------------------


def _child_main() -> int:
    import yara_x

    job = json.loads(sys.stdin.buffer.read())
    items: list[dict[str, str]] = job["items"]
    first: int = job["first"]
    output: str | None = job["output"]

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    compiler = yara_x.Compiler()
    for name in EXTERNALS:
        compiler.define_global(name, "")
    reported = 0
    ok = True
    for index in range(first, len(items)):
        item = items[index]
        display = item["display"]
        emit({"start": index})
        if "text" in item:
            text: str | None = item["text"]
        else:
            try:
                text, problems = read_source(Path(item["path"]), display)
            except OSError as exc:
                text, problems = (
                    None,
                    [_finding(None, display, 0, "compile", f"cannot read: {exc.strerror or exc}")],
                )
            for problem in problems:
                emit({"error": problem.to_json()})
        if text is None:
            ok = False
            continue
        compiler.new_namespace(f"file{index}")
        try:
            compiler.add_source(text, origin=display)
        except yara_x.CompileError:
            ok = False
        errors = compiler.errors()
        for n, error in enumerate(errors[reported:]):
            if n == MAX_ERRORS_PER_FILE:
                emit(
                    {
                        "error": _finding(
                            None,
                            display,
                            0,
                            "compile",
                            f"{len(errors) - reported - n} more compile errors not shown",
                        ).to_json()
                    }
                )
                break
            emit({"error": _error_json(error, display)})
        reported = len(errors)
    emit({"start": len(items)})
    if output is not None and ok:
        rules = compiler.build()
        with open(output, "wb") as f:
            rules.serialize_into(f)
    emit({"done": True})
    return 0


def _error_json(error: dict[str, Any], display: str) -> dict[str, object]:
    labels = error.get("labels") or [{}]
    label = labels[0]
    origin = label.get("code_origin") or display
    line = int(label.get("line") or error.get("line") or 0)
    message = str(error.get("title", "compile error"))
    text = label.get("text")
    if text and text not in message:
        message += f": {text}"
    for footer in error.get("footers") or []:
        if footer.get("text"):
            message += f" ({footer['text']})"
    code = error.get("code")
    if code:
        message = f"{code}: {message}"
    return _finding(None, origin, line, "compile", message).to_json()


if __name__ == "__main__":
    sys.exit(_child_main())
