"""A Python client generated from the running gateway's `/openapi.json` makes the README
quickstart's sale (chain, store, terminal, VIP customer, the sale on account, "Calculate",
the Payment-Balance report) with nothing but its generated functions and models.

openapi-python-client (pinned in constraints.txt) writes the client into the test's temporary
directory; the generated code is imported from there and every answer it parses is the typed
model of the document (a wrong schema fails the parse, a missing one leaves `None`).
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pos_gateway_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
#: generating takes a few seconds; a busy machine gets much longer, a hung one no longer
GENERATE_TIMEOUT = 300


@pytest.fixture(scope="module")
def client_package(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported (and taken out of `sys.modules` afterwards)."""
    work = tmp_path_factory.mktemp("generated-client")
    spec = httpx.get(f"{stack.gateway_url}/openapi.json", timeout=60)
    assert spec.status_code == 200
    (work / "openapi.json").write_bytes(spec.content)
    # the stack serves the committed contract (the unit snapshot test ties it to the code)
    assert spec.json() == json.loads((ROOT / "docs" / "openapi.json").read_text("utf-8"))
    (work / "config.yaml").write_text(
        f"package_name_override: {PACKAGE}\n"
        "post_hooks: []\n"  # no formatting of the generated code: it is only imported
    )
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            "openapi.json",
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
            "--config",
            "config.yaml",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT,
        env={"PATH": os.environ["PATH"], "HOME": str(work), "LC_ALL": "C.UTF-8"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Warning" not in output and "Error" not in output, output  # nothing left out
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _until(check: Callable[[], Any], seconds: float = 15.0) -> Any:
    """The read models follow a write within a second; a busy machine gets longer."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_a_client_generated_from_the_openapi_makes_the_quickstart_sale(
    stack: Stack, client_package: Any
) -> None:
    m = _module("models")

    def call(tag: str, operation: str) -> Any:
        # api/<tag>/<operation>.py of the generated client: `.sync`, `.sync_detailed`
        return _module(f"api.{tag}.{operation}")

    client = client_package.AuthenticatedClient
    base, timeout = stack.gateway_url, httpx.Timeout(30.0)
    card = f"VIP-{secrets.token_hex(4)}"

    with client(base_url=base, token=stack.operator_token, timeout=timeout) as operator:
        chain = call("chains", "create_chain").sync(
            client=operator,
            body=m.ChainCreate(name="Kids Corner", currency="EUR", timezone="Europe/Bucharest"),
        )
    assert isinstance(chain, m.ChainCreated), chain
    with client(base_url=base, token=chain.admin_api_key, timeout=timeout) as admin:
        store = call("chains", "create_store").sync(
            client=admin, body=m.StoreCreate(code="S1", name="Main street")
        )
        assert isinstance(store, m.StoreOut), store
        terminal = call("chains", "create_terminal").sync(
            client=admin, store_id=store.store_id, body=m.TerminalCreate(name="Till 1")
        )
        assert isinstance(terminal, m.TerminalCreated), terminal
        customer = call("customers", "create_customer").sync(
            client=admin,
            body=m.CustomerCreate(
                name="Ana Popescu",
                phone="+40712345678",
                vip=True,
                card_number=card,
                bonus_accrual=True,
                credit_limit="500.00",
            ),
        )
        assert isinstance(customer, m.CustomerOut), customer
        assert (customer.vip, customer.credit_available) == (True, "500.00")

        with client(base_url=base, token=terminal.api_key, timeout=timeout) as pos:
            sale_body = m.SaleCreate(
                card_number=card,
                lines=[
                    m.SaleLineIn(
                        sku="D-1",
                        barcode="4820000000017",
                        name="Dress",
                        quantity="1",
                        unit_price="60.00",
                    ),
                    m.SaleLineIn(
                        sku="S-1",
                        barcode="4820000000024",
                        name="Shoes",
                        quantity="1",
                        unit_price="50.00",
                        discount="10.00",
                    ),
                ],
                payments=[m.SalePaymentIn(method=m.PaymentMethod.ON_ACCOUNT, amount="100.00")],
            )
            key = f"generated-client-{uuid.uuid4()}"
            answer = call("till", "create_sale").sync_detailed(
                client=pos, idempotency_key=key, body=sale_body
            )
            assert answer.status_code in (201, 202), answer.content
            outcome = answer.parsed
            if answer.status_code == 202:  # a busy machine: follow the status URL
                assert isinstance(outcome, m.Pending)
                sale_id = outcome.additional_properties["sale_id"]

                def completed() -> Any:
                    read = call("till", "get_sale").sync(client=pos, sale_id=sale_id)
                    assert isinstance(read, m.SaleRead) and read.status != "pending", read
                    return read

                outcome = _until(completed)
                assert outcome.status == "completed", outcome
                assert outcome.additional_properties["total"] == "100.00"
                assert outcome.additional_properties["customer"]["debt"] == "100.00"
            else:
                assert isinstance(outcome, m.SaleOutcome), outcome
                assert (outcome.total, outcome.on_account, outcome.paid) == (
                    "100.00",
                    "100.00",
                    "0.00",
                )
                assert outcome.due_date is not None
                assert outcome.customer.debt == "100.00"
                assert outcome.payments == []

            # the same key with another body: a typed problem, its code one of the enum
            other = call("till", "create_sale").sync_detailed(
                client=pos,
                idempotency_key=key,
                body=m.SaleCreate(
                    card_number=card,
                    lines=sale_body.lines,
                    payments=[m.SalePaymentIn(method=m.PaymentMethod.CASH, amount="100.00")],
                ),
            )
            assert other.status_code == 409, other.content
            assert isinstance(other.parsed, m.Problem)
            assert other.parsed.code is m.ProblemCode.IDEMPOTENCY_CONFLICT

            def calculated() -> Any:
                looked_up = call("till", "get_card").sync(client=pos, card_number=card)
                assert isinstance(looked_up, m.CardLookup) and looked_up.debt == "100.00"
                return looked_up

            looked_up = _until(calculated)
            assert looked_up.customer_id == customer.customer_id
            assert (looked_up.credit_available, looked_up.open_sales) == ("400.00", [])

        def reported() -> Any:
            report = call("reports", "get_payment_balance_report").sync(client=admin, vip_only=True)
            assert isinstance(report, m.PaymentBalanceReport), report
            assert [(r.goods, r.closing) for r in report.rows] == [("100.00", "-100.00")]
            return report

        report = _until(reported)
        assert report.rows[0].customer_id == customer.customer_id
        assert report.totals.closing == "-100.00"
        statement = call("reports", "get_statement").sync(
            client=admin, customer_id=customer.customer_id
        )
        assert isinstance(statement, m.Statement), statement
        assert [e.kind for e in statement.entries] == ["sale"]
        assert statement.closing.debt == "100.00"
