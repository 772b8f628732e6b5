"""Decoding IDs of the ``genid`` layout (Floe's default, GenID's original)."""

from __future__ import annotations

from typing import NamedTuple


class GenIdFields(NamedTuple):
    """The fields of a ``genid``-layout ID, most significant first."""

    #: Unix seconds when the ID was issued.
    time: int
    #: Zone (5 bits).
    zone: int
    #: Data centre (3 bits).
    dc: int
    #: Machine (3 bits).
    machine: int
    #: Lane (GenID's bucket, 5 bits): the connection's sequence space.
    lane: int
    #: Counter within the second and lane (16 bits).
    seq: int


def decode_genid(id: int) -> GenIdFields:
    """Splits an ID of the ``genid`` layout: time 32 · zone 5 · dc 3 · machine 3 · lane 5 · seq 16.

    For other layouts ask the server: ``GET /v1/decode/{id}``.
    """
    if not 0 <= id < 1 << 64:
        raise ValueError(f"an ID is an unsigned 64-bit integer, got {id}")
    return GenIdFields(
        time=id >> 32,
        zone=(id >> 27) & 31,
        dc=(id >> 24) & 7,
        machine=(id >> 21) & 7,
        lane=(id >> 16) & 31,
        seq=id & 0xFFFF,
    )
