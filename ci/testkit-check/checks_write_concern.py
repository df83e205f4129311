"""Write concern, as mongod checks it: on a standalone before the write (BadValue), on a replica
set after it, against the set's data-bearing members (writeConcernError)."""

from bson import SON
from pymongo import WriteConcern
from pymongo.errors import WriteConcernError

from harness import check, expect, expect_code, expect_eq, primary_and_secondary, raw


def _wce(fn, what):
    try:
        fn()
    except WriteConcernError as e:
        return e.details.get("writeConcernError", e.details)
    raise AssertionError(f"{what}: no writeConcernError")


@check
def w_above_the_members_is_unsatisfiable_write_concern_100(env):
    client = env.client("rs")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w=5))
    wce = _wce(lambda: coll.insert_one({"x": 1}), "w: 5 on three members")
    expect_eq(wce.get("code"), 100, "code")
    expect_eq(wce.get("codeName"), "UnsatisfiableWriteConcern", "codeName")
    expect_eq(wce.get("errmsg"), "Not enough data-bearing nodes", "errmsg")
    # The write itself was applied, as on mongod.
    expect_eq(env.fresh(client, "wc").database[coll.name].count_documents({}), 1, "the write")


@check
def w_equal_to_the_members_is_acknowledged(env):
    client = env.client("rs")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w=3, wtimeout=2000))
    coll.insert_one({"x": 1})
    coll = coll.with_options(write_concern=WriteConcern(w="majority"))
    coll.insert_one({"x": 2})
    expect_eq(coll.count_documents({}), 2, "documents")


@check
def unknown_w_mode_is_unknown_repl_write_concern_79(env):
    client = env.client("rs")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w="eastCoast"))
    wce = _wce(lambda: coll.insert_one({"x": 1}), "w: eastCoast")
    expect_eq(wce.get("code"), 79, "code")


@check
def w_needing_a_down_member_times_out_with_write_concern_error_64(env):
    client = env.client("rs_degraded")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w=3, wtimeout=300))
    wce = _wce(lambda: coll.insert_one({"x": 1}), "w: 3 with a member down")
    expect_eq(wce.get("code"), 64, "code")
    expect_eq(wce.get("errInfo", {}).get("wtimeout"), True, "errInfo.wtimeout")
    expect_eq(wce.get("errmsg"), "waiting for replication timed out", "errmsg")


@check
def majority_is_satisfied_with_one_member_down(env):
    client = env.client("rs_degraded")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w="majority", wtimeout=2000))
    coll.insert_one({"x": 1})
    coll = coll.with_options(write_concern=WriteConcern(w=2, wtimeout=2000))
    coll.update_one({"x": 1}, {"$set": {"y": 1}})


@check
def write_concern_error_comes_with_the_write_errors(env):
    client = env.client("rs")
    coll = env.fresh(client, "wc")
    coll.insert_one({"_id": 1})
    primary, _ = primary_and_secondary(env, "rs")
    r = raw(
        primary,
        SON(
            [
                ("insert", coll.name),
                ("documents", [{"_id": 1}]),
                ("writeConcern", {"w": 9}),
            ]
        ),
        db=coll.database.name,
    )
    expect_eq(r.get("ok"), 1.0, "ok")
    expect_eq(r["writeErrors"][0]["code"], 11000, "write error")
    expect_eq(r["writeConcernError"]["code"], 100, "write concern error")


@check
def standalone_refuses_w_above_one_with_bad_value_2(env):
    client = env.client("plain")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w=2))
    details = expect_code(lambda: coll.insert_one({"x": 1}), 2, "w: 2 on a standalone")
    expect_eq(details.get("errmsg"), "cannot use 'w' > 1 when a host is not replicated", "errmsg")
    expect_eq(env.fresh(client, "wc").database[coll.name].count_documents({}), 0, "nothing written")


@check
def standalone_refuses_a_w_mode_other_than_majority(env):
    client = env.client("plain")
    coll = env.fresh(client, "wc").with_options(write_concern=WriteConcern(w="eastCoast"))
    expect_code(lambda: coll.insert_one({"x": 1}), 2, "w: tag on a standalone")
    coll = coll.with_options(write_concern=WriteConcern(w="majority"))
    coll.insert_one({"x": 1})


@check
def unacknowledged_write_is_still_applied(env):
    client = env.client("plain")
    coll = env.fresh(client, "wc")
    r = coll.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": "w0"})
    expect(not r.acknowledged, "unacknowledged")
    from harness import wait_until

    wait_until("the w:0 insert", lambda: coll.find_one({"_id": "w0"}) is not None)
