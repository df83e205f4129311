"""Replica sets: discovery, member views, elections, retryable writes, cluster time, as the server
discovery and monitoring and retryable writes specifications describe mongod."""

import uuid

from bson import SON, Binary, Int64
from bson.binary import UUID_SUBTYPE
from pymongo import ReadPreference

from harness import check, expect, expect_eq, primary_and_secondary, raw, wait_until


def _lsid():
    return {"id": Binary(uuid.uuid4().bytes, UUID_SUBTYPE)}


@check
def replica_set_discovery_finds_every_member(env):
    c = env.client("rs")
    c.admin.command("ping")
    wait_until("three members known", lambda: len(c.nodes) == 3)
    expect_eq(sorted(f"{h}:{p}" for h, p in c.nodes), sorted(env.hosts("rs")), "members")
    expect(c.primary is not None, "a primary")


@check
def members_agree_on_set_name_hosts_and_primary(env):
    hellos = [raw(h, SON([("hello", 1)])) for h in env.hosts("rs")]
    expect_eq({h["setName"] for h in hellos}, {"rs0"}, "setName")
    expect_eq({h["primary"] for h in hellos} , {env.hosts("rs")[0]}, "primary")
    expect_eq([h["isWritablePrimary"] for h in hellos], [True, False, False], "isWritablePrimary")
    expect_eq([h["secondary"] for h in hellos], [False, True, True], "secondary")
    expect_eq([h["me"] for h in hellos], env.hosts("rs"), "me")
    expect("electionId" in hellos[0] and "electionId" not in hellos[1], "electionId on the primary only")


@check
def members_gossip_cluster_time_and_operation_time(env):
    p, _ = primary_and_secondary(env, "rs")
    r = raw(p, SON([("ping", 1)]))
    expect("$clusterTime" in r and "operationTime" in r, f"gossip fields: {r}")
    r = raw(env.hosts("plain")[0], SON([("ping", 1)]))
    expect("$clusterTime" not in r, "a standalone does not gossip")


@check
def secondary_reads_with_a_secondary_read_preference(env):
    c = env.client("rs")
    coll = env.fresh(c, "rsr")
    coll.insert_one({"_id": 1})
    sec = coll.with_options(read_preference=ReadPreference.SECONDARY)
    expect_eq(sec.find_one({"_id": 1}), {"_id": 1}, "read from a secondary")
    expect_eq(sec.count_documents({}), 1, "count on a secondary")


@check
def retryable_write_is_executed_once_per_txn_number(env):
    p, _ = primary_and_secondary(env, "rs")
    lsid = _lsid()
    cmd = SON([("insert", "retry_once"), ("documents", [{"v": 1}]), ("lsid", lsid), ("txnNumber", Int64(1))])
    first = raw(p, cmd, db="testkit_check")
    again = raw(p, cmd, db="testkit_check")
    expect_eq((first.get("n"), again.get("n")), (1, 1), "both acknowledged")
    r = raw(p, SON([("count", "retry_once"), ("query", {"v": 1})]), db="testkit_check")
    expect_eq(r.get("n"), 1, "stored once")
    nxt = raw(
        p,
        SON([("insert", "retry_once"), ("documents", [{"v": 1}]), ("lsid", lsid), ("txnNumber", Int64(2))]),
        db="testkit_check",
    )
    expect_eq(nxt.get("n"), 1, "a new txnNumber writes again")
    r = raw(p, SON([("count", "retry_once"), ("query", {"v": 1})]), db="testkit_check")
    expect_eq(r.get("n"), 2, "stored twice")


@check
def txn_number_on_a_read_outside_a_transaction_is_50768(env):
    p, _ = primary_and_secondary(env, "rs")
    r = raw(
        p,
        SON([("find", "c"), ("lsid", _lsid()), ("txnNumber", Int64(1))]),
        db="testkit_check",
    )
    expect_eq(r.get("code"), 50768, f"code: {r}")


@check
def txn_number_without_a_session_is_invalid_options_72(env):
    p, _ = primary_and_secondary(env, "rs")
    r = raw(p, SON([("insert", "c"), ("documents", [{}]), ("txnNumber", Int64(1))]), db="testkit_check")
    expect_eq(r.get("code"), 72, f"code: {r}")


@check
def retryable_writes_through_pymongo_on_a_replica_set(env):
    c = env.client("rs", retryWrites=True)
    coll = env.fresh(c, "rsw")
    coll.insert_one({"_id": 1})
    coll.update_one({"_id": 1}, {"$inc": {"n": 1}})
    coll.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}})
    expect_eq(coll.find_one({"_id": 1}), {"_id": 1, "n": 2}, "document")


@check
def a_new_primary_is_found_after_an_election(env):
    c = env.client("rs", serverSelectionTimeoutMS=10000)
    coll = env.fresh(c, "elect")
    coll.insert_one({"_id": 1})
    hosts = env.hosts("rs")
    try:
        env.control("step_down rs")
        env.control("elect rs 1")
        wait_until("member 1 is primary", lambda: raw(hosts[1], SON([("hello", 1)])).get("isWritablePrimary"))
        r = raw(hosts[0], SON([("insert", "c"), ("documents", [{}])]), db="testkit_check")
        expect_eq(r.get("code"), 10107, "the old primary refuses writes")
        coll.insert_one({"_id": 2})
        wait_until("the client follows the new primary", lambda: c.primary == tuple([hosts[1].split(":")[0], int(hosts[1].split(":")[1])]))
        h1 = raw(hosts[1], SON([("hello", 1)]))
        expect_eq(h1.get("primary"), hosts[1], "primary field")
    finally:
        env.control("elect rs 0")


@check
def election_raises_the_election_id_and_topology_version(env):
    hosts = env.hosts("rs")
    before = raw(hosts[0], SON([("hello", 1)]))
    try:
        env.control("elect rs 2")
        after = raw(hosts[2], SON([("hello", 1)]))
        expect(after["electionId"] > before["electionId"], "electionId grows")
        old = raw(hosts[0], SON([("hello", 1)]))
        expect(old["topologyVersion"]["counter"] > before["topologyVersion"]["counter"], "counter grows")
        expect_eq(old["topologyVersion"]["processId"], before["topologyVersion"]["processId"], "same process")
    finally:
        env.control("elect rs 0")


@check
def restarted_member_has_a_new_process_id(env):
    hosts = env.hosts("rs")
    before = raw(hosts[2], SON([("hello", 1)]))
    env.control("kill rs 2")
    env.control("revive rs 2")
    after = raw(hosts[2], SON([("hello", 1)]))
    expect(after["topologyVersion"]["processId"] != before["topologyVersion"]["processId"], "processId")
    expect_eq(after["topologyVersion"]["counter"], 0, "counter starts again")


@check
def awaitable_hello_answers_when_the_topology_changes(env):
    import threading
    import time

    hosts = env.hosts("rs")
    tv = raw(hosts[1], SON([("hello", 1)]))["topologyVersion"]
    out = {}

    def wait():
        t0 = time.monotonic()
        out["r"] = raw(hosts[1], SON([("hello", 1), ("topologyVersion", tv), ("maxAwaitTimeMS", 5000)]))
        out["t"] = time.monotonic() - t0

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(0.3)
    try:
        env.control("elect rs 1")
        th.join(10)
        expect(out.get("t", 99) < 4, f"answered on the change: {out.get('t')}")
        expect_eq(out["r"].get("isWritablePrimary"), True, "the new state")
    finally:
        env.control("elect rs 0")


@check
def awaitable_hello_waits_up_to_max_await_time(env):
    import time

    hosts = env.hosts("rs")
    tv = raw(hosts[1], SON([("hello", 1)]))["topologyVersion"]
    t0 = time.monotonic()
    raw(hosts[1], SON([("hello", 1), ("topologyVersion", tv), ("maxAwaitTimeMS", 300)]))
    waited = time.monotonic() - t0
    expect(0.25 < waited < 3, f"waited {waited:.2f}s")


@check
def repl_set_step_down_hands_the_primary_to_another_member(env):
    hosts = env.hosts("rs")
    c = env.client("rs", serverSelectionTimeoutMS=10000)
    coll = env.fresh(c, "stepdown")
    coll.insert_one({"_id": 1})
    try:
        r = raw(hosts[0], SON([("replSetStepDown", 10), ("secondaryCatchUpPeriodSecs", 5)]))
        expect_eq(r.get("ok"), 1.0, f"replSetStepDown: {r}")
        old = raw(hosts[0], SON([("hello", 1)]))
        expect_eq((old["isWritablePrimary"], old["secondary"]), (False, True), "the old primary")
        wait_until("another primary", lambda: primary_and_secondary(env, "rs")[0] not in (None, hosts[0]))
        coll.insert_one({"_id": 2})
        expect_eq(coll.count_documents({}), 2, "writes reach the new primary")
    finally:
        env.control("elect rs 0")


@check
def repl_set_step_down_on_a_secondary_is_not_writable_primary_10107(env):
    _, secondary = primary_and_secondary(env, "rs")
    r = raw(secondary, SON([("replSetStepDown", 10)]))
    expect_eq(r.get("code"), 10107, f"code: {r}")


@check
def repl_set_step_down_on_a_standalone_is_no_replication_enabled_76(env):
    r = raw(env.hosts("plain")[0], SON([("replSetStepDown", 10)]))
    expect_eq(r.get("code"), 76, f"code: {r}")
