"""String forms of IDs: local round trips and order, and the server's format= read back locally."""

from __future__ import annotations

import random

import pytest
from conftest import FloeServer

from floe_client import FloeBadRequest, HttpClient, from_form, to_form
from floe_client.forms import FORMS, MAX_ID

EDGES = [0, 1, 61, 62, 35, 36, (1 << 53) + 1, MAX_ID - 1, MAX_ID]


@pytest.mark.parametrize("form", FORMS)
def test_round_trip_and_order(form: str) -> None:
    rng = random.Random(7)
    ids = EDGES + [rng.randrange(MAX_ID + 1) for _ in range(2000)]
    texts = [to_form(i, form) for i in ids]  # type: ignore[arg-type]
    assert [from_form(t, form) for t in texts] == ids  # type: ignore[arg-type]
    if form != "string":
        assert len({len(t) for t in texts}) == 1, "fixed width"
        assert sorted(texts) == [to_form(i, form) for i in sorted(ids)]  # type: ignore[arg-type]


def test_known_values_match_the_server_docs() -> None:
    # docs/protocol.md's example ID.
    i = 7301444403700237522
    assert to_form(i, "hex") == "6553f1001dd104d2"
    assert to_form(i, "radix62") == "8hMgxFBdXKU"
    assert to_form(i, "radix36") == "1jh0y11a75h3m"
    assert to_form(MAX_ID, "radix62") == "LygHa16AHYF"


@pytest.mark.parametrize(
    ("text", "form", "message"),
    [
        ("LygHa16AHYG", "radix62", "above the largest ID"),
        ("0000000000A", "radix36", "expected 13 characters"),
        ("12a", "string", "decimal digits"),
        ("000000000000000G", "hex", "expected 16 characters"),
    ],
)
def test_malformed_strings_name_the_form(text: str, form: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        from_form(text, form)  # type: ignore[arg-type]
    assert form in str(e.value)


def test_server_forms_read_back_locally(server: FloeServer) -> None:
    with HttpClient(server.http_url) as c:
        numbers = {form: [from_form(t, form) for t in c.get_id_strings(50, form)] for form in FORMS}
        friendly = c.get_id_strings(3, "friendly")
        with pytest.raises(FloeBadRequest, match="form must be one of"):
            c.get_id_strings(1, "base64")  # type: ignore[arg-type]
    for form, ids in numbers.items():
        assert len(set(ids)) == 50 and ids == sorted(ids), form
    assert all(len(f.split("-")[0]) == 17 for f in friendly), friendly
