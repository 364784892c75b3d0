"""Nothing on chain is free: a fee per transaction and a price per byte of new state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from deoss.chain import errors
from deoss.chain.calls import sign_tx
from deoss.chain.genesis import ChainParams
from deoss.chain.modules import accounts
from deoss.chain.modules.accounts import Account, Transfer
from deoss.chain.state import State
from deoss.core import codec
from tests.unit.chain.harness import BALANCE, CHAIN_ID, NAMES, Chain, key


def balance(chain: Chain, name: str) -> int:
    return accounts.get_account(chain.machine.state, key(name).public_key).balance


def treasury(chain: Chain) -> int:
    return accounts.treasury_balance(chain.machine.state)


def supply(chain: Chain) -> int:
    total = treasury(chain)
    for _, raw in chain.machine.state.iter_prefix(accounts.PREFIX):
        total += codec.decode(raw, Account).balance
    return total


def test_defaults_are_not_free() -> None:
    assert 0 < ChainParams().tx_fee and 0 < ChainParams().state_byte_price


def test_fee_charged_exactly_and_goes_to_the_treasury() -> None:
    chain = Chain(tx_fee=1000, state_byte_price=0)
    before, pot = balance(chain, "alice"), treasury(chain)
    chain.run("alice", Transfer(to=key("bob").address, amount=5))
    assert before - 1005 == balance(chain, "alice")
    assert pot + 1000 == treasury(chain)


def test_sender_that_cannot_pay_the_fee_is_refused_and_nothing_changes() -> None:
    chain = Chain(tx_fee=1000, state_byte_price=0)
    poor = key("poor-account")
    chain.run("alice", Transfer(to=poor.address, amount=999))
    tx = sign_tx(poor, CHAIN_ID, 0, Transfer(to=key("bob").address, amount=1))
    checked = chain.machine.check_tx(tx)
    assert errors.InsufficientFunds.code == checked.code
    assert "transaction fee needs 1000, balance is 999" in checked.log
    state_before = dict(chain.machine.state.committed_items())
    outcome = chain.block(tx)
    assert errors.InsufficientFunds.code == outcome.tx_results[0].code
    changed = {k for k, v in chain.machine.state.committed_items() if state_before.get(k) != v} | (
        set(state_before) - dict(chain.machine.state.committed_items()).keys()
    )
    assert changed <= {b"meta"}
    assert 999 == accounts.get_account(chain.machine.state, poor.public_key).balance
    assert 0 == accounts.get_account(chain.machine.state, poor.public_key).nonce


def test_state_growth_counts_new_keys_and_growth_only() -> None:
    state = State({b"same": b"abcd", b"grow": b"ab", b"shrink": b"abcdef", b"gone": b"x"})
    with state.savepoint():
        state.put(b"new", b"12345")  # 3 + 5
        state.put(b"grow", b"abcde")  # +3
        state.put(b"same", b"wxyz")  # 0
        state.put(b"shrink", b"a")  # 0, no refund
        state.delete(b"gone")  # 0, no refund
        assert 8 + 3 == state.savepoint_growth()


def test_state_price_charged_exactly_for_a_new_account() -> None:
    chain = Chain(tx_fee=0, state_byte_price=10)
    fresh = key("fresh-account")
    before = balance(chain, "alice")
    chain.run("alice", Transfer(to=fresh.address, amount=7))
    record = chain.machine.state.get(accounts.PREFIX + fresh.public_key)
    assert record is not None
    new_bytes = len(accounts.PREFIX + fresh.public_key) + len(record)
    # the sender's own record and the treasury may grow too (varints); nothing else is new
    charged = before - 7 - balance(chain, "alice")
    assert charged >= new_bytes * 10 and charged % 10 == 0
    again = balance(chain, "alice")
    chain.run("alice", Transfer(to=fresh.address, amount=1))  # same-size overwrite: no new key
    assert again - 1 - balance(chain, "alice") < new_bytes * 10


def test_unpayable_state_price_undoes_the_call_and_keeps_the_fee() -> None:
    chain = Chain(tx_fee=100, state_byte_price=10)
    poor = key("poor-account")
    chain.run("alice", Transfer(to=poor.address, amount=150))
    fresh = key("fresh-account")
    result = chain.block(chain.tx(poor, Transfer(to=fresh.address, amount=1))).tx_results[0]
    assert errors.InsufficientFunds.code == result.code
    assert "state price" in result.log
    assert 50 == accounts.get_account(chain.machine.state, poor.public_key).balance
    assert 1 == accounts.get_account(chain.machine.state, poor.public_key).nonce
    assert chain.machine.state.get(accounts.PREFIX + fresh.public_key) is None


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(NAMES[:4]), st.integers(0, 5), st.integers(1, 10**6)),
        max_size=12,
    )
)
def test_balances_plus_treasury_always_sum_to_supply(moves: list[tuple[str, int, int]]) -> None:
    chain = Chain(tx_fee=1000, state_byte_price=10)
    total = supply(chain)
    targets = [key(n).address for n in NAMES[:3]] + [key(f"new{i}").address for i in range(3)]
    for sender, target, amount in moves:
        chain.block(chain.tx(sender, Transfer(to=targets[target], amount=amount)))
        assert total == supply(chain)
    assert BALANCE * len(NAMES) + 10**12 == total


def test_negative_fee_params_are_refused_at_genesis() -> None:
    from deoss.chain.genesis import GenesisError

    for field in ("tx_fee", "state_byte_price"):
        try:
            Chain(**{field: -1})
        except GenesisError as exc:
            assert f"{field} must not be negative, got -1" in str(exc)
        else:
            raise AssertionError(f"negative {field} accepted")
