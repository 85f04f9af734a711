"""The processes bench/compare and bench/growth measure: a throwaway
PostgreSQL cluster (scripts/pg-cluster), idemd, idem-bench and redis-server,
each started in a temporary directory and stopped by close().

Used by /usr/bin/python3 (Debian's), standard library only.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_CLUSTER = os.path.join(SOURCE_DIR, "scripts", "pg-cluster")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message):
    print(message, flush=True)


def wait_listening(address, process, name, timeout_s=30):
    """Waits until `address` accepts connections: a loopback TCP port, or
    the path of a unix socket."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode} at start-up")
        try:
            if isinstance(address, str):
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(0.5)
                    s.connect(address)
            else:
                with socket.create_connection(("127.0.0.1", address), timeout=0.5):
                    pass
            return
        except OSError:
            time.sleep(0.1)
    where = address if isinstance(address, str) else f"127.0.0.1:{address}"
    raise SystemExit(f"{name} did not listen on {where} within {timeout_s} s")


def stop_process(process, timeout_s=15):
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def memory_kb(pid, field):
    """VmRSS or VmHWM of a live process in kB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Postgres:
    """A PostgreSQL 15 cluster in a temporary directory, with the server's
    defaults (fsync and synchronous_commit on) except max_connections,
    raised so pgbench can open one connection per caller. Its URLs name its
    unix socket, or with tcp=True a loopback TCP port.
    """

    def __init__(self, workdir, max_connections=300, tcp=False):
        self.dir = os.path.join(workdir, "pg")
        self.log_path = os.path.join(self.dir, "postgres.log")
        os.makedirs(self.dir)
        if os.getuid() == 0:  # pg-cluster runs PostgreSQL as postgres
            shutil.chown(workdir, "postgres")
        self._cluster("start", *([str(free_port())] if tcp else []))
        self.psql("postgres", f"ALTER SYSTEM SET max_connections = {max_connections}")
        self._cluster("stop")
        self._cluster("start")

    def _cluster(self, *args):
        return subprocess.run([PG_CLUSTER, args[0], self.dir, *args[1:]], check=True,
                              capture_output=True, text=True).stdout.strip()

    def url(self, db):
        return self._cluster("url", db)

    def psql(self, db, sql):
        """Runs SQL, returns the rows as lists of strings."""
        out = subprocess.run(["psql", "-qtAX", "-v", "ON_ERROR_STOP=1", "-F", "\t",
                              self.url(db), "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def create_database(self, db, idemctl):
        self.psql("postgres", f"CREATE DATABASE {db}")
        subprocess.run([idemctl, "migrate", f"--postgres={self.url(db)}"], check=True,
                       capture_output=True)

    def settings(self, names):
        quoted = ", ".join(f"'{n}'" for n in names)
        rows = self.psql("postgres", f"SELECT name, setting, coalesce(unit, '') "
                                     f"FROM pg_settings WHERE name IN ({quoted}) ORDER BY name")
        return {name: setting + (f" ({unit})" if unit else "") for name, setting, unit in rows}

    def close(self):
        subprocess.run([PG_CLUSTER, "stop", self.dir], capture_output=True)


class Idemd:
    """idemd from the build directory, on a free loopback port, or with
    unix_socket=True on a unix socket in workdir. `address` is its gRPC
    target."""

    def __init__(self, binary, url, workdir, extra_args=(), log_level=1, env=None,
                 unix_socket=False):
        self.port = free_port()
        if unix_socket:
            socket_path = os.path.join(workdir, f"idemd-{self.port}.sock")
            self.address = f"unix:{socket_path}"
        else:
            self.address = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, f"idemd-{self.port}.log")
        self._log = open(self.log_path, "w")
        env = dict(os.environ, GLOG_minloglevel=str(log_level), GLOG_logtostderr="1",
                   **(env or {}))
        self.process = subprocess.Popen(
            [binary, f"--postgres={url}", f"--listen={self.address}", *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_listening(socket_path if unix_socket else self.port, self.process, "idemd")

    @property
    def pid(self):
        return self.process.pid

    def close(self):
        stop_process(self.process)
        self._log.close()


def run_idem_bench(binary, target, mode, concurrency, duration_s, warmup_s, workdir,
                   extra_args=(), sample_pid=None, on_tick=None):
    """Runs idem-bench once; returns its JSON report plus max_rss_kb, the
    largest VmRSS of sample_pid seen while it ran (sampled every 0.2 s, when
    on_tick() is called too)."""
    json_path = os.path.join(workdir, f"idem-bench-{mode}-{concurrency}-{time.time_ns()}.json")
    args = [binary, f"--target={target}", f"--mode={mode}", f"--concurrency={concurrency}",
            f"--duration={duration_s}s", f"--warmup={warmup_s}s", f"--json={json_path}",
            *extra_args]
    bench = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    max_rss = 0
    while bench.poll() is None:
        if sample_pid is not None:
            max_rss = max(max_rss, memory_kb(sample_pid, "VmRSS"))
        if on_tick is not None:
            on_tick()
        time.sleep(0.2)
    stdout, stderr = bench.communicate()
    if not os.path.exists(json_path):
        raise SystemExit(f"idem-bench {mode} c={concurrency} failed (exit {bench.returncode}):\n"
                         f"{stdout}{stderr}")
    with open(json_path) as f:
        report = json.load(f)
    report["exit_code"] = bench.returncode
    report["max_rss_kb"] = max_rss
    return report


class Redis:
    """redis-server with its data in its own directory, on a free loopback
    port or with unix_socket=True on a unix socket there; `config` is extra
    configuration directives. `connect_args` are the redis-cli and
    redis-benchmark arguments that reach it."""

    def __init__(self, workdir, name, config, unix_socket=False):
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"redis-{name}-", dir=workdir)
        if unix_socket:
            socket_path = os.path.join(self.dir, "redis.sock")
            listen = ["--port", "0", "--unixsocket", socket_path, "--unixsocketperm", "700"]
            self.connect_args = ["-s", socket_path]
        else:
            listen = ["--port", str(self.port), "--bind", "127.0.0.1"]
            self.connect_args = ["-h", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            ["redis-server", *listen,
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log"),
             "--daemonize", "no", *config],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_listening(socket_path if unix_socket else self.port, self.process,
                       f"redis-server ({name})")

    def cli(self, *args, stdin=None):
        return subprocess.run(["redis-cli", *self.connect_args, *args],
                              input=stdin, check=True, capture_output=True, text=True).stdout

    def close(self):
        stop_process(self.process)


def exit_on_sigterm():
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks stop what was started."""
    import signal

    def handler(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, handler)
