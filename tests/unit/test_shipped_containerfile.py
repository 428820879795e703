"""The shipped production Containerfile and the files generated from it: what they run (the
nginx entrypoint, bench init's flags) read back from their text."""

from __future__ import annotations

import pytest

from frappe_imagekit import benchfile
from frappe_imagekit.containerfile import default_containerfile, parse_containerfile
from tests.support.printfscript import printed_script

ENTRYPOINT = "/usr/local/bin/nginx-entrypoint.sh"


def _shipped() -> str:
    return default_containerfile().read_text()


def _tier() -> str:
    return benchfile.render_tier(benchfile.split_template(_shipped()))


def _generated() -> str:
    return benchfile.render(["erpnext", "de_macrs"], benchfile.split_template(_shipped()))


@pytest.mark.parametrize("text", [_shipped, _tier], ids=["shipped", "system tier"])
def test_the_nginx_entrypoint_execs_nginx_so_it_is_pid_1_and_stops_on_sigterm(text) -> None:
    script = printed_script(text(), ENTRYPOINT).splitlines()
    assert script[0] == "#!/bin/bash"
    assert script[-1] == 'exec nginx -g "daemon off;"'
    assert [line for line in script if "nginx -g" in line] == [script[-1]]


@pytest.mark.parametrize("text", [_shipped, _generated], ids=["shipped", "generated"])
def test_bench_init_is_not_verbose_so_the_step_log_keeps_its_end(text) -> None:
    runs = [i.command for i in parse_containerfile(text()).instructions if "bench init" in i.command]
    assert len(runs) == 1
    assert "--skip-redis-config-generation" in runs[0]
    assert "--verbose" not in runs[0]
