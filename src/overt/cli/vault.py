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
    serve_forever,
)
from overt.durable import atomic_write
from overt.log.remote import FileMemory, default_state_dir
from overt.tlog.policy import Policy
from overt.vault.actors import ActorEntry, load_actors
from overt.vault.audit import audit
from overt.vault.events import JUSTIFICATIONS, Actor
from overt.vault.history import access_history
from overt.vault.residency import ResidencyPolicy
from overt.vault.vault import AccessRefused, Vault, init_vault

app = typer.Typer(
    help="The data vault: customer data kept in its region, every access logged first.",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="The residency policy.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
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
