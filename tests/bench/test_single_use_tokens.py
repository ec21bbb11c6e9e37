"""Single-use client tokens: minted once into a file, each request index its own token, read in other processes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from stackwright.bench.sources import SingleUseRequests, TokenFile


def _mint(first: int, n: int) -> list[str]:
    return [f"tok-{i}." + "x" * (i % 7) for i in range(first, first + n)]


def test_tokens_are_minted_once_and_kept(tmp_path: Path) -> None:
    tf = TokenFile(tmp_path, "kid1")
    assert tf.ensure(5, _mint) == 5
    assert tf.ensure(3, _mint) == 0  # already there
    calls: list[tuple[int, int]] = []
    again = TokenFile(tmp_path, "kid1")  # a later run finds them
    assert again.count == 5
    again.ensure(8, lambda first, n: calls.append((first, n)) or _mint(first, n))
    assert calls == [(5, 3)] and again.count == 8


def test_every_request_carries_its_own_token_across_processes(tmp_path: Path) -> None:
    tf = TokenFile(tmp_path, "kid2")
    tf.ensure(10, _mint)
    source = SingleUseRequests("/polls/{target}/votes", tf.path, ["p1", "p2"], per_target=5, bodies=[b"{}"])
    copy = pickle.loads(pickle.dumps(source))  # what a generator process gets: the path, not the mapping
    seen = set()
    for i in range(10):
        raw = copy.build(i, "h")
        assert f"Bearer {_mint(i, 1)[0]}\r\n".encode() in raw
        assert raw.startswith(f"POST /polls/{'p1' if i < 5 else 'p2'}/votes ".encode())
        seen.add(copy.token(i))
    assert len(seen) == 10
    with pytest.raises(IndexError):
        copy.build(10, "h")
    tf.ensure(12, _mint)  # the file grew after the mapping was made: mapped again
    assert copy.token(11) == _mint(11, 1)[0]


def test_expiring_tokens_are_dropped(tmp_path: Path) -> None:
    tf = TokenFile(tmp_path, "kid3", ttl_s=100)
    tf.ensure(3, _mint)
    assert TokenFile(tmp_path, "kid3", min_left_s=3600).count == 0  # fewer than an hour left: minted again
