"""The boundary validators: each accepts what the outside tool accepts and refuses the rest."""

from __future__ import annotations

import pytest

from frappe_imagekit import validate
from frappe_imagekit.errors import ConfigError, ExitCode, UsageError

SHA1 = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("value", [SHA1, "a" * 64])
def test_commit_sha_accepts_full_hex(value: str) -> None:
    assert validate.commit_sha(value, "sha") == value


@pytest.mark.parametrize(
    "value", ["--upload-pack=touch X;git-upload-pack", SHA1.upper(), SHA1[:39], "", 5, None, ["x"]]
)
def test_commit_sha_refuses(value: object) -> None:
    with pytest.raises(ConfigError, match="^sha "):
        validate.commit_sha(value, "sha")


@pytest.mark.parametrize("value", ["version-15", "v15.17.0", "feature/x-1", "main"])
def test_git_ref_accepts(value: str) -> None:
    assert validate.git_ref(value, "ref") == value


@pytest.mark.parametrize(
    "value",
    [
        "-x",
        "--upload-pack=y",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "x.lock",
        "x/",
        "/x",
        "@",
        "a@{1}",
        ".hidden",
        "a/.b",
        "a\nb",
        "a\\b",
        "x" * 256,
    ],
)
def test_git_ref_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="not a valid git branch or tag name"):
        validate.git_ref(value, "ref")


def test_project_name_names_what_compose_would_use() -> None:
    assert validate.project_name("erp-main_1") == "erp-main_1"
    with pytest.raises(ConfigError, match="compose would use 'erp'"):
        validate.project_name("ERP")
    for bad in ("../../../x", "-p", "a/b", "", "a" * 64):
        with pytest.raises(ConfigError, match="project name"):
            validate.project_name(bad)


def test_usage_error_has_exit_code_2() -> None:
    with pytest.raises(UsageError) as caught:
        validate.project_name("a b", "--project", UsageError)
    assert caught.value.exit_code == ExitCode.USAGE == 2
    assert caught.value.message.startswith("--project 'a b' is not a compose project name")


@pytest.mark.parametrize("value", ["v1.0.0", "1", "v1.2.3-rc_1"])
def test_image_tag_accepts(value: str) -> None:
    assert validate.image_tag(value) == value


@pytest.mark.parametrize("value", ["../x", ".v1", "-v1", "v1/2", "a" * 129, "v 1"])
def test_image_tag_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="not a valid image tag"):
        validate.image_tag(value)


@pytest.mark.parametrize(
    "value", ["desiredeffect/erpnext-custom", "localhost:5000/a/b", "registry.example.com/x", "a__b"]
)
def test_image_name_accepts(value: str) -> None:
    assert validate.image_name(value) == value


@pytest.mark.parametrize("value", ["Upper/x", "x:tag", "-x", "a//b", "a/", "x y"])
def test_image_name_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="not a valid image name"):
        validate.image_name(value)


def test_site_env_service_and_positional() -> None:
    assert validate.site_name("erp.example.com") == "erp.example.com"
    assert validate.env_name("CUSTOM_IMAGE") == "CUSTOM_IMAGE"
    assert validate.service_name("queue-short") == "queue-short"
    assert validate.not_an_option("https://x/y.git", "url") == "https://x/y.git"
    for call, bad in (
        (validate.site_name, "../etc"),
        (validate.env_name, "A=B"),
        (validate.service_name, "-x"),
        (validate.not_an_option, "--upload-pack=x"),
    ):
        with pytest.raises(ConfigError, match="^value "):
            call(bad, "value")


def test_refused_value_is_shown_short() -> None:
    token = "ghp_" + "A" * 36
    with pytest.raises(ConfigError) as caught:
        validate.git_ref(token + " x", "ref")
    assert "ghp_" not in caught.value.message
    assert "(value hidden: it looks like a token)" in caught.value.message


@pytest.mark.parametrize("value", ["de_macrs.patches.v1_3", "erpnext", "_x.y2"])
def test_python_module_accepts_dotted_names(value):
    from frappe_imagekit.validate import python_module

    assert python_module(value) == value


@pytest.mark.parametrize("value", ["../etc", "de_macrs/patches", "a..b", "-x", "a b", "", 5, "1abc"])
def test_python_module_refuses_paths_and_options(value):
    from frappe_imagekit.errors import ConfigError
    from frappe_imagekit.validate import python_module

    with pytest.raises(ConfigError, match="module name|must be a string|is empty"):
        python_module(value)


# -- host_spec (harden-state) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["root@127.0.0.1:2222", "prod", "u@erp.example.com", "[::1]:22", "::1", "h:65535", "a_b"]
)
def test_host_spec_accepts(spec: str) -> None:
    assert validate.host_spec(spec, "--host", UsageError) == spec


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("[::1]:x", "the port must be a number from 1 to 65535"),
        ("h:99999", "the port must be a number from 1 to 65535"),
        ("a" * 64, "labels of at most 63 characters"),
        ("u@-oProxyCommand=x", "the server is not a host name"),
        ("@h", "the user name before '@'"),
        (["h"], "must be a string, not list"),
    ],
)
def test_host_spec_refuses(spec: object, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate.host_spec(spec, "--host", UsageError)
    assert reason in caught.value.message and caught.value.exit_code == ExitCode.USAGE


def test_host_spec_hides_a_token() -> None:
    with pytest.raises(ConfigError) as caught:
        validate.host_spec("ghp_" + "A" * 36 + "@h:x")
    assert "ghp_" not in caught.value.message


# --- exact builds (benchfile) --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["frappe", "erpnext", "de_macrs", "india_compliance", "a1"])
def test_app_name_accepts_python_package_names(name: str) -> None:
    assert validate.app_name(name) == name


@pytest.mark.parametrize("name", ["", "HRMS", "de-macrs", "1app", "_x", "a/b", "a b", "x;y", "a" * 65, 3])
def test_app_name_refuses_what_cannot_be_a_folder_arg_and_word(name: object) -> None:
    with pytest.raises(ConfigError, match="^the app name "):
        validate.app_name(name)


@pytest.mark.parametrize(
    "url", ["https://github.com/frappe/frappe", "http://127.0.0.1:8080/x.git", "file:///srv/git/app.git",
            "https://ghp_x@github.com/o/r.git"],
)  # fmt: skip
def test_git_url_accepts_https_http_and_file(url: str) -> None:
    assert validate.git_url(url) == url


@pytest.mark.parametrize(
    "url", ["ssh://git@github.com/o/r", "git@github.com:o/r.git", "https://h/a b", "https://h/a\nb",
            "https://h/a'b", 'https://h/a"b', "https://h/a\\b", "https://h/`id`", "-c x", "https://", ""],
)  # fmt: skip
def test_git_url_refuses_other_schemes_and_shell_or_line_breaking_characters(url: str) -> None:
    with pytest.raises(ConfigError):
        validate.git_url(url)


def test_git_url_never_shows_a_token() -> None:
    with pytest.raises(ConfigError) as caught:
        validate.git_url("https://ghp_abcdefghijklmnop@h/a b")
    assert "ghp_" not in caught.value.message


# -- repo_url (issue 8) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/frappe/erpnext",
        "https://${DE_MACRS_PAT}@github.com/desiredeffect/de_macrs.git",
        "http://127.0.0.1:8080/app.git",
        "http://127.1.2.3/app.git",
        "http://[::1]:8080/app.git",
        "http://${T}@localhost/app.git",
        "file:///srv/mirrors/app.git",
    ],
)
def test_repo_url_accepts(url: str) -> None:
    assert validate.repo_url(url, "url") == url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("--upload-pack=touch X;git-upload-pack", "url-option"),
        ("-c", "url-option"),
        ("https://github.com/a b", "url-option"),
        ("https://github.com/a\nb", "url-option"),
        ("git@github.com:org/app.git", "apps-ssh"),
        ("ssh://git@github.com/org/app.git", "apps-ssh"),
        ("http://${DE_MACRS_PAT}@attacker.example:8080/x.git", "apps-http"),
        ("http://${DE_MACRS_PAT}@127.0.0.1.attacker.example/x.git", "apps-http"),
        ("http://localhost.attacker.example/x.git", "apps-http"),
        ("ftp://github.com/x", "apps-scheme"),
        ("github.com/org/app", "apps-scheme"),
        ("https:///org/app", "url-invalid"),
        ("https://github.com:99999/x", "url-invalid"),
        ("https://[::1/x", "url-invalid"),
        ("http://127.0.0.1/${DE_MACRS_PAT}/app.git", "url-placeholder-place"),
        ("https://github.com/org/app.git?t=${DE_MACRS_PAT}", "url-placeholder-place"),
        ("https://${A}@github.com/${B}/app.git", "url-placeholder-place"),
        ("https://ghp_abcdefghijklmnop@github.com/org/app", "apps-raw-token"),
        ("https://user:pass@github.com/org/app", "apps-raw-token"),
    ],
)
def test_repo_url_refuses_with_one_sentence(url: str, code: str) -> None:
    problems = validate.repo_url_problems(url, "apps.json [0].url")
    assert problems and problems[0][0] == code
    with pytest.raises(ConfigError) as caught:
        validate.repo_url(url, "apps.json [0].url")
    message = caught.value.message
    assert message.startswith("apps.json [0].url ") and message.endswith(".")
    for secret in ("ghp_abcdefghijklmnop", "pass", "touch X"):
        assert secret not in message


@pytest.mark.parametrize("value", [None, 5, ["https://x"], {"url": "x"}, ""])
def test_repo_url_refuses_other_shapes(value: object) -> None:
    with pytest.raises(ConfigError, match="^url "):
        validate.repo_url(value, "url")


# -- rollback validators


def test_deploy_id_takes_a_utc_stamp_only() -> None:
    assert validate.deploy_id("20261201T165500Z") == "20261201T165500Z"
    for bad in ("2026-12-01", "20261201T165500Z/..", "-20261201T165500Z", 5, ""):
        with pytest.raises(ConfigError):
            validate.deploy_id(bad, "--deploy")


def test_backup_copy_must_be_a_plain_file_in_its_folder() -> None:
    folder = "/home/d/.local/state/imagekit/projects/erp/backups/20261201T165500Z/a.local"
    good = f"{folder}/20261201_165501-a_local-database.sql.gz"
    assert validate.backup_copy(good, folder, "backup") == good
    for bad in (
        "/etc/shadow",
        f"{folder}/../b.local/x.sql.gz",
        f"{folder}/sub/x.sql.gz",
        f"{folder}/",
        f"{folder}x/y.sql.gz",
        f"{folder}/-rf",
        None,
    ):
        with pytest.raises(ConfigError) as caught:
            validate.backup_copy(bad, folder, "sites[0].backup_files[0].path")
        assert "shadow" not in caught.value.message


def test_sha256_hex() -> None:
    assert validate.sha256_hex("ab" * 32) == "ab" * 32
    for bad in ("AB" * 32, "ab" * 31, "x", 7):
        with pytest.raises(ConfigError):
            validate.sha256_hex(bad)
