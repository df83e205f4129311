"""Update operators, as the MongoDB manual's update operator reference describes them."""

import datetime

from bson import Timestamp

from harness import check, expect, expect_code, expect_eq


def _one(env, doc):
    coll = env.fresh(env.client("plain"), "u")
    coll.insert_one(doc)
    return coll


def _after(coll, update, **kw):
    coll.update_one({"_id": 1}, update, **kw)
    return coll.find_one({"_id": 1})


@check
def push_appends_and_creates_the_array(env):
    coll = _one(env, {"_id": 1, "a": [1]})
    expect_eq(_after(coll, {"$push": {"a": 2, "b": "x"}}), {"_id": 1, "a": [1, 2], "b": ["x"]}, "$push")


@check
def push_each_position_sort_slice(env):
    coll = _one(env, {"_id": 1, "a": [5, 1]})
    expect_eq(_after(coll, {"$push": {"a": {"$each": [3], "$position": 0}}})["a"], [3, 5, 1], "$position")
    expect_eq(
        _after(coll, {"$push": {"a": {"$each": [4, 2], "$sort": -1, "$slice": 3}}})["a"],
        [5, 4, 3],
        "$sort + $slice",
    )
    coll2 = _one(env, {"_id": 1, "s": [{"k": 2}, {"k": 1}]})
    expect_eq(
        _after(coll2, {"$push": {"s": {"$each": [{"k": 0}], "$sort": {"k": 1}}}})["s"],
        [{"k": 0}, {"k": 1}, {"k": 2}],
        "$sort by field",
    )


@check
def push_to_a_non_array_is_bad_value_2(env):
    coll = _one(env, {"_id": 1, "a": 5})
    expect_code(lambda: coll.update_one({"_id": 1}, {"$push": {"a": 1}}), 2, "$push onto an int")


@check
def add_to_set_adds_only_missing_values(env):
    coll = _one(env, {"_id": 1, "t": ["a"]})
    expect_eq(_after(coll, {"$addToSet": {"t": "a"}})["t"], ["a"], "present")
    expect_eq(_after(coll, {"$addToSet": {"t": {"$each": ["b", "a", "c", "b"]}}})["t"], ["a", "b", "c"], "$each")


@check
def pull_removes_by_value_and_condition(env):
    coll = _one(env, {"_id": 1, "n": [1, 5, 8, 5], "d": [{"k": 1, "v": 2}, {"k": 2}]})
    expect_eq(_after(coll, {"$pull": {"n": 5}})["n"], [1, 8], "by value")
    expect_eq(_after(coll, {"$pull": {"n": {"$gt": 4}}})["n"], [1], "by condition")
    expect_eq(_after(coll, {"$pull": {"d": {"k": 1}}})["d"], [{"k": 2}], "by document condition")


@check
def pull_all_removes_every_listed_value(env):
    coll = _one(env, {"_id": 1, "n": [1, 2, 3, 2, 1]})
    expect_eq(_after(coll, {"$pullAll": {"n": [1, 2]}})["n"], [3], "$pullAll")


@check
def pop_removes_first_or_last(env):
    coll = _one(env, {"_id": 1, "n": [1, 2, 3]})
    expect_eq(_after(coll, {"$pop": {"n": 1}})["n"], [1, 2], "last")
    expect_eq(_after(coll, {"$pop": {"n": -1}})["n"], [2], "first")


@check
def mul_multiplies_and_sets_missing_to_zero(env):
    coll = _one(env, {"_id": 1, "p": 2.5, "q": 3})
    d = _after(coll, {"$mul": {"p": 2, "q": 4, "r": 7}})
    expect_eq((d["p"], d["q"], d["r"]), (5.0, 12, 0), "$mul")


@check
def min_and_max_replace_only_when_smaller_or_larger(env):
    coll = _one(env, {"_id": 1, "lo": 5, "hi": 5})
    d = _after(coll, {"$min": {"lo": 3, "hi": 9}})
    expect_eq((d["lo"], d["hi"]), (3, 5), "$min")
    d = _after(coll, {"$max": {"lo": 1, "hi": 9, "new": 4}})
    expect_eq((d["lo"], d["hi"], d["new"]), (3, 9, 4), "$max")


@check
def rename_moves_a_field(env):
    coll = _one(env, {"_id": 1, "a": 1, "n": {"x": 2}})
    expect_eq(_after(coll, {"$rename": {"a": "b", "n.x": "y"}}), {"_id": 1, "n": {}, "b": 1, "y": 2}, "$rename")


@check
def current_date_sets_a_date_or_timestamp(env):
    coll = _one(env, {"_id": 1})
    d = _after(coll, {"$currentDate": {"d": True, "t": {"$type": "timestamp"}}})
    expect(isinstance(d["d"], datetime.datetime), f"date: {d['d']!r}")
    expect(isinstance(d["t"], Timestamp), f"timestamp: {d['t']!r}")


@check
def set_on_insert_applies_only_when_upserting(env):
    coll = env.fresh(env.client("plain"), "u")
    coll.update_one({"_id": 1}, {"$set": {"a": 1}, "$setOnInsert": {"created": True}}, upsert=True)
    expect_eq(coll.find_one({"_id": 1}), {"_id": 1, "a": 1, "created": True}, "on insert")
    coll.update_one({"_id": 1}, {"$set": {"a": 2}, "$setOnInsert": {"created": False}}, upsert=True)
    expect_eq(coll.find_one({"_id": 1}), {"_id": 1, "a": 2, "created": True}, "on update")


@check
def unset_and_set_dotted_and_indexed_paths(env):
    coll = _one(env, {"_id": 1, "a": {"b": 1, "c": 2}, "arr": [1, 2, 3]})
    d = _after(coll, {"$unset": {"a.b": ""}, "$set": {"arr.1": 20, "x.y.z": 1}})
    expect_eq(d, {"_id": 1, "a": {"c": 2}, "arr": [1, 20, 3], "x": {"y": {"z": 1}}}, "paths")


@check
def conflicting_update_paths_are_error_40(env):
    coll = _one(env, {"_id": 1, "a": {"b": 1}})
    expect_code(lambda: coll.update_one({"_id": 1}, {"$set": {"a": 1}, "$inc": {"a.b": 1}}), 40, "a vs a.b")


@check
def inc_of_a_non_number_is_type_mismatch_14(env):
    coll = _one(env, {"_id": 1, "s": "text"})
    expect_code(lambda: coll.update_one({"_id": 1}, {"$inc": {"s": 1}}), 14, "$inc a string")


@check
def unknown_update_operator_is_failed_to_parse_9(env):
    coll = _one(env, {"_id": 1})
    expect_code(lambda: coll.update_one({"_id": 1}, {"$frobnicate": {"a": 1}}), 9, "unknown modifier")


@check
def pipeline_update_sets_computed_fields(env):
    coll = _one(env, {"_id": 1, "a": 2, "b": 3})
    d = _after(coll, [{"$set": {"sum": {"$add": ["$a", "$b"]}}}, {"$unset": "b"}])
    expect_eq(d, {"_id": 1, "a": 2, "sum": 5}, "pipeline update")
