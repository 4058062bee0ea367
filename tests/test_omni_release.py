"""The omni policy as the authors' release has it: prompts token for token, checkpoints in the
published layout, generation as its eval runs it, its dropout.

The pinned ids below were produced by the release's own code (``humanomni.mm_infer``,
``train_humanomni.preprocess`` + its collator, ``HumanOmniERVGRPOTrainer.compute_loss``)
on transformers 4.49 / TRL 0.14 with the tiny tokenizer this file builds; the differential
check that does it lives outside the repository (docs/data-and-model.md, "Release parity").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from erv_plugins.errors import ErvError  # noqa: E402
from erv_plugins.models.omni import (  # noqa: E402
    EMOTION_QUESTION,
    RELEASE_EVAL_QUESTION,
    OmniConfig,
    OmniForCausalLM,
    OmniProcessor,
    build_tiny_omni,
    load_omni,
    qwen2_vl_chat_template,
)

torch.set_num_threads(1)

V, A = -201, -202  # the release's MODAL_INDEX_MAP
_HEAD = [1, 88, 94, 279, 74, 82, 204, 425, 485, 300, 480, 493, 19, 2, 204, 1, 90, 88, 267, 204]
_MEDIA = [419, 323, 35, V, 419, 324, 336, 421, 323, 35, A, 421, 324, 336]
_QUESTION = [337, 284, 372, 397, 399, 32, 390, 269, 320, 17, 395, 282, 398, 381, 269, 391, 307,
             269, 388, 396, 369, 360, 36]
_FORMAT = [380, 269, 389, 394, 306, 226, 512, 226, 513, 309, 375, 282, 306, 226, 514, 226, 515,
           393, 19, 2, 204, 1, 70, 302, 484, 204]
# mm_infer(instruct=RELEASE_EVAL_QUESTION, modal="video_audio"): "?  Output" puts one more
# space token (226) before "Output".
RELEASE_EVAL_IDS = [*_HEAD, *_MEDIA, *_QUESTION, 226, *_FORMAT]
# train_humanomni on "<video>\n<audio>\n" + EMOTION_QUESTION: "\n\n\n" before the question
# (two more newline tokens, 204).
RELEASE_SFT_IDS = [*_HEAD, *_MEDIA, 204, 204, *_QUESTION, *_FORMAT,
                   512, 295, 462, 307, 498, 309, 269, 371, 307, 466, 19, 513, 204, 514, 77, 502,
                   94, 515, 2, 204]
RELEASE_SFT_MASKED = 85  # the templated user turn; the target is the rest, "<|im_end|>\n" too
SFT_ANSWER = "<think>The face is bright and the tone is warm.</think>\n<answer>happy</answer>"
# compute_loss: Qwen2-VL template, <|vision_start|><|video_pad|><|vision_end|> = 3, 5, 4.
RELEASE_GRPO_IDS = [*_HEAD, 3, 5, 4, *_MEDIA, *_QUESTION, *_FORMAT]
RELEASE_GATE_EVAL = [2, 25, 16, 46, 84, 49, 8, 101, 98, 106, 5, 110, 45, 37, 30, 98, 33, 64, 98,
                     69, 73, 102, 113, 11, 76, 98, 100, 82, 63, 9, 99, 10, 9, 7, 99, 10, 17, 53,
                     45, 63, 9, 21, 10, 9, 7, 21, 10, 97, 6, 3]
# The SFT gate reads "<vi_start><vi_end><au_start><audio><au_end>" + question (truncated at
# the tiny BERT's 64 positions, as the release's tokenizer call truncates at its limit).
RELEASE_GATE_SFT = [2, 9, 105, 12, 94, 10, 9, 105, 12, 47, 10, 9, 27, 12, 94, 10, 9, 28, 10, 9,
                    27, 12, 47, 10, *RELEASE_GATE_EVAL[1:40], 3]
# sha256 of the sorted state-dict names HumanOmniQwen2ForCausalLM (release) saves for the
# tiny sizes (288 tensors; lm_head is tied).
RELEASE_STATE_NAMES_SHA256 = "bfb2f5ccbeaeb2246e50749ceb7591b35a4d8258f8ac2ce390dc4fa6dcaf8b19"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_omni(tmp_path_factory.mktemp("tiny_omni_release"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> tuple[OmniForCausalLM, OmniProcessor]:
    return load_omni(tiny_dir)


def collapse(ids: list[int], processor: OmniProcessor) -> list[int]:
    """erv's ids with each run of placeholders as the release's single id."""
    out: list[int] = []
    for t in ids:
        if t in (V, A) and out and out[-1] == t:
            continue
        out.append(t)
    assert ids.count(V) in (0, processor.num_video_tokens)
    assert ids.count(A) in (0, processor.num_audio_tokens)
    return out


def gate_ids(processor: OmniProcessor, text: str) -> list[int]:
    batch = processor([processor.prompt("x")], videos=[torch.zeros(8, 3, 32, 32)],
                      audios=[torch.zeros(16, 198)], questions=[text])
    return batch["gate_input_ids"][0].tolist()


def test_eval_prompt_ids_equal_mm_infers(tiny: tuple[OmniForCausalLM, OmniProcessor]) -> None:
    _, processor = tiny
    prompt = processor.prompt(RELEASE_EVAL_QUESTION)
    ids = processor.tokenize(prompt)
    assert collapse(ids, processor) == RELEASE_EVAL_IDS
    assert (ids.count(V), ids.count(A)) == (32, 33)  # one id per feature
    assert processor.release_length(ids) == len(RELEASE_EVAL_IDS)
    assert gate_ids(processor, RELEASE_EVAL_QUESTION) == RELEASE_GATE_EVAL
    assert RELEASE_EVAL_QUESTION == EMOTION_QUESTION.replace("? Output", "?  Output")


def test_sft_ids_and_labels_equal_train_humanomnis(
        tiny: tuple[OmniForCausalLM, OmniProcessor]) -> None:
    _, processor = tiny
    ids, labels, gate_text = processor.sft_example(EMOTION_QUESTION, SFT_ANSWER,
                                                   template="release")
    assert collapse(ids, processor) == RELEASE_SFT_IDS
    n_masked = RELEASE_SFT_MASKED - 2 + 32 + 33  # the two placeholders expanded
    assert labels == [-100] * n_masked + ids[n_masked:]
    assert ids[n_masked:] == RELEASE_SFT_IDS[RELEASE_SFT_MASKED:]
    assert gate_text == "<vi_start><vi_end><au_start><audio><au_end>" + EMOTION_QUESTION
    assert gate_ids(processor, gate_text) == RELEASE_GATE_SFT
    # erv's own template: the eval prompt, then the answer and EOS (no "\n" after it).
    pids, plabels, pgate = processor.sft_example(EMOTION_QUESTION, SFT_ANSWER)
    assert collapse(pids, processor)[-3:] == [94, 515, 2] and pgate == EMOTION_QUESTION
    with pytest.raises(ErvError, match="unknown SFT prompt template 'x'"):
        processor.sft_example("q", "a", template="x")  # type: ignore[arg-type]


def test_grpo_prompt_ids_equal_compute_losss(tiny: tuple[OmniForCausalLM, OmniProcessor]) -> None:
    _, processor = tiny
    prompt = processor.prompt(EMOTION_QUESTION, template="qwen2_vl")
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                             "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>"
                             "<vi_start><video><vi_end>\n<au_start><audio><au_end>\n")
    assert collapse(processor.tokenize(prompt), processor) == RELEASE_GRPO_IDS
    # The bare question for the gate, whatever the template (as the release's bert_prompts;
    # WordPiece ignores the eval instruction's second space).
    batch = processor([prompt], videos=[torch.zeros(8, 3, 32, 32)], audios=[torch.zeros(16, 198)])
    assert batch["gate_input_ids"][0].tolist() == RELEASE_GATE_EVAL


def test_the_qwen2_vl_template_is_the_published_text() -> None:
    template = qwen2_vl_chat_template()
    assert hashlib.sha256(template.encode()).hexdigest() == (
        "a0bc6f6fc7a29a80017a433e8f03a1cc1236e838a944a2d034295a60c4f2fddb")
    assert "<|vision_start|><|video_pad|><|vision_end|>" in template
    from erv_plugins.models.omni.processing import QWEN2_VL_TEMPLATE_FILE

    source = json.loads(QWEN2_VL_TEMPLATE_FILE.read_text())["source"]
    assert "Qwen/Qwen2-VL-2B-Instruct" in source


def test_qwen2_vl_template_needs_the_vision_tokens(tiny_dir: Path) -> None:
    processor = OmniProcessor.from_pretrained(tiny_dir)
    vocab = processor.tokenizer.get_vocab()
    for token in ("<|vision_start|>", "<|video_pad|>", "<|vision_end|>"):
        vocab.pop(token)

    class NoVisionTokens:  # a Qwen2 (not 2.5) tokenizer: the template's tokens are text
        def get_vocab(self) -> dict[str, int]:
            return vocab

    processor.tokenizer = NoVisionTokens()  # type: ignore[assignment]
    with pytest.raises(ErvError, match=r"needs <\|vision_start\|>, <\|video_pad\|>, "
                                       r"<\|vision_end\|> as tokens of the policy's tokenizer"):
        processor.prompt(template="qwen2_vl")


def _release_layout(root: Path, model: OmniForCausalLM, processor: OmniProcessor
                    ) -> tuple[Path, OmniForCausalLM]:
    """A checkpoint as HumanOmni writes it: its config keys (no text_model_path; the towers'
    shapes read from the directories mm_vision_tower / mm_audio_tower name), weight names
    (SigLIP under vision_model., lm_head tied), a Qwen2 tokenizer without media tokens."""
    bert, siglip, whisper = (root / "bert-base-uncased", root / "siglip-base-patch16-224",
                             root / "whisper-large-v3")
    model.model.bert_model.save_pretrained(bert)
    processor.gate_tokenizer.save_pretrained(bert)
    model.model.vision_tower.vision_tower.save_pretrained(siglip)
    model.model.audio_tower.audio_tower.save_pretrained(whisper)
    cfg = model.config
    out = root / "R1-Omni-tiny"
    out.mkdir()
    config = {
        "architectures": ["HumanOmniQwen2ForCausalLM"], "attention_dropout": 0.0,
        "audio_hidden_size": 32, "eos_token_id": processor.eos_token_id,
        "freeze_mm_mlp_adapter": False, "hidden_act": "silu", "hidden_size": cfg.hidden_size,
        "hyper_layers": [15, 22], "image_aspect_ratio": "pad", "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size, "max_position_embeddings": 4096,
        "max_window_layers": 2, "mm_audio_projector_type": "mlp2x_gelu",
        "mm_audio_tower": str(whisper), "mm_hidden_size": 32,
        "mm_projector_lr": None, "mm_projector_type": "all_in_one_small",
        "mm_tunable_parts": "mm_mlp_adapter,audio_projector,mm_language_model",
        "mm_use_x_start_end": True, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": str(siglip),
        "model_type": "HumanOmni_qwen2", "num_attention_heads": cfg.num_attention_heads,
        "num_frames": 8, "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads, "pad_token_id": processor.pad_token_id,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
        "sliding_window": None, "tie_word_embeddings": True, "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right", "torch_dtype": "float32",
        "transformers_version": "4.49.0", "tune_mm_mlp_adapter": False, "use_cache": True,
        "use_local_models": True, "use_mm_proj": True, "use_sliding_window": False,
        "vocab_size": cfg.vocab_size,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    processor.tokenizer.save_pretrained(out)
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps(
        {**tok_config, "tokenizer_class": "Qwen2Tokenizer"}, indent=2))
    tj = json.loads((out / "tokenizer.json").read_text())
    (out / "vocab.json").write_text(json.dumps(tj["model"]["vocab"]))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(
        m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]) + "\n")
    # The release-shaped model (its text gate MLP is 3584 wide, hard-coded), random weights.
    torch.manual_seed(1)
    source = OmniForCausalLM(OmniConfig.from_dict({**config, "text_model_path": str(bert)}))
    weights = {}
    for name, tensor in source.state_dict().items():
        if name != "lm_head.weight":
            name = name.replace("model.vision_tower.vision_tower.",
                                "model.vision_tower.vision_tower.vision_model.")
            weights[name] = tensor.contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out, source


def test_a_checkpoint_in_the_published_layout_loads_as_published_and_generates(
        tiny: tuple[OmniForCausalLM, OmniProcessor], tmp_path: Path) -> None:
    path, source = _release_layout(tmp_path, *tiny)
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
    assert hashlib.sha256("\n".join(names).encode()).hexdigest() == RELEASE_STATE_NAMES_SHA256
    n_tokens = len(json.loads((path / "tokenizer.json").read_text())["model"]["vocab"]) + 4
    bert = str(tmp_path / "bert-base-uncased")

    model, processor = load_omni(path, text_model_path=bert)
    assert len(processor.tokenizer) == n_tokens == 516  # nothing added
    assert model.get_input_embeddings().weight.shape[0] == 516
    assert model.config.text_model_path == bert
    config = OmniConfig.from_dict({**OmniConfig.get_config_dict(path)[0], "text_model_path": bert})
    _, info = OmniForCausalLM.from_pretrained(path, config=config, output_loading_info=True)
    assert (sorted(info["missing_keys"]), sorted(info["unexpected_keys"])) == ([], [])
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name

    batch = processor([processor.prompt(RELEASE_EVAL_QUESTION)], videos=[torch.randn(8, 3, 32, 32)],
                      audios=[torch.randn(16, 198)], questions=[RELEASE_EVAL_QUESTION])
    torch.manual_seed(0)
    out = model.generate(**batch, do_sample=True, temperature=0.3, top_p=0.9, max_new_tokens=5)
    width = batch["input_ids"].shape[1]
    assert out.shape == (1, width + 5) and torch.equal(out[:, :width], batch["input_ids"])
    assert all(0 <= t < 516 for t in out[0, width:].tolist())

    # Without the option, the gate is bert-base-uncased's shape: not this tiny BERT's.
    with pytest.raises(ErvError, match=r"do not fit the shapes its config gives \(text gate "
                                       r"from 'bert-base-uncased'.*set the model options"):
        load_omni(path.rename(tmp_path / "elsewhere"))


def test_trl_reloads_a_checkpoint_by_path_with_the_same_sources(
        tiny: tuple[OmniForCausalLM, OmniProcessor], tmp_path: Path) -> None:
    """TRL builds the reference model from the path alone; it gets the policy's sources."""
    path, _ = _release_layout(tmp_path, *tiny)
    load_omni(path, text_model_path=str(tmp_path / "bert-base-uncased"))
    again, processor = load_omni(path)
    assert again.config.text_model_path == str(tmp_path / "bert-base-uncased")
    assert processor.gate_tokenizer.convert_ids_to_tokens(
        processor.gate_tokenizer("joy")["input_ids"]) == ["[CLS]", "joy", "[SEP]"]


def test_generation_penalties_cover_the_generated_tokens_only(
        tiny: tuple[OmniForCausalLM, OmniProcessor]) -> None:
    """A checkpoint's repetition_penalty (Qwen2.5-Instruct's generation_config has 1.1) acts
    on generated tokens only, as in the release's generate(inputs_embeds=...)."""
    model, processor = tiny
    batch = processor([processor.prompt()] * 2, videos=[torch.zeros(8, 3, 32, 32)] * 2,
                      audios=[torch.zeros(16, 198)] * 2)
    width = batch["input_ids"].shape[1]
    out = model.generate(**batch, do_sample=False, max_new_tokens=4, repetition_penalty=1.3,
                         return_dict_in_generate=True)
    assert out.sequences.shape == (2, width + 4)
    assert torch.equal(out.sequences[:, :width], batch["input_ids"])
    twice = model.generate(**batch, do_sample=True, max_new_tokens=2, num_return_sequences=2)
    assert twice.shape == (4, width + 2)
    assert torch.equal(twice[:, :width], batch["input_ids"].repeat_interleave(2, dim=0))
    text_only = processor(["Hi"])
    assert model.generate(**text_only, do_sample=False, max_new_tokens=2).shape == (
        1, text_only["input_ids"].shape[1] + 2)


def test_only_the_bert_gate_has_dropout_in_train_mode(
        tiny: tuple[OmniForCausalLM, OmniProcessor]) -> None:
    """As the release (checked against HumanOmniQwen2ForCausalLM): Qwen2 attention_dropout
    0.0, SigLIP and Whisper 0.0, no dropout in the projectors; BERT's 0.1 everywhere."""
    model, _ = tiny
    model.train()
    try:
        active = {n: m.p for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Dropout) and m.p > 0}
    finally:
        model.eval()
    layers = model.config.text_gate_config.num_hidden_layers
    assert set(active.values()) == {0.1} and len(active) == 1 + 3 * layers
    assert all(n.startswith("model.bert_model.") for n in active)
    assert (model.config.attention_dropout, model.config.vision_config.attention_dropout,
            model.config.audio_config.dropout) == (0.0, 0.0, 0.0)


def test_training_stages_build_the_release_prompts(tiny_dir: Path) -> None:
    from erv_plugins.datasets.base import Sample
    from erv_plugins.training.grpo import build_rows
    from erv_plugins.training.policy import load_policy
    from erv_plugins.training.sft import build_examples

    policy = load_policy(tiny_dir)
    sample = Sample(id="c1", label="happiness", video=None,
                    explanation="The face is bright and the tone is warm.")
    (example,) = build_examples(policy, [sample], 2048, template="release")
    ids = collapse(example["input_ids"], policy.processor)
    assert ids[:len(RELEASE_SFT_IDS) - 20] == RELEASE_SFT_IDS[:-20]
    assert example["gate"].startswith("<vi_start><vi_end><au_start><audio><au_end>As an")

    class Cfg:  # the fields build_rows reads
        max_prompt_length = len(RELEASE_GRPO_IDS)
        prompt_template = "qwen2_vl"

    from erv_plugins.recipe import DataSpec
    from erv_plugins.training.common import StageData

    data = [StageData(DataSpec(plugin="mafw"), None, [sample], "mafw", "$.grpo.dataset")]
    (row,) = build_rows(policy, data, Cfg(), "recipe.toml")
    assert collapse(policy.processor.tokenize(row["prompt"]), policy.processor) == RELEASE_GRPO_IDS
    Cfg.max_prompt_length -= 1
    with pytest.raises(ErvError, match=f"prompt has {len(RELEASE_GRPO_IDS)} tokens, more than"):
        build_rows(policy, data, Cfg(), "recipe.toml")


def test_generation_protocols() -> None:
    # The omni plugin's side of the model contract (MediaPolicy.generation_question).
    from erv_plugins.models.omni.policy import protocol_settings

    expected: dict[str, Any] = {
        "release": {"question": RELEASE_EVAL_QUESTION, "aspect_ratio": "resize",
                    "skip_special": True},
        "paper": {"question": RELEASE_EVAL_QUESTION, "aspect_ratio": "resize",
                  "skip_special": True},
        "erv": {"question": EMOTION_QUESTION, "aspect_ratio": None, "skip_special": False},
    }
    assert {p: protocol_settings(p) for p in expected} == expected
    with pytest.raises(ErvError, match="unknown evaluation protocol 'x'"):
        protocol_settings("x")
