"""Geometry: vectors, segments, polygons, hull, closest pair; against shapely and brute force."""

from __future__ import annotations

import math
import random
from itertools import combinations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepnotes.algorithms import geometry as G

shapely = pytest.importorskip("shapely")
from shapely.geometry import LineString, MultiPoint, Point, Polygon  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None)
coord = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
point = st.tuples(coord, coord)
grid = st.tuples(st.integers(-4, 4), st.integers(-4, 4))  # small grid: many degenerate cases
grid_f = grid.map(lambda p: (float(p[0]), float(p[1])))


def test_eps_comparisons():
    assert G.eq(0.1 + 0.2, 0.3) and not (0.1 + 0.2 == 0.3)
    assert G.sign(1e-9) == 0 and G.sign(-1e-7) == -1 and G.sign(2e-8) == 1
    assert G.lt(1.0, 1.1) and not G.lt(1.0, 1.0 + 1e-9) and G.le(1.0 + 1e-9, 1.0)


@SETTINGS
@given(point, point, st.floats(-10, 10))
def test_vector_identities(a, b, theta):
    a, b = G.Vec(*a), G.Vec(*b)
    assume(G.norm(a) > 1e-3 and G.norm(b) > 1e-3)
    # |a|^2 |b|^2 = (a.b)^2 + (a x b)^2
    lhs = (G.norm(a) * G.norm(b)) ** 2
    assert math.isclose(lhs, G.dot(a, b) ** 2 + G.cross(a, b) ** 2, rel_tol=1e-9)
    r = G.rotate(a, theta)
    assert math.isclose(G.norm(r), G.norm(a), rel_tol=1e-12)
    assert abs(math.remainder(G.signed_angle(a, r) - theta, math.tau)) < 1e-7
    assert 0 <= G.angle(a, b) <= math.pi
    assert math.isclose(
        math.cos(G.angle(a, b)), G.dot(a, b) / (G.norm(a) * G.norm(b)), abs_tol=1e-9
    )


def test_rotation_and_angle_examples():
    r = G.rotate((1, 0), math.pi / 2)
    assert G.eq(r.x, 0) and G.eq(r.y, 1)
    assert G.eq(G.angle((1, 0), (0, 3)), math.pi / 2)
    assert G.eq(G.signed_angle((1, 0), (0, -1)), -math.pi / 2)
    with pytest.raises(ValueError, match="zero vector"):
        G.angle((0, 0), (1, 0))


@SETTINGS
@given(point, point, point)
def test_projection_is_orthogonal_and_matches_shapely(p, a, b):
    assume(G.norm(G.Vec(*b) - a) > 1e-2)
    q = G.project(p, a, b)
    d = G.Vec(*b) - a
    assert abs(G.dot(G.Vec(*p) - q, d)) <= 1e-6 * (1 + G.norm(d) * G.norm(G.Vec(*p) - q))
    assert G.distance_to_line(p, a, b) == pytest.approx(G.norm(G.Vec(*p) - q), abs=1e-6)
    seg = LineString([a, b])
    assert G.distance_to_segment(p, a, b) == pytest.approx(seg.distance(Point(p)), abs=1e-6)


@settings(max_examples=400, deadline=None)
@given(grid, grid, grid, grid)
def test_segment_intersection_matches_shapely(a, b, c, d):
    """Integer grid points: crossings, touching ends, collinear overlaps, zero lengths."""
    got = G.segment_intersection(a, b, c, d)
    sa = LineString([a, b]) if a != b else Point(a)
    sc = LineString([c, d]) if c != d else Point(c)
    assert G.segments_intersect(a, b, c, d) == sa.intersects(sc)
    want = sa.intersection(sc)
    if got is None:
        assert want.is_empty
    elif isinstance(got, G.Vec):
        assert want.geom_type == "Point"
        assert got.x == pytest.approx(want.x, abs=1e-9) and got.y == pytest.approx(want.y, abs=1e-9)
    else:
        assert want.geom_type == "LineString"
        ends = sorted(tuple(round(v, 9) for v in p) for p in want.coords)
        assert sorted(tuple(round(v, 9) for v in p) for p in got) == ends


def test_segment_cases_by_hand():
    assert G.segment_intersection((0, 0), (2, 2), (0, 2), (2, 0)) == (1, 1)  # crossing
    assert G.segment_intersection((0, 0), (1, 0), (1, 0), (1, 5)) == (1, 0)  # touching ends
    assert G.segment_intersection((0, 0), (4, 0), (2, 0), (6, 0)) == ((2, 0), (4, 0))  # overlap
    assert G.segment_intersection((0, 0), (1, 0), (2, 0), (3, 0)) is None  # collinear, apart
    assert G.segment_intersection((0, 0), (1, 1), (0, 1), (1, 2)) is None  # parallel
    # within EPS of touching counts as touching
    assert G.segments_intersect((0, 0), (1, 0), (0.5, 1e-10), (0.5, 1))


def star_polygon(rng: random.Random, n: int):
    """A random simple polygon: points sorted by angle around the origin."""
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))
    return [(math.cos(t) * rng.uniform(1, 10), math.sin(t) * rng.uniform(1, 10)) for t in angles]


@pytest.mark.parametrize("n", [3, 4, 7, 20])
def test_polygon_area_and_point_in_polygon_vs_shapely(n, seed):
    rng = random.Random(seed)
    for _ in range(20):
        poly = star_polygon(rng, n)
        shp = Polygon(poly)
        if not shp.is_valid:
            continue
        signed = shp.area if shp.exterior.is_ccw else -shp.area  # CCW: positive
        assert G.polygon_area(poly) == pytest.approx(signed, rel=1e-12)
        assert G.polygon_area(poly[::-1]) == pytest.approx(-signed, rel=1e-12)
        for _ in range(30):
            p = (rng.uniform(-11, 11), rng.uniform(-11, 11))
            want = G.INSIDE if shp.contains(Point(p)) else G.OUTSIDE
            if shp.boundary.distance(Point(p)) > 1e-6:
                assert G.point_in_polygon(p, poly) == want
                assert G.point_in_polygon(p, poly[::-1]) == want
        # vertices and edge midpoints are on the boundary
        for i in range(n):
            a, b = poly[i], poly[(i + 1) % n]
            assert G.point_in_polygon(a, poly) == G.BOUNDARY
            assert G.point_in_polygon(((a[0] + b[0]) / 2, (a[1] + b[1]) / 2), poly) == G.BOUNDARY


def test_point_in_polygon_ray_through_vertices():
    square = [(0, 0), (2, 0), (2, 2), (0, 2)]
    diamond = [(0, -1), (1, 0), (0, 1), (-1, 0)]
    assert G.point_in_polygon((1, 1), square) == G.INSIDE
    assert G.point_in_polygon((-1, 0), square) == G.OUTSIDE  # ray passes through 2 vertices
    assert G.point_in_polygon((-2, 0), diamond) == G.OUTSIDE  # ray through vertices (-1,0),(1,0)
    assert G.point_in_polygon((0, 0), diamond) == G.INSIDE
    assert G.point_in_polygon((2, 1), square) == G.BOUNDARY
    with pytest.raises(ValueError, match="3 vertices"):
        G.point_in_polygon((0, 0), [(0, 0), (1, 1)])


@SETTINGS
@given(st.lists(st.one_of(point, grid_f), max_size=40))
def test_convex_hull_vs_shapely_and_brute_force(pts):
    hull = G.convex_hull(pts)
    distinct = {G.Vec(*p) for p in pts}
    assert set(hull) <= distinct  # vertices are input points
    if len(distinct) < 3:
        assert sorted(hull) == sorted(distinct)
        return
    want = MultiPoint(pts).convex_hull
    tol = 1e-6
    if len(hull) == 2:  # all points within EPS of one line
        seg = LineString(hull)
        assert all(seg.distance(Point(p)) <= tol for p in pts)
        assert want.area <= tol * seg.length
        return
    assert len(hull) >= 3
    assert G.polygon_area(hull) == pytest.approx(want.area, rel=1e-9, abs=tol)
    m = len(hull)
    for i in range(m):
        a, b, c = hull[i], hull[(i + 1) % m], hull[(i + 2) % m]
        # brute force: every point is left of, or within tol of, every edge (CCW order)
        for p in pts:
            assert G.cross(b - a, G.Vec(*p) - a) / G.norm(b - a) >= -tol
        # convex: no right turn a -> b -> c beyond rounding
        assert G.cross(b - a, c - a) >= -1e-9 * G.norm(b - a) * G.norm(c - a)


@SETTINGS
@given(st.lists(grid_f, max_size=30))
def test_convex_hull_with_eps_on_grid_points(pts):
    # Grid points are 1 apart, so eps = 1e-8 changes nothing, and collinear points go.
    hull = G.convex_hull(pts)
    assert G.convex_hull(pts, eps=G.EPS) == hull
    m = len(hull)
    if m >= 3:  # exact arithmetic on small integers: strictly convex, no collinear vertex
        assert all(
            G.orientation(hull[i], hull[(i + 1) % m], hull[(i + 2) % m]) == 1 for i in range(m)
        )
        assert G.polygon_area(hull) == pytest.approx(MultiPoint(pts).convex_hull.area, abs=1e-12)


def test_convex_hull_drops_collinear_and_near_collinear_points():
    square = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (1, 2), (0, 2), (0, 1), (1, 1)]
    assert G.convex_hull(square) == [(0, 0), (2, 0), (2, 2), (0, 2)]
    bumped = [(0, 0), (1, -1e-10), (2, 0), (1, 5)]  # (1, -1e-10) is within EPS of an edge
    assert G.convex_hull(bumped) == [(0, 0), (1, -1e-10), (2, 0), (1, 5)]
    assert G.convex_hull(bumped, eps=G.EPS) == [(0, 0), (2, 0), (1, 5)]
    assert G.convex_hull([(0, 0), (1, 1), (2, 2), (1, 1)]) == [(0, 0), (2, 2)]


@SETTINGS
@given(
    st.lists(
        st.one_of(point, grid.map(lambda p: (float(p[0]), float(p[1])))), min_size=2, max_size=60
    )
)
def test_closest_pair_vs_brute_force(pts):
    dist, (p, q) = G.closest_pair(pts)
    want = min(math.dist(a, b) for a, b in combinations(pts, 2))
    assert dist == pytest.approx(want, abs=1e-12)
    assert math.dist(p, q) == pytest.approx(dist, abs=1e-12)


def test_closest_pair_large_random(seed):
    rng = random.Random(seed)
    pts = [(rng.uniform(0, 1000), rng.uniform(0, 1000)) for _ in range(1500)]
    dist, _ = G.closest_pair(pts)
    pts.sort()  # brute force with an x-window
    best = math.inf
    for i, a in enumerate(pts):
        for b in pts[i + 1 :]:
            if b[0] - a[0] >= best:
                break
            best = min(best, math.dist(a, b))
    assert dist == best
    with pytest.raises(ValueError, match="at least 2"):
        G.closest_pair([(0, 0)])
