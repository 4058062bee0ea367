"""Small verifiers for tests, examples and benchmarks of the rewards.

``KeywordVerifier`` is deterministic: a sentence gets probability ``hit`` for every label
whose keywords it contains, ``neutral_prob`` for neutral when it contains none, and
``base`` elsewhere, so rewards can be computed by hand. It is also a plugin object::

    plugins.add(erv_plugins.testing.rewards)   # registers verifier "keywords"

``build_tiny_roberta`` saves a tiny random multi-label RoBERTa (GoEmotions head) with a
byte-level BPE tokenizer to a directory, loadable by the ``hf`` verifier plugin;
``synthetic_batch`` generates a GRPO-shaped batch of completions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import msgspec
import numpy as np

from erv_plugins.hookspecs import hookimpl
from erv_plugins.labels import GOEMOTIONS
from erv_plugins.plugins import Register

DEFAULT_KEYWORDS: dict[str, list[str]] = {
    "joy": ["smile", "smiles", "smiling", "laugh", "happy", "joy", "cheerful"],
    "sadness": ["cry", "cries", "crying", "tears", "sad", "sorrow", "sobbing"],
    "anger": ["shout", "shouts", "angry", "furious", "rage", "clench"],
    "fear": ["tremble", "trembling", "afraid", "scared", "fear", "terrified"],
    "surprise": ["gasp", "gasps", "surprised", "shock", "astonished"],
    "disgust": ["grimace", "disgusted", "revolting", "gross"],
    "nervousness": ["nervous", "anxious", "fidget", "worried"],
    "grief": ["helpless", "despair", "grief"],
    "disappointment": ["disappointed", "letdown"],
    "disapproval": ["contempt", "sneer", "scorn"],
}


class KeywordVerifierOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    keywords: dict[str, list[str]] = msgspec.field(default_factory=lambda: dict(DEFAULT_KEYWORDS))
    labels: list[str] = msgspec.field(default_factory=lambda: list(GOEMOTIONS))
    hit: float = 0.9
    neutral_prob: float = 0.8
    base: float = 0.01


class KeywordVerifier:
    """A deterministic stand-in verifier: keywords in, fixed probabilities out."""

    name: ClassVar[str] = "keywords"
    Options: ClassVar[type[msgspec.Struct]] = KeywordVerifierOptions

    def __init__(self, options: KeywordVerifierOptions | None = None) -> None:
        self.options = options or KeywordVerifierOptions()
        self.labels = tuple(self.options.labels)
        unknown = set(self.options.keywords) - set(self.labels)
        if unknown:
            raise ValueError(f"keywords for unknown labels: {', '.join(sorted(unknown))}")
        digest = hashlib.sha1(msgspec.json.encode(self.options)).hexdigest()[:12]
        self.cache_key = f"keywords:{digest}"
        self._index = {label: i for i, label in enumerate(self.labels)}
        self.calls: list[list[str]] = []  # what predict_proba was asked, for tests

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.full((len(texts), len(self.labels)), self.options.base, dtype=np.float32)
        neutral = self._index.get("neutral")
        for row, text in enumerate(texts):
            words = {w.strip(".,!?;:\"'()").lower() for w in text.split()}
            hit = False
            for label, keys in self.options.keywords.items():
                if words.intersection(keys):
                    out[row, self._index[label]] = self.options.hit
                    hit = True
            if not hit and neutral is not None:
                out[row, neutral] = self.options.neutral_prob
        return out


@hookimpl
def erv_register_verifiers(register: Register) -> None:
    register(KeywordVerifier)


# -- a real (tiny, random) Hugging Face verifier ------------------------------------------
def build_tiny_roberta(path: str | os.PathLike[str], *, labels: Sequence[str] = GOEMOTIONS,
                       seed: int = 0, hidden: int = 64, layers: int = 2,
                       logit_scale: float = 2.0, logit_offset: float = -1.5) -> Path:
    """Save a tiny multi-label RoBERTa classifier and its tokenizer to ``path``.

    The output layer is rescaled so that each label's logit has standard deviation
    ``logit_scale`` and mean ``logit_offset`` over a few probe sentences: probabilities
    spread over (0, 1) and differ between sentences, as a trained verifier's do.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    corpus = [
        "She smiles and laughs with joy.", "He cries, tears running down his face.",
        "The man shouts in anger and clenches his fists.", "She trembles, afraid of the dark.",
        "The room is bright and the table is wooden.", "He gasps in surprise at the news.",
        "They grimace in disgust.", "He fidgets, nervous and worried.",
    ] * 4
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                   cls_token="<s>", sep_token="</s>", model_max_length=128)
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=fast.vocab_size if hasattr(fast, "vocab_size") else len(fast),
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=130, type_vocab_size=1,
        pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, num_labels=len(labels),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    model = RobertaForSequenceClassification(config).eval()
    # A random head scores every sentence alike (the <s> state barely depends on the
    # text). Standardise each label's logit over a few sentences so that label sets vary
    # from sentence to sentence: logit' = (logit - mean) / std * logit_scale + offset.
    probe = [f"{a} {b}." for a in ("She", "He", "The man", "A child") for b in
             ("smiles", "cries in the rain", "shouts at the door", "sits by the window",
              "trembles", "gasps at the news", "walks away slowly")]
    enc = fast(probe, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**enc).logits
        mean, std = logits.mean(0), logits.std(0).clamp_min(1e-6)
        head = model.classifier.out_proj
        head.weight.mul_((logit_scale / std)[:, None])
        head.bias.copy_((head.bias - mean) * logit_scale / std + logit_offset)
    model.save_pretrained(path)
    return path


# -- a generated GRPO batch -----------------------------------------------------------------
_SUBJECTS = ["She", "He", "The woman", "The man", "The character", "The girl", "The boy",
             "The speaker"]
_ACTIONS: dict[str, list[str]] = {
    "happiness": ["smiles warmly", "laughs out loud", "looks cheerful", "grins with joy",
                  "beams happily", "chuckles softly"],
    "sadness": ["cries quietly", "has tears running down the face", "sobs",
                "speaks with sorrow", "looks down in despair", "sighs sadly"],
    "anger": ["shouts loudly", "clenches the fists in rage", "glares furiously",
              "slams the table", "yells angrily", "frowns with fury"],
    "fear": ["trembles", "steps back, scared", "looks terrified", "gasps in fear",
             "hides behind the door", "shakes with fear"],
    "surprise": ["gasps at the news", "opens the mouth in shock", "looks astonished",
                 "raises the eyebrows, surprised"],
    "disgust": ["wrinkles the nose in disgust", "grimaces", "turns away, disgusted"],
    "neutral": ["wears a white shirt", "sits at a wooden table", "stands by the window",
                "walks across the room", "holds a cup", "looks at the camera"],
}
_DETAILS = ["", " in the first scene", " while the music plays", " at the end of the clip",
            " as the camera zooms in", " in front of a grey wall", ' and says "Fine. Go."',
            " for a few seconds"]
_DATASET_WORDS = {
    "mafw": {"happiness": "happiness", "sadness": "sadness", "anger": "anger", "fear": "fear",
             "surprise": "surprise", "disgust": "disgust", "neutral": "neutral"},
    "dfew": {"happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "fear",
             "surprise": "surprise", "disgust": "disgust", "neutral": "neutral"},
}
_ANSWER_VARIANTS = {"happiness": ["happy", "happiness"], "sadness": ["sad", "sadness"],
                    "anger": ["angry", "anger"]}


def synthetic_batch(prompts: int = 64, generations: int = 16, *, seed: int = 0,
                    opening_share: float = 0.5) -> tuple[list[str], dict[str, list[str]]]:
    """Completions and columns (label, dataset) shaped like a GRPO batch: ``generations``
    samples per prompt with explanations of 2-8 sentences; generations of one prompt share
    some sentences (an opening line with probability ``opening_share``, as a sampled policy
    repeats itself), the rest are drawn from ~2,700 distinct sentences; about one in five
    completions is malformed (no think block, or no answer tags)."""
    import random

    rng = random.Random(seed)
    emotions = list(_ACTIONS)

    def sentence(mood: str) -> str:
        return f"{rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS[mood])}{rng.choice(_DETAILS)}."

    completions: list[str] = []
    labels: list[str] = []
    datasets: list[str] = []
    for _ in range(prompts):
        dataset = rng.choice(["mafw", "dfew"])
        emotion = rng.choice(emotions)
        truth = _DATASET_WORDS[dataset][emotion]
        openings = [sentence("neutral"), sentence(emotion)]  # what this prompt's samples share
        for _ in range(generations):
            mood = emotion if rng.random() < 0.6 else rng.choice(emotions)
            n = rng.randint(2, 8)
            sentences = [sentence(mood if rng.random() < 0.6 else rng.choice(emotions))
                         for _ in range(n)]
            if rng.random() < opening_share:
                sentences[0] = rng.choice(openings)
            answer = rng.choice(_ANSWER_VARIANTS.get(mood, [_DATASET_WORDS[dataset][mood]]))
            think = " ".join(sentences)
            shape = rng.random()
            if shape < 0.8:
                text = f"<think>{think}</think>\n<answer>{answer}</answer>"
            elif shape < 0.9:
                text = f"<answer>{answer}</answer>"
            else:
                text = f"<think>{think}</think> The answer is {answer}."
            completions.append(text)
            labels.append(truth)
            datasets.append(dataset)
    return completions, {"label": labels, "dataset": datasets}
