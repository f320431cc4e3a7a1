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
    # Every `minikube start` with flags that a user may copy starts it that way (config/minikube.yaml's did not).
    for name, (text, _) in TEXTS.items():
        if name.endswith((".py", ".sh")):
            continue
        for start in re.findall(r"\bminikube start --[^`\n]*", text):
            assert "--memory=4000mb --cpus=2 --cni=calico" in start or "--cni=" in start, (name, start)


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


# --- References that point somewhere: sections, files, make targets, commands (issue 22, 8) ---

MAKEFILE = (PROJECT_DIR / "Makefile").read_text(encoding="utf-8")
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE, flags=re.M))
CONFIG_FILES = sorted((PROJECT_DIR / "config").glob("*.yaml"))
# Where the code tells a user what to run or read: messages, docstrings, comments.
CODE_FILES = [
    PROJECT_DIR / "main.py",
    PROJECT_DIR / "cdk8s.yaml",
    PROJECT_DIR / "Makefile",
    *sorted((PROJECT_DIR / "app").glob("*.py")),
    *sorted((PROJECT_DIR / "constructs").glob("*.py")),
    *sorted((PROJECT_DIR / "constructs" / "scripts").glob("*.sh")),
    *sorted((PROJECT_DIR / "tools").glob("*.py")),
    *sorted((PROJECT_DIR / "tools").glob("*.sh")),
]


def _comments(path: Path) -> str:
    """A values file's comments: what a user reads there."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split("#", 1)[1] for line in lines if "#" in line)


# name -> (text, whether it is a document whose code blocks are commands to run)
TEXTS = {
    **{str(p.relative_to(PROJECT_DIR)): (p.read_text(encoding="utf-8"), True) for p in DOC_FILES},
    **{str(p.relative_to(PROJECT_DIR)): (_comments(p), False) for p in CONFIG_FILES},
    **{str(p.relative_to(PROJECT_DIR)): (p.read_text(encoding="utf-8"), False) for p in CODE_FILES},
}


def _sections(text: str) -> set[str]:
    """A document's sections as prose names them: its headings (also up to a colon), and the
    bold words that open a paragraph (docs/cluster.md's **Metrics**)."""
    prose = _prose(text)
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}
    leads = set(re.findall(r"(?:^|\n\n)\*\*([^*]+)\*\*", prose))
    names = headings | {h.split(":", 1)[0] for h in headings} | leads
    return {n.strip().lower() for n in names}


def _commands(text: str, runnable_blocks: bool) -> list[str]:
    """What a text tells to run: spans in backticks, and the lines of its shell code blocks."""
    commands = re.findall(r"`([^`\n]+)`", text)
    if runnable_blocks:
        for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, flags=re.S):
            commands += [line.strip() for line in block.splitlines()]
    return commands


def test_every_make_target_named_exists() -> None:
    named = 0
    for name, (text, runnable) in TEXTS.items():
        if name.startswith("constructs/"):
            continue  # notes on how the images were built (CPython's `make install`), not this Makefile
        targets = [c.split()[1] for c in _commands(text, runnable) if re.match(r"make [a-z]", c)]
        targets += re.findall(r"\(make ([a-z][a-z0-9-]*)", text)  # "the cdk8s CLI (make synth-cli)"
        for target in targets:
            assert target in MAKE_TARGETS, f"{name}: `make {target}`: no such target in the Makefile"
            named += 1
    assert named >= 20, "the patterns find the references"


def test_no_command_that_is_not_on_the_path() -> None:
    # The pinned cdk8s CLI lives in tools/node_modules: `make synth-cli` runs it. (The tools'
    # own notes on what they run with that CLI are for developers, and left out.)
    for name, (text, runnable) in TEXTS.items():
        if name.startswith(("tools/", "constructs/")):
            continue
        for command in _commands(text, runnable):
            assert not re.match(r"(\$ )?cdk8s ", command), f"{name}: `{command}`: cdk8s is not on PATH (make synth-cli)"


def test_every_readme_section_named_exists() -> None:
    readme = _sections(README)
    for name, (text, _) in TEXTS.items():
        titled = re.findall(r"README(?:'s|:) “?([A-Z][\w-]*(?: [A-Z][\w-]*)*)", text)
        described = re.findall(r"README's ([\w -]+?) (?:section|reference)\b", text)
        for section in titled + described:
            assert section.lower() in readme, f"{name}: the README has no section {section!r}"


def test_every_docs_section_named_exists() -> None:
    named = 0
    for name, (text, _) in TEXTS.items():
        for doc_name, section in re.findall(r"docs/(\w+)\.md, “?([A-Z][^.,;:”)\n]*[^.,;:”)\n\s])", text):
            assert section.lower() in _sections(doc(f"{doc_name}.md")), f"{name}: {doc_name}.md has no {section!r}"
            named += 1
        for doc_name, slug in re.findall(r"(?<![(\w/])docs/(\w+)\.md#([a-z0-9-]+)", text):
            assert slug in _anchors(doc(f"{doc_name}.md")), f"{name}: docs/{doc_name}.md#{slug}: no such heading"
            named += 1
    assert named >= 5, "the patterns find the references"


# Paths into the project as prose and commands name them (generated folders excluded).
PROJECT_PATH = re.compile(
    r"(?<![\w./<-])((?:app|constructs|config|docs|tests|tools|images|imports|\.github|\.ci)/[\w./-]*\w)"
)


@pytest.mark.parametrize("name", [n for n in TEXTS if not n.endswith(".py")])
def test_every_project_file_named_exists(name: str) -> None:
    text, _ = TEXTS[name]
    for path in PROJECT_PATH.findall(text):
        assert (PROJECT_DIR / path).exists(), f"{name}: {path}: no such file or folder"


def test_the_values_examples_in_the_docs_are_accepted() -> None:
    """Every YAML block of the docs that is a values file (its keys are the model's) validates;
    what a comment in it offers as a value is tried too (docs/login.md once offered
    `http://host` as a GitLab's base_domain, which the synth refuses)."""
    import yaml

    from app.config import StackConfig
    from app.values import ConfigError, parse_config

    found = 0
    for path in DOC_FILES:
        for block in re.findall(r"^( *)```yaml\n(.*?)^\1```", path.read_text(encoding="utf-8"), flags=re.S | re.M):
            text = "\n".join(line[len(block[0]) :] for line in block[1].splitlines())
            data = yaml.safe_load(text)
            if not isinstance(data, dict) or not set(data) <= set(StackConfig.model_fields):
                continue
            parse_config(data, path.name)
            found += 1
            assert "http://host" not in text
    assert found >= 2
    with pytest.raises(ConfigError, match=r"sentry\.gitlab\.base_domain"):
        parse_config(
            {"sentry": {"gitlab": {"login_enabled": True, "application_id": "a", "base_domain": "http://git"}}}
        )


def test_the_benchmarks_dataset_size_is_the_measured_one_only() -> None:
    """The dataset's size is what tools/bench_backup.py measures and writes into its block; no
    other place types one (the Makefile, the script's own docstring and the prose said three
    different sizes)."""
    from tools import bench_backup

    size = re.compile(r"~?\b\d[\d.]* ?[GM]i?B\b")
    (bench_help,) = [line for line in MAKEFILE.splitlines() if line.startswith("bench:")]
    assert not size.search(bench_help), bench_help
    assert not size.search(bench_backup.__doc__ or ""), "tools/bench_backup.py's docstring"
    development = _prose(doc("development.md"))
    assert not size.search(development.split("### Backup and restore", 1)[1]), "the prose around the table"
    measured = block_of(doc("development.md"), *_bench("bench_backup")[::2])
    assert re.search(r"^dataset: database sentry, \d+ MiB", measured, re.M)


def _jsii_node_support() -> tuple[str, list[int]]:
    """When the pinned jsii ended Node 20's support, and the majors it supports: read from the
    runtime it bundles (the table its end-of-life banner prints)."""
    import datetime

    import jsii

    runtime = (Path(jsii.__file__).parent / "_embedded" / "jsii" / "bin__jsii-runtime.js").read_text()
    releases = dict(re.findall(r"new NodeRelease\((\d+),\{endOfLife:new Date\(\"([\d-]+)\"\)\}", runtime))
    months = int(re.search(r"DEFAULT_EXTENDED_SUPPORT_MONTHS=(\d+)", runtime)[1])
    end = datetime.date.fromisoformat(releases["20"])
    month = end.month - 1 + months
    end = end.replace(year=end.year + month // 12, month=month % 12 + 1)
    supported = sorted(int(m) for m, eol in releases.items() if eol > end.isoformat())
    return end.isoformat(), supported


def test_the_readme_and_setup_say_what_jsii_says_about_node() -> None:
    end, supported = _jsii_node_support()
    assert supported == [22, 24]
    prerequisites = README.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    plain = " ".join(prerequisites.split())
    assert f"Prefer Node.js 22 or 24: jsii, which cdk8s runs on, supports only those since {end}" in plain
    assert "Node.js 20+" in plain
    setup = (PROJECT_DIR / "tools" / "setup.sh").read_text()
    assert f"JSII_NODE20_END={end}\n" in setup
    assert "$node_major -ge 20 ]]" in setup, "setup.sh's minimum is the README's"
    assert 'JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20"' in (PROJECT_DIR / "main.py").read_text()


def test_every_procedure_a_refusal_names_is_a_heading_of_the_operations_guide() -> None:
    """Issue 19: every procedure named in a refusal is in the docs, under that name."""
    from app.procedures import PROCEDURES, anchor

    assert PROCEDURES
    for title in PROCEDURES.values():
        assert anchor(title) in _anchors(doc("operations.md")), title
