"""Deploy options, --host specs and the target's state files: bad values are refused before
anything connects or stops (exit 2), state files that cannot be used are treated as missing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from frappe_imagekit import ssh
from frappe_imagekit.deploy import lock
from frappe_imagekit.deploy import sequence as deploy
from frappe_imagekit.deploy.sequence import DeployOptions, check_options, parse_last_up
from frappe_imagekit.errors import ExitCode, RemoteError, UsageError
from frappe_imagekit.runner import LocalRunner
from tests.support.cli import invoke


def _options(**changes) -> DeployOptions:
    base = {"project": "erp", "compose_file": "/srv/compose.yaml", "image": "de/erp", "version": "v1"}
    return DeployOptions.of(**{**base, **changes})


BAD_OPTIONS = [
    ({"image_var": "A=B"}, "--image-var 'A=B' is not a variable name"),
    ({"tag_var": "X Y"}, "--tag-var 'X Y' is not a variable name"),
    ({"image_var": "TAG", "tag_var": "TAG"}, "--image-var and --tag-var are both TAG"),
    ({"project": "../../../x"}, "--project '../../../x' is not a compose project name"),
    ({"project": "ERP"}, "(compose would use 'erp')"),
    ({"version": "../v1"}, "--version '../v1' is not a valid image tag"),
    ({"image": "Not/Valid"}, "is not a valid image name"),
    ({"backend_service": "-x"}, "--backend-service '-x' is not a compose service name"),
    ({"oneshot_services": ("ok", "a b")}, "a --oneshot service 'a b'"),
    ({"sites": []}, "--sites names no site"),
    ({"sites": ["a.local", "../x"]}, "a --sites entry '../x' is not a valid site name"),
    ({"compose_file": "-f/etc/passwd"}, "--compose '-f/etc/passwd' cannot start with '-'"),
    ({"env_file": "--env-file=/x"}, "--env-file '--env-file=/x' cannot start with '-'"),
    ({"state_dir": "/tmp/a\nb"}, "--state-dir"),
    ({"lock_wait": -1}, "--lock-wait must be a number of seconds from 0"),
    ({"up_timeout": float("nan")}, "--up-timeout must be a number of seconds"),
    ({"stop_timeout": True}, "the stop timeout must be a number"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_OPTIONS)
def test_a_bad_option_is_a_usage_error(changes: dict, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_options(_options(**changes))
    assert caught.value.exit_code == ExitCode.USAGE
    assert message in caught.value.message


def test_good_options_pass_unchanged() -> None:
    opts = _options(sites=["a.local", "b.example.com"], env_file="/srv/.env", oneshot_services=())
    assert check_options(opts) is opts


class _Refuse:
    """A runner that fails the test if deploy runs anything at all."""

    host = "local"

    def run(self, argv, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"deploy ran {argv} before checking its options")

    def state_home(self) -> str:
        raise AssertionError("deploy looked at the target before checking its options")


def test_deploy_checks_options_before_running_anything(tmp_path: Path) -> None:
    from frappe_imagekit.workspace import Workspace

    ws = Workspace.at(tmp_path)
    with pytest.raises(UsageError, match="--image-var"):
        deploy.deploy(_Refuse(), ws, _options(image_var="A=B"))  # type: ignore[arg-type]
    assert not ws.deploys_dir.exists()  # nothing recorded


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text("IMAGE_NAME=de/erp\n")
    return tmp_path


@pytest.fixture
def no_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a runner was opened before the options were checked")

    monkeypatch.setattr(deploy, "open_runner", refuse)


CLI_CASES = [
    (["--image-var", "A=B"], "--image-var 'A=B' is not a variable name"),
    (["--project", "../../../x"], "--project '../../../x' is not a compose project name"),
    (["--project", "ERP"], "compose would use 'erp'"),
    (["--sites", ","], "--sites names no site"),
    (["--oneshot", "a;b"], "a --oneshot service 'a;b'"),
    (["--lock-wait", "-5"], "--lock-wait must be a number of seconds"),
    (["--host", "[::1]:x"], "the port must be a number from 1 to 65535"),
    (["--host", "root@h:99999"], "the port must be a number from 1 to 65535"),
    (["--host", "root@" + "a" * 64 + ".example"], "labels of at most 63 characters"),
    (["--docker-host", "-H"], "--docker-host '-H' cannot start with '-'"),
    (["--version", "../../x"], "--version '../../x' is not a valid image tag"),
    (["--transfer", "rsync"], "--transfer is 'rsync': use auto, registry or save."),
]


@pytest.mark.parametrize(("extra", "message"), CLI_CASES)
def test_cli_refuses_bad_options_with_exit_2(
    ws: Path, no_runner: None, extra: list[str], message: str
) -> None:
    args = ["deploy", "-w", str(ws), "--project", "erp", "--compose", "/srv/c.yaml", "--version", "v1"]
    result = invoke(*args, *extra)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert message in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert not (ws / "deploys").exists()


@pytest.mark.parametrize("project", ["../x", "ERP", "a/b"])
def test_unlock_refuses_a_project_that_is_not_a_name(project: str, no_runner: None) -> None:
    result = invoke("unlock", "--project", project)
    assert result.exit_code == ExitCode.USAGE
    assert "is not a compose project name" in result.stderr


def test_state_paths_never_leave_the_state_folder() -> None:
    with pytest.raises(UsageError):
        deploy.state_paths(LocalRunner(), "../../../x", "/srv/state")
    assert deploy.state_paths(LocalRunner(), "erp", "/srv/state/").root == "/srv/state/projects/erp"


# -- --host --------------------------------------------------------------------------------

GOOD_HOSTS = [
    ("root@127.0.0.1:2222", ("root", "127.0.0.1", 2222)),
    ("deploy@erp.example.com", ("deploy", "erp.example.com", None)),
    ("prod", (None, "prod", None)),
    ("my_alias", (None, "my_alias", None)),
    ("[::1]:22", (None, "::1", 22)),
    ("u@[::1]", ("u", "::1", None)),
    ("::1", (None, "::1", None)),
    ("h:65535", (None, "h", 65535)),
]
BAD_HOSTS = [
    ("[::1]:x", "the port must be a number"),
    ("h:99999", "the port must be a number"),
    ("h:0", "the port must be a number"),
    ("h:", "the port must be a number"),
    ("a" * 64 + ".example", "labels of at most 63 characters"),
    ("x." * 130 + "x", "not a host name"),
    ("@h", "the user name before '@'"),
    ("-oProxyCommand=x", "not a host name"),
    ("u@-oProxyCommand=x", "not a host name"),
    ("[nope]:22", "not an IPv6 address"),
    ("[::1", "not an IPv6 address"),
    ("h h", "not a host name"),
    ("", "is empty"),
    ("a:b:c", "neither a host name nor an IPv6 address"),
]


@pytest.mark.parametrize(("spec", "parsed"), GOOD_HOSTS)
def test_parse_host_accepts(spec: str, parsed: tuple) -> None:
    assert ssh.parse_host(spec) == parsed


@pytest.mark.parametrize(("spec", "reason"), BAD_HOSTS)
def test_parse_host_refuses_with_a_usage_error(spec: str, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        ssh.parse_host(spec)
    assert reason in caught.value.message and caught.value.exit_code == ExitCode.USAGE


# -- ~/.ssh/config and known_hosts ----------------------------------------------------------

BAD_CONFIGS = [
    ("Host h\n  Port abc\n", "has Port 'abc': use a number from 1 to 65535"),
    ("Host h\n  Port 99999\n", "has Port '99999'"),
    ("Host h\n  Port\n", "has a line paramiko cannot use (ConfigParseError)"),
    ("Host h\n  ProxyCommand nc %h %p\n", "sets proxycommand for h, which imagekit does not support"),
    ("Host h\n  ProxyJump bastion\n", "sets proxyjump"),
    ("Include other.conf\n", "sets include"),
    ("Host h\n  HostName -oProxyCommand=x\n", "is not a host name"),
    ("Host h\n  User -l\n", "the user name before '@'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_ssh_config_that_cannot_be_used_is_exit_7(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config"
    config.write_text(text)
    with pytest.raises(RemoteError) as caught:
        ssh.resolve_target("h", config)
    assert caught.value.exit_code == ExitCode.REMOTE
    assert message in caught.value.message and str(config) in caught.value.message


def test_ssh_config_binary_or_missing_is_exit_7(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_bytes(b"Host h\n  Port \xff\xfe\n")
    with pytest.raises(RemoteError, match="cannot read the ssh config"):
        ssh.resolve_target("h", config)
    with pytest.raises(RemoteError, match="does not exist: fix --ssh-config"):
        ssh.resolve_target("h", tmp_path / "missing")


def test_ssh_config_values_are_applied(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host prod\n  HostName 127.0.0.1\n  User ops\n  Port 2222\n  IdentityFile ~/k\n")
    target = ssh.resolve_target("prod", config)
    assert (target.hostname, target.user, target.port) == ("127.0.0.1", "ops", 2222)
    assert target.identity_files[0].endswith("/k")


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("[h]:22 ssh-ed25519 !!!notbase64\n", "InvalidHostKey"),
        ("h ssh-rsa AAAAB3NzaC1yc2E=\n", "ValueError"),  # paramiko's own ValueError: was exit 70
        ("garbage\n", None),  # lines paramiko skips by itself stay skipped
        ("h ssh-ed25519 AAAA\n", None),
    ],
)
def test_known_hosts_line_paramiko_rejects_is_exit_7(tmp_path: Path, line: str, kind: str | None) -> None:
    import paramiko

    known = tmp_path / "known_hosts"
    known.write_text(line)
    if kind is None:
        ssh._load_host_keys(paramiko.SSHClient(), str(known))
        return
    with pytest.raises(RemoteError) as caught:
        ssh._load_host_keys(paramiko.SSHClient(), str(known))
    assert caught.value.exit_code == ExitCode.REMOTE
    assert f"known_hosts file {known} has a line paramiko cannot read ({kind})" in caught.value.message


# -- state files ---------------------------------------------------------------------------

GOOD_LAST_UP = {
    "config_files": "/srv/compose.yaml",
    "sha256": "ab" * 32,
    "project_dir": "/srv",
    "env_file": None,
    "env": {"CUSTOM_IMAGE": "de/erp", "CUSTOM_TAG": "v1"},
    "version": "v1",
}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[]", "not a JSON object"),
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        ("[" * 100000, "not valid JSON"),
        (json.dumps({**GOOD_LAST_UP, "config_files": 5}), "config_files must be a string"),
        (json.dumps({**GOOD_LAST_UP, "config_files": "-f/x"}), "cannot start with '-'"),
        (json.dumps({**GOOD_LAST_UP, "sha256": None}), "sha256 must be a string"),
        (json.dumps({**GOOD_LAST_UP, "project_dir": ["/srv"]}), "project_dir must be a string"),
        (json.dumps({**GOOD_LAST_UP, "env": []}), "env is not an object"),
        (json.dumps({**GOOD_LAST_UP, "env": {"A=B": "x"}}), "is not a variable name"),
        (json.dumps({**GOOD_LAST_UP, "env": {"A": 1}}), "env A is not a string"),
    ],
)
def test_last_up_of_the_wrong_shape_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_last_up(text)
    assert reason in str(caught.value)


def test_last_up_of_the_right_shape_is_returned() -> None:
    assert parse_last_up(json.dumps(GOOD_LAST_UP)) == GOOD_LAST_UP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("[1]", None),
        ('"x"', None),
        ("{", None),
        ('{"pid": "12", "who": 5}', None),
        ('{"pid": true, "who": "bob"}', {"who": "bob"}),
        ('{"pid": 12, "who": "' + "b" * 500 + '", "x": 1}', {"pid": 12, "who": "b" * 200}),
    ],
)
def test_lock_details_keep_only_usable_fields(text: str | None, expected: dict | None) -> None:
    assert lock.parse_details(text) == expected


def test_lock_details_of_the_wrong_shape_still_name_the_lock(tmp_path: Path) -> None:
    lock_dir = tmp_path / "projects" / "erp" / "lock"
    lock_dir.mkdir(parents=True)
    (lock_dir / "details.json").write_text('["not", "details"]')
    with pytest.raises(lock.LockHeldError) as caught:
        lock.acquire(LocalRunner(), str(lock_dir), lock.lock_details("v1", "local"), "erp")
    assert "locked by another deploy (no usable details yet)" in caught.value.message
    assert lock.is_stale(lock.read_details(LocalRunner(), str(lock_dir))) is False


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_lock_folder_is_0700(tmp_path: Path) -> None:
    lock_dir = tmp_path / "state" / "projects" / "erp" / "lock"
    assert lock.try_acquire(LocalRunner(), str(lock_dir), lock.lock_details("v1", "local"))
    assert _mode(lock_dir) == 0o700 and _mode(lock_dir.parent) == 0o700
    assert _mode(lock_dir / "details.json") == 0o600
