"""The six findings of issue #19: where the testkit answered differently from mongod."""

import base64
import os

from bson import SON, Binary, Int64
from pymongo.errors import OperationFailure

from harness import (
    check,
    expect,
    expect_code,
    expect_eq,
    primary_and_secondary,
    raw,
)


# Finding 1. mongod (initializeOperationSessionInfo): a txnNumber on a node that is not a
# replica-set member is IllegalOperation (20), "Transaction numbers are only allowed on a
# replica set member or mongos" (jstests/noPassthrough/retryable_writes_standalone_api.js).
@check
def standalone_refuses_txn_number_with_illegal_operation_20(env):
    client = env.client("plain")
    coll = env.fresh(client)
    with client.start_session() as s:
        details = expect_code(
            lambda: coll.database.command(
                SON(
                    [
                        ("insert", coll.name),
                        ("documents", [{"_id": 1}]),
                        ("txnNumber", Int64(1)),
                    ]
                ),
                session=s,
            ),
            20,
            "insert with txnNumber on a standalone",
        )
    expect_eq(
        details.get("errmsg"),
        "Transaction numbers are only allowed on a replica set member or mongos",
        "errmsg",
    )
    expect_eq(details.get("codeName"), "IllegalOperation", "codeName")
    expect_eq(list(coll.find()), [], "documents stored by the refused insert")


@check
def standalone_accepts_sessions_without_txn_number(env):
    client = env.client("plain")
    coll = env.fresh(client)
    with client.start_session() as s:
        coll.insert_one({"_id": 1}, session=s)
        expect_eq(coll.find_one({"_id": 1}, session=s), {"_id": 1}, "read in the session")


# Finding 2. A transaction's first command carries txnNumber (with startTransaction and
# autocommit: false): a standalone refuses it with 20 and stores nothing.
@check
def standalone_refuses_first_transaction_command_with_20_and_stores_nothing(env):
    client = env.client("plain")
    coll = env.fresh(client)
    with client.start_session() as s:
        s.start_transaction()
        try:
            coll.insert_one({"_id": "in-txn"}, session=s)
        except OperationFailure as e:
            expect_eq(e.code, 20, "code of the transaction's first command")
        else:
            raise AssertionError("the transaction's first command succeeded on a standalone")
        finally:
            try:
                s.abort_transaction()
            except Exception:
                pass
    expect_eq(list(coll.find()), [], "documents stored outside any transaction")


# Finding 3. mongod (service_entry_point_common): a command a secondary serves only when the
# client opted in (find, aggregate, count, ...) without a $readPreference that allows secondaries
# is NotPrimaryNoSecondaryOk (13435), "not primary and secondaryOk=false".
@check
def secondary_refuses_read_without_read_preference_with_13435(env):
    _, secondary = primary_and_secondary(env, "rs")
    expect(secondary is not None, "the set has a secondary")
    r = raw(secondary, SON([("find", "anything")]), db="testkit_check")
    expect_eq(r.get("ok"), 0.0, "ok")
    expect_eq(r.get("code"), 13435, "code")
    expect_eq(r.get("codeName"), "NotPrimaryNoSecondaryOk", "codeName")
    expect_eq(r.get("errmsg"), "not primary and secondaryOk=false", "errmsg")


@check
def secondary_serves_read_with_secondary_read_preference(env):
    _, secondary = primary_and_secondary(env, "rs")
    for mode in ["secondaryPreferred", "secondary", "primaryPreferred", "nearest"]:
        r = raw(
            secondary,
            SON([("find", "anything"), ("$readPreference", {"mode": mode})]),
            db="testkit_check",
        )
        expect_eq(r.get("ok"), 1.0, f"find with $readPreference {mode}")
    r = raw(
        secondary,
        SON([("find", "anything"), ("$readPreference", {"mode": "primary"})]),
        db="testkit_check",
    )
    expect_eq(r.get("code"), 13435, "find with $readPreference primary")


@check
def secondary_answers_hello_and_ping_without_read_preference(env):
    _, secondary = primary_and_secondary(env, "rs")
    for cmd in ["hello", "ping", "buildInfo"]:
        r = raw(secondary, SON([(cmd, 1)]))
        expect_eq(r.get("ok"), 1.0, cmd)


@check
def secondary_refuses_write_with_not_writable_primary_10107(env):
    _, secondary = primary_and_secondary(env, "rs")
    r = raw(
        secondary,
        SON([("insert", "c"), ("documents", [{"x": 1}])]),
        db="testkit_check",
    )
    expect_eq(r.get("code"), 10107, "code")
    expect_eq(r.get("errmsg"), "not primary", "errmsg")


# Finding 4. mongod (appendErrorLabelsAndTopologyVersion;
# jstests/replsets/notprimary_errors_return_topology_version.js): a replica-set member appends its
# topologyVersion to NotPrimary-category errors (10107, 13435, 13436, 11602, 189), those of
# failCommand included, and to no other error.
@check
def not_primary_errors_carry_the_members_topology_version(env):
    _, secondary = primary_and_secondary(env, "rs")
    hello = raw(secondary, SON([("hello", 1)]))
    r = raw(
        secondary,
        SON([("insert", "c"), ("documents", [{"x": 1}])]),
        db="testkit_check",
    )
    expect_eq(r.get("code"), 10107, "code")
    expect_eq(r.get("topologyVersion"), hello["topologyVersion"], "topologyVersion")
    r = raw(secondary, SON([("find", "c")]), db="testkit_check")
    expect_eq(r.get("code"), 13435, "code")
    expect_eq(r.get("topologyVersion"), hello["topologyVersion"], "topologyVersion of 13435")


@check
def fail_command_not_primary_errors_carry_topology_version(env):
    primary, _ = primary_and_secondary(env, "rs")
    hello = raw(primary, SON([("hello", 1)]))
    try:
        for code in [10107, 13435, 13436, 11602, 189]:
            raw(
                primary,
                SON(
                    [
                        ("configureFailPoint", "failCommand"),
                        ("mode", {"times": 1}),
                        ("data", {"failCommands": ["insert"], "errorCode": code}),
                    ]
                ),
            )
            r = raw(
                primary,
                SON([("insert", "c"), ("documents", [{"x": 1}])]),
                db="testkit_check",
            )
            expect_eq(r.get("code"), code, "code")
            expect_eq(
                r.get("topologyVersion"),
                hello["topologyVersion"],
                f"topologyVersion with failCommand error {code}",
            )
        for code in [91, 11600, 1, 2]:
            raw(
                primary,
                SON(
                    [
                        ("configureFailPoint", "failCommand"),
                        ("mode", {"times": 1}),
                        ("data", {"failCommands": ["insert"], "errorCode": code}),
                    ]
                ),
            )
            r = raw(
                primary,
                SON([("insert", "c"), ("documents", [{"x": 1}])]),
                db="testkit_check",
            )
            expect_eq(r.get("code"), code, "code")
            expect("topologyVersion" not in r, f"no topologyVersion with error {code}: {r}")
    finally:
        raw(primary, SON([("configureFailPoint", "failCommand"), ("mode", "off")]))


@check
def fail_command_not_primary_write_concern_error_carries_topology_version(env):
    primary, _ = primary_and_secondary(env, "rs")
    hello = raw(primary, SON([("hello", 1)]))
    try:
        raw(
            primary,
            SON(
                [
                    ("configureFailPoint", "failCommand"),
                    ("mode", {"times": 1}),
                    (
                        "data",
                        {
                            "failCommands": ["insert"],
                            "writeConcernError": {"code": 10107, "errmsg": "dummy"},
                        },
                    ),
                ]
            ),
        )
        r = raw(
            primary,
            SON([("insert", "c"), ("documents", [{"x": 1}])]),
            db="testkit_check",
        )
        expect_eq(r.get("writeConcernError", {}).get("code"), 10107, "writeConcernError code")
        expect_eq(r.get("topologyVersion"), hello["topologyVersion"], "topologyVersion")
    finally:
        raw(primary, SON([("configureFailPoint", "failCommand"), ("mode", "off")]))


@check
def standalone_errors_carry_no_topology_version(env):
    host = env.hosts("failpoints")[0]
    try:
        raw(
            host,
            SON(
                [
                    ("configureFailPoint", "failCommand"),
                    ("mode", {"times": 1}),
                    ("data", {"failCommands": ["insert"], "errorCode": 10107}),
                ]
            ),
        )
        r = raw(host, SON([("insert", "c"), ("documents", [{"x": 1}])]), db="testkit_check")
        expect_eq(r.get("code"), 10107, "code")
        expect("topologyVersion" not in r, f"a standalone appends no topologyVersion: {r}")
    finally:
        raw(host, SON([("configureFailPoint", "failCommand"), ("mode", "off")]))


# Finding 5. mongod (FailPoint::setMode): configureFailPoint answers `count`, the number of times
# the fail point was entered (fired) since the process started.
@check
def configure_fail_point_reports_times_entered(env):
    client = env.client("failpoints")
    coll = env.fresh(client)
    admin = client.admin
    before = admin.command(
        SON(
            [
                ("configureFailPoint", "failCommand"),
                ("mode", "alwaysOn"),
                ("data", {"failCommands": ["distinct"], "errorCode": 2}),
            ]
        )
    )["count"]
    try:
        for _ in range(3):
            expect_code(lambda: coll.distinct("x"), 2, "distinct under the fail point")
        coll.find_one()  # not a listed command: does not enter the fail point
    finally:
        after = admin.command(SON([("configureFailPoint", "failCommand"), ("mode", "off")]))[
            "count"
        ]
    expect_eq(after - before, 3, "times entered while on")
    again = admin.command(SON([("configureFailPoint", "failCommand"), ("mode", "off")]))["count"]
    expect_eq(again, after, "count is not reset by turning the fail point off")


@check
def fail_point_skip_mode_counts_only_firings(env):
    client = env.client("failpoints")
    coll = env.fresh(client)
    admin = client.admin
    before = admin.command(
        SON(
            [
                ("configureFailPoint", "failCommand"),
                ("mode", {"skip": 2}),
                ("data", {"failCommands": ["count"], "errorCode": 2}),
            ]
        )
    )["count"]
    try:
        coll.estimated_document_count()
        coll.estimated_document_count()
        expect_code(coll.estimated_document_count, 2, "third count fails after two skips")
    finally:
        after = admin.command(SON([("configureFailPoint", "failCommand"), ("mode", "off")]))[
            "count"
        ]
    expect_eq(after - before, 1, "skipped commands do not enter the fail point")


def _server_first(host, mechanism, user):
    nonce = base64.b64encode(os.urandom(18)).decode()
    r = raw(
        host,
        SON(
            [
                ("saslStart", 1),
                ("mechanism", mechanism),
                ("payload", Binary(f"n,,n={user},r={nonce}".encode())),
                ("autoAuthorize", 1),
            ]
        ),
    )
    expect_eq(r.get("ok"), 1.0, f"saslStart {mechanism}: {r}")
    return dict(kv.split("=", 1) for kv in bytes(r["payload"]).decode().split(","))


# Finding 6. mongod's defaults: scramIterationCount 10000 (SCRAM-SHA-1) and
# scramSHA256IterationCount 15000 (SCRAM-SHA-256).
@check
def scram_sha1_iteration_count_is_10000(env):
    fields = _server_first(env.hosts("auth")[0], "SCRAM-SHA-1", "alice")
    expect_eq(fields.get("i"), "10000", "i= of SCRAM-SHA-1's server-first message")


@check
def scram_sha256_iteration_count_is_15000(env):
    fields = _server_first(env.hosts("auth")[0], "SCRAM-SHA-256", "alice")
    expect_eq(fields.get("i"), "15000", "i= of SCRAM-SHA-256's server-first message")
