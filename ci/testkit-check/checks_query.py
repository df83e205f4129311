"""Query operators, as the MongoDB manual's query operator reference describes them."""

import re

from bson import Int64, Regex

from harness import check, expect_code, expect_eq


def _ids(coll, flt):
    return sorted(d["_id"] for d in coll.find(flt))


def _people(env):
    coll = env.fresh(env.client("plain"), "q")
    coll.insert_many(
        [
            {"_id": 1, "name": "Alice", "age": 30, "tags": ["a", "b"], "scores": [80, 95]},
            {"_id": 2, "name": "bob", "age": 25, "tags": ["b"], "scores": [60, 70]},
            {"_id": 3, "name": "Carol", "age": 35.5, "tags": [], "scores": [90]},
            {"_id": 4, "name": "dave", "age": "unknown", "items": [{"sku": "x", "qty": 2}]},
            {"_id": 5, "age": Int64(40), "items": [{"sku": "y", "qty": 7}, {"sku": "x", "qty": 9}]},
            {"_id": 6, "name": None, "budget": 100, "spent": 120},
            {"_id": 7, "name": "Eve", "budget": 100, "spent": 20, "nested": {"deep": {"v": 1}}},
        ]
    )
    return coll


@check
def comparison_operators_compare_within_the_type_bracket(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"age": {"$gt": 29}}), [1, 3, 5], "$gt numbers only")
    expect_eq(_ids(coll, {"age": {"$gte": 25, "$lt": 31}}), [1, 2], "$gte + $lt")
    expect_eq(_ids(coll, {"age": {"$gt": "a"}}), [4], "$gt strings only")
    expect_eq(_ids(coll, {"age": {"$in": [25, 40]}}), [2, 5], "$in across int types")
    expect_eq(_ids(coll, {"age": {"$nin": [25, 40]}}), [1, 3, 4, 6, 7], "$nin")


@check
def null_matches_null_and_missing_fields(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"name": None}), [5, 6], "name: null")
    expect_eq(_ids(coll, {"name": {"$exists": False}}), [5], "$exists false")
    expect_eq(_ids(coll, {"name": {"$ne": None}}), [1, 2, 3, 4, 7], "$ne null")


@check
def regex_operator_matches_with_options(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"name": {"$regex": "^[a-c]"}}), [2], "$regex")
    expect_eq(_ids(coll, {"name": {"$regex": "^[a-c]", "$options": "i"}}), [1, 2, 3], "$options i")
    expect_eq(_ids(coll, {"name": re.compile("E$", re.IGNORECASE)}), [1, 4, 7], "bson regex")
    expect_eq(_ids(coll, {"tags": {"$regex": "^a"}}), [1], "$regex on array elements")


@check
def regex_in_in_list_matches(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"name": {"$in": [Regex("^c", "i"), "bob"]}}), [2, 3], "$in with regex")


@check
def invalid_regex_is_error_51091(env):
    coll = _people(env)
    expect_code(lambda: list(coll.find({"name": {"$regex": "("}})), 51091, "bad regex")


@check
def not_negates_an_operator_or_regex(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"age": {"$not": {"$gt": 29}}}), [2, 4, 6, 7], "$not $gt")
    expect_eq(_ids(coll, {"name": {"$not": re.compile("^[A-Z]")}}), [2, 4, 5, 6], "$not regex")


@check
def elem_match_needs_one_element_matching_every_condition(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"scores": {"$elemMatch": {"$gt": 85, "$lt": 100}}}), [1, 3], "scalars")
    expect_eq(
        _ids(coll, {"items": {"$elemMatch": {"sku": "x", "qty": {"$gt": 5}}}}),
        [5],
        "documents",
    )
    expect_eq(_ids(coll, {"items.sku": "x", "items.qty": {"$gt": 5}}), [5], "without $elemMatch")


@check
def dotted_paths_reach_into_arrays_of_documents(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"items.sku": "y"}), [5], "items.sku")
    expect_eq(_ids(coll, {"nested.deep.v": 1}), [7], "nested")
    expect_eq(_ids(coll, {"items.0.sku": "x"}), [4], "array index in the path")


@check
def size_matches_array_length(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"tags": {"$size": 0}}), [3], "$size 0")
    expect_eq(_ids(coll, {"tags": {"$size": 2}}), [1], "$size 2")


@check
def type_matches_by_alias_and_number(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"age": {"$type": "string"}}), [4], "string")
    expect_eq(_ids(coll, {"age": {"$type": "double"}}), [3], "double")
    expect_eq(_ids(coll, {"age": {"$type": 18}}), [5], "long by number")
    expect_eq(_ids(coll, {"age": {"$type": "number"}}), [1, 2, 3, 5], "number")
    expect_eq(_ids(coll, {"name": {"$type": "null"}}), [6], "null")
    expect_eq(_ids(coll, {"age": {"$type": ["string", "long"]}}), [4, 5], "a list of types")


@check
def mod_matches_divisor_and_remainder(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"age": {"$mod": [10, 0]}}), [1, 5], "$mod")


@check
def expr_compares_fields_of_the_same_document(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"$expr": {"$gt": ["$spent", "$budget"]}}), [6], "$expr $gt")
    expect_eq(
        _ids(coll, {"$expr": {"$eq": [{"$add": ["$spent", 80]}, "$budget"]}}), [7], "$expr $add"
    )


@check
def all_matches_arrays_holding_every_value(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"tags": {"$all": ["b", "a"]}}), [1], "$all")


@check
def logical_operators_combine(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"$or": [{"_id": 1}, {"age": 25}]}), [1, 2], "$or")
    expect_eq(_ids(coll, {"$and": [{"budget": 100}, {"spent": {"$lt": 50}}]}), [7], "$and")
    expect_eq(_ids(coll, {"$nor": [{"age": {"$type": "number"}}, {"name": None}]}), [4, 7], "$nor")


@check
def array_field_equals_whole_array_or_element(env):
    coll = _people(env)
    expect_eq(_ids(coll, {"tags": ["a", "b"]}), [1], "whole array")
    expect_eq(_ids(coll, {"tags": "b"}), [1, 2], "an element")
    expect_eq(_ids(coll, {"tags": ["b", "a"]}), [], "order matters")


@check
def unknown_query_operator_is_bad_value_2(env):
    coll = _people(env)
    expect_code(lambda: list(coll.find({"age": {"$frobnicate": 1}})), 2, "unknown operator")
