"""`imagekit site new NAME [TARGET]`: the first site of a stack, with every app of its image."""

from __future__ import annotations

from pathlib import Path

import typer

from frappe_imagekit import validate
from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import app, handle_errors, workspace_option
from frappe_imagekit.deploy import sitenew
from frappe_imagekit.deploy.sequence import open_runner
from frappe_imagekit.errors import UsageError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.targets import get_target
from frappe_imagekit.workspace import Workspace

site_app = typer.Typer(
    help="Sites of a deployed stack.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(site_app, name="site")


WORKSPACE_OPTION = workspace_option("Folder with imagekit.toml and builds/.")
ENV_FILE_HELP = "Env file with DB_PASSWORD and ADMIN_PASSWORD (default: the target's)."


def _new(
    site: str = typer.Argument(..., help="Name of the new site, e.g. erp.localhost."),
    target: str = typer.Argument("local", help="A target of imagekit.toml (default: local)."),
    env_file: str | None = typer.Option(None, "--env-file", help=ENV_FILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    workspace: Path = WORKSPACE_OPTION,
) -> None:
    """bench new-site with every app of the running image; passwords on stdin; then a health check."""
    site = validate.site_name(site, "the site name", UsageError)  # before any SSH connection
    ws = Workspace.at(workspace)
    chosen = get_target(ws.root, target)
    env_path = env_file or chosen.env_file
    if not env_path:
        raise UsageError(
            f"target {target} names no env_file: pass --env-file with DB_PASSWORD and ADMIN_PASSWORD."
        )
    runner = open_runner(
        chosen.host,
        known_hosts=chosen.known_hosts,
        identity_file=chosen.identity,
        ssh_config=chosen.ssh_config,
        docker_host=chosen.docker_host,
    )
    secrets = sitenew.passwords(runner.read_file(env_path), env_path)
    request = sitenew.SiteRequest(
        site=site,
        project=chosen.project,
        env_file=env_path,
        backend_service=chosen.backend_service or "backend",
    )
    emit = output.err if as_json else output.out
    with output.redacting(Redactor((secrets.root, secrets.admin))):
        result = sitenew.create_site(runner, ws, request, secrets, emit)
        if as_json:
            output.print_json(sitenew.result_dict(result))
            return
        for note in result.notes:
            output.warn(note)
        apps = ", ".join(["frappe", *result.apps])
        output.out(f"site {result.site} is ready: apps {apps}; health {result.health}.")
        output.out(sitenew.open_line(result.site, result.published, runner.host))
        output.out("log in as Administrator with ADMIN_PASSWORD of the env file.")


site_app.command("new")(handle_errors(_new))
