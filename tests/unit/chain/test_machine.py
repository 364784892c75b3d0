"""The machine: transaction envelope rules, determinism and restart."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from deoss.chain import errors
from deoss.chain.calls import SIGNING_DOMAIN, SignedTx, TxBody, sign_tx
from deoss.chain.machine import StateMachine
from deoss.chain.modules import accounts
from deoss.chain.modules.accounts import Account, Transfer
from deoss.chain.state import State
from deoss.core import codec
from tests.unit.chain.harness import BALANCE, CHAIN_ID, Chain, key


def test_transfer_moves_funds_and_bumps_nonce() -> None:
    chain = Chain(tx_fee=0, state_byte_price=0)  # exact amounts; fees: test_fees.py
    result = chain.run("alice", Transfer(to=key("bob").address, amount=5))
    assert [{"sender": key("alice").address, "recipient": key("bob").address, "amount": "5"}] == (
        chain.events(result, "transfer")
    )
    assert Account(balance=BALANCE - 5, nonce=1) == chain.query(
        "/accounts/account", Account, address=key("alice").address
    )
    assert (
        BALANCE + 5 == chain.query("/accounts/account", Account, address=key("bob").address).balance
    )


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (Transfer(to=key("bob").address, amount=BALANCE + 1), errors.InsufficientFunds.code),
        (Transfer(to=key("bob").address, amount=0), errors.InvalidArgument.code),
        (Transfer(to=key("bob").address, amount=-3), errors.InvalidArgument.code),
        (Transfer(to="deoss1nope", amount=1), errors.InvalidArgument.code),
    ],
)
def test_bad_transfers_are_refused_and_change_nothing(call: Transfer, code: int) -> None:
    chain = Chain()
    chain.run("alice", call, valid=False, code=code)
    assert 1 == chain.nonce(key("alice"))  # nonce bumps even on failure: replay protection
    assert BALANCE == chain.query("/accounts/account", Account, address=key("bob").address).balance


def envelope_cases() -> list[tuple[str, bytes, int]]:
    alice = key("alice")
    good = Transfer(to=key("bob").address, amount=1)
    body = codec.encode(TxBody(chain_id=CHAIN_ID, sender=alice.public_key, nonce=0, call=good))
    forged = codec.encode(SignedTx(body=body, signature=key("bob").sign(SIGNING_DOMAIN + body)))
    unknown_body = msgspec.msgpack.encode([CHAIN_ID, alice.public_key, 0, ["nope.call", 1]])
    unknown = codec.encode(
        SignedTx(body=unknown_body, signature=alice.sign(SIGNING_DOMAIN + unknown_body))
    )
    return [
        ("garbage", b"\x93\x01\x02", errors.BadEncoding.code),
        ("empty", b"", errors.BadEncoding.code),
        ("bad signature", forged, errors.BadSignature.code),
        ("wrong chain", sign_tx(alice, "other-chain", 0, good), errors.WrongChain.code),
        ("skipped nonce", sign_tx(alice, CHAIN_ID, 5, good), errors.BadNonce.code),
        ("unknown call", unknown, errors.UnknownCall.code),
        (
            "oversized",
            sign_tx(alice, CHAIN_ID, 0, Transfer(to="x" * 5_000_000, amount=1)),
            errors.TooLarge.code,
        ),
    ]


@pytest.mark.parametrize(("name", "raw", "code"), envelope_cases(), ids=lambda v: str(v)[:20])
def test_malformed_transactions_are_refused_with_code_and_state_unchanged(
    name: str, raw: bytes, code: int
) -> None:
    chain = Chain()
    before = dict(chain.machine.state.committed_items())
    check = chain.machine.check_tx(raw)
    assert code == check.code and check.log
    result = chain.block(raw).tx_results[0]
    assert (code, check.log) == (result.code, result.log)
    after = dict(chain.machine.state.committed_items())
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert {b"meta"} == changed


def test_replayed_transaction_is_refused() -> None:
    chain = Chain()
    raw = chain.tx("alice", Transfer(to=key("bob").address, amount=1))
    assert 0 == chain.block(raw).tx_results[0].code
    replay = chain.block(raw).tx_results[0]
    assert (errors.BadNonce.code, "nonce 0, expected 1") == (replay.code, replay.log)


def test_check_tx_accepts_a_sequence_of_nonces_and_resets_after_commit() -> None:
    chain = Chain()
    txs = [chain.tx("alice", Transfer(to=key("bob").address, amount=1)) for _ in range(3)]
    assert [0, 0, 0] == [chain.machine.check_tx(t).code for t in txs]
    assert errors.BadNonce.code == chain.machine.check_tx(txs[0]).code
    chain.block(*txs)
    assert errors.BadNonce.code == chain.machine.check_tx(txs[2]).code


def test_unknown_query_and_bad_arguments() -> None:
    chain = Chain()
    assert errors.NotFound.code == chain.machine.query("/nope").code
    assert 0 != chain.machine.query("/accounts/account", b"\xc1").code
    assert errors.InvalidArgument.code == chain.query_code("/accounts/account", address="bad")


def replay(txs_per_block: list[list[bytes]]) -> bytes:
    chain = Chain()
    for txs in txs_per_block:
        chain.block(*txs)
    return chain.machine.app_hash


def test_restart_from_committed_state_continues_with_same_app_hash() -> None:
    chain = Chain()
    chain.run("alice", Transfer(to=key("bob").address, amount=7))
    copy = StateMachine(State(dict(chain.machine.state.committed_items())))
    assert chain.machine.info() == copy.info()
    assert chain.machine.params == copy.params
    chain.machine = copy
    chain.run("bob", Transfer(to=key("alice").address, amount=2))
    assert 2 == chain.height


def test_app_hash_depends_on_every_write() -> None:
    a, b = Chain(), Chain()
    a.run("alice", Transfer(to=key("bob").address, amount=1))
    b.run("alice", Transfer(to=key("bob").address, amount=2))
    assert a.machine.app_hash != b.machine.app_hash


def test_finalize_refuses_wrong_height_or_chain() -> None:
    from deoss.chain.types import BlockHeader

    chain = Chain()
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError, match="expected block 1"):
        chain.machine.finalize_block(
            BlockHeader(chain_id=CHAIN_ID, height=5, time_ns=1, hash=digest), []
        )
    with pytest.raises(ValueError, match="chain"):
        chain.machine.finalize_block(
            BlockHeader(chain_id="x", height=1, time_ns=1, hash=digest), []
        )


def test_treasury_and_fee() -> None:
    chain = Chain(tx_fee=10)
    chain.run("alice", Transfer(to=key("bob").address, amount=1))
    assert (
        BALANCE - 11
        == chain.query("/accounts/account", Account, address=key("alice").address).balance
    )
    assert 10**12 + 10 == chain.query("/accounts/treasury", accounts.Treasury).balance


def test_refused_check_tx_leaves_no_trace_in_the_mempool_state() -> None:
    """A transaction refused at check_tx never enters the mempool, so it must not use up its
    nonce there: the next transaction with that nonce is accepted."""
    chain = Chain()
    too_much = sign_tx(
        key("alice"), CHAIN_ID, 0, Transfer(to=key("bob").address, amount=BALANCE + 1)
    )
    assert errors.InsufficientFunds.code == chain.machine.check_tx(too_much).code
    fine = sign_tx(key("alice"), CHAIN_ID, 0, Transfer(to=key("bob").address, amount=1))
    assert 0 == chain.machine.check_tx(fine).code
