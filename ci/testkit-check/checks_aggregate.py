"""Aggregation stages and expressions, as the MongoDB manual's aggregation reference describes
them."""

from bson import SON

from harness import check, expect_code, expect_eq


def _sales(env):
    coll = env.fresh(env.client("plain"), "agg")
    coll.insert_many(
        [
            {"_id": 1, "item": "a", "qty": 2, "price": 10, "tags": ["x", "y"]},
            {"_id": 2, "item": "b", "qty": 1, "price": 20, "tags": ["y"]},
            {"_id": 3, "item": "a", "qty": 5, "price": 10, "tags": []},
            {"_id": 4, "item": "c", "qty": 4, "price": 2.5},
        ]
    )
    return coll


@check
def group_accumulates_sum_avg_min_max_push_add_to_set(env):
    coll = _sales(env)
    got = {
        g["_id"]: g
        for g in coll.aggregate(
            [
                {
                    "$group": {
                        "_id": "$item",
                        "n": {"$sum": 1},
                        "qty": {"$sum": "$qty"},
                        "avg": {"$avg": "$qty"},
                        "lo": {"$min": "$qty"},
                        "hi": {"$max": "$qty"},
                        "ids": {"$push": "$_id"},
                        "prices": {"$addToSet": "$price"},
                        "first": {"$first": "$_id"},
                        "last": {"$last": "$_id"},
                    }
                }
            ]
        )
    }
    a = got["a"]
    expect_eq(
        (a["n"], a["qty"], a["avg"], a["lo"], a["hi"], a["ids"], a["prices"], a["first"], a["last"]),
        (2, 7, 3.5, 2, 5, [1, 3], [10], 1, 3),
        "group a",
    )
    expect_eq(sorted(got), ["a", "b", "c"], "groups")


@check
def group_by_null_totals_everything(env):
    coll = _sales(env)
    got = list(coll.aggregate([{"$group": {"_id": None, "revenue": {"$sum": {"$multiply": ["$qty", "$price"]}}}}]))
    expect_eq(got, [{"_id": None, "revenue": 20 + 20 + 50 + 10.0}], "revenue")


@check
def group_by_a_document_key(env):
    coll = _sales(env)
    got = list(coll.aggregate([{"$group": {"_id": {"i": "$item", "p": "$price"}, "c": {"$count": {}}}}, {"$sort": {"_id.i": 1}}]))
    expect_eq([(g["_id"], g["c"]) for g in got], [({"i": "a", "p": 10}, 2), ({"i": "b", "p": 20}, 1), ({"i": "c", "p": 2.5}, 1)], "groups")


@check
def unwind_emits_one_document_per_element(env):
    coll = _sales(env)
    got = [(d["_id"], d["tags"]) for d in coll.aggregate([{"$unwind": "$tags"}])]
    expect_eq(got, [(1, "x"), (1, "y"), (2, "y")], "unwound")


@check
def unwind_preserves_null_and_empty_arrays_with_index(env):
    coll = _sales(env)
    got = [
        (d["_id"], d.get("tags"), d["i"])
        for d in coll.aggregate([{"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": True}}])
    ]
    expect_eq(got, [(1, "x", 0), (1, "y", 1), (2, "y", 0), (3, None, None), (4, None, None)], "unwound")


@check
def add_fields_and_set_compute_expressions(env):
    coll = _sales(env)
    got = list(
        coll.aggregate(
            [
                {"$match": {"_id": 1}},
                {"$addFields": {"total": {"$multiply": ["$qty", "$price"]}, "label": {"$concat": ["$item", "-", {"$toUpper": "$item"}]}}},
                {"$set": {"big": {"$gte": ["$total", 20]}, "nTags": {"$size": "$tags"}}},
                {"$unset": ["tags", "price"]},
            ]
        )
    )
    expect_eq(got, [{"_id": 1, "item": "a", "qty": 2, "total": 20, "label": "a-A", "big": True, "nTags": 2}], "fields")


@check
def project_includes_and_computes(env):
    coll = _sales(env)
    got = list(coll.aggregate([{"$match": {"_id": 2}}, {"$project": {"_id": 0, "item": 1, "cheap": {"$lt": ["$price", 15]}}}]))
    expect_eq(got, [{"item": "b", "cheap": False}], "projected")


@check
def lookup_joins_by_local_and_foreign_fields(env):
    client = env.client("plain")
    orders = env.fresh(client, "orders")
    items = env.fresh(client, "items")
    items.insert_many([{"_id": "a", "name": "apple"}, {"_id": "b", "name": "bread"}])
    orders.insert_many([{"_id": 1, "item": "a"}, {"_id": 2, "item": "z"}])
    got = list(orders.aggregate([{"$lookup": {"from": items.name, "localField": "item", "foreignField": "_id", "as": "found"}}]))
    expect_eq([(o["_id"], o["found"]) for o in got], [(1, [{"_id": "a", "name": "apple"}]), (2, [])], "joined")


@check
def sort_skip_limit_and_count_stages(env):
    coll = _sales(env)
    got = [d["_id"] for d in coll.aggregate([{"$sort": {"qty": -1}}, {"$skip": 1}, {"$limit": 2}])]
    expect_eq(got, [4, 1], "sorted page")
    expect_eq(list(coll.aggregate([{"$match": {"item": "a"}}, {"$count": "n"}])), [{"n": 2}], "$count")


@check
def sort_by_count_orders_groups_by_size(env):
    coll = _sales(env)
    got = list(coll.aggregate([{"$sortByCount": "$item"}]))
    expect_eq(got[0], {"_id": "a", "count": 2}, "largest group first")


@check
def replace_root_promotes_a_subdocument(env):
    coll = env.fresh(env.client("plain"), "agg")
    coll.insert_one({"_id": 1, "inner": {"x": 1}})
    expect_eq(list(coll.aggregate([{"$replaceRoot": {"newRoot": "$inner"}}])), [{"x": 1}], "$replaceRoot")


@check
def match_with_expr_in_a_pipeline(env):
    coll = _sales(env)
    got = [d["_id"] for d in coll.aggregate([{"$match": {"$expr": {"$gt": [{"$multiply": ["$qty", "$price"]}, 15]}}}])]
    expect_eq(got, [1, 2, 3], "$expr")


@check
def unknown_stage_is_error_40324(env):
    coll = _sales(env)
    expect_code(lambda: list(coll.aggregate([{"$frobnicate": {}}])), 40324, "unknown stage")


@check
def aggregate_without_cursor_option_is_failed_to_parse_9(env):
    db = env.client("plain")["testkit_check"]
    expect_code(
        lambda: db.command(SON([("aggregate", "c"), ("pipeline", [])])),
        9,
        "aggregate without cursor",
    )


@check
def aggregate_batches_continue_with_get_more(env):
    coll = env.fresh(env.client("plain"), "agg")
    coll.insert_many([{"_id": i} for i in range(30)])
    got = [d["_id"] for d in coll.aggregate([{"$sort": {"_id": -1}}], batchSize=7)]
    expect_eq(got, list(range(29, -1, -1)), "all documents")
