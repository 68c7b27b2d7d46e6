"""Builder conformance on the Chinook data set: SQLite, PostgreSQL and MySQL agree.

Each case is a builder query and a hand-written SQL equivalent. On every backend the
builder's rows must equal the hand-written SQL's rows, and the builder's rows must be the
same on all three backends (after normalising what the drivers return differently:
Decimal vs float, True vs 1, datetime vs ISO text; docs/TYPES.md).
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.query import avg, case, col, count, exists, func, literal, max_, min_, sum_
from dbsystem.query.sql import QueryFactory, select
from tests.backend_params import SQL_BACKENDS, SQL_TYPES
from tests.conformance import chinook

BACKENDS = SQL_BACKENDS
TYPES = SQL_TYPES
DIALECT = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}


@dataclass
class Case:
    name: str
    build: Callable[[QueryFactory], Any]
    sql: str | dict[str, str]
    params: dict[str, Any] | None = None

    def raw(self, dialect: str) -> str:
        text = self.sql if isinstance(self.sql, str) else self.sql.get(dialect, self.sql["*"])
        return text.replace('"', "`") if dialect == "mysql" else text


def normalise(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (decimal.Decimal, float)):
        return round(float(value), 4)
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    return value


def rows_of(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: normalise(v) for k, v in row.items()} for row in result]


T, AL, AR, G = "Track", "Album", "Artist", "Genre"

CASES = [
    Case(
        "filter_like_order",
        lambda q: (
            q.select("ArtistId", "Name").from_(AR).where("Name", "like", "A%").order_by("Name")
        ),
        {
            "*": 'SELECT "ArtistId", "Name" FROM "Artist" WHERE "Name" LIKE \'A%\' ORDER BY "Name"',
            "sqlite": "SELECT ArtistId, Name FROM Artist WHERE Name GLOB 'A*' ORDER BY Name",
            "mysql": "SELECT ArtistId, Name FROM Artist WHERE Name COLLATE utf8mb4_bin LIKE 'A%' "
            "ORDER BY Name",
        },
    ),
    Case(
        "tracks_per_genre",
        lambda q: (
            q.select(col("g.Name").as_("genre"), count().as_("tracks"))
            .from_(T, alias="t")
            .join(G, on=col("g.GenreId") == col("t.GenreId"), alias="g")
            .group_by("g.Name")
            .order_by("tracks", "desc")
            .order_by("genre")
        ),
        'SELECT g."Name" AS genre, COUNT(*) AS tracks FROM "Track" t JOIN "Genre" g '
        'ON g."GenreId" = t."GenreId" GROUP BY g."Name" ORDER BY tracks DESC, genre',
    ),
    Case(
        "top_artists_three_tables",
        lambda q: (
            q.select(col("a.Name").as_("artist"), count(col("t.TrackId")).as_("tracks"))
            .from_(AR, alias="a")
            .join(AL, on=col("al.ArtistId") == col("a.ArtistId"), alias="al")
            .join(T, on=col("t.AlbumId") == col("al.AlbumId"), alias="t", kind="left")
            .where(col("a.Name").like("A%") & ~col("t.Composer").is_null())
            .group_by("a.Name")
            .order_by("tracks", "desc")
            .order_by("artist")
            .limit(5)
        ),
        {
            "*": 'SELECT a."Name" AS artist, COUNT(t."TrackId") AS tracks FROM "Artist" a '
            'JOIN "Album" al ON al."ArtistId" = a."ArtistId" LEFT JOIN "Track" t '
            'ON t."AlbumId" = al."AlbumId" WHERE a."Name" LIKE \'A%\' AND t."Composer" '
            'IS NOT NULL GROUP BY a."Name" ORDER BY tracks DESC, artist LIMIT 5',
            "sqlite": "SELECT a.Name AS artist, COUNT(t.TrackId) AS tracks FROM Artist a "
            "JOIN Album al ON al.ArtistId = a.ArtistId LEFT JOIN Track t "
            "ON t.AlbumId = al.AlbumId WHERE a.Name GLOB 'A*' AND t.Composer "
            "IS NOT NULL GROUP BY a.Name ORDER BY tracks DESC, artist LIMIT 5",
            "mysql": "SELECT a.Name AS artist, COUNT(t.TrackId) AS tracks FROM Artist a "
            "JOIN Album al ON al.ArtistId = a.ArtistId LEFT JOIN Track t "
            "ON t.AlbumId = al.AlbumId WHERE a.Name COLLATE utf8mb4_bin LIKE 'A%' "
            "AND t.Composer IS NOT NULL GROUP BY a.Name ORDER BY tracks DESC, artist "
            "LIMIT 5",
        },
    ),
    Case(
        "albums_with_many_tracks_having",
        lambda q: (
            q.select(col("al.Title").as_("title"), count().as_("n"))
            .from_(AL, alias="al")
            .join(T, on=col("t.AlbumId") == col("al.AlbumId"), alias="t")
            .group_by("al.AlbumId", "al.Title")
            .having(count(), ">", 25)
            .order_by("n", "desc")
            .order_by("title")
        ),
        'SELECT al."Title" AS title, COUNT(*) AS n FROM "Album" al JOIN "Track" t '
        'ON t."AlbumId" = al."AlbumId" GROUP BY al."AlbumId", al."Title" HAVING COUNT(*) > 25 '
        "ORDER BY n DESC, title",
    ),
    Case(
        "sales_by_country_having_sum",
        lambda q: (
            q.select("BillingCountry", sum_("Total").as_("total"))
            .from_("Invoice")
            .group_by("BillingCountry")
            .having(sum_("Total") > 100)
            .order_by("total", "desc")
            .order_by("BillingCountry")
        ),
        'SELECT "BillingCountry", SUM("Total") AS total FROM "Invoice" GROUP BY '
        '"BillingCountry" HAVING SUM("Total") > 100 ORDER BY total DESC, "BillingCountry"',
    ),
    Case(
        "customers_per_rep_with_concat",
        lambda q: (
            q.select(
                col("e.FirstName").concat(" ", col("e.LastName")).as_("rep"),
                count(col("c.CustomerId")).as_("customers"),
            )
            .from_("Employee", alias="e")
            .join("Customer", on=col("c.SupportRepId") == col("e.EmployeeId"), alias="c")
            .group_by("e.EmployeeId", "e.FirstName", "e.LastName")
            .order_by("rep")
        ),
        {
            "*": 'SELECT e."FirstName" || \' \' || e."LastName" AS rep, COUNT(c."CustomerId") '
            'AS customers FROM "Employee" e JOIN "Customer" c ON c."SupportRepId" = '
            'e."EmployeeId" GROUP BY e."EmployeeId", e."FirstName", e."LastName" ORDER BY rep',
            "mysql": "SELECT CONCAT(e.FirstName, ' ', e.LastName) AS rep, COUNT(c.CustomerId) "
            "AS customers FROM Employee e JOIN Customer c ON c.SupportRepId = "
            "e.EmployeeId GROUP BY e.EmployeeId, e.FirstName, e.LastName ORDER BY rep",
        },
    ),
    Case(
        "in_subquery",
        lambda q: (
            q.select("TrackId", "Name")
            .from_(T)
            .where(col("AlbumId").in_(select("AlbumId").from_(AL).where("ArtistId", "=", 22)))
            .order_by("TrackId")
        ),
        'SELECT "TrackId", "Name" FROM "Track" WHERE "AlbumId" IN (SELECT "AlbumId" FROM '
        '"Album" WHERE "ArtistId" = :a) ORDER BY "TrackId"',
        {"a": 22},
    ),
    Case(
        "scalar_subquery_in_select",
        lambda q: (
            q.select(
                "a.Name",
                select(count())
                .from_(AL, alias="al")
                .where(col("al.ArtistId") == col("a.ArtistId"))
                .as_("albums"),
            )
            .from_(AR, alias="a")
            .order_by("albums", "desc")
            .order_by("a.Name")
            .limit(10)
        ),
        'SELECT a."Name", (SELECT COUNT(*) FROM "Album" al WHERE al."ArtistId" = '
        'a."ArtistId") AS albums FROM "Artist" a ORDER BY albums DESC, a."Name" LIMIT 10',
    ),
    Case(
        "exists",
        lambda q: (
            q.select("a.Name")
            .from_(AR, alias="a")
            .where(
                exists(
                    select(literal(1))
                    .from_(AL, alias="al")
                    .where(
                        (col("al.ArtistId") == col("a.ArtistId"))
                        & col("al.Title").like("%Greatest%")
                    )
                )
            )
            .order_by("a.Name")
        ),
        {
            "*": 'SELECT a."Name" FROM "Artist" a WHERE EXISTS (SELECT 1 FROM "Album" al WHERE '
            'al."ArtistId" = a."ArtistId" AND al."Title" LIKE \'%Greatest%\') ORDER BY a."Name"',
            "sqlite": "SELECT a.Name FROM Artist a WHERE EXISTS (SELECT 1 FROM Album al WHERE "
            "al.ArtistId = a.ArtistId AND al.Title GLOB '*Greatest*') ORDER BY a.Name",
            "mysql": "SELECT a.Name FROM Artist a WHERE EXISTS (SELECT 1 FROM Album al WHERE "
            "al.ArtistId = a.ArtistId AND al.Title COLLATE utf8mb4_bin LIKE "
            "'%Greatest%') ORDER BY a.Name",
        },
    ),
    Case(
        "not_exists_count",
        lambda q: (
            q.select(count().as_("n"))
            .from_(AR, alias="a")
            .where(
                ~exists(
                    select(literal(1))
                    .from_(AL, alias="al")
                    .where(col("al.ArtistId") == col("a.ArtistId"))
                )
            )
        ),
        'SELECT COUNT(*) AS n FROM "Artist" a WHERE NOT EXISTS (SELECT 1 FROM "Album" al '
        'WHERE al."ArtistId" = a."ArtistId")',
    ),
    Case(
        "subquery_in_from",
        lambda q: q.select(max_("s.n").as_("most"), min_("s.n").as_("fewest")).from_(
            select("AlbumId", count().as_("n")).from_(T).group_by("AlbumId"), alias="s"
        ),
        'SELECT MAX(s.n) AS most, MIN(s.n) AS fewest FROM (SELECT "AlbumId", COUNT(*) AS n '
        'FROM "Track" GROUP BY "AlbumId") s',
    ),
    Case(
        "cte",
        lambda q: (
            q.with_(
                "genre_time",
                select("GenreId", sum_("Milliseconds").as_("ms")).from_(T).group_by("GenreId"),
            )
            .select("g.Name", "gt.ms")
            .from_("genre_time", alias="gt")
            .join(G, on=col("g.GenreId") == col("gt.GenreId"), alias="g")
            .order_by("gt.ms", "desc")
            .limit(5)
        ),
        'WITH genre_time AS (SELECT "GenreId", SUM("Milliseconds") AS ms FROM "Track" GROUP BY '
        '"GenreId") SELECT g."Name", gt.ms FROM genre_time gt JOIN "Genre" g ON g."GenreId" = '
        'gt."GenreId" ORDER BY gt.ms DESC LIMIT 5',
    ),
    Case(
        "recursive_cte_hierarchy",
        lambda q: (
            q.with_recursive(
                "chain",
                select("EmployeeId", literal(0).as_("depth"))
                .from_("Employee")
                .where("EmployeeId", "=", 1),
                select("e.EmployeeId", (col("c.depth") + 1).as_("depth"))
                .from_("Employee", alias="e")
                .join("chain", on=col("e.ReportsTo") == col("c.EmployeeId"), alias="c"),
                columns=["EmployeeId", "depth"],
            )
            .select("EmployeeId", "depth")
            .from_("chain")
            .order_by("depth")
            .order_by("EmployeeId")
        ),
        'WITH RECURSIVE chain("EmployeeId", depth) AS (SELECT "EmployeeId", 0 FROM "Employee" '
        'WHERE "EmployeeId" = 1 UNION ALL SELECT e."EmployeeId", c.depth + 1 FROM "Employee" e '
        'JOIN chain c ON e."ReportsTo" = c."EmployeeId") SELECT "EmployeeId", depth FROM chain '
        'ORDER BY depth, "EmployeeId"',
    ),
    Case(
        "window_longest_track_per_genre",
        lambda q: (
            q.select("s.GenreId", "s.Name", "s.Milliseconds")
            .from_(
                select(
                    "GenreId",
                    "Name",
                    "Milliseconds",
                    func.row_number()
                    .over(
                        partition_by="GenreId",
                        order_by=[col("Milliseconds").desc(), col("TrackId").asc()],
                    )
                    .as_("rn"),
                ).from_(T),
                alias="s",
            )
            .where("s.rn", "=", 1)
            .order_by("s.GenreId")
        ),
        'SELECT s."GenreId", s."Name", s."Milliseconds" FROM (SELECT "GenreId", "Name", '
        '"Milliseconds", ROW_NUMBER() OVER (PARTITION BY "GenreId" ORDER BY "Milliseconds" '
        'DESC, "TrackId") AS rn FROM "Track") s WHERE s.rn = 1 ORDER BY s."GenreId"',
    ),
    Case(
        "window_rank_best_sellers",
        lambda q: (
            q.select(
                "TrackId",
                count().as_("sold"),
                func.rank().over(order_by=count().desc()).as_("position"),
            )
            .from_("InvoiceLine")
            .group_by("TrackId")
            .order_by("position")
            .order_by("TrackId")
            .limit(10)
        ),
        'SELECT "TrackId", COUNT(*) AS sold, RANK() OVER (ORDER BY COUNT(*) DESC) '
        'AS position FROM "InvoiceLine" GROUP BY "TrackId" ORDER BY position, "TrackId" '
        "LIMIT 10",
    ),
    Case(
        "union_cities",
        lambda q: (
            q.select(col("City").as_("city"))
            .from_("Customer")
            .union(select(col("City").as_("city")).from_("Employee"))
            .order_by("city")
        ),
        'SELECT "City" AS city FROM "Customer" UNION SELECT "City" AS city FROM "Employee" '
        "ORDER BY city",
    ),
    Case(
        "union_all_count",
        lambda q: q.select(count().as_("n")).from_(
            select("Country").from_("Customer").union_all(select("Country").from_("Employee")),
            alias="u",
        ),
        'SELECT COUNT(*) AS n FROM (SELECT "Country" FROM "Customer" UNION ALL SELECT '
        '"Country" FROM "Employee") u',
    ),
    Case(
        "intersect_countries",
        lambda q: (
            q.select("Country")
            .from_("Customer")
            .intersect(select("Country").from_("Employee"))
            .order_by("Country")
        ),
        'SELECT "Country" FROM "Customer" INTERSECT SELECT "Country" FROM "Employee" '
        'ORDER BY "Country"',
    ),
    Case(
        "except_countries",
        lambda q: (
            q.select("Country")
            .from_("Customer")
            .except_(select("Country").from_("Employee"))
            .order_by("Country")
        ),
        'SELECT "Country" FROM "Customer" EXCEPT SELECT "Country" FROM "Employee" '
        'ORDER BY "Country"',
    ),
    Case(
        "between_grouped",
        lambda q: (
            q.select("MediaTypeId", count().as_("n"))
            .from_(T)
            .where("Milliseconds", "between", (200000, 210000))
            .group_by("MediaTypeId")
            .order_by("MediaTypeId")
        ),
        'SELECT "MediaTypeId", COUNT(*) AS n FROM "Track" WHERE "Milliseconds" BETWEEN 200000 '
        'AND 210000 GROUP BY "MediaTypeId" ORDER BY "MediaTypeId"',
    ),
    Case(
        "in_list",
        lambda q: q.select("Name").from_(G).where(col("GenreId").in_([1, 2, 3])).order_by("Name"),
        'SELECT "Name" FROM "Genre" WHERE "GenreId" IN (1, 2, 3) ORDER BY "Name"',
    ),
    Case(
        "not_in_list",
        lambda q: q.select(count().as_("n")).from_(T).where(col("GenreId").not_in([1, 2])),
        'SELECT COUNT(*) AS n FROM "Track" WHERE "GenreId" NOT IN (1, 2)',
    ),
    Case(
        "is_null",
        lambda q: q.select(count().as_("n")).from_("Customer").where("Company", "is", None),
        'SELECT COUNT(*) AS n FROM "Customer" WHERE "Company" IS NULL',
    ),
    Case(
        "ilike_case_insensitive",
        lambda q: q.select(count().as_("n")).from_(T).where(col("Name").ilike("%love%")),
        'SELECT COUNT(*) AS n FROM "Track" WHERE LOWER("Name") LIKE \'%love%\'',
    ),
    Case(
        "like_case_sensitive",
        lambda q: q.select(count().as_("n")).from_(T).where(col("Name").like("%Love%")),
        {
            "*": 'SELECT COUNT(*) AS n FROM "Track" WHERE "Name" LIKE \'%Love%\'',
            "sqlite": "SELECT COUNT(*) AS n FROM Track WHERE Name GLOB '*Love*'",
            "mysql": "SELECT COUNT(*) AS n FROM Track WHERE Name COLLATE utf8mb4_bin LIKE '%Love%'",
        },
    ),
    Case(
        "distinct",
        lambda q: q.select("BillingCountry").distinct().from_("Invoice").order_by("BillingCountry"),
        'SELECT DISTINCT "BillingCountry" FROM "Invoice" ORDER BY "BillingCountry"',
    ),
    Case(
        "true_division",
        lambda q: (
            q.select("TrackId", (col("Milliseconds") / 1000).as_("seconds"))
            .from_(T)
            .where("AlbumId", "=", 1)
            .order_by("TrackId")
        ),
        {
            "*": 'SELECT "TrackId", "Milliseconds" / 1000.0 AS seconds FROM "Track" '
            'WHERE "AlbumId" = 1 ORDER BY "TrackId"'
        },
    ),
    Case(
        "case_buckets",
        lambda q: (
            q.select(
                case(
                    (col("Milliseconds") < 180000, "short"),
                    (col("Milliseconds") < 300000, "medium"),
                    else_="long",
                ).as_("bucket"),
                count().as_("n"),
            )
            .from_(T)
            .group_by("bucket")
            .order_by("bucket")
        ),
        'SELECT CASE WHEN "Milliseconds" < 180000 THEN \'short\' WHEN "Milliseconds" < 300000 '
        "THEN 'medium' ELSE 'long' END AS bucket, COUNT(*) AS n FROM \"Track\" "
        "GROUP BY bucket ORDER BY bucket",
    ),
    Case(
        "nulls_sort_low_by_default",
        lambda q: (
            q.select("EmployeeId", "ReportsTo")
            .from_("Employee")
            .order_by("ReportsTo")
            .order_by("EmployeeId")
        ),
        {
            "*": 'SELECT "EmployeeId", "ReportsTo" FROM "Employee" ORDER BY "ReportsTo", '
            '"EmployeeId"',
            "postgresql": 'SELECT "EmployeeId", "ReportsTo" FROM "Employee" ORDER BY "ReportsTo" '
            'NULLS FIRST, "EmployeeId"',
        },
    ),
    Case(
        "nulls_last_on_request",
        lambda q: (
            q.select("EmployeeId", "ReportsTo")
            .from_("Employee")
            .order_by("ReportsTo", nulls="last")
            .order_by("EmployeeId")
        ),
        {
            "*": 'SELECT "EmployeeId", "ReportsTo" FROM "Employee" ORDER BY "ReportsTo" '
            'NULLS LAST, "EmployeeId"',
            "mysql": "SELECT EmployeeId, ReportsTo FROM Employee ORDER BY ReportsTo IS NULL, "
            "ReportsTo, EmployeeId",
        },
    ),
    Case(
        # MySQL refuses an aggregate's alias inside an expression (its NULLs flag): the
        # flag tests the aggregate itself (found by the differential fuzzer, issue 21).
        "nulls_last_on_an_aggregate_alias",
        lambda q: (
            q.select("AlbumId", max_("Composer").as_("c"))
            .from_(T)
            .where(col("AlbumId") < 12)
            .group_by("AlbumId")
            .order_by("c", nulls="last")
            .order_by("AlbumId")
        ),
        {
            "*": 'SELECT "AlbumId", max("Composer") AS c FROM "Track" WHERE "AlbumId" < 12 '
            'GROUP BY "AlbumId" ORDER BY c NULLS LAST, "AlbumId"',
            "mysql": "SELECT AlbumId, max(Composer) AS c FROM Track WHERE AlbumId < 12 "
            "GROUP BY AlbumId ORDER BY max(Composer) IS NULL, c, AlbumId",
        },
    ),
    Case(
        "count_distinct",
        lambda q: (
            q.select(count("AlbumId", distinct=True).as_("albums"))
            .from_(T)
            .where("GenreId", "=", 1)
        ),
        'SELECT COUNT(DISTINCT "AlbumId") AS albums FROM "Track" WHERE "GenreId" = 1',
    ),
    Case(
        "left_join_missing",
        lambda q: (
            q.select(count().as_("n"))
            .from_(AR, alias="a")
            .join(AL, on=col("al.ArtistId") == col("a.ArtistId"), alias="al", kind="left")
            .where(col("al.AlbumId").is_null())
        ),
        'SELECT COUNT(*) AS n FROM "Artist" a LEFT JOIN "Album" al ON al."ArtistId" = '
        'a."ArtistId" WHERE al."AlbumId" IS NULL',
    ),
    Case(
        "right_join",
        lambda q: (
            q.select(count().as_("n"))
            .from_(AL, alias="al")
            .join(AR, on=col("al.ArtistId") == col("a.ArtistId"), alias="a", kind="right")
            .where(col("al.AlbumId").is_null())
        ),
        'SELECT COUNT(*) AS n FROM "Artist" a LEFT JOIN "Album" al ON al."ArtistId" = '
        'a."ArtistId" WHERE al."AlbumId" IS NULL',
    ),
    Case(
        "cross_join",
        lambda q: (
            q.select(count().as_("n"))
            .from_(G, alias="g")
            .join("MediaType", alias="m", kind="cross")
        ),
        'SELECT COUNT(*) AS n FROM "Genre" g CROSS JOIN "MediaType" m',
    ),
    Case(
        "pagination",
        lambda q: q.select("TrackId").from_(T).order_by("TrackId").limit(5).offset(10),
        'SELECT "TrackId" FROM "Track" ORDER BY "TrackId" LIMIT 5 OFFSET 10',
    ),
    Case(
        "aggregates",
        lambda q: q.select(
            min_("Total").as_("lo"),
            max_("Total").as_("hi"),
            avg("Total").as_("mean"),
            count().as_("n"),
        ).from_("Invoice"),
        'SELECT MIN("Total") AS lo, MAX("Total") AS hi, AVG("Total") AS mean, COUNT(*) AS n '
        'FROM "Invoice"',
    ),
    Case(
        "expression_where_or",
        lambda q: (
            q.select("TrackId")
            .from_(T)
            .where(((col("GenreId") == 25) | (col("MediaTypeId") == 5)) & (col("TrackId") < 3400))
            .order_by("TrackId")
        ),
        'SELECT "TrackId" FROM "Track" WHERE ("GenreId" = 25 OR "MediaTypeId" = 5) AND '
        '"TrackId" < 3400 ORDER BY "TrackId"',
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def chinook_db(request, tmp_path_factory):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path_factory.mktemp('chinook')}/chinook.db"
        if kind == "sqlite"
        else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], url)
    chinook.load(manager)
    manager.kind = kind  # type: ignore[attr-defined]
    yield manager
    manager.close_all()


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory):
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.SQLITE, f"sqlite:///{tmp_path_factory.mktemp('reference')}/chinook.db"
    )
    chinook.load(manager)
    yield manager
    manager.close_all()


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_builder_matches_hand_written_sql_and_sqlite(chinook_db, sqlite_reference, case):
    built = rows_of(case.build(chinook_db.query()).execute())
    raw = rows_of(chinook_db.fetch_all(case.raw(DIALECT[chinook_db.kind]), case.params))
    assert built, "a conformance query should return rows"
    assert built == raw
    # The same builder query gives the same rows on every backend.
    assert built == rows_of(case.build(sqlite_reference.query()).execute())
