"""What replace_embeddings did: the lookups it replaced, the tables it wrote, what it left and why."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class Lookup:
    """One table served by hps and the graph lookups that now read it."""

    table_id: int
    table: str                 # the table's name in the config (embedding_table_names)
    initializer: str           # the ONNX initializer its rows came from
    rows: int
    dim: int
    nodes: list[str]           # the Gather nodes replaced (several when the table is shared)
    kinds: list[str]           # per node: "gather", "gather+ReduceSum", "loop-bag (hoisted)", ...
    folder: str                # the table folder written
    notes: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    """A candidate lookup left as it was, and why."""

    node: str
    op: str
    reason: str
    initializer: Optional[str] = None


@dataclass
class SurgeryReport:
    onnx_in: str
    onnx_out: str
    config: str                # the hps config written
    ps_config_file: str        # the path the HPS_TRT nodes carry
    model_name: str
    key_dtype: str
    replaced: list[Lookup] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    key_inputs: list[str] = field(default_factory=list)   # graph inputs whose dtype became key_dtype
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        lines = [f"{self.onnx_in} -> {self.onnx_out}: {len(self.replaced)} table"
                 f"{'' if len(self.replaced) == 1 else 's'} served by hps (model {self.model_name!r}, "
                 f"config {self.config}, keys {self.key_dtype})"]
        for t in self.replaced:
            shared = f", shared by {len(t.nodes)} lookups" if len(t.nodes) > 1 else ""
            lines.append(f"  replaced  table {t.table_id} {t.table!r}: {t.rows:,} x {t.dim} from initializer "
                         f"{t.initializer!r}{shared}; nodes {', '.join(f'{n} ({k})' for n, k in zip(t.nodes, t.kinds))}")
            lines.extend(f"            note: {note}" for note in t.notes)
        for s in self.skipped:
            table = f" on {s.initializer!r}" if s.initializer else ""
            lines.append(f"  left      {s.op} {s.node!r}{table}: {s.reason}")
        if self.key_inputs:
            lines.append(f"  key inputs now {self.key_dtype}: {', '.join(self.key_inputs)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
