"""moto server for the tests: requests serialised per service, and three moto costs made cheap.

Serialised requests. moto 5.2's TransactWriteItems deep-copies every table it touches and, when
the transaction is cancelled, puts the copies back in place of the live tables, which under
concurrent requests silently undoes writes other requests made in between (lost claims, lost
events); real DynamoDB never does that. So DynamoDB requests run one at a time, and DynamoDB
Streams requests take the same lock, so that no reader sees the stream records of a transaction
still being applied (and perhaps about to be cancelled). SQS requests run one at a time under a
lock of their own: moto's queues are not thread-safe either (DeleteMessage rebuilds a queue's
message list without the lock SendMessage appends under, so a message sent meanwhile is lost).
The locks are fair (first come, first served), so no request starves under load. Our pollers
use short polls; a long-polling ReceiveMessage would hold the SQS lock while it waits.

Cheap transactions. moto's copies make every transaction cost time in proportion to the size of
the tables it touches, so building thousands of events takes quadratic time. The
`transact_write_items` below is moto's own algorithm, line for line, except that instead of
copying whole tables it keeps an undo log: before each operation it copies the one item that
operation may change, and a cancelled transaction puts those items back (in reverse order) and
drops the stream records it appended. Answers, cancellation reasons and exceptions are moto's.
The live table objects are never replaced, so a shard iterator stays valid across a cancelled
transaction. This is safe only because DynamoDB requests are serialised.

Cheap queries. moto's Query reads every item of the table to find one partition and sorts the
partition on every call. For queries on a table's own key, `Table.query` below hands moto's
implementation only the candidates: the queried partition's items in the key condition's range
and after the start key, at most a page and one more, taken from sorted keys kept per partition.
Index queries are unchanged.

Less overhead. The dispatcher's choice of a service's app and the list of a response class's
methods, which moto recomputes for every request, are cached, and requests are not logged one
line each (server errors still are).

`moto_server.py --self-check` runs one random workload of transactions, puts, deletes and
queries against moto as it is and with these patches, and fails on any difference in answers,
errors, items or stream records.

Usage: moto_server.py HOST PORT
       moto_server.py --self-check   (the patches answer exactly as moto does; see self_check)
"""

import bisect
import collections
import copy
import functools
import sys
import threading

import moto.core.responses as core_responses
import moto.dynamodb.models as ddb_models
import moto.dynamodb.models.table as ddb_table
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

# Requests that run one at a time: DynamoDB with DynamoDB Streams, and SQS (JSON protocol
# targets). Each service has a lock of its own.
SERIALISED_TARGETS = {
    "DynamoDB_20120810.": "dynamodb",
    "DynamoDBStreams_20120810.": "dynamodb",
    "AmazonSQS.": "sqs",
}


class FairLock:
    """A lock granted in the order it was asked for, so that no request waits behind an
    unbounded number of later ones (`threading.Lock` promises no order)."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._held = False
        self._waiters = collections.deque()

    def __enter__(self):
        with self._mutex:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiters.append(turn)
        # The releasing thread hands the lock over by setting our event.
        turn.wait()
        return self

    def __exit__(self, *exc):
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False


class Serialised:
    """WSGI middleware running the requests of each serialised service one at a time."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.locks = {service: FairLock() for service in set(SERIALISED_TARGETS.values())}
        # The service's Flask app by target prefix: moto's dispatcher finds it anew for every
        # request (walking its list of services, with file system calls), always the same one.
        self.apps = {}

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        prefix = next((p for p in SERIALISED_TARGETS if target.startswith(p)), None)
        if prefix is None:
            return self.dispatcher(environ, start_response)
        app = self.apps.get(prefix)
        if app is None:
            app = self.apps.setdefault(prefix, self.dispatcher.get_application(environ))
        with self.locks[SERIALISED_TARGETS[prefix]]:
            # moto's responses are complete byte strings; materialise them inside the lock.
            return list(app(environ, start_response))


class _Undo:
    """What one transaction operation may change: one item of one table."""

    __slots__ = ("table", "hash_value", "range_value", "prior", "partition_existed")

    def __init__(self, table, hash_value, range_value):
        self.table = table
        self.hash_value = hash_value
        self.range_value = range_value
        self.partition_existed = hash_value in table.items
        # The operation replaces (Put), removes (Delete) or mutates in place (Update) this item:
        # keep a copy of it as it is now.
        self.prior = copy.deepcopy(table.get_item(hash_value, range_value))

    def restore(self):
        _forget(self.table, self.hash_value)
        items = self.table.items
        if self.range_value is None:
            if self.prior is None:
                items.pop(self.hash_value, None)
            else:
                items[self.hash_value] = self.prior
            return
        if self.prior is None:
            partition = items.get(self.hash_value)
            if partition is not None:
                partition.pop(self.range_value, None)
                if not partition and not self.partition_existed:
                    items.pop(self.hash_value, None)
        else:
            items[self.hash_value][self.range_value] = self.prior


def transact_write_items(self, transact_items):
    """moto 5.2.5's `DynamoDBBackend.transact_write_items` with an undo log instead of copies
    of whole tables (see the module documentation)."""
    if len(transact_items) > 100:
        raise ddb_models.TooManyTransactionsException()
    # Instead of a backup of every table: where each touched stream shard ends now, and an undo
    # entry per applied operation.
    stream_ends = []
    for item in transact_items:
        _, op = next(iter(item.items()))
        table_name = op.get("TableName")
        if table_name and table_name in self.tables:
            shard = self.tables[table_name].stream_shard
            if shard is not None and all(s is not shard for s, _ in stream_ends):
                stream_ends.append((shard, len(shard.items)))
    undo_log = []

    def rollback():
        for entry in reversed(undo_log):
            entry.restore()
        for shard, end in stream_ends:
            del shard.items[end:]

    target_items = set()

    def check_unicity(table_name, key):
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise ddb_models.MultipleTransactionsException()
        target_items.add(item)

    errors = []  # [(Code, Message, Item), ..]
    for item in transact_items:
        original_item = None
        # Check transact writes are not performing multiple operations on the same item
        if len(list(item.keys())) > 1:
            raise ddb_models.TransactWriteSingleOpException

        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")

            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get(
                "ReturnValuesOnConditionCheckFailure"
            )

            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]

            check_unicity(table_name, key)

            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = ddb_models.get_filter_expression(
                    condition_expression,
                    expression_attribute_names,
                    expression_attribute_values,
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ddb_models.ConditionalCheckFailed(item=original_item)

            if op_type != "ConditionCheck":
                table = self.get_table(table_name)
                hash_value, range_value = self.get_keys_value(table, key)
                undo_log.append(_Undo(table, hash_value, range_value))

            if op_type == "Put":
                attrs = op["Item"]
                self.put_item(
                    table_name,
                    attrs,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Update":
                update_expression = op["UpdateExpression"]
                self.update_item(
                    table_name,
                    key,
                    update_expression=update_expression,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            errors.append((None, None, None))
        except (ddb_models.MultipleTransactionsException, ddb_models.MockValidationException):
            # Roll back to the original state, and reraise the error
            rollback()
            raise
        except ddb_models.ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: E722 Do not use bare except
            # For other exceptions, capture their details
            errors.append((type(e).__name__, str(e), original_item))

    if any(code is not None for code, _, _ in errors):
        # Roll back to the original state, and reraise the errors
        rollback()
        raise ddb_models.TransactionCanceledException(errors)


class _SortedPartition:
    """The range keys of one partition in order: `keys` (moto's comparison values) and
    `dynamo` (the `DynamoType`s the partition dict is keyed by), kept in step."""

    __slots__ = ("keys", "dynamo")

    def __init__(self, partition):
        pairs = sorted(((k.cast_value, k) for k in partition), key=lambda pair: pair[0])
        self.keys = [key for key, _ in pairs]
        self.dynamo = [dynamo for _, dynamo in pairs]

    def insert(self, range_value):
        at = bisect.bisect_right(self.keys, range_value.cast_value)
        self.keys.insert(at, range_value.cast_value)
        self.dynamo.insert(at, range_value)


def _sorted_partitions(table):
    """The sorted partitions of a table that has a range key, built on demand."""
    cache = table.__dict__.get("_sorted_partitions")
    if cache is None:
        cache = table.__dict__["_sorted_partitions"] = {}
    return cache


def _forget(table, hash_value):
    table.__dict__.get("_sorted_partitions", {}).pop(hash_value, None)


_original_put_item = ddb_table.Table.put_item
_original_delete_item = ddb_table.Table.delete_item


def put_item(self, item_attrs, *args, **kwargs):
    """moto's `Table.put_item`; a new key also enters its partition's sorted keys."""
    item = _original_put_item(self, item_attrs, *args, **kwargs)
    if self.range_key_attr is not None:
        cached = self.__dict__.get("_sorted_partitions", {}).get(item.hash_key)
        if cached is not None and len(cached.keys) != len(self.items[item.hash_key]):
            cached.insert(item.range_key)
    return item


def delete_item(self, hash_key, range_key):
    """moto's `Table.delete_item`; the partition's sorted keys are rebuilt when next needed."""
    _forget(self, hash_key)
    return _original_delete_item(self, hash_key, range_key)


# Key conditions on the sort key and the interval of sorted keys each one can match, as
# (lower bound from, upper bound from): "left"/"right" = bisect_left/bisect_right of a value.
_NARROWING = {
    "EQ": ("left", "right"),
    "=": ("left", "right"),
    "LT": (None, "left"),
    "<": (None, "left"),
    "LE": (None, "right"),
    "<=": (None, "right"),
    "GT": ("right", None),
    ">": ("right", None),
    "GE": ("left", None),
    ">=": ("left", None),
    "BETWEEN": ("left", "right"),
}


class _Candidates:
    """A table as `Table.query` sees it, except that `all_items` lists only the items that can
    be on the page asked for, in key order: those of the queried partition in the key
    condition's range, after the exclusive start key, and no more than the page limit plus
    one (what tells moto there is a next page). The query re-checks every condition."""

    def __init__(self, table, items):
        self._table = table
        self._items = items

    def __getattr__(self, name):
        return getattr(self._table, name)

    def all_items(self):
        return self._items


def _candidates(table, hash_key, range_comparison, range_objs, limit, start_key, forward):
    """The items a query on the table's own key can return, or None when unsure."""
    partition = table.items.get(hash_key)
    if partition is None:
        return []
    if table.range_key_attr is None:
        return [partition]
    cache = _sorted_partitions(table)
    sorted_keys = cache.get(hash_key)
    if sorted_keys is None or len(sorted_keys.keys) != len(partition):
        sorted_keys = cache[hash_key] = _SortedPartition(partition)
    keys = sorted_keys.keys
    key_type = table.range_key_type
    lo, hi = 0, len(keys)
    # Whether every key in [lo, hi) matches the key condition (then the page ends after `limit`
    # of them); otherwise the query skips the keys that do not match, and [lo, hi) stays whole.
    exact = True
    if range_comparison:
        narrowing = _NARROWING.get(range_comparison.upper())
        if narrowing is None or any(v.type != key_type for v in range_objs):
            narrowing = (None, None)
            exact = False
        values = [v.cast_value for v in range_objs]
        lower, upper = narrowing
        if lower is not None:
            bisect_lower = bisect.bisect_left if lower == "left" else bisect.bisect_right
            lo = bisect_lower(keys, values[0])
        if upper is not None:
            bisect_upper = bisect.bisect_left if upper == "left" else bisect.bisect_right
            hi = bisect_upper(keys, values[-1])
    if start_key:
        start = start_key.get(table.range_key_attr)
        if start is None:
            return None
        start = ddb_models.DynamoType(start)
        if start.type != key_type:
            return None
        if forward:
            lo = max(lo, bisect.bisect_right(keys, start.cast_value))
        else:
            hi = min(hi, bisect.bisect_left(keys, start.cast_value))
    if hi <= lo:
        return []
    # moto ends a full page with a LastEvaluatedKey when any item follows in the partition,
    # matching or not: keep the first item past the range for that.
    if forward:
        hi = min(hi + 1, len(keys))
        if limit and exact:
            hi = min(hi, lo + limit + 1)
    else:
        lo = max(lo - 1, 0)
        if limit and exact:
            lo = max(lo, hi - limit - 1)
    return [partition[k] for k in sorted_keys.dynamo[lo:hi]]


_original_query = ddb_table.Table.query


def query(
    self,
    hash_key,
    range_comparison,
    range_objs,
    limit,
    exclusive_start_key,
    scan_index_forward,
    projection_expressions,
    index_name=None,
    *args,
    **kwargs,
):
    """moto's `Table.query`; on the table's own key (not an index), over the candidates only.
    (A filter expression applies after the page limit, in DynamoDB as in moto, so it does not
    change which items are candidates; a legacy `QueryFilter` does, and skips this.)"""
    call = (
        hash_key,
        range_comparison,
        range_objs,
        limit,
        exclusive_start_key,
        scan_index_forward,
        projection_expressions,
        index_name,
        *args,
    )
    range_conditions = kwargs.get("range_key_conditions") or []
    simple = (
        not index_name
        and hash_key is not None
        and all(name == self.range_key_attr for name, _, _ in range_conditions)
        and not (set(kwargs) - {"hash_key_conditions", "range_key_conditions"})
    )
    if simple:
        items = _candidates(
            self,
            hash_key,
            range_comparison,
            range_objs,
            limit,
            exclusive_start_key,
            scan_index_forward is not False,
        )
        if items is not None:
            return _original_query(_Candidates(self, items), *call, **kwargs)
    return _original_query(self, *call, **kwargs)


def patch_moto():
    ddb_models.DynamoDBBackend.transact_write_items = transact_write_items
    ddb_table.Table.query = query
    ddb_table.Table.put_item = put_item
    ddb_table.Table.delete_item = delete_item
    # moto lists a response class's methods (with `inspect.getmembers`) on every request.
    core_responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        core_responses.method_names_from_class
    )


def self_check(operations=1500, seed=7):
    """Runs one random workload of transactions, writes and queries against moto as it is and
    again with the patches above (in another account), and fails on the first difference in an
    answer, an error (cancellation reasons included), the items or the stream records."""
    import random

    from moto.dynamodb.models import dynamodb_backends

    DynamoType = ddb_models.DynamoType

    def run(account):
        rng = random.Random(seed)
        backend = dynamodb_backends[account]["us-east-1"]
        backend.create_table(
            "events",
            schema=[
                {"AttributeName": "stream", "KeyType": "HASH"},
                {"AttributeName": "version", "KeyType": "RANGE"},
            ],
            attr=[
                {"AttributeName": "stream", "AttributeType": "S"},
                {"AttributeName": "version", "AttributeType": "N"},
            ],
            throughput=None,
            billing_mode="PAY_PER_REQUEST",
            indexes=None,
            global_indexes=None,
            streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            sse_specification=None,
            tags=None,
            deletion_protection_enabled=False,
            warm_throughput=None,
        )
        backend.create_table(
            "claims",
            schema=[{"AttributeName": "key", "KeyType": "HASH"}],
            attr=[{"AttributeName": "key", "AttributeType": "S"}],
            throughput=None,
            billing_mode="PAY_PER_REQUEST",
            indexes=None,
            global_indexes=None,
            streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            sse_specification=None,
            tags=None,
            deletion_protection_enabled=False,
            warm_throughput=None,
        )
        answers = []

        def event_key():
            return {"stream": {"S": f"s{rng.randrange(4)}"}, "version": {"N": str(rng.randrange(12))}}

        def claim_key():
            return {"key": {"S": f"c{rng.randrange(10)}"}}

        def operation():
            kind = rng.choice(["put", "put", "check", "delete", "update"])
            table, key = rng.choice([("events", event_key), ("claims", claim_key)])
            key = key()
            first = next(iter(key))
            condition = rng.choice(
                [None, "attribute_not_exists(#k)", "attribute_exists(#k)", "attribute_not_exists(#k)"]
            )
            op = {"TableName": table}
            if condition:
                op["ConditionExpression"] = condition
                op["ExpressionAttributeNames"] = {"#k": first}
            if rng.random() < 0.5:
                op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            if kind == "put":
                op["Item"] = dict(key, value={"S": f"v{rng.randrange(1000)}"})
                return {"Put": op}
            op["Key"] = key
            if kind == "check":
                op.setdefault("ConditionExpression", "attribute_exists(#k)")
                op.setdefault("ExpressionAttributeNames", {"#k": first})
                return {"ConditionCheck": op}
            if kind == "delete":
                return {"Delete": op}
            op["UpdateExpression"] = "SET #n = :n"
            op.setdefault("ExpressionAttributeNames", {})["#n"] = "n"
            op["ExpressionAttributeValues"] = {":n": {"N": str(rng.randrange(100))}}
            return {"Update": op}

        for _ in range(operations):
            roll = rng.random()
            try:
                if roll < 0.55:
                    items = [operation() for _ in range(rng.randrange(1, 6))]
                    backend.transact_write_items(items)
                    answers.append("committed")
                elif roll < 0.7:
                    key = event_key()
                    backend.put_item(
                        "events",
                        dict(key, value={"S": "plain"}),
                        condition_expression="attribute_not_exists(#k)",
                        expression_attribute_names={"#k": "stream"},
                    )
                    answers.append("put")
                elif roll < 0.75:
                    answers.append(repr(backend.delete_item("events", event_key())))
                else:
                    comparison, values = rng.choice(
                        [
                            (None, []),
                            (">", [rng.randrange(12)]),
                            (">=", [rng.randrange(12)]),
                            ("<", [rng.randrange(12)]),
                            ("<=", [rng.randrange(12)]),
                            ("=", [rng.randrange(12)]),
                            ("BETWEEN", sorted([rng.randrange(12), rng.randrange(12)])),
                        ]
                    )
                    start = None
                    if rng.random() < 0.4:
                        start = {"stream": {"S": "s1"}, "version": {"N": str(rng.randrange(12))}}
                    stream = {"S": f"s{rng.randrange(5)}"}
                    if start:
                        stream = start["stream"]
                    result, scanned, last = backend.get_table("events").query(
                        DynamoType(stream),
                        comparison,
                        [DynamoType({"N": str(v)}) for v in values],
                        rng.choice([None, 1, 2, 5]),
                        start,
                        rng.random() < 0.5,
                        None,
                        None,
                        True,
                        ddb_models.get_filter_expression(None, None, None),
                    )
                    answers.append((sorted_json([r.to_json() for r in result]), scanned, last))
            except Exception as error:  # noqa: BLE001 the answer is what is compared
                answers.append(
                    (type(error).__name__, getattr(error, "description", None) or str(error))
                )
        state = {}
        for name in ("events", "claims"):
            table = backend.get_table(name)
            state[name] = sorted_json([item.to_json() for item in table.all_items()])
            state[name + " stream"] = [
                (
                    r.record["eventName"],
                    r.record["dynamodb"]["SequenceNumber"],
                    sorted_json(r.record["dynamodb"].get("Keys")),
                    sorted_json(r.record["dynamodb"].get("NewImage")),
                    sorted_json(r.record["dynamodb"].get("OldImage")),
                )
                for r in table.stream_shard.items
            ]
        return answers, state

    def sorted_json(value):
        import json

        return json.dumps(value, sort_keys=True)

    expected = run("111111111111")
    patch_moto()
    actual = run("222222222222")
    for index, (want, got) in enumerate(zip(expected[0], actual[0])):
        if want != got:
            sys.exit(f"self-check: answer {index} differs:\n moto:    {want}\n patched: {got}")
    for name in expected[1]:
        if expected[1][name] != actual[1][name]:
            sys.exit(f"self-check: final {name} differs")
    def kind(answer):
        if isinstance(answer, tuple) and len(answer) == 3:
            return "query"
        if isinstance(answer, tuple):
            return answer[0]
        return answer if answer in ("committed", "put") else "delete"

    outcomes = collections.Counter(kind(a) for a in expected[0])
    print(f"self-check: {operations} operations answer alike with and without the patches "
          f"({dict(outcomes)}); items and stream records alike")


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without a log line per request (server errors are still logged):
    under the suite's load, writing those lines cost more than answering some requests."""

    def log_request(self, code="-", size="-"):
        if str(getattr(code, "value", code)).startswith("5"):
            super().log_request(code, size)


def main():
    if sys.argv[1:] == ["--self-check"]:
        self_check()
        return
    host, port = sys.argv[1], int(sys.argv[2])
    patch_moto()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host,
        port,
        Serialised(app),
        threaded=True,
        request_handler=QuietRequestHandler,
    )


if __name__ == "__main__":
    main()
