"""Offline, seeded visual question answering: shapes and digit strings on canvases of many
native sizes and aspect ratios (from 1:7 strips such as 56x392 to 336x336 squares).

Every sample is (image [3, H, W] float in [0, 1], question words, answer words, metadata).
Question types (short text answers):
- count:    "how many <shape> ?"                      -> "1" .. "4"
- colour:   "what colour is the <shape> ?"            -> a colour (the shape is unique)
- position: "where is the <colour> <shape> ?"         -> left / right (wide or square
                                                         canvases) or top / bottom (tall)
- larger:   "which is larger the <c1> <s1> or the <c2> <s2> ?" -> the larger one's colour
- read:     "read the digits ?"                       -> the digit string, one word per digit

Objects are "small" (metadata small=True) when the object the question is about is below
`small_px` pixels across (less than one 14-pixel patch at scale 1); digits are drawn from a
3x5 bitmap font. `scale` multiplies every size (0.5 for CPU runs). Images are generated from
`numpy.random.default_rng(seed)` only, so a seed fixes the whole data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPECIALS = ("<pad>", "<img>", "<bos>", "<q>", "<a>", "<eos>")
PAD, IMG, BOS, Q, A, EOS = range(len(SPECIALS))
COLOURS = {
    "red": (0.95, 0.15, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.9, 0.2, 0.85),
    "cyan": (0.1, 0.85, 0.9),
}
SHAPES = ("square", "circle", "triangle")
QTYPES = ("count", "colour", "position", "larger", "read")
WORDS = (
    "how many what colour is the where which larger or read digits ?".split()
    + list(SHAPES)
    + list(COLOURS)
    + ["left", "right", "top", "bottom"]
    + [str(d) for d in range(10)]
)
VOCAB = SPECIALS + tuple(dict.fromkeys(WORDS))
WORD_ID = {w: i for i, w in enumerate(VOCAB)}

# (H, W) at scale 1: strips of 1:7 and 1:4, 1:2 rectangles, squares from 112 to 336
SIZES = (
    (56, 392),
    (392, 56),
    (84, 336),
    (336, 84),
    (168, 336),
    (336, 168),
    (112, 112),
    (224, 224),
    (336, 336),
)

# 3x5 bitmap digits, rows top to bottom
_FONT = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
}


def encode(words: list[str]) -> list[int]:
    """Words -> ids; unknown words raise ValueError."""
    bad = [w for w in words if w not in WORD_ID]
    if bad:
        raise ValueError(f"words not in the VQA vocabulary: {bad}")
    return [WORD_ID[w] for w in words]


def decode(ids) -> list[str]:
    return [VOCAB[int(i)] for i in ids]


@dataclass
class VQASample:
    image: torch.Tensor  # [3, H, W] float32 in [0, 1]
    question: list[str]  # words
    answer: list[str]  # words
    qtype: str  # one of QTYPES
    small: bool  # the object asked about is smaller than small_px
    size: tuple[int, int] = (0, 0)  # (H, W) of the canvas

    @property
    def aspect(self) -> float:
        """Long side over short side (1 = square, 7 = a 56x392 strip)."""
        h, w = self.size
        return max(h, w) / min(h, w)


@dataclass
class VQAConfig:
    scale: float = 1.0  # multiplies canvas and object sizes (0.5 for CPU-sized runs)
    sizes: tuple = SIZES  # canvas (H, W) choices at scale 1
    qtypes: tuple = QTYPES  # question types to draw from, uniformly
    small_frac: float = 0.4  # share of samples whose asked-about objects are small
    small_px: int = 10  # "small" = below this many pixels across at scale 1
    big_px: tuple = (16, 44)  # range of regular object sizes at scale 1
    distractors: tuple = (1, 3)  # extra objects of other shapes per image (count/colour/pos)
    noise: float = 0.03  # std of the Gaussian pixel noise on the background
    digit_len: tuple = (3, 5)  # digits per string for "read"
    digit_dot: tuple = (2.5, 4.0)  # font-dot size range of regular digits (px at scale 1)
    small_digit_dot: float = 1.5  # font-dot size of small digits (px at scale 1)


class Canvas:
    """An H x W x 3 float image with non-overlapping object boxes."""

    def __init__(self, rng: np.random.Generator, H: int, W: int, noise: float) -> None:
        self.rng, self.H, self.W = rng, H, W
        self.img = np.full((H, W, 3), 0.12, np.float32)
        self.img += rng.normal(0, noise, self.img.shape).astype(np.float32)
        self.boxes: list[tuple[int, int, int, int]] = []

    def place(self, h: int, w: int, region=None, tries: int = 200):
        """Top-left (y, x) of a free h x w box (1 px margin), inside region (y0, y1, x0, x1)."""
        y0, y1, x0, x1 = region or (0, self.H, 0, self.W)
        for _ in range(tries):
            if y1 - y0 - h < 1 or x1 - x0 - w < 1:
                return None
            y = int(self.rng.integers(y0, y1 - h))
            x = int(self.rng.integers(x0, x1 - w))
            if all(
                y + h + 1 <= by or by + bh + 1 <= y or x + w + 1 <= bx or bx + bw + 1 <= x
                for by, bx, bh, bw in self.boxes
            ):
                self.boxes.append((y, x, h, w))
                return y, x
        return None

    def shape(self, kind: str, colour: str, y: int, x: int, s: int) -> None:
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
        if kind == "square":
            m = np.ones((s, s), bool)
        elif kind == "circle":
            m = (yy - s / 2) ** 2 + (xx - s / 2) ** 2 <= (s / 2) ** 2
        else:  # triangle, apex up
            m = np.abs(xx - s / 2) <= yy / 2
        self.img[y : y + s, x : x + s][m] = COLOURS[colour]

    def digits(self, text: str, y: int, x: int, k: int) -> None:
        """Draw `text` with the 3x5 font at k pixels per font dot, one dot between digits."""
        for i, ch in enumerate(text):
            glyph = np.array([[c == "1" for c in row] for row in _FONT[ch]])
            block = np.kron(glyph, np.ones((k, k), bool))
            x0 = x + i * 4 * k
            self.img[y : y + 5 * k, x0 : x0 + 3 * k][block] = (0.95, 0.95, 0.95)

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.clip(self.img, 0, 1).transpose(2, 0, 1)))


class VQAGenerator:
    """Seeded generator of VQASamples: `sample()` one, `samples(n)` a list."""

    def __init__(self, cfg: VQAConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg or VQAConfig()
        bad = [q for q in self.cfg.qtypes if q not in QTYPES]
        if bad or not self.cfg.qtypes:
            raise ValueError(f"unknown question types {bad}; valid: {QTYPES}")
        if not self.cfg.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.cfg.scale}")
        lo, hi = self.cfg.digit_len
        if not 1 <= lo <= hi:
            raise ValueError(f"digit_len must be (min, max) with 1 <= min <= max, got {lo, hi}")
        lo, hi = self.cfg.digit_dot
        if not (0 < lo <= hi and self.cfg.small_digit_dot > 0):
            raise ValueError(
                f"digit_dot must be (min, max) with 0 < min <= max and small_digit_dot > 0, "
                f"got {self.cfg.digit_dot}, {self.cfg.small_digit_dot}"
            )
        self.rng = np.random.default_rng(seed)

    def _px(self, v: float) -> int:
        return max(1, int(round(v * self.cfg.scale)))

    def _size(self, small: bool) -> int:
        c = self.cfg
        if small:
            return self._px(self.rng.integers(max(3, c.small_px // 2), c.small_px))
        return self._px(self.rng.integers(*c.big_px))

    def sample(self) -> VQASample:
        c, rng = self.cfg, self.rng
        for _ in range(50):  # a canvas too small for the layout is redrawn
            H, W = c.sizes[int(rng.integers(len(c.sizes)))]
            H, W = self._px(H), self._px(W)
            qtype = c.qtypes[int(rng.integers(len(c.qtypes)))]
            small = bool(rng.random() < c.small_frac)
            canvas = Canvas(rng, H, W, c.noise)
            qa = getattr(self, f"_{qtype}")(canvas, small)
            if qa is not None:
                q, a = qa
                return VQASample(canvas.tensor(), q, a, qtype, small, (H, W))
        raise RuntimeError("could not lay out a sample in 50 tries; canvases too small")

    def samples(self, n: int) -> list[VQASample]:
        return [self.sample() for _ in range(n)]

    # -------------------------------------------------------------- question types
    def _objects(self, canvas, specs, small):
        """Draw (shape, colour) specs at random free places; None if they do not fit."""
        for kind, colour in specs:
            s = self._size(small)
            pos = canvas.place(s, s)
            if pos is None:
                return None
            canvas.shape(kind, colour, *pos, s)
        return True

    def _distractors(self, canvas, avoid_shape):
        others = [s for s in SHAPES if s != avoid_shape]
        n = int(self.rng.integers(self.cfg.distractors[0], self.cfg.distractors[1] + 1))
        for _ in range(n):
            kind = others[int(self.rng.integers(len(others)))]
            colour = list(COLOURS)[int(self.rng.integers(len(COLOURS)))]
            if self._objects(canvas, [(kind, colour)], small=bool(self.rng.random() < 0.5)) is None:
                return

    def _count(self, canvas, small):
        kind = SHAPES[int(self.rng.integers(len(SHAPES)))]
        n = int(self.rng.integers(1, 5))
        cols = list(COLOURS)
        specs = [(kind, cols[int(self.rng.integers(len(cols)))]) for _ in range(n)]
        if self._objects(canvas, specs, small) is None:
            return None
        self._distractors(canvas, kind)
        return ["how", "many", kind, "?"], [str(n)]

    def _colour(self, canvas, small):
        kind = SHAPES[int(self.rng.integers(len(SHAPES)))]
        colour = list(COLOURS)[int(self.rng.integers(len(COLOURS)))]
        if self._objects(canvas, [(kind, colour)], small) is None:
            return None
        self._distractors(canvas, kind)
        return ["what", "colour", "is", "the", kind, "?"], [colour]

    def _position(self, canvas, small):
        kind = SHAPES[int(self.rng.integers(len(SHAPES)))]
        colour = list(COLOURS)[int(self.rng.integers(len(COLOURS)))]
        H, W = canvas.H, canvas.W
        first = bool(self.rng.random() < 0.5)
        s = self._size(small)
        if H > W:  # tall: top / bottom, the object well inside its half
            region = (0, H * 2 // 5, 0, W) if first else (H * 3 // 5, H, 0, W)
            answer = "top" if first else "bottom"
        else:
            region = (0, H, 0, W * 2 // 5) if first else (0, H, W * 3 // 5, W)
            answer = "left" if first else "right"
        pos = canvas.place(s, s, region)
        if pos is None:
            return None
        canvas.shape(kind, colour, *pos, s)
        self._distractors(canvas, kind)
        return ["where", "is", "the", colour, kind, "?"], [answer]

    def _larger(self, canvas, small):
        rng = self.rng
        k1, k2 = (SHAPES[int(i)] for i in rng.integers(len(SHAPES), size=2))
        c1, c2 = (list(COLOURS)[int(i)] for i in rng.choice(len(COLOURS), 2, replace=False))
        s_small = self._size(True) if small else self._px(rng.integers(12, 20))
        s_big = max(s_small + 2, int(round(s_small * rng.uniform(1.6, 2.2))))
        sizes = (s_big, s_small) if rng.random() < 0.5 else (s_small, s_big)
        for kind, colour, s in zip((k1, k2), (c1, c2), sizes, strict=True):
            pos = canvas.place(s, s)
            if pos is None:
                return None
            canvas.shape(kind, colour, *pos, s)
        answer = c1 if sizes[0] > sizes[1] else c2
        return ["which", "is", "larger", "the", c1, k1, "or", "the", c2, k2, "?"], [answer]

    def _read(self, canvas, small):
        rng, c = self.rng, self.cfg
        n = int(rng.integers(c.digit_len[0], c.digit_len[1] + 1))
        text = "".join(str(int(d)) for d in rng.integers(0, 10, n))
        # dot size k: the digit is 5k tall; small digits stay below small_px at scale 1
        k = self._px(c.small_digit_dot if small else rng.uniform(*c.digit_dot))
        w, h = (4 * n - 1) * k, 5 * k  # left to right on every canvas, tall ones too
        pos = canvas.place(h, w)
        if pos is None:
            return None
        canvas.digits(text, *pos, k)
        return ["read", "the", "digits", "?"], list(text)


def build_sequence(sample: VQASample, n_image_tokens: int) -> tuple[list[int], list[bool]]:
    """<bos> <img> x n <q> question <a> answer <eos> -> (ids, answer_mask): the mask marks the
    answer words and <eos>, the only tokens the loss sees."""
    ids = [BOS] + [IMG] * n_image_tokens + [Q] + encode(sample.question) + [A]
    mask = [False] * len(ids)
    ans = encode(sample.answer) + [EOS]
    return ids + ans, mask + [True] * len(ans)


def collate(samples: list[VQASample], tokens_per_image: list[int]):
    """-> input_ids [B, T] (right-padded with <pad>), answer_mask [B, T] bool."""
    seqs = [build_sequence(s, n) for s, n in zip(samples, tokens_per_image, strict=True)]
    T = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), T), PAD, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, (s, m) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(m)] = torch.tensor(m)
    return ids, mask
