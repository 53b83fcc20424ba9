"""docs/protocol.md agrees with the code: limits, error codes, tags and worked examples.

The specification is meant to be read without the code, so every number and example in it that
the code also holds is checked here (no event loop, no network, no clock).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from dazibao.protocol import errors, identity, limits, posts, wire

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(doc: str, heading: str) -> str:
    """The text under the level-2 heading ``heading``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", doc, re.M | re.S)
    assert match, f"docs/protocol.md has no section '## {heading}'"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in ``text``, header and separator rows excluded."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            continue
        cells = [cell.strip() for cell in line[1:-1].split("|")]
        if all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            continue
        rows.append(cells)
    return rows


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)


def labelled(block: str) -> dict[str, str]:
    """``label   value`` lines of a code block (label and value separated by 2+ spaces)."""
    fields = {}
    for line in block.splitlines():
        match = re.fullmatch(r"(\S[\w ]*?\w|\w)\s{2,}(\S.*?)\s*", line)
        if match:
            fields.setdefault(match.group(1), match.group(2))
    return fields


def leading_hex(line: str) -> str:
    """The hex tokens at the start of ``line``, up to the first word that is not hex."""
    out = []
    for token in line.split():
        if not re.fullmatch(r"[0-9a-f]+", token):
            break
        out.append(token)
    return "".join(out)


# --- tables ----------------------------------------------------------------------------------


def test_every_limit_is_in_the_limits_table_with_its_value(doc: str) -> None:
    rows = {
        cells[0].strip("`"): cells
        for cells in table_rows(section(doc, "Limits"))
        if cells[0].startswith("`")
    }
    assert set(rows) == {limit.name for limit in limits.PROTOCOL_TABLE}
    for limit in limits.PROTOCOL_TABLE:
        name, value, unit, meaning = rows[limit.name]
        assert value == str(limit.value), limit.name
        assert unit == limit.unit, limit.name
        assert meaning == limit.help, limit.name


def test_limits_are_named_in_the_doc_with_the_values_it_quotes(doc: str) -> None:
    # Prose such as "`max_board_chars` (64)" must quote the current value.
    for name, quoted in re.findall(r"`(\w+)` \((\d+)", doc):
        if name in {limit.name for limit in limits.TABLE}:
            assert int(quoted) == limits.by_name(name), name


def test_every_error_code_is_in_the_error_code_table(doc: str) -> None:
    rows = {
        cells[0].strip("`"): cells
        for cells in table_rows(section(doc, "Error codes"))
        if cells[0].startswith("`")
    }
    assert set(rows) == set(errors.ERROR_CODES)
    for code, meaning in errors.ERROR_CODES.items():
        assert rows[code][1] == meaning, code
        assert rows[code][2], f"{code}: say when it is raised"


def test_domain_separation_tags_match_the_code(doc: str) -> None:
    text = section(doc, "Signatures")
    assert f"`{posts.POST_SIGNATURE_TAG.hex()}`" in text
    assert f"`{identity.FINGERPRINT_TAG.hex()}`" in text
    assert identity.FINGERPRINT_TAG.hex() in section(doc, "Identities")


# --- worked examples -------------------------------------------------------------------------


def test_fingerprint_worked_example(doc: str) -> None:
    block = next(b for b in code_blocks(section(doc, "Identities")) if "fingerprint" in b)
    fields = labelled(block)
    public_key = bytes.fromhex(fields["public key"])
    assert identity.SigningKey(bytes.fromhex(fields["seed"])).public_key == public_key
    assert identity.fingerprint(public_key) == fields["fingerprint"]
    assert re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){5}", fields["fingerprint"])


def test_canonical_integer_examples(doc: str) -> None:
    checked = 0
    for cells in table_rows(section(doc, "Encoding")):
        for value, encoded in zip(cells[0::2], cells[1::2], strict=True):
            if re.fullmatch(r"[−-]?\d+", value) and re.fullmatch(r"`[0-9a-f ]+`", encoded):
                number = int(value.replace("−", "-"))
                assert wire.pack(number) == bytes.fromhex(encoded.strip("`")), value
                checked += 1
    assert checked >= 10


def test_post_worked_example(doc: str) -> None:
    text = section(doc, "Posts")
    block = next(b for b in code_blocks(text) if "raw (" in b)
    fields = labelled(block)
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("raw ("))
    end = next(i for i, line in enumerate(lines) if line.startswith("id "))
    raw = bytes.fromhex("".join(leading_hex(line) for line in lines[start + 1 : end]))
    assert f"raw ({len(raw)} bytes)" in lines[start]
    assert f"SHA-256 of the {len(raw) - 1 - 66} bytes" in text

    key = identity.SigningKey(bytes.fromhex(fields["seed"]))
    made = posts.create_post(
        key,
        kind=fields["kind"],
        board=fields["board"],
        body=fields["body"],
        created_at_ms=int(fields["created_at"]),
        parent=None if fields["parent"] == "nil" else bytes.fromhex(fields["parent"]),
    )
    assert made.raw == raw
    checked = posts.check_post(raw, now=made.created_at_ms / 1000)
    assert checked.id.hex() == fields["id"]
    assert (posts.POST_SIGNATURE_TAG + checked.id).hex() == fields["signed msg"]
    assert checked.key.hex() == fields["key"].replace(" ", "")


def test_key_file_worked_example(doc: str) -> None:
    text = section(doc, "Encrypted key files")
    block = next(b for b in code_blocks(text) if b.startswith("445a424b"))
    data = bytes.fromhex("".join(block.split()))
    assert f"The file is {len(data)} bytes" in text
    header = identity.read_key_file_header(data)
    assert header.name == "Ada"
    assert header.kdf == identity.KdfParams(memory_kib=8192, iterations=1, lanes=1)
    seed = bytes.fromhex(labelled(next(b for b in code_blocks(section(doc, "Identities")) if "seed" in b))["seed"])
    for passphrase in ("étude", unicodedata.normalize("NFD", "étude")):
        key, _ = identity.open_key_file(data, passphrase)
        assert key.seed() == seed
    # The example says its salt and nonce were 00..0f and 10..1b: resealing must give the same bytes.
    counter = iter(range(256))
    resealed = identity.seal_key_file(
        key, "Ada", "étude", lambda n: bytes(next(counter) for _ in range(n)), header.kdf
    )
    assert resealed == data


# --- the gaps the spec settles ------------------------------------------------------------------


def _check_table(doc: str) -> dict[int, str]:
    text = section(doc, "Posts").split("### Checking a post from outside", 1)[1].split("###", 1)[0]
    return {int(row[0]): row[2].strip("`") for row in table_rows(text) if row[0].isdigit()}


def test_the_post_check_table_is_numbered_and_the_error_codes_cite_it(doc: str) -> None:
    steps = _check_table(doc)
    assert sorted(steps) == list(range(1, 16))
    assert steps[5] == "unsupported_version" and steps[8] == "non_canonical" and steps[15] == "bad_signature"
    assert steps[13] == "bad_work" and steps[14] == "future"
    codes = {row[0].strip("`"): row[2] for row in table_rows(section(doc, "Error codes"))}
    for code, raised in codes.items():
        for match in re.finditer(r"\bsteps? ([\d, ]+(?:or \d+)?)", raised):
            for n in re.findall(r"\d+", match.group(1)):
                # "step 2; the same first check in every message" and the like cite the post table.
                if code in {"keyfile_corrupt", "keyfile_format", "keyfile_params", "keyfile_truncated",
                            "wrong_passphrase"}:
                    continue
                assert steps[int(n)] == code, (code, n)


def test_a_float_in_a_post_of_another_version_is_unsupported_version(doc: str) -> None:
    assert "no floating-point number anywhere in it" not in doc
    unsigned = [2, "post", "general", bytes(32), 1.5, None, "x"]
    with pytest.raises(errors.VersionError):
        posts.decode_post(wire.pack([unsigned, bytes(64)]))


def test_the_name_rule_is_pinned_to_the_shipped_table(doc: str) -> None:
    from dazibao.protocol import names_table

    count = sum(hi - lo + 1 for lo, hi in names_table.ALLOWED)
    rule = section(doc, "Posts").split("### Board-name rule", 1)[1].split("###", 1)[0]
    assert f"{len(names_table.ALLOWED)} ranges, {count:_} code points".replace("_", " ") in rule
    assert f"Unicode {names_table.UNICODE_VERSION}" in rule
    assert f"version {names_table.UNICODE_VERSION}" in section(doc, "Overview and conventions")


def test_reconciliation_refusals_are_bad_reconcile_not_invalid(doc: str) -> None:
    initiator = section(doc, "Reconciliation").split("#### 6.4", 1)[1].split("###", 1)[0]
    assert "`invalid`" not in initiator and initiator.count("`bad_reconcile`") == 2
    assert errors.ReconcileError.code == "bad_reconcile"


def test_the_push_answer_and_its_refusals_are_specified(doc: str) -> None:
    push = section(doc, "Gossip HTTP API").split("### `POST /v1/posts`", 1)[1].split("###", 1)[0]
    assert "refusal = [id, code, index]" in push and "refused on its own (`too_large`" in push
    for code in ("tombstoned", "retracted", "retract_not_author", "retract_wrong_board", "not_carried"):
        assert f"`{code}`" in push
    retraction = section(doc, "Retraction")
    assert "already tombstoned" in retraction and "`retracted`:" in retraction and "`tombstoned`:" in retraction
    api = section(doc, "Gossip HTTP API")
    assert "**Content-Type.**" in api and "`posts` is the number of posts" in api
    assert "An id offered more than once counts once" in api
