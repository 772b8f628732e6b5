"""String forms of IDs, as Floe's ``format=`` writes them and ``/v1/decode`` reads them back.

The fixed-width forms (``hex``, ``radix62``, ``radix36``) are zero-padded and their alphabets are in
ASCII order, so the strings sort exactly like the numbers. ``friendly`` needs the server's layout and
is only produced by the server (``HttpClient.get_id_strings(n, "friendly")``); read it back with
``/v1/decode``.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

#: A form this module can write and read.
IdForm = Literal["string", "hex", "radix62", "radix36"]
#: Every ``format=`` value the server accepts besides ``number``.
ServerForm = Literal["string", "hex", "radix62", "radix36", "friendly"]

FORMS: Final[tuple[IdForm, ...]] = get_args(IdForm)
MAX_ID: Final = (1 << 64) - 1

_RADIX62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RADIX36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_WIDTH: Final[dict[str, int]] = {"hex": 16, "radix62": 11, "radix36": 13}
_ALPHABET: Final[dict[str, str]] = {"hex": "0123456789abcdef", "radix62": _RADIX62, "radix36": _RADIX36}


def to_form(id_: int, form: IdForm) -> str:
    """``id_`` (0..2**64-1) written in ``form``."""
    if not 0 <= id_ <= MAX_ID:
        raise ValueError(f"ID {id_} is out of range 0..{MAX_ID}")
    if form == "string":
        return str(id_)
    if form not in _WIDTH:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    alphabet, width = _ALPHABET[form], _WIDTH[form]
    out = []
    for _ in range(width):
        id_, digit = divmod(id_, len(alphabet))
        out.append(alphabet[digit])
    return "".join(reversed(out))


def from_form(text: str, form: IdForm) -> int:
    """Reads ``text`` written in ``form``; ValueError naming the form when it is not one."""
    if form == "string":
        if not (text.isascii() and text.isdigit() and 1 <= len(text) <= 20):
            raise ValueError(f"{text!r} is not a string ID: expected 1 to 20 decimal digits")
        value = int(text)
    elif form in _WIDTH:
        alphabet, width = _ALPHABET[form], _WIDTH[form]
        if len(text) != width or any(c not in alphabet for c in text):
            raise ValueError(
                f"{text!r} is not a {form} ID: expected {width} characters of {alphabet[0]}-{alphabet[-1]}"
            )
        value = 0
        for c in text:
            value = value * len(alphabet) + alphabet.index(c)
    else:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if value > MAX_ID:
        raise ValueError(f"{text!r} is not a {form} ID: above the largest ID {MAX_ID}")
    return value
