"""The `registry` command: serve, migrate, manage centres and tokens, write the OpenAPI document."""

import os
import sys

import click
import psycopg.errors
from flask import current_app
from flask.cli import AppGroup, FlaskGroup

from registry import create_app, migrate
from registry.config import ConfigurationError, Settings
from registry.db import database
from registry.vocabulary import ROLE


def _settings() -> Settings:
    try:
        return Settings.from_environment()
    except ConfigurationError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


def _database_url(settings: Settings) -> str:
    from registry.embedded import resolve_database_url

    return resolve_database_url(settings)


def _create_app():
    settings = _settings()
    return create_app(settings, _database_url(settings))


class RegistryGroup(FlaskGroup):
    """Flask's CLI group without its --app/--env-file/--debug options, which mean nothing here."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.params = [param for param in self.params if param.name not in ("app", "env_file", "debug")]


@click.group(cls=RegistryGroup, create_app=_create_app, add_default_commands=False, add_version_option=False,
             load_dotenv=False, help="Surgical complication registry for sclerosing bone disorders.")
def cli():
    pass


# --- serving --------------------------------------------------------------------------------

@cli.command(with_appcontext=False)
@click.option("--bind", default=lambda: os.environ.get("REGISTRY_BIND", "127.0.0.1:8000"), show_default="127.0.0.1:8000",
              help="Address to listen on (REGISTRY_BIND).")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", "2")), show_default="2",
              help="gunicorn worker processes (WEB_CONCURRENCY).")
@click.option("--threads", type=int, default=lambda: int(os.environ.get("REGISTRY_THREADS", "4")), show_default="4",
              help="Threads per worker (REGISTRY_THREADS).")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations before serving.")
@click.option("--maintainer/--no-maintainer", default=True, envvar="REPORT_MAINTAINER", show_default=True,
              help="Run the report maintainer beside gunicorn (REPORT_MAINTAINER); off when it runs on its own "
                   "(`registry maintain-reports`).")
def serve(bind, workers, threads, no_migrate, maintainer):
    """Migrate the database, then serve the API under gunicorn, with the report maintainer."""
    from registry.serving import serve as run_gunicorn

    settings = _settings()
    database_url = _database_url(settings)
    if not no_migrate:
        migrate.upgrade(database_url)
    sys.exit(run_gunicorn(settings, database_url, bind=bind, workers=workers, threads=threads,
                          maintainer=_maintainer_options() if maintainer else None))


def _maintainer_options() -> dict:
    """The maintainer's batch size and idle poll from the environment, as `maintain-reports` reads them."""
    from registry.reports.maintainer import BATCH_SIZE, POLL_SECONDS

    context = maintain_reports.make_context("maintain-reports", [], resilient_parsing=False)
    return {"batch_size": context.params.get("batch_size", BATCH_SIZE),
            "poll_seconds": context.params.get("poll_seconds", POLL_SECONDS)}


@cli.command(name="maintain-reports", with_appcontext=False)
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=5000, envvar="REPORT_MAINTAINER_BATCH",
              show_default=True, show_envvar=True, help="Queued changes folded per transaction.")
@click.option("--poll-seconds", type=click.FloatRange(0.01, 60), default=0.5,
              envvar="REPORT_MAINTAINER_POLL_SECONDS", show_default=True, show_envvar=True,
              help="Sleep between looks at an empty queue.")
@click.option("--once", is_flag=True, help="Fold what is queued now, then exit.")
def maintain_reports(batch_size, poll_seconds, once):
    """Fold the writers' queued changes into the report aggregates, until stopped.

    Safe to run beside another maintainer (or `registry serve`, which runs one): they take turns."""
    import signal

    from registry.observability import configure_logging
    from registry.reports.maintainer import Maintainer

    settings = _settings()
    configure_logging(settings.log_level)
    maintainer = Maintainer(_database_url(settings), batch_size, poll_seconds)
    if once:
        try:
            taken = maintainer.drain()
        except psycopg.Error as exc:
            raise click.ClickException(f"the database refused: {exc}") from None
        finally:
            maintainer.close()
        click.echo(f"{taken} queued changes folded")
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: maintainer.stop())
    maintainer.run()


# --- schema ---------------------------------------------------------------------------------

@cli.group(name="db")
def db_group():
    """Apply or roll back schema migrations."""


@db_group.command(with_appcontext=False)
@click.argument("revision", default="head")
def upgrade(revision):
    """Migrate the schema up to REVISION (default: head)."""
    migrate.upgrade(_database_url(_settings()), revision)
    click.echo(f"database at {revision}")


@db_group.command(with_appcontext=False)
@click.argument("revision", default="-1")
def downgrade(revision):
    """Roll the schema back to REVISION (default: one step; `base` drops everything)."""
    migrate.downgrade(_database_url(_settings()), revision)
    click.echo(f"database downgraded to {revision}")


# --- centres and tokens ---------------------------------------------------------------------

@click.group(cls=AppGroup)
def centres():
    """Add and list centres."""


@centres.command(name="add")
@click.argument("code")
@click.argument("name")
def add_centre(code, name):
    """Add a centre with a short unique CODE and a NAME."""
    from registry.centres.schemas import CentreCreateSchema
    from registry.centres.store import add_centre as store_add_centre

    errors = CentreCreateSchema().validate({"code": code, "name": name})
    if errors:
        raise click.ClickException("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))
    try:
        with database().transaction() as conn:
            centre = store_add_centre(conn, code, name)
    except psycopg.errors.UniqueViolation:
        raise click.ClickException(f"a centre with code {code} already exists") from None
    click.echo(f"{centre['id']}\t{centre['code']}\t{centre['name']}")


@centres.command(name="list")
def list_centres():
    """List centres: id, code, name."""
    from registry.centres.store import list_centres as store_list_centres

    with database().transaction() as conn:
        for centre in store_list_centres(conn):
            click.echo(f"{centre['id']}\t{centre['code']}\t{centre['name']}")


cli.add_command(centres, "centres")
cli.add_command(centres, "centers")


@cli.group()
def tokens():
    """Issue, list, rotate and revoke bearer tokens."""


@tokens.command(name="issue")
@click.option("--centre", "--center", "centre_code", required=True, help="Code of the token's centre.")
@click.option("--role", type=click.Choice(list(ROLE)), required=True,
              help="A centre's first centre_admin is issued here; operator is what 0005 renamed admin to.")
@click.option("--label", default=None, help="A note saying who holds the token.")
@click.option("--expires-in-days", type=click.IntRange(1), default=None,
              help="Days until it expires (default TOKEN_DEFAULT_DAYS, at most TOKEN_MAX_DAYS).")
def issue_token(centre_code, role, label, expires_in_days):
    """Issue a token and print it once: only its hash is stored."""
    from registry.centres.store import get_centre_by_code
    from registry.tokens.store import issue_token as store_issue_token

    days = _token_lifetime_days(expires_in_days)
    with database().transaction() as conn:
        centre = get_centre_by_code(conn, centre_code)
        if centre is None:
            raise click.ClickException(f"no centre with code {centre_code}")
        row, token = store_issue_token(conn, centre["id"], role, label, expires_in_days=days)
    click.echo(token)
    click.echo(f"token id {row['id']}, role {role}, centre {centre_code}, expires {row['expires_at'].isoformat()};"
               " store it now, it is not shown again", err=True)


def _token_lifetime_days(requested: int | None) -> int:
    settings = current_app.config["REGISTRY_SETTINGS"]
    if requested is None:
        return settings.token_default_days
    if requested > settings.token_max_days:
        raise click.BadParameter(f"at most {settings.token_max_days} (TOKEN_MAX_DAYS)",
                                 param_hint="--expires-in-days")
    return requested


@tokens.command(name="rotate")
@click.argument("token_id", type=int)
@click.option("--grace-hours", type=click.IntRange(0, 7 * 24), default=24, show_default=True,
              help="Hours the old token keeps working next to its successor.")
@click.option("--expires-in-days", type=click.IntRange(1), default=None,
              help="Days until the successor expires (default TOKEN_DEFAULT_DAYS, at most TOKEN_MAX_DAYS).")
@click.option("--label", default=None, help="A note saying who holds the successor (default: the old token's).")
def rotate_token(token_id, grace_hours, expires_in_days, label):
    """Issue the successor of token TOKEN_ID, print its secret once, and end the old one after the grace period."""
    from registry.tokens import store

    days = _token_lifetime_days(expires_in_days)
    with database().transaction() as conn:
        old = store.get_token_for_update(conn, token_id)
        if old is None:
            raise click.ClickException(f"no token with id {token_id}")
        if old["revoked_at"] is not None or old["expired"] or old["successor_token_id"] is not None:
            state = ("revoked" if old["revoked_at"] is not None else
                     f"rotated already (successor {old['successor_token_id']})" if old["successor_token_id"]
                     else "expired")
            raise click.ClickException(f"token {token_id} is {state}: issue a new one")
        new, replaced, token = store.rotate_token(conn, old, grace_hours, expires_in_days=days,
                                                  label=store.KEEP if label is None else label)
    click.echo(token)
    click.echo(f"token id {new['id']} replaces token {token_id}, which stops at {replaced['expires_at'].isoformat()};"
               f" the new one expires {new['expires_at'].isoformat()}; store it now, it is not shown again", err=True)


@tokens.command(name="revoke")
@click.argument("token_id", type=int)
def revoke_token(token_id):
    """Revoke the token with id TOKEN_ID."""
    from registry.tokens.store import revoke_token as store_revoke_token

    with database().transaction() as conn:
        row = store_revoke_token(conn, token_id)
    if row is None:
        raise click.ClickException(f"no token with id {token_id}")
    click.echo(f"token {token_id} revoked")


@tokens.command(name="list")
def list_tokens():
    """List tokens: id, centre id, role, label, revoked, issued at, issued by, revoked by, expires at,
    last used at, successor.

    Issued and revoked by are token ids; `cli` when done from the command line. A rotated token's
    expiry is the end of its grace period; its successor is a token id (`-` when not rotated)."""
    from registry.tokens.store import list_tokens as store_list_tokens

    def by(token_id):
        return "cli" if token_id is None else str(token_id)

    with database().transaction() as conn:
        for row in store_list_tokens(conn):
            revoked = row["revoked_at"].isoformat() if row["revoked_at"] else "-"
            revoked_by = by(row["revoked_by_token_id"]) if row["revoked_at"] else "-"
            last_used = row["last_used_at"].isoformat() if row["last_used_at"] else "-"
            successor = row["successor_token_id"] or "-"
            click.echo(f"{row['id']}\t{row['centre_id']}\t{row['role']}\t{row['label'] or '-'}\t{revoked}"
                       f"\t{row['created_at'].isoformat()}\t{by(row['issued_by_token_id'])}\t{revoked_by}"
                       f"\t{row['expires_at'].isoformat()}\t{last_used}\t{successor}")


# --- maintenance ------------------------------------------------------------------------------

@cli.command(name="purge-idempotency-keys")
@click.option("--hours", type=click.IntRange(1), default=24, show_default=True,
              help="Forget answers to Idempotency-Keys older than this.")
def purge_idempotency_keys(hours):
    """Forget stored answers to old Idempotency-Keys (run daily, e.g. from cron)."""
    with database().transaction() as conn:
        purged = conn.execute("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => %s)",
                              (hours,)).rowcount
    click.echo(f"purged {purged} idempotency keys older than {hours} h")


# --- demo -----------------------------------------------------------------------------------

@cli.command()
@click.option("--new-tokens", is_flag=True, help="Revoke the demo tokens of an earlier run and print new ones.")
def demo(new_tokens):
    """Load the demo registry (the seed case and the cases it cites) and print two tokens.

    A rerun changes nothing: the cases are unchanged and the tokens of the first run stay
    valid (they are not printed again: only their hashes are kept)."""
    from registry.demo.load import load_demo

    with database().transaction() as conn:
        loaded = load_demo(conn, new_tokens=new_tokens)
    for line in loaded["outcomes"]:
        click.echo(line)
    for name, token in ((f"submitter token ({loaded['submitter_centre']})", loaded["submitter_token"]),
                        ("analyst token", loaded["analyst_token"])):
        click.echo(f"{name}: {token}" if token else
                   f"{name}: issued by an earlier run, still valid (`registry demo --new-tokens` replaces it)")


# --- bulk import ----------------------------------------------------------------------------

@cli.command(name="import")
@click.argument("file", type=click.File("rb"))
@click.option("--centre", "--center", "centre_code", required=True, help="Code of the centre the records belong to.")
@click.option("--mode", type=click.Choice(["partial", "atomic"]), default="partial", show_default=True,
              help="partial: store the good records; atomic: store nothing if any record is rejected.")
@click.option("--format", "file_format", type=click.Choice(["json", "csv"]), default=None,
              help="Format of FILE (default: from its extension, .csv or .json).")
def import_records(file, centre_code, mode, file_format):
    """Submit FILE (a JSON array or CSV, as POST /v1/submissions) for a centre; audited as role `cli`."""
    from registry.submissions.cli import import_file

    import_file(file, centre_code, mode, file_format)


# --- synthetic data -------------------------------------------------------------------------

@cli.command(name="generate", with_appcontext=False)
@click.option("--operations", type=click.IntRange(1), required=True, help="How many operations to add.")
@click.option("--seed", type=int, default=1, show_default=True)
def generate_registry(operations, seed):
    """Add a synthetic registry of N operations (benchmarks); never on real data."""
    import psycopg as pg

    from registry.reports.synthetic import generate

    database_url = _database_url(_settings())
    migrate.upgrade(database_url)
    with pg.connect(database_url, autocommit=True) as conn:
        click.echo(generate(conn, operations, seed, log=click.echo))


# --- OpenAPI --------------------------------------------------------------------------------

@cli.command(name="openapi", with_appcontext=False)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-", help="File to write (default stdout).")
def openapi(output):
    """Write the OpenAPI document generated from the code."""
    from registry.openapi import openapi_yaml

    text = openapi_yaml()
    if output == "-":
        sys.stdout.write(text)
    else:
        with open(output, "w") as handle:
            handle.write(text)
        click.echo(f"wrote {output}", err=True)


def main():
    try:
        cli.main(prog_name="registry")
    except ConfigurationError as exc:
        sys.exit(f"registry: configuration: {exc}")

