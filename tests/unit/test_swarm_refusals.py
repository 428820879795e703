"""Commands that run a compose sandbox refuse a swarm target before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import invoke


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["rehearse", "v1", "prod"], "imagekit rehearse"),
        (["backups", "prod", "--verify", "latest"], "imagekit backups --verify"),
        (["backups", "prod", "--all"], "imagekit backups --verify"),
    ],
)
def test_a_compose_sandbox_is_never_started_for_a_swarm_target(tmp_path: Path, argv: list[str], command: str):
    (tmp_path / "imagekit.toml").write_text(
        '[targets.prod]\nproject = "erp"\ncompose = "compose.yaml"\nengine = "swarm"\n'
        'host = "ops@192.0.2.1"\n'  # nothing answers there: a connection attempt would fail otherwise
    )
    result = invoke(*argv, "-w", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().endswith(
        f"{command} on a swarm target is not built yet: it would run a compose project outside the "
        "swarm, so nothing was started; use a compose target."
    )
    assert "Traceback" not in result.output
