"""The documents stay true: the README's commands and length, the generated tables, the
figures the prose names, and every relative link.

README.md is for users; docs/ for operators and developers. Tables between
`<!-- name:start -->` and `<!-- name:end -->` markers are written by tools, never by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from app.secrets_store import ALL_KEYS
from tests.conftest import PROJECT_DIR, Dist, all_containers
from tools.config_reference import END, START, reference
from tools.doc_blocks import block_of

README_PATH = PROJECT_DIR / "README.md"
DOCS = PROJECT_DIR / "docs"
README = README_PATH.read_text(encoding="utf-8")
DOC_FILES = [README_PATH, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 220


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_readme_opens_with_the_setup_and_test_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make setup", "make test"]
    assert (PROJECT_DIR / ".ci" / "run").read_text().count("make test") == 1


def test_readme_stays_short() -> None:
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move material into docs/"


def test_readme_says_what_it_runs_and_what_it_needs() -> None:
    plain = " ".join(README.split("## What it runs, plainly", 1)[1].split("\n## ", 1)[0].split())
    for fact in ("Python 2.7", "Django 1.6", "end of life", "TLS", "Ingress", "egress", "single organization"):
        assert fact in plain, fact
    for need in ("Kafka", "ClickHouse", "Snuba", "16 GB"):
        assert need in plain, need
    prerequisites = README.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    for need in (
        "Python 3.11",
        "python3-venv",
        "Node.js 20",
        "npm",
        "PyPI",
        "root",
        "apt",
        "kubectl",
        "minikube",
        "Docker",
    ):
        assert need in prerequisites, need


def test_readme_walkthrough_starts_minikube_as_the_capacity_check_assumes() -> None:
    from app.values import parse_config

    capacity = parse_config({}).capacity
    assert (capacity.target, capacity.cni) == ("minikube", "calico")
    assert "minikube start --memory=4000mb --cpus=2 --cni=calico" in README
    assert "--memory=4000mb --cpus=2 --cni=calico" in (PROJECT_DIR / "tools" / "e2e.sh").read_text()


def test_configuration_reference_matches_the_model() -> None:
    text = doc("configuration.md")
    assert block_of(text, START, END) == reference(), "run: .venv/bin/python tools/config_reference.py --write"


def test_props_reference_matches_the_constructs() -> None:
    from tools import props_reference

    block = block_of(doc("constructs.md"), props_reference.START, props_reference.END)
    assert block == props_reference.reference(), "run: .venv/bin/python tools/props_reference.py --write"


def test_every_secret_key_is_documented() -> None:
    text = doc("configuration.md")
    for key in ALL_KEYS:
        assert f"`{key.key}`" in text, key.key


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


def test_sign_up_is_closed_unless_the_readme_setting_opens_it(
    default_dist: Dist, synth_once: Callable[..., Dist]
) -> None:
    (snippet,) = re.findall(r"`(sentry: \{allow_registration: true\})`", README)

    def registration(dist: Dist) -> set[str]:
        return {
            e["value"]
            for o in dist.objects
            for c in all_containers(o)
            for e in c.get("env", [])
            if e["name"] == "SENTRY_ALLOW_REGISTRATION"
        }

    # sentry.conf.py turns Sentry's auth:register on only with this variable (test_sentry_conf.py).
    assert registration(default_dist) == {"false"}
    assert registration(synth_once(snippet, secrets={})) == {"true"}


def test_capacity_table_matches_the_synthesized_pods(default_dist: Dist) -> None:
    from tools.capacity_table import END as CAP_END
    from tools.capacity_table import START as CAP_START
    from tools.capacity_table import table

    assert block_of(README, CAP_START, CAP_END) == table(default_dist.objects), (
        "run: .venv/bin/python tools/capacity_table.py --write"
    )


# Every generated block: which file holds it, once.
BLOCKS = {
    "config-reference": "docs/configuration.md",
    "capacity-table": "README.md",
    "checkov-skips": "docs/security.md",
    "props-reference": "docs/constructs.md",
    "bench-synth": "docs/development.md",
    "bench-backup": "docs/development.md",
}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_generated_blocks_live_where_their_tools_write_them(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(PROJECT_DIR))
    for block, home in BLOCKS.items():
        expected = 1 if home == name else 0
        assert text.count(f"<!-- {block}:start") == expected, (name, block)
        assert text.count(f"<!-- {block}:end -->") == expected, (name, block)


def test_tools_write_into_the_files_that_hold_their_blocks() -> None:
    from tools import capacity_table, config_reference, props_reference, validate

    assert PROJECT_DIR / BLOCKS["config-reference"] == config_reference.TARGET
    assert PROJECT_DIR / BLOCKS["props-reference"] == props_reference.TARGET
    assert PROJECT_DIR / BLOCKS["capacity-table"] == capacity_table.TARGET
    assert PROJECT_DIR / BLOCKS["checkov-skips"] == validate.SKIP_TABLE_DOC


def _bench(module: str) -> tuple[str, list[str], str]:
    import importlib

    bench = importlib.import_module(f"tools.{module}")
    return bench.START, bench.HEADER, bench.END


@pytest.mark.parametrize("module", ["bench_synth", "bench_backup"])
def test_benchmark_tables_are_the_scripts_output(module: str) -> None:
    """A measured table is not code, but it is the script's: its markers, a stamp with the date
    and the machine, and the script's own table header. Rewrite it with --write."""
    start, header, end = _bench(module)
    block = block_of(doc("development.md"), start, end)
    lines = block.splitlines()
    assert re.match(r"Measured \d{4}-\d{2}-\d{2} .*\bon \S+ \S+, .+, \d+ CPUs", lines[1]), lines[1]
    i = lines.index(header[0])
    assert lines[i + 1] == header[1]
    rows = lines[i + 2 : lines.index("", i)]
    assert rows and all(row.count(" | ") == header[0].count(" | ") for row in rows), rows


def _prose(text: str) -> str:
    """The text outside generated blocks and code blocks."""
    text = re.sub(r"<!-- ([a-z-]+):start.*?<!-- \1:end -->", "", text, flags=re.S)
    return re.sub(r"```.*?```", "", text, flags=re.S)


# Counts, percentages and timings that only a tool may write (the examples:
# "205 tests", "35 objects", "76% / 75%", "11 runs", "about 1.5 minutes").
TYPED_FIGURES = re.compile(
    r"\b\d[\d,.]*\s?(?:%|tests\b|objects\b|runs\b|calls\b|passed\b|failed\b)"
    r"|\babout \d[\d.]* (?:minutes?|seconds?|s)\b"
)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_no_hand_typed_counts_or_percentages(path: Path) -> None:
    found = TYPED_FIGURES.findall(_prose(path.read_text(encoding="utf-8")))
    assert not found, f"{path.name}: {found}: generate them into a marked block, or leave them out"


def test_figures_in_the_prose_are_the_codes() -> None:
    """The defaults the prose names, built from the model and the manifests: a changed default
    makes its sentence disappear, and this test fail."""
    from app.values import parse_config

    config = parse_config({})
    sentry, postgres, backup = config.sentry, config.postgres, config.postgres.backup
    scripts = PROJECT_DIR / "constructs" / "scripts"
    wait_postgres = re.search(r"WAIT_TIMEOUT_SECONDS:-(\d+)", (scripts / "wait-for-postgres.sh").read_text())
    wait_migrations = re.search(r"WAIT_TIMEOUT_SECONDS:-(\d+)", (scripts / "wait-for-migrations.sh").read_text())
    assert wait_postgres and wait_migrations
    backup_script = (scripts / "postgres-backup.sh").read_text()
    expected = {
        "operations.md": [
            f"the migration's limit is **{sentry.migrations.resources.limits.memory}**",
            f"while its request is {sentry.migrations.resources.requests.memory}",
            f"their requests are {sentry.cron.resources.requests.cpu}",
            f"limits of web and worker\n({sentry.web.resources.limits.memory})",
            f"`sentry-backup`, {backup.storage.size} by default",
            f"`startingDeadlineSeconds: {backup.starting_deadline_seconds}`",
            f"The CPU limit is {backup.resources.limits.cpu} (request {backup.resources.requests.cpu})",
            f"`postgres.backup.keep` ({backup.keep})",
            f"`postgres.backup.compression_level`, {backup.compression_level}",
            f"`postgres.backup.jobs` ({backup.jobs})",
            f"The default limit is {sentry.migrations.resources.limits.memory}",
            f"give up after {int(wait_postgres[1]) // 60} minutes (PostgreSQL) or\n"
            f"{int(wait_migrations[1]) // 3600} hour (migrations)",
            f"waits up to {postgres.backup.restore.wait_for_clients_seconds // 60} minutes for other sessions",
            f"database with `pg_restore -j {postgres.backup.restore.jobs}`",
        ],
        "development.md": [
            "sentry cleanup --days " + str(sentry.cleanup.days),
            f"{sentry.web.replicas} replicas, RollingUpdate",
            f"NodePort {sentry.web.node_port}",
        ],
    }
    assert "last_bytes + last_bytes / 10" in backup_script and "size plus a tenth" in doc("operations.md")
    assert "daily at 03:00 UTC" in doc("operations.md") and backup.schedule == "0 3 * * *"
    assert f"http://<minikube ip>:{sentry.web.node_port}/" in README and f"`{sentry.admin_email}`" in README
    for name, phrases in expected.items():
        text = doc(name)
        for phrase in phrases:
            assert phrase in text, (name, phrase)


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", _prose(text), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_relative_links_point_to_files_and_headings_that_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(text)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: {target}: no such file"
        if anchor:
            assert anchor in _anchors(linked.read_text(encoding="utf-8")), f"{path.name}: {target}: no such heading"


def test_the_real_sentry_tiers_substitutions_are_the_runners() -> None:
    from tests.pod_runner import substitutions_markdown

    start = "<!-- real-sentry-substitutions:start (written by python -m tests.pod_runner --write; do not edit) -->"
    block = block_of(doc("development.md"), start, "<!-- real-sentry-substitutions:end -->")
    assert substitutions_markdown() in block, "run: .venv/bin/python -m tests.pod_runner --write docs/development.md"


# Where the code sends a user: "docs/operations.md, <heading>", "…md, “<heading>”" or "…md#anchor".
NAMED_SECTION = re.compile(r"docs/(\w+)\.md, “?([A-Z][^.,;:”)\n]+)")
ANCHORED_SECTION = re.compile(r"docs/(\w+)\.md#([a-z0-9-]+)")
CODE_THAT_POINTS_AT_DOCS = [
    *sorted((PROJECT_DIR / "app").glob("*.py")),
    *sorted((PROJECT_DIR / "constructs").glob("*.py")),
    *sorted((PROJECT_DIR / "constructs" / "scripts").glob("*.sh")),
    *sorted((PROJECT_DIR / "tools").glob("*.py")),
    PROJECT_DIR / "main.py",
]


def test_every_section_the_code_names_is_a_heading_of_its_document() -> None:
    """A refusal, a script's error or a setting's description that names a procedure sends the
    user to a heading that exists (issue 19: "every procedure named in a refusal is in the docs,
    under that name")."""
    from app.procedures import PROCEDURES, anchor

    named = 0
    for path in CODE_THAT_POINTS_AT_DOCS:
        text = path.read_text(encoding="utf-8")
        for name, title in NAMED_SECTION.findall(text):
            headings = {h.strip() for h in re.findall(r"^#+ (.+)$", doc(f"{name}.md"), flags=re.M)}
            # "Capacity" names "Capacity: why ...": a heading's words up to its colon will do.
            short = {h.split(":", 1)[0] for h in headings}
            assert title.strip() in headings | short, f"{path.name} names {name}.md, “{title}”: no such heading"
            named += 1
        for name, slug in ANCHORED_SECTION.findall(text):
            assert slug in _anchors(doc(f"{name}.md")), f"{path.name}: {name}.md#{slug}: no such heading"
    assert named >= 5, "the pattern finds the references"
    for title in PROCEDURES.values():
        assert anchor(title) in _anchors(doc("operations.md")), title
