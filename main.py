"""Synthesize the Sentry stack to plain Kubernetes YAML in dist/.

Used by the cdk8s CLI (`make synth-cli`, see cdk8s.yaml) and directly as `python main.py`.
The values file is chosen with `--config FILE` or SENTRY_K8S_CONFIG
(default: config/minikube.yaml). Output goes to a temporary folder first and
replaces dist/ only when everything succeeded, so bad input never leaves a
half-written or empty dist/ behind.

Started by a Python that lacks the project's packages (a plain `python main.py`
with no venv active), it runs itself again with the project's .venv/bin/python,
or, without a venv, says to run `make setup`.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import StackConfig

# jsii prints a large end-of-life banner on Node 20 (which the build machines run: see the
# README's Prerequisites); the variable has no effect on other Node versions.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

PROJECT_DIR = Path(__file__).resolve().parent
# Extra arguments from the environment: the way `make synth-cli` passes them, as the
# cdk8s CLI runs this app with a fixed command line (cdk8s.yaml).
ARGS_ENV = "SENTRY_K8S_SYNTH_ARGS"
DEFAULT_CONFIG = PROJECT_DIR / "config" / "minikube.yaml"
CONFIG_ENV = "SENTRY_K8S_CONFIG"
VENV_DIR = PROJECT_DIR / ".venv"
# What `import cdk8s` and the constructs need; checked without importing (that starts node).
REQUIRED_MODULES = ("cdk8s", "cdk8s_plus_27", "pydantic", "yaml")


def _missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def _use_project_venv(argv: list[str]) -> None:
    """Re-run under the project's venv when this interpreter lacks the packages.

    The README says `python main.py`; without this, that fails with ModuleNotFoundError
    unless the venv happens to be active. Never re-runs from inside the venv itself, so it
    cannot loop, and it only ever picks the project's own .venv.
    """
    missing = _missing_modules()
    if not missing:
        return
    venv_python = VENV_DIR / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == VENV_DIR.resolve()
    if venv_python.exists() and not in_venv:
        os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *argv])
    where = f"{venv_python} lacks them too" if venv_python.exists() else f"there is no {VENV_DIR}"
    print(
        f"error: {sys.executable} lacks {', '.join(missing)}, and {where}.\n"
        "Run `make setup` (it creates .venv with the pinned packages), then `python main.py` "
        "or `.venv/bin/python main.py`.",
        file=sys.stderr,
    )
    sys.exit(2)


def _arguments(argv: list[str]) -> argparse.Namespace:
    # Light (no node, no pydantic): `--help` and argument errors still answer at once.
    from app.procedures import CONFIRMATIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        help="values file (default: $SENTRY_K8S_CONFIG or config/minikube.yaml)",
    )
    parser.add_argument(
        "--outdir",
        type=Path,
        help="output folder (default: $CDK8S_OUTDIR or dist/)",
    )
    parser.add_argument("--quiet", action="store_true", help="print no summary")
    parser.add_argument(
        "--allow-apply-conflicts",
        action="store_true",
        help="write dist/ even when `kubectl apply` could not apply it over what was applied "
        "(you will follow the printed procedure)",
    )
    parser.add_argument(
        "--confirm",
        action="append",
        default=[],
        choices=sorted(CONFIRMATIONS),
        metavar="WHAT",
        help="you followed the procedure a refusal named, around this apply: "
        + ", ".join(sorted(CONFIRMATIONS))
        + " (repeat for several)",
    )
    args = parser.parse_args(argv)
    # What the summary says: the values file as given, and where it came from when not given
    # (`make synth config=...` in lower case passes nothing, and the default is used).
    if args.config is not None:
        args.values_file = str(args.config)
    elif os.environ.get(CONFIG_ENV):
        args.config = Path(os.environ[CONFIG_ENV])
        args.values_file = f"{args.config} (from {CONFIG_ENV})"
    else:
        args.config = DEFAULT_CONFIG
        args.values_file = f"{_shown(DEFAULT_CONFIG)} (the default: no --config, CONFIG= or {CONFIG_ENV})"
    args.shown_outdir = str(args.outdir) if args.outdir is not None else None
    if args.outdir is None:
        args.outdir = Path(os.environ.get("CDK8S_OUTDIR") or PROJECT_DIR / "dist")
        args.shown_outdir = _shown(args.outdir.resolve())
    return args


def _shown(path: Path) -> str:
    """A path the synth chose, as short as it is clear: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _replace_dir(new: Path, target: Path) -> None:
    """Swap `new` into place of `target` with renames, so `target` is never half-written."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    moved = False
    if target.exists():
        target.rename(old)
        moved = True
    try:
        new.rename(target)
    except OSError:
        if moved:
            old.rename(target)  # the previous output back where it was
        raise
    shutil.rmtree(old, ignore_errors=True)


# Why the output folder cannot be written, by errno: what the user can do about it.
_WRITE_HINTS = {
    errno.EBUSY: "it is a mount point (or in use as one), and the synth replaces the output folder by "
    "renaming it; give --outdir a folder inside it",
    errno.EPERM: "the folder or its parent may not be changed (immutable: lsattr -d shows an i; "
    "or a file system that refuses it); give --outdir another folder",
    errno.EACCES: "no permission to write there; give --outdir a folder you may write",
    errno.EROFS: "the file system is read-only; give --outdir a folder elsewhere",
    errno.ENOENT: "no folder can be made there; give --outdir a folder elsewhere",
    errno.ENOTDIR: "a part of the path is a file; give --outdir a folder elsewhere",
}


def _cannot_write(outdir: Path, exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, "")
    hint = _WRITE_HINTS.get(exc.errno or 0, "give --outdir a folder you may write")
    return f"cannot write the output folder {outdir}: {exc.strerror} ({code}) at {exc.filename}: {hint}"


def _refuse(message: str, outdir: Path) -> int:
    """Exit 2 with the reason, and say truthfully what became of the output folder."""
    print(f"error: {message}", file=sys.stderr)
    if outdir.exists():
        print(f"{outdir.name}{'/' if outdir.is_dir() else ''} was left unchanged.", file=sys.stderr)
    elif "CDK8S_OUTDIR" in os.environ:
        # The cdk8s CLI sets CDK8S_OUTDIR, and deletes that folder before it runs the app.
        print(
            f"{outdir.name}/ is gone: the cdk8s CLI (make synth-cli) removed it before running the app. Fix the "
            "values and synthesize again; `make synth` keeps the previous dist/ on errors.",
            file=sys.stderr,
        )
    else:
        print(f"nothing was written to {outdir.name}/.", file=sys.stderr)
    return 2


def _rerun(args: argparse.Namespace, extra: str) -> str:
    """How to synthesize again with `extra`, through make and directly."""
    config = args.config
    return f"`make synth CONFIG={config} ARGS='{extra}'` (or `.venv/bin/python main.py --config {config} {extra}`)"


def _review(args: argparse.Namespace, config: StackConfig, new: Path, previous: list[dict], context: dict):
    """What the synth says about the new output (app/day2.py): refusals, warnings, the prune plan."""
    from app.day2 import review
    from app.summary import load_objects

    return review(
        config,
        load_objects(new),
        record=context["record"],
        others=context["others"],
        previous=previous,
        previous_name=f"{args.outdir.name}/",
        secret_values=context["secret_values"],
        confirmations=args.confirm,
    )


def _problem(args: argparse.Namespace, config: StackConfig, new: Path, result) -> str | None:
    """Why the new output must not replace the previous one, if it must not: a change that
    `kubectl apply` cannot make to what was applied, a day-2 hazard that needs its procedure,
    or requests beyond the capacity target."""
    from app.capacity import capacity_problem
    from app.summary import load_objects

    problems = []
    if result.conflicts and result.binding and not args.allow_apply_conflicts:
        listed = "\n".join(f"  - {c}" for c in result.conflicts)
        problems.append(
            f"this output cannot be applied over {result.base}:\n{listed}\n"
            "Change the values back, or follow the procedure above and synthesize again with "
            f"--allow-apply-conflicts: {_rerun(args, '--allow-apply-conflicts')}."
        )
    if result.refusals:
        listed = "\n".join(f"  - {f.render()}" for f in result.refusals)
        tokens = " ".join(f"--confirm {t}" for t in sorted({f.confirm for f in result.refusals if f.confirm}))
        again = f"Then pass the flags: {_rerun(args, tokens)}." if tokens else ""
        against = f" (against {result.base})" if result.base else ""
        problems.append(f"this change needs a procedure first{against}:\n{listed}\n{again}".rstrip())
    if problems:
        return "\n".join(problems)
    problem = capacity_problem(config, load_objects(new))
    if problem and config.capacity.on_exceed == "warn":
        print(f"warning: {problem}", file=sys.stderr)
        return None
    return problem


def _report(args: argparse.Namespace, result) -> None:
    """Warnings and the prune plan, for a change that goes ahead."""
    if result.conflicts and not result.binding:
        listed = "\n".join(f"  - {c}" for c in result.conflicts)
        print(
            f"warning: no apply of this stack is recorded (make apply records one), so the output was compared "
            f"with {result.base}, which may never have been applied. If you applied it with plain kubectl, "
            f"`kubectl apply` would refuse:\n{listed}",
            file=sys.stderr,
        )
    elif result.conflicts:
        print(
            "warning: --allow-apply-conflicts: written although `kubectl apply` refuses these changes until "
            "their procedure is done:\n" + "\n".join(f"  - {c}" for c in result.conflicts),
            file=sys.stderr,
        )
    if result.warnings and not result.binding and result.base:
        print(
            f"warning: compared with {result.base} (no apply recorded); if that was applied by hand, mind:",
            file=sys.stderr,
        )
    for finding in result.warnings:
        print(f"warning: {finding.render()}", file=sys.stderr)
    for token in sorted(set(args.confirm) - result.confirmed):
        print(f"warning: --confirm {token}: nothing in this change needs it", file=sys.stderr)
    if result.plan is not None:
        for line in result.plan.lines():
            print(line, file=sys.stderr)


def _stack_context(config: StackConfig, outdir: Path) -> tuple[dict, list[dict]]:
    """The apply record of this stack and of the others in the state folder, and the previous
    output when it is this stack's."""
    from app.state import all_records, load_record, stack_of, state_dir
    from app.summary import load_objects

    folder = state_dir(PROJECT_DIR)
    record = load_record(folder, config.namespace, config.release)
    others = [r for r in all_records(folder) if (r.namespace, r.release) != (config.namespace, config.release)]
    previous = load_objects(outdir) if outdir.is_dir() else []
    if stack_of(previous) != (config.namespace, config.release):
        previous = []
    return {"record": record, "others": others, "folder": folder, "secret_values": {}}, previous


def _applied_secret_keys(config: StackConfig, context: dict, previous: list[dict], outdir: Path) -> dict[str, str]:
    """The secret keys the stack already has: a lost secrets file must not make new ones.

    Once the stack was applied, its servers have every password that can be generated, in
    the generated Secret or in the user's own (secrets.existing_secret, turned off again):
    none may be invented. Without a record, the previous dist/'s Secret says which it has."""
    from app.secrets_store import ALL_KEYS
    from app.state import secret_values

    name = f"{config.release}-secrets"
    record = context["record"]
    if record is not None:
        where = f"it was applied (the apply record {record.path})"
        return {key.key: where for key in ALL_KEYS if key.generated_length}
    for obj in previous:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == name:
            return dict.fromkeys(secret_values(obj), f"{outdir.name}/10-secrets.k8s.yaml has them")
    return {}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments([*shlex.split(os.environ.get(ARGS_ENV, "")), *argv])
    # Imported here so that `--help` and argument errors answer without starting node.
    from app.secrets_store import (
        SecretsError,
        default_secrets_file,
        explicit_secrets_file,
        resolve_secrets,
        unknown_variables_warning,
    )
    from app.state import STATE_DIR_ENV, StateError, SynthBase
    from app.values import ConfigError, load_values

    outdir = args.outdir.resolve()
    if outdir.exists() and not outdir.is_dir():
        return _refuse(f"the output folder {args.outdir} is a file: give --outdir a folder (replaced whole)", outdir)
    try:
        values = load_values(args.config)
        config = values.config
        context, previous = _stack_context(config, outdir)
        secrets_path = explicit_secrets_file(os.environ) or default_secrets_file(config, PROJECT_DIR)
        applied = {} if "new-secrets" in args.confirm else _applied_secret_keys(config, context, previous, outdir)
        from app.day2 import secret_name

        record = context["record"]
        read = (secret_name(record.objects) if record is not None else "") or f"{config.release}-secrets"
        recovery = (
            "Recover them (docs/operations.md, “Recovering lost secrets”): from the cluster, "
            f"`kubectl -n {config.namespace} get secret {read} -o json | "
            f".venv/bin/python tools/recover_secrets.py --to {secrets_path}`"
            + (
                f", or from {outdir.name}/: `.venv/bin/python tools/recover_secrets.py --to {secrets_path} "
                f"{outdir.name}/10-secrets.k8s.yaml`"
                if previous
                else ""
            )
            + f". If this stack was never applied, {_rerun(args, '--confirm new-secrets')} makes new ones."
        )
        resolved = resolve_secrets(config, secrets_path, applied=applied, recovery=recovery)
        context["secret_values"] = resolved.values
    except (ConfigError, SecretsError, StateError) as exc:
        return _refuse(str(exc), outdir)
    for warning in values.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if unknown := unknown_variables_warning(os.environ, also_known=(CONFIG_ENV, ARGS_ENV, STATE_DIR_ENV)):
        print(f"warning: {unknown}", file=sys.stderr)

    import cdk8s

    from app.stack import SentryStack
    from app.summary import summary
    from constructs.checks import ConfigurationConflict, PropsError

    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.new-", dir=outdir.parent))
    except OSError as exc:  # /proc/..., a read-only or immutable parent
        return _refuse(_cannot_write(outdir, exc), outdir)
    staging.chmod(0o755)  # mkdtemp makes it private; dist/ holds no secret-only files
    try:
        app = cdk8s.App(outdir=str(staging))
        try:
            SentryStack(app, config, resolved.values)
        except (ConfigurationConflict, PropsError) as exc:  # what only the constructs' own checks see
            shutil.rmtree(staging, ignore_errors=True)
            return _refuse(f"{args.config}: {exc}", outdir)
        app.synth()
        result = _review(args, config, staging, previous, context)
        problem = _problem(args, config, staging, result)
        if problem:
            shutil.rmtree(staging, ignore_errors=True)
            return _refuse(problem, outdir)
        record = context["record"]
        SynthBase(
            stack=f"{config.namespace}/{config.release}",
            record=record.digest if record is not None else None,
            confirmed=tuple(sorted(set(args.confirm))),
            allow_apply_conflicts=args.allow_apply_conflicts,
            config=str(args.config),
        ).write(staging)
        try:
            _replace_dir(staging, outdir)
        except OSError as exc:  # a mount point (EBUSY), an immutable folder (EPERM), ...
            shutil.rmtree(staging, ignore_errors=True)
            return _refuse(_cannot_write(outdir, exc), outdir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _report(args, result)
    if not args.quiet:
        print(summary(config, outdir, values_file=args.values_file, shown_outdir=args.shown_outdir), file=sys.stderr)
    return 0


if __name__ == "__main__":
    _use_project_venv(sys.argv[1:])
    sys.exit(main())
