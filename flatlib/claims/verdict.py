"""A verdict and the gates that must pass before it may say anything about the paper's claim.

Every claim record carries three gates (FF/FIM/PoF chapters may add their own):

- **trained**: every arm reached a stated training fit;
- **acted**: the treatment changed the model measurably;
- **resolvable**: the paper's effect is larger than the smallest effect this experiment can detect.

A verdict other than ``inconclusive`` or ``not run`` requires every gate to pass: ``judge``
turns any other verdict into ``inconclusive`` when a gate failed, and the failed gates' details
become the reason shown on the status page.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from flatlib.reference import targets
from flatlib.store import Entry, Store

VERDICTS = ("held", "partly held", "did not hold", "inconclusive", "not run")
GATE_NAMES = ("trained", "acted", "resolvable")
COLOURS = {"held": "#1a7f37", "partly held": "#9a6700", "did not hold": "#cf222e", "inconclusive": "#57606a",
           "not run": "#6e7781"}


def badge(verdict: str) -> str:
    """The coloured verdict badge (HTML); it carries the word, so it also reads without colour."""
    return (f'<span class="verdict-badge verdict-{verdict.replace(" ", "-")}" style="background:{COLOURS[verdict]};'
            f'color:#fff;padding:0 .45em;border-radius:.6em;font-weight:600;white-space:nowrap">{verdict}</span>')


@dataclasses.dataclass(frozen=True)
class Gate:
    """One precondition of a verdict: whether it passed and one line with the numbers."""

    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": bool(self.passed), "detail": self.detail}


def not_applicable(why: str) -> Gate:
    """A gate that this kind of evidence cannot fail (e.g. "acted" for an observation without treatment)."""
    return Gate(True, f"not applicable: {why}")


@dataclasses.dataclass
class Claim:
    """The judged claim of one target ID at one scale (profile, or the benchmark's device)."""

    id: str
    verdict: str
    ours: str                     # the evidence, with spreads and seed counts
    headline: str                 # one short number of ours for the status row
    rule: str                     # the sentence that decided it, generated from the thresholds
    gates: dict[str, Gate]
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    scale: str | None = None      # e.g. "GPU benchmark, NVIDIA H100 80GB HBM3"; None: the profile

    @property
    def reason(self) -> str:
        """Why the verdict is inconclusive: the failed gates' details ('' when none failed)."""
        return "; ".join(f"{name}: {g.detail}" for name, g in self.gates.items() if not g.passed)

    def as_record(self) -> dict[str, Any]:
        return {"ours": self.ours, "headline": self.headline, "verdict": self.verdict, "rule": self.rule,
                "gates": {k: g.as_dict() for k, g in self.gates.items()}, "reason": self.reason,
                "scale": self.scale, "values": self.values}

    def record(self, profile: str, root: Any = None) -> Entry:
        """Store this verdict as the profile's claim record for ``id`` (replacing an older one)."""
        return Store(profile, root).put("claim", {"id": self.id}, self.as_record())

    def markdown(self) -> str:
        gates = "; ".join(f"{'✓' if g.passed else '✗'} {name}: {g.detail}" for name, g in self.gates.items())
        why = f" ({self.reason})" if self.verdict == "inconclusive" and self.reason else ""
        return (f'<span id="{self.id.lower()}"></span>**{self.id}** {badge(self.verdict)}{why}. {self.ours}.\n\n'
                f"*Rule:* {self.rule}\n\n*Gates:* {gates}")

    def _repr_markdown_(self) -> str:
        return self.markdown()


class Claims(list):
    """Several judged claims of one notebook, displayed one after the other."""

    def _repr_markdown_(self) -> str:
        return "\n\n---\n\n".join(c.markdown() for c in self)


def judge(target: str, verdict: str, *, gates: dict[str, Gate], ours: str, headline: str, rule: str,
          values: dict[str, Any] | None = None, scale: str | None = None) -> Claim:
    """A ``Claim`` whose verdict respects its gates: ``verdict`` is kept only if every gate passed
    (or it is already ``inconclusive``/``not run``); otherwise it becomes ``inconclusive``."""
    ids = set(targets()["id"])
    if target not in ids:
        raise ValueError(f"unknown target {target!r}; choose from: {', '.join(sorted(ids))}")
    if verdict not in VERDICTS:
        raise ValueError(f"invalid verdict {verdict!r}; choose from: {', '.join(VERDICTS)}")
    missing = [g for g in GATE_NAMES if g not in gates]
    if missing and verdict != "not run":
        raise ValueError(f"{target}: every claim declares the gates {GATE_NAMES}; missing {missing}")
    if verdict not in ("inconclusive", "not run") and not all(g.passed for g in gates.values()):
        verdict = "inconclusive"
    return Claim(target, verdict, ours, headline, rule, dict(gates), dict(values or {}), scale)


def not_run(target: str, why: str, *, scale: str | None = None) -> Claim:
    """A target this scale cannot run (e.g. ImageNet without the data), with the reason as its rule."""
    return judge(target, "not run", gates={}, ours="—", headline="—", rule=why, scale=scale)
