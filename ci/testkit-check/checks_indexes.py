"""Indexes, as the MongoDB manual describes createIndexes, listIndexes, dropIndexes and unique
indexes."""

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from harness import check, expect, expect_code, expect_eq


@check
def created_indexes_are_listed_by_list_indexes(env):
    coll = env.fresh(env.client("plain"), "ix")
    name = coll.create_index([("a", ASCENDING), ("b", DESCENDING)])
    expect_eq(name, "a_1_b_-1", "the name PyMongo gives")
    coll.create_index("u", unique=True, name="u_unique")
    listed = {i["name"]: i for i in coll.list_indexes()}
    expect_eq(sorted(listed), ["_id_", "a_1_b_-1", "u_unique"], "names")
    expect_eq(dict(listed["_id_"]["key"]), {"_id": 1}, "_id index key")
    expect_eq(dict(listed["a_1_b_-1"]["key"]), {"a": 1, "b": -1}, "compound key")
    expect_eq(listed["u_unique"].get("unique"), True, "unique flag")
    expect_eq(listed["u_unique"].get("v"), 2, "index version")


@check
def unique_index_refuses_a_duplicate_insert_with_11000(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("email", unique=True)
    coll.insert_one({"email": "a@x"})
    try:
        coll.insert_one({"email": "a@x"})
    except DuplicateKeyError as e:
        expect_eq(e.code, 11000, "code")
        expect_eq(e.details.get("keyPattern"), {"email": 1}, "keyPattern")
        expect_eq(e.details.get("keyValue"), {"email": "a@x"}, "keyValue")
        expect("index: email_1 dup key" in e.details.get("errmsg", ""), f"errmsg {e.details}")
    else:
        raise AssertionError("a unique index admitted a duplicate")
    expect_eq(coll.count_documents({}), 1, "documents")


@check
def unique_index_refuses_a_duplicate_update_with_11000(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("k", unique=True)
    coll.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": 2}])
    expect_code(lambda: coll.update_one({"_id": 2}, {"$set": {"k": 1}}), 11000, "update to a taken key")
    expect_eq(coll.find_one({"_id": 2}), {"_id": 2, "k": 2}, "unchanged")
    coll.update_one({"_id": 2}, {"$set": {"k": 3}})
    coll.insert_one({"_id": 4, "k": 2})  # the old key is free again


@check
def unique_index_refuses_a_duplicate_upsert_and_find_and_modify(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("k", unique=True)
    coll.insert_one({"_id": 1, "k": 1})
    expect_code(lambda: coll.update_one({"_id": 2}, {"$set": {"k": 1}}, upsert=True), 11000, "upsert")
    expect_code(
        lambda: coll.find_one_and_replace({"_id": 3}, {"k": 1}, upsert=True), 11000, "findAndModify"
    )


@check
def unique_index_counts_missing_fields_as_null(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("k", unique=True)
    coll.insert_one({"_id": 1})
    expect_code(lambda: coll.insert_one({"_id": 2}), 11000, "second document without k")


@check
def sparse_unique_index_skips_documents_without_the_field(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("k", unique=True, sparse=True)
    coll.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3, "k": 1}])
    expect_code(lambda: coll.insert_one({"_id": 4, "k": 1}), 11000, "a present duplicate")


@check
def compound_unique_index_compares_the_whole_key(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index([("a", 1), ("b", 1)], unique=True)
    coll.insert_many([{"a": 1, "b": 1}, {"a": 1, "b": 2}])
    expect_code(lambda: coll.insert_one({"a": 1, "b": 2}), 11000, "same (a, b)")


@check
def unique_index_over_existing_duplicates_fails_with_11000(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.insert_many([{"k": 1}, {"k": 1}])
    expect_code(lambda: coll.create_index("k", unique=True), 11000, "index build")
    expect_eq(sorted(i["name"] for i in coll.list_indexes()), ["_id_"], "no index left behind")


@check
def creating_an_existing_index_again_changes_nothing(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("a")
    r = coll.database.command("createIndexes", coll.name, indexes=[{"key": {"a": 1}, "name": "a_1"}])
    expect_eq((r["numIndexesBefore"], r["numIndexesAfter"]), (2, 2), "counts")
    expect_eq(r.get("note"), "all indexes already exist", "note")


@check
def create_indexes_creates_the_collection_automatically(env):
    coll = env.fresh(env.client("plain"), "ix")
    r = coll.database.command("createIndexes", coll.name, indexes=[{"key": {"a": 1}, "name": "a_1"}])
    expect_eq(
        (r["numIndexesBefore"], r["numIndexesAfter"], r["createdCollectionAutomatically"]),
        (1, 2, True),
        "reply",
    )


@check
def same_name_other_key_is_index_key_specs_conflict_86(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("a", name="mine")
    expect_code(lambda: coll.create_index("b", name="mine"), 86, "same name, other key")


@check
def same_key_other_name_is_index_options_conflict_85(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("a", name="first")
    expect_code(lambda: coll.create_index("a", name="second"), 85, "same key, other name")


@check
def drop_index_removes_it_and_a_missing_one_is_27(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_indexes([IndexModel("a"), IndexModel("b")])
    coll.drop_index("a_1")
    expect_eq(sorted(i["name"] for i in coll.list_indexes()), ["_id_", "b_1"], "after drop")
    expect_code(lambda: coll.drop_index("a_1"), 27, "dropping it again")
    expect_code(lambda: coll.drop_index("_id_"), 72, "the _id index")
    coll.drop_indexes()
    expect_eq(sorted(i["name"] for i in coll.list_indexes()), ["_id_"], "after dropping all")


@check
def dropped_unique_index_no_longer_refuses(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("k", unique=True)
    coll.insert_one({"k": 1})
    coll.drop_index("k_1")
    coll.insert_one({"k": 1})
    expect_eq(coll.count_documents({"k": 1}), 2, "duplicates allowed again")


@check
def list_indexes_of_a_missing_collection_is_namespace_not_found_26(env):
    coll = env.fresh(env.client("plain"), "ix")
    # (PyMongo's list_indexes turns this error into an empty list; the command shows it.)
    expect_code(lambda: coll.database.command("listIndexes", coll.name), 26, "listIndexes")
    expect_eq(list(coll.list_indexes()), [], "PyMongo's list_indexes")


@check
def unique_index_on_array_field_indexes_each_element(env):
    coll = env.fresh(env.client("plain"), "ix")
    coll.create_index("tags", unique=True)
    coll.insert_one({"tags": ["a", "b"]})
    expect_code(lambda: coll.insert_one({"tags": ["c", "b"]}), 11000, "a shared element")
