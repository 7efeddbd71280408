"""Scanning a benign corpus (real minimal documents, images, text and clean executables):
malware rules stay silent, espionage rules match documents and show what they would upload,
and a pathological scan is stopped by its time limit."""

from __future__ import annotations

import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from overt.errors import MalformedError
from overt.rules.lints import RuleContext
from overt.rules.parse import Finding
from overt.rules.scan import Match, scan_corpus

SAMPLES = Path(__file__).resolve().parent / "rules_samples"
SIGNATURE_BASE = Path(__file__).resolve().parents[2] / "shared" / "rules-corpus" / "signature-base"

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="{part}" ContentType="{type}"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="{part}"/></Relationships>'
)


def _ooxml(path: Path, part: str, content_type: str, body: str, stored: bool) -> None:
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES.format(part="/" + part, type=content_type))
        z.writestr("_rels/.rels", RELS.format(part=part))
        z.writestr(part, body)


def _docx(path: Path, text: str, stored: bool = False) -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
    )
    _ooxml(
        path,
        "word/document.xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        body,
        stored,
    )


def _xlsx(path: Path, text: str) -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>{text}</t></is></c></row>'
        "</sheetData></worksheet>"
    )
    _ooxml(
        path,
        "xl/worksheets/sheet1.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
        body,
        False,
    )


def _pdf(path: Path, text: str) -> None:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))


def _png(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _pe_stub(path: Path) -> None:
    """A minimal PE: DOS header and stub, PE signature, a COFF header, one empty section."""
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    dos[0x3C:0x40] = struct.pack("<I", 0x80)
    dos[0x40 : 0x40 + 39] = b"This program cannot be run in DOS mode."
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x14C, 1, 0, 0, 0, 0xE0, 0x0102)
    optional = bytearray(0xE0)
    optional[0:2] = struct.pack("<H", 0x10B)
    section = struct.pack(
        "<8sIIIIIIHHI", b".text", 0x1000, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020
    )
    body = bytes(dos) + coff + bytes(optional) + section
    path.write_bytes(body + b"\0" * (0x400 - len(body)) + b"\xc3" + b"\0" * 0x1FF)


def make_benign_corpus(root: Path) -> Path:
    """Ordinary files a customer has: documents, mail, images, text and clean programs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "docs").mkdir()
    _docx(root / "docs" / "minutes.docx", "Board minutes, March. Next meeting in April.")
    _docx(root / "docs" / "memo-stored.docx", "TOP SECRET//NOFORN Quarterly memo", stored=True)
    _xlsx(root / "docs" / "budget.xlsx", "Budget 2025 forecast")
    _pdf(root / "docs" / "invoice.pdf", "Invoice number 4711, due in 30 days")
    (root / "docs" / "plans.rtf").write_text(
        r"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Travel plans for the conference.\par}",
        encoding="ascii",
    )
    (root / "mail").mkdir()
    (root / "mail" / "visit.eml").write_text(
        "Received: from mail.example.org\nFrom: a@example.org\nTo: b@example.org\n"
        "Subject: Re: the visit\n\nSee you on Monday.\n",
        encoding="ascii",
    )
    (root / "images").mkdir()
    _png(root / "images" / "pixel.png")
    (root / "images" / "photo.jpg").write_bytes(
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\0" * 64
        + b"\xff\xd9"
    )
    (root / "notes.txt").write_text("Shopping: milk, bread. Call the plumber.\n", encoding="utf-8")
    (root / "bin").mkdir()
    shutil.copyfile("/bin/true", root / "bin" / "true")
    _pe_stub(root / "bin" / "stub.exe")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_benign_corpus(tmp_path_factory.mktemp("benign") / "corpus")


def test_corpus_files_are_what_they_claim(corpus: Path) -> None:
    with zipfile.ZipFile(corpus / "docs" / "minutes.docx") as z:
        assert "word/document.xml" in z.namelist()
    assert (corpus / "docs" / "invoice.pdf").read_bytes().startswith(b"%PDF-1.4")
    assert (corpus / "bin" / "stub.exe").read_bytes()[:2] == b"MZ"
    assert (corpus / "bin" / "true").read_bytes()[:4] == b"\x7fELF"


def test_malware_rules_do_not_match_benign_files(corpus: Path) -> None:
    problems: list[Finding] = []
    assert scan_corpus([SAMPLES / "benign"], corpus, problems=problems) == []
    assert problems == []


def test_espionage_rules_match_documents_and_show_uploads(corpus: Path) -> None:
    contexts = {
        "Upload_Invoices_Anywhere": RuleContext(action="upload-sample"),
        "Upload_Docx_By_Extension": RuleContext(action="upload-sample", notify=False),
    }
    matches = scan_corpus([SAMPLES / "espionage"], corpus, contexts)
    by_rule: dict[str, set[str]] = {}
    for m in matches:
        by_rule.setdefault(m.rule, set()).add(m.file)
    assert by_rule["Marking_Plain_Top_Secret"] == {"docs/memo-stored.docx"}
    assert "docs/memo-stored.docx" in by_rule["Marking_Negated_Executable"]
    assert by_rule["Docs_Mail_Store"] == {"mail/visit.eml"}
    assert by_rule["Upload_Docx_By_Extension"] == {"docs/memo-stored.docx", "docs/minutes.docx"}
    assert Match("Upload_Invoices_Anywhere", "docs/invoice.pdf", "upload-sample") in matches
    uploads = {m.file for m in matches if m.action == "upload-sample"}
    assert uploads == {"docs/invoice.pdf", "docs/memo-stored.docx", "docs/minutes.docx"}
    assert all(m.action == "detect" for m in matches if m.rule.startswith("Marking_"))
    assert matches == sorted(matches, key=lambda m: (m.file, m.rule))


def test_signature_base_is_quiet_on_the_benign_corpus(corpus: Path) -> None:
    if not SIGNATURE_BASE.is_dir():
        pytest.fail(f"the public rule corpus is missing: {SIGNATURE_BASE}")
    assert scan_corpus([SIGNATURE_BASE], corpus) == []


def test_a_pathological_scan_is_stopped(tmp_path: Path) -> None:
    rules = tmp_path / "slow.yar"
    rules.write_text(
        r"rule Slow { strings: $a = /[a-z]{1,64}[0-9]{1,64}[a-z]{1,64}Q/ condition: $a }",
        encoding="ascii",
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "big.txt").write_bytes(b"a1" * (16 * 1024 * 1024))
    (corpus / "small.txt").write_bytes(b"abc12abcQ")
    problems: list[Finding] = []
    matches = scan_corpus([rules], corpus, timeout_s=1, problems=problems)
    assert matches == [Match("Slow", "small.txt", "detect")]
    assert [(p.file, p.lint, p.severity) for p in problems] == [("big.txt", "scan", "error")]


def test_rules_that_do_not_compile_cannot_be_tested(tmp_path: Path, corpus: Path) -> None:
    bad = tmp_path / "bad.yar"
    bad.write_text("rule Bad { condition: nope }", encoding="ascii")
    with pytest.raises(MalformedError, match="do not compile"):
        scan_corpus([bad], corpus)
    with pytest.raises(MalformedError, match="must be a directory"):
        scan_corpus([bad], tmp_path / "missing")
