"""RFC 6962/9162 proof vectors from transparency-dev/merkle, one test per file."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from overt.errors import MalformedError, OvertError, VerificationError
from overt.tlog.merkle import MemoryTree, verify_consistency, verify_inclusion

REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]


def _b64(value: str | None) -> bytes:
    # Plain (lenient) base64: the vectors deliberately carry empty and junk values.
    return base64.b64decode(value or "")


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        pytest.fail("no Merkle test-vector files found", pytrace=False)
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_inclusion_vector(testvectors: Path, inclusion_vector_file: Path | None) -> None:
    v = _load(inclusion_vector_file)
    args = (
        _b64(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        _proof(v["proof"]),
        _b64(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(OvertError) as info:
            verify_inclusion(*args)
        assert isinstance(info.value, VerificationError | MalformedError)
    else:
        verify_inclusion(*args)


def test_consistency_vector(testvectors: Path, consistency_vector_file: Path | None) -> None:
    v = _load(consistency_vector_file)
    args = (
        v["size1"],
        v["size2"],
        _b64(v["root1"]),
        _b64(v["root2"]),
        _proof(v["proof"]),
    )
    if v["wantErr"]:
        with pytest.raises(OvertError) as info:
            verify_consistency(*args)
        assert isinstance(info.value, VerificationError | MalformedError)
    else:
        verify_consistency(*args)


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_vector_set_is_complete(testvectors: Path, kind: str) -> None:
    """Guard against silently testing a truncated vector set."""
    files = sorted((testvectors / "merkle" / kind).rglob("*.json"))
    wants = [json.loads(f.read_text(encoding="utf-8"))["wantErr"] for f in files]
    assert len(files) >= 90
    assert sum(wants) >= 80, "most vectors are negative cases"
    assert not all(wants), "some vectors must be positive"


def _readme_roots(testvectors: Path) -> dict[int, bytes]:
    text = (testvectors / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([0-9a-f]{64})\s*\|\s*$", text, re.MULTILINE)
    return {int(size): bytes.fromhex(root) for size, root in rows}


def test_readme_reference_roots(testvectors: Path) -> None:
    roots = _readme_roots(testvectors)
    assert sorted(roots) == list(range(9))
    tree = MemoryTree()
    tree.extend(REFERENCE_LEAVES)
    for size, want in roots.items():
        assert tree.root(size) == want, f"size {size}"


def test_readme_reference_roots_incremental(testvectors: Path) -> None:
    """Appending one entry at a time gives the same roots as bulk extension."""
    roots = _readme_roots(testvectors)
    tree = MemoryTree()
    assert tree.root() == roots[0]
    for i, leaf in enumerate(REFERENCE_LEAVES, 1):
        assert tree.append(leaf) == i - 1
        assert tree.root() == roots[i]
