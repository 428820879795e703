"""SSHRunner against a real sshd on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from frappe_imagekit.errors import ExitCode, RemoteError
from frappe_imagekit.ssh import SSHRunner, resolve_target
from tests.support.sshd import SSHServer


@pytest.fixture
def runner(sshd: SSHServer) -> Iterator[SSHRunner]:
    r = SSHRunner(sshd.spec, known_hosts=sshd.known_hosts, identity_file=sshd.client_key)
    yield r
    r.close()


def test_runs_argv_quoted_and_returns_status(runner: SSHRunner):
    done = runner.run(["sh", "-c", 'echo "$1"; echo oops >&2; exit 3', "sh", "a b; $(rm -rf /)"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "a b; $(rm -rf /)\n", "oops\n")


def test_the_test_host_runs_commands_without_the_login_users_bashrc(runner: SSHRunner):
    """tests/support/sshd.py: bash (root's shell) reads ~/.bashrc for each command sshd runs; root's
    here runs `pyenv init` (0.15 s a command at idle, seconds under load). The tests' host does not."""
    assert runner.run(["sh", "-c", 'echo "${PYENV_ROOT:-none}"']).stdout == "none\n"


def test_large_interleaved_output_streams_without_deadlock(runner: SSHRunner):
    lines: list[str] = []
    script = (
        "i=0; while [ $i -lt 20000 ]; do echo line-$i-" + "x" * 40 + "; echo err-$i >&2; i=$((i+1)); done"
    )
    done = runner.run(["sh", "-c", script], on_stdout=lines.append, timeout=60)
    assert done.returncode == 0
    assert len(lines) == 20000 and lines[-1].startswith("line-19999-")
    assert done.stderr.count("\n") == 20000


def test_stdin_bytes_and_stream(runner: SSHRunner):
    assert runner.run(["cat"], input_bytes=b"hello\n").stdout == "hello\n"
    seen: list[int] = []
    data = b"x" * (3 * 1024 * 1024 + 5)
    done = runner.run_stdin_stream(["wc", "-c"], io.BytesIO(data), on_chunk=seen.append)
    assert done.stdout.strip() == str(len(data))
    assert seen[-1] == len(data)


def test_docker_host_goes_into_the_command_not_ssh_env(sshd: SSHServer):
    r = SSHRunner(
        sshd.spec,
        known_hosts=sshd.known_hosts,
        identity_file=sshd.client_key,
        docker_host="unix:///tmp/x.sock",
    )
    try:
        assert r.run(["sh", "-c", 'echo "$DOCKER_HOST"']).stdout == "unix:///tmp/x.sock\n"
    finally:
        r.close()


def test_unknown_host_key_is_refused_with_fingerprint(sshd: SSHServer, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(RemoteError) as info:
        SSHRunner(sshd.spec, known_hosts=empty, identity_file=sshd.client_key)
    message = str(info.value)
    assert f"[127.0.0.1]:{sshd.port} is not known" in message
    assert "SHA256:" in message and f"ssh-keyscan -p {sshd.port} 127.0.0.1" in message
    assert info.value.exit_code == ExitCode.REMOTE


def test_changed_host_key_is_refused(sshd: SSHServer):
    with pytest.raises(RemoteError) as info:
        SSHRunner(sshd.spec, known_hosts=sshd.wrong_known_hosts, identity_file=sshd.client_key)
    assert "CHANGED" in str(info.value)
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in str(info.value)


def test_wrong_user_key_is_refused(sshd: SSHServer, tmp_path: Path):
    from tests.support.sshd import keygen

    keygen(tmp_path / "stranger")
    with pytest.raises(RemoteError, match="authentication refused"):
        SSHRunner(sshd.spec, known_hosts=sshd.known_hosts, identity_file=tmp_path / "stranger")


def test_ssh_config_supplies_hostname_user_port_identity(sshd: SSHServer, tmp_path: Path):
    config = tmp_path / "config"
    config.write_text(
        f"Host erp-server\n  HostName 127.0.0.1\n  User root\n  Port {sshd.port}\n"
        f"  IdentityFile {sshd.client_key}\n"
    )
    target = resolve_target("erp-server", config)
    assert (target.hostname, target.user, target.port) == ("127.0.0.1", "root", sshd.port)
    r = SSHRunner("erp-server", known_hosts=sshd.known_hosts, ssh_config=config)
    try:
        assert r.run(["echo", "hi"]).stdout == "hi\n"
        assert r.state_home().endswith("/.local/state")
    finally:
        r.close()


def test_keepalive_is_on(runner: SSHRunner):
    transport = runner._client.get_transport()
    assert transport.packetizer._Packetizer__keepalive_interval == 15


def test_unreachable_port_is_a_remote_error(sshd: SSHServer):
    from tests.support.sshd import free_port

    with pytest.raises(RemoteError, match="cannot reach"):
        SSHRunner(f"root@127.0.0.1:{free_port()}", known_hosts=sshd.known_hosts, connect_timeout=2)


# ---------------------------------------------------------------- hardening (issue 8)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist or cannot be read: fix --identity"),
        ("hello\n", "is not a private key paramiko can read"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n",
            "not a private key",
        ),
    ],
)
def test_an_identity_file_paramiko_cannot_use_is_exit_7(
    sshd: SSHServer, tmp_path: Path, content: str | None, message: str
):
    key = tmp_path / "id_bad"
    if content is not None:
        key.write_text(content)
    with pytest.raises(RemoteError) as info:
        SSHRunner(sshd.spec, known_hosts=sshd.known_hosts, identity_file=key)
    assert message in info.value.message and str(key) in info.value.message
    assert info.value.exit_code == ExitCode.REMOTE


def test_a_known_hosts_line_paramiko_rejects_is_exit_7(sshd: SSHServer, tmp_path: Path):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts.read_text() + "h ssh-rsa AAAAB3NzaC1yc2E=\n")
    with pytest.raises(RemoteError) as info:
        SSHRunner(sshd.spec, known_hosts=known, identity_file=sshd.client_key)
    assert f"known_hosts file {known} has a line paramiko cannot read (ValueError)" in info.value.message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ProxyCommand nc %h %p", "sets proxycommand for erp-server, which imagekit does not support"),
        ("Port 99999", "has Port '99999': use a number from 1 to 65535"),
        ("HostName -oProxyCommand=touch", "is not a host name"),
    ],
)
def test_ssh_config_values_paramiko_or_imagekit_cannot_use_are_exit_7(
    sshd: SSHServer, tmp_path: Path, line: str, message: str
):
    config = tmp_path / "config"
    # the first value of an option wins in ssh_config: the bad line comes first
    config.write_text(f"Host erp-server\n  {line}\n  HostName 127.0.0.1\n  User root\n")
    with pytest.raises(RemoteError) as info:
        SSHRunner(
            "erp-server", known_hosts=sshd.known_hosts, ssh_config=config, identity_file=sshd.client_key
        )
    assert message in info.value.message and info.value.exit_code == ExitCode.REMOTE


def test_a_config_identity_file_that_does_not_exist_is_skipped(sshd: SSHServer, tmp_path: Path):
    config = tmp_path / "config"
    config.write_text(
        f"Host erp-server\n  HostName 127.0.0.1\n  User root\n  Port {sshd.port}\n"
        f"  IdentityFile {tmp_path}/missing\n  IdentityFile {sshd.client_key}\n"
    )
    r = SSHRunner("erp-server", known_hosts=sshd.known_hosts, ssh_config=config)
    try:
        assert r.run(["echo", "hi"]).stdout == "hi\n"
    finally:
        r.close()


def test_state_files_written_over_ssh_are_0600_in_0700_folders(runner: SSHRunner, tmp_path: Path):
    from frappe_imagekit.deploy import lock

    folder = tmp_path / "remote-state" / "projects" / "erp"
    runner.write_file(f"{folder}/env", b"DB_PASSWORD=x\n")
    runner.append_file(f"{folder}/audit.log", b"{}\n")
    assert lock.try_acquire(runner, f"{folder}/lock", lock.lock_details("v1", runner.host))
    modes = runner.run(["stat", "-c", "%a %n", str(folder), f"{folder}/env", f"{folder}/audit.log",
                        f"{folder}/lock", f"{folder}/lock/details.json"]).stdout.split("\n")  # fmt: skip
    assert [m.split(" ")[0] for m in modes if m] == ["700", "600", "600", "700", "600"]


def test_a_bad_host_is_a_usage_error_before_any_connection(sshd: SSHServer):
    from frappe_imagekit.errors import UsageError

    for spec in ("root@127.0.0.1:99999", "[::1]:x", "root@" + "a" * 64):
        with pytest.raises(UsageError):
            SSHRunner(spec, known_hosts=sshd.known_hosts, identity_file=sshd.client_key)
