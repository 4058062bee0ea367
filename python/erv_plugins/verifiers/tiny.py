"""A tiny verifier and a generated emotion-text corpus, for tests and demos on CPU.

Nothing here downloads: the model is a RoBERTa built from a config, the tokenizer is a
byte-level BPE trained with the ``tokenizers`` library on the generated corpus and saved
so that ``AutoTokenizer.from_pretrained(dir)`` loads it back unchanged (a directory whose
``tokenizer_config.json`` names ``RobertaTokenizer`` would be rebuilt from vocab and merges
instead; see docs/stack.md), and the corpus comes from templates.

Why a tiny model can learn the corpus from scratch with first-token ([CLS]) pooling:
every emotional sentence carries its label in one or two *cue words* from a small
per-label lexicon ("furious", "repulsed", ...), each a single BPE token because the
tokenizer is trained on this corpus; all other words (subjects, settings, camera and
voice details) are shared by every label, so they carry no signal. The collapse to label
frequencies comes from the head: at a zero bias every logit starts at p = 0.5, and the
first hundreds of steps go into pushing all of them down, input-independently, after
which the body gets almost no gradient. So the head's biases start at the prior of a
rare label (p = 1/num_labels); with that, a large learning rate with warmup and no
dropout (see ``TINY_TRAINING``) separate the cues within a few epochs. Measured on the
2,200-sentence corpus, 6 epochs: 28 GoEmotions labels, macro-F1 0.01-0.58 with zero
biases and 0.99 with the prior; 11 MAFW labels, 0.07 (zero biases, initializer_range
0.02, 4 epochs) against 0.99-1.0 with the prior. ``initializer_range=0.1`` (larger
attention and feed-forward outputs beside the first token's own embedding) helps further.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from erv_plugins.labels import GOEMOTIONS, MAFW_LABELS
from erv_plugins.verifiers.data import TextRecord

# Cue words per MAFW label: the only words in the corpus that say which emotion it is.
CUES: dict[str, tuple[str, ...]] = {
    "anger": ("furious", "angry", "enraged", "irate", "seething", "livid", "hostile",
              "outraged"),
    "disgust": ("disgusted", "repulsed", "revolted", "nauseated", "sickened", "grossed"),
    "fear": ("terrified", "frightened", "scared", "afraid", "petrified", "horrified"),
    "happiness": ("happy", "joyful", "cheerful", "delighted", "beaming", "glad", "elated"),
    "neutral": ("expressionless", "composed", "impassive", "blank", "unmoved", "stoic"),
    "sadness": ("sad", "sorrowful", "tearful", "gloomy", "heartbroken", "mournful",
                "dejected"),
    "surprise": ("surprised", "astonished", "amazed", "startled", "stunned", "shocked"),
    "contempt": ("contemptuous", "scornful", "disdainful", "sneering", "condescending",
                 "smug"),
    "anxiety": ("anxious", "nervous", "worried", "uneasy", "tense", "jittery", "restless"),
    "helplessness": ("helpless", "powerless", "defeated", "resigned", "hopeless",
                     "overwhelmed"),
    "disappointment": ("disappointed", "dismayed", "disheartened", "crestfallen",
                       "deflated", "letdown"),
}  # fmt: skip

_SUBJECTS = ("The woman", "The man", "The young girl", "The old man", "The speaker",
             "The character", "She", "He", "The boy", "The actress", "The driver",
             "The teacher")  # fmt: skip
_EMOTION_TEMPLATES = (
    "{s} looks {a}.",
    "{s} seems {a} as {p} listens.",
    "{s} appears {a} while {p} talks.",
    "{s} sounds {a} in the audio.",
    "{s} speaks in a {a} tone.",
    "With a {a} look, {s_lower} turns toward the camera.",
    "{s} is clearly {a} in this scene.",
    "The voice of {s_lower} is {a}.",
    "{s} frowns and looks {a}.",
    "{s} says the line and looks {a}.",
)  # fmt: skip
_PAIR_TEMPLATES = (
    "{s} looks {a} and {b}.",
    "{s} seems {a}, then {b}.",
    "{s} is {a} but also {b}.",
    "{s} sounds {a} and looks {b}.",
)  # fmt: skip
# Shared by every label: background, appearance, camera. These alone make a neutral sentence.
_CONTEXT = (
    "{s} wears a dark jacket in a small room.",
    "{s} sits at a wooden table near a window.",
    "The camera shows a close-up of the face of {s_lower}.",
    "{s} stands in a hallway with white walls.",
    "The background is a busy street at night.",
    "{s} holds a cup and looks at the other person.",
    "The lighting in the room is dim and yellow.",
    "{s} has short hair and wears glasses.",
    "A car passes behind {s_lower} on the road.",
    "{s} speaks slowly and the subtitle reads a short line.",
)  # fmt: skip
_PRONOUN = {"The woman": "she", "She": "she", "The young girl": "she", "The actress": "she"}


def generate_emotion_corpus(n: int = 2200, *, labels: Sequence[str] = MAFW_LABELS,
                            pair_fraction: float = 0.15, context_fraction: float = 0.3,
                            seed: int = 0) -> list[TextRecord]:
    """``n`` generated sentences over ``labels`` (MAFW's 11 by default), balanced per label.

    About ``pair_fraction`` of the emotional sentences carry two labels (as the paper's
    pseudo-labels do, up to two per description); ``context_fraction`` get a shared
    background sentence appended. "neutral" sentences are background only, or use a
    neutral cue word. Deterministic for a given seed.
    """
    unknown = [label for label in labels if label not in CUES]
    if unknown:
        raise ValueError(f"no cue words for labels {unknown}; known: {', '.join(CUES)}")
    rng = random.Random(seed)
    emotional = [label for label in labels if label != "neutral"]
    out: list[TextRecord] = []
    for i in range(n):
        label = labels[i % len(labels)]
        s = rng.choice(_SUBJECTS)
        fields = {"s": s, "s_lower": s[0].lower() + s[1:] if s.startswith("The") else s.lower(),
                  "p": _PRONOUN.get(s, "he")}
        if label == "neutral" and rng.random() < 0.5:
            text = rng.choice(_CONTEXT).format(**fields)
            out.append(TextRecord(text, ("neutral",), "generated", f"generated:{i}"))
            continue
        if label != "neutral" and len(emotional) > 1 and rng.random() < pair_fraction:
            other = rng.choice([e for e in emotional if e != label])
            text = rng.choice(_PAIR_TEMPLATES).format(
                a=rng.choice(CUES[label]), b=rng.choice(CUES[other]), **fields)
            example_labels: tuple[str, ...] = (label, other)
        else:
            text = rng.choice(_EMOTION_TEMPLATES).format(a=rng.choice(CUES[label]), **fields)
            example_labels = (label,)
        if rng.random() < context_fraction:
            text = f"{text} {rng.choice(_CONTEXT).format(**fields)}"
        out.append(TextRecord(text, example_labels, "generated", f"generated:{i}"))
    rng.shuffle(out)
    return out


# -- the tiny model ------------------------------------------------------------------------

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0..4


def build_tiny_tokenizer(out_dir: str | os.PathLike[str], texts: Sequence[str] | None = None,
                         *, vocab_size: int = 1000, model_max_length: int = 64) -> Any:
    """A byte-level BPE trained on ``texts`` (the generated corpus by default), saved to
    ``out_dir`` so that ``AutoTokenizer.from_pretrained(out_dir)`` returns it unchanged.

    Any text tokenizes (bytes fall back to single-byte tokens); cue words of the corpus are
    single tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if texts is None:
        texts = [ex.text for ex in generate_emotion_corpus(2200, seed=1)]
        # Repeated cue lines make every cue word a single token (see the module docstring).
        texts = [*texts, *(" ".join(c) for c in CUES.values() for _ in range(50))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      add_prefix_space=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        sep_token="</s>", cls_token="<s>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=model_max_length,
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_verifier(out_dir: str | os.PathLike[str], labels: Sequence[str] = GOEMOTIONS,
                        *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                        max_length: int = 64, seed: int = 0, initializer_range: float = 0.1,
                        train: bool | Sequence[TextRecord] = False,
                        epochs: float = 6.0) -> Path:
    """Save a tiny RoBERTa multi-label classifier over ``labels`` to ``out_dir``.

    ``train=False`` leaves it randomly initialised (fast; probabilities are meaningless but
    deterministic for a seed). ``train=True`` fits it on the generated corpus mapped to
    ``labels`` (MAFW words, or GoEmotions through the release's label map), about 10-30 s on
    one CPU core; a sequence of ``TextRecord`` trains on those instead. Returns
    ``out_dir``, loadable with ``HFVerifier(out_dir)`` or the ``hf`` verifier plugin.
    """
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(out, model_max_length=max_length)
    labels = tuple(labels)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=hidden_size * 2,
        max_position_embeddings=max_length + 2, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0,
        initializer_range=initializer_range,
        problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = RobertaForSequenceClassification(config)
    with torch.no_grad():
        # Start every logit at the prior of a rare label (p = 1/num_labels), so the first
        # steps need not spend themselves pushing all logits down (label frequencies).
        model.classifier.out_proj.bias.fill_(-math.log(max(len(labels) - 1, 1)))
    model.save_pretrained(out)
    if train is not False:
        from erv_plugins.verifiers.training import TINY_TRAINING, train_verifier

        examples = (generate_emotion_corpus(2200, seed=seed) if train is True else list(train))
        train_verifier(
            examples, base=out, out=out,
            **{**TINY_TRAINING, "epochs": epochs, "seed": seed}, plot=False, progress=False,
        )
    return out
