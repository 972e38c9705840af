"""The one list of a photo's branches and stages. Tasks, queue routes, warm-up, the progress a
viewer sees, metrics names and the readiness check all derive from it, so that a stage or a
branch is named here once.

A stage whose config section has a `backend` setting can be switched off with "none"; the
others (select, search, ...) run whenever their branch does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lens.config import Settings


@dataclass(frozen=True)
class Branch:
    name: str  # task lens.<name>, the job part it stores, AnalyzeOptions.<name> switches it
    queue: str  # the Celery queue its task runs on (a fleet's workers choose with -Q)


@dataclass(frozen=True)
class Stage:
    name: str  # the Timer's name (timings_ms) and, where it has one, its config section
    branch: str
    shown: str  # what a viewer is told while it runs (job progress)
    switchable: bool = False  # its config section has `backend`, "none" = off
    needs: str | None = None  # a stage whose output it reads: off when that one is off
    # The module whose BACKENDS table its config section's `backend` names (lens.registry).
    backends: str | None = None
    # Config values besides its own section that change its output ("section" or
    # "section.field"); with the backend's models they make the stage's version.
    decided_by: tuple[str, ...] = ()


BRANCHES: tuple[Branch, ...] = (Branch("regions", queue="vision"), Branch("text", queue="text"))
BRANCH_NAMES: tuple[str, ...] = tuple(b.name for b in BRANCHES)

STAGES: tuple[Stage, ...] = (
    Stage("detect", "regions", "detecting", switchable=True, backends="lens.detect"),
    Stage("saliency", "regions", "detecting", switchable=True, backends="lens.saliency"),
    Stage("select", "regions", "detecting", decided_by=("regions", "limits.work_max_side")),
    # The embedder's version enters a result's key through the catalog (web.catalog.catalog_state).
    Stage("embed", "regions", "searching", backends="lens.embed"),
    Stage("search", "regions", "searching", decided_by=("index", "tune.use_head")),
    Stage("rerank", "regions", "searching", decided_by=("rerank",)),
    Stage("ocr", "text", "reading_text", switchable=True, backends="lens.ocr"),
    Stage("langid", "text", "reading_text", needs="ocr", decided_by=("translate",)),
    Stage("translate", "text", "translating", switchable=True, needs="ocr", backends="lens.translate"),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)

# The progress a viewer sees, in the order the embedded server runs them (in a fleet the two
# branches run side by side, so their stages interleave).
PROGRESS: tuple[str, ...] = ("uploaded", *dict.fromkeys(s.shown for s in STAGES), "done")
# Timer stage name -> the progress shown while it runs.
PROGRESS_OF_STAGE: dict[str, str] = {s.name: s.shown for s in STAGES}


def branch_stages(branch: str) -> tuple[str, ...]:
    """The stage names of one branch, in the order they run."""
    return tuple(s.name for s in STAGES if s.branch == branch)


def is_enabled(settings: Settings, stage: str) -> bool:
    """False for a switchable stage whose backend is "none", and for a stage that needs one."""
    spec = next((s for s in STAGES if s.name == stage), None)
    if spec is None:
        raise KeyError(f"unknown stage '{stage}' (known: {', '.join(STAGE_NAMES)})")
    if spec.needs is not None and not is_enabled(settings, spec.needs):
        return False
    return not spec.switchable or getattr(settings, stage).backend != "none"


def enabled_stages(settings: Settings, branches: tuple[str, ...] = BRANCH_NAMES) -> tuple[str, ...]:
    """The stages that run for these branches under these settings, in order."""
    return tuple(s.name for s in STAGES if s.branch in branches and is_enabled(settings, s.name))
