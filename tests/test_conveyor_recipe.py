"""Build recipes, hash locks and the source tree digest: what a project author writes and gets.

No build runs here: these are the parsers a vendor meets first, and every
refusal must name the field (or the line) to fix.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from overt.conveyor.recipe import (
    DEFAULT_TIMEOUT_S,
    VARIATIONS,
    Recipe,
    load_recipe,
)
from overt.conveyor.source import tree_digest
from overt.conveyor.toolchain import parse_lock
from overt.errors import MalformedError
from release_fixtures import EXAMPLES

GOOD = """
[product]
name = "hello-overt"
version = "1.0.0"

[build]
commands = ["python -m build --no-isolation --outdir dist ."]

[artifacts]
paths = ["dist/*.whl", "dist/*.tar.gz"]

[toolchain]
python = "3.11"
lock = "build-requirements.txt"
"""

HASH_A = "a" * 64
HASH_B = "b" * 64


def project_with(tmp_path: Path, text: str, file: str = "overt.toml") -> Path:
    (tmp_path / file).write_text(text)
    return tmp_path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(MalformedError) as info:
        load_recipe(project_with(tmp_path, text))
    message = str(info.value)
    assert message.startswith("overt.toml: "), message
    return message


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


# --- good recipes ------------------------------------------------------------------


def test_recipe_fields_and_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(project_with(tmp_path, GOOD))
    assert recipe.name == "hello-overt"
    assert recipe.version == "1.0.0"
    assert recipe.commands == ("python -m build --no-isolation --outdir dist .",)
    assert recipe.artifacts == ("dist/*.whl", "dist/*.tar.gz")
    assert recipe.python == "3.11"
    assert recipe.lock == "build-requirements.txt"
    assert recipe.timeout_s == DEFAULT_TIMEOUT_S
    assert recipe.env == ()
    assert recipe.vary == VARIATIONS
    assert recipe.source.git is None


def test_every_example_recipe_loads() -> None:
    names = {load_recipe(EXAMPLES / name).name for name in ("hello-product", "detection-db")}
    assert names == {"hello-overt", "detection-db"}
    assert load_recipe(EXAMPLES / "clock-stamped").version == "1.0"


def test_recipe_in_pyproject_tool_overt(tmp_path: Path) -> None:
    text = "[project]\nname = 'x'\n\n" + GOOD.replace("\n[", "\n[tool.overt.")
    recipe = load_recipe(project_with(tmp_path, text, "pyproject.toml"))
    assert recipe.name == "hello-overt"
    assert recipe.lock == "build-requirements.txt"


def test_pyproject_errors_name_the_table(tmp_path: Path) -> None:
    text = "[tool.overt.product]\nname = 'x'\n"
    with pytest.raises(MalformedError) as info:
        load_recipe(project_with(tmp_path, text, "pyproject.toml"))
    assert str(info.value).startswith("pyproject.toml [tool.overt]: product.version is missing")


def test_overt_toml_wins_over_pyproject(tmp_path: Path) -> None:
    project_with(tmp_path, "[tool.overt]\nbroken = true\n", "pyproject.toml")
    assert load_recipe(project_with(tmp_path, GOOD)).name == "hello-overt"


@pytest.mark.parametrize("pyproject", [None, "[project]\nname = 'x'\n"])
def test_no_recipe_says_where_to_put_one(tmp_path: Path, pyproject: str | None) -> None:
    if pyproject is not None:
        project_with(tmp_path, pyproject, "pyproject.toml")
    with pytest.raises(
        MalformedError, match=r"no build recipe: add overt\.toml or a \[tool\.overt\]"
    ):
        load_recipe(tmp_path)


def test_invalid_toml_and_encoding_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MalformedError, match=r"overt\.toml"):
        load_recipe(project_with(tmp_path, "[product\nname = 1"))
    (tmp_path / "overt.toml").write_bytes(b"[product]\nname = '\xff'\n")
    with pytest.raises(MalformedError, match="not UTF-8"):
        load_recipe(tmp_path)


def test_optional_fields(tmp_path: Path) -> None:
    text = GOOD.replace(
        "[build]\n",
        '[build]\ntimeout_seconds = 60\nenv = ["CI", "SOME_TOKEN"]\n'
        'path = "/opt/build/hello"\nvary = ["path", "tz"]\n',
    )
    text += '\n[source]\ngit = "https://git.example.com/acme/hello.git"\n'
    text += f'commit = "{"c" * 40}"\nsubdir = "product"\n'
    recipe = load_recipe(project_with(tmp_path, text))
    assert recipe.timeout_s == 60
    assert recipe.env == ("CI", "SOME_TOKEN")
    assert recipe.build_path == "/opt/build/hello"
    # A fixed build path cannot be varied by a rebuilder.
    assert recipe.vary == ("tz",)
    assert recipe.source.git == "https://git.example.com/acme/hello.git"
    assert recipe.source.commit == "c" * 40
    assert recipe.source.subdir == "product"


def test_recipe_json_round_trip_as_recorded_in_provenance(tmp_path: Path) -> None:
    text = GOOD.replace("[build]\n", '[build]\nenv = ["CI"]\npath = "/opt/b"\n')
    recipe = load_recipe(project_with(tmp_path, text))
    again = Recipe.from_json(recipe.to_json())
    assert again == recipe
    # The recorded form never carries a source of its own: provenance names the source.
    doc = recipe.to_json() | {"source": {"git": "x", "commit": "c" * 40}}
    with pytest.raises(MalformedError, match="unknown field source"):
        Recipe.from_json(doc)


# --- bad recipes: every field named ----------------------------------------------------


BAD_FIELDS = [
    # (description, transformation of GOOD, text the message must hold)
    ("product missing", ("[product]\n", "[produce]\n"), "unknown field produce"),
    ("name missing", ('name = "hello-overt"\n', ""), "product.name is missing"),
    ("name empty", ('name = "hello-overt"', 'name = ""'), "product.name must be a non-empty"),
    ("name not a string", ('name = "hello-overt"', "name = 7"), "product.name must be"),
    ("name with slash", ('name = "hello-overt"', 'name = "../evil"'), "product.name may hold"),
    ("name with space", ('name = "hello-overt"', 'name = "hello overt"'), "product.name may hold"),
    ("version missing", ('version = "1.0.0"\n', ""), "product.version is missing"),
    ("version bad", ('version = "1.0.0"', 'version = "1.0/2"'), "product.version may hold"),
    (
        "product extra",
        ('version = "1.0.0"', 'version = "1.0.0"\nlicense = "MIT"'),
        "product.license",
    ),
    (
        "product not a table",
        ('[product]\nname = "hello-overt"\nversion = "1.0.0"\n', 'product = "x"\n'),
        "product must be a table",
    ),
    (
        "commands missing",
        ('commands = ["python -m build --no-isolation --outdir dist ."]', "timeout_seconds = 5"),
        "build.commands is missing",
    ),
    (
        "commands empty",
        ('commands = ["python -m build --no-isolation --outdir dist ."]', "commands = []"),
        "build.commands must be a non-empty list",
    ),
    (
        "commands a string",
        ('commands = ["python -m build --no-isolation --outdir dist ."]', 'commands = "make"'),
        "build.commands must be a non-empty list",
    ),
    (
        "command empty",
        ('commands = ["python -m build --no-isolation --outdir dist ."]', 'commands = ["a", " "]'),
        "build.commands[1] must be a non-empty string",
    ),
    ("timeout zero", ("[build]\n", "[build]\ntimeout_seconds = 0\n"), "build.timeout_seconds"),
    ("timeout huge", ("[build]\n", "[build]\ntimeout_seconds = 99999999\n"), "timeout_seconds"),
    ("timeout bool", ("[build]\n", "[build]\ntimeout_seconds = true\n"), "timeout_seconds"),
    ("timeout string", ("[build]\n", '[build]\ntimeout_seconds = "60"\n'), "timeout_seconds"),
    ("env bad name", ("[build]\n", '[build]\nenv = ["OK", "NOT-OK"]\n'), "build.env[1]"),
    (
        "path relative",
        ("[build]\n", '[build]\npath = "build/here"\n'),
        "build.path must be an absolute path",
    ),
    ("vary unknown", ("[build]\n", '[build]\nvary = ["tz", "kernel"]\n'), "build.vary[1]"),
    ("build extra", ("[build]\n", "[build]\nnetwork = true\n"), "unknown field build.network"),
    ("build missing", ("[build]\n", "[built]\n"), "unknown field built"),
    (
        "artifact escapes",
        ('paths = ["dist/*.whl", "dist/*.tar.gz"]', 'paths = ["dist/*.whl", "../secrets/*"]'),
        "artifacts.paths[1] must be a relative path inside the project",
    ),
    (
        "artifact absolute",
        ('paths = ["dist/*.whl", "dist/*.tar.gz"]', 'paths = ["/etc/passwd"]'),
        "artifacts.paths[0] must be a relative path",
    ),
    (
        "artifact backslash",
        ('paths = ["dist/*.whl", "dist/*.tar.gz"]', 'paths = ["dist\\\\x.whl"]'),
        "artifacts.paths[0]",
    ),
    (
        "artifacts empty",
        ('paths = ["dist/*.whl", "dist/*.tar.gz"]', "paths = []"),
        "artifacts.paths must be a non-empty list",
    ),
    ("python missing", ('python = "3.11"\n', ""), "toolchain.python is missing"),
    ("python bare", ('python = "3.11"', 'python = "3"'), "toolchain.python must be a Python"),
    ("python name", ('python = "3.11"', 'python = "python3.11"'), "toolchain.python must be"),
    ("python number", ('python = "3.11"', "python = 3.11"), "toolchain.python must be a non-empty"),
    (
        "lock escapes",
        ('lock = "build-requirements.txt"', 'lock = "../requirements.txt"'),
        "toolchain.lock must be a relative path",
    ),
    ("toolchain extra", ('python = "3.11"', 'python = "3.11"\npip = "24"'), "toolchain.pip"),
    ("top extra", ("[product]\n", "network = true\n[product]\n"), "unknown field network"),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(b[1], b[2]) for b in BAD_FIELDS], ids=[b[0] for b in BAD_FIELDS]
)
def test_bad_recipe_field_is_named(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    message = refused(tmp_path, replace_line(GOOD, *change))
    assert expected in message, message


BAD_SOURCES = [
    ("commit without git", f'commit = "{"c" * 40}"', "source.git is required with source.commit"),
    ("git without commit", 'git = "https://git.example.com/x.git"', "source.commit is required"),
    (
        "branch instead of commit",
        'git = "https://git.example.com/x.git"\ncommit = "main"',
        "source.commit must be a full lowercase commit id",
    ),
    (
        "short commit",
        f'git = "https://git.example.com/x.git"\ncommit = "{"c" * 12}"',
        "source.commit must be a full",
    ),
    (
        "uppercase commit",
        f'git = "https://git.example.com/x.git"\ncommit = "{"C" * 40}"',
        "source.commit must be a full lowercase",
    ),
    ("subdir escapes", 'subdir = "../other"', "source.subdir must be a relative path"),
    ("date negative", "date_epoch = -1", "source.date_epoch must be an integer"),
    ("unknown", 'branch = "main"', "unknown field source.branch"),
]


@pytest.mark.parametrize(
    ("table", "expected"), [(b[1], b[2]) for b in BAD_SOURCES], ids=[b[0] for b in BAD_SOURCES]
)
def test_bad_source_field_is_named(tmp_path: Path, table: str, expected: str) -> None:
    message = refused(tmp_path, GOOD + "\n[source]\n" + table + "\n")
    assert expected in message, message


def test_directory_source_date(tmp_path: Path) -> None:
    recipe = load_recipe(project_with(tmp_path, GOOD + "\n[source]\ndate_epoch = 1700000000\n"))
    assert recipe.source.date_epoch == 1700000000
    assert recipe.source.git is None


# --- hash locks ----------------------------------------------------------------------


def test_example_lock_parses_with_line_continuations_and_comments() -> None:
    data = (EXAMPLES / "hello-product" / "build-requirements.txt").read_bytes()
    lock = parse_lock(data, "build-requirements.txt")
    assert [(p.name, p.version) for p in lock.pins] == [
        ("build", "1.6.1"),
        ("flit_core", "4.2.0"),
        ("packaging", "26.4"),
        ("pyproject_hooks", "1.3.3"),
    ]
    assert all(len(p.hashes) == 1 and len(p.hashes[0]) == 64 for p in lock.pins)
    assert lock.sha256 == hashlib.sha256(data).hexdigest()
    # Provenance names packages the purl way: PEP 503 normalised.
    flit = lock.pins[1].descriptor()
    assert flit["uri"] == "pkg:pypi/flit-core@4.2.0"
    assert flit["annotations"]["allowedSha256"] == list(lock.pins[1].hashes)
    assert lock.descriptor() == {
        "name": "build-lock",
        "uri": "build-requirements.txt",
        "digest": {"sha256": lock.sha256},
    }


def test_lock_allows_several_hashes_extras_and_trailing_comments() -> None:
    text = (
        f"# header\n\nfoo[cli]==1.0 --hash=sha256:{HASH_A} --hash=sha256:{HASH_B}  # why\n"
        f"bar==2.0 \\\n  --hash=sha256:{HASH_A}\n"
    )
    lock = parse_lock(text.encode(), "lock.txt")
    assert [p.hashes for p in lock.pins] == [(HASH_A, HASH_B), (HASH_A,)]


def test_empty_lock_pins_nothing() -> None:
    assert parse_lock(b"# nothing needed\n", "lock.txt").pins == ()


BAD_LOCKS = [
    (
        "unpinned",
        f"ok==1.0 --hash=sha256:{HASH_A}\nbuild>=1.0 --hash=sha256:{HASH_A}\n",
        2,
        "'build>=1.0' is not a pinned requirement",
    ),
    ("bare name", f"ok==1.0 --hash=sha256:{HASH_A}\n\nbuild\n", 3, "not a pinned requirement"),
    ("url", f"https://example.com/x.whl --hash=sha256:{HASH_A}\n", 1, "not a pinned"),
    ("no hash", "build==1.6.1\n", 1, "build==1.6.1 has no --hash=sha256"),
    (
        "no hash after continuation",
        f"ok==1 \\\n  --hash=sha256:{HASH_A}\nx==2 \\\n\n",
        3,
        "x==2 has no --hash",
    ),
    (
        "index url",
        f"--index-url https://evil.example/simple\nok==1 --hash=sha256:{HASH_A}\n",
        1,
        "not a pinned requirement",
    ),
    ("md5 hash", f"ok==1 --hash=md5:{'a' * 32}\n", 1, "only --hash=sha256:<64 hex>"),
    ("short hash", "ok==1 --hash=sha256:abcd\n", 1, "only --hash=sha256"),
    ("other option", f"ok==1 --hash=sha256:{HASH_A} --no-binary=:all:\n", 1, "'--no-binary=:all:'"),
    ("marker", f"ok==1 ; python_version<'3' --hash=sha256:{HASH_A}\n", 1, "only --hash"),
    (
        "duplicate",
        f"a==1 --hash=sha256:{HASH_A}\nb==1 --hash=sha256:{HASH_A}\na==2 --hash=sha256:{HASH_B}\n",
        3,
        "a is pinned twice",
    ),
    (
        "duplicate normalised",
        f"flit_core==1 --hash=sha256:{HASH_A}\nFlit.Core==1 --hash=sha256:{HASH_A}\n",
        2,
        "Flit.Core is pinned twice",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "expected"), [b[1:] for b in BAD_LOCKS], ids=[b[0] for b in BAD_LOCKS]
)
def test_bad_lock_names_the_line(text: str, line: int, expected: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_lock(text.encode(), "build-requirements.txt")
    message = str(info.value)
    assert message.startswith(f"build-requirements.txt line {line}: "), message
    assert expected in message, message


def test_lock_must_be_utf8() -> None:
    with pytest.raises(MalformedError, match=r"build-requirements\.txt: not UTF-8"):
        parse_lock(b"\xff\xfe==1\n", "build-requirements.txt")


# --- the overt-tree/v1 digest ------------------------------------------------------------


def test_tree_digest_follows_the_documented_format(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "README").write_bytes(b"readme\n")
    (tmp_path / "src" / "pkg" / "mod.py").write_bytes(b"x = 1\n")
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(tmp_path / "run.sh", 0o755)
    os.symlink("src/pkg", tmp_path / "link")
    (tmp_path / "empty").mkdir()  # directories are not listed

    def line(content: bytes, mode: str, path: str) -> bytes:
        return f"{hashlib.sha256(content).hexdigest()} {mode} {path}\n".encode()

    expected = hashlib.sha256(
        line(b"readme\n", "100644", "README")
        + line(b"src/pkg", "120000", "link")
        + line(b"#!/bin/sh\n", "100755", "run.sh")
        + line(b"x = 1\n", "100644", "src/pkg/mod.py")
    ).hexdigest()
    assert tree_digest(tmp_path) == expected


def test_tree_digest_sees_content_mode_and_name_changes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n")
    first = tree_digest(tmp_path)
    (tmp_path / "a.txt").write_text("two\n")
    second = tree_digest(tmp_path)
    os.chmod(tmp_path / "a.txt", 0o755)
    third = tree_digest(tmp_path)
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    fourth = tree_digest(tmp_path)
    assert len({first, second, third, fourth}) == 4


def test_tree_digest_refuses_what_git_cannot_hold(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(MalformedError, match="only files and symlinks"):
        tree_digest(tmp_path)
