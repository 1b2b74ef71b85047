"""Plane computational geometry with EPS-aware comparisons (the note's conventions).

Floating-point results carry rounding error, so two numbers are treated as equal when they
differ by at most EPS (1e-8 by default), and every predicate goes through `sign`. Points and
vectors are `Vec(x, y)`; any (x, y) pair is accepted where a point is expected.

- vectors: dot, cross, norm, angle, rotation, projection onto a line, distances;
- segments: orientation, on-segment test, intersection test and intersection geometry
  (a point, or the overlap segment of collinear segments), touching ends included;
- polygons: signed area (shoelace, counter-clockwise positive), point in polygon
  (inside / on the boundary / outside);
- convex hull by Andrew's monotone chain, O(n log n);
- closest pair of points by divide and conquer, O(n log n).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

EPS = 1e-8


def sign(x: float, eps: float = EPS) -> int:
    """-1, 0 or 1, with |x| <= eps counted as 0."""
    return 0 if abs(x) <= eps else (1 if x > 0 else -1)


def eq(a: float, b: float, eps: float = EPS) -> bool:
    return sign(a - b, eps) == 0


def lt(a: float, b: float, eps: float = EPS) -> bool:
    """a < b by more than eps."""
    return sign(a - b, eps) < 0


def le(a: float, b: float, eps: float = EPS) -> bool:
    return sign(a - b, eps) <= 0


class Vec(NamedTuple):
    """A point or a vector in the plane."""

    x: float
    y: float

    def __add__(self, o) -> Vec:  # type: ignore[override]
        return Vec(self.x + o[0], self.y + o[1])

    def __sub__(self, o) -> Vec:
        return Vec(self.x - o[0], self.y - o[1])

    def __mul__(self, k: float) -> Vec:  # type: ignore[override]
        return Vec(self.x * k, self.y * k)

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Vec:
        return Vec(self.x / k, self.y / k)

    def __neg__(self) -> Vec:
        return Vec(-self.x, -self.y)


def vec(p) -> Vec:
    return p if isinstance(p, Vec) else Vec(float(p[0]), float(p[1]))


def dot(a, b) -> float:
    """a . b = |a||b| cos(theta)."""
    return a[0] * b[0] + a[1] * b[1]


def cross(a, b) -> float:
    """a x b (z component) = |a||b| sin(theta): > 0 when b is counter-clockwise of a."""
    return a[0] * b[1] - a[1] * b[0]


def norm(a) -> float:
    return math.hypot(a[0], a[1])


def angle(a, b) -> float:
    """Unsigned angle between two non-zero vectors, in [0, pi] (atan2 is accurate at 0, pi)."""
    if sign(norm(a)) == 0 or sign(norm(b)) == 0:
        raise ValueError("the angle with a zero vector is undefined")
    return math.atan2(abs(cross(a, b)), dot(a, b))


def signed_angle(a, b) -> float:
    """Angle from a to b in (-pi, pi], counter-clockwise positive."""
    return math.atan2(cross(a, b), dot(a, b))


def rotate(a, theta: float) -> Vec:
    """a rotated counter-clockwise by theta radians."""
    c, s = math.cos(theta), math.sin(theta)
    return Vec(a[0] * c - a[1] * s, a[0] * s + a[1] * c)


def project(p, a, b) -> Vec:
    """Orthogonal projection of point p onto the line through a and b (a != b)."""
    a, b, p = vec(a), vec(b), vec(p)
    d = b - a
    dd = dot(d, d)
    if sign(dd) == 0:
        raise ValueError("the line through two equal points is undefined")
    return a + d * (dot(p - a, d) / dd)


def distance_to_line(p, a, b) -> float:
    a, b, p = vec(a), vec(b), vec(p)
    return abs(cross(b - a, p - a)) / norm(b - a)


def distance_to_segment(p, a, b) -> float:
    a, b, p = vec(a), vec(b), vec(p)
    if a == b:
        return norm(p - a)
    if sign(dot(p - a, b - a)) < 0:
        return norm(p - a)
    if sign(dot(p - b, a - b)) < 0:
        return norm(p - b)
    return distance_to_line(p, a, b)


def orientation(a, b, c, eps: float = EPS) -> int:
    """1: a -> b -> c turns left (counter-clockwise), -1: right, 0: collinear."""
    a, b, c = vec(a), vec(b), vec(c)
    return sign(cross(b - a, c - a), eps)


def on_segment(p, a, b, eps: float = EPS) -> bool:
    """p lies on the closed segment ab (collinear and between the ends)."""
    a, b, p = vec(a), vec(b), vec(p)
    return sign(cross(a - p, b - p), eps) == 0 and sign(dot(a - p, b - p), eps) <= 0


def segments_intersect(a, b, c, d, eps: float = EPS) -> bool:
    """Closed segments ab and cd share a point (crossing, touching or collinear overlap)."""
    d1, d2 = orientation(a, b, c, eps), orientation(a, b, d, eps)
    d3, d4 = orientation(c, d, a, eps), orientation(c, d, b, eps)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True  # proper crossing
    return (
        (d1 == 0 and on_segment(c, a, b, eps))
        or (d2 == 0 and on_segment(d, a, b, eps))
        or (d3 == 0 and on_segment(a, c, d, eps))
        or (d4 == 0 and on_segment(b, c, d, eps))
    )


def segment_intersection(a, b, c, d, eps: float = EPS):
    """The common part of closed segments ab and cd: None, a `Vec`, or a pair of `Vec`s (the
    overlap of collinear segments; a pair with equal ends is returned as one point)."""
    a, b, c, d = vec(a), vec(b), vec(c), vec(d)
    if not segments_intersect(a, b, c, d, eps):
        return None
    r, s = b - a, d - c
    denom = cross(r, s)
    if sign(denom, eps) != 0 and not (a == b or c == d):
        t = cross(c - a, s) / denom
        return a + r * t
    # Collinear (or degenerate): the overlap of the two ranges along the common direction.
    pts = [p for p in (a, b) if on_segment(p, c, d, eps)] + [
        p for p in (c, d) if on_segment(p, a, b, eps)
    ]
    axis = r if sign(norm(r)) else s
    pts.sort(key=lambda p: dot(p, axis))
    lo, hi = pts[0], pts[-1]
    return lo if sign(norm(hi - lo), eps) == 0 else (lo, hi)


def polygon_area(poly: Sequence) -> float:
    """Signed area by the shoelace formula: > 0 for counter-clockwise vertex order."""
    n = len(poly)
    return 0.5 * sum(cross(poly[i], poly[(i + 1) % n]) for i in range(n))


INSIDE, BOUNDARY, OUTSIDE = 1, 0, -1


def point_in_polygon(p, poly: Sequence, eps: float = EPS) -> int:
    """INSIDE (1), BOUNDARY (0) or OUTSIDE (-1) for a simple polygon (either orientation).

    Crossing number: count the edges that a ray from p to the right crosses, each edge taken
    half-open in y so that a vertex on the ray counts once.
    """
    p = vec(p)
    n = len(poly)
    if n < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, got {n}")
    inside = False
    for i in range(n):
        a, b = vec(poly[i]), vec(poly[(i + 1) % n])
        if on_segment(p, a, b, eps):
            return BOUNDARY
        if (a.y > p.y) != (b.y > p.y):
            x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y)
            if x > p.x:
                inside = not inside
    return INSIDE if inside else OUTSIDE


def convex_hull(points: Iterable, eps: float = 0.0) -> list[Vec]:
    """Andrew's monotone chain: hull vertices counter-clockwise from the lowest-x (then
    lowest-y) point, without collinear points. Fewer than 3 distinct points: those points;
    all points on one line: its two extreme points.

    A middle point b of a -> b -> p stays only if it lies more than `eps` to the right of the
    line a -> p (a left turn by a margin); the test is on that distance, cross / |p - a|, so
    it means the same at every scale. The default eps = 0 keeps every vertex that floating
    point sees as a strict turn. With eps > 0, points within eps of a hull edge are dropped;
    that assumes such a point lies between the edge's ends in (x, y) order, which can fail
    when the edge is within eps of vertical, so eps > 0 is for inputs whose distinct points
    are more than eps apart in x (grid data, for instance).
    """
    pts = sorted(set(vec(p) for p in points))
    if len(pts) <= 2:
        return pts

    def chain(seq):
        out: list[Vec] = []
        for p in seq:
            while len(out) >= 2:
                a, b = out[-2], out[-1]
                if cross(b - a, p - a) > eps * norm(p - a):
                    break  # left turn: b is a hull vertex (for now)
                out.pop()  # b is inside, or within eps of the edge a -> p
            out.append(p)
        return out

    lower, upper = chain(pts), chain(reversed(pts))
    return lower[:-1] + upper[:-1]


def closest_pair(points: Sequence) -> tuple[float, tuple[Vec, Vec]]:
    """(distance, (p, q)) of the closest two points, by divide and conquer in O(n log n)."""
    pts = sorted(vec(p) for p in points)
    if len(pts) < 2:
        raise ValueError("closest_pair needs at least 2 points")

    def solve(lo: int, hi: int) -> tuple[float, tuple[Vec, Vec], list[Vec]]:
        """Best pair in pts[lo:hi], and those points sorted by y (merge sort on the way up)."""
        if hi - lo <= 3:
            best = (math.inf, (pts[lo], pts[lo + 1]))
            for i in range(lo, hi):
                for j in range(i + 1, hi):
                    dist = norm(pts[i] - pts[j])
                    if dist < best[0]:
                        best = (dist, (pts[i], pts[j]))
            return best[0], best[1], sorted(pts[lo:hi], key=lambda p: p.y)
        mid = (lo + hi) // 2
        x_mid = pts[mid].x
        dl, pl, yl = solve(lo, mid)
        dr, pr, yr = solve(mid, hi)
        dist, pair = (dl, pl) if dl <= dr else (dr, pr)
        by_y = _merge_by_y(yl, yr)
        strip = [p for p in by_y if abs(p.x - x_mid) < dist]
        for i, p in enumerate(strip):
            for q in strip[i + 1 :]:
                if q.y - p.y >= dist:
                    break  # at most a constant number of points fit in the dist x 2dist box
                dq = norm(p - q)
                if dq < dist:
                    dist, pair = dq, (p, q)
        return dist, pair, by_y

    dist, pair, _ = solve(0, len(pts))
    return dist, pair


def _merge_by_y(a: list[Vec], b: list[Vec]) -> list[Vec]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i].y <= b[j].y:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out + a[i:] + b[j:]
