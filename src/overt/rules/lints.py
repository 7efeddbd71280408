"""The rule audit: lints that tell a malware rule from a document-search tool.

A detection rule runs on every file of every customer. Written to find
documents instead of malware ("TOP SECRET" in .docx files, uploaded silently)
it is an espionage tool with the vendor's signature on it. Each lint reads a
rule's strings (text, hex decoded as ASCII, UTF-8, UTF-16 and legacy code
pages, regexes by the strings they match) and its condition, and the
severity combines the signals, because no single one decides:

* An *anchor* limits what a rule can match to malware: the condition requires
  an executable (MZ at 0, the pe/elf/macho/dotnet modules), or a string that is
  code or exploit (a macro's AutoOpen, Equation.3, `<?php eval`, a PDB path).
  The condition is evaluated as a formula, so `uint16(0) == 0x5A4D or $secret`
  is *not* anchored, nor is `not pe.is_pe and $secret`.
* A classification marking (TOP SECRET, NOFORN, 绝密 ...) that the rule can
  match without an anchor is high: no malware needs it. With an anchor (a
  lure quoting "Confidential"), it is medium or low.
* Documents, mail stores and personal identifiers (e-mail addresses, user
  profile paths) are common in real rules (maldocs, phishing, C2 domains);
  alone they are medium or low, together or without an anchor they rise.
* The action decides the damage: uploading or silently handling files that
  need not be executables is high whatever the strings say.

Calibration: fewer than 1% of the public signature-base's rules get a high
finding (tests/test_rules_corpus.py), while every espionage-style rule in
tests/rules_samples/ does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from overt.rules.parse import (
    Cond,
    Finding,
    Rule,
    RuleString,
    SyntaxProblem,
    Token,
    collect_rule_files,
    hex_segments,
    parse_condition,
    parse_file,
    regex_samples,
    text_bytes,
    unescape,
    walk,
)

HIGH = {"error", "high"}
SEVERITIES = ("error", "high", "medium", "low")
ACTIONS = ("detect", "quarantine", "upload-sample")


@dataclass(frozen=True)
class RuleContext:
    """How a rule is deployed: from the release manifest, not the rule text."""

    action: str = "detect"  # detect | quarantine | upload-sample
    notify: bool = True  # False: the customer is not told when it matches
    audience: tuple[str, ...] = ("all",)  # customer groups that receive the rule


@dataclass(frozen=True)
class Lint:
    id: str
    severity: str  # the usual severity; findings say when signals raise or lower it
    title: str
    explanation: str  # for a reader who is not a detection engineer


def _lints(*items: Lint) -> dict[str, Lint]:
    return {lint.id: lint for lint in items}


LINTS: dict[str, Lint] = _lints(
    Lint(
        "syntax",
        "error",
        "Rule file cannot be read",
        "The file is not valid YARA at the given line. A rule that cannot be read cannot be "
        "audited, so the release is refused until it is fixed.",
    ),
    Lint(
        "encoding",
        "error",
        "Rule file is not UTF-8",
        "Rule files must be UTF-8 text. Other encodings can make the same bytes read "
        "differently to a reviewer and to the scanner.",
    ),
    Lint(
        "size",
        "error",
        "Rule file too large",
        "The file is larger than the limit for a rule file (8 MiB, far above real ones), so it "
        "was not read: a file that large is a mistake or an attempt to exhaust the tools.",
    ),
    Lint(
        "include",
        "error",
        "Rule file includes another file",
        "An include pulls in rules from a file the audit may never see. Every rule that "
        "reaches customers must be in the audited set itself.",
    ),
    Lint(
        "compile",
        "error",
        "Rule does not compile",
        "The scanning engine (yara-x) rejects the rule. Errors about unknown modules are "
        "limits of the engine; they still mean the rule would not run as written.",
    ),
    Lint(
        "compile-timeout",
        "error",
        "Compilation took too long",
        "Compiling the file did not finish within the time limit, which points to a "
        "pathological rule (for example an exploding regular expression).",
    ),
    Lint(
        "scan",
        "error",
        "File could not be scanned",
        "Scanning a file of the test corpus failed or exceeded its time limit. A rule "
        "that makes ordinary files slow to scan is itself a problem.",
    ),
    Lint(
        "marking",
        "high",
        "Looks for classification or confidentiality markings",
        "The rule searches for words that mark documents as classified or confidential "
        "(TOP SECRET, NOFORN, STRENG GEHEIM, 绝密 ...), possibly hidden in hex, UTF-16, a "
        "regular expression or split over several strings. Malware does not need such "
        "words; a rule that finds them finds a customer's secret documents. High when the "
        "rule can match without also requiring an executable, script or exploit.",
    ),
    Lint(
        "document-target",
        "medium",
        "Targets documents without any sign of malware",
        "The rule is about office documents, PDFs, mail stores or document file names, and "
        "nothing in it (an executable header, a macro, an exploit marker) limits it to "
        "malicious ones. It can therefore match a customer's ordinary documents.",
    ),
    Lint(
        "identifier",
        "medium",
        "Names a person, host or organisation",
        "The rule contains e-mail addresses, user-profile paths (C:\\Users\\name), host "
        "names, domains or IP addresses. Malware rules often name the attacker's servers; "
        "but a rule that finds files mentioning a person or an organisation, especially in "
        "documents, is a search for that person's files.",
    ),
    Lint(
        "watchlist",
        "high",
        "Contains a watch-listed term",
        "The rule contains a term from the reviewer's watch list (project code names, "
        "names of people or organisations that must never be searched for).",
    ),
    Lint(
        "upload-sample",
        "high",
        "Uploads files that need not be malware",
        "The rule is deployed to upload the files it matches to the vendor, and it can "
        "match files that are not executables, scripts or exploits, such as documents. "
        "That copies customers' files to the vendor.",
    ),
    Lint(
        "silent",
        "high",
        "Acts without telling the customer",
        "The rule is deployed with notification turned off. A silent rule that can match "
        "ordinary files is how a search would be hidden from the people it searches.",
    ),
    Lint(
        "narrow-audience",
        "medium",
        "Sent only to some customers",
        "The rule goes to a subset of customers instead of everyone. Malware is rarely "
        "specific to one customer; a rule aimed at a few, especially one that uploads, is "
        "how a targeted search would look.",
    ),
    Lint(
        "provenance",
        "low",
        "Missing provenance",
        "The rule does not say who wrote it (author) or what it is based on (reference, or "
        "the hash of a sample). Without them a reviewer cannot check why it exists.",
    ),
    Lint(
        "broad",
        "medium",
        "Matches far too much",
        "The rule can match using only very short or very common strings, or none at all, "
        "so it will match many ordinary files.",
    ),
    Lint(
        "condition",
        "low",
        "Condition not fully understood",
        "The audit could not read the condition's structure; it assumed the worst (that any "
        "string can match alone). The engine may still accept the rule.",
    ),
)


# --- keyword tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Keyword:
    label: str
    strong: bool
    min_ratio: float = 0.0  # share of the string the word must make up to count
    boundary: bool = True  # a letter must not touch either end (not for CJK)


def _kw(strong: bool, *words: str, min_ratio: float = 0.0) -> list[_Keyword]:
    return [_Keyword(w, strong, min_ratio, not _is_cjk(w)) for w in words]


def _is_cjk(word: str) -> bool:
    return any(
        "\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af"
        for c in word
    )


_MARKINGS: list[_Keyword] = [
    # English-language classification and handling markings
    *_kw(
        True,
        "TOP SECRET",
        "TS//SCI",
        "NOFORN",
        "ORCON",
        "FOUO",
        "FOR OFFICIAL USE ONLY",
        "EYES ONLY",
        "COSMIC TOP SECRET",
        "NATO SECRET",
        "NATO CONFIDENTIAL",
        "NATO RESTRICTED",
        "OFFICIAL-SENSITIVE",
        "CONTROLLED UNCLASSIFIED",
        "STRICTLY CONFIDENTIAL",
        "PRIVATE AND CONFIDENTIAL",
        "SECRET NOFORN",
        "LIMDIS",
        "EXDIS",
    ),
    *_kw(False, "CONFIDENTIAL", "CLASSIFIED", "INTERNAL USE ONLY", min_ratio=0.5),
    *_kw(False, "SECRET", "RESTRICTED", min_ratio=0.75),
    # German
    *_kw(
        True,
        "STRENG GEHEIM",
        "VS-NUR FÜR DEN DIENSTGEBRAUCH",
        "NUR FÜR DEN DIENSTGEBRAUCH",
        "VS-NFD",
        "VS-VERTRAULICH",
        "VERSCHLUSSSACHE",
    ),
    *_kw(False, "GEHEIM", "VERTRAULICH", min_ratio=0.5),
    # French
    *_kw(
        True,
        "TRÈS SECRET",
        "TRES SECRET",
        "SECRET DÉFENSE",
        "SECRET DEFENSE",
        "CONFIDENTIEL DÉFENSE",
        "CONFIDENTIEL DEFENSE",
        "DIFFUSION RESTREINTE",
    ),
    *_kw(False, "CONFIDENTIEL", min_ratio=0.5),
    # Italian, Spanish, Portuguese
    *_kw(True, "SEGRETISSIMO", "RISERVATISSIMO", "ALTO SECRETO", "ULTRASECRETO", "ULTRA-SECRETO"),
    *_kw(False, "SEGRETO", "RISERVATO", "SECRETO", "CONFIDENCIAL", "RESERVADO", min_ratio=0.5),
    # Dutch, Nordic, Polish, Czech, Turkish
    *_kw(True, "ZEER GEHEIM", "STG. GEHEIM", "KVALIFICERAT HEMLIG", "ŚCIŚLE TAJNE"),
    *_kw(True, "PŘÍSNĚ TAJNÉ", "ÇOK GİZLİ"),
    *_kw(False, "HEMLIG", "TAJNE", "GIZLI", min_ratio=0.5),
    # Russian, Ukrainian
    *_kw(
        True,
        "СОВЕРШЕННО СЕКРЕТНО",
        "ОСОБОЙ ВАЖНОСТИ",
        "ДЛЯ СЛУЖЕБНОГО ПОЛЬЗОВАНИЯ",
        "ЦІЛКОМ ТАЄМНО",
        "ДЛЯ СЛУЖБОВОГО КОРИСТУВАННЯ",
    ),
    *_kw(False, "СЕКРЕТНО", "ТАЄМНО", "КОНФИДЕНЦИАЛЬНО", min_ratio=0.5),
    # Chinese, Japanese, Korean
    *_kw(True, "绝密", "絕密", "机密", "機密", "国家秘密", "國家秘密", "密级", "極秘", "社外秘"),
    *_kw(True, "극비", "대외비", "3급비밀", "2급비밀", "1급비밀"),
    *_kw(False, "秘密", min_ratio=0.5),
    *_kw(False, "비밀", min_ratio=0.75),
    # Arabic, Persian, Hebrew
    *_kw(True, "سري للغاية", "سري جدا", "به کلی سری", "סודי ביותר"),
    *_kw(False, "سري", "سری", "محرمانه", "סודי", min_ratio=0.5),
]
# Markings whose separators matter, matched on the casefolded text itself.
_MARKING_FORMS = re.compile(
    r"(?<![a-z])(?:top\s*secret|secret|confidential|restricted|ts|s|c)\s*//(?=\s*[a-z])"
    r"|//\s*(?:noforn|rel\s+to|orcon|fvey|sci|nf|fgi)(?![a-z])",
)


def _compress(text: str) -> str:
    """Casefolded letters and digits only: 'T.O.P_S E-C R\\0E T' -> 'topsecret'."""
    return _NOT_ALNUM.sub("", text.casefold())


_NOT_ALNUM = re.compile(r"[\W_]+")
_LEET = str.maketrans("013457$@", "oieastsa")
# Cyrillic and Greek letters that look Latin: "ТОР SЕСRЕТ" written to dodge a search.
_CONFUSABLE = str.maketrans("авеснкмортхуіјѕαβεικνορτυχ", "abechkmoptxyijsabeiknoptyx")


def _keyword_index(
    keywords: list[_Keyword],
) -> tuple[re.Pattern[str], dict[str, list[tuple[_Keyword, re.Pattern[str]]]]]:
    """One search over compressed text, then a check of each hit in the readable text."""
    by_compressed: dict[str, list[tuple[_Keyword, re.Pattern[str]]]] = {}
    for kw in keywords:
        letters = _compress(kw.label)
        sep = r"[\W_]{0,3}"
        body = sep.join(re.escape(c) for c in letters)
        if kw.boundary:
            body = rf"(?<![^\W\d_]){body}(?![^\W\d_])"
        by_compressed.setdefault(letters, []).append((kw, re.compile(body)))
    ordered = sorted(by_compressed, key=len, reverse=True)
    return re.compile("|".join(re.escape(k) for k in ordered)), by_compressed


_MARKING_SEARCH, _MARKING_CHECK = _keyword_index(_MARKINGS)
_ALL_MARKING_LETTERS = "|".join(_MARKING_CHECK)  # is a piece part of any marking?

# --- what makes a rule about malware (anchors) -------------------------------------------

_EXEC_TEXT = re.compile(
    r"this program cannot be run in dos mode|this program must be run under win32"
    r"|!this program|\.pdb(?![a-z])|_corexemain|_cordllmain|mscoree\.dll"
    r"|__libc_start_main|glibc_2\.|/lib64/ld-linux|\.gnu\.hash|go\.buildid|runtime\.gopanic",
)
_CODE_TEXT = re.compile(
    "|".join(
        [
            # VBA and Office macros
            r"auto_?open|auto_?exec|auto_?close|document_(?:open|close)|workbook_(?:open|activate)",
            r"createobject|getobject\(|wscript|shell\(|shell\.application|shellexecute",
            r"vbaproject|_vba_project|attribute vb_|vb_name|environ\(|callbyname|strreverse",
            r"chrw?\(|executeexcel4macro|=exec\(|declare (?:ptrsafe )?(?:function|sub)",
            r"lib \"(?:kernel32|user32|ntdll|shell32)|msxml2\.xmlhttp|adodb\.stream",
            r"scripting\.filesystemobject|thisdocument|activedocument\.|vba7|xlm4?\b",
            # command lines
            r"cmd(?:\.exe)? */c|powershell(?:\.exe)? +-|javascript:|vbscript:|activexobject",
            r"invoke-expression|\biex\b|frombase64string|-enc(?:odedcommand)? |new-object",
            r"net\.webclient|downloadstring|downloadfile|start-process|add-type",
            # exploit documents
            r"equation\.3|equation native|microsoft equation|objupdate|\\objdata|\\objocx",
            r"\\objemb|\\objautlink|\\objlink|objclass|ole2link|oleobject|mhtml:|ms-msdt",
            r"ms-its:|search-ms:|targetmode=\"?external|attachedtemplate|ddeauto|\\dde",
            r"/javascript|/js\b|/openaction|/launch|/aa\b|/embeddedfile|/richmedia|/xfa\b",
            r"/submitform|/gotoe|/importdata|jbig2decode|util\.printf|collab\.geticon",
            r"getannots|media\.newplayer|%u9090|%u0c0c|\\x90\\x90|shellcode|unescape\(",
            r"fromcharcode|eval\(|document\.write\(|<script|clsid:|cve-\d{4}-\d+",
            # native API, as in malware strings
            r"virtualalloc|virtualprotect|createremotethread|writeprocessmemory|ntcreate",
            r"zwcreate|rtlmovememory|winexec|createprocess|urldownloadtofile|internetopen",
            r"httpsendrequest|getprocaddress|loadlibrary|setwindowshookex|getasynckeystate",
            r"isdebuggerpresent",
            # web shells and scripts
            r"<\?php|<\?=|assert\(|base64_decode|gzinflate|str_rot13|\$_(?:post|get|request)",
            r"\$_(?:cookie|server|files)|passthru|shell_exec|system\(|exec\(|popen|proc_open",
            r"<%@|<%|request\.form|request\.querystring|request\.item|response\.write",
            r"server\.createobject|runtime\.getruntime|processbuilder|system\.diagnostics",
            r"process\.start|#!/|/dev/tcp|import (?:os|subprocess|socket)|os\.system",
            r"subprocess\.|sekurlsa|reflectiveloader",
            r"system\.reflection|system\.runtime\.interopservices|dllimport",
        ]
    )
)
# Names of programs, libraries and tools: malware rules are full of them, but so are
# IT documents, so they anchor nothing when the rule looks for classification markings.
_TOOL_TEXT = re.compile(
    r"powershell|cmd\.exe|mshta|rundll32|regsvr32|certutil|bitsadmin|schtasks|wmic|cscript"
    r"|wscript\.exe|kernel32|ntdll|advapi32|ws2_32|wininet|\.dll\b|\.sys\b|\.exe\b|\.bat\b"
    r"|\.ps1\b|\.vbs\b|\.hta\b|\.lnk\b|\.scr\b|/bin/sh|/bin/bash|/etc/passwd|/etc/shadow"
    r"|chmod \+x|crontab|mimikatz|meterpreter|metasploit|cobaltstrike|beacon\.",
)
_EXEC_MAGIC: dict[bytes, str] = {
    b"MZ": "a Windows executable (MZ)",
    b"\x7fELF": "a Linux executable (ELF)",
    b"\xfe\xed\xfa\xce": "a macOS executable (Mach-O)",
    b"\xfe\xed\xfa\xcf": "a macOS executable (Mach-O)",
    b"\xce\xfa\xed\xfe": "a macOS executable (Mach-O)",
    b"\xcf\xfa\xed\xfe": "a macOS executable (Mach-O)",
    b"\xca\xfe\xba\xbe": "a Java class or Mach-O universal binary",
    b"dex\n": "an Android executable (DEX)",
}
_DOC_MAGIC: dict[bytes, str] = {
    b"PK\x03\x04": "ZIP container (Office Open XML, OpenDocument)",
    b"%PDF": "PDF",
    b"\xd0\xcf\x11\xe0": "OLE compound file (Word, Excel, Outlook .msg)",
    b"{\\rt": "RTF",
    b"!BDN": "Outlook mail store (PST/OST)",
}
_EXEC_MODULES = {"pe", "elf", "macho", "dotnet", "dex", "cuckoo", "lnk"}
_FILE_EXTERNALS = {"filename", "filepath", "extension", "filetype", "owner"}

_DOC_TEXT = re.compile(
    r"(?<![a-z])(?:word|xl|ppt)/(?:document|worksheets|slides|media|_rels|styles|settings|"
    r"workbook|sharedstrings|presentation|theme|header|footer|comments|vbaproject)"
    r"|\[content_types\]\.xml|docprops/|application/vnd\.(?:openxmlformats|oasis\.opendocument|"
    r"ms-excel|ms-powerpoint|ms-word)|application/(?:pdf|msword)|mimetypeapplication/vnd"
    r"|%pdf-|\{\\rtf|(?<![a-z])(?:received|return-path|message-id|x-mailer|delivered-to"
    r"|x-originating-ip|mime-version|subject|thread-topic):"
)
_DOC_EXT = re.compile(
    r"\.(?:docx?|docm|dot[xm]?|xls[xmb]?|xlt[xm]?|ppt[xm]?|pps[xm]?|pdf|odt|ods|odp|odg|rtf"
    r"|msg|eml|pst|ost|mbox|pages|numbers|vsdx?|xps|hwpx?|wpd|one|kdbx|pgp|gpg)(?![a-z0-9])"
)
# One pass over a string finds every kind of sign; the group says which.
_SIGNS = re.compile(
    "|".join(
        f"(?P<{name}>{pattern.pattern})"
        for name, pattern in (
            ("exec", _EXEC_TEXT),
            ("code", _CODE_TEXT),
            ("tool", _TOOL_TEXT),
            ("doc", _DOC_TEXT),
        )
    )
)
_META_ANCHOR = re.compile(
    r"cve-\d{4}-\d+|exploit|maldoc|macro|malware|malicious|webshell|web shell|backdoor"
    r"|trojan|ransom|phish|implant|loader|dropper|\brat\b|stealer|hack ?tool|apt\d*\b"
    r"|shellcode|payload|keylogger|c2\b|cobalt",
)
_COMMON = {
    "http",
    "https",
    "http://",
    "https://",
    "www.",
    ".com",
    "html",
    "<html",
    "<?xml",
    "microsoft",
    "windows",
    "copyright",
    "this",
    "data",
    "file",
    "text",
    "null",
    "true",
    "false",
    "user",
    "name",
    "password",
    "string",
    "%pdf",
    "pk\x03\x04",
}

# --- identifiers ---------------------------------------------------------------------------

_EMAIL = re.compile(r"[a-z0-9._%+-]{1,64}@(?:[a-z0-9-]{1,63}\.)+[a-z]{2,24}(?![a-z0-9-])")
_USER_PATH = re.compile(
    r"(?:[a-z]:\\+(?:users|documents and settings)\\+|/home/|/users/)"
    r"([^\\/\s\"'*%$<>|:?{}\[\]]{2,64})"
)
_GENERIC_USERS = {
    "public",
    "default",
    "default user",
    "all users",
    "administrator",
    "admin",
    "user",
    "users",
    "guest",
    "shared",
    "root",
    "username",
    "localservice",
    "networkservice",
    "systemprofile",
    "appdata",
    "all",
}
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\d.])"
)
_BORING_IPS = {"0.0.0.0", "127.0.0.1", "255.255.255.255", "255.255.255.0", "1.1.1.1", "8.8.8.8"}
_TLDS = (
    "com|net|org|info|biz|gov|mil|edu|int|io|co|me|tv|cc|ws|top|xyz|online|site|club|shop"
    "|live|dev|cloud|tech|space|website|store|link|click|pw|tk|ml|ga|cf|gq|su|ru|cn|ir|kp"
    "|ua|by|kz|de|fr|uk|us|jp|kr|tw|hk|in|br|nl|it|es|ch|at|be|se|no|dk|fi|pl|cz|il|tr|sa|ae"
    "|qa|eg|pk|vn|th|id|my|sg|au|nz|ca|mx|ar|za|ng|onion|local|lan|corp|internal|intranet|intra"
)
_DOMAIN = re.compile(
    rf"(?<![\w.@-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![\w-])"
)
_UNC = re.compile(r"(?<![\w:\\])\\\\([a-z0-9][a-z0-9._-]{1,62})\\")
# Infrastructure every program and document names; not anyone's identity.
_BORING_DOMAINS = re.compile(
    r"(?:^|\.)(?:microsoft|windows|windowsupdate|msft|live|office|w3|openxmlformats|adobe"
    r"|apple|google|googleapis|gstatic|mozilla|apache|python|github|githubusercontent"
    r"|verisign|digicert|symantec|thawte|globalsign|sectigo|comodo|comodoca|usertrust"
    r"|entrust|godaddy|letsencrypt|xml|purl|ietf|oasis-open|java|oracle|example"
    r"|schemas|ns\.adobe)\.(?:com|org|net)$|^(?:localhost|schemas\.microsoft\.com)$"
)
_INTERNAL_TLD = re.compile(r"\.(?:local|lan|corp|internal|intranet|intra)$")
_PERSONAL = ("e-mail address", "user-profile path", "internal host")


# --- facts about one string or literal ---------------------------------------------------


@dataclass
class _Facts:
    """What one string, or one literal of the condition, is about."""

    label: str  # "$s1 (line 12)" or "the condition"
    line: int
    shown: str  # a short, readable rendering of what it searches for
    exec_anchor: str = ""  # why it marks an executable, anywhere in the file
    code_anchor: str = ""  # why it marks code, a macro or an exploit
    tool_anchor: str = ""  # it names a program or tool (weaker: documents do too)
    binary: bool = False  # machine code or other binary data, not text
    magic: bytes = b""  # its first bytes, for `$x at 0`
    doc_format: list[str] = field(default_factory=list)
    doc_mention: list[str] = field(default_factory=list)
    markings: list[tuple[str, bool, bool]] = field(default_factory=list)  # label, strong, dominant
    idents: list[tuple[str, str]] = field(default_factory=list)  # kind, value
    watch: list[str] = field(default_factory=list)
    weak: bool = False  # too short or too common to mean anything
    compressed: str = ""  # for markings split over several strings

    @property
    def anchor(self) -> str:
        return self.exec_anchor or self.code_anchor


_LEGACY_CODECS = ("cp1251", "koi8_r", "gbk", "big5", "shift_jis", "euc_kr", "cp1256", "cp1255")
_HIGH_RUN = re.compile(rb"[^\x00-\x1f]*[\x80-\xff][^\x00-\x1f]*")


def _byte_readings(data: bytes) -> tuple[list[str], list[str]]:
    """Ways the bytes may be text: (the likely ones, the merely possible ones).

    Likely: ASCII/UTF-8, and ASCII in UTF-16 with its zero bytes dropped.
    Possible: UTF-16 of other scripts either way round, legacy code pages
    (Cyrillic, Chinese, Japanese, Korean, Arabic, Hebrew). Markings and
    watch-listed words are looked for in both; the other signs only in the
    likely ones (a macro keyword is not written in Shift-JIS).
    """
    if data.isascii() and b"\x00" not in data:
        return [data.decode("ascii")], []
    likely = [data.decode("utf-8", "replace")]
    possible: list[str] = []
    if b"\x00" in data:
        likely.append(data.replace(b"\x00", b"").decode("latin-1"))
    if _is_binary(data):
        return likely, possible  # machine code: other scripts would be noise
    if len(data) >= 2:
        possible.append(data.decode("utf-16-le", "replace"))
        possible.append(data[1:].decode("utf-16-le", "replace"))
        possible.append(data.decode("utf-16-be", "replace"))
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            possible.append(data.decode("latin-1"))
            for run in _HIGH_RUN.findall(data):
                if len(run) >= 4:
                    possible.extend(run.decode(codec, "ignore") for codec in _LEGACY_CODECS)
    return likely, possible


_CONTROL_BYTES = bytes([*(b for b in range(0x20) if b not in (9, 10, 13)), 0x7F])
_TEXT_BYTES = bytes([9, 10, 13, *range(0x20, 0x7F)])


def _is_binary(data: bytes) -> bool:
    """Machine code or binary structures: many control bytes, and not UTF-16 text."""
    if len(data) < 6:
        return False
    control = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if control * 4 < len(data):
        return False
    odd = data[1::2]
    utf16 = odd.count(0) * 10 >= len(odd) * 8 and not data[0::2].translate(None, _TEXT_BYTES)
    return not utf16


def _show(data: bytes | str) -> str:
    """A short, printable rendering: UTF-8 text as text, other bytes one char each."""
    if isinstance(data, str):
        text = data[:61]
    else:
        head = data[:244]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            cut = exc.start >= len(head) - 3 and exc.start > 0  # a character cut in two
            text = head[: exc.start].decode("utf-8") if cut else head[:61].decode("latin-1")
        text = text[:61]
    shown = "".join(c if c.isprintable() else "." for c in text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class Auditor:
    """The lints with one watch list, reused for many rules (lint_paths, diff_rules)."""

    def __init__(self, watchlist: Iterable[str]) -> None:
        self.terms = {_compress(t): t.strip() for t in watchlist if len(_compress(t)) >= 3}
        terms = sorted(self.terms, key=len)
        self.watch = re.compile("|".join(re.escape(t) for t in reversed(terms))) if terms else None

    def lint(
        self,
        rule: Rule,
        context: RuleContext = RuleContext(),
        rules: Mapping[str, Rule] | None = None,
    ) -> list[Finding]:
        """lint_rule, without building the watch list again."""
        return _lint(rule, context, self, rules)

    def string_facts(self, s: RuleString) -> _Facts:
        label = f"{s.identifier} (line {s.line})" if s.line else s.identifier
        facts = _Facts(label, s.line, "")
        views: list[bytes] = []
        readings: list[str] = []
        if s.kind == "text":
            data = text_bytes(s.value)
            views = [data]
            facts.shown = _show(data)
            facts.weak = len(data) < 4 or data.lower() in _COMMON_BYTES or len(set(data)) == 1
        elif s.kind == "hex":
            segments = hex_segments(s.value)
            joined = b"".join(segments)
            # Each run alone too (junk around a word hides its word boundary), if long enough.
            views = [joined, *(seg for seg in segments if len(seg) >= 3 and seg != joined)]
            facts.shown = _show(joined) if joined else s.value
            longest = max((len(seg) for seg in segments), default=0)
            total = len(joined)
            facts.weak = total < 5 or (longest < 3 and total < 8) or joined.lower() in _COMMON_BYTES
            facts.binary = _is_binary(joined)
        else:
            samples = regex_samples(s.value)
            facts.shown = f"/{s.value}/" if len(s.value) <= 58 else f"/{s.value[:55]}.../"
            for sample in samples:
                readings.append(sample)
                if any(ord(c) > 127 or c == "\x00" for c in sample):
                    views.append(
                        sample.encode("latin-1")
                        if all(ord(c) < 256 for c in sample)
                        else sample.encode("utf-8")
                    )
            longest = max((len(x) for x in samples), default=0)
            facts.weak = longest < 4
        if s.kind == "hex":
            first = s.value.split(" ", 1)[0]
            facts.magic = views[0][:4] if len(first) == 2 and "?" not in first else b""
        elif views:
            facts.magic = views[0][:4]
        possible: list[str] = []
        for view in views:
            likely, maybe = _byte_readings(view)
            readings.extend(likely)
            possible.extend(maybe)
            self._magic(view, facts)
        self._read(readings, facts, possible)
        return facts

    def literal_facts(self, token: Token, line: int) -> _Facts:
        if token.kind == "regex":
            body = token.text[1 : token.text.rindex("/")]
            readings = regex_samples(body)
        else:
            value = unescape(token.text[1:-1])
            readings = [value]
        facts = _Facts("the condition", line, _show(token.text))
        longest = max((len(r) for r in readings), default=0)
        facts.weak = longest < 4 or any(r.casefold() in _COMMON for r in readings)
        self._read(readings, facts)
        return facts

    @staticmethod
    def _magic(view: bytes, facts: _Facts) -> None:
        for magic, what in _DOC_MAGIC.items():
            if magic in view:
                facts.doc_format.append(f"the {what} signature")
        if b"This program cannot be run" in view or b"This program must be run" in view:
            facts.exec_anchor = "an embedded DOS/PE header"

    def _read(self, readings: list[str], facts: _Facts, possible: Iterable[str] = ()) -> None:
        compressed_all: list[str] = []
        readings = readings + [
            unicodedata.normalize("NFKC", r) for r in readings if not r.isascii()
        ]
        for reading in dict.fromkeys(possible):
            if reading not in readings:
                compressed = _compress(reading)
                self._markings(reading, reading.casefold(), compressed, facts)
                if self.watch is not None:
                    facts.watch.extend(
                        self.terms[m.group()] for m in self.watch.finditer(compressed)
                    )
        for reading in dict.fromkeys(readings):
            low = reading.casefold()
            for m in _SIGNS.finditer(low):
                kind, found = m.lastgroup, repr(m.group())
                if kind == "exec" and not facts.exec_anchor:
                    facts.exec_anchor = f"{found}, a mark of compiled executables"
                elif kind == "code" and not facts.code_anchor:
                    facts.code_anchor = f"{found}, a mark of code, macros or exploits"
                elif kind == "tool" and not facts.tool_anchor:
                    facts.tool_anchor = f"{found}, the name of a program or tool"
                elif kind == "doc":
                    facts.doc_format.append(found)
            for ext in _DOC_EXT.findall(low):
                share = len(ext) * 2 >= len(low.strip("*\\/ \x00"))
                (facts.doc_format if share else facts.doc_mention).append(f"{ext!r}")
            compressed = _compress(reading)
            compressed_all.append(compressed)
            self._markings(reading, low, compressed, facts)
            if "@" in low or "." in low or "\\" in low or "/" in low:
                _identifiers(low, facts)
            if self.watch is not None:
                facts.watch.extend(self.terms[m.group()] for m in self.watch.finditer(compressed))
        facts.compressed = max(compressed_all, key=len, default="")

    @staticmethod
    def _markings(reading: str, low: str, compressed: str, facts: _Facts) -> None:
        variants = [compressed]
        for table in (_LEET, _CONFUSABLE):
            other = compressed.translate(table)
            if other != compressed:
                variants.append(other)
        for variant in variants:
            for m in _MARKING_SEARCH.finditer(variant):
                for kw, check in _MARKING_CHECK[m.group()]:
                    if not any(
                        check.search(text)
                        for text in (low, low.translate(_LEET), low.translate(_CONFUSABLE))
                    ):
                        continue
                    ratio = len(m.group()) / max(len(variant), 1)
                    if ratio < kw.min_ratio:
                        continue
                    facts.markings.append((kw.label, kw.strong, ratio >= 0.5))
        m2 = _MARKING_FORMS.search(low)
        if m2:
            form = re.sub(r"\s+", " ", m2.group().upper())
            facts.markings.append((form + ("..." if form.endswith("//") else ""), True, True))


_COMMON_BYTES = {c.encode("latin-1") for c in _COMMON}


def _identifiers(low: str, facts: _Facts) -> None:
    emails = _EMAIL.findall(low)
    for email in emails:
        facts.idents.append(("e-mail address", email))
    for m in _USER_PATH.finditer(low):
        name = m.group(1).strip()
        if name not in _GENERIC_USERS and not name.startswith("%"):
            facts.idents.append(("user-profile path", m.group()))
    for m in _UNC.finditer(low):
        host = m.group(1)
        if host not in ("localhost", "127.0.0.1", ".", "?") and not host.startswith("%"):
            facts.idents.append(("internal host", f"\\\\{host}"))
    for ip in _IPV4.findall(low):
        if ip not in _BORING_IPS and not ip.startswith(("0.", "127.")):
            facts.idents.append(("IP address", ip))
    email_domains = {e.split("@", 1)[1] for e in emails}
    for domain in _DOMAIN.findall(low):
        if domain in email_domains or _BORING_DOMAINS.search(domain):
            continue
        kind = "internal host" if _INTERNAL_TLD.search(domain) else "domain"
        facts.idents.append((kind, domain))


# --- the condition, evaluated for anchors ---------------------------------------------------

F, U, T = 0, 1, 2  # false, unknown (free), true: Kleene's three values
STRICT, LENIENT, BROAD = "strict", "lenient", "broad"


@dataclass
class _Atom:
    """An atom of the condition, classified."""

    exec_anchor: str = ""  # it requires an executable
    not_exec: bool = False  # it requires *not* an executable (uint16(0) != 0x5A4D)
    strings: tuple[int, ...] = ()  # indexes of the strings it reads
    literals: tuple[int, ...] = ()  # indexes into the rule's literal facts
    doc_format: str = ""  # it selects a document format or document file names
    specific: bool = False  # a hash, or a distinctive literal (pe.exports("x")): few files
    by_name: bool = False  # it reads the file's name or path (external variables)
    rule_ref: str = ""  # it is another rule's name


_COMPARE = re.compile(r"(u?int(?:8|16|32)(?:be)?)\((0|0x0+)\)(==|!=)(0x[0-9a-f]+|\d+)")
_COMPARE_REV = re.compile(r"(0x[0-9a-f]+|\d+)(==|!=)(u?int(?:8|16|32)(?:be)?)\((0|0x0+)\)")


def _is_zero(text: str) -> bool:
    try:
        return int(text, 0) == 0
    except ValueError:
        return False


def _magic_of_compare(fn: str, value_text: str) -> bytes:
    width = int(re.sub(r"\D", "", fn)) // 8
    value = int(value_text, 16 if value_text.startswith("0x") else 10)
    if value >= 1 << (8 * width):
        return b""
    return value.to_bytes(width, "big" if fn.endswith("be") else "little")


def _classify_magic(data: bytes) -> tuple[str, str]:
    """(executable description, document description) for bytes at offset 0."""
    if len(data) < 2:
        return "", ""
    for magic, what in _EXEC_MAGIC.items():
        if magic.startswith(data) or data.startswith(magic):
            return what, ""
    for magic, what in _DOC_MAGIC.items():
        if magic.startswith(data) or data.startswith(magic):
            return "", what
    return "", ""


class _Evaluator:
    """Can the condition be true without an anchor? Which strings then count?"""

    def __init__(
        self,
        rule: Rule,
        facts: list[_Facts],
        literals: list[_Facts],
        literal_of: dict[int, int],
        rules: Mapping[str, Rule] | None,
        depth: int = 0,
        others: dict[str, dict[str, int]] | None = None,
    ) -> None:
        self.rule = rule
        self.facts = facts
        self.literals = literals
        self.literal_of = literal_of  # token position -> index into literal facts
        self.rules = rules or {}
        self.depth = depth
        self.others = others if others is not None else {}
        self.ids = [s.identifier for s in rule.strings]
        self.atoms: dict[int, _Atom] = {}
        self.rule_anchors: list[str] = []

    def strings_of(self, items: tuple[str, ...]) -> list[int]:
        chosen: list[int] = []
        for item in items:
            if item == "them":
                return list(range(len(self.ids)))
            if item.endswith("*"):
                prefix = item[:-1]
                chosen.extend(i for i, name in enumerate(self.ids) if name.startswith(prefix))
            else:
                chosen.extend(i for i, name in enumerate(self.ids) if name == item)
        return chosen

    def string_value(self, index: int, mode: str) -> int:
        facts = self.facts[index]
        if mode == BROAD:
            return U if facts.weak else F
        if facts.anchor:
            return F
        if mode == LENIENT and (facts.binary or facts.tool_anchor):
            return F
        return U

    def atom(self, node: Cond) -> _Atom:
        key = id(node)
        if key in self.atoms:
            return self.atoms[key]
        tokens = node.tokens
        atom = _Atom()
        texts = [t.text for t in tokens]
        norm = "".join(texts).casefold()
        refs: list[int] = []
        for t in tokens:
            if t.kind == "sid" and len(t.text) > 1:
                name = "$" + t.text[1:]
                refs.extend(i for i, n in enumerate(self.ids) if n == name)
        atom.strings = tuple(dict.fromkeys(refs))
        atom.literals = tuple(self.literal_of[t.pos] for t in tokens if t.pos in self.literal_of)
        for m in _COMPARE.finditer(norm):
            exec_what, doc_what = _classify_magic(_magic_of_compare(m.group(1), m.group(4)))
            if exec_what and m.group(3) == "==":
                atom.exec_anchor = f"the condition requires {exec_what}"
            elif exec_what:
                atom.not_exec = True
            elif doc_what and m.group(3) == "==":
                atom.doc_format = f"the condition selects {doc_what} files"
        for m in _COMPARE_REV.finditer(norm):
            exec_what, doc_what = _classify_magic(_magic_of_compare(m.group(3), m.group(1)))
            if exec_what and m.group(2) == "==":
                atom.exec_anchor = f"the condition requires {exec_what}"
            elif exec_what:
                atom.not_exec = True
            elif doc_what and m.group(2) == "==":
                atom.doc_format = f"the condition selects {doc_what} files"
        if "uint32(0x3c)" in norm:
            atom.exec_anchor = "the condition reads the PE header"
        first = texts[0] if texts else ""
        if len(texts) >= 3 and texts[1] == "." and first in _EXEC_MODULES:
            atom.exec_anchor = f"the condition uses the {first} module"
        if "atpe.entry_point" in norm or "atelf.entry_point" in norm:
            atom.exec_anchor = "the condition requires an executable's entry point"
        at_zero = any(
            a == "at" and _is_zero(b) for a, b in zip(texts, [*texts[1:], ""], strict=True)
        )
        if at_zero and atom.strings:
            exec_what, doc_what = _classify_magic(self.facts[atom.strings[0]].magic)
            if exec_what:
                atom.exec_anchor = f"the condition requires {exec_what} at offset 0"
            elif doc_what:
                atom.doc_format = f"the condition selects {doc_what} files"
        if "hash." in norm or "imphash" in norm:
            atom.specific = True
        atom.by_name = any(t.text in _FILE_EXTERNALS for t in tokens if t.kind == "id")
        if any(
            not lit.weak and (not atom.by_name or len(lit.shown) > 10)
            for lit in map(self.literal_facts, atom.literals)
        ):
            atom.specific = True  # pe.exports("Entry"), filename == "svchost.exe", ...
        if atom.by_name or "magic." in norm:
            for i in atom.literals:
                lit = self.literal_facts(i)
                if lit.doc_format or lit.doc_mention:
                    atom.doc_format = "the condition selects document file names or types"
        if len(tokens) == 1 and tokens[0].kind == "id" and tokens[0].text in self.rules:
            atom.rule_ref = tokens[0].text
        self.atoms[key] = atom
        return atom

    def literal_facts(self, index: int) -> _Facts:
        return self.literals[index]

    def evaluate(self, node: Cond, mode: str) -> tuple[int, set[tuple[str, int]]]:
        """Three-valued truth under the mode's assumption, and the items that may count.

        strict: anchors are false (the file is no executable, script or exploit);
        lenient: also machine-code patterns are false;
        broad: every distinctive string is false (the file is ordinary).
        """
        op = node.op
        if op == "true":
            return T, set()
        if op == "false":
            return F, set()
        if op == "not":
            value, _ = self.evaluate(node.args[0], mode)
            return 2 - value, set()
        if op in ("and", "or"):
            results = [self.evaluate(arg, mode) for arg in node.args]
            values = [v for v, _ in results]
            if op == "and":
                value = F if F in values else (T if all(v == T for v in values) else U)
            else:
                value = T if T in values else (F if all(v == F for v in values) else U)
            live: set[tuple[str, int]] = set()
            if value != F:
                for v, items in results:
                    if v != F:
                        live |= items
            return value, live
        if op == "of":
            return self.evaluate_of(node, mode)
        return self.evaluate_atom(node, mode)

    def evaluate_of(self, node: Cond, mode: str) -> tuple[int, set[tuple[str, int]]]:
        members = self.strings_of(node.items)
        values = [(self.string_value(i, mode), {("s", i)}) for i in members]
        values += [self.evaluate(arg, mode) for arg in node.args]
        free = [(v, items) for v, items in values if v != F]
        quant = node.quant
        total = len(values)
        if quant == "none":
            return U, set()
        if quant == "all":
            needed = total
        elif quant == "any":
            needed = 1
        elif quant.endswith("%"):
            needed = -(-int(float(quant[:-1]) * total) // 100)
        else:
            needed = int(quant, 0) if quant.isdigit() or quant.startswith("0x") else 1
        if needed == 0:
            return U, set()
        if len(free) < needed:
            return F, set()
        live: set[tuple[str, int]] = set()
        for _, items in free:
            live |= items
        return U, live

    def evaluate_atom(self, node: Cond, mode: str) -> tuple[int, set[tuple[str, int]]]:
        atom = self.atom(node)
        if atom.rule_ref:
            value = self.evaluate_rule(atom.rule_ref, mode)
            if value == F and mode == STRICT:
                self.rule_anchors.append(f"the rule {atom.rule_ref} it requires is about malware")
            return value, set()
        items = {("s", i) for i in atom.strings} | {("l", i) for i in atom.literals}
        if mode == BROAD:
            if atom.specific or any(self.string_value(i, BROAD) == F for i in atom.strings):
                return F, set()
            return U, items
        if atom.exec_anchor:
            return F, set()
        if atom.not_exec:
            return T, items
        if atom.strings and any(self.string_value(i, mode) == F for i in atom.strings):
            return F, set()
        return U, items

    def evaluate_rule(self, name: str, mode: str) -> int:
        """Another rule used in this one's condition (private helpers such as IsPE)."""
        cache = self.others.setdefault(name, {})
        if mode in cache:
            return cache[mode]
        other = self.rules.get(name)
        if other is None or self.depth >= 8:
            return U
        cache[mode] = U  # a cycle reads as unknown
        profile = _profile(other, Auditor(()), self.rules, self.depth + 1, self.others)
        cache[mode] = profile.values.get(mode, U)
        return cache[mode]


@dataclass
class _Profile:
    """What a rule can match, in the three modes."""

    facts: list[_Facts]
    literals: list[_Facts]
    values: dict[str, int]
    live: dict[str, set[tuple[str, int]]]
    anchors: list[str]
    readable: bool = True

    def live_facts(self, mode: str) -> list[_Facts]:
        return [
            self.facts[i] if kind == "s" else self.literals[i]
            for kind, i in sorted(self.live.get(mode, set()))
        ]

    def unanchored(self, mode: str) -> bool:
        return self.values[mode] != F


def _profile(
    rule: Rule,
    auditor: Auditor,
    rules: Mapping[str, Rule] | None,
    depth: int = 0,
    others: dict[str, dict[str, int]] | None = None,
) -> _Profile:
    facts = [auditor.string_facts(s) for s in rule.strings]
    literals: list[_Facts] = []
    literal_of: dict[int, int] = {}
    readable = True
    try:
        tree = parse_condition(rule.condition)
        for token in (t for node in walk(tree) for t in node.tokens):
            if token.kind in ("str", "regex") and token.pos not in literal_of:
                literal_of[token.pos] = len(literals)
                literals.append(auditor.literal_facts(token, rule.line))
    except (SyntaxProblem, RecursionError):
        readable = False
        tree = Cond("of", quant="any", items=("them",))
    evaluator = _Evaluator(rule, facts, literals, literal_of, rules, depth, others)
    gates = [
        r
        for r in (rules or {}).values()
        if "global" in r.flags and r.name != rule.name and r.file == rule.file
    ]
    values: dict[str, int] = {}
    live: dict[str, set[tuple[str, int]]] = {}
    for mode in (STRICT, LENIENT, BROAD):
        value, items = evaluator.evaluate(tree, mode)
        for gate in gates:
            gate_value = evaluator.evaluate_rule(gate.name, mode)
            value = min(value, gate_value)
        values[mode] = value
        live[mode] = items if value != F else set()
    anchors = [f.anchor or f.tool_anchor for f in facts if f.anchor or f.tool_anchor]
    anchors += [a.exec_anchor for a in evaluator.atoms.values() if a.exec_anchor]
    anchors += evaluator.rule_anchors
    for atom in evaluator.atoms.values():
        if atom.doc_format:
            # The condition selects documents: a pseudo-literal, live when the atom is.
            pseudo = _Facts("the condition", rule.line, atom.doc_format)
            pseudo.doc_format.append(atom.doc_format)
            literals.append(pseudo)
            index = len(literals) - 1
            for mode in (STRICT, LENIENT):
                if values[mode] != F and _atom_live(atom, live[mode]):
                    live[mode].add(("l", index))
    return _Profile(facts, literals, values, live, anchors, readable)


def _atom_live(atom: _Atom, live: set[tuple[str, int]]) -> bool:
    """Whether a document-selecting atom sits on a path that can match unanchored."""
    if not atom.strings and not atom.literals:
        return True
    return any(("s", i) in live for i in atom.strings) or any(
        ("l", i) in live for i in atom.literals
    )


# --- the lints -------------------------------------------------------------------------


def _level(high: bool, medium: bool) -> str:
    return "high" if high else "medium" if medium else "low"


def _first_line(facts: list[_Facts], rule: Rule) -> int:
    return next((f.line for f in facts if f.line), rule.line)


def _list(items: Iterable[str], limit: int = 3) -> str:
    unique = list(dict.fromkeys(items))
    shown = ", ".join(unique[:limit])
    return shown + (f" and {len(unique) - limit} more" if len(unique) > limit else "")


def lint_rule(
    rule: Rule,
    context: RuleContext = RuleContext(),
    watchlist: tuple[str, ...] = (),
    *,
    rules: Mapping[str, Rule] | None = None,
) -> list[Finding]:
    """Every finding about one rule, deployed as `context`.

    `rules`: the other rules of its file, so that a condition using a helper
    rule (IsPE) or a global rule is understood.
    """
    return Auditor(watchlist).lint(rule, context, rules)


@dataclass
class _Case:
    """One rule under audit: what it can match (its profile) and how it is deployed."""

    rule: Rule
    context: RuleContext
    profile: _Profile

    def __post_init__(self) -> None:
        p = self.profile
        self.strict_live = p.live_facts(STRICT)
        self.lenient_live = p.live_facts(LENIENT)
        self.unanchored = p.unanchored(LENIENT)  # no executable, script, exploit or tool
        self.unanchored_strict = p.unanchored(STRICT)  # no executable, script or exploit
        self.every = p.facts + p.literals
        self.uploads = self.context.action == "upload-sample"
        self.silent = not self.context.notify
        self.narrow = tuple(self.context.audience) != ("all",)
        meta = " ".join([*self.rule.meta.values(), *self.rule.tags, self.rule.name])
        self.meta_anchor = _META_ANCHOR.search(meta.casefold()) is not None
        self.doc_live = [f for f in self.lenient_live if f.doc_format]
        self.marked = _marking_hits(self.strict_live) if self.unanchored_strict else []
        self.anchor_note = (
            f" ({p.anchors[0]})" if p.anchors else " (it names no executable or exploit)"
        )

    def finding(self, line: int, lint: str, severity: str, message: str) -> Finding:
        rule = self.rule
        return Finding(rule.name, rule.file, line or rule.line, lint, severity, message)


def _lint(
    rule: Rule, context: RuleContext, auditor: Auditor, rules: Mapping[str, Rule] | None
) -> list[Finding]:
    case = _Case(rule, context, _profile(rule, auditor, rules))
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(check(case))
    return findings


def _condition_check(case: _Case) -> list[Finding]:
    if case.profile.readable:
        return []
    message = "the condition's structure could not be read; audited as if any string could match"
    return [case.finding(case.rule.line, "condition", "low", message)]


def _marking_check(case: _Case) -> list[Finding]:
    """Classification markings, also split over strings the condition joins."""
    if case.marked:
        strong = any(s for _, s, _, _ in case.marked)
        dominant = any(d for _, _, d, _ in case.marked)
        docs = any(f.doc_format for f in case.strict_live)
        high = strong or dominant or docs or case.uploads or case.silent
        where = _list(f"{w!r} in {f.label}" for w, _, _, f in case.marked)
        return [
            case.finding(
                case.marked[0][3].line,
                "marking",
                "high" if high else "medium",
                f"searches for classification or confidentiality markings: {where}; nothing "
                "it requires limits it to executables, scripts or exploits, so it finds "
                "documents by their marking",
            )
        ]
    anywhere = _marking_hits(case.every)
    if not anywhere:
        return []
    strong = any(s for _, s, _, _ in anywhere)
    # Even a malware rule has no reason to upload what bears TOP SECRET.
    severity = _level(high=strong and (case.uploads or case.silent), medium=strong)
    where = _list(f"{w!r} in {f.label}" for w, _, _, f in anywhere)
    return [
        case.finding(
            anywhere[0][3].line,
            "marking",
            severity,
            f"mentions classification or confidentiality markings: {where}, but only "
            f"together with a sign of malware{case.anchor_note}",
        )
    ]


def _document_check(case: _Case) -> list[Finding]:
    """Documents and mail, with no sign of malware."""
    mentioned = [f for f in case.lenient_live if f.doc_mention]
    if not case.unanchored or not (case.doc_live or mentioned):
        return []
    evidence = [d for f in case.doc_live for d in f.doc_format] or [
        d for f in mentioned for d in f.doc_mention
    ]
    # A file-name mention (".pdf" in a longer string) is weaker than a format; meta
    # naming an exploit or malware family lowers it too (meta is the author's claim).
    severity = "medium" if case.doc_live and not case.meta_anchor else "low"
    return [
        case.finding(
            _first_line(case.doc_live or mentioned, case.rule),
            "document-target",
            severity,
            f"targets documents or mail ({_list(evidence)}) and nothing it requires is an "
            "executable header, macro or exploit marker, so it can match ordinary documents",
        )
    ]


def _identifier_check(case: _Case) -> list[Finding]:
    """People, hosts and organisations."""
    live = [(kind, value, f) for f in case.lenient_live for kind, value in f.idents]
    if not case.unanchored or not live:
        return []
    personal = [x for x in live if x[0] in _PERSONAL]
    doc_target = bool(case.doc_live) or bool(case.marked)
    if personal and doc_target:
        severity = "medium" if case.meta_anchor and not case.marked else "high"
    elif personal or doc_target:
        severity = "medium"
    else:
        severity = "low"  # a domain or an IP address alone: most likely infrastructure
    shown = personal or live
    return [
        case.finding(
            shown[0][2].line,
            "identifier",
            severity,
            f"names {_list(f'{k} {v!r}' for k, v, _ in shown)}"
            + (
                " in a rule that targets documents"
                if doc_target
                else "; it can match files that merely mention them"
            ),
        )
    ]


def _watchlist_check(case: _Case) -> list[Finding]:
    live = [(t, f) for f in case.strict_live for t in f.watch] if case.unanchored_strict else []
    watched = live or [(t, f) for f in case.every for t in f.watch]
    if not watched:
        return []
    return [
        case.finding(
            watched[0][1].line,
            "watchlist",
            "high" if live or case.uploads or case.silent else "medium",
            f"contains watch-listed term(s) {_list(repr(t) for t, _ in watched)} "
            f"in {watched[0][1].label}",
        )
    ]


def _deployment_check(case: _Case) -> list[Finding]:
    """What the deployment does with a match: upload, stay silent, reach only some."""
    findings: list[Finding] = []
    line = case.rule.line
    if case.uploads and case.unanchored:
        docs = _list(d for f in case.doc_live for d in f.doc_format)
        findings.append(
            case.finding(
                line,
                "upload-sample",
                "high",
                "deployed to upload what it matches, and it can match files that are not "
                "executables, scripts or exploits"
                + (f" (such as documents: {docs})" if docs else ""),
            )
        )
    if case.silent:
        findings.append(
            case.finding(
                line,
                "silent",
                "high" if case.unanchored else "low",
                "deployed with notification off"
                + (
                    ", and it can match files that are not executables, scripts or exploits"
                    if case.unanchored
                    else f"; it only matches malware{case.anchor_note}"
                ),
            )
        )
    if case.narrow:
        severity = _level(high=case.uploads or case.silent, medium=case.unanchored)
        findings.append(
            case.finding(
                line,
                "narrow-audience",
                severity,
                f"sent only to {', '.join(case.context.audience)}"
                + (", and it uploads or acts silently" if case.uploads or case.silent else ""),
            )
        )
    return findings


def _provenance_check(case: _Case) -> list[Finding]:
    if "private" in case.rule.flags:  # helpers (IsPE) are judged through the rules using them
        return []
    keys = {k.casefold() for k in case.rule.meta}
    missing = []
    if "author" not in keys:
        missing.append("author")
    if not any(k.startswith(("reference", "hash", "sha256", "sha1", "md5")) for k in keys):
        missing.append("reference or sample hash")
    if not missing:
        return []
    message = f"meta gives no {' and no '.join(missing)}"
    return [case.finding(case.rule.line, "provenance", "low", message)]


def _broad_check(case: _Case) -> list[Finding]:
    if not case.profile.unanchored(BROAD) or "private" in case.rule.flags:
        return []
    weak = _list(f"{f.label} {f.shown!r}" for f in case.profile.live_facts(BROAD))
    return [
        case.finding(
            case.rule.line,
            "broad",
            "medium" if case.unanchored else "low",
            "can match with only very short or common strings, or none: "
            + (weak or f"condition {_short(case.rule.condition)!r}"),
        )
    ]


_CHECKS = (
    _condition_check,
    _marking_check,
    _document_check,
    _identifier_check,
    _watchlist_check,
    _deployment_check,
    _provenance_check,
    _broad_check,
)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _marking_hits(facts: list[_Facts]) -> list[tuple[str, bool, bool, _Facts]]:
    """(word, strong, dominant, where) for each marking, also split over strings.

    A split marking is one made up entirely of whole strings ("TOP" and
    "SECRET", or "T", "OP SEC", "RET"): each piece alone is nothing, together
    they are the word.
    """
    hits = list({(w, f.label): (w, s, d, f) for f in facts for w, s, d in f.markings}.values())
    pieces = {
        f.compressed: f
        for f in facts
        if 1 <= len(f.compressed) <= 16 and f.compressed in _ALL_MARKING_LETTERS
    }
    if len(pieces) < 2:
        return hits
    for letters, keywords in _MARKING_CHECK.items():
        inside = {p: f for p, f in pieces.items() if p in letters}
        if len(inside) < 2 or sum(map(len, inside)) < len(letters):
            continue
        used = _segment(letters, inside)
        if used is not None and len(used) >= 2:
            where = _Facts(
                "strings " + ", ".join(pieces[p].label for p in used), pieces[used[0]].line, ""
            )
            kw = keywords[0][0]
            return [*hits, (f"{kw.label} (split over several strings)", kw.strong, True, where)]
    return hits


def _segment(word: str, pieces: Mapping[str, _Facts]) -> list[str] | None:
    """Pieces whose concatenation is `word`, if any (fewest first, by dynamic programming)."""
    best: list[list[str] | None] = [None] * (len(word) + 1)
    best[0] = []
    for end in range(1, len(word) + 1):
        for start in range(end):
            prefix = best[start]
            part = word[start:end]
            if prefix is not None and part in pieces and part not in prefix:
                candidate = [*prefix, part]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    return best[len(word)]


@dataclass(frozen=True)
class Audit:
    files: int
    rules: int
    findings: list[Finding]


def lint_paths(
    paths: list[Path],
    contexts: Mapping[str, RuleContext] | None = None,
    watchlist: tuple[str, ...] | list[str] = (),
    compile: bool = True,
) -> list[Finding]:
    """Lint files and directories of .yar/.yara (recursively), findings sorted.

    Raises OSError (FileNotFoundError) for a path that cannot be read.
    """
    return audit_paths(paths, contexts, watchlist, compile).findings


def audit_paths(
    paths: list[Path],
    contexts: Mapping[str, RuleContext] | None = None,
    watchlist: tuple[str, ...] | list[str] = (),
    compile: bool = True,
) -> Audit:
    """lint_paths, with how many files and rules were read.

    Compilation (yara-x, in a child process with a time limit) runs while the
    rules are linted. A file that does not parse gets its syntax findings only,
    not the compiler's account of the same problem.
    """
    from overt.rules.compile import CompileJob

    files = collect_rule_files(paths)
    job = CompileJob(files) if compile and files else None
    auditor = Auditor(tuple(watchlist))
    contexts = contexts or {}
    findings: list[Finding] = []
    broken: set[str] = set()
    spans: dict[str, list[tuple[int, int, str]]] = {}
    count = 0
    try:
        for path in files:
            rules, problems = parse_file(path)
            count += len(rules)
            findings.extend(problems)
            if problems:
                broken.add(str(path))
            spans[str(path)] = [(r.line, r.line + r.text.count("\n"), r.name) for r in rules]
            by_name = {r.name: r for r in rules}
            for rule in rules:
                context = contexts.get(rule.name, RuleContext())
                findings.extend(_lint(rule, context, auditor, by_name))
        if job is not None:
            for problem in job.result():
                if problem.file not in broken:
                    findings.append(_name_rule(problem, spans.get(problem.file, [])))
    finally:
        if job is not None:
            job.cancel()
    return Audit(len(files), count, sort_findings(findings))


def _name_rule(finding: Finding, spans: list[tuple[int, int, str]]) -> Finding:
    """A compile error names the rule whose lines it is on."""
    if finding.rule is not None or not finding.line:
        return finding
    for first, last, name in spans:
        if first <= finding.line <= last:
            return Finding(
                name, finding.file, finding.line, finding.lint, finding.severity, finding.message
            )
    return finding


_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(
        findings, key=lambda f: (f.file, f.line, _RANK.get(f.severity, 9), f.lint, f.message)
    )


def worst(findings: Iterable[Finding]) -> str | None:
    """The most severe severity among the findings."""
    ranks = [_RANK.get(f.severity, 9) for f in findings]
    return SEVERITIES[min(ranks)] if ranks else None
