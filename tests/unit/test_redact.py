"""The redactor masks every form a secret can take on its way out, given only the secret."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from frappe_imagekit.redact import MASK, Redactor, secret_forms

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # GitHub PAT shape, 40 chars
TOKENS_BY_LENGTH_MOD_3 = [TOKEN, TOKEN + "x", TOKEN + "xy"]  # 40, 41, 42 chars


def apps_json(token: str, padding: int) -> str:
    """An injected apps.json, ``padding`` spaces in front so the token sits at any offset."""
    apps = [
        {"url": "https://github.com/frappe/erpnext", "branch": "version-15"},
        {"url": f"https://{token}@github.com/acme/private_app.git", "branch": "main"},
    ]
    return " " * padding + json.dumps(apps, indent=2)


@pytest.mark.parametrize("token", TOKENS_BY_LENGTH_MOD_3)
def test_raw_token_is_masked_wherever_it_appears(token: str) -> None:
    redactor = Redactor([token])

    line = f"fatal: could not read from https://{token}@github.com/acme/app.git ({token})"

    assert (
        redactor.redact(line) == f"fatal: could not read from https://{MASK}@github.com/acme/app.git ({MASK})"
    )


def test_url_encoded_token_is_masked() -> None:
    password = "p@ss/w0rd!x"
    redactor = Redactor([password])

    text = f"https://user:{quote(password, safe='')}@git.example.com and {quote(password)}"

    assert redactor.redact(text) == f"https://user:{MASK}@git.example.com and {MASK}"
    assert "%40" not in redactor.redact(text)


@pytest.mark.parametrize("token", TOKENS_BY_LENGTH_MOD_3)
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_the_token_itself_is_masked(token: str, encode) -> None:
    encoded = encode(token.encode()).decode()

    assert Redactor([token]).redact(f"APPS={encoded};") == f"APPS={MASK};"


@pytest.mark.parametrize("token", TOKENS_BY_LENGTH_MOD_3)
@pytest.mark.parametrize("padding", [0, 1, 2, 3, 4, 5])
def test_base64_of_a_document_embedding_the_token_is_masked_at_every_offset(token: str, padding: int) -> None:
    document = apps_json(token, padding)
    encoded = base64.b64encode(document.encode()).decode()
    build_arg_line = f"RUN |1 APPS_JSON_BASE64={encoded} /bin/sh -c echo $APPS_JSON_BASE64"

    masked = Redactor([token]).redact(build_arg_line)

    assert masked.count(MASK) == 1
    assert masked.startswith("RUN |1 APPS_JSON_BASE64=")
    assert masked.endswith(" /bin/sh -c echo $APPS_JSON_BASE64")


@pytest.mark.parametrize("prefix_len", range(12))
@pytest.mark.parametrize("suffix_len", range(4))
@pytest.mark.parametrize("token", TOKENS_BY_LENGTH_MOD_3)
def test_every_prefix_and_suffix_alignment_of_base64_is_masked(
    prefix_len: int, suffix_len: int, token: str
) -> None:
    document = "x" * prefix_len + token + "y" * suffix_len
    encoded = base64.b64encode(document.encode()).decode()

    masked = Redactor([token]).redact(encoded)

    assert masked.count(MASK) == 1
    # Only the base64 chars that mix token bits with their neighbours' may survive:
    # at most 2 on each side of the token's 4/3 * len chars.
    hidden = len(encoded) - (len(masked) - len(MASK))
    assert hidden >= len(token) * 4 // 3 - 4


def test_document_without_the_token_is_left_alone() -> None:
    other = apps_json("ghp_" + "Z" * 36, 1)
    encoded = base64.b64encode(other.encode()).decode()
    redactor = Redactor([TOKEN])

    assert redactor.redact(other) == other
    assert redactor.redact(encoded) == encoded


def test_whole_document_is_masked_raw_and_in_exact_base64() -> None:
    document = apps_json("${ACME_PAT}", 0)
    redactor = Redactor()
    redactor.add(document, whole_document=True)
    encoded = base64.b64encode(document.encode()).decode()

    assert redactor.redact(f"a {document} b") == f"a {MASK} b"
    assert redactor.redact(f"--build-arg APPS={encoded}") == f"--build-arg APPS={MASK}"
    assert redactor.forms == {document, encoded}


@pytest.mark.parametrize("short", ["", "a", "ab", "abc"])
def test_values_shorter_than_four_characters_are_ignored(short: str) -> None:
    redactor = Redactor([short])
    redactor.add(short)
    redactor.add(short, whole_document=True)

    assert redactor.forms == frozenset()
    assert redactor.redact("abc a ab") == "abc a ab"
    assert "abc" not in redactor


def test_short_forms_are_dropped_but_the_value_is_kept() -> None:
    assert all(len(form) >= 4 for form in secret_forms("abcd"))
    assert "abcd" in secret_forms("abcd")
    assert secret_forms("") == set()


def test_secret_forms_lists_raw_url_encoded_and_base64() -> None:
    forms = secret_forms("to/ken+1?")

    assert {"to/ken+1?", "to%2Fken%2B1%3F", "to/ken%2B1%3F"} <= forms
    assert base64.b64encode(b"to/ken+1?").decode() in forms
    assert base64.urlsafe_b64encode(b"to/ken+1?").decode() in forms


def test_in_operator_tells_whether_any_form_appears() -> None:
    redactor = Redactor([TOKEN])
    encoded = base64.b64encode(apps_json(TOKEN, 2).encode()).decode()

    assert f"url=https://{TOKEN}@github.com" in redactor
    assert encoded in redactor
    assert "a clean log line" not in redactor
    assert "" not in redactor
    assert TOKEN.encode() not in redactor  # only text is searched
    assert TOKEN not in Redactor()


def test_longer_secret_wins_over_a_prefix_of_it() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])

    assert redactor.redact("abcdefgh abcd") == f"{MASK} {MASK}"


def test_regex_characters_in_a_secret_are_literal() -> None:
    redactor = Redactor(["a.b*c+d"])

    assert redactor.redact("a.b*c+d aXbbbcd") == f"{MASK} aXbbbcd"


def test_several_secrets_are_all_masked_and_can_be_added_later() -> None:
    redactor = Redactor([TOKEN])
    redactor.add("glpat-Second_Token-123")

    text = f"{TOKEN} and glpat-Second_Token-123"

    assert redactor.redact(text) == f"{MASK} and {MASK}"


def test_redact_bytes_masks_and_survives_invalid_utf8() -> None:
    redactor = Redactor([TOKEN])

    data = b"\xff\xfe token=" + TOKEN.encode() + b"\n"

    assert redactor.redact_bytes(data) == "\ufffd\ufffd token=***\n".encode()
    assert Redactor().redact_bytes(b"plain") == b"plain"


def test_empty_redactor_returns_text_unchanged() -> None:
    assert Redactor().redact("anything ghp_x") == "anything ghp_x"
    assert Redactor([TOKEN]).redact("") == ""


# --- base64 cut by line breaks (issue 8) ---------------------------------------------------------

WRAP_TOKEN = "ghp_WRAPcanary0123456789abcdefWRAP"


def _wrapped_lines(data: bytes, width: int) -> list[str]:
    text = base64.b64encode(data).decode()
    return [text[i : i + width] for i in range(0, len(text), width)]


@pytest.mark.parametrize("width", [64, 76])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_base64_cut_by_line_breaks_is_masked_line_by_line_and_whole(width: int, newline: str) -> None:
    apps = json.dumps([{"url": f"https://{WRAP_TOKEN}@github.com/o/a.git", "branch": "main"}])
    redactor = Redactor([WRAP_TOKEN])
    redactor.add(apps, whole_document=True)
    token_b64 = {base64.b64encode(b"\0" * s + WRAP_TOKEN.encode()).decode()[4:-4] for s in range(3)}
    for pad in range(0, 60, 5):
        lines = _wrapped_lines(b"p" * pad + apps.encode(), width)
        for out in (
            [redactor.redact(line) for line in lines],
            redactor.redact(newline.join(lines)).split(newline),
        ):
            joined = "".join(line.replace("***", "\0") for line in out)
            # no 8 characters of the token's base64 survive, on one line or across two
            for b64 in token_b64:
                for i in range(len(b64) - 8):
                    assert b64[i : i + 8] not in joined.replace("\0", ""), (pad, out)


def test_ordinary_base64_at_line_edges_is_left_alone() -> None:
    redactor = Redactor([WRAP_TOKEN])
    line = base64.b64encode(b"nothing secret in here at all, just text").decode()
    assert redactor.redact(line) == line
    assert redactor.redact(f"sha256 {line}\n{line} done") == f"sha256 {line}\n{line} done"
