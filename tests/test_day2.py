"""Day 2: every change of a values file applies over the running stack with `kubectl apply`.

The variants come from the values model (tests/variants.py): for every leaf, a different
valid value, images bumped to their next patch release. Each is synthesized and compared
with its base both ways, default -> variant and variant -> default, under the API
server's update rules (app/apply_rules.py). A leaf that has no effect on the
default configuration (the offsite copy, mail, logins, the restore Job) is varied on the
"full" base, where those are on.

A few changes cannot be applied by their nature; EXCEPTIONS lists each with its reason.
For those, the synth itself refuses (main.py runs the same rules against the previous
dist/) and names the procedure.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.apply_rules import apply_conflicts
from tests.conftest import Dist, synth
from tests.variants import BASES, Leaf, Variant, all_outcomes, leaves, synth_objects, with_leaf

# Leaves that cannot reach the YAML by design, with the reason.
NOT_IN_THE_OUTPUT = {
    "capacity.*": "the capacity target is what the synth measures the requests against; it emits nothing",
}
# Leaves with one allowed value, kept so that a values file setting another gets the reason
# instead of "unknown key": every variant is refused by design.
ONE_ALLOWED_VALUE = {
    "sentry.filestore.gcs.key_file": "GKE Workload Identity cannot work with Sentry 9.1.2 here (docs/cluster.md)",
}

# (leaf pattern, direction) -> why `kubectl apply` cannot make that change. Direction
# "forward" is base -> variant, "back" is variant -> base.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("*.storage_class", "forward"): "an existing volume's StorageClass is fixed (docs/operations.md: Volumes)",
    ("*.storage_class", "back"): "an existing volume's StorageClass is fixed (docs/operations.md: Volumes)",
    ("*.access_mode", "forward"): "an existing volume's access mode is fixed (docs/operations.md: Volumes)",
    ("*.access_mode", "back"): "an existing volume's access mode is fixed (docs/operations.md: Volumes)",
    ("*.size", "back"): "a volume can grow but never shrink (docs/operations.md: Volumes)",
}
# The restore Job keeps one name on purpose: re-applying 90-restore must never restore
# again by itself. Every setting in its pod template is fixed once it ran: delete the
# finished Job before the next restore (docs/operations.md: the restore runbook).
RESTORE_TEMPLATE_LEAVES = (
    "postgres.backup.restore.file",
    "postgres.backup.restore.wait_for_clients_seconds",
    "postgres.backup.restore.jobs",
    "postgres.backup.restore.roles",
    "postgres.backup.restore.filestore",
    "postgres.backup.restore.resources.*",
)
for _pattern in RESTORE_TEMPLATE_LEAVES:
    for _direction in ("forward", "back"):
        EXCEPTIONS[(_pattern, _direction)] = "the restore Job runs once; delete it before the next restore"


def _exception(leaf: str, direction: str) -> str | None:
    matches = (why for (pattern, d), why in EXCEPTIONS.items() if d == direction and fnmatch.fnmatch(leaf, pattern))
    return next(matches, None)


@dataclass(frozen=True)
class Outcome:
    variant: Variant
    objects: list[dict[str, Any]]
    changed: bool


@pytest.fixture(scope="session")
def base_objects() -> dict[str, list[dict[str, Any]]]:
    return {name: synth_objects(values) for name, values in BASES.items()}


@pytest.fixture(scope="session")
def outcomes() -> dict[str, Outcome | None]:
    """Per leaf: its variant on the first base where it changes the output (None: no valid
    variant on any base). Synthesized in worker processes, one per core."""
    found: dict[str, Outcome | None] = {}
    for name, result in all_outcomes([leaf.name for leaf in LEAVES]).items():
        if result is None:
            found[name] = None
            continue
        base, value, objects, changed = result
        leaf = next(leaf for leaf in LEAVES if leaf.name == name)
        found[name] = Outcome(Variant(leaf, base, value, with_leaf(BASES[base], leaf.path, value)), objects, changed)
    return found


LEAVES: list[Leaf] = leaves()
BASES_IMAGES = {leaf.name: leaf.field.default for leaf in LEAVES if leaf.name.endswith("image")}


def test_the_model_has_leaves_to_vary() -> None:
    # The generator walks the model: a broken walk would make every test below vacuous.
    assert len(LEAVES) >= 100
    assert {"sentry.web.replicas", "postgres.storage.size", "redis.image"} <= {leaf.name for leaf in LEAVES}


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_every_leaf_has_a_valid_variant_that_reaches_the_output(leaf: Leaf, outcomes: dict) -> None:
    outcome = outcomes[leaf.name]
    if leaf.name in ONE_ALLOWED_VALUE:
        assert outcome is None, f"{leaf.name} has one allowed value, but {outcome.variant.value!r} works too"
        return
    assert outcome is not None, f"no valid different value found for {leaf.name}"
    if any(fnmatch.fnmatch(leaf.name, p) for p in NOT_IN_THE_OUTPUT):
        assert not outcome.changed, f"{leaf.name} is listed as not reaching the output, but it does"
        return
    assert outcome.changed, f"{leaf.name} = {outcome.variant.value!r} changes nothing in the output: ignored?"


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_every_change_applies_both_ways_or_is_a_listed_exception(
    leaf: Leaf, outcomes: dict, base_objects: dict
) -> None:
    outcome = outcomes[leaf.name]
    if leaf.name in ONE_ALLOWED_VALUE:
        return
    assert outcome is not None
    base = base_objects[outcome.variant.base]
    for direction, old, new in (("forward", base, outcome.objects), ("back", outcome.objects, base)):
        conflicts = apply_conflicts(old, new)
        why = _exception(leaf.name, direction)
        if why is None:
            assert not conflicts, f"{leaf.name} {direction}: " + "; ".join(map(str, conflicts))
        else:
            # Listed as impossible: the rules must see it (so the synth refuses it), and
            # say what to do instead.
            assert conflicts, f"{leaf.name} {direction} is listed as an exception ({why}) but applies cleanly"
            assert all(c.procedure for c in conflicts)


def test_every_exception_matches_a_leaf() -> None:
    # (That each listed change really conflicts is checked per leaf above.)
    for (pattern, _direction), why in EXCEPTIONS.items():
        matched = [leaf.name for leaf in LEAVES if fnmatch.fnmatch(leaf.name, pattern)]
        assert matched, f"exception {pattern} ({why}) matches no leaf"


def test_image_patch_bumps_are_among_the_variants(outcomes: dict) -> None:
    images = {name: outcome for name, outcome in outcomes.items() if name.endswith("image")}
    assert len(images) >= 5  # postgres, redis, sentry, the login image, the offsite copy's
    for name, outcome in images.items():
        assert outcome is not None and outcome.changed, name
        assert outcome.variant.value.rsplit(".", 1)[0] in str(BASES_IMAGES[name]), outcome.variant.value


def test_the_synth_refuses_a_change_kubectl_apply_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, dist = synth(tmp_path, "postgres:\n  storage: {size: 16Gi}\n")
    assert code == 0
    before = {p.name: p.read_bytes() for p in dist.files}
    capsys.readouterr()
    code, _ = synth(tmp_path, "postgres:\n  storage: {size: 8Gi}\n", outdir=dist.path)
    err = capsys.readouterr().err
    assert code == 2
    assert "PersistentVolumeClaim sentry/data-sentry-postgresql-0" in err
    assert "cannot shrink from 16Gi to 8Gi" in err and "--allow-apply-conflicts" in err
    assert {p.name: p.read_bytes() for p in dist.files} == before
    # Growing it again is an ordinary apply.
    code, _ = synth(tmp_path, "postgres:\n  storage: {size: 32Gi}\n", outdir=dist.path)
    assert code == 0


def test_the_refusal_can_be_overridden_after_following_the_procedure(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    assert synth(tmp_path, "redis:\n  storage: {storage_class: fast}\n", outdir=out)[0] == 0
    assert synth(tmp_path, "redis:\n  storage: {storage_class: slow}\n", outdir=out)[0] == 2
    import main
    from tests.conftest import TEST_SECRETS, environment, secret_env

    (tmp_path / "values.yaml").write_text("redis:\n  storage: {storage_class: slow}\n")
    with environment({"SENTRY_K8S_SECRETS_FILE": str(tmp_path / "s.yaml"), **secret_env(TEST_SECRETS)}):
        code = main.main(
            ["--config", str(tmp_path / "values.yaml"), "--outdir", str(out), "--quiet", "--allow-apply-conflicts"]
        )
    assert code == 0


# Fields the API server freezes once the object exists (kubernetes
# pkg/apis/{apps,batch}/validation), and fields it lets `kubectl apply` change.
FROZEN_FIELDS = [
    ("Job", "completions", 2),
    ("Job", "selector", {"matchLabels": {"other": "pods"}}),
    ("StatefulSet", "serviceName", "another-service"),
    ("StatefulSet", "podManagementPolicy", "Parallel"),
    ("StatefulSet", "selector", {"matchLabels": {"other": "pods"}}),
    ("Deployment", "selector", {"matchLabels": {"other": "pods"}}),
]
MUTABLE_FIELDS = [
    ("StatefulSet", "replicas", 3),
    ("StatefulSet", "minReadySeconds", 10),
    ("Deployment", "replicas", 5),
    ("Deployment", "minReadySeconds", 10),
]


@pytest.mark.parametrize(("kind", "field", "value"), FROZEN_FIELDS + MUTABLE_FIELDS)
def test_the_apply_rules_know_which_fields_the_api_server_freezes(
    default_dist: Dist, kind: str, field: str, value: object
) -> None:
    old = default_dist.of_kind(kind)[0]
    new = copy.deepcopy(old)
    new["spec"][field] = value
    assert new != old
    fields = [c.field for c in apply_conflicts([old], [new])]
    if (kind, field, value) in FROZEN_FIELDS:
        assert fields == [f"spec.{field}"], f"{kind} spec.{field} is frozen"
    else:
        assert fields == [], f"{kind} spec.{field} may change"
