"""Build ``<out>/clock-stamped-1.0.tar.gz``: a deliberately NON-reproducible artifact.

The archive holds the files of ``data/`` and a ``BUILD_INFO`` file that records the wall-clock
time of the build in nanoseconds and the directory the build ran in. Those two values differ
on every build, so no rebuild can match the published artifact.

Everything else is written the deterministic way (sorted members, mtime ``SOURCE_DATE_EPOCH``,
owner 0:0 with empty names, mode 0644, ustar format, gzip header without name and with a fixed
mtime), so that a comparison of two builds finds exactly one differing member: ``BUILD_INFO``.

Standard library only: ``python build.py --out dist``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import tarfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

PRODUCT = "clock-stamped"
VERSION = "1.0"
HERE = Path(__file__).resolve().parent


def build_info() -> bytes:
    """Return the BUILD_INFO text. This is the non-reproducible part, on purpose."""
    now_ns = time.time_ns()  # differs on every build
    stamp = datetime.fromtimestamp(now_ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"product: {PRODUCT}",
        f"version: {VERSION}",
        f"built_at_ns: {now_ns}",
        f"built_at: {stamp}",
        f"build_dir: {Path.cwd()}",  # differs between the build and any rebuild elsewhere
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def make_archive(members: dict[str, bytes], mtime: int) -> bytes:
    """Return a ``.tar.gz`` of ``members`` (name -> content), deterministic but for content."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[name]))
    gz_buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_buf, compresslevel=9, mtime=mtime) as gz:
        gz.write(tar_buf.getvalue())
    return gz_buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Build the archive and print its path and sha256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output directory")
    args = parser.parse_args(argv)

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    top = f"{PRODUCT}-{VERSION}"
    data_dir = HERE / "data"
    members = {
        f"{top}/data/{p.relative_to(data_dir).as_posix()}": p.read_bytes()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    }
    members[f"{top}/BUILD_INFO"] = build_info()

    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{top}.tar.gz"
    target.write_bytes(make_archive(members, mtime))
    print(f"{hashlib.sha256(target.read_bytes()).hexdigest()}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
