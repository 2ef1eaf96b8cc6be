"""An example of every operation of the OpenAPI document: its request body and its success
answer, told as one story (the README's quickstart: Ana's dress and shoes on account, then 70.00
in cash), and a problem answer for each error status.

A unit test validates every example against the schema it illustrates, so an example cannot
drift from the contract unnoticed.
"""

from __future__ import annotations

import csv
import io
from typing import Any
from uuid import UUID

from pos_gateway.domain.errors import problem_body
from pos_gateway.service_layer.outcomes import ID_FIELD, status_url

CHAIN = "3f1c2a4e-8b7d-4c2e-9a10-5d6e7f809a1b"
STORE = "0b6a3c1d-2e4f-4a5b-8c7d-9e0f1a2b3c4d"
TERMINAL = "7d2e9f4a-1b3c-4d5e-8f6a-7b8c9d0e1f2a"
CUSTOMER = "5a8f0c3e-6b1d-4e2f-9a3b-4c5d6e7f8091"
SALE = "c41e5f2a-9b8d-4c7e-a6f5-1d2e3f4a5b6c"
PAYMENT = "e9a1b2c3-d4e5-4f60-8172-93a4b5c6d7e8"
ADVANCE = "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b"
REFUND = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"
RETURN = "8c7b6a5f-4e3d-4c2b-a190-f8e7d6c5b4a3"
USER = "6e5d4c3b-2a19-4f8e-b7d6-c5b4a3f2e1d0"
TASK = "4d3c2b1a-0f9e-4d8c-b7a6-958473625140"

SOLD_AT = "2026-03-02T10:15:00+02:00"
DUE = "2026-04-01"
SECRET_KEY = "k1_Qm9yZWFsLWV4YW1wbGUta2V5LW5vdC1yZWFs"

SETTINGS = {
    "credit_mode": "balance",
    "max_payment_delay_days": 30,
    "overdue_discount": "keep",
    "block_credit_when_overdue": False,
    "reminder_repeat_days": 7,
    "bonus_rate_percent": "10.00",
    "bonus_expiry_days": None,
    "reminder_email": None,
}
CUSTOMER_OUT = {
    "customer_id": CUSTOMER,
    "name": "Ana Popescu",
    "phone": "+40712345678",
    "email": None,
    "vip": True,
    "card_number": "VIP-0001",
    "bonus_accrual": True,
    "credit_limit": "500.00",
    "max_payment_delay_days": None,
    "debt": "100.00",
    "advance": "0.00",
    "bonus_balance": "0.00",
    "credit_available": "400.00",
    "overdue": False,
}
BALANCES = {"debt": "100.00", "advance": "0.00", "bonus_balance": "0.00"}
AFTER_PAYMENT = {"debt": "30.00", "advance": "0.00", "bonus_balance": "7.00"}
DRESS = {
    "sku": "D-1",
    "barcode": "4820000000017",
    "name": "Dress",
    "quantity": "1",
    "unit_price": "60.00",
}
SHOES = {
    "sku": "S-1",
    "barcode": "4820000000024",
    "name": "Shoes",
    "quantity": "1",
    "unit_price": "50.00",
    "discount": "10.00",
}
SALE_REQUEST = {
    "card_number": "VIP-0001",
    "lines": [DRESS, SHOES],
    "payments": [{"method": "on_account", "amount": "100.00"}],
}
SALE_OUTCOME = {
    "sale_id": SALE,
    "status": "completed",
    "sold_at": SOLD_AT,
    "total": "100.00",
    "paid": "0.00",
    "on_account": "100.00",
    "advance_applied": "0.00",
    "due_date": DUE,
    "bonus_accrued": "0.00",
    "bonus_spent": "0.00",
    "payments": [],
    "customer": BALANCES,
}
PAYMENT_OUT = {
    "payment_id": PAYMENT,
    "amount": "70.00",
    "allocated": [{"sale_id": SALE, "line_no": None, "amount": "70.00"}],
    "advance_added": "0.00",
    "bonus_accrued": "7.00",
    "customer": AFTER_PAYMENT,
}
TASK_OUT = {
    "task_id": TASK,
    "customer_id": CUSTOMER,
    "customer_name": "Ana Popescu",
    "phone": "+40712345678",
    "level": 1,
    "status": "open",
    "overdue_amount": "30.00",
    "days_overdue": 3,
    "sales": [{"sale_id": SALE, "due_date": DUE, "amount_owed": "30.00"}],
    "created_at": "2026-04-04T06:00:00+00:00",
    "raised_at": "2026-04-04T06:00:00+00:00",
    "closed_at": None,
    "closed_reason": None,
    "outcome": None,
    "note": None,
    "completed_by": None,
    "actions": [
        {"action": "revoke_discount", "sale_id": SALE, "href": f"/v1/sales/{SALE}/revoke-discount"}
    ],
}
USER_OUT = {
    "user_id": USER,
    "email": "maria@kids-corner.example",
    "name": "Maria Ionescu",
    "role": "customer_service",
    "created_at": "2026-03-01T09:00:00+00:00",
}
SESSION_USER = {
    "user_id": USER,
    "email": "maria@kids-corner.example",
    "name": "Maria Ionescu",
    "role": "customer_service",
    "chain_id": CHAIN,
}
SESSION_CHAIN = {
    "chain_id": CHAIN,
    "name": "Kids Corner",
    "currency": "EUR",
    "timezone": "Europe/Bucharest",
}
BONUS_FIGURES = {
    "accrued": "7.00",
    "spent": "0.00",
    "cancelled": "0.00",
    "reversed": "0.00",
    "restored": "0.00",
    "expired": "0.00",
}
#: Ana's debt by age a few days after its due date (her row of the aging report)
AGING = {
    "current": "0.00",
    "d1_30": "30.00",
    "d31_60": "0.00",
    "d61_90": "0.00",
    "d90_plus": "0.00",
    "total": "30.00",
}


def _pending(kind: str, operation_id: str) -> dict[str, str]:
    """The `202` of a till operation whose outcome is not known yet."""
    return {
        ID_FIELD[kind]: operation_id,
        "status": "pending",
        "status_url": status_url(kind, UUID(operation_id)),
    }


def _csv(rows: list[dict[str, Any]], header: str) -> str:
    """The CSV answer of a report: the header row, then one line per row (null: empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header.split(","))
    for row in rows:
        writer.writerow(["" if row[k] is None else row[k] for k in header.split(",")])
    return out.getvalue()


#: operationId -> "request" (the JSON body), "response" (the success answer's JSON), "pending"
#: (a till operation's `202`), "csv" (a report's `Accept: text/csv` answer)
OPERATION_EXAMPLES: dict[str, dict[str, Any]] = {
    "createChain": {
        "request": {"name": "Kids Corner", "currency": "EUR", "timezone": "Europe/Bucharest"},
        "response": {"chain_id": CHAIN, "admin_api_key": SECRET_KEY},
    },
    "listChains": {
        "response": {
            "items": [{**SESSION_CHAIN, "created_at": "2026-03-01T08:00:00+00:00"}],
            "next": None,
        }
    },
    "replaceAdminKey": {"response": {"admin_api_key": SECRET_KEY}},
    "createStore": {
        "request": {"code": "S1", "name": "Main street"},
        "response": {"store_id": STORE, "code": "S1", "name": "Main street"},
    },
    "listStores": {
        "response": {
            "items": [
                {
                    "store_id": STORE,
                    "code": "S1",
                    "name": "Main street",
                    "terminals": [
                        {
                            "terminal_id": TERMINAL,
                            "name": "Till 1",
                            "created_at": "2026-03-01T08:05:00+00:00",
                            "revoked_at": None,
                        }
                    ],
                }
            ],
            "next": None,
        }
    },
    "createTerminal": {
        "request": {"name": "Till 1"},
        "response": {"terminal_id": TERMINAL, "api_key": SECRET_KEY},
    },
    "replaceTerminalKey": {"response": {"terminal_id": TERMINAL, "api_key": SECRET_KEY}},
    "revokeTerminal": {
        "response": {"terminal_id": TERMINAL, "revoked_at": "2026-05-01T18:00:00+00:00"}
    },
    "getSettings": {"response": SETTINGS},
    "updateSettings": {
        "request": {"credit_mode": "per_sale", "max_payment_delay_days": 14},
        "response": {**SETTINGS, "credit_mode": "per_sale", "max_payment_delay_days": 14},
    },
    "createCustomer": {
        "request": {
            "name": "Ana Popescu",
            "phone": "+40712345678",
            "vip": True,
            "card_number": "VIP-0001",
            "bonus_accrual": True,
            "credit_limit": "500.00",
        },
        "response": {**CUSTOMER_OUT, "debt": "0.00", "credit_available": "500.00"},
    },
    "listCustomers": {"response": {"items": [CUSTOMER_OUT], "next": None}},
    "getCustomer": {"response": CUSTOMER_OUT},
    "updateCustomer": {
        "request": {"credit_limit": "800.00"},
        "response": {**CUSTOMER_OUT, "credit_limit": "800.00", "credit_available": "700.00"},
    },
    "issueCard": {
        "request": {"card_number": "VIP-0002"},
        "response": {"customer_id": CUSTOMER, "card_number": "VIP-0002"},
    },
    "blockCard": {"response": {"card_number": "VIP-0001", "blocked": True}},
    "getCard": {
        "response": {
            "customer_id": CUSTOMER,
            "name": "Ana Popescu",
            "vip": True,
            "debt": "100.00",
            "advance": "0.00",
            "bonus_balance": "0.00",
            "credit_limit": "500.00",
            "credit_available": "400.00",
            "overdue": False,
            "open_sales": [],
        }
    },
    "createSale": {"request": SALE_REQUEST, "response": SALE_OUTCOME},
    "getSale": {
        "response": {
            **SALE_OUTCOME,
            "lines": [
                {
                    "line_no": 1,
                    **DRESS,
                    "discount": "0.00",
                    "amount": "60.00",
                    "returned_quantity": "0",
                },
                {"line_no": 2, **SHOES, "amount": "40.00", "returned_quantity": "0"},
            ],
        }
    },
    "takeMoney": {
        "request": {
            "kind": "take_money",
            "amount": "70.00",
            "method": "cash",
            "card_number": "VIP-0001",
        },
        "response": PAYMENT_OUT,
    },
    "payAdvance": {
        "request": {"amount": "50.00", "method": "cash", "card_number": "VIP-0001"},
        "response": {
            "payment_id": ADVANCE,
            "amount": "50.00",
            "applied_to_debt": "30.00",
            "advance_added": "20.00",
            "bonus_accrued": "5.00",
            "customer": {"debt": "0.00", "advance": "20.00", "bonus_balance": "12.00"},
        },
    },
    "returnMoney": {
        "request": {"amount": "20.00", "method": "cash", "card_number": "VIP-0001"},
        "response": {
            "refund_id": REFUND,
            "amount": "20.00",
            "customer": {"debt": "0.00", "advance": "0.00", "bonus_balance": "12.00"},
        },
    },
    "returnGoods": {
        "request": {"lines": [{"line_no": 2, "quantity": "1"}], "refund": "advance"},
        "response": {
            "return_id": RETURN,
            "value": "40.00",
            "debt_cancelled": "30.00",
            "bonus_restored": "0.00",
            "refunded": "0.00",
            "advance_added": "10.00",
            "bonus_reversed": "1.00",
            "customer": {"debt": "0.00", "advance": "10.00", "bonus_balance": "6.00"},
        },
    },
    "getOperation": {"response": {"status": "completed", **PAYMENT_OUT}},
    "setBonusType": {
        "request": {"bonus_type": "none"},
        "response": {
            "payment_id": PAYMENT,
            "bonus_cancelled": "7.00",
            "customer": {**AFTER_PAYMENT, "bonus_balance": "0.00"},
        },
    },
    "revokeDiscount": {
        "response": {
            "sale_id": SALE,
            "discount_revoked": "10.00",
            "customer": {**AFTER_PAYMENT, "debt": "40.00"},
        }
    },
    "getPaymentBalanceReport": {
        "response": {
            "rows": [
                {
                    "customer_id": CUSTOMER,
                    "name": "Ana Popescu",
                    "opening": "0.00",
                    "goods": "100.00",
                    "payments": "70.00",
                    "closing": "-30.00",
                }
            ],
            "totals": {
                "opening": "0.00",
                "goods": "100.00",
                "payments": "70.00",
                "closing": "-30.00",
            },
        },
    },
    "getUnpaidGoodsReport": {
        "response": {
            "rows": [
                {
                    "customer_id": CUSTOMER,
                    "customer_name": "Ana Popescu",
                    "sale_id": SALE,
                    "sold_at": SOLD_AT,
                    "due_date": DUE,
                    "days_overdue": 0,
                    "item": "Shoes [4820000000024]",
                    "barcode": "4820000000024",
                    "quantity": "1",
                    "amount_owed": "30.00",
                }
            ],
            "next": None,
        }
    },
    "getAgingReport": {
        "response": {
            "rows": [{"customer_id": CUSTOMER, "name": "Ana Popescu", **AGING}],
            "totals": AGING,  # one customer: the totals are hers
            "next": None,
        }
    },
    "getBonusStatisticsReport": {
        "response": {
            **BONUS_FIGURES,
            "outstanding": "7.00",
            "by_store": [{"store_id": STORE, "name": "Mall Nord", **BONUS_FIGURES}],
            "by_customer": [
                {"customer_id": CUSTOMER, "name": "Ana Popescu", **BONUS_FIGURES, "balance": "7.00"}
            ],
            "next": None,
        }
    },
    "getStatement": {
        "response": {
            "customer_id": CUSTOMER,
            "opening": {"debt": "0.00", "advance": "0.00", "bonus_balance": "0.00"},
            "entries": [
                {
                    "at": SOLD_AT,
                    "kind": "sale",
                    "sale_id": SALE,
                    "payment_id": None,
                    "description": "Dress 1 x 60.00, Shoes 1 x 50.00 - 10.00",
                    "debt_change": "100.00",
                    "advance_change": "0.00",
                    "bonus_change": "0.00",
                    **BALANCES,
                },
                {
                    "at": "2026-03-09T17:40:00+02:00",
                    "kind": "payment",
                    "sale_id": None,
                    "payment_id": PAYMENT,
                    "description": "Payment (take_money, cash) 70.00",
                    "debt_change": "-70.00",
                    "advance_change": "0.00",
                    "bonus_change": "0.00",
                    "debt": "30.00",
                    "advance": "0.00",
                    "bonus_balance": "0.00",
                },
            ],
            "closing": {"debt": "30.00", "advance": "0.00", "bonus_balance": "0.00"},
        }
    },
    "listTasks": {"response": {"items": [TASK_OUT], "next": None}},
    "getTask": {"response": TASK_OUT},
    "completeTask": {
        "request": {"outcome": "promised", "note": "pays on Friday"},
        "response": {
            **TASK_OUT,
            "status": "done",
            "closed_at": "2026-04-04T09:30:00+00:00",
            "closed_reason": "completed",
            "outcome": "promised",
            "note": "pays on Friday",
            "actions": [],
            "completed_by": {"user_id": USER, "name": "Maria Ionescu"},
        },
    },
    "setWebhook": {
        "request": {
            "url": "https://crm.kids-corner.example/hooks/tasks",
            "secret": "whsec_c2VjcmV0LWZvci10aGUtZXhhbXBsZQ==",
        },
        "response": {"url": "https://crm.kids-corner.example/hooks/tasks", "configured": True},
    },
    "createUser": {
        "request": {
            "email": "maria@kids-corner.example",
            "name": "Maria Ionescu",
            "role": "customer_service",
            "password": "correct horse battery",
        },
        "response": USER_OUT,
    },
    "listUsers": {"response": {"items": [USER_OUT], "next": None}},
    "deleteUser": {
        "response": {
            **{k: v for k, v in USER_OUT.items() if k != "created_at"},
            "deleted_at": "2026-06-01T12:00:00+00:00",
        }
    },
    "signIn": {
        "request": {"email": "maria@kids-corner.example", "password": "correct horse battery"},
        "response": {
            "access_token": SECRET_KEY,
            "expires_at": "2026-03-02T20:00:00+00:00",
            "user": SESSION_USER,
            "chain": SESSION_CHAIN,
        },
    },
    "getCurrentSession": {
        "response": {
            "expires_at": "2026-03-02T20:00:00+00:00",
            "user": SESSION_USER,
            "chain": SESSION_CHAIN,
        }
    },
}

for _operation, _kind, _id in (
    ("createSale", "sale", SALE),
    ("takeMoney", "debt_payment", PAYMENT),
    ("payAdvance", "advance", ADVANCE),
    ("returnMoney", "refund", REFUND),
    ("returnGoods", "return", RETURN),
    ("setBonusType", "bonus_cancel", PAYMENT),
    ("revokeDiscount", "revoke_discount", SALE),
):
    OPERATION_EXAMPLES[_operation]["pending"] = _pending(_kind, _id)

# the CSV columns of each report (reporting's CSV_HEADERS): one line per JSON row
for _operation, _rows, _header in (
    ("getPaymentBalanceReport", "rows", "customer_id,name,opening,goods,payments,closing"),
    (
        "getUnpaidGoodsReport",
        "rows",
        "customer_id,customer_name,sale_id,sold_at,due_date,"
        "days_overdue,item,barcode,quantity,amount_owed",
    ),
    ("getAgingReport", "rows", "customer_id,name,current,d1_30,d31_60,d61_90,d90_plus,total"),
    (
        "getBonusStatisticsReport",
        "by_customer",
        "customer_id,accrued,spent,cancelled,reversed,restored,expired,balance,name",
    ),
    (
        "getStatement",
        "entries",
        "at,kind,sale_id,payment_id,description,debt_change,"
        "advance_change,bonus_change,debt,advance,bonus_balance",
    ),
):
    OPERATION_EXAMPLES[_operation]["csv"] = _csv(
        OPERATION_EXAMPLES[_operation]["response"][_rows], _header
    )

#: status -> (code, detail) of the example problem answer of that status
_PROBLEM_EXAMPLES: dict[int, tuple[str, str]] = {
    401: ("unauthorized", "unknown API key"),
    403: ("forbidden", "this needs a terminal key"),
    404: ("not_found", "no such resource"),
    409: ("idempotency_conflict", "this Idempotency-Key was used with a different request"),
    429: ("rate_limited", "too many requests; retry after the Retry-After seconds"),
    503: ("unavailable", "the service is briefly unavailable; retry with the same Idempotency-Key"),
}


def problem_example(status: int) -> dict[str, Any]:
    """A problem answer of `status` as the gateway writes it (`problem_body`)."""
    if status == 422:
        return problem_body(
            "validation_error",
            "lines.0.unit_price: must be a decimal string",
            errors=[{"field": "lines.0.unit_price", "message": "must be a decimal string"}],
        )
    code, detail = _PROBLEM_EXAMPLES.get(status, ("internal_error", "an unexpected error"))
    return problem_body(code, detail, status)
