"""Programmatic rewards and verifiable tasks for the alignment experiments.

- `AdditionTask`: prompts "a+b=" over the byte tokenizer; a response is correct when the
  digits it writes before the end mark ";" spell a + b (filler dots before the digits are
  allowed, so responses vary in length and a length penalty has something to remove).
- `word_count_reward`: how often a marker word occurs in a text (DPO's preferred property).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

END = ";"  # end-of-answer mark
FILL = "."  # filler the SFT data puts before an answer


@dataclass
class AdditionTask:
    """Sums of two numbers below `high`, as byte strings."""

    high: int = 10  # operands are drawn from [0, high)
    max_fill: int = 6  # SFT answers carry 0..max_fill filler dots before the digits

    def sample(self, rng: random.Random) -> tuple[str, int]:
        a, b = rng.randrange(self.high), rng.randrange(self.high)
        return f"{a}+{b}=", a + b

    def demo(self, rng: random.Random, noise: float = 0.0) -> str:
        """One SFT line: prompt, filler, answer (wrong with probability `noise`), end mark."""
        prompt, ans = self.sample(rng)
        if rng.random() < noise:
            ans = rng.randrange(2 * self.high - 1)
        return prompt + FILL * rng.randint(0, self.max_fill) + str(ans) + END

    @staticmethod
    def correct(response: str, answer: int) -> bool:
        if not response.endswith(END):
            return False
        body = response[:-1].lstrip(FILL)
        return body.isascii() and body.isdigit() and int(body) == answer


def word_count_reward(text: str, word: str) -> float:
    """Occurrences of `word` as a whole word in text."""
    return float(len(re.findall(rf"\b{re.escape(word)}\b", text)))
