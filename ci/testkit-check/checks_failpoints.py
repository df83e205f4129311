"""The failCommand fail point, as mongod's configureFailPoint command and the drivers' testing
documentation describe it."""

import time

from bson import SON
from pymongo.errors import AutoReconnect, ConnectionFailure, OperationFailure, WriteConcernError

from harness import check, expect, expect_code, expect_eq, primary_and_secondary, raw


def _configure(client, mode, data):
    return client.admin.command(
        SON([("configureFailPoint", "failCommand"), ("mode", mode), ("data", data)])
    )


def _off(client):
    client.admin.command(SON([("configureFailPoint", "failCommand"), ("mode", "off")]))


@check
def fail_command_error_code_fails_the_listed_command(env):
    c = env.client("failpoints")
    coll = env.fresh(c, "fp")
    # (Not a state-change code: PyMongo would mark the server Unknown until its next check.)
    _configure(c, "alwaysOn", {"failCommands": ["insert"], "errorCode": 50})
    try:
        d = expect_code(lambda: coll.insert_one({}), 50, "insert")
        expect_eq(d.get("codeName"), "MaxTimeMSExpired", "codeName")
        coll.find_one()  # not listed
    finally:
        _off(c)
    coll.insert_one({})


@check
def fail_command_times_fires_that_many_times(env):
    c = env.client("failpoints")
    coll = env.fresh(c, "fp")
    _configure(c, {"times": 2}, {"failCommands": ["find"], "errorCode": 2})
    try:
        expect_code(lambda: coll.find_one(), 2, "first")
        expect_code(lambda: coll.find_one(), 2, "second")
        coll.find_one()
    finally:
        _off(c)


@check
def fail_command_close_connection_drops_the_socket(env):
    c = env.client("failpoints", retryReads=False)
    coll = env.fresh(c, "fp")
    _configure(c, {"times": 1}, {"failCommands": ["find"], "closeConnection": True})
    try:
        coll.find_one()
    except (AutoReconnect, ConnectionFailure):
        pass
    else:
        raise AssertionError("the connection was not closed")
    finally:
        _off(c)
    coll.find_one()


@check
def fail_command_write_concern_error_is_added_to_the_reply(env):
    c = env.client("failpoints")
    coll = env.fresh(c, "fp")
    _configure(c, {"times": 1}, {"failCommands": ["insert"], "writeConcernError": {"code": 100, "errmsg": "dummy"}})
    try:
        coll.insert_one({"_id": 1})
    except WriteConcernError as e:
        expect_eq(e.details.get("code"), 100, "code")
    else:
        raise AssertionError("no writeConcernError")
    finally:
        _off(c)
    expect_eq(coll.count_documents({}), 1, "the insert itself ran")


@check
def fail_command_block_connection_delays_the_reply(env):
    c = env.client("failpoints")
    coll = env.fresh(c, "fp")
    _configure(c, {"times": 1}, {"failCommands": ["find"], "blockConnection": True, "blockTimeMS": 300})
    try:
        t0 = time.monotonic()
        coll.find_one()
        expect(time.monotonic() - t0 >= 0.28, "blocked")
    finally:
        _off(c)


@check
def fail_command_app_name_scopes_the_fail_point(env):
    c = env.client("failpoints", appName="victim")
    other = env.client("failpoints", appName="bystander")
    _configure(other, "alwaysOn", {"failCommands": ["find"], "errorCode": 2, "appName": "victim"})
    try:
        expect_code(lambda: c["testkit_check"]["fp"].find_one(), 2, "the named application")
        other["testkit_check"]["fp"].find_one()
    finally:
        _off(other)


@check
def fail_command_error_labels_are_sent_as_given(env):
    c = env.client("failpoints")
    coll = env.fresh(c, "fp")
    _configure(c, {"times": 1}, {"failCommands": ["find"], "errorCode": 2, "errorLabels": ["MyLabel"]})
    try:
        coll.find_one()
    except OperationFailure as e:
        expect_eq(e.details.get("errorLabels"), ["MyLabel"], "labels")
    else:
        raise AssertionError("no error")
    finally:
        _off(c)


@check
def fail_command_on_a_retryable_write_adds_retryable_write_error(env):
    p, _ = primary_and_secondary(env, "rs")
    import uuid

    from bson import Binary, Int64
    from bson.binary import UUID_SUBTYPE

    try:
        raw(p, SON([("configureFailPoint", "failCommand"), ("mode", {"times": 1}), ("data", {"failCommands": ["insert"], "errorCode": 91})]))
        r = raw(
            p,
            SON([("insert", "c"), ("documents", [{}]), ("lsid", {"id": Binary(uuid.uuid4().bytes, UUID_SUBTYPE)}), ("txnNumber", Int64(1))]),
            db="testkit_check",
        )
        expect_eq(r.get("code"), 91, "code")
        expect_eq(r.get("errorLabels"), ["RetryableWriteError"], "labels")
    finally:
        raw(p, SON([("configureFailPoint", "failCommand"), ("mode", "off")]))


@check
def pymongo_retries_a_write_after_a_retryable_fail_point(env):
    c = env.client("rs", retryWrites=True)
    coll = env.fresh(c, "fp")
    _configure(c, {"times": 1}, {"failCommands": ["insert"], "errorCode": 189})
    try:
        coll.insert_one({"_id": 1})
    finally:
        _off(c)
    expect_eq(coll.count_documents({}), 1, "inserted once by the retry")


@check
def configure_fail_point_off_disables_it(env):
    c = env.client("failpoints")
    coll = env.fresh(c, "fp")
    _configure(c, "alwaysOn", {"failCommands": ["count"], "errorCode": 2})
    _off(c)
    coll.estimated_document_count()


@check
def unknown_fail_point_is_refused(env):
    c = env.client("failpoints")
    try:
        c.admin.command(SON([("configureFailPoint", "noSuchFailPoint"), ("mode", "off")]))
    except OperationFailure:
        pass
    else:
        raise AssertionError("an unknown fail point was accepted")
