"""What names an operation the gateway forwarded: its chain, its kind and its id."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

#: (chain_id, kind, operation_id): what a waiting request waits for and what a NOTIFY names
OperationKey = tuple[UUID, str, UUID]


@dataclass(frozen=True)
class OpRef:
    chain_id: UUID
    kind: str
    operation_id: UUID

    @property
    def key(self) -> OperationKey:
        return (self.chain_id, self.kind, self.operation_id)
