"""The harness of the testkit check: the registry of checks, the running testkit-serve process,
a raw OP_MSG client for what PyMongo will not send, and small assertion helpers.

Every check is written from MongoDB's documentation and mongod's behaviour, never from what
anymongo sends: its name says the mongod behaviour it expects.
"""

import itertools
import json
import socket
import ssl
import struct
import subprocess
import time

import bson
from bson import SON
from pymongo import MongoClient
from pymongo.errors import OperationFailure

CHECKS = []


def check(fn):
    """Registers a check: a function taking the Env; it passes unless it raises."""
    CHECKS.append(fn)
    return fn


class CheckFailed(AssertionError):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def expect_eq(got, want, what=""):
    if got != want:
        raise CheckFailed(f"{what}: expected {want!r}, got {got!r}")


def expect_code(fn, code, what=""):
    """Runs fn, which must fail with server error `code`; returns the error's details."""
    try:
        fn()
    except OperationFailure as e:
        if e.code != code:
            raise CheckFailed(f"{what}: expected code {code}, got {e.code} ({e.details})")
        return e.details or {}
    raise CheckFailed(f"{what}: expected error {code}, but it succeeded")


class Env:
    """The testkit-serve process and its configurations' connection strings."""

    def __init__(self, binary):
        self.proc = subprocess.Popen(
            [binary],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("testkit-serve printed nothing")
        self.uris = json.loads(line)
        self._clients = []
        self._names = itertools.count()

    def control(self, line):
        """Sends a control line (kill/revive/step_down/elect) and waits for its answer."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"testkit-serve: {line}: {answer}")

    def client(self, config, **kwargs):
        """A PyMongo client of configuration `config`, closed at the end of the run."""
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        kwargs.setdefault("connectTimeoutMS", 5000)
        if config == "tls":
            kwargs.setdefault("tlsCAFile", self.uris["tls_ca"])
        c = MongoClient(self.uris[config], **kwargs)
        self._clients.append(c)
        return c

    def hosts(self, config):
        """host:port of each member (or of the one server) of a configuration."""
        rest = self.uris[config].split("://", 1)[1]
        return rest.split("/", 1)[0].split(",")

    def fresh(self, client, prefix="c"):
        """A new, empty collection on `client`'s database `testkit_check`."""
        return client["testkit_check"][f"{prefix}{next(self._names)}"]

    def close(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
            self.proc.wait()


_request_ids = itertools.count(1)


class RawConnection:
    """A bare OP_MSG connection: sends exactly the command given, nothing added."""

    def __init__(self, host, tls_ca=None, timeout=10):
        h, p = host.rsplit(":", 1)
        sock = socket.create_connection((h, int(p)), timeout=timeout)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            sock = ctx.wrap_socket(sock, server_hostname=h)
        self.sock = sock

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        return buf

    def command(self, cmd, db="admin"):
        """Sends `cmd` (a SON, `$db` appended) as OP_MSG and returns the reply document."""
        body = SON(cmd)
        body["$db"] = db
        payload = struct.pack("<I", 0) + b"\x00" + bson.encode(body)
        rid = next(_request_ids)
        self.sock.sendall(struct.pack("<iiii", 16 + len(payload), rid, 0, 2013) + payload)
        length, _, response_to, opcode = struct.unpack("<iiii", self._recv_exact(16))
        rest = self._recv_exact(length - 16)
        if opcode != 2013 or response_to != rid:
            raise ConnectionError(f"unexpected reply opcode {opcode} to {response_to}")
        if rest[4] != 0:
            raise ConnectionError("reply's first section is not a body")
        return bson.decode(rest[5:])

    def close(self):
        self.sock.close()


def raw(host, cmd, db="admin", tls_ca=None):
    """One command over a fresh bare connection."""
    conn = RawConnection(host, tls_ca)
    try:
        return conn.command(cmd, db)
    finally:
        conn.close()


def primary_and_secondary(env, config):
    """(primary host, a secondary host) of a replica-set configuration, by asking each member."""
    primary, secondary = None, None
    for h in env.hosts(config):
        try:
            r = raw(h, SON([("hello", 1)]))
        except OSError:
            continue
        if r.get("isWritablePrimary"):
            primary = h
        elif r.get("secondary"):
            secondary = h
    return primary, secondary


def wait_until(what, cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise CheckFailed(f"timed out waiting for {what}")
        time.sleep(0.05)
