"""Accounts: balances, nonces and transfers; the treasury that collects fees and pays rewards.

Keys: ``acct/<pubkey>`` -> Account; ``treasury`` -> Treasury.
"""

from __future__ import annotations

from deoss.chain.errors import InsufficientFunds, InvalidArgument
from deoss.chain.genesis import Genesis
from deoss.chain.query import QueryArgs, QueryHandler, address_arg, encode_value
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import Call, TxContext
from deoss.core.codec import Record
from deoss.core.keys import parse_address

PREFIX = b"acct/"
TREASURY_KEY = b"treasury"


class Account(Record):
    balance: int = 0
    nonce: int = 0


class Treasury(Record):
    balance: int = 0


def get_account(state: State, pubkey: bytes) -> Account:
    return get_record(state, PREFIX + pubkey, Account) or Account()


def put_account(state: State, pubkey: bytes, account: Account) -> None:
    put_record(state, PREFIX + pubkey, account)


def debit(state: State, pubkey: bytes, amount: int, what: str) -> None:
    """Take ``amount`` from an account, or raise InsufficientFunds naming ``what``."""
    account = get_account(state, pubkey)
    if account.balance < amount:
        raise InsufficientFunds(f"{what} needs {amount}, balance is {account.balance}")
    put_account(state, pubkey, Account(balance=account.balance - amount, nonce=account.nonce))


def credit(state: State, pubkey: bytes, amount: int) -> None:
    account = get_account(state, pubkey)
    put_account(state, pubkey, Account(balance=account.balance + amount, nonce=account.nonce))


def bump_nonce(state: State, pubkey: bytes) -> None:
    account = get_account(state, pubkey)
    put_account(state, pubkey, Account(balance=account.balance, nonce=account.nonce + 1))


def treasury_balance(state: State) -> int:
    treasury = get_record(state, TREASURY_KEY, Treasury)
    return treasury.balance if treasury else 0


def treasury_credit(state: State, amount: int) -> None:
    put_record(state, TREASURY_KEY, Treasury(balance=treasury_balance(state) + amount))


def treasury_pay(state: State, pubkey: bytes, amount: int) -> int:
    """Pay up to ``amount`` from the treasury; returns what was paid."""
    paid = min(amount, treasury_balance(state))
    if paid:
        put_record(state, TREASURY_KEY, Treasury(balance=treasury_balance(state) - paid))
        credit(state, pubkey, paid)
    return paid


def check_amount(amount: int, what: str) -> None:
    if not isinstance(amount, int) or amount <= 0 or amount >= 2**63:
        raise InvalidArgument(f"{what} must be a positive integer below 2^63, got {amount}")


class Transfer(Call, tag="accounts.transfer"):
    to: str
    amount: int


def apply_transfer(state: State, ctx: TxContext, call: Transfer) -> None:
    """Move ``amount`` from the sender to ``to``.

    Raises:
        InvalidArgument: bad address or amount. InsufficientFunds: balance too low.
    """
    recipient = address_arg(call.to, "to")
    check_amount(call.amount, "amount")
    debit(state, ctx.sender, call.amount, "transfer")
    credit(state, recipient, call.amount)
    ctx.emit("transfer", sender=ctx.sender_address, recipient=call.to, amount=call.amount)


def init_genesis(state: State, genesis: Genesis) -> None:
    for entry in genesis.accounts:
        credit(state, parse_address(entry.address), entry.balance)
    treasury_credit(state, genesis.treasury)


def query_account(state: State, args: QueryArgs) -> bytes:
    return encode_value(get_account(state, address_arg(args.address)))


def query_treasury(state: State, args: QueryArgs) -> bytes:
    return encode_value(Treasury(balance=treasury_balance(state)))


HANDLERS = {Transfer: apply_transfer}
QUERIES: dict[str, QueryHandler] = {"account": query_account, "treasury": query_treasury}
