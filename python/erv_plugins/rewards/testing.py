"""Small verifiers for tests, examples and benchmarks of the rewards.

``KeywordVerifier`` is deterministic: a sentence gets probability ``hit`` for every label
whose keywords it contains, ``neutral_prob`` for neutral when it contains none, and
``base`` elsewhere, so rewards can be computed by hand. It is also a plugin object::

    plugins.add(erv_plugins.rewards.testing)   # registers verifier "keywords"

``build_tiny_roberta`` saves a tiny random multi-label RoBERTa (GoEmotions head) with a
byte-level BPE tokenizer to a directory; ``LocalHFVerifier`` runs such a directory (a
minimal adapter; the project's own verifier plugin is ``hf``).
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
                       logit_scale: float = 40.0) -> Path:
    """Save a tiny multi-label RoBERTa classifier and its tokenizer to ``path``.

    The classifier's output layer is scaled by ``logit_scale`` so that probabilities spread
    over (0, 1) instead of clustering at 0.5 (a random head is otherwise undecided).
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
    model = RobertaForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.out_proj.weight.mul_(logit_scale)
    model.eval()
    model.save_pretrained(path)
    return path


class LocalHFVerifier:
    """A minimal adapter: a saved sequence classifier as a Verifier (sigmoid outputs)."""

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

        self.path = Path(path)
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(self.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        config = self.model.config
        self.labels = tuple(config.id2label[i] for i in range(config.num_labels))
        self.cache_key = f"local-hf:{self.path.resolve()}"
        self.batch_size = batch_size
        self._torch = torch
        self.sentences_seen = 0

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        self.sentences_seen += len(texts)
        outs = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[start:start + self.batch_size]), return_tensors="pt",
                                 padding=True, truncation=True)
            with torch.inference_mode():
                outs.append(torch.sigmoid(self.model(**enc).logits).float().numpy())
        if not outs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(outs)
