"""docker-compose.yml and the Dockerfile keep their promises (no Docker engine here: their text is checked)."""

from __future__ import annotations

import platform
import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
APP_SERVICES = ("migrate", "web", "worker")


def test_every_service_has_a_healthcheck_and_a_restart_policy() -> None:
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in ("always", "unless-stopped") or str(
            service.get("restart")
        ).startswith("on-failure"), f"{name} has no restart policy"


def test_migrations_run_once_before_web_and_workers() -> None:
    assert SERVICES["migrate"]["command"] == ["migrate"]
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        assert SERVICES[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_the_image_is_built_once_and_installs_nothing_at_start() -> None:
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service["build"] == "." and service["image"] == "switchboard:local"
        command = " ".join(service.get("command", []))
        assert "pip" not in command and "install" not in command, name
        # Nothing of the host checkout inside: scaled workers share no build folder with it.
        assert not service.get("volumes"), f"{name} mounts {service.get('volumes')}"


def test_workers_scale_out() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == ["worker"]


def test_the_secret_key_is_required_with_no_default() -> None:
    for name in APP_SERVICES:
        value = SERVICES[name]["environment"]["SWITCHBOARD_SECRET_KEY"]
        assert re.fullmatch(r"\$\{SWITCHBOARD_SECRET_KEY:\?[^}]+\}", value), value
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_dockerfile_is_multi_stage_slim_non_root_and_installs_from_the_lock() -> None:
    stages = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert len(stages) >= 2
    assert "slim" in re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE, flags=re.MULTILINE).group(1)
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER\s+(\S+)", final, flags=re.MULTILINE)
    assert user and user.group(1) not in ("root", "0")
    assert "pip install --no-deps --requirement /tmp/requirements.lock" in DOCKERFILE
    assert "pip install" not in final  # the final stage only copies what the build stage made
    entry = re.search(r"^ENTRYPOINT\s+(.+)$", final, flags=re.MULTILINE).group(1)
    assert "pip" not in entry


def test_the_lock_files_pin_every_dependency() -> None:
    for name in ("requirements.lock", "requirements-dev.lock"):
        lines = [
            line.strip()
            for line in (ROOT / name).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert lines, name
        for line in lines:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-+]+", line), (
                f"{name}: {line!r} is not pinned"
            )
    runtime = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^httpx==0\.28\.", runtime, flags=re.MULTILINE)
    assert "pytest==" not in runtime and "pgserver==" not in runtime  # the image carries no test tools


def test_make_install_uses_the_lock_and_make_lock_rewrites_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    install = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"pip install .*--no-deps.* -r \$\(DEV_LOCK\)", install), install
    assert "--no-deps" in install.split("-e .", 1)[0].rsplit("\n", 1)[-1]  # the editable install too
    assert "\nlock:" in makefile and "pip-compile" in makefile


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the packaged model's distributions declare but we never load, so no lock pins them and every
# install is `pip install --no-deps` of a lock (Makefile's MODEL_UNUSED): wordllama's code is never
# imported (app/services/ai/embedding.py reads only its data files) and tokenizers needs huggingface-hub
# only to download tokenizers. safetensors stays in the dev lock: a test checks our reader against it.
LEFT_OUT = {("tokenizers", "huggingface-hub"), ("wordllama", "requests"), ("wordllama", "toml")}
LOCKS = {
    "requirements.lock": (
        PYPROJECT["project"]["dependencies"],
        LEFT_OUT | {("wordllama", "safetensors")},
    ),
    "requirements-dev.lock": (
        [
            *PYPROJECT["project"]["dependencies"],
            *(r for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra),
        ],
        LEFT_OUT,
    ),
}


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            package, version = line.split("==")
            pins[canonicalize_name(package)] = version
    return pins


# The locks are made on one interpreter, but installed on whatever Python 3.11+ the machine has (Debian 12's
# python3 is 3.11.2, which needs redis's async-timeout): a requirement counts if any of these needs it.
PYTHONS = [
    {"python_version": ".".join(v.split(".")[:2]), "python_full_version": v}
    for v in ("3.11.0", "3.11.2", "3.12.0", "3.13.0", platform.python_version())
]


def _unmet(lock: str) -> list[str]:
    """Every requirement (of pyproject's roots, then of each locked package, from its installed
    metadata) that the lock does not pin or pins at a version that does not satisfy it."""
    roots, left_out = LOCKS[lock]
    pins = _pins(lock)
    queue = [("switchboard", Requirement(text)) for text in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    unmet = []
    while queue:
        parent, req = queue.pop()
        name = canonicalize_name(req.name)
        if (parent, name) in left_out:
            continue
        if name not in pins:
            unmet.append(f"{parent} requires {req}, which {lock} does not pin")
            continue
        if not req.specifier.contains(pins[name], prereleases=True):
            unmet.append(f"{parent} requires {req}, but {lock} pins {name}=={pins[name]}")
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        installed = metadata.distribution(name)
        assert installed.version == pins[name], f"{name} {installed.version} is installed: run make install"
        for text in installed.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e, **python}) for e in {"", *req.extras} for python in PYTHONS
            ):
                queue.append((name, sub))
    return unmet


def test_each_lock_pins_everything_its_packages_need_as_installs_skip_pip_resolution() -> None:
    for lock in LOCKS:
        assert _unmet(lock) == [], lock


def test_the_models_unused_dependencies_stay_out_of_the_locks() -> None:
    for lock, (_, left_out) in LOCKS.items():
        pins = _pins(lock)
        for left in {child for _, child in left_out} | {"hf-xet", "fsspec", "filelock", "tqdm"}:
            assert left not in pins, f"{lock} pins {left}: the Makefile's MODEL_UNUSED should leave it out"
    makefile = (ROOT / "Makefile").read_text()
    for _, child in LEFT_OUT:
        assert child in makefile.split("MODEL_UNUSED :=", 1)[1].split("\n", 1)[0]
