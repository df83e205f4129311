"""Commands, CRUD and the catalog, on the plain standalone."""

from bson import SON, Int64
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from harness import check, expect, expect_code, expect_eq, raw


@check
def standalone_hello_is_writable_primary_without_set_name(env):
    r = env.client("plain").admin.command("hello")
    expect_eq(r.get("isWritablePrimary"), True, "isWritablePrimary")
    expect("setName" not in r, "a standalone has no setName")
    expect(r.get("maxWireVersion", 0) >= 17, "maxWireVersion")
    expect_eq(r.get("maxBsonObjectSize"), 16 * 1024 * 1024, "maxBsonObjectSize")
    expect(isinstance(r.get("connectionId"), int), "connectionId")


@check
def ping_answers_ok_1(env):
    expect_eq(env.client("plain").admin.command("ping").get("ok"), 1.0, "ok")


@check
def unknown_command_is_command_not_found_59(env):
    expect_code(
        lambda: env.client("plain").admin.command("frobnicateTheWidgets"), 59, "unknown command"
    )


@check
def op_msg_without_db_is_refused_40571(env):
    from harness import RawConnection

    conn = RawConnection(env.hosts("plain")[0])
    try:
        import struct

        import bson

        payload = struct.pack("<I", 0) + b"\x00" + bson.encode(SON([("ping", 1)]))
        conn.sock.sendall(struct.pack("<iiii", 16 + len(payload), 99, 0, 2013) + payload)
        length = struct.unpack("<i", conn._recv_exact(4))[0]
        rest = conn._recv_exact(length - 4)
        reply = bson.decode(rest[17:])
        expect_eq(reply.get("code"), 40571, "code")
    finally:
        conn.close()


@check
def insert_then_find_returns_the_document(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 1, "name": "a", "n": 5})
    expect_eq(coll.find_one({"_id": 1}), {"_id": 1, "name": "a", "n": 5}, "found")


@check
def insert_without_id_gets_an_object_id_first(env):
    coll = env.fresh(env.client("plain"))
    coll.database.command(SON([("insert", coll.name), ("documents", [{"x": 1}])]))
    d = coll.find_one()
    expect_eq(list(d.keys())[0], "_id", "_id is the first field")


@check
def duplicate_id_is_write_error_11000(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 1})
    try:
        coll.insert_one({"_id": 1})
    except DuplicateKeyError as e:
        expect_eq(e.code, 11000, "code")
        expect("E11000 duplicate key error" in str(e), f"errmsg: {e}")
        expect_eq(e.details.get("keyPattern"), {"_id": 1}, "keyPattern")
        expect_eq(e.details.get("keyValue"), {"_id": 1}, "keyValue")
    else:
        raise AssertionError("a duplicate _id was stored")


@check
def unordered_insert_many_continues_past_a_duplicate(env):
    coll = env.fresh(env.client("plain"))
    try:
        coll.insert_many([{"_id": 1}, {"_id": 1}, {"_id": 2}], ordered=False)
    except BulkWriteError as e:
        expect_eq(e.details["nInserted"], 2, "nInserted")
        expect_eq([w["index"] for w in e.details["writeErrors"]], [1], "failed indexes")
    else:
        raise AssertionError("no error")


@check
def ordered_insert_many_stops_at_a_duplicate(env):
    coll = env.fresh(env.client("plain"))
    try:
        coll.insert_many([{"_id": 1}, {"_id": 1}, {"_id": 2}])
    except BulkWriteError as e:
        expect_eq(e.details["nInserted"], 1, "nInserted")
    expect_eq(coll.count_documents({}), 1, "documents after the ordered insert")


@check
def find_sorts_skips_and_limits(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"_id": i, "k": i % 3} for i in range(10)])
    got = [d["_id"] for d in coll.find({}, sort=[("k", -1), ("_id", 1)], skip=1, limit=4)]
    expect_eq(got, [5, 8, 1, 4], "order")


@check
def find_projection_includes_and_excludes(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": 4})
    expect_eq(coll.find_one({}, {"a": 1}), {"_id": 1, "a": 1}, "inclusion")
    expect_eq(coll.find_one({}, {"a": 0, "_id": 0, "e": 0}), {"b": {"c": 2, "d": 3}}, "exclusion")
    expect_eq(coll.find_one({}, {"b.c": 1, "_id": 0}), {"b": {"c": 2}}, "dotted inclusion")


@check
def projection_mixing_inclusion_and_exclusion_is_error_31254(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 1, "a": 1, "b": 2})
    expect_code(lambda: coll.find_one({}, {"a": 1, "b": 0}), 31254, "mixed projection")


@check
def find_batches_continue_with_get_more(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"_id": i} for i in range(25)])
    got = [d["_id"] for d in coll.find({}, batch_size=4)]
    expect_eq(got, list(range(25)), "all documents across batches")


@check
def get_more_on_unknown_cursor_is_cursor_not_found_43(env):
    db = env.client("plain")["testkit_check"]
    expect_code(
        lambda: db.command(SON([("getMore", Int64(987654321)), ("collection", "c")])),
        43,
        "getMore of an unknown cursor",
    )


@check
def killed_cursor_is_gone(env):
    client = env.client("plain")
    coll = env.fresh(client)
    coll.insert_many([{"_id": i} for i in range(10)])
    r = coll.database.command(SON([("find", coll.name), ("batchSize", 2)]))
    cid = r["cursor"]["id"]
    k = coll.database.command(SON([("killCursors", coll.name), ("cursors", [cid])]))
    expect_eq(k["cursorsKilled"], [cid], "cursorsKilled")
    expect_code(
        lambda: coll.database.command(SON([("getMore", cid), ("collection", coll.name)])),
        43,
        "getMore after killCursors",
    )


@check
def update_one_and_many_report_matched_and_modified(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"_id": i, "g": i % 2, "n": 0} for i in range(6)])
    r = coll.update_many({"g": 0}, {"$inc": {"n": 1}})
    expect_eq((r.matched_count, r.modified_count), (3, 3), "update_many")
    r = coll.update_one({"_id": 0}, {"$set": {"n": 1}})
    expect_eq((r.matched_count, r.modified_count), (1, 0), "a $set to the same value")


@check
def replace_one_keeps_the_id(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 7, "a": 1})
    coll.replace_one({"_id": 7}, {"b": 2})
    expect_eq(coll.find_one({"_id": 7}), {"_id": 7, "b": 2}, "replaced")


@check
def upsert_inserts_the_query_equalities(env):
    coll = env.fresh(env.client("plain"))
    r = coll.update_one({"k": "v", "n": {"$gt": 3}}, {"$set": {"x": 1}}, upsert=True)
    expect(r.upserted_id is not None, "upserted_id")
    d = coll.find_one({"_id": r.upserted_id})
    expect_eq({k: v for k, v in d.items() if k != "_id"}, {"k": "v", "x": 1}, "upserted document")


@check
def update_changing_id_is_immutable_field_66(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 1})
    expect_code(lambda: coll.update_one({"_id": 1}, {"$set": {"_id": 2}}), 66, "$set _id")


@check
def delete_one_and_many_report_counts(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"_id": i, "g": i % 2} for i in range(6)])
    expect_eq(coll.delete_one({"g": 1}).deleted_count, 1, "delete_one")
    expect_eq(coll.delete_many({"g": 1}).deleted_count, 2, "delete_many")
    expect_eq(coll.count_documents({}), 3, "left")


@check
def find_one_and_update_returns_before_or_after(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_one({"_id": 1, "n": 1})
    before = coll.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}})
    expect_eq(before, {"_id": 1, "n": 1}, "before")
    after = coll.find_one_and_update(
        {"_id": 1}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER
    )
    expect_eq(after, {"_id": 1, "n": 3}, "after")
    none = coll.find_one_and_update({"_id": 2}, {"$inc": {"n": 1}})
    expect_eq(none, None, "no match")


@check
def find_one_and_delete_removes_the_first_sorted(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"_id": i} for i in range(3)])
    d = coll.find_one_and_delete({}, sort=[("_id", -1)])
    expect_eq(d, {"_id": 2}, "deleted")
    expect_eq(coll.count_documents({}), 2, "left")


@check
def distinct_returns_each_value_once_with_array_elements(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"t": "a"}, {"t": ["b", "a"]}, {"t": "c"}, {"u": 1}, {"t": 1}])
    expect_eq(sorted(coll.distinct("t"), key=str), [1, "a", "b", "c"], "values")
    expect_eq(coll.distinct("t", {"t": "c"}), ["c"], "with a query")


@check
def count_documents_counts_with_match_and_group(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{"_id": i, "g": i % 3} for i in range(10)])
    expect_eq(coll.count_documents({}), 10, "all")
    expect_eq(coll.count_documents({"g": 1}), 3, "filtered")
    expect_eq(coll.count_documents({"g": 1}, skip=1, limit=1), 1, "skip + limit")
    expect_eq(coll.count_documents({"g": 7}), 0, "none")


@check
def count_documents_of_a_missing_collection_is_zero(env):
    coll = env.fresh(env.client("plain"))
    expect_eq(coll.count_documents({}), 0, "count")


@check
def estimated_document_count_uses_count(env):
    coll = env.fresh(env.client("plain"))
    coll.insert_many([{} for _ in range(4)])
    expect_eq(coll.estimated_document_count(), 4, "count")


@check
def create_existing_collection_is_namespace_exists_48(env):
    client = env.client("plain")
    coll = env.fresh(client)
    coll.database.create_collection(coll.name)
    expect_code(lambda: coll.database.command("create", coll.name), 48, "create twice")


@check
def list_collections_and_drop(env):
    client = env.client("plain")
    db = client["testkit_check_catalog"]
    db.drop_collection("a")
    db["a"].insert_one({})
    db["b"].insert_one({})
    expect(set(db.list_collection_names()) >= {"a", "b"}, "both listed")
    db.drop_collection("a")
    expect("a" not in db.list_collection_names(), "a dropped")


@check
def list_databases_lists_and_drop_database_removes(env):
    client = env.client("plain")
    client["testkit_check_dropme"]["c"].insert_one({})
    expect("testkit_check_dropme" in client.list_database_names(), "listed")
    client.drop_database("testkit_check_dropme")
    expect("testkit_check_dropme" not in client.list_database_names(), "dropped")


@check
def bulk_write_mixed_operations_report_counts(env):
    from pymongo import DeleteOne, InsertOne, UpdateOne

    coll = env.fresh(env.client("plain"))
    r = coll.bulk_write(
        [
            InsertOne({"_id": 1}),
            InsertOne({"_id": 2}),
            UpdateOne({"_id": 1}, {"$set": {"a": 1}}),
            UpdateOne({"_id": 3}, {"$set": {"a": 3}}, upsert=True),
            DeleteOne({"_id": 2}),
        ]
    )
    expect_eq(
        (r.inserted_count, r.matched_count, r.upserted_count, r.deleted_count),
        (2, 1, 1, 1),
        "counts",
    )


@check
def find_on_a_raw_connection_answers_a_cursor(env):
    r = raw(env.hosts("plain")[0], SON([("find", "nothing_here")]), db="testkit_check")
    expect_eq(r["cursor"]["firstBatch"], [], "firstBatch")
    expect_eq(r["cursor"]["id"], 0, "cursor id")
    expect_eq(r["cursor"]["ns"], "testkit_check.nothing_here", "ns")
