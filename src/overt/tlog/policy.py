"""C2SP tlog-policy: which logs and witnesses to trust, and the witness quorum.

The file is line based (tlog-policy, "Structure"): ``log <vkey> [<url>]``,
``witness <name> <vkey> [<url>]``, ``group <name> all|any|<k> <name>...`` and
exactly one ``quorum <name>``, where ``none`` is the predefined empty quorum.
Names are opaque octet strings; only tab, newline and 0x20-0x7E/0x80-0xFF
octets may appear ("Character set"). Groups and the quorum may only name
witnesses and groups defined on earlier lines, so evaluation is a single pass
in definition order and cycles cannot exist.

`Policy.verify_checkpoint` is the one place that decides whether a checkpoint
is acceptable: signed by a listed log whose key name is the origin, every
recognised cosignature valid, and the quorum satisfied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from overt.crypto.encoding import as_text
from overt.crypto.keys import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Ed25519Verifier,
    Verifier,
    VerifierKey,
)
from overt.crypto.note import open_note
from overt.errors import MalformedError, VerificationError
from overt.tlog.checkpoint import Checkpoint
from overt.tlog.cosignature import CosignatureVerifier, cosignature_timestamp

NONE = "none"
# The spec recommends supporting at least 32 of each; a hard cap bounds the
# work a hostile policy file can cause.
MAX_ITEMS = 1024
MAX_POLICY_BYTES = 1 << 20


@dataclass(frozen=True)
class PolicyLog:
    vkey: VerifierKey
    url: str | None = None


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    vkey: VerifierKey
    url: str | None = None


@dataclass(frozen=True)
class PolicyGroup:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint the policy accepted, and who vouched for it."""

    checkpoint: Checkpoint
    log: PolicyLog
    cosigners: dict[str, int]  # witness name -> cosignature timestamp
    raw: str


@dataclass
class Policy:
    logs: list[PolicyLog] = field(default_factory=list)
    witnesses: dict[str, PolicyWitness] = field(default_factory=dict)
    groups: dict[str, PolicyGroup] = field(default_factory=dict)
    quorum: str = NONE
    _members: set[str] = field(default_factory=set, repr=False, compare=False)

    @classmethod
    def parse(cls, data: bytes | str) -> Policy:
        # A str may carry opaque non-UTF-8 octets as surrogate escapes (as
        # `format` returns them), so encode it back the same way.
        try:
            raw = data.encode("utf-8", errors="surrogateescape") if isinstance(data, str) else data
        except UnicodeEncodeError as exc:
            raise MalformedError("policy text holds characters that are not Unicode") from exc
        if len(raw) > MAX_POLICY_BYTES:
            raise MalformedError(f"policy is larger than {MAX_POLICY_BYTES} bytes")
        for pos, octet in enumerate(raw):
            if (octet < 0x20 and octet not in (0x09, 0x0A)) or octet == 0x7F:
                raise MalformedError(f"policy: forbidden control octet 0x{octet:02x} at byte {pos}")
        # High-bit octets are opaque; surrogateescape keeps them byte-exact.
        text = raw.decode("utf-8", errors="surrogateescape")
        policy = cls()
        quorum_seen = False
        for lineno, line in enumerate(text.split("\n"), 1):
            # Only ASCII space and tab separate fields ("Structure"); other
            # Unicode spaces are opaque parts of names.
            fields = [f for f in re.split(r"[ \t]+", line) if f]
            if not fields or fields[0].startswith("#"):
                continue
            keyword, args = fields[0], fields[1:]
            where = f"policy line {lineno}"
            if quorum_seen and keyword == "quorum":
                raise MalformedError(f"{where}: a policy has exactly one quorum line")
            if keyword == "log":
                policy._add_log(args, where)
            elif keyword == "witness":
                policy._add_witness(args, where)
            elif keyword == "group":
                policy._add_group(args, where)
            elif keyword == "quorum":
                if len(args) != 1:
                    raise MalformedError(f"{where}: want 'quorum <name>'")
                if args[0] != NONE and not policy._defined(args[0]):
                    raise MalformedError(f"{where}: quorum names undefined {args[0]!r}")
                policy.quorum = args[0]
                quorum_seen = True
            else:
                raise MalformedError(f"{where}: unknown keyword {keyword[:40]!r}")
            if len(policy.logs) + len(policy.witnesses) + len(policy.groups) > MAX_ITEMS:
                raise MalformedError(f"policy defines more than {MAX_ITEMS} items")
        if not quorum_seen:
            raise MalformedError("policy has no quorum line")
        return policy

    def _defined(self, name: str) -> bool:
        return name in self.witnesses or name in self.groups

    def _add_log(self, args: list[str], where: str) -> None:
        if len(args) not in (1, 2):
            raise MalformedError(f"{where}: want 'log <vkey> [<url>]'")
        vkey = _parse_vkey(args[0], where)
        if vkey.sig_type != SIG_ED25519:
            raise MalformedError(f"{where}: a log key must be an Ed25519 (type 0x01) key")
        if any(log.vkey.public == vkey.public for log in self.logs):
            raise MalformedError(f"{where}: duplicate log key")
        self.logs.append(PolicyLog(vkey, args[1] if len(args) == 2 else None))

    def _add_witness(self, args: list[str], where: str) -> None:
        if len(args) not in (2, 3):
            raise MalformedError(f"{where}: want 'witness <name> <vkey> [<url>]'")
        name = args[0]
        self._check_new_name(name, where)
        vkey = _parse_vkey(args[1], where)
        if vkey.sig_type != SIG_COSIGNATURE_V1:
            raise MalformedError(f"{where}: a witness key must be a cosignature/v1 (type 0x04) key")
        if any(w.vkey.public == vkey.public for w in self.witnesses.values()):
            raise MalformedError(f"{where}: duplicate witness key")
        self.witnesses[name] = PolicyWitness(name, vkey, args[2] if len(args) == 3 else None)

    def _add_group(self, args: list[str], where: str) -> None:
        if len(args) < 3:
            raise MalformedError(f"{where}: want 'group <name> all|any|<k> <member>...'")
        name, k_s, members = args[0], args[1], args[2:]
        self._check_new_name(name, where)
        for m in members:
            if not self._defined(m):
                raise MalformedError(f"{where}: group member {m!r} is not defined above")
        if len(set(members)) != len(members):
            raise MalformedError(f"{where}: a group lists a member more than once")
        # "Each defined name can be listed as a group member at most once"
        # (tlog-policy, "Defining a witness group"), across the whole file, so
        # no witness can count twice towards the quorum.
        for m in members:
            if m in self._members:
                raise MalformedError(f"{where}: {m!r} is already a member of another group")
        self._members.update(members)
        if k_s == "all":
            k = len(members)
        elif k_s == "any":
            k = 1
        elif k_s.isascii() and k_s.isdigit() and len(k_s) <= 6 and k_s == str(int(k_s)):
            k = int(k_s)
            if not 1 <= k <= len(members):
                raise MalformedError(f"{where}: threshold {k} is not between 1 and {len(members)}")
        else:
            raise MalformedError(f"{where}: threshold must be all, any or a decimal number")
        self.groups[name] = PolicyGroup(name, k, tuple(members))

    def _check_new_name(self, name: str, where: str) -> None:
        if name == NONE:
            raise MalformedError(f"{where}: 'none' is reserved")
        if self._defined(name):
            raise MalformedError(f"{where}: name {name!r} is already defined")

    def quorum_met(self, cosigned: set[str] | dict[str, int]) -> bool:
        """Does this set of witness names satisfy the quorum?"""
        if self.quorum == NONE:
            return True
        satisfied = {w for w in self.witnesses if w in cosigned}
        for group in self.groups.values():  # definition order: members come first
            if sum(m in satisfied for m in group.members) >= group.threshold:
                satisfied.add(group.name)
        return self.quorum in satisfied

    def verify_checkpoint(self, message: bytes | str) -> VerifiedCheckpoint:
        """Accept a signed checkpoint only if a policy log signed it and the quorum cosigned."""
        raw = as_text(message, "checkpoint")
        log_verifiers: list[tuple[PolicyLog, Ed25519Verifier]] = [
            (log, Ed25519Verifier(log.vkey)) for log in self.logs
        ]
        witness_verifiers = {
            name: CosignatureVerifier(w.vkey) for name, w in self.witnesses.items()
        }
        verifiers: list[Verifier] = [v for _, v in log_verifiers]
        verifiers.extend(witness_verifiers.values())
        if not log_verifiers:
            raise VerificationError("policy lists no log, so no checkpoint can be accepted")
        note = open_note(raw, verifiers)
        checkpoint = Checkpoint.parse(note.text)
        log = next(
            (
                entry
                for entry, v in log_verifiers
                if v.name == checkpoint.origin and note.signed_by(v.name, v.key_id)
            ),
            None,
        )
        if log is None:
            raise VerificationError(
                f"checkpoint for origin {checkpoint.origin!r} is not signed by a log in the policy"
            )
        cosigners: dict[str, int] = {}
        for name, v in witness_verifiers.items():
            for sig in note.verified:
                if sig.name == v.name and sig.key_id == v.key_id:
                    cosigners[name] = cosignature_timestamp(sig.signature)
        if not self.quorum_met(cosigners):
            have = ", ".join(sorted(cosigners)) or "none"
            raise VerificationError(
                f"checkpoint cosigned by {have}; the policy quorum {self.quorum!r} is not met"
            )
        return VerifiedCheckpoint(checkpoint, log, cosigners, raw)

    def format(self) -> str:
        lines = []
        for log in self.logs:
            lines.append(" ".join(["log", str(log.vkey), *([log.url] if log.url else [])]))
        for w in self.witnesses.values():
            lines.append(" ".join(["witness", w.name, str(w.vkey), *([w.url] if w.url else [])]))
        for g in self.groups.values():
            k = "all" if g.threshold == len(g.members) else str(g.threshold)
            lines.append(" ".join(["group", g.name, k, *g.members]))
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


def _parse_vkey(text: str, where: str) -> VerifierKey:
    try:
        return VerifierKey.parse(text)
    except MalformedError as exc:
        raise MalformedError(f"{where}: {exc}") from exc
    except UnicodeError as exc:
        raise MalformedError(f"{where}: verifier key is not text") from exc
