import pytest

from frappe_imagekit import envfile
from frappe_imagekit.errors import ConfigError

EXAMPLE = """\
# Version of the image.
# @required
# @pattern ^v\\d+\\.\\d+\\.\\d+$
DE_SITE_VERSION=v1.0.0

# @choices 3.11.6|3.14.2
PYTHON_VERSION=3.11.6

# GitHub token.
# @secret
DE_MACRS_PAT=ghp_your_token_here
OPTIONAL=

# not attached: a blank line follows

PLAIN=x
"""


def specs():
    return envfile.parse_example_text(EXAMPLE)


def test_annotations_attach_to_the_key_below():
    s = specs()
    assert s["DE_SITE_VERSION"].required and s["DE_SITE_VERSION"].pattern == r"^v\d+\.\d+\.\d+$"
    assert s["DE_SITE_VERSION"].description == "Version of the image."
    assert s["DE_SITE_VERSION"].line == 4
    assert s["PYTHON_VERSION"].choices == ["3.11.6", "3.14.2"]
    assert s["DE_MACRS_PAT"].secret and s["DE_MACRS_PAT"].required
    assert s["DE_MACRS_PAT"].example_value == "ghp_your_token_here"
    assert not s["OPTIONAL"].required and s["OPTIONAL"].description == ""
    assert s["PLAIN"].description == "" and s["PLAIN"].line == 16


def validate(env_text):
    return envfile.validate_env(envfile.parse_env_text(env_text), specs())


def codes(issues):
    return sorted(i.code for i in issues)


GOOD = "DE_SITE_VERSION=v1.1.5\nPYTHON_VERSION=3.11.6\nDE_MACRS_PAT=ghp_real1234567890\nOPTIONAL=\nPLAIN=x\n"


def test_valid_env_has_no_issues():
    assert validate(GOOD) == []


def test_missing_key_names_key_and_example_line():
    issues = validate(GOOD.replace("PLAIN=x\n", ""))
    assert codes(issues) == ["env-missing"]
    assert "PLAIN" in issues[0].message and "de-example.env line 16" in issues[0].message


def test_missing_secret_example_line_hides_placeholder():
    issues = validate(GOOD.replace("DE_MACRS_PAT=ghp_real1234567890\n", ""))
    assert "DE_MACRS_PAT=<secret>" in issues[0].message
    assert issues[0].message.endswith("- GitHub token: add it to .env.")


def test_extra_key_is_schema_drift_warning():
    issues = validate(GOOD + "NEW_KEY=1\n")
    assert [(i.level, i.code) for i in issues] == [("warning", "env-drift")]
    assert "schema drift" in issues[0].message and "NEW_KEY" in issues[0].message


def test_pattern_and_choices():
    issues = validate(GOOD.replace("v1.1.5", "1.1.5").replace("3.11.6", "3.9.0"))
    assert codes(issues) == ["env-choice", "env-pattern"]
    assert "'1.1.5'" in issues[1].message or "'1.1.5'" in issues[0].message


def test_secret_placeholder_or_empty_is_error():
    assert codes(validate(GOOD.replace("ghp_real1234567890", "ghp_your_token_here"))) == ["env-placeholder"]
    assert codes(validate(GOOD.replace("ghp_real1234567890", ""))) == ["env-empty"]
    assert codes(validate(GOOD.replace("ghp_real1234567890", "changeme"))) == ["env-placeholder"]


def test_secret_pattern_mismatch_does_not_print_value():
    spec = envfile.KeySpec("TOKEN", 1, "x", required=True, secret=True, pattern="ghp_.*")
    issues = envfile._value_issues(spec, "abcdSECRETVALUE")
    assert issues and "abcdSECRETVALUE" not in issues[0].message


def test_syntax_error_line_is_reported():
    parsed = envfile.parse_env_text("A=1\n\nthis line is broken\nB=2\n")
    assert parsed.values == {"A": "1", "B": "2"}
    assert [i.code for i in parsed.issues] == ["env-syntax"]
    assert "line 3" in parsed.issues[0].message


def test_duplicate_key_warns_with_both_lines():
    parsed = envfile.parse_env_text("A=1\nA=2\n")
    assert parsed.values["A"] == "2"
    assert "lines 1 and 2" in parsed.issues[0].message


def test_unknown_annotation_and_bad_regex():
    issues = envfile.example_annotation_issues("# @secrte\nA=1\n# @pattern [a-\nB=2\n")
    assert [(i.level, i.code) for i in issues] == [
        ("warning", "example-annotation"),
        ("error", "example-pattern"),
    ]
    assert "@secrte" in issues[0].message and "line 3" in issues[1].message


def test_shipped_example_declares_what_imagekit_needs():
    from tests.support.workspace import REPO_ROOT

    shipped = envfile.parse_example_text((REPO_ROOT / "de-example.env").read_text())
    for key in (
        "DE_SITE_VERSION",
        "IMAGE_NAME",
        "FRAPPE_PATH",
        "FRAPPE_BRANCH",
        "PYTHON_VERSION",
        "NODE_VERSION",
        "DE_MACRS_PAT",
    ):
        assert key in shipped, key
    assert shipped["DE_MACRS_PAT"].secret
    import re

    assert re.fullmatch(shipped["DE_SITE_VERSION"].pattern, "v1.1.5")
    assert not re.fullmatch(shipped["DE_SITE_VERSION"].pattern, "1.1.5")


# -- issue 8: messages about .env lines never echo values; workspace files are what they seem ----

SECRET = "ghp_UNCLOSEDquote0123456789abcdef"


def test_an_unclosed_quote_names_line_and_key_never_the_value():
    parsed = envfile.parse_env_text(f'A=1\nDE_MACRS_PAT="{SECRET}\nB=2\n')
    (issue,) = parsed.issues
    assert issue.code == "env-syntax"
    assert issue.message.startswith(".env line 2 (DE_MACRS_PAT) is not KEY=VALUE")
    assert SECRET not in issue.message and SECRET[:8] not in issue.message
    assert parsed.values == {"A": "1", "B": "2"}


def test_lines_that_are_not_key_value_are_never_echoed():
    private_key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW==\n"
        "QyNTUxOQAAACDr'quoted\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    parsed = envfile.parse_env_text(private_key)
    specs = envfile.parse_example_text("A=1\n")
    messages = [i.message for i in parsed.issues + envfile.validate_env(parsed, specs)]
    assert messages
    for message in messages:
        for line in private_key.splitlines():
            assert line.strip("-") not in message
            assert line[:12] not in message


def test_shown_key_describes_keys_that_are_not_plain_names():
    assert envfile.shown_key("DE_MACRS_PAT") == "DE_MACRS_PAT"
    assert envfile.shown_key("lower_case") == "lower_case"
    for key in ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE", "ghp_ABCDEFGHIJKLMNOP", "My.Key"):
        assert key not in envfile.shown_key(key)


def test_a_symlink_out_of_the_workspace_is_refused(tmp_path):
    outside = tmp_path / "home" / ".ssh" / "id_ed25519"
    outside.parent.mkdir(parents=True)
    outside.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretkeymaterial\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".env").symlink_to(outside)
    with pytest.raises(ConfigError) as caught:
        envfile.read_text(ws / ".env", ".env")
    assert "symbolic link to a file outside the workspace" in caught.value.message
    assert "secretkeymaterial" not in caught.value.message and "id_ed25519" not in caught.value.message
    (ws / "real.env").write_text("A=1\n")
    (ws / "linked.env").symlink_to(ws / "real.env")  # inside the workspace: fine
    assert envfile.read_text(ws / "linked.env", ".env") == "A=1\n"


def test_special_and_huge_files_are_refused(tmp_path):
    import os

    fifo = tmp_path / ".env"
    os.mkfifo(fifo)  # reading it would hang
    with pytest.raises(ConfigError, match="is not a regular file"):
        envfile.read_text(fifo, ".env")
    big = tmp_path / "apps.json"
    big.write_bytes(b" " * (envfile.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="is not a regular file of at most 1024 KB"):
        envfile.read_text(big, "apps.json")
    binary = tmp_path / "de-example.env"
    binary.write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 2\)"):
        envfile.read_text(binary, "de-example.env")


def test_an_invalid_pattern_is_one_error_and_never_raises():
    example = "# @pattern ^(v\\d+\n# @required\nDE_SITE_VERSION=v1\n"
    issues = envfile.example_annotation_issues(example)
    assert [(i.level, i.code) for i in issues] == [("error", "example-pattern")]
    assert issues[0].message.startswith(
        "de-example.env line 1: @pattern is not a valid RE2 regular expression"
    )
    specs = envfile.parse_example_text(example)
    env = envfile.parse_env_text("DE_SITE_VERSION=v1\n")
    assert envfile.validate_env(env, specs) == []  # reported once, above; no crash here


def test_a_catastrophic_pattern_runs_in_linear_time():
    example = "# @pattern ^(\\w+)+!$\nNAME=x\n"
    assert envfile.example_annotation_issues(example) == []
    specs = envfile.parse_example_text(example)
    env = envfile.parse_env_text("NAME=" + "a" * 100_000 + "\n")  # backtracking: forever
    (issue,) = envfile.validate_env(env, specs)
    assert issue.code == "env-pattern"


@pytest.mark.parametrize("pattern", ["(?=x)y", "(a)\\1", "[z-a]", "x{2,1}"])
def test_patterns_re2_cannot_run_are_reported(pattern):
    (issue,) = envfile.example_annotation_issues(f"# @pattern {pattern}\nNAME=x\n")
    assert issue.code == "example-pattern"


def test_a_token_shaped_choice_is_not_repeated() -> None:
    """Found by hypothesis: a @choices list (repository content) holding a token was echoed."""
    token = "ghp_" + "Z" * 36
    specs = envfile.parse_example_text(f"# @choices a|b|{token}\nMODE=\n")
    (issue,) = envfile.validate_env(envfile.parse_env_text("MODE=c\n"), specs)
    assert issue.message == ".env MODE is 'c'; allowed: a, b, (a token-shaped choice): pick one."
