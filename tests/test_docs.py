"""The README stays true: its commands, its configuration reference, its secret keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.secrets_store import ALL_KEYS
from tests.conftest import PROJECT_DIR, Dist
from tools.config_reference import END, START, reference

README = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_setup_and_test_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make setup", "make test"]
    assert (PROJECT_DIR / ".ci" / "run").read_text().count("make test") == 1


def test_configuration_reference_matches_the_model() -> None:
    start, end = README.index(START), README.index(END) + len(END)
    assert README[start:end] == reference(), "run: .venv/bin/python tools/config_reference.py --write"


def test_every_secret_key_is_documented() -> None:
    for key in ALL_KEYS:
        assert f"`{key.key}`" in README, key.key


@pytest.mark.parametrize("values_file", sorted((PROJECT_DIR / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_values_file_synthesizes(values_file: Path, synth_once: Callable[..., Dist]) -> None:
    dist = synth_once(values_file.read_text(), secrets={})  # fails unless the synthesis succeeds
    assert dist.of_kind("Deployment")


def test_production_example_uses_its_own_secret_ingress_and_offsite_backup(synth_once: Callable[..., Dist]) -> None:
    dist = synth_once((PROJECT_DIR / "config" / "production.yaml").read_text(), secrets={})
    assert not dist.of_kind("Secret")
    assert dist.get("Ingress", "sentry-web")["spec"]["tls"]
    assert dist.get("Deployment", "sentry-web")["spec"]["replicas"] == 3
    assert dist.get("PersistentVolumeClaim", "sentry-filestore")["spec"]["accessModes"] == ["ReadWriteMany"]
    backup = dist.get("CronJob", "sentry-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    offsite = next(c for c in backup["containers"] if c["name"] == "offsite")
    assert offsite["image"] == "amazon/aws-cli:2.15.30"
    secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in offsite["env"] if "valueFrom" in e}
    assert secret_refs == {"sentry-credentials"}


def test_capacity_table_matches_the_synthesized_pods(default_dist: Dist) -> None:
    from tools.capacity_table import END as CAP_END
    from tools.capacity_table import START as CAP_START
    from tools.capacity_table import table

    start, end = README.index(CAP_START), README.index(CAP_END) + len(CAP_END)
    assert README[start:end] == table(default_dist.objects), "run: .venv/bin/python tools/capacity_table.py --write"
