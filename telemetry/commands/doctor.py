"""`python -m telemetry doctor`: is telemetry working here? One line per check, `PASS|FAIL <check>: <detail>`,
and under each failure `  fix: <hint>`; exit 1 when any check fails.

The database checks (`checks`): reachable, schema version, writable. With `--comfyui URL` also that ComfyUI
(`comfy_checks`): it answers, the pack's hooks are installed, the pack's own database is usable, and a test
prompt (EmptyImage -> PreviewImage) run there ends up in this database. Without `--comfyui` those are skipped,
with a note saying so.
"""

from __future__ import annotations

import argparse
import sys

from ..store.store import Store
from . import checks, comfy_checks
from .checks import Check, failed
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    MISSING_HINT,
    CommandError,
    Context,
    add_database_options,
    command,
    one_line,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "doctor", help="check the database and, with --comfyui, the pack inside a ComfyUI end to end",
        description="Check that the telemetry database is reachable, writable and on this pack's schema, and with "
                    "--comfyui that ComfyUI answers, the pack's hooks are installed there and a test prompt "
                    "(EmptyImage -> PreviewImage) is recorded into this database. Prints PASS or FAIL per check, "
                    "with a fix for each failure; exits 1 if any check fails.",
        epilog="example: python -m telemetry doctor --comfyui http://127.0.0.1:8188 "
               "--database-url sqlite:///ComfyUI/user/__run_telemetry/telemetry.db")
    parser.add_argument("--comfyui", default=None, metavar="URL",
                        help="also check this ComfyUI and run a test prompt through it")
    parser.add_argument("--timeout", type=_seconds, default=60.0,
                        help="seconds to wait for the test prompt to run (default: %(default)s)")
    add_database_options(parser)
    parser.set_defaults(handler=command(run_doctor))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be seconds from 0 to 3600, got {text!r}")
    return value


def run_doctor(ctx: Context) -> int:
    comfy_url = None
    if ctx.args.comfyui:
        from ..watch.client import normalize_base_url

        try:
            comfy_url = normalize_base_url(ctx.args.comfyui)
        except ValueError as exc:
            raise CommandError(f"--comfyui: {exc}", EXIT_USAGE) from None
    results: list[Check] = []

    def report(check: Check) -> Check:
        results.append(check)
        sys.stdout.write(check.lines() + "\n")
        sys.stdout.flush()
        return check

    store = _open_store(ctx, report)
    database_ok = store is not None and report(checks.reachable(store, ctx.shown_url)).ok
    if database_ok:
        report(checks.schema(store))
        database_ok = report(checks.writable(store, has_schema=bool(_applied(store)))).ok
    else:
        for name in ("schema version", "database writable"):
            report(failed(name, "not checked: the database is not usable", "fix the database check above first"))
    if comfy_url is None:
        sys.stdout.write("note: ComfyUI checks skipped: pass --comfyui URL to check the pack's hooks in a ComfyUI "
                         "and run a test prompt through it into this database\n")
    else:
        _comfy(ctx, comfy_url, database_ok, report)
    bad = sum(1 for c in results if not c.ok)
    sys.stdout.write(f"{len(results) - bad} passed, {bad} failed\n")
    return EXIT_FAILURE if bad else EXIT_OK


def _open_store(ctx: Context, report) -> Store | None:
    missing = ctx.missing_sqlite_file()
    if missing is not None:
        report(failed("database", f"no telemetry database at {ctx.shown_url}: {missing} does not exist",
                      MISSING_HINT))
        return None
    try:
        return ctx.store
    except OSError as exc:
        report(failed("database", f"cannot open {ctx.shown_url}: {one_line(exc, 300)}", MISSING_HINT))
        return None


def _applied(store: Store) -> set[int]:
    try:
        return checks.applied_versions(store)
    except Exception:
        return set()


def _comfy(ctx: Context, url: str, database_ok: bool, report) -> None:
    if not report(comfy_checks.comfyui_answers(url)).ok:
        for name in ("hooks", "comfyui database", "end-to-end"):
            report(failed(name, f"not checked: ComfyUI at {url} does not answer", comfy_checks.START_HINT))
        return
    hooks, health = comfy_checks.pack_health(url)
    report(hooks)
    pack_url = None
    if health is not None and health.get("source") == "plugin":
        report(comfy_checks.pack_database(health, ctx.url, ctx.shown_url))
        pack_url = (health.get("database") or {}).get("url")
    else:
        report(failed("comfyui database", "not checked: the pack's health is not available",
                      "fix the hooks check above first"))
    if not hooks.ok:
        report(failed("end-to-end", "not run: the pack's hooks are not working", "fix the hooks check above first"))
        return
    if not database_ok:
        report(failed("end-to-end", "not run: this database cannot be used", "fix the database checks above first"))
        return
    report(comfy_checks.end_to_end(url, ctx.store.get_run, ctx.shown_url, ctx.args.timeout, pack_url))
