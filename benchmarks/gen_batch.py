"""A realistic GRPO scoring batch: G completions for each prompt, as a policy writes them.

Explanations are 60 to 400 words of emotion reasoning with quotes (some holding several
sentences), numbers and decimals, abbreviations and titles, ellipses, parentheses, lists and
the odd URL; about one completion in ten breaks the format the way sampled completions do
(missing or multi-line answer, text after the tags, unclosed think). Deterministic per seed.

    python benchmarks/gen_batch.py --prompts 64 --generations 16 --out batch.jsonl
"""

from __future__ import annotations

import argparse
import json
import random

EMOTIONS = ["happiness", "sadness", "anger", "fear", "surprise", "disgust", "neutral",
            "contempt", "anxiety", "helplessness", "disappointment"]
SUBJECTS = ["The man", "The woman", "The speaker", "The young girl", "Dr. Chen", "Mr. Lopez",
            "Mrs. Patel", "The older man on the left", "She", "He", "The character"]
CUES = [
    "furrows his brows and presses his lips together",
    "smiles broadly, with visible crow's feet around the eyes",
    "speaks in a trembling voice at roughly 1.5 times the normal pace",
    "looks down and avoids eye contact, e.g. when the other person speaks",
    "raises her voice; the pitch rises by about 20% near the end",
    "clenches his fists (see the frames around 00:03.5)",
    "sighs deeply... and then pauses for 2.5 seconds",
    "wrinkles her nose, i.e. a classic sign of disgust",
    "laughs nervously, approx. three times in ten seconds",
    "opens his eyes wide and his jaw drops",
]
QUOTES = [
    '"I can\'t believe you did this."',
    '"Leave me alone! I mean it."',
    '"Why would you say that?"',
    '"It\'s fine. Really, it\'s fine."',
    '"Thank you so much."',
    "'whatever'",
    '"No. Not again."',
]
CONNECTORS = ["Moreover,", "In addition,", "However,", "At the same time,", "Overall,",
              "Notably,", "Meanwhile,", "Therefore,"]
EXTRAS = [
    "The audio track (16 kHz, mono) is clear, so the tone is easy to judge.",
    "The scene looks like a U.S. office at about 9 a.m. on a weekday.",
    "There are three cues:\n1. the face.\n2. the voice.\n3. the words.",
    "A similar clip appears at https://example.com/clips/42. It shows the same pattern.",
    "The score on the intensity scale would be 7.5 out of 10.",
    "Is this really anger? Perhaps it is closer to frustration!",
    "The subtitles read \u201cI\u2019m done.\u201d The tone matches the words.",
    "Overall, the evidence is consistent, etc. The other cues are weaker.",
]


def explanation(rng: random.Random, words: int) -> str:
    sentences: list[str] = []
    count = 0
    while count < words:
        kind = rng.random()
        if kind < 0.45:
            s = f"{rng.choice(SUBJECTS)} {rng.choice(CUES)}."
        elif kind < 0.65:
            s = f"{rng.choice(SUBJECTS)} says {rng.choice(QUOTES)} with a {rng.choice(['flat', 'sharp', 'soft', 'shaky'])} tone."
        elif kind < 0.8:
            s = f"{rng.choice(CONNECTORS)} this suggests {rng.choice(EMOTIONS)} rather than {rng.choice(EMOTIONS)}."
        else:
            s = rng.choice(EXTRAS)
        sentences.append(s)
        count += len(s.split())
    return " ".join(sentences)


def completion(rng: random.Random) -> str:
    think = explanation(rng, rng.randint(60, 400))
    label = rng.choice(EMOTIONS)
    r = rng.random()
    if r < 0.03:
        return f"<think>{think}</think>\n<answer>{label}\n</answer>"  # multi-line answer
    if r < 0.06:
        return f"<think>{think}</think>\n<answer>{label}</answer> I hope this helps."
    if r < 0.08:
        return f"<think>{think}\n<answer>{label}</answer>"  # unclosed think
    if r < 0.10:
        return f"{think}\nThe answer is {label}."  # no tags at all
    return f"<think>\n{think}\n</think>\n<answer> {label} </answer>"


def make_batch(prompts: int = 64, generations: int = 16, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [completion(rng) for _ in range(prompts * generations)]


ADJECTIVES = ["tense", "calm", "shaky", "bright", "low", "sharp", "soft", "flat", "warm", "cold",
              "sudden", "slow", "quick", "steady", "faint", "loud", "heavy", "light", "tight", "loose"]
PARTS = ["voice", "gaze", "jaw", "brow", "smile", "posture", "breathing", "pitch", "tone", "grip",
         "shoulders", "hands", "lips", "eyes", "pace", "laugh", "sigh", "frown", "nod", "pause"]
VERBS = ["suggests", "hints at", "points to", "reveals", "masks", "signals", "betrays", "echoes",
         "softens", "sharpens", "undercuts", "supports", "contradicts", "reflects", "amplifies"]
MOMENTS = ["at the start", "near the end", "in the middle", "after the question", "before the reply",
           "during the silence", "when the music stops", "as the door opens", "in the close-up",
           "while the crowd cheers", "after the long pause", "at the second cut"]
SPEECH = ["I can't do this anymore", "Leave it, please", "Why now", "That is not fair",
          "We will be fine", "Stop talking", "I knew it", "Look at me", "You promised",
          "It does not matter", "Say it again", "Nobody listens"]


def distinct_explanation(rng: random.Random, seen: set[str], sentences: int, quotes: bool) -> str:
    """`sentences` sentences of about 100 bytes, none of them in `seen` (which grows)."""
    out = []
    while len(out) < sentences:
        a, b = rng.sample(ADJECTIVES, 2)
        p, q = rng.sample(PARTS, 2)
        s = (f"The {a} {p} {rng.choice(MOMENTS)} {rng.choice(VERBS)} {rng.choice(EMOTIONS)}, "
             f"while the {b} {q} {rng.choice(VERBS)} {rng.choice(EMOTIONS)}.")
        if quotes and rng.random() < 0.3:  # quoted speech holding one or two sentences
            x, y = rng.sample(SPEECH, 2)
            s = s[:-1] + f', and she says "{x}. {y}!" {rng.choice(MOMENTS)}.'
        if s not in seen:
            seen.add(s)
            out.append(s)
    return " ".join(out)


def make_distinct_batch(completions: int = 1024, quotes: bool = False, seed: int = 0) -> list[str]:
    """A batch in which no explanation sentence occurs twice (about 1.2 MB, 12 sentences a
    completion): what deduplication cannot help with. ``quotes``: about three sentences in ten
    carry quoted speech with sentence terminators inside."""
    rng = random.Random(seed)
    seen: set[str] = set()
    return [f"<think>\n{distinct_explanation(rng, seen, 12, quotes)}\n</think>\n"
            f"<answer> {rng.choice(EMOTIONS)} </answer>" for _ in range(completions)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--generations", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    batch = make_batch(a.prompts, a.generations, a.seed)
    lines = "\n".join(json.dumps({"completion": c}) for c in batch) + "\n"
    if a.out == "-":
        print(lines, end="")
    else:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(lines)


if __name__ == "__main__":
    main()
