"""``list``, ``plugins`` and ``validate``: read-only views of the catalogue.

None of these import the Anthropic SDK.
"""

from __future__ import annotations

import click

from cass_actions_core.catalogue import Catalogue
from cass_actions_core.cli.output import print_json, print_table, usd, warn
from cass_actions_core.cli.state import CLIState, global_options, json_option


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
@click.pass_obj
def list_command(state: CLIState, as_json: bool, packs: tuple[str, ...], categories: tuple[str, ...],
                 tiers: tuple[int, ...], show_templates: bool) -> None:
    """List the registered actions (or, with --templates, the templates)."""
    catalogue = state.catalogue()
    _warn_about(catalogue)
    if show_templates:
        _list_templates(catalogue, as_json, packs, categories)
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
            {**a.definition.model_dump(mode="json"), "pack": a.pack, "pack_version": versions.get(a.pack),
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


def _list_templates(catalogue: Catalogue, as_json: bool, packs: tuple[str, ...], categories: tuple[str, ...]) -> None:
    items = sorted(catalogue.templates.values(), key=lambda t: t.template.id)
    items = [t for t in items if (not packs or t.origin.pack in packs) and (not categories or t.template.category in categories)]
    if as_json:
        print_json([
            {**t.template.model_dump(mode="json"), "pack": t.origin.pack,
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
    records = [r for r in catalogue.plugins if show_all or r.status in ("loaded", "error")]
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    print_table(
        None,
        ["pack", "distribution", "version", "status", "actions", "templates", "hooks"],
        [(r.name, r.distribution or "(by hand)", r.version or "",
          r.status + (f": {r.error}" if r.error else "") + (f" ({r.problems} problem(s): run validate)" if r.problems else ""),
          r.actions, r.templates, ", ".join(r.hooks)) for r in records],
        justify_right=["actions", "templates"],
    )


@click.command("validate")
@global_options
@json_option
@click.option("--strict", is_flag=True, help="Also fail when a pack could not be loaded.")
@click.argument("template_files", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_obj
def validate_command(state: CLIState, as_json: bool, strict: bool, template_files: tuple[str, ...]) -> None:
    """Check the installed catalogue plus TEMPLATE_FILES; exit 1 if anything is wrong.

    Reports every problem at once: schema errors with their JSON path, actions without
    handlers (and the reverse), ids registered twice, template steps naming unknown
    actions (with the closest id), step params that break the action's params schema,
    and categories without a budget allocation.
    """
    catalogue = state.catalogue(template_files)
    problems = catalogue.all_problems(strict)
    if as_json:
        print_json({
            "ok": not problems,
            "strict": strict,
            "actions": len(catalogue.actions),
            "templates": len(catalogue.templates),
            "problems": [p.to_dict() for p in problems],
            "load_errors": [r.to_dict() for r in catalogue.load_errors],
        })
    else:
        if not strict:
            for record in catalogue.load_errors:
                warn(f"pack {record.name!r} could not be loaded: {record.error} (use --strict to fail on this)")
        for problem in problems:
            click.echo(f"- {problem.render()}")
        if problems:
            click.echo(f"{len(problems)} problem(s) found.")
        else:
            click.echo(f"OK: {len(catalogue.actions)} action(s) and {len(catalogue.templates)} template(s) are valid.")
    if problems:
        click.get_current_context().exit(1)
