"""The README's quickstart, word for word, against a started stack.

Every ```sh block of the README's "Quickstart" section runs with bash, in order, as a reader
would paste it: `GW` and `OPERATOR_TOKEN` set as `make up` prints them (here from the session's
stack), the variables a block sets carried to the next. Each answer is checked. A block that
only reads (GET) is run again until its answer shows the writes before it: the read models
follow a write within a second, and a reader would simply press enter again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def quickstart_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("\n## Quickstart")
    end = text.index("\n## ", start + 1)
    return re.findall(r"^```sh\n(.*?)^```$", text[start:end], re.S | re.M)


def _json_documents(text: str) -> list[Any]:
    decoder, docs, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text) or text[at] not in "{[":
            return docs
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)


class Shell:
    """Runs blocks with bash; the exported variables of one block reach the next."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.state = workdir / "state.sh"
        self.state.write_text("")
        self.env = env

    def run(self, block: str) -> str:
        script = (
            "set -euo pipefail\nset -a\n"  # every assignment is exported to the next block
            f". {self.state}\n{block}\n"
            f"export -p > {self.state}.new && mv {self.state}.new {self.state}\n"
        )
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"block failed:\n{block}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def var(self, name: str) -> str:
        done = subprocess.run(
            ["bash", "-c", f'. {self.state}; printf %s "${name}"'],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout


def _until(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_the_readme_quickstart_runs_word_for_word_and_every_answer_is_right(
    stack: Stack, tmp_path: Path
) -> None:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"the quickstart needs {tool} (scripts/bootstrap.sh installs it)"
    blocks = quickstart_blocks()
    assert len(blocks) == 7, "the checks below follow the README's seven steps"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LC_ALL": "C.UTF-8",
        "GW": stack.gateway_url,
        "OPERATOR_TOKEN": stack.operator_token,
    }
    shell = Shell(tmp_path, env)

    # 1. a chain: the admin key
    assert "/v1/chains" in blocks[0]
    assert shell.run(blocks[0]) == ""
    assert len(shell.var("ADMIN_KEY")) >= 20

    # 2. a store and a terminal
    assert "/terminals" in blocks[1]
    shell.run(blocks[1])
    assert UUID.match(shell.var("STORE_ID"))
    assert len(shell.var("TERMINAL_KEY")) >= 20

    # 3. a VIP customer with a card
    assert "/v1/customers" in blocks[2]
    shell.run(blocks[2])
    customer_id = shell.var("CUSTOMER_ID")
    assert UUID.match(customer_id)

    # 4. the sale on account (201 completed; 202 pending on a busy machine, then followed)
    assert "/v1/sales" in blocks[3]
    [first] = _json_documents(shell.run(blocks[3]))
    if first["status"] == "pending":
        assert first["status_url"] == f"/v1/sales/{first['sale_id']}"
    sale = _final(shell, first)
    assert sale["status"] == "completed", sale
    assert (sale["total"], sale["on_account"], sale["paid"]) == ("100.00", "100.00", "0.00")
    assert sale["due_date"] is not None
    assert sale["customer"]["debt"] == "100.00"
    # sent again, as the README says it may be: the same answer, nothing recorded twice
    [again] = _json_documents(shell.run(blocks[3]))
    assert again == {k: v for k, v in sale.items() if k != "lines"}  # GET adds the lines

    # 5. "Calculate"
    assert "/v1/cards/VIP-0001" in blocks[4]

    def calculated() -> dict[str, Any]:
        [card] = _json_documents(shell.run(blocks[4]))
        assert card["debt"] == "100.00", card
        return dict(card)

    card = _until(calculated)
    assert card["customer_id"] == customer_id
    assert (card["advance"], card["bonus_balance"]) == ("0.00", "0.00")
    assert (card["credit_limit"], card["credit_available"]) == ("500.00", "400.00")
    assert card["overdue"] is False
    assert card["open_sales"] == []  # the chain's default mode is balance

    # 6. take money: 70.00 cash pays the debt down and earns 10% bonus
    assert "/payments" in blocks[5]
    [answer] = _json_documents(shell.run(blocks[5]))
    payment = _final(shell, answer)
    assert payment["amount"] == "70.00"
    assert payment["bonus_accrued"] == "7.00"
    assert payment["advance_added"] == "0.00"
    assert payment["customer"]["debt"] == "30.00"

    # 7. the Payment-Balance report, JSON then CSV
    assert "/v1/reports/payment-balance" in blocks[6]

    def reported() -> tuple[dict[str, Any], str]:
        out = shell.run(blocks[6])
        [report] = _json_documents(out)
        assert [(r["goods"], r["payments"]) for r in report["rows"]] == [("100.00", "70.00")], out
        return dict(report), out[out.index("\n}") + 2 :].lstrip()

    report, csv_text = _until(reported)
    [row] = report["rows"]
    assert (row["customer_id"], row["name"]) == (customer_id, "Ana Popescu")
    assert (row["opening"], row["closing"]) == ("0.00", "-30.00")
    assert report["totals"]["closing"] == "-30.00"
    [csv_row] = list(csv.DictReader(io.StringIO(csv_text)))
    assert (csv_row["name"], csv_row["goods"], csv_row["closing"]) == (
        "Ana Popescu",
        "100.00",
        "-30.00",
    )


def _final(shell: Shell, answer: dict[str, Any]) -> dict[str, Any]:
    """The final answer: a `202 pending` is followed on its status URL, as the README says."""
    if answer.get("status") != "pending":
        return answer

    def done() -> dict[str, Any]:
        out = shell.run(
            f'curl -sS --fail-with-body "$GW{answer["status_url"]}" '
            '-H "Authorization: Bearer $TERMINAL_KEY"'
        )
        body = dict(json.loads(out))
        assert body.get("status") != "pending", body
        return body

    return dict(_until(done, 15))


def test_make_env_prints_the_variables_the_quickstart_uses(stack: Stack) -> None:
    # `eval "$(make -s env)"` in the README: the export line of the running stack
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "env", "--name", stack.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEVSTACK_RUN_ROOT": str(stack.run_dir.parent)},
    )
    assert done.returncode == 0, done.stderr
    printed = subprocess.run(
        ["bash", "-c", f'{done.stdout}\nprintf "%s\\n%s" "$GW" "$OPERATOR_TOKEN"'],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split("\n")
    assert printed == [stack.gateway_url, stack.operator_token]
    missing = subprocess.run(
        [sys.executable, "-m", "devstack", "env", "--name", f"none-{uuid.uuid4().hex[:6]}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "make up" in missing.stderr


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_reference_pages_load_only_from_the_gateway(stack: Stack, page: str) -> None:
    import httpx

    html = httpx.get(f"{stack.gateway_url}{page}", timeout=30).text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs
    for ref in refs:
        assert httpx.get(f"{stack.gateway_url}{ref}", timeout=30).status_code == 200, ref
