"""Authentication (SCRAM-SHA-1, SCRAM-SHA-256, PLAIN), TLS and compression, as a MongoDB client
meets them on mongod."""

from bson import SON
from pymongo import MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from harness import check, expect, expect_code, expect_eq, raw


def _auth_client(env, user, password, **kw):
    return env.client("auth", username=user, password=password, **kw)


@check
def scram_sha256_authentication_succeeds(env):
    c = _auth_client(env, "alice", "alice-pw", authSource="admin", authMechanism="SCRAM-SHA-256")
    c["testkit_check"]["auth"].insert_one({"x": 1})
    status = c.admin.command("ping")
    expect_eq(status.get("ok"), 1.0, "ping after auth")


@check
def scram_sha1_authentication_succeeds(env):
    c = _auth_client(env, "sha1only", "sha1-pw", authSource="admin", authMechanism="SCRAM-SHA-1")
    expect_eq(c["testkit_check"]["auth"].count_documents({}) >= 0, True, "count after auth")


@check
def default_mechanism_negotiates_scram_sha256(env):
    c = _auth_client(env, "sha256only", "sha256-pw", authSource="admin")
    c["testkit_check"]["auth"].find_one()


@check
def plain_authentication_against_external_succeeds(env):
    c = _auth_client(env, "plainuser", "plain-pw", authSource="$external", authMechanism="PLAIN")
    c["testkit_check"]["auth"].find_one()


@check
def wrong_password_is_authentication_failed_18(env):
    c = _auth_client(env, "alice", "not-the-password", authSource="admin", authMechanism="SCRAM-SHA-256")
    try:
        c.admin.command("ping")
    except OperationFailure as e:
        expect_eq(e.code, 18, "code")
        expect_eq(e.details.get("errmsg"), "Authentication failed.", "errmsg")
    else:
        raise AssertionError("a wrong password authenticated")


@check
def unknown_user_is_authentication_failed_18(env):
    c = _auth_client(env, "mallory", "x", authSource="admin", authMechanism="SCRAM-SHA-1")
    try:
        c.admin.command("ping")
    except OperationFailure as e:
        expect_eq(e.code, 18, "code")
    else:
        raise AssertionError("an unknown user authenticated")


@check
def unauthenticated_commands_are_unauthorized_13(env):
    c = env.client("auth")
    expect_code(lambda: c["testkit_check"]["auth"].find_one(), 13, "find without auth")
    expect_eq(c.admin.command("ping").get("ok"), 1.0, "ping needs no auth")
    expect_eq(c.admin.command("hello").get("isWritablePrimary"), True, "hello needs no auth")


@check
def hello_lists_the_users_sasl_mechanisms(env):
    host = env.hosts("auth")[0]
    r = raw(host, SON([("hello", 1), ("saslSupportedMechs", "admin.alice")]))
    expect_eq(sorted(r.get("saslSupportedMechs", [])), ["SCRAM-SHA-1", "SCRAM-SHA-256"], "alice")
    r = raw(host, SON([("hello", 1), ("saslSupportedMechs", "admin.sha256only")]))
    expect_eq(r.get("saslSupportedMechs"), ["SCRAM-SHA-256"], "sha256only")
    r = raw(host, SON([("hello", 1), ("saslSupportedMechs", "admin.nobody")]))
    expect("saslSupportedMechs" not in r, "an unknown user gets no list")


@check
def speculative_authentication_is_answered_in_hello(env):
    # PyMongo authenticates speculatively in its handshake; a second connection to the same
    # server authenticates again. Both must work.
    c = _auth_client(env, "alice", "alice-pw", authSource="admin", maxPoolSize=2)
    for _ in range(3):
        c.admin.command("ping")


@check
def tls_connection_with_the_ca_succeeds(env):
    c = env.client("tls", tls=True)
    expect_eq(c.admin.command("ping").get("ok"), 1.0, "ping over TLS")
    c["testkit_check"]["tls"].insert_one({"x": 1})


@check
def plain_connection_to_a_tls_server_fails(env):
    c = MongoClient(env.uris["tls"].split("?")[0] + "?directConnection=true", serverSelectionTimeoutMS=1000)
    try:
        c.admin.command("ping")
    except ServerSelectionTimeoutError:
        pass
    else:
        raise AssertionError("a plain connection reached a TLS server")
    finally:
        c.close()


@check
def tls_without_trusting_the_ca_fails(env):
    c = MongoClient(env.uris["tls"].split("?")[0] + "?directConnection=true&tls=true", serverSelectionTimeoutMS=1000)
    try:
        c.admin.command("ping")
    except ServerSelectionTimeoutError:
        pass
    else:
        raise AssertionError("an untrusted certificate was accepted")
    finally:
        c.close()


def _negotiated(env, offered):
    r = raw(env.hosts("compression")[0], SON([("hello", 1), ("compression", offered)]))
    return r.get("compression")


@check
def hello_answers_the_compressors_both_sides_know(env):
    expect_eq(_negotiated(env, ["zstd", "zlib"]), ["zstd", "zlib"], "both known")
    expect_eq(_negotiated(env, ["lz4", "snappy"]), ["snappy"], "one unknown")
    r = raw(env.hosts("plain")[0], SON([("hello", 1), ("compression", ["zlib"])]))
    expect(not r.get("compression"), "a server without compressors answers none")


def _compressed_crud(env, name):
    c = env.client("compression", compressors=name)
    coll = env.fresh(c, name)
    coll.insert_many([{"_id": i, "pad": "x" * 200} for i in range(50)])
    expect_eq(len(list(coll.find())), 50, f"documents over {name}")


@check
def zlib_compressed_traffic_round_trips(env):
    _compressed_crud(env, "zlib")


@check
def snappy_compressed_traffic_round_trips(env):
    _compressed_crud(env, "snappy")


@check
def zstd_compressed_traffic_round_trips(env):
    _compressed_crud(env, "zstd")
