"""`overt vault` and `overt access`: customer data under residency and the access gate."""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
import sys
from pathlib import Path

import typer

from overt.cli.common import (
    EXIT_VERIFY_FAILED,
    err,
    fail,
    handle_errors,
    out,
    parse_listen,
    read_input,
    read_text,
    serve_forever,
)
from overt.durable import atomic_write
from overt.log.remote import FileMemory, default_state_dir
from overt.tlog.policy import Policy
from overt.vault.actors import ActorEntry, load_actors
from overt.vault.audit import audit
from overt.vault.events import JUSTIFICATIONS, Actor
from overt.vault.history import access_history
from overt.vault.policy_history import PolicyHistory, set_policy
from overt.vault.relocate import DEFAULT_BATCH, Progress, Relocator, plan
from overt.vault.report import relocation_report
from overt.vault.residency import ResidencyPolicy
from overt.vault.vault import AccessRefused, Vault, init_vault

app = typer.Typer(
    help="The data vault: customer data kept in its region, every access logged first.",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="The residency policy.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
report_app = typer.Typer(
    help="Evidence reports, verified against the access logs.", no_args_is_help=True
)
app.add_typer(report_app, name="report")
access_app = typer.Typer(
    help="Customers' view of who accessed their data, verified against the access logs.",
    no_args_is_help=True,
)

JUSTIFICATION_HELP = "Why: " + ", ".join(JUSTIFICATIONS) + "."


@app.command()
@handle_errors
def init(
    directory: Path = typer.Argument(..., help="New directory for the vault."),
    policy: Path = typer.Option(..., "--policy", help="Residency policy (TOML) to start with."),
    origin: str = typer.Option(
        ..., "--origin", help="Prefix for the access logs' origins, e.g. example.com/acme."
    ),
    database: str = typer.Option(
        "",
        "--database",
        help="Keep the regions' records and the access logs' sequencing state in this "
        "PostgreSQL database (postgresql://...); default: SQLite files in the vault.",
    ),
) -> None:
    """Create a vault: its signing key, and one access log per region of the policy."""
    vkey = init_vault(directory, read_input(policy, "policy").decode("utf-8"), origin, database)
    out.print(vkey, soft_wrap=True)


@policy_app.command("check")
@handle_errors
def policy_check(
    source: Path = typer.Argument(..., help="A vault directory or a residency policy file."),
) -> None:
    """Explain a residency policy in plain words."""
    path = source / "residency.toml" if source.is_dir() else source
    for line in ResidencyPolicy.load(path).explain():
        out.print(line, soft_wrap=True)


@policy_app.command("set")
@handle_errors
def policy_set(
    directory: Path = typer.Argument(..., help="The vault directory."),
    file: Path = typer.Argument(..., help="The new residency policy (TOML)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make FILE the residency policy, as a new version logged in every region first.

    Data it sends elsewhere stays readable where it is until 'overt vault relocate'
    moves it; new writes already follow the new version.
    """
    text = read_text(file, "residency policy")
    with Vault(directory) as vault:
        change = set_policy(vault, text)
        todo = plan(vault)
        vault.publish()
    if as_json:
        doc = {
            "version": change.version,
            "changed": change.changed,
            "logged": change.logged,
            "changes": change.changes,
            "to_relocate": todo.to_json(),
        }
        print(json.dumps(doc, indent=2))
        return
    if change.initial_logged:
        out.print("policy version 1 (the vault's initial policy) logged in every region")
    if not change.changed:
        out.print(f"the policy is already version {change.version}; nothing changed")
        return
    where = ", ".join(f"{r} #{i}" for r, i in sorted(change.logged.items()))
    out.print(f"policy version {change.version} logged ({where}) and in force", soft_wrap=True)
    for c in change.changes:
        out.print(f"  {c['country']}: {c['from'] or 'no region'} -> {c['to'] or 'no region'}")
    if todo.objects:
        out.print(
            f"{todo.objects} objects ({todo.bytes} bytes) must move: run "
            f"'overt vault relocate {directory}'",
            soft_wrap=True,
        )


@policy_app.command("history")
@handle_errors
def policy_history(
    directory: Path = typer.Argument(..., help="The vault directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON."),
) -> None:
    """Every version of the residency policy and where its statement was logged."""
    if not (directory / "residency.toml").exists():
        fail(f"{directory} is not a vault")
    rows = PolicyHistory(directory).describe()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "in force" if row["in_force"] else ("PENDING" if row["pending"] else "earlier")
        logged = ", ".join(f"{r} #{i}" for r, i in sorted(row["logged"].items())) or "not logged"
        head = f"version {row['version']} ({state}) sha256 {row['sha256'][:16]}"
        if row["logged"]:
            out.print(f"{head}: logged {_when(row.get('time'))} in {logged}", soft_wrap=True)
        else:
            out.print(f"{head}: not logged yet (the first 'policy set' logs it)", soft_wrap=True)
        for c in row.get("changes", []):
            out.print(f"  {c['country']}: {c['from'] or 'no region'} -> {c['to'] or 'no region'}")


@app.command()
@handle_errors
def relocate(
    directory: Path = typer.Argument(..., help="The vault directory."),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="Set this residency policy first (as 'overt vault policy set'); with --dry-run, "
        "only show what it would move.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Report what would move; change nothing."
    ),
    batch: int = typer.Option(DEFAULT_BATCH, "--batch", help="Objects per batch (1 to 10000)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Move data to the regions the policy in force names: each batch logged in both
    regions, copied, verified, then the old copies crypto-shredded (also logged).

    Resumes an interrupted run where it stopped. Progress goes to stderr.
    """
    text = read_text(policy, "residency policy") if policy is not None else None
    with Vault(directory) as vault:
        if dry_run:
            target = ResidencyPolicy.parse(text, str(policy)) if text is not None else None
            version = vault.policy_version + 1 if text is not None else None
            todo = plan(vault, target, version)
            if as_json:
                print(json.dumps({"dry_run": True, **todo.to_json(batch)}, indent=2))
                return
            out.print(
                f"dry run: under policy version {todo.policy_version}, {todo.objects} objects "
                f"({todo.bytes} bytes) would move in {todo.batches(batch)} batches",
                soft_wrap=True,
            )
            for r in todo.routes(batch):
                out.print(
                    f"  {r['country']}: {r['from']} -> {r['to']}: {r['objects']} objects of "
                    f"{r['customers']} customers, {r['bytes']} bytes, {r['batches']} batches"
                )
            for country, count in sorted(todo.stranded.items()):
                err.print(
                    f"[yellow]warning[/] {count} objects of customers in {country} have no region"
                )
            if todo.returning:
                err.print(
                    f"[yellow]warning[/] {len(todo.returning)} objects would move back into a "
                    "region that keeps their shredded record: relocate would refuse",
                    soft_wrap=True,
                )
            return
        if text is not None:
            change = set_policy(vault, text)
            if change.changed:
                err.print(f"policy version {change.version} logged and in force")

        def show(p: Progress) -> None:
            rate = p.done / p.seconds if p.seconds > 0 else 0.0
            again = " (resumed)" if p.resumed else ""
            err.print(
                f"batch {p.batch}{again}: {p.objects} objects of {p.country} {p.src} -> {p.dst} "
                f"logged, copied, verified, shredded [{p.done}/{p.total}, {rate:,.0f} objects/s]",
                soft_wrap=True,
                highlight=False,
            )

        try:
            result = Relocator(vault, batch, progress=show).run()
            vault.publish()
        except AccessRefused as exc:
            fail(str(exc), EXIT_VERIFY_FAILED)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    if not result.run:
        out.print(
            "nothing to relocate: every object is where policy version "
            f"{result.policy_version} puts it"
        )
        return
    rate = result.moved / result.seconds if result.seconds > 0 else 0.0
    out.print(
        f"relocation run {result.run} complete (policy version {result.policy_version}): "
        f"{result.moved} objects moved in {result.batches} batches "
        f"({result.resumed_batches} resumed), {result.skipped} skipped (erased meanwhile), "
        f"{result.seconds:.2f} s, {rate:,.0f} objects/s; the old copies' keys are destroyed",
        soft_wrap=True,
    )
    for r in result.to_json()["routes"]:
        out.print(f"  {r['country']}: {r['from']} -> {r['to']}: {r['objects']} objects")


@report_app.command("relocation")
@handle_errors
def report_relocation(
    directory: Path = typer.Argument(..., help="The vault directory (its access logs)."),
    customer: str | None = typer.Option(None, "--customer", help="A customer's id."),
    country: str | None = typer.Option(None, "--country", help="A country (ISO 3166)."),
    key: str | None = typer.Option(
        None, "--key", help="The customer's pseudonym key (hex); read from the vault if omitted."
    ),
    policy_file: Path | None = typer.Option(
        None,
        "--policy",
        help="Your tlog-policy for the access logs (their keys, the witnesses you trust, the "
        "quorum). Without it, checkpoints are checked against the logs' own keys only.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """The evidence that a customer's or a country's data moved: every batch's events
    with inclusion proofs, counts per region before and after, the shredding.

    Exits 0 when everything verifies and nothing is left behind, 1 otherwise.
    """
    if (customer is None) == (country is None):
        fail("give --customer or --country")
    secret = None
    if key is not None:
        try:
            secret = bytes.fromhex(key)
        except ValueError:
            fail("--key must be hex")
    trust = Policy.parse(read_input(policy_file, "policy")) if policy_file else None
    with Vault(directory) as vault:
        vault.publish()
        report = relocation_report(
            vault, customer, country, secret, trust, FileMemory(default_state_dir())
        )
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        subject = (
            f"customer {customer}" if customer else f"customers in {report['subject']['country']}"
        )
        out.print(
            f"relocation report for {subject} (policy version {report['policy_in_force']} in force)"
        )
        seen = set()
        for st in report["policy_statements"]:
            if st["version"] in seen:
                continue
            seen.add(st["version"])
            if st["changes"]:
                what = ", ".join(f"{c['country']} {c['from']} -> {c['to']}" for c in st["changes"])
            else:
                what = ", ".join(f"{c} in {r or 'no region'}" for c, r in st["regions_of"].items())
            out.print(
                f"  policy version {st['version']} logged {_when(st['time'])}: {what}",
                soft_wrap=True,
            )
        roles = {"relocate_out": "out of", "relocate_in": "into", "shred": "shredded in"}
        for b in report["batches"]:
            mark = "complete" if b["complete"] else "INCOMPLETE: " + "; ".join(b["problems"])
            events = ", ".join(
                f"{roles[role]} {e['region']} #{e['index']}" for role, e in b["events"].items()
            )
            out.print(
                f"  batch {b['batch']} (run {b['run']}): {b['moved']} objects {b['from']} -> "
                f"{b['to']} under policy version {b['policy']}, logged {events}; {mark}",
                soft_wrap=True,
                markup=False,
            )
        for region, c in report["regions"].items():
            out.print(
                f"  {region}: {c['before']} objects before, {c['after']} after "
                f"({c['moved_out']} moved out, {c['moved_in']} moved in, "
                f"{c['shredded']} shredded)",
                soft_wrap=True,
            )
        how = "witnessed checkpoints" if report["witnessed"] else "the logs' own checkpoints"
        if report["verified"]:
            out.print(
                f"verified: every batch event proven against {how}; nothing readable left behind",
                soft_wrap=True,
            )
    if not report["verified"]:
        for problem in report["problems"]:
            err.print(f"[bold red]PROBLEM[/] {problem}", soft_wrap=True)
        raise typer.Exit(EXIT_VERIFY_FAILED)


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int):
        return "at an unknown time"
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


@app.command("add-actor")
@handle_errors
def add_actor(
    directory: Path = typer.Argument(..., help="The vault directory."),
    name: str = typer.Option(..., "--name"),
    role: str = typer.Option(..., "--role"),
    employer: str = typer.Option(..., "--employer"),
    location: str = typer.Option(..., "--location", help="Where they work (country code)."),
    justifications: list[str] = typer.Option(
        ..., "--justification", help="A justification they may use (repeatable)."
    ),
) -> None:
    """Allow a staff member to access data; prints their API token once."""
    for j in justifications:
        if j not in JUSTIFICATIONS:
            fail(f"unknown justification {j!r}; use one of {', '.join(JUSTIFICATIONS)}")
    actors_file = directory / "actors.toml"
    if name in load_actors(actors_file):
        fail(f"an actor named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    entry = ActorEntry(
        Actor(name, role, employer, location),
        tuple(justifications),
        hashlib.sha256(token.encode()).hexdigest(),
    )
    text = actors_file.read_text() if actors_file.exists() else ""
    atomic_write(actors_file, (text + "\n" + entry.to_toml()).encode())
    load_actors(actors_file)
    out.print(token)


@app.command()
@handle_errors
def put(
    directory: Path = typer.Argument(..., help="The vault directory."),
    file: Path = typer.Argument(..., help="The data to store."),
    customer: str = typer.Option(..., "--customer", help="The customer's id."),
    country: str = typer.Option(..., "--country", help="The customer's country (ISO 3166)."),
    category: str = typer.Option(..., "--category", help="The data category."),
    region: str | None = typer.Option(
        None, "--region", help="Insist on a region (refused unless it is the customer's)."
    ),
) -> None:
    """Store FILE as ingested data in the customer's region; prints {"id", "region"}."""
    with Vault(directory) as vault:
        try:
            (stored,) = vault.ingest(
                customer, country, category, [read_input(file, "data")], region
            )
        except AccessRefused as exc:
            fail(str(exc), EXIT_VERIFY_FAILED)
    print(json.dumps({"id": stored.id, "region": stored.region}))


@app.command()
@handle_errors
def get(
    directory: Path = typer.Argument(..., help="The vault directory."),
    object_id: str = typer.Argument(..., help="The object's id."),
    actor: str = typer.Option(..., "--actor", help="Who is accessing (a name in actors.toml)."),
    justification: str = typer.Option("", "--justification", help=JUSTIFICATION_HELP),
    ticket: str = typer.Option("", "--ticket", help="The ticket or case reference."),
    requester_country: str = typer.Option(
        "", "--requester-country", help="For LEGAL_REQUEST: the requesting country."
    ),
    out_file: Path | None = typer.Option(None, "--out", "-o", help="Write the data here."),
) -> None:
    """Read an object: allowed only with a justification, and logged before it happens.

    Exits 0 with the data, 1 when the access is refused (the reason on stderr).
    """
    with Vault(directory) as vault:
        try:
            data = vault.read(object_id, actor, justification, ticket, requester_country)
        except AccessRefused as exc:
            fail(str(exc), EXIT_VERIFY_FAILED)
    if out_file is None:
        sys.stdout.buffer.write(data)
    else:
        atomic_write(out_file, data, mode=0o600)
        err.print(f"wrote {out_file} ({len(data)} bytes); the access is on the record")


@app.command()
@handle_errors
def erase(
    directory: Path = typer.Argument(..., help="The vault directory."),
    object_id: str | None = typer.Argument(None, help="The object to erase."),
    customer: str | None = typer.Option(None, "--customer", help="Erase all of a customer's data."),
    actor: str = typer.Option(..., "--actor"),
    justification: str = typer.Option("DATA_ERASURE", "--justification", help=JUSTIFICATION_HELP),
    ticket: str = typer.Option("", "--ticket"),
) -> None:
    """Crypto-shred: destroy the data keys, so no copy or backup can be decrypted."""
    if (object_id is None) == (customer is None):
        fail("give an object id or --customer, not both")
    with Vault(directory) as vault:
        try:
            if object_id is not None:
                vault.erase(object_id, actor, justification, ticket)
                out.print(f"erased {object_id}")
            else:
                assert customer is not None
                count = vault.erase_customer(customer, actor, justification, ticket)
                out.print(f"erased {count} objects of customer {customer}")
        except AccessRefused as exc:
            fail(str(exc), EXIT_VERIFY_FAILED)


@app.command("audit")
@handle_errors
def audit_cmd(directory: Path = typer.Argument(..., help="The vault directory.")) -> None:
    """Reconcile the stores with the access logs; exit 1 listing any discrepancy."""
    with Vault(directory) as vault:
        vault.publish()
        report = audit(vault)
    out.print(
        f"checked {report.checked_objects} objects against {report.checked_events} access events"
    )
    if report.relocated or report.policy_versions:
        out.print(
            f"{report.relocated} objects relocated (old copies shredded); "
            f"{report.policy_versions} policy statements checked"
        )
    if report.legal_requests:
        out.print("legal requests (requesting country, outcome: count):")
        for (country, outcome), count in sorted(report.legal_requests.items()):
            out.print(f"  {country} {outcome}: {count}")
    else:
        out.print("legal requests: none")
    for w in report.warnings:
        err.print(f"[yellow]warning[/] {w}", soft_wrap=True)
    if not report.ok:
        for d in report.discrepancies:
            err.print(f"[bold red]DISCREPANCY[/] {d}", soft_wrap=True)
        raise typer.Exit(EXIT_VERIFY_FAILED)
    out.print("OK: every object, erasure and journalled access reconciles with the access logs")


@app.command("customer-key")
@handle_errors
def customer_key(
    directory: Path = typer.Argument(..., help="The vault directory."),
    customer: str = typer.Option(..., "--customer"),
) -> None:
    """Print the key a customer needs to find their events in the access logs (hex)."""
    with Vault(directory) as vault:
        out.print(vault.customers.key(customer).hex())


@app.command()
@handle_errors
def serve(
    directory: Path = typer.Argument(..., help="The vault directory."),
    listen: str = typer.Option("127.0.0.1:8070", "--listen", help="HOST:PORT to listen on."),
) -> None:
    """Serve the vault's HTTP API (ingestion and staff access), see docs/vault.md."""
    from overt.web.vault_api import create_vault_app

    host, port = parse_listen(listen)
    serve_forever(create_vault_app(directory), host, port, f"vault {directory}")


@access_app.command("history")
@handle_errors
def history(
    directory: Path = typer.Argument(..., help="The vault directory (its access logs)."),
    customer: str = typer.Option(..., "--customer", help="Your customer id."),
    key: str | None = typer.Option(
        None, "--key", help="Your pseudonym key (hex); read from the vault if omitted."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the events as a JSON array."),
    policy_file: Path | None = typer.Option(
        None,
        "--policy",
        help="Your tlog-policy for the access logs (their keys, the witnesses you trust, the "
        "quorum). Without it, checkpoints are checked against the logs' own keys only.",
    ),
) -> None:
    """Every access to your data, each proven to be in a region's access log."""
    with Vault(directory) as vault:
        vault.publish()
        if key is None:
            customer_secret = vault.customers.key(customer)
        else:
            try:
                customer_secret = bytes.fromhex(key)
            except ValueError:
                fail("--key must be hex")
        trust = Policy.parse(read_input(policy_file, "policy")) if policy_file else None
        events = access_history(
            directory,
            list(vault.policy.regions),
            customer,
            customer_secret,
            vault.verifier,
            trust,
            FileMemory(default_state_dir()),
        )
    if as_json:
        print(json.dumps(events, indent=2))
        return
    if not events:
        out.print(f"no access to data of customer {customer} is on record")
    for e in events:
        mark = "verified" if e["verified"] else "NOT VERIFIED"
        what = ", ".join(e.get("objects", [])) or f"batch of {e.get('batch', {}).get('count')}"
        actor = e.get("actor", {})
        when = datetime.datetime.fromtimestamp(e["time"], datetime.UTC).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        out.print(
            f"{when} {e['region']} {e['action']} {e['outcome']} {what} by "
            f"{actor.get('name')} ({actor.get('role')}, {actor.get('employer')}, "
            f"{actor.get('location')}) for {e['justification'] or '-'} "
            f"ticket {e['ticket'] or '-'}{': ' + e['reason'] if e.get('reason') else ''} - {mark}",
            soft_wrap=True,
            markup=False,
        )
