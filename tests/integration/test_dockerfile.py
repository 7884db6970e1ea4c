"""The Dockerfile builds and runs: its own steps replayed in a throwaway tree, no engine needed."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET

__all__ = ()

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
INSTALLERS = re.compile(r"\b(pip|uv|apt-get|apt|apk|gcc|make)\b.*\b(install|sync|add)\b")


@dataclass
class Stage:
    """One ``FROM`` block of the Dockerfile, as ordered instructions."""

    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """Arguments of every instruction with this keyword, in order."""
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        """Arguments of the last instruction with this keyword (the one Docker applies)."""
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Split a Dockerfile into global ``ARG`` defaults and stages (continuations joined)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(image=image, name=name))
        elif not stages and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def env_pairs(args: str, env: dict[str, str]) -> dict[str, str]:
    """``ENV A=1 B=$A`` as a mapping, expanding references to earlier values."""
    pairs = {}
    for token in shlex.split(args):
        key, _, value = token.partition("=")
        pairs[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
    return pairs


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the build context (last match wins).

    A pattern matches the path or one of its parent directories; ``**/`` matches at any depth.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        glob = pattern.removeprefix("!").rstrip("/")
        candidates = prefixes
        if glob.startswith("**/"):
            glob = glob.removeprefix("**/")
            candidates = parts
        if any(fnmatch.fnmatch(candidate, glob) for candidate in candidates):
            excluded = not pattern.startswith("!")
    return excluded


def dockerignore() -> list[str]:
    """The patterns of ``.dockerignore``."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


class Replay:
    """Runs a Dockerfile's stages in a directory standing in for the image's root filesystem."""

    def __init__(self, root: Path, image_paths: list[str]) -> None:
        self.root = root
        self.image_paths = sorted(image_paths, key=len, reverse=True)
        # The base image's interpreter: a bare virtual environment of this Python, with pip.
        self.system = root / "usr" / "local"
        subprocess.run([sys.executable, "-m", "venv", str(self.system)], check=True)
        # What a build host passes to a build: locale, certificates, proxies, package indexes.
        keep = (
            "HOME",
            "LANG",
            "PIP_",
            "SSL_CERT",
            "REQUESTS_CA",
            "TMPDIR",
            "UV_CACHE_DIR",
            "UV_INDEX",
            "UV_DEFAULT_INDEX",
            "UV_EXTRA_INDEX_URL",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
        )
        self.base_env = {k: v for k, v in os.environ.items() if k.startswith(keep)}
        self.base_env["PATH"] = f"{self.system / 'bin'}:/usr/bin:/bin"

    def host(self, text: str) -> str:
        """Rewrite absolute image paths in ``text`` to their place under the throwaway root."""
        for image_path in self.image_paths:
            text = text.replace(image_path, str(self.root) + image_path)
        return text

    def run_stage(self, stage: Stage, *, execute_run: bool) -> tuple[dict[str, str], Path]:
        """Apply ENV, WORKDIR, COPY and (optionally) RUN; returns the final env and workdir."""
        env = dict(self.base_env)
        workdir = self.root
        patterns = dockerignore()
        for keyword, args in stage.instructions:
            if keyword == "ENV":
                env.update({k: self.host(v) for k, v in env_pairs(args, env).items()})
            elif keyword == "WORKDIR":
                workdir = Path(self.host(args))
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                self.copy(args, workdir, patterns)
            elif keyword == "RUN" and execute_run:
                command = re.sub(r"--mount=\S+\s*", "", args)
                result = subprocess.run(
                    ["/bin/sh", "-c", self.host(command)],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert result.returncode == 0, f"RUN {args}\n{result.stdout}\n{result.stderr}"
        return env, workdir

    def copy(self, args: str, workdir: Path, patterns: list[str]) -> None:
        """``COPY`` from the build context (honouring .dockerignore) or from an earlier stage."""
        tokens = [t for t in args.split() if not t.startswith("--chown")]
        if tokens[0].startswith("--from="):
            src, dst = tokens[1:]
            assert src == dst, "the runtime stage must copy the built tree to the same path"
            return
        *sources, dst = tokens
        target = Path(self.host(dst)) if dst.startswith("/") else workdir / dst
        for source in sources:
            assert not ignored(source, patterns), f".dockerignore excludes {source}"
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    target,
                    ignore=lambda d, names: [
                        n for n in names if ignored(str((Path(d) / n).relative_to(ROOT)), patterns)
                    ],
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_state(path: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``path``."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in path.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def get_status(url: str) -> int:
    """HTTP status of a GET, 0 when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The parsed stages of the project's Dockerfile."""
    _, parsed = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    return parsed


@pytest.fixture(scope="module")
def built(
    stages: list[Stage], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Replay, dict[str, str], Path]:
    """The builder stage replayed and the runtime stage's environment and working directory."""
    builder, runtime = stages[0], stages[-1]
    image_paths = [*builder.all("WORKDIR"), *runtime.all("WORKDIR")]
    image_paths += [p for args in runtime.all("VOLUME") for p in json.loads(args)]
    replay = Replay(tmp_path_factory.mktemp("image"), image_paths)
    replay.run_stage(builder, execute_run=True)
    env, workdir = replay.run_stage(runtime, execute_run=False)
    env.update(
        {
            "LETHE_JWT_SECRET": TEST_JWT_SECRET,
            "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
            "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
            "LETHE_ARTIFACT_KEY": "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ=",  # /readyz needs it
            "LETHE_LOG_LEVEL": "WARNING",
        }
    )
    return replay, env, workdir


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_runtime_stage_is_slim_non_root_and_free_of_build_tools(stages: list[Stage]) -> None:
    global_args, _ = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    builder, runtime = stages[0], stages[-1]
    assert len(stages) >= 2, "the image must be built in a separate stage"
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", runtime.image), runtime.image
    assert runtime.image == builder.image == global_args["PYTHON_IMAGE"]
    user = runtime.last("USER").split(":")[0]
    assert user.isdigit(), "USER must be numeric so runAsNonRoot can verify it"
    assert int(user) >= 1000
    assert not [run for run in runtime.all("RUN") if INSTALLERS.search(run)], (
        "the runtime stage must not install anything"
    )
    copies = runtime.all("COPY")
    assert copies
    assert all(c.startswith(f"--from={builder.name}") for c in copies)
    assert json.loads(runtime.last("ENTRYPOINT")) == ["lethe"]
    assert "/healthz" in runtime.last("HEALTHCHECK")
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(runtime.all("ENV"))
    assert "uv.lock" in " ".join(builder.all("COPY"))
    assert any("--frozen" in run for run in builder.all("RUN"))


def test_dockerignore_keeps_caches_and_secrets_out() -> None:
    patterns = dockerignore()
    for kept in ("pyproject.toml", "uv.lock", "app/asgi.py", "migrations/env.py"):
        assert not ignored(kept, patterns), kept
    for dropped in (
        ".venv/bin/python",
        ".lethe/demo-secrets.json",
        "app/__pycache__/x.pyc",
        "tests/conftest.py",
        ".git/config",
    ):
        assert ignored(dropped, patterns), dropped


def test_built_tree_has_migrations_next_to_app(built: tuple[Replay, dict[str, str], Path]) -> None:
    replay, env, _ = built
    result = subprocess.run(["lethe", "--help"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "database" in result.stdout
    lethe = shutil.which("lethe", path=env["PATH"])
    assert lethe is not None
    assert lethe.startswith(str(replay.root)), "lethe must come from the image's environment"
    project = Path(lethe).resolve().parents[2]
    assert (project / "app" / "asgi.py").is_file()
    assert (project / "migrations" / "env.py").is_file()
    assert not (project / ".venv" / "bin" / "pytest").exists(), "dev tools leaked into the image"


def test_image_migrates_and_serves_probes_without_writing_outside_its_volume(
    stages: list[Stage], built: tuple[Replay, dict[str, str], Path]
) -> None:
    replay, env, workdir = built
    runtime = stages[-1]
    image_tree = Path(replay.host(stages[0].last("WORKDIR")))
    before = tree_state(image_tree)

    upgrade = subprocess.run(
        ["lethe", "database", "upgrade", "--no-prompt"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr

    port = free_port()
    command = [*json.loads(runtime.last("ENTRYPOINT")), *json.loads(runtime.last("CMD"))]
    loopback = {"0.0.0.0": "127.0.0.1", "8000": str(port)}  # noqa: S104 (replaced, not bound)
    command = [loopback.get(arg, arg) for arg in command]
    log = replay.root / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while get_status(f"http://127.0.0.1:{port}/healthz") != 200:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "lethe did not answer /healthz"
            time.sleep(0.3)
        assert get_status(f"http://127.0.0.1:{port}/readyz") == 200
        assert get_status(f"http://127.0.0.1:{port}/metrics") == 200
        healthcheck = json.loads(runtime.last("HEALTHCHECK").split(" CMD ", 1)[1])
        probe = subprocess.run(
            [a.replace(":8000/", f":{port}/") for a in healthcheck],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert tree_state(image_tree) == before, "the process wrote into the image's own tree"
    volume = Path(replay.host(json.loads(runtime.last("VOLUME"))[0]))
    assert workdir == volume
    assert (volume / ".lethe" / "lethe.db").is_file(), "the embedded store belongs on the volume"
