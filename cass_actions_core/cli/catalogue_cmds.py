"""``list``, ``plugins`` and ``validate``: read-only views of the catalogue.

None of these import the Anthropic SDK.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import click

from cass_actions_core.cli.output import print_json, print_table, usd, warn
from cass_actions_core.cli.state import CLIState, global_options, json_option

if TYPE_CHECKING:
    from cass_actions_core.catalogue import Catalogue
    from cass_actions_core.validate_cache import Report


def _warn_about(catalogue: Catalogue) -> None:
    for record in catalogue.load_errors:
        warn(f"pack {record.name!r} ({record.distribution or 'registered by hand'}) could not be loaded: {record.error}")
    if catalogue.problems:
        warn(f"the catalogue has {len(catalogue.problems)} problem(s); run 'cass-actions validate' for details")


@click.command("list")
@global_options
@json_option
@click.option("--pack", "packs", multiple=True, help="Only actions of this pack (repeatable).")
@click.option("--category", "categories", multiple=True, help="Only actions of this budget category (repeatable).")
@click.option("--tier", "tiers", multiple=True, type=click.IntRange(1, 5), help="Only actions of this tier (repeatable).")
@click.option("--templates", "show_templates", is_flag=True, help="List templates (steps, derived cost and duration) instead of actions.")
@click.option("--costs", "show_costs", is_flag=True,
              help="Also show each action's learned cost and duration (from the store in --data-dir), "
                   "which the planner and the budget use instead of the declared estimate.")
@click.pass_obj
def list_command(state: CLIState, as_json: bool, packs: tuple[str, ...], categories: tuple[str, ...],
                 tiers: tuple[int, ...], show_templates: bool, show_costs: bool) -> None:
    """List the registered actions (or, with --templates, the templates)."""
    catalogue = state.catalogue(full=show_templates)
    _warn_about(catalogue)
    loaded = {record.name for record in catalogue.plugins if record.ok}
    for pack in packs:
        if pack not in loaded:  # a typo would otherwise list nothing, successfully
            from cass_actions_core.catalogue import closest

            hint = closest(pack, loaded)
            raise click.ClickException(f"no loaded pack is named {pack!r}" + (f" (did you mean {hint!r}?)" if hint else
                                       "; 'cass-actions plugins' lists the packs"))
    if show_templates:
        _list_templates(catalogue, as_json, packs, categories)
        return
    if show_costs:
        _list_costs(state, catalogue, as_json, packs, categories, tiers)
        return
    actions = sorted(catalogue.actions.values(), key=lambda a: (a.definition.tier, a.definition.id))
    actions = [
        a for a in actions
        if (not packs or a.pack in packs) and (not categories or a.definition.category in categories)
        and (not tiers or a.definition.tier in tiers)
    ]
    versions = {p.name: p.version for p in catalogue.plugins}
    if as_json:
        print_json([
            {**a.definition.to_dict(), "pack": a.pack, "pack_version": versions.get(a.pack),
             "has_handler": a.handler is not None}
            for a in actions
        ])
        return
    print_table(
        None,
        ["id", "tier", "category", "est. cost", "max cost", "pack"],
        [(a.definition.id, a.definition.tier, a.definition.category, usd(a.definition.estimated_cost_usd),
          usd(a.definition.max_cost_usd), a.pack) for a in actions],
        justify_right=["tier", "est. cost", "max cost"],
    )
    click.echo(f"{len(actions)} action(s)")


def _list_costs(state: CLIState, catalogue: Catalogue, as_json: bool, packs: tuple[str, ...],
                categories: tuple[str, ...], tiers: tuple[int, ...]) -> None:
    from cass_actions_core.planning.costs import CostBook
    from cass_actions_core.store import Store, StoreError, open_store, store_location

    config = catalogue.config
    path = store_location(config.store.url, state.data_dir)
    store: Store | None = None
    if isinstance(path, str) or path.exists():  # never create a store file just to list
        try:
            store = open_store(path, config.daemon_id)
        except StoreError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        book = CostBook(catalogue, store, runs=config.planner.learned_cost_runs, model=config.llm.model)
    finally:
        if store is not None:
            store.close()
    rows = [f for f in book.figures.values()
            if (a := catalogue.actions[f.action_id]) and (not packs or a.pack in packs)
            and (not categories or a.definition.category in categories) and (not tiers or a.definition.tier in tiers)]
    rows.sort(key=lambda f: f.action_id)
    if as_json:
        print_json([{"id": f.action_id, "pack": catalogue.actions[f.action_id].pack,
                     "estimated_cost_usd": f.declared_usd, "learned_cost_usd": f.learned_usd,
                     "default_duration_minutes": f.declared_minutes, "learned_minutes": round(f.learned_minutes, 2),
                     "learned_runs": f.runs} for f in rows])
        return
    print_table(None, ["id", "est. cost", "learned", "minutes", "learned min", "runs"],
                [(f.action_id, usd(f.declared_usd), usd(f.learned_usd), f"{f.declared_minutes:g}",
                  f"{f.learned_minutes:.1f}", f.runs) for f in rows],
                justify_right=["est. cost", "learned", "minutes", "learned min", "runs"])
    source = f"the last {config.planner.learned_cost_runs} completed run(s) per action in {path}" if store is not None \
        else f"no store at {path} yet: learned = declared"
    click.echo(f"{len(rows)} action(s); learned = (n x median of {source} + declared) / (n + 1)")


def _list_templates(catalogue: Catalogue, as_json: bool, packs: tuple[str, ...], categories: tuple[str, ...]) -> None:
    items = sorted(catalogue.templates.values(), key=lambda t: t.template.id)
    items = [t for t in items if (not packs or t.origin.pack in packs) and (not categories or t.template.category in categories)]
    if as_json:
        print_json([
            {**t.template.to_dict(), "pack": t.origin.pack,
             "estimated_cost_usd": catalogue.template_cost(t.template),
             "estimated_duration_minutes": catalogue.template_duration(t.template)}
            for t in items
        ])
        return
    print_table(
        None,
        ["id", "category", "steps", "est. cost", "minutes", "pack"],
        [(t.template.id, t.template.category, " → ".join(s.action for s in t.template.steps),
          usd(catalogue.template_cost(t.template)), f"{catalogue.template_duration(t.template):g}", t.origin.pack)
         for t in items],
        justify_right=["est. cost", "minutes"],
    )
    click.echo(f"{len(items)} template(s)")


@click.command("plugins")
@global_options
@json_option
@click.option("--all", "show_all", is_flag=True, help="Also list disabled and not-selected packs.")
@click.pass_obj
def plugins_command(state: CLIState, as_json: bool, show_all: bool) -> None:
    """List action packs: version, hooks implemented, action and template counts, load errors."""
    catalogue = state.catalogue()
    records = [r for r in catalogue.plugins if show_all or r.status in ("loaded", "error", "missing")]
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    print_table(
        None,
        ["pack", "distribution", "version", "status", "actions", "templates", "hooks"],
        [(r.name, r.distribution or ("(not installed)" if r.status == "missing" else "(by hand)"), r.version or "",
          r.status + (f": {r.error}" if r.error else "") + (f" ({r.problems} problem(s): run validate)" if r.problems else ""),
          r.actions, r.templates, ", ".join(r.hooks)) for r in records],
        justify_right=["actions", "templates"],
    )


@click.command("validate")
@global_options
@json_option
@click.option("--strict", is_flag=True, help="Also fail when a pack could not be loaded.")
@click.option("--no-cache", is_flag=True,
              help="Check everything afresh: neither use nor save the result of an earlier run.")
@click.argument("template_files", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_obj
def validate_command(state: CLIState, as_json: bool, strict: bool, no_cache: bool, template_files: tuple[str, ...]) -> None:
    """Check the installed catalogue plus TEMPLATE_FILES; exit 1 if anything is wrong.

    Reports every problem at once: schema errors with their JSON path, actions without
    handlers (and the reverse), ids registered twice, template steps naming unknown
    actions (with the closest id), step params that break the action's params schema,
    and categories without a budget allocation. When nothing it read has changed since
    the last run, that run's result is printed again (see --no-cache).
    """
    report = _validate_report(state, template_files, use_cache=not no_cache)
    problems = report.all_problems(strict)
    if as_json:
        print_json({
            "ok": not problems,
            "strict": strict,
            "actions": report.actions,
            "templates": report.templates,
            "problems": [p.to_dict() for p in problems],
            "warnings": [w.to_dict() for w in report.warnings],
            "load_errors": [r.to_dict() for r in report.load_errors],
        })
    else:
        if not strict:
            for record in report.load_errors:
                warn(f"pack {record.name!r} could not be loaded: {record.error} (use --strict to fail on this)")
        for warning in report.warnings:
            click.echo(f"- warning: {warning.render()}")
        for problem in problems:
            click.echo(f"- {problem.render()}")
        if problems:
            click.echo(f"{len(problems)} problem(s) found.")
        else:
            click.echo(f"OK: {report.actions} action(s) and {report.templates} template(s) are valid"
                       + (f" ({len(report.warnings)} warning(s) above)." if report.warnings else "."))
    if problems:
        click.get_current_context().exit(1)


def _validate_report(state: CLIState, template_files: tuple[str, ...], use_cache: bool) -> Report:
    """The catalogue's report: the saved one when nothing it depends on changed, else a fresh check
    (saved for next time). See :mod:`cass_actions_core.validate_cache`."""
    from cass_actions_core.validate_cache import Report, ValidateCache

    config = state.config()
    if not use_cache:
        return Report.of(state.catalogue(template_files))
    from cass_actions_core.plugins import find_entry_points

    discovered = find_entry_points()
    try:
        cache = ValidateCache(config, template_files, discovered)
    except OSError:  # no working folder (it was deleted): nothing to key an entry on
        return Report.of(state.catalogue(template_files))
    report = cache.load()
    if report is not None:
        return report
    from cass_actions_core.catalogue import build_catalogue

    # The collector stays paused until the catalogue is dropped: built with it paused (see
    # catalogue._bulk), its million objects would otherwise all be walked once when it resumes.
    was_on = gc.isenabled()
    gc.disable()
    try:
        with cache.recording():
            catalogue = build_catalogue(config, template_files=template_files, discovered=discovered)
        report = Report.of(catalogue)
        cache.save(report, catalogue)
        del catalogue
    finally:
        if was_on:
            gc.enable()
    return report
