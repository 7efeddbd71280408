"""The customer's update client: TUF first, then the transparency verifier, then install.

python-tuf's ngclient does the TUF work (root rotation, signatures and
thresholds, expiry: freeze protection, version checks: rollback protection,
hashes and lengths of every target). What it accepts is then put through
`verify_release` against the customer's policy. Only an artifact that passed
both is written to the install directory; everything is downloaded into the
client's state directory first. A refusal is printed and appended to
`STATE/refusals.jsonl`.

A release whose provenance was logged before the installed one's is refused
as a rollback, even if the vendor's TUF metadata offers it: the log order is
the order of releases.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.ngclient import Updater, UpdaterConfig

from overt.durable import atomic_write, sync_filesystem, write_file
from overt.errors import MalformedError, OvertError
from overt.log.remote import FileMemory, http_fetcher
from overt.policy.bundle import Bundle, reprove
from overt.policy.gossip import consistency_prover
from overt.policy.trust import TrustPolicy
from overt.policy.verify import ConsistencyProver, Decision, verify_release
from overt.tlog.client import LogClient
from overt.updates.repository import INDEX_TARGET

Step = Callable[[str], None]
# What a product or artifact may be called (as the repository publishes them).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


class UpdateError(OvertError):
    """The update channel itself could not be trusted or reached (TUF refused it)."""


@dataclass
class Outcome:
    channel: str
    product: str
    version: str
    status: str  # installed, current, refused
    reason: str = ""
    decisions: list[Decision] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class UpdateReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "refused"]


class UpdateClient:
    def __init__(
        self,
        policy: TrustPolicy,
        repo_url: str,
        install_dir: Path,
        state_dir: Path,
        gossip: bool = True,
    ) -> None:
        self.policy = policy
        self.repo_url = repo_url.rstrip("/")
        self.install_dir = install_dir
        self.state = state_dir
        self.gossip = gossip
        self.metadata_dir = state_dir / "tuf"
        self.downloads = state_dir / "downloads"
        self.installed_file = state_dir / "installed.json"
        self.refusals_file = state_dir / "refusals.jsonl"
        self._fetch_tile: Callable[[str], bytes] | None = None
        self._log_client: LogClient | None = None

    def _updater(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(parents=True, exist_ok=True)
        bootstrap = None
        if not (self.metadata_dir / "root.json").is_file():
            # The first run trusts the root the customer's policy names, nothing fetched.
            if self.policy.updates_root is None:
                raise MalformedError("the policy names no trusted TUF root ([updates] root)")
            bootstrap = self.policy.updates_root.read_bytes()
        return Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=f"{self.repo_url}/metadata/",
            target_dir=str(self.downloads),
            target_base_url=f"{self.repo_url}/targets/",
            config=UpdaterConfig(prefix_targets_with_hash=True),
            bootstrap=bootstrap,
        )

    def _prover(self) -> ConsistencyProver | None:
        """Consistency proofs from the policy's log; its HTTP client is made on first use."""
        url = self.policy.log_url
        if not url:
            return None
        if self._fetch_tile is None:
            fetch: Callable[[str], bytes] | None = None

            def lazy(path: str) -> bytes:
                nonlocal fetch
                if fetch is None:
                    fetch = http_fetcher(url)
                return fetch(path)

            self._fetch_tile = lazy
        return consistency_prover(self._fetch_tile)

    def _fresh(self, bundle: Bundle) -> Bundle:
        """Proofs against the log's newest checkpoint, when the bundle's are getting old.

        Only with a log URL and a maximum checkpoint age in the policy, and only
        once half that age has passed; if the log cannot be read the bundle is
        used as published (and the verifier decides).
        """
        max_age, url = self.policy.max_checkpoint_age_s, self.policy.log_url
        if max_age is None or not url:
            return bundle
        try:
            cosigned = self.policy.tlog_policy.verify_checkpoint(bundle.provenance.proof.checkpoint)
        except OvertError:
            return bundle
        newest = max(cosigned.cosigners.values(), default=0)
        if time.time() - newest < max_age / 2:
            return bundle
        try:
            if self._log_client is None:
                self._log_client = LogClient(http_fetcher(url), policy=self.policy.tlog_policy)
                self._log_client.update()
            return reprove(bundle, self._log_client)
        except OvertError:
            return bundle

    def installed(self) -> dict[str, dict[str, Any]]:
        try:
            loaded: dict[str, dict[str, Any]] = json.loads(self.installed_file.read_text())
        except FileNotFoundError:
            return {}
        return loaded

    def _fetch(self, updater: Updater, path: str) -> bytes:
        info = updater.get_targetinfo(path)
        if info is None:
            raise UpdateError(f"{path} is not a target of the repository")
        local = updater.find_cached_target(info) or updater.download_target(info)
        return Path(local).read_bytes()

    def update(self, step: Step = lambda _: None) -> UpdateReport:
        step(f"refreshing TUF metadata from {self.repo_url}")
        try:
            updater = self._updater()
            updater.refresh()
            index = json.loads(self._fetch(updater, INDEX_TARGET))
        except (RepositoryError, DownloadError) as exc:
            # Expired, rolled back, badly signed or unreachable metadata: nothing installs.
            reason = f"TUF refused the update channel: {type(exc).__name__}: {exc}"
            self._record("*", "*", "*", reason)
            raise UpdateError(reason) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # not MalformedError
            raise UpdateError(f"the repository's {INDEX_TARGET} is not valid JSON") from exc
        if not isinstance(index, dict):
            raise UpdateError(f"the repository's {INDEX_TARGET} must be a JSON object")
        report = UpdateReport()
        installed = self.installed()
        for channel in sorted(index):
            products = index[channel]
            if not isinstance(products, dict):
                continue
            for product in sorted(products):
                outcome = self._update_one(
                    updater, channel, product, products[product], installed, step
                )
                report.outcomes.append(outcome)
        return report

    def _update_one(
        self,
        updater: Updater,
        channel: str,
        product: str,
        entry: Any,
        installed: dict[str, dict[str, Any]],
        step: Step,
    ) -> Outcome:
        if not isinstance(entry, dict) or not isinstance(entry.get("targets"), list):
            return self._refuse(channel, product, "?", "the index entry is malformed")
        if not _PLAIN_NAME.fullmatch(product):
            # It names the install directory: never a path out of it.
            return self._refuse(
                channel, product, "?", "the index names a product that is not a plain name"
            )
        version = str(entry.get("version", "?"))
        key = f"{channel}/{product}"
        current = installed.get(key)
        if current is not None and current.get("version") == version:
            return Outcome(channel, product, version, "current")
        step(f"{product} {version}: downloading and verifying")
        try:
            bundle_bytes = self._fetch(updater, str(entry["bundle"]))
            files = {str(path): self._fetch(updater, str(path)) for path in entry["targets"]}
        except (RepositoryError, DownloadError, UpdateError, KeyError) as exc:
            return self._refuse(channel, product, version, f"TUF refused a target: {exc}")
        try:
            bundle = self._fresh(Bundle.from_bytes(bundle_bytes))
        except MalformedError as exc:
            return self._refuse(channel, product, version, f"malformed bundle: {exc}")
        memory = FileMemory(self.state / "checkpoints") if self.gossip else None
        decisions = []
        for path, data in files.items():
            name = path.rsplit("/", 1)[-1]
            if not _PLAIN_NAME.fullmatch(name):
                return self._refuse(channel, product, version, f"{path}: not a plain file name")
            if not path.startswith(f"{channel}/{product}/"):
                # The channel decides which rules apply: a target must live under it.
                return self._refuse(
                    channel, product, version, f"{path} is not under {channel}/{product}/"
                )
            decision = verify_release(
                name,
                hashlib.sha256(data).hexdigest(),
                bundle,
                self.policy,
                channel,
                memory=memory,
                prover=self._prover(),
            )
            decisions.append(decision)
            if not decision.accepted:
                outcome = self._refuse(channel, product, version, f"{name}: {decision.reason}")
                outcome.decisions = decisions
                return outcome
        log_index = decisions[0].log_index if decisions else None
        built = decisions[0].provenance if decisions else None
        if built is not None and (built.recipe.name, built.recipe.version) != (product, version):
            return self._refuse(
                channel,
                product,
                version,
                f"the index offers {product} {version}, but the provenance is of "
                f"{built.recipe.name} {built.recipe.version}",
            )
        if (
            current is not None
            and log_index is not None
            and current.get("log_index", -1) > log_index
        ):
            return self._refuse(
                channel,
                product,
                version,
                f"rollback: {version} was logged (entry {log_index}) before the installed "
                f"{current.get('version')} (entry {current.get('log_index')})",
            )
        target_dir = self.install_dir / product
        written = []
        for path, data in files.items():
            name = path.rsplit("/", 1)[-1]
            write_file(target_dir / name, data)  # each file appears whole (rename)
            written.append(name)
        # One flush for the release's files, before the record that they are installed.
        sync_filesystem(target_dir)
        for old in current.get("files", []) if current else []:
            if old not in written:
                (target_dir / old).unlink(missing_ok=True)
        installed[key] = {"version": version, "log_index": log_index, "files": written}
        atomic_write(self.installed_file, json.dumps(installed, indent=1, sort_keys=True).encode())
        return Outcome(channel, product, version, "installed", decisions=decisions, files=written)

    def _refuse(self, channel: str, product: str, version: str, reason: str) -> Outcome:
        self._record(channel, product, version, reason)
        return Outcome(channel, product, version, "refused", reason)

    def _record(self, channel: str, product: str, version: str, reason: str) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        record = {
            "time": int(time.time()),
            "channel": channel,
            "product": product,
            "version": version,
            "reason": reason,
        }
        with open(self.refusals_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
