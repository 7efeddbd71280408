"""Following logs: every checkpoint and entry checked, views compared with witnesses.

One `check` of a log:

1. fetch its checkpoint and verify it (the log's key, and the witness quorum if
   a policy is configured), then its consistency with the last checkpoint this
   monitor accepted: a smaller tree is a *rollback*, another root or a tree
   that does not extend the old one is a *fork*;
2. read every new entry through the tiles, each checked against the
   checkpoint's root (*bad-tile* otherwise), and count them by type;
3. ask each configured witness for the latest checkpoint it cosigned for the
   log (tlog-witness "Monitor Retrieval Mechanism") and check it against ours:
   two roots for one size, or a witness tree our view does not extend, is a
   *fork* the log showed to someone else (a split view).

Each problem becomes an alert: stored, logged, and sent to a webhook if one is
configured. Unreachable logs and witnesses are recorded as errors, not alerts.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from overt.conveyor.provenance import PROVENANCE_TYPE
from overt.crypto.dsse import Envelope
from overt.crypto.intoto import Statement
from overt.crypto.keys import ed25519_verifier
from overt.errors import MalformedError, OvertError, VerificationError
from overt.log.remote import FetchError, open_source
from overt.monitor.config import MonitoredLog, load_monitor_config
from overt.monitor.state import Alert, MonitorState
from overt.policy.bundle import REVIEW_TYPE
from overt.rebuild.vsa import VSA_TYPE
from overt.rules.statements import APPROVAL_TYPE, RULESET_TYPE, RuleSet
from overt.tlog.checkpoint import Checkpoint, open_checkpoint
from overt.tlog.client import LogClient, LogMisbehaviour
from overt.tlog.merkle import consistency_proof, verify_consistency
from overt.tlog.policy import Policy
from overt.tlog.witness import origin_hash

log = logging.getLogger("overt.monitor")

ENTRY_BATCH = 10_000


# Names the monitor counts attestations by (`overt monitor` status and metrics).
STATEMENT_KINDS = {
    PROVENANCE_TYPE: "provenance",
    VSA_TYPE: "vsa",
    RULESET_TYPE: "ruleset",
    APPROVAL_TYPE: "rule-approval",
    REVIEW_TYPE: "review",
}


def entry_type(entry: bytes) -> str:
    """What an entry is: an attestation by kind, or the ``type`` of a JSON object.

    Rule sets aimed at fewer than all customers count as ``ruleset-targeted``
    and verdicts by their result, so targeting and failed rebuilds show in the
    monitor's figures without anyone having to look for them.
    """
    try:
        value = json.loads(entry)
    except (ValueError, RecursionError):
        return "opaque"
    if isinstance(value, dict) and "payloadType" in value:
        try:
            statement = Statement.from_envelope(Envelope.from_json(value))
        except MalformedError:
            return "envelope"
        kind = STATEMENT_KINDS.get(statement.predicate_type, "in-toto")
        if kind == "ruleset":
            # From the rules' audiences, as verifiers do: not the statement's own list.
            try:
                targeted = bool(RuleSet.from_statement(statement).targeted)
            except MalformedError:
                targeted = bool(statement.predicate.get("targeted"))
            return "ruleset-targeted" if targeted else kind
        if kind == "vsa":
            return f"vsa-{str(statement.predicate.get('verificationResult', '')).lower()}"
        return kind
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return str(value["type"])[:100]
    return "json"


@dataclass
class CheckResult:
    log: str
    size: int | None = None
    new_entries: int = 0
    alerts: list[Alert] = field(default_factory=list)
    error: str | None = None


class Monitor:
    def __init__(self, root: Path, webhook: str | None = None) -> None:
        self.root = root
        self.logs = load_monitor_config(root / "monitor.toml")
        self.state = MonitorState(root / "monitor.db")
        self.webhook = webhook
        self._http = httpx.Client(timeout=10)

    def close(self) -> None:
        self._http.close()
        self.state.close()

    def _alert(self, result: CheckResult, kind: str, message: str) -> None:
        alert = self.state.add_alert(result.log, kind, message)
        result.alerts.append(alert)
        log.error("ALERT %s %s: %s", result.log, kind, message)
        if self.webhook:
            try:
                self._http.post(
                    self.webhook,
                    json={"log": alert.log, "kind": kind, "message": message, "time": alert.time},
                )
            except httpx.HTTPError as exc:
                log.warning("webhook %s failed: %s", self.webhook, exc)

    def _policy(self, cfg: MonitoredLog) -> Policy | None:
        if not cfg.policy:
            return None
        path = Path(cfg.policy)
        if not path.is_absolute():
            path = self.root / path
        return Policy.parse(path.read_bytes())

    def check_all(self) -> list[CheckResult]:
        return [self.check(cfg) for cfg in self.logs]

    def check(
        self, cfg: MonitoredLog, progress: Callable[[int], None] | None = None
    ) -> CheckResult:
        result = CheckResult(cfg.name)
        try:
            self._check(cfg, result, progress)
        except LogMisbehaviour as exc:
            self._alert(result, exc.kind, str(exc))
        except VerificationError as exc:
            self._alert(result, "bad-signature", str(exc))
        except (FetchError, MalformedError, OvertError) as exc:
            result.error = str(exc)
            log.warning("%s: %s", cfg.name, exc)
        self.state.record_check(cfg.name, result.error)
        return result

    def _check(
        self, cfg: MonitoredLog, result: CheckResult, progress: Callable[[int], None] | None
    ) -> None:
        source = open_source(cfg.url)
        policy = self._policy(cfg)
        key = ed25519_verifier(cfg.key)
        client = LogClient(
            source.fetch,
            log_key=None if policy else key,
            policy=policy,
            memory=self.state.memory_for(cfg.name),
        )
        followed = self.state.log(cfg.name).origin
        checkpoint = client.update()
        result.size = checkpoint.size
        if followed is not None and followed != checkpoint.origin:
            # Another log is now followed under this name: count it afresh.
            self.state.reset_entries(cfg.name)
        seen = self.state.log(cfg.name).entries
        start = seen
        while start < checkpoint.size:
            end = min(checkpoint.size, start + ENTRY_BATCH)
            types = Counter(entry_type(e) for _, e in client.entries(start, end))
            self.state.record_entries(cfg.name, end, dict(types))
            if progress is not None:
                progress(end - start)
            start = end
        result.new_entries = checkpoint.size - seen
        for witness_url in cfg.witnesses:
            self._compare_with_witness(cfg, client, checkpoint, witness_url, result)

    def _compare_with_witness(
        self,
        cfg: MonitoredLog,
        client: LogClient,
        ours: Checkpoint,
        witness_url: str,
        result: CheckResult,
    ) -> None:
        url = f"{witness_url.rstrip('/')}/{origin_hash(ours.origin)}/checkpoint"
        try:
            resp = self._http.get(url)
        except httpx.HTTPError as exc:
            log.warning("%s: witness %s unreachable: %s", cfg.name, witness_url, exc)
            return
        if resp.status_code == 404:
            return  # the witness has not cosigned this log yet
        if resp.status_code != 200:
            log.warning("%s: witness %s answered HTTP %d", cfg.name, witness_url, resp.status_code)
            return
        try:
            theirs = open_checkpoint(resp.content, ed25519_verifier(cfg.key)).checkpoint
        except OvertError as exc:
            log.warning(
                "%s: witness %s served an unverifiable checkpoint: %s", cfg.name, witness_url, exc
            )
            return
        where = f"witness {witness_url} cosigned size {theirs.size}"
        if theirs.size == 0:
            return  # every tree extends the empty one
        if theirs.size == ours.size:
            if theirs.root_hash != ours.root_hash:
                self._alert(result, "fork", f"{where} with a different root than this monitor saw")
        elif theirs.size < ours.size:
            proof = consistency_proof(client.tiles.hash_reader(), theirs.size, ours.size)
            try:
                verify_consistency(theirs.size, ours.size, theirs.root_hash, ours.root_hash, proof)
            except VerificationError:
                self._alert(result, "fork", f"{where}, which the log's tree does not extend")
        else:
            log.info("%s: %s, ahead of this monitor's view %d", cfg.name, where, ours.size)

    def status(self) -> dict[str, object]:
        logs = []
        for cfg in self.logs:
            st = self.state.log(cfg.name)
            logs.append(
                {
                    "name": cfg.name,
                    "url": cfg.url,
                    "origin": st.origin,
                    "size": st.size,
                    "entries_checked": st.entries,
                    "entry_types": self.state.entry_types(cfg.name),
                    "last_check": st.last_check,
                    "last_error": st.last_error,
                    "checkpoint": st.checkpoint,
                }
            )
        alerts = [a.__dict__ for a in self.state.alerts(50)]
        return {"logs": logs, "alerts": alerts}

    def metrics(self) -> str:
        """Prometheus text exposition of what the monitor saw."""
        lines = [
            "# HELP overt_monitor_tree_size Size of the last checkpoint accepted.",
            "# TYPE overt_monitor_tree_size gauge",
        ]
        states = [self.state.log(cfg.name) for cfg in self.logs]
        lines += [f'overt_monitor_tree_size{{log="{s.name}"}} {s.size}' for s in states]
        lines += [
            "# HELP overt_monitor_entries_checked Entries read and verified.",
            "# TYPE overt_monitor_entries_checked counter",
        ]
        lines += [f'overt_monitor_entries_checked{{log="{s.name}"}} {s.entries}' for s in states]
        lines += [
            "# HELP overt_monitor_last_check_timestamp_seconds When the log was last checked.",
            "# TYPE overt_monitor_last_check_timestamp_seconds gauge",
        ]
        lines += [
            f'overt_monitor_last_check_timestamp_seconds{{log="{s.name}"}} {s.last_check or 0}'
            for s in states
        ]
        lines += [
            "# HELP overt_monitor_alerts_total Alerts raised, by kind.",
            "# TYPE overt_monitor_alerts_total counter",
        ]
        for (name, kind), count in sorted(self.state.alert_counts().items()):
            lines.append(f'overt_monitor_alerts_total{{log="{name}",kind="{kind}"}} {count}')
        lines += [
            "# HELP overt_monitor_entries_by_type Entries seen, by kind (e.g. ruleset-targeted).",
            "# TYPE overt_monitor_entries_by_type counter",
        ]
        for cfg in self.logs:
            for kind, count in sorted(self.state.entry_types(cfg.name).items()):
                lines.append(
                    f'overt_monitor_entries_by_type{{log="{cfg.name}",type="{kind}"}} {count}'
                )
        return "\n".join(lines) + "\n"


def init_monitor(root: Path) -> None:
    if (root / "monitor.toml").exists():
        raise OvertError(f"{root} already holds a monitor")
    root.mkdir(parents=True, exist_ok=True)
    (root / "monitor.toml").write_text("# Overt monitor: the logs it follows\n")
    MonitorState(root / "monitor.db").close()


def add_monitored_log(root: Path, entry: MonitoredLog) -> None:
    existing = load_monitor_config(root / "monitor.toml")
    if any(e.name == entry.name for e in existing):
        raise MalformedError(f"the monitor already follows a log named {entry.name!r}")
    with (root / "monitor.toml").open("a", encoding="utf-8") as f:
        f.write("\n" + entry.to_toml())
    load_monitor_config(root / "monitor.toml")
